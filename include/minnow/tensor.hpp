#pragma once
/// @file tensor.hpp
/// @brief minnow::Tensor (owning, aligned, row-major) and minnow::TensorView (non-owning),
/// with zero-overhead Eigen bridges.
///
/// A view is a pointer plus a shape. Everything in minnow that reads or writes numbers takes views,
/// so the same code works on minnow's tensors, on a user's buffers and on slices of either.

#include <minnow/config.hpp>
#include <minnow/error.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

namespace minnow {

/// Signed index type shared with Eigen (Eigen::Index is std::ptrdiff_t).
using index_t = Eigen::Index;

/// The extents of a row-major tensor, outermost first.
template <std::size_t Rank>
using Shape = std::array<index_t, Rank>;

/// Formats a shape the way error messages show it: "[5, 3]".
template <std::size_t Rank>
[[nodiscard]] std::string to_string(const Shape<Rank>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < Rank; ++i) {
    if (i != 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

/// @brief Throws shape_error when `given` differs from `expected`, naming both:
/// "what: given_name [2, 4] does not match expected_name [2, 3]". The check every module uses for an
/// output, gradient or mask that must be shaped like another view; it allocates nothing when they match.
template <std::size_t Rank>
void check_same_shape(const char* what, const char* expected_name, const Shape<Rank>& expected, const char* given_name,
                      const Shape<Rank>& given) {
  if (given != expected) {
    throw shape_error(detail::concat(what, ": ", given_name, " ", to_string(given), " does not match ", expected_name, " ",
                                     to_string(expected)));
  }
}

namespace detail {

/// Formats extents of any rank as error messages show shapes: "[5, 3]".
[[nodiscard]] inline std::string extents_string(std::span<const index_t> extents) {
  std::string out = "[";
  for (std::size_t i = 0; i < extents.size(); ++i) {
    if (i != 0) out += ", ";
    out += std::to_string(extents[i]);
  }
  return out + "]";
}

/// The product of `extents` (a shape of any rank): the one place element counts computed from user-given
/// extents are checked. The product of the non-zero extents must fit too, so that every partial product
/// of the shape (outer and inner sizes around an axis) is safe to compute even when the count is 0.
/// @throws shape_error naming `context` and the shape on a negative extent or on overflow.
[[nodiscard]] inline index_t checked_product(std::span<const index_t> extents, const char* context) {
  index_t nonzero = 1;
  bool empty = false;
  for (const index_t extent : extents) {
    if (extent < 0) {
      throw shape_error(concat(context, ": negative extent in shape ", extents_string(extents)));
    }
    if (extent == 0) {
      empty = true;
      continue;
    }
    if (nonzero > std::numeric_limits<index_t>::max() / extent) {
      throw shape_error(concat(context, ": shape ", extents_string(extents), " has too many elements"));
    }
    nonzero *= extent;
  }
  return empty ? 0 : nonzero;
}

/// Number of elements of a shape; throws shape_error on a negative extent or on overflow.
template <std::size_t Rank>
[[nodiscard]] index_t element_count(const Shape<Rank>& shape, const char* context) {
  return checked_product(std::span<const index_t>(shape), context);
}

/// The Eigen type a map of T-elements refers to: const-qualified when T is.
template <class T, class Plain>
using maybe_const = std::conditional_t<std::is_const_v<T>, const Plain, Plain>;

/// Tag for the internal view constructor that skips validation of an already validated shape.
struct unchecked_t {};

template <class T>
using ArrayX = Eigen::Array<std::remove_const_t<T>, Eigen::Dynamic, 1>;

template <class T>
using RowMatrixX = Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

}  // namespace detail

/// Eigen::Map of all elements of a tensor as a 1-D array (const when T is).
template <class T, int Options = Eigen::Unaligned>
using ArrayMap = Eigen::Map<detail::maybe_const<T, detail::ArrayX<T>>, Options>;

/// Eigen::Map of a tensor's elements as a row-major matrix (const when T is).
template <class T, int Options = Eigen::Unaligned>
using MatrixMap = Eigen::Map<detail::maybe_const<T, detail::RowMatrixX<T>>, Options>;

/// @brief A non-owning, row-major, contiguous view: a pointer and a shape.
/// @tparam T    element type; `const T` makes a read-only view.
/// @tparam Rank number of dimensions (0 is a scalar).
///
/// Copying a view is free and never copies elements. `TensorView<const T, R>` converts implicitly
/// from `TensorView<T, R>`; the reverse does not compile.
template <class T, std::size_t Rank>
class TensorView {
 public:
  using element_type = T;
  using value_type = std::remove_const_t<T>;
  static constexpr std::size_t rank = Rank;

  /// An empty view: no data, every extent 0 (rank 0: one element, so it needs data; use for Rank > 0).
  TensorView() noexcept = default;

  /// Views `shape` elements starting at `data`; `data` may be null only when the shape has no elements.
  TensorView(T* data, const Shape<Rank>& shape)
      : data_(data), shape_(shape), size_(detail::element_count(shape, "TensorView")) {
    if (data_ == nullptr && size_ != 0) {
      throw value_error(detail::concat("TensorView: null data for shape ", to_string(shape)));
    }
  }

  /// Read-only view of a mutable one (implicit, like `T*` to `const T*`).
  template <class U>
    requires(std::is_const_v<T> && std::is_same_v<const U, T>)
  TensorView(const TensorView<U, Rank>& other) noexcept  // NOLINT(google-explicit-constructor)
      : data_(other.data()), shape_(other.shape()), size_(other.size()) {}

  [[nodiscard]] T* data() const noexcept { return data_; }
  [[nodiscard]] const Shape<Rank>& shape() const noexcept { return shape_; }
  [[nodiscard]] index_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] index_t dim(std::size_t axis) const noexcept {
    assert(axis < Rank && "TensorView::dim: axis out of range");
    return shape_[axis];
  }

  /// Element access `v(i, j, ...)`; indices are checked by assert (Debug only).
  template <class... I>
    requires(sizeof...(I) == Rank && (std::is_integral_v<I> && ...))
  [[nodiscard]] T& operator()(I... indices) const noexcept {
    return data_[offset_of(static_cast<index_t>(indices)...)];
  }

  /// The sub-tensor at `index` along the first dimension (a sample of a batch, a filter, ...).
  [[nodiscard]] TensorView<T, Rank - 1> operator[](index_t index) const noexcept
    requires(Rank >= 1)
  {
    assert(index >= 0 && index < shape_[0] && "TensorView::operator[]: index out of range");
    Shape<Rank - 1> inner{};
    std::copy(shape_.begin() + 1, shape_.end(), inner.begin());
    return TensorView<T, Rank - 1>(data_ + index * (size_ == 0 ? 0 : size_ / shape_[0]), inner,
                                   detail::unchecked_t{});
  }

  /// Rows [begin, end) along the first dimension, e.g. a mini-batch of a data set.
  [[nodiscard]] TensorView slice(index_t begin, index_t end) const
    requires(Rank >= 1)
  {
    if (begin < 0 || end < begin || end > shape_[0]) {
      throw shape_error(detail::concat("slice: [", begin, ", ", end, ") is not inside dimension 0 of ",
                                       to_string(shape_)));
    }
    Shape<Rank> sub = shape_;
    sub[0] = end - begin;
    const index_t stride = shape_[0] == 0 ? 0 : size_ / shape_[0];
    return TensorView(data_ + begin * stride, sub, detail::unchecked_t{});
  }

  /// The same elements under another shape; one extent may be -1 (inferred).
  /// @throws shape_error when the element counts differ, e.g. "reshape: 12 elements cannot be viewed as [5, 3]".
  template <std::size_t NewRank, class... D>
    requires(sizeof...(D) == NewRank && (std::is_integral_v<D> && ...))
  [[nodiscard]] TensorView<T, NewRank> reshape(D... dims) const {
    return reshape(Shape<NewRank>{static_cast<index_t>(dims)...});
  }

  template <std::size_t NewRank>
  [[nodiscard]] TensorView<T, NewRank> reshape(Shape<NewRank> dims) const {
    std::size_t inferred = NewRank;
    index_t known = 1;
    for (std::size_t i = 0; i < NewRank; ++i) {
      if (dims[i] == -1 && inferred == NewRank) {
        inferred = i;
      } else if (dims[i] < 0) {
        throw shape_error(detail::concat("reshape: invalid target shape ", to_string(dims),
                                         " (extents must be >= 0, at most one -1)"));
      } else if (dims[i] != 0 && known > std::numeric_limits<index_t>::max() / dims[i]) {
        throw shape_error(detail::concat("reshape: target shape ", to_string(dims), " has too many elements"));
      } else {
        known *= dims[i];
      }
    }
    if (inferred != NewRank) {
      if (known == 0 || size_ % known != 0) {
        throw shape_error(detail::concat("reshape: ", size_, " elements cannot be viewed as ", to_string(dims)));
      }
      dims[inferred] = size_ / known;
    }
    if (detail::element_count(dims, "reshape") != size_) {
      throw shape_error(detail::concat("reshape: ", size_, " elements cannot be viewed as ", to_string(dims)));
    }
    return TensorView<T, NewRank>(data_, dims, detail::unchecked_t{});
  }

  /// All elements as a 1-D Eigen array; writes land in the viewed memory.
  /// `Options = Eigen::Aligned64` promises 64-byte aligned data (checked by assert).
  template <int Options = Eigen::Unaligned>
  [[nodiscard]] ArrayMap<T, Options> array() const noexcept {
    assert_aligned<Options>();
    return ArrayMap<T, Options>(data_, size_);
  }

  /// A rank-2 view as a row-major Eigen matrix.
  template <int Options = Eigen::Unaligned>
  [[nodiscard]] MatrixMap<T, Options> matrix() const noexcept
    requires(Rank == 2)
  {
    assert_aligned<Options>();
    return MatrixMap<T, Options>(data_, shape_[0], shape_[1]);
  }

  /// Any view as a row-major `rows x cols` Eigen matrix. @throws shape_error if rows*cols != size().
  template <int Options = Eigen::Unaligned>
  [[nodiscard]] MatrixMap<T, Options> matrix(index_t rows, index_t cols) const {
    if (rows < 0 || cols < 0 || (rows != 0 && cols > std::numeric_limits<index_t>::max() / rows) || rows * cols != size_) {
      throw shape_error(detail::concat("matrix: ", size_, " elements of ", to_string(shape_),
                                       " cannot be viewed as [", rows, ", ", cols, "]"));
    }
    assert_aligned<Options>();
    return MatrixMap<T, Options>(data_, rows, cols);
  }

  /// Sets every element to `value`.
  void fill(value_type value) const
    requires(!std::is_const_v<T>)
  {
    std::fill_n(data_, size_, value);
  }

  /// Copies `source` into this view. @throws shape_error when the shapes differ.
  void copy_from(TensorView<const value_type, Rank> source) const
    requires(!std::is_const_v<T>)
  {
    if (source.shape() != shape_) {
      throw shape_error(detail::concat("copy_from: source ", to_string(source.shape()), " does not match destination ",
                                       to_string(shape_)));
    }
    if (size_ != 0) std::memmove(data_, source.data(), static_cast<std::size_t>(size_) * sizeof(T));
  }

  /// True when the data is aligned for AVX-512 loads (every Tensor's own storage is).
  [[nodiscard]] bool is_aligned() const noexcept {
    return reinterpret_cast<std::uintptr_t>(data_) % MINNOW_ALIGNMENT == 0;
  }

 private:
  template <class, std::size_t>
  friend class TensorView;
  template <class, std::size_t>
  friend class Tensor;

  // Internal constructor for shapes derived from an already validated one.
  TensorView(T* data, const Shape<Rank>& shape, detail::unchecked_t) noexcept : data_(data), shape_(shape), size_(1) {
    for (const index_t extent : shape_) size_ *= extent;
  }

  template <int Options>
  void assert_aligned() const noexcept {
    if constexpr (Options != Eigen::Unaligned) {
      assert(reinterpret_cast<std::uintptr_t>(data_) % MINNOW_ALIGNMENT == 0 && "TensorView: data not aligned");
    }
  }

  template <class... I>
  [[nodiscard]] index_t offset_of(I... indices) const noexcept {
    const std::array<index_t, Rank> idx{indices...};
    index_t offset = 0;
    for (std::size_t d = 0; d < Rank; ++d) {
      assert(idx[d] >= 0 && idx[d] < shape_[d] && "TensorView: index out of range");
      offset = offset * shape_[d] + idx[d];
    }
    return offset;
  }

  T* data_ = nullptr;
  Shape<Rank> shape_{};
  index_t size_ = Rank == 0 ? 1 : 0;
};

namespace detail {

/// Frees storage obtained from aligned operator new.
struct AlignedDelete {
  void operator()(void* p) const noexcept { ::operator delete[](p, std::align_val_t{MINNOW_ALIGNMENT}); }
};

}  // namespace detail

/// @brief An owning, row-major, contiguous tensor with 64-byte aligned, zero-initialised storage.
///
/// Move-only: a tensor can hold millions of weights, and an implicit copy in a training loop would
/// be a silent multi-megabyte allocation. Copies are explicit with clone(). Views are what gets passed
/// around; `resize` reuses the buffer when it is large enough, so work buffers stop allocating once warm.
template <class T, std::size_t Rank>
class Tensor {
  static_assert(!std::is_const_v<T>, "Tensor owns its elements: use TensorView<const T, Rank> for read-only access");
  static_assert(std::is_trivially_copyable_v<T>, "Tensor elements must be trivially copyable numbers");

 public:
  using value_type = T;
  static constexpr std::size_t rank = Rank;

  /// An empty tensor (every extent 0, no storage).
  Tensor() = default;

  /// A zero-filled tensor of the given shape: `Tensor<float, 2> t({3, 4});`.
  explicit Tensor(const Shape<Rank>& shape) { resize(shape); }

  /// A tensor of the given shape with every element set to `value`.
  Tensor(const Shape<Rank>& shape, T value) : Tensor(shape) { view().fill(value); }

  /// A copy of what `source` views.
  explicit Tensor(TensorView<const T, Rank> source) : Tensor(source.shape()) { view().copy_from(source); }

  Tensor(Tensor&& other) noexcept { swap(other); }
  Tensor& operator=(Tensor&& other) noexcept {
    Tensor(std::move(other)).swap(*this);
    return *this;
  }
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
  ~Tensor() = default;

  /// An element-wise copy (the only way to copy a tensor).
  [[nodiscard]] Tensor clone() const { return Tensor(view()); }

  /// Gives the tensor `shape`. Reallocates only when the current buffer is too small; otherwise the
  /// elements keep whatever values the buffer held (newly allocated storage is zero).
  void resize(const Shape<Rank>& shape) {
    const index_t count = detail::element_count(shape, "Tensor");
    // The byte count, rounded up to whole lines, must fit a ptrdiff_t: no size_t wrap-around, no short buffer.
    constexpr auto max_count = static_cast<index_t>((static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max()) - MINNOW_ALIGNMENT) / sizeof(T));
    if (count > max_count) {
      throw shape_error(detail::concat("Tensor: shape ", to_string(shape), " has ", count, " elements of ", sizeof(T),
                                       " bytes, more than any allocation can hold"));
    }
    if (count > capacity_) {
      const std::size_t bytes = round_up(static_cast<std::size_t>(count) * sizeof(T));
      void* raw = ::operator new[](bytes, std::align_val_t{MINNOW_ALIGNMENT});
      std::memset(raw, 0, bytes);
      storage_.reset(raw);
      capacity_ = static_cast<index_t>(bytes / sizeof(T));
    }
    shape_ = shape;
    size_ = count;
  }

  [[nodiscard]] TensorView<T, Rank> view() noexcept { return {data(), shape_, detail::unchecked_t{}}; }
  [[nodiscard]] TensorView<const T, Rank> view() const noexcept {
    return {data(), shape_, detail::unchecked_t{}};
  }
  /// Tensors convert to views implicitly, so functions taking views accept tensors. A view of a
  /// temporary is valid until the end of the full expression, like std::string_view of a temporary string.
  operator TensorView<T, Rank>() & noexcept { return view(); }             // NOLINT(google-explicit-constructor)
  operator TensorView<const T, Rank>() const& noexcept { return view(); }  // NOLINT(google-explicit-constructor)

  [[nodiscard]] T* data() noexcept { return static_cast<T*>(storage_.get()); }
  [[nodiscard]] const T* data() const noexcept { return static_cast<const T*>(storage_.get()); }
  [[nodiscard]] const Shape<Rank>& shape() const noexcept { return shape_; }
  [[nodiscard]] index_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] index_t dim(std::size_t axis) const noexcept { return view().dim(axis); }

