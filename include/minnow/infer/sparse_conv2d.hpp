#pragma once
/// @file infer/sparse_conv2d.hpp
/// @brief Forward 2-D convolution with unstructured-sparse weights (NCHW float, PyTorch's nn.Conv2d with
/// groups = dilation = 1), and the rule for when it beats minnow's dense convolution.
///
/// W [out, in, kh, kw] is stored as the sparse matrix [out, in·kh·kw] (CsrMatrix by default, any
/// SparseFormat works) and every output channel r is `y[r, :] = b[r] + Σ_k W[r, k]·src[offset(k) + :]`: one
/// broadcast and one FMA per vector of output pixels per kept weight, over contiguous runs of pixels
/// (detail::row_times_runs in infer/sparse_kernels.hpp: AVX-512 blocks of 256 pixels in 16 accumulators,
/// AVX2 96 in 12, chosen at run time for the CPU; every path gives the same bits).
/// Stride 1 needs no im2col: src is the zero-padded input and output rows are computed with the padded
/// width as pitch (the pitch − Wo extra pixels per row are discarded: 2 of 16 for 14×14 with padding 1), so
/// a kept weight (c, i, j) reads one contiguous run starting at (c·Hp + i)·Wp + j. Other strides build the
/// im2col matrix (as nn::Conv2d does) and read its rows; at stride 1 skipping im2col matters, because
/// building it would take a large share of the time at high sparsity.
///
/// Batch 1: one padding / im2col, output channels split across threads. Batch ≥ 2: samples split across
/// threads, each with its own buffer.
///
/// Crossover: the sparse time is about linear in the kept fraction and reaches the dense time well below
/// 50 % sparsity at batch 1 and at batch 64; ConvCrossover rounds towards dense and picks sparse from 50 %,
/// where it is already clearly faster (`bench_infer_sparse`, conv2/…; figures in docs/benchmarks.md and
/// docs/experiments.md).

#include <minnow/detail/parallel.hpp>
#include <minnow/error.hpp>
#include <minnow/infer/sparse.hpp>
#include <minnow/simd/arch.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <cstdint>
#include <cstddef>
#include <utility>
#include <vector>

namespace minnow::infer {

/// @brief `y[n, o] = b[o] + Σ_c W[o, c] ⋆ x[n, c]` with W kept where the mask is 1, stride and zero padding.
template <SparseFormat M = CsrMatrix>
class SparseConv2d {
 public:
  /// Weights [out, in, kh, kw], a 0/1 mask of the same shape, bias [out] (empty: none).
  /// @throws shape_error naming both shapes when the mask or bias does not fit the weights; value_error for a
  /// mask entry that is not 0 or 1, a stride below 1 or a negative padding.
  SparseConv2d(TensorView<const float, 4> weight, TensorView<const float, 4> mask, TensorView<const float, 1> bias,
               index_t stride = 1, index_t padding = 0)
      : out_(weight.dim(0)), in_(weight.dim(1)), kh_(weight.dim(2)), kw_(weight.dim(3)), stride_(stride), padding_(padding),
        w_(build(weight, mask)) {
    if (stride_ < 1 || padding_ < 0) {
      throw value_error(minnow::detail::concat("infer::SparseConv2d: stride ", stride_, " and padding ", padding_,
                                               " (stride must be >= 1, padding >= 0)"));
    }
    if (!bias.empty() && bias.size() != out_) {
      throw shape_error(minnow::detail::concat("infer::SparseConv2d: bias of ", bias.size(), " entries for weights ",
                                               to_string(weight.shape()), " (", out_, " output channels)"));
    }
    bias_.assign(bias.data(), bias.data() + bias.size());
  }

  [[nodiscard]] index_t in_channels() const noexcept { return in_; }
  [[nodiscard]] index_t out_channels() const noexcept { return out_; }
  [[nodiscard]] const M& weights() const noexcept { return w_; }
  /// Bytes of the weights' buffers and the bias.
  [[nodiscard]] std::size_t bytes() const noexcept { return w_.bytes() + bias_.size() * sizeof(float); }

  /// [N, out, Ho, Wo] with Ho = (H + 2·padding − kh) / stride + 1 (likewise Wo).
  /// @throws shape_error naming the input shape when it does not fit the weights.
  [[nodiscard]] Shape<4> output_shape(const Shape<4>& input) const {
    if (input[1] != in_ || input[2] + 2 * padding_ < kh_ || input[3] + 2 * padding_ < kw_) {
      throw shape_error(minnow::detail::concat("infer::SparseConv2d(", in_, " → ", out_, ", kernel ", kh_, "×", kw_,
                                               ", padding ", padding_, "): input ", to_string(input),
                                               " does not fit (expected [N, ", in_, ", H, W] with H + 2·padding >= ", kh_,
                                               " and W + 2·padding >= ", kw_, ")"));
    }
    return {input[0], out_, (input[2] + 2 * padding_ - kh_) / stride_ + 1, (input[3] + 2 * padding_ - kw_) / stride_ + 1};
  }

