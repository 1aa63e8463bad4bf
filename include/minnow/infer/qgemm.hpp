#pragma once
/// @file infer/qgemm.hpp
/// @brief Integer matrix multiply for inference: uint8 activations × int8 weights → int32, then one of
/// three output stages (int32, dequantized float, requantized uint8) with fused bias and ReLU.
///
/// ## The exact computation
/// Activations `A[m × k]` are uint8 with one (sa, za) for the tensor; weights `W[n × k]` are int8 with
/// (sw[j], zw[j]) per output channel j (infer/int_tensor.hpp). The accumulator is exact:
/// @code
///   acc[i, j] = Σ_k (A[i,k] − za)·(W[j,k] − zw[j]) + bias_int32[j]
///             = Σ_k A·W − za·colsum[j] − zw[j]·rowsum[i] + k·za·zw[j] + bias_int32[j]   (mod 2³²)
/// @endcode
/// The kernels compute only Σ A·W (vpdpbusd multiplies uint8 by int8 directly); the other terms come
/// from the weight column sums (computed once when packing) and the activation row sums (computed
/// while packing A). |Σ(A − za)(W − zw)| ≤ k·255·255 must fit int32, so k ≤ 33025 (checked).
///
/// Output stage, per channel constants computed in double and rounded once to float:
/// `s[j] = float(sa·sw[j])`, `o[j] = float(bias[j])` for float output and `s[j] = float(sa·sw[j]/so)`,
/// `o[j] = float(bias[j]/so)` for uint8 output (o = 0 without a float bias). Then, in float:
/// @code
///   r = fma(float(acc), s[j], o[j])                  // one rounding (float(acc) rounds to nearest)
///   float out:  y = relu ? (r > 0 ? r : +0) : r
///   uint8 out:  q = nearbyint(r) + zo;  q = min(max(q, relu ? zo : 0), 255)   // half to even
/// @endcode
/// This is gemmlowp's "multiply by the real multiplier, round, add the zero point, clamp" with the real
/// multiplier kept as a float instead of a fixed-point mantissa and shift; every path (AVX-512 VNNI,
/// AVX2, scalar) evaluates exactly these operations, so their outputs are equal bit for bit.
///
/// ## Paths and layout
/// The kernels (infer/qgemm_kernels.hpp) are `arch::avx512_vnni` (vpdpbusd), `arch::avx2` (vpmaddwd on
/// int16-widened operands: exact, unlike vpmaddubsw which saturates at int16) and `arch::scalar`
/// overloads, chosen at run time for the CPU (simd/arch.hpp) unless a tag is given. Weights are packed
/// once into panels of 48 output channels: for every group of 4 k, the 4 bytes of each of the 48
/// channels (192 bytes, three 64-byte vectors, what one vpdpbusd step reads). Activations are packed per call into panels of 8 rows, 4 bytes per row and k
/// group. A register tile is 8 rows × 48 channels (24 zmm accumulators, 3 weight vectors, 1 broadcast):
/// per k group 11 loads feed 24 vpdpbusd, and Zen 5 starts one vpdpbusd zmm per cycle (4-cycle
/// latency, so 24 independent chains keep it busy; see benchmarks/bench_infer.cpp, infer/peak_avx512_vnni).
/// The tile accumulates over the whole inner length in registers and goes straight to the epilogue:
/// no partial sums are stored and reloaded per cache block (at fc1's shape that would be 1 MB per block,
/// 13 blocks per call), which keeps the kernel near the vpdpbusd peak (docs/benchmarks.md). Tiles
/// (weight panel, activation panel) run weight panel by weight panel:
/// one weight panel (48·k bytes, 301 KB at k = 6272) stays in L2 while the activation panels stream
/// past it from L3 (32 bytes per 24 vpdpbusd).
/// Threads take equal runs of tiles (8 × 48 outputs each, whatever its panel), so they finish
/// together; every output comes from one tile computed the same way on any thread, so results do not
/// depend on the thread count.
///
/// ## AMX
/// Where the CPU has AMX-INT8 and the OS grants it (infer/amx.hpp, checked at run time), activations of
/// two rows or more for the AVX-512 VNNI path are packed as plain rows instead (`ActivationLayout::rows`,
/// k padded to 64) and each item is 16 rows × 48 channels on the tile registers: the weight panels above
/// are already tdpbusd's B layout (16 channels × 4 bytes per k group, rows 192 bytes apart), so the same
/// packed weights serve both; the last k4 % 16 groups come from a zero-padded copy. The sums are exact
/// int32, the epilogue the same, so the output equals the VNNI path's bit for bit. At fc1's shape,
/// batch 256, the tiles run 2.9× the VNNI kernel on a Xeon with AMX (docs/benchmarks.md).

