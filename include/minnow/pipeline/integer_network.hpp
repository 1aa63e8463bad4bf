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
/// - MaxPool2d → pooling on uint8 (infer/quantized_maxpool.hpp), or, for a 2×2 stride-2 pool right after
///   a requantized conv, fused into the conv's output stage (QuantizedConv2d::forward_pooled); Flatten →
///   nothing (NCHW is already the flattened order);
/// - the last Conv2d / Linear, with no quantizer after it → dequantized to float (the logits).
/// @code
///   pipeline::QuantizedModel<quant::Int8PerChannelSymmetric, quant::Uint8PerTensorAffine> qmodel(model);
///   qmodel.calibrate(train, 2048);
///   pipeline::IntegerNetwork net(model, qmodel);
///   const auto logits = net.forward(images);          // float NCHW → float logits [N × classes]
///   const double accuracy = net.evaluate(test).accuracy;
/// @endcode
///
/// ## Per-layer formats
/// Each Conv2d / Linear runs in one of the formats of `LayerFormat`, named per layer in a `NetworkPlan` or
/// chosen by its rule: int8 (the default), or — for a Linear — its fake-quantized weight Ŵ in fp32, dense
/// or in a sparse format (infer/sparse.hpp: the zeros pruning left in Ŵ are skipped). A float layer reads
/// the uint8 activations dequantized, x̂ = (q − z)·s, and quantizes its output with the same quantizer
/// as an int8 layer would, so the network computes the same function whatever the formats.
/// The rule (`NetworkPlan::sparse_from_batch1` / `sparse_from_batched`) makes a Linear sparse once the
/// fraction of zeros in Ŵ reaches the sparsity at which the sparse kernel beats the int8 kernel at the
/// planned batch size, measured by `bench_infer_formats` (see docs/benchmarks.md); everything else stays int8.
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
#include <minnow/infer/from_float.hpp>
#include <minnow/infer/int_tensor.hpp>
#include <minnow/infer/integer_model.hpp>
#include <minnow/infer/qgemm.hpp>
#include <minnow/infer/quantized_conv2d.hpp>
#include <minnow/infer/quantized_linear.hpp>
#include <minnow/infer/quantized_maxpool.hpp>
#include <minnow/infer/sparse.hpp>
#include <minnow/nn/activations.hpp>
#include <minnow/nn/conv2d.hpp>
#include <minnow/nn/linear.hpp>
#include <minnow/nn/loss.hpp>
#include <minnow/nn/maxpool2d.hpp>
#include <minnow/nn/sequential.hpp>
#include <minnow/pipeline/qat_conv_bn.hpp>
#include <minnow/pipeline/quantize_model.hpp>
#include <minnow/quant/concepts.hpp>
#include <minnow/simd/gemm.hpp>
#include <minnow/tensor.hpp>
#include <minnow/train/evaluate.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace minnow::pipeline {

/// @brief How one Conv2d / Linear layer runs in an IntegerNetwork.
enum class LayerFormat {
  automatic,    ///< as NetworkPlan's rule says
  int8,         ///< int8 weights on uint8 activations (infer/qgemm.hpp); Conv2d and Linear
  sparse,       ///< Linear only: Ŵ's non-zeros in a sparse format (CSR or bitmap, by infer::choose_format), fp32
  dense_float,  ///< Linear only: Ŵ dense in fp32
};

[[nodiscard]] inline const char* to_string(LayerFormat f) noexcept {
  switch (f) {
    case LayerFormat::int8: return "int8";
    case LayerFormat::sparse: return "sparse";
    case LayerFormat::dense_float: return "dense fp32";
    default: return "automatic";
  }
}

/// @brief The formats of an IntegerNetwork's layers: named ones as given, the others by the rule.
struct NetworkPlan {
  std::map<std::string, LayerFormat> layers{};  ///< by layer name, e.g. {"fc1", LayerFormat::sparse}
  index_t batch = 1;                          ///< the batch size the rule plans for (> 0)
  /// The rule: a Linear whose fake-quantized weight has at least this fraction of zeros runs sparse at
  /// batch < 4 (resp. ≥ 4); below it, int8. From bench_infer_formats on the teacher's fc1, 2 threads
  /// (docs/benchmarks.md): int8 wins up to 90 % (a tie at batch 1), sparse from 95 % (1.5× at batch 1).
  /// Set above 1 to keep every layer int8.
  double sparse_from_batch1 = 0.95;
  double sparse_from_batched = 0.95;
};

