#pragma once
/// @file prune/hook.hpp
/// @brief minnow::prune::Pruner: masks kept by parameter name, enforced on weights, gradients and
/// optimizer state after every optimizer step.
///
/// Typical use with minnow's optimizers (any loop works the same way; it only needs views):
/// @code
///   prune::Pruner<float> pruner;
///   for (const auto& p : model.parameters()) pruner.track(p, optimizer.state(p.name));
///   pruner.l1_unstructured("fc1.weight", prune::Fraction{0.9});
///   trainer.add_hook([&](std::int64_t) { pruner.apply(); });   // after every optimizer.step()
/// @endcode
/// A weight of your own loop, of any rank, keeps its shape (views of your memory, never copies):
/// @code
///   pruner.track("conv1.weight", w.view(), dw.view());        // Tensor<float, 4> w, dw: shape [o, i, kh, kw]
///   pruner.l1_unstructured("conv1.weight", prune::Fraction{0.5});
///   // your step: w -= lr · dw; then pruner.apply();
/// @endcode
/// Why state too: a pruned weight's gradient is not zero (the loss still depends on that input), so
/// the optimizer moves it off zero and, through momentum or Adam's moments, would keep moving it.
/// apply() sets the weight, its gradient and every state buffer back to 0 where the mask is 0.

#include <minnow/parameter.hpp>
#include <minnow/prune/criteria.hpp>
#include <minnow/prune/mask.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace minnow::prune {

/// @brief Holds one 0/1 mask per tracked parameter and keeps the parameter, its gradient and its
/// optimizer state at exactly zero where the mask is 0.
/// @tparam T scalar type of the parameters.
template <Scalar T>
class Pruner {
 public:
  /// @brief What the pruner knows about one parameter. The views are the caller's memory.
  struct Entry {
    std::string name;
    std::vector<index_t> shape;          ///< logical shape (structured criteria need it)
    TensorView<T, 1> value;              ///< the weights
    TensorView<T, 1> grad;               ///< the gradient (may be empty)
    std::vector<StateView<T>> state;     ///< optimizer buffers shaped like the weights
    Tensor<T, 1> mask;                   ///< 1 keeps, 0 prunes
  };

  /// @brief Starts tracking a minnow Parameter with an all-ones mask; pass `optimizer.state(p.name)`
  /// as `state` to have momentum / Adam moments zeroed too.
  /// @throws value_error for a duplicate name; shape_error for a gradient or state view whose size differs.
  void track(const Parameter<T>& parameter, std::vector<StateView<T>> state = {}) {
    track(parameter.name, parameter.value, parameter.grad, std::move(state), parameter.shape);
  }

  /// @brief Starts tracking raw views (a training loop that is not minnow's). `grad` may be empty;
  /// `shape` defaults to `{value.size()}`.
  /// @throws value_error for a duplicate name; shape_error for sizes that differ from `value`'s or a
  /// shape that does not describe `value.size()` elements.
  void track(std::string name, TensorView<T, 1> value, TensorView<T, 1> grad = {}, std::vector<StateView<T>> state = {},
             std::vector<index_t> shape = {}) {
    if (find(name) != nullptr) throw value_error(minnow::detail::concat("Pruner: '", name, "' is already tracked"));
    if (!grad.empty() && grad.size() != value.size()) {
      throw shape_error(minnow::detail::concat("Pruner: gradient of '", name, "' has ", grad.size(),
                                               " elements, the value has ", value.size()));
    }
    check_state(name, value, state);
    if (shape.empty()) shape = {value.size()};
    const std::string context = minnow::detail::concat("Pruner: logical shape of '", name, "'");
    const index_t product = minnow::detail::checked_product(shape, context.c_str());
    if (product != value.size()) {
      throw shape_error(minnow::detail::concat("Pruner: logical shape of '", name, "' has ", product,
                                               " elements, the value has ", value.size()));
    }
    Entry entry{std::move(name), std::move(shape), value, grad, std::move(state), ones_mask<T>(Shape<1>{value.size()})};
    entries_.push_back(std::move(entry));
  }

