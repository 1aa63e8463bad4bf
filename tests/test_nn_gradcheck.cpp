// Finite-difference gradient checks in double: every layer (in training mode; BatchNorm2d in eval mode too)
// and a whole small Sequential with softmax cross-entropy. Central differences with h = 1e-6 agree with backward to ~1e-8.
#include <minnow/nn.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <random>

using namespace minnow;

namespace {

constexpr double kStep = 1e-6;
constexpr double kTolerance = 1e-6;

void randomize(TensorView<double, 1> v, std::mt19937_64& rng) {
  for (index_t i = 0; i < v.size(); ++i) v(i) = 2.0 * nn::uniform01(rng) - 1.0;
}

// |analytic − numeric| / max(1, |numeric|) for every element of `values`, perturbing it in place.
double worst_error(TensorView<double, 1> values, TensorView<const double, 1> analytic, const std::function<double()>& loss) {
  double worst = 0.0;
  for (index_t i = 0; i < values.size(); ++i) {
    const double saved = values(i);
    values(i) = saved + kStep;
    const double up = loss();
    values(i) = saved - kStep;
    const double down = loss();
    values(i) = saved;
    const double numeric = (up - down) / (2 * kStep);
    worst = std::max(worst, std::abs(analytic(i) - numeric) / std::max(1.0, std::abs(numeric)));
  }
  return worst;
}

// Checks dL/dx and dL/dθ of one layer in `mode` for L = Σ y ⊙ r with a fixed random r.
void check_layer(nn::Layer<double>& layer, Shape<4> input_shape, std::uint64_t seed, nn::Mode mode = nn::Mode::train) {
  std::mt19937_64 rng(seed);
  Tensor<double, 4> x(input_shape);
  randomize(x.view().reshape<1>(-1), rng);
  std::vector<Parameter<double>> params;
  layer.collect_parameters("", params);
  for (auto& p : params) randomize(p.value, rng);
  Tensor<double, 4> r(layer.output_shape(input_shape));
  randomize(r.view().reshape<1>(-1), rng);
  const auto loss = [&] { return (layer.forward(x, mode).array() * r.array()).sum(); };
  (void)loss();
  const Tensor<double, 4> dx(layer.backward(r));
  Tensor<double, 1> analytic_grads({parameter_count(params)});
  index_t offset = 0;
  for (const auto& p : params) {
    analytic_grads.view().slice(offset, offset + p.grad.size()).copy_from(p.grad);
    offset += p.grad.size();
  }
  CHECK(worst_error(x.view().reshape<1>(-1), dx.view().reshape<1>(-1), loss) < kTolerance);
  offset = 0;
  for (const auto& p : params) {
    INFO(p.name);
    CHECK(worst_error(p.value, analytic_grads.view().slice(offset, offset + p.value.size()), loss) < kTolerance);
    offset += p.value.size();
  }
}

}  // namespace

TEST_CASE("Conv2d gradients match finite differences") {
  for (const auto& [stride, padding] : {std::pair{1, 0}, std::pair{1, 1}, std::pair{2, 0}, std::pair{2, 1}}) {
    INFO("stride " << stride << " padding " << padding);
    nn::Conv2d<double> conv(2, 3, 3, stride, padding);
    check_layer(conv, {2, 2, 6, 7}, 7);
  }
}

TEST_CASE("MaxPool2d gradients match finite differences") {
  nn::MaxPool2d<double> pool(2);
  check_layer(pool, {2, 3, 6, 5}, 11);
  nn::MaxPool2d<double> overlapping(3, 1);
  check_layer(overlapping, {1, 2, 5, 5}, 12);
}

TEST_CASE("Linear gradients match finite differences") {
  nn::Linear<double> fc(12, 5);
  check_layer(fc, {3, 3, 2, 2}, 13);
}

