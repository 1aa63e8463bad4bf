// Trains the student CNN on Fashion-MNIST, quantizes it after training (int8 weights per output channel,
// uint8 activations calibrated by min/max on 2,048 training images), converts it into an integer network and
// writes that as a compressed model file, then reads the file back. Exits 1 unless the integer network's
// accuracy is within 0.1 pt of the fake-quantized network's and the file computes its logits bit for bit.
//
//   quantize_cnn --epochs 3 --out student.minnow
#include <minnow/data.hpp>
#include <minnow/nn.hpp>
#include <minnow/pipeline/compressed_network.hpp>
#include <minnow/pipeline/integer_network.hpp>
#include <minnow/pipeline/quantize_model.hpp>
#include <minnow/quant.hpp>
#include <minnow/train.hpp>

#include "cli.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>

int main(int argc, char** argv) try {
  namespace mn = minnow;
  int epochs = 3, threads = 2;
  long limit = -1, calibration = 2048;
  std::string dir = mn::data::default_fashion_mnist_dir().string(), out = "student.minnow";
  example::CommandLine("quantize_cnn", "Trains the student CNN, quantizes it to int8 and writes a compressed model file.")
      .option("--epochs", epochs, "float training (default 3)")
      .option("--calibration", calibration, "training images the activation ranges are observed on (default 2048)")
      .option("--train-limit", limit, "only the first N training images")
      .option("--threads", threads, "(default 2)")
      .option("--data", dir, "Fashion-MNIST directory")
      .option("--out", out, "compressed model file to write (default student.minnow)")
      .parse(argc, argv);
  example::check_at_least("--epochs", epochs, 1), example::check_at_least("--calibration", calibration, 1L);
  example::check_train_limit("--train-limit", limit), example::check_threads("--threads", threads);
  example::check_input_dir("--data", dir), example::check_output_file("--out", out);

  mn::set_threads(threads);
  const auto data = mn::data::load_fashion_mnist<float>(dir, mn::data::fashion_mnist_normalization, limit);
  auto model = mn::nn::make_student<float>(/*seed=*/1);
  mn::train::fit<float>(model, data.train, {.epochs = epochs}, /*seed=*/1);
  const double float_accuracy = mn::train::evaluate(model, data.test).accuracy;

  // Post-training quantization: fake quantizers on the weights and after the input and every ReLU, their
  // ranges observed on calibration images, then frozen. The model now computes on the int8 grids, in float.
  mn::pipeline::QuantizedModel<mn::quant::Int8PerChannelSymmetric, mn::quant::PerTensorAffine> qmodel(model);
  qmodel.calibrate(data.train, std::min<long>(calibration, data.train.size()));
  const double fake_quant_accuracy = mn::train::evaluate(model, data.test).accuracy;

  // The integer network: uint8 activations, int8 weights, int32 accumulators; only the logits are float.
  mn::pipeline::IntegerNetwork net(model, qmodel);
  const double int8_accuracy = net.evaluate(data.test).accuracy;
  mn::pipeline::save_compressed(out, net);
  auto loaded = mn::pipeline::load_compressed(out);

  const auto images = data.test.images.view();
  const mn::Tensor<float, 2> logits(net.forward(images));  // a copy: the next forward reuses the buffer
  const auto reread = loaded.forward(images);
  const bool same = std::memcmp(logits.data(), reread.data(), sizeof(float) * static_cast<std::size_t>(logits.size())) == 0;
  std::printf("test accuracy: float %.2f %%, fake-quantized %.2f %%, integer network %.2f %%\n", 100 * float_accuracy,
              100 * fake_quant_accuracy, 100 * int8_accuracy);
  std::printf("%s: %ju bytes (the float weights: %zu bytes); its logits %s the network's\n", out.c_str(),
              static_cast<std::uintmax_t>(std::filesystem::file_size(out)), net.float_bytes(), same ? "equal" : "DIFFER FROM");
  const bool ok = same && std::abs(int8_accuracy - fake_quant_accuracy) <= 0.001;
  std::printf("checks: %s\n", ok ? "passed" : "FAILED");
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "quantize_cnn: " << e.what() << "\n";
  return 1;
}
