// Forward and backward of Conv2d, MaxPool2d, Linear, ReLU, softmax cross-entropy and a small Sequential,
// against PyTorch 1.13 (fixtures from tests/fixtures/generate_nn.py), to 1e-5 relative.
#include "fixtures.hpp"
#include "test_support.hpp"
#include "../examples/architectures.hpp"

#include <minnow/nn.hpp>

using namespace minnow;
using fixtures::max_rel_error;
using fixtures::tensor;

namespace {
constexpr double kTolerance = 1e-5;

template <class T, std::size_t R>
void set(TensorView<T, R> dst, const nlohmann::json& c, const std::string& name) {
  dst.copy_from(tensor<T, R>(c, name));
}

// Linear inputs/outputs in the fixtures are [N, F]; minnow's layers see [N, F, 1, 1].
template <class T>
Tensor<T, 4> as_nchw(const Tensor<T, 2>& t) {
  Tensor<T, 4> out({t.dim(0), t.dim(1), 1, 1});
  out.array() = t.array();
  return out;
}
}  // namespace

TEST_CASE("Conv2d matches PyTorch (stride 1/2, padding 0/1/2)") {
  for (const auto& c : fixtures::cases("nn.json", "conv2d")) {
    SECTION(c.at("name").get<std::string>()) {
      const auto& p = c.at("params");
      nn::Conv2d<float> conv(p.at("in"), p.at("out"), p.at("kernel"), p.at("stride"), p.at("padding"));
      set(conv.weight(), c, "weight");
      set(conv.bias(), c, "bias");
      const auto x = tensor<float, 4>(c, "x");
      const auto y = conv.forward(x, nn::Mode::train);
      CHECK(y.shape() == tensor<float, 4>(c, "y").shape());
      CHECK(max_rel_error(y, tensor<float, 4>(c, "y")) < kTolerance);
      const auto dy = tensor<float, 4>(c, "dy");
      const auto dx = conv.backward(dy);
      CHECK(max_rel_error(dx, tensor<float, 4>(c, "dx")) < kTolerance);
      std::vector<Parameter<float>> params;
      conv.collect_parameters("conv.", params);
      CHECK(params[0].name == "conv.weight");
      CHECK(max_rel_error(params[0].grad, tensor<float, 4>(c, "dweight")) < kTolerance);
      CHECK(max_rel_error(params[1].grad, tensor<float, 1>(c, "dbias")) < kTolerance);
    }
  }
}

TEST_CASE("MaxPool2d matches PyTorch (floor mode, overlapping windows)") {
  for (const auto& c : fixtures::cases("nn.json", "maxpool2d")) {
    SECTION(c.at("name").get<std::string>()) {
      nn::MaxPool2d<float> pool(c.at("params").at("kernel"), c.at("params").at("stride"));
      const auto x = tensor<float, 4>(c, "x");
      const auto y = pool.forward(x, nn::Mode::train);
      REQUIRE(y.shape() == tensor<float, 4>(c, "y").shape());
      CHECK(max_rel_error(y, tensor<float, 4>(c, "y")) == 0.0);
      const auto dy = tensor<float, 4>(c, "dy");
      CHECK(max_rel_error(pool.backward(dy), tensor<float, 4>(c, "dx")) < kTolerance);
    }
  }
}

