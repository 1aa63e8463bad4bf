#pragma once
/// @file prune/schedule.hpp
/// @brief Gradual pruning: sparsity schedules (constant, AGP / polynomial decay) and a GradualPruner
/// that, at the scheduled steps, tops the parameters up to the target sparsity with a criterion of
/// prune/policies.hpp (each parameter on its own, or all of them in one global ranking).
///
/// Masks only ever lose ones, so a schedule is a target, not a setting: when the parameters are already
/// at or above the target (each one for a per-tensor criterion, all together for a global one) nothing
/// happens. The additional amount is computed as an exact Count,
/// `round_half_even(target · total) − already pruned`, so the sparsity reached never drifts by the
/// rounding of a fraction of survivors.

#include <minnow/error.hpp>
#include <minnow/prune/amount.hpp>
#include <minnow/prune/criteria.hpp>
#include <minnow/prune/hook.hpp>
#include <minnow/prune/policies.hpp>

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace minnow::prune {

namespace detail {

inline void check_frequency(std::int64_t frequency, const char* context) {
  if (frequency <= 0) throw value_error(minnow::detail::concat(context, ": frequency must be > 0, got ", frequency));
}

/// Steps in [begin, end] with (step − begin) % frequency == 0.
[[nodiscard]] inline bool on_grid(std::int64_t step, std::int64_t begin, std::int64_t end, std::int64_t frequency) noexcept {
  return step >= begin && step <= end && (step - begin) % frequency == 0;
}

}  // namespace detail

/// @brief What a schedule provides: the target sparsity at a step and whether to prune at that step.
template <class S>
concept SparsitySchedule = requires(const S& s, std::int64_t step) {
  { s.target(step) } -> std::convertible_to<double>;  ///< fraction of weights pruned, in [0, 1]
  { s.is_pruning_step(step) } -> std::same_as<bool>;  ///< prune at this step?
};

/// @brief One sparsity throughout: prunes to `sparsity` at `begin`, then re-tops every `frequency`
/// steps until `end` (`begin == end`: one-shot pruning).
class ConstantSparsity {
 public:
  /// @throws value_error for a sparsity outside [0, 1], begin > end or frequency <= 0.
  ConstantSparsity(double sparsity, std::int64_t begin, std::int64_t end, std::int64_t frequency = 1)
      : sparsity_(sparsity), begin_(begin), end_(end), frequency_(frequency) {
    detail::check_sparsity(sparsity, "ConstantSparsity", "sparsity");
    if (begin > end) {
      throw value_error(minnow::detail::concat("ConstantSparsity: begin must be <= end, got begin ", begin, ", end ", end));
    }
    detail::check_frequency(frequency, "ConstantSparsity");
  }
  [[nodiscard]] double target(std::int64_t) const noexcept { return sparsity_; }
  [[nodiscard]] bool is_pruning_step(std::int64_t step) const noexcept {
    return detail::on_grid(step, begin_, end_, frequency_);
  }

 private:
  double sparsity_;
  std::int64_t begin_, end_, frequency_;
};

/// @brief Polynomial decay of the distance to the final sparsity (AGP, Zhu & Gupta 2017, for power 3):
/// `p = clamp((step − begin) / (end − begin), 0, 1)`,
/// `target = final + (initial − final) · (1 − p)^power`; prune at steps in [begin, end] where
/// `(step − begin) % frequency == 0`, and at `end` itself, so the final sparsity is reached whatever the
/// frequency (TF-MOT's PolynomialDecay stops at the last grid step ≤ end, short of it when `end − begin`
/// is not a multiple of the frequency).
class PolynomialDecay {
 public:
  /// @throws value_error for sparsities outside [0, 1], begin >= end, frequency <= 0 or power <= 0.
  PolynomialDecay(double initial, double final, std::int64_t begin, std::int64_t end, std::int64_t frequency,
                  double power = 3.0)
      : initial_(initial), final_(final), begin_(begin), end_(end), frequency_(frequency), power_(power) {
    detail::check_sparsity(initial, "PolynomialDecay", "initial sparsity");
    detail::check_sparsity(final, "PolynomialDecay", "final sparsity");
    if (begin >= end) {
      throw value_error(minnow::detail::concat("PolynomialDecay: begin must be < end, got begin ", begin, ", end ", end));
    }
    detail::check_frequency(frequency, "PolynomialDecay");
    if (!(power > 0.0) || !std::isfinite(power)) {
      throw value_error(minnow::detail::concat("PolynomialDecay: power must be finite and > 0, got ", detail::show(power)));
    }
  }
  [[nodiscard]] double target(std::int64_t step) const noexcept {
    const double p = std::clamp(static_cast<double>(step - begin_) / static_cast<double>(end_ - begin_), 0.0, 1.0);
    return final_ + (initial_ - final_) * std::pow(1.0 - p, power_);
  }
  [[nodiscard]] bool is_pruning_step(std::int64_t step) const noexcept {
    return step == end_ || detail::on_grid(step, begin_, end_, frequency_);
  }

 private:
  double initial_, final_;
  std::int64_t begin_, end_, frequency_;
  double power_;
};

/// @brief The AGP schedule: PolynomialDecay with power 3.
[[nodiscard]] inline PolynomialDecay agp(double initial, double final, std::int64_t begin, std::int64_t end,
                                         std::int64_t frequency) {
  return PolynomialDecay(initial, final, begin, end, frequency, 3.0);
}

/// @brief Fraction of the survivors to prune to go from sparsity `current` to `target`:
/// `(target − current) / (1 − current)`, 0 when already there (or nothing survives).
/// @throws value_error for either argument outside [0, 1].
[[nodiscard]] inline Fraction additional_fraction(double target, double current) {
  detail::check_sparsity(target, "additional_fraction", "target");
  detail::check_sparsity(current, "additional_fraction", "current sparsity");
  if (current >= target || current >= 1.0) return Fraction{0.0};
  return Fraction{std::clamp((target - current) / (1.0 - current), 0.0, 1.0)};
}


/// @brief Drives a Pruner from a schedule: call `step(step, pruner)` after each optimizer step (e.g.
/// from Trainer::add_hook); at the schedule's pruning steps it prunes up to the target, and at every
/// step it re-applies the masks.
template <SparsitySchedule S>
class GradualPruner {
 public:
  explicit GradualPruner(S schedule) : schedule_(std::move(schedule)) {}

  [[nodiscard]] const S& schedule() const noexcept { return schedule_; }
  [[nodiscard]] bool is_pruning_step(std::int64_t step) const { return schedule_.is_pruning_step(step); }
  [[nodiscard]] double target(std::int64_t step) const { return schedule_.target(step); }

  /// @brief Fraction of the survivors to prune at `step` for a parameter at sparsity `current`
  /// (0 at steps that are not pruning steps).
  [[nodiscard]] Fraction additional_fraction(std::int64_t step, double current) const {
    if (!is_pruning_step(step)) return Fraction{0.0};
    return prune::additional_fraction(target(step), current);
  }

  /// @brief At a pruning step, brings `names` (every tracked parameter when empty) to the target sparsity
  /// with `criterion` (L1Unstructured, GlobalL1Unstructured, LnStructured, ... of prune/policies.hpp);
  /// then applies the masks. @return whether `step` was a pruning step.
  template <Scalar T, class Criterion = L1Unstructured>
    requires PruningCriterion<Criterion, T>
  bool step(std::int64_t at_step, Pruner<T>& pruner, const Criterion& criterion = {},
            const std::vector<std::string>& names = {}) {
    const bool prune_now = is_pruning_step(at_step);
    if (prune_now) (void)criterion(pruner, tracked_names(pruner, names), target(at_step));
    pruner.apply();
    return prune_now;
  }

 private:
  S schedule_;
};

}  // namespace minnow::prune
