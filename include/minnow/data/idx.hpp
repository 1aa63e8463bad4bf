#pragma once
/// @file idx.hpp
/// @brief Reader for IDX files (the MNIST / Fashion-MNIST format), raw or gzip-compressed.
///
/// An IDX file is a 4-byte big-endian magic `0x0000TTDD` (TT = element type, 0x08 for unsigned
/// bytes; DD = number of dimensions), one big-endian uint32 per dimension, then the elements in
/// row-major order. Gzip is recognised by the first two bytes (0x1f 0x8b), whatever the file is
/// called; reading it needs zlib, which minnow uses when `MINNOW_HAS_ZLIB` is defined (the CMake
/// target defines it when zlib is found).

#include <minnow/error.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <ios>
#include <iomanip>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#ifdef MINNOW_HAS_ZLIB
#include <zlib.h>
#endif

namespace minnow::data {

/// @brief IDX type code of unsigned bytes, the only element type the MNIST-family files use.
inline constexpr std::uint8_t idx_ubyte = 0x08;

/// @brief Magic number of a 1-D unsigned-byte IDX file (labels).
inline constexpr std::uint32_t idx_labels_magic = 0x00000801;

/// @brief Magic number of a 3-D unsigned-byte IDX file (images: count, rows, columns).
inline constexpr std::uint32_t idx_images_magic = 0x00000803;

namespace detail {

using minnow::detail::concat;

/// "0x00000803": magic numbers are shown the way the format documents them.
[[nodiscard]] inline std::string hex32(std::uint32_t value) {
  std::ostringstream out;
  out << "0x" << std::hex << std::setw(8) << std::setfill('0') << value;
  return out.str();
}

/// Describes a magic number in words, so a message says *why* it is wrong (type or rank).
[[nodiscard]] inline std::string describe_magic(std::uint32_t magic) {
  if ((magic >> 16) != 0) return "not an IDX header";
  const unsigned type = (magic >> 8) & 0xffu;
  const unsigned dims = magic & 0xffu;
  std::string type_name;
  switch (type) {
    case 0x08: type_name = "unsigned bytes"; break;
    case 0x09: type_name = "signed bytes"; break;
    case 0x0B: type_name = "int16"; break;
    case 0x0C: type_name = "int32"; break;
    case 0x0D: type_name = "float32"; break;
    case 0x0E: type_name = "float64"; break;
    default: type_name = concat("unknown type code 0x", hex32(type).substr(8)); break;
  }
  return concat(type_name, ", ", dims, dims == 1 ? " dimension" : " dimensions");
}

[[nodiscard]] inline std::uint32_t load_be32(const unsigned char* bytes) noexcept {
  return (std::uint32_t{bytes[0]} << 24) | (std::uint32_t{bytes[1]} << 16) | (std::uint32_t{bytes[2]} << 8) |
         std::uint32_t{bytes[3]};
}

/// A file opened for sequential reading, raw or through zlib. Reads return the number of bytes
/// obtained, fewer only at the end of the (decompressed) content.
class IdxSource {
 public:
  IdxSource(const std::filesystem::path& path, const char* caller) : path_(path), caller_(caller) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (status.type() == std::filesystem::file_type::not_found) {
      throw io_error(concat(caller, ": cannot open '", path.string(), "': no such file"));
    }
    if (ec) {  // e.g. a parent directory without search permission
      throw io_error(concat(caller, ": cannot open '", path.string(), "': ", ec.message()));
    }
    if (std::filesystem::is_directory(status)) {
      throw io_error(concat(caller, ": cannot open '", path.string(), "': it is a directory, not an IDX file"));
    }
    if (!std::filesystem::is_regular_file(status)) {  // a FIFO would block the open until a writer came
      throw io_error(concat(caller, ": cannot open '", path.string(), "': it is not a regular file (",
                            std::filesystem::is_fifo(status) ? "a FIFO" : "a device, socket or other special file", ")"));
    }
    errno = 0;
    raw_.open(path, std::ios::binary);
    if (!raw_.is_open()) {
      const int err = errno;
      throw io_error(concat(caller, ": cannot open '", path.string(), "' for reading",
                            err != 0 ? concat(": ", std::generic_category().message(err)) : std::string()));
    }
    // Gzip or not is decided by content: a downloaded file may have lost (or gained) its ".gz".
    unsigned char signature[2] = {0, 0};
    raw_.read(reinterpret_cast<char*>(signature), 2);
    const bool gzip = raw_.gcount() == 2 && signature[0] == 0x1f && signature[1] == 0x8b;
    raw_.clear();
    raw_.seekg(0);
    if (!gzip) {
      std::error_code size_ec;
      const auto size = std::filesystem::file_size(path, size_ec);
      if (!size_ec) raw_size_ = static_cast<std::uint64_t>(size);
      return;
    }
    raw_.close();
#ifdef MINNOW_HAS_ZLIB
    gz_.reset(gzopen(path.string().c_str(), "rb"));
    if (!gz_) throw io_error(concat(caller, ": cannot open gzip file '", path.string(), "' for reading"));
    gzbuffer(gz_.get(), 1u << 17);  // larger than zlib's 8 KiB default: fewer system calls on 26 MB files
#else
    throw io_error(concat(caller, ": '", path.string(),
                          "' is gzip-compressed but zlib support is off (minnow was built without "
                          "MINNOW_HAS_ZLIB); decompress it with gunzip or build with zlib"));
#endif
  }

