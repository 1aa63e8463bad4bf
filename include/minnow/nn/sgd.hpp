#pragma once
/// @file nn/sgd.hpp
/// @brief Stochastic gradient descent with momentum, dampening, Nesterov and weight decay (torch.optim.SGD).

#include <minnow/nn/optimizer.hpp>

namespace minnow::nn {

struct SgdOptions {
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

/// @brief Per element, as PyTorch does it:
/// `g = grad + wd·p`; with momentum `buf = g` on the first step, then `buf = μ·buf + (1 − dampening)·g`;
/// `g = nesterov ? g + μ·buf : buf`; `p −= lr·g`.
template <class T>
class Sgd final : public Optimizer<T> {
 public:
  /// @throws value_error on negative hyper-parameters, or Nesterov without momentum / with dampening.
  Sgd(std::vector<Parameter<T>> parameters, double learning_rate, SgdOptions options = {})
      : Optimizer<T>(std::move(parameters), learning_rate), options_(options) {
    this->check_hyper(options.momentum >= 0.0, "momentum", options.momentum);
    this->check_hyper(options.weight_decay >= 0.0, "weight_decay", options.weight_decay);
    this->check_hyper(options.dampening >= 0.0, "dampening", options.dampening);
    if (options.nesterov && (options.momentum <= 0.0 || options.dampening != 0.0)) {
      throw value_error("Sgd: Nesterov momentum requires momentum > 0 and dampening = 0");
    }
    if (options.momentum != 0.0) momentum_ = this->make_buffers();
  }

  void step() override {
    const T lr = static_cast<T>(this->learning_rate_), mu = static_cast<T>(options_.momentum);
    const T wd = static_cast<T>(options_.weight_decay), keep = static_cast<T>(1.0 - options_.dampening);
    const bool first = this->steps_ == 0;
    for (std::size_t i = 0; i < this->parameters_.size(); ++i) {
      const auto& param = this->parameters_[i];
      this->for_slices(param.value.size(), [&](index_t begin, index_t count) {
        auto p = param.value.slice(begin, begin + count).array();
        const auto grad = param.grad.slice(begin, begin + count).array();
        if (momentum_.empty()) {
          if (wd != T(0)) {
            p -= lr * (grad + wd * p);
          } else {
            p -= lr * grad;
          }
          return;
        }
        auto buf = momentum_[i].view().slice(begin, begin + count).array();
        if (first) {
          buf = grad + wd * p;
        } else {
          buf = mu * buf + keep * (grad + wd * p);
        }
        if (options_.nesterov) {
          p -= lr * ((grad + wd * p) + mu * buf);
        } else {
          p -= lr * buf;
        }
      });
    }
    ++this->steps_;
  }

  [[nodiscard]] std::vector<StateView<T>> state(std::size_t index) override {
    if (momentum_.empty()) return {};
    return {{"momentum_buffer", momentum_.at(index).view()}};
  }
  using Optimizer<T>::state;

 private:
  SgdOptions options_;
  std::vector<Tensor<T, 1>> momentum_;
};

}  // namespace minnow::nn
