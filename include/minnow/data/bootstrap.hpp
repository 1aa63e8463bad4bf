#pragma once
/// @file data/bootstrap.hpp
/// @brief Bootstrap samples for bagging, and SubsetBatchSampler, which batches any list of sample
/// indices (a bootstrap sample, a training split) of a Dataset without copying the data set.
///
/// A bootstrap sample of n indices draws n times uniformly with replacement from [0, n); about
/// 1 − (1 − 1/n)ⁿ → 1 − 1/e ≈ 63.2 % of the indices appear in it at least once (the rest, ≈ 36.8 %,
/// are the member's "out-of-bag" samples). Reproducible across standard libraries for the same reason
/// as BatchSampler: only std::seed_seq, std::mt19937_64 and minnow's uniform_below() are used.

#include <minnow/data/batches.hpp>
#include <minnow/error.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <span>
#include <utility>
#include <vector>

namespace minnow::data {

/// @brief `draws` indices drawn uniformly with replacement from [0, n), sorted ascending (the order
/// carries no information once a sampler shuffles them, and sorted gathers read memory forward).
///
/// The engine is `std::mt19937_64` seeded from `std::seed_seq{seed_lo, seed_hi, 0x62616767}` ("bagg"),
/// a stream distinct from BatchSampler's epoch streams for the same seed.
/// @param n     size of the population, >= 0 (n = 0 allows only draws = 0).
/// @param draws number of draws; -1 means n (the classic bootstrap).
/// @throws value_error when n < 0, draws < -1, or draws > 0 from an empty population.
[[nodiscard]] inline std::vector<index_t> bootstrap_indices(index_t n, std::uint64_t seed, index_t draws = -1) {
  if (n < 0) throw value_error(minnow::detail::concat("bootstrap_indices: n must be >= 0, got ", n));
  if (draws < -1) {
    throw value_error(minnow::detail::concat("bootstrap_indices: draws must be -1 (= n) or >= 0, got ", draws));
  }
  const index_t count = draws == -1 ? n : draws;
  if (count > 0 && n == 0) {
    throw value_error(minnow::detail::concat("bootstrap_indices: ", count, " draws from an empty population"));
  }
  std::seed_seq seq{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32), std::uint32_t{0x62616767}};
  std::mt19937_64 engine(seq);
  std::vector<index_t> out(static_cast<std::size_t>(count));
  for (auto& index : out) index = static_cast<index_t>(detail::uniform_below(engine, static_cast<std::uint64_t>(n)));
  std::sort(out.begin(), out.end());
  return out;
}

/// @brief Number of distinct values in `indices` (e.g. the in-bag samples of a bootstrap sample).
[[nodiscard]] inline index_t count_unique(std::span<const index_t> indices) {
  std::vector<index_t> sorted(indices.begin(), indices.end());
  std::sort(sorted.begin(), sorted.end());
  return static_cast<index_t>(std::unique(sorted.begin(), sorted.end()) - sorted.begin());
}

/// @brief `indices[positions[i]]` for every i: maps positions in a subset back to sample indices
/// (e.g. a bootstrap sample of positions in a training split to samples of the data set).
/// @throws value_error naming the first position outside [0, indices.size()).
[[nodiscard]] inline std::vector<index_t> select(std::span<const index_t> indices, std::span<const index_t> positions) {
  std::vector<index_t> out(positions.size());
  const auto n = static_cast<index_t>(indices.size());
  for (std::size_t i = 0; i < positions.size(); ++i) {
    if (positions[i] < 0 || positions[i] >= n) {
      throw value_error(minnow::detail::concat("select: position ", positions[i], " (entry ", i, ") is outside [0, ",
                                               n, ")"));
    }
    out[i] = indices[static_cast<std::size_t>(positions[i])];
  }
  return out;
}

/// @brief `[begin, end)` as a vector of indices, e.g. a training split `range_indices(0, 55000)`.
/// @throws value_error when begin < 0 or end < begin.
[[nodiscard]] inline std::vector<index_t> range_indices(index_t begin, index_t end) {
  if (begin < 0 || end < begin) {
    throw value_error(minnow::detail::concat("range_indices: need 0 <= begin <= end, got [", begin, ", ", end, ")"));
  }
  std::vector<index_t> out(static_cast<std::size_t>(end - begin));
  std::iota(out.begin(), out.end(), begin);
  return out;
}

/// @brief Mini-batches over a list of sample indices (repeats allowed), in a seeded order per epoch.
///
/// A BatchSampler over positions 0..M−1 of the list decides the order, so an epoch's batches depend only
/// on (list, seed, epoch), exactly as BatchSampler's do; batch(b) maps the positions to sample indices.
/// With the list 0..N−1 the batches are BatchSampler's own. Feed them to `train::Trainer::step(data, batch)`.
class SubsetBatchSampler {
 public:
  /// @param indices   sample indices to iterate over (copied; each must be a sample of the data set the
  ///                  batches are used with — gather() checks that).
  /// @param batch_size, seed, shuffle, drop_last  as BatchSampler.
  /// @throws value_error as BatchSampler (batch_size <= 0) or for a negative index.
  SubsetBatchSampler(std::vector<index_t> indices, index_t batch_size, std::uint64_t seed, bool shuffle = true,
                     bool drop_last = false)
      : indices_(std::move(indices)),
        positions_(static_cast<index_t>(indices_.size()), batch_size, seed, shuffle, drop_last) {
    for (std::size_t i = 0; i < indices_.size(); ++i) {
      if (indices_[i] < 0) {
        throw value_error(minnow::detail::concat("SubsetBatchSampler: index ", indices_[i], " at position ", i,
                                                 " is negative"));
      }
    }
    batch_.reserve(static_cast<std::size_t>(batch_size));
  }

  void start_epoch() { positions_.start_epoch(); }
  void set_epoch(std::uint64_t epoch) { positions_.set_epoch(epoch); }
  [[nodiscard]] std::uint64_t epoch() const noexcept { return positions_.epoch(); }
  [[nodiscard]] index_t num_batches() const noexcept { return positions_.num_batches(); }
  [[nodiscard]] index_t batch_size() const noexcept { return positions_.batch_size(); }
  /// Number of entries in the list (repeats counted).
  [[nodiscard]] index_t num_samples() const noexcept { return positions_.num_samples(); }
  [[nodiscard]] std::span<const index_t> indices() const noexcept { return indices_; }

  /// @brief The sample indices of batch `b` of the current epoch. Valid until the next batch() call.
  /// @throws value_error when `b` is not in [0, num_batches()).
  [[nodiscard]] std::span<const index_t> batch(index_t b) {
    const auto positions = positions_.batch(b);
    batch_.resize(positions.size());
    for (std::size_t i = 0; i < positions.size(); ++i) batch_[i] = indices_[static_cast<std::size_t>(positions[i])];
    return batch_;
  }

 private:
  std::vector<index_t> indices_;
  BatchSampler positions_;
  std::vector<index_t> batch_;
};

}  // namespace minnow::data
