// Bad input to the core (tensors, views, parameters, threads) and to data/ (IDX files, make_dataset,
// samplers, gather, augmentation): each case checks the exception type, the words of its message, and
// that nothing the call was given changed.
#include <minnow/data.hpp>
#include <minnow/error.hpp>
#include <minnow/parameter.hpp>
#include <minnow/tensor.hpp>
#include <minnow/threads.hpp>
#include <minnow/detail/parallel.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace minnow;
using Catch::Contains;
using test_support::file_bytes;
using test_support::raw;
using test_support::ScratchDir;
namespace fs = std::filesystem;

namespace {

void write_bytes(const fs::path& path, const std::vector<unsigned char>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

/// An IDX file: big-endian magic, one big-endian u32 per dimension, then `data`.
std::vector<unsigned char> idx(std::uint32_t magic, const std::vector<std::uint32_t>& dims, std::size_t data_bytes) {
  std::vector<unsigned char> out;
  const auto be32 = [&](std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<unsigned char>(v >> s));
  };
  be32(magic);
  for (const auto d : dims) be32(d);
  for (std::size_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<unsigned char>(i * 7));
  return out;
}

/// Four 2×2 one-channel samples with labels 0..3.
data::Dataset<float> four_samples() {
  data::Dataset<float> d;
  d.images.resize({4, 1, 2, 2});
  for (index_t i = 0; i < d.images.size(); ++i) d.images.data()[i] = static_cast<float>(i);
  d.labels.resize({4});
  for (index_t i = 0; i < 4; ++i) d.labels(i) = static_cast<std::int32_t>(i);
  return d;
}

}  // namespace

// ---- tensors and views ----

TEST_CASE("Tensor: shapes that cannot be allocated are shape errors, and a refused resize changes nothing", "[bad_input][tensor]") {
  SECTION("2^62 floats: the byte count would overflow, so nothing is allocated") {
    CHECK_REFUSED((Tensor<float, 1>({index_t{1} << 62})), shape_error,
                  Contains("[4611686018427387904]") && Contains("more than any allocation can hold"));
  }
  SECTION("a negative extent") {
    CHECK_REFUSED((Tensor<float, 2>({3, -1})), shape_error, Contains("negative extent in shape [3, -1]"));
  }
  SECTION("extents whose product overflows") {
    const index_t huge = index_t{1} << 32;
    CHECK_REFUSED((Tensor<float, 2>({huge, huge})), shape_error, Contains("[4294967296, 4294967296] has too many elements"));
  }
  SECTION("resize of a filled tensor to 2^61 elements keeps its shape and values") {
    Tensor<float, 2> t({2, 3}, 2.5f);
    const auto before = raw(t);
    CHECK_REFUSED(t.resize({index_t{1} << 61, 1}), shape_error, Contains("more than any allocation can hold"));
    CHECK(t.shape() == Shape<2>{2, 3});
    CHECK(raw(t) == before);
  }
}

TEST_CASE("TensorView: null data, negative extents, reshape, matrix, slice and copy_from refuse bad shapes", "[bad_input][tensor]") {
  Tensor<float, 1> t({12});
  for (index_t i = 0; i < 12; ++i) t(i) = static_cast<float>(i);
  const auto before = raw(t);
  SECTION("null data for a non-empty shape") {
    CHECK_REFUSED((TensorView<float, 1>(nullptr, {4})), value_error, Contains("null data for shape [4]"));
  }
  SECTION("a view with a negative extent") {
    CHECK_REFUSED((TensorView<float, 2>(t.data(), {-3, -4})), shape_error, Contains("TensorView: negative extent in shape [-3, -4]"));
  }
  SECTION("reshape with -1 whose known extents overflow") {
    const index_t huge = index_t{1} << 40;
    CHECK_REFUSED(t.view().reshape<3>(-1, huge, huge), shape_error,
                  Contains("reshape: target shape [-1, 1099511627776, 1099511627776] has too many elements"));
  }
  SECTION("reshape to another element count") {
    CHECK_REFUSED(t.view().reshape<2>(5, 3), shape_error, Contains("12 elements cannot be viewed as [5, 3]"));
  }
  SECTION("reshape with two -1") {
    CHECK_REFUSED(t.view().reshape<2>(-1, -1), shape_error, Contains("invalid target shape [-1, -1]"));
  }
  SECTION("reshape with -1 beside a 0 extent") {
    CHECK_REFUSED(t.view().reshape<2>(-1, 0), shape_error, Contains("12 elements cannot be viewed as [-1, 0]"));
  }
  SECTION("matrix(rows, cols) whose product overflows") {
    const index_t huge = index_t{1} << 32;
    CHECK_REFUSED(t.view().matrix(huge, huge), shape_error, Contains("cannot be viewed as [4294967296, 4294967296]"));
    // (2^62 + 3) · 4 wraps to 12 in 64 bits: without the overflow check it would pass.
    CHECK_REFUSED(t.view().matrix((index_t{1} << 62) + 3, 4), shape_error, Contains("12 elements of [12]"));
  }
  SECTION("matrix(rows, cols) with a negative extent") {
    CHECK_REFUSED(t.view().matrix(-3, -4), shape_error, Contains("cannot be viewed as [-3, -4]"));
  }
  SECTION("a slice outside dimension 0") {
    CHECK_REFUSED(t.view().slice(10, 13), shape_error, Contains("slice: [10, 13) is not inside dimension 0 of [12]"));
    CHECK_REFUSED(t.view().slice(5, 4), shape_error, Contains("[5, 4)"));
  }
  SECTION("copy_from a source of another shape") {
    Tensor<float, 1> source({11}, 9.0f);
    CHECK_REFUSED(t.view().copy_from(source.view()), shape_error, Contains("source [11] does not match destination [12]"));
  }
  CHECK(raw(t) == before);
}

