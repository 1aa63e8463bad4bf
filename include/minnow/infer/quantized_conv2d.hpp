#pragma once
/// @file infer/quantized_conv2d.hpp
/// @brief An inference-only Conv2d on integers: uint8 NCHW activations × per-output-channel int8 weights.
///
/// The convolution is the matrix product of infer/qgemm.hpp on the im2col matrix: output pixel
/// (n, oh, ow) is a row, input tap (c, i, j) a column (PyTorch's weight order, so a weight
/// `[O, C, k, k]` is used as `[O × C·k·k]` without reordering):
/// @code
///   A[(n, oh, ow), (c, i, j)] = x[n, c, oh·s − p + i, ow·s − p + j]   inside the image
///                             = za                                     in the padding
///   y[n, o, oh, ow] = output_stage( Σ_(c,i,j) (A − za)·(W[o, (c,i,j)] − zw[o]) , bias[o], ReLU )
/// @endcode
/// Padding with the input zero point makes the padded taps contribute exactly 0, as zero padding does
/// in the float convolution. The output stage (requantize to uint8 with the next layer's parameters,
/// or dequantize to float) is qgemm's, bit for bit.
///
/// ## How the im2col matrix reaches the kernels
/// Output rows are cut into chunks of about 256 KB of im2col bytes; the chunks (of any samples) run in
/// parallel, each through the single-threaded product, so batch 1 is split across threads as well as
/// batch 256. A chunk is built in two passes: (1) the column-major im2col `[C·k·k × rows]`, where each
/// (tap, output row) is a contiguous copy of an input row, as in nn::Conv2d; (2) a 4×8 byte transpose
/// into qgemm's activation panels (8 rows × 4 taps per 32 bytes): SSE2 unpacks on the AVX2 and VNNI
/// paths, a scalar loop on the scalar path. Building the panels directly would scatter every byte to
/// an address 4 apart; two streaming passes are cheaper. The product's `[rows × O]` output (NHWC) is
/// transposed into NCHW.
///
/// ## Direct kernels (AVX-512 VNNI + VBMI path)
/// Small convolutions waste most of that path: conv1 of the networks has k = 9 taps (12 after padding to
/// groups of 4), 16 of 48 panel channels in use, and im2col + transpose + NCHW scatter cost more than the
/// product. The VNNI path therefore computes the same accumulators directly, vectorized across 16 output
/// pixels of one output row (lane p = pixel p), with one vpdpbusd per (group of 4 input bytes, channel):
/// - `DirectKind::taps` (in·k·k < 32): a group is up to 4 neighbouring taps (i, j…j+3) of one kernel row;
///   one 64-byte load of the padded input row and one vpermb (lane 4p + t ← byte p·stride + j + t) give
///   every pixel's 4 bytes;
/// - `DirectKind::channels` (stride ≤ 2): a group is one tap (i, j) of 4 input channels; the input is
///   first interleaved per sample into 4-channel dwords (NC/4·H·W·4), so a group is one plain load
///   (stride 2: two loads and a vpermt2d).
/// The layer picks the kind with fewer groups (channels on a tie); stride > 2 with ≥ 32 taps keeps im2col.
/// Each sample is padded once with the input zero point (as the im2col path does), the weights are packed
/// once into dword groups of 8 output channels (zero weights for padding taps and channels), and a tile of
/// 2 vectors × 8 channels accumulates over all groups. The exact accumulator is then qgemm's
/// `Σ x·w + colterm[o] − zw[o]·Σx` (Σx by vpdpbusd with ones, only when some zw ≠ 0) and the output
/// stage repeats qgemm's AVX-512 operations, so every path gives the same bits (tested against
/// conv2d_reference). Samples run in parallel; batch 1 runs on one thread (no OpenMP region).
/// forward_pooled() adds a fused 2×2 max pool on the int32 accumulators (see there).

#include <minnow/detail/parallel.hpp>
#include <minnow/error.hpp>
#include <minnow/infer/int_tensor.hpp>
#include <minnow/infer/qgemm.hpp>
#include <minnow/infer/quantized_maxpool.hpp>
#include <minnow/quant/concepts.hpp>
#include <minnow/quant/fake_quantize.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>


namespace minnow::infer {

namespace detail {

/// Column-major im2col rows [k4·4 × ld] → activation panels of `a` (rows 0 … a.m − 1 of the chunk).
inline void columns_to_panels(arch::scalar, const std::uint8_t* col, index_t ld, QuantizedActivations& a) noexcept {
  const index_t panels = (a.m + kMR - 1) / kMR, stride = a.k4 * kAStep;
  for (index_t p = 0; p < panels; ++p) {
    std::uint8_t* dst = a.panels.data() + p * stride;
    for (index_t g = 0; g < a.k4; ++g, dst += kAStep) {
      for (index_t i = 0; i < kMR; ++i) {
        for (index_t t = 0; t < 4; ++t) dst[i * 4 + t] = col[(g * 4 + t) * ld + p * kMR + i];
      }
    }
  }
}

#if MINNOW_X86_KERNELS
/// The same with SSE2 unpacks: 4 taps × 16 rows → two panels' 32-byte groups per step.
MINNOW_TARGET_AVX2 inline void columns_to_panels(arch::avx2, const std::uint8_t* col, index_t ld, QuantizedActivations& a) noexcept {
  const index_t panels = (a.m + kMR - 1) / kMR, stride = a.k4 * kAStep;
  const auto load16 = [](const std::uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); };
  const auto load8 = [](const std::uint8_t* p) { return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)); };
  const auto store = [](std::uint8_t* p, __m128i v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v); };
  for (index_t g = 0; g < a.k4; ++g) {
    const std::uint8_t* c0 = col + (g * 4) * ld;
    const std::uint8_t *c1 = c0 + ld, *c2 = c1 + ld, *c3 = c2 + ld;
    std::uint8_t* dst = a.panels.data() + g * kAStep;
    index_t p = 0;
    for (; p + 2 <= panels; p += 2) {
      const index_t r = p * kMR;
      // t0/t1: (tap 0, tap 1) byte pairs of rows 0–7 / 8–15; t2/t3 the same for taps 2, 3.
      const __m128i a0 = load16(c0 + r), a1 = load16(c1 + r), a2 = load16(c2 + r), a3 = load16(c3 + r);
      const __m128i t0 = _mm_unpacklo_epi8(a0, a1), t1 = _mm_unpackhi_epi8(a0, a1);
      const __m128i t2 = _mm_unpacklo_epi8(a2, a3), t3 = _mm_unpackhi_epi8(a2, a3);
      std::uint8_t* d0 = dst + p * stride;
      std::uint8_t* d1 = d0 + stride;
      store(d0, _mm_unpacklo_epi16(t0, t2));  // rows 0–3, taps 0–3 each
      store(d0 + 16, _mm_unpackhi_epi16(t0, t2));
      store(d1, _mm_unpacklo_epi16(t1, t3));
      store(d1 + 16, _mm_unpackhi_epi16(t1, t3));
    }
    if (p < panels) {  // an odd last panel: 8 rows
      const index_t r = p * kMR;
      const __m128i t0 = _mm_unpacklo_epi8(load8(c0 + r), load8(c1 + r));
      const __m128i t2 = _mm_unpacklo_epi8(load8(c2 + r), load8(c3 + r));
      std::uint8_t* d0 = dst + p * stride;
      store(d0, _mm_unpacklo_epi16(t0, t2));
      store(d0 + 16, _mm_unpackhi_epi16(t0, t2));
    }
  }
}
#endif

