#pragma once
/// @file io/huffman.hpp
/// @brief Canonical Huffman coding of small-alphabet symbol streams (at most 65,536 symbols), the entropy
/// coder of the compressed model file (io/compressed_model.hpp), with the bit streams it writes into.
///
/// A code is its list of code lengths, one per symbol (0 = the symbol does not occur), at most
/// `huffman_max_length` bits. Codes are canonical (DEFLATE's rule): shorter codes first, and within one
/// length in symbol order, so the lengths alone define the code and are all a file needs to store.
/// Bits go most significant first into bytes filled from their high bit. Two edge cases:
/// - a stream of one distinct symbol gets a 1-bit code, so every symbol still costs one bit;
/// - an empty stream has all lengths 0 and no bits.
/// Decoding is the trust boundary: an over-subscribed code (Kraft sum above 1), a bit pattern that is
/// no code, or a stream that ends before its last symbol are `format_error`s naming the stream.

#include <minnow/error.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <queue>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace minnow::io {

/// The longest code; lengths are stored in 4 bits.
inline constexpr int huffman_max_length = 15;

/// Appends bits, most significant first.
class BitWriter {
 public:
  /// Appends the low `count` bits of `bits` (count ≤ 32), most significant first.
  void put(std::uint32_t bits, int count) {
    for (int i = count - 1; i >= 0; --i) {
      if (bit_count_ % 8 == 0) bytes_.push_back(std::byte{0});
      if ((bits >> i) & 1u) bytes_.back() |= std::byte{static_cast<unsigned char>(0x80u >> (bit_count_ % 8))};
      ++bit_count_;
    }
  }
  [[nodiscard]] std::uint64_t bit_count() const noexcept { return bit_count_; }
  [[nodiscard]] const std::vector<std::byte>& bytes() const noexcept { return bytes_; }

 private:
  std::vector<std::byte> bytes_;
  std::uint64_t bit_count_ = 0;
};

/// Reads the first `bit_count` bits of a byte span; reading past them is a format_error naming `what`.
class BitReader {
 public:
  BitReader(std::span<const std::byte> bytes, std::uint64_t bit_count, std::string what)
      : bytes_(bytes), bit_count_(bit_count), what_(std::move(what)) {
    if (bit_count > static_cast<std::uint64_t>(bytes.size()) * 8) {
      throw format_error(minnow::detail::concat(what_, ": ", bit_count, " bits declared in ", bytes.size(), " bytes"));
    }
  }
  [[nodiscard]] std::uint32_t bit() {
    if (position_ >= bit_count_) {
      throw format_error(minnow::detail::concat(what_, ": the stream decodes past its end (", bit_count_, " bits)"));
    }
    const auto byte = std::to_integer<unsigned>(bytes_[static_cast<std::size_t>(position_ / 8)]);
    const std::uint32_t b = (byte >> (7 - position_ % 8)) & 1u;
    ++position_;
    return b;
  }
  [[nodiscard]] std::uint64_t position() const noexcept { return position_; }
  [[nodiscard]] std::uint64_t bit_count() const noexcept { return bit_count_; }
  [[nodiscard]] const std::string& what() const noexcept { return what_; }

 private:
  std::span<const std::byte> bytes_;
  std::uint64_t bit_count_;
  std::uint64_t position_ = 0;
  std::string what_;
};

/// @brief Code lengths (≤ huffman_max_length) of an optimal prefix code for symbol `counts`: Huffman's
/// construction, with the counts halved (keeping every used symbol at ≥ 1) until no code is too long.
/// Unused symbols get 0; one used symbol gets 1.
[[nodiscard]] inline std::vector<std::uint8_t> huffman_lengths(std::span<const std::uint64_t> counts) {
  if (counts.size() > 65536) {
    throw value_error(minnow::detail::concat("huffman_lengths: ", counts.size(), " symbols, at most 65536"));
  }
  std::vector<std::uint8_t> lengths(counts.size(), 0);
  std::vector<std::uint64_t> weights(counts.begin(), counts.end());
  std::size_t used = 0;
  for (const auto c : weights) used += c > 0 ? 1 : 0;
  if (used == 0) return lengths;
  if (used == 1) {
    for (std::size_t s = 0; s < weights.size(); ++s) lengths[s] = weights[s] > 0 ? 1 : 0;
    return lengths;
  }
  for (;;) {
    // Nodes: leaves 0..n-1, then internal nodes; ties broken by index so the result is deterministic.
    const std::size_t n = weights.size();
    std::vector<std::size_t> parent(2 * n, 0);
    using Item = std::pair<std::uint64_t, std::size_t>;
    std::priority_queue<Item, std::vector<Item>, std::greater<>> queue;
    for (std::size_t s = 0; s < n; ++s) {
      if (weights[s] > 0) queue.emplace(weights[s], s);
    }
    std::size_t next = n;
    while (queue.size() > 1) {
      const auto [wa, a] = queue.top();
      queue.pop();
      const auto [wb, b] = queue.top();
      queue.pop();
      parent[a] = parent[b] = next;
      queue.emplace(wa + wb, next++);
    }
    const std::size_t root = next - 1;
    int longest = 0;
    for (std::size_t s = 0; s < n; ++s) {
      if (weights[s] == 0) continue;
      int depth = 0;
      for (std::size_t v = s; v != root; v = parent[v]) ++depth;
      lengths[s] = static_cast<std::uint8_t>(std::min(depth, 255));
      longest = std::max(longest, depth);
    }
    if (longest <= huffman_max_length) return lengths;
    for (auto& w : weights) w = w > 0 ? (w + 1) / 2 : 0;
  }
}

