#pragma once
/// @file prune/criteria.hpp
/// @brief Which weights to prune: L1 / random unstructured, Ln / random structured, global L1, and
/// user-supplied masks. Every criterion updates a mask in place and composes with it.
///
/// Rules shared by all criteria (torch.nn.utils.prune semantics, plus what PyTorch leaves open):
/// - Only survivors are candidates: unstructured criteria rank the entries whose mask is 1, structured
///   ones the slices that still hold a 1. The amount is relative to the survivors, so pruning 0.5 twice
///   on 10 weights prunes 5, then round(2.5) = 2. Entries already 0 stay 0 (the new mask multiplies the old).
/// - Ties: among equal scores, the lowest flat index (slice index; for global pruning the earlier tensor,
///   then the lower index) is pruned first. PyTorch's order (topk) is unspecified.
/// - NaN: a NaN weight (or slice norm) ranks as the largest magnitude, above +inf, so it is never pruned
///   in place of a finite weight: only an amount that also takes every non-NaN survivor reaches it.
///   NaNs rank among themselves by bit pattern (identical NaNs tie: lower index first).
/// - Empty tensors (no survivors): any Fraction prunes nothing, Count{0} is a no-op, Count{k > 0} throws.
/// - Masks passed in must hold only 0 and 1 (value_error otherwise); nothing is modified when a
///   criterion throws.
/// - `weights` are the scores being ranked, read as given: normally the weights, but any importance
///   scores shaped like them work. Structured norms include entries already masked within a surviving
///   slice (PyTorch scores `weight_orig`); with minnow's hook those weights are 0 and add nothing.

#include <minnow/prune/amount.hpp>
#include <minnow/prune/mask.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace minnow::prune {

/// @brief One tensor taking part in global pruning: the scores ranked and the mask updated.
template <Scalar T>
struct MaskedView {
  TensorView<const T, 1> weights;
  TensorView<T, 1> mask;
};

