// Tests for minnow/tensor.hpp: views, const-correctness, reshape, Eigen maps, alignment, zero-size, errors.
#include <minnow/tensor.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

using minnow::Shape;
using minnow::Tensor;
using minnow::TensorView;

// A const view must not be writable, and a mutable view must not be made from a const one.
static_assert(std::is_const_v<std::remove_reference_t<decltype(std::declval<TensorView<const float, 2>>()(0, 0))>>);
static_assert(std::is_convertible_v<TensorView<float, 2>, TensorView<const float, 2>>);
static_assert(!std::is_convertible_v<TensorView<const float, 2>, TensorView<float, 2>>);
static_assert(!std::is_constructible_v<TensorView<float, 2>, TensorView<const float, 2>>);
static_assert(!std::is_convertible_v<TensorView<float, 2>, TensorView<float, 3>>);
// Tensors are move-only: copies are explicit (clone()).
static_assert(!std::is_copy_constructible_v<Tensor<float, 2>>);
static_assert(std::is_nothrow_move_constructible_v<Tensor<float, 2>>);
// A const tensor gives only read-only views.
static_assert(!std::is_convertible_v<const Tensor<float, 1>&, TensorView<float, 1>>);
static_assert(std::is_convertible_v<const Tensor<float, 1>&, TensorView<const float, 1>>);
// Writes through a const view's maps do not compile either.
template <class View>
concept writable_through_array = requires(View v) { v.array()(0) = 1.0f; };
static_assert(writable_through_array<TensorView<float, 2>>);
static_assert(!writable_through_array<TensorView<const float, 2>>);

namespace {

template <class Fn>
std::string message_of(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "<no exception>";
}

}  // namespace

TEST_CASE("a tensor is zero-initialised with the requested shape") {
  Tensor<float, 2> t({3, 4});
  CHECK(t.shape() == Shape<2>{3, 4});
  CHECK(t.size() == 12);
  CHECK(t.dim(0) == 3);
  CHECK(t.dim(1) == 4);
  for (minnow::index_t i = 0; i < t.size(); ++i) CHECK(t.data()[i] == 0.0f);
  Tensor<double, 3> filled({2, 1, 2}, 1.5);
  CHECK(filled.array().sum() == 6.0);
}

TEST_CASE("element access is row-major") {
  Tensor<int, 3> t({2, 3, 4});
  std::iota(t.data(), t.data() + t.size(), 0);
  CHECK(t(0, 0, 0) == 0);
  CHECK(t(0, 0, 3) == 3);
  CHECK(t(0, 2, 1) == 9);
  CHECK(t(1, 0, 0) == 12);
  CHECK(t(1, 2, 3) == 23);
  t(1, 1, 1) = -7;
  CHECK(t.data()[1 * 12 + 1 * 4 + 1] == -7);
}

TEST_CASE("writes through views and Eigen maps land in the tensor") {
  Tensor<float, 2> t({3, 4});
  auto v = t.view();
  static_assert(std::is_same_v<decltype(v), TensorView<float, 2>>);
  v.array() = 1.0f;
  v.array() *= 2.0f;
  CHECK(t(2, 3) == 2.0f);
  v(1, 2) = 5.0f;
  const float s = v.matrix().row(1).sum();
  CHECK(s == 2.0f + 2.0f + 5.0f + 2.0f);
  v.matrix().col(0).setConstant(-1.0f);  // column 0 of a row-major matrix: elements 0, 4, 8
  CHECK(t.data()[0] == -1.0f);
  CHECK(t.data()[4] == -1.0f);
  CHECK(t.data()[8] == -1.0f);
  CHECK(t.data()[1] == 2.0f);
  auto m = v.matrix(2, 6);  // any rank as rows x cols
  CHECK(m.rows() == 2);
  CHECK(m(1, 0) == t(1, 2));
}

TEST_CASE("a const view reads what the mutable one wrote") {
  Tensor<float, 2> t({3, 4});
  auto v = t.view();
  TensorView<const float, 2> cv = v;
  v(2, 1) = 3.0f;
  CHECK(cv(2, 1) == 3.0f);
  CHECK(cv.data() == t.data());
  const Tensor<float, 2>& ct = t;
  TensorView<const float, 2> from_const_tensor = ct;
  CHECK(from_const_tensor.matrix().sum() == 3.0f);
}

