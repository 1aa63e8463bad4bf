#pragma once
/// @file quant/detail/stream.hpp
/// @brief Internal: how the quantization kernels split a streaming pass over threads.
/// Include <minnow/quant.hpp> (or a quant/ header) instead of this one.

#include <minnow/detail/parallel.hpp>
#include <minnow/tensor.hpp>

namespace minnow::quant::detail {

/// Below this many elements one thread streams faster than a parallel region starts.
inline constexpr index_t kParallelMin = index_t{1} << 16;

/// Threads worth using for a streaming pass over `n` elements.
[[nodiscard]] inline int stream_threads(index_t n) noexcept {
  return n < kParallelMin ? 1 : minnow::detail::max_threads();
}

/// Runs `body(begin, end, thread)` over [0, n) in one contiguous range per thread. Inner boundaries are
/// multiples of 16 elements (whole cache lines of floats), so two threads never write the same line and
/// a range of an aligned buffer starts aligned.
template <class Body>
void for_ranges(index_t n, Body&& body) {
  minnow::detail::parallel_ranges(n, stream_threads(n), 16, body);
}

}  // namespace minnow::quant::detail
