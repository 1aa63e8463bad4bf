#pragma once
/// @file infer/direct_conv.hpp
/// @brief The direct int8 convolution kernels of QuantizedConv2d: the exact accumulators of its im2col +
/// qgemm path computed without im2col, vectorized across output pixels, and written NCHW.
///
/// Small convolutions waste most of the im2col path: conv1 of the networks has k = 9 taps (12 after padding
/// to groups of 4), 16 of 48 panel channels in use, and im2col + transpose + NCHW scatter cost more than the
/// product. A direct kernel computes the same accumulators with one vector lane per output pixel of one
/// output row, one multiply-add per (group of 4 input bytes, output channel):
/// - `DirectKind::taps` (in·k·k < 32): a group is up to 4 neighbouring taps (i, j…j+3) of one kernel row;
///   a byte permute of the padded input row gives every pixel's 4 bytes;
/// - `DirectKind::channels` (stride ≤ 2): a group is one tap (i, j) of 4 input channels; the input is
///   first interleaved per sample into 4-channel dwords (NC/4·H·W·4), so a group is one plain load
///   (stride 2: two loads and a dword permute).
/// The layer picks the kind with fewer groups (channels on a tie); stride > 2 with ≥ 32 taps keeps im2col.
///
/// Three kernels share that structure (`direct_sample`), overloads on the arch tag:
/// - `arch::avx512_vnni` (needs VBMI for vpermb): 16 pixels per vector, one vpdpbusd per group and
///   channel, tiles of 2 vectors × 8 channels (16 accumulators of 32 registers);
/// - `arch::avx2_vnni` (AVX-VNNI): 8 pixels per vector, one 256-bit vpdpbusd per group and channel, tiles
///   of 2 vectors × 4 channels;
/// - `arch::avx2`: 8 pixels per vector. vpmaddubsw would saturate (255·127·2 > 2¹⁵), so a group's dword
///   (x0, x1, x2, x3) is split into the int16 pairs (x0, x2) and (x1, x3) (an AND and a shift) and two
///   vpmaddwd with the weight pairs (w0, w2), (w1, w3) give the exact Σ x·w; tiles of 2 vectors ×
///   4 channels (8 accumulators of 16 registers). Taps need each 128-bit half's pixels inside 16 bytes
///   (vpshufb does not cross halves): 3·stride + j + 3 < 16 for every group. AVX-VNNI shares these
///   loaders and the output stage.
///
/// Each sample is padded once with the input zero point (as the im2col path does). The exact accumulator
/// is then qgemm's `Σ x·w + colterm[o] − zw[o]·Σx` (Σx only when some zw ≠ 0) and the output stage
/// repeats qgemm's operations for the same vector width, so every path gives the same bits (tested
/// against conv2d_reference). A fused 2×2 max pool takes the max of the exact accumulators of two output
/// rows before the output stage (QuantizedConv2d::forward_pooled).

#include <minnow/infer/lanes.hpp>
#include <minnow/infer/qgemm_kernels.hpp>
#include <minnow/simd/arch.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace minnow::infer::detail {

/// Which direct kernel a layer uses.
enum class DirectKind {
  none,      ///< im2col + qgemm
  taps,      ///< up to 4 neighbouring taps of one kernel row per byte group (in·k·k < 32)
  channels,  ///< 4 input channels of one tap per byte group (in ≥ 4, stride ≤ 2)
  winograd,  ///< the AVX2 path's Winograd F(2×2, 3×3) kernel (infer/winograd_conv.hpp)
};

/// The weights of the direct kernels: G byte groups per output channel, and for each group where its
/// 4 bytes come from. Padding taps and channels have weight 0. Only the layouts of the paths this CPU runs
/// are packed; the others stay empty.
struct DirectWeights {
  DirectKind kind = DirectKind::none;
  index_t groups = 0;
  index_t stride = 1;
  bool fits_avx2 = false;             ///< the AVX2 kernel runs this layer (taps: every group inside 16 bytes)
  Tensor<std::int32_t, 1> w;          ///< VNNI: [⌈O/8⌉ × G × 8] dwords of 4 int8 weights
  Tensor<std::int32_t, 1> w16;        ///< AVX2: [⌈O/4⌉ × G × 4 × 2] int16 pairs (w0, w2), (w1, w3)
  Tensor<std::int32_t, 1> ones;       ///< [G] dwords with byte 1 where the tap is real: Σ x over the window
  Tensor<std::int32_t, 1> ones16;     ///< [G × 2] the same as int16 pairs
  Tensor<std::uint8_t, 1> index;      ///< taps, VNNI: [G × 64] vpermb indices (lane 4p + t ← byte p·stride + j + t)
  Tensor<std::uint8_t, 1> index16;    ///< taps, AVX2: [G × 32] vpshufb indices within each 128-bit half
  std::vector<index_t> c, i, j;       ///< group g reads channel (group) c[g], kernel row i[g], column j[g]

