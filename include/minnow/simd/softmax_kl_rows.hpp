#pragma once
/// @file simd/softmax_kl_rows.hpp
/// @brief The KD loss's float row kernel, one overload per instruction set (simd/arch.hpp): per row, the
/// divergence KL(softmax(t/T) ‖ softmax(s/T)) and its gradient (q − p) scaled. distill/kd_blocks.hpp
/// calls it; the scalar overload is the twin every other path is tested against bit for bit.
///
/// Per row, with a = (s − max s)/T and b = (t − max t)/T, both raised to scaled_logit_floor:
///
///     Zs = Σ e^a,  Zt = Σ e^b,  C = Σ e^b (b − a)
///     KL = C/Zt + log(Zs/Zt),   g = (e^a − e^b · Zs/Zt) · grad_scale/Zs
///
/// in three passes over the row while it sits in L1: the maxima; a, b, e^a (into g), e^b (into a scratch
/// row) and the three sums; then g. Every path evaluates the same operations in the same order, so they
/// agree bit for bit:
///  - e^x by one formula (exp_nonpositive: Cephes polynomial with fused multiply-adds, then an exact
///    scaling by 2^k rounded once);
///  - the row maxima and sums over 16 lanes (lane l takes elements l, l + 16, …; a partial row pads its
///    last 16 with −inf for the maxima and 0 for the sums): float partials of at most kKlFlush chunks,
///    added into double lane totals, which then reduce as fixed pairwise trees (reduce_max_lanes,
///    reduce_sum_lanes). AVX-512 holds the 16 lanes in one register, AVX2 in two, the scalar twin in arrays;
///  - no multiply feeds an add the compiler could fuse: products that are summed come from a conversion
///    or a scaling instruction, and the per-row double arithmetic is an explicit std::fma (GCC contracts
///    `a * b + c` wherever FMA is enabled, which differs between a target function and the scalar twin);
///  - every maximum follows maxps's operand rule (lane_max), so NaN logits take the same course on every
///    path (the NaN results may differ in payload only).
/// Equal s and t rows go through identical operations, so their divergence and gradient are exactly 0.

#include <minnow/simd/arch.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace minnow::simd::detail {

/// Shifted, scaled logits are raised to this floor: with a tiny temperature (s − max s)/T overflows to
/// −inf, and b − a would then be −inf − (−inf) = NaN. From the floor every difference b − a stays finite,
/// and e^floor is 0, so the loss and gradient are what the exact values give (0 · anything = 0).
template <class T>
inline constexpr T scaled_logit_floor = -std::numeric_limits<T>::max() / 2;

/// Lanes of the row reductions, whatever the vector width.
inline constexpr index_t kKlLanes = 16;
/// 16-element chunks summed in float before the partials move to double: each float partial then holds
/// at most 4 terms per lane (within ~2 ulp), and the row total is exact to double.
inline constexpr int kKlFlush = 4;
/// Elements ahead of the current one that the vector paths prefetch (8 KB: the next rows arrive from
/// memory while this one computes).
inline constexpr index_t kKlPrefetchAhead = 2048;

/// The per-row results every path derives from its three sums in the same way.
struct KlRow {
  double kl;       ///< the divergence less log(ratio_f)
  float ratio_f;   ///< Zs/Zt rounded to float
  float grad_mul;  ///< grad_scale / Zs
};

/// Zs/Zt is divided (not multiplied by a reciprocal) so that it is exactly 1 when the sums are equal.
/// log(ratio) = log(rf) + log(ratio/rf) with rf = float(ratio): the caller takes log(rf) for a whole
/// block in one vectorized float log (a scalar double log per row would cost a third of the time at 10
/// classes); the second term, (ratio − rf)/ratio to first order, is below 6e-8 and folded in here.
[[nodiscard]] inline KlRow kl_row(double sum_s, double sum_t, double cross, double grad_scale) noexcept {
  const double ratio = sum_s / sum_t, inv_s = 1.0 / sum_s;
  const auto rf = static_cast<float>(ratio);
  return {std::fma(cross, ratio, (ratio - static_cast<double>(rf)) * sum_t) * inv_s, rf,
          static_cast<float>(grad_scale * inv_s)};
}

