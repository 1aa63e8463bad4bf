#pragma once
/// @file quant/histogram.hpp
/// @brief `Histogram`: the observer of PyTorch 1.13's `torch.ao.quantization.HistogramObserver` — a
/// running histogram of everything observed, and a greedy L2-error search for the clipping range.
///
/// What it does (the reference semantics, re-derived; float32 arithmetic is reproduced step by step
/// because the search compares errors that differ in the last bits):
/// - Histogram: `bins` equal bins over [min, max] of the values seen. The first batch (or any batch
///   after a constant one) sets min/max and is binned over them. A later batch extends [min, max];
///   the old histogram is moved onto the new bins by spreading each old bin evenly over `upsample_rate`
///   sub-bins, placing them at the old min, and summing groups of `downsample_rate` sub-bins, where
///   `downsample_rate = ceil((new range) / (old range) · upsample_rate)`; the new max is then relaxed
///   up to `min + downsample_rate · (old range) / upsample_rate` so both grids align.
/// - Search (`range(grid)`): starting from all bins, repeatedly drop 1e-5 of the mass from the side
///   whose drop removes more bins, and keep the narrower range while the L2 error of quantizing the
///   histogram onto `dst` equal levels does not grow; the first growth stops the search. The error of a
///   bin is that of values spread uniformly inside it, each rounded to the centre of its level.
/// - `dst` is `grid.levels()` (PyTorch uses 2^bits even with reduce_range: set `dst_bins` = 256 to get
///   PyTorch's numbers for a reduced grid).
///
/// One deliberate difference, switchable: PyTorch 1.13 passes `int(min)`, `int(max)` as histc's bounds,
/// so a histogram over [−3.7, 5.2] covers only [−3, 5] (values beyond are dropped), and for a range
/// inside (−1, 1) histc falls back to the batch's own min/max even when combining with a wider
/// histogram. This looks unintended; minnow bins over the float bounds unless
/// `legacy_integer_bounds` is set, which reproduces PyTorch 1.13 exactly (both are tested against
/// PyTorch fixtures). Non-finite values are rejected: their histogram is meaningless.

#include <minnow/quant/concepts.hpp>
#include <minnow/quant/detail/finite_range.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <utility>
#include <vector>

namespace minnow::quant {

/// Options of `Histogram`; the defaults are PyTorch's.
struct HistogramOptions {
  index_t bins = 2048;                ///< histogram bins
  index_t upsample_rate = 128;        ///< sub-bins per bin when histograms of different ranges combine
  std::int64_t dst_bins = 0;          ///< quantization levels the search assumes; 0: grid.levels()
  bool legacy_integer_bounds = false;  ///< truncate histc's bounds to integers, as PyTorch 1.13 does
};

namespace detail {

// Float arithmetic here must round exactly like PyTorch's float32 kernels: no fused multiply-add.
#if defined(__GNUC__) && !defined(__clang__)
#define MINNOW_DETAIL_NO_FP_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define MINNOW_DETAIL_NO_FP_CONTRACT
#endif

/// Python's floor division of floats (what `torch.div(..., rounding_mode='floor')` computes).
MINNOW_DETAIL_NO_FP_CONTRACT inline float floor_divide(float a, float b) noexcept {
  const float mod = std::fmod(a, b);
  float div = (a - mod) / b;
  if (mod != 0.0f && ((b < 0.0f) != (mod < 0.0f))) div -= 1.0f;
  if (div == 0.0f) return std::copysign(0.0f, a / b);
  float floored = std::floor(div);
  if (div - floored > 0.5f) floored += 1.0f;
  return floored;
}

/// `torch.histc(x, bins, min=lo, max=hi)` added into `out`: equal float bins over [lo, hi], the last
/// bin closed; values outside are skipped. lo == hi means the data's own min/max (and ±1 around a
/// constant).
MINNOW_DETAIL_NO_FP_CONTRACT inline void histc(const ChannelValues<const float>& values, double lo, double hi,
                                              float data_min, float data_max, std::span<float> out) {
  if (lo == hi) {
    lo = data_min;
    hi = data_max;
  }
  if (lo == hi) {
    lo -= 1.0;
    hi += 1.0;
  }
  const float left = static_cast<float>(lo), right = static_cast<float>(hi);
  const float width = right - left;
  const auto bins = static_cast<index_t>(out.size());
  const float nbins = static_cast<float>(bins);
  for (index_t c = 0; c < values.chunks; ++c) {
    const float* x = values.data + c * values.stride;
    for (index_t i = 0; i < values.chunk_size; ++i) {
      const float v = x[i];
      if (!(v >= left && v <= right)) continue;
      auto pos = static_cast<index_t>((v - left) * nbins / width);
      if (pos >= bins) pos = bins - 1;
      out[static_cast<std::size_t>(pos)] += 1.0f;
    }
  }
}

}  // namespace detail

/// @brief PyTorch's HistogramObserver (see the file comment). Satisfies `Observer`.
class Histogram {
 public:
  /// @throws value_error unless bins ≥ 1.
  explicit Histogram(index_t bins = 2048) : Histogram(HistogramOptions{bins}) {}

