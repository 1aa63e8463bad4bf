#pragma once
/// @file nn/batchnorm2d.hpp
/// @brief Batch normalization over the channels of NCHW batches (PyTorch's nn.BatchNorm2d).

#include <minnow/detail/parallel.hpp>
#include <minnow/nn/layer.hpp>

#include <cmath>
#include <string>
#include <vector>

namespace minnow::nn {

/// @brief `y = (x − μ_c) / √(σ²_c + eps) · γ_c + β_c` per channel c.
///
/// In training mode μ and σ² are the batch's mean and biased variance over N·H·W, and the running statistics
/// move towards them: `running = (1 − momentum)·running + momentum·batch`, with the unbiased variance for
/// `running_var`, as in PyTorch. In eval mode the running statistics normalize. Parameters "weight" (γ, ones)
/// and "bias" (β, zeros) exist when `affine`; buffers "running_mean" (zeros) and "running_var" (ones) always.
/// PyTorch's cumulative average (`momentum=None`) and its `num_batches_tracked` counter are not provided.
template <class T>
class BatchNorm2d final : public Layer<T> {
 public:
  /// @throws value_error when channels is not positive, eps not positive and finite, or momentum outside [0, 1].
  explicit BatchNorm2d(index_t channels, double eps = 1e-5, double momentum = 0.1, bool affine = true)
      : channels_(channels), eps_(eps), momentum_(momentum), affine_(affine) {
    if (channels <= 0 || !(eps > 0.0) || !std::isfinite(eps) || !(momentum >= 0.0 && momentum <= 1.0)) {
      throw value_error(minnow::detail::concat("BatchNorm2d: channels ", channels, " must be positive, eps ", eps,
                                               " positive and finite, momentum ", momentum, " in [0, 1]"));
    }
    weight_.resize({channels});
    weight_.array() = T(1);
    weight_grad_.resize({channels});
    bias_.resize({channels});
    bias_grad_.resize({channels});
    running_mean_.resize({channels});
    running_var_.resize({channels});
    running_var_.array() = T(1);
    mean_.resize({channels});
    inv_std_.resize({channels});
  }

  [[nodiscard]] std::string describe() const override {
    return minnow::detail::concat("BatchNorm2d(", channels_, ", eps=", eps_, ", momentum=", momentum_,
                                  ", affine=", affine_ ? "true" : "false", ")");
  }

  [[nodiscard]] Shape<4> output_shape(const Shape<4>& input) const override {
    if (input[1] != channels_) {
      throw shape_error(minnow::detail::concat(describe(), ": input ", to_string(input), " has ", input[1],
                                               " channels, expected ", channels_));
    }
    return input;
  }

  Activations<T> forward(Activations<T> x, Mode mode) override {
    y_.resize(output_shape(x.shape()));
    x_ = x;
    mode_ = mode;
    const index_t n = x.dim(0), plane = x.dim(2) * x.dim(3), count = n * plane;
    if (mode == Mode::train && count < 2) {
      throw value_error(minnow::detail::concat(describe(), ": training needs more than one value per channel, input ",
                                               to_string(x.shape())));
    }
    for_channels(x.size(), [&](index_t c) {
      double mean, inv_std;
      if (mode == Mode::train) {
        double sum = 0.0;
        for_plane(x.data(), c, [&](T v) { sum += static_cast<double>(v); });
        mean = sum / static_cast<double>(count);
        double squares = 0.0;
        for_plane(x.data(), c, [&](T v) { squares += (static_cast<double>(v) - mean) * (static_cast<double>(v) - mean); });
        const double var = squares / static_cast<double>(count);
        inv_std = 1.0 / std::sqrt(var + eps_);
        running_mean_(c) = static_cast<T>((1.0 - momentum_) * static_cast<double>(running_mean_(c)) + momentum_ * mean);
        const double unbiased = squares / static_cast<double>(count - 1);
        running_var_(c) = static_cast<T>((1.0 - momentum_) * static_cast<double>(running_var_(c)) + momentum_ * unbiased);
      } else {
        mean = static_cast<double>(running_mean_(c));
        inv_std = 1.0 / std::sqrt(static_cast<double>(running_var_(c)) + eps_);
      }
      mean_(c) = mean;
      inv_std_(c) = inv_std;
      // y = x·scale + shift with the per-channel constants folded once.
      const T scale = static_cast<T>(inv_std * static_cast<double>(gamma(c)));
      const T shift = static_cast<T>(static_cast<double>(beta(c)) - mean * inv_std * static_cast<double>(gamma(c)));
      for (index_t s = 0; s < n; ++s) {
        const T* in = x.data() + (s * channels_ + c) * plane;
        T* out = y_.data() + (s * channels_ + c) * plane;
        for (index_t i = 0; i < plane; ++i) out[i] = in[i] * scale + shift;
      }
    });
    return y_.view();
  }

