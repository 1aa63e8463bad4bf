// Distillation: softmax / log-softmax at a temperature, the KD loss (teacher as logits or probabilities),
// the combined KD + CE loss and SoftTargetLoss, against PyTorch 1.13 (tests/fixtures/generate_distill.py)
// to 1e-5 relative, against finite differences in double, and on bad input; the float row kernel's
// paths (scalar, AVX2, AVX-512) against each other bit for bit.
#include "test_support.hpp"
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <minnow/distill.hpp>
#include <minnow/train/trainer.hpp>  // only to prove SoftTargetLoss converts to train::LossFunction
#include <random>
#include <vector>

#include "fixtures.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

using namespace minnow;
using Catch::Matchers::Contains;
using distill::TeacherLogits;
using distill::TeacherProbabilities;
using fixtures::max_rel_error;
using fixtures::tensor;

namespace {

constexpr double kTolerance = 1e-5;

double scalar(const nlohmann::json& c, const std::string& name) {
  return c.at("tensors").at(name).at("data")[0].get<double>();
}

double rel_error(double value, double expected) {
  return std::abs(value - expected) / std::max(1.0, std::abs(expected));
}


template <class T>
Tensor<T, 2> random_logits(index_t rows, index_t cols, double scale, std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, scale);
  Tensor<T, 2> t({rows, cols});
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(normal(rng));
  return t;
}

Tensor<std::int32_t, 1> random_labels(index_t rows, index_t cols, std::mt19937_64& rng) {
  Tensor<std::int32_t, 1> y({rows});
  for (index_t i = 0; i < rows; ++i) y(i) = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(cols));
  return y;
}

/// Largest |analytic − central difference| / max(1, |numeric|) over every logit of `student`.
double gradient_error(Tensor<double, 2>& student, const Tensor<double, 2>& analytic,
                      const std::function<double()>& loss) {
  constexpr double h = 1e-6;
  double worst = 0.0;
  for (index_t i = 0; i < student.size(); ++i) {
    const double saved = student.data()[i];
    student.data()[i] = saved + h;
    const double up = loss();
    student.data()[i] = saved - h;
    const double down = loss();
    student.data()[i] = saved;
    const double numeric = (up - down) / (2 * h);
    worst = std::max(worst, std::abs(analytic.data()[i] - numeric) / std::max(1.0, std::abs(numeric)));
  }
  return worst;
}

}  // namespace

TEST_CASE("softmax and log_softmax match PyTorch at a temperature, finite for +-1e4 logits", "[distill][softmax]") {
  for (const auto& c : fixtures::cases("distill.json", "softmax")) {
    SECTION(c.at("name").get<std::string>()) {
      const double temperature = c.at("params").at("T");
      const auto logits = tensor<float, 2>(c, "logits");
      Tensor<float, 2> p(logits.shape()), logp(logits.shape());
      distill::softmax<float>(logits, temperature, p);
      distill::log_softmax<float>(logits, temperature, logp);
      CHECK(p.array().allFinite());
      CHECK(logp.array().allFinite());
      CHECK(max_rel_error(p, tensor<float, 2>(c, "softmax")) < kTolerance);
      CHECK(max_rel_error(logp, tensor<float, 2>(c, "log_softmax")) < kTolerance);
      // In place gives the same numbers.
      auto inplace = tensor<float, 2>(c, "logits");
      distill::softmax<float>(inplace, temperature, inplace);
      CHECK(max_rel_error(inplace, p) == 0.0);
    }
  }
}

TEMPLATE_TEST_CASE("softmax rows are distributions and log_softmax is their log", "[distill][softmax]", float, double) {
  using T = TestType;
  std::mt19937_64 rng(11);
  for (const index_t cols : {1, 3, 10, 31, 32, 1000}) {
    for (const index_t rows : {1, 7, 300}) {
      const auto z = random_logits<T>(rows, cols, 5.0, rng);
      Tensor<T, 2> p(z.shape()), logp(z.shape());
      distill::softmax<T>(z, 3.0, p);
      distill::log_softmax<T>(z, 3.0, logp);
      for (index_t i = 0; i < rows; ++i) CHECK(std::abs(p.matrix().row(i).sum() - T(1)) < T(1e-5));
      CHECK(((logp.array().exp() - p.array()).abs() < T(1e-6)).all());
    }
  }
}

