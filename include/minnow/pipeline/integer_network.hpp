#pragma once
/// @file pipeline/integer_network.hpp
/// @brief Where `infer/` meets `nn/` and `quant/`: a fake-quantized Sequential (after PTQ calibration or
/// QAT, see pipeline/quantize_model.hpp) converted into an inference-only network on integers.
///
/// The conversion reads the model layer by layer:
/// - `input.quant` → the float input is quantized to uint8 with its parameters;
/// - Conv2d / Linear followed by ReLU and its `reluN.quant` → one integer layer with the ReLU and the
///   requantization to that quantizer's parameters fused into the output stage (infer/qgemm.hpp);
///   weights become int8 per output channel from the float copy and the weight quantizer's parameters,
///   exactly the integers the fake-quant network computes with;
/// - MaxPool2d → pooling on uint8 (infer/quantized_maxpool.hpp); Flatten → nothing (NCHW is already the
///   flattened order);
/// - the last Conv2d / Linear, with no quantizer after it → dequantized to float (the logits).
/// @code
///   pipeline::QuantizedModel<quant::Int8PerChannelSymmetric, quant::Uint8PerTensorAffine> qmodel(model);
///   qmodel.calibrate(train, 2048);
///   pipeline::IntegerNetwork net(model, qmodel);
///   const auto logits = net.forward(images);          // float NCHW → float logits [N × classes]
///   const double accuracy = net.evaluate(test).accuracy;
/// @endcode
///
/// ## How close it is to the fake-quant network
/// Both compute the same integers up to float rounding: the fake-quant network sums
/// x̂·ŵ in float, the integer network sums (q − z)(w − zw) exactly and rounds once. Each requantization
/// can therefore land on the neighbouring integer when the real value is within a rounding error of a
/// half step, which is rare; then that activation differs by one step of its quantizer. If every input of
/// the last layer differs by at most one step s_in (the parameters of the quantizer before it), a logit
/// differs by at most `s_in · Σ_j |Ŵ[o, j]|` plus float rounding: that is the per-logit tolerance the
/// tests use (`logit_tolerance`).

#include <minnow/data/batches.hpp>
#include <minnow/data/dataset.hpp>
#include <minnow/error.hpp>
#include <minnow/infer/int_tensor.hpp>
#include <minnow/infer/qgemm.hpp>
#include <minnow/infer/quantized_conv2d.hpp>
#include <minnow/infer/quantized_linear.hpp>
#include <minnow/infer/quantized_maxpool.hpp>
#include <minnow/nn/activations.hpp>
#include <minnow/nn/conv2d.hpp>
#include <minnow/nn/linear.hpp>
#include <minnow/nn/loss.hpp>
#include <minnow/nn/maxpool2d.hpp>
#include <minnow/nn/sequential.hpp>
#include <minnow/nn/train.hpp>
#include <minnow/pipeline/quantize_model.hpp>
#include <minnow/quant/concepts.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace minnow::pipeline {

