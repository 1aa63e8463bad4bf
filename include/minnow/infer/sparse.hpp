#pragma once
/// @file infer/sparse.hpp
/// @brief Compressed storage for unstructured pruning masks and sparse `y = x·Wᵀ + b` kernels.
///
/// Three formats of a `rows × cols` float matrix W, all built from W and a 0/1 mask of its shape (kept =
/// mask ≠ 0), each with a batch-1 kernel (`gemv`) and a batch-N kernel on a transposed input (`gemm`):
/// - CsrMatrix:    kept values, an int32 column per value, int32 row pointers. Batch 1 gathers x.
/// - BitmapMatrix: one bit per element (16-bit words, rows padded to whole words), kept values packed in
///                 row order, int32 row pointers. Batch 1 expands 16 values into place (vexpandps) and
///                 multiplies them with a contiguous load of x: no gather, no index per value.
/// - SlicedMatrix: sliced ELL, 16 rows per slice in the 16 lanes, 64-column windows, a uint8 column per lane
///                 (see the class). Batch 1 looks x up in registers with vpermt2ps instead of gathering.
///
/// Why these formats: at batch 1 a sparse kernel is bound by how it finds the x value of each kept
/// weight, not by bandwidth. Zen 5 runs a 16-lane vgatherdps at about the rate of 16 scalar loads, so
/// CSR's gather is slow whatever the index width, reduction or accumulator chains; SlicedMatrix removes the
/// gather (x read from four registers with two vpermt2ps per 16 kept values) and is the fastest batch-1
/// format at every sparsity from 50 %, where 19 % of its lanes are padding. At batch N it has no kernel of
/// its own (rows are decoded through for_each_in_row), so CSR / bitmap are the batch-N formats.
///
/// Choice: the bitmap is the storage format (the smallest at every sparsity, 1 bit per element + 4 bytes per
/// kept value against 8 for CSR, and the base of the int8 format in sparse_int8.hpp that keeps sparse + int8
/// under 0.06× of fp32); SlicedMatrix is the batch-1 compute format from 50 % up (choose_format). At batch N
/// CSR and bitmap run one broadcast FMA per kept value over the transposed input (the bitmap decodes a
/// row's columns with a branch-free compress first) and stay close to each other. There is no blocked (1×16)
/// format: with an unstructured mask at 90 %, 1 − 0.9¹⁶ = 81 % of the blocks hold a kept value, so it would
/// store and multiply most of the dense matrix, and it measured slower than dense.
/// Current figures: docs/benchmarks.md ("Compressed inference"); the one-thread measurements behind
/// these choices: docs/experiments.md.
///
/// Only float. The kernels (infer/sparse_kernels.hpp) have AVX-512, AVX2 and scalar paths, compiled
/// whatever `-march` the program uses and chosen at run time for the CPU (simd/arch.hpp); the figures above
/// are the AVX-512 paths'. `multiply_reference` is the scalar oracle the tests compare every format against.

#include <minnow/detail/parallel.hpp>
#include <minnow/error.hpp>
#include <minnow/infer/sparse_kernels.hpp>
#include <minnow/simd/arch.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

