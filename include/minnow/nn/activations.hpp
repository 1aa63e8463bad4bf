#pragma once
/// @file nn/activations.hpp
/// @brief Layers without parameters that reshape or act element-wise: ReLU and Flatten.

#include <minnow/nn/layer.hpp>

#include <string>

namespace minnow::nn {

/// @brief `y = max(x, 0)`; NaN propagates. The gradient is `dy` where x > 0 and 0 elsewhere
/// (0 at x = 0, as in PyTorch).
template <class T>
class ReLU final : public Layer<T> {
 public:
  [[nodiscard]] std::string describe() const override { return "ReLU()"; }
  [[nodiscard]] Shape<4> output_shape(const Shape<4>& input) const override { return input; }

  Activations<T> forward(Activations<T> x, Mode /*mode*/) override {
    y_.resize(x.shape());
    // Only x < 0 is replaced, so -0 stays -0 and NaN stays NaN, bit for bit like torch.relu.
    y_.array() = (x.array() < T(0)).select(T(0), x.array());
    return y_.view();
  }

  Activations<T> backward(Activations<T> dy) override {
    check_backward_shape("ReLU", y_.shape(), dy.shape());
    dx_.resize(dy.shape());
    dx_.array() = (y_.array() > T(0)).select(dy.array(), T(0));
    return dx_.view();
  }

 private:
  Tensor<T, 4> y_, dx_;
};

/// @brief [N, C, H, W] → [N, C·H·W, 1, 1]: a view of the same memory, no copy.
template <class T>
class Flatten final : public Layer<T> {
 public:
  [[nodiscard]] std::string describe() const override { return "Flatten()"; }
  [[nodiscard]] Shape<4> output_shape(const Shape<4>& input) const override {
    return {input[0], input[1] * input[2] * input[3], 1, 1};
  }
  Activations<T> forward(Activations<T> x, Mode /*mode*/) override {
    in_shape_ = x.shape();
    return x.reshape(output_shape(in_shape_));
  }
  Activations<T> backward(Activations<T> dy) override {
    check_backward_shape("Flatten", output_shape(in_shape_), dy.shape());
    return dy.reshape(in_shape_);
  }

 private:
  Shape<4> in_shape_{};
};

}  // namespace minnow::nn
