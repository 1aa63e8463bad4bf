#pragma once
/// @file quant/quantizer.hpp
/// @brief `Quantizer<Bits, Observer, Mapping, Granularity>`: observes values, turns what it saw into
/// per-channel parameters, and fake-quantizes tensors with them (forward and STE backward).
///
/// Typical QAT use on a weight `[out, in, kh, kw]` (`shape` is its logical shape):
/// @code
///   quant::Int8PerChannelSymmetric wq;               // PerChannel{0}, MinMax, Symmetric
///   if (!wq.frozen()) {                              // every step until frozen:
///     wq.reset();                                    //   MinMax would keep every past step's range,
///     wq.observe(w, shape);                          //   the weights' range is the one they have now
///   }
///   wq.fake_quantize(w, shape, w_q);                 // forward with the quantized weights
///   wq.backward(w, shape, dy, dw);                   // STE: dw = dy inside the grid, 0 outside
///   if (step == freeze_step) wq.freeze();            // PyTorch's disable_observer
/// @endcode
/// (pipeline::QuantizedModel does exactly this for every weight of a Sequential.)
/// Activations with PyTorch's default scheme (`Quantizer<>`, alias PerTensorAffine), on views that carry
/// their shape:
/// @code
///   quant::PerTensorAffine aq;                       // quint8 [0, 255], MinMax, Affine, PerTensor
///   aq.observe(x);                                   // a Tensor<float, 4> batch, say (or a view)
///   aq.fake_quantize(x, y);                          // y = (clamp(zp + rint(x / s), 0, 255) − zp) · s
/// @endcode
/// Parameters are recomputed lazily: the first fake_quantize after an observe recomputes them, as
/// PyTorch's FakeQuantize does in every forward while its observer is enabled. Before anything was
/// observed the parameters are scale 1, zero point 0 (PyTorch's defaults).
///
/// Codebook mappings (`CodebookMapping`, e.g. k-means) fit to the values themselves, which the quantizer
/// does not keep: every observe refits each channel's codebook on that batch, seeded with the observer's
/// range. For weights, observe the current weights before each forward.

#include <minnow/error.hpp>
#include <minnow/quant/concepts.hpp>
#include <minnow/quant/fake_quantize.hpp>
#include <minnow/quant/granularity.hpp>
#include <minnow/quant/mappings.hpp>
#include <minnow/quant/observers.hpp>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <initializer_list>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

namespace minnow::quant {

/// @brief A complete quantization scheme: integer grid `B`, range observer `O`, mapping `M` from range
/// to parameters (uniform: scale and zero point; codebook: centroids), granularity `G`.
/// @tparam B  `Bits<N, Signed>` (N in 2…8 or 16, checked at compile time)
/// @tparam O  an Observer; a per-channel quantizer keeps one copy of the prototype per channel
/// @tparam M  a UniformMapping or a CodebookMapping
/// @tparam G  a Granularity (PerTensor, PerChannel)
///
/// The defaults, `Quantizer<>`, are PyTorch's default scheme (`MinMaxObserver()`, `quantize_per_tensor`):
/// uint8 [0, 255], affine, one scale and zero point for the tensor, from the observed min and max
/// (alias PerTensorAffine).
template <BitsType B = quint8, Observer O = MinMax, Mapping M = Affine, Granularity G = PerTensor>
class Quantizer {
 public:
  /// True for codebook (non-uniform) mappings; a mapping that offers both is used as a uniform one.
  static constexpr bool is_codebook = !UniformMapping<M>;
  /// What one channel's parameters are: AffineParams, or a Codebook.
  using params_type = std::conditional_t<is_codebook, Codebook, AffineParams>;

  explicit Quantizer(G granularity = G{}, O observer = O{}, M mapping = M{}, bool reduce_range = false)
      : granularity_(std::move(granularity)), prototype_(std::move(observer)), mapping_(std::move(mapping)),
        full_grid_(B::range(reduce_range)) {}

  /// The integer grid of B (halved with reduce_range).
  [[nodiscard]] QRange full_grid() const noexcept { return full_grid_; }
  /// The grid values are clamped to: the full grid, or the narrower one a mapping asks for (restricted).
  [[nodiscard]] QRange grid() const noexcept {
    if constexpr (is_codebook) return full_grid_;
    else return mapped_grid(mapping_, full_grid_);
  }

