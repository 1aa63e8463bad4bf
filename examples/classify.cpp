// Deployment: a compressed model file (student.minnow, written by examples/compress) classifies IDX images.
//   classify compress-out/student.minnow                        # the Fashion-MNIST test set
//   classify student.minnow images.idx[.gz] [labels.idx[.gz]]   # any 28×28 IDX images; accuracy when labels are given
#include <minnow/data/dataset.hpp>
#include <minnow/data/fashion_mnist.hpp>
#include <minnow/data/idx.hpp>
#include <minnow/pipeline/compressed_network.hpp>

#include "cli.hpp"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>

int main(int argc, char** argv) {
  const bool help = argc == 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h");
  if (argc < 2 || argc > 4 || help) {
    std::fprintf(help ? stdout : stderr, "usage: classify MODEL [IMAGES [LABELS]]\n"
                 "  MODEL: a .minnow file; IMAGES, LABELS: IDX files, raw or .gz (default: the Fashion-MNIST test set)\n");
    return help ? 0 : 1;
  }
  try {
    const auto dir = minnow::data::default_fashion_mnist_dir();
    const std::string images_file = argc > 2 ? argv[2] : (dir / "t10k-images-idx3-ubyte.gz").string();
    const std::string labels_file = argc > 3 ? argv[3] : argc == 2 ? (dir / "t10k-labels-idx1-ubyte.gz").string() : "";
    // Every file is checked before any is read.
    example::check_input_file("MODEL", argv[1]);
    example::check_input_file("IMAGES", images_file);
    if (!labels_file.empty()) example::check_input_file("LABELS", labels_file);
    auto net = minnow::pipeline::load_compressed(argv[1]);  // format_error naming the problem if the file is damaged
    const auto images = minnow::data::read_idx_images(images_file);
    const auto labels =
        labels_file.empty() ? minnow::Tensor<std::int32_t, 1>({images.dim(0)}, 0) : minnow::data::read_idx_labels(labels_file);
    static const char* const names[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                        "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    const minnow::index_t count = images.dim(0), rows = images.dim(1), cols = images.dim(2);
    if (labels.dim(0) != count) throw minnow::format_error(std::to_string(count) + " images but " + std::to_string(labels.dim(0)) + " labels");
    minnow::index_t correct = 0;
    for (minnow::index_t start = 0; start < count; start += 256) {  // 256 images at a time: little memory
      const minnow::index_t n = std::min<minnow::index_t>(256, count - start);
      // Pixels scaled as in training: x / 255, then standardised with Fashion-MNIST's mean and deviation.
      const minnow::TensorView<const std::uint8_t, 3> pixels(images.data() + start * rows * cols, {n, rows, cols});
      const minnow::TensorView<const std::int32_t, 1> truth(labels.data() + start, {n});
      const auto batch = minnow::data::make_dataset<float>(pixels, truth, minnow::data::fashion_mnist_classes,
                                                            minnow::data::fashion_mnist_normalization);
      const auto logits = net.forward(batch.images.view());
      for (minnow::index_t i = 0; i < n; ++i) {
        const float* row = logits.data() + i * logits.dim(1);
        const auto predicted = std::max_element(row, row + logits.dim(1)) - row;
        correct += predicted == batch.labels(i) ? 1 : 0;
        if (start + i < 10) std::printf("image %td: %s\n", start + i, predicted < 10 ? names[predicted] : "?");
      }
    }
    if (!labels_file.empty() && count > 0) {
      std::printf("accuracy: %.2f %% of %td images\n", 100.0 * static_cast<double>(correct) / static_cast<double>(count), count);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "classify: %s\n", e.what());
    return 1;
  }
}
