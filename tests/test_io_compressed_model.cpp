// The Huffman coder and the compressed model file: round trips, edge cases, and every kind of bad file.
#include <minnow/io/compressed_model.hpp>
#include <minnow/io/huffman.hpp>
#include <minnow/pipeline/compressed_network.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace minnow;
using io::BitReader;
using io::BitWriter;

std::vector<std::uint16_t> round_trip(const std::vector<std::uint16_t>& symbols, std::size_t alphabet,
                                      std::vector<std::uint8_t>* lengths_out = nullptr, std::uint64_t* bits = nullptr) {
  std::vector<std::uint64_t> counts(alphabet, 0);
  for (const auto s : symbols) ++counts[s];
  const auto lengths = io::huffman_lengths(counts);
  BitWriter w;
  io::huffman_encode(symbols, lengths, w);
  if (lengths_out) *lengths_out = lengths;
  if (bits) *bits = w.bit_count();
  BitReader r(w.bytes(), w.bit_count(), "test stream");
  auto decoded = io::huffman_decode(r, lengths, symbols.size());
  CHECK(r.position() == w.bit_count());
  return decoded;
}

}  // namespace

TEST_CASE("huffman: an empty stream has no code and no bits") {
  std::vector<std::uint8_t> lengths;
  std::uint64_t bits = 1;
  CHECK(round_trip({}, 16, &lengths, &bits).empty());
  CHECK(bits == 0);
  for (const auto l : lengths) CHECK(l == 0);
  BitReader r({}, 0, "empty stream");
  CHECK_THROWS_WITH(io::huffman_decode(r, lengths, 1), Catch::Contains("empty stream") && Catch::Contains("cannot fit"));
}

TEST_CASE("huffman: one distinct symbol costs one bit per symbol") {
  const std::vector<std::uint16_t> symbols(100, 7);
  std::vector<std::uint8_t> lengths;
  std::uint64_t bits = 0;
  CHECK(round_trip(symbols, 16, &lengths, &bits) == symbols);
  CHECK(bits == 100);
  CHECK(lengths[7] == 1);
}

TEST_CASE("huffman: every symbol of a 256-symbol alphabet round-trips within the entropy bound") {
  std::mt19937_64 rng(5);
  std::vector<std::uint16_t> symbols;
  std::vector<double> counts(256, 0.0);
  for (int s = 0; s < 256; ++s) {  // every symbol at least once, geometric-ish frequencies
    const int copies = 1 + static_cast<int>(2000.0 * std::exp(-s / 20.0));
    for (int c = 0; c < copies; ++c) symbols.push_back(static_cast<std::uint16_t>(s));
    counts[static_cast<std::size_t>(s)] = copies;
  }
  std::shuffle(symbols.begin(), symbols.end(), rng);
  std::vector<std::uint8_t> lengths;
  std::uint64_t bits = 0;
  CHECK(round_trip(symbols, 256, &lengths, &bits) == symbols);
  double entropy = 0.0;
  const double n = static_cast<double>(symbols.size());
  for (const double c : counts) entropy -= c * std::log2(c / n);
  CHECK(static_cast<double>(bits) >= entropy);
  CHECK(static_cast<double>(bits) < entropy + n);
  for (const auto l : lengths) CHECK((l >= 1 && l <= io::huffman_max_length));
}

TEST_CASE("huffman: Fibonacci counts, which would need 40-bit codes, are limited to 15 bits and still decode") {
  std::vector<std::uint64_t> counts{1, 1};
  while (counts.size() < 40) counts.push_back(counts[counts.size() - 1] + counts[counts.size() - 2]);
  const auto lengths = io::huffman_lengths(counts);
  int longest = 0;
  double kraft = 0.0;
  for (const auto l : lengths) {
    REQUIRE(l >= 1);
    longest = std::max<int>(longest, l);
    kraft += std::ldexp(1.0, -l);
  }
  CHECK(longest == io::huffman_max_length);
  CHECK(kraft <= 1.0);
  std::vector<std::uint16_t> symbols;
  for (std::uint16_t s = 0; s < 40; ++s) symbols.push_back(s);
  BitWriter w;
  io::huffman_encode(symbols, lengths, w);
  BitReader r(w.bytes(), w.bit_count(), "fibonacci");
  CHECK(io::huffman_decode(r, lengths, symbols.size()) == symbols);
}

