// minnow::infer sparse formats and SparseLinear: every format's batch-1 and batch-N kernels equal a dense
// product on the masked weights (≤ 1e-5 relative) on odd shapes (columns not a multiple of 16, 1 row, 1
// column), batch 1 to 70 (tile tails); every kernel path the CPU runs (scalar, AVX2, AVX-512) equals the
// scalar twin, bit for bit where the order of operations is the same; bytes come from the buffers; bad
// input throws typed errors.
#include "test_support.hpp"

#include <minnow/infer/sparse.hpp>
#include <minnow/infer/sparse_conv2d.hpp>
#include <minnow/infer/sparse_int8.hpp>
#include <minnow/nn/conv2d.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

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
                   infer::BitmapMatrix, infer::SlicedMatrix) {
  // Columns: 1, below a word, a word and one, several words with a tail, a multiple of 32, whole
  // 64-column windows and one past them.
  for (const index_t cols : {1, 7, 17, 100, 160, 192, 193}) {
    for (const index_t rows : {1, 5, 33}) {
      for (const index_t batch : {1, 2, 3, 4, 17, 64, 70}) {
        for (const double sparsity : {0.0, 0.5, 0.9, 1.0}) check_format<TestType>(rows, cols, batch, sparsity, 1);
      }
    }
  }
}

TEMPLATE_TEST_CASE("sparse kernels split over threads equal the dense product (fc1-like shape)", "", infer::CsrMatrix,
                   infer::BitmapMatrix, infer::SlicedMatrix) {
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
  const infer::SparseLinear<infer::BitmapMatrix> layer(infer::BitmapMatrix(p.w.view(), p.mask.view()), p.bias.view());
  CHECK(layer.bytes() == bitmap.bytes() + 10 * 4);
}

TEST_CASE("crossover rule: dense below the measured crossover, sliced at batch 1, bitmap / CSR batched") {
  using infer::WeightFormat;
  CHECK(infer::choose_format(0.0, 1) == WeightFormat::dense);
  CHECK(infer::choose_format(0.4, 1) == WeightFormat::dense);
  CHECK(infer::choose_format(0.5, 64) == WeightFormat::dense);
  CHECK(infer::choose_format(0.5, 1) == WeightFormat::sliced);
  CHECK(infer::choose_format(0.9, 1) == WeightFormat::sliced);
  CHECK(infer::choose_format(0.95, 3) == WeightFormat::sliced);
  CHECK(infer::choose_format(0.75, 64) == WeightFormat::bitmap);
  CHECK(infer::choose_format(0.9, 64) == WeightFormat::csr);
  CHECK(infer::choose_format(0.7, 1, {.batch1_sparse = 0.8}) == WeightFormat::dense);
}

