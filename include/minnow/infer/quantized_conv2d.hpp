#pragma once
/// @file infer/quantized_conv2d.hpp
/// @brief An inference-only Conv2d on integers: uint8 NCHW activations × per-output-channel int8 weights.
///
/// The convolution is the matrix product of infer/qgemm.hpp on the im2col matrix: output pixel
/// (n, oh, ow) is a row, input tap (c, i, j) a column (PyTorch's weight order, so a weight
/// `[O, C, k, k]` is used as `[O × C·k·k]` without reordering):
/// @code
///   A[(n, oh, ow), (c, i, j)] = x[n, c, oh·s − p + i, ow·s − p + j]   inside the image
///                             = za                                     in the padding
///   y[n, o, oh, ow] = output_stage( Σ_(c,i,j) (A − za)·(W[o, (c,i,j)] − zw[o]) , bias[o], ReLU )
/// @endcode
/// Padding with the input zero point makes the padded taps contribute exactly 0, as zero padding does
/// in the float convolution. The output stage (requantize to uint8 with the next layer's parameters,
/// or dequantize to float) is qgemm's, bit for bit.
///
/// ## How the im2col matrix reaches the kernels
/// Output rows are cut into chunks of about 256 KB of im2col bytes; the chunks (of any samples) run in
/// parallel, each through the single-threaded product, so batch 1 is split across threads as well as
/// batch 256. A chunk is built in two passes: (1) the column-major im2col `[C·k·k × rows]`, where each
/// (tap, output row) is a contiguous copy of an input row, as in nn::Conv2d; (2) a 4×8 byte transpose
/// into qgemm's activation panels (8 rows × 4 taps per 32 bytes): SSE2 unpacks on the AVX2 and VNNI
/// paths, a scalar loop on the scalar path. Building the panels directly would scatter every byte to
/// an address 4 apart; two streaming passes are cheaper. The product's `[rows × O]` output (NHWC) is
/// transposed into NCHW.
///
/// ## Direct kernels
/// On the AVX2, AVX-VNNI and AVX-512 VNNI (+ VBMI) paths, layers whose geometry suits them skip im2col: the kernels
/// of infer/direct_conv.hpp compute the same accumulators vectorized across output pixels and write NCHW
/// (direct_kind() says which one a layer runs). On the plain AVX2 path, 3×3 stride-1 layers with symmetric
/// weights run the exact int16 Winograd F(2×2, 3×3) kernel of infer/winograd_conv.hpp instead (2.25 times
/// fewer multiplies, the same accumulators). Samples run in parallel; batch 1 runs on one thread (no
/// OpenMP region). forward_pooled() adds a fused 2×2 max pool on the int32 accumulators (see there).

#include <minnow/detail/parallel.hpp>
#include <minnow/error.hpp>
#include <minnow/infer/direct_conv.hpp>
#include <minnow/infer/winograd_conv.hpp>
#include <minnow/infer/int_tensor.hpp>
#include <minnow/infer/qgemm.hpp>
#include <minnow/infer/quantized_maxpool.hpp>
#include <minnow/quant/concepts.hpp>
#include <minnow/quant/fake_quantize.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>


