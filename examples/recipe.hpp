#pragma once
// The training recipe the examples share (examples/train.cpp's defaults): SGD with Nesterov momentum 0.9,
// weight decay, batch 64, cosine annealing of the learning rate over the epochs.
#include <minnow/data.hpp>
#include <minnow/nn.hpp>
#include <minnow/nn/train.hpp>

#include "architectures.hpp"
#include "cli.hpp"

#include <cstdint>
#include <cstdio>
#include <string>

namespace example {

struct Recipe {
  int epochs = 15;
  long batch = 64;
  double lr = 0.05;
  double weight_decay = 5e-4;
  unsigned long long seed = 1;
};

/// Registers --epochs, --batch, --lr and --seed for `recipe`; `what` says which training they set.
inline void add_recipe_options(CommandLine& cli, Recipe& recipe, const std::string& what) {
  cli.option("--epochs", recipe.epochs, "epochs of " + what + " (default 15)")
      .option("--batch", recipe.batch, "batch size (default 64)")
      .option("--lr", recipe.lr, "learning rate of " + what + ", cosine-annealed (default 0.05)")
      .option("--seed", recipe.seed, "initialisation and shuffling seed (default 1)");
}

/// Checks the options add_recipe_options registers, and the weight decay (train's --weight-decay).
/// @throws minnow::value_error naming the option.
inline void check_recipe(const Recipe& r) {
  check_at_least("--epochs", r.epochs, 1);
  check_at_least("--batch", r.batch, 1);
  check_rate("--lr", r.lr);
  check_rate("--weight-decay", r.weight_decay);
}

/// Trains `model` with the recipe; `after_epoch(epoch, stats)` runs after every epoch (epoch from 1).
template <class AfterEpoch>
void train_with_recipe(minnow::nn::Sequential<float>& model, const minnow::data::Dataset<float>& train, const Recipe& r,
                       bool progress, AfterEpoch&& after_epoch, const std::string& save_path = {},
                       const std::string& architecture = {}) {
  minnow::nn::Sgd<float> sgd(model.parameters(), r.lr, {.momentum = 0.9, .weight_decay = r.weight_decay, .nesterov = true});
  minnow::nn::Trainer<float> trainer(model, sgd);
  trainer.set_progress(progress);
  minnow::data::BatchSampler sampler(train.size(), r.batch, r.seed);
  const minnow::nn::CosineAnnealingLR schedule{r.epochs};
  for (int epoch = 0; epoch < r.epochs; ++epoch) {
    sgd.set_learning_rate(schedule(epoch, r.lr));
    sampler.set_epoch(static_cast<std::uint64_t>(epoch));
    after_epoch(epoch + 1, trainer.train_epoch(train, sampler));
  }
  if (!save_path.empty()) {
    minnow::nn::save_training_state(save_path, architecture, model, static_cast<minnow::nn::Optimizer<float>*>(&sgd));
  }
}

/// Checks what load_or_train needs, before the data loads: `load` readable when given, else `fallback` writable.
inline void check_load_or_train(const std::string& load, const std::string& fallback) {
  if (!load.empty()) {
    check_input_file("--load", load);
  } else {
    check_output_file("without --load", fallback);
  }
}

/// The checkpoint `load` when given; otherwise trains `architecture` with the recipe, saves it as `fallback`
/// and returns that path. `label` prefixes the per-epoch lines ("dense", "float").
inline std::string load_or_train(const std::string& load, const std::string& architecture, const std::string& fallback,
                                 const minnow::data::Dataset<float>& train, const Recipe& recipe, const char* label) {
  if (!load.empty()) return load;
  auto model = example::make_architecture<float>(architecture, recipe.seed);
  train_with_recipe(model, train, recipe, false, [label](int epoch, const minnow::nn::EpochStats& stats) {
    std::printf("%s epoch %2d: train loss %.4f, %.1f s\n", label, epoch, stats.train.loss, stats.seconds);
  }, fallback, architecture);
  return fallback;
}

}  // namespace example
