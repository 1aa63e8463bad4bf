#pragma once
/// @file infer/integer_model.hpp
/// @brief What an integer network computes, as plain data: the input shape and quantizer, then a list of
/// int8 Conv2d / Linear layers (each with its fused ReLU and output quantizer), uint8 max pools and
/// flattens. `pipeline::to_integer_model` builds one from a fake-quantized Sequential,
/// `pipeline::IntegerNetwork` runs one, and io/compressed_model.hpp stores one in a file: the three meet
/// here so that a network read back from disk is the same value as the one converted in memory.

#include <minnow/error.hpp>
#include <minnow/infer/int_tensor.hpp>
#include <minnow/quant/concepts.hpp>
#include <minnow/quant/fake_quantize.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace minnow::infer {

/// An int8 convolution (square kernel) on uint8 input.
struct IntegerConv {
  Int8Weights weights;                         ///< `[out × in·k·k]`, per-row parameters; weights.name names the layer's weight
  index_t in_channels = 0, kernel = 0, stride = 1, padding = 0;
  std::vector<float> bias;                     ///< `out` floats, real units
  bool relu = false;                           ///< ReLU fused into the output stage
  std::optional<quant::AffineParams> output;   ///< uint8 output parameters; none: float output (the last layer)
  bool pool2 = false;                          ///< a 2×2 stride-2 max pool fused after the requantization
};

/// An int8 fully connected layer on the flattened uint8 input.
struct IntegerLinear {
  Int8Weights weights;                         ///< `[out × in]`
  std::vector<float> bias;
  bool relu = false;
  std::optional<quant::AffineParams> output;
};

/// Max pooling on uint8 activations (no padding, floor mode).
struct IntegerMaxPool {
  index_t kernel = 2, stride = 2;
};

/// NCHW → `[N, C·H·W]`; free.
struct IntegerFlatten {};

using IntegerLayer = std::variant<IntegerConv, IntegerLinear, IntegerMaxPool, IntegerFlatten>;

/// @brief A whole integer network as data.
struct IntegerModel {
  Shape<3> input_shape{};                 ///< `[C, H, W]` of one sample; all zero when not declared
  quant::AffineParams input{};            ///< the uint8 parameters the float input is quantized with
  std::vector<IntegerLayer> layers;

  /// True when any extent is set: check_integer_model then requires all three to be positive.
  [[nodiscard]] bool has_input_shape() const noexcept { return input_shape != Shape<3>{}; }
  /// A deep copy (tensors copy only explicitly).
  [[nodiscard]] IntegerModel clone() const {
    IntegerModel out{input_shape, input, {}};
    const auto copy = [](const Int8Weights& w) { return Int8Weights{w.name, w.values.clone(), w.params, w.grid}; };
    for (const auto& layer : layers) {
      if (const auto* c = std::get_if<IntegerConv>(&layer)) {
        out.layers.emplace_back(IntegerConv{copy(c->weights), c->in_channels, c->kernel, c->stride, c->padding, c->bias, c->relu,
                                            c->output, c->pool2});
      } else if (const auto* l = std::get_if<IntegerLinear>(&layer)) {
        out.layers.emplace_back(IntegerLinear{copy(l->weights), l->bias, l->relu, l->output});
      } else {
        out.layers.push_back(std::holds_alternative<IntegerMaxPool>(layer) ? IntegerLayer{std::get<IntegerMaxPool>(layer)}
                                                                           : IntegerLayer{IntegerFlatten{}});
      }
    }
    return out;
  }
};

/// The layer's name: its weight's name without ".weight", or "maxpool" / "flatten".
[[nodiscard]] inline std::string layer_name(const IntegerLayer& layer) {
  if (const auto* c = std::get_if<IntegerConv>(&layer)) return c->weights.name.substr(0, c->weights.name.rfind('.'));
  if (const auto* l = std::get_if<IntegerLinear>(&layer)) return l->weights.name.substr(0, l->weights.name.rfind('.'));
  return std::holds_alternative<IntegerMaxPool>(layer) ? "maxpool" : "flatten";
}

