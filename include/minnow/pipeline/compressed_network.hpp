#pragma once
/// @file pipeline/compressed_network.hpp
/// @brief An IntegerNetwork to and from a compressed model file (io/compressed_model.hpp).
/// @code
///   pipeline::IntegerNetwork net(model, qmodel);  // input shape: that of the images it last ran on
///   const auto report = pipeline::save_compressed("student.minnow", net);   // where every byte went
///   auto loaded = pipeline::load_compressed("student.minnow");               // computes what `net` does, bit for bit
/// @endcode

#include <minnow/io/compressed_model.hpp>
#include <minnow/pipeline/integer_network.hpp>

#include <filesystem>

namespace minnow::pipeline {

/// @brief Writes what `net` computes to `path` atomically.
/// @throws value_error when the network was built without an input shape; io_error when the file cannot be written.
inline io::CompressedModelReport save_compressed(const std::filesystem::path& path, const IntegerNetwork& net) {
  return io::write_compressed_model(path, net.model());
}

/// @brief A ready IntegerNetwork from the compressed model file `path`, its layers run in the formats `plan`
/// chooses: the same plan as the network that was saved gives the same outputs, bit for bit.
/// @throws io_error for a missing or unreadable file; format_error naming the file, layer and problem for a
/// file that is not a valid compressed model; value_error for a plan that does not fit the model.
[[nodiscard]] inline IntegerNetwork load_compressed(const std::filesystem::path& path, const NetworkPlan& plan = {},
                                                    const io::CompressedModelLimits& limits = {}) {
  return IntegerNetwork(io::read_compressed_model(path, limits), plan);
}

}  // namespace minnow::pipeline