namespace detail {

/// Unsigned integer as wide as T.
template <Scalar T>
using key_t = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;

/// @brief The bits of |x| as an unsigned integer. For IEEE numbers this orders exactly like |x|, and
/// every NaN lands above +inf: the NaN rule costs nothing.
template <Scalar T>
[[nodiscard]] inline key_t<T> magnitude_key(T x) noexcept {
  constexpr key_t<T> no_sign = ~(key_t<T>{1} << (8 * sizeof(T) - 1));
  return std::bit_cast<key_t<T>>(x) & no_sign;
}

/// A contiguous run of one tensor: scores, mask, size.
template <Scalar T>
struct Segment {
  const T* weights;
  T* mask;
  index_t size;
};

/// A piece of a segment handled by one thread; chunks are kept in global (tensor, index) order.
struct Chunk {
  std::size_t segment;
  index_t begin, end;
};

/// Splits the segments into chunks: small segments whole, big ones in several cache-line-aligned
/// pieces so that two threads share the work of one big tensor.
template <Scalar T>
[[nodiscard]] std::vector<Chunk> make_chunks(std::span<const Segment<T>> segments, index_t total, int threads) {
  // About four chunks per thread, none below kParallelMin (not worth a thread) or above 2^30 elements
  // (32-bit counts and offsets).
  constexpr index_t max_chunk = index_t{1} << 30;
  const index_t target = std::max<index_t>(kParallelMin, total / (4 * static_cast<index_t>(threads)) + 1);
  std::vector<Chunk> chunks;
  for (std::size_t s = 0; s < segments.size(); ++s) {
    const index_t n = segments[s].size;
    const index_t pieces = std::max({index_t{1}, n / target, (n + max_chunk - 1) / max_chunk});
    for (index_t p = 0; p < pieces; ++p) {
      const index_t begin = p == 0 ? 0 : (n * p / pieces) & ~index_t{15};
      const index_t end = p + 1 == pieces ? n : (n * (p + 1) / pieces) & ~index_t{15};
      if (begin < end) chunks.push_back({s, begin, end});
    }
  }
  return chunks;
}

/// Throws value_error for the first mask entry that is neither 0 nor 1 (the segments in order).
template <Scalar T>
void throw_first_non_binary(std::span<const Segment<T>> segments, const char* context) {
  for (std::size_t s = 0; s < segments.size(); ++s) {
    const std::string where =
        segments.size() == 1 ? std::string(context) : minnow::detail::concat(context, " (tensor ", s, ")");
    validate_mask(TensorView<const T, 1>(segments[s].mask, {segments[s].size}), where.c_str());
  }
}

/// Bits of the first radix digit: 16384 buckets. Float keys then split a binade into 64 buckets, so
/// the bucket holding the k-th key (the candidates re-read in pass 2) is a small fraction of the data.
inline constexpr int kDigitBits = 14;

/// Number of entries of m[0, n) that are neither 0 nor 1 (a compare-and-count the compiler vectorizes;
/// inside the histogram loop the same test would cost as much as the histogram).
template <Scalar T>
[[nodiscard]] index_t count_non_binary(const T* m, index_t n) noexcept {
  index_t bad = 0;
  for (index_t i = 0; i < n; ++i) bad += (m[i] != T(0)) & (m[i] != T(1));
  return bad;
}

/// @brief Prunes the k smallest-magnitude survivors of the concatenated segments, k from `amount`
/// relative to the survivors; returns k.
///
/// O(n) radix selection on magnitude_key instead of a sort: (1) histogram of the top 14 key bits of
/// the survivors (this also counts them; the masks are checked to be 0/1 first); (2) collect key and
/// position of the survivors in the bucket holding the k-th smallest key, per chunk; (3) narrow that
/// bucket digit by digit to the exact k-th key τ; (4) prune every survivor with key < τ, then, walking
/// the collected candidates in (tensor, index) order, just enough of those equal to τ. Passes (1), (2)
/// and (4) stream the data once each, chunks split over threads; the result does not depend on the split.
template <Scalar T>
index_t prune_smallest(std::span<const Segment<T>> segments, const Amount& amount, const char* context) {
  using Key = key_t<T>;
  constexpr int key_bits = 8 * static_cast<int>(sizeof(T)) - 1;  // the sign bit is always 0
  constexpr int shift0 = key_bits - kDigitBits;
  constexpr std::size_t buckets = std::size_t{1} << kDigitBits;

  index_t total = 0;
  for (const auto& s : segments) total += s.size;
  const int threads = stream_threads(total);
  const std::vector<Chunk> chunks = make_chunks(segments, total, threads);
  const long n_chunks = static_cast<long>(chunks.size());

  // (1) Mask check, then per-chunk histograms of the top digit over the survivors. Four interleaved
  // 32-bit sub-histograms (chunks are < 2^32 elements): neighbouring weights often share a bucket, and a
  // single counter would make each increment wait for the previous store.
  std::vector<index_t> histograms(chunks.size() * buckets, 0);
  std::vector<index_t> non_binary(chunks.size(), 0);
  minnow::detail::parallel_for(n_chunks, threads, [&](long c, int) {
    const Chunk chunk = chunks[static_cast<std::size_t>(c)];
    const T* w = segments[chunk.segment].weights;
    const T* m = segments[chunk.segment].mask;
    non_binary[static_cast<std::size_t>(c)] = count_non_binary(m + chunk.begin, chunk.end - chunk.begin);
    std::vector<std::uint32_t> sub(4 * buckets, 0u);
    index_t i = chunk.begin;
    for (; i + 4 <= chunk.end; i += 4) {
      for (std::size_t u = 0; u < 4; ++u) {
        const auto at = i + static_cast<index_t>(u);
        sub[u * buckets + (magnitude_key(w[at]) >> shift0)] += m[at] != T(0) ? 1u : 0u;
      }
    }
    for (; i < chunk.end; ++i) sub[magnitude_key(w[i]) >> shift0] += m[i] != T(0) ? 1u : 0u;
    index_t* hist = histograms.data() + static_cast<std::size_t>(c) * buckets;
    for (std::size_t b = 0; b < buckets; ++b) hist[b] = index_t{sub[b]} + sub[buckets + b] + sub[2 * buckets + b] + sub[3 * buckets + b];
  });
  if (std::any_of(non_binary.begin(), non_binary.end(), [](index_t v) { return v != 0; })) {
    throw_first_non_binary(segments, context);
  }
  std::vector<index_t> merged(buckets, 0);
  for (std::size_t c = 0; c < chunks.size(); ++c) {
    for (std::size_t b = 0; b < buckets; ++b) merged[b] += histograms[c * buckets + b];
  }
  index_t survivors = 0;
  for (const index_t count : merged) survivors += count;
  const index_t k = to_count(amount, survivors);
  if (k == 0) return 0;
  if (k == survivors) {  // everything goes: no ranking needed
    for (const auto& s : segments) std::fill_n(s.mask, s.size, T(0));
    return k;
  }

  // Bucket of the k-th smallest key; `rank` is its 1-based rank inside the bucket.
  Key prefix = 0;
  index_t rank = k;
  while (rank > merged[prefix]) rank -= merged[prefix++];

  // (2) Key and offset (from the chunk's begin) of the survivors in that bucket, in index order.
  std::vector<std::vector<Key>> keys(chunks.size());
  std::vector<std::vector<std::uint32_t>> offsets(chunks.size());
  minnow::detail::parallel_for(n_chunks, threads, [&](long c, int) {
    const Chunk chunk = chunks[static_cast<std::size_t>(c)];
    const index_t expected = histograms[static_cast<std::size_t>(c) * buckets + prefix];
    if (expected == 0) return;
    const T* w = segments[chunk.segment].weights;
    const T* m = segments[chunk.segment].mask;
    auto& key_out = keys[static_cast<std::size_t>(c)];
    auto& offset_out = offsets[static_cast<std::size_t>(c)];
    key_out.resize(static_cast<std::size_t>(expected));
    offset_out.resize(static_cast<std::size_t>(expected));
    // Blocks of 256: a vectorized pass flags the matches (reading every weight and mask entry as
    // streams), then only blocks with a match are scanned. Matches are rare (one bucket of 16384).
    const Key wanted = prefix;
    std::array<unsigned char, 256> hit{};
    std::size_t j = 0;
    for (index_t b = chunk.begin; b < chunk.end; b += 256) {
      const index_t len = std::min<index_t>(256, chunk.end - b);
      unsigned any = 0;
      for (index_t t = 0; t < len; ++t) {
        const unsigned h = ((magnitude_key(w[b + t]) >> shift0) == wanted) & (m[b + t] != T(0));
        hit[static_cast<std::size_t>(t)] = static_cast<unsigned char>(h);
        any |= h;
      }
      if (any == 0) continue;
      for (index_t t = 0; t < len; ++t) {
        if (hit[static_cast<std::size_t>(t)] == 0) continue;
        key_out[j] = magnitude_key(w[b + t]);
        offset_out[j++] = static_cast<std::uint32_t>(b + t - chunk.begin);
      }
    }
    assert(j == key_out.size() && "prune_smallest: pass 2 must find what pass 1 counted");
  });

  // (3) Narrow down digit by digit over the (much smaller) candidate set.
  std::vector<Key> work;
  work.reserve(static_cast<std::size_t>(merged[prefix]));
  for (const auto& part : keys) work.insert(work.end(), part.begin(), part.end());
  for (int shift = shift0; shift > 0;) {
    const int width = std::min(kDigitBits, shift);
    shift -= width;
    const Key digit_mask = (Key{1} << width) - 1;
    std::vector<index_t> hist(std::size_t{1} << width, 0);
    for (const Key key : work) ++hist[(key >> shift) & digit_mask];
    Key digit = 0;
    while (rank > hist[digit]) rank -= hist[digit++];
    std::erase_if(work, [&](Key key) { return ((key >> shift) & digit_mask) != digit; });
  }
  const Key tau = work.front();  // every remaining key is the k-th smallest one

  // (4) Everything below τ goes (a compare and blend the compiler vectorizes; entries already 0 stay 0) ...
  minnow::detail::parallel_for(n_chunks, threads, [&](long c, int) {
    const Chunk chunk = chunks[static_cast<std::size_t>(c)];
    const T* w = segments[chunk.segment].weights;
    T* m = segments[chunk.segment].mask;
    for (index_t i = chunk.begin; i < chunk.end; ++i) m[i] = magnitude_key(w[i]) < tau ? T(0) : m[i];
  });
  // ... and the first `rank` survivors equal to τ, in (tensor, index) order: the tie rule.
  for (std::size_t c = 0; c < chunks.size() && rank > 0; ++c) {
    T* m = segments[chunks[c].segment].mask + chunks[c].begin;
    for (std::size_t j = 0; j < keys[c].size() && rank > 0; ++j) {
      if (keys[c][j] != tau) continue;
      m[offsets[c][j]] = T(0);
      --rank;
    }
  }
  return k;
}

/// @brief Uniform integer in [0, range), range >= 1, by rejection: exactly uniform, and the same
/// sequence on every platform (std::uniform_int_distribution's algorithm is implementation-defined).
[[nodiscard]] inline std::uint64_t bounded(std::mt19937_64& rng, std::uint64_t range) {
  const std::uint64_t threshold = (0 - range) % range;  // 2^64 mod range: the biased low end
  for (;;) {
    const std::uint64_t r = rng();
    if (r >= threshold) return r % range;
  }
}

/// @brief Moves a uniformly random k-subset of `items` to its front (partial Fisher-Yates:
/// for i < k swap item i with item i + bounded(size − i)).
template <class Item>
void choose_front(std::vector<Item>& items, index_t k, std::mt19937_64& rng) {
  const auto n = static_cast<std::uint64_t>(items.size());
  for (std::uint64_t i = 0; i < static_cast<std::uint64_t>(k); ++i) {
    std::swap(items[i], items[i + bounded(rng, n - i)]);
  }
}

/// The slices along one dimension of a row-major tensor: element (o, s, i) is at (o·count + s)·inner + i.
struct SliceLayout {
  index_t outer = 1, count = 0, inner = 1;
};

/// Validates a structured call (sizes, logical shape, dim) and returns the slice layout.
template <class W, class T>
[[nodiscard]] SliceLayout structured_layout(TensorView<W, 1> weights, TensorView<T, 1> mask,
                                            std::span<const index_t> shape, int dim, const char* context) {
  if (weights.size() != mask.size()) {
    throw shape_error(minnow::detail::concat(context, ": mask of ", mask.size(), " elements does not match weights of ",
                                             weights.size(), " elements"));
  }
  const index_t product = minnow::detail::checked_product(shape, context);
  const std::string shown = minnow::detail::extents_string(shape);
  if (shape.empty() || product != weights.size()) {
    throw shape_error(minnow::detail::concat(context, ": logical shape ", shown, " does not describe ", weights.size(),
                                             " elements (structured pruning needs rank >= 1)"));
  }
  const auto rank = static_cast<int>(shape.size());
  if (dim < -rank || dim >= rank) {
    throw value_error(minnow::detail::concat(context, ": dim must lie in [", -rank, ", ", rank, ") for shape ", shown,
                                             ", got ", dim));
  }
  const auto axis = static_cast<std::size_t>(dim < 0 ? dim + rank : dim);
  SliceLayout layout;
  layout.count = shape[axis];
  for (std::size_t d = 0; d < axis; ++d) layout.outer *= shape[d];
  for (std::size_t d = axis + 1; d < shape.size(); ++d) layout.inner *= shape[d];
  return layout;
}

/// Indices of the slices that still hold a kept entry (PyTorch: mask summed over the other dims != 0).
template <Scalar T>
[[nodiscard]] std::vector<index_t> alive_slices(const T* mask, const SliceLayout& layout) {
  std::vector<char> alive(static_cast<std::size_t>(layout.count), 0);
  for (index_t o = 0; o < layout.outer; ++o) {
    for (index_t s = 0; s < layout.count; ++s) {
      const T* row = mask + (o * layout.count + s) * layout.inner;
      if (!alive[static_cast<std::size_t>(s)]) alive[static_cast<std::size_t>(s)] = std::any_of(row, row + layout.inner, [](T v) { return v != T(0); });
    }
  }
  std::vector<index_t> out;
  for (index_t s = 0; s < layout.count; ++s) {
    if (alive[static_cast<std::size_t>(s)]) out.push_back(s);
  }
  return out;
}

/// Zeroes the mask over every slice in `slices`.
template <Scalar T>
void prune_slices(T* mask, const SliceLayout& layout, std::span<const index_t> slices) {
  for (index_t o = 0; o < layout.outer; ++o) {
    for (const index_t s : slices) std::fill_n(mask + (o * layout.count + s) * layout.inner, layout.inner, T(0));
  }
}

/// Throws value_error unless n is 1, 2 or +infinity.
inline void check_norm(double n, const char* context) {
  if (n != 1.0 && n != 2.0 && n != std::numeric_limits<double>::infinity()) {
    throw value_error(minnow::detail::concat(context, ": n must be 1, 2 or infinity, got ", show(n)));
  }
}

}  // namespace detail

