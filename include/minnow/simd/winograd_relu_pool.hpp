#pragma once
/// @file simd/winograd_relu_pool.hpp
/// @brief A 3×3, stride-1 convolution by Winograd's F(2×2, 3×3), with ReLU and 2×2 max pooling applied to
/// each 2×2 output tile as it comes out of the transform.
///
/// F(2×2, 3×3) computes a 2×2 block of outputs from a 4×4 input patch with 16 multiplies per input channel
/// instead of 36 (Lavin & Gray 2016): with U = G·g·Gᵀ (the transformed 3×3 filter) and V = Bᵀ·d·B (the
/// transformed patch), the outputs are Aᵀ·(U ⊙ V)·A. Summed over input channels, the 16 products of the
/// transformed domain become 16 independent matrix products M[ξ] = V[ξ]·U[ξ] over (tile × channel) and
/// (channel × output channel), which run at FMA throughput. A 2×2 output tile is exactly one window of a
/// 2×2, stride-2 pool, so only whole windows are computed (floor-mode pooling drops the rest) and each tile
/// leaves the transform as one pooled value and its winner.
///
/// The transforms add rounding: results differ from a direct convolution by a few float ulps of the
/// largest term, and an infinite input becomes NaN in its tile (∞ − ∞). The three steps (input transform,
/// products, output transform with ReLU and pool) have kernels for each simd::arch path, chosen at run
/// time (simd/arch.hpp): AVX-512 (products: 12 tiles × 2 vectors of 16 output channels, 24 of the 32
/// registers), AVX2 (6 tiles × 2 vectors of 8, 12 of 16), NEON (6 tiles × 4 vectors of 4, 24 of 32) and the
/// scalar twin. Every path computes each
/// value by the same operations in the same order (a product is an FMA chain over the input channels from
/// zero), so all give the same bits. The buffers' layouts (output channels padded to multiples of 16) are
/// the same for every path.

#include <minnow/simd/arch.hpp>
#include <minnow/simd/sparse_conv_grad.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace minnow::simd {

/// One sample of a 3×3, stride-1 convolution with `padding`, followed by ReLU and a 2×2 pool.
struct WinogradGeometry {
  index_t in_channels, out_channels, padding, height, width;

  [[nodiscard]] index_t out_height() const noexcept { return height + 2 * padding - 2; }
  [[nodiscard]] index_t out_width() const noexcept { return width + 2 * padding - 2; }
  [[nodiscard]] index_t pooled_height() const noexcept { return out_height() / 2; }
  [[nodiscard]] index_t pooled_width() const noexcept { return out_width() / 2; }
  /// 2×2 output tiles, one per pooling window.
  [[nodiscard]] index_t tiles() const noexcept { return pooled_height() * pooled_width(); }
  /// Output channels rounded up to whole vectors: the transformed weights' row length.
  [[nodiscard]] index_t padded_out_channels() const noexcept { return (out_channels + 15) / 16 * 16; }
  /// The input's channels-last, zero-padded layout.
  [[nodiscard]] ChannelsLastGeometry input() const noexcept { return {in_channels, 3, padding, height, width}; }
};