  [[nodiscard]] std::size_t bytes() const noexcept {
    return static_cast<std::size_t>(w.size() + w16.size() + ones.size() + ones16.size()) * sizeof(std::int32_t) +
           static_cast<std::size_t>(index.size() + index16.size());
  }
};

/// 4 bytes → one dword, byte t in bits 8t…8t+7.
[[nodiscard]] inline std::int32_t pack_bytes(const std::int8_t* b) noexcept {
  std::uint32_t v = 0;
  for (int t = 0; t < 4; ++t) v |= static_cast<std::uint32_t>(static_cast<std::uint8_t>(b[t])) << (8 * t);
  return static_cast<std::int32_t>(v);
}

/// Two int8 values → one dword of two sign-extended int16 (vpmaddwd's operand).
[[nodiscard]] inline std::int32_t pack_pair(std::int8_t lo, std::int8_t hi) noexcept {
  const auto half = [](std::int8_t v) { return static_cast<std::uint32_t>(static_cast<std::uint16_t>(static_cast<std::int16_t>(v))); };
  return static_cast<std::int32_t>(half(lo) | (half(hi) << 16));
}

/// Chooses and packs the direct kernel for a layer, or returns kind none.
[[nodiscard]] inline DirectWeights make_direct_weights(const Int8Weights& weights, index_t in, index_t k, index_t stride) {
  DirectWeights d;
  d.stride = stride;
  const index_t n = weights.rows(), taps = in * k * k, jg = (k + 3) / 4;
  // Each kernel needs its vector loads to cover 16 output pixels; the one with fewer byte groups (less
  // zero padding) wins, channels on a tie (no byte permute).
  const bool taps_ok = taps < 32 && 15 * stride + 4 * jg <= 64, channels_ok = stride <= 2;
  if (taps_ok && (!channels_ok || in * k * jg < (in + 3) / 4 * k * k)) {
    d.kind = DirectKind::taps;
    d.fits_avx2 = 3 * stride + 4 * (jg - 1) + 3 < 16;
  } else if (channels_ok) {
    d.kind = DirectKind::channels;
    d.fits_avx2 = true;
  } else {
    return d;
  }
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
  // Only the layouts this CPU's paths read (MINNOW_ARCH and set_isa can lower the path at any time, never
  // raise it past the CPU): the 16-lane kernel's with VBMI, the VNNI dwords also for AVX-VNNI's 8 lanes,
  // the int16 pairs and 8-lane indices for the AVX2 kernels (which AVX-512 without VBMI runs too).
  const bool wide = simd::cpu_has_vbmi(), narrow = d.fits_avx2 && simd::cpu_has(simd::Isa::avx2);
  const bool dwords = wide || (narrow && simd::cpu_has(simd::Isa::avx2_vnni));
  if (!wide && !narrow) return DirectWeights{};
  const auto real = [&](index_t g, index_t t) {
    return d.kind == DirectKind::taps ? d.j[static_cast<std::size_t>(g)] + t < k : 4 * d.c[static_cast<std::size_t>(g)] + t < in;
  };
  // The weight in byte t of group g of channel o (0 for a padding tap or channel).
  const auto tap = [&](index_t o, index_t g, index_t t) -> std::int8_t {
    const auto s = static_cast<std::size_t>(g);
    if (o >= n || !real(g, t)) return 0;
    if (d.kind == DirectKind::taps) return weights.values(o, (d.c[s] * k + d.i[s]) * k + d.j[s] + t);
    return weights.values(o, ((4 * d.c[s] + t) * k + d.i[s]) * k + d.j[s]);
  };
  const index_t blocks8 = (n + 7) / 8, blocks4 = (n + 3) / 4;
  if (dwords) d.w.resize({blocks8 * d.groups * 8});
  if (narrow) d.w16.resize({blocks4 * d.groups * 8});
  for (index_t o = 0; o < (n + 7) / 8 * 8; ++o) {
    for (index_t g = 0; g < d.groups; ++g) {
      const std::int8_t q[4] = {tap(o, g, 0), tap(o, g, 1), tap(o, g, 2), tap(o, g, 3)};
      if (dwords) d.w.data()[((o / 8) * d.groups + g) * 8 + o % 8] = pack_bytes(q);
      if (narrow && o < blocks4 * 4) {
        std::int32_t* pair = d.w16.data() + ((o / 4) * d.groups + g) * 8 + (o % 4) * 2;
        pair[0] = pack_pair(q[0], q[2]);
        pair[1] = pack_pair(q[1], q[3]);
      }
    }
  }
  if (wide) d.ones.resize({d.groups});
  if (narrow) d.ones16.resize({d.groups * 2});
  for (index_t g = 0; g < d.groups; ++g) {
    std::int8_t q[4];
    for (index_t t = 0; t < 4; ++t) q[t] = real(g, t) ? std::int8_t{1} : std::int8_t{0};
    if (wide) d.ones.data()[g] = pack_bytes(q);
    if (narrow) {
      d.ones16.data()[2 * g] = pack_pair(q[0], q[2]);
      d.ones16.data()[2 * g + 1] = pack_pair(q[1], q[3]);
    }
  }
  if (d.kind == DirectKind::taps) {
    // Lanes of padding taps read any in-range byte: their weight is 0.
    if (wide) d.index.resize({d.groups * 64});
    if (narrow) d.index16.resize({d.groups * 32});
    for (index_t g = 0; g < d.groups; ++g) {
      const index_t j = d.j[static_cast<std::size_t>(g)];
      for (index_t t = 0; t < 4; ++t) {
        for (index_t p = 0; wide && p < 16; ++p) d.index.data()[g * 64 + p * 4 + t] = static_cast<std::uint8_t>((p * stride + j + t) & 63);
        // Each 128-bit half holds 4 pixels, loaded from its own base (pixel 4·half).
        for (index_t p = 0; narrow && p < 8; ++p) d.index16.data()[g * 32 + p * 4 + t] = static_cast<std::uint8_t>(((p % 4) * stride + j + t) & 15);
      }
    }
  }
  return d;
}

