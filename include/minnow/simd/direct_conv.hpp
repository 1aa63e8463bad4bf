#pragma once
/// @file simd/direct_conv.hpp
/// @brief Stride-1 convolution computed directly from a zero-padded copy of the input, vectorized along
/// the output rows.
///
/// im2col + GEMM copies every input value k² times before multiplying. For the small maps of the
/// reference networks (28×28 and 14×14, 1–64 input channels) that copy, and the scatter of the GEMM's
/// output back into NCHW, cost as much as the arithmetic. Here a register tile of `kUnits` output-row
/// vectors × `kChannels` output channels accumulates over (input channel, kernel row, kernel column):
/// each step loads kUnits input vectors and broadcasts kChannels weights, so one load feeds kChannels
/// FMAs. Each output value is one sum in a fixed order (bias first, then input channels, kernel rows and
/// columns in order), so results do not depend on the thread count.

#include <minnow/detail/parallel.hpp>
#include <minnow/tensor.hpp>

#include <xsimd/xsimd.hpp>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

namespace minnow::simd {

/// Geometry of one stride-1 convolution `y[o] = bias[o] + Σ_c w[o, c] ⋆ pad(x[c])` on one sample.
struct DirectConvGeometry {
  index_t in_channels, out_channels, kernel, padding, height, width;

