// minnow::infer sparse formats and SparseLinear: every format's batch-1 and batch-N kernels equal a dense
// product on the masked weights (≤ 1e-5 relative) on odd shapes (columns not a multiple of 16, 1 row, 1
// column), batch 1 to 70 (tile tails); bytes come from the buffers; bad input throws typed errors.
#include "test_support.hpp"

#include <minnow/infer/sparse.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <tuple>

using namespace minnow;
using Catch::Matchers::Contains;

namespace {

struct Problem {
  Tensor<float, 2> w, mask, x;
  Tensor<float, 1> bias;
};

Problem make_problem(index_t rows, index_t cols, index_t batch, double sparsity, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::bernoulli_distribution keep(1.0 - sparsity);
  Problem p{Tensor<float, 2>({rows, cols}), Tensor<float, 2>({rows, cols}), Tensor<float, 2>({batch, cols}), Tensor<float, 1>({rows})};
  for (index_t i = 0; i < p.w.size(); ++i) {
    p.w.data()[i] = u(rng);
    p.mask.data()[i] = keep(rng) ? 1.0f : 0.0f;
  }
  for (index_t i = 0; i < p.x.size(); ++i) p.x.data()[i] = u(rng);
  for (index_t i = 0; i < p.bias.size(); ++i) p.bias.data()[i] = u(rng);
  return p;
}

// Dense oracle on the masked weights, in double; also returns Σ|w·x| + |b| per output for the tolerance.
std::pair<Tensor<double, 2>, Tensor<double, 2>> dense_masked(const Problem& p) {
  const index_t n = p.x.dim(0), rows = p.w.dim(0), cols = p.w.dim(1);
  Tensor<double, 2> y({n, rows}), scale({n, rows});
  for (index_t s = 0; s < n; ++s) {
    for (index_t r = 0; r < rows; ++r) {
      double sum = p.bias(r), mag = std::abs(p.bias(r));
      for (index_t c = 0; c < cols; ++c) {
        const double term = static_cast<double>(p.mask(r, c) * p.w(r, c)) * p.x(s, c);
        sum += term;
        mag += std::abs(term);
      }
      y(s, r) = sum;
      scale(s, r) = std::max(mag, 1e-30);
    }
  }
  return {std::move(y), std::move(scale)};
}

template <class M>
void check_format(index_t rows, index_t cols, index_t batch, double sparsity, int threads) {
  CAPTURE(rows, cols, batch, sparsity, threads);
  minnow::set_threads(threads);
  const auto p = make_problem(rows, cols, batch, sparsity, static_cast<std::uint64_t>(rows * 1000 + cols + batch));
  const auto [expected, scale] = dense_masked(p);
  infer::SparseLinear<M> layer(M(p.w.view(), p.mask.view()), p.bias.view());
  CHECK(layer.in_features() == cols);
  CHECK(layer.out_features() == rows);
  Tensor<float, 2> y({batch, rows}, std::nanf(""));
  layer.forward(p.x.view(), y.view());
  Tensor<float, 2> reference({batch, rows});
  infer::multiply_reference(layer.weights(), p.x.view(), p.bias.view(), reference.view());
  double worst = 0.0, worst_reference = 0.0;
  for (index_t s = 0; s < batch; ++s) {
    for (index_t r = 0; r < rows; ++r) {
      worst = std::max(worst, std::abs(y(s, r) - expected(s, r)) / scale(s, r));
      worst_reference = std::max(worst_reference, std::abs(reference(s, r) - expected(s, r)) / scale(s, r));
    }
  }
  CHECK(worst <= 1e-5);  // NaN (an output never written) fails too
  CHECK(worst_reference <= 1e-6);
  minnow::set_threads(2);
}

}  // namespace

TEMPLATE_TEST_CASE("sparse kernels equal the dense product on the masked weights", "", infer::CsrMatrix,
                   infer::BitmapMatrix, infer::BlockedMatrix) {
  // Columns: 1, below a word, a word and one, several words with a tail, a multiple of 32.
  for (const index_t cols : {1, 7, 17, 100, 160}) {
    for (const index_t rows : {1, 5, 33}) {
      for (const index_t batch : {1, 2, 3, 4, 17, 64, 70}) {
        for (const double sparsity : {0.0, 0.5, 0.9, 1.0}) check_format<TestType>(rows, cols, batch, sparsity, 1);
      }
    }
  }
}

