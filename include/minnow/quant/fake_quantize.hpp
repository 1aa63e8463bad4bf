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
/// Speed: the elementwise kernels are simd/quantize.hpp's; float tensors run the widest path the CPU has
/// (AVX-512 or AVX2, chosen at run time, simd/arch.hpp), each tested bit for bit against the scalar
/// twin, and double tensors the scalar twin. Outputs larger than `kStreamBytes` are written with
/// non-temporal stores, which skip reading the destination into cache first. Work is split over
/// threads (minnow::set_threads) in contiguous ranges; results do not depend on the split or the path.

#include <minnow/error.hpp>
#include <minnow/quant/concepts.hpp>
#include <minnow/quant/detail/stream.hpp>
#include <minnow/simd/arch.hpp>
#include <minnow/simd/quantize.hpp>

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

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

// The formula's scalar pieces, defined with the kernels in simd/quantize.hpp; lsq.hpp uses them too.
using simd::detail::dequantize_clamped;
using simd::detail::FqConstants;
using simd::detail::inside;
using simd::detail::unclamped;

/// The kernel constants of `p` on `grid`, in the element type.
template <class T>
[[nodiscard]] inline FqConstants<T> constants(AffineParams p, QRange grid) noexcept {
  return {static_cast<T>(1.0f / p.scale), static_cast<T>(p.scale), static_cast<T>(p.zero_point),
          static_cast<T>(grid.qmin), static_cast<T>(grid.qmax)};
}

/// `f(tag)` with the kernel tag a pass over T runs: the run-time choice for float, the scalar twin for
/// double (the vector kernels are float only).
template <class T, class F>
decltype(auto) with_kernels(F&& f) {
  if constexpr (std::is_same_v<T, float>) return simd::dispatch(f);
  else return f(simd::arch::scalar{});
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
  detail::with_kernels<T>([&](auto arch) {
    detail::for_ranges(x.size(), [&](index_t b, index_t e, int) {
      simd::detail::fake_quant_forward(arch, x.data() + b, y.data() + b, e - b, c, stream);
    });
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
  detail::with_kernels<T>([&](auto arch) {
    detail::for_ranges(x.size(), [&](index_t b, index_t e, int) {
      simd::detail::fake_quant_forward_mask(arch, x.data() + b, y.data() + b, mask.data() + b, e - b, c, stream);
    });
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
  detail::with_kernels<T>([&](auto arch) {
    detail::for_ranges(x.size(), [&](index_t b, index_t e, int) {
      simd::detail::fake_quant_backward(arch, x.data() + b, dy.data() + b, dx.data() + b, e - b, c, stream);
    });
  });
}

/// @brief STE backward from a recorded mask: `dx = mask ? dy : 0` (per tensor or per channel alike).
template <Real T, std::size_t R>
void fake_quantize_backward(TensorView<const std::uint8_t, R> mask, std::type_identity_t<TensorView<const T, R>> dy,
                            TensorView<T, R> dx) {
  detail::check_same_shape(mask.shape(), dy.shape(), "fake_quantize_backward", "dy");
  detail::check_same_shape(mask.shape(), dx.shape(), "fake_quantize_backward", "dx");
  const bool stream = detail::should_stream<T>(dx.size());
  detail::with_kernels<T>([&](auto arch) {
    detail::for_ranges(dx.size(), [&](index_t b, index_t e, int) {
      simd::detail::ste_mask_backward(arch, mask.data() + b, dy.data() + b, dx.data() + b, e - b, stream);
    });
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
  detail::with_kernels<T>([&](auto arch) {
    detail::for_channel_runs(layout, [&](index_t b, index_t e, index_t ch, int) {
      simd::detail::fake_quant_forward(arch, x.data() + b, y.data() + b, e - b, detail::constants<T>(params[ch], grid),
                                       stream);
    });
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
  detail::with_kernels<T>([&](auto arch) {
    detail::for_channel_runs(layout, [&](index_t b, index_t e, index_t ch, int) {
      simd::detail::fake_quant_forward_mask(arch, x.data() + b, y.data() + b, mask.data() + b, e - b,
                                            detail::constants<T>(params[ch], grid), stream);
    });
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
  detail::with_kernels<T>([&](auto arch) {
    detail::for_channel_runs(layout, [&](index_t b, index_t e, index_t ch, int) {
      simd::detail::fake_quant_backward(arch, x.data() + b, dy.data() + b, dx.data() + b, e - b,
                                        detail::constants<T>(params[ch], grid), stream);
    });
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
