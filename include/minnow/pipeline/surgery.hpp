#pragma once
/// @file pipeline/surgery.hpp
/// @brief Structured surgery: a network whose filters / neurons an ln-structured mask pruned becomes a
/// smaller *dense* network that computes the same outputs.
///
/// A unit (conv filter or linear neuron, a slice along dim 0 of its weight) is removed when every mask
/// entry of its slice is 0. Its weights and bias go, and the next weighted layer loses the inputs the unit
/// fed: for conv → conv, input channel c; for conv → (ReLU, pool) → flatten → linear, the H·W block of
/// columns of channel c (7×7 in the reference CNNs). Surviving weights are copied as `w ⊙ mask`, so
/// partially masked slices compute what the masked network computes.
///
/// A removed unit still has its bias, so in the masked network it outputs a constant (bias, then whatever
/// ReLU and max pooling make of a constant: the same constant at every position). Removing it is exact when
/// that constant is 0; otherwise its contribution is folded into the next layer's bias (`b'[o] += v·Σ W[o, c,
/// …]`), which is exact for a Linear consumer and a Conv2d without padding. A padded Conv2d consumer sees
/// zeros at the border instead of the constant, so folding is not exact there: surgery throws value_error
/// naming the unit, and zero_pruned_biases() (PyTorch users prune the bias with the same mask) fixes it.
/// The last weighted layer keeps all its outputs (they are the network's outputs).
///
/// Supported chains: Conv2d, Linear, ReLU, MaxPool2d, Flatten. Any other layer throws value_error naming it.

#include <minnow/nn/activations.hpp>
#include <minnow/nn/conv2d.hpp>
#include <minnow/nn/linear.hpp>
#include <minnow/nn/maxpool2d.hpp>
#include <minnow/nn/sequential.hpp>
#include <minnow/prune/hook.hpp>

#include <algorithm>
#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace minnow::pipeline {

/// @brief One layer's mask, flat, with the logical shape it was made for (`[out, in, k, k]` or `[out, in]`).
template <class T>
struct NamedMask {
  std::string name;             ///< parameter name, e.g. "conv1.weight"
  std::vector<index_t> shape;   ///< logical shape of the mask
  TensorView<const T, 1> mask;  ///< 1 keeps, 0 prunes
};

/// @brief The smaller network and, per weighted layer, which of the original units survive.
template <class T>
struct SurgeryResult {
  nn::Sequential<T> network;
  /// Layer name → original indices of the kept output units, in order: new unit i is old unit kept[i].
  std::map<std::string, std::vector<index_t>> kept;
};

/// The masks a Pruner holds, as NamedMasks (views into the pruner: keep it alive while using them).
template <class T>
[[nodiscard]] std::vector<NamedMask<T>> masks_of(const prune::Pruner<T>& pruner) {
  std::vector<NamedMask<T>> out;
  for (const auto& e : pruner.entries()) out.push_back({e.name, e.shape, e.mask.view()});
  return out;
}

