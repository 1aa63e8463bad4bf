// Search-based quantization, at 1 and 2 threads where the kernel is threaded:
//   kmeans_fit/fc1     KMeansCodebook::fit on 6,272,000 N(0, 0.01²) weights (the teacher's fc1), 16
//                      centroids, linear init over [min, max], Lloyd to convergence (~600 iterations; target <= 1 s)
//   radix_sort/fc1     the sort inside it, alone
//   std_sort/fc1       std::sort of the same floats (the baseline the radix sort replaces)
//   histogram_observe  Histogram (2048 bins) observing 1M values: first batch, then a wider batch
//                      (histogram combination); histogram_range: its L2 search for qint8
//   mse_observe        MseOptimal observing 1M values; mse_range: its 32×32-candidate search
#include <minnow/quant/histogram.hpp>
#include <minnow/quant/kmeans.hpp>
#include <minnow/quant/mse_observer.hpp>

#include "bench_support.hpp"

#include <algorithm>
#include <random>
#include <vector>

namespace {

constexpr minnow::index_t kFc1 = 6272 * 1000;
constexpr minnow::index_t kMillion = 1000 * 1000;

std::vector<float> normal(minnow::index_t n, float sigma, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

minnow::quant::ChannelValues<const float> whole(const std::vector<float>& v) {
  const auto n = static_cast<minnow::index_t>(v.size());
  return {v.data(), 1, n, n};
}

void kmeans_fc1(benchmark::State& state, int threads) {
  bench::set_threads(threads);
  const auto w = normal(kFc1, 0.01f, 1);
  const auto [lo, hi] = std::minmax_element(w.begin(), w.end());
  const minnow::quant::KMeansCodebook mapping(minnow::quant::KMeansOptions{16, 1000, false});
  minnow::quant::KMeansResult result;
  for (auto _ : state) {
    result = mapping.run({*lo, *hi}, minnow::quant::quint4::range(), whole(w));
    benchmark::DoNotOptimize(result.centroids.data());
  }
  state.counters["iterations"] = result.iterations;
  state.counters["converged"] = result.converged ? 1 : 0;
  state.SetItemsProcessed(state.iterations() * kFc1);
}

void radix_fc1(benchmark::State& state, int threads) {
  bench::set_threads(threads);
  const auto w = normal(kFc1, 0.01f, 1);
  std::vector<std::uint32_t> keys(w.size()), scratch;
  for (auto _ : state) {
    state.PauseTiming();
    for (std::size_t i = 0; i < w.size(); ++i) keys[i] = minnow::quant::detail::float_key(w[i]);
    state.ResumeTiming();
    minnow::quant::detail::radix_sort(keys, scratch);
    benchmark::DoNotOptimize(keys.data());
  }
  state.SetItemsProcessed(state.iterations() * kFc1);
}

void std_sort_fc1(benchmark::State& state) {
  const auto w = normal(kFc1, 0.01f, 1);
  std::vector<float> v;
  for (auto _ : state) {
    state.PauseTiming();
    v = w;
    state.ResumeTiming();
    std::sort(v.begin(), v.end());
    benchmark::DoNotOptimize(v.data());
  }
  state.SetItemsProcessed(state.iterations() * kFc1);
}

void histogram_observe(benchmark::State& state) {
  const auto a = normal(kMillion / 2, 0.5f, 2), b = normal(kMillion / 2, 1.5f, 3);
  for (auto _ : state) {
    minnow::quant::Histogram h;
    h.observe(whole(a));
    h.observe(whole(b));
    benchmark::DoNotOptimize(h.max());
  }
  state.SetItemsProcessed(state.iterations() * kMillion);
}

void histogram_range(benchmark::State& state) {
  const auto a = normal(kMillion, 0.5f, 2);
  minnow::quant::Histogram h;
  h.observe(whole(a));
  for (auto _ : state) benchmark::DoNotOptimize(h.range(minnow::quant::qint8::range()));
}

void mse_observe(benchmark::State& state) {
  const auto a = normal(kMillion / 2, 0.5f, 2), b = normal(kMillion / 2, 1.5f, 3);
  for (auto _ : state) {
    minnow::quant::MseOptimal m;
    m.observe(whole(a));
    m.observe(whole(b));
    benchmark::DoNotOptimize(m.max());
  }
  state.SetItemsProcessed(state.iterations() * kMillion);
}

void mse_range(benchmark::State& state) {
  const auto a = normal(kMillion, 0.5f, 2);
  minnow::quant::MseOptimal m;
  m.observe(whole(a));
  for (auto _ : state) benchmark::DoNotOptimize(m.range(minnow::quant::qint8::range()));
}

void register_all() {
  for (const int threads : {1, 2}) {
    benchmark::RegisterBenchmark(("kmeans_fit/fc1/threads:" + std::to_string(threads)).c_str(), kmeans_fc1, threads)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("radix_sort/fc1/threads:" + std::to_string(threads)).c_str(), radix_fc1, threads)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  benchmark::RegisterBenchmark("std_sort/fc1", std_sort_fc1)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("histogram_observe/1M", histogram_observe)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("histogram_range/qint8", histogram_range)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("mse_observe/1M", mse_observe)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("mse_range/qint8", mse_range)->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) { return bench::run(argc, argv, register_all); }
