#pragma once
/// @file infer/sparse_int8.hpp
/// @brief Sparse + int8 weight storage: a bitmap of the kept entries, the kept values as int8 with one
/// symmetric scale per row (output channel), and a float-input kernel that dequantizes on the fly.
///
/// Storage of a `rows × cols` matrix with `kept` stored values (every buffer counted by bytes()):
///   bitmap    rows · ⌈cols / 16⌉ uint16 words     (2 bits per 16 columns … 1 bit per element)
///   values    kept + 16 int8                      (16 bytes of slack for the 16-byte expand load)
///   scales    rows float                          (AffineParams with zero point 0, one per row)
///   row_ptr   rows + 1 int32                      (rows can be split across threads)
/// For the teacher's fc1 (1000 × 6272) at 90 %: 784 000 + 627 216 + 4 000 + 4 004 ≈ 1.42 MB, 0.057× the
/// 25.09 MB of fp32 weights (CSR with 16-bit columns and int8 values would be 3 bytes per kept value,
/// 1.9 MB = 0.075×: over the 0.06 budget; only the bitmap's 1 bit per element fits).
///
/// Quantization: `q = clamp(rint(w / scale), −128, 127)`, `ŵ = q · scale` (PyTorch's per-channel symmetric
/// qint8 with zero point 0; rint is round-half-to-even). The kernel computes `y[r] = scale[r] · Σ_c q[r, c]·x[c]`
/// with float x and float accumulation: activations stay float (no activation calibration, no activation
/// quantization error), so the only error against the float layer is the weights' rounding. Batch 1: per
/// 16 columns, the next int8 values are widened to float and placed in the lanes of their kept columns,
/// multiplied with a contiguous load of x (infer/sparse_int8_kernels.hpp: AVX-512 `vexpandps`, AVX2 a
/// permutation table per byte of the bitmap, chosen at run time for the CPU; scalar otherwise).
/// SparseLinear's batch-N path sees the dequantized values through for_each_in_row.

#include <minnow/error.hpp>
#include <minnow/infer/sparse.hpp>
#include <minnow/infer/sparse_int8_kernels.hpp>
#include <minnow/quant/concepts.hpp>
#include <minnow/simd/arch.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace minnow::infer {

/// @brief Bitmap of kept entries + int8 kept values + one float scale per row.
class BitmapInt8Matrix {
 public:
  static constexpr index_t kWord = 16;
  static constexpr std::int32_t kQmin = -128, kQmax = 127;

  /// Per-row symmetric scales for `weights` under `mask`: scale = max |kept w| / 127 (1 for a row with no
  /// nonzero kept value), zero point 0. @throws shape_error / value_error as the constructor.
  [[nodiscard]] static std::vector<quant::AffineParams> symmetric_scales(TensorView<const float, 2> weights,
                                                                         TensorView<const float, 2> mask) {
    detail::check_mask(weights, mask, "infer::BitmapInt8Matrix::symmetric_scales");
    std::vector<quant::AffineParams> params(static_cast<std::size_t>(weights.dim(0)));
    for (index_t r = 0; r < weights.dim(0); ++r) {
      float most = 0.0f;
      for (index_t c = 0; c < weights.dim(1); ++c) {
        if (mask(r, c) != 0.0f) most = std::max(most, std::abs(weights(r, c)));
      }
      params[static_cast<std::size_t>(r)] = {most > 0.0f ? most / static_cast<float>(kQmax) : 1.0f, 0};
    }
    return params;
  }

