#pragma once
/// @file io/compressed_model.hpp
/// @brief The compressed model file (`.minnow`): an infer::IntegerModel stored the way Deep Compression's
/// third stage stores a pruned and quantized network — only the surviving weights, their integer values and
/// their positions as gaps, both streams Huffman-coded (io/huffman.hpp) — plus everything needed to rebuild
/// the inference network: the layer list, geometry, per-channel scales, biases and activation quantizers.
///
/// A weight survives where its integer differs from its channel's zero point (where Ŵ ≠ 0). Layout, all
/// integers little-endian; `v` is an unsigned LEB128 varint, `z` a zigzag varint, `f` an IEEE float32:
/// ```
/// "MINNOWCM" v:version(=1)
/// v:C v:H v:W  f:input scale  z:input zero point  v:layer count
/// per layer  u8 kind: 0 conv, 1 linear, 2 maxpool, 3 flatten
///   conv     v:name length, name  v:out v:in_channels v:kernel v:stride v:padding  u8 flags  [output]  weights
///   linear   v:name length, name  v:out v:in                                        u8 flags  [output]  weights
///   maxpool  v:kernel v:stride
///   flags: bit 0 ReLU, bit 1 uint8 output (then f:scale z:zero point follow), bit 2 fused 2×2 max pool
/// weights    z:qmin z:qmax  u8 zero points: 0 all 0, 1 one z per channel  f:scale × out  f:bias × out
///            v:surviving count n
///            values:    code, v:bit count, bits     n symbols q − qmin, alphabet qmax − qmin + 1
///            positions: v:escape E, code, v:symbol count, v:bit count, bits
///                       symbol s < E: the next survivor is s + 1 positions after the previous one
///                       (the first: s positions from the start, row-major); s = E: skip E positions
/// code       v:first symbol, v:span, span 4-bit code lengths (two per byte, high nibble first)
/// u32 FNV-1a (32 bit) of every byte before it
/// ```
/// E is chosen per layer among 15, 31, 63, 127 and 255, whichever makes the stream and its code shortest.
///
/// Reading is the trust boundary: every size the file gives is checked against the bytes that remain and
/// against `CompressedModelLimits` before anything is allocated for it, and the model read is checked with
/// infer::check_integer_model (the layers must chain from the declared input shape). Any violation is a
/// format_error naming the file, the layer and the problem.

#include <minnow/error.hpp>
#include <minnow/infer/int_tensor.hpp>
#include <minnow/infer/integer_model.hpp>
#include <minnow/io/atomic_file.hpp>
#include <minnow/io/huffman.hpp>
#include <minnow/quant/concepts.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace minnow::io {

inline constexpr std::uint64_t compressed_model_version = 1;

/// Bounds a file must respect, so that a small hostile file cannot ask for a large allocation.
struct CompressedModelLimits {
  std::uint64_t max_file_bytes = std::uint64_t{1} << 30;     ///< 1 GiB
  std::uint64_t max_layer_weights = std::uint64_t{1} << 26;  ///< out × in·k·k of one layer (64 MiB as int8)
  std::uint64_t max_layers = 4096;
  std::uint64_t max_name_bytes = 1024;
};

/// Bytes of one part of the file, by what they store.
struct StreamBytes {
  std::size_t header = 0;     ///< kinds, names, geometry, flags, counts (and, for the file row, magic, input, checksum)
  std::size_t scales = 0;     ///< weight grids, per-channel scales and zero points, activation quantizers
  std::size_t bias = 0;
  std::size_t codebook = 0;   ///< the Huffman code lengths of both streams
  std::size_t values = 0;     ///< the surviving weights' coded integers
  std::size_t positions = 0;  ///< their coded gaps

  [[nodiscard]] std::size_t total() const noexcept { return header + scales + bias + codebook + values + positions; }
  StreamBytes& operator+=(const StreamBytes& o) noexcept {
    header += o.header, scales += o.scales, bias += o.bias, codebook += o.codebook, values += o.values, positions += o.positions;
    return *this;
  }
};

