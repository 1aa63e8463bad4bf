#pragma once
/// @file nn/fuse.hpp
/// @brief Folding a BatchNorm2d into the convolution before it, for inference and post-training
/// quantization (PyTorch's `fuse_modules` / `fuse_conv_bn_eval`).

#include <minnow/nn/batchnorm2d.hpp>
#include <minnow/nn/conv2d.hpp>
#include <minnow/nn/sequential.hpp>

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

namespace minnow::nn {

/// @brief Folds eval-mode batch norm into the convolution: with r = 1 / √(running_var + eps),
/// `W'[o] = W[o] · (γ[o] · r[o])` and `b'[o] = (b[o] − running_mean[o]) · r[o] · γ[o] + β[o]`, evaluated in T in
/// PyTorch's order: the weights equal PyTorch's fused ones bit for bit, the bias up to the rounding of a
/// multiply-add the compiler may contract, and `conv'(x) = bn(conv(x))` in eval mode up to rounding. The
/// BatchNorm2d itself is left as it is.
/// @throws shape_error when the channel counts differ.
template <class T>
void fold_batchnorm(Conv2d<T>& conv, const BatchNorm2d<T>& bn) {
  if (conv.out_channels() != bn.channels()) {
    throw shape_error(minnow::detail::concat("fold_batchnorm: ", conv.describe(), " has ", conv.out_channels(),
                                             " output channels, ", bn.describe(), " normalizes ", bn.channels()));
  }
  const auto mean = bn.running_mean(), var = bn.running_var();
  const auto weight = conv.weight();
  const auto bias = conv.bias();
  const index_t per_channel = weight.size() / conv.out_channels();
  for (index_t o = 0; o < conv.out_channels(); ++o) {
    const T gamma = bn.affine() ? bn.weight()(o) : T(1);
    const T beta = bn.affine() ? bn.bias()(o) : T(0);
    const T r = T(1) / std::sqrt(var(o) + static_cast<T>(bn.eps()));
    const T factor = gamma * r;
    T* w = weight.data() + o * per_channel;
    for (index_t i = 0; i < per_channel; ++i) w[i] *= factor;
    bias(o) = (bias(o) - mean(o)) * r * gamma + beta;
  }
}

/// @brief Folds every BatchNorm2d that directly follows a Conv2d into it and removes it from `net`; returns the
/// names of the removed layers. The other layers keep their names and parameters, so a network trained with
/// batch norm becomes the conv → ReLU → pool chain that the fused kernels, post-training quantization and the
/// integer network take. Only for inference: the running statistics are what gets folded.
template <class T>
std::vector<std::string> fold_batchnorms(Sequential<T>& net) {
  std::vector<std::string> removed;
  for (std::size_t i = 0; i + 1 < net.size(); ++i) {
    auto* conv = dynamic_cast<Conv2d<T>*>(&net.layer(i));
    auto* bn = dynamic_cast<BatchNorm2d<T>*>(&net.layer(i + 1));
    if (conv == nullptr || bn == nullptr) continue;
    fold_batchnorm(*conv, *bn);
    removed.push_back(net.layer_name(i + 1));
    net.remove(removed.back());
  }
  return removed;
}

}  // namespace minnow::nn
