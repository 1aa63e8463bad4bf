#pragma once
// The networks the examples know by name ("teacher", "teacher5x5", "student"), for their --arch options and
// the checkpoint tags of their files. A program of your own builds its network directly (nn::make_cnn).
#include <minnow/error.hpp>
#include <minnow/nn/models.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace example {

inline constexpr std::array<std::string_view, 3> architecture_names{"teacher", "teacher5x5", "student"};

/// Checks a name without building the network, so that a run can reject it before any work.
/// @throws minnow::value_error naming the unknown architecture and the known ones.
inline void check_architecture(std::string_view name) {
  if (std::find(architecture_names.begin(), architecture_names.end(), name) != architecture_names.end()) return;
  std::string expected;  // "a, b or c", from the list itself so the message never lags behind it
  for (std::size_t i = 0; i < architecture_names.size(); ++i) {
    expected += i == 0 ? "" : (i + 1 == architecture_names.size() ? " or " : ", ");
    expected += architecture_names[i];
  }
  throw minnow::value_error("unknown architecture '" + std::string(name) + "' (expected " + expected + ")");
}

/// The network named `name`, initialised from `seed`; a pipeline::ModelBuilder.
template <class T>
[[nodiscard]] minnow::nn::Sequential<T> make_architecture(std::string_view name, std::uint64_t seed) {
  check_architecture(name);
  if (name == "teacher") return minnow::nn::make_teacher<T>(seed);
  if (name == "teacher5x5") return minnow::nn::make_teacher5x5<T>(seed);
  return minnow::nn::make_student<T>(seed);
}

}  // namespace example
