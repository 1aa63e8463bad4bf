#pragma once
/// @file quant/fake_quantize.hpp
/// @brief Fake quantization (quantize, then dequantize, in floating point) and its straight-through
/// gradient, per tensor and per channel; and the nearest-centroid forward of a codebook.
///
/// Forward, exactly PyTorch 1.13's `fake_quantize_per_{tensor,channel}_affine`:
/// @code
///   inv = 1.0f / scale;                  // float reciprocal, then a multiply (not a division)
///   q   = zero_point + nearbyint(x · inv); // round half to even
///   y   = (clamp(q, qmin, qmax) − zero_point) · scale
/// @endcode
/// computed in the element type (for double tensors: `x · double(inv)`, `· double(scale)`, as PyTorch
/// does). Backward (straight-through estimator): `dx = dy` where `qmin ≤ q ≤ qmax` (q before the clamp),
/// else 0.
///
/// Non-finite inputs, where minnow deliberately differs from PyTorch (whose int64 cast sends NaN, ±Inf
/// and |x · inv| ≥ 2⁶³ all to qmin):
///  - NaN propagates: y = NaN, and its gradient is 0 (NaN is outside the grid);
///  - ±Inf and huge values clamp to the nearest end of the grid (y = (qmax − zp)·scale for +Inf), gradient 0.
///
/// Speed: float tensors go through an AVX-512 kernel (when compiled for it) that is tested bit for bit
/// against the scalar kernel in this file; outputs larger than `kStreamBytes` are written with
/// non-temporal stores, which skip reading the destination into cache first. Work is split over
/// threads (minnow::set_threads) in contiguous ranges; results do not depend on the split.

