// minnow::quant: bits, observers, mappings, granularity, fake quantization + STE, LSQ and Quantizer,
// against PyTorch 1.13 fixtures from tests/fixtures/generate_quant.py (qparams and fake-quant values
// exactly, LSQ scale gradients to 1e-6), the SIMD kernels against their scalar twins bit for bit, the
// NaN / Inf rules, zero representability and every bad input.
#include "fixtures.hpp"
#include "test_support.hpp"

#include <minnow/quant.hpp>
#include <minnow/quant/histogram.hpp>
#include <minnow/quant/mse_observer.hpp>
#include <minnow/quant/percentile.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

using namespace minnow;
using namespace minnow::quant;
using Catch::Matchers::Contains;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();

// ---- compile-time facts ----

static_assert(qint8::range() == QRange{-128, 127});
static_assert(quint8::range() == QRange{0, 255});
static_assert(qint8::range(true) == QRange{-64, 63});
static_assert(quint8::range(true) == QRange{0, 127});
static_assert(Bits<2>::range() == QRange{-2, 1} && Bits<2, false>::range() == QRange{0, 3});
static_assert(Bits<3>::range() == QRange{-4, 3} && Bits<5, false>::range() == QRange{0, 31});
static_assert(qint4::range() == QRange{-8, 7} && quint4::range() == QRange{0, 15});
static_assert(Bits<6>::range() == QRange{-32, 31} && Bits<7, false>::range() == QRange{0, 127});
static_assert(Bits<16>::range() == QRange{-32768, 32767} && Bits<16, false>::range() == QRange{0, 65535});
static_assert(Bits<16>::range(true) == QRange{-16384, 16383});
static_assert(Observer<MinMax> && Observer<MovingAverageMinMax>);
static_assert(UniformMapping<Affine> && UniformMapping<Symmetric> && UniformMapping<PowerOfTwo>);
static_assert(Granularity<PerTensor> && Granularity<PerChannel>);

QRange grid_of(const nlohmann::json& p) {
  const bool rr = p.at("reduce_range").get<bool>();
  return p.at("dtype") == "qint8" ? qint8::range(rr) : quint8::range(rr);
}

ChannelValues<const float> whole(const Tensor<float, 1>& t) { return {t.data(), 1, t.size(), t.size()}; }

std::vector<index_t> shape_of(const nlohmann::json& c, const std::string& name) {
  return c.at("tensors").at(name).at("shape").get<std::vector<index_t>>();
}

bool same_bits(float a, float b) { return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b); }

// Values equal exactly (and -0.0 vs 0.0 distinguished only where PyTorch is).
template <class A, class B>
index_t count_different(const A& a, const B& b) {
  REQUIRE(a.size() == b.size());
  index_t bad = 0;
  for (index_t i = 0; i < a.size(); ++i) bad += static_cast<double>(a.data()[i]) != static_cast<double>(b.data()[i]);
  return bad;
}

}  // namespace

// ---------------------------------------------------------------- observers and mappings vs PyTorch

TEST_CASE("observers and mappings match PyTorch per tensor", "[quant][observer][fixtures]") {
  for (const auto& c : fixtures::cases("quant.json", "observer")) {
    const auto& p = c.at("params");
    INFO(c.at("name").get<std::string>());
    const QRange grid = grid_of(p);
    const bool symmetric = p.at("symmetric").get<bool>();
    const bool moving = p.at("observer") == "moving_average";
    MinMax minmax;
    MovingAverageMinMax average(p.at("averaging_constant").get<float>());
    const int batches = p.at("batches").get<int>();
    for (int b = 0; b < batches; ++b) {
      const auto batch = fixtures::flat<float>(c, "batch" + std::to_string(b));
      if (moving) average.observe(whole(batch));
      else minmax.observe(whole(batch));
      const auto& step = p.at("steps")[static_cast<std::size_t>(b)];
      const Range r = moving ? average.range(grid) : minmax.range(grid);
      CHECK(r.min == step.at("min").get<float>());
      CHECK(r.max == step.at("max").get<float>());
      const AffineParams q = symmetric ? Symmetric{}.qparams(r, grid) : Affine{}.qparams(r, grid);
      CHECK(q.scale == step.at("scale").get<float>());
      CHECK(q.zero_point == step.at("zero_point").get<std::int32_t>());
    }
    if (batches == 0) {  // nothing seen: the Quantizer's defaults are PyTorch's
      CHECK(minmax.empty());
      CHECK(minmax.range().min == 0.0f);
      Quantizer<qint8, MinMax, Affine, PerTensor> q;
      Tensor<float, 1> x({3}, 0.7f), y({3});
      const std::vector<index_t> shape{3};
      q.fake_quantize<float>(x.view(), shape, y.view());
      REQUIRE(q.params().size() == 1);
      CHECK(q.params()[0].scale == p.at("steps")[0].at("scale").get<float>());
      CHECK(q.params()[0].zero_point == p.at("steps")[0].at("zero_point").get<std::int32_t>());
      CHECK(y(0) == 1.0f);
    }
  }
}

TEST_CASE("Uint8PerTensorAffine follows PyTorch's moving average through the Quantizer", "[quant][quantizer][fixtures]") {
  for (const auto& c : fixtures::cases("quant.json", "observer")) {
    const auto& p = c.at("params");
    if (c.at("name") != "moving_average_quint8_aff") continue;
    Uint8PerTensorAffine q;
    for (int b = 0; b < p.at("batches").get<int>(); ++b) {
      const auto batch = fixtures::flat<float>(c, "batch" + std::to_string(b));
      const auto shape = shape_of(c, "batch" + std::to_string(b));
      q.observe(batch.view(), shape);
      const auto& params = q.calculate_params();
      const auto& step = p.at("steps")[static_cast<std::size_t>(b)];
      CHECK(params.at(0).scale == step.at("scale").get<float>());
      CHECK(params.at(0).zero_point == step.at("zero_point").get<std::int32_t>());
    }
  }
}

namespace {

template <class B, class M>
void check_per_channel_case(const nlohmann::json& c) {
  const auto& p = c.at("params");
  Quantizer<B, MinMax, M, PerChannel> q(PerChannel{p.at("axis").get<index_t>()}, MinMax{}, M{},
                                        p.at("reduce_range").get<bool>());
  for (int b = 0; b < p.at("batches").get<int>(); ++b) {
    const auto name = "batch" + std::to_string(b);
    const auto batch = fixtures::flat<float>(c, name);
    q.observe(batch.view(), shape_of(c, name));
    const auto& params = q.calculate_params();
    const auto& step = p.at("steps")[static_cast<std::size_t>(b)];
    const auto scales = step.at("scale").get<std::vector<float>>();
    const auto zps = step.at("zero_point").get<std::vector<std::int32_t>>();
    const auto mins = step.at("min").get<std::vector<float>>();
    const auto maxs = step.at("max").get<std::vector<float>>();
    REQUIRE(params.size() == scales.size());
    for (std::size_t ch = 0; ch < scales.size(); ++ch) {
      INFO("batch " << b << " channel " << ch);
      CHECK(q.observers()[ch].range().min == mins[ch]);
      CHECK(q.observers()[ch].range().max == maxs[ch]);
      CHECK(params[ch].scale == scales[ch]);
      CHECK(params[ch].zero_point == zps[ch]);
    }
  }
}

}  // namespace

