#pragma once
/// @file infer/codebook_weights.hpp
/// @brief Codebook-index weights — the storage of k-means weight sharing (quant/kmeans.hpp) — and the
/// Linear forward that decodes them on the fly.
///
/// A weight `W[rows × cols]` (a Linear's layout) becomes, per element, the index of its centroid in a
/// codebook (one for the whole tensor, or one per row as `quant::PerChannel{0}` fits them), stored in
/// 4 bits when every codebook has at most 16 centroids and in 8 bits up to 256. The index is the one
/// `quant::fake_quantize` picks (nearest centroid, a tie to the lower one), so decoding gives exactly the
/// fake-quantized weight the network was trained or calibrated with:
/// @code
///   auto books = quantizer.params();                       // Quantizer<Bits<4>, MinMax, KMeansCodebook, ...>
///   auto w = infer::encode_codebook("fc1.weight", weight, books);
///   w.bytes();                                             // 0.126× of fp32 for fc1 at 4 bits
///   infer::CodebookLinear fc1(std::move(w), bias);
///   fc1.forward(x, y);                                     // y = x·Ŵᵀ + b
/// @endcode
///
/// 4-bit packing as infer::Int4Weights: element 2b of a row is the low nibble of byte b, element 2b + 1 the
/// high one; a row of odd length leaves its last high nibble 0. The centroid table is padded with zeros to
/// whole 512-bit registers, a power of two of them (16 entries at 4 bits; 32, 64, 128 or 256 at 8), so the
/// kernels (infer/codebook_kernels.hpp, chosen at run time for the CPU) turn indices into weights with
/// register permutes instead of a gather, and no index the bits can hold reads outside the table.

#include <minnow/detail/parallel.hpp>
#include <minnow/error.hpp>
#include <minnow/infer/codebook_kernels.hpp>
#include <minnow/quant/concepts.hpp>
#include <minnow/quant/fake_quantize.hpp>
#include <minnow/simd/arch.hpp>
#include <minnow/simd/gemm.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace minnow::infer {

/// @brief A `[rows × cols]` weight as 4- or 8-bit codebook indices plus the centroid table.
struct CodebookWeights {
  std::string name;
  int bits = 4;                   ///< bits per index: 4 (at most 16 centroids) or 8 (at most 256)
  index_t columns = 0;            ///< cols (a 4-bit row of odd length has a padding nibble)
  Tensor<std::uint8_t, 2> packed; ///< [rows × ⌈cols·bits / 8⌉]
  Tensor<float, 2> table;         ///< [1 or rows × entries]: row j decodes with table row `book(j)`

  [[nodiscard]] index_t rows() const noexcept { return packed.dim(0); }
  [[nodiscard]] index_t cols() const noexcept { return columns; }
  [[nodiscard]] bool per_row() const noexcept { return table.dim(0) > 1; }
  [[nodiscard]] index_t book(index_t row) const noexcept { return per_row() ? row : 0; }
  /// Bytes actually held: the packed indices and the whole centroid table.
  [[nodiscard]] std::size_t bytes() const noexcept {
    return static_cast<std::size_t>(packed.size()) + static_cast<std::size_t>(table.size()) * sizeof(float);
  }
  /// The index stored for element (j, k).
  [[nodiscard]] std::uint8_t index(index_t j, index_t k) const noexcept {
    if (bits == 8) return packed(j, k);
    const std::uint8_t byte = packed(j, k / 2);
    return static_cast<std::uint8_t>(k % 2 == 0 ? byte & 0x0F : byte >> 4);
  }
  /// Ŵ[j, k] = table[book(j), index(j, k)], the fake-quantized weight.
  [[nodiscard]] float value(index_t j, index_t k) const noexcept { return table(book(j), index(j, k)); }
  [[nodiscard]] Tensor<float, 2> dequantize() const {
    Tensor<float, 2> w({rows(), cols()});
    for (index_t j = 0; j < rows(); ++j) {
      for (index_t k = 0; k < cols(); ++k) w(j, k) = value(j, k);
    }
    return w;
  }
};

namespace detail {

/// The index of the centroid `quant::fake_quantize` maps x to: the same comparisons, in float.
[[nodiscard]] inline std::size_t nearest_index(float x, const std::vector<float>& c) noexcept {
  const auto above = std::upper_bound(c.begin(), c.end(), x);
  if (above == c.begin()) return 0;
  if (above == c.end()) return c.size() - 1;
  const auto upper = static_cast<std::size_t>(above - c.begin());
  return x - c[upper - 1] <= c[upper] - x ? upper - 1 : upper;
}

}  // namespace detail

