#pragma once
/// @file infer/winograd_conv.hpp
/// @brief The AVX2 int8 Winograd F(2×2, 3×3) kernel of QuantizedConv2d: the exact accumulators of the
/// direct kernels with 2.25 times fewer multiplies, for 3×3 stride-1 layers whose weights are symmetric.
///
/// AVX2 has no 8-bit multiply-add that is exact on uint8 × int8 (vpmaddubsw saturates), so the direct
/// kernels multiply int16 pairs with vpmaddwd and run at a quarter of AVX-512 VNNI's rate or less. Winograd
/// F(2×2, 3×3) computes a 2×2 output tile from a 4×4 input tile d as Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A: 16
/// products per input channel and output channel instead of 36. It stays exact in integers:
/// - U = Bᵀ d B is a sum of at most four ±d: |U| ≤ 4·255 = 1020, an int16;
/// - V = (2G) g (2G)ᵀ has integer coefficients (2G's rows are (2,0,0), (1,1,1), (1,−1,1), (0,0,2)):
///   |V| ≤ 3·3·128 = 1152, an int16, and V = 4·G g Gᵀ, so Aᵀ[V ⊙ U]A = 4·Y;
/// - vpmaddwd adds two products of at most 1020·1152 without overflow, and every later step is an int32
///   addition, exact modulo 2³². 4·Y is the true value when |4·Y| < 2³¹, which holds for every window when
///   in·9·255·128·4 < 2³¹ (in ≤ kWinogradMaxChannels); the arithmetic shift by 2 then gives Y exactly.
/// So the accumulators equal conv2d_reference's, and the output stage (the direct kernels' direct_correct
/// and direct_store, qgemm's operations) gives the same bits. Weights with a zero point would need Σx per
/// window as well; such layers keep the direct kernel.
///
/// Per sample, vectorized across 8 tiles of a tile row (one output pixel pair per lane, as the direct kernels
/// put output pixels in lanes):
/// 1. the padded input is rewritten as int16 pairs of channels (c, c + 1), even and odd columns apart, so the
///    4 columns of 8 tiles are 4 plain loads;
/// 2. the input transform gives U[pos][channel pair][tile vector] (16 positions);
/// 3. 16 products U[pos] · V[pos] over channel pairs (vpmaddwd: 2 channels per multiply-add), tiles of
///    3 tile vectors × 4 output channels (12 accumulators of AVX2's 16 registers);
/// 4. the output transform per (tile vector, channel), then the 2×2 max (fused pool: one tile is one pool
///    window) or the interleave of the tile's two columns, and the output stage.

#include <minnow/infer/direct_conv.hpp>
#include <minnow/infer/int_tensor.hpp>
#include <minnow/infer/qgemm_kernels.hpp>
#include <minnow/simd/arch.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace minnow::infer::detail {

/// The tag QuantizedConv2d runs the Winograd kernel with (its direct kernels run with an arch tag).
struct WinogradKernel {};

/// The most input channels for which 4·Σ x·w of every window fits int32 (see the file comment).
inline constexpr index_t kWinogradMaxChannels = (index_t{1} << 31) / (9 * 255 * 128 * 4);

/// Output channels and tile vectors per GEMM tile (12 accumulators of AVX2's 16 registers).
inline constexpr index_t kWinogradChannels = 4;
inline constexpr index_t kWinogradVectors = 3;

/// The transformed weights: V[pos][pair][channel] dwords of two int16 (channels 2·pair, 2·pair + 1), the
/// channels padded to a multiple of kWinogradChannels with zeros. Empty when the layer does not qualify.
struct WinogradWeights {
  index_t pairs = 0, channels = 0, padded_channels = 0;
  Tensor<std::int32_t, 1> v;

  [[nodiscard]] bool empty() const noexcept { return v.size() == 0; }
  [[nodiscard]] std::size_t bytes() const noexcept { return static_cast<std::size_t>(v.size()) * sizeof(std::int32_t); }
};

/// (2G) g (2G)ᵀ for one 3×3 kernel g: 16 int16 values in [−1152, 1152], row-major.
inline void winograd_weight_transform(const std::int8_t* g, std::int16_t* v) noexcept {
  static constexpr int G2[4][3] = {{2, 0, 0}, {1, 1, 1}, {1, -1, 1}, {0, 0, 2}};
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      int s = 0;
      for (int p = 0; p < 3; ++p) {
        for (int q = 0; q < 3; ++q) s += G2[i][p] * G2[j][q] * g[p * 3 + q];
      }
      v[i * 4 + j] = static_cast<std::int16_t>(s);
    }
  }
}