/// Bytes read past the end of a direct kernel's padded input (masked-off lanes of the last vectors).
inline constexpr index_t kDirectSlack = 192;

/// The geometry a direct kernel runs over: one sample's padded input, `lanes` output pixels of a row per vector.
struct DirectGeometry {
  index_t out_h, out_w, stride, row_bytes, pixel_bytes, channels;
  const index_t* offsets;  ///< byte offset of group g from a vector's base
};

/// Pixels per vector and output channels per tile of each kernel.
constexpr index_t direct_lanes(arch::avx512_vnni) noexcept { return 16; }
constexpr index_t direct_tile_channels(arch::avx512_vnni) noexcept { return 8; }
constexpr index_t direct_lanes(arch::avx2) noexcept { return 8; }
constexpr index_t direct_tile_channels(arch::avx2) noexcept { return 4; }

// ---- padding a sample into the channels kind's layout ----

/// Fills `n` dwords with `value`.
inline void fill_dwords(std::uint8_t* dst, std::int32_t value, index_t n) noexcept {
  for (index_t p = 0; p < n; ++p) std::memcpy(dst + 4 * p, &value, 4);
}

/// Channels c0…c0+3 of one input row (`rows[t]` null for a channel past the last) interleaved into
/// `width` dwords: byte t of dword p is rows[t][p].
inline void interleave4(arch::scalar, const std::uint8_t* const* rows, index_t width, std::uint8_t* dst) noexcept {
  for (index_t p = 0; p < width; ++p) {
    for (int t = 0; t < 4; ++t) dst[4 * p + t] = rows[t] ? rows[t][p] : std::uint8_t{0};
  }
}

#if MINNOW_X86_KERNELS
/// The same with SSE2 unpacks, 16 pixels per step; a short tail goes through 16-byte copies.
MINNOW_TARGET_AVX2 inline void interleave4(arch::avx2, const std::uint8_t* const* rows, index_t width, std::uint8_t* dst) noexcept {
  const auto step = [](const __m128i* r, __m128i* out) {
    const __m128i a_lo = _mm_unpacklo_epi8(r[0], r[1]), a_hi = _mm_unpackhi_epi8(r[0], r[1]);
    const __m128i b_lo = _mm_unpacklo_epi8(r[2], r[3]), b_hi = _mm_unpackhi_epi8(r[2], r[3]);
    _mm_storeu_si128(out, _mm_unpacklo_epi16(a_lo, b_lo));      // pixels 0–3
    _mm_storeu_si128(out + 1, _mm_unpackhi_epi16(a_lo, b_lo));  // 4–7
    _mm_storeu_si128(out + 2, _mm_unpacklo_epi16(a_hi, b_hi));  // 8–11
    _mm_storeu_si128(out + 3, _mm_unpackhi_epi16(a_hi, b_hi));  // 12–15
  };
  index_t w0 = 0;
  __m128i r[4];
  for (; w0 + 16 <= width; w0 += 16) {
    for (int t = 0; t < 4; ++t) {
      r[t] = rows[t] ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[t] + w0)) : _mm_setzero_si128();
    }
    step(r, reinterpret_cast<__m128i*>(dst + w0 * 4));
  }
  const index_t n = width - w0;
  if (n == 0) return;
  alignas(16) std::uint8_t in[4][16] = {};
  alignas(16) std::uint8_t out[64];
  for (int t = 0; t < 4; ++t) {
    if (rows[t]) std::memcpy(in[t], rows[t] + w0, static_cast<std::size_t>(n));
    r[t] = _mm_load_si128(reinterpret_cast<const __m128i*>(in[t]));
  }
  step(r, reinterpret_cast<__m128i*>(out));
  std::memcpy(dst + w0 * 4, out, static_cast<std::size_t>(n * 4));
}

