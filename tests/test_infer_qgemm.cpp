// infer/int_tensor.hpp, infer/qgemm.hpp, infer/quantized_linear.hpp: every kernel path against the scalar
// integer oracle bit for bit on shapes that hit every tail, the dequantized result against the fake-quant
// float computation, int4 packing, and the typed errors.
#include "test_support.hpp"

#include <minnow/infer/int_tensor.hpp>
#include <minnow/infer/qgemm.hpp>
#include <minnow/infer/reference.hpp>
#include <minnow/infer/quantized_linear.hpp>
#include <minnow/quant/fake_quantize.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <vector>

using namespace minnow;
using infer::arch::avx2;
using infer::arch::avx512_vnni;
using infer::arch::scalar;
using quant::AffineParams;

namespace {

struct Problem {
  Tensor<std::uint8_t, 2> x;
  AffineParams xp;
  infer::Int8Weights w;
  std::vector<std::int32_t> bias32;
  std::vector<float> bias;
};

// Random integers over the whole grid (including 0/255 and −128/127), zero points away from 0 on
// some channels so every correction term is exercised.
Problem make_problem(index_t m, index_t n, index_t k, std::mt19937& rng, bool int4 = false) {
  Problem p;
  p.x.resize({m, k});
  std::uniform_int_distribution<int> u8(0, 255), s8(int4 ? -8 : -128, int4 ? 7 : 127), zp(int4 ? -3 : -20, int4 ? 3 : 20);
  for (index_t i = 0; i < p.x.size(); ++i) p.x.data()[i] = static_cast<std::uint8_t>(u8(rng));
  p.xp = {0.02f, u8(rng)};
  p.w.name = "fc_test";
  p.w.grid = int4 ? quant::QRange{-8, 7} : quant::QRange{-128, 127};
  p.w.values.resize({n, k});
  for (index_t i = 0; i < p.w.values.size(); ++i) p.w.values.data()[i] = static_cast<std::int8_t>(s8(rng));
  std::uniform_real_distribution<float> scale(0.001f, 0.01f), bias(-2.0f, 2.0f);
  std::uniform_int_distribution<int> b32(-100000, 100000);
  for (index_t j = 0; j < n; ++j) {
    p.w.params.push_back({scale(rng), j % 3 == 0 ? 0 : zp(rng)});
    p.bias32.push_back(b32(rng));
    p.bias.push_back(bias(rng));
  }
  return p;
}

// Turns AMX off for the rest of the scope (the vector paths under test), then restores what was.
struct WithoutAmx : IsaCeiling {
  WithoutAmx() : IsaCeiling(simd::Isa::avx512_vnni) {}
};

template <class T>
bool same_bits(const Tensor<T, 2>& a, const Tensor<T, 2>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(T)) == 0;
}

template <class Arch>
void check_path(const Problem& p, const infer::PackedWeights& packed, const infer::OutputStage& stage_int,
                const infer::OutputStage& stage_float) {
  const index_t m = p.x.dim(0), n = p.w.rows();
  infer::QuantizedActivations a;
  infer::pack_activations<Arch>(p.x, p.xp, a);
  const AffineParams out{0.05f, 17};

  Tensor<std::int32_t, 2> acc({m, n}), acc_ref({m, n});
  infer::qgemm<Arch>(a, packed, stage_int, acc.view());
  infer::qgemm_reference<std::int32_t>(p.x, p.xp, p.w, stage_int, {}, acc_ref.view());
  CHECK(same_bits(acc, acc_ref));

  for (const auto* stage : {&stage_int, &stage_float}) {
    Tensor<float, 2> y({m, n}), y_ref({m, n});
    infer::qgemm<Arch>(a, packed, *stage, y.view());
    infer::qgemm_reference<float>(p.x, p.xp, p.w, *stage, {}, y_ref.view());
    CHECK(same_bits(y, y_ref));
    Tensor<std::uint8_t, 2> q({m, n}), q_ref({m, n});
    infer::qgemm<Arch>(a, packed, *stage, out, q.view());
    infer::qgemm_reference<std::uint8_t>(p.x, p.xp, p.w, *stage, out, q_ref.view());
    CHECK(same_bits(q, q_ref));
  }
}

}  // namespace

TEST_CASE("every qgemm path equals the scalar integer reference bit for bit on every tail") {
  std::mt19937 rng(7);
  for (const index_t m : {1, 3, 8, 9, 17}) {
    for (const index_t n : {1, 5, 47, 48, 49, 97}) {
      for (const index_t k : {1, 3, 4, 5, 63, 64, 66, 515, 1030}) {
        Problem p = make_problem(m, n, k, rng);
        const auto packed = infer::pack_weights(p.w);
        for (const bool relu : {false, true}) {
          const infer::OutputStage si{p.bias32, {}, relu}, sf{{}, p.bias, relu};
          INFO("m " << m << " n " << n << " k " << k << " relu " << relu);
          for_each_arch([&](auto arch) { check_path<decltype(arch)>(p, packed, si, sf); });  // AMX where the CPU has it
          if (simd::cpu_has(simd::Isa::amx)) {
            const WithoutAmx vnni;
            check_path<avx512_vnni>(p, packed, si, sf);
          }
        }
      }
    }
  }
}

