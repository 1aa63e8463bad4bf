// QAT and PTQ through the named-parameter seam: fake-quantized weights and activations in a Sequential,
// together with pruning masks.
#include <minnow/nn.hpp>
#include <minnow/pipeline/quantize_model.hpp>
#include <minnow/prune.hpp>
#include <minnow/quant.hpp>
#include <minnow/train.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <numeric>
#include <random>
#include <vector>

using namespace minnow;

namespace {

data::Dataset<float> random_images(index_t n, std::uint64_t seed) {
  data::Dataset<float> d;
  d.images.resize({n, 1, 28, 28});
  d.labels.resize({n});
  std::mt19937_64 rng(seed);
  for (index_t i = 0; i < d.images.size(); ++i) d.images.data()[i] = static_cast<float>(nn::uniform01(rng)) * 2.0f - 0.5f;
  for (index_t i = 0; i < n; ++i) d.labels(i) = static_cast<std::int32_t>(rng() % 10);
  return d;
}

// True when every value of `v` is (q − zero_point) · scale for an integer q in the grid of `p`.
bool on_grid(TensorView<const float, 1> v, quant::AffineParams p, quant::QRange grid) {
  for (index_t i = 0; i < v.size(); ++i) {
    const float q = std::nearbyint(v(i) / p.scale) + static_cast<float>(p.zero_point);
    if (q < static_cast<float>(grid.qmin) || q > static_cast<float>(grid.qmax)) return false;
    if ((q - static_cast<float>(p.zero_point)) * p.scale != v(i)) return false;
  }
  return true;
}

template <class WeightQ>
void qat_keeps_pruned_weights_zero(bool adam) {
  auto model = nn::make_student<float>(5);
  const auto data = random_images(16, 6);
  std::unique_ptr<nn::Optimizer<float>> optimizer;
  if (adam) {
    optimizer = std::make_unique<nn::Adam<float>>(model.parameters(), 1e-3);
  } else {
    optimizer = std::make_unique<nn::Sgd<float>>(model.parameters(), 0.05, nn::SgdOptions{.momentum = 0.9});
  }
  prune::Pruner<float> pruner;
  for (const auto& p : model.parameters()) pruner.track(p, optimizer->state(p.name));
  for (const char* name : {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"}) {
    pruner.l1_unstructured(name, prune::Fraction{0.6});
  }
  pruner.apply();
  train::Trainer<float> trainer(model, *optimizer);
  trainer.set_progress(false);
  trainer.add_hook([&](std::int64_t) { pruner.apply(); });  // before the quantizer's hook
  pipeline::QuantizedModel<WeightQ, quant::Uint8PerTensorAffine> qmodel(model);
  qmodel.attach(trainer);
  std::vector<index_t> all(16);
  std::iota(all.begin(), all.end(), 0);
  for (int step = 0; step < 100; ++step) (void)trainer.step(data, std::span<const index_t>(all).subspan(step % 2 * 8, 8));
  for (const auto& entry : pruner.entries()) {
    const auto p = find_parameter(model.parameters(), entry.name);
    index_t pruned = 0, nonzero_pruned = 0;
    for (index_t i = 0; i < p.value.size(); ++i) {
      if (entry.mask(i) != 0.0f) continue;
      ++pruned;
      if (p.value(i) != 0.0f) ++nonzero_pruned;
    }
    CHECK((pruned > 0) == entry.name.ends_with(".weight"));  // biases are tracked, never pruned
    CHECK(nonzero_pruned == 0);
  }
  for (const auto& name : qmodel.weight_names()) {
    const auto& q = qmodel.weight_quantizer(name);
    const auto p = find_parameter(model.parameters(), name);
    const auto channels = static_cast<index_t>(q.params().size());
    REQUIRE(channels == p.shape[0]);
    const index_t per = p.value.size() / channels;
    for (index_t c = 0; c < channels; ++c) {
      REQUIRE(on_grid(p.value.slice(c * per, (c + 1) * per), q.params()[static_cast<std::size_t>(c)], q.grid()));
    }
  }
}

}  // namespace

TEST_CASE("QAT keeps pruned weights exactly zero over 100 steps, in every mapping, with SGD and Adam") {
  using Sym8 = quant::Int8PerChannelSymmetric;
  using Aff8 = quant::Int8PerChannelAffine;
  using Pow8 = quant::Int8PerChannelPowerOfTwo;
  using Sym4 = quant::Int4PerChannelSymmetric;
  using Aff4 = quant::Quantizer<quant::quint4, quant::MinMax, quant::Affine, quant::PerChannel>;
  for (const bool adam : {false, true}) {
    qat_keeps_pruned_weights_zero<Sym8>(adam);
    qat_keeps_pruned_weights_zero<Aff8>(adam);
    qat_keeps_pruned_weights_zero<Pow8>(adam);
    qat_keeps_pruned_weights_zero<Sym4>(adam);
    qat_keeps_pruned_weights_zero<Aff4>(adam);
  }
}

TEST_CASE("PTQ: calibration sets activation ranges, freezes them, and weights are their float copies fake-quantized") {
  auto model = nn::make_student<float>(2);
  std::vector<Tensor<float, 1>> originals;
  for (const auto& p : model.parameters()) originals.emplace_back(TensorView<const float, 1>(p.value));
  pipeline::QuantizedModel<quant::Int8PerChannelSymmetric, quant::Quantizer<quant::quint8, quant::MinMax, quant::Affine, quant::PerTensor>>
      qmodel(model);
  REQUIRE(model.size() == 14);  // input + 3 ReLUs quantized
  CHECK(model.layer_name(0) == "input.quant");
  CHECK(model.layer_name(3) == "relu1.quant");
  REQUIRE(qmodel.activation_layers().size() == 4);

  const auto data = random_images(300, 3);
  qmodel.calibrate(data, 200, 64);
  // The input quantizer saw exactly the first 200 images: its range is their min/max.
  float lo = 0.0f, hi = 0.0f;
  for (index_t i = 0; i < 200 * 784; ++i) {
    lo = std::min(lo, data.images.data()[i]);
    hi = std::max(hi, data.images.data()[i]);
  }
  const auto& input_q = qmodel.activation_layers()[0]->quantizer();
  REQUIRE(input_q.frozen());
  const auto expected = quant::Affine{}.qparams({lo, hi}, quant::quint8::range());
  CHECK(input_q.params().at(0).scale == expected.scale);
  CHECK(input_q.params().at(0).zero_point == expected.zero_point);

  // Frozen: evaluating other data changes no range.
  (void)train::evaluate(model, random_images(50, 9), 25);
  CHECK(input_q.params().at(0).scale == expected.scale);

  // Weights: value = fake_quantize(float copy) per output channel, and the float copy is the original.
  std::size_t k = 0;
  for (const auto& p : model.parameters()) {
    const auto& original = originals[k++];
    if (p.name.ends_with(".bias")) {
      for (index_t i = 0; i < p.value.size(); ++i) REQUIRE(p.value(i) == original(i));
      continue;
    }
    const auto shadow = qmodel.float_weight(p.name);
    for (index_t i = 0; i < p.value.size(); ++i) REQUIRE(shadow(i) == original(i));
    Tensor<float, 1> expected_q({p.value.size()});
    quant::Int8PerChannelSymmetric fresh;
    fresh.observe(original.view(), p.shape);
    fresh.fake_quantize(TensorView<const float, 1>(original.view()), p.shape, expected_q.view());
    for (index_t i = 0; i < p.value.size(); ++i) REQUIRE(p.value(i) == expected_q(i));
  }

  CHECK_THROWS_AS(qmodel.weight_quantizer("fc9.weight"), value_error);
}

TEST_CASE("QAT trains: the loss of a batch it keeps seeing falls, and observers freeze after N steps") {
  auto model = nn::make_student<float>(3);
  nn::Adam<float> adam(model.parameters(), 3e-3);
  train::Trainer<float> trainer(model, adam);
  trainer.set_progress(false);
  // MinMax activations: a moving average started on an untrained network lags behind the growing
  // activations of this tiny, fast-moving run and clips them (their STE gradient is then 0).
  using Activations = quant::Quantizer<quant::quint8, quant::MinMax, quant::Affine, quant::PerTensor>;
  pipeline::QuantizedModel<quant::Int4PerChannelSymmetric, Activations> qmodel(model);
  qmodel.attach(trainer, {.freeze_after_steps = 30});
  const auto data = random_images(16, 4);
  std::vector<index_t> all(16);
  std::iota(all.begin(), all.end(), 0);
  const double first = trainer.step(data, all);
  double last = first;
  for (int i = 0; i < 29; ++i) last = trainer.step(data, all);
  CHECK(qmodel.activation_layers()[1]->quantizer().frozen());
  const auto frozen_scale = qmodel.weight_quantizer("fc1.weight").params().at(0).scale;
  for (int i = 0; i < 30; ++i) last = trainer.step(data, all);
  CHECK(qmodel.weight_quantizer("fc1.weight").params().at(0).scale == frozen_scale);
  CHECK(last < 0.2 * first);
}

TEST_CASE("ActivationFakeQuant: outputs on the grid, straight-through gradient inside it, zero outside") {
  using Q = quant::Quantizer<quant::quint8, quant::MinMax, quant::Affine, quant::PerTensor>;
  pipeline::ActivationFakeQuant<Q> layer;
  Tensor<float, 4> calibration({1, 2, 3, 3});
  for (index_t i = 0; i < calibration.size(); ++i) calibration.data()[i] = static_cast<float>(i) * 0.1f;  // [0, 1.7]
  (void)layer.forward(calibration.view(), nn::Mode::eval);
  layer.quantizer().freeze();
  Tensor<float, 4> x({2, 2, 3, 3});
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(i) * 0.07f - 0.3f;  // [−0.3, 2.22]
  const Tensor<float, 4> y(layer.forward(x.view(), nn::Mode::train));
  const auto p = layer.quantizer().params().at(0);
  CHECK(p.zero_point == 0);
  CHECK(p.scale == 1.7f / 255.0f);
  CHECK(on_grid(y.view().reshape(Shape<1>{y.size()}), p, quant::quint8::range()));
  Tensor<float, 4> dy({2, 2, 3, 3}, 1.0f);
  const auto dx = layer.backward(dy.view());
  for (index_t i = 0; i < x.size(); ++i) {
    const float q = std::nearbyint(x.data()[i] * (1.0f / p.scale));
    CHECK(dx.data()[i] == ((q >= 0.0f && q <= 255.0f) ? 1.0f : 0.0f));
  }
  CHECK(dx.data()[0] == 0.0f);              // −0.3 is below the range
  CHECK(dx.data()[x.size() - 1] == 0.0f);   // 2.22 is above it
  CHECK(layer.describe() == "FakeQuantize(0..255)");
}
