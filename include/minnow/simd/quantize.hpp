#pragma once
/// @file simd/quantize.hpp
/// @brief The elementwise kernels of fake quantization and the range observers' min/max sweep, one
/// overload per instruction set (simd/arch.hpp). quant/fake_quantize.hpp gives the formula's meaning and
/// quant/observers.hpp the NaN / Inf rules; both call these through simd::dispatch, once per array or
/// channel run. The scalar overloads are the twins every other path is tested against bit for bit.
///
/// Fake quantization of an element x with the constants of its tensor or channel:
/// @code
///   q  = zero_point + rint(x · inv)          // rint: to nearest, ties to even
///   y  = (clamp(q, lo, hi) − zero_point) · scale
///   in = lo ≤ q ≤ hi                         // the STE mask: false for NaN
/// @endcode
/// Each operation is rounded on its own and none is a multiply-add, so FMA contraction changes nothing;
/// the clamp keeps a NaN q (and so y = NaN). Every path therefore gives the same bits. Kernels:
/// `fake_quant_forward` (y), `fake_quant_forward_mask` (y and the byte mask), `fake_quant_backward`
/// (`dx = in ? dy : 0`) and `ste_mask_backward` (`dx = mask ? dy : 0`). The vector overloads are for
/// float; double tensors run the scalar twin.
///
/// `stream`: the output goes past the caches. The vector paths then write whole 64-byte-aligned vectors
/// with non-temporal stores (after an ordinary head up to the output's next cache line) and end with a
/// fence; the scalar twin ignores it.
///
/// `minmax`: the min and max of an array, NaN skipped (empty — min > max — when only NaN or nothing).
/// A zero result is reported as +0 on every path: which of −0 and +0 a sweep keeps depends on the order
/// it meets them, and that order depends on the vector width.
///
/// Paths: AVX-512 16 floats per vector, with masked head and tail; AVX2 8 floats per vector, head and tail
/// through the scalar twin.

#include <minnow/simd/arch.hpp>
#include <minnow/tensor.hpp>

#include <cmath>
#include <cstdint>
#include <limits>

namespace minnow::simd::detail {

// ---- shared by every path ----

/// The constants of the fake-quant formula for one tensor or channel, in the element type.
template <class T>
struct FqConstants {
  T inv, scale, zero_point, lo, hi;
};

/// q = zero_point + rint(x · inv), before the clamp.
template <class T>
[[nodiscard]] inline T unclamped(T x, const FqConstants<T>& c) noexcept {
  return c.zero_point + std::nearbyint(x * c.inv);
}

/// (clamp(q) − zero_point) · scale; a NaN q stays NaN (the comparisons are false).
template <class T>
[[nodiscard]] inline T dequantize_clamped(T q, const FqConstants<T>& c) noexcept {
  const T clamped = q < c.lo ? c.lo : (q > c.hi ? c.hi : q);
  return (clamped - c.zero_point) * c.scale;
}

/// Whether q lies on the grid: the STE mask.
template <class T>
[[nodiscard]] inline bool inside(T q, const FqConstants<T>& c) noexcept {
  return q >= c.lo && q <= c.hi;
}

/// Running min and max that ignore NaN; empty while `min > max`.
struct MinMaxAccumulator {
  float min = std::numeric_limits<float>::infinity();
  float max = -std::numeric_limits<float>::infinity();

