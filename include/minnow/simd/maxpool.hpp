#pragma once
/// @file simd/maxpool.hpp
/// @brief The 2×2, stride-2 max-pool row kernel: overloads on the simd::arch tags (scalar, AVX2 and
/// AVX-512 for float), chosen for the CPU at run time (simd/arch.hpp).
///
/// Every path follows PyTorch's row-major scan exactly: a value takes over when it is larger or NaN, so
/// the first of equal maxima wins and the last NaN wins. They first take the better of each row's pair,
/// then the better of the two rows, which gives the same winner as the scan. With `relu` the window is
/// that of ReLU(x) (only x < 0 becomes 0, so -0 and NaN stay, as in nn::ReLU), which spares a pass over
/// a convolution's output that only the pool reads. Only comparisons are involved, so every path gives
/// the same values and winners as the scalar twin.

#include <minnow/simd/arch.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace minnow::simd {

/// One output row: `out[j] = max(r0[2j], r0[2j+1], r1[2j], r1[2j+1])` for j < out_w; `arg[j]` is the
/// winner's index in the input plane, where r0 starts at `base` and rows are `width` apart. The scalar
/// twin, for any element type.
template <class T>
void maxpool_2x2_row(arch::scalar, const T* r0, const T* r1, index_t out_w, T* out, std::int32_t* arg, std::int32_t base,
                     std::int32_t width, bool relu = false) noexcept {
  const auto activation = [relu](T x) { return relu && x < T(0) ? T(0) : x; };
  for (index_t j = 0; j < out_w; ++j) {
    const T a = activation(r0[2 * j]), b = activation(r0[2 * j + 1]), c = activation(r1[2 * j]), d = activation(r1[2 * j + 1]);
    const bool t0 = b > a || b != b;
    const bool t1 = d > c || d != d;
    const T best0 = t0 ? b : a, best1 = t1 ? d : c;
    const bool rows = best1 > best0 || best1 != best1;
    out[j] = rows ? best1 : best0;
    arg[j] = base + 2 * static_cast<std::int32_t>(j) + (rows ? width + (t1 ? 1 : 0) : (t0 ? 1 : 0));
  }
}

#if MINNOW_X86_KERNELS
namespace detail {

// "b takes over from a" as an all-ones lane: b > a, or b is NaN.
[[nodiscard]] MINNOW_TARGET_AVX2 inline __m256 pool_takes_over(__m256 a, __m256 b) noexcept {
  return _mm256_or_ps(_mm256_cmp_ps(b, a, _CMP_GT_OQ), _mm256_cmp_ps(b, b, _CMP_UNORD_Q));
}

// The even and the odd elements of the 16 floats lo ‖ hi, each in order.
MINNOW_TARGET_AVX2 inline void pool_deinterleave(__m256 lo, __m256 hi, __m256& even, __m256& odd) noexcept {
  // shuffle_ps works within 128-bit lanes: [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6], then the 64-bit pairs are put in order.
  even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0))), _MM_SHUFFLE(3, 1, 2, 0)));
  odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1))), _MM_SHUFFLE(3, 1, 2, 0)));
}

}  // namespace detail