/// @brief Encodes `w[rows × cols]` as indices into `books` (one codebook for the tensor, or one per row).
/// @throws shape_error when books has neither 1 nor rows entries; value_error for an empty, unsorted or
/// non-finite codebook, one with more than 256 centroids, or a non-finite weight (all naming the layer).
[[nodiscard]] inline CodebookWeights encode_codebook(std::string name, TensorView<const float, 2> w,
                                                     std::span<const quant::Codebook> books) {
  const index_t rows = w.dim(0), cols = w.dim(1);
  const std::string context = minnow::detail::concat("infer: codebook weight '", name, "'");
  if (books.size() != 1 && static_cast<index_t>(books.size()) != rows) {
    throw shape_error(minnow::detail::concat(context, ": ", books.size(), " codebooks for ", rows,
                                             " rows (expected 1 or one per row)"));
  }
  std::size_t largest = 0;
  for (std::size_t b = 0; b < books.size(); ++b) {
    quant::check_codebook(books[b], context.c_str(), books.size() > 1 ? static_cast<index_t>(b) : -1);
    largest = std::max(largest, books[b].centroids.size());
  }
  if (largest > 256) {
    throw value_error(minnow::detail::concat(context, ": a codebook of ", largest,
                                             " centroids does not fit 8-bit indices (at most 256)"));
  }
  for (index_t i = 0; i < w.size(); ++i) {
    if (!std::isfinite(w.data()[i])) {
      throw value_error(minnow::detail::concat(context, ": element ", i, " is ", w.data()[i],
                                               "; codebook indices need finite weights"));
    }
  }
  const int bits = largest <= 16 ? 4 : 8;
  // Whole registers of 16, a power of two, so the permute tree covers every index the bits can hold.
  const index_t entries = bits == 4 ? 16 : std::max<index_t>(32, static_cast<index_t>(std::bit_ceil(largest)));
  const index_t row_bytes = bits == 4 ? (cols + 1) / 2 : cols;
  CodebookWeights out{std::move(name), bits, cols, Tensor<std::uint8_t, 2>({rows, row_bytes}),
                      Tensor<float, 2>({static_cast<index_t>(books.size()), entries})};
  for (std::size_t b = 0; b < books.size(); ++b) {
    std::copy(books[b].centroids.begin(), books[b].centroids.end(), &out.table(static_cast<index_t>(b), 0));
  }
  for (index_t j = 0; j < rows; ++j) {
    const auto& centroids = books[books.size() == 1 ? 0 : static_cast<std::size_t>(j)].centroids;
    for (index_t k = 0; k < cols; ++k) {
      const auto q = static_cast<std::uint8_t>(detail::nearest_index(w(j, k), centroids));
      if (bits == 8) {
        out.packed(j, k) = q;
      } else {
        out.packed(j, k / 2) = static_cast<std::uint8_t>(out.packed(j, k / 2) | (k % 2 == 0 ? q : q << 4));
      }
    }
  }
  return out;
}

/// @brief `y = x·Ŵᵀ + b` with Ŵ decoded from codebook indices (PyTorch's Linear on the fake-quantized weight).
///
/// Batch below kSmallBatch: one decode-and-multiply pass per sample over rows split across threads (the
/// weight is read as indices, never expanded). Larger batches: blocks of kBlockRows rows are decoded into a
/// per-thread float panel and multiplied by simd::gemm, so the decode is paid once per row per call.
/// Buffers are kept and reused. Each output is computed the same way whatever the thread count; the
/// batch ≥ kSmallBatch results are also the same bits on every kernel path (decoding is a lookup, and
/// simd::gemm's paths agree bit for bit).
class CodebookLinear {
 public:
  static constexpr index_t kSmallBatch = 4;
  static constexpr index_t kBlockRows = 128;

  /// @throws shape_error when the bias has neither 0 nor rows entries.
  CodebookLinear(CodebookWeights weights, TensorView<const float, 1> bias) : w_(std::move(weights)) {
    if (!bias.empty() && bias.size() != w_.rows()) {
      throw shape_error(minnow::detail::concat("infer::CodebookLinear '", w_.name, "': bias of ", bias.size(),
                                               " entries for ", w_.rows(), " output features"));
    }
    bias_.assign(bias.data(), bias.data() + bias.size());
  }