TEST_CASE("the AMX tile path equals the scalar integer reference bit for bit on every tail") {
  if (!simd::cpu_has(simd::Isa::amx)) MINNOW_SKIP("this CPU or OS has no AMX-INT8");
  const IsaCeiling tiles(simd::Isa::amx);  // whatever MINNOW_ARCH says
  std::mt19937 rng(23);
  for (const bool int4 : {false, true}) {
    for (const index_t m : {2, 3, 15, 16, 17, 33, 64}) {
      for (const index_t n : {1, 47, 48, 97}) {
        for (const index_t k : {2, 6, 62, 64, 66, 128, 1030, 1088, 1, 5, 63, 65, 127}) {
          if (int4 && k % 2 != 0) continue;  // int4 packs two values per byte
          Problem p = make_problem(m, n, k, rng, int4);
          const auto packed = int4 ? infer::pack_weights(infer::pack_int4(p.w), true) : infer::pack_weights(p.w);
          infer::QuantizedActivations a;
          infer::pack_activations<avx512_vnni>(p.x, p.xp, a);
          REQUIRE(a.layout == infer::ActivationLayout::rows);
          for (const bool relu : {false, true}) {
            const infer::OutputStage si{p.bias32, {}, relu}, sf{{}, p.bias, relu};
            INFO("int4 " << int4 << " m " << m << " n " << n << " k " << k << " relu " << relu);
            check_path<avx512_vnni>(p, packed, si, sf);
          }
        }
      }
    }
  }
  // The rows layout: every byte in place, padding (rows to a multiple of 16, k to one of 64) zero, row sums
  // from the definition; quantize_activations writes the same layout.
  {
    Problem p = make_problem(33, 5, 70, rng);
    infer::QuantizedActivations a;
    infer::pack_activations<avx512_vnni>(p.x, p.xp, a);
    REQUIRE(a.lda == 128);
    REQUIRE(a.rows.size() == 48 * 128);
    bool layout_ok = true, sums_ok = true;
    for (index_t i = 0; i < 48; ++i) {
      std::int32_t sum = 0;
      for (index_t k = 0; k < 128; ++k) {
        const std::uint8_t expected = i < 33 && k < 70 ? p.x(i, k) : 0;
        sum += expected;
        layout_ok = layout_ok && a.rows.data()[i * 128 + k] == expected;
      }
      if (i < 33) sums_ok = sums_ok && a.rowsum[static_cast<std::size_t>(i)] == sum;
    }
    CHECK(layout_ok);
    CHECK(sums_ok);
    Tensor<float, 2> xf({33, 70});
    for (index_t i = 0; i < xf.size(); ++i) xf.data()[i] = static_cast<float>(p.x.data()[i] - p.xp.zero_point) * p.xp.scale;
    infer::QuantizedActivations f;
    infer::quantize_activations<avx512_vnni>(xf, p.xp, f);
    REQUIRE(f.layout == infer::ActivationLayout::rows);
    CHECK(std::memcmp(f.rows.data(), a.rows.data(), static_cast<std::size_t>(a.rows.size())) == 0);
  }
  // Turned off, the same tag packs 8-row panels for the vector kernels; so do other tags, and one row.
  Problem p = make_problem(32, 48, 100, rng);
  infer::QuantizedActivations a;
  {
    const WithoutAmx vector_kernels;
    infer::pack_activations<avx512_vnni>(p.x, p.xp, a);
    CHECK(a.layout == infer::ActivationLayout::panels);
  }
  infer::pack_activations<avx2>(p.x, p.xp, a);
  CHECK(a.layout == infer::ActivationLayout::panels);
  infer::pack_activations<avx512_vnni>(p.x, p.xp, a);
  CHECK(a.layout == infer::ActivationLayout::rows);
  Problem one = make_problem(1, 48, 100, rng);
  infer::pack_activations<avx512_vnni>(one.x, one.xp, a);
  CHECK(a.layout == infer::ActivationLayout::panels);
}

TEST_CASE("int4 weights kept at 4 bits give the same bits as the int8 kernels") {
  std::mt19937 rng(11);
  for (const index_t m : {1, 9}) {
    for (const index_t n : {1, 49}) {
      for (const index_t k : {2, 66, 1030}) {
        Problem p = make_problem(m, n, k, rng, true);
        const auto int4 = infer::pack_int4(p.w);
        const auto kept = infer::pack_weights(int4, true);
        CHECK(kept.int4);
        const infer::OutputStage si{p.bias32, {}, true}, sf{{}, p.bias, false};
        INFO("m " << m << " n " << n << " k " << k);
        for_each_arch([&](auto arch) { check_path<decltype(arch)>(p, kept, si, sf); });
      }
    }
  }
}

TEST_CASE("threads split the work items without changing a bit") {
  // 37 rows = 5 activation panels, 301 channels = 7 weight panels: 35 items, so two threads split the
  // items inside weight panel 3 (both threads unpack that int4 panel) and the last row panel has 5 rows.
  // With AMX (where the CPU has it) 37 rows are 3 tiles of 16: 21 items.
  std::mt19937 rng(3);
  for (const bool int4 : {false, true}) {
    for (const bool amx : {false, true}) {
      const IsaCeiling kernels(amx ? simd::Isa::amx : simd::Isa::avx512_vnni);
      Problem p = make_problem(37, 301, 778, rng, int4);
      const auto packed = int4 ? infer::pack_weights(infer::pack_int4(p.w), true) : infer::pack_weights(p.w);
      infer::QuantizedActivations a;
      infer::pack_activations(p.x, p.xp, a);
      CHECK(a.layout == (amx && simd::cpu_has(simd::Isa::amx) ? infer::ActivationLayout::rows : infer::ActivationLayout::panels));
      Tensor<float, 2> one({37, 301}), two({37, 301}), ref({37, 301});
      minnow::set_threads(1);
      infer::qgemm(a, packed, {{}, p.bias, true}, one.view());
      minnow::set_threads(2);
      infer::qgemm(a, packed, {{}, p.bias, true}, two.view());
      minnow::set_threads(1);
      infer::qgemm_reference<float>(p.x, p.xp, p.w, {{}, p.bias, true}, {}, ref.view());
      INFO("int4 " << int4 << " amx " << amx);
      CHECK(same_bits(one, two));
      CHECK(same_bits(one, ref));
    }
  }
}

