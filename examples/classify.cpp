// Deployment: a compressed model file (student.minnow, written by examples/compress) classifies IDX images.
//   classify compress-out/student.minnow                        # the Fashion-MNIST test set
//   classify student.minnow images.idx[.gz] [labels.idx[.gz]]   # any 28×28 IDX images; accuracy when labels are given
#include <minnow/data/dataset.hpp>
#include <minnow/data/fashion_mnist.hpp>
#include <minnow/data/idx.hpp>
#include <minnow/pipeline/compressed_network.hpp>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>

int main(int argc, char** argv) {
  if (argc < 2 || argc > 4) {
    std::fprintf(stderr, "usage: classify MODEL.minnow [IMAGES.idx[.gz] [LABELS.idx[.gz]]]\n");
    return 1;
  }
  try {
    const auto dir = minnow::data::default_fashion_mnist_dir();
    const std::string images_file = argc > 2 ? argv[2] : (dir / "t10k-images-idx3-ubyte.gz").string();
    const std::string labels_file = argc > 3 ? argv[3] : argc == 2 ? (dir / "t10k-labels-idx1-ubyte.gz").string() : "";
    auto net = minnow::pipeline::load_compressed(argv[1]);  // format_error naming the problem if the file is damaged
    const auto images = minnow::data::read_idx_images(images_file);
    auto labels = labels_file.empty() ? minnow::Tensor<std::int32_t, 1>({images.dim(0)}, 0) : minnow::data::read_idx_labels(labels_file);
    // The pixels are scaled as the model was trained: x / 255, then Fashion-MNIST's mean and deviation.
    const auto data = minnow::data::make_dataset<float>(images.view(), labels.view(), minnow::data::fashion_mnist_normalization);
    static const char* const names[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                        "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    const minnow::index_t per_image = data.images.size() / std::max<minnow::index_t>(1, data.size());
    minnow::index_t correct = 0;
    for (minnow::index_t start = 0; start < data.size(); start += 256) {
      const minnow::index_t n = std::min<minnow::index_t>(256, data.size() - start);
      const minnow::TensorView<const float, 4> batch(data.images.data() + start * per_image,
                                                     {n, data.images.dim(1), data.images.dim(2), data.images.dim(3)});
      const auto logits = net.forward(batch);
      for (minnow::index_t i = 0; i < n; ++i) {
        const float* row = logits.data() + i * logits.dim(1);
        const auto predicted = std::max_element(row, row + logits.dim(1)) - row;
        correct += predicted == data.labels(start + i) ? 1 : 0;
        if (start + i < 10) std::printf("image %td: %s\n", start + i, predicted < 10 ? names[predicted] : "?");
      }
    }
    if (!labels_file.empty()) {
      std::printf("accuracy: %.2f %% of %td images\n", 100.0 * static_cast<double>(correct) / static_cast<double>(data.size()), data.size());
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "classify: %s\n", e.what());
    return 1;
  }
}