#include <minnow/error.hpp>
#include <minnow/quant/concepts.hpp>
#include <minnow/quant/detail/stream.hpp>

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace minnow::quant {

/// The element types fake quantization works on: float (training) and double (gradient checks).
template <class T>
concept Real = std::same_as<T, float> || std::same_as<T, double>;

/// @brief Throws value_error unless `p` is usable on `grid`: a scale that is positive, finite and has a
/// finite reciprocal (the kernels multiply by 1/scale), and a zero point inside [qmin, qmax]. `context`
/// starts the message; `channel` ≥ 0 names the channel of per-channel parameters (< 0: per tensor).
inline void check_affine_params(AffineParams p, QRange grid, const char* context, index_t channel = -1) {
  const std::string where = channel < 0 ? std::string() : minnow::detail::concat(" of channel ", channel);
  if (!(p.scale > 0.0f) || !std::isfinite(p.scale) || !std::isfinite(1.0f / p.scale)) {
    throw value_error(minnow::detail::concat(context, ": scale", where, " must be positive, finite and have a finite "
                                             "reciprocal, got ", p.scale));
  }
  if (p.zero_point < grid.qmin || p.zero_point > grid.qmax) {
    throw value_error(minnow::detail::concat(context, ": zero point", where, " ", p.zero_point, " is outside the grid [",
                                             grid.qmin, ", ", grid.qmax, "]"));
  }
}

namespace detail {

/// Outputs at least this large are written with non-temporal stores (they would not stay in cache).
inline constexpr index_t kStreamBytes = index_t{16} << 20;

/// The per-channel constants of the forward formula, in the element type.
template <class T>
struct FqConstants {
  T inv, scale, zero_point, lo, hi;
};

template <class T>
[[nodiscard]] inline FqConstants<T> constants(AffineParams p, QRange grid) noexcept {
  return {static_cast<T>(1.0f / p.scale), static_cast<T>(p.scale), static_cast<T>(p.zero_point),
          static_cast<T>(grid.qmin), static_cast<T>(grid.qmax)};
}

/// q = zero_point + rint(x · inv), before the clamp.
template <class T>
[[nodiscard]] inline T unclamped(T x, const FqConstants<T>& c) noexcept {
  return c.zero_point + std::nearbyint(x * c.inv);
}

/// (clamp(q) − zero_point) · scale; a NaN q stays NaN (the comparisons are false).
template <class T>
[[nodiscard]] inline T dequantize_clamped(T q, const FqConstants<T>& c) noexcept {
  const T clamped = q < c.lo ? c.lo : (q > c.hi ? c.hi : q);
  return (clamped - c.zero_point) * c.scale;
}

template <class T>
[[nodiscard]] inline bool inside(T q, const FqConstants<T>& c) noexcept {
  return q >= c.lo && q <= c.hi;
}

// ---- scalar kernels: the reference the SIMD kernels are tested against ----

template <class T>
void forward_scalar(const T* x, T* y, index_t n, const FqConstants<T>& c) noexcept {
  for (index_t i = 0; i < n; ++i) y[i] = dequantize_clamped(unclamped(x[i], c), c);
}

template <class T>
void forward_mask_scalar(const T* x, T* y, std::uint8_t* mask, index_t n, const FqConstants<T>& c) noexcept {
  for (index_t i = 0; i < n; ++i) {
    const T q = unclamped(x[i], c);
    y[i] = dequantize_clamped(q, c);
    mask[i] = inside(q, c) ? 1 : 0;
  }
}

template <class T>
void backward_scalar(const T* x, const T* dy, T* dx, index_t n, const FqConstants<T>& c) noexcept {
  for (index_t i = 0; i < n; ++i) dx[i] = inside(unclamped(x[i], c), c) ? dy[i] : T(0);
}

template <class T>
void mask_backward_scalar(const std::uint8_t* mask, const T* dy, T* dx, index_t n) noexcept {
  for (index_t i = 0; i < n; ++i) dx[i] = mask[i] != 0 ? dy[i] : T(0);
}

#if defined(__AVX512F__)

/// The forward formula on 16 floats; `in` gets the STE mask (qmin ≤ q ≤ qmax, false for NaN).
struct Fq16 {
  __m512 inv, scale, zero_point, lo, hi;
  explicit Fq16(const FqConstants<float>& c) noexcept
      : inv(_mm512_set1_ps(c.inv)), scale(_mm512_set1_ps(c.scale)), zero_point(_mm512_set1_ps(c.zero_point)),
        lo(_mm512_set1_ps(c.lo)), hi(_mm512_set1_ps(c.hi)) {}

  [[nodiscard]] __m512 q(__m512 x) const noexcept {
    const __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(x, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_add_ps(zero_point, r);
  }
  [[nodiscard]] __m512 y(__m512 q) const noexcept {
    // min/max return their second operand when either is NaN: q second keeps a NaN.
    const __m512 clamped = _mm512_min_ps(hi, _mm512_max_ps(lo, q));
    return _mm512_mul_ps(_mm512_sub_ps(clamped, zero_point), scale);
  }
  [[nodiscard]] __mmask16 in(__m512 q) const noexcept {
    return _mm512_cmp_ps_mask(q, lo, _CMP_GE_OQ) & _mm512_cmp_ps_mask(q, hi, _CMP_LE_OQ);
  }
};

[[nodiscard]] inline __mmask16 lanes(index_t remaining) noexcept {
  return static_cast<__mmask16>(remaining >= 16 ? 0xFFFF : (1u << remaining) - 1);
}

/// Elements before `p` reaches a 64-byte boundary (all of n when p is not even float-aligned).
[[nodiscard]] inline index_t head_to_line(const void* p, index_t n) noexcept {
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  if (address % sizeof(float) != 0) return n;
  return std::min<index_t>(n, static_cast<index_t>((64 - address % 64) % 64 / sizeof(float)));
}

/// Runs `step(i, lanes, stream)` over [0, n) in vectors of 16: with `stream`, a masked head up to the
/// destination's next cache line, then whole aligned vectors the step may stream, then a masked tail.
template <class Step>
void sweep16(const void* destination, index_t n, bool stream, Step&& step) noexcept {
  index_t i = 0;
  stream = stream && n >= 1024;  // a fence per short run would cost more than streaming saves
  if (stream) {
    const index_t head = head_to_line(destination, n);
    if (head == n) stream = false;
    else if (head > 0) {
      step(i, lanes(head), false);
      i = head;
    }
  }
  for (; i + 16 <= n; i += 16) step(i, static_cast<__mmask16>(0xFFFF), stream);
  if (i < n) step(i, lanes(n - i), false);
  if (stream) _mm_sfence();
}

inline void store(float* p, __m512 v, __mmask16 k, bool stream) noexcept {
  if (k == 0xFFFF) {
    if (stream) _mm512_stream_ps(p, v);
    else _mm512_storeu_ps(p, v);
  } else {
    _mm512_mask_storeu_ps(p, k, v);
  }
}

inline void forward_simd(const float* x, float* y, index_t n, const FqConstants<float>& c, bool stream) noexcept {
  const Fq16 f(c);
  sweep16(y, n, stream, [&](index_t i, __mmask16 k, bool s) {
    store(y + i, f.y(f.q(_mm512_maskz_loadu_ps(k, x + i))), k, s);
  });
}

inline void backward_simd(const float* x, const float* dy, float* dx, index_t n, const FqConstants<float>& c,
                          bool stream) noexcept {
  const Fq16 f(c);
  sweep16(dx, n, stream, [&](index_t i, __mmask16 k, bool s) {
    const __mmask16 in = f.in(f.q(_mm512_maskz_loadu_ps(k, x + i)));
    store(dx + i, _mm512_maskz_loadu_ps(in & k, dy + i), k, s);
  });
}

#if defined(__AVX512BW__) && defined(__AVX512VL__)
inline void forward_mask_simd(const float* x, float* y, std::uint8_t* mask, index_t n, const FqConstants<float>& c,
                              bool stream) noexcept {
  const Fq16 f(c);
  const __m128i one = _mm_set1_epi8(1);
  sweep16(y, n, stream, [&](index_t i, __mmask16 k, bool s) {
    const __m512 q = f.q(_mm512_maskz_loadu_ps(k, x + i));
    store(y + i, f.y(q), k, s);
    _mm_mask_storeu_epi8(mask + i, k, _mm_maskz_mov_epi8(f.in(q), one));
  });
}

inline void mask_backward_simd(const std::uint8_t* mask, const float* dy, float* dx, index_t n, bool stream) noexcept {
  sweep16(dx, n, stream, [&](index_t i, __mmask16 k, bool s) {
    const __mmask16 keep = _mm_mask_test_epi8_mask(k, _mm_maskz_loadu_epi8(k, mask + i), _mm_set1_epi8(-1));
    store(dx + i, _mm512_maskz_loadu_ps(keep, dy + i), k, s);
  });
}
#endif
#endif  // __AVX512F__

// ---- dispatch: SIMD for float when available, the scalar kernels otherwise ----

template <class T>
void forward_run(const T* x, T* y, index_t n, const FqConstants<T>& c, bool stream) noexcept {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) return forward_simd(x, y, n, c, stream);
#endif
  (void)stream;
  forward_scalar(x, y, n, c);
}

template <class T>
void forward_mask_run(const T* x, T* y, std::uint8_t* mask, index_t n, const FqConstants<T>& c, bool stream) noexcept {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
  if constexpr (std::is_same_v<T, float>) return forward_mask_simd(x, y, mask, n, c, stream);
#endif
  (void)stream;
  forward_mask_scalar(x, y, mask, n, c);
}

template <class T>
void backward_run(const T* x, const T* dy, T* dx, index_t n, const FqConstants<T>& c, bool stream) noexcept {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) return backward_simd(x, dy, dx, n, c, stream);
#endif
  (void)stream;
  backward_scalar(x, dy, dx, n, c);
}

template <class T>
void mask_backward_run(const std::uint8_t* mask, const T* dy, T* dx, index_t n, bool stream) noexcept {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
  if constexpr (std::is_same_v<T, float>) return mask_backward_simd(mask, dy, dx, n, stream);
#endif
  (void)stream;
  mask_backward_scalar(mask, dy, dx, n);
}

/// Whether a pass writing `n` elements of T streams its output past the caches.
template <class T>
[[nodiscard]] inline bool should_stream(index_t n) noexcept {
  return n * static_cast<index_t>(sizeof(T)) >= kStreamBytes;
}

/// Calls `run(begin, end, channel, thread)` for the pieces of [0, layout size) that share a channel,
/// split over threads: a thread's range is cut at channel-run boundaries (runs of `inner` elements).
template <class Run>
void for_channel_runs(const ChannelLayout& layout, Run&& run) {
  const index_t n = layout.outer * layout.channels * layout.inner;
  for_ranges(n, [&](index_t begin, index_t end, int thread) {
    index_t i = begin;
    while (i < end) {
      const index_t r = i / layout.inner;
      const index_t stop = std::min(end, (r + 1) * layout.inner);
      run(i, stop, r % layout.channels, thread);
      i = stop;
    }
  });
}

// ---- validation at the boundary ----

inline void check_grid(QRange grid, const char* context) {
  constexpr std::int32_t limit = std::int32_t{1} << 24;  // every level exactly representable in float
  if (grid.qmin > grid.qmax || grid.qmin < -limit || grid.qmax > limit) {
    throw value_error(minnow::detail::concat(context, ": grid [", grid.qmin, ", ", grid.qmax,
                                             "] needs qmin <= qmax within ±2^24"));
  }
}

template <std::size_t R>
void check_same_shape(const Shape<R>& expected, const Shape<R>& given, const char* context, const char* what) {
  if (expected != given) {
    throw shape_error(minnow::detail::concat(context, ": ", what, " has shape ", to_string(given), ", expected ",
                                             to_string(expected)));
  }
}

inline void check_layout(const ChannelLayout& layout, index_t size, std::size_t params, const char* context) {
  if (layout.outer < 0 || layout.channels < 0 || layout.inner < 0 ||
      layout.outer * layout.channels * layout.inner != size) {
    throw shape_error(minnow::detail::concat(context, ": layout {outer ", layout.outer, ", channels ", layout.channels,
                                             ", inner ", layout.inner, "} does not describe ", size, " elements"));
  }
  if (static_cast<index_t>(params) != layout.channels) {
    throw shape_error(minnow::detail::concat(context, ": ", params, " per-channel parameter sets for ",
                                             layout.channels, " channels"));
  }
}

inline void check_channel_params(std::span<const AffineParams> params, QRange grid, const char* context) {
  for (std::size_t c = 0; c < params.size(); ++c) check_affine_params(params[c], grid, context, static_cast<index_t>(c));
}

}  // namespace detail

