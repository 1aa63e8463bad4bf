#pragma once
/// @file ensemble/combine.hpp
/// @brief Combination rules over the logits of K ensemble members, each [N, C]:
///
///   mean of probabilities   p = Σₖ wₖ · softmax(tₖ / T)           (Hinton et al. 2015 soft targets)
///   mean of logits          p = softmax(Σₖ wₖ · tₖ / T)           (= the normalised geometric mean
///                                                                   of the members' softmax(tₖ / T))
///   majority vote           the class most members rank first
///
/// Unweighted rules use wₖ = 1/K. Members are passed as a span of views, e.g. a
/// `std::vector<TensorView<const float, 2>>`; the scalar type is given explicitly:
/// `ensemble::mean_probabilities<float>(members, 4.0, out)`.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <minnow/detail/row_blocks.hpp>
#include <minnow/distill/softmax.hpp>
#include <minnow/error.hpp>
#include <minnow/tensor.hpp>
#include <span>
#include <string>
#include <vector>

namespace minnow::ensemble {

/// The members' logits, each [N, C] with the same N and C.
template <class T>
using Members = std::span<const TensorView<const T, 2>>;

/// Weights must sum to 1 within this tolerance (they are plain doubles, not a softmax output).
inline constexpr double weight_sum_tolerance = 1e-6;

namespace detail {

/// Throws value_error for an empty ensemble and shape_error (naming the member and both shapes) when a
/// member differs from member 0; returns the common shape. `kind` names what the members hold.
template <class T>
Shape<2> check_members(const char* what, Members<T> members, const char* kind = "logits") {
  if (members.empty()) throw value_error(minnow::detail::concat(what, ": the ensemble has no members"));
  const Shape<2> shape = members[0].shape();
  for (std::size_t k = 1; k < members.size(); ++k) {
    if (members[k].shape() != shape) {
      throw shape_error(minnow::detail::concat(what, ": member ", k, " has ", kind, " ", to_string(members[k].shape()),
                                               ", member 0 has ", to_string(shape)));
    }
  }
  const std::string label = minnow::detail::concat("member ", kind);
  distill::check_has_classes(what, label.c_str(), shape);
  return shape;
}

/// "[0.5, 0.25, 0.25]" for error messages.
inline std::string format_weights(std::span<const double> weights) {
  std::string out = "[";
  for (std::size_t k = 0; k < weights.size(); ++k) {
    out += minnow::detail::concat(k == 0 ? "" : ", ", weights[k]);
  }
  return out + "]";
}

}  // namespace detail

/// @brief Throws shape_error unless there is one weight per member (`members` of them), and value_error
/// unless each is finite and ≥ 0 and they sum to 1 within weight_sum_tolerance: the weights of
/// mean_probabilities(), mean_logits() and weighted_nll().
inline void check_member_weights(const char* what, std::span<const double> weights, std::size_t members) {
  using detail::format_weights;
  if (weights.size() != members) {
    throw shape_error(minnow::detail::concat(what, ": ", weights.size(), " weights ", format_weights(weights), " for ",
                                             members, " members"));
  }
  double sum = 0.0;
  for (std::size_t k = 0; k < weights.size(); ++k) {
    if (!(weights[k] >= 0.0) || !std::isfinite(weights[k])) {
      throw value_error(minnow::detail::concat(what, ": weights ", format_weights(weights), ": weight ", k, " is ",
                                               weights[k], ", expected a finite value >= 0"));
    }
    sum += weights[k];
  }
  if (!(std::abs(sum - 1.0) <= weight_sum_tolerance)) {
    throw value_error(minnow::detail::concat(what, ": weights ", format_weights(weights), " sum to ", sum,
                                             ", expected 1 within ", weight_sum_tolerance));
  }
}

namespace detail {

enum class Rule { mean_probabilities, mean_logits };

/// Both soft rules, over row blocks (split across OpenMP threads for large N); inputs already validated.
/// Each block goes through distill::softmax, on one thread (a block is below its parallel threshold).
template <class T>
void soft_combine(Members<T> members, std::span<const double> weights, double temperature, TensorView<T, 2> out,
                  Rule rule) {
  namespace core = minnow::detail;
  const index_t rows = out.dim(0), cols = out.dim(1);
  if (rows == 0) return;
  const int threads = core::threads_for(rows * cols * static_cast<index_t>(members.size()));
  // One softmax scratch block per thread: a block of every member's output stays in cache.
  const index_t block = core::padded<T>(core::block_rows(cols) * cols);
  Tensor<T, 1> scratch(rule == Rule::mean_probabilities ? Shape<1>{block * threads} : Shape<1>{0});
  core::for_each_row_block(rows, cols, threads, [&](index_t begin, index_t end, int thread) {
    const index_t offset = begin * cols, n = end - begin, len = n * cols;
    core::RowMap<T> acc(out.data() + offset, len);
    if (rule == Rule::mean_logits) {
      for (std::size_t k = 0; k < members.size(); ++k) {
        const core::ConstRowMap<T> t(members[k].data() + offset, len);
        const T w = static_cast<T>(weights[k]);
        if (k == 0) {
          acc = t * w;
        } else {
          acc += t * w;
        }
      }
      const TensorView<T, 2> combined = out.slice(begin, end);
      distill::softmax<T>(combined, temperature, combined);
      return;
    }
    T* p = scratch.data() + static_cast<index_t>(thread) * block;
    const TensorView<T, 2> probabilities(p, {n, cols});
    for (std::size_t k = 0; k < members.size(); ++k) {
      distill::softmax<T>(members[k].slice(begin, end), temperature, probabilities);
      const T w = static_cast<T>(weights[k]);
      if (k == 0) {
        acc = core::AlignedMap<T>(p, len) * w;
      } else {
        acc += core::AlignedMap<T>(p, len) * w;
      }
    }
  });
}

template <class T>
void check_soft(const char* what, Members<T> members, double temperature, TensorView<T, 2> out) {
  distill::check_temperature<T>(what, temperature);
  const Shape<2> shape = check_members(what, members);
  check_same_shape(what, "member logits", shape, "output", out.shape());
}

}  // namespace detail

/// @brief Weighted mean of the members' probabilities: `out = Σₖ wₖ · softmax(tₖ / T)`, the soft targets
/// of Hinton et al. Each row of `out` is a distribution. `out` must not overlap a member.
/// @tparam T scalar type.
/// @throws value_error for an empty ensemble, a bad temperature, a negative or non-finite weight or
/// weights not summing to 1 within weight_sum_tolerance; shape_error when a member's shape differs
/// from member 0's, the weight count from the member count, or `out`'s shape from the members'.
template <class T>
void mean_probabilities(Members<T> members, std::span<const double> weights, double temperature, TensorView<T, 2> out) {
  detail::check_soft("mean_probabilities", members, temperature, out);
  check_member_weights("mean_probabilities", weights, members.size());
  detail::soft_combine(members, weights, temperature, out, detail::Rule::mean_probabilities);
}

/// @brief Unweighted mean of the members' probabilities, `(1/K) Σₖ softmax(tₖ / T)`.
/// @tparam T scalar type.
template <class T>
void mean_probabilities(Members<T> members, double temperature, TensorView<T, 2> out) {
  detail::check_soft("mean_probabilities", members, temperature, out);
  const std::vector<double> uniform(members.size(), 1.0 / static_cast<double>(members.size()));
  detail::soft_combine(members, std::span<const double>(uniform), temperature, out, detail::Rule::mean_probabilities);
}

/// @brief Mean of logits: `out = softmax(Σₖ wₖ · tₖ / T)`, which equals the normalised weighted geometric
/// mean `Πₖ softmax(tₖ/T)^wₖ / Σ_c Πₖ softmax(tₖ/T)^wₖ`. Errors as mean_probabilities().
/// @tparam T scalar type.
template <class T>
void mean_logits(Members<T> members, std::span<const double> weights, double temperature, TensorView<T, 2> out) {
  detail::check_soft("mean_logits", members, temperature, out);
  check_member_weights("mean_logits", weights, members.size());
  detail::soft_combine(members, weights, temperature, out, detail::Rule::mean_logits);
}

/// @brief Unweighted mean of logits, `softmax((1/K) Σₖ tₖ / T)`.
/// @tparam T scalar type.
template <class T>
void mean_logits(Members<T> members, double temperature, TensorView<T, 2> out) {
  detail::check_soft("mean_logits", members, temperature, out);
  const std::vector<double> uniform(members.size(), 1.0 / static_cast<double>(members.size()));
  detail::soft_combine(members, std::span<const double>(uniform), temperature, out, detail::Rule::mean_logits);
}

/// @brief The class of the largest logit in a row of `cols` logits; ties go to the lowest class index
/// (the first maximum, as `torch.argmax` and minnow::nn::count_correct).
template <class T>
[[nodiscard]] index_t argmax(const T* row, index_t cols) noexcept {
  index_t best = 0;
  for (index_t j = 1; j < cols; ++j) {
    if (row[j] > row[best]) best = j;
  }
  return best;
}

/// @brief Majority vote: each member votes for its argmax class (first maximum on ties), and `out[n]`
/// is the class with the most votes. **Tie rule:** among classes with equally many votes, the lowest
/// class index wins — deterministic and independent of member order.
/// @tparam T scalar type.
/// @throws value_error for an empty ensemble; shape_error when member shapes differ or `out` has not
/// one entry per sample.
template <class T>
void majority_vote(Members<T> members, TensorView<std::int32_t, 1> out) {
  const Shape<2> shape = detail::check_members("majority_vote", members);
  if (out.size() != shape[0]) {
    throw shape_error(minnow::detail::concat("majority_vote: output of ", out.size(), " entries for member logits ",
                                             to_string(shape)));
  }
  const index_t rows = shape[0], cols = shape[1];
  std::vector<index_t> votes(static_cast<std::size_t>(cols));
  for (index_t i = 0; i < rows; ++i) {
    std::fill(votes.begin(), votes.end(), 0);
    for (const auto& member : members) ++votes[static_cast<std::size_t>(argmax(member.data() + i * cols, cols))];
    // max_element returns the first of equal maxima: the lowest class index.
    out(i) = static_cast<std::int32_t>(std::max_element(votes.begin(), votes.end()) - votes.begin());
  }
}

}  // namespace minnow::ensemble
