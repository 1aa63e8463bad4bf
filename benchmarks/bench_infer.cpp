// Integer inference kernels at the teacher's fc1 shape (batch × 6272 by 6272 × 1000), GOP/s = 2·m·n·k / s.
//   infer/int8_u8_in_u8_out/<batch>/<threads>   qgemm on already quantized uint8 input, requantized uint8 out
//   infer/int8_f32_in_f32_out/<batch>/<threads> QuantizedLinear: quantize → qgemm → dequantize (+ bias)
//   infer/int8_dynamic_f32/<batch>/<threads>    dynamic quantization (PyTorch's quantized.dynamic.Linear):
//                                               min/max of the input → affine uint8 parameters → quantize →
//                                               qgemm → dequantize (+ bias), all inside the timed call
//   infer/int4_kept_f32/<batch>/<threads>       the same with int4 weights unpacked per cache block
//   infer/int4_once_f32/<batch>/<threads>       the same with int4 weights unpacked to int8 at build time
//   infer/fp32_minnow_linear/<batch>/<threads>  nn::Linear forward (GEMV below batch 4, GEMM above), the fp32 baseline
//   infer/int8_*_vnni/<batch>/<threads>         where the CPU has AMX (which the rows above then use from
//                                               batch 2 on): the same three int8 rows with AMX turned off;
//                                               int8_u8_in_u8_out_small_batch(_vnni) at batch 1–8, 1 thread
//   infer/vnni_peak/<threads>                   register-only vpdpbusd zmm loop: this machine's int8 peak
//   infer/vnni_peak_ymm/<threads>               the same with ymm operands (half the work per instruction)
// Measured on this Zen 5 with thread CPU time and hand-written asm (16–24 chains, register or broadcast
// memory operands): vpdpbusd zmm issues once per cycle with a 4-cycle latency, ymm twice per cycle, so
// both give 64 multiply-adds = 128 ops per cycle per core (≈ 465 GOP/s per core at 3.63 GHz, ≈ 930 GOP/s
// on both). 16 chains cover 4 cycles of latency × 1 per cycle four times over: the peak below is the
// real one, not an artefact of too few accumulators.
#include "bench_support.hpp"

#include <minnow/infer/quantized_linear.hpp>
#include <minnow/quant/mappings.hpp>
#include <minnow/quant/observers.hpp>
#include <minnow/nn/linear.hpp>

#include <random>
#include <vector>

#if defined(__AVX512VNNI__)
#include <immintrin.h>
#endif

