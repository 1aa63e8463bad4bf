#pragma once
/// @file simd/maxpool.hpp
/// @brief The 2×2, stride-2 max-pool row kernel: AVX-512 when the compiler targets it, scalar otherwise.
///
/// Both versions follow PyTorch's row-major scan exactly: a value takes over when it is larger or NaN,
/// so the first of equal maxima wins and the last NaN wins. They first take the better of each row's
/// pair, then the better of the two rows, which gives the same winner as the scan. The scalar version is
/// the oracle the SIMD one is tested against.

#include <minnow/tensor.hpp>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace minnow::simd {

/// One output row: `out[j] = max(r0[2j], r0[2j+1], r1[2j], r1[2j+1])` for j < out_w; `arg[j]` is the
/// winner's index in the input plane, where r0 starts at `base` and rows are `width` apart.
template <class T>
void maxpool_2x2_row_scalar(const T* r0, const T* r1, index_t out_w, T* out, std::int32_t* arg, std::int32_t base,
                            std::int32_t width) noexcept {
  for (index_t j = 0; j < out_w; ++j) {
    const T a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
    const bool t0 = b > a || b != b;
    const bool t1 = d > c || d != d;
    const T best0 = t0 ? b : a, best1 = t1 ? d : c;
    const bool rows = best1 > best0 || best1 != best1;
    out[j] = rows ? best1 : best0;
    arg[j] = base + 2 * static_cast<std::int32_t>(j) + (rows ? width + (t1 ? 1 : 0) : (t0 ? 1 : 0));
  }
}

/// The same row, 16 outputs per step with AVX-512 for float (the scalar kernel for other types and ISAs).
template <class T>
void maxpool_2x2_row(const T* r0, const T* r1, index_t out_w, T* out, std::int32_t* arg, std::int32_t base,
                     std::int32_t width) noexcept {
  [[maybe_unused]] index_t j = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i row_step = _mm512_set1_epi32(width);
    // Masked loads and stores cover a partial last vector (rows of 14 or 7 outputs are common), and
    // masked-off lanes are never read from memory.
    for (; j < out_w; j += 16) {
      const index_t n = std::min<index_t>(16, out_w - j);
      const auto lo_mask = static_cast<__mmask16>(2 * n >= 16 ? 0xFFFF : (1u << (2 * n)) - 1);
      const auto hi_mask = static_cast<__mmask16>(2 * n > 16 ? (1u << (2 * n - 16)) - 1 : 0);
      const auto out_mask = static_cast<__mmask16>(n == 16 ? 0xFFFF : (1u << n) - 1);
      const __m512 a_lo = _mm512_maskz_loadu_ps(lo_mask, r0 + 2 * j), a_hi = _mm512_maskz_loadu_ps(hi_mask, r0 + 2 * j + 16);
      const __m512 c_lo = _mm512_maskz_loadu_ps(lo_mask, r1 + 2 * j), c_hi = _mm512_maskz_loadu_ps(hi_mask, r1 + 2 * j + 16);
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
    return;
  }
#endif
  maxpool_2x2_row_scalar(r0 + 2 * j, r1 + 2 * j, out_w - j, out + j, arg + j, base + 2 * static_cast<std::int32_t>(j), width);
}

}  // namespace minnow::simd
