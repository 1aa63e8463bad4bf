#pragma once
// Helpers shared by the tests.
#include <catch2/catch.hpp>
#include <minnow/data/fashion_mnist.hpp>
#include <minnow/nn/sequential.hpp>
#include <minnow/simd/arch.hpp>

#include <algorithm>
#include <cstring>
#include <atomic>
#include <cmath>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include <unistd.h>

/// Ends the running test as skipped: it prints the marker that CTest's SKIP_REGULAR_EXPRESSION (set for every
/// test in tests/CMakeLists.txt) reports as "Not Run (Skipped)", never as passed.
#define MINNOW_SKIP(reason)                                             \
  do {                                                                  \
    std::cout << "MINNOW_TEST_SKIPPED: " << reason << std::endl;        \
    return;                                                             \
  } while (false)

/// Skips the running test when Fashion-MNIST is not installed.
#define MINNOW_REQUIRE_FASHION_MNIST()                                                                            \
  do {                                                                                                            \
    if (!std::filesystem::is_directory(minnow::data::default_fashion_mnist_dir())) {                              \
      MINNOW_SKIP("Fashion-MNIST not found in " << minnow::data::default_fashion_mnist_dir()                      \
                                                << " (apt-get install dataset-fashion-mnist)");                   \
    }                                                                                                             \
  } while (false)

/// Calls `f(tag)` for every kernel tag this CPU runs (scalar, then avx2, avx2_vnni, avx512, avx512_vnni on x86-64 or neon,
/// neon_dot on AArch64), so each path is compared
/// with the scalar twin; a path the CPU lacks is reported once on stdout instead of run.
template <class F>
void for_each_arch(F&& f) {
  f(minnow::simd::arch::scalar{});
  const auto run_if = [&](auto tag) {
    if (minnow::simd::cpu_has(decltype(tag)::isa)) {
      f(tag);
    } else {
      static bool reported = false;
      if (!reported) std::cout << "MINNOW_PATH_SKIPPED: " << decltype(tag)::name << " (this CPU lacks it)" << std::endl;
      reported = true;
    }
  };
#if MINNOW_X86_KERNELS
  run_if(minnow::simd::arch::avx2{});
  run_if(minnow::simd::arch::avx2_vnni{});
  run_if(minnow::simd::arch::avx512{});
  run_if(minnow::simd::arch::avx512_vnni{});
#elif MINNOW_ARM_KERNELS
  run_if(minnow::simd::arch::neon{});
  run_if(minnow::simd::arch::neon_dot{});
#endif
}

/// Lowers the kernels arch::automatic runs to at most `isa` for the scope, then restores them. A set of
/// the other architecture (an x86 set on AArch64, or the reverse) lowers nothing.
class IsaCeiling {
 public:
  explicit IsaCeiling(minnow::simd::Isa isa) : previous_(minnow::simd::set_isa(at_most(isa))) {}
  ~IsaCeiling() { minnow::simd::set_isa(previous_); }
  IsaCeiling(const IsaCeiling&) = delete;
  IsaCeiling& operator=(const IsaCeiling&) = delete;

 private:
  static minnow::simd::Isa at_most(minnow::simd::Isa isa) {
    using minnow::simd::Isa;
    const Isa cpu = minnow::simd::cpu_isa();
    if (minnow::simd::cpu_has(isa)) return isa;
    const auto arm = [](Isa i) { return i == Isa::neon || i == Isa::neon_dot; };
    return isa == Isa::scalar || arm(isa) == arm(cpu) ? std::min(isa, cpu) : cpu;
  }

  minnow::simd::Isa previous_;
};

/// The call is refused with an exception of type `error` whose message matches the Catch matcher `matcher`.
#define CHECK_REFUSED(call, error, matcher) \
  do {                                      \
    CHECK_THROWS_AS(call, error);           \
    CHECK_THROWS_WITH(call, matcher);       \
  } while (false)

namespace test_support {

/// A fresh directory `<temp>/minnow_test.<pid>.<n>`, removed with its content at scope exit.
class ScratchDir {
 public:
  ScratchDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("minnow_test." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1)));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

/// `n` random 1×28×28 images (normal pixels) with labels i mod 10: enough to exercise training deterministically.
inline minnow::data::Dataset<float> synthetic_data(minnow::index_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  minnow::data::Dataset<float> d;
  d.images.resize({n, 1, 28, 28});
  d.labels.resize({n});
  for (minnow::index_t i = 0; i < d.images.size(); ++i) d.images.data()[i] = normal(rng);
  for (minnow::index_t i = 0; i < n; ++i) d.labels(i) = static_cast<std::int32_t>(i % 10);
  return d;
}

/// Bit-for-bit equality of every parameter of two models.
inline bool same_parameters(minnow::nn::Sequential<float>& a, minnow::nn::Sequential<float>& b) {
  const auto pa = a.parameters(), pb = b.parameters();
  if (pa.size() != pb.size()) return false;
  for (std::size_t i = 0; i < pa.size(); ++i) {
    if (pa[i].value.size() != pb[i].value.size() ||
        std::memcmp(pa[i].value.data(), pb[i].value.data(), sizeof(float) * static_cast<std::size_t>(pa[i].value.size())) != 0) {
      return false;
    }
  }
  return true;
}

/// The bytes of `n` elements at `p`: compared before and after a refused call (bit-exact, NaN included).
template <class T>
std::vector<unsigned char> raw(const T* p, long n) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(p);
  return {bytes, bytes + n * static_cast<long>(sizeof(T))};
}
template <class V>
std::vector<unsigned char> raw(const V& v) {
  return raw(v.data(), static_cast<long>(v.size()));
}

/// The whole content of a file (empty when it cannot be read).
inline std::vector<char> file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// The message of the exception of type E that `f` throws; fails the test when it throws nothing or something else.
template <class E>
std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("threw a different exception: " << e.what());
  } catch (...) {
    FAIL("threw a non-std exception");
  }
  FAIL("did not throw");
  return {};
}

/// Fills `data` with samples of N(mean, 1).
template <class T>
void fill_normal(T* data, long size, std::mt19937& rng, double mean = 0.0) {
  std::normal_distribution<double> normal(mean, 1.0);
  for (long i = 0; i < size; ++i) data[i] = static_cast<T>(normal(rng));
}

/// max |a − b| / (1 + |b|) over `size` elements: relative for large values, absolute near zero.
template <class A, class B>
double max_error(const A* a, const B* b, long size) {
  double worst = 0;
  for (long i = 0; i < size; ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])) / (1.0 + std::abs(static_cast<double>(b[i]))));
  }
  return worst;
}

}  // namespace test_support