TEST_CASE("per-channel MinMax quantizers match PyTorch's PerChannelMinMaxObserver", "[quant][observer][fixtures]") {
  for (const auto& c : fixtures::cases("quant.json", "per_channel_observer")) {
    INFO(c.at("name").get<std::string>());
    const auto& p = c.at("params");
    const bool sym = p.at("symmetric").get<bool>();
    if (p.at("dtype") == "qint8") {
      sym ? check_per_channel_case<qint8, Symmetric>(c) : check_per_channel_case<qint8, Affine>(c);
    } else {
      sym ? check_per_channel_case<quint8, Symmetric>(c) : check_per_channel_case<quint8, Affine>(c);
    }
  }
}

// ---------------------------------------------------------------- fake quantization vs PyTorch

namespace {

template <class T>
void check_fake_quant_case(const nlohmann::json& c) {
  const auto& p = c.at("params");
  const AffineParams params{p.at("scale").get<float>(), p.at("zero_point").get<std::int32_t>()};
  const QRange grid{p.at("qmin").get<std::int32_t>(), p.at("qmax").get<std::int32_t>()};
  const auto x = fixtures::flat<T>(c, "x");
  const auto dy = fixtures::flat<T>(c, "dy");
  const auto y_ref = fixtures::flat<T>(c, "y");
  const auto dx_ref = fixtures::flat<T>(c, "dx");
  Tensor<T, 1> y(x.shape()), dx(x.shape()), dx2(x.shape());
  Tensor<std::uint8_t, 1> mask(x.shape());
  fake_quantize<T, 1>(x.view(), params, grid, y.view());
  CHECK(count_different(y, y_ref) == 0);
  fake_quantize_backward<T, 1>(x.view(), dy.view(), params, grid, dx.view());
  CHECK(count_different(dx, dx_ref) == 0);
  // The fused forward writes the same values and a mask that gives the same gradient.
  y.fill(T(0));
  fake_quantize<T, 1>(x.view(), params, grid, y.view(), mask.view());
  CHECK(count_different(y, y_ref) == 0);
  fake_quantize_backward<T, 1>(mask.view(), dy.view(), dx2.view());
  CHECK(count_different(dx2, dx_ref) == 0);
}

}  // namespace

TEST_CASE("fake_quantize per tensor matches PyTorch: values, ties, clamping, STE", "[quant][fake_quantize][fixtures]") {
  for (const auto& c : fixtures::cases("quant.json", "fake_quant")) {
    INFO(c.at("name").get<std::string>());
    if (c.at("params").at("double").get<bool>()) {
      check_fake_quant_case<double>(c);
    } else {
      check_fake_quant_case<float>(c);
    }
  }
}

TEST_CASE("fake_quantize per channel matches PyTorch", "[quant][fake_quantize][fixtures]") {
  for (const auto& c : fixtures::cases("quant.json", "fake_quant_channel")) {
    INFO(c.at("name").get<std::string>());
    const auto& p = c.at("params");
    const auto scales = p.at("scales").get<std::vector<float>>();
    const auto zps = p.at("zero_points").get<std::vector<std::int32_t>>();
    std::vector<AffineParams> params;
    for (std::size_t i = 0; i < scales.size(); ++i) params.push_back({scales[i], zps[i]});
    const QRange grid{p.at("qmin").get<std::int32_t>(), p.at("qmax").get<std::int32_t>()};
    const ChannelLayout layout = PerChannel{p.at("axis").get<index_t>()}.layout(shape_of(c, "x"));
    const auto x = fixtures::flat<float>(c, "x");
    const auto dy = fixtures::flat<float>(c, "dy");
    Tensor<float, 1> y(x.shape()), dx(x.shape());
    fake_quantize<float, 1>(x.view(), layout, params, grid, y.view());
    CHECK(count_different(y, fixtures::flat<float>(c, "y")) == 0);
    fake_quantize_backward<float, 1>(x.view(), dy.view(), layout, params, grid, dx.view());
    CHECK(count_different(dx, fixtures::flat<float>(c, "dx")) == 0);
    Tensor<std::uint8_t, 1> mask(x.shape());
    fake_quantize<float, 1>(x.view(), layout, params, grid, y.view(), mask.view());
    fake_quantize_backward<float, 1>(mask.view(), dy.view(), dx.view());
    CHECK(count_different(dx, fixtures::flat<float>(c, "dx")) == 0);
  }
}

// ---------------------------------------------------------------- LSQ vs PyTorch

TEST_CASE("LSQ forward and gradients match PyTorch's learnable fake quantize", "[quant][lsq][fixtures]") {
  for (const auto& c : fixtures::cases("quant.json", "lsq")) {
    INFO(c.at("name").get<std::string>());
    const auto& p = c.at("params");
    const AffineParams params{p.at("scale").get<float>(), p.at("zero_point").get<std::int32_t>()};
    const QRange grid{p.at("qmin").get<std::int32_t>(), p.at("qmax").get<std::int32_t>()};
    const auto x = fixtures::flat<float>(c, "x");
    const auto dy = fixtures::flat<float>(c, "dy");
    Tensor<float, 1> y(x.shape()), dx(x.shape());
    lsq_forward<float, 1>(x.view(), params, grid, y.view());
    CHECK(count_different(y, fixtures::flat<float>(c, "y")) == 0);
    const double ds = lsq_backward<float, 1>(x.view(), dy.view(), params, grid, p.at("grad_factor").get<double>(), dx.view());
    CHECK(count_different(dx, fixtures::flat<float>(c, "dx")) == 0);
    const double ds_ref = p.at("dscale").get<double>();
    // The scale's gradient sums one float term per element; whether the compiler fuses a term's multiply
    // and add (FMA contraction, on at -O2, off at -O1) moves the sum by up to 2e-6 relative here: the bound
    // is 1e-5 relative, which holds either way.
    CHECK(std::abs(ds - ds_ref) <= 1e-5 * std::max(1.0, std::abs(ds_ref)));
    if (c.at("name") == "lsq_init") {
      const float s0 = lsq_init_scale<float, 1>(x.view(), grid);
      CHECK(std::abs(s0 - params.scale) <= 1e-6f * params.scale);
      CHECK(lsq_grad_factor(1000, grid) == Approx(1.0 / std::sqrt(127000.0)));
    }
  }
  for (const auto& c : fixtures::cases("quant.json", "lsq_channel")) {
    INFO(c.at("name").get<std::string>());
    const auto& p = c.at("params");
    const auto scales = p.at("scales").get<std::vector<float>>();
    const auto zps = p.at("zero_points").get<std::vector<std::int32_t>>();
    std::vector<AffineParams> params;
    for (std::size_t i = 0; i < scales.size(); ++i) params.push_back({scales[i], zps[i]});
    const QRange grid{p.at("qmin").get<std::int32_t>(), p.at("qmax").get<std::int32_t>()};
    const ChannelLayout layout = PerChannel{p.at("axis").get<index_t>()}.layout(shape_of(c, "x"));
    const auto x = fixtures::flat<float>(c, "x");
    const auto dy = fixtures::flat<float>(c, "dy");
    Tensor<float, 1> y(x.shape()), dx(x.shape());
    fake_quantize<float, 1>(x.view(), layout, params, grid, y.view());
    CHECK(count_different(y, fixtures::flat<float>(c, "y")) == 0);
    std::vector<double> ds(params.size());
    lsq_backward<float, 1>(x.view(), dy.view(), layout, params, grid, p.at("grad_factor").get<double>(), dx.view(), ds);
    CHECK(count_different(dx, fixtures::flat<float>(c, "dx")) == 0);
    const auto ds_ref = p.at("dscale").get<std::vector<double>>();
    for (std::size_t ch = 0; ch < ds.size(); ++ch) {
      CHECK(std::abs(ds[ch] - ds_ref[ch]) <= 1e-6 * std::max(1.0, std::abs(ds_ref[ch])));
    }
  }
}

