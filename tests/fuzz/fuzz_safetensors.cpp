// Fuzz target: the safetensors reader (header JSON, offsets, dtypes) and loading a file into a model.
// Only a format_error may come out; a failed load leaves the model unchanged.
#include "fuzz_input.hpp"

#include <minnow/io/safetensors.hpp>
#include <minnow/io/sequential_safetensors.hpp>
#include <minnow/nn/models.hpp>

#include <cstdlib>
#include <vector>

namespace {

std::vector<float> snapshot(minnow::nn::Sequential<float>& model) {
  std::vector<float> values;
  for (const auto& p : model.parameters()) values.insert(values.end(), p.value.data(), p.value.data() + p.value.size());
  return values;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto* first = reinterpret_cast<const std::byte*>(data);
  minnow::io::SafetensorsLimits limits;
  limits.max_header_bytes = 1 << 16;
  try {
    const auto file = minnow::io::parse_safetensors(std::vector<std::byte>(first, first + size), "fuzz input", limits);
    for (const auto& t : file.tensors()) {
      if (t.dtype == minnow::io::Dtype::F32 || t.dtype == minnow::io::Dtype::F64 || t.dtype == minnow::io::Dtype::F16 ||
          t.dtype == minnow::io::Dtype::BF16) {
        (void)file.to_float(t.name);
      }
      (void)file.bytes(t.name);
    }
  } catch (const minnow::format_error&) {
  }
  // The seed corpus holds files of this network (tests/fuzz/make_corpus.cpp).
  auto model = minnow::nn::make_cnn<float>({}, {.conv1 = 2, .conv2 = 2, .hidden = 4}, 1);
  const auto before = snapshot(model);
  const minnow::fuzz::MemoryFile file(data, size);
  try {
    minnow::io::load_safetensors(model, file.path());
  } catch (const minnow::format_error&) {
    if (snapshot(model) != before) std::abort();
  }
  return 0;
}
