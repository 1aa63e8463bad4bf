#pragma once
/// @file quant/mse_observer.hpp
/// @brief `MseOptimal`: the clipping range that minimises the mean squared quantization error of an
/// affine grid, searched over a candidate set and evaluated on a histogram of everything observed.
///
/// - Histogram: `bins` equal bins, each keeping count, Σx and Σx² of its values (double). The first
///   batch with two distinct values sets the bins over [min, max]; a later batch that falls outside
///   doubles the bin width (merging pairs of bins, growing to the left or to the right) until it fits,
///   so no count is ever split or moved approximately. Memory is O(bins) whatever was observed.
/// - Error of a candidate range: its affine qparams as SEMANTICS.md gives them (range extended to
///   include 0, `scale = max((hi − lo)/(qmax − qmin), eps)`, `zero_point = clamp(qmin − rint(lo/scale))`);
///   each bin's values go to the level of the bin's mean, so its squared error is exactly
///   `Σx² − 2·x̂·Σx + n·x̂²` (exact whenever the bin lies within one quantization cell).
/// - Candidates: each side of [min, max] that lies away from 0 shrinks towards 0 independently,
///   `min·i/steps`, `max·j/steps` for i, j = 1…steps (steps² candidates, including [min, max] itself, so
///   the result is never worse on the histogram than MinMax's range). All are evaluated (O(steps² · bins)
///   per `range` call, a few ms); ties go to the wider range.
/// - Non-finite values are rejected (value_error).

#include <minnow/quant/concepts.hpp>
#include <minnow/quant/detail/finite_range.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace minnow::quant {

/// Options of `MseOptimal`.
struct MseOptions {
  index_t bins = 2048;  ///< histogram bins (even)
  index_t steps = 32;   ///< shrink steps per side: steps² candidate ranges
};

/// @brief The MSE-optimal clipping range (see the file comment). Satisfies `Observer`.
class MseOptimal {
 public:
  MseOptimal() : MseOptimal(MseOptions{}) {}
  /// @throws value_error unless bins is even and ≥ 2 and steps ≥ 1.
  explicit MseOptimal(const MseOptions& options) : options_(options) {
    if (options.bins < 2 || options.bins % 2 != 0) {
      throw value_error(minnow::detail::concat("MseOptimal: bins must be even and >= 2, got ", options.bins));
    }
    if (options.steps < 1) throw value_error(minnow::detail::concat("MseOptimal: steps must be >= 1, got ", options.steps));
    reset();
  }

  /// Adds one batch (ignored when empty). @throws value_error on NaN or ±Inf (nothing changes).
  void observe(ChannelValues<const float> values) {
    if (values.size() == 0) return;
    const Range batch = detail::finite_range(values, "MseOptimal::observe");
    const float lo = !empty() ? std::min(min_, batch.min) : batch.min;
    const float hi = !empty() ? std::max(max_, batch.max) : batch.max;
    if (width_ == 0.0) {
      if (lo == hi) {  // constant so far: remember the mass, no bins yet
        constant_count_ += static_cast<double>(values.size());
        min_ = lo;
        max_ = hi;
        return;
      }
      start_bins(lo, hi);
      if (constant_count_ > 0.0) add_mass(static_cast<double>(min_), constant_count_);
      constant_count_ = 0.0;
    } else {
      while (static_cast<double>(lo) < origin_) grow(true);
      while (static_cast<double>(hi) > origin_ + width_ * static_cast<double>(options_.bins)) grow(false);
    }
    min_ = lo;
    max_ = hi;
    const double inv = 1.0 / width_;
    for (index_t c = 0; c < values.chunks; ++c) {
      const float* x = values.data + c * values.stride;
      for (index_t i = 0; i < values.chunk_size; ++i) {
        const double v = x[i];
        Bin& b = bins_[bin_of(v, inv)];
        b.count += 1.0;
        b.sum += v;
        b.squares += v * v;
      }
    }
  }

  /// The candidate with the least MSE on the histogram; [0, 0] before anything was observed, and
  /// [c, c] for a constant c.
  [[nodiscard]] Range range(QRange grid) const {
    if (empty()) return {};
    if (width_ == 0.0) return {min_, max_};
    const std::vector<Bin> used = nonempty();
    Range best{min_, max_};
    double best_error = std::numeric_limits<double>::infinity();
    for (const Range& candidate : candidates()) {
      const double e = error(used, candidate, grid);
      if (e < best_error) {
        best_error = e;
        best = candidate;
      }
    }
    return best;
  }