/// @brief Prunes the `amount` smallest-|w| survivors of `weights` (PyTorch's `l1_unstructured`).
///
/// `mask` (same shape, 0/1) is updated in place: the new mask multiplies the old one. Ties, NaN and
/// empty tensors follow the rules in this file's comment. O(n) (radix selection, no sort); large
/// tensors are processed by several threads, with the same result for any thread count.
/// @return the number of entries pruned by this call.
/// @throws shape_error when the shapes differ; value_error for a non-0/1 mask or a Count above the
///         number of survivors.
template <class W, Scalar T, std::size_t R>
  requires ElementOf<W, T>
index_t l1_unstructured(TensorView<W, R> weights, TensorView<T, R> mask, const Amount& amount) {
  check_same_shape("prune::l1_unstructured", "weights", weights.shape(), "mask", mask.shape());
  const detail::Segment<T> segment{weights.data(), mask.data(), weights.size()};
  return detail::prune_smallest<T>(std::span(&segment, 1), amount, "prune::l1_unstructured");
}

/// @brief One L1 ranking over the survivors of several tensors (PyTorch's `global_unstructured` with
/// `L1Unstructured`); each tensor's mask gets its share. The amount is relative to all survivors.
/// Ties go to the earlier tensor in `targets`, then to the lower index.
/// @return the number of entries pruned by this call, over all tensors.
/// @throws shape_error naming the tensor whose weights and mask differ in size; value_error as l1_unstructured.
template <Scalar T>
index_t global_unstructured(std::span<const MaskedView<T>> targets, const Amount& amount) {
  std::vector<detail::Segment<T>> segments;
  segments.reserve(targets.size());
  for (std::size_t i = 0; i < targets.size(); ++i) {
    if (targets[i].weights.shape() != targets[i].mask.shape()) {
      throw shape_error(minnow::detail::concat("prune::global_unstructured: tensor ", i, ": mask ",
                                               to_string(targets[i].mask.shape()), " does not match weights ",
                                               to_string(targets[i].weights.shape())));
    }
    segments.push_back({targets[i].weights.data(), targets[i].mask.data(), targets[i].weights.size()});
  }
  return detail::prune_smallest<T>(segments, amount, "prune::global_unstructured");
}

