#pragma once
/// @file train/progress.hpp
/// @brief Progress on stderr: a redrawn bar on a terminal, a few plain lines otherwise (logs, CI).

#include <chrono>
#include <cstdio>
#include <string>
#include <utility>

#include <unistd.h>

namespace minnow::train {

/// @brief Reports `done / total` steps of a named task. Silent when disabled.
class Progress {
 public:
  Progress(std::string label, long total, bool enabled)
      : label_(std::move(label)), total_(total), enabled_(enabled && total > 0), terminal_(isatty(STDERR_FILENO) != 0),
        start_(std::chrono::steady_clock::now()) {}

  /// Call after each step; `loss` is the running mean to show.
  void update(long done, double loss) {
    if (!enabled_) return;
    if (terminal_) {
      if (done != total_ && done % 10 != 0) return;  // redraw at most every 10 steps
      const int width = 30;
      const int filled = static_cast<int>(width * done / total_);
      std::fprintf(stderr, "\r%s [%s%s] %ld/%ld loss %.4f %.0f img/s ", label_.c_str(), std::string(static_cast<std::size_t>(filled), '#').c_str(),
                   std::string(static_cast<std::size_t>(width - filled), '.').c_str(), done, total_, loss, rate(done));
      if (done == total_) std::fputc('\n', stderr);
    } else if (done * 4 / total_ != (done - 1) * 4 / total_) {  // at 25 %, 50 %, 75 %, 100 %
      std::fprintf(stderr, "%s %ld/%ld loss %.4f\n", label_.c_str(), done, total_, loss);
    }
    std::fflush(stderr);
  }

  /// Samples per second so far, given the number of steps done and `samples_per_step` set by the caller.
  void set_samples_per_step(double samples) noexcept { samples_per_step_ = samples; }

 private:
  [[nodiscard]] double rate(long done) const {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    return seconds > 0 ? static_cast<double>(done) * samples_per_step_ / seconds : 0.0;
  }

  std::string label_;
  long total_;
  bool enabled_, terminal_;
  double samples_per_step_ = 0.0;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace minnow::train
