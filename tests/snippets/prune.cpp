// README "One call each": prune a weight of your own model by L1 magnitude and keep it pruned through
// your optimizer's steps. The code between the snippet markers appears verbatim in README.md.
#include "../test_support.hpp"

#include <minnow/prune.hpp>
#include <minnow/tensor.hpp>

#include <vector>

using Catch::Matchers::Contains;
using minnow::index_t;

namespace {

/// Distinct magnitudes that grow with the flat index, alternating signs: L1 pruning of half of the
/// 288 entries removes exactly flat indices 0 … 143.
void fill_weights(minnow::TensorView<float, 4> w) {
  for (index_t i = 0; i < w.size(); ++i) w.data()[i] = (i % 2 == 0 ? 1.0f : -1.0f) * static_cast<float>(i + 1) / 288.0f;
}

/// A gradient that is non-zero everywhere, pruned positions included.
void compute_gradient(minnow::TensorView<const float, 4> w, minnow::TensorView<float, 4> dw) {
  for (index_t i = 0; i < w.size(); ++i) dw.data()[i] = 0.5f + w.data()[i] * w.data()[i];
}

}  // namespace

TEST_CASE("prune: an L1-pruned rank-4 weight stays pruned through optimizer steps", "[snippets][prune]") {
  // snippet begin: prune
  minnow::Tensor<float, 4> w({8, 4, 3, 3}), dw({8, 4, 3, 3});   // your conv weight and its gradient
  fill_weights(w);
  minnow::prune::Pruner<float> pruner;
  pruner.track("conv1.weight", w.view(), dw.view());            // keeps views; shape [8, 4, 3, 3]
  pruner.l1_unstructured("conv1.weight", minnow::prune::Fraction{0.5});  // 144 smallest |w| → 0
  for (int step = 0; step < 5; ++step) {
    compute_gradient(w, dw);                                    // your backward: dw != 0 everywhere
    w.array() -= 0.1f * dw.array();                             // your optimizer step
    pruner.apply();                                             // pruned weights back to exactly 0
  }
  // snippet end

  const auto mask = pruner.mask("conv1.weight");
  REQUIRE(mask.size() == 288);
  CHECK(minnow::prune::count_kept(mask) == 144);
  for (index_t i = 0; i < 288; ++i) {
    INFO("flat index " << i);
    CHECK(mask.data()[i] == (i < 144 ? 0.0f : 1.0f));
    if (i < 144) {
      CHECK(w.data()[i] == 0.0f);
      CHECK(dw.data()[i] == 0.0f);
    } else {
      CHECK(w.data()[i] != 0.0f);
    }
  }
  CHECK(pruner.entries().front().shape == std::vector<index_t>{8, 4, 3, 3});

  // Without apply() the step moves the pruned weights off zero: the gradient there is not zero.
  compute_gradient(w, dw);
  w.array() -= 0.1f * dw.array();
  CHECK(w(0, 0, 0, 0) != 0.0f);
  pruner.apply();
  CHECK(w(0, 0, 0, 0) == 0.0f);
}

TEST_CASE("Pruner::track of a rank-R view keeps its shape for structured pruning", "[snippets][prune]") {
  std::vector<float> buffer(8 * 4 * 3 * 3), grad(buffer.size());  // a raw buffer the user owns
  for (std::size_t i = 0; i < buffer.size(); ++i) buffer[i] = static_cast<float>(i / 36 + 1);  // filter f holds f + 1
  minnow::prune::Pruner<float> pruner;
  pruner.track("conv.weight", minnow::TensorView<float, 4>(buffer.data(), {8, 4, 3, 3}),
               minnow::TensorView<float, 4>(grad.data(), {8, 4, 3, 3}));
  // Two of eight filters by L2 norm along dimension 0: the two smallest, filters 0 and 1.
  CHECK(pruner.ln_structured("conv.weight", minnow::prune::Count{2}, 2.0, 0) == 2);
  for (std::size_t i = 0; i < buffer.size(); ++i) {
    INFO("flat index " << i);
    CHECK(buffer[i] == (i < 72 ? 0.0f : static_cast<float>(i / 36 + 1)));
  }
}

TEST_CASE("Pruner::track of a rank-R view refuses what does not fit, naming the parameter", "[snippets][prune]") {
  minnow::Tensor<float, 4> w({8, 4, 3, 3}), transposed_grad({4, 8, 3, 3}), short_state({10, 1, 1, 1});
  minnow::prune::Pruner<float> pruner;
  CHECK_REFUSED(pruner.track("conv1.weight", w.view(), transposed_grad.view()), minnow::shape_error,
                Contains("Pruner: gradient of 'conv1.weight' has shape [4, 8, 3, 3], the value has shape [8, 4, 3, 3]"));
  CHECK_FALSE(pruner.tracks("conv1.weight"));
  CHECK_REFUSED(pruner.track("conv1.weight", w.view(), {}, {{"momentum_buffer", short_state.view().reshape<1>(10)}}),
                minnow::shape_error, Contains("Pruner: state 'momentum_buffer' of 'conv1.weight' has 10 elements, the value has 288"));
  pruner.track("conv1.weight", w.view());  // no gradient: allowed
  CHECK(pruner.entries().front().grad.empty());
  CHECK_REFUSED(pruner.track("conv1.weight", w.view()), minnow::value_error, Contains("Pruner: 'conv1.weight' is already tracked"));
  // An empty weight of any shape is tracked and pruning it prunes nothing.
  minnow::Tensor<float, 2> empty({0, 3});
  pruner.track("empty", empty.view());
  CHECK(pruner.entries().back().shape == std::vector<index_t>{0, 3});
  CHECK(pruner.l1_unstructured("empty", minnow::prune::Fraction{0.5}) == 0);
}