  /// y = conv(x) with the kernels of `Arch` (by default the CPU's widest).
  /// @throws shape_error naming the shapes when x or y does not fit; value_error when `Arch` is given and
  /// this CPU does not run it.
  template <class Arch = arch::automatic>
  void forward(TensorView<const float, 4> x, TensorView<float, 4> y) {
    const Shape<4> expected = output_shape(x.shape());
    if (y.shape() != expected) {
      throw shape_error(minnow::detail::concat("infer::SparseConv2d: output ", to_string(y.shape()), " for input ",
                                               to_string(x.shape()), " (expected ", to_string(expected), ")"));
    }
    if (x.dim(0) == 0) return;
    simd::with_arch<Arch>("infer::SparseConv2d", [&](auto tag) { run(tag, x, y); });
  }

 private:
  struct Geometry {
    index_t height = 0, width = 0, out_h = 0, out_w = 0;
  };

  template <class Arch>
  void run(Arch tag, TensorView<const float, 4> x, TensorView<float, 4> y) {
    const index_t n = x.dim(0);
    const Shape<4> expected = y.shape();
    geometry_ = {x.dim(2), x.dim(3), expected[2], expected[3]};
    const Layout layout = plan();
    const int threads = detail::threads_for(out_ * in_ * kh_ * kw_ / 4 * expected[2] * expected[3] * n);
    const std::size_t buffers = n == 1 ? 1 : static_cast<std::size_t>(threads);
    if (source_.size() < buffers) source_.resize(buffers);
    for (std::size_t t = 0; t < buffers; ++t) source_[t].resize(static_cast<std::size_t>(layout.source_size));
    const index_t sample_in = in_ * x.dim(2) * x.dim(3), sample_out = out_ * expected[2] * expected[3];
    if (n == 1) {
      prepare(x.data(), source_[0].data(), layout);
      detail::for_row_ranges(out_, threads, [&](index_t begin, index_t end) {
        channels(tag, source_[0].data(), layout, begin, end, y.data());
      });
    } else {
      minnow::detail::parallel_ranges(n, threads, 1, [&](index_t begin, index_t end, int t) {
        float* source = source_[static_cast<std::size_t>(t)].data();
        for (index_t s = begin; s < end; ++s) {
          prepare(x.data() + s * sample_in, source, layout);
          channels(tag, source, layout, 0, out_, y.data() + s * sample_out);
        }
      });
    }
  }

  M build(TensorView<const float, 4> weight, TensorView<const float, 4> mask) const {
    if (weight.shape() != mask.shape()) {
      throw shape_error(minnow::detail::concat("infer::SparseConv2d: mask ", to_string(mask.shape()), " does not match weights ",
                                               to_string(weight.shape())));
    }
    const index_t k = in_ * kh_ * kw_;
    return M(TensorView<const float, 2>(weight.data(), Shape<2>{out_, k}), TensorView<const float, 2>(mask.data(), Shape<2>{out_, k}));
  }

  /// Where the inputs of kept weight k = (c·kh + i)·kw + j sit for the output pixels: source[offset[k] + q]
  /// is the input that weight multiplies for the q-th "virtual" pixel, q = oh·pitch + ow with ow < pitch.
  /// Stride 1 (direct): the source is the zero-padded input [in, H + 2p, W + 2p], pitch = W + 2p, and
  /// offset[k] = (c·(H + 2p) + i)·(W + 2p) + j: no im2col at all, at the price of computing pitch − Wo
  /// discarded pixels per output row (2 of 16 for a 14×14 map with padding 1). Other strides: the source is
  /// the im2col matrix, pitch = Wo and offset[k] = k·ld.
  struct Layout {
    bool direct = false;
    index_t pitch = 0, virtual_plane = 0, ld = 0, source_size = 0;
  };

  Layout plan() {
    const auto [height, width, out_h, out_w] = geometry_;
    Layout l;
    l.direct = stride_ == 1;
    const index_t k = in_ * kh_ * kw_;
    offsets_.resize(static_cast<std::size_t>(k));
    if (l.direct) {
      const index_t hp = height + 2 * padding_, wp = width + 2 * padding_;
      l.pitch = wp;
      l.virtual_plane = out_h * wp;
      for (index_t c = 0, at = 0; c < in_; ++c) {
        for (index_t i = 0; i < kh_; ++i) {
          for (index_t j = 0; j < kw_; ++j) offsets_[static_cast<std::size_t>(at++)] = static_cast<std::int32_t>((c * hp + i) * wp + j);
        }
      }
      // The last vector of the last offset's run reads up to kw − 1 + 15 floats past the padded input.
      l.source_size = in_ * hp * wp + kw_ + detail::kRunPad;
    } else {
      l.pitch = out_w;
      l.virtual_plane = out_h * out_w;
      l.ld = (l.virtual_plane + detail::kRunPad - 1) / detail::kRunPad * detail::kRunPad;
      for (index_t i = 0; i < k; ++i) offsets_[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i * l.ld);
      l.source_size = k * l.ld;
    }
    return l;
  }

  void prepare(const float* x, float* source, const Layout& l) const {
    if (l.direct) {
      pad(x, source, l);
    } else {
      im2col(x, source, l.ld);
    }
  }

