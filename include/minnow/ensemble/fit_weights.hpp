#pragma once
/// @file ensemble/fit_weights.hpp
/// @brief Ensemble weights fitted on held-out data: the point w of the simplex (wₖ ≥ 0, Σ wₖ = 1) that
/// minimises the negative log-likelihood of the weighted mean of the members' probabilities,
///
///     NLL(w) = −(1/N) Σₙ log mₙ(w),   mₙ(w) = Σₖ wₖ · Pₙₖ,   Pₙₖ = pₖ[n, yₙ]
///
/// (only each member's probability of the true class enters). NLL is convex in w, so the minimum on
/// the simplex is global.
///
/// **Algorithm.** The multiplicative update
///
///     wₖ ← wₖ · gₖ,   gₖ = −∂NLL/∂wₖ = (1/N) Σₙ Pₙₖ / mₙ(w)
///
/// from uniform weights. It is exponentiated gradient with its natural step (the EM update for the weights
/// of a mixture with fixed components): Σₖ wₖ gₖ = 1 exactly, so w stays on the simplex without a
/// projection, and every step lowers the NLL or leaves it unchanged — the result is never worse than
/// uniform weights. It is deterministic: plain loops in double in a fixed order.
///
/// **Stopping rule.** Stop after the first step that lowers the NLL by less than `tolerance` (absolute,
/// nats), or after `max_iterations` steps.

#include <minnow/distill/kd_loss.hpp>
#include <minnow/ensemble/combine.hpp>
#include <minnow/error.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace minnow::ensemble {

/// A member's probability of the true class is floored at this value, so a member that gave it
/// exactly 0 (a float softmax underflows near −104) cannot make the NLL infinite.
inline constexpr double fit_weights_probability_floor = 1e-30;

/// When fit_weights() stops (see the stopping rule in the file comment).
struct FitWeightsOptions {
  int max_iterations = 1000;  ///< > 0
  double tolerance = 1e-9;    ///< stop when one step lowers the NLL by less than this (nats), ≥ 0
};

/// What fit_weights() found.
struct FittedWeights {
  std::vector<double> weights;  ///< one per member, ≥ 0, summing to 1 (to rounding)
  double nll = 0.0;             ///< held-out NLL of the weighted mean of probabilities at `weights`
  double uniform_nll = 0.0;     ///< the same with uniform weights (the starting point)
  int iterations = 0;           ///< multiplicative steps taken
  bool converged = false;       ///< false when max_iterations ran out first
};

