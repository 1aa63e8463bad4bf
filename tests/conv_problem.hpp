#pragma once
// A random quantized convolution problem shared by the integer-conv tests: uint8 input over the whole grid,
// int8 weights over the whole grid, per-channel scales, and — if asked — weight zero points ≠ 0 on two
// channels of three (the row-sum term).
#include <minnow/infer/int_tensor.hpp>
#include <minnow/quant/concepts.hpp>
#include <minnow/tensor.hpp>

#include <cstdint>
#include <optional>
#include <random>
#include <vector>

namespace test_support {

struct ConvProblem {
  minnow::Tensor<std::uint8_t, 4> x;
  minnow::quant::AffineParams xp;
  minnow::infer::Int8Weights w;
  std::vector<float> bias;
};

/// Input [n × c × h × w], weights [o × c·k·k]; the input zero point is `xzp`, or drawn from the grid.
inline ConvProblem make_conv_problem(minnow::index_t n, minnow::index_t c, minnow::index_t h, minnow::index_t w,
                                     minnow::index_t o, minnow::index_t k, std::mt19937& rng, bool zero_points,
                                     std::optional<int> xzp = std::nullopt) {
  ConvProblem p;
  p.x.resize({n, c, h, w});
  std::uniform_int_distribution<int> u8(0, 255), s8(-128, 127), zp(-20, 20);
  for (minnow::index_t i = 0; i < p.x.size(); ++i) p.x.data()[i] = static_cast<std::uint8_t>(u8(rng));
  p.xp = {0.03f, xzp ? *xzp : u8(rng)};
  p.w.name = "conv_test.weight";
  p.w.values.resize({o, c * k * k});
  for (minnow::index_t i = 0; i < p.w.values.size(); ++i) p.w.values.data()[i] = static_cast<std::int8_t>(s8(rng));
  std::uniform_real_distribution<float> scale(0.0005f, 0.004f), bias(-1.0f, 1.0f);
  for (minnow::index_t j = 0; j < o; ++j) {
    p.w.params.push_back({scale(rng), zero_points && j % 3 != 0 ? zp(rng) : 0});
    p.bias.push_back(bias(rng));
  }
  return p;
}

}  // namespace test_support
