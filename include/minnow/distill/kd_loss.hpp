#pragma once
/// @file distill/kd_loss.hpp
/// @brief The knowledge-distillation loss (Hinton et al. 2015) with its gradient, the combined
/// KD + cross-entropy loss, and SoftTargetLoss, a training-loop loss over cached teacher outputs.
///
/// With p = softmax(t/T) (teacher, no gradient) and q = softmax(s/T) (student), for a batch of B rows:
///
///     L_KD   = (T² / B) · Σ_rows Σ_classes p · (log p − log q),   0 · log 0 = 0
///     ∂L/∂s  = (T / B) · (q − p)
///
/// which is PyTorch's `F.kl_div(F.log_softmax(s/T, 1), F.softmax(t/T, 1), reduction='batchmean') * T*T`
/// (`'batchmean'` divides by B; `'mean'` would divide by B·C). The T² keeps the gradient's scale
/// independent of T, so the KD and cross-entropy terms can be mixed with one weight α.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <minnow/distill/softmax.hpp>
#include <minnow/error.hpp>
#include <minnow/tensor.hpp>
#include <span>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace minnow::distill {

/// Teacher probability rows must sum to 1 within this (absolute) tolerance; float rows from a
/// softmax or an ensemble average are off by ~1e-7, a hand-made or truncated table by more.
inline constexpr double probability_sum_tolerance = 1e-3;

/// @brief Teacher outputs given as logits [B, C]: the loss uses p = softmax(t / T).
/// @tparam T scalar type.
///
/// A distinct type from TeacherProbabilities, so logits can never be read as probabilities or the
/// reverse: `kd_loss(s, TeacherLogits(t), 4.0, ds)`.
template <class T>
class TeacherLogits {
 public:
  explicit TeacherLogits(TensorView<const T, 2> logits) noexcept : values_(logits) {}
  [[nodiscard]] TensorView<const T, 2> view() const noexcept { return values_; }

 private:
  TensorView<const T, 2> values_;
};

/// @brief Teacher outputs given as probabilities [B, C] (e.g. ensemble soft targets already at
/// temperature T): used as p directly. Entries must be ≥ 0 and rows must sum to 1 within
/// probability_sum_tolerance; exact zeros are allowed (0 · log 0 = 0).
/// @tparam T scalar type.
template <class T>
class TeacherProbabilities {
 public:
  explicit TeacherProbabilities(TensorView<const T, 2> probabilities) noexcept : values_(probabilities) {}
  [[nodiscard]] TensorView<const T, 2> view() const noexcept { return values_; }

 private:
  TensorView<const T, 2> values_;
};

// Deduce the scalar from a tensor or a view: `TeacherLogits(tensor)`.
template <class T>
TeacherLogits(const Tensor<T, 2>&) -> TeacherLogits<T>;
template <class T>
TeacherLogits(TensorView<T, 2>) -> TeacherLogits<std::remove_const_t<T>>;
template <class T>
TeacherProbabilities(const Tensor<T, 2>&) -> TeacherProbabilities<T>;
template <class T>
TeacherProbabilities(TensorView<T, 2>) -> TeacherProbabilities<std::remove_const_t<T>>;

/// @brief Reusable buffers of the KD kernels. Pass the same workspace to every call: once it has grown
/// to the largest batch, a loss evaluation allocates nothing. Use one workspace per calling thread
/// (the kernels' own OpenMP threads each get their slice of it).
/// @tparam T scalar type.
template <class T>
class KdWorkspace {
 public:
  KdWorkspace() = default;
  // Copies start empty: buffers are scratch, never state (this keeps SoftTargetLoss copyable).
  KdWorkspace(const KdWorkspace&) noexcept {}
  KdWorkspace& operator=(const KdWorkspace&) noexcept { return *this; }
  KdWorkspace(KdWorkspace&&) noexcept = default;
  KdWorkspace& operator=(KdWorkspace&&) noexcept = default;
  ~KdWorkspace() = default;