// ---- AVX-512 VNNI + VBMI: 16 pixels per vector ----

/// Group g of the 16 pixels starting at `base`, as vpdpbusd's unsigned operand (lane p = pixel p's 4 bytes).
struct TapLoader16 {
  const std::uint8_t* index;
  const index_t* offsets;
  [[nodiscard]] MINNOW_TARGET_AVX512_VBMI __m512i operator()(const std::uint8_t* base, index_t g) const noexcept {
    return _mm512_permutexvar_epi8(_mm512_loadu_si512(index + g * 64), _mm512_loadu_si512(base + offsets[g]));
  }
};
struct ChannelLoader16 {
  const index_t* offsets;
  [[nodiscard]] MINNOW_TARGET_AVX512_VBMI __m512i operator()(const std::uint8_t* base, index_t g) const noexcept {
    return _mm512_loadu_si512(base + offsets[g]);
  }
};
struct ChannelLoader16x2 {  // stride 2: the even dwords of 32
  const index_t* offsets;
  [[nodiscard]] MINNOW_TARGET_AVX512_VBMI __m512i operator()(const std::uint8_t* base, index_t g) const noexcept {
    const std::uint8_t* p = base + offsets[g];
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_epi32(_mm512_loadu_si512(p), even, _mm512_loadu_si512(p + 64));
  }
};

/// qgemm's `corrected`: Σ x·w + colterm[j] − zw[j]·Σx, the exact accumulator (mod 2³², as qgemm computes it).
MINNOW_TARGET_AVX512_VBMI inline __m512i direct_correct(const Epilogue& e, __m512i acc, const std::int32_t* rowsum, index_t j) noexcept {
  acc = _mm512_add_epi32(acc, _mm512_set1_epi32(e.colterm[static_cast<std::size_t>(j)]));
  if (e.zw) acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(_mm512_set1_epi32(e.zw[j]), _mm512_loadu_si512(rowsum)));
  return acc;
}

/// qgemm's output stage (requantize16, as finish_row) on the first `count` of 16 exact accumulators of
/// channel j.
MINNOW_TARGET_AVX512_VBMI inline void direct_store(const Epilogue& e, __m512i acc, index_t j, index_t count, std::uint8_t* out) noexcept {
  const auto c = static_cast<std::size_t>(j);
  const __m512i q = requantize16(e, acc, _mm512_set1_ps(e.s[c]), _mm512_set1_ps(e.o[c]));
  // q is already in [0, 255]: the low byte of each dword is vpmovusdb's result. vpermb + a masked store
  // instead of vpmovusdb to memory, which is microcoded (slow) on AMD Zen 4/5.
  const __m512i low_bytes = _mm512_set_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 60, 56, 52, 48, 44,
                                            40, 36, 32, 28, 24, 20, 16, 12, 8, 4, 0);
  _mm_mask_storeu_epi8(out, first_lanes(std::min<index_t>(count, 16)),
                       _mm512_castsi512_si128(_mm512_permutexvar_epi8(low_bytes, q)));
}
MINNOW_TARGET_AVX512_VBMI inline void direct_store(const Epilogue& e, __m512i acc, index_t j, index_t count, float* out) noexcept {
  const auto c = static_cast<std::size_t>(j);
  _mm512_mask_storeu_ps(out, first_lanes(std::min<index_t>(count, 16)),
                        dequantize16(e, acc, _mm512_set1_ps(e.s[c]), _mm512_set1_ps(e.o[c])));
}

/// The 2×2 max of two output rows' exact accumulators (16 columns each): lane p < 8 holds the max of
/// columns 2p, 2p + 1 of both rows.
MINNOW_TARGET_AVX512_VBMI inline __m512i direct_pool2(__m512i row0, __m512i row1) noexcept {
  const __m512i v = _mm512_max_epi32(row0, row1);
  const __m512i h = _mm512_max_epi32(v, _mm512_shuffle_epi32(v, _MM_PERM_CDAB));  // swap neighbours
  return _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0), h);
}