  /// @brief Starts tracking a weight of any rank ≥ 2 that keeps its own shape: a user's
  /// `Tensor<float, 4>` conv weight (`w.view()`) or a raw buffer (`TensorView<float, 4>(ptr, {o, i, kh, kw})`).
  /// The logical shape that structured criteria use is the view's shape. `grad` may be empty.
  /// @throws value_error for a duplicate name; shape_error when `grad` is not empty and its shape differs
  /// from `value`'s, or a state view's size differs.
  template <std::size_t R>
    requires(R >= 2)
  void track(std::string name, TensorView<T, R> value, TensorView<T, R> grad = {}, std::vector<StateView<T>> state = {}) {
    if (!grad.empty() && grad.shape() != value.shape()) {
      throw shape_error(minnow::detail::concat("Pruner: gradient of '", name, "' has shape ", to_string(grad.shape()),
                                               ", the value has shape ", to_string(value.shape())));
    }
    const auto flat = [](TensorView<T, R> v) { return TensorView<T, 1>(v.data(), Shape<1>{v.size()}); };
    track(std::move(name), flat(value), grad.empty() ? TensorView<T, 1>{} : flat(grad), std::move(state),
          std::vector<index_t>(value.shape().begin(), value.shape().end()));
  }

  /// @brief Replaces the optimizer state views of a tracked parameter (e.g. after creating the optimizer).
  /// @throws value_error for an unknown name; shape_error for a view whose size differs.
  void set_state(std::string_view name, std::vector<StateView<T>> state) {
    Entry& e = at(name);
    check_state(e.name, e.value, state);
    e.state = std::move(state);
  }

  /// @brief Whether a parameter of that name is tracked (make_permanent stops tracking it).
  [[nodiscard]] bool tracks(std::string_view name) const noexcept { return find(name) != nullptr; }
  /// @brief The tracked parameters, in the order they were added.
  [[nodiscard]] const std::vector<Entry>& entries() const noexcept { return entries_; }
  /// @brief The mask of a tracked parameter. @throws value_error for an unknown name.
  [[nodiscard]] TensorView<const T, 1> mask(std::string_view name) const { return at(name).mask.view(); }

  /// @brief Prunes the smallest |w| survivors of one parameter, then applies the mask (see l1_unstructured).
  index_t l1_unstructured(std::string_view name, const Amount& amount) {
    Entry& e = at(name);
    return enforce(e, prune::l1_unstructured(e.value, e.mask.view(), amount));
  }
  /// @brief Prunes random survivors of one parameter, then applies the mask (see random_unstructured).
  index_t random_unstructured(std::string_view name, const Amount& amount, std::mt19937_64& rng) {
    Entry& e = at(name);
    return enforce(e, prune::random_unstructured(e.mask.view(), amount, rng));
  }
  /// @brief Prunes the smallest-Ln-norm slices along `dim` of the parameter's logical shape (see ln_structured).
  index_t ln_structured(std::string_view name, const Amount& amount, double n, int dim) {
    Entry& e = at(name);
    return enforce(e, prune::ln_structured(e.value, std::span<const index_t>(e.shape), e.mask.view(), amount, n, dim));
  }
  /// @brief Prunes random surviving slices along `dim` (see random_structured).
  index_t random_structured(std::string_view name, const Amount& amount, int dim, std::mt19937_64& rng) {
    Entry& e = at(name);
    return enforce(e, prune::random_structured(e.mask.view(), std::span<const index_t>(e.shape), amount, dim, rng));
  }
  /// @brief Composes a user-supplied 0/1 mask (flat, the parameter's size) onto the parameter's mask.
  index_t custom_from_mask(std::string_view name, TensorView<const T, 1> user_mask) {
    Entry& e = at(name);
    return enforce(e, prune::custom_from_mask(e.mask.view(), user_mask));
  }
  /// @brief One L1 ranking over the survivors of the named parameters (all tracked ones when `names`
  /// is empty), in tracking order for ties (see global_unstructured).
  /// @throws value_error for an unknown name.
  index_t global_unstructured(const Amount& amount, const std::vector<std::string>& names = {}) {
    std::vector<Entry*> chosen;
    if (names.empty()) {
      for (auto& e : entries_) chosen.push_back(&e);
    } else {
      for (const auto& n : names) chosen.push_back(&at(n));
    }
    std::vector<MaskedView<T>> targets;
    for (Entry* e : chosen) targets.push_back({e->value, e->mask.view()});
    const index_t pruned = prune::global_unstructured<T>(targets, amount);
    for (Entry* e : chosen) enforce(*e, pruned);
    return pruned;
  }