// ---------------------------------------------------------------- minnow's own rules

TEST_CASE("symmetric, restricted and power-of-two mappings", "[quant][mapping]") {
  // Restricted int8: ±max land exactly on ±127.
  const Symmetric restricted{true};
  const AffineParams r = restricted.qparams({-2.0f, 1.0f}, qint8::range());
  CHECK(r.scale == 2.0f / 127.0f);
  CHECK(r.zero_point == 0);
  CHECK(restricted.grid(qint8::range()) == QRange{-127, 127});
  CHECK(restricted.qparams({0.0f, 1.0f}, quint8::range()).zero_point == 128);
  CHECK(restricted.grid(quint8::range()) == QRange{1, 255});
  // Unsigned symmetric: the middle of the grid, also with reduce_range (PyTorch would say 128).
  CHECK(Symmetric{}.qparams({-1.0f, 1.0f}, quint8::range()).zero_point == 128);
  CHECK(Symmetric{}.qparams({-1.0f, 1.0f}, quint8::range(true)).zero_point == 64);
  CHECK(Symmetric{}.qparams({-1.0f, 1.0f}, quint4::range()).zero_point == 8);
  // Power of two: rounded up, never below the symmetric scale, exact powers stay.
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<float> u(1e-6f, 1e4f);
  for (int i = 0; i < 1000; ++i) {
    const Range range{-u(rng), u(rng)};
    const float s = Symmetric{}.qparams(range, qint8::range()).scale;
    const float p2 = PowerOfTwo{}.qparams(range, qint8::range()).scale;
    int e = 0;
    CHECK(std::frexp(p2, &e) == 0.5f);
    CHECK(p2 >= s);
    CHECK(p2 < 2.0f * s);
  }
  CHECK(PowerOfTwo{}.qparams({-127.5f, 0.0f}, qint8::range()).scale == 1.0f);
  CHECK(PowerOfTwo{}.qparams({0.0f, 0.0f}, qint8::range()).scale == kEps);
  CHECK(PowerOfTwo{true}.qparams({-127.0f, 10.0f}, qint8::range()).scale == 1.0f);
  CHECK(mapped_grid(PowerOfTwo{true}, qint8::range()) == QRange{-127, 127});
  CHECK(mapped_grid(Affine{}, qint8::range()) == qint8::range());
}

namespace {

template <class B>
void check_zero_exact(std::mt19937_64& rng) {
  for (const bool rr : {false, true}) {
    const QRange full = B::range(rr);
    std::uniform_real_distribution<float> u(-100.0f, 100.0f);
    std::vector<Range> ranges = {{0.0f, 0.0f}, {-1.0f, 1.0f}, {2.0f, 3.0f}, {-3.0f, -2.0f}, {-1e-30f, 1e-30f}};
    for (int i = 0; i < 200; ++i) {
      float a = u(rng), b = u(rng) * std::pow(10.0f, static_cast<float>(static_cast<int>(rng() % 9) - 4));
      ranges.push_back({std::min(a, b), std::max(a, b)});
    }
    const auto check = [&](const auto& mapping) {
      const QRange grid = mapped_grid(mapping, full);
      if (grid.qmin == grid.qmax) {  // restricting a 2-level grid (2 bits, reduce_range) leaves one level
        CHECK_THROWS_AS(mapping.qparams(Range{-1.0f, 1.0f}, full), value_error);
        return;
      }
      for (const Range& range : ranges) {
        const AffineParams p = mapping.qparams(range, full);
        REQUIRE(p.zero_point >= grid.qmin);
        REQUIRE(p.zero_point <= grid.qmax);
        Tensor<float, 1> x({2}), y({2});
        x(0) = 0.0f;
        x(1) = -0.0f;
        fake_quantize<float, 1>(x.view(), p, grid, y.view());
        REQUIRE(y(0) == 0.0f);
        REQUIRE(y(1) == 0.0f);
      }
    };
    check(Affine{});
    check(Symmetric{});
    check(Symmetric{true});
    check(PowerOfTwo{});
    check(PowerOfTwo{true});
  }
}

}  // namespace

TEST_CASE("zero is exactly representable in every mapping and bit width", "[quant][mapping]") {
  std::mt19937_64 rng(11);
  check_zero_exact<Bits<2>>(rng);
  check_zero_exact<Bits<2, false>>(rng);
  check_zero_exact<Bits<3>>(rng);
  check_zero_exact<Bits<3, false>>(rng);
  check_zero_exact<qint4>(rng);
  check_zero_exact<quint4>(rng);
  check_zero_exact<Bits<5>>(rng);
  check_zero_exact<Bits<6, false>>(rng);
  check_zero_exact<Bits<7>>(rng);
  check_zero_exact<qint8>(rng);
  check_zero_exact<quint8>(rng);
  check_zero_exact<Bits<16>>(rng);
  check_zero_exact<Bits<16, false>>(rng);
}

