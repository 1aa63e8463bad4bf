// The distillation pipeline: bootstrap samples and SubsetBatchSampler (data/bootstrap.hpp), ensemble
// weights fitted on held-out data (ensemble/fit_weights.hpp), and ensemble training, cached and per-batch
// soft targets and distillation through train::Trainer (pipeline/ensemble_training.hpp).
#include "test_support.hpp"
#include "../examples/architectures.hpp"
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <minnow/data.hpp>
#include <minnow/distill.hpp>
#include <minnow/ensemble.hpp>
#include <minnow/nn.hpp>
#include <minnow/pipeline/ensemble_checkpoints.hpp>
#include <minnow/pipeline/ensemble_training.hpp>
#include <minnow/train.hpp>
#include <random>
#include <utility>
#include <vector>

using namespace minnow;
using Catch::Matchers::Contains;
using test_support::message_of;
using test_support::same_parameters;
using test_support::synthetic_data;

namespace {

/// Each member's probabilities [N, C]: the true class gets `p_true[k]`, the rest share what is left,
/// except that with probability `wrong[k]` the member is confidently wrong (true class gets 0.01).
std::vector<Tensor<double, 2>> synthetic_probabilities(const Tensor<std::int32_t, 1>& labels, index_t classes,
                                                       const std::vector<double>& p_true,
                                                       const std::vector<double>& wrong, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<Tensor<double, 2>> out;
  for (std::size_t k = 0; k < p_true.size(); ++k) {
    Tensor<double, 2> p({labels.size(), classes});
    for (index_t n = 0; n < labels.size(); ++n) {
      const double t = uniform(rng) < wrong[k] ? 0.01 : p_true[k];
      for (index_t c = 0; c < classes; ++c) p(n, c) = c == labels(n) ? t : (1.0 - t) / static_cast<double>(classes - 1);
    }
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<TensorView<const double, 2>> views(const std::vector<Tensor<double, 2>>& tensors) {
  return {tensors.begin(), tensors.end()};
}

}  // namespace

TEST_CASE("bootstrap_indices: deterministic per seed, in range, about 63.2 % unique", "[pipeline][bootstrap]") {
  constexpr index_t n = 200000;
  const auto a = data::bootstrap_indices(n, 7);
  const auto b = data::bootstrap_indices(n, 7);
  const auto c = data::bootstrap_indices(n, 8);
  REQUIRE(a.size() == static_cast<std::size_t>(n));
  CHECK(a == b);
  CHECK(a != c);
  CHECK(std::is_sorted(a.begin(), a.end()));
  CHECK(a.front() >= 0);
  CHECK(a.back() < n);
  // 1 − (1 − 1/n)ⁿ ≈ 1 − 1/e = 0.63212; the sd of the unique fraction is ≈ 0.0011 at this n.
  const double unique = static_cast<double>(data::count_unique(a)) / static_cast<double>(n);
  CHECK(unique == Approx(1.0 - std::exp(-1.0)).margin(0.005));
  CHECK(data::bootstrap_indices(10, 1, 25).size() == 25);
  CHECK(data::bootstrap_indices(0, 1).empty());

  CHECK_THROWS_WITH(data::bootstrap_indices(-1, 1), Contains("n must be >= 0, got -1"));
  CHECK_THROWS_WITH(data::bootstrap_indices(5, 1, -2), Contains("got -2"));
  CHECK_THROWS_WITH(data::bootstrap_indices(0, 1, 3), Contains("3 draws from an empty population"));
  CHECK_THROWS_WITH(data::select(std::vector<index_t>{4, 5}, std::vector<index_t>{1, 2}),
                    Contains("position 2 (entry 1) is outside [0, 2)"));
}

TEST_CASE("SubsetBatchSampler: BatchSampler's batches mapped through the index list", "[pipeline][bootstrap]") {
  SECTION("the list 0..N-1 gives BatchSampler's own batches") {
    data::BatchSampler plain(103, 16, 5);
    data::SubsetBatchSampler subset(data::range_indices(0, 103), 16, 5);
    for (std::uint64_t epoch = 0; epoch < 3; ++epoch) {
      plain.set_epoch(epoch);
      subset.set_epoch(epoch);
      REQUIRE(subset.num_batches() == plain.num_batches());
      for (index_t b = 0; b < plain.num_batches(); ++b) {
        const auto expected = plain.batch(b);
        const auto got = subset.batch(b);
        CHECK(std::equal(got.begin(), got.end(), expected.begin(), expected.end()));
      }
    }
  }
  SECTION("every entry of a bootstrap list (with its repeats) is visited once per epoch") {
    const auto bag = data::select(data::range_indices(100, 150), data::bootstrap_indices(50, 3));
    data::SubsetBatchSampler sampler(bag, 8, 11);
    std::vector<index_t> seen;
    for (index_t b = 0; b < sampler.num_batches(); ++b) {
      const auto batch = sampler.batch(b);
      seen.insert(seen.end(), batch.begin(), batch.end());
    }
    std::sort(seen.begin(), seen.end());
    CHECK(seen == bag);
  }
  CHECK_THROWS_WITH(data::SubsetBatchSampler(std::vector<index_t>{0, -3}, 4, 1), Contains("index -3 at position 1"));
}

TEST_CASE("fit_weights: favours the best member, never worse than uniform, on the simplex", "[pipeline][fit_weights]") {
  constexpr index_t n = 3000, classes = 10;
  Tensor<std::int32_t, 1> labels({n});
  for (index_t i = 0; i < n; ++i) labels(i) = static_cast<std::int32_t>((i * 7) % classes);

  SECTION("one clearly better member") {
    const auto members = synthetic_probabilities(labels, classes, {0.8, 0.3, 0.3}, {0.05, 0.2, 0.2}, 1);
    const auto fit = ensemble::fit_weights<double>(views(members), labels);
    REQUIRE(fit.weights.size() == 3);
    double sum = 0.0;
    for (const double w : fit.weights) {
      CHECK(w >= 0.0);
      sum += w;
    }
    CHECK(sum == Approx(1.0).margin(1e-12));
    CHECK(fit.weights[0] > 0.6);
    CHECK(fit.weights[0] > fit.weights[1]);
    CHECK(fit.weights[0] > fit.weights[2]);
    CHECK(fit.converged);
    CHECK(fit.nll <= fit.uniform_nll);
    const std::vector<double> uniform(3, 1.0 / 3.0);
    CHECK(fit.uniform_nll == Approx(ensemble::weighted_nll<double>(views(members), uniform, labels)).epsilon(1e-12));
    CHECK(fit.nll == Approx(ensemble::weighted_nll<double>(views(members), fit.weights, labels)).epsilon(1e-12));
  }
  SECTION("two members: the fitted NLL is the minimum over a fine grid") {
    // Complementary errors, so the optimum is inside the simplex, not at a corner.
    const auto members = synthetic_probabilities(labels, classes, {0.7, 0.6}, {0.15, 0.1}, 2);
    const auto fit = ensemble::fit_weights<double>(views(members), labels, {.max_iterations = 10000, .tolerance = 1e-14});
    CHECK(fit.weights[0] > 0.01);
    CHECK(fit.weights[1] > 0.01);
    for (int g = 0; g <= 200; ++g) {
      const double w = g / 200.0;
      const std::vector<double> weights{w, 1.0 - w};
      CHECK(fit.nll <= ensemble::weighted_nll<double>(views(members), weights, labels) + 1e-9);
    }
  }
  SECTION("identical members keep uniform weights") {
    const auto one = synthetic_probabilities(labels, classes, {0.6}, {0.1}, 3);
    std::vector<Tensor<double, 2>> members;
    for (int k = 0; k < 4; ++k) members.push_back(one[0].clone());
    const auto fit = ensemble::fit_weights<double>(views(members), labels);
    for (const double w : fit.weights) CHECK(w == Approx(0.25).margin(1e-12));
    CHECK(fit.nll == Approx(fit.uniform_nll).epsilon(1e-12));
  }
  SECTION("float members and zero true-class probabilities stay finite") {
    Tensor<float, 2> a({2, 2}), b({2, 2});
    a(0, 0) = 1.0f, a(0, 1) = 0.0f, a(1, 0) = 1.0f, a(1, 1) = 0.0f;  // wrong on sample 1 with probability 0
    b(0, 0) = 0.5f, b(0, 1) = 0.5f, b(1, 0) = 0.5f, b(1, 1) = 0.5f;
    Tensor<std::int32_t, 1> y({2});
    y(0) = 0, y(1) = 1;
    const std::vector<TensorView<const float, 2>> members{a.view(), b.view()};
    const auto fit = ensemble::fit_weights<float>(members, y);
    CHECK(std::isfinite(fit.nll));
    CHECK(fit.nll < fit.uniform_nll);
  }
  SECTION("bad input") {
    const auto members = synthetic_probabilities(labels, classes, {0.8, 0.3}, {0.0, 0.0}, 4);
    CHECK_THROWS_WITH(ensemble::fit_weights<double>(std::vector<TensorView<const double, 2>>{}, labels),
                      Contains("fit_weights: the ensemble has no members"));
    Tensor<double, 2> other({n, classes + 1}, 1.0 / (classes + 1));
    const std::vector<TensorView<const double, 2>> mismatched{members[0].view(), other.view()};
    CHECK_THROWS_AS(ensemble::fit_weights<double>(mismatched, labels), shape_error);
    CHECK_THROWS_WITH(ensemble::fit_weights<double>(mismatched, labels), Contains("member 1 has probabilities [3000, 11]"));
    Tensor<std::int32_t, 1> bad = labels.clone();
    bad(17) = 10;
    CHECK_THROWS_WITH(ensemble::fit_weights<double>(views(members), bad), Contains("label 10 at position 17 is outside [0, 10)"));
    Tensor<std::int32_t, 1> short_labels({5}, 0);
    CHECK_THROWS_AS(ensemble::fit_weights<double>(views(members), short_labels), shape_error);
    Tensor<double, 2> unnormalised = members[1].clone();
    unnormalised(3, 0) += 0.5;
    const std::vector<TensorView<const double, 2>> with_bad_row{members[0].view(), unnormalised.view()};
    CHECK_THROWS_WITH(ensemble::fit_weights<double>(with_bad_row, labels), Contains("(member 1)") && Contains("row 3"));
    CHECK_THROWS_WITH(ensemble::fit_weights<double>(views(members), labels, {.max_iterations = 0}),
                      Contains("max_iterations > 0"));
  }
}

TEST_CASE("cached ensemble soft targets equal the mean of the member softmaxes", "[pipeline][soft_targets]") {
  const auto data = synthetic_data(96, 1);
  std::vector<nn::Sequential<float>> nets;
  for (std::uint64_t seed = 1; seed <= 3; ++seed) nets.push_back(nn::make_student<float>(seed));
  std::vector<nn::Sequential<float>*> models;
  for (auto& net : nets) models.push_back(&net);
  constexpr double temperature = 4.0;
  const auto logits = pipeline::ensemble_logits<float>(models, data);
  const auto targets = pipeline::ensemble_soft_targets<float>(logits, temperature);
  REQUIRE(targets.shape() == Shape<2>{96, 10});

  // The same thing by hand, in double, from a direct forward of each model on all 96 images.
  double worst = 0.0;
  std::vector<double> expected(96 * 10, 0.0);
  for (auto& net : nets) {
    const auto out = net.forward(data.images.view(), nn::Mode::eval);
    for (index_t i = 0; i < 96; ++i) {
      const float* row = out.data() + i * 10;
      const double max = *std::max_element(row, row + 10);
      double z = 0.0;
      for (int c = 0; c < 10; ++c) z += std::exp((row[c] - max) / temperature);
      for (int c = 0; c < 10; ++c) expected[static_cast<std::size_t>(i * 10 + c)] += std::exp((row[c] - max) / temperature) / z / 3.0;
    }
  }
  for (index_t e = 0; e < targets.size(); ++e) {
    worst = std::max(worst, std::abs(static_cast<double>(targets.data()[e]) - expected[static_cast<std::size_t>(e)]));
  }
  CHECK(worst < 1e-6);

  // Weighted targets, and the parallel schedule computes the same logits.
  const std::vector<double> weights{0.5, 0.3, 0.2};
  const auto weighted = pipeline::ensemble_soft_targets<float>(logits, temperature, weights);
  CHECK(weighted.shape() == targets.shape());
  const auto parallel = pipeline::ensemble_logits<float>(models, data, pipeline::Schedule::parallel, 2);
  for (std::size_t k = 0; k < 3; ++k) {
    CHECK(std::memcmp(parallel[k].data(), logits[k].data(), sizeof(float) * 960) == 0);
  }
  CHECK_THROWS_WITH(pipeline::ensemble_soft_targets<float>(std::vector<Tensor<float, 2>>{}, 4.0),
                    Contains("no members"));
}

TEST_CASE("distilling from the student's own outputs gives zero KD loss and gradient", "[pipeline][kd]") {
  const auto data = synthetic_data(64, 2);
  auto student = nn::make_student<float>(5);
  auto twin = nn::make_student<float>(5);  // the same weights: its logits are the student's
  const auto indices = data::range_indices(0, 32);
  Tensor<float, 4> images;
  Tensor<std::int32_t, 1> labels;
  data::gather(data, indices, images, labels);
  const auto output = student.forward(images.view(), nn::Mode::train);
  const auto logits = output.reshape<2>(32, 10);
  Tensor<float, 2> grad({32, 10}, 1.0f);

  pipeline::OnlineTeacherLoss<float> online({&twin}, data, 4.0, 1.0);
  CHECK(online(logits, labels, indices, grad) == 0.0);
  CHECK(grad.array().abs().maxCoeff() == 0.0f);

  // Cached: the twin's logits on the whole set, read back by index.
  const auto table = pipeline::predict_logits<float>(twin, data);
  distill::SoftTargetLoss<float> cached(distill::TeacherLogits<float>(table), 4.0, 1.0);
  grad.view().fill(1.0f);
  CHECK(std::abs(cached(logits, labels, indices, grad)) < 1e-10);
  CHECK(grad.array().abs().maxCoeff() < 1e-7f);

  // Through train::Trainer: a step's loss is 0, so with no weight decay the weights do not move.
  nn::Sgd<float> sgd(student.parameters(), 0.1);
  train::Trainer<float> trainer(student, sgd, pipeline::OnlineTeacherLoss<float>({&twin}, data, 2.0, 1.0));
  CHECK(trainer.step(data, indices) == 0.0);
  CHECK(same_parameters(student, twin));
}

TEST_CASE("per-batch teacher outputs give the cached soft targets' loss", "[pipeline][kd]") {
  const auto data = synthetic_data(128, 3);
  std::vector<nn::Sequential<float>> nets;
  for (std::uint64_t seed = 1; seed <= 3; ++seed) nets.push_back(nn::make_student<float>(seed));
  std::vector<nn::Sequential<float>*> models;
  for (auto& net : nets) models.push_back(&net);
  const auto logits = pipeline::ensemble_logits<float>(models, data);
  const auto targets = pipeline::ensemble_soft_targets<float>(logits, 3.0);
  distill::SoftTargetLoss<float> cached(distill::TeacherProbabilities<float>(targets), 3.0, 0.7);
  pipeline::OnlineTeacherLoss<float> online(models, data, 3.0, 0.7);

  auto student = nn::make_student<float>(9);
  const std::vector<index_t> indices{5, 77, 3, 120, 64, 9, 31, 100};
  Tensor<float, 4> images;
  Tensor<std::int32_t, 1> labels;
  data::gather(data, indices, images, labels);
  const auto s = student.forward(images.view(), nn::Mode::eval).reshape<2>(8, 10);
  Tensor<float, 2> g_cached({8, 10}), g_online({8, 10});
  const double l_cached = cached(s, labels, indices, g_cached);
  const double l_online = online(s, labels, indices, g_online);
  CHECK(l_online == Approx(l_cached).epsilon(1e-5));
  CHECK((g_cached.array() - g_online.array()).abs().maxCoeff() < 1e-6f);

  CHECK_THROWS_WITH(pipeline::OnlineTeacherLoss<float>({}, data, 3.0), Contains("no members"));
  CHECK_THROWS_WITH(pipeline::OnlineTeacherLoss<float>({nullptr}, data, 3.0), Contains("teacher 0 is null"));
  CHECK_THROWS_AS(pipeline::OnlineTeacherLoss<float>(models, data, 0.0), value_error);
  CHECK_THROWS_WITH(pipeline::OnlineTeacherLoss<float>(models, data, 3.0, 1.0, {0.5, 0.5}), Contains("2 weights"));
}

TEST_CASE("parallel and sequential member training give bit-identical members", "[pipeline][ensemble]") {
  const auto data = synthetic_data(320, 4);
  const auto pool = data::range_indices(0, 320);
  const std::vector<pipeline::MemberSpec> specs{{"student", 11, false}, {"student", 12, true}, {"student", 13, false}};
  pipeline::EnsembleOptions options;
  options.recipe.epochs = 2;
  options.recipe.learning_rate = 0.02;
  options.recipe.batch = 64;
  options.schedule = pipeline::Schedule::sequential;
  options.threads = 1;
  auto sequential = pipeline::train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options);
  options.schedule = pipeline::Schedule::parallel;
  options.threads = 2;
  std::vector<std::size_t> reported;
  options.on_epoch = [&](std::size_t k, const train::EpochStats&) { reported.push_back(k); };
  std::vector<std::size_t> finished;
  auto parallel = pipeline::train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options,
                                                  [&](std::size_t k, const pipeline::Member<float>& member) {
                                                    finished.push_back(k);
                                                    CHECK(member.spec.seed == specs[k].seed);
                                                    CHECK(member.epochs.size() == 2);  // reported once trained
                                                  });
  REQUIRE(parallel.size() == 3);
  CHECK(reported.size() == 6);  // 3 members × 2 epochs
  std::sort(finished.begin(), finished.end());
  CHECK(finished == std::vector<std::size_t>{0, 1, 2});  // each member once
  for (std::size_t k = 0; k < 3; ++k) {
    CHECK(parallel[k].spec.seed == specs[k].seed);
    CHECK(parallel[k].epochs.size() == 2);
    CHECK(same_parameters(parallel[k].model, sequential[k].model));
  }
  // Different seeds, and bagging, give different members.
  CHECK_FALSE(same_parameters(parallel[0].model, parallel[2].model));
  // A member is train::fit() on its seed: the same weights when trained by hand.
  set_threads(1);
  auto by_hand = nn::make_student<float>(13);
  (void)train::fit<float>(by_hand, data, pool, options.recipe, 13);
  CHECK(same_parameters(by_hand, parallel[2].model));
  set_threads(2);

