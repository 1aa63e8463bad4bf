// Quantization kernels on 16 M floats (64 MiB: far beyond the caches, so DRAM bandwidth is the limit),
// at 1 and 2 threads, each with a bytes/s counter. Divide a kernel's bytes/s by the baseline's of the
// same run for the fraction of the machine's bandwidth it reaches:
//   copy/eigen        y = x, regular stores (read + write: 8 B/element)
//   copy/memcpy       parallel std::memcpy (glibc streams big copies: 8 B/element)
//   read/sum          Eigen sum over x, one pass (4 B/element)                    the observers' baseline
//   fake_quant/tensor        y = fq(x) per tensor                 8 B/element
//   fake_quant/channel       per channel, [256, 65536] axis 0     8 B/element
//   fake_quant/channel_act   per channel, [16, 64, 16384] axis 1  8 B/element
//   fake_quant_mask/tensor   y = fq(x) and the STE mask           9 B/element
//   fake_quant_eigen/tensor  the same formula as one Eigen array expression (what the kernels are measured against)
//   ste_backward/tensor      dx = inside(x) ? dy : 0              12 B/element
//   ste_backward/channel     per channel, [256, 65536] axis 0     12 B/element
//   ste_backward_mask        dx = mask ? dy : 0                   9 B/element
//   observe/minmax           MinMax per tensor through Quantizer  4 B/element
//   observe/per_channel      MinMax per channel [256, 65536] axis 0
#include <minnow/quant.hpp>

#include "bench_support.hpp"

#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr minnow::index_t kN = minnow::index_t{1} << 24;
const std::vector<minnow::index_t> kWeightShape = {256, 65536};
const std::vector<minnow::index_t> kActShape = {16, 64, 16384};

minnow::Tensor<float, 1> random_values(minnow::index_t n, std::uint64_t seed) {
  minnow::Tensor<float, 1> x({n});
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (minnow::index_t i = 0; i < n; ++i) x(i) = g(rng);
  return x;
}

const minnow::Tensor<float, 1>& input() {
  static const auto x = random_values(kN, 1);
  return x;
}
const minnow::Tensor<float, 1>& gradient() {
  static const auto dy = random_values(kN, 2);
  return dy;
}

// int8, per tensor: the range of a unit normal, so some values clamp.
constexpr minnow::quant::AffineParams kParams{4.0f / 127.5f, 0};

std::vector<minnow::quant::AffineParams> channel_params(minnow::index_t channels) {
  std::vector<minnow::quant::AffineParams> p;
  for (minnow::index_t c = 0; c < channels; ++c) p.push_back({(3.0f + 0.01f * static_cast<float>(c)) / 127.5f, 0});
  return p;
}

void bytes(benchmark::State& state, int per_element) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * kN * per_element);
}

void copy_eigen(benchmark::State& state) {
  const auto& x = input();
  minnow::Tensor<float, 1> y({kN});
  for (auto _ : state) {
    minnow::quant::detail::for_ranges(kN, [&](minnow::index_t b, minnow::index_t e, int) {
      y.view().slice(b, e).array() = x.view().slice(b, e).array();
    });
    benchmark::ClobberMemory();
  }
  bytes(state, 8);
}

void copy_memcpy(benchmark::State& state) {
  const auto& x = input();
  minnow::Tensor<float, 1> y({kN});
  for (auto _ : state) {
    bench::parallel_copy(y.data(), x.data(), kN, minnow::detail::max_threads());
    benchmark::ClobberMemory();
  }
  bytes(state, 8);
}

void read_sum(benchmark::State& state) {
  const auto& x = input();
  std::vector<float> out(4);
  for (auto _ : state) {
    minnow::quant::detail::for_ranges(kN, [&](minnow::index_t b, minnow::index_t e, int t) {
      const auto a = x.view().slice(b, e).array();
      out[static_cast<std::size_t>(t)] = a.sum();  // one pass (minCoeff + maxCoeff would read twice)
    });
    benchmark::DoNotOptimize(out.data());
  }
  bytes(state, 4);
}

void fq_tensor(benchmark::State& state) {
  const auto& x = input();
  minnow::Tensor<float, 1> y({kN});
  for (auto _ : state) {
    minnow::quant::fake_quantize<float, 1>(x.view(), kParams, minnow::quant::qint8::range(), y.view());
    benchmark::ClobberMemory();
  }
  bytes(state, 8);
}

void fq_channel(benchmark::State& state, const std::vector<minnow::index_t>& shape, minnow::index_t axis) {
  const auto& x = input();
  minnow::Tensor<float, 1> y({kN});
  const auto layout = minnow::quant::PerChannel{axis}.layout(shape);
  const auto params = channel_params(layout.channels);
  for (auto _ : state) {
    minnow::quant::fake_quantize<float, 1>(x.view(), layout, params, minnow::quant::qint8::range(), y.view());
    benchmark::ClobberMemory();
  }
  bytes(state, 8);
}

