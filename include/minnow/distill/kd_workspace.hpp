#pragma once
/// @file distill/kd_workspace.hpp
/// @brief KdWorkspace: the reusable scratch buffers of the KD loss kernels, so that a warm loss call
/// allocates nothing.

#include <minnow/distill/softmax.hpp>
#include <minnow/tensor.hpp>

#include <cstddef>
#include <vector>

namespace minnow::distill {

/// @brief Reusable buffers of the KD kernels. Pass the same workspace to every call: once it has grown
/// to the largest batch, a loss evaluation allocates nothing. Use one workspace per calling thread
/// (the kernels' own OpenMP threads each get their slice of it).
/// @tparam T scalar type.
template <class T>
class KdWorkspace {
 public:
  KdWorkspace() = default;
  // Copies start empty: buffers are scratch, never state (this keeps SoftTargetLoss copyable).
  KdWorkspace(const KdWorkspace&) noexcept {}
  KdWorkspace& operator=(const KdWorkspace&) noexcept { return *this; }
  KdWorkspace(KdWorkspace&&) noexcept = default;
  KdWorkspace& operator=(KdWorkspace&&) noexcept = default;
  ~KdWorkspace() = default;

  /// Makes room for `threads` threads on row blocks of `block_rows × cols`, and per-row results of `rows`
  /// rows. Buffers only grow, so a smaller batch after a larger one allocates nothing.
  void reserve(int threads, index_t block_rows, index_t cols, index_t rows) {
    block_ = detail::padded<T>(block_rows * cols);
    small_ = detail::padded<T>(block_rows);
    if (per_thread_.size() < static_cast<std::size_t>(threads)) per_thread_.resize(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) per_thread_[static_cast<std::size_t>(t)].resize({3 * block_ + small_});
    rows_.resize({2 * rows});
  }
  /// Block buffer `which` (0, 1 or 2) of `thread`, 64-byte aligned.
  [[nodiscard]] T* block(int thread, int which) noexcept {
    return per_thread_[static_cast<std::size_t>(thread)].data() + which * block_;
  }
  /// The per-row buffer of `thread`: one element per row of a block, 64-byte aligned.
  [[nodiscard]] T* small(int thread) noexcept {
    return per_thread_[static_cast<std::size_t>(thread)].data() + 3 * block_;
  }
  /// Per-row KL divergences (first `rows`) and cross-entropies (next `rows`).
  [[nodiscard]] double* row_results() noexcept { return rows_.data(); }

 private:
  std::vector<Tensor<T, 1>> per_thread_;
  Tensor<double, 1> rows_;
  index_t block_ = 0, small_ = 0;
};

namespace detail {

/// The workspace used by the overloads that take none: one per thread, kept warm between calls.
template <class T>
[[nodiscard]] KdWorkspace<T>& default_workspace() {
  thread_local KdWorkspace<T> workspace;
  return workspace;
}

}  // namespace detail

}  // namespace minnow::distill