namespace detail {

/// Tiles per block of the products (the rows of M one call computes), and output channels per `run`.
inline constexpr int kWinogradTiles = 12;
inline constexpr index_t kWinogradBlock = 32;
/// Floats between M[ξ] and M[ξ + 1] in a block's products.
inline constexpr index_t kWinogradXiStride = kWinogradTiles * kWinogradBlock;

// The pooling rule: `second` takes over from `first` when larger or NaN.
[[nodiscard]] inline bool winograd_second_wins(float first, float second) noexcept { return second > first || second != second; }

// Channel c of one tile's input transform: its 4×4 patch starts at d (rows `row` apart, channels
// `in` apart), and V[ξ] goes to v[ξ · step + c].
inline void winograd_input_channel(const float* d, index_t in, index_t row, index_t c, float* v, index_t step) noexcept {
  float t[4][4];
  for (int j = 0; j < 4; ++j) {
    const float d0 = d[j * in + c], d1 = d[row + j * in + c], d2 = d[2 * row + j * in + c], d3 = d[3 * row + j * in + c];
    t[0][j] = d0 - d2;
    t[1][j] = d1 + d2;
    t[2][j] = d2 - d1;
    t[3][j] = d1 - d3;
  }
  for (int i = 0; i < 4; ++i) {
    v[(i * 4 + 0) * step + c] = t[i][0] - t[i][2];
    v[(i * 4 + 1) * step + c] = t[i][1] + t[i][2];
    v[(i * 4 + 2) * step + c] = t[i][2] - t[i][1];
    v[(i * 4 + 3) * step + c] = t[i][1] - t[i][3];
  }
}

/// V[ξ][tile][c] = (Bᵀ·d·B)[ξ] for every tile's 4×4 patch d of `padded` (g.input()'s layout), with
/// Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]: the scalar twin.
inline void winograd_input(arch::scalar, const WinogradGeometry& g, const float* padded, float* transformed) noexcept {
  const index_t in = g.in_channels, tiles = g.tiles(), pw = g.pooled_width(), row = g.input().row_stride();
  const index_t step = tiles * in;  // between ξ
  for (index_t tile = 0; tile < tiles; ++tile) {
    const float* d = padded + (2 * (tile / pw)) * row + 2 * (tile % pw) * in;
    float* v = transformed + tile * in;
    for (index_t c = 0; c < in; ++c) winograd_input_channel(d, in, row, c, v, step);
  }
}

// winograd_products for `Width` output channels.
template <index_t Width>
void winograd_products_scalar(int rows, const float* v, index_t channels, const float* u, index_t u_stride, float* m) noexcept {
  for (int r = 0; r < rows; ++r) {
    float acc[Width] = {};
    for (index_t c = 0; c < channels; ++c) {
      const float x = v[r * channels + c];
      const float* w = u + c * u_stride;
      for (index_t n = 0; n < Width; ++n) acc[n] = std::fma(x, w[n], acc[n]);
    }
    std::copy_n(acc, Width, m + r * Width);
  }
}

/// M[r][n] = Σ_c V[r][c] · U[c][n] for `rows` ≤ kWinogradTiles tiles (rows of `v`, `channels` apart) and
/// `vectors` (1 or 2) × 16 output channels (U's rows `u_stride` apart), into `m` [rows][vectors·16]: the
/// scalar twin. Each sum is an FMA chain over c from zero.
inline void winograd_products(arch::scalar, int rows, const float* v, index_t channels, const float* u, index_t u_stride,
                              int vectors, float* m) noexcept {
  // A width known at compile time lets the compiler vectorize the twin where it can (NEON, -march builds).
  if (vectors == 2) {
    winograd_products_scalar<32>(rows, v, channels, u, u_stride, m);
  } else {
    winograd_products_scalar<16>(rows, v, channels, u, u_stride, m);
  }
}

/// The output transform of `rows` tiles from `first_tile`, 16 output channels from `first` (`lanes` of
/// them real) at a time, `vectors` of them: Y = Aᵀ·M·A + bias (Aᵀ = [1 1 1 0; 0 1 −1 −1]), ReLU, then the
/// pool's rule over the window in row-major order, into `values` and `winners` [tile][kWinogradBlock]
/// (the winner's index in the convolution's output plane). `m` holds the block's products as
/// winograd_products wrote them, M[ξ] every kWinogradXiStride floats. The scalar twin.
inline void winograd_finish(arch::scalar, const WinogradGeometry& g, const float* m, index_t first_tile, int rows, int vectors,
                            index_t first, index_t count, const float* bias, float* values, std::int32_t* winners) noexcept {
  const index_t pw = g.pooled_width(), ow = g.out_width();
  for (int r = 0; r < rows; ++r) {
    const index_t tile = first_tile + r;
    const auto top = static_cast<std::int32_t>(2 * (tile / pw) * ow + 2 * (tile % pw));
    const auto below = top + static_cast<std::int32_t>(ow);
    for (index_t l = 0; l < 16 * vectors; ++l) {
      const float* ml = m + r * 16 * vectors + l;
      float s[2][4];
      for (int j = 0; j < 4; ++j) {
        const float m0 = ml[(0 * 4 + j) * kWinogradXiStride], m1 = ml[(1 * 4 + j) * kWinogradXiStride];
        const float m2 = ml[(2 * 4 + j) * kWinogradXiStride], m3 = ml[(3 * 4 + j) * kWinogradXiStride];
        s[0][j] = (m0 + m1) + m2;
        s[1][j] = (m1 - m2) - m3;
      }
      const float b = l < count ? bias[first + l] : 0.0f;
      float y[2][2];
      for (int i = 0; i < 2; ++i) {
        y[i][0] = ((s[i][0] + s[i][1]) + s[i][2]) + b;
        y[i][1] = ((s[i][1] - s[i][2]) - s[i][3]) + b;
        // ReLU: only y < 0 becomes 0, so -0 and NaN stay, as in nn::ReLU.
        for (int j = 0; j < 2; ++j) y[i][j] = y[i][j] < 0.0f ? 0.0f : y[i][j];
      }
      const bool t0 = winograd_second_wins(y[0][0], y[0][1]), t1 = winograd_second_wins(y[1][0], y[1][1]);
      const float best0 = t0 ? y[0][1] : y[0][0], best1 = t1 ? y[1][1] : y[1][0];
      const bool second_row = winograd_second_wins(best0, best1);
      values[tile * kWinogradBlock + l] = second_row ? best1 : best0;
      winners[tile * kWinogradBlock + l] = second_row ? below + (t1 ? 1 : 0) : top + (t0 ? 1 : 0);
    }
  }
}

#if MINNOW_X86_KERNELS
// A mask of the `lanes` first of 8 lanes, for maskload / maskstore.
[[nodiscard]] MINNOW_TARGET_AVX2 inline __m256i winograd_lane_mask(index_t lanes) noexcept {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(lanes)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The pooling rule on 8 lanes: all ones where `second` takes over.
[[nodiscard]] MINNOW_TARGET_AVX2 inline __m256 winograd_second_wins(__m256 first, __m256 second) noexcept {
  return _mm256_or_ps(_mm256_cmp_ps(second, first, _CMP_GT_OQ), _mm256_cmp_ps(second, second, _CMP_UNORD_Q));
}

/// The input transform, 8 channels at a time.
MINNOW_TARGET_AVX2 inline void winograd_input(arch::avx2, const WinogradGeometry& g, const float* padded, float* transformed) noexcept {
  const index_t in = g.in_channels, tiles = g.tiles(), pw = g.pooled_width(), row = g.input().row_stride();
  const index_t step = tiles * in;
  for (index_t c0 = 0; c0 < in; c0 += 8) {
    const __m256i mask = winograd_lane_mask(std::min<index_t>(8, in - c0));
    for (index_t tile = 0; tile < tiles; ++tile) {
      const float* d = padded + (2 * (tile / pw)) * row + 2 * (tile % pw) * in + c0;
      __m256 t[4][4];
      for (int j = 0; j < 4; ++j) {
        const __m256 d0 = _mm256_maskload_ps(d + j * in, mask), d1 = _mm256_maskload_ps(d + row + j * in, mask);
        const __m256 d2 = _mm256_maskload_ps(d + 2 * row + j * in, mask), d3 = _mm256_maskload_ps(d + 3 * row + j * in, mask);
        t[0][j] = _mm256_sub_ps(d0, d2);
        t[1][j] = _mm256_add_ps(d1, d2);
        t[2][j] = _mm256_sub_ps(d2, d1);
        t[3][j] = _mm256_sub_ps(d1, d3);
      }
      float* v = transformed + tile * in + c0;
      for (int i = 0; i < 4; ++i) {
        _mm256_maskstore_ps(v + (i * 4 + 0) * step, mask, _mm256_sub_ps(t[i][0], t[i][2]));
        _mm256_maskstore_ps(v + (i * 4 + 1) * step, mask, _mm256_add_ps(t[i][1], t[i][2]));
        _mm256_maskstore_ps(v + (i * 4 + 2) * step, mask, _mm256_sub_ps(t[i][2], t[i][1]));
        _mm256_maskstore_ps(v + (i * 4 + 3) * step, mask, _mm256_sub_ps(t[i][1], t[i][3]));
      }
    }
  }
}

// R tiles × 16 output channels (two registers) from `u`, into rows of `m` `width` floats apart.
template <int R>
MINNOW_TARGET_AVX2 inline void winograd_product_avx2(const float* v, index_t channels, const float* u, index_t u_stride, float* m,
                                                     index_t width) noexcept {
  __m256 acc[R][2];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (index_t c = 0; c < channels; ++c) {
    const __m256 w0 = _mm256_loadu_ps(u + c * u_stride), w1 = _mm256_loadu_ps(u + c * u_stride + 8);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 x = _mm256_broadcast_ss(v + r * channels + c);
      acc[r][0] = _mm256_fmadd_ps(x, w0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(x, w1, acc[r][1]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(m + r * width, acc[r][0]);
    _mm256_storeu_ps(m + r * width + 8, acc[r][1]);
  }
}

/// The products, 6 tiles × 16 output channels at a time.
MINNOW_TARGET_AVX2 inline void winograd_products(arch::avx2, int rows, const float* v, index_t channels, const float* u,
                                                 index_t u_stride, int vectors, float* m) noexcept {
  const index_t width = 16 * vectors;
  for (int n = 0; n < vectors; ++n) {
    for (int r0 = 0; r0 < rows; r0 += 6) {
      const float* vr = v + r0 * channels;
      float* mr = m + r0 * width + 16 * n;
      switch (std::min(6, rows - r0)) {
        case 6: winograd_product_avx2<6>(vr, channels, u + 16 * n, u_stride, mr, width); break;
        case 5: winograd_product_avx2<5>(vr, channels, u + 16 * n, u_stride, mr, width); break;
        case 4: winograd_product_avx2<4>(vr, channels, u + 16 * n, u_stride, mr, width); break;
        case 3: winograd_product_avx2<3>(vr, channels, u + 16 * n, u_stride, mr, width); break;
        case 2: winograd_product_avx2<2>(vr, channels, u + 16 * n, u_stride, mr, width); break;
        default: winograd_product_avx2<1>(vr, channels, u + 16 * n, u_stride, mr, width); break;
      }
    }
  }
}

/// The output transform, 8 output channels at a time.
MINNOW_TARGET_AVX2 inline void winograd_finish(arch::avx2, const WinogradGeometry& g, const float* m, index_t first_tile, int rows,
                                               int vectors, index_t first, index_t count, const float* bias, float* values,
                                               std::int32_t* winners) noexcept {
  const index_t pw = g.pooled_width(), ow = g.out_width();
  const __m256 zero = _mm256_setzero_ps();
  for (int r = 0; r < rows; ++r) {
    const index_t tile = first_tile + r;
    const auto top = static_cast<std::int32_t>(2 * (tile / pw) * ow + 2 * (tile % pw));
    const __m256i top_index = _mm256_set1_epi32(top), below_index = _mm256_set1_epi32(top + static_cast<std::int32_t>(ow));
    for (index_t l = 0; l < 16 * vectors; l += 8) {
      const float* ml = m + r * 16 * vectors + l;
      __m256 s[2][4];
      for (int j = 0; j < 4; ++j) {
        const __m256 m0 = _mm256_loadu_ps(ml + (0 * 4 + j) * kWinogradXiStride), m1 = _mm256_loadu_ps(ml + (1 * 4 + j) * kWinogradXiStride);
        const __m256 m2 = _mm256_loadu_ps(ml + (2 * 4 + j) * kWinogradXiStride), m3 = _mm256_loadu_ps(ml + (3 * 4 + j) * kWinogradXiStride);
        s[0][j] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
        s[1][j] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
      }
      const __m256 b = _mm256_maskload_ps(bias + first + l, winograd_lane_mask(std::clamp<index_t>(count - l, 0, 8)));
      __m256 y[2][2];
      for (int i = 0; i < 2; ++i) {
        y[i][0] = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s[i][0], s[i][1]), s[i][2]), b);
        y[i][1] = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(s[i][1], s[i][2]), s[i][3]), b);
        for (int j = 0; j < 2; ++j) y[i][j] = _mm256_blendv_ps(y[i][j], zero, _mm256_cmp_ps(y[i][j], zero, _CMP_LT_OQ));
      }
      const __m256 t0 = winograd_second_wins(y[0][0], y[0][1]), t1 = winograd_second_wins(y[1][0], y[1][1]);
      const __m256 best0 = _mm256_blendv_ps(y[0][0], y[0][1], t0), best1 = _mm256_blendv_ps(y[1][0], y[1][1], t1);
      const __m256 second_row = winograd_second_wins(best0, best1);
      // A true lane of t0 / t1 is -1: subtracting it adds 1.
      const __m256i first_row = _mm256_sub_epi32(top_index, _mm256_castps_si256(t0));
      const __m256i below_row = _mm256_sub_epi32(below_index, _mm256_castps_si256(t1));
      _mm256_storeu_ps(values + tile * kWinogradBlock + l, _mm256_blendv_ps(best0, best1, second_row));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(winners + tile * kWinogradBlock + l),
                          _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(first_row), _mm256_castsi256_ps(below_row), second_row)));
    }
  }
}

