// A user's program: includes the umbrella header and the int8 GEMM's, and checks computations end to end
// with whatever flags the user's build gives (no -march: the kernels are still chosen for the CPU at run
// time) and whichever
// compiler it uses (the tests build it with g++ and with clang).
#include <minnow/infer/qgemm.hpp>
#include <minnow/infer/reference.hpp>
#include <minnow/minnow.hpp>

#include <cstdio>
#include <cstring>
#include <random>

namespace {

// The int8 GEMM of the kernels this build chose equals the scalar oracle bit for bit.
bool int8_gemm_is_exact() {
  std::mt19937 rng(1);
  const minnow::index_t m = 5, n = 50, k = 70;
  minnow::Tensor<std::uint8_t, 2> x({m, k});
  for (minnow::index_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<std::uint8_t>(rng());
  minnow::infer::Int8Weights w;
  w.name = "fc";
  w.grid = {-128, 127};
  w.values.resize({n, k});
  for (minnow::index_t i = 0; i < w.values.size(); ++i) w.values.data()[i] = static_cast<std::int8_t>(rng());
  for (minnow::index_t j = 0; j < n; ++j) w.params.push_back({0.01f, static_cast<std::int32_t>(j % 5) - 2});
  const minnow::quant::AffineParams xp{0.02f, 3}, out{0.5f, 128};
  minnow::infer::QuantizedActivations a;
  minnow::infer::pack_activations(x, xp, a);
  minnow::Tensor<std::uint8_t, 2> y({m, n}), expected({m, n});
  minnow::infer::qgemm(a, minnow::infer::pack_weights(w), {}, out, y.view());
  minnow::infer::qgemm_reference<std::uint8_t>(x, xp, w, {}, out, expected.view());
  return std::memcmp(y.data(), expected.data(), static_cast<std::size_t>(y.size())) == 0;
}

// PyTorch's default per-tensor uint8 fake quantization puts every value on its grid: quantizing twice
// changes nothing.
bool fake_quantize_is_idempotent() {
  minnow::Tensor<float, 1> x({1000}), once({1000}), twice({1000});
  std::mt19937 rng(2);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  for (minnow::index_t i = 0; i < x.size(); ++i) x(i) = dist(rng);
  minnow::quant::PerTensorAffine q;
  q.observe(x);
  q.fake_quantize(x.view(), once.view());
  q.fake_quantize(once.view(), twice.view());
  return std::memcmp(once.data(), twice.data(), sizeof(float) * 1000) == 0;
}

}  // namespace

int main() {
  minnow::Tensor<float, 2> t({3, 4});
  auto v = t.view();
  v.array() = 1.0f;
  v.array() *= 2.0f;
  const float row_sum = v.matrix().row(1).sum();
  minnow::TensorView<const float, 2> cv = v;
  const auto flat = cv.reshape<1>(12);
  const bool gemm = int8_gemm_is_exact(), fq = fake_quantize_is_idempotent();
  std::printf("minnow %d.%d.%d: row sum %.1f, %td elements; int8 GEMM (%s kernels) %s; fake quantize %s\n",
              MINNOW_VERSION_MAJOR, MINNOW_VERSION_MINOR, MINNOW_VERSION_PATCH, static_cast<double>(row_sum), flat.size(),
              minnow::simd::isa_name(minnow::simd::active_isa()), gemm ? "exact" : "WRONG", fq ? "idempotent" : "WRONG");
  return row_sum == 8.0f && flat.size() == 12 && gemm && fq ? 0 : 1;
}
