#pragma once
/// @file prune/policies.hpp
/// @brief The pruning criteria as policy types: each brings a Pruner's named parameters to a target
/// sparsity, pruning only survivors (masks only lose ones). The same objects prune once (prune_to) and on a
/// schedule (GradualPruner::step in prune/schedule.hpp):
///
///     prune::prune_to(pruner, 0.9);                                   // L1, each tracked tensor to 90 %
///     prune::prune_to(pruner, 0.9, prune::GlobalL1Unstructured{});    // one ranking over all of them
///     agp.step(step, pruner, prune::LnStructured{.n = 2, .dim = 0}, {"conv1.weight", "conv2.weight"});
///                                                                     // whole filters, on the schedule
///
/// | policy | ranks | unit of the target | PyTorch |
/// |---|---|---|---|
/// | L1Unstructured | \|w\| within each tensor | weights of the tensor | `l1_unstructured` |
/// | GlobalL1Unstructured | \|w\| over all named tensors | weights of all of them | `global_unstructured(L1Unstructured)` |
/// | RandomUnstructured | at random within each tensor | weights of the tensor | `random_unstructured` |
/// | LnStructured | Ln norm of the slices along `dim` | slices of the tensor | `ln_structured` |
/// | RandomStructured | slices along `dim` at random | slices of the tensor | `random_structured` |
///
/// A policy is any type with `index_t operator()(Pruner<T>&, const std::vector<std::string>& names,
/// double target) const` (the PruningCriterion concept) that returns how many it pruned, in its unit
/// (weights, or slices for the structured ones): a criterion of one's own plugs in the same way.
/// The additional amount is an exact Count, `round_half_even(target · total) − already pruned`, so the
/// sparsity reached never drifts by the rounding of a fraction of survivors.

#include <minnow/error.hpp>
#include <minnow/prune/amount.hpp>
#include <minnow/prune/criteria.hpp>
#include <minnow/prune/hook.hpp>
#include <minnow/prune/mask.hpp>

#include <algorithm>
#include <concepts>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace minnow::prune {

/// @brief A pruning criterion for parameters of a Pruner<T>: brings `names` to sparsity `target`.
template <class C, class T>
concept PruningCriterion = requires(const C& c, Pruner<T>& pruner, const std::vector<std::string>& names, double target) {
  { c(pruner, names, target) } -> std::convertible_to<index_t>;
};

namespace detail {

inline void check_sparsity(double s, const char* context, const char* what) {
  if (!(s >= 0.0 && s <= 1.0)) {
    throw value_error(minnow::detail::concat(context, ": ", what, " must lie in [0, 1], got ", show(s)));
  }
}

/// Slices along `dim` of a tracked parameter, and how many of them are already fully pruned.
template <Scalar T>
std::pair<index_t, index_t> slice_counts(const Pruner<T>& pruner, std::string_view name, int dim) {
  for (const auto& e : pruner.entries()) {
    if (e.name != name) continue;
    const std::span<const index_t> shape(e.shape);
    const index_t alive = surviving_slices(e.mask.view(), shape, dim);
    const auto rank = static_cast<int>(shape.size());
    const index_t total = (dim >= -rank && dim < rank) ? shape[static_cast<std::size_t>(dim < 0 ? dim + rank : dim)] : 0;
    return {total - alive, total};
  }
  return {0, 0};  // unknown name: the Pruner call that follows throws
}

/// The count of weights to prune in `name` to reach `target`, for the unstructured criteria.
template <Scalar T>
Count weights_to_prune(const Pruner<T>& pruner, std::string_view name, double target);

}  // namespace detail

/// @brief How many more of `total` candidates to prune so that `round_half_even(target · total)` are
/// pruned, given `pruned` already are (0 when already there).
/// @throws value_error for a target outside [0, 1] or counts with pruned > total.
[[nodiscard]] inline Count additional_count(double target, index_t pruned, index_t total) {
  detail::check_sparsity(target, "additional_count", "target");
  if (pruned < 0 || total < 0 || pruned > total) {
    throw value_error(minnow::detail::concat("additional_count: need 0 <= pruned <= total, got pruned ", pruned,
                                             ", total ", total));
  }
  return Count{std::max<index_t>(0, to_count(Fraction{target}, total) - pruned)};
}

namespace detail {

template <Scalar T>
Count weights_to_prune(const Pruner<T>& pruner, std::string_view name, double target) {
  const auto mask = pruner.mask(name);
  return additional_count(target, mask.size() - count_kept(mask), mask.size());
}

/// For each of `names`, the slices along `dim` to prune to reach `target`; throws for any name or `dim`
/// that does not fit before a structured criterion prunes anything.
template <Scalar T>
std::vector<Count> slices_to_prune(const Pruner<T>& pruner, const std::vector<std::string>& names, int dim, double target) {
  std::vector<Count> amounts;
  for (const auto& name : names) {
    const auto [dead, total] = slice_counts(pruner, name, dim);
    amounts.push_back(additional_count(target, dead, total));
  }
  return amounts;
}

inline void check_engine(const std::mt19937_64* rng, const char* criterion) {
  if (rng == nullptr) throw value_error(minnow::detail::concat(criterion, ": rng is null (give it an engine to draw from)"));
}

}  // namespace detail

