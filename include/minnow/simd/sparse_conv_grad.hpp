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
///
/// The weighted sums have kernels for each simd::arch path, chosen at run time (simd/arch.hpp). They
/// run over blocks of up to 128 floats of the rows; a block of up to 2 (4) vectors of 16 floats keeps 4
/// (2) partial sums over alternating entries so that as many FMA chains overlap, a longer block one.
/// The block's length fixes that order, so every path (AVX-512 16 lanes, AVX2 8 lanes, the scalar
/// twin) computes each sum by the same FMAs in the same order and gives the same bits.

#include <minnow/simd/arch.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <cmath>
#include <type_traits>

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

/// Floats per block of the weighted sums, and the partial sums (FMA chains) a block of `n` floats keeps.
inline constexpr index_t kSparseBlock = 128;
[[nodiscard]] constexpr int sparse_chains(index_t n) noexcept {
  const index_t vectors = (n + 15) / 16;
  return vectors <= 2 ? 4 : vectors <= 4 ? 2 : 1;
}

// One block: sum[0, n) += Σ_e grad_e · src[offset_e, offset_e + n), entry e into chain e mod U while whole
// groups of U entries remain, the rest into chain 0; then chain 0 + chain 1 + … in order.
inline void weighted_rows_block(arch::scalar, const float* src, const SparseGradEntry* entries, index_t count, index_t n,
                                float* sum) noexcept {
  const int chains = sparse_chains(n);
  float acc[4][kSparseBlock];
  std::copy_n(sum, n, acc[0]);
  for (int u = 1; u < chains; ++u) std::fill_n(acc[u], n, 0.0f);
  index_t e = 0;
  for (; e + chains <= count; e += chains) {
    for (int u = 0; u < chains; ++u) {
      const float grad = entries[e + u].grad;
      const float* row = src + entries[e + u].offset;
      for (index_t k = 0; k < n; ++k) acc[u][k] = std::fma(grad, row[k], acc[u][k]);
    }
  }
  for (; e < count; ++e) {
    const float grad = entries[e].grad;
    const float* row = src + entries[e].offset;
    for (index_t k = 0; k < n; ++k) acc[0][k] = std::fma(grad, row[k], acc[0][k]);
  }
  for (int u = 1; u < chains; ++u) {
    for (index_t k = 0; k < n; ++k) acc[0][k] += acc[u][k];
  }
  std::copy_n(acc[0], n, sum);
}

#if MINNOW_X86_KERNELS
// U chains × W vectors of 8 floats held in registers while the entries stream by; the last vector
// covers the lanes of `last` only.
template <int U, int W>
MINNOW_TARGET_AVX2 inline void weighted_rows_avx2(const float* src, const SparseGradEntry* entries, index_t count, __m256i last,
                                                  float* sum) noexcept {
  __m256 acc[U][W];
#pragma GCC unroll 8
  for (int v = 0; v < W; ++v) {
    acc[0][v] = v + 1 < W ? _mm256_loadu_ps(sum + 8 * v) : _mm256_maskload_ps(sum + 8 * v, last);
#pragma GCC unroll 4
    for (int u = 1; u < U; ++u) acc[u][v] = _mm256_setzero_ps();
  }
  index_t e = 0;
  for (; e + U <= count; e += U) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      const __m256 grad = _mm256_set1_ps(entries[e + u].grad);
      const float* row = src + entries[e + u].offset;
#pragma GCC unroll 8
      for (int v = 0; v < W; ++v) {
        const __m256 x = v + 1 < W ? _mm256_loadu_ps(row + 8 * v) : _mm256_maskload_ps(row + 8 * v, last);
        acc[u][v] = _mm256_fmadd_ps(grad, x, acc[u][v]);
      }
    }
  }
  for (; e < count; ++e) {
    const __m256 grad = _mm256_set1_ps(entries[e].grad);
    const float* row = src + entries[e].offset;
#pragma GCC unroll 8
    for (int v = 0; v < W; ++v) {
      const __m256 x = v + 1 < W ? _mm256_loadu_ps(row + 8 * v) : _mm256_maskload_ps(row + 8 * v, last);
      acc[0][v] = _mm256_fmadd_ps(grad, x, acc[0][v]);
    }
  }
#pragma GCC unroll 8
  for (int v = 0; v < W; ++v) {
#pragma GCC unroll 4
    for (int u = 1; u < U; ++u) acc[0][v] = _mm256_add_ps(acc[0][v], acc[u][v]);
    if (v + 1 < W) {
      _mm256_storeu_ps(sum + 8 * v, acc[0][v]);
    } else {
      _mm256_maskstore_ps(sum + 8 * v, last, acc[0][v]);
    }
  }
}

