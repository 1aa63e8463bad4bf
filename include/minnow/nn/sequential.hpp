#pragma once
/// @file nn/sequential.hpp
/// @brief A chain of named layers with the model-level seam: `parameters()`.

#include <minnow/nn/layer.hpp>

#include <concepts>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace minnow::nn {

/// @brief Layers applied in order. Each layer has a name ("conv1"); its parameters are exposed as
/// "conv1.weight", "conv1.bias", so hooks and checkpoints address them without knowing the layer types.
template <class T>
class Sequential {
 public:
  /// Appends a layer. An empty name gets the layer's index, as in PyTorch ("0", "1", ...).
  /// @throws value_error on a duplicate name.
  template <std::derived_from<Layer<T>> L>
  L& add(std::string name, L layer) {
    if (name.empty()) name = std::to_string(layers_.size());
    for (const auto& entry : layers_) {
      if (entry.name == name) throw value_error(minnow::detail::concat("Sequential: duplicate layer name '", name, "'"));
    }
    auto owned = std::make_unique<L>(std::move(layer));
    L& ref = *owned;
    layers_.push_back({std::move(name), std::move(owned)});
    for (std::size_t i = 0; i < layers_.size(); ++i) layers_[i].layer->set_needs_input_grad(i != 0);
    return ref;
  }

  /// Inserts a layer at `position` (0 = first, size() = last), keeping every other name: e.g. a
  /// fake-quantizer after "relu1" or at the input. @throws value_error for a position past the end or a
  /// duplicate or empty name.
  template <std::derived_from<Layer<T>> L>
  L& insert(std::size_t position, std::string name, L layer) {
    if (name.empty()) throw value_error("Sequential: an inserted layer needs a name");
    if (position > layers_.size()) {
      throw value_error(minnow::detail::concat("Sequential: insert position ", position, " is past the ", layers_.size(), " layers"));
    }
    for (const auto& entry : layers_) {
      if (entry.name == name) throw value_error(minnow::detail::concat("Sequential: duplicate layer name '", name, "'"));
    }
    auto owned = std::make_unique<L>(std::move(layer));
    L& ref = *owned;
    layers_.insert(layers_.begin() + static_cast<std::ptrdiff_t>(position), Entry{std::move(name), std::move(owned)});
    for (std::size_t i = 0; i < layers_.size(); ++i) layers_[i].layer->set_needs_input_grad(i != 0);
    return ref;
  }

  /// Inserts a layer right after the layer named `after`. @throws value_error as insert, or for an unknown `after`.
  template <std::derived_from<Layer<T>> L>
  L& insert_after(std::string_view after, std::string name, L layer) {
    return insert(index_of(after) + 1, std::move(name), std::move(layer));
  }

  /// The position of the layer named `name`. @throws value_error naming an unknown layer.
  [[nodiscard]] std::size_t index_of(std::string_view name) const {
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      if (layers_[i].name == name) return i;
    }
    throw value_error(minnow::detail::concat("Sequential: no layer named '", name, "'"));
  }

  /// The output shape for an input shape, checking every layer on the way.
  [[nodiscard]] Shape<4> output_shape(Shape<4> shape) const {
    for (const auto& entry : layers_) shape = entry.layer->output_shape(shape);
    return shape;
  }

  /// Runs every layer; the returned view lives in the last layer's buffer until the next forward.
  Activations<T> forward(Activations<T> x, Mode mode = Mode::eval) {
    for (auto& entry : layers_) x = entry.layer->forward(x, mode);
    return x;
  }

  /// Backpropagates dL/d(output) of the last forward; writes every parameter's gradient.
  void backward(Activations<T> dy) {
    for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) dy = it->layer->backward(dy);
  }

  /// Every parameter as `{name, shape, value view, gradient view}`, in layer order.
  [[nodiscard]] std::vector<Parameter<T>> parameters() {
    std::vector<Parameter<T>> out;
    for (auto& entry : layers_) entry.layer->collect_parameters(entry.name + ".", out);
    return out;
  }

  /// One line per layer: "conv1: Conv2d(1, 64, kernel=3, stride=1, padding=1)".
  [[nodiscard]] std::string describe() const {
    std::string out;
    for (const auto& entry : layers_) out += entry.name + ": " + entry.layer->describe() + "\n";
    return out;
  }

  [[nodiscard]] std::size_t size() const noexcept { return layers_.size(); }
  [[nodiscard]] Layer<T>& layer(std::size_t i) { return *layers_.at(i).layer; }
  [[nodiscard]] const std::string& layer_name(std::size_t i) const { return layers_.at(i).name; }

 private:
  struct Entry {
    std::string name;
    std::unique_ptr<Layer<T>> layer;
  };
  std::vector<Entry> layers_;
};

}  // namespace minnow::nn
