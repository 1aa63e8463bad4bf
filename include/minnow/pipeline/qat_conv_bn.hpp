#pragma once
/// @file pipeline/qat_conv_bn.hpp
/// @brief A convolution and the batch norm after it, trained as one fake-quantized layer whose weights are
/// the folded ones (PyTorch 1.13's `torch.nn.intrinsic.qat.ConvBn2d`).
///
/// Quantizing a network with batch norm means quantizing the folded weights `W·γ/σ`: those are what the
/// integer network computes with. Folding first and training the folded convolution would lose the batch
/// statistics that make training with batch norm work; this layer keeps them. With `s = γ / √(running_var + eps)`
/// per output channel, its forward is
///
///     y = conv(x, fake_quantize(W·s)) / s + b,   out = bn(y)
///
/// where `bn` uses the batch's statistics (and updates the running ones) in training mode until
/// `freeze_bn_stats()`, and the running statistics afterwards and in eval mode. In eval mode, and once
/// frozen, `out` is the folded convolution `conv(x, fake_quantize(W·s)) + b'` up to rounding, which is
/// what `folded()` returns for conversion. Backward is PyTorch's autograd of that expression, with the
/// straight-through estimator for the fake quantization; the gradients reach W, b, γ (through s too) and β.
/// The weight quantizer observes the scaled weights when the layer is built and in every forward while it is
/// not frozen.

#include <minnow/nn/batchnorm2d.hpp>
#include <minnow/nn/conv2d.hpp>
#include <minnow/nn/fuse.hpp>
#include <minnow/nn/layer.hpp>

#include <array>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace minnow::pipeline {

template <class WeightQ>
class QatConvBn2d final : public nn::Layer<float> {
 public:
  /// Takes over `conv` and `bn` (their parameters stay where they are, so views of them held elsewhere,
  /// e.g. by a Pruner, stay valid). @throws shape_error when bn normalizes a different channel count;
  /// value_error for a null layer.
  QatConvBn2d(std::unique_ptr<nn::Conv2d<float>> conv, std::unique_ptr<nn::BatchNorm2d<float>> bn,
              WeightQ weight_quantizer = WeightQ{})
      : conv_(std::move(conv)), bn_(std::move(bn)), quantizer_(std::move(weight_quantizer)) {
    if (conv_ == nullptr || bn_ == nullptr) throw value_error("QatConvBn2d: the convolution and the batch norm must be given");
    if (conv_->out_channels() != bn_->channels()) {
      throw shape_error(minnow::detail::concat("QatConvBn2d: ", conv_->describe(), " has ", conv_->out_channels(),
                                               " output channels, ", bn_->describe(), " normalizes ", bn_->channels()));
    }
    engine_ = std::make_unique<nn::Conv2d<float>>(conv_->in_channels(), conv_->out_channels(), conv_->kernel(),
                                                  conv_->stride(), conv_->padding());
    engine_->set_algorithm(conv_->algorithm());
    engine_->bias().fill(0.0f);  // b is added after the rescaling, as in PyTorch
    bn_->set_needs_input_grad(true);
    const auto w = conv_->weight();
    shape_ = {w.dim(0), w.dim(1), w.dim(2), w.dim(3)};
    scale_.resize({conv_->out_channels()});
    running_std_.resize({conv_->out_channels()});
    scaled_.resize({w.size()});
    scaled_grad_.resize({w.size()});
    scale_weights();
    observe_weights();  // the quantizer has parameters before the first forward, e.g. when frozen at once
  }

  [[nodiscard]] std::string describe() const override {
    return minnow::detail::concat("QatConvBn2d(", conv_->describe(), ", ", bn_->describe(), ")");
  }
  [[nodiscard]] Shape<4> output_shape(const Shape<4>& input) const override {
    return bn_->output_shape(conv_->output_shape(input));
  }

  nn::Activations<float> forward(nn::Activations<float> x, nn::Mode mode) override {
    (void)output_shape(x.shape());
    const index_t out = conv_->out_channels();
    scale_weights();
    observe_weights();
    quantizer_.fake_quantize(TensorView<const float, 1>(scaled_.view()), shape_,
                             engine_->weight().reshape(Shape<1>{scaled_.size()}));

    engine_->set_needs_input_grad(this->needs_input_grad_);
    conv_out_ = engine_->forward(x, mode);
    rescaled_.resize(conv_out_.shape());
    const index_t plane = conv_out_.dim(2) * conv_out_.dim(3);
    const auto bias = conv_->bias();
    for (index_t n = 0; n < conv_out_.dim(0); ++n) {
      for (index_t o = 0; o < out; ++o) {
        const float* in = conv_out_.data() + (n * out + o) * plane;
        float* y = rescaled_.data() + (n * out + o) * plane;
        for (index_t i = 0; i < plane; ++i) y[i] = in[i] / scale_(o) + bias(o);
      }
    }
    return bn_->forward(rescaled_.view(), mode == nn::Mode::train && !bn_frozen_ ? nn::Mode::train : nn::Mode::eval);
  }

