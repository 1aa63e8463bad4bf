#pragma once
/// @file infer/qgemm_kernels.hpp
/// @brief The int8 GEMM's kernels, one overload per instruction set (simd/arch.hpp): the 8 × 48 micro
/// kernel (scalar, AVX2, AVX-VNNI, AVX-512 VNNI, NEON, NEON dot product), the output stage, activation
/// quantization, the 8-row panel transpose and the int4 unpack.
/// infer/qgemm.hpp describes the computation and the layouts and calls these; the scalar overloads are
/// the twins every other path is tested against bit for bit.

#include <minnow/infer/int_tensor.hpp>
#include <minnow/quant/fake_quantize.hpp>
#include <minnow/simd/arch.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace minnow::infer {

namespace arch = simd::arch;

namespace detail {
inline constexpr index_t kMR = 8;           ///< rows of a register tile / activation panel
inline constexpr index_t kNR = 48;          ///< output channels of a register tile / weight panel
inline constexpr index_t kStep = kNR * 4;   ///< bytes of one weight panel per group of 4 k
inline constexpr index_t kAStep = kMR * 4;  ///< bytes of one activation panel per group of 4 k
inline constexpr index_t kMaxK = 33025;     ///< k·255·255 < 2³¹

/// Σ of k bytes (≤ 33025 · 255 < 2³¹).
[[nodiscard]] inline std::int32_t byte_sum(const std::uint8_t* src, index_t k) noexcept {
  std::int32_t sum = 0;
  for (index_t p = 0; p < k; ++p) sum += src[p];
  return sum;
}

#if MINNOW_X86_KERNELS
/// 16 k groups of 8 rows (64 bytes of each row in r[0…7]) → the panel's 512 bytes for those groups: an
/// 8 × 16 transpose of 4-byte groups (dword unpacks, qword unpacks, then two rounds of 128-bit lane
/// shuffles), 32 shuffles for 512 bytes instead of 128 scalar loads and stores.
MINNOW_TARGET_AVX512 inline void transpose_groups(const __m512i* r, std::uint8_t* dst) noexcept {
  __m512i u[2][4];  // u[q][j], 128-bit lane L: rows 4q … 4q + 3 of group 4L + j
  for (int q = 0; q < 2; ++q) {
    const __m512i* x = r + 4 * q;
    const __m512i t0 = _mm512_unpacklo_epi32(x[0], x[1]), t1 = _mm512_unpackhi_epi32(x[0], x[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(x[2], x[3]), t3 = _mm512_unpackhi_epi32(x[2], x[3]);
    u[q][0] = _mm512_unpacklo_epi64(t0, t2);
    u[q][1] = _mm512_unpackhi_epi64(t0, t2);
    u[q][2] = _mm512_unpacklo_epi64(t1, t3);
    u[q][3] = _mm512_unpackhi_epi64(t1, t3);
  }
  for (int j = 0; j < 4; j += 2) {
    // Groups 4L + j and 4L + j + 1 form output vector 2L + j/2: [g rows 0–3, g rows 4–7, g+1 rows 0–3, g+1 rows 4–7].
    const __m512i a_lo = _mm512_shuffle_i64x2(u[0][j], u[1][j], 0x44), b_lo = _mm512_shuffle_i64x2(u[0][j + 1], u[1][j + 1], 0x44);
    const __m512i a_hi = _mm512_shuffle_i64x2(u[0][j], u[1][j], 0xEE), b_hi = _mm512_shuffle_i64x2(u[0][j + 1], u[1][j + 1], 0xEE);
    const int o = j / 2;
    _mm512_storeu_si512(dst + (0 + o) * 64, _mm512_shuffle_i64x2(a_lo, b_lo, 0x88));  // lane 0 (L = 0)
    _mm512_storeu_si512(dst + (2 + o) * 64, _mm512_shuffle_i64x2(a_lo, b_lo, 0xDD));  // lane 1 (L = 1)
    _mm512_storeu_si512(dst + (4 + o) * 64, _mm512_shuffle_i64x2(a_hi, b_hi, 0x88));  // L = 2
    _mm512_storeu_si512(dst + (6 + o) * 64, _mm512_shuffle_i64x2(a_hi, b_hi, 0xDD));  // L = 3
  }
}
#endif


/// Interleaves the first 16-group blocks of `rows` rows (row r at rows_of[r], `full` whole groups) into
/// `dst` and writes each row's sum of all its `k` bytes; returns the groups done (the caller interleaves
/// the rest). The scalar twin does no groups, only the sums.
inline index_t interleave_blocks(arch::scalar, const std::uint8_t* const* rows_of, index_t rows, index_t, index_t k,
                                 std::uint8_t*, std::int32_t* rowsum) noexcept {
  for (index_t r = 0; r < rows; ++r) rowsum[r] = byte_sum(rows_of[r], k);
  return 0;
}

#if MINNOW_X86_KERNELS
/// 64 bytes (16 groups) of every row at a time; the row sums from vpsadbw on the same loads.
MINNOW_TARGET_AVX512 inline index_t interleave_blocks(arch::avx512, const std::uint8_t* const* rows_of,
                                                           index_t rows, index_t full, index_t k, std::uint8_t* dst,
                                                           std::int32_t* rowsum) noexcept {
  __m512i sums[kMR];
  for (auto& v : sums) v = _mm512_setzero_si512();
  index_t p = 0;
  for (; p + 16 <= full; p += 16, dst += 16 * kAStep) {
    __m512i r[kMR];
    for (index_t i = 0; i < kMR; ++i) {
      r[i] = i < rows ? _mm512_loadu_si512(rows_of[i] + p * 4) : _mm512_setzero_si512();
      sums[i] = _mm512_add_epi64(sums[i], _mm512_sad_epu8(r[i], _mm512_setzero_si512()));
    }
    transpose_groups(r, dst);
  }
  for (index_t i = 0; i < rows; ++i) {
    rowsum[i] = static_cast<std::int32_t>(_mm512_reduce_add_epi64(sums[i])) + byte_sum(rows_of[i] + p * 4, k - p * 4);
  }
  return p;
}
#endif

/// q = clamp(zp + nearbyint(x · (1/scale)), 0, 255), NaN → 0: fake_quantize's formula on the uint8 grid.
inline void quantize_row(arch::scalar, const float* x, index_t k, quant::AffineParams p, std::uint8_t* q) noexcept {
  const float inv = 1.0f / p.scale, zp = static_cast<float>(p.zero_point);
  for (index_t i = 0; i < k; ++i) {
    float v = zp + std::nearbyint(x[i] * inv);
    v = v >= 0.0f ? v : 0.0f;  // NaN fails the comparison and becomes 0
    v = v > 255.0f ? 255.0f : v;
    q[i] = static_cast<std::uint8_t>(v);
  }
}

#if MINNOW_X86_KERNELS
/// 8 int32 lanes in [0, 255] (requantize8's) as 8 bytes, lane 0 lowest: the unsigned packs keep every value.
[[nodiscard]] MINNOW_TARGET_AVX2 inline std::uint64_t low_bytes8(__m256i v) noexcept {
  const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  return static_cast<std::uint64_t>(_mm_cvtsi128_si64(_mm_packus_epi16(words, words)));
}

/// Eight floats per step (the scalar twin's operations: round to nearest even, NaN → 0 through max), the
/// tail of fewer than 8 by the scalar twin.
MINNOW_TARGET_AVX2 inline void quantize_row(arch::avx2, const float* x, index_t k, quant::AffineParams p, std::uint8_t* q) noexcept {
  const __m256 inv = _mm256_set1_ps(1.0f / p.scale), zp = _mm256_set1_ps(static_cast<float>(p.zero_point));
  const __m256 lo = _mm256_setzero_ps(), hi = _mm256_set1_ps(255.0f);
  index_t i = 0;
  for (; i + 8 <= k; i += 8) {
    const __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // max returns its second operand when the first is NaN: NaN → 0, as the scalar comparison does.
    const std::uint64_t bytes = low_bytes8(_mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_add_ps(zp, r), lo), hi)));
    std::memcpy(q + i, &bytes, 8);
  }
  quantize_row(arch::scalar{}, x + i, k - i, p, q + i);
}

