// README "One call each": an int8 Linear (or Conv2d) built from a float layer, and a float batch
// quantized to uint8. The code between the snippet markers appears verbatim in README.md.
#include "../test_support.hpp"

#include <minnow/infer/from_float.hpp>
#include <minnow/nn/conv2d.hpp>
#include <minnow/nn/linear.hpp>
#include <minnow/quant.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

using Catch::Matchers::Contains;
using minnow::index_t;
using minnow::Tensor;
using minnow::TensorView;
namespace infer = minnow::infer;
namespace nn = minnow::nn;
namespace quant = minnow::quant;

namespace {

/// PyTorch's default initialisation from a fixed seed: a "trained" layer for the test.
template <class Layer>
void init_layer(Layer& layer) {
  std::mt19937_64 rng(7);
  layer.reset_parameters(rng);
}

/// Values in [−0.5, 1.4921875] including both ends: the input's scale is exactly 1/128, its zero point 64.
void fill_batch(TensorView<float, 2> x) {
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = -0.5f + static_cast<float>((i * 37) % 256) / 128.0f;
  x.data()[0] = -0.5f;
  x.data()[1] = 1.4921875f;
}

/// The fake-quantized copy of a tensor through a quantizer that observes it first.
template <class Q, std::size_t R>
Tensor<float, R> fake_quantized(Q quantizer, TensorView<const float, R> x) {
  Tensor<float, R> out(x.shape());
  quantizer.observe(x);
  quantizer.fake_quantize(x, out.view());
  return out;
}

/// Σ x̂·ŵ + bias in double, and Σ |x̂·ŵ| + |bias|, the scale of the float rounding in the integer layer's output.
struct DotProduct {
  double value = 0.0, magnitude = 0.0;
  explicit DotProduct(float bias) : value(bias), magnitude(std::abs(bias)) {}
  void add(float x_hat, float w_hat) {
    value += static_cast<double>(x_hat) * w_hat;
    magnitude += std::abs(static_cast<double>(x_hat) * w_hat);
  }
  /// The integer layer computes the same integers and rounds once.
  [[nodiscard]] bool matches(double y) const { return std::abs(y - value) <= 1e-6 * magnitude + 1e-7; }
};

}  // namespace

TEST_CASE("int8: a float Linear becomes an int8 one in one call", "[snippets][infer]") {
  // snippet begin: int8
  minnow::nn::Linear<float> fc(8, 4);                    // your trained float layer
  init_layer(fc);
  minnow::Tensor<float, 2> x({2, 8}), y({2, 4});
  fill_batch(x);
  minnow::quant::Quantizer<> calibration;                // PyTorch's default activation scheme
  calibration.observe(x);                                // a calibration batch
  const auto in = calibration.calculate_params().front();  // the input's scale and zero point
  auto qfc = minnow::infer::from_float(fc, in);          // int8 weights, a scale per output row
  qfc.forward(x, y);                                     // uint8 × int8 product, float out
  auto xq = minnow::infer::quantize_per_tensor(x, in);   // uint8 [2, 8]: PyTorch's int_repr()
  // snippet end

  REQUIRE(in.scale == 1.0f / 128.0f);
  REQUIRE(in.zero_point == 64);
  // uint8 input: zp + rint(x / s), by hand for the two ends and checked by formula for the rest.
  CHECK(xq(0, 0) == 0);
  CHECK(xq(0, 1) == 255);
  for (index_t i = 0; i < x.size(); ++i) {
    CHECK(static_cast<int>(xq.data()[i]) == 64 + static_cast<int>(std::nearbyint(x.data()[i] * 128.0f)));
  }

  // The expectation from the float layer: x̂ (fake-quantized input) times Ŵ (the weight fake-quantized
  // per output row, int8 symmetric), plus the float bias, summed in double.
  const auto w = fc.weight();
  const auto b = fc.bias();
  const Tensor<float, 2> x_hat = fake_quantized(quant::Quantizer<>{}, TensorView<const float, 2>(x.view()));
  const Tensor<float, 2> w_hat = fake_quantized(quant::Int8PerChannelSymmetric{}, TensorView<const float, 2>(w));
  for (index_t n = 0; n < 2; ++n) {
    for (index_t o = 0; o < 4; ++o) {
      DotProduct expected(b(o));
      double exact = b(o), bound = 0.0;
      float w_scale = 0.0f;
      for (index_t j = 0; j < 8; ++j) w_scale = std::max(w_scale, std::abs(w(o, j)) / 127.5f);
      for (index_t j = 0; j < 8; ++j) {
        expected.add(x_hat(n, j), w_hat(o, j));
        exact += static_cast<double>(x(n, j)) * w(o, j);
        // |x̂ŵ − xw| ≤ |x|·sw/2 + |w|·sx/2 + sx·sw/4: half a step of each factor.
        bound += std::abs(x(n, j)) * w_scale / 2 + std::abs(w(o, j)) * in.scale / 2 + in.scale * w_scale / 4;
      }
      INFO("row " << n << ", output " << o);
      INFO("y = " << y(n, o) << ", expected " << expected.value << ", float layer " << exact);
      CHECK(expected.matches(y(n, o)));
      CHECK(std::abs(y(n, o) - exact) <= bound + 1e-6);  // within the quantization step of the float layer
    }
  }
}

