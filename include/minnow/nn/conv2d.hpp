#pragma once
/// @file nn/conv2d.hpp
/// @brief 2-D convolution over NCHW batches, parallel over the samples: float stride-1 products run the
/// direct kernel of simd/direct_conv.hpp, everything else im2col + GEMM.

#include <minnow/detail/parallel.hpp>
#include <minnow/nn/init.hpp>
#include <minnow/nn/layer.hpp>
#include <minnow/simd/direct_conv.hpp>
#include <minnow/simd/gemm.hpp>

#include <algorithm>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace minnow::nn {

/// How Conv2d<float> computes a stride-1 layer. `automatic` takes the direct kernel for the forward pass
/// and, where bench_cnn's `conv_train/` benchmarks found it faster, for the input gradient; `direct` takes
/// it for both. Other scalar types and strides always use im2col + GEMM.
enum class ConvAlgorithm { automatic, direct, im2col_gemm };

/// @brief `y[n, o] = bias[o] + Σ_c weight[o, c] ⋆ x[n, c]` with a square kernel, stride and zero padding
/// (PyTorch's nn.Conv2d with groups = dilation = 1). Weight [out, in, k, k], bias [out].
template <class T>
class Conv2d final : public Layer<T> {
 public:
  /// @throws value_error when a size is not positive or the padding is negative.
  Conv2d(index_t in_channels, index_t out_channels, index_t kernel, index_t stride = 1, index_t padding = 0)
      : in_(in_channels), out_(out_channels), kernel_(kernel), stride_(stride), padding_(padding) {
    if (in_ <= 0 || out_ <= 0 || kernel_ <= 0 || stride_ <= 0 || padding_ < 0) {
      throw value_error(minnow::detail::concat("Conv2d: invalid configuration ", describe(),
                                               " (channels, kernel and stride must be > 0, padding >= 0)"));
    }
    weight_.resize({out_, in_, kernel_, kernel_});
    bias_.resize({out_});
    weight_grad_.resize(weight_.shape());
    bias_grad_.resize(bias_.shape());
  }

  /// PyTorch's default initialisation, from `rng`.
  void reset_parameters(std::mt19937_64& rng) {
    pytorch_default_init(flat(weight_), flat(bias_), in_ * kernel_ * kernel_, rng);
  }

  [[nodiscard]] std::string describe() const override {
    return minnow::detail::concat("Conv2d(", in_, ", ", out_, ", kernel=", kernel_, ", stride=", stride_,
                                  ", padding=", padding_, ")");
  }

  [[nodiscard]] Shape<4> output_shape(const Shape<4>& input) const override {
    if (input[1] != in_ || input[2] + 2 * padding_ < kernel_ || input[3] + 2 * padding_ < kernel_) {
      throw shape_error(minnow::detail::concat(describe(), ": input ", to_string(input), " does not fit (expected [N, ",
                                               in_, ", H, W] with H, W + 2·padding >= ", kernel_, ")"));
    }
    return {input[0], out_, (input[2] + 2 * padding_ - kernel_) / stride_ + 1,
            (input[3] + 2 * padding_ - kernel_) / stride_ + 1};
  }

  Activations<T> forward(Activations<T> x, Mode /*mode*/) override {
    y_.resize(output_shape(x.shape()));
    x_ = x;
    if constexpr (std::is_same_v<T, float>) {
      if (uses_direct_forward()) {
        forward_direct(x);
        return y_.view();
      }
    }
    const Plan plan = prepare_workspace(x.dim(0));
    minnow::detail::parallel_for(plan.chunks, plan.threads, [&](index_t chunk, int thread) {
      const auto t = static_cast<std::size_t>(thread);
      const auto [first, count] = plan.samples_of(chunk);
      T* col = columns_[t].data();
      T* out = gemm_out_[t].data();
      for (index_t s = 0; s < count; ++s) im2col(x[first + s], col + s * plan.plane, plan.ld);
      // out[O × cols] = W[O × C·k·k] · col[C·k·k × cols]
      simd::gemm_parallel<T>(out_, count * plan.plane, plan.rows, simd::row_major<T>(weight_.data(), plan.rows),
                             simd::row_major<T>(col, plan.ld), out, plan.ld, false);
      scatter_with_bias(out, plan.ld, first, count, plan.plane);
    });
    return y_.view();
  }