MINNOW_TARGET_AVX512 inline void quantize_row(arch::avx512, const float* x, index_t k, quant::AffineParams p, std::uint8_t* q) noexcept {
  const __m512 inv = _mm512_set1_ps(1.0f / p.scale), zp = _mm512_set1_ps(static_cast<float>(p.zero_point));
  const __m512 lo = _mm512_setzero_ps(), hi = _mm512_set1_ps(255.0f);
  for (index_t i = 0; i < k; i += 16) {
    const auto mask = static_cast<__mmask16>(k - i >= 16 ? 0xFFFF : (1u << (k - i)) - 1);
    const __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x + i), inv),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // max returns its second operand when the first is NaN: NaN → 0, as the scalar comparison does.
    const __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(zp, r), lo), hi);
    _mm_mask_storeu_epi8(q + i, mask, _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(v)));
  }
}
#endif


/// Per-call constants of the output stage (see the file comment).
struct Epilogue {
  std::vector<std::int32_t> colterm;  ///< bias_int32[j] − za·colsum[j] + k·za·zw[j]  (mod 2³²)
  const std::int32_t* zw = nullptr;   ///< nullptr when every zw is 0
  std::vector<float> s, o;
  float zo = 0.0f, lo = 0.0f, hi = 255.0f;
  bool relu = false;
};


