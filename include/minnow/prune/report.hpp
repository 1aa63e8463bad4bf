#pragma once
/// @file prune/report.hpp
/// @brief Sparsity reports: per-parameter and global kept/pruned counts, and the bytes a parameter
/// takes dense and in two sparse formats, counted from sizes.
///
/// Formats assumed (bytes are exact for these layouts, headers not counted):
/// - dense:  `size · sizeof(T)`;
/// - bitmap: one bit per element, rounded up to whole bytes, plus the kept values packed:
///           `⌈size / 8⌉ + kept · sizeof(T)`;
/// - CSR:    the parameter as a `rows × cols` matrix, rows = first logical dim (1 for a vector):
///           kept values, an int32 column index per kept value and `rows + 1` int32 row pointers:
///           `kept · (sizeof(T) + 4) + (rows + 1) · 4` (int32: valid while kept and cols < 2³¹).
/// `best_bytes` is the smaller of dense, bitmap and CSR: what a storage format that picks per
/// parameter would take.

#include <minnow/parameter.hpp>
#include <minnow/prune/hook.hpp>
#include <minnow/prune/mask.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace minnow::prune {

/// @brief Counts and sizes of one parameter (or of all of them, for SparsityReport::total).
struct ParameterSparsity {
  std::string name;
  index_t size = 0;               ///< elements
  index_t kept = 0;               ///< non-zero mask entries (or non-zero weights)
  std::size_t dense_bytes = 0;    ///< size · sizeof(T)
  std::size_t bitmap_bytes = 0;   ///< ⌈size / 8⌉ + kept · sizeof(T)
  std::size_t csr_bytes = 0;      ///< kept · (sizeof(T) + 4) + (rows + 1) · 4

  [[nodiscard]] index_t pruned() const noexcept { return size - kept; }
  /// Fraction pruned, 0 for an empty parameter.
  [[nodiscard]] double sparsity() const noexcept {
    return size == 0 ? 0.0 : static_cast<double>(size - kept) / static_cast<double>(size);
  }
  [[nodiscard]] std::size_t best_bytes() const noexcept { return std::min({dense_bytes, bitmap_bytes, csr_bytes}); }
};

/// @brief Every parameter's ParameterSparsity and their sum (`total`, named "total").
struct SparsityReport {
  std::vector<ParameterSparsity> parameters;
  ParameterSparsity total{"total"};

  /// dense bytes / best bytes over all parameters (1 when nothing is stored).
  [[nodiscard]] double compression_ratio() const noexcept {
    std::size_t best = 0;
    for (const auto& p : parameters) best += p.best_bytes();
    return best == 0 ? 1.0 : static_cast<double>(total.dense_bytes) / static_cast<double>(best);
  }

  /// A fixed-width table: one line per parameter, then the total.
  [[nodiscard]] std::string table() const {
    std::string out = "parameter                         size       kept  sparsity    dense B   bitmap B      csr B\n";
    const auto line = [&](const ParameterSparsity& p) {
      char buffer[256];
      std::snprintf(buffer, sizeof buffer, "%-28s %10lld %10lld  %7.3f%% %10zu %10zu %10zu\n", p.name.c_str(),
                    static_cast<long long>(p.size), static_cast<long long>(p.kept), 100.0 * p.sparsity(),
                    p.dense_bytes, p.bitmap_bytes, p.csr_bytes);
      out += buffer;
    };
    for (const auto& p : parameters) line(p);
    line(total);
    return out;
  }
};

/// @brief Counts and sizes of one parameter from a view whose non-zeros are the kept entries (a mask,
/// or weights after make_permanent); `shape` is the logical shape (its first extent is the CSR rows).
/// @tparam T the parameter's scalar type (sets the value size in bytes).
template <Scalar T, class M>
  requires Scalar<std::remove_const_t<M>>
[[nodiscard]] ParameterSparsity describe(std::string name, TensorView<M, 1> kept_if_nonzero, std::span<const index_t> shape) {
  ParameterSparsity p;
  p.name = std::move(name);
  p.size = kept_if_nonzero.size();
  p.kept = count_kept(kept_if_nonzero);
  const auto size = static_cast<std::size_t>(p.size), kept = static_cast<std::size_t>(p.kept);
  const std::size_t rows = shape.size() >= 2 ? static_cast<std::size_t>(shape[0]) : 1;
  p.dense_bytes = size * sizeof(T);
  p.bitmap_bytes = (size + 7) / 8 + kept * sizeof(T);
  p.csr_bytes = kept * (sizeof(T) + sizeof(std::int32_t)) + (rows + 1) * sizeof(std::int32_t);
  return p;
}

namespace detail {

inline void accumulate(ParameterSparsity& total, const ParameterSparsity& p) {
  total.size += p.size;
  total.kept += p.kept;
  total.dense_bytes += p.dense_bytes;
  total.bitmap_bytes += p.bitmap_bytes;
  total.csr_bytes += p.csr_bytes;
}

}  // namespace detail

/// @brief The report of every parameter a Pruner tracks, from its masks.
template <Scalar T>
[[nodiscard]] SparsityReport report(const Pruner<T>& pruner) {
  SparsityReport r;
  for (const auto& e : pruner.entries()) {
    r.parameters.push_back(describe<T>(e.name, e.mask.view(), std::span<const index_t>(e.shape)));
    detail::accumulate(r.total, r.parameters.back());
  }
  return r;
}

/// @brief The report of a parameter list from its weights (zeros count as pruned): for models whose
/// masks were made permanent, or loaded from a file.
template <Scalar T>
[[nodiscard]] SparsityReport report(const std::vector<Parameter<T>>& parameters) {
  SparsityReport r;
  for (const auto& p : parameters) {
    r.parameters.push_back(describe<T>(p.name, p.value, std::span<const index_t>(p.shape)));
    detail::accumulate(r.total, r.parameters.back());
  }
  return r;
}

}  // namespace minnow::prune
