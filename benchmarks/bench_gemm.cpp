// minnow::simd::gemm against Eigen's GEMM on the products the CNN layers run (GFLOP/s counter).
//   gemm/<shape>/minnow and gemm/<shape>/eigen: C[m×n] = A[m×k]·B[k×n], all row-major (B transposed
//   where the layer reads it transposed).
#include <minnow/simd/gemm.hpp>

#include <benchmark/benchmark.h>

#include <random>
#include <string>

namespace {

struct Shape {
  const char* name;
  minnow::index_t m, n, k;
  bool b_transposed;
};

// teacher conv2 forward (one chunk of 10 samples), fc1 forward/backward at batch 64, student conv2.
constexpr Shape kShapes[] = {
    {"teacher_conv2_fwd", 128, 1960, 576, false}, {"teacher_conv2_dW", 128, 576, 1960, true},
    {"teacher_fc1_fwd_b64", 64, 1000, 6272, true}, {"teacher_fc1_dx_b64", 64, 6272, 1000, false},
    {"student_conv2_fwd", 32, 1960, 144, false},   {"square_1024", 1024, 1024, 1024, false},
};

void run(benchmark::State& state, const Shape& s, bool use_minnow) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  minnow::Tensor<float, 2> a({s.m, s.k}), b(s.b_transposed ? minnow::Shape<2>{s.n, s.k} : minnow::Shape<2>{s.k, s.n}),
      c({s.m, s.n});
  for (auto* t : {&a, &b}) for (minnow::index_t i = 0; i < t->size(); ++i) t->data()[i] = dist(rng);
  for (auto _ : state) {
    if (use_minnow) {
      const auto bb = s.b_transposed ? minnow::simd::row_major(b.data(), s.k).transposed() : minnow::simd::row_major(b.data(), s.n);
      minnow::simd::gemm<float>(s.m, s.n, s.k, minnow::simd::row_major(a.data(), s.k), bb, c.data(), s.n, false);
    } else if (s.b_transposed) {
      c.matrix().noalias() = a.matrix() * b.matrix().transpose();
    } else {
      c.matrix().noalias() = a.matrix() * b.matrix();
    }
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPs"] = benchmark::Counter(2.0 * static_cast<double>(s.m * s.n * s.k) * static_cast<double>(state.iterations()),
                                                benchmark::Counter::kIsRate);
}

}  // namespace

int main(int argc, char** argv) {
  Eigen::setNbThreads(1);
  for (const auto& s : kShapes) {
    benchmark::RegisterBenchmark((std::string("gemm/") + s.name + "/minnow").c_str(), [&s](benchmark::State& st) { run(st, s, true); });
    benchmark::RegisterBenchmark((std::string("gemm/") + s.name + "/eigen").c_str(), [&s](benchmark::State& st) { run(st, s, false); });
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
