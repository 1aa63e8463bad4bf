#pragma once
/// @file quant/concepts.hpp
/// @brief The vocabulary of the quantization policies: integer ranges (`Bits`), observed value ranges,
/// affine parameters, the channel layout a granularity produces, and the C++20 concepts a policy
/// type must satisfy to plug into `Quantizer<Bits, Observer, Mapping, Granularity>`.
///
/// A quantizer is four independent choices:
///  - Bits: the integer grid [qmin, qmax], fixed at compile time;
///  - Observer: what range of values to cover (min/max, moving average, percentile, MSE or histogram search);
///  - Mapping: how that range becomes a scale and zero point (affine, symmetric, power of two, yours),
///    or, for a non-uniform mapping, a codebook;
///  - Granularity: one set of parameters for the whole tensor, or one per channel along an axis.

#include <minnow/error.hpp>
#include <minnow/tensor.hpp>

#include <concepts>
#include <cstdint>
#include <span>
#include <vector>

namespace minnow::quant {

/// @brief An integer grid [qmin, qmax] chosen at run time (e.g. PyTorch's `reduce_range` halves it).
struct QRange {
  std::int32_t qmin = -128;
  std::int32_t qmax = 127;

  /// Number of levels, qmax − qmin + 1.
  [[nodiscard]] constexpr std::int64_t levels() const noexcept { return std::int64_t{qmax} - qmin + 1; }
  friend constexpr bool operator==(const QRange&, const QRange&) = default;
};

/// @brief The integer type of a quantizer, fixed at compile time: N bits, signed or unsigned.
/// Signed N bits is [−2^(N−1), 2^(N−1) − 1], unsigned is [0, 2^N − 1]. N must be 2…8 or 16.
template <int N, bool Signed = true>
struct Bits {
  static_assert((N >= 2 && N <= 8) || N == 16, "minnow::quant::Bits: N must be 2..8 or 16");
  static constexpr int bits = N;
  static constexpr bool is_signed = Signed;
  static constexpr std::int32_t qmin = Signed ? -(std::int32_t{1} << (N - 1)) : 0;
  static constexpr std::int32_t qmax = Signed ? (std::int32_t{1} << (N - 1)) - 1 : (std::int32_t{1} << N) - 1;

  /// The full grid; `reduce_range` drops one bit as PyTorch does ([−64, 63] / [0, 127] for 8 bits).
  [[nodiscard]] static constexpr QRange range(bool reduce_range = false) noexcept {
    if (!reduce_range) return {qmin, qmax};
    return Signed ? QRange{qmin / 2, qmax / 2} : QRange{0, qmax / 2};
  }
};

using qint8 = Bits<8, true>;    ///< PyTorch's torch.qint8
using quint8 = Bits<8, false>;  ///< PyTorch's torch.quint8
using qint4 = Bits<4, true>;
using quint4 = Bits<4, false>;

/// Detects an instantiation of Bits.
template <class B>
concept BitsType = requires {
  { B::bits } -> std::convertible_to<int>;
  { B::is_signed } -> std::convertible_to<bool>;
  { B::range(false) } -> std::same_as<QRange>;
};

/// @brief The range [min, max] an observer reports for one channel (or the whole tensor).
struct Range {
  float min = 0.0f;
  float max = 0.0f;
};

/// @brief Scale and zero point of one channel: `q = clamp(zero_point + rint(x / scale), qmin, qmax)`,
/// `x̂ = (q − zero_point) · scale`.
struct AffineParams {
  float scale = 1.0f;
  std::int32_t zero_point = 0;
};

/// @brief Where the values of one channel lie in a flat, row-major tensor: `chunks` runs of `chunk_size`
/// contiguous elements, `stride` elements apart. The whole tensor is one chunk; channel c of an axis
/// is `{data + c·inner, outer, inner, channels·inner}`. Observers read channels through this, so a
/// per-channel observer never gathers.
template <class T>
struct ChannelValues {
  T* data = nullptr;
  index_t chunks = 0;
  index_t chunk_size = 0;
  index_t stride = 0;

  [[nodiscard]] index_t size() const noexcept { return chunks * chunk_size; }
  /// The k-th contiguous run, as a flat view.
  [[nodiscard]] TensorView<T, 1> chunk(index_t k) const noexcept {
    return TensorView<T, 1>(data + k * stride, Shape<1>{chunk_size});
  }
};

/// @brief How a tensor of some shape splits into channels: `outer × channels × inner` (row-major).
/// Per tensor is `{1, 1, n}`.
struct ChannelLayout {
  index_t outer = 1;
  index_t channels = 1;
  index_t inner = 0;

  template <class T>
  [[nodiscard]] ChannelValues<T> channel(T* data, index_t c) const noexcept {
    return {data + c * inner, outer, inner, channels * inner};
  }
};

/// @brief An observer watches the values a quantizer will see and reports the range to cover.
///
/// Must provide:
///  - `observe(ChannelValues<const float>)`: take one batch of one channel's values into account;
///  - `range(QRange) const -> Range`: the range to quantize (the grid is given because search-based
///    observers, like MSE and histogram, depend on the number of levels); an observer that has seen
///    nothing reports [0, 0];
///  - `reset()`: forget everything seen.
/// Observers are copyable: a per-channel quantizer keeps one copy per channel.
template <class O>
concept Observer = std::copyable<O> && requires(O o, const O co, ChannelValues<const float> values, QRange grid) {
  o.observe(values);
  { co.range(grid) } -> std::same_as<Range>;
  o.reset();
  { co.empty() } -> std::same_as<bool>;  // true until it holds data its range comes from (all-NaN input is none)
};

/// @brief A uniform mapping turns a range into a scale and a zero point on a grid.
///
/// Must provide `qparams(Range, QRange) const -> AffineParams`. The zero point must lie in [qmin, qmax]
/// so that 0.0 is exactly representable (a pruned weight stays exactly zero after quantization).
template <class M>
concept UniformMapping = requires(const M m, Range range, QRange grid) {
  { m.qparams(range, grid) } -> std::same_as<AffineParams>;
};

/// @brief The parameters of a non-uniform mapping for one channel: sorted centroids; a value is
/// replaced by its nearest centroid (ties go to the lower one) and stored as that centroid's index.
struct Codebook {
  std::vector<float> centroids;  ///< ascending, at most grid.levels() entries
};

/// @brief A codebook mapping (e.g. k-means weight sharing) fits centroids to the values themselves;
/// the observed range seeds it (Deep Compression initialises k-means linearly over [min, max]).
///
/// Must provide `fit(Range, QRange, ChannelValues<const float>) const -> Codebook` with at most
/// `grid.levels()` centroids.
template <class M>
concept CodebookMapping = requires(const M m, Range range, QRange grid, ChannelValues<const float> values) {
  { m.fit(range, grid, values) } -> std::same_as<Codebook>;
};

/// A mapping of either kind.
template <class M>
concept Mapping = UniformMapping<M> || CodebookMapping<M>;

/// @brief A granularity says how a tensor of a given shape splits into channels that get their own
/// quantization parameters. Must provide `layout(std::span<const index_t> shape) const -> ChannelLayout`
/// (throwing shape_error when the shape does not fit, e.g. an axis out of range).
template <class G>
concept Granularity = requires(const G g, std::span<const index_t> shape) {
  { g.layout(shape) } -> std::same_as<ChannelLayout>;
};

}  // namespace minnow::quant