  CHECK_THROWS_WITH(pipeline::train_ensemble<float>(std::vector<pipeline::MemberSpec>{}, example::make_architecture<float>, data, pool, options),
                    Contains("no members"));
  const std::vector<pipeline::MemberSpec> unknown{{"resnet", 1, false}};
  CHECK_THROWS_WITH(pipeline::train_ensemble<float>(unknown, example::make_architecture<float>, data, pool, options), Contains("unknown architecture 'resnet'"));
  options.recipe.epochs = 0;
  CHECK_THROWS_WITH(pipeline::train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options), Contains("epochs 0"));
}

TEST_CASE("a member's own recipe overrides the ensemble's", "[pipeline][ensemble]") {
  const auto data = synthetic_data(192, 5);
  const auto pool = data::range_indices(0, 192);
  pipeline::EnsembleOptions options;
  options.recipe = {.epochs = 1, .batch = 64, .learning_rate = 0.02};
  options.threads = 1;
  train::Recipe own = options.recipe;
  own.epochs = 2;
  own.augmentation = data::Augmentation{.max_shift = 1, .horizontal_flip = true, .fill = 0.0F};
  std::vector<pipeline::MemberSpec> specs{{"student", 31, false}, {"student", 32, false}};
  specs[1].recipe = own;
  set_threads(1);
  auto members = pipeline::train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options);
  CHECK(members[0].epochs.size() == 1);
  CHECK(members[1].epochs.size() == 2);
  // Member 1 is train::fit() with its own recipe, member 0 with the ensemble's.
  auto by_hand = nn::make_student<float>(32);
  (void)train::fit<float>(by_hand, data, pool, own, 32);
  CHECK(same_parameters(by_hand, members[1].model));
  by_hand = nn::make_student<float>(31);
  (void)train::fit<float>(by_hand, data, pool, options.recipe, 31);
  CHECK(same_parameters(by_hand, members[0].model));
  set_threads(2);
  // A bad override fails before anything trains.
  specs[1].recipe->learning_rate = -1.0;
  CHECK_THROWS_WITH(pipeline::train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options), Contains("learning_rate -1"));
}

