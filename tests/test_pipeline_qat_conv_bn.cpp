// QatConvBn2d, a convolution trained with its batch norm folded and its weights fake-quantized, against
// PyTorch 1.13's torch.nn.intrinsic.qat.ConvBn2d (fixtures from tests/fixtures/generate_conv_bn_qat.py):
// every training step with batch statistics and with the statistics frozen, eval mode, and the folded
// convolution it converts to.
#include "fixtures.hpp"
#include "test_support.hpp"

#include <minnow/nn.hpp>
#include <minnow/pipeline/qat_conv_bn.hpp>
#include <minnow/quant.hpp>

#include <memory>
#include <random>
#include <string>

using namespace minnow;
using Catch::Matchers::Contains;
using fixtures::max_rel_error;
using fixtures::tensor;

namespace {

// Float sums in another order than PyTorch's; the gradients of γ add up cancelling terms.
constexpr double kTolerance = 2e-5;

using Int8PerTensorAffine = quant::Quantizer<quant::qint8, quant::MinMax, quant::Affine, quant::PerTensor>;

template <class WeightQ>
void check_against_pytorch(const nlohmann::json& c) {
  const auto& p = c.at("params");
  const index_t out = p.at("out");
  auto conv = std::make_unique<nn::Conv2d<float>>(p.at("in"), out, p.at("kernel"), p.at("stride"), p.at("padding"));
  auto bn = std::make_unique<nn::BatchNorm2d<float>>(out, p.at("eps"), p.at("momentum"));
  pipeline::QatConvBn2d<WeightQ> layer(std::move(conv), std::move(bn));
  std::vector<Parameter<float>> parameters;
  layer.collect_parameters("conv1.", parameters);
  REQUIRE(parameters.size() == 4);
  CHECK(parameters[0].name == "conv1.weight");
  CHECK(parameters[2].name == "conv1.bn.weight");
  std::vector<Buffer<float>> buffers;
  layer.collect_buffers("conv1.", buffers);
  REQUIRE(buffers.size() == 2);
  CHECK(buffers[1].name == "conv1.bn.running_var");

  const auto load = [&](const std::string& suffix) {
    layer.conv().weight().copy_from(tensor<float, 4>(c, "weight_" + suffix));
    layer.conv().bias().copy_from(tensor<float, 1>(c, "bias_" + suffix));
    layer.bn().weight().copy_from(tensor<float, 1>(c, "bn_weight_" + suffix));
    layer.bn().bias().copy_from(tensor<float, 1>(c, "bn_bias_" + suffix));
    layer.bn().running_mean().copy_from(tensor<float, 1>(c, "running_mean_" + suffix));
    layer.bn().running_var().copy_from(tensor<float, 1>(c, "running_var_" + suffix));
  };
  const int steps = p.at("steps"), freeze_at = p.at("freeze_bn_at");
  for (int t = 0; t < steps; ++t) {
    INFO("step " << t);
    if (t == freeze_at) layer.freeze_bn_stats();
    CHECK(layer.bn_stats_frozen() == (t >= freeze_at));
    const std::string s = std::to_string(t);
    load("before_" + s);
    const auto x = tensor<float, 4>(c, "x_" + s);  // the layer keeps a view of its input for backward
    CHECK(max_rel_error(layer.forward(x, nn::Mode::train), tensor<float, 4>(c, "y_" + s)) < kTolerance);
    CHECK(max_rel_error(layer.bn().running_mean(), tensor<float, 1>(c, "running_mean_after_" + s)) < kTolerance);
    CHECK(max_rel_error(layer.bn().running_var(), tensor<float, 1>(c, "running_var_after_" + s)) < kTolerance);
    CHECK(max_rel_error(layer.backward(tensor<float, 4>(c, "dy_" + s)), tensor<float, 4>(c, "dx_" + s)) < kTolerance);
    CHECK(max_rel_error(parameters[0].grad, tensor<float, 4>(c, "dweight_" + s)) < kTolerance);
    CHECK(max_rel_error(parameters[1].grad, tensor<float, 1>(c, "dbias_" + s)) < kTolerance);
    CHECK(max_rel_error(parameters[2].grad, tensor<float, 1>(c, "dbn_weight_" + s)) < kTolerance);
    CHECK(max_rel_error(parameters[3].grad, tensor<float, 1>(c, "dbn_bias_" + s)) < kTolerance);
  }

  // Eval mode: the running statistics normalize and stay as they are.
  layer.update_bn_stats();
  load("eval");
  const auto x = tensor<float, 4>(c, "x_eval");
  CHECK(max_rel_error(layer.forward(x, nn::Mode::eval), tensor<float, 4>(c, "y_eval")) < kTolerance);
  CHECK(max_rel_error(layer.bn().running_var(), tensor<float, 1>(c, "running_var_eval")) == 0.0);

  // The folded convolution equals PyTorch's to_float() (the bias up to a contracted multiply-add), and
  // with its weights fake-quantized by the layer's quantizer it computes what the layer does in eval mode.
  auto folded = layer.folded();
  CHECK(max_rel_error(folded.weight(), tensor<float, 4>(c, "folded_weight")) == 0.0);
  CHECK(max_rel_error(folded.bias(), tensor<float, 1>(c, "folded_bias")) < 1e-6);
  const auto w = folded.weight();
  layer.weight_quantizer().fake_quantize(TensorView<const float, 1>(w.reshape(Shape<1>{w.size()})),
                                         {w.dim(0), w.dim(1), w.dim(2), w.dim(3)}, w.reshape(Shape<1>{w.size()}));
  CHECK(max_rel_error(folded.forward(x, nn::Mode::eval), tensor<float, 4>(c, "y_eval")) < kTolerance);
}

}  // namespace

