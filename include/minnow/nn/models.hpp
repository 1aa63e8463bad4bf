#pragma once
/// @file nn/models.hpp
/// @brief A small CNN for any image size and class count (make_cnn), and the reference architectures for
/// Fashion-MNIST (1×28×28 inputs, 10 classes): the teacher, the student, and a second teacher with 5×5 kernels
/// for ensembles of mixed architectures.

#include <minnow/error.hpp>
#include <minnow/nn/activations.hpp>
#include <minnow/nn/conv2d.hpp>
#include <minnow/nn/linear.hpp>
#include <minnow/nn/maxpool2d.hpp>
#include <minnow/nn/sequential.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

namespace minnow::nn {

/// The images a network takes, `[channels, height, width]`, and the number of classes it tells apart.
/// The defaults are Fashion-MNIST's.
struct ImageTask {
  index_t channels = 1, height = 28, width = 28;
  index_t classes = 10;
};

/// The widths of make_cnn's layers: output channels of the two convolutions, the hidden units, and the
/// (odd) kernel size.
struct CnnWidths {
  index_t conv1 = 16, conv2 = 32, hidden = 64;
  index_t kernel = 3;
};

/// Two conv blocks (k×k kernels with "same" padding, ReLU, 2×2 max pool) and two linear layers,
/// PyTorch-initialised from `seed`. Parameter names: conv1, conv2, fc1, fc2 (each .weight and .bias). fc1 sees
/// `conv2 · ⌊⌊H/2⌋/2⌋ · ⌊⌊W/2⌋/2⌋` features, as the pools drop odd rows and columns.
/// @throws value_error when the kernel is even or not positive (no "same" padding exists), a width or the class
/// count is not positive, or the image is smaller than 4×4 (the two pools would leave nothing).
template <class T>
[[nodiscard]] Sequential<T> make_cnn(const ImageTask& task, const CnnWidths& widths, std::uint64_t seed) {
  const index_t kernel = widths.kernel;
  if (kernel < 1 || kernel % 2 == 0) {
    throw value_error(minnow::detail::concat("make_cnn: kernel must be odd and positive, got ", kernel));
  }
  if (widths.conv1 <= 0 || widths.conv2 <= 0 || widths.hidden <= 0 || task.classes <= 0 || task.channels <= 0) {
    throw value_error(minnow::detail::concat("make_cnn: widths ", widths.conv1, ", ", widths.conv2, ", ", widths.hidden,
                                             ", channels ", task.channels, " and classes ", task.classes, " must be positive"));
  }
  if (task.height < 4 || task.width < 4) {
    throw value_error(minnow::detail::concat("make_cnn: images of ", task.height, "×", task.width,
                                             " are too small for two 2×2 pools (4×4 at least)"));
  }
  const index_t features = minnow::detail::checked_product(
      std::array<index_t, 3>{widths.conv2, task.height / 4, task.width / 4}, "make_cnn: fc1's input features");
  std::mt19937_64 rng(seed);
  Sequential<T> net;
  net.add("conv1", Conv2d<T>(task.channels, widths.conv1, kernel, 1, kernel / 2)).reset_parameters(rng);
  net.add("relu1", ReLU<T>());
  net.add("pool1", MaxPool2d<T>(2));
  net.add("conv2", Conv2d<T>(widths.conv1, widths.conv2, kernel, 1, kernel / 2)).reset_parameters(rng);
  net.add("relu2", ReLU<T>());
  net.add("pool2", MaxPool2d<T>(2));
  net.add("flatten", Flatten<T>());
  net.add("fc1", Linear<T>(features, widths.hidden)).reset_parameters(rng);
  net.add("relu3", ReLU<T>());
  net.add("fc2", Linear<T>(widths.hidden, task.classes)).reset_parameters(rng);
  return net;
}

/// The teacher from the model-compression literature: conv 1→64, conv 64→128, fc 6272→1000→10 (6.4 M parameters).
template <class T>
[[nodiscard]] Sequential<T> make_teacher(std::uint64_t seed) {
  return make_cnn<T>(ImageTask{}, {.conv1 = 64, .conv2 = 128, .hidden = 1000}, seed);
}

/// The compact student: conv 1→16, conv 16→32, fc 1568→64→10 (106 k parameters).
template <class T>
[[nodiscard]] Sequential<T> make_student(std::uint64_t seed) {
  return make_cnn<T>(ImageTask{}, {.conv1 = 16, .conv2 = 32, .hidden = 64}, seed);
}

/// A second teacher that sees the image through 5×5 kernels: conv 1→32, conv 32→64, fc 3136→1024→10
/// (3.3 M parameters): a member of another architecture for mixed ensembles (docs/results.md measures what it adds to an ensemble).
template <class T>
[[nodiscard]] Sequential<T> make_teacher5x5(std::uint64_t seed) {
  return make_cnn<T>(ImageTask{}, {.conv1 = 32, .conv2 = 64, .hidden = 1024, .kernel = 5}, seed);
}

}  // namespace minnow::nn
