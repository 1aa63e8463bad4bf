#pragma once
/// @file infer/quantized_maxpool.hpp
/// @brief MaxPool2d directly on uint8 NCHW activations.
///
/// Dequantization `x̂ = (q − zp)·scale` is non-decreasing in q when scale > 0 (in float too: the
/// subtraction is exact and multiplying by a positive float is monotone), so
/// `max(x̂) = (max(q) − zp)·scale`: pooling the integers gives exactly the float pool of the dequantized
/// values, with the same parameters. Windows are nn::MaxPool2d's (PyTorch's floor mode, no padding);
/// ties cannot be told apart in the output and integers have no NaN, so no tie rule is needed.
/// The common 2×2, stride-2 window has vector rows (AVX-512BW+VBMI 32 outputs per step with masked tails,
/// AVX2 16 outputs per step plus a scalar tail); every other window runs the scalar loop.

#include <minnow/detail/parallel.hpp>
#include <minnow/error.hpp>
#include <minnow/infer/qgemm.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <cstdint>
#include <string>


namespace minnow::infer {

namespace detail {

/// One output row of a 2×2, stride-2 pool: `out[j] = max(r0[2j], r0[2j+1], r1[2j], r1[2j+1])`.
inline void maxpool_u8_2x2_row(arch::scalar, const std::uint8_t* r0, const std::uint8_t* r1, index_t out_w,
                               std::uint8_t* out) noexcept {
  for (index_t j = 0; j < out_w; ++j) {
    out[j] = std::max(std::max(r0[2 * j], r0[2 * j + 1]), std::max(r1[2 * j], r1[2 * j + 1]));
  }
}

#if MINNOW_X86_KERNELS
MINNOW_TARGET_AVX2 inline void maxpool_u8_2x2_row(arch::avx2, const std::uint8_t* r0, const std::uint8_t* r1, index_t out_w,
                               std::uint8_t* out) noexcept {
  const __m256i low = _mm256_set1_epi16(0x00FF);
  index_t j = 0;
  for (; j + 16 <= out_w; j += 16) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r0 + 2 * j));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r1 + 2 * j));
    __m256i v = _mm256_max_epu8(a, b);                      // the two rows
    v = _mm256_max_epu8(v, _mm256_srli_epi16(v, 8));        // each pair, in the low byte of its 16-bit lane
    v = _mm256_packus_epi16(_mm256_and_si256(v, low), v);   // low bytes, per 128-bit lane
    v = _mm256_permute4x64_epi64(v, 0x08);                  // lanes' first quadwords together
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j), _mm256_castsi256_si128(v));
  }
  maxpool_u8_2x2_row(arch::scalar{}, r0 + 2 * j, r1 + 2 * j, out_w - j, out + j);
}
#endif

#if MINNOW_X86_KERNELS
MINNOW_TARGET_AVX512_VBMI inline void maxpool_u8_2x2_row(arch::avx512_vnni, const std::uint8_t* r0, const std::uint8_t* r1, index_t out_w,
                               std::uint8_t* out) noexcept {
  const __m512i even_bytes = _mm512_set_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                             0, 0, 0, 0, 62, 60, 58, 56, 54, 52, 50, 48, 46, 44, 42, 40, 38, 36, 34, 32, 30,
                                             28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  for (index_t j = 0; j < out_w; j += 32) {
    const index_t n = std::min<index_t>(32, out_w - j);
    // Masked-off bytes are never read, so a row of 14 or 7 outputs stays inside its buffer.
    const auto in_mask = static_cast<__mmask64>(n == 32 ? ~0ULL : (1ULL << (2 * n)) - 1);
    const auto out_mask = static_cast<__mmask32>(n == 32 ? ~0U : (1U << n) - 1);
    const __m512i a = _mm512_maskz_loadu_epi8(in_mask, r0 + 2 * j), b = _mm512_maskz_loadu_epi8(in_mask, r1 + 2 * j);
    __m512i v = _mm512_max_epu8(a, b);
    v = _mm512_max_epu8(v, _mm512_srli_epi16(v, 8));
    // The low byte of each 16-bit lane: vpermb + a masked store (vpmovwb to memory is microcoded on AMD Zen 4/5).
    _mm256_mask_storeu_epi8(out + j, out_mask, _mm512_castsi512_si256(_mm512_permutexvar_epi8(even_bytes, v)));
  }
}
#endif