/// @brief The smallest |w| of each named tensor, each brought to the target on its own (unit: weights).
struct L1Unstructured {
  template <Scalar T>
  index_t operator()(Pruner<T>& pruner, const std::vector<std::string>& names, double target) const {
    index_t pruned = 0;
    for (const auto& name : names) pruned += pruner.l1_unstructured(name, detail::weights_to_prune(pruner, name, target));
    return pruned;
  }
};

/// @brief One L1 ranking over the survivors of all named tensors: their overall sparsity reaches the
/// target, each tensor losing what the ranking gives it (unit: weights of all of them).
struct GlobalL1Unstructured {
  template <Scalar T>
  index_t operator()(Pruner<T>& pruner, const std::vector<std::string>& names, double target) const {
    index_t total = 0, pruned = 0;
    for (const auto& name : names) {
      const auto mask = pruner.mask(name);
      total += mask.size();
      pruned += mask.size() - count_kept(mask);
    }
    return pruner.global_unstructured(additional_count(target, pruned, total), names);
  }
};

/// @brief Random weights of each named tensor (unit: weights).
struct RandomUnstructured {
  std::mt19937_64* rng = nullptr;  ///< engine to draw from (not owned)
  template <Scalar T>
  index_t operator()(Pruner<T>& pruner, const std::vector<std::string>& names, double target) const {
    detail::check_engine(rng, "RandomUnstructured");
    index_t pruned = 0;
    for (const auto& name : names) {
      pruned += pruner.random_unstructured(name, detail::weights_to_prune(pruner, name, target), *rng);
    }
    return pruned;
  }
};

/// @brief The smallest-Ln-norm slices along `dim` of each named tensor (unit: slices, so the target is the
/// fraction of slices pruned).
struct LnStructured {
  double n = 2.0;
  int dim = 0;
  template <Scalar T>
  index_t operator()(Pruner<T>& pruner, const std::vector<std::string>& names, double target) const {
    detail::check_norm(n, "LnStructured");
    const auto amounts = detail::slices_to_prune(pruner, names, dim, target);  // every name checked first
    index_t pruned = 0;
    for (std::size_t i = 0; i < names.size(); ++i) pruned += pruner.ln_structured(names[i], amounts[i], n, dim);
    return pruned;
  }
};

/// @brief Random slices along `dim` of each named tensor (unit: slices).
struct RandomStructured {
  int dim = 0;
  std::mt19937_64* rng = nullptr;  ///< engine to draw from (not owned)
  template <Scalar T>
  index_t operator()(Pruner<T>& pruner, const std::vector<std::string>& names, double target) const {
    detail::check_engine(rng, "RandomStructured");
    const auto amounts = detail::slices_to_prune(pruner, names, dim, target);  // every name checked first
    index_t pruned = 0;
    for (std::size_t i = 0; i < names.size(); ++i) pruned += pruner.random_structured(names[i], amounts[i], dim, *rng);
    return pruned;
  }
};

/// @brief `names`, checked to be tracked by `pruner`, or every tracked name in tracking order when empty.
/// @throws value_error naming the first name `pruner` does not track or that is named twice.
template <Scalar T>
[[nodiscard]] std::vector<std::string> tracked_names(const Pruner<T>& pruner, const std::vector<std::string>& names = {}) {
  for (std::size_t i = 0; i < names.size(); ++i) {
    (void)pruner.mask(names[i]);  // throws for an unknown name, before any criterion prunes a first one
    if (std::find(names.begin(), names.begin() + static_cast<std::ptrdiff_t>(i), names[i]) != names.begin() + static_cast<std::ptrdiff_t>(i)) {
      throw value_error(minnow::detail::concat("prune: parameter '", names[i], "' is named twice"));
    }
  }
  if (!names.empty()) return names;
  std::vector<std::string> all;
  for (const auto& e : pruner.entries()) all.push_back(e.name);
  return all;
}

/// @brief One-shot pruning: brings `names` (every tracked parameter when empty) to sparsity `target` with
/// `criterion`, then applies the masks to the weights and their companions.
/// @return how many the criterion pruned, in its unit. @throws value_error for a target outside [0, 1] or an unknown
/// name, before anything is pruned; what the criterion throws.
template <Scalar T, class Criterion = L1Unstructured>
  requires PruningCriterion<Criterion, T>
index_t prune_to(Pruner<T>& pruner, double target, const Criterion& criterion = {}, const std::vector<std::string>& names = {}) {
  detail::check_sparsity(target, "prune_to", "target");
  const index_t pruned = criterion(pruner, tracked_names(pruner, names), target);
  pruner.apply();
  return pruned;
}

}  // namespace minnow::prune