  /// @brief Takes one batch into account (ignored while frozen). `shape` is the logical shape of
  /// `values`; the first call fixes the channel count. An empty batch changes nothing.
  /// @throws shape_error when the shape does not describe `values`, the granularity rejects it (axis out
  /// of range), or the channel count differs from the first call's.
  void observe(TensorView<const float, 1> values, std::span<const index_t> shape) {
    if (frozen_) return;
    const ChannelLayout layout = layout_of(values.size(), shape, "Quantizer::observe");
    fix_channels(layout.channels, "Quantizer::observe");
    if (values.empty()) return;
    const auto channels = static_cast<long>(layout.channels);
    const int threads = channels > 1 ? detail::stream_threads(values.size()) : 1;
    minnow::detail::parallel_for(channels, threads, [&](long c, int) {
      observers_[static_cast<std::size_t>(c)].observe(layout.channel(values.data(), c));
    });
    // A batch of NaN only gives the observers nothing: the parameters must not claim to come from data.
    observed_ = std::any_of(observers_.begin(), observers_.end(), [](const O& o) { return !o.empty(); });
    if (!observed_) return;
    if constexpr (is_codebook) {
      books_.resize(observers_.size());
      minnow::detail::parallel_for(channels, threads, [&](long c, int) {
        const auto i = static_cast<std::size_t>(c);
        books_[i] = mapping_.fit(observers_[i].range(full_grid_), full_grid_, layout.channel(values.data(), c));
      });
    } else {
      dirty_ = true;
    }
  }

  /// observe() with the shape as a brace list: `q.observe(flat, {16, 4, 3, 3})`.
  void observe(TensorView<const float, 1> values, std::initializer_list<index_t> shape) {
    observe(values, std::span<const index_t>(shape.begin(), shape.size()));
  }
  /// observe() of a view that carries its shape (any rank ≥ 1): `q.observe(x.view())`.
  template <class V, std::size_t R>
    requires(std::same_as<std::remove_const_t<V>, float> && R >= 1)
  void observe(TensorView<V, R> values) {
    observe(flat(values), std::span<const index_t>(values.shape()));
  }
  /// observe() of a tensor (any rank ≥ 1): `q.observe(x)`.
  template <std::size_t R>
    requires(R >= 1)
  void observe(const Tensor<float, R>& values) {
    observe(values.view());
  }

  /// Stops observing (PyTorch's disable_observer): the parameters stay what they are now.
  void freeze() {
    if constexpr (!is_codebook) {
      if (dirty_) calculate_params();
    }
    frozen_ = true;
  }
  /// Observes again.
  void unfreeze() noexcept { frozen_ = false; }
  [[nodiscard]] bool frozen() const noexcept { return frozen_; }
  /// True once an observer holds data (until reset): the parameters come from data, not defaults. A batch
  /// of NaN only leaves it false.
  [[nodiscard]] bool observed() const noexcept { return observed_; }

  /// Forgets everything observed and the channel count (the frozen flag is kept).
  void reset() {
    observers_.clear();
    params_.clear();
    books_.clear();
    observed_ = false;
    dirty_ = false;
  }

  /// @brief Computes (uniform) or returns (codebook) the per-channel parameters and caches them.
  /// Uniform: `mapping.qparams(observer.range(grid), grid)` per channel; scale 1 / zero point 0 before
  /// anything was observed (then the list is empty until the channel count is known).
  /// @throws value_error from the mapping (e.g. an infinite observed range); for a codebook quantizer
  /// that has not observed anything.
  const std::vector<params_type>& calculate_params() {
    if constexpr (is_codebook) {
      if (books_.empty()) {
        throw value_error("Quantizer::calculate_params: a codebook quantizer must observe values before it can fit");
      }
      return books_;
    } else {
      std::vector<AffineParams> fresh(observers_.size());
      for (std::size_t c = 0; c < observers_.size(); ++c) {
        fresh[c] = observed_ ? mapping_.qparams(observers_[c].range(full_grid_), full_grid_) : AffineParams{};
      }
      params_ = std::move(fresh);
      dirty_ = false;
      return params_;
    }
  }

  /// The cached parameters (empty before the first calculate_params / fake_quantize).
  [[nodiscard]] const std::vector<params_type>& params() const noexcept {
    if constexpr (is_codebook) return books_;
    else return params_;
  }

