// A tour of minnow's tensors: owning storage, views, Eigen expressions through views, reshape, errors.
#include <minnow/minnow.hpp>

#include <iostream>

int main(int argc, char** argv) {
  if (argc > 1) {
    std::cerr << "tensor_demo: takes no options, got " << argv[1] << "\n";
    return 1;
  }
  minnow::Tensor<float, 2> weights({3, 4});  // zero-initialised, 64-byte aligned
  auto w = weights.view();                   // TensorView<float, 2>: pointer + shape
  for (minnow::index_t r = 0; r < w.dim(0); ++r)
    for (minnow::index_t c = 0; c < w.dim(1); ++c) w(r, c) = static_cast<float>(r * 4 + c) - 5.0f;

  // Eigen expressions evaluate straight into the tensor's memory.
  w.array() = w.array().abs() * 0.5f;
  std::cout << "weights as a row-major Eigen matrix:\n" << w.matrix() << "\n";
  std::cout << "row sums: " << w.matrix().rowwise().sum().transpose() << "\n";

  // Read-only views convert implicitly; reshape checks the element count.
  minnow::TensorView<const float, 2> readonly = w;
  const auto flat = readonly.reshape<1>(-1);
  std::cout << "flattened " << minnow::to_string(readonly.shape()) << " -> " << minnow::to_string(flat.shape())
            << ", max " << flat.array().maxCoeff() << "\n";
  try {
    (void)readonly.reshape<2>(5, 3);
  } catch (const minnow::shape_error& e) {
    std::cout << "shape_error: " << e.what() << "\n";
  }
  return 0;
}
