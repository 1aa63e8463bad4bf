// Codebook-index (k-means weight sharing) inference at the teacher's fc1 shape (6272 → 1000):
//   fc1/dense/batch:B/threads:T               nn::Linear forward, the fp32 baseline (counter: bytes)
//   fc1/codebook:K/batch:B/threads:T          infer::CodebookLinear with one codebook of K centroids
//                                             (16: 4-bit indices, 64: 8-bit), weights decoded on the fly
// The codebook is fitted by KMeansCodebook on the layer's own (PyTorch-initialised) weights. Read ratios
// inside one run: codebook / dense at the same batch and threads.
#include <minnow/infer/codebook_weights.hpp>
#include <minnow/nn/linear.hpp>
#include <minnow/quant.hpp>

#include "bench_support.hpp"

#include <random>
#include <string>

namespace {

using minnow::index_t;
constexpr index_t kIn = 6272, kOut = 1000;

minnow::nn::Linear<float> make_fc1() {
  minnow::nn::Linear<float> fc1(kIn, kOut);
  std::mt19937_64 rng(1);
  fc1.reset_parameters(rng);
  return fc1;
}

minnow::Tensor<float, 2> random_input(index_t batch) {
  minnow::Tensor<float, 2> x({batch, kIn});
  std::mt19937_64 rng(2);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = u(rng);
  return x;
}

void dense(benchmark::State& state, index_t batch, int threads) {
  bench::set_threads(threads);
  auto fc1 = make_fc1();
  const auto x = random_input(batch);
  for (auto _ : state) {
    benchmark::DoNotOptimize(fc1.forward(x.view().reshape<4>(batch, kIn, 1, 1), minnow::nn::Mode::eval).data());
  }
  state.counters["bytes"] = static_cast<double>((kIn * kOut + kOut) * 4);
}

void codebook(benchmark::State& state, std::int64_t centroids, index_t batch, int threads) {
  bench::set_threads(threads);
  auto fc1 = make_fc1();
  const auto w = fc1.weight();
  const minnow::TensorView<const float, 1> flat(w.data(), {w.size()});
  const minnow::quant::KMeansCodebook kmeans({.centroids = centroids});
  const minnow::quant::Codebook book =
      kmeans.fit(minnow::quant::Range{-0.0127f, 0.0127f}, minnow::quant::QRange{0, 255},
                 minnow::quant::ChannelValues<const float>{flat.data(), 1, flat.size(), flat.size()});
  minnow::infer::CodebookLinear layer(minnow::infer::encode_codebook("fc1.weight", w, std::span(&book, 1)), fc1.bias());
  const auto x = random_input(batch);
  minnow::Tensor<float, 2> y({batch, kOut});
  for (auto _ : state) {
    layer.forward(x.view(), y.view());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["bytes"] = static_cast<double>(layer.bytes());
}

void register_all() {
  for (const int threads : {1, 2}) {
    const std::string t = "/threads:" + std::to_string(threads);
    for (const index_t batch : {1, 64}) {
      const std::string b = "/batch:" + std::to_string(batch);
      benchmark::RegisterBenchmark(("fc1/dense" + b + t).c_str(), [=](benchmark::State& s) { dense(s, batch, threads); })
          ->Unit(benchmark::kMicrosecond)->UseRealTime();
      for (const std::int64_t k : {16, 64}) {
        benchmark::RegisterBenchmark(("fc1/codebook:" + std::to_string(k) + b + t).c_str(),
                                     [=](benchmark::State& s) { codebook(s, k, batch, threads); })
            ->Unit(benchmark::kMicrosecond)->UseRealTime();
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) { return bench::run(argc, argv, register_all); }
