#pragma once
/// @file nn/dropout.hpp
/// @brief Dropout (PyTorch's nn.Dropout), seeded so that a run repeats exactly.

#include <minnow/nn/init.hpp>
#include <minnow/nn/layer.hpp>

#include <cstdint>
#include <random>
#include <string>

namespace minnow::nn {

/// @brief In training mode each element is zeroed with probability p and the survivors are scaled by
/// 1 / (1 − p), so the expected output equals the input; in eval mode the layer is the identity. The masks come
/// from the layer's own generator, seeded at construction: the same seed and the same sequence of batches give
/// the same masks (not PyTorch's, whose generator differs). p = 1 zeroes everything, as in PyTorch.
template <class T>
class Dropout final : public Layer<T> {
 public:
  /// @throws value_error when p is outside [0, 1].
  explicit Dropout(double p = 0.5, std::uint64_t seed = 0) : p_(p), rng_(seed) {
    if (!(p >= 0.0 && p <= 1.0)) throw value_error(minnow::detail::concat("Dropout: p ", p, " must lie in [0, 1]"));
  }

  [[nodiscard]] std::string describe() const override { return minnow::detail::concat("Dropout(p=", p_, ")"); }
  [[nodiscard]] Shape<4> output_shape(const Shape<4>& input) const override { return input; }

  Activations<T> forward(Activations<T> x, Mode mode) override {
    training_ = mode == Mode::train && p_ > 0.0;
    out_shape_ = x.shape();
    if (!training_) return x;  // the identity: no copy
    const T scale = p_ < 1.0 ? static_cast<T>(1.0 / (1.0 - p_)) : T(0);
    mask_.resize(x.shape());
    y_.resize(x.shape());
    for (index_t i = 0; i < x.size(); ++i) mask_.data()[i] = uniform01(rng_) >= p_ ? scale : T(0);
    y_.array() = x.array() * mask_.array();
    return y_.view();
  }

  Activations<T> backward(Activations<T> dy) override {
    check_backward_shape("Dropout", out_shape_, dy.shape());
    if (!training_) return dy;
    dx_.resize(dy.shape());
    dx_.array() = dy.array() * mask_.array();
    return dx_.view();
  }

  [[nodiscard]] double p() const noexcept { return p_; }
  /// The last training forward's multipliers: 0 where dropped, 1 / (1 − p) where kept.
  [[nodiscard]] TensorView<const T, 4> mask() const noexcept { return mask_.view(); }

 private:
  double p_;
  std::mt19937_64 rng_;
  bool training_ = false;
  Shape<4> out_shape_{};
  Tensor<T, 4> mask_, y_, dx_;
};

}  // namespace minnow::nn