  Activations<T> backward(Activations<T> dy) override {
    check_backward_shape("Conv2d", y_.shape(), dy.shape());
    const Plan plan = prepare_workspace(dy.dim(0));
    const bool want_dx = this->needs_input_grad_;
    bool direct_dx = false;
    if constexpr (std::is_same_v<T, float>) direct_dx = uses_direct_input_grad();
    if (want_dx) dx_.resize(x_.shape());
    for (std::size_t t = 0; t < static_cast<std::size_t>(plan.threads); ++t) {
      weight_partials_[t].fill(T(0));
      bias_partials_[t].fill(T(0));
    }
    minnow::detail::parallel_for(plan.chunks, plan.threads, [&](index_t chunk, int thread) {
      const auto t = static_cast<std::size_t>(thread);
      auto db = bias_partials_[t].array();
      const auto [first, count] = plan.samples_of(chunk);
      const index_t cols = count * plan.plane;
      T* g = gemm_out_[t].data();
      T* col = columns_[t].data();
      gather(dy, g, plan.ld, first, count, plan.plane);
      for (index_t s = 0; s < count; ++s) im2col(x_[first + s], col + s * plan.plane, plan.ld);
      // dW[O × C·k·k] += g[O × cols] · colᵀ
      simd::gemm_parallel<T>(out_, plan.rows, cols, simd::row_major<T>(g, plan.ld),
                             simd::row_major<T>(col, plan.ld).transposed(), weight_partials_[t].data(), plan.rows, true);
      for (index_t o = 0; o < out_; ++o) db(o) += ArrayMap<const T>(g + o * plan.ld, cols).sum();
      if (want_dx && !direct_dx) {
        // dcol[C·k·k × cols] = Wᵀ · g; the column buffer now holds dL/dcol
        simd::gemm_parallel<T>(plan.rows, cols, out_, simd::row_major<T>(weight_.data(), plan.rows).transposed(),
                               simd::row_major<T>(g, plan.ld), col, plan.ld, false);
        for (index_t s = 0; s < count; ++s) col2im(col + s * plan.plane, plan.ld, dx_.view()[first + s]);
      }
    });
    if constexpr (std::is_same_v<T, float>) {
      if (want_dx && direct_dx) input_grad_direct(dy);
    }
    // Reduce the per-thread partial sums in thread order: deterministic for a given thread count.
    auto dw = flat(weight_grad_).array();
    auto db = flat(bias_grad_).array();
    dw = weight_partials_[0].view().array();
    db = bias_partials_[0].view().array();
    for (int t = 1; t < plan.threads; ++t) {
      dw += weight_partials_[static_cast<std::size_t>(t)].view().array();
      db += bias_partials_[static_cast<std::size_t>(t)].view().array();
    }
    return want_dx ? Activations<T>(dx_.view()) : Activations<T>();
  }

  void collect_parameters(const std::string& prefix, std::vector<Parameter<T>>& out) override {
    out.push_back({prefix + "weight", {out_, in_, kernel_, kernel_}, flat(weight_), flat(weight_grad_)});
    out.push_back({prefix + "bias", {out_}, flat(bias_), flat(bias_grad_)});
  }

  /// @throws value_error for `direct` with a stride other than 1.
  void set_algorithm(ConvAlgorithm algorithm) {
    if (algorithm == ConvAlgorithm::direct && stride_ != 1) {
      throw value_error(minnow::detail::concat(describe(), ": the direct algorithm needs stride 1"));
    }
    algorithm_ = algorithm;
  }
  [[nodiscard]] ConvAlgorithm algorithm() const noexcept { return algorithm_; }

  [[nodiscard]] TensorView<T, 4> weight() noexcept { return weight_.view(); }
  [[nodiscard]] TensorView<T, 1> bias() noexcept { return bias_.view(); }
  [[nodiscard]] TensorView<const T, 4> weight() const noexcept { return weight_.view(); }
  [[nodiscard]] TensorView<const T, 1> bias() const noexcept { return bias_.view(); }
  /// The gradients the last backward wrote (or a fused step that ran this layer, nn/conv_relu_pool.hpp).
  [[nodiscard]] TensorView<T, 4> weight_grad() noexcept { return weight_grad_.view(); }
  [[nodiscard]] TensorView<T, 1> bias_grad() noexcept { return bias_grad_.view(); }
  [[nodiscard]] index_t in_channels() const noexcept { return in_; }
  [[nodiscard]] index_t out_channels() const noexcept { return out_; }
  [[nodiscard]] index_t kernel() const noexcept { return kernel_; }
  [[nodiscard]] index_t stride() const noexcept { return stride_; }
  [[nodiscard]] index_t padding() const noexcept { return padding_; }

 private:
  template <std::size_t R>
  static TensorView<T, 1> flat(Tensor<T, R>& t) {
    return t.view().template reshape<1>(t.size());
  }

  /// How a batch is cut into chunks of samples whose columns go through one GEMM: big enough that the
  /// GEMM runs near peak (a 3×3 kernel on a 14×14 map is only 196 columns per sample), small enough
  /// that a chunk's columns stay in cache.
  struct Plan {
    index_t rows, plane, per_chunk, chunks, samples, ld;
    int threads;
    [[nodiscard]] std::pair<index_t, index_t> samples_of(index_t chunk) const noexcept {
      const index_t first = chunk * per_chunk;
      return {first, std::min(per_chunk, samples - first)};
    }
  };

