#pragma once
/// @file io/checkpoint.hpp
/// @brief A simple, versioned binary checkpoint of named tensors (parameters and optimizer state).
///
/// Layout (little-endian, as the host writes it):
/// ```
/// "MINNOWCK"                 8 bytes magic
/// u32 version (= 2)          u32 scalar size in bytes (4 = float, 8 = double)
/// u64 tag length, tag        free text that must match on load (e.g. the architecture)
/// u64 entry count
/// per entry: u32 name length, name, u32 rank, rank × i64 extents, extents' product × scalar
/// u64 counter count          (version 2; version 1 files end their body here)
/// per counter: u32 name length, name, i64 value      exact integers such as an optimizer's step count
/// u64 FNV-1a hash of everything before it
/// ```
/// Writes are atomic and durable (io/atomic_file.hpp): a crash never leaves a half-written file, a symlink
/// keeps pointing at the file it names, a non-regular target is refused. Loads read and check the whole file
/// before writing any value, so a bad file changes nothing.

#include <minnow/error.hpp>
#include <minnow/io/atomic_file.hpp>
#include <minnow/tensor.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace minnow::io {

/// One named tensor of a checkpoint: a flat view and its logical shape.
template <class T>
struct CheckpointEntry {
  std::string name;
  std::vector<index_t> shape;
  TensorView<T, 1> data;
};

/// @brief A named integer stored exactly beside the tensors (an optimizer's step count), and the range a
/// loaded value must lie in: a value outside it is a format_error, so a corrupt count never reaches the caller.
struct CheckpointCounter {
  std::string name;
  std::int64_t* value = nullptr;
  std::int64_t min = 0;
  std::int64_t max = std::numeric_limits<std::int64_t>::max();
};

/// The version written. Version 1 files (no counters) still load when no counters are asked for.
inline constexpr std::uint32_t checkpoint_version = 2;

/// Larger files are refused before they are read (the whole file is read into memory).
inline constexpr std::uint64_t checkpoint_max_bytes = std::uint64_t{1} << 36;

namespace detail {

/// Every entry's shape must be non-negative and its view must hold exactly the elements the shape names.
template <class T>
void check_entries(const std::vector<CheckpointEntry<T>>& entries) {
  for (const auto& e : entries) {
    index_t count = 1;
    for (const index_t extent : e.shape) {
      if (extent < 0) {
        throw shape_error(minnow::detail::concat("checkpoint entry '", e.name, "' has a negative extent ", extent));
      }
      if (extent != 0 && count > std::numeric_limits<index_t>::max() / extent) {
        throw shape_error(minnow::detail::concat("checkpoint entry '", e.name, "': its shape's element count overflows"));
      }
      count *= extent;
    }
    if (count != e.data.size()) {
      throw shape_error(minnow::detail::concat("checkpoint entry '", e.name, "' views ", e.data.size(),
                                               " elements but its shape holds ", count));
    }
  }
}

/// Every counter points at a value, and the value it saves lies in its own range.
inline void check_counters(const std::vector<CheckpointCounter>& counters) {
  for (const auto& c : counters) {
    if (c.value == nullptr) throw value_error(minnow::detail::concat("checkpoint counter '", c.name, "' points at no value"));
    if (c.min > c.max) throw value_error(minnow::detail::concat("checkpoint counter '", c.name, "' has an empty range"));
  }
}

inline constexpr char checkpoint_magic[8] = {'M', 'I', 'N', 'N', 'O', 'W', 'C', 'K'};

/// FNV-1a, 64 bit: detects truncation and bit rot cheaply.
struct Fnv1a {
  std::uint64_t state = 0xcbf29ce484222325ull;
  void update(const void* data, std::size_t bytes) noexcept {
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < bytes; ++i) state = (state ^ p[i]) * 0x100000001b3ull;
  }
};