// ---- per tensor ----

/// @brief `y = fake_quantize(x)` with one scale and zero point (see the file comment for the formula).
/// `x` and `y` may be the same memory.
/// @throws value_error for a bad scale, zero point or grid; shape_error when the shapes differ.
template <Real T, std::size_t R>
void fake_quantize(std::type_identity_t<TensorView<const T, R>> x, AffineParams params, QRange grid,
                   TensorView<T, R> y) {
  detail::check_grid(grid, "fake_quantize");
  check_affine_params(params, grid, "fake_quantize");
  detail::check_same_shape(x.shape(), y.shape(), "fake_quantize", "y");
  const auto c = detail::constants<T>(params, grid);
  const bool stream = detail::should_stream<T>(x.size());
  detail::for_ranges(x.size(), [&](index_t b, index_t e, int) {
    detail::forward_run(x.data() + b, y.data() + b, e - b, c, stream);
  });
}

/// @brief The forward pass that also records the STE mask (1 where qmin ≤ q ≤ qmax, else 0), so that
/// the backward pass reads one byte per element instead of the input.
template <Real T, std::size_t R>
void fake_quantize(std::type_identity_t<TensorView<const T, R>> x, AffineParams params, QRange grid,
                   TensorView<T, R> y, TensorView<std::uint8_t, R> mask) {
  detail::check_grid(grid, "fake_quantize");
  check_affine_params(params, grid, "fake_quantize");
  detail::check_same_shape(x.shape(), y.shape(), "fake_quantize", "y");
  detail::check_same_shape(x.shape(), mask.shape(), "fake_quantize", "mask");
  const auto c = detail::constants<T>(params, grid);
  const bool stream = detail::should_stream<T>(x.size());
  detail::for_ranges(x.size(), [&](index_t b, index_t e, int) {
    detail::forward_mask_run(x.data() + b, y.data() + b, mask.data() + b, e - b, c, stream);
  });
}