  nn::Activations<float> backward(nn::Activations<float> dy) override {
    const nn::Activations<float> dz = bn_->backward(dy);
    const index_t out = conv_->out_channels(), per_channel = scaled_.size() / out;
    const index_t plane = dz.dim(2) * dz.dim(3);
    dconv_.resize(dz.shape());
    std::vector<double> dscale(static_cast<std::size_t>(out), 0.0);
    auto dbias = conv_->bias_grad();
    for (index_t o = 0; o < out; ++o) {
      double sum = 0.0, sum_ds = 0.0;
      for (index_t n = 0; n < dz.dim(0); ++n) {
        const float* g = dz.data() + (n * out + o) * plane;
        const float* c = conv_out_.data() + (n * out + o) * plane;
        float* d = dconv_.data() + (n * out + o) * plane;
        for (index_t i = 0; i < plane; ++i) {
          sum += static_cast<double>(g[i]);
          d[i] = g[i] / scale_(o);                                        // d(c / s) / dc
          sum_ds -= static_cast<double>(g[i]) * static_cast<double>(c[i]);  // d(c / s) / ds = −c / s²
        }
      }
      dbias(o) = static_cast<float>(sum);
      dscale[static_cast<std::size_t>(o)] = sum_ds / (static_cast<double>(scale_(o)) * scale_(o));
    }
    const nn::Activations<float> dx = engine_->backward(dconv_.view());
    // Straight-through estimator to W·s, then the product rule to W and s.
    const auto dq = engine_->weight_grad();
    quantizer_.backward(TensorView<const float, 1>(scaled_.view()), shape_,
                        TensorView<const float, 1>(dq.reshape(Shape<1>{dq.size()})), scaled_grad_.view());
    const float* w = conv_->weight().data();
    float* dw = conv_->weight_grad().data();
    for (index_t o = 0; o < out; ++o) {
      double sum = 0.0;
      for (index_t i = 0; i < per_channel; ++i) {
        const float g = scaled_grad_(o * per_channel + i);
        dw[o * per_channel + i] = g * scale_(o);
        sum += static_cast<double>(g) * static_cast<double>(w[o * per_channel + i]);
      }
      dscale[static_cast<std::size_t>(o)] += sum;
    }
    if (bn_->affine()) {
      auto dgamma = bn_->weight_grad();  // s = γ / running_std
      for (index_t o = 0; o < out; ++o) {
        dgamma(o) += static_cast<float>(dscale[static_cast<std::size_t>(o)] / static_cast<double>(running_std_(o)));
      }
    }
    return dx;
  }

  /// W and b as "weight" and "bias", γ and β as "bn.weight" and "bn.bias" (PyTorch's names).
  void collect_parameters(const std::string& prefix, std::vector<Parameter<float>>& out) override {
    conv_->collect_parameters(prefix, out);
    bn_->collect_parameters(prefix + "bn.", out);
  }
  void collect_buffers(const std::string& prefix, std::vector<Buffer<float>>& out) override {
    conv_->collect_buffers(prefix, out);
    bn_->collect_buffers(prefix + "bn.", out);
  }

  /// From now on the batch norm normalizes with its running statistics and stops updating them
  /// (PyTorch's `freeze_bn_stats`); `update_bn_stats` undoes it.
  void freeze_bn_stats() noexcept { bn_frozen_ = true; }
  void update_bn_stats() noexcept { bn_frozen_ = false; }
  [[nodiscard]] bool bn_stats_frozen() const noexcept { return bn_frozen_; }

  /// The convolution with the batch norm's running statistics folded in (nn::fold_batchnorm, equal to
  /// PyTorch's `ConvBn2d.to_float()`); quantized with `weight_quantizer()`, it is the converted layer.
  [[nodiscard]] nn::Conv2d<float> folded() const {
    nn::Conv2d<float> conv(conv_->in_channels(), conv_->out_channels(), conv_->kernel(), conv_->stride(), conv_->padding());
    conv.set_algorithm(conv_->algorithm());
    conv.weight().copy_from(conv_->weight());
    conv.bias().copy_from(conv_->bias());
    nn::fold_batchnorm(conv, *bn_);
    return conv;
  }

  [[nodiscard]] WeightQ& weight_quantizer() noexcept { return quantizer_; }
  [[nodiscard]] const WeightQ& weight_quantizer() const noexcept { return quantizer_; }
  [[nodiscard]] nn::Conv2d<float>& conv() noexcept { return *conv_; }
  [[nodiscard]] const nn::Conv2d<float>& conv() const noexcept { return *conv_; }
  [[nodiscard]] nn::BatchNorm2d<float>& bn() noexcept { return *bn_; }
  [[nodiscard]] const nn::BatchNorm2d<float>& bn() const noexcept { return *bn_; }

 private:
  [[nodiscard]] float gamma(index_t o) const { return bn_->affine() ? bn_->weight()(o) : 1.0f; }

  /// running_std, s and W·s from the current running statistics, in PyTorch's float operations.
  void scale_weights() {
    const index_t out = conv_->out_channels(), per_channel = scaled_.size() / out;
    const float eps = static_cast<float>(bn_->eps());
    const auto var = bn_->running_var();
    const float* w = conv_->weight().data();
    for (index_t o = 0; o < out; ++o) {
      running_std_(o) = std::sqrt(var(o) + eps);
      scale_(o) = gamma(o) / running_std_(o);
      for (index_t i = 0; i < per_channel; ++i) scaled_(o * per_channel + i) = w[o * per_channel + i] * scale_(o);
    }
  }
  /// The quantizer's range becomes that of W·s as it is now (unless frozen).
  void observe_weights() {
    if (quantizer_.frozen()) return;
    quantizer_.reset();
    quantizer_.observe(TensorView<const float, 1>(scaled_.view()), shape_);
  }

  std::unique_ptr<nn::Conv2d<float>> conv_;    // W and b: the parameters
  std::unique_ptr<nn::BatchNorm2d<float>> bn_;  // γ, β and the running statistics
  std::unique_ptr<nn::Conv2d<float>> engine_;  // computes with the fake-quantized W·s and no bias
  WeightQ quantizer_;
  bool bn_frozen_ = false;
  std::array<index_t, 4> shape_{};
  Tensor<float, 1> scale_, running_std_, scaled_, scaled_grad_;
  nn::Activations<float> conv_out_;
  Tensor<float, 4> rescaled_, dconv_;
};

}  // namespace minnow::pipeline
