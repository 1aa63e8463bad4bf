#pragma once
/// @file simd/gemm_kernels.hpp
/// @brief The float GEMM's register-tile kernels (simd/gemm.hpp packs the panels and blocks the loops).
///
/// `C[MR×NR] (+)= Ã·B̃` over kc steps of packed panels: Ã holds, per step p, the MR values of a column of
/// A; B̃ the NR values of a row of B. Every path computes each output the same way, so they agree bit for
/// bit: `acc = fma(a[i,p], b[p,j], acc)` for p = 0, 1, … from acc = 0, then `acc + C` when accumulating.
/// Tiles: AVX-512 8 × 48 (24 of the 32 vector registers accumulate; 3 loads + 8 broadcasts per 24 FMAs);
/// AVX2 4 × 24 (12 of 16); NEON 4 × 24 (24 of 32, fmla by lane: one 4-float load of Ã per step); the
/// scalar twin 4 × 24.

#include <minnow/simd/arch.hpp>
#include <minnow/tensor.hpp>

#include <cmath>

namespace minnow::simd::detail {

/// Register-tile rows and columns of a path.
struct GemmTile {
  index_t mr, nr;
};
constexpr GemmTile gemm_tile(arch::scalar) noexcept { return {4, 24}; }
constexpr GemmTile gemm_tile(arch::avx512) noexcept { return {8, 48}; }

inline void micro_kernel(arch::scalar, index_t kc, const float* a, const float* b, float* c, index_t ldc,
                         bool accumulate) noexcept {
  constexpr index_t mr = 4, nr = 24;
  float acc[mr][nr] = {};
  for (index_t p = 0; p < kc; ++p, a += mr, b += nr) {
    for (index_t i = 0; i < mr; ++i) {
      for (index_t j = 0; j < nr; ++j) acc[i][j] = std::fma(a[i], b[j], acc[i][j]);
    }
  }
  for (index_t i = 0; i < mr; ++i) {
    for (index_t j = 0; j < nr; ++j) c[i * ldc + j] = accumulate ? acc[i][j] + c[i * ldc + j] : acc[i][j];
  }
}

#if MINNOW_X86_KERNELS
MINNOW_TARGET_AVX2 inline void micro_kernel(arch::avx2, index_t kc, const float* a, const float* b, float* c, index_t ldc,
                                            bool accumulate) noexcept {
  constexpr index_t mr = 4, nr = 24;
  __m256 acc[mr][3];
  for (auto& row : acc) row[0] = row[1] = row[2] = _mm256_setzero_ps();
  for (index_t p = 0; p < kc; ++p, a += mr, b += nr) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8), b2 = _mm256_load_ps(b + 16);
#pragma GCC unroll 4
    for (index_t i = 0; i < mr; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
      acc[i][2] = _mm256_fmadd_ps(ai, b2, acc[i][2]);
    }
  }
#pragma GCC unroll 4
  for (index_t i = 0; i < mr; ++i) {
    float* row = c + i * ldc;
    for (index_t v = 0; v < 3; ++v) {
      __m256 out = acc[i][v];
      if (accumulate) out = _mm256_add_ps(out, _mm256_loadu_ps(row + v * 8));
      _mm256_storeu_ps(row + v * 8, out);
    }
  }
}

MINNOW_TARGET_AVX512 inline void micro_kernel(arch::avx512, index_t kc, const float* a, const float* b, float* c,
                                              index_t ldc, bool accumulate) noexcept {
  constexpr index_t mr = 8, nr = 48;
  __m512 acc[mr][3];
  for (auto& row : acc) row[0] = row[1] = row[2] = _mm512_setzero_ps();
  for (index_t p = 0; p < kc; ++p, a += mr, b += nr) {
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16), b2 = _mm512_load_ps(b + 32);
#pragma GCC unroll 8
    for (index_t i = 0; i < mr; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
      acc[i][2] = _mm512_fmadd_ps(ai, b2, acc[i][2]);
    }
  }
#pragma GCC unroll 8
  for (index_t i = 0; i < mr; ++i) {
    float* row = c + i * ldc;
    for (index_t v = 0; v < 3; ++v) {
      __m512 out = acc[i][v];
      if (accumulate) out = _mm512_add_ps(out, _mm512_loadu_ps(row + v * 16));
      _mm512_storeu_ps(row + v * 16, out);
    }
  }
}
#endif

#if MINNOW_ARM_KERNELS
inline void micro_kernel(arch::neon, index_t kc, const float* a, const float* b, float* c, index_t ldc, bool accumulate) noexcept {
  constexpr index_t mr = 4, nr = 24, vectors = nr / 4;
  float32x4_t acc[mr][vectors];
  for (auto& row : acc) {
    for (auto& v : row) v = vdupq_n_f32(0.0f);
  }
  for (index_t p = 0; p < kc; ++p, a += mr, b += nr) {
    const float32x4_t ai = vld1q_f32(a);
    float32x4_t bv[vectors];
    for (index_t v = 0; v < vectors; ++v) bv[v] = vld1q_f32(b + 4 * v);
    // The lane index must be a constant: one statement per row.
    for (index_t v = 0; v < vectors; ++v) {
      acc[0][v] = vfmaq_laneq_f32(acc[0][v], bv[v], ai, 0);
      acc[1][v] = vfmaq_laneq_f32(acc[1][v], bv[v], ai, 1);
      acc[2][v] = vfmaq_laneq_f32(acc[2][v], bv[v], ai, 2);
      acc[3][v] = vfmaq_laneq_f32(acc[3][v], bv[v], ai, 3);
    }
  }
  for (index_t i = 0; i < mr; ++i) {
    float* row = c + i * ldc;
    for (index_t v = 0; v < vectors; ++v) {
      float32x4_t out = acc[i][v];
      if (accumulate) out = vaddq_f32(out, vld1q_f32(row + 4 * v));
      vst1q_f32(row + 4 * v, out);
    }
  }
}
#endif

}  // namespace minnow::simd::detail
