#pragma once
/// @file infer/sparse_kernels.hpp
/// @brief The float sparse kernels, one overload per instruction set (simd/arch.hpp): the batch-1
/// products of the CSR, bitmap and sliced-ELL formats (infer/sparse.hpp), the bitmap's row decode, and
/// the kernel that adds a row's kept values times contiguous runs of the input (SparseLinear's batch-N
/// path and SparseConv2d).
///
/// The scalar overloads are the twins the tests compare every other path with. The sliced product, the
/// row decode and the run kernel compute every output with the same operations in the same order on
/// every path, so they agree bit for bit. The CSR and bitmap products sum a row in vector lanes and add
/// the lanes at the end, so their vector paths differ from the scalar loop by rounding.
///
/// Paths: AVX-512 everywhere; AVX2 for CSR (vgatherdps), bitmap (8-bit masks expanded through a
/// permutation table), sliced (a masked gather of x), the row decode (a compress table) and the runs.

#include <minnow/infer/lanes.hpp>
#include <minnow/simd/arch.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace minnow::infer {

namespace arch = simd::arch;

namespace detail {

/// The formats' buffers, as the kernels read them (infer/sparse.hpp describes the layouts).
struct CsrView {
  const std::int32_t* row_ptr;
  const std::int32_t* columns;
  const float* values;
};

struct BitmapView {
  const std::uint16_t* bits;  ///< `words` 16-bit words per row; bits past the last column are 0
  index_t words, cols;
  const std::int32_t* row_ptr;
  const float* values;        ///< kept values in row order, 16 floats of slack after the last
};

struct SlicedView {
  const float* values;          ///< [step][16 lanes]
  const std::uint8_t* lanes;    ///< [step][16 lanes]: column inside the window, 0xFF for padding
  const std::uint8_t* counts;   ///< [slice][window]: steps of the block
  const std::int32_t* slice_ptr;
  index_t cols, windows;
};

inline constexpr index_t kSliceLanes = 16;   ///< rows per slice
inline constexpr index_t kWindowCols = 64;   ///< columns per window
/// The run kernel may compute (and read the input for) up to the next multiple of this many outputs.
inline constexpr index_t kRunPad = 16;

// ---- helpers ----

/// For an 8-bit mask m: kExpand8[m][i] = number of m's bits below i (where the i-th lane's value sits
/// among the packed kept values), kCompress8[m][j] = lane of m's j-th set bit.
struct ByteTable {
  std::uint8_t lane[256][8];
};

constexpr ByteTable make_expand8() {
  ByteTable t{};
  for (unsigned m = 0; m < 256; ++m) {
    std::uint8_t k = 0;
    for (unsigned i = 0; i < 8; ++i) {
      t.lane[m][i] = k;
      k = static_cast<std::uint8_t>(k + ((m >> i) & 1u));
    }
  }
  return t;
}

constexpr ByteTable make_compress8() {
  ByteTable t{};
  for (unsigned m = 0; m < 256; ++m) {
    unsigned k = 0;
    for (unsigned i = 0; i < 8; ++i) {
      if ((m >> i) & 1u) t.lane[m][k++] = static_cast<std::uint8_t>(i);
    }
  }
  return t;
}

inline constexpr ByteTable kExpand8 = make_expand8();
inline constexpr ByteTable kCompress8 = make_compress8();

#if MINNOW_X86_KERNELS
/// The 8 lanes an 8-bit mask selects, filled in order from `packed` (vexpandps for AVX2): lane i holds
/// packed[number of m's bits below i] where bit i is set, 0 elsewhere.
[[nodiscard]] MINNOW_TARGET_AVX2 inline __m256 expand8(__m256 packed, unsigned m) noexcept {
  const __m256i from = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(kExpand8.lane[m])));
  const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i set = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(static_cast<int>(m)), bit), bit);
  return _mm256_and_ps(_mm256_permutevar8x32_ps(packed, from), _mm256_castsi256_ps(set));
}
#endif

// ---- CSR: y[r] = Σ values[k]·x[columns[k]] ----

