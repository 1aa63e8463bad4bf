#pragma once
/// @file infer/int_tensor.hpp
/// @brief Integer weight tensors for inference: int8 (one byte per weight) and packed int4 (two per
/// byte), each with one scale and zero point per output channel (row), as a `quant::Quantizer` with
/// per-channel granularity on axis 0 produced them.
///
/// A weight `W[out × in]` (row-major, a Linear's layout) is stored as integers with the fake-quant
/// formula of quant/fake_quantize.hpp, bit for bit:
/// @code
///   q[j, k] = clamp(zp[j] + nearbyint(W[j, k] · (1.0f / scale[j])), qmin, qmax)   // float, half to even
///   Ŵ[j, k] = (q[j, k] − zp[j]) · scale[j]
/// @endcode
/// so dequantizing gives exactly the fake-quantized weight the network was trained or calibrated with.
///
/// Int4 packing: row j holds `in / 2` bytes; element 2b of the row is the low nibble of byte b and
/// element 2b + 1 the high nibble, each a two's-complement 4-bit value in [−8, 7]. Rows never share a
/// byte, so `in` must be even (an odd inner length is a shape_error).

#include <minnow/error.hpp>
#include <minnow/quant/concepts.hpp>
#include <minnow/quant/fake_quantize.hpp>
#include <minnow/tensor.hpp>

#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace minnow::infer {

namespace detail {

/// Checks the per-channel parameters of a weight `[rows × cols]` against a grid that fits int8.
inline void check_weight_params(const std::string& name, index_t rows, std::span<const quant::AffineParams> params,
                                quant::QRange grid) {
  const std::string context = minnow::detail::concat("infer: weight '", name, "'");
  if (grid.qmin < -128 || grid.qmax > 127 || grid.qmin > grid.qmax) {
    throw value_error(minnow::detail::concat(context, ": grid [", grid.qmin, ", ", grid.qmax,
                                             "] must lie within int8 [-128, 127]"));
  }
  if (static_cast<index_t>(params.size()) != rows) {
    throw shape_error(minnow::detail::concat(context, ": ", params.size(), " per-channel qparams for ", rows,
                                             " output channels"));
  }
  for (std::size_t c = 0; c < params.size(); ++c) {
    quant::check_affine_params(params[c], grid, context.c_str(), static_cast<index_t>(c));
  }
}

/// The fake-quant integer of one weight (see the file comment); non-finite weights are rejected first.
[[nodiscard]] inline std::int32_t quantize_weight(float w, quant::AffineParams p, quant::QRange grid) noexcept {
  const float q = static_cast<float>(p.zero_point) + std::nearbyint(w * (1.0f / p.scale));
  const float lo = static_cast<float>(grid.qmin), hi = static_cast<float>(grid.qmax);
  return static_cast<std::int32_t>(q < lo ? lo : (q > hi ? hi : q));
}

inline void check_finite(const std::string& name, TensorView<const float, 2> w) {
  for (index_t i = 0; i < w.size(); ++i) {
    if (!std::isfinite(w.data()[i])) {
      throw value_error(minnow::detail::concat("infer: weight '", name, "' element ", i, " is ", w.data()[i],
                                               "; integer weights need finite values"));
    }
  }
}

}  // namespace detail

/// @brief An int8 weight `[rows × cols]` (rows = output channels) with per-row scale and zero point.
struct Int8Weights {
  std::string name;
  Tensor<std::int8_t, 2> values;              ///< q[j, k], row-major
  std::vector<quant::AffineParams> params;    ///< one per row
  quant::QRange grid{-128, 127};

  [[nodiscard]] index_t rows() const noexcept { return values.dim(0); }
  [[nodiscard]] index_t cols() const noexcept { return values.dim(1); }
  /// Bytes actually held: the integers plus the per-channel parameters.
  [[nodiscard]] std::size_t bytes() const noexcept {
    return static_cast<std::size_t>(values.size()) * sizeof(std::int8_t) + params.size() * sizeof(quant::AffineParams);
  }
  /// Ŵ = (q − zp) · scale, the fake-quantized weight.
  [[nodiscard]] Tensor<float, 2> dequantize() const {
    Tensor<float, 2> w(values.shape());
    for (index_t j = 0; j < rows(); ++j) {
      const auto p = params[static_cast<std::size_t>(j)];
      for (index_t k = 0; k < cols(); ++k) w(j, k) = static_cast<float>(values(j, k) - p.zero_point) * p.scale;
    }
    return w;
  }
};