TEST_CASE("packing on two threads gives the panels and row sums of one thread") {
  // 67 × 4001 ≥ 2¹⁸ bytes: packing runs on both threads; 67 rows end in a 3-row panel, 4001 in a 1-byte group.
  const WithoutAmx panels;
  std::mt19937 rng(17);
  Problem p = make_problem(67, 50, 4001, rng);
  Tensor<float, 2> xf({67, 4001});
  std::normal_distribution<float> dist(2.0f, 3.0f);
  for (index_t i = 0; i < xf.size(); ++i) xf.data()[i] = dist(rng);
  infer::QuantizedActivations a1, a2, f1, f2;
  minnow::set_threads(1);
  infer::pack_activations(p.x, p.xp, a1);
  infer::quantize_activations(xf, p.xp, f1);
  minnow::set_threads(2);
  infer::pack_activations(p.x, p.xp, a2);
  infer::quantize_activations(xf, p.xp, f2);
  minnow::set_threads(1);
  REQUIRE(a1.panels.size() == 9 * 1001 * 32);
  CHECK(std::memcmp(a1.panels.data(), a2.panels.data(), static_cast<std::size_t>(a1.panels.size())) == 0);
  CHECK(std::memcmp(f1.panels.data(), f2.panels.data(), static_cast<std::size_t>(f1.panels.size())) == 0);
  CHECK(a1.rowsum == a2.rowsum);
  CHECK(f1.rowsum == f2.rowsum);
  // Every byte where the layout puts it; padding (rows 67–71, k 4001–4003) zero; row sums from the definition.
  bool layout_ok = true, sums_ok = true;
  for (index_t i = 0; i < 72; ++i) {
    std::int32_t sum = 0;
    for (index_t k = 0; k < 4004; ++k) {
      const std::uint8_t expected = i < 67 && k < 4001 ? p.x(i, k) : 0;
      sum += expected;
      layout_ok = layout_ok && a2.panels.data()[(i / 8) * 1001 * 32 + (k / 4) * 32 + (i % 8) * 4 + k % 4] == expected;
    }
    if (i < 67) sums_ok = sums_ok && a2.rowsum[static_cast<std::size_t>(i)] == sum;
  }
  CHECK(layout_ok);
  CHECK(sums_ok);
  // And the product from them equals the oracle.
  const auto packed = infer::pack_weights(p.w);
  Tensor<std::int32_t, 2> acc({67, 50}), acc_ref({67, 50});
  minnow::set_threads(2);
  infer::qgemm(a2, packed, {p.bias32, {}, false}, acc.view());
  minnow::set_threads(1);
  infer::qgemm_reference<std::int32_t>(p.x, p.xp, p.w, {p.bias32, {}, false}, {}, acc_ref.view());
  CHECK(same_bits(acc, acc_ref));
}

TEST_CASE("activation quantization is fake_quantize's formula on the uint8 grid, on every path") {
  const WithoutAmx panels;  // the rows layout of the AMX tiles is checked against the panels in the AMX test
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  Tensor<float, 2> x({3, 37});
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = dist(rng);
  x(0, 0) = std::numeric_limits<float>::quiet_NaN();
  x(0, 1) = std::numeric_limits<float>::infinity();
  x(0, 2) = -std::numeric_limits<float>::infinity();
  x(1, 3) = 0.5f * 0.05f;  // a tie: half to even
  const AffineParams xp{0.05f, 100};
  infer::QuantizedActivations a_s;
  infer::quantize_activations<scalar>(x, xp, a_s);
  for_each_arch([&](auto arch) {
    infer::QuantizedActivations a_v;
    infer::quantize_activations<decltype(arch)>(x, xp, a_v);
    INFO(decltype(arch)::name);
    CHECK(std::memcmp(a_s.panels.data(), a_v.panels.data(), static_cast<std::size_t>(a_s.panels.size())) == 0);
    CHECK(a_s.rowsum == a_v.rowsum);
  });
  // Dequantized, every finite element equals quant::fake_quantize's output.
  Tensor<float, 2> fq({3, 37});
  quant::fake_quantize<float, 2>(x.view(), xp, quant::QRange{0, 255}, fq.view());
  for (index_t i = 0; i < 3; ++i) {
    for (index_t k = 0; k < 37; ++k) {
      const std::uint8_t q = a_s.panels.data()[(i / 8) * a_s.k4 * 32 + (k / 4) * 32 + (i % 8) * 4 + k % 4];
      if (i == 0 && k == 0) {
        CHECK(q == 0);  // NaN → 0
        continue;
      }
      CHECK(static_cast<float>(q - xp.zero_point) * xp.scale == fq(i, k));
    }
  }
}

