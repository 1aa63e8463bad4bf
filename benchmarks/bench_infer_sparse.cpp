// Sparse and structurally pruned inference:
//   fc1/dense/batch:B/threads:T             nn::Linear(6272 → 1000) forward (minnow's GEMM / GEMV path)
//   fc1/{csr,bitmap,sliced}/sparsity:S/…   infer::SparseLinear with an unstructured mask of S % (counter: bytes)
//   fc1/bitmap_int8/sparsity:S/…            the same with BitmapInt8Matrix (per-row symmetric int8 scales)
//   conv2/dense/batch:B/threads:T           the teacher's conv2, nn::Conv2d(64 → 128, 3×3, pad 1) on 14×14 maps
//   conv2/sparse/sparsity:S/…               infer::SparseConv2d (CSR) with an unstructured l1 mask of S %
//   student/{dense,surgery50}/batch:B/…     the student, dense vs with 50 % of conv1/conv2 filters removed
// The mask comes from l1_unstructured on random weights (so the kept positions are random, as in a
// trained layer). Ratios are meant to be read inside one run: sparse / dense at the same batch and threads.
#include <minnow/infer/sparse.hpp>
#include <minnow/infer/sparse_conv2d.hpp>
#include <minnow/infer/sparse_int8.hpp>
#include <minnow/nn/conv2d.hpp>
#include <minnow/nn/models.hpp>
#include <minnow/pipeline/surgery.hpp>
#include <minnow/prune/criteria.hpp>
#include <minnow/prune/hook.hpp>

#include "bench_support.hpp"

#include <memory>
#include <random>
#include <string>

