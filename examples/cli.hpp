#pragma once
// The examples' command lines: each option is registered once against the variable it sets, which gives
// parsing, conversion, errors naming the option, and --help without a hand-written chain per example.
// The check_* functions below test the values once parsed; every example runs them all before it loads
// data or trains, so a bad option costs a second, not a training run.
#include <minnow/error.hpp>
#include <minnow/io/atomic_file.hpp>
#include <minnow/threads.hpp>

#include <cerrno>
#include <cmath>
#include <concepts>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace example {

/// Streams every argument into one string, for messages and row names: concat("teacher ", 2) is "teacher 2".
template <class... Parts>
[[nodiscard]] std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

/// "a,b,c" → {"a", "b", "c"} (empty items dropped).
inline std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

class CommandLine {
 public:
  CommandLine(std::string program, std::string summary) : program_(std::move(program)), summary_(std::move(summary)) {}

  /// `--flag VALUE` converted to T (string, int, long, unsigned long long, double, or a comma list of those).
  template <class T>
  CommandLine& option(std::string flag, T& target, std::string help) {
    options_.push_back({std::move(flag), std::move(help), true, [&target](const std::string& text) { target = convert<T>(text); }});
    return *this;
  }

  /// `--flag VALUE` handled by `set` (which may throw minnow::value_error for a bad value).
  CommandLine& option(std::string flag, std::function<void(const std::string&)> set, std::string help) {
    options_.push_back({std::move(flag), std::move(help), true, std::move(set)});
    return *this;
  }

  /// `--flag` alone sets `target` to `value`.
  CommandLine& flag(std::string flag, bool& target, bool value, std::string help) {
    options_.push_back({std::move(flag), std::move(help), false, [&target, value](const std::string&) { target = value; }});
    return *this;
  }

  /// Parses argv; `--help` prints the usage and exits 0. @throws minnow::value_error naming the option.
  void parse(int argc, char** argv) const {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        print_usage(std::cout);
        std::exit(0);
      }
      const Option* match = nullptr;
      for (const auto& o : options_) {
        if (o.flag == arg) match = &o;
      }
      if (match == nullptr) throw minnow::value_error("unknown option " + arg + " (--help lists them)");
      std::string text;
      if (match->takes_value) {
        if (i + 1 >= argc) throw minnow::value_error("missing value after " + arg);
        text = argv[++i];
      }
      try {
        match->set(text);
      } catch (const minnow::value_error& e) {
        throw minnow::value_error(arg + " " + text + ": " + e.what());
      } catch (const std::invalid_argument&) {  // from std::sto*
        throw minnow::value_error(arg + " " + text + ": not a number");
      } catch (const std::out_of_range&) {
        throw minnow::value_error(arg + " " + text + ": out of range");
      }
    }
  }

  void print_usage(std::ostream& out) const {
    out << "usage: " << program_ << " [options]\n" << summary_ << "\n";
    for (const auto& o : options_) out << "  " << o.flag << (o.takes_value ? " VALUE" : "") << "\n      " << o.help << "\n";
  }

 private:
  struct Option {
    std::string flag, help;
    bool takes_value;
    std::function<void(const std::string&)> set;
  };

  // Numbers must use the whole text ("3x" and "1.5" are not ints); std::stoull would wrap "-1" around.
  template <class T>
  static T convert(const std::string& text) {
    if constexpr (std::is_same_v<T, std::string>) {
      return text;
    } else if constexpr (std::is_arithmetic_v<T>) {
      std::size_t used = 0;
      T value{};
      if constexpr (std::is_same_v<T, int>) {
        value = std::stoi(text, &used);
      } else if constexpr (std::is_same_v<T, long>) {
        value = std::stol(text, &used);
      } else if constexpr (std::is_same_v<T, unsigned long long>) {
        if (text.find('-') != std::string::npos) throw minnow::value_error("must be >= 0");
        value = std::stoull(text, &used);
      } else {
        static_assert(std::is_same_v<T, double>, "options are string, int, long, unsigned long long or double");
        value = std::stod(text, &used);
      }
      if (used != text.size()) throw std::invalid_argument(text);
      return value;
    } else {  // a comma-separated list
      T out;
      for (const auto& item : split_list(text)) out.push_back(convert<typename T::value_type>(item));
      if (out.empty()) throw minnow::value_error("expected a comma-separated list");
      return out;
    }
  }

  std::string program_, summary_;
  std::vector<Option> options_;
};