/// @brief Quantizes a float weight `[out × in]` per output channel to int8.
/// @throws shape_error when params.size() ≠ out; value_error for a scale ≤ 0, NaN or infinite, a zero
/// point outside the grid, a grid wider than int8, or a non-finite weight (all naming the layer).
[[nodiscard]] inline Int8Weights quantize_int8(std::string name, TensorView<const float, 2> w,
                                               std::span<const quant::AffineParams> params,
                                               quant::QRange grid = quant::qint8::range()) {
  detail::check_weight_params(name, w.dim(0), params, grid);
  detail::check_finite(name, w);
  Int8Weights out{std::move(name), Tensor<std::int8_t, 2>(w.shape()), {params.begin(), params.end()}, grid};
  for (index_t j = 0; j < w.dim(0); ++j) {
    const auto p = params[static_cast<std::size_t>(j)];
    for (index_t k = 0; k < w.dim(1); ++k) {
      out.values(j, k) = static_cast<std::int8_t>(detail::quantize_weight(w(j, k), p, grid));
    }
  }
  return out;
}

/// @brief What quantize_int8 needs of a weight quantizer (a uniform quant::Quantizer satisfies it).
template <class Q>
concept WeightQuantizer = requires(Q q, const Q cq, TensorView<const float, 1> values, std::span<const index_t> shape) {
  /// takes the weight into account, given its logical shape;
  q.observe(values, shape);
  /// turns what it saw into one (scale, zero point) per channel;
  { q.calculate_params() } -> std::same_as<const std::vector<quant::AffineParams>&>;
  /// names the integer grid the values are clamped to;
  { cq.grid() } -> std::same_as<quant::QRange>;
  /// and says how the shape splits into channels (which must be the output channels, or one for all).
  { cq.granularity().layout(shape) } -> std::same_as<quant::ChannelLayout>;
};

/// @brief Quantizes a float weight `[out, ...]` (dimension 0 = output channels: a Linear's `[out, in]`, a
/// Conv2d's `[out, in, k, k]`) to int8 `[out × rest]`, with the parameters `quantizer` computes after it
/// observed the weight (a frozen quantizer keeps the ones it has): one per output channel (per-channel
/// on axis 0, e.g. quant::Int8PerChannelSymmetric) or one for the whole weight (per tensor, used for every row).
/// @throws value_error when the quantizer's channels are neither the output channels nor one, and as
/// quantize_int8 above (a grid wider than int8, a non-finite weight); shape_error from the quantizer.
template <class Q, class V, std::size_t R>
  requires(WeightQuantizer<Q> && std::same_as<std::remove_const_t<V>, float> && R >= 2)
[[nodiscard]] Int8Weights quantize_int8(std::string name, TensorView<V, R> w, Q quantizer) {
  const std::span<const index_t> shape(w.shape());
  const index_t rows = w.dim(0), cols = rows == 0 ? 0 : w.size() / rows;
  const quant::ChannelLayout layout = std::as_const(quantizer).granularity().layout(shape);
  if (layout.outer != 1 || (layout.channels != rows && layout.channels != 1)) {
    throw value_error(minnow::detail::concat("infer: weight '", name, "' ", to_string(w.shape()), ": the quantizer has ",
                                             layout.channels, " channels, expected one per output channel (",
                                             rows, ", axis 0) or one for all"));
  }
  const TensorView<const float, 1> flat(w.data(), Shape<1>{w.size()});
  quantizer.observe(flat, shape);
  const std::vector<quant::AffineParams>& params = quantizer.calculate_params();
  const std::vector<quant::AffineParams> per_row =
      params.size() == 1 ? std::vector<quant::AffineParams>(static_cast<std::size_t>(rows), params.front()) : params;
  return quantize_int8(std::move(name), flat.reshape(Shape<2>{rows, cols}), per_row, std::as_const(quantizer).grid());
}

