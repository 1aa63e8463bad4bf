// minnow::io safetensors: exact reads of all 8 dtypes from hand-built files, round trips of what the writer
// writes, one test per violation of the format (each a format_error naming the file, the tensor and the
// problem), io_error for paths that are not readable files, atomic writes (symlinks, FIFOs, directories,
// no temporary left behind), Sequential save/load with its mismatch errors, and PyTorch's own student.
#include "fixtures.hpp"
#include "test_support.hpp"

#include <minnow/io/atomic_file.hpp>
#include <minnow/io/safetensors.hpp>
#include <minnow/io/sequential_safetensors.hpp>
#include <minnow/nn.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace minnow;
using namespace minnow::io;
using Catch::Matchers::Contains;
using test_support::message_of;
namespace fs = std::filesystem;

namespace {

/// A fresh directory, removed with everything in it at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / ("minnow_safetensors_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  [[nodiscard]] std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
};

template <class T>
void append(std::vector<std::byte>& out, const std::vector<T>& values) {
  const auto* p = reinterpret_cast<const std::byte*>(values.data());
  out.insert(out.end(), p, p + values.size() * sizeof(T));
}

/// A file from a header text and a data buffer; `length` overrides the stored header length.
std::vector<std::byte> file_of(const std::string& header, const std::vector<std::byte>& data = {},
                               std::optional<std::uint64_t> length = std::nullopt) {
  std::vector<std::byte> out(8);
  const std::uint64_t n = length.value_or(header.size());
  std::memcpy(out.data(), &n, 8);
  const auto* p = reinterpret_cast<const std::byte*>(header.data());
  out.insert(out.end(), p, p + header.size());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::vector<std::byte> zeros(std::size_t n) { return std::vector<std::byte>(n); }

/// The format_error message parsing `bytes` gives.
std::string parse_error(const std::vector<std::byte>& bytes, const SafetensorsLimits& limits = {}) {
  return message_of<format_error>([&] { (void)parse_safetensors(bytes, "bad.safetensors", limits); });
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::vector<float> flat_values(const Parameter<float>& p) { return std::vector<float>(p.value.data(), p.value.data() + p.value.size()); }

std::vector<std::vector<float>> snapshot(nn::Sequential<float>& model) {
  std::vector<std::vector<float>> out;
  for (const auto& p : model.parameters()) out.push_back(flat_values(p));
  return out;
}

/// The student's parameters as tensors to write, with `edit` applied to the list first.
struct StudentFile {
  nn::Sequential<float> model = nn::make_student<float>(3);
  std::vector<Parameter<float>> parameters = model.parameters();
  std::vector<SafetensorsTensor> tensors() const {
    std::vector<SafetensorsTensor> out;
    for (const auto& p : parameters) {
      out.push_back(safetensors_tensor<float>(p.name, p.shape, std::span<const float>(p.value.data(), static_cast<std::size_t>(p.value.size()))));
    }
    return out;
  }
};

}  // namespace

TEST_CASE("dtype names, sizes and parsing", "[safetensors]") {
  for (const Dtype d : {Dtype::F64, Dtype::F32, Dtype::F16, Dtype::BF16, Dtype::I64, Dtype::I32, Dtype::I8, Dtype::U8}) {
    CHECK(parse_dtype(dtype_name(d)) == d);
  }
  CHECK(dtype_size(Dtype::F64) == 8);
  CHECK(dtype_size(Dtype::BF16) == 2);
  CHECK(dtype_size(Dtype::U8) == 1);
  CHECK_FALSE(parse_dtype("BOOL").has_value());
  CHECK_FALSE(parse_dtype("f32").has_value());
  STATIC_REQUIRE(dtype_of<std::int32_t> == Dtype::I32);
  STATIC_REQUIRE(dtype_of<double> == Dtype::F64);
}

TEST_CASE("F16 converts exactly: every one of the 65536 values", "[safetensors]") {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_float(static_cast<std::uint16_t>(h));
    const std::uint32_t exponent = (h >> 10) & 31, mantissa = h & 1023;
    const bool negative = (h & 0x8000) != 0;
    INFO("half bits " << h);
    if (exponent == 31) {
      if (mantissa == 0) {
        REQUIRE(std::isinf(f));
      } else {
        REQUIRE(std::isnan(f));
      }
    } else {
      // value = significand · 2^(exponent − 25): subnormals have no implicit 1 and exponent 1
      const double significand = exponent == 0 ? mantissa : mantissa + 1024.0;
      const double expected = std::ldexp(significand, static_cast<int>(exponent == 0 ? 1 : exponent) - 25);
      REQUIRE(static_cast<double>(f) == (negative ? -expected : expected));
    }
    REQUIRE(std::signbit(f) == negative);
  }
  CHECK(f16_to_float(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(f16_to_float(0x03ff) == 1023 * std::ldexp(1.0f, -24));  // largest subnormal
  CHECK(f16_to_float(0x7bff) == 65504.0f);
  CHECK(f16_to_float(0xfc00) == -std::numeric_limits<float>::infinity());
  CHECK((std::bit_cast<std::uint32_t>(f16_to_float(0x7e01)) & 0x7fffff) == (0x201u << 13));  // NaN payload kept
}

TEST_CASE("BF16 converts exactly", "[safetensors]") {
  CHECK(bf16_to_float(0x3f80) == 1.0f);
  CHECK(bf16_to_float(0x4049) == 3.140625f);
  CHECK(bf16_to_float(0xc000) == -2.0f);
  CHECK(bf16_to_float(0x0001) == std::bit_cast<float>(0x00010000u));  // a float subnormal
  CHECK(bf16_to_float(0x7f80) == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(bf16_to_float(0x7fc0)));
  CHECK(std::signbit(bf16_to_float(0x8000)));
}

TEST_CASE("reads all 8 dtypes from a hand-built file", "[safetensors]") {
  std::vector<std::byte> data;
  append(data, std::vector<double>{1.5, -2.25, 1e300});                                  // [0, 24)
  append(data, std::vector<float>{0.1f, -3.0f});                                          // [24, 32)
  append(data, std::vector<std::uint16_t>{0x0001, 0x3c00, 0x7c00, 0xfe00});               // [32, 40)
  append(data, std::vector<std::uint16_t>{0x3f80, 0xc049});                               // [40, 44)
  append(data, std::vector<std::int64_t>{-(std::int64_t{1} << 40), 7});                   // [44, 60)
  append(data, std::vector<std::int32_t>{-5, 2147483647});                                // [60, 68)
  append(data, std::vector<std::int8_t>{-128, 127, 0});                                   // [68, 71)
  append(data, std::vector<std::uint8_t>{255, 0});                                        // [71, 73)
  const std::string header = R"({"d":{"dtype":"F64","shape":[3],"data_offsets":[0,24]},)"
                             R"("f":{"dtype":"F32","shape":[2,1],"data_offsets":[24,32]},)"
                             R"("h":{"dtype":"F16","shape":[2,2],"data_offsets":[32,40]},)"
                             R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[40,44]},)"
                             R"("l":{"dtype":"I64","shape":[2],"data_offsets":[44,60]},)"
                             R"("i":{"dtype":"I32","shape":[2],"data_offsets":[60,68]},)"
                             R"("c":{"dtype":"I8","shape":[3],"data_offsets":[68,71]},)"
                             R"("u":{"dtype":"U8","shape":[2],"data_offsets":[71,73]}})";
  const SafetensorsFile file = parse_safetensors(file_of(header, data), "mem");
  REQUIRE(file.tensors().size() == 8);
  std::vector<std::string> names;
  for (const auto& t : file.tensors()) names.push_back(t.name);
  CHECK(names == std::vector<std::string>{"d", "f", "h", "b", "l", "i", "c", "u"});  // file order, not sorted
  CHECK(file.tensor("h").shape == std::vector<index_t>{2, 2});
  CHECK(file.tensor("h").dtype == Dtype::F16);
  CHECK(file.tensor("f").numel() == 2);

  CHECK(file.to_float("d") == std::vector<float>{1.5f, -2.25f, std::numeric_limits<float>::infinity()});
  CHECK(file.values<double>("d") == std::vector<double>{1.5, -2.25, 1e300});
  CHECK(file.to_float("f") == std::vector<float>{0.1f, -3.0f});
  const auto h = file.to_float("h");
  CHECK(h[0] == std::ldexp(1.0f, -24));
  CHECK(h[1] == 1.0f);
  CHECK(h[2] == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(h[3]));
  CHECK(file.to_float("b") == std::vector<float>{1.0f, -3.140625f});
  CHECK(file.to_float("l") == std::vector<float>{-1099511627776.0f, 7.0f});
  CHECK(file.values<std::int64_t>("l") == std::vector<std::int64_t>{-(std::int64_t{1} << 40), 7});
  CHECK(file.values<std::int32_t>("i") == std::vector<std::int32_t>{-5, 2147483647});
  CHECK(file.to_float("i") == std::vector<float>{-5.0f, 2147483648.0f});
  CHECK(file.values<std::int8_t>("c") == std::vector<std::int8_t>{-128, 127, 0});
  CHECK(file.to_float("c") == std::vector<float>{-128.0f, 127.0f, 0.0f});
  CHECK(file.values<std::uint8_t>("u") == std::vector<std::uint8_t>{255, 0});
  CHECK(file.to_float("u") == std::vector<float>{255.0f, 0.0f});
  CHECK(file.bytes("u").size() == 2);
  CHECK(file.metadata().empty());

  CHECK_THAT(message_of<format_error>([&] { (void)file.values<std::int8_t>("u"); }), Contains("'u'") && Contains("U8, not I8"));
  CHECK_THAT(message_of<format_error>([&] { (void)file.values<std::int32_t>("f"); }), Contains("F32, not I32"));
  CHECK_THAT(message_of<format_error>([&] { (void)file.tensor("missing"); }), Contains("'mem'") && Contains("no tensor 'missing'"));
  std::vector<float> wrong(5);
  CHECK_THROWS_AS(file.convert_to("f", wrong), shape_error);
}