TEMPLATE_TEST_CASE("sparse bad input throws typed errors naming the shapes", "", infer::CsrMatrix, infer::BitmapMatrix,
                   infer::SlicedMatrix) {
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

// ---- SparseConv2d ----

namespace {

// Conv weights, a random 0/1 mask of `sparsity` and an input; the dense reference is nn::Conv2d with the
// masked weights copied in.
void check_conv(index_t batch, index_t in, index_t out, index_t kernel, index_t stride, index_t padding, index_t height,
                index_t width, double sparsity, int threads) {
  CAPTURE(batch, in, out, kernel, stride, padding, height, width, sparsity, threads);
  minnow::set_threads(threads);
  std::mt19937_64 rng(static_cast<std::uint64_t>(batch * 7919 + in * 131 + out * 17 + kernel * 5 + stride * 3 + padding + height));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::bernoulli_distribution keep(1.0 - sparsity);
  nn::Conv2d<float> dense(in, out, kernel, stride, padding);
  Tensor<float, 4> w({out, in, kernel, kernel}), mask({out, in, kernel, kernel}), x({batch, in, height, width});
  Tensor<float, 1> bias({out});
  for (index_t i = 0; i < w.size(); ++i) {
    w.data()[i] = u(rng);
    mask.data()[i] = keep(rng) ? 1.0f : 0.0f;
    dense.weight().data()[i] = w.data()[i] * mask.data()[i];
  }
  for (index_t i = 0; i < out; ++i) dense.bias().data()[i] = bias.data()[i] = u(rng);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = u(rng);
  const auto expected = dense.forward(x.view(), nn::Mode::eval);

  infer::SparseConv2d<> conv(w.view(), mask.view(), bias.view(), stride, padding);
  REQUIRE(conv.output_shape(x.shape()) == expected.shape());
  Tensor<float, 4> y(expected.shape(), std::nanf(""));
  conv.forward(x.view(), y.view());
  double worst = 0.0;
  for (index_t i = 0; i < y.size(); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(y.data()[i]) - expected.data()[i]) / (1.0 + std::abs(expected.data()[i])));
  }
  CHECK(worst <= 1e-5);  // NaN (an output never written) fails too
  // A second call reuses the buffers and must give the same result.
  Tensor<float, 4> again(expected.shape(), std::nanf(""));
  conv.forward(x.view(), again.view());
  CHECK(std::equal(y.data(), y.data() + y.size(), again.data()));
  minnow::set_threads(2);
}

}  // namespace

TEST_CASE("SparseConv2d equals nn::Conv2d with the masked weights") {
  for (const int threads : {1, 2}) {
    for (const double sparsity : {0.0, 0.5, 0.9, 1.0}) {
      check_conv(1, 3, 5, 3, 1, 1, 7, 9, sparsity, threads);     // odd channels, pixel run below a vector
      check_conv(2, 5, 7, 3, 2, 0, 11, 10, sparsity, threads);   // stride 2, no padding
      check_conv(3, 1, 4, 5, 1, 2, 8, 8, sparsity, threads);     // one input channel
      check_conv(1, 4, 3, 1, 1, 0, 13, 13, sparsity, threads);   // 1×1 kernel, 169 pixels: two tiles with a tail
      check_conv(5, 6, 33, 3, 2, 1, 14, 14, sparsity, threads);  // more samples than threads
    }
  }
  check_conv(1, 64, 128, 3, 1, 1, 14, 14, 0.9, 2);  // the teacher's conv2
  check_conv(4, 64, 128, 3, 1, 1, 14, 14, 0.75, 2);
}

TEST_CASE("SparseConv2d bad input throws typed errors naming the shapes") {
  Tensor<float, 4> w({4, 3, 3, 3}, 1.0f), mask({4, 3, 3, 3}, 1.0f), wrong_mask({4, 3, 3, 2}, 1.0f);
  Tensor<float, 1> bias({4}), short_bias({3});
  CHECK_THAT(test_support::message_of<shape_error>([&] { infer::SparseConv2d<> c(w.view(), wrong_mask.view(), bias.view()); }),
             Contains("[4, 3, 3, 2]") && Contains("[4, 3, 3, 3]"));
  Tensor<float, 4> half({4, 3, 3, 3}, 0.5f);
  CHECK_THAT(test_support::message_of<value_error>([&] { infer::SparseConv2d<> c(w.view(), half.view(), bias.view()); }),
             Contains("0.5"));
  CHECK_THAT(test_support::message_of<shape_error>([&] { infer::SparseConv2d<> c(w.view(), mask.view(), short_bias.view()); }),
             Contains("3 entries") && Contains("[4, 3, 3, 3]"));
  CHECK_THROWS_AS(infer::SparseConv2d<>(w.view(), mask.view(), bias.view(), 0, 0), value_error);
  infer::SparseConv2d<> conv(w.view(), mask.view(), bias.view(), 1, 1);
  Tensor<float, 4> x_channels({2, 2, 5, 5}), y({2, 4, 5, 5});
  CHECK_THAT(test_support::message_of<shape_error>([&] { conv.forward(x_channels.view(), y.view()); }), Contains("[2, 2, 5, 5]"));
  infer::SparseConv2d<> unpadded(w.view(), mask.view(), bias.view(), 1, 0);
  Tensor<float, 4> tiny({1, 3, 2, 5});
  CHECK_THAT(test_support::message_of<shape_error>([&] { (void)unpadded.output_shape(tiny.shape()); }), Contains("[1, 3, 2, 5]"));
  Tensor<float, 4> x({2, 3, 5, 5}), y_bad({2, 4, 4, 4});
  CHECK_THAT(test_support::message_of<shape_error>([&] { conv.forward(x.view(), y_bad.view()); }),
             Contains("[2, 4, 4, 4]") && Contains("[2, 4, 5, 5]"));
}

