#pragma once
/// @file quant/detail/finite_range.hpp
/// @brief Internal: the min and max of one batch for the histogram observers, which reject NaN and ±Inf.
/// Include <minnow/quant.hpp> (or a quant/ header) instead of this one.

#include <minnow/quant/concepts.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

namespace minnow::quant::detail {

/// Smallest and largest of `values` (a non-empty batch). Every value is read before anything is
/// decided, so a rejected batch leaves the caller's state untouched.
/// @throws value_error "<context>: expected finite values, got NaN or Inf" if any value is NaN or ±Inf.
[[nodiscard]] inline Range finite_range(const ChannelValues<const float>& values, const char* context) {
  float bmin = std::numeric_limits<float>::infinity(), bmax = -bmin;
  bool finite = true;
  for (index_t c = 0; c < values.chunks; ++c) {
    const float* x = values.data + c * values.stride;
    for (index_t i = 0; i < values.chunk_size; ++i) {
      finite &= std::isfinite(x[i]);
      bmin = std::min(bmin, x[i]);
      bmax = std::max(bmax, x[i]);
    }
  }
  if (!finite) throw value_error(minnow::detail::concat(context, ": expected finite values, got NaN or Inf"));
  return {bmin, bmax};
}

}  // namespace minnow::quant::detail
