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
//   infer/peak_<path>/<threads>                 register-only loop of each int8 path's multiply-add step, 12
//                                               independent chains: the rate ceiling of the kernels
//                                               built on it (GOP/s = 2 · products / s), registered where the
//                                               CPU runs the path:
//                                                 avx512_vnni  vpdpbusd zmm (64 byte products)
//                                                 avx2_vnni    vpdpbusd ymm (32)
//                                                 avx2         vpmaddwd + vpaddd ymm on int16 pairs (16; the
//                                                              exact AVX2 step, as vpmaddubsw saturates)
//                                                 avx2_saturating  vpmaddubsw + vpmaddwd + vpaddd (32, int16
//                                                              saturation: oneDNN's and ONNX Runtime's
//                                                              AVX2 step, which minnow does not take)
// On Zen 5, vpdpbusd zmm starts once per cycle and ymm twice (the
// same products per cycle); on the Xeon with AMX both start twice per cycle (docs/benchmarks.md).
#include "bench_support.hpp"

#include <minnow/infer/quantized_linear.hpp>
#include <minnow/quant/mappings.hpp>
#include <minnow/quant/observers.hpp>
#include <minnow/simd/arch.hpp>
#include <minnow/nn/linear.hpp>

#include <random>
#include <tuple>
#include <vector>


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

#if MINNOW_X86_KERNELS
constexpr int kPeakChains = 12;
constexpr long kPeakIters = 1 << 20;