/// @brief STE backward: `dx = dy` where x falls inside the grid (before clamping), else 0.
/// `dx` may alias `dy`. @throws as the forward, and shape_error when dy or dx differ from x.
template <Real T, std::size_t R>
void fake_quantize_backward(std::type_identity_t<TensorView<const T, R>> x,
                            std::type_identity_t<TensorView<const T, R>> dy, AffineParams params, QRange grid,
                            TensorView<T, R> dx) {
  detail::check_grid(grid, "fake_quantize_backward");
  check_affine_params(params, grid, "fake_quantize_backward");
  detail::check_same_shape(x.shape(), dy.shape(), "fake_quantize_backward", "dy");
  detail::check_same_shape(x.shape(), dx.shape(), "fake_quantize_backward", "dx");
  const auto c = detail::constants<T>(params, grid);
  const bool stream = detail::should_stream<T>(x.size());
  detail::for_ranges(x.size(), [&](index_t b, index_t e, int) {
    detail::backward_run(x.data() + b, dy.data() + b, dx.data() + b, e - b, c, stream);
  });
}

/// @brief STE backward from a recorded mask: `dx = mask ? dy : 0` (per tensor or per channel alike).
template <Real T, std::size_t R>
void fake_quantize_backward(TensorView<const std::uint8_t, R> mask, std::type_identity_t<TensorView<const T, R>> dy,
                            TensorView<T, R> dx) {
  detail::check_same_shape(mask.shape(), dy.shape(), "fake_quantize_backward", "dy");
  detail::check_same_shape(mask.shape(), dx.shape(), "fake_quantize_backward", "dx");
  const bool stream = detail::should_stream<T>(dx.size());
  detail::for_ranges(dx.size(), [&](index_t b, index_t e, int) {
    detail::mask_backward_run(mask.data() + b, dy.data() + b, dx.data() + b, e - b, stream);
  });
}

