#pragma once
/// @file threads.hpp
/// @brief How many threads minnow's kernels use.

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <Eigen/Core>

namespace minnow {

/// Sets the threads minnow's kernels and Eigen use (OpenMP's thread count when OpenMP is on; the setting
/// is per calling thread). The same seed and thread count give bit-identical results.
inline void set_threads(int threads) {
#if defined(_OPENMP)
  omp_set_num_threads(threads);
#endif
  Eigen::setNbThreads(threads);
}

}  // namespace minnow