/// Where every byte of a compressed model file goes: one row per layer and one for the file's own header.
struct CompressedModelReport {
  struct Layer {
    std::string name;
    std::int64_t weights = 0;    ///< out × in (0 for pools and flattens)
    std::int64_t surviving = 0;  ///< weights stored (q ≠ zero point)
    std::uint64_t escape = 0;    ///< the positions stream's escape E
    StreamBytes bytes;
  };
  std::vector<Layer> layers;
  StreamBytes file;  ///< magic, version, input shape and quantizer, layer count, checksum

  [[nodiscard]] StreamBytes totals() const noexcept {
    StreamBytes t = file;
    for (const auto& l : layers) t += l.bytes;
    return t;
  }
  [[nodiscard]] std::size_t total_bytes() const noexcept { return totals().total(); }
  /// A table: one line per layer and stream, then the totals; bits per surviving weight per layer.
  [[nodiscard]] std::string describe() const;
};

namespace detail {

inline constexpr char compressed_magic[8] = {'M', 'I', 'N', 'N', 'O', 'W', 'C', 'M'};

[[nodiscard]] inline std::uint32_t fnv1a32(std::span<const std::byte> bytes) noexcept {
  std::uint32_t h = 0x811c9dc5u;
  for (const auto b : bytes) h = (h ^ std::to_integer<std::uint32_t>(b)) * 0x01000193u;
  return h;
}

/// Appends little-endian fields; `section` says which report counter the bytes go to.
class ByteWriter {
 public:
  explicit ByteWriter(std::size_t* counter = nullptr) : counter_(counter) {}
  void to(std::size_t& counter) noexcept { counter_ = &counter; }
  void bytes(const void* data, std::size_t n) {
    const auto* p = static_cast<const std::byte*>(data);
    out_.insert(out_.end(), p, p + n);
    if (counter_ != nullptr) *counter_ += n;
  }
  void u8(std::uint8_t v) { bytes(&v, 1); }
  void varint(std::uint64_t v) {
    do {
      std::uint8_t b = static_cast<std::uint8_t>(v & 0x7f);
      v >>= 7;
      if (v != 0) b |= 0x80;
      u8(b);
    } while (v != 0);
  }
  void zigzag(std::int64_t v) { varint((static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63)); }
  void f32(float v) {
    const auto u = std::bit_cast<std::uint32_t>(v);
    const std::array<std::uint8_t, 4> le{static_cast<std::uint8_t>(u), static_cast<std::uint8_t>(u >> 8),
                                         static_cast<std::uint8_t>(u >> 16), static_cast<std::uint8_t>(u >> 24)};
    bytes(le.data(), 4);
  }
  [[nodiscard]] std::vector<std::byte>& out() noexcept { return out_; }

 private:
  std::vector<std::byte> out_;
  std::size_t* counter_;
};

/// Reads fields; running out of bytes or an implausible value is a format_error naming the file and the field.
class ByteReader {
 public:
  ByteReader(std::span<const std::byte> bytes, std::string file) : bytes_(bytes), file_(std::move(file)) {}
  void set_context(std::string context) { context_ = std::move(context); }
  [[nodiscard]] format_error error(std::string_view problem) const {
    return format_error(minnow::detail::concat("compressed model '", file_, "'", context_.empty() ? "" : ", ", context_, ": ", problem));
  }
  std::span<const std::byte> take(std::uint64_t n, const char* what) {
    if (n > remaining()) {
      throw error(minnow::detail::concat("truncated: ", what, " needs ", n, " bytes at offset ", pos_, ", ", remaining(), " remain"));
    }
    const auto s = bytes_.subspan(pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return s;
  }
  std::uint8_t u8(const char* what) { return std::to_integer<std::uint8_t>(take(1, what)[0]); }
  std::uint64_t varint(const char* what) {
    std::uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      const std::uint8_t b = u8(what);
      if (shift == 63 && (b & 0x7e) != 0) throw error(minnow::detail::concat(what, " overflows 64 bits"));
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
      if (shift == 63) throw error(minnow::detail::concat(what, " overflows 64 bits"));
    }
  }
  /// A varint that must lie in [lo, hi].
  std::uint64_t varint_in(const char* what, std::uint64_t lo, std::uint64_t hi) {
    const auto v = varint(what);
    if (v < lo || v > hi) throw error(minnow::detail::concat(what, " is ", v, ", expected ", lo, "..", hi));
    return v;
  }
  std::int64_t zigzag(const char* what) {
    const auto u = varint(what);
    return static_cast<std::int64_t>(u >> 1) ^ -static_cast<std::int64_t>(u & 1);
  }
  float f32(const char* what) {
    const auto s = take(4, what);
    std::uint32_t u = 0;
    for (int i = 3; i >= 0; --i) u = (u << 8) | std::to_integer<std::uint32_t>(s[static_cast<std::size_t>(i)]);
    return std::bit_cast<float>(u);
  }
  [[nodiscard]] std::uint64_t remaining() const noexcept { return bytes_.size() - pos_; }
  [[nodiscard]] const std::string& file() const noexcept { return file_; }
  [[nodiscard]] const std::string& context() const noexcept { return context_; }

