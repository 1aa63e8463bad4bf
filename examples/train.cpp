// Trains the teacher or the student CNN on Fashion-MNIST and prints a per-epoch table.
//
//   train --arch student --epochs 15 --batch 64 --lr 0.05 --seed 1 --threads 2 --out student.ckpt
//
// SGD with Nesterov momentum 0.9, weight decay 5e-4 and a cosine learning-rate schedule over the epochs.
#include <minnow/data.hpp>
#include <minnow/nn.hpp>
#include <minnow/train.hpp>

#include "architectures.hpp"
#include "cli.hpp"
#include "recipe.hpp"

#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

namespace {

struct Options {
  std::string arch = "student";
  example::RecipeOptions recipe;
  int threads = 2;
  std::string data_dir = minnow::data::default_fashion_mnist_dir().string();
  std::string out;
  long train_limit = -1;
  bool progress = true;
};

Options parse(int argc, char** argv) {
  Options o;
  example::CommandLine cli("train", "Trains the teacher or the student on Fashion-MNIST and prints a per-epoch table.");
  example::add_recipe_options(cli, o.recipe, "the training");
  cli.option("--arch", o.arch, "teacher | teacher5x5 | student (default student)")
      .option("--weight-decay", o.recipe.weight_decay, "weight decay (default 5e-4)")
      .option("--threads", o.threads, "threads (default 2)")
      .option("--data", o.data_dir, "Fashion-MNIST directory")
      .option("--out", o.out, "checkpoint to write at the end")
      .option("--train-limit", o.train_limit, "use only the first N training images")
      .flag("--no-progress", o.progress, false, "no progress bar");
  cli.parse(argc, argv);
  // Every option is checked here, before the data loads: --out especially, which is written only at the end.
  example::check_option("--arch", [&] { example::check_architecture(o.arch); });
  example::check_recipe(o.recipe);
  example::check_threads("--threads", o.threads);
  example::check_input_dir("--data", o.data_dir);
  example::check_train_limit("--train-limit", o.train_limit);
  if (!o.out.empty()) example::check_output_file("--out", o.out);
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    minnow::set_threads(o.threads);
    const auto data = minnow::data::load_fashion_mnist<float>(o.data_dir, minnow::data::fashion_mnist_normalization, o.train_limit);
    auto model = example::make_architecture<float>(o.arch, o.recipe.seed);
    std::printf("%s (%td parameters), %td training / %td test images, %d thread(s)\n%s", o.arch.c_str(),
                minnow::parameter_count(model.parameters()), data.train.size(), data.test.size(), o.threads,
                model.describe().c_str());
    std::printf("%5s %9s %10s %9s %9s %9s %8s %9s\n", "epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds", "img/s");
    example::train_with_recipe(model, data.train, o.recipe, o.progress, [&](int epoch, const minnow::train::EpochStats& stats) {
      const auto test = minnow::train::evaluate(model, data.test);
      std::printf("%5d %9.5f %10.4f %9.4f %9.4f %9.4f %8.1f %9.0f\n", epoch, stats.learning_rate, stats.train.loss,
                  stats.train.accuracy, test.loss, test.accuracy, stats.seconds,
                  static_cast<double>(stats.train.samples) / stats.seconds);
      std::fflush(stdout);
    }, o.out, o.arch);
    if (!o.out.empty()) std::printf("saved %s\n", o.out.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "train: " << e.what() << "\n";
    return 1;
  }
}
