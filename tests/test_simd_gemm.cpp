// minnow::simd::gemm against its scalar reference, on shapes that hit every edge: partial register
// tiles in both directions, K longer than one cache block, transposed operands, accumulation, threads.
#include "test_support.hpp"

#include <minnow/simd/gemm.hpp>
#include <minnow/threads.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <thread>

using namespace minnow;

namespace {

template <class T>
Tensor<T, 2> random_matrix(index_t rows, index_t cols, std::mt19937& rng) {
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  Tensor<T, 2> t({rows, cols});
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(dist(rng));
  return t;
}

template <class T>
void check_shape(index_t m, index_t n, index_t k, bool a_transposed, bool b_transposed, bool accumulate, bool threaded) {
  std::mt19937 rng(static_cast<unsigned>(m * 131 + n * 17 + k));
  // Stored transposed when the operand is read transposed, so the strides differ from row-major.
  const auto a = a_transposed ? random_matrix<T>(k, m, rng) : random_matrix<T>(m, k, rng);
  const auto b = b_transposed ? random_matrix<T>(n, k, rng) : random_matrix<T>(k, n, rng);
  const index_t ldc = n + 3;  // C with padding between rows
  auto c = random_matrix<T>(m, ldc, rng);
  Tensor<T, 2> expected = c.clone();
  const auto sa = a_transposed ? simd::row_major<T>(a.data(), m).transposed() : simd::row_major<T>(a.data(), k);
  const auto sb = b_transposed ? simd::row_major<T>(b.data(), k).transposed() : simd::row_major<T>(b.data(), n);
  simd::gemm_reference<T>(m, n, k, sa, sb, expected.data(), ldc, accumulate);
  if (threaded) {
    simd::gemm_parallel<T>(m, n, k, sa, sb, c.data(), ldc, accumulate);
  } else {
    simd::gemm<T>(m, n, k, sa, sb, c.data(), ldc, accumulate);
  }
  double worst = 0.0;
  for (index_t i = 0; i < m; ++i) {
    for (index_t j = 0; j < ldc; ++j) {
      const double got = c(i, j), want = expected(i, j);
      // Padding columns must be untouched; the rest within float rounding of a k-term sum.
      worst = std::max(worst, j < n ? std::abs(got - want) / std::sqrt(static_cast<double>(k) + 1.0) : std::abs(got - want) * 1e9);
    }
  }
  INFO("m " << m << " n " << n << " k " << k << " aT " << a_transposed << " bT " << b_transposed << " acc " << accumulate);
  CHECK(worst < (std::is_same_v<T, float> ? 2e-6 : 1e-14));
}

}  // namespace

TEST_CASE("float gemm equals the scalar reference on every tail path") {
  for (const index_t m : {1, 7, 8, 9, 64, 131}) {
    for (const index_t n : {1, 47, 48, 49, 100}) {
      for (const index_t k : {1, 5, 256, 300}) {
        check_shape<float>(m, n, k, false, false, false, false);
      }
    }
  }
  for (const bool at : {false, true}) {
    for (const bool bt : {false, true}) {
      for (const bool acc : {false, true}) {
        check_shape<float>(37, 53, 261, at, bt, acc, false);
      }
    }
  }
}

TEST_CASE("every tile kernel gives the scalar twin's bits, on every tail and threaded") {
  // Each output is the same fma chain over k on every path, so the paths agree exactly.
  for (const index_t m : {1, 7, 9, 131}) {
    for (const index_t n : {24, 47, 49, 100}) {
      for (const index_t k : {1, 5, 300}) {
        for (const bool transposed : {false, true}) {
          std::mt19937 rng(static_cast<unsigned>(m * 7 + n * 3 + k));
          const auto a = random_matrix<float>(m, k, rng);
          const auto b = transposed ? random_matrix<float>(n, k, rng) : random_matrix<float>(k, n, rng);
          const auto c0 = random_matrix<float>(m, n, rng);
          const auto sa = simd::row_major<float>(a.data(), k);
          const auto sb = transposed ? simd::row_major<float>(b.data(), k).transposed() : simd::row_major<float>(b.data(), n);
          const auto run = [&](auto arch, bool threaded) {
            Tensor<float, 2> c = c0.clone();
            if (threaded) {
              simd::gemm_parallel<float, decltype(arch)>(m, n, k, sa, sb, c.data(), n, true);
            } else {
              simd::gemm<float, decltype(arch)>(m, n, k, sa, sb, c.data(), n, true);
            }
            return c;
          };
          const auto expected = run(simd::arch::scalar{}, false);
          for_each_arch([&](auto arch) {
            INFO(decltype(arch)::name << " m " << m << " n " << n << " k " << k << " bT " << transposed);
            for (const bool threaded : {false, true}) {
              const auto got = run(arch, threaded);
              CHECK(std::memcmp(got.data(), expected.data(), sizeof(float) * static_cast<std::size_t>(m * n)) == 0);
            }
          });
        }
      }
    }
  }
}