/// The input transform, 16 channels at a time.
MINNOW_TARGET_AVX512 inline void winograd_input(arch::avx512, const WinogradGeometry& g, const float* padded,
                                                float* transformed) noexcept {
  const index_t in = g.in_channels, tiles = g.tiles(), pw = g.pooled_width(), row = g.input().row_stride();
  const index_t step = tiles * in;
  for (index_t c0 = 0; c0 < in; c0 += 16) {
    const index_t lanes = std::min<index_t>(16, in - c0);
    const auto mask = static_cast<__mmask16>(lanes == 16 ? 0xFFFF : (1u << lanes) - 1);
    for (index_t tile = 0; tile < tiles; ++tile) {
      const float* d = padded + (2 * (tile / pw)) * row + 2 * (tile % pw) * in + c0;
      __m512 t[4][4];
      for (int j = 0; j < 4; ++j) {
        const __m512 d0 = _mm512_maskz_loadu_ps(mask, d + j * in), d1 = _mm512_maskz_loadu_ps(mask, d + row + j * in);
        const __m512 d2 = _mm512_maskz_loadu_ps(mask, d + 2 * row + j * in), d3 = _mm512_maskz_loadu_ps(mask, d + 3 * row + j * in);
        t[0][j] = _mm512_sub_ps(d0, d2);
        t[1][j] = _mm512_add_ps(d1, d2);
        t[2][j] = _mm512_sub_ps(d2, d1);
        t[3][j] = _mm512_sub_ps(d1, d3);
      }
      float* v = transformed + tile * in + c0;
      for (int i = 0; i < 4; ++i) {
        _mm512_mask_storeu_ps(v + (i * 4 + 0) * step, mask, _mm512_sub_ps(t[i][0], t[i][2]));
        _mm512_mask_storeu_ps(v + (i * 4 + 1) * step, mask, _mm512_add_ps(t[i][1], t[i][2]));
        _mm512_mask_storeu_ps(v + (i * 4 + 2) * step, mask, _mm512_sub_ps(t[i][2], t[i][1]));
        _mm512_mask_storeu_ps(v + (i * 4 + 3) * step, mask, _mm512_sub_ps(t[i][1], t[i][3]));
      }
    }
  }
}

