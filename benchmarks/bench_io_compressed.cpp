// Reading a compressed model file (.minnow) back into a ready network.
//   io/decode_student                 io::decode_compressed_model from bytes in memory (Huffman decoding, checks)
//   io/load_student                   pipeline::load_compressed(path): read the file, decode, build the IntegerNetwork
//   io/load_file                      the same for the file named by $MINNOW_BENCH_MINNOW_FILE (e.g. a compress run's
//                                     student.minnow); skipped when it is not set
// The student of the benchmarks is the 106 k-parameter student with random weights, 95 % of them pruned by
// global magnitude and the rest quantized to 4 bits per channel: the shape of a compress run's output.
#include "../examples/architectures.hpp"
#include "bench_support.hpp"

#include <minnow/nn/models.hpp>
#include <minnow/parameter.hpp>
#include <minnow/pipeline/compressed_network.hpp>
#include <minnow/pipeline/integer_network.hpp>
#include <minnow/pipeline/quantize_model.hpp>
#include <minnow/quant/quantizer.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <vector>

namespace {

using minnow::index_t;
using Int4PerChannel = minnow::quant::Quantizer<minnow::quant::Bits<4, true>, minnow::quant::MinMax, minnow::quant::Symmetric,
                                                minnow::quant::PerChannel>;

/// The benchmarks' student model as bytes of a .minnow file, and the same bytes on disk.
struct StudentFile {
  std::vector<std::byte> bytes;
  std::filesystem::path path = std::filesystem::temp_directory_path() / "minnow-bench-student.minnow";

  StudentFile() {
    auto model = example::make_architecture<float>("student", 1);
    std::vector<float> magnitudes;
    for (const auto& w : minnow::weight_parameters(model.parameters())) {
      for (index_t i = 0; i < w.value.size(); ++i) magnitudes.push_back(std::abs(w.value.data()[i]));
    }
    const auto cut = magnitudes.begin() + static_cast<std::ptrdiff_t>(0.95 * static_cast<double>(magnitudes.size()));
    std::nth_element(magnitudes.begin(), cut, magnitudes.end());
    for (const auto& w : minnow::weight_parameters(model.parameters())) {
      for (index_t i = 0; i < w.value.size(); ++i) {
        if (std::abs(w.value.data()[i]) < *cut) w.value.data()[i] = 0.0f;
      }
    }
    minnow::data::Dataset<float> calibration;
    calibration.images.resize({256, 1, 28, 28});
    calibration.labels.resize({256});
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> pixel(-0.8f, 2.0f);
    for (index_t i = 0; i < calibration.images.size(); ++i) calibration.images.data()[i] = pixel(rng);
    for (index_t i = 0; i < 256; ++i) calibration.labels(i) = static_cast<std::int32_t>(i % 10);
    minnow::pipeline::QuantizedModel<Int4PerChannel, minnow::quant::Uint8PerTensorAffine> qmodel(model);
    qmodel.calibrate(calibration, 256, 128);
    const auto integer = minnow::pipeline::to_integer_model(model, qmodel, {1, 28, 28});
    bytes = minnow::io::encode_compressed_model(integer);
    minnow::io::write_compressed_model(path, integer);
  }
  static StudentFile& get() {
    static StudentFile file;
    return file;
  }
};

void decode_student(benchmark::State& state) {
  const auto& file = StudentFile::get();
  for (auto _ : state) {
    auto model = minnow::io::decode_compressed_model(file.bytes, "student");
    benchmark::DoNotOptimize(model.layers.data());
  }
  state.counters["file_bytes"] = static_cast<double>(file.bytes.size());
}

void load(benchmark::State& state, const std::filesystem::path& path) {
  bench::set_threads(1);
  for (auto _ : state) {
    auto net = minnow::pipeline::load_compressed(path);
    benchmark::DoNotOptimize(&net);
  }
  state.counters["file_bytes"] = static_cast<double>(std::filesystem::file_size(path));
}

void register_all() {
  benchmark::RegisterBenchmark("io/decode_student", decode_student)->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("io/load_student", [](benchmark::State& state) { load(state, StudentFile::get().path); })
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("io/load_file", [](benchmark::State& state) {
    const char* file = std::getenv("MINNOW_BENCH_MINNOW_FILE");
    if (file == nullptr || *file == '\0') {
      state.SkipWithError("set MINNOW_BENCH_MINNOW_FILE to a .minnow file to time it");
      return;
    }
    load(state, file);
  })->Unit(benchmark::kMicrosecond);
}

}  // namespace

int main(int argc, char** argv) { return bench::run(argc, argv, register_all); }
