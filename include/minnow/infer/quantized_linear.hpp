#pragma once
/// @file infer/quantized_linear.hpp
/// @brief An inference-only Linear layer on integers: `y = x·Wᵀ + b` with int8 (or int4) weights.
///
/// Float in: the input is quantized on the fly with the layer's input parameters (per tensor, uint8,
/// fake_quantize's formula), multiplied on integers (infer/qgemm.hpp), then either dequantized to float
/// or requantized to uint8 with the next layer's input parameters; the float bias and ReLU are fused into
/// that output stage. Already quantized uint8 input skips the first step (a network's inner layers).
///
/// Int4 weights are unpacked to int8 when the layer is built by default (`Int4Storage::unpack_once`):
/// measured at fc1's shape (benchmarks/bench_infer.cpp, one thread, CPU time on a loaded machine) it is
/// about 2× faster at batch 1 than keeping 4 bits and unpacking each 48-channel panel inside the product
/// (0.090 against 0.182 ms), and equal within noise at batch 256 (7.9 ms both), where each unpacked
/// panel serves 32 row tiles: 6 MB of int8 weights stream from cache faster than they unpack.
/// `Int4Storage::keep_int4` halves the resident bytes for memory-bound deployments.

#include <minnow/error.hpp>
#include <minnow/infer/int_tensor.hpp>
#include <minnow/infer/qgemm.hpp>
#include <minnow/quant/concepts.hpp>
#include <minnow/tensor.hpp>

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace minnow::infer {

/// How an int4 layer holds its weights at run time.
enum class Int4Storage {
  unpack_once,  ///< unpacked to int8 when the layer is built (faster; see the file comment)
  keep_int4,    ///< 4 bits per weight; each 48-channel panel unpacked inside the product (half the bytes)
};

/// @brief Quantized Linear forward: weights `[out × in]` per channel, activations per tensor.
class QuantizedLinear {
 public:
  /// @param weights  int8 weights with their per-channel parameters
  /// @param bias     empty or `out` floats (real units), added in the output stage
  /// @param input    the uint8 parameters the input is quantized with
  /// @param relu     fuse a ReLU into the output stage
  /// @throws shape_error for a bias of the wrong length; value_error for a bad input scale/zero point or a
  /// non-finite bias (naming the layer).
  QuantizedLinear(const Int8Weights& weights, std::span<const float> bias, quant::AffineParams input, bool relu = false)
      : packed_(pack_weights(weights)) {
    init(bias, input, relu);
  }

  /// The same from int4 weights.
  QuantizedLinear(const Int4Weights& weights, std::span<const float> bias, quant::AffineParams input, bool relu = false,
                  Int4Storage storage = Int4Storage::unpack_once)
      : packed_(pack_weights(weights, storage == Int4Storage::keep_int4)) {
    init(bias, input, relu);
  }

  [[nodiscard]] const std::string& name() const noexcept { return packed_.name; }
  [[nodiscard]] index_t in_features() const noexcept { return packed_.k; }
  [[nodiscard]] index_t out_features() const noexcept { return packed_.n; }
  [[nodiscard]] quant::AffineParams input_params() const noexcept { return input_; }
  /// Bytes of the weights as the layer holds them (packed panels, per-channel data and bias).
  [[nodiscard]] std::size_t bytes() const noexcept { return packed_.bytes() + bias_.size() * sizeof(float); }

  /// @brief Float in, float out: quantize x[batch × in], multiply, dequantize (+ bias, ReLU).
  template <class Arch = arch::automatic>
  void forward(TensorView<const float, 2> x, TensorView<float, 2> y) {
    check_input(x.shape());
    simd::with_arch<Arch>(name(), [&](auto tag) {
      quantize_activations<decltype(tag)>(x, input_, act_);
      qgemm<decltype(tag)>(act_, packed_, stage(), y);
    });
  }

  /// @brief Float in, uint8 out with the output parameters `out` (the next layer's input parameters).
  template <class Arch = arch::automatic>
  void forward(TensorView<const float, 2> x, quant::AffineParams out, TensorView<std::uint8_t, 2> y) {
    check_input(x.shape());
    simd::with_arch<Arch>(name(), [&](auto tag) {
      quantize_activations<decltype(tag)>(x, input_, act_);
      qgemm<decltype(tag)>(act_, packed_, stage(), out, y);
    });
  }

  /// @brief uint8 in (quantized with input_params()), float out.
  template <class Arch = arch::automatic>
  void forward(TensorView<const std::uint8_t, 2> x, TensorView<float, 2> y) {
    check_input(x.shape());
    simd::with_arch<Arch>(name(), [&](auto tag) {
      pack_activations<decltype(tag)>(x, input_, act_);
      qgemm<decltype(tag)>(act_, packed_, stage(), y);
    });
  }

  /// @brief uint8 in, uint8 out.
  template <class Arch = arch::automatic>
  void forward(TensorView<const std::uint8_t, 2> x, quant::AffineParams out, TensorView<std::uint8_t, 2> y) {
    check_input(x.shape());
    simd::with_arch<Arch>(name(), [&](auto tag) {
      pack_activations<decltype(tag)>(x, input_, act_);
      qgemm<decltype(tag)>(act_, packed_, stage(), out, y);
    });
  }

 private:
  void init(std::span<const float> bias, quant::AffineParams input, bool relu) {
    const std::string layer = minnow::detail::concat("QuantizedLinear '", packed_.name, "'");
    if (!bias.empty() && static_cast<index_t>(bias.size()) != packed_.n) {
      throw shape_error(minnow::detail::concat(layer, ": ", bias.size(), " biases for ", packed_.n, " output channels"));
    }
    for (std::size_t j = 0; j < bias.size(); ++j) {
      if (!std::isfinite(bias[j])) {
        throw value_error(minnow::detail::concat(layer, ": bias ", j, " is ", bias[j]));
      }
    }
    quant::check_affine_params(input, quant::QRange{0, 255}, (layer + " (input)").c_str());
    bias_.assign(bias.begin(), bias.end());
    input_ = input;
    relu_ = relu;
  }

  [[nodiscard]] OutputStage stage() const noexcept { return OutputStage{{}, bias_, relu_}; }

  void check_input(const Shape<2>& shape) const {
    if (shape[1] != packed_.k) {
      throw shape_error(minnow::detail::concat("QuantizedLinear '", packed_.name, "': input is ", to_string(shape),
                                               ", expected [batch, ", packed_.k, "]"));
    }
  }

  PackedWeights packed_;
  std::vector<float> bias_;
  quant::AffineParams input_;
  bool relu_ = false;
  QuantizedActivations act_;  // reused across calls: its buffers grow once
};

}  // namespace minnow::infer