// R tiles × NV vectors of 16 output channels, into `m` [R][NV·16].
template <int R, int NV>
MINNOW_TARGET_AVX512 inline void winograd_product_avx512(const float* v, index_t channels, const float* u, index_t u_stride,
                                                         float* m) noexcept {
  __m512 acc[R][NV];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int n = 0; n < NV; ++n) acc[r][n] = _mm512_setzero_ps();
  }
  for (index_t c = 0; c < channels; ++c) {
    __m512 w[NV];
#pragma GCC unroll 2
    for (int n = 0; n < NV; ++n) w[n] = _mm512_loadu_ps(u + c * u_stride + 16 * n);
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_set1_ps(v[r * channels + c]);
#pragma GCC unroll 2
      for (int n = 0; n < NV; ++n) acc[r][n] = _mm512_fmadd_ps(x, w[n], acc[r][n]);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int n = 0; n < NV; ++n) _mm512_storeu_ps(m + (r * NV + n) * 16, acc[r][n]);
  }
}

template <int NV, int R = kWinogradTiles>
MINNOW_TARGET_AVX512 inline void winograd_products_avx512(int rows, const float* v, index_t channels, const float* u,
                                                          index_t u_stride, float* m) noexcept {
  if constexpr (R > 1) {
    if (rows < R) {
      winograd_products_avx512<NV, R - 1>(rows, v, channels, u, u_stride, m);
      return;
    }
  }
  winograd_product_avx512<R, NV>(v, channels, u, u_stride, m);
}

