// Writes the seed corpus of every fuzz target (small valid files), or with --check compares the checked-in
// corpus with what this build writes, so the seeds stay valid as the formats change.
//   make_corpus <dir>          writes <dir>/<target>/<seed>
//   make_corpus --check <dir>  exits 1 naming each seed that is missing or differs
#include <minnow/data/idx.hpp>
#include <minnow/infer/integer_model.hpp>
#include <minnow/io/compressed_model.hpp>
#include <minnow/io/safetensors.hpp>
#include <minnow/io/sequential_safetensors.hpp>
#include <minnow/nn/adam.hpp>
#include <minnow/nn/models.hpp>
#include <minnow/train/checkpoints.hpp>

#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace minnow;
using Bytes = std::vector<unsigned char>;

namespace {

Bytes read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Files written through minnow's own writers go to a scratch directory and are read back as bytes.
template <class Write>
Bytes written_by(const fs::path& scratch, Write&& write) {
  const fs::path path = scratch / "seed";
  write(path);
  return read_bytes(path);
}

Bytes idx(std::uint8_t type_code, const std::vector<std::uint32_t>& dims, std::uint64_t seed) {
  Bytes out{0, 0, type_code, static_cast<unsigned char>(dims.size())};
  std::uint64_t count = 1;
  for (const auto d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<unsigned char>(d >> shift));
    count *= d;
  }
  std::mt19937_64 rng(seed);
  for (std::uint64_t i = 0; i < count; ++i) out.push_back(static_cast<unsigned char>(rng() % (type_code == 1 ? 10 : 256)));
  return out;
}

Bytes gzip(const Bytes& data) {
  z_stream stream{};
  if (deflateInit2(&stream, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) throw std::runtime_error("zlib");
  Bytes out(deflateBound(&stream, static_cast<uLong>(data.size())) + 32);
  stream.next_in = const_cast<Bytef*>(data.data());
  stream.avail_in = static_cast<uInt>(data.size());
  stream.next_out = out.data();
  stream.avail_out = static_cast<uInt>(out.size());
  if (deflate(&stream, Z_FINISH) != Z_STREAM_END) throw std::runtime_error("zlib");
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

infer::Int8Weights weights(const std::string& name, index_t rows, index_t cols, bool affine, std::mt19937_64& rng) {
  infer::Int8Weights w{name, Tensor<std::int8_t, 2>({rows, cols}), {}, {-128, 127}};
  for (index_t j = 0; j < rows; ++j) {
    const int zero_point = affine ? static_cast<int>(rng() % 7) - 3 : 0;
    w.params.push_back({0.01f + 0.001f * static_cast<float>(j), zero_point});
    for (index_t k = 0; k < cols; ++k) {
      // About a third of the weights survive pruning; the rest sit at the zero point.
      w.values(j, k) = static_cast<std::int8_t>(rng() % 3 == 0 ? static_cast<int>(rng() % 256) - 128 : zero_point);
    }
  }
  return w;
}

std::vector<float> bias(index_t n) {
  std::vector<float> b(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = 0.01f * static_cast<float>(i) - 0.02f;
  return b;
}

// input [1, 6, 6] → conv 1→3 (3×3, pad 1, ReLU, fused 2×2 pool) → max pool 3→1 → flatten → linear 3→4 (ReLU) → linear 4→2.
infer::IntegerModel small_integer_model() {
  std::mt19937_64 rng(7);
  infer::IntegerModel m;
  m.input_shape = {1, 6, 6};
  m.input = {0.02f, 3};
  m.layers.emplace_back(infer::IntegerConv{weights("conv1.weight", 3, 9, false, rng), 1, 3, 1, 1, bias(3), true,
                                           quant::AffineParams{0.03f, 0}, true});
  m.layers.emplace_back(infer::IntegerMaxPool{3, 3});
  m.layers.emplace_back(infer::IntegerFlatten{});
  m.layers.emplace_back(infer::IntegerLinear{weights("fc1.weight", 4, 3, true, rng), bias(4), true, quant::AffineParams{0.05f, 0}});
  m.layers.emplace_back(infer::IntegerLinear{weights("fc2.weight", 2, 4, false, rng), bias(2), false, std::nullopt});
  return m;
}

std::map<std::string, Bytes> seeds(const fs::path& scratch) {
  std::map<std::string, Bytes> out;
  const Bytes images = idx(8, {3, 4, 5}, 1), labels = idx(8, {7}, 2);
  out["idx/images-3x4x5"] = images;
  out["idx/labels-7"] = labels;
  out["idx/images-0x28x28"] = idx(8, {0, 28, 28}, 3);
  out["idx/images-3x4x5.gz"] = gzip(images);
  out["idx/labels-7.gz"] = gzip(labels);
  // fuzz_idx_gz gzips its input itself; the last byte says how much of the stream to cut (0: none).
  Bytes whole_images = images, whole_labels = labels;
  whole_images.push_back(0);
  whole_labels.push_back(0);
  out["idx_gz/images-3x4x5"] = whole_images;
  out["idx_gz/labels-7"] = whole_labels;

  // The network of fuzz_checkpoint.cpp and fuzz_safetensors.cpp.
  auto model = nn::make_cnn<float>({}, {.conv1 = 2, .conv2 = 2, .hidden = 4}, 1);
  nn::Adam<float> adam(model.parameters());
  adam.set_step_count(3);
  out["checkpoint/with-adam"] = written_by(scratch, [&](const fs::path& p) {
    train::save_training_state(p, "fuzz", model, static_cast<nn::Optimizer<float>*>(&adam));
  });
  out["checkpoint/parameters"] = written_by(scratch, [&](const fs::path& p) { train::save_training_state(p, "fuzz", model); });
  out["safetensors/tiny-cnn"] = written_by(scratch, [&](const fs::path& p) {
    io::save_safetensors(model, p, {{"format", "pt"}});
  });
  out["safetensors/mixed-dtypes"] = written_by(scratch, [&](const fs::path& p) {
    const std::vector<std::int8_t> q{-3, 0, 7, 127};
    const std::vector<std::int64_t> steps{42};
    const std::vector<double> d{0.5, -2.0};
    io::write_safetensors(p, {io::safetensors_tensor<std::int8_t>("q", {2, 2}, q), io::safetensors_tensor<std::int64_t>("steps", {1}, steps),
                              io::safetensors_tensor<double>("d", {2}, d)});
  });
  const auto compressed = io::encode_compressed_model(small_integer_model());
  out["compressed_model/small"] = Bytes(reinterpret_cast<const unsigned char*>(compressed.data()),
                                        reinterpret_cast<const unsigned char*>(compressed.data()) + compressed.size());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const bool check = argc == 3 && std::strcmp(argv[1], "--check") == 0;
  if (argc != 2 && !check) {
    std::fprintf(stderr, "usage: make_corpus <dir> | make_corpus --check <dir>\n");
    return 2;
  }
  const fs::path dir = argv[argc - 1];
  const fs::path scratch = fs::temp_directory_path() / ("minnow_make_corpus_" + std::to_string(::getpid()));
  fs::create_directories(scratch);
  int problems = 0;
  for (const auto& [name, bytes] : seeds(scratch)) {
    const fs::path path = dir / name;
    if (check) {
      if (!fs::exists(path) || read_bytes(path) != bytes) {
        std::fprintf(stderr, "%s is missing or out of date: rerun make_corpus %s\n", path.c_str(), dir.c_str());
        ++problems;
      }
      continue;
    }
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  fs::remove_all(scratch);
  return problems == 0 ? 0 : 1;
}
