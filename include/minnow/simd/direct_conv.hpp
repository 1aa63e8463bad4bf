#pragma once
/// @file simd/direct_conv.hpp
/// @brief Stride-1 convolution computed directly from a zero-padded copy of the input, vectorized along
/// the output rows, with kernels for each simd::arch path chosen at run time (simd/arch.hpp).
///
/// im2col + GEMM copies every input value k² times before multiplying. For the small maps of the
/// reference networks (28×28 and 14×14, 1–64 input channels) that copy, and the scatter of the GEMM's
/// output back into NCHW, cost as much as the arithmetic. Here a register tile of output-row vectors ×
/// output channels accumulates over (input channel, kernel row, kernel column): each step loads one input
/// vector per row vector and broadcasts one weight per channel, so one load feeds several FMAs. Tiles:
/// AVX-512 3 row vectors of 16 lanes × 8 channels (24 of the 32 registers accumulate); AVX2 3 half rows
/// of 8 lanes × 4 channels (12 of 16), twice per 8-channel tile; NEON one row vector of 4 registers × 4
/// channels (16 of 32), twice per tile of more than 4 channels; the scalar twin one row vector at a time.
/// Each output value is one FMA chain in a fixed order on every path (bias first, then input channels,
/// kernel rows and columns in order), so all paths give the same bits and results do not depend on the
/// thread count. The padded layout (rows of whole 16-lane vectors) is the same for every path.

#include <minnow/detail/parallel.hpp>
#include <minnow/simd/arch.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <cmath>
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

/// Lanes of a row vector in the padded layout (AVX2 computes each as two halves), output channels per
/// tile (the unit of work), and the vectors (AVX-512) or half vectors (AVX2) of one register tile.
inline constexpr index_t kConvWidth = 16;
inline constexpr index_t kChannels = 8;
inline constexpr index_t kUnits = 3;

/// Vectors per output row, and the padded input's row length: wide enough that the last vector's loads
/// for every kernel column stay inside the row.
[[nodiscard]] inline index_t vectors_per_row(const DirectConvGeometry& g) noexcept {
  return (g.out_width() + kConvWidth - 1) / kConvWidth;
}
[[nodiscard]] inline index_t padded_row(const DirectConvGeometry& g) noexcept {
  return vectors_per_row(g) * kConvWidth + g.kernel - 1;
}
[[nodiscard]] inline index_t padded_rows(const DirectConvGeometry& g) noexcept { return g.height + 2 * g.padding; }

/// One channel tile of one sample, as every path's kernel walks it: `units` row vectors (output rows ×
/// vectors per row), the weights `w[o]` ([c][i][j]) and bias of its kChannels channels (a partial tile
/// repeats its last channel in the spare ones, which are computed but never stored), `channels` of
/// which are real; channel o's output plane starts at `y0 + o · plane`.
struct DirectTile {
  const float* w[kChannels];
  float bias[kChannels];
  index_t channels, tap_count, units, vectors, row, out_w, plane;
  const float* padded;
  float* y0;

  DirectTile(const DirectConvGeometry& g, const float* padded_input, const float* weight, const float* bias_in, index_t tile,
             float* y) noexcept
      : tap_count(g.in_channels * g.kernel * g.kernel),
        vectors(vectors_per_row(g)),
        row(padded_row(g)),
        out_w(g.out_width()),
        plane(g.out_height() * g.out_width()),
        padded(padded_input) {
    const index_t first = tile * kChannels;
    channels = std::min(kChannels, g.out_channels - first);
    units = g.out_height() * vectors;
    for (index_t o = 0; o < kChannels; ++o) {
      const index_t channel = first + std::min(o, channels - 1);
      w[o] = weight + channel * tap_count;
      bias[o] = bias_in[channel];
    }
    y0 = y + first * plane;
  }
  /// Row vector `unit`: its first input value in the padded sample (tap t reads `taps[t]` further on),
  /// its first output value in channel 0's plane, and how many of its kConvWidth lanes are in the row.
  [[nodiscard]] const float* input(index_t unit) const noexcept {
    return padded + unit / vectors * row + unit % vectors * kConvWidth;
  }
  [[nodiscard]] float* output(index_t unit) const noexcept {
    return y0 + unit / vectors * out_w + unit % vectors * kConvWidth;
  }
  [[nodiscard]] index_t lanes(index_t unit) const noexcept {
    return std::min(kConvWidth, out_w - unit % vectors * kConvWidth);
  }
};