/// Σ x over each pixel's window for the 16 pixels at `base` (the row-sum term, weights with zero points).
template <class Load>
MINNOW_TARGET_AVX512_VBMI void direct_rowsums(arch::avx512_vnni, const Load& load, const DirectWeights& dw, const std::uint8_t* base,
                                               std::int32_t* out) noexcept {
  __m512i s = _mm512_setzero_si512();
  for (index_t g = 0; g < dw.groups; ++g) s = _mm512_dpbusd_epi32(s, load(base, g), _mm512_set1_epi32(dw.ones.data()[g]));
  _mm512_storeu_si512(out, s);
}

/// R vectors × 8 channels of tile `tile`: Σ x·w over every group, then the output stage into planes of
/// `plane` outputs, the first count[r] lanes of vector r. With Pool (R = 2: two output rows, same columns)
/// the 2×2 max of the exact accumulators goes through the output stage once, `count[0]` pooled lanes.
template <int R, bool Pool, class Load, class OutT>
MINNOW_TARGET_AVX512_VBMI void direct_tile(arch::avx512_vnni, const Load& load, const DirectWeights& dw, index_t tile, index_t channels,
                                            index_t plane, const Epilogue& e, const std::uint8_t* const* base,
                                            const index_t* out_offset, const index_t* count,
                                            const std::int32_t* const* rowsum, OutT* y) noexcept {
  static_assert(!Pool || R == 2, "pooling takes two output rows");
  __m512i acc[R][8];
#pragma GCC unroll 8
  for (int l = 0; l < 8; ++l) {
    for (int r = 0; r < R; ++r) acc[r][l] = _mm512_setzero_si512();
  }
  const std::int32_t* w = dw.w.data() + tile * dw.groups * 8;
  for (index_t g = 0; g < dw.groups; ++g, w += 8) {
    __m512i a[R];
    for (int r = 0; r < R; ++r) a[r] = load(base[r], g);
#pragma GCC unroll 8
    for (int l = 0; l < 8; ++l) {
      const __m512i wl = _mm512_set1_epi32(w[l]);
      for (int r = 0; r < R; ++r) acc[r][l] = _mm512_dpbusd_epi32(acc[r][l], a[r], wl);
    }
  }
  const index_t lanes = std::min<index_t>(8, channels - tile * 8);
#pragma GCC unroll 8
  for (int l = 0; l < 8; ++l) {  // constant indices keep acc in registers
    if (l >= lanes) break;
    const index_t j = tile * 8 + l;
    if constexpr (Pool) {
      const __m512i pooled = direct_pool2(direct_correct(e, acc[0][l], rowsum[0], j), direct_correct(e, acc[1][l], rowsum[1], j));
      direct_store(e, pooled, j, count[0], y + j * plane + out_offset[0]);
    } else {
      for (int r = 0; r < R; ++r) direct_store(e, direct_correct(e, acc[r][l], rowsum[r], j), j, count[r], y + j * plane + out_offset[r]);
    }
  }
}

// ---- AVX2: 8 pixels per vector, vpmaddwd on int16 pairs ----

/// Group g of the 8 pixels starting at `base`: pixels 0–3 from a 16-byte load at base, 4–7 from one at
/// base + 4·stride, each half permuted by vpshufb (lane 4p + t ← byte p·stride + j + t of its half).
struct TapLoader8 {
  const std::uint8_t* index;
  const index_t* offsets;
  index_t half;  ///< 4·stride
  [[nodiscard]] MINNOW_TARGET_AVX2 __m256i operator()(const std::uint8_t* base, index_t g) const noexcept {
    const std::uint8_t* p = base + offsets[g];
    const __m256i bytes = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
                                                  _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + half)), 1);
    return _mm256_shuffle_epi8(bytes, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(index + g * 32)));
  }
};
struct ChannelLoader8 {
  const index_t* offsets;
  [[nodiscard]] MINNOW_TARGET_AVX2 __m256i operator()(const std::uint8_t* base, index_t g) const noexcept {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + offsets[g]));
  }
};
struct ChannelLoader8x2 {  // stride 2: the even dwords of 16
  const index_t* offsets;
  [[nodiscard]] MINNOW_TARGET_AVX2 __m256i operator()(const std::uint8_t* base, index_t g) const noexcept {
    const std::uint8_t* p = base + offsets[g];
    const __m256 lo = _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    const __m256 hi = _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)));
    // (lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6), then the 64-bit quarters in order 0, 2, 1, 3.
    const __m256 even = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_permute4x64_epi64(_mm256_castps_si256(even), _MM_SHUFFLE(3, 1, 2, 0));
  }
};

