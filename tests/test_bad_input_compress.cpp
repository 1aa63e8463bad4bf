// Bad input to the compression modules: quant/ (Quantizer, observers, mappings, fake_quantize, LSQ,
// k-means), prune/ (masks, criteria, amounts, schedules, Pruner), distill/ (kd_loss, combined_loss,
// softmax, SoftTargetLoss), ensemble/ (combination rules, diversity, fit_weights) and the ensemble
// pipeline (train_ensemble, load_or_train_ensemble, train::fit, OnlineTeacherLoss). Each case checks
// the exception type, the words of its message, and that nothing the call was given changed.
#include <minnow/distill.hpp>
#include <minnow/ensemble.hpp>
#include <minnow/error.hpp>
#include <minnow/pipeline/ensemble_checkpoints.hpp>
#include <minnow/pipeline/ensemble_training.hpp>
#include <minnow/prune.hpp>
#include <minnow/quant.hpp>
#include <minnow/train.hpp>

#include "test_support.hpp"
#include "../examples/architectures.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <unistd.h>

using namespace minnow;
using Catch::Contains;
using test_support::file_bytes;
using test_support::raw;
using test_support::ScratchDir;
namespace fs = std::filesystem;

namespace {

/// A [rows, cols] tensor of distinct values.
Tensor<float, 2> ramp(index_t rows, index_t cols, float scale = 0.25f) {
  Tensor<float, 2> t({rows, cols});
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = scale * static_cast<float>(i - t.size() / 2);
  return t;
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

}  // namespace

// ---- quant: Quantizer ----

TEST_CASE("Quantizer: shapes that do not describe the values, a changed channel count, an out-of-range axis",
          "[bad_input][quant][quantizer]") {
  Tensor<float, 1> w({6});
  for (index_t i = 0; i < 6; ++i) w(i) = 0.5f * static_cast<float>(i) - 1.0f;
  const auto w_before = raw(w);
  SECTION("observe: shape [2, 4] for 6 values changes nothing") {
    quant::Int8PerChannelSymmetric q;
    const std::vector<index_t> shape{2, 4};
    CHECK_REFUSED(q.observe(w, shape), shape_error, Contains("Quantizer::observe: shape [2, 4] has 8 elements, the values 6"));
    CHECK_FALSE(q.observed());
    CHECK(q.observers().empty());
  }
  SECTION("observe: a negative extent") {
    quant::Int8PerTensorSymmetric q;
    const std::vector<index_t> shape{-2, -3};
    CHECK_REFUSED(q.observe(w, shape), shape_error, Contains("negative extent in shape [-2, -3]"));
    CHECK(q.observers().empty());
  }
  SECTION("observe: axis 2 of a rank-2 shape") {
    quant::Int8PerChannelSymmetric q(quant::PerChannel{2});
    const std::vector<index_t> shape{2, 3};
    CHECK_REFUSED(q.observe(w, shape), shape_error, Contains("PerChannel::layout: axis 2 is out of range for shape [2, 3] (rank 2)"));
    CHECK(q.observers().empty());
  }
  SECTION("observe: 3 channels after 2 keeps the 2 observed ranges") {
    quant::Int8PerChannelAffine q;
    const std::vector<index_t> two{2, 3}, three{3, 2};
    q.observe(w, two);
    const auto range0 = q.observers()[0].range(), range1 = q.observers()[1].range();
    CHECK_REFUSED(q.observe(w, three), shape_error, Contains("3 channels, but the quantizer observed 2 before"));
    REQUIRE(q.observers().size() == 2);
    CHECK(q.observers()[0].range().min == range0.min);
    CHECK(q.observers()[1].range().max == range1.max);
  }
  SECTION("fake_quantize into an output of another size leaves it as it was") {
    quant::Int8PerTensorSymmetric q;
    const std::vector<index_t> shape{6};
    q.observe(w, shape);
    Tensor<float, 1> y({5}, 3.0f);
    const auto y_before = raw(y);
    CHECK_REFUSED(q.fake_quantize<float>(w, shape, y), shape_error, Contains("fake_quantize: y has shape [5], expected [6]"));
    CHECK(raw(y) == y_before);
  }
  SECTION("fake_quantize after observing +inf: the infinite range is named, the output stays") {
    quant::Int8PerTensorSymmetric q;
    const std::vector<index_t> shape{6};
    Tensor<float, 1> with_inf = w.clone();
    with_inf(2) = std::numeric_limits<float>::infinity();
    q.observe(with_inf, shape);
    Tensor<float, 1> y({6}, 3.0f);
    const auto y_before = raw(y);
    CHECK_REFUSED(q.fake_quantize<float>(w, shape, y), value_error, Contains("Symmetric::qparams: range [-1, inf] is not finite"));
    CHECK(raw(y) == y_before);
  }
  SECTION("backward before any fake_quantize") {
    const quant::Int8PerTensorSymmetric q;
    Tensor<float, 1> dy({6}, 1.0f), dx({6}, 5.0f);
    const auto dx_before = raw(dx);
    CHECK_REFUSED(q.backward<float>(w, dy, dx), value_error, Contains("Quantizer::backward: call fake_quantize first"));
    CHECK(raw(dx) == dx_before);
  }
  SECTION("backward with a gradient of another size") {
    quant::Int8PerTensorSymmetric q;
    const std::vector<index_t> shape{6};
    q.observe(w, shape);
    Tensor<float, 1> y({6});
    q.fake_quantize<float>(w, shape, y);
    Tensor<float, 1> dy({4}, 1.0f), dx({6}, 5.0f);
    const auto dx_before = raw(dx);
    CHECK_REFUSED(q.backward<float>(w, dy, dx), shape_error, Contains("fake_quantize_backward: dy has shape [4], expected [6]"));
    CHECK(raw(dx) == dx_before);
  }
  SECTION("a codebook quantizer asked for parameters before it observed anything") {
    quant::Quantizer<quant::qint4, quant::MinMax, quant::KMeansCodebook, quant::PerTensor> q;
    CHECK_REFUSED((void)q.calculate_params(), value_error, Contains("a codebook quantizer must observe values before it can fit"));
  }
  CHECK(raw(w) == w_before);
}

TEST_CASE("Quantizer: a batch of only NaN leaves it unobserved, with scale 1 and zero point 0", "[bad_input][quant][quantizer]") {
  quant::Uint8PerTensorAffine q;
  Tensor<float, 1> nan({8}, std::numeric_limits<float>::quiet_NaN());
  const std::vector<index_t> shape{8};
  q.observe(nan, shape);
  CHECK_FALSE(q.observed());
  const auto& params = q.calculate_params();
  REQUIRE(params.size() == 1);
  CHECK(params[0].scale == 1.0f);
  CHECK(params[0].zero_point == 0);
  CHECK(std::isnan(nan(3)));  // the batch is not touched
  // A later finite batch is the first the observer keeps.
  Tensor<float, 1> finite({2});
  finite(0) = -1.0f;
  finite(1) = 3.0f;
  const std::vector<index_t> two{2};
  q.observe(finite, two);
  CHECK(q.observed());
  CHECK(q.observers()[0].range().min == -1.0f);
  CHECK(q.observers()[0].range().max == 3.0f);
}

TEST_CASE("Quantizer: a shape whose element count overflows is refused", "[bad_input][quant][quantizer]") {
  // [2^32, 2^32] would wrap to 0 elements and pass for an empty batch.
  quant::Int8PerTensorSymmetric q;
  Tensor<float, 1> empty({0});
  const std::vector<index_t> shape{index_t{1} << 32, index_t{1} << 32};
  CHECK_THROWS_AS(q.observe(empty, shape), shape_error);
  CHECK_THROWS_WITH(q.observe(empty, shape), Contains("PerTensor::layout") && Contains("has too many elements"));
  CHECK(q.observers().empty());
}

// ---- quant: observers and mappings ----

TEST_CASE("observers: bad options, and non-finite batches for the observers that refuse them", "[bad_input][quant][observer]") {
  SECTION("MovingAverageMinMax averaging constant 0") {
    CHECK_REFUSED(quant::MovingAverageMinMax(0.0f), value_error, Contains("averaging_constant must be in (0, 1], got 0"));
  }
  SECTION("MovingAverageMinMax averaging constant 1.5") {
    CHECK_REFUSED(quant::MovingAverageMinMax(1.5f), value_error, Contains("got 1.5"));
  }
  SECTION("MovingAverageMinMax averaging constant NaN") {
    CHECK_REFUSED(quant::MovingAverageMinMax(std::numeric_limits<float>::quiet_NaN()), value_error, Contains("got nan"));
  }
  SECTION("Histogram with 0 bins") { CHECK_REFUSED(quant::Histogram(0), value_error, Contains("Histogram: bins must be >= 1, got 0")); }
  SECTION("Histogram with upsample_rate 0") {
    quant::HistogramOptions options;
    options.upsample_rate = 0;
    CHECK_REFUSED(quant::Histogram(options), value_error, Contains("upsample_rate must be >= 1, got 0"));
  }
  SECTION("Percentile 40") { CHECK_REFUSED(quant::Percentile(40.0), value_error, Contains("Percentile: p must be in [50, 100], got 40")); }
  SECTION("MseOptimal with 3 bins") {
    CHECK_REFUSED(quant::MseOptimal({.bins = 3}), value_error, Contains("MseOptimal: bins must be even and >= 2, got 3"));
  }
  SECTION("MseOptimal with 0 steps") { CHECK_REFUSED(quant::MseOptimal({.steps = 0}), value_error, Contains("steps must be >= 1, got 0")); }
  SECTION("Histogram::observe of a NaN keeps it empty") {
    quant::Histogram h(16);
    Tensor<float, 1> x({4}, 1.0f);
    x(2) = std::numeric_limits<float>::quiet_NaN();
    const quant::ChannelValues<const float> values{x.data(), 1, 4, 4};
    CHECK_REFUSED(h.observe(values), value_error, Contains("Histogram::observe: expected finite values, got NaN or Inf"));
    CHECK(h.empty());
  }
  SECTION("Percentile::observe of an infinity keeps it empty") {
    quant::Percentile p(99.0);
    Tensor<float, 1> x({4}, 1.0f);
    x(0) = -std::numeric_limits<float>::infinity();
    const quant::ChannelValues<const float> values{x.data(), 1, 4, 4};
    CHECK_REFUSED(p.observe(values), value_error, Contains("Percentile::observe: expected finite values"));
    CHECK(p.empty());
  }
}

TEST_CASE("mappings: infinite, inverted or too wide ranges and grids with one level", "[bad_input][quant][mapping]") {
  const quant::QRange int8{-128, 127};
  const float inf = std::numeric_limits<float>::infinity();
  SECTION("an infinite range") {
    CHECK_REFUSED((void)quant::Affine{}.qparams({-inf, 1.0f}, int8), value_error, Contains("Affine::qparams: range [-inf, 1] is not finite"));
  }
  SECTION("a NaN end") {
    CHECK_REFUSED((void)quant::Symmetric{}.qparams({0.0f, std::numeric_limits<float>::quiet_NaN()}, int8), value_error,
                  Contains("range [0, nan] is not finite"));
  }
  SECTION("min > max") { CHECK_REFUSED((void)quant::Affine{}.qparams({2.0f, 1.0f}, int8), value_error, Contains("range [2, 1] has min > max")); }
  SECTION("a grid [5, 5]") {
    CHECK_REFUSED((void)quant::Affine{}.qparams({0.0f, 1.0f}, {5, 5}), value_error, Contains("grid [5, 5] needs qmin < qmax"));
  }
  SECTION("a restricted symmetric grid with a single level") {
    CHECK_REFUSED((void)quant::Symmetric{true}.qparams({-1.0f, 1.0f}, {0, 1}), value_error,
                  Contains("the restricted grid [1, 1] of [0, 1] has a single level"));
  }
  SECTION("a finite range too wide for a finite scale") {
    CHECK_REFUSED((void)quant::Affine{}.qparams({-3e38f, 3e38f}, int8), value_error, Contains("is too wide for a finite float scale"));
  }
  SECTION("a finite symmetric scale that the power-of-two rounding takes past FLT_MAX") {
    CHECK_REFUSED((void)quant::PowerOfTwo{}.qparams({-1e38f, 1e38f}, {-1, 0}), value_error,
                  Contains("PowerOfTwo::qparams: range [-1e+38, 1e+38] is too wide"));
  }
}

TEST_CASE("fake_quantize, LSQ and k-means: bad parameters and shapes, and the outputs stay", "[bad_input][quant][fake_quantize]") {
  const auto x = ramp(2, 3);
  Tensor<float, 2> y({2, 3}, 7.0f);
  const auto y_before = raw(y);
  const quant::QRange int8{-128, 127};
  SECTION("scale 0") {
    CHECK_REFUSED((quant::fake_quantize<float, 2>(x, {0.0f, 0}, int8, y)), value_error,
                  Contains("fake_quantize: scale must be positive, finite and have a finite reciprocal, got 0"));
  }
  SECTION("a NaN scale") {
    CHECK_REFUSED((quant::fake_quantize<float, 2>(x, {std::numeric_limits<float>::quiet_NaN(), 0}, int8, y)), value_error, Contains("got nan"));
  }
  SECTION("a subnormal scale whose reciprocal overflows") {
    CHECK_REFUSED((quant::fake_quantize<float, 2>(x, {1e-45f, 0}, int8, y)), value_error, Contains("finite reciprocal"));
  }
  SECTION("zero point 300 outside the int8 grid") {
    CHECK_REFUSED((quant::fake_quantize<float, 2>(x, {0.1f, 300}, int8, y)), value_error,
                  Contains("zero point 300 is outside the grid [-128, 127]"));
  }
  SECTION("a grid with qmin > qmax") {
    CHECK_REFUSED((quant::fake_quantize<float, 2>(x, {0.1f, 0}, {5, 4}, y)), value_error, Contains("grid [5, 4] needs qmin <= qmax"));
  }
  SECTION("an output of another shape") {
    Tensor<float, 2> wrong({3, 2}, 7.0f);
    const auto wrong_before = raw(wrong);
    CHECK_REFUSED((quant::fake_quantize<float, 2>(x, {0.1f, 0}, int8, wrong)), shape_error,
                  Contains("fake_quantize: y has shape [3, 2], expected [2, 3]"));
    CHECK(raw(wrong) == wrong_before);
  }
  SECTION("per channel: 2 parameter sets for 3 channels") {
    const std::vector<quant::AffineParams> params{{0.1f, 0}, {0.1f, 0}};
    CHECK_REFUSED((quant::fake_quantize<float, 2>(x, quant::ChannelLayout{2, 3, 1}, params, int8, y)), shape_error,
                  Contains("2 per-channel parameter sets for 3 channels"));
  }
  SECTION("per channel: a bad scale names its channel") {
    const std::vector<quant::AffineParams> params{{0.1f, 0}, {-0.1f, 0}, {0.1f, 0}};
    CHECK_REFUSED((quant::fake_quantize<float, 2>(x, quant::ChannelLayout{2, 3, 1}, params, int8, y)), value_error,
                  Contains("scale of channel 1 must be positive") && Contains("got -0.1"));
  }
  SECTION("per channel: a layout that does not describe the values") {
    const std::vector<quant::AffineParams> params{{0.1f, 0}, {0.1f, 0}};
    CHECK_REFUSED((quant::fake_quantize<float, 2>(x, quant::ChannelLayout{1, 2, 2}, params, int8, y)), shape_error,
                  Contains("layout {outer 1, channels 2, inner 2} does not describe 6 elements"));
  }
  SECTION("a codebook that is not ascending") {
    const quant::Codebook book{{0.5f, -0.5f}};
    CHECK_REFUSED((quant::fake_quantize<float, 2>(x, book, y)), value_error,
                  Contains("codebook must hold finite, strictly ascending centroids; centroid 1 is -0.5"));
  }
  SECTION("an empty codebook") {
    CHECK_REFUSED((quant::fake_quantize<float, 2>(x, quant::Codebook{}, y)), value_error, Contains("codebook has no centroids"));
  }
  SECTION("LSQ backward with a NaN grad_factor") {
    Tensor<float, 2> dy({2, 3}, 1.0f);
    CHECK_REFUSED((void)(quant::lsq_backward<float, 2>(x, dy, {0.1f, 0}, int8, kNaN, y)), value_error,
                  Contains("lsq_backward: grad_factor must be finite, got nan"));
  }
  SECTION("LSQ grad factor for n = 0") {
    CHECK_REFUSED((void)quant::lsq_grad_factor(0, int8), value_error, Contains("lsq_grad_factor: needs n > 0 and qmax > 0, got n = 0"));
  }
  SECTION("k-means with more centroids than distinct values") {
    const std::vector<float> values{1.0f, 1.0f, 2.0f};
    CHECK_REFUSED((void)quant::kmeans_1d(values, {0.0f, 1.0f, 2.0f}, 10), value_error,
                  Contains("kmeans_1d: 3 centroids requested but the values hold only 2 distinct values"));
  }
  SECTION("KMeansCodebook with -1 centroids") {
    CHECK_REFUSED(quant::KMeansCodebook({.centroids = -1}), value_error, Contains("KMeansCodebook: centroids must be in [0, 65536]"));
  }
  CHECK(raw(y) == y_before);
}

// ---- prune ----

TEST_CASE("prune amounts: fractions outside [0, 1], negative counts, counts above the candidates", "[bad_input][prune][amount]") {
  SECTION("Fraction 1.5") { CHECK_REFUSED(prune::Fraction(1.5), value_error, Contains("a Fraction must lie in [0, 1], got 1.5")); }
  SECTION("Fraction slightly above 1 is shown exactly") {
    CHECK_REFUSED(prune::Fraction(1.0000001), value_error, Contains("got 1.0000001"));
  }
  SECTION("Fraction -0.1") { CHECK_REFUSED(prune::Fraction(-0.1), value_error, Contains("got -0.1")); }
  SECTION("Fraction NaN") { CHECK_REFUSED(prune::Fraction(kNaN), value_error, Contains("got nan")); }
  SECTION("Count -1") { CHECK_REFUSED(prune::Count(-1), value_error, Contains("a Count must be >= 0, got -1")); }
  SECTION("Count above the candidates") {
    CHECK_REFUSED((void)prune::to_count(prune::Count{5}, 3), value_error, Contains("cannot prune 5 of 3 candidates"));
  }
  SECTION("a negative number of candidates") {
    CHECK_REFUSED((void)prune::to_count(prune::Fraction{0.5}, -1), value_error, Contains("number of candidates must be >= 0, got -1"));
  }
}

TEST_CASE("prune criteria: bad masks, shapes, norms, dims and amounts change neither mask nor weights", "[bad_input][prune][criteria]") {
  const auto w = ramp(2, 3);
  Tensor<float, 2> mask({2, 3}, 1.0f);
  mask(0, 1) = 0.0f;
  const auto w_before = raw(w);
  std::vector<unsigned char> mask_before = raw(mask);
  const std::vector<index_t> shape{2, 3};
  std::mt19937_64 rng(1);
  SECTION("l1_unstructured: Count 6 of 5 survivors") {
    CHECK_REFUSED(prune::l1_unstructured(w.view(), mask.view(), prune::Count{6}), value_error, Contains("cannot prune 6 of 5 candidates"));
  }
  SECTION("l1_unstructured: a mask entry 0.5") {
    mask(1, 0) = 0.5f;
    mask_before = raw(mask);
    CHECK_REFUSED(prune::l1_unstructured(w.view(), mask.view(), prune::Fraction{0.5}), value_error,
                  Contains("prune::l1_unstructured: mask entries must be 0 or 1, entry 3 of [6] is 0.5"));
  }
  SECTION("l1_unstructured: a mask of another shape") {
    Tensor<float, 2> other({3, 2}, 1.0f);
    CHECK_REFUSED(prune::l1_unstructured(w.view(), other.view(), prune::Fraction{0.5}), shape_error,
                  Contains("prune::l1_unstructured: mask [3, 2] does not match weights [2, 3]"));
  }
  SECTION("random_unstructured: Count 9 of 5 survivors") {
    CHECK_REFUSED(prune::random_unstructured(mask.view(), prune::Count{9}, rng), value_error, Contains("cannot prune 9 of 5"));
  }
  SECTION("ln_structured: n = 3") {
    CHECK_REFUSED(prune::ln_structured(w.view(), mask.view(), prune::Fraction{0.5}, 3.0, 0), value_error,
                  Contains("prune::ln_structured: n must be 1, 2 or infinity, got 3"));
  }
  SECTION("ln_structured: dim 2 of a rank-2 weight") {
    CHECK_REFUSED(prune::ln_structured(w.view(), mask.view(), prune::Fraction{0.5}, 2.0, 2), value_error,
                  Contains("dim must lie in [-2, 2) for shape [2, 3], got 2"));
  }
  SECTION("ln_structured: a logical shape [4] for 6 weights") {
    const std::vector<index_t> four{4};
    CHECK_REFUSED(prune::ln_structured(TensorView<const float, 1>(w.data(), {6}), four, TensorView<float, 1>(mask.data(), {6}),
                                       prune::Fraction{0.5}, 2.0, 0),
                  shape_error, Contains("logical shape [4] does not describe 6 elements"));
  }
  SECTION("ln_structured: a logical shape with negative extents") {
    const std::vector<index_t> negative{-2, -3};
    CHECK_REFUSED(prune::ln_structured(TensorView<const float, 1>(w.data(), {6}), negative, TensorView<float, 1>(mask.data(), {6}),
                                       prune::Fraction{0.5}, 2.0, 0),
                  shape_error, Contains("negative extent in shape [-2, -3]"));
  }
  SECTION("random_structured: Count 3 of 2 surviving rows") {
    CHECK_REFUSED(prune::random_structured(mask.view(), prune::Count{3}, 0, rng), value_error, Contains("cannot prune 3 of 2"));
  }
  SECTION("global_unstructured: the second tensor's mask has another shape") {
    Tensor<float, 1> w2({4}, 1.0f), m2({5}, 1.0f);
    const auto m2_before = raw(m2);
    const std::vector<prune::MaskedView<float>> targets{{w.view().reshape<1>(6), mask.view().reshape<1>(6)}, {w2.view(), m2.view()}};
    CHECK_REFUSED(prune::global_unstructured(targets, prune::Fraction{0.5}), shape_error,
                  Contains("prune::global_unstructured: tensor 1: mask [5] does not match weights [4]"));
    CHECK(raw(m2) == m2_before);
  }
  SECTION("custom_from_mask: a user mask entry 2") {
    Tensor<float, 2> user({2, 3}, 1.0f);
    user(1, 2) = 2.0f;
    CHECK_REFUSED(prune::custom_from_mask(mask.view(), user.view()), value_error,
                  Contains("prune::custom_from_mask: mask entries must be 0 or 1, entry 5 of [2, 3] is 2"));
  }
  SECTION("apply: a tensor of another shape stays as it was") {
    Tensor<float, 2> x({3, 2}, 4.0f);
    const auto x_before = raw(x);
    CHECK_REFUSED(prune::apply(x.view(), mask.view()), shape_error, Contains("prune::apply: mask [2, 3] does not match tensor [3, 2]"));
    CHECK(raw(x) == x_before);
  }
  SECTION("compose with a non-binary mask") {
    Tensor<float, 2> other({2, 3}, 1.0f);
    other(0, 0) = -1.0f;
    CHECK_REFUSED(prune::compose(mask.view(), other.view()), value_error, Contains("prune::compose: mask entries must be 0 or 1, entry 0"));
  }
  SECTION("validate_mask of a NaN entry") {
    mask(0, 2) = std::numeric_limits<float>::quiet_NaN();
    mask_before = raw(mask);
    CHECK_REFUSED(prune::validate_mask(mask.view()), value_error, Contains("entry 2 of [2, 3] is nan"));
  }
  CHECK(raw(w) == w_before);
  CHECK(raw(mask) == mask_before);
}

TEST_CASE("prune criteria: a logical shape whose element count overflows is a shape error",
          "[bad_input][prune][criteria]") {
  // [2^62, 4] would wrap to 0 elements, match an empty mask and ask for 2^62 slices.
  Tensor<float, 1> empty({0});
  const std::vector<index_t> shape{index_t{1} << 62, 4};
  CHECK_THROWS_AS((void)prune::surviving_slices(empty.view(), shape, 0), shape_error);
  CHECK_THROWS_WITH((void)prune::surviving_slices(empty.view(), shape, 0), Contains("[4611686018427387904, 4] has too many elements"));
  // A zero extent does not hide an overflow of the others (the outer and inner sizes around an axis).
  const std::vector<index_t> hidden{0, index_t{1} << 62, 4};
  CHECK_THROWS_AS((void)prune::surviving_slices(empty.view(), hidden, 0), shape_error);
}

TEST_CASE("prune schedules: sparsities outside [0, 1], empty step ranges, bad frequencies and powers", "[bad_input][prune][schedule]") {
  SECTION("ConstantSparsity 1.5") {
    CHECK_REFUSED(prune::ConstantSparsity(1.5, 0, 10), value_error, Contains("ConstantSparsity: sparsity must lie in [0, 1], got 1.5"));
  }
  SECTION("ConstantSparsity begin > end") {
    CHECK_REFUSED(prune::ConstantSparsity(0.5, 10, 5), value_error, Contains("begin must be <= end, got begin 10, end 5"));
  }
  SECTION("ConstantSparsity frequency 0") {
    CHECK_REFUSED(prune::ConstantSparsity(0.5, 0, 10, 0), value_error, Contains("ConstantSparsity: frequency must be > 0, got 0"));
  }
  SECTION("PolynomialDecay begin == end") {
    CHECK_REFUSED(prune::PolynomialDecay(0.0, 0.9, 10, 10, 1), value_error, Contains("begin must be < end, got begin 10, end 10"));
  }
  SECTION("PolynomialDecay initial -0.1") {
    CHECK_REFUSED(prune::PolynomialDecay(-0.1, 0.9, 0, 10, 1), value_error, Contains("initial sparsity must lie in [0, 1], got -0.1"));
  }
  SECTION("PolynomialDecay power 0") {
    CHECK_REFUSED(prune::PolynomialDecay(0.0, 0.9, 0, 10, 1, 0.0), value_error, Contains("power must be finite and > 0, got 0"));
  }
  SECTION("agp with a NaN final sparsity") {
    CHECK_REFUSED((void)prune::agp(0.0, kNaN, 0, 10, 1), value_error, Contains("final sparsity must lie in [0, 1], got nan"));
  }
  SECTION("additional_fraction with a target above 1") {
    CHECK_REFUSED((void)prune::additional_fraction(1.2, 0.0), value_error, Contains("additional_fraction: target must lie in [0, 1], got 1.2"));
  }
  SECTION("additional_count with more pruned than total") {
    CHECK_REFUSED((void)prune::additional_count(0.5, 5, 3), value_error, Contains("need 0 <= pruned <= total, got pruned 5, total 3"));
  }
}

TEST_CASE("Pruner: duplicate and unknown names, sizes that differ, and tracked masks and weights stay", "[bad_input][prune][pruner]") {
  auto w = ramp(2, 3);
  Tensor<float, 2> g({2, 3}, 0.5f);
  Tensor<float, 1> short_grad({5}), state({6}, 2.0f), short_state({4});
  prune::Pruner<float> pruner;
  pruner.track(Parameter<float>{"fc.weight", {2, 3}, w.view().reshape<1>(6), g.view().reshape<1>(6)});
  const auto w_before = raw(w);
  const auto mask_before = raw(pruner.mask("fc.weight"));
  SECTION("tracking a name twice") {
    CHECK_REFUSED(pruner.track("fc.weight", state.view()), value_error, Contains("Pruner: 'fc.weight' is already tracked"));
  }
  SECTION("a gradient of 5 elements for a value of 6") {
    CHECK_REFUSED(pruner.track("other", state.view(), short_grad.view()), shape_error,
                  Contains("Pruner: gradient of 'other' has 5 elements, the value has 6"));
  }
  SECTION("optimizer state of 4 elements for a value of 6") {
    CHECK_REFUSED(pruner.track("other", state.view(), {}, {{"exp_avg", short_state.view()}}), shape_error,
                  Contains("Pruner: state 'exp_avg' of 'other' has 4 elements, the value has 6"));
    CHECK_REFUSED(pruner.set_state("fc.weight", {{"momentum_buffer", short_state.view()}}), shape_error,
                  Contains("state 'momentum_buffer' of 'fc.weight' has 4 elements"));
  }
  SECTION("a logical shape [4] for 6 values") {
    CHECK_REFUSED(pruner.track("other", state.view(), {}, {}, {4}), shape_error,
                  Contains("Pruner: logical shape of 'other' has 4 elements, the value has 6"));
  }
  SECTION("an unknown name") {
    CHECK_REFUSED(pruner.l1_unstructured("fc.bias", prune::Fraction{0.5}), value_error,
                  Contains("Pruner: no parameter named 'fc.bias' is tracked"));
    CHECK_REFUSED((void)pruner.mask("conv1.weight"), value_error, Contains("'conv1.weight'"));
    CHECK_REFUSED(pruner.global_unstructured(prune::Fraction{0.5}, {"fc.weight", "fc2.weight"}), value_error,
                  Contains("no parameter named 'fc2.weight'"));
    CHECK_REFUSED(pruner.make_permanent("fc2.weight"), value_error, Contains("'fc2.weight'"));
  }
  SECTION("ln_structured along dim 3 of [2, 3]") {
    CHECK_REFUSED(pruner.ln_structured("fc.weight", prune::Fraction{0.5}, 2.0, 3), value_error,
                  Contains("dim must lie in [-2, 2) for shape [2, 3], got 3"));
  }
  SECTION("a GradualPruner step whose criterion uses a dim the parameter does not have") {
    prune::GradualPruner schedule(prune::ConstantSparsity(0.5, 0, 0));
    CHECK_REFUSED((void)schedule.step(0, pruner, prune::LnStructured{.n = 2.0, .dim = 5}), value_error,
                  Contains("dim must lie in [-2, 2)"));
  }
  CHECK(pruner.entries().size() == 1);
  CHECK(pruner.tracks("fc.weight"));
  CHECK_FALSE(pruner.tracks("other"));
  CHECK(raw(w) == w_before);
  CHECK(raw(pruner.mask("fc.weight")) == mask_before);
}

TEST_CASE("Pruner: a logical shape with negative extents is refused", "[bad_input][prune][pruner]") {
  // {-3, -4} multiplies to 12, the value's size: each extent is checked, not only the product.
  Tensor<float, 1> value({12}, 1.0f);
  prune::Pruner<float> pruner;
  CHECK_THROWS_AS(pruner.track("w", value.view(), {}, {}, {-3, -4}), shape_error);
  CHECK_THROWS_WITH(pruner.track("w", value.view(), {}, {}, {-3, -4}), Contains("'w'") && Contains("negative extent in shape [-3, -4]"));
  CHECK_FALSE(pruner.tracks("w"));
}

// ---- distill ----

TEST_CASE("kd_loss: temperatures the scalar type cannot compute with are value errors naming T", "[bad_input][distill][temperature]") {
  const auto student = ramp(2, 3), teacher = ramp(2, 3, 0.5f);
  Tensor<float, 2> grad({2, 3}, 9.0f);
  const auto grad_before = raw(grad), student_before = raw(student), teacher_before = raw(teacher);
  const auto kd = [&](double t) { return distill::kd_loss<float>(student, distill::TeacherLogits<float>(teacher), t, grad); };
  SECTION("1e-39: 1/T overflows float") {
    CHECK_REFUSED((void)kd(1e-39), value_error, Contains("kd_loss: temperature T must be a finite number > 0") && Contains("got T = 1e-39"));
  }
  SECTION("1e-45") { CHECK_REFUSED((void)kd(1e-45), value_error, Contains("got T = 1e-45")); }
  SECTION("1e300: 1/T is no normal float") { CHECK_REFUSED((void)kd(1e300), value_error, Contains("got T = 1e+300") && Contains("float")); }
  SECTION("0") { CHECK_REFUSED((void)kd(0.0), value_error, Contains("got T = 0")); }
  SECTION("-4") { CHECK_REFUSED((void)kd(-4.0), value_error, Contains("got T = -4")); }
  SECTION("NaN") { CHECK_REFUSED((void)kd(kNaN), value_error, Contains("got T = nan")); }
  SECTION("infinity") { CHECK_REFUSED((void)kd(kInf), value_error, Contains("got T = inf")); }
  CHECK(raw(grad) == grad_before);
  CHECK(raw(student) == student_before);
  CHECK(raw(teacher) == teacher_before);
}

TEST_CASE("kd_loss, combined_loss, softmax: shapes, probabilities, alpha and labels, and the gradient stays", "[bad_input][distill]") {
  const auto student = ramp(2, 3);
  Tensor<float, 2> grad({2, 3}, 9.0f);
  const auto grad_before = raw(grad);
  Tensor<std::int32_t, 1> labels({2});
  labels(0) = 0;
  labels(1) = 2;
  SECTION("teacher logits of another shape") {
    const auto teacher = ramp(2, 4);
    CHECK_REFUSED((void)distill::kd_loss<float>(student, distill::TeacherLogits<float>(teacher), 4.0, grad), shape_error,
                  Contains("kd_loss: teacher logits [2, 4] does not match student logits [2, 3]"));
  }
  SECTION("a gradient of another shape") {
    Tensor<float, 2> wrong({3, 2}, 9.0f);
    const auto wrong_before = raw(wrong);
    CHECK_REFUSED((void)distill::kd_loss<float>(student, distill::TeacherLogits<float>(student), 4.0, wrong), shape_error,
                  Contains("gradient [3, 2] does not match student logits [2, 3]"));
    CHECK(raw(wrong) == wrong_before);
  }
  SECTION("a batch without classes") {
    Tensor<float, 2> none({2, 0}), none_grad({2, 0});
    CHECK_REFUSED((void)distill::kd_loss<float>(none, distill::TeacherLogits<float>(none), 4.0, none_grad), shape_error,
                  Contains("student logits [2, 0] has no classes"));
  }
  SECTION("teacher probabilities with a negative entry") {
    Tensor<float, 2> p({2, 3}, 1.0f / 3.0f);
    p(1, 0) = -0.1f;
    CHECK_REFUSED((void)distill::kd_loss<float>(student, distill::TeacherProbabilities<float>(p), 4.0, grad), value_error,
                  Contains("teacher probability at row 1, class 0 is -0.1, expected a value >= 0"));
  }
  SECTION("teacher probabilities whose row sums to 0.5") {
    Tensor<float, 2> p({2, 3}, 1.0f / 3.0f);
    p(0, 0) = 0.25f;
    p(0, 1) = 0.25f;
    p(0, 2) = 0.0f;
    CHECK_REFUSED((void)distill::kd_loss<float>(student, distill::TeacherProbabilities<float>(p), 4.0, grad), value_error,
                  Contains("teacher probabilities of row 0 sum to 0.5"));
  }
  SECTION("combined_loss with alpha 1.5") {
    CHECK_REFUSED((void)distill::combined_loss<float>(student, distill::TeacherLogits<float>(student), labels, 4.0, 1.5, grad), value_error,
                  Contains("combined_loss: alpha must be in [0, 1], got alpha = 1.5"));
  }
  SECTION("combined_loss with a NaN alpha") {
    CHECK_REFUSED((void)distill::combined_loss<float>(student, distill::TeacherLogits<float>(student), labels, 4.0, kNaN, grad), value_error,
                  Contains("alpha = nan"));
  }
  SECTION("combined_loss with label 3 of 3 classes") {
    labels(1) = 3;
    CHECK_REFUSED((void)distill::combined_loss<float>(student, distill::TeacherLogits<float>(student), labels, 4.0, 0.5, grad), value_error,
                  Contains("combined_loss: label 3 at position 1 is outside [0, 3)"));
  }
  SECTION("combined_loss with 3 labels for 2 rows") {
    Tensor<std::int32_t, 1> three({3});
    CHECK_REFUSED((void)distill::combined_loss<float>(student, distill::TeacherLogits<float>(student), three, 4.0, 0.5, grad), shape_error,
                  Contains("combined_loss: 3 labels for student logits [2, 3]"));
  }
  SECTION("softmax into an output of another shape") {
    Tensor<float, 2> out({2, 4}, 9.0f);
    const auto out_before = raw(out);
    CHECK_REFUSED(distill::softmax<float>(student, 1.0, out), shape_error, Contains("softmax: output [2, 4] does not match logits [2, 3]"));
    CHECK(raw(out) == out_before);
  }
  SECTION("log_softmax at T = 0") {
    CHECK_REFUSED(distill::log_softmax<float>(student, 0.0, grad), value_error, Contains("log_softmax: temperature T") && Contains("got T = 0"));
  }
  CHECK(raw(grad) == grad_before);
}

TEST_CASE("SoftTargetLoss: bad construction, foreign sample indices, mismatched batches", "[bad_input][distill][soft_targets]") {
  const auto table = ramp(4, 3);
  const auto logits = ramp(2, 3);
  Tensor<float, 2> grad({2, 3}, 9.0f);
  const auto grad_before = raw(grad);
  Tensor<std::int32_t, 1> labels({2});
  SECTION("temperature 0") {
    CHECK_REFUSED(distill::SoftTargetLoss<float>(distill::TeacherLogits<float>(table), 0.0), value_error,
                  Contains("SoftTargetLoss: temperature T") && Contains("got T = 0"));
  }
  SECTION("alpha 2") {
    CHECK_REFUSED(distill::SoftTargetLoss<float>(distill::TeacherLogits<float>(table), 4.0, 2.0), value_error,
                  Contains("SoftTargetLoss: alpha must be in [0, 1], got alpha = 2"));
  }
  SECTION("a table without classes") {
    Tensor<float, 2> none({4, 0});
    CHECK_REFUSED(distill::SoftTargetLoss<float>(distill::TeacherLogits<float>(none), 4.0), shape_error,
                  Contains("cached teacher outputs [4, 0] has no classes"));
  }
  SECTION("a probability table whose rows do not sum to 1") {
    Tensor<float, 2> p({4, 3}, 0.5f);
    CHECK_REFUSED(distill::SoftTargetLoss<float>(distill::TeacherProbabilities<float>(p), 4.0), value_error,
                  Contains("SoftTargetLoss: teacher probabilities of row 0 sum to 1.5"));
  }
  SECTION("a sample index outside the table") {
    distill::SoftTargetLoss<float> loss(distill::TeacherLogits<float>(table), 4.0);
    const std::vector<index_t> batch{0, 7};
    CHECK_REFUSED((void)loss(logits, labels, batch, grad), value_error,
                  Contains("SoftTargetLoss: sample index 7 at batch position 1 is outside [0, 4)"));
  }
  SECTION("3 sample indices for 2 rows") {
    distill::SoftTargetLoss<float> loss(distill::TeacherLogits<float>(table), 4.0);
    const std::vector<index_t> batch{0, 1, 2};
    CHECK_REFUSED((void)loss(logits, labels, batch, grad), shape_error, Contains("3 sample indices for logits [2, 3]"));
  }
  SECTION("logits with 4 classes for a table of 3") {
    distill::SoftTargetLoss<float> loss(distill::TeacherLogits<float>(table), 4.0);
    const auto wide = ramp(2, 4);
    Tensor<float, 2> wide_grad({2, 4}, 9.0f);
    const auto wide_before = raw(wide_grad);
    const std::vector<index_t> batch{0, 1};
    CHECK_REFUSED((void)loss(wide, labels, batch, wide_grad), shape_error,
                  Contains("logits [2, 4] do not match the 3 classes of the cached teacher outputs [4, 3]"));
    CHECK(raw(wide_grad) == wide_before);
  }
  SECTION("a label outside the classes when alpha < 1") {
    distill::SoftTargetLoss<float> loss(distill::TeacherLogits<float>(table), 4.0, 0.5);
    labels(0) = -1;
    const std::vector<index_t> batch{0, 1};
    CHECK_REFUSED((void)loss(logits, labels, batch, grad), value_error, Contains("SoftTargetLoss: label -1 at position 0"));
  }
  CHECK(raw(grad) == grad_before);
}

// ---- ensemble ----

TEST_CASE("ensemble rules: no members, mismatched members, bad weights, temperatures and outputs, and the output stays",
          "[bad_input][ensemble]") {
  const auto a = ramp(2, 3), b = ramp(2, 3, -0.5f), wide = ramp(2, 4);
  const std::vector<TensorView<const float, 2>> members{a, b};
  Tensor<float, 2> out({2, 3}, 9.0f);
  const auto out_before = raw(out);
  SECTION("no members") {
    const std::vector<TensorView<const float, 2>> none;
    CHECK_REFUSED(ensemble::mean_probabilities<float>(none, 1.0, out), value_error, Contains("mean_probabilities: the ensemble has no members"));
  }
  SECTION("member 1 of another shape") {
    const std::vector<TensorView<const float, 2>> mixed{a, wide};
    CHECK_REFUSED(ensemble::mean_logits<float>(mixed, 1.0, out), shape_error,
                  Contains("mean_logits: member 1 has logits [2, 4], member 0 has [2, 3]"));
  }
  SECTION("one weight for two members") {
    const std::vector<double> weights{1.0};
    CHECK_REFUSED(ensemble::mean_probabilities<float>(members, weights, 1.0, out), shape_error, Contains("1 weights [1] for 2 members"));
  }
  SECTION("a negative weight") {
    const std::vector<double> weights{1.5, -0.5};
    CHECK_REFUSED(ensemble::mean_probabilities<float>(members, weights, 1.0, out), value_error,
                  Contains("weights [1.5, -0.5]: weight 1 is -0.5, expected a finite value >= 0"));
  }
  SECTION("weights summing to 0.9") {
    const std::vector<double> weights{0.45, 0.45};
    CHECK_REFUSED(ensemble::mean_logits<float>(members, weights, 1.0, out), value_error, Contains("sum to 0.9, expected 1 within 1e-06"));
  }
  SECTION("a NaN weight") {
    const std::vector<double> weights{kNaN, 1.0};
    CHECK_REFUSED(ensemble::mean_probabilities<float>(members, weights, 1.0, out), value_error, Contains("weight 0 is nan"));
  }
  SECTION("temperature 1e-39 for float") {
    CHECK_REFUSED(ensemble::mean_probabilities<float>(members, 1e-39, out), value_error, Contains("got T = 1e-39"));
  }
  SECTION("an output of another shape") {
    Tensor<float, 2> wrong({3, 3}, 9.0f);
    const auto wrong_before = raw(wrong);
    CHECK_REFUSED(ensemble::mean_probabilities<float>(members, 1.0, wrong), shape_error,
                  Contains("output [3, 3] does not match member logits [2, 3]"));
    CHECK(raw(wrong) == wrong_before);
  }
  SECTION("majority_vote into 3 entries for 2 samples") {
    Tensor<std::int32_t, 1> votes({3}, 7);
    const auto votes_before = raw(votes);
    CHECK_REFUSED(ensemble::majority_vote<float>(members, votes), shape_error,
                  Contains("majority_vote: output of 3 entries for member logits [2, 3]"));
    CHECK(raw(votes) == votes_before);
  }
  SECTION("disagreement of a single member") {
    const std::vector<TensorView<const float, 2>> one{a};
    CHECK_REFUSED((void)ensemble::disagreement<float>(one), value_error, Contains("disagreement: needs at least 2 members, got 1"));
  }
  SECTION("kl_to_ensemble at T = -1") {
    CHECK_REFUSED((void)ensemble::kl_to_ensemble<float>(members, -1.0), value_error, Contains("kl_to_ensemble") && Contains("got T = -1"));
  }
  SECTION("fit_weights with max_iterations 0") {
    Tensor<std::int32_t, 1> labels({2});
    CHECK_REFUSED((void)ensemble::fit_weights<float>(members, labels, {.max_iterations = 0}), value_error,
                  Contains("fit_weights: need max_iterations > 0 and tolerance >= 0, got 0"));
  }
  CHECK(raw(out) == out_before);
}

// ---- pipeline: ensembles ----

namespace {

/// Four blank 28×28 images (what the reference architectures take), labels 0..3.
data::Dataset<float> four_images() {
  data::Dataset<float> d;
  d.images.resize({4, 1, 28, 28});
  d.labels.resize({4});
  for (index_t i = 0; i < 4; ++i) d.labels(i) = static_cast<std::int32_t>(i);
  return d;
}

pipeline::EnsembleOptions one_quick_epoch(int& epochs) {
  pipeline::EnsembleOptions options;
  options.recipe.epochs = 1;
  options.recipe.batch = 4;
  options.threads = 1;
  options.on_epoch = [&epochs](std::size_t, const train::EpochStats&) { ++epochs; };
  return options;
}

}  // namespace

TEST_CASE("train_ensemble and train::fit: bad specs and options are refused before any epoch", "[bad_input][pipeline][ensemble]") {
  const auto data = four_images();
  const std::vector<index_t> pool{0, 1, 2, 3};
  int epochs = 0;
  auto options = one_quick_epoch(epochs);
  std::vector<pipeline::MemberSpec> specs{{.architecture = "student", .seed = 1}};
  SECTION("no members") {
    const std::vector<pipeline::MemberSpec> none;
    CHECK_REFUSED((void)pipeline::train_ensemble<float>(none, example::make_architecture<float>, data, pool, options), value_error,
                  Contains("train_ensemble: the ensemble has no members"));
  }
  SECTION("an empty pool") {
    CHECK_REFUSED((void)pipeline::train_ensemble<float>(specs, example::make_architecture<float>, data, std::span<const index_t>{}, options), value_error,
                  Contains("train_ensemble: the training pool is empty"));
  }
  SECTION("a recipe of 0 epochs") {
    options.recipe.epochs = 0;
    CHECK_REFUSED((void)pipeline::train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options), value_error,
                  Contains("recipe needs epochs > 0") && Contains("got epochs 0"));
  }
  SECTION("0 threads") {
    options.threads = 0;
    CHECK_REFUSED((void)pipeline::train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options), value_error,
                  Contains("train_ensemble: threads must be > 0, got 0"));
  }
  SECTION("an unknown architecture in the second spec") {
    specs.push_back({.architecture = "resnet", .seed = 2});
    CHECK_REFUSED((void)pipeline::train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options), value_error, Contains("unknown architecture 'resnet'"));
  }
  SECTION("a member's own recipe with batch 0") {
    specs[0].recipe = train::Recipe{.epochs = 1, .batch = 0};
    CHECK_REFUSED((void)pipeline::train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options), value_error, Contains("got epochs 1, batch 0"));
  }
  SECTION("a recipe whose augmentation has a negative shift") {
    options.recipe.augmentation = data::Augmentation{.max_shift = -2};
    CHECK_REFUSED((void)pipeline::train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options), value_error, Contains("max_shift -2"));
  }
  SECTION("train::fit with an empty loss function keeps the model") {
    auto model = nn::make_student<float>(1);
    const auto before = raw(model.parameters()[0].value);
    CHECK_REFUSED((void)train::fit<float>(model, data, pool, options.recipe, 1, train::LossFunction<float>{}), value_error,
                  Contains("fit: the loss function is empty"));
    CHECK(raw(model.parameters()[0].value) == before);
  }
  CHECK(epochs == 0);
}

