// Whole-network inference, fp32 against the integer network converted from the same weights.
//   network/fp32_<arch>/<batch>/<threads>   nn::Sequential forward (eval) of the plain fp32 model
//   network/int8_<arch>/<batch>/<threads>   pipeline::IntegerNetwork forward: float images in, float logits out
//   network/bytes_<arch>                    weight bytes from the buffers: fp32, int8 stored, int8 resident (packed)
// Calibration uses random images: the speed does not depend on the ranges, only on the shapes.
#include "bench_support.hpp"

#include <minnow/nn/models.hpp>
#include <minnow/pipeline/integer_network.hpp>
#include <minnow/pipeline/quantize_model.hpp>
#include <minnow/quant/quantizer.hpp>

#include <map>
#include <memory>
#include <random>
#include <string>

namespace {

using minnow::index_t;
using QModel = minnow::pipeline::QuantizedModel<minnow::quant::Int8PerChannelSymmetric, minnow::quant::Uint8PerTensorAffine>;

minnow::data::Dataset<float> images(index_t n, std::uint64_t seed) {
  minnow::data::Dataset<float> d;
  d.images.resize({n, 1, 28, 28});
  d.labels.resize({n});
  std::mt19937 rng(static_cast<std::mt19937::result_type>(seed));
  std::uniform_real_distribution<float> dist(-0.8f, 2.0f);
  for (index_t i = 0; i < d.images.size(); ++i) d.images.data()[i] = dist(rng);
  for (index_t i = 0; i < n; ++i) d.labels(i) = static_cast<std::int32_t>(i % 10);
  return d;
}

/// The fp32 model and its integer conversion (built once per architecture).
struct Networks {
  minnow::nn::Sequential<float> fp32;
  minnow::nn::Sequential<float> quantized;
  std::unique_ptr<QModel> qmodel;
  std::unique_ptr<minnow::pipeline::IntegerNetwork> integer;

  explicit Networks(const std::string& arch)
      : fp32(minnow::nn::make_architecture<float>(arch, 1)), quantized(minnow::nn::make_architecture<float>(arch, 1)) {
    qmodel = std::make_unique<QModel>(quantized);
    qmodel->calibrate(images(256, 7), 256, 128);
    integer = std::make_unique<minnow::pipeline::IntegerNetwork>(quantized, *qmodel);
  }
  static Networks& get(const std::string& arch) {
    static std::map<std::string, std::unique_ptr<Networks>> cache;
    auto& slot = cache[arch];
    if (!slot) slot = std::make_unique<Networks>(arch);
    return *slot;
  }
};

void fp32(benchmark::State& state, std::string arch) {
  auto& nets = Networks::get(arch);
  const auto x = images(state.range(0), 3);
  bench::set_threads(static_cast<int>(state.range(1)));
  for (auto _ : state) {
    auto y = nets.fp32.forward(x.images.view(), minnow::nn::Mode::eval);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["img/s"] = benchmark::Counter(static_cast<double>(state.range(0)) * static_cast<double>(state.iterations()),
                                               benchmark::Counter::kIsRate);
}

void int8(benchmark::State& state, std::string arch) {
  auto& nets = Networks::get(arch);
  const auto x = images(state.range(0), 3);
  bench::set_threads(static_cast<int>(state.range(1)));
  for (auto _ : state) {
    auto y = nets.integer->forward(x.images.view());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["img/s"] = benchmark::Counter(static_cast<double>(state.range(0)) * static_cast<double>(state.iterations()),
                                               benchmark::Counter::kIsRate);
}

void bytes(benchmark::State& state, std::string arch) {
  auto& nets = Networks::get(arch);
  for (auto _ : state) benchmark::DoNotOptimize(nets.integer->weight_bytes());
  const auto f = static_cast<double>(nets.integer->float_bytes());
  state.counters["fp32_bytes"] = f;
  state.counters["int8_stored_bytes"] = static_cast<double>(nets.integer->storage_bytes());
  state.counters["int8_resident_bytes"] = static_cast<double>(nets.integer->weight_bytes());
  state.counters["stored_ratio"] = static_cast<double>(nets.integer->storage_bytes()) / f;
  state.counters["resident_ratio"] = static_cast<double>(nets.integer->weight_bytes()) / f;
}

void register_all() {
  for (const std::string arch : {"student", "teacher"}) {
    benchmark::RegisterBenchmark(("network/fp32_" + arch).c_str(), fp32, arch)
        ->ArgsProduct({{1, 256}, {1, 2}})
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("network/int8_" + arch).c_str(), int8, arch)
        ->ArgsProduct({{1, 256}, {1, 2}})
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("network/bytes_" + arch).c_str(), bytes, arch)->Iterations(1);
  }
}

}  // namespace

int main(int argc, char** argv) { return bench::run(argc, argv, register_all); }
