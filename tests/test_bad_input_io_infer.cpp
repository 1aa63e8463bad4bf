// Bad input to io/ and the integer inference path: the safetensors reader and writer, the compressed
// model reader and writer, infer::check_integer_model, pipeline::IntegerNetwork and the quantized layers.
// Each case checks the exception type, the words of its message, and that nothing the call was given
// changed (files on disk, byte buffers, models, outputs).
#include <minnow/error.hpp>
#include <minnow/infer/int_tensor.hpp>
#include <minnow/infer/integer_model.hpp>
#include <minnow/infer/quantized_conv2d.hpp>
#include <minnow/infer/quantized_linear.hpp>
#include <minnow/infer/quantized_maxpool.hpp>
#include <minnow/io/compressed_model.hpp>
#include <minnow/io/safetensors.hpp>
#include <minnow/io/sequential_safetensors.hpp>
#include <minnow/nn.hpp>
#include <minnow/pipeline/compressed_network.hpp>
#include <minnow/pipeline/integer_network.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <unistd.h>

using namespace minnow;
using Catch::Contains;
using test_support::file_bytes;
using test_support::raw;
using test_support::ScratchDir;
namespace fs = std::filesystem;

namespace {

void write_bytes(const fs::path& path, std::span<const std::byte> bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

/// A safetensors file: the header's length (u64, little-endian), the header, then `data_bytes` bytes.
std::vector<std::byte> safetensors_bytes(const std::string& header, std::size_t data_bytes) {
  std::vector<std::byte> out(8 + header.size() + data_bytes, std::byte{0});
  const std::uint64_t length = header.size();
  std::memcpy(out.data(), &length, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

/// flatten → fc: Linear(4, 3) on 1×2×2 images.
nn::Sequential<float> tiny_model(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  nn::Sequential<float> net;
  net.add("flatten", nn::Flatten<float>());
  net.add("fc", nn::Linear<float>(4, 3)).reset_parameters(rng);
  return net;
}

std::vector<std::vector<unsigned char>> snapshot(nn::Sequential<float>& model) {
  std::vector<std::vector<unsigned char>> out;
  for (const auto& p : model.parameters()) out.push_back(raw(p.value));
  return out;
}

/// Int8 weights [rows × cols] with varied values and one scale per row.
infer::Int8Weights int8_weights(const std::string& name, index_t rows, index_t cols) {
  infer::Int8Weights w{name, Tensor<std::int8_t, 2>({rows, cols}), {}, {-128, 127}};
  for (index_t i = 0; i < w.values.size(); ++i) w.values.data()[i] = static_cast<std::int8_t>((i * 37) % 255 - 127);
  w.params.assign(static_cast<std::size_t>(rows), quant::AffineParams{0.01f, 0});
  return w;
}

/// input [1, 6, 6] → conv1 1→2 (3×3, pad 1, ReLU, uint8, fused 2×2 pool) → flatten → fc1 18→3 (float logits).
infer::IntegerModel small_model() {
  infer::IntegerModel m;
  m.input_shape = {1, 6, 6};
  m.input = {0.02f, 3};
  m.layers.emplace_back(infer::IntegerConv{int8_weights("conv1.weight", 2, 9), 1, 3, 1, 1, {0.1f, -0.1f}, true,
                                           quant::AffineParams{0.05f, 0}, true});
  m.layers.emplace_back(infer::IntegerFlatten{});
  m.layers.emplace_back(infer::IntegerLinear{int8_weights("fc1.weight", 3, 18), {0.0f, 0.5f, -0.5f}, false, std::nullopt});
  return m;
}

infer::IntegerConv& conv_of(infer::IntegerModel& m) { return std::get<infer::IntegerConv>(m.layers[0]); }
infer::IntegerLinear& fc_of(infer::IntegerModel& m) { return std::get<infer::IntegerLinear>(m.layers[2]); }

/// Replaces the trailing FNV-1a checksum of a compressed model, so that an edit is read as written.
void resign(std::vector<std::byte>& bytes) {
  const std::uint32_t h = io::detail::fnv1a32(std::span<const std::byte>(bytes).first(bytes.size() - 4));
  for (int i = 0; i < 4; ++i) bytes[bytes.size() - 4 + static_cast<std::size_t>(i)] = std::byte{static_cast<unsigned char>(h >> (8 * i))};
}

}  // namespace

// ---- safetensors: reading ----

TEST_CASE("safetensors reader: paths that are not readable files are io_errors naming the path", "[bad_input][io][safetensors]") {
  const ScratchDir dir;
  SECTION("a missing file") {
    const fs::path missing = dir / "missing.safetensors";
    CHECK_REFUSED((void)io::read_safetensors(missing), io_error, Contains("cannot read safetensors file '" + missing.string() + "'"));
    CHECK_FALSE(fs::exists(missing));
  }
  SECTION("a directory") {
    CHECK_REFUSED((void)io::read_safetensors(dir.path()), io_error, Contains(dir.path().string()) && Contains("it is a directory"));
    CHECK(fs::is_directory(dir.path()));
  }
  SECTION("a file above the size limit is a format_error, and stays") {
    const fs::path big = dir / "big.safetensors";
    const auto bytes = safetensors_bytes("{}", 64);
    write_bytes(big, bytes);
    const auto before = file_bytes(big);
    CHECK_REFUSED((void)io::read_safetensors(big, {.max_file_bytes = 16}), format_error,
                  Contains(big.string()) && Contains("more than the limit of 16"));
    CHECK(file_bytes(big) == before);
  }
}

TEST_CASE("safetensors reader: every violation of the format is a format_error naming the file and the problem",
          "[bad_input][io][safetensors]") {
  const std::string source = "model.safetensors";
  std::vector<std::byte> bytes;
  SECTION("5 bytes: too short for the header length") {
    bytes.assign(5, std::byte{1});
    const auto before = bytes;
    CHECK_REFUSED((void)io::parse_safetensors(bytes, source), format_error,
                  Contains("safetensors 'model.safetensors': truncated: the file has 5 bytes"));
    CHECK(bytes == before);
  }
  SECTION("a header length of 1") {
    bytes = safetensors_bytes("{", 0);
    CHECK_REFUSED((void)io::parse_safetensors(bytes, source), format_error, Contains("the header length 1 is too small"));
  }
  SECTION("a header length beyond the file") {
    bytes = safetensors_bytes("{}", 2);
    bytes[0] = std::byte{100};
    CHECK_REFUSED((void)io::parse_safetensors(bytes, source), format_error,
                  Contains("truncated: the header length is 100 bytes but only 4 bytes follow it"));
  }
  SECTION("a header length above the limit") {
    bytes = safetensors_bytes("{}      ", 0);
    CHECK_REFUSED((void)io::parse_safetensors(bytes, source, {.max_header_bytes = 4}), format_error,
                  Contains("the header length 8 is above the limit of 4 bytes"));
  }
  SECTION("a header that is a JSON array") {
    bytes = safetensors_bytes("[1, 2]", 0);
    CHECK_REFUSED((void)io::parse_safetensors(bytes, source), format_error, Contains("the header does not start with '{'"));
  }
  SECTION("a header that is not JSON") {
    bytes = safetensors_bytes("{\"w\": ", 0);
    CHECK_REFUSED((void)io::parse_safetensors(bytes, source), format_error, Contains("the header is not valid JSON"));
  }
  SECTION("a header padded with NUL bytes") {
    bytes = safetensors_bytes(std::string("{}\0\0", 4), 0);
    CHECK_REFUSED((void)io::parse_safetensors(bytes, source), format_error, Contains("the header holds a NUL byte"));
  }
  SECTION("a tensor name given twice") {
    const std::string entry = R"({"dtype":"U8","shape":[1],"data_offsets":[0,1]})";
    bytes = safetensors_bytes("{\"w\":" + entry + ",\"w\":" + entry + "}", 1);
    CHECK_REFUSED((void)io::parse_safetensors(bytes, source), format_error, Contains("'w' appears more than once in the header"));
  }
  SECTION("a negative extent") {
    bytes = safetensors_bytes(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8);
    CHECK_REFUSED((void)io::parse_safetensors(bytes, source), format_error, Contains("tensor 'w': shape has a negative extent -2"));
  }
  SECTION("a shape of rank 9") {
    bytes = safetensors_bytes(R"({"w":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}})", 1);
    CHECK_REFUSED((void)io::parse_safetensors(bytes, source), format_error, Contains("tensor 'w': 'shape' has more than 8 elements"));
  }
  SECTION("an unsupported dtype") {
    bytes = safetensors_bytes(R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,1]}})", 1);
    CHECK_REFUSED((void)io::parse_safetensors(bytes, source), format_error, Contains("tensor 'w': unsupported dtype 'Q4'"));
  }
  SECTION("an unknown key in an entry") {
    bytes = safetensors_bytes(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"scale":1}})", 1);
    CHECK_REFUSED((void)io::parse_safetensors(bytes, source), format_error, Contains("tensor 'w': unknown key 'scale'"));
  }
  SECTION("data offsets past the end of the buffer") {
    bytes = safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4);
    CHECK_REFUSED((void)io::parse_safetensors(bytes, source), format_error,
                  Contains("tensor 'w': data_offsets [0, 8] reach past the end of the 4-byte data buffer"));
  }
  SECTION("data offsets that hold fewer bytes than the shape needs") {
    bytes = safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", 20);
    CHECK_REFUSED((void)io::parse_safetensors(bytes, source), format_error,
                  Contains("hold 20 bytes, but F32 [2,3] needs 24"));
  }
  SECTION("bytes that belong to no tensor") {
    bytes = safetensors_bytes(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", 5);
    CHECK_REFUSED((void)io::parse_safetensors(bytes, source), format_error, Contains("the data buffer has 3 trailing bytes"));
  }
  SECTION("__metadata__ that is not an object of strings") {
    bytes = safetensors_bytes(R"({"__metadata__":{"epochs":8}})", 0);
    CHECK_REFUSED((void)io::parse_safetensors(bytes, source), format_error, Contains("'__metadata__': 'epochs' is a JSON number"));
  }
}