/// The products, all `rows` tiles × `vectors` × 16 output channels at once.
MINNOW_TARGET_AVX512 inline void winograd_products(arch::avx512, int rows, const float* v, index_t channels, const float* u,
                                                   index_t u_stride, int vectors, float* m) noexcept {
  if (vectors == 2) {
    winograd_products_avx512<2>(rows, v, channels, u, u_stride, m);
  } else {
    winograd_products_avx512<1>(rows, v, channels, u, u_stride, m);
  }
}

// The pooling rule on 16 lanes.
[[nodiscard]] MINNOW_TARGET_AVX512 inline __mmask16 winograd_second_wins(__m512 first, __m512 second) noexcept {
  return _mm512_cmp_ps_mask(second, first, _CMP_GT_OQ) | _mm512_cmp_ps_mask(second, second, _CMP_UNORD_Q);
}

/// The output transform, 16 output channels at a time.
MINNOW_TARGET_AVX512 inline void winograd_finish(arch::avx512, const WinogradGeometry& g, const float* m, index_t first_tile,
                                                 int rows, int vectors, index_t first, index_t count, const float* bias,
                                                 float* values, std::int32_t* winners) noexcept {
  const index_t pw = g.pooled_width(), ow = g.out_width();
  const __m512 zero = _mm512_setzero_ps();
  const __m512i one = _mm512_set1_epi32(1);
  for (int r = 0; r < rows; ++r) {
    const index_t tile = first_tile + r;
    const auto top = static_cast<std::int32_t>(2 * (tile / pw) * ow + 2 * (tile % pw));
    const __m512i top_index = _mm512_set1_epi32(top), below_index = _mm512_set1_epi32(top + static_cast<std::int32_t>(ow));
    for (index_t l = 0; l < 16 * vectors; l += 16) {
      const float* ml = m + r * 16 * vectors + l;
      __m512 s[2][4];
      for (int j = 0; j < 4; ++j) {
        const __m512 m0 = _mm512_loadu_ps(ml + (0 * 4 + j) * kWinogradXiStride), m1 = _mm512_loadu_ps(ml + (1 * 4 + j) * kWinogradXiStride);
        const __m512 m2 = _mm512_loadu_ps(ml + (2 * 4 + j) * kWinogradXiStride), m3 = _mm512_loadu_ps(ml + (3 * 4 + j) * kWinogradXiStride);
        s[0][j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
        s[1][j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
      }
      const index_t lanes = std::clamp<index_t>(count - l, 0, 16);
      const auto mask = static_cast<__mmask16>(lanes == 16 ? 0xFFFF : (1u << lanes) - 1);
      const __m512 b = _mm512_maskz_loadu_ps(mask, bias + first + l);
      __m512 y[2][2];
      for (int i = 0; i < 2; ++i) {
        y[i][0] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s[i][0], s[i][1]), s[i][2]), b);
        y[i][1] = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s[i][1], s[i][2]), s[i][3]), b);
        for (int j = 0; j < 2; ++j) y[i][j] = _mm512_mask_mov_ps(y[i][j], _mm512_cmp_ps_mask(y[i][j], zero, _CMP_LT_OQ), zero);
      }
      const __mmask16 t0 = winograd_second_wins(y[0][0], y[0][1]), t1 = winograd_second_wins(y[1][0], y[1][1]);
      const __m512 best0 = _mm512_mask_blend_ps(t0, y[0][0], y[0][1]), best1 = _mm512_mask_blend_ps(t1, y[1][0], y[1][1]);
      const __mmask16 second_row = winograd_second_wins(best0, best1);
      const __m512i first_row = _mm512_mask_add_epi32(top_index, t0, top_index, one);
      const __m512i below_row = _mm512_mask_add_epi32(below_index, t1, below_index, one);
      _mm512_storeu_ps(values + tile * kWinogradBlock + l, _mm512_mask_blend_ps(second_row, best0, best1));
      _mm512_storeu_si512(winners + tile * kWinogradBlock + l, _mm512_mask_blend_epi32(second_row, first_row, below_row));
    }
  }
}
#endif