/// Packs the layer for the Winograd kernel when it qualifies: 3×3, stride 1, every weight zero point 0,
/// at most kWinogradMaxChannels inputs, and a CPU with AVX2 (the only path that runs it).
[[nodiscard]] inline WinogradWeights make_winograd_weights(const Int8Weights& weights, index_t in, index_t k, index_t stride) {
  WinogradWeights wg;
  if (k != 3 || stride != 1 || in > kWinogradMaxChannels || !simd::cpu_has(simd::Isa::avx2)) return wg;
  for (const auto& p : weights.params) {
    if (p.zero_point != 0) return wg;
  }
  const index_t n = weights.rows();
  wg.pairs = (in + 1) / 2;
  wg.channels = n;
  wg.padded_channels = (n + kWinogradChannels - 1) / kWinogradChannels * kWinogradChannels;
  wg.v.resize({16 * wg.pairs * wg.padded_channels});
  std::fill_n(wg.v.data(), wg.v.size(), 0);
  std::int16_t t[2][16];
  for (index_t o = 0; o < n; ++o) {
    for (index_t pair = 0; pair < wg.pairs; ++pair) {
      for (index_t h = 0; h < 2; ++h) {
        if (2 * pair + h < in) {
          winograd_weight_transform(&weights.values(o, (2 * pair + h) * 9), t[h]);
        } else {
          std::fill_n(t[h], 16, std::int16_t{0});  // the missing partner of an odd last channel
        }
      }
      for (index_t pos = 0; pos < 16; ++pos) {
        const std::uint32_t lo = static_cast<std::uint16_t>(t[0][pos]), hi = static_cast<std::uint16_t>(t[1][pos]);
        wg.v.data()[(pos * wg.pairs + pair) * wg.padded_channels + o] = static_cast<std::int32_t>(lo | (hi << 16));
      }
    }
  }
  return wg;
}

/// The shape of one sample's Winograd pass.
struct WinogradGeometry {
  index_t channels, height, width, padding;  ///< the input
  index_t out_h, out_w;                      ///< the convolution's output
  index_t tile_rows, tile_cols, chunks;      ///< ⌈out/2⌉ tiles; 8-tile vectors per tile row
  index_t row_stride;  ///< dwords of one parity of one packed row: the 8·chunks + 1 the tiles read, in whole 8-dword stores

  WinogradGeometry(index_t c, index_t h, index_t w, index_t pad)
      : channels(c), height(h), width(w), padding(pad), out_h(h + 2 * pad - 2), out_w(w + 2 * pad - 2),
        tile_rows((out_h + 1) / 2), tile_cols((out_w + 1) / 2), chunks((tile_cols + 7) / 8), row_stride(8 * chunks + 8) {}

  [[nodiscard]] index_t vectors() const noexcept { return tile_rows * chunks; }
  [[nodiscard]] index_t packed_rows() const noexcept { return 2 * tile_rows + 2; }
  /// int32 elements of each work buffer.
  [[nodiscard]] index_t packed_size(index_t pairs) const noexcept { return pairs * packed_rows() * 2 * row_stride; }
  /// Bytes of one channel's zero-point-padded plane (2·row_stride columns, whole 16-byte steps).
  [[nodiscard]] index_t plane_bytes() const noexcept { return packed_rows() * 2 * row_stride; }
  [[nodiscard]] index_t transformed_size(index_t pairs) const noexcept { return 16 * pairs * vectors() * 8; }
};

#if MINNOW_X86_KERNELS

/// Copies n bytes with at most two overlapping fixed-size copies per 16 bytes (rows are short: a call to
/// memcpy per row costs more than the copy).
inline void copy_row(std::uint8_t* dst, const std::uint8_t* src, index_t n) noexcept {
  if (n >= 16) {
    for (index_t i = 0; i + 16 <= n; i += 16) std::memcpy(dst + i, src + i, 16);
    if (n % 16 != 0) std::memcpy(dst + n - 16, src + n - 16, 16);
  } else if (n >= 8) {
    std::memcpy(dst, src, 8);
    std::memcpy(dst + n - 8, src + n - 8, 8);
  } else if (n >= 4) {
    std::memcpy(dst, src, 4);
    std::memcpy(dst + n - 4, src + n - 4, 4);
  } else {
    for (index_t i = 0; i < n; ++i) dst[i] = src[i];
  }
}

