#pragma once
/// @file distill/kd_checks.hpp
/// @brief The argument checks of the KD losses, also used by ensemble/ and pipeline/: the weight alpha,
/// class labels, teacher probability rows, and all of a loss call's inputs at once.

#include <minnow/distill/softmax.hpp>
#include <minnow/distill/teacher.hpp>
#include <minnow/error.hpp>
#include <minnow/tensor.hpp>

#include <atomic>
#include <cmath>
#include <cstdint>

namespace minnow::distill {

namespace detail {

/// True when a row of probabilities is acceptable: every entry ≥ 0 and the sum within the tolerance.
/// A NaN entry makes the sum NaN, which fails the test.
template <class T>
[[nodiscard]] bool probability_row_ok(const T* row, index_t cols) noexcept {
  const ConstRowMap<T> r(row, cols);
  return r.minCoeff() >= T(0) && std::abs(row_sum_wide(row, cols) - 1.0) <= probability_sum_tolerance;
}

}  // namespace detail

/// @brief Throws value_error unless alpha ∈ [0, 1] (NaN fails): the weight of the distillation term
/// against cross-entropy in combined_loss() and SoftTargetLoss.
inline void check_alpha(const char* what, double alpha) {
  if (!(alpha >= 0.0 && alpha <= 1.0)) {
    throw value_error(minnow::detail::concat(what, ": alpha must be in [0, 1], got alpha = ", alpha));
  }
}

/// @brief Throws value_error unless every row of `p` [N, C] is a distribution: every entry ≥ 0 and every
/// row summing to 1 within probability_sum_tolerance. The message names the first bad row (and entry).
/// The check is a vectorized pass over row blocks (threaded like the kernels); only a failing row is
/// scanned again, to name the offending entry.
template <class T>
void check_probability_rows(const char* what, TensorView<const T, 2> p) {
  const index_t rows = p.dim(0), cols = p.dim(1);
  std::atomic<index_t> first_bad{rows};
  detail::for_each_row_block(rows, cols, detail::threads_for(p.size()), [&](index_t begin, index_t end, int) {
    for (index_t i = begin; i < end && i < first_bad.load(std::memory_order_relaxed); ++i) {
      if (!detail::probability_row_ok(p.data() + i * cols, cols)) {
        index_t seen = first_bad.load(std::memory_order_relaxed);
        while (i < seen && !first_bad.compare_exchange_weak(seen, i)) {
        }
        return;
      }
    }
  });
  const index_t i = first_bad.load();
  if (i == rows) return;
  const T* row = p.data() + i * cols;
  for (index_t j = 0; j < cols; ++j) {
    if (!(row[j] >= T(0))) {  // also catches NaN
      throw value_error(minnow::detail::concat(what, ": teacher probability at row ", i, ", class ", j, " is ", row[j],
                                               ", expected a value >= 0"));
    }
  }
  throw value_error(minnow::detail::concat(what, ": teacher probabilities of row ", i, " sum to ",
                                           detail::row_sum_wide(row, cols), ", expected 1 within ",
                                           probability_sum_tolerance));
}

/// @brief Throws shape_error unless there is one label per row of `logits` [N, C], and value_error unless
/// each label is a class index in [0, C).
inline void check_class_labels(const char* what, const Shape<2>& logits, TensorView<const std::int32_t, 1> labels) {
  if (labels.size() != logits[0]) {
    throw shape_error(
        minnow::detail::concat(what, ": ", labels.size(), " labels for student logits ", to_string(logits)));
  }
  for (index_t i = 0; i < labels.size(); ++i) {
    if (labels(i) < 0 || labels(i) >= logits[1]) {
      throw value_error(
          minnow::detail::concat(what, ": label ", labels(i), " at position ", i, " is outside [0, ", logits[1], ")"));
    }
  }
}

namespace detail {

/// Validation shared by the public losses: temperature, shapes, and probability rows.
template <class T>
void check_kd_inputs(const char* what, TensorView<const T, 2> student, TensorView<const T, 2> teacher, TeacherKind kind,
                     double temperature, TensorView<T, 2> dstudent) {
  check_temperature<T>(what, temperature);
  check_has_classes(what, "student logits", student.shape());
  check_same_shape(what, "student logits", student.shape(),
                   kind == TeacherKind::logits ? "teacher logits" : "teacher probabilities", teacher.shape());
  check_same_shape(what, "student logits", student.shape(), "gradient", dstudent.shape());
  if (kind == TeacherKind::probabilities) check_probability_rows(what, teacher);
}

}  // namespace detail

}  // namespace minnow::distill
