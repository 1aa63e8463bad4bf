// Benchmarks of three of minnow's public kernels, written as a user would in their own project:
//   gemm/n:<N>                              simd::gemm, C[N×N] = A[N×N]·B[N×N] in fp32, one thread
//                                           (items/s = FLOP/s, 2·N³ per call)
//   fake_quantize/elements:<E>/threads:<T>  quant::PerTensorAffine::fake_quantize, y = fq(x) on E floats
//                                           (bytes/s: read x, write y = 8 B per element)
//   kd_loss/batch:<B>/threads:<T>           distill::kd_loss of [B × 1000] logits at T = 4, loss and gradient
//                                           (items/s = rows/s)
// All times are wall-clock (UseRealTime): the threaded kernels run on OpenMP threads, whose work the
// main thread's CPU time would not show.
#include <benchmark/benchmark.h>
#include <minnow/distill/kd_loss.hpp>
#include <minnow/quant/quantizer.hpp>
#include <minnow/simd/gemm.hpp>
#include <minnow/tensor.hpp>
#include <minnow/threads.hpp>

#include <cstdint>
#include <random>

namespace {

using minnow::index_t;

template <std::size_t R>
minnow::Tensor<float, R> random_tensor(const minnow::Shape<R>& shape, float stddev, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  minnow::Tensor<float, R> t(shape);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = normal(rng);
  return t;
}

void gemm(benchmark::State& state) {
  const index_t n = state.range(0);
  const auto a = random_tensor<2>({n, n}, 1.0f, 1);
  const auto b = random_tensor<2>({n, n}, 1.0f, 2);
  minnow::Tensor<float, 2> c({n, n});
  const auto multiply = [&] {
    minnow::simd::gemm<float>(n, n, n, minnow::simd::row_major(a.data(), n), minnow::simd::row_major(b.data(), n),
                              c.data(), n, /*accumulate=*/false);
  };
  multiply();  // warm up: this thread's packing buffers grow once, outside the timed loop
  for (auto _ : state) {
    multiply();
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * 2 * n * n * n);
}
BENCHMARK(gemm)->ArgName("n")->RangeMultiplier(2)->Range(64, 512)->Unit(benchmark::kMicrosecond)->UseRealTime();

void fake_quantize(benchmark::State& state) {
  const index_t elements = state.range(0);
  minnow::set_threads(static_cast<int>(state.range(1)));
  const auto x = random_tensor<1>({elements}, 1.0f, 3);
  minnow::Tensor<float, 1> y({elements});
  minnow::quant::PerTensorAffine quantizer;  // quint8, min/max observer, affine: PyTorch's default
  quantizer.observe(x);                      // calibrate once, outside the timed loop
  quantizer.fake_quantize(x, y);             // warm up: parameters computed, y's pages and threads ready
  for (auto _ : state) {
    quantizer.fake_quantize(x, y);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * elements * 2 * static_cast<index_t>(sizeof(float)));
}
BENCHMARK(fake_quantize)
    ->ArgNames({"elements", "threads"})
    ->ArgsProduct({benchmark::CreateRange(1 << 16, 1 << 20, 4), {1, 2}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

void kd_loss(benchmark::State& state) {
  namespace distill = minnow::distill;
  const index_t batch = state.range(0), classes = 1000;
  minnow::set_threads(static_cast<int>(state.range(1)));
  const auto student = random_tensor<2>({batch, classes}, 3.0f, 4);
  const auto teacher = random_tensor<2>({batch, classes}, 3.0f, 5);
  minnow::Tensor<float, 2> grad({batch, classes});
  distill::KdWorkspace<float> workspace;  // reused across calls: warm calls allocate nothing
  distill::kd_loss(student, distill::TeacherLogits(teacher), 4.0, grad, workspace);  // warm up the workspace
  for (auto _ : state) {
    const double loss = distill::kd_loss(student, distill::TeacherLogits(teacher), 4.0, grad, workspace);
    benchmark::DoNotOptimize(loss);
    benchmark::DoNotOptimize(grad.data());
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(kd_loss)
    ->ArgNames({"batch", "threads"})
    ->ArgsProduct({benchmark::CreateRange(64, 4096, 8), {1, 2}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
