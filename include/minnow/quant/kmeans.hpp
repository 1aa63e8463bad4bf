#pragma once
/// @file quant/kmeans.hpp
/// @brief Deep Compression's trained quantization (Han et al., ICLR 2016): weight sharing through a
/// 1-D k-means codebook (`KMeansCodebook`, a `CodebookMapping`), the nearest-centroid assignment, the
/// per-centroid gradient, and `SharedWeights`, the training hook that fine-tunes the centroids.
///
/// The k-means is exact Lloyd, not an approximation:
/// - k = min(grid.levels(), options.centroids) centroids, initialised linearly over the observed range
///   (Deep Compression found linear initialisation best: it keeps centroids on the large, rare weights);
/// - the values are sorted once (a radix sort on the float bits, two threads) and prefix sums taken;
/// - in sorted centroids the clusters are contiguous runs of the sorted values split at the midpoints
///   between neighbouring centroids, so an iteration is k binary searches and k differences of prefix
///   sums: O(k log n) instead of O(n k);
/// - a value exactly at a midpoint goes to the lower centroid (the rule `assign` uses too);
/// - a centroid whose cluster is empty stays where it is; iterations stop when no value changes
///   cluster, or after `max_iterations`.
/// With `keep_zero`, weights that are exactly ±0 (pruned) get a reserved centroid 0.0 that never moves,
/// and k − 1 centroids are fitted to the others: pruning and quantization compose, as in Deep
/// Compression's pruned + quantized pipeline.

#include <minnow/detail/parallel.hpp>
#include <minnow/parameter.hpp>
#include <minnow/quant/concepts.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