inline void csr_gemv(arch::scalar, const CsrView& m, const float* x, float* y, index_t begin, index_t end) noexcept {
  for (index_t r = begin; r < end; ++r) {
    float sum = 0.0f;
    for (index_t k = m.row_ptr[r]; k < m.row_ptr[r + 1]; ++k) sum += m.values[k] * x[m.columns[k]];
    y[r] = sum;
  }
}

#if MINNOW_X86_KERNELS
MINNOW_TARGET_AVX2 inline void csr_gemv(arch::avx2, const CsrView& m, const float* x, float* y, index_t begin,
                                        index_t end) noexcept {
  const auto* c = reinterpret_cast<const int*>(m.columns);
  const float* v = m.values;
  for (index_t r = begin; r < end; ++r) {
    const index_t lo = m.row_ptr[r], hi = m.row_ptr[r + 1];
    // Two independent gathers per step, as in the AVX-512 kernel.
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    index_t k = lo;
    for (; k + 16 <= hi; k += 16) {
      const __m256i i0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + k));
      const __m256i i1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + k + 8));
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(v + k), _mm256_i32gather_ps(x, i0, 4), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(v + k + 8), _mm256_i32gather_ps(x, i1, 4), acc1);
    }
    if (k + 8 <= hi) {
      const __m256i idx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + k));
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(v + k), _mm256_i32gather_ps(x, idx, 4), acc0);
      k += 8;
    }
    if (k < hi) {
      const __m256i lanes = first_lanes8(hi - k);
      const __m256i idx = _mm256_maskload_epi32(c + k, lanes);
      const __m256 xs = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), x, idx, _mm256_castsi256_ps(lanes), 4);
      acc1 = _mm256_fmadd_ps(_mm256_maskload_ps(v + k, lanes), xs, acc1);
    }
    y[r] = reduce(_mm256_add_ps(acc0, acc1));
  }
}

MINNOW_TARGET_AVX512 inline void csr_gemv(arch::avx512, const CsrView& m, const float* x, float* y, index_t begin,
                                          index_t end) noexcept {
  const std::int32_t* c = m.columns;
  const float* v = m.values;
  for (index_t r = begin; r < end; ++r) {
    const index_t lo = m.row_ptr[r], hi = m.row_ptr[r + 1];
    // Two independent gathers per step keep more loads in flight than one accumulator chain allows.
    __m512 acc = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    index_t k = lo;
    for (; k + 32 <= hi; k += 32) {
      const __m512i i0 = _mm512_loadu_si512(c + k), i1 = _mm512_loadu_si512(c + k + 16);
      const __m512 x0 = _mm512_i32gather_ps(i0, x, 4), x1 = _mm512_i32gather_ps(i1, x, 4);
      acc = _mm512_fmadd_ps(_mm512_loadu_ps(v + k), x0, acc);
      acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(v + k + 16), x1, acc1);
    }
    acc = _mm512_add_ps(acc, acc1);
    for (; k + 16 <= hi; k += 16) {
      const __m512i idx = _mm512_loadu_si512(c + k);
      acc = _mm512_fmadd_ps(_mm512_loadu_ps(v + k), _mm512_i32gather_ps(idx, x, 4), acc);
    }
    if (k < hi) {
      const __mmask16 lanes = first_lanes(hi - k);
      const __m512i idx = _mm512_maskz_loadu_epi32(lanes, c + k);
      const __m512 xs = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lanes, idx, x, 4);
      acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(lanes, v + k), xs, acc);
    }
    y[r] = reduce(acc);
  }
}
#endif

// ---- bitmap: y[r] = Σ over the set bits of row r ----

inline void bitmap_gemv(arch::scalar, const BitmapView& m, const float* x, float* y, index_t begin, index_t end) noexcept {
  for (index_t r = begin; r < end; ++r) {
    const std::uint16_t* bits = m.bits + r * m.words;
    const float* v = m.values + m.row_ptr[r];
    float sum = 0.0f;
    for (index_t w = 0; w < m.words; ++w) {
      for (unsigned b = bits[w]; b != 0; b &= b - 1) sum += *v++ * x[w * 16 + std::countr_zero(b)];
    }
    y[r] = sum;
  }
}