namespace minnow::infer {

namespace detail {

/// Throws shape_error naming both shapes when the mask does not match the weights, value_error for a
/// mask entry that is neither 0 nor 1.
inline void check_mask(TensorView<const float, 2> weights, TensorView<const float, 2> mask, const char* context) {
  if (weights.shape() != mask.shape()) {
    throw shape_error(minnow::detail::concat(context, ": mask ", to_string(mask.shape()), " does not match weights ",
                                             to_string(weights.shape())));
  }
  for (index_t i = 0; i < mask.size(); ++i) {
    const float m = mask.data()[i];
    if (m != 0.0f && m != 1.0f) {
      throw value_error(minnow::detail::concat(context, ": mask entries must be 0 or 1, entry ", i, " is ", m));
    }
  }
}

/// Threads worth using for `work` multiply-adds: a parallel region costs a few microseconds.
[[nodiscard]] inline int threads_for(index_t work) noexcept {
  return work < (index_t{1} << 16) ? 1 : minnow::detail::max_threads();
}

/// Runs `body(begin, end)` over row ranges, one per thread (contiguous, 16-row aligned boundaries).
template <class Body>
void for_row_ranges(index_t rows, int threads, Body&& body) {
  minnow::detail::parallel_ranges(rows, threads, 16, [&](index_t begin, index_t end, int) { body(begin, end); });
}

/// A kernel tag of simd::arch (not arch::automatic): the formats' overloads that take one run its kernels.
template <class Arch>
concept ArchTag = std::is_base_of_v<arch::scalar, Arch>;

}  // namespace detail

/// @brief Compressed sparse rows: values, int32 column indices, int32 row pointers.
class CsrMatrix {
 public:
  CsrMatrix() = default;
  /// Keeps W[r, c] where mask[r, c] = 1. @throws shape_error / value_error (see detail::check_mask).
  CsrMatrix(TensorView<const float, 2> weights, TensorView<const float, 2> mask) : rows_(weights.dim(0)), cols_(weights.dim(1)) {
    detail::check_mask(weights, mask, "infer::CsrMatrix");
    row_ptr_.assign(static_cast<std::size_t>(rows_) + 1, 0);
    for (index_t r = 0; r < rows_; ++r) {
      for (index_t c = 0; c < cols_; ++c) {
        if (mask(r, c) == 0.0f) continue;
        values_.push_back(weights(r, c));
        columns_.push_back(static_cast<std::int32_t>(c));
      }
      row_ptr_[static_cast<std::size_t>(r) + 1] = static_cast<std::int32_t>(values_.size());
    }
  }

  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  [[nodiscard]] index_t nnz() const noexcept { return static_cast<index_t>(values_.size()); }
  /// Bytes of the three buffers.
  [[nodiscard]] std::size_t bytes() const noexcept {
    return values_.size() * sizeof(float) + columns_.size() * sizeof(std::int32_t) + row_ptr_.size() * sizeof(std::int32_t);
  }

  /// `y[r] = Σ_c W[r, c]·x[c]` for r in [begin, end), with the kernels of `Arch` (by default the CPU's
  /// widest). @throws value_error when `Arch` is given and this CPU does not run it.
  template <class Arch = arch::automatic>
  void gemv(const float* x, float* y, index_t begin, index_t end) const {
    simd::with_arch<Arch>("infer::CsrMatrix::gemv", [&](auto tag) { gemv(tag, x, y, begin, end); });
  }
  /// gemv with the kernels of a resolved tag (the CPU must run them).
  template <detail::ArchTag Arch>
  void gemv(Arch tag, const float* x, float* y, index_t begin, index_t end) const noexcept {
    detail::csr_gemv(tag, {row_ptr_.data(), columns_.data(), values_.data()}, x, y, begin, end);
  }

  /// Calls `f(column, value)` for every stored value of row r, in column order.
  template <class F>
  void for_each_in_row(index_t r, F&& f) const {
    const index_t lo = row_ptr_[static_cast<std::size_t>(r)], hi = row_ptr_[static_cast<std::size_t>(r) + 1];
    for (index_t k = lo; k < hi; ++k) f(static_cast<index_t>(columns_[static_cast<std::size_t>(k)]), values_[static_cast<std::size_t>(k)]);
  }

 private:
  index_t rows_ = 0, cols_ = 0;
  std::vector<float> values_;
  std::vector<std::int32_t> columns_;
  std::vector<std::int32_t> row_ptr_;
};

/// @brief A bitmap of the kept entries (16-bit words, each row padded to whole words) and the kept values
/// packed in row order, with int32 row pointers into the values so rows can be split across threads.
class BitmapMatrix {
 public:
  static constexpr index_t kWord = 16;