/// @brief global_unstructured over a vector (deduces T).
template <Scalar T>
index_t global_unstructured(const std::vector<MaskedView<T>>& targets, const Amount& amount) {
  return global_unstructured(std::span<const MaskedView<T>>(targets), amount);
}

/// @brief Prunes a uniformly random `amount` of the survivors (PyTorch's `random_unstructured`; its
/// random stream differs). Deterministic given the engine's state: the survivors' flat indices, in
/// increasing order, go through a partial Fisher-Yates shuffle driven by detail::bounded.
/// @return the number of entries pruned. @throws as l1_unstructured.
template <Scalar T, std::size_t R>
index_t random_unstructured(TensorView<T, R> mask, const Amount& amount, std::mt19937_64& rng) {
  validate_mask(mask, "prune::random_unstructured");
  std::vector<index_t> survivors;
  for (index_t i = 0; i < mask.size(); ++i) {
    if (mask.data()[i] != T(0)) survivors.push_back(i);
  }
  const index_t k = to_count(amount, static_cast<index_t>(survivors.size()));
  detail::choose_front(survivors, k, rng);
  for (index_t j = 0; j < k; ++j) mask.data()[survivors[static_cast<std::size_t>(j)]] = T(0);
  return k;
}

/// @brief Prunes the `amount` surviving slices along `dim` with the smallest Ln norm, n ∈ {1, 2, ∞}
/// (PyTorch's `ln_structured`); the norm runs over all other dims.
///
/// `weights` and `mask` are flat, `shape` is their logical shape (a Parameter's `shape`); `dim` may be
/// negative (Python style). A slice survives while any of its mask entries is 1; the amount is
/// relative to the surviving slices. Norms are accumulated in double; L2 ranks by the sum of squares
/// (same order, no square root). Ties: lower slice index pruned first; a NaN norm ranks above +inf.
/// A rank-1 tensor is allowed (each element is a slice), unlike PyTorch.
/// @return the number of slices pruned.
/// @throws shape_error when sizes/shape disagree; value_error for n, dim, a non-0/1 mask or a Count
///         above the number of surviving slices.
template <class W, Scalar T>
  requires ElementOf<W, T>
