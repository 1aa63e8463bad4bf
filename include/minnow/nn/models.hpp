#pragma once
/// @file nn/models.hpp
/// @brief The reference architectures for Fashion-MNIST (1×28×28 inputs, 10 classes): the teacher, the
/// student, and a second teacher with 5×5 kernels for ensembles of mixed architectures.

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

/// Two conv blocks (k×k kernels with "same" padding, ReLU, 2×2 max pool) and two linear layers,
/// PyTorch-initialised from `seed`. Parameter names: conv1, conv2, fc1, fc2 (each .weight and .bias).
/// @throws value_error when `kernel` is even or not positive (no "same" padding exists).
template <class T>
[[nodiscard]] Sequential<T> make_cnn(index_t c1, index_t c2, index_t hidden, std::uint64_t seed, index_t kernel = 3) {
  if (kernel < 1 || kernel % 2 == 0) {
    throw value_error(minnow::detail::concat("make_cnn: kernel must be odd and positive, got ", kernel));
  }
  std::mt19937_64 rng(seed);
  Sequential<T> net;
  net.add("conv1", Conv2d<T>(1, c1, kernel, 1, kernel / 2)).reset_parameters(rng);
  net.add("relu1", ReLU<T>());
  net.add("pool1", MaxPool2d<T>(2));
  net.add("conv2", Conv2d<T>(c1, c2, kernel, 1, kernel / 2)).reset_parameters(rng);
  net.add("relu2", ReLU<T>());
  net.add("pool2", MaxPool2d<T>(2));
  net.add("flatten", Flatten<T>());
  net.add("fc1", Linear<T>(c2 * 7 * 7, hidden)).reset_parameters(rng);
  net.add("relu3", ReLU<T>());
  net.add("fc2", Linear<T>(hidden, 10)).reset_parameters(rng);
  return net;
}

/// The teacher from the model-compression literature: conv 1→64, conv 64→128, fc 6272→1000→10 (6.4 M parameters).
template <class T>
[[nodiscard]] Sequential<T> make_teacher(std::uint64_t seed) {
  return make_cnn<T>(64, 128, 1000, seed);
}

/// The compact student: conv 1→16, conv 16→32, fc 1568→64→10 (106 k parameters).
template <class T>
[[nodiscard]] Sequential<T> make_student(std::uint64_t seed) {
  return make_cnn<T>(16, 32, 64, seed);
}

/// A second teacher that sees the image through 5×5 kernels: conv 1→32, conv 32→64, fc 3136→1024→10
/// (3.3 M parameters): a member of another architecture for mixed ensembles (`--teacher-arch
/// teacher,teacher5x5` in examples/distill.cpp; docs/results.md measures what it adds).
template <class T>
[[nodiscard]] Sequential<T> make_teacher5x5(std::uint64_t seed) {
  return make_cnn<T>(32, 64, 1024, seed, 5);
}

/// The names make_architecture() knows.
inline constexpr std::array<std::string_view, 3> architecture_names{"teacher", "teacher5x5", "student"};

/// Checks a name without building the network, so that a run can reject it before any work.
/// @throws value_error naming the unknown architecture.
inline void check_architecture(std::string_view name) {
  if (std::find(architecture_names.begin(), architecture_names.end(), name) != architecture_names.end()) return;
  std::string expected;  // "a, b or c", from the list itself so the message never lags behind it
  for (std::size_t i = 0; i < architecture_names.size(); ++i) {
    expected += i == 0 ? "" : (i + 1 == architecture_names.size() ? " or " : ", ");
    expected += architecture_names[i];
  }
  throw value_error(minnow::detail::concat("unknown architecture '", name, "' (expected ", expected, ")"));
}

/// "teacher", "teacher5x5" or "student". @throws value_error naming the unknown architecture.
template <class T>
[[nodiscard]] Sequential<T> make_architecture(std::string_view name, std::uint64_t seed) {
  check_architecture(name);
  if (name == "teacher") return make_teacher<T>(seed);
  if (name == "teacher5x5") return make_teacher5x5<T>(seed);
  return make_student<T>(seed);
}

}  // namespace minnow::nn
