// minnow::prune: amounts, masks, criteria (against PyTorch 1.13 masks from tests/fixtures/generate_prune.py
// and against a sort-based reference), the tie and NaN rules, empty tensors, errors, the Pruner hook
// through 100 optimizer steps, schedules and reports.
#include "fixtures.hpp"
#include "test_support.hpp"

#include <minnow/prune.hpp>

#include <minnow/nn/adam.hpp>
#include <minnow/nn/sgd.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <type_traits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

using namespace minnow;
using Catch::Matchers::Contains;

namespace {

// The two amount types are not interchangeable and do not come from bare numbers.
static_assert(!std::is_convertible_v<double, prune::Fraction>);
static_assert(!std::is_constructible_v<prune::Fraction, int>);
static_assert(!std::is_constructible_v<prune::Count, double>);
static_assert(!std::is_constructible_v<prune::Count, bool>);
static_assert(!std::is_convertible_v<int, prune::Amount>);
static_assert(!std::is_convertible_v<double, prune::Amount>);
static_assert(std::is_convertible_v<prune::Fraction, prune::Amount>);
static_assert(std::is_convertible_v<prune::Count, prune::Amount>);

prune::Amount amount_from(const nlohmann::json& p) {
  if (p.at("amount_type") == "count") return prune::Count{p.at("amount").get<std::int64_t>()};
  return prune::Fraction{p.at("amount").get<double>()};
}

double norm_from(const nlohmann::json& p) {
  const auto& n = p.at("n");
  return n.is_string() ? std::numeric_limits<double>::infinity() : n.get<double>();
}

template <class T>
Tensor<T, 1> ones(index_t n) {
  return Tensor<T, 1>({n}, T(1));
}

template <class A, class B>
bool same_mask(const A& a, const B& b) {
  if (a.size() != b.size()) return false;
  for (index_t i = 0; i < a.size(); ++i) {
    if (static_cast<double>(a.data()[i]) != static_cast<double>(b.data()[i])) return false;
  }
  return true;
}

// Reference L1 pruning: a full sort of the survivors by (|w| with every NaN above +inf, index).
template <class T>
void reference_l1(const std::vector<const T*>& weights, const std::vector<T*>& masks, const std::vector<index_t>& sizes,
                  const prune::Amount& amount) {
  struct Item {
    int nan;
    T magnitude;
    std::size_t tensor;
    index_t index;
  };
  std::vector<Item> items;
  for (std::size_t t = 0; t < weights.size(); ++t) {
    for (index_t i = 0; i < sizes[t]; ++i) {
      if (masks[t][i] == T(0)) continue;
      const T w = weights[t][i];
      items.push_back({std::isnan(w) ? 1 : 0, std::isnan(w) ? T(0) : std::abs(w), t, i});
    }
  }
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    if (a.nan != b.nan) return a.nan < b.nan;
    if (a.magnitude != b.magnitude) return a.magnitude < b.magnitude;
    if (a.tensor != b.tensor) return a.tensor < b.tensor;
    return a.index < b.index;
  });
  const index_t k = prune::to_count(amount, static_cast<index_t>(items.size()));
  for (index_t j = 0; j < k; ++j) masks[items[static_cast<std::size_t>(j)].tensor][items[static_cast<std::size_t>(j)].index] = T(0);
}


}  // namespace

// ---------------------------------------------------------------------------------------------------
// Amounts
// ---------------------------------------------------------------------------------------------------

TEST_CASE("Amounts round half to even like Python's round (PyTorch's _compute_nparams_toprune)") {
  CHECK(prune::to_count(prune::Fraction{0.5}, 5) == 2);
  CHECK(prune::to_count(prune::Fraction{0.5}, 7) == 4);
  CHECK(prune::to_count(prune::Fraction{0.25}, 10) == 2);
  CHECK(prune::to_count(prune::Fraction{0.35}, 10) == 4);
  CHECK(prune::to_count(prune::Fraction{0.3}, 10) == 3);  // 3.0000000000000004
  CHECK(prune::to_count(prune::Fraction{0.15}, 10) == 2);
  CHECK(prune::to_count(prune::Fraction{1.0}, 7) == 7);
  CHECK(prune::to_count(prune::Fraction{0.0}, 7) == 0);
  CHECK(prune::to_count(prune::Fraction{0.9}, 0) == 0);
  CHECK(prune::to_count(prune::Count{3}, 3) == 3);
  CHECK(prune::to_count(prune::Count{0u}, 0) == 0);
  CHECK(prune::round_half_even(2.5) == 2.0);
  CHECK(prune::round_half_even(3.5) == 4.0);
  CHECK(prune::round_half_even(-2.5) == -2.0);
  CHECK(prune::round_half_even(2.4999) == 2.0);
  CHECK(prune::round_half_even(2.5001) == 3.0);
  CHECK(prune::Amount(prune::Fraction{0.5}).is_fraction());
  CHECK_FALSE(prune::Amount(prune::Count{1}).is_fraction());
}

TEST_CASE("Amounts reject values outside their domain, naming them") {
  CHECK_THROWS_WITH(prune::Fraction{1.5}, "prune: a Fraction must lie in [0, 1], got 1.5");
  CHECK_THROWS_WITH(prune::Fraction{1.0000001}, Contains("got 1.0000001"));
  CHECK_THROWS_WITH(prune::Fraction{-0.25}, Contains("got -0.25"));
  CHECK_THROWS_AS(prune::Fraction{std::nan("")}, value_error);
  CHECK_THROWS_WITH(prune::Fraction{std::nan("")}, Contains("got nan"));
  CHECK_THROWS_WITH(prune::Count{-1}, "prune: a Count must be >= 0, got -1");
  CHECK_THROWS_AS(prune::Count{std::numeric_limits<std::uint64_t>::max()}, value_error);
  CHECK_THROWS_AS(prune::to_count(prune::Count{6}, 5), value_error);
  CHECK_THROWS_WITH(prune::to_count(prune::Count{6}, 5), Contains("cannot prune 6 of 5"));
}

// ---------------------------------------------------------------------------------------------------
// Masks
// ---------------------------------------------------------------------------------------------------

TEST_CASE("apply selects: pruned entries become +0 even for NaN/inf, kept entries are untouched") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  Tensor<float, 1> w({6});
  const float values[] = {nan, -inf, -3.0f, nan, inf, -2.0f};
  std::copy(values, values + 6, w.data());
  Tensor<float, 1> m({6});
  const float mask[] = {0, 0, 0, 1, 1, 1};
  std::copy(mask, mask + 6, m.data());
  prune::apply(w.view(), m.view());
  for (int i = 0; i < 3; ++i) {
    CHECK(w(i) == 0.0f);
    CHECK_FALSE(std::signbit(w(i)));  // +0, not -3 · 0 = -0
  }
  CHECK(std::isnan(w(3)));
  CHECK(w(4) == inf);
  CHECK(w(5) == -2.0f);
}

