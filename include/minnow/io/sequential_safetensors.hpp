#pragma once
/// @file io/sequential_safetensors.hpp
/// @brief A Sequential<float>'s parameters and buffers as a safetensors file, interchangeable with PyTorch.
///
/// Parameter names and layouts ("conv1.weight" [out, in, kh, kw], "fc1.weight" [out, in], biases [out]) are
/// those of PyTorch's `state_dict` for a module with the same attribute names, so
/// `safetensors.torch.save_file(model.state_dict(), path)` output loads here and the reverse.

#include <minnow/error.hpp>
#include <minnow/io/safetensors.hpp>
#include <minnow/nn/sequential.hpp>
#include <minnow/parameter.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace minnow::io {

/// Writes every parameter and buffer of `model` (`model.state()`) as F32, in that order, atomically.
/// @throws io_error naming the path when it cannot be written.
inline void save_safetensors(nn::Sequential<float>& model, const std::filesystem::path& path,
                             const std::map<std::string, std::string>& metadata = {}) {
  const std::vector<Buffer<float>> state = model.state();
  std::vector<SafetensorsTensor> tensors;
  tensors.reserve(state.size());
  for (const auto& p : state) {
    tensors.push_back(safetensors_tensor<float>(p.name, p.shape, std::span<const float>(p.value.data(), static_cast<std::size_t>(p.value.size()))));
  }
  write_safetensors(path, tensors, metadata);
}

/// Copies the tensors of `path` into `model`'s parameters and buffers. The file must hold exactly those
/// (`model.state()`), with the same shapes, as F32, F64, F16 or BF16 (converted to float); nothing in the model
/// changes unless the whole file is valid and matches. PyTorch's BatchNorm counters ("bn1.num_batches_tracked"
/// beside "bn1.running_mean") are accepted and ignored: minnow's BatchNorm2d does not use them.
/// @throws io_error when the file cannot be read; format_error when it breaks the format or does not match,
/// naming the tensor and both sides.
inline void load_safetensors(nn::Sequential<float>& model, const std::filesystem::path& path) {
  const SafetensorsFile file = read_safetensors(path);
  const std::vector<Buffer<float>> state = model.state();
  const std::string& source = file.source();
  for (const auto& p : state) {
    if (!file.contains(p.name)) {
      throw format_error(minnow::detail::concat("the model's '", p.name, "' ", detail::shape_text(p.shape), " is missing from '", source, "'"));
    }
    const SafetensorsInfo& t = file.tensor(p.name);
    if (t.shape != p.shape) {
      throw format_error(minnow::detail::concat("the model's '", p.name, "' ", detail::shape_text(p.shape), " is ",
                                                detail::shape_text(t.shape), " in '", source, "'"));
    }
    if (t.dtype != Dtype::F32 && t.dtype != Dtype::F64 && t.dtype != Dtype::F16 && t.dtype != Dtype::BF16) {
      throw format_error(minnow::detail::concat("the model's '", p.name, "' is float but ", dtype_name(t.dtype), " in '", source,
                                                "' (floating-point dtypes only)"));
    }
  }
  for (const auto& t : file.tensors()) {
    const auto has = [&](const std::string& name) {
      return std::any_of(state.begin(), state.end(), [&](const Buffer<float>& p) { return p.name == name; });
    };
    const std::string counter = ".num_batches_tracked";
    const bool batchnorm_counter = t.name.size() > counter.size() && t.name.ends_with(counter) &&
                                   has(t.name.substr(0, t.name.size() - counter.size()) + ".running_mean");
    if (!has(t.name) && !batchnorm_counter) {
      throw format_error(minnow::detail::concat("'", source, "' has '", t.name, "' ", detail::shape_text(t.shape),
                                                ", which the model does not have"));
    }
  }
  // Everything matches: the conversions below cannot fail.
  for (const auto& p : state) {
    file.convert_to(p.name, std::span<float>(p.value.data(), static_cast<std::size_t>(p.value.size())));
  }
}

}  // namespace minnow::io