TEST_CASE("Linear matches PyTorch") {
  for (const auto& c : fixtures::cases("nn.json", "linear")) {
    SECTION(c.at("name").get<std::string>()) {
      nn::Linear<float> fc(c.at("params").at("in"), c.at("params").at("out"));
      set(fc.weight(), c, "weight");
      set(fc.bias(), c, "bias");
      const auto x = as_nchw(tensor<float, 2>(c, "x"));
      CHECK(max_rel_error(fc.forward(x, nn::Mode::train), tensor<float, 2>(c, "y")) < kTolerance);
      const auto dy = as_nchw(tensor<float, 2>(c, "dy"));
      CHECK(max_rel_error(fc.backward(dy), tensor<float, 2>(c, "dx")) < kTolerance);
      std::vector<Parameter<float>> params;
      fc.collect_parameters("", params);
      CHECK(max_rel_error(params[0].grad, tensor<float, 2>(c, "dweight")) < kTolerance);
      CHECK(max_rel_error(params[1].grad, tensor<float, 1>(c, "dbias")) < kTolerance);
      // The same on [N, F] rows, without the trailing 1 × 1: the very same numbers, and shapes [N, out], [N, in].
      const auto x2 = tensor<float, 2>(c, "x");
      const Tensor<float, 4> y4(fc.forward(x, nn::Mode::train));
      const auto y2 = fc.forward(x2.view(), nn::Mode::train);
      CHECK(y2.shape() == Shape<2>{x2.dim(0), fc.out_features()});
      CHECK(test_support::raw(y2.data(), y2.size()) == test_support::raw(y4.data(), y4.size()));
      const auto dy2 = tensor<float, 2>(c, "dy");
      const auto dx2 = fc.backward(dy2.view());
      CHECK(dx2.shape() == x2.shape());
      CHECK(max_rel_error(dx2, tensor<float, 2>(c, "dx")) < kTolerance);
    }
  }
}

TEST_CASE("ReLU matches PyTorch bit for bit, including -0 and the gradient at 0") {
  const auto c = fixtures::cases("nn.json", "relu").front();
  nn::ReLU<float> relu;
  const auto x = as_nchw(tensor<float, 2>(c, "x"));
  const auto y = relu.forward(x, nn::Mode::train);
  const auto expected = tensor<float, 2>(c, "y");
  for (index_t i = 0; i < y.size(); ++i) {
    CHECK(std::signbit(y.data()[i]) == std::signbit(expected.data()[i]));
    CHECK(y.data()[i] == expected.data()[i]);
  }
  const auto dy = as_nchw(tensor<float, 2>(c, "dy"));
  CHECK(max_rel_error(relu.backward(dy), tensor<float, 2>(c, "dx")) == 0.0);
}

TEST_CASE("softmax cross-entropy matches PyTorch, also for huge logits") {
  for (const auto& c : fixtures::cases("nn.json", "cross_entropy")) {
    SECTION(c.at("name").get<std::string>()) {
      const auto logits = tensor<float, 2>(c, "logits");
      const auto labels = tensor<std::int32_t, 1>(c, "labels");
      Tensor<float, 2> grad(logits.shape());
      const double loss = nn::softmax_cross_entropy<float>(logits, labels, grad);
      const double expected = c.at("tensors").at("loss").at("data")[0].get<double>();
      CHECK(std::isfinite(loss));
      CHECK(std::abs(loss - expected) / std::max(1.0, std::abs(expected)) < kTolerance);
      CHECK(max_rel_error(grad, tensor<float, 2>(c, "dlogits")) < kTolerance);
    }
  }
}

TEST_CASE("a small Sequential CNN matches PyTorch end to end") {
  const auto c = fixtures::cases("nn.json", "sequential").front();
  nn::Sequential<float> net;
  net.add("", nn::Conv2d<float>(1, 2, 3, 1, 1));
  net.add("", nn::ReLU<float>());
  net.add("", nn::MaxPool2d<float>(2));
  net.add("", nn::Conv2d<float>(2, 3, 3, 2, 1));
  net.add("", nn::ReLU<float>());
  net.add("", nn::Flatten<float>());
  net.add("", nn::Linear<float>(12, 5));
  auto params = net.parameters();
  REQUIRE(params.size() == 6);
  for (auto& p : params) {
    const auto flat = fixtures::flat<float>(c, p.name);
    p.value.copy_from(flat);
  }
  net.layer(0).set_needs_input_grad(true);  // the fixture checks dx too
  const auto x = tensor<float, 4>(c, "x");
  const auto labels = tensor<std::int32_t, 1>(c, "labels");
  const auto logits = net.forward(x, nn::Mode::train).reshape<2>(x.dim(0), 5);
  CHECK(max_rel_error(logits, tensor<float, 2>(c, "y")) < kTolerance);
  Tensor<float, 2> dlogits(logits.shape());
  const double loss = nn::softmax_cross_entropy<float>(logits, labels, dlogits);
  CHECK(std::abs(loss - c.at("tensors").at("loss").at("data")[0].get<double>()) < kTolerance);
  net.backward(dlogits.view().reshape<4>(x.dim(0), 5, 1, 1));
  for (const auto& p : params) {
    INFO(p.name);
    CHECK(max_rel_error(p.grad, fixtures::flat<float>(c, "grad." + p.name)) < kTolerance);
  }
}

