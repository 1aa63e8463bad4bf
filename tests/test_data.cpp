// Tests for minnow/data: IDX reading (raw, gzip, every error path), Dataset normalisation,
// Fashion-MNIST loading (synthetic and the real files), BatchSampler and gather.
#include "test_support.hpp"
#include <minnow/data.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#ifdef MINNOW_HAS_ZLIB
#include <zlib.h>
#endif

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using minnow::index_t;
using minnow::Tensor;
using minnow::data::BatchSampler;
using minnow::data::Dataset;
using minnow::data::Normalization;

namespace {

using Bytes = std::vector<std::uint8_t>;

using TempDir = test_support::ScratchDir;

void append_be32(Bytes& out, std::uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(value >> shift));
}

/// An IDX file's bytes: magic, big-endian dims, then `data`.
Bytes idx_bytes(std::uint32_t magic, const std::vector<std::uint32_t>& dims, const Bytes& data) {
  Bytes out;
  append_be32(out, magic);
  for (const auto d : dims) append_be32(out, d);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

/// Deterministic, non-trivial pixel bytes (every value 0..255 occurs).
Bytes pattern(std::size_t count, unsigned offset = 11) {
  Bytes out(count);
  for (std::size_t i = 0; i < count; ++i) out[i] = static_cast<std::uint8_t>((i * 37 + offset) % 256);
  return out;
}

void write_file(const fs::path& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

#ifdef MINNOW_HAS_ZLIB
Bytes read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_gz(const fs::path& path, const Bytes& bytes) {
  gzFile file = gzopen(path.string().c_str(), "wb");
  REQUIRE(file != nullptr);
  if (!bytes.empty()) REQUIRE(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())) > 0);
  REQUIRE(gzclose(file) == Z_OK);
}

/// Decompresses a whole gzip file with zlib directly: an independent check of minnow's reader.
Bytes gunzip(const fs::path& path) {
  gzFile file = gzopen(path.string().c_str(), "rb");
  REQUIRE(file != nullptr);
  Bytes out;
  std::array<std::uint8_t, 1 << 16> chunk{};
  int got = 0;
  while ((got = gzread(file, chunk.data(), static_cast<unsigned>(chunk.size()))) > 0) {
    out.insert(out.end(), chunk.begin(), chunk.begin() + got);
  }
  REQUIRE(got == 0);
  gzclose(file);
  return out;
}
#endif


std::vector<std::uint8_t> as_vector(const Tensor<std::uint8_t, 3>& t) { return {t.data(), t.data() + t.size()}; }
std::vector<std::int32_t> as_vector(const Tensor<std::int32_t, 1>& t) { return {t.data(), t.data() + t.size()}; }

/// Writes a small Fashion-MNIST-like directory: 7 training and 4 test samples of 3x2 pixels.
void write_small_fashion_dir(const fs::path& dir, bool gz_labels) {
  write_file(dir / "train-images-idx3-ubyte", idx_bytes(0x803, {7, 3, 2}, pattern(42)));
  write_file(dir / "t10k-images-idx3-ubyte", idx_bytes(0x803, {4, 3, 2}, pattern(24, 5)));
  const Bytes train_labels = idx_bytes(0x801, {7}, {9, 0, 0, 3, 0, 2, 7});
  const Bytes test_labels = idx_bytes(0x801, {4}, {9, 2, 1, 1});
#ifdef MINNOW_HAS_ZLIB
  if (gz_labels) {
    write_gz(dir / "train-labels-idx1-ubyte.gz", train_labels);
    write_gz(dir / "t10k-labels-idx1-ubyte.gz", test_labels);
    return;
  }
#endif
  (void)gz_labels;
  write_file(dir / "train-labels-idx1-ubyte", train_labels);
  write_file(dir / "t10k-labels-idx1-ubyte", test_labels);
}

}  // namespace

// ---------------------------------------------------------------------------------------------- IDX

TEST_CASE("read_idx_images and read_idx_labels read raw IDX files exactly", "[data][idx]") {
  TempDir dir;
  const Bytes pixels = pattern(3 * 4 * 5);
  write_file(dir / "images", idx_bytes(0x803, {3, 4, 5}, pixels));
  write_file(dir / "labels", idx_bytes(0x801, {6}, {0, 9, 3, 255, 1, 128}));

  const auto images = minnow::data::read_idx_images(dir / "images");
  CHECK(images.shape() == minnow::Shape<3>{3, 4, 5});
  CHECK(as_vector(images) == pixels);
  CHECK(images(2, 3, 4) == pixels.back());
  CHECK(images(1, 0, 0) == pixels[20]);

  const auto labels = minnow::data::read_idx_labels(dir / "labels");
  CHECK(labels.shape() == minnow::Shape<1>{6});
  CHECK(as_vector(labels) == std::vector<std::int32_t>{0, 9, 3, 255, 1, 128});
}