TEST_CASE("a quantizer that saw only NaN has not observed: default parameters, not a data-derived scale", "[quant][nan]") {
  Tensor<float, 1> all_nan({64}, kNaN);
  const std::vector<index_t> shape{64};
  Uint8PerTensorAffine q;
  q.observe(all_nan.view(), shape);
  CHECK_FALSE(q.observed());
  CHECK(q.calculate_params().front().scale == 1.0f);  // PyTorch's default before any data, not 1.19e-7
  CHECK(q.calculate_params().front().zero_point == 0);
  // Per channel: one channel with data is enough to have observed; NaN-only channels keep the default.
  Tensor<float, 1> rows({2 * 4}, kNaN);
  rows(4) = 1.0f;
  rows(5) = -1.0f;
  Int8PerChannelSymmetric pc;
  const std::vector<index_t> matrix{2, 4};
  pc.observe(rows.view(), matrix);
  CHECK(pc.observed());
  // Every observer tells whether it holds data.
  CHECK(Histogram{}.empty());
  CHECK(MseOptimal{}.empty());
  CHECK(Percentile{99.0}.empty());
  // Real data after the NaN batch is observed as usual.
  Tensor<float, 1> data({4});
  data(0) = -1.0f;
  data(3) = 2.0f;
  const std::vector<index_t> four{4};
  q.observe(data.view(), four);
  CHECK(q.observed());
  CHECK(q.calculate_params().front().scale == Approx(3.0f / 255.0f));
}

TEST_CASE("NaN is ignored by observers and propagated by fake_quantize, Inf clamps", "[quant][nan]") {
  Tensor<float, 1> v({6});
  v(0) = 1.0f;
  v(1) = kNaN;
  v(2) = -2.0f;
  v(3) = kNaN;
  v(4) = 0.5f;
  v(5) = 0.25f;
  MinMax m;
  m.observe(whole(v));
  CHECK(m.range().min == -2.0f);
  CHECK(m.range().max == 1.0f);
  Tensor<float, 1> all_nan({40}, kNaN);
  MinMax n;
  n.observe(whole(all_nan));
  CHECK(n.empty());
  MovingAverageMinMax a;
  a.observe(whole(all_nan));
  CHECK(a.empty());
  a.observe(whole(v));
  CHECK(a.range().min == -2.0f);

  // fake_quantize: NaN -> NaN with zero gradient, ±Inf and huge values -> ends of the grid, zero gradient.
  Tensor<float, 1> x({5}), y({5}), dy({5}, 1.0f), dx({5});
  x(0) = kNaN;
  x(1) = kInf;
  x(2) = -kInf;
  x(3) = 1e30f;
  x(4) = -1e30f;
  const AffineParams p{0.5f, 3};
  fake_quantize<float, 1>(x.view(), p, qint8::range(), y.view());
  CHECK(std::isnan(y(0)));
  CHECK(y(1) == (127 - 3) * 0.5f);
  CHECK(y(2) == (-128 - 3) * 0.5f);
  CHECK(y(3) == (127 - 3) * 0.5f);
  CHECK(y(4) == (-128 - 3) * 0.5f);
  fake_quantize_backward<float, 1>(x.view(), dy.view(), p, qint8::range(), dx.view());
  for (index_t i = 0; i < 5; ++i) CHECK(dx(i) == 0.0f);

  // An observer that saw infinity: qparams throw instead of returning an infinite scale.
  Tensor<float, 1> w({3});
  w(0) = 1.0f;
  w(1) = kInf;
  w(2) = -1.0f;
  Int8PerTensorSymmetric q;
  const std::vector<index_t> shape{3};
  q.observe(w.view(), shape);
  CHECK_THROWS_AS(q.calculate_params(), value_error);
  CHECK_THROWS_WITH(q.calculate_params(), Contains("inf"));
  MovingAverageMinMax ma;
  ma.observe(whole(w));
  ma.observe(whole(v));
  CHECK(ma.range().max == kInf);  // sticky, no NaN
  ma.reset();
  CHECK(ma.empty());
}

// ---------------------------------------------------------------- SIMD vs scalar

namespace {

Tensor<float, 1> awkward_values(index_t n, float scale, std::uint64_t seed) {
  Tensor<float, 1> x({n});
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 60.0f * scale);
  const float inv = 1.0f / scale;
  for (index_t i = 0; i < n; ++i) {
    switch (rng() % 16) {
      case 0: x(i) = (static_cast<float>(static_cast<int>(rng() % 300) - 150) + 0.5f) / inv; break;  // ties
      case 1: x(i) = kNaN; break;
      case 2: x(i) = (rng() & 1) ? kInf : -kInf; break;
      case 3: x(i) = static_cast<float>(static_cast<int>(rng() % 300) - 150) * scale; break;  // grid points
      default: x(i) = g(rng);
    }
  }
  return x;
}

/// Bit-for-bit equality, NaN payloads and signs included.
void require_same_bits(const float* a, const float* b, index_t n) {
  index_t bad = 0;
  for (index_t i = 0; i < n; ++i) bad += !same_bits(a[i], b[i]);
  REQUIRE(bad == 0);
}

}  // namespace

TEST_CASE("fake_quantize and MinMax equal the scalar twins on every path, threaded and streaming", "[quant][simd]") {
  const AffineParams p{0.0371f, 7};
  const QRange grid = qint8::range();
  const auto c = quant::detail::constants<float>(p, grid);
  constexpr simd::arch::scalar twin{};
  // Sizes that hit the tails, an odd size above the threading threshold, and one above the streaming threshold.
  for (const index_t n : {index_t{1}, index_t{15}, index_t{16}, index_t{17}, index_t{1000003}, index_t{4194319}}) {
    for (const index_t offset : {index_t{0}, index_t{1}}) {  // aligned and unaligned starts
      const auto x = awkward_values(n + offset, p.scale, static_cast<std::uint64_t>(n));
      const auto dy = awkward_values(n + offset, 1.0f, 99);
      const TensorView<const float, 1> xv(x.data() + offset, {n}), dyv(dy.data() + offset, {n});
      Tensor<float, 1> y_ref({n}), dx_ref({n});
      Tensor<std::uint8_t, 1> mask_ref({n});
      simd::detail::fake_quant_forward_mask(twin, xv.data(), y_ref.data(), mask_ref.data(), n, c, false);
      simd::detail::fake_quant_backward(twin, xv.data(), dyv.data(), dx_ref.data(), n, c, false);
      const auto range_ref = simd::detail::minmax(twin, xv.data(), n);

      for_each_arch([&](auto arch) {
        // The public entry points run the path under test.
        const IsaCeiling ceiling(decltype(arch)::isa);
        INFO("path " << decltype(arch)::name << ", n = " << n << ", offset = " << offset);
        Tensor<float, 1> y({n + offset}), dx({n + offset});
        Tensor<std::uint8_t, 1> mask({n + offset});
        const TensorView<float, 1> yv(y.data() + offset, {n}), dxv(dx.data() + offset, {n});
        const TensorView<std::uint8_t, 1> mv(mask.data() + offset, {n});

        fake_quantize<float, 1>(xv, p, grid, yv);
        require_same_bits(yv.data(), y_ref.data(), n);

        y.fill(0.0f);
        fake_quantize<float, 1>(xv, p, grid, yv, mv);
        require_same_bits(yv.data(), y_ref.data(), n);
        REQUIRE(std::memcmp(mv.data(), mask_ref.data(), static_cast<std::size_t>(n)) == 0);

        fake_quantize_backward<float, 1>(xv, dyv, p, grid, dxv);
        require_same_bits(dxv.data(), dx_ref.data(), n);

        dx.fill(0.0f);
        fake_quantize_backward<float, 1>(TensorView<const std::uint8_t, 1>(mv), dyv, dxv);
        require_same_bits(dxv.data(), dx_ref.data(), n);

        // The observer's threaded sweep equals the scalar twin on the whole array.
        MinMax observer;
        observer.observe(ChannelValues<const float>{xv.data(), 1, n, n});
        REQUIRE(same_bits(observer.range().min, range_ref.min));
        REQUIRE(same_bits(observer.range().max, range_ref.max));
      });
    }
  }
}

