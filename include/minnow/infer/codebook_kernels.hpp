#pragma once
/// @file infer/codebook_kernels.hpp
/// @brief The codebook-index kernels of CodebookLinear (infer/codebook_weights.hpp), one overload per
/// instruction set (simd/arch.hpp): decode a row of indices into float weights, and the dot product of a
/// row with x decoded on the fly.
///
/// The vector paths turn indices into weights with register permutes of the centroid table instead of a
/// gather: AVX-512 for every table (16 to 256 entries: vpermt2ps on pairs of registers, then blends on
/// the index's higher bits), AVX2 for the 16-entry tables of 4-bit indices (two vpermps and a blend). An
/// AVX2 permute tree for 8-bit tables would need up to 32 registers of 16, so AVX2 gathers 8-bit rows'
/// weights from the table. A decode is a table lookup on every path, so decoded rows agree bit for bit; the dot
/// products sum in vector lanes and add the lanes at the end, so they differ from the scalar twin by
/// rounding.

#include <minnow/infer/lanes.hpp>
#include <minnow/simd/arch.hpp>
#include <minnow/tensor.hpp>

#include <cstdint>
#include <cstring>

namespace minnow::infer {

namespace arch = simd::arch;

namespace detail {

/// One row of a CodebookWeights: its packed indices and its centroid table.
struct CodebookRow {
  const std::uint8_t* packed;  ///< ⌈cols·bits / 8⌉ bytes; at 4 bits element 2b is the low nibble of byte b
  int bits;                    ///< 4 or 8
  index_t cols;
  const float* table;          ///< `entries` floats, zero-padded to a power-of-two number of 16-float registers
  index_t entries;
};

[[nodiscard]] inline std::uint8_t codebook_index(const CodebookRow& row, index_t k) noexcept {
  if (row.bits == 8) return row.packed[k];
  const std::uint8_t byte = row.packed[k / 2];
  return static_cast<std::uint8_t>(k % 2 == 0 ? byte & 0x0F : byte >> 4);
}

/// dst[k] = table[index k] for k in [from, cols).
inline void codebook_decode_tail(const CodebookRow& row, index_t from, float* dst) noexcept {
  for (index_t k = from; k < row.cols; ++k) dst[k] = row.table[codebook_index(row, k)];
}

/// Σ table[index k]·x[k] for k in [from, cols), added to sum in order.
[[nodiscard]] inline float codebook_dot_tail(const CodebookRow& row, index_t from, const float* x, float sum) noexcept {
  for (index_t k = from; k < row.cols; ++k) sum += row.table[codebook_index(row, k)] * x[k];
  return sum;
}

inline void codebook_decode(arch::scalar, const CodebookRow& row, float* dst) noexcept { codebook_decode_tail(row, 0, dst); }

[[nodiscard]] inline float codebook_dot(arch::scalar, const CodebookRow& row, const float* x) noexcept {
  return codebook_dot_tail(row, 0, x, 0.0f);
}

#if MINNOW_X86_KERNELS
// ---- AVX2: 4-bit rows from a 16-entry table in two registers, 8-bit rows gathered from the table ----

/// 8 indices of a 4-bit row from element k (k even), widened to int32.
[[nodiscard]] MINNOW_TARGET_AVX2 inline __m256i nibbles8(const std::uint8_t* q, index_t k) noexcept {
  std::int32_t four;
  std::memcpy(&four, q + k / 2, 4);
  const __m128i bytes = _mm_cvtsi32_si128(four), low4 = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(bytes, low4), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low4);
  return _mm256_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi));
}

/// table[index] for 8 indices below 16: vpermps in each half of the table, a blend on bit 3.
[[nodiscard]] MINNOW_TARGET_AVX2 inline __m256 lookup16(__m256i index, __m256 t0, __m256 t1) noexcept {
  return _mm256_blendv_ps(_mm256_permutevar8x32_ps(t0, index), _mm256_permutevar8x32_ps(t1, index),
                          _mm256_castsi256_ps(_mm256_slli_epi32(index, 28)));
}

