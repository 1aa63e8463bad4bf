// minnow::pipeline surgery: a network whose filters an ln-structured mask pruned, rebuilt smaller and
// dense, computes what the masked network computes (student and teacher, 25 % and 50 % of the filters of
// both convs), parameter counts shrink as expected, and bad masks / chains throw errors naming the layer.
#include "test_support.hpp"
#include "../examples/architectures.hpp"

#include <minnow/nn/models.hpp>
#include <minnow/pipeline/surgery.hpp>
#include <minnow/prune/hook.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

using namespace minnow;
using Catch::Matchers::Contains;

namespace {

Tensor<float, 4> random_input(index_t n, std::uint64_t seed) {
  Tensor<float, 4> x({n, 1, 28, 28});
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = u(rng);
  return x;
}

// Largest |a − b| relative to the largest |a| (at least 1).
float max_difference(TensorView<const float, 4> a, TensorView<const float, 4> b) {
  REQUIRE(a.shape() == b.shape());
  float diff = 0.0f, scale = 1.0f;
  for (index_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(a.data()[i] - b.data()[i]));
    scale = std::max(scale, std::abs(a.data()[i]));
  }
  return diff / scale;
}

// Tracks every weight of `net` and prunes `fraction` of the slices along dim 0 of the named ones.
prune::Pruner<float> prune_filters(nn::Sequential<float>& net, const std::vector<std::string>& names, double fraction) {
  prune::Pruner<float> pruner;
  for (const auto& p : net.parameters()) {
    if (p.name.ends_with(".weight")) pruner.track(p);
  }
  for (const auto& name : names) pruner.ln_structured(name, prune::Fraction{fraction}, 2.0, 0);
  pruner.apply();
  return pruner;
}

// conv1/conv2 filters and fc1 neurons kept → the parameter count of make_cnn with those sizes.
index_t cnn_parameters(index_t c1, index_t c2, index_t hidden) {
  return c1 * 9 + c1 + c2 * c1 * 9 + c2 + hidden * c2 * 49 + hidden + 10 * hidden + 10;
}

void check_surgery(const std::string& arch, index_t c1, index_t c2, index_t hidden, double fraction, index_t batch) {
  auto net = example::make_architecture<float>(arch, 7);
  auto pruner = prune_filters(net, {"conv1.weight", "conv2.weight"}, fraction);
  pipeline::zero_pruned_biases(net, pruner);
  auto result = pipeline::remove_pruned_units(net, pruner);

  const auto kept1 = static_cast<index_t>(std::nearbyint(static_cast<double>(c1) * (1.0 - fraction)));
  const auto kept2 = static_cast<index_t>(std::nearbyint(static_cast<double>(c2) * (1.0 - fraction)));
  CHECK(static_cast<index_t>(result.kept.at("conv1").size()) == kept1);
  CHECK(static_cast<index_t>(result.kept.at("conv2").size()) == kept2);
  CHECK(static_cast<index_t>(result.kept.at("fc1").size()) == hidden);
  CHECK(result.kept.at("fc2").size() == 10);
  CHECK(parameter_count(result.network.parameters()) == cnn_parameters(kept1, kept2, hidden));
  CHECK(parameter_count(net.parameters()) == cnn_parameters(c1, c2, hidden));

  // Names survive, and the kept filters are exactly those whose mask slice holds a 1.
  const auto params = result.network.parameters();
  std::vector<std::string> names;
  for (const auto& p : params) names.push_back(p.name);
  CHECK(names == std::vector<std::string>{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias",
                                          "fc2.weight", "fc2.bias"});
  const auto mask2 = pruner.mask("conv2.weight");
  std::vector<index_t> alive;
  for (index_t o = 0; o < c2; ++o) {
    if (mask2.data()[o * c1 * 9] != 0.0f) alive.push_back(o);
  }
  CHECK(result.kept.at("conv2") == alive);
  // A kept filter's weights map back: new conv2 filter i, input j is old filter kept[i], input kept1[j].
  const auto& k1 = result.kept.at("conv1");
  const auto old_w = find_parameter(net.parameters(), "conv2.weight").value_as<4>();
  const auto new_w = find_parameter(params, "conv2.weight").value_as<4>();
  CHECK(new_w(1, 2, 0, 1) == old_w(alive[1], k1[2], 0, 1));

  const auto x = random_input(batch, 11);
  Tensor<float, 4> expected(net.forward(x.view()));
  const auto got = result.network.forward(x.view());
  CHECK(max_difference(expected.view(), got) <= 1e-5f);
}

}  // namespace

