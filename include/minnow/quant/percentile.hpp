#pragma once
/// @file quant/percentile.hpp
/// @brief `Percentile(p)`: the range [quantile(1 − p/100), quantile(p/100)] of the values, which ignores
/// the few outliers a min/max range would stretch the grid for.
///
/// - One batch: quantiles as `torch.quantile` computes them (linear interpolation): with the values
///   sorted ascending as v[0..n), `rank = q · (n − 1)` in float32, `below = ⌊rank⌋`, `above = ⌈rank⌉`,
///   `quantile = lerp(v[below], v[above], rank − below)`. Two O(n) selections (nth_element), no sort.
/// - Several batches: the range is the running mean of the per-batch quantiles, each batch weighing the
///   same (the rule TensorRT-style calibrators use). Memory stays O(1) between batches, and the result
///   does not depend on how much data a single batch brought. Batches of very different sizes or
///   distributions should use `Histogram` or `MseOptimal` instead.
/// - Non-finite values are rejected (value_error): a quantile over NaN has no meaning.

#include <minnow/quant/concepts.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace minnow::quant {

namespace detail {

/// `torch.lerp(a, b, w)` for float: exact at both ends.
[[nodiscard]] inline float lerp_like_torch(float a, float b, float w) noexcept {
  return std::abs(w) < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w);
}

/// Quantile q ∈ [0, 1] of `values` (reordered in place) as torch.quantile computes it.
[[nodiscard]] inline float quantile_in_place(std::vector<float>& values, double q) {
  const auto n = static_cast<index_t>(values.size());
  const float rank = static_cast<float>(q) * static_cast<float>(n - 1);
  auto below = static_cast<index_t>(rank);
  below = std::clamp<index_t>(below, 0, n - 1);
  const auto above = std::min<index_t>(static_cast<index_t>(std::ceil(rank)), n - 1);
  const auto at_below = values.begin() + below;
  std::nth_element(values.begin(), at_below, values.end());
  const float low = *at_below;
  // After nth_element everything right of `below` is ≥ it: the next order statistic is their minimum.
  const float high = above == below ? low : *std::min_element(at_below + 1, values.end());
  return lerp_like_torch(low, high, rank - static_cast<float>(below));
}

}  // namespace detail

/// @brief Range = [quantile(1 − p/100), quantile(p/100)], averaged over batches (see the file comment).
/// Satisfies `Observer`.
class Percentile {
 public:
  /// @param p the upper percentile, in [50, 100] (e.g. 99.99). @throws value_error otherwise.
  explicit Percentile(double p = 99.99) : p_(p) {
    if (!(p >= 50.0 && p <= 100.0)) {
      throw value_error(minnow::detail::concat("Percentile: p must be in [50, 100], got ", p));
    }
  }

  /// Adds one batch (ignored when empty). @throws value_error on NaN or ±Inf (nothing changes).
  void observe(ChannelValues<const float> values) {
    if (values.size() == 0) return;
    std::vector<float> scratch;
    scratch.reserve(static_cast<std::size_t>(values.size()));
    bool finite = true;
    for (index_t c = 0; c < values.chunks; ++c) {
      const float* x = values.data + c * values.stride;
      for (index_t i = 0; i < values.chunk_size; ++i) {
        finite &= std::isfinite(x[i]);
        scratch.push_back(x[i]);
      }
    }
    if (!finite) throw value_error("Percentile::observe: expected finite values, got NaN or Inf");
    // 1 − p/100 and p/100 are rounded to float as torch.quantile rounds a Python float q.
    const float low = detail::quantile_in_place(scratch, 1.0 - p_ / 100.0);
    const float high = detail::quantile_in_place(scratch, p_ / 100.0);
    low_sum_ += static_cast<double>(low);
    high_sum_ += static_cast<double>(high);
    ++batches_;
  }

  /// Mean of the per-batch quantiles; [0, 0] before anything was observed. The grid does not matter.
  [[nodiscard]] Range range(QRange /*grid*/) const {
    if (batches_ == 0) return {};
    const auto n = static_cast<double>(batches_);
    return {static_cast<float>(low_sum_ / n), static_cast<float>(high_sum_ / n)};
  }

  void reset() noexcept {
    low_sum_ = high_sum_ = 0.0;
    batches_ = 0;
  }

  [[nodiscard]] bool empty() const noexcept { return batches_ == 0; }
  [[nodiscard]] double p() const noexcept { return p_; }
  /// Batches observed since construction or the last reset.
  [[nodiscard]] std::int64_t batches() const noexcept { return batches_; }

 private:
  double p_;
  double low_sum_ = 0.0, high_sum_ = 0.0;
  std::int64_t batches_ = 0;
};

}  // namespace minnow::quant