namespace minnow::infer {

namespace detail {

/// Column-major im2col rows [k4·4 × ld] → activation panels of `a` (rows 0 … a.m − 1 of the chunk).
inline void columns_to_panels(arch::scalar, const std::uint8_t* col, index_t ld, QuantizedActivations& a) noexcept {
  const index_t panels = (a.m + kMR - 1) / kMR, stride = a.k4 * kAStep;
  for (index_t p = 0; p < panels; ++p) {
    std::uint8_t* dst = a.panels.data() + p * stride;
    for (index_t g = 0; g < a.k4; ++g, dst += kAStep) {
      for (index_t i = 0; i < kMR; ++i) {
        for (index_t t = 0; t < 4; ++t) dst[i * 4 + t] = col[(g * 4 + t) * ld + p * kMR + i];
      }
    }
  }
}

#if MINNOW_X86_KERNELS
/// The same with SSE2 unpacks: 4 taps × 16 rows → two panels' 32-byte groups per step.
MINNOW_TARGET_AVX2 inline void columns_to_panels(arch::avx2, const std::uint8_t* col, index_t ld, QuantizedActivations& a) noexcept {
  const index_t panels = (a.m + kMR - 1) / kMR, stride = a.k4 * kAStep;
  const auto load16 = [](const std::uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); };
  const auto load8 = [](const std::uint8_t* p) { return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)); };
  const auto store = [](std::uint8_t* p, __m128i v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v); };
  for (index_t g = 0; g < a.k4; ++g) {
    const std::uint8_t* c0 = col + (g * 4) * ld;
    const std::uint8_t *c1 = c0 + ld, *c2 = c1 + ld, *c3 = c2 + ld;
    std::uint8_t* dst = a.panels.data() + g * kAStep;
    index_t p = 0;
    for (; p + 2 <= panels; p += 2) {
      const index_t r = p * kMR;
      // t0/t1: (tap 0, tap 1) byte pairs of rows 0–7 / 8–15; t2/t3 the same for taps 2, 3.
      const __m128i a0 = load16(c0 + r), a1 = load16(c1 + r), a2 = load16(c2 + r), a3 = load16(c3 + r);
      const __m128i t0 = _mm_unpacklo_epi8(a0, a1), t1 = _mm_unpackhi_epi8(a0, a1);
      const __m128i t2 = _mm_unpacklo_epi8(a2, a3), t3 = _mm_unpackhi_epi8(a2, a3);
      std::uint8_t* d0 = dst + p * stride;
      std::uint8_t* d1 = d0 + stride;
      store(d0, _mm_unpacklo_epi16(t0, t2));  // rows 0–3, taps 0–3 each
      store(d0 + 16, _mm_unpackhi_epi16(t0, t2));
      store(d1, _mm_unpacklo_epi16(t1, t3));
      store(d1 + 16, _mm_unpackhi_epi16(t1, t3));
    }
    if (p < panels) {  // an odd last panel: 8 rows
      const index_t r = p * kMR;
      const __m128i t0 = _mm_unpacklo_epi8(load8(c0 + r), load8(c1 + r));
      const __m128i t2 = _mm_unpacklo_epi8(load8(c2 + r), load8(c3 + r));
      std::uint8_t* d0 = dst + p * stride;
      store(d0, _mm_unpacklo_epi16(t0, t2));
      store(d0 + 16, _mm_unpackhi_epi16(t0, t2));
    }
  }
}
#endif

/// Short copies and fills (an output row is often 7–28 bytes): plain loops, or one masked AVX-512 move.
inline void copy_bytes(arch::scalar, std::uint8_t* dst, const std::uint8_t* src, index_t n) noexcept {
  std::copy_n(src, n, dst);
}
inline void fill_bytes(arch::scalar, std::uint8_t* dst, std::uint8_t v, index_t n) noexcept { std::fill_n(dst, n, v); }

#if MINNOW_X86_KERNELS
MINNOW_TARGET_AVX512 inline void copy_bytes(arch::avx512, std::uint8_t* dst, const std::uint8_t* src, index_t n) noexcept {
  for (; n >= 64; n -= 64, dst += 64, src += 64) _mm512_storeu_si512(dst, _mm512_loadu_si512(src));
  // Masked-off bytes are neither read nor written, so the tail stays inside both buffers.
  const auto mask = static_cast<__mmask64>(n == 0 ? 0 : ~0ULL >> (64 - n));
  _mm512_mask_storeu_epi8(dst, mask, _mm512_maskz_loadu_epi8(mask, src));
}
MINNOW_TARGET_AVX512 inline void fill_bytes(arch::avx512, std::uint8_t* dst, std::uint8_t v, index_t n) noexcept {
  const __m512i value = _mm512_set1_epi8(static_cast<char>(v));
  for (; n >= 64; n -= 64, dst += 64) _mm512_storeu_si512(dst, value);
  _mm512_mask_storeu_epi8(dst, static_cast<__mmask64>(n == 0 ? 0 : ~0ULL >> (64 - n)), value);
}
#endif

/// One output row (or the part of it inside a chunk) of one sample.
struct ConvSegment {
  index_t sample;  ///< offset of the sample in the input
  index_t ih;      ///< oh·stride − padding: the input row of kernel row 0
  index_t ow0, ow1;
  index_t dst;     ///< column of output column 0 of this row in the chunk (may be negative)
};

/// Per-thread work buffers of a quantized convolution.
struct ConvWorkspace {
  std::vector<ConvSegment> segments;
  QuantizedActivations act;
  Tensor<std::uint8_t, 1> col;   ///< column-major im2col, [k4·4 × ld]
  Tensor<std::uint8_t, 1> out8;  ///< the product's [rows × O] output
  Tensor<float, 1> outf;
  Tensor<std::uint8_t, 1> padded;      ///< direct kernels: one sample's padded input
  Tensor<std::int32_t, 1> rowsums;     ///< direct kernels: Σ x per output pixel (weights with zero points)
  Tensor<std::uint8_t, 1> interleaved; ///< direct channels kernel: 4 channel planes interleaved into dwords
  Tensor<std::int32_t, 1> winograd_in; ///< Winograd kernel: the sample as int16 channel pairs
  Tensor<std::int32_t, 1> winograd_u;  ///< Winograd kernel: the transformed input tiles
};

}  // namespace detail