TEST_CASE("SafetensorsFile: unknown names, other dtypes and destinations of the wrong size", "[bad_input][io][safetensors]") {
  const std::vector<float> values{1, 2, 3, 4, 5, 6};
  const auto file = io::parse_safetensors(io::serialize_safetensors({io::safetensors_tensor<float>("w", {2, 3}, values)}), "w.safetensors");
  SECTION("tensor of an unknown name") {
    CHECK_REFUSED((void)file.tensor("b"), format_error, Contains("safetensors 'w.safetensors' has no tensor 'b'"));
    CHECK_REFUSED((void)file.to_float("b"), format_error, Contains("no tensor 'b'"));
  }
  SECTION("values as another dtype") {
    CHECK_REFUSED((void)file.values<double>("w"), format_error, Contains("tensor 'w' is F32, not F64"));
  }
  SECTION("convert_to a destination of 5 floats leaves it as it was") {
    std::vector<float> out(5, -1.0f);
    CHECK_REFUSED(file.convert_to("w", out), shape_error, Contains("tensor 'w' has 6 elements, the destination 5"));
    CHECK(out == std::vector<float>(5, -1.0f));
  }
}

// ---- safetensors: writing ----

TEST_CASE("safetensors writer: names, shapes and sizes the format cannot hold, and the file on disk stays", "[bad_input][io][safetensors]") {
  const ScratchDir dir;
  const fs::path path = dir / "kept.safetensors";
  const std::vector<float> six{1, 2, 3, 4, 5, 6};
  io::write_safetensors(path, {io::safetensors_tensor<float>("old", {6}, six)});
  const auto before = file_bytes(path);
  std::vector<io::SafetensorsTensor> tensors;
  SECTION("an empty name") {
    tensors = {io::safetensors_tensor<float>("", {6}, six)};
    CHECK_REFUSED(io::write_safetensors(path, tensors), value_error, Contains("write_safetensors: a tensor has an empty name"));
  }
  SECTION("a name given twice") {
    tensors = {io::safetensors_tensor<float>("w", {6}, six), io::safetensors_tensor<float>("w", {2, 3}, six)};
    CHECK_REFUSED(io::write_safetensors(path, tensors), value_error, Contains("tensor 'w' is given twice"));
  }
  SECTION("the reserved name __metadata__") {
    tensors = {io::safetensors_tensor<float>("__metadata__", {6}, six)};
    CHECK_REFUSED(io::write_safetensors(path, tensors), value_error, Contains("'__metadata__' is reserved"));
  }
  SECTION("a negative extent") {
    tensors = {io::safetensors_tensor<float>("w", {-2, -3}, six)};
    CHECK_REFUSED(io::write_safetensors(path, tensors), value_error, Contains("tensor 'w' has shape [-2,-3]"));
  }
  SECTION("rank 9") {
    tensors = {io::safetensors_tensor<float>("w", {1, 1, 1, 1, 1, 1, 1, 2, 3}, six)};
    CHECK_REFUSED(io::write_safetensors(path, tensors), value_error, Contains("tensor 'w' has rank 9, above 8"));
  }
  SECTION("a shape of 5 elements for 6 values") {
    tensors = {io::safetensors_tensor<float>("w", {5}, six)};
    CHECK_REFUSED(io::write_safetensors(path, tensors), shape_error, Contains("tensor 'w' is F32 [5] but has 24 bytes"));
  }
  SECTION("a name that is not UTF-8") {
    tensors = {io::safetensors_tensor<float>("w\xff", {6}, six)};
    CHECK_REFUSED(io::write_safetensors(path, tensors), value_error, Contains("is not valid UTF-8"));
  }
  SECTION("a directory as the target: io_error, the directory stays") {
    const fs::path target = dir / "a-directory.safetensors";
    fs::create_directories(target);
    tensors = {io::safetensors_tensor<float>("w", {6}, six)};
    CHECK_REFUSED(io::write_safetensors(target, tensors), io_error, Contains(target.string()) && Contains("it is a directory"));
    CHECK(fs::is_directory(target));
    CHECK(fs::is_empty(target));
  }
  CHECK(file_bytes(path) == before);
}