#if MINNOW_X86_KERNELS
MINNOW_TARGET_AVX2 inline void bitmap_gemv(arch::avx2, const BitmapView& m, const float* x, float* y, index_t begin,
                                           index_t end) noexcept {
  const index_t full = m.cols / 16, tail = m.cols % 16;
  for (index_t r = begin; r < end; ++r) {
    const std::uint16_t* bits = m.bits + r * m.words;
    const float* v = m.values + m.row_ptr[r];
    // Each 16-bit word as two bytes, each expanded into 8 lanes; two words per step keep the value
    // pointer's chain at one add per 32 columns.
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    index_t w = 0;
    for (; w + 2 <= full; w += 2) {
      const unsigned b0 = bits[w], b1 = bits[w + 1];
      const int p0 = std::popcount(b0 & 0xFFu), p1 = p0 + std::popcount(b0 >> 8), p2 = p1 + std::popcount(b1 & 0xFFu);
      const __m256 e0 = expand8(_mm256_loadu_ps(v), b0 & 0xFFu), e1 = expand8(_mm256_loadu_ps(v + p0), b0 >> 8);
      const __m256 e2 = expand8(_mm256_loadu_ps(v + p1), b1 & 0xFFu), e3 = expand8(_mm256_loadu_ps(v + p2), b1 >> 8);
      v += p2 + std::popcount(b1 >> 8);
      const float* xw = x + w * 16;
      acc0 = _mm256_fmadd_ps(e0, _mm256_loadu_ps(xw), acc0);
      acc1 = _mm256_fmadd_ps(e1, _mm256_loadu_ps(xw + 8), acc1);
      acc2 = _mm256_fmadd_ps(e2, _mm256_loadu_ps(xw + 16), acc2);
      acc3 = _mm256_fmadd_ps(e3, _mm256_loadu_ps(xw + 24), acc3);
    }
    for (; w < full; ++w) {
      const unsigned b = bits[w];
      const int p0 = std::popcount(b & 0xFFu);
      acc0 = _mm256_fmadd_ps(expand8(_mm256_loadu_ps(v), b & 0xFFu), _mm256_loadu_ps(x + w * 16), acc0);
      acc1 = _mm256_fmadd_ps(expand8(_mm256_loadu_ps(v + p0), b >> 8), _mm256_loadu_ps(x + w * 16 + 8), acc1);
      v += std::popcount(b);
    }
    if (tail != 0) {
      // Bits past the last column are 0, so only x needs masked loads.
      const unsigned b = bits[full];
      const float* xw = x + full * 16;
      acc2 = _mm256_fmadd_ps(expand8(_mm256_loadu_ps(v), b & 0xFFu), load_first(xw, std::min<index_t>(tail, 8)), acc2);
      if (tail > 8) {
        acc3 = _mm256_fmadd_ps(expand8(_mm256_loadu_ps(v + std::popcount(b & 0xFFu)), b >> 8), load_first(xw + 8, tail - 8), acc3);
      }
    }
    y[r] = reduce(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
  }
}

MINNOW_TARGET_AVX512 inline void bitmap_gemv(arch::avx512, const BitmapView& m, const float* x, float* y, index_t begin,
                                             index_t end) noexcept {
  const index_t full = m.cols / 16, tail = m.cols % 16;
  for (index_t r = begin; r < end; ++r) {
    const std::uint16_t* bits = m.bits + r * m.words;
    const float* v = m.values + m.row_ptr[r];
    // Four words per step: their popcounts are independent, so the value pointer's loop-carried chain is
    // one add per 64 columns (advancing it word by word made the kernel latency-bound at high sparsity).
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    index_t w = 0;
    for (; w + 4 <= full; w += 4) {
      const unsigned b0 = bits[w], b1 = bits[w + 1], b2 = bits[w + 2], b3 = bits[w + 3];
      const int p0 = std::popcount(b0), p01 = p0 + std::popcount(b1), p012 = p01 + std::popcount(b2);
      const __m512 v0 = _mm512_maskz_expand_ps(static_cast<__mmask16>(b0), _mm512_loadu_ps(v));
      const __m512 v1 = _mm512_maskz_expand_ps(static_cast<__mmask16>(b1), _mm512_loadu_ps(v + p0));
      const __m512 v2 = _mm512_maskz_expand_ps(static_cast<__mmask16>(b2), _mm512_loadu_ps(v + p01));
      const __m512 v3 = _mm512_maskz_expand_ps(static_cast<__mmask16>(b3), _mm512_loadu_ps(v + p012));
      v += p012 + std::popcount(b3);
      acc0 = _mm512_fmadd_ps(v0, _mm512_loadu_ps(x + w * 16), acc0);
      acc1 = _mm512_fmadd_ps(v1, _mm512_loadu_ps(x + (w + 1) * 16), acc1);
      acc0 = _mm512_fmadd_ps(v2, _mm512_loadu_ps(x + (w + 2) * 16), acc0);
      acc1 = _mm512_fmadd_ps(v3, _mm512_loadu_ps(x + (w + 3) * 16), acc1);
    }
    for (; w < full; ++w) {
      const __m512 v0 = _mm512_maskz_expand_ps(static_cast<__mmask16>(bits[w]), _mm512_loadu_ps(v));
      v += std::popcount(bits[w]);
      acc0 = _mm512_fmadd_ps(v0, _mm512_loadu_ps(x + w * 16), acc0);
    }
    if (tail != 0) {
      // Bits past the last column are 0, so only x needs a masked load.
      const __m512 v0 = _mm512_maskz_expand_ps(static_cast<__mmask16>(bits[full]), _mm512_loadu_ps(v));
      acc1 = _mm512_fmadd_ps(v0, _mm512_maskz_loadu_ps(first_lanes(tail), x + full * 16), acc1);
    }
    y[r] = reduce(_mm512_add_ps(acc0, acc1));
  }
}
#endif

// ---- bitmap row decode: the columns of a row's set bits, in order ----

/// Writes the columns of the `words` words' set bits to out (room for words·16 + 16 entries: the vector
/// paths store whole registers); returns their number.
inline index_t bitmap_decode(arch::scalar, const std::uint16_t* bits, index_t words, std::int32_t* out) noexcept {
  index_t n = 0;
  for (index_t w = 0; w < words; ++w) {
    for (unsigned b = bits[w]; b != 0; b &= b - 1) out[n++] = static_cast<std::int32_t>(w * 16 + std::countr_zero(b));
  }
  return n;
}

#if MINNOW_X86_KERNELS
MINNOW_TARGET_AVX2 inline index_t bitmap_decode(arch::avx2, const std::uint16_t* bits, index_t words, std::int32_t* out) noexcept {
  // Per byte of a word, the lanes of its set bits from a table, offset by the byte's first column.
  index_t n = 0;
  for (index_t w = 0; w < words; ++w) {
    for (unsigned half = 0; half < 2; ++half) {
      const unsigned b = (bits[w] >> (8 * half)) & 0xFFu;
      const __m256i lanes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(kCompress8.lane[b])));
      const __m256i columns = _mm256_add_epi32(lanes, _mm256_set1_epi32(static_cast<int>(w * 16 + 8 * half)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + n), columns);
      n += std::popcount(b);
    }
  }
  return n;
}