[[nodiscard]] inline std::int32_t corrected(const Epilogue& e, std::int32_t raw, index_t j, std::int32_t rowsum) noexcept {
  std::uint32_t v = static_cast<std::uint32_t>(raw) + static_cast<std::uint32_t>(e.colterm[static_cast<std::size_t>(j)]);
  if (e.zw) v -= static_cast<std::uint32_t>(e.zw[j]) * static_cast<std::uint32_t>(rowsum);
  return static_cast<std::int32_t>(v);
}

inline void finish_one(const Epilogue&, std::int32_t acc, index_t j, std::int32_t* out) noexcept { out[j] = acc; }
inline void finish_one(const Epilogue& e, std::int32_t acc, index_t j, float* out) noexcept {
  const auto c = static_cast<std::size_t>(j);
  const float r = std::fma(static_cast<float>(acc), e.s[c], e.o[c]);
  out[j] = e.relu ? (r > 0.0f ? r : 0.0f) : r;
}
inline void finish_one(const Epilogue& e, std::int32_t acc, index_t j, std::uint8_t* out) noexcept {
  const auto c = static_cast<std::size_t>(j);
  float q = std::nearbyint(std::fma(static_cast<float>(acc), e.s[c], e.o[c])) + e.zo;
  q = q > e.lo ? q : e.lo;
  q = q < e.hi ? q : e.hi;
  out[j] = static_cast<std::uint8_t>(q);
}

/// Output stage of columns [j0, j0 + cols) of one row: `raw` holds Σ A·W for those columns.
template <class OutT>
void finish_row(arch::scalar, const Epilogue& e, const std::int32_t* raw, index_t j0, index_t cols, std::int32_t rowsum,
                OutT* out) noexcept {
  for (index_t j = j0; j < j0 + cols; ++j) finish_one(e, corrected(e, raw[j - j0], j, rowsum), j, out);
}

#if MINNOW_X86_KERNELS
// The output stage's float steps on one register of exact accumulators, with per-lane scales s and offsets
// o: qgemm's rows and the direct convolutions both call these, so every path rounds the same way.

