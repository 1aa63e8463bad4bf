#pragma once
/// @file nn/conv_relu_pool.hpp
/// @brief Conv2d<float> → ReLU → MaxPool2d(2, 2) as one step, one sample at a time: the convolution's
/// output stays in cache between the three, and the backward pass works from the nonzero gradients only.
///
/// Run as three layers over a batch, the convolution's output (3.2 MB for the student's conv1 at batch
/// 64) goes through memory four more times: ReLU forward, pool forward, pool backward, ReLU backward. And
/// behind the pool at most one output in four has a gradient, so the dense backward multiplies mostly
/// zeros. Sequential runs every such triple through this step (Sequential::set_fusion turns it off). The
/// layers keep their parameters and names; the step reads the convolution's weights and writes its
/// gradients. With the direct kernel its forward equals the three layers' bit for bit (the same kernel,
/// ReLU and pooling rule, so the same winner among equal maxima). With Winograd (`uses_winograd`) it
/// equals them up to float rounding, which can move a value near 0 across ReLU or change the winner of a
/// nearly tied window; and an infinite input gives NaN in its 2×2 tile (∞ − ∞ in the transforms) where
/// the layers give ±∞ — set the convolution's algorithm to `direct` for such data. The backward equals
/// the layers' up to the order of the float sums, except that a gradient the layers multiply by zero is
/// skipped, so an infinite or NaN input under a zero gradient leaves no NaN here. The three layers' own
/// buffers are not touched: a fused forward pairs with a fused backward.

#include <minnow/detail/parallel.hpp>
#include <minnow/nn/conv2d.hpp>
#include <minnow/nn/maxpool2d.hpp>
#include <minnow/simd/direct_conv.hpp>
#include <minnow/simd/maxpool.hpp>
#include <minnow/simd/sparse_conv_grad.hpp>
#include <minnow/simd/winograd_relu_pool.hpp>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <vector>

namespace minnow::nn {

class ConvReluPool {
 public:
  ConvReluPool(Conv2d<float>& conv, MaxPool2d<float>& pool) noexcept : conv_(&conv), pool_(&pool) {}

  /// Whether the layers' current settings can run fused: a stride-1 convolution whose algorithm allows
  /// the direct kernel, and a 2×2, stride-2 pool.
  [[nodiscard]] bool applicable() const noexcept {
    return conv_->stride() == 1 && conv_->algorithm() != ConvAlgorithm::im2col_gemm && pool_->kernel() == 2 &&
           pool_->stride() == 2;
  }

  /// The pooled activations; the view lives until the next forward. @throws shape_error as the layers do.
  Activations<float> forward(Activations<float> x) {
    const Shape<4> out_shape = pool_->output_shape(conv_->output_shape(x.shape()));
    // Allocate first: if that throws, the state still describes the last forward.
    y_.resize(out_shape);
    argmax_.resize(out_shape);
    geometry_ = {conv_->in_channels(), conv_->out_channels(), conv_->kernel(), conv_->padding(), x.dim(2), x.dim(3)};
    x_ = x;
    if (uses_winograd()) {
      forward_winograd(x);
      return y_.view();
    }
    const simd::DirectConvGeometry& g = geometry_;
    const index_t plane = g.out_height() * g.out_width();
    const int threads = simd::DirectConvBatch::threads_for(g, x.dim(0));
    if (conv_out_.size() < static_cast<std::size_t>(threads)) conv_out_.resize(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) conv_out_[static_cast<std::size_t>(t)].resize({g.out_channels * plane});
    // One choice of kernels for the whole batch, made before the threads start.
    simd::dispatch([&](auto tag) {
      direct_.run<decltype(tag)>(
          g, x.data(), x.dim(0), conv_->weight().data(), conv_->bias().data(),
          [&](index_t, int thread) { return conv_out_[static_cast<std::size_t>(thread)].data(); },
          [&](index_t sample, index_t tile, int thread) {
            const float* conv = conv_out_[static_cast<std::size_t>(thread)].data();
            const auto [first, count] = simd::direct_conv_tile_channels(g, tile);
            for (index_t o = first; o < first + count; ++o) relu_pool_plane(tag, conv + o * plane, sample, o);
          });
    });
    return y_.view();
  }

