#pragma once
/// @file detail/row_blocks.hpp
/// @brief Internal: row-wise work over a `rows × cols` matrix in cache-sized blocks of rows, and the Eigen
/// exp/log that every scalar type may use. Shared by distill/ (softmax, KD loss) and ensemble/ (the
/// combination rules). Include a module header instead of this one.

#include <minnow/config.hpp>
#include <minnow/detail/parallel.hpp>
#include <minnow/tensor.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <type_traits>

namespace minnow::detail {

/// Elements per block of rows: a block of every work buffer of a kernel then stays in L1/L2.
inline constexpr index_t kBlockElements = 4096;
/// Matrices with fewer elements are processed on the calling thread: waking a second one costs more.
inline constexpr index_t kParallelElements = 1 << 16;

/// A contiguous run of elements in user memory (alignment unknown).
template <class T>
using RowMap = Eigen::Map<ArrayX<T>>;
template <class T>
using ConstRowMap = Eigen::Map<const ArrayX<T>>;
/// A run of elements in a work buffer, which starts on a 64-byte boundary.
template <class T>
using AlignedMap = Eigen::Map<ArrayX<T>, Eigen::Aligned64>;

/// Whether Eigen's vectorized exp/log may be used for scalar S. GCC 12 with AVX-512 reports Eigen's
/// double kernels as reading uninitialized values inside its own intrinsics (GCC PR 105593), which
/// -Werror builds cannot accept; double is the gradient-checking type, so there it takes std::exp/std::log.
template <class S>
inline constexpr bool kPacketMath =
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13 && defined(__AVX512F__)
    !std::is_same_v<S, double>;
#else
    true;
#endif

/// Element-wise exp of an Eigen array expression (see kPacketMath).
template <class Derived>
[[nodiscard]] auto array_exp(const Eigen::ArrayBase<Derived>& x) {
  using S = typename Derived::Scalar;
  if constexpr (kPacketMath<S>) {
    return x.exp();
  } else {
    return x.unaryExpr([](S v) { return std::exp(v); });
  }
}

/// Element-wise log of an Eigen array expression (see kPacketMath).
template <class Derived>
[[nodiscard]] auto array_log(const Eigen::ArrayBase<Derived>& x) {
  using S = typename Derived::Scalar;
  if constexpr (kPacketMath<S>) {
    return x.log();
  } else {
    return x.unaryExpr([](S v) { return std::log(v); });
  }
}

/// Threads worth using for `elements` elements of row-wise work.
[[nodiscard]] inline int threads_for(index_t elements) noexcept {
  return elements >= kParallelElements ? max_threads() : 1;
}

/// Rows per block for rows of `cols` elements (at least one).
[[nodiscard]] inline index_t block_rows(index_t cols) noexcept {
  return std::max<index_t>(1, kBlockElements / std::max<index_t>(cols, 1));
}

/// `count` elements rounded up to whole 64-byte lines, so buffers carved one after another stay aligned.
template <class T>
[[nodiscard]] constexpr index_t padded(index_t count) noexcept {
  constexpr index_t line = MINNOW_ALIGNMENT / static_cast<index_t>(sizeof(T));
  return (count + line - 1) / line * line;
}

/// Runs `body(begin, end, thread)` over blocks of rows [begin, end) of a `rows × cols` matrix.
template <class Body>
void for_each_row_block(index_t rows, index_t cols, int threads, Body&& body) {
  const index_t block = block_rows(cols);
  const long blocks = static_cast<long>((rows + block - 1) / block);
  parallel_for(blocks, threads, [&](long b, int thread) {
    const index_t begin = static_cast<index_t>(b) * block;
    body(begin, std::min(rows, begin + block), thread);
  });
}

}  // namespace minnow::detail