/// Short copies and fills (an output row is often 7–28 bytes): plain loops, or one masked AVX-512 move.
inline void copy_bytes(arch::scalar, std::uint8_t* dst, const std::uint8_t* src, index_t n) noexcept {
  std::copy_n(src, n, dst);
}
inline void fill_bytes(arch::scalar, std::uint8_t* dst, std::uint8_t v, index_t n) noexcept { std::fill_n(dst, n, v); }

#if MINNOW_X86_KERNELS
MINNOW_TARGET_AVX512 inline void copy_bytes(arch::avx512, std::uint8_t* dst, const std::uint8_t* src, index_t n) noexcept {
  for (; n >= 64; n -= 64, dst += 64, src += 64) _mm512_storeu_si512(dst, _mm512_loadu_si512(src));
  // Masked-off bytes are neither read nor written, so the tail stays inside both buffers.
  const auto mask = static_cast<__mmask64>(n == 0 ? 0 : ~0ULL >> (64 - n));
  _mm512_mask_storeu_epi8(dst, mask, _mm512_maskz_loadu_epi8(mask, src));
}
MINNOW_TARGET_AVX512 inline void fill_bytes(arch::avx512, std::uint8_t* dst, std::uint8_t v, index_t n) noexcept {
  const __m512i value = _mm512_set1_epi8(static_cast<char>(v));
  for (; n >= 64; n -= 64, dst += 64) _mm512_storeu_si512(dst, value);
  _mm512_mask_storeu_epi8(dst, static_cast<__mmask64>(n == 0 ? 0 : ~0ULL >> (64 - n)), value);
}
#endif

// ---- direct convolution for the VNNI path: no im2col, the output written NCHW by the kernel ----

/// Which direct kernel a layer uses (see QuantizedConv2d's "Direct kernels" comment).
enum class DirectKind {
  none,      ///< im2col + qgemm
  taps,      ///< up to 4 neighbouring taps of one kernel row per byte group (in·k·k < 32)
  channels,  ///< 4 input channels of one tap per byte group (in ≥ 4, stride ≤ 2)
};

/// The weights of a direct kernel: G byte groups per output channel, channels in blocks of 8 (zero padded),
/// and for each group where its 4 bytes come from.
struct DirectWeights {
  DirectKind kind = DirectKind::none;
  index_t groups = 0, blocks = 0;
  Tensor<std::int32_t, 1> w;          ///< [blocks × G × 8] dwords of 4 int8 weights (0 for padding taps/channels)
  Tensor<std::int32_t, 1> ones;       ///< [G] dwords with byte 1 where the tap is real: Σ x over the window
  Tensor<std::uint8_t, 1> index;      ///< taps: [G × 64] vpermb indices (lane 4p + t ← byte p·stride + j)
  std::vector<index_t> c, i, j;       ///< group g reads channel (group) c[g], kernel row i[g], column j[g]

  [[nodiscard]] std::size_t bytes() const noexcept {
    return static_cast<std::size_t>(w.size() + ones.size()) * sizeof(std::int32_t) + static_cast<std::size_t>(index.size());
  }
};

/// Chooses and packs the direct kernel for a layer, or returns kind none.
[[nodiscard]] inline DirectWeights make_direct_weights(const Int8Weights& weights, index_t in, index_t k, index_t stride) {
  DirectWeights d;
  const index_t n = weights.rows(), taps = in * k * k, jg = (k + 3) / 4;
  // Each kernel needs its vector loads to cover 16 output pixels; the one with fewer byte groups (less
  // zero padding) wins, channels on a tie (no byte permute).
  const bool taps_ok = taps < 32 && 15 * stride + 4 * jg <= 64, channels_ok = stride <= 2;
  if (taps_ok && (!channels_ok || in * k * jg < (in + 3) / 4 * k * k)) {
    d.kind = DirectKind::taps;
  } else if (channels_ok) {
    d.kind = DirectKind::channels;
  } else {
    return d;
  }
  const auto pack = [](const std::int8_t* b) {  // 4 bytes → one dword, byte t in bits 8t…8t+7
    std::uint32_t v = 0;
    for (int t = 0; t < 4; ++t) v |= static_cast<std::uint32_t>(static_cast<std::uint8_t>(b[t])) << (8 * t);
    return static_cast<std::int32_t>(v);
  };
  // tap(o, g, t): the weight in byte t of group g (and whether it is a real tap).
  std::vector<std::int8_t> bytes;
  if (d.kind == DirectKind::taps) {
    for (index_t c = 0; c < in; ++c) {
      for (index_t i = 0; i < k; ++i) {
        for (index_t g = 0; g < jg; ++g) {
          d.c.push_back(c);
          d.i.push_back(i);
          d.j.push_back(4 * g);
        }
      }
    }
  } else {
    for (index_t c = 0; c < (in + 3) / 4; ++c) {
      for (index_t i = 0; i < k; ++i) {
        for (index_t j = 0; j < k; ++j) {
          d.c.push_back(c);
          d.i.push_back(i);
          d.j.push_back(j);
        }
      }
    }
  }
  d.groups = static_cast<index_t>(d.c.size());
  d.blocks = (n + 7) / 8;
  const auto real = [&](index_t g, index_t t) {
    return d.kind == DirectKind::taps ? d.j[static_cast<std::size_t>(g)] + t < k : 4 * d.c[static_cast<std::size_t>(g)] + t < in;
  };
  const auto tap = [&](index_t o, index_t g, index_t t) -> std::int8_t {
    const auto s = static_cast<std::size_t>(g);
    if (o >= n || !real(g, t)) return 0;
    if (d.kind == DirectKind::taps) return weights.values(o, (d.c[s] * k + d.i[s]) * k + d.j[s] + t);
    return weights.values(o, ((4 * d.c[s] + t) * k + d.i[s]) * k + d.j[s]);
  };
  d.w.resize({d.blocks * d.groups * 8});
  for (index_t b = 0; b < d.blocks; ++b) {
    for (index_t g = 0; g < d.groups; ++g) {
      for (index_t l = 0; l < 8; ++l) {
        const std::int8_t q[4] = {tap(b * 8 + l, g, 0), tap(b * 8 + l, g, 1), tap(b * 8 + l, g, 2), tap(b * 8 + l, g, 3)};
        d.w.data()[(b * d.groups + g) * 8 + l] = pack(q);
      }
    }
  }
  d.ones.resize({d.groups});
  for (index_t g = 0; g < d.groups; ++g) {
    const std::int8_t q[4] = {real(g, 0) ? std::int8_t{1} : std::int8_t{0}, real(g, 1) ? std::int8_t{1} : std::int8_t{0},
                              real(g, 2) ? std::int8_t{1} : std::int8_t{0}, real(g, 3) ? std::int8_t{1} : std::int8_t{0}};
    d.ones.data()[g] = pack(q);
  }
  if (d.kind == DirectKind::taps) {
    d.index.resize({d.groups * 64});
    for (index_t g = 0; g < d.groups; ++g) {
      for (index_t p = 0; p < 16; ++p) {
        for (index_t t = 0; t < 4; ++t) {
          // Lanes of padding taps read any in-range byte: their weight is 0.
          d.index.data()[g * 64 + p * 4 + t] = static_cast<std::uint8_t>((p * stride + d.j[static_cast<std::size_t>(g)] + t) & 63);
        }
      }
    }
  }
  return d;
}