TEST_CASE("load_safetensors into a Sequential: missing, reshaped, integer and extra tensors change nothing",
          "[bad_input][io][safetensors][sequential]") {
  const ScratchDir dir;
  const fs::path path = dir / "fc.safetensors";
  auto model = tiny_model(1);
  const auto before = snapshot(model);
  const std::vector<float> weight(12, 0.5f), bias{1, 2, 3}, other_bias{1, 2, 3, 4};
  const std::vector<std::int32_t> int_bias{1, 2, 3};
  SECTION("fc.bias is missing") {
    io::write_safetensors(path, {io::safetensors_tensor<float>("fc.weight", {3, 4}, weight)});
    CHECK_REFUSED(io::load_safetensors(model, path), format_error, Contains("the model's 'fc.bias' [3] is missing from '" + path.string()));
  }
  SECTION("fc.bias has 4 elements") {
    io::write_safetensors(path, {io::safetensors_tensor<float>("fc.weight", {3, 4}, weight),
                                 io::safetensors_tensor<float>("fc.bias", {4}, other_bias)});
    CHECK_REFUSED(io::load_safetensors(model, path), format_error, Contains("the model's 'fc.bias' [3] is [4] in '"));
  }
  SECTION("fc.bias is I32") {
    io::write_safetensors(path, {io::safetensors_tensor<float>("fc.weight", {3, 4}, weight),
                                 io::safetensors_tensor<std::int32_t>("fc.bias", {3}, int_bias)});
    CHECK_REFUSED(io::load_safetensors(model, path), format_error, Contains("the model's 'fc.bias' is float but I32"));
  }
  SECTION("a tensor the model does not have") {
    io::write_safetensors(path, {io::safetensors_tensor<float>("fc.weight", {3, 4}, weight), io::safetensors_tensor<float>("fc.bias", {3}, bias),
                                 io::safetensors_tensor<float>("fc2.bias", {3}, bias)});
    CHECK_REFUSED(io::load_safetensors(model, path), format_error, Contains("has 'fc2.bias' [3], which the model does not have"));
  }
  SECTION("a missing file") {
    CHECK_REFUSED(io::load_safetensors(model, dir / "none.safetensors"), io_error, Contains("none.safetensors"));
  }
  CHECK(snapshot(model) == before);
}

