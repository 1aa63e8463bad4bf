#pragma once
/// @file detail/parallel.hpp
/// @brief OpenMP helpers that compile to serial code when OpenMP is off.

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace minnow::detail {

/// Threads a parallel region would use here (1 without OpenMP).
[[nodiscard]] inline int max_threads() noexcept {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// This thread's number inside a parallel region (0 outside, and without OpenMP).
[[nodiscard]] inline int thread_id() noexcept {
#if defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}

}  // namespace minnow::detail