TEST_CASE("IDX files with zero samples give empty tensors", "[data][idx]") {
  TempDir dir;
  write_file(dir / "images", idx_bytes(0x803, {0, 28, 28}, {}));
  write_file(dir / "labels", idx_bytes(0x801, {0}, {}));
  const auto images = minnow::data::read_idx_images(dir / "images");
  CHECK(images.shape() == minnow::Shape<3>{0, 28, 28});
  CHECK(images.empty());
  CHECK(minnow::data::read_idx_labels(dir / "labels").size() == 0);
}

#ifdef MINNOW_HAS_ZLIB
TEST_CASE("gzip IDX files are detected by content, whatever their name", "[data][idx][gzip]") {
  TempDir dir;
  const Bytes pixels = pattern(5 * 7 * 3, 200);
  const Bytes image_file = idx_bytes(0x803, {5, 7, 3}, pixels);
  const Bytes label_file = idx_bytes(0x801, {5}, {4, 4, 0, 1, 9});

  write_gz(dir / "images.gz", image_file);
  write_gz(dir / "images-no-suffix", image_file);  // gzip without ".gz"
  write_file(dir / "raw-named.gz", image_file);    // raw despite ".gz"
  write_gz(dir / "labels.gz", label_file);
  for (const char* name : {"images.gz", "images-no-suffix", "raw-named.gz"}) {
    INFO(name);
    const auto images = minnow::data::read_idx_images(dir / name);
    CHECK(images.shape() == minnow::Shape<3>{5, 7, 3});
    CHECK(as_vector(images) == pixels);
  }
  CHECK(as_vector(minnow::data::read_idx_labels(dir / "labels.gz")) == std::vector<std::int32_t>{4, 4, 0, 1, 9});
}

TEST_CASE("gzip IDX files larger than the reader's chunks round-trip", "[data][idx][gzip]") {
  // 9 MiB of data: several 4 MiB chunks of the buffered gzip path, plus a partial one.
  TempDir dir;
  const Bytes pixels = pattern(std::size_t{9} * 1024 * 1024, 3);
  write_gz(dir / "big.gz", idx_bytes(0x803, {9 * 1024, 32, 32}, pixels));
  const auto images = minnow::data::read_idx_images(dir / "big.gz");
  CHECK(images.shape() == minnow::Shape<3>{9 * 1024, 32, 32});
  CHECK(as_vector(images) == pixels);
}
#endif

TEST_CASE("IDX reader: missing or unreadable files are io_errors naming the path", "[data][idx][errors]") {
  TempDir dir;
  const fs::path missing = dir / "no-such-file";
  std::string message = test_support::message_of<minnow::io_error>([&] { (void)minnow::data::read_idx_images(missing); });
  CHECK_THAT(message, Contains(missing.string()) && Contains("read_idx_images"));
  message = test_support::message_of<minnow::io_error>([&] { (void)minnow::data::read_idx_labels(missing); });
  CHECK_THAT(message, Contains(missing.string()) && Contains("read_idx_labels"));

  // A directory opens on some systems but cannot be read as a file.
  message = test_support::message_of<minnow::io_error>([&] { (void)minnow::data::read_idx_images(dir.path()); });
  CHECK_THAT(message, Contains(dir.path().string()) && Contains("directory"));
}

TEST_CASE("IDX reader: a wrong magic number is a format_error with both magics in hex", "[data][idx][errors]") {
  TempDir dir;
  write_file(dir / "labels", idx_bytes(0x801, {2}, {1, 2}));
  write_file(dir / "images", idx_bytes(0x803, {1, 1, 2}, {1, 2}));
  write_file(dir / "floats", idx_bytes(0x0D03, {1, 1, 1}, {0, 0, 0, 0}));
  write_file(dir / "text", {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '!', '!', '!', '!', '!'});

  // Wrong rank for the call, in both directions.
  std::string message = test_support::message_of<minnow::format_error>([&] { (void)minnow::data::read_idx_images(dir / "labels"); });
  CHECK_THAT(message, Contains((dir / "labels").string()) && Contains("expected 0x00000803") &&
                          Contains("found 0x00000801") && Contains("3 dimensions") && Contains("1 dimension"));
  message = test_support::message_of<minnow::format_error>([&] { (void)minnow::data::read_idx_labels(dir / "images"); });
  CHECK_THAT(message, Contains((dir / "images").string()) && Contains("expected 0x00000801") &&
                          Contains("found 0x00000803"));
  // Right rank, wrong element type.
  message = test_support::message_of<minnow::format_error>([&] { (void)minnow::data::read_idx_images(dir / "floats"); });
  CHECK_THAT(message, Contains("found 0x00000d03") && Contains("float32"));
  // Not IDX at all: "hell" = 0x68656c6c.
  message = test_support::message_of<minnow::format_error>([&] { (void)minnow::data::read_idx_images(dir / "text"); });
  CHECK_THAT(message, Contains((dir / "text").string()) && Contains("found 0x68656c6c") &&
                          Contains("not an IDX header"));
}