// ---- compressed model files ----

TEST_CASE("compressed model reader: bad paths, magic, checksum, version and layers that do not chain",
          "[bad_input][io][compressed_model]") {
  const ScratchDir dir;
  const auto good = io::encode_compressed_model(small_model());
  const std::string source = "student.minnow";
  SECTION("a missing file") {
    const fs::path missing = dir / "missing.minnow";
    CHECK_REFUSED((void)io::read_compressed_model(missing), io_error, Contains("cannot read compressed model '" + missing.string() + "'"));
    CHECK_REFUSED((void)pipeline::load_compressed(missing), io_error, Contains(missing.string()));
  }
  SECTION("a directory") {
    CHECK_REFUSED((void)io::read_compressed_model(dir.path()), io_error, Contains("it is a directory"));
  }
  SECTION("5 bytes") {
    const std::vector<std::byte> five(5, std::byte{0});
    CHECK_REFUSED((void)io::decode_compressed_model(five, source), format_error, Contains("compressed model 'student.minnow': truncated: 5 bytes"));
  }
  SECTION("a checkpoint's magic") {
    auto bytes = good;
    std::memcpy(bytes.data(), "MINNOWCK", 8);
    CHECK_REFUSED((void)io::decode_compressed_model(bytes, source), format_error, Contains("not a minnow compressed model (bad magic)"));
  }
  SECTION("a flipped bit") {
    auto bytes = good;
    bytes[20] ^= std::byte{0x10};
    const auto before = bytes;
    CHECK_REFUSED((void)io::decode_compressed_model(bytes, source), format_error, Contains("corrupt or truncated (checksum mismatch)"));
    CHECK(bytes == before);
  }
  SECTION("version 2, re-signed") {
    auto bytes = good;
    bytes[8] = std::byte{2};
    resign(bytes);
    CHECK_REFUSED((void)io::decode_compressed_model(bytes, source), format_error, Contains("version 2; this minnow reads version 1"));
  }
  SECTION("an input of 2 channels for a conv of 1, re-signed: the layers do not chain") {
    auto bytes = good;
    bytes[9] = std::byte{2};  // after the magic and the version: the input's channel count
    resign(bytes);
    CHECK_REFUSED((void)io::decode_compressed_model(bytes, source), format_error,
                  Contains("compressed model 'student.minnow'") && Contains("layer 0 ('conv1') expects [1, H, W]") &&
                      Contains("its input is [2, 6, 6]"));
  }
  SECTION("a file cut in the middle, read from disk") {
    const fs::path cut = dir / "cut.minnow";
    write_bytes(cut, std::span<const std::byte>(good).first(good.size() / 2));
    const auto before = file_bytes(cut);
    CHECK_REFUSED((void)io::read_compressed_model(cut), format_error, Contains(cut.string()));
    CHECK(file_bytes(cut) == before);
  }
}