/// @brief An inference-only network on integers, converted from a fake-quantized Sequential
/// (see the file comment). Not thread-safe: forward reuses its buffers.
class IntegerNetwork {
 public:
  /// @brief Converts `model`, which `qmodel` wraps (its activation quantizers must have parameters).
  /// @throws value_error naming the layer when an activation quantizer has no parameters yet (its observer
  /// never ran), has a grid other than uint8 [0, 255] or more than one scale, when the model is not the one
  /// `qmodel` wraps, or when a layer or a layer order is not supported (e.g. a ReLU without a quantizer).
  template <class WeightQ, class ActivationQ>
  IntegerNetwork(nn::Sequential<float>& model, const QuantizedModel<WeightQ, ActivationQ>& qmodel) {
    static_assert(!WeightQ::is_codebook, "IntegerNetwork needs uniform (scale, zero point) weight quantizers");
    static_assert(!ActivationQ::is_codebook, "IntegerNetwork needs uniform (scale, zero point) activation quantizers");
    using Fake = ActivationFakeQuant<ActivationQ>;
    const auto& owned = qmodel.activation_layers();
    const auto activation_params = [&](std::size_t i) {
      const auto* fq = dynamic_cast<const Fake*>(&model.layer(i));
      const std::string& name = model.layer_name(i);
      if (std::find(owned.begin(), owned.end(), fq) == owned.end()) {
        throw value_error(minnow::detail::concat("IntegerNetwork: activation quantizer '", name,
                                                 "' does not belong to the QuantizedModel given (convert the model it wraps)"));
      }
      const auto& q = fq->quantizer();
      if (!q.observed() || q.params().empty()) {
        throw value_error(minnow::detail::concat("IntegerNetwork: activation quantizer '", name, "' has no qparams yet ",
                                                 "(its observer never ran: calibrate or train the QuantizedModel first)"));
      }
      if (q.params().size() != 1) {
        throw value_error(minnow::detail::concat("IntegerNetwork: activation quantizer '", name, "' has ",
                                                 q.params().size(), " scales; integer activations need one per tensor"));
      }
      const quant::QRange grid = q.grid();
      if (grid.qmin != 0 || grid.qmax != 255) {
        throw value_error(minnow::detail::concat("IntegerNetwork: activation quantizer '", name, "' has grid [", grid.qmin,
                                                 ", ", grid.qmax, "]; integer activations need uint8 [0, 255]"));
      }
      const quant::AffineParams p = q.params().front();
      quant::detail::check_params(p, grid, minnow::detail::concat("IntegerNetwork: activation quantizer '", name, "'").c_str());
      return p;
    };
    const auto is_fake = [&](std::size_t i) { return i < model.size() && dynamic_cast<const Fake*>(&model.layer(i)) != nullptr; };
    const auto is_relu = [&](std::size_t i) {
      return i < model.size() && dynamic_cast<const nn::ReLU<float>*>(&model.layer(i)) != nullptr;
    };

    if (model.size() == 0 || !is_fake(0)) {
      throw value_error("IntegerNetwork: the model's first layer must be the input quantizer ('input.quant'); "
                        "wrap it in a QuantizedModel with quantize_input = true");
    }
    input_ = activation_params(0);
    quant::AffineParams current = input_;
    bool quantized = true;  // false once a layer produced the float output
    std::string float_from;
    for (std::size_t i = 1; i < model.size();) {
      const std::string& name = model.layer_name(i);
      nn::Layer<float>& layer = model.layer(i);
      if (dynamic_cast<nn::Flatten<float>*>(&layer) != nullptr) {
        stages_.push_back(FlattenStage{});
        ++i;
        continue;
      }
      if (!quantized) {
        throw value_error(minnow::detail::concat("IntegerNetwork: layer '", name, "' follows '", float_from,
                                                 "', whose output has no activation quantizer; only the last layer may ",
                                                 "produce float output"));
      }
      auto* conv = dynamic_cast<nn::Conv2d<float>*>(&layer);
      auto* linear = dynamic_cast<nn::Linear<float>*>(&layer);
      if (conv != nullptr || linear != nullptr) {
        const index_t out_channels = conv ? conv->out_channels() : linear->out_features();
        const std::string weight_name = name + ".weight";
        const auto& wq = qmodel.weight_quantizer(weight_name);
        const auto flat = qmodel.float_weight(weight_name);
        const auto& params = wq.params();
        if (static_cast<index_t>(params.size()) != out_channels) {
          throw value_error(minnow::detail::concat("IntegerNetwork: weight '", weight_name, "' has ", params.size(),
                                                   " qparams for ", out_channels, " output channels (quantize weights per ",
                                                   "output channel, axis 0)"));
        }
        const auto weights = infer::quantize_int8(
            weight_name, flat.reshape(Shape<2>{out_channels, flat.size() / out_channels}),
            std::span<const quant::AffineParams>(params), wq.grid());
        const TensorView<const float, 1> bias = conv ? TensorView<const float, 1>(conv->bias()) : linear->bias();
        const std::span<const float> bias_span(bias.data(), static_cast<std::size_t>(bias.size()));
        storage_bytes_ += weights.bytes() + bias_span.size() * sizeof(float);
        float_bytes_ += static_cast<std::size_t>(flat.size() + bias.size()) * sizeof(float);

        // What follows decides the output stage: ReLU + quantizer (fused), a quantizer alone, or nothing (float).
        bool relu = false, requantize = false;
        std::size_t next = i + 1;
        if (is_relu(next)) {
          if (!is_fake(next + 1)) {
            throw value_error(minnow::detail::concat("IntegerNetwork: '", model.layer_name(next), "' after '", name,
                                                     "' has no activation quantizer after it; integer activations need one"));
          }
          relu = requantize = true;
          next += 1;
        } else if (is_fake(next)) {
          requantize = true;
        }
        quant::AffineParams out{};
        if (requantize) {
          out = activation_params(next);
          next += 1;
        } else {
          quantized = false;
          float_from = name;
        }
        if (conv) {
          stages_.push_back(ConvStage{std::make_unique<infer::QuantizedConv2d>(weights, conv->in_channels(), conv->kernel(),
                                                                               conv->stride(), conv->padding(), bias_span,
                                                                               current, relu),
                                      out, requantize});
        } else {
          stages_.push_back(LinearStage{std::make_unique<infer::QuantizedLinear>(weights, bias_span, current, relu), out,
                                        requantize, relu});
        }
        if (requantize) current = out;
        i = next;
        continue;
      }
      if (auto* pool = dynamic_cast<nn::MaxPool2d<float>*>(&layer)) {
        stages_.push_back(PoolStage{infer::QuantizedMaxPool2d(pool->kernel(), pool->stride())});
        ++i;
        continue;
      }
      throw value_error(minnow::detail::concat("IntegerNetwork: layer '", name, "' (", layer.describe(), ") is not supported ",
                                               "here; expected Conv2d/Linear [+ ReLU + quantizer], MaxPool2d or Flatten"));
    }
    if (quantized) stages_.push_back(DequantizeStage{current});  // ends on an activation quantizer
  }