MINNOW_TARGET_AVX512 inline index_t bitmap_decode(arch::avx512, const std::uint16_t* bits, index_t words,
                                                  std::int32_t* out) noexcept {
  // Compress the column numbers of each word's set bits in a register and store all 16 lanes: a
  // branch-free decode (a bit-scan loop mispredicts once per word).
  const __m512i lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  index_t n = 0;
  for (index_t w = 0; w < words; ++w) {
    const __m512i columns = _mm512_add_epi32(lanes, _mm512_set1_epi32(static_cast<int>(w * 16)));
    _mm512_storeu_si512(out + n, _mm512_maskz_compress_epi32(static_cast<__mmask16>(bits[w]), columns));
    n += std::popcount(bits[w]);
  }
  return n;
}
#endif

// ---- sliced ELL: lanes are rows ----
//
// Every path keeps two accumulators per row (steps 0, 2, 4, … of a window in the first, 1, 3, 5, … in the
// second, a window's odd last step in the first), fuses each multiply-add, and adds the two at the end:
// the same operations in the same order, so the paths agree bit for bit. A padding lane leaves its
// accumulator unchanged (an inf or NaN input does not reach rows that never read it, as in CSR).

/// y[r] for the rows [r0, r1) of slice s (whole slices are computed, only those rows stored).
inline void sliced_slice(arch::scalar, const SlicedView& m, index_t s, const float* x, float* y, index_t r0,
                         index_t r1) noexcept {
  const std::size_t first = static_cast<std::size_t>(m.slice_ptr[s]);
  const float* v = m.values + first * kSliceLanes;
  const std::uint8_t* lane = m.lanes + first * kSliceLanes;
  const std::uint8_t* count = m.counts + s * m.windows;
  float acc[2][kSliceLanes] = {};
  const auto step = [](float* a, const float* vs, const std::uint8_t* ls, const float* xw) {
    for (index_t l = 0; l < kSliceLanes; ++l) {
      if (ls[l] < 0x80) a[l] = std::fma(vs[l], xw[ls[l]], a[l]);
    }
  };
  for (index_t w = 0; w < m.windows; ++w) {
    const float* xw = x + w * kWindowCols;
    const index_t n = count[w];
    index_t j = 0;
    for (; j + 2 <= n; j += 2, v += 2 * kSliceLanes, lane += 2 * kSliceLanes) {
      step(acc[0], v, lane, xw);
      step(acc[1], v + kSliceLanes, lane + kSliceLanes, xw);
    }
    if (j < n) {
      step(acc[0], v, lane, xw);
      v += kSliceLanes;
      lane += kSliceLanes;
    }
  }
  for (index_t r = r0; r < r1; ++r) {
    const index_t l = r - s * kSliceLanes;
    y[r] = acc[0][l] + acc[1][l];
  }
}