index_t ln_structured(TensorView<W, 1> weights, std::span<const index_t> shape, TensorView<T, 1> mask,
                      const Amount& amount, double n, int dim) {
  constexpr const char* context = "prune::ln_structured";
  const detail::SliceLayout layout = detail::structured_layout(weights, mask, shape, dim, context);
  detail::check_norm(n, context);
  validate_mask(mask, context);
  const std::vector<index_t> alive = detail::alive_slices(mask.data(), layout);
  const index_t k = to_count(amount, static_cast<index_t>(alive.size()));
  if (k == 0) return 0;

  // Norm (L2: sum of squares) of every slice, in one pass in memory order.
  std::vector<double> norm(static_cast<std::size_t>(layout.count), 0.0);
  const T* w = weights.data();
  for (index_t o = 0; o < layout.outer; ++o) {
    for (index_t s = 0; s < layout.count; ++s) {
      const T* row = w + (o * layout.count + s) * layout.inner;
      double acc = norm[static_cast<std::size_t>(s)];
      if (n == 1.0) {
        for (index_t i = 0; i < layout.inner; ++i) acc += std::abs(static_cast<double>(row[i]));
      } else if (n == 2.0) {
        for (index_t i = 0; i < layout.inner; ++i) acc += static_cast<double>(row[i]) * static_cast<double>(row[i]);
      } else {
        for (index_t i = 0; i < layout.inner; ++i) {
          const double a = std::abs(static_cast<double>(row[i]));
          if (a > acc || std::isnan(a)) acc = std::isnan(acc) ? acc : a;  // NaN, once seen, sticks
        }
      }
      norm[static_cast<std::size_t>(s)] = acc;
    }
  }

  // k smallest (norm key, slice index) among the alive slices: a tiny selection, nth_element suffices.
  std::vector<std::pair<std::uint64_t, index_t>> ranked;
  ranked.reserve(alive.size());
  for (const index_t s : alive) ranked.emplace_back(detail::magnitude_key(norm[static_cast<std::size_t>(s)]), s);
  std::nth_element(ranked.begin(), ranked.begin() + (k - 1), ranked.end());
  std::vector<index_t> pruned;
  pruned.reserve(static_cast<std::size_t>(k));
  for (index_t j = 0; j < k; ++j) pruned.push_back(ranked[static_cast<std::size_t>(j)].second);
  detail::prune_slices(mask.data(), layout, pruned);
  return k;
}

