#pragma once
/// @file dataset.hpp
/// @brief minnow::data::Dataset: normalised images [N, 1, H, W] with their integer labels, and
/// make_dataset(), which builds one from the raw bytes an IDX reader returns.

#include <minnow/error.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstdint>

namespace minnow::data {

/// @brief A labelled image classification data set held in memory.
/// @tparam T floating-point element type of the images.
template <std::floating_point T>
struct Dataset {
  /// Normalised pixels, shape [N, 1, H, W] (one channel, NCHW like the convolution layers expect).
  Tensor<T, 4> images;
  /// Class index of each sample, shape [N]; every label lies in [0, classes) of make_dataset.
  Tensor<std::int32_t, 1> labels;

  /// @brief Number of samples N.
  [[nodiscard]] index_t size() const noexcept { return labels.dim(0); }
};

/// @brief Per-channel normalisation applied after scaling bytes to [0, 1]:
/// `value = (byte / 255 - mean) / stddev`.
///
/// The deviation is called `stddev`, not `std`, so that inside code using this struct `std::` keeps
/// meaning the namespace to every reader.
struct Normalization {
  double mean = 0.0;    ///< subtracted after dividing by 255
  double stddev = 1.0;  ///< divided by last; must be finite and > 0
};

/// @brief Builds a Dataset from unsigned-byte images [N, H, W] and labels [N] in [0, classes).
/// @tparam T      floating-point element type of the result.
/// @param classes the number of classes: every label kept must lie in [0, classes), so a bad label is found
///                here, naming its sample, and not halfway through an epoch.
/// @param limit   keep at most the first `limit` samples; -1 keeps all of them.
/// @throws shape_error  when the image and label counts differ (the message gives both).
/// @throws value_error  when `classes < 1`, `limit < -1` or `norm` has a non-finite mean or a stddev that is not > 0.
/// @throws format_error when a label lies outside [0, classes) (the message gives its sample index and value).
template <std::floating_point T>
[[nodiscard]] Dataset<T> make_dataset(TensorView<const std::uint8_t, 3> images, TensorView<const std::int32_t, 1> labels,
                                      index_t classes, Normalization norm, index_t limit = -1) {
  if (classes < 1) throw value_error(minnow::detail::concat("make_dataset: classes must be >= 1, got ", classes));
  if (images.dim(0) != labels.dim(0)) {
    throw shape_error(minnow::detail::concat("make_dataset: ", images.dim(0), " images ", to_string(images.shape()),
                                             " but ", labels.dim(0), " labels"));
  }
  if (limit < -1) {
    throw value_error(minnow::detail::concat("make_dataset: limit must be -1 (all) or >= 0, got ", limit));
  }
  if (!std::isfinite(norm.mean) || !std::isfinite(norm.stddev) || !(norm.stddev > 0.0)) {
    throw value_error(minnow::detail::concat("make_dataset: normalization needs a finite mean and a finite stddev > 0, got mean ",
                                             norm.mean, ", stddev ", norm.stddev));
  }
  const index_t count = limit == -1 ? images.dim(0) : std::min(limit, images.dim(0));
  // Validate before allocating anything, so a bad label never leaves a half-built data set behind.
  for (index_t i = 0; i < count; ++i) {
    if (labels(i) < 0 || labels(i) >= classes) {
      throw format_error(minnow::detail::concat("make_dataset: sample ", i, " has label ", labels(i), "; labels must lie in [0, ",
                                                classes, ")"));
    }
  }

  // 256 possible bytes: normalise each once in double, then every pixel is one table lookup and the
  // result does not depend on the order of floating-point operations.
  std::array<T, 256> table{};
  for (int byte = 0; byte < 256; ++byte) {
    table[static_cast<std::size_t>(byte)] = static_cast<T>((byte / 255.0 - norm.mean) / norm.stddev);
  }

  Dataset<T> out;
  out.images.resize({count, 1, images.dim(1), images.dim(2)});
  out.labels.resize({count});
  const std::uint8_t* source = images.data();
  T* target = out.images.data();
  const index_t pixels = out.images.size();
  for (index_t i = 0; i < pixels; ++i) target[i] = table[source[i]];
  std::copy_n(labels.data(), count, out.labels.data());
  return out;
}

/// @brief Overload for owning tensors, e.g. the results of read_idx_images() and read_idx_labels()
/// passed directly (an exact match, so no conversion to views is needed).
template <std::floating_point T>
[[nodiscard]] Dataset<T> make_dataset(const Tensor<std::uint8_t, 3>& images, const Tensor<std::int32_t, 1>& labels,
                                      index_t classes, Normalization norm, index_t limit = -1) {
  return make_dataset<T>(images.view(), labels.view(), classes, norm, limit);
}

}  // namespace minnow::data
