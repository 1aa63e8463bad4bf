#pragma once
// The examples' command lines: each option is registered once against the variable it sets, which gives
// parsing, conversion, errors naming the option, and --help without a hand-written chain per example.
#include <minnow/error.hpp>

#include <cstdlib>
#include <functional>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace example {

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

  template <class T>
  static T convert(const std::string& text) {
    if constexpr (std::is_same_v<T, std::string>) {
      return text;
    } else if constexpr (std::is_same_v<T, int>) {
      return std::stoi(text);
    } else if constexpr (std::is_same_v<T, long>) {
      return std::stol(text);
    } else if constexpr (std::is_same_v<T, unsigned long long>) {
      return std::stoull(text);
    } else if constexpr (std::is_same_v<T, double>) {
      return std::stod(text);
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

}  // namespace example
