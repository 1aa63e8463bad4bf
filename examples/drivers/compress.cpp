// The whole compression pipeline on Fashion-MNIST, ending in files and one table:
//   1. K teachers (the 6.4 M-parameter CNN of examples/train.cpp), trained (in parallel with --parallel),
//      loaded from checkpoints, or loaded from safetensors files a user trained elsewhere (--teacher-files);
//      their ensemble (mean of probabilities);
//   2. the 106 k-parameter student distilled from the ensemble's cached soft targets, α·KD(T) + (1 − α)·CE,
//      beside the same student trained on labels alone with the same budget; written as student.safetensors;
//      or, with --model-file, a model trained elsewhere taken as the student (no distillation; teachers only
//      when --teacher-files or --load-teachers name them);
//   3. the student pruned by global magnitude on an AGP schedule while it fine-tunes (with the distillation loss
//      when there are teachers);
//   4. quantization-aware fine-tuning (--weight-bits per channel, symmetric; uint8 activations), the mask kept;
//   5. the integer network, written as student.minnow (only the surviving weights, Huffman-coded; see
//      io/compressed_model.hpp), read back and evaluated: its logits must equal the in-memory network's.
// Outputs in --out DIR: student.safetensors, student.minnow, results.json and results.svg (accuracy against
// bytes on disk).
//
//   compress                     # defaults: 3 teachers × 6 epochs, student 10 epochs: about 8.5 min on 2 cores
//   compress --quick             # the whole pipeline on 6,000 training images, about 12 s
//   compress --model-file my.safetensors --arch student     # compress a model trained elsewhere
#include <minnow/data.hpp>
#include <minnow/distill.hpp>
#include <minnow/ensemble.hpp>
#include <minnow/nn.hpp>
#include <minnow/io/sequential_safetensors.hpp>
#include <minnow/pipeline/compressed_network.hpp>
#include <minnow/pipeline/ensemble_checkpoints.hpp>
#include <minnow/pipeline/ensemble_training.hpp>
#include <minnow/pipeline/integer_network.hpp>
#include <minnow/pipeline/quantize_model.hpp>
#include <minnow/prune.hpp>
#include <minnow/quant.hpp>
#include <minnow/train.hpp>

#include "../architectures.hpp"
#include "../cli.hpp"
#include "results_report.hpp"

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>
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
  int teacher_epochs = 6;
  int student_epochs = 10;
  int prune_epochs = 5;
  double sparsity = 0.935;
  int qat_epochs = 2;
  int weight_bits = 5;
  double temperature = 2.0, alpha = 0.5;                      // distillation
  double fine_tune_temperature = 4.0, fine_tune_alpha = 0.9;  // pruning and QAT: a firmer pull towards the teachers
  double teacher_lr = 0.05;
  double student_lr = 0.02;
  unsigned long long seed = 1;
  bool parallel = false;
  bool quick = false;
  int threads = 2;
  std::string data_dir = minnow::data::default_fashion_mnist_dir().string();
  long train_limit = -1;
  std::string load_dir, save_dir, out_dir = "compress-out";
  std::vector<std::string> teacher_files;
  std::string teacher_arch = "teacher", model_file, arch = "student";
};