#include <minnow/detail/parallel.hpp>
#include <minnow/error.hpp>
#include <minnow/infer/amx.hpp>
#include <minnow/infer/int_tensor.hpp>
#include <minnow/infer/qgemm_kernels.hpp>
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

/// @brief Weights packed once for the kernels (int8 panels, or int4 panels unpacked block by block).
struct PackedWeights {
  std::string name;
  index_t n = 0, k = 0, k4 = 0, panels = 0;
  bool int4 = false;                    ///< true: `nibbles` holds the panels at 4 bits
  Tensor<std::int8_t, 1> values;        ///< panels × k4 × 192 bytes (int8 panels)
  Tensor<std::uint8_t, 1> nibbles;      ///< panels × k4 × 96 bytes (int4 panels, see pack_weights)
  std::vector<std::int32_t> colsum;     ///< Σ_k W[j, k]
  std::vector<std::int32_t> zero_points;
  std::vector<float> scales;
  bool any_zero_point = false;          ///< some zw[j] ≠ 0: the row-sum term is needed

  /// Bytes actually held by the packed weights and their per-channel data (padding included).
  [[nodiscard]] std::size_t bytes() const noexcept {
    return static_cast<std::size_t>(values.size() + nibbles.size()) +
           (colsum.size() + zero_points.size()) * sizeof(std::int32_t) + scales.size() * sizeof(float);
  }
};


namespace detail {

/// Byte offset of W[j, k] in the int8 panel stream.
[[nodiscard]] inline index_t panel_offset(index_t j, index_t k, index_t k4) noexcept {
  return (j / kNR) * k4 * kStep + (k / 4) * kStep + (j % kNR) * 4 + k % 4;
}

template <class Get>
PackedWeights pack_common(const std::string& name, index_t n, index_t k, std::span<const quant::AffineParams> params,
                          Get&& get) {
  if (k > kMaxK) {
    throw value_error(minnow::detail::concat("infer: weight '", name, "' has inner length ", k,
                                             "; exact int32 accumulation allows at most ", kMaxK));
  }
  PackedWeights w;
  w.name = name;
  w.n = n;
  w.k = k;
  w.k4 = (k + 3) / 4;
  w.panels = (n + kNR - 1) / kNR;
  w.values.resize({w.panels * w.k4 * kStep});
  w.values.fill(0);  // padding channels and k past the end contribute 0 to Σ A·W
  w.colsum.assign(static_cast<std::size_t>(n), 0);
  for (index_t j = 0; j < n; ++j) {
    std::int32_t sum = 0;
    for (index_t p = 0; p < k; ++p) {
      const std::int8_t v = get(j, p);
      w.values.data()[panel_offset(j, p, w.k4)] = v;
      sum += v;
    }
    w.colsum[static_cast<std::size_t>(j)] = sum;
  }
  for (const auto& p : params) {
    w.zero_points.push_back(p.zero_point);
    w.scales.push_back(p.scale);
    w.any_zero_point = w.any_zero_point || p.zero_point != 0;
  }
  return w;
}

}  // namespace detail

