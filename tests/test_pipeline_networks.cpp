// Networks users know, through the whole pipeline: LeNet-5 (1×32×32, ReLU and max pooling) and the PyTorch
// CIFAR-10 tutorial network with batch norm after each convolution (3×32×32), each trained on synthetic
// images of its input shape, pruned while it trains, its batch norms folded into the convolutions,
// quantized after training (or trained quantization-aware with its batch norms in the graph) and converted
// to an integer network whose logits match the fake-quantized one.
#include <minnow/nn.hpp>
#include <minnow/pipeline/integer_network.hpp>
#include <minnow/pipeline/quantize_model.hpp>
#include <minnow/prune.hpp>
#include <minnow/quant.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

using namespace minnow;

namespace {

constexpr index_t kClasses = 4;

// Class c is a brighter square in quadrant c of every channel, under uniform noise [0, 1).
data::Dataset<float> quadrant_images(index_t n, index_t channels, std::uint64_t seed) {
  data::Dataset<float> d;
  d.images.resize({n, channels, 32, 32});
  d.labels.resize({n});
  std::mt19937_64 rng(seed);
  for (index_t i = 0; i < n; ++i) {
    const auto label = static_cast<std::int32_t>(rng() % kClasses);
    d.labels(i) = label;
    for (index_t c = 0; c < channels; ++c) {
      for (index_t y = 0; y < 32; ++y) {
        for (index_t x = 0; x < 32; ++x) {
          const bool inside = (y / 16) * 2 + (x / 16) == label && y % 16 > 3 && x % 16 > 3;
          d.images(i, c, y, x) = static_cast<float>(nn::uniform01(rng)) + (inside ? 0.5f : 0.0f);
        }
      }
    }
  }
  return d;
}

// LeNet-5 with ReLU and max pooling (1 channel, no batch norm) and the CIFAR-10 tutorial network (3 channels,
// with a BatchNorm2d after each convolution) share one shape: conv →6 5×5, pool, conv 6→16 5×5, pool,
// fc 400→120→84→classes.
nn::Sequential<float> lenet_shaped(index_t channels, bool batchnorm, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  nn::Sequential<float> net;
  net.add("conv1", nn::Conv2d<float>(channels, 6, 5)).reset_parameters(rng);
  if (batchnorm) net.add("bn1", nn::BatchNorm2d<float>(6));
  net.add("relu1", nn::ReLU<float>());
  net.add("pool1", nn::MaxPool2d<float>(2));
  net.add("conv2", nn::Conv2d<float>(6, 16, 5)).reset_parameters(rng);
  if (batchnorm) net.add("bn2", nn::BatchNorm2d<float>(16));
  net.add("relu2", nn::ReLU<float>());
  net.add("pool2", nn::MaxPool2d<float>(2));
  net.add("flatten", nn::Flatten<float>());
  net.add("fc1", nn::Linear<float>(16 * 5 * 5, 120)).reset_parameters(rng);
  net.add("relu3", nn::ReLU<float>());
  net.add("fc2", nn::Linear<float>(120, 84)).reset_parameters(rng);
  net.add("relu4", nn::ReLU<float>());
  net.add("fc3", nn::Linear<float>(84, kClasses)).reset_parameters(rng);
  return net;
}

double mean_loss(nn::Sequential<float>& net, const data::Dataset<float>& d) {
  const auto out = net.forward(d.images.view(), nn::Mode::eval);
  Tensor<float, 2> grad({d.size(), kClasses});
  return nn::softmax_cross_entropy<float>(out.reshape<2>(d.size(), kClasses), d.labels.view(), grad.view());
}

// Trains with SGD on batches of 32 for `steps` steps, 50 % of every weight pruned by L1 magnitude from the
// start and kept pruned after every step.
prune::Pruner<float> train_pruned(nn::Sequential<float>& net, const data::Dataset<float>& d, int steps) {
  prune::Pruner<float> pruner;
  for (const auto& p : weight_parameters(net.parameters())) {
    pruner.track(p);
    pruner.l1_unstructured(p.name, prune::Fraction{0.5});
  }
  nn::Sgd<float> sgd(net.parameters(), 0.02, {.momentum = 0.9});
  const index_t batch = 32;
  Tensor<float, 4> x;
  Tensor<std::int32_t, 1> y;
  Tensor<float, 2> dlogits({batch, kClasses});
  for (int step = 0; step < steps; ++step) {
    const index_t first = (step * batch) % (d.size() - batch + 1);
    x.resize({batch, d.images.dim(1), 32, 32});
    y.resize({batch});
    x.view().copy_from(d.images.view().slice(first, first + batch));
    y.view().copy_from(d.labels.view().slice(first, first + batch));
    const auto out = net.forward(x.view(), nn::Mode::train);
    (void)nn::softmax_cross_entropy<float>(out.reshape<2>(batch, kClasses), y.view(), dlogits.view());
    net.backward(dlogits.view().reshape<4>(batch, kClasses, 1, 1));
    sgd.step();
    pruner.apply();
  }
  return pruner;
}

using QModel = pipeline::QuantizedModel<quant::Int8PerChannelSymmetric, quant::Uint8PerTensorAffine>;

// The integer network converted from `qmodel` gives the fake-quantized network's logits within the rounding
// of its last layer's input, and classifies at least 90 % of `test` right.
void check_integer_network(nn::Sequential<float>& net, const QModel& qmodel, const data::Dataset<float>& test) {
  pipeline::IntegerNetwork integer(net, qmodel);
  const auto fake = net.forward(test.images.view(), nn::Mode::eval);
  const Tensor<float, 2> expected(TensorView<const float, 2>(fake.data(), {test.size(), kClasses}));
  const auto logits = integer.forward(test.images.view());
  REQUIRE(logits.shape() == expected.shape());
  const auto last = find_parameter(net.parameters(), "fc3.weight");
  const auto step = qmodel.activation_layers().back()->quantizer().params().front().scale;
  const auto tolerance = pipeline::logit_tolerance(last.value.reshape(Shape<2>{last.shape[0], last.shape[1]}), step);
  index_t outside = 0, correct = 0;
  for (index_t i = 0; i < test.size(); ++i) {
    index_t best = 0;
    for (index_t o = 0; o < kClasses; ++o) {
      const double d = std::abs(static_cast<double>(logits(i, o)) - expected(i, o));
      if (d > tolerance[static_cast<std::size_t>(o)] + 1e-5 * (1.0 + std::abs(static_cast<double>(expected(i, o))))) ++outside;
      if (logits(i, o) > logits(i, best)) best = o;
    }
    correct += best == test.labels(i) ? 1 : 0;
  }
  CHECK(outside == 0);
  INFO("integer accuracy " << correct << " / " << test.size());
  CHECK(correct >= test.size() * 9 / 10);
}

// Trains, folds, quantizes and converts `net`; checks each stage.
void through_the_pipeline(nn::Sequential<float> net, index_t channels) {
  const auto train = quadrant_images(512, channels, 1);
  const auto test = quadrant_images(128, channels, 2);
  const double loss_before = mean_loss(net, test);
  const auto pruner = train_pruned(net, train, 120);
  const double loss_after = mean_loss(net, test);
  INFO("test loss " << loss_before << " → " << loss_after);
  CHECK(loss_after < 0.5 * loss_before);

  const Tensor<float, 4> trained(net.forward(test.images.view(), nn::Mode::eval));
  const auto folded = nn::fold_batchnorms(net);
  for (const auto& name : folded) CHECK_THROWS_AS(net.index_of(name), value_error);
  // Folding changes the computation only by rounding; zeros stay zeros.
  const Tensor<float, 4> after_fold(net.forward(test.images.view(), nn::Mode::eval));
  double worst = 0.0;
  for (index_t i = 0; i < trained.size(); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(trained.data()[i] - after_fold.data()[i])) /
                                std::max(1.0, std::abs(static_cast<double>(trained.data()[i]))));
  }
  CHECK(worst < 1e-4);
  for (const auto& p : weight_parameters(net.parameters())) {
    INFO(p.name);
    index_t zeros = 0;
    for (index_t i = 0; i < p.value.size(); ++i) zeros += p.value(i) == 0.0f ? 1 : 0;
    CHECK(zeros >= p.value.size() / 2);
  }

  QModel qmodel(net);
  qmodel.calibrate(train, 256, 64);
  check_integer_network(net, qmodel, test);
}

}  // namespace