/// maxps's rule, which every path follows: the first operand when it is greater, else the second. So a
/// NaN first operand is dropped and a NaN second one kept: the running row maxima put the element first
/// (the shift is the largest logit that is not NaN, and every other exponent stays ≤ 0), the floor and
/// the exponent's clamp put the value second (a NaN goes on into the row's results).
[[nodiscard]] inline float lane_max(float a, float b) noexcept { return a > b ? a : b; }

/// Cephes expf: e^r ≈ 1 + r + r²·P(r) for |r| ≤ ln2/2 (≈ 1 ulp).
inline constexpr float kExpP[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                   4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
inline constexpr float kLog2e = 1.44269504088896341f;
/// ln2 in two parts; the first has 9 significant bits, so k · part is exact for |k| < 2^15.
inline constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
/// e^x rounds to 0 below this: x is raised to it first, which keeps k ≥ −150 (a tiny temperature makes x
/// as low as the floor, and the range reduction is exact only for |k| < 2^15).
inline constexpr float kExpLowest = -104.0f;

/// e^x for x ≤ 0 (the only exponents a max-shifted softmax takes) or NaN: x = k·ln2 + r with |r| ≤ ln2/2,
/// e^r by the polynomial, then y·2^k rounded once (subnormal results included, 0 below 2^−149).
/// e^0 is exactly 1.
[[nodiscard]] inline float exp_nonpositive(float x) noexcept {
  x = lane_max(kExpLowest, x);
  const float k = std::nearbyint(x * kLog2e);
  float r = std::fma(-k, kLn2Hi, x);
  r = std::fma(-k, kLn2Lo, r);
  float y = kExpP[0];
  y = std::fma(y, r, kExpP[1]);
  y = std::fma(y, r, kExpP[2]);
  y = std::fma(y, r, kExpP[3]);
  y = std::fma(y, r, kExpP[4]);
  y = std::fma(y, r, kExpP[5]);
  const float r2 = r * r;
  y = std::fma(y, r2, r + 1.0f);
  // k ∈ [−150, 0], or NaN with x (y is then NaN whatever the scale). y·2^k is exact in double; the
  // conversion rounds it once, as vscalefps does (and, being no multiply, cannot be fused into the sums
  // that take it).
  // A dead lane's x (its 0 less the row's maximum, masked off afterwards) can be positive and huge: the
  // clamp keeps the conversion defined and changes nothing for x ≤ 0.
  const int exponent = std::isnan(k) ? 0 : static_cast<int>(std::min(k, 0.0f));
  const double scale = std::bit_cast<double>(static_cast<std::uint64_t>(exponent + 1023) << 52);
  return static_cast<float>(static_cast<double>(y) * scale);
}

/// The maximum of 16 lanes: m8[l] = max(m[l], m[l + 8]), then 4, 2 and 1 lanes the same way.
[[nodiscard]] inline float reduce_max_lanes(const float* m) noexcept {
  float m8[8], m4[4];
  for (int l = 0; l < 8; ++l) m8[l] = lane_max(m[l], m[l + 8]);
  for (int l = 0; l < 4; ++l) m4[l] = lane_max(m8[l], m8[l + 4]);
  return lane_max(lane_max(m4[0], m4[2]), lane_max(m4[1], m4[3]));
}

/// The sum of 16 double lanes: s[l] + s[l + 8], then 4, 2 and 1 lanes the same way.
[[nodiscard]] inline double reduce_sum_lanes(const double* s) noexcept {
  double s8[8], s4[4];
  for (int l = 0; l < 8; ++l) s8[l] = s[l] + s[l + 8];
  for (int l = 0; l < 4; ++l) s4[l] = s8[l] + s8[l + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

/// The three row sums of the scalar twin, lane by lane.
struct KlLaneSums {
  float part[3][kKlLanes] = {};
  double total[3][kKlLanes] = {};

  void flush() noexcept {
    for (int q = 0; q < 3; ++q) {
      for (index_t l = 0; l < kKlLanes; ++l) {
        total[q][l] += static_cast<double>(part[q][l]);
        part[q][l] = 0.0f;
      }
    }
  }
};

/// e^a and e^b of one lane.
struct KlExps {
  float ea, eb;
};

/// Lane l of the chunk step: a and b from the logits xs and xt, their exponentials (0 in a dead lane,
/// `live` false), added into lane l of the partial sums.
[[nodiscard]] inline KlExps kl_lane(float xs, float xt, bool live, float shift_s, float shift_t, float inv_t,
                                    KlLaneSums& sums, index_t l) noexcept {
  const float a = lane_max(scaled_logit_floor<float>, (xs - shift_s) * inv_t);
  const float b = lane_max(scaled_logit_floor<float>, (xt - shift_t) * inv_t);
  // A dead lane's exponentials are zeroed by a bit mask, as the vector paths do (a select would be
  // compiled as a branch around the exponentials, which keeps the lane loop from vectorizing).
  const std::uint32_t keep = live ? ~0u : 0u;
  const float ea = std::bit_cast<float>(std::bit_cast<std::uint32_t>(exp_nonpositive(a)) & keep);
  const float eb = std::bit_cast<float>(std::bit_cast<std::uint32_t>(exp_nonpositive(b)) & keep);
  // b − a is masked too: a dead lane's a and b can both be +inf (0 less a row maximum near the lowest
  // float, over a small temperature), and 0 · NaN would poison the sum.
  const float diff = std::bit_cast<float>(std::bit_cast<std::uint32_t>(b - a) & keep);
  sums.part[0][l] += ea;
  sums.part[1][l] += eb;
  sums.part[2][l] = std::fma(eb, diff, sums.part[2][l]);
  return {ea, eb};
}

/// @brief KD on `n` rows of `cols` floats: writes `grad_scale · (q − p)` into g and, per row, KL less
/// log(ratio_f) into `kl` and ratio_f into `log_ratio`; the caller adds log(log_ratio[i]) to kl[i].
///
/// `eb_row` is scratch for e^b of one row: 64-byte aligned, `cols` rounded up to 16 floats. The vector
/// paths prefetch while `row offset + j + kKlPrefetchAhead < prefetch_limit` (elements of s, t and g
/// they may touch past this block). Inputs may be any floats: a −inf entry is a probability 0 (a student
/// −inf where the teacher's probability is > 0 gives a huge finite divergence); a NaN or +inf logit, or
/// a row of only −inf, makes its row's divergence and gradient NaN. The scalar twin keeps the 16 lanes in
/// arrays; whole chunks are loops over the lanes that a compiler may vectorize.
inline void softmax_kl_rows(arch::scalar, const float* s, const float* t, float* g, index_t n, index_t cols,
                            float inv_t, double grad_scale, float* eb_row, float* log_ratio, double* kl,
                            index_t /*prefetch_limit*/) noexcept {
  constexpr index_t lanes = kKlLanes;
  constexpr float lowest = -std::numeric_limits<float>::infinity();
  const index_t full = cols / lanes * lanes;
  for (index_t i = 0; i < n; ++i) {
    const float* si = s + i * cols;
    const float* ti = t + i * cols;
    float* gi = g + i * cols;
    float max_s[lanes], max_t[lanes];
    for (index_t l = 0; l < lanes; ++l) max_s[l] = max_t[l] = lowest;
    for (index_t j = 0; j < full; j += lanes) {
      for (index_t l = 0; l < lanes; ++l) {
        max_s[l] = lane_max(si[j + l], max_s[l]);
        max_t[l] = lane_max(ti[j + l], max_t[l]);
      }
    }
    // The partial chunk goes through local copies, so that its lanes too are loops without branches.
    const index_t rest = cols - full;
    float xs[lanes], xt[lanes];
    if (rest != 0) {
      // Dead lanes read −inf for the maxima, as the vector paths' masked loads do.
      std::fill_n(xs, lanes, lowest);
      std::fill_n(xt, lanes, lowest);
      std::copy_n(si + full, rest, xs);
      std::copy_n(ti + full, rest, xt);
      for (index_t l = 0; l < lanes; ++l) {
        max_s[l] = lane_max(xs[l], max_s[l]);
        max_t[l] = lane_max(xt[l], max_t[l]);
      }
    }
    const float shift_s = reduce_max_lanes(max_s), shift_t = reduce_max_lanes(max_t);

    KlLaneSums sums;
    int pending = 0;
    for (index_t j = 0; j < full; j += lanes) {
      for (index_t l = 0; l < lanes; ++l) {
        const KlExps e = kl_lane(si[j + l], ti[j + l], true, shift_s, shift_t, inv_t, sums, l);
        gi[j + l] = e.ea;
        eb_row[j + l] = e.eb;
      }
      if (++pending == kKlFlush) {
        sums.flush();
        pending = 0;
      }
    }
    if (rest != 0) {
      // Dead lanes read 0, as the vector paths' masked loads do.
      std::fill_n(xs + rest, lanes - rest, 0.0f);
      std::fill_n(xt + rest, lanes - rest, 0.0f);
      float ea[lanes], eb[lanes];
      for (index_t l = 0; l < lanes; ++l) {
        const KlExps e = kl_lane(xs[l], xt[l], l < rest, shift_s, shift_t, inv_t, sums, l);
        ea[l] = e.ea;
        eb[l] = e.eb;
      }
      std::copy_n(ea, rest, gi + full);
      std::copy_n(eb, rest, eb_row + full);
    }
    sums.flush();
    const KlRow row = kl_row(reduce_sum_lanes(sums.total[0]), reduce_sum_lanes(sums.total[1]),
                             reduce_sum_lanes(sums.total[2]), grad_scale);
    log_ratio[i] = row.ratio_f;
    kl[i] = row.kl;
    for (index_t j = 0; j < cols; ++j) gi[j] = std::fma(-eb_row[j], row.ratio_f, gi[j]) * row.grad_mul;
  }
}

#if MINNOW_X86_KERNELS

// ---- AVX2 + FMA: the 16 lanes in two registers (lo = lanes 0–7, hi = lanes 8–15) ----

/// 1.5·2²³ + 192: x·log2e + this rounds x·log2e to the nearest integer k (ties to even, as nearbyint: the
/// constant is even and the sum's ulp is 1), and the sum's bits are those of 1.5·2²³ plus 192 + k.
inline constexpr float kExpRoundShift = 12583104.0f;

/// exp_nonpositive on 8 lanes. vscalefps is AVX-512 only: y·2^k is taken as (y·2^(k+65))·2^−65, where
/// 2^(k+65) is a normal float for k ∈ [−150, 0]: the first product is exact and the second rounds once,
/// to the same float. k comes from one add of kExpRoundShift (rather than a round and a conversion): the
/// sum's bits shifted left by 23 are 192 + k in the exponent field, as the constant's own bits shift out.
/// x·log2e is an fma with +0 so that it stays a rounded product, as the second scaling is (a plain
/// multiply could be fused into the add that takes it).
[[nodiscard]] MINNOW_TARGET_AVX2 inline __m256 exp_nonpositive(__m256 x) noexcept {
  x = _mm256_max_ps(_mm256_set1_ps(kExpLowest), x);
  const __m256 shifted =
      _mm256_add_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(kLog2e), _mm256_setzero_ps()), _mm256_set1_ps(kExpRoundShift));
  const __m256 k = _mm256_sub_ps(shifted, _mm256_set1_ps(kExpRoundShift));
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(kLn2Lo), r);
  __m256 y = _mm256_set1_ps(kExpP[0]);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kExpP[1]));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kExpP[2]));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kExpP[3]));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kExpP[4]));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kExpP[5]));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256 p = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(shifted), 23));
  return _mm256_fmadd_ps(_mm256_mul_ps(y, p), _mm256_set1_ps(0x1p-65f), _mm256_setzero_ps());
}