// ---------------------------------------------------------------- kernels: every path vs the scalar twin

namespace {

/// Lengths that hit every head, body and tail case of 8- and 16-float vectors, and one that streams.
constexpr index_t kKernelLengths[] = {0, 1, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, 4099};
/// Elements past the end that a kernel must leave alone.
constexpr index_t kGuard = 16;

/// Special values, exact ties of `scale` (a power of two here), grid points, values beyond the grid and
/// plain noise, in a fixed random order.
std::vector<float> special_values(index_t n, float scale, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 80.0f * scale);
  const float specials[] = {kNaN, -kNaN, kInf, -kInf, 0.0f, -0.0f, 1e30f, -1e30f,
                            std::numeric_limits<float>::max(), std::numeric_limits<float>::lowest(),
                            std::numeric_limits<float>::denorm_min(), -std::numeric_limits<float>::min(),
                            std::bit_cast<float>(0x7fa00001u) /* signalling NaN */, std::bit_cast<float>(0xffc12345u)};
  std::vector<float> x(static_cast<std::size_t>(n));
  for (auto& v : x) {
    switch (rng() % 8) {
      case 0: v = specials[rng() % std::size(specials)]; break;
      case 1: v = (static_cast<float>(static_cast<int>(rng() % 600) - 300) + 0.5f) * scale; break;  // exact ties
      case 2: v = static_cast<float>(static_cast<int>(rng() % 600) - 300) * scale; break;            // grid points
      case 3: v = static_cast<float>(static_cast<int>(rng() % 4000) - 2000) * scale; break;          // beyond the grid
      default: v = g(rng);
    }
  }
  return x;
}

bool same_bytes(const void* a, const void* b, index_t bytes) {
  return std::memcmp(a, b, static_cast<std::size_t>(bytes)) == 0;
}

struct KernelCase {
  AffineParams params;
  QRange grid;
};

/// Grids whose ends are reached from both sides: int8 with an awkward scale, uint8 (lo = 0) and int4
/// with power-of-two scales (exact ties), and a zero point at the grid's end.
const KernelCase kKernelCases[] = {
    {{0.0371f, 7}, qint8::range()}, {{0.25f, 0}, quint8::range()}, {{0.5f, -3}, qint4::range()},
    {{0.125f, 127}, qint8::range()}};

}  // namespace

TEST_CASE("fake-quant kernels: every path equals the scalar twin bit for bit", "[quant][simd][kernels]") {
  constexpr simd::arch::scalar twin{};
  for_each_arch([&](auto arch) {
    for (const KernelCase& kc : kKernelCases) {
      const auto c = quant::detail::constants<float>(kc.params, kc.grid);
      for (const index_t n : kKernelLengths) {
        for (const index_t offset : {index_t{0}, index_t{1}, index_t{5}}) {  // aligned and unaligned starts
          for (const bool stream : {false, true}) {
            INFO("path " << decltype(arch)::name << ", scale " << kc.params.scale << ", n = " << n << ", offset = "
                         << offset << ", stream = " << stream);
            const index_t total = offset + n + kGuard;
            const auto x = special_values(total, kc.params.scale, static_cast<std::uint64_t>(n * 3 + offset));
            const auto dy = special_values(total, 1.0f, static_cast<std::uint64_t>(n + 77));
            std::vector<std::uint8_t> m(static_cast<std::size_t>(total));
            std::mt19937_64 rng(static_cast<std::uint64_t>(n));
            const std::uint8_t mask_values[] = {0, 1, 0, 1, 2, 255, 0};  // any nonzero byte passes the gradient
            for (auto& b : m) b = mask_values[rng() % std::size(mask_values)];

            // Outputs start as garbage; the guard past the end must survive.
            std::vector<float> y(static_cast<std::size_t>(total), -7.0f), y_ref = y;
            simd::detail::fake_quant_forward(arch, x.data() + offset, y.data() + offset, n, c, stream);
            simd::detail::fake_quant_forward(twin, x.data() + offset, y_ref.data() + offset, n, c, false);
            REQUIRE(same_bytes(y.data(), y_ref.data(), total * 4));

            std::vector<float> y2(static_cast<std::size_t>(total), 3.0f), y2_ref = y2;
            std::vector<std::uint8_t> mask(static_cast<std::size_t>(total), 9), mask_ref = mask;
            simd::detail::fake_quant_forward_mask(arch, x.data() + offset, y2.data() + offset, mask.data() + offset, n, c, stream);
            simd::detail::fake_quant_forward_mask(twin, x.data() + offset, y2_ref.data() + offset, mask_ref.data() + offset, n, c,
                                    false);
            REQUIRE(same_bytes(y2.data(), y2_ref.data(), total * 4));
            REQUIRE(same_bytes(mask.data(), mask_ref.data(), total));

            std::vector<float> dx(static_cast<std::size_t>(total), -1.0f), dx_ref = dx;
            simd::detail::fake_quant_backward(arch, x.data() + offset, dy.data() + offset, dx.data() + offset, n, c, stream);
            simd::detail::fake_quant_backward(twin, x.data() + offset, dy.data() + offset, dx_ref.data() + offset, n, c, false);
            REQUIRE(same_bytes(dx.data(), dx_ref.data(), total * 4));

            // The recorded mask gives the same gradient as recomputing it from x.
            std::vector<float> dxm(static_cast<std::size_t>(total), -1.0f);
            simd::detail::ste_mask_backward(arch, mask.data() + offset, dy.data() + offset, dxm.data() + offset, n, stream);
            REQUIRE(same_bytes(dxm.data(), dx_ref.data(), total * 4));

            // Masks with other nonzero bytes, and dx written over dy (in place).
            std::vector<float> g = dy, g_ref = dy;
            simd::detail::ste_mask_backward(arch, m.data() + offset, g.data() + offset, g.data() + offset, n, stream);
            simd::detail::ste_mask_backward(twin, m.data() + offset, g_ref.data() + offset, g_ref.data() + offset, n, false);
            REQUIRE(same_bytes(g.data(), g_ref.data(), total * 4));

            // The forward in place (y over x).
            std::vector<float> inplace = x;
            simd::detail::fake_quant_forward(arch, inplace.data() + offset, inplace.data() + offset, n, c, stream);
            std::copy(x.begin(), x.begin() + offset, y_ref.begin());
            std::copy(x.begin() + offset + n, x.end(), y_ref.begin() + offset + n);
            REQUIRE(same_bytes(inplace.data(), y_ref.data(), total * 4));
          }
        }
      }
    }
  });
}