TEST_CASE("header padding, metadata, empty tensors and an empty file list", "[safetensors]") {
  SECTION("trailing spaces after the JSON are padding") {
    std::vector<std::byte> data;
    append(data, std::vector<float>{4.0f});
    const auto file = parse_safetensors(file_of(R"({"x":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})" + std::string(13, ' '), data), "mem");
    CHECK(file.to_float("x") == std::vector<float>{4.0f});
    CHECK(file.tensor("x").shape.empty());  // a scalar
  }
  SECTION("metadata is a map of strings") {
    const auto file = parse_safetensors(file_of(R"({"__metadata__":{"format":"pt","b":""}})"), "mem");
    CHECK(file.tensors().empty());
    CHECK(file.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"b", ""}});
  }
  SECTION("zero-element tensors take no bytes") {
    std::vector<std::byte> data;
    append(data, std::vector<std::int32_t>{9});
    const auto file = parse_safetensors(
        file_of(R"({"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},"x":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})", data), "mem");
    CHECK(file.to_float("e").empty());
    CHECK(file.values<std::int32_t>("x") == std::vector<std::int32_t>{9});
  }
  SECTION("the shortest file: {}") { CHECK(parse_safetensors(file_of("{}"), "mem").tensors().empty()); }
}

TEST_CASE("round trip of every dtype the writer takes", "[safetensors]") {
  TempDir dir;
  const fs::path path = dir.path / "all.safetensors";
  const std::vector<double> f64{1.0 / 3, -1e-300, std::numeric_limits<double>::infinity()};
  const std::vector<float> f32{0.5f, -7.25f, std::numeric_limits<float>::denorm_min(), 1e30f, 0.0f, -0.0f};
  const std::vector<std::int64_t> i64{std::numeric_limits<std::int64_t>::min(), 0, std::numeric_limits<std::int64_t>::max()};
  const std::vector<std::int32_t> i32{-1, 1 << 30};
  const std::vector<std::int8_t> i8{-128, -1, 127};
  const std::vector<std::uint8_t> u8{0, 128, 255, 1, 2};
  const std::vector<std::uint16_t> f16{0x3c00, 0x0001, 0x7c00};
  const std::vector<std::uint16_t> bf16{0x3f80, 0xbf00};
  std::vector<SafetensorsTensor> tensors{
      safetensors_tensor<std::uint8_t>("u8", {5}, u8),  // odd byte counts: later tensors start unaligned
      safetensors_tensor<double>("f64", {3}, f64),
      safetensors_tensor<float>("f32", {2, 3}, f32),
      safetensors_tensor<std::int64_t>("i64", {3, 1}, i64),
      safetensors_tensor<std::int8_t>("i8", {1, 3}, i8),
      safetensors_tensor<std::int32_t>("i32", {2}, i32),
      SafetensorsTensor{"f16", Dtype::F16, {3}, std::as_bytes(std::span(f16))},
      SafetensorsTensor{"bf16", Dtype::BF16, {1, 2}, std::as_bytes(std::span(bf16))},
  };
  const std::map<std::string, std::string> metadata{{"format", "pt"}, {"note", "ünïcode ✓"}};
  write_safetensors(path, tensors, metadata);

  const auto file = read_safetensors(path);
  CHECK(file.source() == path.string());
  REQUIRE(file.tensors().size() == tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    CHECK(file.tensors()[i].name == tensors[i].name);  // the order given
    CHECK(file.tensors()[i].dtype == tensors[i].dtype);
    CHECK(file.tensors()[i].shape == tensors[i].shape);
  }
  CHECK(file.values<double>("f64") == f64);
  const auto f32_back = file.values<float>("f32");
  REQUIRE(f32_back.size() == f32.size());
  CHECK(std::memcmp(f32_back.data(), f32.data(), f32.size() * 4) == 0);  // bit-exact, -0 included
  CHECK(file.values<std::int64_t>("i64") == i64);
  CHECK(file.values<std::int32_t>("i32") == i32);
  CHECK(file.values<std::int8_t>("i8") == i8);
  CHECK(file.values<std::uint8_t>("u8") == u8);
  CHECK(file.to_float("f16") == std::vector<float>{1.0f, std::ldexp(1.0f, -24), std::numeric_limits<float>::infinity()});
  CHECK(file.to_float("bf16") == std::vector<float>{1.0f, -0.5f});
  CHECK(file.metadata() == metadata);

  // The layout the reference implementation writes: the data starts at a multiple of 8, after spaces.
  const std::string raw = read_text(path);
  std::uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  CHECK((8 + n) % 8 == 0);
  CHECK(raw[8] == '{');
  CHECK(raw.substr(8, 16) == R"({"__metadata__":)");
  const std::string header = raw.substr(8, n);
  CHECK(header.find_last_not_of(' ') == header.rfind('}'));
  CHECK(dir.listing() == std::vector<std::string>{"all.safetensors"});  // no temporary left
}