TEST_CASE("IDX reader: truncated headers and data are format_errors with byte counts", "[data][idx][errors]") {
  TempDir dir;
  const Bytes full = idx_bytes(0x803, {3, 4, 5}, pattern(60));  // 16 + 60 = 76 bytes

  struct Case {
    std::size_t keep;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases = {
      {0, {"truncated", "at least 4 bytes", "has 0"}},
      {3, {"truncated", "at least 4 bytes", "has 3"}},
      {10, {"truncated", "header needs 16 bytes", "has 10"}},
      {16, {"truncated", "[3, 4, 5]", "need 76 bytes", "16 header + 60 data", "has 16"}},
      {75, {"truncated", "need 76 bytes", "has 75"}},
  };
  for (const auto& c : cases) {
    const fs::path path = dir / ("cut" + std::to_string(c.keep));
    write_file(path, Bytes(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(c.keep)));
    INFO("raw file cut to " << c.keep << " bytes");
    const std::string message =
        test_support::message_of<minnow::format_error>([&] { (void)minnow::data::read_idx_images(path); });
    CHECK_THAT(message, Contains(path.string()));
    for (const auto& part : c.expected) CHECK_THAT(message, Contains(part));
#ifdef MINNOW_HAS_ZLIB
    // The same content, complete as a gzip stream but short as IDX: counts are of the decompressed bytes.
    const fs::path gz_path = dir / ("cut" + std::to_string(c.keep) + ".gz");
    write_gz(gz_path, Bytes(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(c.keep)));
    const std::string gz_message =
        test_support::message_of<minnow::format_error>([&] { (void)minnow::data::read_idx_images(gz_path); });
    CHECK_THAT(gz_message, Contains(gz_path.string()) && Contains("decompressed"));
    for (const auto& part : c.expected) CHECK_THAT(gz_message, Contains(part));
#endif
  }

  // Labels: the 1-D header is 8 bytes.
  write_file(dir / "labels-cut", idx_bytes(0x801, {10}, {1, 2, 3}));
  const std::string message =
      test_support::message_of<minnow::format_error>([&] { (void)minnow::data::read_idx_labels(dir / "labels-cut"); });
  CHECK_THAT(message, Contains("need 18 bytes") && Contains("8 header + 10 data") && Contains("has 11"));
}

TEST_CASE("IDX reader: trailing bytes and absurd dims are format_errors", "[data][idx][errors]") {
  TempDir dir;
  Bytes long_file = idx_bytes(0x801, {3}, {1, 2, 3, 4});
  write_file(dir / "long", long_file);
  std::string message = test_support::message_of<minnow::format_error>([&] { (void)minnow::data::read_idx_labels(dir / "long"); });
  CHECK_THAT(message, Contains((dir / "long").string()) && Contains("trailing") && Contains("need 11 bytes") &&
                          Contains("has 12"));

  // 2^32-1 cubed elements cannot exist; the reader must refuse before allocating anything.
  write_file(dir / "huge", idx_bytes(0x803, {0xffffffffu, 0xffffffffu, 0xffffffffu}, {}));
  message = test_support::message_of<minnow::format_error>([&] { (void)minnow::data::read_idx_images(dir / "huge"); });
  CHECK_THAT(message, Contains((dir / "huge").string()) && Contains("4294967295"));
  // Plausible dims but a tiny file: "truncated", without allocating the 4 GB the header claims.
  write_file(dir / "big-claim", idx_bytes(0x803, {65536, 256, 256}, {1, 2, 3}));
  message = test_support::message_of<minnow::format_error>([&] { (void)minnow::data::read_idx_images(dir / "big-claim"); });
  CHECK_THAT(message, Contains("truncated") && Contains("need 4294967312 bytes") && Contains("has 19"));

#ifdef MINNOW_HAS_ZLIB
  write_gz(dir / "long.gz", long_file);
  message = test_support::message_of<minnow::format_error>([&] { (void)minnow::data::read_idx_labels(dir / "long.gz"); });
  CHECK_THAT(message, Contains("trailing") && Contains("decompressed file has 12"));
  write_gz(dir / "big-claim.gz", idx_bytes(0x803, {65536, 256, 256}, {1, 2, 3}));
  message = test_support::message_of<minnow::format_error>([&] { (void)minnow::data::read_idx_images(dir / "big-claim.gz"); });
  CHECK_THAT(message, Contains("truncated") && Contains("decompressed file has 19"));
#endif
}

#ifdef MINNOW_HAS_ZLIB
TEST_CASE("IDX reader: damaged gzip streams are format_errors, never partial data", "[data][idx][gzip][errors]") {
  TempDir dir;
  write_gz(dir / "good.gz", idx_bytes(0x803, {20, 10, 10}, pattern(2000)));
  const Bytes good = read_file(dir / "good.gz");
  REQUIRE(good.size() > 40);

  // Cut the compressed stream in half: either truncated data or a gzip error, but a format_error.
  write_file(dir / "cut.gz", Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(good.size() / 2)));
  std::string message = test_support::message_of<minnow::format_error>([&] { (void)minnow::data::read_idx_images(dir / "cut.gz"); });
  CHECK_THAT(message, Contains((dir / "cut.gz").string()) && Contains("truncated") && Contains("need 2016 bytes") &&
                          Contains("cut off"));
  // Only the 8-byte gzip trailer (CRC, size) missing: all data is there, but unverified.
  write_file(dir / "no-trailer.gz", Bytes(good.begin(), good.end() - 8));
  message = test_support::message_of<minnow::format_error>([&] { (void)minnow::data::read_idx_images(dir / "no-trailer.gz"); });
  CHECK_THAT(message, Contains((dir / "no-trailer.gz").string()) && Contains("checksum"));
  // Garbage after the gzip signature.
  write_file(dir / "garbage.gz", {0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x03, 0x01, 0x02, 0x03});
  message = test_support::message_of<minnow::format_error>([&] { (void)minnow::data::read_idx_images(dir / "garbage.gz"); });
  CHECK_THAT(message, Contains((dir / "garbage.gz").string()));
  // A corrupted CRC.
  Bytes bad_crc = good;
  bad_crc[bad_crc.size() - 8] ^= 0xff;
  write_file(dir / "bad-crc.gz", bad_crc);
  message = test_support::message_of<minnow::format_error>([&] { (void)minnow::data::read_idx_images(dir / "bad-crc.gz"); });
  CHECK_THAT(message, Contains((dir / "bad-crc.gz").string()) && Contains("not a valid gzip stream"));
  INFO(message);
}
#else
TEST_CASE("IDX reader without zlib: gzip files are io_errors saying zlib support is off", "[data][idx][gzip][errors]") {
  TempDir dir;
  write_file(dir / "images.gz", {0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03});
  const std::string message =
      test_support::message_of<minnow::io_error>([&] { (void)minnow::data::read_idx_images(dir / "images.gz"); });
  CHECK_THAT(message, Contains((dir / "images.gz").string()) && Contains("zlib support is off"));
}
#endif

