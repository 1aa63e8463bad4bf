// minnow::infer codebook-index weights: decoding gives exactly quant::fake_quantize's codebook output
// (per tensor and per row, 4 and 8 bits, ties and values past the ends), the packing layout, byte counts
// from the buffers, CodebookLinear against a double reference on tail shapes and both batch paths, every
// kernel path the CPU runs against the scalar path, a k-means Quantizer round trip, and typed errors for
// bad input.
#include "test_support.hpp"

#include <minnow/infer/codebook_weights.hpp>
#include <minnow/quant.hpp>

#include <cmath>
#include <random>
#include <vector>

using namespace minnow;
using Catch::Matchers::Contains;

namespace {

Tensor<float, 2> random_matrix(index_t rows, index_t cols, std::uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  Tensor<float, 2> m({rows, cols});
  for (index_t i = 0; i < m.size(); ++i) m.data()[i] = u(rng);
  return m;
}

quant::Codebook linear_book(std::size_t k, float lo, float hi) {
  quant::Codebook book;
  for (std::size_t i = 0; i < k; ++i) book.centroids.push_back(lo + (hi - lo) * static_cast<float>(i) / static_cast<float>(k - 1));
  return book;
}

// Every element of `w` decodes to what fake_quantize gives with its row's codebook.
void check_decodes_to_fake_quant(const infer::CodebookWeights& cw, const Tensor<float, 2>& w,
                                 const std::vector<quant::Codebook>& books) {
  const auto decoded = cw.dequantize();
  for (index_t j = 0; j < w.dim(0); ++j) {
    const auto& book = books[books.size() == 1 ? 0 : static_cast<std::size_t>(j)];
    Tensor<float, 1> row({w.dim(1)}), expected({w.dim(1)});
    for (index_t k = 0; k < w.dim(1); ++k) row(k) = w(j, k);
    quant::fake_quantize<float, 1>(row.view(), book, expected.view());
    for (index_t k = 0; k < w.dim(1); ++k) REQUIRE(decoded(j, k) == expected(k));
  }
}

}  // namespace

TEST_CASE("codebook indices decode to the fake-quantized weight", "[infer][codebook]") {
  SECTION("4 bits, one codebook, odd row length, ties and values past the ends") {
    const quant::Codebook book{{-1.0f, -0.25f, 0.0f, 0.5f, 2.0f}};
    Tensor<float, 2> w({2, 7});
    const float values[14] = {-5.0f, -0.625f, -0.125f, 0.25f, 1.25f, 9.0f, 0.0f,  // midpoints tie to the lower
                              -1.0f, 2.0f, 0.5f, -0.2f, 0.3f, 1.3f, -0.7f};
    for (index_t i = 0; i < 14; ++i) w.data()[i] = values[i];
    const std::vector<quant::Codebook> books{book};
    const auto cw = infer::encode_codebook("w", w.view(), books);
    CHECK(cw.bits == 4);
    CHECK(cw.packed.dim(1) == 4);
    CHECK(cw.index(0, 0) == 0);  // -5 → -1
    CHECK(cw.index(0, 1) == 0);  // -0.625: tie between -1 and -0.25 → the lower
    CHECK(cw.index(0, 2) == 1);  // -0.125: tie → -0.25
    CHECK(cw.index(0, 3) == 2);  // 0.25: tie → 0
    CHECK(cw.index(0, 4) == 3);  // 1.25: tie → 0.5
    CHECK(cw.index(0, 5) == 4);  // 9 → 2
    CHECK(cw.packed(0, 0) == 0x00);
    CHECK(cw.packed(0, 1) == (2 << 4 | 1));
    CHECK(cw.packed(0, 3) == 2);  // element 6 = 0 → index 2, the padding nibble stays 0
    check_decodes_to_fake_quant(cw, w, books);
  }
  SECTION("4 bits, one codebook per row") {
    const auto w = random_matrix(9, 33, 1);
    std::vector<quant::Codebook> books;
    for (std::size_t j = 0; j < 9; ++j) books.push_back(linear_book(2 + j, -0.9f, 0.8f - 0.05f * static_cast<float>(j)));
    const auto cw = infer::encode_codebook("w", w.view(), books);
    CHECK(cw.bits == 4);
    CHECK(cw.per_row());
    check_decodes_to_fake_quant(cw, w, books);
  }
  SECTION("8 bits when a codebook has more than 16 centroids") {
    const auto w = random_matrix(5, 70, 2);
    const std::vector<quant::Codebook> books{linear_book(17, -1.0f, 1.0f)};
    const auto cw = infer::encode_codebook("w", w.view(), books);
    CHECK(cw.bits == 8);
    CHECK(cw.packed.dim(1) == 70);
    check_decodes_to_fake_quant(cw, w, books);
    const std::vector<quant::Codebook> big{linear_book(256, -1.0f, 1.0f)};
    check_decodes_to_fake_quant(infer::encode_codebook("w", w.view(), big), w, big);
  }
}