TEST_CASE("fake-quant kernels: NaN, infinities, ties to even and the grid's ends on every path",
          "[quant][simd][kernels]") {
  const QRange grid = qint4::range();                               // [-8, 7]
  const auto c = quant::detail::constants<float>({0.5f, 1}, grid);  // inv = 2
  // 17 values: one whole 16-float vector (two of 8) and a tail.
  const std::vector<float> x = {kNaN, kInf, -kInf, 1e30f, -1e30f, 0.25f, 0.75f, -0.25f, -0.75f,
                                1.25f, 3.0f, 3.25f, -4.5f, -4.75f, -0.0f, 100.0f, 1.75f};
  // q = 1 + rint(2x): ties 0.5, 1.5, -0.5, -1.5, 2.5, 6.5, -9.5, 3.5 go to the even neighbour; 3.25 lands on
  // qmax, -4.5 on qmin, -4.75 just below it.
  const std::vector<float> expected_y = {kNaN, 3.0f, -4.5f, 3.0f, -4.5f, 0.0f, 1.0f, 0.0f, -1.0f,
                                         1.0f, 3.0f, 3.0f, -4.5f, -4.5f, 0.0f, 3.0f, 2.0f};
  const std::vector<std::uint8_t> expected_in = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1};
  const auto n = static_cast<index_t>(x.size());
  const std::vector<float> dy(x.size(), 2.5f);
  for_each_arch([&](auto arch) {
    INFO("path " << decltype(arch)::name);
    std::vector<float> y(x.size()), dx(x.size());
    std::vector<std::uint8_t> in(x.size());
    simd::detail::fake_quant_forward_mask(arch, x.data(), y.data(), in.data(), n, c, false);
    simd::detail::fake_quant_backward(arch, x.data(), dy.data(), dx.data(), n, c, false);
    for (std::size_t i = 0; i < x.size(); ++i) {
      INFO("x = " << x[i]);
      if (std::isnan(expected_y[i])) CHECK(std::isnan(y[i]));
      else CHECK(same_bits(y[i], expected_y[i]));
      CHECK(in[i] == expected_in[i]);
      CHECK(same_bits(dx[i], expected_in[i] ? 2.5f : 0.0f));
    }
  });
}

TEST_CASE("min/max sweep: every path equals the scalar twin bit for bit", "[quant][simd][kernels]") {
  constexpr simd::arch::scalar twin{};
  const auto check_all = [&](const std::vector<float>& v, index_t offset, index_t n) {
    const auto expected = simd::detail::minmax(twin, v.data() + offset, n);
    for_each_arch([&](auto arch) {
      INFO("path " << decltype(arch)::name << ", n = " << n << ", offset = " << offset);
      const auto got = simd::detail::minmax(arch, v.data() + offset, n);
      REQUIRE(same_bits(got.min, expected.min));
      REQUIRE(same_bits(got.max, expected.max));
    });
    return expected;
  };
  for (const index_t n : kKernelLengths) {
    for (const index_t offset : {index_t{0}, index_t{1}, index_t{5}}) {
      const auto size = static_cast<std::size_t>(offset + n + kGuard);
      // Mixed special values: NaN skipped, infinities kept, both zeros.
      check_all(special_values(offset + n + kGuard, 0.1f, static_cast<std::uint64_t>(n + offset)), offset, n);

      // Only NaN (with extremes just outside the range read): empty.
      std::vector<float> nan(size, kNaN);
      if (offset > 0) nan[static_cast<std::size_t>(offset) - 1] = -5.0f;
      nan[static_cast<std::size_t>(offset + n)] = 5.0f;
      CHECK(check_all(nan, offset, n).empty());

      // One extreme at a time at the first element, a vector boundary or the last element (the tail),
      // among NaN and ones, with bigger values just outside the range read.
      for (const index_t at : {index_t{0}, index_t{7}, index_t{8}, index_t{16}, n - 1}) {
        if (at < 0 || at >= n) continue;
        for (const float extreme : {-3.0f, 4.0f, kInf, -kInf}) {
          std::vector<float> w(size, 1.0f);
          for (std::size_t i = 0; i < size; i += 3) w[i] = kNaN;
          if (offset > 0) w[static_cast<std::size_t>(offset) - 1] = -1e9f;
          for (index_t i = offset + n; i < offset + n + kGuard; ++i) w[static_cast<std::size_t>(i)] = 1e9f;
          w[static_cast<std::size_t>(offset + at)] = extreme;
          const auto r = check_all(w, offset, n);
          CHECK((extreme < 1.0f ? r.min : r.max) == extreme);
        }
      }
    }
  }
  // Zeros of both signs, in any order and lane: a zero min or max is +0 on every path.
  for (const index_t n : {index_t{1}, index_t{2}, index_t{17}, index_t{33}, index_t{64}}) {
    for (int pattern = 0; pattern < 4; ++pattern) {
      std::vector<float> z(static_cast<std::size_t>(n), -0.0f);  // pattern 0: only -0
      for (index_t i = 0; i < n; ++i) {
        if ((pattern == 1 && i % 3 == 1) || (pattern == 2 && i == 0) || (pattern == 3 && i == n - 1)) {
          z[static_cast<std::size_t>(i)] = 0.0f;
        }
      }
      if (n > 2) z[static_cast<std::size_t>(n / 2)] = kNaN;
      INFO("n = " << n << ", pattern " << pattern);
      const auto r = check_all(z, 0, n);
      CHECK(same_bits(r.min, 0.0f));
      CHECK(same_bits(r.max, 0.0f));
    }
  }
}

TEST_CASE("per-channel fake quantization equals per-tensor on each channel", "[quant][fake_quantize]") {
  // Axis 1 of [3, 5, 37]: runs of 37 elements, channels interleaved, split over threads anywhere.
  for (const std::vector<index_t>& shape : {std::vector<index_t>{3, 5, 37}, std::vector<index_t>{7000, 5, 1},
                                            std::vector<index_t>{40, 5, 1000}}) {
    const ChannelLayout layout = PerChannel{1}.layout(shape);
    const index_t n = layout.outer * layout.channels * layout.inner;
    const auto x = awkward_values(n, 0.02f, 5);
    const std::vector<AffineParams> params = {{0.02f, 0}, {0.1f, -3}, {0.005f, 10}, {1.0f, 0}, {0.3f, 127}};
    Tensor<float, 1> y({n}), dx({n}), dy({n}, 1.0f);
    fake_quantize<float, 1>(x.view(), layout, params, qint8::range(), y.view());
    fake_quantize_backward<float, 1>(x.view(), dy.view(), layout, params, qint8::range(), dx.view());
    for (index_t i = 0; i < n; ++i) {
      const auto ch = static_cast<std::size_t>((i / layout.inner) % layout.channels);
      const auto c = quant::detail::constants<float>(params[ch], qint8::range());
      float expected = 0.0f, grad = 0.0f;
      simd::detail::fake_quant_forward(simd::arch::scalar{}, &x(i), &expected, 1, c, false);
      simd::detail::fake_quant_backward(simd::arch::scalar{}, &x(i), &dy(i), &grad, 1, c, false);
      if (!(same_bits(y(i), expected) || (std::isnan(y(i)) && std::isnan(expected)))) FAIL("forward differs at " << i);
      if (!same_bits(dx(i), grad)) FAIL("backward differs at " << i);
    }
  }
}