// `vectors` ≤ W vectors of 8 floats with U chains.
template <int U, int W>
MINNOW_TARGET_AVX2 inline void weighted_rows_avx2_dispatch(int vectors, const float* src, const SparseGradEntry* entries,
                                                           index_t count, __m256i last, float* sum) noexcept {
  if constexpr (W > 1) {
    if (vectors < W) {
      weighted_rows_avx2_dispatch<U, W - 1>(vectors, src, entries, count, last, sum);
      return;
    }
  }
  weighted_rows_avx2<U, W>(src, entries, count, last, sum);
}

// The block with U chains, in column slices of at most W vectors (what 16 registers hold: U·W ≤ 12).
template <int U, int W>
MINNOW_TARGET_AVX2 inline void weighted_rows_slices_avx2(const float* src, const SparseGradEntry* entries, index_t count, index_t n,
                                                         float* sum) noexcept {
  for (index_t start = 0; start < n; start += 8 * W) {
    const index_t floats = std::min<index_t>(8 * W, n - start);
    const auto vectors = static_cast<int>((floats + 7) / 8);
    const auto tail = static_cast<int>(floats - 8 * (vectors - 1));
    const __m256i last = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    weighted_rows_avx2_dispatch<U, W>(vectors, src + start, entries, count, last, sum + start);
  }
}

/// One block with AVX2: the block's chains, 8 lanes per vector.
MINNOW_TARGET_AVX2 inline void weighted_rows_block(arch::avx2, const float* src, const SparseGradEntry* entries, index_t count,
                                                   index_t n, float* sum) noexcept {
  switch (sparse_chains(n)) {
    case 4: weighted_rows_slices_avx2<4, 3>(src, entries, count, n, sum); break;
    case 2: weighted_rows_slices_avx2<2, 6>(src, entries, count, n, sum); break;
    default: weighted_rows_slices_avx2<1, 8>(src, entries, count, n, sum); break;
  }
}

// Vector v of V from p: whole, or the lanes of `last` for the last one.
template <int V>
[[nodiscard]] MINNOW_TARGET_AVX512 inline __m512 weighted_rows_load(const float* p, int v, __mmask16 last) noexcept {
  return v + 1 < V ? _mm512_loadu_ps(p + 16 * v) : _mm512_maskz_loadu_ps(last, p + 16 * v);
}

// V ≤ 8 vectors of 16 floats in registers while the entries stream by; the last may be partial.
template <int V>
MINNOW_TARGET_AVX512 inline void weighted_rows_avx512(const float* src, const SparseGradEntry* entries, index_t count, __mmask16 last,
                                                      float* sum) noexcept {
  constexpr int U = sparse_chains(16 * V);
  __m512 acc[U][V];
#pragma GCC unroll 8
  for (int v = 0; v < V; ++v) {
    acc[0][v] = weighted_rows_load<V>(sum, v, last);
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
      for (int v = 0; v < V; ++v) acc[u][v] = _mm512_fmadd_ps(grad, weighted_rows_load<V>(row, v, last), acc[u][v]);
    }
  }
  for (; e < count; ++e) {
    const __m512 grad = _mm512_set1_ps(entries[e].grad);
    const float* row = src + entries[e].offset;
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) acc[0][v] = _mm512_fmadd_ps(grad, weighted_rows_load<V>(row, v, last), acc[0][v]);
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
MINNOW_TARGET_AVX512 inline void weighted_rows_avx512_dispatch(int vectors, const float* src, const SparseGradEntry* entries,
                                                               index_t count, __mmask16 last, float* sum) noexcept {
  if constexpr (V > 1) {
    if (vectors < V) {
      weighted_rows_avx512_dispatch<V - 1>(vectors, src, entries, count, last, sum);
      return;
    }
  }
  weighted_rows_avx512<V>(src, entries, count, last, sum);
}

/// One block with AVX-512: the whole block in registers, 16 lanes per vector.
MINNOW_TARGET_AVX512 inline void weighted_rows_block(arch::avx512, const float* src, const SparseGradEntry* entries, index_t count,
                                                     index_t n, float* sum) noexcept {
  const auto vectors = static_cast<int>((n + 15) / 16);
  const index_t tail = n - 16 * (vectors - 1);
  const auto last = static_cast<__mmask16>(tail == 16 ? 0xFFFF : (1u << tail) - 1);
  weighted_rows_avx512_dispatch<8>(vectors, src, entries, count, last, sum);
}
#endif

}  // namespace detail

/// sum[0, length) += Σ over `entries` of grad · src[offset, offset + length), in an order fixed by `count`
/// and `length`, with the kernels of the tag `Arch` (which this CPU must run). The primitive of both
/// gradients: rows of a padded input (weight gradient) or of the weights (input gradient).
template <class Arch>
void accumulate_weighted_rows(Arch tag, const float* src, index_t length, const SparseGradEntry* entries, index_t count,
                              float* sum) noexcept {
  static_assert(std::is_base_of_v<arch::scalar, Arch>, "Arch must be a simd::arch kernel tag");
  for (index_t start = 0; start < length; start += detail::kSparseBlock) {
    detail::weighted_rows_block(tag, src + start, entries, count, std::min(detail::kSparseBlock, length - start), sum + start);
  }
}

