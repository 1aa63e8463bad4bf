#pragma once
/// @file distill/kd_blocks.hpp
/// @brief How the KD and combined losses are computed: kernels over blocks of rows (the KL term with the
/// teacher as logits or as probabilities, the cross-entropy term) and combined_unchecked, which runs them
/// over a batch. Float logits take the row kernel of simd/softmax_kl_rows.hpp on the instruction set
/// chosen once per call; the other kernels are Eigen expressions for any scalar type.

#include <minnow/distill/kd_workspace.hpp>
#include <minnow/distill/softmax.hpp>
#include <minnow/distill/teacher.hpp>
#include <minnow/simd/arch.hpp>
#include <minnow/simd/softmax_kl_rows.hpp>
#include <minnow/tensor.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace minnow::distill::detail {

using simd::detail::scaled_logit_floor;

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

/// KD on a block of n rows, teacher given as logits, for scalar types other than float (float takes
/// simd::detail::softmax_kl_rows; this kernel is also the independent oracle its scalar twin is tested
/// against). Writes `grad_scale · (q − p)` into g and the row KL divergences into kl. Three flat passes
/// over the block do all exponentials at once:
///   a = (s − max s)/T, b = (t − max t)/T  →  ea = exp(a), eb = exp(b), eb·(b − a)
///   KL = Σ eb(b − a)/Zt + log(Zs/Zt),  q − p = (ea − eb·Zs/Zt)/Zs   with Zs = Σ ea, Zt = Σ eb,
/// the row sums and the KL taken in double; a and b are raised to scaled_logit_floor. Student equal to
/// teacher gives a == b bit for bit in buffers aligned alike, so Zs == Zt and every term is exactly 0: so
/// are the loss and the gradient (Zs/Zt is exactly 1, even when the compiler fuses the multiply into the
/// subtraction).
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
/// are summed in row order afterwards, so the value does not depend on the thread count. For float the
/// instruction set of the row kernel is chosen once, before the threads start, so every block of a call
/// runs the same path (and every path gives the same bits).
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
  const auto run = [&](auto arch) {
    for_each_row_block(rows, cols, threads, [&](index_t begin, index_t end, int thread) {
      const index_t offset = begin * cols, n = end - begin;
      const T* s = student.data() + offset;
      T* g = dstudent.data() + offset;
      if (use_kd) {
        if (kind == TeacherKind::logits) {
          if constexpr (std::is_same_v<T, float>) {
            simd::detail::softmax_kl_rows(arch, s, teacher.data() + offset, g, n, cols, inv_t, kd_scale,
                                          ws.block(thread, 0), ws.small(thread), kl + begin, student.size() - offset);
            finish_logs(ws.small(thread), n, kl + begin);
          } else {
            kd_block_logits(s, teacher.data() + offset, g, n, cols, inv_t, kd_scale, ws, thread, kl + begin);
          }
        } else {
          kd_block_probabilities(s, teacher.data() + offset, g, n, cols, inv_t, kd_scale, ws, thread, kl + begin);
        }
      }
      if (use_ce) ce_block(s, labels + begin, g, n, cols, ce_scale, use_kd, ws, thread, ce + begin);
    });
  };
  if constexpr (std::is_same_v<T, float>) {
    simd::dispatch(run);
  } else {
    run(simd::arch::scalar{});
  }
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

}  // namespace minnow::distill::detail