  template <class... I>
    requires(sizeof...(I) == Rank && (std::is_integral_v<I> && ...))
  [[nodiscard]] T& operator()(I... indices) noexcept {
    return view()(indices...);
  }
  template <class... I>
    requires(sizeof...(I) == Rank && (std::is_integral_v<I> && ...))
  [[nodiscard]] const T& operator()(I... indices) const noexcept {
    return view()(indices...);
  }

  /// Maps of the owned storage; these know the data is 64-byte aligned.
  [[nodiscard]] ArrayMap<T, Eigen::Aligned64> array() noexcept { return view().template array<Eigen::Aligned64>(); }
  [[nodiscard]] ArrayMap<const T, Eigen::Aligned64> array() const noexcept {
    return view().template array<Eigen::Aligned64>();
  }
  [[nodiscard]] MatrixMap<T, Eigen::Aligned64> matrix() noexcept
    requires(Rank == 2)
  {
    return view().template matrix<Eigen::Aligned64>();
  }
  [[nodiscard]] MatrixMap<const T, Eigen::Aligned64> matrix() const noexcept
    requires(Rank == 2)
  {
    return view().template matrix<Eigen::Aligned64>();
  }

  void fill(T value) noexcept { view().fill(value); }
  void swap(Tensor& other) noexcept {
    storage_.swap(other.storage_);
    std::swap(shape_, other.shape_);
    std::swap(size_, other.size_);
    std::swap(capacity_, other.capacity_);
  }

 private:
  static std::size_t round_up(std::size_t bytes) noexcept {
    // Whole cache lines, at least one: SIMD tails may then load a full vector without leaving the buffer.
    constexpr std::size_t line = MINNOW_ALIGNMENT;
    return std::max<std::size_t>(line, (bytes + line - 1) / line * line);
  }

  std::unique_ptr<void, detail::AlignedDelete> storage_;
  Shape<Rank> shape_{};
  index_t size_ = 0;
  index_t capacity_ = 0;
};

}  // namespace minnow