TEST_CASE("conv crossover rule: dense below the measured crossover") {
  CHECK(infer::choose_conv_format(0.0, 1) == infer::ConvFormat::dense);
  CHECK(infer::choose_conv_format(0.4, 64) == infer::ConvFormat::dense);
  CHECK(infer::choose_conv_format(0.5, 1) == infer::ConvFormat::sparse);
  CHECK(infer::choose_conv_format(0.95, 1) == infer::ConvFormat::sparse);
  CHECK(infer::choose_conv_format(0.95, 64) == infer::ConvFormat::sparse);
  CHECK(infer::choose_conv_format(0.95, 64, {.batch1 = 0.5, .batched = 0.99}) == infer::ConvFormat::dense);
}

// ---- BitmapInt8Matrix ----

TEST_CASE("BitmapInt8Matrix stores rint(w / scale) clamped to int8 and multiplies like the dequantized dense matrix") {
  for (const int threads : {1, 2}) {
    for (const index_t cols : {1, 7, 17, 100, 1570}) {
      for (const index_t rows : {1, 5, 33}) {
        for (const index_t batch : {1, 3, 4, 70}) {
          for (const double sparsity : {0.0, 0.5, 0.9, 1.0}) {
            CAPTURE(threads, cols, rows, batch, sparsity);
            minnow::set_threads(threads);
            const auto p = make_problem(rows, cols, batch, sparsity, static_cast<std::uint64_t>(rows * 31 + cols + batch));
            auto params = infer::BitmapInt8Matrix::symmetric_scales(p.w.view(), p.mask.view());
            params[0].scale *= 0.5f;  // row 0 saturates: clamping must happen
            const infer::BitmapInt8Matrix m(p.w.view(), p.mask.view(), params);
            // The stored integers, against the formula; the dequantized dense matrix for the oracle.
            Tensor<float, 2> dequantized({rows, cols}, 0.0f);
            bool values_ok = true;
            index_t kept = 0;
            for (index_t r = 0; r < rows; ++r) {
              m.for_each_quantized_in_row(r, [&](index_t c, std::int32_t q) {
                const float expected = std::clamp(std::nearbyint(p.w(r, c) / params[static_cast<std::size_t>(r)].scale), -128.0f, 127.0f);
                values_ok = values_ok && p.mask(r, c) == 1.0f && static_cast<float>(q) == expected;
                dequantized(r, c) = static_cast<float>(q) * m.scale(r);
                ++kept;
              });
            }
            CHECK(values_ok);
            index_t mask_kept = 0;
            for (index_t i = 0; i < p.mask.size(); ++i) mask_kept += p.mask.data()[i] != 0.0f ? 1 : 0;
            CHECK(kept == mask_kept);
            CHECK(m.nnz() == kept);
            Problem dq{dequantized.clone(), Tensor<float, 2>({rows, cols}, 1.0f), p.x.clone(), p.bias.clone()};
            const auto [expected, scale] = dense_masked(dq);
            infer::SparseLinear<infer::BitmapInt8Matrix> layer(m, p.bias.view());
            Tensor<float, 2> y({batch, rows}, std::nanf(""));
            layer.forward(p.x.view(), y.view());
            double worst = 0.0;
            for (index_t s = 0; s < batch; ++s) {
              for (index_t r = 0; r < rows; ++r) worst = std::max(worst, std::abs(y(s, r) - expected(s, r)) / scale(s, r));
            }
            CHECK(worst <= 1e-5);
          }
        }
      }
    }
  }
  minnow::set_threads(2);
}

