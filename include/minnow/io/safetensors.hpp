#pragma once
/// @file io/safetensors.hpp
/// @brief The safetensors format (Hugging Face): a reader that treats the file as untrusted, and a writer.
///
/// Layout, as its authors specify it:
/// ```
/// u64 little-endian N
/// N bytes of UTF-8 JSON, an object, which may be padded with trailing spaces:
///   {"conv1.weight": {"dtype": "F32", "shape": [16, 1, 3, 3], "data_offsets": [0, 576]}, ...,
///    "__metadata__": {"format": "pt"}}
/// the data buffer: each tensor's little-endian, row-major bytes at [begin, end) of it
/// ```
/// The reader checks every field before using it (see SafetensorsFile); the writer follows the reference
/// implementation: tensors in the order given, the header padded with spaces so the data starts at a
/// multiple of 8.

#if !__has_include(<nlohmann/json.hpp>)
#error "minnow/io/safetensors.hpp needs nlohmann/json 3 (Debian: nlohmann-json3-dev); link nlohmann_json::nlohmann_json"
#endif

#include <minnow/error.hpp>
#include <minnow/io/atomic_file.hpp>
#include <minnow/tensor.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

namespace minnow::io {

// Tensor bytes are copied as they lie in memory: the format is little-endian, and so must the host be.
static_assert(std::endian::native == std::endian::little, "minnow's safetensors support needs a little-endian host");

/// The element types minnow reads (the format knows a few more, e.g. BOOL, U16, F8_E4M3: those are refused).
enum class Dtype { F64, F32, F16, BF16, I64, I32, I8, U8 };

/// The name the format uses ("F32").
[[nodiscard]] constexpr std::string_view dtype_name(Dtype dtype) noexcept {
  switch (dtype) {
    case Dtype::F64: return "F64";
    case Dtype::F32: return "F32";
    case Dtype::F16: return "F16";
    case Dtype::BF16: return "BF16";
    case Dtype::I64: return "I64";
    case Dtype::I32: return "I32";
    case Dtype::I8: return "I8";
    case Dtype::U8: return "U8";
  }
  return "?";
}

/// Bytes per element.
[[nodiscard]] constexpr std::size_t dtype_size(Dtype dtype) noexcept {
  switch (dtype) {
    case Dtype::F64: case Dtype::I64: return 8;
    case Dtype::F32: case Dtype::I32: return 4;
    case Dtype::F16: case Dtype::BF16: return 2;
    case Dtype::I8: case Dtype::U8: return 1;
  }
  return 0;
}

/// The dtype called `name` ("BF16"), or nothing for a name minnow does not read.
[[nodiscard]] constexpr std::optional<Dtype> parse_dtype(std::string_view name) noexcept {
  for (const Dtype d : {Dtype::F64, Dtype::F32, Dtype::F16, Dtype::BF16, Dtype::I64, Dtype::I32, Dtype::I8, Dtype::U8}) {
    if (dtype_name(d) == name) return d;
  }
  return std::nullopt;
}

/// The C++ types stored as they are: F64, F32, I64, I32, I8, U8 (F16 and BF16 have no standard C++20 type).
template <class T>
concept SafetensorsScalar = std::is_same_v<T, double> || std::is_same_v<T, float> || std::is_same_v<T, std::int64_t> ||
                            std::is_same_v<T, std::int32_t> || std::is_same_v<T, std::int8_t> || std::is_same_v<T, std::uint8_t>;

/// The dtype of a C++ scalar type.
template <SafetensorsScalar T>
inline constexpr Dtype dtype_of = std::is_same_v<T, double>         ? Dtype::F64
                                  : std::is_same_v<T, float>        ? Dtype::F32
                                  : std::is_same_v<T, std::int64_t> ? Dtype::I64
                                  : std::is_same_v<T, std::int32_t> ? Dtype::I32
                                  : std::is_same_v<T, std::int8_t>  ? Dtype::I8
                                                                    : Dtype::U8;

/// IEEE half → float, exact for every value (subnormals, ±inf; NaN keeps its payload).
[[nodiscard]] inline float f16_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = (std::uint32_t{h} & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  const std::uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0) {  // zero or subnormal: mantissa · 2^-24, a float exactly
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
}

/// bfloat16 → float: bfloat16 is the top half of a float.
[[nodiscard]] inline float bf16_to_float(std::uint16_t b) noexcept { return std::bit_cast<float>(std::uint32_t{b} << 16); }

/// Bounds on what the reader accepts, checked before anything sized by the file is allocated.
struct SafetensorsLimits {
  /// The JSON header's size; 100 MB is the reference implementation's limit.
  std::uint64_t max_header_bytes = 100'000'000;
  /// The whole file is read into memory; larger files are refused before reading.
  std::uint64_t max_file_bytes = std::uint64_t{1} << 36;
};

/// Tensors of higher rank are refused (no network minnow knows needs more; it also bounds the header's arrays).
inline constexpr std::size_t safetensors_max_rank = 8;

/// One tensor of a parsed file.
struct SafetensorsInfo {
  std::string name;
  Dtype dtype = Dtype::F32;
  std::vector<index_t> shape;
  std::uint64_t begin = 0;  ///< byte range [begin, end) in the data buffer
  std::uint64_t end = 0;