/// Bytes read past the end of a direct kernel's padded input (masked-off lanes of the last vectors).
inline constexpr index_t kDirectSlack = 192;

#if MINNOW_X86_KERNELS
/// Whether the direct kernels are compiled (they run where arch::avx512_vnni does and the CPU has VBMI).
inline constexpr bool has_direct_conv = true;

/// The geometry a direct kernel runs over: one sample's padded input, 16 output pixels of a row per vector.
struct DirectGeometry {
  index_t out_h, out_w, stride, row_bytes, pixel_bytes, channels;
  const index_t* offsets;  ///< byte offset of group g from a vector's base
};

/// Group g of the 16 pixels starting at `base`, as vpdpbusd's unsigned operand (lane p = pixel p's 4 bytes).
struct TapLoader {
  const std::uint8_t* index;
  const index_t* offsets;
  [[nodiscard]] MINNOW_TARGET_AVX512_VBMI __m512i operator()(const std::uint8_t* base, index_t g) const noexcept {
    return _mm512_permutexvar_epi8(_mm512_loadu_si512(index + g * 64), _mm512_loadu_si512(base + offsets[g]));
  }
};
struct ChannelLoader {
  const index_t* offsets;
  [[nodiscard]] MINNOW_TARGET_AVX512_VBMI __m512i operator()(const std::uint8_t* base, index_t g) const noexcept {
    return _mm512_loadu_si512(base + offsets[g]);
  }
};
struct ChannelLoader2 {  // stride 2: the even dwords of 32
  const index_t* offsets;
  [[nodiscard]] MINNOW_TARGET_AVX512_VBMI __m512i operator()(const std::uint8_t* base, index_t g) const noexcept {
    const std::uint8_t* p = base + offsets[g];
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_epi32(_mm512_loadu_si512(p), even, _mm512_loadu_si512(p + 64));
  }
};

/// qgemm's `corrected`: Σ x·w + colterm[j] − zw[j]·Σx, the exact accumulator (mod 2³², as qgemm computes it).
MINNOW_TARGET_AVX512_VBMI inline __m512i direct_correct(const Epilogue& e, __m512i acc, __m512i rowsum, index_t j) noexcept {
  acc = _mm512_add_epi32(acc, _mm512_set1_epi32(e.colterm[static_cast<std::size_t>(j)]));
  if (e.zw) acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(_mm512_set1_epi32(e.zw[j]), rowsum));
  return acc;
}

/// qgemm's output stage (finish_row, AVX-512) on 16 exact accumulators of channel j: the same operations,
/// so the same bits.
MINNOW_TARGET_AVX512_VBMI inline void direct_store(const Epilogue& e, __m512i acc, index_t j, __mmask16 m, std::uint8_t* out) noexcept {
  const auto c = static_cast<std::size_t>(j);
  const __m512 r = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_set1_ps(e.s[c]), _mm512_set1_ps(e.o[c]));
  __m512 q = _mm512_add_ps(_mm512_roundscale_ps(r, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), _mm512_set1_ps(e.zo));
  q = _mm512_min_ps(_mm512_max_ps(q, _mm512_set1_ps(e.lo)), _mm512_set1_ps(e.hi));
  // q is already in [0, 255]: the low byte of each dword is vpmovusdb's result. vpermb + a masked store
  // instead of vpmovusdb to memory, which is microcoded (slow) on AMD Zen 4/5.
  const __m512i low_bytes = _mm512_set_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 60, 56, 52, 48, 44,
                                            40, 36, 32, 28, 24, 20, 16, 12, 8, 4, 0);
  _mm_mask_storeu_epi8(out, m, _mm512_castsi512_si128(_mm512_permutexvar_epi8(low_bytes, _mm512_cvtps_epi32(q))));
}
MINNOW_TARGET_AVX512_VBMI inline void direct_store(const Epilogue& e, __m512i acc, index_t j, __mmask16 m, float* out) noexcept {
  const auto c = static_cast<std::size_t>(j);
  const __m512 r = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_set1_ps(e.s[c]), _mm512_set1_ps(e.o[c]));
  _mm512_mask_storeu_ps(out, m, e.relu ? _mm512_max_ps(r, _mm512_setzero_ps()) : r);
}

/// The 2×2 max of two output rows' exact accumulators (16 columns each): lane p < 8 holds the max of
/// columns 2p, 2p + 1 of both rows.
MINNOW_TARGET_AVX512_VBMI inline __m512i direct_pool2(__m512i row0, __m512i row1) noexcept {
  const __m512i v = _mm512_max_epi32(row0, row1);
  const __m512i h = _mm512_max_epi32(v, _mm512_shuffle_epi32(v, _MM_PERM_CDAB));  // swap neighbours
  return _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0), h);
}