TEST_CASE("the writer refuses what the format cannot hold", "[safetensors]") {
  const std::vector<float> four(4);
  auto refuse = [&](std::vector<SafetensorsTensor> tensors) { return serialize_safetensors(tensors); };
  CHECK_THAT(message_of<value_error>([&] { (void)refuse({safetensors_tensor<float>("", {4}, four)}); }), Contains("empty name"));
  CHECK_THAT(message_of<value_error>([&] { (void)refuse({safetensors_tensor<float>("__metadata__", {4}, four)}); }),
             Contains("'__metadata__' is reserved"));
  CHECK_THAT(message_of<value_error>([&] { (void)refuse({safetensors_tensor<float>("a", {4}, four), safetensors_tensor<float>("a", {2, 2}, four)}); }),
             Contains("'a' is given twice"));
  CHECK_THAT(message_of<shape_error>([&] { (void)refuse({safetensors_tensor<float>("a", {2, 3}, four)}); }),
             Contains("'a' is F32 [2,3] but has 16 bytes"));
  CHECK_THAT(message_of<shape_error>([&] { (void)refuse({safetensors_tensor<float>("a", {std::numeric_limits<index_t>::max(), 4}, four)}); }),
             Contains("'a'"));
  CHECK_THAT(message_of<value_error>([&] { (void)refuse({safetensors_tensor<float>("a", {-4}, four)}); }), Contains("[-4]"));
  CHECK_THAT(message_of<value_error>([&] { (void)refuse({safetensors_tensor<float>("bad\xff", {4}, four)}); }), Contains("UTF-8"));
  CHECK(serialize_safetensors({safetensors_tensor<float>("empty", {0, 7}, std::span<const float>())}).size() > 8);
}