TEST_CASE("compressed model writer: models without an input shape or not well formed, and unwritable targets, leave files as they were",
          "[bad_input][io][compressed_model]") {
  const ScratchDir dir;
  const fs::path path = dir / "kept.minnow";
  (void)io::write_compressed_model(path, small_model());
  const auto before = file_bytes(path);
  SECTION("no input shape") {
    auto model = small_model();
    model.input_shape = {0, 0, 0};
    CHECK_REFUSED((void)io::write_compressed_model(path, model), value_error, Contains("the model declares no input shape"));
  }
  SECTION("a NaN bias") {
    auto model = small_model();
    fc_of(model).bias[1] = std::numeric_limits<float>::quiet_NaN();
    CHECK_REFUSED((void)io::write_compressed_model(path, model), value_error, Contains("integer layer 'fc1': bias 1 is nan"));
  }
  SECTION("3 biases for 2 conv channels (a shape_error from check_integer_model)") {
    auto model = small_model();
    conv_of(model).bias.push_back(0.0f);
    CHECK_REFUSED((void)io::write_compressed_model(path, model), shape_error, Contains("integer layer 'conv1': 3 biases for 2 output channels"));
  }
  SECTION("save_compressed of a network built without an input shape") {
    auto model = small_model();
    model.input_shape = {0, 0, 0};
    const pipeline::IntegerNetwork net(std::move(model));
    const fs::path target = dir / "new.minnow";
    CHECK_REFUSED((void)pipeline::save_compressed(target, net), value_error, Contains("declares no input shape"));
    CHECK_FALSE(fs::exists(target));
  }
  SECTION("a directory as the target") {
    const fs::path target = dir / "a-directory.minnow";
    fs::create_directories(target);
    CHECK_REFUSED((void)io::write_compressed_model(target, small_model()), io_error, Contains(target.string()) && Contains("it is a directory"));
    CHECK(fs::is_directory(target));
  }
  CHECK(file_bytes(path) == before);
}

// ---- integer models and networks ----

TEST_CASE("check_integer_model and IntegerNetwork: every ill-formed model is refused naming the layer", "[bad_input][infer][integer_model]") {
  auto model = small_model();
  SECTION("input scale 0") {
    model.input.scale = 0.0f;
    CHECK_REFUSED((void)infer::check_integer_model(model), value_error, Contains("integer model input: scale must be positive"));
  }
  SECTION("input zero point 256") {
    model.input.zero_point = 256;
    CHECK_REFUSED((void)infer::check_integer_model(model), value_error, Contains("zero point 256 is outside the grid [0, 255]"));
  }
  SECTION("an input of height 0") {
    model.input_shape = {1, 0, 6};
    CHECK_REFUSED((void)infer::check_integer_model(model), shape_error, Contains("integer model: input shape [1, 0, 6] must be positive"));
  }
  SECTION("an input of more than 2^34 elements") {
    model.input_shape = {1, index_t{1} << 20, index_t{1} << 20};
    CHECK_REFUSED((void)infer::check_integer_model(model), shape_error, Contains("the input [1, 1048576, 1048576] has more than 2^34 elements"));
  }
  SECTION("a conv with kernel 0") {
    conv_of(model).kernel = 0;
    CHECK_REFUSED((void)infer::check_integer_model(model), value_error,
                  Contains("integer model: conv 'conv1' has an invalid geometry (in 1, out 2, kernel 0"));
  }
  SECTION("a conv whose taps are not in·k·k") {
    conv_of(model).in_channels = 2;
    CHECK_REFUSED((void)infer::check_integer_model(model), shape_error, Contains("conv 'conv1' has 9 taps per output channel") && Contains("18"));
  }
  SECTION("one weight qparam for two channels") {
    conv_of(model).weights.params.pop_back();
    CHECK_REFUSED((void)infer::check_integer_model(model), shape_error,
                  Contains("infer: weight 'conv1.weight': 1 per-channel qparams for 2 output channels"));
  }
  SECTION("3 biases for 2 channels") {
    conv_of(model).bias.push_back(0.0f);
    CHECK_REFUSED((void)infer::check_integer_model(model), shape_error, Contains("integer layer 'conv1': 3 biases for 2 output channels"));
  }
  SECTION("a fused pool after a float output") {
    conv_of(model).output.reset();
    CHECK_REFUSED((void)infer::check_integer_model(model), value_error, Contains("conv 'conv1' fuses a pool but has float output"));
  }
  SECTION("a layer after the float logits") {
    model.layers.emplace_back(infer::IntegerLinear{int8_weights("fc2.weight", 2, 3), {0.0f, 0.0f}, false, std::nullopt});
    CHECK_REFUSED((void)infer::check_integer_model(model), value_error,
                  Contains("layer 3 ('fc2') follows a layer with float output"));
  }
  SECTION("a linear layer of 17 inputs after 18 features") {
    fc_of(model).weights = int8_weights("fc1.weight", 3, 17);
    CHECK_REFUSED((void)infer::check_integer_model(model), shape_error,
                  Contains("layer 2 ('fc1') expects 17 input features but its input is [18, 1, 1]"));
  }
  SECTION("a max pool of kernel 0") {
    model.layers.insert(model.layers.begin() + 1, infer::IntegerMaxPool{0, 2});
    CHECK_REFUSED((void)infer::check_integer_model(model), value_error, Contains("maxpool (layer 1) has kernel 0, stride 2"));
  }
  SECTION("scales whose product overflows the output stage") {
    model.input.scale = 1e30f;
    conv_of(model).weights.params[0].scale = 1e30f;
    CHECK_REFUSED((void)infer::check_integer_model(model), value_error,
                  Contains("integer layer 'conv1': channel 0 has output multiplier inf"));
  }
  SECTION("IntegerNetwork refuses what check_integer_model refuses") {
    fc_of(model).bias.pop_back();
    CHECK_REFUSED(pipeline::IntegerNetwork(model.clone()), shape_error, Contains("integer layer 'fc1': 2 biases for 3 output channels"));
  }
}