/// Σ x·w of one group for 8 pixels: bytes (x0, x2) and (x1, x3) as int16 against the weight pairs.
MINNOW_TARGET_AVX2 inline __m256i dot4(__m256i even, __m256i odd, const std::int32_t* pair) noexcept {
  return _mm256_add_epi32(_mm256_madd_epi16(even, _mm256_set1_epi32(pair[0])), _mm256_madd_epi16(odd, _mm256_set1_epi32(pair[1])));
}

/// The first `count` of 8 bytes (lane 0 lowest) to `out`: one 8-byte copy for a full vector, else at most a
/// 4-, a 2- and a 1-byte copy (never past `count`).
inline void store_bytes8(std::uint64_t bytes, index_t count, std::uint8_t* out) noexcept {
  if (count >= 8) {
    std::memcpy(out, &bytes, 8);
    return;
  }
  if (count & 4) {
    const auto part = static_cast<std::uint32_t>(bytes);
    std::memcpy(out, &part, 4);
    out += 4;
    bytes >>= 32;
  }
  if (count & 2) {
    const auto part = static_cast<std::uint16_t>(bytes);
    std::memcpy(out, &part, 2);
    out += 2;
    bytes >>= 16;
  }
  if (count & 1) *out = static_cast<std::uint8_t>(bytes);
}

MINNOW_TARGET_AVX2 inline __m256i direct_correct(const Epilogue& e, __m256i acc, const std::int32_t* rowsum, index_t j) noexcept {
  acc = _mm256_add_epi32(acc, _mm256_set1_epi32(e.colterm[static_cast<std::size_t>(j)]));
  if (e.zw) {
    const __m256i rs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rowsum));
    acc = _mm256_sub_epi32(acc, _mm256_mullo_epi32(_mm256_set1_epi32(e.zw[j]), rs));
  }
  return acc;
}

/// qgemm's output stage (requantize8, as finish_row) on the first `count` of 8 exact accumulators of channel j.
MINNOW_TARGET_AVX2 inline void direct_store(const Epilogue& e, __m256i acc, index_t j, index_t count, std::uint8_t* out) noexcept {
  const auto c = static_cast<std::size_t>(j);
  store_bytes8(low_bytes8(requantize8(e, acc, _mm256_set1_ps(e.s[c]), _mm256_set1_ps(e.o[c]))), count, out);
}
MINNOW_TARGET_AVX2 inline void direct_store(const Epilogue& e, __m256i acc, index_t j, index_t count, float* out) noexcept {
  const auto c = static_cast<std::size_t>(j);
  _mm256_maskstore_ps(out, first_lanes8(std::min<index_t>(count, 8)),
                      dequantize8(e, acc, _mm256_set1_ps(e.s[c]), _mm256_set1_ps(e.o[c])));
}

/// The 2×2 max of two output rows' exact accumulators (8 columns each): lane p < 4 holds the max of
/// columns 2p, 2p + 1 of both rows.
MINNOW_TARGET_AVX2 inline __m256i direct_pool2(__m256i row0, __m256i row1) noexcept {
  const __m256i v = _mm256_max_epi32(row0, row1);
  const __m256i h = _mm256_max_epi32(v, _mm256_shuffle_epi32(v, _MM_SHUFFLE(2, 3, 0, 1)));  // swap neighbours
  return _mm256_permutevar8x32_epi32(h, _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0));
}

template <class Load>
MINNOW_TARGET_AVX2 void direct_rowsums(arch::avx2, const Load& load, const DirectWeights& dw, const std::uint8_t* base,
                                        std::int32_t* out) noexcept {
  const __m256i low = _mm256_set1_epi16(0x00FF);
  __m256i s = _mm256_setzero_si256();
  for (index_t g = 0; g < dw.groups; ++g) {
    const __m256i a = load(base, g);
    s = _mm256_add_epi32(s, dot4(_mm256_and_si256(a, low), _mm256_srli_epi16(a, 8), dw.ones16.data() + 2 * g));
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), s);
}

