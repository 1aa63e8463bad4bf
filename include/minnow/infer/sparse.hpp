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
/// Only float: the kernels are AVX-512 where the compiler targets it (`__AVX512F__`) and scalar otherwise;
/// `multiply_reference` is the scalar oracle the tests compare every format against.

#include <minnow/detail/parallel.hpp>
#include <minnow/error.hpp>
#include <minnow/tensor.hpp>

#include <xsimd/xsimd.hpp>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
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

#if defined(__AVX512F__)
/// Horizontal sum of 16 lanes.
[[nodiscard]] inline float reduce(__m512 v) noexcept { return _mm512_reduce_add_ps(v); }
/// Lanes [0, n) set, n ≤ 16.
[[nodiscard]] inline __mmask16 first_lanes(index_t n) noexcept {
  return static_cast<__mmask16>((1u << static_cast<unsigned>(n)) - 1u);
}
#endif

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

  /// `y[r] = Σ_c W[r, c]·x[c]` for r in [begin, end).
  void gemv(const float* x, float* y, index_t begin, index_t end) const noexcept {
    for (index_t r = begin; r < end; ++r) {
      const index_t lo = row_ptr_[static_cast<std::size_t>(r)], hi = row_ptr_[static_cast<std::size_t>(r) + 1];
      const float* v = values_.data();
      const std::int32_t* c = columns_.data();
#if defined(__AVX512F__)
      // Two independent gathers per step keep more loads in flight than one accumulator chain allows.
      __m512 acc = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
      index_t k = lo;
      for (; k + 32 <= hi; k += 32) {
        const __m512i i0 = _mm512_loadu_si512(c + k), i1 = _mm512_loadu_si512(c + k + 16);
        const __m512 x0 = _mm512_i32gather_ps(i0, x, 4), x1 = _mm512_i32gather_ps(i1, x, 4);
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(v + k), x0, acc);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(v + k + 16), x1, acc1);
      }
      acc = _mm512_add_ps(acc, acc1);
      for (; k + 16 <= hi; k += 16) {
        const __m512i idx = _mm512_loadu_si512(c + k);
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(v + k), _mm512_i32gather_ps(idx, x, 4), acc);
      }
      if (k < hi) {
        const __mmask16 m = detail::first_lanes(hi - k);
        const __m512i idx = _mm512_maskz_loadu_epi32(m, c + k);
        const __m512 xs = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, x, 4);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, v + k), xs, acc);
      }
      y[r] = detail::reduce(acc);
#else
      float sum = 0.0f;
      for (index_t k = lo; k < hi; ++k) sum += v[k] * x[c[k]];
      y[r] = sum;
