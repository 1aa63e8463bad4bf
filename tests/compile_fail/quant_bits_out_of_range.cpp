// Must not compile: quantizers hold 2 to 8 or 16 bits; 9 and 1 fail Bits' static_assert.
#include <minnow/quant.hpp>

int main() {
  minnow::quant::Quantizer<minnow::quant::Bits<9>, minnow::quant::MinMax, minnow::quant::Symmetric,
                           minnow::quant::PerTensor> nine;
  minnow::quant::Quantizer<minnow::quant::Bits<1, false>, minnow::quant::MinMax, minnow::quant::Symmetric,
                           minnow::quant::PerTensor> one;
  return nine.frozen() || one.frozen() ? 1 : 0;
}