/// The same with the kernels of `Arch` (by default the CPU's widest).
/// @throws value_error (from with_arch) when `Arch` names a set this CPU lacks.
template <class Arch = arch::automatic>
void accumulate_weighted_rows(const float* src, index_t length, const SparseGradEntry* entries, index_t count, float* sum) {
  with_arch<Arch>("simd::accumulate_weighted_rows",
                  [&](auto tag) { accumulate_weighted_rows(tag, src, length, entries, count, sum); });
}

/// dw [kernel][kernel · C] (one output channel's weight gradient, [i][j][c]) += Σ over `entries` of
/// grad · the entry's receptive field in `padded` [Hp][Wp][C], with the kernels of the tag `Arch`.
template <class Arch>
void accumulate_weight_grad(Arch tag, const ChannelsLastGeometry& g, const float* padded, const SparseGradEntry* entries,
                            index_t count, float* dw) noexcept {
  for (index_t i = 0; i < g.kernel; ++i) {
    accumulate_weighted_rows(tag, padded + i * g.row_stride(), g.segment(), entries, count, dw + i * g.segment());
  }
}

/// The same with the kernels of `Arch` (by default the CPU's widest).
/// @throws value_error (from with_arch) when `Arch` names a set this CPU lacks.
template <class Arch = arch::automatic>
void accumulate_weight_grad(const ChannelsLastGeometry& g, const float* padded, const SparseGradEntry* entries, index_t count,
                            float* dw) {
  with_arch<Arch>("simd::accumulate_weight_grad", [&](auto tag) { accumulate_weight_grad(tag, g, padded, entries, count, dw); });
}

/// `padded` [Hp][Wp][C] += `field` [kernel][kernel · C] over the receptive field that starts at `offset`:
/// the scalar twin (one addition per value, so every path gives the same bits).
inline void add_receptive_field(arch::scalar, const ChannelsLastGeometry& g, const float* field, index_t offset,
                                float* padded) noexcept {
  const index_t segment = g.segment();
  for (index_t i = 0; i < g.kernel; ++i) {
    float* dst = padded + offset + i * g.row_stride();
    const float* src = field + i * segment;
    for (index_t k = 0; k < segment; ++k) dst[k] += src[k];
  }
}

#if MINNOW_X86_KERNELS
/// The same with AVX2, 8 values per step and a masked last step.
MINNOW_TARGET_AVX2 inline void add_receptive_field(arch::avx2, const ChannelsLastGeometry& g, const float* field, index_t offset,
                                                   float* padded) noexcept {
  const index_t segment = g.segment();
  const index_t whole = segment / 8 * 8;
  const __m256i last = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(segment - whole)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  for (index_t i = 0; i < g.kernel; ++i) {
    float* dst = padded + offset + i * g.row_stride();
    const float* src = field + i * segment;
    for (index_t k = 0; k < whole; k += 8) _mm256_storeu_ps(dst + k, _mm256_add_ps(_mm256_loadu_ps(dst + k), _mm256_loadu_ps(src + k)));
    if (whole < segment) {
      _mm256_maskstore_ps(dst + whole, last, _mm256_add_ps(_mm256_maskload_ps(dst + whole, last), _mm256_maskload_ps(src + whole, last)));
    }
  }
}

/// The same with AVX-512, 16 values per step and a masked last step.
MINNOW_TARGET_AVX512 inline void add_receptive_field(arch::avx512, const ChannelsLastGeometry& g, const float* field,
                                                     index_t offset, float* padded) noexcept {
  const index_t segment = g.segment();
  const index_t whole = segment / 16 * 16;
  const auto last = static_cast<__mmask16>((1u << (segment - whole)) - 1);
  for (index_t i = 0; i < g.kernel; ++i) {
    float* dst = padded + offset + i * g.row_stride();
    const float* src = field + i * segment;
    for (index_t k = 0; k < whole; k += 16) _mm512_storeu_ps(dst + k, _mm512_add_ps(_mm512_loadu_ps(dst + k), _mm512_loadu_ps(src + k)));
    if (whole < segment) {
      _mm512_mask_storeu_ps(dst + whole, last,
                            _mm512_add_ps(_mm512_maskz_loadu_ps(last, dst + whole), _mm512_maskz_loadu_ps(last, src + whole)));
    }
  }
}
#endif

/// The same with the kernels of `Arch` (by default the CPU's widest).
/// @throws value_error (from with_arch) when `Arch` names a set this CPU lacks.
template <class Arch = arch::automatic>
void add_receptive_field(const ChannelsLastGeometry& g, const float* field, index_t offset, float* padded) {
  with_arch<Arch>("simd::add_receptive_field", [&](auto tag) { add_receptive_field(tag, g, field, offset, padded); });
}

}  // namespace minnow::simd
