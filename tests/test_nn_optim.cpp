// SGD (momentum, dampening, Nesterov, weight decay), Adam/AdamW (amsgrad) and learning-rate schedules
// against PyTorch 1.13 (fixtures from tests/fixtures/generate_nn.py).
#include "fixtures.hpp"

#include <minnow/nn/adam.hpp>
#include <minnow/nn/lr_schedule.hpp>
#include <minnow/nn/sgd.hpp>

#include <memory>

using namespace minnow;
using fixtures::max_rel_error;
using fixtures::tensor;

namespace {

// Runs three steps with the fixture's gradients and compares the parameter after each.
template <class MakeOptimizer>
void check_three_steps(const nlohmann::json& c, MakeOptimizer make) {
  auto value = tensor<float, 1>(c, "p0");
  Tensor<float, 1> grad(value.shape());
  std::unique_ptr<nn::Optimizer<float>> opt = make(std::vector<Parameter<float>>{{"p", {value.size()}, value.view(), grad.view()}});
  const char* const grads[] = {"g1", "g2", "g3"};
  const char* const expected[] = {"p1", "p2", "p3"};
  for (int step = 0; step < 3; ++step) {
    grad.view().copy_from(tensor<float, 1>(c, grads[step]));
    opt->step();
    INFO("step " << step + 1);
    CHECK(max_rel_error(value, tensor<float, 1>(c, expected[step])) < 1e-6);
  }
  CHECK(opt->step_count() == 3);
}

}  // namespace

TEST_CASE("SGD matches torch.optim.SGD") {
  for (const auto& c : fixtures::cases("nn.json", "sgd")) {
    SECTION(c.at("name").get<std::string>()) {
      const auto& p = c.at("params");
      check_three_steps(c, [&](std::vector<Parameter<float>> params) {
        return std::make_unique<nn::Sgd<float>>(std::move(params), p.at("lr").get<double>(),
                                                nn::SgdOptions{p.at("momentum"), p.at("dampening"), p.at("weight_decay"),
                                                               p.at("nesterov")});
      });
    }
  }
}

TEST_CASE("Adam and AdamW match torch.optim") {
  auto all = fixtures::cases("nn.json", "adam");
  all.push_back(fixtures::cases("nn.json", "adamw").front());
  for (const auto& c : all) {
    SECTION(c.at("name").get<std::string>()) {
      const auto& p = c.at("params");
      const nn::AdamOptions options{p.at("beta1"), p.at("beta2"), p.at("eps"), p.at("weight_decay"), p.at("amsgrad"),
                                    c.at("kind") == "adamw"};
      check_three_steps(c, [&](std::vector<Parameter<float>> params) {
        return std::make_unique<nn::Adam<float>>(std::move(params), p.at("lr").get<double>(), options);
      });
    }
  }
}

TEST_CASE("optimizer state is reachable per named parameter") {
  Tensor<float, 1> w({4}, 1.0f), g({4}, 0.5f);
  nn::Sgd<float> sgd({{"fc.weight", {4}, w.view(), g.view()}}, 0.1, {.momentum = 0.9});
  sgd.step();
  const auto state = sgd.state("fc.weight");
  REQUIRE(state.size() == 1);
  CHECK(state[0].name == "momentum_buffer");
  CHECK(state[0].view(2) == 0.5f);
  nn::Adam<float> adam({{"fc.weight", {4}, w.view(), g.view()}}, 0.1, {.amsgrad = true});
  CHECK(adam.state(std::size_t{0}).size() == 3);
  CHECK_THROWS_WITH(adam.state("conv.weight"), "optimizer has no parameter named 'conv.weight'");
  CHECK(nn::Sgd<float>({{"fc.weight", {4}, w.view(), g.view()}}, 0.1).state("fc.weight").empty());
}

TEST_CASE("bad optimizer hyper-parameters are refused") {
  Tensor<float, 1> w({4}), g({4});
  std::vector<Parameter<float>> params{{"w", {4}, w.view(), g.view()}};
  CHECK_THROWS_WITH(nn::Sgd<float>(params, -0.1), "learning rate must be finite and >= 0, got -0.1");
  CHECK_THROWS_AS(nn::Sgd<float>(params, std::nan("")), value_error);
  CHECK_THROWS_AS(nn::Sgd<float>(params, 0.1, {.momentum = -1.0}), value_error);
  CHECK_THROWS_AS(nn::Sgd<float>(params, 0.1, {.nesterov = true}), value_error);
  CHECK_THROWS_AS(nn::Adam<float>(params, 0.1, {.beta1 = 1.0}), value_error);
  CHECK_THROWS_AS(nn::Adam<float>(params, 0.1, {.eps = -1.0}), value_error);
}

TEST_CASE("learning-rate schedules match PyTorch's StepLR and CosineAnnealingLR") {
  for (const auto& c : fixtures::cases("nn.json", "lr_schedule")) {
    SECTION(c.at("name").get<std::string>()) {
      const auto& p = c.at("params");
      const auto expected = tensor<double, 1>(c, "lr");
      const double base = p.at("base_lr");
      for (int epoch = 0; epoch < expected.size(); ++epoch) {
        const double lr = p.at("scheduler") == "step" ? nn::StepLR{p.at("step_size"), p.at("gamma")}(epoch, base)
                                                      : nn::CosineAnnealingLR{p.at("T_max"), p.at("eta_min")}(epoch, base);
        INFO("epoch " << epoch);
        CHECK(lr == Approx(expected(epoch)).epsilon(1e-12).margin(1e-15));
      }
    }
  }
  CHECK_THROWS_AS(nn::StepLR{0}(1, 0.1), value_error);
  CHECK_THROWS_AS(nn::CosineAnnealingLR{0}(1, 0.1), value_error);
}
