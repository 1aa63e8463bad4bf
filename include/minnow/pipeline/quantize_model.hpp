#pragma once
/// @file pipeline/quantize_model.hpp
/// @brief Where `quant/` meets `nn/`: fake-quantized weights and activations in a Sequential, for
/// quantization-aware training (QAT) and post-training quantization (PTQ).
///
/// Weights are quantized through the named-parameter seam: every Conv2d's and Linear's weight keeps a float shadow copy.
/// The network always computes with `fake_quantize(shadow)`; the gradient hook applies the straight-through
/// estimator (zero outside the grid) and hands the optimizer the float weights, and the after-step hook
/// re-quantizes them. Activations are quantized by an `ActivationFakeQuant` layer inserted at the input and
/// after every ReLU, observing while its quantizer is not frozen. A Conv2d followed by a BatchNorm2d becomes
/// one QatConvBn2d layer (pipeline/qat_conv_bn.hpp; PyTorch's `fuse_modules_qat` + `prepare_qat`), which
/// fake-quantizes the folded weights itself and trains with the batch statistics until they are frozen.
/// @code
///   pipeline::QuantizedModel<quant::Int8PerChannelSymmetric, quant::Uint8PerTensorAffine> qmodel(model);
///   // PTQ: qmodel.calibrate(train, 2048);                                        then evaluate(model, test)
///   // QAT: qmodel.attach(trainer, {.freeze_after_steps = 2000, .freeze_bn_stats_after_steps = 1000});
///   //      trainer.train_epoch(...);
/// @endcode
/// With pruning, register the Pruner's hook before `attach`: the pruner zeroes the weights first and
/// zero is exactly representable in every mapping, so a pruned weight stays exactly 0.

#include <minnow/data/batches.hpp>
#include <minnow/data/dataset.hpp>
#include <minnow/nn/conv2d.hpp>
#include <minnow/nn/layer.hpp>
#include <minnow/nn/linear.hpp>
#include <minnow/nn/sequential.hpp>
#include <minnow/parameter.hpp>
#include <minnow/pipeline/qat_conv_bn.hpp>
#include <minnow/quant/quantizer.hpp>
#include <minnow/train/trainer.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace minnow::pipeline {

/// @brief A layer that fake-quantizes the activations passing through it with a per-tensor quantizer,
/// observing them first while the quantizer is not frozen; backward is the straight-through estimator.
template <class Q>
class ActivationFakeQuant final : public nn::Layer<float> {
 public:
  explicit ActivationFakeQuant(Q quantizer = Q{}) : quantizer_(std::move(quantizer)) {}

  [[nodiscard]] std::string describe() const override {
    return minnow::detail::concat("FakeQuantize(", quantizer_.full_grid().qmin, "..", quantizer_.full_grid().qmax, ")");
  }
  [[nodiscard]] Shape<4> output_shape(const Shape<4>& input) const override { return input; }

  nn::Activations<float> forward(nn::Activations<float> x, nn::Mode /*mode*/) override {
    x_ = x;
    const auto shape = shape_of(x);
    quantizer_.observe(x.reshape(Shape<1>{x.size()}), shape);  // a no-op once frozen
    y_.resize(x.shape());
    quantizer_.fake_quantize(x.reshape(Shape<1>{x.size()}), shape, y_.view().reshape(Shape<1>{x.size()}));
    return y_.view();
  }

  nn::Activations<float> backward(nn::Activations<float> dy) override {
    nn::check_backward_shape("ActivationFakeQuant", y_.shape(), dy.shape());
    dx_.resize(dy.shape());
    quantizer_.backward(x_.reshape(Shape<1>{x_.size()}), shape_of(x_), dy.reshape(Shape<1>{dy.size()}),
                        dx_.view().reshape(Shape<1>{dy.size()}));
    return dx_.view();
  }

  [[nodiscard]] Q& quantizer() noexcept { return quantizer_; }
  [[nodiscard]] const Q& quantizer() const noexcept { return quantizer_; }
  /// `[C, H, W]` of one sample of the last forward's input; all zero before the first forward.
  [[nodiscard]] Shape<3> sample_shape() const noexcept { return {x_.dim(1), x_.dim(2), x_.dim(3)}; }

 private:
  static std::array<index_t, 4> shape_of(nn::Activations<float> x) {
    return {x.dim(0), x.dim(1), x.dim(2), x.dim(3)};
  }

  Q quantizer_;
  nn::Activations<float> x_;
  Tensor<float, 4> y_, dx_;
};

/// @brief A Sequential whose weights and activations are fake-quantized (see the file comment).
/// @tparam WeightQ quantizer for every `*.weight` (per channel along axis 0 = output channels, typically)
/// @tparam ActivationQ per-tensor quantizer for the input and every ReLU's output
template <class WeightQ, class ActivationQ>
class QuantizedModel {
 public:
  struct Options {
    bool quantize_activations = true;  ///< insert ActivationFakeQuant layers (false: weights only)
    bool quantize_input = true;        ///< also quantize the network's input (the int8 network's edge)
    bool fold_batchnorm = true;        ///< Conv2d → BatchNorm2d pairs become QatConvBn2d layers
  };