#endif
    }
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

  /// `y[r] = Σ_c W[r, c]·x[c]` for r in [begin, end).
  void gemv(const float* x, float* y, index_t begin, index_t end) const noexcept {
    const index_t full = cols_ / kWord, tail = cols_ % kWord;
    for (index_t r = begin; r < end; ++r) {
      const std::uint16_t* bits = bits_.data() + r * words_;
      const float* v = values_.data() + row_ptr_[static_cast<std::size_t>(r)];
#if defined(__AVX512F__)
      // Four words per step: their popcounts are independent, so the value pointer's loop-carried chain is
      // one add per 64 columns (advancing it word by word made the kernel latency-bound at high sparsity).
      __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
      index_t w = 0;
      for (; w + 4 <= full; w += 4) {
        const unsigned b0 = bits[w], b1 = bits[w + 1], b2 = bits[w + 2], b3 = bits[w + 3];
        const int p0 = std::popcount(b0), p01 = p0 + std::popcount(b1), p012 = p01 + std::popcount(b2);
        const __m512 v0 = _mm512_maskz_expand_ps(static_cast<__mmask16>(b0), _mm512_loadu_ps(v));
        const __m512 v1 = _mm512_maskz_expand_ps(static_cast<__mmask16>(b1), _mm512_loadu_ps(v + p0));
        const __m512 v2 = _mm512_maskz_expand_ps(static_cast<__mmask16>(b2), _mm512_loadu_ps(v + p01));
        const __m512 v3 = _mm512_maskz_expand_ps(static_cast<__mmask16>(b3), _mm512_loadu_ps(v + p012));
        v += p012 + std::popcount(b3);
        acc0 = _mm512_fmadd_ps(v0, _mm512_loadu_ps(x + w * kWord), acc0);
        acc1 = _mm512_fmadd_ps(v1, _mm512_loadu_ps(x + (w + 1) * kWord), acc1);
        acc0 = _mm512_fmadd_ps(v2, _mm512_loadu_ps(x + (w + 2) * kWord), acc0);
        acc1 = _mm512_fmadd_ps(v3, _mm512_loadu_ps(x + (w + 3) * kWord), acc1);
      }
      for (; w < full; ++w) {
        const __m512 v0 = _mm512_maskz_expand_ps(static_cast<__mmask16>(bits[w]), _mm512_loadu_ps(v));
        v += std::popcount(bits[w]);
        acc0 = _mm512_fmadd_ps(v0, _mm512_loadu_ps(x + w * kWord), acc0);
      }
      if (tail != 0) {
        // Bits past the last column are 0, so only x needs a masked load.
        const __m512 v0 = _mm512_maskz_expand_ps(static_cast<__mmask16>(bits[full]), _mm512_loadu_ps(v));
        acc1 = _mm512_fmadd_ps(v0, _mm512_maskz_loadu_ps(detail::first_lanes(tail), x + full * kWord), acc1);
      }
      y[r] = detail::reduce(_mm512_add_ps(acc0, acc1));
#else
      (void)full;
      (void)tail;
      float sum = 0.0f;
      for (index_t w = 0; w < words_; ++w) {
        for (unsigned m = bits[w]; m != 0; m &= m - 1) sum += *v++ * x[w * kWord + std::countr_zero(m)];
      }
      y[r] = sum;
#endif
    }
  }

  /// Writes the columns of row r's kept values, in order, to `out` (room for cols() + 16 entries: whole
  /// 16-lane stores); returns their number.
  index_t decode_row(index_t r, std::int32_t* out) const noexcept {
    const std::uint16_t* bits = bits_.data() + r * words_;
    index_t n = 0;
#if defined(__AVX512F__)
    // Compress the column numbers of each word's set bits in a register and store all 16 lanes: a
    // branch-free decode (a bit-scan loop mispredicts once per word).
    const __m512i lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (index_t w = 0; w < words_; ++w) {
      const __m512i columns = _mm512_add_epi32(lanes, _mm512_set1_epi32(static_cast<int>(w * kWord)));
      _mm512_storeu_si512(out + n, _mm512_maskz_compress_epi32(static_cast<__mmask16>(bits[w]), columns));
      n += std::popcount(bits[w]);
    }
#else
    for (index_t w = 0; w < words_; ++w) {
      for (unsigned m = bits[w]; m != 0; m &= m - 1) out[n++] = static_cast<std::int32_t>(w * kWord + std::countr_zero(m));
    }
#endif
    return n;
  }

  /// Calls `f(column, value)` for every stored value of row r, in column order (decoded into a
  /// per-thread buffer first).
  template <class F>
  void for_each_in_row(index_t r, F&& f) const {
    thread_local std::vector<std::int32_t> columns;
    if (columns.size() < static_cast<std::size_t>(words_ * kWord + kWord)) columns.resize(static_cast<std::size_t>(words_ * kWord + kWord));
    const index_t n = decode_row(r, columns.data());
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
/// hold a kept value (~71 % at 75 %, ~81 % at 50 %).
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

  /// `y[r] = Σ_c W[r, c]·x[c]` for r in [begin, end); whole slices are computed, only [begin, end) stored.
  void gemv(const float* x, float* y, index_t begin, index_t end) const noexcept {
    if (begin >= end) return;
    for (index_t s = begin / kSlice; s * kSlice < end; ++s) {
      const index_t r0 = std::max(begin, s * kSlice), r1 = std::min(end, s * kSlice + kSlice);
      const std::size_t first = static_cast<std::size_t>(slice_ptr_[static_cast<std::size_t>(s)]);
      const float* v = values_.data() + first * kSlice;
      const std::uint8_t* lane = lanes_.data() + first * kSlice;
      const std::uint8_t* count = counts_.data() + s * windows_;
#if defined(__AVX512F__)
      __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
      const __m512i bit5 = _mm512_set1_epi32(32), bit7 = _mm512_set1_epi32(0x80);
      // One step: x[column] for 16 rows from the window's registers; padding lanes leave acc unchanged
      // (a masked FMA, so an inf or NaN input does not reach rows that never read it, as in CSR).
      const auto step = [&](const __m512 (&xw)[4], const float* vs, const std::uint8_t* ls, __m512& acc) {
        const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ls)));
        const __mmask16 high = _mm512_test_epi32_mask(idx, bit5), kept = _mm512_testn_epi32_mask(idx, bit7);
        const __m512 xs = _mm512_mask_blend_ps(high, _mm512_permutex2var_ps(xw[0], idx, xw[1]),
                                               _mm512_permutex2var_ps(xw[2], idx, xw[3]));
        acc = _mm512_mask3_fmadd_ps(_mm512_loadu_ps(vs), xs, acc, kept);
      };
      for (index_t w = 0; w < windows_; ++w) {
        const float* xp = x + w * kWindow;
        __m512 xw[4];
        if (w + 1 < windows_ || cols_ % kWindow == 0) {
          for (int i = 0; i < 4; ++i) xw[i] = _mm512_loadu_ps(xp + i * 16);
        } else {  // the last, partial window must not read x past its end
          const index_t left = cols_ - w * kWindow;
          for (int i = 0; i < 4; ++i) {
            xw[i] = _mm512_maskz_loadu_ps(detail::first_lanes(std::clamp<index_t>(left - i * 16, 0, 16)), xp + i * 16);
          }
        }
        const index_t n = count[w];
        index_t j = 0;
        for (; j + 2 <= n; j += 2) {  // two accumulators: the FMA latency is not on the critical path
          step(xw, v, lane, acc0);
          step(xw, v + kSlice, lane + kSlice, acc1);
          v += 2 * kSlice;
          lane += 2 * kSlice;
        }
        if (j < n) {
          step(xw, v, lane, acc0);
          v += kSlice;
          lane += kSlice;
        }
      }
      alignas(64) float out[kSlice];
      _mm512_store_ps(out, _mm512_add_ps(acc0, acc1));
      std::copy(out + (r0 - s * kSlice), out + (r1 - s * kSlice), y + r0);