/// float output: fma(acc, s, o), then the ReLU when the layer has one.
MINNOW_TARGET_AVX512 inline __m512 dequantize16(const Epilogue& e, __m512i acc, __m512 s, __m512 o) noexcept {
  const __m512 r = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), s, o);
  return e.relu ? _mm512_max_ps(r, _mm512_setzero_ps()) : r;
}
/// uint8 output: nearbyint(fma(acc, s, o)) + zo clamped to [lo, hi], as int32 lanes in [0, 255].
MINNOW_TARGET_AVX512 inline __m512i requantize16(const Epilogue& e, __m512i acc, __m512 s, __m512 o) noexcept {
  const __m512 r = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), s, o);
  __m512 q = _mm512_add_ps(_mm512_roundscale_ps(r, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), _mm512_set1_ps(e.zo));
  q = _mm512_min_ps(_mm512_max_ps(q, _mm512_set1_ps(e.lo)), _mm512_set1_ps(e.hi));
  return _mm512_cvtps_epi32(q);
}
MINNOW_TARGET_AVX2 inline __m256 dequantize8(const Epilogue& e, __m256i acc, __m256 s, __m256 o) noexcept {
  const __m256 r = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), s, o);
  return e.relu ? _mm256_max_ps(r, _mm256_setzero_ps()) : r;
}
MINNOW_TARGET_AVX2 inline __m256i requantize8(const Epilogue& e, __m256i acc, __m256 s, __m256 o) noexcept {
  const __m256 r = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), s, o);
  __m256 q = _mm256_add_ps(_mm256_round_ps(r, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), _mm256_set1_ps(e.zo));
  q = _mm256_min_ps(_mm256_max_ps(q, _mm256_set1_ps(e.lo)), _mm256_set1_ps(e.hi));
  return _mm256_cvtps_epi32(q);
}

template <class OutT>
MINNOW_TARGET_AVX512 void finish_row(arch::avx512, const Epilogue& e, const std::int32_t* raw, index_t j0, index_t cols,
                std::int32_t rowsum, OutT* out) noexcept {
  const __m512i rs = _mm512_set1_epi32(rowsum);
  for (index_t c = 0; c < cols; c += 16) {
    const index_t j = j0 + c;
    const auto m = static_cast<__mmask16>(cols - c >= 16 ? 0xFFFF : (1u << (cols - c)) - 1);
    __m512i acc = _mm512_add_epi32(_mm512_maskz_loadu_epi32(m, raw + c), _mm512_maskz_loadu_epi32(m, e.colterm.data() + j));
    if (e.zw) acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(_mm512_maskz_loadu_epi32(m, e.zw + j), rs));
    if constexpr (std::is_same_v<OutT, std::int32_t>) {
      _mm512_mask_storeu_epi32(out + j, m, acc);
    } else {
      const __m512 s = _mm512_maskz_loadu_ps(m, e.s.data() + j), o = _mm512_maskz_loadu_ps(m, e.o.data() + j);
      if constexpr (std::is_same_v<OutT, float>) {
        _mm512_mask_storeu_ps(out + j, m, dequantize16(e, acc, s, o));
      } else {
        _mm_mask_storeu_epi8(out + j, m, _mm512_cvtusepi32_epi8(requantize16(e, acc, s, o)));
      }
    }
  }
}

template <class OutT>
MINNOW_TARGET_AVX2 void finish_row(arch::avx2, const Epilogue& e, const std::int32_t* raw, index_t j0, index_t cols, std::int32_t rowsum,
                OutT* out) noexcept {
  const __m256i rs = _mm256_set1_epi32(rowsum);
  index_t c = 0;
  for (; c + 8 <= cols; c += 8) {
    const index_t j = j0 + c;
    __m256i acc = _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(raw + c)),
                                   _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.colterm.data() + j)));
    if (e.zw) acc = _mm256_sub_epi32(acc, _mm256_mullo_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.zw + j)), rs));
    if constexpr (std::is_same_v<OutT, std::int32_t>) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j), acc);
    } else {
      const __m256 s = _mm256_loadu_ps(e.s.data() + j), o = _mm256_loadu_ps(e.o.data() + j);
      if constexpr (std::is_same_v<OutT, float>) {
        _mm256_storeu_ps(out + j, dequantize8(e, acc, s, o));
      } else {
        const std::uint64_t bytes = low_bytes8(requantize8(e, acc, s, o));
        std::memcpy(out + j, &bytes, 8);
      }
    }
  }
  finish_row(arch::scalar{}, e, raw + c, j0 + c, cols - c, rowsum, out);  // same formula on the tail
}
#endif