  /// @brief Call after every optimizer step: weights, gradients and state are set to 0 where the mask
  /// is 0, in one fused streaming pass per parameter (threads over contiguous ranges when large).
  void apply() {
    for (auto& e : entries_) enforce(e, 1);
  }
  /// @brief Zeroes only the masked gradients: call between backward and the optimizer step when the
  /// optimizer should never see them (apply() alone is enough to keep pruned weights at 0).
  void mask_gradients() {
    for (auto& e : entries_) {
      if (e.grad.empty()) continue;
      T* const targets[] = {e.grad.data()};
      detail::keep_where<T>(e.mask.data(), targets, e.mask.size());
    }
  }

  /// @brief PyTorch's `prune.remove`: writes `w ⊙ mask` into the weights (gradient and state too) and
  /// forgets the mask; the zeros stay but nothing keeps them zero any more.
  /// @throws value_error for an unknown name.
  void make_permanent(std::string_view name) {
    Entry& e = at(name);
    enforce(e, 1);
    entries_.erase(entries_.begin() + (&e - entries_.data()));
  }
  /// @brief make_permanent for every tracked parameter.
  void make_permanent() {
    apply();
    entries_.clear();
  }

 private:
  [[nodiscard]] const Entry* find(std::string_view name) const noexcept {
    for (const auto& e : entries_) {
      if (e.name == name) return &e;
    }
    return nullptr;
  }
  [[nodiscard]] Entry& at(std::string_view name) {
    return const_cast<Entry&>(std::as_const(*this).at(name));
  }
  [[nodiscard]] const Entry& at(std::string_view name) const {
    const Entry* e = find(name);
    if (e == nullptr) throw value_error(minnow::detail::concat("Pruner: no parameter named '", name, "' is tracked"));
    return *e;
  }

  static void check_state(const std::string& name, TensorView<T, 1> value, const std::vector<StateView<T>>& state) {
    for (const auto& s : state) {
      if (s.view.size() != value.size()) {
        throw shape_error(minnow::detail::concat("Pruner: state '", s.name, "' of '", name, "' has ", s.view.size(),
                                                 " elements, the value has ", value.size()));
      }
    }
  }

  /// Applies e's mask to value, gradient and state when `pruned` is non-zero; returns `pruned`.
  /// The target list lives on the stack: this runs every step and must not allocate.
  static index_t enforce(Entry& e, index_t pruned) {
    if (pruned == 0) return 0;
    std::array<T*, 8> targets{};
    std::size_t count = 0;
    const auto add = [&](T* target) {
      if (count == targets.size()) {  // more than 8 streams: flush a batch
        detail::keep_where<T>(e.mask.data(), std::span<T* const>(targets.data(), count), e.mask.size());
        count = 0;
      }
      targets[count++] = target;
    };
    add(e.value.data());
    if (!e.grad.empty()) add(e.grad.data());
    for (const auto& s : e.state) add(s.view.data());
    detail::keep_where<T>(e.mask.data(), std::span<T* const>(targets.data(), count), e.mask.size());
    return pruned;
  }

  std::vector<Entry> entries_;
};

}  // namespace minnow::prune