/// Any window on one plane: the scalar loop.
inline void maxpool_u8_plane(const std::uint8_t* src, index_t width, index_t kernel, index_t stride, std::uint8_t* out,
                             index_t out_h, index_t out_w) noexcept {
  for (index_t i = 0; i < out_h; ++i) {
    for (index_t j = 0; j < out_w; ++j) {
      std::uint8_t best = 0;
      for (index_t a = 0; a < kernel; ++a) {
        const std::uint8_t* row = src + (i * stride + a) * width + j * stride;
        for (index_t b = 0; b < kernel; ++b) best = std::max(best, row[b]);
      }
      out[i * out_w + j] = best;
    }
  }
}

}  // namespace detail

/// @brief MaxPool2d on uint8 NCHW activations (see the file comment); the output keeps the input's
/// quantization parameters.
class QuantizedMaxPool2d {
 public:
  /// `stride` 0 means "same as kernel", as nn::MaxPool2d. @throws value_error on kernel <= 0 or stride < 0.
  explicit QuantizedMaxPool2d(index_t kernel, index_t stride = 0) : kernel_(kernel), stride_(stride == 0 ? kernel : stride) {
    if (kernel <= 0 || stride < 0) {
      throw value_error(minnow::detail::concat("QuantizedMaxPool2d: kernel ", kernel, " and stride ", stride,
                                               " must be positive"));
    }
  }

  [[nodiscard]] index_t kernel() const noexcept { return kernel_; }
  [[nodiscard]] index_t stride() const noexcept { return stride_; }

  /// @throws shape_error when the input is smaller than the window.
  [[nodiscard]] Shape<4> output_shape(const Shape<4>& input) const {
    if (input[2] < kernel_ || input[3] < kernel_) {
      throw shape_error(minnow::detail::concat("QuantizedMaxPool2d(kernel=", kernel_, ", stride=", stride_, "): input ",
                                               to_string(input), " is smaller than the window"));
    }
    return {input[0], input[1], (input[2] - kernel_) / stride_ + 1, (input[3] - kernel_) / stride_ + 1};
  }

  /// @throws shape_error when `y` is not output_shape(x).
  template <class Arch = arch::automatic>
  void forward(TensorView<const std::uint8_t, 4> x, TensorView<std::uint8_t, 4> y) const {
    const Shape<4> expected = output_shape(x.shape());
    if (y.shape() != expected) {
      throw shape_error(minnow::detail::concat("QuantizedMaxPool2d: output is ", to_string(y.shape()), ", expected ",
                                               to_string(expected)));
    }
    simd::with_arch<Arch>("QuantizedMaxPool2d", [&](auto tag) {
      if constexpr (std::is_base_of_v<arch::avx512_vnni, decltype(tag)>) {
        if (!simd::cpu_has_vbmi()) return run(arch::avx512{}, x, y);  // the vector rows need VBMI's vpermb
      }
      run(tag, x, y);
    });
  }

 private:
  template <class Arch>
  void run(Arch, TensorView<const std::uint8_t, 4> x, TensorView<std::uint8_t, 4> y) const {
    const Shape<4> expected = y.shape();
    const index_t planes = expected[0] * expected[1], out_h = expected[2], out_w = expected[3];
    const index_t width = x.dim(3), plane_in = x.dim(2) * width, plane_out = out_h * out_w;
    // Pooling reads each byte once: threads pay only on large batches.
    const int threads = planes * plane_in > (index_t{1} << 18) ? minnow::detail::max_threads() : 1;
    minnow::detail::parallel_for(planes, threads, [&](long p, int) {
      const std::uint8_t* src = x.data() + p * plane_in;
      std::uint8_t* out = y.data() + p * plane_out;
      if (kernel_ == 2 && stride_ == 2) {
        for (index_t i = 0; i < out_h; ++i) {
          detail::maxpool_u8_2x2_row(Arch{}, src + 2 * i * width, src + (2 * i + 1) * width, out_w, out + i * out_w);
        }
      } else {
        detail::maxpool_u8_plane(src, width, kernel_, stride_, out, out_h, out_w);
      }
    });
  }

  index_t kernel_, stride_;
};

}  // namespace minnow::infer