#if MINNOW_X86_KERNELS
// `Units` row vectors × kChannels channels: in[u], out[u] and lanes[u] describe vector u.
template <int Units>
MINNOW_TARGET_AVX512 inline void direct_tile_avx512(const DirectTile& t, const index_t* taps, const float* const* in,
                                                    float* const* out, const index_t* lanes) noexcept {
  __m512 acc[Units][kChannels];
#pragma GCC unroll 8
  for (index_t o = 0; o < kChannels; ++o) {
    const __m512 b = _mm512_set1_ps(t.bias[o]);
#pragma GCC unroll 4
    for (int u = 0; u < Units; ++u) acc[u][o] = b;
  }
  for (index_t k = 0; k < t.tap_count; ++k) {
    const index_t offset = taps[k];
    __m512 x[Units];
#pragma GCC unroll 4
    for (int u = 0; u < Units; ++u) x[u] = _mm512_loadu_ps(in[u] + offset);
#pragma GCC unroll 8
    for (index_t o = 0; o < kChannels; ++o) {
      const __m512 wo = _mm512_set1_ps(t.w[o][k]);
#pragma GCC unroll 4
      for (int u = 0; u < Units; ++u) acc[u][o] = _mm512_fmadd_ps(wo, x[u], acc[u][o]);
    }
  }
#pragma GCC unroll 4
  for (int u = 0; u < Units; ++u) {
    // A row's last, partial vector: the lanes past the row's end must not be written.
    const auto mask = static_cast<__mmask16>(lanes[u] == kConvWidth ? 0xFFFF : (1u << lanes[u]) - 1);
    for (index_t o = 0; o < t.channels; ++o) _mm512_mask_storeu_ps(out[u] + o * t.plane, mask, acc[u][o]);
  }
}

// `Halves` half rows of 8 lanes × the 4 channels from `first` (`count` of them stored).
template <int Halves>
MINNOW_TARGET_AVX2 inline void direct_tile_avx2(const DirectTile& t, const index_t* taps, const float* const* in,
                                                float* const* out, const index_t* lanes, index_t first, index_t count) noexcept {
  constexpr int kC = 4;
  __m256 acc[Halves][kC];
#pragma GCC unroll 4
  for (int o = 0; o < kC; ++o) {
    const __m256 b = _mm256_set1_ps(t.bias[first + o]);
#pragma GCC unroll 3
    for (int h = 0; h < Halves; ++h) acc[h][o] = b;
  }
  const float* const w[kC] = {t.w[first], t.w[first + 1], t.w[first + 2], t.w[first + 3]};
  for (index_t k = 0; k < t.tap_count; ++k) {
    const index_t offset = taps[k];
    __m256 x[Halves];
#pragma GCC unroll 3
    for (int h = 0; h < Halves; ++h) x[h] = _mm256_loadu_ps(in[h] + offset);
#pragma GCC unroll 4
    for (int o = 0; o < kC; ++o) {
      const __m256 wo = _mm256_broadcast_ss(w[o] + k);
#pragma GCC unroll 3
      for (int h = 0; h < Halves; ++h) acc[h][o] = _mm256_fmadd_ps(wo, x[h], acc[h][o]);
    }
  }
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  // Constant indices into acc: a loop up to `count` would make GCC keep acc in memory and store every
  // accumulator after each FMA of the loop above (AVX2 has only the 16 registers the tile fills).
#pragma GCC unroll 3
  for (int h = 0; h < Halves; ++h) {
    float* dst = out[h] + first * t.plane;
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(lanes[h])), iota);
#pragma GCC unroll 4
    for (int o = 0; o < kC; ++o) {
      if (o >= count) break;
      if (lanes[h] == 8) {
        _mm256_storeu_ps(dst + o * t.plane, acc[h][o]);
      } else {
        _mm256_maskstore_ps(dst + o * t.plane, mask, acc[h][o]);
      }
    }
  }
}

// Up to 3 half rows through both 4-channel halves of the tile (the second only when it has real channels).
MINNOW_TARGET_AVX2 inline void direct_halves_avx2(const DirectTile& t, const index_t* taps, int halves, const float* const* in,
                                                  float* const* out, const index_t* lanes) noexcept {
  for (index_t first = 0; first < t.channels; first += 4) {
    const index_t count = std::min<index_t>(4, t.channels - first);
    if (halves == 3) {
      direct_tile_avx2<3>(t, taps, in, out, lanes, first, count);
    } else if (halves == 2) {
      direct_tile_avx2<2>(t, taps, in, out, lanes, first, count);
    } else {
      direct_tile_avx2<1>(t, taps, in, out, lanes, first, count);
    }
  }
}
#endif

