// infer/quantized_conv2d.hpp, infer/quantized_maxpool.hpp, pipeline/integer_network.hpp: the integer conv
// against the scalar integer oracle bit for bit on every tail, the uint8 pool against nn::MaxPool2d, the
// integer network against the fake-quant network (logits and Fashion-MNIST accuracy), and the typed errors.
#include <minnow/data/fashion_mnist.hpp>
#include <minnow/infer/quantized_conv2d.hpp>
#include <minnow/infer/quantized_maxpool.hpp>
#include <minnow/infer/reference.hpp>
#include <minnow/nn.hpp>
#include <minnow/pipeline/integer_network.hpp>
#include <minnow/pipeline/quantize_model.hpp>
#include <minnow/prune/criteria.hpp>
#include <minnow/quant.hpp>
#include <minnow/train.hpp>

#include <catch2/catch.hpp>

#include "conv_problem.hpp"
#include "test_support.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <vector>

using namespace minnow;
using quant::AffineParams;

namespace {

struct ConvCase {
  index_t n, c, h, w, o, k, stride, pad;
};

using test_support::ConvProblem;

ConvProblem make_conv_problem(const ConvCase& cc, std::mt19937& rng, bool zero_points) {
  return test_support::make_conv_problem(cc.n, cc.c, cc.h, cc.w, cc.o, cc.k, rng, zero_points);
}

template <class T, std::size_t R>
bool same_bits(const Tensor<T, R>& a, const Tensor<T, R>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(T)) == 0;
}

template <class Arch>
void check_conv_path(const ConvCase& cc, const ConvProblem& p, bool relu) {
  infer::QuantizedConv2d conv(p.w, cc.c, cc.k, cc.stride, cc.pad, p.bias, p.xp, relu);
  const Shape<4> shape = conv.output_shape(p.x.shape());
  const AffineParams out{0.05f, relu ? 0 : 120};
  Tensor<std::uint8_t, 4> q(shape), q_ref(shape);
  conv.forward<Arch>(p.x.view(), out, q.view());
  infer::conv2d_reference<std::uint8_t>(p.x.view(), p.xp, p.w, cc.k, cc.stride, cc.pad, p.bias, relu, out, q_ref.view());
  CHECK(same_bits(q, q_ref));
  Tensor<float, 4> y(shape), y_ref(shape);
  conv.forward<Arch>(p.x.view(), y.view());
  infer::conv2d_reference<float>(p.x.view(), p.xp, p.w, cc.k, cc.stride, cc.pad, p.bias, relu, {}, y_ref.view());
  CHECK(same_bits(y, y_ref));
}

const std::vector<ConvCase> conv_cases = {
    {1, 3, 7, 9, 5, 3, 1, 1},      // batch 1, odd everything, one partial panel of channels
    {2, 1, 28, 28, 16, 3, 1, 1},   // conv1's shape: k = 9 (k4 tail)
    {3, 5, 11, 13, 50, 3, 2, 0},   // stride 2, no padding, 50 channels (a second partial panel)
    {1, 7, 6, 5, 49, 3, 2, 1},     // stride 2 with padding, H ≠ W
    {2, 16, 14, 14, 32, 3, 1, 1},  // conv2's shape
    {1, 2, 5, 5, 3, 1, 1, 0},      // 1×1 kernel
    {2, 3, 9, 8, 7, 5, 2, 2},      // 5×5, padding 2
    {1, 1, 3, 3, 1, 3, 1, 0},      // a single output pixel
};

}  // namespace

TEST_CASE("every quantized conv path equals the scalar integer reference bit for bit") {
  std::mt19937 rng(11);
  for (const auto& cc : conv_cases) {
    INFO("case n=" << cc.n << " c=" << cc.c << " h=" << cc.h << " w=" << cc.w << " o=" << cc.o << " k=" << cc.k
                   << " stride=" << cc.stride << " pad=" << cc.pad);
    for (const bool zero_points : {false, true}) {
      const auto p = make_conv_problem(cc, rng, zero_points);
      for (const bool relu : {false, true}) {
        for_each_arch([&](auto arch) { check_conv_path<decltype(arch)>(cc, p, relu); });
      }
    }
  }
}