TEST_CASE("kd_loss matches PyTorch: teacher as logits or probabilities, T in {1, 2, 4, 20}, logits x300",
          "[distill][kd]") {
  for (const auto& c : fixtures::cases("distill.json", "kd_loss")) {
    SECTION(c.at("name").get<std::string>()) {
      const double temperature = c.at("params").at("T");
      const auto student = tensor<float, 2>(c, "student");
      const auto teacher = tensor<float, 2>(c, "teacher");
      Tensor<float, 2> grad(student.shape(), 123.0f);
      distill::KdWorkspace<float> workspace;
      const double loss = c.at("params").at("teacher") == "logits"
                              ? distill::kd_loss(student, TeacherLogits(teacher), temperature, grad, workspace)
                              : distill::kd_loss(student, TeacherProbabilities(teacher), temperature, grad, workspace);
      CHECK(std::isfinite(loss));
      CHECK(rel_error(loss, scalar(c, "loss")) < kTolerance);
      CHECK(max_rel_error(grad, tensor<float, 2>(c, "dstudent")) < kTolerance);
    }
  }
}

TEST_CASE("combined_loss matches PyTorch: 0.7 KD + 0.3 CE", "[distill][combined]") {
  for (const auto& c : fixtures::cases("distill.json", "combined_loss")) {
    SECTION(c.at("name").get<std::string>()) {
      const double temperature = c.at("params").at("T"), alpha = c.at("params").at("alpha");
      const auto student = tensor<float, 2>(c, "student");
      const auto teacher = tensor<float, 2>(c, "teacher");
      const auto labels = tensor<std::int32_t, 1>(c, "labels");
      Tensor<float, 2> grad(student.shape());
      const double loss = distill::combined_loss(student, TeacherLogits(teacher), labels, temperature, alpha, grad);
      CHECK(rel_error(loss, scalar(c, "loss")) < kTolerance);
      CHECK(max_rel_error(grad, tensor<float, 2>(c, "dstudent")) < kTolerance);
    }
  }
}

TEST_CASE("kd_loss gradient matches central differences in double", "[distill][kd][gradcheck]") {
  std::mt19937_64 rng(5);
  for (const double temperature : {1.0, 2.5, 7.0}) {
    for (const double scale : {1.0, 6.0}) {
      INFO("T = " << temperature << ", logit scale " << scale);
      auto student = random_logits<double>(4, 7, scale, rng);
      const auto teacher = random_logits<double>(4, 7, scale, rng);
      Tensor<double, 2> grad(student.shape()), scratch(student.shape());
      (void)distill::kd_loss(student, TeacherLogits(teacher), temperature, grad);
      CHECK(gradient_error(student, grad, [&] {
              return distill::kd_loss(student, TeacherLogits(teacher), temperature, scratch);
            }) < 1e-7);

      // Probabilities with exact zeros (0 · log 0 = 0) and rows off 1 by 1e-4 (the gradient is the
      // exact derivative of the returned loss, not an approximation assuming rows sum to 1).
      Tensor<double, 2> p(teacher.shape());
      distill::softmax<double>(teacher, temperature, p);
      p(0, 3) = 0.0;
      p(2, 0) = 0.0;
      p.matrix().row(0) /= p.matrix().row(0).sum();
      p.matrix().row(2) /= p.matrix().row(2).sum();
      p.matrix().row(1) *= 1.0001;
      (void)distill::kd_loss(student, TeacherProbabilities(p), temperature, grad);
      CHECK(gradient_error(student, grad, [&] {
              return distill::kd_loss(student, TeacherProbabilities(p), temperature, scratch);
            }) < 1e-7);
    }
  }
}

TEST_CASE("combined_loss gradient matches central differences in double", "[distill][combined][gradcheck]") {
  std::mt19937_64 rng(6);
  for (const double alpha : {0.0, 0.3, 0.7, 1.0}) {
    for (const double temperature : {1.0, 4.0}) {
      INFO("alpha = " << alpha << ", T = " << temperature);
      auto student = random_logits<double>(5, 6, 2.0, rng);
      const auto teacher = random_logits<double>(5, 6, 2.0, rng);
      const auto labels = random_labels(5, 6, rng);
      Tensor<double, 2> grad(student.shape()), scratch(student.shape());
      (void)distill::combined_loss(student, TeacherLogits(teacher), labels, temperature, alpha, grad);
      CHECK(gradient_error(student, grad, [&] {
              return distill::combined_loss(student, TeacherLogits(teacher), labels, temperature, alpha, scratch);
            }) < 1e-7);
    }
  }
}