/// R vectors × 8 channels of block `block` (G groups × 8 dwords): Σ x·w over every group, then the output
/// stage into planes of `plane` outputs. With Pool (R = 2: two output rows, same columns) the 2×2 max of the
/// exact accumulators goes through the output stage once (see QuantizedConv2d::forward_pooled).
template <int R, bool Pool, class Load, class OutT>
MINNOW_TARGET_AVX512_VBMI void direct_tile(const Load& load, const DirectWeights& dw, index_t block, index_t channels, index_t plane,
                 const Epilogue& e, const std::uint8_t* const* base, const index_t* out_offset, const __mmask16* mask,
                 const __m512i* rowsum, OutT* y) noexcept {
  static_assert(!Pool || R == 2, "pooling takes two output rows");
  __m512i acc[R][8];
#pragma GCC unroll 8
  for (int l = 0; l < 8; ++l) {
    for (int r = 0; r < R; ++r) acc[r][l] = _mm512_setzero_si512();
  }
  const std::int32_t* w = dw.w.data() + block * dw.groups * 8;
  for (index_t g = 0; g < dw.groups; ++g, w += 8) {
    __m512i a[R];
    for (int r = 0; r < R; ++r) a[r] = load(base[r], g);
#pragma GCC unroll 8
    for (int l = 0; l < 8; ++l) {
      const __m512i wl = _mm512_set1_epi32(w[l]);
      for (int r = 0; r < R; ++r) acc[r][l] = _mm512_dpbusd_epi32(acc[r][l], a[r], wl);
    }
  }
  const index_t lanes = std::min<index_t>(8, channels - block * 8);
#pragma GCC unroll 8
  for (int l = 0; l < 8; ++l) {  // constant indices keep acc in registers
    if (l >= lanes) break;
    const index_t j = block * 8 + l;
    if constexpr (Pool) {
      const __m512i pooled = direct_pool2(direct_correct(e, acc[0][l], rowsum[0], j), direct_correct(e, acc[1][l], rowsum[1], j));
      direct_store(e, pooled, j, mask[0], y + j * plane + out_offset[0]);
    } else {
      for (int r = 0; r < R; ++r) direct_store(e, direct_correct(e, acc[r][l], rowsum[r], j), j, mask[r], y + j * plane + out_offset[r]);
    }
  }
}

/// One sample: `in` is its padded input (layout of the kind), `y` its output planes [channels × out_h × out_w],
/// or with Pool the 2×2-pooled planes [channels × ⌊out_h/2⌋ × ⌊out_w/2⌋].
template <bool Pool, class Load, class OutT>
MINNOW_TARGET_AVX512_VBMI void direct_sample(const Load& load, const DirectGeometry& d, const DirectWeights& dw, const Epilogue& e,
                   const std::uint8_t* in, std::int32_t* rowsums, OutT* y) noexcept {
  const index_t per_row = (d.out_w + 15) / 16, vectors = d.out_h * per_row;
  const auto base = [&](index_t v) {
    return in + (v / per_row) * d.stride * d.row_bytes + (v % per_row) * 16 * d.stride * d.pixel_bytes;
  };
  const auto lane_mask = [](index_t left) {
    return static_cast<__mmask16>(left >= 16 ? 0xFFFF : (left <= 0 ? 0 : (1u << left) - 1));
  };
  // Σ x over each output pixel's window, for weights with a zero point (the row-sum term of qgemm).
  std::fill_n(rowsums, vectors * 16, 0);
  if (e.zw) {
    for (index_t v = 0; v < vectors; ++v) {
      __m512i s = _mm512_setzero_si512();
      for (index_t g = 0; g < dw.groups; ++g) s = _mm512_dpbusd_epi32(s, load(base(v), g), _mm512_set1_epi32(dw.ones.data()[g]));
      _mm512_storeu_si512(rowsums + v * 16, s);
    }
  }
  if constexpr (Pool) {
    // Output rows 2i and 2i + 1 of a 16-column block → 8 pooled columns of pooled row i (floor mode: an odd
    // last row or column of the conv output is not computed).
    const index_t pooled_h = d.out_h / 2, pooled_w = d.out_w / 2, plane = pooled_h * pooled_w;
    for (index_t block = 0; block < dw.blocks; ++block) {
      for (index_t i = 0; i < pooled_h; ++i) {
        for (index_t c = 0; c < per_row && c * 8 < pooled_w; ++c) {
          const index_t v = 2 * i * per_row + c;
          const std::uint8_t* b[2] = {base(v), base(v + per_row)};
          const index_t o[1] = {i * pooled_w + c * 8};
          const __mmask16 m[1] = {lane_mask(std::min<index_t>(8, pooled_w - c * 8))};
          const __m512i rs[2] = {_mm512_loadu_si512(rowsums + v * 16), _mm512_loadu_si512(rowsums + (v + per_row) * 16)};
          direct_tile<2, true>(load, dw, block, d.channels, plane, e, b, o, m, rs, y);
        }
      }
    }
  } else {
    const index_t plane = d.out_h * d.out_w;
    const auto out_offset = [&](index_t v) { return (v / per_row) * d.out_w + (v % per_row) * 16; };
    const auto mask = [&](index_t v) { return lane_mask(d.out_w - (v % per_row) * 16); };
    for (index_t block = 0; block < dw.blocks; ++block) {
      index_t v = 0;
      for (; v + 2 <= vectors; v += 2) {
        const std::uint8_t* b[2] = {base(v), base(v + 1)};
        const index_t o[2] = {out_offset(v), out_offset(v + 1)};
        const __mmask16 m[2] = {mask(v), mask(v + 1)};
        const __m512i rs[2] = {_mm512_loadu_si512(rowsums + v * 16), _mm512_loadu_si512(rowsums + (v + 1) * 16)};
        direct_tile<2, false>(load, dw, block, d.channels, plane, e, b, o, m, rs, y);
      }
      if (v < vectors) {
        const std::uint8_t* b[1] = {base(v)};
        const index_t o[1] = {out_offset(v)};
        const __mmask16 m[1] = {mask(v)};
        const __m512i rs[1] = {_mm512_loadu_si512(rowsums + v * 16)};
        direct_tile<1, false>(load, dw, block, d.channels, plane, e, b, o, m, rs, y);
      }
    }
  }
}

/// Fills `n` dwords with `value` (AVX-512 stores: the buffer is bytes).
MINNOW_TARGET_AVX512_VBMI inline void fill_dwords(std::uint8_t* dst, std::int32_t value, index_t n) noexcept {
  const __m512i v = _mm512_set1_epi32(value);
  for (; n >= 16; n -= 16, dst += 64) _mm512_storeu_si512(dst, v);
  _mm512_mask_storeu_epi32(dst, static_cast<__mmask16>((1u << n) - 1), v);
}

