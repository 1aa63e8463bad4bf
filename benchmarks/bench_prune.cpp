// Pruning kernels on the reference teacher's parameter sizes, at 1 and 2 threads:
//   l1_unstructured/fc1        6,272,000 weights, Fraction 0.9 (target <= 40 ms)
//   nth_element_baseline/fc1   std::nth_element on the same |w| (what a selection by sort-free STL costs)
//   global_unstructured/teacher all 8 teacher parameters (6.36M weights), Fraction 0.9 (target <= 50 ms)
//   apply_mask/fc1             w ← w ⊙ mask                       bytes: read w, mask; write w
//   hook/fc1                   Pruner::apply on w, grad, momentum  bytes: read mask; read+write w, g, m
//   memcpy/fc1                 std::memcpy of a 6.27M-float buffer bytes: read + write
//   copy/fc1                   the same copy split over the threads
//   {apply_mask,hook,copy}/dram the same three on 64 M floats (256 MB per buffer): DRAM, not L3
// The streaming kernels report bytes/s; divide by the copy's bytes/s (same run, same size, same
// threads) for the fraction of the machine's bandwidth they reach. The mask is reset outside the
// timed region.
#include <minnow/prune.hpp>

#include "bench_support.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

constexpr minnow::index_t kFc1 = 6272 * 1000;
constexpr minnow::index_t kDram = minnow::index_t{64} << 20;  // 256 MB per float buffer, 8× the L3
// conv1.w, conv1.b, conv2.w, conv2.b, fc1.w, fc1.b, fc2.w, fc2.b of the teacher.
const std::vector<minnow::index_t> kTeacher = {64 * 9, 64, 128 * 64 * 9, 128, 6272 * 1000, 1000, 1000 * 10, 10};

// Kaiming-uniform-like weights: what a freshly initialised layer looks like.
minnow::Tensor<float, 1> random_weights(minnow::index_t n, std::uint64_t seed) {
  minnow::Tensor<float, 1> w({n});
  std::mt19937_64 rng(seed);
  const double bound = 1.0 / std::sqrt(static_cast<double>(std::max<minnow::index_t>(n / 1000, 1)));
  for (minnow::index_t i = 0; i < n; ++i) {
    w(i) = static_cast<float>((static_cast<double>(rng() >> 11) * 0x1.0p-53 * 2.0 - 1.0) * bound);
  }
  return w;
}

void l1_fc1(benchmark::State& state, int threads) {
  bench::set_threads(threads);
  const auto w = random_weights(kFc1, 1);
  minnow::Tensor<float, 1> mask({kFc1}, 1.0f);
  for (auto _ : state) {
    state.PauseTiming();
    mask.fill(1.0f);
    state.ResumeTiming();
    benchmark::DoNotOptimize(minnow::prune::l1_unstructured(w.view(), mask.view(), minnow::prune::Fraction{0.9}));
    benchmark::ClobberMemory();
  }
  state.counters["kept"] = static_cast<double>(minnow::prune::count_kept(mask.view()));
}

void nth_element_baseline(benchmark::State& state) {
  const auto w = random_weights(kFc1, 1);
  std::vector<float> magnitudes(static_cast<std::size_t>(kFc1));
  for (auto _ : state) {
    state.PauseTiming();
    for (minnow::index_t i = 0; i < kFc1; ++i) magnitudes[static_cast<std::size_t>(i)] = std::abs(w(i));
    state.ResumeTiming();
    const auto kth = magnitudes.begin() + minnow::prune::to_count(minnow::prune::Fraction{0.9}, kFc1) - 1;
    std::nth_element(magnitudes.begin(), kth, magnitudes.end());
    benchmark::DoNotOptimize(*kth);
  }
}

void global_teacher(benchmark::State& state, int threads) {
  bench::set_threads(threads);
  std::vector<minnow::Tensor<float, 1>> weights, masks;
  std::uint64_t seed = 10;
  for (const auto n : kTeacher) {
    weights.push_back(random_weights(n, seed++));
    masks.emplace_back(minnow::Shape<1>{n}, 1.0f);
  }
  std::vector<minnow::prune::MaskedView<float>> targets;
  minnow::index_t total = 0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    targets.push_back({weights[i].view(), masks[i].view()});
    total += weights[i].size();
  }
  for (auto _ : state) {
    state.PauseTiming();
    for (auto& m : masks) m.fill(1.0f);
    state.ResumeTiming();
    benchmark::DoNotOptimize(minnow::prune::global_unstructured(targets, minnow::prune::Fraction{0.9}));
    benchmark::ClobberMemory();
  }
  state.counters["weights"] = static_cast<double>(total);
}

