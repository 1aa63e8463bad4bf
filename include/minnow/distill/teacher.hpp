#pragma once
/// @file distill/teacher.hpp
/// @brief The two forms a teacher's outputs take in the KD losses: logits (TeacherLogits, the loss uses
/// softmax(t / T)) or probabilities (TeacherProbabilities, used as they are). Distinct types, so logits can
/// never be read as probabilities or the reverse.

#include <minnow/tensor.hpp>

#include <type_traits>

namespace minnow::distill {

/// Teacher probability rows must sum to 1 within this (absolute) tolerance; float rows from a
/// softmax or an ensemble average are off by ~1e-7, a hand-made or truncated table by more.
inline constexpr double probability_sum_tolerance = 1e-3;

/// @brief Teacher outputs given as logits [B, C]: the loss uses p = softmax(t / T).
/// @tparam T scalar type.
///
/// A distinct type from TeacherProbabilities, so logits can never be read as probabilities or the
/// reverse: `kd_loss(s, TeacherLogits(t), 4.0, ds)`.
template <class T>
class TeacherLogits {
 public:
  explicit TeacherLogits(TensorView<const T, 2> logits) noexcept : values_(logits) {}
  [[nodiscard]] TensorView<const T, 2> view() const noexcept { return values_; }

 private:
  TensorView<const T, 2> values_;
};

/// @brief Teacher outputs given as probabilities [B, C] (e.g. ensemble soft targets already at
/// temperature T): used as p directly. Entries must be ≥ 0 and rows must sum to 1 within
/// probability_sum_tolerance; exact zeros are allowed (0 · log 0 = 0).
/// @tparam T scalar type.
template <class T>
class TeacherProbabilities {
 public:
  explicit TeacherProbabilities(TensorView<const T, 2> probabilities) noexcept : values_(probabilities) {}
  [[nodiscard]] TensorView<const T, 2> view() const noexcept { return values_; }

 private:
  TensorView<const T, 2> values_;
};

// Deduce the scalar from a tensor or a view: `TeacherLogits(tensor)`.
template <class T>
TeacherLogits(const Tensor<T, 2>&) -> TeacherLogits<T>;
template <class T>
TeacherLogits(TensorView<T, 2>) -> TeacherLogits<std::remove_const_t<T>>;
template <class T>
TeacherProbabilities(const Tensor<T, 2>&) -> TeacherProbabilities<T>;
template <class T>
TeacherProbabilities(TensorView<T, 2>) -> TeacherProbabilities<std::remove_const_t<T>>;

namespace detail {

enum class TeacherKind { logits, probabilities };

template <class T>
[[nodiscard]] TeacherKind kind_of(const TeacherLogits<T>&) noexcept {
  return TeacherKind::logits;
}
template <class T>
[[nodiscard]] TeacherKind kind_of(const TeacherProbabilities<T>&) noexcept {
  return TeacherKind::probabilities;
}

}  // namespace detail

/// The two ways a teacher can be given.
template <class Teacher>
concept TeacherOutputs = requires(const Teacher& teacher) {
  {detail::kind_of(teacher)};
  {teacher.view()};
};

}  // namespace minnow::distill
