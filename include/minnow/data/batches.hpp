#pragma once
/// @file batches.hpp
/// @brief Seeded, reproducible mini-batches: BatchSampler permutes sample indices, gather() copies
/// one batch out of a Dataset. The data set itself is never copied or reordered.
///
/// Reproducibility across compilers and standard libraries: the shuffle uses only what the C++
/// standard specifies exactly (std::seed_seq, std::mt19937_64) plus minnow's own Fisher–Yates and
/// bounded integers. std::shuffle and std::uniform_int_distribution are avoided on purpose, since
/// their results differ between libstdc++, libc++ and MSVC.

#include <minnow/data/dataset.hpp>
#include <minnow/error.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <numeric>
#include <random>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

namespace minnow::data {

namespace detail {

/// An unbiased integer in [0, bound), bound > 0. Draws below 2^64 mod bound are rejected, so the
/// accepted range [2^64 mod bound, 2^64) is a whole number of copies of [0, bound).
[[nodiscard]] inline std::uint64_t uniform_below(std::mt19937_64& engine, std::uint64_t bound) noexcept {
  const std::uint64_t threshold = (std::uint64_t{0} - bound) % bound;
  for (;;) {
    const std::uint64_t draw = engine();
    if (draw >= threshold) return draw % bound;
  }
}

}  // namespace detail

/// @brief Splits sample indices 0..N-1 into mini-batches, in a seeded random order per epoch
/// (training) or in order (evaluation).
///
/// The order of epoch `e` depends only on `seed` and `e`: the engine is `std::mt19937_64` seeded
/// from `std::seed_seq{seed_lo, seed_hi, e_lo, e_hi}` (32-bit halves), and the identity permutation is
/// shuffled by Fisher–Yates from the last position down, `j = uniform_below(i + 1)`. So a run
/// resumed at epoch `e` with set_epoch(e) sees the same batches as an uninterrupted one.
/// The permutation is rebuilt in place: no allocation after construction.
class BatchSampler {
 public:
  /// @param num_samples N >= 0.
  /// @param batch_size  samples per batch, > 0.
  /// @param seed        seeds every epoch's order (unused when `shuffle` is false).
  /// @param shuffle     false: indices in order 0..N-1 every epoch (evaluation).
  /// @param drop_last   true: leave out the last batch when it has fewer than `batch_size` samples.
  /// @throws value_error when `num_samples < 0` or `batch_size <= 0`.
  BatchSampler(index_t num_samples, index_t batch_size, std::uint64_t seed, bool shuffle = true,
               bool drop_last = false)
      : num_samples_(num_samples), batch_size_(batch_size), seed_(seed), shuffle_(shuffle), drop_last_(drop_last) {
    if (num_samples < 0) {
      throw value_error(minnow::detail::concat("BatchSampler: num_samples must be >= 0, got ", num_samples));
    }
    if (batch_size <= 0) {
      throw value_error(minnow::detail::concat("BatchSampler: batch_size must be > 0, got ", batch_size));
    }
    order_.resize(static_cast<std::size_t>(num_samples));
    arrange();
  }

  /// @brief An in-order sampler for evaluation: batches 0..B-1, B-1..2B-1, ..., last one partial.
  [[nodiscard]] static BatchSampler sequential(index_t num_samples, index_t batch_size) {
    return BatchSampler(num_samples, batch_size, 0, /*shuffle=*/false, /*drop_last=*/false);
  }

  /// @brief Begins the next epoch: 0 on the first call after construction, then 1, 2, ...
  /// (A new sampler already holds epoch 0's order, so calling this first is optional.)
  void start_epoch() { set_epoch(next_epoch_); }

  /// @brief Begins epoch `epoch` (e.g. when resuming training); the next start_epoch() begins `epoch + 1`.
  void set_epoch(std::uint64_t epoch) {
    epoch_ = epoch;
    next_epoch_ = epoch + 1;
    arrange();
  }

  /// @brief The epoch whose order batch() currently returns.
  [[nodiscard]] std::uint64_t epoch() const noexcept { return epoch_; }

  /// @brief Number of batches per epoch: ceil(N / batch_size), or floor with drop_last.
  [[nodiscard]] index_t num_batches() const noexcept {
    return num_samples_ / batch_size_ + (!drop_last_ && num_samples_ % batch_size_ != 0 ? 1 : 0);
  }

  /// @brief The sample indices of batch `b` of the current epoch (batch_size of them, fewer for a
  /// partial last batch). Valid until the next start_epoch()/set_epoch().
  /// @throws value_error when `b` is not in [0, num_batches()).
  [[nodiscard]] std::span<const index_t> batch(index_t b) const {
    if (b < 0 || b >= num_batches()) {
      throw value_error(minnow::detail::concat("BatchSampler::batch: batch ", b, " is not in [0, ", num_batches(),
                                               ")"));
    }
    const index_t begin = b * batch_size_;
    const index_t count = std::min(batch_size_, num_samples_ - begin);
    return {order_.data() + begin, static_cast<std::size_t>(count)};
  }