TEST_CASE("Parameter: a missing name and a wrong rank are refused", "[bad_input][tensor]") {
  Tensor<float, 1> value({6}, 1.0f), grad({6});
  const std::vector<Parameter<float>> params{{"fc.weight", {2, 3}, value.view(), grad.view()}};
  const auto before = raw(value);
  SECTION("find_parameter of an unknown name") {
    CHECK_REFUSED((void)find_parameter(params, "fc.bias"), value_error, Contains("no parameter named 'fc.bias'"));
  }
  SECTION("value_as with another rank") {
    CHECK_REFUSED((void)params[0].value_as<3>(), shape_error, Contains("parameter 'fc.weight' has rank 2, not 3"));
  }
  CHECK(raw(value) == before);
}

TEST_CASE("set_threads: counts outside [1, max_thread_count] are value errors and keep the thread count", "[bad_input][threads]") {
  const int before = minnow::detail::max_threads();
  SECTION("0") { CHECK_REFUSED(set_threads(0), value_error, Contains("set_threads") && Contains("got 0")); }
  SECTION("-1") { CHECK_REFUSED(set_threads(-1), value_error, Contains("got -1")); }
  SECTION("max_thread_count + 1") {
    CHECK_REFUSED(set_threads(max_thread_count + 1), value_error, Contains("[1, 4096]") && Contains("got 4097"));
  }
  SECTION("INT_MIN") {
    CHECK_REFUSED(set_threads(std::numeric_limits<int>::min()), value_error, Contains("got -2147483648"));
  }
  CHECK(minnow::detail::max_threads() == before);
}

// ---- IDX files ----

TEST_CASE("read_idx_images / read_idx_labels: missing, non-regular and malformed files", "[bad_input][data][idx]") {
  const ScratchDir dir;
  const fs::path path = dir / "file-idx3-ubyte";
  const auto check_unchanged = [&](const std::vector<char>& before) { CHECK(file_bytes(path) == before); };

  SECTION("a missing file is an io_error naming it") {
    CHECK_REFUSED((void)data::read_idx_images(path), io_error, Contains(path.string()) && Contains("no such file"));
    CHECK_FALSE(fs::exists(path));
  }
  SECTION("a directory is an io_error naming it") {
    fs::create_directories(path);
    CHECK_REFUSED((void)data::read_idx_labels(path), io_error,
                  Contains("read_idx_labels") && Contains(path.string()) && Contains("it is a directory"));
    CHECK(fs::is_directory(path));
  }
  SECTION("a label file read as images: the wrong magic, both in hex") {
    write_bytes(path, idx(0x801, {3}, 3));
    const auto before = file_bytes(path);
    CHECK_REFUSED((void)data::read_idx_images(path), format_error,
                  Contains(path.string()) && Contains("expected 0x00000803") && Contains("found 0x00000801"));
    check_unchanged(before);
  }
  SECTION("an image file read as labels") {
    write_bytes(path, idx(0x803, {1, 2, 2}, 4));
    const auto before = file_bytes(path);
    CHECK_REFUSED((void)data::read_idx_labels(path), format_error, Contains("expected 0x00000801") && Contains("3 dimensions"));
    check_unchanged(before);
  }
  SECTION("a file of 2 bytes: truncated before the magic") {
    write_bytes(path, {0, 0});
    const auto before = file_bytes(path);
    CHECK_REFUSED((void)data::read_idx_images(path), format_error, Contains("is truncated") && Contains("the file has 2"));
    check_unchanged(before);
  }
  SECTION("data shorter than the dims need") {
    write_bytes(path, idx(0x803, {2, 3, 3}, 10));
    const auto before = file_bytes(path);
    CHECK_REFUSED((void)data::read_idx_images(path), format_error,
                  Contains("dims [2, 3, 3] need 34 bytes") && Contains("the file has 26"));
    check_unchanged(before);
  }
  SECTION("trailing bytes after the data") {
    write_bytes(path, idx(0x801, {3}, 5));
    const auto before = file_bytes(path);
    CHECK_REFUSED((void)data::read_idx_labels(path), format_error, Contains("has trailing bytes") && Contains("the file has 13"));
    check_unchanged(before);
  }
  SECTION("dims whose product does not fit in memory") {
    write_bytes(path, idx(0x803, {0xffffffffu, 0xffffffffu, 0xffffffffu}, 0));
    const auto before = file_bytes(path);
    CHECK_REFUSED((void)data::read_idx_images(path), format_error, Contains("more elements than fit in memory"));
    check_unchanged(before);
  }
}