  BitmapMatrix() = default;
  /// Keeps W[r, c] where mask[r, c] = 1. @throws shape_error / value_error (see detail::check_mask).
  BitmapMatrix(TensorView<const float, 2> weights, TensorView<const float, 2> mask)
      : rows_(weights.dim(0)), cols_(weights.dim(1)), words_(((weights.dim(1) + kWord - 1) / kWord)) {
    detail::check_mask(weights, mask, "infer::BitmapMatrix");
    bits_.assign(static_cast<std::size_t>(rows_ * words_), 0);
    row_ptr_.assign(static_cast<std::size_t>(rows_) + 1, 0);
    for (index_t r = 0; r < rows_; ++r) {
      for (index_t c = 0; c < cols_; ++c) {
        if (mask(r, c) == 0.0f) continue;
        bits_[static_cast<std::size_t>(r * words_ + c / kWord)] |= static_cast<std::uint16_t>(1u << (c % kWord));
        values_.push_back(weights(r, c));
      }
      row_ptr_[static_cast<std::size_t>(r) + 1] = static_cast<std::int32_t>(values_.size());
    }
    // The batch-1 kernel loads 16 values and expands the ones a word selects: 16 floats of slack keep
    // that load inside the buffer at the end of the last row.
    values_.resize(values_.size() + kWord, 0.0f);
  }

  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  [[nodiscard]] index_t nnz() const noexcept { return row_ptr_.empty() ? 0 : row_ptr_.back(); }
  /// Bytes of the three buffers (the 64 bytes of load slack included).
  [[nodiscard]] std::size_t bytes() const noexcept {
    return values_.size() * sizeof(float) + bits_.size() * sizeof(std::uint16_t) + row_ptr_.size() * sizeof(std::int32_t);
  }

  /// `y[r] = Σ_c W[r, c]·x[c]` for r in [begin, end), with the kernels of `Arch` (by default the CPU's
  /// widest). @throws value_error when `Arch` is given and this CPU does not run it.
  template <class Arch = arch::automatic>
  void gemv(const float* x, float* y, index_t begin, index_t end) const {
    simd::with_arch<Arch>("infer::BitmapMatrix::gemv", [&](auto tag) { gemv(tag, x, y, begin, end); });
  }
  /// gemv with the kernels of a resolved tag (the CPU must run them).
  template <detail::ArchTag Arch>
  void gemv(Arch tag, const float* x, float* y, index_t begin, index_t end) const noexcept {
    detail::bitmap_gemv(tag, {bits_.data(), words_, cols_, row_ptr_.data(), values_.data()}, x, y, begin, end);
  }

  /// Writes the columns of row r's kept values, in order, to `out` (room for cols() + 16 entries: whole
  /// vector stores); returns their number. The same on every path.
  /// @throws value_error when `Arch` is given and this CPU does not run it.
  template <class Arch = arch::automatic>
  index_t decode_row(index_t r, std::int32_t* out) const {
    return simd::with_arch<Arch>("infer::BitmapMatrix::decode_row", [&](auto tag) { return decode_row(tag, r, out); });
  }
  /// decode_row with the kernels of a resolved tag (the CPU must run them).
  template <detail::ArchTag Arch>
  index_t decode_row(Arch tag, index_t r, std::int32_t* out) const noexcept {
    return detail::bitmap_decode(tag, bits_.data() + r * words_, words_, out);
  }

  /// Calls `f(column, value)` for every stored value of row r, in column order (decoded into a
  /// per-thread buffer first).
  template <class F>
  void for_each_in_row(index_t r, F&& f) const {
    simd::dispatch([&](auto tag) { for_each_in_row(tag, r, f); });
  }
  /// for_each_in_row, decoding with the kernels of a resolved tag (the CPU must run them).
  template <detail::ArchTag Arch, class F>
  void for_each_in_row(Arch tag, index_t r, F&& f) const {
    thread_local std::vector<std::int32_t> columns;
    if (columns.size() < static_cast<std::size_t>(words_ * kWord + kWord)) columns.resize(static_cast<std::size_t>(words_ * kWord + kWord));
    const index_t n = decode_row(tag, r, columns.data());
    const float* v = values_.data() + row_ptr_[static_cast<std::size_t>(r)];
    for (index_t k = 0; k < n; ++k) f(static_cast<index_t>(columns[static_cast<std::size_t>(k)]), v[k]);
  }

