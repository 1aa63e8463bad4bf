// Fuzz target: the IDX reader on raw bytes (a gzip stream is detected from its content, so .gz seeds reach
// the zlib path too). Only a format_error naming the file may come out.
#include "fuzz_input.hpp"

#include <minnow/data/idx.hpp>

#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const minnow::fuzz::MemoryFile file(data, size);
  const std::string path = file.path().string();
  minnow::fuzz::expect_format_error_naming(path, [&] {
    const auto images = minnow::data::read_idx_images(file.path());
    if (images.size() != images.dim(0) * images.dim(1) * images.dim(2)) std::abort();
  });
  minnow::fuzz::expect_format_error_naming(path, [&] { (void)minnow::data::read_idx_labels(file.path()); });
  return 0;
}
