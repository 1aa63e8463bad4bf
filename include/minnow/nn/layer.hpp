#pragma once
/// @file nn/layer.hpp
/// @brief The interface every layer implements: shape inference, forward, backward, parameters.

#include <minnow/parameter.hpp>
#include <minnow/tensor.hpp>

#include <string>
#include <vector>

namespace minnow::nn {

/// Training mode switches layers whose behaviour differs between training and inference.
enum class Mode { train, eval };

/// Activations are NCHW batches. Layers that see features (Linear) read [N, C, H, W] as
/// [N, C*H*W] and write [N, F, 1, 1], so one rank serves the whole network without copies.
template <class T>
using Activations = TensorView<const T, 4>;

/// @brief A layer of a feed-forward network.
///
/// `forward` remembers what `backward` needs (the input view, pooling indices, ...) and returns a view of
/// an output buffer the layer owns; it stays valid until the next forward. `backward` takes dL/dy for the
/// last forward, *writes* (does not accumulate) the parameters' gradients, and returns dL/dx.
/// Work buffers are reused, so a step allocates nothing once the largest batch has been seen.
template <class T>
class Layer {
 public:
  virtual ~Layer() = default;

  /// A short description, e.g. "Conv2d(1, 64, kernel=3, stride=1, padding=1)".
  [[nodiscard]] virtual std::string describe() const = 0;

  /// The output shape for an input shape. @throws shape_error naming the layer when the input does not fit.
  [[nodiscard]] virtual Shape<4> output_shape(const Shape<4>& input) const = 0;

  virtual Activations<T> forward(Activations<T> x, Mode mode) = 0;
  virtual Activations<T> backward(Activations<T> dy) = 0;

  /// Appends this layer's parameters, named `prefix + "weight"` etc.
  virtual void collect_parameters(const std::string& prefix, std::vector<Parameter<T>>& out) {
    (void)prefix;
    (void)out;
  }

  /// Appends this layer's buffers (state without gradients, e.g. BatchNorm's running statistics).
  virtual void collect_buffers(const std::string& prefix, std::vector<Buffer<T>>& out) {
    (void)prefix;
    (void)out;
  }

  /// When false, backward may skip dL/dx (the first layer of a network: nobody needs it) and returns an empty view.
  void set_needs_input_grad(bool needed) noexcept { needs_input_grad_ = needed; }
  [[nodiscard]] bool needs_input_grad() const noexcept { return needs_input_grad_; }

 protected:
  bool needs_input_grad_ = true;
};

/// @brief Throws shape_error when the gradient a `backward` call got (`given`) is not shaped like the
/// output of the last `forward` (`expected`): "Linear.backward: gradient [3, 3, 1, 1] does not match the
/// last output [2, 3, 1, 1]". For every Layer, minnow's own and a user's.
inline void check_backward_shape(const char* layer, const Shape<4>& expected, const Shape<4>& given) {
  if (expected != given) {
    throw shape_error(minnow::detail::concat(layer, ".backward: gradient ", to_string(given),
                                             " does not match the last output ", to_string(expected)));
  }
}
}  // namespace minnow::nn
