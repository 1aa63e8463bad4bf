#pragma once
/// @file prune/mask.hpp
/// @brief Pruning masks: 0/1 tensors shaped like the weights; applying and composing them.
///
/// A mask has the weights' scalar type T (1 keeps, 0 prunes), not uint8. Why: applying it is a
/// streaming kernel bound by memory traffic, and a T mask is read with the same vector loads as the
/// weights, with no widening step; PyTorch keeps masks in the parameter's dtype too, so masks move
/// between the two unchanged. The cost is 3 more bytes per float weight of storage while pruning;
/// report.hpp counts the compressed (bitmap / CSR) sizes a pruned model is stored in.
///
/// Applying a mask *selects*, it does not multiply: a pruned entry becomes +0 whatever it held, so a
/// NaN or infinite weight (or gradient) at a pruned position cannot survive as NaN = NaN · 0.

#include <minnow/detail/parallel.hpp>
#include <minnow/prune/amount.hpp>
#include <minnow/error.hpp>
#include <minnow/tensor.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <span>
#include <type_traits>

namespace minnow::prune {

/// @brief The scalar types pruning works on: IEEE float and double (magnitude ranking reads their bits).
template <class T>
concept Scalar = std::same_as<T, float> || std::same_as<T, double>;

/// @brief `M` is `T` or `const T`: lets a function take a mask view or a read-only one.
template <class M, class T>
concept ElementOf = std::same_as<std::remove_const_t<M>, T>;

namespace detail {

/// @brief Eigen functor `x` where `m != 0`, else +0; vectorized as `x AND NOT (m == 0)`.
template <class T>
struct keep_op {
  EIGEN_STRONG_INLINE T operator()(const T& x, const T& m) const { return m != T(0) ? x : T(0); }
  template <class Packet>
  EIGEN_STRONG_INLINE Packet packetOp(const Packet& x, const Packet& m) const {
    return Eigen::internal::pandnot(x, Eigen::internal::pcmp_eq(m, Eigen::internal::pzero(m)));
  }
};

}  // namespace detail
}  // namespace minnow::prune

namespace Eigen::internal {

/// Lets Eigen use keep_op's packet path wherever the scalar's packets support comparisons.
template <class T>
struct functor_traits<minnow::prune::detail::keep_op<T>> {
  enum { Cost = NumTraits<T>::AddCost, PacketAccess = packet_traits<T>::HasCmp };
};

}  // namespace Eigen::internal

namespace minnow::prune {
namespace detail {

/// Elements per block of the fused kernel: 16 KiB of float mask stays in L1 while every target
/// (weights, gradient, optimizer state) streams past it.
inline constexpr index_t kBlock = 4096;
/// Below this many elements one thread streams faster than a parallel region starts.
inline constexpr index_t kParallelMin = index_t{1} << 16;

/// Threads worth using for a streaming pass over `n` elements.
[[nodiscard]] inline int stream_threads(index_t n) noexcept {
  return n < kParallelMin ? 1 : minnow::detail::max_threads();
}

/// Runs `body(begin, end)` over [0, n) in contiguous per-thread ranges whose inner boundaries are
/// multiples of 16 elements (whole cache lines, so threads never write the same line).
template <class Body>
void for_ranges(index_t n, Body&& body) {
  minnow::detail::parallel_ranges(n, stream_threads(n), 16, [&](index_t begin, index_t end, int) { body(begin, end); });
}

/// @brief Sets every target to 0 where `mask` is 0, in one pass: block by block, the mask block is
/// loaded once and applied to each target. Sizes are the caller's to check.
template <Scalar T>
void keep_where(const T* mask, std::span<T* const> targets, index_t n) {
  for_ranges(n, [&](index_t begin, index_t end) {
    for (index_t b = begin; b < end; b += kBlock) {
      const index_t len = std::min(kBlock, end - b);
      const Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> m(mask + b, len);
      for (T* target : targets) {
        Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> x(target + b, len);
        x = x.binaryExpr(m, keep_op<T>{});
      }
    }
  });
}

}  // namespace detail

/// @brief A mask that keeps everything: all ones, shaped `shape`.
template <Scalar T, std::size_t R>
[[nodiscard]] Tensor<T, R> ones_mask(const Shape<R>& shape) {
  return Tensor<T, R>(shape, T(1));
}

/// @brief Number of kept (non-zero) entries of a mask.
template <class M, std::size_t R>
  requires Scalar<std::remove_const_t<M>>
[[nodiscard]] index_t count_kept(TensorView<M, R> mask) {
  using T = std::remove_const_t<M>;
  index_t kept = 0;
  for (index_t i = 0; i < mask.size(); ++i) kept += mask.data()[i] != T(0) ? 1 : 0;
  return kept;
}

/// @brief Checks that every entry of `mask` is 0 or 1.
/// @throws value_error naming the first offending flat index and its value ("entry 7 is 0.5").
template <class M, std::size_t R>
  requires Scalar<std::remove_const_t<M>>
void validate_mask(TensorView<M, R> mask, const char* context = "prune") {
  using T = std::remove_const_t<M>;
  const T* data = mask.data();
  for (index_t i = 0; i < mask.size(); ++i) {
    if (data[i] != T(0) && data[i] != T(1)) {
      throw value_error(minnow::detail::concat(context, ": mask entries must be 0 or 1, entry ", i, " of ",
                                               to_string(mask.shape()), " is ", detail::show(static_cast<double>(data[i]))));
    }
  }
}

/// @brief `x ← x ⊙ mask` in place: entries where the mask is 0 become +0, the others keep their
/// value (see the file comment: a select, so NaN/inf at pruned positions become 0 too).
///
/// The hot path: `mask` is not re-validated here (masks built by minnow::prune are 0/1 by
/// construction; validate a foreign mask once with validate_mask or compose). Large tensors are
/// split over threads in contiguous ranges.
/// @throws shape_error naming both shapes when they differ.
template <Scalar T, class M, std::size_t R>
  requires ElementOf<M, T>
void apply(TensorView<T, R> x, TensorView<M, R> mask) {
  check_same_shape("prune::apply", "tensor", x.shape(), "mask", mask.shape());
  T* const targets[] = {x.data()};
  detail::keep_where<T>(mask.data(), targets, x.size());
}

/// @brief `mask ← mask ⊙ other`: composes a new mask onto an old one (what is pruned stays pruned).
/// @throws shape_error naming both shapes; value_error when `other` holds anything but 0 and 1.
template <Scalar T, class M, std::size_t R>
  requires ElementOf<M, T>
void compose(TensorView<T, R> mask, TensorView<M, R> other) {
  check_same_shape("prune::compose", "other mask", other.shape(), "mask", mask.shape());
  validate_mask(other, "prune::compose");
  T* const targets[] = {mask.data()};
  detail::keep_where<T>(other.data(), targets, mask.size());
}

}  // namespace minnow::prune