/// The 8 weights of the row from element k (k even). 4 bits: permutes of the table held in t0, t1. 8 bits:
/// a permute tree for up to 256 entries would need up to 32 registers of 16, so vgatherdps reads the table
/// (1 KiB at most, in L1).
template <int Bits>
[[nodiscard]] MINNOW_TARGET_AVX2 inline __m256 weights8(const CodebookRow& row, index_t k, [[maybe_unused]] __m256 t0,
                                                        [[maybe_unused]] __m256 t1) noexcept {
  if constexpr (Bits == 4) {
    return lookup16(nibbles8(row.packed, k), t0, t1);
  } else {
    const __m256i index = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row.packed + k)));
    return _mm256_i32gather_ps(row.table, index, 4);
  }
}

template <int Bits>
MINNOW_TARGET_AVX2 void decode_avx2(const CodebookRow& row, __m256 t0, __m256 t1, float* dst) noexcept {
  index_t k = 0;
  for (; k + 8 <= row.cols; k += 8) _mm256_storeu_ps(dst + k, weights8<Bits>(row, k, t0, t1));
  codebook_decode_tail(row, k, dst);
}

template <int Bits>
[[nodiscard]] MINNOW_TARGET_AVX2 float dot_avx2(const CodebookRow& row, __m256 t0, __m256 t1, const float* x) noexcept {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  index_t k = 0;
  for (; k + 16 <= row.cols; k += 16) {
    acc0 = _mm256_fmadd_ps(weights8<Bits>(row, k, t0, t1), _mm256_loadu_ps(x + k), acc0);
    acc1 = _mm256_fmadd_ps(weights8<Bits>(row, k + 8, t0, t1), _mm256_loadu_ps(x + k + 8), acc1);
  }
  if (k + 8 <= row.cols) {
    acc0 = _mm256_fmadd_ps(weights8<Bits>(row, k, t0, t1), _mm256_loadu_ps(x + k), acc0);
    k += 8;
  }
  return codebook_dot_tail(row, k, x, reduce(_mm256_add_ps(acc0, acc1)));
}

MINNOW_TARGET_AVX2 inline void codebook_decode(arch::avx2, const CodebookRow& row, float* dst) noexcept {
  if (row.bits == 8) return decode_avx2<8>(row, _mm256_setzero_ps(), _mm256_setzero_ps(), dst);
  if (row.entries < 16) return codebook_decode(arch::scalar{}, row, dst);
  decode_avx2<4>(row, _mm256_loadu_ps(row.table), _mm256_loadu_ps(row.table + 8), dst);
}

[[nodiscard]] MINNOW_TARGET_AVX2 inline float codebook_dot(arch::avx2, const CodebookRow& row, const float* x) noexcept {
  if (row.bits == 8) return dot_avx2<8>(row, _mm256_setzero_ps(), _mm256_setzero_ps(), x);
  if (row.entries < 16) return codebook_dot(arch::scalar{}, row, x);
  return dot_avx2<4>(row, _mm256_loadu_ps(row.table), _mm256_loadu_ps(row.table + 8), x);
}

// ---- AVX-512: a table of E entries in E/16 registers ----
//
// 16 indices become 16 weights with table permutes, no gather (a 512-bit gather costs ~25 cycles here; a
// permute of a register-resident table one): pairs of registers are picked by vpermt2ps on the low 5
// bits, then blends on bits 5, 6, 7 pick among the pairs.