TEST_CASE("ReLU and Flatten gradients match finite differences") {
  nn::ReLU<double> relu;
  check_layer(relu, {2, 3, 4, 4}, 14);
  nn::Flatten<double> flatten;
  check_layer(flatten, {2, 3, 2, 2}, 15);
}

TEST_CASE("BatchNorm2d, AvgPool2d, GlobalAvgPool2d and Dropout gradients match finite differences") {
  SECTION("BatchNorm2d, train mode (batch statistics)") {
    nn::BatchNorm2d<double> bn(3);
    check_layer(bn, {4, 3, 3, 2}, 31, nn::Mode::train);
  }
  SECTION("BatchNorm2d, train mode, not affine") {
    nn::BatchNorm2d<double> bn(2, 1e-3, 0.5, false);
    check_layer(bn, {3, 2, 2, 2}, 32, nn::Mode::train);
  }
  SECTION("BatchNorm2d, eval mode (running statistics)") {
    nn::BatchNorm2d<double> bn(3);
    bn.running_mean()(1) = 0.5;
    bn.running_var()(2) = 2.5;
    check_layer(bn, {2, 3, 3, 3}, 33, nn::Mode::eval);
  }
  SECTION("AvgPool2d") {
    nn::AvgPool2d<double> pool(3, 2, 1);
    check_layer(pool, {2, 2, 7, 6}, 34, nn::Mode::train);
    nn::AvgPool2d<double> overlapping(2, 1);
    check_layer(overlapping, {1, 2, 4, 5}, 35, nn::Mode::train);
  }
  SECTION("GlobalAvgPool2d") {
    nn::GlobalAvgPool2d<double> pool;
    check_layer(pool, {2, 3, 4, 5}, 36, nn::Mode::train);
  }
  SECTION("Dropout with a fixed mask") {
    // A fresh layer with the same seed draws the same mask in every evaluation of the loss.
    std::mt19937_64 rng(37);
    Tensor<double, 4> x({2, 3, 4, 4}), r({2, 3, 4, 4});
    randomize(x.view().reshape<1>(-1), rng);
    randomize(r.view().reshape<1>(-1), rng);
    const auto loss = [&] {
      nn::Dropout<double> drop(0.3, 99);
      return (drop.forward(x, nn::Mode::train).array() * r.array()).sum();
    };
    nn::Dropout<double> drop(0.3, 99);
    (void)drop.forward(x, nn::Mode::train);
    const Tensor<double, 4> dx(drop.backward(r));
    CHECK(worst_error(x.view().reshape<1>(-1), dx.view().reshape<1>(-1), loss) < kTolerance);
  }
}

TEST_CASE("a whole Sequential with softmax cross-entropy matches finite differences") {
  nn::Sequential<double> net = nn::make_cnn<double>({}, {.conv1 = 3, .conv2 = 4, .hidden = 6}, 21);
  net.layer(0).set_needs_input_grad(true);
  std::mt19937_64 rng(5);
  Tensor<double, 4> x({3, 1, 28, 28});
  randomize(x.view().reshape<1>(-1), rng);
  Tensor<std::int32_t, 1> labels({3});
  labels(0) = 1, labels(1) = 7, labels(2) = 3;
  Tensor<double, 2> dlogits({3, 10});
  const auto loss = [&] {
    const auto logits = net.forward(x, nn::Mode::train).reshape<2>(3, 10);
    return nn::softmax_cross_entropy<double>(logits, labels, dlogits);
  };
  (void)loss();
  net.backward(dlogits.view().reshape<4>(3, 10, 1, 1));
  for (const auto& p : net.parameters()) {
    INFO(p.name);
    const Tensor<double, 1> analytic(p.grad);
    // fc1 has 1176 weights; every element is checked.
    CHECK(worst_error(p.value, analytic, loss) < kTolerance);
  }
}