  [[nodiscard]] index_t numel() const noexcept {
    return static_cast<index_t>((end - begin) / dtype_size(dtype));
  }
};

namespace detail {

/// Keeps the header's key order, so tensors are listed as the file lists them.
using Json = nlohmann::ordered_json;

/// "[64,1568]": the form used in every message.
[[nodiscard]] inline std::string shape_text(const std::vector<index_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(shape[i]);  // appended on its own: GCC 12's -Wrestrict misfires on "," + std::string
  }
  out += ']';
  return out;
}

template <class T>
[[nodiscard]] T load(const std::byte* p) noexcept {
  T value;
  std::memcpy(&value, p, sizeof value);
  return value;
}

/// double → float without UB: a finite value beyond float's range becomes ±inf, as IEEE rounding would.
[[nodiscard]] inline float narrow_to_float(double d) noexcept {
  constexpr double overflow = 0x1.ffffffp127;  // FLT_MAX + half an ulp: from here on, rounding gives inf
  if (d >= overflow) return std::numeric_limits<float>::infinity();
  if (d <= -overflow) return -std::numeric_limits<float>::infinity();
  return static_cast<float>(d);
}

}  // namespace detail

/// @brief A safetensors file, read and checked completely: it owns the file's bytes.
///
/// Every violation of the format is a `format_error` naming the file, the tensor (when there is one)
/// and the problem, found before anything sized by the file is allocated (other than the file itself):
/// - the file is shorter than 8 bytes; the header length is < 2, above `max_header_bytes` or longer than
///   what follows it; the header does not start with '{', is not JSON, or is not an object;
/// - a name appears twice (nlohmann would keep the last one silently; the spec forbids duplicates);
/// - an entry is not an object with exactly "dtype" (a known name), "shape" (at most
///   `safetensors_max_rank` non-negative integers) and "data_offsets" (two non-negative integers,
///   begin ≤ end); its byte count overflows or differs from end − begin;
/// - "__metadata__" is not an object of strings;
/// - sorted by begin, the ranges do not start at 0, leave a gap, overlap, or stop before the buffer ends.
/// Parsing costs memory proportional to the header (bounded by `max_header_bytes`), never more.
class SafetensorsFile {
 public:
  /// Parses `bytes`, the whole file; `source` names it in messages (usually its path).
  SafetensorsFile(std::vector<std::byte> bytes, std::string source, const SafetensorsLimits& limits = {})
      : bytes_(std::move(bytes)), source_(std::move(source)) {
    parse(limits);
  }

  [[nodiscard]] const std::string& source() const noexcept { return source_; }
  /// Every tensor, in the order of the header.
  [[nodiscard]] const std::vector<SafetensorsInfo>& tensors() const noexcept { return tensors_; }
  /// The "__metadata__" object (empty when the file has none).
  [[nodiscard]] const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  [[nodiscard]] bool contains(std::string_view name) const { return index_.find(name) != index_.end(); }

  /// The tensor called `name`. @throws format_error naming the tensor and the file when there is none.
  [[nodiscard]] const SafetensorsInfo& tensor(std::string_view name) const {
    const auto it = index_.find(name);
    if (it == index_.end()) throw format_error(minnow::detail::concat("safetensors '", source_, "' has no tensor '", name, "'"));
    return tensors_[it->second];
  }

  /// The raw little-endian bytes of a tensor. @throws format_error when there is no such tensor.
  [[nodiscard]] std::span<const std::byte> bytes(std::string_view name) const { return raw(tensor(name)); }