TEST_CASE("load_fashion_mnist: a missing directory, bad limits, missing files", "[bad_input][data][fashion_mnist]") {
  const ScratchDir dir;
  SECTION("a directory that does not exist names it and says how to install the data set") {
    const fs::path missing = dir / "no-such-dir";
    CHECK_REFUSED((void)data::load_fashion_mnist<float>(missing), io_error,
                  Contains("directory '" + missing.string() + "' is not an existing directory") && Contains("apt-get install"));
    CHECK_FALSE(fs::exists(missing));
  }
  SECTION("a train limit of -2 is refused before any file is read") {
    const fs::path empty = dir / "empty";
    fs::create_directories(empty);
    CHECK_REFUSED((void)data::load_fashion_mnist<float>(empty, data::fashion_mnist_normalization, -2), value_error,
                  Contains("limits must be -1 (all) or >= 0, got train_limit -2"));
    CHECK(fs::is_empty(empty));
  }
  SECTION("a directory without the IDX files names both names it looked for") {
    const fs::path empty = dir / "empty";
    fs::create_directories(empty);
    CHECK_REFUSED((void)data::load_fashion_mnist<float>(empty), io_error,
                  Contains("train-images-idx3-ubyte") && Contains("train-images-idx3-ubyte.gz"));
    CHECK(fs::is_empty(empty));
  }
}