  /// Makes room for `threads` threads on row blocks of `block_rows × cols`, and per-row results of `rows`
  /// rows. Buffers only grow, so a smaller batch after a larger one allocates nothing.
  void reserve(int threads, index_t block_rows, index_t cols, index_t rows) {
    block_ = detail::padded<T>(block_rows * cols);
    small_ = detail::padded<T>(block_rows);
    if (per_thread_.size() < static_cast<std::size_t>(threads)) per_thread_.resize(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) per_thread_[static_cast<std::size_t>(t)].resize({3 * block_ + small_});
    rows_.resize({2 * rows});
  }
  /// Block buffer `which` (0, 1 or 2) of `thread`, 64-byte aligned.
  [[nodiscard]] T* block(int thread, int which) noexcept {
    return per_thread_[static_cast<std::size_t>(thread)].data() + which * block_;
  }
  /// The per-row buffer of `thread`: one element per row of a block, 64-byte aligned.
  [[nodiscard]] T* small(int thread) noexcept {
    return per_thread_[static_cast<std::size_t>(thread)].data() + 3 * block_;
  }
  /// Per-row KL divergences (first `rows`) and cross-entropies (next `rows`).
  [[nodiscard]] double* row_results() noexcept { return rows_.data(); }

 private:
  std::vector<Tensor<T, 1>> per_thread_;
  Tensor<double, 1> rows_;
  index_t block_ = 0, small_ = 0;
};

namespace detail {

enum class TeacherKind { logits, probabilities };

/// True when a row of probabilities is acceptable: every entry ≥ 0 and the sum within the tolerance.
/// A NaN entry makes the sum NaN, which fails the test.
template <class T>
[[nodiscard]] bool probability_row_ok(const T* row, index_t cols) noexcept {
  const ConstRowMap<T> r(row, cols);
  return r.minCoeff() >= T(0) && std::abs(row_sum_wide(row, cols) - 1.0) <= probability_sum_tolerance;
}

}  // namespace detail

/// @brief Throws value_error unless alpha ∈ [0, 1] (NaN fails): the weight of the distillation term
/// against cross-entropy in combined_loss() and SoftTargetLoss.
inline void check_alpha(const char* what, double alpha) {
  if (!(alpha >= 0.0 && alpha <= 1.0)) {
    throw value_error(minnow::detail::concat(what, ": alpha must be in [0, 1], got alpha = ", alpha));
  }
}

/// @brief Throws value_error unless every row of `p` [N, C] is a distribution: every entry ≥ 0 and every
/// row summing to 1 within probability_sum_tolerance. The message names the first bad row (and entry).
/// The check is a vectorized pass over row blocks (threaded like the kernels); only a failing row is
/// scanned again, to name the offending entry.
template <class T>
void check_probability_rows(const char* what, TensorView<const T, 2> p) {
  const index_t rows = p.dim(0), cols = p.dim(1);
  std::atomic<index_t> first_bad{rows};
  detail::for_each_row_block(rows, cols, detail::threads_for(p.size()), [&](index_t begin, index_t end, int) {
    for (index_t i = begin; i < end && i < first_bad.load(std::memory_order_relaxed); ++i) {
      if (!detail::probability_row_ok(p.data() + i * cols, cols)) {
        index_t seen = first_bad.load(std::memory_order_relaxed);
        while (i < seen && !first_bad.compare_exchange_weak(seen, i)) {
        }
        return;
      }
    }
  });
  const index_t i = first_bad.load();
  if (i == rows) return;
  const T* row = p.data() + i * cols;
  for (index_t j = 0; j < cols; ++j) {
    if (!(row[j] >= T(0))) {  // also catches NaN
      throw value_error(minnow::detail::concat(what, ": teacher probability at row ", i, ", class ", j, " is ", row[j],
                                               ", expected a value >= 0"));
    }
  }
  throw value_error(minnow::detail::concat(what, ": teacher probabilities of row ", i, " sum to ",
                                           detail::row_sum_wide(row, cols), ", expected 1 within ",
                                           probability_sum_tolerance));
}

/// @brief Throws shape_error unless there is one label per row of `logits` [N, C], and value_error unless
/// each label is a class index in [0, C).
inline void check_class_labels(const char* what, const Shape<2>& logits, TensorView<const std::int32_t, 1> labels) {
  if (labels.size() != logits[0]) {
    throw shape_error(
        minnow::detail::concat(what, ": ", labels.size(), " labels for student logits ", to_string(logits)));
  }
  for (index_t i = 0; i < labels.size(); ++i) {
    if (labels(i) < 0 || labels(i) >= logits[1]) {
      throw value_error(
          minnow::detail::concat(what, ": label ", labels(i), " at position ", i, " is outside [0, ", logits[1], ")"));
    }
  }
}