  /// Converts any dtype to float into `out`: F16 and BF16 exactly, F64 rounded, integers by static_cast.
  /// @throws format_error when there is no such tensor; shape_error when `out` does not hold its elements.
  void convert_to(std::string_view name, std::span<float> out) const {
    const SafetensorsInfo& t = tensor(name);
    if (out.size() != static_cast<std::size_t>(t.numel())) {
      throw shape_error(minnow::detail::concat("safetensors '", source_, "': tensor '", name, "' has ", t.numel(),
                                               " elements, the destination ", out.size()));
    }
    const std::byte* p = raw(t).data();
    for (std::size_t i = 0; i < out.size(); ++i) {
      switch (t.dtype) {
        case Dtype::F64: out[i] = detail::narrow_to_float(detail::load<double>(p + 8 * i)); break;
        case Dtype::F32: out[i] = detail::load<float>(p + 4 * i); break;
        case Dtype::F16: out[i] = f16_to_float(detail::load<std::uint16_t>(p + 2 * i)); break;
        case Dtype::BF16: out[i] = bf16_to_float(detail::load<std::uint16_t>(p + 2 * i)); break;
        case Dtype::I64: out[i] = static_cast<float>(detail::load<std::int64_t>(p + 8 * i)); break;
        case Dtype::I32: out[i] = static_cast<float>(detail::load<std::int32_t>(p + 4 * i)); break;
        case Dtype::I8: out[i] = static_cast<float>(detail::load<std::int8_t>(p + i)); break;
        case Dtype::U8: out[i] = static_cast<float>(detail::load<std::uint8_t>(p + i)); break;
      }
    }
  }

  /// A tensor of any dtype as floats (see convert_to), flattened row-major.
  [[nodiscard]] std::vector<float> to_float(std::string_view name) const {
    std::vector<float> out(static_cast<std::size_t>(tensor(name).numel()));
    convert_to(name, out);
    return out;
  }