/// @brief Packs int8 weights for the kernels. @throws value_error when k > 33025.
[[nodiscard]] inline PackedWeights pack_weights(const Int8Weights& w) {
  return detail::pack_common(w.name, w.rows(), w.cols(), w.params,
                             [&](index_t j, index_t p) { return w.values(j, p); });
}

/// @brief Packs int4 weights. With `keep_int4` the panels stay at 4 bits (half the bytes) and each
/// 48-channel panel is unpacked to int8 (into a per-thread buffer that stays in L2) when a thread starts
/// its tiles on it; otherwise they are unpacked once, as pack_weights(int8).
/// Int4 panel layout: the int8 panel stream cut into chunks of 64 bytes; byte b (0…31) of a chunk's 32
/// bytes holds element b in its low nibble and element b + 32 in its high nibble (so one shift and mask
/// of a 32-byte vector unpacks a whole chunk).
[[nodiscard]] inline PackedWeights pack_weights(const Int4Weights& w, bool keep_int4) {
  PackedWeights p = detail::pack_common(w.name, w.rows(), w.cols(), w.params,
                                        [&](index_t j, index_t k) { return w.at(j, k); });
  if (!keep_int4) return p;
  const index_t chunks = p.values.size() / 64;
  p.nibbles.resize({chunks * 32});
  for (index_t c = 0; c < chunks; ++c) {
    const std::int8_t* src = p.values.data() + c * 64;
    for (index_t b = 0; b < 32; ++b) {
      p.nibbles.data()[c * 32 + b] = static_cast<std::uint8_t>((src[b] & 0x0F) | ((src[b + 32] & 0x0F) << 4));
    }
  }
  p.values = Tensor<std::int8_t, 1>();
  p.int4 = true;
  return p;
}

/// How QuantizedActivations holds the bytes: 8-row panels for the vector kernels, or plain rows for
/// the AMX tiles (which load 16 rows × 64 bytes).
enum class ActivationLayout { panels, rows };

/// @brief Activations quantized and packed for the kernels, with their row sums. Reused across calls
/// (the buffers grow once, then stay).
struct QuantizedActivations {
  index_t m = 0, k = 0, k4 = 0;
  quant::AffineParams params;
  ActivationLayout layout = ActivationLayout::panels;
  Tensor<std::uint8_t, 1> panels;  ///< panels layout: ⌈m/8⌉ × k4 × 32 bytes
  Tensor<std::uint8_t, 1> rows;    ///< rows layout: ⌈m/16⌉·16 rows of `lda` bytes, zero-padded
  index_t lda = 0;                 ///< rows layout: k rounded up to 64
  std::vector<std::int32_t> rowsum;
};

