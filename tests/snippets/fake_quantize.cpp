// README "One call each": fake-quantize a tensor with PyTorch's default scheme (quint8, per-tensor affine,
// min/max). The code between the snippet markers appears verbatim in README.md.
#include "../test_support.hpp"

#include <minnow/quant.hpp>
#include <minnow/tensor.hpp>

#include <cmath>
#include <type_traits>
#include <vector>

using Catch::Matchers::Contains;
using minnow::index_t;
using minnow::Tensor;
using minnow::TensorView;

namespace {

/// 32 activations in [−0.5, 1.4921875]: the range is 255/128 wide, so the scale is exactly 1/128 and the
/// zero point 64, and every expected value below is exact.
void fill_activations(minnow::TensorView<float, 2> x) {
  const float values[32] = {-0.5f, 0.0f,  0.01f,  0.1f,  0.3f,   1.4921875f, 0.25f,  -0.2f,  //
                            0.7f,  0.05f, -0.33f, 0.9f,  1.2f,   0.004f,     -0.004f, 0.45f,  //
                            0.6f,  0.8f,  1.0f,   1.1f,  -0.1f,  -0.45f,     0.333f, 0.666f, //
                            0.12f, 0.13f, 0.14f,  0.15f, 0.01171875f, 0.01953125f, 1.3f, 1.4f};
  for (index_t i = 0; i < 32; ++i) x.data()[i] = values[i];
}

}  // namespace

TEST_CASE("fake_quantize: PyTorch's default scheme puts values on the uint8 grid", "[snippets][quant]") {
  // snippet begin: fake_quantize
  minnow::Tensor<float, 2> x({4, 8}), y({4, 8});   // activations and their fake-quantized copy
  fill_activations(x);
  minnow::quant::PerTensorAffine q;                // = Quantizer<>: quint8, MinMax, affine, per tensor
  q.observe(x);                                    // min and max so far: scale 1/128, zero point 64
  q.fake_quantize(x, y);                           // y = (clamp(zp + rint(x / s), 0, 255) − zp) · s
  // snippet end

  static_assert(std::is_same_v<minnow::quant::PerTensorAffine, minnow::quant::Quantizer<>>);
  static_assert(std::is_same_v<minnow::quant::Quantizer<>, minnow::quant::Quantizer<minnow::quant::quint8, minnow::quant::MinMax,
                                                                                    minnow::quant::Affine, minnow::quant::PerTensor>>);
  REQUIRE(q.params().size() == 1);
  CHECK(q.params().front().scale == 1.0f / 128.0f);
  CHECK(q.params().front().zero_point == 64);
  // Hand-computed grid values (multiples of 1/128).
  CHECK(y(0, 0) == -0.5f);        // q = 0, the bottom of the grid
  CHECK(y(0, 1) == 0.0f);         // zero is exact: q = 64
  CHECK(y(0, 2) == 0.0078125f);   // 0.01 · 128 = 1.28 → 1
  CHECK(y(0, 3) == 0.1015625f);   // 12.8 → 13
  CHECK(y(0, 4) == 0.296875f);    // 38.4 → 38
  CHECK(y(0, 5) == 1.4921875f);   // q = 255, the top
  CHECK(y(1, 5) == 0.0078125f);   // 0.004 · 128 = 0.512 → 1
  CHECK(y(1, 6) == -0.0078125f);  // −0.512 → −1
  CHECK(y(3, 4) == 0.015625f);    // 1.5 → 2 (half to even)
  CHECK(y(3, 5) == 0.015625f);    // 2.5 → 2 (half to even)
  for (index_t i = 0; i < 32; ++i) {
    INFO("element " << i << " = " << x.data()[i]);
    CHECK(y.data()[i] == std::nearbyint(x.data()[i] * 128.0f) / 128.0f);
  }
}