/// reduce_max_lanes on lanes lo (0–7) and hi (8–15).
[[nodiscard]] MINNOW_TARGET_AVX2 inline float reduce_max_lanes(__m256 lo, __m256 hi) noexcept {
  const __m256 m8 = _mm256_max_ps(lo, hi);
  const __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
  const __m128 m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  return _mm_cvtss_f32(_mm_max_ss(m2, _mm_shuffle_ps(m2, m2, 1)));
}

/// reduce_sum_lanes from its first step: s8[0…3] and s8[4…7], where s8[l] = s[l] + s[l + 8].
[[nodiscard]] MINNOW_TARGET_AVX2 inline double reduce_sum_lanes(__m256d s8_lo, __m256d s8_hi) noexcept {
  const __m256d s4 = _mm256_add_pd(s8_lo, s8_hi);
  const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
}

/// One row sum on the AVX2 path: float partials of lanes 0–7 and 8–15, double totals of lanes 0–3 … 12–15.
struct KlSum256 {
  __m256 lo, hi;
  __m256d t0, t4, t8, t12;
};

MINNOW_TARGET_AVX2 inline void clear(KlSum256& sum) noexcept {
  sum.lo = sum.hi = _mm256_setzero_ps();
  sum.t0 = sum.t4 = sum.t8 = sum.t12 = _mm256_setzero_pd();
}

