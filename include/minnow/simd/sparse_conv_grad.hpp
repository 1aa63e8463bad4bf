#pragma once
/// @file simd/sparse_conv_grad.hpp
/// @brief The gradients of a stride-1 convolution from the few output gradients that are not zero.
///
/// Behind ReLU and a 2×2 max pool at most one convolution output in four gets a gradient, so a dense
/// im2col + GEMM backward spends three quarters of its multiply-adds on zeros. Here each nonzero output
/// gradient g at (o, y, x) is one *entry*: the weight gradient of channel o gains g times the entry's
/// receptive field, and the input gradient's receptive field gains g times channel o's weights.
///
/// Both sides are stored channels-last with the convolution's zero padding ([Hp][Wp][C]), and the weights
/// and their gradient as [o][i][j][c]. Kernel row i of a receptive field is then `kernel · C` contiguous
/// floats, as is kernel row i of one channel's weights. Both gradients become weighted sums of rows, kept
/// in registers while the entries stream by: the weight gradient of channel o sums its entries' fields,
/// and the input gradient of a receptive field sums the weights of the channels with an entry there,
/// then adds the sum into the field once.

#include <minnow/tensor.hpp>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>

namespace minnow::simd {

/// One nonzero output gradient: `offset` is where its receptive field starts in the padded
/// channels-last input, `((y · Wp) + x) · C` for output (y, x).
struct SparseGradEntry {
  index_t offset;
  float grad;
};

/// A stride-1 convolution's input side: C channels of H × W with `padding` zeros around, `kernel` × `kernel` taps.
struct ChannelsLastGeometry {
  index_t channels, kernel, padding, height, width;

  [[nodiscard]] index_t padded_width() const noexcept { return width + 2 * padding; }
  [[nodiscard]] index_t padded_height() const noexcept { return height + 2 * padding; }
  /// Floats of the padded channels-last buffer.
  [[nodiscard]] index_t size() const noexcept { return padded_height() * padded_width() * channels; }
  /// Floats of one kernel row of a receptive field (and of one kernel row of a channel's weights).
  [[nodiscard]] index_t segment() const noexcept { return kernel * channels; }
  /// Floats between kernel rows in the padded buffer.
  [[nodiscard]] index_t row_stride() const noexcept { return padded_width() * channels; }
  /// The entry offset of output (y, x).
  [[nodiscard]] index_t offset_of(index_t y, index_t x) const noexcept { return (y * padded_width() + x) * channels; }
};

/// x [C][H][W] → `padded` [Hp][Wp][C], zeros in the border.
inline void to_padded_channels_last(const ChannelsLastGeometry& g, const float* x, float* padded) noexcept {
  const index_t c_count = g.channels, wp = g.padded_width();
  std::fill_n(padded, g.size(), 0.0f);
  if (c_count == 1) {  // channels-last is channels-first: whole rows
    for (index_t y = 0; y < g.height; ++y) std::copy_n(x + y * g.width, g.width, padded + (y + g.padding) * wp + g.padding);
    return;
  }
  for (index_t c = 0; c < c_count; ++c) {
    for (index_t y = 0; y < g.height; ++y) {
      const float* src = x + (c * g.height + y) * g.width;
      float* dst = padded + ((y + g.padding) * wp + g.padding) * c_count + c;
      for (index_t x_ = 0; x_ < g.width; ++x_) dst[x_ * c_count] = src[x_];
    }
  }
}

/// The inverse for the interior: `padded` [Hp][Wp][C] → dx [C][H][W]; the border (gradients of the padding) is dropped.
inline void from_padded_channels_last(const ChannelsLastGeometry& g, const float* padded, float* dx) noexcept {
  const index_t c_count = g.channels, wp = g.padded_width();
  for (index_t c = 0; c < c_count; ++c) {
    for (index_t y = 0; y < g.height; ++y) {
      const float* src = padded + ((y + g.padding) * wp + g.padding) * c_count + c;
      float* dst = dx + (c * g.height + y) * g.width;
      for (index_t x_ = 0; x_ < g.width; ++x_) dst[x_] = src[x_ * c_count];
    }
  }
}

namespace detail {

#if defined(__AVX512F__)
// Up to 8 vectors of the sum stay in registers while the entries stream by; the last may be partial.
// Short sums keep U partial sums over alternating entries, so that U FMA chains overlap.
template <int V>
void weighted_rows_block(const float* src, const SparseGradEntry* entries, index_t count, __mmask16 last, float* sum) noexcept {
  constexpr int U = V <= 2 ? 4 : V <= 4 ? 2 : 1;
  const auto load = [last](const float* p, int v) { return v + 1 < V ? _mm512_loadu_ps(p + 16 * v) : _mm512_maskz_loadu_ps(last, p + 16 * v); };
  __m512 acc[U][V];
#pragma GCC unroll 8
  for (int v = 0; v < V; ++v) {
    acc[0][v] = load(sum, v);
#pragma GCC unroll 4
    for (int u = 1; u < U; ++u) acc[u][v] = _mm512_setzero_ps();
  }
  index_t e = 0;
  for (; e + U <= count; e += U) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      const __m512 grad = _mm512_set1_ps(entries[e + u].grad);
      const float* row = src + entries[e + u].offset;
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) acc[u][v] = _mm512_fmadd_ps(grad, load(row, v), acc[u][v]);
    }
  }
  for (; e < count; ++e) {
    const __m512 grad = _mm512_set1_ps(entries[e].grad);
    const float* row = src + entries[e].offset;
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) acc[0][v] = _mm512_fmadd_ps(grad, load(row, v), acc[0][v]);
  }
