// Is a TensorView's Eigen map free? The same expression, y = a*x + b*y with a clamp, evaluated through
// TensorView::array() and through a raw Eigen::Map over the same buffers. The ratio of the two is the
// overhead of the view (expected: none).
#include <minnow/tensor.hpp>

#include <benchmark/benchmark.h>

namespace {

constexpr float kA = 0.75f;
constexpr float kB = 1.25f;

struct Buffers {
  explicit Buffers(minnow::index_t n) : x({n}, 0.5f), y({n}, 0.25f) {}
  minnow::Tensor<float, 1> x;
  minnow::Tensor<float, 1> y;
};

void set_counters(benchmark::State& state, minnow::index_t n) {
  // Reads x and y, writes y.
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * n * 3 * static_cast<std::int64_t>(sizeof(float)));
}

void BM_TensorViewMap(benchmark::State& state) {
  const auto n = static_cast<minnow::index_t>(state.range(0));
  Buffers buffers(n);
  minnow::TensorView<const float, 1> x = buffers.x;
  minnow::TensorView<float, 1> y = buffers.y;
  for (auto _ : state) {
    y.array() = (kA * x.array() + kB * y.array()).min(1.0f).max(-1.0f);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, n);
}

void BM_RawEigenMap(benchmark::State& state) {
  const auto n = static_cast<minnow::index_t>(state.range(0));
  Buffers buffers(n);
  Eigen::Map<const Eigen::ArrayXf> x(buffers.x.data(), n);
  Eigen::Map<Eigen::ArrayXf> y(buffers.y.data(), n);
  for (auto _ : state) {
    y = (kA * x + kB * y).min(1.0f).max(-1.0f);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, n);
}

// 4 Ki (L1), 256 Ki (L2) and 16 Mi (memory) elements.
BENCHMARK(BM_TensorViewMap)->Arg(1 << 12)->Arg(1 << 18)->Arg(1 << 24);
BENCHMARK(BM_RawEigenMap)->Arg(1 << 12)->Arg(1 << 18)->Arg(1 << 24);

}  // namespace

BENCHMARK_MAIN();