  /// @brief `y = fake_quantize(x)` with the current parameters (recomputed first if new values were
  /// observed). `shape` is the logical shape of x; `x` and `y` may be the same memory. T is deduced
  /// from `y`, so `x` may be a tensor or a mutable view.
  /// @throws shape_error when shapes disagree or the channel count differs from the observed one;
  /// value_error as calculate_params.
  template <Real T>
  void fake_quantize(std::type_identity_t<TensorView<const T, 1>> x, std::span<const index_t> shape, TensorView<T, 1> y) {
    const ChannelLayout layout = layout_of(x.size(), shape, "Quantizer::fake_quantize");
    const auto& current = current_params(layout, "Quantizer::fake_quantize");
    last_layout_ = layout;
    has_layout_ = true;
    if constexpr (is_codebook) {
      quant::fake_quantize<T, 1>(x, layout, std::span<const Codebook>(current), y);
    } else if (layout.channels == 1) {
      quant::fake_quantize<T, 1>(x, current.front(), grid(), y);
    } else {
      quant::fake_quantize<T, 1>(x, layout, std::span<const AffineParams>(current), grid(), y);
    }
  }

  /// fake_quantize() with the shape as a brace list: `q.fake_quantize(w, {16, 4, 3, 3}, w_q)`.
  template <Real T>
  void fake_quantize(std::type_identity_t<TensorView<const T, 1>> x, std::initializer_list<index_t> shape,
                     TensorView<T, 1> y) {
    fake_quantize<T>(x, std::span<const index_t>(shape.begin(), shape.size()), y);
  }

  /// @brief fake_quantize() of a view that carries its shape (any rank ≥ 1): `q.fake_quantize(x, y.view())`;
  /// `x` may be a tensor or a view.
  /// @throws shape_error when `y`'s shape differs from `x`'s, and as the flat overload.
  template <Real T, std::size_t R>
    requires(R >= 1)
  void fake_quantize(std::type_identity_t<TensorView<const T, R>> x, TensorView<T, R> y) {
    detail::check_same_shape(x.shape(), y.shape(), "Quantizer::fake_quantize", "y");
    fake_quantize<T>(flat(x), std::span<const index_t>(x.shape()), flat(y));
  }
  /// fake_quantize() into a tensor (any rank ≥ 1): `q.fake_quantize(x, y)`.
  template <Real T, std::size_t R>
    requires(R >= 1)
  void fake_quantize(std::type_identity_t<TensorView<const T, R>> x, Tensor<T, R>& y) {
    fake_quantize<T, R>(x, y.view());
  }

  /// @brief STE backward for the `x` of the last fake_quantize (same shape): `dx = dy` inside the grid,
  /// 0 outside; codebook mappings pass `dy` through. `dx` may alias `dy`.
  /// @throws value_error when no fake_quantize came first; shape_error when sizes differ.
  template <Real T>
  void backward(TensorView<const T, 1> x, TensorView<const T, 1> dy, TensorView<T, 1> dx) const {
    if (!has_layout_) {
      throw value_error("Quantizer::backward: call fake_quantize first (or pass the shape)");
    }
    backward_with(last_layout_, x, dy, dx, "Quantizer::backward");
  }

  /// STE backward with the logical shape of x given explicitly.
  template <Real T>
  void backward(TensorView<const T, 1> x, std::span<const index_t> shape, TensorView<const T, 1> dy,
                TensorView<T, 1> dx) const {
    backward_with(layout_of(x.size(), shape, "Quantizer::backward"), x, dy, dx, "Quantizer::backward");
  }

  /// backward() with the shape as a brace list.
  template <Real T>
  void backward(TensorView<const T, 1> x, std::initializer_list<index_t> shape, TensorView<const T, 1> dy,
                TensorView<T, 1> dx) const {
    backward<T>(x, std::span<const index_t>(shape.begin(), shape.size()), dy, dx);
  }

  [[nodiscard]] const G& granularity() const noexcept { return granularity_; }
  [[nodiscard]] const M& mapping() const noexcept { return mapping_; }
  /// One observer per channel (empty before the first observe).
  [[nodiscard]] const std::vector<O>& observers() const noexcept { return observers_; }

 private:
  /// All elements of a view as a rank-1 view of the same memory.
  template <class V, std::size_t R>
  static TensorView<V, 1> flat(TensorView<V, R> v) {
    return TensorView<V, 1>(v.data(), Shape<1>{v.size()});
  }