TEST_CASE("the blocked loops cover products larger than one cache block in every direction") {
  check_shape<float>(300, 2400, 600, false, true, true, false);
}

TEST_CASE("threaded gemm gives the same numbers") {
  check_shape<float>(200, 1000, 700, false, true, false, true);
  check_shape<float>(1000, 40, 900, true, false, true, true);
}

TEST_CASE("double gemm goes through Eigen and matches the reference") {
  check_shape<double>(13, 29, 31, true, true, true, false);
  check_shape<double>(13, 29, 31, false, false, false, false);
}

TEST_CASE("k = 0 and empty products") {
  Tensor<float, 2> a({3, 1}), b({1, 4}), c({3, 4}, 5.0f);
  simd::gemm<float>(3, 4, 0, simd::row_major<float>(a.data(), 0), simd::row_major<float>(b.data(), 4), c.data(), 4, true);
  CHECK(c(2, 3) == 5.0f);
  simd::gemm<float>(3, 4, 0, simd::row_major<float>(a.data(), 0), simd::row_major<float>(b.data(), 4), c.data(), 4, false);
  CHECK(c.array().abs().maxCoeff() == 0.0f);
  simd::gemm<float>(0, 4, 3, simd::row_major<float>(a.data(), 3), simd::row_major<float>(b.data(), 4), c.data(), 4, false);
}

TEST_CASE("set_threads refuses bad counts, and threads that each set their own count do not race") {
  CHECK_THROWS_WITH(minnow::set_threads(0), "set_threads: the thread count must be in [1, 4096], got 0");
  CHECK_THROWS_AS(minnow::set_threads(-1), minnow::value_error);
  CHECK_THROWS_AS(minnow::set_threads(minnow::max_thread_count + 1), minnow::value_error);
  minnow::set_threads(2);
  // Two threads set different counts at once and each multiplies with its own (ThreadSanitizer checks the
  // race); Catch's assertions are not thread-safe, so the threads only compute and the checks come after.
  const index_t m = 96, n = 80, k = 128;
  std::mt19937 rng(5);
  const auto a = random_matrix<float>(m, k, rng);
  const auto b = random_matrix<float>(k, n, rng);
  Tensor<float, 2> expected({m, n}), got[2] = {Tensor<float, 2>({m, n}), Tensor<float, 2>({m, n})};
  simd::gemm_reference<float>(m, n, k, simd::row_major<float>(a.data(), k), simd::row_major<float>(b.data(), n), expected.data(), n, false);
  int seen[2] = {0, 0};
  const auto work = [&](int slot, int threads) {
    minnow::set_threads(threads);
    simd::gemm_parallel<float>(m, n, k, simd::row_major<float>(a.data(), k), simd::row_major<float>(b.data(), n), got[slot].data(), n, false);
    seen[slot] = minnow::detail::max_threads();
  };
  std::thread first(work, 0, 1), second(work, 1, 3);
  first.join();
  second.join();
  for (const auto& c : got) CHECK((c.array() - expected.array()).abs().maxCoeff() < 1e-4f);
#if defined(_OPENMP)
  CHECK(seen[0] == 1);
  CHECK(seen[1] == 3);
  CHECK(minnow::detail::max_threads() == 2);  // the calling thread's own setting is untouched
#endif
}