namespace {

// Copies every parameter of `from` into `to`: the same architecture in another scalar type.
template <class From, class To>
void copy_parameters(nn::Sequential<From>& from, nn::Sequential<To>& to) {
  const auto source = from.parameters();
  const auto target = to.parameters();
  REQUIRE(source.size() == target.size());
  for (std::size_t i = 0; i < source.size(); ++i) {
    REQUIRE(source[i].value.size() == target[i].value.size());
    for (index_t k = 0; k < source[i].value.size(); ++k) target[i].value(k) = static_cast<To>(source[i].value(k));
  }
}

}  // namespace

TEST_CASE("Sequential::backward returns dL/dx of the input with set_input_grad, fused and unfused") {
  const nn::ImageTask task{.channels = 2, .height = 8, .width = 8, .classes = 4};
  const nn::CnnWidths widths{.conv1 = 3, .conv2 = 4, .hidden = 6};
  std::mt19937_64 rng(41);
  Tensor<double, 4> x({2, 2, 8, 8});
  randomize(x.view().reshape<1>(-1), rng);
  Tensor<std::int32_t, 1> labels({2});
  labels(0) = 3, labels(1) = 1;
  // The reference: the double network, its loss as a function of x for central differences.
  auto reference = nn::make_cnn<double>(task, widths, 42);
  Tensor<double, 2> dlogits({2, 4});
  const auto loss = [&] {
    return nn::softmax_cross_entropy<double>(reference.forward(x, nn::Mode::train).reshape<2>(2, 4), labels, dlogits);
  };

  SECTION("double: off by default (empty view), then dL/dx") {
    CHECK_FALSE(reference.input_grad());
    (void)loss();
    CHECK(reference.backward(dlogits.view().reshape<4>(2, 4, 1, 1)).size() == 0);
    reference.set_input_grad(true);
    (void)loss();
    const Tensor<double, 4> dx(reference.backward(dlogits.view().reshape<4>(2, 4, 1, 1)));
    REQUIRE(dx.shape() == x.shape());
    CHECK(worst_error(x.view().reshape<1>(-1), dx.view().reshape<1>(-1), loss) < kTolerance);
    // Off again: the first layer skips it once more.
    reference.set_input_grad(false);
    (void)loss();
    CHECK(reference.backward(dlogits.view().reshape<4>(2, 4, 1, 1)).size() == 0);
  }

  SECTION("float, with and without fusion, against the double network's finite differences") {
    for (const bool fusion : {true, false}) {
      INFO("fusion " << fusion);
      auto net = nn::make_cnn<float>(task, widths, 42);
      copy_parameters(net, reference);
      net.set_fusion(fusion);
      net.set_input_grad(true);
      CHECK(net.fused_steps() == (fusion ? 2U : 0U));
      Tensor<float, 4> xf(x.shape());
      for (index_t i = 0; i < x.size(); ++i) xf.data()[i] = static_cast<float>(x.data()[i]);
      for (index_t i = 0; i < x.size(); ++i) x.data()[i] = xf.data()[i];  // the same input in both types
      Tensor<float, 2> dlogits_f({2, 4});
      (void)nn::softmax_cross_entropy<float>(net.forward(xf, nn::Mode::train).reshape<2>(2, 4), labels, dlogits_f);
      const auto dxf = net.backward(dlogits_f.view().reshape<4>(2, 4, 1, 1));
      REQUIRE(dxf.shape() == x.shape());
      Tensor<double, 4> dx(x.shape());
      for (index_t i = 0; i < x.size(); ++i) dx.data()[i] = dxf.data()[i];
      CHECK(worst_error(x.view().reshape<1>(-1), dx.view().reshape<1>(-1), loss) < 1e-5);
      // Asked for nothing, the fused and unfused first layers both skip it.
      net.set_input_grad(false);
      (void)net.forward(xf, nn::Mode::train);
      CHECK(net.backward(dlogits_f.view().reshape<4>(2, 4, 1, 1)).size() == 0);
    }
  }
}