namespace detail {

/// Part one of a row log without a scalar double log per row: stores xf = x rounded to T in
/// `scratch[i]` and returns log(x / xf) ≈ (x − xf)/x, the double-precision remainder (below 6e-8 for
/// float). finish_logs() then adds log(xf) for a whole block in one vectorized log.
template <class T>
[[nodiscard]] double defer_log(double x, T* scratch, index_t i) noexcept {
  const T rounded = static_cast<T>(x);
  scratch[i] = rounded;
  return (x - static_cast<double>(rounded)) / x;
}

/// Part two: `out[i] += log(scratch[i])` for every row of the block. The float log is within ~1 ulp of
/// log(xf), so this suits values whose log is small (Zs/Zt near 1 at high T) or not amplified by T².
template <class T>
void finish_logs(T* scratch, index_t n, double* out) noexcept {
  AlignedMap<T> logs(scratch, n);
  logs = array_log(logs);
  for (index_t i = 0; i < n; ++i) out[i] += static_cast<double>(scratch[i]);
}

/// KD on a block of n rows, teacher given as logits. Writes `grad_scale · (q − p)` into g and the
/// row KL divergences into kl. Three flat passes over the block do all exponentials at once:
///   a = (s − max s)/T, b = (t − max t)/T  →  ea = exp(a), eb = exp(b), eb·(b − a)
///   KL = Σ eb(b − a)/Zt + log(Zs/Zt),  q − p = (ea − eb·Zs/Zt)/Zs   with Zs = Σ ea, Zt = Σ eb,
/// the row sums and the KL taken in double. Student equal to teacher gives a == b bit for bit in buffers
/// aligned alike, so Zs == Zt and every term is exactly 0: so are the loss and the gradient (Zs/Zt is
/// exactly 1, even when the compiler fuses the multiply into the subtraction).
/// Shifted, scaled logits are raised to this floor: with a tiny temperature (s − max s)/T overflows to −inf,
/// and b − a would then be −inf − (−inf) = NaN. From the floor every difference b − a stays finite, and
/// e^floor is 0, so the loss and gradient are what the exact values give (0 · anything = 0).
template <class T>
inline constexpr T scaled_logit_floor = -std::numeric_limits<T>::max() / 2;

template <class T>
void kd_block_logits(const T* s, const T* t, T* g, index_t n, index_t cols, T inv_t, double grad_scale,
                     KdWorkspace<T>& ws, int thread, double* kl) noexcept {
  T* wa = ws.block(thread, 0);
  T* wb = ws.block(thread, 1);
  T* wd = ws.block(thread, 2);
  for (index_t i = 0; i < n; ++i) {
    const T* si = s + i * cols;
    const T* ti = t + i * cols;
    const T ms = row_max(si, cols), mt = row_max(ti, cols);
    RowMap<T>(wa + i * cols, cols) = ((ConstRowMap<T>(si, cols) - ms) * inv_t).max(scaled_logit_floor<T>);
    RowMap<T>(wb + i * cols, cols) = ((ConstRowMap<T>(ti, cols) - mt) * inv_t).max(scaled_logit_floor<T>);
  }
  const index_t len = n * cols;
  AlignedMap<T> a(wa, len), b(wb, len), d(wd, len);
  d = array_exp(b);
  b = d * (b - a);
  a = array_exp(a);
  for (index_t i = 0; i < n; ++i) {
    const T* ai = wa + i * cols;
    const T* di = wd + i * cols;
    const double zs = row_sum_wide(ai, cols), zt = row_sum_wide(di, cols);
    const double ratio = zs / zt;
    kl[i] = row_sum_wide(wb + i * cols, cols) / zt + std::log(ratio);
    RowMap<T>(g + i * cols, cols) =
        (ConstRowMap<T>(ai, cols) - ConstRowMap<T>(di, cols) * static_cast<T>(ratio)) * static_cast<T>(grad_scale / zs);
  }
}

#if defined(__AVX512F__)
namespace avx512 {

/// e^x for 16 lanes of x ≤ 0 (the only exponents a max-shifted softmax takes): x = k·ln2 + r with
/// |r| ≤ ln2/2, e^r by the Cephes expf polynomial (≈ 1 ulp), then vscalefps multiplies by 2^k and
/// flushes k < −149 to 0. x is first raised to −104, where e^x already rounds to 0: the range reduction
/// is exact only for |k| < 2^15, and a tiny temperature makes x as low as −inf. e^0 is exactly 1.
inline __m512 exp_nonpositive(__m512 x) noexcept {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // ln2 in two parts; the first has 9 significant bits, so k · part is exact for |k| < 2^15.
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(y, k);
}

/// Adds the 16 float lanes of `part` to two 8-lane double accumulators.
inline void widen_add(__m512 part, __m512d& lo, __m512d& hi) noexcept {
  lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(part)));
  hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(part), 1))));
}