TEST_CASE("load_or_train_ensemble loads saved members and trains only the missing ones", "[pipeline][ensemble]") {
  const auto data = synthetic_data(128, 8);
  const auto pool = data::range_indices(0, 128);
  const std::vector<pipeline::MemberSpec> specs{{"student", 21, false}, {"student", 22, true}};
  pipeline::EnsembleOptions options;
  options.recipe = {.epochs = 1, .batch = 64, .learning_rate = 0.02};
  options.threads = 1;
  const auto dir = std::filesystem::temp_directory_path() / "minnow_test_member_checkpoints";
  std::filesystem::remove_all(dir);
  const pipeline::MemberCheckpoints files{.load_dir = dir, .save_dir = dir, .file_name = [](const pipeline::MemberSpec& spec) {
                                            return pipeline::member_file_name(spec, 1, 128);
                                          }};
  CHECK(pipeline::member_file_name(specs[1], 1, 128) == "student-s22-e1-n128-bag.ckpt");
  CHECK(pipeline::member_file_name(specs[0], 8, 55000, "aug") == "student-s21-e8-n55000-aug.ckpt");
  std::vector<std::pair<std::size_t, bool>> events;
  const auto record = [&](std::size_t k, const pipeline::Member<float>& member, const pipeline::MemberOrigin& origin) {
    CHECK(member.spec.seed == specs[k].seed);
    CHECK(origin.path == dir / files.file_name(specs[k]));
    events.emplace_back(k, origin.loaded);
  };
  auto trained = pipeline::load_or_train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options, files, record);
  CHECK(events == std::vector<std::pair<std::size_t, bool>>{{0, false}, {1, false}});
  CHECK(std::filesystem::exists(dir / "student-s21-e1-n128.ckpt"));

  // Everything saved: both load, bit-identical, no training.
  events.clear();
  auto loaded = pipeline::load_or_train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options, files, record);
  CHECK(events == std::vector<std::pair<std::size_t, bool>>{{0, true}, {1, true}});
  for (std::size_t k = 0; k < 2; ++k) {
    CHECK(loaded[k].epochs.empty());
    CHECK(same_parameters(loaded[k].model, trained[k].model));
  }
  // Member 0's file gone: only it trains, and its epochs are reported under its own index.
  std::filesystem::remove(dir / "student-s21-e1-n128.ckpt");
  events.clear();
  std::vector<std::size_t> epoch_reports;
  options.on_epoch = [&](std::size_t k, const train::EpochStats&) { epoch_reports.push_back(k); };
  auto mixed = pipeline::load_or_train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options, files, record);
  CHECK(events == std::vector<std::pair<std::size_t, bool>>{{1, true}, {0, false}});
  CHECK(epoch_reports == std::vector<std::size_t>{0});
  CHECK(same_parameters(mixed[0].model, trained[0].model));
  std::filesystem::remove_all(dir);

  CHECK_THROWS_WITH(pipeline::load_or_train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options, {.load_dir = dir}),
                    Contains("no file_name"));
}