TEST_CASE("float to uint8 rows give the scalar bits on every path and every tail length") {
  std::mt19937 rng(6);
  std::normal_distribution<float> dist(0.0f, 4.0f);
  std::vector<float> x(64);
  for (float& v : x) v = dist(rng);
  // Specials at positions that land in the vector body and in the tail of most lengths.
  x[1] = std::numeric_limits<float>::quiet_NaN();
  x[9] = std::numeric_limits<float>::infinity();
  x[17] = -std::numeric_limits<float>::infinity();
  x[4] = 2.5f * 0.05f;   // ties: half to even, up and down
  x[35] = 3.5f * 0.05f;
  x[38] = -1e30f;
  const AffineParams xp{0.05f, 77};
  for (index_t k = 0; k <= 64; ++k) {
    std::vector<std::uint8_t> want(static_cast<std::size_t>(k) + 1, 0xAB), got(want);
    infer::detail::quantize_row(scalar{}, x.data(), k, xp, want.data());
    CHECK(want[static_cast<std::size_t>(k)] == 0xAB);  // nothing written past the row
    for_each_arch([&](auto arch) {
      std::fill(got.begin(), got.end(), std::uint8_t{0xAB});
      infer::detail::quantize_row(arch, x.data(), k, xp, got.data());
      INFO(decltype(arch)::name << ", length " << k);
      CHECK(got == want);
    });
  }
  std::vector<std::uint8_t> q(64);
  infer::detail::quantize_row(scalar{}, x.data(), 64, xp, q.data());
  CHECK(q[1] == 0);
  CHECK(q[9] == 255);
  CHECK(q[17] == 0);
  CHECK(q[4] == 77 + 2);
  CHECK(q[35] == 77 + 4);
  CHECK(q[38] == 0);
}

TEST_CASE("the quantized Linear equals the fake-quant float computation within one output step") {
  std::mt19937 rng(9);
  for (const index_t batch : {1, 5, 64}) {
    for (const index_t in : {6, 37, 300}) {
      const index_t out = 23;
      std::normal_distribution<float> dist(0.0f, 1.0f);
      Tensor<float, 2> x({batch, in}), w({out, in});
      for (index_t i = 0; i < x.size(); ++i) x.data()[i] = std::abs(dist(rng)) * 2.0f;  // post-ReLU-like input
      for (index_t i = 0; i < w.size(); ++i) w.data()[i] = dist(rng) * 0.1f;
      std::vector<AffineParams> wp;
      std::vector<float> bias;
      for (index_t j = 0; j < out; ++j) {
        float amax = 0.0f;
        for (index_t k = 0; k < in; ++k) amax = std::max(amax, std::abs(w(j, k)));
        wp.push_back({amax / 127.0f, j % 2 == 0 ? 0 : 3});  // symmetric on even channels, shifted on odd
        bias.push_back(dist(rng));
      }
      const AffineParams xp{8.0f / 255.0f, 0};
      const auto wq = infer::quantize_int8("fc1", w, wp);

      // Ŵ from the integer tensor equals quant::fake_quantize per channel.
      Tensor<float, 2> w_fq({out, in});
      quant::fake_quantize<float, 2>(w.view(), quant::ChannelLayout{1, out, in}, wp, quant::QRange{-128, 127}, w_fq.view());
      CHECK(same_bits(wq.dequantize(), w_fq));

      Tensor<float, 2> x_fq({batch, in});
      quant::fake_quantize<float, 2>(x.view(), xp, quant::QRange{0, 255}, x_fq.view());
      for (const bool relu : {false, true}) {
        infer::QuantizedLinear layer(wq, bias, xp, relu);
        Tensor<float, 2> y({batch, out});
        layer.forward(x, y.view());
        const AffineParams yp{0.02f, 128};
        Tensor<std::uint8_t, 2> yq({batch, out});
        layer.forward(x, yp, yq.view());
        for (index_t i = 0; i < batch; ++i) {
          for (index_t j = 0; j < out; ++j) {
            double ref = bias[static_cast<std::size_t>(j)];
            for (index_t k = 0; k < in; ++k) ref += static_cast<double>(x_fq(i, k)) * static_cast<double>(w_fq(j, k));
            if (relu) ref = std::max(ref, 0.0);
            INFO("batch " << batch << " in " << in << " (" << i << ", " << j << ")");
            CHECK(std::abs(y(i, j) - ref) <= 1e-5 * (1.0 + std::abs(ref)));
            const double q_ref = std::clamp(std::nearbyint(ref / yp.scale) + yp.zero_point, relu ? 128.0 : 0.0, 255.0);
            CHECK(std::abs(static_cast<double>(yq(i, j)) - q_ref) <= 1.0);
          }
        }
      }
    }
  }
}

TEST_CASE("int4 packing round-trips and both int4 storages give the same outputs") {
  std::mt19937 rng(13);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  Tensor<float, 2> w({7, 10}), x({3, 10});
  for (index_t i = 0; i < w.size(); ++i) w.data()[i] = dist(rng);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = dist(rng);
  const std::vector<AffineParams> wp(7, AffineParams{0.3f, 0});
  const auto w8 = infer::quantize_int8("fc2", w, wp, quant::QRange{-8, 7});
  const auto w4 = infer::quantize_int4("fc2", w, wp);
  CHECK(w4.bytes() < w8.bytes());
  CHECK(w4.packed.size() == 7 * 5);
  CHECK(same_bits(w4.unpack().values, w8.values));
  CHECK(same_bits(infer::pack_int4(w4.unpack()).packed, w4.packed));
  // Low nibble first.
  CHECK(w4.at(0, 0) == static_cast<std::int8_t>(((w4.packed(0, 0) & 0x0F) ^ 8) - 8));
  CHECK(w4.at(0, 1) == static_cast<std::int8_t>(((w4.packed(0, 0) >> 4) ^ 8) - 8));

  const AffineParams xp{0.03f, 128};
  infer::QuantizedLinear kept(w4, {}, xp, false, infer::Int4Storage::keep_int4);
  infer::QuantizedLinear once(w4, {}, xp, false, infer::Int4Storage::unpack_once);
  infer::QuantizedLinear as8(w8, {}, xp, false);
  CHECK(kept.bytes() < once.bytes());
  Tensor<float, 2> a({3, 7}), b({3, 7}), c({3, 7});
  kept.forward(x, a.view());
  once.forward(x, b.view());
  as8.forward(x, c.view());
  CHECK(same_bits(a, b));
  CHECK(same_bits(a, c));
}