// ---------------------------------------------------------------- Quantizer

TEST_CASE("Quantizer: freeze, channel count, double tensors, backward", "[quant][quantizer]") {
  std::mt19937_64 rng(1);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const std::vector<index_t> shape{4, 3, 3, 3};
  Tensor<float, 1> w({108}), y({108}), dy({108}, 1.0f), dx({108});
  for (index_t i = 0; i < w.size(); ++i) w(i) = g(rng) * static_cast<float>(1 + i / 27);
  Int8PerChannelSymmetric q;
  q.observe(w.view(), shape);
  q.fake_quantize<float>(w.view(), shape, y.view());
  const auto before = q.params();
  REQUIRE(before.size() == 4);
  for (index_t c = 0; c < 4; ++c) {
    float m = 0.0f;
    for (index_t i = c * 27; i < (c + 1) * 27; ++i) m = std::max(m, std::abs(w(i)));
    CHECK(before[static_cast<std::size_t>(c)].scale == m / 127.5f);
  }
  q.backward<float>(w.view(), dy.view(), dx.view());
  // Everything observed lies inside, except a positive channel maximum: max / scale = 127.5 rounds to
  // 128 (half to even) and is clamped, exactly as in PyTorch's symmetric scheme.
  for (index_t i = 0; i < w.size(); ++i) {
    const float s = before[static_cast<std::size_t>(i / 27)].scale;
    CHECK(dx(i) == (std::nearbyint(w(i) * (1.0f / s)) <= 127.0f ? 1.0f : 0.0f));
  }

  // Frozen: observe is ignored.
  q.freeze();
  CHECK(q.frozen());
  Tensor<float, 1> big({108}, 100.0f);
  q.observe(big.view(), shape);
  q.fake_quantize<float>(big.view(), shape, y.view());
  CHECK(q.params()[0].scale == before[0].scale);
  q.unfreeze();
  q.observe(big.view(), shape);
  q.fake_quantize<float>(big.view(), shape, y.view());
  CHECK(q.params()[0].scale == 100.0f / 127.5f);

  // Channel count is fixed by the first observe.
  const std::vector<index_t> other{6, 18};
  CHECK_THROWS_AS(q.observe(w.view(), other), shape_error);
  CHECK_THROWS_WITH(q.observe(w.view(), other), Contains("6 channels") && Contains("observed 4"));
  CHECK_THROWS_AS((q.fake_quantize<float>(w.view(), other, y.view())), shape_error);
  const std::vector<index_t> wrong_size{4, 3, 3, 2};
  CHECK_THROWS_AS(q.observe(w.view(), wrong_size), shape_error);

  // Double tensors through the same parameters: the double formula channel by channel.
  Tensor<double, 1> wd({108}), yd({108}), dyd({108}, 2.0), dxd({108});
  for (index_t i = 0; i < w.size(); ++i) wd(i) = w(i);
  q.fake_quantize<double>(wd.view(), shape, yd.view());
  for (index_t i = 0; i < w.size(); ++i) {
    const auto c = quant::detail::constants<double>(q.params()[static_cast<std::size_t>(i / 27)], qint8::range());
    double expected = 0.0;
    simd::detail::fake_quant_forward(simd::arch::scalar{}, &wd(i), &expected, 1, c, false);
    CHECK(yd(i) == expected);
  }
  q.backward<double>(wd.view(), shape, dyd.view(), dxd.view());
  CHECK(dxd(0) == 2.0);

  // Per tensor, reduce_range and a 4-bit grid.
  Quantizer<qint8, MinMax, Affine, PerTensor> rr(PerTensor{}, MinMax{}, Affine{}, true);
  CHECK(rr.grid() == QRange{-64, 63});
  Int4PerChannelSymmetric q4;
  q4.observe(w.view(), shape);
  q4.fake_quantize<float>(w.view(), shape, y.view());
  CHECK(q4.params()[0].scale > 0.0f);
  for (index_t i = 0; i < 27; ++i) CHECK(std::abs(y(i) / q4.params()[0].scale) <= 8.0f);
  q4.reset();
  CHECK(q4.observers().empty());

  // Restricted symmetric through the quantizer clamps at −127.
  Quantizer<qint8, MinMax, Symmetric, PerTensor> qr(PerTensor{}, MinMax{}, Symmetric{true});
  Tensor<float, 1> v({2});
  v(0) = -1.0f;
  v(1) = 1.0f;
  const std::vector<index_t> s2{2};
  qr.observe(v.view(), s2);
  v(0) = -5.0f;
  qr.fake_quantize<float>(v.view(), s2, v.view());
  CHECK(v(0) == -1.0f);
  CHECK(v(1) == 1.0f);
}

namespace {

/// A user-defined codebook mapping: `levels` centroids spread linearly over the observed range.
struct LinearCodebook {
  int levels = 4;
  [[nodiscard]] Codebook fit(Range range, QRange grid, ChannelValues<const float>) const {
    const int k = static_cast<int>(std::min<std::int64_t>(levels, grid.levels()));
    Codebook book;
    for (int i = 0; i < k; ++i) book.centroids.push_back(range.min + (range.max - range.min) * static_cast<float>(i) / static_cast<float>(k - 1));
    return book;
  }
};
static_assert(CodebookMapping<LinearCodebook> && !UniformMapping<LinearCodebook>);

}  // namespace

