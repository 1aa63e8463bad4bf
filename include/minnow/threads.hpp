#pragma once
/// @file threads.hpp
/// @brief How many threads minnow's kernels use.

#include <minnow/error.hpp>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace minnow {

/// The most threads set_threads accepts.
inline constexpr int max_thread_count = 4096;

/// @brief Sets how many threads minnow's kernels and Eigen's products use on the calling thread.
///
/// The setting is OpenMP's thread count for the calling thread (its nthreads ICV), which Eigen also reads
/// when its own global setting is left alone, as minnow leaves it: threads that call set_threads with
/// different counts do not disturb each other. Without OpenMP everything runs on one thread. The same
/// seed and thread count give bit-identical results.
/// @throws value_error unless 1 <= threads <= max_thread_count (nothing is changed).
inline void set_threads(int threads) {
  if (threads < 1 || threads > max_thread_count) {
    throw value_error(detail::concat("set_threads: the thread count must be in [1, ", max_thread_count, "], got ", threads));
  }
#if defined(_OPENMP)
  omp_set_num_threads(threads);
#endif
}

}  // namespace minnow