namespace detail {

inline void check_uint8_params(quant::AffineParams p, const std::string& what) {
  quant::check_affine_params(p, quant::QRange{0, 255}, what.c_str());
}

inline void check_bias(const std::vector<float>& bias, index_t rows, const std::string& layer) {
  if (static_cast<index_t>(bias.size()) != rows) {
    throw shape_error(minnow::detail::concat("integer layer '", layer, "': ", bias.size(), " biases for ", rows, " output channels"));
  }
  for (std::size_t j = 0; j < bias.size(); ++j) {
    if (!std::isfinite(bias[j])) throw value_error(minnow::detail::concat("integer layer '", layer, "': bias ", j, " is ", bias[j]));
  }
}

/// The float multiplier and offset of each output channel, as the kernels' output stage computes them
/// (s_in·s_w / s_out and bias / s_out; s_out = 1 for float output), must be finite: scales that are each
/// valid can still overflow together.
inline void check_output_stage(quant::AffineParams in, const Int8Weights& weights, const std::vector<float>& bias,
                               const std::optional<quant::AffineParams>& output, const std::string& layer) {
  const double divisor = output ? static_cast<double>(output->scale) : 1.0;
  for (std::size_t j = 0; j < weights.params.size(); ++j) {
    const auto multiplier = static_cast<float>(static_cast<double>(in.scale) * static_cast<double>(weights.params[j].scale) / divisor);
    const auto offset = static_cast<float>(static_cast<double>(bias[j]) / divisor);
    if (!std::isfinite(multiplier) || !std::isfinite(offset) || multiplier == 0.0f) {
      throw value_error(minnow::detail::concat("integer layer '", layer, "': channel ", j, " has output multiplier ", multiplier,
                                               " and offset ", offset, " (input scale ", in.scale, ", weight scale ",
                                               weights.params[j].scale, ", output scale ", divisor,
                                               "); both must be finite and the multiplier non-zero"));
    }
  }
}

}  // namespace detail