#if MINNOW_ARM_KERNELS
// One row vector (4 registers of 4 lanes) × the 4 channels from `first` (`count` of them stored).
inline void direct_unit_neon(const DirectTile& t, const index_t* taps, const float* in, float* out, index_t lanes, index_t first,
                             index_t count) noexcept {
  constexpr int kC = 4, kQ = kConvWidth / 4;
  float32x4_t acc[kC][kQ];
  for (int o = 0; o < kC; ++o) {
    const float32x4_t b = vdupq_n_f32(t.bias[first + o]);
    for (int q = 0; q < kQ; ++q) acc[o][q] = b;
  }
  const float* const w[kC] = {t.w[first], t.w[first + 1], t.w[first + 2], t.w[first + 3]};
  for (index_t k = 0; k < t.tap_count; ++k) {
    const float* x = in + taps[k];
    float32x4_t xv[kQ];
    for (int q = 0; q < kQ; ++q) xv[q] = vld1q_f32(x + 4 * q);
    for (int o = 0; o < kC; ++o) {
      const float wo = w[o][k];
      for (int q = 0; q < kQ; ++q) acc[o][q] = vfmaq_n_f32(acc[o][q], xv[q], wo);
    }
  }
  for (index_t o = 0; o < count; ++o) {
    float* dst = out + (first + o) * t.plane;
    if (lanes == kConvWidth) {
      for (int q = 0; q < kQ; ++q) vst1q_f32(dst + 4 * q, acc[o][q]);
    } else {
      // A row's last, partial vector: the lanes past the row's end must not be written.
      float staged[kConvWidth];
      for (int q = 0; q < kQ; ++q) vst1q_f32(staged + 4 * q, acc[o][q]);
      std::copy_n(staged, lanes, dst);
    }
  }
}
#endif

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
/// input, the weights [out, in, k, k] as they are, the bias [out] and the tap offsets
/// (direct_conv_tap_offsets): the scalar twin, one row vector of 16 lanes at a time.
inline void direct_conv_tile(arch::scalar, const DirectConvGeometry& g, const float* padded, const float* weight,
                             const float* bias, const index_t* taps, index_t tile, float* y) noexcept {
  using detail::kChannels;
  using detail::kConvWidth;
  const detail::DirectTile t(g, padded, weight, bias, tile, y);
  for (index_t unit = 0; unit < t.units; ++unit) {
    const float* in = t.input(unit);
    float acc[kChannels][kConvWidth];
    for (index_t o = 0; o < kChannels; ++o) std::fill_n(acc[o], kConvWidth, t.bias[o]);
    for (index_t k = 0; k < t.tap_count; ++k) {
      const float* x = in + taps[k];
      for (index_t o = 0; o < kChannels; ++o) {
        const float wo = t.w[o][k];
        for (index_t l = 0; l < kConvWidth; ++l) acc[o][l] = std::fma(wo, x[l], acc[o][l]);
      }
    }
    float* out = t.output(unit);
    const index_t lanes = t.lanes(unit);
    for (index_t o = 0; o < t.channels; ++o) std::copy_n(acc[o], lanes, out + o * t.plane);
  }
}

#if MINNOW_X86_KERNELS
/// The tile with AVX2: the row vectors' halves (those with lanes in the row) three at a time.
MINNOW_TARGET_AVX2 inline void direct_conv_tile(arch::avx2, const DirectConvGeometry& g, const float* padded, const float* weight,
                                                const float* bias, const index_t* taps, index_t tile, float* y) noexcept {
  const detail::DirectTile t(g, padded, weight, bias, tile, y);
  const float* in[3];
  float* out[3];
  index_t lanes[3];
  int halves = 0;
  for (index_t unit = 0; unit < t.units; ++unit) {
    const index_t unit_lanes = t.lanes(unit);
    for (index_t h = 0; h < 2 && 8 * h < unit_lanes; ++h) {
      in[halves] = t.input(unit) + 8 * h;
      out[halves] = t.output(unit) + 8 * h;
      lanes[halves] = std::min<index_t>(8, unit_lanes - 8 * h);
      if (++halves == 3) {
        detail::direct_halves_avx2(t, taps, 3, in, out, lanes);
        halves = 0;
      }
    }
  }
  if (halves > 0) detail::direct_halves_avx2(t, taps, halves, in, out, lanes);
}

