// Ensembles: mean of probabilities / mean of logits (uniform and weighted) against PyTorch 1.13
// (tests/fixtures/generate_distill.py) to 1e-5 relative, against the member softmaxes, the vote tie rule,
// the diversity metrics, and bad input.
#include "test_support.hpp"
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <minnow/distill/softmax.hpp>
#include <minnow/ensemble.hpp>
#include <random>
#include <vector>

#include "fixtures.hpp"

using namespace minnow;
using Catch::Matchers::Contains;
using fixtures::max_rel_error;
using fixtures::tensor;

namespace {

constexpr double kTolerance = 1e-5;


template <class T>
std::vector<Tensor<T, 2>> random_members(std::size_t k, index_t rows, index_t cols, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 3.0);
  std::vector<Tensor<T, 2>> members;
  for (std::size_t m = 0; m < k; ++m) {
    members.emplace_back(Shape<2>{rows, cols});
    for (index_t i = 0; i < members.back().size(); ++i) members.back().data()[i] = static_cast<T>(normal(rng));
  }
  return members;
}

template <class T>
std::vector<TensorView<const T, 2>> views(const std::vector<Tensor<T, 2>>& members) {
  return {members.begin(), members.end()};
}

/// A [rows, cols] logit matrix whose row i has its maximum at winners[i] (1 there, 0 elsewhere).
Tensor<float, 2> one_hot_logits(const std::vector<int>& winners, index_t cols) {
  Tensor<float, 2> t({static_cast<index_t>(winners.size()), cols});
  for (std::size_t i = 0; i < winners.size(); ++i) t(static_cast<index_t>(i), winners[i]) = 1.0f;
  return t;
}

}  // namespace

TEST_CASE("mean of probabilities and mean of logits match PyTorch (K = 3, uniform and weighted)", "[ensemble]") {
  for (const auto& c : fixtures::cases("distill.json", "ensemble")) {
    SECTION(c.at("name").get<std::string>()) {
      const double temperature = c.at("params").at("T");
      const auto stacked = tensor<float, 3>(c, "members");
      std::vector<TensorView<const float, 2>> members;
      for (index_t k = 0; k < stacked.dim(0); ++k) members.push_back(stacked.view()[k]);
      Tensor<float, 2> probs(members[0].shape()), logits(members[0].shape());
      if (c.at("params").at("weights").is_null()) {
        ensemble::mean_probabilities<float>(members, temperature, probs);
        ensemble::mean_logits<float>(members, temperature, logits);
      } else {
        const auto weights = c.at("params").at("weights").get<std::vector<double>>();
        ensemble::mean_probabilities<float>(members, weights, temperature, probs);
        ensemble::mean_logits<float>(members, weights, temperature, logits);
      }
      CHECK(max_rel_error(probs, tensor<float, 2>(c, "mean_probabilities")) < kTolerance);
      CHECK(max_rel_error(logits, tensor<float, 2>(c, "mean_logits")) < kTolerance);
    }
  }
}

TEMPLATE_TEST_CASE("ensemble probabilities equal the (weighted) mean of the member softmaxes", "[ensemble]", float,
                   double) {
  using T = TestType;
  const T tolerance = std::is_same_v<T, float> ? T(1e-6) : T(1e-14);
  // 400 x 100 x 4 members is split over threads; 7 x 3 is not.
  for (const auto& [rows, cols] : std::vector<std::pair<index_t, index_t>>{{7, 3}, {400, 100}, {1, 1}}) {
    const auto members = random_members<T>(4, rows, cols, 21);
    const auto list = views(members);
    const std::vector<double> weights{0.1, 0.2, 0.3, 0.4};
    for (const double temperature : {1.0, 4.0}) {
      Tensor<T, 2> expected(members[0].shape()), weighted(members[0].shape()), p(members[0].shape());
      for (std::size_t k = 0; k < members.size(); ++k) {
        distill::softmax<T>(members[k], temperature, p);
        expected.array() += p.array() / T(4);
        weighted.array() += p.array() * static_cast<T>(weights[k]);
      }
      Tensor<T, 2> out(members[0].shape());
      ensemble::mean_probabilities<T>(list, temperature, out);
      CHECK((out.array() - expected.array()).abs().maxCoeff() <= tolerance);
      ensemble::mean_probabilities<T>(list, weights, temperature, out);
      CHECK((out.array() - weighted.array()).abs().maxCoeff() <= tolerance);

      // Mean of logits: the softmax of the averaged logits.
      Tensor<T, 2> averaged(members[0].shape());
      for (std::size_t k = 0; k < members.size(); ++k)
        averaged.array() += members[k].array() * static_cast<T>(weights[k]);
      distill::softmax<T>(averaged, temperature, expected);
      ensemble::mean_logits<T>(list, weights, temperature, out);
      CHECK((out.array() - expected.array()).abs().maxCoeff() <= tolerance);
      // ... which is the normalised geometric mean of the member distributions.
      Tensor<T, 2> log_geo(members[0].shape());
      for (std::size_t k = 0; k < members.size(); ++k) {
        distill::log_softmax<T>(members[k], temperature, p);
        log_geo.array() += p.array() * static_cast<T>(weights[k]);
      }
      distill::softmax<T>(log_geo, 1.0, expected);
      CHECK((out.array() - expected.array()).abs().maxCoeff() <= 10 * tolerance);
    }
  }
  // One member: both rules are that member's softmax.
  const auto one = random_members<T>(1, 5, 6, 22);
  Tensor<T, 2> expected(one[0].shape()), out(one[0].shape());
  distill::softmax<T>(one[0], 2.0, expected);
  ensemble::mean_probabilities<T>(views(one), 2.0, out);
  CHECK(max_rel_error(out, expected) == 0.0);
}

