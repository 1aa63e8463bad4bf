#pragma once
/// @file distill/softmax.hpp
/// @brief Row-wise softmax and log-softmax at a temperature T, stable for any finite logits.
///
/// Row i of the output is `softmax(z_i / T)`, computed as `exp((z_i − max z_i) / T) / Σ exp(...)`: after
/// subtracting the row maximum every exponent is ≤ 0, so logits of ±1e4 give finite results. The row
/// kernels in `detail` serve the KD loss (kd_loss.hpp); the ensemble rules (ensemble/) call softmax() on
/// blocks of rows.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <minnow/detail/row_blocks.hpp>
#include <minnow/error.hpp>
#include <minnow/tensor.hpp>
#include <type_traits>

namespace minnow::distill {

/// @brief Throws value_error unless `temperature` can be computed with in scalar type S: finite and > 0,
/// 1/T a finite normal S (the kernels scale logits by it) and T² finite (the loss is scaled by it). For
/// float that is T in [2.9e-39, 8.5e37]; outside it the results would be NaN, not the limit. `what` starts
/// the message. Every function of distill/ and ensemble/ that takes a temperature checks it with this.
template <class S = double>
void check_temperature(const char* what, double temperature) {
  const double lowest = 1.0 / static_cast<double>(std::numeric_limits<S>::max());
  const double highest = std::min(1.0 / static_cast<double>(std::numeric_limits<S>::min()),
                                  std::sqrt(std::numeric_limits<double>::max()));
  if (!(temperature >= lowest) || !(temperature <= highest)) {  // NaN fails both tests
    throw value_error(minnow::detail::concat(what, ": temperature T must be a finite number > 0 with 1/T and T² computable in ",
                                             sizeof(S) == 4 ? "float" : "double", ", i.e. in [", lowest, ", ", highest,
                                             "], got T = ", temperature));
  }
}

/// @brief Throws shape_error for a non-empty batch without classes (`shape` [N, 0], N > 0): a distribution
/// over nothing. `name` says what `shape` belongs to in the message.
inline void check_has_classes(const char* what, const char* name, const Shape<2>& shape) {
  if (shape[0] > 0 && shape[1] == 0) {
    throw shape_error(minnow::detail::concat(what, ": ", name, " ", to_string(shape), " has no classes"));
  }
}

namespace detail {

// The row-block helpers and exp/log shared with ensemble/ are the core's (detail/row_blocks.hpp).
using minnow::detail::AlignedMap;
using minnow::detail::array_exp;
using minnow::detail::array_log;
using minnow::detail::block_rows;
using minnow::detail::ConstRowMap;
using minnow::detail::for_each_row_block;
using minnow::detail::padded;
using minnow::detail::RowMap;
using minnow::detail::threads_for;

/// Rows shorter than this are reduced by a plain loop; Eigen's vectorized reduction only pays above it.
inline constexpr index_t kVectorRow = 32;

/// Largest element of x[0, n), n ≥ 1.
template <class T>
[[nodiscard]] T row_max(const T* x, index_t n) noexcept {
  if (n >= kVectorRow) return ConstRowMap<T>(x, n).maxCoeff();
  T m = x[0];
  for (index_t j = 1; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

/// Sum of x[0, n) in T (softmax normalisation, where float accumulation is accurate enough).
template <class T>
[[nodiscard]] T row_sum(const T* x, index_t n) noexcept {
  if (n >= kVectorRow) return ConstRowMap<T>(x, n).sum();
  T s = 0;
  for (index_t j = 0; j < n; ++j) s += x[j];
  return s;
}

/// Sum of x[0, n) accumulated in double, in eight independent lanes (which the compiler turns into one
/// vector register). The KD loss is a small difference of such sums (KL ≈ Var/2 at high T): float
/// accumulation would cost it ~1e-7 absolute, i.e. 4e-5 of the loss at T = 20 after the T² factor.
template <class T>
[[nodiscard]] double row_sum_wide(const T* x, index_t n) noexcept {
  constexpr index_t lanes = 8;
  double acc[lanes] = {};
  index_t j = 0;
  for (; j + lanes <= n; j += lanes) {
    for (index_t l = 0; l < lanes; ++l) acc[l] += static_cast<double>(x[j + l]);
  }
  double sum = 0.0;
  for (; j < n; ++j) sum += static_cast<double>(x[j]);
  for (index_t l = 0; l < lanes; ++l) sum += acc[l];
  return sum;
}

/// Writes softmax(z_i · inv_t) of `rows` rows of `cols` elements from `z` into `out` (may equal `z`).
/// The exponentials run over the whole block at once, so short rows (10 classes) vectorize too.
template <class T>
void softmax_rows(const T* z, index_t rows, index_t cols, T inv_t, T* out) noexcept {
  for (index_t i = 0; i < rows; ++i) {
    const T* zi = z + i * cols;
    const T max = row_max(zi, cols);
    RowMap<T>(out + i * cols, cols) = (ConstRowMap<T>(zi, cols) - max) * inv_t;
  }
  RowMap<T> all(out, rows * cols);
  all = array_exp(all);
  for (index_t i = 0; i < rows; ++i) {
    T* oi = out + i * cols;
    RowMap<T>(oi, cols) *= T(1) / row_sum(oi, cols);
  }
}

/// Writes log softmax(z_i · inv_t) = a − log Σ exp(a), a = (z_i − max z_i) · inv_t; `out` may equal `z`.
template <class T>
void log_softmax_rows(const T* z, index_t rows, index_t cols, T inv_t, T* out) noexcept {
  for (index_t i = 0; i < rows; ++i) {
    const T* zi = z + i * cols;
    RowMap<T> oi(out + i * cols, cols);
    const T max = row_max(zi, cols);
    oi = (ConstRowMap<T>(zi, cols) - max) * inv_t;
    // The largest term is exp(0) = 1, so the sum is in [1, cols] and its log is finite.
    oi -= std::log(array_exp(oi).sum());
  }
}

template <class T, class Kernel>
void rowwise(const char* what, TensorView<const T, 2> logits, double temperature, TensorView<T, 2> out, Kernel kernel) {
  check_temperature<T>(what, temperature);
  check_same_shape(what, "logits", logits.shape(), "output", out.shape());
  check_has_classes(what, "logits", logits.shape());
  const index_t cols = logits.dim(1);
  const T inv_t = static_cast<T>(1.0 / temperature);
  for_each_row_block(logits.dim(0), cols, threads_for(logits.size()), [&](index_t begin, index_t end, int) {
    kernel(logits.data() + begin * cols, end - begin, cols, inv_t, out.data() + begin * cols);
  });
}

}  // namespace detail

/// @brief Row-wise `softmax(logits / T)`: each row of `out` is a probability distribution.
/// @tparam T scalar type (float or double).
///
/// Stable for any finite logits (the row maximum is subtracted first). `out` may be `logits` itself
/// (in place) but must not otherwise overlap it. Large matrices are split over OpenMP threads by rows.
/// @throws value_error when T is not a finite number > 0; shape_error when `out` is not shaped like
/// `logits` or a non-empty batch has no classes.
template <class T>
void softmax(TensorView<const T, 2> logits, double temperature, TensorView<T, 2> out) {
  detail::rowwise<T>("softmax", logits, temperature, out, [](const T* z, index_t rows, index_t cols, T inv_t, T* o) {
    detail::softmax_rows(z, rows, cols, inv_t, o);
  });
}

/// @brief Row-wise `log_softmax(logits / T) = (z − max z)/T − log Σ exp((z − max z)/T)`.
/// @tparam T scalar type (float or double).
///
/// Finite for any finite logits, also where softmax underflows to 0. Same aliasing and errors as softmax().
template <class T>
void log_softmax(TensorView<const T, 2> logits, double temperature, TensorView<T, 2> out) {
  detail::rowwise<T>(
      "log_softmax", logits, temperature, out,
      [](const T* z, index_t rows, index_t cols, T inv_t, T* o) { detail::log_softmax_rows(z, rows, cols, inv_t, o); });
}

}  // namespace minnow::distill
