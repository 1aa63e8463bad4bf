// The fused Conv2d → ReLU → MaxPool2d(2, 2) step against the three layers run one by one: the forward
// must match bit for bit, the gradients (weight, bias and input, from the sparse channels-last kernels) to
// float rounding, and the unfused double network bounds both. Shapes exercise every tail: channel counts
// that are not a multiple of the 8-channel tile or of a vector, odd maps (the pool drops the last row and
// column), kernels 1 to 5, padding 0 and 2, and receptive fields longer than the 8-vector register block.
// The Winograd kernels and the fused forward are compared bit for bit across every path this CPU runs.
#include <minnow/nn/activations.hpp>
#include <minnow/nn/conv2d.hpp>
#include <minnow/nn/conv_relu_pool.hpp>
#include <minnow/nn/maxpool2d.hpp>
#include <minnow/nn/models.hpp>
#include <minnow/nn/sequential.hpp>
#include <minnow/simd/winograd_relu_pool.hpp>
#include <minnow/threads.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

using namespace minnow;
using test_support::fill_normal;
using test_support::max_error;

namespace {

struct BlockCase {
  index_t n, in, out, kernel, padding, height, width;
};

/// Random input, weights and bias for one WinogradReluPool geometry.
struct WinogradCase {
  simd::WinogradGeometry g;
  std::vector<float> x, weight, bias;

  WinogradCase(const simd::WinogradGeometry& geometry, std::mt19937& rng)
      : g(geometry),
        x(static_cast<std::size_t>(g.in_channels * g.height * g.width)),
        weight(static_cast<std::size_t>(g.out_channels * g.in_channels * 9)),
        bias(static_cast<std::size_t>(g.out_channels)) {
    fill_normal(x.data(), static_cast<index_t>(x.size()), rng);
    fill_normal(weight.data(), static_cast<index_t>(weight.size()), rng);
    fill_normal(bias.data(), static_cast<index_t>(bias.size()), rng);
  }

  /// The pooled values and winners of every output channel with the kernels of `tag`, 32 channels per run.
  template <class Arch>
  [[nodiscard]] std::pair<std::vector<float>, std::vector<std::int32_t>> run(Arch tag) const {
    simd::WinogradReluPool winograd;
    winograd.set_weights(g, weight.data());
    winograd.reserve(g, 1);
    const auto size = static_cast<std::size_t>(g.out_channels * g.tiles());
    std::pair<std::vector<float>, std::vector<std::int32_t>> out{std::vector<float>(size), std::vector<std::int32_t>(size)};
    for (index_t first = 0; first < g.out_channels; first += 32) {
      winograd.run(tag, g, x.data(), 0, bias.data(), first, std::min<index_t>(32, g.out_channels - first), out.first.data(),
                   out.second.data(), 0);
    }
    return out;
  }
};

template <class T, std::size_t R>
std::vector<std::remove_const_t<T>> copy_of(TensorView<T, R> v) {
  return {v.data(), v.data() + v.size()};
}

// conv → ReLU → pool as three layers of type T, with the same parameters as `source`.
template <class T>
struct Block {
  nn::Conv2d<T> conv;
  nn::ReLU<T> relu;
  nn::MaxPool2d<T> pool{2};
  explicit Block(nn::Conv2d<float>& source)
      : conv(source.in_channels(), source.out_channels(), source.kernel(), 1, source.padding()) {
    for (index_t i = 0; i < conv.weight().size(); ++i) conv.weight().data()[i] = static_cast<T>(source.weight().data()[i]);
    for (index_t i = 0; i < conv.bias().size(); ++i) conv.bias().data()[i] = static_cast<T>(source.bias().data()[i]);
    conv.set_needs_input_grad(true);
  }
  nn::Activations<T> forward(nn::Activations<T> x) {
    return pool.forward(relu.forward(conv.forward(x, nn::Mode::train), nn::Mode::train), nn::Mode::train);
  }
  nn::Activations<T> backward(nn::Activations<T> dy) { return conv.backward(relu.backward(pool.backward(dy))); }
};

template <class T>
Tensor<T, 4> cast(const Tensor<float, 4>& t) {
  Tensor<T, 4> out(t.shape());
  for (index_t i = 0; i < t.size(); ++i) out.data()[i] = static_cast<T>(t.data()[i]);
  return out;
}

}  // namespace