TEST_CASE("majority vote: most votes wins, ties go to the lowest class index", "[ensemble][vote]") {
  // Rows: clear majority for 2; a 2–2 tie between classes 3 and 1 (→ 1); all different (→ lowest, 0);
  // row 3: d's logits tie between classes 0 and 4 and it votes its first maximum, 0, making a 2–2 tie
  // between 4 and 0 (→ 0; had d voted 4, 4 would win 3–1).
  const auto a = one_hot_logits({2, 3, 4, 4}, 5);
  const auto b = one_hot_logits({2, 3, 0, 4}, 5);
  const auto c = one_hot_logits({1, 1, 2, 0}, 5);
  auto d = one_hot_logits({2, 1, 3, 0}, 5);
  d(3, 4) = 1.0f;
  const std::vector<TensorView<const float, 2>> members{a, b, c, d};
  Tensor<std::int32_t, 1> votes({4});
  ensemble::majority_vote<float>(members, votes);
  CHECK(votes(0) == 2);
  CHECK(votes(1) == 1);
  CHECK(votes(2) == 0);
  CHECK(votes(3) == 0);
  // Member order does not matter.
  const std::vector<TensorView<const float, 2>> reversed{d, c, b, a};
  Tensor<std::int32_t, 1> again({4});
  ensemble::majority_vote<float>(reversed, again);
  CHECK(std::equal(votes.data(), votes.data() + 4, again.data()));
  CHECK(ensemble::argmax(d.data() + 3 * 5, 5) == 0);
}

TEST_CASE("diversity: pairwise disagreement and KL to the ensemble", "[ensemble][diversity]") {
  SECTION("disagreement counts differing argmaxes averaged over pairs") {
    const auto a = one_hot_logits({0, 1, 2, 3}, 4);
    const auto b = one_hot_logits({0, 1, 2, 0}, 4);  // differs from a on 1 of 4
    const auto c = one_hot_logits({1, 2, 2, 3}, 4);  // differs from a on 2, from b on 3
    const std::vector<TensorView<const float, 2>> two{a, b}, three{a, b, c};
    CHECK(ensemble::disagreement<float>(two) == Approx(0.25));
    CHECK(ensemble::disagreement<float>(three) == Approx((1.0 + 2.0 + 3.0) / (3 * 4)));
    const std::vector<TensorView<const float, 2>> same{a, a, a};
    CHECK(ensemble::disagreement<float>(same) == 0.0);
  }

  SECTION("KL to the ensemble is 0 for identical members and matches a direct computation") {
    const auto members = random_members<double>(3, 20, 6, 31);
    const auto list = views(members);
    const std::vector<TensorView<const double, 2>> same{members[0], members[0]};
    for (const double kl : ensemble::kl_to_ensemble<double>(same, 2.0)) CHECK(std::abs(kl) < 1e-15);

    const auto per_member = ensemble::kl_to_ensemble<double>(list, 2.0);
    REQUIRE(per_member.size() == 3);
    Tensor<double, 2> mean(members[0].shape()), p(members[0].shape());
    ensemble::mean_probabilities<double>(list, 2.0, mean);
    double total = 0.0;
    for (std::size_t k = 0; k < 3; ++k) {
      distill::softmax<double>(members[k], 2.0, p);
      double direct =
          0.0;  // scalar std::log: Eigen's AVX-512 double log trips GCC 12 (see minnow::detail::kPacketMath)
      for (index_t e = 0; e < p.size(); ++e) direct += p.data()[e] * std::log(p.data()[e] / mean.data()[e]);
      direct /= 20.0;
      CHECK(per_member[k] == Approx(direct).epsilon(1e-10));
      CHECK(per_member[k] > 0.0);
      total += direct;
    }
    CHECK(ensemble::mean_kl_to_ensemble<double>(list, 2.0) == Approx(total / 3).epsilon(1e-10));
  }
}

