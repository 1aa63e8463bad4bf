#pragma once
/// @file infer/sparse_int8_kernels.hpp
/// @brief The batch-1 kernel of the bitmap + int8 format (infer/sparse_int8.hpp), one overload per
/// instruction set (simd/arch.hpp): `y[r] = scale_r · Σ_c q[r, c]·x[c]` with float x and float sums.
///
/// Each path widens the int8 values to float (exactly) and places them in the lanes of their columns:
/// AVX-512 with vexpandps per 16-bit word, AVX2 per byte of it through the bitmap's permutation table
/// (infer/sparse_kernels.hpp). The vector paths sum a row in lanes and add the lanes at the end, so they
/// differ from the scalar twin by rounding.

#include <minnow/infer/sparse_kernels.hpp>
#include <minnow/simd/arch.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <bit>
#include <cstdint>

namespace minnow::infer::detail {

/// The bitmap + int8 buffers (infer/sparse_int8.hpp describes them).
struct BitmapInt8View {
  const std::uint16_t* bits;  ///< `words` 16-bit words per row; bits past the last column are 0
  index_t words, cols;
  const std::int32_t* row_ptr;
  const std::int8_t* values;  ///< kept values in row order, 16 bytes of slack after the last
  const float* scales;        ///< one per row
};

inline void bitmap_int8_gemv(arch::scalar, const BitmapInt8View& m, const float* x, float* y, index_t begin,
                             index_t end) noexcept {
  for (index_t r = begin; r < end; ++r) {
    const std::uint16_t* bits = m.bits + r * m.words;
    const std::int8_t* v = m.values + m.row_ptr[r];
    float sum = 0.0f;
    for (index_t w = 0; w < m.words; ++w) {
      for (unsigned b = bits[w]; b != 0; b &= b - 1) sum += static_cast<float>(*v++) * x[w * 16 + std::countr_zero(b)];
    }
    y[r] = sum * m.scales[r];
  }
}

#if MINNOW_X86_KERNELS
/// The 8 int8 values at v as float.
[[nodiscard]] MINNOW_TARGET_AVX2 inline __m256 widen8(const std::int8_t* v) noexcept {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(v))));
}

MINNOW_TARGET_AVX2 inline void bitmap_int8_gemv(arch::avx2, const BitmapInt8View& m, const float* x, float* y, index_t begin,
                                                index_t end) noexcept {
  const index_t full = m.cols / 16, tail = m.cols % 16;
  for (index_t r = begin; r < end; ++r) {
    const std::uint16_t* bits = m.bits + r * m.words;
    const std::int8_t* v = m.values + m.row_ptr[r];
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (index_t w = 0; w < full; ++w) {
      const unsigned b = bits[w];
      const int p0 = std::popcount(b & 0xFFu);
      acc0 = _mm256_fmadd_ps(expand8(widen8(v), b & 0xFFu), _mm256_loadu_ps(x + w * 16), acc0);
      acc1 = _mm256_fmadd_ps(expand8(widen8(v + p0), b >> 8), _mm256_loadu_ps(x + w * 16 + 8), acc1);
      v += std::popcount(b);
    }
    if (tail != 0) {
      // Bits past the last column are 0, so only x needs masked loads.
      const unsigned b = bits[full];
      const float* xw = x + full * 16;
      acc0 = _mm256_fmadd_ps(expand8(widen8(v), b & 0xFFu), load_first(xw, std::min<index_t>(tail, 8)), acc0);
      if (tail > 8) acc1 = _mm256_fmadd_ps(expand8(widen8(v + std::popcount(b & 0xFFu)), b >> 8), load_first(xw + 8, tail - 8), acc1);
    }
    y[r] = reduce(_mm256_add_ps(acc0, acc1)) * m.scales[r];
  }
}

/// Word w's 16 lanes: the next 16 int8 values widened to float (exact), then vexpandps places the kept ones
/// in their lanes (faster on Zen 5 than vpexpandb on the int8 lanes, see docs/experiments.md); advances v.
[[nodiscard]] MINNOW_TARGET_AVX512 inline __m512 expand_int8_word(const std::int8_t*& v, unsigned bits) noexcept {
  const __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v))));
  v += std::popcount(bits);
  return _mm512_maskz_expand_ps(static_cast<__mmask16>(bits), q);
}

MINNOW_TARGET_AVX512 inline void bitmap_int8_gemv(arch::avx512, const BitmapInt8View& m, const float* x, float* y,
                                                  index_t begin, index_t end) noexcept {
  const index_t full = m.cols / 16, tail = m.cols % 16;
  for (index_t r = begin; r < end; ++r) {
    const std::uint16_t* bits = m.bits + r * m.words;
    const std::int8_t* v = m.values + m.row_ptr[r];
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    index_t w = 0;
    for (; w + 2 <= full; w += 2) {
      const __m512 e0 = expand_int8_word(v, bits[w]);
      const __m512 e1 = expand_int8_word(v, bits[w + 1]);
      acc0 = _mm512_fmadd_ps(e0, _mm512_loadu_ps(x + w * 16), acc0);
      acc1 = _mm512_fmadd_ps(e1, _mm512_loadu_ps(x + (w + 1) * 16), acc1);
    }
    if (w < full) acc0 = _mm512_fmadd_ps(expand_int8_word(v, bits[w]), _mm512_loadu_ps(x + w * 16), acc0);
    if (tail != 0) {
      acc1 = _mm512_fmadd_ps(expand_int8_word(v, bits[full]), _mm512_maskz_loadu_ps(first_lanes(tail), x + full * 16), acc1);
    }
    y[r] = reduce(_mm512_add_ps(acc0, acc1)) * m.scales[r];
  }
}
#endif

}  // namespace minnow::infer::detail