TEST_CASE("the quantized conv computes nn::Conv2d on the dequantized values, and threads change no bit") {
  std::mt19937 rng(5);
  for (const auto& cc : conv_cases) {
    const auto p = make_conv_problem(cc, rng, true);
    nn::Conv2d<float> ref(cc.c, cc.o, cc.k, cc.stride, cc.pad);
    const auto wf = p.w.dequantize();
    std::memcpy(ref.weight().data(), wf.data(), static_cast<std::size_t>(wf.size()) * sizeof(float));
    std::memcpy(ref.bias().data(), p.bias.data(), p.bias.size() * sizeof(float));
    Tensor<float, 4> xf(p.x.shape());
    for (index_t i = 0; i < xf.size(); ++i) xf.data()[i] = static_cast<float>(p.x.data()[i] - p.xp.zero_point) * p.xp.scale;
    const auto expected = ref.forward(xf.view(), nn::Mode::eval);
    infer::QuantizedConv2d conv(p.w, cc.c, cc.k, cc.stride, cc.pad, p.bias, p.xp);
    Tensor<float, 4> y(expected.shape());
    conv.forward(p.x.view(), y.view());
    for (index_t i = 0; i < y.size(); ++i) REQUIRE(y.data()[i] == Approx(expected.data()[i]).margin(1e-4).epsilon(1e-4));
  }
  // Enough work for two threads (the rows are split), then one: the same bits.
  const ConvCase big{4, 16, 14, 14, 64, 3, 1, 1};
  const auto p = make_conv_problem(big, rng, true);
  infer::QuantizedConv2d conv(p.w, big.c, big.k, big.stride, big.pad, p.bias, p.xp, true);
  const Shape<4> shape = conv.output_shape(p.x.shape());
  Tensor<std::uint8_t, 4> one(shape), two(shape);
  set_threads(2);
  conv.forward(p.x.view(), {0.02f, 0}, two.view());
  set_threads(1);
  conv.forward(p.x.view(), {0.02f, 0}, one.view());
  set_threads(2);
  CHECK(same_bits(one, two));
  // Float in: the input quantized with fake_quantize's formula, then the same integers.
  Tensor<float, 4> xf(p.x.shape());
  for (index_t i = 0; i < xf.size(); ++i) xf.data()[i] = static_cast<float>(p.x.data()[i] - p.xp.zero_point) * p.xp.scale;
  Tensor<std::uint8_t, 4> from_float(shape);
  conv.forward(TensorView<const float, 4>(xf.view()), {0.02f, 0}, from_float.view());
  CHECK(same_bits(one, from_float));
}