namespace {

using minnow::index_t;
constexpr index_t kIn = 6272, kOut = 1000;

struct Fc1 {
  minnow::Tensor<float, 2> w{minnow::Shape<2>{kOut, kIn}};
  std::vector<float> bias = std::vector<float>(kOut);
  std::vector<minnow::quant::AffineParams> params;
  Fc1() {
    std::mt19937 rng(1);
    std::normal_distribution<float> dist(0.0f, 0.02f);
    for (index_t i = 0; i < w.size(); ++i) w.data()[i] = dist(rng);
    for (auto& b : bias) b = dist(rng);
    for (index_t j = 0; j < kOut; ++j) params.push_back({0.1f / 127.0f, 0});
  }
  static const Fc1& get() {
    static const Fc1 fc1;
    return fc1;
  }
};

minnow::Tensor<float, 2> input(index_t batch) {
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> dist(0.0f, 4.0f);
  minnow::Tensor<float, 2> x({batch, kIn});
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = dist(rng);
  return x;
}

void count(benchmark::State& state, index_t batch) {
  state.counters["GOPs"] = benchmark::Counter(2.0 * static_cast<double>(batch * kIn * kOut) *
                                                  static_cast<double>(state.iterations()),
                                              benchmark::Counter::kIsRate);
}

constexpr minnow::quant::AffineParams kInput{4.0f / 255.0f, 0};

void int8_u8(benchmark::State& state) {
  const index_t batch = state.range(0);
  bench::set_threads(static_cast<int>(state.range(1)));
  const auto& fc1 = Fc1::get();
  const auto packed = minnow::infer::pack_weights(minnow::infer::quantize_int8("fc1", fc1.w, fc1.params));
  minnow::Tensor<std::uint8_t, 2> xq({batch, kIn}), y({batch, kOut});
  std::mt19937 rng(3);
  for (index_t i = 0; i < xq.size(); ++i) xq.data()[i] = static_cast<std::uint8_t>(rng());
  minnow::infer::QuantizedActivations a;
  for (auto _ : state) {
    minnow::infer::pack_activations(xq, kInput, a);
    minnow::infer::qgemm(a, packed, {{}, fc1.bias, false}, {0.05f, 128}, y.view());
    benchmark::DoNotOptimize(y.data());
  }
  count(state, batch);
}

template <int Kind>  // 0 int8, 1 int4 kept, 2 int4 unpacked once
void linear_f32(benchmark::State& state) {
  const index_t batch = state.range(0);
  bench::set_threads(static_cast<int>(state.range(1)));
  const auto& fc1 = Fc1::get();
  auto make = [&] {
    if constexpr (Kind == 0) {
      return minnow::infer::QuantizedLinear(minnow::infer::quantize_int8("fc1", fc1.w, fc1.params), fc1.bias, kInput);
    } else {
      std::vector<minnow::quant::AffineParams> p4(kOut, {0.1f / 7.0f, 0});
      return minnow::infer::QuantizedLinear(minnow::infer::quantize_int4("fc1", fc1.w, p4), fc1.bias, kInput, false,
                                            Kind == 1 ? minnow::infer::Int4Storage::keep_int4
                                                      : minnow::infer::Int4Storage::unpack_once);
    }
  };
  auto layer = make();
  const auto x = input(batch);
  minnow::Tensor<float, 2> y({batch, kOut});
  for (auto _ : state) {
    layer.forward(x, y.view());
    benchmark::DoNotOptimize(y.data());
  }
  count(state, batch);
  state.counters["weight_MB"] = static_cast<double>(layer.bytes()) / 1e6;
}

void int8_dynamic(benchmark::State& state) {
  const index_t batch = state.range(0);
  bench::set_threads(static_cast<int>(state.range(1)));
  const auto& fc1 = Fc1::get();
  const auto packed = minnow::infer::pack_weights(minnow::infer::quantize_int8("fc1", fc1.w, fc1.params));
  const auto x = input(batch);
  minnow::Tensor<float, 2> y({batch, kOut});
  minnow::infer::QuantizedActivations a;
  for (auto _ : state) {
    minnow::quant::MinMax observer;
    observer.observe(minnow::quant::ChannelValues<const float>{x.data(), 1, x.size(), x.size()});
    const auto params = minnow::quant::Affine{}.qparams(observer.range(), minnow::quant::QRange{0, 255});
    minnow::infer::quantize_activations(x, params, a);
    minnow::infer::qgemm(a, packed, {{}, fc1.bias, false}, y.view());
    benchmark::DoNotOptimize(y.data());
  }
  count(state, batch);
}

void fp32(benchmark::State& state) {
  const index_t batch = state.range(0);
  bench::set_threads(static_cast<int>(state.range(1)));
  const auto& fc1 = Fc1::get();
  const auto x = input(batch);
  minnow::nn::Linear<float> linear(kIn, kOut);
  linear.weight().copy_from(fc1.w.view());
  std::copy(fc1.bias.begin(), fc1.bias.end(), linear.bias().data());
  for (auto _ : state) {
    benchmark::DoNotOptimize(linear.forward(x.view().reshape<4>(batch, kIn, 1, 1), minnow::nn::Mode::eval).data());
  }
  count(state, batch);
}

#if defined(__AVX512VNNI__)
// 16 independent accumulator chains, no memory operands: the issue rate of vpdpbusd (4 × Vec::size ops each).
template <class Vec>
void vnni_peak(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  constexpr long kIters = 1 << 20;
  constexpr int kChains = 16;
  for (auto _ : state) {
    minnow::detail::parallel_for(threads, threads, [&](long, int) {
      Vec acc[kChains];
      Vec a, b;
      if constexpr (sizeof(Vec) == 64) {
        for (auto& c : acc) c = _mm512_setzero_si512();
        a = b = _mm512_set1_epi32(0x01010101);
      } else {
        for (auto& c : acc) c = _mm256_setzero_si256();
        a = b = _mm256_set1_epi32(0x01010101);
      }
      asm volatile("" : "+v"(a), "+v"(b));
      for (long i = 0; i < kIters; ++i) {
#pragma GCC unroll 16
        for (auto& c : acc) {
          if constexpr (sizeof(Vec) == 64) {
            c = _mm512_dpbusd_epi32(c, a, b);
          } else {
            c = _mm256_dpbusd_epi32(c, a, b);
          }
        }
      }
      for (auto& c : acc) benchmark::DoNotOptimize(c);
    });
  }
  const double ops_per_instruction = 2.0 * static_cast<double>(sizeof(Vec));  // 4 multiply-adds per int32 lane
  state.counters["GOPs"] = benchmark::Counter(ops_per_instruction * kChains * kIters * threads *
                                                  static_cast<double>(state.iterations()),
                                              benchmark::Counter::kIsRate);
}
#endif

// The same benchmark on the AVX-512 VNNI kernels with AMX turned off, for the AMX / VNNI ratio in one run.
template <void (*Bench)(benchmark::State&)>
void without_amx(benchmark::State& state) {
  const minnow::simd::Isa previous = minnow::simd::set_isa(minnow::simd::Isa::avx512_vnni);
  Bench(state);
  minnow::simd::set_isa(previous);
}

void register_all() {
  for (const auto& [name, fn] : std::vector<std::pair<const char*, void (*)(benchmark::State&)>>{
           {"infer/int8_u8_in_u8_out", int8_u8},
           {"infer/int8_f32_in_f32_out", linear_f32<0>},
           {"infer/int8_dynamic_f32", int8_dynamic},
           {"infer/int4_kept_f32", linear_f32<1>},
           {"infer/int4_once_f32", linear_f32<2>},
           {"infer/fp32_minnow_linear", fp32}}) {
    benchmark::RegisterBenchmark(name, fn)->ArgsProduct({{1, 256}, {1, 2}})->UseRealTime()->Unit(benchmark::kMillisecond);
  }
  if (minnow::simd::cpu_has(minnow::simd::Isa::amx)) {
    for (const auto& [name, fn] : std::vector<std::pair<const char*, void (*)(benchmark::State&)>>{
             {"infer/int8_u8_in_u8_out_vnni", without_amx<int8_u8>},
             {"infer/int8_f32_in_f32_out_vnni", without_amx<linear_f32<0>>},
             {"infer/int8_dynamic_f32_vnni", without_amx<int8_dynamic>}}) {
      benchmark::RegisterBenchmark(name, fn)->ArgsProduct({{1, 256}, {1, 2}})->UseRealTime()->Unit(benchmark::kMillisecond);
    }
    // Where the tiles start to pay (detail::kAmxMinRows): small batches on one thread, both ways.
    for (const auto& [name, fn] : std::vector<std::pair<const char*, void (*)(benchmark::State&)>>{
             {"infer/int8_u8_in_u8_out_small_batch", int8_u8}, {"infer/int8_u8_in_u8_out_small_batch_vnni", without_amx<int8_u8>}}) {
      benchmark::RegisterBenchmark(name, fn)->ArgsProduct({{1, 2, 3, 4, 8}, {1}})->UseRealTime()->Unit(benchmark::kMillisecond);
    }
  }
#if defined(__AVX512VNNI__)
  benchmark::RegisterBenchmark("infer/vnni_peak", vnni_peak<__m512i>)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("infer/vnni_peak_ymm", vnni_peak<__m256i>)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
#endif
}

}  // namespace

int main(int argc, char** argv) { return bench::run(argc, argv, register_all); }
