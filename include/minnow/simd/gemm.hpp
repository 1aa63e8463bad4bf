#pragma once
/// @file simd/gemm.hpp
/// @brief Single-precision matrix multiply for the layers: `C = A·B (+ C)` with strided operands.
///
/// Eigen's GEMM reaches about 40 % of this CPU's AVX-512 peak on the layers' shapes and allocates its
/// packing buffers on every large product. This kernel follows the usual blocked design (pack a K×NR
/// panel of B so it stays in L1, an MC×K block of A so it stays in L2, and run an MR×NR register-tile
/// micro-kernel over them) with per-thread packing buffers that are reused, so it allocates nothing
/// once warm. It is single-threaded: the layers split work across threads themselves, which keeps
/// results bit-identical for a given thread count. The tile kernels (simd/gemm_kernels.hpp) are chosen
/// for the CPU at run time and all give the same bits. `gemm_reference` is the scalar oracle the tests
/// use; other scalar types (double, for gradient checks) go through Eigen.

#include <minnow/detail/parallel.hpp>
#include <minnow/simd/arch.hpp>
#include <minnow/simd/gemm_kernels.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <cstring>
#include <type_traits>

namespace minnow::simd {

/// A read-only matrix operand: element (i, j) is `data[i * row_stride + j * col_stride]`, so a transposed
/// row-major matrix is the same memory with the strides swapped.
template <class T>
struct Strided {
  const T* data;
  index_t row_stride;
  index_t col_stride;
  [[nodiscard]] const T& operator()(index_t i, index_t j) const noexcept { return data[i * row_stride + j * col_stride]; }
  [[nodiscard]] Strided transposed() const noexcept { return {data, col_stride, row_stride}; }
};

/// A row-major matrix of `cols` columns as an operand.
template <class T>
[[nodiscard]] Strided<T> row_major(const T* data, index_t cols) noexcept {
  return {data, cols, 1};
}

/// Scalar reference: `C[m×n] = A[m×k]·B[k×n]`, plus the old C when `accumulate`. C is row-major with
/// leading dimension `ldc`. Sums run over k in order, in double.
template <class T>
void gemm_reference(index_t m, index_t n, index_t k, Strided<T> a, Strided<T> b, T* c, index_t ldc, bool accumulate) {
  for (index_t i = 0; i < m; ++i) {
    for (index_t j = 0; j < n; ++j) {
      double sum = accumulate ? static_cast<double>(c[i * ldc + j]) : 0.0;
      for (index_t p = 0; p < k; ++p) sum += static_cast<double>(a(i, p)) * static_cast<double>(b(p, j));
      c[i * ldc + j] = static_cast<T>(sum);
    }
  }
}

namespace detail {

/// Products narrower than this many columns go to Eigen's coefficient-based product (see gemm()); the
/// same limit on every path, so each path computes every shape the same way.
inline constexpr index_t kNarrow = 24;
/// Cache blocking: a KC×NR panel of B (48 KB at most) fits L1, an MC×KC block of A (128 KB) fits L2.
inline constexpr index_t kKC = 256;
inline constexpr index_t kMC = 128;
inline constexpr index_t kNC = 48 * 48;

// A[ic.., pc..] → panels of MR rows: panel r holds, for each p, the MR values A[r·MR + i, p] (zero past m).
template <index_t MR>
void pack_a(index_t mc, index_t kc, Strided<float> a, float* dst) {
  for (index_t ir = 0; ir < mc; ir += MR, dst += MR * kc) {
    const index_t rows = std::min(MR, mc - ir);
    if (rows == MR && a.row_stride == 1) {
      // Columns of A are contiguous: each step copies MR consecutive values.
      for (index_t p = 0; p < kc; ++p) std::memcpy(dst + p * MR, &a(ir, p), MR * sizeof(float));
      continue;
    }
    // Otherwise read the MR rows side by side (MR sequential streams) and write dst in order.
    const float* src[MR];
    for (index_t i = 0; i < MR; ++i) src[i] = i < rows ? &a(ir + i, 0) : nullptr;
    for (index_t p = 0; p < kc; ++p) {
      for (index_t i = 0; i < MR; ++i) dst[p * MR + i] = src[i] ? src[i][p * a.col_stride] : 0.0f;
    }
  }
}

// B[pc.., jc..] → panels of NR columns: panel c holds, for each p, the NR values B[p, c·NR + j] (zero past n).
template <index_t NR>
void pack_b(index_t kc, index_t nc, Strided<float> b, float* dst) {
  for (index_t jr = 0; jr < nc; jr += NR, dst += NR * kc) {
    const index_t cols = std::min(NR, nc - jr);
    if (b.col_stride == 1) {
      for (index_t p = 0; p < kc; ++p) {
        std::memcpy(dst + p * NR, &b(p, jr), static_cast<std::size_t>(cols) * sizeof(float));
        std::fill(dst + p * NR + cols, dst + (p + 1) * NR, 0.0f);
      }
    } else {
      // Rows of B are strided (B is a transposed row-major matrix): read its NR columns as NR sequential
      // streams, p by p, and write dst in order.
      for (index_t p = 0; p < kc; ++p) {
        const float* src = &b(p, jr);
        for (index_t j = 0; j < cols; ++j) dst[p * NR + j] = src[j * b.col_stride];
        for (index_t j = cols; j < NR; ++j) dst[p * NR + j] = 0.0f;
      }
    }
  }
}

/// Packing buffers, one set per thread, grown on demand and then reused.
struct GemmBuffers {
  Tensor<float, 1> a, b;
  static GemmBuffers& this_thread() {
    thread_local GemmBuffers buffers;
    return buffers;
  }
};

/// The blocked product for the kernels of Arch: KC-long slices of the inner dimension, packed panels, the
/// register tile over them, and partial tiles computed aside.
template <class Arch>
void gemm_blocked(index_t m, index_t n, index_t k, Strided<float> a, Strided<float> b, float* c, index_t ldc,
                  bool accumulate) {
  constexpr GemmTile tile = gemm_tile(Arch{});
  constexpr index_t mr = tile.mr, nr = tile.nr;
  auto& buffers = GemmBuffers::this_thread();
  const index_t kc_max = std::min(k, kKC);
  const index_t a_size = ((std::min(m, kMC) + mr - 1) / mr) * mr * kc_max;
  const index_t b_size = ((std::min(n, kNC) + nr - 1) / nr) * nr * kc_max;
  if (buffers.a.size() < a_size) buffers.a.resize({a_size});
  if (buffers.b.size() < b_size) buffers.b.resize({b_size});
  alignas(64) float edge[mr * nr];
  for (index_t jc = 0; jc < n; jc += kNC) {
    const index_t nc = std::min(kNC, n - jc);
    for (index_t pc = 0; pc < k; pc += kKC) {
      const index_t kc = std::min(kKC, k - pc);
      const bool add = accumulate || pc > 0;
      pack_b<nr>(kc, nc, {&b(pc, jc), b.row_stride, b.col_stride}, buffers.b.data());
      for (index_t ic = 0; ic < m; ic += kMC) {
        const index_t mc = std::min(kMC, m - ic);
        pack_a<mr>(mc, kc, {&a(ic, pc), a.row_stride, a.col_stride}, buffers.a.data());
        for (index_t jr = 0; jr < nc; jr += nr) {
          const index_t cols = std::min(nr, nc - jr);
          const float* b_panel = buffers.b.data() + (jr / nr) * nr * kc;
          for (index_t ir = 0; ir < mc; ir += mr) {
            const index_t rows = std::min(mr, mc - ir);
            const float* a_panel = buffers.a.data() + (ir / mr) * mr * kc;
            float* c_tile = c + (ic + ir) * ldc + jc + jr;
            if (rows == mr && cols == nr) {
              micro_kernel(Arch{}, kc, a_panel, b_panel, c_tile, ldc, add);
            } else {
              // A partial tile: compute the full register tile aside, then add the valid part.
              micro_kernel(Arch{}, kc, a_panel, b_panel, edge, nr, false);
              for (index_t i = 0; i < rows; ++i) {
                for (index_t j = 0; j < cols; ++j) {
                  c_tile[i * ldc + j] = add ? c_tile[i * ldc + j] + edge[i * nr + j] : edge[i * nr + j];
                }
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace detail

namespace detail {

/// An Eigen map of a strided operand; contiguous rows or columns give Eigen a vectorizable inner stride.
template <class T, class Fn>
void with_eigen_map(Strided<T> x, index_t rows, index_t cols, Fn&& fn) {
  constexpr int Dyn = Eigen::Dynamic;
  if (x.col_stride == 1) {
    fn(Eigen::Map<const Eigen::Matrix<T, Dyn, Dyn, Eigen::RowMajor>, 0, Eigen::OuterStride<>>(x.data, rows, cols, Eigen::OuterStride<>(x.row_stride)));
  } else if (x.row_stride == 1) {
    fn(Eigen::Map<const Eigen::Matrix<T, Dyn, Dyn, Eigen::ColMajor>, 0, Eigen::OuterStride<>>(x.data, rows, cols, Eigen::OuterStride<>(x.col_stride)));
  } else {
    using Stride = Eigen::Stride<Dyn, Dyn>;
    fn(Eigen::Map<const Eigen::Matrix<T, Dyn, Dyn, Eigen::RowMajor>, 0, Stride>(x.data, rows, cols, Stride(x.row_stride, x.col_stride)));
  }
}

// `lazy` takes Eigen's coefficient-based product: no blocking buffers and no threads of its own. Its
// blocked product, when it parallelizes, mallocs a blocking buffer on every call, which a warmed-up
// training step must not do.
template <class T>
void eigen_gemm(index_t m, index_t n, index_t k, Strided<T> a, Strided<T> b, T* c, index_t ldc, bool accumulate, bool lazy) {
  Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0, Eigen::OuterStride<>> mc(c, m, n, Eigen::OuterStride<>(ldc));
  with_eigen_map(a, m, k, [&](const auto& ma) {
    with_eigen_map(b, k, n, [&](const auto& mb) {
      if (lazy && accumulate) {
        mc.noalias() += ma.lazyProduct(mb);
      } else if (lazy) {
        mc.noalias() = ma.lazyProduct(mb);
      } else if (accumulate) {
        mc.noalias() += ma * mb;
      } else {
        mc.noalias() = ma * mb;
      }
    });
  });
}

}  // namespace detail

/// `C[m×n] = A[m×k]·B[k×n]`, plus the old C when `accumulate`; C row-major with leading dimension `ldc`.
/// float runs the packed kernels of `Arch` (simd/gemm_kernels.hpp; by default the CPU's widest, every path
/// giving the same bits); other types go through Eigen.
template <class T, class Arch = arch::automatic>
void gemm(index_t m, index_t n, index_t k, Strided<T> a, Strided<T> b, T* c, index_t ldc, bool accumulate) {
  if (m == 0 || n == 0) return;
  // Products too narrow for the register tile (e.g. a 3×3 single-channel kernel's weight gradient, or
  // fc2's 10 outputs) would mostly multiply padding: Eigen's coefficient-based product handles those;
  // Eigen's blocked product every non-float type.
  if (!std::is_same_v<T, float> || n < detail::kNarrow) {
    detail::eigen_gemm<T>(m, n, k, a, b, c, ldc, accumulate, std::is_same_v<T, float>);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (k == 0) {
      if (!accumulate) {
        for (index_t i = 0; i < m; ++i) std::fill_n(c + i * ldc, n, 0.0f);
      }
      return;
    }
    with_arch<Arch>("simd::gemm", [&](auto tag) { detail::gemm_blocked<decltype(tag)>(m, n, k, a, b, c, ldc, accumulate); });
  }
}

namespace detail {

/// gemm_parallel once the path is chosen.
template <class T, class Arch>
void gemm_split(index_t m, index_t n, index_t k, Strided<T> a, Strided<T> b, T* c, index_t ldc, bool accumulate, int threads) {
  constexpr GemmTile tile = gemm_tile(Arch{});
  const bool split_columns = n >= 2 * tile.nr * threads;
  const index_t extent = split_columns ? n : m;
  // Range boundaries fall on register-tile multiples so no thread computes a partial tile it need not.
  const index_t unit = split_columns ? tile.nr : tile.mr;
  minnow::detail::parallel_for(threads, threads, [&](long t, int) {
    const index_t units = (extent + unit - 1) / unit;
    const index_t begin = std::min(extent, (units * t / threads) * unit);
    const index_t end = std::min(extent, (units * (t + 1) / threads) * unit);
    if (begin >= end) return;
    if (split_columns) {
      gemm<T, Arch>(m, end - begin, k, a, {&b(0, begin), b.row_stride, b.col_stride}, c + begin, ldc, accumulate);
    } else {
      gemm<T, Arch>(end - begin, n, k, {&a(begin, 0), a.row_stride, a.col_stride}, b, c + begin * ldc, ldc, accumulate);
    }
  });
}

}  // namespace detail

/// gemm() on up to max_threads() threads: the columns of C (or its rows, when it has few columns) are
/// split into contiguous ranges, one per thread, so every element is computed by one thread in the same
/// order whatever the thread count. Inside a parallel region, or for small products, it runs serially.
template <class T, class Arch = arch::automatic>
void gemm_parallel(index_t m, index_t n, index_t k, Strided<T> a, Strided<T> b, T* c, index_t ldc, bool accumulate) {
  const double work = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const int threads = work < 2e6 ? 1 : minnow::detail::max_threads();
  if (threads <= 1 || minnow::detail::in_parallel()) {
    gemm<T, Arch>(m, n, k, a, b, c, ldc, accumulate);
    return;
  }
  with_arch<Arch>("simd::gemm_parallel", [&](auto tag) { detail::gemm_split<T, decltype(tag)>(m, n, k, a, b, c, ldc, accumulate, threads); });
}


}  // namespace minnow::simd
