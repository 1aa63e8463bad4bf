// The direct stride-1 convolution (forward, and the input gradient as a convolution with rotated weights)
// against im2col + GEMM in double, on shapes that exercise every tail: channel counts that are not a
// multiple of the 8-channel tile, rows shorter and longer than a vector and not a multiple of it, kernels
// 1 to 5, padding 0 up to k − 1 and beyond (which falls back to col2im for the input gradient). Every path
// this CPU runs is compared with the scalar twin bit for bit.
#include <minnow/nn/conv2d.hpp>
#include <minnow/simd/direct_conv.hpp>
#include <minnow/threads.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <utility>
#include <vector>

using namespace minnow;
using test_support::fill_normal;
using test_support::max_error;

namespace {

struct ConvCase {
  index_t n, in, out, kernel, padding, height, width;
};

// A float Conv2d with random parameters, its random input and output gradient.
struct FloatConv {
  nn::Conv2d<float> conv;
  Tensor<float, 4> x, dy;
  FloatConv(index_t n, index_t in, index_t out, index_t height, index_t width, std::mt19937& rng)
      : conv(in, out, 3, 1, 1), x({n, in, height, width}), dy({n, out, height, width}) {
    fill_normal(conv.weight().data(), conv.weight().size(), rng);
    fill_normal(conv.bias().data(), conv.bias().size(), rng);
    conv.set_needs_input_grad(true);
    fill_normal(x.data(), x.size(), rng);
    fill_normal(dy.data(), dy.size(), rng);
  }
  // Copies of y and dL/dx after a forward and a backward pass.
  std::pair<Tensor<float, 4>, Tensor<float, 4>> run() {
    std::pair<Tensor<float, 4>, Tensor<float, 4>> out;
    const auto y = conv.forward(x.view(), nn::Mode::train);
    out.first.resize(y.shape());
    out.first.view().copy_from(y);
    const auto dx = conv.backward(dy.view());
    out.second.resize(dx.shape());
    out.second.view().copy_from(dx);
    return out;
  }
};

}  // namespace

TEST_CASE("direct_conv_tile: every path equals the scalar twin bit for bit") {
  std::mt19937 rng(5);
  // Rows of 1 to 48 outputs: whole and partial 16-lane vectors, AVX2 halves of 8 that are full, partial or
  // absent; row counts that leave 1 or 2 vectors for the last register tile; 1 to 17 output channels
  // (partial tiles of fewer and more than 4 channels); kernels 1 to 5.
  const simd::DirectConvGeometry cases[] = {
      {1, 16, 3, 1, 28, 28}, {16, 32, 3, 1, 14, 14}, {3, 5, 3, 0, 9, 9},  {2, 9, 1, 0, 5, 16}, {4, 17, 5, 2, 7, 17},
      {1, 3, 3, 1, 3, 1},    {2, 12, 2, 1, 4, 7},    {5, 4, 3, 2, 6, 33}, {3, 8, 1, 0, 2, 48}, {2, 7, 3, 1, 11, 24},
  };
  for (const auto& g : cases) {
    std::vector<float> x(static_cast<std::size_t>(g.in_channels * g.height * g.width));
    std::vector<float> weight(static_cast<std::size_t>(g.out_channels * simd::direct_conv_tap_count(g)));
    std::vector<float> bias(static_cast<std::size_t>(g.out_channels));
    fill_normal(x.data(), static_cast<long>(x.size()), rng);
    fill_normal(weight.data(), static_cast<long>(weight.size()), rng);
    fill_normal(bias.data(), static_cast<long>(bias.size()), rng);
    std::vector<float> padded(static_cast<std::size_t>(simd::direct_conv_padded_size(g)));
    simd::pad_direct_conv_input(g, x.data(), padded.data());
    std::vector<index_t> taps(static_cast<std::size_t>(simd::direct_conv_tap_count(g)));
    simd::direct_conv_tap_offsets(g, taps.data());
    // One spare value past the output: no path may write it.
    const auto out_size = static_cast<std::size_t>(g.out_channels * g.out_height() * g.out_width()) + 1;
    std::vector<float> expected(out_size, -5.0f);
    for (index_t tile = 0; tile < simd::direct_conv_tiles(g); ++tile) {
      simd::direct_conv_tile(simd::arch::scalar{}, g, padded.data(), weight.data(), bias.data(), taps.data(), tile, expected.data());
    }
    for_each_arch([&](auto arch) {
      INFO(decltype(arch)::name << ": in " << g.in_channels << " out " << g.out_channels << " k " << g.kernel << " p "
                                << g.padding << " " << g.height << "×" << g.width);
      std::vector<float> y(out_size, -5.0f);
      for (index_t tile = 0; tile < simd::direct_conv_tiles(g); ++tile) {
        simd::direct_conv_tile(arch, g, padded.data(), weight.data(), bias.data(), taps.data(), tile, y.data());
      }
      CHECK(test_support::raw(y) == test_support::raw(expected));
      // The batch driver with the path given explicitly computes the same.
      std::vector<float> batch(out_size, -5.0f);
      simd::DirectConvBatch driver;
      driver.run<decltype(arch)>(
          g, x.data(), 1, weight.data(), bias.data(), [&](index_t, int) { return batch.data(); }, [](index_t, index_t, int) {});
      CHECK(test_support::raw(batch) == test_support::raw(expected));
    });
  }
}

