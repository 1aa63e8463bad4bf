#pragma once
/// @file prune/amount.hpp
/// @brief How much to prune: a Fraction of the candidates or an exact Count, as distinct types.
///
/// PyTorch reads `amount=1` as one weight and `amount=1.0` as all of them. Here a fraction is
/// `Fraction{1.0}` and a count is `Count{1}`; neither converts from a bare number, and
/// `Fraction{1}` / `Count{1.0}` do not compile.

#include <minnow/error.hpp>
#include <minnow/tensor.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>

namespace minnow::prune {

namespace detail {

/// The shortest text that reads back as `value` ("0.1", "1.0000001", "nan"): error messages must
/// not show 1.0000001 as "1".
[[nodiscard]] inline std::string show(double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

}  // namespace detail

/// @brief A fraction of the candidates (surviving weights or slices) to prune, in [0, 1].
class Fraction {
 public:
  /// @throws value_error when `value` is NaN, negative or above 1.
  template <std::floating_point F>
  explicit Fraction(F value) : value_(static_cast<double>(value)) {
    if (!(value_ >= 0.0 && value_ <= 1.0)) {
      throw value_error(minnow::detail::concat("prune: a Fraction must lie in [0, 1], got ", detail::show(value_)));
    }
  }
  [[nodiscard]] double value() const noexcept { return value_; }

 private:
  double value_;
};

/// @brief An exact number of candidates (weights or slices) to prune, >= 0.
class Count {
 public:
  /// @throws value_error when `value` is negative or does not fit an index.
  template <std::integral I>
    requires(!std::same_as<I, bool>)
  explicit Count(I value) {
    if (std::cmp_less(value, 0) || !std::in_range<index_t>(value)) {
      throw value_error(minnow::detail::concat("prune: a Count must be >= 0, got ", value));
    }
    value_ = static_cast<index_t>(value);
  }
  [[nodiscard]] index_t value() const noexcept { return value_; }

 private:
  index_t value_ = 0;
};

/// @brief Either a Fraction or a Count; converts implicitly from both, from nothing else.
class Amount {
 public:
  Amount(Fraction fraction) noexcept : value_(fraction) {}  // NOLINT(google-explicit-constructor)
  Amount(Count count) noexcept : value_(count) {}           // NOLINT(google-explicit-constructor)

  [[nodiscard]] bool is_fraction() const noexcept { return std::holds_alternative<Fraction>(value_); }
  [[nodiscard]] const std::variant<Fraction, Count>& get() const noexcept { return value_; }

 private:
  std::variant<Fraction, Count> value_;
};

/// @brief `x` rounded to the nearest integer, halves to even (Python's `round`): 2.5 → 2, 3.5 → 4.
/// Written out rather than `std::nearbyint` so a caller's floating-point rounding mode cannot change it.
[[nodiscard]] inline double round_half_even(double x) noexcept {
  const double floor = std::floor(x);
  const double diff = x - floor;  // exact for |x| < 2^52
  if (diff > 0.5) return floor + 1.0;
  if (diff < 0.5) return floor;
  return std::fmod(floor, 2.0) == 0.0 ? floor : floor + 1.0;
}

/// @brief How many of `n` candidates a fraction prunes: `round_half_even(fraction · n)`, the product
/// taken in double as PyTorch's `_compute_nparams_toprune` does (0.5 of 5 → 2, 0.5 of 7 → 4).
/// @throws value_error when n < 0.
[[nodiscard]] inline index_t to_count(Fraction fraction, index_t n) {
  if (n < 0) throw value_error(minnow::detail::concat("prune: number of candidates must be >= 0, got ", n));
  const double k = round_half_even(fraction.value() * static_cast<double>(n));
  return std::min(static_cast<index_t>(k), n);  // fraction <= 1, so only rounding could exceed n
}

/// @brief A count checked against the number of candidates.
/// @throws value_error naming both when the count exceeds `n`.
[[nodiscard]] inline index_t to_count(Count count, index_t n) {
  if (count.value() > n) {
    throw value_error(minnow::detail::concat("prune: cannot prune ", count.value(), " of ", n,
                                             " candidates (a Count must be <= the number of surviving candidates)"));
  }
  return count.value();
}

/// @brief How many of `n` candidates `amount` prunes (either rule above).
[[nodiscard]] inline index_t to_count(const Amount& amount, index_t n) {
  return std::visit([n](const auto& a) { return to_count(a, n); }, amount.get());
}

}  // namespace minnow::prune