// ---- checks of parsed values; each message starts with the option's name

/// Throws minnow::value_error "OPTION must be REQUIREMENT, got VALUE" unless `ok`.
template <class T>
void require(bool ok, std::string_view option, std::string_view requirement, const T& value) {
  if (!ok) throw minnow::value_error(concat(option, " must be ", requirement, ", got ", value));
}

/// An integer option of at least `low`.
template <std::integral T>
void check_at_least(std::string_view option, T value, std::type_identity_t<T> low) {
  require(value >= low, option, concat(">= ", low), value);
}

/// An integer option in low..high.
template <std::integral T>
void check_between(std::string_view option, T value, std::type_identity_t<T> low, std::type_identity_t<T> high) {
  require(value >= low && value <= high, option, concat("in ", low, "..", high), value);
}

/// A thread count set_threads accepts.
inline void check_threads(std::string_view option, int threads) { check_between(option, threads, 1, minnow::max_thread_count); }

/// A learning rate or weight decay: finite and >= 0, as the optimizers require.
inline void check_rate(std::string_view option, double value) { require(value >= 0.0 && std::isfinite(value), option, "finite and >= 0", value); }

/// The weight alpha of a distillation loss against cross-entropy: in [0, 1].
inline void check_alpha(std::string_view option, double value) { require(value >= 0.0 && value <= 1.0, option, "in [0, 1]", value); }

/// A pruning target in [0, 1): pruning every weight leaves no network.
inline void check_sparsity(std::string_view option, double value) { require(value >= 0.0 && value < 1.0, option, "in [0, 1)", value); }

/// A limit on the training images: -1 (all) or at least one.
inline void check_train_limit(std::string_view option, long limit) { require(limit == -1 || limit >= 1, option, "-1 (all) or >= 1", limit); }

/// Runs `check()`; the value_error or io_error it throws is thrown again with "OPTION: " in front.
template <class Check>
void check_option(std::string_view option, Check&& check) {
  try {
    std::forward<Check>(check)();
  } catch (const minnow::io_error& e) {
    throw minnow::io_error(concat(option, ": ", e.what()));
  } catch (const minnow::value_error& e) {
    throw minnow::value_error(concat(option, ": ", e.what()));
  }
}

/// A file the run reads: it must be a regular file this process can open for reading. Nothing is read.
inline void check_input_file(std::string_view option, const std::filesystem::path& path) {
  const auto fail = [&](const std::string& reason) {
    return minnow::io_error(concat(option, ": cannot read '", path.string(), "': ", reason));
  };
  // O_NONBLOCK: opening a FIFO must not wait for a writer.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw fail(std::generic_category().message(errno));
  struct stat info {};
  const bool known = ::fstat(fd, &info) == 0;
  ::close(fd);
  if (!known || !S_ISREG(info.st_mode)) throw fail(known && S_ISDIR(info.st_mode) ? "it is a directory" : "it is not a regular file");
}

/// A directory the run reads: it must exist.
inline void check_input_dir(std::string_view option, const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    throw minnow::io_error(concat(option, ": '", dir.string(), "' is not an existing directory"));
  }
}

/// A file the run writes at the end (see minnow::io::check_writable_file); nothing is created.
inline void check_output_file(std::string_view option, const std::filesystem::path& path) {
  check_option(option, [&] { minnow::io::check_writable_file(path); });
}

/// A directory the run writes into: created when missing (see minnow::io::prepare_output_directory).
inline void check_output_dir(std::string_view option, const std::filesystem::path& dir) {
  check_option(option, [&] { minnow::io::prepare_output_directory(dir); });
}

}  // namespace example