namespace detail {

/// A weighted layer of the chain, seen through what surgery needs.
template <class T>
struct Weighted {
  std::size_t index;
  std::string name;
  nn::Conv2d<T>* conv = nullptr;
  nn::Linear<T>* linear = nullptr;
  [[nodiscard]] index_t units() const { return conv ? conv->out_channels() : linear->out_features(); }
  [[nodiscard]] index_t inputs() const { return conv ? conv->in_channels() : linear->in_features(); }
  [[nodiscard]] index_t fan() const { return conv ? conv->in_channels() * conv->kernel() * conv->kernel() : linear->in_features(); }
  [[nodiscard]] const T* weight() const { return conv ? conv->weight().data() : linear->weight().data(); }
  [[nodiscard]] const T* bias() const { return conv ? conv->bias().data() : linear->bias().data(); }
  [[nodiscard]] std::vector<index_t> shape() const {
    if (conv) return {conv->out_channels(), conv->in_channels(), conv->kernel(), conv->kernel()};
    return {linear->out_features(), linear->in_features()};
  }
};

[[nodiscard]] inline std::string shape_text(const std::vector<index_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

}  // namespace detail

/// @brief Sets the bias of every fully pruned unit to 0, so its output in the masked network is 0 (what
/// surgery then removes exactly). Works on any `<layer>.weight` / `<layer>.bias` pair of the masks' names.
/// @throws value_error for a mask whose weight `net` does not hold; shape_error when a mask's size differs
///         from its weight's.
template <class T>
void zero_pruned_biases(nn::Sequential<T>& net, const std::vector<NamedMask<T>>& masks) {
  auto parameters = net.parameters();
  for (const auto& m : masks) {
    const auto dot = m.name.rfind(".weight");
    if (dot == std::string::npos || dot + 7 != m.name.size()) continue;
    const std::string layer = m.name.substr(0, dot);
    const auto& weight = find_parameter(parameters, m.name);
    if (weight.value.size() != m.mask.size()) {
      throw shape_error(minnow::detail::concat("zero_pruned_biases: mask of '", m.name, "' has ", m.mask.size(),
                                               " entries, the weight has ", weight.value.size()));
    }
    const auto it = std::find_if(parameters.begin(), parameters.end(), [&](const auto& p) { return p.name == layer + ".bias"; });
    if (it == parameters.end() || weight.shape.empty()) continue;
    const index_t units = weight.shape[0], fan = weight.value.size() / std::max<index_t>(units, 1);
    for (index_t u = 0; u < units; ++u) {
      const T* slice = m.mask.data() + u * fan;
      if (std::all_of(slice, slice + fan, [](T v) { return v == T(0); })) it->value.data()[u] = T(0);
    }
  }
}

/// A Pruner's masks: see the overload above.
template <class T>
void zero_pruned_biases(nn::Sequential<T>& net, const prune::Pruner<T>& pruner) {
  zero_pruned_biases(net, masks_of(pruner));
}

/// @brief Builds the smaller dense network (see the file comment). `net` is not changed; masks of layers it
/// does not hold are ignored, layers without a mask keep all their units.
/// @throws shape_error naming the layer when a mask's shape differs from its weight's; value_error naming
///         the layer when the chain holds a layer surgery cannot follow, every unit of a layer is pruned,
///         a Linear's inputs are not a whole number of positions per channel, or a removed unit's non-zero
///         output would have to be folded into a padded convolution.
template <class T>
[[nodiscard]] SurgeryResult<T> remove_pruned_units(nn::Sequential<T>& net, const std::vector<NamedMask<T>>& masks) {
  // 1. The weighted layers, and a check that everything between them is followable.
  std::vector<detail::Weighted<T>> weighted;
  for (std::size_t i = 0; i < net.size(); ++i) {
    auto& layer = net.layer(i);
    detail::Weighted<T> w{i, net.layer_name(i)};
    w.conv = dynamic_cast<nn::Conv2d<T>*>(&layer);
    w.linear = dynamic_cast<nn::Linear<T>*>(&layer);
    if (w.conv || w.linear) {
      weighted.push_back(w);
    } else if (!dynamic_cast<nn::ReLU<T>*>(&layer) && !dynamic_cast<nn::MaxPool2d<T>*>(&layer) &&
               !dynamic_cast<nn::Flatten<T>*>(&layer)) {
      throw value_error(minnow::detail::concat("remove_pruned_units: cannot follow layer '", net.layer_name(i), "' (",
                                               layer.describe(), "); supported: Conv2d, Linear, ReLU, MaxPool2d, Flatten"));
    }
  }

  // 2. Kept units of every weighted layer and the constant each removed unit outputs after the
  //    parameter-free layers that follow it (ReLU clamps it, pooling and flatten keep it).
  struct Plan {
    std::vector<index_t> kept;
    std::vector<std::pair<index_t, T>> removed_outputs;  // (unit, constant it feeds the next layer)
    std::vector<T> mask;                                 // flat, all ones when the layer has no mask
  };
  std::vector<Plan> plans(weighted.size());
  for (std::size_t k = 0; k < weighted.size(); ++k) {
    const auto& w = weighted[k];
    Plan& plan = plans[k];
    const index_t units = w.units(), fan = w.fan();
    plan.mask.assign(static_cast<std::size_t>(units * fan), T(1));
    const std::string pname = w.name + ".weight";
    const auto found = std::find_if(masks.begin(), masks.end(), [&](const NamedMask<T>& m) { return m.name == pname; });
    if (found != masks.end()) {
      if (found->shape != w.shape() || found->mask.size() != units * fan) {
        throw shape_error(minnow::detail::concat("remove_pruned_units: mask of layer '", w.name, "' has shape ",
                                                 detail::shape_text(found->shape), " (", found->mask.size(),
                                                 " entries), its weight has shape ", detail::shape_text(w.shape())));
      }
      std::copy_n(found->mask.data(), units * fan, plan.mask.begin());
    }
    const bool last = k + 1 == weighted.size();
    for (index_t u = 0; u < units; ++u) {
      const T* slice = plan.mask.data() + u * fan;
      const bool alive = last || std::any_of(slice, slice + fan, [](T v) { return v != T(0); });
      if (alive) {
        plan.kept.push_back(u);
        continue;
      }
      T value = w.bias()[u];
      for (std::size_t i = w.index + 1; i < weighted[k + 1].index; ++i) {
        if (dynamic_cast<nn::ReLU<T>*>(&net.layer(i))) value = value < T(0) ? T(0) : value;
      }
      plan.removed_outputs.emplace_back(u, value);
    }
    if (plan.kept.empty()) {
      throw value_error(minnow::detail::concat("remove_pruned_units: every one of the ", units, " units of layer '", w.name,
                                               "' is pruned"));
    }
  }

  // 3. The new network, layer by layer, names kept.
  SurgeryResult<T> result;
  std::size_t next_weighted = 0;
  for (std::size_t i = 0; i < net.size(); ++i) {
    auto& layer = net.layer(i);
    const std::string& name = net.layer_name(i);
    if (next_weighted == weighted.size() || weighted[next_weighted].index != i) {
      if (auto* pool = dynamic_cast<nn::MaxPool2d<T>*>(&layer)) {
        result.network.add(name, nn::MaxPool2d<T>(pool->kernel(), pool->stride()));
      } else if (dynamic_cast<nn::ReLU<T>*>(&layer)) {
        result.network.add(name, nn::ReLU<T>());
      } else {
        result.network.add(name, nn::Flatten<T>());
      }
      continue;
    }
    const std::size_t k = next_weighted++;
    const auto& w = weighted[k];
    const Plan& plan = plans[k];
    const index_t fan = w.fan();
    // Inputs of this layer that survive: all of them for the first weighted layer, else the previous
    // layer's kept units (times positions per channel for a Linear after a conv).
    std::vector<index_t> in_kept;
    index_t per_unit = 1;
    if (k == 0) {
      for (index_t c = 0; c < w.inputs(); ++c) in_kept.push_back(c);
    } else {
      in_kept = plans[k - 1].kept;
      const index_t previous_units = weighted[k - 1].units();
      if (w.linear) {
        if (w.inputs() % previous_units != 0) {
          throw value_error(minnow::detail::concat("remove_pruned_units: layer '", w.name, "' has ", w.inputs(),
                                                   " inputs, not a whole number of positions for the ", previous_units,
                                                   " channels of '", weighted[k - 1].name, "'"));
        }
        per_unit = w.inputs() / previous_units;
      } else if (w.inputs() != previous_units) {
        throw value_error(minnow::detail::concat("remove_pruned_units: layer '", w.name, "' has ", w.inputs(),
                                                 " input channels, '", weighted[k - 1].name, "' gives ", previous_units));
      }
    }
    const index_t taps = w.conv ? w.conv->kernel() * w.conv->kernel() : per_unit;  // weights per (unit, input)
    const auto new_in = static_cast<index_t>(in_kept.size());
    const auto new_out = static_cast<index_t>(plan.kept.size());
    T* new_weight = nullptr;
    T* new_bias = nullptr;
    if (w.conv) {
      auto& conv = result.network.add(name, nn::Conv2d<T>(new_in, new_out, w.conv->kernel(), w.conv->stride(), w.conv->padding()));
      new_weight = conv.weight().data();
      new_bias = conv.bias().data();
    } else {
      auto& linear = result.network.add(name, nn::Linear<T>(new_in * per_unit, new_out));
      new_weight = linear.weight().data();
      new_bias = linear.bias().data();
    }
    for (index_t o = 0; o < new_out; ++o) {
      const index_t u = plan.kept[static_cast<std::size_t>(o)];
      const T* src = w.weight() + u * fan;
      const T* m = plan.mask.data() + u * fan;
      T* dst = new_weight + o * new_in * taps;
      for (index_t c = 0; c < new_in; ++c) {
        const index_t old = in_kept[static_cast<std::size_t>(c)];
        for (index_t t = 0; t < taps; ++t) dst[c * taps + t] = m[old * taps + t] != T(0) ? src[old * taps + t] : T(0);
      }
      // Removed inputs that carry a non-zero constant: fold Σ_taps W·v into the bias.
      double b = static_cast<double>(w.bias()[u]);
      if (k > 0) {
        for (const auto& [removed, value] : plans[k - 1].removed_outputs) {
          if (value == T(0)) continue;
          if (w.conv && w.conv->padding() > 0) {
            throw value_error(minnow::detail::concat(
                "remove_pruned_units: unit ", removed, " of layer '", weighted[k - 1].name, "' is pruned but outputs ", value,
                " (its bias), which padded layer '", w.name, "' cannot absorb; call zero_pruned_biases first"));
          }
          for (index_t t = 0; t < taps; ++t) {
            if (m[removed * taps + t] != T(0)) b += static_cast<double>(src[removed * taps + t]) * static_cast<double>(value);
          }
        }
      }
      new_bias[o] = static_cast<T>(b);
    }
    result.kept.emplace(w.name, plan.kept);
  }
  return result;
}

/// A Pruner's masks: see the overload above.
template <class T>
[[nodiscard]] SurgeryResult<T> remove_pruned_units(nn::Sequential<T>& net, const prune::Pruner<T>& pruner) {
  return remove_pruned_units(net, masks_of(pruner));
}

}  // namespace minnow::pipeline
