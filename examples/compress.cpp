// The whole compression pipeline on Fashion-MNIST, ending in one table:
//   1. K teachers (the 6.4 M-parameter CNN of examples/train.cpp), trained (in parallel with --parallel)
//      or loaded, and their ensemble (mean of probabilities);
//   2. the 106 k-parameter student distilled from the ensemble's cached soft targets, α·KD(T) + (1 − α)·CE;
//   3. the student pruned by global magnitude on an AGP schedule while it fine-tunes (weights only; pruned
//      weights, their gradients and momenta stay 0);
//   4. quantization-aware fine-tuning to int8 weights (per channel, symmetric) and uint8 activations, the
//      pruning mask kept;
//   5. the result converted into an inference-only IntegerNetwork — int8 layers, and a Linear pruned past
//      pipeline::NetworkPlan's sparsity rule in a sparse format — evaluated on the test set, its weight
//      bytes counted from its buffers, its batch-1 latency and batch-256 throughput timed against the fp32
//      student's.
//
//   compress                                   # defaults: 3 teachers × 2 epochs, about 10 min on 2 cores
//   compress --teachers 5 --teacher-epochs 15 --student-epochs 15 --parallel --save-teachers t --load-teachers t
#include <minnow/data.hpp>
#include <minnow/distill.hpp>
#include <minnow/ensemble.hpp>
#include <minnow/nn.hpp>
#include <minnow/nn/train.hpp>
#include <minnow/pipeline/ensemble_checkpoints.hpp>
#include <minnow/pipeline/ensemble_training.hpp>
#include <minnow/pipeline/integer_network.hpp>
#include <minnow/pipeline/quantize_model.hpp>
#include <minnow/prune.hpp>
#include <minnow/quant.hpp>

#include "cli.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace pipeline = minnow::pipeline;
using minnow::index_t;
using minnow::Tensor;
using minnow::TensorView;
using Clock = std::chrono::steady_clock;

struct Options {
  int teachers = 3;
  int teacher_epochs = 2;
  int student_epochs = 8;
  int prune_epochs = 3;
  double sparsity = 0.8;
  int qat_epochs = 1;
  double temperature = 4.0;
  double alpha = 0.9;
  double teacher_lr = 0.05;
  double student_lr = 0.02;
  unsigned long long seed = 1;
  bool parallel = false;
  int threads = 2;
  std::string data_dir = minnow::data::default_fashion_mnist_dir().string();
  long train_limit = -1;
  std::string load_dir, save_dir;
};