TEST_CASE("Quantizer takes brace-list shapes and deduces the element type", "[snippets][quant]") {
  // A flat buffer holding a weight [2, 4], one symmetric int8 scale per row: row 0 spans ±127.5/64, so its
  // scale is exactly 1/64; row 1 spans ±127.5/32, scale 1/32.
  float w[8] = {1.9921875f, -1.9921875f, 0.1f, -0.3f, 3.984375f, 0.1f, -3.984375f, 1.0f};
  float out[8] = {};
  const TensorView<const float, 1> flat(w, {8});
  minnow::quant::Int8PerChannelSymmetric q;
  q.observe(flat, {2, 4});
  q.fake_quantize(flat, {2, 4}, TensorView<float, 1>(out, {8}));  // no <float>: deduced from the output
  REQUIRE(q.params().size() == 2);
  CHECK(q.params()[0].scale == 1.0f / 64.0f);
  CHECK(q.params()[1].scale == 1.0f / 32.0f);
  CHECK(out[0] == 127.0f / 64.0f);   // 127.5 → 128 (half to even), clamped to 127
  CHECK(out[1] == -2.0f);            // −127.5 → −128, the bottom of the grid
  CHECK(out[2] == 6.0f / 64.0f);     // 6.4 → 6
  CHECK(out[3] == -19.0f / 64.0f);   // −19.2 → −19
  CHECK(out[4] == 127.0f / 32.0f);
  CHECK(out[5] == 3.0f / 32.0f);     // 3.2 → 3
  CHECK(out[7] == 1.0f);

  // The same through a rank-2 view, which carries the shape.
  Tensor<float, 2> w2({2, 4}), out2({2, 4});
  for (index_t i = 0; i < 8; ++i) w2.data()[i] = w[i];
  minnow::quant::Int8PerChannelSymmetric q2;
  q2.observe(w2.view());
  q2.fake_quantize(w2.view(), out2.view());
  for (index_t i = 0; i < 8; ++i) CHECK(out2.data()[i] == out[i]);

  // backward with a brace-list shape: the straight-through gradient passes inside the grid only.
  float dy[8] = {1, 1, 1, 1, 1, 1, 1, 1}, dx[8] = {};
  q.backward(flat, {2, 4}, TensorView<const float, 1>(dy, {8}), TensorView<float, 1>(dx, {8}));
  CHECK(dx[2] == 1.0f);

  // A vector shape still works, and so does the explicit element type.
  const std::vector<index_t> shape{2, 4};
  q.fake_quantize(flat, shape, TensorView<float, 1>(out, {8}));
  q.fake_quantize<float>(flat, shape, TensorView<float, 1>(out, {8}));
}

TEST_CASE("Quantizer shape overloads refuse what does not fit", "[snippets][quant]") {
  Tensor<float, 2> x({4, 8}, 0.5f), wrong({8, 4}, 3.0f);
  minnow::quant::Quantizer<> q;
  CHECK_REFUSED(q.observe(TensorView<const float, 1>(x.data(), {32}), {3, 8}), minnow::shape_error,
                Contains("Quantizer::observe: shape [3, 8] has 24 elements, the values 32"));
  CHECK_FALSE(q.observed());
  q.observe(x);
  const auto before = test_support::raw(wrong);
  CHECK_REFUSED(q.fake_quantize(x, wrong), minnow::shape_error,
                Contains("Quantizer::fake_quantize: y has shape [8, 4], expected [4, 8]"));
  CHECK(test_support::raw(wrong) == before);
  Tensor<float, 1> y({32});
  CHECK_REFUSED(q.fake_quantize(TensorView<const float, 1>(x.data(), {32}), {4, 7}, y.view()), minnow::shape_error,
                Contains("Quantizer::fake_quantize: shape [4, 7] has 28 elements, the values 32"));
  // A per-channel quantizer whose axis the view's rank does not have.
  minnow::quant::Quantizer<minnow::quant::qint8, minnow::quant::MinMax, minnow::quant::Symmetric, minnow::quant::PerChannel> per_channel(
      minnow::quant::PerChannel{2});
  CHECK_REFUSED(per_channel.observe(x), minnow::shape_error, Contains("PerChannel::layout: axis 2 is out of range for shape [4, 8]"));
}