// ------------------------------------------------------------------------------------------ Dataset

TEST_CASE("make_dataset scales, normalises and reshapes to [N, 1, H, W]", "[data][dataset]") {
  Tensor<std::uint8_t, 3> images({3, 2, 2});
  const std::array<std::uint8_t, 12> bytes = {0, 255, 128, 1, 2, 3, 4, 5, 250, 100, 50, 25};
  std::copy(bytes.begin(), bytes.end(), images.data());
  Tensor<std::int32_t, 1> labels({3});
  labels(0) = 7;
  labels(1) = 0;
  labels(2) = 9;
  const Normalization norm{0.25, 0.5};

  const Dataset<float> all = minnow::data::make_dataset<float>(images, labels, 10, norm);
  REQUIRE(all.images.shape() == minnow::Shape<4>{3, 1, 2, 2});
  CHECK(all.size() == 3);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    INFO("pixel " << i);
    CHECK(all.images.data()[i] == static_cast<float>((bytes[i] / 255.0 - 0.25) / 0.5));
  }
  CHECK(all.images(2, 0, 1, 1) == static_cast<float>((25 / 255.0 - 0.25) / 0.5));
  CHECK(as_vector(all.labels) == std::vector<std::int32_t>{7, 0, 9});
  CHECK(all.images.view().is_aligned());

  const Dataset<double> first2 = minnow::data::make_dataset<double>(images, labels, 10, norm, 2);
  CHECK(first2.images.shape() == minnow::Shape<4>{2, 1, 2, 2});
  CHECK(first2.images(1, 0, 1, 1) == (5 / 255.0 - 0.25) / 0.5);
  CHECK(as_vector(first2.labels) == std::vector<std::int32_t>{7, 0});
  CHECK(minnow::data::make_dataset<float>(images, labels, 10, norm, 0).size() == 0);
  CHECK(minnow::data::make_dataset<float>(images, labels, 10, norm, 100).size() == 3);  // at most N

  // The view overload works on a user's own buffers.
  const minnow::TensorView<const std::uint8_t, 3> image_view(bytes.data(), {3, 2, 2});
  CHECK(minnow::data::make_dataset<float>(image_view, labels.view(), 10, Normalization{}).images(0, 0, 0, 1) == 1.0f);
}