#if MINNOW_ARM_KERNELS
/// The input transform, 4 channels at a time (the last up to 3 by the scalar twin's operations).
inline void winograd_input(arch::neon, const WinogradGeometry& g, const float* padded, float* transformed) noexcept {
  const index_t in = g.in_channels, tiles = g.tiles(), pw = g.pooled_width(), row = g.input().row_stride();
  const index_t step = tiles * in, whole = in / 4 * 4;
  for (index_t tile = 0; tile < tiles; ++tile) {
    const float* d = padded + (2 * (tile / pw)) * row + 2 * (tile % pw) * in;
    float* v = transformed + tile * in;
    for (index_t c = 0; c < whole; c += 4) {
      float32x4_t t[4][4];
      for (int j = 0; j < 4; ++j) {
        const float32x4_t d0 = vld1q_f32(d + j * in + c), d1 = vld1q_f32(d + row + j * in + c);
        const float32x4_t d2 = vld1q_f32(d + 2 * row + j * in + c), d3 = vld1q_f32(d + 3 * row + j * in + c);
        t[0][j] = vsubq_f32(d0, d2);
        t[1][j] = vaddq_f32(d1, d2);
        t[2][j] = vsubq_f32(d2, d1);
        t[3][j] = vsubq_f32(d1, d3);
      }
      for (int i = 0; i < 4; ++i) {
        vst1q_f32(v + (i * 4 + 0) * step + c, vsubq_f32(t[i][0], t[i][2]));
        vst1q_f32(v + (i * 4 + 1) * step + c, vaddq_f32(t[i][1], t[i][2]));
        vst1q_f32(v + (i * 4 + 2) * step + c, vsubq_f32(t[i][2], t[i][1]));
        vst1q_f32(v + (i * 4 + 3) * step + c, vsubq_f32(t[i][1], t[i][3]));
      }
    }
    for (index_t c = whole; c < in; ++c) winograd_input_channel(d, in, row, c, v, step);
  }
}

// R tiles × 16 output channels (four registers) from `u`, into rows of `m` `width` floats apart.
template <int R>
inline void winograd_product_neon(const float* v, index_t channels, const float* u, index_t u_stride, float* m,
                                  index_t width) noexcept {
  float32x4_t acc[R][4];
  for (int r = 0; r < R; ++r) {
    for (int q = 0; q < 4; ++q) acc[r][q] = vdupq_n_f32(0.0f);
  }
  for (index_t c = 0; c < channels; ++c) {
    float32x4_t w[4];
    for (int q = 0; q < 4; ++q) w[q] = vld1q_f32(u + c * u_stride + 4 * q);
    for (int r = 0; r < R; ++r) {
      const float x = v[r * channels + c];
      for (int q = 0; q < 4; ++q) acc[r][q] = vfmaq_n_f32(acc[r][q], w[q], x);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int q = 0; q < 4; ++q) vst1q_f32(m + r * width + 4 * q, acc[r][q]);
  }
}

/// The products, 6 tiles × 16 output channels at a time (24 of the 32 registers accumulate).
inline void winograd_products(arch::neon, int rows, const float* v, index_t channels, const float* u, index_t u_stride,
                              int vectors, float* m) noexcept {
  const index_t width = 16 * vectors;
  for (int n = 0; n < vectors; ++n) {
    for (int r0 = 0; r0 < rows; r0 += 6) {
      const float* vr = v + r0 * channels;
      float* mr = m + r0 * width + 16 * n;
      switch (std::min(6, rows - r0)) {
        case 6: winograd_product_neon<6>(vr, channels, u + 16 * n, u_stride, mr, width); break;
        case 5: winograd_product_neon<5>(vr, channels, u + 16 * n, u_stride, mr, width); break;
        case 4: winograd_product_neon<4>(vr, channels, u + 16 * n, u_stride, mr, width); break;
        case 3: winograd_product_neon<3>(vr, channels, u + 16 * n, u_stride, mr, width); break;
        case 2: winograd_product_neon<2>(vr, channels, u + 16 * n, u_stride, mr, width); break;
        default: winograd_product_neon<1>(vr, channels, u + 16 * n, u_stride, mr, width); break;
      }
    }
  }
}