/// Step 1: sample `x` (NCHW uint8) → packed[pair][row][parity][row_stride], dword = (x_c, x_c+1) as int16,
/// parity 0 holding padded columns 0, 2, 4…, parity 1 columns 1, 3, 5…. Outside the image (padding, and the
/// rows and columns of tiles past the output's edge, whose outputs are dropped) every value is the zero
/// point, and 0 for the missing partner of an odd last channel. `planes` is scratch for two padded byte
/// planes (2·plane_bytes()).
MINNOW_TARGET_AVX2 inline void winograd_pack_input(const WinogradGeometry& g, const std::uint8_t* x, std::uint8_t zp,
                                                   std::int32_t* packed, std::uint8_t* planes) noexcept {
  const index_t span = 2 * g.row_stride, rows = g.packed_rows(), pairs = (g.channels + 1) / 2;
  for (index_t pair = 0; pair < pairs; ++pair) {
    for (index_t t = 0; t < 2; ++t) {
      const index_t c = 2 * pair + t;
      std::uint8_t* plane = planes + t * g.plane_bytes();
      std::memset(plane, c < g.channels ? zp : 0, static_cast<std::size_t>(g.plane_bytes()));
      for (index_t h = 0; c < g.channels && h < g.height; ++h) {
        copy_row(plane + (h + g.padding) * span + g.padding, x + (c * g.height + h) * g.width, g.width);
      }
    }
    for (index_t r = 0; r < rows; ++r) {
      std::int32_t* even = packed + (pair * rows + r) * 2 * g.row_stride;
      std::int32_t* odd = even + g.row_stride;
      for (index_t col = 0; col < span; col += 16) {
        const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(planes + r * span + col));
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(planes + g.plane_bytes() + r * span + col));
        // (a_j, b_j) int16 pairs for columns col…col+7 and col+8…col+15.
        const __m256 lo = _mm256_castsi256_ps(_mm256_cvtepu8_epi16(_mm_unpacklo_epi8(a, b)));
        const __m256 hi = _mm256_castsi256_ps(_mm256_cvtepu8_epi16(_mm_unpackhi_epi8(a, b)));
        // Even and odd dwords of the 16, then the 64-bit quarters in order 0, 2, 1, 3.
        const __m256i e = _mm256_permute4x64_epi64(_mm256_castps_si256(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0))), _MM_SHUFFLE(3, 1, 2, 0));
        const __m256i o = _mm256_permute4x64_epi64(_mm256_castps_si256(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1))), _MM_SHUFFLE(3, 1, 2, 0));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(even + col / 2), e);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(odd + col / 2), o);
      }
    }
  }
}

/// Step 2: U = Bᵀ d B for every channel pair and tile vector, into u[pos][pair][vector][8 dwords].
MINNOW_TARGET_AVX2 inline void winograd_input_transform(const WinogradGeometry& g, index_t pairs, const std::int32_t* packed,
                                                        std::int32_t* u) noexcept {
  const index_t vectors = g.vectors(), pos_stride = pairs * vectors * 8;
  for (index_t pair = 0; pair < pairs; ++pair) {
    for (index_t ti = 0; ti < g.tile_rows; ++ti) {
      for (index_t chunk = 0; chunk < g.chunks; ++chunk) {
        __m256i db[4][4];  // d·B, row by row
#pragma GCC unroll 4
        for (int r = 0; r < 4; ++r) {
          const std::int32_t* even = packed + (pair * g.packed_rows() + 2 * ti + r) * 2 * g.row_stride + 8 * chunk;
          const std::int32_t* odd = even + g.row_stride;
          const __m256i d0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(even));
          const __m256i d1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(odd));
          const __m256i d2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(even + 1));
          const __m256i d3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(odd + 1));
          db[r][0] = _mm256_sub_epi16(d0, d2);
          db[r][1] = _mm256_add_epi16(d1, d2);
          db[r][2] = _mm256_sub_epi16(d2, d1);
          db[r][3] = _mm256_sub_epi16(d1, d3);
        }
        std::int32_t* dst = u + (pair * vectors + ti * g.chunks + chunk) * 8;
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
          const __m256i col[4] = {_mm256_sub_epi16(db[0][j], db[2][j]), _mm256_add_epi16(db[1][j], db[2][j]),
                                  _mm256_sub_epi16(db[2][j], db[1][j]), _mm256_sub_epi16(db[1][j], db[3][j])};
#pragma GCC unroll 4
          for (int i = 0; i < 4; ++i) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + (4 * i + j) * pos_stride), col[i]);
        }
      }
    }
  }
}