namespace detail {

inline void check_activation_params(quant::AffineParams p, const char* context) {
  quant::check_affine_params(p, quant::QRange{0, 255}, context);
}

/// Rows from which the AMX tiles are used. One row would leave 15 of a tile's 16 rows padding; at fc1's
/// shape the tiles tie with the VNNI kernel at two and three rows and win from four (4 % at four rows, 11 %
/// at eight, 2.8× at 256: bench_infer's int8_u8_in_u8_out_small_batch rows, one thread).
inline constexpr index_t kAmxMinRows = 2;

/// Whether `m` rows of activations for `Arch` go to the AMX tiles.
template <class Arch>
[[nodiscard]] bool use_amx(index_t m) {
  return MINNOW_AMX_COMPILED && std::is_base_of_v<arch::avx512_vnni, Arch> && m >= kAmxMinRows && amx::enabled();
}

inline void prepare(QuantizedActivations& a, index_t m, index_t k, quant::AffineParams params, ActivationLayout layout) {
  if (k > kMaxK) {
    throw value_error(minnow::detail::concat("infer: activations have inner length ", k,
                                             "; exact int32 accumulation allows at most ", kMaxK));
  }
  a.m = m;
  a.k = k;
  a.k4 = (k + 3) / 4;
  a.params = params;
  a.layout = layout;
  if (layout == ActivationLayout::panels) {
    a.panels.resize({std::max<index_t>(1, (m + kMR - 1) / kMR * a.k4 * kAStep)});
  } else {
    a.lda = std::max<index_t>(amx::kDepth, (k + amx::kDepth - 1) / amx::kDepth * amx::kDepth);
    a.rows.resize({(m + amx::kRows - 1) / amx::kRows * amx::kRows * a.lda});
  }
  a.rowsum.assign(static_cast<std::size_t>(m), 0);
}

/// Interleaves rows [8·tile, 8·tile + rows) (row r at rows_of[r], k bytes each) into activation panel
/// `tile`, 4 bytes per row and k group, the last group zero-padded; rows past `rows` are zero. Also
/// records the row sums. The panel is written front to back, so it streams through the cache once.
template <class Arch>
void place_tile(QuantizedActivations& a, index_t tile, const std::uint8_t* const* rows_of, index_t rows) noexcept {
  std::uint8_t* dst = a.panels.data() + tile * a.k4 * kAStep;
  const index_t full = a.k / 4, tail = a.k - full * 4;
  index_t p = interleave_blocks(Arch{}, rows_of, rows, full, a.k, dst, a.rowsum.data() + tile * kMR);
  dst += p * kAStep;
  for (; p < full; ++p, dst += kAStep) {
    for (index_t r = 0; r < rows; ++r) std::memcpy(dst + r * 4, rows_of[r] + p * 4, 4);
    if (rows < kMR) std::memset(dst + rows * 4, 0, static_cast<std::size_t>((kMR - rows) * 4));
  }
  if (tail > 0) {
    std::memset(dst, 0, kAStep);
    for (index_t r = 0; r < rows; ++r) std::memcpy(dst + r * 4, rows_of[r] + full * 4, static_cast<std::size_t>(tail));
  }
}

/// Threads for packing m × k activations: one below 2¹⁸ bytes (an OpenMP region costs more than it saves).
[[nodiscard]] inline int pack_threads(index_t m, index_t k) noexcept {
  return m * k < (index_t{1} << 18) ? 1 : minnow::detail::max_threads();
}

/// Row r of the rows layout, quantized (or copied) by `fill(dst)`, then zero-padded to lda; rows past m are
/// zero. Records the row sum.
template <class Fill>
void place_row(QuantizedActivations& a, index_t r, Fill&& fill) {
  std::uint8_t* dst = a.rows.data() + r * a.lda;
  if (r < a.m) {
    fill(dst);
    a.rowsum[static_cast<std::size_t>(r)] = byte_sum(dst, a.k);
    std::memset(dst + a.k, 0, static_cast<std::size_t>(a.lda - a.k));
  } else {
    std::memset(dst, 0, static_cast<std::size_t>(a.lda));
  }
}

/// Eight quantized rows of one thread (quantize_activations' scratch).
inline Tensor<std::uint8_t, 1>& quantize_scratch(index_t bytes) {
  thread_local Tensor<std::uint8_t, 1> scratch;
  if (scratch.size() < bytes) scratch.resize({bytes});
  return scratch;
}

/// quantize_activations for the kernels of Arch.
template <class Arch>
void quantize_activations(Arch, TensorView<const float, 2> x, quant::AffineParams params, QuantizedActivations& out) {
  if (use_amx<Arch>(x.dim(0))) {
    prepare(out, x.dim(0), x.dim(1), params, ActivationLayout::rows);
    const index_t rows = out.rows.size() / out.lda, k = out.k;
    minnow::detail::parallel_for(rows, pack_threads(out.m, k), [&](long r, int) {
      place_row(out, r, [&](std::uint8_t* dst) { quantize_row(Arch{}, x.data() + r * k, k, params, dst); });
    });
    return;
  }
  prepare(out, x.dim(0), x.dim(1), params, ActivationLayout::panels);
  const index_t tiles = (out.m + kMR - 1) / kMR, k = out.k;
  minnow::detail::parallel_for(tiles, pack_threads(out.m, k), [&](long tile, int) {
    const index_t r0 = tile * kMR, rows = std::min(kMR, out.m - r0);
    std::uint8_t* scratch = quantize_scratch(kMR * std::max<index_t>(k, 1)).data();
    const std::uint8_t* rows_of[kMR];
    for (index_t r = 0; r < rows; ++r) {
      quantize_row(Arch{}, x.data() + (r0 + r) * k, k, params, scratch + r * k);
      rows_of[r] = scratch + r * k;
    }
    place_tile<Arch>(out, tile, rows_of, rows);
  });
}
}  // namespace detail