 private:
  std::span<const std::byte> bytes_;
  std::size_t pos_ = 0;
  std::string file_, context_;
};

/// A code's lengths as stored: first used symbol, span, 4-bit lengths.
inline void write_code(ByteWriter& w, std::span<const std::uint8_t> lengths) {
  std::size_t lo = 0, hi = lengths.size();
  while (lo < hi && lengths[lo] == 0) ++lo;
  while (hi > lo && lengths[hi - 1] == 0) --hi;
  w.varint(lo);
  w.varint(hi - lo);
  for (std::size_t s = lo; s < hi; s += 2) {
    const unsigned high = lengths[s], low = s + 1 < hi ? lengths[s + 1] : 0u;
    w.u8(static_cast<std::uint8_t>((high << 4) | low));
  }
}

[[nodiscard]] inline std::vector<std::uint8_t> read_code(ByteReader& r, std::uint64_t alphabet, const char* stream) {
  const auto lo = r.varint(stream);
  const auto span = r.varint(stream);
  if (lo > alphabet || span > alphabet - lo) {
    throw r.error(minnow::detail::concat(stream, " code covers symbols ", lo, "..", lo + span, ", past the codebook of ",
                                         alphabet, " symbols"));
  }
  const auto packed = r.take((span + 1) / 2, stream);
  std::vector<std::uint8_t> lengths(static_cast<std::size_t>(alphabet), 0);
  for (std::uint64_t i = 0; i < span; ++i) {
    const auto byte = std::to_integer<unsigned>(packed[static_cast<std::size_t>(i / 2)]);
    lengths[static_cast<std::size_t>(lo + i)] = static_cast<std::uint8_t>(i % 2 == 0 ? byte >> 4 : byte & 0x0f);
  }
  return lengths;
}

/// Bytes the stored code of `lengths` takes.
[[nodiscard]] inline std::size_t code_bytes(std::span<const std::uint8_t> lengths) {
  ByteWriter w;
  write_code(w, lengths);
  return w.out().size();
}

/// Huffman-codes `symbols` over `alphabet`: the code's lengths and the bits.
struct CodedStream {
  std::vector<std::uint8_t> lengths;
  BitWriter bits;
};
[[nodiscard]] inline CodedStream code_stream(std::span<const std::uint16_t> symbols, std::size_t alphabet) {
  std::vector<std::uint64_t> counts(alphabet, 0);
  for (const auto s : symbols) ++counts[s];
  CodedStream out{huffman_lengths(counts), {}};
  huffman_encode(symbols, out.lengths, out.bits);
  return out;
}

/// The gap symbols of the survivors' flat positions with escape `escape` (see the file comment).
[[nodiscard]] inline std::vector<std::uint16_t> gap_symbols(std::span<const std::uint64_t> positions, std::uint64_t escape) {
  std::vector<std::uint16_t> out;
  std::uint64_t next = 0;  // the first position the next gap counts from
  for (const auto p : positions) {
    std::uint64_t gap = p - next;
    while (gap >= escape) {
      out.push_back(static_cast<std::uint16_t>(escape));
      gap -= escape;
    }
    out.push_back(static_cast<std::uint16_t>(gap));
    next = p + 1;
  }
  return out;
}

inline void write_weights(ByteWriter& w, const infer::Int8Weights& weights, std::span<const float> bias,
                          CompressedModelReport::Layer& row) {
  w.to(row.bytes.scales);
  w.zigzag(weights.grid.qmin);
  w.zigzag(weights.grid.qmax);
  bool all_zero = true;
  for (const auto& p : weights.params) all_zero = all_zero && p.zero_point == 0;
  w.u8(all_zero ? 0 : 1);
  if (!all_zero) {
    for (const auto& p : weights.params) w.zigzag(p.zero_point);
  }
  for (const auto& p : weights.params) w.f32(p.scale);
  w.to(row.bytes.bias);
  for (const float b : bias) w.f32(b);

  std::vector<std::uint16_t> values;
  std::vector<std::uint64_t> positions;
  for (index_t j = 0; j < weights.rows(); ++j) {
    const auto zp = weights.params[static_cast<std::size_t>(j)].zero_point;
    for (index_t k = 0; k < weights.cols(); ++k) {
      const std::int32_t q = weights.values(j, k);
      if (q == zp) continue;
      values.push_back(static_cast<std::uint16_t>(q - weights.grid.qmin));
      positions.push_back(static_cast<std::uint64_t>(j * weights.cols() + k));
    }
  }
  row.weights = weights.values.size();
  row.surviving = static_cast<std::int64_t>(values.size());
  w.to(row.bytes.header);
  w.varint(values.size());

  const auto coded_values = code_stream(values, static_cast<std::size_t>(weights.grid.levels()));
  w.to(row.bytes.codebook);
  write_code(w, coded_values.lengths);
  w.to(row.bytes.header);
  w.varint(coded_values.bits.bit_count());
  w.to(row.bytes.values);
  w.bytes(coded_values.bits.bytes().data(), coded_values.bits.bytes().size());

  // The escape whose code and stream are shortest.
  std::uint64_t best_escape = 0;
  std::size_t best_bytes = std::numeric_limits<std::size_t>::max();
  for (const std::uint64_t escape : {15u, 31u, 63u, 127u, 255u}) {
    const auto symbols = gap_symbols(positions, escape);
    const auto coded = code_stream(symbols, static_cast<std::size_t>(escape + 1));
    const std::size_t bytes = code_bytes(coded.lengths) + coded.bits.bytes().size();
    if (bytes < best_bytes) best_bytes = bytes, best_escape = escape;
  }
  const auto symbols = gap_symbols(positions, best_escape);
  const auto coded_positions = code_stream(symbols, static_cast<std::size_t>(best_escape + 1));
  row.escape = best_escape;
  w.to(row.bytes.header);
  w.varint(best_escape);
  w.to(row.bytes.codebook);
  write_code(w, coded_positions.lengths);
  w.to(row.bytes.header);
  w.varint(symbols.size());
  w.varint(coded_positions.bits.bit_count());
  w.to(row.bytes.positions);
  w.bytes(coded_positions.bits.bytes().data(), coded_positions.bits.bytes().size());
}

/// Reads one layer's weights `[rows × cols]` (the caller bounds rows·cols) and its bias.
inline void read_weights(ByteReader& r, const std::string& name, index_t rows, index_t cols, infer::Int8Weights& weights,
                         std::vector<float>& bias) {
  const auto qmin = r.zigzag("weight grid"), qmax = r.zigzag("weight grid");
  if (qmin < -128 || qmax > 127 || qmin > qmax) {
    throw r.error(minnow::detail::concat("weight grid [", qmin, ", ", qmax, "] is not within int8 [-128, 127]"));
  }
  weights.name = name + ".weight";
  weights.grid = {static_cast<std::int32_t>(qmin), static_cast<std::int32_t>(qmax)};
  const auto zp_mode = r.u8("zero-point mode");
  if (zp_mode > 1) throw r.error(minnow::detail::concat("zero-point mode ", int{zp_mode}, " is not 0 or 1"));
  const auto count = static_cast<std::size_t>(rows);
  if (8 * static_cast<std::uint64_t>(rows) > r.remaining()) {
    throw r.error(minnow::detail::concat("truncated: ", rows, " scales and biases need ", 8 * rows, " bytes, ", r.remaining(), " remain"));
  }
  weights.params.assign(count, quant::AffineParams{});
  if (zp_mode == 1) {
    for (auto& p : weights.params) {
      const auto zp = r.zigzag("zero point");
      if (zp < qmin || zp > qmax) throw r.error(minnow::detail::concat("zero point ", zp, " outside the grid [", qmin, ", ", qmax, "]"));
      p.zero_point = static_cast<std::int32_t>(zp);
    }
  }
  for (std::size_t c = 0; c < count; ++c) {
    const float s = r.f32("scale");
    if (!(s > 0.0f) || !std::isfinite(s)) throw r.error(minnow::detail::concat("scale of channel ", c, " is ", s, "; scales must be finite and > 0"));
    weights.params[c].scale = s;
  }
  bias.resize(count);
  for (std::size_t c = 0; c < count; ++c) {
    bias[c] = r.f32("bias");
    if (!std::isfinite(bias[c])) throw r.error(minnow::detail::concat("bias ", c, " is ", bias[c]));
  }

  const auto total = static_cast<std::uint64_t>(rows) * static_cast<std::uint64_t>(cols);
  const auto surviving = r.varint_in("surviving count", 0, total);
  const auto value_lengths = read_code(r, static_cast<std::uint64_t>(qmax - qmin + 1), "values");
  const auto value_bits = r.varint("values bit count");
  if (value_bits > 8 * r.remaining()) throw r.error(minnow::detail::concat("values stream of ", value_bits, " bits is truncated"));
  const auto value_bytes = r.take((value_bits + 7) / 8, "values stream");
  BitReader value_reader(value_bytes, value_bits, minnow::detail::concat("compressed model '", r.file(), "', ", r.context(), ": values"));
  const auto values = huffman_decode(value_reader, value_lengths, surviving);
  if (value_reader.position() != value_bits) {
    throw r.error(minnow::detail::concat("the values stream has ", value_bits - value_reader.position(), " bits after its last value"));
  }

  const auto escape = r.varint_in("positions escape", 1, 65535);
  const auto position_lengths = read_code(r, escape + 1, "positions");
  // Each survivor is one symbol; escapes skip `escape` positions each, so more than total / escape are never needed.
  const auto symbol_count = r.varint_in("positions symbol count", 0, surviving + total / escape);
  const auto position_bits = r.varint("positions bit count");
  if (position_bits > 8 * r.remaining()) throw r.error(minnow::detail::concat("positions stream of ", position_bits, " bits is truncated"));
  const auto position_bytes = r.take((position_bits + 7) / 8, "positions stream");
  BitReader position_reader(position_bytes, position_bits,
                            minnow::detail::concat("compressed model '", r.file(), "', ", r.context(), ": positions"));
  const auto gaps = huffman_decode(position_reader, position_lengths, symbol_count);
  if (position_reader.position() != position_bits) {
    throw r.error(minnow::detail::concat("the positions stream has ", position_bits - position_reader.position(),
                                         " bits after its last position"));
  }

  weights.values = Tensor<std::int8_t, 2>({rows, cols});
  for (index_t j = 0; j < rows; ++j) {
    std::fill(&weights.values(j, 0), &weights.values(j, 0) + cols, static_cast<std::int8_t>(weights.params[static_cast<std::size_t>(j)].zero_point));
  }
  std::uint64_t next = 0, stored = 0;
  for (const auto g : gaps) {
    if (g == escape) {
      next += escape;
      continue;
    }
    const std::uint64_t p = next + g;
    if (p >= total) throw r.error(minnow::detail::concat("position ", p, " is past the weight's ", total, " elements"));
    if (stored == surviving) throw r.error(minnow::detail::concat("the positions stream holds more than ", surviving, " positions"));
    weights.values.data()[p] = static_cast<std::int8_t>(qmin + values[static_cast<std::size_t>(stored)]);
    ++stored;
    next = p + 1;
  }
  if (next > total) throw r.error(minnow::detail::concat("escapes in the positions stream skip past the weight's ", total, " elements"));
  if (stored != surviving) {
    throw r.error(minnow::detail::concat("the positions stream holds ", stored, " positions for ", surviving, " surviving weights"));
  }
}

}  // namespace detail

