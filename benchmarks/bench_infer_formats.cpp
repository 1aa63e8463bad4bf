// Which format should a pruned Linear run in inside an IntegerNetwork? The teacher's fc1 (6272 → 1000,
// ReLU, then fc2 1000 → 10) as a whole integer network, fc1 pruned by magnitude to S %, timed with fc1 in
// each format; fc2 stays int8. Each time includes what the format costs at its edges (a float format
// dequantizes its uint8 input and quantizes its output).
//   formats/<int8|sparse|dense_fp32>/sparsity:S/batch:B/threads:T   (counter: bytes of the weights)
// pipeline::NetworkPlan's sparse_from_* thresholds come from these ratios (read inside one run).
#include <minnow/nn.hpp>
#include <minnow/pipeline/integer_network.hpp>
#include <minnow/pipeline/quantize_model.hpp>
#include <minnow/prune/criteria.hpp>
#include <minnow/quant.hpp>

#include "bench_support.hpp"

#include <random>
#include <string>

namespace {

using minnow::index_t;
using minnow::pipeline::LayerFormat;
constexpr index_t kIn = 6272;

minnow::data::Dataset<float> random_inputs(index_t n, std::uint64_t seed) {
  minnow::data::Dataset<float> d;
  d.images.resize({n, kIn, 1, 1});
  d.labels.resize({n});
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 2.0f);  // post-ReLU-like activations
  for (index_t i = 0; i < d.images.size(); ++i) d.images.data()[i] = u(rng);
  for (index_t i = 0; i < n; ++i) d.labels(i) = static_cast<std::int32_t>(i % 10);
  return d;
}

void run(benchmark::State& state, LayerFormat format, int pct, index_t batch, int threads) {
  bench::set_threads(threads);
  minnow::nn::Sequential<float> model;
  model.add("fc1", minnow::nn::Linear<float>(kIn, 1000));
  model.add("relu1", minnow::nn::ReLU<float>());
  model.add("fc2", minnow::nn::Linear<float>(1000, 10));
  std::mt19937_64 rng(1);
  for (const auto& p : model.parameters()) {
    std::uniform_real_distribution<float> u(-0.0126f, 0.0126f);
    for (index_t i = 0; i < p.value.size(); ++i) p.value.data()[i] = u(rng);
  }
  const auto fc1 = minnow::find_parameter(model.parameters(), "fc1.weight");
  minnow::Tensor<float, 1> mask({fc1.value.size()}, 1.0f);
  minnow::prune::l1_unstructured(minnow::TensorView<const float, 1>(fc1.value.data(), {fc1.value.size()}), mask.view(),
                                 minnow::prune::Fraction{pct / 100.0});
  for (index_t i = 0; i < fc1.value.size(); ++i) fc1.value.data()[i] *= mask(i);
  minnow::pipeline::QuantizedModel<minnow::quant::Int8PerChannelSymmetric, minnow::quant::Uint8PerTensorAffine> qmodel(model);
  qmodel.calibrate(random_inputs(256, 2), 256, 64);
  minnow::pipeline::IntegerNetwork net(model, qmodel, {.layers = {{"fc1", format}}, .batch = batch});
  const auto x = random_inputs(batch, 3);
  for (auto _ : state) benchmark::DoNotOptimize(net.forward(x.images.view()).data());
  state.counters["bytes"] = static_cast<double>(net.weight_bytes());
}

void register_all() {
  for (const int threads : {2}) {
    for (const index_t batch : {1, 64}) {
      for (const int pct : {50, 75, 90, 95, 98}) {
        for (const auto& [name, format] : {std::pair{"int8", LayerFormat::int8}, std::pair{"sparse", LayerFormat::sparse},
                                           std::pair{"dense_fp32", LayerFormat::dense_float}}) {
          if (format == LayerFormat::dense_float && pct != 50) continue;  // dense ignores the zeros
          const std::string label = std::string("formats/") + name + "/sparsity:" + std::to_string(pct) +
                                    "/batch:" + std::to_string(batch) + "/threads:" + std::to_string(threads);
          benchmark::RegisterBenchmark(label.c_str(), [=](benchmark::State& s) { run(s, format, pct, batch, threads); })
              ->Unit(benchmark::kMicrosecond)->UseRealTime();
        }
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) { return bench::run(argc, argv, register_all); }