/// The row, 8 outputs per step; a partial last step uses masked loads and stores (rows of 14 or 7 outputs
/// are common), whose masked-off lanes are never read from memory.
MINNOW_TARGET_AVX2 inline void maxpool_2x2_row(arch::avx2, const float* r0, const float* r1, index_t out_w, float* out,
                                               std::int32_t* arg, std::int32_t base, std::int32_t width, bool relu = false) noexcept {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i even = _mm256_add_epi32(iota, iota);
  const __m256i row_step = _mm256_set1_epi32(width);
  for (index_t j = 0; j < out_w; j += 8) {
    const auto n = static_cast<int>(std::min<index_t>(8, out_w - j));
    __m256 a_lo, a_hi, c_lo, c_hi;
    __m256i out_mask = _mm256_set1_epi32(-1);
    if (n == 8) {
      a_lo = _mm256_loadu_ps(r0 + 2 * j), a_hi = _mm256_loadu_ps(r0 + 2 * j + 8);
      c_lo = _mm256_loadu_ps(r1 + 2 * j), c_hi = _mm256_loadu_ps(r1 + 2 * j + 8);
    } else {
      // Lane i of the low half holds input 2j + i (valid below 2n), of the high half 2j + 8 + i.
      const __m256i lo_mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(2 * n), iota);
      const __m256i hi_mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(2 * n - 8), iota);
      out_mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), iota);
      a_lo = _mm256_maskload_ps(r0 + 2 * j, lo_mask), a_hi = _mm256_maskload_ps(r0 + 2 * j + 8, hi_mask);
      c_lo = _mm256_maskload_ps(r1 + 2 * j, lo_mask), c_hi = _mm256_maskload_ps(r1 + 2 * j + 8, hi_mask);
    }
    if (relu) {
      // max(0, x) is x for NaN and -0 (maxps returns its second operand unless the first is larger).
      const __m256 zero = _mm256_setzero_ps();
      a_lo = _mm256_max_ps(zero, a_lo), a_hi = _mm256_max_ps(zero, a_hi);
      c_lo = _mm256_max_ps(zero, c_lo), c_hi = _mm256_max_ps(zero, c_hi);
    }
    __m256 a, b, c, d;
    detail::pool_deinterleave(a_lo, a_hi, a, b);
    detail::pool_deinterleave(c_lo, c_hi, c, d);
    const __m256 t0 = detail::pool_takes_over(a, b), t1 = detail::pool_takes_over(c, d);
    const __m256 best0 = _mm256_blendv_ps(a, b, t0), best1 = _mm256_blendv_ps(c, d, t1);
    const __m256 rows = detail::pool_takes_over(best0, best1);
    // The winners' indices: a true lane of t0 / t1 is -1, so subtracting it adds 1.
    const __m256i first = _mm256_add_epi32(even, _mm256_set1_epi32(base + 2 * static_cast<std::int32_t>(j)));
    const __m256i idx0 = _mm256_sub_epi32(first, _mm256_castps_si256(t0));
    const __m256i idx1 = _mm256_sub_epi32(_mm256_add_epi32(first, row_step), _mm256_castps_si256(t1));
    const __m256 value = _mm256_blendv_ps(best0, best1, rows);
    const __m256i winner = _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(idx0), _mm256_castsi256_ps(idx1), rows));
    if (n == 8) {
      _mm256_storeu_ps(out + j, value);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(arg + j), winner);
    } else {
      _mm256_maskstore_ps(out + j, out_mask, value);
      _mm256_maskstore_epi32(reinterpret_cast<int*>(arg + j), out_mask, winner);
    }
  }
}

/// The row, 16 outputs per step; masked loads and stores cover a partial last step.
MINNOW_TARGET_AVX512 inline void maxpool_2x2_row(arch::avx512, const float* r0, const float* r1, index_t out_w, float* out,
                                                 std::int32_t* arg, std::int32_t base, std::int32_t width, bool relu = false) noexcept {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i row_step = _mm512_set1_epi32(width);
  for (index_t j = 0; j < out_w; j += 16) {
    const index_t n = std::min<index_t>(16, out_w - j);
    const auto lo_mask = static_cast<__mmask16>(2 * n >= 16 ? 0xFFFF : (1u << (2 * n)) - 1);
    const auto hi_mask = static_cast<__mmask16>(2 * n > 16 ? (1u << (2 * n - 16)) - 1 : 0);
    const auto out_mask = static_cast<__mmask16>(n == 16 ? 0xFFFF : (1u << n) - 1);
    __m512 a_lo = _mm512_maskz_loadu_ps(lo_mask, r0 + 2 * j), a_hi = _mm512_maskz_loadu_ps(hi_mask, r0 + 2 * j + 16);
    __m512 c_lo = _mm512_maskz_loadu_ps(lo_mask, r1 + 2 * j), c_hi = _mm512_maskz_loadu_ps(hi_mask, r1 + 2 * j + 16);
    if (relu) {
      const __m512 zero = _mm512_setzero_ps();
      a_lo = _mm512_max_ps(zero, a_lo), a_hi = _mm512_max_ps(zero, a_hi);
      c_lo = _mm512_max_ps(zero, c_lo), c_hi = _mm512_max_ps(zero, c_hi);
    }
    const __m512 a = _mm512_permutex2var_ps(a_lo, even, a_hi), b = _mm512_permutex2var_ps(a_lo, odd, a_hi);
    const __m512 c = _mm512_permutex2var_ps(c_lo, even, c_hi), d = _mm512_permutex2var_ps(c_lo, odd, c_hi);
    const __mmask16 t0 = _mm512_cmp_ps_mask(b, a, _CMP_GT_OQ) | _mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q);
    const __mmask16 t1 = _mm512_cmp_ps_mask(d, c, _CMP_GT_OQ) | _mm512_cmp_ps_mask(d, d, _CMP_UNORD_Q);
    const __m512 best0 = _mm512_mask_blend_ps(t0, a, b), best1 = _mm512_mask_blend_ps(t1, c, d);
    const __mmask16 rows = _mm512_cmp_ps_mask(best1, best0, _CMP_GT_OQ) | _mm512_cmp_ps_mask(best1, best1, _CMP_UNORD_Q);
    _mm512_mask_storeu_ps(out + j, out_mask, _mm512_mask_blend_ps(rows, best0, best1));
    const __m512i first = _mm512_add_epi32(even, _mm512_set1_epi32(base + 2 * static_cast<std::int32_t>(j)));
    const __m512i idx0 = _mm512_mask_add_epi32(first, t0, first, one);
    const __m512i second = _mm512_add_epi32(first, row_step);
    const __m512i idx1 = _mm512_mask_add_epi32(second, t1, second, one);
    _mm512_mask_storeu_epi32(arg + j, out_mask, _mm512_mask_blend_epi32(rows, idx0, idx1));
  }
}
#endif

