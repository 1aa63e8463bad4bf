// README "One call each": the knowledge-distillation loss and its gradient for a batch.
// The code between the snippet markers appears verbatim in README.md.
#include "../test_support.hpp"

#include <minnow/distill.hpp>
#include <minnow/tensor.hpp>

#include <cmath>

TEST_CASE("kd_loss: the loss and gradient of a batch in one call", "[snippets][distill]") {
  // snippet begin: kd_loss
  minnow::Tensor<float, 2> student({2, 2}), teacher({2, 2}), grad({2, 2});   // logits [batch, classes]
  student.array() << 0.0f, 0.0f, 1.0f, 1.0f;
  teacher.array() << std::log(9.0f), 0.0f, 0.0f, std::log(9.0f);
  const double T = 2.0;  // loss = (T²/B) Σ KL(softmax(teacher/T) ‖ softmax(student/T)), grad = (T/B)(q − p)
  const double loss = minnow::distill::kd_loss(student, minnow::distill::TeacherLogits(teacher), T, grad);
  // snippet end

  // By hand: at T = 2 the teacher's rows are softmax(ln 3, 0) = (3/4, 1/4) and (1/4, 3/4), the student's
  // (1/2, 1/2). KL per row = 3/4 ln(3/2) + 1/4 ln(1/2); the loss is (4 / 2) · 2 · KL.
  const double kl = 0.75 * std::log(1.5) + 0.25 * std::log(0.5);
  CHECK(loss == Approx(4.0 * kl).epsilon(1e-6));
  CHECK(loss == Approx(0.5232481).epsilon(1e-6));
  // (T / B)(q − p) = 1 · (1/2 − 3/4, 1/2 − 1/4) and the mirror image.
  CHECK(grad(0, 0) == Approx(-0.25).margin(1e-6));
  CHECK(grad(0, 1) == Approx(0.25).margin(1e-6));
  CHECK(grad(1, 0) == Approx(0.25).margin(1e-6));
  CHECK(grad(1, 1) == Approx(-0.25).margin(1e-6));
}
