#pragma once
/// @file ensemble/diversity.hpp
/// @brief How different the members of an ensemble are: an ensemble of identical members gains nothing,
/// so these numbers say whether distilling from the ensemble can beat distilling from one teacher.
///
///   disagreement       fraction of samples on which two members' argmax classes differ, averaged over
///                      the K(K−1)/2 pairs (0: all members always agree)
///   kl_to_ensemble     for each member k, (1/N) Σₙ KL(softmax(tₖ/T) ‖ p̄), p̄ the mean of the members'
///                      probabilities at T (0: the member is the ensemble)

#include <cmath>
#include <minnow/detail/row_blocks.hpp>
#include <minnow/distill/softmax.hpp>
#include <minnow/ensemble/combine.hpp>
#include <minnow/error.hpp>
#include <minnow/tensor.hpp>
#include <numeric>
#include <vector>

namespace minnow::ensemble {

namespace detail {
/// Diversity is a property of pairs: throws value_error for fewer than two members.
template <class T>
Shape<2> check_diverse(const char* what, Members<T> members) {
  if (members.size() == 1) {
    throw value_error(minnow::detail::concat(what, ": needs at least 2 members, got 1"));
  }
  return check_members(what, members);
}
}  // namespace detail

/// @brief Pairwise disagreement rate: the fraction of samples where members k and l have different
/// argmax classes (first maximum on ties), averaged over all pairs k < l. 0 for N = 0.
/// @tparam T scalar type.
/// @throws value_error for fewer than 2 members; shape_error when member shapes differ.
template <class T>
[[nodiscard]] double disagreement(Members<T> members) {
  const Shape<2> shape = detail::check_diverse("disagreement", members);
  const index_t rows = shape[0], cols = shape[1];
  if (rows == 0) return 0.0;
  const std::size_t k_count = members.size();
  std::vector<index_t> winners(k_count);
  long differing = 0;
  for (index_t i = 0; i < rows; ++i) {
    for (std::size_t k = 0; k < k_count; ++k) winners[k] = argmax(members[k].data() + i * cols, cols);
    for (std::size_t k = 0; k < k_count; ++k) {
      for (std::size_t l = k + 1; l < k_count; ++l) differing += winners[k] != winners[l] ? 1 : 0;
    }
  }
  const double pairs = static_cast<double>(k_count * (k_count - 1) / 2);
  return static_cast<double>(differing) / (pairs * static_cast<double>(rows));
}

/// @brief For each member k, the mean over samples of KL(softmax(tₖ/T) ‖ p̄), p̄ = (1/K) Σₖ softmax(tₖ/T),
/// accumulated in double with 0 · log 0 = 0. All zeros for N = 0.
/// @tparam T scalar type.
/// @throws value_error for fewer than 2 members or a bad temperature; shape_error when member shapes differ.
template <class T>
[[nodiscard]] std::vector<double> kl_to_ensemble(Members<T> members, double temperature) {
  distill::check_temperature<T>("kl_to_ensemble", temperature);
  const Shape<2> shape = detail::check_diverse("kl_to_ensemble", members);
  std::vector<double> out(members.size(), 0.0);
  const index_t rows = shape[0];
  if (rows == 0) return out;
  Tensor<T, 2> mean(shape), log_member(shape);
  mean_probabilities<T>(members, temperature, mean);
  // log p̄ taken once. p̄ ≥ pₖ/K, so a p̄ that underflowed to 0 sits under pₖ of at most K times the
  // smallest subnormal: its term is negligible, and 0 stands in for the -inf log.
  mean.array() = (mean.array() > T(0)).select(minnow::detail::array_log(mean.array()), T(0));
  for (std::size_t k = 0; k < members.size(); ++k) {
    distill::log_softmax<T>(members[k], temperature, log_member);
    double total = 0.0;
    for (index_t e = 0; e < log_member.size(); ++e) {
      const double log_p = static_cast<double>(log_member.data()[e]);
      const double p = std::exp(log_p);
      if (p > 0.0) total += p * (log_p - static_cast<double>(mean.data()[e]));
    }
    out[k] = total / static_cast<double>(rows);
  }
  return out;
}

/// @brief The mean over members of kl_to_ensemble(): the ensemble's diversity in nats (the generalised
/// Jensen–Shannon divergence of the members' distributions). Errors as kl_to_ensemble().
/// @tparam T scalar type.
template <class T>
[[nodiscard]] double mean_kl_to_ensemble(Members<T> members, double temperature) {
  const std::vector<double> per_member = kl_to_ensemble<T>(members, temperature);
  return std::accumulate(per_member.begin(), per_member.end(), 0.0) / static_cast<double>(per_member.size());
}

}  // namespace minnow::ensemble
