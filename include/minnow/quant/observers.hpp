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
///  - A batch's zero min or max is +0, whichever zeros it holds (the vector paths meet −0 and +0 in
///    different orders, so its sign would depend on the path).
/// The min/max pass is one vector sweep (simd/quantize.hpp: AVX-512 or AVX2, chosen at run time; two
/// instructions per vector) split over threads: it runs at the speed memory delivers the values.

#include <minnow/quant/concepts.hpp>
#include <minnow/quant/detail/stream.hpp>
#include <minnow/simd/arch.hpp>
#include <minnow/simd/quantize.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace minnow::quant {
namespace detail {

// The min/max sweep and its accumulator are simd/quantize.hpp's.
using simd::detail::MinMaxAccumulator;

/// Min and max of one channel's values, NaN ignored; big inputs are split over threads.
[[nodiscard]] inline MinMaxAccumulator minmax(ChannelValues<const float> values) {
  return simd::dispatch([&](auto arch) {
    const int threads = minnow::detail::in_parallel() ? 1 : stream_threads(values.size());
    if (threads == 1) {  // small inputs and per-channel observers (already run in parallel): no allocation
      MinMaxAccumulator acc;
      for (index_t k = 0; k < values.chunks; ++k) {
        acc.add(simd::detail::minmax(arch, values.data + k * values.stride, values.chunk_size));
      }
      return acc;
    }
    std::vector<MinMaxAccumulator> partial(static_cast<std::size_t>(threads));
    if (values.chunks == 1) {
      for_ranges(values.chunk_size, [&](index_t begin, index_t end, int t) {
        partial[static_cast<std::size_t>(t)] = simd::detail::minmax(arch, values.data + begin, end - begin);
      });
    } else {
      minnow::detail::parallel_for(threads, threads, [&](long t, int) {
        const index_t first = values.chunks * t / threads, last = values.chunks * (t + 1) / threads;
        MinMaxAccumulator acc;
        for (index_t k = first; k < last; ++k) {
          acc.add(simd::detail::minmax(arch, values.data + k * values.stride, values.chunk_size));
        }
        partial[static_cast<std::size_t>(t)] = acc;
      });
    }
    MinMaxAccumulator total;
    for (const auto& p : partial) total.add(p);
    return total;
  });
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