MINNOW_TARGET_AVX2 inline void flush(KlSum256& sum) noexcept {
  sum.t0 = _mm256_add_pd(sum.t0, _mm256_cvtps_pd(_mm256_castps256_ps128(sum.lo)));
  sum.t4 = _mm256_add_pd(sum.t4, _mm256_cvtps_pd(_mm256_extractf128_ps(sum.lo, 1)));
  sum.t8 = _mm256_add_pd(sum.t8, _mm256_cvtps_pd(_mm256_castps256_ps128(sum.hi)));
  sum.t12 = _mm256_add_pd(sum.t12, _mm256_cvtps_pd(_mm256_extractf128_ps(sum.hi, 1)));
  sum.lo = sum.hi = _mm256_setzero_ps();
}

[[nodiscard]] MINNOW_TARGET_AVX2 inline double total(KlSum256& sum) noexcept {
  flush(sum);
  return reduce_sum_lanes(_mm256_add_pd(sum.t0, sum.t8), _mm256_add_pd(sum.t4, sum.t12));
}

/// Per-row constants of the AVX2 chunk step.
struct KlRow256 {
  __m256 shift_s, shift_t, scale, floor;
};

/// Lane l of kKlTailMask + 16 − r is all ones exactly when l < r: the mask of the first r lanes.
alignas(64) inline constexpr std::int32_t kKlTailMask[32] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                                             -1, -1, -1, -1, -1, 0,  0,  0,  0,  0,  0,
                                                             0,  0,  0,  0,  0,  0,  0,  0,  0,  0};