/// @brief Quantized Conv2d forward (PyTorch's nn.Conv2d, groups = dilation = 1, square kernel, zero
/// padding): uint8 NCHW input with per-tensor (scale, zero point), int8 weights per output channel.
class QuantizedConv2d {
 public:
  /// @param weights   int8 weights `[out × in·k·k]` (a `[out, in, k, k]` weight read row-major)
  /// @param in_channels, kernel, stride, padding  the geometry, as nn::Conv2d
  /// @param bias      empty or `out` floats (real units), added in the output stage
  /// @param input     the uint8 parameters of the input
  /// @param relu      fuse a ReLU into the output stage
  /// @throws value_error for a non-positive size, stride or negative padding, a bad input scale/zero
  /// point or a non-finite bias; shape_error when the weights' inner length is not in·k·k or the bias
  /// length is not out (all naming the layer).
  QuantizedConv2d(const Int8Weights& weights, index_t in_channels, index_t kernel, index_t stride, index_t padding,
                  std::span<const float> bias, quant::AffineParams input, bool relu = false)
      : in_(in_channels), kernel_(kernel), stride_(stride), padding_(padding) {
    const std::string layer = minnow::detail::concat("QuantizedConv2d '", weights.name, "'");
    if (in_ <= 0 || kernel_ <= 0 || stride_ <= 0 || padding_ < 0 || weights.rows() <= 0) {
      throw value_error(minnow::detail::concat(layer, ": invalid geometry in_channels=", in_, ", out_channels=",
                                               weights.rows(), ", kernel=", kernel_, ", stride=", stride_, ", padding=",
                                               padding_, " (sizes and stride must be > 0, padding >= 0)"));
    }
    if (weights.cols() != in_ * kernel_ * kernel_) {
      throw shape_error(minnow::detail::concat(layer, ": weights have ", weights.cols(), " taps per output channel, ",
                                               "expected in_channels·k·k = ", in_ * kernel_ * kernel_));
    }
    if (!bias.empty() && static_cast<index_t>(bias.size()) != weights.rows()) {
      throw shape_error(minnow::detail::concat(layer, ": ", bias.size(), " biases for ", weights.rows(), " output channels"));
    }
    for (std::size_t j = 0; j < bias.size(); ++j) {
      if (!std::isfinite(bias[j])) throw value_error(minnow::detail::concat(layer, ": bias ", j, " is ", bias[j]));
    }
    quant::check_affine_params(input, quant::QRange{0, 255}, (layer + " (input)").c_str());
    packed_ = pack_weights(weights);
    direct_ = detail::make_direct_weights(weights, in_, kernel_, stride_);
    winograd_ = detail::make_winograd_weights(weights, in_, kernel_, stride_);
    bias_.assign(bias.begin(), bias.end());
    input_ = input;
    relu_ = relu;
  }

  [[nodiscard]] const std::string& name() const noexcept { return packed_.name; }
  [[nodiscard]] index_t in_channels() const noexcept { return in_; }
  [[nodiscard]] index_t out_channels() const noexcept { return packed_.n; }
  [[nodiscard]] index_t kernel() const noexcept { return kernel_; }
  [[nodiscard]] index_t stride() const noexcept { return stride_; }
  [[nodiscard]] index_t padding() const noexcept { return padding_; }
  [[nodiscard]] bool relu() const noexcept { return relu_; }
  [[nodiscard]] quant::AffineParams input_params() const noexcept { return input_; }
  /// Bytes of the weights as the layer holds them (packed panels with their padding, per-channel data, bias).
  /// The direct and Winograd kernels' copies (tens of bytes to tens of KB, in the layouts this CPU's paths
  /// read) are counted too.
  [[nodiscard]] std::size_t bytes() const noexcept {
    return packed_.bytes() + direct_.bytes() + winograd_.bytes() + bias_.size() * sizeof(float);
  }
  /// The direct kernel the path of `isa` runs for this layer (none: im2col + qgemm). The AVX-512 VNNI
  /// kernel needs VBMI; without it, and at the levels avx2, avx2_vnni and avx512, the 8-lane kernel runs
  /// (with vpdpbusd at avx2_vnni) when the layer's geometry suits it, and the Winograd kernel where the
  /// 8-lane kernel would be the plain AVX2 one and the layer qualifies (make_winograd_weights).
  /// @throws value_error when MINNOW_ARCH holds an unknown name (default isa).
  [[nodiscard]] detail::DirectKind direct_kind(simd::Isa isa = simd::active_isa()) const {
    if (!direct_enabled_ || !simd::cpu_has(std::min(isa, simd::Isa::avx512_vnni))) return detail::DirectKind::none;
    if (isa >= simd::Isa::avx512_vnni && simd::cpu_has_vbmi()) return direct_.kind;
    if (isa >= simd::Isa::avx2 && isa != simd::Isa::avx2_vnni && !winograd_.empty()) return detail::DirectKind::winograd;
    return isa >= simd::Isa::avx2 && direct_.fits_avx2 ? direct_.kind : detail::DirectKind::none;
  }
  /// For benchmarks and tests: `false` makes every path run im2col + qgemm.
  void set_direct(bool enabled) noexcept { direct_enabled_ = enabled; }

