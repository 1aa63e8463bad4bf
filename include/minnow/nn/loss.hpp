#pragma once
/// @file nn/loss.hpp
/// @brief Softmax cross-entropy (PyTorch's F.cross_entropy, mean over the batch) and accuracy counting.

#include <minnow/error.hpp>
#include <minnow/tensor.hpp>

#include <cstdint>

namespace minnow::nn {

namespace detail {
inline void check_logits_labels(const char* what, const Shape<2>& logits, index_t labels) {
  if (logits[0] != labels) {
    throw shape_error(minnow::detail::concat(what, ": ", labels, " labels for logits ", to_string(logits)));
  }
}
}  // namespace detail

/// @brief `L = −(1/N) Σ_n log softmax(z_n)[y_n]`; writes `dL/dz = (softmax(z) − onehot(y)) / N` into `dlogits`
/// (which may alias nothing else) and returns L. Stable for any finite logits: the row maximum is
/// subtracted before exponentiating, so logits of ±1e4 give finite values.
/// @throws shape_error on mismatched shapes, value_error on a label outside [0, C).
template <class T>
double softmax_cross_entropy(TensorView<const T, 2> logits, TensorView<const std::int32_t, 1> labels,
                             TensorView<T, 2> dlogits) {
  detail::check_logits_labels("softmax_cross_entropy", logits.shape(), labels.size());
  if (dlogits.shape() != logits.shape()) {
    throw shape_error(minnow::detail::concat("softmax_cross_entropy: gradient ", to_string(dlogits.shape()),
                                             " does not match logits ", to_string(logits.shape())));
  }
  const index_t n = logits.dim(0), classes = logits.dim(1);
  for (index_t i = 0; i < n; ++i) {
    if (labels(i) < 0 || labels(i) >= classes) {
      throw value_error(minnow::detail::concat("softmax_cross_entropy: label ", labels(i), " at position ", i,
                                               " is outside [0, ", classes, ")"));
    }
  }
  if (n == 0) return 0.0;
  const auto z = logits.matrix();
  auto g = dlogits.matrix();
  const T inv_n = T(1) / static_cast<T>(n);
  double total = 0.0;
  for (index_t i = 0; i < n; ++i) {
    const T max = z.row(i).maxCoeff();
    g.row(i) = (z.row(i).array() - max).exp().matrix();
    const T sum = g.row(i).sum();
    total += static_cast<double>(std::log(sum) + max - z(i, labels(i)));
    g.row(i) *= inv_n / sum;
    g(i, labels(i)) -= inv_n;
  }
  return total / static_cast<double>(n);
}

/// Number of rows whose arg-max (first maximum on ties) equals the label.
template <class T>
[[nodiscard]] index_t count_correct(TensorView<const T, 2> logits, TensorView<const std::int32_t, 1> labels) {
  detail::check_logits_labels("count_correct", logits.shape(), labels.size());
  index_t correct = 0;
  const auto z = logits.matrix();
  for (index_t i = 0; i < logits.dim(0); ++i) {
    index_t best = 0;
    z.row(i).maxCoeff(&best);
    correct += best == labels(i) ? 1 : 0;
  }
  return correct;
}

}  // namespace minnow::nn
