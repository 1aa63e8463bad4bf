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
/// largest term, and an infinite input becomes NaN in its tile (∞ − ∞). AVX-512 only; `kWinogradAvailable` is false elsewhere and callers use the direct kernel.

#include <minnow/simd/sparse_conv_grad.hpp>
#include <minnow/tensor.hpp>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace minnow::simd {

#if defined(__AVX512F__)
inline constexpr bool kWinogradAvailable = true;
#else
inline constexpr bool kWinogradAvailable = false;
#endif

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

#if defined(__AVX512F__)

namespace detail {

inline constexpr int kWinogradTiles = 12;  // tiles per register block: 12 × 2 vectors of output channels

// M[r][n] = Σ_c V[r][c] · U[c][n]: R tiles (rows of V, `channels` apart) × NV vectors of output channels
// (U's rows `u_stride` apart), into `m` [R][NV·16].
template <int R, int NV>
void winograd_product(const float* v, index_t channels, const float* u, index_t u_stride, float* m) noexcept {
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
void winograd_product_dispatch(int rows, const float* v, index_t channels, const float* u, index_t u_stride, float* m) noexcept {
  if constexpr (R > 1) {
    if (rows < R) {
      winograd_product_dispatch<NV, R - 1>(rows, v, channels, u, u_stride, m);
      return;
    }
  }
  winograd_product<R, NV>(v, channels, u, u_stride, m);
}

// The better of two candidates by PyTorch's pooling rule: the second wins when larger or NaN.
inline __mmask16 second_wins(__m512 first, __m512 second) noexcept {
  return _mm512_cmp_ps_mask(second, first, _CMP_GT_OQ) | _mm512_cmp_ps_mask(second, second, _CMP_UNORD_Q);
}

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
      w.products.resize({16 * detail::kWinogradTiles * 32});
      w.values.resize({g.tiles() * 32});
      w.winners.resize({g.tiles() * 32});
      w.sample = -1;
    }
  }

  /// Output channels [first, first + count) (`first` a multiple of 16, count ≤ 32) of sample `sample`,
  /// x [in, H, W]: `pooled` and `argmax` [out][Hp'][Wp'] get max(ReLU(conv + bias)) over each 2×2 window
  /// and the winner's index in the convolution's output plane. Thread `thread` keeps the sample's
  /// transformed input between calls.
  void run(const WinogradGeometry& g, const float* x, index_t sample, const float* bias, index_t first, index_t count,
           float* pooled, std::int32_t* argmax, int thread) noexcept {
    Work& w = work_[static_cast<std::size_t>(thread)];
    if (w.sample != sample) {
      transform_input(g, x, w);
      w.sample = sample;
    }
    const index_t tiles = g.tiles(), in = g.in_channels, stride = g.padded_out_channels();
    const int vectors = count > 16 ? 2 : 1;
    for (index_t t0 = 0; t0 < tiles; t0 += detail::kWinogradTiles) {
      const int rows = static_cast<int>(std::min<index_t>(detail::kWinogradTiles, tiles - t0));
      for (int xi = 0; xi < 16; ++xi) {
        const float* v = w.transformed.data() + (xi * tiles + t0) * in;
        const float* u = u_.data() + xi * in * stride + first;
        float* m = w.products.data() + xi * detail::kWinogradTiles * 32;
        if (vectors == 2) {
          detail::winograd_product_dispatch<2>(rows, v, in, u, stride, m);
        } else {
          detail::winograd_product_dispatch<1>(rows, v, in, u, stride, m);
        }
      }
      for (int r = 0; r < rows; ++r) {
        for (int n = 0; n < vectors; ++n) {
          const index_t o = first + 16 * n, at = (t0 + r) * 32 + 16 * n;
          finish_tile(g, w.products.data() + (r * vectors + n) * 16, t0 + r, o, std::min<index_t>(16, first + count - o), bias,
                      w.values.data() + at, w.winners.data() + at);
        }
      }
    }
    for (index_t l = 0; l < count; ++l) {
      float* p = pooled + (first + l) * tiles;
      std::int32_t* a = argmax + (first + l) * tiles;
      for (index_t t = 0; t < tiles; ++t) {
        p[t] = w.values.data()[t * 32 + l];
        a[t] = w.winners.data()[t * 32 + l];
      }
    }
  }

 private:
  struct Work {
    Tensor<float, 1> padded, transformed, products;  // channels-last input; V [ξ][tile][c]; M block [ξ][r][o]
    Tensor<float, 1> values;                         // pooled values [tile][32 channels]
    Tensor<std::int32_t, 1> winners;                 // and their winners
    index_t sample = -1;
  };

  // V[ξ][tile][c] = (Bᵀ·d·B)[ξ] for every tile's 4×4 patch d, 16 channels at a time;
  // Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1].
  static void transform_input(const WinogradGeometry& g, const float* x, Work& w) noexcept {
    const ChannelsLastGeometry layout = g.input();
    to_padded_channels_last(layout, x, w.padded.data());
    const index_t in = g.in_channels, tiles = g.tiles(), pw = g.pooled_width(), row = layout.row_stride();
    for (index_t c0 = 0; c0 < in; c0 += 16) {
      const index_t lanes = std::min<index_t>(16, in - c0);
      const auto mask = static_cast<__mmask16>(lanes == 16 ? 0xFFFF : (1u << lanes) - 1);
      for (index_t tile = 0; tile < tiles; ++tile) {
        const float* d = w.padded.data() + (2 * (tile / pw)) * row + 2 * (tile % pw) * in + c0;
        __m512 t[4][4];
        for (int j = 0; j < 4; ++j) {
          const __m512 d0 = _mm512_maskz_loadu_ps(mask, d + j * in), d1 = _mm512_maskz_loadu_ps(mask, d + row + j * in);
          const __m512 d2 = _mm512_maskz_loadu_ps(mask, d + 2 * row + j * in), d3 = _mm512_maskz_loadu_ps(mask, d + 3 * row + j * in);
          t[0][j] = _mm512_sub_ps(d0, d2);
          t[1][j] = _mm512_add_ps(d1, d2);
          t[2][j] = _mm512_sub_ps(d2, d1);
          t[3][j] = _mm512_sub_ps(d1, d3);
        }
        float* v = w.transformed.data() + tile * in + c0;
        const index_t step = tiles * in;  // between ξ
        for (int i = 0; i < 4; ++i) {
          _mm512_mask_storeu_ps(v + (i * 4 + 0) * step, mask, _mm512_sub_ps(t[i][0], t[i][2]));
          _mm512_mask_storeu_ps(v + (i * 4 + 1) * step, mask, _mm512_add_ps(t[i][1], t[i][2]));
          _mm512_mask_storeu_ps(v + (i * 4 + 2) * step, mask, _mm512_sub_ps(t[i][2], t[i][1]));
          _mm512_mask_storeu_ps(v + (i * 4 + 3) * step, mask, _mm512_sub_ps(t[i][1], t[i][3]));
        }
      }
    }
  }

  // One tile × 16 output channels: Y = Aᵀ·M·A + bias (Aᵀ = [1 1 1 0; 0 1 −1 −1]), ReLU, then the pool's
  // rule over the window in row-major order. `m` points at the tile's 16 channels of M[0]; M[ξ] follows
  // every kWinogradTiles · 32 floats.
  static void finish_tile(const WinogradGeometry& g, const float* m, index_t tile, index_t first, index_t lanes,
                          const float* bias, float* value, std::int32_t* winner) noexcept {
    const index_t xi_stride = detail::kWinogradTiles * 32;
    __m512 s[2][4];
    for (int j = 0; j < 4; ++j) {
      const __m512 m0 = _mm512_loadu_ps(m + (0 * 4 + j) * xi_stride), m1 = _mm512_loadu_ps(m + (1 * 4 + j) * xi_stride);
      const __m512 m2 = _mm512_loadu_ps(m + (2 * 4 + j) * xi_stride), m3 = _mm512_loadu_ps(m + (3 * 4 + j) * xi_stride);
      s[0][j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
      s[1][j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
    }
    const auto mask = static_cast<__mmask16>(lanes == 16 ? 0xFFFF : (1u << lanes) - 1);
    const __m512 b = _mm512_maskz_loadu_ps(mask, bias + first), zero = _mm512_setzero_ps();
    __m512 y[2][2];
    for (int i = 0; i < 2; ++i) {
      y[i][0] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s[i][0], s[i][1]), s[i][2]), b);
      y[i][1] = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s[i][1], s[i][2]), s[i][3]), b);
      // ReLU: only y < 0 becomes 0, so -0 and NaN stay, as in nn::ReLU.
      for (int j = 0; j < 2; ++j) y[i][j] = _mm512_mask_mov_ps(y[i][j], _mm512_cmp_ps_mask(y[i][j], zero, _CMP_LT_OQ), zero);
    }
    const __mmask16 t0 = detail::second_wins(y[0][0], y[0][1]), t1 = detail::second_wins(y[1][0], y[1][1]);
    const __m512 best0 = _mm512_mask_blend_ps(t0, y[0][0], y[0][1]), best1 = _mm512_mask_blend_ps(t1, y[1][0], y[1][1]);
    const __mmask16 rows = detail::second_wins(best0, best1);
    // Stage [tile][channel]: `run` transposes a whole block into the [channel][tile] outputs at the end.
    const index_t pw = g.pooled_width(), ow = g.out_width();
    const auto top = static_cast<std::int32_t>(2 * (tile / pw) * ow + 2 * (tile % pw));
    const auto below = top + static_cast<std::int32_t>(ow);
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i first_row = _mm512_mask_add_epi32(_mm512_set1_epi32(top), t0, _mm512_set1_epi32(top), one);
    const __m512i second_row = _mm512_mask_add_epi32(_mm512_set1_epi32(below), t1, _mm512_set1_epi32(below), one);
    _mm512_storeu_ps(value, _mm512_mask_blend_ps(rows, best0, best1));
    _mm512_storeu_si512(winner, _mm512_mask_blend_epi32(rows, first_row, second_row));
  }

  Tensor<float, 1> u_;  // U [ξ][in][padded out]
  std::vector<float> cached_weight_;  // the weights U was transformed from
  index_t cached_in_ = -1, cached_out_ = -1;
  std::vector<Work> work_;
};

#endif

}  // namespace minnow::simd