  /// The output shape for an NCHW input shape. @throws shape_error naming the layer when it does not fit.
  [[nodiscard]] Shape<4> output_shape(const Shape<4>& input) const {
    if (input[1] != in_ || input[2] + 2 * padding_ < kernel_ || input[3] + 2 * padding_ < kernel_ || input[2] <= 0 ||
        input[3] <= 0) {
      throw shape_error(minnow::detail::concat("QuantizedConv2d '", packed_.name, "': input ", to_string(input),
                                               " does not fit (expected [N, ", in_, ", H, W] with H, W > 0 and H, W + 2·",
                                               padding_, " >= ", kernel_, ")"));
    }
    return {input[0], packed_.n, (input[2] + 2 * padding_ - kernel_) / stride_ + 1,
            (input[3] + 2 * padding_ - kernel_) / stride_ + 1};
  }

  /// @brief uint8 in (quantized with input_params()), uint8 out with the output parameters `out`.
  /// @throws shape_error for mismatched shapes; value_error for bad output parameters.
  template <class Arch = arch::automatic>
  void forward(TensorView<const std::uint8_t, 4> x, quant::AffineParams out, TensorView<std::uint8_t, 4> y) {
    check_output(x.shape(), y.shape());
    quant::check_affine_params(out, quant::QRange{0, 255}, ("QuantizedConv2d '" + packed_.name + "' (output)").c_str());
    simd::with_arch<Arch>(name(), [&](auto tag) { run<decltype(tag)>(x, y.data(), out); });
  }

  /// @brief uint8 in, float out: the dequantized convolution (+ bias, ReLU).
  template <class Arch = arch::automatic>
  void forward(TensorView<const std::uint8_t, 4> x, TensorView<float, 4> y) {
    check_output(x.shape(), y.shape());
    simd::with_arch<Arch>(name(), [&](auto tag) { run<decltype(tag)>(x, y.data(), {}); });
  }

  /// @brief uint8 in, uint8 out, followed by a 2×2 stride-2 max pool (floor mode, nn::MaxPool2d(2)):
  /// `y` is `[N, out, ⌊OH/2⌋, ⌊OW/2⌋]`, bit for bit the pool of forward()'s output.
  ///
  /// The output stage is non-decreasing in the accumulator (every scale is > 0, then round and clamp), so the
  /// max of four requantized outputs is the requantized max of their exact accumulators: the direct kernels
  /// take the 2×2 max of the int32 sums and run the output stage once per pooled value (a quarter of the
  /// epilogue work, no uint8 conv output written and read back). Other paths run forward() and the pool.
  /// @throws as forward(), and shape_error when the conv output is smaller than 2×2 or `y` has the wrong shape.
  template <class Arch = arch::automatic>
  void forward_pooled(TensorView<const std::uint8_t, 4> x, quant::AffineParams out, TensorView<std::uint8_t, 4> y) {
    const Shape<4> full = output_shape(x.shape());
    if (full[2] < 2 || full[3] < 2 || y.shape() != Shape<4>{full[0], full[1], full[2] / 2, full[3] / 2}) {
      throw shape_error(minnow::detail::concat("QuantizedConv2d '", packed_.name, "': pooled output is ", to_string(y.shape()),
                                               ", expected the 2x2 pool of ", to_string(full)));
    }
    quant::check_affine_params(out, quant::QRange{0, 255}, ("QuantizedConv2d '" + packed_.name + "' (output)").c_str());
    simd::with_arch<Arch>(name(), [&](auto tag) {
      using A = decltype(tag);
      if (with_direct_kernel<A>([&](auto kernel) { run_direct<decltype(kernel), std::uint8_t, true>(x, y.data(), out); })) return;
      unpooled_.resize(full);
      run<A>(x, unpooled_.data(), out);
      QuantizedMaxPool2d(2).forward<A>(unpooled_.view(), y);
    });
  }

  /// @brief Float in: quantized on the fly with input_params() (fake_quantize's formula), uint8 out.
  template <class Arch = arch::automatic>
  void forward(TensorView<const float, 4> x, quant::AffineParams out, TensorView<std::uint8_t, 4> y) {
    simd::with_arch<Arch>(name(), [&](auto tag) { forward<decltype(tag)>(quantize_input<decltype(tag)>(x), out, y); });
  }

  /// @brief Float in, float out: quantize, convolve on integers, dequantize (+ bias, ReLU).
  template <class Arch = arch::automatic>
  void forward(TensorView<const float, 4> x, TensorView<float, 4> y) {
    simd::with_arch<Arch>(name(), [&](auto tag) { forward<decltype(tag)>(quantize_input<decltype(tag)>(x), y); });
  }