TEST_CASE("make_dataset errors name the counts and values", "[data][dataset][errors]") {
  Tensor<std::uint8_t, 3> images({4, 2, 2});
  Tensor<std::int32_t, 1> labels({3});
  std::string message =
      test_support::message_of<minnow::shape_error>([&] { (void)minnow::data::make_dataset<float>(images, labels, 10, {}); });
  CHECK_THAT(message, Contains("4 images") && Contains("3 labels"));

  Tensor<std::int32_t, 1> negative({4});
  negative(2) = -1;
  message = test_support::message_of<minnow::format_error>([&] { (void)minnow::data::make_dataset<float>(images, negative, 10, {}); });
  CHECK_THAT(message, Contains("sample 2 has label -1") && Contains("[0, 10)"));
  // A label past the last class is found here, naming its sample, not mid-epoch by the loss.
  Tensor<std::int32_t, 1> too_big({4});
  too_big(3) = 200;
  message = test_support::message_of<minnow::format_error>([&] { (void)minnow::data::make_dataset<float>(images, too_big, 10, {}); });
  CHECK_THAT(message, Contains("sample 3 has label 200; labels must lie in [0, 10)"));
  CHECK(minnow::data::make_dataset<float>(images, too_big, 201, {}).size() == 4);
  CHECK_THROWS_AS(minnow::data::make_dataset<float>(images, too_big, 0, {}), minnow::value_error);
  // Outside the limit, a bad label is not read.
  CHECK(minnow::data::make_dataset<float>(images, negative, 10, {}, 2).size() == 2);

  CHECK_THROWS_AS(minnow::data::make_dataset<float>(images, negative, 10, {}, -2), minnow::value_error);
  message = test_support::message_of<minnow::value_error>(
      [&] { (void)minnow::data::make_dataset<float>(images, negative, 10, Normalization{0.5, 0.0}); });
  CHECK_THAT(message, Contains("stddev 0"));
  CHECK_THROWS_AS(minnow::data::make_dataset<float>(images, negative, 10, Normalization{NAN, 1.0}), minnow::value_error);
  CHECK_THROWS_AS(minnow::data::make_dataset<float>(images, negative, 10, Normalization{0.0, -1.0}), minnow::value_error);
}

// ------------------------------------------------------------------------------------ Fashion-MNIST

TEST_CASE("load_fashion_mnist reads a directory of raw and gzip files", "[data][fashion_mnist]") {
  TempDir dir;
  write_small_fashion_dir(dir.path(), /*gz_labels=*/true);
  const Normalization norm{0.5, 0.25};
  const auto data = minnow::data::load_fashion_mnist<float>(dir.path(), norm);
  CHECK(data.train.images.shape() == minnow::Shape<4>{7, 1, 3, 2});
  CHECK(data.test.images.shape() == minnow::Shape<4>{4, 1, 3, 2});
  CHECK(as_vector(data.train.labels) == std::vector<std::int32_t>{9, 0, 0, 3, 0, 2, 7});
  CHECK(as_vector(data.test.labels) == std::vector<std::int32_t>{9, 2, 1, 1});
  const Bytes train_pixels = pattern(42);
  CHECK(data.train.images(6, 0, 2, 1) == static_cast<float>((train_pixels[41] / 255.0 - 0.5) / 0.25));

  const auto limited = minnow::data::load_fashion_mnist<double>(dir.path(), norm, 5, 2);
  CHECK(limited.train.size() == 5);
  CHECK(limited.test.size() == 2);
  CHECK(limited.test.images(1, 0, 0, 0) == (pattern(24, 5)[6] / 255.0 - 0.5) / 0.25);

  CHECK_THROWS_AS(minnow::data::load_fashion_mnist<float>(dir.path(), norm, -2), minnow::value_error);
}

TEST_CASE("load_fashion_mnist errors name the directory, the files and the counts", "[data][fashion_mnist][errors]") {
  TempDir dir;
  const fs::path missing = dir / "nowhere";
  std::string message = test_support::message_of<minnow::io_error>([&] { (void)minnow::data::load_fashion_mnist<float>(missing); });
  CHECK_THAT(message, Contains(missing.string()) && Contains("apt-get install dataset-fashion-mnist") &&
                          Contains("MINNOW_FASHION_MNIST_DIR"));

  write_small_fashion_dir(dir.path(), /*gz_labels=*/false);
  // One label too many in the test split.
  write_file(dir / "t10k-labels-idx1-ubyte", idx_bytes(0x801, {5}, {9, 2, 1, 1, 0}));
  message = test_support::message_of<minnow::format_error>([&] { (void)minnow::data::load_fashion_mnist<float>(dir.path()); });
  CHECK_THAT(message, Contains((dir / "t10k-images-idx3-ubyte").string()) && Contains("4 images") &&
                          Contains((dir / "t10k-labels-idx1-ubyte").string()) && Contains("5 labels"));

  fs::remove(dir / "t10k-labels-idx1-ubyte");
  message = test_support::message_of<minnow::io_error>([&] { (void)minnow::data::load_fashion_mnist<float>(dir.path()); });
  CHECK_THAT(message, Contains("t10k-labels-idx1-ubyte") && Contains("t10k-labels-idx1-ubyte.gz"));

  // Training and test images of different sizes cannot be one data set.
  write_file(dir / "t10k-labels-idx1-ubyte", idx_bytes(0x801, {4}, {9, 2, 1, 1}));
  write_file(dir / "t10k-images-idx3-ubyte", idx_bytes(0x803, {4, 2, 3}, pattern(24)));
  message = test_support::message_of<minnow::format_error>([&] { (void)minnow::data::load_fashion_mnist<float>(dir.path()); });
  CHECK_THAT(message, Contains("3x2") && Contains("2x3"));
}