  /// A tensor's values exactly as stored, flattened row-major.
  /// @throws format_error when there is no such tensor or its dtype is not `dtype_of<T>`.
  template <SafetensorsScalar T>
  [[nodiscard]] std::vector<T> values(std::string_view name) const {
    const SafetensorsInfo& t = tensor(name);
    if (t.dtype != dtype_of<T>) {
      throw format_error(minnow::detail::concat("safetensors '", source_, "': tensor '", name, "' is ", dtype_name(t.dtype),
                                                ", not ", dtype_name(dtype_of<T>)));
    }
    std::vector<T> out(static_cast<std::size_t>(t.numel()));
    const auto bytes = raw(t);
    if (!bytes.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
  }

 private:
  [[nodiscard]] std::span<const std::byte> raw(const SafetensorsInfo& t) const noexcept {
    return std::span<const std::byte>(bytes_).subspan(static_cast<std::size_t>(data_start_ + t.begin),
                                                      static_cast<std::size_t>(t.end - t.begin));
  }

  template <class... Parts>
  [[nodiscard]] format_error fail(const Parts&... parts) const {
    return format_error(minnow::detail::concat("safetensors '", source_, "': ", parts...));
  }

  void parse(const SafetensorsLimits& limits) {
    const std::uint64_t size = bytes_.size();
    if (size < 8) throw fail("truncated: the file has ", size, " bytes, too short for the 8-byte header length");
    const auto header_bytes = detail::load<std::uint64_t>(bytes_.data());
    if (header_bytes < 2) throw fail("the header length ", header_bytes, " is too small (the shortest header is \"{}\")");
    if (header_bytes > limits.max_header_bytes) {
      throw fail("the header length ", header_bytes, " is above the limit of ", limits.max_header_bytes, " bytes");
    }
    if (header_bytes > size - 8) {
      throw fail("truncated: the header length is ", header_bytes, " bytes but only ", size - 8, " bytes follow it");
    }
    data_start_ = 8 + header_bytes;
    const std::uint64_t buffer_bytes = size - data_start_;
    const char* text = reinterpret_cast<const char*>(bytes_.data()) + 8;
    if (text[0] != '{') throw fail("the header does not start with '{'");
    // nlohmann stops at a NUL as if the input ended; JSON text never holds one, so padding with NULs is refused here.
    if (std::memchr(text, 0, static_cast<std::size_t>(header_bytes)) != nullptr) {
      throw fail("the header holds a NUL byte (it must be JSON padded with spaces)");
    }

    const detail::Json header = parse_json(text, text + header_bytes);
    if (!header.is_object()) throw fail("the header is a JSON ", header.type_name(), ", not an object");

    tensors_.reserve(header.size());
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") {
        read_metadata(entry);
      } else {
        tensors_.push_back(read_entry(name, entry, buffer_bytes));
        index_.emplace(name, tensors_.size() - 1);
      }
    }
    check_coverage(buffer_bytes);
  }

  /// Parses the header, refusing duplicate keys, nesting deeper than a header needs and arrays longer
  /// than a shape as they stream past, so a hostile header cannot grow the tree beyond its own size.
  [[nodiscard]] detail::Json parse_json(const char* first, const char* last) const {
    struct Frame {
      bool object;
      std::string key;  // the last key read in this object
      std::size_t elements = 0;
      std::unordered_set<std::string> keys;
    };
    std::vector<Frame> stack;
    auto where = [&]() -> std::string {
      if (stack.size() < 2) return "";
      return stack[0].key == "__metadata__" ? "'__metadata__': " : minnow::detail::concat("tensor '", stack[0].key, "': ");
    };
    auto callback = [&](int /*depth*/, detail::Json::parse_event_t event, detail::Json& parsed) {
      using Event = detail::Json::parse_event_t;
      if ((event == Event::value || event == Event::object_start || event == Event::array_start) && !stack.empty() &&
          !stack.back().object && ++stack.back().elements > safetensors_max_rank) {
        throw fail(where(), stack.size() >= 3 ? "'" + stack[1].key + "'" : std::string("the entry"), " has more than ", safetensors_max_rank,
                   " elements (shapes have rank at most ", safetensors_max_rank, ")");
      }
      switch (event) {
        case Event::object_start:
        case Event::array_start:
          if (stack.size() == 3) throw fail(where(), "arrays or objects nest deeper than a header's fields");
          stack.push_back(Frame{event == Event::object_start, {}, 0, {}});
          break;
        case Event::object_end:
        case Event::array_end:
          stack.pop_back();
          break;
        case Event::key: {
          Frame& frame = stack.back();
          frame.key = parsed.get<std::string>();
          if (!frame.keys.insert(frame.key).second) {
            if (stack.size() == 1) throw fail("'", frame.key, "' appears more than once in the header");
            throw fail(where(), "key '", frame.key, "' appears more than once");
          }
          break;
        }
        case Event::value:
          break;
      }
      return true;
    };
    try {
      return detail::Json::parse(first, last, callback);
    } catch (const detail::Json::exception& e) {
      throw fail("the header is not valid JSON: ", e.what());
    }
  }

  void read_metadata(const detail::Json& entry) {
    if (!entry.is_object()) throw fail("'__metadata__' is a JSON ", entry.type_name(), ", not an object of strings");
    for (const auto& [key, value] : entry.items()) {
      if (!value.is_string()) throw fail("'__metadata__': '", key, "' is a JSON ", value.type_name(), ", not a string");
      metadata_.emplace(key, value.get<std::string>());
    }
  }

  [[nodiscard]] SafetensorsInfo read_entry(const std::string& name, const detail::Json& entry, std::uint64_t buffer_bytes) const {
    auto bad = [&](const auto&... parts) { return fail("tensor '", name, "': ", parts...); };
    if (!entry.is_object()) throw bad("the entry is a JSON ", entry.type_name(), ", not an object");
    for (const auto& item : entry.items()) {
      if (item.key() != "dtype" && item.key() != "shape" && item.key() != "data_offsets") {
        throw bad("unknown key '", item.key(), "' (an entry has exactly dtype, shape and data_offsets)");
      }
    }
    for (const char* key : {"dtype", "shape", "data_offsets"}) {
      if (!entry.contains(key)) throw bad("'", key, "' is missing");
    }
    SafetensorsInfo info;
    info.name = name;

    const auto& dtype = entry.at("dtype");
    if (!dtype.is_string()) throw bad("dtype is a JSON ", dtype.type_name(), ", not a string");
    const auto parsed = parse_dtype(dtype.get_ref<const std::string&>());
    if (!parsed) throw bad("unsupported dtype '", dtype.get_ref<const std::string&>(), "' (minnow reads F64, F32, F16, BF16, I64, I32, I8, U8)");
    info.dtype = *parsed;

    const auto& shape = entry.at("shape");
    if (!shape.is_array()) throw bad("shape is a JSON ", shape.type_name(), ", not an array");
    if (shape.size() > safetensors_max_rank) throw bad("shape has rank ", shape.size(), ", above ", safetensors_max_rank);
    bool empty = false;
    for (const auto& extent : shape) {
      if (extent.is_number_integer() && !extent.is_number_unsigned()) throw bad("shape has a negative extent ", extent.dump());
      if (!extent.is_number_unsigned()) throw bad("shape extent ", extent.dump(), " is not a non-negative integer");
      const auto value = extent.get<std::uint64_t>();
      if (value > static_cast<std::uint64_t>(std::numeric_limits<index_t>::max())) throw bad("shape extent ", value, " is too large");
      info.shape.push_back(static_cast<index_t>(value));
      empty = empty || value == 0;
    }
    std::uint64_t expected = empty ? 0 : dtype_size(info.dtype);  // bytes the shape needs, overflow-checked
    for (const index_t extent : info.shape) {
      const auto e = static_cast<std::uint64_t>(extent);
      if (e != 0 && expected > std::numeric_limits<std::uint64_t>::max() / e) {
        throw bad("shape ", detail::shape_text(info.shape), " of ", dtype_name(info.dtype), " overflows a 64-bit byte count");
      }
      expected *= e;
    }

    const auto& offsets = entry.at("data_offsets");
    if (!offsets.is_array() || offsets.size() != 2) throw bad("data_offsets must be an array of two integers, not ", offsets.dump());
    for (const auto& offset : offsets) {
      if (!offset.is_number_unsigned()) throw bad("data_offsets ", offsets.dump(), " are not two non-negative integers");
    }
    info.begin = offsets[0].get<std::uint64_t>();
    info.end = offsets[1].get<std::uint64_t>();
    if (info.begin > info.end) throw bad("data_offsets [", info.begin, ", ", info.end, "] begin after they end");
    if (info.end > buffer_bytes) {
      throw bad("data_offsets [", info.begin, ", ", info.end, "] reach past the end of the ", buffer_bytes, "-byte data buffer");
    }
    if (info.end - info.begin != expected) {
      throw bad("data_offsets [", info.begin, ", ", info.end, "] hold ", info.end - info.begin, " bytes, but ", dtype_name(info.dtype),
                " ", detail::shape_text(info.shape), " needs ", expected);
    }
    return info;
  }

  /// Sorted by begin, the ranges must tile the buffer: from 0, no gap, no overlap, up to its last byte.
  void check_coverage(std::uint64_t buffer_bytes) const {
    std::vector<std::size_t> order(tensors_.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return std::pair(tensors_[a].begin, tensors_[a].end) < std::pair(tensors_[b].begin, tensors_[b].end);
    });
    std::uint64_t covered = 0;
    const SafetensorsInfo* previous = nullptr;
    for (const std::size_t i : order) {
      const SafetensorsInfo& t = tensors_[i];
      if (t.begin > covered) {
        throw fail("bytes [", covered, ", ", t.begin, ") of the data buffer belong to no tensor (a gap before tensor '", t.name, "')");
      }
      if (t.begin < covered) {
        throw fail("tensor '", t.name, "' [", t.begin, ", ", t.end, "] overlaps tensor '", previous->name, "' [", previous->begin,
                   ", ", previous->end, "]");
      }
      covered = t.end;
      previous = &t;
    }
    if (covered != buffer_bytes) {
      throw fail("the data buffer has ", buffer_bytes - covered, " trailing bytes that belong to no tensor (the tensors end at ",
                 covered, ", the buffer at ", buffer_bytes, ")");
    }
  }

  std::vector<std::byte> bytes_;
  std::string source_;
  std::uint64_t data_start_ = 0;
  std::vector<SafetensorsInfo> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