TEST_CASE("fused Conv2d+ReLU+MaxPool2d equals the three layers: forward bit for bit (direct kernel) or to "
          "rounding (Winograd), gradients to rounding") {
  std::mt19937 rng(11);
  const BlockCase cases[] = {
      {3, 1, 16, 3, 1, 28, 28},   // the student's conv1: one input channel
      {2, 16, 32, 3, 1, 14, 14},  // the student's conv2
      {2, 3, 20, 3, 1, 9, 11},    // odd map: the pool drops a row and a column; a partial channel tile
      {2, 4, 9, 5, 2, 12, 10},    // 5×5 kernel, padding 2
      {2, 2, 5, 3, 0, 10, 10},    // no padding
      {2, 20, 6, 1, 0, 6, 8},     // 1×1 kernel: a receptive-field row of 20 floats (a vector and a tail)
      {2, 64, 12, 3, 1, 6, 6},    // a field of 576 floats: several 8-vector blocks
      {2, 12, 20, 3, 1, 9, 11},   // Winograd: channels not a multiple of a vector, odd map (partial tiles dropped)
      {2, 8, 7, 3, 0, 10, 9},     // Winograd without padding, fewer output channels than a vector
      {1, 16, 40, 3, 1, 14, 14},  // Winograd on one sample: a block of 32 output channels and a partial one
      {2, 24, 16, 3, 1, 8, 8},    // Winograd: a full 16-channel chunk of the input transform, then a partial one
  };
  for (const auto& c : cases) {
   for (const auto algorithm : {nn::ConvAlgorithm::direct, nn::ConvAlgorithm::automatic}) {
    const bool exact = algorithm == nn::ConvAlgorithm::direct;
    INFO("n " << c.n << " in " << c.in << " out " << c.out << " k " << c.kernel << " p " << c.padding << " "
              << c.height << "×" << c.width << (exact ? " direct" : " automatic"));
    nn::Conv2d<float> conv(c.in, c.out, c.kernel, 1, c.padding);
    conv.set_algorithm(algorithm);
    fill_normal(conv.weight().data(), conv.weight().size(), rng);
    fill_normal(conv.bias().data(), conv.bias().size(), rng);
    nn::MaxPool2d<float> pool(2);
    nn::ConvReluPool fused(conv, pool);
    REQUIRE(fused.applicable());
    CHECK(fused.uses_winograd() == (!exact && c.kernel == 3 && c.in >= 8));
    Block<float> layers(conv);
    Block<double> reference(conv);

    Tensor<float, 4> x({c.n, c.in, c.height, c.width});
    fill_normal(x.data(), x.size(), rng);
    // Some exact zeros: ReLU's zero gradient at 0.
    for (index_t i = 0; i < x.size(); i += 7) x.data()[i] = 0.0f;
    const Tensor<double, 4> xd = cast<double>(x);

    const auto y = copy_of(fused.forward(x.view()));
    const auto y_layers = layers.forward(x.view());
    const auto y_reference = reference.forward(xd.view());
    REQUIRE(y.size() == static_cast<std::size_t>(y_layers.size()));
    if (exact) {
      for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == y_layers.data()[i]);
    }
    CHECK(max_error(y.data(), y_layers.data(), y_layers.size()) < 1e-5);
    CHECK(max_error(y.data(), y_reference.data(), y_reference.size()) < 1e-5);

    Tensor<float, 4> dy(y_layers.shape());
    fill_normal(dy.data(), dy.size(), rng);
    const Tensor<double, 4> dyd = cast<double>(dy);
    const auto dx = copy_of(fused.backward(dy.view(), true));
    const auto dw = copy_of(conv.weight_grad());
    const auto db = copy_of(conv.bias_grad());
    const auto dx_layers = layers.backward(dy.view());
    const auto dx_reference = reference.backward(dyd.view());
    REQUIRE(dx.size() == static_cast<std::size_t>(x.size()));
    CHECK(max_error(dx.data(), dx_layers.data(), x.size()) < 1e-5);
    CHECK(max_error(dx.data(), dx_reference.data(), x.size()) < 1e-5);
    CHECK(max_error(dw.data(), layers.conv.weight_grad().data(), conv.weight().size()) < 1e-4);
    CHECK(max_error(dw.data(), reference.conv.weight_grad().data(), conv.weight().size()) < 1e-4);
    CHECK(max_error(db.data(), reference.conv.bias_grad().data(), conv.bias().size()) < 1e-5);

    // Without the input gradient: the same parameter gradients, an empty view.
    conv.weight_grad().fill(0.0f);
    CHECK(fused.backward(dy.view(), false).size() == 0);
    CHECK(copy_of(conv.weight_grad()) == dw);
   }
  }
}

