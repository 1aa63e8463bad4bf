#pragma once
/// @file nn/linear.hpp
/// @brief Fully connected layer (PyTorch's nn.Linear): y = x·Wᵀ + b.

#include <minnow/nn/init.hpp>
#include <minnow/nn/layer.hpp>
#include <minnow/simd/gemm.hpp>

#include <random>
#include <string>

namespace minnow::nn {

/// @brief `y[n, o] = b[o] + Σ_i W[o, i]·x[n, i]`, weight [out, in], bias [out].
/// The input [N, C, H, W] is read as [N, C·H·W] (so Flatten costs nothing); the output is [N, out, 1, 1].
template <class T>
class Linear final : public Layer<T> {
 public:
  /// @throws value_error when a size is not positive.
  Linear(index_t in_features, index_t out_features) : in_(in_features), out_(out_features) {
    if (in_ <= 0 || out_ <= 0) {
      throw value_error(minnow::detail::concat("Linear: invalid sizes ", describe(), " (must be > 0)"));
    }
    weight_.resize({out_, in_});
    weight_grad_.resize({out_, in_});
    bias_.resize({out_});
    bias_grad_.resize({out_});
  }

  void reset_parameters(std::mt19937_64& rng) {
    pytorch_default_init(weight_.view().template reshape<1>(weight_.size()), bias_.view(), in_, rng);
  }

  [[nodiscard]] std::string describe() const override {
    return minnow::detail::concat("Linear(", in_, ", ", out_, ")");
  }

  [[nodiscard]] Shape<4> output_shape(const Shape<4>& input) const override {
    if (input[1] * input[2] * input[3] != in_) {
      throw shape_error(minnow::detail::concat(describe(), ": input ", to_string(input), " has ",
                                               input[1] * input[2] * input[3], " features per sample, expected ", in_));
    }
    return {input[0], out_, 1, 1};
  }

  Activations<T> forward(Activations<T> x, Mode /*mode*/) override {
    y_.resize(output_shape(x.shape()));
    x_ = x;
    const index_t n = x.dim(0);
    if (n < kSmallBatch) {
      forward_small_batch(x);
    } else {
      // y[N × out] = x[N × in] · Wᵀ
      simd::gemm_parallel<T>(n, out_, in_, simd::row_major<T>(x.data(), in_), simd::row_major<T>(weight_.data(), in_).transposed(),
                             y_.data(), out_, false);
    }
    y_.view().matrix(n, out_).rowwise() += bias_row();
    return y_.view();
  }

  Activations<T> backward(Activations<T> dy) override {
    check_backward_shape("Linear", y_.shape(), dy.shape());
    const index_t n = dy.dim(0);
    // dW[out × in] = dyᵀ · x, db = Σ_n dy, dx[N × in] = dy · W
    simd::gemm_parallel<T>(out_, in_, n, simd::row_major<T>(dy.data(), out_).transposed(), simd::row_major<T>(x_.data(), in_),
                           weight_grad_.data(), in_, false);
    bias_grad_.view().matrix(1, out_).noalias() = dy.matrix(n, out_).colwise().sum();
    if (!this->needs_input_grad_) return {};
    dx_.resize(x_.shape());
    simd::gemm_parallel<T>(n, in_, out_, simd::row_major<T>(dy.data(), out_), simd::row_major<T>(weight_.data(), in_),
                           dx_.data(), in_, false);
    return dx_.view();
  }

  /// @brief forward on feature rows: `x` `[N, in]` (viewed as `[N, in, 1, 1]`), the output `[N, out]`.
  TensorView<const T, 2> forward(TensorView<const T, 2> x, Mode mode) {
    const Activations<T> y = forward(Activations<T>(x.data(), {x.dim(0), x.dim(1), 1, 1}), mode);
    return {y.data(), {y.dim(0), out_}};
  }
  /// @brief backward on rows: `dy` `[N, out]`; returns dL/dx `[N, in]` (empty when the input gradient is skipped).
  TensorView<const T, 2> backward(TensorView<const T, 2> dy) {
    const Activations<T> dx = backward(Activations<T>(dy.data(), {dy.dim(0), dy.dim(1), 1, 1}));
    if (dx.size() == 0) return {};
    return {dx.data(), {dx.dim(0), in_}};
  }

  void collect_parameters(const std::string& prefix, std::vector<Parameter<T>>& out) override {
    out.push_back({prefix + "weight", {out_, in_}, weight_.view().template reshape<1>(weight_.size()),
                   weight_grad_.view().template reshape<1>(weight_grad_.size())});
    out.push_back({prefix + "bias", {out_}, bias_.view(), bias_grad_.view()});
  }

  [[nodiscard]] TensorView<T, 2> weight() noexcept { return weight_.view(); }
  [[nodiscard]] TensorView<T, 1> bias() noexcept { return bias_.view(); }
  [[nodiscard]] TensorView<const T, 2> weight() const noexcept { return weight_.view(); }
  [[nodiscard]] TensorView<const T, 1> bias() const noexcept { return bias_.view(); }
  /// dL/dW and dL/db of the last backward.
  [[nodiscard]] TensorView<T, 2> weight_grad() noexcept { return weight_grad_.view(); }
  [[nodiscard]] TensorView<T, 1> bias_grad() noexcept { return bias_grad_.view(); }
  [[nodiscard]] index_t in_features() const noexcept { return in_; }
  [[nodiscard]] index_t out_features() const noexcept { return out_; }

 private:
  // Below this batch size the product is a few matrix-vector products: memory-bound on W, so the rows
  // of W are split across threads and each runs Eigen's GEMV.
  static constexpr index_t kSmallBatch = 4;

  void forward_small_batch(Activations<T> x) {
    const index_t n = x.dim(0);
    const int threads = out_ * in_ < (1 << 18) ? 1 : minnow::detail::max_threads();
    const auto w = weight_.matrix();
    const auto xs = x.matrix(n, in_);
    auto y = y_.view().matrix(n, out_);
    minnow::detail::parallel_for(threads, threads, [&](long t, int) {
      const index_t begin = out_ * t / threads, end = out_ * (t + 1) / threads;
      for (index_t i = 0; i < n; ++i) {
        y.row(i).segment(begin, end - begin).noalias() = (w.middleRows(begin, end - begin) * xs.row(i).transpose()).transpose();
      }
    });
  }

  [[nodiscard]] Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>> bias_row() const {
    return Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias_.data(), out_);
  }

  index_t in_, out_;
  Tensor<T, 2> weight_, weight_grad_;
  Tensor<T, 1> bias_, bias_grad_;
  Activations<T> x_;
  Tensor<T, 4> y_, dx_;
};

}  // namespace minnow::nn
