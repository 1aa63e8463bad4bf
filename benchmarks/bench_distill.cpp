// Distillation kernels: the KD loss forward + backward (one call computes both), the combined KD + CE
// loss, and ensemble soft targets over a data set.
//   kd_loss/<B>x<C>/threads:<T>                       teacher given as logits
//   kd_loss_probabilities/<B>x<C>/threads:<T>         teacher given as probabilities (validated per call)
//   combined_loss/<B>x<C>/threads:<T>                 0.7 KD + 0.3 CE
//   ensemble_soft_targets/5x60000x10/threads:<T>      mean of 5 teachers' probabilities at T = 4
//   student_steps/<loss>/batch:<B>/threads:<T>        2,560 images of student training steps (SGD Nesterov)
//                                                     with loss `labels` (cross-entropy), `cached` (SoftTargetLoss
//                                                     over a table of 5 teachers' soft targets, α = 0.9) or
//                                                     `per_batch` (OnlineTeacherLoss: 5 student-architecture
//                                                     teachers run forward on every batch); compare img/s
// Targets (uncontended): kd_loss/4096x1000 <= 3 ms on 2 threads, kd_loss/256x10 <= 10 us on 1 thread;
// student_steps cached / labels <= 1.1 in time.
// The counter `allocations_per_call` counts heap allocations inside warmed-up calls; it should be 0.
#include "bench_support.hpp"

#include <atomic>
#include <cstdlib>
#include <minnow/distill.hpp>
#include <minnow/ensemble.hpp>
#include <minnow/nn.hpp>
#include <minnow/pipeline/ensemble_training.hpp>
#include <minnow/train.hpp>
#include <random>
#include <string>
#include <utility>
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

enum class StudentLoss { labels, cached, per_batch };

/// Training steps of the student from labels, from cached ensemble soft targets, or with the teachers run
/// on every batch. Random images: the cost of a step does not depend on what the pixels are.
void student_steps(benchmark::State& state, StudentLoss kind, minnow::index_t batch, int threads) {
  namespace nn = minnow::nn;
  namespace pipeline = minnow::pipeline;
  constexpr minnow::index_t n = 2560;  // 40 steps of 64, 10 of 256: the whole set stays in cache-friendly reach
  constexpr double temperature = 4.0, alpha = 0.9;
  bench::set_threads(threads);
  minnow::data::Dataset<float> data;
  data.images.resize({n, 1, 28, 28});
  data.labels.resize({n});
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (minnow::index_t i = 0; i < data.images.size(); ++i) data.images.data()[i] = normal(rng);
  for (minnow::index_t i = 0; i < n; ++i) data.labels(i) = static_cast<std::int32_t>(i % 10);

  std::vector<nn::Sequential<float>> teachers;
  for (std::uint64_t k = 0; k < 5; ++k) teachers.push_back(nn::make_student<float>(20 + k));
  std::vector<nn::Sequential<float>*> models;
  for (auto& t : teachers) models.push_back(&t);
  minnow::Tensor<float, 2> table;
  minnow::train::LossFunction<float> loss = minnow::train::cross_entropy<float>();
  if (kind == StudentLoss::cached) {
    table = pipeline::ensemble_soft_targets<float>(pipeline::ensemble_logits<float>(models, data), temperature);
    loss = minnow::distill::SoftTargetLoss<float>(minnow::distill::TeacherProbabilities<float>(table), temperature, alpha);
  } else if (kind == StudentLoss::per_batch) {
    loss = pipeline::OnlineTeacherLoss<float>(models, data, temperature, alpha);
  }
  auto student = nn::make_student<float>(1);
  nn::Sgd<float> sgd(student.parameters(), 0.01, {.momentum = 0.9, .weight_decay = 5e-4, .nesterov = true});
  minnow::train::Trainer<float> trainer(student, sgd, loss);
  minnow::data::BatchSampler sampler(n, batch, 1);
  trainer.step(data, sampler.batch(0));  // warm up the buffers
  for (auto _ : state) {
    for (minnow::index_t b = 0; b < sampler.num_batches(); ++b) benchmark::DoNotOptimize(trainer.step(data, sampler.batch(b)));
    sampler.start_epoch();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * n);
  state.counters["img/s"] = benchmark::Counter(static_cast<double>(state.iterations() * n), benchmark::Counter::kIsRate);
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
  const std::pair<const char*, StudentLoss> student_losses[] = {
      {"labels", StudentLoss::labels}, {"cached", StudentLoss::cached}, {"per_batch", StudentLoss::per_batch}};
  for (const int threads : {2, 1}) {
    for (const minnow::index_t batch : {64, 256}) {
      for (const auto& [label, kind] : student_losses) {
        const std::string name = std::string("student_steps/") + label + "/batch:" + std::to_string(batch) +
                                 "/threads:" + std::to_string(threads);
        benchmark::RegisterBenchmark(name.c_str(), [kind = kind, batch, threads](benchmark::State& s) {
          student_steps(s, kind, batch, threads);
        })->Unit(benchmark::kMillisecond)->UseRealTime();
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) { return bench::run(argc, argv, register_all); }