Options parse(int argc, char** argv) {
  Options o;
  example::CommandLine cli("compress", "Distils an ensemble into a student, prunes it, quantizes it and runs it on integers.");
  cli.option("--teachers", o.teachers, "ensemble size K (default 3)")
      .option("--teacher-epochs", o.teacher_epochs, "epochs per teacher (default 2)")
      .option("--student-epochs", o.student_epochs, "distillation epochs (default 8)")
      .option("--prune-epochs", o.prune_epochs, "fine-tuning epochs while pruning (default 3)")
      .option("--sparsity", o.sparsity, "final fraction of the student's weights pruned, global magnitude (default 0.8)")
      .option("--qat-epochs", o.qat_epochs, "quantization-aware fine-tuning epochs (default 1)")
      .option("--temperature", o.temperature, "distillation temperature T (default 4)")
      .option("--alpha", o.alpha, "weight of the KD term against cross-entropy (default 0.9)")
      .option("--teacher-lr", o.teacher_lr, "teachers' learning rate, cosine-annealed (default 0.05)")
      .option("--student-lr", o.student_lr, "the student's learning rate in every stage (default 0.02)")
      .option("--seed", o.seed, "seed of the student; teacher k gets 1000·seed + k (default 1)")
      .flag("--parallel", o.parallel, true, "train the teachers in parallel threads, one thread each")
      .option("--threads", o.threads, "threads (default 2)")
      .option("--data", o.data_dir, "Fashion-MNIST directory")
      .option("--train-limit", o.train_limit, "use only the first N training images")
      .option("--load-teachers", o.load_dir, "load the teacher checkpoints found in DIR, train the missing ones")
      .option("--save-teachers", o.save_dir, "save every trained teacher to DIR");
  cli.parse(argc, argv);
  if (o.teachers <= 0 || o.teacher_epochs <= 0 || o.student_epochs <= 0 || o.prune_epochs <= 1 || o.qat_epochs <= 0 ||
      o.threads <= 0) {
    throw minnow::value_error(minnow::detail::concat(
        "teachers, epochs and threads must be positive (and --prune-epochs at least 2), got teachers ", o.teachers,
        ", teacher epochs ", o.teacher_epochs, ", student epochs ", o.student_epochs, ", prune epochs ", o.prune_epochs,
        ", qat epochs ", o.qat_epochs, ", threads ", o.threads));
  }
  if (!(o.sparsity >= 0.0 && o.sparsity < 1.0)) {
    throw minnow::value_error(minnow::detail::concat("--sparsity must be in [0, 1), got ", o.sparsity));
  }
  return o;
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

/// One line of the table.
struct Row {
  std::string stage;
  double accuracy = 0.0;
  double weight_bytes = 0.0;
  double latency_us = 0.0;      // batch 1, median; 0: not timed
  double images_per_s = 0.0;    // batch 256, median
};

/// Median seconds of `runs` calls of `f`, after one warm-up call.
template <class F>
double median_seconds(int runs, F&& f) {
  f();
  std::vector<double> times;
  for (int i = 0; i < runs; ++i) {
    const auto start = Clock::now();
    f();
    times.push_back(seconds_since(start));
  }
  std::nth_element(times.begin(), times.begin() + runs / 2, times.end());
  return times[static_cast<std::size_t>(runs / 2)];
}

/// Batch-1 latency (µs) and batch-256 throughput (images/s) of `forward` on the first test images.
template <class Forward>
void time_inference(const minnow::data::Dataset<float>& test, Forward&& forward, Row& row) {
  const auto batch = [&](index_t n) {
    return TensorView<const float, 4>(test.images.data(), {n, test.images.dim(1), test.images.dim(2), test.images.dim(3)});
  };
  row.latency_us = 1e6 * median_seconds(301, [&] { forward(batch(1)); });
  row.images_per_s = 256.0 / median_seconds(21, [&] { forward(batch(std::min<index_t>(256, test.size()))); });
}

std::size_t float_bytes(minnow::nn::Sequential<float>& model) {
  return static_cast<std::size_t>(minnow::parameter_count(model.parameters())) * sizeof(float);
}

void print_table(const std::vector<Row>& rows) {
  std::printf("\n%-58s %9s %12s %14s %12s\n", "stage", "test acc", "weights", "batch-1 (µs)", "batch-256/s");
  for (const auto& r : rows) {
    std::printf("%-58s %8.2f %%", r.stage.c_str(), 100.0 * r.accuracy);
    if (r.weight_bytes > 0) {
      std::printf(" %9.1f kB", r.weight_bytes / 1000.0);
    } else {
      std::printf(" %12s", "");
    }
    if (r.latency_us > 0) std::printf(" %14.1f %12.0f", r.latency_us, r.images_per_s);
    std::printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    minnow::set_threads(o.threads);
    const auto total_start = Clock::now();
    const auto data =
        minnow::data::load_fashion_mnist<float>(o.data_dir, minnow::data::fashion_mnist_normalization, o.train_limit);
    const auto all_train = minnow::data::range_indices(0, data.train.size());
    const auto test_labels = pipeline::labels_of(data.test, minnow::data::range_indices(0, data.test.size()));
    const auto schedule = o.parallel ? pipeline::Schedule::parallel : pipeline::Schedule::sequential;
    std::vector<Row> rows;

    // ---- 1. teachers and their ensemble
    std::vector<pipeline::MemberSpec> specs;
    for (int k = 0; k < o.teachers; ++k) specs.push_back({"teacher", 1000 * o.seed + static_cast<unsigned long long>(k), false});
    pipeline::EnsembleOptions options;
    options.recipe = {.epochs = o.teacher_epochs, .batch = 64, .learning_rate = o.teacher_lr};
    options.schedule = schedule;
    options.threads = o.threads;
    options.on_epoch = [&](std::size_t k, const minnow::nn::EpochStats& s) {
      std::printf("   teacher %zu epoch %d: train loss %.4f, %.1f s\n", k + 1, s.epoch + 1, s.train.loss, s.seconds);
      std::fflush(stdout);
    };
    const pipeline::MemberCheckpoints files{.load_dir = o.load_dir, .save_dir = o.save_dir,
                                            .file_name = [&](const pipeline::MemberSpec& spec) {
                                              return pipeline::member_file_name(spec, o.teacher_epochs,
                                                                                static_cast<std::size_t>(data.train.size()));
                                            }};
    std::printf("1. %d teacher(s) of %d epoch(s) on %td images (saved ones are loaded)\n", o.teachers, o.teacher_epochs,
                data.train.size());
    std::fflush(stdout);
    auto teachers = pipeline::load_or_train_ensemble<float>(
        specs, data.train, all_train, options, files,
        [](std::size_t k, const pipeline::Member<float>&, const pipeline::MemberOrigin& origin) {
          if (origin.loaded) std::printf("   teacher %zu: loaded %s\n", k + 1, origin.path.c_str());
          std::fflush(stdout);
        });
    const auto models = pipeline::models<float>(teachers);
    const auto test_logits = pipeline::ensemble_logits<float>(models, data.test, schedule, o.threads);
    for (std::size_t k = 0; k < teachers.size(); ++k) {
      rows.push_back({minnow::detail::concat("teacher ", k + 1), pipeline::accuracy<float>(test_logits[k], test_labels),
                      static_cast<double>(float_bytes(teachers[k].model))});
    }
    if (teachers.size() > 1) {
      Tensor<float, 2> combined(test_logits[0].shape());
      minnow::ensemble::mean_probabilities<float>(pipeline::views<float, 2>(test_logits), 1.0, combined);
      rows.push_back({minnow::detail::concat("ensemble of ", teachers.size(), " (mean of probabilities)"),
                      pipeline::accuracy<float>(combined, test_labels)});
    }

    // ---- 2. the student, distilled from the ensemble's soft targets over the whole training set
    std::printf("2. distilling the student from the ensemble (T = %g, alpha = %g) for %d epoch(s)\n", o.temperature, o.alpha,
                o.student_epochs);
    std::fflush(stdout);
    const auto train_logits = pipeline::ensemble_logits<float>(models, data.train, schedule, o.threads);
    const Tensor<float, 2> soft_targets = pipeline::ensemble_soft_targets<float>(train_logits, o.temperature);
    auto student = minnow::nn::make_architecture<float>("student", o.seed);
    const auto report_epoch = [](const minnow::nn::EpochStats& s) {
      std::printf("   epoch %d: train loss %.4f, %.1f s\n", s.epoch + 1, s.train.loss, s.seconds);
      std::fflush(stdout);
    };
    (void)pipeline::train_model<float>(
        student, data.train, all_train, {.epochs = o.student_epochs, .batch = 64, .learning_rate = o.student_lr}, o.seed,
        minnow::distill::SoftTargetLoss<float>(minnow::distill::TeacherProbabilities<float>(soft_targets), o.temperature, o.alpha),
        false, report_epoch);
    Row distilled{"student, distilled from the ensemble (fp32)", minnow::nn::evaluate(student, data.test).accuracy,
                  static_cast<double>(float_bytes(student))};
    time_inference(data.test, [&](TensorView<const float, 4> x) { (void)student.forward(x, minnow::nn::Mode::eval); }, distilled);
    rows.push_back(distilled);

    // ---- 3. pruning while fine-tuning: global magnitude over the weights, AGP over all but the last epoch
    std::printf("3. pruning %.0f %% of the student's weights (global L1, AGP) over %d epoch(s)\n", 100 * o.sparsity,
                o.prune_epochs);
    std::fflush(stdout);
    minnow::nn::Sgd<float> sgd(student.parameters(), o.student_lr, {.momentum = 0.9, .weight_decay = 5e-4, .nesterov = true});
    minnow::prune::Pruner<float> pruner;
    for (const auto& w : minnow::weight_parameters(student.parameters())) pruner.track(w, sgd.state(w.name));
    minnow::data::BatchSampler sampler(data.train.size(), 64, o.seed + 1);
    const std::int64_t steps_per_epoch = sampler.num_batches();
    {
      // Ramp over all but the last epoch in up to 20 pruning steps, ending exactly on a pruning step.
      const std::int64_t ramp = steps_per_epoch * (o.prune_epochs - 1), updates = std::min<std::int64_t>(20, ramp);
      const std::int64_t every = ramp / updates;
      minnow::prune::GradualPruner agp(minnow::prune::agp(0.0, o.sparsity, 0, every * updates, every));
      minnow::nn::Trainer<float> trainer(student, sgd);
      trainer.set_progress(false);
      trainer.add_hook([&](std::int64_t step) { agp.step_global(step, pruner); });
      const minnow::nn::CosineAnnealingLR lr{o.prune_epochs};
      for (int epoch = 0; epoch < o.prune_epochs; ++epoch) {
        sgd.set_learning_rate(lr(epoch, o.student_lr));
        sampler.set_epoch(static_cast<std::uint64_t>(epoch));
        report_epoch(trainer.train_epoch(data.train, sampler));
      }
    }
    const auto pruned_report = minnow::prune::report(pruner);
    char pruned_label[80];
    std::snprintf(pruned_label, sizeof pruned_label, "+ pruned to %.1f %% of weights (fp32, zeros stored)",
                  100.0 * pruned_report.total.sparsity());
    rows.push_back({pruned_label,
                    minnow::nn::evaluate(student, data.test).accuracy, static_cast<double>(float_bytes(student))});

    // ---- 4. quantization-aware fine-tuning, the mask kept (the pruner's hook runs before the quantizer's)
    std::printf("4. quantization-aware fine-tuning (int8 weights per channel, uint8 activations) for %d epoch(s)\n",
                o.qat_epochs);
    std::fflush(stdout);
    pipeline::QuantizedModel<minnow::quant::Int8PerChannelSymmetric, minnow::quant::Uint8PerTensorAffine> qmodel(student);
    qmodel.calibrate(data.train, 2048);
    qmodel.unfreeze_observers();
    {
      minnow::nn::Trainer<float> trainer(student, sgd);
      trainer.set_progress(false);
      trainer.add_hook([&](std::int64_t) { pruner.apply(); });
      const std::int64_t steps = steps_per_epoch * o.qat_epochs;
      qmodel.attach(trainer, {.freeze_after_steps = steps - steps_per_epoch / 2});
      const minnow::nn::CosineAnnealingLR lr{o.qat_epochs};
      for (int epoch = 0; epoch < o.qat_epochs; ++epoch) {
        sgd.set_learning_rate(lr(epoch, o.student_lr / 4));
        sampler.set_epoch(static_cast<std::uint64_t>(o.prune_epochs + epoch));
        report_epoch(trainer.train_epoch(data.train, sampler));
      }
    }
    qmodel.freeze_observers();
    rows.push_back({"+ QAT int8 (fake-quantized fp32)", minnow::nn::evaluate(student, data.test).accuracy});

    // ---- 5. the inference-only network
    pipeline::IntegerNetwork net(student, qmodel, {.batch = 1});
    std::string formats;
    for (const auto& [name, format] : net.formats()) formats += minnow::detail::concat(formats.empty() ? "" : ", ", name, " ", to_string(format));
    Row integer{"integer network (" + formats + ")", net.evaluate(data.test).accuracy, static_cast<double>(net.storage_bytes())};
    time_inference(data.test, [&](TensorView<const float, 4> x) { (void)net.forward(x); }, integer);
    rows.push_back(integer);
    std::printf("\n5. integer network:\n%s", net.describe().c_str());

    print_table(rows);
    std::printf("\nstudent: %.3fx smaller than fp32, batch 1 %.2fx and batch 256 %.2fx faster; %.1f min in all\n",
                distilled.weight_bytes / integer.weight_bytes, distilled.latency_us / integer.latency_us,
                integer.images_per_s / distilled.images_per_s, seconds_since(total_start) / 60.0);
    std::printf("full size (5 teachers of 15 epochs, several hours on 2 cores; saved teachers make reruns cheap):\n"
                "  compress --teachers 5 --teacher-epochs 15 --student-epochs 15 --parallel "
                "--save-teachers teachers --load-teachers teachers\n");
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "compress: " << e.what() << "\n";
    return 1;
  }
}