TEST_CASE("huffman: bad codes and streams are format errors naming the stream") {
  const std::vector<std::uint8_t> over{1, 1, 1};  // three 1-bit codes: over-subscribed
  BitWriter w;
  w.put(0, 8);
  BitReader r1(w.bytes(), 8, "stream A");
  CHECK_THROWS_AS(io::huffman_decode(r1, over, 1), format_error);
  BitReader r1b(w.bytes(), 8, "stream A");
  CHECK_THROWS_WITH(io::huffman_decode(r1b, over, 1), Catch::Contains("stream A") && Catch::Contains("over-subscribed"));

  const std::vector<std::uint8_t> too_long{16, 1};
  BitReader r2(w.bytes(), 8, "stream B");
  CHECK_THROWS_WITH(io::huffman_decode(r2, too_long, 1), Catch::Contains("stream B") && Catch::Contains("exceeds 15"));

  // An incomplete code: only "0" is a code word; "1…" is not.
  const std::vector<std::uint8_t> incomplete{1, 0};
  BitWriter ones;
  ones.put(0xffff, 16);  // 15 bits of ones are no code word
  BitReader r3(ones.bytes(), 16, "stream C");
  CHECK_THROWS_WITH(io::huffman_decode(r3, incomplete, 1), Catch::Contains("stream C") && Catch::Contains("not a code word"));

  // Codes of 2 bits, 3 symbols asked from 5 bits: the third runs past the end.
  const std::vector<std::uint8_t> two_bits{2, 2, 2, 2};
  BitReader r4(w.bytes(), 5, "stream D");
  CHECK_THROWS_WITH(io::huffman_decode(r4, two_bits, 3), Catch::Contains("stream D") && Catch::Contains("past its end"));

  CHECK_THROWS_AS(BitReader(w.bytes(), 9, "stream E"), format_error);  // more bits than bytes
  BitWriter unused;
  CHECK_THROWS_AS(io::huffman_encode(std::vector<std::uint16_t>{1}, std::vector<std::uint8_t>{1, 0}, unused), value_error);
}