TEST_CASE("codebook forward: nearest centroid, ties to the lower one, Quantizer with a codebook mapping",
          "[quant][codebook]") {
  const Codebook book{{-1.0f, 0.0f, 0.5f, 2.0f}};
  Tensor<float, 1> x({9}), y({9});
  const float in[9] = {-5.0f, -0.5f, 0.25f, 0.3f, 1.25f, 3.0f, kNaN, kInf, -0.0f};
  const float out[9] = {-1.0f, -1.0f, 0.0f, 0.5f, 0.5f, 2.0f, kNaN, 2.0f, 0.0f};
  for (index_t i = 0; i < 9; ++i) x(i) = in[i];
  fake_quantize<float, 1>(x.view(), book, y.view());
  for (index_t i = 0; i < 9; ++i) {
    if (std::isnan(out[i])) CHECK(std::isnan(y(i)));
    else CHECK(y(i) == out[i]);
  }
  Quantizer<Bits<2>, MinMax, LinearCodebook, PerChannel> q;
  const std::vector<index_t> shape{2, 3};
  Tensor<float, 1> w({6}), wq({6}), dy({6}, 3.0f), dx({6});
  const float values[6] = {0.0f, 1.0f, 3.0f, -3.0f, 0.0f, 0.9f};
  for (index_t i = 0; i < 6; ++i) w(i) = values[i];
  CHECK_THROWS_AS((q.fake_quantize<float>(w.view(), shape, wq.view())), value_error);  // nothing to fit yet
  q.observe(w.view(), shape);
  q.fake_quantize<float>(w.view(), shape, wq.view());
  REQUIRE(q.params().size() == 2);
  CHECK(q.params()[0].centroids == std::vector<float>{0.0f, 1.0f, 2.0f, 3.0f});
  CHECK(wq(0) == 0.0f);
  CHECK(wq(2) == 3.0f);
  CHECK(wq(5) == q.params()[1].centroids.back());  // channel 1: centroids over [−3, 0.9]
  q.backward<float>(w.view(), dy.view(), dx.view());
  CHECK(dx(3) == 3.0f);
}

// ---------------------------------------------------------------- bad input

TEST_CASE("bad input throws typed errors naming the values", "[quant][errors]") {
  Tensor<float, 1> x({8}, 1.0f), y({8}), small({7});
  const QRange grid = qint8::range();
  const auto fq = [&](AffineParams p) { fake_quantize<float, 1>(x.view(), p, grid, y.view()); };
  CHECK_THROWS_AS(fq({0.0f, 0}), value_error);
  CHECK_THROWS_AS(fq({-1.0f, 0}), value_error);
  CHECK_THROWS_AS(fq({kNaN, 0}), value_error);
  CHECK_THROWS_AS(fq({kInf, 0}), value_error);
  CHECK_THROWS_AS(fq({1e-45f, 0}), value_error);  // reciprocal overflows
  CHECK_THROWS_WITH(fq({-1.0f, 0}), Contains("-1"));
  CHECK_THROWS_AS(fq({1.0f, 128}), value_error);
  CHECK_THROWS_WITH(fq({1.0f, -129}), Contains("-129") && Contains("[-128, 127]"));
  CHECK_THROWS_AS((fake_quantize<float, 1>(x.view(), {1.0f, 0}, QRange{5, 4}, y.view())), value_error);
  CHECK_THROWS_AS((fake_quantize<float, 1>(x.view(), {1.0f, 0}, grid, small.view())), shape_error);
  CHECK_THROWS_WITH((fake_quantize<float, 1>(x.view(), {1.0f, 0}, grid, small.view())), Contains("[7]") && Contains("[8]"));
  CHECK_THROWS_AS((fake_quantize_backward<float, 1>(x.view(), small.view(), {1.0f, 0}, grid, y.view())), shape_error);

  // Per channel: parameter count, layout, a bad channel named.
  const ChannelLayout layout = PerChannel{0}.layout(std::vector<index_t>{2, 4});
  const std::vector<AffineParams> one = {{1.0f, 0}};
  const std::vector<AffineParams> two_bad = {{1.0f, 0}, {0.0f, 0}};
  CHECK_THROWS_AS((fake_quantize<float, 1>(x.view(), layout, one, grid, y.view())), shape_error);
  CHECK_THROWS_WITH((fake_quantize<float, 1>(x.view(), layout, one, grid, y.view())), Contains("1 per-channel") && Contains("2 channels"));
  CHECK_THROWS_WITH((fake_quantize<float, 1>(x.view(), layout, two_bad, grid, y.view())), Contains("channel 1"));
  CHECK_THROWS_AS((fake_quantize<float, 1>(x.view(), ChannelLayout{1, 2, 3}, std::vector<AffineParams>(2), grid, y.view())), shape_error);
  std::vector<double> ds(1);
  CHECK_THROWS_AS((lsq_backward<float, 1>(x.view(), x.view(), layout, std::vector<AffineParams>(2), grid, 1.0, y.view(), ds)),
                  shape_error);

  // Granularity.
  CHECK_THROWS_AS((PerChannel{2}.layout(std::vector<index_t>{3, 4})), shape_error);
  CHECK_THROWS_WITH((PerChannel{2}.layout(std::vector<index_t>{3, 4})), Contains("axis 2") && Contains("[3, 4]"));
  CHECK_THROWS_AS((PerChannel{-1}.layout(std::vector<index_t>{3, 4})), shape_error);
  CHECK_THROWS_AS((PerTensor{}.layout(std::vector<index_t>{3, -4})), shape_error);
  CHECK(PerTensor{}.layout(std::vector<index_t>{3, 4}).inner == 12);

  // Mappings.
  for (const Range bad : {Range{-kInf, 1.0f}, Range{0.0f, kInf}, Range{kNaN, 1.0f}, Range{2.0f, 1.0f}}) {
    CHECK_THROWS_AS(Affine{}.qparams(bad, grid), value_error);
    CHECK_THROWS_AS(Symmetric{}.qparams(bad, grid), value_error);
    CHECK_THROWS_AS(PowerOfTwo{}.qparams(bad, grid), value_error);
  }
  CHECK_THROWS_WITH(Affine{}.qparams({2.0f, 1.0f}, grid), Contains("[2, 1]"));
  const float big = std::numeric_limits<float>::max();
  CHECK_THROWS_AS(Affine{}.qparams({-big, big}, QRange{0, 1}), value_error);  // hi − lo overflows
  CHECK_THROWS_AS(Affine{}.qparams({-1.0f, 1.0f}, QRange{3, 3}), value_error);

  // Observers, codebooks, LSQ.
  CHECK_THROWS_AS(MovingAverageMinMax(0.0f), value_error);
  CHECK_THROWS_AS(MovingAverageMinMax(1.5f), value_error);
  CHECK_THROWS_AS((fake_quantize<float, 1>(x.view(), Codebook{}, y.view())), value_error);
  CHECK_THROWS_AS((fake_quantize<float, 1>(x.view(), Codebook{{1.0f, 0.0f}}, y.view())), value_error);
  CHECK_THROWS_AS((fake_quantize<float, 1>(x.view(), Codebook{{0.0f, kNaN}}, y.view())), value_error);
  CHECK_THROWS_AS((lsq_init_scale<float, 1>(TensorView<const float, 1>(), grid)), value_error);
  CHECK(lsq_init_scale<float, 1>(Tensor<float, 1>({4}, 0.0f).view(), grid) == kEps);
  CHECK_THROWS_AS(lsq_grad_factor(0, grid), value_error);
  CHECK_THROWS_AS((lsq_backward<float, 1>(x.view(), x.view(), {1.0f, 0}, grid, kNaN, y.view())), value_error);

  // Quantizer backward before any forward.
  Int8PerChannelSymmetric q;
  CHECK_THROWS_AS((q.backward<float>(x.view(), x.view(), y.view())), value_error);
}