TEMPLATE_TEST_CASE("KD loss is >= 0 on random inputs and exactly 0 (with a 0 gradient) when student equals teacher",
                   "[distill][kd]", float, double) {
  using T = TestType;
  std::mt19937_64 rng(7);
  // 300 x 1000 runs on several threads; 1 class is always a perfect match.
  for (const auto& [rows, cols] :
       std::vector<std::pair<index_t, index_t>>{{1, 1}, {6, 1}, {16, 10}, {9, 33}, {300, 1000}}) {
    for (const double temperature : {0.5, 1.0, 4.0, 20.0}) {
      for (const double scale : {1.0, 300.0}) {
        INFO(rows << "x" << cols << ", T = " << temperature << ", scale " << scale);
        const auto s = random_logits<T>(rows, cols, scale, rng);
        const auto t = random_logits<T>(rows, cols, scale, rng);
        Tensor<T, 2> grad(s.shape());
        const double loss = distill::kd_loss(s, TeacherLogits(t), temperature, grad);
        CHECK(std::isfinite(loss));
        CHECK(loss >= 0.0);
        if (cols == 1) CHECK(loss == 0.0);
        Tensor<T, 2> p(t.shape());
        distill::softmax<T>(t, temperature, p);
        CHECK(distill::kd_loss(s, TeacherProbabilities(p), temperature, grad) >= -1e-6);

        const double same = distill::kd_loss(s, TeacherLogits(s), temperature, grad);
        CHECK(same == 0.0);
        CHECK(grad.array().abs().maxCoeff() == T(0));
      }
    }
  }
}

namespace {

/// What the KD row kernel writes for a batch: the gradient (with guard elements after it), the per-row
/// divergence less log(ratio_f), ratio_f, and the finished divergence.
struct RowKernelOut {
  std::vector<float> g;
  std::vector<double> kl_part, kl;
  std::vector<float> ratio;
};

constexpr index_t kGuard = 32;
constexpr float kGuardValue = 12345.0f;

/// The row kernel of path `arch` on `rows` rows of `cols` floats at s and t.
template <class Arch>
RowKernelOut run_row_kernel(Arch arch, const float* s, const float* t, index_t rows, index_t cols, double temperature,
                            double grad_scale) {
  distill::KdWorkspace<float> workspace;
  workspace.reserve(1, rows, cols, rows);
  RowKernelOut out;
  out.g.assign(static_cast<std::size_t>(rows * cols + kGuard), kGuardValue);
  out.kl_part.assign(static_cast<std::size_t>(rows), 0.0);
  simd::detail::softmax_kl_rows(arch, s, t, out.g.data(), rows, cols, static_cast<float>(1.0 / temperature), grad_scale,
                                workspace.block(0, 0), workspace.small(0), out.kl_part.data(), rows * cols);
  out.ratio.assign(workspace.small(0), workspace.small(0) + rows);
  out.kl = out.kl_part;
  distill::detail::finish_logs(workspace.small(0), rows, out.kl.data());
  return out;
}

/// Bit for bit the same, NaN payloads aside (which operand's NaN an operation returns is the one thing the
/// paths may order differently).
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) ? !std::isnan(b[i]) : std::memcmp(&a[i], &b[i], sizeof(T)) != 0) return false;
  }
  return true;
}

/// KL(softmax(t/T) ‖ softmax(s/T)) of one row in long double, classes with p = 0 dropped.
double reference_kl(const float* s, const float* t, index_t cols, double temperature) {
  long double ms = -std::numeric_limits<long double>::infinity(), mt = ms;
  for (index_t j = 0; j < cols; ++j) {
    ms = std::max<long double>(ms, s[j]);
    mt = std::max<long double>(mt, t[j]);
  }
  long double zs = 0, zt = 0;
  for (index_t j = 0; j < cols; ++j) {
    zs += std::exp((s[j] - ms) / temperature);
    zt += std::exp((t[j] - mt) / temperature);
  }
  long double kl = 0;
  for (index_t j = 0; j < cols; ++j) {
    const long double b = (t[j] - mt) / temperature;
    const long double p = std::exp(b) / zt;
    if (p > 0) kl += p * ((b - std::log(zt)) - ((s[j] - ms) / temperature - std::log(zs)));
  }
  return static_cast<double>(kl);
}

}  // namespace

TEST_CASE("the KD row kernel's scalar twin agrees with the Eigen block kernel", "[distill][kd][simd]") {
  std::mt19937_64 rng(12);
  distill::KdWorkspace<float> workspace;
  for (const index_t cols : {1, 5, 15, 16, 17, 31, 33, 64, 1000}) {
    for (const index_t rows : {1, 3, 7}) {
      for (const double temperature : {1.0, 4.0, 20.0}) {
        for (const double scale : {1.0, 300.0}) {
          INFO(rows << "x" << cols << ", T = " << temperature << ", scale " << scale);
          const auto s = random_logits<float>(rows, cols, scale, rng);
          const auto t = random_logits<float>(rows, cols, scale, rng);
          const auto twin = run_row_kernel(simd::arch::scalar{}, s.data(), t.data(), rows, cols, temperature, 1.0);
          workspace.reserve(1, rows, cols, rows);
          Tensor<float, 2> g_eigen(s.shape());
          std::vector<double> kl_eigen(static_cast<std::size_t>(rows));
          distill::detail::kd_block_logits(s.data(), t.data(), g_eigen.data(), rows, cols,
                                           static_cast<float>(1.0 / temperature), 1.0, workspace, 0, kl_eigen.data());
          CHECK(test_support::max_error(twin.g.data(), g_eigen.data(), s.size()) < 1e-6);
          // Both round a = (s − max s)/T and their exponentials in float: ~1e-8 absolute apart.
          for (std::size_t i = 0; i < kl_eigen.size(); ++i) {
            CHECK(std::abs(twin.kl[i] - kl_eigen[i]) <= 1e-7 + 1e-6 * std::abs(kl_eigen[i]));
          }
          // Equal rows: exactly 0.
          const auto same = run_row_kernel(simd::arch::scalar{}, s.data(), s.data(), rows, cols, temperature, 1.0);
          for (index_t i = 0; i < s.size(); ++i) CHECK(same.g[static_cast<std::size_t>(i)] == 0.0f);
          for (const double kl : same.kl) CHECK(kl == 0.0);
        }
      }
    }
  }
}

