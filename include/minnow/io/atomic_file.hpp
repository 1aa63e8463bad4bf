#pragma once
/// @file io/atomic_file.hpp
/// @brief Whole-file reads with a size limit, and writes that replace a file atomically (POSIX).
///
/// A write goes to a fresh temporary file in the target's directory, is fsynced, renamed over the target
/// and the directory is fsynced: readers see the old file or the new one, never a mix, even after a crash.
/// A process killed mid-write leaves its temporary file; the next write to the same path removes it.

#include <minnow/error.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

namespace minnow::io {

namespace detail {

[[nodiscard]] inline std::string errno_text(int error) { return std::generic_category().message(error); }

/// What a non-regular file is, for messages.
[[nodiscard]] inline const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

/// The file a write to `path` must replace: symlinks are followed (a dangling link gives its target's
/// path), so the link stays a link and its target gets the new content.
[[nodiscard]] inline std::filesystem::path resolve_write_target(const std::filesystem::path& path) {
  std::filesystem::path target = path;
  for (int hops = 0;; ++hops) {
    std::error_code ec;
    const auto status = std::filesystem::symlink_status(target, ec);
    if (ec || !std::filesystem::is_symlink(status)) return target;
    if (hops == 40) {  // the kernel's own limit (ELOOP)
      throw io_error(minnow::detail::concat("cannot write '", path.string(), "': too many levels of symbolic links"));
    }
    const auto next = std::filesystem::read_symlink(target, ec);
    if (ec) throw io_error(minnow::detail::concat("cannot write '", path.string(), "': reading link '", target.string(), "': ", ec.message()));
    target = next.is_absolute() ? next : target.parent_path() / next;
  }
}

/// Removes the temporary files of writes to `target` whose process no longer exists (killed mid-write):
/// `<name>.tmp.<pid>.<n>` with no process `pid`. Each save cleans up after earlier crashes, so they never pile up.
inline void remove_stale_temporaries(const std::filesystem::path& target) {
  const std::filesystem::path directory = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  const std::string prefix = target.filename().string() + ".tmp.";
  std::error_code ec;
  for (std::filesystem::directory_iterator it(directory, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string rest = name.substr(prefix.size());
    const std::size_t dot = rest.find('.');
    if (dot == 0 || dot == std::string::npos || rest.find_first_not_of("0123456789.") != std::string::npos || dot > 9) continue;
    const auto pid = static_cast<pid_t>(std::stol(rest.substr(0, dot)));
    if (pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH) ::unlink(it->path().c_str());
  }
}

/// Owns a temporary file until commit(): on destruction it closes and removes it.
class TemporaryFile {
 public:
  explicit TemporaryFile(const std::filesystem::path& target) {
    static std::atomic<std::uint64_t> counter{0};
    const std::filesystem::path directory = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
    for (int attempt = 0; attempt < 100; ++attempt) {
      path_ = directory / minnow::detail::concat(target.filename().string(), ".tmp.", ::getpid(), ".", counter.fetch_add(1));
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);  // the umask applies
      if (fd_ >= 0 || errno != EEXIST) break;
    }
    if (fd_ < 0) {
      const int error = errno;
      throw io_error(minnow::detail::concat("cannot write '", target.string(), "': creating '", path_.string(), "': ", errno_text(error)));
    }
  }
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;
  ~TemporaryFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }

  [[nodiscard]] int fd() const noexcept { return fd_; }
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  /// Closes the descriptor; returns errno or 0 (close can report a deferred write error).
  [[nodiscard]] int close() noexcept {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc == 0 ? 0 : errno;
  }
  void commit() noexcept { committed_ = true; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace detail

/// @brief Replaces the content of `path` with `bytes`, atomically and durably.
///
/// Symlinks are followed (the link stays, its target is replaced). The new file has mode 0644 minus the
/// umask; the old file's mode and owner are not kept. Linux/POSIX only.
/// @throws io_error naming the path (and the system's reason) when `path` exists but is not a regular
/// file, or when any step fails; the temporary file is then removed and the target is left as it was.
inline void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  const std::filesystem::path target = detail::resolve_write_target(path);
  auto fail = [&](const char* step, int error) {
    return io_error(minnow::detail::concat("cannot write '", path.string(), "': ", step, ": ", detail::errno_text(error)));
  };
  struct stat existing {};
  if (::stat(target.c_str(), &existing) == 0) {
    if (!S_ISREG(existing.st_mode)) {
      throw io_error(minnow::detail::concat("cannot write '", path.string(), "': it is ", detail::file_kind(existing.st_mode)));
    }
  } else if (errno != ENOENT) {
    throw fail("stat", errno);
  }

  detail::remove_stale_temporaries(target);
  detail::TemporaryFile temporary(target);
  const std::byte* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(temporary.fd(), p, std::min<std::size_t>(left, std::size_t{1} << 30));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw fail("write", errno);
    }
    if (n == 0) throw fail("write", EIO);  // no progress and no error: give up rather than spin
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  if (::fsync(temporary.fd()) != 0) throw fail("fsync", errno);
  if (const int error = temporary.close(); error != 0) throw fail("close", error);
  if (::rename(temporary.path().c_str(), target.c_str()) != 0) throw fail("rename", errno);
  temporary.commit();

