// Whole-network inference, fp32 against the integer network converted from the same weights.
//   network/fp32_<arch>/<batch>/<threads>   nn::Sequential forward (eval) of the plain fp32 model
//   network/int8_<arch>/<batch>/<threads>   pipeline::IntegerNetwork forward: float images in, float logits out
//   network/bytes_<arch>                    weight bytes from the buffers: fp32, int8 stored, int8 resident (packed)
//   conv/<layer>_<path>/<batch>/<threads>   one integer conv of the student/teacher (uint8 in and out, ReLU):
//                                           path direct = the VNNI direct kernel, im2col = im2col + qgemm (VNNI),
//                                           direct_pool = forward_pooled (conv + requantize + 2×2 max pool fused)
//   pool/<layer>/<batch>/<threads>          the uint8 2×2 max pool after that conv
// Ratios int8/fp32 come from the same run: compare network/int8_* with network/fp32_* of equal arguments.
// Calibration uses random images: the speed does not depend on the ranges, only on the shapes.
#include "../examples/architectures.hpp"
#include "bench_support.hpp"

#include <minnow/nn/models.hpp>
#include <minnow/pipeline/integer_network.hpp>
#include <minnow/pipeline/quantize_model.hpp>
#include <minnow/quant/quantizer.hpp>

#include <minnow/infer/quantized_conv2d.hpp>
#include <minnow/infer/quantized_maxpool.hpp>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

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
      : fp32(example::make_architecture<float>(arch, 1)), quantized(example::make_architecture<float>(arch, 1)) {
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

/// A conv layer's shape (the networks' convs: 3×3, stride 1, padding 1) with random integer weights.
struct ConvShape {
  const char* name;
  index_t in, out, size;  // channels in/out, input height = width
};

minnow::infer::QuantizedConv2d make_conv(const ConvShape& c) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> s8(-128, 127);
  minnow::infer::Int8Weights w;
  w.name = c.name;
  w.values.resize({c.out, c.in * 9});
  for (index_t i = 0; i < w.values.size(); ++i) w.values.data()[i] = static_cast<std::int8_t>(s8(rng));
  w.params.assign(static_cast<std::size_t>(c.out), minnow::quant::AffineParams{0.002f, 0});
  const std::vector<float> bias(static_cast<std::size_t>(c.out), 0.1f);
  return minnow::infer::QuantizedConv2d(w, c.in, 3, 1, 1, bias, {0.02f, 3}, true);
}

minnow::Tensor<std::uint8_t, 4> random_u8(const minnow::Shape<4>& shape) {
  minnow::Tensor<std::uint8_t, 4> x(shape);
  std::mt19937 rng(2);
  std::uniform_int_distribution<int> u8(0, 255);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<std::uint8_t>(u8(rng));
  return x;
}

void conv(benchmark::State& state, ConvShape shape, bool direct, bool pooled) {
  auto layer = make_conv(shape);
  layer.set_direct(direct);
  const auto x = random_u8({state.range(0), shape.in, shape.size, shape.size});
  minnow::Shape<4> out = layer.output_shape(x.shape());
  if (pooled) out = {out[0], out[1], out[2] / 2, out[3] / 2};
  minnow::Tensor<std::uint8_t, 4> y(out);
  bench::set_threads(static_cast<int>(state.range(1)));
  for (auto _ : state) {
    if (pooled) {
      layer.forward_pooled(x.view(), {0.05f, 0}, y.view());
    } else {
      layer.forward(x.view(), {0.05f, 0}, y.view());
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["img/s"] = benchmark::Counter(static_cast<double>(state.range(0)) * static_cast<double>(state.iterations()),
                                               benchmark::Counter::kIsRate);
}

void pool(benchmark::State& state, ConvShape shape) {
  const minnow::infer::QuantizedMaxPool2d layer(2);
  const auto x = random_u8({state.range(0), shape.out, shape.size, shape.size});
  minnow::Tensor<std::uint8_t, 4> y(layer.output_shape(x.shape()));
  bench::set_threads(static_cast<int>(state.range(1)));
  for (auto _ : state) {
    layer.forward(x.view(), y.view());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * x.size());
}

void register_all() {
  for (const ConvShape shape : {ConvShape{"student_conv1", 1, 16, 28}, ConvShape{"student_conv2", 16, 32, 14},
                                ConvShape{"teacher_conv1", 1, 64, 28}, ConvShape{"teacher_conv2", 64, 128, 14}}) {
    for (const char* path : {"direct", "im2col", "direct_pool"}) {
      const std::string p = path;
      benchmark::RegisterBenchmark(("conv/" + std::string(shape.name) + "_" + p).c_str(), conv, shape, p != "im2col",
                                   p == "direct_pool")
          ->ArgsProduct({{1, 256}, {1, 2}})
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
    }
    benchmark::RegisterBenchmark(("pool/" + std::string(shape.name)).c_str(), pool, shape)
        ->ArgsProduct({{1, 256}, {1, 2}})
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }
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