  static constexpr index_t kColumnsPerChunk = 2048;

  [[nodiscard]] bool uses_direct_forward() const noexcept {
    return stride_ == 1 && algorithm_ != ConvAlgorithm::im2col_gemm;
  }
  // The input gradient of a stride-1 convolution is itself one (below); padding beyond k − 1 is not.
  // bench_cnn's conv_train/ benchmarks decide the rest: with few input channels most of each 8-channel
  // tile would be padding, and with many output channels (teacher.conv2: 128) a padded gradient sample
  // outgrows L1 and GEMM + col2im is faster.
  [[nodiscard]] bool uses_direct_input_grad() const noexcept {
    if (!uses_direct_forward() || padding_ > kernel_ - 1) return false;
    return algorithm_ == ConvAlgorithm::direct || (in_ >= 8 && out_ <= 64);
  }

  void forward_direct(Activations<T> x) {
    direct_conv({in_, out_, kernel_, padding_, x.dim(2), x.dim(3)}, x, weight_.data(), bias_.data(), y_.view());
  }

  // dx[c] = Σ_o dy[o] ⋆ W[o, c] rotated by 180°, over dy padded by k − 1 − p: a stride-1 convolution with
  // in and out swapped and no bias.
  void input_grad_direct(Activations<T> dy) {
    const index_t taps = kernel_ * kernel_;
    flipped_weight_.resize({in_, out_, kernel_, kernel_});
    zero_bias_.resize({in_});
    zero_bias_.fill(T(0));
    const T* w = weight_.data();
    T* flipped = flipped_weight_.data();
    for (index_t o = 0; o < out_; ++o) {
      for (index_t c = 0; c < in_; ++c) {
        for (index_t t = 0; t < taps; ++t) flipped[(c * out_ + o) * taps + taps - 1 - t] = w[(o * in_ + c) * taps + t];
      }
    }
    direct_conv({out_, in_, kernel_, kernel_ - 1 - padding_, dy.dim(2), dy.dim(3)}, dy, flipped, zero_bias_.data(), dx_.view());
  }

  void direct_conv(const simd::DirectConvGeometry& g, Activations<T> x, const T* weight, const T* bias, TensorView<T, 4> y) {
    direct_.run(g, x.data(), x.dim(0), weight, bias, [&](index_t sample, int) { return y[sample].data(); }, [](index_t, index_t, int) {});
  }

  // One column buffer, GEMM output and set of gradient partial sums per thread; resized, never
  // reallocated once the largest batch has been seen.
  Plan prepare_workspace(index_t n_samples) {
    Plan plan{};
    plan.rows = in_ * kernel_ * kernel_;
    plan.plane = y_.dim(2) * y_.dim(3);
    plan.samples = n_samples;
    plan.per_chunk = std::clamp<index_t>(kColumnsPerChunk / std::max<index_t>(plan.plane, 1), 1, std::max<index_t>(n_samples, 1));
    plan.chunks = (n_samples + plan.per_chunk - 1) / plan.per_chunk;
    plan.threads = static_cast<int>(std::max<index_t>(1, std::min<index_t>(minnow::detail::max_threads(), plan.chunks)));
    // Balance the threads: a whole number of chunks each, the samples spread evenly over the chunks.
    plan.chunks = (plan.chunks + plan.threads - 1) / plan.threads * plan.threads;
    plan.per_chunk = std::max<index_t>(1, (n_samples + plan.chunks - 1) / plan.chunks);
    plan.chunks = n_samples == 0 ? 0 : (n_samples + plan.per_chunk - 1) / plan.per_chunk;
    plan.ld = plan.per_chunk * plan.plane;
    const auto threads = static_cast<std::size_t>(plan.threads);
    if (columns_.size() < threads) {
      columns_.resize(threads);
      gemm_out_.resize(threads);
      weight_partials_.resize(threads);
      bias_partials_.resize(threads);
    }
    for (std::size_t t = 0; t < threads; ++t) {
      columns_[t].resize({plan.rows, plan.ld});
      gemm_out_[t].resize({out_, plan.ld});
      weight_partials_[t].resize({out_, plan.rows});
      bias_partials_[t].resize({out_});
    }
    return plan;
  }