[[nodiscard]] MINNOW_TARGET_AVX2 inline __m256i first_lanes(index_t count) noexcept {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kKlTailMask + 16 - count));
}

/// The lanes of `mask` from p, `fill` in the others (dead lanes of the maxima read −inf on every path).
[[nodiscard]] MINNOW_TARGET_AVX2 inline __m256 load_or(__m256 fill, const float* p, __m256i mask) noexcept {
  return _mm256_blendv_ps(fill, _mm256_maskload_ps(p, mask), _mm256_castsi256_ps(mask));
}

/// 8 lanes of the chunk step: a, b, e^a into g, e^b into eb, and the three partial sums. `Masked`: only
/// the lanes of `mask` are read and written, the others read 0 and their exponentials and b − a are zeroed.
template <bool Masked>
MINNOW_TARGET_AVX2 inline void kl_lanes(const float* s, const float* t, float* g, float* eb_out, __m256i mask,
                                        const KlRow256& c, __m256& zs, __m256& zt, __m256& cross) noexcept {
  const __m256 xs = Masked ? _mm256_maskload_ps(s, mask) : _mm256_loadu_ps(s);
  const __m256 xt = Masked ? _mm256_maskload_ps(t, mask) : _mm256_loadu_ps(t);
  const __m256 a = _mm256_max_ps(c.floor, _mm256_mul_ps(_mm256_sub_ps(xs, c.shift_s), c.scale));
  const __m256 b = _mm256_max_ps(c.floor, _mm256_mul_ps(_mm256_sub_ps(xt, c.shift_t), c.scale));
  __m256 ea = exp_nonpositive(a), eb = exp_nonpositive(b), diff = _mm256_sub_ps(b, a);
  if constexpr (Masked) {
    ea = _mm256_and_ps(ea, _mm256_castsi256_ps(mask));
    eb = _mm256_and_ps(eb, _mm256_castsi256_ps(mask));
    diff = _mm256_and_ps(diff, _mm256_castsi256_ps(mask));
    _mm256_maskstore_ps(g, mask, ea);
  } else {
    _mm256_storeu_ps(g, ea);
  }
  _mm256_store_ps(eb_out, eb);
  zs = _mm256_add_ps(zs, ea);
  zt = _mm256_add_ps(zt, eb);
  cross = _mm256_fmadd_ps(eb, diff, cross);
}

