// BatchNorm2d, AvgPool2d, GlobalAvgPool2d and Dropout: forward, backward and running statistics against
// PyTorch 1.13 (fixtures from tests/fixtures/generate_nn_norm_pool.py) and the exact rules (eval-mode
// identity, dropout scaling, refused arguments). Their finite-difference checks are in test_nn_gradcheck.cpp.
#include "fixtures.hpp"
#include "test_support.hpp"

#include <minnow/nn.hpp>

#include <cmath>

using namespace minnow;
using Catch::Matchers::Contains;
using fixtures::max_rel_error;
using fixtures::tensor;

namespace {
constexpr double kTolerance = 1e-5;
}  // namespace

TEST_CASE("BatchNorm2d matches PyTorch in train and eval mode, running statistics included") {
  for (const auto& c : fixtures::cases("nn_norm_pool.json", "batchnorm2d")) {
    SECTION(c.at("name").get<std::string>()) {
      const auto& p = c.at("params");
      const bool affine = p.at("affine"), train = p.at("train");
      nn::BatchNorm2d<float> bn(p.at("channels"), p.at("eps"), p.at("momentum"), affine);
      bn.running_mean().copy_from(tensor<float, 1>(c, "running_mean_before"));
      bn.running_var().copy_from(tensor<float, 1>(c, "running_var_before"));
      if (affine) {
        bn.weight().copy_from(tensor<float, 1>(c, "weight"));
        bn.bias().copy_from(tensor<float, 1>(c, "bias"));
      }
      const auto x = tensor<float, 4>(c, "x");  // the layer keeps a view of its input for backward
      const auto y = bn.forward(x, train ? nn::Mode::train : nn::Mode::eval);
      CHECK(max_rel_error(y, tensor<float, 4>(c, "y")) < kTolerance);
      CHECK(max_rel_error(bn.running_mean(), tensor<float, 1>(c, "running_mean")) < kTolerance);
      CHECK(max_rel_error(bn.running_var(), tensor<float, 1>(c, "running_var")) < kTolerance);
      CHECK(max_rel_error(bn.backward(tensor<float, 4>(c, "dy")), tensor<float, 4>(c, "dx")) < kTolerance);
      std::vector<Parameter<float>> params;
      bn.collect_parameters("bn.", params);
      REQUIRE(params.size() == (affine ? 2u : 0u));
      if (affine) {
        CHECK(params[0].name == "bn.weight");
        CHECK(max_rel_error(params[0].grad, tensor<float, 1>(c, "dweight")) < kTolerance);
        CHECK(max_rel_error(params[1].grad, tensor<float, 1>(c, "dbias")) < kTolerance);
      }
      std::vector<Buffer<float>> buffers;
      bn.collect_buffers("bn.", buffers);
      REQUIRE(buffers.size() == 2);
      CHECK(buffers[0].name == "bn.running_mean");
      CHECK(buffers[1].name == "bn.running_var");
    }
  }
}

TEST_CASE("AvgPool2d matches PyTorch (padding counted, floor mode, overlapping windows)") {
  for (const auto& c : fixtures::cases("nn_norm_pool.json", "avgpool2d")) {
    SECTION(c.at("name").get<std::string>()) {
      const auto& p = c.at("params");
      nn::AvgPool2d<float> pool(p.at("kernel"), p.at("stride"), p.at("padding"));
      const auto y = pool.forward(tensor<float, 4>(c, "x"), nn::Mode::train);
      REQUIRE(y.shape() == tensor<float, 4>(c, "y").shape());
      CHECK(max_rel_error(y, tensor<float, 4>(c, "y")) == 0.0);  // the same sums in the same order, then a division
      CHECK(max_rel_error(pool.backward(tensor<float, 4>(c, "dy")), tensor<float, 4>(c, "dx")) < kTolerance);
    }
  }
}