template <int Registers>
[[nodiscard]] MINNOW_TARGET_AVX512 inline __m512 lookup(__m512i index, const __m512* table) noexcept {
  if constexpr (Registers == 1) {
    return _mm512_permutexvar_ps(index, table[0]);
  } else {
    __m512 level[Registers / 2];
    for (int i = 0; i < Registers / 2; ++i) level[i] = _mm512_permutex2var_ps(table[2 * i], index, table[2 * i + 1]);
    int count = Registers / 2, bit = 5;
    for (; count > 1; count /= 2, ++bit) {
      const __mmask16 high = _mm512_test_epi32_mask(index, _mm512_set1_epi32(1 << bit));
      for (int i = 0; i < count / 2; ++i) level[i] = _mm512_mask_blend_ps(high, level[2 * i], level[2 * i + 1]);
    }
    return level[0];
  }
}

/// 16 indices of the row from element k (k even), widened to int32.
[[nodiscard]] MINNOW_TARGET_AVX512 inline __m512i indices16(const CodebookRow& row, index_t k) noexcept {
  if (row.bits == 8) return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row.packed + k)));
  const __m128i low4 = _mm_set1_epi8(0x0F);
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row.packed + k / 2));
  const __m128i lo = _mm_and_si128(bytes, low4), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low4);
  return _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi));
}

/// The row's whole groups of 16 weights, decoded into dst; returns where the tail starts.
template <int Registers>
MINNOW_TARGET_AVX512 index_t decode_16s(const CodebookRow& row, float* dst) noexcept {
  __m512 table[Registers];
  for (int i = 0; i < Registers; ++i) table[i] = _mm512_loadu_ps(row.table + 16 * i);
  index_t k = 0;
  for (; k + 16 <= row.cols; k += 16) _mm512_storeu_ps(dst + k, lookup<Registers>(indices16(row, k), table));
  return k;
}

/// Σ weight·x over the row's whole groups of 16 (two accumulators hide the FMA latency); `k` returns
/// where the tail starts.
template <int Registers>
MINNOW_TARGET_AVX512 float dot_16s(const CodebookRow& row, const float* x, index_t& k) noexcept {
  __m512 table[Registers];
  for (int i = 0; i < Registers; ++i) table[i] = _mm512_loadu_ps(row.table + 16 * i);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  k = 0;
  for (; k + 32 <= row.cols; k += 32) {
    acc0 = _mm512_fmadd_ps(lookup<Registers>(indices16(row, k), table), _mm512_loadu_ps(x + k), acc0);
    acc1 = _mm512_fmadd_ps(lookup<Registers>(indices16(row, k + 16), table), _mm512_loadu_ps(x + k + 16), acc1);
  }
  if (k + 16 <= row.cols) {
    acc0 = _mm512_fmadd_ps(lookup<Registers>(indices16(row, k), table), _mm512_loadu_ps(x + k), acc0);
    k += 16;
  }
  return reduce(_mm512_add_ps(acc0, acc1));
}

MINNOW_TARGET_AVX512 inline void codebook_decode(arch::avx512, const CodebookRow& row, float* dst) noexcept {
  index_t k = 0;
  switch (row.entries) {
    case 16: k = decode_16s<1>(row, dst); break;
    case 32: k = decode_16s<2>(row, dst); break;
    case 64: k = decode_16s<4>(row, dst); break;
    case 128: k = decode_16s<8>(row, dst); break;
    default: k = decode_16s<16>(row, dst); break;
  }
  codebook_decode_tail(row, k, dst);
}

[[nodiscard]] MINNOW_TARGET_AVX512 inline float codebook_dot(arch::avx512, const CodebookRow& row, const float* x) noexcept {
  index_t k = 0;
  float sum = 0.0f;
  switch (row.entries) {
    case 16: sum = dot_16s<1>(row, x, k); break;
    case 32: sum = dot_16s<2>(row, x, k); break;
    case 64: sum = dot_16s<4>(row, x, k); break;
    case 128: sum = dot_16s<8>(row, x, k); break;
    default: sum = dot_16s<16>(row, x, k); break;
  }
  return codebook_dot_tail(row, k, x, sum);
}
#endif

}  // namespace detail

}  // namespace minnow::infer