  void add(float lo, float hi) noexcept {
    if (lo < min) min = lo;  // false for NaN: NaN is skipped
    if (hi > max) max = hi;
  }
  void add(const MinMaxAccumulator& other) noexcept { add(other.min, other.max); }
  [[nodiscard]] bool empty() const noexcept { return !(min <= max); }
};

/// The accumulator with a zero min or max made +0 (see the file comment).
[[nodiscard]] inline MinMaxAccumulator positive_zeros(MinMaxAccumulator acc) noexcept {
  if (acc.min == 0.0f) acc.min = 0.0f;
  if (acc.max == 0.0f) acc.max = 0.0f;
  return acc;
}

/// How a vector pass over n outputs at `destination` stores them: elements [0, head) with ordinary
/// stores up to the next cache line, then, when `stream`, whole aligned vectors with non-temporal ones.
struct StorePlan {
  index_t head = 0;
  bool stream = false;
};

[[nodiscard]] inline StorePlan plan_stores(const void* destination, index_t n, bool stream) noexcept {
  if (!stream || n < 1024) return {};  // a fence per short run would cost more than streaming saves
  const auto address = reinterpret_cast<std::uintptr_t>(destination);
  if (address % sizeof(float) != 0) return {};  // never aligned
  const auto head = static_cast<index_t>((64 - address % 64) % 64 / sizeof(float));
  return head < n ? StorePlan{head, true} : StorePlan{};
}

// ---- scalar twins ----

template <class T>
void fake_quant_forward(arch::scalar, const T* x, T* y, index_t n, const FqConstants<T>& c, bool /*stream*/) noexcept {
  for (index_t i = 0; i < n; ++i) y[i] = dequantize_clamped(unclamped(x[i], c), c);
}

template <class T>
void fake_quant_forward_mask(arch::scalar, const T* x, T* y, std::uint8_t* mask, index_t n, const FqConstants<T>& c,
                             bool /*stream*/) noexcept {
  for (index_t i = 0; i < n; ++i) {
    const T q = unclamped(x[i], c);
    y[i] = dequantize_clamped(q, c);
    mask[i] = inside(q, c) ? 1 : 0;
  }
}

template <class T>
void fake_quant_backward(arch::scalar, const T* x, const T* dy, T* dx, index_t n, const FqConstants<T>& c,
                         bool /*stream*/) noexcept {
  for (index_t i = 0; i < n; ++i) dx[i] = inside(unclamped(x[i], c), c) ? dy[i] : T(0);
}

template <class T>
void ste_mask_backward(arch::scalar, const std::uint8_t* mask, const T* dy, T* dx, index_t n,
                       bool /*stream*/) noexcept {
  for (index_t i = 0; i < n; ++i) dx[i] = mask[i] != 0 ? dy[i] : T(0);
}

[[nodiscard]] inline MinMaxAccumulator minmax(arch::scalar, const float* p, index_t n) noexcept {
  MinMaxAccumulator acc;
  for (index_t i = 0; i < n; ++i) acc.add(p[i], p[i]);
  return positive_zeros(acc);
}

#if MINNOW_X86_KERNELS

// ---- AVX2: 8 floats per vector; head and tail through the scalar twins ----

/// The formula on 8 floats. min/max return their second operand when either is NaN: with q second, the
/// clamp keeps a NaN q, as the scalar comparisons do.
struct Fq8 {
  __m256 inv, scale, zero_point, lo, hi;

  MINNOW_TARGET_AVX2 explicit Fq8(const FqConstants<float>& c) noexcept
      : inv(_mm256_set1_ps(c.inv)), scale(_mm256_set1_ps(c.scale)), zero_point(_mm256_set1_ps(c.zero_point)),
        lo(_mm256_set1_ps(c.lo)), hi(_mm256_set1_ps(c.hi)) {}