TEST_CASE("int8: a float Conv2d becomes an int8 one in one call", "[snippets][infer]") {
  nn::Conv2d<float> conv(2, 3, 3, 1, 1);
  init_layer(conv);
  Tensor<float, 4> x({1, 2, 5, 5}), y({1, 3, 5, 5});
  fill_batch(x.view().reshape<2>(1, 50));
  quant::Quantizer<> calibration;
  calibration.observe(x);
  const quant::AffineParams in = calibration.calculate_params().front();
  auto qconv = infer::from_float(conv, in, /*relu=*/true);
  CHECK(qconv.name() == "Conv2d(2, 3, kernel=3, stride=1, padding=1)");
  qconv.forward(x, y);

  const auto w = conv.weight();
  const auto b = conv.bias();
  const Tensor<float, 4> x_hat = fake_quantized(quant::Quantizer<>{}, TensorView<const float, 4>(x.view()));
  const Tensor<float, 4> w_hat = fake_quantized(quant::Int8PerChannelSymmetric{}, TensorView<const float, 4>(w));
  for (index_t o = 0; o < 3; ++o) {
    for (index_t r = 0; r < 5; ++r) {
      for (index_t c = 0; c < 5; ++c) {
        DotProduct expected(b(o));
        for (index_t ci = 0; ci < 2; ++ci) {
          for (index_t i = 0; i < 3; ++i) {
            for (index_t j = 0; j < 3; ++j) {
              const index_t rr = r + i - 1, cc = c + j - 1;
              if (rr < 0 || rr >= 5 || cc < 0 || cc >= 5) continue;
              expected.add(x_hat(0, ci, rr, cc), w_hat(o, ci, i, j));
            }
          }
        }
        INFO("output " << o << ", pixel (" << r << ", " << c << ")");
        expected.value = std::max(expected.value, 0.0);  // the fused ReLU
        INFO("y = " << y(0, o, r, c) << ", expected " << expected.value);
        CHECK(expected.matches(y(0, o, r, c)));
      }
    }
  }
}

TEST_CASE("int8: from_float takes any uniform weight quantizer whose channels are the rows", "[snippets][infer]") {
  nn::Linear<float> fc(8, 4);
  init_layer(fc);
  const quant::AffineParams in{1.0f / 128.0f, 64};
  // One scale for the whole weight: every row gets it.
  auto per_tensor = infer::from_float(fc, in, false, quant::Int8PerTensorSymmetric{});
  CHECK(per_tensor.out_features() == 4);
  CHECK(per_tensor.in_features() == 8);
  // A const layer converts too.
  const nn::Linear<float>& const_fc = fc;
  auto from_const = infer::from_float(const_fc, in);
  CHECK(from_const.input_params().scale == in.scale);

  using PerChannelOnInputs = quant::Quantizer<quant::qint8, quant::MinMax, quant::Symmetric, quant::PerChannel>;
  CHECK_REFUSED((void)infer::from_float(fc, in, false, PerChannelOnInputs(quant::PerChannel{1})), minnow::value_error,
                Contains("infer: weight 'Linear(8, 4)' [4, 8]: the quantizer has 8 channels, expected one per output channel (4, axis 0) or one for all"));
  CHECK_REFUSED((void)infer::from_float(fc, in, false, quant::Quantizer<>{}), minnow::value_error,
                Contains("infer: weight 'Linear(8, 4)': grid [0, 255] must lie within int8 [-128, 127]"));
  CHECK_REFUSED((void)infer::from_float(fc, quant::AffineParams{0.0f, 0}), minnow::value_error,
                Contains("QuantizedLinear 'Linear(8, 4)' (input): scale must be positive"));
  CHECK_REFUSED((void)infer::from_float(fc, quant::AffineParams{0.1f, 300}), minnow::value_error,
                Contains("QuantizedLinear 'Linear(8, 4)' (input): zero point 300 is outside the grid [0, 255]"));
  fc.weight()(1, 2) = std::numeric_limits<float>::quiet_NaN();
  CHECK_REFUSED((void)infer::from_float(fc, in), minnow::value_error, Contains("infer: weight 'Linear(8, 4)' element 10 is nan"));
}

TEST_CASE("int8: quantize_per_tensor refuses bad parameters and shapes before writing", "[snippets][infer]") {
  Tensor<float, 2> x({2, 8}, 0.25f);
  x(1, 3) = std::numeric_limits<float>::quiet_NaN();
  Tensor<std::uint8_t, 2> q({2, 8}, 7), wrong({8, 2}, 7);
  infer::quantize_per_tensor(x, {0.5f, 3}, q.view());
  CHECK(q(0, 0) == 3);   // 3 + rint(0.5) = 3 + 0 (half to even)
  CHECK(q(1, 3) == 0);   // NaN → 0
  const auto before = test_support::raw(wrong);
  CHECK_REFUSED(infer::quantize_per_tensor(x, {0.5f, 3}, wrong.view()), minnow::shape_error,
                Contains("infer::quantize_per_tensor: q [8, 2] does not match x [2, 8]"));
  CHECK_REFUSED(infer::quantize_per_tensor(x, {-1.0f, 3}, q.view()), minnow::value_error,
                Contains("infer::quantize_per_tensor: scale must be positive"));
  CHECK_REFUSED((void)infer::quantize_per_tensor(x.view(), {0.5f, 256}), minnow::value_error,
                Contains("infer::quantize_per_tensor: zero point 256 is outside the grid [0, 255]"));
  CHECK(test_support::raw(wrong) == before);
  // Rank 4 (an NCHW batch) and a read-only view.
  Tensor<float, 4> batch({1, 1, 2, 2}, 1.0f);
  const auto q4 = infer::quantize_per_tensor(TensorView<const float, 4>(batch.view()), {1.0f / 128.0f, 64});
  CHECK(q4(0, 0, 1, 1) == 192);
}