// kPeakChains accumulators (registers 0–11, operands in 12, the AVX2 steps' products in 13) taking kPeakIters
// steps each, then vzeroupper (the compiler does not see the asm dirty the upper halves). The
// loop is asm: the compiler's code for the same intrinsics moves registers or stores the accumulators
// (measured). 12 chains at two instructions per cycle cover a 6-cycle latency. The register values do not
// matter: integer instructions take the same time on any.
MINNOW_TARGET_AVX512_VNNI void peak_chains(minnow::simd::arch::avx512_vnni) noexcept {
  long n = kPeakIters;
  asm volatile(
      "1:\n\t"
      "vpdpbusd %%zmm12, %%zmm12, %%zmm0\n\t"
      "vpdpbusd %%zmm12, %%zmm12, %%zmm1\n\t"
      "vpdpbusd %%zmm12, %%zmm12, %%zmm2\n\t"
      "vpdpbusd %%zmm12, %%zmm12, %%zmm3\n\t"
      "vpdpbusd %%zmm12, %%zmm12, %%zmm4\n\t"
      "vpdpbusd %%zmm12, %%zmm12, %%zmm5\n\t"
      "vpdpbusd %%zmm12, %%zmm12, %%zmm6\n\t"
      "vpdpbusd %%zmm12, %%zmm12, %%zmm7\n\t"
      "vpdpbusd %%zmm12, %%zmm12, %%zmm8\n\t"
      "vpdpbusd %%zmm12, %%zmm12, %%zmm9\n\t"
      "vpdpbusd %%zmm12, %%zmm12, %%zmm10\n\t"
      "vpdpbusd %%zmm12, %%zmm12, %%zmm11\n\t"
      "dec %0\n\t"
      "jnz 1b\n\t"
      "vzeroupper"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc");
}
MINNOW_TARGET_AVX2_VNNI void peak_chains(minnow::simd::arch::avx2_vnni) noexcept {
  long n = kPeakIters;
  asm volatile(
      "1:\n\t"
      "%{vex%} vpdpbusd %%ymm12, %%ymm12, %%ymm0\n\t"
      "%{vex%} vpdpbusd %%ymm12, %%ymm12, %%ymm1\n\t"
      "%{vex%} vpdpbusd %%ymm12, %%ymm12, %%ymm2\n\t"
      "%{vex%} vpdpbusd %%ymm12, %%ymm12, %%ymm3\n\t"
      "%{vex%} vpdpbusd %%ymm12, %%ymm12, %%ymm4\n\t"
      "%{vex%} vpdpbusd %%ymm12, %%ymm12, %%ymm5\n\t"
      "%{vex%} vpdpbusd %%ymm12, %%ymm12, %%ymm6\n\t"
      "%{vex%} vpdpbusd %%ymm12, %%ymm12, %%ymm7\n\t"
      "%{vex%} vpdpbusd %%ymm12, %%ymm12, %%ymm8\n\t"
      "%{vex%} vpdpbusd %%ymm12, %%ymm12, %%ymm9\n\t"
      "%{vex%} vpdpbusd %%ymm12, %%ymm12, %%ymm10\n\t"
      "%{vex%} vpdpbusd %%ymm12, %%ymm12, %%ymm11\n\t"
      "dec %0\n\t"
      "jnz 1b\n\t"
      "vzeroupper"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc");
}
MINNOW_TARGET_AVX2 void peak_chains(minnow::simd::arch::avx2) noexcept {
  long n = kPeakIters;
  asm volatile(
      "1:\n\t"
      "vpmaddwd %%ymm12, %%ymm12, %%ymm13\n\tvpaddd %%ymm13, %%ymm0, %%ymm0\n\t"
      "vpmaddwd %%ymm12, %%ymm12, %%ymm13\n\tvpaddd %%ymm13, %%ymm1, %%ymm1\n\t"
      "vpmaddwd %%ymm12, %%ymm12, %%ymm13\n\tvpaddd %%ymm13, %%ymm2, %%ymm2\n\t"
      "vpmaddwd %%ymm12, %%ymm12, %%ymm13\n\tvpaddd %%ymm13, %%ymm3, %%ymm3\n\t"
      "vpmaddwd %%ymm12, %%ymm12, %%ymm13\n\tvpaddd %%ymm13, %%ymm4, %%ymm4\n\t"
      "vpmaddwd %%ymm12, %%ymm12, %%ymm13\n\tvpaddd %%ymm13, %%ymm5, %%ymm5\n\t"
      "vpmaddwd %%ymm12, %%ymm12, %%ymm13\n\tvpaddd %%ymm13, %%ymm6, %%ymm6\n\t"
      "vpmaddwd %%ymm12, %%ymm12, %%ymm13\n\tvpaddd %%ymm13, %%ymm7, %%ymm7\n\t"
      "vpmaddwd %%ymm12, %%ymm12, %%ymm13\n\tvpaddd %%ymm13, %%ymm8, %%ymm8\n\t"
      "vpmaddwd %%ymm12, %%ymm12, %%ymm13\n\tvpaddd %%ymm13, %%ymm9, %%ymm9\n\t"
      "vpmaddwd %%ymm12, %%ymm12, %%ymm13\n\tvpaddd %%ymm13, %%ymm10, %%ymm10\n\t"
      "vpmaddwd %%ymm12, %%ymm12, %%ymm13\n\tvpaddd %%ymm13, %%ymm11, %%ymm11\n\t"
      "dec %0\n\t"
      "jnz 1b\n\t"
      "vzeroupper"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc");
}
// The step minnow does not use, for comparison: vpmaddubsw (32 products, saturating to int16) + vpmaddwd
// (with the int16 "ones" in 14; any value times the same) + vpaddd, the AVX2 step of oneDNN and ONNX Runtime.
struct SaturatingAvx2 {};
MINNOW_TARGET_AVX2 void peak_chains(SaturatingAvx2) noexcept {
  long n = kPeakIters;
  asm volatile(
      "1:\n\t"
      "vpmaddubsw %%ymm12, %%ymm12, %%ymm13\n\tvpmaddwd %%ymm14, %%ymm13, %%ymm13\n\tvpaddd %%ymm13, %%ymm0, %%ymm0\n\t"
      "vpmaddubsw %%ymm12, %%ymm12, %%ymm13\n\tvpmaddwd %%ymm14, %%ymm13, %%ymm13\n\tvpaddd %%ymm13, %%ymm1, %%ymm1\n\t"
      "vpmaddubsw %%ymm12, %%ymm12, %%ymm13\n\tvpmaddwd %%ymm14, %%ymm13, %%ymm13\n\tvpaddd %%ymm13, %%ymm2, %%ymm2\n\t"
      "vpmaddubsw %%ymm12, %%ymm12, %%ymm13\n\tvpmaddwd %%ymm14, %%ymm13, %%ymm13\n\tvpaddd %%ymm13, %%ymm3, %%ymm3\n\t"
      "vpmaddubsw %%ymm12, %%ymm12, %%ymm13\n\tvpmaddwd %%ymm14, %%ymm13, %%ymm13\n\tvpaddd %%ymm13, %%ymm4, %%ymm4\n\t"
      "vpmaddubsw %%ymm12, %%ymm12, %%ymm13\n\tvpmaddwd %%ymm14, %%ymm13, %%ymm13\n\tvpaddd %%ymm13, %%ymm5, %%ymm5\n\t"
      "vpmaddubsw %%ymm12, %%ymm12, %%ymm13\n\tvpmaddwd %%ymm14, %%ymm13, %%ymm13\n\tvpaddd %%ymm13, %%ymm6, %%ymm6\n\t"
      "vpmaddubsw %%ymm12, %%ymm12, %%ymm13\n\tvpmaddwd %%ymm14, %%ymm13, %%ymm13\n\tvpaddd %%ymm13, %%ymm7, %%ymm7\n\t"
      "vpmaddubsw %%ymm12, %%ymm12, %%ymm13\n\tvpmaddwd %%ymm14, %%ymm13, %%ymm13\n\tvpaddd %%ymm13, %%ymm8, %%ymm8\n\t"
      "vpmaddubsw %%ymm12, %%ymm12, %%ymm13\n\tvpmaddwd %%ymm14, %%ymm13, %%ymm13\n\tvpaddd %%ymm13, %%ymm9, %%ymm9\n\t"
      "vpmaddubsw %%ymm12, %%ymm12, %%ymm13\n\tvpmaddwd %%ymm14, %%ymm13, %%ymm13\n\tvpaddd %%ymm13, %%ymm10, %%ymm10\n\t"
      "vpmaddubsw %%ymm12, %%ymm12, %%ymm13\n\tvpmaddwd %%ymm14, %%ymm13, %%ymm13\n\tvpaddd %%ymm13, %%ymm11, %%ymm11\n\t"
      "dec %0\n\t"
      "jnz 1b\n\t"
      "vzeroupper"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc");
}

// Byte products per step of each path.
constexpr double peak_products(minnow::simd::arch::avx512_vnni) { return 64; }
constexpr double peak_products(minnow::simd::arch::avx2_vnni) { return 32; }
constexpr double peak_products(minnow::simd::arch::avx2) { return 16; }
constexpr double peak_products(SaturatingAvx2) { return 32; }

template <class Arch>
void int8_peak(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  for (auto _ : state) {
    minnow::detail::parallel_for(threads, threads, [](long, int) { peak_chains(Arch{}); });
  }
  state.counters["GOPs"] = benchmark::Counter(2.0 * peak_products(Arch{}) * kPeakChains * kPeakIters * threads *
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
#if MINNOW_X86_KERNELS
  using namespace minnow::simd;
  for (const auto& [isa, name, fn] : std::vector<std::tuple<Isa, const char*, void (*)(benchmark::State&)>>{
           {Isa::avx512_vnni, "infer/peak_avx512_vnni", int8_peak<arch::avx512_vnni>},
           {Isa::avx2_vnni, "infer/peak_avx2_vnni", int8_peak<arch::avx2_vnni>},
           {Isa::avx2, "infer/peak_avx2", int8_peak<arch::avx2>},
           {Isa::avx2, "infer/peak_avx2_saturating", int8_peak<SaturatingAvx2>}}) {
    if (cpu_has(isa)) benchmark::RegisterBenchmark(name, fn)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
  }
#endif
}

}  // namespace

int main(int argc, char** argv) { return bench::run(argc, argv, register_all); }
