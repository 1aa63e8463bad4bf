// Training and inference speed of the reference teacher and student CNNs, at 1 and 2 threads.
// Names match benchmarks/compare_torch.py, which times PyTorch on the same machine in the same run:
//   train/<arch>/batch:<B>/threads:<T>    images/s of forward + CE + backward + SGD-momentum step
//   infer/<arch>/batch:256/threads:<T>    images/s of forward (eval)
//   latency/<arch>/batch:1/threads:<T>    time of one forward of one image
//   conv/<layer>/batch:<B>/<algorithm>     one Conv2d's forward (and forward + backward: conv_train/), direct
//                                         kernel against im2col + GEMM, one thread
//   block/<layer>/batch:<B>/<variant>      conv → ReLU → 2×2 pool forward (and forward + backward: block_train/),
//                                         one thread: the fused step with Winograd or the direct kernel, or the
//                                         three layers one by one
// The counter `allocations_per_step` counts heap allocations (every malloc, whoever calls it) inside
// warmed-up training steps; it should be 0.
#include <minnow/nn.hpp>
#include <minnow/train.hpp>

#include "../examples/architectures.hpp"
#include "bench_support.hpp"

#include <atomic>
#include <cstdlib>
#include <random>
#include <string>
#include <utility>

namespace {

minnow::data::Dataset<float> random_data(minnow::index_t n) {
  minnow::data::Dataset<float> data;
  data.images.resize({n, 1, 28, 28});
  data.labels.resize({n});
  std::mt19937_64 rng(3);
  for (minnow::index_t i = 0; i < data.images.size(); ++i) data.images.data()[i] = static_cast<float>(minnow::nn::uniform01(rng) * 2 - 1);
  for (minnow::index_t i = 0; i < n; ++i) data.labels(i) = static_cast<std::int32_t>(rng() % 10);
  return data;
}

void train(benchmark::State& state, const std::string& arch, minnow::index_t batch, int threads) {
  bench::set_threads(threads);
  auto model = example::make_architecture<float>(arch, 1);
  minnow::nn::Sgd<float> sgd(model.parameters(), 0.01, {.momentum = 0.9});
  minnow::train::Trainer<float> trainer(model, sgd);
  const auto data = random_data(batch * 4);
  minnow::data::BatchSampler sampler(data.size(), batch, 1);
  for (minnow::index_t b = 0; b < sampler.num_batches(); ++b) trainer.step(data, sampler.batch(b));  // warm up
  long allocations = 0;
  minnow::index_t b = 0;
  for (auto _ : state) {
    const long before = bench::allocation_count();
    trainer.step(data, sampler.batch(b));
    allocations += bench::allocation_count() - before;
    b = (b + 1) % sampler.num_batches();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * batch);
  state.counters["allocations_per_step"] = static_cast<double>(allocations) / static_cast<double>(state.iterations());
}

void infer(benchmark::State& state, const std::string& arch, minnow::index_t batch, int threads) {
  bench::set_threads(threads);
  auto model = example::make_architecture<float>(arch, 1);
  const auto data = random_data(batch);
  const minnow::TensorView<const float, 4> images = data.images;
  benchmark::DoNotOptimize(model.forward(images).data());
  for (auto _ : state) {
    benchmark::DoNotOptimize(model.forward(images).data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * batch);
}

struct ConvLayer {
  const char* name;
  minnow::index_t in, out, size;
};

// One layer of the reference networks on random input, forward (and backward when `train`).
void conv(benchmark::State& state, ConvLayer layer, minnow::index_t batch, minnow::nn::ConvAlgorithm algorithm, bool train) {
  bench::set_threads(1);
  minnow::nn::Conv2d<float> conv(layer.in, layer.out, 3, 1, 1);
  std::mt19937_64 rng(5);
  conv.reset_parameters(rng);
  conv.set_algorithm(algorithm);
  conv.set_needs_input_grad(true);
  minnow::Tensor<float, 4> x({batch, layer.in, layer.size, layer.size}), dy({batch, layer.out, layer.size, layer.size});
  for (minnow::index_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(minnow::nn::uniform01(rng) - 0.5);
  for (minnow::index_t i = 0; i < dy.size(); ++i) dy.data()[i] = static_cast<float>(minnow::nn::uniform01(rng) - 0.5);
  for (auto _ : state) {
    benchmark::DoNotOptimize(conv.forward(x.view(), minnow::nn::Mode::train).data());
    if (train) benchmark::DoNotOptimize(conv.backward(dy.view()).data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * batch);
}

// A reference layer's conv → ReLU → pool block on random input, as Sequential runs it (fused: Winograd
// where eligible, or forced direct) or as three layers one by one; forward (and backward when `train`).
void block(benchmark::State& state, ConvLayer layer, minnow::index_t batch, const std::string& variant, bool train) {
  bench::set_threads(1);
  minnow::nn::Conv2d<float> conv(layer.in, layer.out, 3, 1, 1);
  minnow::nn::ReLU<float> relu;
  minnow::nn::MaxPool2d<float> pool(2);
  minnow::nn::ConvReluPool fused(conv, pool);
  std::mt19937_64 rng(5);
  conv.reset_parameters(rng);
  conv.set_algorithm(variant == "winograd" ? minnow::nn::ConvAlgorithm::automatic : minnow::nn::ConvAlgorithm::direct);
  conv.set_needs_input_grad(true);
  minnow::Tensor<float, 4> x({batch, layer.in, layer.size, layer.size}), dy({batch, layer.out, layer.size / 2, layer.size / 2});
  for (minnow::index_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(minnow::nn::uniform01(rng) - 0.5);
  for (minnow::index_t i = 0; i < dy.size(); ++i) dy.data()[i] = static_cast<float>(minnow::nn::uniform01(rng) - 0.5);
  const bool layers = variant == "layers";
  for (auto _ : state) {
    if (layers) {
      const auto y = pool.forward(relu.forward(conv.forward(x.view(), minnow::nn::Mode::train), minnow::nn::Mode::train),
                                  minnow::nn::Mode::train);
      benchmark::DoNotOptimize(y.data());
      if (train) benchmark::DoNotOptimize(conv.backward(relu.backward(pool.backward(dy.view()))).data());
    } else {
      benchmark::DoNotOptimize(fused.forward(x.view()).data());
      if (train) benchmark::DoNotOptimize(fused.backward(dy.view(), true).data());
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * batch);
}

void register_all() {
  for (const ConvLayer layer : {ConvLayer{"student.conv1", 1, 16, 28}, ConvLayer{"student.conv2", 16, 32, 14},
                                ConvLayer{"teacher.conv1", 1, 64, 28}, ConvLayer{"teacher.conv2", 64, 128, 14}}) {
    for (const auto& [algorithm, label] : {std::pair{minnow::nn::ConvAlgorithm::direct, "direct"},
                                           std::pair{minnow::nn::ConvAlgorithm::im2col_gemm, "im2col"}}) {
      for (const minnow::index_t batch : {1, 64}) {
        const std::string suffix = std::string(layer.name) + "/batch:" + std::to_string(batch) + "/" + label;
        benchmark::RegisterBenchmark(("conv/" + suffix).c_str(),
                                     [=](benchmark::State& s) { conv(s, layer, batch, algorithm, false); })
            ->Unit(benchmark::kMicrosecond)->UseRealTime();
        if (batch > 1) {
          benchmark::RegisterBenchmark(("conv_train/" + suffix).c_str(),
                                       [=](benchmark::State& s) { conv(s, layer, batch, algorithm, true); })
              ->Unit(benchmark::kMicrosecond)->UseRealTime();
        }
      }
    }
  }
  for (const ConvLayer layer : {ConvLayer{"student.conv1", 1, 16, 28}, ConvLayer{"student.conv2", 16, 32, 14},
                                ConvLayer{"teacher.conv1", 1, 64, 28}, ConvLayer{"teacher.conv2", 64, 128, 14}}) {
    for (const std::string variant : {"winograd", "direct", "layers"}) {
      // Winograd needs ≥ 8 input channels: for conv1 "winograd" would repeat "direct".
      if (variant == "winograd" && layer.in < 8) continue;
      for (const minnow::index_t batch : {1, 64}) {
        const std::string suffix = std::string(layer.name) + "/batch:" + std::to_string(batch) + "/" + variant;
        benchmark::RegisterBenchmark(("block/" + suffix).c_str(), [=](benchmark::State& s) { block(s, layer, batch, variant, false); })
            ->Unit(benchmark::kMicrosecond)->UseRealTime();
        if (batch > 1) {
          benchmark::RegisterBenchmark(("block_train/" + suffix).c_str(),
                                       [=](benchmark::State& s) { block(s, layer, batch, variant, true); })
              ->Unit(benchmark::kMicrosecond)->UseRealTime();
        }
      }
    }
  }
  for (const std::string arch : {"teacher", "student"}) {
    for (const int threads : {1, 2}) {
      const std::string suffix = "/threads:" + std::to_string(threads);
      for (const minnow::index_t batch : {64, 256}) {
        benchmark::RegisterBenchmark(("train/" + arch + "/batch:" + std::to_string(batch) + suffix).c_str(),
                                     [=](benchmark::State& s) { train(s, arch, batch, threads); })
            ->Unit(benchmark::kMillisecond)->UseRealTime();
      }
      benchmark::RegisterBenchmark(("infer/" + arch + "/batch:256" + suffix).c_str(),
                                   [=](benchmark::State& s) { infer(s, arch, 256, threads); })
          ->Unit(benchmark::kMillisecond)->UseRealTime();
      benchmark::RegisterBenchmark(("latency/" + arch + "/batch:1" + suffix).c_str(),
                                   [=](benchmark::State& s) { infer(s, arch, 1, threads); })
          ->Unit(benchmark::kMicrosecond)->UseRealTime();
    }
  }
}

}  // namespace

int main(int argc, char** argv) { return bench::run(argc, argv, register_all); }
