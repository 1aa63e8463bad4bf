// Trains the teacher or the student CNN on Fashion-MNIST and prints a per-epoch table.
//
//   train --arch student --epochs 15 --batch 64 --lr 0.05 --seed 1 --threads 2 --out student.ckpt
//
// SGD with Nesterov momentum 0.9, weight decay 5e-4 and a cosine learning-rate schedule over the epochs.
#include <minnow/data.hpp>
#include <minnow/nn.hpp>
#include <minnow/nn/train.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>

namespace {

struct Options {
  std::string arch = "student";
  int epochs = 15;
  long batch = 64;
  double lr = 0.05;
  double weight_decay = 5e-4;
  unsigned long long seed = 1;
  int threads = 2;
  std::string data_dir = minnow::data::default_fashion_mnist_dir().string();
  std::string out;
  long train_limit = -1;
  bool progress = true;
};

void usage() {
  std::cerr << "usage: train [--arch teacher|student] [--epochs N] [--batch B] [--lr LR] [--weight-decay WD]\n"
               "             [--seed S] [--threads T] [--data DIR] [--out FILE] [--train-limit N] [--no-progress]\n";
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw minnow::value_error(minnow::detail::concat("missing value after ", arg));
      return argv[++i];
    };
    if (arg == "--arch") o.arch = value();
    else if (arg == "--epochs") o.epochs = std::stoi(value());
    else if (arg == "--batch") o.batch = std::stol(value());
    else if (arg == "--lr") o.lr = std::stod(value());
    else if (arg == "--weight-decay") o.weight_decay = std::stod(value());
    else if (arg == "--seed") o.seed = std::stoull(value());
    else if (arg == "--threads") o.threads = std::stoi(value());
    else if (arg == "--data") o.data_dir = value();
    else if (arg == "--out") o.out = value();
    else if (arg == "--train-limit") o.train_limit = std::stol(value());
    else if (arg == "--no-progress") o.progress = false;
    else if (arg == "--help" || arg == "-h") { usage(); std::exit(0); }
    else throw minnow::value_error(minnow::detail::concat("unknown option ", arg));
  }
  if (o.epochs <= 0 || o.batch <= 0 || o.threads <= 0) throw minnow::value_error("epochs, batch and threads must be positive");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    minnow::set_threads(o.threads);
    const auto data = minnow::data::load_fashion_mnist<float>(o.data_dir, minnow::data::fashion_mnist_normalization, o.train_limit);
    auto model = minnow::nn::make_architecture<float>(o.arch, o.seed);
    std::printf("%s (%td parameters), %td training / %td test images, %d thread(s)\n%s", o.arch.c_str(),
                minnow::parameter_count(model.parameters()), data.train.size(), data.test.size(), o.threads,
                model.describe().c_str());
    minnow::nn::Sgd<float> sgd(model.parameters(), o.lr, {.momentum = 0.9, .weight_decay = o.weight_decay, .nesterov = true});
    minnow::nn::Trainer<float> trainer(model, sgd);
    trainer.set_progress(o.progress);
    minnow::data::BatchSampler sampler(data.train.size(), o.batch, o.seed);
    const minnow::nn::CosineAnnealingLR schedule{o.epochs};
    std::printf("%5s %9s %10s %9s %9s %9s %8s %9s\n", "epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds", "img/s");
    for (int epoch = 0; epoch < o.epochs; ++epoch) {
      sgd.set_learning_rate(schedule(epoch, o.lr));
      sampler.set_epoch(static_cast<std::uint64_t>(epoch));
      const auto stats = trainer.train_epoch(data.train, sampler);
      const auto test = minnow::nn::evaluate(model, data.test);
      std::printf("%5d %9.5f %10.4f %9.4f %9.4f %9.4f %8.1f %9.0f\n", epoch + 1, stats.learning_rate, stats.train.loss,
                  stats.train.accuracy, test.loss, test.accuracy, stats.seconds,
                  static_cast<double>(stats.train.samples) / stats.seconds);
      std::fflush(stdout);
    }
    if (!o.out.empty()) {
      minnow::nn::save_training_state(o.out, o.arch, model, static_cast<minnow::nn::Optimizer<float>*>(&sgd));
      std::printf("saved %s\n", o.out.c_str());
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "train: " << e.what() << "\n";
    usage();
    return 1;
  }
}