TEST_CASE("direct stride-1 Conv2d (float) equals im2col + GEMM in double, forward and backward") {
  std::mt19937 rng(42);
  const ConvCase cases[] = {
      {1, 16, 32, 3, 1, 14, 14},  // the student's conv2 at batch 1
      {3, 2, 16, 3, 1, 28, 28},   // rows of 28: one full vector and a partial one
      {2, 5, 11, 3, 0, 9, 13},    // partial channel tiles, no padding
      {2, 3, 9, 1, 0, 7, 33},     // 1×1 kernel, rows over two vectors
      {2, 4, 7, 5, 2, 12, 17},    // 5×5 kernel
      {2, 6, 17, 5, 1, 11, 6},    // padding below k − 1
      {2, 3, 4, 3, 3, 6, 5},      // padding beyond k − 1: the input gradient goes through col2im
      {5, 16, 8, 2, 1, 8, 8},     // even kernel: output larger than the input
  };
  for (const auto& c : cases) {
    INFO("n " << c.n << " in " << c.in << " out " << c.out << " k " << c.kernel << " p " << c.padding << " "
              << c.height << "×" << c.width);
    nn::Conv2d<float> direct(c.in, c.out, c.kernel, 1, c.padding);
    nn::Conv2d<double> reference(c.in, c.out, c.kernel, 1, c.padding);
    fill_normal(direct.weight().data(), direct.weight().size(), rng);
    fill_normal(direct.bias().data(), direct.bias().size(), rng);
    for (index_t i = 0; i < direct.weight().size(); ++i) reference.weight().data()[i] = direct.weight().data()[i];
    for (index_t i = 0; i < direct.bias().size(); ++i) reference.bias().data()[i] = direct.bias().data()[i];
    direct.set_algorithm(nn::ConvAlgorithm::direct);
    direct.set_needs_input_grad(true);
    reference.set_needs_input_grad(true);

    Tensor<float, 4> x({c.n, c.in, c.height, c.width});
    fill_normal(x.data(), x.size(), rng);
    Tensor<double, 4> xd(x.shape());
    for (index_t i = 0; i < x.size(); ++i) xd.data()[i] = x.data()[i];
    const auto y = direct.forward(x.view(), nn::Mode::train);
    const auto yd = reference.forward(xd.view(), nn::Mode::train);
    REQUIRE(y.shape() == yd.shape());
    CHECK(max_error(y.data(), yd.data(), y.size()) < 1e-5);

    Tensor<float, 4> dy(y.shape());
    fill_normal(dy.data(), dy.size(), rng);
    Tensor<double, 4> dyd(dy.shape());
    for (index_t i = 0; i < dy.size(); ++i) dyd.data()[i] = dy.data()[i];
    const auto dx = direct.backward(dy.view());
    const auto dxd = reference.backward(dyd.view());
    REQUIRE(dx.shape() == x.shape());
    CHECK(max_error(dx.data(), dxd.data(), dx.size()) < 1e-5);
    std::vector<Parameter<float>> p;
    std::vector<Parameter<double>> pd;
    direct.collect_parameters("", p);
    reference.collect_parameters("", pd);
    CHECK(max_error(p[0].grad.data(), pd[0].grad.data(), p[0].grad.size()) < 1e-4);
  }
}

#if defined(_OPENMP)
TEST_CASE("direct Conv2d gives bit-identical outputs and input gradients on 1 and 2 threads") {
  std::mt19937 rng(7);
  FloatConv problem(3, 16, 32, 14, 14, rng);
  const int saved = omp_get_max_threads();
  set_threads(1);
  const auto [y1, dx1] = problem.run();
  set_threads(2);
  const auto [y2, dx2] = problem.run();
  set_threads(saved);
  for (index_t i = 0; i < y1.size(); ++i) REQUIRE(y1.data()[i] == y2.data()[i]);
  for (index_t i = 0; i < dx1.size(); ++i) REQUIRE(dx1.data()[i] == dx2.data()[i]);
}
#endif

TEST_CASE("Conv2d::set_algorithm: both float algorithms agree, direct needs stride 1") {
  std::mt19937 rng(3);
  FloatConv problem(2, 3, 10, 10, 19, rng);
  problem.conv.set_algorithm(nn::ConvAlgorithm::direct);
  CHECK(problem.conv.algorithm() == nn::ConvAlgorithm::direct);
  const auto [y_direct, dx_direct] = problem.run();
  problem.conv.set_algorithm(nn::ConvAlgorithm::im2col_gemm);
  CHECK(problem.conv.algorithm() == nn::ConvAlgorithm::im2col_gemm);
  const auto [y_gemm, dx_gemm] = problem.run();
  CHECK(max_error(y_direct.data(), y_gemm.data(), y_gemm.size()) < 1e-5);
  CHECK(max_error(dx_direct.data(), dx_gemm.data(), dx_gemm.size()) < 1e-5);

  nn::Conv2d<float> strided(3, 4, 3, 2, 1);
  CHECK_THROWS_AS(strided.set_algorithm(nn::ConvAlgorithm::direct), value_error);
  CHECK_NOTHROW(strided.set_algorithm(nn::ConvAlgorithm::im2col_gemm));
}