TEST_CASE("load_or_train_ensemble: checkpoint directories that cannot be used are refused before any epoch",
          "[bad_input][pipeline][ensemble]") {
  const ScratchDir dir;
  const auto data = four_images();
  const std::vector<index_t> pool{0, 1, 2, 3};
  const std::vector<pipeline::MemberSpec> specs{{.architecture = "student", .seed = 1}};
  int epochs = 0;
  const auto options = one_quick_epoch(epochs);
  const auto name = [](const pipeline::MemberSpec& s) { return pipeline::member_file_name(s, 1, 4); };
  SECTION("save_dir is a regular file: io_error, the file stays") {
    const fs::path file = dir / "not-a-directory";
    std::ofstream(file) << "keep me";
    const auto before = file_bytes(file);
    const pipeline::MemberCheckpoints files{.save_dir = file, .file_name = name};
    CHECK_REFUSED((void)pipeline::load_or_train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options, files), io_error,
                  Contains("cannot use '" + file.string() + "' as an output directory"));
    CHECK(file_bytes(file) == before);
  }
  SECTION("a directory without file_name") {
    const pipeline::MemberCheckpoints files{.save_dir = dir / "teachers"};
    CHECK_REFUSED((void)pipeline::load_or_train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options, files), value_error,
                  Contains("a checkpoint directory is given but no file_name"));
    CHECK_FALSE(fs::exists(dir / "teachers"));
  }
  SECTION("a member's file in save_dir is a directory") {
    const fs::path teachers = dir / "teachers";
    fs::create_directories(teachers / name(specs[0]));
    const pipeline::MemberCheckpoints files{.save_dir = teachers, .file_name = name};
    CHECK_REFUSED((void)pipeline::load_or_train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options, files), io_error,
                  Contains(name(specs[0])) && Contains("it is a directory"));
    CHECK(fs::is_directory(teachers / name(specs[0])));
  }
  SECTION("a corrupt member file in load_dir is a format_error naming it") {
    const fs::path teachers = dir / "teachers";
    fs::create_directories(teachers);
    std::ofstream(teachers / name(specs[0])) << "not a checkpoint";
    const auto before = file_bytes(teachers / name(specs[0]));
    const pipeline::MemberCheckpoints files{.load_dir = teachers, .file_name = name};
    CHECK_REFUSED((void)pipeline::load_or_train_ensemble<float>(specs, example::make_architecture<float>, data, pool, options, files), format_error,
                  Contains(name(specs[0])) && Contains("is not a minnow checkpoint"));
    CHECK(file_bytes(teachers / name(specs[0])) == before);
  }
  CHECK(epochs == 0);
}