  struct TrainOptions {
    std::int64_t freeze_after_steps = -1;  ///< freeze every observer after this many steps (< 0: never)
    /// freeze the folded batch norms' running statistics after this many steps (< 0: never)
    std::int64_t freeze_bn_stats_after_steps = -1;
  };

  /// Folds each Conv2d → BatchNorm2d pair into a QatConvBn2d (named as the convolution; the batch norm's
  /// parameters become "<conv>.bn.*"), inserts the activation quantizers into `model` (which must outlive
  /// this object) and quantizes its weights.
  explicit QuantizedModel(nn::Sequential<float>& model, WeightQ weight_prototype = WeightQ{},
                          ActivationQ activation_prototype = ActivationQ{}, Options options = Options{})
      : model_(model) {
    if (options.fold_batchnorm) wrap_conv_batchnorm_pairs(weight_prototype);
    if (options.quantize_activations) {
      std::vector<std::string> after;
      for (std::size_t i = 0; i < model.size(); ++i) {
        if (model.layer(i).describe().rfind("ReLU", 0) == 0) after.push_back(model.layer_name(i));
      }
      for (const auto& name : after) {
        activations_.push_back(&model.insert_after(name, name + ".quant", ActivationFakeQuant<ActivationQ>(activation_prototype)));
      }
      if (options.quantize_input) {
        activations_.insert(activations_.begin(),
                            &model.insert(0, "input.quant", ActivationFakeQuant<ActivationQ>(activation_prototype)));
      }
    }
    for (std::size_t i = 0; i < model.size(); ++i) {
      nn::Layer<float>& layer = model.layer(i);
      const std::string name = model.layer_name(i) + ".weight";
      if (auto* fused = dynamic_cast<QatConvBn2d<WeightQ>*>(&layer)) {
        fused_.push_back({name, fused});
        names_.push_back(name);
      }
      if (dynamic_cast<nn::Conv2d<float>*>(&layer) == nullptr && dynamic_cast<nn::Linear<float>*>(&layer) == nullptr) continue;
      std::vector<Parameter<float>> parameters;
      layer.collect_parameters(model.layer_name(i) + ".", parameters);
      weights_.push_back(std::make_unique<Weight>(find_parameter(parameters, name), weight_prototype));
      names_.push_back(name);
    }
    for (auto& w : weights_) w->quantize();
  }

  QuantizedModel(const QuantizedModel&) = delete;
  QuantizedModel& operator=(const QuantizedModel&) = delete;

  /// @brief QAT: registers the STE gradient hook and the re-quantizing step hook with `trainer`
  /// (whose model must be this model). Register a Pruner's hook before this one.
  void attach(train::Trainer<float>& trainer, TrainOptions options = {}) {
    trainer.add_gradient_hook([this](std::int64_t) {
      for (auto& w : weights_) w->to_float();
    });
    trainer.add_hook([this, options](std::int64_t step) {
      if (options.freeze_after_steps >= 0 && step + 1 >= options.freeze_after_steps) freeze_observers();
      if (options.freeze_bn_stats_after_steps >= 0 && step + 1 >= options.freeze_bn_stats_after_steps) {
        for (auto& f : fused_) f.layer->freeze_bn_stats();
      }
      for (auto& w : weights_) w->from_float();
    });
  }

  /// @brief PTQ: runs the first `samples` images of `data` through the network (eval mode) with every
  /// observer on, then freezes them. The weights' ranges come from the weights themselves.
  void calibrate(const data::Dataset<float>& data, index_t samples, index_t batch_size = 256) {
    unfreeze_observers();
    const index_t n = std::min(samples, data.size());
    auto sampler = data::BatchSampler::sequential(n, batch_size);
    Tensor<float, 4> images;
    Tensor<std::int32_t, 1> labels;
    for (index_t b = 0; b < sampler.num_batches(); ++b) {
      data::gather(data, sampler.batch(b), images, labels);
      (void)model_.forward(images.view(), nn::Mode::eval);
    }
    freeze_observers();
  }

  /// `[C, H, W]` of the images the model last ran on (calibration, QAT or evaluation), which
  /// to_integer_model records; all zero before the first forward.
  [[nodiscard]] Shape<3> input_shape() const {
    const auto* input = dynamic_cast<const ActivationFakeQuant<ActivationQ>*>(&model_.layer(0));
    return input != nullptr ? input->sample_shape() : Shape<3>{};
  }

  /// Stops every observer (weights keep their current parameters; activations their current range).
  void freeze_observers() {
    for (auto& w : weights_) w->quantizer.freeze();
    for (auto& f : fused_) f.layer->weight_quantizer().freeze();
    for (auto* a : activations_) a->quantizer().freeze();
  }
  void unfreeze_observers() {
    for (auto& w : weights_) w->quantizer.unfreeze();
    for (auto& f : fused_) f.layer->weight_quantizer().unfreeze();
    for (auto* a : activations_) a->quantizer().unfreeze();
  }