  BitmapInt8Matrix() = default;
  /// Keeps q[r, c] = clamp(rint(W[r, c] / scale_r), −128, 127) where mask[r, c] = 1.
  /// @throws shape_error when the mask does not match the weights or `params` has not one entry per row;
  /// value_error for a mask entry that is not 0 or 1, a zero point other than 0 or a scale that is not a
  /// positive finite number.
  BitmapInt8Matrix(TensorView<const float, 2> weights, TensorView<const float, 2> mask, std::span<const quant::AffineParams> params)
      : rows_(weights.dim(0)), cols_(weights.dim(1)), words_((weights.dim(1) + kWord - 1) / kWord) {
    detail::check_mask(weights, mask, "infer::BitmapInt8Matrix");
    if (static_cast<index_t>(params.size()) != rows_) {
      throw shape_error(minnow::detail::concat("infer::BitmapInt8Matrix: ", params.size(), " scales for weights ",
                                               to_string(weights.shape()), " (one per row expected)"));
    }
    for (std::size_t r = 0; r < params.size(); ++r) {
      if (params[r].zero_point != 0 || !(params[r].scale > 0.0f) || !std::isfinite(params[r].scale)) {
        throw value_error(minnow::detail::concat("infer::BitmapInt8Matrix: row ", r, " has scale ", params[r].scale,
                                                 " and zero point ", params[r].zero_point,
                                                 " (symmetric: zero point 0, scale > 0 and finite)"));
      }
      scales_.push_back(params[r].scale);
    }
    bits_.assign(static_cast<std::size_t>(rows_ * words_), 0);
    row_ptr_.assign(static_cast<std::size_t>(rows_) + 1, 0);
    for (index_t r = 0; r < rows_; ++r) {
      const float scale = scales_[static_cast<std::size_t>(r)];
      for (index_t c = 0; c < cols_; ++c) {
        if (mask(r, c) == 0.0f) continue;
        bits_[static_cast<std::size_t>(r * words_ + c / kWord)] |= static_cast<std::uint16_t>(1u << (c % kWord));
        const float q = std::nearbyint(weights(r, c) / scale);
        values_.push_back(static_cast<std::int8_t>(std::clamp(q, static_cast<float>(kQmin), static_cast<float>(kQmax))));
      }
      row_ptr_[static_cast<std::size_t>(r) + 1] = static_cast<std::int32_t>(values_.size());
    }
    values_.resize(values_.size() + kWord, 0);  // slack for the 16-byte load of the last word
  }

  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  [[nodiscard]] index_t nnz() const noexcept { return row_ptr_.empty() ? 0 : row_ptr_.back(); }
  [[nodiscard]] float scale(index_t r) const noexcept { return scales_[static_cast<std::size_t>(r)]; }
  /// Bytes of the four buffers.
  [[nodiscard]] std::size_t bytes() const noexcept {
    return bits_.size() * sizeof(std::uint16_t) + values_.size() * sizeof(std::int8_t) + scales_.size() * sizeof(float) +
           row_ptr_.size() * sizeof(std::int32_t);
  }

  /// `y[r] = scale_r · Σ_c q[r, c]·x[c]` for r in [begin, end), with the kernels of `Arch` (by default the
  /// CPU's widest). @throws value_error when `Arch` is given and this CPU does not run it.
  template <class Arch = arch::automatic>
  void gemv(const float* x, float* y, index_t begin, index_t end) const {
    simd::with_arch<Arch>("infer::BitmapInt8Matrix::gemv", [&](auto tag) { gemv(tag, x, y, begin, end); });
  }
  /// gemv with the kernels of a resolved tag (the CPU must run them).
  template <detail::ArchTag Arch>
  void gemv(Arch tag, const float* x, float* y, index_t begin, index_t end) const noexcept {
    detail::bitmap_int8_gemv(tag, {bits_.data(), words_, cols_, row_ptr_.data(), values_.data(), scales_.data()}, x, y,
                             begin, end);
  }

  /// Calls `f(column, q · scale)` for every stored value of row r, in column order (the columns decoded
  /// into a per-thread buffer first).
  template <class F>
  void for_each_in_row(index_t r, F&& f) const {
    simd::dispatch([&](auto tag) { for_each_in_row(tag, r, f); });
  }
  /// for_each_in_row, decoding the bitmap with the kernels of a resolved tag (the CPU must run them): a
  /// branch-free decode where a bit-scan loop mispredicts once per word, as for BitmapMatrix.
  template <detail::ArchTag Arch, class F>
  void for_each_in_row(Arch tag, index_t r, F&& f) const {
    thread_local std::vector<std::int32_t> columns;
    if (columns.size() < static_cast<std::size_t>(words_ * kWord + kWord)) columns.resize(static_cast<std::size_t>(words_ * kWord + kWord));
    const index_t n = detail::bitmap_decode(tag, bits_.data() + r * words_, words_, columns.data());
    const std::int8_t* v = values_.data() + row_ptr_[static_cast<std::size_t>(r)];
    const float scale = scales_[static_cast<std::size_t>(r)];
    for (index_t k = 0; k < n; ++k) f(static_cast<index_t>(columns[static_cast<std::size_t>(k)]), static_cast<float>(v[k]) * scale);
  }

  /// Calls `f(column, q)` for every stored value of row r, in column order (the integer values).
  template <class F>
  void for_each_quantized_in_row(index_t r, F&& f) const {
    const std::uint16_t* bits = bits_.data() + r * words_;
    const std::int8_t* v = values_.data() + row_ptr_[static_cast<std::size_t>(r)];
    for (index_t w = 0; w < words_; ++w) {
      for (unsigned m = bits[w]; m != 0; m &= m - 1) f(w * kWord + std::countr_zero(m), static_cast<std::int32_t>(*v++));
    }
  }

 private:
  index_t rows_ = 0, cols_ = 0, words_ = 0;
  std::vector<std::uint16_t> bits_;
  std::vector<std::int8_t> values_;
  std::vector<float> scales_;
  std::vector<std::int32_t> row_ptr_;
};

}  // namespace minnow::infer