TEST_CASE("teacher5x5: 5x5 kernels with same padding, fused like the teacher, and named by make_architecture") {
  auto net = example::make_architecture<float>("teacher5x5", 3);
  const auto params = net.parameters();
  REQUIRE(params.size() == 8);
  CHECK(params[0].shape == std::vector<index_t>{32, 1, 5, 5});
  CHECK(params[2].shape == std::vector<index_t>{64, 32, 5, 5});
  CHECK(params[4].shape == std::vector<index_t>{1024, 3136});
  CHECK(parameter_count(params) == 32 * 25 + 32 + 64 * 32 * 25 + 64 + 3136 * 1024 + 1024 + 1024 * 10 + 10);
  CHECK(net.output_shape({3, 1, 28, 28}) == Shape<4>{3, 10, 1, 1});
  CHECK(net.fused_steps() == 2);
  // The fused steps run the direct kernel (no Winograd for 5×5), so they equal the layers one by one exactly.
  Tensor<float, 4> x({3, 1, 28, 28});
  std::mt19937 rng(5);
  test_support::fill_normal(x.data(), x.size(), rng);
  const Tensor<float, 4> fused(net.forward(x));
  net.set_fusion(false);
  const Tensor<float, 4> layered(net.forward(x));
  CHECK(std::equal(fused.data(), fused.data() + fused.size(), layered.data(), layered.data() + layered.size()));
  // The seed alone decides the initial weights.
  CHECK(nn::make_teacher5x5<float>(3).parameters()[2].value(7) == params[2].value(7));
  CHECK(nn::make_teacher5x5<float>(4).parameters()[2].value(7) != params[2].value(7));
  CHECK_THROWS_WITH(nn::make_cnn<float>({}, {.conv1 = 8, .conv2 = 8, .hidden = 8, .kernel = 4}, 0), "make_cnn: kernel must be odd and positive, got 4");
  CHECK_THROWS_WITH(example::make_architecture<float>("resnet", 0),
                    "unknown architecture 'resnet' (expected teacher, teacher5x5 or student)");
  CHECK_THROWS_WITH(example::check_architecture("Teacher"),
                    "unknown architecture 'Teacher' (expected teacher, teacher5x5 or student)");
  // Every listed name builds its own network (none falls through to another's).
  std::vector<index_t> sizes;
  for (const auto name : example::architecture_names) {
    CHECK_NOTHROW(example::check_architecture(name));
    sizes.push_back(parameter_count(example::make_architecture<float>(name, 1).parameters()));
  }
  CHECK(sizes == std::vector<index_t>{parameter_count(nn::make_teacher<float>(1).parameters()),
                                      parameter_count(params), parameter_count(nn::make_student<float>(1).parameters())});
}