MINNOW_TARGET_AVX2 inline void softmax_kl_rows(arch::avx2, const float* s, const float* t, float* g, index_t n,
                                               index_t cols, float inv_t, double grad_scale, float* eb_row,
                                               float* log_ratio, double* kl, index_t prefetch_limit) noexcept {
  constexpr index_t lanes = kKlLanes;
  const index_t full = cols / lanes * lanes, rest = cols - full;
  const __m256i tail_lo = first_lanes(rest < 8 ? rest : 8), tail_hi = first_lanes(rest > 8 ? rest - 8 : 0);
  const index_t full8 = cols / 8 * 8;
  const __m256i tail8 = first_lanes(cols - full8);
  const __m256 lowest = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  const __m256i all = _mm256_set1_epi32(-1);
  KlRow256 c;
  c.scale = _mm256_set1_ps(inv_t);
  c.floor = _mm256_set1_ps(scaled_logit_floor<float>);
  for (index_t i = 0; i < n; ++i) {
    const index_t row = i * cols;
    const float* si = s + row;
    const float* ti = t + row;
    float* gi = g + row;
    __m256 ms_lo = lowest, ms_hi = lowest, mt_lo = lowest, mt_hi = lowest;
    for (index_t j = 0; j < full; j += lanes) {
      ms_lo = _mm256_max_ps(_mm256_loadu_ps(si + j), ms_lo);
      ms_hi = _mm256_max_ps(_mm256_loadu_ps(si + j + 8), ms_hi);
      mt_lo = _mm256_max_ps(_mm256_loadu_ps(ti + j), mt_lo);
      mt_hi = _mm256_max_ps(_mm256_loadu_ps(ti + j + 8), mt_hi);
    }
    if (rest != 0) {
      ms_lo = _mm256_max_ps(load_or(lowest, si + full, tail_lo), ms_lo);
      ms_hi = _mm256_max_ps(load_or(lowest, si + full + 8, tail_hi), ms_hi);
      mt_lo = _mm256_max_ps(load_or(lowest, ti + full, tail_lo), mt_lo);
      mt_hi = _mm256_max_ps(load_or(lowest, ti + full + 8, tail_hi), mt_hi);
    }
    c.shift_s = _mm256_set1_ps(reduce_max_lanes(ms_lo, ms_hi));
    c.shift_t = _mm256_set1_ps(reduce_max_lanes(mt_lo, mt_hi));

    KlSum256 zs, zt, cross;
    clear(zs);
    clear(zt);
    clear(cross);
    int pending = 0;
    for (index_t j = 0; j < full; j += lanes) {
      if (row + j + kKlPrefetchAhead < prefetch_limit) {
        _mm_prefetch(reinterpret_cast<const char*>(si + j + kKlPrefetchAhead), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(ti + j + kKlPrefetchAhead), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(gi + j + kKlPrefetchAhead), _MM_HINT_T0);
      }
      kl_lanes<false>(si + j, ti + j, gi + j, eb_row + j, all, c, zs.lo, zt.lo, cross.lo);
      kl_lanes<false>(si + j + 8, ti + j + 8, gi + j + 8, eb_row + j + 8, all, c, zs.hi, zt.hi, cross.hi);
      if (++pending == kKlFlush) {
        flush(zs);
        flush(zt);
        flush(cross);
        pending = 0;
      }
    }
    if (rest != 0) {
      kl_lanes<true>(si + full, ti + full, gi + full, eb_row + full, tail_lo, c, zs.lo, zt.lo, cross.lo);
      kl_lanes<true>(si + full + 8, ti + full + 8, gi + full + 8, eb_row + full + 8, tail_hi, c, zs.hi, zt.hi,
                     cross.hi);
    }
    const double sum_s = total(zs), sum_t = total(zt);
    const KlRow result = kl_row(sum_s, sum_t, total(cross), grad_scale);
    log_ratio[i] = result.ratio_f;
    kl[i] = result.kl;

    const __m256 r = _mm256_set1_ps(result.ratio_f);
    const __m256 k = _mm256_set1_ps(result.grad_mul);
    for (index_t j = 0; j < full8; j += 8) {
      const __m256 ea = _mm256_loadu_ps(gi + j);
      _mm256_storeu_ps(gi + j, _mm256_mul_ps(_mm256_fnmadd_ps(_mm256_load_ps(eb_row + j), r, ea), k));
    }
    if (full8 != cols) {
      const __m256 ea = _mm256_maskload_ps(gi + full8, tail8);
      _mm256_maskstore_ps(gi + full8, tail8, _mm256_mul_ps(_mm256_fnmadd_ps(_mm256_load_ps(eb_row + full8), r, ea), k));
    }
  }
}