/// Float partial sums of a row, moved into double accumulators every few vectors: each float partial
/// holds at most kFlush terms per lane, so it stays within ~2 ulp, and the row total is exact to double.
struct RowSums {
  static constexpr int kFlush = 4;
  __m512 part = _mm512_setzero_ps();
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();

  void flush() noexcept {
    widen_add(part, lo, hi);
    part = _mm512_setzero_ps();
  }
  [[nodiscard]] double total() noexcept {
    flush();
    return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
  }
};

/// The AVX-512 twin of kd_block_logits for float (same outputs to float rounding; the Eigen kernel is
/// its test oracle). One row at a time, three passes over the row while it sits in L1:
///   1. the maxima of s and t;
///   2. a, b, ea = exp(a) (into g), eb = exp(b) (into `eb_row`), and Σ ea, Σ eb, Σ eb(b − a);
///   3. g = (ea − eb · Zs/Zt) · grad_scale/Zs.
/// Pass 2 also prefetches the stream 8 KB ahead (`prefetch_limit` elements from `s` may be touched), so
/// the next rows arrive from memory while this one computes. Equal s and t rows go through identical
/// instructions, so the loss and gradient are exactly 0, as in the Eigen kernel.
inline void kd_rows_logits(const float* s, const float* t, float* g, index_t n, index_t cols, float inv_t,
                           double grad_scale, float* eb_row, float* log_ratio, double* kl,
                           index_t prefetch_limit) noexcept {
  constexpr index_t lanes = 16, ahead = 2048;
  const index_t full = cols / lanes * lanes;
  const auto tail = static_cast<__mmask16>((1u << (cols - full)) - 1u);
  const __m512 scale = _mm512_set1_ps(inv_t);
  const __m512 floor = _mm512_set1_ps(scaled_logit_floor<float>);
  const __m512 lowest = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (index_t i = 0; i < n; ++i) {
    const index_t row = i * cols;
    const float* si = s + row;
    const float* ti = t + row;
    float* gi = g + row;
    __m512 max_s = lowest, max_t = lowest;
    for (index_t j = 0; j < full; j += lanes) {
      max_s = _mm512_max_ps(max_s, _mm512_loadu_ps(si + j));
      max_t = _mm512_max_ps(max_t, _mm512_loadu_ps(ti + j));
    }
    if (tail != 0) {
      max_s = _mm512_max_ps(max_s, _mm512_mask_loadu_ps(lowest, tail, si + full));
      max_t = _mm512_max_ps(max_t, _mm512_mask_loadu_ps(lowest, tail, ti + full));
    }
    const __m512 shift_s = _mm512_set1_ps(_mm512_reduce_max_ps(max_s));
    const __m512 shift_t = _mm512_set1_ps(_mm512_reduce_max_ps(max_t));

    RowSums zs, zt, cross;
    // Masked-off lanes load 0, and their exponentials are zeroed, so they add nothing.
    const auto step = [&](index_t j, __mmask16 mask) {
      const __m512 a = _mm512_max_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, si + j), shift_s), scale), floor);
      const __m512 b = _mm512_max_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, ti + j), shift_t), scale), floor);
      const __m512 ea = _mm512_maskz_mov_ps(mask, exp_nonpositive(a));
      const __m512 eb = _mm512_maskz_mov_ps(mask, exp_nonpositive(b));
      _mm512_mask_storeu_ps(gi + j, mask, ea);
      _mm512_store_ps(eb_row + j, eb);
      zs.part = _mm512_add_ps(zs.part, ea);
      zt.part = _mm512_add_ps(zt.part, eb);
      cross.part = _mm512_fmadd_ps(eb, _mm512_sub_ps(b, a), cross.part);
    };
    int pending = 0;
    for (index_t j = 0; j < full; j += lanes) {
      if (row + j + ahead < prefetch_limit) {
        _mm_prefetch(reinterpret_cast<const char*>(si + j + ahead), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(ti + j + ahead), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(gi + j + ahead), _MM_HINT_T0);
      }
      step(j, static_cast<__mmask16>(0xFFFF));
      if (++pending == RowSums::kFlush) {
        zs.flush();
        zt.flush();
        cross.flush();
        pending = 0;
      }
    }
    if (tail != 0) step(full, tail);
    const double sum_s = zs.total(), sum_t = zt.total();
    // Two independent divisions per row; Zs/Zt itself is divided (not multiplied by a reciprocal) so
    // that it is exactly 1 when the sums are equal.
    const double ratio = sum_s / sum_t, inv_s = 1.0 / sum_s;
    // log(ratio) = log(rf) + log(ratio/rf) with rf = float(ratio): the first term is taken below for the
    // whole block in one vectorized float log (a scalar double log per row would cost a third of the
    // time at 10 classes); the second, (ratio − rf)/ratio to first order, is below 6e-8.
    const float rf = static_cast<float>(ratio);
    log_ratio[i] = rf;
    kl[i] = (cross.total() * ratio + (ratio - static_cast<double>(rf)) * sum_t) * inv_s;

    const __m512 r = _mm512_set1_ps(rf);
    const __m512 k = _mm512_set1_ps(static_cast<float>(grad_scale * inv_s));
    for (index_t j = 0; j < full; j += lanes) {
      _mm512_storeu_ps(gi + j,
                       _mm512_mul_ps(_mm512_fnmadd_ps(_mm512_load_ps(eb_row + j), r, _mm512_loadu_ps(gi + j)), k));
    }
    if (tail != 0) {
      const __m512 ea = _mm512_maskz_loadu_ps(tail, gi + full);
      _mm512_mask_storeu_ps(gi + full, tail, _mm512_mul_ps(_mm512_fnmadd_ps(_mm512_load_ps(eb_row + full), r, ea), k));
    }
  }
  finish_logs(log_ratio, n, kl);
}

}  // namespace avx512
#endif