  [[nodiscard]] MINNOW_TARGET_AVX2 __m256 q(__m256 x) const noexcept {
    const __m256 r = _mm256_round_ps(_mm256_mul_ps(x, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm256_add_ps(zero_point, r);
  }
  [[nodiscard]] MINNOW_TARGET_AVX2 __m256 y(__m256 q) const noexcept {
    const __m256 clamped = _mm256_min_ps(hi, _mm256_max_ps(lo, q));
    return _mm256_mul_ps(_mm256_sub_ps(clamped, zero_point), scale);
  }
  /// All ones where lo ≤ q ≤ hi (ordered comparisons: zero for NaN).
  [[nodiscard]] MINNOW_TARGET_AVX2 __m256 in(__m256 q) const noexcept {
    return _mm256_and_ps(_mm256_cmp_ps(q, lo, _CMP_GE_OQ), _mm256_cmp_ps(q, hi, _CMP_LE_OQ));
  }
};

MINNOW_TARGET_AVX2 inline void store8(float* p, __m256 v, bool stream) noexcept {
  if (stream) _mm256_stream_ps(p, v);
  else _mm256_storeu_ps(p, v);
}

MINNOW_TARGET_AVX2 inline void fake_quant_forward(arch::avx2, const float* x, float* y, index_t n,
                                                  const FqConstants<float>& c, bool stream) noexcept {
  const Fq8 f(c);
  const StorePlan plan = plan_stores(y, n, stream);
  fake_quant_forward(arch::scalar{}, x, y, plan.head, c, false);
  index_t i = plan.head;
  for (; i + 8 <= n; i += 8) store8(y + i, f.y(f.q(_mm256_loadu_ps(x + i))), plan.stream);
  if (plan.stream) _mm_sfence();
  fake_quant_forward(arch::scalar{}, x + i, y + i, n - i, c, false);
}

MINNOW_TARGET_AVX2 inline void fake_quant_forward_mask(arch::avx2, const float* x, float* y, std::uint8_t* mask,
                                                       index_t n, const FqConstants<float>& c, bool stream) noexcept {
  const Fq8 f(c);
  const StorePlan plan = plan_stores(y, n, stream);
  fake_quant_forward_mask(arch::scalar{}, x, y, mask, plan.head, c, false);
  index_t i = plan.head;
  for (; i + 8 <= n; i += 8) {
    const __m256 q = f.q(_mm256_loadu_ps(x + i));
    store8(y + i, f.y(q), plan.stream);
    // The lanes' sign bits as 0 / 1, narrowed 32 → 16 → 8 bits: eight mask bytes.
    const __m256i bits = _mm256_srli_epi32(_mm256_castps_si256(f.in(q)), 31);
    const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(bits), _mm256_extracti128_si256(bits, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(mask + i), _mm_packus_epi16(words, words));
  }
  if (plan.stream) _mm_sfence();
  fake_quant_forward_mask(arch::scalar{}, x + i, y + i, mask + i, n - i, c, false);
}

MINNOW_TARGET_AVX2 inline void fake_quant_backward(arch::avx2, const float* x, const float* dy, float* dx, index_t n,
                                                   const FqConstants<float>& c, bool stream) noexcept {
  const Fq8 f(c);
  const StorePlan plan = plan_stores(dx, n, stream);
  fake_quant_backward(arch::scalar{}, x, dy, dx, plan.head, c, false);
  index_t i = plan.head;
  for (; i + 8 <= n; i += 8) {
    store8(dx + i, _mm256_and_ps(f.in(f.q(_mm256_loadu_ps(x + i))), _mm256_loadu_ps(dy + i)), plan.stream);
  }
  if (plan.stream) _mm_sfence();
  fake_quant_backward(arch::scalar{}, x + i, dy + i, dx + i, n - i, c, false);
}

MINNOW_TARGET_AVX2 inline void ste_mask_backward(arch::avx2, const std::uint8_t* mask, const float* dy, float* dx,
                                                 index_t n, bool stream) noexcept {
  const StorePlan plan = plan_stores(dx, n, stream);
  ste_mask_backward(arch::scalar{}, mask, dy, dx, plan.head, false);
  index_t i = plan.head;
  for (; i + 8 <= n; i += 8) {
    const __m256i m = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(mask + i)));
    const __m256 zero = _mm256_castsi256_ps(_mm256_cmpeq_epi32(m, _mm256_setzero_si256()));
    store8(dx + i, _mm256_andnot_ps(zero, _mm256_loadu_ps(dy + i)), plan.stream);
  }
  if (plan.stream) _mm_sfence();
  ste_mask_backward(arch::scalar{}, mask + i, dy + i, dx + i, n - i, false);
}

[[nodiscard]] MINNOW_TARGET_AVX2 inline float reduce_min8(__m256 v) noexcept {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_min_ss(m, _mm_shuffle_ps(m, m, 1)));
}

[[nodiscard]] MINNOW_TARGET_AVX2 inline float reduce_max8(__m256 v) noexcept {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
}