/// @brief Checks that `model` is well formed and, when it declares its input shape, that the layers chain:
/// every parameter valid, each layer's input the previous layer's output, only the last layer with float
/// output. Returns the output features per sample (0 when the input shape is not declared).
/// @throws value_error or shape_error naming the layer and what does not fit.
inline index_t check_integer_model(const IntegerModel& model) {
  detail::check_uint8_params(model.input, "integer model input");
  const bool known = model.has_input_shape();
  if (known && (model.input_shape[0] <= 0 || model.input_shape[1] <= 0 || model.input_shape[2] <= 0)) {
    throw shape_error(minnow::detail::concat("integer model: input shape ", to_string(model.input_shape), " must be positive"));
  }
  Shape<3> shape = model.input_shape;  // [C, H, W]; a flattened one is [C·H·W, 1, 1]
  // Every activation's element count is bounded, so no product of its extents can overflow.
  constexpr index_t max_elements = index_t{1} << 34;
  const auto check_size = [&](const std::string& where) {
    index_t count = 1;
    for (const index_t extent : shape) {
      if (extent > max_elements / std::max<index_t>(count, 1)) {
        throw shape_error(minnow::detail::concat("integer model: ", where, " ", to_string(shape), " has more than 2^34 elements"));
      }
      count *= extent;
    }
  };
  if (known) check_size("the input");
  bool float_output = false;
  quant::AffineParams input = model.input;  // the quantizer of the current layer's input
  for (std::size_t i = 0; i < model.layers.size(); ++i) {
    const IntegerLayer& layer = model.layers[i];
    const std::string name = layer_name(layer);
    if (float_output) {
      throw value_error(minnow::detail::concat("integer model: layer ", i, " ('", name, "') follows a layer with float output; ",
                                               "only the last layer may produce float output"));
    }
    const auto mismatch = [&](const std::string& expected) {
      return shape_error(minnow::detail::concat("integer model: layer ", i, " ('", name, "') expects ", expected,
                                                " but its input is ", to_string(shape)));
    };
    if (const auto* c = std::get_if<IntegerConv>(&layer)) {
      const index_t out = c->weights.rows();
      if (c->in_channels <= 0 || c->kernel <= 0 || c->stride <= 0 || c->padding < 0 || out <= 0 ||
          c->kernel > (index_t{1} << 16) || c->padding > (index_t{1} << 16) || c->in_channels > (index_t{1} << 24)) {
        throw value_error(minnow::detail::concat("integer model: conv '", name, "' has an invalid geometry (in ", c->in_channels,
                                                 ", out ", out, ", kernel ", c->kernel, ", stride ", c->stride, ", padding ",
                                                 c->padding, ")"));
      }
      if (c->weights.cols() != c->in_channels * c->kernel * c->kernel) {
        throw shape_error(minnow::detail::concat("integer model: conv '", name, "' has ", c->weights.cols(),
                                                 " taps per output channel, expected in·k·k = ",
                                                 c->in_channels * c->kernel * c->kernel));
      }
      detail::check_weight_params(c->weights.name, out, c->weights.params, c->weights.grid);
      detail::check_bias(c->bias, out, name);
      if (c->output) detail::check_uint8_params(*c->output, "integer model: conv '" + name + "' output");
      detail::check_output_stage(input, c->weights, c->bias, c->output, name);
      if (c->output) input = *c->output;
      if (c->pool2 && !c->output) {
        throw value_error(minnow::detail::concat("integer model: conv '", name, "' fuses a pool but has float output"));
      }
      float_output = !c->output;
      if (known) {
        if (shape[0] != c->in_channels || shape[1] + 2 * c->padding < c->kernel || shape[2] + 2 * c->padding < c->kernel) {
          throw mismatch(minnow::detail::concat("[", c->in_channels, ", H, W] with H, W + 2·", c->padding, " >= ", c->kernel));
        }
        shape = {out, (shape[1] + 2 * c->padding - c->kernel) / c->stride + 1, (shape[2] + 2 * c->padding - c->kernel) / c->stride + 1};
        if (c->pool2) {
          if (shape[1] < 2 || shape[2] < 2) throw mismatch("an output of at least 2×2 for its fused pool");
          shape = {shape[0], shape[1] / 2, shape[2] / 2};
        }
        check_size("the output of conv '" + name + "'");
      }
    } else if (const auto* l = std::get_if<IntegerLinear>(&layer)) {
      const index_t out = l->weights.rows();
      if (out <= 0 || l->weights.cols() <= 0) {
        throw value_error(minnow::detail::concat("integer model: linear '", name, "' has shape [", out, " × ", l->weights.cols(), "]"));
      }
      detail::check_weight_params(l->weights.name, out, l->weights.params, l->weights.grid);
      detail::check_bias(l->bias, out, name);
      if (l->output) detail::check_uint8_params(*l->output, "integer model: linear '" + name + "' output");
      detail::check_output_stage(input, l->weights, l->bias, l->output, name);
      if (l->output) input = *l->output;
      float_output = !l->output;
      if (known) {
        if (shape[0] * shape[1] * shape[2] != l->weights.cols()) {
          throw mismatch(minnow::detail::concat(l->weights.cols(), " input features"));
        }
        shape = {out, 1, 1};
      }
    } else if (const auto* p = std::get_if<IntegerMaxPool>(&layer)) {
      if (p->kernel <= 0 || p->stride <= 0 || p->kernel > (index_t{1} << 16)) {
        throw value_error(minnow::detail::concat("integer model: maxpool (layer ", i, ") has kernel ", p->kernel, ", stride ", p->stride));
      }
      if (known) {
        if (shape[1] < p->kernel || shape[2] < p->kernel) throw mismatch(minnow::detail::concat("at least ", p->kernel, "×", p->kernel));
        shape = {shape[0], (shape[1] - p->kernel) / p->stride + 1, (shape[2] - p->kernel) / p->stride + 1};
      }
    } else if (known) {
      shape = {shape[0] * shape[1] * shape[2], 1, 1};
    }
  }
  return known ? shape[0] * shape[1] * shape[2] : 0;
}

}  // namespace minnow::infer