/// @brief The canonical code of `lengths`: code word of each symbol (valid where its length is > 0).
/// @throws format_error naming `what` when a length exceeds huffman_max_length or the lengths are
/// over-subscribed (no prefix code has them).
[[nodiscard]] inline std::vector<std::uint32_t> huffman_codes(std::span<const std::uint8_t> lengths, const std::string& what) {
  std::uint32_t per_length[huffman_max_length + 1] = {};
  for (const auto l : lengths) {
    if (l > huffman_max_length) {
      throw format_error(minnow::detail::concat(what, ": code length ", int{l}, " exceeds ", huffman_max_length));
    }
    if (l > 0) ++per_length[l];
  }
  // Kraft: Σ 2^(max − l) ≤ 2^max.
  std::uint64_t kraft = 0;
  for (int l = 1; l <= huffman_max_length; ++l) kraft += std::uint64_t{per_length[l]} << (huffman_max_length - l);
  if (kraft > (std::uint64_t{1} << huffman_max_length)) {
    throw format_error(minnow::detail::concat(what, ": the code lengths are over-subscribed (no prefix code has them)"));
  }
  std::uint32_t first[huffman_max_length + 2] = {};
  std::uint32_t code = 0;
  for (int l = 1; l <= huffman_max_length; ++l) {
    code = (code + per_length[l - 1]) << 1;
    first[l] = code;
  }
  std::vector<std::uint32_t> codes(lengths.size(), 0);
  for (std::size_t s = 0; s < lengths.size(); ++s) {
    if (lengths[s] > 0) codes[s] = first[lengths[s]]++;
  }
  return codes;
}

/// Appends `symbols` coded with `lengths` to `out`. @throws value_error for a symbol without a code.
inline void huffman_encode(std::span<const std::uint16_t> symbols, std::span<const std::uint8_t> lengths, BitWriter& out) {
  const auto codes = huffman_codes(lengths, "huffman_encode");
  for (const auto s : symbols) {
    if (s >= lengths.size() || lengths[s] == 0) {
      throw value_error(minnow::detail::concat("huffman_encode: symbol ", s, " has no code"));
    }
    out.put(codes[s], lengths[s]);
  }
}

/// @brief Decodes `count` symbols with the canonical code of `lengths`.
/// @throws format_error naming the stream for bad lengths, a bit pattern that is no code, or a stream
/// that ends before `count` symbols (the caller bounds `count`, e.g. by the bits available).
[[nodiscard]] inline std::vector<std::uint16_t> huffman_decode(BitReader& in, std::span<const std::uint8_t> lengths,
                                                               std::uint64_t count) {
  (void)huffman_codes(lengths, in.what());  // validates the lengths
  if (count > in.bit_count() - in.position()) {
    throw format_error(minnow::detail::concat(in.what(), ": ", count, " symbols cannot fit in ", in.bit_count() - in.position(),
                                              " bits (each takes at least one)"));
  }
  // Canonical decoding: symbols sorted by (length, symbol); per length its first code and first index.
  std::uint32_t per_length[huffman_max_length + 1] = {};
  for (const auto l : lengths) {
    if (l > 0) ++per_length[l];
  }
  std::vector<std::uint16_t> sorted;
  for (int l = 1; l <= huffman_max_length; ++l) {
    for (std::size_t s = 0; s < lengths.size(); ++s) {
      if (lengths[s] == l) sorted.push_back(static_cast<std::uint16_t>(s));
    }
  }
  std::vector<std::uint16_t> out;
  out.reserve(static_cast<std::size_t>(count));
  for (std::uint64_t i = 0; i < count; ++i) {
    std::uint32_t code = 0, first = 0, index = 0;
    bool found = false;
    for (int l = 1; l <= huffman_max_length; ++l) {
      code |= in.bit();
      if (code - first < per_length[l]) {
        out.push_back(sorted[index + (code - first)]);
        found = true;
        break;
      }
      index += per_length[l];
      first = (first + per_length[l]) << 1;
      code <<= 1;
    }
    if (!found) {
      throw format_error(minnow::detail::concat(in.what(), ": symbol ", i, " is not a code word of the stream's code"));
    }
  }
  return out;
}

}  // namespace minnow::io