Options parse(int argc, char** argv) {
  Options o;
  example::CommandLine cli("compress", "Distils an ensemble into a student, prunes it, quantizes it and writes it as a compressed file.");
  cli.option("--teachers", o.teachers, "ensemble size K (default 3)")
      .option("--teacher-epochs", o.teacher_epochs, "epochs per teacher (default 6)")
      .option("--student-epochs", o.student_epochs, "distillation epochs, and the labels-only student's (default 10)")
      .option("--prune-epochs", o.prune_epochs, "fine-tuning epochs while pruning (default 5)")
      .option("--sparsity", o.sparsity, "final fraction of the student's weights pruned, global magnitude (default 0.935)")
      .option("--qat-epochs", o.qat_epochs, "quantization-aware fine-tuning epochs (default 2)")
      .option("--weight-bits", o.weight_bits, "bits of the quantized weights, 4..8 (default 5)")
      .option("--temperature", o.temperature, "distillation temperature T (default 2)")
      .option("--alpha", o.alpha, "weight of the KD term against cross-entropy, in [0, 1] (default 0.5)")
      .option("--fine-tune-temperature", o.fine_tune_temperature, "T of the KD loss while pruning and in QAT (default 4)")
      .option("--fine-tune-alpha", o.fine_tune_alpha, "alpha of the KD loss while pruning and in QAT (default 0.9)")
      .option("--teacher-lr", o.teacher_lr, "teachers' learning rate, cosine-annealed (default 0.05)")
      .option("--student-lr", o.student_lr, "the student's learning rate in every stage (default 0.02)")
      .option("--seed", o.seed, "seed of the student; teacher k gets 1000·seed + k (default 1)")
      .flag("--parallel", o.parallel, true, "train the teachers in parallel threads, one thread each")
      .flag("--quick", o.quick, true, "the whole pipeline on 6,000 training images: 2 teachers × 1 epoch, 2 student epochs")
      .option("--threads", o.threads, "threads (default 2)")
      .option("--data", o.data_dir, "Fashion-MNIST directory")
      .option("--train-limit", o.train_limit, "use only the first N training images")
      .option("--load-teachers", o.load_dir, "load the teacher checkpoints found in DIR, train the missing ones")
      .option("--save-teachers", o.save_dir, "save every trained teacher to DIR")
      .option("--teacher-files", o.teacher_files, "comma-separated safetensors files: the teachers, trained elsewhere")
      .option("--teacher-arch", o.teacher_arch, "architecture of --teacher-files (default teacher)")
      .option("--model-file", o.model_file,
              "a safetensors file to prune and quantize instead of a distilled student; fine-tuned on labels, or with KD "
              "when --teacher-files or --load-teachers give teachers")
      .option("--arch", o.arch, "architecture of the student or of --model-file (default student)")
      .option("--out", o.out_dir, "directory for the outputs (default compress-out)");
  cli.parse(argc, argv);
  if (o.quick) {
    o.teachers = 2, o.teacher_epochs = 1, o.student_epochs = 2, o.prune_epochs = 2, o.qat_epochs = 1;
    if (o.train_limit < 0) o.train_limit = 6000;
  }
  if (!o.teacher_files.empty()) o.teachers = static_cast<int>(o.teacher_files.size());
  // Every option is checked here, before the given files are read, the data loads and the teachers train.
  example::check_at_least("--teachers", o.teachers, 1);
  example::check_at_least("--teacher-epochs", o.teacher_epochs, 1);
  example::check_at_least("--student-epochs", o.student_epochs, 1);
  example::check_at_least("--prune-epochs", o.prune_epochs, 2);  // AGP ramps over all but the last
  example::check_at_least("--qat-epochs", o.qat_epochs, 1);
  example::check_sparsity("--sparsity", o.sparsity);
  example::check_between("--weight-bits", o.weight_bits, 4, 8);
  minnow::distill::check_temperature<float>("--temperature", o.temperature);
  minnow::distill::check_temperature<float>("--fine-tune-temperature", o.fine_tune_temperature);
  example::check_alpha("--alpha", o.alpha);
  example::check_alpha("--fine-tune-alpha", o.fine_tune_alpha);
  example::check_rate("--teacher-lr", o.teacher_lr);
  example::check_rate("--student-lr", o.student_lr);
  example::check_threads("--threads", o.threads);
  example::check_input_dir("--data", o.data_dir);
  example::check_train_limit("--train-limit", o.train_limit);
  example::check_option("--arch", [&] { example::check_architecture(o.arch); });
  example::check_option("--teacher-arch", [&] { example::check_architecture(o.teacher_arch); });
  for (const auto& file : o.teacher_files) example::check_input_file("--teacher-files", file);
  if (!o.model_file.empty()) example::check_input_file("--model-file", o.model_file);
  example::check_output_dir("--out", o.out_dir);
  for (const char* name : {"student.safetensors", "student.minnow", "results.json", "results.svg"}) {
    example::check_output_file("--out", fs::path(o.out_dir) / name);
  }
  // --save-teachers before --load-teachers, which may name the directory it creates.
  if (!o.save_dir.empty()) example::check_output_dir("--save-teachers", o.save_dir);
  if (!o.load_dir.empty()) example::check_input_dir("--load-teachers", o.load_dir);
  return o;
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

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
void time_inference(const minnow::data::Dataset<float>& test, Forward&& forward, example::StageResult& row) {
  const auto batch = [&](index_t n) {
    return TensorView<const float, 4>(test.images.data(), {n, test.images.dim(1), test.images.dim(2), test.images.dim(3)});
  };
  row.latency_batch1_us = 1e6 * median_seconds(301, [&] { forward(batch(1)); });
  row.throughput_batch256 = 256.0 / median_seconds(21, [&] { forward(batch(std::min<index_t>(256, test.size()))); });
}

/// Bytes of the model's parameters as a safetensors file (fp32), without writing it.
std::uint64_t safetensors_bytes(minnow::nn::Sequential<float>& model) {
  std::vector<minnow::io::SafetensorsTensor> tensors;
  for (const auto& p : model.parameters()) {
    tensors.push_back(minnow::io::safetensors_tensor<float>(p.name, p.shape, {p.value.data(), static_cast<std::size_t>(p.value.size())}));
  }
  return minnow::io::serialize_safetensors(tensors).size();
}

/// Parameters and non-zero parameters of a float model.
std::pair<std::int64_t, std::int64_t> count_parameters(minnow::nn::Sequential<float>& model) {
  std::int64_t all = 0, nonzero = 0;
  for (const auto& p : model.parameters()) {
    all += p.value.size();
    for (index_t i = 0; i < p.value.size(); ++i) nonzero += p.value.data()[i] != 0.0f ? 1 : 0;
  }
  return {all, nonzero};
}

/// A row for a float model whose file is `bytes` long.
example::StageResult float_row(std::string name, double accuracy, minnow::nn::Sequential<float>& model, std::uint64_t bytes) {
  const auto [all, nonzero] = count_parameters(model);
  return {std::move(name), 100.0 * accuracy, bytes, all, nonzero, 8.0 * static_cast<double>(bytes) / static_cast<double>(all), {}, {}, {}, {}};
}

/// What the quantization stages produce.
struct QuantizedStages {
  std::optional<pipeline::IntegerNetwork> network;
};

/// Stage 4: QAT with `Bits`-bit symmetric per-channel weights and uint8 activations, the mask kept; then the
/// integer network (with its input shape, so that it can be written to a file).
template <int Bits>
QuantizedStages quantize(minnow::nn::Sequential<float>& student, minnow::nn::Sgd<float>& sgd, minnow::prune::Pruner<float>& pruner,
                         const minnow::data::Dataset<float>& train, const Options& o,
                         const minnow::train::LossFunction<float>& loss, const pipeline::NetworkPlan& plan) {
  using WeightQ = minnow::quant::Quantizer<minnow::quant::Bits<Bits, true>, minnow::quant::MinMax, minnow::quant::Symmetric,
                                           minnow::quant::PerChannel>;
  pipeline::QuantizedModel<WeightQ, minnow::quant::Uint8PerTensorAffine> qmodel(student);
  qmodel.calibrate(train, 2048);
  qmodel.unfreeze_observers();
  // The pruning stage's optimizer (its momentum) and batch order continue: sampler epochs from prune_epochs on.
  const minnow::train::Recipe recipe{.epochs = o.qat_epochs, .batch = 64, .learning_rate = o.student_lr / 4};
  const std::int64_t batches = minnow::data::BatchSampler::sequential(train.size(), recipe.batch).num_batches();
  const std::int64_t steps = batches * o.qat_epochs;
  minnow::train::FitOptions<float> fit_options{.optimizer = &sgd, .first_epoch = static_cast<std::uint64_t>(o.prune_epochs)};
  fit_options.on_start = [&](minnow::train::Trainer<float>& trainer) {
    trainer.add_hook([&](std::int64_t) { pruner.apply(); });  // the pruner's hook runs before the quantizer's
    qmodel.attach(trainer, {.freeze_after_steps = steps - batches / 2});
  };
  fit_options.on_epoch = [](const minnow::train::EpochStats& s) {
    std::printf("   epoch %d: train loss %.4f, %.1f s\n", s.epoch + 1, s.train.loss, s.seconds);
    std::fflush(stdout);
  };
  (void)minnow::train::fit<float>(student, train, recipe, o.seed + 1, loss, fit_options);
  qmodel.freeze_observers();
  QuantizedStages out;
  const minnow::Shape<3> input{train.images.dim(1), train.images.dim(2), train.images.dim(3)};
  out.network.emplace(pipeline::to_integer_model(student, qmodel, input), plan);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    minnow::set_threads(o.threads);
    const auto total_start = Clock::now();
    const fs::path out_dir = o.out_dir;
    const bool own_model = !o.model_file.empty();
    // The files a user gives are read first: a name or shape that does not fit stops the run before any work.
    auto student = example::make_architecture<float>(o.arch, o.seed);
    if (own_model) minnow::io::load_safetensors(student, o.model_file);
    std::vector<minnow::nn::Sequential<float>> teacher_models;
    for (const auto& file : o.teacher_files) {
      teacher_models.push_back(example::make_architecture<float>(o.teacher_arch, 0));
      minnow::io::load_safetensors(teacher_models.back(), file);
    }
    const auto data =
        minnow::data::load_fashion_mnist<float>(o.data_dir, minnow::data::fashion_mnist_normalization, o.train_limit);
    const auto all_train = minnow::data::range_indices(0, data.train.size());
    const auto test_labels = pipeline::labels_of(data.test, minnow::data::range_indices(0, data.test.size()));
    const auto schedule = o.parallel ? pipeline::Schedule::parallel : pipeline::Schedule::sequential;
    // A given model fine-tunes on labels alone, unless teachers are given too: then with KD from them.
    const bool with_teachers = !own_model || !o.teacher_files.empty() || !o.load_dir.empty();
    std::vector<example::StageResult> rows;
    const auto report_epoch = [](const minnow::train::EpochStats& s) {
      std::printf("   epoch %d: train loss %.4f, %.1f s\n", s.epoch + 1, s.train.loss, s.seconds);
      std::fflush(stdout);
    };

    // ---- 1. teachers and their ensemble
    std::optional<Tensor<float, 2>> soft_targets, fine_tune_targets;  // the ensemble's, at each stage's temperature
    std::uint64_t teacher_bytes = 0;
    if (with_teachers) {
      if (!o.teacher_files.empty()) {
        std::printf("1. %zu teacher(s) from safetensors files\n", o.teacher_files.size());
      } else {
        std::vector<pipeline::MemberSpec> specs;
        for (int k = 0; k < o.teachers; ++k) specs.push_back({"teacher", 1000 * o.seed + static_cast<unsigned long long>(k), false});
        pipeline::EnsembleOptions options;
        options.recipe = {.epochs = o.teacher_epochs, .batch = 64, .learning_rate = o.teacher_lr};
        options.schedule = schedule;
        options.threads = o.threads;
        options.on_epoch = [&](std::size_t k, const minnow::train::EpochStats& s) {
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
            specs, example::make_architecture<float>, data.train, all_train, options, files,
            [](std::size_t k, const pipeline::Member<float>&, const pipeline::MemberOrigin& origin) {
              if (origin.loaded) std::printf("   teacher %zu: loaded %s\n", k + 1, origin.path.c_str());
              std::fflush(stdout);
            });
        for (auto& t : teachers) teacher_models.push_back(std::move(t.model));
      }
      std::vector<minnow::nn::Sequential<float>*> models;
      for (auto& m : teacher_models) models.push_back(&m);
      const auto test_logits = pipeline::ensemble_logits<float>(models, data.test, schedule, o.threads);
      teacher_bytes = safetensors_bytes(teacher_models[0]);
      for (std::size_t k = 0; k < teacher_models.size(); ++k) {
        rows.push_back(float_row(example::concat("teacher ", k + 1), pipeline::accuracy<float>(test_logits[k], test_labels),
                                 teacher_models[k], safetensors_bytes(teacher_models[k])));
      }
      if (teacher_models.size() > 1) {
        Tensor<float, 2> combined(test_logits[0].shape());
        minnow::ensemble::mean_probabilities<float>(pipeline::views<float, 2>(test_logits), 1.0, combined);
        example::StageResult ensemble = rows.front();
        ensemble.name = example::concat("ensemble of ", teacher_models.size(), " (mean of probabilities)");
        ensemble.accuracy = 100.0 * pipeline::accuracy<float>(combined, test_labels);
        ensemble.bytes_on_disk = 0;
        ensemble.parameters = ensemble.nonzeros = 0;
        for (std::size_t k = 0; k < teacher_models.size(); ++k) {
          *ensemble.bytes_on_disk += *rows[k].bytes_on_disk;
          *ensemble.parameters += *rows[k].parameters;
          *ensemble.nonzeros += *rows[k].nonzeros;
        }
        rows.push_back(ensemble);
      }
      const auto train_logits = pipeline::ensemble_logits<float>(models, data.train, schedule, o.threads);
      soft_targets = pipeline::ensemble_soft_targets<float>(train_logits, o.temperature);
      fine_tune_targets = pipeline::ensemble_soft_targets<float>(train_logits, o.fine_tune_temperature);
    }

    // ---- 2. the student: distilled from the ensemble's soft targets (beside one trained on labels alone), or given.
    // Pruning and QAT fine-tune with KD + CE too when there are teachers (--fine-tune-temperature/-alpha), else CE.
    const auto kd_loss = [](const Tensor<float, 2>& targets, double temperature, double alpha) {
      return minnow::train::LossFunction<float>(
          minnow::distill::SoftTargetLoss<float>(minnow::distill::TeacherProbabilities<float>(targets), temperature, alpha));
    };
    const minnow::train::LossFunction<float> fine_tune_loss =
        fine_tune_targets ? kd_loss(*fine_tune_targets, o.fine_tune_temperature, o.fine_tune_alpha) : minnow::train::cross_entropy<float>();
    const minnow::train::Recipe student_recipe{.epochs = o.student_epochs, .batch = 64, .learning_rate = o.student_lr};
    const minnow::train::FitOptions<float> reporting{.on_epoch = report_epoch};
    if (own_model) {
      std::printf("2. the model to compress: %s (%s)\n", o.model_file.c_str(), o.arch.c_str());
    } else {
      std::printf("2. the student on labels alone, then distilled from the ensemble (T = %g, alpha = %g), %d epoch(s) each\n",
                  o.temperature, o.alpha, o.student_epochs);
      std::fflush(stdout);
      auto labels_only = example::make_architecture<float>(o.arch, o.seed);
      (void)minnow::train::fit<float>(labels_only, data.train, student_recipe, o.seed, minnow::train::cross_entropy<float>(),
                                      reporting);
      rows.push_back(float_row("student, labels only (fp32)", minnow::train::evaluate(labels_only, data.test).accuracy, labels_only,
                               safetensors_bytes(labels_only)));
      (void)minnow::train::fit<float>(student, data.train, student_recipe, o.seed, kd_loss(*soft_targets, o.temperature, o.alpha),
                                      reporting);
    }
    minnow::io::save_safetensors(student, out_dir / "student.safetensors", {{"producer", "minnow compress"}, {"arch", o.arch}});
    const std::uint64_t student_bytes = fs::file_size(out_dir / "student.safetensors");
    auto fp32 = float_row("student fp32", minnow::train::evaluate(student, data.test).accuracy, student, student_bytes);
    time_inference(data.test, [&](TensorView<const float, 4> x) { (void)student.forward(x, minnow::nn::Mode::eval); }, fp32);
    rows.push_back(fp32);

    // ---- 3. pruning while fine-tuning: global magnitude over the weights, AGP over all but the last epoch
    std::printf("3. pruning %.0f %% of the weights (global L1, AGP) over %d epoch(s)\n", 100 * o.sparsity, o.prune_epochs);
    std::fflush(stdout);
    // One optimizer for pruning and QAT (its momentum carries over), batches seeded with seed + 1.
    const minnow::train::Recipe prune_recipe{.epochs = o.prune_epochs, .batch = 64, .learning_rate = o.student_lr};
    auto sgd = minnow::train::make_sgd(student, prune_recipe);
    minnow::prune::Pruner<float> pruner;
    for (const auto& w : minnow::weight_parameters(student.parameters())) pruner.track(w, sgd.state(w.name));
    {
      // Ramp over all but the last epoch in up to 20 pruning steps, ending exactly on a pruning step.
      const std::int64_t batches = minnow::data::BatchSampler::sequential(data.train.size(), prune_recipe.batch).num_batches();
      const std::int64_t ramp = batches * (o.prune_epochs - 1), updates = std::min<std::int64_t>(20, ramp);
      const std::int64_t every = ramp / updates;
      minnow::prune::GradualPruner agp(minnow::prune::agp(0.0, o.sparsity, 0, every * updates, every));
      minnow::train::FitOptions<float> fit_options{.optimizer = &sgd, .on_epoch = report_epoch};
      fit_options.on_start = [&](minnow::train::Trainer<float>& trainer) {
        trainer.add_hook([&](std::int64_t step) { agp.step(step, pruner, minnow::prune::GlobalL1Unstructured{}); });
      };
      (void)minnow::train::fit<float>(student, data.train, prune_recipe, o.seed + 1, fine_tune_loss, fit_options);
    }
    const auto pruned_report = minnow::prune::report(pruner);
    rows.push_back(float_row(example::concat("pruned to ", std::round(1000.0 * pruned_report.total.sparsity()) / 10.0,
                                                    " % (fp32, zeros stored)"),
                             minnow::train::evaluate(student, data.test).accuracy, student, student_bytes));

    // ---- 4. quantization-aware fine-tuning; 5. the integer network
    std::printf("4. quantization-aware fine-tuning (int%d weights per channel, uint8 activations) for %d epoch(s)\n",
                o.weight_bits, o.qat_epochs);
    std::fflush(stdout);
    const pipeline::NetworkPlan plan{.batch = 1};
    QuantizedStages q;
    switch (o.weight_bits) {
      case 4: q = quantize<4>(student, sgd, pruner, data.train, o, fine_tune_loss, plan); break;
      case 5: q = quantize<5>(student, sgd, pruner, data.train, o, fine_tune_loss, plan); break;
      case 6: q = quantize<6>(student, sgd, pruner, data.train, o, fine_tune_loss, plan); break;
      case 7: q = quantize<7>(student, sgd, pruner, data.train, o, fine_tune_loss, plan); break;
      default: q = quantize<8>(student, sgd, pruner, data.train, o, fine_tune_loss, plan); break;
    }
    rows.push_back(float_row(example::concat("QAT int", o.weight_bits, " (fake-quantized fp32)"),
                             minnow::train::evaluate(student, data.test).accuracy, student, student_bytes));
    pipeline::IntegerNetwork& net = *q.network;
    const auto [parameters, nonzeros] = count_parameters(student);
    example::StageResult integer{"integer network (in memory)", 100.0 * net.evaluate(data.test).accuracy, net.storage_bytes(),
                                 parameters, nonzeros, 8.0 * static_cast<double>(net.storage_bytes()) / static_cast<double>(parameters),
                                 {}, {}, {}, {}};
    time_inference(data.test, [&](TensorView<const float, 4> x) { (void)net.forward(x); }, integer);
    rows.push_back(integer);

    // ---- the compressed file, written, read back, evaluated and compared logit for logit
    const fs::path minnow_file = out_dir / "student.minnow";
    const auto file_report = pipeline::save_compressed(minnow_file, net);
    const auto load_start = Clock::now();
    auto loaded = pipeline::load_compressed(minnow_file, plan);
    const double load_ms = 1e3 * seconds_since(load_start);
    index_t differing = 0, compared = 0;
    for (index_t start = 0; start < data.test.size(); start += 256) {
      const index_t n = std::min<index_t>(256, data.test.size() - start);
      const auto shape = data.test.images.shape();
      const TensorView<const float, 4> x(data.test.images.data() + start * shape[1] * shape[2] * shape[3], {n, shape[1], shape[2], shape[3]});
      const auto a = net.forward(x);
      const std::vector<float> expected(a.data(), a.data() + a.size());
      const auto b = loaded.forward(x);
      for (index_t i = 0; i < b.size(); ++i) differing += expected[static_cast<std::size_t>(i)] != b.data()[i] ? 1 : 0;
      compared += b.size();
    }
    const std::uint64_t file_bytes = fs::file_size(minnow_file);
    example::StageResult compressed{"compressed file", 100.0 * loaded.evaluate(data.test).accuracy, file_bytes, parameters, nonzeros,
                                    8.0 * static_cast<double>(file_bytes) / static_cast<double>(parameters), {}, {}, {}, {}};
    time_inference(data.test, [&](TensorView<const float, 4> x) { (void)loaded.forward(x); }, compressed);
    rows.push_back(compressed);
    std::printf("\n5. %s (%llu bytes, read back in %.2f ms):\n%s", minnow_file.string().c_str(),
                static_cast<unsigned long long>(file_bytes), load_ms, file_report.describe().c_str());
    std::printf("integer network:\n%s", net.describe().c_str());

    // ---- the table and the files
    for (auto& r : rows) {
      if (!r.bytes_on_disk || *r.bytes_on_disk == 0) continue;
      if (teacher_bytes > 0) r.ratio_vs_teacher = static_cast<double>(teacher_bytes) / static_cast<double>(*r.bytes_on_disk);
      r.ratio_vs_student_fp32 = static_cast<double>(student_bytes) / static_cast<double>(*r.bytes_on_disk);
    }
    std::printf("\n%-46s %9s %12s %9s %9s %12s %10s\n", "stage", "test acc", "on disk", "nonzeros", "bits/par", "batch-1 (µs)", "batch-256/s");
    for (const auto& r : rows) {
      std::printf("%-46s %7.2f %% %9.1f kB %9lld %9.3f", r.name.c_str(), r.accuracy, static_cast<double>(r.bytes_on_disk.value_or(0)) / 1e3,
                  static_cast<long long>(r.nonzeros.value_or(0)), r.bits_per_weight.value_or(0.0));
      if (r.latency_batch1_us) std::printf(" %12.1f %10.0f", *r.latency_batch1_us, *r.throughput_batch256);
      std::printf("\n");
    }
    std::printf("\ncompressed file: %.1fx smaller than the student's fp32 file (%+.2f pt)", static_cast<double>(student_bytes) / static_cast<double>(file_bytes),
                compressed.accuracy - fp32.accuracy);
    if (teacher_bytes > 0) std::printf(", %.0fx smaller than one teacher", static_cast<double>(teacher_bytes) / static_cast<double>(file_bytes));
    std::printf("\nreload: %s (%td logits compared, accuracy %.2f %% in memory and %.2f %% from the file)\n",
                differing == 0 ? "identical" : "DIFFERS", compared, integer.accuracy, compressed.accuracy);
    if (!own_model && rows.size() >= 2) {
      const auto labels = std::find_if(rows.begin(), rows.end(), [](const auto& r) { return r.name.rfind("student, labels", 0) == 0; });
      if (labels != rows.end()) {
        std::printf("the compressed student %s the student trained on labels alone with the same budget (%.2f %% vs %.2f %%)\n",
                    compressed.accuracy > labels->accuracy ? "beats" : "does NOT beat", compressed.accuracy, labels->accuracy);
      }
    }
    std::string command = "compress";
    for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
    const double seconds = seconds_since(total_start);
    example::write_results_json(out_dir / "results.json", rows, command, seconds);
    example::write_results_svg(out_dir / "results.svg", rows, "minnow compress: test accuracy against bytes on disk");
    std::printf("wrote %s: student.safetensors, student.minnow, results.json, results.svg; %.1f min in all\n",
                out_dir.string().c_str(), seconds / 60.0);
    std::printf("full size (docs/results.md: 92.59 %% in 8,953 bytes; the 5 teachers take hours, saved ones are loaded):\n"
                "  compress --teachers 5 --teacher-epochs 15 --student-epochs 40 --temperature 2 --alpha 0.5 "
                "--fine-tune-temperature 4 --fine-tune-alpha 0.9 --sparsity 0.935 --prune-epochs 25 --qat-epochs 5 --weight-bits 5 "
                "--threads 1 --save-teachers teachers --load-teachers teachers\n");
    return differing == 0 ? 0 : 2;
  } catch (const std::exception& e) {
    std::cerr << "compress: " << e.what() << "\n";
    return 1;
  }
}