 private:
  index_t rows_ = 0, cols_ = 0, words_ = 0;
  std::vector<float> values_;
  std::vector<std::uint16_t> bits_;
  std::vector<std::int32_t> row_ptr_;
};

/// @brief Sliced ELL in 64-column windows, lanes = rows: the batch-1 format that avoids gathers.
///
/// Rows are cut into slices of 16 (one AVX-512 lane per row) and columns into windows of 64. Within one
/// (slice, window) block, step j holds for every lane the j-th kept value of that lane's row in the window
/// and its column inside the window (uint8, 0xFF for a lane whose row has fewer kept values there); the
/// block has as many steps as its fullest row. The batch-1 kernel loads the window's 64 inputs into four
/// registers once per slice, and each step is two `vpermt2ps` lookups, one blend and one FMA for 16 rows:
/// no gather (Zen 5 runs a 16-lane gather at about the rate of 16 scalar loads), no horizontal reduction
/// (the accumulator *is* 16 outputs), no per-row tail. The price is padding: an unstructured mask at 90 %
/// keeps on average 6.4 values per row per window, and the fullest of 16 rows ~11, so ~58 % of the lanes
/// hold a kept value (~71 % at 75 %, ~81 % at 50 %). The AVX2 path, with no two-register permute, reads x
/// for each 8-row half of a step with one masked gather.
class SlicedMatrix {
 public:
  static constexpr index_t kSlice = 16;    ///< rows per slice (lanes of a 512-bit float vector)
  static constexpr index_t kWindow = 64;   ///< columns per window (four 512-bit vectors of x)
  static constexpr std::uint8_t kPadding = 0xFF;

  SlicedMatrix() = default;
  /// Keeps W[r, c] where mask[r, c] = 1. @throws shape_error / value_error (see detail::check_mask).
  SlicedMatrix(TensorView<const float, 2> weights, TensorView<const float, 2> mask)
      : rows_(weights.dim(0)), cols_(weights.dim(1)), slices_((rows_ + kSlice - 1) / kSlice),
        windows_((cols_ + kWindow - 1) / kWindow) {
    detail::check_mask(weights, mask, "infer::SlicedMatrix");
    counts_.assign(static_cast<std::size_t>(slices_ * windows_), 0);
    slice_ptr_.assign(static_cast<std::size_t>(slices_) + 1, 0);
    index_t steps = 0;
    for (index_t s = 0; s < slices_; ++s) {
      const index_t r0 = s * kSlice, r1 = std::min(rows_, r0 + kSlice);
      for (index_t w = 0; w < windows_; ++w) {
        const index_t c0 = w * kWindow, c1 = std::min(cols_, c0 + kWindow);
        index_t most = 0;
        for (index_t r = r0; r < r1; ++r) {
          index_t kept = 0;
          for (index_t c = c0; c < c1; ++c) kept += mask(r, c) != 0.0f ? 1 : 0;
          most = std::max(most, kept);
        }
        counts_[static_cast<std::size_t>(s * windows_ + w)] = static_cast<std::uint8_t>(most);
        values_.resize(static_cast<std::size_t>((steps + most) * kSlice), 0.0f);
        lanes_.resize(static_cast<std::size_t>((steps + most) * kSlice), kPadding);
        for (index_t r = r0; r < r1; ++r) {
          index_t j = steps;
          for (index_t c = c0; c < c1; ++c) {
            if (mask(r, c) == 0.0f) continue;
            const auto at = static_cast<std::size_t>(j++ * kSlice + (r - r0));
            values_[at] = weights(r, c);
            lanes_[at] = static_cast<std::uint8_t>(c - c0);
          }
        }
        steps += most;
      }
      slice_ptr_[static_cast<std::size_t>(s) + 1] = static_cast<std::int32_t>(steps);
    }
  }

  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  /// Stored lanes, padding included (16 per step).
  [[nodiscard]] index_t stored() const noexcept { return static_cast<index_t>(values_.size()); }
  /// Bytes of the four buffers.
  [[nodiscard]] std::size_t bytes() const noexcept {
    return values_.size() * sizeof(float) + lanes_.size() + counts_.size() + slice_ptr_.size() * sizeof(std::int32_t);
  }