void fq_mask(benchmark::State& state) {
  const auto& x = input();
  minnow::Tensor<float, 1> y({kN});
  minnow::Tensor<std::uint8_t, 1> mask({kN});
  for (auto _ : state) {
    minnow::quant::fake_quantize<float, 1>(x.view(), kParams, minnow::quant::qint8::range(), y.view(), mask.view());
    benchmark::ClobberMemory();
  }
  bytes(state, 9);
}

void fq_eigen(benchmark::State& state) {
  const auto& x = input();
  minnow::Tensor<float, 1> y({kN});
  const float inv = 1.0f / kParams.scale, zp = static_cast<float>(kParams.zero_point), scale = kParams.scale;
  for (auto _ : state) {
    minnow::quant::detail::for_ranges(kN, [&](minnow::index_t b, minnow::index_t e, int) {
      y.view().slice(b, e).array() =
          (((x.view().slice(b, e).array() * inv).rint() + zp).max(-128.0f).min(127.0f) - zp) * scale;
    });
    benchmark::ClobberMemory();
  }
  bytes(state, 8);
}

void ste_tensor(benchmark::State& state) {
  const auto& x = input();
  const auto& dy = gradient();
  minnow::Tensor<float, 1> dx({kN});
  for (auto _ : state) {
    minnow::quant::fake_quantize_backward<float, 1>(x.view(), dy.view(), kParams, minnow::quant::qint8::range(),
                                                    dx.view());
    benchmark::ClobberMemory();
  }
  bytes(state, 12);
}

void ste_channel(benchmark::State& state) {
  const auto& x = input();
  const auto& dy = gradient();
  minnow::Tensor<float, 1> dx({kN});
  const auto layout = minnow::quant::PerChannel{0}.layout(kWeightShape);
  const auto params = channel_params(layout.channels);
  for (auto _ : state) {
    minnow::quant::fake_quantize_backward<float, 1>(x.view(), dy.view(), layout, params, minnow::quant::qint8::range(),
                                                    dx.view());
    benchmark::ClobberMemory();
  }
  bytes(state, 12);
}

void ste_mask(benchmark::State& state) {
  const auto& x = input();
  const auto& dy = gradient();
  minnow::Tensor<float, 1> y({kN}), dx({kN});
  minnow::Tensor<std::uint8_t, 1> mask({kN});
  minnow::quant::fake_quantize<float, 1>(x.view(), kParams, minnow::quant::qint8::range(), y.view(), mask.view());
  for (auto _ : state) {
    minnow::quant::fake_quantize_backward<float, 1>(minnow::TensorView<const std::uint8_t, 1>(mask.view()), dy.view(),
                                                    dx.view());
    benchmark::ClobberMemory();
  }
  bytes(state, 9);
}

void observe_tensor(benchmark::State& state) {
  const auto& x = input();
  minnow::quant::Int8PerTensorSymmetric q;
  const std::vector<minnow::index_t> shape{kN};
  for (auto _ : state) {
    q.observe(x.view(), shape);
    benchmark::ClobberMemory();
  }
  bytes(state, 4);
}

void observe_channel(benchmark::State& state) {
  const auto& x = input();
  minnow::quant::Int8PerChannelSymmetric q;
  for (auto _ : state) {
    q.observe(x.view(), kWeightShape);
    benchmark::ClobberMemory();
  }
  bytes(state, 4);
}

template <class F>
void add(const std::string& name, int threads, F f) {
  benchmark::RegisterBenchmark((name + "/threads:" + std::to_string(threads)).c_str(), [=](benchmark::State& s) {
    bench::set_threads(threads);
    f(s);
  })->Unit(benchmark::kMillisecond)->UseRealTime();
}

void register_all() {
  for (const int threads : {2, 1}) {
    add("copy/eigen", threads, copy_eigen);
    add("copy/memcpy", threads, copy_memcpy);
    add("read/sum", threads, read_sum);
    add("fake_quant/tensor", threads, fq_tensor);
    add("fake_quant/channel", threads, [](benchmark::State& s) { fq_channel(s, kWeightShape, 0); });
    add("fake_quant/channel_act", threads, [](benchmark::State& s) { fq_channel(s, kActShape, 1); });
    add("fake_quant_mask/tensor", threads, fq_mask);
    add("fake_quant_eigen/tensor", threads, fq_eigen);
    add("ste_backward/tensor", threads, ste_tensor);
    add("ste_backward/channel", threads, ste_channel);
    add("ste_backward_mask/tensor", threads, ste_mask);
    add("observe/minmax", threads, observe_tensor);
    add("observe/per_channel", threads, observe_channel);
  }
}

}  // namespace

int main(int argc, char** argv) { return bench::run(argc, argv, register_all); }