TEST_CASE("default_fashion_mnist_dir honours MINNOW_FASHION_MNIST_DIR", "[data][fashion_mnist]") {
  const char* old = std::getenv("MINNOW_FASHION_MNIST_DIR");
  const std::string saved = old != nullptr ? old : "";
  ::unsetenv("MINNOW_FASHION_MNIST_DIR");
  CHECK(minnow::data::default_fashion_mnist_dir() == fs::path("/usr/share/datasets/fashion-mnist"));
  ::setenv("MINNOW_FASHION_MNIST_DIR", "", 1);
  CHECK(minnow::data::default_fashion_mnist_dir() == fs::path("/usr/share/datasets/fashion-mnist"));
  ::setenv("MINNOW_FASHION_MNIST_DIR", "/some/where", 1);
  CHECK(minnow::data::default_fashion_mnist_dir() == fs::path("/some/where"));
  if (old != nullptr) {
    ::setenv("MINNOW_FASHION_MNIST_DIR", saved.c_str(), 1);
  } else {
    ::unsetenv("MINNOW_FASHION_MNIST_DIR");
  }
}

#ifdef MINNOW_HAS_ZLIB
TEST_CASE("The real Fashion-MNIST loads with the published sizes, labels and statistics",
          "[data][fashion_mnist][real]") {
  MINNOW_REQUIRE_FASHION_MNIST();
  const fs::path dir = minnow::data::default_fashion_mnist_dir();
  const auto data = minnow::data::load_fashion_mnist<float>(dir);
  REQUIRE(data.train.images.shape() == minnow::Shape<4>{60000, 1, 28, 28});
  REQUIRE(data.test.images.shape() == minnow::Shape<4>{10000, 1, 28, 28});
  REQUIRE(data.train.size() == 60000);
  REQUIRE(data.test.size() == 10000);

  // Known values: both splits start with an ankle boot (class 9); every class has 6000 / 1000 samples.
  CHECK(data.train.labels(0) == 9);
  CHECK(data.test.labels(0) == 9);
  for (const auto* split : {&data.train, &data.test}) {
    std::map<std::int32_t, index_t> per_class;
    for (index_t i = 0; i < split->size(); ++i) ++per_class[split->labels(i)];
    REQUIRE(per_class.size() == 10);
    CHECK(per_class.begin()->first == 0);
    CHECK(per_class.rbegin()->first == 9);
    for (const auto& [label, count] : per_class) CHECK(count == split->size() / 10);
  }

  // Cross-check against zlib directly, so the test cannot pass by reading the same wrong thing twice.
  const Bytes raw_labels = gunzip(dir / "train-labels-idx1-ubyte.gz");
  REQUIRE(raw_labels.size() == 8 + 60000);
  for (index_t i = 0; i < 60000; ++i) REQUIRE(data.train.labels(i) == raw_labels[8 + static_cast<std::size_t>(i)]);
  const Bytes raw_images = gunzip(dir / "train-images-idx3-ubyte.gz");
  REQUIRE(raw_images.size() == 16 + std::size_t{60000} * 784);
  const auto& norm = minnow::data::fashion_mnist_normalization;
  auto expected = [&](std::size_t flat) {
    return static_cast<float>((raw_images[16 + flat] / 255.0 - norm.mean) / norm.stddev);
  };
  // Image 0 begins with blank pixels; byte 99 is 13 and byte 100 is 73 (read with Python's gzip).
  CHECK(raw_images[16 + 99] == 13);
  CHECK(raw_images[16 + 100] == 73);
  CHECK(data.train.images(0, 0, 0, 0) == expected(0));
  CHECK(data.train.images(0, 0, 3, 15) == expected(99));
  CHECK(data.train.images(0, 0, 3, 16) == expected(100));
  for (const std::size_t flat : {std::size_t{0}, std::size_t{784} * 12345 + 400, std::size_t{60000} * 784 - 1}) {
    CHECK(data.train.images.data()[flat] == expected(flat));
  }

  // Statistics after normalisation. The published 4-digit constants are slightly off the exact
  // statistics (mean 0.2860406, stddev 0.3530242), so the result is mean 1.150e-4 and stddev
  // 1.0000687 (computed independently in double from the raw bytes), not exactly 0 and 1.
  double sum = 0.0;
  double sum_squares = 0.0;
  const auto values = data.train.images.array();
  for (index_t i = 0; i < values.size(); ++i) {
    sum += values(i);
    sum_squares += static_cast<double>(values(i)) * values(i);
  }
  const double count = static_cast<double>(values.size());
  const double mean = sum / count;
  const double stddev = std::sqrt(sum_squares / count - mean * mean);
  CHECK(std::abs(mean) < 1e-3);
  CHECK(std::abs(stddev - 1.0) < 1e-3);
  CHECK(mean == Approx(1.1500563e-4).margin(1e-6));
  CHECK(stddev == Approx(1.0000687).margin(1e-6));

  // Limits load only a prefix, identical to the full load's.
  const auto small = minnow::data::load_fashion_mnist<double>(dir, norm, 100, 10);
  CHECK(small.train.size() == 100);
  CHECK(small.test.size() == 10);
  CHECK(small.train.images(99, 0, 14, 14) == Approx(data.train.images(99, 0, 14, 14)).epsilon(1e-6));
  CHECK(small.test.labels(9) == data.test.labels(9));
}
#else
TEST_CASE("Without zlib, the gzip-compressed Fashion-MNIST is an io_error saying so", "[data][fashion_mnist][real]") {
  const fs::path dir = minnow::data::default_fashion_mnist_dir();
  if (!fs::exists(dir / "train-images-idx3-ubyte.gz") || fs::exists(dir / "train-images-idx3-ubyte")) {
    MINNOW_SKIP("needs the gzip-compressed Fashion-MNIST alone in " << dir);
  }
  const std::string message = test_support::message_of<minnow::io_error>([&] { (void)minnow::data::load_fashion_mnist<float>(dir); });
  CHECK_THAT(message, Contains("zlib support is off"));
}
#endif