// The pooling rule on 4 lanes: all ones where `second` takes over (larger, or NaN).
[[nodiscard]] inline uint32x4_t winograd_second_wins(float32x4_t first, float32x4_t second) noexcept {
  return vorrq_u32(vcgtq_f32(second, first), vmvnq_u32(vceqq_f32(second, second)));
}

/// The output transform, 4 output channels at a time.
inline void winograd_finish(arch::neon, const WinogradGeometry& g, const float* m, index_t first_tile, int rows, int vectors,
                            index_t first, index_t count, const float* bias, float* values, std::int32_t* winners) noexcept {
  const index_t pw = g.pooled_width(), ow = g.out_width();
  const float32x4_t zero = vdupq_n_f32(0.0f);
  for (int r = 0; r < rows; ++r) {
    const index_t tile = first_tile + r;
    const auto top = static_cast<std::int32_t>(2 * (tile / pw) * ow + 2 * (tile % pw));
    const int32x4_t top_index = vdupq_n_s32(top), below_index = vdupq_n_s32(top + static_cast<std::int32_t>(ow));
    for (index_t l = 0; l < 16 * vectors; l += 4) {
      const float* ml = m + r * 16 * vectors + l;
      float32x4_t s[2][4];
      for (int j = 0; j < 4; ++j) {
        const float32x4_t m0 = vld1q_f32(ml + (0 * 4 + j) * kWinogradXiStride), m1 = vld1q_f32(ml + (1 * 4 + j) * kWinogradXiStride);
        const float32x4_t m2 = vld1q_f32(ml + (2 * 4 + j) * kWinogradXiStride), m3 = vld1q_f32(ml + (3 * 4 + j) * kWinogradXiStride);
        s[0][j] = vaddq_f32(vaddq_f32(m0, m1), m2);
        s[1][j] = vsubq_f32(vsubq_f32(m1, m2), m3);
      }
      float bias_lanes[4];
      for (index_t i = 0; i < 4; ++i) bias_lanes[i] = l + i < count ? bias[first + l + i] : 0.0f;
      const float32x4_t b = vld1q_f32(bias_lanes);
      float32x4_t y[2][2];
      for (int i = 0; i < 2; ++i) {
        y[i][0] = vaddq_f32(vaddq_f32(vaddq_f32(s[i][0], s[i][1]), s[i][2]), b);
        y[i][1] = vaddq_f32(vsubq_f32(vsubq_f32(s[i][1], s[i][2]), s[i][3]), b);
        for (int j = 0; j < 2; ++j) y[i][j] = vbslq_f32(vcltq_f32(y[i][j], zero), zero, y[i][j]);
      }
      const uint32x4_t t0 = winograd_second_wins(y[0][0], y[0][1]), t1 = winograd_second_wins(y[1][0], y[1][1]);
      const float32x4_t best0 = vbslq_f32(t0, y[0][1], y[0][0]), best1 = vbslq_f32(t1, y[1][1], y[1][0]);
      const uint32x4_t second_row = winograd_second_wins(best0, best1);
      // A true lane of t0 / t1 is -1 as a signed integer: subtracting it adds 1.
      const int32x4_t first_row = vsubq_s32(top_index, vreinterpretq_s32_u32(t0));
      const int32x4_t below_row = vsubq_s32(below_index, vreinterpretq_s32_u32(t1));
      vst1q_f32(values + tile * kWinogradBlock + l, vbslq_f32(second_row, best1, best0));
      vst1q_s32(winners + tile * kWinogradBlock + l, vbslq_s32(second_row, below_row, first_row));
    }
  }
}
#endif

}  // namespace detail

