// Quantizes a trained teacher or student: post-training quantization (PTQ) with a calibration subset,
// quantization-aware training (QAT) with 8- and 4-bit weights, a user-defined mapping, and Deep
// Compression's k-means weight sharing, each compared with the float network on the test set.
//
//   quantize --arch student --load student.ckpt
//   quantize --arch teacher --load teacher.ckpt --qat-epochs 1
//
// Without --load it first trains the float network (--epochs, the train example's recipe) and saves it.
// Weights are quantized per output channel (symmetric), activations per tensor (affine uint8) at the
// network's input and after every ReLU; the logits stay float (dequantized at the edge). Biases stay
// float (an integer network keeps them in int32).
#include <minnow/data.hpp>
#include <minnow/nn.hpp>
#include <minnow/pipeline/quantize_model.hpp>
#include <minnow/quant.hpp>
#include <minnow/train.hpp>

#include "../architectures.hpp"
#include "../cli.hpp"
#include "../recipe.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

// A user-defined mapping: symmetric, but covering only `fraction` of the observed range, so the rare
// largest weights are clipped and the rest get a finer grid. It only needs `qparams`; the Quantizer,
// the fake-quant kernels and the QAT/PTQ pipeline accept it like the built-in ones.
struct ClippedSymmetric {
  float fraction = 0.9f;
  [[nodiscard]] minnow::quant::AffineParams qparams(minnow::quant::Range r, minnow::quant::QRange grid) const {
    return minnow::quant::Symmetric{}.qparams({r.min * fraction, r.max * fraction}, grid);
  }
};
static_assert(minnow::quant::UniformMapping<ClippedSymmetric>);