/// Appends to a byte buffer and hashes what it appends.
class Writer {
 public:
  void bytes(const void* data, std::size_t n) {
    hash_.update(data, n);
    const auto* p = static_cast<const std::byte*>(data);
    out_.insert(out_.end(), p, p + n);
  }
  template <class U>
  void value(U v) {
    bytes(&v, sizeof v);
  }
  void text(std::string_view s) {
    value<std::uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  /// The bytes written, followed by their hash.
  [[nodiscard]] std::vector<std::byte> finish() && {
    const std::uint64_t hash = hash_.state;
    const auto* p = reinterpret_cast<const std::byte*>(&hash);
    out_.insert(out_.end(), p, p + sizeof hash);
    return std::move(out_);
  }

 private:
  std::vector<std::byte> out_;
  Fnv1a hash_;
};

/// Reads from an in-memory copy of the file; every read is bounds-checked against its size.
class Reader {
 public:
  Reader(std::vector<std::byte> data, std::string file) : data_(std::move(data)), file_(std::move(file)) {}
  const char* bytes(std::size_t n, const char* what) {
    if (n > data_.size() - pos_) {
      throw format_error(minnow::detail::concat("checkpoint '", file_, "' is truncated: reading ", what, " needs ", n,
                                                " bytes at offset ", pos_, ", the file has ", data_.size()));
    }
    const char* p = reinterpret_cast<const char*>(data_.data()) + pos_;
    pos_ += n;
    return p;
  }
  template <class U>
  U value(const char* what) {
    U v;
    std::memcpy(&v, bytes(sizeof v, what), sizeof v);
    return v;
  }
  std::string text(const char* what, std::uint64_t limit) {
    const auto n = value<std::uint64_t>(what);
    if (n > limit) throw format_error(minnow::detail::concat("checkpoint '", file_, "': ", what, " of ", n, " bytes is implausible"));
    const char* p = bytes(static_cast<std::size_t>(n), what);
    return std::string(p, static_cast<std::size_t>(n));
  }
  [[nodiscard]] std::size_t position() const noexcept { return pos_; }
  [[nodiscard]] std::size_t size() const noexcept { return data_.size(); }
  [[nodiscard]] const std::string& file() const noexcept { return file_; }

 private:
  std::vector<std::byte> data_;
  std::size_t pos_ = 0;
  std::string file_;
};

}  // namespace detail

/// Writes `entries` under `tag` to `path` atomically and durably (io/atomic_file.hpp).
/// @throws shape_error for an entry whose shape does not fit its view; io_error naming the path when the file
/// cannot be written or `path` is not a regular file (nothing is then changed and no temporary file is left).
template <class T>
void save_checkpoint(const std::filesystem::path& path, std::string_view tag, const std::vector<CheckpointEntry<T>>& entries,
                     const std::vector<CheckpointCounter>& counters = {}) {
  detail::check_entries(entries);
  detail::check_counters(counters);
  detail::Writer w;
  w.bytes(detail::checkpoint_magic, sizeof detail::checkpoint_magic);
  w.value<std::uint32_t>(checkpoint_version);
  w.value<std::uint32_t>(sizeof(T));
  w.text(tag);
  w.value<std::uint64_t>(entries.size());
  for (const auto& e : entries) {
    w.value<std::uint32_t>(static_cast<std::uint32_t>(e.name.size()));
    w.bytes(e.name.data(), e.name.size());
    w.value<std::uint32_t>(static_cast<std::uint32_t>(e.shape.size()));
    for (const index_t extent : e.shape) w.value<std::int64_t>(extent);
    w.bytes(e.data.data(), static_cast<std::size_t>(e.data.size()) * sizeof(T));
  }
  w.value<std::uint64_t>(counters.size());
  for (const auto& c : counters) {
    w.value<std::uint32_t>(static_cast<std::uint32_t>(c.name.size()));
    w.bytes(c.name.data(), c.name.size());
    w.value<std::int64_t>(*c.value);
  }
  write_file_atomically(path, std::move(w).finish());
}

/// What load_checkpoint accepts beyond the expected entries.
enum class ExtraEntries {
  refuse,  ///< the file must hold exactly the expected entries
  ignore,  ///< the expected entries must come first; later ones (e.g. optimizer state) are skipped
};