/// @brief Quantizes float activations `x[m × k]` with one (scale, zero point) on the uint8 grid and
/// packs them (threads split the 8-row panels; the result does not depend on their number).
/// @throws value_error for a scale ≤ 0, NaN or infinite, or a zero point outside [0, 255].
template <class Arch = arch::automatic>
void quantize_activations(TensorView<const float, 2> x, quant::AffineParams params, QuantizedActivations& out) {
  detail::check_activation_params(params, "infer::quantize_activations (input)");
  simd::with_arch<Arch>("infer::quantize_activations", [&](auto tag) { detail::quantize_activations(tag, x, params, out); });
}

namespace detail {
/// pack_activations for the kernels of Arch.
template <class Arch>
void pack_activations(Arch, TensorView<const std::uint8_t, 2> x, quant::AffineParams params, QuantizedActivations& out) {
  if (use_amx<Arch>(x.dim(0))) {
    prepare(out, x.dim(0), x.dim(1), params, ActivationLayout::rows);
    const index_t rows = out.rows.size() / out.lda, k = out.k;
    minnow::detail::parallel_for(rows, pack_threads(out.m, k), [&](long r, int) {
      place_row(out, r, [&](std::uint8_t* dst) { std::memcpy(dst, x.data() + r * k, static_cast<std::size_t>(k)); });
    });
    return;
  }
  prepare(out, x.dim(0), x.dim(1), params, ActivationLayout::panels);
  const index_t tiles = (out.m + kMR - 1) / kMR, k = out.k;
  minnow::detail::parallel_for(tiles, pack_threads(out.m, k), [&](long tile, int) {
    const index_t r0 = tile * kMR, rows = std::min(kMR, out.m - r0);
    const std::uint8_t* rows_of[kMR];
    for (index_t r = 0; r < rows; ++r) rows_of[r] = x.data() + (r0 + r) * k;
    place_tile<Arch>(out, tile, rows_of, rows);
  });
}
}  // namespace detail

/// @brief Packs already quantized uint8 activations `x[m × k]` whose parameters are `params`, for the
/// kernels of `Arch` (the CPU's widest by default).
template <class Arch = arch::automatic>
void pack_activations(TensorView<const std::uint8_t, 2> x, quant::AffineParams params, QuantizedActivations& out) {
  detail::check_activation_params(params, "infer::pack_activations (input)");
  simd::with_arch<Arch>("infer::pack_activations", [&](auto tag) { detail::pack_activations(tag, x, params, out); });
}

/// @brief What happens after the accumulation: a bias (int32 in units of sa·sw[j], or float in real
/// units; at most one, empty or one entry per output channel) and ReLU.
struct OutputStage {
  std::span<const std::int32_t> bias_int32{};
  std::span<const float> bias{};
  bool relu = false;
};