TEST_CASE("bad input throws typed errors naming the layer and the values") {
  Tensor<float, 2> w({4, 6}, 0.1f);
  const std::vector<AffineParams> three(3, AffineParams{0.1f, 0});
  CHECK_THROWS_AS(infer::quantize_int8("fc1", w, three), shape_error);
  CHECK_THROWS_WITH(infer::quantize_int8("fc1", w, three), Catch::Contains("fc1") && Catch::Contains("3 per-channel"));
  for (const float bad : {0.0f, -1.0f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<AffineParams> params(4, AffineParams{0.1f, 0});
    params[2].scale = bad;
    CHECK_THROWS_AS(infer::quantize_int8("fc1", w, params), value_error);
    CHECK_THROWS_WITH(infer::quantize_int8("fc1", w, params), Catch::Contains("fc1") && Catch::Contains("channel 2"));
  }
  const std::vector<AffineParams> four(4, AffineParams{0.1f, 0});
  CHECK_THROWS_AS(infer::quantize_int8("fc1", w, four, quant::QRange{-300, 300}), value_error);
  Tensor<float, 2> nan_w({4, 6}, 0.1f);
  nan_w(1, 1) = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(infer::quantize_int8("fc1", nan_w, four), value_error);

  // int4: odd inner length, values outside [−8, 7].
  Tensor<float, 2> odd({4, 5}, 0.1f);
  CHECK_THROWS_AS(infer::quantize_int4("fc3", odd, four), shape_error);
  CHECK_THROWS_WITH(infer::quantize_int4("fc3", odd, four), Catch::Contains("fc3") && Catch::Contains("5"));
  const auto w8 = infer::quantize_int8("fc4", w, std::vector<AffineParams>(4, AffineParams{0.001f, 0}));
  CHECK_THROWS_AS(infer::pack_int4(w8), value_error);

  // Layer: input and output parameters, bias length, input width.
  const auto wq = infer::quantize_int8("fc1", w, four);
  CHECK_THROWS_AS(infer::QuantizedLinear(wq, {}, AffineParams{0.0f, 0}), value_error);
  CHECK_THROWS_WITH(infer::QuantizedLinear(wq, {}, AffineParams{-2.0f, 0}), Catch::Contains("fc1") && Catch::Contains("-2"));
  CHECK_THROWS_AS(infer::QuantizedLinear(wq, {}, AffineParams{0.1f, 300}), value_error);
  const std::vector<float> short_bias(3, 0.0f);
  CHECK_THROWS_AS(infer::QuantizedLinear(wq, short_bias, AffineParams{0.1f, 0}), shape_error);
  infer::QuantizedLinear layer(wq, {}, AffineParams{0.1f, 0});
  Tensor<float, 2> x({2, 7}), y({2, 4});
  CHECK_THROWS_AS(layer.forward(x, y.view()), shape_error);
  CHECK_THROWS_WITH(layer.forward(x, y.view()), Catch::Contains("fc1") && Catch::Contains("7"));
  Tensor<float, 2> x6({2, 6}), y5({2, 5});
  CHECK_THROWS_AS(layer.forward(x6, y5.view()), shape_error);
  Tensor<std::uint8_t, 2> yq({2, 4});
  CHECK_THROWS_AS(layer.forward(x6, AffineParams{std::numeric_limits<float>::quiet_NaN(), 0}, yq.view()), value_error);
  CHECK_THROWS_AS(layer.forward(x6, AffineParams{0.1f, -1}, yq.view()), value_error);
}

TEST_CASE("integer weights at fc1's shape take the bytes the issue asks for, counted from the buffers") {
  Tensor<float, 2> w({1000, 6272}, 0.01f);
  const std::vector<AffineParams> params(1000, AffineParams{0.001f, 0});
  const double fp32 = static_cast<double>(w.size()) * sizeof(float);
  const auto w8 = infer::quantize_int8("fc1", w, params);
  const auto w4 = infer::quantize_int4("fc1", w, params);
  CHECK(static_cast<double>(w8.bytes()) / fp32 <= 0.26);
  CHECK(static_cast<double>(w4.bytes()) / fp32 <= 0.14);
  CHECK(static_cast<double>(infer::pack_weights(w8).bytes()) / fp32 <= 0.26);      // panels padded to 48 channels
  CHECK(static_cast<double>(infer::pack_weights(w4, true).bytes()) / fp32 <= 0.14);
}

// =====================================================================================================
// Quantized conv / max pool kernels (infer/quantized_conv2d.hpp, infer/quantized_maxpool.hpp): the direct
// small-K ("taps") and channel-group ("channels") conv kernels of the VNNI path and the AVX-512 2×2 pool
// against their scalar integer oracles, bit for bit, on shapes that hit every tail.
// =====================================================================================================
#include <minnow/infer/quantized_conv2d.hpp>
#include <minnow/infer/quantized_maxpool.hpp>

#include "conv_problem.hpp"

#include <cstring>

namespace {

struct DirectConvCase {
  index_t n, c, h, w, o, k, stride, pad;
  infer::detail::DirectKind kind;  ///< the kernel the VNNI path must pick
  bool avx2 = true;                ///< whether the AVX2 path runs it too (taps: every group inside 16 bytes)
  bool symmetric = false;          ///< weights without zero points (the threads test; the others try both)
};

using DirectConvProblem = test_support::ConvProblem;

DirectConvProblem make_direct_problem(const DirectConvCase& cc, std::mt19937& rng, bool zero_points, int xzp) {
  return test_support::make_conv_problem(cc.n, cc.c, cc.h, cc.w, cc.o, cc.k, rng, zero_points, xzp);
}

template <class T, std::size_t R>
bool same_tensor_bits(const Tensor<T, R>& a, const Tensor<T, R>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(T)) == 0;
}

const std::vector<DirectConvCase> direct_conv_cases = {
    {1, 1, 28, 28, 16, 3, 1, 1, infer::detail::DirectKind::taps},      // conv1 at batch 1: 28 = 16 + 12 lanes
    {2, 1, 9, 33, 7, 3, 1, 0, infer::detail::DirectKind::taps},        // padding 0, width 31 = 16 + 15, 7 channels
    {1, 2, 10, 17, 13, 3, 2, 1, infer::detail::DirectKind::taps},      // k = 18, stride 2, 13 = 8 + 5 channels
    {3, 1, 6, 5, 9, 2, 2, 0, infer::detail::DirectKind::taps},         // even kernel, stride 2, two output columns
    {1, 1, 12, 40, 3, 5, 1, 2, infer::detail::DirectKind::taps},       // 5 taps per row: two byte groups per row
    {1, 4, 5, 9, 1, 1, 4, 0, infer::detail::DirectKind::taps},         // 1×1, stride 4: vpermb index up to 63
    {2, 16, 14, 14, 32, 3, 1, 1, infer::detail::DirectKind::channels},  // conv2's shape
    {1, 5, 11, 19, 17, 3, 1, 1, infer::detail::DirectKind::channels},   // 3 padding channels, 19 = 16 + 3, 17 = 16 + 1
    {2, 6, 13, 21, 10, 3, 2, 0, infer::detail::DirectKind::channels},   // stride 2, padding 0
    {1, 8, 7, 40, 9, 3, 2, 1, infer::detail::DirectKind::channels},     // stride 2: 20 = 16 + 4 output columns
    {1, 4, 3, 3, 8, 3, 1, 1, infer::detail::DirectKind::channels},      // a 3×3 image, one full block
    {1, 12, 9, 9, 5, 1, 1, 0, infer::detail::DirectKind::channels},     // 1×1 kernel
    {1, 3, 9, 8, 7, 3, 1, 1, infer::detail::DirectKind::channels},      // 3 channels: a tie with taps (9 groups)
    {1, 3, 9, 8, 7, 5, 2, 2, infer::detail::DirectKind::channels},      // 75 taps in 25 groups, stride 2
    {1, 3, 11, 10, 7, 5, 3, 2, infer::detail::DirectKind::none},        // stride 3, 75 taps: im2col + qgemm
    {1, 1, 17, 20, 6, 5, 3, 1, infer::detail::DirectKind::taps, false},  // AVX2: 3·3 + 4 + 3 = 16 bytes, im2col
    {2, 1, 13, 37, 5, 3, 4, 2, infer::detail::DirectKind::taps},        // AVX2: stride 4, index up to 15
    {1, 7, 9, 11, 6, 3, 1, 0, infer::detail::DirectKind::channels},     // Winograd: 7×9 output (odd tiles), 7 = 3 pairs + 1
    {1, 2, 5, 40, 9, 3, 1, 2, infer::detail::DirectKind::taps},         // Winograd: 21 tile columns = 3 vectors, 7×42 output
    {2, 3, 3, 4, 5, 3, 1, 0, infer::detail::DirectKind::channels},      // Winograd: a 1×2 output, one tile
};

// The kernel the AVX2 path runs: Winograd for 3×3 stride-1 layers with symmetric weights, else the case's.
infer::detail::DirectKind avx2_kind(const DirectConvCase& cc, const DirectConvProblem& p) {
  const bool symmetric = std::all_of(p.w.params.begin(), p.w.params.end(), [](const AffineParams& q) { return q.zero_point == 0; });
  if (cc.k == 3 && cc.stride == 1 && symmetric) return infer::detail::DirectKind::winograd;
  return cc.avx2 ? cc.kind : infer::detail::DirectKind::none;
}

// Every path, with its direct kernel and with im2col + qgemm, uint8 and float output, against
// conv2d_reference bit for bit.
void check_direct_case(const DirectConvCase& cc, const DirectConvProblem& p, bool relu, AffineParams out) {
  infer::QuantizedConv2d conv(p.w, cc.c, cc.k, cc.stride, cc.pad, p.bias, p.xp, relu);
  if (simd::cpu_has_vbmi()) CHECK(conv.direct_kind(simd::Isa::avx512_vnni) == cc.kind);
  if (simd::cpu_has(simd::Isa::avx2)) CHECK(conv.direct_kind(simd::Isa::avx2) == avx2_kind(cc, p));
  if (simd::cpu_has(simd::Isa::avx2_vnni)) {
    CHECK(conv.direct_kind(simd::Isa::avx2_vnni) == (cc.avx2 ? cc.kind : infer::detail::DirectKind::none));
  }
  CHECK(conv.direct_kind(simd::Isa::scalar) == infer::detail::DirectKind::none);
  const Shape<4> shape = conv.output_shape(p.x.shape());
  Tensor<std::uint8_t, 4> q_ref(shape);
  Tensor<float, 4> y_ref(shape);
  infer::conv2d_reference<std::uint8_t>(p.x.view(), p.xp, p.w, cc.k, cc.stride, cc.pad, p.bias, relu, out, q_ref.view());
  infer::conv2d_reference<float>(p.x.view(), p.xp, p.w, cc.k, cc.stride, cc.pad, p.bias, relu, {}, y_ref.view());
  for_each_arch([&](auto arch) {
    using A = decltype(arch);
    for (const bool direct : {true, false}) {
      INFO(A::name << (direct ? " direct" : " im2col"));
      conv.set_direct(direct);
      Tensor<std::uint8_t, 4> q(shape);
      conv.forward<A>(p.x.view(), out, q.view());
      CHECK(same_tensor_bits(q, q_ref));
      Tensor<float, 4> y(shape);
      conv.forward<A>(p.x.view(), y.view());
      CHECK(same_tensor_bits(y, y_ref));
    }
  });
  conv.set_direct(true);
  CHECK(conv.direct_kind(simd::Isa::scalar) == infer::detail::DirectKind::none);
  conv.set_direct(false);
  CHECK(conv.direct_kind(simd::Isa::avx2) == infer::detail::DirectKind::none);
}

}  // namespace