TEST_CASE("surgery: the student with 25 % and 50 % of its conv filters removed computes the masked student") {
  check_surgery("student", 16, 32, 64, 0.25, 5);
  check_surgery("student", 16, 32, 64, 0.5, 1);
}

TEST_CASE("surgery: the teacher with 25 % and 50 % of its conv filters removed computes the masked teacher") {
  check_surgery("teacher", 64, 128, 1000, 0.25, 2);
  check_surgery("teacher", 64, 128, 1000, 0.5, 2);
}

TEST_CASE("surgery: a removed unit's non-zero output is folded into a Linear consumer's bias") {
  // conv2 → pool → flatten → fc1 and fc1 → fc2 absorb the constants relu(bias) of removed units exactly.
  auto net = nn::make_student<float>(3);
  for (auto& p : net.parameters()) {
    if (p.name == "conv2.bias" || p.name == "fc1.bias") p.value.fill(0.25f);  // positive: survives the ReLU
  }
  auto pruner = prune_filters(net, {"conv2.weight", "fc1.weight"}, 0.5);
  auto result = pipeline::remove_pruned_units(net, pruner);
  CHECK(result.kept.at("conv2").size() == 16);
  CHECK(result.kept.at("fc1").size() == 32);
  CHECK(parameter_count(result.network.parameters()) == cnn_parameters(16, 16, 32));
  const auto x = random_input(3, 5);
  Tensor<float, 4> expected(net.forward(x.view()));
  CHECK(max_difference(expected.view(), result.network.forward(x.view())) <= 1e-5f);
}

TEST_CASE("surgery: the last layer keeps its outputs, unpruned layers keep every unit") {
  auto net = nn::make_student<float>(4);
  auto pruner = prune_filters(net, {"fc2.weight"}, 0.3);
  auto result = pipeline::remove_pruned_units(net, pruner);
  CHECK(parameter_count(result.network.parameters()) == parameter_count(net.parameters()));
  const auto x = random_input(2, 6);
  Tensor<float, 4> expected(net.forward(x.view()));
  CHECK(max_difference(expected.view(), result.network.forward(x.view())) <= 1e-5f);
}

TEST_CASE("surgery: bad masks and chains throw typed errors naming the layer") {
  auto net = nn::make_student<float>(1);
  std::vector<float> ones(16 * 9, 1.0f);
  const TensorView<const float, 1> flat(ones.data(), {static_cast<index_t>(ones.size())});

  SECTION("a mask whose shape differs from the weight's") {
    const std::vector<pipeline::NamedMask<float>> masks = {{"conv1.weight", {16, 1, 9}, flat}};
    const auto message = test_support::message_of<shape_error>([&] { (void)pipeline::remove_pruned_units(net, masks); });
    CHECK_THAT(message, Contains("conv1") && Contains("[16, 1, 9]") && Contains("[16, 1, 3, 3]"));
  }
  SECTION("every unit pruned") {
    std::vector<float> zeros(16 * 9, 0.0f);
    const std::vector<pipeline::NamedMask<float>> masks = {
        {"conv1.weight", {16, 1, 3, 3}, TensorView<const float, 1>(zeros.data(), {16 * 9})}};
    const auto message = test_support::message_of<value_error>([&] { (void)pipeline::remove_pruned_units(net, masks); });
    CHECK_THAT(message, Contains("conv1") && Contains("16"));
  }
  SECTION("a removed filter with a non-zero bias feeding a padded conv") {
    for (auto& p : net.parameters()) {
      if (p.name == "conv1.bias") p.value.fill(0.5f);
    }
    auto pruner = prune_filters(net, {"conv1.weight"}, 0.25);
    const auto message = test_support::message_of<value_error>([&] { (void)pipeline::remove_pruned_units(net, pruner); });
    CHECK_THAT(message, Contains("conv1") && Contains("conv2") && Contains("zero_pruned_biases"));
  }
  SECTION("a layer surgery cannot follow") {
    struct Identity final : nn::Layer<float> {
      [[nodiscard]] std::string describe() const override { return "Identity()"; }
      [[nodiscard]] Shape<4> output_shape(const Shape<4>& s) const override { return s; }
      nn::Activations<float> forward(nn::Activations<float> x, nn::Mode) override { return x; }
      nn::Activations<float> backward(nn::Activations<float> dy) override { return dy; }
    };
    net.insert_after("relu1", "mystery", Identity{});
    const auto message = test_support::message_of<value_error>(
        [&] { (void)pipeline::remove_pruned_units(net, std::vector<pipeline::NamedMask<float>>{}); });
    CHECK_THAT(message, Contains("mystery") && Contains("Identity()"));
  }
}
