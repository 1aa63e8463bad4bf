#pragma once
/// @file error.hpp
/// @brief The exception types minnow throws. Every message names what was expected and what was given.

#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>

namespace minnow {

/// Tensor shapes that do not fit together (reshape counts, layer inputs, masks, qparams).
struct shape_error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

/// An argument whose value is out of its domain (amount > 1, temperature <= 0, NaN scale, ...).
struct value_error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

/// A file whose content is not what its format promises (wrong magic, truncated, foreign checkpoint).
struct format_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// A file or directory that cannot be opened, read or written.
struct io_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {

/// Streams every argument into one string: the message builder for the errors above.
template <class... Parts>
[[nodiscard]] std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

}  // namespace detail
}  // namespace minnow
