// Prunes a trained teacher or student and fine-tunes it with a gradual (AGP) schedule.
//
//   prune --arch student --load student.ckpt --finetune-epochs 3 --sparsities 0.5,0.75,0.9,0.95
//   prune --arch teacher --load teacher.ckpt --sensitivity-only
//
// Without --load it first trains the dense network (--epochs, the train example's recipe) and saves it.
// Then, for each target sparsity: reload the dense weights, prune every weight tensor (not the biases)
// towards the target with magnitude (L1) pruning on an AGP schedule over the first epochs of
// fine-tuning, keep the masks through every SGD step (weights, gradients and momentum), and report
// test accuracy (--global: one L1 ranking across all weight tensors instead of the same sparsity in each).
// --structured adds L2-structured runs that remove 25 and 50 % of the conv filters.
// --sensitivity prints, per layer, the accuracy after one-shot pruning of that layer alone.
#include <minnow/data.hpp>
#include <minnow/nn.hpp>
#include <minnow/prune.hpp>
#include <minnow/train.hpp>

#include "../architectures.hpp"
#include "../cli.hpp"
#include "../recipe.hpp"

#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

namespace {

struct Options {
  std::string arch = "student";
  std::string load;
  std::string data_dir = minnow::data::default_fashion_mnist_dir().string();
  example::RecipeOptions recipe;  // for the dense network when there is no --load
  int finetune_epochs = 3;
  double finetune_lr = 0.01;
  int threads = 2;
  std::vector<double> sparsities = {0.5, 0.75, 0.9, 0.95};
  bool structured = false;
  bool global = false;
  bool sensitivity = false;
  bool sensitivity_only = false;
};

/// Where the dense network goes when there is no --load.
std::string dense_file(const Options& o) { return o.arch + "-dense.ckpt"; }

Options parse(int argc, char** argv) {
  Options o;
  example::CommandLine cli("prune", "Prunes a trained network with AGP schedules during fine-tuning.");
  cli.option("--arch", o.arch, "teacher | teacher5x5 | student (default student)")
      .option("--load", o.load, "dense checkpoint (default: train one with the train example's recipe)")
      .option("--data", o.data_dir, "Fashion-MNIST directory")
      .option("--finetune-epochs", o.finetune_epochs, "fine-tuning epochs per target, >= 2 (default 3)")
      .option("--finetune-lr", o.finetune_lr, "fine-tuning learning rate (default 0.01)")
      .option("--threads", o.threads, "threads (default 2)")
      .option("--sparsities", o.sparsities, "comma list of unstructured targets (default 0.5,0.75,0.9,0.95)")
      .flag("--global", o.global, true, "unstructured runs rank all weight tensors together (global L1)")
      .flag("--structured", o.structured, true, "also prune 25 and 50 % of the conv filters (L2)")
      .flag("--sensitivity", o.sensitivity, true, "print the per-layer sensitivity table first")
      .flag("--sensitivity-only", o.sensitivity_only, true, "print only the sensitivity table");
  example::add_recipe_options(cli, o.recipe, "the dense training");
  cli.parse(argc, argv);
  if (o.sensitivity_only) o.sensitivity = true;
  // Every option is checked here, before the data loads.
  example::check_option("--arch", [&] { example::check_architecture(o.arch); });
  example::check_recipe(o.recipe);
  example::check_at_least("--finetune-epochs", o.finetune_epochs, 2);  // AGP ramps over all but the last
  example::check_rate("--finetune-lr", o.finetune_lr);
  example::check_threads("--threads", o.threads);
  for (const double s : o.sparsities) example::check_sparsity("--sparsities", s);
  example::check_input_dir("--data", o.data_dir);
  example::check_load_or_train(o.load, dense_file(o));
  return o;
}

using Model = minnow::nn::Sequential<float>;
using Data = minnow::data::TrainTest<float>;

struct Run {
  std::string label;
  double accuracy;
  minnow::prune::SparsityReport report;
};

// Fine-tunes the dense weights while a GradualPruner drives `criterion` towards `target`.
// `names` empty: every weight tensor.
template <class Criterion>
Run prune_and_finetune(const std::string& label, double target, const Criterion& criterion, const Data& data,
                       const Options& o, const std::string& dense_path, const std::vector<std::string>& names = {}) {
  auto model = example::make_architecture<float>(o.arch, o.recipe.seed);
  minnow::train::load_parameters(dense_path, o.arch, model);
  const minnow::train::Recipe recipe{.epochs = o.finetune_epochs, .batch = o.recipe.batch, .learning_rate = o.finetune_lr};
  auto sgd = minnow::train::make_sgd(model, recipe);
  minnow::prune::Pruner<float> pruner;
  for (const auto& w : minnow::weight_parameters(model.parameters())) pruner.track(w, sgd.state(w.name));
  const std::int64_t steps_per_epoch = minnow::data::BatchSampler::sequential(data.train.size(), recipe.batch).num_batches();
  // Ramp the sparsity over all but the last fine-tuning epoch, pruning every 50 steps.
  minnow::prune::GradualPruner agp(minnow::prune::agp(0.0, target, 0, steps_per_epoch * (o.finetune_epochs - 1), 50));
  minnow::train::FitOptions<float> fit_options{.optimizer = &sgd};
  fit_options.on_start = [&](minnow::train::Trainer<float>& trainer) {
    trainer.add_hook([&](std::int64_t step) { agp.step(step, pruner, criterion, names); });
  };
  (void)minnow::train::fit<float>(model, data.train, recipe, o.recipe.seed + 1, minnow::train::cross_entropy<float>(), fit_options);
  return {label, minnow::train::evaluate(model, data.test).accuracy, minnow::prune::report(pruner)};
}

void sensitivity(const Data& data, const Options& o, const std::string& dense_path, double dense_accuracy) {
  const std::vector<double> grid = {0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99};
  std::printf("\nper-layer sensitivity (one-shot L1 pruning of one layer, no fine-tuning; dense %.2f %%)\n%-14s", dense_accuracy * 100,
              "layer");
  for (const double s : grid) std::printf(" %7.0f%%", s * 100);
  std::printf("\n");
  auto model = example::make_architecture<float>(o.arch, o.recipe.seed);
  for (const auto& w : minnow::weight_parameters(model.parameters())) {
    std::printf("%-14s", w.name.c_str());
    for (const double s : grid) {
      minnow::train::load_parameters(dense_path, o.arch, model);
      minnow::prune::Pruner<float> pruner;
      pruner.track(minnow::find_parameter(minnow::weight_parameters(model.parameters()), w.name));
      pruner.l1_unstructured(w.name, minnow::prune::Fraction{s});
      pruner.apply();
      std::printf(" %8.2f", 100.0 * minnow::train::evaluate(model, data.test).accuracy);
      std::fflush(stdout);
    }
    std::printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    minnow::set_threads(o.threads);
    const auto data = minnow::data::load_fashion_mnist<float>(o.data_dir);
    const std::string dense_path =
        example::load_or_train(o.load, o.arch, dense_file(o), data.train, o.recipe, "dense");
    auto dense = example::make_architecture<float>(o.arch, o.recipe.seed);
    minnow::train::load_parameters(dense_path, o.arch, dense);
    const double dense_accuracy = minnow::train::evaluate(dense, data.test).accuracy;
    std::printf("%s dense: %.2f %% test accuracy (%s)\n", o.arch.c_str(), 100 * dense_accuracy, dense_path.c_str());
    if (o.sensitivity) sensitivity(data, o, dense_path, dense_accuracy);
    if (o.sensitivity_only) return 0;

    std::vector<Run> runs;
    for (const double s : o.sparsities) {
      if (o.global) {
        runs.push_back(prune_and_finetune(example::concat("L1 global ", s * 100, " %"), s, minnow::prune::GlobalL1Unstructured{}, data, o, dense_path));
      } else {
        runs.push_back(prune_and_finetune(example::concat("L1 unstructured ", s * 100, " %"), s,
                                          minnow::prune::L1Unstructured{}, data, o, dense_path));
      }
      std::printf("%-28s %.2f %%\n", runs.back().label.c_str(), 100 * runs.back().accuracy);
      std::fflush(stdout);
    }
    if (o.structured) {
      // Whole convolution filters (dim 0 of [out, in, kh, kw]); the classifier's rows stay.
      std::vector<std::string> filters;
      for (const auto& w : minnow::weight_parameters(dense.parameters())) {
        if (w.shape.size() == 4) filters.push_back(w.name);
      }
      for (const double s : {0.25, 0.5}) {
        runs.push_back(prune_and_finetune(example::concat("L2 conv filters ", s * 100, " %"), s,
                                          minnow::prune::LnStructured{2.0, 0}, data, o, dense_path, filters));
        std::printf("%-28s %.2f %%\n", runs.back().label.c_str(), 100 * runs.back().accuracy);
        std::fflush(stdout);
      }
    }
    std::printf("\n| pruning | weight sparsity | test accuracy | vs dense | weight bytes (best format) |\n|---|---:|---:|---:|---:|\n");
    for (const auto& r : runs) {
      std::size_t best = 0;
      for (const auto& p : r.report.parameters) best += p.best_bytes();
      std::printf("| %s | %.1f %% | %.2f %% | %+.2f pt | %zu of %zu |\n", r.label.c_str(), 100 * r.report.total.sparsity(),
                  100 * r.accuracy, 100 * (r.accuracy - dense_accuracy), best, r.report.total.dense_bytes);
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "prune: " << e.what() << "\n";
    return 1;
  }
}