TEST_CASE("codebook bytes are counted from the buffers", "[infer][codebook]") {
  const auto w = random_matrix(1000, 6272, 3, 0.05f);
  const std::vector<quant::Codebook> books{linear_book(16, -0.05f, 0.05f)};
  const auto cw = infer::encode_codebook("fc1.weight", w.view(), books);
  CHECK(cw.bytes() == 1000u * 3136u + 16u * sizeof(float));
  CHECK(static_cast<double>(cw.bytes()) / (1000.0 * 6272.0 * 4.0) <= 0.126);
  const std::vector<quant::Codebook> wide{linear_book(32, -0.05f, 0.05f)};
  CHECK(infer::encode_codebook("fc1.weight", w.view(), wide).bytes() == 1000u * 6272u + 32u * sizeof(float));
}

TEST_CASE("CodebookLinear equals a double reference on tails and both batch paths", "[infer][codebook]") {
  for (const index_t rows : {1, 17, 70}) {
    for (const index_t cols : {1, 31, 33, 100}) {
      for (const std::size_t k : {std::size_t{5}, std::size_t{16}, std::size_t{20}, std::size_t{40}, std::size_t{130}}) {
        for (const bool per_row : {false, true}) {
          const auto w = random_matrix(rows, cols, 10 + static_cast<std::uint64_t>(rows * cols));
          std::vector<quant::Codebook> books;
          for (index_t j = 0; j < (per_row ? rows : 1); ++j) books.push_back(linear_book(k, -1.0f, 1.0f - 0.01f * static_cast<float>(j)));
          const auto bias = random_matrix(1, rows, 4);
          infer::CodebookLinear layer(infer::encode_codebook("fc", w.view(), books),
                                      TensorView<const float, 1>(bias.data(), {rows}));
          for (const index_t batch : {1, 3, 4, 37}) {
            const auto x = random_matrix(batch, cols, 5);
            Tensor<float, 2> y({batch, rows}), expected({batch, rows});
            layer.forward(x.view(), y.view());
            layer.forward_reference(x.view(), expected.view());
            for (index_t i = 0; i < y.size(); ++i) {
              INFO("rows " << rows << " cols " << cols << " k " << k << " per_row " << per_row << " batch " << batch << " i " << i);
              REQUIRE(y.data()[i] == Approx(expected.data()[i]).epsilon(1e-5).margin(1e-5));
            }
          }
        }
      }
    }
  }
}

TEST_CASE("a k-means quantizer's codebooks encode its fake-quantized weight exactly", "[infer][codebook]") {
  const auto w = random_matrix(12, 50, 6);
  const std::vector<index_t> shape{12, 50};
  quant::Quantizer<quant::Bits<4>, quant::MinMax, quant::KMeansCodebook, quant::PerChannel> q;
  const TensorView<const float, 1> flat(w.data(), {w.size()});
  q.observe(flat, shape);
  Tensor<float, 1> wq({w.size()});
  q.fake_quantize<float>(flat, shape, wq.view());
  const auto cw = infer::encode_codebook("w", w.view(), q.params());
  const auto decoded = cw.dequantize();
  for (index_t i = 0; i < w.size(); ++i) REQUIRE(decoded.data()[i] == wq(i));
}