[[nodiscard]] inline std::int32_t load_dword(const std::uint8_t* p) noexcept {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// ---- micro-kernels: C[R × 48] = Σ over k4 groups of A panel × W panel (the whole inner length) ----

template <int R>
void micro_kernel(arch::scalar, index_t k4, const std::uint8_t* a, const std::int8_t* b, std::int32_t* c) noexcept {
  for (index_t i = 0; i < R; ++i) {
    for (index_t j = 0; j < kNR; ++j) {
      std::int32_t sum = 0;
      for (index_t p = 0; p < k4; ++p) {
        for (index_t r = 0; r < 4; ++r) sum += a[p * kAStep + i * 4 + r] * b[p * kStep + j * 4 + r];
      }
      c[i * kNR + j] = sum;
    }
  }
}

#if MINNOW_X86_KERNELS
/// AVX2: Rows × 8 columns per block (2·Rows accumulators; at most 4 rows, so that they, the widened weights
/// and a row's int16 values fit the 16 registers). The 8 columns' 32 bytes of a k group are widened to two
/// int16 vectors of 4 columns × 4 k; vpmaddwd then leaves two partial sums per column, which one hadd +
/// permute combine at the end. `a` and `b` point at the block's first row and column.
template <int Rows>
MINNOW_TARGET_AVX2 void madd_block(index_t k4, const std::uint8_t* a, const std::int8_t* b, std::int32_t* c) noexcept {
  __m256i acc[Rows][2];
#pragma GCC unroll 4
  for (int i = 0; i < Rows; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
  for (index_t p = 0; p < k4; ++p, a += kAStep, b += kStep) {
    const __m256i bw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
    const __m256i b_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(bw));
    const __m256i b_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(bw, 1));
#pragma GCC unroll 4
    for (int i = 0; i < Rows; ++i) {
      const __m256i ai = _mm256_cvtepu8_epi16(_mm_set1_epi32(load_dword(a + i * 4)));
      acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(ai, b_lo));
      acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(ai, b_hi));
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < Rows; ++i) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + i * kNR), _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[i][0], acc[i][1]), 0xD8));
  }
}

template <int R>
MINNOW_TARGET_AVX2 void micro_kernel(arch::avx2, index_t k4, const std::uint8_t* a, const std::int8_t* b, std::int32_t* c) noexcept {
  for (index_t j0 = 0; j0 < kNR; j0 += 8) {
    if constexpr (R <= 4) {
      madd_block<R>(k4, a, b + j0 * 4, c + j0);
    } else {
      madd_block<4>(k4, a, b + j0 * 4, c + j0);
      madd_block<R - 4>(k4, a + 16, b + j0 * 4, c + 4 * kNR + j0);
    }
  }
}
#endif

#if MINNOW_X86_KERNELS
/// 8 × 48: 24 accumulators, and per k group 3 weight loads + 8 broadcasts for 24 vpdpbusd. The
/// accumulators stay in registers over the whole inner length (no partial sums go through memory), so
/// vpdpbusd's throughput (one per cycle on Zen 5) is the bound. No software prefetch: the hardware
/// prefetchers already follow both sequential streams.
template <int R>
MINNOW_TARGET_AVX512_VNNI void micro_kernel(arch::avx512_vnni, index_t k4, const std::uint8_t* a, const std::int8_t* b, std::int32_t* c) noexcept {
  __m512i acc[R][3];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = acc[i][2] = _mm512_setzero_si512();
  for (index_t p = 0; p < k4; ++p, a += kAStep, b += kStep) {
    const __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 64), b2 = _mm512_loadu_si512(b + 128);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m512i ai = _mm512_set1_epi32(load_dword(a + i * 4));
      acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], ai, b0);
      acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], ai, b1);
      acc[i][2] = _mm512_dpbusd_epi32(acc[i][2], ai, b2);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    for (int v = 0; v < 3; ++v) _mm512_storeu_si512(c + i * kNR + v * 16, acc[i][v]);
  }
}
#endif

#if MINNOW_X86_KERNELS
/// AVX-VNNI: the VNNI kernel at 256 bits. Rows × 16 columns per block (2·Rows accumulators of 16 registers);
/// `a` and `b` point at the block's first row and column.
template <int Rows>
MINNOW_TARGET_AVX2_VNNI void vnni256_block(index_t k4, const std::uint8_t* a, const std::int8_t* b, std::int32_t* c) noexcept {
  __m256i acc[Rows][2];
#pragma GCC unroll 4
  for (int i = 0; i < Rows; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
  for (index_t p = 0; p < k4; ++p, a += kAStep, b += kStep) {
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32));
#pragma GCC unroll 4
    for (int i = 0; i < Rows; ++i) {
      const __m256i ai = _mm256_set1_epi32(load_dword(a + i * 4));
      acc[i][0] = _mm256_dpbusd_avx_epi32(acc[i][0], ai, b0);
      acc[i][1] = _mm256_dpbusd_avx_epi32(acc[i][1], ai, b1);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < Rows; ++i) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + i * kNR), acc[i][0]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + i * kNR + 8), acc[i][1]);
  }
}