// ---- AVX-512: the 16 lanes in one register ----

/// exp_nonpositive on 16 lanes; vscalefps multiplies by 2^k with one rounding.
[[nodiscard]] MINNOW_TARGET_AVX512 inline __m512 exp_nonpositive(__m512 x) noexcept {
  x = _mm512_max_ps(_mm512_set1_ps(kExpLowest), x);
  const __m512 k =
      _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(kLn2Lo), r);
  __m512 y = _mm512_set1_ps(kExpP[0]);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExpP[1]));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExpP[2]));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExpP[3]));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExpP[4]));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExpP[5]));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(y, k);
}

[[nodiscard]] MINNOW_TARGET_AVX512 inline __m256 high_half(__m512 v) noexcept {
  return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

/// One row sum on the AVX-512 path: the float partial and the double totals of lanes 0–7 and 8–15.
struct KlSum512 {
  __m512 part;
  __m512d lo, hi;
};

MINNOW_TARGET_AVX512 inline void clear(KlSum512& sum) noexcept {
  sum.part = _mm512_setzero_ps();
  sum.lo = sum.hi = _mm512_setzero_pd();
}

MINNOW_TARGET_AVX512 inline void flush(KlSum512& sum) noexcept {
  sum.lo = _mm512_add_pd(sum.lo, _mm512_cvtps_pd(_mm512_castps512_ps256(sum.part)));
  sum.hi = _mm512_add_pd(sum.hi, _mm512_cvtps_pd(high_half(sum.part)));
  sum.part = _mm512_setzero_ps();
}

[[nodiscard]] MINNOW_TARGET_AVX512 inline double total(KlSum512& sum) noexcept {
  flush(sum);
  const __m512d s8 = _mm512_add_pd(sum.lo, sum.hi);
  return reduce_sum_lanes(_mm512_castpd512_pd256(s8), _mm512_extractf64x4_pd(s8, 1));
}

/// Per-row constants of the AVX-512 chunk step.
struct KlRow512 {
  __m512 shift_s, shift_t, scale, floor;
};

/// The 16 lanes of `mask` of the chunk step (see kl_lanes); masked-off lanes load 0 and their
/// exponentials and b − a are zeroed, so they add nothing.
MINNOW_TARGET_AVX512 inline void kl_chunk(const float* s, const float* t, float* g, float* eb_out, __mmask16 mask,
                                          const KlRow512& c, KlSum512& zs, KlSum512& zt, KlSum512& cross) noexcept {
  const __m512 xs = _mm512_maskz_loadu_ps(mask, s), xt = _mm512_maskz_loadu_ps(mask, t);
  const __m512 a = _mm512_max_ps(c.floor, _mm512_mul_ps(_mm512_sub_ps(xs, c.shift_s), c.scale));
  const __m512 b = _mm512_max_ps(c.floor, _mm512_mul_ps(_mm512_sub_ps(xt, c.shift_t), c.scale));
  const __m512 ea = _mm512_maskz_mov_ps(mask, exp_nonpositive(a));
  const __m512 eb = _mm512_maskz_mov_ps(mask, exp_nonpositive(b));
  _mm512_mask_storeu_ps(g, mask, ea);
  _mm512_store_ps(eb_out, eb);
  zs.part = _mm512_add_ps(zs.part, ea);
  zt.part = _mm512_add_ps(zt.part, eb);
  cross.part = _mm512_fmadd_ps(eb, _mm512_maskz_sub_ps(mask, b, a), cross.part);
}

MINNOW_TARGET_AVX512 inline void softmax_kl_rows(arch::avx512, const float* s, const float* t, float* g, index_t n,
                                                 index_t cols, float inv_t, double grad_scale, float* eb_row,
                                                 float* log_ratio, double* kl, index_t prefetch_limit) noexcept {
  constexpr index_t lanes = kKlLanes;
  const index_t full = cols / lanes * lanes;
  const auto tail = static_cast<__mmask16>((1u << (cols - full)) - 1u);
  const __m512 lowest = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  KlRow512 c;
  c.scale = _mm512_set1_ps(inv_t);
  c.floor = _mm512_set1_ps(scaled_logit_floor<float>);
  for (index_t i = 0; i < n; ++i) {
    const index_t row = i * cols;
    const float* si = s + row;
    const float* ti = t + row;
    float* gi = g + row;
    __m512 max_s = lowest, max_t = lowest;
    for (index_t j = 0; j < full; j += lanes) {
      max_s = _mm512_max_ps(_mm512_loadu_ps(si + j), max_s);
      max_t = _mm512_max_ps(_mm512_loadu_ps(ti + j), max_t);
    }
    if (tail != 0) {
      max_s = _mm512_max_ps(_mm512_mask_loadu_ps(lowest, tail, si + full), max_s);
      max_t = _mm512_max_ps(_mm512_mask_loadu_ps(lowest, tail, ti + full), max_t);
    }
    c.shift_s = _mm512_set1_ps(reduce_max_lanes(_mm512_castps512_ps256(max_s), high_half(max_s)));
    c.shift_t = _mm512_set1_ps(reduce_max_lanes(_mm512_castps512_ps256(max_t), high_half(max_t)));

    KlSum512 zs, zt, cross;
    clear(zs);
    clear(zt);
    clear(cross);
    int pending = 0;
    for (index_t j = 0; j < full; j += lanes) {
      if (row + j + kKlPrefetchAhead < prefetch_limit) {
        _mm_prefetch(reinterpret_cast<const char*>(si + j + kKlPrefetchAhead), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(ti + j + kKlPrefetchAhead), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(gi + j + kKlPrefetchAhead), _MM_HINT_T0);
      }
      kl_chunk(si + j, ti + j, gi + j, eb_row + j, static_cast<__mmask16>(0xFFFF), c, zs, zt, cross);
      if (++pending == kKlFlush) {
        flush(zs);
        flush(zt);
        flush(cross);
        pending = 0;
      }
    }
    if (tail != 0) kl_chunk(si + full, ti + full, gi + full, eb_row + full, tail, c, zs, zt, cross);
    const double sum_s = total(zs), sum_t = total(zt);
    const KlRow result = kl_row(sum_s, sum_t, total(cross), grad_scale);
    log_ratio[i] = result.ratio_f;
    kl[i] = result.kl;

    const __m512 r = _mm512_set1_ps(result.ratio_f);
    const __m512 k = _mm512_set1_ps(result.grad_mul);
    for (index_t j = 0; j < full; j += lanes) {
      const __m512 ea = _mm512_loadu_ps(gi + j);
      _mm512_storeu_ps(gi + j, _mm512_mul_ps(_mm512_fnmadd_ps(_mm512_load_ps(eb_row + j), r, ea), k));
    }
    if (tail != 0) {
      const __m512 ea = _mm512_maskz_loadu_ps(tail, gi + full);
      _mm512_mask_storeu_ps(gi + full, tail, _mm512_mul_ps(_mm512_fnmadd_ps(_mm512_load_ps(eb_row + full), r, ea), k));
    }
  }
}

#endif

}  // namespace minnow::simd::detail