#if MINNOW_X86_KERNELS
/// One step for 8 rows: x[column] by a gather masked to the kept lanes, a blend keeps padding lanes.
MINNOW_TARGET_AVX2 inline void sliced_step(const float* xw, const float* vs, const std::uint8_t* ls, __m256& acc) noexcept {
  const __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(ls)));
  const __m256 kept = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(0x80), idx));
  const __m256 xs = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), xw, idx, kept, 4);
  acc = _mm256_blendv_ps(acc, _mm256_fmadd_ps(_mm256_loadu_ps(vs), xs, acc), kept);
}

MINNOW_TARGET_AVX2 inline void sliced_slice(arch::avx2, const SlicedView& m, index_t s, const float* x, float* y, index_t r0,
                                            index_t r1) noexcept {
  const std::size_t first = static_cast<std::size_t>(m.slice_ptr[s]);
  const float* v = m.values + first * kSliceLanes;
  const std::uint8_t* lane = m.lanes + first * kSliceLanes;
  const std::uint8_t* count = m.counts + s * m.windows;
  // [half of the slice][accumulator]
  __m256 acc[2][2] = {{_mm256_setzero_ps(), _mm256_setzero_ps()}, {_mm256_setzero_ps(), _mm256_setzero_ps()}};
  for (index_t w = 0; w < m.windows; ++w) {
    const float* xw = x + w * kWindowCols;
    const index_t n = count[w];
    index_t j = 0;
    for (; j + 2 <= n; j += 2, v += 2 * kSliceLanes, lane += 2 * kSliceLanes) {
      sliced_step(xw, v, lane, acc[0][0]);
      sliced_step(xw, v + 8, lane + 8, acc[1][0]);
      sliced_step(xw, v + kSliceLanes, lane + kSliceLanes, acc[0][1]);
      sliced_step(xw, v + kSliceLanes + 8, lane + kSliceLanes + 8, acc[1][1]);
    }
    if (j < n) {
      sliced_step(xw, v, lane, acc[0][0]);
      sliced_step(xw, v + 8, lane + 8, acc[1][0]);
      v += kSliceLanes;
      lane += kSliceLanes;
    }
  }
  alignas(32) float out[kSliceLanes];
  _mm256_store_ps(out, _mm256_add_ps(acc[0][0], acc[0][1]));
  _mm256_store_ps(out + 8, _mm256_add_ps(acc[1][0], acc[1][1]));
  std::copy(out + (r0 - s * kSliceLanes), out + (r1 - s * kSliceLanes), y + r0);
}