/// The output stage of an 8-pixel tile: R vectors × 4 channels of exact Σ x·w (see the VNNI tile).
template <int R, bool Pool, class OutT>
[[gnu::always_inline]] MINNOW_TARGET_AVX2 inline void direct_finish(const __m256i (&acc)[R][4], index_t tile, index_t channels, index_t plane,
                                             const Epilogue& e, const index_t* out_offset, const index_t* count,
                                             const std::int32_t* const* rowsum, OutT* y) noexcept {
  const index_t lanes = std::min<index_t>(4, channels - tile * 4);
#pragma GCC unroll 4
  for (int l = 0; l < 4; ++l) {
    if (l >= lanes) break;
    const index_t j = tile * 4 + l;
    if constexpr (Pool) {
      const __m256i pooled = direct_pool2(direct_correct(e, acc[0][l], rowsum[0], j), direct_correct(e, acc[1][l], rowsum[1], j));
      direct_store(e, pooled, j, count[0], y + j * plane + out_offset[0]);
    } else {
      for (int r = 0; r < R; ++r) direct_store(e, direct_correct(e, acc[r][l], rowsum[r], j), j, count[r], y + j * plane + out_offset[r]);
    }
  }
}

/// R vectors × 4 channels of tile `tile` (as the VNNI tile, which see).
template <int R, bool Pool, class Load, class OutT>
MINNOW_TARGET_AVX2 void direct_tile(arch::avx2, const Load& load, const DirectWeights& dw, index_t tile, index_t channels,
                                     index_t plane, const Epilogue& e, const std::uint8_t* const* base, const index_t* out_offset,
                                     const index_t* count, const std::int32_t* const* rowsum, OutT* y) noexcept {
  static_assert(!Pool || R == 2, "pooling takes two output rows");
  const __m256i low = _mm256_set1_epi16(0x00FF);
  __m256i acc[R][4];
#pragma GCC unroll 4
  for (int l = 0; l < 4; ++l) {
    for (int r = 0; r < R; ++r) acc[r][l] = _mm256_setzero_si256();
  }
  // One vector at a time over all groups: its 4 accumulators, its int16 pairs and the weights fit AVX2's 16
  // registers (both vectors at once spill accumulators inside the loop); the weights are read once per vector.
  const std::int32_t* const w0 = dw.w16.data() + tile * dw.groups * 8;
#pragma GCC unroll 2
  for (int r = 0; r < R; ++r) {
    const std::int32_t* w = w0;
    for (index_t g = 0; g < dw.groups; ++g, w += 8) {
      const __m256i a = load(base[r], g);
      const __m256i even = _mm256_and_si256(a, low), odd = _mm256_srli_epi16(a, 8);
#pragma GCC unroll 4
      for (int l = 0; l < 4; ++l) acc[r][l] = _mm256_add_epi32(acc[r][l], dot4(even, odd, w + 2 * l));
    }
  }
  direct_finish<R, Pool>(acc, tile, channels, plane, e, out_offset, count, rowsum, y);
}

/// AVX-VNNI: the same tile with one vpdpbusd per group and channel, on the VNNI weights (tile t is half t % 2
/// of the 8-channel block t / 2).
template <int R, bool Pool, class Load, class OutT>
MINNOW_TARGET_AVX2_VNNI void direct_tile(arch::avx2_vnni, const Load& load, const DirectWeights& dw, index_t tile, index_t channels,
                                          index_t plane, const Epilogue& e, const std::uint8_t* const* base,
                                          const index_t* out_offset, const index_t* count, const std::int32_t* const* rowsum,
                                          OutT* y) noexcept {
  static_assert(!Pool || R == 2, "pooling takes two output rows");
  __m256i acc[R][4];
#pragma GCC unroll 4
  for (int l = 0; l < 4; ++l) {
    for (int r = 0; r < R; ++r) acc[r][l] = _mm256_setzero_si256();
  }
  const std::int32_t* w = dw.w.data() + (tile / 2) * dw.groups * 8 + (tile % 2) * 4;
  for (index_t g = 0; g < dw.groups; ++g, w += 8) {
    __m256i a[R];
    for (int r = 0; r < R; ++r) a[r] = load(base[r], g);
#pragma GCC unroll 4
    for (int l = 0; l < 4; ++l) {
      const __m256i wl = _mm256_set1_epi32(w[l]);
      for (int r = 0; r < R; ++r) acc[r][l] = _mm256_dpbusd_avx_epi32(acc[r][l], a[r], wl);
    }
  }
  direct_finish<R, Pool>(acc, tile, channels, plane, e, out_offset, count, rowsum, y);
}
#endif  // MINNOW_X86_KERNELS