/// The tile with AVX-512: three row vectors at a time.
MINNOW_TARGET_AVX512 inline void direct_conv_tile(arch::avx512, const DirectConvGeometry& g, const float* padded,
                                                  const float* weight, const float* bias, const index_t* taps, index_t tile,
                                                  float* y) noexcept {
  using detail::kUnits;
  const detail::DirectTile t(g, padded, weight, bias, tile, y);
  for (index_t unit = 0; unit < t.units; unit += kUnits) {
    const index_t count = std::min(kUnits, t.units - unit);
    const float* in[kUnits];
    float* out[kUnits];
    index_t lanes[kUnits];
    for (index_t u = 0; u < count; ++u) {
      in[u] = t.input(unit + u);
      out[u] = t.output(unit + u);
      lanes[u] = t.lanes(unit + u);
    }
    if (count == 3) {
      detail::direct_tile_avx512<3>(t, taps, in, out, lanes);
    } else if (count == 2) {
      detail::direct_tile_avx512<2>(t, taps, in, out, lanes);
    } else {
      detail::direct_tile_avx512<1>(t, taps, in, out, lanes);
    }
  }
}
#endif

#if MINNOW_ARM_KERNELS
/// The tile with NEON: one row vector × 4 channels at a time (16 of the 32 registers accumulate).
inline void direct_conv_tile(arch::neon, const DirectConvGeometry& g, const float* padded, const float* weight, const float* bias,
                             const index_t* taps, index_t tile, float* y) noexcept {
  const detail::DirectTile t(g, padded, weight, bias, tile, y);
  for (index_t unit = 0; unit < t.units; ++unit) {
    for (index_t first = 0; first < t.channels; first += 4) {
      detail::direct_unit_neon(t, taps, t.input(unit), t.output(unit), t.lanes(unit), first, std::min<index_t>(4, t.channels - first));
    }
  }
}
#endif

/// The tile with the kernels of `Arch` (by default the CPU's widest; every path gives the same bits).
/// @throws value_error (from with_arch) when `Arch` names a set this CPU lacks.
template <class Arch = arch::automatic>
void direct_conv_tile(const DirectConvGeometry& g, const float* padded, const float* weight, const float* bias,
                      const index_t* taps, index_t tile, float* y) {
  with_arch<Arch>("simd::direct_conv_tile", [&](auto tag) { direct_conv_tile(tag, g, padded, weight, bias, taps, tile, y); });
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
  /// `output(s, thread)` (that sample's [out, Ho, Wo]) with the kernels of `Arch` (chosen once for the
  /// batch), then calls `tile_done(s, t, thread)`.
  /// @throws value_error (from with_arch) when `Arch` names a set this CPU lacks.
  template <class Arch = arch::automatic, class Output, class TileDone>
  void run(const DirectConvGeometry& g, const float* x, index_t samples, const float* weight, const float* bias,
           Output&& output, TileDone&& tile_done) {
    const index_t tiles = direct_conv_tiles(g), sample_size = g.in_channels * g.height * g.width;
    const int threads = threads_for(g, samples);
    taps_.resize(static_cast<std::size_t>(direct_conv_tap_count(g)));
    direct_conv_tap_offsets(g, taps_.data());
    if (padded_.size() < static_cast<std::size_t>(threads)) padded_.resize(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) padded_[static_cast<std::size_t>(t)].resize({direct_conv_padded_size(g)});
    padded_sample_.assign(padded_.size(), -1);
    with_arch<Arch>("simd::DirectConvBatch::run", [&](auto tag) {
      minnow::detail::parallel_for(samples * tiles, threads, [&](index_t item, int thread) {
        const auto t = static_cast<std::size_t>(thread);
        const index_t sample = item / tiles, tile = item % tiles;
        float* padded = padded_[t].data();
        if (padded_sample_[t] != sample) {
          pad_direct_conv_input(g, x + sample * sample_size, padded);
          padded_sample_[t] = sample;
        }
        direct_conv_tile(tag, g, padded, weight, bias, taps_.data(), tile, output(sample, thread));
        tile_done(sample, tile, thread);
      });
    });
  }

 private:
  std::vector<Tensor<float, 1>> padded_;  // per thread: the padded sample
  std::vector<index_t> padded_sample_;    // which sample each thread's buffer holds
  std::vector<index_t> taps_;             // the taps' offsets in a padded sample
};

}  // namespace minnow::simd