TEST_CASE("WinogradReluPool: every path equals the scalar twin bit for bit") {
  std::mt19937 rng(23);
  // Input channels that are and are not multiples of 4, 8 and 16; blocks of 16 and 32 output channels, full
  // and partial; tile counts that are not multiples of the 12- (AVX-512) or 6-tile (AVX2, NEON) register blocks.
  const simd::WinogradGeometry cases[] = {
      {16, 32, 1, 14, 14}, {12, 20, 1, 9, 11}, {8, 7, 0, 10, 9}, {24, 40, 1, 8, 8}, {20, 16, 0, 7, 13}, {9, 33, 1, 5, 5},
  };
  for (const auto& g : cases) {
    WinogradCase c(g, rng);
    c.x[3] = 0.0f;  // a -0 or exact 0 after the transforms exercises ReLU's "only < 0" rule
    const auto expected = c.run(simd::arch::scalar{});
    for_each_arch([&](auto arch) {
      INFO(decltype(arch)::name << ": in " << g.in_channels << " out " << g.out_channels << " p " << g.padding << " " << g.height
                                << "×" << g.width);
      const auto got = c.run(arch);
      CHECK(test_support::raw(got.first) == test_support::raw(expected.first));
      CHECK(got.second == expected.second);
    });
  }
}

TEST_CASE("WinogradReluPool: NaN and infinite inputs give NaN in the same places and the same winners on every path") {
  std::mt19937 rng(29);
  WinogradCase c({12, 20, 1, 9, 11}, rng);
  // A NaN, a +inf and a −inf pixel in different channels and tiles: the transforms turn ∞ into NaN (∞ − ∞).
  const auto plane = static_cast<std::size_t>(c.g.height * c.g.width);
  c.x[5] = std::numeric_limits<float>::quiet_NaN();
  c.x[2 * plane + 40] = std::numeric_limits<float>::infinity();
  c.x[7 * plane + 77] = -std::numeric_limits<float>::infinity();
  const auto size = static_cast<std::size_t>(c.g.out_channels * c.g.tiles());
  const auto expected = c.run(simd::arch::scalar{});
  std::size_t nans = 0;
  for (const float v : expected.first) nans += std::isnan(v) ? 1 : 0;
  CHECK(nans > 0);
  CHECK(nans < size);
  for_each_arch([&](auto arch) {
    INFO(decltype(arch)::name);
    const auto got = c.run(arch);
    // A NaN's payload depends on which operand the hardware propagates, so NaN is compared as NaN.
    for (std::size_t i = 0; i < size; ++i) {
      INFO("output " << i);
      CHECK(std::isnan(got.first[i]) == std::isnan(expected.first[i]));
      if (!std::isnan(expected.first[i])) {
        CHECK(std::bit_cast<std::uint32_t>(got.first[i]) == std::bit_cast<std::uint32_t>(expected.first[i]));
      }
    }
    CHECK(got.second == expected.second);
  });
}