  /// dL/dx for dL/d(pooled output) of the last forward (an empty view when `want_dx` is false); writes
  /// the convolution's weight and bias gradients. @throws shape_error when `dy` is not the last output's shape.
  Activations<float> backward(Activations<float> dy, bool want_dx) {
    check_backward_shape("Conv2d+ReLU+MaxPool2d", y_.shape(), dy.shape());
    const simd::DirectConvGeometry& g = geometry_;
    const simd::ChannelsLastGeometry in{g.in_channels, g.kernel, g.padding, g.height, g.width};
    const index_t samples = dy.dim(0), channels = g.out_channels, pooled = dy.dim(2) * dy.dim(3);
    const index_t plane = g.out_height() * g.out_width();
    const index_t per_channel = g.kernel * in.segment();  // one output channel's weights, [i][j][c]
    transpose_weights(per_channel);
    field_offsets_.resize(static_cast<std::size_t>(plane));
    for (index_t a = 0; a < plane; ++a) field_offsets_[static_cast<std::size_t>(a)] = in.offset_of(a / g.out_width(), a % g.out_width());
    const int threads = static_cast<int>(std::max<index_t>(1, std::min<index_t>(minnow::detail::max_threads(), samples)));
    if (workspaces_.size() < static_cast<std::size_t>(threads)) workspaces_.resize(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) {
      Workspace& w = workspaces_[static_cast<std::size_t>(t)];
      w.field.resize({in.size()});
      w.weight_grad.resize({channels * per_channel});
      w.weight_grad.fill(0.0f);
      w.bias_grad.resize({channels});
      w.bias_grad.fill(0.0f);
      w.entries.resize(static_cast<std::size_t>(want_dx ? channels * pooled : pooled));
      if (want_dx) {
        w.field_grad.resize({in.size()});
        w.field_sum.resize({per_channel});
        w.hits.resize(static_cast<std::size_t>(channels * pooled));
        w.starts.resize(static_cast<std::size_t>(plane + 1));
      }
    }
    if (want_dx) dx_.resize(x_.shape());
    // One choice of kernels for the whole batch, made before the threads start.
    simd::dispatch([&](auto tag) {
      // The lambda copies what it captures: the entry stores could alias a captured index_t, and the
      // compiler would then reload it on every iteration.
      minnow::detail::parallel_for(samples, threads, [&, tag, channels, pooled, plane, per_channel, want_dx](index_t s, int thread) {
        Workspace& w = workspaces_[static_cast<std::size_t>(thread)];
        simd::SparseGradEntry* entries = w.entries.data();
        simd::to_padded_channels_last(in, x_[s].data(), w.field.data());
        index_t hit_count = 0;
        if (want_dx) std::fill(w.starts.begin(), w.starts.end(), index_t{0});
        // Weight gradient, channel by channel; the input gradient's entries are kept for later.
        for (index_t o = 0; o < channels; ++o) {
          const index_t at = (s * channels + o) * pooled;
          const float* grad = dy.data() + at;
          const float* value = y_.data() + at;
          const std::int32_t* arg = argmax_.data() + at;
          // ReLU's gradient: the pooled value (the ReLU output at the winner) must be > 0. Each entry is
          // written, and kept by advancing the count: no branch to mispredict.
          index_t count = 0;
          float bias_grad = 0.0f;
          const index_t* offsets = field_offsets_.data();
          if (want_dx) {
            Hit* hits = w.hits.data();
            index_t* starts = w.starts.data();
            for (index_t q = 0; q < pooled; ++q) {
              const bool live = value[q] > 0.0f;
              const std::int32_t a = arg[q];
              entries[count] = {offsets[a], grad[q]};
              hits[hit_count] = {a, o, grad[q]};
              count += live;
              hit_count += live;
              starts[a + 1] += live;
              bias_grad += keep_if(live, grad[q]);
            }
          } else {
            for (index_t q = 0; q < pooled; ++q) {
              const bool live = value[q] > 0.0f;
              entries[count] = {offsets[arg[q]], grad[q]};
              count += live;
              bias_grad += keep_if(live, grad[q]);
            }
          }
          w.bias_grad.data()[o] += bias_grad;
          simd::accumulate_weight_grad(tag, in, w.field.data(), entries, count, w.weight_grad.data() + o * per_channel);
        }
        if (!want_dx) return;
        // Input gradient, receptive field by receptive field: group the entries by position (a counting
        // sort, channels in order within a position), sum the weights of each position's channels, add the
        // sum into the field once.
        for (index_t a = 0; a < plane; ++a) w.starts[static_cast<std::size_t>(a) + 1] += w.starts[static_cast<std::size_t>(a)];
        for (index_t h = 0; h < hit_count; ++h) {
          const Hit& hit = w.hits[static_cast<std::size_t>(h)];
          entries[w.starts[static_cast<std::size_t>(hit.position)]++] = {hit.channel * per_channel, hit.grad};
        }
        // Each start has moved to the next position's start.
        float* field_grad = w.field_grad.data();
        std::fill_n(field_grad, in.size(), 0.0f);
        index_t first = 0;
        for (index_t a = 0; a < plane; ++a) {
          const index_t end = w.starts[static_cast<std::size_t>(a)];
          if (end == first) continue;
          std::fill_n(w.field_sum.data(), per_channel, 0.0f);
          simd::accumulate_weighted_rows(tag, weights_cl_.data(), per_channel, entries + first, end - first, w.field_sum.data());
          simd::add_receptive_field(tag, in, w.field_sum.data(), field_offsets_[static_cast<std::size_t>(a)], field_grad);
          first = end;
        }
        simd::from_padded_channels_last(in, field_grad, dx_.view()[s].data());
      });
    });
    // Reduce the per-thread partial sums in thread order (deterministic for a given thread count), then
    // back to the weights' [o][c][i][j] layout.
    float* dw = workspaces_[0].weight_grad.data();
    float* db = workspaces_[0].bias_grad.data();
    for (int t = 1; t < threads; ++t) {
      const Workspace& w = workspaces_[static_cast<std::size_t>(t)];
      for (index_t k = 0; k < channels * per_channel; ++k) dw[k] += w.weight_grad.data()[k];
      for (index_t o = 0; o < channels; ++o) db[o] += w.bias_grad.data()[o];
    }
    const index_t taps = g.kernel * g.kernel;
    float* weight_grad = conv_->weight_grad().data();
    for (index_t o = 0; o < channels; ++o) {
      for (index_t c = 0; c < g.in_channels; ++c) {
        for (index_t tap = 0; tap < taps; ++tap) weight_grad[(o * g.in_channels + c) * taps + tap] = dw[o * per_channel + tap * g.in_channels + c];
      }
    }
    std::copy_n(db, channels, conv_->bias_grad().data());
    return want_dx ? Activations<float>(dx_.view()) : Activations<float>();
  }