TEST_CASE("every path of the KD row kernel gives the scalar twin's bits, on every tail and on special values",
          "[distill][kd][simd]") {
  // Every path evaluates the same operations in the same order (simd/softmax_kl_rows.hpp), the row sums
  // included, so the comparison is bit for bit: gradient, divergence, ratio.
  std::mt19937_64 rng(13);
  std::uniform_real_distribution<float> wide(-80.0f, 80.0f);
  constexpr float inf = std::numeric_limits<float>::infinity();
  enum class Input {
    normal,
    large,
    equal_logits,
    student_is_teacher,
    teacher_neg_inf,
    student_neg_inf,
    subnormal_exp,
    near_lowest,
    student_nan,
    teacher_nan,
    student_pos_inf,
  };
  const std::pair<Input, const char*> inputs[] = {
      {Input::normal, "normal"},
      {Input::large, "uniform in +-80"},
      {Input::equal_logits, "all logits of a row equal"},
      {Input::student_is_teacher, "student equal to teacher"},
      {Input::teacher_neg_inf, "teacher -inf at every third class"},
      {Input::student_neg_inf, "student -inf at every fifth class"},
      {Input::subnormal_exp, "(z - max z)/T in [-110, -80]: subnormal and zero exponentials"},
      {Input::near_lowest, "logits near the lowest float: a partial chunk's unused lanes would overflow"},
      {Input::student_nan, "one NaN in the student's middle row"},
      {Input::teacher_nan, "one NaN in the teacher's middle row"},
      {Input::student_pos_inf, "one +inf in the student's middle row"},
  };
  for (const index_t cols : {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000}) {
    constexpr index_t rows = 3;
    for (const auto& [input, label] : inputs) {
      // Row starts of every alignment: the inputs start one float into their buffers.
      std::vector<float> s_buf(static_cast<std::size_t>(rows * cols + 1)), t_buf(s_buf.size());
      float* s = s_buf.data() + 1;
      float* t = t_buf.data() + 1;
      for (index_t i = 0; i < rows * cols; ++i) {
        const index_t j = i % cols;
        switch (input) {
          case Input::normal:
          case Input::student_is_teacher:
            s[i] = static_cast<float>(std::normal_distribution<double>(0.0, 3.0)(rng));
            t[i] = input == Input::student_is_teacher ? s[i]
                                                      : static_cast<float>(std::normal_distribution<double>(0.0, 3.0)(rng));
            break;
          case Input::large:
            s[i] = wide(rng);
            t[i] = wide(rng);
            break;
          case Input::equal_logits:
            s[i] = 80.0f;
            t[i] = -3.5f;
            break;
          case Input::teacher_neg_inf:
            s[i] = wide(rng);
            t[i] = j % 3 == 1 ? -inf : wide(rng);
            break;
          case Input::student_neg_inf:
            s[i] = j % 5 == 1 ? -inf : wide(rng);
            t[i] = wide(rng);
            break;
          case Input::subnormal_exp:
            // Class 0 is the maximum; the others' exponents fall where e^x is subnormal or rounds to 0.
            s[i] = j == 0 ? 0.0f : -80.0f - 30.0f * static_cast<float>(j) / static_cast<float>(cols);
            t[i] = j == 0 ? 0.0f : -110.0f + 30.0f * static_cast<float>(j) / static_cast<float>(cols);
            break;
          case Input::near_lowest:
            // (0 - max z)/T is +inf or huge for T <= 1: the lanes past the row must add nothing to the sums.
            s[i] = -3.0e38f * (1.0f - 0.01f * static_cast<float>(j % 7));
            t[i] = -3.0e38f * (1.0f - 0.013f * static_cast<float>(j % 5));
            break;
          case Input::student_nan:
          case Input::teacher_nan:
          case Input::student_pos_inf:
            s[i] = wide(rng);
            t[i] = wide(rng);
            break;
        }
      }
      // The odd value sits at the middle row's last class (in its partial chunk when there is one).
      const index_t odd = cols + cols - 1;
      if (input == Input::student_nan) s[odd] = std::numeric_limits<float>::quiet_NaN();
      if (input == Input::teacher_nan) t[odd] = std::numeric_limits<float>::quiet_NaN();
      if (input == Input::student_pos_inf) s[odd] = inf;
      const bool odd_row =
          input == Input::student_nan || input == Input::teacher_nan || input == Input::student_pos_inf;
      for (const double temperature : {1e-30, 0.5, 1.0, 4.0, 20.0}) {
        INFO(rows << "x" << cols << ", " << label << ", T = " << temperature);
        const auto twin = run_row_kernel(simd::arch::scalar{}, s, t, rows, cols, temperature, 0.25);
        for (index_t k = 0; k < kGuard; ++k) CHECK(twin.g[static_cast<std::size_t>(rows * cols + k)] == kGuardValue);
        if (input == Input::student_is_teacher) {
          for (index_t i = 0; i < rows * cols; ++i) CHECK(twin.g[static_cast<std::size_t>(i)] == 0.0f);
          for (const double kl : twin.kl) CHECK(kl == 0.0);
        } else if (odd_row) {
          // A NaN or +inf logit makes its row's divergence and gradient NaN; the other rows are untouched.
          for (index_t i = 0; i < rows; ++i) {
            CHECK(std::isnan(twin.kl[static_cast<std::size_t>(i)]) == (i == 1));
            for (index_t j = 0; j < cols; ++j) {
              CHECK(std::isnan(twin.g[static_cast<std::size_t>(i * cols + j)]) == (i == 1));
            }
          }
        } else if (input != Input::student_neg_inf) {
          for (const double kl : twin.kl) CHECK(std::isfinite(kl));
        }
        if (input == Input::teacher_neg_inf && temperature >= 0.5) {
          // A teacher −inf is a probability 0: the divergence is that of the finite classes.
          for (index_t i = 0; i < rows; ++i) {
            const double expected = reference_kl(s + i * cols, t + i * cols, cols, temperature);
            CHECK(std::abs(twin.kl[static_cast<std::size_t>(i)] - expected) <= 1e-6 * (1.0 + std::abs(expected)));
          }
        }
        for_each_arch([&](auto arch) {
          INFO(decltype(arch)::name);
          const auto got = run_row_kernel(arch, s, t, rows, cols, temperature, 0.25);
          CHECK(same_bits(got.g, twin.g));
          CHECK(same_bits(got.kl_part, twin.kl_part));
          CHECK(same_bits(got.ratio, twin.ratio));
          CHECK(same_bits(got.kl, twin.kl));
        });
      }
    }
  }
}