/// Channels c0…c0+3 of one input row (W pixels; `rows[t]` null for a channel past the last) interleaved
/// into W dwords: byte t of dword p is rows[t][p].
MINNOW_TARGET_AVX512_VBMI inline void interleave4(const std::uint8_t* const* rows, index_t width, std::uint8_t* dst) noexcept {
  for (index_t w0 = 0; w0 < width; w0 += 16) {
    const index_t n = std::min<index_t>(16, width - w0);
    const auto m = static_cast<__mmask16>(n == 16 ? 0xFFFF : (1u << n) - 1);
    __m128i r[4];
    for (int t = 0; t < 4; ++t) r[t] = rows[t] ? _mm_maskz_loadu_epi8(m, rows[t] + w0) : _mm_setzero_si128();
    const __m128i a_lo = _mm_unpacklo_epi8(r[0], r[1]), a_hi = _mm_unpackhi_epi8(r[0], r[1]);
    const __m128i b_lo = _mm_unpacklo_epi8(r[2], r[3]), b_hi = _mm_unpackhi_epi8(r[2], r[3]);
    __m512i v = _mm512_castsi128_si512(_mm_unpacklo_epi16(a_lo, b_lo));  // pixels 0–3
    v = _mm512_inserti32x4(v, _mm_unpackhi_epi16(a_lo, b_lo), 1);        // 4–7
    v = _mm512_inserti32x4(v, _mm_unpacklo_epi16(a_hi, b_hi), 2);        // 8–11
    v = _mm512_inserti32x4(v, _mm_unpackhi_epi16(a_hi, b_hi), 3);        // 12–15
    _mm512_mask_storeu_epi32(dst + w0 * 4, m, v);
  }
}
#else
inline constexpr bool has_direct_conv = false;
#endif

/// One output row (or the part of it inside a chunk) of one sample.
struct ConvSegment {
  index_t sample;  ///< offset of the sample in the input
  index_t ih;      ///< oh·stride − padding: the input row of kernel row 0
  index_t ow0, ow1;
  index_t dst;     ///< column of output column 0 of this row in the chunk (may be negative)
};

/// Per-thread work buffers of a quantized convolution.
struct ConvWorkspace {
  std::vector<ConvSegment> segments;
  QuantizedActivations act;
  Tensor<std::uint8_t, 1> col;   ///< column-major im2col, [k4·4 × ld]
  Tensor<std::uint8_t, 1> out8;  ///< the product's [rows × O] output
  Tensor<float, 1> outf;
  Tensor<std::uint8_t, 1> padded;      ///< direct kernels: one sample's padded input
  Tensor<std::int32_t, 1> rowsums;     ///< direct kernels: Σ x per output pixel (weights with zero points)
};

}  // namespace detail

/// @brief Quantized Conv2d forward (PyTorch's nn.Conv2d, groups = dilation = 1, square kernel, zero
/// padding): uint8 NCHW input with per-tensor (scale, zero point), int8 weights per output channel.
class QuantizedConv2d {
 public:
  /// @param weights   int8 weights `[out × in·k·k]` (a `[out, in, k, k]` weight read row-major)
  /// @param in_channels, kernel, stride, padding  the geometry, as nn::Conv2d
  /// @param bias      empty or `out` floats (real units), added in the output stage
  /// @param input     the uint8 parameters of the input
  /// @param relu      fuse a ReLU into the output stage
  /// @throws value_error for a non-positive size, stride or negative padding, a bad input scale/zero
  /// point or a non-finite bias; shape_error when the weights' inner length is not in·k·k or the bias
  /// length is not out (all naming the layer).
  QuantizedConv2d(const Int8Weights& weights, index_t in_channels, index_t kernel, index_t stride, index_t padding,
                  std::span<const float> bias, quant::AffineParams input, bool relu = false)
      : in_(in_channels), kernel_(kernel), stride_(stride), padding_(padding) {
    const std::string layer = minnow::detail::concat("QuantizedConv2d '", weights.name, "'");
    if (in_ <= 0 || kernel_ <= 0 || stride_ <= 0 || padding_ < 0 || weights.rows() <= 0) {
      throw value_error(minnow::detail::concat(layer, ": invalid geometry in_channels=", in_, ", out_channels=",
                                               weights.rows(), ", kernel=", kernel_, ", stride=", stride_, ", padding=",
                                               padding_, " (sizes and stride must be > 0, padding >= 0)"));
    }
    if (weights.cols() != in_ * kernel_ * kernel_) {
      throw shape_error(minnow::detail::concat(layer, ": weights have ", weights.cols(), " taps per output channel, ",
                                               "expected in_channels·k·k = ", in_ * kernel_ * kernel_));
    }
    if (!bias.empty() && static_cast<index_t>(bias.size()) != weights.rows()) {
      throw shape_error(minnow::detail::concat(layer, ": ", bias.size(), " biases for ", weights.rows(), " output channels"));
    }
    for (std::size_t j = 0; j < bias.size(); ++j) {
      if (!std::isfinite(bias[j])) throw value_error(minnow::detail::concat(layer, ": bias ", j, " is ", bias[j]));
    }
    quant::check_affine_params(input, quant::QRange{0, 255}, (layer + " (input)").c_str());
    packed_ = pack_weights(weights);
    direct_ = detail::make_direct_weights(weights, in_, kernel_, stride_);
    bias_.assign(bias.begin(), bias.end());
    input_ = input;
    relu_ = relu;
  }

  [[nodiscard]] const std::string& name() const noexcept { return packed_.name; }
  [[nodiscard]] index_t in_channels() const noexcept { return in_; }
  [[nodiscard]] index_t out_channels() const noexcept { return packed_.n; }
  [[nodiscard]] index_t kernel() const noexcept { return kernel_; }
  [[nodiscard]] index_t stride() const noexcept { return stride_; }
  [[nodiscard]] index_t padding() const noexcept { return padding_; }
  [[nodiscard]] bool relu() const noexcept { return relu_; }
  [[nodiscard]] quant::AffineParams input_params() const noexcept { return input_; }
  /// Bytes of the weights as the layer holds them (packed panels with their padding, per-channel data, bias).
  /// The direct kernel's copy (tens of bytes to tens of KB) is counted too.
  [[nodiscard]] std::size_t bytes() const noexcept {
    return packed_.bytes() + direct_.bytes() + bias_.size() * sizeof(float);
  }
  /// The kernel the AVX-512 VNNI path runs where the CPU has VBMI (elsewhere im2col + qgemm).
  [[nodiscard]] detail::DirectKind direct_kind() const noexcept {
    return detail::has_direct_conv && direct_enabled_ && simd::cpu_has_vbmi() ? direct_.kind : detail::DirectKind::none;
  }
  /// For benchmarks and tests: `false` makes the VNNI path run im2col + qgemm, as the other paths do.
  void set_direct(bool enabled) noexcept { direct_enabled_ = enabled; }