TEST_CASE("BitmapInt8Matrix counts bytes from its buffers, fc1 at 90 % is under 0.06× of fp32") {
  const auto p = make_problem(10, 40, 1, 0.75, 3);
  index_t kept = 0;
  for (index_t i = 0; i < p.mask.size(); ++i) kept += p.mask.data()[i] != 0.0f ? 1 : 0;
  const infer::BitmapInt8Matrix m(p.w.view(), p.mask.view(), infer::BitmapInt8Matrix::symmetric_scales(p.w.view(), p.mask.view()));
  CHECK(m.bytes() == static_cast<std::size_t>(kept + 16) + 10 * 3 * 2 + 10 * 4 + 11 * 4);

  // The teacher's fc1 shape with exactly 90 % of the weights pruned.
  const index_t rows = 1000, cols = 6272;
  Tensor<float, 2> w({rows, cols}), mask({rows, cols}, 0.0f);
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> u(-0.01f, 0.01f);
  for (index_t i = 0; i < w.size(); ++i) w.data()[i] = u(rng);
  std::vector<index_t> order(static_cast<std::size_t>(w.size()));
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<index_t>(i);
  std::shuffle(order.begin(), order.end(), rng);
  for (std::size_t i = 0; i < order.size() / 10; ++i) mask.data()[order[i]] = 1.0f;
  const infer::BitmapInt8Matrix fc1(w.view(), mask.view(), infer::BitmapInt8Matrix::symmetric_scales(w.view(), mask.view()));
  const double ratio = static_cast<double>(fc1.bytes()) / static_cast<double>(rows * cols * 4);
  CAPTURE(fc1.bytes(), ratio);
  CHECK(fc1.bytes() == 627200 + 16 + 1000 * 392 * 2 + 1000 * 4 + 1001 * 4);
  CHECK(ratio <= 0.06);
}

TEST_CASE("BitmapInt8Matrix bad input throws typed errors naming shapes and values") {
  const auto p = make_problem(4, 6, 2, 0.5, 1);
  auto params = infer::BitmapInt8Matrix::symmetric_scales(p.w.view(), p.mask.view());
  Tensor<float, 2> wrong({6, 4}, 1.0f);
  CHECK_THAT(test_support::message_of<shape_error>([&] { infer::BitmapInt8Matrix m(p.w.view(), wrong.view(), params); }),
             Contains("[6, 4]") && Contains("[4, 6]"));
  const std::vector<quant::AffineParams> three(3);
  CHECK_THAT(test_support::message_of<shape_error>([&] { infer::BitmapInt8Matrix m(p.w.view(), p.mask.view(), three); }),
             Contains("3 scales") && Contains("[4, 6]"));
  auto shifted = params;
  shifted[2].zero_point = 5;
  CHECK_THAT(test_support::message_of<value_error>([&] { infer::BitmapInt8Matrix m(p.w.view(), p.mask.view(), shifted); }),
             Contains("row 2") && Contains("zero point 5"));
  auto negative = params;
  negative[1].scale = -0.5f;
  CHECK_THAT(test_support::message_of<value_error>([&] { infer::BitmapInt8Matrix m(p.w.view(), p.mask.view(), negative); }),
             Contains("row 1") && Contains("-0.5"));
}

// ---- every kernel path against the scalar twin ----