  /// @brief Float NCHW batch in, float output `[N × features]` out (a view of a buffer reused by the next call).
  /// @throws shape_error naming the first layer the input does not fit.
  TensorView<const float, 2> forward(TensorView<const float, 4> x) {
    Shape<4> shape = x.shape();
    a_.resize({std::max<index_t>(1, x.size())});
    infer::detail::quantize_row(infer::arch::best{}, x.data(), x.size(), input_, a_.data());
    for (auto& stage : stages_) {
      std::visit([&](auto& s) { run(s, shape); }, stage);
    }
    return TensorView<const float, 2>(out_.data(), {shape[0], shape[1] * shape[2] * shape[3]});
  }

  /// @brief Mean cross-entropy and accuracy on `data`, in batches of `batch_size`.
  [[nodiscard]] nn::Evaluation evaluate(const data::Dataset<float>& data, index_t batch_size = 256) {
    auto sampler = data::BatchSampler::sequential(data.size(), batch_size);
    Tensor<float, 4> images;
    Tensor<float, 2> dlogits;
    Tensor<std::int32_t, 1> labels;
    double loss_sum = 0.0;
    index_t correct = 0;
    for (index_t b = 0; b < sampler.num_batches(); ++b) {
      data::gather(data, sampler.batch(b), images, labels);
      const auto logits = forward(images.view());
      dlogits.resize(logits.shape());
      loss_sum += nn::softmax_cross_entropy<float>(logits, labels.view(), dlogits.view()) * static_cast<double>(logits.dim(0));
      correct += nn::count_correct<float>(logits, labels.view());
    }
    const double count = static_cast<double>(data.size());
    return {data.size() ? loss_sum / count : 0.0, data.size() ? static_cast<double>(correct) / count : 0.0, data.size()};
  }

  /// Bytes the weights take at run time: packed int8 panels (with their padding to 48 channels and 4 taps),
  /// per-channel data and float biases, counted from the buffers.
  [[nodiscard]] std::size_t weight_bytes() const {
    std::size_t bytes = 0;
    for (const auto& stage : stages_) {
      if (const auto* c = std::get_if<ConvStage>(&stage)) bytes += c->conv->bytes();
      if (const auto* l = std::get_if<LinearStage>(&stage)) bytes += l->fc->bytes();
    }
    return bytes;
  }
  /// Bytes of the int8 weights as stored (one byte per weight, per-channel parameters, float biases),
  /// counted from the Int8Weights buffers when converting.
  [[nodiscard]] std::size_t storage_bytes() const noexcept { return storage_bytes_; }
  /// Bytes of the same weights and biases in fp32 (the model's buffers).
  [[nodiscard]] std::size_t float_bytes() const noexcept { return float_bytes_; }
  /// The parameters the input is quantized with.
  [[nodiscard]] quant::AffineParams input_params() const noexcept { return input_; }

  /// One line per integer stage, e.g. "conv(conv1.weight) relu → uint8(scale 0.02, zp 0)".
  [[nodiscard]] std::string describe() const {
    std::string text = minnow::detail::concat("quantize(scale ", input_.scale, ", zp ", input_.zero_point, ")\n");
    for (const auto& stage : stages_) {
      std::visit([&](const auto& s) { text += s.describe() + "\n"; }, stage);
    }
    return text;
  }

