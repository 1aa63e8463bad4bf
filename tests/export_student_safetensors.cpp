// Writes minnow's student as a safetensors file, for readers outside C++ (tests/check_safetensors.py,
// scripts/check_torch_interop.py).
//   export_student_safetensors OUT [IN]   the student of seed 1, or the weights of IN (loaded, then saved)
#include <minnow/io/sequential_safetensors.hpp>
#include <minnow/nn/models.hpp>

#include <exception>
#include <iostream>

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    std::cerr << "usage: " << argv[0] << " OUT.safetensors [IN.safetensors]\n";
    return 2;
  }
  try {
    auto student = minnow::nn::make_student<float>(1);
    if (argc == 3) minnow::io::load_safetensors(student, argv[2]);
    minnow::io::save_safetensors(student, argv[1], {{"format", "pt"}, {"written_by", "minnow"}});
    std::cout << "wrote " << argv[1] << "\n";
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}