namespace minnow::quant {

/// Options of `KMeansCodebook`.
struct KMeansOptions {
  std::int64_t centroids = 0;  ///< cap on the number of centroids; 0: grid.levels()
  int max_iterations = 1000;   ///< Lloyd iterations at most (fc1-sized normal weights converge in ~600; each costs O(k log n))
  bool keep_zero = false;      ///< reserve an exact 0.0 centroid for the weights that are exactly 0
};

/// What a k-means run produced.
struct KMeansResult {
  std::vector<float> centroids;  ///< ascending (with keep_zero, 0.0 included)
  int iterations = 0;            ///< centroid updates performed
  bool converged = false;        ///< the last update changed no assignment
};

/// Largest codebook a 16-bit index can address.
inline constexpr std::int64_t kMaxCentroids = std::int64_t{1} << 16;

namespace detail {

/// Order-preserving map of a float's bits to an unsigned key (negative floats flipped entirely,
/// positive ones get the sign bit set). −0 sorts just before +0; both compare equal as floats.
[[nodiscard]] inline std::uint32_t float_key(float x) noexcept {
  const auto u = std::bit_cast<std::uint32_t>(x);
  return u ^ ((u >> 31) != 0 ? 0xFFFFFFFFu : 0x80000000u);
}
[[nodiscard]] inline float key_float(std::uint32_t k) noexcept {
  return std::bit_cast<float>(k ^ ((k >> 31) != 0 ? 0x80000000u : 0xFFFFFFFFu));
}

/// Sorts keys ascending: LSD radix sort, three passes of 11/11/10 bits. Each pass splits the array
/// into one slice per thread: per-slice digit counts, then every slice scatters to offsets that keep
/// the sort stable, so the result does not depend on the thread count. `scratch` is reused.
inline void radix_sort(std::vector<std::uint32_t>& keys, std::vector<std::uint32_t>& scratch) {
  const auto n = static_cast<index_t>(keys.size());
  if (n < 1024) {
    std::sort(keys.begin(), keys.end());
    return;
  }
  constexpr int kBits = 11;
  constexpr std::size_t kBuckets = std::size_t{1} << kBits;
  const int threads = n >= (index_t{1} << 17) ? std::max(1, minnow::detail::max_threads()) : 1;
  scratch.resize(keys.size());
  std::vector<std::array<index_t, kBuckets>> counts(static_cast<std::size_t>(threads));
  const auto slice_begin = [&](long t) { return n * t / threads; };
  std::uint32_t* from = keys.data();
  std::uint32_t* to = scratch.data();
  for (int shift = 0; shift < 32; shift += kBits) {
    minnow::detail::parallel_for(threads, threads, [&](long t, int) {
      auto& c = counts[static_cast<std::size_t>(t)];
      c.fill(0);
      for (index_t i = slice_begin(t); i < slice_begin(t + 1); ++i) ++c[(from[i] >> shift) & (kBuckets - 1)];
    });
    // Offsets: digit-major, then slice order (stability).
    index_t offset = 0;
    for (std::size_t d = 0; d < kBuckets; ++d) {
      for (auto& c : counts) {
        const index_t count = c[d];
        c[d] = offset;
        offset += count;
      }
    }
    minnow::detail::parallel_for(threads, threads, [&](long t, int) {
      auto& c = counts[static_cast<std::size_t>(t)];
      for (index_t i = slice_begin(t); i < slice_begin(t + 1); ++i) {
        const std::uint32_t k = from[i];
        to[c[(k >> shift) & (kBuckets - 1)]++] = k;
      }
    });
    std::swap(from, to);
  }
  if (from != keys.data()) keys.swap(scratch);  // three passes: the result is in `scratch`
}

/// Sorted values with prefix sums: the data an exact 1-D Lloyd iteration needs.
struct SortedValues {
  std::vector<float> values;   ///< ascending
  std::vector<double> prefix;  ///< prefix[i] = Σ values[0..i)
  index_t distinct = 0;        ///< distinct values (−0 and +0 count once)
};

/// Sorts keys (see float_key) into values, prefix sums and the distinct count.
[[nodiscard]] inline SortedValues sorted_values(std::vector<std::uint32_t> keys) {
  std::vector<std::uint32_t> scratch;
  radix_sort(keys, scratch);
  SortedValues s;
  const std::size_t n = keys.size();
  s.values.resize(n);
  s.prefix.resize(n + 1);
  s.prefix[0] = 0.0;
  double running = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const float v = key_float(keys[i]);
    s.values[i] = v;
    running += static_cast<double>(v);
    s.prefix[i + 1] = running;
    s.distinct += (i == 0 || v != s.values[i - 1]) ? 1 : 0;
  }
  return s;
}

/// Cluster boundaries of sorted centroids: cluster j is values[b[j], b[j+1]); a value at a midpoint
/// goes to the lower centroid.
inline void boundaries(const std::vector<float>& values, const std::vector<float>& centroids, std::vector<index_t>& b) {
  const std::size_t k = centroids.size();
  b.assign(k + 1, 0);
  b[k] = static_cast<index_t>(values.size());
  for (std::size_t j = 1; j < k; ++j) {
    const double mid = (static_cast<double>(centroids[j - 1]) + static_cast<double>(centroids[j])) / 2.0;
    const auto it = std::upper_bound(values.begin(), values.end(), mid,
                                     [](double m, float v) { return m < static_cast<double>(v); });
    b[j] = static_cast<index_t>(it - values.begin());
  }
}

/// Exact Lloyd iterations from `centroids` (ascending) on sorted values.
[[nodiscard]] inline KMeansResult lloyd(const SortedValues& s, std::vector<float> centroids, int max_iterations) {
  KMeansResult result;
  std::vector<index_t> b, next;
  boundaries(s.values, centroids, b);
  for (int it = 0; it < max_iterations; ++it) {
    for (std::size_t j = 0; j + 1 < b.size(); ++j) {
      const index_t count = b[j + 1] - b[j];
      if (count == 0) continue;  // an empty cluster keeps its centroid
      const double sum = s.prefix[static_cast<std::size_t>(b[j + 1])] - s.prefix[static_cast<std::size_t>(b[j])];
      centroids[j] = static_cast<float>(sum / static_cast<double>(count));
    }
    ++result.iterations;
    boundaries(s.values, centroids, next);
    if (next == b) {
      result.converged = true;
      break;
    }
    std::swap(b, next);
  }
  result.centroids = std::move(centroids);
  return result;
}

/// k centroids spread linearly over [lo, hi] (the midpoint when k = 1).
[[nodiscard]] inline std::vector<float> linear_init(double lo, double hi, std::int64_t k) {
  std::vector<float> c(static_cast<std::size_t>(k));
  for (std::int64_t i = 0; i < k; ++i) {
    const double t = k == 1 ? 0.5 : static_cast<double>(i) / static_cast<double>(k - 1);
    c[static_cast<std::size_t>(i)] = static_cast<float>(lo + (hi - lo) * t);
  }
  return c;
}

}  // namespace detail

