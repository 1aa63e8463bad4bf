// Trains the student CNN on Fashion-MNIST, then prunes its weights by L1 magnitude on an AGP schedule while
// it fine-tunes, and with --out writes the pruned model as safetensors (PyTorch's state_dict names). Exits 1
// unless every weight tensor ends at the target sparsity with its pruned weights exactly 0.
//
//   prune_cnn --epochs 3 --finetune-epochs 2 --sparsity 0.9 --out pruned.safetensors
#include <minnow/data.hpp>
#include <minnow/io/sequential_safetensors.hpp>
#include <minnow/nn.hpp>
#include <minnow/prune.hpp>
#include <minnow/train.hpp>

#include "cli.hpp"

#include <cstdint>
#include <cstdio>
#include <iostream>

int main(int argc, char** argv) try {
  namespace mn = minnow;
  int epochs = 3, finetune_epochs = 2, threads = 2;
  long limit = -1;
  double sparsity = 0.9;
  std::string dir = mn::data::default_fashion_mnist_dir().string(), out;
  example::CommandLine("prune_cnn", "Trains the student CNN, prunes it by L1 magnitude while it fine-tunes, saves it.")
      .option("--epochs", epochs, "dense training (default 3)")
      .option("--finetune-epochs", finetune_epochs, "fine-tuning while pruning (default 2)")
      .option("--sparsity", sparsity, "of every weight tensor at the end (default 0.9)")
      .option("--train-limit", limit, "only the first N training images")
      .option("--threads", threads, "(default 2)")
      .option("--data", dir, "Fashion-MNIST directory")
      .option("--out", out, "safetensors file to write")
      .parse(argc, argv);
  example::check_at_least("--epochs", epochs, 1), example::check_at_least("--finetune-epochs", finetune_epochs, 1);
  example::check_sparsity("--sparsity", sparsity), example::check_train_limit("--train-limit", limit);
  example::check_threads("--threads", threads), example::check_input_dir("--data", dir);
  if (!out.empty()) example::check_output_file("--out", out);

  mn::set_threads(threads);
  const auto data = mn::data::load_fashion_mnist<float>(dir, mn::data::fashion_mnist_normalization, limit);
  auto model = mn::nn::make_student<float>(/*seed=*/1);
  mn::train::fit<float>(model, data.train, {.epochs = epochs}, /*seed=*/1);
  const double dense = mn::train::evaluate(model, data.test).accuracy;

  // The pruner tracks every weight (not the biases) with the optimizer's momentum, so that what it prunes
  // stays 0 through every SGD step.
  const mn::train::Recipe finetune{.epochs = finetune_epochs, .learning_rate = 0.01};
  auto sgd = mn::train::make_sgd(model, finetune);
  mn::prune::Pruner<float> pruner;
  for (const auto& w : mn::weight_parameters(model.parameters())) pruner.track(w, sgd.state(w.name));
  // AGP: the sparsity rises from 0 to the target over the first 70 % of the steps, pruning every steps/20.
  const std::int64_t steps = finetune_epochs * mn::data::BatchSampler(data.train.size(), finetune.batch, 1).num_batches();
  example::require(steps >= 20, "--finetune-epochs × batches per epoch", ">= 20 (for the pruning schedule)", steps);
  const std::int64_t every = steps / 20;
  mn::prune::GradualPruner agp(mn::prune::agp(0.0, sparsity, 0, 14 * every, every));
  mn::train::FitOptions<float> options{.optimizer = &sgd};
  options.on_start = [&](mn::train::Trainer<float>& trainer) {
    trainer.add_hook([&](std::int64_t step) { agp.step(step, pruner); });  // L1 magnitude, per tensor
  };
  mn::train::fit<float>(model, data.train, finetune, /*seed=*/2, mn::train::cross_entropy<float>(), options);
  const double pruned = mn::train::evaluate(model, data.test).accuracy;

  const auto report = mn::prune::report(pruner);
  std::printf("%s\ntest accuracy: dense %.2f %%, pruned %.2f %%\n", report.table().c_str(), 100 * dense, 100 * pruned);
  bool ok = true;
  for (const auto& e : pruner.entries()) {
    const auto zeros = (e.mask.array() == 0.0f).count();
    ok = ok && zeros == mn::prune::to_count(mn::prune::Fraction{sparsity}, e.mask.size()) &&
         (e.mask.array() == 0.0f && e.value.array() != 0.0f).count() == 0;
  }
  if (!out.empty()) mn::io::save_safetensors(model, out);
  std::printf("checks: %s\n", ok ? "passed" : "FAILED (a tensor is not at the target sparsity, or a pruned weight is not 0)");
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "prune_cnn: " << e.what() << "\n";
  return 1;
}