TEST_CASE("LeNet-5: trained, pruned, quantized and run as an integer network", "[pipeline][networks]") {
  auto net = lenet_shaped(1, false, 3);
  CHECK(net.output_shape({2, 1, 32, 32}) == Shape<4>{2, kClasses, 1, 1});
  through_the_pipeline(std::move(net), 1);
}

TEST_CASE("the CIFAR-10 tutorial network with batch norm: trained, pruned, folded, quantized, integer", "[pipeline][networks]") {
  auto net = lenet_shaped(3, true, 4);
  CHECK(net.output_shape({2, 3, 32, 32}) == Shape<4>{2, kClasses, 1, 1});
  through_the_pipeline(std::move(net), 3);
}

TEST_CASE("the CIFAR-10 tutorial network: QAT with its batch norms in the graph, statistics frozen, then integer",
          "[pipeline][networks]") {
  auto net = lenet_shaped(3, true, 4);
  const auto train = quadrant_images(512, 3, 1);
  const auto test = quadrant_images(128, 3, 2);
  auto pruner = train_pruned(net, train, 60);

  QModel qmodel(net);
  const auto folded = qmodel.folded_layers();
  REQUIRE(folded.size() == 2);
  CHECK(net.layer_name(1) == "conv1");
  CHECK_THROWS_AS(net.index_of("bn1"), value_error);
  CHECK(qmodel.weight_names() == std::vector<std::string>{"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight"});
  CHECK_NOTHROW(find_parameter(net.parameters(), "conv2.bn.weight"));

  nn::Sgd<float> sgd(net.parameters(), 0.01, {.momentum = 0.9});
  train::Trainer<float> trainer(net, sgd);
  trainer.set_progress(false);
  trainer.add_hook([&](std::int64_t) { pruner.apply(); });  // the pruner's views survive the folding
  qmodel.attach(trainer, {.freeze_after_steps = 40, .freeze_bn_stats_after_steps = 20});
  const auto running_var = [&] {
    const auto v = folded[1]->bn().running_var();
    return std::vector<float>(v.data(), v.data() + v.size());
  };
  std::vector<float> frozen_var;
  for (int step = 0; step < 60; ++step) {
    std::vector<index_t> batch(32);
    std::iota(batch.begin(), batch.end(), (step * 32) % (train.size() - 32));
    (void)trainer.step(train, batch);
    if (step == 19) {
      for (const auto* layer : folded) CHECK(layer->bn_stats_frozen());
      frozen_var = running_var();
    }
  }
  CHECK(running_var() == frozen_var);
  CHECK(qmodel.weight_quantizer("conv1.weight").frozen());
  for (const auto& p : weight_parameters(net.parameters())) {
    INFO(p.name);
    index_t zeros = 0;
    for (index_t i = 0; i < p.value.size(); ++i) zeros += p.value(i) == 0.0f ? 1 : 0;
    CHECK(zeros >= p.value.size() / 2);
  }
  check_integer_network(net, qmodel, test);
}