  /// @throws value_error unless bins ≥ 1, upsample_rate ≥ 1 and dst_bins ≥ 0.
  explicit Histogram(const HistogramOptions& options) : options_(options) {
    if (options.bins < 1) throw value_error(minnow::detail::concat("Histogram: bins must be >= 1, got ", options.bins));
    if (options.upsample_rate < 1) {
      throw value_error(minnow::detail::concat("Histogram: upsample_rate must be >= 1, got ", options.upsample_rate));
    }
    if (options.dst_bins < 0) {
      throw value_error(minnow::detail::concat("Histogram: dst_bins must be >= 0 (0: grid.levels()), got ",
                                               options.dst_bins));
    }
    reset();
  }

  /// Adds one batch. An empty batch is ignored. @throws value_error on NaN or ±Inf (nothing changes).
  void observe(ChannelValues<const float> values) {
    if (values.size() == 0) return;
    const Range batch = detail::finite_range(values, "Histogram::observe");
    add_batch(values, batch.min, batch.max);
  }

  /// The L2-optimal range for `grid` (see the file comment); [0, 0] before anything was observed.
  [[nodiscard]] Range range(QRange grid) const {
    if (empty()) return {};
    const std::int64_t dst = options_.dst_bins > 0 ? options_.dst_bins : grid.levels();
    return search(dst);
  }

  /// Forgets everything observed.
  void reset() {
    hist_.assign(static_cast<std::size_t>(options_.bins), 0.0f);
    min_ = std::numeric_limits<float>::infinity();
    max_ = -std::numeric_limits<float>::infinity();
  }

  [[nodiscard]] bool empty() const noexcept { return !(min_ <= max_); }
  /// Lower end of the histogram (the smallest value seen).
  [[nodiscard]] float min() const noexcept { return min_; }
  /// Upper end of the histogram (at least the largest value seen; relaxed when histograms combine).
  [[nodiscard]] float max() const noexcept { return max_; }
  [[nodiscard]] std::span<const float> histogram() const noexcept { return hist_; }
  [[nodiscard]] const HistogramOptions& options() const noexcept { return options_; }

 private:
  HistogramOptions options_;
  std::vector<float> hist_;
  float min_ = 0.0f, max_ = 0.0f;

  /// histc's bounds as PyTorch passes them: truncated to integers in legacy mode.
  [[nodiscard]] double bound(float x) const noexcept {
    return options_.legacy_integer_bounds ? std::trunc(static_cast<double>(x)) : static_cast<double>(x);
  }

  MINNOW_DETAIL_NO_FP_CONTRACT void add_batch(const ChannelValues<const float>& values, float bmin, float bmax) {
    const index_t bins = options_.bins;
    if (empty() || min_ == max_) {
      // The first batch, or a batch after a constant one (whose counts PyTorch drops): start over.
      min_ = bmin;
      max_ = bmax;
      std::fill(hist_.begin(), hist_.end(), 0.0f);
      detail::histc(values, bound(bmin), bound(bmax), bmin, bmax, hist_);
      return;
    }
    const float cmin = std::min(bmin, min_);
    float cmax = std::max(bmax, max_);
    // Align the grids: sub-bins of the old histogram are `fine` wide; the new bins hold `downsample`
    // sub-bins each, so the new max is relaxed up to a whole number of them.
    const index_t upsample = options_.upsample_rate;
    const float fine = (max_ - min_) / static_cast<float>(bins * upsample);
    const float old_span = static_cast<float>(bins) * fine;
    const auto downsample = static_cast<index_t>(std::ceil((cmax - cmin) / old_span));
    const float relax = static_cast<float>(downsample) * old_span - (cmax - cmin);
    cmax = cmax + relax;
    const auto start = static_cast<index_t>(std::nearbyint((min_ - cmin) / fine));

    std::vector<float> combined(static_cast<std::size_t>(bins), 0.0f);
    detail::histc(values, bound(cmin), bound(cmax), bmin, bmax, combined);
    if (cmin == min_ && cmax == max_) {
      for (index_t j = 0; j < bins; ++j) combined[static_cast<std::size_t>(j)] += hist_[static_cast<std::size_t>(j)];
    } else {
      // Each old bin becomes `upsample` sub-bins holding a copy of its count, placed from sub-bin `start`;
      // new bin j sums sub-bins [j·downsample, (j+1)·downsample) and divides by upsample_rate. The sums
      // come from a prefix over old bins (cumulative() = mass of the first `count` sub-bins, in double).
      std::vector<double> prefix(static_cast<std::size_t>(bins) + 1, 0.0);
      for (index_t k = 0; k < bins; ++k) {
        prefix[static_cast<std::size_t>(k) + 1] =
            prefix[static_cast<std::size_t>(k)] + static_cast<double>(hist_[static_cast<std::size_t>(k)]) * static_cast<double>(upsample);
      }
      const auto cumulative = [&](index_t count) {
        const index_t t = count - start;
        if (t <= 0) return 0.0;
        if (t >= bins * upsample) return prefix.back();
        const index_t q = t / upsample, r = t % upsample;
        return prefix[static_cast<std::size_t>(q)] + static_cast<double>(hist_[static_cast<std::size_t>(q)]) * static_cast<double>(r);
      };
      float previous = 0.0f;  // the previous integral, stored as float as PyTorch's shifted copy is
      for (index_t j = 0; j < bins; ++j) {
        const double integral = cumulative((j + 1) * downsample);
        const double spread = (integral - static_cast<double>(previous)) / static_cast<double>(upsample);
        combined[static_cast<std::size_t>(j)] += static_cast<float>(spread);
        previous = static_cast<float>(integral);
      }
    }
    hist_ = std::move(combined);
    min_ = cmin;
    max_ = cmax;
  }