/// KD on a block of n rows, teacher given as probabilities p with row sums P (≈ 1). The loss is
/// Σ p (log p − a) + P log Zs (terms with p = 0 dropped), whose exact derivative is
/// (T/B)·(P·q − p): it reduces to (T/B)(q − p) for P = 1 and is what autograd gives otherwise.
template <class T>
void kd_block_probabilities(const T* s, const T* p, T* g, index_t n, index_t cols, T inv_t, double grad_scale,
                            KdWorkspace<T>& ws, int thread, double* kl) noexcept {
  T* wa = ws.block(thread, 0);
  T* wb = ws.block(thread, 1);
  for (index_t i = 0; i < n; ++i) {
    const T* si = s + i * cols;
    RowMap<T>(wa + i * cols, cols) = ((ConstRowMap<T>(si, cols) - row_max(si, cols)) * inv_t).max(scaled_logit_floor<T>);
  }
  const index_t len = n * cols;
  AlignedMap<T> a(wa, len), b(wb, len);
  const ConstRowMap<T> pm(p, len);
  // p · (log p − a) with 0 · log 0 = 0: clamping p to the smallest normal inside the log keeps the
  // factor finite, so p = 0 gives exactly 0 (a select would also work, but Eigen does not vectorize it).
  b = pm * (array_log(pm.max(std::numeric_limits<T>::min())) - a);
  a = array_exp(a);
  for (index_t i = 0; i < n; ++i) {
    const T* ai = wa + i * cols;
    const T* pi = p + i * cols;
    const double zs = row_sum_wide(ai, cols), total = row_sum_wide(pi, cols);
    // Here log Zs is up to log C and cancels against Σ p (log p − a): it needs a double log (a float
    // one would be off by ~4e-7, 1.6e-4 of the loss at T = 20).
    kl[i] = row_sum_wide(wb + i * cols, cols) + total * std::log(zs);
    RowMap<T>(g + i * cols, cols) =
        (ConstRowMap<T>(ai, cols) * static_cast<T>(total / zs) - ConstRowMap<T>(pi, cols)) * static_cast<T>(grad_scale);
  }
}

/// Cross-entropy on a block: adds (or, when `accumulate` is false, writes) `scale · (softmax(s) − onehot(y))`
/// to g and stores the row losses `log Σ exp(s − max) − (s_y − max)` in ce.
template <class T>
void ce_block(const T* s, const std::int32_t* y, T* g, index_t n, index_t cols, double scale, bool accumulate,
              KdWorkspace<T>& ws, int thread, double* ce) noexcept {
  T* wa = ws.block(thread, 0);
  for (index_t i = 0; i < n; ++i) {
    const T* si = s + i * cols;
    const T max = row_max(si, cols);
    RowMap<T>(wa + i * cols, cols) = ConstRowMap<T>(si, cols) - max;
    ce[i] = -static_cast<double>(si[y[i]] - max);
  }
  AlignedMap<T> a(wa, n * cols);
  a = array_exp(a);
  T* log_z = ws.small(thread);
  for (index_t i = 0; i < n; ++i) {
    const T* ai = wa + i * cols;
    const double z = row_sum_wide(ai, cols);
    ce[i] += defer_log(z, log_z, i);
    RowMap<T> gi(g + i * cols, cols);
    if (accumulate) {
      gi += ConstRowMap<T>(ai, cols) * static_cast<T>(scale / z);
    } else {
      gi = ConstRowMap<T>(ai, cols) * static_cast<T>(scale / z);
    }
    gi(y[i]) -= static_cast<T>(scale);
  }
  finish_logs(log_z, n, ce);
}