template <class Arch>
void check_pool_path(index_t kernel, index_t stride, const Tensor<std::uint8_t, 4>& q, AffineParams p) {
  infer::QuantizedMaxPool2d pool(kernel, stride);
  nn::MaxPool2d<float> ref(kernel, stride);
  Tensor<float, 4> xf(q.shape());
  for (index_t i = 0; i < xf.size(); ++i) xf.data()[i] = static_cast<float>(q.data()[i] - p.zero_point) * p.scale;
  const auto expected = ref.forward(xf.view(), nn::Mode::eval);
  Tensor<std::uint8_t, 4> y(pool.output_shape(q.shape()));
  REQUIRE(y.shape() == expected.shape());
  pool.forward<Arch>(q.view(), y.view());
  index_t mismatches = 0;
  for (index_t i = 0; i < y.size(); ++i) {
    const float v = static_cast<float>(y.data()[i] - p.zero_point) * p.scale;
    if (v != expected.data()[i]) ++mismatches;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("the uint8 max pool equals nn::MaxPool2d on the dequantized values, on every path and tail") {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> u8(0, 255);
  const AffineParams p{0.037f, 31};
  for (const index_t h : {2, 3, 7, 14, 28}) {
    for (const index_t w : {2, 3, 5, 14, 28, 31, 33, 64, 65, 67, 97, 130}) {
      Tensor<std::uint8_t, 4> q({2, 3, h, w});
      // Few distinct values, so ties are common.
      for (index_t i = 0; i < q.size(); ++i) q.data()[i] = static_cast<std::uint8_t>(u8(rng) % (i % 2 ? 256 : 4));
      INFO("h=" << h << " w=" << w);
      for (const auto& window : {std::pair<index_t, index_t>{2, 2}, {2, 1}, {3, 2}, {1, 1}, {2, 0}}) {
        const index_t kernel = window.first, stride = window.second;  // clang 14 cannot capture bindings
        if (h < kernel || w < kernel) continue;
        for_each_arch([&](auto arch) { check_pool_path<decltype(arch)>(kernel, stride, q, p); });
      }
    }
  }
}

namespace {

data::Dataset<float> random_images(index_t n, std::uint64_t seed) {
  data::Dataset<float> d;
  d.images.resize({n, 1, 28, 28});
  d.labels.resize({n});
  std::mt19937_64 rng(seed);
  for (index_t i = 0; i < d.images.size(); ++i) d.images.data()[i] = static_cast<float>(nn::uniform01(rng)) * 3.0f - 0.8f;
  for (index_t i = 0; i < n; ++i) d.labels(i) = static_cast<std::int32_t>(rng() % 10);
  return d;
}

// The integer network's logits against the fake-quant network's, per element within the tolerance of
// pipeline/integer_network.hpp: one step of relu3.quant through |fc2's weights|, plus float rounding.
template <class QModel>
double check_logits(nn::Sequential<float>& model, const QModel& qmodel, pipeline::IntegerNetwork& net,
                    const data::Dataset<float>& data) {
  const index_t n = data.size();
  const auto fake = model.forward(data.images.view(), nn::Mode::eval);
  const Tensor<float, 2> expected(TensorView<const float, 2>(fake.data(), {n, fake.size() / n}));
  const auto logits = net.forward(data.images.view());
  REQUIRE(logits.shape() == expected.shape());
  const auto fc2 = find_parameter(model.parameters(), "fc2.weight");  // fake-quantized values
  const auto step = qmodel.activation_layers().back()->quantizer().params().front().scale;
  const auto tol = pipeline::logit_tolerance(fc2.value.reshape(Shape<2>{fc2.shape[0], fc2.shape[1]}), step);
  index_t outside = 0, differ = 0;
  double worst = 0.0;
  for (index_t i = 0; i < n; ++i) {
    for (index_t o = 0; o < logits.dim(1); ++o) {
      const double d = std::abs(static_cast<double>(logits(i, o)) - expected(i, o));
      const double bound = tol[static_cast<std::size_t>(o)] + 1e-5 * (1.0 + std::abs(static_cast<double>(expected(i, o))));
      worst = std::max(worst, d / bound);
      if (d > bound) ++outside;
      if (d > 1e-5 * (1.0 + std::abs(static_cast<double>(expected(i, o))))) ++differ;
    }
  }
  INFO("worst |Δlogit| / tolerance = " << worst << ", logits differing beyond float rounding: " << differ);
  CHECK(outside == 0);
  return worst;
}

}  // namespace

TEST_CASE("the integer network's logits match the fake-quant network's within one step of the last quantizer") {
  const auto calibration = random_images(256, 1);
  const auto inputs = random_images(64, 2);
  SECTION("student, symmetric int8 weights") {
    auto model = nn::make_student<float>(7);
    pipeline::QuantizedModel<quant::Int8PerChannelSymmetric, quant::Uint8PerTensorAffine> qmodel(model);
    qmodel.calibrate(calibration, 256, 64);
    pipeline::IntegerNetwork net(model, qmodel);
    check_logits(model, qmodel, net, inputs);
    check_logits(model, qmodel, net, random_images(1, 3));  // batch 1
    // The calibration images' shape is the model's input shape, as a file records it.
    CHECK(qmodel.input_shape() == Shape<3>{1, 28, 28});
    CHECK(net.model().input_shape == Shape<3>{1, 28, 28});
    CHECK(pipeline::to_integer_model(model, qmodel, {1, 28, 28}).input_shape == Shape<3>{1, 28, 28});
  }
  SECTION("odd channel counts, affine int8 weights (weight zero points)") {
    auto model = nn::make_cnn<float>({}, {.conv1 = 5, .conv2 = 7, .hidden = 33}, 9);
    pipeline::QuantizedModel<quant::Int8PerChannelAffine, quant::Uint8PerTensorAffine> qmodel(model);
    qmodel.calibrate(calibration, 256, 64);
    pipeline::IntegerNetwork net(model, qmodel);
    check_logits(model, qmodel, net, inputs);
  }
  SECTION("int4 weights (stored as int8)") {
    auto model = nn::make_cnn<float>({}, {.conv1 = 6, .conv2 = 9, .hidden = 20}, 4);
    pipeline::QuantizedModel<quant::Int4PerChannelSymmetric, quant::Uint8PerTensorAffine> qmodel(model);
    qmodel.calibrate(calibration, 256, 64);
    pipeline::IntegerNetwork net(model, qmodel);
    check_logits(model, qmodel, net, inputs);
    // Bytes from the buffers: int8 storage is about a quarter of fp32, plus per-channel data.
    CHECK(net.storage_bytes() < net.float_bytes() / 3);
    CHECK(net.weight_bytes() > 0);
  }
}

TEST_CASE("on Fashion-MNIST the integer student's accuracy is within 0.1 pt of the fake-quant student's") {
  MINNOW_REQUIRE_FASHION_MNIST();
  const std::filesystem::path dir = data::default_fashion_mnist_dir();
  const auto data = data::load_fashion_mnist<float>(dir, data::fashion_mnist_normalization, 10000, 2000);
  auto model = nn::make_student<float>(42);
  {
    nn::Adam<float> adam(model.parameters(), 2e-3);
    train::Trainer<float> trainer(model, adam);
    trainer.set_progress(false);
    data::BatchSampler sampler(data.train.size(), 64, 1);
    (void)trainer.train_epoch(data.train, sampler);  // one epoch on 10k images
  }
  pipeline::QuantizedModel<quant::Int8PerChannelSymmetric, quant::Uint8PerTensorAffine> qmodel(model);
  qmodel.calibrate(data.train, 2048);
  const auto fake = train::evaluate(model, data.test, 500);
  pipeline::IntegerNetwork net(model, qmodel);
  const auto integer = net.evaluate(data.test, 500);
  WARN("fake-quant accuracy " << fake.accuracy << ", integer accuracy " << integer.accuracy << "\n" << net.describe());
  CHECK(fake.accuracy > 0.7);
  CHECK(std::abs(integer.accuracy - fake.accuracy) <= 0.001 + 1e-12);
  CHECK(integer.samples == 2000);
  const double worst = check_logits(model, qmodel, net, data::Dataset<float>{Tensor<float, 4>(data.test.images.view()),
                                                                             Tensor<std::int32_t, 1>(data.test.labels.view())});
  WARN("worst |integer - fake-quant logit| / tolerance on 2000 test images: " << worst);
}

TEST_CASE("bad input throws typed errors naming the layer and the values") {
  using test_support::message_of;
  std::mt19937 rng(1);
  const auto p = make_conv_problem({1, 3, 7, 7, 5, 3, 1, 1}, rng, false);
  // Conv geometry, weights, bias and parameters.
  CHECK_THROWS_AS(infer::QuantizedConv2d(p.w, 2, 3, 1, 1, p.bias, p.xp), shape_error);  // 27 taps ≠ 2·9
  CHECK(message_of<shape_error>([&] { infer::QuantizedConv2d(p.w, 2, 3, 1, 1, p.bias, p.xp); }).find("conv_test.weight") !=
        std::string::npos);
  CHECK_THROWS_AS(infer::QuantizedConv2d(p.w, 3, 3, 0, 1, p.bias, p.xp), value_error);
  CHECK_THROWS_AS(infer::QuantizedConv2d(p.w, 3, 3, 1, -1, p.bias, p.xp), value_error);
  CHECK_THROWS_AS(infer::QuantizedConv2d(p.w, 3, 3, 1, 1, std::vector<float>(4, 0.0f), p.xp), shape_error);
  std::vector<float> nan_bias(5, 0.0f);
  nan_bias[2] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(infer::QuantizedConv2d(p.w, 3, 3, 1, 1, nan_bias, p.xp), value_error);
  CHECK_THROWS_AS(infer::QuantizedConv2d(p.w, 3, 3, 1, 1, p.bias, {0.0f, 0}), value_error);
  CHECK_THROWS_AS(infer::QuantizedConv2d(p.w, 3, 3, 1, 1, p.bias, {std::nanf(""), 0}), value_error);
  CHECK_THROWS_AS(infer::QuantizedConv2d(p.w, 3, 3, 1, 1, p.bias, {0.1f, 300}), value_error);
  infer::QuantizedConv2d conv(p.w, 3, 3, 1, 1, p.bias, p.xp);
  Tensor<std::uint8_t, 4> wrong_in({1, 2, 7, 7}), tiny({1, 3, 0, 7}), y({1, 5, 7, 7}), wrong_out({1, 5, 6, 7});
  CHECK(message_of<shape_error>([&] { conv.forward(wrong_in.view(), {0.1f, 0}, y.view()); }).find("conv_test.weight") !=
        std::string::npos);
  CHECK_THROWS_AS(conv.forward(tiny.view(), {0.1f, 0}, y.view()), shape_error);
  CHECK_THROWS_AS(conv.forward(p.x.view(), {0.1f, 0}, wrong_out.view()), shape_error);
  CHECK_THROWS_AS(conv.forward(p.x.view(), {-0.1f, 0}, y.view()), value_error);
  CHECK_THROWS_AS(conv.forward(p.x.view(), {0.1f, 256}, y.view()), value_error);
  // Pool.
  CHECK_THROWS_AS(infer::QuantizedMaxPool2d(0), value_error);
  CHECK_THROWS_AS(infer::QuantizedMaxPool2d(2, -1), value_error);
  infer::QuantizedMaxPool2d pool(3);
  Tensor<std::uint8_t, 4> small({1, 1, 2, 5}), out({1, 1, 1, 1});
  CHECK_THROWS_AS(pool.forward(small.view(), out.view()), shape_error);
  Tensor<std::uint8_t, 4> nine({1, 1, 9, 9}), bad_out({1, 1, 2, 3});
  CHECK_THROWS_AS(pool.forward(nine.view(), bad_out.view()), shape_error);

  // Conversion before calibration: the activation quantizers have no qparams yet.
  {
    auto model = nn::make_student<float>(1);
    pipeline::QuantizedModel<quant::Int8PerChannelSymmetric, quant::Uint8PerTensorAffine> qmodel(model);
    const auto message = message_of<value_error>([&] { pipeline::IntegerNetwork net(model, qmodel); });
    CHECK(message.find("'input.quant'") != std::string::npos);
    CHECK(message.find("no qparams") != std::string::npos);
  }
  // Frozen before it saw data: a forward fake-quantizes with PyTorch's defaults (scale 1), which are not qparams.
  {
    auto model = nn::make_student<float>(1);
    pipeline::QuantizedModel<quant::Int8PerChannelSymmetric, quant::Uint8PerTensorAffine> qmodel(model);
    qmodel.freeze_observers();
    Tensor<float, 4> x({2, 1, 28, 28}, 0.5f);
    (void)model.forward(x.view());
    const auto message = message_of<value_error>([&] { pipeline::IntegerNetwork net(model, qmodel); });
    CHECK(message.find("'input.quant'") != std::string::npos);
    CHECK(message.find("no qparams") != std::string::npos);
  }
  // No input quantizer.
  {
    auto model = nn::make_student<float>(1);
    pipeline::QuantizedModel<quant::Int8PerChannelSymmetric, quant::Uint8PerTensorAffine> qmodel(
        model, quant::Int8PerChannelSymmetric{}, quant::Uint8PerTensorAffine{},
        {.quantize_activations = true, .quantize_input = false});
    qmodel.calibrate(random_images(32, 1), 32);
    CHECK(message_of<value_error>([&] { pipeline::IntegerNetwork net(model, qmodel); }).find("input.quant") !=
          std::string::npos);
  }
  // A ReLU without an activation quantizer after it, and a model that is not the wrapped one.
  {
    auto model = nn::make_student<float>(1);
    pipeline::QuantizedModel<quant::Int8PerChannelSymmetric, quant::Uint8PerTensorAffine> qmodel(model);
    qmodel.calibrate(random_images(32, 1), 32);
    pipeline::IntegerNetwork net(model, qmodel);
    // Wrong input shape: the first layer is named.
    Tensor<float, 4> x({2, 3, 28, 28});
    CHECK(message_of<shape_error>([&] { (void)net.forward(x.view()); }).find("conv1") != std::string::npos);
    Tensor<float, 4> small_x({2, 1, 8, 8});
    CHECK(message_of<shape_error>([&] { (void)net.forward(small_x.view()); }).find("fc1") != std::string::npos);

    auto other = nn::make_student<float>(2);
    pipeline::QuantizedModel<quant::Int8PerChannelSymmetric, quant::Uint8PerTensorAffine> other_q(other);
    other_q.calibrate(random_images(32, 1), 32);
    CHECK(message_of<value_error>([&] { pipeline::IntegerNetwork bad(model, other_q); }).find("does not belong") !=
          std::string::npos);

    model.add("relu9", nn::ReLU<float>());  // after fc2, with no quantizer
    CHECK(message_of<value_error>([&] { pipeline::IntegerNetwork bad(model, qmodel); }).find("'relu9'") != std::string::npos);
  }
}

TEST_CASE("per-layer formats: sparse and fp32 Linear layers compute the same network as int8 ones") {
  const auto calibration = random_images(256, 1);
  const auto inputs = random_images(37, 2);
  auto model = nn::make_student<float>(7);
  // Prune fc1 to 96 % and fc2 to 50 % (unstructured, by magnitude), as a pruned model holds its weights.
  for (const auto& [name, fraction] : {std::pair{"fc1.weight", 0.96}, std::pair{"fc2.weight", 0.5}}) {
    const auto p = find_parameter(model.parameters(), name);
    Tensor<float, 1> mask({p.value.size()}, 1.0f);
    prune::l1_unstructured(TensorView<const float, 1>(p.value.data(), {p.value.size()}), mask.view(), prune::Fraction{fraction});
    for (index_t i = 0; i < p.value.size(); ++i) p.value.data()[i] *= mask(i);
  }
  pipeline::QuantizedModel<quant::Int8PerChannelSymmetric, quant::Uint8PerTensorAffine> qmodel(model);
  qmodel.calibrate(calibration, 256, 64);

  pipeline::IntegerNetwork all_int8(model, qmodel, {.sparse_from_batch1 = 2.0, .sparse_from_batched = 2.0});
  for (const auto& [name, format] : all_int8.formats()) CHECK(format == pipeline::LayerFormat::int8);
  const auto reference = Tensor<float, 2>(all_int8.forward(inputs.images.view()));

  SECTION("the rule makes the 96 % layer sparse and keeps the 50 % one int8") {
    pipeline::IntegerNetwork net(model, qmodel, {.batch = 1});
    const std::vector<std::pair<std::string, pipeline::LayerFormat>> expected{
        {"conv1", pipeline::LayerFormat::int8}, {"conv2", pipeline::LayerFormat::int8},
        {"fc1", pipeline::LayerFormat::sparse}, {"fc2", pipeline::LayerFormat::int8}};
    CHECK(net.formats() == expected);
    CHECK(net.describe().find("sparse sliced linear(fc1)") != std::string::npos);
    check_logits(model, qmodel, net, inputs);
    check_logits(model, qmodel, net, random_images(1, 3));
    // fc1's sparse storage is smaller than its int8 storage: about 4 % kept × 8 bytes against 1 byte each.
    CHECK(net.storage_bytes() < all_int8.storage_bytes());
  }
  SECTION("formats by name: every float format on both Linear layers") {
    for (const auto format : {pipeline::LayerFormat::sparse, pipeline::LayerFormat::dense_float}) {
      for (const index_t batch : {1, 64}) {
        pipeline::IntegerNetwork net(model, qmodel, {.layers = {{"fc1", format}, {"fc2", format}}, .batch = batch});
        CHECK(net.formats()[2].second == format);
        CHECK(net.formats()[3].second == format);
        check_logits(model, qmodel, net, inputs);
        // Against the all-int8 network: the same function up to float rounding in the float layers'
        // sums (an activation can land one step away), so compare with the same tolerance.
        const auto logits = net.forward(inputs.images.view());
        const auto fc2 = find_parameter(model.parameters(), "fc2.weight");
        const auto step = qmodel.activation_layers().back()->quantizer().params().front().scale;
        const auto tol = pipeline::logit_tolerance(fc2.value.reshape(Shape<2>{fc2.shape[0], fc2.shape[1]}), step);
        for (index_t i = 0; i < logits.dim(0); ++i) {
          for (index_t o = 0; o < logits.dim(1); ++o) {
            REQUIRE(std::abs(logits(i, o) - reference(i, o)) <= 2.0f * tol[static_cast<std::size_t>(o)] + 1e-4f);
          }
        }
      }
    }
  }
  SECTION("a plan that names a missing layer, or a float Conv2d, is a value_error naming it") {
    using test_support::message_of;
    CHECK(message_of<value_error>([&] {
            pipeline::IntegerNetwork net(model, qmodel, {.layers = {{"fc7", pipeline::LayerFormat::sparse}}});
          }).find("'fc7'") != std::string::npos);
    CHECK(message_of<value_error>([&] {
            pipeline::IntegerNetwork net(model, qmodel, {.layers = {{"conv1", pipeline::LayerFormat::sparse}}});
          }).find("'conv1'") != std::string::npos);
    CHECK_THROWS_AS(pipeline::IntegerNetwork(model, qmodel, {.batch = 0}), value_error);
  }
}
