#pragma once
/// @file quant/mappings.hpp
/// @brief Uniform mappings from an observed range to a scale and zero point: `Affine`, `Symmetric`
/// (full or restricted grid) and `PowerOfTwo` (scale = 2^k for shift-only hardware).
///
/// Shared rules (PyTorch 1.13 `_calculate_qparams`, computed in float32 exactly as PyTorch does):
///  - the range is first extended to include 0: `lo = min(min, 0)`, `hi = max(max, 0)`, so 0.0 always
///    lands on a grid point (the zero point) and a pruned weight stays exactly 0;
///  - the scale is at least `kEps` (float epsilon, 2⁻²³): an all-zero tensor gives `scale = kEps`;
///  - a range with a NaN or infinite end, or with `min > max`, throws value_error (a NaN or infinite
///    scale would silently turn every output into NaN); so does a finite range too wide for a finite
///    float scale, and a grid with `qmin >= qmax`.
/// The zero point always lies in the grid the mapping reports (`mapped_grid`).

#include <minnow/error.hpp>
#include <minnow/quant/concepts.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace minnow::quant {

/// The smallest scale a mapping returns: float32 epsilon, as PyTorch's observers use.
inline constexpr float kEps = std::numeric_limits<float>::epsilon();

namespace detail {

/// Throws value_error unless `range` is finite with min <= max, and the grid has at least two levels.
inline void check_range(Range range, QRange grid, const char* context) {
  if (!std::isfinite(range.min) || !std::isfinite(range.max)) {
    throw value_error(minnow::detail::concat(context, ": range [", range.min, ", ", range.max,
                                             "] is not finite (did the observer see an infinity?)"));
  }
  if (range.min > range.max) {
    throw value_error(minnow::detail::concat(context, ": range [", range.min, ", ", range.max, "] has min > max"));
  }
  if (grid.qmin >= grid.qmax) {
    throw value_error(minnow::detail::concat(context, ": grid [", grid.qmin, ", ", grid.qmax,
                                             "] needs qmin < qmax"));
  }
}

/// Throws value_error when a computed scale overflowed (a finite range wider than float can scale).
inline void check_scale(float scale, Range range, const char* context) {
  if (!std::isfinite(scale)) {
    throw value_error(minnow::detail::concat(context, ": range [", range.min, ", ", range.max,
                                             "] is too wide for a finite float scale"));
  }
}

/// PyTorch's symmetric rule with a divisor: `max(max(−lo, hi) / divisor, eps)`, in float.
inline float symmetric_scale(Range range, float divisor) noexcept {
  const float lo = std::min(range.min, 0.0f), hi = std::max(range.max, 0.0f);
  return std::max(std::max(-lo, hi) / divisor, kEps);
}

/// Zero point of a symmetric grid: 0 on a signed grid, the middle `(qmin + qmax + 1) / 2` on an
/// unsigned one (128 for [0, 255], 64 for the reduced [0, 127]; PyTorch uses 128 for every quint8 grid
/// it did not customise, which lies outside [0, 127]: minnow keeps the zero point on the grid).
inline std::int32_t symmetric_zero_point(QRange grid) noexcept {
  if (grid.qmin < 0) return 0;
  return static_cast<std::int32_t>((std::int64_t{grid.qmin} + grid.qmax + 1) / 2);
}

}  // namespace detail

/// @brief Affine (asymmetric) mapping: the grid covers exactly [lo, hi].
///
/// `scale = max((hi − lo) / (qmax − qmin), eps)`, `zero_point = clamp(qmin − rint(lo / scale), qmin, qmax)`
/// with round half to even, all in float32 (PyTorch's per_tensor_affine / per_channel_affine).
struct Affine {
  [[nodiscard]] AffineParams qparams(Range range, QRange grid) const {
    detail::check_range(range, grid, "Affine::qparams");
    const float lo = std::min(range.min, 0.0f), hi = std::max(range.max, 0.0f);
    const float scale = std::max((hi - lo) / static_cast<float>(grid.qmax - grid.qmin), kEps);
    detail::check_scale(scale, range, "Affine::qparams");
    // lo / scale is in [−(qmax − qmin), 0] up to rounding, so the integer conversion cannot overflow.
    const auto shift = static_cast<std::int64_t>(std::nearbyint(lo / scale));
    const std::int64_t zero_point = std::clamp<std::int64_t>(grid.qmin - shift, grid.qmin, grid.qmax);
    return {scale, static_cast<std::int32_t>(zero_point)};
  }
};

/// @brief Symmetric mapping: zero point in the middle of the grid, scale from max(|lo|, hi).
///
/// Full grid (PyTorch's per_tensor_symmetric): `scale = max(max(−lo, hi) / ((qmax − qmin) / 2), eps)`.
/// The divisor is 127.5 for 8 bits, so +max may round to 128 and be clamped to 127, as in PyTorch.
/// `restricted`: the grid loses its lowest level ([−127, 127] for int8, [1, 255] for uint8) and
/// `scale = max|x| / ((qmax − qmin − 1) / 2)` (127 for int8), so ±max land exactly on the ends.
struct Symmetric {
  bool restricted = false;

  /// The grid values are clamped to: `grid` itself, or `[qmin + 1, qmax]` when restricted.
  [[nodiscard]] QRange grid(QRange full) const noexcept {
    return restricted ? QRange{full.qmin + 1, full.qmax} : full;
  }

  [[nodiscard]] AffineParams qparams(Range range, QRange full) const {
    detail::check_range(range, full, "Symmetric::qparams");
    const QRange g = grid(full);
    if (g.qmin >= g.qmax) {
      throw value_error(minnow::detail::concat("Symmetric::qparams: the restricted grid [", g.qmin, ", ", g.qmax,
                                               "] of [", full.qmin, ", ", full.qmax, "] has a single level"));
    }
    const float divisor = static_cast<float>(g.qmax - g.qmin) / 2.0f;
    const float scale = detail::symmetric_scale(range, divisor);
    detail::check_scale(scale, range, "Symmetric::qparams");
    return {scale, detail::symmetric_zero_point(full)};
  }
};

/// @brief Power-of-two mapping: the symmetric scale rounded *up* to the next power of two, so the
/// observed range stays covered and multiplying by the scale is a shift. Zero point as `Symmetric`.
struct PowerOfTwo {
  bool restricted = false;

  [[nodiscard]] QRange grid(QRange full) const noexcept { return Symmetric{restricted}.grid(full); }

  [[nodiscard]] AffineParams qparams(Range range, QRange full) const {
    AffineParams p = Symmetric{restricted}.qparams(range, full);
    int exponent = 0;
    const float mantissa = std::frexp(p.scale, &exponent);  // scale = mantissa · 2^exponent, mantissa in [0.5, 1)
    if (mantissa != 0.5f) p.scale = std::ldexp(1.0f, exponent);
    detail::check_scale(p.scale, range, "PowerOfTwo::qparams");
    return p;
  }
};

/// @brief The grid a mapping quantizes onto: `m.grid(full)` when the mapping narrows it (a restricted
/// symmetric mapping), else `full`. A user mapping may offer `grid(QRange) const -> QRange` too.
template <class M>
[[nodiscard]] QRange mapped_grid(const M& mapping, QRange full) noexcept {
  if constexpr (requires { { mapping.grid(full) } -> std::same_as<QRange>; }) {
    return mapping.grid(full);
  } else {
    return full;
  }
}

static_assert(UniformMapping<Affine> && UniformMapping<Symmetric> && UniformMapping<PowerOfTwo>);

}  // namespace minnow::quant