/// @brief The integer network a fake-quantized Sequential computes, as data (infer/integer_model.hpp):
/// `model`, which `qmodel` wraps, read layer by layer as the file comment says. Its activation quantizers
/// must have parameters. `input_shape` (`[C, H, W]` of one sample; by default `qmodel.input_shape()`, the
/// shape of the images the model last ran on) is recorded and checked against the layers when set; a model written to a file
/// needs it.
/// @throws value_error naming the layer when an activation quantizer has no parameters yet (its observer
/// never ran), has a grid other than uint8 [0, 255] or more than one scale, when the model is not the one
/// `qmodel` wraps, or when a layer or a layer order is not supported (e.g. a ReLU without a quantizer);
/// shape_error when `input_shape` does not fit the layers.
template <class WeightQ, class ActivationQ>
[[nodiscard]] infer::IntegerModel to_integer_model(nn::Sequential<float>& model, const QuantizedModel<WeightQ, ActivationQ>& qmodel,
                                                   Shape<3> input_shape = {}) {
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
    quant::check_affine_params(p, grid, minnow::detail::concat("IntegerNetwork: activation quantizer '", name, "'").c_str());
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
  if (input_shape == Shape<3>{}) input_shape = qmodel.input_shape();
  infer::IntegerModel out{input_shape, activation_params(0), {}};
  bool quantized = true;  // false once a layer produced the float output
  std::string float_from;
  for (std::size_t i = 1; i < model.size();) {
    const std::string& name = model.layer_name(i);
    nn::Layer<float>& layer = model.layer(i);
    if (dynamic_cast<nn::Flatten<float>*>(&layer) != nullptr) {
      out.layers.emplace_back(infer::IntegerFlatten{});
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
    // A convolution trained with its batch norm (QatConvBn2d) converts as the folded convolution.
    std::optional<nn::Conv2d<float>> folded;
    if (const auto* fused = dynamic_cast<const QatConvBn2d<WeightQ>*>(&layer)) conv = &folded.emplace(fused->folded());
    if (conv != nullptr || linear != nullptr) {
      const index_t out_channels = conv ? conv->out_channels() : linear->out_features();
      const std::string weight_name = name + ".weight";
      const auto flat = folded ? TensorView<const float, 1>(folded->weight().reshape(Shape<1>{folded->weight().size()}))
                               : qmodel.float_weight(weight_name);
      // A folded layer's quantizer last observed W·s before that forward moved the running statistics: unless
      // frozen, a copy observes the folded weights themselves, as PyTorch's conversion does.
      std::optional<WeightQ> refreshed;
      if (folded && !qmodel.weight_quantizer(weight_name).frozen()) {
        refreshed.emplace(qmodel.weight_quantizer(weight_name));
        const auto w = folded->weight();
        refreshed->reset();
        refreshed->observe(flat, {w.dim(0), w.dim(1), w.dim(2), w.dim(3)});
        (void)refreshed->calculate_params();
      }
      const auto& wq = refreshed ? *refreshed : qmodel.weight_quantizer(weight_name);
      const auto& params = wq.params();
      if (static_cast<index_t>(params.size()) != out_channels) {
        throw value_error(minnow::detail::concat("IntegerNetwork: weight '", weight_name, "' has ", params.size(),
                                                 " qparams for ", out_channels, " output channels (quantize weights per ",
                                                 "output channel, axis 0)"));
      }
      auto weights = infer::quantize_int8(weight_name, flat.reshape(Shape<2>{out_channels, flat.size() / out_channels}),
                                          std::span<const quant::AffineParams>(params), wq.grid());
      const TensorView<const float, 1> bias_view = conv ? TensorView<const float, 1>(conv->bias()) : linear->bias();
      std::vector<float> bias(bias_view.data(), bias_view.data() + bias_view.size());

      // What follows decides the output stage: ReLU + quantizer (fused), a quantizer alone, or nothing (float).
      bool relu = false;
      std::optional<quant::AffineParams> output;
      std::size_t next = i + 1;
      if (is_relu(next)) {
        if (!is_fake(next + 1)) {
          throw value_error(minnow::detail::concat("IntegerNetwork: '", model.layer_name(next), "' after '", name,
                                                   "' has no activation quantizer after it; integer activations need one"));
        }
        relu = true;
        next += 1;
      }
      if (is_fake(next)) {
        output = activation_params(next);
        next += 1;
      } else {
        quantized = false;
        float_from = name;
      }
      if (conv) {
        // A 2×2 stride-2 MaxPool2d right after a requantized conv is fused into it (forward_pooled).
        bool pool2 = false;
        if (output && next < model.size()) {
          const auto* p = dynamic_cast<const nn::MaxPool2d<float>*>(&model.layer(next));
          if (p != nullptr && p->kernel() == 2 && p->stride() == 2) {
            pool2 = true;
            next += 1;
          }
        }
        out.layers.emplace_back(infer::IntegerConv{std::move(weights), conv->in_channels(), conv->kernel(), conv->stride(),
                                                   conv->padding(), std::move(bias), relu, output, pool2});
      } else {
        out.layers.emplace_back(infer::IntegerLinear{std::move(weights), std::move(bias), relu, output});
      }
      i = next;
      continue;
    }
    if (auto* pool = dynamic_cast<nn::MaxPool2d<float>*>(&layer)) {
      out.layers.emplace_back(infer::IntegerMaxPool{pool->kernel(), pool->stride()});
      ++i;
      continue;
    }
    throw value_error(minnow::detail::concat("IntegerNetwork: layer '", name, "' (", layer.describe(), ") is not supported ",
                                             "here; expected Conv2d/QatConvBn2d/Linear [+ ReLU + quantizer], MaxPool2d or Flatten"));
  }
  (void)infer::check_integer_model(out);
  return out;
}

/// @brief An inference-only network on integers: an infer::IntegerModel made runnable (see the file
/// comment), converted from a fake-quantized Sequential or read from a compressed model file
/// (pipeline/compressed_network.hpp). Not thread-safe: forward reuses its buffers.
class IntegerNetwork {
 public:
  /// @brief Runs `model` with the formats `plan` chooses.
  /// @throws value_error or shape_error when the model is not well formed (infer::check_integer_model);
  /// value_error when the plan names a layer the model has no Conv2d / Linear of, asks a Conv2d for a float
  /// format, or has a batch ≤ 0.
  explicit IntegerNetwork(infer::IntegerModel model, const NetworkPlan& plan = {}) : model_(std::move(model)) {
    (void)infer::check_integer_model(model_);
    check_plan(model_, plan);
    input_ = model_.input;
    quant::AffineParams current = input_;
    bool quantized = true;
    for (const auto& layer : model_.layers) {
      if (const auto* c = std::get_if<infer::IntegerConv>(&layer)) {
        stages_.push_back(ConvStage{std::make_unique<infer::QuantizedConv2d>(c->weights, c->in_channels, c->kernel, c->stride,
                                                                             c->padding, c->bias, current, c->relu),
                                    c->output.value_or(quant::AffineParams{}), c->output.has_value(), c->pool2});
        storage_bytes_ += c->weights.bytes() + c->bias.size() * sizeof(float);
        float_bytes_ += static_cast<std::size_t>(c->weights.values.size()) * sizeof(float) + c->bias.size() * sizeof(float);
        formats_.emplace_back(infer::layer_name(layer), LayerFormat::int8);
      } else if (const auto* l = std::get_if<infer::IntegerLinear>(&layer)) {
        const std::string name = infer::layer_name(layer);
        const LayerFormat format = choose(plan, name, l->weights);
        const quant::AffineParams out = l->output.value_or(quant::AffineParams{});
        float_bytes_ += static_cast<std::size_t>(l->weights.values.size()) * sizeof(float) + l->bias.size() * sizeof(float);
        storage_bytes_ += l->bias.size() * sizeof(float);
        if (format != LayerFormat::int8) {
          stages_.push_back(float_linear(l->weights, l->bias, format, plan.batch, current, out, l->relu, l->output.has_value()));
          storage_bytes_ += std::get<FloatLinearStage>(stages_.back()).weight_bytes();
        } else {
          stages_.push_back(LinearStage{std::make_unique<infer::QuantizedLinear>(l->weights, l->bias, current, l->relu), out,
                                        l->output.has_value(), l->relu});
          storage_bytes_ += l->weights.bytes();
        }
        formats_.emplace_back(name, format);
      } else if (const auto* p = std::get_if<infer::IntegerMaxPool>(&layer)) {
        stages_.push_back(PoolStage{infer::QuantizedMaxPool2d(p->kernel, p->stride)});
      } else {
        stages_.push_back(FlattenStage{});
      }
      std::visit(
          [&](const auto& l) {
            if constexpr (requires { l.output; }) {
              if (l.output) current = *l.output;
              quantized = l.output.has_value();
            }
          },
          layer);
    }
    if (quantized) stages_.push_back(DequantizeStage{current});  // ends on an activation quantizer
  }

  /// @brief Converts `model`, which `qmodel` wraps: `IntegerNetwork(to_integer_model(model, qmodel), plan)`.
  template <class WeightQ, class ActivationQ>
  IntegerNetwork(nn::Sequential<float>& model, const QuantizedModel<WeightQ, ActivationQ>& qmodel, const NetworkPlan& plan = {})
      : IntegerNetwork(to_integer_model(model, qmodel), plan) {}

  /// @brief Float NCHW batch in, float output `[N × features]` out (a view of a buffer reused by the next call).
  /// @throws shape_error naming the first layer the input does not fit.
  TensorView<const float, 2> forward(TensorView<const float, 4> x) {
    Shape<4> shape = x.shape();
    a_.resize({std::max<index_t>(1, x.size())});
    infer::quantize_per_tensor<1>(TensorView<const float, 1>(x.data(), {x.size()}), input_, a_.view().slice(0, x.size()));
    for (auto& stage : stages_) {
      std::visit([&](auto& s) { run(s, shape); }, stage);
    }
    return TensorView<const float, 2>(out_.data(), {shape[0], shape[1] * shape[2] * shape[3]});
  }

  /// @brief Mean cross-entropy and accuracy on `data`, in batches of `batch_size`.
  [[nodiscard]] train::Evaluation evaluate(const data::Dataset<float>& data, index_t batch_size = 256) {
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
      if (const auto* f = std::get_if<FloatLinearStage>(&stage)) bytes += f->weight_bytes() + f->bias_bytes();
    }
    return bytes;
  }
  /// Bytes of the int8 weights as stored (one byte per weight, per-channel parameters, float biases),
  /// counted from the Int8Weights buffers when converting.
  [[nodiscard]] std::size_t storage_bytes() const noexcept { return storage_bytes_; }
  /// Bytes of the same weights and biases in fp32 (the model's buffers).
  [[nodiscard]] std::size_t float_bytes() const noexcept { return float_bytes_; }
  /// Each Conv2d / Linear layer's name and the format it runs in, in order.
  [[nodiscard]] const std::vector<std::pair<std::string, LayerFormat>>& formats() const noexcept { return formats_; }
  /// The parameters the input is quantized with.
  [[nodiscard]] quant::AffineParams input_params() const noexcept { return input_; }
  /// What the network computes, as data: what a compressed model file stores.
  [[nodiscard]] const infer::IntegerModel& model() const noexcept { return model_; }

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
    bool pool2 = false;  ///< a fused 2×2 stride-2 max pool follows
    [[nodiscard]] std::string describe() const {
      return "conv(" + conv->name() + ")" + output_text(conv->relu(), requantize, out) + (pool2 ? " + maxpool(2) fused" : "");
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
  /// Ŵ in fp32, dense: an nn::Linear holding the fake-quantized weight (its batch-1 GEMV and batch-N GEMM).
  struct DenseFloatLinear {
    std::unique_ptr<nn::Linear<float>> fc;
    [[nodiscard]] index_t out_features() const noexcept { return fc->out_features(); }
    [[nodiscard]] std::size_t weight_bytes() const noexcept {
      return static_cast<std::size_t>(fc->in_features() * fc->out_features()) * sizeof(float);
    }
    void forward(TensorView<const float, 2> x, TensorView<float, 2> y) {
      const auto out = fc->forward(TensorView<const float, 4>(x.data(), {x.dim(0), x.dim(1), 1, 1}), nn::Mode::eval);
      std::copy(out.data(), out.data() + out.size(), y.data());
    }
  };
  /// A Linear on float: dequantize the uint8 input, multiply, ReLU, quantize (or keep float at the end).
  struct FloatLinearStage {
    std::string name;
    std::variant<DenseFloatLinear, infer::SparseLinear<infer::CsrMatrix>, infer::SparseLinear<infer::BitmapMatrix>,
                 infer::SparseLinear<infer::SlicedMatrix>>
        fc;
    quant::AffineParams in, out;
    bool relu, requantize;
    std::size_t bias_count;
    [[nodiscard]] std::size_t weight_bytes() const {
      return std::visit(
          [](const auto& f) -> std::size_t {
            if constexpr (std::is_same_v<std::decay_t<decltype(f)>, DenseFloatLinear>) {
              return f.weight_bytes();
            } else {
              return f.weights().bytes();
            }
          },
          fc);
    }
    [[nodiscard]] std::size_t bias_bytes() const noexcept { return bias_count * sizeof(float); }
    [[nodiscard]] const char* kind() const noexcept {
      constexpr const char* kinds[] = {"dense fp32", "sparse csr", "sparse bitmap", "sparse sliced"};
      return kinds[fc.index()];
    }
    [[nodiscard]] std::string describe() const {
      return minnow::detail::concat(kind(), " linear(", name, ")", output_text(relu, requantize, out));
    }
  };
  using Stage = std::variant<ConvStage, LinearStage, FloatLinearStage, PoolStage, FlattenStage, DequantizeStage>;

  static void check_plan(const infer::IntegerModel& model, const NetworkPlan& plan) {
    if (plan.batch <= 0) throw value_error(minnow::detail::concat("IntegerNetwork: the plan's batch must be > 0, got ", plan.batch));
    for (const auto& layer : plan.layers) {
      const std::string& name = layer.first;  // not a structured binding: clang 14 cannot capture one
      const auto format = layer.second;
      const auto it = std::find_if(model.layers.begin(), model.layers.end(),
                                   [&](const infer::IntegerLayer& l) { return infer::layer_name(l) == name; });
      const bool conv = it != model.layers.end() && std::holds_alternative<infer::IntegerConv>(*it);
      const bool linear = it != model.layers.end() && std::holds_alternative<infer::IntegerLinear>(*it);
      if (!conv && !linear) {
        throw value_error(minnow::detail::concat("IntegerNetwork: the plan names layer '", name,
                                                 "', which is not a Conv2d or Linear of the model"));
      }
      if (conv && (format == LayerFormat::sparse || format == LayerFormat::dense_float)) {
        throw value_error(minnow::detail::concat("IntegerNetwork: the plan asks Conv2d '", name, "' for ", to_string(format),
                                                 "; a Conv2d runs int8"));
      }
    }
  }

  // The plan's format for Linear `name`, the rule's when it names none.
  static LayerFormat choose(const NetworkPlan& plan, const std::string& name, const infer::Int8Weights& w) {
    if (const auto it = plan.layers.find(name); it != plan.layers.end() && it->second != LayerFormat::automatic) {
      return it->second;
    }
    index_t zeros = 0;  // Ŵ = 0 exactly where q = zero point
    for (index_t j = 0; j < w.rows(); ++j) {
      const auto zp = w.params[static_cast<std::size_t>(j)].zero_point;
      for (index_t k = 0; k < w.cols(); ++k) zeros += w.values(j, k) == zp ? 1 : 0;
    }
    const double sparsity = w.values.size() ? static_cast<double>(zeros) / static_cast<double>(w.values.size()) : 0.0;
    const double from = plan.batch < infer::SparseLinear<infer::CsrMatrix>::kSmallBatch ? plan.sparse_from_batch1
                                                                                      : plan.sparse_from_batched;
    return sparsity >= from ? LayerFormat::sparse : LayerFormat::int8;
  }

  static FloatLinearStage float_linear(const infer::Int8Weights& weights, std::span<const float> bias, LayerFormat format,
                                       index_t batch, quant::AffineParams in, quant::AffineParams out, bool relu,
                                       bool requantize) {
    Tensor<float, 2> w = weights.dequantize();
    const std::vector<float> b(bias.begin(), bias.end());
    FloatLinearStage stage{weights.name.substr(0, weights.name.rfind('.')), DenseFloatLinear{}, in, out, relu, requantize,
                           bias.size()};
    if (format == LayerFormat::dense_float) {
      auto fc = std::make_unique<nn::Linear<float>>(w.dim(1), w.dim(0));
      fc->weight().copy_from(w.view());
      std::copy(b.begin(), b.end(), fc->bias().data());
      stage.fc = DenseFloatLinear{std::move(fc)};
      return stage;
    }
    Tensor<float, 2> mask(w.shape());
    index_t zeros = 0;
    for (index_t i = 0; i < w.size(); ++i) {
      mask.data()[i] = w.data()[i] != 0.0f ? 1.0f : 0.0f;
      zeros += w.data()[i] == 0.0f ? 1 : 0;
    }
    const double sparsity = w.size() ? static_cast<double>(zeros) / static_cast<double>(w.size()) : 0.0;
    const TensorView<const float, 1> bias_view(b.data(), {static_cast<index_t>(b.size())});
    // The sparse format choose_format() picks at this batch size; where it would pick dense (the plan asked
    // for sparse anyway), the batch-N default, bitmap.
    if (batch < infer::SparseLinear<infer::SlicedMatrix>::kSmallBatch) {
      stage.fc.emplace<3>(infer::SlicedMatrix(w.view(), mask.view()), bias_view);
    } else if (infer::choose_format(sparsity, batch) == infer::WeightFormat::csr) {
      stage.fc.emplace<1>(infer::CsrMatrix(w.view(), mask.view()), bias_view);
    } else {
      stage.fc.emplace<2>(infer::BitmapMatrix(w.view(), mask.view()), bias_view);
    }
    return stage;
  }

  TensorView<const std::uint8_t, 4> current(const Shape<4>& shape) const { return {a_.data(), shape}; }

  void run(ConvStage& s, Shape<4>& shape) {
    Shape<4> out_shape = s.conv->output_shape(shape);
    if (s.pool2) out_shape = {out_shape[0], out_shape[1], out_shape[2] / 2, out_shape[3] / 2};
    const index_t count = out_shape[0] * out_shape[1] * out_shape[2] * out_shape[3];
    if (s.requantize) {
      b_.resize({std::max<index_t>(1, count)});
      if (s.pool2) {
        s.conv->forward_pooled(current(shape), s.out, TensorView<std::uint8_t, 4>(b_.data(), out_shape));
      } else {
        s.conv->forward(current(shape), s.out, TensorView<std::uint8_t, 4>(b_.data(), out_shape));
      }
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
  void run(FloatLinearStage& s, Shape<4>& shape) {
    const index_t n = shape[0], in = shape[1] * shape[2] * shape[3];
    const index_t out = std::visit([](const auto& f) { return f.out_features(); }, s.fc);
    fx_.resize({n, in});
    for (index_t i = 0; i < n * in; ++i) {
      fx_.data()[i] = static_cast<float>(a_.data()[i] - s.in.zero_point) * s.in.scale;  // x̂, as the fake quantizer gave it
    }
    fy_.resize({n, out});
    std::visit([&](auto& f) { f.forward(fx_.view(), fy_.view()); }, s.fc);
    float* y = fy_.data();
    if (s.relu) {
      for (index_t i = 0; i < n * out; ++i) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
    }
    if (s.requantize) {
      a_.resize({std::max<index_t>(1, n * out)});
      infer::quantize_per_tensor<1>(TensorView<const float, 1>(y, {n * out}), s.out, a_.view().slice(0, n * out));
    } else {
      out_.resize({std::max<index_t>(1, n * out)});
      std::copy(y, y + n * out, out_.data());
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

  infer::IntegerModel model_;
  quant::AffineParams input_;
  std::vector<Stage> stages_;
  std::size_t storage_bytes_ = 0, float_bytes_ = 0;
  Tensor<std::uint8_t, 1> a_, b_;  // the current uint8 activations and the next layer's
  Tensor<float, 1> out_;
  Tensor<float, 2> fx_, fy_;  // a float layer's input and output
  std::vector<std::pair<std::string, LayerFormat>> formats_;
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
