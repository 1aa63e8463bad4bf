#pragma once
/// @file nn/avgpool2d.hpp
/// @brief Average pooling over NCHW batches: windows (PyTorch's nn.AvgPool2d) and whole planes
/// (global average pooling, PyTorch's nn.AdaptiveAvgPool2d(1)).

#include <minnow/detail/parallel.hpp>
#include <minnow/nn/layer.hpp>

#include <algorithm>
#include <string>

namespace minnow::nn {

/// @brief `y[n, c, i, j] = mean of the k×k window at (i·s − p, j·s − p)` over the zero-padded input.
/// As PyTorch's defaults (`count_include_pad=True`, floor mode), padded positions count in the divisor, which
/// is therefore always k², and trailing rows/columns that do not fill a window are dropped (zero gradient).
template <class T>
class AvgPool2d final : public Layer<T> {
 public:
  /// `stride` 0 means "same as kernel", like PyTorch's default.
  /// @throws value_error on kernel <= 0, stride < 0, or padding outside [0, kernel / 2] (PyTorch's limit).
  explicit AvgPool2d(index_t kernel, index_t stride = 0, index_t padding = 0)
      : kernel_(kernel), stride_(stride == 0 ? kernel : stride), padding_(padding) {
    if (kernel_ <= 0 || stride < 0 || padding < 0 || padding > kernel / 2) {
      throw value_error(minnow::detail::concat("AvgPool2d: kernel ", kernel, " and stride ", stride,
                                               " must be positive and padding ", padding, " in [0, kernel / 2]"));
    }
  }

  [[nodiscard]] std::string describe() const override {
    return minnow::detail::concat("AvgPool2d(kernel=", kernel_, ", stride=", stride_, ", padding=", padding_, ")");
  }

  [[nodiscard]] Shape<4> output_shape(const Shape<4>& input) const override {
    const index_t h = input[2] + 2 * padding_, w = input[3] + 2 * padding_;
    if (h < kernel_ || w < kernel_) {
      throw shape_error(minnow::detail::concat(describe(), ": input ", to_string(input), " is smaller than the window"));
    }
    return {input[0], input[1], (h - kernel_) / stride_ + 1, (w - kernel_) / stride_ + 1};
  }

  Activations<T> forward(Activations<T> x, Mode /*mode*/) override {
    y_.resize(output_shape(x.shape()));
    in_shape_ = x.shape();
    const T divisor = static_cast<T>(kernel_ * kernel_);
    for_planes([&](index_t p) {
      const T* src = x.data() + p * in_shape_[2] * in_shape_[3];
      T* out = y_.data() + p * y_.dim(2) * y_.dim(3);
      for (index_t i = 0; i < y_.dim(2); ++i) {
        for (index_t j = 0; j < y_.dim(3); ++j) {
          T sum = T(0);
          for_window(i, j, [&](index_t at) { sum += src[at]; });
          out[i * y_.dim(3) + j] = sum / divisor;  // a division, as PyTorch: bit-equal for any k
        }
      }
    });
    return y_.view();
  }

  Activations<T> backward(Activations<T> dy) override {
    check_backward_shape("AvgPool2d", y_.shape(), dy.shape());
    dx_.resize(in_shape_);
    const T divisor = static_cast<T>(kernel_ * kernel_);
    for_planes([&](index_t p) {
      T* dst = dx_.data() + p * in_shape_[2] * in_shape_[3];
      const T* g = dy.data() + p * dy.dim(2) * dy.dim(3);
      std::fill_n(dst, in_shape_[2] * in_shape_[3], T(0));
      for (index_t i = 0; i < dy.dim(2); ++i) {
        for (index_t j = 0; j < dy.dim(3); ++j) {
          const T share = g[i * dy.dim(3) + j] / divisor;
          for_window(i, j, [&](index_t at) { dst[at] += share; });  // overlapping windows add up
        }
      }
    });
    return dx_.view();
  }

  [[nodiscard]] index_t kernel() const noexcept { return kernel_; }
  [[nodiscard]] index_t stride() const noexcept { return stride_; }
  [[nodiscard]] index_t padding() const noexcept { return padding_; }

 private:
  template <class Body>
  void for_planes(Body&& body) const {
    const index_t planes = in_shape_[0] * in_shape_[1];
    const int threads = planes * in_shape_[2] * in_shape_[3] > 65536 ? minnow::detail::max_threads() : 1;
    minnow::detail::parallel_for(planes, threads, [&](index_t p, int) { body(p); });
  }

  // Visits the in-plane offsets of output (i, j)'s window, row-major, skipping the zero padding.
  template <class Visit>
  void for_window(index_t i, index_t j, Visit&& visit) const {
    for (index_t a = 0; a < kernel_; ++a) {
      const index_t r = i * stride_ - padding_ + a;
      if (r < 0 || r >= in_shape_[2]) continue;
      for (index_t b = 0; b < kernel_; ++b) {
        const index_t col = j * stride_ - padding_ + b;
        if (col >= 0 && col < in_shape_[3]) visit(r * in_shape_[3] + col);
      }
    }
  }

  index_t kernel_, stride_, padding_;
  Shape<4> in_shape_{};
  Tensor<T, 4> y_, dx_;
};

/// @brief [N, C, H, W] → [N, C, 1, 1], the mean of each plane: the head of networks that end in a
/// classifier over channels, whatever the input size.
template <class T>
class GlobalAvgPool2d final : public Layer<T> {
 public:
  [[nodiscard]] std::string describe() const override { return "GlobalAvgPool2d()"; }
  [[nodiscard]] Shape<4> output_shape(const Shape<4>& input) const override {
    if (input[2] <= 0 || input[3] <= 0) {
      throw shape_error(minnow::detail::concat(describe(), ": input ", to_string(input), " has an empty plane"));
    }
    return {input[0], input[1], 1, 1};
  }

  Activations<T> forward(Activations<T> x, Mode /*mode*/) override {
    y_.resize(output_shape(x.shape()));
    in_shape_ = x.shape();
    const index_t plane = in_shape_[2] * in_shape_[3];
    y_.view().matrix(y_.size(), 1) = x.matrix(y_.size(), plane).rowwise().mean();
    return y_.view();
  }

  Activations<T> backward(Activations<T> dy) override {
    check_backward_shape("GlobalAvgPool2d", y_.shape(), dy.shape());
    dx_.resize(in_shape_);
    const index_t plane = in_shape_[2] * in_shape_[3];
    dx_.view().matrix(dy.size(), plane).colwise() = dy.matrix(dy.size(), 1).col(0) / static_cast<T>(plane);
    return dx_.view();
  }

 private:
  Shape<4> in_shape_{};
  Tensor<T, 4> y_, dx_;
};

}  // namespace minnow::nn