TEST_CASE("kd_loss, combined_loss and SoftTargetLoss give the same bits on every path", "[distill][kd][simd]") {
  std::mt19937_64 rng(14);
  // 300 x 1000 runs on several threads.
  for (const auto& [rows, cols] : std::vector<std::pair<index_t, index_t>>{{16, 10}, {9, 33}, {300, 1000}}) {
    const auto s = random_logits<float>(rows, cols, 3.0, rng);
    const auto t = random_logits<float>(rows, cols, 3.0, rng);
    const auto labels = random_labels(rows, cols, rng);
    std::vector<index_t> indices(static_cast<std::size_t>(rows));
    for (index_t i = 0; i < rows; ++i) indices[static_cast<std::size_t>(i)] = rows - 1 - i;
    for (const double temperature : {1.0, 4.0, 20.0}) {
      INFO(rows << "x" << cols << ", T = " << temperature);
      const auto run = [&] {
        std::vector<double> losses;
        std::vector<float> grads;
        Tensor<float, 2> g(s.shape());
        const auto keep = [&](double loss) {
          losses.push_back(loss);
          grads.insert(grads.end(), g.data(), g.data() + g.size());
        };
        keep(distill::kd_loss(s, TeacherLogits(t), temperature, g));
        keep(distill::combined_loss(s, TeacherLogits(t), labels, temperature, 0.7, g));
        distill::SoftTargetLoss<float> cached{TeacherLogits(t), temperature, 0.9};
        keep(cached(s, labels, indices, g));
        return std::pair{losses, grads};
      };
      std::pair<std::vector<double>, std::vector<float>> expected;
      {
        IsaCeiling scalar_only(simd::Isa::scalar);
        expected = run();
      }
      for_each_arch([&](auto arch) {
        INFO(decltype(arch)::name);
        IsaCeiling ceiling(decltype(arch)::isa);
        REQUIRE(simd::active_isa() == decltype(arch)::isa);
        const auto got = run();
        CHECK(same_bits(got.first, expected.first));
        CHECK(same_bits(got.second, expected.second));
      });
    }
  }
}

