#pragma once
// The command-line glue of the examples' training: options → minnow::train::Recipe (SGD with Nesterov momentum
// 0.9, weight decay, batch 64, cosine annealing of the learning rate over the epochs), train::fit, a checkpoint.
#include <minnow/data.hpp>
#include <minnow/nn.hpp>
#include <minnow/train.hpp>

#include "architectures.hpp"
#include "cli.hpp"

#include <cstdint>
#include <cstdio>
#include <string>

namespace example {

/// The recipe's command-line options (train::Recipe's defaults) and the seed.
struct RecipeOptions {
  int epochs = 15;
  long batch = 64;
  double lr = 0.05;
  double weight_decay = 5e-4;
  unsigned long long seed = 1;
};

/// Registers --epochs, --batch, --lr and --seed for `recipe`; `what` says which training they set.
inline void add_recipe_options(CommandLine& cli, RecipeOptions& recipe, const std::string& what) {
  cli.option("--epochs", recipe.epochs, "epochs of " + what + " (default 15)")
      .option("--batch", recipe.batch, "batch size (default 64)")
      .option("--lr", recipe.lr, "learning rate of " + what + ", cosine-annealed (default 0.05)")
      .option("--seed", recipe.seed, "initialisation and shuffling seed (default 1)");
}

/// Checks the options add_recipe_options registers, and the weight decay (train's --weight-decay).
/// @throws minnow::value_error naming the option.
inline void check_recipe(const RecipeOptions& r) {
  check_at_least("--epochs", r.epochs, 1);
  check_at_least("--batch", r.batch, 1);
  check_rate("--lr", r.lr);
  check_rate("--weight-decay", r.weight_decay);
}

/// The library's recipe for the options.
inline minnow::train::Recipe to_recipe(const RecipeOptions& r) {
  return {.epochs = r.epochs, .batch = r.batch, .learning_rate = r.lr, .weight_decay = r.weight_decay};
}

/// Trains `model` with the recipe on every sample (train::fit); `after_epoch(epoch, stats)` runs after every
/// epoch (epoch from 1). With `save_path`, saves the model and the optimizer's state under `architecture`.
template <class AfterEpoch>
void train_with_recipe(minnow::nn::Sequential<float>& model, const minnow::data::Dataset<float>& train, const RecipeOptions& r,
                       bool progress, AfterEpoch&& after_epoch, const std::string& save_path = {},
                       const std::string& architecture = {}) {
  const minnow::train::Recipe recipe = to_recipe(r);
  auto sgd = minnow::train::make_sgd(model, recipe);
  minnow::train::FitOptions<float> options{.progress = progress, .optimizer = &sgd};
  options.on_epoch = [&](const minnow::train::EpochStats& stats) { after_epoch(stats.epoch + 1, stats); };
  (void)minnow::train::fit<float>(model, train, recipe, r.seed, minnow::train::cross_entropy<float>(), options);
  if (!save_path.empty()) {
    minnow::train::save_training_state(save_path, architecture, model, static_cast<minnow::nn::Optimizer<float>*>(&sgd));
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
                                 const minnow::data::Dataset<float>& train, const RecipeOptions& recipe, const char* label) {
  if (!load.empty()) return load;
  auto model = example::make_architecture<float>(architecture, recipe.seed);
  train_with_recipe(model, train, recipe, false, [label](int epoch, const minnow::train::EpochStats& stats) {
    std::printf("%s epoch %2d: train loss %.4f, %.1f s\n", label, epoch, stats.train.loss, stats.seconds);
  }, fallback, architecture);
  return fallback;
}

}  // namespace example
