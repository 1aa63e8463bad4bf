// minnow::quant search-based observers and k-means codebooks: Histogram against PyTorch 1.13's
// HistogramObserver and Percentile against torch.quantile (fixtures from
// tests/fixtures/generate_quant_search.py), MseOptimal against MinMax and an exhaustive evaluation,
// KMeansCodebook against a brute-force Lloyd, and SharedWeights' training step against a hand update.
#include "fixtures.hpp"
#include "test_support.hpp"

#include <minnow/quant/histogram.hpp>
#include <minnow/quant/kmeans.hpp>
#include <minnow/quant/mse_observer.hpp>
#include <minnow/quant/percentile.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace minnow;
using Catch::Matchers::Contains;

namespace {

static_assert(quant::Observer<quant::Histogram>);
static_assert(quant::Observer<quant::Percentile>);
static_assert(quant::Observer<quant::MseOptimal>);
static_assert(quant::CodebookMapping<quant::KMeansCodebook>);
static_assert(quant::Mapping<quant::KMeansCodebook>);

quant::ChannelValues<const float> whole(const Tensor<float, 1>& t) { return {t.data(), 1, t.size(), t.size()}; }
quant::ChannelValues<const float> whole(const std::vector<float>& v) {
  const auto n = static_cast<index_t>(v.size());
  return {v.data(), 1, n, n};
}

double rel(double a, double b) { return std::abs(a - b) / std::max(1e-30, std::abs(b)); }

std::vector<Tensor<float, 1>> batches_of(const nlohmann::json& c) {
  std::vector<Tensor<float, 1>> out;
  const int n = c.at("params").at("batches").get<int>();
  for (int i = 0; i < n; ++i) out.push_back(fixtures::flat<float>(c, "batch" + std::to_string(i)));
  return out;
}

/// Normal values with a few far outliers (5 % at 20σ): heavy-tailed, like activations.
std::vector<float> heavy_tailed(index_t n, float sigma, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = normal(rng) * (u(rng) < 0.05f ? 20.0f : 1.0f);
  return v;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Histogram
// ---------------------------------------------------------------------------------------------------

TEST_CASE("Histogram matches PyTorch 1.13's HistogramObserver (float bounds and legacy int bounds)") {
  for (const auto& c : fixtures::cases("quant_search.json", "histogram")) {
    const auto& p = c.at("params");
    const quant::QRange grid{p.at("qmin").get<std::int32_t>(), p.at("qmax").get<std::int32_t>()};
    const auto batches = batches_of(c);
    for (const bool legacy : {false, true}) {
      for (const bool torch_dst : {false, true}) {
        const std::string key = std::string(legacy ? "stock_" : "float_") + (torch_dst ? "torch" : "levels");
        const auto expected = p.at(key).get<std::vector<double>>();
        quant::HistogramOptions options;
        options.legacy_integer_bounds = legacy;
        options.dst_bins = torch_dst ? 256 : 0;
        quant::Histogram observer(options);
        for (const auto& b : batches) observer.observe(whole(b));
        const quant::Range r = observer.range(grid);
        INFO(c.at("name").get<std::string>() << " " << key << ": histogram [" << observer.min() << ", "
                                             << observer.max() << "], range [" << r.min << ", " << r.max
                                             << "], expected [" << expected[2] << ", " << expected[3] << "]");
        CHECK(rel(observer.min(), expected[0]) <= 1e-6);
        CHECK(rel(observer.max(), expected[1]) <= 1e-6);
        CHECK(std::abs(r.min - expected[2]) <= 1e-5 * std::max(1.0, std::abs(expected[2])));
        CHECK(std::abs(r.max - expected[3]) <= 1e-5 * std::max(1.0, std::abs(expected[3])));
      }
    }
  }
}

TEST_CASE("Histogram: nothing observed, constants, empty batches, reset and bad input") {
  quant::Histogram h;
  CHECK(h.range(quant::qint8::range()).min == 0.0f);
  CHECK(h.range(quant::qint8::range()).max == 0.0f);
  const std::vector<float> empty;
  h.observe(whole(empty));
  CHECK(h.empty());

  const std::vector<float> constant(10, 0.5f);
  h.observe(whole(constant));
  const auto r = h.range(quant::qint8::range());
  CHECK(r.min == 0.5f);
  CHECK(r.max == 0.5f);

  const std::vector<float> ramp = {-1.0f, 0.0f, 1.0f, 2.0f};
  h.observe(whole(ramp));  // after a constant batch PyTorch starts over
  CHECK(h.min() == -1.0f);
  CHECK(h.max() == 2.0f);
  h.reset();
  CHECK(h.empty());

  std::vector<float> bad = {1.0f, std::numeric_limits<float>::quiet_NaN()};
  CHECK_THROWS_AS(h.observe(whole(bad)), value_error);
  bad[1] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_AS(h.observe(whole(bad)), value_error);
  CHECK(h.empty());
  CHECK_THAT(test_support::message_of<value_error>([] { quant::Histogram(0); }), Contains("got 0"));
}

TEST_CASE("Histogram reads strided channels (per-channel layout) like the gathered values") {
  // [outer 3, channels 2, inner 4]: channel 1 is 3 chunks of 4, 8 apart.
  std::vector<float> data(24);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::sin(static_cast<float>(i) * 1.3f);
  const quant::ChannelLayout layout{3, 2, 4};
  std::vector<float> gathered;
  for (index_t o = 0; o < 3; ++o) {
    for (index_t i = 0; i < 4; ++i) gathered.push_back(data[static_cast<std::size_t>(o * 8 + 4 + i)]);
  }
  quant::Histogram a(64), b(64);
  a.observe(layout.channel<const float>(data.data(), 1));
  b.observe(whole(gathered));
  CHECK(a.range(quant::quint8::range()).min == b.range(quant::quint8::range()).min);
  CHECK(a.range(quant::quint8::range()).max == b.range(quant::quint8::range()).max);
}

// ---------------------------------------------------------------------------------------------------
// Percentile
// ---------------------------------------------------------------------------------------------------

TEST_CASE("Percentile matches torch.quantile per batch and averages batches") {
  for (const auto& c : fixtures::cases("quant_search.json", "percentile")) {
    const auto& p = c.at("params");
    const auto lows = p.at("low").get<std::vector<double>>();
    const auto highs = p.at("high").get<std::vector<double>>();
    const auto batches = batches_of(c);
    quant::Percentile observer(p.at("p").get<double>());
    double low_mean = 0.0, high_mean = 0.0;
    for (std::size_t i = 0; i < batches.size(); ++i) {
      quant::Percentile single(p.at("p").get<double>());
      single.observe(whole(batches[i]));
      const auto r = single.range(quant::qint8::range());
      INFO(c.at("name").get<std::string>() << " batch " << i);
      CHECK(std::abs(r.min - lows[i]) <= 1e-6 * std::max(1.0, std::abs(lows[i])));
      CHECK(std::abs(r.max - highs[i]) <= 1e-6 * std::max(1.0, std::abs(highs[i])));
      observer.observe(whole(batches[i]));
      low_mean += static_cast<double>(static_cast<float>(lows[i]));
      high_mean += static_cast<double>(static_cast<float>(highs[i]));
    }
    low_mean /= static_cast<double>(batches.size());
    high_mean /= static_cast<double>(batches.size());
    const auto r = observer.range(quant::qint8::range());
    CHECK(std::abs(r.min - low_mean) <= 1e-6 * std::max(1.0, std::abs(low_mean)));
    CHECK(std::abs(r.max - high_mean) <= 1e-6 * std::max(1.0, std::abs(high_mean)));
    CHECK(observer.batches() == static_cast<std::int64_t>(batches.size()));
  }
}

TEST_CASE("Percentile: edge cases and bad input") {
  quant::Percentile p(99.0);
  CHECK(p.range(quant::qint8::range()).max == 0.0f);
  const std::vector<float> one = {3.0f};
  p.observe(whole(one));
  CHECK(p.range(quant::qint8::range()).min == 3.0f);
  CHECK(p.range(quant::qint8::range()).max == 3.0f);
  p.reset();
  CHECK(p.batches() == 0);
  const std::vector<float> bad = {1.0f, std::numeric_limits<float>::quiet_NaN()};
  CHECK_THROWS_AS(p.observe(whole(bad)), value_error);
  CHECK(p.batches() == 0);
  CHECK_THAT(test_support::message_of<value_error>([] { quant::Percentile(40.0); }), Contains("got 40"));
  CHECK_THROWS_AS(quant::Percentile(100.5), value_error);
}

// ---------------------------------------------------------------------------------------------------
// MseOptimal
// ---------------------------------------------------------------------------------------------------

namespace {

/// True MSE of quantizing `values` onto the affine grid of `r` (SEMANTICS.md's forward, in float).
double true_mse(const std::vector<float>& values, quant::Range r, quant::QRange grid) {
  const float lo = std::min(r.min, 0.0f), hi = std::max(r.max, 0.0f);
  const float scale = std::max((hi - lo) / static_cast<float>(grid.qmax - grid.qmin), std::numeric_limits<float>::epsilon());
  const float zp = std::clamp(static_cast<float>(grid.qmin) - std::nearbyint(lo / scale), static_cast<float>(grid.qmin),
                              static_cast<float>(grid.qmax));
  const float inv = 1.0f / scale;
  double sse = 0.0;
  for (const float x : values) {
    const float q = std::clamp(zp + std::nearbyint(x * inv), static_cast<float>(grid.qmin), static_cast<float>(grid.qmax));
    const double d = static_cast<double>((q - zp) * scale) - static_cast<double>(x);
    sse += d * d;
  }
  return sse / static_cast<double>(values.size());
}

}  // namespace

TEST_CASE("MseOptimal beats MinMax on heavy-tailed data and matches an exhaustive search of its candidates") {
  for (const quant::QRange grid : {quant::qint8::range(), quant::quint8::range(true), quant::qint4::range()}) {
    const auto data = heavy_tailed(200000, 0.5f, 7);
    quant::MseOptimal observer;
    // Three batches with growing ranges: the histogram grows by doubling its bins.
    const std::size_t cut1 = 20000, cut2 = 90000;
    const std::vector<float> b0(data.begin(), data.begin() + cut1), b1(data.begin() + cut1, data.begin() + cut2),
        b2(data.begin() + cut2, data.end());
    std::vector<float> scaled = b0;
    for (auto& x : scaled) x *= 0.1f;  // a narrow first batch
    observer.observe(whole(scaled));
    observer.observe(whole(b1));
    observer.observe(whole(b2));
    std::vector<float> all = scaled;
    all.insert(all.end(), b1.begin(), b1.end());
    all.insert(all.end(), b2.begin(), b2.end());
    const float lo = *std::min_element(all.begin(), all.end()), hi = *std::max_element(all.begin(), all.end());
    CHECK(observer.min() == lo);
    CHECK(observer.max() == hi);

    const quant::Range chosen = observer.range(grid);
    const double minmax_mse = true_mse(all, {lo, hi}, grid);
    const double chosen_mse = true_mse(all, chosen, grid);
    INFO("grid [" << grid.qmin << ", " << grid.qmax << "]: chosen [" << chosen.min << ", " << chosen.max << "] mse "
                  << chosen_mse << ", minmax mse " << minmax_mse);
    CHECK(chosen_mse < 0.9 * minmax_mse);

    // Exhaustive over the same candidates: the histogram estimate picks the same range as a brute-force
    // argmin of the estimate, and that range's true MSE is within 1 % of the best true MSE.
    const auto candidates = observer.candidates();
    REQUIRE(candidates.size() == 32u * 32u);
    double best_estimate = std::numeric_limits<double>::infinity(), best_true = best_estimate;
    quant::Range argmin{};
    for (const auto& c : candidates) {
      const double e = observer.mse(c, grid);
      if (e < best_estimate) {
        best_estimate = e;
        argmin = c;
      }
      best_true = std::min(best_true, true_mse(all, c, grid));
    }
    CHECK(argmin.min == chosen.min);
    CHECK(argmin.max == chosen.max);
    CHECK(chosen_mse <= best_true * 1.01);
    CHECK(observer.mse(chosen, grid) <= observer.mse({lo, hi}, grid));
  }
}

TEST_CASE("MseOptimal: one-sided data, constants, reset and bad input") {
  quant::MseOptimal observer;
  CHECK(observer.range(quant::quint8::range()).max == 0.0f);
  const std::vector<float> constant(5, 2.0f);
  observer.observe(whole(constant));
  CHECK(observer.range(quant::quint8::range()).min == 2.0f);
  CHECK(observer.range(quant::quint8::range()).max == 2.0f);
  // After a constant batch the mass is kept: the candidates still start from the full range.
  auto relu = heavy_tailed(10000, 1.0f, 3);
  for (auto& x : relu) x = std::max(x, 0.0f);
  observer.observe(whole(relu));
  const auto r = observer.range(quant::quint8::range());
  CHECK(r.min == 0.0f);  // the lower side touches 0: it is not shrunk
  CHECK(r.max > 0.0f);
  CHECK(r.max <= observer.max());
  CHECK(observer.candidates().size() == 32u);

  observer.reset();
  CHECK(observer.empty());
  const std::vector<float> bad = {std::numeric_limits<float>::infinity()};
  CHECK_THROWS_AS(observer.observe(whole(bad)), value_error);
  CHECK(observer.empty());
  CHECK_THAT(test_support::message_of<value_error>([] { quant::MseOptimal(quant::MseOptions{7, 4}); }), Contains("got 7"));
}

// ---------------------------------------------------------------------------------------------------
// KMeansCodebook
// ---------------------------------------------------------------------------------------------------

namespace {

/// Brute-force 1-D Lloyd: assign every value to its nearest centroid (ties to the lower index, in
/// double), recompute means (empty clusters keep their centroid), until no assignment changes.
struct BruteForce {
  std::vector<float> centroids;
  int iterations = 0;
};

std::vector<int> brute_assign(const std::vector<float>& values, const std::vector<float>& c) {
  std::vector<int> a(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    int best = 0;
    for (std::size_t j = 1; j < c.size(); ++j) {
      const double d = std::abs(static_cast<double>(values[i]) - c[j]);
      const double b = std::abs(static_cast<double>(values[i]) - c[static_cast<std::size_t>(best)]);
      if (d < b) best = static_cast<int>(j);
    }
    a[i] = best;
  }
  return a;
}

BruteForce brute_lloyd(const std::vector<float>& values, std::vector<float> c, int max_iterations) {
  BruteForce out;
  auto a = brute_assign(values, c);
  for (int it = 0; it < max_iterations; ++it) {
    std::vector<double> sum(c.size(), 0.0);
    std::vector<index_t> count(c.size(), 0);
    for (std::size_t i = 0; i < values.size(); ++i) {
      sum[static_cast<std::size_t>(a[i])] += values[i];
      ++count[static_cast<std::size_t>(a[i])];
    }
    for (std::size_t j = 0; j < c.size(); ++j) {
      if (count[j] > 0) c[j] = static_cast<float>(sum[j] / static_cast<double>(count[j]));
    }
    ++out.iterations;
    const auto next = brute_assign(values, c);
    if (next == a) break;
    a = next;
  }
  out.centroids = c;
  return out;
}

double sse(const std::vector<float>& values, const std::vector<float>& c) {
  const auto a = brute_assign(values, c);
  double s = 0.0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double d = static_cast<double>(values[i]) - c[static_cast<std::size_t>(a[i])];
    s += d * d;
  }
  return s;
}

std::vector<float> linear(float lo, float hi, int k) {
  std::vector<float> c(static_cast<std::size_t>(k));
  for (int i = 0; i < k; ++i) {
    c[static_cast<std::size_t>(i)] =
        static_cast<float>(lo + (static_cast<double>(hi) - lo) * (k == 1 ? 0.5 : static_cast<double>(i) / (k - 1)));
  }
  return c;
}

}  // namespace

TEST_CASE("KMeansCodebook equals a brute-force Lloyd from the same linear init") {
  std::mt19937_64 rng(11);
  for (const index_t n : {index_t{40}, index_t{997}, index_t{5000}}) {  // 5000: the radix-sort path
    for (const int k : {1, 2, 4, 16}) {
      auto values = heavy_tailed(n, 0.3f, rng());
      const float lo = *std::min_element(values.begin(), values.end()), hi = *std::max_element(values.begin(), values.end());
      const quant::KMeansCodebook mapping(quant::KMeansOptions{k, 300, false});
      const auto result = mapping.run({lo, hi}, quant::qint8::range(), whole(values));
      const auto expected = brute_lloyd(values, linear(lo, hi, k), 300);
      INFO("n " << n << " k " << k);
      REQUIRE(result.centroids.size() == static_cast<std::size_t>(k));
      CHECK(result.converged);
      CHECK(result.iterations == expected.iterations);
      for (int j = 0; j < k; ++j) {
        CHECK(std::abs(result.centroids[static_cast<std::size_t>(j)] - expected.centroids[static_cast<std::size_t>(j)]) <= 1e-6);
      }
      CHECK(std::is_sorted(result.centroids.begin(), result.centroids.end()));
      // The Codebook of fit is the same, and every value's assigned centroid is its nearest one.
      const auto codebook = mapping.fit({lo, hi}, quant::qint8::range(), whole(values));
      CHECK(codebook.centroids == result.centroids);
      std::vector<std::uint16_t> idx(values.size());
      const Tensor<float, 1> t = [&] {
        Tensor<float, 1> x({n});
        std::copy(values.begin(), values.end(), x.data());
        return x;
      }();
      quant::assign(TensorView<const float, 1>(t.view()), codebook, std::span<std::uint16_t>(idx));
      const auto nearest = brute_assign(values, codebook.centroids);
      for (std::size_t i = 0; i < values.size(); ++i) CHECK(idx[i] == nearest[i]);
    }
  }
}

TEST_CASE("KMeansCodebook: SSE never increases from one Lloyd iteration to the next") {
  const auto values = heavy_tailed(3000, 1.0f, 5);
  const float lo = *std::min_element(values.begin(), values.end()), hi = *std::max_element(values.begin(), values.end());
  double previous = sse(values, linear(lo, hi, 8));
  int iterations = 0;
  for (int t = 1; t <= 200; ++t) {
    const auto r = quant::KMeansCodebook(quant::KMeansOptions{8, t, false}).run({lo, hi}, quant::qint8::range(), whole(values));
    const double s = sse(values, r.centroids);
    CHECK(s <= previous * (1.0 + 1e-12));
    previous = s;
    iterations = r.iterations;
    if (r.converged) break;
  }
  CHECK(iterations > 2);  // the test saw several iterations
  // max_iterations = 0 returns the linear init.
  const auto init = quant::KMeansCodebook(quant::KMeansOptions{8, 0, false}).run({lo, hi}, quant::qint8::range(), whole(values));
  CHECK(init.centroids == linear(lo, hi, 8));
  CHECK(init.iterations == 0);
}

TEST_CASE("KMeansCodebook: number of centroids, keep_zero, and the grid cap") {
  // 2-bit grid: 4 centroids at most, even if more are asked for.
  const auto values = heavy_tailed(500, 1.0f, 9);
  const float lo = *std::min_element(values.begin(), values.end()), hi = *std::max_element(values.begin(), values.end());
  CHECK(quant::KMeansCodebook(quant::KMeansOptions{16, 300, false}).fit({lo, hi}, quant::Bits<2>::range(), whole(values)).centroids.size() == 4u);
  CHECK(quant::KMeansCodebook().fit({lo, hi}, quant::quint4::range(), whole(values)).centroids.size() == 16u);

  // keep_zero: zeros get an exact 0.0 centroid, the rest is clustered without them.
  auto pruned = values;
  for (std::size_t i = 0; i < pruned.size(); i += 3) pruned[i] = (i % 2 == 0) ? 0.0f : -0.0f;
  std::vector<float> nonzero;
  for (const float x : pruned) {
    if (x != 0.0f) nonzero.push_back(x);
  }
  const float nlo = *std::min_element(nonzero.begin(), nonzero.end()), nhi = *std::max_element(nonzero.begin(), nonzero.end());
  const quant::KMeansCodebook mapping(quant::KMeansOptions{8, 300, true});
  const auto codebook = mapping.fit({nlo, nhi}, quant::qint8::range(), whole(pruned));
  REQUIRE(codebook.centroids.size() == 8u);
  CHECK(std::count(codebook.centroids.begin(), codebook.centroids.end(), 0.0f) == 1);
  CHECK(std::is_sorted(codebook.centroids.begin(), codebook.centroids.end()));
  auto expected = brute_lloyd(nonzero, linear(nlo, nhi, 7), 300).centroids;
  expected.insert(std::upper_bound(expected.begin(), expected.end(), 0.0f), 0.0f);
  for (std::size_t j = 0; j < 8; ++j) CHECK(std::abs(codebook.centroids[j] - expected[j]) <= 1e-6);
  // Assignment with keep_zero: zeros -> the 0.0 centroid, others never to it.
  Tensor<float, 1> t({static_cast<index_t>(pruned.size())});
  std::copy(pruned.begin(), pruned.end(), t.data());
  std::vector<std::uint16_t> idx(pruned.size());
  quant::assign(TensorView<const float, 1>(t.view()), codebook, std::span<std::uint16_t>(idx), true);
  const auto zero = std::find(codebook.centroids.begin(), codebook.centroids.end(), 0.0f) - codebook.centroids.begin();
  for (std::size_t i = 0; i < pruned.size(); ++i) CHECK((idx[i] == zero) == (pruned[i] == 0.0f));
}

TEST_CASE("KMeansCodebook and assign reject bad input, naming the counts") {
  const quant::KMeansCodebook mapping(quant::KMeansOptions{4, 300, false});
  const std::vector<float> few = {1.0f, 2.0f, 2.0f, 1.0f, 3.0f};
  CHECK_THAT(test_support::message_of<value_error>([&] { (void)mapping.fit({1, 3}, quant::qint8::range(), whole(few)); }),
             Contains("4 centroids") && Contains("3 distinct"));
  const std::vector<float> empty;
  CHECK_THAT(test_support::message_of<value_error>([&] { (void)mapping.fit({0, 1}, quant::qint8::range(), whole(empty)); }),
             Contains("got 0"));
  std::vector<float> bad = {1.0f, 2.0f, 3.0f, 4.0f, std::numeric_limits<float>::quiet_NaN()};
  CHECK_THROWS_AS(mapping.fit({1, 4}, quant::qint8::range(), whole(bad)), value_error);
  bad.back() = -std::numeric_limits<float>::infinity();
  CHECK_THROWS_AS(mapping.fit({1, 4}, quant::qint8::range(), whole(bad)), value_error);
  CHECK_THROWS_AS(mapping.fit({3, 1}, quant::qint8::range(), whole(few)), value_error);
  CHECK_THROWS_AS(quant::KMeansCodebook(quant::KMeansOptions{-1, 300, false}), value_error);
  // keep_zero counts the non-zero distinct values: {0, 1, 2} holds 2 of them, 4 centroids need 3.
  const std::vector<float> zeros = {0.0f, 1.0f, 2.0f, 0.0f};
  CHECK_THAT(test_support::message_of<value_error>([&] {
               (void)quant::KMeansCodebook(quant::KMeansOptions{4, 300, true}).fit({0, 2}, quant::qint8::range(), whole(zeros));
             }),
             Contains("3 centroids") && Contains("2 distinct non-zero"));
  CHECK(quant::KMeansCodebook(quant::KMeansOptions{3, 300, true}).fit({0, 2}, quant::qint8::range(), whole(zeros)).centroids ==
        std::vector<float>{0.0f, 1.0f, 2.0f});

  Tensor<float, 1> v({3});
  v.data()[0] = 1.0f;
  v.data()[1] = 2.0f;
  v.data()[2] = 3.0f;
  std::vector<std::uint16_t> idx(2);
  CHECK_THROWS_AS(quant::assign(TensorView<const float, 1>(v.view()), quant::Codebook{{0.0f, 1.0f}}, std::span<std::uint16_t>(idx)),
                  shape_error);
  idx.resize(3);
  CHECK_THROWS_AS(quant::assign(TensorView<const float, 1>(v.view()), quant::Codebook{{1.0f, 0.0f}}, std::span<std::uint16_t>(idx)),
                  value_error);
  CHECK_THROWS_AS(quant::assign(TensorView<const float, 1>(v.view()), quant::Codebook{{1.0f, 2.0f}}, std::span<std::uint16_t>(idx), true),
                  value_error);
  // Ties go to the lower centroid: 1.5 is halfway between 1 and 2.
  v.data()[0] = 1.5f;
  quant::assign(TensorView<const float, 1>(v.view()), quant::Codebook{{1.0f, 2.0f, 3.0f}}, std::span<std::uint16_t>(idx));
  CHECK(idx == std::vector<std::uint16_t>{0, 1, 2});
}

TEST_CASE("kmeans_1d on large inputs: radix sort and threads give the brute-force answer") {
  const auto values = heavy_tailed(300000, 0.01f, 21);
  const float lo = *std::min_element(values.begin(), values.end()), hi = *std::max_element(values.begin(), values.end());
  const auto r = quant::kmeans_1d(values, linear(lo, hi, 16), 20);
  const auto expected = brute_lloyd(values, linear(lo, hi, 16), 20);
  CHECK(r.iterations == expected.iterations);
  for (std::size_t j = 0; j < 16; ++j) CHECK(std::abs(r.centroids[j] - expected.centroids[j]) <= 1e-6);
}

// ---------------------------------------------------------------------------------------------------
// Training with a codebook
// ---------------------------------------------------------------------------------------------------

TEST_CASE("centroid_gradients sums member gradients, SharedWeights.step equals the hand-computed update") {
  std::vector<float> w = {0.9f, 0.0f, -1.1f, 1.2f, 0.0f, -0.8f, 2.9f, 3.1f};
  std::vector<float> g = {0.5f, 7.0f, -1.0f, 0.25f, -3.0f, 2.0f, 1.0f, -0.5f};
  const std::vector<std::uint16_t> idx_in = {2, 1, 0, 2, 1, 0, 3, 3};
  const auto sums = quant::centroid_gradients(std::span<const std::uint16_t>(idx_in),
                                              TensorView<const float, 1>(g.data(), Shape<1>{8}), 4);
  CHECK(sums == std::vector<float>{1.0f, 4.0f, 0.75f, 0.5f});
  CHECK_THROWS_AS(quant::centroid_gradients(std::span<const std::uint16_t>(idx_in), TensorView<const float, 1>(g.data(), Shape<1>{8}), 3),
                  value_error);
  CHECK_THROWS_AS(quant::centroid_gradients(std::span<const std::uint16_t>(idx_in), TensorView<const float, 1>(g.data(), Shape<1>{7}), 4),
                  shape_error);

  for (const bool keep_zero : {false, true}) {
    auto weights = w;
    auto grads = g;
    Parameter<float> p{"fc.weight", {2, 4}, TensorView<float, 1>(weights.data(), Shape<1>{8}),
                       TensorView<float, 1>(grads.data(), Shape<1>{8})};
    const quant::Codebook codebook{{-1.0f, 0.0f, 1.0f, 3.0f}};
    quant::SharedWeights<float> shared(p, codebook, keep_zero);
    CHECK(std::vector<std::uint16_t>(shared.indices().begin(), shared.indices().end()) == idx_in);
    CHECK(weights == std::vector<float>{1.0f, 0.0f, -1.0f, 1.0f, 0.0f, -1.0f, 3.0f, 3.0f});
    shared.step(0.1f);
    // centroid -= 0.1 · Σ member grads: -1 - 0.1·1 = -1.1; 0 - 0.1·4 = -0.4 (pinned: stays 0);
    // 1 - 0.1·0.75 = 0.925; 3 - 0.1·0.5 = 2.95.
    const float zero = keep_zero ? 0.0f : 0.0f - 0.1f * 4.0f;
    const std::vector<float> c = {-1.0f - 0.1f * 1.0f, zero, 1.0f - 0.1f * 0.75f, 3.0f - 0.1f * 0.5f};
    CHECK(std::vector<float>(shared.centroids().begin(), shared.centroids().end()) == c);
    CHECK(weights == std::vector<float>{c[2], c[1], c[0], c[2], c[1], c[0], c[3], c[3]});
    CHECK(shared.pinned_zero() == (keep_zero ? 1 : -1));
    if (keep_zero) CHECK(std::bit_cast<std::uint32_t>(weights[1]) == 0u);  // exactly +0
  }
}

TEST_CASE("SharedWeights fits its codebook from the parameter (double weights, pruned zeros stay 0)") {
  std::vector<double> weights(400), grads(400, 0.0);
  std::mt19937_64 rng(4);
  std::normal_distribution<double> normal(0.0, 0.1);
  for (std::size_t i = 0; i < weights.size(); ++i) weights[i] = i % 4 == 0 ? 0.0 : normal(rng);
  Parameter<double> p{"conv.weight", {400}, TensorView<double, 1>(weights.data(), Shape<1>{400}),
                      TensorView<double, 1>(grads.data(), Shape<1>{400})};
  quant::SharedWeights<double> shared(p, quant::KMeansCodebook(quant::KMeansOptions{0, 300, true}), quant::quint4::range());
  CHECK(shared.centroids().size() == 16u);
  std::mt19937_64 grng(5);
  for (int step = 0; step < 100; ++step) {
    for (auto& g : grads) g = normal(grng);
    shared.step(0.01);
  }
  for (std::size_t i = 0; i < weights.size(); i += 4) CHECK(weights[i] == 0.0);
  // Weights stay shared: at most 16 distinct values.
  auto distinct = weights;
  std::sort(distinct.begin(), distinct.end());
  CHECK(std::unique(distinct.begin(), distinct.end()) - distinct.begin() <= 16);
}