/// @brief Exact 1-D k-means (Lloyd) of `values` from the centroids `init` (sorted first).
/// @throws value_error on empty input, non-finite values or centroids, an empty `init`, or more
/// centroids than distinct values.
[[nodiscard]] inline KMeansResult kmeans_1d(std::span<const float> values, std::vector<float> init, int max_iterations) {
  if (values.empty()) throw value_error("kmeans_1d: expected at least one value, got 0");
  if (init.empty()) throw value_error("kmeans_1d: expected at least one initial centroid, got 0");
  std::vector<std::uint32_t> keys(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      throw value_error(minnow::detail::concat("kmeans_1d: expected finite values, got ", values[i], " at index ", i));
    }
    keys[i] = detail::float_key(values[i]);
  }
  for (const float c : init) {
    if (!std::isfinite(c)) throw value_error(minnow::detail::concat("kmeans_1d: expected finite centroids, got ", c));
  }
  const detail::SortedValues s = detail::sorted_values(std::move(keys));
  if (static_cast<index_t>(init.size()) > s.distinct) {
    throw value_error(minnow::detail::concat("kmeans_1d: ", init.size(), " centroids requested but the values hold only ",
                                             s.distinct, " distinct values"));
  }
  std::sort(init.begin(), init.end());
  return detail::lloyd(s, std::move(init), std::max(0, max_iterations));
}

/// @brief Deep Compression's weight-sharing codebook (see the file comment). Satisfies `CodebookMapping`.
class KMeansCodebook {
 public:
  KMeansCodebook() = default;
  /// @throws value_error for centroids < 0 or > 65536, or max_iterations < 0.
  explicit KMeansCodebook(const KMeansOptions& options) : options_(options) {
    if (options.centroids < 0 || options.centroids > kMaxCentroids) {
      throw value_error(minnow::detail::concat("KMeansCodebook: centroids must be in [0, ", kMaxCentroids,
                                               "] (0: grid.levels()), got ", options.centroids));
    }
    if (options.max_iterations < 0) {
      throw value_error(minnow::detail::concat("KMeansCodebook: max_iterations must be >= 0, got ", options.max_iterations));
    }
  }

  [[nodiscard]] const KMeansOptions& options() const noexcept { return options_; }

  /// Number of centroids for a grid: min(grid.levels(), options.centroids), capped at 65536.
  [[nodiscard]] std::int64_t centroids(QRange grid) const noexcept {
    std::int64_t k = std::min(grid.levels(), kMaxCentroids);
    if (options_.centroids > 0) k = std::min(k, options_.centroids);
    return k;
  }

  /// The codebook of `values`, k-means initialised linearly over `range` (over the values' own
  /// min/max when the range is empty, e.g. from an observer that saw nothing).
  [[nodiscard]] Codebook fit(Range range, QRange grid, ChannelValues<const float> values) const {
    return Codebook{run(range, grid, values).centroids};
  }

  /// `fit` with the iteration count and convergence flag.
  /// @throws value_error on empty input, NaN/Inf values, a non-finite or inverted range, or more
  /// centroids than distinct values (with keep_zero: more than the distinct non-zero values + 1).
  [[nodiscard]] KMeansResult run(Range range, QRange grid, ChannelValues<const float> values) const {
    if (values.size() == 0) throw value_error("KMeansCodebook::fit: expected at least one value, got 0");
    if (!std::isfinite(range.min) || !std::isfinite(range.max) || range.min > range.max) {
      throw value_error(minnow::detail::concat("KMeansCodebook::fit: expected a finite range with min <= max, got [",
                                               range.min, ", ", range.max, "]"));
    }
    const std::int64_t k = centroids(grid);
    if (k < 1) throw value_error(minnow::detail::concat("KMeansCodebook::fit: the grid has ", k, " levels"));
    const bool keep_zero = options_.keep_zero;
    // Gather the keys (skipping exact zeros with keep_zero), checking finiteness on the way.
    std::vector<std::uint32_t> keys;
    keys.reserve(static_cast<std::size_t>(values.size()));
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    bool finite = true;
    for (index_t c = 0; c < values.chunks; ++c) {
      const float* x = values.data + c * values.stride;
      for (index_t i = 0; i < values.chunk_size; ++i) {
        const float v = x[i];
        finite &= std::isfinite(v);
        if (keep_zero && v == 0.0f) continue;
        lo = std::min(lo, v);
        hi = std::max(hi, v);
        keys.push_back(detail::float_key(v));
      }
    }
    if (!finite) throw value_error("KMeansCodebook::fit: expected finite values, got NaN or Inf");
    const std::int64_t fitted = keep_zero ? k - 1 : k;
    const detail::SortedValues s = detail::sorted_values(std::move(keys));
    if (fitted > s.distinct) {
      throw value_error(minnow::detail::concat("KMeansCodebook::fit: ", fitted, " centroids requested but the values hold only ",
                                               s.distinct, keep_zero ? " distinct non-zero values (keep_zero reserves one more for 0)"
                                                                     : " distinct values"));
    }
    KMeansResult result;
    if (fitted > 0) {
      const bool degenerate = range.min == range.max;
      const double init_lo = degenerate ? lo : range.min, init_hi = degenerate ? hi : range.max;
      result = detail::lloyd(s, detail::linear_init(init_lo, init_hi, fitted), options_.max_iterations);
    } else {
      result.converged = true;
    }
    if (keep_zero) {
      result.centroids.insert(std::upper_bound(result.centroids.begin(), result.centroids.end(), 0.0f), 0.0f);
    }
    return result;
  }

