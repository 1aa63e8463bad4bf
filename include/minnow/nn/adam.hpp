#pragma once
/// @file nn/adam.hpp
/// @brief Adam and AdamW (torch.optim.Adam / AdamW, including amsgrad).

#include <minnow/nn/optimizer.hpp>

#include <cmath>

namespace minnow::nn {

struct AdamOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool amsgrad = false;
  /// false: L2 penalty added to the gradient (Adam); true: decoupled decay `p *= 1 − lr·wd` (AdamW).
  bool decoupled_weight_decay = false;
};

/// @brief Per element, with t the step number:
/// `m = β1·m + (1 − β1)·g`, `v = β2·v + (1 − β2)·g²`,
/// `p −= (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + eps)` (√max(v) with amsgrad).
template <class T>
class Adam : public Optimizer<T> {
 public:
  /// @throws value_error on betas outside [0, 1), eps < 0 or weight_decay < 0.
  Adam(std::vector<Parameter<T>> parameters, double learning_rate = 1e-3, AdamOptions options = {})
      : Optimizer<T>(std::move(parameters), learning_rate), options_(options) {
    this->check_hyper(options.beta1 >= 0.0 && options.beta1 < 1.0, "beta1", options.beta1);
    this->check_hyper(options.beta2 >= 0.0 && options.beta2 < 1.0, "beta2", options.beta2);
    this->check_hyper(options.eps >= 0.0, "eps", options.eps);
    this->check_hyper(options.weight_decay >= 0.0, "weight_decay", options.weight_decay);
    exp_avg_ = this->make_buffers();
    exp_avg_sq_ = this->make_buffers();
    if (options.amsgrad) max_exp_avg_sq_ = this->make_buffers();
  }

  void step() override {
    ++this->steps_;
    const double t = static_cast<double>(this->steps_);
    const double lr = this->learning_rate_;
    const T b1 = static_cast<T>(options_.beta1), b2 = static_cast<T>(options_.beta2);
    const T step_size = static_cast<T>(lr / (1.0 - std::pow(options_.beta1, t)));
    const T correction2_sqrt = static_cast<T>(std::sqrt(1.0 - std::pow(options_.beta2, t)));
    const T eps = static_cast<T>(options_.eps), wd = static_cast<T>(options_.weight_decay);
    const T decay = static_cast<T>(1.0 - lr * options_.weight_decay);
    for (std::size_t i = 0; i < this->parameters_.size(); ++i) {
      const auto& param = this->parameters_[i];
      this->for_slices(param.value.size(), [&](index_t begin, index_t count) {
        const index_t end = begin + count;
        auto p = param.value.slice(begin, end).array();
        const auto grad = param.grad.slice(begin, end).array();
        auto m = exp_avg_[i].view().slice(begin, end).array();
        auto v = exp_avg_sq_[i].view().slice(begin, end).array();
        if (options_.decoupled_weight_decay) {
          if (wd != T(0)) p *= decay;
          m = b1 * m + (T(1) - b1) * grad;
          v = b2 * v + (T(1) - b2) * grad.square();
        } else {
          m = b1 * m + (T(1) - b1) * (grad + wd * p);
          v = b2 * v + (T(1) - b2) * (grad + wd * p).square();
        }
        if (options_.amsgrad) {
          auto v_max = max_exp_avg_sq_[i].view().slice(begin, end).array();
          v_max = v_max.max(v);
          p -= step_size * m / (v_max.sqrt() / correction2_sqrt + eps);
        } else {
          p -= step_size * m / (v.sqrt() / correction2_sqrt + eps);
        }
      });
    }
  }

  [[nodiscard]] std::vector<StateView<T>> state(std::size_t index) override {
    std::vector<StateView<T>> out{{"exp_avg", exp_avg_.at(index).view()}, {"exp_avg_sq", exp_avg_sq_.at(index).view()}};
    if (options_.amsgrad) out.push_back({"max_exp_avg_sq", max_exp_avg_sq_.at(index).view()});
    return out;
  }
  using Optimizer<T>::state;

 private:
  AdamOptions options_;
  std::vector<Tensor<T, 1>> exp_avg_, exp_avg_sq_, max_exp_avg_sq_;
};

/// AdamW: Adam with decoupled weight decay (default 0.01, as in PyTorch).
template <class T>
class AdamW final : public Adam<T> {
 public:
  AdamW(std::vector<Parameter<T>> parameters, double learning_rate = 1e-3, AdamOptions options = {.weight_decay = 0.01})
      : Adam<T>(std::move(parameters), learning_rate, with_decoupled(options)) {}

 private:
  static AdamOptions with_decoupled(AdamOptions options) {
    options.decoupled_weight_decay = true;
    return options;
  }
};

}  // namespace minnow::nn
