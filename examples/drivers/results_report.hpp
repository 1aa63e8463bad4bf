#pragma once
// The compression example's outputs: one JSON file with every stage's numbers (for scripts and the README
// table) and one self-contained SVG scatter plot of accuracy against size (for a quick look, no plotting
// dependency). Both take the same list of stages, in the order the pipeline produced them.
#include <minnow/error.hpp>
#include <minnow/io/atomic_file.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <vector>

namespace example {

/// One row of the report. Optional fields are absent where they do not apply (they become JSON null).
struct StageResult {
  std::string name;  ///< e.g. "teacher 1", "ensemble of 5 (mean of probabilities)", "student fp32", "compressed file"
  double accuracy = 0;  ///< test accuracy in percent
  /// None for rows with no file of their own; for the ensemble the caller passes the sum of its members.
  std::optional<std::uint64_t> bytes_on_disk;
  std::optional<std::int64_t> parameters, nonzeros;
  std::optional<double> bits_per_weight, ratio_vs_teacher, ratio_vs_student_fp32, latency_batch1_us, throughput_batch256;
};

// The pieces the two writers below are made of.
namespace report_parts {

/// Replaces `path` with `text` atomically (io/atomic_file.hpp), as every output of the examples.
inline void write_text(const std::filesystem::path& path, const std::string& text) {
  minnow::io::write_file_atomically(path, std::as_bytes(std::span(text.data(), text.size())));
}

template <class T>
nlohmann::ordered_json or_null(const std::optional<T>& value) {
  return value ? nlohmann::ordered_json(*value) : nlohmann::ordered_json(nullptr);
}

/// Names come from the command line and file names: escape them so the SVG stays well-formed.
inline std::string xml_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:  // control characters other than tab/newline are not allowed in XML 1.0
        out += (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') ? '?' : c;
    }
  }
  return out;
}

/// Printf into a std::string (numbers in SVG attributes must not depend on the locale's decimal point,
/// and snprintf with "%.*f" under the default "C" locale gives a dot).
template <class... Args>
std::string printf_string(const char* pattern, Args... args) {
  std::array<char, 64> buffer{};
  const int n = std::snprintf(buffer.data(), buffer.size(), pattern, args...);
  return n < 0 ? std::string() : std::string(buffer.data(), std::min<std::size_t>(static_cast<std::size_t>(n), buffer.size() - 1));
}

/// Rough rendered width of `text` in px: there is no font metrics here, so count code points and assume
/// a generous average advance; over-estimating only moves labels a little further apart.
inline double text_width(const std::string& text, double font_size) {
  std::size_t code_points = 0;
  for (const char c : text) code_points += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return static_cast<double>(code_points) * font_size * 0.6;
}

/// m·10^decade bytes as "1 B", "20 kB", "100 MB", ...: decimal units, as file sizes are usually quoted.
inline std::string bytes_label(int decade, int m = 1) {
  static constexpr std::array<const char*, 6> units{"B", "kB", "MB", "GB", "TB", "PB"};
  const int unit = std::clamp(decade / 3, 0, static_cast<int>(units.size()) - 1);
  const int mantissa_exp = decade - 3 * unit;
  return printf_string("%.0f %s", m * std::pow(10.0, mantissa_exp), units[static_cast<std::size_t>(unit)]);
}

enum class Kind { teacher, ensemble, baseline, student, compressed };

/// The kind decides the marker colour; it is read off the name so the caller need not say it twice.
inline Kind kind_of(const std::string& name) {
  const auto starts = [&](const char* prefix) { return name.rfind(prefix, 0) == 0; };
  if (starts("teacher")) return Kind::teacher;
  if (starts("ensemble")) return Kind::ensemble;
  if (starts("compressed")) return Kind::compressed;
  if (name.find("labels only") != std::string::npos) return Kind::baseline;  // a comparison, off the compression path
  return Kind::student;
}