  /// Whether the forward runs Winograd's F(2×2, 3×3) (simd/winograd_relu_pool.hpp) rather than the direct
  /// kernel: for a 3×3 kernel, at least 8 input channels and the `automatic` algorithm, whatever the
  /// instruction set (every path of both kernels gives the same bits, so the choice never depends on the
  /// CPU). It multiplies 2.25 times less, but with few input channels (the student's conv1 has one) its
  /// transforms cost about as much as the products.
  [[nodiscard]] bool uses_winograd() const noexcept {
    return conv_->algorithm() == ConvAlgorithm::automatic && conv_->kernel() == 3 && conv_->in_channels() >= 8;
  }

 private:

  // The parallel loop runs over (sample, block of output channels), sample-major, so a thread transforms each of its
  // samples' inputs once.
  void forward_winograd(Activations<float> x) {
    const simd::DirectConvGeometry& d = geometry_;
    const simd::WinogradGeometry g{d.in_channels, d.out_channels, d.padding, d.height, d.width};
    // As the direct kernel: below about half a million multiply-adds (here the transformed domain's 16
    // per tile, channel and output channel; the student's conv2 on one image has 0.4 M) one thread is
    // faster, as a second costs its wake-up and the next layer's reads from the other core's cache.
    const index_t macs = x.dim(0) * g.out_channels * g.tiles() * 16 * g.in_channels;
    const index_t max_threads = macs < (index_t{1} << 19) ? 1 : minnow::detail::max_threads();
    const index_t width = 32;
    const index_t blocks = (g.out_channels + width - 1) / width, items = x.dim(0) * blocks;
    const int threads = static_cast<int>(std::max<index_t>(1, std::min<index_t>(max_threads, items)));
    winograd_.set_weights(g, conv_->weight().data());
    winograd_.reserve(g, threads);
    const index_t sample_size = g.in_channels * g.height * g.width, out_size = g.out_channels * g.tiles();
    const float* bias = conv_->bias().data();
    simd::dispatch([&](auto tag) {
      minnow::detail::parallel_for(items, threads, [&](index_t item, int thread) {
        const index_t sample = item / blocks, first = item % blocks * width;
        winograd_.run(tag, g, x.data() + sample * sample_size, sample, bias, first,
                      std::min<index_t>(width, g.out_channels - first), y_.data() + sample * out_size,
                      argmax_.data() + sample * out_size, thread);
      });
    });
  }

