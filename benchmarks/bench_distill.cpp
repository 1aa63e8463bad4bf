// Distillation kernels: the KD loss forward + backward (one call computes both), the combined KD + CE
// loss, and ensemble soft targets over a data set.
//   kd_loss/<B>x<C>/threads:<T>                       teacher given as logits
//   kd_loss_probabilities/<B>x<C>/threads:<T>         teacher given as probabilities (validated per call)
//   combined_loss/<B>x<C>/threads:<T>                 0.7 KD + 0.3 CE
//   ensemble_soft_targets/5x60000x10/threads:<T>      mean of 5 teachers' probabilities at T = 4
// Targets (uncontended): kd_loss/4096x1000 <= 3 ms on 2 threads, kd_loss/256x10 <= 10 us on 1 thread.
// The counter `allocations_per_call` counts heap allocations inside warmed-up calls; it should be 0.
#include "bench_support.hpp"

#include <atomic>
#include <cstdlib>
#include <minnow/distill.hpp>
#include <minnow/ensemble.hpp>
#include <random>
#include <string>
#include <vector>

namespace {

minnow::Tensor<float, 2> random_logits(minnow::index_t rows, minnow::index_t cols, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  minnow::Tensor<float, 2> t({rows, cols});
  for (minnow::index_t i = 0; i < t.size(); ++i) t.data()[i] = normal(rng);
  return t;
}

enum class Loss { kd_logits, kd_probabilities, combined };

void loss(benchmark::State& state, Loss kind, minnow::index_t rows, minnow::index_t cols, int threads) {
  namespace distill = minnow::distill;
  bench::set_threads(threads);
  const auto student = random_logits(rows, cols, 1);
  const auto teacher = random_logits(rows, cols, 2);
  minnow::Tensor<float, 2> probabilities(teacher.shape()), grad(student.shape());
  distill::softmax<float>(teacher, 4.0, probabilities);
  minnow::Tensor<std::int32_t, 1> labels({rows});
  for (minnow::index_t i = 0; i < rows; ++i) labels(i) = static_cast<std::int32_t>(i % cols);
  distill::KdWorkspace<float> workspace;
  const auto call = [&] {
    switch (kind) {
      case Loss::kd_logits:
        return distill::kd_loss(student, distill::TeacherLogits(teacher), 4.0, grad, workspace);
      case Loss::kd_probabilities:
        return distill::kd_loss(student, distill::TeacherProbabilities(probabilities), 4.0, grad, workspace);
      case Loss::combined:
        return distill::combined_loss(student, distill::TeacherLogits(teacher), labels, 4.0, 0.7, grad, workspace);
    }
    return 0.0;
  };
  benchmark::DoNotOptimize(call());  // warm up the workspace and the thread pool
  long allocations = 0;
  for (auto _ : state) {
    const long before = bench::allocation_count();
    benchmark::DoNotOptimize(call());
    allocations += bench::allocation_count() - before;
    benchmark::ClobberMemory();
  }
  // Student and teacher read, gradient written.
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 3 * rows * cols *
                          static_cast<std::int64_t>(sizeof(float)));
  state.counters["allocations_per_call"] = static_cast<double>(allocations) / static_cast<double>(state.iterations());
}

void soft_targets(benchmark::State& state, int threads) {
  bench::set_threads(threads);
  constexpr minnow::index_t rows = 60000, cols = 10;
  std::vector<minnow::Tensor<float, 2>> teachers;
  for (std::uint64_t k = 0; k < 5; ++k) teachers.push_back(random_logits(rows, cols, 10 + k));
  const std::vector<minnow::TensorView<const float, 2>> members(teachers.begin(), teachers.end());
  minnow::Tensor<float, 2> out({rows, cols});
  for (auto _ : state) {
    minnow::ensemble::mean_probabilities<float>(members, 4.0, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 6 * rows * cols *
                          static_cast<std::int64_t>(sizeof(float)));
}

void register_all() {
  struct Case {
    const char* name;
    Loss kind;
    minnow::index_t rows, cols;
    int threads;
  };
  const Case cases[] = {
      {"kd_loss", Loss::kd_logits, 4096, 1000, 2},
      {"kd_loss", Loss::kd_logits, 4096, 1000, 1},
      {"kd_loss", Loss::kd_logits, 256, 10, 1},
      {"kd_loss_probabilities", Loss::kd_probabilities, 4096, 1000, 2},
      {"kd_loss_probabilities", Loss::kd_probabilities, 256, 10, 1},
      {"combined_loss", Loss::combined, 4096, 1000, 2},
      {"combined_loss", Loss::combined, 256, 10, 1},
  };
  for (const auto& c : cases) {
    const std::string name = std::string(c.name) + "/" + std::to_string(c.rows) + "x" + std::to_string(c.cols) +
                             "/threads:" + std::to_string(c.threads);
    benchmark::RegisterBenchmark(name.c_str(), [c](benchmark::State& s) { loss(s, c.kind, c.rows, c.cols, c.threads); })
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
  }
  for (const int threads : {2, 1}) {
    benchmark::RegisterBenchmark(("ensemble_soft_targets/5x60000x10/threads:" + std::to_string(threads)).c_str(),
                                 [threads](benchmark::State& s) { soft_targets(s, threads); })
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
  }
}

}  // namespace

int main(int argc, char** argv) { return bench::run(argc, argv, register_all); }