TEST_CASE("direct conv kernels equal the scalar integer reference bit for bit on every tail, on every path") {
  std::mt19937 rng(23);
  for (const auto& cc : direct_conv_cases) {
    INFO("case n=" << cc.n << " c=" << cc.c << " h=" << cc.h << " w=" << cc.w << " o=" << cc.o << " k=" << cc.k
                   << " stride=" << cc.stride << " pad=" << cc.pad);
    for (const bool zero_points : {false, true}) {
      for (const int xzp : {0, 255, 131}) {
        const auto p = make_direct_problem(cc, rng, zero_points, xzp);
        for (const bool relu : {false, true}) {
          // A wide output scale (few clamps) and a narrow one (many values clamp at 0 and 255).
          check_direct_case(cc, p, relu, AffineParams{0.05f, relu ? 0 : 120});
          check_direct_case(cc, p, relu, AffineParams{0.002f, 77});
        }
      }
    }
  }
}

TEST_CASE("the Winograd kernel is exact at its input-channel bound and steps aside past it") {
  // Every window at the extremes of the int32 bound: 4·Σ x·w = 4·in·9·255·(−128) is just above −2³¹.
  const index_t in = infer::detail::kWinogradMaxChannels;
  CHECK(4 * in * 9 * 255 * 128 < (index_t{1} << 31));
  CHECK(4 * (in + 1) * 9 * 255 * 128 >= (index_t{1} << 31));
  std::mt19937 rng(41);
  std::bernoulli_distribution coin(0.5);
  for (const bool extreme : {true, false}) {
    test_support::ConvProblem p = test_support::make_conv_problem(2, in, 6, 5, 5, 3, rng, false, 0);
    // All 255 against all −128 (the largest sum), or a random mix of the extremes (large transforms of both signs).
    for (index_t i = 0; i < p.x.size(); ++i) p.x.data()[i] = extreme || coin(rng) ? 255 : 0;
    for (index_t i = 0; i < p.w.values.size(); ++i) p.w.values.data()[i] = static_cast<std::int8_t>(extreme || coin(rng) ? -128 : 127);
    infer::QuantizedConv2d conv(p.w, in, 3, 1, 0, p.bias, p.xp, false);
    if (!simd::cpu_has(simd::Isa::avx2)) MINNOW_SKIP("the Winograd kernel runs on AVX2 only");
    CHECK(conv.direct_kind(simd::Isa::avx2) == infer::detail::DirectKind::winograd);
    const Shape<4> shape = conv.output_shape(p.x.shape());
    Tensor<float, 4> ref(shape), y(shape);
    infer::conv2d_reference<float>(p.x.view(), p.xp, p.w, 3, 1, 0, p.bias, false, {}, ref.view());
    conv.forward<infer::arch::avx2>(p.x.view(), y.view());
    CHECK(same_tensor_bits(y, ref));
  }
  test_support::ConvProblem p = test_support::make_conv_problem(1, in + 1, 4, 4, 3, 3, rng, false, 0);
  infer::QuantizedConv2d past(p.w, in + 1, 3, 1, 0, p.bias, p.xp, false);
  CHECK(past.direct_kind(simd::Isa::avx2) != infer::detail::DirectKind::winograd);
}