  [[nodiscard]] index_t in_features() const noexcept { return w_.cols(); }
  [[nodiscard]] index_t out_features() const noexcept { return w_.rows(); }
  [[nodiscard]] const CodebookWeights& weights() const noexcept { return w_; }
  /// Bytes of the indices, the centroid table and the bias.
  [[nodiscard]] std::size_t bytes() const noexcept { return w_.bytes() + bias_.size() * sizeof(float); }

  /// `y[N × out] = x[N × in]·Ŵᵀ + b` with the kernels of `Arch` (by default the CPU's widest).
  /// @throws shape_error naming the shapes when they do not fit; value_error when `Arch` is given and this
  /// CPU does not run it.
  template <class Arch = arch::automatic>
  void forward(TensorView<const float, 2> x, TensorView<float, 2> y) {
    const index_t n = x.dim(0), in = w_.cols(), out = w_.rows();
    if (x.dim(1) != in || y.dim(0) != n || y.dim(1) != out) {
      throw shape_error(minnow::detail::concat("infer::CodebookLinear '", w_.name, "' (", in, " → ", out, "): input ",
                                               to_string(x.shape()), " and output ", to_string(y.shape()),
                                               " do not fit (expected [N, ", in, "] and [N, ", out, "])"));
    }
    if (n == 0) return;
    simd::with_arch<Arch>("infer::CodebookLinear", [&](auto tag) { run(tag, x, y); });
    if (!bias_.empty()) {
      for (index_t s = 0; s < n; ++s) {
        for (index_t r = 0; r < out; ++r) y.data()[s * out + r] += bias_[static_cast<std::size_t>(r)];
      }
    }
  }

  /// Scalar oracle: `y[n, r] = b[r] + Σ_k Ŵ[r, k]·x[n, k]`, summed in double.
  void forward_reference(TensorView<const float, 2> x, TensorView<float, 2> y) const {
    for (index_t s = 0; s < x.dim(0); ++s) {
      for (index_t r = 0; r < w_.rows(); ++r) {
        double sum = bias_.empty() ? 0.0 : static_cast<double>(bias_[static_cast<std::size_t>(r)]);
        for (index_t k = 0; k < w_.cols(); ++k) sum += static_cast<double>(w_.value(r, k)) * static_cast<double>(x(s, k));
        y(s, r) = static_cast<float>(sum);
      }
    }
  }

 private:
  template <class Arch>
  void run(Arch tag, TensorView<const float, 2> x, TensorView<float, 2> y) {
    const index_t n = x.dim(0), in = w_.cols(), out = w_.rows();
    const int threads = out * in * n < (index_t{1} << 16) ? 1 : minnow::detail::max_threads();
    if (n < kSmallBatch) {
      minnow::detail::parallel_ranges(out, threads, 16, [&](index_t begin, index_t end, int) {
        for (index_t s = 0; s < n; ++s) {
          for (index_t r = begin; r < end; ++r) y.data()[s * out + r] = detail::codebook_dot(tag, row(r), x.data() + s * in);
        }
      });
    } else {
      panels_.resize(static_cast<std::size_t>(std::max(threads, 1)));
      minnow::detail::parallel_ranges(out, threads, kBlockRows, [&](index_t begin, index_t end, int t) {
        auto& panel = panels_[static_cast<std::size_t>(t)];
        panel.resize(static_cast<std::size_t>(kBlockRows * in));
        for (index_t r0 = begin; r0 < end; r0 += kBlockRows) {
          const index_t count = std::min(kBlockRows, end - r0);
          for (index_t r = 0; r < count; ++r) detail::codebook_decode(tag, row(r0 + r), panel.data() + r * in);
          // y[:, r0 : r0 + count] = x · panelᵀ; panel row r is column r of the right operand.
          simd::gemm<float, Arch>(n, count, in, simd::row_major(x.data(), in), simd::Strided<float>{panel.data(), 1, in},
                                  y.data() + r0, out, false);
        }
      });
    }
  }

  [[nodiscard]] detail::CodebookRow row(index_t r) const noexcept {
    return {&w_.packed(r, 0), w_.bits, w_.cols(), &w_.table(w_.book(r), 0), w_.table.dim(1)};
  }

  CodebookWeights w_;
  std::vector<float> bias_;
  std::vector<std::vector<float>> panels_;  // one decode panel per thread
};

}  // namespace minnow::infer