inline const char* colour_of(Kind kind) {
  switch (kind) {
    case Kind::teacher: return "#1f77b4";
    case Kind::ensemble: return "#9467bd";
    case Kind::compressed: return "#d62728";
    case Kind::baseline: return "#7f7f7f";
    case Kind::student: break;
  }
  return "#2ca02c";
}

/// A 1-2-2.5-5 step giving about `target` intervals over [lo, hi].
inline double nice_step(double lo, double hi, int target) {
  const double raw = (hi - lo) / target;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  for (const double m : {1.0, 2.0, 2.5, 5.0}) {
    if (m * magnitude >= raw) return m * magnitude;
  }
  return 10.0 * magnitude;
}

/// Decimals needed to print multiples of `step` exactly (2.5 → 1, 0.2 → 1, 0.25 → 2).
inline int decimals_for(double step) {
  for (int d = 0; d < 6; ++d) {
    const double scaled = step * std::pow(10.0, d);
    if (std::abs(scaled - std::round(scaled)) < 1e-6 * scaled) return d;
  }
  return 6;
}

struct Box {
  double x0, y0, x1, y1;
  [[nodiscard]] bool overlaps(const Box& o) const { return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1; }
};

}  // namespace report_parts

/// Writes every stage as JSON: {"stages": [...], "command": ..., "seconds": ...}; absent values are null.
/// @throws minnow::io_error naming `path` when it cannot be written.
inline void write_results_json(const std::filesystem::path& path, const std::vector<StageResult>& stages, const std::string& command,
                               double seconds) {
  using report_parts::or_null;
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (const auto& s : stages) {
    nlohmann::ordered_json row = nlohmann::ordered_json::object();
    row["name"] = s.name;
    row["accuracy"] = s.accuracy;
    row["bytes_on_disk"] = or_null(s.bytes_on_disk);
    row["parameters"] = or_null(s.parameters);
    row["nonzeros"] = or_null(s.nonzeros);
    row["bits_per_weight"] = or_null(s.bits_per_weight);
    row["ratio_vs_teacher"] = or_null(s.ratio_vs_teacher);
    row["ratio_vs_student_fp32"] = or_null(s.ratio_vs_student_fp32);
    row["latency_batch1_us"] = or_null(s.latency_batch1_us);
    row["throughput_batch256"] = or_null(s.throughput_batch256);
    rows.push_back(std::move(row));
  }
  nlohmann::ordered_json doc = nlohmann::ordered_json::object();
  doc["stages"] = std::move(rows);
  doc["command"] = command;
  doc["seconds"] = seconds;
  // `replace`: a name or command line that is not valid UTF-8 must not cost the whole report.
  report_parts::write_text(path, doc.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + '\n');
}

