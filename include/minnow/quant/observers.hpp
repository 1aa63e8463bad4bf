#pragma once
/// @file quant/observers.hpp
/// @brief Range observers: `MinMax` (running min and max) and `MovingAverageMinMax` (PyTorch's
/// exponential moving average of the batch min and max).
///
/// Rules shared by both (PyTorch 1.13 `MinMaxObserver` / `MovingAverageMinMaxObserver`, plus what it
/// leaves broken):
///  - NaN is ignored: it says nothing about where the values lie, and fake_quantize propagates it to the
///    output anyway. (PyTorch lets it poison min and max, and `calculate_qparams` then fails an assertion.)
///    A batch holding only NaN (or nothing) changes nothing.
///  - ±Inf is recorded: the range becomes infinite and every mapping's `qparams` throws value_error naming
///    it, instead of PyTorch's infinite scale. `reset()` forgets it. (A moving average that has gone
///    infinite stays so until reset: averaging with infinity has no finite result.)
///  - An observer that has seen nothing reports [0, 0]. (`Quantizer` then uses scale 1, zero point 0,
///    as PyTorch does.)
/// The min/max pass is one AVX-512 sweep (two instructions per 16 floats) split over threads: it runs
/// at the speed memory delivers the values.

#include <minnow/quant/concepts.hpp>
#include <minnow/quant/detail/stream.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace minnow::quant {
namespace detail {

/// Running min and max that ignore NaN; empty while `min > max`.
struct MinMaxAccumulator {
  float min = std::numeric_limits<float>::infinity();
  float max = -std::numeric_limits<float>::infinity();

  void add(float lo, float hi) noexcept {
    if (lo < min) min = lo;  // false for NaN: NaN is skipped
    if (hi > max) max = hi;
  }
  void add(const MinMaxAccumulator& other) noexcept { add(other.min, other.max); }
  [[nodiscard]] bool empty() const noexcept { return !(min <= max); }
};

/// Min and max of p[0, n), NaN ignored (scalar reference, and the non-AVX-512 path).
[[nodiscard]] inline MinMaxAccumulator minmax_scalar(const float* p, index_t n) noexcept {
  MinMaxAccumulator acc;
  for (index_t i = 0; i < n; ++i) acc.add(p[i], p[i]);
  return acc;
}

/// Min and max of p[0, n), NaN ignored.
[[nodiscard]] inline MinMaxAccumulator minmax(const float* p, index_t n) noexcept {
#if defined(__AVX512F__)
  // _mm512_min_ps(a, b) returns b when either is NaN: with the accumulator second, a NaN value is skipped
  // and the accumulator (never NaN) survives.
  __m512 lo0 = _mm512_set1_ps(std::numeric_limits<float>::infinity()), lo1 = lo0;
  __m512 hi0 = _mm512_set1_ps(-std::numeric_limits<float>::infinity()), hi1 = hi0;
  index_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 a = _mm512_loadu_ps(p + i), b = _mm512_loadu_ps(p + i + 16);
    lo0 = _mm512_min_ps(a, lo0);
    hi0 = _mm512_max_ps(a, hi0);
    lo1 = _mm512_min_ps(b, lo1);
    hi1 = _mm512_max_ps(b, hi1);
  }
  for (; i < n; i += 16) {
    const auto lanes = static_cast<__mmask16>(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1);
    const __m512 a = _mm512_maskz_loadu_ps(lanes, p + i);
    lo0 = _mm512_mask_min_ps(lo0, lanes, a, lo0);
    hi0 = _mm512_mask_max_ps(hi0, lanes, a, hi0);
  }
  MinMaxAccumulator acc;
  acc.add(_mm512_reduce_min_ps(_mm512_min_ps(lo0, lo1)), _mm512_reduce_max_ps(_mm512_max_ps(hi0, hi1)));
  return acc;
#else
  return minmax_scalar(p, n);
#endif
}

