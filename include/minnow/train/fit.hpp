#pragma once
/// @file train/fit.hpp
/// @brief The one training recipe (SGD with Nesterov momentum, weight decay, a cosine learning-rate schedule
/// over the epochs, optional augmentation) and fit(), the loop that runs it: used by examples/train.cpp, the
/// ensemble members of pipeline/ensemble_training.hpp and the fine-tuning stages of the examples.
///
///     train::Recipe recipe{.epochs = 15, .batch = 64, .learning_rate = 0.05};
///     const auto history = train::fit<float>(model, data.train, recipe, /*seed=*/1);

#include <minnow/data/augment.hpp>
#include <minnow/data/batches.hpp>
#include <minnow/data/bootstrap.hpp>
#include <minnow/data/dataset.hpp>
#include <minnow/error.hpp>
#include <minnow/nn/lr_schedule.hpp>
#include <minnow/nn/optimizer.hpp>
#include <minnow/nn/sequential.hpp>
#include <minnow/nn/sgd.hpp>
#include <minnow/tensor.hpp>
#include <minnow/train/trainer.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace minnow::train {

/// @brief How a model trains: SGD with Nesterov momentum and weight decay, the learning rate
/// cosine-annealed from `learning_rate` over `epochs` (nn::CosineAnnealingLR), batches of `batch`.
struct Recipe {
  int epochs = 15;              ///< > 0
  index_t batch = 64;           ///< > 0
  double learning_rate = 0.05;  ///< finite and ≥ 0, the base of the cosine schedule
  double momentum = 0.9;        ///< > 0 (Nesterov)
  double weight_decay = 5e-4;   ///< ≥ 0
  /// When set, every batch is augmented on the fly (data::BatchAugmenter seeded with the training seed).
  std::optional<data::Augmentation> augmentation{};
};

/// @brief Checks a recipe; `what` names the caller in the message.
/// @throws value_error for epochs ≤ 0, batch ≤ 0, a negative or non-finite learning_rate, momentum ≤ 0, weight_decay < 0,
/// or an augmentation data::BatchAugmenter refuses.
inline void check_recipe(const char* what, const Recipe& r) {
  if (r.epochs <= 0 || r.batch <= 0 || !(r.learning_rate >= 0.0) || !std::isfinite(r.learning_rate) || !(r.momentum > 0.0) ||
      !(r.weight_decay >= 0.0)) {
    throw value_error(minnow::detail::concat(what, ": recipe needs epochs > 0, batch > 0, learning_rate finite and >= 0, momentum > 0 ",
                                             "and weight_decay >= 0, got epochs ", r.epochs, ", batch ", r.batch,
                                             ", learning_rate ", r.learning_rate, ", momentum ", r.momentum,
                                             ", weight_decay ", r.weight_decay));
  }
  if (r.augmentation) (void)data::BatchAugmenter<float>(*r.augmentation, 0);  // checks it as fit() will
}

/// @brief The recipe's optimizer for `model`: SGD at `learning_rate` with Nesterov `momentum` and `weight_decay`.
/// For a caller that needs the optimizer before or after fit() (a pruner tracking its momentum, a checkpoint
/// of its state): pass it in FitOptions::optimizer.
template <class T>
[[nodiscard]] nn::Sgd<T> make_sgd(nn::Sequential<T>& model, const Recipe& recipe) {
  return nn::Sgd<T>(model.parameters(), recipe.learning_rate,
                    {.momentum = recipe.momentum, .weight_decay = recipe.weight_decay, .nesterov = true});
}

/// Called after every epoch of a fit() (from the training's thread).
using EpochCallback = std::function<void(const EpochStats&)>;

/// @brief What fit() does besides the recipe: progress, an optimizer of the caller's, hooks, a report per epoch.
template <class T>
struct FitOptions {
  bool progress = false;  ///< a progress bar per epoch on stderr
  /// Trains with this optimizer instead of a fresh make_sgd(model, recipe) (its state carries over, e.g. from
  /// one fine-tuning stage to the next); the schedule sets its learning rate, the recipe's momentum and
  /// weight decay are not used.
  nn::Optimizer<T>* optimizer = nullptr;
  /// The sampler's epoch of the first epoch: a stage that continues an earlier stage's batch order.
  std::uint64_t first_epoch = 0;
  /// Once, before the first step: where a caller adds the Trainer's step and gradient hooks (pruning, QAT).
  std::function<void(Trainer<T>&)> on_start{};
  /// After every epoch.
  EpochCallback on_epoch{};
};

/// @brief Trains `model` with `recipe` on the samples `indices` of `data` (repeats allowed, e.g. a bootstrap
/// sample), minimising `loss`; returns each epoch's mean loss, accuracy and time.
///
/// Epoch e uses the batches of `data::SubsetBatchSampler(indices, recipe.batch, seed)` at epoch
/// `first_epoch + e` (with indices 0..N−1 these are `data::BatchSampler(N, batch, seed)`'s) and the learning
/// rate `CosineAnnealingLR{epochs}(e, learning_rate)`. With `recipe.augmentation`, step s's batch is
/// augmented by `data::BatchAugmenter(*recipe.augmentation, seed)`. Runs on the calling thread's OpenMP
/// threads (set them with minnow::set_threads).
/// @throws value_error for a bad recipe, an empty loss or an index outside the data set; what `loss` and the
/// callbacks throw.
template <class T>
std::vector<EpochStats> fit(nn::Sequential<T>& model, const data::Dataset<T>& data, std::span<const index_t> indices,
                            const Recipe& recipe, std::uint64_t seed, LossFunction<T> loss = cross_entropy<T>(),
                            const FitOptions<T>& options = {}) {
  check_recipe("fit", recipe);
  if (!loss) throw value_error("fit: the loss function is empty");
  if (options.optimizer == nullptr) {
    auto sgd = make_sgd(model, recipe);
    FitOptions<T> with_sgd = options;
    with_sgd.optimizer = &sgd;
    return fit<T>(model, data, indices, recipe, seed, std::move(loss), with_sgd);
  }
  nn::Optimizer<T>& optimizer = *options.optimizer;
  Trainer<T> trainer(model, optimizer, std::move(loss));
  trainer.set_progress(options.progress);
  if (recipe.augmentation) trainer.set_batch_transform(data::BatchAugmenter<T>(*recipe.augmentation, seed));
  if (options.on_start) options.on_start(trainer);
  data::SubsetBatchSampler sampler(std::vector<index_t>(indices.begin(), indices.end()), recipe.batch, seed);
  const nn::CosineAnnealingLR schedule{recipe.epochs};
  std::vector<EpochStats> history;
  for (int epoch = 0; epoch < recipe.epochs; ++epoch) {
    optimizer.set_learning_rate(schedule(epoch, recipe.learning_rate));
    sampler.set_epoch(options.first_epoch + static_cast<std::uint64_t>(epoch));
    history.push_back(trainer.train_epoch(data, sampler));
    if (options.on_epoch) options.on_epoch(history.back());
  }
  return history;
}

/// @brief As above, on every sample of `data` (the batches of `data::BatchSampler(data.size(), batch, seed)`).
template <class T>
std::vector<EpochStats> fit(nn::Sequential<T>& model, const data::Dataset<T>& data, const Recipe& recipe,
                            std::uint64_t seed, LossFunction<T> loss = cross_entropy<T>(), const FitOptions<T>& options = {}) {
  const auto all = data::range_indices(0, data.size());
  return fit<T>(model, data, all, recipe, seed, std::move(loss), options);
}

}  // namespace minnow::train