  // source[c, ih + p, iw + p] = x[c, ih, iw], zero in the border and the slack after it.
  void pad(const float* x, float* source, const Layout& l) const {
    const auto [height, width, out_h, out_w] = geometry_;
    const index_t hp = height + 2 * padding_, wp = width + 2 * padding_;
    std::fill(source, source + l.source_size, 0.0f);
    for (index_t c = 0; c < in_; ++c) {
      for (index_t ih = 0; ih < height; ++ih) {
        std::copy_n(x + (c * height + ih) * width, width, source + (c * hp + ih + padding_) * wp + padding_);
      }
    }
  }

  // Output channels [begin, end) of one sample: y[r, p] = b[r] + Σ_k W[r, k]·source[offset[k] + q(p)], the
  // row's kept weights gathered once, then every virtual pixel of the plane in register blocks.
  template <class Arch>
  void channels(Arch tag, const float* source, const Layout& l, index_t begin, index_t end, float* y) const {
    const auto [height, width, out_h, out_w] = geometry_;
    const index_t plane = out_h * out_w;
    thread_local detail::RowRuns runs;
    thread_local std::vector<float> buffer;
    buffer.resize(static_cast<std::size_t>((l.virtual_plane + detail::kRunPad - 1) / detail::kRunPad * detail::kRunPad));
    float* acc = buffer.data();
    const std::int32_t* offsets = offsets_.data();
    for (index_t r = begin; r < end; ++r) {
      detail::row_runs(tag, w_, r, [offsets](index_t k) { return static_cast<index_t>(offsets[k]); }, runs);
      detail::row_times_runs(tag, runs.values.data(), runs.offsets.data(), runs.count, source, l.virtual_plane, acc);
      const float b = bias_.empty() ? 0.0f : bias_[static_cast<std::size_t>(r)];
      float* dst = y + r * plane;
      for (index_t oh = 0; oh < out_h; ++oh) {
        const float* src = acc + oh * l.pitch;
        for (index_t ow = 0; ow < out_w; ++ow) dst[oh * out_w + ow] = src[ow] + b;
      }
    }
  }

  // col[(c·kh + i)·kw + j, oh·Wo + ow] = x[c, oh·s − p + i, ow·s − p + j], zero outside the image and in the
  // padding columns [Ho·Wo, ld) (the last vector of a pixel run reads them).
  void im2col(const float* x, float* col, index_t ld) const {
    const auto [height, width, out_h, out_w] = geometry_;
    for (index_t c = 0; c < in_; ++c) {
      const float* channel = x + c * height * width;
      for (index_t i = 0; i < kh_; ++i) {
        for (index_t j = 0; j < kw_; ++j, col += ld) {
          // Output columns [lo, hi) read inside the image: ow·s − p + j in [0, width).
          const index_t offset = j - padding_;
          const index_t lo = std::min(out_w, offset >= 0 ? index_t{0} : (-offset + stride_ - 1) / stride_);
          const index_t hi = std::clamp<index_t>(width - offset > 0 ? (width - offset + stride_ - 1) / stride_ : 0, lo, out_w);
          float* dst = col;
          for (index_t oh = 0; oh < out_h; ++oh, dst += out_w) {
            const index_t ih = oh * stride_ - padding_ + i;
            if (ih < 0 || ih >= height) {
              std::fill_n(dst, out_w, 0.0f);
              continue;
            }
            const float* row = channel + ih * width;
            std::fill(dst, dst + lo, 0.0f);
            if (stride_ == 1) {
              std::copy(row + lo + offset, row + hi + offset, dst + lo);
            } else {
              for (index_t ow = lo; ow < hi; ++ow) dst[ow] = row[ow * stride_ + offset];
            }
            std::fill(dst + hi, dst + out_w, 0.0f);
          }
          std::fill(col + out_h * out_w, col + ld, 0.0f);
        }
      }
    }
  }

  index_t out_, in_, kh_, kw_, stride_, padding_;
  M w_;
  std::vector<float> bias_;
  Geometry geometry_;
  std::vector<std::int32_t> offsets_;          // per column of the sparse matrix, see Layout
  std::vector<std::vector<float>> source_;     // one source buffer per thread, reused
};

/// @brief How to run a convolution's weights.
enum class ConvFormat { dense, sparse };

/// @brief Sparsity (fraction of pruned weights) above which SparseConv2d beats nn::Conv2d, from
/// `bench_infer_sparse` (see the file comment), rounded towards dense.
struct ConvCrossover {
  double batch1 = 0.5;   ///< batch 1: sparse already faster than dense at 50 %
  double batched = 0.5;  ///< batch ≥ 2: sparse already faster than dense at 50 %
};

/// The implementation a convolution with this sparsity should use at this batch size (see ConvCrossover).
[[nodiscard]] inline ConvFormat choose_conv_format(double sparsity, index_t batch, ConvCrossover rule = {}) noexcept {
  return sparsity >= (batch < 2 ? rule.batch1 : rule.batched) ? ConvFormat::sparse : ConvFormat::dense;
}

}  // namespace minnow::infer