  /// `y[r] = Σ_c W[r, c]·x[c]` for r in [begin, end), with the kernels of `Arch` (by default the CPU's
  /// widest); whole slices are computed, only [begin, end) stored. Every path gives the same bits.
  /// @throws value_error when `Arch` is given and this CPU does not run it.
  template <class Arch = arch::automatic>
  void gemv(const float* x, float* y, index_t begin, index_t end) const {
    simd::with_arch<Arch>("infer::SlicedMatrix::gemv", [&](auto tag) { gemv(tag, x, y, begin, end); });
  }
  /// gemv with the kernels of a resolved tag (the CPU must run them).
  template <detail::ArchTag Arch>
  void gemv(Arch tag, const float* x, float* y, index_t begin, index_t end) const noexcept {
    detail::sliced_gemv(tag, {values_.data(), lanes_.data(), counts_.data(), slice_ptr_.data(), cols_, windows_}, x, y,
                        begin, end);
  }

  /// Calls `f(column, value)` for every stored value of row r, in column order (padding skipped).
  template <class F>
  void for_each_in_row(index_t r, F&& f) const {
    const index_t s = r / kSlice, l = r % kSlice;
    // Indices, not pointers: with nothing stored the buffers are empty and their data() may be null.
    auto at = static_cast<std::size_t>(slice_ptr_[static_cast<std::size_t>(s)] * kSlice + l);
    const std::uint8_t* count = counts_.data() + s * windows_;
    for (index_t w = 0; w < windows_; ++w) {
      for (index_t j = 0; j < count[w]; ++j, at += kSlice) {
        const std::uint8_t lane = lanes_.data()[at];
        if (lane != kPadding) f(w * kWindow + lane, values_.data()[at]);
      }
    }
  }

 private:
  index_t rows_ = 0, cols_ = 0, slices_ = 0, windows_ = 0;
  std::vector<float> values_;        // [step][lane]
  std::vector<std::uint8_t> lanes_;  // [step][lane]: column inside the window, or kPadding
  std::vector<std::uint8_t> counts_; // [slice][window]: steps of the block
  std::vector<std::int32_t> slice_ptr_;
};

/// @brief What every format above provides to SparseLinear.
template <class M>
concept SparseFormat = requires(const M& m, const float* x, float* y, index_t i) {
  { m.rows() } -> std::convertible_to<index_t>;      ///< output features
  { m.cols() } -> std::convertible_to<index_t>;      ///< input features
  { m.bytes() } -> std::convertible_to<std::size_t>; ///< bytes of the real buffers
  m.gemv(x, y, i, i);                                ///< y[r] = W[r, :]·x for rows [begin, end)
  m.for_each_in_row(i, [](index_t, float) {});       ///< visits (column, value) of one row
};

namespace detail {

/// A row's kept values and, per value, where its run of inputs starts (see row_times_runs); the buffers
/// only grow.
struct RowRuns {
  std::vector<float> values;
  std::vector<index_t> offsets;
  index_t count = 0;
};

/// Fills `runs` with row r's kept values, in for_each_in_row's order, and `offset(column)` for each;
/// decodes with the kernels of `tag` where the format takes one.
template <class Arch, SparseFormat M, class Offset>
void row_runs(Arch tag, const M& m, index_t r, Offset&& offset, RowRuns& runs) {
  // A row keeps at most cols() values; a format that visits more only costs a reallocation.
  if (runs.values.size() < static_cast<std::size_t>(m.cols())) {
    runs.values.resize(static_cast<std::size_t>(m.cols()));
    runs.offsets.resize(static_cast<std::size_t>(m.cols()));
  }
  index_t n = 0;
  float* values = runs.values.data();
  index_t* offsets = runs.offsets.data();
  const auto add = [&](index_t c, float v) {
    if (n == static_cast<index_t>(runs.values.size())) {
      runs.values.resize(2 * runs.values.size() + 1);
      runs.offsets.resize(runs.values.size());
      values = runs.values.data();
      offsets = runs.offsets.data();
    }
    values[n] = v;
    offsets[n] = offset(c);
    ++n;
  };
  if constexpr (requires { m.for_each_in_row(tag, r, add); }) {
    m.for_each_in_row(tag, r, add);
  } else {
    m.for_each_in_row(r, add);
  }
  runs.count = n;
}

/// m.gemv with the kernels of `tag` where the format takes one, its own choice otherwise.
template <class Arch, SparseFormat M>
void gemv_with(Arch tag, const M& m, const float* x, float* y, index_t begin, index_t end) {
  if constexpr (requires { m.gemv(tag, x, y, begin, end); }) {
    m.gemv(tag, x, y, begin, end);
  } else {
    m.gemv(x, y, begin, end);
  }
}

}  // namespace detail

/// Scalar oracle: `y[n, r] = b[r] + Σ_c W[r, c]·x[n, c]` over the stored values, summed in double.
template <SparseFormat M>
void multiply_reference(const M& m, TensorView<const float, 2> x, TensorView<const float, 1> bias, TensorView<float, 2> y) {
  for (index_t n = 0; n < x.dim(0); ++n) {
    for (index_t r = 0; r < m.rows(); ++r) {
      double sum = bias.empty() ? 0.0 : static_cast<double>(bias(r));
      m.for_each_in_row(r, [&](index_t c, float v) { sum += static_cast<double>(v) * static_cast<double>(x(n, c)); });
      y(n, r) = static_cast<float>(sum);
    }
  }
}

/// @brief Sparse `y = x·Wᵀ + b` (PyTorch's Linear) with W in a SparseFormat; float only.
///
/// Batch below kSmallBatch (4, as in choose_format): one gemv per sample, rows split across threads. Larger
/// batches: x is transposed once into a buffer whose rows are padded to whole vectors, then every row of W
/// is decoded once into its kept values and multiplied with all samples (detail::row_times_runs: one
/// broadcast FMA per kept value per vector of samples, every path giving the same bits), rows split across
/// threads. Each output is computed the same way whatever the thread count. Buffers are kept and reused.
template <SparseFormat M>
class SparseLinear {
 public:
  static constexpr index_t kSmallBatch = 4;