// ---- per channel ----

/// @brief Per-channel fake quantization: channel c of `layout` (see PerChannel::layout) uses params[c].
/// @throws shape_error when the layout does not describe x or params.size() differs from the channel
/// count; value_error for a bad scale or zero point (naming the channel).
template <Real T, std::size_t R>
void fake_quantize(std::type_identity_t<TensorView<const T, R>> x, const ChannelLayout& layout,
                   std::span<const AffineParams> params, QRange grid, TensorView<T, R> y) {
  detail::check_grid(grid, "fake_quantize");
  detail::check_layout(layout, x.size(), params.size(), "fake_quantize");
  detail::check_channel_params(params, grid, "fake_quantize");
  detail::check_same_shape(x.shape(), y.shape(), "fake_quantize", "y");
  const bool stream = detail::should_stream<T>(x.size());
  detail::for_channel_runs(layout, [&](index_t b, index_t e, index_t ch, int) {
    detail::forward_run(x.data() + b, y.data() + b, e - b, detail::constants<T>(params[ch], grid), stream);
  });
}

/// @brief Per-channel forward that also records the STE mask.
template <Real T, std::size_t R>
void fake_quantize(std::type_identity_t<TensorView<const T, R>> x, const ChannelLayout& layout,
                   std::span<const AffineParams> params, QRange grid, TensorView<T, R> y,
                   TensorView<std::uint8_t, R> mask) {
  detail::check_grid(grid, "fake_quantize");
  detail::check_layout(layout, x.size(), params.size(), "fake_quantize");
  detail::check_channel_params(params, grid, "fake_quantize");
  detail::check_same_shape(x.shape(), y.shape(), "fake_quantize", "y");
  detail::check_same_shape(x.shape(), mask.shape(), "fake_quantize", "mask");
  const bool stream = detail::should_stream<T>(x.size());
  detail::for_channel_runs(layout, [&](index_t b, index_t e, index_t ch, int) {
    detail::forward_mask_run(x.data() + b, y.data() + b, mask.data() + b, e - b, detail::constants<T>(params[ch], grid),
                             stream);
  });
}

/// @brief Per-channel STE backward.
template <Real T, std::size_t R>
void fake_quantize_backward(std::type_identity_t<TensorView<const T, R>> x,
                            std::type_identity_t<TensorView<const T, R>> dy, const ChannelLayout& layout,
                            std::span<const AffineParams> params, QRange grid, TensorView<T, R> dx) {
  detail::check_grid(grid, "fake_quantize_backward");
  detail::check_layout(layout, x.size(), params.size(), "fake_quantize_backward");
  detail::check_channel_params(params, grid, "fake_quantize_backward");
  detail::check_same_shape(x.shape(), dy.shape(), "fake_quantize_backward", "dy");
  detail::check_same_shape(x.shape(), dx.shape(), "fake_quantize_backward", "dx");
  const bool stream = detail::should_stream<T>(x.size());
  detail::for_channel_runs(layout, [&](index_t b, index_t e, index_t ch, int) {
    detail::backward_run(x.data() + b, dy.data() + b, dx.data() + b, e - b, detail::constants<T>(params[ch], grid),
                         stream);
  });
}

