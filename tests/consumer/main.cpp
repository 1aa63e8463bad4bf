// A user's program: includes the umbrella header and checks a computation end to end.
#include <minnow/minnow.hpp>

#include <cstdio>

int main() {
  minnow::Tensor<float, 2> t({3, 4});
  auto v = t.view();
  v.array() = 1.0f;
  v.array() *= 2.0f;
  const float row_sum = v.matrix().row(1).sum();
  minnow::TensorView<const float, 2> cv = v;
  const auto flat = cv.reshape<1>(12);
  std::printf("minnow %d.%d.%d: row sum %.1f, %td elements\n", MINNOW_VERSION_MAJOR, MINNOW_VERSION_MINOR,
              MINNOW_VERSION_PATCH, static_cast<double>(row_sum), flat.size());
  return row_sum == 8.0f && flat.size() == 12 ? 0 : 1;
}