/// One sample through the kernel of `Arch`: `in` is its padded input (layout of the kind), `rowsums` room
/// for one int32 per vector lane, `y` its output planes [channels × out_h × out_w], or with Pool the 2×2-pooled
/// planes [channels × ⌊out_h/2⌋ × ⌊out_w/2⌋] (floor mode: an odd last row or column of the conv output is
/// not computed).
template <bool Pool, class Arch, class Load, class OutT>
void direct_sample(Arch tag, const Load& load, const DirectGeometry& d, const DirectWeights& dw, const Epilogue& e,
                   const std::uint8_t* in, std::int32_t* rowsums, OutT* y) {
  constexpr index_t lanes = direct_lanes(Arch{}), width = direct_tile_channels(Arch{});
  const index_t per_row = (d.out_w + lanes - 1) / lanes, vectors = d.out_h * per_row;
  const index_t tiles = (d.channels + width - 1) / width;
  const auto base = [&](index_t v) {
    return in + (v / per_row) * d.stride * d.row_bytes + (v % per_row) * lanes * d.stride * d.pixel_bytes;
  };
  std::fill_n(rowsums, vectors * lanes, 0);
  if (e.zw) {
    for (index_t v = 0; v < vectors; ++v) direct_rowsums(tag, load, dw, base(v), rowsums + v * lanes);
  }
  if constexpr (Pool) {
    // Output rows 2i and 2i + 1 of a block of columns → lanes / 2 pooled columns of pooled row i.
    const index_t pooled_h = d.out_h / 2, pooled_w = d.out_w / 2, plane = pooled_h * pooled_w;
    for (index_t tile = 0; tile < tiles; ++tile) {
      for (index_t i = 0; i < pooled_h; ++i) {
        for (index_t c = 0; c < per_row && c * (lanes / 2) < pooled_w; ++c) {
          const index_t v = 2 * i * per_row + c;
          const std::uint8_t* b[2] = {base(v), base(v + per_row)};
          const index_t o[1] = {i * pooled_w + c * (lanes / 2)};
          const index_t n[1] = {std::min<index_t>(lanes / 2, pooled_w - c * (lanes / 2))};
          const std::int32_t* rs[2] = {rowsums + v * lanes, rowsums + (v + per_row) * lanes};
          direct_tile<2, true>(tag, load, dw, tile, d.channels, plane, e, b, o, n, rs, y);
        }
      }
    }
  } else {
    const index_t plane = d.out_h * d.out_w;
    const auto out_offset = [&](index_t v) { return (v / per_row) * d.out_w + (v % per_row) * lanes; };
    const auto count = [&](index_t v) { return std::min<index_t>(lanes, d.out_w - (v % per_row) * lanes); };
    for (index_t tile = 0; tile < tiles; ++tile) {
      index_t v = 0;
      for (; v + 2 <= vectors; v += 2) {
        const std::uint8_t* b[2] = {base(v), base(v + 1)};
        const index_t o[2] = {out_offset(v), out_offset(v + 1)};
        const index_t n[2] = {count(v), count(v + 1)};
        const std::int32_t* rs[2] = {rowsums + v * lanes, rowsums + (v + 1) * lanes};
        direct_tile<2, false>(tag, load, dw, tile, d.channels, plane, e, b, o, n, rs, y);
      }
      if (v < vectors) {
        const std::uint8_t* b[1] = {base(v)};
        const index_t o[1] = {out_offset(v)};
        const index_t n[1] = {count(v)};
        const std::int32_t* rs[1] = {rowsums + v * lanes};
        direct_tile<1, false>(tag, load, dw, tile, d.channels, plane, e, b, o, n, rs, y);
      }
    }
  }
}

#if MINNOW_X86_KERNELS
/// One sample with the loader of the layer's kind and stride, for the kernel of `Arch`.
template <bool Pool, class Arch, class OutT>
void direct_sample(Arch tag, const DirectGeometry& d, const DirectWeights& dw, const Epilogue& e, const std::uint8_t* in,
                   std::int32_t* rowsums, OutT* y) {
  if constexpr (std::is_base_of_v<arch::avx512_vnni, Arch>) {
    if (dw.kind == DirectKind::taps) {
      direct_sample<Pool>(tag, TapLoader16{dw.index.data(), d.offsets}, d, dw, e, in, rowsums, y);
    } else if (d.stride == 1) {
      direct_sample<Pool>(tag, ChannelLoader16{d.offsets}, d, dw, e, in, rowsums, y);
    } else {
      direct_sample<Pool>(tag, ChannelLoader16x2{d.offsets}, d, dw, e, in, rowsums, y);
    }
  } else {
    if (dw.kind == DirectKind::taps) {
      direct_sample<Pool>(tag, TapLoader8{dw.index16.data(), d.offsets, 4 * d.stride}, d, dw, e, in, rowsums, y);
    } else if (d.stride == 1) {
      direct_sample<Pool>(tag, ChannelLoader8{d.offsets}, d, dw, e, in, rowsums, y);
    } else {
      direct_sample<Pool>(tag, ChannelLoader8x2{d.offsets}, d, dw, e, in, rowsums, y);
    }
  }
}
#endif

}  // namespace minnow::infer::detail