  // Copies a chunk's GEMM output [out, count·plane] (rows ld apart) into the NCHW output, adding the bias.
  void scatter_with_bias(const T* out, index_t ld, index_t first, index_t count, index_t plane) {
    for (index_t s = 0; s < count; ++s) {
      T* y = y_.data() + (first + s) * out_ * plane;
      for (index_t o = 0; o < out_; ++o) {
        const T b = bias_.data()[o];
        const T* src = out + o * ld + s * plane;
        T* dst = y + o * plane;
        for (index_t p = 0; p < plane; ++p) dst[p] = src[p] + b;
      }
    }
  }
  // The reverse for the gradient: NCHW dy → [out, count·plane] with rows ld apart.
  void gather(Activations<T> dy, T* g, index_t ld, index_t first, index_t count, index_t plane) const {
    for (index_t s = 0; s < count; ++s) {
      const T* src = dy.data() + (first + s) * out_ * plane;
      for (index_t o = 0; o < out_; ++o) std::copy_n(src + o * plane, plane, g + o * ld + s * plane);
    }
  }

  // col[(c·k + i)·k + j, oh·Wo + ow] = x[c, oh·s − p + i, ow·s − p + j], zero outside the image;
  // rows are `ld` apart, so the samples of a chunk sit side by side.
  void im2col(TensorView<const T, 3> x, T* col, index_t ld) const {
    const index_t height = x.dim(1), width = x.dim(2);
    const index_t out_h = y_.dim(2), out_w = y_.dim(3);
    for (index_t c = 0; c < in_; ++c) {
      const T* channel = x.data() + c * height * width;
      for (index_t i = 0; i < kernel_; ++i) {
        for (index_t j = 0; j < kernel_; ++j, col += ld) {
          T* dst = col;
          const auto [lo, hi] = valid_columns(j, width, out_w);
          for (index_t oh = 0; oh < out_h; ++oh, dst += out_w) {
            const index_t ih = oh * stride_ - padding_ + i;
            if (ih < 0 || ih >= height) {
              std::fill_n(dst, out_w, T(0));
              continue;
            }
            const T* row = channel + ih * width;
            std::fill(dst, dst + lo, T(0));
            if (stride_ == 1) {
              std::copy_n(row + lo - padding_ + j, hi - lo, dst + lo);
            } else {
              for (index_t ow = lo; ow < hi; ++ow) dst[ow] = row[ow * stride_ - padding_ + j];
            }
            std::fill(dst + hi, dst + out_w, T(0));
          }
        }
      }
    }
  }

  // The adjoint of im2col: dx[c, ih, iw] = Σ of the columns that read it.
  void col2im(const T* col, index_t ld, TensorView<T, 3> dx) const {
    const index_t height = dx.dim(1), width = dx.dim(2);
    const index_t out_h = y_.dim(2), out_w = y_.dim(3);
    dx.fill(T(0));
    for (index_t c = 0; c < in_; ++c) {
      T* channel = dx.data() + c * height * width;
      for (index_t i = 0; i < kernel_; ++i) {
        for (index_t j = 0; j < kernel_; ++j, col += ld) {
          const T* src = col;
          const auto [lo, hi] = valid_columns(j, width, out_w);
          for (index_t oh = 0; oh < out_h; ++oh, src += out_w) {
            const index_t ih = oh * stride_ - padding_ + i;
            if (ih < 0 || ih >= height) continue;
            T* row = channel + ih * width;
            if (stride_ == 1) {
              // Contiguous on both sides: an Eigen expression, so it vectorizes.
              ArrayMap<T>(row + lo - padding_ + j, hi - lo) += ArrayMap<const T>(src + lo, hi - lo);
            } else {
              for (index_t ow = lo; ow < hi; ++ow) row[ow * stride_ - padding_ + j] += src[ow];
            }
          }
        }
      }
    }
  }

  // Output columns [lo, hi) whose input column ow·s − p + j lies inside [0, width).
  [[nodiscard]] std::pair<index_t, index_t> valid_columns(index_t j, index_t width, index_t out_w) const noexcept {
    const index_t offset = j - padding_;
    const index_t lo = offset >= 0 ? 0 : (-offset + stride_ - 1) / stride_;
    const index_t hi = std::clamp<index_t>(width - offset > 0 ? (width - offset + stride_ - 1) / stride_ : 0, lo, out_w);
    return {std::min(lo, out_w), hi};
  }

  index_t in_, out_, kernel_, stride_, padding_;
  ConvAlgorithm algorithm_ = ConvAlgorithm::automatic;
  Tensor<T, 4> weight_, weight_grad_;
  Tensor<T, 1> bias_, bias_grad_;
  Activations<T> x_;
  Tensor<T, 4> y_, dx_;
  std::vector<Tensor<T, 2>> columns_, gemm_out_, weight_partials_;
  std::vector<Tensor<T, 1>> bias_partials_;
  simd::DirectConvBatch direct_;  // the direct kernel's buffers
  Tensor<T, 4> flipped_weight_;  // the direct input gradient's weights [in, out, k, k], rotated
  Tensor<T, 1> zero_bias_;
};

}  // namespace minnow::nn