TEST_CASE("codebook bad input throws typed errors naming the layer", "[infer][codebook][errors]") {
  const auto w = random_matrix(3, 4, 7);
  const std::vector<quant::Codebook> two{linear_book(4, -1, 1), linear_book(4, -1, 1)};
  CHECK_THROWS_AS(infer::encode_codebook("fc9", w.view(), two), shape_error);
  CHECK_THAT(test_support::message_of<shape_error>([&] { (void)infer::encode_codebook("fc9", w.view(), two); }),
             Contains("fc9") && Contains("2 codebooks for 3 rows"));
  const std::vector<quant::Codebook> huge{linear_book(257, -1, 1)};
  CHECK_THAT(test_support::message_of<value_error>([&] { (void)infer::encode_codebook("fc9", w.view(), huge); }),
             Contains("257"));
  const std::vector<quant::Codebook> unsorted{{{0.5f, -0.5f}}};
  CHECK_THROWS_AS(infer::encode_codebook("fc9", w.view(), unsorted), value_error);
  const std::vector<quant::Codebook> empty{quant::Codebook{}};
  CHECK_THROWS_AS(infer::encode_codebook("fc9", w.view(), empty), value_error);
  auto bad = random_matrix(3, 4, 7);
  bad(1, 2) = std::numeric_limits<float>::quiet_NaN();
  const std::vector<quant::Codebook> one{linear_book(4, -1, 1)};
  CHECK_THAT(test_support::message_of<value_error>([&] { (void)infer::encode_codebook("fc9", bad.view(), one); }),
             Contains("fc9") && Contains("element 6"));
  const Tensor<float, 1> bias({2});
  CHECK_THROWS_AS(infer::CodebookLinear(infer::encode_codebook("fc9", w.view(), one), bias.view()), shape_error);
  infer::CodebookLinear layer(infer::encode_codebook("fc9", w.view(), one), TensorView<const float, 1>{});
  Tensor<float, 2> x({2, 5}), y({2, 3});
  CHECK_THAT(test_support::message_of<shape_error>([&] { layer.forward(x.view(), y.view()); }),
             Contains("fc9") && Contains("[2, 5]"));
}

TEST_CASE("every CodebookLinear path equals the scalar path (bit for bit from batch 4)", "[infer][codebook][arch]") {
  // Columns around the AVX2 step (8 weights, 16 per two accumulators) and the AVX-512 ones (16, 32);
  // tables of 16 entries (4 bits) and 32 to 256 (8 bits: every permute-tree depth).
  for (const index_t rows : {1, 17, 130}) {
    for (const index_t cols : {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 48, 100}) {
      for (const std::size_t k : {std::size_t{5}, std::size_t{16}, std::size_t{20}, std::size_t{40}, std::size_t{70},
                                  std::size_t{130}, std::size_t{256}}) {
        for (const bool per_row : {false, true}) {
          const auto w = random_matrix(rows, cols, 20 + static_cast<std::uint64_t>(rows * cols));
          std::vector<quant::Codebook> books;
          for (index_t j = 0; j < (per_row ? rows : 1); ++j) books.push_back(linear_book(k, -1.0f, 1.0f - 0.01f * static_cast<float>(j)));
          const auto bias = random_matrix(1, rows, 8);
          infer::CodebookLinear layer(infer::encode_codebook("fc", w.view(), books), TensorView<const float, 1>(bias.data(), {rows}));
          for (const index_t batch : {1, 3, 4, 37}) {
            const auto x = random_matrix(batch, cols, 9);
            Tensor<float, 2> expected({batch, rows});
            layer.forward<simd::arch::scalar>(x.view(), expected.view());
            for_each_arch([&](auto arch) {
              INFO("rows " << rows << " cols " << cols << " k " << k << " per_row " << per_row << " batch " << batch << " path "
                           << decltype(arch)::name);
              Tensor<float, 2> y({batch, rows}, std::nanf(""));
              layer.forward<decltype(arch)>(x.view(), y.view());
              if (batch >= infer::CodebookLinear::kSmallBatch) {
                // Decoding is a table lookup and simd::gemm's paths agree bit for bit.
                REQUIRE(test_support::raw(y.data(), y.size()) == test_support::raw(expected.data(), expected.size()));
              } else {
                // Batch 1 sums each row in vector lanes: the rounding of another summation order.
                for (index_t i = 0; i < y.size(); ++i) REQUIRE(y.data()[i] == Approx(expected.data()[i]).epsilon(1e-5).margin(1e-5));
              }
            });
          }
        }
      }
    }
  }
}
