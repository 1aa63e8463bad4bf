#pragma once
/// @file nn/optimizer.hpp
/// @brief The optimizer interface: parameters in, `step()`, and per-parameter state views.

#include <minnow/detail/parallel.hpp>
#include <minnow/parameter.hpp>

#include <cmath>
#include <string>
#include <string_view>
#include <vector>

namespace minnow::nn {

/// @brief Updates a list of named parameters from their gradients.
///
/// The optimizer keeps views, not copies: the model owns the values and gradients. Its own per-element
/// state (momentum, moments) is reachable by parameter through `state()`, which is what pruning uses to
/// keep masked weights from coming back through momentum.
template <class T>
class Optimizer {
 public:
  /// @throws value_error when the learning rate is negative or NaN.
  Optimizer(std::vector<Parameter<T>> parameters, double learning_rate) : parameters_(std::move(parameters)) {
    set_learning_rate(learning_rate);
  }
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  /// One update of every parameter from its current gradient.
  virtual void step() = 0;

  /// The per-element state of parameter `index` (empty for plain SGD).
  [[nodiscard]] virtual std::vector<StateView<T>> state(std::size_t index) = 0;

  /// The per-element state of the parameter called `name`. @throws value_error when there is none.
  [[nodiscard]] std::vector<StateView<T>> state(std::string_view name) {
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
      if (parameters_[i].name == name) return state(i);
    }
    throw value_error(minnow::detail::concat("optimizer has no parameter named '", name, "'"));
  }

  [[nodiscard]] const std::vector<Parameter<T>>& parameters() const noexcept { return parameters_; }
  [[nodiscard]] double learning_rate() const noexcept { return learning_rate_; }
  void set_learning_rate(double learning_rate) {
    if (!(learning_rate >= 0.0) || !std::isfinite(learning_rate)) {
      throw value_error(minnow::detail::concat("learning rate must be finite and >= 0, got ", learning_rate));
    }
    learning_rate_ = learning_rate;
  }
  /// Steps taken so far (restored by checkpoints, used by Adam's bias correction).
  [[nodiscard]] std::int64_t step_count() const noexcept { return steps_; }
  /// @throws value_error for a negative count.
  void set_step_count(std::int64_t steps) {
    if (steps < 0) throw value_error(minnow::detail::concat("optimizer: step count must be >= 0, got ", steps));
    steps_ = steps;
  }

 protected:
  /// One zero-filled buffer per parameter, shaped like it.
  [[nodiscard]] std::vector<Tensor<T, 1>> make_buffers() const {
    std::vector<Tensor<T, 1>> buffers;
    buffers.reserve(parameters_.size());
    for (const auto& p : parameters_) buffers.emplace_back(Shape<1>{p.value.size()});
    return buffers;
  }

  /// Runs `update(begin, count)` over [0, size) in contiguous slices, one per thread when the
  /// parameter is large (the updates are element-wise, so the result does not depend on the split).
  template <class Update>
  static void for_slices(index_t size, Update&& update) {
    const int threads = size < (1 << 16) ? 1 : minnow::detail::max_threads();
    minnow::detail::parallel_for(threads, threads, [&](long t, int) {
      const index_t begin = size * t / threads, end = size * (t + 1) / threads;
      if (begin < end) update(begin, end - begin);
    });
  }

  static void check_hyper(bool ok, const char* what, double value) {
    if (!ok) throw value_error(minnow::detail::concat("optimizer: invalid ", what, " ", value));
  }

  std::vector<Parameter<T>> parameters_;
  double learning_rate_ = 0.0;
  std::int64_t steps_ = 0;
};

}  // namespace minnow::nn