namespace {

namespace q = minnow::quant;
using Model = minnow::nn::Sequential<float>;
using Data = minnow::data::TrainTest<float>;

struct Options {
  std::string arch = "student";
  std::string load;
  std::string data_dir = minnow::data::default_fashion_mnist_dir().string();
  example::RecipeOptions recipe;  // for the float network when there is no --load, and QAT's batch and seed
  int qat_epochs = 2;
  double qat_lr = 0.005;
  long calibration = 2048;
  int threads = 2;
};

/// Where the float network goes when there is no --load.
std::string float_file(const Options& o) { return o.arch + "-float.ckpt"; }

Options parse(int argc, char** argv) {
  Options o;
  example::CommandLine cli("quantize", "Quantizes a trained network: PTQ, QAT (8 and 4 bits), k-means weight sharing.");
  cli.option("--arch", o.arch, "teacher | teacher5x5 | student (default student)")
      .option("--load", o.load, "float checkpoint (default: train one with the train example's recipe)")
      .option("--data", o.data_dir, "Fashion-MNIST directory")
      .option("--qat-epochs", o.qat_epochs, "fine-tuning epochs of QAT and k-means sharing (default 2)")
      .option("--qat-lr", o.qat_lr, "their learning rate, cosine-annealed (default 0.005)")
      .option("--calibration", o.calibration, "training images that calibrate the ranges (default 2048)")
      .option("--threads", o.threads, "threads (default 2)");
  example::add_recipe_options(cli, o.recipe, "the float training");
  cli.parse(argc, argv);
  // Every option is checked here, before the data loads.
  example::check_option("--arch", [&] { example::check_architecture(o.arch); });
  example::check_recipe(o.recipe);
  example::check_at_least("--qat-epochs", o.qat_epochs, 1);
  example::check_rate("--qat-lr", o.qat_lr);
  example::check_at_least("--calibration", o.calibration, 1);
  example::check_threads("--threads", o.threads);
  example::check_input_dir("--data", o.data_dir);
  example::check_load_or_train(o.load, float_file(o));
  return o;
}

Model load(const Options& o, const std::string& path) {
  auto model = example::make_architecture<float>(o.arch, o.recipe.seed);
  minnow::train::load_parameters(path, o.arch, model);
  return model;
}

struct Row {
  std::string label;
  double accuracy;
  double weight_bits;  // bits per weight of the stored weight tensors (scales/centroids included)
  double seconds;
};

// Stored size of the weight tensors: `bits` per weight plus one float scale (and an int zero point) per
// channel, or per layer 2^bits float centroids for a codebook.
double weight_bits(Model& model, int bits, bool codebook) {
  double total_bits = 0, weights = 0;
  for (const auto& p : model.parameters()) {
    if (p.shape.size() < 2) continue;
    weights += static_cast<double>(p.value.size());
    const double extra = codebook ? 32.0 * std::pow(2.0, bits) : 64.0 * static_cast<double>(p.shape[0]);
    total_bits += bits * static_cast<double>(p.value.size()) + (bits == 32 ? 0.0 : extra);
  }
  return total_bits / weights;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// PTQ: insert the quantizers, run the calibration images through, freeze, evaluate.
template <class WeightQ, class ActivationQ>
Row ptq(const std::string& label, int bits, const Data& data, const Options& o, const std::string& path,
        WeightQ weight_q = WeightQ{}) {
  const auto start = std::chrono::steady_clock::now();
  auto model = load(o, path);
  minnow::pipeline::QuantizedModel<WeightQ, ActivationQ> qmodel(model, std::move(weight_q));
  qmodel.calibrate(data.train, o.calibration);
  const double accuracy = minnow::train::evaluate(model, data.test).accuracy;
  return {label, accuracy, weight_bits(model, bits, false), seconds_since(start)};
}

// QAT: fine-tune with fake-quantized weights and activations (SGD, cosine from qat_lr), observers frozen
// for the last half of the last epoch, then evaluate the fake-quantized network.
template <class WeightQ, class ActivationQ>
Row qat(const std::string& label, int bits, const Data& data, const Options& o, const std::string& path) {
  const auto start = std::chrono::steady_clock::now();
  auto model = load(o, path);
  const minnow::train::Recipe recipe{.epochs = o.qat_epochs, .batch = o.recipe.batch, .learning_rate = o.qat_lr};
  auto sgd = minnow::train::make_sgd(model, recipe);  // over the float weights, before the quantizers go in
  minnow::pipeline::QuantizedModel<WeightQ, ActivationQ> qmodel(model);
  qmodel.calibrate(data.train, o.calibration);  // start from PTQ's ranges, not from nothing
  qmodel.unfreeze_observers();
  const std::int64_t batches = minnow::data::BatchSampler::sequential(data.train.size(), recipe.batch).num_batches();
  minnow::train::FitOptions<float> fit_options{.optimizer = &sgd};
  fit_options.on_start = [&](minnow::train::Trainer<float>& trainer) {
    qmodel.attach(trainer, {.freeze_after_steps = batches * o.qat_epochs - batches / 2});
  };
  (void)minnow::train::fit<float>(model, data.train, recipe, o.recipe.seed + 1, minnow::train::cross_entropy<float>(), fit_options);
  qmodel.freeze_observers();
  const double accuracy = minnow::train::evaluate(model, data.test).accuracy;
  return {label, accuracy, weight_bits(model, bits, false), seconds_since(start)};
}

// Deep Compression's trained quantization: 2^bits shared weights per layer from 1-D k-means (linear
// initialisation), then fine-tuning where each centroid moves by the sum of its members' gradients.
Row kmeans(const std::string& label, int bits, const Data& data, const Options& o, const std::string& path) {
  const auto start = std::chrono::steady_clock::now();
  auto model = load(o, path);
  const q::QRange grid{0, (1 << bits) - 1};
  std::vector<std::unique_ptr<q::SharedWeights<float>>> shared;
  for (const auto& p : model.parameters()) {
    if (p.shape.size() >= 2) shared.push_back(std::make_unique<q::SharedWeights<float>>(p, q::KMeansCodebook{}, grid));
  }
  std::fprintf(stderr, "k-means %d bits before fine-tuning: %.2f %%\n", bits, 100 * minnow::train::evaluate(model, data.test).accuracy);
  // Plain SGD on everything; the shared weights then replace their layers' update by the centroid update.
  const minnow::train::Recipe recipe{.epochs = o.qat_epochs, .batch = o.recipe.batch, .learning_rate = o.qat_lr};
  minnow::nn::Sgd<float> sgd(model.parameters(), o.qat_lr, {});
  minnow::train::FitOptions<float> fit_options{.optimizer = &sgd};
  // Deep Compression moves a centroid by the sum of its members' gradients. A centroid of fc1 has ~400 k
  // members, so the sum is scaled by 1 / (mean cluster size): a centroid then moves like one weight would.
  fit_options.on_start = [&](minnow::train::Trainer<float>& trainer) {
    trainer.add_hook([&](std::int64_t) {
      for (auto& s : shared) {
        const double mean_members = static_cast<double>(s->indices().size()) / static_cast<double>(s->centroids().size());
        s->step(static_cast<float>(sgd.learning_rate() / mean_members));
      }
    });
  };
  (void)minnow::train::fit<float>(model, data.train, recipe, o.recipe.seed + 1, minnow::train::cross_entropy<float>(), fit_options);
  const double accuracy = minnow::train::evaluate(model, data.test).accuracy;
  return {label, accuracy, weight_bits(model, bits, true), seconds_since(start)};
}

void print(const Row& r, double float_accuracy) {
  std::printf("| %s | %.2f %% | %+.2f pt | %.2f | %.0f s |\n", r.label.c_str(), 100 * r.accuracy,
              100 * (r.accuracy - float_accuracy), r.weight_bits, r.seconds);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    minnow::set_threads(o.threads);
    const auto data = minnow::data::load_fashion_mnist<float>(o.data_dir);
    const std::string path = example::load_or_train(o.load, o.arch, float_file(o), data.train, o.recipe, "float");
    auto dense = load(o, path);
    const double float_accuracy = minnow::train::evaluate(dense, data.test).accuracy;

    using Act8 = q::Quantizer<q::quint8, q::MinMax, q::Affine, q::PerTensor>;
    using ActHist = q::Quantizer<q::quint8, q::Histogram, q::Affine, q::PerTensor>;
    using ActQat = q::Uint8PerTensorAffine;  // moving-average min/max, as PyTorch's QAT default
    using W8 = q::Int8PerChannelSymmetric;
    using W4 = q::Int4PerChannelSymmetric;
    using W8Clipped = q::Quantizer<q::qint8, q::MinMax, ClippedSymmetric, q::PerChannel>;
    using W8Pow2 = q::Int8PerChannelPowerOfTwo;

    std::printf("%s, calibration %ld training images, QAT %d epoch(s) from lr %g, %d thread(s)\n\n", o.arch.c_str(),
                o.calibration, o.qat_epochs, o.qat_lr, o.threads);
    std::printf("| network | test accuracy | vs float | bits per weight | time |\n|---|---:|---:|---:|---:|\n");
    print({"float32", float_accuracy, 32.0, 0.0}, float_accuracy);
    print(ptq<W8, Act8>("PTQ int8 (weights per channel, activations min/max)", 8, data, o, path), float_accuracy);
    print(ptq<W8, ActHist>("PTQ int8 (activations: histogram search)", 8, data, o, path), float_accuracy);
    print(ptq<W8Pow2, Act8>("PTQ int8, power-of-two weight scales", 8, data, o, path), float_accuracy);
    print(ptq<W8Clipped, Act8>("PTQ int8, user mapping ClippedSymmetric(0.9)", 8, data, o, path), float_accuracy);
    print(ptq<W4, Act8>("PTQ int4 weights, uint8 activations", 4, data, o, path), float_accuracy);
    print(qat<W8, ActQat>("QAT int8", 8, data, o, path), float_accuracy);
    print(qat<W4, ActQat>("QAT int4 weights, uint8 activations", 4, data, o, path), float_accuracy);
    print(kmeans("k-means 16 shared weights per layer (4 bits) + fine-tuning", 4, data, o, path), float_accuracy);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "quantize: " << e.what() << "\n";
    return 1;
  }
}
