#pragma once
// What every minnow benchmark binary shares: the thread count switch, a counter of every heap
// allocation of the process, and main(). Include it in exactly one translation unit per binary.
#include <benchmark/benchmark.h>

#include <minnow/detail/parallel.hpp>

#include <atomic>
#include <cstddef>
#include <cstring>

namespace bench {

inline std::atomic<long> allocations{0};

/// Heap allocations so far; the difference around a call is what the call allocated.
inline long allocation_count() noexcept { return allocations.load(std::memory_order_relaxed); }

/// Threads for minnow's OpenMP regions and for Eigen.
inline void set_threads(int threads) { minnow::set_threads(threads); }

/// Copies `count` floats with `threads` threads, each copying one contiguous part: the machine's
/// read + write bandwidth baseline that streaming kernels are compared with in the same run.
inline void parallel_copy(float* dst, const float* src, std::ptrdiff_t count, int threads) {
  minnow::detail::parallel_for(threads, threads, [&](long part, int) {
    const std::ptrdiff_t begin = count * part / threads, end = count * (part + 1) / threads;
    std::memcpy(dst + begin, src + begin, static_cast<std::size_t>(end - begin) * sizeof(float));
  });
}

/// Registers with `register_all`, then runs the benchmarks selected on the command line.
inline int run(int argc, char** argv, void (*register_all)()) {
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace bench

// Counts every heap allocation of the process: malloc is the bottom of operator new, of Eigen's
// aligned_malloc and of aligned operator new (glibc: these interpose libc's symbols).
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void* malloc(std::size_t size) {
  bench::allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(size);
}
void* calloc(std::size_t n, std::size_t size) {
  bench::allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(n, size);
}
void* realloc(void* p, std::size_t size) {
  bench::allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(p, size);
}
void* aligned_alloc(std::size_t alignment, std::size_t size) {
  bench::allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(alignment, size);
}
int posix_memalign(void** out, std::size_t alignment, std::size_t size) {
  bench::allocations.fetch_add(1, std::memory_order_relaxed);
  *out = __libc_memalign(alignment, size);
  return *out ? 0 : 12;  // ENOMEM
}
}