/// The row with the kernels of `Arch` (by default the CPU's widest; float only, other types run the
/// scalar twin).
/// @throws value_error (from with_arch) when `Arch` names a set this CPU lacks.
template <class T, class Arch = arch::automatic>
void maxpool_2x2_row(const T* r0, const T* r1, index_t out_w, T* out, std::int32_t* arg, std::int32_t base, std::int32_t width) {
  if constexpr (std::is_same_v<T, float>) {
    with_arch<Arch>("simd::maxpool_2x2_row", [&](auto tag) { maxpool_2x2_row(tag, r0, r1, out_w, out, arg, base, width); });
  } else {
    maxpool_2x2_row(arch::scalar{}, r0, r1, out_w, out, arg, base, width);
  }
}

/// All rows of one plane: `out` [out_h][out_w] and `arg` from `src` [≥ 2·out_h][width], winners indexed
/// in `src`: the scalar twin.
template <class T>
void maxpool_2x2_plane(arch::scalar, const T* src, index_t width, index_t out_h, index_t out_w, T* out, std::int32_t* arg,
                       bool relu = false) noexcept {
  for (index_t i = 0; i < out_h; ++i) {
    const T* r0 = src + 2 * i * width;
    maxpool_2x2_row(arch::scalar{}, r0, r0 + width, out_w, out + i * out_w, arg + i * out_w, static_cast<std::int32_t>(2 * i * width),
                    static_cast<std::int32_t>(width), relu);
  }
}

#if MINNOW_X86_KERNELS
/// The plane with AVX2 (the row kernel inlined into one loop).
MINNOW_TARGET_AVX2 inline void maxpool_2x2_plane(arch::avx2, const float* src, index_t width, index_t out_h, index_t out_w, float* out,
                                                 std::int32_t* arg, bool relu = false) noexcept {
  for (index_t i = 0; i < out_h; ++i) {
    const float* r0 = src + 2 * i * width;
    maxpool_2x2_row(arch::avx2{}, r0, r0 + width, out_w, out + i * out_w, arg + i * out_w, static_cast<std::int32_t>(2 * i * width),
                    static_cast<std::int32_t>(width), relu);
  }
}

/// The plane with AVX-512.
MINNOW_TARGET_AVX512 inline void maxpool_2x2_plane(arch::avx512, const float* src, index_t width, index_t out_h, index_t out_w,
                                                   float* out, std::int32_t* arg, bool relu = false) noexcept {
  for (index_t i = 0; i < out_h; ++i) {
    const float* r0 = src + 2 * i * width;
    maxpool_2x2_row(arch::avx512{}, r0, r0 + width, out_w, out + i * out_w, arg + i * out_w, static_cast<std::int32_t>(2 * i * width),
                    static_cast<std::int32_t>(width), relu);
  }
}
#endif

/// The plane with the kernels of `Arch` (by default the CPU's widest; float only, other types run the
/// scalar twin), chosen once for the plane.
/// @throws value_error (from with_arch) when `Arch` names a set this CPU lacks.
template <class T, class Arch = arch::automatic>
void maxpool_2x2_plane(const T* src, index_t width, index_t out_h, index_t out_w, T* out, std::int32_t* arg, bool relu = false) {
  if constexpr (std::is_same_v<T, float>) {
    with_arch<Arch>("simd::maxpool_2x2_plane", [&](auto tag) { maxpool_2x2_plane(tag, src, width, out_h, out_w, out, arg, relu); });
  } else {
    maxpool_2x2_plane(arch::scalar{}, src, width, out_h, out_w, out, arg, relu);
  }
}

}  // namespace minnow::simd