  [[nodiscard]] index_t out_height() const noexcept { return height + 2 * padding - kernel + 1; }
  [[nodiscard]] index_t out_width() const noexcept { return width + 2 * padding - kernel + 1; }
};

namespace detail {

using conv_batch = xsimd::batch<float>;
inline constexpr index_t kConvWidth = static_cast<index_t>(conv_batch::size);
/// Output channels per register tile, and output-row vectors per tile: 3 × 8 accumulators use 24 of
/// AVX-512's 32 registers; ISAs with 16 registers get one vector row.
inline constexpr index_t kChannels = 8;
inline constexpr index_t kUnits = kConvWidth >= 16 ? 3 : 1;

/// Vectors per output row, and the padded input's row length: wide enough that the last vector's loads
/// for every kernel column stay inside the row.
[[nodiscard]] inline index_t vectors_per_row(const DirectConvGeometry& g) noexcept {
  return (g.out_width() + kConvWidth - 1) / kConvWidth;
}
[[nodiscard]] inline index_t padded_row(const DirectConvGeometry& g) noexcept {
  return vectors_per_row(g) * kConvWidth + g.kernel - 1;
}
[[nodiscard]] inline index_t padded_rows(const DirectConvGeometry& g) noexcept { return g.height + 2 * g.padding; }

// `Units` output-row vectors × kChannels channels. `in[u]` points at unit u's first input value in the
// padded sample, and tap t = (c, i, j) reads `taps[t]` values further on; `w[o]` points at channel o's
// weights [c][i][j]; `out[u]` at unit u's first output value of channel 0, channels `plane` apart;
// `lanes[u]` values of unit u are valid, and `channels` channels.
template <index_t Units>
void direct_tile(index_t tap_count, const index_t* taps, const float* const* in, const float* const* w,
                 const float* bias, float* const* out, const index_t* lanes, index_t channels, index_t plane) noexcept {
  conv_batch acc[Units][kChannels];
#pragma GCC unroll 8
  for (index_t o = 0; o < kChannels; ++o) {
    const conv_batch b(bias[o]);
#pragma GCC unroll 4
    for (index_t u = 0; u < Units; ++u) acc[u][o] = b;
  }
  for (index_t t = 0; t < tap_count; ++t) {
    const index_t offset = taps[t];
    conv_batch x[Units];
#pragma GCC unroll 4
    for (index_t u = 0; u < Units; ++u) x[u] = conv_batch::load_unaligned(in[u] + offset);
#pragma GCC unroll 8
    for (index_t o = 0; o < kChannels; ++o) {
      const conv_batch wo(w[o][t]);
#pragma GCC unroll 4
      for (index_t u = 0; u < Units; ++u) acc[u][o] = xsimd::fma(wo, x[u], acc[u][o]);
    }
  }
  for (index_t u = 0; u < Units; ++u) {
    if (lanes[u] == kConvWidth) {
      for (index_t o = 0; o < channels; ++o) acc[u][o].store_unaligned(out[u] + o * plane);
      continue;
    }
    // A row's last, partial vector: the lanes past the row's end must not be written.
#if defined(__AVX512F__)
    if constexpr (kConvWidth == 16) {
      const auto mask = static_cast<__mmask16>((1u << lanes[u]) - 1);
      for (index_t o = 0; o < channels; ++o) _mm512_mask_storeu_ps(out[u] + o * plane, mask, acc[u][o]);
      continue;
    }
#endif
    alignas(64) float spill[kConvWidth];
    for (index_t o = 0; o < channels; ++o) {
      acc[u][o].store_aligned(spill);
      std::copy_n(spill, lanes[u], out[u] + o * plane);
    }
  }
}

}  // namespace detail

/// Floats of one padded input sample for `g`.
[[nodiscard]] inline index_t direct_conv_padded_size(const DirectConvGeometry& g) noexcept {
  return g.in_channels * detail::padded_rows(g) * detail::padded_row(g);
}

/// Channel tiles of `g`: the unit of work of `direct_conv_tile` (threads can take any subset).
[[nodiscard]] inline index_t direct_conv_tiles(const DirectConvGeometry& g) noexcept {
  return (g.out_channels + detail::kChannels - 1) / detail::kChannels;
}

/// The output channels [first, first + count) that tile `tile` of `g` computes.
[[nodiscard]] inline std::pair<index_t, index_t> direct_conv_tile_channels(const DirectConvGeometry& g, index_t tile) noexcept {
  const index_t first = tile * detail::kChannels;
  return {first, std::min(detail::kChannels, g.out_channels - first)};
}

/// Taps (input channel, kernel row, kernel column) of `g`.
[[nodiscard]] inline index_t direct_conv_tap_count(const DirectConvGeometry& g) noexcept {
  return g.in_channels * g.kernel * g.kernel;
}

/// Offsets of the taps (c, i, j) in a padded sample, in the weights' order (direct_conv_tap_count values).
inline void direct_conv_tap_offsets(const DirectConvGeometry& g, index_t* taps) noexcept {
  const index_t row = detail::padded_row(g), plane = detail::padded_rows(g) * row;
  for (index_t c = 0; c < g.in_channels; ++c) {
    for (index_t i = 0; i < g.kernel; ++i) {
      for (index_t j = 0; j < g.kernel; ++j) *taps++ = c * plane + i * row + j;
    }
  }
}

/// One sample [in, H, W] → its zero-padded copy in `padded` (direct_conv_padded_size floats).
inline void pad_direct_conv_input(const DirectConvGeometry& g, const float* x, float* padded) noexcept {
  const index_t row = detail::padded_row(g), rows = detail::padded_rows(g);
  std::fill_n(padded, direct_conv_padded_size(g), 0.0f);
  for (index_t c = 0; c < g.in_channels; ++c) {
    for (index_t y = 0; y < g.height; ++y) {
      std::memcpy(padded + (c * rows + y + g.padding) * row + g.padding, x + (c * g.height + y) * g.width,
                  static_cast<std::size_t>(g.width) * sizeof(float));
    }
  }
}

/// Channel tile `tile` (kChannels output channels) of one sample's output y [out, Ho, Wo], from its padded
/// input, the weights [out, in, k, k] as they are, the bias [out] and the tap offsets.
inline void direct_conv_tile(const DirectConvGeometry& g, const float* padded, const float* weight, const float* bias,
                             const index_t* taps, index_t tile, float* y) noexcept {
  using namespace detail;
  const index_t out_w = g.out_width(), plane = g.out_height() * out_w;
  const index_t vectors = vectors_per_row(g), row = padded_row(g);
  const index_t units = g.out_height() * vectors, tap_count = direct_conv_tap_count(g);
  const auto [first, channels] = direct_conv_tile_channels(g, tile);
  // A partial tile repeats its last channel in the spare accumulators, which are never stored.
  const float* w[kChannels];
  alignas(64) float tile_bias[kChannels];
  for (index_t o = 0; o < kChannels; ++o) {
    const index_t channel = first + std::min(o, channels - 1);
    w[o] = weight + channel * tap_count;
    tile_bias[o] = bias[channel];
  }
  float* y0 = y + first * plane;
  for (index_t unit = 0; unit < units; unit += kUnits) {
    const index_t count = std::min(kUnits, units - unit);
    const float* in[kUnits];
    float* out[kUnits];
    index_t lanes[kUnits];
    for (index_t u = 0; u < count; ++u) {
      const index_t oy = (unit + u) / vectors, ox = (unit + u) % vectors * kConvWidth;
      in[u] = padded + oy * row + ox;
      out[u] = y0 + oy * out_w + ox;
      lanes[u] = std::min(kConvWidth, out_w - ox);
    }
    if constexpr (kUnits == 3) {
      if (count == 3) {
        direct_tile<3>(tap_count, taps, in, w, tile_bias, out, lanes, channels, plane);
        continue;
      }
      if (count == 2) {
        direct_tile<2>(tap_count, taps, in, w, tile_bias, out, lanes, channels, plane);
        continue;
      }
    }
    direct_tile<1>(tap_count, taps, in, w, tile_bias, out, lanes, channels, plane);
  }
}

/// @brief Runs a batch through the direct kernel: the parallel loop runs over (sample, channel tile) pairs,
/// sample-major, so with the static schedule a thread pads each of its samples once, into its own buffer. Keeps the
/// buffers between calls: resized, never reallocated once the largest geometry has been seen.
class DirectConvBatch {
 public:
  /// Threads `run` uses: below about half a million multiply-adds (the student's conv1 on one image) a
  /// second thread costs more than it saves, as the next layer would read half the output from the other
  /// core's cache.
  [[nodiscard]] static int threads_for(const DirectConvGeometry& g, index_t samples) noexcept {
    const index_t items = samples * direct_conv_tiles(g);
    const index_t macs = samples * g.out_channels * g.out_height() * g.out_width() * direct_conv_tap_count(g);
    const index_t max_threads = macs < (index_t{1} << 19) ? 1 : minnow::detail::max_threads();
    return static_cast<int>(std::max<index_t>(1, std::min<index_t>(max_threads, items)));
  }