TEST_CASE("check_integer_model: an input shape with a negative channel count is refused", "[bad_input][infer][integer_model]") {
  // A shape is declared when any extent is set; then all three must be positive.
  auto model = small_model();
  model.input_shape = {-1, 6, 6};
  CHECK_THROWS_AS((void)infer::check_integer_model(model), shape_error);
  CHECK_THROWS_WITH((void)infer::check_integer_model(model), Contains("input shape [-1, 6, 6] must be positive"));
}

TEST_CASE("IntegerNetwork: plans that do not fit the model, and inputs that do not fit the network", "[bad_input][infer][network]") {
  SECTION("a plan with batch 0") {
    CHECK_REFUSED(pipeline::IntegerNetwork(small_model(), {.batch = 0}), value_error, Contains("the plan's batch must be > 0, got 0"));
  }
  SECTION("a plan naming a layer the model does not have") {
    CHECK_REFUSED(pipeline::IntegerNetwork(small_model(), {.layers = {{"fc9", pipeline::LayerFormat::sparse}}}), value_error,
                  Contains("the plan names layer 'fc9', which is not a Conv2d or Linear of the model"));
  }
  SECTION("a plan asking a Conv2d for a sparse format") {
    CHECK_REFUSED(pipeline::IntegerNetwork(small_model(), {.layers = {{"conv1", pipeline::LayerFormat::sparse}}}), value_error,
                  Contains("the plan asks Conv2d 'conv1' for sparse; a Conv2d runs int8"));
  }
  SECTION("load_compressed with a plan of batch -1") {
    const ScratchDir dir;
    const fs::path path = dir / "small.minnow";
    (void)io::write_compressed_model(path, small_model());
    const auto before = file_bytes(path);
    CHECK_REFUSED((void)pipeline::load_compressed(path, {.batch = -1}), value_error, Contains("got -1"));
    CHECK(file_bytes(path) == before);
  }
  SECTION("forward of 2-channel images: the error names the conv, and the network still computes what it did") {
    pipeline::IntegerNetwork net(small_model());
    Tensor<float, 4> good({1, 1, 6, 6});
    for (index_t i = 0; i < good.size(); ++i) good.data()[i] = 0.1f * static_cast<float>(i % 7);
    const auto first = net.forward(good);
    const std::vector<float> expected(first.data(), first.data() + first.size());
    Tensor<float, 4> wrong({1, 2, 6, 6}, 0.5f);
    const auto wrong_before = raw(wrong);
    CHECK_REFUSED((void)net.forward(wrong), shape_error, Contains("QuantizedConv2d 'conv1.weight': input [1, 2, 6, 6] does not fit"));
    CHECK(raw(wrong) == wrong_before);
    const auto again = net.forward(good);
    CHECK(std::vector<float>(again.data(), again.data() + again.size()) == expected);
  }
}