/// @brief The bytes of `model` as a compressed model file, and where they go in `report` (when given).
/// @throws value_error when the model does not declare its input shape or is not well formed.
[[nodiscard]] inline std::vector<std::byte> encode_compressed_model(const infer::IntegerModel& model,
                                                                    CompressedModelReport* report = nullptr) {
  if (!model.has_input_shape()) {
    throw value_error("encode_compressed_model: the model declares no input shape (run the QuantizedModel on images before "
                      "converting it, or give one: pipeline::to_integer_model(model, qmodel, {1, 28, 28}))");
  }
  (void)infer::check_integer_model(model);
  CompressedModelReport local;
  CompressedModelReport& rep = report ? *report : local;
  rep = {};
  detail::ByteWriter w(&rep.file.header);
  w.bytes(detail::compressed_magic, sizeof detail::compressed_magic);
  w.varint(compressed_model_version);
  for (const index_t d : model.input_shape) w.varint(static_cast<std::uint64_t>(d));
  w.to(rep.file.scales);
  w.f32(model.input.scale);
  w.zigzag(model.input.zero_point);
  w.to(rep.file.header);
  w.varint(model.layers.size());
  for (const auto& layer : model.layers) {
    CompressedModelReport::Layer row{infer::layer_name(layer), 0, 0, 0, {}};
    w.to(row.bytes.header);
    const auto output = [&](const std::optional<quant::AffineParams>& out) {
      if (!out) return;
      w.to(row.bytes.scales);
      w.f32(out->scale);
      w.zigzag(out->zero_point);
      w.to(row.bytes.header);
    };
    const auto name = [&](const std::string& n) {
      w.varint(n.size());
      w.bytes(n.data(), n.size());
    };
    if (const auto* c = std::get_if<infer::IntegerConv>(&layer)) {
      w.u8(0);
      name(row.name);
      for (const index_t v : {c->weights.rows(), c->in_channels, c->kernel, c->stride, c->padding}) w.varint(static_cast<std::uint64_t>(v));
      w.u8(static_cast<std::uint8_t>((c->relu ? 1 : 0) | (c->output ? 2 : 0) | (c->pool2 ? 4 : 0)));
      output(c->output);
      detail::write_weights(w, c->weights, c->bias, row);
    } else if (const auto* l = std::get_if<infer::IntegerLinear>(&layer)) {
      w.u8(1);
      name(row.name);
      w.varint(static_cast<std::uint64_t>(l->weights.rows()));
      w.varint(static_cast<std::uint64_t>(l->weights.cols()));
      w.u8(static_cast<std::uint8_t>((l->relu ? 1 : 0) | (l->output ? 2 : 0)));
      output(l->output);
      detail::write_weights(w, l->weights, l->bias, row);
    } else if (const auto* p = std::get_if<infer::IntegerMaxPool>(&layer)) {
      w.u8(2);
      w.varint(static_cast<std::uint64_t>(p->kernel));
      w.varint(static_cast<std::uint64_t>(p->stride));
    } else {
      w.u8(3);
    }
    rep.layers.push_back(std::move(row));
  }
  w.to(rep.file.header);
  const std::uint32_t hash = detail::fnv1a32(w.out());
  for (int i = 0; i < 4; ++i) w.u8(static_cast<std::uint8_t>(hash >> (8 * i)));
  return std::move(w.out());
}