#else
      float out[kSlice] = {};
      for (index_t w = 0; w < windows_; ++w) {
        for (index_t j = 0; j < count[w]; ++j, v += kSlice, lane += kSlice) {
          for (index_t l = 0; l < kSlice; ++l) {
            if (lane[l] != kPadding) out[l] += v[l] * x[w * kWindow + lane[l]];
          }
        }
      }
      std::copy(out + (r0 - s * kSlice), out + (r1 - s * kSlice), y + r0);
#endif
    }
  }

  /// Calls `f(column, value)` for every stored value of row r, in column order (padding skipped).
  template <class F>
  void for_each_in_row(index_t r, F&& f) const {
    const index_t s = r / kSlice, l = r % kSlice;
    const std::size_t first = static_cast<std::size_t>(slice_ptr_[static_cast<std::size_t>(s)]);
    const float* v = values_.data() + first * kSlice + l;
    const std::uint8_t* lane = lanes_.data() + first * kSlice + l;
    const std::uint8_t* count = counts_.data() + s * windows_;
    for (index_t w = 0; w < windows_; ++w) {
      for (index_t j = 0; j < count[w]; ++j, v += kSlice, lane += kSlice) {
        if (*lane != kPadding) f(w * kWindow + *lane, *v);
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

using fbatch = xsimd::batch<float>;
inline constexpr index_t kLanes = static_cast<index_t>(fbatch::size);

/// One row r of a batch-N product on a transposed input: out[n] = Σ_c W[r, c]·xt[c·ldx + n] for the NV·lanes
/// columns n starting at xt. Each stored value is one broadcast and NV FMAs over a contiguous row of xt.
template <int NV, SparseFormat M>
void row_times_tile(const M& m, index_t r, const float* xt, index_t ldx, float* out) {
  fbatch acc[NV];
  for (int i = 0; i < NV; ++i) acc[i] = fbatch(0.0f);
  m.for_each_in_row(r, [&](index_t c, float v) {
    const fbatch bv(v);
    const float* p = xt + c * ldx;
    for (int i = 0; i < NV; ++i) acc[i] = xsimd::fma(bv, fbatch::load_unaligned(p + i * kLanes), acc[i]);
  });
  for (int i = 0; i < NV; ++i) acc[i].store_unaligned(out + i * kLanes);
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
/// Batch below kSmallBatch (4, as in choose_format): one gemv per sample, rows split across threads. Larger batches: x is transposed
/// once into a buffer whose rows are padded to whole vectors, then every row of W runs over tiles of up to
/// 4 vectors of samples (64 on AVX-512), rows split across threads. Buffers are kept and reused.
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

  /// `y[N × out] = x[N × in]·Wᵀ + b`. @throws shape_error naming the shapes when they do not fit.
  void forward(TensorView<const float, 2> x, TensorView<float, 2> y) {
    const index_t n = x.dim(0), in = w_.cols(), out = w_.rows();
    if (x.dim(1) != in || y.dim(0) != n || y.dim(1) != out) {
      throw shape_error(minnow::detail::concat("infer::SparseLinear(", in, " → ", out, "): input ", to_string(x.shape()),
                                               " and output ", to_string(y.shape()), " do not fit (expected [N, ", in,
                                               "] and [N, ", out, "])"));
    }
    if (n == 0) return;
    const index_t work = out * in / 4 * n;  // a rough count of stored values touched
    const int threads = detail::threads_for(work);
    if (n < kSmallBatch) {
      detail::for_row_ranges(out, threads, [&](index_t begin, index_t end) {
        for (index_t s = 0; s < n; ++s) w_.gemv(x.data() + s * in, y.data() + s * out, begin, end);
      });
    } else {
      transpose_input(x, threads);
      const index_t ldx = xt_.dim(1);
      constexpr index_t tile = 4 * detail::kLanes;
      detail::for_row_ranges(out, threads, [&](index_t begin, index_t end) {
        alignas(64) float acc[tile];
        for (index_t r = begin; r < end; ++r) {
          for (index_t n0 = 0; n0 < n; n0 += tile) {
            const index_t count = std::min(tile, n - n0);
            const float* xt = xt_.data() + n0;
            switch ((count + detail::kLanes - 1) / detail::kLanes) {
              case 1: detail::row_times_tile<1>(w_, r, xt, ldx, acc); break;
              case 2: detail::row_times_tile<2>(w_, r, xt, ldx, acc); break;
              case 3: detail::row_times_tile<3>(w_, r, xt, ldx, acc); break;
              default: detail::row_times_tile<4>(w_, r, xt, ldx, acc); break;
            }
            for (index_t s = 0; s < count; ++s) y.data()[(n0 + s) * out + r] = acc[s];
          }
        }
      });
    }
    if (!bias_.empty()) {
      for (index_t s = 0; s < n; ++s) {
        for (index_t r = 0; r < out; ++r) y.data()[s * out + r] += bias_[static_cast<std::size_t>(r)];
      }
    }
  }

 private:
  // xt[c, s] = x[s, c], rows padded with zeros to whole vectors so tile loads stay in the buffer.
  void transpose_input(TensorView<const float, 2> x, int threads) {
    const index_t n = x.dim(0), in = x.dim(1);
    const index_t ldx = (n + detail::kLanes - 1) / detail::kLanes * detail::kLanes;
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