/// @brief ln_structured on views that carry their logical shape.
template <class W, Scalar T, std::size_t R>
  requires ElementOf<W, T>
index_t ln_structured(TensorView<W, R> weights, TensorView<T, R> mask, const Amount& amount, double n, int dim) {
  check_same_shape("prune::ln_structured", "weights", weights.shape(), "mask", mask.shape());
  const auto& shape = weights.shape();
  return ln_structured(TensorView<W, 1>(weights.data(), {weights.size()}), std::span<const index_t>(shape.data(), R),
                       TensorView<T, 1>(mask.data(), {mask.size()}), amount, n, dim);
}

/// @brief Prunes a uniformly random `amount` of the surviving slices along `dim` (PyTorch's
/// `random_structured`; its random stream differs). The surviving slice indices, in increasing order,
/// go through the same partial Fisher-Yates shuffle as random_unstructured.
/// @return the number of slices pruned. @throws as ln_structured (except n).
template <Scalar T>
index_t random_structured(TensorView<T, 1> mask, std::span<const index_t> shape, const Amount& amount, int dim,
                          std::mt19937_64& rng) {
  constexpr const char* context = "prune::random_structured";
  const detail::SliceLayout layout = detail::structured_layout(mask, mask, shape, dim, context);
  validate_mask(mask, context);
  std::vector<index_t> alive = detail::alive_slices(mask.data(), layout);
  const index_t k = to_count(amount, static_cast<index_t>(alive.size()));
  detail::choose_front(alive, k, rng);
  detail::prune_slices(mask.data(), layout, std::span<const index_t>(alive.data(), static_cast<std::size_t>(k)));
  return k;
}

