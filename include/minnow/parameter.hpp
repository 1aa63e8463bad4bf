#pragma once
/// @file parameter.hpp
/// @brief The seam between models and compression: a parameter as a name, a shape and flat views of
/// its value and gradient, plus the optimizer state kept for it.
///
/// Pruning, quantization and user code see only these. They never need to know which layer a weight
/// belongs to, so they work with minnow's layers and with any other training loop that can hand out
/// pointers to its weights.

#include <minnow/error.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

namespace minnow {

/// @brief A named, trainable tensor: `{name, shape, value view, gradient view}`.
/// @tparam T scalar type.
///
/// The views are flat (all elements, row-major); `value_as<R>()` / `grad_as<R>()` give them their
/// logical shape, e.g. `[out, in, kh, kw]` for a convolution weight.
template <class T>
struct Parameter {
  std::string name;                 ///< dotted path, e.g. "conv1.weight"
  std::vector<index_t> shape;       ///< logical shape, outermost first
  TensorView<T, 1> value;           ///< the weights
  TensorView<T, 1> grad;            ///< dL/d(weights), same size as value

  /// The value with its logical shape. @throws shape_error when R differs from the parameter's rank.
  template <std::size_t R>
  [[nodiscard]] TensorView<T, R> value_as() const {
    return value.reshape(shape_as<R>());
  }
  /// The gradient with its logical shape. @throws shape_error when R differs from the parameter's rank.
  template <std::size_t R>
  [[nodiscard]] TensorView<T, R> grad_as() const {
    return grad.reshape(shape_as<R>());
  }

  template <std::size_t R>
  [[nodiscard]] Shape<R> shape_as() const {
    if (shape.size() != R) {
      throw shape_error(detail::concat("parameter '", name, "' has rank ", shape.size(), ", not ", R));
    }
    Shape<R> out{};
    std::copy(shape.begin(), shape.end(), out.begin());
    return out;
  }
};

/// @brief One per-element buffer an optimizer keeps for a parameter (momentum, Adam moments), shaped
/// like the parameter. Pruning zeroes these where weights are masked, so a pruned weight cannot come back.
template <class T>
struct StateView {
  std::string name;  ///< e.g. "momentum_buffer", "exp_avg", "exp_avg_sq"
  TensorView<T, 1> view;
};

/// @brief A named tensor a layer keeps beside its parameters that training updates without gradients
/// (BatchNorm's running mean and variance): PyTorch's buffers. Checkpoints and safetensors files store them
/// with the parameters, under PyTorch's `state_dict` names ("bn1.running_mean").
template <class T>
struct Buffer {
  std::string name;            ///< dotted path, e.g. "bn1.running_var"
  std::vector<index_t> shape;  ///< logical shape, outermost first
  TensorView<T, 1> value;      ///< flat, row-major
};

/// Finds a parameter by name. @throws value_error naming the missing name.
template <class T>
[[nodiscard]] const Parameter<T>& find_parameter(const std::vector<Parameter<T>>& parameters, std::string_view name) {
  const auto it = std::find_if(parameters.begin(), parameters.end(), [&](const Parameter<T>& p) { return p.name == name; });
  if (it == parameters.end()) {
    throw value_error(detail::concat("no parameter named '", name, "'"));
  }
  return *it;
}

/// Total number of scalars in a parameter list.
template <class T>
[[nodiscard]] index_t parameter_count(const std::vector<Parameter<T>>& parameters) {
  index_t n = 0;
  for (const auto& p : parameters) n += p.value.size();
  return n;
}

/// The weight matrices and kernels among `parameters` (rank ≥ 2; biases are rank 1): what pruning
/// usually ranks and what weight quantizers act on.
template <class T>
[[nodiscard]] std::vector<Parameter<T>> weight_parameters(const std::vector<Parameter<T>>& parameters) {
  std::vector<Parameter<T>> weights;
  for (const auto& p : parameters) {
    if (p.shape.size() > 1) weights.push_back(p);
  }
  return weights;
}

}  // namespace minnow