  /// L2 error of quantizing the histogram restricted to bins [first, last] onto `dst` levels.
  [[nodiscard]] MINNOW_DETAIL_NO_FP_CONTRACT double quantization_error(index_t first, index_t last, std::int64_t dst) const {
    const index_t bins = options_.bins;
    const double bin_width = (static_cast<double>(max_) - static_cast<double>(min_)) / static_cast<double>(bins);
    const double dst_width = bin_width * static_cast<double>(last - first + 1) / static_cast<double>(dst);
    if (dst_width == 0.0) return 0.0;
    const float bw = static_cast<float>(bin_width), dw = static_cast<float>(dst_width);
    const float half = static_cast<float>(dst_width / 2), neg_half = static_cast<float>(-dst_width / 2);
    const float top = static_cast<float>(dst - 1);
    // ∫ x² dx over a whole level, centred: ((w/2)³ − (−w/2)³) / 3.
    const float whole = (half * half * half - neg_half * neg_half * neg_half) / 3.0f;
    const float neg_half_cubed = neg_half * neg_half * neg_half;
    double total = 0.0;
    for (index_t i = 0; i < bins; ++i) {
      const float begin = static_cast<float>(i - first) * bw;
      const float end = begin + bw;
      const float begin_level = std::clamp(detail::floor_divide(begin, dw), 0.0f, top);
      const float end_level = std::clamp(detail::floor_divide(end, dw), 0.0f, top);
      const float density = hist_[static_cast<std::size_t>(i)] / bw;
      // From the bin's start to the end of its first level, whole levels in between, then from the start
      // of its last level to the bin's end; distances are from each level's centre.
      const float d_begin = begin - (begin_level + 0.5f) * dw;
      float norm = 0.0f;
      norm += density * ((half * half * half - d_begin * d_begin * d_begin) / 3.0f);
      norm += ((end_level - begin_level) - 1.0f) * (density * whole);
      const float d_end = end - (end_level * dw + half);
      norm += density * ((d_end * d_end * d_end - neg_half_cubed) / 3.0f);
      total += static_cast<double>(norm);
    }
    return total;
  }

  [[nodiscard]] MINNOW_DETAIL_NO_FP_CONTRACT Range search(std::int64_t dst) const {
    const index_t bins = options_.bins;
    // Cumulative mass, accumulated in double and stored as float (as torch.cumsum on float does).
    std::vector<float> cumsum(static_cast<std::size_t>(bins));
    double running = 0.0;
    for (index_t i = 0; i < bins; ++i) {
      running += static_cast<double>(hist_[static_cast<std::size_t>(i)]);
      cumsum[static_cast<std::size_t>(i)] = static_cast<float>(running);
    }
    const double total = running;
    constexpr double step = 1e-5;  // mass dropped per move
    double alpha = 0.0, beta = 1.0;
    index_t start = 0, end = bins - 1;
    double best = std::numeric_limits<double>::infinity();
    while (alpha < beta) {
      const double next_alpha = alpha + step, next_beta = beta - step;
      const float low_mass = static_cast<float>(next_alpha * total), high_mass = static_cast<float>(next_beta * total);
      index_t l = start, r = end;
      while (l < end && cumsum[static_cast<std::size_t>(l)] < low_mass) ++l;
      while (r > start && cumsum[static_cast<std::size_t>(r)] > high_mass) --r;
      index_t next_start = start, next_end = end;
      if (l - start > end - r) {
        next_start = l;
        alpha = next_alpha;
      } else {
        next_end = r;
        beta = next_beta;
      }
      if (next_start == start && next_end == end) continue;
      const double error = quantization_error(next_start, next_end, dst);
      if (error > best) break;
      best = error;
      start = next_start;
      end = next_end;
    }
    const float bin_width = (max_ - min_) / static_cast<float>(bins);
    return {min_ + bin_width * static_cast<float>(start), min_ + bin_width * static_cast<float>(end + 1)};
  }
};

#undef MINNOW_DETAIL_NO_FP_CONTRACT

}  // namespace minnow::quant