TEMPLATE_TEST_CASE("a NaN logit makes the KD loss NaN, on every path", "[distill][kd][simd]", float, double) {
  using T = TestType;
  std::mt19937_64 rng(15);
  for (const index_t cols : {10, 1000}) {
    for (const bool in_student : {true, false}) {
      auto s = random_logits<T>(4, cols, 3.0, rng);
      auto t = random_logits<T>(4, cols, 3.0, rng);
      (in_student ? s : t)(2, cols / 2) = std::numeric_limits<T>::quiet_NaN();
      Tensor<T, 2> g(s.shape());
      for_each_arch([&](auto arch) {
        INFO(decltype(arch)::name << ", " << cols << " classes, NaN in the " << (in_student ? "student" : "teacher"));
        IsaCeiling ceiling(decltype(arch)::isa);
        CHECK(std::isnan(distill::kd_loss(s, TeacherLogits(t), 4.0, g)));
        CHECK(std::isnan(g(2, 0)));
        CHECK(std::isfinite(g(1, 0)));
      });
    }
  }
}

TEST_CASE("kd_loss does not depend on the thread count or on which workspace is used", "[distill][kd]") {
  std::mt19937_64 rng(8);
  const auto s = random_logits<float>(513, 300, 3.0, rng);
  const auto t = random_logits<float>(513, 300, 3.0, rng);
  const auto labels = random_labels(513, 300, rng);
  Tensor<float, 2> g1(s.shape()), g2(s.shape()), g3(s.shape());
  distill::KdWorkspace<float> workspace;
#if defined(_OPENMP)
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
#endif
  const double one = distill::combined_loss(s, TeacherLogits(t), labels, 3.0, 0.6, g1, workspace);
#if defined(_OPENMP)
  omp_set_num_threads(2);
#endif
  const double two = distill::combined_loss(s, TeacherLogits(t), labels, 3.0, 0.6, g2, workspace);
  const double fresh = distill::combined_loss(s, TeacherLogits(t), labels, 3.0, 0.6, g3);
#if defined(_OPENMP)
  omp_set_num_threads(saved);
#endif
  CHECK(one == two);
  CHECK(one == fresh);
  CHECK(max_rel_error(g1, g2) == 0.0);
  CHECK(max_rel_error(g1, g3) == 0.0);
  // A smaller batch after a larger one reuses the grown workspace.
  Tensor<float, 2> small_grad({5, 300});
  CHECK(distill::kd_loss(s.view().slice(0, 5), TeacherLogits(t.view().slice(0, 5)), 3.0, small_grad.view(), workspace) >
        0.0);
}

TEST_CASE("SoftTargetLoss is an train::LossFunction over cached teacher outputs", "[distill][soft_targets]") {
  std::mt19937_64 rng(9);
  const index_t dataset = 40, batch = 6, classes = 10;
  const auto table_logits = random_logits<float>(dataset, classes, 2.0, rng);
  Tensor<float, 2> table_probs(table_logits.shape());
  distill::softmax<float>(table_logits, 4.0, table_probs);
  const auto logits = random_logits<float>(batch, classes, 2.0, rng);
  const auto labels = random_labels(batch, classes, rng);
  const std::vector<index_t> indices{3, 39, 0, 17, 17, 8};

  // The expected value: combined_loss on the gathered rows.
  Tensor<float, 2> gathered_logits({batch, classes}), gathered_probs({batch, classes});
  for (index_t r = 0; r < batch; ++r) {
    gathered_logits.matrix().row(r) = table_logits.matrix().row(indices[static_cast<std::size_t>(r)]);
    gathered_probs.matrix().row(r) = table_probs.matrix().row(indices[static_cast<std::size_t>(r)]);
  }
  for (const double alpha : {1.0, 0.5}) {
    Tensor<float, 2> expected_grad(logits.shape()), grad(logits.shape());
    const double expected =
        distill::combined_loss(logits, TeacherLogits(gathered_logits), labels, 4.0, alpha, expected_grad);
    train::LossFunction<float> loss = distill::SoftTargetLoss<float>(TeacherLogits(table_logits), 4.0, alpha);
    CHECK(loss(logits, labels, indices, grad) == expected);
    CHECK(max_rel_error(grad, expected_grad) == 0.0);

    const double expected_p =
        distill::combined_loss(logits, TeacherProbabilities(gathered_probs), labels, 4.0, alpha, expected_grad);
    const distill::SoftTargetLoss<float> from_probs{TeacherProbabilities(table_probs), 4.0, alpha};
    auto copy = from_probs;  // copies are independent callables
    CHECK(copy(logits, labels, indices, grad) == expected_p);
    CHECK(max_rel_error(grad, expected_grad) == 0.0);
  }

  distill::SoftTargetLoss<float> loss{TeacherLogits(table_logits), 4.0, 0.5};
  Tensor<float, 2> grad(logits.shape());
  const std::vector<index_t> bad{3, 40, 0, 17, 17, 8};
  CHECK_THAT(test_support::message_of<value_error>([&] { (void)loss(logits, labels, bad, grad); }),
             Contains("sample index 40") && Contains("batch position 1") && Contains("[0, 40)"));
  const std::vector<index_t> short_indices{1, 2};
  CHECK_THAT(test_support::message_of<shape_error>([&] { (void)loss(logits, labels, short_indices, grad); }),
             Contains("2 sample indices") && Contains("[6, 10]"));
  Tensor<float, 2> narrow({batch, 9}), narrow_grad({batch, 9});
  CHECK_THAT(test_support::message_of<shape_error>([&] { (void)loss(narrow, labels, indices, narrow_grad); }),
             Contains("[6, 9]") && Contains("[40, 10]"));
  Tensor<float, 2> bad_table({4, 3}, 0.5f);
  CHECK_THAT(test_support::message_of<value_error>([&] { distill::SoftTargetLoss<float>(TeacherProbabilities(bad_table), 2.0); }),
             Contains("row 0") && Contains("sum to 1.5"));
  CHECK_THAT(test_support::message_of<value_error>([&] { distill::SoftTargetLoss<float>(TeacherLogits(table_logits), 0.0); }),
             Contains("T = 0"));
}