/// @brief random_structured on a mask view that carries its logical shape.
template <Scalar T, std::size_t R>
index_t random_structured(TensorView<T, R> mask, const Amount& amount, int dim, std::mt19937_64& rng) {
  const auto& shape = mask.shape();
  return random_structured(TensorView<T, 1>(mask.data(), {mask.size()}), std::span<const index_t>(shape.data(), R),
                           amount, dim, rng);
}

/// @brief Number of slices along `dim` that still hold a kept entry (the candidates of the structured criteria).
/// @throws as ln_structured.
template <class M>
  requires Scalar<std::remove_const_t<M>>
[[nodiscard]] index_t surviving_slices(TensorView<M, 1> mask, std::span<const index_t> shape, int dim) {
  const auto layout = detail::structured_layout(mask, mask, shape, dim, "prune::surviving_slices");
  return static_cast<index_t>(detail::alive_slices(mask.data(), layout).size());
}

/// @brief Composes a user-supplied 0/1 mask onto `mask` (PyTorch's `custom_from_mask`).
/// @return the number of entries this call pruned.
/// @throws shape_error naming both shapes; value_error naming the first entry of `user_mask` not 0 or 1.
template <Scalar T, class M, std::size_t R>
  requires ElementOf<M, T>
index_t custom_from_mask(TensorView<T, R> mask, TensorView<M, R> user_mask) {
  check_same_shape("prune::custom_from_mask", "user mask", user_mask.shape(), "mask", mask.shape());
  validate_mask(user_mask, "prune::custom_from_mask");
  const index_t before = count_kept(mask);
  compose(mask, user_mask);
  return before - count_kept(mask);
}

}  // namespace minnow::prune