  /// @throws shape_error when the bias does not have one entry per row of W (an empty bias means none).
  SparseLinear(M weights, TensorView<const float, 1> bias) : w_(std::move(weights)) {
    if (!bias.empty() && bias.size() != w_.rows()) {
      throw shape_error(minnow::detail::concat("infer::SparseLinear: bias of ", bias.size(), " entries for ", w_.rows(),
                                               " output features"));
    }
    bias_.assign(bias.data(), bias.data() + bias.size());
  }

  [[nodiscard]] index_t in_features() const noexcept { return w_.cols(); }
  [[nodiscard]] index_t out_features() const noexcept { return w_.rows(); }
  [[nodiscard]] const M& weights() const noexcept { return w_; }
  /// Bytes of the weights' buffers and the bias.
  [[nodiscard]] std::size_t bytes() const noexcept { return w_.bytes() + bias_.size() * sizeof(float); }

  /// `y[N × out] = x[N × in]·Wᵀ + b` with the kernels of `Arch` (by default the CPU's widest).
  /// @throws shape_error naming the shapes when they do not fit; value_error when `Arch` is given and this
  /// CPU does not run it.
  template <class Arch = arch::automatic>
  void forward(TensorView<const float, 2> x, TensorView<float, 2> y) {
    const index_t n = x.dim(0), in = w_.cols(), out = w_.rows();
    if (x.dim(1) != in || y.dim(0) != n || y.dim(1) != out) {
      throw shape_error(minnow::detail::concat("infer::SparseLinear(", in, " → ", out, "): input ", to_string(x.shape()),
                                               " and output ", to_string(y.shape()), " do not fit (expected [N, ", in,
                                               "] and [N, ", out, "])"));
    }
    if (n == 0) return;
    simd::with_arch<Arch>("infer::SparseLinear", [&](auto tag) { run(tag, x, y); });
    if (!bias_.empty()) {
      for (index_t s = 0; s < n; ++s) {
        for (index_t r = 0; r < out; ++r) y.data()[s * out + r] += bias_[static_cast<std::size_t>(r)];
      }
    }
  }