TEST_CASE("direct conv: samples, threads and the cached output stage change no bit") {
  std::mt19937 rng(29);
  for (const auto& cc : {DirectConvCase{6, 1, 28, 28, 16, 3, 1, 1, infer::detail::DirectKind::taps},
                         DirectConvCase{5, 16, 14, 14, 32, 3, 1, 1, infer::detail::DirectKind::channels},
                         DirectConvCase{5, 16, 14, 14, 32, 3, 1, 1, infer::detail::DirectKind::channels, true, true}}) {
    const auto p = make_direct_problem(cc, rng, !cc.symmetric, 97);  // symmetric weights: Winograd on AVX2
    infer::QuantizedConv2d conv(p.w, cc.c, cc.k, cc.stride, cc.pad, p.bias, p.xp, true);
    const Shape<4> shape = conv.output_shape(p.x.shape());
    const AffineParams a{0.02f, 0}, b{0.07f, 3};
    Tensor<std::uint8_t, 4> two(shape), one(shape), ref_a(shape), ref_b(shape), again_b(shape);
    infer::conv2d_reference<std::uint8_t>(p.x.view(), p.xp, p.w, cc.k, cc.stride, cc.pad, p.bias, true, a, ref_a.view());
    infer::conv2d_reference<std::uint8_t>(p.x.view(), p.xp, p.w, cc.k, cc.stride, cc.pad, p.bias, true, b, ref_b.view());
    set_threads(2);
    conv.forward(p.x.view(), a, two.view());
    set_threads(1);
    conv.forward(p.x.view(), a, one.view());
    set_threads(2);
    CHECK(same_tensor_bits(one, ref_a));
    CHECK(same_tensor_bits(two, ref_a));
    conv.forward(p.x.view(), b, again_b.view());  // new output parameters: the output stage is rebuilt
    CHECK(same_tensor_bits(again_b, ref_b));
    CHECK_FALSE(same_tensor_bits(ref_a, ref_b));  // the two output stages do differ
    // Each sample alone (batch 1) equals its slice of the batch.
    const index_t in_plane = cc.c * cc.h * cc.w, out_plane = shape[1] * shape[2] * shape[3];
    Tensor<std::uint8_t, 4> single({1, shape[1], shape[2], shape[3]});
    for (index_t s = 0; s < cc.n; ++s) {
      const TensorView<const std::uint8_t, 4> xs(p.x.data() + s * in_plane, {1, cc.c, cc.h, cc.w});
      conv.forward(xs, b, single.view());
      CHECK(std::memcmp(single.data(), ref_b.data() + s * out_plane, static_cast<std::size_t>(out_plane)) == 0);
    }
  }
}

