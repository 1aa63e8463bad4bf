#pragma once
/// @file quant/granularity.hpp
/// @brief How a tensor splits into channels with their own quantization parameters: `PerTensor`
/// (one set) and `PerChannel{axis}` (one set per slice along `axis`, PyTorch's `ch_axis`).

#include <minnow/error.hpp>
#include <minnow/quant/concepts.hpp>

#include <cstddef>
#include <span>
#include <string>

namespace minnow::quant {
namespace detail {

/// Product of shape[begin, end); throws shape_error on a negative extent or a shape whose count overflows.
[[nodiscard]] inline index_t extent_product(std::span<const index_t> shape, std::size_t begin, std::size_t end,
                                            const char* context) {
  (void)minnow::detail::checked_product(shape, context);  // the whole shape: negative extents, overflow
  return minnow::detail::checked_product(shape.subspan(begin, end - begin), context);
}

}  // namespace detail

/// @brief One scale and zero point for the whole tensor: the layout `{1, 1, n}`.
struct PerTensor {
  [[nodiscard]] ChannelLayout layout(std::span<const index_t> shape) const {
    return {1, 1, detail::extent_product(shape, 0, shape.size(), "PerTensor::layout")};
  }
};

/// @brief One scale and zero point per slice along `axis` (0 = output channels of a conv or linear
/// weight `[out, in, ...]`; 1 = channels of an NCHW activation). The layout is
/// `{prod(shape[:axis]), shape[axis], prod(shape[axis+1:])}`.
struct PerChannel {
  index_t axis = 0;

  /// @throws shape_error when `axis` is not in [0, rank) or an extent is negative.
  [[nodiscard]] ChannelLayout layout(std::span<const index_t> shape) const {
    const auto rank = static_cast<index_t>(shape.size());
    if (axis < 0 || axis >= rank) {
      throw shape_error(minnow::detail::concat("PerChannel::layout: axis ", axis, " is out of range for shape ",
                                               minnow::detail::extents_string(shape), " (rank ", rank, ")"));
    }
    const auto a = static_cast<std::size_t>(axis);
    return {detail::extent_product(shape, 0, a, "PerChannel::layout"),
            detail::extent_product(shape, a, a + 1, "PerChannel::layout"),
            detail::extent_product(shape, a + 1, shape.size(), "PerChannel::layout")};
  }
};

static_assert(Granularity<PerTensor> && Granularity<PerChannel>);

}  // namespace minnow::quant
