#pragma once
/// @file data/augment.hpp
/// @brief Seeded image augmentation: a random translation (torchvision's `RandomCrop(H, padding = s)`
/// with a constant fill) and a random horizontal flip. Applied to a gathered batch in place
/// (`train::Trainer::set_batch_transform`), or materialised as extra copies of a data set, so that a
/// teacher's outputs on the augmented images can be computed once and cached for distillation.
///
/// A view is drawn from (seed, stream, sample index) alone, by a splitmix64 hash, so the same sample
/// gets the same view in every run and on every thread count, and a teacher and a student asked for
/// (seed, stream, index) see the same image. The stream is the training step for on-the-fly
/// augmentation and the copy number for materialised copies.

#include <minnow/data/dataset.hpp>
#include <minnow/error.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <vector>

namespace minnow::data {

/// @brief What a random view may do to an image.
struct Augmentation {
  index_t max_shift = 2;        ///< in [0, 2²⁰]: shift by (dy, dx), each uniform in [−max_shift, max_shift]
  bool horizontal_flip = true;  ///< mirror left–right with probability 1/2
  double fill = 0.0;            ///< value of the pixels shifted in (use black_level() for normalised data)
};

/// @brief The normalised value of a black pixel, `(0 − mean) / stddev`: what torchvision's zero fill
/// becomes once Normalize runs after RandomCrop.
[[nodiscard]] inline double black_level(const Normalization& norm) noexcept { return -norm.mean / norm.stddev; }

/// @brief One drawn view: the content moves down by `dy` and right by `dx` pixels, then is mirrored
/// left–right when `flip`.
struct View {
  index_t dy = 0;
  index_t dx = 0;
  bool flip = false;
};

namespace detail {

[[nodiscard]] constexpr std::uint64_t splitmix64(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// An integer in [0, bound) from the top 32 bits of `bits` (bias below 2⁻³² · bound, immaterial here).
[[nodiscard]] constexpr index_t below(std::uint64_t bits, index_t bound) noexcept {
  return static_cast<index_t>(((bits >> 32) * static_cast<std::uint64_t>(bound)) >> 32);
}

inline void check_augmentation(const char* what, const Augmentation& a) {
  if (a.max_shift < 0 || a.max_shift > (index_t{1} << 20) || !std::isfinite(a.fill)) {
    throw value_error(minnow::detail::concat(what, ": max_shift must be in [0, 2^20] and fill finite, got max_shift ",
                                             a.max_shift, ", fill ", a.fill));
  }
}

}  // namespace detail

/// @brief The view of sample `index` in stream `stream`: `h = splitmix64(splitmix64(splitmix64(seed) ^
/// stream) ^ index)`, then dy, dx and flip from independent bit fields of `splitmix64(h)`, `splitmix64(h + 1)`
/// and bit 0 of h.
[[nodiscard]] constexpr View draw_view(const Augmentation& a, std::uint64_t seed, std::uint64_t stream,
                                       index_t index) noexcept {
  const std::uint64_t h =
      detail::splitmix64(detail::splitmix64(detail::splitmix64(seed) ^ stream) ^ static_cast<std::uint64_t>(index));
  const index_t span = 2 * a.max_shift + 1;
  return {detail::below(detail::splitmix64(h), span) - a.max_shift,
          detail::below(detail::splitmix64(h + 1), span) - a.max_shift, a.horizontal_flip && (h & 1U) != 0};
}

/// @brief Writes `view` of the image `src` [C, H, W] into `dst` [C, H, W] (not aliasing `src`):
/// `dst(c, y, x) = src(c, y − dy, x' − dx)` with `x' = W − 1 − x` when flipped, else x; `fill` outside.
/// @throws shape_error when the shapes differ.
template <std::floating_point T>
void apply_view(TensorView<const T, 3> src, TensorView<T, 3> dst, const View& view, T fill) {
  if (src.shape() != dst.shape()) {
    throw shape_error(minnow::detail::concat("apply_view: source ", to_string(src.shape()), " and destination ",
                                             to_string(dst.shape()), " differ"));
  }
  const index_t channels = src.dim(0), height = src.dim(1), width = src.dim(2);
  for (index_t c = 0; c < channels; ++c) {
    for (index_t y = 0; y < height; ++y) {
      const index_t sy = y - view.dy;
      T* out = &dst(c, y, 0);
      if (sy < 0 || sy >= height) {
        std::fill(out, out + width, fill);
        continue;
      }
      const T* in = &src(c, sy, 0);
      for (index_t x = 0; x < width; ++x) {
        const index_t sx = (view.flip ? width - 1 - x : x) - view.dx;
        out[x] = sx >= 0 && sx < width ? in[sx] : fill;
      }
    }
  }
}

/// @brief Augments a batch in place, as a `train::Trainer` batch transform: image n of `images` [N, C, H, W]
/// (sample `indices[n]`) gets `draw_view(augmentation, seed, step, indices[n])`. Keeps one image of scratch
/// space, so after the first call it does not allocate.
template <std::floating_point T>
class BatchAugmenter {
 public:
  /// @throws value_error for a negative max_shift or a non-finite fill.
  BatchAugmenter(Augmentation augmentation, std::uint64_t seed) : augmentation_(augmentation), seed_(seed) {
    detail::check_augmentation("BatchAugmenter", augmentation_);
  }