TEST_CASE("the vector 2x2 uint8 pool equals the scalar pool on every width and height tail") {
  std::mt19937 rng(31);
  std::uniform_int_distribution<int> u8(0, 255);
  const infer::QuantizedMaxPool2d pool(2);
  for (const index_t h : {2, 3, 5, 28}) {
    for (index_t w = 2; w <= 130; w += (w < 70 ? 1 : 13)) {
      Tensor<std::uint8_t, 4> x({2, 3, h, w});
      for (index_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<std::uint8_t>(u8(rng));
      const Shape<4> shape = pool.output_shape(x.shape());
      Tensor<std::uint8_t, 4> ref(shape);
      // The oracle: max of each window by its definition.
      for (index_t p = 0; p < shape[0] * shape[1]; ++p) {
        for (index_t i = 0; i < shape[2]; ++i) {
          for (index_t j = 0; j < shape[3]; ++j) {
            const std::uint8_t* r0 = x.data() + (p * h + 2 * i) * w + 2 * j;
            ref.data()[(p * shape[2] + i) * shape[3] + j] = std::max({r0[0], r0[1], r0[w], r0[w + 1]});
          }
        }
      }
      INFO("h=" << h << " w=" << w);
      for_each_arch([&](auto arch) {
        Tensor<std::uint8_t, 4> y(shape);
        pool.forward<decltype(arch)>(x.view(), y.view());
        INFO(decltype(arch)::name);
        CHECK(same_tensor_bits(y, ref));
      });
    }
  }
}

TEST_CASE("the fused conv + 2x2 max pool equals the pool of the conv output bit for bit on every path") {
  std::mt19937 rng(37);
  const infer::QuantizedMaxPool2d pool(2);
  for (const auto& cc : direct_conv_cases) {
    INFO("case n=" << cc.n << " c=" << cc.c << " h=" << cc.h << " w=" << cc.w << " o=" << cc.o << " k=" << cc.k
                   << " stride=" << cc.stride << " pad=" << cc.pad);
    for (const bool zero_points : {false, true}) {
      const auto p = make_direct_problem(cc, rng, zero_points, zero_points ? 200 : 0);
      for (const bool relu : {false, true}) {
        infer::QuantizedConv2d conv(p.w, cc.c, cc.k, cc.stride, cc.pad, p.bias, p.xp, relu);
        const Shape<4> full = conv.output_shape(p.x.shape());
        if (full[2] < 2 || full[3] < 2) {
          Tensor<std::uint8_t, 4> y({full[0], full[1], 1, 1});
          CHECK_THROWS_AS(conv.forward_pooled(p.x.view(), {0.05f, 0}, y.view()), shape_error);
          continue;
        }
        for (const AffineParams out : {AffineParams{0.05f, relu ? 0 : 120}, AffineParams{0.002f, 77}}) {
          Tensor<std::uint8_t, 4> conv_ref(full);
          infer::conv2d_reference<std::uint8_t>(p.x.view(), p.xp, p.w, cc.k, cc.stride, cc.pad, p.bias, relu, out,
                                                conv_ref.view());
          const Shape<4> pooled = pool.output_shape(full);
          Tensor<std::uint8_t, 4> ref(pooled);
          pool.forward<infer::arch::scalar>(conv_ref.view(), ref.view());
          for_each_arch([&](auto arch) {
            using A = decltype(arch);
            for (const bool direct : {true, false}) {
              INFO(A::name << (direct ? " direct" : " im2col"));
              conv.set_direct(direct);
              Tensor<std::uint8_t, 4> y(pooled);
              conv.forward_pooled<A>(p.x.view(), out, y.view());
              CHECK(same_tensor_bits(y, ref));
            }
          });
          conv.set_direct(true);
        }
        Tensor<std::uint8_t, 4> wrong({full[0], full[1], full[2] / 2 + 1, full[3] / 2});
        CHECK_THROWS_AS(conv.forward_pooled(p.x.view(), {0.05f, 0}, wrong.view()), shape_error);
      }
    }
  }
}