  /// The output shape for an NCHW input shape. @throws shape_error naming the layer when it does not fit.
  [[nodiscard]] Shape<4> output_shape(const Shape<4>& input) const {
    if (input[1] != in_ || input[2] + 2 * padding_ < kernel_ || input[3] + 2 * padding_ < kernel_ || input[2] <= 0 ||
        input[3] <= 0) {
      throw shape_error(minnow::detail::concat("QuantizedConv2d '", packed_.name, "': input ", to_string(input),
                                               " does not fit (expected [N, ", in_, ", H, W] with H, W > 0 and H, W + 2·",
                                               padding_, " >= ", kernel_, ")"));
    }
    return {input[0], packed_.n, (input[2] + 2 * padding_ - kernel_) / stride_ + 1,
            (input[3] + 2 * padding_ - kernel_) / stride_ + 1};
  }

  /// @brief uint8 in (quantized with input_params()), uint8 out with the output parameters `out`.
  /// @throws shape_error for mismatched shapes; value_error for bad output parameters.
  template <class Arch = arch::automatic>
  void forward(TensorView<const std::uint8_t, 4> x, quant::AffineParams out, TensorView<std::uint8_t, 4> y) {
    check_output(x.shape(), y.shape());
    quant::check_affine_params(out, quant::QRange{0, 255}, ("QuantizedConv2d '" + packed_.name + "' (output)").c_str());
    simd::with_arch<Arch>(name(), [&](auto tag) { run<decltype(tag)>(x, y.data(), out); });
  }

  /// @brief uint8 in, float out: the dequantized convolution (+ bias, ReLU).
  template <class Arch = arch::automatic>
  void forward(TensorView<const std::uint8_t, 4> x, TensorView<float, 4> y) {
    check_output(x.shape(), y.shape());
    simd::with_arch<Arch>(name(), [&](auto tag) { run<decltype(tag)>(x, y.data(), {}); });
  }

  /// @brief uint8 in, uint8 out, followed by a 2×2 stride-2 max pool (floor mode, nn::MaxPool2d(2)):
  /// `y` is `[N, out, ⌊OH/2⌋, ⌊OW/2⌋]`, bit for bit the pool of forward()'s output.
  ///
  /// The output stage is non-decreasing in the accumulator (every scale is > 0, then round and clamp), so the
  /// max of four requantized outputs is the requantized max of their exact accumulators: the direct kernels
  /// take the 2×2 max of the int32 sums and run the output stage once per pooled value (a quarter of the
  /// epilogue work, no uint8 conv output written and read back). Other paths run forward() and the pool.
  /// @throws as forward(), and shape_error when the conv output is smaller than 2×2 or `y` has the wrong shape.
  template <class Arch = arch::automatic>
  void forward_pooled(TensorView<const std::uint8_t, 4> x, quant::AffineParams out, TensorView<std::uint8_t, 4> y) {
    const Shape<4> full = output_shape(x.shape());
    if (full[2] < 2 || full[3] < 2 || y.shape() != Shape<4>{full[0], full[1], full[2] / 2, full[3] / 2}) {
      throw shape_error(minnow::detail::concat("QuantizedConv2d '", packed_.name, "': pooled output is ", to_string(y.shape()),
                                               ", expected the 2x2 pool of ", to_string(full)));
    }
    quant::check_affine_params(out, quant::QRange{0, 255}, ("QuantizedConv2d '" + packed_.name + "' (output)").c_str());
    simd::with_arch<Arch>(name(), [&](auto tag) {
      using A = decltype(tag);
      if constexpr (detail::has_direct_conv && std::is_base_of_v<arch::avx512_vnni, A>) {
        if (direct_enabled_ && direct_.kind != detail::DirectKind::none && simd::cpu_has_vbmi()) {
          run_direct<std::uint8_t, true>(x, y.data(), out);
          return;
        }
      }
      unpooled_.resize(full);
      run<A>(x, unpooled_.data(), out);
      QuantizedMaxPool2d(2).forward<A>(unpooled_.view(), y);
    });
  }

  /// @brief Float in: quantized on the fly with input_params() (fake_quantize's formula), uint8 out.
  template <class Arch = arch::automatic>
  void forward(TensorView<const float, 4> x, quant::AffineParams out, TensorView<std::uint8_t, 4> y) {
    simd::with_arch<Arch>(name(), [&](auto tag) { forward<decltype(tag)>(quantize_input<decltype(tag)>(x), out, y); });
  }

  /// @brief Float in, float out: quantize, convolve on integers, dequantize (+ bias, ReLU).
  template <class Arch = arch::automatic>
  void forward(TensorView<const float, 4> x, TensorView<float, 4> y) {
    simd::with_arch<Arch>(name(), [&](auto tag) { forward<decltype(tag)>(quantize_input<decltype(tag)>(x), y); });
  }

 private:
  template <class Arch>
  TensorView<const std::uint8_t, 4> quantize_input(TensorView<const float, 4> x) {
    (void)output_shape(x.shape());
    quantized_input_.resize(x.shape());
    detail::quantize_row(Arch{}, x.data(), x.size(), input_, quantized_input_.data());
    return quantized_input_.view();
  }

  void check_output(const Shape<4>& in, const Shape<4>& out) const {
    const Shape<4> expected = output_shape(in);
    if (out != expected) {
      throw shape_error(minnow::detail::concat("QuantizedConv2d '", packed_.name, "': output is ", to_string(out),
                                               ", expected ", to_string(expected)));
    }
  }

  /// How the output rows are cut: `chunks` ranges of `rows` rows (a multiple of 8), on `threads` threads.
  struct Plan {
    index_t total, rows, chunks, plane, out_h, out_w;
    int threads;
  };

  [[nodiscard]] Plan plan_for(const Shape<4>& in) const {
    const Shape<4> o = output_shape(in);
    Plan p{};
    p.out_h = o[2];
    p.out_w = o[3];
    p.plane = o[2] * o[3];
    p.total = o[0] * p.plane;
    const index_t k4 = (packed_.k + 3) / 4;
    // About 256 KB of im2col bytes per chunk: the column pass and the panels stay in L2.
    const index_t target = std::clamp<index_t>((index_t{1} << 18) / (k4 * 4) / kRowAlign * kRowAlign, 64, 4096);
    const double work = static_cast<double>(p.total) * static_cast<double>(packed_.n) * static_cast<double>(packed_.k);
    const index_t most = std::max<index_t>(1, (p.total + 63) / 64);  // at least 64 rows per thread
    p.threads = static_cast<int>(work < 2e6 ? 1 : std::min<index_t>(minnow::detail::max_threads(), most));
    index_t chunks = std::max<index_t>(1, (p.total + target - 1) / target);
    chunks = (chunks + p.threads - 1) / p.threads * p.threads;  // whole chunks per thread, evenly sized
    p.rows = std::max<index_t>(kRowAlign, (p.total + chunks - 1) / chunks);
    p.rows = (p.rows + kRowAlign - 1) / kRowAlign * kRowAlign;
    p.chunks = p.total == 0 ? 0 : (p.total + p.rows - 1) / p.rows;
    return p;
  }