TEST_CASE("distillation rejects bad input with messages naming the values", "[distill][errors]") {
  std::mt19937_64 rng(10);
  const auto s = random_logits<float>(3, 4, 1.0, rng);
  const auto t = random_logits<float>(3, 4, 1.0, rng);
  const auto labels = random_labels(3, 4, rng);
  Tensor<float, 2> grad(s.shape()), out(s.shape());

  SECTION("temperature <= 0, NaN or infinite") {
    for (const double bad : {0.0, -1.0}) {
      const auto message = test_support::message_of<value_error>([&] { (void)distill::kd_loss(s, TeacherLogits(t), bad, grad); });
      CHECK_THAT(message, Contains("kd_loss") && Contains("temperature T") && Contains("> 0") &&
                              Contains(minnow::detail::concat("T = ", bad)));
    }
    CHECK_THAT(test_support::message_of<value_error>([&] {
                 (void)distill::kd_loss(s, TeacherLogits(t), std::numeric_limits<double>::quiet_NaN(), grad);
               }),
               Contains("T = nan"));
    CHECK_THAT(test_support::message_of<value_error>(
                   [&] { (void)distill::kd_loss(s, TeacherLogits(t), std::numeric_limits<double>::infinity(), grad); }),
               Contains("T = inf"));
    CHECK_THAT(test_support::message_of<value_error>([&] { distill::softmax<float>(s, -2.0, out); }),
               Contains("softmax") && Contains("T = -2"));
    CHECK_THAT(
        test_support::message_of<value_error>([&] { distill::log_softmax<float>(s, std::numeric_limits<double>::quiet_NaN(), out); }),
        Contains("log_softmax") && Contains("T = nan"));
    CHECK_THAT(
        test_support::message_of<value_error>([&] { (void)distill::combined_loss(s, TeacherLogits(t), labels, 0.0, 0.5, grad); }),
        Contains("combined_loss") && Contains("T = 0"));
  }

  SECTION("temperatures whose 1/T or T² overflow are refused, the extremes that remain compute exactly") {
    for (const double bad : {1e-39, 1e-45, 1e300, 1e38}) {
      CHECK_THAT(test_support::message_of<value_error>([&] { (void)distill::kd_loss(s, TeacherLogits(t), bad, grad); }),
                 Contains("kd_loss") && Contains("computable in float") && Contains(minnow::detail::concat("T = ", bad)));
      CHECK_THAT(test_support::message_of<value_error>([&] { distill::softmax<float>(s, bad, out); }), Contains("softmax"));
    }
    // double has the wider range: 1e-39 and 1e38 compute there.
    Tensor<double, 2> sd({3, 4}, 0.5), gd({3, 4});
    CHECK(distill::kd_loss<double>(sd, TeacherLogits<double>(sd), 1e-39, gd) == 0.0);
    CHECK(distill::kd_loss<double>(sd, TeacherLogits<double>(sd), 1e38, gd) == 0.0);
    CHECK_THROWS_AS(distill::kd_loss<double>(sd, TeacherLogits<double>(sd), 1e300, gd), value_error);
    // A student equal to its teacher: exactly 0 loss and gradient at the extremes float accepts.
    for (const double extreme : {3e-39, 1e-30, 1e30, 8e37}) {
      INFO("T = " << extreme);
      CHECK(distill::kd_loss(s, TeacherLogits(s), extreme, grad) == 0.0);
      CHECK((grad.array() == 0.0f).all());
      const double loss = distill::kd_loss(s, TeacherLogits(t), extreme, grad);
      CHECK(!std::isnan(loss));
      CHECK(grad.array().isFinite().all());
      Tensor<float, 2> p(s.shape());
      distill::softmax<float>(t, 1.0, p);
      CHECK(!std::isnan(distill::kd_loss(s, TeacherProbabilities(p), extreme, grad)));
      CHECK(grad.array().isFinite().all());
    }
  }

  SECTION("shape mismatch") {
    const Tensor<float, 2> wide({3, 5});
    Tensor<float, 2> wide_grad({3, 5}), tall({4, 4});
    CHECK_THAT(test_support::message_of<shape_error>([&] { (void)distill::kd_loss(s, TeacherLogits(wide), 2.0, grad); }),
               Contains("teacher logits [3, 5]") && Contains("student logits [3, 4]"));
    CHECK_THAT(test_support::message_of<shape_error>([&] { (void)distill::kd_loss(s, TeacherProbabilities(wide), 2.0, grad); }),
               Contains("teacher probabilities [3, 5]") && Contains("student logits [3, 4]"));
    CHECK_THAT(test_support::message_of<shape_error>([&] { (void)distill::kd_loss(s, TeacherLogits(t), 2.0, wide_grad); }),
               Contains("gradient [3, 5]") && Contains("student logits [3, 4]"));
    CHECK_THAT(test_support::message_of<shape_error>([&] { distill::softmax<float>(s, 1.0, tall); }),
               Contains("output [4, 4]") && Contains("logits [3, 4]"));
    const Tensor<float, 2> empty_classes({3, 0});
    Tensor<float, 2> empty_grad({3, 0});
    CHECK_THAT(test_support::message_of<shape_error>(
                   [&] { (void)distill::kd_loss(empty_classes, TeacherLogits(empty_classes), 1.0, empty_grad); }),
               Contains("[3, 0]") && Contains("no classes"));
    const Tensor<std::int32_t, 1> two_labels({2});
    CHECK_THAT(
        test_support::message_of<shape_error>([&] { (void)distill::combined_loss(s, TeacherLogits(t), two_labels, 1.0, 0.5, grad); }),
        Contains("2 labels") && Contains("[3, 4]"));
  }

  SECTION("probabilities not summing to 1, or negative") {
    Tensor<float, 2> p(s.shape());
    distill::softmax<float>(t, 1.0, p);
    p(1, 2) += 0.01f;
    CHECK_THAT(test_support::message_of<value_error>([&] { (void)distill::kd_loss(s, TeacherProbabilities(p), 1.0, grad); }),
               Contains("row 1") && Contains("sum to 1.01") && Contains("within 0.001"));
    distill::softmax<float>(t, 1.0, p);
    p(2, 0) = -p(2, 0);
    p(2, 1) -= 2 * p(2, 0);  // keep the row sum at 1: the sign alone must be caught
    CHECK_THAT(test_support::message_of<value_error>([&] { (void)distill::kd_loss(s, TeacherProbabilities(p), 1.0, grad); }),
               Contains("row 2, class 0") && Contains(">= 0"));
    p(2, 0) = std::numeric_limits<float>::quiet_NaN();
    CHECK_THAT(test_support::message_of<value_error>([&] { (void)distill::kd_loss(s, TeacherProbabilities(p), 1.0, grad); }),
               Contains("row 2, class 0 is nan"));
    distill::softmax<float>(t, 1.0, p);
    p(0, 0) += 5e-4f;  // inside the tolerance
    CHECK_NOTHROW(distill::kd_loss(s, TeacherProbabilities(p), 1.0, grad));
  }

  SECTION("alpha outside [0, 1] and labels outside [0, C)") {
    for (const double bad : {-0.1, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
      CHECK_THAT(
          test_support::message_of<value_error>([&] { (void)distill::combined_loss(s, TeacherLogits(t), labels, 2.0, bad, grad); }),
          Contains("alpha must be in [0, 1]") && Contains(minnow::detail::concat("alpha = ", bad)));
    }
    auto bad_labels = labels.clone();
    bad_labels(2) = 4;
    CHECK_THAT(
        test_support::message_of<value_error>([&] { (void)distill::combined_loss(s, TeacherLogits(t), bad_labels, 2.0, 0.5, grad); }),
        Contains("label 4 at position 2") && Contains("[0, 4)"));
  }

  SECTION("an empty batch is a loss of 0") {
    const Tensor<float, 2> none({0, 4});
    Tensor<float, 2> none_grad({0, 4});
    CHECK(distill::kd_loss(none, TeacherLogits(none), 2.0, none_grad) == 0.0);
  }
}