  /// @throws shape_error when `indices` does not have one entry per image.
  void operator()(TensorView<T, 4> images, std::span<const index_t> indices, std::int64_t step) {
    if (static_cast<index_t>(indices.size()) != images.dim(0)) {
      throw shape_error(minnow::detail::concat("BatchAugmenter: ", indices.size(), " indices for a batch of ",
                                               to_string(images.shape())));
    }
    const Shape<3> shape{images.dim(1), images.dim(2), images.dim(3)};
    scratch_.resize(static_cast<std::size_t>(shape[0] * shape[1] * shape[2]));
    const T fill = static_cast<T>(augmentation_.fill);
    for (index_t n = 0; n < images.dim(0); ++n) {
      const View view = draw_view(augmentation_, seed_, static_cast<std::uint64_t>(step), indices[static_cast<std::size_t>(n)]);
      if (view.dy == 0 && view.dx == 0 && !view.flip) continue;
      auto image = images[n];
      std::copy_n(image.data(), image.size(), scratch_.data());
      apply_view<T>(TensorView<const T, 3>(scratch_.data(), shape), image, view, fill);
    }
  }

 private:
  Augmentation augmentation_;
  std::uint64_t seed_;
  std::vector<T> scratch_;  // a vector, not a Tensor, so that the augmenter is copyable (std::function)
};

/// @brief `data` followed by `copies` augmented copies of it: sample `k·N + i` (k = 1…copies) is sample i
/// under `draw_view(augmentation, seed, k, i)`, with i's label. Sample i < N is the original. A teacher's
/// outputs on the result can be cached like on any data set, and a student trained on it sees each
/// image in 1 + copies fixed views.
/// @throws value_error for copies < 0 or a bad augmentation.
template <std::floating_point T>
[[nodiscard]] Dataset<T> with_augmented_copies(const Dataset<T>& data, const Augmentation& augmentation, int copies,
                                               std::uint64_t seed) {
  detail::check_augmentation("with_augmented_copies", augmentation);
  if (copies < 0) throw value_error(minnow::detail::concat("with_augmented_copies: copies must be >= 0, got ", copies));
  const index_t n = data.size();
  const index_t total = n * (1 + copies);
  Dataset<T> out;
  out.images.resize({total, data.images.dim(1), data.images.dim(2), data.images.dim(3)});
  out.labels.resize({total});
  const T fill = static_cast<T>(augmentation.fill);
  for (index_t k = 0; k <= copies; ++k) {
    for (index_t i = 0; i < n; ++i) {
      const auto src = data.images.view()[i];
      auto dst = out.images.view()[k * n + i];
      if (k == 0) {
        std::copy_n(src.data(), src.size(), dst.data());
      } else {
        apply_view<T>(src, dst, draw_view(augmentation, seed, static_cast<std::uint64_t>(k), i), fill);
      }
      out.labels(k * n + i) = data.labels(i);
    }
  }
  return out;
}

}  // namespace minnow::data