/// @brief Reads a compressed model file's bytes (`source` names it in errors).
/// @throws format_error naming the file, the layer and the problem (see the file comment).
[[nodiscard]] inline infer::IntegerModel decode_compressed_model(std::span<const std::byte> bytes, const std::string& source,
                                                                 const CompressedModelLimits& limits = {}) {
  detail::ByteReader r(bytes, source);
  if (bytes.size() < sizeof detail::compressed_magic + 4) throw r.error(minnow::detail::concat("truncated: ", bytes.size(), " bytes"));
  if (std::memcmp(bytes.data(), detail::compressed_magic, sizeof detail::compressed_magic) != 0) {
    throw r.error("not a minnow compressed model (bad magic)");
  }
  std::uint32_t stored = 0;
  for (int i = 3; i >= 0; --i) stored = (stored << 8) | std::to_integer<std::uint32_t>(bytes[bytes.size() - 4 + static_cast<std::size_t>(i)]);
  if (detail::fnv1a32(bytes.first(bytes.size() - 4)) != stored) throw r.error("corrupt or truncated (checksum mismatch)");
  detail::ByteReader body(bytes.first(bytes.size() - 4), source);
  (void)body.take(sizeof detail::compressed_magic, "magic");
  const auto version = body.varint("version");
  if (version != compressed_model_version) {
    throw body.error(minnow::detail::concat("version ", version, "; this minnow reads version ", compressed_model_version));
  }
  const auto dim_limit = limits.max_layer_weights;
  infer::IntegerModel model;
  for (auto& d : model.input_shape) d = static_cast<index_t>(body.varint_in("input shape", 1, dim_limit));
  model.input.scale = body.f32("input scale");
  const auto input_zp = body.zigzag("input zero point");
  if (input_zp < 0 || input_zp > 255) throw body.error(minnow::detail::concat("input zero point ", input_zp, " is outside [0, 255]"));
  model.input.zero_point = static_cast<std::int32_t>(input_zp);
  const auto layer_count = body.varint_in("layer count", 0, limits.max_layers);
  for (std::uint64_t i = 0; i < layer_count; ++i) {
    body.set_context(minnow::detail::concat("layer ", i));
    const auto kind = body.u8("layer kind");
    if (kind > 3) throw body.error(minnow::detail::concat("unknown layer kind ", int{kind}));
    if (kind == 2) {
      const auto kernel = body.varint_in("pool kernel", 1, 1 << 16), stride = body.varint_in("pool stride", 1, 1 << 16);
      model.layers.emplace_back(infer::IntegerMaxPool{static_cast<index_t>(kernel), static_cast<index_t>(stride)});
      continue;
    }
    if (kind == 3) {
      model.layers.emplace_back(infer::IntegerFlatten{});
      continue;
    }
    const auto name_length = body.varint_in("name length", 1, limits.max_name_bytes);
    const auto name_bytes = body.take(name_length, "name");
    const std::string name(reinterpret_cast<const char*>(name_bytes.data()), name_bytes.size());
    body.set_context(minnow::detail::concat("layer ", i, " ('", name, "')"));
    const auto rows = body.varint_in("output channels", 1, dim_limit);
    index_t in_channels = 0, kernel = 1, stride = 1, padding = 0, cols = 0;
    if (kind == 0) {
      in_channels = static_cast<index_t>(body.varint_in("input channels", 1, dim_limit));
      kernel = static_cast<index_t>(body.varint_in("kernel", 1, 1 << 16));
      stride = static_cast<index_t>(body.varint_in("stride", 1, 1 << 16));
      padding = static_cast<index_t>(body.varint_in("padding", 0, 1 << 16));
      if (static_cast<std::uint64_t>(kernel) * static_cast<std::uint64_t>(kernel) > dim_limit / static_cast<std::uint64_t>(in_channels)) {
        throw body.error(minnow::detail::concat("in·k·k = ", in_channels, "·", kernel, "² exceeds the limit of ", dim_limit));
      }
      cols = in_channels * kernel * kernel;
    } else {
      cols = static_cast<index_t>(body.varint_in("input features", 1, dim_limit));
    }
    if (static_cast<std::uint64_t>(cols) > dim_limit / rows) {
      throw body.error(minnow::detail::concat(rows, " × ", cols, " weights exceed the limit of ", dim_limit, " per layer"));
    }
    const auto flags = body.u8("flags");
    if (flags > (kind == 0 ? 7 : 3)) throw body.error(minnow::detail::concat("unknown flags ", int{flags}));
    std::optional<quant::AffineParams> output;
    if (flags & 2) {
      quant::AffineParams p;
      p.scale = body.f32("output scale");
      const auto zp = body.zigzag("output zero point");
      if (zp < 0 || zp > 255) throw body.error(minnow::detail::concat("output zero point ", zp, " is outside [0, 255]"));
      p.zero_point = static_cast<std::int32_t>(zp);
      output = p;
    }
    infer::Int8Weights weights;
    std::vector<float> bias;
    detail::read_weights(body, name, static_cast<index_t>(rows), cols, weights, bias);
    if (kind == 0) {
      model.layers.emplace_back(infer::IntegerConv{std::move(weights), in_channels, kernel, stride, padding, std::move(bias),
                                                   (flags & 1) != 0, output, (flags & 4) != 0});
    } else {
      model.layers.emplace_back(infer::IntegerLinear{std::move(weights), std::move(bias), (flags & 1) != 0, output});
    }
  }
  body.set_context("");
  if (body.remaining() != 0) throw body.error(minnow::detail::concat(body.remaining(), " bytes after the last layer"));
  try {
    (void)infer::check_integer_model(model);
  } catch (const std::invalid_argument& e) {  // value_error, shape_error: the layers do not chain or a value is invalid
    throw body.error(e.what());
  }
  return model;
}

