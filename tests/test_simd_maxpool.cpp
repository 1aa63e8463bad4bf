// The vectorized 2×2 max-pool row kernel against its scalar twin: random rows of every width up to 40
// (full vectors, masked tails), ties, and NaN.
#include <minnow/simd/maxpool.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

using namespace minnow;

TEST_CASE("maxpool_2x2_row equals its scalar reference") {
  std::mt19937 rng(9);
  std::uniform_int_distribution<int> small(-3, 3);  // few distinct values: many ties
  for (index_t out_w = 1; out_w <= 40; ++out_w) {
    for (int trial = 0; trial < 20; ++trial) {
      const index_t width = 2 * out_w + (trial % 2);  // an odd width leaves a column unused
      std::vector<float> r0(static_cast<std::size_t>(width)), r1(r0.size());
      for (auto* row : {&r0, &r1}) {
        for (auto& v : *row) v = static_cast<float>(small(rng));
        if (trial % 5 == 0) (*row)[static_cast<std::size_t>(rng() % static_cast<unsigned>(width))] = std::nanf("");
      }
      std::vector<float> out(static_cast<std::size_t>(out_w)), expected(out.size());
      std::vector<std::int32_t> arg(out.size()), expected_arg(out.size());
      simd::maxpool_2x2_row(r0.data(), r1.data(), out_w, out.data(), arg.data(), 100, static_cast<std::int32_t>(width));
      simd::maxpool_2x2_row_scalar(r0.data(), r1.data(), out_w, expected.data(), expected_arg.data(), 100,
                                   static_cast<std::int32_t>(width));
      INFO("out_w " << out_w << " trial " << trial);
      for (std::size_t j = 0; j < out.size(); ++j) {
        CHECK((out[j] == expected[j] || (std::isnan(out[j]) && std::isnan(expected[j]))));
        CHECK(arg[j] == expected_arg[j]);
      }
    }
  }
}

TEST_CASE("the scalar 2×2 kernel follows the row-major scan: first maximum, last NaN") {
  const float nan = std::nanf("");
  float r0[2] = {1.0f, 1.0f}, r1[2] = {1.0f, 1.0f}, out[1];
  std::int32_t arg[1];
  simd::maxpool_2x2_row_scalar(r0, r1, 1, out, arg, 0, 10);
  CHECK(arg[0] == 0);
  r1[0] = 2.0f;
  r1[1] = 2.0f;
  simd::maxpool_2x2_row_scalar(r0, r1, 1, out, arg, 0, 10);
  CHECK(arg[0] == 10);
  r0[1] = nan;
  r1[0] = nan;
  simd::maxpool_2x2_row_scalar(r0, r1, 1, out, arg, 0, 10);
  CHECK(std::isnan(out[0]));
  CHECK(arg[0] == 10);
}