/// min(a, acc) returns acc when a is NaN: with the accumulator second a NaN value is skipped, and the
/// accumulators (never NaN) survive.
[[nodiscard]] MINNOW_TARGET_AVX2 inline MinMaxAccumulator minmax(arch::avx2, const float* p, index_t n) noexcept {
  __m256 lo0 = _mm256_set1_ps(std::numeric_limits<float>::infinity()), lo1 = lo0;
  __m256 hi0 = _mm256_set1_ps(-std::numeric_limits<float>::infinity()), hi1 = hi0;
  index_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = _mm256_loadu_ps(p + i), b = _mm256_loadu_ps(p + i + 8);
    lo0 = _mm256_min_ps(a, lo0);
    hi0 = _mm256_max_ps(a, hi0);
    lo1 = _mm256_min_ps(b, lo1);
    hi1 = _mm256_max_ps(b, hi1);
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 a = _mm256_loadu_ps(p + i);
    lo0 = _mm256_min_ps(a, lo0);
    hi0 = _mm256_max_ps(a, hi0);
  }
  MinMaxAccumulator acc = minmax(arch::scalar{}, p + i, n - i);
  acc.add(reduce_min8(_mm256_min_ps(lo0, lo1)), reduce_max8(_mm256_max_ps(hi0, hi1)));
  return positive_zeros(acc);
}

// ---- AVX-512: 16 floats per vector; masked head and tail ----

/// The formula on 16 floats; `in` gets the STE mask. Same NaN handling as Fq8.
struct Fq16 {
  __m512 inv, scale, zero_point, lo, hi;

  MINNOW_TARGET_AVX512 explicit Fq16(const FqConstants<float>& c) noexcept
      : inv(_mm512_set1_ps(c.inv)), scale(_mm512_set1_ps(c.scale)), zero_point(_mm512_set1_ps(c.zero_point)),
        lo(_mm512_set1_ps(c.lo)), hi(_mm512_set1_ps(c.hi)) {}

