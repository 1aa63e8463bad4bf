#pragma once
/// @file distill/soft_target_loss.hpp
/// @brief SoftTargetLoss: combined_loss() over teacher outputs cached for a whole data set, with the call
/// signature of a training loop's loss (train::LossFunction), without distill/ depending on nn/.

#include <minnow/distill/kd_blocks.hpp>
#include <minnow/distill/kd_checks.hpp>
#include <minnow/distill/kd_workspace.hpp>
#include <minnow/distill/softmax.hpp>
#include <minnow/distill/teacher.hpp>
#include <minnow/error.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

namespace minnow::distill {

/// @brief A training-loop loss that distils from teacher outputs cached for a whole data set.
/// @tparam T scalar type.
///
/// Its call signature is the one `minnow::train::LossFunction<T>` expects —
/// `double(TensorView<const T, 2> logits, TensorView<const int32_t, 1> labels, std::span<const index_t>
/// indices, TensorView<T, 2> dlogits)` — so `trainer.set_loss(distill::SoftTargetLoss<float>(...))`
/// works without distill/ depending on nn/. Row `indices[r]` of the cached table [N, C] is the teacher
/// output for row r of the batch; the loss is combined_loss() with the given alpha (alpha = 1: pure KD).
///
/// The table is viewed, not copied: it must outlive the loss. Probability tables are validated once,
/// here. Copies share the table but not the scratch buffers, so each copy may be used by its own thread.
template <class T>
class SoftTargetLoss {
 public:
  /// Cached teacher logits for every sample (e.g. one teacher's outputs on the training set).
  SoftTargetLoss(TeacherLogits<T> table, double temperature, double alpha = 1.0)
      : SoftTargetLoss(table.view(), detail::TeacherKind::logits, temperature, alpha) {}
  /// Cached teacher probabilities for every sample (e.g. ensemble::mean_probabilities at temperature T).
  SoftTargetLoss(TeacherProbabilities<T> table, double temperature, double alpha = 1.0)
      : SoftTargetLoss(table.view(), detail::TeacherKind::probabilities, temperature, alpha) {}

  /// The batch loss; writes dL/dlogits.
  /// @throws shape_error when indices, labels and logits disagree in count or logits and table in classes;
  /// value_error for an index outside [0, N) or a label outside [0, C).
  double operator()(TensorView<const T, 2> logits, TensorView<const std::int32_t, 1> labels,
                    std::span<const index_t> indices, TensorView<T, 2> dlogits) {
    constexpr const char* what = "SoftTargetLoss";
    const index_t rows = logits.dim(0), cols = table_.dim(1);
    if (static_cast<index_t>(indices.size()) != rows) {
      throw shape_error(
          minnow::detail::concat(what, ": ", indices.size(), " sample indices for logits ", to_string(logits.shape())));
    }
    if (logits.dim(1) != cols) {
      throw shape_error(minnow::detail::concat(what, ": logits ", to_string(logits.shape()), " do not match the ", cols,
                                               " classes of the cached teacher outputs ", to_string(table_.shape())));
    }
    check_same_shape(what, "logits", logits.shape(), "gradient", dlogits.shape());
    if (alpha_ < 1.0) check_class_labels(what, logits.shape(), labels);
    gathered_.resize({rows, cols});
    for (index_t r = 0; r < rows; ++r) {
      const index_t index = indices[static_cast<std::size_t>(r)];
      if (index < 0 || index >= table_.dim(0)) {
        throw value_error(minnow::detail::concat(what, ": sample index ", index, " at batch position ", r,
                                                 " is outside [0, ", table_.dim(0), ")"));
      }
      std::copy_n(table_.data() + index * cols, cols, gathered_.data() + r * cols);
    }
    return detail::combined_unchecked<T>(logits, gathered_.view(), kind_, alpha_ < 1.0 ? labels.data() : nullptr,
                                         temperature_, alpha_, dlogits, workspace_);
  }

  [[nodiscard]] double temperature() const noexcept { return temperature_; }
  [[nodiscard]] double alpha() const noexcept { return alpha_; }

  SoftTargetLoss(const SoftTargetLoss& other)
      : table_(other.table_), kind_(other.kind_), temperature_(other.temperature_), alpha_(other.alpha_) {}
  SoftTargetLoss& operator=(const SoftTargetLoss& other) {
    table_ = other.table_;
    kind_ = other.kind_;
    temperature_ = other.temperature_;
    alpha_ = other.alpha_;
    return *this;
  }
  SoftTargetLoss(SoftTargetLoss&&) noexcept = default;
  SoftTargetLoss& operator=(SoftTargetLoss&&) noexcept = default;
  ~SoftTargetLoss() = default;

 private:
  SoftTargetLoss(TensorView<const T, 2> table, detail::TeacherKind kind, double temperature, double alpha)
      : table_(table), kind_(kind), temperature_(temperature), alpha_(alpha) {
    check_temperature<T>("SoftTargetLoss", temperature);
    check_alpha("SoftTargetLoss", alpha);
    check_has_classes("SoftTargetLoss", "cached teacher outputs", table.shape());
    if (kind == detail::TeacherKind::probabilities) check_probability_rows("SoftTargetLoss", table);
  }

  TensorView<const T, 2> table_;
  detail::TeacherKind kind_;
  double temperature_;
  double alpha_;
  Tensor<T, 2> gathered_;
  KdWorkspace<T> workspace_;
};

}  // namespace minnow::distill