TEST_CASE("GlobalAvgPool2d matches PyTorch's AdaptiveAvgPool2d(1)") {
  for (const auto& c : fixtures::cases("nn_norm_pool.json", "global_avgpool2d")) {
    SECTION(c.at("name").get<std::string>()) {
      nn::GlobalAvgPool2d<float> pool;
      const auto y = pool.forward(tensor<float, 4>(c, "x"), nn::Mode::train);
      REQUIRE(y.shape() == tensor<float, 4>(c, "y").shape());
      CHECK(max_rel_error(y, tensor<float, 4>(c, "y")) < kTolerance);
      CHECK(max_rel_error(pool.backward(tensor<float, 4>(c, "dy")), tensor<float, 4>(c, "dx")) < kTolerance);
    }
  }
}

TEST_CASE("BatchNorm2d: eval mode changes no statistic and repeats exactly, and a 1-value channel cannot train") {
  nn::BatchNorm2d<float> bn(2);
  Tensor<float, 4> x({3, 2, 2, 2});
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(i % 7) - 2.5f;
  (void)bn.forward(x, nn::Mode::train);
  const Tensor<float, 1> mean(bn.running_mean()), var(bn.running_var());
  const Tensor<float, 4> first(bn.forward(x, nn::Mode::eval));
  const Tensor<float, 4> second(bn.forward(x, nn::Mode::eval));
  CHECK(max_rel_error(first, second) == 0.0);
  CHECK(max_rel_error(bn.running_mean(), mean) == 0.0);
  CHECK(max_rel_error(bn.running_var(), var) == 0.0);
  // Channel 0 over 12 values: (x − mean) / √(var + eps) has mean 0 and biased variance var / (var + eps).
  const Tensor<float, 4> y(bn.forward(x, nn::Mode::train));
  double sum = 0.0;
  for (index_t s = 0; s < 3; ++s) {
    for (index_t i = 0; i < 4; ++i) sum += y.data()[s * 8 + i];
  }
  CHECK(std::abs(sum) < 1e-5);

  Tensor<float, 4> single({1, 2, 1, 1});
  CHECK_REFUSED((void)bn.forward(single, nn::Mode::train), value_error, Contains("more than one value per channel"));
  CHECK_NOTHROW((void)bn.forward(single, nn::Mode::eval));
  CHECK_REFUSED((void)bn.forward(Tensor<float, 4>({2, 3, 2, 2}), nn::Mode::eval), shape_error, Contains("3 channels, expected 2"));
}

TEST_CASE("Dropout: identity in eval mode, zeros with probability p and scales survivors by 1 / (1 - p) in training") {
  Tensor<float, 4> x({4, 8, 16, 16});
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = 1.0f + static_cast<float>(i % 13);
  nn::Dropout<float> drop(0.25, 7);
  const auto same = drop.forward(x, nn::Mode::eval);
  CHECK(same.data() == x.data());  // no copy
  CHECK(drop.backward(same).data() == same.data());

  const Tensor<float, 4> y(drop.forward(x, nn::Mode::train));
  index_t dropped = 0;
  for (index_t i = 0; i < x.size(); ++i) {
    if (y.data()[i] == 0.0f) {
      ++dropped;
    } else {
      REQUIRE(y.data()[i] == x.data()[i] * static_cast<float>(1.0 / 0.75));
    }
  }
  // 8192 Bernoulli(0.25) draws: the count lies within 5 standard deviations (39) of 2048.
  CHECK(std::abs(static_cast<double>(dropped) - 2048.0) < 5 * 39.2);
  Tensor<float, 4> ones({4, 8, 16, 16});
  ones.array() = 1.0f;
  const auto dx = drop.backward(ones);
  CHECK(max_rel_error(dx, drop.mask()) == 0.0);

  // Same seed, same batches: same masks; the next batch gets a new mask.
  nn::Dropout<float> again(0.25, 7);
  CHECK(max_rel_error(Tensor<float, 4>(again.forward(x, nn::Mode::train)), y) == 0.0);
  CHECK(max_rel_error(Tensor<float, 4>(again.forward(x, nn::Mode::train)), y) > 0.0);

  nn::Dropout<float> all(1.0, 1);
  CHECK((Tensor<float, 4>(all.forward(x, nn::Mode::train)).array() == 0.0f).all());
  nn::Dropout<float> none(0.0, 1);
  CHECK(none.forward(x, nn::Mode::train).data() == x.data());
}