/// @brief Weights on the simplex minimising the held-out NLL of the weighted mean of the members'
/// probabilities (algorithm and stopping rule in the file comment). Use them with the weighted
/// mean_probabilities().
/// @tparam T scalar type.
/// @param probabilities each member's probabilities [N, C] on the held-out samples (e.g. softmax at T = 1);
///        rows must be distributions (entries ≥ 0, sums within distill::probability_sum_tolerance of 1).
/// @param labels the held-out labels [N], each in [0, C).
/// @throws value_error for an empty ensemble, no samples, a label outside [0, C), a row that is not a
/// distribution, or bad options; shape_error when a member's shape differs from member 0's or the label
/// count from N.
template <class T>
[[nodiscard]] FittedWeights fit_weights(std::span<const TensorView<const T, 2>> probabilities,
                                        TensorView<const std::int32_t, 1> labels, FitWeightsOptions options = {}) {
  constexpr const char* what = "fit_weights";
  if (probabilities.empty()) throw value_error(minnow::detail::concat(what, ": the ensemble has no members"));
  if (options.max_iterations <= 0 || !(options.tolerance >= 0.0)) {
    throw value_error(minnow::detail::concat(what, ": need max_iterations > 0 and tolerance >= 0, got ",
                                             options.max_iterations, " and ", options.tolerance));
  }
  const Shape<2> shape = detail::check_members<T>(what, probabilities, "probabilities");
  const index_t rows = shape[0], cols = shape[1];
  if (rows == 0) throw value_error(minnow::detail::concat(what, ": no held-out samples to fit on"));
  distill::check_class_labels(what, shape, labels);
  for (std::size_t k = 0; k < probabilities.size(); ++k) {
    const std::string member = minnow::detail::concat(what, " (member ", k, ")");
    distill::check_probability_rows(member.c_str(), probabilities[k]);
  }

  // P[n, k] = member k's probability of sample n's label, row-major by sample.
  const auto members = static_cast<index_t>(probabilities.size());
  std::vector<double> p(static_cast<std::size_t>(rows * members));
  for (index_t n = 0; n < rows; ++n) {
    for (index_t k = 0; k < members; ++k) {
      const double value = static_cast<double>(probabilities[static_cast<std::size_t>(k)].data()[n * cols + labels(n)]);
      p[static_cast<std::size_t>(n * members + k)] = std::max(value, fit_weights_probability_floor);
    }
  }

  std::vector<double> w(static_cast<std::size_t>(members), 1.0 / static_cast<double>(members));
  std::vector<double> g(w.size());
  // One pass: the NLL at w, and g = −∇NLL(w) into `g`.
  const auto evaluate = [&](const std::vector<double>& weights) {
    std::fill(g.begin(), g.end(), 0.0);
    double nll = 0.0;
    for (index_t n = 0; n < rows; ++n) {
      const double* pn = p.data() + n * members;
      double m = 0.0;
      for (index_t k = 0; k < members; ++k) m += weights[static_cast<std::size_t>(k)] * pn[k];
      nll -= std::log(m);
      for (index_t k = 0; k < members; ++k) g[static_cast<std::size_t>(k)] += pn[k] / m;
    }
    for (auto& gk : g) gk /= static_cast<double>(rows);
    return nll / static_cast<double>(rows);
  };

  FittedWeights out;
  double nll = evaluate(w);
  out.uniform_nll = nll;
  for (int it = 0; it < options.max_iterations; ++it) {
    std::vector<double> next(w.size());
    double sum = 0.0;
    for (std::size_t k = 0; k < w.size(); ++k) {
      next[k] = w[k] * g[k];
      sum += next[k];
    }
    // Σ wₖgₖ is 1 in exact arithmetic; dividing by it keeps rounding from drifting off the simplex.
    for (auto& wk : next) wk /= sum;
    const double next_nll = evaluate(next);
    ++out.iterations;
    if (!(next_nll <= nll)) {  // rounding noise at the optimum: keep the better point and stop
      out.converged = true;
      break;
    }
    const double gain = nll - next_nll;
    w = std::move(next);
    nll = next_nll;
    if (gain < options.tolerance) {
      out.converged = true;
      break;
    }
  }
  out.weights = std::move(w);
  out.nll = nll;
  return out;
}

/// @brief The held-out NLL `−(1/N) Σₙ log Σₖ wₖ pₖ[n, yₙ]` of given weights (true-class probabilities
/// floored at fit_weights_probability_floor, as in fit_weights()).
/// @throws as fit_weights(), and as the weighted mean_probabilities() for bad weights.
template <class T>
[[nodiscard]] double weighted_nll(std::span<const TensorView<const T, 2>> probabilities, std::span<const double> weights,
                                  TensorView<const std::int32_t, 1> labels) {
  constexpr const char* what = "weighted_nll";
  if (probabilities.empty()) throw value_error(minnow::detail::concat(what, ": the ensemble has no members"));
  check_member_weights(what, weights, probabilities.size());
  const Shape<2> shape = detail::check_members<T>(what, probabilities, "probabilities");
  distill::check_class_labels(what, shape, labels);
  const index_t rows = shape[0], cols = shape[1];
  if (rows == 0) return 0.0;
  double nll = 0.0;
  for (index_t n = 0; n < rows; ++n) {
    double m = 0.0;
    for (std::size_t k = 0; k < probabilities.size(); ++k) {
      const double value = static_cast<double>(probabilities[k].data()[n * cols + labels(n)]);
      m += weights[k] * std::max(value, fit_weights_probability_floor);
    }
    nll -= std::log(m);
  }
  return nll / static_cast<double>(rows);
}

}  // namespace minnow::ensemble
