// Fuzz target: the IDX reader's gzip path. The input is the decompressed content; it is gzipped here and
// the stream cut short by an amount taken from the last input byte, so the mutations reach the IDX parser
// behind zlib and the cut-stream checks.
#include "fuzz_input.hpp"

#include <minnow/data/idx.hpp>

#include <zlib.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace {

std::vector<unsigned char> gzip(const std::uint8_t* data, std::size_t size) {
  z_stream stream{};
  // windowBits 15 + 16: a gzip wrapper, as gzip(1) writes.
  if (deflateInit2(&stream, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  std::vector<unsigned char> out(deflateBound(&stream, static_cast<uLong>(size)) + 32);
  stream.next_in = const_cast<Bytef*>(data);
  stream.avail_in = static_cast<uInt>(size);
  stream.next_out = out.data();
  stream.avail_out = static_cast<uInt>(out.size());
  if (deflate(&stream, Z_FINISH) != Z_STREAM_END) std::abort();
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0 || size > (std::size_t{1} << 20)) return 0;
  const unsigned cut = data[size - 1] < 16 ? data[size - 1] : 0;  // mostly whole streams, sometimes cut
  std::vector<unsigned char> compressed = gzip(data, size - 1);
  compressed.resize(compressed.size() - std::min<std::size_t>(cut, compressed.size()));
  const minnow::fuzz::MemoryFile file(compressed.data(), compressed.size());
  const std::string path = file.path().string();
  minnow::fuzz::expect_format_error_naming(path, [&] { (void)minnow::data::read_idx_images(file.path()); });
  minnow::fuzz::expect_format_error_naming(path, [&] { (void)minnow::data::read_idx_labels(file.path()); });
  return 0;
}