TEST_CASE("apply and compose on large tensors match a scalar loop (vectorized, threaded path)") {
  const index_t n = 300'007;  // above the parallel threshold, odd tail
  Tensor<double, 1> w({n}), m({n}), expected({n});
  std::mt19937_64 rng(11);
  for (index_t i = 0; i < n; ++i) {
    w(i) = static_cast<double>(rng() % 2001) - 1000.0;
    m(i) = (rng() % 3 == 0) ? 0.0 : 1.0;
    expected(i) = m(i) != 0.0 ? w(i) : 0.0;
  }
  prune::apply(w.view(), m.view());
  CHECK(same_mask(w, expected));
  Tensor<double, 1> other({n});
  for (index_t i = 0; i < n; ++i) other(i) = (rng() % 2 == 0) ? 0.0 : 1.0;
  Tensor<double, 1> composed = m.clone();
  prune::compose(composed.view(), other.view());
  index_t wrong = 0;
  for (index_t i = 0; i < n; ++i) wrong += composed(i) != m(i) * other(i) ? 1 : 0;
  CHECK(wrong == 0);
}

TEST_CASE("Mask errors name shapes and offending entries") {
  Tensor<float, 2> w({2, 3});
  Tensor<float, 2> m({3, 2}, 1.0f);
  CHECK_THROWS_AS(prune::apply(w.view(), m.view()), shape_error);
  CHECK_THROWS_WITH(prune::apply(w.view(), m.view()), "prune::apply: mask [3, 2] does not match tensor [2, 3]");
  Tensor<float, 1> a({6}, 1.0f), b({6}, 1.0f);
  b(3) = 0.5f;
  CHECK_THROWS_AS(prune::compose(a.view(), b.view()), value_error);
  CHECK_THROWS_WITH(prune::compose(a.view(), b.view()), Contains("entry 3 of [6] is 0.5"));
  CHECK(a(3) == 1.0f);  // nothing written
  Tensor<float, 1> c({5}, 1.0f);
  CHECK_THROWS_WITH(prune::compose(a.view(), c.view()), Contains("mask [6] does not match other mask [5]"));
  CHECK(prune::count_kept(a.view()) == 6);
  CHECK(prune::ones_mask<float>(Shape<2>{2, 2}).size() == 4);
}

// ---------------------------------------------------------------------------------------------------
// Parity with PyTorch
// ---------------------------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("l1_unstructured matches PyTorch masks exactly", "", float, double) {
  for (const auto& c : fixtures::cases("prune.json", "l1_unstructured")) {
    SECTION(c.at("name").get<std::string>()) {
      const auto w = fixtures::flat<TestType>(c, "weight");
      auto m = ones<TestType>(w.size());
      const index_t pruned = prune::l1_unstructured(w.view(), m.view(), amount_from(c.at("params")));
      const auto expected = fixtures::flat<TestType>(c, "mask");
      CHECK(same_mask(m, expected));
      CHECK(pruned == w.size() - prune::count_kept(expected.view()));
    }
  }
}

TEST_CASE("l1_unstructured on a logically shaped view equals the flat call") {
  const auto c = fixtures::cases("prune.json", "l1_unstructured").at(1);  // [3, 4, 2]
  const auto w = fixtures::tensor<float, 3>(c, "weight");
  Tensor<float, 3> m(w.shape(), 1.0f);
  prune::l1_unstructured(w.view(), m.view(), amount_from(c.at("params")));
  CHECK(same_mask(m, fixtures::tensor<float, 3>(c, "mask")));
}

TEMPLATE_TEST_CASE("Iterative l1_unstructured composes like PyTorch (amount relative to survivors)", "", float, double) {
  for (const auto& c : fixtures::cases("prune.json", "l1_iterative")) {
    SECTION(c.at("name").get<std::string>()) {
      const auto w = fixtures::flat<TestType>(c, "weight");
      auto m = ones<TestType>(w.size());
      prune::l1_unstructured(w.view(), m.view(), amount_from(c.at("params").at("first")));
      CHECK(same_mask(m, fixtures::flat<TestType>(c, "mask1")));
      prune::l1_unstructured(w.view(), m.view(), amount_from(c.at("params").at("second")));
      CHECK(same_mask(m, fixtures::flat<TestType>(c, "mask2")));
    }
  }
}

TEST_CASE("Pruning 0.5 twice on 10 weights prunes 5, then round(2.5) = 2") {
  Tensor<float, 1> w({10});
  for (index_t i = 0; i < 10; ++i) w(i) = static_cast<float>(i + 1);
  auto m = ones<float>(10);
  CHECK(prune::l1_unstructured(w.view(), m.view(), prune::Fraction{0.5}) == 5);
  CHECK(prune::l1_unstructured(w.view(), m.view(), prune::Fraction{0.5}) == 2);
  CHECK(prune::count_kept(m.view()) == 3);
  CHECK_THROWS_WITH(prune::l1_unstructured(w.view(), m.view(), prune::Count{4}), Contains("cannot prune 4 of 3"));
}

TEST_CASE("ln_structured (n = 1, 2, inf and dim 0, 1, -1) matches PyTorch masks exactly") {
  for (const auto& c : fixtures::cases("prune.json", "ln_structured")) {
    SECTION(c.at("name").get<std::string>()) {
      const auto& p = c.at("params");
      const auto w = fixtures::flat<float>(c, "weight");
      const auto shape = c.at("tensors").at("weight").at("shape").get<std::vector<index_t>>();
      auto m = ones<float>(w.size());
      const index_t pruned = prune::ln_structured(w.view(), std::span<const index_t>(shape), m.view(), amount_from(p),
                                                  norm_from(p), p.at("dim").get<int>());
      CHECK(same_mask(m, fixtures::flat<float>(c, "mask")));
      CHECK(pruned > 0);
      if (shape.size() == 4) {  // the rank-templated overload gives the same mask
        const auto w4 = fixtures::tensor<float, 4>(c, "weight");
        Tensor<float, 4> m4(w4.shape(), 1.0f);
        prune::ln_structured(w4.view(), m4.view(), amount_from(p), norm_from(p), p.at("dim").get<int>());
        CHECK(same_mask(m4, fixtures::flat<float>(c, "mask")));
      }
    }
  }
}