/// Parses a whole file held in memory; `source` names it in messages. @throws format_error (see SafetensorsFile).
[[nodiscard]] inline SafetensorsFile parse_safetensors(std::vector<std::byte> bytes, std::string source,
                                                       const SafetensorsLimits& limits = {}) {
  return SafetensorsFile(std::move(bytes), std::move(source), limits);
}

/// Reads and checks `path`.
/// @throws io_error naming the path when it is missing, not a regular file or unreadable;
/// format_error when it breaks the format (see SafetensorsFile) or exceeds `limits.max_file_bytes`.
[[nodiscard]] inline SafetensorsFile read_safetensors(const std::filesystem::path& path, const SafetensorsLimits& limits = {}) {
  return SafetensorsFile(read_file(path, limits.max_file_bytes, "safetensors file"), path.string(), limits);
}

/// One tensor to write: a view of its bytes (little-endian elements of `dtype`, row-major), not owned.
struct SafetensorsTensor {
  std::string name;
  Dtype dtype = Dtype::F32;
  std::vector<index_t> shape;
  std::span<const std::byte> data;
};

/// A tensor to write from typed values (F64, F32, I64, I32, I8, U8); for F16/BF16 fill SafetensorsTensor's bytes.
template <SafetensorsScalar T>
[[nodiscard]] SafetensorsTensor safetensors_tensor(std::string name, std::vector<index_t> shape, std::span<const T> values) {
  return SafetensorsTensor{std::move(name), dtype_of<T>, std::move(shape), std::as_bytes(values)};
}