/// `alpha · L_KD + (1 − alpha) · CE` and its gradient, inputs already validated. `labels` may be null
/// when alpha is 1. Rows are split into blocks (over OpenMP threads for large batches); per-row results
/// are summed in row order afterwards, so the value does not depend on the thread count.
template <class T>
double combined_unchecked(TensorView<const T, 2> student, TensorView<const T, 2> teacher, TeacherKind kind,
                          const std::int32_t* labels, double temperature, double alpha, TensorView<T, 2> dstudent,
                          KdWorkspace<T>& ws) {
  const index_t rows = student.dim(0), cols = student.dim(1);
  if (rows == 0) return 0.0;
  const int threads = threads_for(student.size());
  ws.reserve(threads, block_rows(cols), cols, rows);
  const double batch = static_cast<double>(rows);
  const bool use_kd = alpha > 0.0, use_ce = alpha < 1.0;
  const T inv_t = static_cast<T>(1.0 / temperature);
  const double kd_scale = alpha * temperature / batch;
  const double ce_scale = (1.0 - alpha) / batch;
  double* kl = ws.row_results();
  double* ce = kl + rows;
  for_each_row_block(rows, cols, threads, [&](index_t begin, index_t end, int thread) {
    const index_t offset = begin * cols, n = end - begin;
    T* g = dstudent.data() + offset;
    if (use_kd) {
      if (kind == TeacherKind::logits) {
#if defined(__AVX512F__)
        if constexpr (std::is_same_v<T, float>) {
          avx512::kd_rows_logits(student.data() + offset, teacher.data() + offset, g, n, cols, inv_t, kd_scale,
                                 ws.block(thread, 0), ws.small(thread), kl + begin, student.size() - offset);
        } else
#endif
        {
          kd_block_logits(student.data() + offset, teacher.data() + offset, g, n, cols, inv_t, kd_scale, ws, thread,
                          kl + begin);
        }
      } else {
        kd_block_probabilities(student.data() + offset, teacher.data() + offset, g, n, cols, inv_t, kd_scale, ws,
                               thread, kl + begin);
      }
    }
    if (use_ce) ce_block(student.data() + offset, labels + begin, g, n, cols, ce_scale, use_kd, ws, thread, ce + begin);
  });
  double kl_sum = 0.0, ce_sum = 0.0;
  if (use_kd) {
    for (index_t i = 0; i < rows; ++i) kl_sum += kl[i];
  }
  if (use_ce) {
    for (index_t i = 0; i < rows; ++i) ce_sum += ce[i];
  }
  return (use_kd ? alpha * temperature * temperature * kl_sum / batch : 0.0) +
         (use_ce ? (1.0 - alpha) * ce_sum / batch : 0.0);
}

/// Validation shared by the public losses: temperature, shapes, and probability rows.
template <class T>
void check_kd_inputs(const char* what, TensorView<const T, 2> student, TensorView<const T, 2> teacher, TeacherKind kind,
                     double temperature, TensorView<T, 2> dstudent) {
  check_temperature<T>(what, temperature);
  check_has_classes(what, "student logits", student.shape());
  check_same_shape(what, "student logits", student.shape(),
                   kind == TeacherKind::logits ? "teacher logits" : "teacher probabilities", teacher.shape());
  check_same_shape(what, "student logits", student.shape(), "gradient", dstudent.shape());
  if (kind == TeacherKind::probabilities) check_probability_rows(what, teacher);
}

/// The workspace used by the overloads that take none: one per thread, kept warm between calls.
template <class T>
[[nodiscard]] KdWorkspace<T>& default_workspace() {
  thread_local KdWorkspace<T> workspace;
  return workspace;
}

template <class T>
[[nodiscard]] TeacherKind kind_of(const TeacherLogits<T>&) noexcept {
  return TeacherKind::logits;
}
template <class T>
[[nodiscard]] TeacherKind kind_of(const TeacherProbabilities<T>&) noexcept {
  return TeacherKind::probabilities;
}

}  // namespace detail

/// The two ways a teacher can be given.
template <class Teacher>
concept TeacherOutputs = requires(const Teacher& teacher) {
  {detail::kind_of(teacher)};
  {teacher.view()};
};