 private:
  KMeansOptions options_{};
};

namespace detail {

/// Nearest centroid by midpoints (ties to the lower): the index among `order` (ascending values).
class NearestCentroid {
 public:
  NearestCentroid(const std::vector<float>& centroids, std::vector<std::uint16_t> order)
      : order_(std::move(order)) {
    for (std::size_t j = 1; j < order_.size(); ++j) {
      mids_.push_back((static_cast<double>(centroids[order_[j - 1]]) + static_cast<double>(centroids[order_[j]])) / 2.0);
    }
  }
  [[nodiscard]] std::uint16_t operator()(double v) const noexcept {
    return order_[static_cast<std::size_t>(std::lower_bound(mids_.begin(), mids_.end(), v) - mids_.begin())];
  }

 private:
  std::vector<std::uint16_t> order_;
  std::vector<double> mids_;
};

/// Checks a codebook: 1..65536 finite centroids in non-decreasing order.
inline void validate_codebook(const Codebook& codebook, const char* context) {
  const auto k = static_cast<std::int64_t>(codebook.centroids.size());
  if (k < 1 || k > kMaxCentroids) {
    throw value_error(minnow::detail::concat(context, ": expected 1 to ", kMaxCentroids, " centroids, got ", k));
  }
  for (std::size_t j = 0; j < codebook.centroids.size(); ++j) {
    const float c = codebook.centroids[j];
    if (!std::isfinite(c) || (j > 0 && c < codebook.centroids[j - 1])) {
      throw value_error(minnow::detail::concat(context, ": expected finite ascending centroids, got ", c, " at index ", j));
    }
  }
}

}  // namespace detail

/// @brief Replaces each value by the index of its nearest centroid (ties to the lower one).
///
/// With `keep_zero`, values exactly ±0 take the centroid 0.0 (which the codebook must hold) and the
/// other values the nearest of the other centroids: the partition `KMeansCodebook` fitted.
/// @throws shape_error when indices and values differ in size; value_error for an invalid codebook,
/// non-finite values, or keep_zero without a 0.0 centroid.
template <class T>
void assign(TensorView<const T, 1> values, const Codebook& codebook, std::span<std::uint16_t> indices, bool keep_zero = false) {
  detail::validate_codebook(codebook, "assign");
  if (static_cast<index_t>(indices.size()) != values.size()) {
    throw shape_error(minnow::detail::concat("assign: expected ", values.size(), " indices (one per value), got ", indices.size()));
  }
  const auto& c = codebook.centroids;
  std::vector<std::uint16_t> order;
  std::int64_t zero = -1;
  for (std::size_t j = 0; j < c.size(); ++j) {
    if (keep_zero && zero < 0 && c[j] == 0.0f) {
      zero = static_cast<std::int64_t>(j);
    } else {
      order.push_back(static_cast<std::uint16_t>(j));
    }
  }
  if (keep_zero && zero < 0) throw value_error("assign: keep_zero needs a 0.0 centroid in the codebook, found none");
  if (order.empty()) order.push_back(static_cast<std::uint16_t>(zero));  // only the zero centroid
  const detail::NearestCentroid nearest(c, std::move(order));
  const T* v = values.data();
  for (index_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(v[i])) {
      throw value_error(minnow::detail::concat("assign: expected finite values, got ", v[i], " at index ", i));
    }
    indices[static_cast<std::size_t>(i)] =
        keep_zero && v[i] == T(0) ? static_cast<std::uint16_t>(zero) : nearest(static_cast<double>(v[i]));
  }
}

/// @brief Deep Compression's centroid gradient: for each centroid, the sum of the gradients of the
/// weights that share it, `∂L/∂c_k = Σ_{i: idx_i = k} ∂L/∂w_i` (accumulated in double).
/// @throws shape_error when sizes differ; value_error for an index ≥ k.
template <class T>
[[nodiscard]] std::vector<T> centroid_gradients(std::span<const std::uint16_t> indices, TensorView<const T, 1> grad, index_t k) {
  if (static_cast<index_t>(indices.size()) != grad.size()) {
    throw shape_error(minnow::detail::concat("centroid_gradients: expected ", grad.size(), " indices (one per gradient), got ",
                                             indices.size()));
  }
  std::vector<double> sums(static_cast<std::size_t>(std::max<index_t>(k, 0)), 0.0);
  const T* g = grad.data();
  for (std::size_t i = 0; i < indices.size(); ++i) {
    if (static_cast<index_t>(indices[i]) >= k) {
      throw value_error(minnow::detail::concat("centroid_gradients: index ", indices[i], " at position ", i,
                                               " is out of range for ", k, " centroids"));
    }
    sums[indices[i]] += static_cast<double>(g[i]);
  }
  return std::vector<T>(sums.begin(), sums.end());
}