 private:
  template <class Arch>
  TensorView<const std::uint8_t, 4> quantize_input(TensorView<const float, 4> x) {
    (void)output_shape(x.shape());
    quantized_input_.resize(x.shape());
    detail::quantize_row(Arch{}, x.data(), x.size(), input_, quantized_input_.data());
    return quantized_input_.view();
  }

  void check_output(const Shape<4>& in, const Shape<4>& out) const {
    const Shape<4> expected = output_shape(in);
    if (out != expected) {
      throw shape_error(minnow::detail::concat("QuantizedConv2d '", packed_.name, "': output is ", to_string(out),
                                               ", expected ", to_string(expected)));
    }
  }

  /// How the output rows are cut: `chunks` ranges of `rows` rows (a multiple of 8), on `threads` threads.
  struct Plan {
    index_t total, rows, chunks, plane, out_h, out_w;
    int threads;
  };

  [[nodiscard]] Plan plan_for(const Shape<4>& in) const {
    const Shape<4> o = output_shape(in);
    Plan p{};
    p.out_h = o[2];
    p.out_w = o[3];
    p.plane = o[2] * o[3];
    p.total = o[0] * p.plane;
    const index_t k4 = (packed_.k + 3) / 4;
    // About 256 KB of im2col bytes per chunk: the column pass and the panels stay in L2.
    const index_t target = std::clamp<index_t>((index_t{1} << 18) / (k4 * 4) / kRowAlign * kRowAlign, 64, 4096);
    const double work = static_cast<double>(p.total) * static_cast<double>(packed_.n) * static_cast<double>(packed_.k);
    const index_t most = std::max<index_t>(1, (p.total + 63) / 64);  // at least 64 rows per thread
    p.threads = static_cast<int>(work < 2e6 ? 1 : std::min<index_t>(minnow::detail::max_threads(), most));
    index_t chunks = std::max<index_t>(1, (p.total + target - 1) / target);
    chunks = (chunks + p.threads - 1) / p.threads * p.threads;  // whole chunks per thread, evenly sized
    p.rows = std::max<index_t>(kRowAlign, (p.total + chunks - 1) / chunks);
    p.rows = (p.rows + kRowAlign - 1) / kRowAlign * kRowAlign;
    p.chunks = p.total == 0 ? 0 : (p.total + p.rows - 1) / p.rows;
    return p;
  }

  template <class Arch, class OutT>
  void run(TensorView<const std::uint8_t, 4> x, OutT* y, quant::AffineParams out) {
    if (with_direct_kernel<Arch>([&](auto kernel) { run_direct<decltype(kernel), OutT>(x, y, out); })) return;
    const Plan plan = plan_for(x.shape());
    if (plan.total == 0) return;
    if (workspaces_.size() < static_cast<std::size_t>(plan.threads)) workspaces_.resize(static_cast<std::size_t>(plan.threads));
    const OutputStage stage{{}, bias_, relu_};
    minnow::detail::parallel_for(plan.chunks, plan.threads, [&](long chunk, int thread) {
      auto& ws = workspaces_[static_cast<std::size_t>(thread)];
      const index_t r0 = chunk * plan.rows, r1 = std::min(plan.total, r0 + plan.rows);
      build_panels<Arch>(x, plan, r0, r1, ws);
      const index_t m = r1 - r0, n = packed_.n;
      if constexpr (std::is_same_v<OutT, std::uint8_t>) {
        ws.out8.resize({m * n});
        qgemm<Arch>(ws.act, packed_, stage, out, TensorView<std::uint8_t, 2>(ws.out8.data(), {m, n}));
        scatter_nchw(ws.out8.data(), plan, r0, r1, y);
      } else {
        ws.outf.resize({m * n});
        qgemm<Arch>(ws.act, packed_, stage, TensorView<float, 2>(ws.outf.data(), {m, n}));
        scatter_nchw(ws.outf.data(), plan, r0, r1, y);
      }
    });
  }

  /// qgemm's output-stage constants for this layer and `out`, rebuilt only when the output changes.
  const detail::Epilogue& epilogue_for(detail::Out kind, quant::AffineParams out) {
    const bool same = epilogue_ready_ && kind == epilogue_kind_ &&
                      (kind != detail::Out::requantize ||
                       (out.scale == epilogue_out_.scale && out.zero_point == epilogue_out_.zero_point));
    if (!same) {
      QuantizedActivations shape_only;  // make_epilogue reads the inner length and the input parameters
      shape_only.k = packed_.k;
      shape_only.params = input_;
      epilogue_ = detail::make_epilogue(shape_only, packed_, OutputStage{{}, bias_, relu_}, kind, out);
      epilogue_kind_ = kind;
      epilogue_out_ = out;
      epilogue_ready_ = true;
    }
    return epilogue_;
  }

