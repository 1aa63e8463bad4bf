// Fuzz target: the compressed model reader (Huffman codes, streams, layer geometry), then the network it
// builds, run once on a zero image when the model is small. Each input is tried as it is and with its
// checksum recomputed, so mutations reach the decoder behind the checksum. Only a format_error may come
// out of decoding; a decoded model must build and run.
#include "fuzz_input.hpp"

#include <minnow/io/compressed_model.hpp>
#include <minnow/pipeline/integer_network.hpp>

#include <cstdlib>
#include <variant>
#include <vector>

namespace {

// Running a model is only tried where every activation stays small: bounded input, padding and kernels.
bool small_enough_to_run(const minnow::infer::IntegerModel& model) {
  const auto& s = model.input_shape;
  if (s[0] * s[1] * s[2] > 4096 || model.layers.size() > 16) return false;
  for (const auto& layer : model.layers) {
    if (const auto* c = std::get_if<minnow::infer::IntegerConv>(&layer)) {
      if (c->padding > 4 || c->kernel > 16 || c->weights.values.dim(0) > 256) return false;
    } else if (const auto* l = std::get_if<minnow::infer::IntegerLinear>(&layer)) {
      if (l->weights.values.dim(0) > 4096) return false;
    }
  }
  return true;
}

void decode(const std::vector<std::byte>& bytes) {
  minnow::io::CompressedModelLimits limits;
  limits.max_layer_weights = 1 << 20;
  limits.max_layers = 64;
  minnow::infer::IntegerModel model;
  try {
    model = minnow::io::decode_compressed_model(bytes, "fuzz input", limits);
  } catch (const minnow::format_error&) {
    return;
  }
  if (!small_enough_to_run(model)) return;
  const auto shape = model.input_shape;
  minnow::pipeline::IntegerNetwork net(std::move(model));
  minnow::Tensor<float, 4> image({1, shape[0], shape[1], shape[2]});
  const auto logits = net.forward(image.view());
  if (logits.dim(0) != 1) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto* first = reinterpret_cast<const std::byte*>(data);
  std::vector<std::byte> bytes(first, first + size);
  decode(bytes);
  if (bytes.size() >= 8) {
    const std::uint32_t h = minnow::io::detail::fnv1a32(std::span<const std::byte>(bytes.data(), bytes.size() - 4));
    for (int i = 0; i < 4; ++i) bytes[bytes.size() - 4 + static_cast<std::size_t>(i)] = std::byte{static_cast<unsigned char>(h >> (8 * i))};
    decode(bytes);
  }
  return 0;
}
