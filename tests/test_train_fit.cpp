// train/fit.hpp: the one recipe and fit(). Over every sample, fit() is the loop examples/train.cpp ran by
// hand before it used fit() (BatchSampler, Trainer, Nesterov SGD, cosine schedule), bit for bit; with
// FitOptions it is the fine-tuning loops of the examples (an optimizer that carries over, a later stage's
// batch order, step hooks).
#include <minnow/data.hpp>
#include <minnow/nn.hpp>
#include <minnow/train.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <vector>

using namespace minnow;
using test_support::same_parameters;
using test_support::synthetic_data;
using Catch::Matchers::Contains;

TEST_CASE("fit over every sample is the loop examples/train.cpp ran by hand, bit for bit", "[train][fit]") {
  const auto data = synthetic_data(150, 3);  // a partial last batch (150 = 2 × 64 + 22)
  const train::Recipe recipe{.epochs = 3, .batch = 64, .learning_rate = 0.03, .weight_decay = 1e-3};
  constexpr std::uint64_t seed = 7;
  set_threads(1);

  // The former examples/recipe.hpp loop: BatchSampler over the data set, Nesterov SGD, cosine schedule.
  auto by_hand = nn::make_student<float>(seed);
  nn::Sgd<float> sgd(by_hand.parameters(), recipe.learning_rate,
                     {.momentum = 0.9, .weight_decay = recipe.weight_decay, .nesterov = true});
  train::Trainer<float> trainer(by_hand, sgd);
  trainer.set_progress(false);
  data::BatchSampler sampler(data.size(), recipe.batch, seed);
  const nn::CosineAnnealingLR schedule{recipe.epochs};
  std::vector<train::EpochStats> expected;
  for (int epoch = 0; epoch < recipe.epochs; ++epoch) {
    sgd.set_learning_rate(schedule(epoch, recipe.learning_rate));
    sampler.set_epoch(static_cast<std::uint64_t>(epoch));
    expected.push_back(trainer.train_epoch(data, sampler));
  }

  auto all = nn::make_student<float>(seed);
  int reported = 0;
  train::FitOptions<float> options;
  options.on_epoch = [&](const train::EpochStats& stats) { CHECK(stats.epoch == reported++); };
  const auto history = train::fit<float>(all, data, recipe, seed, train::cross_entropy<float>(), options);
  CHECK(same_parameters(all, by_hand));
  CHECK(reported == recipe.epochs);
  REQUIRE(history.size() == expected.size());
  for (std::size_t e = 0; e < history.size(); ++e) {
    CHECK(history[e].epoch == expected[e].epoch);
    CHECK(history[e].learning_rate == expected[e].learning_rate);
    CHECK(history[e].train.loss == expected[e].train.loss);
    CHECK(history[e].train.samples == data.size());
  }
  // The same with the index list 0..N−1 spelled out (SubsetBatchSampler gives BatchSampler's batches).
  auto listed = nn::make_student<float>(seed);
  (void)train::fit<float>(listed, data, data::range_indices(0, data.size()), recipe, seed);
  CHECK(same_parameters(listed, by_hand));
  // And another seed is another run.
  auto other = nn::make_student<float>(seed);
  (void)train::fit<float>(other, data, recipe, seed + 1);
  CHECK_FALSE(same_parameters(other, by_hand));
  set_threads(2);
}

TEST_CASE("fit with an optimizer of the caller's, a later first epoch and step hooks is the hand-written stage", "[train][fit]") {
  const auto data = synthetic_data(128, 4);
  const train::Recipe first{.epochs = 1, .batch = 32, .learning_rate = 0.02};
  const train::Recipe second{.epochs = 2, .batch = 32, .learning_rate = 0.005};
  set_threads(1);

  // By hand: one optimizer for two stages, the second stage's sampler going on from epoch 1, a step hook.
  auto by_hand = nn::make_student<float>(2);
  nn::Sgd<float> sgd(by_hand.parameters(), first.learning_rate, {.momentum = 0.9, .weight_decay = 5e-4, .nesterov = true});
  std::vector<std::int64_t> hand_steps;
  data::BatchSampler sampler(data.size(), 32, 11);
  {
    train::Trainer<float> trainer(by_hand, sgd);
    trainer.set_progress(false);
    sampler.set_epoch(0);
    (void)trainer.train_epoch(data, sampler);
  }
  {
    train::Trainer<float> trainer(by_hand, sgd);
    trainer.set_progress(false);
    trainer.add_hook([&](std::int64_t step) { hand_steps.push_back(step); });
    const nn::CosineAnnealingLR schedule{second.epochs};
    for (int epoch = 0; epoch < second.epochs; ++epoch) {
      sgd.set_learning_rate(schedule(epoch, second.learning_rate));
      sampler.set_epoch(static_cast<std::uint64_t>(1 + epoch));
      (void)trainer.train_epoch(data, sampler);
    }
  }

  auto fitted = nn::make_student<float>(2);
  auto shared = train::make_sgd(fitted, first);
  std::vector<std::int64_t> fit_steps;
  (void)train::fit<float>(fitted, data, first, 11, train::cross_entropy<float>(), {.optimizer = &shared});
  train::FitOptions<float> options{.optimizer = &shared, .first_epoch = 1};
  options.on_start = [&](train::Trainer<float>& trainer) {
    trainer.add_hook([&](std::int64_t step) { fit_steps.push_back(step); });
  };
  const auto history = train::fit<float>(fitted, data, second, 11, train::cross_entropy<float>(), options);
  CHECK(same_parameters(fitted, by_hand));
  CHECK(fit_steps == hand_steps);
  CHECK(fit_steps.size() == 8);  // 2 epochs of 4 batches, counted from 0 by the stage's own Trainer
  CHECK(history.back().epoch == 2);
  CHECK(shared.step_count() == sgd.step_count());
  set_threads(2);
}

TEST_CASE("fit refuses a bad recipe or an empty loss before it changes anything", "[train][fit][bad_input]") {
  const auto data = synthetic_data(8, 5);
  auto model = nn::make_student<float>(1);
  train::Recipe recipe{.epochs = 1, .batch = 4};
  SECTION("epochs 0") {
    recipe.epochs = 0;
    CHECK_THROWS_WITH(train::fit<float>(model, data, recipe, 1), Contains("fit: recipe needs epochs > 0") && Contains("got epochs 0"));
  }
  SECTION("a negative learning rate") {
    recipe.learning_rate = -0.1;
    CHECK_THROWS_WITH(train::fit<float>(model, data, recipe, 1), Contains("learning_rate -0.1"));
  }
  SECTION("an augmentation with a negative shift") {
    recipe.augmentation = data::Augmentation{.max_shift = -1};
    CHECK_THROWS_WITH(train::fit<float>(model, data, recipe, 1), Contains("max_shift -1"));
  }
  SECTION("an empty loss") {
    CHECK_THROWS_WITH(train::fit<float>(model, data, recipe, 1, train::LossFunction<float>{}), Contains("fit: the loss function is empty"));
  }
  SECTION("an index outside the data set") {
    const std::vector<index_t> indices{0, 8};
    CHECK_THROWS_WITH(train::fit<float>(model, data, indices, recipe, 1), Contains("index 8"));
  }
  auto copy = nn::make_student<float>(1);
  CHECK(same_parameters(model, copy));
}