TEST_CASE("normalization and averaging layers refuse bad arguments, naming them") {
  CHECK_REFUSED(nn::BatchNorm2d<float>(0), value_error, Contains("channels 0 must be positive"));
  CHECK_REFUSED(nn::BatchNorm2d<float>(4, 0.0), value_error, Contains("eps 0"));
  CHECK_REFUSED(nn::BatchNorm2d<float>(4, 1e-5, 1.5), value_error, Contains("momentum 1.5"));
  CHECK_REFUSED(nn::BatchNorm2d<float>(4, std::nan("")), value_error, Contains("eps"));
  CHECK_REFUSED(nn::AvgPool2d<float>(0), value_error, Contains("kernel 0"));
  CHECK_REFUSED(nn::AvgPool2d<float>(3, 1, 2), value_error, Contains("padding 2"));
  CHECK_REFUSED((void)nn::AvgPool2d<float>(3).output_shape({1, 1, 2, 5}), shape_error, Contains("smaller than the window"));
  CHECK_REFUSED(nn::Dropout<float>(-0.1), value_error, Contains("p -0.1"));
  CHECK_REFUSED(nn::Dropout<float>(std::nan("")), value_error, Contains("must lie in [0, 1]"));
  nn::AvgPool2d<float> pool(2);
  (void)pool.forward(Tensor<float, 4>({1, 1, 4, 4}), nn::Mode::train);
  CHECK_REFUSED((void)pool.backward(Tensor<float, 4>({1, 1, 3, 3})), shape_error, Contains("AvgPool2d.backward"));
}

TEST_CASE("fold_batchnorm matches PyTorch's fuse_conv_bn_eval, and fold_batchnorms removes the folded layers") {
  for (const auto& c : fixtures::cases("nn_norm_pool.json", "fuse_conv_bn")) {
    SECTION(c.at("name").get<std::string>()) {
      const auto& p = c.at("params");
      const bool affine = p.at("affine");
      nn::Sequential<float> net;
      auto& conv = net.add("conv", nn::Conv2d<float>(p.at("in"), p.at("out"), p.at("kernel"), 1, p.at("padding")));
      auto& bn = net.add("bn", nn::BatchNorm2d<float>(p.at("out"), p.at("eps"), 0.1, affine));
      net.add("relu", nn::ReLU<float>());
      conv.weight().copy_from(tensor<float, 4>(c, "weight"));
      conv.bias().copy_from(tensor<float, 1>(c, "bias"));
      bn.running_mean().copy_from(tensor<float, 1>(c, "running_mean"));
      bn.running_var().copy_from(tensor<float, 1>(c, "running_var"));
      if (affine) {
        bn.weight().copy_from(tensor<float, 1>(c, "bn_weight"));
        bn.bias().copy_from(tensor<float, 1>(c, "bn_bias"));
      }
      const auto x = tensor<float, 4>(c, "x");
      Tensor<float, 4> relu_of_y(tensor<float, 4>(c, "y"));
      relu_of_y.array() = relu_of_y.array().max(0.0f);
      CHECK(max_rel_error(net.forward(x, nn::Mode::eval), relu_of_y) < kTolerance);

      CHECK(nn::fold_batchnorms(net) == std::vector<std::string>{"bn"});
      REQUIRE(net.size() == 2);
      CHECK(net.layer_name(1) == "relu");
      // The same products in the same order as PyTorch's; a compiler may contract the bias's multiply-add.
      CHECK(max_rel_error(conv.weight(), tensor<float, 4>(c, "fused_weight")) == 0.0);
      CHECK(max_rel_error(conv.bias(), tensor<float, 1>(c, "fused_bias")) < 1e-6);
      Tensor<float, 4> relu_of_fused(tensor<float, 4>(c, "y_fused"));
      relu_of_fused.array() = relu_of_fused.array().max(0.0f);
      CHECK(max_rel_error(net.forward(x, nn::Mode::eval), relu_of_fused) < kTolerance);
      CHECK(nn::fold_batchnorms(net).empty());
    }
  }
  nn::Conv2d<float> conv(1, 3, 3);
  nn::BatchNorm2d<float> bn(4);
  CHECK_REFUSED(nn::fold_batchnorm(conv, bn), shape_error, Contains("has 3 output channels") && Contains("normalizes 4"));
}
