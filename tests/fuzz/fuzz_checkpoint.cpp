// Fuzz target: the checkpoint reader, through the calls users make (load_training_state with an optimizer,
// load_parameters). Each input is tried as it is and with its checksum recomputed, so mutations reach the
// parser behind the checksum. Only a format_error may come out, and it must leave the model unchanged.
#include "fuzz_input.hpp"

#include <minnow/nn/adam.hpp>
#include <minnow/nn/models.hpp>
#include <minnow/train/checkpoints.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

using minnow::nn::Sequential;

// The network of the seed corpus: conv 1→2, conv 2→2, fc 98→4→10 (tests/fuzz/make_corpus.cpp).
Sequential<float> tiny_cnn() { return minnow::nn::make_cnn<float>({}, {.conv1 = 2, .conv2 = 2, .hidden = 4}, 1); }

std::vector<float> snapshot(Sequential<float>& model) {
  std::vector<float> values;
  for (const auto& p : model.parameters()) values.insert(values.end(), p.value.data(), p.value.data() + p.value.size());
  return values;
}

void load(const std::vector<std::uint8_t>& bytes) {
  const minnow::fuzz::MemoryFile file(bytes.data(), bytes.size());
  auto model = tiny_cnn();
  minnow::nn::Adam<float> adam(model.parameters());
  const auto before = snapshot(model);
  try {
    minnow::train::load_training_state(file.path(), "fuzz", model, static_cast<minnow::nn::Optimizer<float>*>(&adam));
    if (adam.step_count() < 0) std::abort();
  } catch (const minnow::format_error&) {
    if (snapshot(model) != before || adam.step_count() != 0) std::abort();
  }
  auto weights_only = tiny_cnn();
  try {
    minnow::train::load_parameters(file.path(), "fuzz", weights_only);
  } catch (const minnow::format_error&) {
    if (snapshot(weights_only) != before) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::uint8_t> bytes(data, data + size);
  load(bytes);
  if (bytes.size() >= 16) {
    minnow::io::detail::Fnv1a hash;
    hash.update(bytes.data(), bytes.size() - 8);
    std::memcpy(bytes.data() + bytes.size() - 8, &hash.state, 8);
    load(bytes);
  }
  return 0;
}
