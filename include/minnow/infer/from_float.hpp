#pragma once
/// @file infer/from_float.hpp
/// @brief From float to integers in one call: a float tensor to uint8 (PyTorch's
/// `torch.quantize_per_tensor(x, scale, zero_point, torch.quint8).int_repr()`), and an int8 layer built
/// from a trained float nn::Linear or nn::Conv2d (PyTorch's `from_float` of its quantized modules).
///
/// @code
///   quant::Quantizer<> calibration;                          // uint8, MinMax, affine, per tensor
///   calibration.observe(x);                                  // a calibration batch [N, in]
///   const auto in = calibration.calculate_params().front(); // the input's scale and zero point
///   auto qfc = infer::from_float(fc, in);                    // int8 weights, one scale per output channel
///   qfc.forward(x, y);                                       // float in, integer product, float out
///   const auto xq = infer::quantize_per_tensor(x, in);       // the uint8 input the layer multiplies
/// @endcode
/// The weights become int8 as pipeline::IntegerNetwork makes them: a weight quantizer's per-channel
/// parameters, then infer::quantize_int8 (infer/int_tensor.hpp). Here the quantizer observes the layer's
/// weight itself; by default it is quant::Int8PerChannelSymmetric, PyTorch's per-channel weight scheme.

#include <minnow/error.hpp>
#include <minnow/infer/int_tensor.hpp>
#include <minnow/infer/qgemm.hpp>
#include <minnow/infer/quantized_conv2d.hpp>
#include <minnow/infer/quantized_linear.hpp>
#include <minnow/nn/conv2d.hpp>
#include <minnow/nn/linear.hpp>
#include <minnow/quant/concepts.hpp>
#include <minnow/quant/fake_quantize.hpp>
#include <minnow/quant/quantizer.hpp>
#include <minnow/tensor.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>

namespace minnow::infer {

/// @brief `q = clamp(zero_point + nearbyint(x · (1 / scale)), 0, 255)`, NaN → 0: `x` on the uint8 grid
/// with one scale and zero point, fake_quantize's formula and what the integer layers do to a float input
/// (PyTorch's `quantize_per_tensor(x, scale, zero_point, torch.quint8).int_repr()`).
/// @throws value_error for a scale ≤ 0, NaN or infinite, or a zero point outside [0, 255]; shape_error
/// when `q`'s shape differs from `x`'s (nothing is written then).
template <std::size_t R>
void quantize_per_tensor(std::type_identity_t<TensorView<const float, R>> x, quant::AffineParams params,
                         TensorView<std::uint8_t, R> q) {
  detail::check_activation_params(params, "infer::quantize_per_tensor");
  check_same_shape("infer::quantize_per_tensor", "x", x.shape(), "q", q.shape());
  simd::dispatch([&](auto tag) { detail::quantize_row(tag, x.data(), x.size(), params, q.data()); });
}

/// @brief quantize_per_tensor() into a new tensor shaped like `x` (a view or a tensor).
template <class V, std::size_t R>
  requires std::same_as<std::remove_const_t<V>, float>
[[nodiscard]] Tensor<std::uint8_t, R> quantize_per_tensor(TensorView<V, R> x, quant::AffineParams params) {
  Tensor<std::uint8_t, R> q(x.shape());
  quantize_per_tensor<R>(x, params, q.view());
  return q;
}
template <std::size_t R>
[[nodiscard]] Tensor<std::uint8_t, R> quantize_per_tensor(const Tensor<float, R>& x, quant::AffineParams params) {
  return quantize_per_tensor(x.view(), params);
}

/// @brief The int8 Linear a float one becomes: weights quantized by `weights` (after it observes them;
/// one scale per output channel by default), the float bias kept, `input` the uint8 parameters of the
/// input (e.g. from a calibration quantizer), `relu` fused into the output stage. The layer's name in
/// messages is `layer.describe()`.
/// @throws value_error for bad input parameters, a non-finite weight or bias, or a weight quantizer whose
/// channels are not the output channels or whose grid is wider than int8.
template <class WeightQ = quant::Int8PerChannelSymmetric>
  requires WeightQuantizer<WeightQ>
[[nodiscard]] QuantizedLinear from_float(const nn::Linear<float>& layer, quant::AffineParams input, bool relu = false,
                                         WeightQ weights = WeightQ{}) {
  const TensorView<const float, 1> bias = layer.bias();
  return QuantizedLinear(quantize_int8(layer.describe(), layer.weight(), std::move(weights)),
                         std::span<const float>(bias.data(), static_cast<std::size_t>(bias.size())), input, relu);
}

/// @brief The int8 Conv2d a float one becomes (same geometry; otherwise as from_float of a Linear).
template <class WeightQ = quant::Int8PerChannelSymmetric>
  requires WeightQuantizer<WeightQ>
[[nodiscard]] QuantizedConv2d from_float(const nn::Conv2d<float>& layer, quant::AffineParams input, bool relu = false,
                                         WeightQ weights = WeightQ{}) {
  const TensorView<const float, 1> bias = layer.bias();
  return QuantizedConv2d(quantize_int8(layer.describe(), layer.weight(), std::move(weights)), layer.in_channels(),
                         layer.kernel(), layer.stride(), layer.padding(),
                         std::span<const float>(bias.data(), static_cast<std::size_t>(bias.size())), input, relu);
}

}  // namespace minnow::infer