  [[nodiscard]] bool compressed() const noexcept {
#ifdef MINNOW_HAS_ZLIB
    return gz_ != nullptr;
#else
    return false;
#endif
  }

  /// Total size of a raw file in bytes; unknown (max) for gzip until everything has been read.
  [[nodiscard]] std::uint64_t known_size() const noexcept { return raw_size_; }

  /// Reads up to `count` bytes; fewer means the content ended. Throws format_error on corrupt gzip data.
  std::uint64_t read(unsigned char* out, std::uint64_t count) {
    std::uint64_t done = 0;
#ifdef MINNOW_HAS_ZLIB
    if (gz_) {
      while (done < count) {
        // gzread takes an unsigned and returns an int: read in chunks well below INT_MAX.
        const auto chunk = static_cast<unsigned>(std::min<std::uint64_t>(count - done, 1u << 26));
        const int got = gzread(gz_.get(), out + done, chunk);
        if (got < 0) throw corrupt_gzip();
        if (got == 0) break;
        done += static_cast<std::uint64_t>(got);
      }
      // zlib reports a stream cut short (Z_BUF_ERROR) only through gzerror, not through gzread.
      if (done < count) {
        int errnum = Z_OK;
        gzerror(gz_.get(), &errnum);
        if (errnum == Z_BUF_ERROR) {
          cut_ = true;
        } else if (errnum != Z_OK) {
          throw corrupt_gzip();
        }
      }
      return done;
    }
#endif
    while (done < count) {
      const auto chunk =
          static_cast<std::streamsize>(std::min<std::uint64_t>(count - done, std::uint64_t{1} << 30));
      raw_.read(reinterpret_cast<char*>(out + done), chunk);
      const auto got = raw_.gcount();
      done += static_cast<std::uint64_t>(got);
      if (got < chunk) {
        if (raw_.bad()) throw io_error(concat(caller_, ": error while reading '", path_.string(), "'"));
        break;
      }
    }
    return done;
  }

  /// True once a gzip stream has ended without its end marker and checksum (a cut-off download).
  [[nodiscard]] bool cut() const noexcept { return cut_; }

  /// "the file has N" or "the decompressed file has N": byte counts in messages refer to decoded content.
  [[nodiscard]] std::string what_has(std::uint64_t bytes) const {
    return concat(compressed() ? "the decompressed file has " : "the file has ", bytes,
                  cut_ ? " (the gzip stream itself is cut off: zlib reports an unexpected end of file)" : "");
  }

 private:
#ifdef MINNOW_HAS_ZLIB
  struct GzClose {
    void operator()(gzFile file) const noexcept { gzclose(file); }
  };

  [[nodiscard]] format_error corrupt_gzip() const {
    int errnum = Z_OK;
    const char* message = gzerror(gz_.get(), &errnum);
    return format_error(
        concat(caller_, ": '", path_.string(), "' is not a valid gzip stream: ", message ? message : "unknown error"));
  }

