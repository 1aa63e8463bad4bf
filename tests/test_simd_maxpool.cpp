// The vectorized 2×2 max-pool row kernels against their scalar twin, on every path this CPU runs: random
// rows of every width up to 40 (full vectors of 8 and 16, masked tails), ties, NaN and -0, with and
// without ReLU applied on load.
#include <minnow/simd/maxpool.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

using namespace minnow;

namespace {

// Rows r0, r1 of `width` values from few distinct values (many ties), with a NaN in some trials.
void random_rows(std::mt19937& rng, int trial, index_t width, std::vector<float>& r0, std::vector<float>& r1) {
  std::uniform_int_distribution<int> small(-3, 3);
  r0.resize(static_cast<std::size_t>(width));
  r1.resize(r0.size());
  for (auto* row : {&r0, &r1}) {
    for (auto& v : *row) v = static_cast<float>(small(rng));
    (*row)[static_cast<std::size_t>(rng() % static_cast<unsigned>(width))] = -0.0f;
    if (trial % 5 == 0) (*row)[static_cast<std::size_t>(rng() % static_cast<unsigned>(width))] = std::nanf("");
  }
}

bool same_value(float a, float b) { return a == b || (std::isnan(a) && std::isnan(b)); }

}  // namespace

TEST_CASE("maxpool_2x2_row: every path equals the scalar twin, values and winners") {
  for_each_arch([&](auto arch) {
   for (const bool relu : {false, true}) {
    std::mt19937 rng(9);
    for (index_t out_w = 1; out_w <= 40; ++out_w) {
      for (int trial = 0; trial < 20; ++trial) {
        const index_t width = 2 * out_w + (trial % 2);  // an odd width leaves a column unused
        std::vector<float> r0, r1;
        random_rows(rng, trial, width, r0, r1);
        // One spare output past the row: no path may write it.
        std::vector<float> out(static_cast<std::size_t>(out_w) + 1, -7.0f), expected(out.size(), -7.0f);
        std::vector<std::int32_t> arg(out.size(), -7), expected_arg(out.size(), -7);
        simd::maxpool_2x2_row(arch, r0.data(), r1.data(), out_w, out.data(), arg.data(), 100, static_cast<std::int32_t>(width), relu);
        simd::maxpool_2x2_row(simd::arch::scalar{}, r0.data(), r1.data(), out_w, expected.data(), expected_arg.data(), 100,
                              static_cast<std::int32_t>(width), relu);
        INFO(decltype(arch)::name << " out_w " << out_w << " trial " << trial << " relu " << relu);
        for (std::size_t j = 0; j < out.size(); ++j) {
          CHECK(test_support::raw(&out[j], 1) == test_support::raw(&expected[j], 1));
          CHECK(arg[j] == expected_arg[j]);
        }
      }
    }
   }
  });
}

TEST_CASE("maxpool_2x2_row and maxpool_2x2_plane run the chosen path: equal to the scalar twin") {
  std::mt19937 rng(21);
  const index_t out_h = 5, out_w = 13, width = 2 * out_w + 1;
  std::vector<float> plane(static_cast<std::size_t>(2 * out_h * width));
  for (index_t i = 0; i < out_h; ++i) {
    std::vector<float> r0, r1;
    random_rows(rng, static_cast<int>(i), width, r0, r1);
    std::copy(r0.begin(), r0.end(), plane.begin() + 2 * i * width);
    std::copy(r1.begin(), r1.end(), plane.begin() + (2 * i + 1) * width);
  }
  const auto size = static_cast<std::size_t>(out_h * out_w);
  std::vector<float> expected(size), rows(size), whole(size);
  std::vector<std::int32_t> expected_arg(size), rows_arg(size), whole_arg(size);
  for (index_t i = 0; i < out_h; ++i) {
    const float* r0 = plane.data() + 2 * i * width;
    const auto base = static_cast<std::int32_t>(2 * i * width);
    simd::maxpool_2x2_row(simd::arch::scalar{}, r0, r0 + width, out_w, expected.data() + i * out_w, expected_arg.data() + i * out_w,
                          base, static_cast<std::int32_t>(width));
    simd::maxpool_2x2_row(r0, r0 + width, out_w, rows.data() + i * out_w, rows_arg.data() + i * out_w, base,
                          static_cast<std::int32_t>(width));
  }
  simd::maxpool_2x2_plane(plane.data(), width, out_h, out_w, whole.data(), whole_arg.data());
  for (std::size_t j = 0; j < size; ++j) {
    CHECK(same_value(rows[j], expected[j]));
    CHECK(same_value(whole[j], expected[j]));
  }
  CHECK(rows_arg == expected_arg);
  CHECK(whole_arg == expected_arg);
  // With ReLU: the pool of ReLU(plane), which the scalar twin computes from a rectified copy.
  std::vector<float> rectified = plane;
  for (auto& v : rectified) v = v < 0.0f ? 0.0f : v;
  simd::maxpool_2x2_plane(simd::arch::scalar{}, rectified.data(), width, out_h, out_w, expected.data(), expected_arg.data());
  simd::maxpool_2x2_plane(plane.data(), width, out_h, out_w, whole.data(), whole_arg.data(), true);
  CHECK(test_support::raw(whole) == test_support::raw(expected));
  CHECK(whole_arg == expected_arg);
  // Other element types run the scalar twin.
  const double d0[2] = {1.0, 3.0}, d1[2] = {3.0, 2.0};
  double best = 0;
  std::int32_t at = -1;
  simd::maxpool_2x2_row(d0, d1, 1, &best, &at, 0, 2);
  CHECK(best == 3.0);
  CHECK(at == 1);
}

TEST_CASE("the scalar 2×2 kernel follows the row-major scan: first maximum, last NaN") {
  const float nan = std::nanf("");
  float r0[2] = {1.0f, 1.0f}, r1[2] = {1.0f, 1.0f}, out[1];
  std::int32_t arg[1];
  simd::maxpool_2x2_row(simd::arch::scalar{}, r0, r1, 1, out, arg, 0, 10);
  CHECK(arg[0] == 0);
  r1[0] = 2.0f;
  r1[1] = 2.0f;
  simd::maxpool_2x2_row(simd::arch::scalar{}, r0, r1, 1, out, arg, 0, 10);
  CHECK(arg[0] == 10);
  r0[1] = nan;
  r1[0] = nan;
  simd::maxpool_2x2_row(simd::arch::scalar{}, r0, r1, 1, out, arg, 0, 10);
  CHECK(std::isnan(out[0]));
  CHECK(arg[0] == 10);
  // With ReLU an all-negative window is a four-way tie at 0: the first wins.
  float n0[2] = {-3.0f, -1.0f}, n1[2] = {-2.0f, -0.5f};
  simd::maxpool_2x2_row(simd::arch::scalar{}, n0, n1, 1, out, arg, 0, 10, true);
  CHECK(out[0] == 0.0f);
  CHECK(arg[0] == 0);
}