TEST_CASE("Sequential names parameters like PyTorch and checks shapes") {
  auto teacher = nn::make_teacher<float>(1);
  const auto params = teacher.parameters();
  REQUIRE(params.size() == 8);
  CHECK(params[0].name == "conv1.weight");
  CHECK(params[0].shape == std::vector<index_t>{64, 1, 3, 3});
  CHECK(params[5].name == "fc1.bias");
  const auto weights = weight_parameters(params);
  REQUIRE(weights.size() == 4);
  CHECK(weights[1].name == "conv2.weight");
  CHECK(weights[3].name == "fc2.weight");
  CHECK(parameter_count(params) == 64 * 9 + 64 + 128 * 64 * 9 + 128 + 6272 * 1000 + 1000 + 1000 * 10 + 10);
  CHECK(parameter_count(nn::make_student<float>(1).parameters()) == 16 * 9 + 16 + 32 * 16 * 9 + 32 + 1568 * 64 + 64 + 64 * 10 + 10);
  CHECK(teacher.output_shape({7, 1, 28, 28}) == Shape<4>{7, 10, 1, 1});
  Tensor<float, 4> wrong({2, 3, 28, 28});
  CHECK_THROWS_WITH(teacher.forward(wrong), Catch::Contains("Conv2d(1, 64, kernel=3, stride=1, padding=1): input [2, 3, 28, 28]"));
  CHECK_THROWS_AS(teacher.output_shape({1, 1, 27, 28}), shape_error);  // 6272 features expected by fc1
  CHECK_THROWS_AS(example::make_architecture<float>("resnet", 0), value_error);
  CHECK_THROWS_AS(nn::Conv2d<float>(1, 2, 0), value_error);
  CHECK_THROWS_AS(nn::MaxPool2d<float>(-1), value_error);
  CHECK_THROWS_AS(nn::Linear<float>(0, 3), value_error);
  nn::Linear<float> fc(4, 2);
  Tensor<float, 4> x({3, 4, 1, 1});
  (void)fc.forward(x, nn::Mode::train);
  Tensor<float, 4> bad_grad({3, 3, 1, 1});
  CHECK_THROWS_WITH(fc.backward(bad_grad), "Linear.backward: gradient [3, 3, 1, 1] does not match the last output [3, 2, 1, 1]");
  Tensor<float, 2> logits({2, 3});
  Tensor<std::int32_t, 1> labels({2});
  labels(1) = 3;
  Tensor<float, 2> g({2, 3});
  CHECK_THROWS_WITH(nn::softmax_cross_entropy<float>(logits, labels, g), "softmax_cross_entropy: label 3 at position 1 is outside [0, 3)");
}

TEST_CASE("Sequential::insert_after places a layer by name and keeps the others' names") {
  auto student = nn::make_student<float>(1);
  Tensor<float, 4> x({2, 1, 28, 28});
  x.view().array() = 0.5f;
  const Tensor<float, 4> before(student.forward(x.view()));
  student.insert_after("relu1", "extra_relu", nn::ReLU<float>());  // ReLU after ReLU changes nothing
  student.insert_after("fc2", "last_relu", nn::ReLU<float>());
  REQUIRE(student.size() == 12);
  CHECK(student.layer_name(2) == "extra_relu");
  CHECK(student.layer_name(3) == "pool1");
  CHECK(student.layer_name(11) == "last_relu");
  CHECK(student.parameters()[0].name == "conv1.weight");
  const Tensor<float, 4> after(student.forward(x.view()));  // a copy: the next forward reuses the buffer
  for (index_t i = 0; i < after.size(); ++i) CHECK(after.data()[i] == std::max(before.data()[i], 0.0f));
  CHECK_THROWS_WITH(student.insert_after("relu9", "r", nn::ReLU<float>()), "Sequential: no layer named 'relu9'");
  CHECK_THROWS_WITH(student.insert_after("relu1", "pool1", nn::ReLU<float>()), "Sequential: duplicate layer name 'pool1'");
  CHECK_THROWS_AS(student.insert_after("relu1", "", nn::ReLU<float>()), value_error);
  CHECK_THROWS_WITH(student.insert(13, "r", nn::ReLU<float>()), "Sequential: insert position 13 is past the 12 layers");
  CHECK(student.size() == 12);
  student.insert(0, "input_relu", nn::ReLU<float>());  // inputs are ≥ 0 here: nothing changes
  CHECK(student.index_of("conv1") == 1);
  CHECK_FALSE(student.layer(0).needs_input_grad());
  CHECK(student.layer(1).needs_input_grad());
  const auto again = student.forward(x.view());
  for (index_t i = 0; i < again.size(); ++i) CHECK(again.data()[i] == after.data()[i]);
  CHECK(again.data() != after.data());
}

TEST_CASE("PyTorch's default initialisation: U(±1/sqrt(fan_in)), seeded") {
  auto net_a = nn::make_student<float>(42), net_b = nn::make_student<float>(42), net_c = nn::make_student<float>(43);
  const auto a = net_a.parameters(), b = net_b.parameters(), c = net_c.parameters();
  CHECK((a[2].value.array() == b[2].value.array()).all());
  CHECK_FALSE((a[2].value.array() == c[2].value.array()).all());
  const double bound = 1.0 / std::sqrt(16.0 * 9.0);  // conv2: fan_in = 16·3·3
  CHECK(a[2].value.array().abs().maxCoeff() <= bound);
  CHECK(a[2].value.array().abs().maxCoeff() > 0.95 * bound);
  // Mean |U(−b, b)| = b/2; 4608 samples give it within a few percent.
  CHECK(a[2].value.array().abs().mean() == Approx(bound / 2).epsilon(0.05));
  CHECK(a[3].value.array().abs().maxCoeff() <= bound);
}