namespace {

template <class M>
M build_format(const Problem& p) {
  if constexpr (std::is_same_v<M, infer::BitmapInt8Matrix>) {
    return M(p.w.view(), p.mask.view(), M::symmetric_scales(p.w.view(), p.mask.view()));
  } else {
    return M(p.w.view(), p.mask.view());
  }
}

// The sliced kernels keep the scalar twin's order of operations (lanes are rows); the CSR and bitmap
// kernels sum a row in vector lanes, so they differ from the scalar loop by rounding only.
template <class M>
constexpr bool kExactGemv = std::is_same_v<M, infer::SlicedMatrix>;

// Σ |W[r, c]·x[c]| per row: the scale of the rounding of any summation order.
template <class M>
std::vector<double> magnitudes(const M& m, const float* x) {
  std::vector<double> mag(static_cast<std::size_t>(m.rows()), 0.0);
  for (index_t r = 0; r < m.rows(); ++r) {
    m.for_each_in_row(r, [&](index_t c, float v) { mag[static_cast<std::size_t>(r)] += std::abs(static_cast<double>(v) * x[c]); });
  }
  return mag;
}

template <class M>
void check_gemv_paths(index_t rows, index_t cols, double sparsity) {
  CAPTURE(rows, cols, sparsity);
  const auto p = make_problem(rows, cols, 1, sparsity, static_cast<std::uint64_t>(rows * 977 + cols));
  const M m = build_format<M>(p);
  const float* x = p.x.data();
  const auto mag = magnitudes(m, x);
  // Rows [begin, end) only: a range starting and ending inside a slice of 16, and the whole matrix.
  const index_t inner = std::min<index_t>(3, rows - 1);
  for (const auto& range : {std::pair<index_t, index_t>{0, rows}, {inner, std::max(inner + 1, rows - 2)}}) {
    const index_t begin = range.first, end = range.second;  // not a structured binding: clang 14 cannot capture one
    CAPTURE(begin, end);
    std::vector<float> expected(static_cast<std::size_t>(rows), std::nanf(""));
    m.template gemv<simd::arch::scalar>(x, expected.data(), begin, end);
    for_each_arch([&](auto arch) {
      using Arch = decltype(arch);
      CAPTURE(Arch::name);
      std::vector<float> y(static_cast<std::size_t>(rows), std::nanf(""));
      m.template gemv<Arch>(x, y.data(), begin, end);
      for (index_t r = 0; r < rows; ++r) {
        const auto i = static_cast<std::size_t>(r);
        if (r < begin || r >= end) {
          REQUIRE(std::isnan(y[i]));  // rows outside the range are not written
        } else if (kExactGemv<M>) {
          REQUIRE(test_support::raw(&y[i], 1) == test_support::raw(&expected[i], 1));
        } else {
          REQUIRE(std::abs(static_cast<double>(y[i]) - expected[i]) <= 1e-5 * mag[i] + 1e-30);
        }
      }
    });
  }
}

}  // namespace

TEMPLATE_TEST_CASE("every sparse batch-1 path equals the scalar twin on every tail", "[infer][sparse][arch]", infer::CsrMatrix,
                   infer::BitmapMatrix, infer::SlicedMatrix, infer::BitmapInt8Matrix) {
  // Columns around 8 (AVX2 bytes of a word), 16 (words, AVX-512 vectors), 32 (the two-word and
  // two-gather steps), 64 (sliced windows and the four-word step); rows around a slice of 16.
  for (const index_t cols : {1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 48, 63, 64, 65, 100, 193}) {
    for (const index_t rows : {1, 5, 16, 17, 33}) {
      for (const double sparsity : {0.0, 0.5, 0.9, 1.0}) check_gemv_paths<TestType>(rows, cols, sparsity);
    }
  }
}

