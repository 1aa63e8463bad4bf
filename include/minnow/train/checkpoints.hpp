#pragma once
/// @file train/checkpoints.hpp
/// @brief A Sequential's training state (parameters, buffers, optimizer state and step count) as an
/// io/checkpoint.hpp file.

#include <minnow/io/checkpoint.hpp>
#include <minnow/nn/optimizer.hpp>
#include <minnow/nn/sequential.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>
#include <utility>
#include <vector>

namespace minnow::train {

/// Every parameter, buffer (running statistics) and optimizer state buffer, as checkpoint entries
/// ("fc1.weight", "bn1.running_mean", "fc1.weight.exp_avg", ...).
template <class T>
[[nodiscard]] std::vector<io::CheckpointEntry<T>> training_state(nn::Sequential<T>& model, nn::Optimizer<T>* optimizer) {
  std::vector<io::CheckpointEntry<T>> entries;
  for (auto& s : model.state()) entries.push_back({std::move(s.name), std::move(s.shape), s.value});
  if (optimizer != nullptr) {
    for (std::size_t i = 0; i < optimizer->parameters().size(); ++i) {
      const auto& p = optimizer->parameters()[i];
      for (const auto& s : optimizer->state(i)) entries.push_back({p.name + "." + s.name, p.shape, s.view});
    }
  }
  return entries;
}

/// Step counts above this are refused on load: a counter incremented from there never overflows.
inline constexpr std::int64_t max_step_count = std::int64_t{1} << 62;

/// Saves the model's parameters (and the optimizer's state and exact step count, when given) under `architecture`.
template <class T>
void save_training_state(const std::filesystem::path& path, std::string_view architecture, nn::Sequential<T>& model,
                         nn::Optimizer<T>* optimizer = nullptr) {
  std::int64_t steps = optimizer != nullptr ? optimizer->step_count() : 0;
  std::vector<io::CheckpointCounter> counters;
  if (optimizer != nullptr) counters.push_back({"optimizer.steps", &steps, 0, max_step_count});
  io::save_checkpoint<T>(path, architecture, training_state(model, optimizer), counters);
}

/// Loads what save_training_state wrote. A checkpoint of another architecture, with other optimizer state
/// or with a negative step count is refused with a format_error before anything is changed.
template <class T>
void load_training_state(const std::filesystem::path& path, std::string_view architecture, nn::Sequential<T>& model,
                         nn::Optimizer<T>* optimizer = nullptr) {
  std::int64_t steps = 0;
  std::vector<io::CheckpointCounter> counters;
  if (optimizer != nullptr) counters.push_back({"optimizer.steps", &steps, 0, max_step_count});
  io::load_checkpoint<T>(path, architecture, training_state(model, optimizer), io::ExtraEntries::refuse, counters);
  if (optimizer != nullptr) optimizer->set_step_count(steps);
}

/// Loads only the model's parameters from a checkpoint of save_training_state, with or without
/// optimizer state in it (e.g. to fine-tune or compress a trained model with a fresh optimizer).
template <class T>
void load_parameters(const std::filesystem::path& path, std::string_view architecture, nn::Sequential<T>& model) {
  io::load_checkpoint<T>(path, architecture, training_state<T>(model, nullptr), io::ExtraEntries::ignore);
}

}  // namespace minnow::train
