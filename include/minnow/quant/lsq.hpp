#pragma once
/// @file quant/lsq.hpp
/// @brief Learned step size quantization (LSQ, Esser et al. 2019): the fake-quant forward with a scale
/// that is trained, and its gradient.
///
/// Forward: `fake_quantize` (same formula, same rounding). Backward, per element, with
/// `q = rint(zero_point + x · inv)` (PyTorch 1.13 `_fake_quantize_learnable_per_{tensor,channel}_affine`
/// rounds after adding the zero point here, unlike the forward):
/// @code
///   q < qmin:   dx = 0,   ∂ŷ/∂s = qmin − zero_point
///   q > qmax:   dx = 0,   ∂ŷ/∂s = qmax − zero_point
///   otherwise:  dx = dy,  ∂ŷ/∂s = (ŷ − x) · inv
///   ∂L/∂s = g · Σ dy · ∂ŷ/∂s,   g = grad_factor (LSQ: 1/√(N · qmax), see lsq_grad_factor)
/// @endcode
/// The sum is accumulated in double, per thread in a fixed order: the same thread count gives the same
/// bits. A NaN in x gives dx = 0 there and a NaN scale gradient (the training step should see it).
/// Initial scale: `s = 2 · mean(|x|) / √qmax`.

#include <minnow/quant/fake_quantize.hpp>
#include <minnow/quant/mappings.hpp>

#include <algorithm>
#include <cmath>
#include <span>
#include <type_traits>
#include <vector>