TEST_CASE("QatConvBn2d matches PyTorch's qat.ConvBn2d: training steps, frozen statistics, eval and folding") {
  const auto cases = fixtures::cases("conv_bn_qat.json", "conv_bn_qat");
  REQUIRE(cases.size() == 2);
  for (const auto& c : cases) {
    SECTION(c.at("name").get<std::string>()) {
      const std::string scheme = c.at("params").at("weight_scheme");
      if (scheme == "per_channel_symmetric") {
        check_against_pytorch<quant::Int8PerChannelSymmetric>(c);
      } else {
        REQUIRE(scheme == "per_tensor_affine");
        check_against_pytorch<Int8PerTensorAffine>(c);
      }
    }
  }
}

TEST_CASE("QatConvBn2d refuses a batch norm of another width and missing layers, naming them") {
  using Layer = pipeline::QatConvBn2d<quant::Int8PerChannelSymmetric>;
  CHECK_REFUSED(Layer(std::make_unique<nn::Conv2d<float>>(1, 3, 3), std::make_unique<nn::BatchNorm2d<float>>(4)),
                shape_error, Contains("has 3 output channels") && Contains("BatchNorm2d(4"));
  CHECK_REFUSED(Layer(nullptr, std::make_unique<nn::BatchNorm2d<float>>(4)), value_error, Contains("must be given"));
  Layer layer(std::make_unique<nn::Conv2d<float>>(2, 3, 3), std::make_unique<nn::BatchNorm2d<float>>(3));
  CHECK_REFUSED((void)layer.forward(Tensor<float, 4>({1, 1, 5, 5}), nn::Mode::train), shape_error, Contains("Conv2d"));
}

TEST_CASE("QatConvBn2d observes its scaled weights when built, so a quantizer frozen at once has their range") {
  std::mt19937_64 rng(3);
  auto conv = std::make_unique<nn::Conv2d<float>>(2, 3, 3);
  conv->reset_parameters(rng);
  pipeline::QatConvBn2d<quant::Int8PerChannelSymmetric> layer(std::move(conv), std::make_unique<nn::BatchNorm2d<float>>(3));
  layer.weight_quantizer().freeze();
  const auto& params = layer.weight_quantizer().params();
  REQUIRE(params.size() == 3);
  // With γ = 1 and running_var = 1, W·s is the folded weight bit for bit: a fresh quantizer on it agrees.
  const auto folded = layer.folded();
  const auto w = folded.weight();
  quant::Int8PerChannelSymmetric fresh;
  fresh.observe(w.reshape(Shape<1>{w.size()}), {3, 2, 3, 3});
  const auto& expected = fresh.calculate_params();
  for (std::size_t c = 0; c < 3; ++c) {
    CHECK(params[c].scale == expected[c].scale);
    CHECK(params[c].zero_point == expected[c].zero_point);
  }
}