TEST_CASE("load_or_train_ensemble refuses a save directory that cannot take files before training anything",
          "[pipeline][ensemble][errors]") {
  const auto data = synthetic_data(64, 8);
  const auto pool = data::range_indices(0, 64);
  const std::vector<pipeline::MemberSpec> specs{{"student", 31, false}};
  pipeline::EnsembleOptions options;
  options.recipe = {.epochs = 1, .batch = 64, .learning_rate = 0.02};
  options.threads = 1;
  int epochs_run = 0;
  options.on_epoch = [&](std::size_t, const train::EpochStats&) { ++epochs_run; };
  const auto name = [](const pipeline::MemberSpec& spec) { return pipeline::member_file_name(spec, 1, 64); };
  const auto base = std::filesystem::temp_directory_path() / "minnow_test_member_save_dir";
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base);
  // A regular file where the directory should be.
  const auto file = base / "a-file";
  std::ofstream(file) << "not a directory";
  CHECK_THROWS_AS(pipeline::load_or_train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options, {.save_dir = file, .file_name = name}), io_error);
  CHECK_THROWS_WITH(pipeline::load_or_train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options, {.save_dir = file, .file_name = name}),
                    Contains(file.string()) && Contains("output directory"));
  // A directory where a member's file should be.
  std::filesystem::create_directories(base / "dir" / name(specs[0]));
  CHECK_THROWS_WITH(pipeline::load_or_train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options, {.save_dir = base / "dir", .file_name = name}),
                    Contains(name(specs[0])) && Contains("a directory"));
  CHECK(epochs_run == 0);
  std::filesystem::remove_all(base);
}