// ----------------------------------------------------------------------------------------- batches

namespace {

/// All indices of one epoch, in batch order.
std::vector<index_t> epoch_order(const BatchSampler& sampler) {
  std::vector<index_t> out;
  for (index_t b = 0; b < sampler.num_batches(); ++b) {
    const auto batch = sampler.batch(b);
    out.insert(out.end(), batch.begin(), batch.end());
  }
  return out;
}

}  // namespace

TEST_CASE("BatchSampler visits every index exactly once per epoch", "[data][batches]") {
  BatchSampler sampler(103, 10, 42);
  REQUIRE(sampler.num_batches() == 11);
  std::vector<index_t> previous;
  for (int e = 0; e < 5; ++e) {
    sampler.start_epoch();
    CHECK(sampler.epoch() == static_cast<std::uint64_t>(e));
    for (index_t b = 0; b < 10; ++b) CHECK(sampler.batch(b).size() == 10);
    CHECK(sampler.batch(10).size() == 3);  // the partial last batch
    const auto order = epoch_order(sampler);
    std::vector<index_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    std::vector<index_t> all(103);
    std::iota(all.begin(), all.end(), index_t{0});
    CHECK(sorted == all);
    CHECK(order != all);       // shuffled
    CHECK(order != previous);  // and differently each epoch
    previous = order;
  }
}

TEST_CASE("BatchSampler order depends only on seed and epoch", "[data][batches]") {
  BatchSampler a(1000, 64, 7);
  BatchSampler b(1000, 64, 7);
  BatchSampler other_seed(1000, 64, 8);
  // Epoch 0 is ready at construction, and the first start_epoch() begins epoch 0 again.
  const auto at_construction = epoch_order(a);
  a.start_epoch();
  b.start_epoch();
  other_seed.start_epoch();
  CHECK(epoch_order(a) == at_construction);
  CHECK(epoch_order(a) == epoch_order(b));
  CHECK(epoch_order(a) != epoch_order(other_seed));

  // Walk `a` through epochs 1..3; jump `b` straight to epoch 3 (a resumed run).
  for (int e = 1; e <= 3; ++e) a.start_epoch();
  b.set_epoch(3);
  CHECK(a.epoch() == 3);
  CHECK(epoch_order(a) == epoch_order(b));
  a.start_epoch();
  b.start_epoch();
  CHECK(b.epoch() == 4);
  CHECK(epoch_order(a) == epoch_order(b));

  // Pinned values: std::seed_seq and std::mt19937_64 are specified exactly by the standard and the
  // shuffle is minnow's own, so this order is the same with every compiler and standard library.
  BatchSampler pinned(10, 4, 42);
  const std::vector<index_t> epoch0 = epoch_order(pinned);
  pinned.start_epoch();
  pinned.start_epoch();
  const std::vector<index_t> epoch1 = epoch_order(pinned);
  CHECK(epoch0 == std::vector<index_t>{0, 6, 5, 1, 3, 9, 7, 8, 4, 2});
  CHECK(epoch1 == std::vector<index_t>{3, 8, 9, 4, 7, 2, 1, 0, 5, 6});
}

TEST_CASE("BatchSampler shuffles uniformly", "[data][batches]") {
  // All 6 permutations of 3 elements over 60000 epochs: each expected 10000 times. The run is
  // deterministic, so this cannot flake; the 3% band is ~7 standard deviations.
  BatchSampler sampler(3, 3, 2024);
  std::map<std::vector<index_t>, int> seen;
  for (int e = 0; e < 60000; ++e) {
    sampler.start_epoch();
    ++seen[epoch_order(sampler)];
  }
  REQUIRE(seen.size() == 6);
  for (const auto& [order, count] : seen) CHECK(std::abs(count - 10000) < 300);

  // Each index lands at each position equally often, also for a bound that is not a power of two.
  std::mt19937_64 engine(5);
  std::array<int, 7> counts{};
  for (int i = 0; i < 70000; ++i) ++counts[minnow::data::detail::uniform_below(engine, 7)];
  for (const int count : counts) CHECK(std::abs(count - 10000) < 400);
}