namespace minnow::quant {

/// @brief LSQ's gradient scale `1 / √(n · qmax)` for a tensor of n elements (PyTorch's `grad_factor`).
/// @throws value_error when n <= 0 or qmax <= 0.
[[nodiscard]] inline double lsq_grad_factor(index_t n, QRange grid) {
  if (n <= 0 || grid.qmax <= 0) {
    throw value_error(minnow::detail::concat("lsq_grad_factor: needs n > 0 and qmax > 0, got n = ", n, ", qmax = ",
                                             grid.qmax));
  }
  return 1.0 / std::sqrt(static_cast<double>(n) * static_cast<double>(grid.qmax));
}

/// @brief LSQ's initial scale `2 · mean(|x|) / √qmax`, at least kEps (an all-zero tensor still gets a
/// usable scale). @throws value_error for an empty x, qmax <= 0, or a non-finite x.
template <Real T, std::size_t R>
[[nodiscard]] float lsq_init_scale(std::type_identity_t<TensorView<const T, R>> x, QRange grid) {
  if (x.empty() || grid.qmax <= 0) {
    throw value_error(minnow::detail::concat("lsq_init_scale: needs values and qmax > 0, got ", x.size(),
                                             " values, qmax = ", grid.qmax));
  }
  const double mean = x.array().abs().template cast<double>().mean();
  const double scale = 2.0 * mean / std::sqrt(static_cast<double>(grid.qmax));
  if (!std::isfinite(scale)) {
    throw value_error(minnow::detail::concat("lsq_init_scale: mean |x| is ", mean, ", not finite"));
  }
  return std::max(static_cast<float>(scale), kEps);
}

namespace detail {

/// LSQ backward over [0, n) with one set of constants; returns Σ dy · ∂ŷ/∂s (without grad_factor).
template <class T>
[[nodiscard]] double lsq_backward_run(const T* x, const T* dy, T* dx, index_t n, const FqConstants<T>& c) noexcept {
  const T below = c.lo - c.zero_point, above = c.hi - c.zero_point;
  double sum = 0.0;
  for (index_t i = 0; i < n; ++i) {
    const T q = std::nearbyint(c.zero_point + x[i] * c.inv);
    T ds;
    if (q < c.lo) {
      ds = below;
    } else if (q > c.hi) {
      ds = above;
    } else {
      ds = (dequantize_clamped(unclamped(x[i], c), c) - x[i]) * c.inv;
    }
    const T g = dy[i];
    dx[i] = q >= c.lo && q <= c.hi ? g : T(0);
    sum += static_cast<double>(g * ds);
  }
  return sum;
}

}  // namespace detail

/// @brief LSQ forward: identical to fake_quantize (kept as a name so training code reads as LSQ).
template <Real T, std::size_t R>
void lsq_forward(std::type_identity_t<TensorView<const T, R>> x, AffineParams params, QRange grid, TensorView<T, R> y) {
  fake_quantize<T, R>(x, params, grid, y);
}

/// @brief LSQ backward per tensor: writes dx and returns ∂L/∂s (already multiplied by `grad_factor`).
/// `dx` may alias `dy`. @throws as fake_quantize_backward, and value_error for a non-finite grad_factor.
template <Real T, std::size_t R>
[[nodiscard]] double lsq_backward(std::type_identity_t<TensorView<const T, R>> x,
                                  std::type_identity_t<TensorView<const T, R>> dy, AffineParams params, QRange grid,
                                  double grad_factor, TensorView<T, R> dx) {
  detail::check_grid(grid, "lsq_backward");
  check_affine_params(params, grid, "lsq_backward");
  detail::check_same_shape(x.shape(), dy.shape(), "lsq_backward", "dy");
  detail::check_same_shape(x.shape(), dx.shape(), "lsq_backward", "dx");
  if (!std::isfinite(grad_factor)) {
    throw value_error(minnow::detail::concat("lsq_backward: grad_factor must be finite, got ", grad_factor));
  }
  const auto c = detail::constants<T>(params, grid);
  std::vector<double> partial(static_cast<std::size_t>(detail::stream_threads(x.size())), 0.0);
  detail::for_ranges(x.size(), [&](index_t b, index_t e, int t) {
    partial[static_cast<std::size_t>(t)] = detail::lsq_backward_run(x.data() + b, dy.data() + b, dx.data() + b, e - b, c);
  });
  double sum = 0.0;
  for (const double p : partial) sum += p;
  return sum * grad_factor;
}

/// @brief LSQ backward per channel: writes dx and `dscale[c]` = ∂L/∂s_c (times `grad_factor`).
/// @throws shape_error when the layout, params or dscale do not fit x; value_error as the forward.
template <Real T, std::size_t R>
void lsq_backward(std::type_identity_t<TensorView<const T, R>> x, std::type_identity_t<TensorView<const T, R>> dy,
                  const ChannelLayout& layout, std::span<const AffineParams> params, QRange grid, double grad_factor,
                  TensorView<T, R> dx, std::span<double> dscale) {
  detail::check_grid(grid, "lsq_backward");
  detail::check_layout(layout, x.size(), params.size(), "lsq_backward");
  detail::check_channel_params(params, grid, "lsq_backward");
  detail::check_same_shape(x.shape(), dy.shape(), "lsq_backward", "dy");
  detail::check_same_shape(x.shape(), dx.shape(), "lsq_backward", "dx");
  if (dscale.size() != params.size()) {
    throw shape_error(minnow::detail::concat("lsq_backward: dscale has ", dscale.size(), " entries for ", params.size(),
                                             " channels"));
  }
  if (!std::isfinite(grad_factor)) {
    throw value_error(minnow::detail::concat("lsq_backward: grad_factor must be finite, got ", grad_factor));
  }
  const std::size_t channels = params.size();
  const auto threads = static_cast<std::size_t>(detail::stream_threads(x.size()));
  std::vector<double> partial(threads * channels, 0.0);
  detail::for_channel_runs(layout, [&](index_t b, index_t e, index_t ch, int t) {
    const auto c = detail::constants<T>(params[static_cast<std::size_t>(ch)], grid);
    partial[static_cast<std::size_t>(t) * channels + static_cast<std::size_t>(ch)] +=
        detail::lsq_backward_run(x.data() + b, dy.data() + b, dx.data() + b, e - b, c);
  });
  for (std::size_t ch = 0; ch < channels; ++ch) {
    double sum = 0.0;
    for (std::size_t t = 0; t < threads; ++t) sum += partial[t * channels + ch];
    dscale[ch] = sum * grad_factor;
  }
}

}  // namespace minnow::quant