// ---- codebooks ----

/// @brief Throws value_error unless the centroids of `book` are non-empty, finite and strictly ascending:
/// what fake_quantize() and infer's codebook weights accept. `channel` ≥ 0 names a per-channel codebook
/// in the message; `context` starts it.
inline void check_codebook(const Codebook& book, const char* context, index_t channel = -1) {
  const std::string where = channel < 0 ? std::string() : minnow::detail::concat(" of channel ", channel);
  if (book.centroids.empty()) {
    throw value_error(minnow::detail::concat(context, ": codebook", where, " has no centroids"));
  }
  for (std::size_t k = 0; k < book.centroids.size(); ++k) {
    if (!std::isfinite(book.centroids[k]) || (k > 0 && !(book.centroids[k - 1] < book.centroids[k]))) {
      throw value_error(minnow::detail::concat(context, ": codebook", where, " must hold finite, strictly ascending "
                                               "centroids; centroid ", k, " is ", book.centroids[k]));
    }
  }
}

namespace detail {

/// The centroid nearest to x (distances computed in T; a tie goes to the lower centroid); NaN stays NaN.
template <class T>
[[nodiscard]] T nearest_centroid(T x, const std::vector<float>& centroids) noexcept {
  if (std::isnan(x)) return x;
  const auto above = std::upper_bound(centroids.begin(), centroids.end(), x,
                                      [](T value, float c) { return value < static_cast<T>(c); });
  if (above == centroids.begin()) return static_cast<T>(centroids.front());
  if (above == centroids.end()) return static_cast<T>(centroids.back());
  const T lower = static_cast<T>(*(above - 1)), upper = static_cast<T>(*above);
  return x - lower <= upper - x ? lower : upper;
}

}  // namespace detail

/// @brief Codebook forward: every element becomes its nearest centroid (ties to the lower one; NaN stays
/// NaN; ±Inf goes to the last / first centroid). The backward pass is the identity (`dx = dy`).
/// @throws value_error for an empty, non-finite or unsorted codebook; shape_error when shapes differ.
template <Real T, std::size_t R>
void fake_quantize(std::type_identity_t<TensorView<const T, R>> x, const Codebook& book, TensorView<T, R> y) {
  check_codebook(book, "fake_quantize");
  detail::check_same_shape(x.shape(), y.shape(), "fake_quantize", "y");
  detail::for_ranges(x.size(), [&](index_t b, index_t e, int) {
    for (index_t i = b; i < e; ++i) y.data()[i] = detail::nearest_centroid(x.data()[i], book.centroids);
  });
}

/// @brief Per-channel codebook forward: channel c of `layout` uses books[c].
template <Real T, std::size_t R>
void fake_quantize(std::type_identity_t<TensorView<const T, R>> x, const ChannelLayout& layout,
                   std::span<const Codebook> books, TensorView<T, R> y) {
  detail::check_layout(layout, x.size(), books.size(), "fake_quantize");
  for (std::size_t c = 0; c < books.size(); ++c) check_codebook(books[c], "fake_quantize", static_cast<index_t>(c));
  detail::check_same_shape(x.shape(), y.shape(), "fake_quantize", "y");
  detail::for_channel_runs(layout, [&](index_t b, index_t e, index_t ch, int) {
    const auto& centroids = books[static_cast<std::size_t>(ch)].centroids;
    for (index_t i = b; i < e; ++i) y.data()[i] = detail::nearest_centroid(x.data()[i], centroids);
  });
}

/// @brief Codebook backward (straight through): `dx = dy`. @throws shape_error when shapes differ.
template <Real T, std::size_t R>
void codebook_backward(std::type_identity_t<TensorView<const T, R>> dy, TensorView<T, R> dx) {
  dx.copy_from(dy);
}

}  // namespace minnow::quant