TEST_CASE("reshape keeps the elements and checks the count") {
  Tensor<float, 2> t({3, 4});
  std::iota(t.data(), t.data() + t.size(), 0.0f);
  TensorView<const float, 2> cv = t.view();
  auto flat = cv.reshape<1>(12);
  CHECK(flat.shape() == Shape<1>{12});
  CHECK(flat(7) == 7.0f);
  auto cube = cv.reshape<3>(2, -1, 3);
  CHECK(cube.shape() == Shape<3>{2, 2, 3});
  CHECK(cube(1, 1, 2) == 11.0f);
  CHECK_THROWS_AS(cv.reshape<2>(5, 3), minnow::shape_error);
  CHECK(message_of([&] { (void)cv.reshape<2>(5, 3); }) == "reshape: 12 elements cannot be viewed as [5, 3]");
  CHECK(message_of([&] { (void)cv.reshape<2>(5, -1); }) == "reshape: 12 elements cannot be viewed as [5, -1]");
  CHECK(message_of([&] { (void)cv.reshape<2>(-1, -1); }) ==
        "reshape: invalid target shape [-1, -1] (extents must be >= 0, at most one -1)");
  CHECK(message_of([&] { (void)cv.reshape<2>(-2, -6); }) ==
        "reshape: invalid target shape [-2, -6] (extents must be >= 0, at most one -1)");
  // shape_error is an invalid_argument, so generic handlers catch it.
  CHECK_THROWS_AS(cv.reshape<1>(13), std::invalid_argument);
}

TEST_CASE("matrix(rows, cols) checks the count") {
  Tensor<float, 3> t({2, 3, 4});
  CHECK(message_of([&] { (void)t.view().matrix(5, 5); }) == "matrix: 24 elements of [2, 3, 4] cannot be viewed as [5, 5]");
  CHECK_THROWS_AS(t.view().matrix(-4, -6), minnow::shape_error);
  CHECK(t.view().matrix(6, 4).cols() == 4);
}

TEST_CASE("sub-views and slices along the first dimension") {
  Tensor<int, 3> t({4, 2, 3});
  std::iota(t.data(), t.data() + t.size(), 0);
  auto v = t.view();
  auto sample = v[2];
  CHECK(sample.shape() == Shape<2>{2, 3});
  CHECK(sample(0, 0) == 12);
  CHECK(sample(1, 2) == 17);
  auto batch = v.slice(1, 3);
  CHECK(batch.shape() == Shape<3>{2, 2, 3});
  CHECK(batch(0, 0, 0) == 6);
  CHECK(v.slice(4, 4).empty());
  CHECK(message_of([&] { (void)v.slice(3, 5); }) == "slice: [3, 5) is not inside dimension 0 of [4, 2, 3]");
  CHECK_THROWS_AS(v.slice(-1, 2), minnow::shape_error);
  CHECK_THROWS_AS(v.slice(3, 2), minnow::shape_error);
}

TEST_CASE("storage is 64-byte aligned and maps say so") {
  for (minnow::index_t n : {1, 3, 17, 1000}) {
    Tensor<float, 1> t({n});
    CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % 64 == 0);
    CHECK(t.view().is_aligned());
  }
  Tensor<float, 2> t({3, 5});
  static_assert(std::is_same_v<decltype(t.matrix()), minnow::MatrixMap<float, Eigen::Aligned64>>);
  static_assert(std::is_same_v<decltype(t.view().matrix()), minnow::MatrixMap<float, Eigen::Unaligned>>);
  CHECK_FALSE(t.view()[1].is_aligned());  // row 1 starts 20 bytes in
  CHECK(t.view().matrix<Eigen::Aligned64>().size() == 15);
}

TEST_CASE("zero-size tensors and views are valid") {
  Tensor<float, 2> t({0, 5});
  CHECK(t.size() == 0);
  CHECK(t.empty());
  CHECK(t.array().size() == 0);
  CHECK(t.matrix().rows() == 0);
  CHECK(t.view().reshape<1>(0).size() == 0);
  CHECK(t.view().reshape<3>(0, 7, 2).shape() == Shape<3>{0, 7, 2});
  // As in PyTorch, -1 next to a 0 extent is ambiguous (any value fits), so it is refused.
  CHECK_THROWS_AS(t.view().reshape<3>(0, 7, -1), minnow::shape_error);
  Tensor<float, 2> copy = t.clone();
  CHECK(copy.shape() == Shape<2>{0, 5});
  TensorView<float, 1> empty_view(nullptr, {0});
  CHECK(empty_view.array().sum() == 0.0f);
  TensorView<float, 2> defaulted;
  CHECK(defaulted.size() == 0);
}

