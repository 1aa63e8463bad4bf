// Tests for minnow/data/augment.hpp: the view geometry (exact, against torchvision's pad-crop-flip
// definition), the seeded draws, materialised copies, the batch augmenter, the Trainer's batch transform
// and the bad-input errors.
#include "test_support.hpp"
#include <minnow/data/augment.hpp>
#include <minnow/nn.hpp>
#include <minnow/train.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <vector>

using Catch::Matchers::Contains;
using minnow::index_t;
using minnow::Tensor;
using minnow::data::Augmentation;
using minnow::data::View;

namespace {

/// A [C, H, W] image whose pixel (c, y, x) holds 100·c + 10·y + x + 1 (every value distinct and non-zero).
Tensor<float, 3> numbered_image(index_t channels, index_t height, index_t width) {
  Tensor<float, 3> image({channels, height, width});
  for (index_t c = 0; c < channels; ++c)
    for (index_t y = 0; y < height; ++y)
      for (index_t x = 0; x < width; ++x) image(c, y, x) = static_cast<float>(100 * c + 10 * y + x + 1);
  return image;
}

/// torchvision's RandomCrop(H, padding = p) at crop offset (i, j) followed by an optional horizontal flip,
/// written from its definition: pad with `fill`, take rows i..i+H−1 and columns j..j+W−1, mirror.
Tensor<float, 3> pad_crop_flip(const Tensor<float, 3>& src, index_t p, index_t i, index_t j, bool flip, float fill) {
  const index_t c_count = src.dim(0), h = src.dim(1), w = src.dim(2);
  Tensor<float, 3> padded({c_count, h + 2 * p, w + 2 * p});
  padded.view().array().setConstant(fill);
  for (index_t c = 0; c < c_count; ++c)
    for (index_t y = 0; y < h; ++y)
      for (index_t x = 0; x < w; ++x) padded(c, y + p, x + p) = src(c, y, x);
  Tensor<float, 3> out({c_count, h, w});
  for (index_t c = 0; c < c_count; ++c)
    for (index_t y = 0; y < h; ++y)
      for (index_t x = 0; x < w; ++x) out(c, y, flip ? w - 1 - x : x) = padded(c, y + i, x + j);
  return out;
}

bool equal(minnow::TensorView<const float, 3> a, minnow::TensorView<const float, 3> b) {
  if (a.shape() != b.shape()) return false;
  for (index_t k = 0; k < a.size(); ++k)
    if (a.data()[k] != b.data()[k]) return false;
  return true;
}

}  // namespace

TEST_CASE("apply_view: a hand-checked 3x3 shift and flip", "[augment]") {
  // Pixels 1..9 row by row; shift down 1, right −1 (left 1), then mirror.
  Tensor<float, 3> src({1, 3, 3});
  for (index_t k = 0; k < 9; ++k) src.data()[k] = static_cast<float>(k + 1);
  Tensor<float, 3> dst({1, 3, 3});
  minnow::data::apply_view<float>(src.view(), dst.view(), View{1, -1, false}, -5.0F);
  // Row 0 is filled; rows 1, 2 are source rows 0, 1 moved left by one, the last column filled.
  const std::array<float, 9> shifted{-5, -5, -5, 2, 3, -5, 5, 6, -5};
  for (index_t k = 0; k < 9; ++k) CHECK(dst.data()[k] == shifted[static_cast<std::size_t>(k)]);
  minnow::data::apply_view<float>(src.view(), dst.view(), View{1, -1, true}, -5.0F);
  const std::array<float, 9> flipped{-5, -5, -5, -5, 3, 2, -5, 6, 5};
  for (index_t k = 0; k < 9; ++k) CHECK(dst.data()[k] == flipped[static_cast<std::size_t>(k)]);
  minnow::data::apply_view<float>(src.view(), dst.view(), View{0, 0, false}, -5.0F);
  CHECK(equal(dst.view(), src.view()));
  minnow::data::apply_view<float>(src.view(), dst.view(), View{3, 0, false}, -5.0F);  // shifted out entirely
  for (index_t k = 0; k < 9; ++k) CHECK(dst.data()[k] == -5.0F);
}

TEST_CASE("apply_view equals torchvision's pad-crop-flip for every offset", "[augment]") {
  const auto src = numbered_image(2, 5, 6);
  const index_t p = 2;
  Tensor<float, 3> dst(src.shape());
  for (index_t i = 0; i <= 2 * p; ++i) {
    for (index_t j = 0; j <= 2 * p; ++j) {
      for (bool flip : {false, true}) {
        // Crop offset (i, j) of the padded image moves the content by (p − i, p − j).
        minnow::data::apply_view<float>(src.view(), dst.view(), View{p - i, p - j, flip}, -0.5F);
        INFO("offset " << i << ", " << j << " flip " << flip);
        CHECK(equal(dst.view(), pad_crop_flip(src, p, i, j, flip, -0.5F).view()));
      }
    }
  }
}