/// Writes a scatter plot of test accuracy against bytes on disk (log scale), one labelled marker per stage
/// that has a file size, coloured by kind (teacher / ensemble / labels-only baseline / student / compressed
/// file, read off the name), with the student stages and the compressed file joined in the given order:
/// the compression path. Stages without a positive size or with a non-finite accuracy are left out.
/// @throws minnow::io_error naming `path` when it cannot be written.
inline void write_results_svg(const std::filesystem::path& path, const std::vector<StageResult>& stages, const std::string& title) {
  using namespace report_parts;
  constexpr double width = 900, height = 560;
  constexpr double left = 80, right = width - 30, top = 74, bottom = height - 62;  // the plot area
  constexpr double font = 12, marker_radius = 5;

  struct Point {
    const StageResult* stage;
    Kind kind;
    double lx, y;  // log10(bytes), accuracy
    double px = 0, py = 0;
  };
  std::vector<Point> points;
  for (const auto& s : stages) {
    if (!s.bytes_on_disk || *s.bytes_on_disk == 0 || !std::isfinite(s.accuracy)) continue;
    points.push_back({&s, kind_of(s.name), std::log10(static_cast<double>(*s.bytes_on_disk)), s.accuracy});
  }

  // x: whole decades around the data, with a little room so no marker sits on the frame.
  double x_lo = 3, x_hi = 6;  // 1 kB .. 1 MB when there is nothing to plot
  double y_lo = 0, y_hi = 100;
  if (!points.empty()) {
    double lmin = points.front().lx, lmax = lmin, amin = points.front().y, amax = amin;
    for (const auto& p : points) {
      lmin = std::min(lmin, p.lx), lmax = std::max(lmax, p.lx);
      amin = std::min(amin, p.y), amax = std::max(amax, p.y);
    }
    x_lo = std::max(0.0, std::floor(lmin - 0.1));
    x_hi = std::max(x_lo + 1, std::ceil(lmax + 0.1));
    // y: pad by a tenth of the spread (at least half a point), then round out to nice ticks.
    const double pad = std::max(0.1 * (amax - amin), 0.5);
    y_lo = amin - pad, y_hi = amax + pad;
    if (amin >= 0) y_lo = std::max(y_lo, 0.0);  // accuracy below 0 % or above 100 % is not a thing to show
    if (amax <= 100) y_hi = std::min(y_hi, 100.0);
  }
  const double y_step = nice_step(y_lo, y_hi, 6);
  y_lo = std::floor(y_lo / y_step + 1e-9) * y_step;
  y_hi = std::ceil(y_hi / y_step - 1e-9) * y_step;
  const int y_decimals = decimals_for(y_step);

  const auto to_px = [&](double lx) { return left + (lx - x_lo) / (x_hi - x_lo) * (right - left); };
  const auto to_py = [&](double y) { return bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top); };
  for (auto& p : points) p.px = to_px(p.lx), p.py = to_py(p.y);

  std::ostringstream svg;
  const auto num = [](double v) { return printf_string("%.1f", v); };
  svg << R"(<?xml version="1.0" encoding="UTF-8"?>)" << '\n'
      << R"(<svg xmlns="http://www.w3.org/2000/svg" width=")" << width << R"(" height=")" << height << R"(" viewBox="0 0 )" << width
      << ' ' << height << R"(" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size=")" << font << R"(">)" << '\n'
      << R"(<rect width="100%" height="100%" fill="white"/>)" << '\n'
      << R"(<text x=")" << num(width / 2) << R"(" y="26" text-anchor="middle" font-size="17" font-weight="bold">)" << xml_escape(title)
      << "</text>\n";

  // Legend under the title, outside the plot so it never hides a point.
  {
    constexpr std::array<std::pair<Kind, const char*>, 5> entries{{{Kind::teacher, "teacher"},
                                                                   {Kind::ensemble, "ensemble"},
                                                                   {Kind::baseline, "labels only"},
                                                                   {Kind::student, "student stage"},
                                                                   {Kind::compressed, "compressed file"}}};
    double total = 0;
    for (const auto& e : entries) total += 2 * marker_radius + 6 + text_width(e.second, font) + 22;
    double x = width / 2 - total / 2;
    for (const auto& e : entries) {
      svg << R"(<circle cx=")" << num(x + marker_radius) << R"(" cy="48" r=")" << marker_radius << R"(" fill=")" << colour_of(e.first)
          << R"("/><text x=")" << num(x + 2 * marker_radius + 6) << R"(" y="52">)" << e.second << "</text>\n";
      x += 2 * marker_radius + 6 + text_width(e.second, font) + 22;
    }
  }

  // Grid, ticks and tick labels.
  svg << R"(<g stroke="#e4e4e4" stroke-width="1">)" << '\n';
  for (int d = static_cast<int>(x_lo); d < static_cast<int>(x_hi); ++d) {
    for (int m = 2; m <= 9; ++m) {
      const double x = to_px(d + std::log10(static_cast<double>(m)));
      svg << R"(<line x1=")" << num(x) << R"(" y1=")" << top << R"(" x2=")" << num(x) << R"(" y2=")" << bottom << R"(" stroke="#f2f2f2"/>)"
          << '\n';
    }
  }
  for (int d = static_cast<int>(x_lo); d <= static_cast<int>(x_hi); ++d) {
    const double x = to_px(d);
    svg << R"(<line x1=")" << num(x) << R"(" y1=")" << top << R"(" x2=")" << num(x) << R"(" y2=")" << bottom << R"("/>)" << '\n';
  }
  const int y_ticks = static_cast<int>(std::lround((y_hi - y_lo) / y_step));
  for (int i = 0; i <= y_ticks; ++i) {
    const double y = to_py(y_lo + i * y_step);
    svg << R"(<line x1=")" << left << R"(" y1=")" << num(y) << R"(" x2=")" << right << R"(" y2=")" << num(y) << R"("/>)" << '\n';
  }
  svg << "</g>\n";
  svg << R"(<rect x=")" << left << R"(" y=")" << top << R"(" width=")" << right - left << R"(" height=")" << bottom - top
      << R"(" fill="none" stroke="#444"/>)" << '\n';
  for (int d = static_cast<int>(x_lo); d <= static_cast<int>(x_hi); ++d) {
    const double x = to_px(d);
    svg << R"(<line x1=")" << num(x) << R"(" y1=")" << bottom << R"(" x2=")" << num(x) << R"(" y2=")" << bottom + 5
        << R"(" stroke="#444"/><text x=")" << num(x) << R"(" y=")" << bottom + 19 << R"(" text-anchor="middle">)" << bytes_label(d)
        << "</text>\n";
  }
  if (x_hi - x_lo <= 2) {  // one or two decades leave too few labels: name the 2s and 5s too
    for (int d = static_cast<int>(x_lo); d < static_cast<int>(x_hi); ++d) {
      for (const int m : {2, 5}) {
        const double x = to_px(d + std::log10(static_cast<double>(m)));
        svg << R"(<line x1=")" << num(x) << R"(" y1=")" << bottom << R"(" x2=")" << num(x) << R"(" y2=")" << bottom + 3
            << R"(" stroke="#444"/><text x=")" << num(x) << R"(" y=")" << bottom + 19 << R"(" text-anchor="middle" fill="#555">)"
            << bytes_label(d, m) << "</text>\n";
      }
    }
  }
  for (int i = 0; i <= y_ticks; ++i) {
    const double v = y_lo + i * y_step;
    const double y = to_py(v);
    svg << R"(<line x1=")" << left - 5 << R"(" y1=")" << num(y) << R"(" x2=")" << left << R"(" y2=")" << num(y)
        << R"(" stroke="#444"/><text x=")" << left - 8 << R"(" y=")" << num(y + 4) << R"(" text-anchor="end">)"
        << printf_string("%.*f", y_decimals, v) << "</text>\n";
  }
  svg << R"(<text x=")" << num((left + right) / 2) << R"(" y=")" << height - 16 << R"(" text-anchor="middle" font-size="13">)"
      << "bytes on disk (log scale)</text>\n"
      << R"(<text transform="translate(22 )" << num((top + bottom) / 2) << R"svg() rotate(-90)" text-anchor="middle" font-size="13">)svg"
      << "test accuracy (%)</text>\n";

  if (points.empty()) {
    svg << R"(<text x=")" << num((left + right) / 2) << R"(" y=")" << num((top + bottom) / 2) << R"(" text-anchor="middle" font-size="16" fill="#888">)"
        << "no data</text>\n";
  } else {
    // The compression path: student stages and the compressed file, in the order given.
    std::string path_points;
    int on_path = 0;
    for (const auto& p : points) {
      if (p.kind != Kind::student && p.kind != Kind::compressed) continue;
      path_points += num(p.px) + ',' + num(p.py) + ' ';
      ++on_path;
    }
    if (on_path >= 2) {
      svg << R"(<polyline points=")" << path_points << R"(" fill="none" stroke="#2ca02c" stroke-opacity="0.45" stroke-width="1.2" stroke-dasharray="4 3"/>)"
          << '\n';
    }

    // Labels: right of the point unless that runs past the plot, then left; a label that would overlap a
    // placed label or a marker is nudged up or down (greedily, nearest free slot first, top to bottom).
    std::vector<Box> taken;
    for (const auto& p : points) {
      taken.push_back({p.px - marker_radius - 1, p.py - marker_radius - 1, p.px + marker_radius + 1, p.py + marker_radius + 1});
    }
    std::vector<std::size_t> order(points.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return points[a].py < points[b].py; });
    constexpr double line_height = font + 1, gap = marker_radius + 4;
    std::ostringstream labels;
    for (const std::size_t i : order) {
      const Point& p = points[i];
      const std::string text = p.stage->name;
      const double w = text_width(text, font);
      const bool fits_right = p.px + gap + w <= width - 6;
      const bool fits_left = p.px - gap - w >= 6;
      // Which sides to try, preferred first.
      std::vector<bool> sides;  // true = right
      if (fits_right) sides.push_back(true);
      if (fits_left) sides.push_back(false);
      if (sides.empty()) sides.push_back(true);
      Box chosen{};
      bool found = false, right_side = sides.front();
      double dy = 0;
      // First small nudges on the preferred side (a label across its point reads as naming a neighbour),
      // then both sides at growing distances.
      constexpr int near_attempts = 17;  // up to 24 px either way
      for (int attempt = 0; attempt < near_attempts + 200 && !found; ++attempt) {
        const bool near_pass = attempt < near_attempts;
        const int step = near_pass ? attempt : attempt - near_attempts;
        const double offset = (step % 2 == 0 ? 1 : -1) * ((step + 1) / 2) * 3.0;  // 0, -3, +3, -6, ... px
        for (const bool side : sides) {
          if (near_pass && side != sides.front()) continue;
          const double x0 = side ? std::min(p.px + gap, width - 6 - w) : p.px - gap - w;
          const double cy = p.py - offset;
          const Box box{x0 - 1, cy - line_height / 2, x0 + w + 1, cy + line_height / 2};
          if (box.y0 < top - 20 || box.y1 > height - 34) continue;  // keep clear of the legend and the axis title
          if (std::any_of(taken.begin(), taken.end(), [&](const Box& t) { return t.overlaps(box); })) continue;
          chosen = box, right_side = side, dy = -offset, found = true;
          break;
        }
      }
      if (!found) {  // crowded beyond help: put it at the point and accept the overlap
        const double x0 = right_side ? std::min(p.px + gap, width - 6 - w) : p.px - gap - w;
        chosen = {x0 - 1, p.py - line_height / 2, x0 + w + 1, p.py + line_height / 2};
      }
      taken.push_back(chosen);
      const double text_x = right_side ? chosen.x0 + 1 : chosen.x1 - 1;
      const double cy = (chosen.y0 + chosen.y1) / 2;
      if (std::abs(dy) > 4) {  // moved away from its point: a leader line says which point it names
        const double lx = right_side ? chosen.x0 - 1 : chosen.x1 + 1;
        labels << R"(<line x1=")" << num(p.px) << R"(" y1=")" << num(p.py) << R"(" x2=")" << num(lx) << R"(" y2=")" << num(cy)
               << R"(" stroke="#999" stroke-width="0.8"/>)" << '\n';
      }
      labels << R"(<text x=")" << num(text_x) << R"(" y=")" << num(cy + font * 0.35) << R"(" text-anchor=")" << (right_side ? "start" : "end")
             << R"(">)" << xml_escape(text) << "</text>\n";
    }
    for (const auto& p : points) {
      svg << R"(<circle cx=")" << num(p.px) << R"(" cy=")" << num(p.py) << R"(" r=")" << marker_radius << R"(" fill=")" << colour_of(p.kind)
          << R"(" stroke="white" stroke-width="1"><title>)" << xml_escape(p.stage->name) << ": " << printf_string("%.2f", p.y) << " %, "
          << *p.stage->bytes_on_disk << " bytes</title></circle>\n";
    }
    svg << labels.str();
  }
  svg << "</svg>\n";

  write_text(path, svg.str());
}

}  // namespace example