/// Step 3 for R tile vectors × 4 channels at every position: m[pos][r][l] = Σ_pair U[pos][pair][v0 + r] · V[pos][pair][j0 + l].
template <int R>
MINNOW_TARGET_AVX2 void winograd_products(const WinogradWeights& wg, index_t vectors, const std::int32_t* u, index_t v0, index_t j0,
                                          __m256i* m) noexcept {
  const index_t pos_stride = wg.pairs * vectors * 8;
  for (index_t pos = 0; pos < 16; ++pos) {
    const std::int32_t* up = u + pos * pos_stride + v0 * 8;
    const std::int32_t* vp = wg.v.data() + pos * wg.pairs * wg.padded_channels + j0;
    __m256i acc[R][4];
    {  // pair 0 starts the sums (one channel pair, as conv1's single input channel, needs no addition)
      __m256i a[R];
      for (int r = 0; r < R; ++r) a[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(up + 8 * r));
#pragma GCC unroll 4
      for (int l = 0; l < 4; ++l) {
        const __m256i w = _mm256_set1_epi32(vp[l]);
        for (int r = 0; r < R; ++r) acc[r][l] = _mm256_madd_epi16(a[r], w);
      }
    }
    up += vectors * 8;
    vp += wg.padded_channels;
    for (index_t pair = 1; pair < wg.pairs; ++pair, up += vectors * 8, vp += wg.padded_channels) {
      __m256i a[R];
      for (int r = 0; r < R; ++r) a[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(up + 8 * r));
#pragma GCC unroll 4
      for (int l = 0; l < 4; ++l) {
        const __m256i w = _mm256_set1_epi32(vp[l]);
        for (int r = 0; r < R; ++r) acc[r][l] = _mm256_add_epi32(acc[r][l], _mm256_madd_epi16(a[r], w));
      }
    }
#pragma GCC unroll 4
    for (int l = 0; l < 4; ++l) {
      for (int r = 0; r < R; ++r) m[(pos * R + r) * 4 + l] = acc[r][l];
    }
  }
}

/// Step 4's transform: 4·Y = Aᵀ M A for one (vector, channel), M at m[pos · Stride]; y[2a + b] = 4·Y[a][b].
template <index_t Stride>
[[gnu::always_inline]] MINNOW_TARGET_AVX2 inline void winograd_output_transform(const __m256i* m, __m256i* y) noexcept {
  __m256i t0[4], t1[4];
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const __m256i m0 = m[(0 + j) * Stride], m1 = m[(4 + j) * Stride], m2 = m[(8 + j) * Stride], m3 = m[(12 + j) * Stride];
    t0[j] = _mm256_add_epi32(_mm256_add_epi32(m0, m1), m2);
    t1[j] = _mm256_sub_epi32(_mm256_sub_epi32(m1, m2), m3);
  }
  y[0] = _mm256_add_epi32(_mm256_add_epi32(t0[0], t0[1]), t0[2]);
  y[1] = _mm256_sub_epi32(_mm256_sub_epi32(t0[1], t0[2]), t0[3]);
  y[2] = _mm256_add_epi32(_mm256_add_epi32(t1[0], t1[1]), t1[2]);
  y[3] = _mm256_sub_epi32(_mm256_sub_epi32(t1[1], t1[2]), t1[3]);
}

/// Step 4's output stage on 4·Y of one channel: the exact shift by 2, the column term (no Σx term: the
/// weights are symmetric), then qgemm's requantize8 or dequantize8 on the first `count` lanes.
[[gnu::always_inline]] MINNOW_TARGET_AVX2 inline void winograd_store(const Epilogue& e, __m256i four_y, __m256i colterm, __m256 s, __m256 o,
                                                                   index_t count, std::uint8_t* out) noexcept {
  store_bytes8(low_bytes8(requantize8(e, _mm256_add_epi32(_mm256_srai_epi32(four_y, 2), colterm), s, o)), count, out);
}
[[gnu::always_inline]] MINNOW_TARGET_AVX2 inline void winograd_store(const Epilogue& e, __m256i four_y, __m256i colterm, __m256 s, __m256 o,
                                                                   index_t count, float* out) noexcept {
  _mm256_maskstore_ps(out, first_lanes8(std::min<index_t>(count, 8)),
                      dequantize8(e, _mm256_add_epi32(_mm256_srai_epi32(four_y, 2), colterm), s, o));
}

