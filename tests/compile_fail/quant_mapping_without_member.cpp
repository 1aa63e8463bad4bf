// Must not compile: NoScale is not a Mapping (it lacks the member a uniform mapping needs).
#include <minnow/quant.hpp>

namespace {
struct NoScale {
  [[nodiscard]] minnow::quant::AffineParams params(minnow::quant::Range, minnow::quant::QRange) const { return {}; }
};
}  // namespace

int main() {
  minnow::quant::Quantizer<minnow::quant::qint8, minnow::quant::MinMax, NoScale, minnow::quant::PerTensor> q;
  return q.frozen() ? 1 : 0;
}