TEST_CASE("BatchSampler drop_last, sequential mode and edge cases", "[data][batches]") {
  BatchSampler dropping(103, 10, 1, /*shuffle=*/true, /*drop_last=*/true);
  CHECK(dropping.num_batches() == 10);
  const auto kept = epoch_order(dropping);
  CHECK(kept.size() == 100);
  CHECK(std::set<index_t>(kept.begin(), kept.end()).size() == 100);
  CHECK(dropping.order().size() == 103);
  CHECK_THROWS_AS(dropping.batch(10), minnow::value_error);

  BatchSampler exact(100, 10, 1, true, true);
  CHECK(exact.num_batches() == 10);
  CHECK(BatchSampler(100, 10, 1).num_batches() == 10);

  auto sequential = BatchSampler::sequential(25, 10);
  CHECK_FALSE(sequential.shuffles());
  CHECK(sequential.num_batches() == 3);
  sequential.start_epoch();
  sequential.start_epoch();
  std::vector<index_t> in_order(25);
  std::iota(in_order.begin(), in_order.end(), index_t{0});
  CHECK(epoch_order(sequential) == in_order);
  CHECK(sequential.batch(2).size() == 5);
  CHECK(sequential.batch(2).front() == 20);

  BatchSampler empty(0, 8, 3);
  empty.start_epoch();
  CHECK(empty.num_batches() == 0);
  BatchSampler one(1, 8, 3);
  one.start_epoch();
  CHECK(epoch_order(one) == std::vector<index_t>{0});

  std::string message = test_support::message_of<minnow::value_error>([] { BatchSampler(10, 0, 1); });
  CHECK_THAT(message, Contains("batch_size") && Contains("got 0"));
  CHECK_THROWS_AS(BatchSampler(10, -4, 1), minnow::value_error);
  CHECK_THROWS_AS(BatchSampler(-1, 4, 1), minnow::value_error);
  message = test_support::message_of<minnow::value_error>([&] { (void)sequential.batch(-1); });
  CHECK_THAT(message, Contains("batch -1") && Contains("[0, 3)"));
}

TEST_CASE("gather copies exactly the batch's samples", "[data][batches]") {
  Tensor<std::uint8_t, 3> images({6, 2, 3});
  for (index_t i = 0; i < images.size(); ++i) images.data()[i] = static_cast<std::uint8_t>(i);
  Tensor<std::int32_t, 1> labels({6});
  for (index_t i = 0; i < 6; ++i) labels(i) = static_cast<std::int32_t>(10 + i);
  const Dataset<float> data = minnow::data::make_dataset<float>(images, labels, 16, Normalization{0.0, 1.0 / 255.0});
  // With this normalisation every value is its byte: sample s holds 6s .. 6s+5.

  const std::vector<index_t> indices = {4, 0, 4};
  Tensor<float, 4> batch_images({3, 1, 2, 3});
  Tensor<std::int32_t, 1> batch_labels({3});
  minnow::data::gather(data, indices, batch_images.view(), batch_labels.view());
  for (index_t k = 0; k < 3; ++k) {
    const index_t sample = indices[static_cast<std::size_t>(k)];
    CHECK(batch_labels(k) == 10 + sample);
    for (index_t p = 0; p < 6; ++p) CHECK(batch_images.data()[k * 6 + p] == static_cast<float>(sample * 6 + p));
  }

  // Wrong output shapes or indices: errors, and the outputs are left untouched.
  batch_images.fill(-1.0f);
  Tensor<float, 4> wrong({2, 1, 2, 3});
  std::string message = test_support::message_of<minnow::shape_error>(
      [&] { minnow::data::gather(data, indices, wrong.view(), batch_labels.view()); });
  CHECK_THAT(message, Contains("[3, 1, 2, 3]") && Contains("[2, 1, 2, 3]"));
  Tensor<std::int32_t, 1> wrong_labels({4});
  CHECK_THROWS_AS(minnow::data::gather(data, indices, batch_images.view(), wrong_labels.view()), minnow::shape_error);
  const std::vector<index_t> bad = {1, 6, 2};
  message = test_support::message_of<minnow::value_error>(
      [&] { minnow::data::gather(data, bad, batch_images.view(), batch_labels.view()); });
  CHECK_THAT(message, Contains("index 6") && Contains("position 1"));
  CHECK(batch_images(0, 0, 0, 0) == -1.0f);

  // The Tensor overload resizes to the batch, including a partial last one, without reallocating.
  BatchSampler sampler(6, 4, 9);
  sampler.start_epoch();
  Tensor<float, 4> out_images;
  Tensor<std::int32_t, 1> out_labels;
  minnow::data::gather(data, sampler.batch(0), out_images, out_labels);
  CHECK(out_images.shape() == minnow::Shape<4>{4, 1, 2, 3});
  const float* buffer = out_images.data();
  minnow::data::gather(data, sampler.batch(1), out_images, out_labels);
  CHECK(out_images.shape() == minnow::Shape<4>{2, 1, 2, 3});
  CHECK(out_images.data() == buffer);
  for (index_t k = 0; k < 2; ++k) {
    const index_t sample = sampler.batch(1)[static_cast<std::size_t>(k)];
    CHECK(out_labels(k) == 10 + sample);
    CHECK(out_images(k, 0, 1, 2) == static_cast<float>(sample * 6 + 5));
  }
}