/// The bytes of a safetensors file: tensors in the order given, "__metadata__" first when not empty, the
/// header padded with spaces so the data starts at a multiple of 8 (as the reference implementation does).
/// @throws value_error for an empty, duplicate or reserved ("__metadata__") name, a negative extent, or a name
/// or metadata that is not UTF-8; shape_error when a tensor's bytes do not match its shape and dtype.
[[nodiscard]] inline std::vector<std::byte> serialize_safetensors(const std::vector<SafetensorsTensor>& tensors,
                                                                 const std::map<std::string, std::string>& metadata = {}) {
  using detail::Json;
  Json header = Json::object();
  if (!metadata.empty()) {
    Json& m = header["__metadata__"] = Json::object();
    for (const auto& [key, value] : metadata) m[key] = value;
  }
  std::set<std::string_view> names;
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    if (t.name.empty()) throw value_error("write_safetensors: a tensor has an empty name");
    if (t.name == "__metadata__") throw value_error("write_safetensors: '__metadata__' is reserved, not a tensor name");
    if (!names.insert(t.name).second) throw value_error(minnow::detail::concat("write_safetensors: tensor '", t.name, "' is given twice"));
    if (t.shape.size() > safetensors_max_rank) {
      throw value_error(minnow::detail::concat("write_safetensors: tensor '", t.name, "' has rank ", t.shape.size(), ", above ", safetensors_max_rank));
    }
    if (std::any_of(t.shape.begin(), t.shape.end(), [](index_t e) { return e < 0; })) {
      throw value_error(minnow::detail::concat("write_safetensors: tensor '", t.name, "' has shape ", detail::shape_text(t.shape)));
    }
    // The bytes the shape needs; an overflowing product can never match a real buffer.
    std::uint64_t needed = dtype_size(t.dtype);
    bool overflow = false;
    if (std::find(t.shape.begin(), t.shape.end(), index_t{0}) != t.shape.end()) needed = 0;
    for (const index_t extent : t.shape) {
      const auto e = static_cast<std::uint64_t>(extent);
      if (e != 0 && needed > std::numeric_limits<std::uint64_t>::max() / e) overflow = true;
      needed *= e;
    }
    if (overflow || needed != t.data.size()) {
      throw shape_error(minnow::detail::concat("write_safetensors: tensor '", t.name, "' is ", dtype_name(t.dtype), " ",
                                               detail::shape_text(t.shape), " but has ", t.data.size(), " bytes"));
    }
    Json entry = Json::object();
    entry["dtype"] = std::string(dtype_name(t.dtype));
    entry["shape"] = t.shape;
    entry["data_offsets"] = Json::array({offset, offset + t.data.size()});
    header[t.name] = std::move(entry);
    offset += t.data.size();
  }
  std::string text;
  try {
    text = header.dump(-1, ' ', false, Json::error_handler_t::strict);
  } catch (const Json::exception& e) {
    throw value_error(minnow::detail::concat("write_safetensors: a name or metadata string is not valid UTF-8 (", e.what(), ")"));
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  std::vector<std::byte> out(8 + text.size() + offset);
  const std::uint64_t header_bytes = text.size();
  std::memcpy(out.data(), &header_bytes, 8);
  std::memcpy(out.data() + 8, text.data(), text.size());
  std::byte* data = out.data() + 8 + text.size();
  for (const auto& t : tensors) {
    if (!t.data.empty()) std::memcpy(data, t.data.data(), t.data.size());
    data += t.data.size();
  }
  return out;
}

/// Writes a safetensors file atomically (io/atomic_file.hpp); see serialize_safetensors for the layout.
/// @throws value_error / shape_error as serialize_safetensors; io_error naming the path when it cannot be written.
inline void write_safetensors(const std::filesystem::path& path, const std::vector<SafetensorsTensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  write_file_atomically(path, serialize_safetensors(tensors, metadata));
}

}  // namespace minnow::io