// ---- quantized layers and integer weights ----

TEST_CASE("quantize_int8, quantize_int4, pack_int4: bad parameters, grids, values and shapes", "[bad_input][infer][int_tensor]") {
  Tensor<float, 2> w({3, 4});
  for (index_t i = 0; i < w.size(); ++i) w.data()[i] = 0.01f * static_cast<float>(i);
  const auto w_before = raw(w);
  const std::vector<quant::AffineParams> three(3, {0.01f, 0}), two(2, {0.01f, 0});
  SECTION("2 qparams for 3 rows") {
    CHECK_REFUSED((void)infer::quantize_int8("fc.weight", w, two), shape_error,
                  Contains("infer: weight 'fc.weight': 2 per-channel qparams for 3 output channels"));
  }
  SECTION("a NaN weight") {
    const float kept = w(1, 0);
    w(1, 0) = std::numeric_limits<float>::quiet_NaN();
    CHECK_REFUSED((void)infer::quantize_int8("fc.weight", w, three), value_error, Contains("infer: weight 'fc.weight' element 4 is nan"));
    w(1, 0) = kept;
  }
  SECTION("a grid wider than int8") {
    CHECK_REFUSED((void)infer::quantize_int8("fc.weight", w, three, {-200, 127}), value_error,
                  Contains("grid [-200, 127] must lie within int8 [-128, 127]"));
  }
  SECTION("a negative scale names its channel") {
    auto params = three;
    params[2].scale = -0.01f;
    CHECK_REFUSED((void)infer::quantize_int8("fc.weight", w, params), value_error, Contains("scale of channel 2 must be positive"));
  }
  SECTION("an int4 grid wider than [-8, 7]") {
    CHECK_REFUSED((void)infer::quantize_int4("fc.weight", w, three, {-16, 15}), value_error, Contains("grid [-16, 15] must lie within [-8, 7]"));
  }
  SECTION("pack_int4 of an odd row length") {
    const auto q = infer::quantize_int8("odd.weight", TensorView<const float, 2>(w.data(), {4, 3}), std::vector<quant::AffineParams>(4, {0.01f, 0}));
    CHECK_REFUSED((void)infer::pack_int4(q), shape_error, Contains("int4 weight 'odd.weight' needs an even inner length") && Contains("got 3"));
  }
  SECTION("pack_int4 of a value outside [-8, 7]") {
    auto q = infer::quantize_int8("fc.weight", w, three);
    q.values(0, 1) = 9;
    const auto values_before = raw(q.values);
    CHECK_REFUSED((void)infer::pack_int4(q), value_error, Contains("int4 weight 'fc.weight' element (0, 1) is 9, outside [-8, 7]"));
    CHECK(raw(q.values) == values_before);
  }
  CHECK(raw(w) == w_before);
}

