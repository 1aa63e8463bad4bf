#pragma once
/// @file nn/sequential.hpp
/// @brief A chain of named layers with the model-level seam: `parameters()`.

#include <minnow/nn/activations.hpp>
#include <minnow/nn/conv2d.hpp>
#include <minnow/nn/conv_relu_pool.hpp>
#include <minnow/nn/layer.hpp>
#include <minnow/nn/maxpool2d.hpp>

#include <concepts>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace minnow::nn {

/// @brief Layers applied in order. Each layer has a name ("conv1"); its parameters are exposed as
/// "conv1.weight", "conv1.bias", so hooks and checkpoints address them without knowing the layer types.
///
/// For float, `forward` and `backward` run each Conv2d → ReLU → 2×2 MaxPool2d triple as one fused step
/// (nn/conv_relu_pool.hpp) when the convolution allows it; the layers, their names and parameters stay as
/// they are. Call `forward`/`backward` on the Sequential, not on its layers, after a fused forward.
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
    layers_.push_back(Entry{std::move(name), std::move(owned)});
    layers_changed();
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
    layers_changed();
    return ref;
  }

  /// Inserts a layer right after the layer named `after`. @throws value_error as insert, or for an unknown `after`.
  template <std::derived_from<Layer<T>> L>
  L& insert_after(std::string_view after, std::string name, L layer) {
    return insert(index_of(after) + 1, std::move(name), std::move(layer));
  }

  /// Removes the layer named `name` (e.g. a BatchNorm2d folded into its convolution); the others keep their
  /// names. @throws value_error naming an unknown layer.
  void remove(std::string_view name) {
    layers_.erase(layers_.begin() + static_cast<std::ptrdiff_t>(index_of(name)));
    layers_changed();
  }

  /// Removes the layer named `name` and hands it over, its parameters where they were (e.g. to wrap it in a
  /// fused layer). @throws value_error naming an unknown layer.
  std::unique_ptr<Layer<T>> release(std::string_view name) {
    const auto at = layers_.begin() + static_cast<std::ptrdiff_t>(index_of(name));
    std::unique_ptr<Layer<T>> layer = std::move(at->layer);
    layers_.erase(at);
    layers_changed();
    return layer;
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
    for (std::size_t i = 0; i < layers_.size();) {
      Entry& entry = layers_[i];
      entry.ran_fused = fusion_ && entry.fused && entry.fused->applicable();
      if constexpr (std::is_same_v<T, float>) {
        if (entry.ran_fused) {
          x = entry.fused->forward(x);
          i += 3;
          continue;
        }
      }
      x = entry.layer->forward(x, mode);
      ++i;
    }
    return x;
  }

  /// Backpropagates dL/d(output) of the last forward; writes every parameter's gradient. Returns dL/dx of
  /// the network's input with set_input_grad(true), else an empty view (the first layer then skips it).
  /// The returned view lives in the first layer's buffer until the next backward.
  Activations<T> backward(Activations<T> dy) {
    for (std::size_t i = layers_.size(); i-- > 0;) {
      if constexpr (std::is_same_v<T, float>) {
        // Layer i is the pool of a triple that ran fused.
        if (i >= 2 && layers_[i - 2].ran_fused) {
          Entry& conv = layers_[i - 2];
          dy = conv.fused->backward(dy, conv.layer->needs_input_grad());
          i -= 2;
          continue;
        }
      }
      dy = layers_[i].layer->backward(dy);
    }
    return input_grad_ ? dy : Activations<T>();
  }

  /// Whether backward computes and returns dL/dx of the network's input (off by default: a training step
  /// does not need it, and the first layer's input gradient is skipped for speed). On for a network whose
  /// input is itself trained or fed by another model (adversarial examples, a model in front of this one).
  void set_input_grad(bool enabled) noexcept {
    input_grad_ = enabled;
    if (!layers_.empty()) layers_.front().layer->set_needs_input_grad(enabled);
  }
  [[nodiscard]] bool input_grad() const noexcept { return input_grad_; }

  /// Fusion of Conv2d → ReLU → 2×2 MaxPool2d triples (float only; on by default). Off, every layer runs
  /// on its own, as the reference the fused step is tested against.
  void set_fusion(bool enabled) noexcept { fusion_ = enabled; }
  [[nodiscard]] bool fusion() const noexcept { return fusion_; }
  /// Triples the next forward will fuse.
  [[nodiscard]] std::size_t fused_steps() const noexcept {
    std::size_t n = 0;
    for (const auto& entry : layers_) n += fusion_ && entry.fused && entry.fused->applicable() ? 1 : 0;
    return n;
  }

  /// Every parameter as `{name, shape, value view, gradient view}`, in layer order.
  [[nodiscard]] std::vector<Parameter<T>> parameters() {
    std::vector<Parameter<T>> out;
    for (auto& entry : layers_) entry.layer->collect_parameters(entry.name + ".", out);
    return out;
  }

  /// Every buffer (running statistics) as `{name, shape, value view}`, in layer order.
  [[nodiscard]] std::vector<Buffer<T>> buffers() {
    std::vector<Buffer<T>> out;
    for (auto& entry : layers_) entry.layer->collect_buffers(entry.name + ".", out);
    return out;
  }

  /// What PyTorch's `state_dict` holds: every parameter's value, then every buffer, by name. Files store this.
  [[nodiscard]] std::vector<Buffer<T>> state() {
    std::vector<Buffer<T>> out;
    for (const auto& p : parameters()) out.push_back({p.name, p.shape, p.value});
    for (auto& b : buffers()) out.push_back(std::move(b));
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
    std::unique_ptr<ConvReluPool> fused{};  // set on a Conv2d<float> that a ReLU and a MaxPool2d follow
    bool ran_fused = false;                 // whether the last forward ran this layer's triple fused
  };

  // After an add, insert or remove: only the first layer skips its input gradient (unless set_input_grad),
  // and the triples are found anew.
  void layers_changed() {
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      layers_[i].layer->set_needs_input_grad(i != 0 || input_grad_);
      layers_[i].fused.reset();
      layers_[i].ran_fused = false;
    }
    if constexpr (std::is_same_v<T, float>) {
      for (std::size_t i = 0; i + 2 < layers_.size(); ++i) {
        auto* conv = dynamic_cast<Conv2d<float>*>(layers_[i].layer.get());
        auto* relu = dynamic_cast<ReLU<float>*>(layers_[i + 1].layer.get());
        auto* pool = dynamic_cast<MaxPool2d<float>*>(layers_[i + 2].layer.get());
        if (conv != nullptr && relu != nullptr && pool != nullptr) layers_[i].fused = std::make_unique<ConvReluPool>(*conv, *pool);
      }
    }
  }

  std::vector<Entry> layers_;
  bool fusion_ = true;
  bool input_grad_ = false;
};

}  // namespace minnow::nn