/// @brief The transformed weights and per-thread buffers of one Winograd layer.
class WinogradReluPool {
 public:
  /// Transforms the weights [out, in, 3, 3] for `g`, unless they and `g`'s channels are those of the last call.
  void set_weights(const WinogradGeometry& g, const float* weight) {
    const index_t in = g.in_channels, out = g.out_channels, stride = g.padded_out_channels();
    const auto n = static_cast<std::size_t>(out * in * 9);
    // Comparing costs far less than transforming (a batch-1 forward would otherwise transform every call).
    if (in == cached_in_ && out == cached_out_ && std::memcmp(weight, cached_weight_.data(), n * sizeof(float)) == 0) return;
    cached_in_ = -1;  // no valid cache until the transform below has completed
    cached_weight_.assign(weight, weight + n);
    u_.resize({16 * in * stride});
    u_.fill(0.0f);
    float* u = u_.data();
    for (index_t o = 0; o < out; ++o) {
      for (index_t c = 0; c < in; ++c) {
        const float* k = weight + (o * in + c) * 9;
        // t = G·g (4×3), then U = t·Gᵀ (4×4); G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1].
        float t[4][3];
        for (int j = 0; j < 3; ++j) {
          t[0][j] = k[j];
          t[1][j] = 0.5f * (k[j] + k[3 + j] + k[6 + j]);
          t[2][j] = 0.5f * (k[j] - k[3 + j] + k[6 + j]);
          t[3][j] = k[6 + j];
        }
        for (int i = 0; i < 4; ++i) {
          const float row[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
          for (int j = 0; j < 4; ++j) u[((i * 4 + j) * in + c) * stride + o] = row[j];
        }
      }
    }
    cached_in_ = in;
    cached_out_ = out;
  }

  /// Per-thread buffers for `threads` threads.
  void reserve(const WinogradGeometry& g, int threads) {
    if (work_.size() < static_cast<std::size_t>(threads)) work_.resize(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) {
      Work& w = work_[static_cast<std::size_t>(t)];
      w.padded.resize({g.input().size()});
      w.transformed.resize({16 * g.tiles() * g.in_channels});
      w.products.resize({16 * detail::kWinogradXiStride});
      w.values.resize({g.tiles() * detail::kWinogradBlock});
      w.winners.resize({g.tiles() * detail::kWinogradBlock});
      w.sample = -1;
    }
  }

  /// Output channels [first, first + count) (`first` a multiple of 16, count ≤ 32) of sample `sample`,
  /// x [in, H, W]: `pooled` and `argmax` [out][Hp'][Wp'] get max(ReLU(conv + bias)) over each 2×2 window
  /// and the winner's index in the convolution's output plane, computed by the kernels of the tag `Arch`
  /// (which this CPU must run: simd::dispatch's choice, or a tag checked by the caller). Every path gives
  /// the same bits. Thread `thread` keeps the sample's transformed input between calls.
  template <class Arch>
  void run(Arch tag, const WinogradGeometry& g, const float* x, index_t sample, const float* bias, index_t first, index_t count,
           float* pooled, std::int32_t* argmax, int thread) noexcept {
    static_assert(std::is_base_of_v<arch::scalar, Arch>, "Arch must be a simd::arch kernel tag");
    using detail::kWinogradBlock;
    using detail::kWinogradTiles;
    Work& w = work_[static_cast<std::size_t>(thread)];
    if (w.sample != sample) {
      to_padded_channels_last(g.input(), x, w.padded.data());
      detail::winograd_input(tag, g, w.padded.data(), w.transformed.data());
      w.sample = sample;
    }
    const index_t tiles = g.tiles(), in = g.in_channels, stride = g.padded_out_channels();
    const int vectors = count > 16 ? 2 : 1;
    for (index_t t0 = 0; t0 < tiles; t0 += kWinogradTiles) {
      const int rows = static_cast<int>(std::min<index_t>(kWinogradTiles, tiles - t0));
      for (int xi = 0; xi < 16; ++xi) {
        detail::winograd_products(tag, rows, w.transformed.data() + (xi * tiles + t0) * in, in, u_.data() + xi * in * stride + first,
                                  stride, vectors, w.products.data() + xi * detail::kWinogradXiStride);
      }
      detail::winograd_finish(tag, g, w.products.data(), t0, rows, vectors, first, count, bias, w.values.data(), w.winners.data());
    }
    // The block's [tile][channel] staging → the [channel][tile] outputs.
    for (index_t l = 0; l < count; ++l) {
      float* p = pooled + (first + l) * tiles;
      std::int32_t* a = argmax + (first + l) * tiles;
      for (index_t t = 0; t < tiles; ++t) {
        p[t] = w.values.data()[t * kWinogradBlock + l];
        a[t] = w.winners.data()[t * kWinogradBlock + l];
      }
    }
  }

  /// The same with the kernels of `Arch` (by default the CPU's widest).
  /// @throws value_error (from with_arch) when `Arch` names a set this CPU lacks.
  template <class Arch = arch::automatic>
  void run(const WinogradGeometry& g, const float* x, index_t sample, const float* bias, index_t first, index_t count,
           float* pooled, std::int32_t* argmax, int thread) {
    with_arch<Arch>("simd::WinogradReluPool::run",
                    [&](auto tag) { run(tag, g, x, sample, bias, first, count, pooled, argmax, thread); });
  }

 private:
  struct Work {
    Tensor<float, 1> padded, transformed, products;  // channels-last input; V [ξ][tile][c]; M block [ξ][r][o]
    Tensor<float, 1> values;                         // pooled values [tile][32 channels]
    Tensor<std::int32_t, 1> winners;                 // and their winners
    index_t sample = -1;
  };

  Tensor<float, 1> u_;  // U [ξ][in][padded out]
  std::vector<float> cached_weight_;  // the weights U was transformed from
  index_t cached_in_ = -1, cached_out_ = -1;
  std::vector<Work> work_;
};

}  // namespace minnow::simd