/// @brief Writes `model` to `path` atomically (io/atomic_file.hpp) and says where the bytes went.
/// @throws value_error as encode_compressed_model; io_error when the file cannot be written.
inline CompressedModelReport write_compressed_model(const std::filesystem::path& path, const infer::IntegerModel& model) {
  CompressedModelReport report;
  const auto bytes = encode_compressed_model(model, &report);
  write_file_atomically(path, bytes);
  return report;
}

/// @brief Reads the compressed model file `path`.
/// @throws io_error for a missing file, a directory or a read error; format_error as decode_compressed_model.
[[nodiscard]] inline infer::IntegerModel read_compressed_model(const std::filesystem::path& path,
                                                               const CompressedModelLimits& limits = {}) {
  const auto bytes = read_file(path, limits.max_file_bytes, "compressed model");
  return decode_compressed_model(bytes, path.string(), limits);
}

inline std::string CompressedModelReport::describe() const {
  std::string out = minnow::detail::concat("layer        weights  stored   header  scales    bias  codebook   values  positions    total  bits/stored\n");
  const auto line = [&](const std::string& name, std::int64_t weights, std::int64_t stored, const StreamBytes& b) {
    char buffer[200];
    const double bits = stored > 0 ? 8.0 * static_cast<double>(b.values + b.positions + b.codebook) / static_cast<double>(stored) : 0.0;
    std::snprintf(buffer, sizeof buffer, "%-10s %9lld %7lld %8zu %7zu %7zu %9zu %8zu %10zu %8zu %12.2f\n", name.c_str(),
                  static_cast<long long>(weights), static_cast<long long>(stored), b.header, b.scales, b.bias, b.codebook,
                  b.values, b.positions, b.total(), bits);
    out += buffer;
  };
  line("(file)", 0, 0, file);
  std::int64_t weights = 0, stored = 0;
  for (const auto& l : layers) {
    line(l.name, l.weights, l.surviving, l.bytes);
    weights += l.weights, stored += l.surviving;
  }
  line("total", weights, stored, totals());
  return out;
}

}  // namespace minnow::io