  template <class Arch, class OutT>
  void run(TensorView<const std::uint8_t, 4> x, OutT* y, quant::AffineParams out) {
    if constexpr (detail::has_direct_conv && std::is_base_of_v<arch::avx512_vnni, Arch>) {
      if (direct_enabled_ && direct_.kind != detail::DirectKind::none && simd::cpu_has_vbmi()) {
        run_direct(x, y, out);
        return;
      }
    }
    const Plan plan = plan_for(x.shape());
    if (plan.total == 0) return;
    if (workspaces_.size() < static_cast<std::size_t>(plan.threads)) workspaces_.resize(static_cast<std::size_t>(plan.threads));
    const OutputStage stage{{}, bias_, relu_};
    minnow::detail::parallel_for(plan.chunks, plan.threads, [&](long chunk, int thread) {
      auto& ws = workspaces_[static_cast<std::size_t>(thread)];
      const index_t r0 = chunk * plan.rows, r1 = std::min(plan.total, r0 + plan.rows);
      build_panels<Arch>(x, plan, r0, r1, ws);
      const index_t m = r1 - r0, n = packed_.n;
      if constexpr (std::is_same_v<OutT, std::uint8_t>) {
        ws.out8.resize({m * n});
        qgemm<Arch>(ws.act, packed_, stage, out, TensorView<std::uint8_t, 2>(ws.out8.data(), {m, n}));
        scatter_nchw(ws.out8.data(), plan, r0, r1, y);
      } else {
        ws.outf.resize({m * n});
        qgemm<Arch>(ws.act, packed_, stage, TensorView<float, 2>(ws.outf.data(), {m, n}));
        scatter_nchw(ws.outf.data(), plan, r0, r1, y);
      }
    });
  }

  /// qgemm's output-stage constants for this layer and `out`, rebuilt only when the output changes.
  const detail::Epilogue& epilogue_for(detail::Out kind, quant::AffineParams out) {
    const bool same = epilogue_ready_ && kind == epilogue_kind_ &&
                      (kind != detail::Out::requantize ||
                       (out.scale == epilogue_out_.scale && out.zero_point == epilogue_out_.zero_point));
    if (!same) {
      QuantizedActivations shape_only;  // make_epilogue reads the inner length and the input parameters
      shape_only.k = packed_.k;
      shape_only.params = input_;
      epilogue_ = detail::make_epilogue(shape_only, packed_, OutputStage{{}, bias_, relu_}, kind, out);
      epilogue_kind_ = kind;
      epilogue_out_ = out;
      epilogue_ready_ = true;
    }
    return epilogue_;
  }

  /// The direct kernels (AVX-512 VNNI + VBMI): samples in parallel, each padded once into the kernel's layout.
  template <class OutT, bool Pool = false>
  void run_direct([[maybe_unused]] TensorView<const std::uint8_t, 4> x, [[maybe_unused]] OutT* y,
                  [[maybe_unused]] quant::AffineParams out) {
#if MINNOW_X86_KERNELS
    const Shape<4> o = output_shape(x.shape());
    const index_t batch = o[0], n = packed_.n, height = x.dim(2), width = x.dim(3);
    const index_t plane_out = o[2] * o[3];
    if (batch == 0 || plane_out == 0) return;
    const bool taps = direct_.kind == detail::DirectKind::taps;
    const index_t ph = height + 2 * padding_, pw = width + 2 * padding_, pixel_bytes = taps ? 1 : 4;
    const index_t row_bytes = pw * pixel_bytes, plane_bytes = ph * row_bytes, groups_c = taps ? in_ : (in_ + 3) / 4;
    const index_t buffer = groups_c * plane_bytes + detail::kDirectSlack;
    const index_t vectors = o[2] * ((o[3] + 15) / 16);
    direct_offsets_.resize(static_cast<std::size_t>(direct_.groups));
    for (std::size_t g = 0; g < direct_offsets_.size(); ++g) {
      direct_offsets_[g] = direct_.c[g] * plane_bytes + direct_.i[g] * row_bytes + (taps ? 0 : direct_.j[g] * 4);
    }
    const detail::Epilogue& e =
        epilogue_for(std::is_same_v<OutT, float> ? detail::Out::dequantize : detail::Out::requantize, out);
    // One sample is 10–1000 µs of work: threads only for batches (a region costs µs at batch 1).
    const double work = static_cast<double>(batch * plane_out) * static_cast<double>(n * packed_.k);
    const int threads = static_cast<int>(batch < 2 || work < 2e6 ? 1 : std::min<index_t>(minnow::detail::max_threads(), batch));
    if (workspaces_.size() < static_cast<std::size_t>(threads)) workspaces_.resize(static_cast<std::size_t>(threads));
    const detail::DirectGeometry d{o[2], o[3], stride_, row_bytes, pixel_bytes, n, direct_offsets_.data()};
    const auto zp = static_cast<std::uint8_t>(input_.zero_point);
    minnow::detail::parallel_for(batch, threads, [&](long sample, int thread) {
      auto& ws = workspaces_[static_cast<std::size_t>(thread)];
      ws.padded.resize({buffer});
      ws.rowsums.resize({vectors * 16});
      std::uint8_t* pad = ws.padded.data();
      const std::uint8_t* xs = x.data() + sample * in_ * height * width;
      // Padding holds the input zero point, so padded taps contribute (za − za)·w = 0, as in the gemm path.
      if (taps) {
        std::fill_n(pad, buffer, zp);
        for (index_t c = 0; c < in_; ++c) {
          for (index_t h = 0; h < height; ++h) {
            std::memcpy(pad + c * plane_bytes + (h + padding_) * row_bytes + padding_, xs + (c * height + h) * width,
                        static_cast<std::size_t>(width));
          }
        }
      } else {
        for (index_t cg = 0; cg < groups_c; ++cg) {
          std::uint32_t pattern = 0;  // zp in the bytes of real channels, 0 for the padding channels
          for (index_t t = 0; t < 4 && 4 * cg + t < in_; ++t) pattern |= std::uint32_t{zp} << (8 * t);
          std::uint8_t* plane = pad + cg * plane_bytes;
          detail::fill_dwords(plane, static_cast<std::int32_t>(pattern), ph * pw);
          for (index_t h = 0; h < height; ++h) {
            const std::uint8_t* rows[4];
            for (index_t t = 0; t < 4; ++t) {
              rows[t] = 4 * cg + t < in_ ? xs + ((4 * cg + t) * height + h) * width : nullptr;
            }
            detail::interleave4(rows, width, plane + ((h + padding_) * pw + padding_) * 4);
          }
        }
        std::fill_n(pad + groups_c * plane_bytes, detail::kDirectSlack, std::uint8_t{0});
      }
      OutT* ys = y + sample * n * (Pool ? (o[2] / 2) * (o[3] / 2) : plane_out);
      if (taps) {
        detail::direct_sample<Pool>(detail::TapLoader{direct_.index.data(), d.offsets}, d, direct_, e, pad, ws.rowsums.data(), ys);
      } else if (stride_ == 1) {
        detail::direct_sample<Pool>(detail::ChannelLoader{d.offsets}, d, direct_, e, pad, ws.rowsums.data(), ys);
      } else {
        detail::direct_sample<Pool>(detail::ChannelLoader2{d.offsets}, d, direct_, e, pad, ws.rowsums.data(), ys);
      }
    });
#endif
  }