// A macro, not a function: Catch's combined matchers hold references to their parts, which must stay alive.
#define NAMED(message) Contains("'bad.safetensors'") && Contains(message)

TEST_CASE("every violation of the format is a format_error naming the file, the tensor and the problem", "[safetensors]") {
  const std::vector<std::byte> data16 = zeros(16);
  auto one = [](const std::string& entry) { return R"({"w":)" + entry + "}"; };

  SECTION("empty file") { CHECK_THAT(parse_error({}), NAMED("truncated") && Contains("0 bytes")); }
  SECTION("shorter than the header length") { CHECK_THAT(parse_error(zeros(5)), NAMED("truncated")); }
  SECTION("header length below 2") { CHECK_THAT(parse_error(file_of("{")), NAMED("header length 1 is too small")); }
  SECTION("header length zero") { CHECK_THAT(parse_error(file_of("")), NAMED("header length 0 is too small")); }
  SECTION("header length above the limit") {
    CHECK_THAT(parse_error(file_of("{}", {}, std::uint64_t{1} << 62)), NAMED("above the limit of 100000000"));
    SafetensorsLimits small;
    small.max_header_bytes = 8;
    CHECK_THAT(parse_error(file_of(R"({"__metadata__":{}})"), small), NAMED("above the limit of 8"));
  }
  SECTION("header length past the end of the file") {
    CHECK_THAT(parse_error(file_of("{}  ", {}, 1000)), NAMED("truncated") && Contains("1000") && Contains("only 4 bytes"));
  }
  SECTION("header not starting with '{'") { CHECK_THAT(parse_error(file_of(" {}")), NAMED("does not start with '{'")); }
  SECTION("header not JSON") { CHECK_THAT(parse_error(file_of(R"({"w": )")), NAMED("not valid JSON")); }
  SECTION("padding that is not spaces") { CHECK_THAT(parse_error(file_of(std::string("{}\0\0", 4))), NAMED("NUL byte")); }
  SECTION("header not UTF-8") { CHECK_THAT(parse_error(file_of("{\"\xff\":1}")), NAMED("not valid JSON")); }
  SECTION("duplicate tensor names") {
    const std::string entry = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
    CHECK_THAT(parse_error(file_of(R"({"w":)" + entry + R"(,"w":)" + entry + "}", zeros(8))), NAMED("'w' appears more than once"));
  }
  SECTION("duplicate keys inside an entry") {
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]})"), zeros(8))),
               NAMED("tensor 'w'") && Contains("key 'dtype' appears more than once"));
  }
  SECTION("entry not an object") { CHECK_THAT(parse_error(file_of(one("[1,2]"))), NAMED("tensor 'w'") && Contains("not an object")); }
  SECTION("unknown key in an entry") {
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1})"), zeros(8))),
               NAMED("tensor 'w'") && Contains("unknown key 'x'"));
  }
  SECTION("missing dtype / shape / data_offsets") {
    CHECK_THAT(parse_error(file_of(one(R"({"shape":[2],"data_offsets":[0,8]})"), zeros(8))), NAMED("tensor 'w'") && Contains("'dtype' is missing"));
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","data_offsets":[0,8]})"), zeros(8))), NAMED("tensor 'w'") && Contains("'shape' is missing"));
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":[2]})"), zeros(8))), NAMED("tensor 'w'") && Contains("'data_offsets' is missing"));
  }
  SECTION("dtype not a string") {
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":4,"shape":[2],"data_offsets":[0,8]})"), zeros(8))),
               NAMED("tensor 'w'") && Contains("dtype is a JSON number"));
  }
  SECTION("unknown dtype") {
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"BOOL","shape":[2],"data_offsets":[0,2]})"), zeros(2))),
               NAMED("tensor 'w'") && Contains("unsupported dtype 'BOOL'"));
  }
  SECTION("shape not an array") {
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})"), zeros(8))),
               NAMED("tensor 'w'") && Contains("shape is a JSON number"));
  }
  SECTION("negative extent") {
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), zeros(8))),
               NAMED("tensor 'w'") && Contains("negative extent -2"));
  }
  SECTION("fractional / string / huge extents") {
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})"), zeros(8))),
               NAMED("tensor 'w'") && Contains("not a non-negative integer"));
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":["2"],"data_offsets":[0,8]})"), zeros(8))),
               NAMED("tensor 'w'") && Contains("not a non-negative integer"));
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]})"), zeros(8))),
               NAMED("tensor 'w'") && Contains("not a non-negative integer"));
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]})"), zeros(8))),
               NAMED("tensor 'w'") && Contains("too large"));
  }
  SECTION("rank above 8") {
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]})"), zeros(1))),
               NAMED("tensor 'w'") && Contains("'shape' has more than 8 elements"));
  }
  SECTION("nested arrays") {
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":[[2]],"data_offsets":[0,8]})"), zeros(8))),
               NAMED("tensor 'w'") && Contains("nest deeper"));
  }
  SECTION("byte count overflows") {
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]})"), zeros(8))),
               NAMED("tensor 'w'") && Contains("overflows"));
  }
  SECTION("data_offsets malformed") {
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0]})"), zeros(8))),
               NAMED("tensor 'w'") && Contains("data_offsets must be an array of two integers"));
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,8]})"), zeros(8))),
               NAMED("tensor 'w'") && Contains("array of two integers"));
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":[2],"data_offsets":{"a":0}})"), zeros(8))),
               NAMED("tensor 'w'") && Contains("array of two integers"));
  }
  SECTION("data_offsets negative or not integers") {
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})"), zeros(8))),
               NAMED("tensor 'w'") && Contains("not two non-negative integers"));
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8.0]})"), zeros(8))),
               NAMED("tensor 'w'") && Contains("not two non-negative integers"));
  }
  SECTION("begin after end") {
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})"), zeros(8))),
               NAMED("tensor 'w'") && Contains("[8, 0] begin after they end"));
  }
  SECTION("range past the end of the buffer") {
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})"), zeros(8))),
               NAMED("tensor 'w'") && Contains("past the end of the 8-byte data buffer"));
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,18446744073709551615]})"), zeros(8))),
               NAMED("tensor 'w'") && Contains("past the end"));
  }
  SECTION("range size differs from shape × dtype") {
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":[3],"data_offsets":[0,16]})"), data16)),
               NAMED("tensor 'w'") && Contains("hold 16 bytes, but F32 [3] needs 12"));
  }
  SECTION("ranges not starting at 0") {
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":[2],"data_offsets":[8,16]})"), data16)),
               NAMED("bytes [0, 8)") && Contains("gap before tensor 'w'"));
  }
  SECTION("gap between ranges") {
    CHECK_THAT(parse_error(file_of(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", data16)),
               NAMED("bytes [4, 8)") && Contains("gap before tensor 'b'"));
  }
  SECTION("overlapping ranges") {
    CHECK_THAT(parse_error(file_of(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", data16)),
               NAMED("tensor 'b' [8, 16] overlaps tensor 'a' [0, 12]"));
    CHECK_THAT(parse_error(file_of(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data16)),
               NAMED("overlaps"));
  }
  SECTION("trailing bytes after the last tensor") {
    CHECK_THAT(parse_error(file_of(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})"), data16)),
               NAMED("8 trailing bytes"));
    CHECK_THAT(parse_error(file_of("{}", zeros(3))), NAMED("3 trailing bytes"));
  }
  SECTION("metadata not an object of strings") {
    CHECK_THAT(parse_error(file_of(R"({"__metadata__":["a"]})")), NAMED("'__metadata__' is a JSON array"));
    CHECK_THAT(parse_error(file_of(R"({"__metadata__":{"epochs":3}})")), NAMED("'__metadata__': 'epochs' is a JSON number, not a string"));
    CHECK_THAT(parse_error(file_of(R"({"__metadata__":{"a":"x","a":"y"}})")), NAMED("'__metadata__': key 'a' appears more than once"));
  }
  SECTION("a long array anywhere is refused while parsing") {
    std::string many = "[0";
    for (int i = 0; i < 100000; ++i) many += ",0";
    CHECK_THAT(parse_error(file_of(R"({"__metadata__":{"a":)" + many + "]}}")), NAMED("more than 8 elements"));
  }
}

TEST_CASE("paths that are not readable files are io_errors naming the path", "[safetensors]") {
  TempDir dir;
  const fs::path missing = dir.path / "missing.safetensors";
  CHECK_THAT(message_of<io_error>([&] { (void)read_safetensors(missing); }), Contains(missing.string()) && Contains("No such file"));
  CHECK_THAT(message_of<io_error>([&] { (void)read_safetensors(dir.path); }), Contains(dir.path.string()) && Contains("a directory"));
  const fs::path fifo = dir.path / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  CHECK_THAT(message_of<io_error>([&] { (void)read_safetensors(fifo); }), Contains(fifo.string()) && Contains("a FIFO"));  // without blocking
  const fs::path big = dir.path / "big.bin";
  write_text(big, std::string(100, 'x'));
  CHECK_THAT(message_of<format_error>([&] { (void)read_file(big, 99, "test file"); }), Contains(big.string()) && Contains("limit of 99"));
  CHECK(read_file(big, 100, "test file").size() == 100);
  SafetensorsLimits limits;
  limits.max_file_bytes = 10;
  CHECK_THAT(message_of<format_error>([&] { (void)read_safetensors(big, limits); }), Contains("limit of 10"));
}

TEST_CASE("atomic writes", "[safetensors][atomic_file]") {
  TempDir dir;
  const std::string hello = "hello";
  const auto bytes = std::as_bytes(std::span(hello));

  SECTION("create, then replace") {
    const fs::path path = dir.path / "f.bin";
    write_file_atomically(path, bytes);
    CHECK(read_text(path) == "hello");
    const std::string longer = "a longer replacement";
    write_file_atomically(path, std::as_bytes(std::span(longer)));
    CHECK(read_text(path) == longer);
    CHECK(dir.listing() == std::vector<std::string>{"f.bin"});
    write_file_atomically(path, {});
    CHECK(fs::file_size(path) == 0);
  }
  SECTION("through a symlink: the link stays, its target changes") {
    fs::create_directories(dir.path / "real");
    write_text(dir.path / "real" / "target.bin", "old");
    fs::create_symlink("real/target.bin", dir.path / "link.bin");
    fs::create_symlink("link.bin", dir.path / "link2.bin");  // a chain
    write_file_atomically(dir.path / "link2.bin", bytes);
    CHECK(fs::is_symlink(dir.path / "link.bin"));
    CHECK(fs::is_symlink(dir.path / "link2.bin"));
    CHECK(read_text(dir.path / "real" / "target.bin") == "hello");
    CHECK(dir.listing() == std::vector<std::string>{"link.bin", "link2.bin", "real"});
    std::vector<std::string> real;
    for (const auto& e : fs::directory_iterator(dir.path / "real")) real.push_back(e.path().filename().string());
    CHECK(real == std::vector<std::string>{"target.bin"});
  }
  SECTION("a dangling symlink: its target is created") {
    fs::create_symlink(dir.path / "new.bin", dir.path / "dangling.bin");
    write_file_atomically(dir.path / "dangling.bin", bytes);
    CHECK(fs::is_symlink(dir.path / "dangling.bin"));
    CHECK(read_text(dir.path / "new.bin") == "hello");
  }
  SECTION("a symlink loop is refused") {
    fs::create_symlink("b", dir.path / "a");
    fs::create_symlink("a", dir.path / "b");
    CHECK_THAT(message_of<io_error>([&] { write_file_atomically(dir.path / "a", bytes); }), Contains("symbolic links"));
  }
  SECTION("a directory is refused and left untouched, no temporary left") {
    fs::create_directories(dir.path / "d" / "inside");
    CHECK_THAT(message_of<io_error>([&] { write_file_atomically(dir.path / "d", bytes); }),
               Contains((dir.path / "d").string()) && Contains("a directory"));
    CHECK(fs::is_directory(dir.path / "d" / "inside"));
    CHECK(dir.listing() == std::vector<std::string>{"d"});
    // write_safetensors goes the same way
    CHECK_THROWS_AS(write_safetensors(dir.path / "d", {}), io_error);
    CHECK(dir.listing() == std::vector<std::string>{"d"});
  }
  SECTION("a FIFO is refused and left untouched") {
    const fs::path fifo = dir.path / "fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
    CHECK_THAT(message_of<io_error>([&] { write_file_atomically(fifo, bytes); }), Contains(fifo.string()) && Contains("a FIFO"));
    CHECK(fs::is_fifo(fifo));
    CHECK(dir.listing() == std::vector<std::string>{"fifo"});
  }
  SECTION("a missing directory is an io_error naming the path") {
    const fs::path path = dir.path / "no" / "such" / "f.bin";
    CHECK_THAT(message_of<io_error>([&] { write_file_atomically(path, bytes); }), Contains(path.string()) && Contains("No such file"));
  }
  SECTION("a write that fails midway removes its temporary and keeps the old file") {
    // RLIMIT_FSIZE fails the write with EFBIG, even as root.
    const fs::path path = dir.path / "f.bin";
    write_text(path, "old");
    struct rlimit saved {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
    const auto previous = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = saved;
    small.rlim_cur = 64;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    const std::vector<std::byte> large(4096, std::byte{1});
    const std::string message = message_of<io_error>([&] { write_file_atomically(path, large); });
    ::setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, previous);
    CHECK_THAT(message, Contains(path.string()) && Contains("write"));
    CHECK(read_text(path) == "old");
    CHECK(dir.listing() == std::vector<std::string>{"f.bin"});
  }
  SECTION("the new file's mode is 0644 minus the umask") {
    const mode_t old_mask = ::umask(022);
    write_file_atomically(dir.path / "m.bin", bytes);
    ::umask(old_mask);
    struct stat info {};
    REQUIRE(::stat((dir.path / "m.bin").c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0644);
  }
}

TEST_CASE("Sequential: save, then load into another model, bit-equal", "[safetensors][sequential]") {
  TempDir dir;
  const fs::path path = dir.path / "student.safetensors";
  auto saved = nn::make_student<float>(1);
  save_safetensors(saved, path, {{"epochs", "0"}});
  auto loaded = nn::make_student<float>(2);
  REQUIRE(snapshot(loaded) != snapshot(saved));
  load_safetensors(loaded, path);
  CHECK(snapshot(loaded) == snapshot(saved));

  const auto file = read_safetensors(path);
  CHECK(file.metadata().at("epochs") == "0");
  std::vector<std::string> names;
  for (const auto& t : file.tensors()) {
    names.push_back(t.name);
    CHECK(t.dtype == Dtype::F32);
  }
  CHECK(names == std::vector<std::string>{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias",
                                          "fc2.weight", "fc2.bias"});
  CHECK(file.tensor("conv2.weight").shape == std::vector<index_t>{32, 16, 3, 3});
  CHECK(file.tensor("fc1.weight").shape == std::vector<index_t>{64, 1568});
  CHECK(file.tensor("fc2.bias").shape == std::vector<index_t>{10});
}

TEST_CASE("Sequential: F16, BF16 and F64 files load converted", "[safetensors][sequential]") {
  TempDir dir;
  const fs::path path = dir.path / "half.safetensors";
  StudentFile source;
  std::vector<std::vector<std::uint16_t>> halves;
  std::vector<std::vector<double>> doubles;
  std::vector<SafetensorsTensor> tensors;
  const auto parameters = source.parameters;
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    const auto& p = parameters[i];
    if (i % 3 == 2) {
      doubles.emplace_back(p.value.data(), p.value.data() + p.value.size());
      tensors.push_back(safetensors_tensor<double>(p.name, p.shape, doubles.back()));
    } else {
      // BF16 1.0 or F16 -2.0 everywhere (moving the outer vectors keeps the inner buffers the spans point at)
      halves.emplace_back(static_cast<std::size_t>(p.value.size()), i % 3 == 0 ? std::uint16_t{0x3f80} : std::uint16_t{0xc000});
      tensors.push_back(SafetensorsTensor{p.name, i % 3 == 0 ? Dtype::BF16 : Dtype::F16, p.shape, std::as_bytes(std::span(halves.back()))});
    }
  }
  write_safetensors(path, tensors);
  auto model = nn::make_student<float>(5);
  load_safetensors(model, path);
  const auto loaded = model.parameters();
  for (std::size_t i = 0; i < loaded.size(); ++i) {
    const auto values = flat_values(loaded[i]);
    const float expected = i % 3 == 0 ? 1.0f : -2.0f;
    if (i % 3 == 2) {
      CHECK(values == flat_values(parameters[i]));
    } else {
      CHECK(std::all_of(values.begin(), values.end(), [&](float v) { return v == expected; }));
    }
  }
}

TEST_CASE("Sequential: mismatches name both sides and change nothing", "[safetensors][sequential]") {
  TempDir dir;
  const fs::path path = dir.path / "x.safetensors";
  StudentFile source;
  auto model = nn::make_student<float>(9);
  const auto before = snapshot(model);
  auto load_error = [&] { return message_of<format_error>([&] { load_safetensors(model, path); }); };

  SECTION("a tensor the model does not have") {
    auto tensors = source.tensors();
    const std::vector<float> extra(640);
    tensors.push_back(safetensors_tensor<float>("fc3.weight", {10, 64}, extra));
    write_safetensors(path, tensors);
    CHECK_THAT(load_error(), Contains(minnow::detail::concat("'", path.string(), "' has 'fc3.weight' [10,64], which the model does not have")));
  }
  SECTION("a parameter the file does not have") {
    auto tensors = source.tensors();
    tensors.erase(tensors.begin() + 5);  // fc1.bias
    write_safetensors(path, tensors);
    CHECK_THAT(load_error(), Contains(minnow::detail::concat("the model's 'fc1.bias' [64] is missing from '", path.string(), "'")));
  }
  SECTION("a shape that differs") {
    auto tensors = source.tensors();
    const std::vector<float> narrow(64 * 784);
    tensors[4] = safetensors_tensor<float>("fc1.weight", {64, 784}, narrow);
    write_safetensors(path, tensors);
    CHECK_THAT(load_error(), Contains(minnow::detail::concat("the model's 'fc1.weight' [64,1568] is [64,784] in '", path.string(), "'")));
  }
  SECTION("same element count, other shape") {
    auto tensors = source.tensors();
    tensors[0].shape = {16, 9};  // conv1.weight flattened
    write_safetensors(path, tensors);
    CHECK_THAT(load_error(), Contains("'conv1.weight' [16,1,3,3] is [16,9]"));
  }
  SECTION("an integer dtype") {
    auto tensors = source.tensors();
    const std::vector<std::int32_t> ints(10);
    tensors[7] = safetensors_tensor<std::int32_t>("fc2.bias", {10}, ints);
    write_safetensors(path, tensors);
    CHECK_THAT(load_error(), Contains("'fc2.bias' is float but I32"));
  }
  SECTION("a broken file") {
    write_safetensors(path, source.tensors());
    std::string raw = read_text(path);
    raw.pop_back();
    write_text(path, raw);
    CHECK_THAT(load_error(), Contains(path.string()) && Contains("past the end"));
  }
  SECTION("a missing file") {
    CHECK_THAT(message_of<io_error>([&] { load_safetensors(model, path); }), Contains(path.string()));
  }
  CHECK(snapshot(model) == before);
}

TEST_CASE("PyTorch's student (state_dict written by tests/fixtures/generate_safetensors.py) gives torch's logits",
          "[safetensors][sequential][fixture]") {
  auto model = nn::make_student<float>(42);
  load_safetensors(model, std::string(MINNOW_FIXTURE_DIR) + "/student_torch.safetensors");
  const auto& doc = fixtures::load("student_torch_logits.json");
  const auto shape = doc.at("inputs").at("shape").get<std::vector<index_t>>();
  const auto pixels = doc.at("inputs").at("data").get<std::vector<double>>();
  REQUIRE(shape == std::vector<index_t>{8, 1, 28, 28});
  Tensor<float, 4> inputs({8, 1, 28, 28});
  REQUIRE(static_cast<std::size_t>(inputs.size()) == pixels.size());
  std::transform(pixels.begin(), pixels.end(), inputs.data(), [](double v) { return static_cast<float>(v); });
  const auto expected = doc.at("logits").at("data").get<std::vector<double>>();
  const auto logits = model.forward(inputs.view(), nn::Mode::eval);
  REQUIRE(static_cast<std::size_t>(logits.size()) == expected.size());
  double worst = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(logits.data()[i]) - expected[i]));
  INFO("max |minnow - torch| = " << worst);
  CHECK(worst <= 1e-5);
  CHECK(read_safetensors(std::string(MINNOW_FIXTURE_DIR) + "/student_torch.safetensors").metadata().at("format") == "pt");
}

TEST_CASE("BatchNorm running statistics travel with the parameters, under PyTorch's names", "[safetensors]") {
  const auto make = [] {
    nn::Sequential<float> net;
    std::mt19937_64 rng(3);
    net.add("conv", nn::Conv2d<float>(1, 4, 3, 1, 1)).reset_parameters(rng);
    net.add("bn", nn::BatchNorm2d<float>(4));
    net.add("relu", nn::ReLU<float>());
    net.add("pool", nn::GlobalAvgPool2d<float>());
    net.add("flatten", nn::Flatten<float>());
    net.add("fc", nn::Linear<float>(4, 2)).reset_parameters(rng);
    return net;
  };
  auto trained = make();
  Tensor<float, 4> x({3, 1, 5, 5});
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(i % 11) * 0.3f - 1.0f;
  (void)trained.forward(x, nn::Mode::train);  // moves the running statistics off their initial 0 and 1
  const auto state = trained.state();
  REQUIRE(state.size() == 8);
  CHECK(state[6].name == "bn.running_mean");
  CHECK(state[7].name == "bn.running_var");
  CHECK(state[6].value(0) != 0.0f);

  test_support::ScratchDir dir;
  save_safetensors(trained, dir.path() / "bn.safetensors");
  auto loaded = make();
  load_safetensors(loaded, dir.path() / "bn.safetensors");
  const auto loaded_state = loaded.state();
  for (std::size_t k = 0; k < state.size(); ++k) {
    INFO(state[k].name);
    CHECK(std::equal(state[k].value.data(), state[k].value.data() + state[k].value.size(), loaded_state[k].value.data()));
  }
  const Tensor<float, 4> expected(trained.forward(x, nn::Mode::eval));
  CHECK(fixtures::max_rel_error(loaded.forward(x, nn::Mode::eval), expected) == 0.0);

  // A PyTorch state_dict also holds "bn.num_batches_tracked" (int64, shape []): accepted and ignored.
  std::vector<SafetensorsTensor> tensors;
  for (const auto& s : state) {
    tensors.push_back(safetensors_tensor<float>(s.name, s.shape, std::span<const float>(s.value.data(), static_cast<std::size_t>(s.value.size()))));
  }
  const std::int64_t batches = 1;
  tensors.push_back(safetensors_tensor<std::int64_t>("bn.num_batches_tracked", {}, std::span<const std::int64_t>(&batches, 1)));
  write_safetensors(dir.path() / "torch.safetensors", tensors);
  auto from_torch = make();
  load_safetensors(from_torch, dir.path() / "torch.safetensors");
  CHECK(fixtures::max_rel_error(from_torch.forward(x, nn::Mode::eval), expected) == 0.0);
  // A counter without its BatchNorm is still an unknown tensor.
  tensors.back().name = "conv.num_batches_tracked";
  write_safetensors(dir.path() / "stray.safetensors", tensors);
  CHECK_REFUSED(load_safetensors(from_torch, dir.path() / "stray.safetensors"), format_error,
                Contains("'conv.num_batches_tracked'") && Contains("which the model does not have"));
}