namespace detail {

enum class Out { int32, dequantize, requantize };

inline Epilogue make_epilogue(const QuantizedActivations& a, const PackedWeights& w, const OutputStage& stage, Out kind,
                              quant::AffineParams out) {
  const std::string layer = minnow::detail::concat("infer::qgemm '", w.name, "'");
  if (a.k != w.k) {
    throw shape_error(minnow::detail::concat(layer, ": activations have inner length ", a.k, ", weights ", w.k));
  }
  const auto n = static_cast<std::size_t>(w.n);
  if (!stage.bias_int32.empty() && stage.bias_int32.size() != n) {
    throw shape_error(minnow::detail::concat(layer, ": ", stage.bias_int32.size(), " int32 biases for ", n, " channels"));
  }
  if (!stage.bias.empty() && stage.bias.size() != n) {
    throw shape_error(minnow::detail::concat(layer, ": ", stage.bias.size(), " float biases for ", n, " channels"));
  }
  if (!stage.bias.empty() && !stage.bias_int32.empty()) {
    throw value_error(minnow::detail::concat(layer, ": give an int32 or a float bias, not both"));
  }
  if (kind == Out::int32 && !stage.bias.empty()) {
    throw value_error(minnow::detail::concat(layer, ": int32 output takes an int32 bias only"));
  }
  if (kind == Out::requantize) quant::check_affine_params(out, quant::QRange{0, 255}, (layer + " (output)").c_str());
  Epilogue e;
  e.relu = stage.relu;
  e.zw = w.any_zero_point ? w.zero_points.data() : nullptr;
  e.colterm.resize(n);
  e.s.resize(n);
  e.o.resize(n);
  const std::int64_t za = a.params.zero_point;
  for (std::size_t j = 0; j < n; ++j) {
    const std::int64_t bias = stage.bias_int32.empty() ? 0 : stage.bias_int32[j];
    const std::int64_t term = bias - za * w.colsum[j] + static_cast<std::int64_t>(a.k) * za * w.zero_points[j];
    e.colterm[j] = static_cast<std::int32_t>(static_cast<std::uint32_t>(term));  // modular, as the sum is
    const double bias_f = stage.bias.empty() ? 0.0 : static_cast<double>(stage.bias[j]);
    const double real = static_cast<double>(a.params.scale) * static_cast<double>(w.scales[j]);
    const double divisor = kind == Out::requantize ? static_cast<double>(out.scale) : 1.0;
    e.s[j] = static_cast<float>(real / divisor);
    e.o[j] = static_cast<float>(bias_f / divisor);
    if (!std::isfinite(e.s[j]) || !std::isfinite(e.o[j]) || !std::isfinite(bias_f)) {
      throw value_error(minnow::detail::concat(layer, ": channel ", j, " has output multiplier ", e.s[j], " and offset ",
                                               e.o[j], "; both must be finite"));
    }
  }
  if (kind == Out::requantize) {
    e.zo = static_cast<float>(out.zero_point);
    e.lo = stage.relu ? e.zo : 0.0f;
  }
  return e;
}

/// One thread's int4 panel, unpacked to int8 (k4 × 192 bytes).
inline Tensor<std::int8_t, 1>& unpacked_panel(index_t bytes) {
  thread_local Tensor<std::int8_t, 1> panel;
  if (panel.size() < bytes) panel.resize({bytes});
  return panel;
}

/// Weight panel `panel` as int8: the packed bytes, or for int4 weights `scratch`, unpacked from the nibbles
/// unless `unpacked` says it already holds that panel.
template <class Arch>
const std::int8_t* weight_panel(const PackedWeights& w, index_t panel, std::int8_t* scratch, index_t& unpacked) noexcept {
  if (!w.int4) return w.values.data() + panel * w.k4 * kStep;
  if (panel != unpacked) {
    unpack_nibbles(Arch{}, w.nibbles.data() + panel * w.k4 * (kStep / 2), w.k4 * 3, scratch);
    unpacked = panel;
  }
  return scratch;
}

/// Items [i0, i1) of the product: item = panel · tiles + tile is the 8 × 48 output block of
/// activation panel `tile` and weight panel `panel`, computed over the whole inner length and passed
/// through the epilogue. Items run panel by panel, so one weight panel (48 · k bytes, 301 KB at fc1)
/// stays in L2 while the activation panels stream past it.
template <class Arch, class OutT>
void qgemm_items(const QuantizedActivations& a, const PackedWeights& w, const Epilogue& e, index_t i0, index_t i1,
                 OutT* out, index_t ldo) {
  const index_t tiles = (a.m + kMR - 1) / kMR;
  alignas(64) std::int32_t c[kMR * kNR];
  index_t unpacked = -1;
  std::int8_t* panel_int8 = w.int4 ? unpacked_panel(std::max<index_t>(1, w.k4 * kStep)).data() : nullptr;
  for (index_t item = i0; item < i1; ++item) {
    const index_t panel = item / tiles, tile = item % tiles;
    const std::int8_t* b = weight_panel<Arch>(w, panel, panel_int8, unpacked);
    const index_t r0 = tile * kMR, rows = std::min(kMR, a.m - r0), j0 = panel * kNR, cols = std::min(kNR, w.n - j0);
    run_micro_kernel<Arch>(rows, w.k4, a.panels.data() + tile * a.k4 * kAStep, b, c);
    for (index_t i = 0; i < rows; ++i) {
      finish_row(Arch{}, e, c + i * kNR, j0, cols, a.rowsum[static_cast<std::size_t>(r0 + i)], out + (r0 + i) * ldo);
    }
  }
}

#if MINNOW_AMX_COMPILED
/// One weight panel's last k4 % 16 groups, zero-padded to a full 16-group tile step (null when k4 is a
/// multiple of 16). Per thread, refilled when the panel changes.
inline const std::int8_t* amx_tail(const std::int8_t* panel, index_t k4) {
  const index_t groups = k4 % 16;
  if (groups == 0) return nullptr;
  thread_local std::int8_t tail[16 * kStep];
  std::memset(tail, 0, sizeof(tail));
  std::memcpy(tail, panel + (k4 - groups) * kStep, static_cast<std::size_t>(groups * kStep));
  return tail;
}

/// The items of qgemm_items for the rows layout: 16 rows × 48 channels per item, on the AMX tiles
/// (amx::kernel_16x48), through the same epilogue.
template <class OutT>
void qgemm_items_amx(const QuantizedActivations& a, const PackedWeights& w, const Epilogue& e, index_t i0, index_t i1,
                     OutT* out, index_t ldo) {
  const amx::TileScope tiles_on_this_thread;
  const index_t tiles = (a.m + amx::kRows - 1) / amx::kRows, blocks = w.k4 / 16;
  alignas(64) std::int32_t c[amx::kRows * kNR];
  index_t unpacked = -1, tail_of = -1;
  const std::int8_t* tail = nullptr;
  std::int8_t* panel_int8 = w.int4 ? unpacked_panel(std::max<index_t>(1, w.k4 * kStep)).data() : nullptr;
  for (index_t item = i0; item < i1; ++item) {
    const index_t panel = item / tiles, tile = item % tiles;
    const std::int8_t* b = weight_panel<arch::avx512_vnni>(w, panel, panel_int8, unpacked);
    if (panel != tail_of) {
      tail = amx_tail(b, w.k4);
      tail_of = panel;
    }
    const index_t r0 = tile * amx::kRows, rows = std::min(amx::kRows, a.m - r0), j0 = panel * kNR;
    const index_t cols = std::min(kNR, w.n - j0);
    amx::kernel_16x48(blocks, a.rows.data() + r0 * a.lda, a.lda, b, tail, c);
    for (index_t i = 0; i < rows; ++i) {
      finish_row(arch::avx512_vnni{}, e, c + i * kNR, j0, cols, a.rowsum[static_cast<std::size_t>(r0 + i)],
                 out + (r0 + i) * ldo);
    }
  }
}
#endif

/// Threads take equal contiguous runs of items (all items cost the same), so neither waits for the
/// other at the end; each output is computed by the same item whatever the split, so the result does
/// not depend on the thread count.
template <class Arch, class OutT>
void qgemm_run(const QuantizedActivations& a, const PackedWeights& w, const Epilogue& e, OutT* out, index_t ldo) {
  if (a.m == 0 || w.n == 0) return;
  const bool tiles = a.layout == ActivationLayout::rows;
  const index_t items = w.panels * (tiles ? (a.m + amx::kRows - 1) / amx::kRows : (a.m + kMR - 1) / kMR);
  const double work = static_cast<double>(a.m) * static_cast<double>(w.n) * static_cast<double>(w.k);
  const int threads = static_cast<int>(std::min<index_t>(items, work < 2e6 ? 1 : minnow::detail::max_threads()));
  if (tiles) {
#if MINNOW_AMX_COMPILED
    if (simd::cpu_has(simd::Isa::amx)) {
      minnow::detail::parallel_for(threads, threads, [&](long t, int) {
        const index_t i0 = items * t / threads, i1 = items * (t + 1) / threads;
        if (i0 < i1) qgemm_items_amx(a, w, e, i0, i1, out, ldo);
      });
      return;
    }
#endif
    throw value_error(minnow::detail::concat("infer::qgemm '", w.name, "': the activations were packed for AMX tiles, "
                                             "which this build or CPU cannot run; pack them for '", Arch::name, "'"));
  }
  minnow::detail::parallel_for(threads, threads, [&](long t, int) {
    const index_t i0 = items * t / threads, i1 = items * (t + 1) / threads;
    if (i0 < i1) qgemm_items<Arch>(a, w, e, i0, i1, out, ldo);
  });
}

template <class T>
void check_output(const PackedWeights& w, const QuantizedActivations& a, TensorView<T, 2> y) {
  if (y.dim(0) != a.m || y.dim(1) != w.n) {
    throw shape_error(minnow::detail::concat("infer::qgemm '", w.name, "': output is ", to_string(y.shape()),
                                             ", expected [", a.m, ", ", w.n, "]"));
  }
}

}  // namespace detail