/// One step for 16 rows: x[column] from the window's four registers (two vpermt2ps and a blend on bit 5
/// of the column); a masked FMA keeps padding lanes.
MINNOW_TARGET_AVX512 inline void sliced_step(const __m512 (&xw)[4], const float* vs, const std::uint8_t* ls, __m512& acc) noexcept {
  const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ls)));
  const __mmask16 high = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(32));
  const __mmask16 kept = _mm512_testn_epi32_mask(idx, _mm512_set1_epi32(0x80));
  const __m512 xs = _mm512_mask_blend_ps(high, _mm512_permutex2var_ps(xw[0], idx, xw[1]), _mm512_permutex2var_ps(xw[2], idx, xw[3]));
  acc = _mm512_mask3_fmadd_ps(_mm512_loadu_ps(vs), xs, acc, kept);
}

MINNOW_TARGET_AVX512 inline void sliced_slice(arch::avx512, const SlicedView& m, index_t s, const float* x, float* y,
                                              index_t r0, index_t r1) noexcept {
  const std::size_t first = static_cast<std::size_t>(m.slice_ptr[s]);
  const float* v = m.values + first * kSliceLanes;
  const std::uint8_t* lane = m.lanes + first * kSliceLanes;
  const std::uint8_t* count = m.counts + s * m.windows;
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  for (index_t w = 0; w < m.windows; ++w) {
    const float* xp = x + w * kWindowCols;
    __m512 xw[4];
    if (w + 1 < m.windows || m.cols % kWindowCols == 0) {
      for (int i = 0; i < 4; ++i) xw[i] = _mm512_loadu_ps(xp + i * 16);
    } else {  // the last, partial window must not read x past its end
      const index_t left = m.cols - w * kWindowCols;
      for (int i = 0; i < 4; ++i) xw[i] = _mm512_maskz_loadu_ps(first_lanes(std::clamp<index_t>(left - i * 16, 0, 16)), xp + i * 16);
    }
    const index_t n = count[w];
    index_t j = 0;
    for (; j + 2 <= n; j += 2, v += 2 * kSliceLanes, lane += 2 * kSliceLanes) {  // two accumulators: the FMA latency is off the critical path
      sliced_step(xw, v, lane, acc0);
      sliced_step(xw, v + kSliceLanes, lane + kSliceLanes, acc1);
    }
    if (j < n) {
      sliced_step(xw, v, lane, acc0);
      v += kSliceLanes;
      lane += kSliceLanes;
    }
  }
  alignas(64) float out[kSliceLanes];
  _mm512_store_ps(out, _mm512_add_ps(acc0, acc1));
  std::copy(out + (r0 - s * kSliceLanes), out + (r1 - s * kSliceLanes), y + r0);
}
#endif

/// y[r] for r in [begin, end), slice by slice.
template <class Arch>
void sliced_gemv(Arch tag, const SlicedView& m, const float* x, float* y, index_t begin, index_t end) noexcept {
  if (begin >= end) return;
  for (index_t s = begin / kSliceLanes; s * kSliceLanes < end; ++s) {
    sliced_slice(tag, m, s, x, y, std::max(begin, s * kSliceLanes), std::min(end, s * kSliceLanes + kSliceLanes));
  }
}

// ---- runs: out[i] = Σ_k values[k]·base[offsets[k] + i] ----
//
// Every output is its own chain `acc = fma(values[k], base[offsets[k] + i], acc)` over k in order from
// acc = 0, on every path, so the paths agree bit for bit and the result does not depend on how the
// outputs are split into register blocks. The vector paths compute whole vectors: up to
// ⌈width / kRunPad⌉·kRunPad outputs are written, and base read as far past each offset.