  // `value` when `live`, else +0, without a branch (live is random: a branch would be mispredicted half the time).
  static float keep_if(bool live, float value) noexcept {
    return std::bit_cast<float>(std::bit_cast<std::uint32_t>(value) & (0u - static_cast<std::uint32_t>(live)));
  }

  // ReLU and the 2×2 pool (the kernels of `tag`, which apply ReLU as they load) of one channel of a
  // sample's convolution output, into y_ and argmax_.
  template <class Arch>
  void relu_pool_plane(Arch tag, const float* plane, index_t sample, index_t channel) noexcept {
    simd::maxpool_2x2_plane(tag, plane, geometry_.out_width(), y_.dim(2), y_.dim(3), y_.view()[sample][channel].data(),
                            argmax_.view()[sample][channel].data(), true);
  }

  // The convolution's weights [o][c][i][j] → weights_cl_ [o][i][j][c], the layout of the input's receptive fields.
  void transpose_weights(index_t per_channel) {
    const simd::DirectConvGeometry& g = geometry_;
    const index_t taps = g.kernel * g.kernel;
    weights_cl_.resize({g.out_channels * per_channel});
    const float* w = conv_->weight().data();
    for (index_t o = 0; o < g.out_channels; ++o) {
      for (index_t c = 0; c < g.in_channels; ++c) {
        for (index_t tap = 0; tap < taps; ++tap) weights_cl_.data()[o * per_channel + tap * g.in_channels + c] = w[(o * g.in_channels + c) * taps + tap];
      }
    }
  }


  // One nonzero gradient of the convolution's output: its position in the output plane, channel, value.
  struct Hit {
    std::int32_t position;
    index_t channel;
    float grad;
  };
  // A backward thread's buffers: the sample's padded channels-last input and its gradient, partial weight
  // and bias gradients, the entries of one channel (or, for the input gradient, of every channel grouped by
  // position), the hits, where each position's group starts, one receptive field's weighted sum.
  struct Workspace {
    Tensor<float, 1> field, field_grad, weight_grad, bias_grad, field_sum;
    std::vector<simd::SparseGradEntry> entries;
    std::vector<Hit> hits;
    std::vector<index_t> starts;
  };

  Conv2d<float>* conv_;
  MaxPool2d<float>* pool_;
  simd::DirectConvGeometry geometry_{};
  Activations<float> x_;
  Tensor<float, 4> y_, dx_;
  Tensor<std::int32_t, 4> argmax_;  // the winner's index in its convolution output plane
  simd::DirectConvBatch direct_;
  simd::WinogradReluPool winograd_;
  std::vector<Tensor<float, 1>> conv_out_;  // per thread: one sample's convolution output
  std::vector<index_t> field_offsets_;      // where each convolution output's receptive field starts, channels-last
  Tensor<float, 1> weights_cl_;             // the weights as [o][i][j][c]
  std::vector<Workspace> workspaces_;
};

}  // namespace minnow::nn
