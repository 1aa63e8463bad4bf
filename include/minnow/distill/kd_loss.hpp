#pragma once
/// @file distill/kd_loss.hpp
/// @brief The knowledge-distillation loss (Hinton et al. 2015) with its gradient, the combined
/// KD + cross-entropy loss, and (through distill/soft_target_loss.hpp) SoftTargetLoss, a training-loop
/// loss over cached teacher outputs.
///
/// With p = softmax(t/T) (teacher, no gradient) and q = softmax(s/T) (student), for a batch of B rows:
///
///     L_KD   = (T² / B) · Σ_rows Σ_classes p · (log p − log q),   0 · log 0 = 0
///     ∂L/∂s  = (T / B) · (q − p)
///
/// which is PyTorch's `F.kl_div(F.log_softmax(s/T, 1), F.softmax(t/T, 1), reduction='batchmean') * T*T`
/// (`'batchmean'` divides by B; `'mean'` would divide by B·C). The T² keeps the gradient's scale
/// independent of T, so the KD and cross-entropy terms can be mixed with one weight α.
///
/// The pieces: teacher.hpp (TeacherLogits, TeacherProbabilities), kd_workspace.hpp (KdWorkspace),
/// kd_checks.hpp (argument checks), kd_blocks.hpp (the computation, whose float row kernel is
/// simd/softmax_kl_rows.hpp) and soft_target_loss.hpp; this header gives all of them.

#include <minnow/distill/kd_blocks.hpp>
#include <minnow/distill/kd_checks.hpp>
#include <minnow/distill/kd_workspace.hpp>
#include <minnow/distill/soft_target_loss.hpp>
#include <minnow/distill/softmax.hpp>
#include <minnow/distill/teacher.hpp>
#include <minnow/tensor.hpp>

#include <cstdint>
#include <type_traits>

namespace minnow::distill {

/// @brief The KD loss `(T²/B) Σ KL(softmax(t/T) ‖ softmax(s/T))`; writes `∂L/∂s = (T/B)(q − p)` into
/// `dstudent` (which must not overlap the inputs) and returns L.
/// @tparam T scalar type, deduced from the teacher wrapper.
///
/// The teacher is `TeacherLogits<T>` or `TeacherProbabilities<T>` (then the gradient is the exact
/// derivative (T/B)(P·q − p) for row sums P, i.e. (T/B)(q − p) when rows sum to 1). Logits must be
/// finite (a NaN logit makes the loss NaN, and its row of the gradient). Student equal to teacher (as
/// logits) gives exactly 0 and a zero gradient. An empty batch gives 0 and writes nothing. Large batches
/// run on OpenMP threads; the value does not depend on the thread count, nor (for float teacher logits,
/// whose row kernel has a path per instruction set, chosen as simd/arch.hpp describes) on the path. With
/// a warm `workspace` (or the per-thread default one) nothing is allocated. Accuracy in float: ~1e-7
/// relative for T ≤ 4, growing like T (the scaled logits are rounded to float, and the loss is a
/// T²-amplified difference): ~3e-6 at T = 20.
/// @throws value_error when T is not a finite number > 0, or teacher probabilities have a negative
/// entry or a row not summing to 1 within probability_sum_tolerance (naming the row and its sum);
/// shape_error when student, teacher and gradient shapes differ or there are no classes.
template <class T, template <class> class Teacher>
requires TeacherOutputs<Teacher<T>>
double kd_loss(std::type_identity_t<TensorView<const T, 2>> student, const Teacher<T>& teacher, double temperature,
               std::type_identity_t<TensorView<T, 2>> dstudent, KdWorkspace<T>& workspace) {
  const auto kind = detail::kind_of(teacher);
  detail::check_kd_inputs<T>("kd_loss", student, teacher.view(), kind, temperature, dstudent);
  return detail::combined_unchecked<T>(student, teacher.view(), kind, nullptr, temperature, 1.0, dstudent, workspace);
}

/// kd_loss() with this thread's default workspace.
template <class T, template <class> class Teacher>
requires TeacherOutputs<Teacher<T>>
double kd_loss(std::type_identity_t<TensorView<const T, 2>> student, const Teacher<T>& teacher, double temperature,
               std::type_identity_t<TensorView<T, 2>> dstudent) {
  return kd_loss<T>(student, teacher, temperature, dstudent, detail::default_workspace<T>());
}

/// @brief `alpha · L_KD(s, teacher, T) + (1 − alpha) · CE(s, labels)`, where CE is the mean softmax
/// cross-entropy of the untempered logits (PyTorch's `F.cross_entropy`). Writes the gradient
/// `alpha (T/B)(q − p) + (1 − alpha)(softmax(s) − onehot(y))/B` into `dstudent` and returns the loss.
/// @tparam T scalar type, deduced from the teacher wrapper.
/// @throws value_error for alpha outside [0, 1] or NaN, a label outside [0, C), and as kd_loss();
/// shape_error when the label count differs from the batch size, and as kd_loss().
template <class T, template <class> class Teacher>
requires TeacherOutputs<Teacher<T>>
double combined_loss(std::type_identity_t<TensorView<const T, 2>> student, const Teacher<T>& teacher,
                     TensorView<const std::int32_t, 1> labels, double temperature, double alpha,
                     std::type_identity_t<TensorView<T, 2>> dstudent, KdWorkspace<T>& workspace) {
  const auto kind = detail::kind_of(teacher);
  check_alpha("combined_loss", alpha);
  detail::check_kd_inputs<T>("combined_loss", student, teacher.view(), kind, temperature, dstudent);
  check_class_labels("combined_loss", student.shape(), labels);
  return detail::combined_unchecked<T>(student, teacher.view(), kind, labels.data(), temperature, alpha, dstudent,
                                       workspace);
}

/// combined_loss() with this thread's default workspace.
template <class T, template <class> class Teacher>
requires TeacherOutputs<Teacher<T>>
double combined_loss(std::type_identity_t<TensorView<const T, 2>> student, const Teacher<T>& teacher,
                     TensorView<const std::int32_t, 1> labels, double temperature, double alpha,
                     std::type_identity_t<TensorView<T, 2>> dstudent) {
  return combined_loss<T>(student, teacher, labels, temperature, alpha, dstudent, detail::default_workspace<T>());
}

}  // namespace minnow::distill