TEMPLATE_TEST_CASE("sparse kernels split over threads equal the dense product (fc1-like shape)", "", infer::CsrMatrix,
                   infer::BitmapMatrix, infer::BlockedMatrix) {
  for (const index_t batch : {1, 64}) {
    check_format<TestType>(301, 1570, batch, 0.9, 2);
    check_format<TestType>(301, 1570, batch, 0.5, 2);
  }
}

TEST_CASE("sparse formats count bytes from their buffers") {
  const auto p = make_problem(10, 40, 1, 0.75, 3);
  index_t kept = 0;
  for (index_t i = 0; i < p.mask.size(); ++i) kept += p.mask.data()[i] != 0.0f ? 1 : 0;
  const auto k = static_cast<std::size_t>(kept);
  const infer::CsrMatrix csr(p.w.view(), p.mask.view());
  CHECK(csr.nnz() == kept);
  CHECK(csr.bytes() == k * 8 + 11 * 4);
  const infer::BitmapMatrix bitmap(p.w.view(), p.mask.view());
  CHECK(bitmap.nnz() == kept);
  CHECK(bitmap.bytes() == (k + 16) * 4 + 10 * 3 * 2 + 11 * 4);  // 3 words per row of 40 columns, 16 floats slack
  const infer::BlockedMatrix blocked(p.w.view(), p.mask.view());
  CHECK(blocked.bytes() == static_cast<std::size_t>(blocked.stored()) * 4 + static_cast<std::size_t>(blocked.stored() / 16) * 2 + 11 * 4);
  const infer::SparseLinear<infer::BitmapMatrix> layer(infer::BitmapMatrix(p.w.view(), p.mask.view()), p.bias.view());
  CHECK(layer.bytes() == bitmap.bytes() + 10 * 4);
}

TEST_CASE("crossover rule: dense below the measured crossover, CSR only for very sparse batch-1 layers") {
  using infer::WeightFormat;
  CHECK(infer::choose_format(0.0, 1) == WeightFormat::dense);
  CHECK(infer::choose_format(0.5, 64) == WeightFormat::dense);
  CHECK(infer::choose_format(0.75, 1) == WeightFormat::bitmap);
  CHECK(infer::choose_format(0.9, 1) == WeightFormat::csr);
  CHECK(infer::choose_format(0.9, 64) == WeightFormat::bitmap);
  CHECK(infer::choose_format(0.95, 3) == WeightFormat::csr);
  CHECK(infer::choose_format(0.7, 1, {.batch1_sparse = 0.8}) == WeightFormat::dense);
}

TEMPLATE_TEST_CASE("sparse bad input throws typed errors naming the shapes", "", infer::CsrMatrix, infer::BitmapMatrix,
                   infer::BlockedMatrix) {
  const auto p = make_problem(4, 6, 2, 0.5, 1);
  Tensor<float, 2> wrong({6, 4}, 1.0f);
  CHECK_THAT(test_support::message_of<shape_error>([&] { TestType m(p.w.view(), wrong.view()); }),
             Contains("[6, 4]") && Contains("[4, 6]"));
  Tensor<float, 2> half({4, 6}, 0.5f);
  CHECK_THAT(test_support::message_of<value_error>([&] { TestType m(p.w.view(), half.view()); }), Contains("0.5"));
  Tensor<float, 1> short_bias({3});
  CHECK_THAT(test_support::message_of<shape_error>(
                 [&] { infer::SparseLinear<TestType> l(TestType(p.w.view(), p.mask.view()), short_bias.view()); }),
             Contains("3") && Contains("4"));
  infer::SparseLinear<TestType> layer(TestType(p.w.view(), p.mask.view()), p.bias.view());
  Tensor<float, 2> x({2, 5}), y({2, 4});
  CHECK_THAT(test_support::message_of<shape_error>([&] { layer.forward(x.view(), y.view()); }), Contains("[2, 5]"));
  Tensor<float, 2> x_ok({2, 6}), y_bad({3, 4});
  CHECK_THAT(test_support::message_of<shape_error>([&] { layer.forward(x_ok.view(), y_bad.view()); }), Contains("[3, 4]"));
}
