#pragma once
/// @file detail/parallel.hpp
/// @brief OpenMP helpers that compile to serial code when OpenMP is off.

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <minnow/threads.hpp>

#include <atomic>
#include <exception>

#include <Eigen/Core>

namespace minnow::detail {

/// Threads a parallel region would use here (1 without OpenMP).
[[nodiscard]] inline int max_threads() noexcept {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// True inside an active parallel region (nested work should then run serially).
[[nodiscard]] inline bool in_parallel() noexcept {
#if defined(_OPENMP)
  return omp_in_parallel() != 0;
#else
  return false;
#endif
}

/// Runs `body(i, thread)` for i in [0, count) on `threads` threads with a static schedule (thread t
/// gets the same indices on every call), or serially when one thread is asked for or when already inside
/// a parallel region. Serial execution opens no OpenMP region at all: an idle region's spinning threads
/// would otherwise compete with nested work for the cores. An exception cannot leave an OpenMP region
/// (it would end the program): the first one thrown is kept, the iterations not yet started are skipped,
/// and it is rethrown after the region.
template <class Body>
void parallel_for(long count, int threads, Body&& body) {
  if (threads <= 1 || count <= 1 || in_parallel()) {
    for (long i = 0; i < count; ++i) body(i, 0);
    return;
  }
#if defined(_OPENMP)
  std::exception_ptr failure;
  std::atomic<bool> failed{false};
#pragma omp parallel for schedule(static) num_threads(threads)
  for (long i = 0; i < count; ++i) {
    if (failed.load(std::memory_order_relaxed)) continue;
    try {
      body(i, omp_get_thread_num());
    } catch (...) {
#pragma omp critical(minnow_parallel_for_failure)
      {
        if (!failure) failure = std::current_exception();
      }
      failed.store(true, std::memory_order_relaxed);
    }
  }
  if (failure) std::rethrow_exception(failure);
#else
  for (long i = 0; i < count; ++i) body(i, 0);
#endif
}

/// Runs `body(begin, end, thread)` over [0, n) split into one contiguous range per thread: range t is
/// [cut(t), cut(t + 1)) with cut(t) = ⌊n·t / threads⌋ rounded down to a multiple of `alignment` and
/// cut(threads) = n; empty ranges are skipped. The split depends on n, threads and alignment only, so
/// the same thread count gives the same ranges (and bit-identical per-range results) on every call.
/// With an alignment of a cache line's worth of elements, two threads never write the same line.
template <class Body>
void parallel_ranges(Eigen::Index n, int threads, Eigen::Index alignment, Body&& body) {
  parallel_for(threads, threads, [&](long t, int) {
    const auto cut = [&](long i) {
      if (i == threads) return n;
      const Eigen::Index even = n * i / threads;
      return even - even % alignment;
    };
    const Eigen::Index begin = cut(t), end = cut(t + 1);
    if (begin < end) body(begin, end, static_cast<int>(t));
  });
}

}  // namespace minnow::detail