  /// Calls `f(kernel tag)` and returns true when the path of `Arch` runs a direct kernel for this layer.
  template <class Arch, class F>
  bool with_direct_kernel([[maybe_unused]] F&& f) {
#if MINNOW_X86_KERNELS
    if (!direct_enabled_) return false;
    if constexpr (std::is_base_of_v<arch::avx512_vnni, Arch>) {
      if (simd::cpu_has_vbmi() && direct_.kind != detail::DirectKind::none) {
        f(arch::avx512_vnni{});
        return true;
      }
    }
    if constexpr (std::is_base_of_v<arch::avx2, Arch> && !std::is_base_of_v<arch::avx2_vnni, Arch>) {
      if (!winograd_.empty()) {
        f(detail::WinogradKernel{});
        return true;
      }
    }
    if constexpr (std::is_base_of_v<arch::avx2, Arch>) {
      if (direct_.kind != detail::DirectKind::none && direct_.fits_avx2) {
        if constexpr (std::is_base_of_v<arch::avx2_vnni, Arch>) {
          f(arch::avx2_vnni{});
        } else {
          f(arch::avx2{});
        }
        return true;
      }
    }
#endif
    return false;
  }

  /// Threads for a kernel that runs samples in parallel, for output shape `o` (workspaces made for each).
  /// One sample is 10–1000 µs of work: threads only for batches (a region costs µs at batch 1).
  int sample_threads(const Shape<4>& o) {
    const double work = static_cast<double>(o[0] * o[2] * o[3]) * static_cast<double>(packed_.n * packed_.k);
    const int threads = static_cast<int>(o[0] < 2 || work < 2e6 ? 1 : std::min<index_t>(minnow::detail::max_threads(), o[0]));
    if (workspaces_.size() < static_cast<std::size_t>(threads)) workspaces_.resize(static_cast<std::size_t>(threads));
    return threads;
  }

  /// The kernel of `Kernel` (an arch tag for the direct kernels, or the Winograd kernel's tag).
  template <class Kernel, class OutT, bool Pool = false>
  void run_direct(TensorView<const std::uint8_t, 4> x, OutT* y, quant::AffineParams out) {
    if constexpr (std::is_same_v<Kernel, detail::WinogradKernel>) {
      run_winograd<OutT, Pool>(x, y, out);
    } else {
      run_direct_kernel<Kernel, OutT, Pool>(x, y, out);
    }
  }

  /// The direct kernel of `Kernel`: samples in parallel, each padded once into the kernel's layout.
  template <class Kernel, class OutT, bool Pool>
  void run_direct_kernel(TensorView<const std::uint8_t, 4> x, OutT* y, quant::AffineParams out) {
    const Shape<4> o = output_shape(x.shape());
    const index_t batch = o[0], n = packed_.n, height = x.dim(2), width = x.dim(3);
    const index_t plane_out = o[2] * o[3];
    if (batch == 0 || plane_out == 0) return;
    const bool taps = direct_.kind == detail::DirectKind::taps;
    const index_t ph = height + 2 * padding_, pw = width + 2 * padding_, pixel_bytes = taps ? 1 : 4;
    const index_t row_bytes = pw * pixel_bytes, plane_bytes = ph * row_bytes, groups_c = taps ? in_ : (in_ + 3) / 4;
    const index_t buffer = groups_c * plane_bytes + detail::kDirectSlack;
    constexpr index_t lanes = detail::direct_lanes(Kernel{});
    const index_t vectors = o[2] * ((o[3] + lanes - 1) / lanes);
    direct_offsets_.resize(static_cast<std::size_t>(direct_.groups));
    for (std::size_t g = 0; g < direct_offsets_.size(); ++g) {
      direct_offsets_[g] = direct_.c[g] * plane_bytes + direct_.i[g] * row_bytes + (taps ? 0 : direct_.j[g] * 4);
    }
    const detail::Epilogue& e =
        epilogue_for(std::is_same_v<OutT, float> ? detail::Out::dequantize : detail::Out::requantize, out);
    const int threads = sample_threads(o);
    const detail::DirectGeometry d{o[2], o[3], stride_, row_bytes, pixel_bytes, n, direct_offsets_.data()};
    const auto zp = static_cast<std::uint8_t>(input_.zero_point);
    minnow::detail::parallel_for(batch, threads, [&](long sample, int thread) {
      auto& ws = workspaces_[static_cast<std::size_t>(thread)];
      ws.padded.resize({buffer});
      ws.rowsums.resize({vectors * lanes});
      std::uint8_t* pad = ws.padded.data();
      const std::uint8_t* xs = x.data() + sample * in_ * height * width;
      // Padding holds the input zero point, so padded taps contribute (za − za)·w = 0, as in the gemm path.
      if (taps) {
        std::fill_n(pad, buffer, zp);
        for (index_t c = 0; c < in_; ++c) {
          for (index_t h = 0; h < height; ++h) {
            std::memcpy(pad + c * plane_bytes + (h + padding_) * row_bytes + padding_, xs + (c * height + h) * width,
                        static_cast<std::size_t>(width));
          }
        }
      } else {
        for (index_t cg = 0; cg < groups_c; ++cg) {
          std::uint32_t pattern = 0;  // zp in the bytes of real channels, 0 for the padding channels
          for (index_t t = 0; t < 4 && 4 * cg + t < in_; ++t) pattern |= std::uint32_t{zp} << (8 * t);
          std::uint8_t* plane = pad + cg * plane_bytes;
          // Whole channel planes are interleaved in one pass (one short tail per plane, not per row).
          const std::uint8_t* planes[4];
          for (index_t t = 0; t < 4; ++t) planes[t] = 4 * cg + t < in_ ? xs + (4 * cg + t) * height * width : nullptr;
          if (padding_ == 0) {
            detail::interleave4(Kernel{}, planes, height * width, plane);
            continue;
          }
          ws.interleaved.resize({height * width * 4});
          detail::interleave4(Kernel{}, planes, height * width, ws.interleaved.data());
          detail::fill_dwords(plane, static_cast<std::int32_t>(pattern), ph * pw);
          for (index_t h = 0; h < height; ++h) {
            std::memcpy(plane + ((h + padding_) * pw + padding_) * 4, ws.interleaved.data() + h * width * 4,
                        static_cast<std::size_t>(width * 4));
          }
        }
        std::fill_n(pad + groups_c * plane_bytes, detail::kDirectSlack, std::uint8_t{0});
      }
      OutT* ys = y + sample * n * (Pool ? (o[2] / 2) * (o[3] / 2) : plane_out);
      detail::direct_sample<Pool>(Kernel{}, d, direct_, e, pad, ws.rowsums.data(), ys);
    });
  }