  std::unique_ptr<gzFile_s, GzClose> gz_;
#endif
  std::filesystem::path path_;
  const char* caller_;
  std::ifstream raw_;
  std::uint64_t raw_size_ = std::numeric_limits<std::uint64_t>::max();
  bool cut_ = false;
};

/// Reads a whole unsigned-byte IDX file of rank `Rank` into a tensor with the file's dims.
/// The tensor is returned only once every byte has been read and the size checked exactly.
template <std::size_t Rank>
[[nodiscard]] Tensor<std::uint8_t, Rank> read_idx_ubyte(const std::filesystem::path& path, const char* caller) {
  static_assert(Rank >= 1 && Rank <= 255, "IDX files have 1 to 255 dimensions");
  const std::uint32_t expected_magic = (std::uint32_t{idx_ubyte} << 8) | static_cast<std::uint32_t>(Rank);
  constexpr std::uint64_t header_bytes = 4 + 4 * Rank;

  IdxSource source(path, caller);
  std::array<unsigned char, header_bytes> header{};
  const std::uint64_t header_got = source.read(header.data(), 4);
  if (header_got < 4) {
    throw format_error(concat(caller, ": '", path.string(), "' is truncated: an IDX header needs at least 4 bytes, ",
                              source.what_has(header_got)));
  }
  const std::uint32_t magic = load_be32(header.data());
  if (magic != expected_magic) {
    throw format_error(concat(caller, ": '", path.string(), "' has the wrong IDX magic number: expected ",
                              hex32(expected_magic), " (", describe_magic(expected_magic), "), found ", hex32(magic),
                              " (", describe_magic(magic), ")"));
  }
  const std::uint64_t dims_got = source.read(header.data() + 4, header_bytes - 4);
  if (dims_got < header_bytes - 4) {
    throw format_error(concat(caller, ": '", path.string(), "' is truncated: its header needs ", header_bytes,
                              " bytes, ", source.what_has(4 + dims_got)));
  }

  Shape<Rank> shape{};
  for (std::size_t d = 0; d < Rank; ++d) shape[d] = static_cast<index_t>(load_be32(header.data() + 4 + 4 * d));
  // The tensor's own rule (the product of the non-zero extents must fit), checked here so that a header
  // such as [0, 2^32 - 1, 2^32 - 1] is a format error of the file, not a shape error of the tensor.
  std::uint64_t data_bytes = 0;
  try {
    data_bytes = static_cast<std::uint64_t>(minnow::detail::checked_product(shape, caller));
  } catch (const shape_error&) {
    throw format_error(concat(caller, ": '", path.string(), "' declares dims ", to_string(shape),
                              ", more elements than fit in memory"));
  }
  const std::uint64_t total_bytes = header_bytes + data_bytes;
  auto truncated = [&](std::uint64_t actual) {
    return format_error(concat(caller, ": '", path.string(), "' is truncated: dims ", to_string(shape), " need ",
                               total_bytes, " bytes (", header_bytes, " header + ", data_bytes, " data), ",
                               source.what_has(actual)));
  };
  auto trailing = [&](std::uint64_t actual) {
    return format_error(concat(caller, ": '", path.string(), "' has trailing bytes: dims ", to_string(shape),
                               " need ", total_bytes, " bytes, ", source.what_has(actual)));
  };

  if (const std::uint64_t size = source.known_size(); size != std::numeric_limits<std::uint64_t>::max()) {
    // A raw file's size is known: check it before allocating, so a corrupt header cannot ask for gigabytes.
    if (size < total_bytes) throw truncated(size);
    if (size > total_bytes) throw trailing(size);
    Tensor<std::uint8_t, Rank> out(shape);
    const std::uint64_t got = source.read(out.data(), data_bytes);
    if (got < data_bytes) throw truncated(header_bytes + got);  // the file shrank while we read it
    return out;
  }

  // Gzip: the decompressed size is unknown until the end, so the buffer grows with what arrives
  // (a corrupt header then fails as "truncated" instead of allocating what it claims).
  std::vector<unsigned char> buffer;
  std::vector<unsigned char> chunk(std::size_t{1} << 16);
  while (buffer.size() < data_bytes) {
    const std::uint64_t want = std::min<std::uint64_t>(chunk.size(), data_bytes - buffer.size());
    const std::uint64_t got = source.read(chunk.data(), want);
    buffer.insert(buffer.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(got));
    if (got < want) throw truncated(header_bytes + buffer.size());
  }
  std::array<unsigned char, 4096> extra{};
  std::uint64_t extra_bytes = 0;
  for (std::uint64_t got = 0; (got = source.read(extra.data(), extra.size())) != 0;) extra_bytes += got;
  if (extra_bytes != 0) throw trailing(total_bytes + extra_bytes);
  if (source.cut()) {
    // All data arrived, but the checksum that would vouch for it did not.
    throw format_error(concat(caller, ": '", path.string(), "' is truncated: its gzip stream ends after the ",
                              total_bytes, " bytes dims ", to_string(shape),
                              " need but before the gzip checksum, so the data cannot be trusted"));
  }

  Tensor<std::uint8_t, Rank> out(shape);
  std::copy(buffer.begin(), buffer.end(), out.data());
  return out;
}

}  // namespace detail

/// @brief Reads an IDX image file (magic 0x00000803): unsigned bytes shaped [count, rows, cols].
/// @param path a raw or gzip-compressed file (gzip is detected from the content, not the name).
/// @throws io_error     when the file is missing or cannot be read (the message names the path).
/// @throws format_error on a wrong magic number (expected and found, in hex), a truncated header or
///                      data (expected and actual byte counts), trailing bytes, or corrupt gzip data.
[[nodiscard]] inline Tensor<std::uint8_t, 3> read_idx_images(const std::filesystem::path& path) {
  return detail::read_idx_ubyte<3>(path, "read_idx_images");
}

/// @brief Reads an IDX label file (magic 0x00000801): one unsigned byte per sample, widened to int32.
/// @throws io_error, format_error as read_idx_images().
[[nodiscard]] inline Tensor<std::int32_t, 1> read_idx_labels(const std::filesystem::path& path) {
  const Tensor<std::uint8_t, 1> bytes = detail::read_idx_ubyte<1>(path, "read_idx_labels");
  Tensor<std::int32_t, 1> labels(bytes.shape());
  std::copy_n(bytes.data(), bytes.size(), labels.data());
  return labels;
}

}  // namespace minnow::data