TEST_CASE("ensembles reject bad input with messages naming the values", "[ensemble][errors]") {
  const auto members = random_members<float>(3, 4, 5, 41);
  const auto list = views(members);
  Tensor<float, 2> out({4, 5});
  Tensor<std::int32_t, 1> votes({4});
  const std::vector<TensorView<const float, 2>> none;

  SECTION("empty ensemble") {
    const std::vector<std::function<void()>> calls{
        [&] { ensemble::mean_probabilities<float>(none, 1.0, out); },
        [&] { ensemble::mean_logits<float>(none, 1.0, out); },
        [&] { ensemble::mean_probabilities<float>(none, std::vector<double>{}, 1.0, out); },
        [&] { ensemble::majority_vote<float>(none, votes); },
        [&] { (void)ensemble::disagreement<float>(none); },
        [&] { (void)ensemble::kl_to_ensemble<float>(none, 1.0); },
    };
    for (const auto& call : calls) CHECK_THAT(test_support::message_of<value_error>(call), Contains("the ensemble has no members"));
    const std::vector<TensorView<const float, 2>> one{members[0]};
    CHECK_THAT(test_support::message_of<value_error>([&] { (void)ensemble::disagreement<float>(one); }),
               Contains("at least 2 members, got 1"));
  }

  SECTION("member shapes differ") {
    const Tensor<float, 2> odd({4, 6});
    const std::vector<TensorView<const float, 2>> mixed{members[0], members[1], odd};
    CHECK_THAT(test_support::message_of<shape_error>([&] { ensemble::mean_probabilities<float>(mixed, 1.0, out); }),
               Contains("member 2 has logits [4, 6]") && Contains("member 0 has [4, 5]"));
    CHECK_THAT(test_support::message_of<shape_error>([&] { ensemble::majority_vote<float>(mixed, votes); }), Contains("member 2"));
    CHECK_THAT(test_support::message_of<shape_error>([&] { (void)ensemble::disagreement<float>(mixed); }), Contains("member 2"));
    Tensor<float, 2> wrong_out({3, 5});
    CHECK_THAT(test_support::message_of<shape_error>([&] { ensemble::mean_logits<float>(list, 1.0, wrong_out); }),
               Contains("output [3, 5]") && Contains("[4, 5]"));
    Tensor<std::int32_t, 1> wrong_votes({3});
    CHECK_THAT(test_support::message_of<shape_error>([&] { ensemble::majority_vote<float>(list, wrong_votes); }),
               Contains("3 entries") && Contains("[4, 5]"));
  }

  SECTION("weights negative, not finite, not summing to 1, or miscounted") {
    const std::vector<double> negative{0.6, -0.1, 0.5};
    CHECK_THAT(test_support::message_of<value_error>([&] { ensemble::mean_probabilities<float>(list, negative, 1.0, out); }),
               Contains("[0.6, -0.1, 0.5]") && Contains("weight 1 is -0.1"));
    const std::vector<double> nan{0.5, std::numeric_limits<double>::quiet_NaN(), 0.5};
    CHECK_THAT(test_support::message_of<value_error>([&] { ensemble::mean_logits<float>(list, nan, 1.0, out); }),
               Contains("weight 1 is nan"));
    const std::vector<double> heavy{0.5, 0.3, 0.3};
    CHECK_THAT(test_support::message_of<value_error>([&] { ensemble::mean_logits<float>(list, heavy, 1.0, out); }),
               Contains("[0.5, 0.3, 0.3]") && Contains("sum to 1.1") && Contains("within 1e-06"));
    const std::vector<double> almost{0.5, 0.3, 0.2 + 5e-7};
    CHECK_NOTHROW(ensemble::mean_logits<float>(list, almost, 1.0, out));
    const std::vector<double> two{0.5, 0.5};
    CHECK_THAT(test_support::message_of<shape_error>([&] { ensemble::mean_probabilities<float>(list, two, 1.0, out); }),
               Contains("2 weights") && Contains("3 members"));
  }

  SECTION("temperature") {
    CHECK_THAT(test_support::message_of<value_error>([&] { ensemble::mean_probabilities<float>(list, 0.0, out); }),
               Contains("mean_probabilities") && Contains("T = 0"));
    CHECK_THAT(test_support::message_of<value_error>(
                   [&] { ensemble::mean_logits<float>(list, std::numeric_limits<double>::quiet_NaN(), out); }),
               Contains("T = nan"));
    CHECK_THAT(test_support::message_of<value_error>([&] { (void)ensemble::kl_to_ensemble<float>(list, -1.0); }), Contains("T = -1"));
  }
}