TEST_CASE("Iterative ln_structured prunes among surviving slices like PyTorch") {
  for (const auto& c : fixtures::cases("prune.json", "ln_iterative")) {
    SECTION(c.at("name").get<std::string>()) {
      const auto& p = c.at("params");
      const auto w = fixtures::tensor<float, 4>(c, "weight");
      Tensor<float, 4> m(w.shape(), 1.0f);
      CHECK(prune::ln_structured(w.view(), m.view(), amount_from(p.at("first")), norm_from(p), p.at("dim").get<int>()) == 3);
      CHECK(same_mask(m, fixtures::tensor<float, 4>(c, "mask1")));
      CHECK(prune::ln_structured(w.view(), m.view(), amount_from(p.at("second")), norm_from(p), p.at("dim").get<int>()) == 2);
      CHECK(same_mask(m, fixtures::tensor<float, 4>(c, "mask2")));
      const std::array<index_t, 4> shape = w.shape();
      CHECK(prune::surviving_slices(TensorView<const float, 1>(m.data(), {m.size()}), shape, 0) == 1);
    }
  }
}

TEMPLATE_TEST_CASE("global_unstructured matches PyTorch masks exactly (three tensors, fresh and after l1)", "", float,
                   double) {
  for (const auto& c : fixtures::cases("prune.json", "global_unstructured")) {
    SECTION(c.at("name").get<std::string>()) {
      const auto& p = c.at("params");
      const int count = p.at("count").get<int>();
      std::vector<Tensor<TestType, 1>> weights, masks;
      for (int i = 0; i < count; ++i) {
        weights.push_back(fixtures::flat<TestType>(c, "weight" + std::to_string(i)));
        masks.push_back(ones<TestType>(weights.back().size()));
      }
      if (p.contains("pre")) {
        prune::l1_unstructured(weights[0].view(), masks[0].view(), amount_from(p.at("pre")));
        CHECK(same_mask(masks[0], fixtures::flat<TestType>(c, "pre_mask0")));
      }
      std::vector<prune::MaskedView<TestType>> targets;
      for (int i = 0; i < count; ++i) targets.push_back({weights[static_cast<std::size_t>(i)].view(), masks[static_cast<std::size_t>(i)].view()});
      prune::global_unstructured(targets, amount_from(p));
      for (int i = 0; i < count; ++i) {
        CHECK(same_mask(masks[static_cast<std::size_t>(i)], fixtures::flat<TestType>(c, "mask" + std::to_string(i))));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// minnow's own rules: ties, NaN, empty tensors, thread-count independence
// ---------------------------------------------------------------------------------------------------

TEST_CASE("Ties: among equal magnitudes the lowest flat index is pruned first") {
  Tensor<float, 1> w({7});
  const float values[] = {3.0f, 1.0f, 2.0f, -1.0f, 1.0f, 0.5f, -0.0f};
  std::copy(values, values + 7, w.data());
  auto m = ones<float>(7);
  prune::l1_unstructured(w.view(), m.view(), prune::Count{4});  // -0, 0.5, then the first two of |1|
  const float expected[] = {1, 0, 1, 0, 1, 0, 0};
  for (int i = 0; i < 7; ++i) CHECK(m(i) == expected[i]);

  auto all_equal = ones<float>(5);
  Tensor<float, 1> same({5}, 2.0f);
  prune::l1_unstructured(same.view(), all_equal.view(), prune::Count{2});
  CHECK(all_equal(0) == 0.0f);
  CHECK(all_equal(1) == 0.0f);
  CHECK(prune::count_kept(all_equal.view()) == 3);

  // Global: the earlier tensor's ties go first.
  Tensor<float, 1> a({2}, 1.0f), b({2}, 1.0f);
  auto ma = ones<float>(2), mb = ones<float>(2);
  std::vector<prune::MaskedView<float>> targets{{b.view(), mb.view()}, {a.view(), ma.view()}};
  prune::global_unstructured(targets, prune::Count{3});
  CHECK(prune::count_kept(mb.view()) == 0);
  CHECK(ma(0) == 0.0f);
  CHECK(ma(1) == 1.0f);

  // Structured: equal norms, the lower slice index goes first.
  Tensor<float, 2> ws({4, 2}, 1.0f);
  Tensor<float, 2> ms({4, 2}, 1.0f);
  prune::ln_structured(ws.view(), ms.view(), prune::Count{2}, 1.0, 0);
  CHECK(ms(0, 0) == 0.0f);
  CHECK(ms(1, 1) == 0.0f);
  CHECK(ms(2, 0) == 1.0f);
  CHECK(ms(3, 1) == 1.0f);
}

TEST_CASE("Ties spanning threads: the first k tied entries in index order, at any thread count") {
  const index_t n = 400'000;
  Tensor<float, 1> w({n}, 0.25f);
  for (const int threads : {1, 2, 3}) {
    minnow::set_threads(threads);
    auto m = ones<float>(n);
    m(5) = 0.0f;  // an already pruned entry is not counted again
    CHECK(prune::l1_unstructured(w.view(), m.view(), prune::Count{250'001}) == 250'001);
    index_t first_kept = 0;
    while (first_kept < n && (m(first_kept) == 0.0f)) ++first_kept;
    CHECK(first_kept == 250'002);
    CHECK(prune::count_kept(m.view()) == n - 250'002);
  }
  minnow::set_threads(2);
}

TEST_CASE("NaN weights rank above +inf: never pruned before a finite weight") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  Tensor<float, 1> w({6});
  const float values[] = {nan, 1.0f, inf, 2.0f, -nan, 0.0f};
  std::copy(values, values + 6, w.data());
  auto m = ones<float>(6);
  prune::l1_unstructured(w.view(), m.view(), prune::Count{4});  // 0, 1, 2, inf
  const float expected[] = {1, 0, 0, 0, 1, 0};
  for (int i = 0; i < 6; ++i) CHECK(m(i) == expected[i]);
  prune::l1_unstructured(w.view(), m.view(), prune::Count{1});  // the two NaNs tie: lower index first
  CHECK(m(0) == 0.0f);
  CHECK(m(4) == 1.0f);

  // A slice whose norm is NaN ranks above one whose norm is +inf.
  Tensor<double, 2> ws({3, 2});
  const double rows[] = {1.0, std::nan(""), std::numeric_limits<double>::infinity(), 1.0, 5.0, 5.0};
  std::copy(rows, rows + 6, ws.data());
  for (const double n : {1.0, 2.0, std::numeric_limits<double>::infinity()}) {
    Tensor<double, 2> ms(ws.shape(), 1.0);
    prune::ln_structured(ws.view(), ms.view(), prune::Count{2}, n, 0);
    CHECK(ms(0, 0) == 1.0);  // the NaN row survives
    CHECK(ms(1, 0) == 0.0);
    CHECK(ms(2, 0) == 0.0);
  }
}

TEMPLATE_TEST_CASE("l1 / global selection equals a full-sort reference on random data with many ties", "", float,
                   double) {
  std::mt19937_64 rng(2024);
  const std::vector<index_t> sizes_list = {1, 2, 17, 1000, 70'000, 200'003};
  for (int trial = 0; trial < 24; ++trial) {
    const std::size_t tensors = 1 + rng() % 3;
    std::vector<Tensor<TestType, 1>> w, m, ref;
    for (std::size_t t = 0; t < tensors; ++t) {
      const index_t n = sizes_list[rng() % sizes_list.size()];
      const int levels = trial % 3 == 0 ? 5 : 1'000'000;  // few distinct magnitudes: heavy ties
      w.emplace_back(Shape<1>{n});
      m.emplace_back(Shape<1>{n});
      for (index_t i = 0; i < n; ++i) {
        const auto v = static_cast<TestType>(static_cast<double>(rng() % static_cast<std::uint64_t>(levels)) *
                                             (trial % 2 ? 1e-3 : 7.0));
        w.back()(i) = (rng() & 1) ? v : -v;
        m.back()(i) = (rng() % 4 == 0) ? TestType(0) : TestType(1);
      }
      if (trial % 5 == 0 && n > 3) w.back()(n / 2) = std::numeric_limits<TestType>::quiet_NaN();
      ref.push_back(m.back().clone());
    }
    const double fraction = static_cast<double>(rng() % 1001) / 1000.0;
    const prune::Amount amount = prune::Fraction{fraction};
    std::vector<const TestType*> wp;
    std::vector<TestType*> rp;
    std::vector<index_t> np;
    std::vector<prune::MaskedView<TestType>> targets;
    for (std::size_t t = 0; t < tensors; ++t) {
      wp.push_back(w[t].data());
      rp.push_back(ref[t].data());
      np.push_back(w[t].size());
      targets.push_back({w[t].view(), m[t].view()});
    }
    reference_l1<TestType>(wp, rp, np, amount);
    if (tensors == 1) {
      prune::l1_unstructured(w[0].view(), m[0].view(), amount);
    } else {
      prune::global_unstructured(targets, amount);
    }
    for (std::size_t t = 0; t < tensors; ++t) REQUIRE(same_mask(m[t], ref[t]));
  }
}

TEST_CASE("Empty tensors: a Fraction prunes nothing, Count{0} is a no-op, Count{1} throws") {
  Tensor<float, 1> w({0});
  Tensor<float, 1> m({0});
  CHECK(prune::l1_unstructured(w.view(), m.view(), prune::Fraction{0.5}) == 0);
  CHECK(prune::l1_unstructured(w.view(), m.view(), prune::Count{0}) == 0);
  CHECK_THROWS_WITH(prune::l1_unstructured(w.view(), m.view(), prune::Count{1}), Contains("cannot prune 1 of 0"));
  std::mt19937_64 rng(1);
  CHECK(prune::random_unstructured(m.view(), prune::Fraction{1.0}, rng) == 0);
  CHECK(prune::global_unstructured(std::vector<prune::MaskedView<float>>{}, prune::Fraction{0.5}) == 0);
  CHECK(prune::global_unstructured(std::vector<prune::MaskedView<float>>{{w.view(), m.view()}}, prune::Fraction{1.0}) == 0);
  prune::apply(w.view(), m.view());
  Tensor<float, 2> w2({0, 3}), m2({0, 3});
  CHECK(prune::ln_structured(w2.view(), m2.view(), prune::Fraction{0.5}, 2.0, 0) == 0);
  CHECK(prune::ln_structured(w2.view(), m2.view(), prune::Fraction{0.5}, 2.0, 1) == 0);  // 3 slices, none alive
  CHECK(prune::random_structured(m2.view(), prune::Fraction{0.5}, 1, rng) == 0);
  prune::Pruner<float> pruner;
  pruner.track("empty", w.view());
  CHECK(pruner.l1_unstructured("empty", prune::Fraction{0.9}) == 0);
  pruner.apply();
  const auto r = prune::report(pruner);
  CHECK(r.parameters.at(0).sparsity() == 0.0);
  CHECK(r.total.dense_bytes == 0);
}

// ---------------------------------------------------------------------------------------------------
// Random criteria and custom masks
// ---------------------------------------------------------------------------------------------------

TEST_CASE("random_unstructured: exact count among survivors, deterministic per seed, roughly uniform") {
  auto run = [](std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    auto m = ones<float>(50);
    for (index_t i = 0; i < 10; ++i) m(i) = 0.0f;
    CHECK(prune::random_unstructured(m.view(), prune::Fraction{0.5}, rng) == 20);
    CHECK(prune::count_kept(m.view()) == 20);
    for (index_t i = 0; i < 10; ++i) CHECK(m(i) == 0.0f);
    return m;
  };
  CHECK(same_mask(run(7), run(7)));
  CHECK_FALSE(same_mask(run(7), run(8)));

  std::mt19937_64 rng(3);
  std::vector<int> hits(10, 0);
  for (int t = 0; t < 4000; ++t) {
    auto m = ones<double>(10);
    prune::random_unstructured(m.view(), prune::Count{3}, rng);
    for (index_t i = 0; i < 10; ++i) hits[static_cast<std::size_t>(i)] += m(i) == 0.0 ? 1 : 0;
  }
  for (const int h : hits) CHECK(std::abs(h - 1200) < 150);  // expected 1200, sd ≈ 29
  std::mt19937_64 small(5);
  for (int t = 0; t < 1000; ++t) REQUIRE(prune::detail::bounded(small, 3) < 3);
}

TEST_CASE("random_structured prunes whole surviving slices, deterministically") {
  std::mt19937_64 a(9), b(9);
  Tensor<float, 3> m1({4, 6, 2}, 1.0f), m2({4, 6, 2}, 1.0f);
  CHECK(prune::random_structured(m1.view(), prune::Fraction{0.5}, 1, a) == 3);
  CHECK(prune::random_structured(m2.view(), prune::Fraction{0.5}, -2, b) == 3);
  CHECK(same_mask(m1, m2));
  int dead = 0;
  for (index_t s = 0; s < 6; ++s) {
    float sum = 0.0f;
    for (index_t o = 0; o < 4; ++o) sum += m1(o, s, 0) + m1(o, s, 1);
    CHECK((sum == 0.0f || sum == 8.0f));
    dead += sum == 0.0f ? 1 : 0;
  }
  CHECK(dead == 3);
  CHECK(prune::random_structured(m1.view(), prune::Fraction{1.0}, 1, a) == 3);
  CHECK(prune::count_kept(m1.view()) == 0);
}

TEST_CASE("custom_from_mask composes a validated user mask") {
  auto m = ones<float>(4);
  m(0) = 0.0f;
  Tensor<float, 1> user({4}, 1.0f);
  user(0) = 1.0f;
  user(2) = 0.0f;
  CHECK(prune::custom_from_mask(m.view(), user.view()) == 1);
  CHECK(m(0) == 0.0f);  // stays pruned
  CHECK(m(2) == 0.0f);
  user(1) = 2.0f;
  CHECK_THROWS_WITH(prune::custom_from_mask(m.view(), user.view()), Contains("entry 1 of [4] is 2"));
  Tensor<float, 1> wrong({3}, 1.0f);
  CHECK_THROWS_AS(prune::custom_from_mask(m.view(), wrong.view()), shape_error);
}

// ---------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------

TEST_CASE("Criteria reject bad input with typed errors and leave the mask untouched") {
  Tensor<float, 2> w({2, 3}, 1.0f);
  Tensor<float, 2> m({3, 2}, 1.0f);
  CHECK_THROWS_WITH(prune::l1_unstructured(w.view(), m.view(), prune::Fraction{0.5}),
                    "prune::l1_unstructured: mask [3, 2] does not match weights [2, 3]");

  Tensor<float, 1> w1({6}, 1.0f);
  auto m1 = ones<float>(6);
  m1(4) = 0.5f;
  CHECK_THROWS_AS(prune::l1_unstructured(w1.view(), m1.view(), prune::Fraction{0.5}), value_error);
  CHECK_THROWS_WITH(prune::l1_unstructured(w1.view(), m1.view(), prune::Fraction{0.5}),
                    Contains("prune::l1_unstructured: mask entries must be 0 or 1, entry 4 of [6] is 0.5"));
  CHECK(m1(0) == 1.0f);

  auto m2 = ones<float>(6);
  CHECK_THROWS_WITH(prune::l1_unstructured(w1.view(), m2.view(), prune::Count{7}), Contains("cannot prune 7 of 6"));
  CHECK(prune::count_kept(m2.view()) == 6);

  Tensor<float, 1> a({3}, 1.0f), b({4}, 1.0f);
  auto ma = ones<float>(3), mb = ones<float>(5);
  std::vector<prune::MaskedView<float>> bad{{a.view(), ma.view()}, {b.view(), mb.view()}};
  CHECK_THROWS_WITH(prune::global_unstructured(bad, prune::Fraction{0.5}),
                    "prune::global_unstructured: tensor 1: mask [5] does not match weights [4]");
  auto mb4 = ones<float>(4);
  mb4(2) = -1.0f;
  std::vector<prune::MaskedView<float>> odd{{a.view(), ma.view()}, {b.view(), mb4.view()}};
  CHECK_THROWS_WITH(prune::global_unstructured(odd, prune::Fraction{0.5}), Contains("(tensor 1)"));
  CHECK(prune::count_kept(ma.view()) == 3);

  const auto c = fixtures::cases("prune.json", "ln_structured").at(0);
  const auto conv = fixtures::flat<float>(c, "weight");
  const std::vector<index_t> shape = {6, 3, 3, 3};
  auto mc = ones<float>(conv.size());
  CHECK_THROWS_WITH(prune::ln_structured(conv.view(), std::span<const index_t>(shape), mc.view(), prune::Fraction{0.5}, 3.0, 0),
                    "prune::ln_structured: n must be 1, 2 or infinity, got 3");
  CHECK_THROWS_WITH(prune::ln_structured(conv.view(), std::span<const index_t>(shape), mc.view(), prune::Fraction{0.5}, 2.0, 4),
                    "prune::ln_structured: dim must lie in [-4, 4) for shape [6, 3, 3, 3], got 4");
  CHECK_THROWS_AS(prune::ln_structured(conv.view(), std::span<const index_t>(shape), mc.view(), prune::Fraction{0.5}, 2.0, -5),
                  value_error);
  const std::vector<index_t> wrong_shape = {6, 3, 3, 2};
  CHECK_THROWS_WITH(prune::ln_structured(conv.view(), std::span<const index_t>(wrong_shape), mc.view(), prune::Fraction{0.5}, 2.0, 0),
                    Contains("logical shape [6, 3, 3, 2] does not describe 162 elements"));
  CHECK_THROWS_WITH(prune::ln_structured(conv.view(), std::span<const index_t>(shape), mc.view(), prune::Count{7}, 2.0, 0),
                    Contains("cannot prune 7 of 6"));
  auto short_mask = ones<float>(10);
  CHECK_THROWS_AS(prune::ln_structured(conv.view(), std::span<const index_t>(shape), short_mask.view(), prune::Fraction{0.5}, 2.0, 0),
                  shape_error);
  CHECK(prune::count_kept(mc.view()) == conv.size());
  std::mt19937_64 rng(0);
  CHECK_THROWS_AS(prune::random_structured(mc.view(), std::span<const index_t>(shape), prune::Fraction{0.5}, 9, rng),
                  value_error);
}

// ---------------------------------------------------------------------------------------------------
// The hook: pruned weights stay exactly zero through training
// ---------------------------------------------------------------------------------------------------

namespace {

constexpr index_t kHookSize = 3000;

// Fills the gradient with fresh N(0, 1) noise, as backward would.
template <class T>
void random_grad(TensorView<T, 1> g, std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  for (index_t i = 0; i < g.size(); ++i) g(i) = static_cast<T>(normal(rng));
}

template <class T>
void init_weights(Tensor<T, 1>& w, std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  for (index_t i = 0; i < w.size(); ++i) w(i) = static_cast<T>(normal(rng));
}

// Every masked weight, gradient and state entry is exactly zero (counted, then checked once).
template <class T>
void check_pruned_zero(const prune::Pruner<T>& pruner, const std::string& name, const std::vector<TensorView<T, 1>>& buffers) {
  const auto mask = pruner.mask(name);
  index_t nonzero = 0;
  for (const auto& e : pruner.entries()) {
    if (e.name != name) continue;
    for (index_t i = 0; i < mask.size(); ++i) {
      if (mask(i) != T(0)) continue;
      nonzero += e.value(i) != T(0) ? 1 : 0;
      if (!e.grad.empty()) nonzero += e.grad(i) != T(0) ? 1 : 0;
    }
  }
  for (const auto& b : buffers) {
    for (index_t i = 0; i < mask.size(); ++i) nonzero += (mask(i) == T(0) && b(i) != T(0)) ? 1 : 0;
  }
  REQUIRE(nonzero == 0);
}

}  // namespace

TEST_CASE("Hook: inline SGD with momentum on raw views keeps pruned weights at exactly 0 for 100 steps") {
  std::mt19937_64 rng(1);
  Tensor<float, 1> w({kHookSize}), g({kHookSize}), buf({kHookSize});
  init_weights(w, rng);
  prune::Pruner<float> pruner;
  pruner.track("w", w.view(), g.view(), {{"momentum_buffer", buf.view()}});
  pruner.l1_unstructured("w", prune::Fraction{0.7});
  const auto before = w.clone();
  const float lr = 0.01f, mu = 0.9f;
  bool moved_off_zero = false;
  for (int step = 0; step < 100; ++step) {
    random_grad(g.view(), rng);
    buf.array() = mu * buf.array() + g.array();
    w.array() -= lr * buf.array();
    for (index_t i = 0; i < kHookSize; ++i) moved_off_zero |= pruner.mask("w")(i) == 0.0f && w(i) != 0.0f;
    pruner.apply();
    check_pruned_zero(pruner, "w", {buf.view()});
  }
  CHECK(moved_off_zero);  // without the hook they would not stay zero
  index_t changed = 0;
  for (index_t i = 0; i < kHookSize; ++i) changed += (pruner.mask("w")(i) != 0.0f && w(i) != before(i)) ? 1 : 0;
  CHECK(changed == prune::count_kept(pruner.mask("w")));
}

TEST_CASE("Hook: inline Adam on raw views keeps pruned weights at exactly 0 for 100 steps") {
  std::mt19937_64 rng(2);
  Tensor<double, 1> w({kHookSize}), g({kHookSize}), m1({kHookSize}), m2({kHookSize});
  init_weights(w, rng);
  prune::Pruner<double> pruner;
  pruner.track("w", w.view(), g.view(), {{"exp_avg", m1.view()}, {"exp_avg_sq", m2.view()}}, {30, 100});
  pruner.ln_structured("w", prune::Fraction{0.5}, 2.0, 1);
  pruner.l1_unstructured("w", prune::Fraction{0.3});
  const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  for (int t = 1; t <= 100; ++t) {
    random_grad(g.view(), rng);
    m1.array() = b1 * m1.array() + (1 - b1) * g.array();
    m2.array() = b2 * m2.array() + (1 - b2) * g.array().square();
    const double c1 = 1 - std::pow(b1, t), c2 = 1 - std::pow(b2, t);
    w.array() -= lr * (m1.array() / c1) / ((m2.array() / c2).sqrt() + eps);
    pruner.apply();
    check_pruned_zero(pruner, "w", {m1.view(), m2.view()});
  }
  CHECK(prune::count_kept(pruner.mask("w")) == 3000 - 1500 - 450);
}

TEST_CASE("Hook: nn::Sgd (momentum, weight decay) and nn::Adam with random gradients, 100 steps") {
  for (const bool adam : {false, true}) {
    SECTION(adam ? "Adam" : "Sgd") {
      std::mt19937_64 rng(adam ? 4 : 3);
      Tensor<float, 1> w1({1200}), g1({1200}), w2({70'000}), g2({70'000});  // the second takes the threaded path
      init_weights(w1, rng);
      init_weights(w2, rng);
      std::vector<Parameter<float>> params{{"fc.weight", {40, 30}, w1.view(), g1.view()},
                                           {"big.weight", {700, 100}, w2.view(), g2.view()}};
      std::unique_ptr<nn::Optimizer<float>> opt;
      if (adam) {
        opt = std::make_unique<nn::Adam<float>>(params, 1e-2, nn::AdamOptions{.amsgrad = true});
      } else {
        opt = std::make_unique<nn::Sgd<float>>(params, 0.05, nn::SgdOptions{.momentum = 0.9, .weight_decay = 1e-3});
      }
      prune::Pruner<float> pruner;
      for (const auto& p : params) pruner.track(p, opt->state(p.name));
      pruner.ln_structured("fc.weight", prune::Fraction{0.25}, 1.0, 0);
      pruner.global_unstructured(prune::Fraction{0.6});
      for (int step = 0; step < 100; ++step) {
        random_grad(g1.view(), rng);
        random_grad(g2.view(), rng);
        opt->step();
        pruner.apply();
        for (std::size_t i = 0; i < params.size(); ++i) {
          std::vector<TensorView<float, 1>> buffers;
          for (const auto& s : opt->state(i)) buffers.push_back(s.view);
          CHECK_FALSE(buffers.empty());
          check_pruned_zero(pruner, params[i].name, buffers);
        }
      }
      const auto r = prune::report(pruner);
      CHECK(r.total.kept == 71'200 - prune::to_count(prune::Fraction{0.6}, 71'200 - 300) - 300);
    }
  }
}

TEST_CASE("Hook: mask_gradients, make_permanent and the tracking errors") {
  Tensor<float, 1> w({8}), g({8}, 1.0f), s({8}, 1.0f);
  for (index_t i = 0; i < 8; ++i) w(i) = static_cast<float>(i) - 3.5f;
  prune::Pruner<float> pruner;
  pruner.track("w", w.view(), g.view());
  CHECK_THROWS_WITH(pruner.track("w", w.view()), "Pruner: 'w' is already tracked");
  Tensor<float, 1> short_grad({7});
  CHECK_THROWS_AS(pruner.track("x", w.view(), short_grad.view()), shape_error);
  CHECK_THROWS_WITH(pruner.track("x", w.view(), g.view(), {{"exp_avg", short_grad.view()}}),
                    "Pruner: state 'exp_avg' of 'x' has 7 elements, the value has 8");
  CHECK_THROWS_WITH(pruner.track("x", w.view(), {}, {}, {3, 3}), Contains("logical shape of 'x' has 9 elements"));
  CHECK_THROWS_WITH(pruner.l1_unstructured("nope", prune::Fraction{0.5}), "Pruner: no parameter named 'nope' is tracked");
  CHECK_THROWS_AS(pruner.set_state("w", {{"m", short_grad.view()}}), shape_error);
  pruner.set_state("w", {{"m", s.view()}});

  CHECK(pruner.l1_unstructured("w", prune::Count{4}) == 4);  // |w| = 0.5, 0.5, 1.5, 1.5 → indices 3, 4, 2, 5
  CHECK(w(3) == 0.0f);
  CHECK(s(3) == 0.0f);
  g.fill(1.0f);
  pruner.mask_gradients();
  CHECK(g(2) == 0.0f);
  CHECK(g(0) == 1.0f);
  pruner.make_permanent("w");
  CHECK_FALSE(pruner.tracks("w"));
  const float expected[] = {-3.5f, -2.5f, 0, 0, 0, 0, 2.5f, 3.5f};
  for (int i = 0; i < 8; ++i) CHECK(w(i) == expected[i]);
  w(3) = 9.0f;
  pruner.apply();  // no longer enforced
  CHECK(w(3) == 9.0f);
}

// ---------------------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------------------

TEST_CASE("AGP / polynomial decay: targets and pruning steps") {
  const auto agp = prune::agp(0.0, 0.8, 100, 1100, 100);
  CHECK(agp.target(0) == 0.0);
  CHECK(agp.target(100) == 0.0);
  CHECK(agp.target(600) == Approx(0.8 - 0.8 * 0.125).epsilon(1e-15));
  CHECK(agp.target(350) == Approx(0.8 - 0.8 * std::pow(0.75, 3)).epsilon(1e-15));
  CHECK(agp.target(1100) == 0.8);
  CHECK(agp.target(5000) == 0.8);
  CHECK_FALSE(agp.is_pruning_step(0));
  CHECK(agp.is_pruning_step(100));
  CHECK_FALSE(agp.is_pruning_step(150));
  CHECK(agp.is_pruning_step(200));
  CHECK(agp.is_pruning_step(1100));
  CHECK_FALSE(agp.is_pruning_step(1200));
  // `end` is a pruning step even off the frequency's grid, so the final sparsity is always reached.
  const auto off_grid = prune::agp(0.0, 0.9, 0, 10, 3);
  std::vector<std::int64_t> pruning_steps;
  for (std::int64_t step = 0; step <= 12; ++step) {
    if (off_grid.is_pruning_step(step)) pruning_steps.push_back(step);
  }
  CHECK(pruning_steps == std::vector<std::int64_t>{0, 3, 6, 9, 10});
  CHECK(off_grid.target(10) == 0.9);
  const prune::PolynomialDecay linear(0.2, 0.6, 0, 10, 1, 1.0);
  CHECK(linear.target(5) == Approx(0.4));
  const prune::ConstantSparsity constant(0.5, 10, 10);
  CHECK(constant.is_pruning_step(10));
  CHECK_FALSE(constant.is_pruning_step(11));
  CHECK(constant.target(10) == 0.5);

  CHECK_THROWS_WITH(prune::agp(0.0, 0.8, 10, 10, 1), "PolynomialDecay: begin must be < end, got begin 10, end 10");
  CHECK_THROWS_WITH(prune::agp(0.0, 0.8, 0, 10, 0), "PolynomialDecay: frequency must be > 0, got 0");
  CHECK_THROWS_WITH(prune::agp(0.0, 1.5, 0, 10, 1), "PolynomialDecay: final sparsity must lie in [0, 1], got 1.5");
  CHECK_THROWS_WITH(prune::agp(std::nan(""), 0.5, 0, 10, 1), Contains("initial sparsity must lie in [0, 1], got nan"));
  CHECK_THROWS_AS(prune::PolynomialDecay(0.0, 0.5, 0, 10, 1, 0.0), value_error);
  CHECK_THROWS_WITH(prune::ConstantSparsity(0.5, 11, 10), Contains("begin must be <= end, got begin 11, end 10"));
  CHECK_THROWS_AS(prune::ConstantSparsity(-0.1, 0, 10), value_error);
}

TEST_CASE("Additional amount to reach a target") {
  CHECK(prune::additional_fraction(0.75, 0.5).value() == 0.5);
  CHECK(prune::additional_fraction(0.5, 0.75).value() == 0.0);
  CHECK(prune::additional_fraction(1.0, 1.0).value() == 0.0);
  CHECK(prune::additional_count(0.7, 30, 100).value() == 40);
  CHECK(prune::additional_count(0.2, 30, 100).value() == 0);
  CHECK(prune::additional_count(0.25, 0, 10).value() == 2);  // round(2.5) = 2
  CHECK_THROWS_AS(prune::additional_count(0.5, 11, 10), value_error);
  const prune::GradualPruner gradual(prune::agp(0.0, 0.8, 0, 100, 10));
  CHECK(gradual.additional_fraction(5, 0.0).value() == 0.0);  // not a pruning step
  CHECK(gradual.additional_fraction(50, 0.0).value() == Approx(0.7));
}

TEST_CASE("GradualPruner drives per-layer, structured and global pruning to the exact target counts") {
  std::mt19937_64 rng(5);
  Tensor<float, 1> a({1000}), b({300}), g({1000});
  init_weights(a, rng);
  init_weights(b, rng);
  prune::Pruner<float> pruner;
  pruner.track("a", a.view(), g.view(), {}, {50, 20});
  pruner.track("b", b.view(), {}, {}, {30, 10});
  prune::GradualPruner gradual(prune::agp(0.0, 0.9, 0, 100, 25));
  for (std::int64_t step = 0; step <= 120; ++step) {
    const bool pruned = gradual.step(step, pruner);
    CHECK(pruned == (step % 25 == 0 && step <= 100));
    if (pruned) {
      const double target = gradual.target(step);
      CHECK(prune::count_kept(pruner.mask("a")) == 1000 - prune::to_count(prune::Fraction{target}, 1000));
      CHECK(prune::count_kept(pruner.mask("b")) == 300 - prune::to_count(prune::Fraction{target}, 300));
    }
  }
  CHECK(prune::report(pruner).total.sparsity() == Approx(0.9));

  prune::Pruner<float> structured;
  structured.track("a", a.view(), {}, {}, {50, 20});
  prune::GradualPruner constant(prune::ConstantSparsity(0.5, 0, 0));
  CHECK(constant.step(0, structured, prune::LnStructured{1.0, 1}));
  CHECK(prune::surviving_slices(structured.mask("a"), std::vector<index_t>{50, 20}, 1) == 10);
  std::mt19937_64 r2(1);
  prune::GradualPruner more(prune::ConstantSparsity(0.75, 0, 0));
  more.step(0, structured, prune::RandomStructured{1, &r2});
  CHECK(prune::surviving_slices(structured.mask("a"), std::vector<index_t>{50, 20}, 1) == 5);

  Tensor<float, 1> c({500}), d({1500});
  init_weights(c, rng);
  init_weights(d, rng);
  prune::Pruner<float> global;
  global.track("c", c.view());
  global.track("d", d.view());
  prune::GradualPruner schedule(prune::agp(0.1, 0.6, 10, 30, 10));
  for (std::int64_t step = 0; step <= 30; ++step) {
    if (schedule.step(step, global, prune::GlobalL1Unstructured{})) {
      const auto r = prune::report(global);
      CHECK(r.total.pruned() == prune::to_count(prune::Fraction{schedule.target(step)}, 2000));
    }
  }
  std::mt19937_64 r3(2);
  prune::Pruner<float> random_layer;
  random_layer.track("c", c.view());
  prune::GradualPruner(prune::ConstantSparsity(0.3, 0, 0)).step(0, random_layer, prune::RandomUnstructured{&r3});
  CHECK(prune::count_kept(random_layer.mask("c")) == 350);
}

TEST_CASE("prune_to: one-shot pruning with the same criterion policies, equal to the Pruner calls they stand for") {
  std::mt19937_64 rng(11);
  Tensor<float, 1> c({500}), d({1500});
  init_weights(c, rng);
  init_weights(d, rng);
  const auto tracked = [&](Tensor<float, 1>& c_copy, Tensor<float, 1>& d_copy) {
    c_copy = Tensor<float, 1>(c.view());
    d_copy = Tensor<float, 1>(d.view());
    prune::Pruner<float> p;
    p.track("c", c_copy.view(), {}, {}, {25, 20});
    p.track("d", d_copy.view(), {}, {}, {50, 30});
    return p;
  };
  Tensor<float, 1> c1, d1, c2, d2;
  SECTION("L1Unstructured: each tensor to the target on its own") {
    auto policy = tracked(c1, d1);
    auto by_hand = tracked(c2, d2);
    CHECK(prune::prune_to(policy, 0.6) == 300 + 900);
    by_hand.l1_unstructured("c", prune::Count{300});
    by_hand.l1_unstructured("d", prune::Count{900});
    by_hand.apply();
    CHECK(test_support::raw(policy.mask("c")) == test_support::raw(by_hand.mask("c")));
    CHECK(test_support::raw(policy.mask("d")) == test_support::raw(by_hand.mask("d")));
    CHECK(test_support::raw(c1) == test_support::raw(c2));  // the masks were applied to the weights
    CHECK(prune::prune_to(policy, 0.5) == 0);                // already beyond: masks only lose ones
    CHECK(prune::prune_to(policy, 0.8, prune::L1Unstructured{}, {"c"}) == 100);
    CHECK(prune::count_kept(policy.mask("c")) == 100);
    CHECK(prune::count_kept(policy.mask("d")) == 600);
  }
  SECTION("GlobalL1Unstructured: one ranking over both, the overall sparsity at the target") {
    auto policy = tracked(c1, d1);
    auto by_hand = tracked(c2, d2);
    CHECK(prune::prune_to(policy, 0.6, prune::GlobalL1Unstructured{}) == 1200);
    by_hand.global_unstructured(prune::Count{1200});
    by_hand.apply();
    CHECK(test_support::raw(policy.mask("c")) == test_support::raw(by_hand.mask("c")));
    CHECK(test_support::raw(policy.mask("d")) == test_support::raw(by_hand.mask("d")));
    CHECK(prune::report(policy).total.pruned() == 1200);
  }
  SECTION("LnStructured: whole rows of the logical shape") {
    auto policy = tracked(c1, d1);
    CHECK(prune::prune_to(policy, 0.2, prune::LnStructured{.n = 2.0, .dim = 0}, {"c"}) == 5);  // slices
    CHECK(prune::surviving_slices(policy.mask("c"), std::vector<index_t>{25, 20}, 0) == 20);
  }
  SECTION("bad input changes nothing") {
    auto policy = tracked(c1, d1);
    const auto before = test_support::raw(policy.mask("c"));
    CHECK_REFUSED(prune::prune_to(policy, 0.5, prune::L1Unstructured{}, {"c", "nope"}), value_error,
                  Contains("no parameter named 'nope'"));
    CHECK_REFUSED(prune::prune_to(policy, 1.5), value_error, Contains("prune_to: target must lie in [0, 1], got 1.5"));
    CHECK_REFUSED(prune::prune_to(policy, 0.5, prune::GlobalL1Unstructured{}, {"c", "d", "c"}), value_error,
                  Contains("parameter 'c' is named twice"));
    CHECK_REFUSED(prune::prune_to(policy, 0.5, prune::RandomUnstructured{}), value_error, Contains("RandomUnstructured: rng is null"));
    // A dim the second tensor does not have: the first, which has it, is not pruned either.
    Tensor<float, 1> bias({20});
    init_weights(bias, rng);
    policy.track("bias", bias.view());
    CHECK_THROWS(prune::prune_to(policy, 0.5, prune::LnStructured{.n = 2.0, .dim = 1}, {"c", "bias"}));
    CHECK_REFUSED(prune::prune_to(policy, 0.5, prune::LnStructured{.n = -1.0, .dim = 0}), value_error, Contains("LnStructured"));
    CHECK(test_support::raw(policy.mask("c")) == before);
    CHECK(test_support::raw(c1) == test_support::raw(c));
  }
}

// ---------------------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------------------

TEST_CASE("Report: counts, sparsity and dense / bitmap / CSR bytes on a known mask") {
  Tensor<float, 1> w({20}, 1.0f);
  Tensor<double, 1> v({10}, 1.0);
  prune::Pruner<float> pruner;
  pruner.track("w", w.view(), {}, {}, {4, 5});
  Tensor<float, 1> user({20}, 0.0f);
  for (const index_t i : {0, 3, 7, 11, 12, 19}) user(i) = 1.0f;
  pruner.custom_from_mask("w", user.view());
  const auto r = prune::report(pruner);
  REQUIRE(r.parameters.size() == 1);
  const auto& p = r.parameters[0];
  CHECK(p.name == "w");
  CHECK(p.size == 20);
  CHECK(p.kept == 6);
  CHECK(p.pruned() == 14);
  CHECK(p.sparsity() == Approx(0.7));
  CHECK(p.dense_bytes == 80);
  CHECK(p.bitmap_bytes == 3 + 6 * 4);
  CHECK(p.csr_bytes == 6 * (4 + 4) + 5 * 4);
  CHECK(p.best_bytes() == 27);
  CHECK(r.compression_ratio() == Approx(80.0 / 27.0));
  CHECK_THAT(r.table(), Contains("70.000%"));

  // From weights (after make_permanent), double, a vector: CSR has one row.
  v(2) = 0.0;
  v(5) = 0.0;
  std::vector<Parameter<double>> params{{"v", {10}, v.view(), {}}};
  const auto rv = prune::report(params);
  CHECK(rv.total.kept == 8);
  CHECK(rv.total.dense_bytes == 80);
  CHECK(rv.total.bitmap_bytes == 2 + 8 * 8);
  CHECK(rv.total.csr_bytes == 8 * 12 + 2 * 4);
}
