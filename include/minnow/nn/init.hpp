#pragma once
/// @file nn/init.hpp
/// @brief Seeded initialisers with PyTorch's defaults.

#include <minnow/tensor.hpp>

#include <cmath>
#include <cstdint>
#include <random>

namespace minnow::nn {

/// A uniform double in [0, 1) from the top 53 bits of one draw: the same on every platform,
/// unlike std::uniform_real_distribution, whose algorithm the standard leaves open.
[[nodiscard]] inline double uniform01(std::mt19937_64& rng) noexcept {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

/// Fills `values` with U(-bound, bound).
template <class T>
void uniform_fill(TensorView<T, 1> values, double bound, std::mt19937_64& rng) {
  for (index_t i = 0; i < values.size(); ++i) {
    values(i) = static_cast<T>((2.0 * uniform01(rng) - 1.0) * bound);
  }
}

/// PyTorch's default for Conv2d and Linear: weights kaiming_uniform_(a = √5), i.e.
/// U(±gain·√(3/fan_in)) with gain = √(2/(1 + a²)), which is U(±1/√fan_in); the bias is U(±1/√fan_in) too.
template <class T>
void pytorch_default_init(TensorView<T, 1> weight, TensorView<T, 1> bias, index_t fan_in, std::mt19937_64& rng) {
  const double a = std::sqrt(5.0);
  const double gain = std::sqrt(2.0 / (1.0 + a * a));
  const double fan = static_cast<double>(fan_in);
  uniform_fill(weight, gain * std::sqrt(3.0 / fan), rng);
  uniform_fill(bias, 1.0 / std::sqrt(fan), rng);
}

}  // namespace minnow::nn