 private:
  static std::string output_text(bool relu, bool requantize, quant::AffineParams out) {
    return minnow::detail::concat(relu ? " relu" : "", requantize ? " -> uint8(scale " : " -> float",
                                  requantize ? minnow::detail::concat(out.scale, ", zp ", out.zero_point, ")") : "");
  }
  struct ConvStage {
    std::unique_ptr<infer::QuantizedConv2d> conv;  // pointer: the layer owns per-thread workspaces
    quant::AffineParams out;
    bool requantize;
    [[nodiscard]] std::string describe() const {
      return "conv(" + conv->name() + ")" + output_text(conv->relu(), requantize, out);
    }
  };
  struct LinearStage {
    std::unique_ptr<infer::QuantizedLinear> fc;
    quant::AffineParams out;
    bool requantize;
    bool relu;
    [[nodiscard]] std::string describe() const { return "linear(" + fc->name() + ")" + output_text(relu, requantize, out); }
  };
  struct PoolStage {
    infer::QuantizedMaxPool2d pool;
    [[nodiscard]] std::string describe() const {
      return minnow::detail::concat("maxpool(kernel ", pool.kernel(), ", stride ", pool.stride(), ") on uint8");
    }
  };
  struct FlattenStage {
    [[nodiscard]] std::string describe() const { return "flatten (free)"; }
  };
  struct DequantizeStage {
    quant::AffineParams params;
    [[nodiscard]] std::string describe() const { return "dequantize"; }
  };
  using Stage = std::variant<ConvStage, LinearStage, PoolStage, FlattenStage, DequantizeStage>;

  TensorView<const std::uint8_t, 4> current(const Shape<4>& shape) const { return {a_.data(), shape}; }

  void run(ConvStage& s, Shape<4>& shape) {
    const Shape<4> out_shape = s.conv->output_shape(shape);
    const index_t count = out_shape[0] * out_shape[1] * out_shape[2] * out_shape[3];
    if (s.requantize) {
      b_.resize({std::max<index_t>(1, count)});
      s.conv->forward(current(shape), s.out, TensorView<std::uint8_t, 4>(b_.data(), out_shape));
      std::swap(a_, b_);
    } else {
      out_.resize({std::max<index_t>(1, count)});
      s.conv->forward(current(shape), TensorView<float, 4>(out_.data(), out_shape));
    }
    shape = out_shape;
  }
  void run(LinearStage& s, Shape<4>& shape) {
    const index_t n = shape[0], in = shape[1] * shape[2] * shape[3], out = s.fc->out_features();
    const TensorView<const std::uint8_t, 2> x(a_.data(), {n, in});
    if (s.requantize) {
      b_.resize({std::max<index_t>(1, n * out)});
      s.fc->forward(x, s.out, TensorView<std::uint8_t, 2>(b_.data(), {n, out}));
      std::swap(a_, b_);
    } else {
      out_.resize({std::max<index_t>(1, n * out)});
      s.fc->forward(x, TensorView<float, 2>(out_.data(), {n, out}));
    }
    shape = {n, out, 1, 1};
  }
  void run(PoolStage& s, Shape<4>& shape) {
    const Shape<4> out_shape = s.pool.output_shape(shape);
    b_.resize({std::max<index_t>(1, out_shape[0] * out_shape[1] * out_shape[2] * out_shape[3])});
    s.pool.forward(current(shape), TensorView<std::uint8_t, 4>(b_.data(), out_shape));
    std::swap(a_, b_);
    shape = out_shape;
  }
  void run(FlattenStage&, Shape<4>& shape) { shape = {shape[0], shape[1] * shape[2] * shape[3], 1, 1}; }
  void run(DequantizeStage& s, Shape<4>& shape) {
    const index_t count = shape[0] * shape[1] * shape[2] * shape[3];
    out_.resize({std::max<index_t>(1, count)});
    for (index_t i = 0; i < count; ++i) {
      out_.data()[i] = static_cast<float>(a_.data()[i] - s.params.zero_point) * s.params.scale;
    }
  }

  quant::AffineParams input_;
  std::vector<Stage> stages_;
  std::size_t storage_bytes_ = 0, float_bytes_ = 0;
  Tensor<std::uint8_t, 1> a_, b_;  // the current uint8 activations and the next layer's
  Tensor<float, 1> out_;
};

/// @brief The per-logit tolerance of the file comment: `s_in · Σ_j |Ŵ[o, j]|` for the last Linear layer
/// `name` (its fake-quantized weight `[out × in]` as the model holds it) and the step `s_in` of the
/// quantizer before it. Add a relative float-rounding margin (the tests use 1e-5·(1 + |logit|)).
[[nodiscard]] inline std::vector<float> logit_tolerance(TensorView<const float, 2> last_weight, float input_step) {
  std::vector<float> tol(static_cast<std::size_t>(last_weight.dim(0)));
  for (index_t o = 0; o < last_weight.dim(0); ++o) {
    double sum = 0.0;
    for (index_t j = 0; j < last_weight.dim(1); ++j) sum += std::abs(static_cast<double>(last_weight(o, j)));
    tol[static_cast<std::size_t>(o)] = static_cast<float>(static_cast<double>(input_step) * sum);
  }
  return tol;
}

}  // namespace minnow::pipeline
