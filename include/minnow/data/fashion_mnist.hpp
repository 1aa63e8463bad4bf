#pragma once
/// @file fashion_mnist.hpp
/// @brief Loads Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017) from its four IDX files.
///
/// The files are looked up in default_fashion_mnist_dir(): `$MINNOW_FASHION_MNIST_DIR` when set,
/// else /usr/share/datasets/fashion-mnist, where Debian's `dataset-fashion-mnist` package installs them.

#include <minnow/data/dataset.hpp>
#include <minnow/data/idx.hpp>
#include <minnow/error.hpp>
#include <minnow/tensor.hpp>

#include <concepts>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace minnow::data {

/// @brief Fashion-MNIST's usual normalisation: mean and standard deviation of the 60000 training
/// images after dividing by 255, rounded to 4 digits as published with PyTorch examples.
/// (Exact values: mean 0.2860406, stddev 0.3530242; normalised, the training set then has mean
/// 1.15e-4 and stddev 1.00007.)
inline constexpr Normalization fashion_mnist_normalization{0.2860, 0.3530};
/// Fashion-MNIST's ten classes (T-shirt/top … ankle boot).
inline constexpr index_t fashion_mnist_classes = 10;

/// @brief The directory Fashion-MNIST is loaded from by default:
/// `$MINNOW_FASHION_MNIST_DIR` if set and not empty, else `/usr/share/datasets/fashion-mnist`.
[[nodiscard]] inline std::filesystem::path default_fashion_mnist_dir() {
  if (const char* dir = std::getenv("MINNOW_FASHION_MNIST_DIR"); dir != nullptr && *dir != '\0') return dir;
  return "/usr/share/datasets/fashion-mnist";
}

/// @brief A training and a test split.
template <std::floating_point T>
struct TrainTest {
  Dataset<T> train;  ///< 60000 samples for the full Fashion-MNIST
  Dataset<T> test;   ///< 10000 samples for the full Fashion-MNIST
};

namespace detail {

/// The file `stem` in `dir`, raw or with ".gz" (raw first: it loads faster).
[[nodiscard]] inline std::filesystem::path find_idx_file(const std::filesystem::path& dir, const std::string& stem) {
  std::error_code ec;
  const std::filesystem::path raw = dir / stem;
  if (std::filesystem::is_regular_file(raw, ec)) return raw;
  const std::filesystem::path gz = dir / (stem + ".gz");
  if (std::filesystem::is_regular_file(gz, ec)) return gz;
  throw io_error(minnow::detail::concat("load_fashion_mnist: neither '", raw.string(), "' nor '", gz.string(),
                                        "' exists (see default_fashion_mnist_dir() for where the data set is looked for)"));
}

template <std::floating_point T>
[[nodiscard]] Dataset<T> load_split(const std::filesystem::path& dir, const std::string& prefix, Normalization norm,
                                    index_t limit) {
  const std::filesystem::path images_path = find_idx_file(dir, prefix + "-images-idx3-ubyte");
  const std::filesystem::path labels_path = find_idx_file(dir, prefix + "-labels-idx1-ubyte");
  const Tensor<std::uint8_t, 3> images = read_idx_images(images_path);
  const Tensor<std::int32_t, 1> labels = read_idx_labels(labels_path);
  if (images.dim(0) != labels.dim(0)) {
    // Checked here, not only in make_dataset, so that the message names the two files.
    throw format_error(minnow::detail::concat("load_fashion_mnist: '", images_path.string(), "' has ", images.dim(0),
                                              " images but '", labels_path.string(), "' has ", labels.dim(0),
                                              " labels"));
  }
  return make_dataset<T>(images, labels, fashion_mnist_classes, norm, limit);
}

}  // namespace detail

/// @brief Loads the Fashion-MNIST training and test splits from `dir`.
///
/// Each of `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
/// `t10k-labels-idx1-ubyte` may be present raw or gzip-compressed (with a `.gz` suffix).
/// @param train_limit, test_limit keep at most that many samples of each split; -1 keeps all.
/// @throws io_error     when `dir` or one of the files is missing (the message says how to install it).
/// @throws format_error when a file is malformed, or an image file and its label file disagree on the count.
template <std::floating_point T>
[[nodiscard]] TrainTest<T> load_fashion_mnist(const std::filesystem::path& dir = default_fashion_mnist_dir(),
                                              Normalization norm = fashion_mnist_normalization,
                                              index_t train_limit = -1, index_t test_limit = -1) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    throw io_error(minnow::detail::concat(
        "load_fashion_mnist: directory '", dir.string(),
        "' is not an existing directory; install the data set with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu, into "
        "/usr/share/datasets/fashion-mnist), or download the four IDX files from "
        "https://github.com/zalandoresearch/fashion-mnist and set MINNOW_FASHION_MNIST_DIR to their directory"));
  }
  if (train_limit < -1 || test_limit < -1) {  // fail before reading 50 MB, not after
    throw value_error(minnow::detail::concat("load_fashion_mnist: limits must be -1 (all) or >= 0, got train_limit ",
                                             train_limit, ", test_limit ", test_limit));
  }
  TrainTest<T> out;
  out.train = detail::load_split<T>(dir, "train", norm, train_limit);
  out.test = detail::load_split<T>(dir, "t10k", norm, test_limit);
  if (out.train.images.dim(2) != out.test.images.dim(2) || out.train.images.dim(3) != out.test.images.dim(3)) {
    throw format_error(minnow::detail::concat("load_fashion_mnist: training images are ", out.train.images.dim(2), "x",
                                              out.train.images.dim(3), " but test images are ", out.test.images.dim(2),
                                              "x", out.test.images.dim(3), " in '", dir.string(), "'"));
  }
  return out;
}

}  // namespace minnow::data