  /// For every sample s < `samples` of `x` ([in, H, W] each, contiguous) and tile t: computes the tile into
  /// `output(s, thread)` (that sample's [out, Ho, Wo]), then calls `tile_done(s, t, thread)`.
  template <class Output, class TileDone>
  void run(const DirectConvGeometry& g, const float* x, index_t samples, const float* weight, const float* bias,
           Output&& output, TileDone&& tile_done) {
    const index_t tiles = direct_conv_tiles(g), sample_size = g.in_channels * g.height * g.width;
    const int threads = threads_for(g, samples);
    taps_.resize(static_cast<std::size_t>(direct_conv_tap_count(g)));
    direct_conv_tap_offsets(g, taps_.data());
    if (padded_.size() < static_cast<std::size_t>(threads)) padded_.resize(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) padded_[static_cast<std::size_t>(t)].resize({direct_conv_padded_size(g)});
    padded_sample_.assign(padded_.size(), -1);
    minnow::detail::parallel_for(samples * tiles, threads, [&](index_t item, int thread) {
      const auto t = static_cast<std::size_t>(thread);
      const index_t sample = item / tiles, tile = item % tiles;
      float* padded = padded_[t].data();
      if (padded_sample_[t] != sample) {
        pad_direct_conv_input(g, x + sample * sample_size, padded);
        padded_sample_[t] = sample;
      }
      direct_conv_tile(g, padded, weight, bias, taps_.data(), tile, output(sample, thread));
      tile_done(sample, tile, thread);
    });
  }

 private:
  std::vector<Tensor<float, 1>> padded_;  // per thread: the padded sample
  std::vector<index_t> padded_sample_;    // which sample each thread's buffer holds
  std::vector<index_t> taps_;             // the taps' offsets in a padded sample
};

}  // namespace minnow::simd