TEST_CASE("QuantizedLinear, QuantizedConv2d, QuantizedMaxPool2d: bad construction and mismatched inputs, and outputs stay",
          "[bad_input][infer][quantized_layers]") {
  const auto fc_weights = int8_weights("fc.weight", 3, 4);
  const auto conv_weights = int8_weights("conv.weight", 2, 9);
  const quant::AffineParams input{0.02f, 0};
  SECTION("QuantizedLinear: 2 biases for 3 outputs") {
    const std::vector<float> bias{0.0f, 1.0f};
    CHECK_REFUSED(infer::QuantizedLinear(fc_weights, bias, input), shape_error, Contains("QuantizedLinear 'fc.weight': 2 biases for 3 output channels"));
  }
  SECTION("QuantizedLinear: a NaN bias") {
    const std::vector<float> bias{0.0f, std::numeric_limits<float>::quiet_NaN(), 0.0f};
    CHECK_REFUSED(infer::QuantizedLinear(fc_weights, bias, input), value_error, Contains("QuantizedLinear 'fc.weight': bias 1 is nan"));
  }
  SECTION("QuantizedLinear: input zero point 300") {
    CHECK_REFUSED(infer::QuantizedLinear(fc_weights, {}, {0.02f, 300}), value_error,
                  Contains("QuantizedLinear 'fc.weight' (input): zero point 300 is outside the grid [0, 255]"));
  }
  SECTION("QuantizedLinear: 5 input features for 4") {
    infer::QuantizedLinear fc(fc_weights, {}, input);
    Tensor<float, 2> x({2, 5}, 1.0f), y({2, 3}, -7.0f);
    const auto y_before = raw(y);
    CHECK_REFUSED(fc.forward(x, y), shape_error, Contains("QuantizedLinear 'fc.weight': input is [2, 5], expected [batch, 4]"));
    CHECK(raw(y) == y_before);
  }
  SECTION("QuantizedLinear: an output of 3 rows for a batch of 2, and bad output parameters") {
    infer::QuantizedLinear fc(fc_weights, {}, input);
    Tensor<float, 2> x({2, 4}, 1.0f), y({3, 3}, -7.0f);
    Tensor<std::uint8_t, 2> q({2, 3}, std::uint8_t{77});
    const auto y_before = raw(y), q_before = raw(q);
    CHECK_REFUSED(fc.forward(x, y), shape_error, Contains("infer::qgemm 'fc.weight': output is [3, 3], expected [2, 3]"));
    CHECK_REFUSED(fc.forward(x, {0.05f, 256}, q), value_error,
                  Contains("infer::qgemm 'fc.weight' (output): zero point 256 is outside the grid [0, 255]"));
    CHECK(raw(y) == y_before);
    CHECK(raw(q) == q_before);
  }
  SECTION("QuantizedConv2d: kernel 0") {
    CHECK_REFUSED(infer::QuantizedConv2d(conv_weights, 1, 0, 1, 0, {}, input), value_error,
                  Contains("QuantizedConv2d 'conv.weight': invalid geometry in_channels=1, out_channels=2, kernel=0"));
  }
  SECTION("QuantizedConv2d: 9 taps for 2 input channels of 3×3") {
    CHECK_REFUSED(infer::QuantizedConv2d(conv_weights, 2, 3, 1, 0, {}, input), shape_error,
                  Contains("weights have 9 taps per output channel, expected in_channels·k·k = 18"));
  }
  SECTION("QuantizedConv2d: an output of the wrong shape, and bad output parameters") {
    infer::QuantizedConv2d conv(conv_weights, 1, 3, 1, 0, {}, input);
    Tensor<std::uint8_t, 4> x({1, 1, 4, 4}, std::uint8_t{9});
    Tensor<float, 4> y({1, 2, 3, 3}, -7.0f);
    Tensor<std::uint8_t, 4> q({1, 2, 2, 2}, std::uint8_t{77});
    const auto y_before = raw(y), q_before = raw(q);
    CHECK_REFUSED(conv.forward(x, y), shape_error, Contains("QuantizedConv2d 'conv.weight': output is [1, 2, 3, 3], expected [1, 2, 2, 2]"));
    CHECK_REFUSED(conv.forward(x, {0.0f, 0}, q), value_error, Contains("QuantizedConv2d 'conv.weight' (output): scale must be positive"));
    CHECK(raw(y) == y_before);
    CHECK(raw(q) == q_before);
  }
  SECTION("QuantizedConv2d: an input of 2 channels") {
    infer::QuantizedConv2d conv(conv_weights, 1, 3, 1, 0, {}, input);
    Tensor<float, 4> x({1, 2, 4, 4}, 1.0f), y({1, 2, 2, 2}, -7.0f);
    const auto y_before = raw(y);
    CHECK_REFUSED(conv.forward(x, y), shape_error, Contains("QuantizedConv2d 'conv.weight': input [1, 2, 4, 4] does not fit"));
    CHECK(raw(y) == y_before);
  }
  SECTION("QuantizedConv2d::forward_pooled: a 1×1 conv output has no 2×2 pool") {
    infer::QuantizedConv2d conv(conv_weights, 1, 3, 1, 0, {}, input);
    Tensor<std::uint8_t, 4> x({1, 1, 3, 3}, std::uint8_t{9}), y({1, 2, 0, 0});
    CHECK_REFUSED(conv.forward_pooled(x, {0.05f, 0}, y), shape_error, Contains("pooled output is [1, 2, 0, 0], expected the 2x2 pool of [1, 2, 1, 1]"));
  }
  SECTION("QuantizedMaxPool2d: kernel 0, an input smaller than the window, an output of the wrong shape") {
    CHECK_REFUSED(infer::QuantizedMaxPool2d(0), value_error, Contains("QuantizedMaxPool2d: kernel 0 and stride 0 must be positive"));
    const infer::QuantizedMaxPool2d pool(2);
    Tensor<std::uint8_t, 4> small({1, 1, 1, 1}), x({1, 1, 4, 4}, std::uint8_t{3}), y({1, 1, 3, 3}, std::uint8_t{200});
    const auto y_before = raw(y);
    CHECK_REFUSED(pool.forward(small, y), shape_error, Contains("input [1, 1, 1, 1] is smaller than the window"));
    CHECK_REFUSED(pool.forward(x, y), shape_error, Contains("QuantizedMaxPool2d: output is [1, 1, 3, 3], expected [1, 1, 2, 2]"));
    CHECK(raw(y) == y_before);
  }
}