  /// The candidate ranges `range` chooses from, widest first (the order ties are broken in).
  [[nodiscard]] std::vector<Range> candidates() const {
    std::vector<Range> out;
    if (empty()) return out;
    const index_t steps = options_.steps;
    const index_t lows = min_ < 0.0f ? steps : 1, highs = max_ > 0.0f ? steps : 1;
    for (index_t i = lows; i >= 1; --i) {
      for (index_t j = highs; j >= 1; --j) {
        const float lo = min_ < 0.0f ? static_cast<float>(static_cast<double>(min_) * static_cast<double>(i) / static_cast<double>(steps)) : min_;
        const float hi = max_ > 0.0f ? static_cast<float>(static_cast<double>(max_) * static_cast<double>(j) / static_cast<double>(steps)) : max_;
        out.push_back({lo, hi});
      }
    }
    return out;
  }

  /// Mean squared error of quantizing the observed values onto the affine grid of `candidate`, as
  /// estimated from the histogram (0 before anything was observed or for a constant).
  [[nodiscard]] double mse(Range candidate, QRange grid) const {
    if (empty() || width_ == 0.0) return 0.0;
    return error(nonempty(), candidate, grid);
  }

  void reset() {
    bins_.assign(static_cast<std::size_t>(options_.bins), Bin{});
    origin_ = width_ = 0.0;
    constant_count_ = 0.0;
    min_ = std::numeric_limits<float>::infinity();
    max_ = -std::numeric_limits<float>::infinity();
  }

  [[nodiscard]] bool empty() const noexcept { return !(min_ <= max_); }
  [[nodiscard]] float min() const noexcept { return min_; }
  [[nodiscard]] float max() const noexcept { return max_; }
  [[nodiscard]] const MseOptions& options() const noexcept { return options_; }

 private:
  struct Bin {
    double count = 0.0, sum = 0.0, squares = 0.0;
  };

  MseOptions options_;
  std::vector<Bin> bins_;
  double origin_ = 0.0, width_ = 0.0;  // bin b covers [origin + b·width, origin + (b+1)·width)
  double constant_count_ = 0.0;        // values seen while all were equal (before bins exist)
  float min_ = 0.0f, max_ = 0.0f;

  void start_bins(float lo, float hi) {
    origin_ = lo;
    width_ = (static_cast<double>(hi) - static_cast<double>(lo)) / static_cast<double>(options_.bins);
  }

  [[nodiscard]] std::size_t bin_of(double v, double inv_width) const noexcept {
    const double pos = std::floor((v - origin_) * inv_width);
    return static_cast<std::size_t>(std::clamp(pos, 0.0, static_cast<double>(options_.bins - 1)));
  }

  void add_mass(double v, double count) {
    Bin& b = bins_[bin_of(v, 1.0 / width_)];
    b.count += count;
    b.sum += count * v;
    b.squares += count * v * v;
  }

  /// Doubles the bin width, extending the covered range to the left or to the right. Old bins map onto
  /// new ones whole: to the right, new j = old (2j, 2j+1); to the left, new j = old (2j − n, 2j − n + 1).
  void grow(bool left) {
    const auto n = static_cast<std::size_t>(options_.bins);
    std::vector<Bin> merged(n);
    for (std::size_t i = 0; i < n; ++i) {
      Bin& to = merged[left ? (i + n) / 2 : i / 2];
      to.count += bins_[i].count;
      to.sum += bins_[i].sum;
      to.squares += bins_[i].squares;
    }
    if (left) origin_ -= width_ * static_cast<double>(n);
    width_ *= 2.0;
    bins_ = std::move(merged);
  }

  [[nodiscard]] std::vector<Bin> nonempty() const {
    std::vector<Bin> used;
    for (const Bin& b : bins_) {
      if (b.count > 0.0) used.push_back(b);
    }
    return used;
  }

  /// Mean squared error over the bins `used` for the affine grid of `r`.
  [[nodiscard]] static double error(const std::vector<Bin>& used, Range r, QRange grid) {
    const float lo = std::min(r.min, 0.0f), hi = std::max(r.max, 0.0f);
    const float eps = std::numeric_limits<float>::epsilon();
    const float scale = std::max((hi - lo) / static_cast<float>(grid.qmax - grid.qmin), eps);
    const float zero_point = std::clamp(static_cast<float>(grid.qmin) - std::nearbyint(lo / scale),
                                        static_cast<float>(grid.qmin), static_cast<float>(grid.qmax));
    const float inv = 1.0f / scale;
    double sse = 0.0, count = 0.0;
    for (const Bin& b : used) {
      const auto mean = static_cast<float>(b.sum / b.count);
      const float q = std::clamp(zero_point + std::nearbyint(mean * inv), static_cast<float>(grid.qmin),
                                 static_cast<float>(grid.qmax));
      const double xq = static_cast<double>((q - zero_point) * scale);
      sse += std::max(0.0, b.squares - 2.0 * xq * b.sum + b.count * xq * xq);
      count += b.count;
    }
    return count > 0.0 ? sse / count : 0.0;
  }
};

}  // namespace minnow::quant