/// Min and max of one channel's values, NaN ignored; big inputs are split over threads.
[[nodiscard]] inline MinMaxAccumulator minmax(ChannelValues<const float> values) {
  const int threads = minnow::detail::in_parallel() ? 1 : stream_threads(values.size());
  if (threads == 1) {  // small inputs and per-channel observers (already run in parallel): no allocation
    MinMaxAccumulator acc;
    for (index_t k = 0; k < values.chunks; ++k) acc.add(minmax(values.data + k * values.stride, values.chunk_size));
    return acc;
  }
  std::vector<MinMaxAccumulator> partial(static_cast<std::size_t>(threads));
  if (values.chunks == 1) {
    for_ranges(values.chunk_size, [&](index_t begin, index_t end, int t) {
      partial[static_cast<std::size_t>(t)] = minmax(values.data + begin, end - begin);
    });
  } else {
    minnow::detail::parallel_for(threads, threads, [&](long t, int) {
      const index_t first = values.chunks * t / threads, last = values.chunks * (t + 1) / threads;
      MinMaxAccumulator acc;
      for (index_t k = first; k < last; ++k) acc.add(minmax(values.data + k * values.stride, values.chunk_size));
      partial[static_cast<std::size_t>(t)] = acc;
    });
  }
  MinMaxAccumulator total;
  for (const auto& p : partial) total.add(p);
  return total;
}

}  // namespace detail

/// @brief The running min and max of everything observed (PyTorch's MinMaxObserver).
class MinMax {
 public:
  void observe(ChannelValues<const float> values) { seen_.add(detail::minmax(values)); }

  /// [min, max] of everything seen, [0, 0] when nothing was. The grid is not needed.
  [[nodiscard]] Range range(QRange /*grid*/ = {}) const noexcept {
    return seen_.empty() ? Range{} : Range{seen_.min, seen_.max};
  }
  void reset() noexcept { seen_ = {}; }
  /// True until a value other than NaN has been observed.
  [[nodiscard]] bool empty() const noexcept { return seen_.empty(); }

 private:
  detail::MinMaxAccumulator seen_;
};

/// @brief An exponential moving average of each batch's min and max (PyTorch's
/// MovingAverageMinMaxObserver): the first batch sets them, later ones move them by
/// `min += c · (batch_min − min)` (same for max), in float as PyTorch computes it.
class MovingAverageMinMax {
 public:
  /// @throws value_error unless 0 < averaging_constant <= 1.
  explicit MovingAverageMinMax(float averaging_constant = 0.01f) : c_(averaging_constant) {
    if (!(averaging_constant > 0.0f && averaging_constant <= 1.0f)) {
      throw value_error(minnow::detail::concat("MovingAverageMinMax: averaging_constant must be in (0, 1], got ",
                                               averaging_constant));
    }
  }

  void observe(ChannelValues<const float> values) {
    const detail::MinMaxAccumulator batch = detail::minmax(values);
    if (batch.empty()) return;
    if (seen_.empty()) {
      seen_ = batch;
      return;
    }
    seen_.min = average(seen_.min, batch.min);
    seen_.max = average(seen_.max, batch.max);
  }

  [[nodiscard]] Range range(QRange /*grid*/ = {}) const noexcept {
    return seen_.empty() ? Range{} : Range{seen_.min, seen_.max};
  }
  void reset() noexcept { seen_ = {}; }
  [[nodiscard]] bool empty() const noexcept { return seen_.empty(); }
  [[nodiscard]] float averaging_constant() const noexcept { return c_; }

 private:
  [[nodiscard]] float average(float current, float batch) const noexcept {
    if (!std::isfinite(current)) return current;  // infinity is sticky (inf − inf would be NaN)
    // Rounded product, then the sum: PyTorch's two tensor operations. `volatile` keeps the compiler
    // from fusing them into one FMA, which would round once and differ in the last bit.
    volatile float step = c_ * (batch - current);
    return current + step;
  }

  float c_;
  detail::MinMaxAccumulator seen_;
};

static_assert(Observer<MinMax> && Observer<MovingAverageMinMax>);

}  // namespace minnow::quant