TEST_CASE("train::fit with an augmentation is the Trainer loop with a BatchAugmenter", "[pipeline][augment]") {
  const auto data = synthetic_data(192, 6);
  const auto pool = data::range_indices(0, 192);
  set_threads(1);
  train::Recipe recipe{.epochs = 2, .batch = 64, .learning_rate = 0.02};
  recipe.augmentation = data::Augmentation{.max_shift = 2, .horizontal_flip = true, .fill = -0.4};
  auto augmented = nn::make_student<float>(5);
  (void)train::fit<float>(augmented, data, pool, recipe, 9);

  // By hand: the same sampler, schedule and optimizer, each batch transformed by draw_view(seed 9, step, index).
  auto by_hand = nn::make_student<float>(5);
  nn::Sgd<float> sgd(by_hand.parameters(), recipe.learning_rate,
                     {.momentum = recipe.momentum, .weight_decay = recipe.weight_decay, .nesterov = true});
  train::Trainer<float> trainer(by_hand, sgd);
  trainer.set_progress(false);
  trainer.set_batch_transform([&](TensorView<float, 4> images, std::span<const index_t> indices, std::int64_t step) {
    std::vector<float> copy(static_cast<std::size_t>(images[0].size()));
    for (index_t n = 0; n < images.dim(0); ++n) {
      std::copy_n(images[n].data(), copy.size(), copy.data());
      data::apply_view<float>(TensorView<const float, 3>(copy.data(), images[n].shape()), images[n],
                              data::draw_view(*recipe.augmentation, 9, static_cast<std::uint64_t>(step), indices[static_cast<std::size_t>(n)]),
                              -0.4f);
    }
  });
  data::SubsetBatchSampler sampler(pool, recipe.batch, 9);
  const nn::CosineAnnealingLR schedule{recipe.epochs};
  for (int epoch = 0; epoch < recipe.epochs; ++epoch) {
    sgd.set_learning_rate(schedule(epoch, recipe.learning_rate));
    sampler.set_epoch(static_cast<std::uint64_t>(epoch));
    (void)trainer.train_epoch(data, sampler);
  }
  CHECK(same_parameters(augmented, by_hand));
  // And the augmentation changed the training.
  auto plain = nn::make_student<float>(5);
  recipe.augmentation.reset();
  (void)train::fit<float>(plain, data, pool, recipe, 9);
  CHECK_FALSE(same_parameters(augmented, plain));
  recipe.augmentation = data::Augmentation{.max_shift = -3};
  CHECK_THROWS_WITH(train::fit<float>(plain, data, pool, recipe, 9), Contains("max_shift") && Contains("-3"));
  set_threads(2);
}