  /// The Winograd kernel: samples in parallel (as run_direct), each through winograd_sample.
  template <class OutT, bool Pool>
  void run_winograd([[maybe_unused]] TensorView<const std::uint8_t, 4> x, [[maybe_unused]] OutT* y,
                    [[maybe_unused]] quant::AffineParams out) {
#if MINNOW_X86_KERNELS
    const Shape<4> o = output_shape(x.shape());
    const index_t batch = o[0], n = packed_.n;
    if (batch == 0 || o[2] * o[3] == 0) return;
    const detail::WinogradGeometry g(in_, x.dim(2), x.dim(3), padding_);
    const detail::Epilogue& e =
        epilogue_for(std::is_same_v<OutT, float> ? detail::Out::dequantize : detail::Out::requantize, out);
    const int threads = sample_threads(o);
    const index_t out_plane = Pool ? (o[2] / 2) * (o[3] / 2) : o[2] * o[3];
    const auto zp = static_cast<std::uint8_t>(input_.zero_point);
    minnow::detail::parallel_for(batch, threads, [&](long sample, int thread) {
      auto& ws = workspaces_[static_cast<std::size_t>(thread)];
      ws.winograd_in.resize({g.packed_size(winograd_.pairs)});
      ws.winograd_u.resize({g.transformed_size(winograd_.pairs)});
      ws.padded.resize({2 * g.plane_bytes()});
      detail::winograd_sample<Pool>(arch::avx2{}, g, winograd_, e, x.data() + sample * in_ * x.dim(2) * x.dim(3), zp,
                                    ws.winograd_in.data(), ws.winograd_u.data(), ws.padded.data(), y + sample * n * out_plane);
    });
#endif
  }