TEST_CASE("sparse gradient kernels: every path equals the scalar twin bit for bit") {
  std::mt19937 rng(31);
  std::vector<float> src(4096);
  fill_normal(src.data(), static_cast<index_t>(src.size()), rng);
  // Lengths around every block size (4, 2 and 1 chains; 8- and 16-lane tails; several 128-float blocks)
  // and entry counts below, at and past the chains' groups.
  for (const index_t length : {1, 3, 8, 15, 16, 17, 31, 33, 48, 63, 64, 65, 100, 127, 128, 129, 144, 200, 257, 300}) {
    for (const index_t count : {0, 1, 2, 3, 4, 5, 7, 9, 12}) {
      std::vector<simd::SparseGradEntry> entries(static_cast<std::size_t>(count));
      std::uniform_int_distribution<index_t> offset(0, static_cast<index_t>(src.size()) - length);
      for (auto& e : entries) e = {offset(rng), static_cast<float>(std::normal_distribution<double>()(rng))};
      std::vector<float> start(static_cast<std::size_t>(length) + 1);
      fill_normal(start.data(), static_cast<index_t>(start.size()), rng);
      std::vector<float> expected = start;
      simd::accumulate_weighted_rows(simd::arch::scalar{}, src.data(), length, entries.data(), count, expected.data());
      for_each_arch([&](auto arch) {
        INFO(decltype(arch)::name << " length " << length << " count " << count);
        std::vector<float> sum = start;
        simd::accumulate_weighted_rows(arch, src.data(), length, entries.data(), count, sum.data());
        CHECK(test_support::raw(sum) == test_support::raw(expected));
      });
    }
  }
  // The receptive field's addition, over segments of 3 to 60 floats (8- and 16-lane tails).
  for (const index_t channels : {1, 3, 5, 16, 20}) {
    const simd::ChannelsLastGeometry g{channels, 3, 1, 6, 7};
    std::vector<float> field(static_cast<std::size_t>(g.kernel * g.segment()));
    std::vector<float> start(static_cast<std::size_t>(g.size()));
    fill_normal(field.data(), static_cast<index_t>(field.size()), rng);
    fill_normal(start.data(), static_cast<index_t>(start.size()), rng);
    const index_t offset = g.offset_of(2, 3);
    std::vector<float> expected = start;
    simd::add_receptive_field(simd::arch::scalar{}, g, field.data(), offset, expected.data());
    for_each_arch([&](auto arch) {
      INFO(decltype(arch)::name << " channels " << channels);
      std::vector<float> padded = start;
      simd::add_receptive_field(arch, g, field.data(), offset, padded.data());
      CHECK(test_support::raw(padded) == test_support::raw(expected));
    });
  }
}

TEST_CASE("fused step: the forward and backward are bit-identical on every path") {
  std::mt19937 rng(29);
  for (const auto algorithm : {nn::ConvAlgorithm::direct, nn::ConvAlgorithm::automatic}) {
    nn::Conv2d<float> conv(16, 20, 3, 1, 1);
    conv.set_algorithm(algorithm);
    fill_normal(conv.weight().data(), conv.weight().size(), rng);
    fill_normal(conv.bias().data(), conv.bias().size(), rng);
    nn::MaxPool2d<float> pool(2);
    nn::ConvReluPool fused(conv, pool);
    Tensor<float, 4> x({3, 16, 13, 15}), dy({3, 20, 6, 7});
    fill_normal(x.data(), x.size(), rng);
    fill_normal(dy.data(), dy.size(), rng);
    const auto run = [&] {
      std::vector<std::vector<float>> out;
      out.push_back(copy_of(fused.forward(x.view())));
      out.push_back(copy_of(fused.backward(dy.view(), true)));
      out.push_back(copy_of(conv.weight_grad()));
      out.push_back(copy_of(conv.bias_grad()));
      return out;
    };
    const auto raw = [](const std::vector<std::vector<float>>& v) {
      std::vector<std::vector<unsigned char>> bytes;
      for (const auto& part : v) bytes.push_back(test_support::raw(part));
      return bytes;
    };
    std::vector<std::vector<float>> expected;
    {
      const IsaCeiling scalar(simd::Isa::scalar);
      expected = run();
    }
    for (const auto isa : {simd::Isa::avx2, simd::Isa::avx512}) {
      if (!simd::cpu_has(isa)) continue;
      const IsaCeiling ceiling(isa);
      INFO(simd::isa_name(isa) << (algorithm == nn::ConvAlgorithm::direct ? " direct" : " automatic"));
      CHECK(raw(run()) == raw(expected));
    }
  }
}