inline void row_times_runs(arch::scalar, const float* values, const index_t* offsets, index_t count, const float* base,
                           index_t width, float* out) noexcept {
  for (index_t i0 = 0; i0 < width; i0 += kRunPad) {
    const index_t n = std::min(kRunPad, width - i0);
    float acc[kRunPad] = {};
    for (index_t k = 0; k < count; ++k) {
      const float v = values[k];
      const float* p = base + offsets[k] + i0;
      for (index_t i = 0; i < n; ++i) acc[i] = std::fma(v, p[i], acc[i]);
    }
    std::copy(acc, acc + n, out + i0);
  }
}

#if MINNOW_X86_KERNELS
/// NV vectors of outputs: one broadcast and NV FMAs per kept value, NV accumulators in registers.
template <int NV>
MINNOW_TARGET_AVX2 void runs_block(arch::avx2, const float* values, const index_t* offsets, index_t count, const float* base,
                                   float* out) noexcept {
  __m256 acc[NV];
#pragma GCC unroll 16
  for (int i = 0; i < NV; ++i) acc[i] = _mm256_setzero_ps();
  for (index_t k = 0; k < count; ++k) {
    const __m256 v = _mm256_broadcast_ss(values + k);
    const float* p = base + offsets[k];
#pragma GCC unroll 16
    for (int i = 0; i < NV; ++i) acc[i] = _mm256_fmadd_ps(v, _mm256_loadu_ps(p + 8 * i), acc[i]);
  }
#pragma GCC unroll 16
  for (int i = 0; i < NV; ++i) _mm256_storeu_ps(out + 8 * i, acc[i]);
}

template <int NV>
MINNOW_TARGET_AVX512 void runs_block(arch::avx512, const float* values, const index_t* offsets, index_t count, const float* base,
                                     float* out) noexcept {
  __m512 acc[NV];
#pragma GCC unroll 16
  for (int i = 0; i < NV; ++i) acc[i] = _mm512_setzero_ps();
  for (index_t k = 0; k < count; ++k) {
    const __m512 v = _mm512_set1_ps(values[k]);
    const float* p = base + offsets[k];
#pragma GCC unroll 16
    for (int i = 0; i < NV; ++i) acc[i] = _mm512_fmadd_ps(v, _mm512_loadu_ps(p + 16 * i), acc[i]);
  }
#pragma GCC unroll 16
  for (int i = 0; i < NV; ++i) _mm512_storeu_ps(out + 16 * i, acc[i]);
}

/// Register blocks of up to `Blocks` vectors of `Lanes` floats (AVX2: 12 of the 16 registers accumulate;
/// AVX-512: 16 of 32), the last one as wide as the outputs left need.
template <class Arch, int Lanes, int Blocks>
void runs_in_blocks(const float* values, const index_t* offsets, index_t count, const float* base, index_t width,
                    float* out) noexcept {
  using Block = void (*)(Arch, const float*, const index_t*, index_t, const float*, float*) noexcept;
  static constexpr auto blocks = []<std::size_t... I>(std::index_sequence<I...>) {
    return std::array<Block, sizeof...(I)>{&runs_block<static_cast<int>(I) + 1>...};
  }(std::make_index_sequence<Blocks>{});
  for (index_t i0 = 0; i0 < width; i0 += Lanes * Blocks) {
    const index_t vectors = std::min<index_t>(Blocks, (width - i0 + Lanes - 1) / Lanes);
    blocks[static_cast<std::size_t>(vectors - 1)](Arch{}, values, offsets, count, base + i0, out + i0);
  }
}

inline void row_times_runs(arch::avx2, const float* values, const index_t* offsets, index_t count, const float* base,
                           index_t width, float* out) noexcept {
  runs_in_blocks<arch::avx2, 8, 12>(values, offsets, count, base, width, out);
}

inline void row_times_runs(arch::avx512, const float* values, const index_t* offsets, index_t count, const float* base,
                           index_t width, float* out) noexcept {
  runs_in_blocks<arch::avx512, 16, 16>(values, offsets, count, base, width, out);
}
#endif

}  // namespace detail

}  // namespace minnow::infer
