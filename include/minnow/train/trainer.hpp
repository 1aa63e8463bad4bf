#pragma once
/// @file train/trainer.hpp
/// @brief An optional training loop: what a user would write by hand, with hooks where compression plugs in.
/// Users with their own loop can ignore it and call the layers directly.

#include <minnow/data/batches.hpp>
#include <minnow/data/dataset.hpp>
#include <minnow/error.hpp>
#include <minnow/nn/loss.hpp>
#include <minnow/nn/optimizer.hpp>
#include <minnow/nn/sequential.hpp>
#include <minnow/train/evaluate.hpp>
#include <minnow/train/progress.hpp>

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <span>
#include <utility>
#include <vector>

namespace minnow::train {

/// One epoch of training: its mean loss and accuracy on the training batches, and its wall time.
struct EpochStats {
  int epoch = 0;
  double learning_rate = 0.0;
  Evaluation train;
  double seconds = 0.0;
};

/// @brief The loss of a batch: given the logits [B, C], the labels and the batch's sample indices
/// (so a distillation loss can look up cached teacher outputs), writes dL/dlogits and returns L.
template <class T>
using LossFunction = std::function<double(TensorView<const T, 2> logits, TensorView<const std::int32_t, 1> labels,
                                          std::span<const index_t> indices, TensorView<T, 2> dlogits)>;

/// Softmax cross-entropy against the labels, as a LossFunction.
template <class T>
[[nodiscard]] LossFunction<T> cross_entropy() {
  return [](TensorView<const T, 2> logits, TensorView<const std::int32_t, 1> labels, std::span<const index_t>,
            TensorView<T, 2> dlogits) { return nn::softmax_cross_entropy<T>(logits, labels, dlogits); };
}

/// @brief Trains a Sequential with an optimizer on a data set, one epoch at a time.
///
/// A step is: gather the batch → batch transform (augmentation) → forward → loss → backward → gradient
/// hooks (STE masks, clipping) → optimizer step → hooks (pruning masks, observers, ...). The batch,
/// logit-gradient and layer buffers are reused, so after the first step a training step allocates no tensors.
template <class T>
class Trainer {
 public:
  /// Called after every optimizer step with the global step number (0-based).
  using Hook = std::function<void(std::int64_t step)>;
  /// Edits a gathered batch in place before the forward pass (e.g. data::BatchAugmenter); gets the batch's
  /// sample indices and the global step. A loss that looks samples up by index (a cached teacher table,
  /// OnlineTeacherLoss) still sees the untransformed sample: for distillation on augmented images, train on
  /// data::with_augmented_copies() and cache the teacher on those.
  using BatchTransform = std::function<void(TensorView<T, 4> images, std::span<const index_t> indices, std::int64_t step)>;

  Trainer(nn::Sequential<T>& model, nn::Optimizer<T>& optimizer, LossFunction<T> loss = cross_entropy<T>())
      : model_(model), optimizer_(optimizer), loss_(std::move(loss)) {}

  /// Runs `hook` after every optimizer step (pruning masks, observers, weight sharing).
  void add_hook(Hook hook) { hooks_.push_back(std::move(hook)); }
  /// Runs `hook` after backward and before the optimizer step, when the gradients are complete:
  /// where gradients are edited (a straight-through estimator's clamp mask, clipping).
  void add_gradient_hook(Hook hook) { gradient_hooks_.push_back(std::move(hook)); }
  void set_loss(LossFunction<T> loss) { loss_ = std::move(loss); }
  void set_batch_transform(BatchTransform transform) { transform_ = std::move(transform); }
  void set_progress(bool enabled) noexcept { progress_ = enabled; }

  /// @brief One pass over `data` in the sampler's order for its current epoch.
  /// @throws shape_error when a BatchSampler covers another number of samples than `data` has;
  /// value_error (from gather) for an index outside `data`.
  template <data::EpochSampler Sampler>
  EpochStats train_epoch(const data::Dataset<T>& data, Sampler& sampler) {
    if constexpr (std::same_as<Sampler, data::BatchSampler>) {
      if (sampler.num_samples() != data.size()) {
        throw shape_error(minnow::detail::concat("Trainer: sampler over ", sampler.num_samples(), " samples, data set has ", data.size()));
      }
    }
    const auto start = std::chrono::steady_clock::now();
    Progress progress(minnow::detail::concat("epoch ", sampler.epoch() + 1), static_cast<long>(sampler.num_batches()), progress_);
    progress.set_samples_per_step(static_cast<double>(sampler.batch_size()));
    double loss_sum = 0.0;
    index_t correct = 0, seen = 0;
    for (index_t b = 0; b < sampler.num_batches(); ++b) {
      const auto indices = sampler.batch(b);
      const double loss = step(data, indices);
      correct += last_correct_;
      seen += static_cast<index_t>(indices.size());
      loss_sum += loss * static_cast<double>(indices.size());
      progress.update(static_cast<long>(b + 1), loss_sum / static_cast<double>(seen));
    }
    EpochStats stats;
    stats.epoch = static_cast<int>(sampler.epoch());
    stats.learning_rate = optimizer_.learning_rate();
    stats.train = {seen ? loss_sum / static_cast<double>(seen) : 0.0, seen ? static_cast<double>(correct) / static_cast<double>(seen) : 0.0, seen};
    stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return stats;
  }

  /// One training step on the samples `indices` of `data`; returns the batch loss.
  /// @throws value_error for an empty batch or an index outside `data` (nothing is changed).
  double step(const data::Dataset<T>& data, std::span<const index_t> indices) {
    if (indices.empty()) throw value_error("Trainer::step: the batch is empty (no sample indices)");
    data::gather(data, indices, images_, labels_);
    if (transform_) transform_(images_.view(), indices, steps_);
    const index_t n = images_.dim(0);
    const auto output = model_.forward(images_.view(), nn::Mode::train);
    const index_t classes = output.size() / std::max<index_t>(n, 1);
    const auto logits = output.template reshape<2>(n, classes);
    dlogits_.resize({n, classes, 1, 1});
    const double loss = loss_(logits, labels_.view(), indices, dlogits_.view().template reshape<2>(n, classes));
    last_correct_ = nn::count_correct<T>(logits, labels_.view());
    model_.backward(dlogits_.view());
    for (auto& hook : gradient_hooks_) hook(steps_);
    optimizer_.step();
    for (auto& hook : hooks_) hook(steps_);
    ++steps_;
    return loss;
  }

  [[nodiscard]] std::int64_t steps() const noexcept { return steps_; }

 private:
  nn::Sequential<T>& model_;
  nn::Optimizer<T>& optimizer_;
  LossFunction<T> loss_;
  BatchTransform transform_;
  std::vector<Hook> hooks_;
  std::vector<Hook> gradient_hooks_;
  bool progress_ = true;
  std::int64_t steps_ = 0;
  index_t last_correct_ = 0;
  Tensor<T, 4> images_, dlogits_;
  Tensor<std::int32_t, 1> labels_;
};

}  // namespace minnow::train