template <int R>
MINNOW_TARGET_AVX2_VNNI void micro_kernel(arch::avx2_vnni, index_t k4, const std::uint8_t* a, const std::int8_t* b, std::int32_t* c) noexcept {
  for (index_t j0 = 0; j0 < kNR; j0 += 16) {
    if constexpr (R <= 4) {
      vnni256_block<R>(k4, a, b + j0 * 4, c + j0);
    } else {
      vnni256_block<4>(k4, a, b + j0 * 4, c + j0);
      vnni256_block<R - 4>(k4, a + 16, b + j0 * 4, c + 4 * kNR + j0);
    }
  }
}
#endif

#if MINNOW_ARM_KERNELS
/// Advanced SIMD without dot products: 8 columns × 2 rows per pass. A row's 4 bytes and each column's 4
/// bytes are widened to int16 and vmlal_s16 keeps one int32 lane per k of the group; two pairwise adds
/// per 4 columns sum the lanes at the end.
template <int R>
inline void micro_kernel(arch::neon, index_t k4, const std::uint8_t* a, const std::int8_t* b, std::int32_t* c) noexcept {
  for (index_t j0 = 0; j0 < kNR; j0 += 8) {
    for (int i0 = 0; i0 < R; i0 += 2) {
      const int rows = std::min(2, R - i0);
      int32x4_t acc[2][8];
      for (auto& row : acc) {
        for (auto& v : row) v = vdupq_n_s32(0);
      }
      for (index_t p = 0; p < k4; ++p) {
        const std::int8_t* bp = b + p * kStep + j0 * 4;
        const int8x16_t b0 = vld1q_s8(bp), b1 = vld1q_s8(bp + 16);
        const int16x8_t w[4] = {vmovl_s8(vget_low_s8(b0)), vmovl_high_s8(b0), vmovl_s8(vget_low_s8(b1)), vmovl_high_s8(b1)};
        for (int r = 0; r < rows; ++r) {
          const uint8x8_t bytes = vreinterpret_u8_u32(vdup_n_u32(static_cast<std::uint32_t>(load_dword(a + p * kAStep + (i0 + r) * 4))));
          const int16x4_t x = vreinterpret_s16_u16(vget_low_u16(vmovl_u8(bytes)));
          for (int q = 0; q < 4; ++q) {
            acc[r][2 * q] = vmlal_s16(acc[r][2 * q], vget_low_s16(w[q]), x);
            acc[r][2 * q + 1] = vmlal_s16(acc[r][2 * q + 1], vget_high_s16(w[q]), x);
          }
        }
      }
      for (int r = 0; r < rows; ++r) {
        std::int32_t* out = c + (i0 + r) * kNR + j0;
        vst1q_s32(out, vpaddq_s32(vpaddq_s32(acc[r][0], acc[r][1]), vpaddq_s32(acc[r][2], acc[r][3])));
        vst1q_s32(out + 4, vpaddq_s32(vpaddq_s32(acc[r][4], acc[r][5]), vpaddq_s32(acc[r][6], acc[r][7])));
      }
    }
  }
}