 private:
  template <class Arch>
  void run(Arch tag, TensorView<const float, 2> x, TensorView<float, 2> y) {
    const index_t n = x.dim(0), in = w_.cols(), out = w_.rows();
    const index_t work = out * in / 4 * n;  // a rough count of stored values touched
    const int threads = detail::threads_for(work);
    if (n < kSmallBatch) {
      detail::for_row_ranges(out, threads, [&](index_t begin, index_t end) {
        for (index_t s = 0; s < n; ++s) detail::gemv_with(tag, w_, x.data() + s * in, y.data() + s * out, begin, end);
      });
      return;
    }
    transpose_input(x, threads);
    const index_t ldx = xt_.dim(1);
    detail::for_row_ranges(out, threads, [&](index_t begin, index_t end) {
      thread_local detail::RowRuns runs;
      thread_local std::vector<float> acc;
      acc.resize(static_cast<std::size_t>(ldx));
      for (index_t r = begin; r < end; ++r) {
        detail::row_runs(tag, w_, r, [ldx](index_t c) { return c * ldx; }, runs);
        detail::row_times_runs(tag, runs.values.data(), runs.offsets.data(), runs.count, xt_.data(), n, acc.data());
        for (index_t s = 0; s < n; ++s) y.data()[s * out + r] = acc[static_cast<std::size_t>(s)];
      }
    });
  }

  // xt[c, s] = x[s, c], rows padded with zeros to whole vectors (detail::kRunPad) so the run kernel's loads
  // stay in the buffer.
  void transpose_input(TensorView<const float, 2> x, int threads) {
    const index_t n = x.dim(0), in = x.dim(1);
    const index_t ldx = (n + detail::kRunPad - 1) / detail::kRunPad * detail::kRunPad;
    xt_.resize({in, ldx});
    constexpr index_t block = 32;  // 32×32 tiles: both sides touch whole cache lines
    detail::for_row_ranges(in, threads, [&](index_t begin, index_t end) {
      for (index_t c0 = begin; c0 < end; c0 += block) {
        const index_t c1 = std::min(end, c0 + block);
        for (index_t s0 = 0; s0 < n; s0 += block) {
          const index_t s1 = std::min(n, s0 + block);
          for (index_t c = c0; c < c1; ++c) {
            for (index_t s = s0; s < s1; ++s) xt_.data()[c * ldx + s] = x.data()[s * in + c];
          }
        }
        for (index_t c = c0; c < c1; ++c) std::fill(xt_.data() + c * ldx + n, xt_.data() + (c + 1) * ldx, 0.0f);
      }
    });
  }

  M w_;
  std::vector<float> bias_;
  Tensor<float, 2> xt_;
};

/// @brief How to run a Linear layer's weights.
enum class WeightFormat { dense, bitmap, csr, sliced };

/// @brief The crossover rule, from `bench_infer_sparse` on the teacher's fc1 (docs/experiments.md):
/// sparsity (fraction of pruned weights) at which a sparse format starts to beat the dense Linear forward.
/// Between the measured points (50 / 75 / 90 %) the crossovers are rounded towards dense: sparse must win
/// clearly, a tie keeps the simpler dense layer.
struct SparseCrossover {
  double batch1_sparse = 0.5;   ///< batch 1: sliced beats dense from 50 %
  double batched_sparse = 0.6;  ///< batch ≥ 4: bitmap ties dense at 50 %, wins clearly at 75 %
  double batched_csr = 0.9;     ///< batch ≥ 4: CSR trails bitmap at 75 %, beats it at 90 %
};

/// The format a layer with this sparsity should use at this batch size (see SparseCrossover): SlicedMatrix
/// at batch < 4 (SparseLinear's batch-1 path), bitmap or CSR above.
[[nodiscard]] inline WeightFormat choose_format(double sparsity, index_t batch, SparseCrossover rule = {}) noexcept {
  const bool small = batch < 4;  // SparseLinear's batch-1 path
  if (sparsity < (small ? rule.batch1_sparse : rule.batched_sparse)) return WeightFormat::dense;
  if (small) return WeightFormat::sliced;
  return sparsity >= rule.batched_csr ? WeightFormat::csr : WeightFormat::bitmap;
}

}  // namespace minnow::infer