TEST_CASE("every bitmap row-decode path equals the scalar twin", "[infer][sparse][arch]") {
  for (const index_t cols : {1, 7, 8, 9, 16, 17, 33, 100}) {
    for (const double sparsity : {0.0, 0.3, 0.9, 1.0}) {
      CAPTURE(cols, sparsity);
      const auto p = make_problem(9, cols, 1, sparsity, static_cast<std::uint64_t>(cols * 13));
      const infer::BitmapMatrix m(p.w.view(), p.mask.view());
      const auto room = static_cast<std::size_t>(cols + 16);
      for (index_t r = 0; r < m.rows(); ++r) {
        std::vector<std::int32_t> expected(room, -1);
        const index_t n = m.decode_row<simd::arch::scalar>(r, expected.data());
        index_t kept = 0;
        for (index_t c = 0; c < cols; ++c) {
          if (p.mask(r, c) != 0.0f) REQUIRE(expected[static_cast<std::size_t>(kept++)] == c);
        }
        REQUIRE(n == kept);
        for_each_arch([&](auto arch) {
          CAPTURE(decltype(arch)::name, r);
          std::vector<std::int32_t> columns(room, -1);
          REQUIRE(m.decode_row<decltype(arch)>(r, columns.data()) == n);
          REQUIRE(std::equal(columns.begin(), columns.begin() + n, expected.begin()));
        });
      }
    }
  }
}

namespace {

// SparseLinear::forward on every path against the scalar path: the batch-N kernel keeps each output's order
// of operations on every path (bit for bit), as do the sliced batch-1 kernels; CSR / bitmap batch 1 is
// within the rounding of a different summation order.
template <class M>
void check_linear_paths(index_t rows, index_t cols, index_t batch, double sparsity, int threads) {
  CAPTURE(rows, cols, batch, sparsity, threads);
  minnow::set_threads(threads);
  const auto p = make_problem(rows, cols, batch, sparsity, static_cast<std::uint64_t>(rows * 7 + cols * 3 + batch));
  infer::SparseLinear<M> layer(build_format<M>(p), p.bias.view());
  Tensor<float, 2> expected({batch, rows}, std::nanf(""));
  layer.template forward<simd::arch::scalar>(p.x.view(), expected.view());
  const bool exact = batch >= infer::SparseLinear<M>::kSmallBatch || kExactGemv<M>;
  std::vector<std::vector<double>> mag;
  for (index_t s = 0; s < batch; ++s) mag.push_back(magnitudes(layer.weights(), p.x.data() + s * cols));
  for_each_arch([&](auto arch) {
    CAPTURE(decltype(arch)::name);
    Tensor<float, 2> y({batch, rows}, std::nanf(""));
    layer.template forward<decltype(arch)>(p.x.view(), y.view());
    if (exact) {
      REQUIRE(test_support::raw(y.data(), y.size()) == test_support::raw(expected.data(), expected.size()));
    } else {
      for (index_t s = 0; s < batch; ++s) {
        for (index_t r = 0; r < rows; ++r) {
          REQUIRE(std::abs(static_cast<double>(y(s, r)) - expected(s, r)) <= 1e-5 * (mag[static_cast<std::size_t>(s)][static_cast<std::size_t>(r)] + std::abs(p.bias(r))));
        }
      }
    }
  });
  minnow::set_threads(2);
}

}  // namespace

TEMPLATE_TEST_CASE("every SparseLinear path equals the scalar path (bit for bit where the order is the same)",
                   "[infer][sparse][arch]", infer::CsrMatrix, infer::BitmapMatrix, infer::SlicedMatrix,
                   infer::BitmapInt8Matrix) {
  // Batches around the sample vectors (8, 16) and register blocks (96 on AVX2, 256 on AVX-512).
  for (const index_t batch : {1, 3, 4, 5, 9, 16, 17, 64, 70, 97, 257}) {
    for (const index_t cols : {1, 17, 100}) {
      for (const double sparsity : {0.0, 0.5, 0.9}) check_linear_paths<TestType>(33, cols, batch, sparsity, 1);
    }
  }
}