TEST_CASE("MaxPool2d ties and NaN follow PyTorch's row-major scan, in every kernel") {
  for (const auto& [k, s] : {std::pair<index_t, index_t>{2, 2}, {2, 1}, {3, 3}}) {
    INFO("kernel " << k << " stride " << s);
    nn::MaxPool2d<float> pool(k, s);
    Tensor<float, 4> x({1, 1, 6, 6});
    x.fill(1.0f);  // all tied: the first element of every window wins
    pool.forward(x, nn::Mode::train);
    Tensor<float, 4> dy(pool.output_shape(x.shape()), 1.0f);
    const auto dx = pool.backward(dy);
    CHECK(dx(0, 0, 0, 0) == 1.0f);
    // With stride 1 every position starts a window; otherwise only the windows' corners do.
    CHECK(dx(0, 0, 0, 1) == (s == 1 ? 1.0f : 0.0f));
    CHECK(dx(0, 0, 1, 1) == (s == 1 ? 1.0f : 0.0f));
    CHECK(dx.array().sum() == static_cast<float>(dy.size()));
    // Two NaN in one window: the later one (row-major) receives the gradient.
    x(0, 0, 0, 1) = std::nanf("");
    x(0, 0, 1, 0) = std::nanf("");
    const auto y = pool.forward(x, nn::Mode::train);
    CHECK(std::isnan(y(0, 0, 0, 0)));
    const auto dx2 = pool.backward(dy);
    CHECK(dx2(0, 0, 1, 0) >= 1.0f);
    CHECK(dx2(0, 0, 0, 0) == 0.0f);
  }
}

TEST_CASE("make_cnn builds for any image shape and class count") {
  auto cifar = nn::make_cnn<float>({.channels = 3, .height = 32, .width = 32, .classes = 100}, {.conv1 = 6, .conv2 = 8, .hidden = 12}, 1);
  CHECK(find_parameter(cifar.parameters(), "conv1.weight").shape == std::vector<index_t>{6, 3, 3, 3});
  CHECK(find_parameter(cifar.parameters(), "fc1.weight").shape == std::vector<index_t>{12, 8 * 8 * 8});
  CHECK(find_parameter(cifar.parameters(), "fc2.weight").shape == std::vector<index_t>{100, 12});
  Tensor<float, 4> x({2, 3, 32, 32});
  x.array() = 0.5f;
  CHECK(cifar.forward(x).shape() == Shape<4>{2, 100, 1, 1});
  // Odd sizes: each pool drops the last row and column (30 → 15 → 7, 22 → 11 → 5).
  auto odd = nn::make_cnn<float>({.channels = 2, .height = 30, .width = 22, .classes = 3}, {.conv1 = 4, .conv2 = 5, .hidden = 6, .kernel = 5}, 2);
  CHECK(find_parameter(odd.parameters(), "fc1.weight").shape == std::vector<index_t>{6, 5 * 7 * 5});
  CHECK(odd.output_shape({4, 2, 30, 22}) == Shape<4>{4, 3, 1, 1});
  CHECK(parameter_count(nn::make_cnn<float>({}, {}, 1).parameters()) == parameter_count(nn::make_student<float>(1).parameters()));
  CHECK_THROWS_WITH(nn::make_cnn<float>({.channels = 1, .height = 3, .width = 28, .classes = 10}, {}, 0),
                    "make_cnn: images of 3×28 are too small for two 2×2 pools (4×4 at least)");
  CHECK_THROWS_WITH(nn::make_cnn<float>({.channels = 1, .height = 28, .width = 28, .classes = 0}, {}, 0),
                    Catch::Contains("classes 0 must be positive"));
  CHECK_THROWS_WITH(nn::make_cnn<float>({}, {.conv1 = 4, .conv2 = -1, .hidden = 4}, 0), Catch::Contains("widths 4, -1, 4"));
}
