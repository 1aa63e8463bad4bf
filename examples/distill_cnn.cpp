// Knowledge distillation on Fashion-MNIST: trains a wide CNN teacher, caches its logits on the training set,
// and trains the student CNN on α·KD(T) against them + (1 − α)·cross-entropy on the labels, beside the same
// student trained on the labels alone. Exits 1 unless the distilled student's training loss falls every epoch.
//
//   distill_cnn --teacher-epochs 3 --epochs 5 --temperature 4 --alpha 0.7
#include <minnow/data.hpp>
#include <minnow/distill/kd_loss.hpp>
#include <minnow/nn.hpp>
#include <minnow/pipeline/ensemble_training.hpp>
#include <minnow/train.hpp>

#include "cli.hpp"

#include <cstdio>
#include <iostream>

int main(int argc, char** argv) try {
  namespace mn = minnow;
  int teacher_epochs = 3, epochs = 5, threads = 2;
  long limit = -1;
  double temperature = 4.0, alpha = 0.7;
  std::string dir = mn::data::default_fashion_mnist_dir().string();
  example::CommandLine("distill_cnn", "Distils a wide CNN teacher into the student CNN, beside the student trained on labels.")
      .option("--teacher-epochs", teacher_epochs, "teacher training (default 3)")
      .option("--epochs", epochs, "student training, 2 or more (default 5)")
      .option("--temperature", temperature, "softmax temperature T > 0 (default 4)")
      .option("--alpha", alpha, "weight of the KD term in [0, 1] (default 0.7)")
      .option("--train-limit", limit, "only the first N training images")
      .option("--threads", threads, "(default 2)")
      .option("--data", dir, "Fashion-MNIST directory")
      .parse(argc, argv);
  example::check_at_least("--teacher-epochs", teacher_epochs, 1), example::check_at_least("--epochs", epochs, 2);
  mn::distill::check_temperature<float>("--temperature", temperature);
  example::check_alpha("--alpha", alpha), example::check_train_limit("--train-limit", limit);
  example::check_threads("--threads", threads), example::check_input_dir("--data", dir);

  mn::set_threads(threads);
  const auto data = mn::data::load_fashion_mnist<float>(dir, mn::data::fashion_mnist_normalization, limit);
  const mn::nn::ImageTask task{.channels = 1, .height = 28, .width = 28, .classes = 10};

  // The teacher: 4× the student’s channels and hidden units. Its logits on every training image are
  // computed once, in eval mode, and read back by sample index while the student trains.
  auto teacher = mn::nn::make_cnn<float>(task, {.conv1 = 64, .conv2 = 128, .hidden = 256}, /*seed=*/7);
  mn::train::fit<float>(teacher, data.train, {.epochs = teacher_epochs}, /*seed=*/7);
  const auto teacher_logits = mn::pipeline::predict_logits(teacher, data.train);
  mn::distill::SoftTargetLoss<float> kd(mn::distill::TeacherLogits<float>(teacher_logits), temperature, alpha);

  // lr 0.02: at 0.05 the KD term's larger gradients at T = 4 knock the student out of its first steps.
  const mn::train::Recipe recipe{.epochs = epochs, .learning_rate = 0.02};
  auto distilled = mn::nn::make_student<float>(/*seed=*/1);
  const auto history = mn::train::fit<float>(distilled, data.train, recipe, /*seed=*/1, kd);
  auto labels_only = mn::nn::make_student<float>(/*seed=*/1);
  mn::train::fit<float>(labels_only, data.train, recipe, /*seed=*/1);

  std::printf("test accuracy: teacher %.2f %% (%td parameters), student distilled %.2f %%, on labels only %.2f %% "
              "(%td parameters)\n",
              100 * mn::train::evaluate(teacher, data.test).accuracy, mn::parameter_count(teacher.parameters()),
              100 * mn::train::evaluate(distilled, data.test).accuracy, 100 * mn::train::evaluate(labels_only, data.test).accuracy,
              mn::parameter_count(distilled.parameters()));
  bool ok = true;
  for (std::size_t e = 0; e < history.size(); ++e) {
    std::printf("distillation epoch %zu: loss %.4f\n", e + 1, history[e].train.loss);
    ok = ok && (e == 0 || history[e].train.loss < history[e - 1].train.loss);
  }
  std::printf("checks: %s\n", ok ? "passed" : "FAILED (the distillation loss did not fall every epoch)");
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "distill_cnn: " << e.what() << "\n";
  return 1;
}