TEST_CASE("OnlineTeacherLoss, ensemble_logits and predict_logits: bad teachers, temperatures, weights and batches",
          "[bad_input][pipeline][ensemble]") {
  const auto data = four_images();
  auto teacher = nn::make_student<float>(3);
  const auto before = raw(teacher.parameters()[0].value);
  SECTION("no teachers") {
    CHECK_REFUSED(pipeline::OnlineTeacherLoss<float>({}, data, 4.0), value_error, Contains("OnlineTeacherLoss: the ensemble has no members"));
  }
  SECTION("a null teacher") {
    CHECK_REFUSED(pipeline::OnlineTeacherLoss<float>({&teacher, nullptr}, data, 4.0), value_error, Contains("teacher 1 is null"));
  }
  SECTION("temperature NaN") {
    CHECK_REFUSED(pipeline::OnlineTeacherLoss<float>({&teacher}, data, kNaN), value_error, Contains("got T = nan"));
  }
  SECTION("weights not summing to 1") {
    CHECK_REFUSED(pipeline::OnlineTeacherLoss<float>({&teacher, &teacher}, data, 4.0, 1.0, {0.5, 0.6}), value_error,
                  Contains("weights [0.5, 0.6] sum to 1.1"));
  }
  SECTION("ensemble_logits without models") {
    const std::vector<nn::Sequential<float>*> none;
    CHECK_REFUSED((void)pipeline::ensemble_logits<float>(none, data), value_error, Contains("ensemble_logits: the ensemble has no members"));
  }
  SECTION("predict_logits with batch 0") {
    CHECK_REFUSED((void)pipeline::predict_logits<float>(teacher, data, 0), value_error, Contains("predict_logits: batch must be > 0, got 0"));
  }
  SECTION("ensemble_soft_targets without members") {
    CHECK_REFUSED((void)pipeline::ensemble_soft_targets<float>(std::span<const Tensor<float, 2>>{}, 4.0), value_error,
                  Contains("ensemble_soft_targets: the ensemble has no members"));
  }
  CHECK(raw(teacher.parameters()[0].value) == before);
}