namespace {

using minnow::index_t;
constexpr index_t kIn = 6272, kOut = 1000;

struct Fc1 {
  minnow::nn::Linear<float> dense{kIn, kOut};
  minnow::Tensor<float, 2> mask{{kOut, kIn}};
};

// fc1 with PyTorch's initialisation, its weights multiplied by an l1 mask of `sparsity`.
Fc1 make_fc1(double sparsity) {
  Fc1 f;
  std::mt19937_64 rng(1);
  f.dense.reset_parameters(rng);
  f.mask.fill(1.0f);
  const auto w = f.dense.weight();
  if (sparsity > 0) {
    minnow::prune::l1_unstructured(w.reshape<1>(w.size()), f.mask.view().reshape<1>(f.mask.size()), minnow::prune::Fraction{sparsity});
  }
  for (index_t i = 0; i < w.size(); ++i) w.data()[i] *= f.mask.data()[i];
  return f;
}

minnow::Tensor<float, 4> random_input(index_t n, index_t c, index_t h, index_t w) {
  minnow::Tensor<float, 4> x({n, c, h, w});
  std::mt19937_64 rng(2);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = u(rng);
  return x;
}

void fc1_dense(benchmark::State& state, index_t batch, int threads) {
  bench::set_threads(threads);
  auto f = make_fc1(0.0);
  const auto x = random_input(batch, kIn, 1, 1);
  for (auto _ : state) benchmark::DoNotOptimize(f.dense.forward(x.view(), minnow::nn::Mode::eval).data());
  state.counters["bytes"] = static_cast<double>(kIn * kOut * 4 + kOut * 4);
}

template <class M>
void fc1_sparse(benchmark::State& state, double sparsity, index_t batch, int threads) {
  bench::set_threads(threads);
  auto f = make_fc1(sparsity);
  minnow::infer::SparseLinear<M> layer(M(f.dense.weight(), f.mask.view()), f.dense.bias());
  const auto x = random_input(batch, kIn, 1, 1);
  minnow::Tensor<float, 2> y({batch, kOut});
  for (auto _ : state) {
    layer.forward(x.view().reshape<2>(batch, kIn), y.view());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["bytes"] = static_cast<double>(layer.bytes());
}

// The teacher's conv2 with PyTorch's initialisation, its weights multiplied by an l1 mask of `sparsity`.
struct Conv2 {
  minnow::nn::Conv2d<float> dense{64, 128, 3, 1, 1};
  minnow::Tensor<float, 4> mask{{128, 64, 3, 3}};
};

Conv2 make_conv2(double sparsity) {
  Conv2 c;
  std::mt19937_64 rng(3);
  c.dense.reset_parameters(rng);
  c.mask.fill(1.0f);
  const auto w = c.dense.weight();
  if (sparsity > 0) {
    minnow::prune::l1_unstructured(w.reshape<1>(w.size()), c.mask.view().reshape<1>(c.mask.size()), minnow::prune::Fraction{sparsity});
  }
  for (index_t i = 0; i < w.size(); ++i) w.data()[i] *= c.mask.data()[i];
  return c;
}

void conv2_dense(benchmark::State& state, index_t batch, int threads) {
  bench::set_threads(threads);
  auto c = make_conv2(0.0);
  const auto x = random_input(batch, 64, 14, 14);
  for (auto _ : state) benchmark::DoNotOptimize(c.dense.forward(x.view(), minnow::nn::Mode::eval).data());
  state.counters["bytes"] = static_cast<double>(c.dense.weight().size() * 4 + 128 * 4);
}

void conv2_sparse(benchmark::State& state, double sparsity, index_t batch, int threads) {
  bench::set_threads(threads);
  auto c = make_conv2(sparsity);
  minnow::infer::SparseConv2d<> conv(c.dense.weight(), c.mask.view(), c.dense.bias(), 1, 1);
  const auto x = random_input(batch, 64, 14, 14);
  minnow::Tensor<float, 4> y(conv.output_shape(x.shape()));
  for (auto _ : state) {
    conv.forward(x.view(), y.view());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["bytes"] = static_cast<double>(conv.bytes());
}

void fc1_int8(benchmark::State& state, double sparsity, index_t batch, int threads) {
  bench::set_threads(threads);
  auto f = make_fc1(sparsity);
  const auto params = minnow::infer::BitmapInt8Matrix::symmetric_scales(f.dense.weight(), f.mask.view());
  minnow::infer::SparseLinear<minnow::infer::BitmapInt8Matrix> layer(
      minnow::infer::BitmapInt8Matrix(f.dense.weight(), f.mask.view(), params), f.dense.bias());
  const auto x = random_input(batch, kIn, 1, 1);
  minnow::Tensor<float, 2> y({batch, kOut});
  for (auto _ : state) {
    layer.forward(x.view().reshape<2>(batch, kIn), y.view());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["bytes"] = static_cast<double>(layer.weights().bytes());
  state.counters["ratio"] = static_cast<double>(layer.weights().bytes()) / static_cast<double>(kIn * kOut * 4);
}

void student(benchmark::State& state, bool surgery, index_t batch, int threads) {
  bench::set_threads(threads);
  auto net = minnow::nn::make_student<float>(3);
  std::unique_ptr<minnow::pipeline::SurgeryResult<float>> small;
  if (surgery) {
    minnow::prune::Pruner<float> pruner;
    for (const auto& p : net.parameters()) {
      if (p.name == "conv1.weight" || p.name == "conv2.weight") pruner.track(p);
    }
    pruner.ln_structured("conv1.weight", minnow::prune::Fraction{0.5}, 2.0, 0);
    pruner.ln_structured("conv2.weight", minnow::prune::Fraction{0.5}, 2.0, 0);
    pruner.apply();
    minnow::pipeline::zero_pruned_biases(net, pruner);
    small = std::make_unique<minnow::pipeline::SurgeryResult<float>>(minnow::pipeline::remove_pruned_units(net, pruner));
  }
  auto& model = surgery ? small->network : net;
  const auto x = random_input(batch, 1, 28, 28);
  for (auto _ : state) benchmark::DoNotOptimize(model.forward(x.view()).data());
  state.counters["parameters"] = static_cast<double>(minnow::parameter_count(model.parameters()));
}

void register_all() {
  for (const int threads : {1, 2}) {
    const std::string t = "/threads:" + std::to_string(threads);
    for (const index_t batch : {1, 64}) {
      const std::string b = "/batch:" + std::to_string(batch);
      benchmark::RegisterBenchmark(("fc1/dense" + b + t).c_str(), [=](benchmark::State& s) { fc1_dense(s, batch, threads); })
          ->Unit(benchmark::kMicrosecond)->UseRealTime();
      for (const int pct : {50, 75, 90, 95}) {
        const std::string sp = "/sparsity:" + std::to_string(pct);
        const double sparsity = pct / 100.0;
        benchmark::RegisterBenchmark(("fc1/csr" + sp + b + t).c_str(),
                                     [=](benchmark::State& s) { fc1_sparse<minnow::infer::CsrMatrix>(s, sparsity, batch, threads); })
            ->Unit(benchmark::kMicrosecond)->UseRealTime();
        benchmark::RegisterBenchmark(("fc1/bitmap" + sp + b + t).c_str(),
                                     [=](benchmark::State& s) { fc1_sparse<minnow::infer::BitmapMatrix>(s, sparsity, batch, threads); })
            ->Unit(benchmark::kMicrosecond)->UseRealTime();
        benchmark::RegisterBenchmark(("fc1/sliced" + sp + b + t).c_str(),
                                     [=](benchmark::State& s) { fc1_sparse<minnow::infer::SlicedMatrix>(s, sparsity, batch, threads); })
            ->Unit(benchmark::kMicrosecond)->UseRealTime();
        benchmark::RegisterBenchmark(("fc1/bitmap_int8" + sp + b + t).c_str(),
                                     [=](benchmark::State& s) { fc1_int8(s, sparsity, batch, threads); })
            ->Unit(benchmark::kMicrosecond)->UseRealTime();
      }
    }
    for (const index_t batch : {1, 64}) {
      const std::string b = "/batch:" + std::to_string(batch);
      benchmark::RegisterBenchmark(("conv2/dense" + b + t).c_str(), [=](benchmark::State& s) { conv2_dense(s, batch, threads); })
          ->Unit(benchmark::kMicrosecond)->UseRealTime();
      for (const int pct : {50, 75, 90}) {
        benchmark::RegisterBenchmark(("conv2/sparse/sparsity:" + std::to_string(pct) + b + t).c_str(),
                                     [=](benchmark::State& s) { conv2_sparse(s, pct / 100.0, batch, threads); })
            ->Unit(benchmark::kMicrosecond)->UseRealTime();
      }
    }
    for (const index_t batch : {1, 256}) {
      const std::string b = "/batch:" + std::to_string(batch);
      benchmark::RegisterBenchmark(("student/dense" + b + t).c_str(), [=](benchmark::State& s) { student(s, false, batch, threads); })
          ->Unit(benchmark::kMicrosecond)->UseRealTime();
      benchmark::RegisterBenchmark(("student/surgery50" + b + t).c_str(), [=](benchmark::State& s) { student(s, true, batch, threads); })
          ->Unit(benchmark::kMicrosecond)->UseRealTime();
    }
  }
}

}  // namespace

int main(int argc, char** argv) { return bench::run(argc, argv, register_all); }