TEMPLATE_TEST_CASE("SparseLinear gives the same bits on one and two threads on every path", "[infer][sparse][arch]",
                   infer::CsrMatrix, infer::BitmapMatrix, infer::SlicedMatrix, infer::BitmapInt8Matrix) {
  const auto p = make_problem(301, 1570, 64, 0.9, 11);
  infer::SparseLinear<TestType> layer(build_format<TestType>(p), p.bias.view());
  for (const index_t batch : {1, 64}) {
    const TensorView<const float, 2> x(p.x.data(), {batch, 1570});
    for_each_arch([&](auto arch) {
      CAPTURE(batch, decltype(arch)::name);
      Tensor<float, 2> one({batch, 301}), two({batch, 301});
      minnow::set_threads(1);
      layer.template forward<decltype(arch)>(x, one.view());
      minnow::set_threads(2);
      layer.template forward<decltype(arch)>(x, two.view());
      CHECK(test_support::raw(one.data(), one.size()) == test_support::raw(two.data(), two.size()));
    });
  }
}

namespace {

void check_conv_paths(index_t batch, index_t in, index_t out, index_t kernel, index_t stride, index_t padding, index_t height,
                      index_t width, double sparsity) {
  CAPTURE(batch, in, out, kernel, stride, padding, height, width, sparsity);
  std::mt19937_64 rng(static_cast<std::uint64_t>(batch * 31 + in * 7 + out + kernel + stride * 5 + height));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::bernoulli_distribution keep(1.0 - sparsity);
  Tensor<float, 4> w({out, in, kernel, kernel}), mask({out, in, kernel, kernel}), x({batch, in, height, width});
  Tensor<float, 1> bias({out});
  for (index_t i = 0; i < w.size(); ++i) {
    w.data()[i] = u(rng);
    mask.data()[i] = keep(rng) ? 1.0f : 0.0f;
  }
  for (index_t i = 0; i < out; ++i) bias.data()[i] = u(rng);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = u(rng);
  infer::SparseConv2d<> conv(w.view(), mask.view(), bias.view(), stride, padding);
  infer::SparseConv2d<infer::BitmapMatrix> bitmap_conv(w.view(), mask.view(), bias.view(), stride, padding);
  Tensor<float, 4> expected(conv.output_shape(x.shape()), std::nanf(""));
  minnow::set_threads(1);
  conv.forward<simd::arch::scalar>(x.view(), expected.view());
  for (const int threads : {1, 2}) {
    minnow::set_threads(threads);
    for_each_arch([&](auto arch) {
      CAPTURE(threads, decltype(arch)::name);
      Tensor<float, 4> y(expected.shape(), std::nanf("")), from_bitmap(expected.shape(), std::nanf(""));
      conv.forward<decltype(arch)>(x.view(), y.view());
      REQUIRE(test_support::raw(y.data(), y.size()) == test_support::raw(expected.data(), expected.size()));
      bitmap_conv.forward<decltype(arch)>(x.view(), from_bitmap.view());
      REQUIRE(test_support::raw(from_bitmap.data(), from_bitmap.size()) == test_support::raw(expected.data(), expected.size()));
    });
  }
  minnow::set_threads(2);
}

}  // namespace

TEST_CASE("every SparseConv2d path gives the scalar path's bits, on any thread count", "[infer][sparse][arch]") {
  for (const double sparsity : {0.0, 0.5, 0.9}) {
    check_conv_paths(1, 3, 5, 3, 1, 1, 7, 9, sparsity);     // 63 virtual pixels: one partial block
    check_conv_paths(2, 5, 7, 3, 2, 0, 11, 10, sparsity);   // stride 2: im2col rows
    check_conv_paths(1, 4, 3, 1, 1, 0, 13, 13, sparsity);   // 169 pixels: AVX2 blocks of 96 with a tail
    check_conv_paths(3, 2, 17, 3, 1, 1, 16, 16, sparsity);  // 288 pixels: AVX-512 blocks of 256 with a tail
    check_conv_paths(5, 6, 33, 3, 2, 1, 14, 14, sparsity);  // more samples than threads
  }
  check_conv_paths(1, 64, 128, 3, 1, 1, 14, 14, 0.9);  // the teacher's conv2
}