  Activations<T> backward(Activations<T> dy) override {
    check_backward_shape("BatchNorm2d", y_.shape(), dy.shape());
    const index_t n = dy.dim(0), plane = dy.dim(2) * dy.dim(3);
    const double count = static_cast<double>(n * plane);
    if (this->needs_input_grad_) dx_.resize(x_.shape());
    for_channels(dy.size(), [&](index_t c) {
      const double mean = mean_(c), inv_std = inv_std_(c);
      // dβ = Σ dy, dγ = Σ dy·x̂ with x̂ = (x − μ)·inv_std.
      double sum_dy = 0.0, sum_dy_xhat = 0.0;
      for (index_t s = 0; s < n; ++s) {
        const T* in = x_.data() + (s * channels_ + c) * plane;
        const T* g = dy.data() + (s * channels_ + c) * plane;
        for (index_t i = 0; i < plane; ++i) {
          sum_dy += static_cast<double>(g[i]);
          sum_dy_xhat += static_cast<double>(g[i]) * (static_cast<double>(in[i]) - mean) * inv_std;
        }
      }
      if (affine_) {
        weight_grad_(c) = static_cast<T>(sum_dy_xhat);
        bias_grad_(c) = static_cast<T>(sum_dy);
      }
      if (!this->needs_input_grad_) return;
      const double k = static_cast<double>(gamma(c)) * inv_std;
      for (index_t s = 0; s < n; ++s) {
        const T* in = x_.data() + (s * channels_ + c) * plane;
        const T* g = dy.data() + (s * channels_ + c) * plane;
        T* out = dx_.data() + (s * channels_ + c) * plane;
        if (mode_ == Mode::train) {
          // The batch statistics depend on x: dx = γ·inv_std·(dy − mean(dy) − x̂·mean(dy·x̂)).
          for (index_t i = 0; i < plane; ++i) {
            const double xhat = (static_cast<double>(in[i]) - mean) * inv_std;
            out[i] = static_cast<T>(k * (static_cast<double>(g[i]) - sum_dy / count - xhat * sum_dy_xhat / count));
          }
        } else {
          for (index_t i = 0; i < plane; ++i) out[i] = static_cast<T>(k * static_cast<double>(g[i]));
        }
      }
    });
    if (!this->needs_input_grad_) return {};
    return dx_.view();
  }

  void collect_parameters(const std::string& prefix, std::vector<Parameter<T>>& out) override {
    if (!affine_) return;
    out.push_back({prefix + "weight", {channels_}, weight_.view(), weight_grad_.view()});
    out.push_back({prefix + "bias", {channels_}, bias_.view(), bias_grad_.view()});
  }

  void collect_buffers(const std::string& prefix, std::vector<Buffer<T>>& out) override {
    out.push_back({prefix + "running_mean", {channels_}, running_mean_.view()});
    out.push_back({prefix + "running_var", {channels_}, running_var_.view()});
  }

  [[nodiscard]] index_t channels() const noexcept { return channels_; }
  [[nodiscard]] double eps() const noexcept { return eps_; }
  [[nodiscard]] double momentum() const noexcept { return momentum_; }
  [[nodiscard]] bool affine() const noexcept { return affine_; }
  /// γ and β (ones and zeros, and unused, when not affine).
  [[nodiscard]] TensorView<T, 1> weight() noexcept { return weight_.view(); }
  [[nodiscard]] TensorView<T, 1> bias() noexcept { return bias_.view(); }
  [[nodiscard]] TensorView<T, 1> weight_grad() noexcept { return weight_grad_.view(); }
  [[nodiscard]] TensorView<T, 1> bias_grad() noexcept { return bias_grad_.view(); }
  [[nodiscard]] TensorView<T, 1> running_mean() noexcept { return running_mean_.view(); }
  [[nodiscard]] TensorView<T, 1> running_var() noexcept { return running_var_.view(); }
  [[nodiscard]] TensorView<const T, 1> weight() const noexcept { return weight_.view(); }
  [[nodiscard]] TensorView<const T, 1> bias() const noexcept { return bias_.view(); }
  [[nodiscard]] TensorView<const T, 1> running_mean() const noexcept { return running_mean_.view(); }
  [[nodiscard]] TensorView<const T, 1> running_var() const noexcept { return running_var_.view(); }

 private:
  [[nodiscard]] T gamma(index_t c) const noexcept { return affine_ ? weight_(c) : T(1); }
  [[nodiscard]] T beta(index_t c) const noexcept { return affine_ ? bias_(c) : T(0); }

  // Channels are independent: split them across threads once the batch is large enough to pay for it.
  template <class Body>
  void for_channels(index_t elements, Body&& body) const {
    const int threads = elements > 65536 && channels_ > 1 ? minnow::detail::max_threads() : 1;
    minnow::detail::parallel_for(channels_, threads, [&](index_t c, int) { body(c); });
  }

  // Visits channel c's values in every sample, in sample-major order.
  template <class Visit>
  void for_plane(const T* data, index_t c, Visit&& visit) const {
    const index_t plane = x_.dim(2) * x_.dim(3);
    for (index_t s = 0; s < x_.dim(0); ++s) {
      const T* p = data + (s * channels_ + c) * plane;
      for (index_t i = 0; i < plane; ++i) visit(p[i]);
    }
  }

  index_t channels_;
  double eps_, momentum_;
  bool affine_;
  Mode mode_ = Mode::eval;
  Tensor<T, 1> weight_, weight_grad_, bias_, bias_grad_, running_mean_, running_var_;
  Tensor<double, 1> mean_, inv_std_;  // the statistics the last forward normalized with
  Activations<T> x_;
  Tensor<T, 4> y_, dx_;
};

}  // namespace minnow::nn