TEST_CASE("draw_view is a function of (seed, stream, index), uniform over the shifts", "[augment]") {
  const Augmentation a{.max_shift = 2, .horizontal_flip = true, .fill = 0.0};
  std::array<int, 5> dy_count{}, dx_count{};
  int flips = 0;
  std::set<std::array<index_t, 3>> distinct;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const View v = minnow::data::draw_view(a, 7, 3, i);
    const View again = minnow::data::draw_view(a, 7, 3, i);
    REQUIRE((v.dy == again.dy && v.dx == again.dx && v.flip == again.flip));
    REQUIRE((v.dy >= -2 && v.dy <= 2 && v.dx >= -2 && v.dx <= 2));
    ++dy_count[static_cast<std::size_t>(v.dy + 2)];
    ++dx_count[static_cast<std::size_t>(v.dx + 2)];
    flips += v.flip ? 1 : 0;
    distinct.insert({v.dy, v.dx, v.flip ? 1 : 0});
  }
  CHECK(distinct.size() == 50);  // every one of the 5 × 5 × 2 views occurs
  // Each shift value has probability 1/5: 4000 expected, sd ≈ 57; 6 sd of slack.
  for (int k = 0; k < 5; ++k) {
    CHECK(std::abs(dy_count[static_cast<std::size_t>(k)] - n / 5) < 350);
    CHECK(std::abs(dx_count[static_cast<std::size_t>(k)] - n / 5) < 350);
  }
  CHECK(std::abs(flips - n / 2) < 450);  // sd ≈ 71
  // Another seed or stream gives other views.
  int same_seed = 0, same_stream = 0;
  for (int i = 0; i < 1000; ++i) {
    const View v = minnow::data::draw_view(a, 7, 3, i), s = minnow::data::draw_view(a, 8, 3, i),
               t = minnow::data::draw_view(a, 7, 4, i);
    same_seed += (v.dy == s.dy && v.dx == s.dx && v.flip == s.flip) ? 1 : 0;
    same_stream += (v.dy == t.dy && v.dx == t.dx && v.flip == t.flip) ? 1 : 0;
  }
  CHECK(same_seed < 60);  // 1000/50 = 20 expected by chance
  CHECK(same_stream < 60);
  // No flip and no shift when switched off.
  const View none = minnow::data::draw_view(Augmentation{.max_shift = 0, .horizontal_flip = false}, 7, 3, 11);
  CHECK((none.dy == 0 && none.dx == 0 && !none.flip));
}

TEST_CASE("with_augmented_copies keeps the originals and appends the drawn views", "[augment]") {
  minnow::data::Dataset<float> data;
  data.images.resize({3, 1, 4, 4});
  data.labels.resize({3});
  for (index_t k = 0; k < data.images.size(); ++k) data.images.data()[k] = static_cast<float>(k + 1);
  for (index_t i = 0; i < 3; ++i) data.labels(i) = static_cast<std::int32_t>(7 - i);
  const Augmentation a{.max_shift = 1, .horizontal_flip = true, .fill = -1.0};
  const auto out = minnow::data::with_augmented_copies<float>(data, a, 2, 42);
  REQUIRE(out.size() == 9);
  Tensor<float, 3> expected({1, 4, 4});
  for (index_t k = 0; k <= 2; ++k) {
    for (index_t i = 0; i < 3; ++i) {
      CHECK(out.labels(k * 3 + i) == data.labels(i));
      if (k == 0) {
        CHECK(equal(out.images.view()[i], data.images.view()[i]));
      } else {
        minnow::data::apply_view<float>(data.images.view()[i], expected.view(),
                                        minnow::data::draw_view(a, 42, static_cast<std::uint64_t>(k), i), -1.0F);
        CHECK(equal(out.images.view()[k * 3 + i], expected.view()));
      }
    }
  }
  CHECK(minnow::data::with_augmented_copies<float>(data, a, 0, 42).size() == 3);
}