/// Reads `path` into `entries` and `counters`: the tag, the names, their order and shapes must all match,
/// and each counter's value must lie in its range. Nothing is written unless the whole file is valid.
/// @throws io_error naming the path when it is missing, a directory or unreadable; format_error naming the
/// file and the first mismatch.
template <class T>
void load_checkpoint(const std::filesystem::path& path, std::string_view tag, const std::vector<CheckpointEntry<T>>& entries,
                     ExtraEntries extra = ExtraEntries::refuse, const std::vector<CheckpointCounter>& counters = {}) {
  using minnow::detail::concat;
  detail::check_entries(entries);
  detail::check_counters(counters);
  std::vector<std::byte> data = read_file(path, checkpoint_max_bytes, "checkpoint");
  const std::string file = path.string();
  if (data.size() < sizeof detail::checkpoint_magic || std::memcmp(data.data(), detail::checkpoint_magic, 8) != 0) {
    throw format_error(concat("'", file, "' is not a minnow checkpoint (bad magic)"));
  }
  if (data.size() < 8 + sizeof(std::uint64_t)) throw format_error(concat("checkpoint '", file, "' is truncated"));
  std::uint64_t stored_hash;
  std::memcpy(&stored_hash, data.data() + data.size() - sizeof stored_hash, sizeof stored_hash);
  detail::Fnv1a hash;
  hash.update(data.data(), data.size() - sizeof stored_hash);
  if (hash.state != stored_hash) {
    throw format_error(concat("checkpoint '", file, "' is corrupt or truncated (checksum mismatch)"));
  }
  data.erase(data.end() - static_cast<std::ptrdiff_t>(sizeof stored_hash), data.end());  // not resize: GCC 12 warns on it
  detail::Reader r(std::move(data), file);
  (void)r.bytes(8, "magic");
  const auto version = r.value<std::uint32_t>("version");
  if (version != 1 && version != checkpoint_version) {
    throw format_error(concat("checkpoint '", file, "' has version ", version, ", this minnow reads 1 and ", checkpoint_version));
  }
  if (version == 1 && !counters.empty()) {
    throw format_error(concat("checkpoint '", file, "' has version 1, which stores no exact '", counters.front().name,
                              "': its parameters load with train::load_parameters"));
  }
  const auto scalar = r.value<std::uint32_t>("scalar size");
  if (scalar != sizeof(T)) {
    throw format_error(concat("checkpoint '", file, "' stores ", scalar, "-byte scalars, expected ", sizeof(T)));
  }
  const std::string stored_tag = r.text("tag", 1 << 20);
  if (stored_tag != tag) {
    throw format_error(concat("checkpoint '", file, "' was written for '", stored_tag, "', not '", tag, "'"));
  }
  const auto count = r.value<std::uint64_t>("entry count");
  if (count < entries.size() || (count != entries.size() && extra == ExtraEntries::refuse)) {
    throw format_error(concat("checkpoint '", file, "' has ", count, " tensors, expected ", entries.size()));
  }
  auto show = [](const std::vector<index_t>& s) {
    std::string out = "[";
    for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
  };
  std::vector<const char*> sources;
  sources.reserve(entries.size());
  for (std::uint64_t i = 0; i < count; ++i) {
    const auto name_length = r.value<std::uint32_t>("name length");
    const std::string name(r.bytes(name_length, "name"), name_length);
    const auto rank = r.value<std::uint32_t>("rank");
    if (rank > 16) throw format_error(concat("checkpoint '", file, "': tensor '", name, "' has rank ", rank));
    std::vector<index_t> shape(rank);
    for (auto& extent : shape) extent = r.value<std::int64_t>("extent");
    if (i < entries.size()) {
      const auto& e = entries[static_cast<std::size_t>(i)];
      if (name != e.name || shape != e.shape) {
        throw format_error(concat("checkpoint '", file, "': found '", name, "' ", show(shape), " where '", e.name, "' ",
                                  show(e.shape), " was expected"));
      }
      sources.push_back(r.bytes(static_cast<std::size_t>(e.data.size()) * sizeof(T), "tensor data"));
      continue;
    }
    // An extra entry (ExtraEntries::ignore): its size is checked like any other, then skipped.
    std::uint64_t elements = 1;
    for (const index_t extent : shape) {
      if (extent < 0 || (extent != 0 && elements > checkpoint_max_bytes / static_cast<std::uint64_t>(extent))) {
        throw format_error(concat("checkpoint '", file, "': tensor '", name, "' has an invalid shape ", show(shape)));
      }
      elements *= static_cast<std::uint64_t>(extent);
    }
    if (elements > checkpoint_max_bytes / sizeof(T)) {
      throw format_error(concat("checkpoint '", file, "': tensor '", name, "' has an invalid shape ", show(shape)));
    }
    (void)r.bytes(static_cast<std::size_t>(elements * sizeof(T)), "tensor data");
  }
  std::vector<std::int64_t> values;
  if (version >= 2) {
    const auto counter_count = r.value<std::uint64_t>("counter count");
    if (counter_count < counters.size() || (counter_count != counters.size() && extra == ExtraEntries::refuse)) {
      throw format_error(concat("checkpoint '", file, "' has ", counter_count, " counters, expected ", counters.size()));
    }
    for (std::uint64_t i = 0; i < counter_count; ++i) {
      const auto name_length = r.value<std::uint32_t>("counter name length");
      const std::string name(r.bytes(name_length, "counter name"), name_length);
      const auto value = r.value<std::int64_t>("counter value");
      if (i >= counters.size()) continue;
      const auto& c = counters[static_cast<std::size_t>(i)];
      if (name != c.name) {
        throw format_error(concat("checkpoint '", file, "': found counter '", name, "' where '", c.name, "' was expected"));
      }
      if (value < c.min || value > c.max) {
        throw format_error(concat("checkpoint '", file, "': counter '", name, "' is ", value, ", outside [", c.min, ", ", c.max, "]"));
      }
      values.push_back(value);
    }
  }
  if (r.position() != r.size()) {
    throw format_error(concat("checkpoint '", file, "' has ", r.size() - r.position(), " bytes after its last entry"));
  }
  for (std::size_t i = 0; i < entries.size(); ++i) {
    std::memcpy(entries[i].data.data(), sources[i], static_cast<std::size_t>(entries[i].data.size()) * sizeof(T));
  }
  for (std::size_t i = 0; i < counters.size(); ++i) *counters[i].value = values[i];
}

}  // namespace minnow::io