/// @brief `y[i, j] = fma(float(acc), s[j], o[j])` (ReLU optional): the dequantized product.
/// @throws shape_error for mismatched inner lengths, output shape or bias length; value_error for
/// non-finite output constants.
template <class Arch = arch::automatic>
void qgemm(const QuantizedActivations& a, const PackedWeights& w, const OutputStage& stage, TensorView<float, 2> y) {
  detail::check_output(w, a, y);
  const auto e = detail::make_epilogue(a, w, stage, detail::Out::dequantize, {});
  simd::with_arch<Arch>("infer::qgemm", [&](auto tag) { detail::qgemm_run<decltype(tag)>(a, w, e, y.data(), w.n); });
}

/// @brief Requantized product on the uint8 grid with output parameters `out` (see the file comment).
/// @throws as the float overload, and value_error for an output scale ≤ 0, NaN or a zero point outside [0, 255].
template <class Arch = arch::automatic>
void qgemm(const QuantizedActivations& a, const PackedWeights& w, const OutputStage& stage, quant::AffineParams out,
           TensorView<std::uint8_t, 2> y) {
  detail::check_output(w, a, y);
  const auto e = detail::make_epilogue(a, w, stage, detail::Out::requantize, out);
  simd::with_arch<Arch>("infer::qgemm", [&](auto tag) { detail::qgemm_run<decltype(tag)>(a, w, e, y.data(), w.n); });
}

/// @brief The exact accumulators `Σ (A − za)(W − zw) + bias_int32` (a float bias is rejected; ReLU ignored).
template <class Arch = arch::automatic>
void qgemm(const QuantizedActivations& a, const PackedWeights& w, const OutputStage& stage, TensorView<std::int32_t, 2> y) {
  detail::check_output(w, a, y);
  const auto e = detail::make_epilogue(a, w, stage, detail::Out::int32, {});
  simd::with_arch<Arch>("infer::qgemm", [&](auto tag) { detail::qgemm_run<decltype(tag)>(a, w, e, y.data(), w.n); });
}

}  // namespace minnow::infer