TEST_CASE("BatchAugmenter transforms each image by its sample's view for the step", "[augment]") {
  Tensor<float, 4> batch({4, 1, 5, 5});
  for (index_t k = 0; k < batch.size(); ++k) batch.data()[k] = static_cast<float>(k % 97 + 1);
  Tensor<float, 4> original(batch.shape());
  original.view().array() = batch.view().array();
  const Augmentation a{.max_shift = 2, .horizontal_flip = true, .fill = 0.25};
  minnow::data::BatchAugmenter<float> augment(a, 5);
  const std::vector<index_t> indices{10, 3, 99, 4};
  augment(batch.view(), indices, 17);
  Tensor<float, 3> expected({1, 5, 5});
  int changed = 0;
  for (index_t n = 0; n < 4; ++n) {
    const View v = minnow::data::draw_view(a, 5, 17, indices[static_cast<std::size_t>(n)]);
    minnow::data::apply_view<float>(original.view()[n], expected.view(), v, 0.25F);
    CHECK(equal(batch.view()[n], expected.view()));
    changed += equal(batch.view()[n], original.view()[n]) ? 0 : 1;
  }
  CHECK(changed > 0);
  const std::vector<index_t> too_few{1, 2};
  CHECK_THAT(test_support::message_of<minnow::shape_error>([&] { augment(batch.view(), too_few, 0); }),
             Contains("2 indices") && Contains("[4, 1, 5, 5]"));
}

TEST_CASE("Trainer applies the batch transform to each gathered batch before the forward pass", "[augment]") {
  minnow::data::Dataset<float> data;
  data.images.resize({8, 1, 4, 4});
  data.labels.resize({8});
  for (index_t k = 0; k < data.images.size(); ++k) data.images.data()[k] = static_cast<float>(k % 13) / 13.0F;
  for (index_t i = 0; i < 8; ++i) data.labels(i) = static_cast<std::int32_t>(i % 2);
  minnow::nn::Sequential<float> model;
  model.add("flatten", minnow::nn::Flatten<float>{});
  model.add("fc", minnow::nn::Linear<float>(16, 2)).weight().array().setConstant(0.5F);
  minnow::nn::Sgd<float> sgd(model.parameters(), 0.1);
  minnow::train::Trainer<float> trainer(model, sgd);
  trainer.set_progress(false);
  std::vector<std::int64_t> steps;
  std::vector<index_t> seen;
  trainer.set_batch_transform([&](minnow::TensorView<float, 4> images, std::span<const index_t> indices, std::int64_t step) {
    steps.push_back(step);
    seen.insert(seen.end(), indices.begin(), indices.end());
    CHECK(images.dim(0) == static_cast<index_t>(indices.size()));
    // The batch holds the gathered samples, untransformed, when the transform runs.
    for (std::size_t n = 0; n < indices.size(); ++n) {
      CHECK(images(static_cast<index_t>(n), 0, 1, 2) == data.images(indices[n], 0, 1, 2));
    }
    images.array().setZero();  // all-zero inputs: the weights get no gradient, only the bias does
  });
  const auto weights_before = model.parameters()[0].value.array().eval();
  minnow::data::BatchSampler sampler(8, 4, 1);
  trainer.train_epoch(data, sampler);
  CHECK(steps == std::vector<std::int64_t>{0, 1});
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<index_t>{0, 1, 2, 3, 4, 5, 6, 7});
  CHECK((model.parameters()[0].value.array() == weights_before).all());  // the forward pass saw the zeros
}

TEST_CASE("augmentation rejects bad settings with typed errors", "[augment]") {
  using minnow::value_error;
  CHECK_THAT(test_support::message_of<value_error>([] { minnow::data::BatchAugmenter<float>(Augmentation{.max_shift = -1}, 1); }),
             Contains("max_shift") && Contains("-1"));
  CHECK_THROWS_AS(minnow::data::BatchAugmenter<float>(Augmentation{.max_shift = index_t{1} << 21}, 1), value_error);
  CHECK_THAT(test_support::message_of<value_error>([] {
               minnow::data::BatchAugmenter<float>(Augmentation{.fill = std::numeric_limits<double>::quiet_NaN()}, 1);
             }),
             Contains("fill"));
  minnow::data::Dataset<float> data;
  data.images.resize({1, 1, 2, 2});
  data.labels.resize({1});
  CHECK_THAT(test_support::message_of<value_error>([&] { (void)minnow::data::with_augmented_copies<float>(data, {}, -1, 1); }),
             Contains("copies") && Contains("-1"));
  Tensor<float, 3> a({1, 2, 2}), b({1, 2, 3});
  CHECK_THAT(test_support::message_of<minnow::shape_error>([&] { minnow::data::apply_view<float>(a.view(), b.view(), View{}, 0.0F); }),
             Contains("[1, 2, 2]") && Contains("[1, 2, 3]"));
  CHECK(minnow::data::black_level(minnow::data::Normalization{.mean = 0.25, .stddev = 0.5}) == -0.5);
}
