#pragma once
/// @file nn/maxpool2d.hpp
/// @brief Max pooling over NCHW batches (PyTorch's nn.MaxPool2d, floor mode, no padding).

#include <minnow/detail/parallel.hpp>
#include <minnow/nn/layer.hpp>
#include <minnow/simd/maxpool.hpp>

#include <cmath>
#include <cstdint>
#include <string>

namespace minnow::nn {

/// @brief `y[n, c, i, j] = max over the k×k window at (i·s, j·s)`. As in PyTorch, the window is scanned in
/// row-major order and a value takes over when it is larger or NaN: among equal maxima the first is
/// taken, and a NaN in a window wins (the last NaN, for the gradient). Trailing rows/columns that do not fill a
/// window are dropped (floor mode) and get zero gradient.
template <class T>
class MaxPool2d final : public Layer<T> {
 public:
  /// `stride` 0 means "same as kernel", like PyTorch's default. @throws value_error on kernel <= 0 or stride < 0.
  explicit MaxPool2d(index_t kernel, index_t stride = 0) : kernel_(kernel), stride_(stride == 0 ? kernel : stride) {
    if (kernel_ <= 0 || stride < 0) {
      throw value_error(minnow::detail::concat("MaxPool2d: kernel ", kernel, " and stride ", stride,
                                               " must be positive"));
    }
  }

  [[nodiscard]] std::string describe() const override {
    return minnow::detail::concat("MaxPool2d(kernel=", kernel_, ", stride=", stride_, ")");
  }

  [[nodiscard]] Shape<4> output_shape(const Shape<4>& input) const override {
    if (input[2] < kernel_ || input[3] < kernel_) {
      throw shape_error(minnow::detail::concat(describe(), ": input ", to_string(input), " is smaller than the window"));
    }
    return {input[0], input[1], (input[2] - kernel_) / stride_ + 1, (input[3] - kernel_) / stride_ + 1};
  }

  Activations<T> forward(Activations<T> x, Mode /*mode*/) override {
    const Shape<4> out_shape = output_shape(x.shape());
    y_.resize(out_shape);
    argmax_.resize(out_shape);
    in_shape_ = x.shape();
    simd::dispatch([&](auto tag) { pool(tag, x, out_shape); });  // the kernels' path, once per call
    return y_.view();
  }

  Activations<T> backward(Activations<T> dy) override {
    check_backward_shape("MaxPool2d", y_.shape(), dy.shape());
    dx_.resize(in_shape_);
    const index_t planes = dy.dim(0) * dy.dim(1);
    const index_t plane_in = in_shape_[2] * in_shape_[3], plane_out = dy.dim(2) * dy.dim(3);
    const T* g = dy.data();
    const std::int32_t* arg = argmax_.data();
    T* dx = dx_.data();
    const int threads = planes * plane_in > 65536 ? minnow::detail::max_threads() : 1;
    minnow::detail::parallel_for(planes, threads, [&](index_t p, int) {
      T* dst = dx + p * plane_in;
      std::fill_n(dst, plane_in, T(0));
      for (index_t o = p * plane_out; o < (p + 1) * plane_out; ++o) dst[arg[o]] += g[o];  // overlapping windows add up
    });
    return dx_.view();
  }

  [[nodiscard]] index_t kernel() const noexcept { return kernel_; }
  [[nodiscard]] index_t stride() const noexcept { return stride_; }

 private:
  template <class Arch>
  void pool(Arch tag, Activations<T> x, const Shape<4>& out_shape) {
    const index_t planes = out_shape[0] * out_shape[1];
    const index_t plane_in = x.dim(2) * x.dim(3), plane_out = out_shape[2] * out_shape[3];
    const int threads = planes * plane_in > 65536 ? minnow::detail::max_threads() : 1;
    minnow::detail::parallel_for(planes, threads, [&](index_t p, int) {
      const T* src = x.data() + p * plane_in;
      T* out = y_.data() + p * plane_out;
      std::int32_t* arg = argmax_.data() + p * plane_out;
      // The common 2×2, stride-2 window has vector kernels (simd/maxpool.hpp); other 2×2 and 3×3 windows
      // get loops the compiler unrolls.
      if (kernel_ == 2 && stride_ == 2) {
        simd::maxpool_2x2_plane(tag, src, x.dim(3), out_shape[2], out_shape[3], out, arg);
      } else if (kernel_ == 2) {
        pool_plane<2>(src, x.dim(3), out, arg, out_shape[2], out_shape[3]);
      } else if (kernel_ == 3) {
        pool_plane<3>(src, x.dim(3), out, arg, out_shape[2], out_shape[3]);
      } else {
        pool_plane<0>(src, x.dim(3), out, arg, out_shape[2], out_shape[3]);
      }
    });
  }

  // One input plane; K is the window size when known at compile time, 0 for "use kernel_".
  template <index_t K>
  void pool_plane(const T* src, index_t width, T* out, std::int32_t* arg, index_t out_h, index_t out_w) const noexcept {
    const index_t k = K == 0 ? kernel_ : K;
    for (index_t i = 0; i < out_h; ++i) {
      for (index_t j = 0; j < out_w; ++j) {
        index_t best = i * stride_ * width + j * stride_;
        T best_value = src[best];
        for (index_t a = 0; a < k; ++a) {
          for (index_t b = 0; b < k; ++b) {
            const index_t at = (i * stride_ + a) * width + j * stride_ + b;
            const T v = src[at];
            // PyTorch's rule: a larger value or any NaN takes over (so the last NaN wins).
            if (v > best_value || v != v) {
              best_value = v;
              best = at;
            }
          }
        }
        out[i * out_w + j] = best_value;
        arg[i * out_w + j] = static_cast<std::int32_t>(best);
      }
    }
  }

  index_t kernel_, stride_;
  Shape<4> in_shape_{};
  Tensor<T, 4> y_, dx_;
  Tensor<std::int32_t, 4> argmax_;  // index of the maximum inside its input plane
};

}  // namespace minnow::nn