  /// Rows [r0, r1) of the im2col matrix → ws.act (panels and row sums).
  template <class Arch>
  void build_panels(TensorView<const std::uint8_t, 4> x, const Plan& plan, index_t r0, index_t r1,
                    detail::ConvWorkspace& ws) const {
    const index_t m = r1 - r0, k = packed_.k, k4 = (k + 3) / 4;
    const index_t ld = (m + kRowAlign - 1) / kRowAlign * kRowAlign;  // the transpose reads whole 16-row blocks
    ws.col.resize({k4 * 4 * ld});
    std::uint8_t* col = ws.col.data();
    // Taps past k multiply zero weights; zeroing them keeps the panels deterministic.
    std::fill(col + k * ld, col + k4 * 4 * ld, std::uint8_t{0});
    const auto zp = static_cast<std::uint8_t>(input_.zero_point);
    const index_t height = x.dim(2), width = x.dim(3);
    // The chunk's (sample, output row) segments, decoded once: the tap loop below then has no division.
    auto& segments = ws.segments;
    segments.clear();
    for (index_t r = r0; r < r1;) {
      const index_t n = r / plan.plane, pix = r % plan.plane, oh = pix / plan.out_w, ow0 = pix % plan.out_w;
      const index_t ow1 = std::min(plan.out_w, ow0 + (r1 - r));
      segments.push_back({n * in_ * height * width, oh * stride_ - padding_, ow0, ow1, (r - r0) - ow0});
      r += ow1 - ow0;
    }
    for (index_t c = 0; c < in_; ++c) {
      for (index_t i = 0; i < kernel_; ++i) {
        for (index_t j = 0; j < kernel_; ++j) {
          std::uint8_t* dst_row = col + ((c * kernel_ + i) * kernel_ + j) * ld;
          const auto [lo, hi] = valid_columns(j, width, plan.out_w);
          for (const auto& seg : segments) {
            // Offsets, not pointers, until they are known to lie inside the buffers (ow0 + dst >= 0).
            const auto at = [&](index_t ow) { return dst_row + (seg.dst + ow); };
            const index_t ih = seg.ih + i;
            if (ih < 0 || ih >= height) {
              detail::fill_bytes(Arch{}, at(seg.ow0), zp, seg.ow1 - seg.ow0);
              continue;
            }
            const std::uint8_t* src_row = x.data() + seg.sample + (c * height + ih) * width;
            const index_t a = std::clamp(lo, seg.ow0, seg.ow1), b = std::clamp(hi, a, seg.ow1);
            if (a > seg.ow0) detail::fill_bytes(Arch{}, at(seg.ow0), zp, a - seg.ow0);
            if (stride_ == 1) {
              if (b > a) detail::copy_bytes(Arch{}, at(a), src_row + (a - padding_ + j), b - a);
            } else {
              for (index_t ow = a; ow < b; ++ow) *at(ow) = src_row[ow * stride_ - padding_ + j];
            }
            if (seg.ow1 > b) detail::fill_bytes(Arch{}, at(b), zp, seg.ow1 - b);
          }
        }
      }
    }
    detail::prepare(ws.act, m, k, input_, ActivationLayout::panels);
    detail::columns_to_panels(Arch{}, col, ld, ws.act);
    if (packed_.any_zero_point) {  // Σ_k A[r, k] is needed only for weights with a zero point
      for (index_t t = 0; t < k; ++t) {
        const std::uint8_t* src = col + t * ld;
        for (index_t r = 0; r < m; ++r) ws.act.rowsum[static_cast<std::size_t>(r)] += src[r];
      }
    }
  }

  /// The product's [rows × O] chunk output → NCHW.
  template <class T>
  void scatter_nchw(const T* src, const Plan& plan, index_t r0, index_t r1, T* y) const {
    const index_t n_out = packed_.n;
    for (index_t r = r0; r < r1;) {
      const index_t n = r / plan.plane, pix = r % plan.plane;
      const index_t len = std::min(plan.plane - pix, r1 - r);  // rows of one sample
      T* base = y + n * n_out * plan.plane + pix;
      const T* s = src + (r - r0) * n_out;
      for (index_t o = 0; o < n_out; ++o) {
        T* dst = base + o * plan.plane;
        for (index_t q = 0; q < len; ++q) dst[q] = s[q * n_out + o];
      }
      r += len;
    }
  }

  /// Output columns [lo, hi) whose input column ow·s − p + j lies inside [0, width).
  [[nodiscard]] std::pair<index_t, index_t> valid_columns(index_t j, index_t width, index_t out_w) const noexcept {
    const index_t offset = j - padding_;
    const index_t lo = offset >= 0 ? 0 : (-offset + stride_ - 1) / stride_;
    const index_t hi = std::clamp<index_t>(width - offset > 0 ? (width - offset + stride_ - 1) / stride_ : 0, 0, out_w);
    return {std::min(lo, out_w), std::max(hi, std::min(lo, out_w))};
  }

  static constexpr index_t kRowAlign = 16;  ///< rows per transpose step (two activation panels)

  index_t in_, kernel_, stride_, padding_;
  PackedWeights packed_;
  std::vector<float> bias_;
  quant::AffineParams input_;
  bool relu_ = false;
  detail::DirectWeights direct_;
  detail::WinogradWeights winograd_;
  std::vector<index_t> direct_offsets_;  // byte offset of each group in the padded input (per input size)
  detail::Epilogue epilogue_;            // cached output stage of the direct kernels
  detail::Out epilogue_kind_ = detail::Out::int32;
  quant::AffineParams epilogue_out_{};
  bool epilogue_ready_ = false;
  bool direct_enabled_ = true;
  Tensor<std::uint8_t, 4> quantized_input_;
  Tensor<std::uint8_t, 4> unpooled_;  // forward_pooled on the im2col paths: the conv output before the pool
  std::vector<detail::ConvWorkspace> workspaces_;  // one per thread; buffers grow once
};

}  // namespace minnow::infer