TEST_CASE("fused step: where every window is negative nothing flows back, exactly") {
  std::mt19937 rng(5);
  nn::Conv2d<float> conv(3, 10, 3, 1, 1);
  fill_normal(conv.weight().data(), conv.weight().size(), rng);
  conv.bias().fill(-1e3f);  // every convolution output < 0, so ReLU gives 0 and the pool ties at 0
  nn::MaxPool2d<float> pool(2);
  nn::ConvReluPool fused(conv, pool);
  Tensor<float, 4> x({2, 3, 8, 8}), dy({2, 10, 4, 4});
  fill_normal(x.data(), x.size(), rng);
  fill_normal(dy.data(), dy.size(), rng);
  const auto y = fused.forward(x.view());
  for (index_t i = 0; i < y.size(); ++i) REQUIRE(y.data()[i] == 0.0f);
  const auto dx = fused.backward(dy.view(), true);
  for (index_t i = 0; i < dx.size(); ++i) REQUIRE(dx.data()[i] == 0.0f);
  for (index_t i = 0; i < conv.weight_grad().size(); ++i) REQUIRE(conv.weight_grad().data()[i] == 0.0f);
  for (index_t i = 0; i < conv.bias_grad().size(); ++i) REQUIRE(conv.bias_grad().data()[i] == 0.0f);
}

TEST_CASE("fused step: equal maxima go to the first of the window, on both forward algorithms") {
  std::mt19937 rng(17);
  for (const auto algorithm : {nn::ConvAlgorithm::direct, nn::ConvAlgorithm::automatic}) {
    // Zero weights and a positive bias: every convolution output equals its bias, so each window is a
    // four-way tie, and only the pool's rule decides where the gradient goes (into dW through x).
    nn::Conv2d<float> conv(16, 8, 3, 1, 1);
    conv.set_algorithm(algorithm);
    conv.weight().fill(0.0f);
    for (index_t o = 0; o < 8; ++o) conv.bias().data()[o] = 0.5f + static_cast<float>(o);
    nn::MaxPool2d<float> pool(2);
    nn::ConvReluPool fused(conv, pool);
    Block<float> layers(conv);
    Tensor<float, 4> x({2, 16, 6, 6}), dy({2, 8, 3, 3});
    fill_normal(x.data(), x.size(), rng);
    fill_normal(dy.data(), dy.size(), rng);
    const auto y = copy_of(fused.forward(x.view()));
    const auto y_layers = layers.forward(x.view());
    for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == y_layers.data()[i]);
    (void)fused.backward(dy.view(), true);
    (void)layers.backward(dy.view());
    CHECK(max_error(conv.weight_grad().data(), layers.conv.weight_grad().data(), conv.weight().size()) < 1e-5);
  }
}

TEST_CASE("fused step: weights changed in place between forwards are used (the Winograd transform is redone)") {
  std::mt19937 rng(19);
  nn::Conv2d<float> conv(16, 32, 3, 1, 1);
  fill_normal(conv.weight().data(), conv.weight().size(), rng);
  fill_normal(conv.bias().data(), conv.bias().size(), rng);
  nn::MaxPool2d<float> pool(2);
  nn::ConvReluPool fused(conv, pool);
  Tensor<float, 4> x({1, 16, 14, 14});
  fill_normal(x.data(), x.size(), rng);
  (void)fused.forward(x.view());
  // As an optimizer step or a pruning mask would: one weight changes, in place.
  conv.weight().data()[5] += 3.0f;
  const auto y = copy_of(fused.forward(x.view()));
  Block<float> layers(conv);
  const auto y_layers = layers.forward(x.view());
  CHECK(max_error(y.data(), y_layers.data(), y_layers.size()) < 1e-5);
}