TEST_CASE("bad shapes and null data throw typed errors") {
  CHECK(message_of([] { Tensor<float, 2> t({3, -1}); }) == "Tensor: negative extent in shape [3, -1]");
  CHECK_THROWS_AS((Tensor<float, 2>({3, -1})), minnow::shape_error);
  CHECK(message_of([] { TensorView<float, 1> v(nullptr, {4}); }) == "TensorView: null data for shape [4]");
  CHECK_THROWS_AS((TensorView<float, 1>(nullptr, {4})), minnow::value_error);
  const minnow::index_t huge = minnow::index_t{1} << 40;
  CHECK(message_of([&] { Tensor<float, 3> t({huge, huge, huge}); }) ==
        "Tensor: shape [1099511627776, 1099511627776, 1099511627776] has too many elements");
}

TEST_CASE("sizes whose bytes or products overflow are shape errors, never short buffers") {
  using minnow::index_t;
  // 2^62 floats are 2^64 bytes: the byte count would wrap to 0 and a 64-byte buffer would back size() 2^62.
  CHECK(message_of([] { Tensor<float, 1> t({index_t{1} << 62}); }) ==
        "Tensor: shape [4611686018427387904] has 4611686018427387904 elements of 4 bytes, more than any allocation can hold");
  CHECK_THROWS_AS((Tensor<double, 2>({index_t{1} << 31, index_t{1} << 30})), minnow::shape_error);
  Tensor<float, 1> kept({8}, 1.0f);
  CHECK_THROWS_AS(kept.resize({index_t{1} << 61}), minnow::shape_error);
  CHECK(kept.size() == 8);  // a refused resize changes nothing
  CHECK(kept(7) == 1.0f);
  // reshape with -1: the known extents' product overflows before the division.
  Tensor<float, 1> t({12});
  CHECK(message_of([&] { (void)t.view().reshape<3>(index_t{1} << 40, index_t{1} << 40, -1); }) ==
        "reshape: target shape [1099511627776, 1099511627776, -1] has too many elements");
  // matrix(rows, cols): rows·cols wraps to 12 without the check (2^62 + 3) · 4 = 12 mod 2^64.
  CHECK_THROWS_AS(t.view().matrix((index_t{1} << 62) + 3, 4), minnow::shape_error);
  CHECK_THROWS_AS(t.view().matrix(4, (index_t{1} << 62) + 3), minnow::shape_error);
}

TEST_CASE("clone copies, move transfers, resize reuses the buffer") {
  Tensor<float, 1> a({4}, 2.0f);
  Tensor<float, 1> b = a.clone();
  b(0) = 9.0f;
  CHECK(a(0) == 2.0f);
  const float* storage = b.data();
  Tensor<float, 1> c = std::move(b);
  CHECK(c.data() == storage);
  CHECK(c(0) == 9.0f);
  c.resize({3});  // smaller: same buffer, no allocation
  CHECK(c.data() == storage);
  CHECK(c.shape() == Shape<1>{3});
  c.resize({1000});
  CHECK(c.size() == 1000);
  CHECK(c(999) == 0.0f);  // new storage is zero
}

TEST_CASE("copy_from checks shapes") {
  Tensor<float, 2> a({2, 3}, 1.0f);
  Tensor<float, 2> b({2, 3});
  b.view().copy_from(a);
  CHECK(b.array().sum() == 6.0f);
  Tensor<float, 2> c({3, 2});
  CHECK(message_of([&] { c.view().copy_from(a); }) == "copy_from: source [2, 3] does not match destination [3, 2]");
  Tensor<float, 2> d(a.view());
  CHECK(d(1, 2) == 1.0f);
}

TEST_CASE("shapes format as in error messages") {
  CHECK(minnow::to_string(Shape<3>{5, 3, 1}) == "[5, 3, 1]");
  CHECK(minnow::to_string(Shape<0>{}) == "[]");
}