/// @brief The KD loss `(T²/B) Σ KL(softmax(t/T) ‖ softmax(s/T))`; writes `∂L/∂s = (T/B)(q − p)` into
/// `dstudent` (which must not overlap the inputs) and returns L.
/// @tparam T scalar type, deduced from the teacher wrapper.
///
/// The teacher is `TeacherLogits<T>` or `TeacherProbabilities<T>` (then the gradient is the exact
/// derivative (T/B)(P·q − p) for row sums P, i.e. (T/B)(q − p) when rows sum to 1). Logits must be
/// finite. Student equal to teacher (as logits) gives exactly 0 and a zero gradient. An empty batch
/// gives 0 and writes nothing. Large batches run on OpenMP threads; the value does not depend on the
/// thread count. With a warm `workspace` (or the per-thread default one) nothing is allocated.
/// Accuracy in float: ~1e-7 relative for T ≤ 4, growing like T (the scaled logits are rounded to float,
/// and the loss is a T²-amplified difference): ~3e-6 at T = 20.
/// @throws value_error when T is not a finite number > 0, or teacher probabilities have a negative
/// entry or a row not summing to 1 within probability_sum_tolerance (naming the row and its sum);
/// shape_error when student, teacher and gradient shapes differ or there are no classes.
template <class T, template <class> class Teacher>
requires TeacherOutputs<Teacher<T>>
double kd_loss(std::type_identity_t<TensorView<const T, 2>> student, const Teacher<T>& teacher, double temperature,
               std::type_identity_t<TensorView<T, 2>> dstudent, KdWorkspace<T>& workspace) {
  const auto kind = detail::kind_of(teacher);
  detail::check_kd_inputs<T>("kd_loss", student, teacher.view(), kind, temperature, dstudent);
  return detail::combined_unchecked<T>(student, teacher.view(), kind, nullptr, temperature, 1.0, dstudent, workspace);
}

/// kd_loss() with this thread's default workspace.
template <class T, template <class> class Teacher>
requires TeacherOutputs<Teacher<T>>
double kd_loss(std::type_identity_t<TensorView<const T, 2>> student, const Teacher<T>& teacher, double temperature,
               std::type_identity_t<TensorView<T, 2>> dstudent) {
  return kd_loss<T>(student, teacher, temperature, dstudent, detail::default_workspace<T>());
}

/// @brief `alpha · L_KD(s, teacher, T) + (1 − alpha) · CE(s, labels)`, where CE is the mean softmax
/// cross-entropy of the untempered logits (PyTorch's `F.cross_entropy`). Writes the gradient
/// `alpha (T/B)(q − p) + (1 − alpha)(softmax(s) − onehot(y))/B` into `dstudent` and returns the loss.
/// @tparam T scalar type, deduced from the teacher wrapper.
/// @throws value_error for alpha outside [0, 1] or NaN, a label outside [0, C), and as kd_loss();
/// shape_error when the label count differs from the batch size, and as kd_loss().
template <class T, template <class> class Teacher>
requires TeacherOutputs<Teacher<T>>
double combined_loss(std::type_identity_t<TensorView<const T, 2>> student, const Teacher<T>& teacher,
                     TensorView<const std::int32_t, 1> labels, double temperature, double alpha,
                     std::type_identity_t<TensorView<T, 2>> dstudent, KdWorkspace<T>& workspace) {
  const auto kind = detail::kind_of(teacher);
  check_alpha("combined_loss", alpha);
  detail::check_kd_inputs<T>("combined_loss", student, teacher.view(), kind, temperature, dstudent);
  check_class_labels("combined_loss", student.shape(), labels);
  return detail::combined_unchecked<T>(student, teacher.view(), kind, labels.data(), temperature, alpha, dstudent,
                                       workspace);
}

/// combined_loss() with this thread's default workspace.
template <class T, template <class> class Teacher>
requires TeacherOutputs<Teacher<T>>
double combined_loss(std::type_identity_t<TensorView<const T, 2>> student, const Teacher<T>& teacher,
                     TensorView<const std::int32_t, 1> labels, double temperature, double alpha,
                     std::type_identity_t<TensorView<T, 2>> dstudent) {
  return combined_loss<T>(student, teacher, labels, temperature, alpha, dstudent, detail::default_workspace<T>());
}