TEST_CASE("end to end on 1000 Fashion-MNIST images: the ensemble of 3 beats its mean member", "[pipeline][e2e]") {
  MINNOW_REQUIRE_FASHION_MNIST();
  const auto data = data::load_fashion_mnist<float>(data::default_fashion_mnist_dir(), data::fashion_mnist_normalization,
                                                    1000, 2000);
  const auto pool = data::range_indices(0, 1000);
  std::vector<pipeline::MemberSpec> specs;
  for (std::uint64_t k = 0; k < 3; ++k) specs.push_back({"student", 100 + k, false});
  pipeline::EnsembleOptions options;
  options.recipe.epochs = 1;
  options.schedule = pipeline::Schedule::parallel;
  auto members = pipeline::train_ensemble<float>(specs, example::make_architecture<float>, data.train, pool, options);
  const auto models = pipeline::models<float>(members);
  const auto test_logits = pipeline::ensemble_logits<float>(models, data.test);
  const auto test_labels = pipeline::labels_of(data.test, data::range_indices(0, data.test.size()));
  double mean_member = 0.0;
  for (const auto& l : test_logits) mean_member += pipeline::accuracy<float>(l, test_labels) / 3.0;
  const auto ensemble_probabilities = pipeline::ensemble_soft_targets<float>(test_logits, 1.0);
  const double ensemble_accuracy = pipeline::accuracy<float>(ensemble_probabilities, test_labels);
  INFO("mean member " << mean_member << ", ensemble of 3 " << ensemble_accuracy);
  CHECK(mean_member > 0.3);  // 16 steps of training: far above chance (0.1), far below convergence
  CHECK(ensemble_accuracy >= mean_member);

  // A student distilled from the cached soft targets trains through train::fit (at learning rate 0.02:
  // see examples/drivers/distill.cpp for why KD at T = 4 needs a smaller one than labels).
  const auto train_logits = pipeline::ensemble_logits<float>(models, data.train);
  const auto targets = pipeline::ensemble_soft_targets<float>(train_logits, 4.0);
  auto student = nn::make_student<float>(1);
  options.recipe.epochs = 2;
  options.recipe.learning_rate = 0.02;
  const auto history = train::fit<float>(
      student, data.train, pool, options.recipe, 1,
      distill::SoftTargetLoss<float>(distill::TeacherProbabilities<float>(targets), 4.0, 0.9));
  REQUIRE(history.size() == 2);
  CHECK(std::isfinite(history[1].train.loss));
  CHECK(history[1].train.loss < history[0].train.loss);
  CHECK(train::evaluate(student, data.test).accuracy > 0.5);
}