/// With the dot-product instructions: 16 columns × 4 rows per pass, one sdot per 4 columns and row.
/// sdot multiplies signed bytes, so the activations enter as a − 128 (top bit flipped) and 128·Σ_k w is
/// added back per column: Σ (a − 128)·w + 128·Σ w = Σ a·w, exactly (mod 2³², as every path computes).
template <int R>
MINNOW_TARGET_NEON_DOT inline void micro_kernel(arch::neon_dot, index_t k4, const std::uint8_t* a, const std::int8_t* b,
                                                std::int32_t* c) noexcept {
  const int8x16_t ones = vdupq_n_s8(1);
  const uint8x16_t flip = vdupq_n_u8(0x80);
  for (index_t j0 = 0; j0 < kNR; j0 += 16) {
    int32x4_t colsum[4];
    for (auto& v : colsum) v = vdupq_n_s32(0);
    for (index_t p = 0; p < k4; ++p) {
      for (int v = 0; v < 4; ++v) colsum[v] = vdotq_s32(colsum[v], vld1q_s8(b + p * kStep + j0 * 4 + 16 * v), ones);
    }
    for (int i0 = 0; i0 < R; i0 += 4) {  // a panel holds 8 rows, so rows past R are there to read
      int32x4_t acc[4][4];
      for (auto& row : acc) {
        for (auto& v : row) v = vdupq_n_s32(0);
      }
      for (index_t p = 0; p < k4; ++p) {
        const int8x16_t x = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(a + p * kAStep + i0 * 4), flip));  // 4 rows × 4 k
        const std::int8_t* bp = b + p * kStep + j0 * 4;
        for (int v = 0; v < 4; ++v) {
          const int8x16_t w = vld1q_s8(bp + 16 * v);  // 4 columns × 4 k
          acc[0][v] = vdotq_laneq_s32(acc[0][v], w, x, 0);
          acc[1][v] = vdotq_laneq_s32(acc[1][v], w, x, 1);
          acc[2][v] = vdotq_laneq_s32(acc[2][v], w, x, 2);
          acc[3][v] = vdotq_laneq_s32(acc[3][v], w, x, 3);
        }
      }
      for (int r = 0; r < std::min(4, R - i0); ++r) {
        for (int v = 0; v < 4; ++v) vst1q_s32(c + (i0 + r) * kNR + j0 + 4 * v, vaddq_s32(acc[r][v], vshlq_n_s32(colsum[v], 7)));
      }
    }
  }
}
#endif

template <class Arch>
void run_micro_kernel(index_t rows, index_t k4, const std::uint8_t* a, const std::int8_t* b, std::int32_t* c) noexcept {
  switch (rows) {
    case 1: micro_kernel<1>(Arch{}, k4, a, b, c); break;
    case 2: micro_kernel<2>(Arch{}, k4, a, b, c); break;
    case 3: micro_kernel<3>(Arch{}, k4, a, b, c); break;
    case 4: micro_kernel<4>(Arch{}, k4, a, b, c); break;
    case 5: micro_kernel<5>(Arch{}, k4, a, b, c); break;
    case 6: micro_kernel<6>(Arch{}, k4, a, b, c); break;
    case 7: micro_kernel<7>(Arch{}, k4, a, b, c); break;
    default: micro_kernel<8>(Arch{}, k4, a, b, c); break;
  }
}

// ---- int4 panels → int8, one panel at a time ----

inline void unpack_nibbles(arch::scalar, const std::uint8_t* src, index_t chunks, std::int8_t* dst) noexcept {
  for (index_t c = 0; c < chunks; ++c, src += 32, dst += 64) {
    for (index_t b = 0; b < 32; ++b) {
      dst[b] = static_cast<std::int8_t>(((src[b] & 0x0F) ^ 8) - 8);
      dst[b + 32] = static_cast<std::int8_t>(((src[b] >> 4) ^ 8) - 8);
    }
  }
}

#if MINNOW_X86_KERNELS
MINNOW_TARGET_AVX2 inline void unpack_nibbles(arch::avx2, const std::uint8_t* src, index_t chunks, std::int8_t* dst) noexcept {
  const __m256i low = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8);
  for (index_t c = 0; c < chunks; ++c, src += 32, dst += 64) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
    // (v ^ 8) − 8 sign-extends a 4-bit two's-complement value held in a byte.
    const __m256i lo = _mm256_sub_epi8(_mm256_xor_si256(_mm256_and_si256(x, low), eight), eight);
    const __m256i hi = _mm256_sub_epi8(_mm256_xor_si256(_mm256_and_si256(_mm256_srli_epi16(x, 4), low), eight), eight);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), lo);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 32), hi);
  }
}
#endif


}  // namespace detail

}  // namespace minnow::infer