namespace {

/// Random int8 weights `[rows × cols]` where about `keep` of them differ from their channel's zero point.
infer::Int8Weights sparse_weights(const std::string& name, index_t rows, index_t cols, double keep, bool affine,
                                  std::mt19937_64& rng) {
  infer::Int8Weights w{name, Tensor<std::int8_t, 2>({rows, cols}), {}, {-128, 127}};
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  std::uniform_int_distribution<int> zp(-5, 5), value(-128, 127);
  std::bernoulli_distribution survive(keep);
  for (index_t j = 0; j < rows; ++j) {
    w.params.push_back({scale(rng), affine ? zp(rng) : 0});
    for (index_t k = 0; k < cols; ++k) {
      w.values(j, k) = static_cast<std::int8_t>(survive(rng) ? value(rng) : w.params.back().zero_point);
    }
  }
  return w;
}

std::vector<float> random_bias(index_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> d(0.0f, 0.1f);
  std::vector<float> b(static_cast<std::size_t>(n));
  for (auto& v : b) v = d(rng);
  return b;
}

/// input [1, 8, 8] → conv 1→4 (3×3, pad 1, ReLU, uint8, fused pool) → flatten → linear 64→16 (ReLU, uint8)
/// → maxpool-free → linear 16→3 (float logits). The first linear has affine weights (zero points ≠ 0).
infer::IntegerModel small_model(std::uint64_t seed, double keep = 0.3) {
  std::mt19937_64 rng(seed);
  infer::IntegerModel m;
  m.input_shape = {1, 8, 8};
  m.input = {0.02f, 3};
  m.layers.emplace_back(infer::IntegerConv{sparse_weights("conv1.weight", 4, 9, keep, false, rng), 1, 3, 1, 1, random_bias(4, rng),
                                           true, quant::AffineParams{0.03f, 0}, true});
  m.layers.emplace_back(infer::IntegerFlatten{});
  m.layers.emplace_back(infer::IntegerLinear{sparse_weights("fc1.weight", 16, 64, keep, true, rng), random_bias(16, rng), true,
                                             quant::AffineParams{0.05f, 0}});
  m.layers.emplace_back(infer::IntegerLinear{sparse_weights("fc2.weight", 3, 16, keep, false, rng), random_bias(3, rng), false,
                                             std::nullopt});
  return m;
}

void check_same_weights(const infer::Int8Weights& a, const infer::Int8Weights& b) {
  CHECK(a.name == b.name);
  CHECK(a.grid == b.grid);
  REQUIRE(a.values.shape() == b.values.shape());
  CHECK(std::equal(a.values.data(), a.values.data() + a.values.size(), b.values.data()));
  REQUIRE(a.params.size() == b.params.size());
  for (std::size_t c = 0; c < a.params.size(); ++c) {
    CHECK(a.params[c].scale == b.params[c].scale);
    CHECK(a.params[c].zero_point == b.params[c].zero_point);
  }
}

std::vector<std::byte> with_checksum(std::vector<std::byte> body) {
  const std::uint32_t h = io::detail::fnv1a32(body);
  for (int i = 0; i < 4; ++i) body.push_back(std::byte{static_cast<unsigned char>(h >> (8 * i))});
  return body;
}

std::filesystem::path temp_dir() {
  const auto dir = std::filesystem::temp_directory_path() / "minnow_test_compressed_model";
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace

TEST_CASE("compressed model: a round trip gives back the same model, and the same network outputs bit for bit") {
  const auto model = small_model(11);
  io::CompressedModelReport report;
  const auto bytes = io::encode_compressed_model(model, &report);
  CHECK(report.total_bytes() == bytes.size());
  const auto back = io::decode_compressed_model(bytes, "memory");
  CHECK(back.input_shape == model.input_shape);
  CHECK(back.input.scale == model.input.scale);
  CHECK(back.input.zero_point == model.input.zero_point);
  REQUIRE(back.layers.size() == model.layers.size());
  for (std::size_t i = 0; i < model.layers.size(); ++i) {
    REQUIRE(back.layers[i].index() == model.layers[i].index());
    if (const auto* c = std::get_if<infer::IntegerConv>(&model.layers[i])) {
      const auto& d = std::get<infer::IntegerConv>(back.layers[i]);
      check_same_weights(c->weights, d.weights);
      CHECK(c->bias == d.bias);
      CHECK((c->in_channels == d.in_channels && c->kernel == d.kernel && c->stride == d.stride && c->padding == d.padding));
      CHECK((c->relu == d.relu && c->pool2 == d.pool2 && c->output.has_value() == d.output.has_value()));
    }
    if (const auto* l = std::get_if<infer::IntegerLinear>(&model.layers[i])) {
      const auto& d = std::get<infer::IntegerLinear>(back.layers[i]);
      check_same_weights(l->weights, d.weights);
      CHECK(l->bias == d.bias);
      CHECK((l->relu == d.relu && l->output.has_value() == d.output.has_value()));
      if (l->output) CHECK((l->output->scale == d.output->scale && l->output->zero_point == d.output->zero_point));
    }
  }

  pipeline::IntegerNetwork a(model.clone()), b(back.clone());
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 4.0f);
  Tensor<float, 4> x({5, 1, 8, 8});
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = u(rng);
  const auto ya = a.forward(x.view());
  std::vector<float> first(ya.data(), ya.data() + ya.size());
  const auto yb = b.forward(x.view());
  REQUIRE(yb.size() == static_cast<index_t>(first.size()));
  CHECK(std::equal(first.begin(), first.end(), yb.data()));
}

TEST_CASE("compressed model: the report accounts for every byte, per layer and stream") {
  const auto model = small_model(12, 0.1);
  io::CompressedModelReport report;
  const auto bytes = io::encode_compressed_model(model, &report);
  REQUIRE(report.layers.size() == 4);
  CHECK(report.layers[0].name == "conv1");
  CHECK(report.layers[1].name == "flatten");
  CHECK(report.layers[2].name == "fc1");
  CHECK(report.layers[2].weights == 16 * 64);
  std::size_t sum = report.file.total();
  for (const auto& l : report.layers) sum += l.bytes.total();
  CHECK(sum == bytes.size());
  CHECK(report.layers[2].bytes.bias == 16 * 4);
  CHECK(report.layers[2].bytes.scales >= 16 * 4 + 16);  // scales, zero points (affine) and the output quantizer
  CHECK(report.layers[0].bytes.scales == 4 + 1 + 4 * 4 + 5);  // grid (two 2-byte varints), zp mode, 4 scales, output scale + zp
  CHECK(report.describe().find("fc1") != std::string::npos);
  // Survivors: exactly the weights that differ from their zero point.
  const auto& fc1 = std::get<infer::IntegerLinear>(model.layers[2]).weights;
  std::int64_t surviving = 0;
  for (index_t j = 0; j < fc1.rows(); ++j) {
    for (index_t k = 0; k < fc1.cols(); ++k) surviving += fc1.values(j, k) != fc1.params[static_cast<std::size_t>(j)].zero_point;
  }
  CHECK(report.layers[2].surviving == surviving);
}

TEST_CASE("compressed model: all-zero and fully dense weights, and long gaps through the escape") {
  for (const double keep : {0.0, 1.0, 0.002}) {
    std::mt19937_64 rng(99);
    infer::IntegerModel m;
    m.input_shape = {3000, 1, 1};
    m.input = {0.1f, 0};
    m.layers.emplace_back(infer::IntegerFlatten{});
    m.layers.emplace_back(infer::IntegerLinear{sparse_weights("big.weight", 4, 3000, keep, false, rng), random_bias(4, rng), false,
                                               std::nullopt});
    const auto back = io::decode_compressed_model(io::encode_compressed_model(m), "memory");
    check_same_weights(std::get<infer::IntegerLinear>(m.layers[1]).weights, std::get<infer::IntegerLinear>(back.layers[1]).weights);
  }
}

TEST_CASE("compressed model: every truncation, re-signed, is a format error (never a crash)") {
  const auto bytes = io::encode_compressed_model(small_model(13));
  for (std::size_t n = 0; n + 4 < bytes.size(); ++n) {
    std::vector<std::byte> prefix(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    CHECK_THROWS_AS(io::decode_compressed_model(with_checksum(prefix), "cut"), format_error);
    // Unsigned truncations fail the checksum.
    CHECK_THROWS_AS(io::decode_compressed_model(prefix, "cut"), format_error);
  }
  std::vector<std::byte> flipped = bytes;
  flipped[flipped.size() / 2] ^= std::byte{0x10};
  CHECK_THROWS_WITH(io::decode_compressed_model(flipped, "flip.minnow"), Catch::Contains("flip.minnow") && Catch::Contains("checksum"));
}

namespace {

/// A hand-written file: input [1, 2, 2], flatten, one linear layer `in → 2` with float output, whose
/// fields the bad-input tests set one at a time.
struct HandFile {
  std::uint64_t version = 1;
  std::uint64_t in = 4;
  float scale = 0.5f;
  std::uint64_t value_code_span = 1;    // the values code covers symbols lo .. lo + span − 1 (alphabet 256)
  std::uint64_t value_code_lo = 128 + 3;
  std::int64_t bit_adjust = 0;          // added to the values stream's bit count
  std::uint64_t rows_declared = 2;
  std::uint64_t position = 1;           // of the second survivor's gap
  std::uint64_t surviving = 2;

  [[nodiscard]] std::vector<std::byte> bytes() const {
    io::detail::ByteWriter w;
    w.bytes(io::detail::compressed_magic, 8);
    w.varint(version);
    for (const std::uint64_t d : {1, 2, 2}) w.varint(d);
    w.f32(0.1f);
    w.zigzag(0);
    w.varint(2);
    w.u8(3);  // flatten
    w.u8(1);  // linear
    w.varint(2);
    w.bytes("fc", 2);
    w.varint(rows_declared);
    w.varint(in);
    w.u8(0);  // no ReLU, float output
    w.zigzag(-128);
    w.zigzag(127);
    w.u8(0);
    for (std::uint64_t c = 0; c < rows_declared; ++c) w.f32(scale);
    for (std::uint64_t c = 0; c < rows_declared; ++c) w.f32(0.0f);
    w.varint(surviving);
    // Values: one symbol (q = 3), 1-bit code.
    w.varint(value_code_lo);
    w.varint(value_code_span);
    for (std::uint64_t i = 0; i < (value_code_span + 1) / 2; ++i) w.u8(i == 0 ? 0x10 : 0x00);
    w.varint(static_cast<std::uint64_t>(static_cast<std::int64_t>(surviving) + bit_adjust));
    w.u8(0);
    // Positions: escape 15; gaps 0 and `position`, each a 4-bit code over 16 symbols.
    w.varint(15);
    w.varint(0);
    w.varint(16);
    for (int i = 0; i < 8; ++i) w.u8(0x44);
    w.varint(2);
    w.varint(8);
    w.u8(static_cast<std::uint8_t>(0x00 | position));
    return with_checksum(w.out());
  }
};

}  // namespace

TEST_CASE("compressed model: the hand-written file is valid, so each bad variant below fails for its own reason") {
  const auto m = io::decode_compressed_model(HandFile{}.bytes(), "hand.minnow");
  const auto& fc = std::get<infer::IntegerLinear>(m.layers[1]).weights;
  CHECK(fc.values(0, 0) == 3);
  CHECK(fc.values(0, 1) == 0);
  CHECK(fc.values(0, 2) == 3);
}

TEST_CASE("compressed model: bad files are format errors naming the file, the layer and the problem") {
  const auto fails = [](const HandFile& f, const std::vector<std::string>& words) {
    try {
      (void)io::decode_compressed_model(f.bytes(), "bad.minnow");
      FAIL("no error");
    } catch (const format_error& e) {
      const std::string message = e.what();
      CHECK_THAT(message, Catch::Contains("bad.minnow"));
      for (const auto& word : words) CHECK_THAT(message, Catch::Contains(word));
    }
  };
  SECTION("a NaN scale") {
    HandFile f;
    f.scale = std::numeric_limits<float>::quiet_NaN();
    fails(f, {"'fc'", "scale of channel 0 is nan"});
  }
  SECTION("a zero scale") {
    HandFile f;
    f.scale = 0.0f;
    fails(f, {"'fc'", "scale of channel 0 is 0"});
  }
  SECTION("a codebook index past the codebook") {
    HandFile f;
    f.value_code_lo = 250;
    f.value_code_span = 10;
    fails(f, {"'fc'", "past the codebook of 256 symbols"});
  }
  SECTION("a Huffman stream that decodes past its end") {
    HandFile f;
    f.surviving = 3;  // three values asked, the positions stream only has two
    fails(f, {"'fc'", "positions stream holds 2 positions for 3"});
    HandFile g;
    g.bit_adjust = -1;  // two 1-bit values declared in one bit
    fails(g, {"'fc'", "values", "cannot fit"});
    HandFile h;
    h.bit_adjust = 1;  // two 1-bit values declared in three bits: one bit left over
    fails(h, {"'fc'", "values stream has 1 bits after its last value"});
  }
  SECTION("a position past the end of the weight") {
    HandFile f;
    f.position = 7;
    fails(f, {"'fc'", "position 8 is past the weight's 8 elements"});
  }
  SECTION("a layer list that does not chain") {
    HandFile f;
    f.in = 5;
    fails(f, {"'fc'", "expects 5 input features", "[4, 1, 1]"});
  }
  SECTION("a version this minnow does not read") {
    HandFile f;
    f.version = 2;
    fails(f, {"version 2"});
  }
  SECTION("a layer larger than the limits") {
    HandFile f;
    f.rows_declared = 1u << 20;
    f.in = 1u << 10;
    fails(f, {"exceed the limit"});
  }
  SECTION("bad magic") {
    auto bytes = HandFile{}.bytes();
    bytes[0] = std::byte{'X'};
    CHECK_THROWS_WITH(io::decode_compressed_model(bytes, "bad.minnow"), Catch::Contains("bad magic"));
  }
}

TEST_CASE("compressed model: files — a directory or a missing file is an io_error naming it, a write is atomic") {
  const auto dir = temp_dir();
  CHECK_THROWS_AS(io::read_compressed_model(dir), io_error);
  CHECK_THROWS_WITH(io::read_compressed_model(dir / "missing.minnow"), Catch::Contains("missing.minnow"));
  const auto path = dir / "small.minnow";
  const auto model = small_model(21);
  const auto report = io::write_compressed_model(path, model);
  CHECK(std::filesystem::file_size(path) == report.total_bytes());
  pipeline::IntegerNetwork saved(model.clone());
  auto loaded = pipeline::load_compressed(path);
  CHECK(loaded.describe() == saved.describe());
  CHECK_THROWS_AS(io::encode_compressed_model(infer::IntegerModel{}), value_error);  // no input shape
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    CHECK(entry.path().filename().string().find(".tmp") == std::string::npos);
  }
}

TEST_CASE("an integer model whose activations would overflow a size is refused") {
  infer::IntegerModel model;
  model.input_shape = {index_t{1} << 26, index_t{1} << 26, index_t{1} << 26};
  model.input = {0.1f, 0};
  model.layers.emplace_back(infer::IntegerFlatten{});
  CHECK_THROWS_AS(infer::check_integer_model(model), shape_error);
  CHECK_THROWS_WITH(infer::check_integer_model(model), Catch::Contains("the input") && Catch::Contains("more than 2^34 elements"));
}

TEST_CASE("an integer model whose output stage overflows float is refused, by the checker, the writer and the reader") {
  // Each scale and bias is valid on its own; bias / output scale is not a float (the kernel's offset).
  auto model = small_model(5);
  auto& fc1 = std::get<infer::IntegerLinear>(model.layers[2]);
  fc1.bias[0] = 3e38f;
  CHECK_THROWS_AS(infer::check_integer_model(model), value_error);
  CHECK_THROWS_WITH(infer::check_integer_model(model), Catch::Contains("'fc1'") && Catch::Contains("channel 0") &&
                                                           Catch::Contains("must be finite"));
  // The same through the multiplier: input scale × weight scale / output scale.
  auto tiny_output = small_model(5);
  std::get<infer::IntegerLinear>(tiny_output.layers[2]).weights.params[0].scale = 3e38f;
  std::get<infer::IntegerLinear>(tiny_output.layers[2]).output = quant::AffineParams{1e-3f, 0};
  CHECK_THROWS_WITH(infer::check_integer_model(tiny_output), Catch::Contains("'fc1'") && Catch::Contains("output multiplier"));
  // The reader checks every model it decodes the same way: tests/fuzz/regressions/compressed_model/ holds a
  // file with such a layer, replayed by CTest ("fuzz replay: compressed_model").
  CHECK_THROWS_AS(io::encode_compressed_model(tiny_output), value_error);
}