  /// The weight quantizer of a parameter, e.g. for its per-channel scales. @throws value_error for an unknown name.
  [[nodiscard]] const WeightQ& weight_quantizer(std::string_view name) const {
    for (const auto& w : weights_) {
      if (w->parameter.name == name) return w->quantizer;
    }
    for (const auto& f : fused_) {
      if (f.name == name) return f.layer->weight_quantizer();
    }
    throw value_error(minnow::detail::concat("QuantizedModel: no quantized weight named '", name, "'"));
  }
  /// The activation quantizers, input first.
  [[nodiscard]] const std::vector<ActivationFakeQuant<ActivationQ>*>& activation_layers() const noexcept {
    return activations_;
  }
  /// Names of the quantized weights, in layer order (a QatConvBn2d's is "<conv>.weight").
  [[nodiscard]] const std::vector<std::string>& weight_names() const noexcept { return names_; }
  /// The QatConvBn2d layers the constructor folded, in layer order.
  [[nodiscard]] std::vector<QatConvBn2d<WeightQ>*> folded_layers() const {
    std::vector<QatConvBn2d<WeightQ>*> layers;
    for (const auto& f : fused_) layers.push_back(f.layer);
    return layers;
  }

  /// The float weights the quantized ones were computed from (the optimizer's copy); for a QatConvBn2d
  /// the convolution's own weights, before the batch norm's scale.
  [[nodiscard]] TensorView<const float, 1> float_weight(std::string_view name) const {
    for (const auto& w : weights_) {
      if (w->parameter.name == name) return w->shadow.view();
    }
    for (const auto& f : fused_) {
      if (f.name == name) {
        const auto w = std::as_const(*f.layer).conv().weight();
        return w.reshape(Shape<1>{w.size()});
      }
    }
    throw value_error(minnow::detail::concat("QuantizedModel: no quantized weight named '", name, "'"));
  }

 private:
  /// One weight: the model's view (holding the fake-quantized values), its float shadow and its quantizer.
  struct Weight {
    Weight(const Parameter<float>& p, const WeightQ& prototype)
        : parameter(p), quantizer(prototype), shadow(TensorView<const float, 1>(p.value)) {}

    /// value ← fake_quantize(shadow), re-observing the current weights unless frozen.
    void quantize() {
      if (!quantizer.frozen()) {
        quantizer.reset();  // the range of the weights as they are now, not of every past step
        quantizer.observe(shadow.view(), parameter.shape);
      }
      quantizer.fake_quantize(TensorView<const float, 1>(shadow.view()), parameter.shape, parameter.value);
    }
    /// Before the optimizer step: STE on the gradient, and the optimizer sees the float weights.
    void to_float() {
      quantizer.backward(TensorView<const float, 1>(shadow.view()), parameter.shape,
                         TensorView<const float, 1>(parameter.grad), parameter.grad);
      parameter.value.copy_from(shadow.view());
    }
    /// After the step (and after a pruner): the updated float weights become the shadow again.
    void from_float() {
      shadow.view().copy_from(parameter.value);
      quantize();
    }

    Parameter<float> parameter;
    WeightQ quantizer;
    Tensor<float, 1> shadow;
  };

  /// A QatConvBn2d, which quantizes its own (folded) weights in every forward.
  struct Fused {
    std::string name;  // "<conv>.weight"
    QatConvBn2d<WeightQ>* layer;
  };

  void wrap_conv_batchnorm_pairs(const WeightQ& weight_prototype) {
    for (std::size_t i = 0; i + 1 < model_.size(); ++i) {
      auto* conv = dynamic_cast<nn::Conv2d<float>*>(&model_.layer(i));
      auto* bn = dynamic_cast<nn::BatchNorm2d<float>*>(&model_.layer(i + 1));
      // A width mismatch is no pair: the model's own forward refuses it.
      if (conv == nullptr || bn == nullptr || conv->out_channels() != bn->channels()) continue;
      const std::string name = model_.layer_name(i);
      auto bn_owned = model_.release(model_.layer_name(i + 1));
      auto conv_owned = model_.release(name);
      std::unique_ptr<nn::BatchNorm2d<float>> bn_typed(static_cast<nn::BatchNorm2d<float>*>(bn_owned.release()));
      std::unique_ptr<nn::Conv2d<float>> conv_typed(static_cast<nn::Conv2d<float>*>(conv_owned.release()));
      (void)model_.insert(i, name, QatConvBn2d<WeightQ>(std::move(conv_typed), std::move(bn_typed), weight_prototype));
    }
  }

  nn::Sequential<float>& model_;
  std::vector<std::unique_ptr<Weight>> weights_;
  std::vector<Fused> fused_;
  std::vector<std::string> names_;
  std::vector<ActivationFakeQuant<ActivationQ>*> activations_;
};

}  // namespace minnow::pipeline