/// Step 4 for the R tile vectors from v0 and the channels from j0 whose products are in m: the transform,
/// the 2×2 max or the column interleave, and the output stage into y (see winograd_sample).
template <bool Pool, int R, class OutT>
MINNOW_TARGET_AVX2 void winograd_finish(const WinogradGeometry& g, const Epilogue& e, const __m256i* m, index_t v0, index_t j0,
                                        index_t channels, OutT* y) noexcept {
  const index_t pooled_h = g.out_h / 2, pooled_w = g.out_w / 2;
  const index_t plane = Pool ? pooled_h * pooled_w : g.out_h * g.out_w;
  for (index_t l = 0; l < channels; ++l) {
    const index_t j = j0 + l;
    const auto c = static_cast<std::size_t>(j);
    const __m256i colterm = _mm256_set1_epi32(e.colterm[c]);
    const __m256 s = _mm256_set1_ps(e.s[c]), o = _mm256_set1_ps(e.o[c]);
    // Vector v holds tile row v / chunks, tiles from 8·(v % chunks): stepped here, not divided per vector.
    for (index_t r = 0, next_row = v0 / g.chunks, next_chunk = v0 % g.chunks; r < R; ++r) {
      const index_t ti = next_row, tj0 = 8 * next_chunk;
      if (++next_chunk == g.chunks) {
        next_chunk = 0;
        ++next_row;
      }
      if (Pool && (ti >= pooled_h || tj0 >= pooled_w)) continue;
      __m256i t[4];
      winograd_output_transform<R * kWinogradChannels>(m + r * kWinogradChannels + l, t);
      if constexpr (Pool) {
        // One tile is one pool window; the max commutes with the exact shift by 2.
        const __m256i top = _mm256_max_epi32(_mm256_max_epi32(t[0], t[1]), _mm256_max_epi32(t[2], t[3]));
        winograd_store(e, top, colterm, s, o, std::min<index_t>(8, pooled_w - tj0), y + j * plane + ti * pooled_w + tj0);
      } else {
        for (index_t a = 0; a < 2 && 2 * ti + a < g.out_h; ++a) {
          // Lane p of (Y[a][0], Y[a][1]) → output columns 2p, 2p + 1 of the 16 from 2·tj0.
          const __m256i lo = _mm256_unpacklo_epi32(t[2 * a], t[2 * a + 1]), hi = _mm256_unpackhi_epi32(t[2 * a], t[2 * a + 1]);
          const __m256i cols[2] = {_mm256_permute2x128_si256(lo, hi, 0x20), _mm256_permute2x128_si256(lo, hi, 0x31)};
          for (index_t half = 0; half < 2 && 2 * tj0 + 8 * half < g.out_w; ++half) {
            const index_t ow = 2 * tj0 + 8 * half;
            winograd_store(e, cols[half], colterm, s, o, std::min<index_t>(8, g.out_w - ow), y + j * plane + (2 * ti + a) * g.out_w + ow);
          }
        }
      }
    }
  }
}

/// One sample through the Winograd kernel: `x` its NCHW input, `packed`, `u` and `planes` work buffers of the
/// geometry's sizes, `y` its output planes (with Pool the 2×2-pooled planes, floor mode, as direct_sample).
template <bool Pool, class OutT>
MINNOW_TARGET_AVX2 void winograd_sample(arch::avx2, const WinogradGeometry& g, const WinogradWeights& wg, const Epilogue& e,
                                        const std::uint8_t* x, std::uint8_t zp, std::int32_t* packed, std::int32_t* u,
                                        std::uint8_t* planes, OutT* y) noexcept {
  winograd_pack_input(g, x, zp, packed, planes);
  winograd_input_transform(g, wg.pairs, packed, u);
  const index_t vectors = g.vectors();
  __m256i m[16 * kWinogradVectors * kWinogradChannels];
  for (index_t j0 = 0; j0 < wg.padded_channels; j0 += kWinogradChannels) {
    // Blocks of 3 vectors; a remainder of 4 as 2 + 2 (a 1-vector block reloads the weights for 4 products).
    for (index_t v0 = 0; v0 < vectors;) {
      const index_t rest = vectors - v0, rows = rest == 4 ? 2 : std::min<index_t>(rest, kWinogradVectors);
      const index_t channels = std::min(kWinogradChannels, wg.channels - j0);
      if (rows == 3) {
        winograd_products<3>(wg, vectors, u, v0, j0, m);
        winograd_finish<Pool, 3>(g, e, m, v0, j0, channels, y);
      } else if (rows == 2) {
        winograd_products<2>(wg, vectors, u, v0, j0, m);
        winograd_finish<Pool, 2>(g, e, m, v0, j0, channels, y);
      } else {
        winograd_products<1>(wg, vectors, u, v0, j0, m);
        winograd_finish<Pool, 1>(g, e, m, v0, j0, channels, y);
      }
      v0 += rows;
    }
  }
}

#endif  // MINNOW_X86_KERNELS

}  // namespace minnow::infer::detail