/// @brief A training-loop loss that distils from teacher outputs cached for a whole data set.
/// @tparam T scalar type.
///
/// Its call signature is the one `minnow::train::LossFunction<T>` expects —
/// `double(TensorView<const T, 2> logits, TensorView<const int32_t, 1> labels, std::span<const index_t>
/// indices, TensorView<T, 2> dlogits)` — so `trainer.set_loss(distill::SoftTargetLoss<float>(...))`
/// works without distill/ depending on nn/. Row `indices[r]` of the cached table [N, C] is the teacher
/// output for row r of the batch; the loss is combined_loss() with the given alpha (alpha = 1: pure KD).
///
/// The table is viewed, not copied: it must outlive the loss. Probability tables are validated once,
/// here. Copies share the table but not the scratch buffers, so each copy may be used by its own thread.
template <class T>
class SoftTargetLoss {
 public:
  /// Cached teacher logits for every sample (e.g. one teacher's outputs on the training set).
  SoftTargetLoss(TeacherLogits<T> table, double temperature, double alpha = 1.0)
      : SoftTargetLoss(table.view(), detail::TeacherKind::logits, temperature, alpha) {}
  /// Cached teacher probabilities for every sample (e.g. ensemble::mean_probabilities at temperature T).
  SoftTargetLoss(TeacherProbabilities<T> table, double temperature, double alpha = 1.0)
      : SoftTargetLoss(table.view(), detail::TeacherKind::probabilities, temperature, alpha) {}

  /// The batch loss; writes dL/dlogits.
  /// @throws shape_error when indices, labels and logits disagree in count or logits and table in classes;
  /// value_error for an index outside [0, N) or a label outside [0, C).
  double operator()(TensorView<const T, 2> logits, TensorView<const std::int32_t, 1> labels,
                    std::span<const index_t> indices, TensorView<T, 2> dlogits) {
    constexpr const char* what = "SoftTargetLoss";
    const index_t rows = logits.dim(0), cols = table_.dim(1);
    if (static_cast<index_t>(indices.size()) != rows) {
      throw shape_error(
          minnow::detail::concat(what, ": ", indices.size(), " sample indices for logits ", to_string(logits.shape())));
    }
    if (logits.dim(1) != cols) {
      throw shape_error(minnow::detail::concat(what, ": logits ", to_string(logits.shape()), " do not match the ", cols,
                                               " classes of the cached teacher outputs ", to_string(table_.shape())));
    }
    check_same_shape(what, "logits", logits.shape(), "gradient", dlogits.shape());
    if (alpha_ < 1.0) check_class_labels(what, logits.shape(), labels);
    gathered_.resize({rows, cols});
    for (index_t r = 0; r < rows; ++r) {
      const index_t index = indices[static_cast<std::size_t>(r)];
      if (index < 0 || index >= table_.dim(0)) {
        throw value_error(minnow::detail::concat(what, ": sample index ", index, " at batch position ", r,
                                                 " is outside [0, ", table_.dim(0), ")"));
      }
      std::copy_n(table_.data() + index * cols, cols, gathered_.data() + r * cols);
    }
    return detail::combined_unchecked<T>(logits, gathered_.view(), kind_, alpha_ < 1.0 ? labels.data() : nullptr,
                                         temperature_, alpha_, dlogits, workspace_);
  }

  [[nodiscard]] double temperature() const noexcept { return temperature_; }
  [[nodiscard]] double alpha() const noexcept { return alpha_; }

  SoftTargetLoss(const SoftTargetLoss& other)
      : table_(other.table_), kind_(other.kind_), temperature_(other.temperature_), alpha_(other.alpha_) {}
  SoftTargetLoss& operator=(const SoftTargetLoss& other) {
    table_ = other.table_;
    kind_ = other.kind_;
    temperature_ = other.temperature_;
    alpha_ = other.alpha_;
    return *this;
  }
  SoftTargetLoss(SoftTargetLoss&&) noexcept = default;
  SoftTargetLoss& operator=(SoftTargetLoss&&) noexcept = default;
  ~SoftTargetLoss() = default;

 private:
  SoftTargetLoss(TensorView<const T, 2> table, detail::TeacherKind kind, double temperature, double alpha)
      : table_(table), kind_(kind), temperature_(temperature), alpha_(alpha) {
    check_temperature<T>("SoftTargetLoss", temperature);
    check_alpha("SoftTargetLoss", alpha);
    check_has_classes("SoftTargetLoss", "cached teacher outputs", table.shape());
    if (kind == detail::TeacherKind::probabilities) check_probability_rows("SoftTargetLoss", table);
  }

  TensorView<const T, 2> table_;
  detail::TeacherKind kind_;
  double temperature_;
  double alpha_;
  Tensor<T, 2> gathered_;
  KdWorkspace<T> workspace_;
};

}  // namespace minnow::distill