#pragma GCC unroll 8
  for (int v = 0; v < V; ++v) {
#pragma GCC unroll 4
    for (int u = 1; u < U; ++u) acc[0][v] = _mm512_add_ps(acc[0][v], acc[u][v]);
    if (v + 1 < V) {
      _mm512_storeu_ps(sum + 16 * v, acc[0][v]);
    } else {
      _mm512_mask_storeu_ps(sum + 16 * v, last, acc[0][v]);
    }
  }
}

template <int V>
void dispatch_block(int vectors, const float* src, const SparseGradEntry* entries, index_t count, __mmask16 last, float* sum) noexcept {
  if constexpr (V > 1) {
    if (vectors < V) {
      dispatch_block<V - 1>(vectors, src, entries, count, last, sum);
      return;
    }
  }
  weighted_rows_block<V>(src, entries, count, last, sum);
}
#endif

}  // namespace detail

/// sum[0, length) += Σ over `entries` of grad · src[offset, offset + length), in an order fixed by `count`.
/// The primitive of both gradients: rows of a padded input (weight gradient) or of the weights (input gradient).
inline void accumulate_weighted_rows(const float* src, index_t length, const SparseGradEntry* entries, index_t count,
                                     float* sum) noexcept {
#if defined(__AVX512F__)
  for (index_t start = 0; start < length; start += 128) {
    const index_t n = std::min<index_t>(128, length - start);
    const auto vectors = static_cast<int>((n + 15) / 16);
    const index_t tail = n - 16 * (vectors - 1);
    const auto last = static_cast<__mmask16>(tail == 16 ? 0xFFFF : (1u << tail) - 1);
    detail::dispatch_block<8>(vectors, src + start, entries, count, last, sum + start);
  }
#else
  for (index_t e = 0; e < count; ++e) {
    const float* row = src + entries[e].offset;
    for (index_t k = 0; k < length; ++k) sum[k] += entries[e].grad * row[k];
  }
#endif
}

/// dw [kernel][kernel · C] (one output channel's weight gradient, [i][j][c]) += Σ over `entries` of
/// grad · the entry's receptive field in `padded` [Hp][Wp][C].
inline void accumulate_weight_grad(const ChannelsLastGeometry& g, const float* padded, const SparseGradEntry* entries,
                                   index_t count, float* dw) noexcept {
  for (index_t i = 0; i < g.kernel; ++i) {
    accumulate_weighted_rows(padded + i * g.row_stride(), g.segment(), entries, count, dw + i * g.segment());
  }
}

/// `padded` [Hp][Wp][C] += `field` [kernel][kernel · C] over the receptive field that starts at `offset`.
inline void add_receptive_field(const ChannelsLastGeometry& g, const float* field, index_t offset, float* padded) noexcept {
  const index_t segment = g.segment();
  for (index_t i = 0; i < g.kernel; ++i) {
    float* dst = padded + offset + i * g.row_stride();
    const float* src = field + i * segment;
    for (index_t k = 0; k < segment; ++k) dst[k] += src[k];
  }
}

}  // namespace minnow::simd
