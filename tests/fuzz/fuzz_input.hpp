#pragma once
// What every fuzz target shares: the fuzz input as a file (the readers take paths), and checksums
// recomputed so that mutations reach the parsers behind them.

#include <minnow/error.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <sys/mman.h>
#include <unistd.h>

namespace minnow::fuzz {

/// An anonymous in-memory file (memfd) holding the given bytes, reachable by a path while it lives.
class MemoryFile {
 public:
  MemoryFile(const void* data, std::size_t size) : fd_(::memfd_create("minnow-fuzz", MFD_CLOEXEC)) {
    if (fd_ < 0) std::abort();
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t done = 0; done < size;) {
      const ssize_t n = ::write(fd_, p + done, size - done);
      if (n <= 0) std::abort();
      done += static_cast<std::size_t>(n);
    }
  }
  MemoryFile(const MemoryFile&) = delete;
  MemoryFile& operator=(const MemoryFile&) = delete;
  ~MemoryFile() { ::close(fd_); }

  [[nodiscard]] std::filesystem::path path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_;
};

/// Runs `read()`: it may succeed or throw a format_error whose message names `path`; anything else crashes.
template <class Read>
void expect_format_error_naming(const std::string& path, Read&& read) {
  try {
    read();
  } catch (const minnow::format_error& e) {
    if (std::string(e.what()).find(path) == std::string::npos) std::abort();
  }
}

}  // namespace minnow::fuzz