/// @brief A parameter whose weights share a codebook, fine-tuned as in Deep Compression.
///
/// Holds the parameter's views, its centroids and one index per weight. The weights always equal
/// their centroid. Use it in place of the optimizer for this parameter: after backward, `step(lr)`
/// moves every centroid against the summed gradient of its members (`c_k -= lr · Σ ∂L/∂w_i`) and
/// rewrites the weights. With keep_zero the 0.0 centroid is pinned: pruned weights stay exactly 0.
/// Steps may reorder the centroids; the indices do not change.
template <class T>
class SharedWeights {
 public:
  /// Fits `mapping` to the parameter's current weights (initialised over their min/max), then shares them.
  SharedWeights(Parameter<T> parameter, const KMeansCodebook& mapping, QRange grid)
      : SharedWeights(parameter, fit_codebook(parameter, mapping, grid), mapping.options().keep_zero) {}

  /// Shares the weights through a given codebook (each weight takes its nearest centroid).
  /// @throws as `assign`; shape_error when the gradient's size differs from the value's.
  SharedWeights(Parameter<T> parameter, const Codebook& codebook, bool keep_zero = false)
      : parameter_(std::move(parameter)) {
    if (parameter_.grad.size() != parameter_.value.size()) {
      throw shape_error(minnow::detail::concat("SharedWeights: parameter '", parameter_.name, "' has ", parameter_.value.size(),
                                               " values but ", parameter_.grad.size(), " gradients"));
    }
    indices_.resize(static_cast<std::size_t>(parameter_.value.size()));
    assign(TensorView<const T, 1>(parameter_.value), codebook, std::span<std::uint16_t>(indices_), keep_zero);
    centroids_.assign(codebook.centroids.begin(), codebook.centroids.end());
    if (keep_zero) {
      pinned_ = static_cast<std::int64_t>(std::find(codebook.centroids.begin(), codebook.centroids.end(), 0.0f) -
                                          codebook.centroids.begin());
    }
    write();
  }

  /// One fine-tuning step from the gradient currently in the parameter's gradient view.
  void step(T learning_rate) {
    const std::vector<T> g = centroid_gradients(std::span<const std::uint16_t>(indices_), TensorView<const T, 1>(parameter_.grad),
                                                static_cast<index_t>(centroids_.size()));
    for (std::size_t j = 0; j < centroids_.size(); ++j) {
      if (static_cast<std::int64_t>(j) != pinned_) centroids_[j] -= learning_rate * g[j];
    }
    write();
  }

  /// Writes every weight = its centroid (after the user changed the weights, say).
  void write() noexcept {
    T* w = parameter_.value.data();
    for (std::size_t i = 0; i < indices_.size(); ++i) w[i] = centroids_[indices_[i]];
  }

  [[nodiscard]] const Parameter<T>& parameter() const noexcept { return parameter_; }
  /// Centroids in index order.
  [[nodiscard]] std::span<const T> centroids() const noexcept { return centroids_; }
  [[nodiscard]] std::span<const std::uint16_t> indices() const noexcept { return indices_; }
  /// Index of the pinned 0.0 centroid, or −1 without keep_zero.
  [[nodiscard]] std::int64_t pinned_zero() const noexcept { return pinned_; }

 private:
  Parameter<T> parameter_;
  std::vector<T> centroids_;
  std::vector<std::uint16_t> indices_;
  std::int64_t pinned_ = -1;

  static Codebook fit_codebook(const Parameter<T>& p, const KMeansCodebook& mapping, QRange grid) {
    std::vector<float> copy;
    const float* data = nullptr;
    if constexpr (std::is_same_v<std::remove_const_t<T>, float>) {
      data = p.value.data();
    } else {
      copy.assign(p.value.data(), p.value.data() + p.value.size());
      data = copy.data();
    }
    const ChannelValues<const float> values{data, 1, p.value.size(), p.value.size()};
    return mapping.fit(Range{}, grid, values);  // an empty range: initialise over the weights' min/max
  }
};

}  // namespace minnow::quant