TEST_CASE("Sequential fuses Conv2d → ReLU → MaxPool2d(2) triples, and only those") {
  auto student = nn::make_student<float>(1);
  CHECK(student.fused_steps() == 2);
  student.set_fusion(false);
  CHECK(student.fused_steps() == 0);
  student.set_fusion(true);
  // A layer between ReLU and the pool breaks the triple; a GEMM-only convolution cannot run fused.
  student.insert_after("relu1", "relu1b", nn::ReLU<float>());
  CHECK(student.fused_steps() == 1);
  dynamic_cast<nn::Conv2d<float>&>(student.layer(student.index_of("conv2"))).set_algorithm(nn::ConvAlgorithm::im2col_gemm);
  CHECK(student.fused_steps() == 0);
  // Other pools and scalar types are not fused.
  nn::Sequential<float> other;
  other.add("conv", nn::Conv2d<float>(1, 4, 3, 1, 1));
  other.add("relu", nn::ReLU<float>());
  other.add("pool", nn::MaxPool2d<float>(3));
  CHECK(other.fused_steps() == 0);
  CHECK(nn::make_student<double>(1).fused_steps() == 0);
}

TEST_CASE("a fused network trains like the unfused one and reports shape errors the same way") {
  std::mt19937 rng(9);
  auto fused = nn::make_student<float>(3), plain = nn::make_student<float>(3);
  plain.set_fusion(false);
  Tensor<float, 4> x({4, 1, 28, 28}), dy({4, 10, 1, 1});
  fill_normal(x.data(), x.size(), rng);
  fill_normal(dy.data(), dy.size(), rng);
  const auto y = copy_of(fused.forward(x.view(), nn::Mode::train));
  const auto y_plain = plain.forward(x.view(), nn::Mode::train);
  // Winograd's conv2 rounds differently from the direct kernel.
  CHECK(max_error(y.data(), y_plain.data(), y_plain.size()) < 1e-5);
  fused.backward(dy.view());
  plain.backward(dy.view());
  const auto p = fused.parameters(), q = plain.parameters();
  REQUIRE(p.size() == q.size());
  for (std::size_t k = 0; k < p.size(); ++k) {
    INFO(p[k].name);
    CHECK(max_error(p[k].grad.data(), q[k].grad.data(), p[k].grad.size()) < 1e-4);
  }
  Tensor<float, 4> wrong({4, 3, 28, 28});
  CHECK_THROWS_AS(fused.forward(wrong.view(), nn::Mode::train), shape_error);
  CHECK(test_support::message_of<shape_error>([&] { (void)fused.forward(wrong.view(), nn::Mode::train); }).find("Conv2d(1, 16") != std::string::npos);
  (void)fused.forward(x.view(), nn::Mode::train);
  Tensor<float, 4> wrong_grad({4, 9, 1, 1});
  CHECK_THROWS_AS(fused.backward(wrong_grad.view()), shape_error);
}

#if defined(_OPENMP)
TEST_CASE("fused step: bit-identical for a given thread count, the forward for any") {
  std::mt19937 rng(13);
  nn::Conv2d<float> conv(16, 32, 3, 1, 1);
  fill_normal(conv.weight().data(), conv.weight().size(), rng);
  fill_normal(conv.bias().data(), conv.bias().size(), rng);
  nn::MaxPool2d<float> pool(2);
  nn::ConvReluPool fused(conv, pool);
  Tensor<float, 4> x({5, 16, 14, 14}), dy({5, 32, 7, 7});
  fill_normal(x.data(), x.size(), rng);
  fill_normal(dy.data(), dy.size(), rng);
  const int saved = omp_get_max_threads();
  const auto run = [&](int threads) {
    set_threads(threads);
    std::vector<std::vector<float>> out;
    out.push_back(copy_of(fused.forward(x.view())));
    out.push_back(copy_of(fused.backward(dy.view(), true)));
    out.push_back(copy_of(conv.weight_grad()));
    return out;
  };
  for (const auto algorithm : {nn::ConvAlgorithm::direct, nn::ConvAlgorithm::automatic}) {
    conv.set_algorithm(algorithm);
    const auto one = run(1), two = run(2), again = run(2);
    CHECK(one[0] == two[0]);
    CHECK(two == again);
    CHECK(max_error(one[2].data(), two[2].data(), static_cast<index_t>(one[2].size())) < 1e-5);
  }
  set_threads(saved);
}
#endif