  ChannelLayout layout_of(index_t size, std::span<const index_t> shape, const char* context) const {
    const ChannelLayout layout = granularity_.layout(shape);
    if (layout.outer * layout.channels * layout.inner != size) {
      throw shape_error(minnow::detail::concat(context, ": shape ", minnow::detail::extents_string(shape), " has ",
                                               layout.outer * layout.channels * layout.inner, " elements, the values ",
                                               size));
    }
    return layout;
  }

  void fix_channels(index_t channels, const char* context) {
    if (observers_.empty()) {
      observers_.assign(static_cast<std::size_t>(channels), prototype_);
    } else if (static_cast<index_t>(observers_.size()) != channels) {
      throw shape_error(minnow::detail::concat(context, ": ", channels, " channels, but the quantizer observed ",
                                               observers_.size(), " before"));
    }
  }

  const std::vector<params_type>& current_params(const ChannelLayout& layout, const char* context) {
    if constexpr (!is_codebook) {
      if (!observed_ && params_.size() != static_cast<std::size_t>(layout.channels)) {
        params_.assign(static_cast<std::size_t>(layout.channels), AffineParams{});  // PyTorch's defaults
      } else if (dirty_ || params_.empty()) {
        calculate_params();
      }
    } else {
      calculate_params();
    }
    const auto& current = params();
    if (static_cast<index_t>(current.size()) != layout.channels) {
      throw shape_error(minnow::detail::concat(context, ": ", layout.channels, " channels, but the quantizer has ",
                                               current.size(), " parameter sets"));
    }
    return current;
  }

  template <Real T>
  void backward_with(const ChannelLayout& layout, TensorView<const T, 1> x, TensorView<const T, 1> dy,
                     TensorView<T, 1> dx, const char* context) const {
    if constexpr (is_codebook) {
      detail::check_same_shape(x.shape(), dy.shape(), context, "dy");
      codebook_backward<T, 1>(dy, dx);
    } else {
      const auto& current = params_;
      if (static_cast<index_t>(current.size()) != layout.channels) {
        throw shape_error(minnow::detail::concat(context, ": ", layout.channels, " channels, but the quantizer has ",
                                                 current.size(), " parameter sets (call fake_quantize first)"));
      }
      if (layout.channels == 1) {
        fake_quantize_backward<T, 1>(x, dy, current.front(), grid(), dx);
      } else {
        fake_quantize_backward<T, 1>(x, dy, layout, std::span<const AffineParams>(current), grid(), dx);
      }
    }
  }

  G granularity_;
  O prototype_;
  M mapping_;
  QRange full_grid_;
  std::vector<O> observers_;
  std::vector<AffineParams> params_;
  std::vector<Codebook> books_;
  ChannelLayout last_layout_{};
  bool has_layout_ = false;
  bool observed_ = false;
  bool dirty_ = false;
  bool frozen_ = false;
};

/// PyTorch's default scheme, `torch.per_tensor_affine` on `torch.quint8` with `MinMaxObserver`: one scale
/// and zero point for the tensor, uint8 [0, 255], `scale = (max(hi, 0) − min(lo, 0)) / 255`.
using PerTensorAffine = Quantizer<>;
/// int8 weights, one symmetric scale per output channel (PyTorch's default weight scheme for QAT).
using Int8PerChannelSymmetric = Quantizer<qint8, MinMax, Symmetric, PerChannel>;
/// int8 per-channel affine.
using Int8PerChannelAffine = Quantizer<qint8, MinMax, Affine, PerChannel>;
/// int8 per-tensor symmetric.
using Int8PerTensorSymmetric = Quantizer<qint8, MinMax, Symmetric, PerTensor>;
/// uint8 activations with a moving-average range (PyTorch's default activation scheme for QAT).
using Uint8PerTensorAffine = Quantizer<quint8, MovingAverageMinMax, Affine, PerTensor>;
/// int4 weights, one symmetric scale per output channel.
using Int4PerChannelSymmetric = Quantizer<qint4, MinMax, Symmetric, PerChannel>;
/// int8 per channel with power-of-two scales (shift-only hardware).
using Int8PerChannelPowerOfTwo = Quantizer<qint8, MinMax, PowerOfTwo, PerChannel>;

}  // namespace minnow::quant