  // The rename is durable only once the directory entry is on disk.
  const std::filesystem::path directory = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  const int dir_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) throw fail("opening its directory", errno);
  const int rc = ::fsync(dir_fd);
  const int error = errno;
  ::close(dir_fd);
  if (rc != 0 && error != EINVAL) throw fail("fsync of its directory", error);  // EINVAL: the fs cannot sync directories
}

/// @brief Checks, before long work, that write_file_atomically(path, ...) can succeed: the target (after
/// symlinks) is missing or a regular file, and its directory exists and takes new files. Nothing is created.
/// @throws io_error naming the path and what is wrong.
inline void check_writable_file(const std::filesystem::path& path) {
  const std::filesystem::path target = detail::resolve_write_target(path);
  struct stat existing {};
  if (::stat(target.c_str(), &existing) == 0 && !S_ISREG(existing.st_mode)) {
    throw io_error(minnow::detail::concat("cannot write '", path.string(), "': it is ", detail::file_kind(existing.st_mode)));
  }
  const std::filesystem::path directory = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  struct stat dir {};
  if (::stat(directory.c_str(), &dir) != 0) {
    throw io_error(minnow::detail::concat("cannot write '", path.string(), "': its directory '", directory.string(), "': ",
                                          detail::errno_text(errno)));
  }
  if (!S_ISDIR(dir.st_mode)) {
    throw io_error(minnow::detail::concat("cannot write '", path.string(), "': '", directory.string(), "' is not a directory"));
  }
  if (::access(directory.c_str(), W_OK | X_OK) != 0) {  // also refuses a read-only file system
    throw io_error(minnow::detail::concat("cannot write '", path.string(), "': its directory '", directory.string(),
                                          "' is not writable (", detail::errno_text(errno), ")"));
  }
}

/// @brief Makes `dir` (and its parents) if missing and checks that it takes new files: called before long
/// work whose results go there.
/// @throws io_error naming `dir` when it is not a directory, cannot be created or is not writable.
inline void prepare_output_directory(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir)) {
    throw io_error(minnow::detail::concat("cannot use '", dir.string(), "' as an output directory: ",
                                          ec ? ec.message() : "a file that is not a directory is in the way"));
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    throw io_error(minnow::detail::concat("cannot use '", dir.string(), "' as an output directory: it is not writable (",
                                          detail::errno_text(errno), ")"));
  }
}

/// @brief Reads a whole regular file.
/// @param max_bytes larger files are refused before anything is allocated.
/// @param what what the file is, for messages ("safetensors file").
/// @throws io_error naming the path for a missing or unreadable file, a directory or another non-regular
/// file; format_error when the file is larger than `max_bytes`.
[[nodiscard]] inline std::vector<std::byte> read_file(const std::filesystem::path& path, std::uint64_t max_bytes, const char* what) {
  auto fail = [&](const std::string& reason) {
    return io_error(minnow::detail::concat("cannot read ", what, " '", path.string(), "': ", reason));
  };
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw fail(detail::errno_text(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat info {};
  if (::fstat(fd, &info) != 0) throw fail(detail::errno_text(errno));
  if (!S_ISREG(info.st_mode)) throw fail(minnow::detail::concat("it is ", detail::file_kind(info.st_mode)));
  const auto size = static_cast<std::uint64_t>(info.st_size);
  if (size > max_bytes) {
    throw format_error(minnow::detail::concat(what, " '", path.string(), "' has ", size, " bytes, more than the limit of ", max_bytes));
  }
  std::vector<std::byte> bytes(static_cast<std::size_t>(size));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, std::min<std::size_t>(bytes.size() - done, std::size_t{1} << 30));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw fail(detail::errno_text(errno));
    }
    if (n == 0) throw fail(minnow::detail::concat("it shrank while being read (", done, " of ", size, " bytes)"));
    done += static_cast<std::size_t>(n);
  }
  return bytes;
}

}  // namespace minnow::io
