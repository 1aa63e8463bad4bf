#pragma once
/// @file io/sequential_safetensors.hpp
/// @brief A Sequential<float>'s parameters as a safetensors file, interchangeable with PyTorch.
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

/// Writes every parameter of `model` as F32, in `model.parameters()` order, atomically.
/// @throws io_error naming the path when it cannot be written.
inline void save_safetensors(nn::Sequential<float>& model, const std::filesystem::path& path,
                             const std::map<std::string, std::string>& metadata = {}) {
  const std::vector<Parameter<float>> parameters = model.parameters();
  std::vector<SafetensorsTensor> tensors;
  tensors.reserve(parameters.size());
  for (const auto& p : parameters) {
    tensors.push_back(safetensors_tensor<float>(p.name, p.shape, std::span<const float>(p.value.data(), static_cast<std::size_t>(p.value.size()))));
  }
  write_safetensors(path, tensors, metadata);
}

/// Copies the tensors of `path` into `model`'s parameters. The file must hold exactly the model's
/// parameters, with the same shapes, as F32, F64, F16 or BF16 (converted to float); nothing in the model
/// changes unless the whole file is valid and matches.
/// @throws io_error when the file cannot be read; format_error when it breaks the format or does not match,
/// naming the tensor and both sides.
inline void load_safetensors(nn::Sequential<float>& model, const std::filesystem::path& path) {
  const SafetensorsFile file = read_safetensors(path);
  const std::vector<Parameter<float>> parameters = model.parameters();
  const std::string& source = file.source();
  for (const auto& p : parameters) {
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
    const bool known = std::any_of(parameters.begin(), parameters.end(), [&](const Parameter<float>& p) { return p.name == t.name; });
    if (!known) {
      throw format_error(minnow::detail::concat("'", source, "' has '", t.name, "' ", detail::shape_text(t.shape),
                                                ", which the model does not have"));
    }
  }
  // Everything matches: the conversions below cannot fail.
  for (const auto& p : parameters) {
    file.convert_to(p.name, std::span<float>(p.value.data(), static_cast<std::size_t>(p.value.size())));
  }
}

}  // namespace minnow::io