  /// Rows [r0, r1) of the im2col matrix → ws.act (panels and row sums).
  template <class Arch>
  void build_panels(TensorView<const std::uint8_t, 4> x, const Plan& plan, index_t r0, index_t r1,
                    detail::ConvWorkspace& ws) const {
    const index_t m = r1 - r0, k = packed_.k, k4 = (k + 3) / 4;
    const index_t ld = (m + kRowAlign - 1) / kRowAlign * kRowAlign;  // the transpose reads whole 16-row blocks
    ws.col.resize({k4 * 4 * ld});
    std::uint8_t* col = ws.col.data();
    // Taps past k multiply zero weights; zeroing them keeps the panels deterministic.
    std::fill(col + k * ld, col + k4 * 4 * ld, std::uint8_t{0});
    const auto zp = static_cast<std::uint8_t>(input_.zero_point);
    const index_t height = x.dim(2), width = x.dim(3);
    // The chunk's (sample, output row) segments, decoded once: the tap loop below then has no division.
    auto& segments = ws.segments;
    segments.clear();
    for (index_t r = r0; r < r1;) {
      const index_t n = r / plan.plane, pix = r % plan.plane, oh = pix / plan.out_w, ow0 = pix % plan.out_w;
      const index_t ow1 = std::min(plan.out_w, ow0 + (r1 - r));
      segments.push_back({n * in_ * height * width, oh * stride_ - padding_, ow0, ow1, (r - r0) - ow0});
      r += ow1 - ow0;
    }
    for (index_t c = 0; c < in_; ++c) {
      for (index_t i = 0; i < kernel_; ++i) {
        for (index_t j = 0; j < kernel_; ++j) {
          std::uint8_t* dst_row = col + ((c * kernel_ + i) * kernel_ + j) * ld;
          const auto [lo, hi] = valid_columns(j, width, plan.out_w);
          for (const auto& seg : segments) {
            // Offsets, not pointers, until they are known to lie inside the buffers (ow0 + dst >= 0).
            const auto at = [&](index_t ow) { return dst_row + (seg.dst + ow); };
            const index_t ih = seg.ih + i;
            if (ih < 0 || ih >= height) {
              detail::fill_bytes(Arch{}, at(seg.ow0), zp, seg.ow1 - seg.ow0);
              continue;
            }
            const std::uint8_t* src_row = x.data() + seg.sample + (c * height + ih) * width;
            const index_t a = std::clamp(lo, seg.ow0, seg.ow1), b = std::clamp(hi, a, seg.ow1);
            if (a > seg.ow0) detail::fill_bytes(Arch{}, at(seg.ow0), zp, a - seg.ow0);
            if (stride_ == 1) {
              if (b > a) detail::copy_bytes(Arch{}, at(a), src_row + (a - padding_ + j), b - a);
            } else {
              for (index_t ow = a; ow < b; ++ow) *at(ow) = src_row[ow * stride_ - padding_ + j];
            }
            if (seg.ow1 > b) detail::fill_bytes(Arch{}, at(b), zp, seg.ow1 - b);
          }
        }
      }
    }
    detail::prepare(ws.act, m, k, input_, ActivationLayout::panels);
    detail::columns_to_panels(Arch{}, col, ld, ws.act);
    if (packed_.any_zero_point) {  // Σ_k A[r, k] is needed only for weights with a zero point
      for (index_t t = 0; t < k; ++t) {
        const std::uint8_t* src = col + t * ld;
        for (index_t r = 0; r < m; ++r) ws.act.rowsum[static_cast<std::size_t>(r)] += src[r];
      }
    }
  }

  /// The product's [rows × O] chunk output → NCHW.
  template <class T>
  void scatter_nchw(const T* src, const Plan& plan, index_t r0, index_t r1, T* y) const {
    const index_t n_out = packed_.n;
    for (index_t r = r0; r < r1;) {
      const index_t n = r / plan.plane, pix = r % plan.plane;
      const index_t len = std::min(plan.plane - pix, r1 - r);  // rows of one sample
      T* base = y + n * n_out * plan.plane + pix;
      const T* s = src + (r - r0) * n_out;
      for (index_t o = 0; o < n_out; ++o) {
        T* dst = base + o * plan.plane;
        for (index_t q = 0; q < len; ++q) dst[q] = s[q * n_out + o];
      }
      r += len;
    }
  }

  /// Output columns [lo, hi) whose input column ow·s − p + j lies inside [0, width).
  [[nodiscard]] std::pair<index_t, index_t> valid_columns(index_t j, index_t width, index_t out_w) const noexcept {
    const index_t offset = j - padding_;
    const index_t lo = offset >= 0 ? 0 : (-offset + stride_ - 1) / stride_;
    const index_t hi = std::clamp<index_t>(width - offset > 0 ? (width - offset + stride_ - 1) / stride_ : 0, 0, out_w);
    return {std::min(lo, out_w), std::max(hi, std::min(lo, out_w))};
  }

  static constexpr index_t kRowAlign = 16;  ///< rows per transpose step (two activation panels)

  index_t in_, kernel_, stride_, padding_;
  PackedWeights packed_;
  std::vector<float> bias_;
  quant::AffineParams input_;
  bool relu_ = false;
  detail::DirectWeights direct_;
  std::vector<index_t> direct_offsets_;  // byte offset of each group in the padded input (per input size)
  detail::Epilogue epilogue_;            // cached output stage of the direct kernels
  detail::Out epilogue_kind_ = detail::Out::int32;
  quant::AffineParams epilogue_out_{};
  bool epilogue_ready_ = false;
  bool direct_enabled_ = true;
  Tensor<std::uint8_t, 4> quantized_input_;
  Tensor<std::uint8_t, 4> unpooled_;  // forward_pooled on the im2col paths: the conv output before the pool
  std::vector<detail::ConvWorkspace> workspaces_;  // one per thread; buffers grow once
};

}  // namespace minnow::infer
