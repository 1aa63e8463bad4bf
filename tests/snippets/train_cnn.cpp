// README "One call each": a small CNN trained and evaluated on the user's own [N, C, H, W] images.
// The code between the snippet markers appears verbatim in README.md.
#include "../test_support.hpp"

#include <minnow/data/dataset.hpp>
#include <minnow/nn/models.hpp>
#include <minnow/threads.hpp>
#include <minnow/train.hpp>

#include <random>

namespace {

/// `n` RGB images of 16 × 16, label i % 4: the quadrant 0..3 (row-major) where all three channels are
/// brighter by 1, on noise of standard deviation 0.3. A task a small CNN learns in a few epochs.
minnow::data::Dataset<float> quadrant_images(minnow::index_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.3f);
  minnow::data::Dataset<float> d;
  d.images.resize({n, 3, 16, 16});
  d.labels.resize({n});
  for (minnow::index_t i = 0; i < n; ++i) {
    const auto label = static_cast<std::int32_t>(i % 4);
    d.labels(i) = label;
    for (minnow::index_t c = 0; c < 3; ++c) {
      for (minnow::index_t y = 0; y < 16; ++y) {
        for (minnow::index_t x = 0; x < 16; ++x) {
          const bool bright = (y / 8) * 2 + (x / 8) == label;
          d.images(i, c, y, x) = noise(rng) + (bright ? 1.0f : 0.0f);
        }
      }
    }
  }
  return d;
}

}  // namespace

TEST_CASE("train: a small CNN on your own [N, C, H, W] data in one call", "[snippets][train]") {
  const auto train_images = quadrant_images(640, 1), test_images = quadrant_images(200, 2);
  minnow::set_threads(1);  // the accuracy below is for one thread's summation order
  // snippet begin: train
  // train_images, test_images: minnow::data::Dataset<float>, images [N, 3, 16, 16] and labels [N] in 0..3
  auto model = minnow::nn::make_cnn<float>({.channels = 3, .height = 16, .width = 16, .classes = 4},
                                           {.conv1 = 8, .conv2 = 16, .hidden = 32}, /*seed=*/1);
  const minnow::train::Recipe recipe{.epochs = 4, .batch = 32, .learning_rate = 0.05};  // Nesterov SGD, cosine
  const auto history = minnow::train::fit<float>(model, train_images, recipe, /*seed=*/1);  // loss per epoch
  const auto test = minnow::train::evaluate(model, test_images);                            // loss, accuracy
  // snippet end
  REQUIRE(history.size() == 4);
  CHECK(history.back().train.loss < history.front().train.loss);
  CHECK(test.samples == 200);
  CHECK(test.accuracy >= 0.95);
}