/// @brief A packed int4 weight `[rows × cols]`: `cols / 2` bytes per row (low nibble first), per-row qparams.
struct Int4Weights {
  std::string name;
  Tensor<std::uint8_t, 2> packed;             ///< [rows × cols/2]
  std::vector<quant::AffineParams> params;    ///< one per row
  quant::QRange grid{-8, 7};

  [[nodiscard]] index_t rows() const noexcept { return packed.dim(0); }
  [[nodiscard]] index_t cols() const noexcept { return 2 * packed.dim(1); }
  [[nodiscard]] std::size_t bytes() const noexcept {
    return static_cast<std::size_t>(packed.size()) + params.size() * sizeof(quant::AffineParams);
  }
  /// The signed value of element (j, k).
  [[nodiscard]] std::int8_t at(index_t j, index_t k) const noexcept {
    const std::uint8_t byte = packed(j, k / 2);
    const int nibble = (k % 2 == 0) ? (byte & 0x0F) : (byte >> 4);
    return static_cast<std::int8_t>((nibble ^ 8) - 8);  // sign-extend 4 bits
  }
  /// The same weight as int8 (what the kernels run on when unpacked once).
  [[nodiscard]] Int8Weights unpack() const {
    Int8Weights out{name, Tensor<std::int8_t, 2>({rows(), cols()}), params, grid};
    for (index_t j = 0; j < rows(); ++j) {
      for (index_t k = 0; k < cols(); ++k) out.values(j, k) = at(j, k);
    }
    return out;
  }
};

/// @brief Packs int8 values that lie in [−8, 7] two per byte. @throws shape_error for an odd row length,
/// value_error for a value outside [−8, 7] (naming the layer and the element).
[[nodiscard]] inline Int4Weights pack_int4(const Int8Weights& w) {
  if (w.cols() % 2 != 0) {
    throw shape_error(minnow::detail::concat("infer: int4 weight '", w.name, "' needs an even inner length to pack two ",
                                             "values per byte, got ", w.cols()));
  }
  Int4Weights out{w.name, Tensor<std::uint8_t, 2>({w.rows(), w.cols() / 2}), w.params, w.grid};
  for (index_t j = 0; j < w.rows(); ++j) {
    for (index_t k = 0; k < w.cols(); ++k) {
      const int v = w.values(j, k);
      if (v < -8 || v > 7) {
        throw value_error(minnow::detail::concat("infer: int4 weight '", w.name, "' element (", j, ", ", k, ") is ", v,
                                                 ", outside [-8, 7]"));
      }
      const auto nibble = static_cast<std::uint8_t>(v & 0x0F);
      out.packed(j, k / 2) = static_cast<std::uint8_t>(out.packed(j, k / 2) | (k % 2 == 0 ? nibble : nibble << 4));
    }
  }
  return out;
}

/// @brief Quantizes a float weight per output channel to int4 (grid [−8, 7] unless a narrower one is given).
/// @throws as quantize_int8, and shape_error for an odd inner length.
[[nodiscard]] inline Int4Weights quantize_int4(std::string name, TensorView<const float, 2> w,
                                               std::span<const quant::AffineParams> params,
                                               quant::QRange grid = quant::qint4::range()) {
  if (grid.qmin < -8 || grid.qmax > 7) {
    throw value_error(minnow::detail::concat("infer: int4 weight '", name, "': grid [", grid.qmin, ", ", grid.qmax,
                                             "] must lie within [-8, 7]"));
  }
  if (w.dim(1) % 2 != 0) {
    throw shape_error(minnow::detail::concat("infer: int4 weight '", name, "' needs an even inner length to pack two ",
                                             "values per byte, got ", w.dim(1)));
  }
  return pack_int4(quantize_int8(std::move(name), w, params, grid));
}

}  // namespace minnow::infer