  [[nodiscard]] MINNOW_TARGET_AVX512 __m512 q(__m512 x) const noexcept {
    const __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(x, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_add_ps(zero_point, r);
  }
  [[nodiscard]] MINNOW_TARGET_AVX512 __m512 y(__m512 q) const noexcept {
    const __m512 clamped = _mm512_min_ps(hi, _mm512_max_ps(lo, q));
    return _mm512_mul_ps(_mm512_sub_ps(clamped, zero_point), scale);
  }
  [[nodiscard]] MINNOW_TARGET_AVX512 __mmask16 in(__m512 q) const noexcept {
    return _mm512_cmp_ps_mask(q, lo, _CMP_GE_OQ) & _mm512_cmp_ps_mask(q, hi, _CMP_LE_OQ);
  }
};

[[nodiscard]] inline __mmask16 lanes16(index_t remaining) noexcept {
  return static_cast<__mmask16>(remaining >= 16 ? 0xFFFF : (1u << remaining) - 1);
}

MINNOW_TARGET_AVX512 inline void store16(float* p, __m512 v, __mmask16 k, bool stream) noexcept {
  if (k == 0xFFFF) {
    if (stream) _mm512_stream_ps(p, v);
    else _mm512_storeu_ps(p, v);
  } else {
    _mm512_mask_storeu_ps(p, k, v);
  }
}

/// Runs `step(i, lanes, stream)` over [0, n) in vectors of 16: the plan's masked head, whole vectors (which
/// the step may stream), then a masked tail. Steps are function objects with an AVX-512 call operator.
template <class Step>
MINNOW_TARGET_AVX512 void sweep16(const void* destination, index_t n, bool stream, const Step& step) noexcept {
  const StorePlan plan = plan_stores(destination, n, stream);
  index_t i = 0;
  if (plan.head > 0) {
    step(i, lanes16(plan.head), false);
    i = plan.head;
  }
  for (; i + 16 <= n; i += 16) step(i, static_cast<__mmask16>(0xFFFF), plan.stream);
  if (i < n) step(i, lanes16(n - i), false);
  if (plan.stream) _mm_sfence();
}

struct Forward16 {
  Fq16 f;
  const float* x;
  float* y;
  MINNOW_TARGET_AVX512 void operator()(index_t i, __mmask16 k, bool s) const noexcept {
    store16(y + i, f.y(f.q(_mm512_maskz_loadu_ps(k, x + i))), k, s);
  }
};

struct ForwardMask16 {
  Fq16 f;
  const float* x;
  float* y;
  std::uint8_t* mask;
  MINNOW_TARGET_AVX512 void operator()(index_t i, __mmask16 k, bool s) const noexcept {
    const __m512 q = f.q(_mm512_maskz_loadu_ps(k, x + i));
    store16(y + i, f.y(q), k, s);
    _mm_mask_storeu_epi8(mask + i, k, _mm_maskz_mov_epi8(f.in(q), _mm_set1_epi8(1)));
  }
};

struct Backward16 {
  Fq16 f;
  const float* x;
  const float* dy;
  float* dx;
  MINNOW_TARGET_AVX512 void operator()(index_t i, __mmask16 k, bool s) const noexcept {
    const __mmask16 in = f.in(f.q(_mm512_maskz_loadu_ps(k, x + i)));
    store16(dx + i, _mm512_maskz_loadu_ps(in & k, dy + i), k, s);
  }
};

struct MaskBackward16 {
  const std::uint8_t* mask;
  const float* dy;
  float* dx;
  MINNOW_TARGET_AVX512 void operator()(index_t i, __mmask16 k, bool s) const noexcept {
    const __mmask16 keep = _mm_mask_test_epi8_mask(k, _mm_maskz_loadu_epi8(k, mask + i), _mm_set1_epi8(-1));
    store16(dx + i, _mm512_maskz_loadu_ps(keep, dy + i), k, s);
  }
};

MINNOW_TARGET_AVX512 inline void fake_quant_forward(arch::avx512, const float* x, float* y, index_t n,
                                                    const FqConstants<float>& c, bool stream) noexcept {
  sweep16(y, n, stream, Forward16{Fq16(c), x, y});
}

MINNOW_TARGET_AVX512 inline void fake_quant_forward_mask(arch::avx512, const float* x, float* y, std::uint8_t* mask,
                                                         index_t n, const FqConstants<float>& c, bool stream) noexcept {
  sweep16(y, n, stream, ForwardMask16{Fq16(c), x, y, mask});
}

MINNOW_TARGET_AVX512 inline void fake_quant_backward(arch::avx512, const float* x, const float* dy, float* dx,
                                                     index_t n, const FqConstants<float>& c, bool stream) noexcept {
  sweep16(dx, n, stream, Backward16{Fq16(c), x, dy, dx});
}

MINNOW_TARGET_AVX512 inline void ste_mask_backward(arch::avx512, const std::uint8_t* mask, const float* dy, float* dx,
                                                   index_t n, bool stream) noexcept {
  sweep16(dx, n, stream, MaskBackward16{mask, dy, dx});
}

/// Two instructions per 16 floats; NaN skipped as in the AVX2 sweep.
[[nodiscard]] MINNOW_TARGET_AVX512 inline MinMaxAccumulator minmax(arch::avx512, const float* p, index_t n) noexcept {
  __m512 lo0 = _mm512_set1_ps(std::numeric_limits<float>::infinity()), lo1 = lo0;
  __m512 hi0 = _mm512_set1_ps(-std::numeric_limits<float>::infinity()), hi1 = hi0;
  index_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 a = _mm512_loadu_ps(p + i), b = _mm512_loadu_ps(p + i + 16);
    lo0 = _mm512_min_ps(a, lo0);
    hi0 = _mm512_max_ps(a, hi0);
    lo1 = _mm512_min_ps(b, lo1);
    hi1 = _mm512_max_ps(b, hi1);
  }
  for (; i < n; i += 16) {
    const __mmask16 k = lanes16(n - i);
    const __m512 a = _mm512_maskz_loadu_ps(k, p + i);
    lo0 = _mm512_mask_min_ps(lo0, k, a, lo0);
    hi0 = _mm512_mask_max_ps(hi0, k, a, hi0);
  }
  MinMaxAccumulator acc;
  acc.add(_mm512_reduce_min_ps(_mm512_min_ps(lo0, lo1)), _mm512_reduce_max_ps(_mm512_max_ps(hi0, hi1)));
  return positive_zeros(acc);
}

#endif  // MINNOW_X86_KERNELS

}  // namespace minnow::simd::detail