TEST_CASE("read_idx_images: a FIFO is refused as not a regular file, without waiting for a writer",
          "[bad_input][data][idx]") {
  // Opening a FIFO would block until a writer came. Should the reader ever open one again, the thread
  // below opens the FIFO for writing (never blocking itself) and closes it, so that the test fails
  // instead of hanging.
  const ScratchDir dir;
  const fs::path fifo = dir / "images-idx3-ubyte";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  std::atomic<bool> done{false};
  std::thread unblock([&] {
    while (!done) {
      const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      if (fd >= 0) ::close(fd);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  CHECK_REFUSED((void)data::read_idx_images(fifo), io_error, Contains(fifo.string()) && Contains("FIFO"));
  done = true;
  unblock.join();
  CHECK(fs::is_fifo(fifo));
}

// ---- make_dataset ----

TEST_CASE("make_dataset: labels outside the classes, count mismatches and bad options", "[bad_input][data][dataset]") {
  Tensor<std::uint8_t, 3> images({5, 2, 2}, std::uint8_t{7});
  Tensor<std::int32_t, 1> labels({5});
  for (index_t i = 0; i < 5; ++i) labels(i) = static_cast<std::int32_t>(i);
  const data::Normalization norm{0.5, 0.25};
  const auto images_before = raw(images);
  std::vector<unsigned char> labels_before;

  SECTION("label 200 with 10 classes names the sample") {
    labels(3) = 200;
    labels_before = raw(labels);
    CHECK_REFUSED((void)data::make_dataset<float>(images, labels, 10, norm), format_error,
                  Contains("sample 3 has label 200") && Contains("[0, 10)"));
  }
  SECTION("a negative label") {
    labels(0) = -1;
    labels_before = raw(labels);
    CHECK_REFUSED((void)data::make_dataset<float>(images, labels, 10, norm), format_error, Contains("sample 0 has label -1"));
  }
  SECTION("classes 0") {
    labels_before = raw(labels);
    CHECK_REFUSED((void)data::make_dataset<float>(images, labels, 0, norm), value_error, Contains("classes must be >= 1, got 0"));
  }
  SECTION("4 labels for 5 images") {
    Tensor<std::int32_t, 1> four({4});
    labels_before = raw(labels);
    CHECK_REFUSED((void)data::make_dataset<float>(images, four, 10, norm), shape_error,
                  Contains("5 images [5, 2, 2] but 4 labels"));
  }
  SECTION("limit -2") {
    labels_before = raw(labels);
    CHECK_REFUSED((void)data::make_dataset<float>(images, labels, 10, norm, -2), value_error, Contains("limit") && Contains("got -2"));
  }
  SECTION("a zero stddev") {
    labels_before = raw(labels);
    CHECK_REFUSED((void)data::make_dataset<float>(images, labels, 10, {0.0, 0.0}), value_error, Contains("stddev 0"));
  }
  SECTION("a NaN mean") {
    labels_before = raw(labels);
    CHECK_REFUSED((void)data::make_dataset<float>(images, labels, 10, {std::nan(""), 1.0}), value_error, Contains("mean nan"));
  }
  CHECK(raw(images) == images_before);
  CHECK(raw(labels) == labels_before);
}

// ---- samplers ----

TEST_CASE("BatchSampler, SubsetBatchSampler, bootstrap_indices, select and range_indices refuse bad counts", "[bad_input][data][batches]") {
  SECTION("BatchSampler with -1 samples") {
    CHECK_REFUSED(data::BatchSampler(-1, 4, 0), value_error, Contains("num_samples must be >= 0, got -1"));
  }
  SECTION("BatchSampler with batch size 0") {
    CHECK_REFUSED(data::BatchSampler(10, 0, 0), value_error, Contains("batch_size must be > 0, got 0"));
  }
  SECTION("BatchSampler::batch past the last batch keeps the epoch's order") {
    data::BatchSampler sampler(10, 4, 3);
    const std::vector<index_t> order(sampler.order().begin(), sampler.order().end());
    CHECK_REFUSED((void)sampler.batch(3), value_error, Contains("batch 3 is not in [0, 3)"));
    CHECK_REFUSED((void)sampler.batch(-1), value_error, Contains("batch -1 is not in [0, 3)"));
    CHECK(std::vector<index_t>(sampler.order().begin(), sampler.order().end()) == order);
  }
  SECTION("SubsetBatchSampler with a negative index") {
    CHECK_REFUSED(data::SubsetBatchSampler({0, 4, -2}, 2, 0), value_error, Contains("index -2 at position 2 is negative"));
  }
  SECTION("SubsetBatchSampler with batch size -1") {
    CHECK_REFUSED(data::SubsetBatchSampler({0, 1}, -1, 0), value_error, Contains("batch_size must be > 0, got -1"));
  }
  SECTION("bootstrap_indices from a negative population") {
    CHECK_REFUSED((void)data::bootstrap_indices(-1, 0), value_error, Contains("n must be >= 0, got -1"));
  }
  SECTION("bootstrap_indices with draws -2") {
    CHECK_REFUSED((void)data::bootstrap_indices(5, 0, -2), value_error, Contains("draws must be -1 (= n) or >= 0, got -2"));
  }
  SECTION("bootstrap_indices: draws from an empty population") {
    CHECK_REFUSED((void)data::bootstrap_indices(0, 0, 3), value_error, Contains("3 draws from an empty population"));
  }
  SECTION("select with a position outside the list") {
    const std::vector<index_t> indices{10, 11, 12}, positions{0, 3};
    CHECK_REFUSED((void)data::select(indices, positions), value_error, Contains("position 3 (entry 1) is outside [0, 3)"));
    CHECK(indices == std::vector<index_t>{10, 11, 12});
  }
  SECTION("range_indices with end < begin") {
    CHECK_REFUSED((void)data::range_indices(5, 2), value_error, Contains("got [5, 2)"));
  }
}

// ---- gather ----

TEST_CASE("gather: indices outside the data set and outputs of the wrong shape, and nothing is written", "[bad_input][data][batches]") {
  const auto data = four_samples();
  const auto data_images = raw(data.images), data_labels = raw(data.labels);
  SECTION("an index past the end (resizing overload): the outputs keep their shape and values") {
    Tensor<float, 4> images({1, 1, 2, 2}, -1.0f);
    Tensor<std::int32_t, 1> labels({1}, 42);
    const std::vector<index_t> batch{1, 9};
    CHECK_REFUSED(data::gather(data, batch, images, labels), value_error,
                  Contains("gather: index 9 (position 1) is not a sample of a data set of 4"));
    CHECK(images.shape() == Shape<4>{1, 1, 2, 2});
    CHECK(images(0, 0, 0, 0) == -1.0f);
    CHECK(labels.size() == 1);
    CHECK(labels(0) == 42);
  }
  SECTION("a negative index (view overload)") {
    Tensor<float, 4> images({2, 1, 2, 2}, -1.0f);
    Tensor<std::int32_t, 1> labels({2}, 42);
    const auto images_before = raw(images), labels_before = raw(labels);
    const std::vector<index_t> batch{0, -1};
    CHECK_REFUSED(data::gather(data, batch, images.view(), labels.view()), value_error, Contains("index -1 (position 1)"));
    CHECK(raw(images) == images_before);
    CHECK(raw(labels) == labels_before);
  }
  SECTION("outputs shaped for another batch (view overload)") {
    Tensor<float, 4> images({3, 1, 2, 2}, -1.0f);
    Tensor<std::int32_t, 1> labels({2}, 42);
    const auto images_before = raw(images), labels_before = raw(labels);
    const std::vector<index_t> batch{0, 1};
    CHECK_REFUSED(data::gather(data, batch, images.view(), labels.view()), shape_error,
                  Contains("a batch of 2 needs outputs [2, 1, 2, 2] and [2], got [3, 1, 2, 2] and [2]"));
    CHECK(raw(images) == images_before);
    CHECK(raw(labels) == labels_before);
  }
  CHECK(raw(data.images) == data_images);
  CHECK(raw(data.labels) == data_labels);
}

// ---- augmentation ----

TEST_CASE("augmentation: bad options, a batch of the wrong size and mismatched shapes", "[bad_input][data][augment]") {
  SECTION("a negative max_shift") {
    CHECK_REFUSED(data::BatchAugmenter<float>({.max_shift = -1}, 0), value_error,
                  Contains("BatchAugmenter") && Contains("max_shift -1"));
  }
  SECTION("max_shift above 2^20") {
    CHECK_REFUSED(data::BatchAugmenter<float>({.max_shift = (index_t{1} << 20) + 1}, 0), value_error,
                  Contains("max_shift 1048577"));
  }
  SECTION("a NaN fill") {
    CHECK_REFUSED(data::BatchAugmenter<float>({.fill = std::nan("")}, 0), value_error, Contains("fill nan"));
  }
  SECTION("with_augmented_copies: copies -1, and a bad augmentation; the data set is unchanged") {
    const auto data = four_samples();
    const auto before = raw(data.images);
    CHECK_REFUSED((void)data::with_augmented_copies(data, {}, -1, 0), value_error, Contains("copies must be >= 0, got -1"));
    CHECK_REFUSED((void)data::with_augmented_copies(data, {.max_shift = -3}, 1, 0), value_error,
                  Contains("with_augmented_copies") && Contains("max_shift -3"));
    CHECK(raw(data.images) == before);
  }
  SECTION("BatchAugmenter given 3 indices for a batch of 2 leaves the images as they were") {
    data::BatchAugmenter<float> augment({.max_shift = 1}, 5);
    Tensor<float, 4> images({2, 1, 3, 3});
    for (index_t i = 0; i < images.size(); ++i) images.data()[i] = static_cast<float>(i);
    const auto before = raw(images);
    const std::vector<index_t> indices{0, 1, 2};
    CHECK_REFUSED(augment(images.view(), indices, 0), shape_error, Contains("3 indices for a batch of [2, 1, 3, 3]"));
    CHECK(raw(images) == before);
  }
  SECTION("apply_view between images of different shapes") {
    Tensor<float, 3> src({1, 3, 3}, 1.0f), dst({1, 3, 4}, 2.0f);
    const auto before = raw(dst);
    CHECK_REFUSED(data::apply_view<float>(src.view(), dst.view(), {1, 0, true}, 0.0f), shape_error,
                  Contains("source [1, 3, 3] and destination [1, 3, 4] differ"));
    CHECK(raw(dst) == before);
  }
}
