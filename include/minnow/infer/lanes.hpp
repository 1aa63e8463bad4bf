#pragma once
/// @file infer/lanes.hpp
/// @brief Lane helpers shared by the infer kernel headers: horizontal sums of a float register and
/// masks (and masked loads) of its first lanes, for AVX2 and AVX-512 (simd/arch.hpp's target attributes).

#include <minnow/simd/arch.hpp>
#include <minnow/tensor.hpp>

namespace minnow::infer::detail {

#if MINNOW_X86_KERNELS
/// Lanes [0, n) set, n ≤ 16.
[[nodiscard]] inline __mmask16 first_lanes(index_t n) noexcept {
  return static_cast<__mmask16>((1u << static_cast<unsigned>(n)) - 1u);
}

/// Horizontal sum of 16 lanes.
[[nodiscard]] MINNOW_TARGET_AVX512 inline float reduce(__m512 v) noexcept { return _mm512_reduce_add_ps(v); }

/// Horizontal sum of 8 lanes.
[[nodiscard]] MINNOW_TARGET_AVX2 inline float reduce(__m256 v) noexcept {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 h = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

/// All-ones in lanes [0, n), n ≤ 8 (the mask of vmaskmov and of a masked gather).
[[nodiscard]] MINNOW_TARGET_AVX2 inline __m256i first_lanes8(index_t n) noexcept {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/// x[0, n) and zeros, n ≤ 8, never reading past x + n.
[[nodiscard]] MINNOW_TARGET_AVX2 inline __m256 load_first(const float* x, index_t n) noexcept {
  return _mm256_maskload_ps(x, first_lanes8(n));
}
#endif

}  // namespace minnow::infer::detail