// Half the weights pruned, at random positions: no branch predictor help, like a real mask.
minnow::Tensor<float, 1> half_mask(minnow::index_t n) {
  minnow::Tensor<float, 1> mask({n});
  std::mt19937_64 rng(7);
  for (minnow::index_t i = 0; i < n; ++i) mask(i) = (rng() & 1) ? 1.0f : 0.0f;
  return mask;
}

void apply_mask(benchmark::State& state, minnow::index_t n, int threads) {
  bench::set_threads(threads);
  auto w = random_weights(n, 2);
  const auto mask = half_mask(n);
  for (auto _ : state) {
    minnow::prune::apply(w.view(), mask.view());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * n * 3 * static_cast<std::int64_t>(sizeof(float)));
}

void hook(benchmark::State& state, minnow::index_t n, int threads) {
  bench::set_threads(threads);
  auto w = random_weights(n, 3);
  minnow::Tensor<float, 1> grad({n}, 0.5f), momentum({n}, 0.25f);
  minnow::prune::Pruner<float> pruner;
  pruner.track("fc1.weight", w.view(), grad.view(), {{"momentum_buffer", momentum.view()}});
  std::mt19937_64 rng(4);
  pruner.random_unstructured("fc1.weight", minnow::prune::Fraction{0.5}, rng);
  for (auto _ : state) {
    pruner.apply();
    benchmark::ClobberMemory();
  }
  // mask read once; weights, gradient and momentum each read and written.
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * n * 7 * static_cast<std::int64_t>(sizeof(float)));
}

void parallel_copy(benchmark::State& state, minnow::index_t n, int threads) {
  const auto src = random_weights(n, 5);
  minnow::Tensor<float, 1> dst({n});
  for (auto _ : state) {
    bench::parallel_copy(dst.data(), src.data(), n, threads);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * n * 2 * static_cast<std::int64_t>(sizeof(float)));
}

void memcpy_fc1(benchmark::State& state) {
  const auto src = random_weights(kFc1, 5);
  minnow::Tensor<float, 1> dst({kFc1});
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), static_cast<std::size_t>(kFc1) * sizeof(float));
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * kFc1 * 2 * static_cast<std::int64_t>(sizeof(float)));
}

void register_all() {
  for (const int threads : {1, 2}) {
    const std::string suffix = "/threads:" + std::to_string(threads);
    benchmark::RegisterBenchmark(("l1_unstructured/fc1" + suffix).c_str(), [=](benchmark::State& s) { l1_fc1(s, threads); })
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("global_unstructured/teacher" + suffix).c_str(),
                                 [=](benchmark::State& s) { global_teacher(s, threads); })
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    for (const auto& [label, n] : {std::pair<std::string, minnow::index_t>{"fc1", kFc1}, {"dram", kDram}}) {
      benchmark::RegisterBenchmark(("apply_mask/" + label + suffix).c_str(),
                                   [=](benchmark::State& s) { apply_mask(s, n, threads); })
          ->Unit(benchmark::kMillisecond)->UseRealTime();
      benchmark::RegisterBenchmark(("hook/" + label + suffix).c_str(), [=](benchmark::State& s) { hook(s, n, threads); })
          ->Unit(benchmark::kMillisecond)->UseRealTime();
      benchmark::RegisterBenchmark(("copy/" + label + suffix).c_str(),
                                   [=](benchmark::State& s) { parallel_copy(s, n, threads); })
          ->Unit(benchmark::kMillisecond)->UseRealTime();
    }
  }
  benchmark::RegisterBenchmark("nth_element_baseline/fc1/threads:1", nth_element_baseline)
      ->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("memcpy/fc1/threads:1", memcpy_fc1)->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) { return bench::run(argc, argv, register_all); }
