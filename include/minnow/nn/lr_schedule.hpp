#pragma once
/// @file nn/lr_schedule.hpp
/// @brief Learning-rate schedules as functions of the epoch (closed forms of PyTorch's StepLR and
/// CosineAnnealingLR; PyTorch's recursive updates agree with them to rounding).

#include <minnow/error.hpp>

#include <cmath>
#include <numbers>

namespace minnow::nn {

/// `lr = base · γ^⌊epoch / step_size⌋`.
struct StepLR {
  int step_size;
  double gamma = 0.1;
  [[nodiscard]] double operator()(int epoch, double base_lr) const {
    if (step_size <= 0) throw value_error(minnow::detail::concat("StepLR: step_size must be > 0, got ", step_size));
    return base_lr * std::pow(gamma, epoch / step_size);
  }
};

/// `lr = η_min + (base − η_min)·(1 + cos(π·epoch / T_max)) / 2`; past T_max it keeps following the cosine
/// (rising again), exactly as PyTorch's scheduler does.
struct CosineAnnealingLR {
  int t_max;
  double eta_min = 0.0;
  [[nodiscard]] double operator()(int epoch, double base_lr) const {
    if (t_max <= 0) throw value_error(minnow::detail::concat("CosineAnnealingLR: T_max must be > 0, got ", t_max));
    return eta_min + (base_lr - eta_min) * (1.0 + std::cos(std::numbers::pi * epoch / t_max)) / 2.0;
  }
};

/// A constant learning rate.
struct ConstantLR {
  [[nodiscard]] double operator()(int /*epoch*/, double base_lr) const noexcept { return base_lr; }
};

}  // namespace minnow::nn