  /// @brief The whole permutation of the current epoch (all N indices, including any dropped tail).
  [[nodiscard]] std::span<const index_t> order() const noexcept { return order_; }

  [[nodiscard]] index_t num_samples() const noexcept { return num_samples_; }
  [[nodiscard]] index_t batch_size() const noexcept { return batch_size_; }
  [[nodiscard]] std::uint64_t seed() const noexcept { return seed_; }
  [[nodiscard]] bool shuffles() const noexcept { return shuffle_; }
  [[nodiscard]] bool drops_last() const noexcept { return drop_last_; }

 private:
  // Starts from the identity each time, so an epoch's order never depends on the previous epochs.
  void arrange() {
    std::iota(order_.begin(), order_.end(), index_t{0});
    if (!shuffle_ || order_.size() < 2) return;
    std::seed_seq seq{static_cast<std::uint32_t>(seed_), static_cast<std::uint32_t>(seed_ >> 32),
                      static_cast<std::uint32_t>(epoch_), static_cast<std::uint32_t>(epoch_ >> 32)};
    std::mt19937_64 engine(seq);
    for (std::size_t i = order_.size() - 1; i > 0; --i) {
      const auto j = static_cast<std::size_t>(detail::uniform_below(engine, i + 1));
      std::swap(order_[i], order_[j]);
    }
  }

  index_t num_samples_;
  index_t batch_size_;
  std::uint64_t seed_;
  bool shuffle_;
  bool drop_last_;
  std::uint64_t epoch_ = 0;
  std::uint64_t next_epoch_ = 0;
  std::vector<index_t> order_;
};

namespace detail {

template <std::floating_point T>
void check_batch_indices(const Dataset<T>& data, std::span<const index_t> indices) {
  const index_t n = data.size();
  for (std::size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] < 0 || indices[i] >= n) {
      throw value_error(minnow::detail::concat("gather: index ", indices[i], " (position ", i,
                                               ") is not a sample of a data set of ", n));
    }
  }
}

}  // namespace detail

/// @brief What a training loop needs from a sampler for one epoch: its batches as index spans.
/// BatchSampler (every sample) and SubsetBatchSampler (any index list, e.g. a bootstrap sample) qualify.
template <class S>
concept EpochSampler = requires(S& sampler, index_t b) {
  { sampler.num_batches() } -> std::convertible_to<index_t>;
  { sampler.batch_size() } -> std::convertible_to<index_t>;
  { sampler.epoch() } -> std::convertible_to<std::uint64_t>;
  { sampler.batch(b) } -> std::convertible_to<std::span<const index_t>>;
};

/// @brief Copies the samples `indices` of `data` into `images_out` [k, C, H, W] and `labels_out` [k],
/// k = indices.size(), in the order given.
/// @throws shape_error when an output does not have that shape (nothing is written then).
/// @throws value_error when an index is not in [0, data.size()) (nothing is written then).
template <std::floating_point T>
void gather(const Dataset<T>& data, std::span<const index_t> indices,
            std::type_identity_t<TensorView<T, 4>> images_out,
            std::type_identity_t<TensorView<std::int32_t, 1>> labels_out) {
  const auto k = static_cast<index_t>(indices.size());
  const Shape<4> image_shape{k, data.images.dim(1), data.images.dim(2), data.images.dim(3)};
  if (images_out.shape() != image_shape || labels_out.dim(0) != k) {
    throw shape_error(minnow::detail::concat("gather: a batch of ", k, " needs outputs ", to_string(image_shape),
                                             " and [", k, "], got ", to_string(images_out.shape()), " and ",
                                             to_string(labels_out.shape())));
  }
  detail::check_batch_indices(data, indices);
  const index_t stride = data.images.dim(1) * data.images.dim(2) * data.images.dim(3);
  for (index_t i = 0; i < k; ++i) {
    const index_t sample = indices[static_cast<std::size_t>(i)];
    std::copy_n(data.images.data() + sample * stride, stride, images_out.data() + i * stride);
    labels_out(i) = data.labels(sample);
  }
}

/// @brief As above, but first resizes the output tensors to the batch (reusing their buffers, so a
/// training loop stops allocating after the first batch; a partial last batch just shrinks them).
template <std::floating_point T>
void gather(const Dataset<T>& data, std::span<const index_t> indices, Tensor<T, 4>& images_out,
            Tensor<std::int32_t, 1>& labels_out) {
  detail::check_batch_indices(data, indices);
  const auto k = static_cast<index_t>(indices.size());
  images_out.resize({k, data.images.dim(1), data.images.dim(2), data.images.dim(3)});
  labels_out.resize({k});
  gather(data, indices, images_out.view(), labels_out.view());
}

}  // namespace minnow::data
