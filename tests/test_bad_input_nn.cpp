// Bad input to nn/: layers with bad sizes or inputs, optimizers' hyper-parameters, schedules, losses,
// Trainer::step and checkpoints (save/load_training_state, load_parameters, io::save/load_checkpoint).
// Each case checks the exception type, the words of its message, and that nothing the call was given
// changed: the model's parameters, the optimizer's state and step count, the files on disk.
#include <minnow/data.hpp>
#include <minnow/error.hpp>
#include <minnow/io/checkpoint.hpp>
#include <minnow/nn.hpp>
#include <minnow/train.hpp>

#include "test_support.hpp"
#include "../examples/architectures.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

using namespace minnow;
using Catch::Contains;
using test_support::file_bytes;
using test_support::raw;
using test_support::ScratchDir;
namespace fs = std::filesystem;

namespace {

/// Every parameter's bytes, in order.
std::vector<std::vector<unsigned char>> snapshot(nn::Sequential<float>& model) {
  std::vector<std::vector<unsigned char>> out;
  for (const auto& p : model.parameters()) out.push_back(raw(p.value));
  return out;
}

/// Every state buffer's bytes, then the step count as its own entry.
std::vector<std::vector<unsigned char>> snapshot(nn::Optimizer<float>& optimizer) {
  std::vector<std::vector<unsigned char>> out;
  for (std::size_t i = 0; i < optimizer.parameters().size(); ++i) {
    for (const auto& s : optimizer.state(i)) out.push_back(raw(s.view));
  }
  const std::int64_t steps = optimizer.step_count();
  out.push_back(raw(&steps, 1));
  return out;
}

/// Files beside `path` named `<name>.tmp*`: what an interrupted atomic write would leave.
int leftover_temporaries(const fs::path& path) {
  int count = 0;
  for (const auto& entry : fs::directory_iterator(path.parent_path())) {
    count += entry.path().filename().string().rfind(path.filename().string() + ".tmp", 0) == 0 ? 1 : 0;
  }
  return count;
}

/// flatten → fc: Linear(4, 3), on 1×2×2 images.
nn::Sequential<float> tiny_model(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  nn::Sequential<float> net;
  net.add("flatten", nn::Flatten<float>());
  net.add("fc", nn::Linear<float>(4, 3)).reset_parameters(rng);
  return net;
}

/// Four 1×2×2 samples with labels in [0, 3).
data::Dataset<float> tiny_data() {
  data::Dataset<float> d;
  d.images.resize({4, 1, 2, 2});
  for (index_t i = 0; i < d.images.size(); ++i) d.images.data()[i] = static_cast<float>(i % 5) - 2.0f;
  d.labels.resize({4});
  for (index_t i = 0; i < 4; ++i) d.labels(i) = static_cast<std::int32_t>(i % 3);
  return d;
}

nn::Optimizer<float>* base(nn::Optimizer<float>& optimizer) { return &optimizer; }

}  // namespace

// ---- layers ----

TEST_CASE("layers: non-positive sizes are value errors naming the layer", "[bad_input][nn][layers]") {
  SECTION("Linear(0, 3)") { CHECK_REFUSED(nn::Linear<float>(0, 3), value_error, Contains("Linear: invalid sizes Linear(0, 3)")); }
  SECTION("Linear(3, -2)") { CHECK_REFUSED(nn::Linear<float>(3, -2), value_error, Contains("Linear(3, -2)")); }
  SECTION("Conv2d with kernel 0") {
    CHECK_REFUSED(nn::Conv2d<float>(1, 4, 0), value_error, Contains("Conv2d: invalid configuration Conv2d(1, 4, kernel=0"));
  }
  SECTION("Conv2d with stride 0") { CHECK_REFUSED(nn::Conv2d<float>(1, 4, 3, 0), value_error, Contains("stride=0")); }
  SECTION("Conv2d with padding -1") { CHECK_REFUSED(nn::Conv2d<float>(1, 4, 3, 1, -1), value_error, Contains("padding=-1")); }
  SECTION("Conv2d with 0 input channels") { CHECK_REFUSED(nn::Conv2d<float>(0, 4, 3), value_error, Contains("Conv2d(0, 4")); }
  SECTION("MaxPool2d with kernel 0") { CHECK_REFUSED(nn::MaxPool2d<float>(0), value_error, Contains("MaxPool2d: kernel 0")); }
  SECTION("MaxPool2d with stride -1") { CHECK_REFUSED(nn::MaxPool2d<float>(2, -1), value_error, Contains("stride -1")); }
  SECTION("make_cnn with an even kernel") {
    CHECK_REFUSED((void)nn::make_cnn<float>({}, {.conv1 = 2, .conv2 = 2, .hidden = 4, .kernel = 4}, 0), value_error, Contains("kernel must be odd and positive, got 4"));
  }
  SECTION("an unknown architecture") {
    CHECK_REFUSED((void)example::make_architecture<float>("resnet", 1), value_error,
                  Contains("unknown architecture 'resnet'") && Contains("teacher, teacher5x5 or student"));
  }
  SECTION("Conv2d: the direct algorithm at stride 2 keeps the algorithm") {
    nn::Conv2d<float> conv(1, 2, 3, 2);
    CHECK_REFUSED(conv.set_algorithm(nn::ConvAlgorithm::direct), value_error, Contains("the direct algorithm needs stride 1"));
    CHECK(conv.algorithm() == nn::ConvAlgorithm::automatic);
  }
}

TEST_CASE("layers: inputs and gradients that do not fit are shape errors, and weights and gradients stay", "[bad_input][nn][layers]") {
  std::mt19937_64 rng(3);
  SECTION("Linear: 5 features for a layer of 4") {
    nn::Linear<float> fc(4, 3);
    fc.reset_parameters(rng);
    const auto weight = raw(fc.weight());
    Tensor<float, 4> x({2, 5, 1, 1}, 1.0f);
    CHECK_REFUSED(fc.forward(x, nn::Mode::train), shape_error,
                  Contains("Linear(4, 3): input [2, 5, 1, 1] has 5 features per sample, expected 4"));
    CHECK(raw(fc.weight()) == weight);
  }
  SECTION("Linear: a gradient of another shape than the last output") {
    nn::Linear<float> fc(4, 3);
    fc.reset_parameters(rng);
    Tensor<float, 4> x({2, 4, 1, 1}, 1.0f);
    (void)fc.forward(x, nn::Mode::train);
    std::vector<Parameter<float>> params;
    fc.collect_parameters("fc.", params);
    params[0].grad.fill(7.0f);
    const auto grad = raw(params[0].grad);
    Tensor<float, 4> dy({3, 3, 1, 1}, 1.0f);
    CHECK_REFUSED((void)fc.backward(dy), shape_error, Contains("Linear.backward: gradient [3, 3, 1, 1] does not match the last output [2, 3, 1, 1]"));
    CHECK(raw(params[0].grad) == grad);
  }
  SECTION("Conv2d: 2 channels for a layer of 1") {
    nn::Conv2d<float> conv(1, 2, 3);
    conv.reset_parameters(rng);
    const auto weight = raw(conv.weight());
    Tensor<float, 4> x({1, 2, 5, 5});
    CHECK_REFUSED(conv.forward(x, nn::Mode::train), shape_error,
                  Contains("Conv2d(1, 2, kernel=3, stride=1, padding=0): input [1, 2, 5, 5] does not fit"));
    CHECK(raw(conv.weight()) == weight);
  }
  SECTION("Conv2d: an image smaller than the kernel") {
    nn::Conv2d<float> conv(1, 2, 3);
    Tensor<float, 4> x({1, 1, 2, 2});
    CHECK_REFUSED(conv.forward(x, nn::Mode::train), shape_error, Contains("input [1, 1, 2, 2] does not fit"));
  }
  SECTION("MaxPool2d: an input smaller than the window") {
    nn::MaxPool2d<float> pool(2);
    Tensor<float, 4> x({1, 1, 1, 1});
    CHECK_REFUSED(pool.forward(x, nn::Mode::train), shape_error,
                  Contains("MaxPool2d(kernel=2, stride=2): input [1, 1, 1, 1] is smaller than the window"));
  }
  SECTION("ReLU: a gradient of another shape") {
    nn::ReLU<float> relu;
    Tensor<float, 4> x({1, 2, 1, 1}, 1.0f), dy({1, 3, 1, 1});
    (void)relu.forward(x, nn::Mode::train);
    CHECK_REFUSED((void)relu.backward(dy), shape_error, Contains("ReLU.backward: gradient [1, 3, 1, 1]"));
  }
  SECTION("the student (fused conv+relu+pool) given 3-channel images") {
    auto student = nn::make_student<float>(1);
    const auto before = snapshot(student);
    Tensor<float, 4> x({1, 3, 28, 28});
    CHECK_REFUSED((void)student.forward(x), shape_error, Contains("Conv2d(1, 16, kernel=3") && Contains("input [1, 3, 28, 28]"));
    CHECK(snapshot(student) == before);
  }
}

TEST_CASE("Sequential: duplicate, empty and unknown names and positions past the end", "[bad_input][nn][sequential]") {
  auto net = tiny_model(1);
  const auto before = snapshot(net);
  SECTION("add with a name already used") {
    CHECK_REFUSED(net.add("fc", nn::ReLU<float>()), value_error, Contains("duplicate layer name 'fc'"));
  }
  SECTION("insert with an empty name") {
    CHECK_REFUSED(net.insert(0, "", nn::ReLU<float>()), value_error, Contains("an inserted layer needs a name"));
  }
  SECTION("insert past the end") {
    CHECK_REFUSED(net.insert(3, "relu", nn::ReLU<float>()), value_error, Contains("insert position 3 is past the 2 layers"));
  }
  SECTION("insert_after an unknown layer") {
    CHECK_REFUSED(net.insert_after("conv9", "relu", nn::ReLU<float>()), value_error, Contains("no layer named 'conv9'"));
  }
  SECTION("index_of an unknown layer") {
    CHECK_REFUSED((void)net.index_of("fc2"), value_error, Contains("no layer named 'fc2'"));
  }
  SECTION("remove or release an unknown layer") {
    CHECK_REFUSED(net.remove("fc2"), value_error, Contains("no layer named 'fc2'"));
    CHECK_REFUSED((void)net.release("fc2"), value_error, Contains("no layer named 'fc2'"));
  }
  CHECK(net.size() == 2);
  CHECK(net.layer_name(0) == "flatten");
  CHECK(net.layer_name(1) == "fc");
  CHECK(snapshot(net) == before);
}

TEST_CASE("Sequential::release hands over the layer with its parameters where they were", "[nn][sequential]") {
  auto net = tiny_model(1);
  const float* weights = find_parameter(net.parameters(), "fc.weight").value.data();
  auto fc = net.release("fc");
  REQUIRE(fc != nullptr);
  CHECK(net.size() == 1);
  std::vector<Parameter<float>> parameters;
  fc->collect_parameters("fc.", parameters);
  CHECK(parameters.at(0).value.data() == weights);
}

// ---- optimizers and schedules ----

TEST_CASE("optimizers: bad hyper-parameters are value errors naming the hyper-parameter", "[bad_input][nn][optim]") {
  auto net = tiny_model(2);
  const auto before = snapshot(net);
  const auto params = net.parameters();
  SECTION("a negative learning rate") {
    CHECK_REFUSED(nn::Sgd<float>(params, -0.1), value_error, Contains("learning rate must be finite and >= 0, got -0.1"));
  }
  SECTION("a NaN learning rate") { CHECK_REFUSED(nn::Adam<float>(params, std::nan("")), value_error, Contains("got nan")); }
  SECTION("an infinite learning rate") {
    CHECK_REFUSED(nn::Sgd<float>(params, std::numeric_limits<double>::infinity()), value_error, Contains("got inf"));
  }
  SECTION("SGD momentum -0.5") {
    CHECK_REFUSED(nn::Sgd<float>(params, 0.1, {.momentum = -0.5}), value_error, Contains("optimizer: invalid momentum -0.5"));
  }
  SECTION("SGD dampening -1") {
    CHECK_REFUSED(nn::Sgd<float>(params, 0.1, {.dampening = -1.0}), value_error, Contains("invalid dampening -1"));
  }
  SECTION("SGD weight decay -1e-4") {
    CHECK_REFUSED(nn::Sgd<float>(params, 0.1, {.weight_decay = -1e-4}), value_error, Contains("invalid weight_decay -0.0001"));
  }
  SECTION("Nesterov without momentum") {
    CHECK_REFUSED(nn::Sgd<float>(params, 0.1, {.nesterov = true}), value_error,
                  Contains("Nesterov momentum requires momentum > 0 and dampening = 0"));
  }
  SECTION("Nesterov with dampening") {
    CHECK_REFUSED(nn::Sgd<float>(params, 0.1, {.momentum = 0.9, .dampening = 0.1, .nesterov = true}), value_error,
                  Contains("Nesterov"));
  }
  SECTION("Adam beta1 = 1") { CHECK_REFUSED(nn::Adam<float>(params, 1e-3, {.beta1 = 1.0}), value_error, Contains("invalid beta1 1")); }
  SECTION("Adam beta2 = -0.1") {
    CHECK_REFUSED(nn::Adam<float>(params, 1e-3, {.beta2 = -0.1}), value_error, Contains("invalid beta2 -0.1"));
  }
  SECTION("Adam eps < 0") { CHECK_REFUSED(nn::Adam<float>(params, 1e-3, {.eps = -1e-8}), value_error, Contains("invalid eps -1e-08")); }
  SECTION("AdamW with a NaN weight decay") {
    CHECK_REFUSED(nn::AdamW<float>(params, 1e-3, {.weight_decay = std::nan("")}), value_error, Contains("invalid weight_decay nan"));
  }
  CHECK(snapshot(net) == before);
}

TEST_CASE("optimizers: refused setters and unknown names keep the optimizer as it was", "[bad_input][nn][optim]") {
  auto net = tiny_model(3);
  nn::Adam<float> adam(net.parameters(), 1e-3);
  adam.set_step_count(5);
  const auto state = snapshot(adam);
  SECTION("set_learning_rate(inf)") {
    CHECK_REFUSED(adam.set_learning_rate(std::numeric_limits<double>::infinity()), value_error, Contains("learning rate"));
  }
  SECTION("set_learning_rate(-1)") { CHECK_REFUSED(adam.set_learning_rate(-1.0), value_error, Contains("got -1")); }
  SECTION("set_step_count(-1)") {
    CHECK_REFUSED(adam.set_step_count(-1), value_error, Contains("optimizer: step count must be >= 0, got -1"));
  }
  SECTION("state of an unknown parameter") {
    CHECK_REFUSED((void)adam.state("fc.scale"), value_error, Contains("optimizer has no parameter named 'fc.scale'"));
  }
  CHECK(adam.learning_rate() == 1e-3);
  CHECK(snapshot(adam) == state);
}

TEST_CASE("learning-rate schedules: non-positive periods are value errors", "[bad_input][nn][schedule]") {
  SECTION("StepLR step_size 0") {
    CHECK_REFUSED((void)nn::StepLR{0}(3, 0.1), value_error, Contains("StepLR: step_size must be > 0, got 0"));
  }
  SECTION("CosineAnnealingLR T_max -1") {
    CHECK_REFUSED((void)nn::CosineAnnealingLR{-1}(3, 0.1), value_error, Contains("CosineAnnealingLR: T_max must be > 0, got -1"));
  }
}

// ---- losses ----

TEST_CASE("softmax_cross_entropy and count_correct: labels and shapes that do not fit, and the gradient stays", "[bad_input][nn][loss]") {
  Tensor<float, 2> logits({2, 3}, 0.5f), dlogits({2, 3}, 9.0f);
  Tensor<std::int32_t, 1> labels({2});
  labels(0) = 1;
  labels(1) = 3;
  const auto dlogits_before = raw(dlogits);
  SECTION("label 3 with 3 classes") {
    CHECK_REFUSED((void)nn::softmax_cross_entropy<float>(logits, labels, dlogits), value_error,
                  Contains("softmax_cross_entropy: label 3 at position 1 is outside [0, 3)"));
  }
  SECTION("a negative label") {
    labels(1) = -7;
    CHECK_REFUSED((void)nn::softmax_cross_entropy<float>(logits, labels, dlogits), value_error, Contains("label -7 at position 1"));
  }
  SECTION("3 labels for 2 rows") {
    Tensor<std::int32_t, 1> three({3});
    CHECK_REFUSED((void)nn::softmax_cross_entropy<float>(logits, three, dlogits), shape_error,
                  Contains("3 labels for logits [2, 3]"));
    CHECK_REFUSED((void)nn::count_correct<float>(logits, three), shape_error, Contains("count_correct: 3 labels for logits [2, 3]"));
  }
  SECTION("a gradient of another shape") {
    labels(1) = 0;
    Tensor<float, 2> wrong({2, 4}, 9.0f);
    const auto wrong_before = raw(wrong);
    CHECK_REFUSED((void)nn::softmax_cross_entropy<float>(logits, labels, wrong), shape_error,
                  Contains("gradient [2, 4] does not match logits [2, 3]"));
    CHECK(raw(wrong) == wrong_before);
  }
  CHECK(raw(dlogits) == dlogits_before);
}

// ---- Trainer ----

TEST_CASE("Trainer: empty batches, foreign indices, bad labels and mismatched samplers change nothing", "[bad_input][nn][train]") {
  auto net = tiny_model(4);
  nn::Sgd<float> sgd(net.parameters(), 0.1, {.momentum = 0.9});
  train::Trainer<float> trainer(net, sgd);
  trainer.set_progress(false);
  auto data = tiny_data();
  const auto model_before = snapshot(net);
  const auto optimizer_before = snapshot(sgd);
  SECTION("an empty index span: the batch is empty") {
    CHECK_REFUSED(trainer.step(data, std::span<const index_t>{}), value_error, Contains("Trainer::step: the batch is empty"));
  }
  SECTION("an index outside the data set") {
    const std::vector<index_t> batch{0, 9};
    CHECK_REFUSED(trainer.step(data, batch), value_error, Contains("gather: index 9 (position 1) is not a sample of a data set of 4"));
  }
  SECTION("a label outside the network's classes") {
    data.labels(2) = 5;
    const std::vector<index_t> batch{1, 2};
    CHECK_REFUSED(trainer.step(data, batch), value_error, Contains("label 5 at position 1 is outside [0, 3)"));
  }
  SECTION("a BatchSampler over 5 samples for a data set of 4") {
    data::BatchSampler sampler(5, 2, 0);
    CHECK_REFUSED((void)trainer.train_epoch(data, sampler), shape_error, Contains("Trainer: sampler over 5 samples, data set has 4"));
  }
  SECTION("evaluate with batch size 0") {
    CHECK_REFUSED((void)train::evaluate(net, data, 0), value_error, Contains("batch_size must be > 0, got 0"));
  }
  CHECK(trainer.steps() == 0);
  CHECK(snapshot(net) == model_before);
  CHECK(snapshot(sgd) == optimizer_before);
}

// ---- checkpoints ----

TEST_CASE("save_training_state: a symlink keeps the link and replaces its target, and a directory or a FIFO is refused",
          "[bad_input][nn][checkpoint]") {
  const ScratchDir dir;
  auto net = tiny_model(5);
  nn::Adam<float> adam(net.parameters(), 1e-3);
  adam.set_step_count(3);
  const auto model_before = snapshot(net);
  SECTION("a symlink: the link stays a link, its target holds the checkpoint") {
    const fs::path target = dir / "target.ckpt", link = dir / "link.ckpt";
    std::ofstream(target) << "old";
    fs::create_symlink(target, link);
    train::save_training_state(link, "tiny", net, base(adam));
    CHECK(fs::is_symlink(link));
    CHECK(fs::read_symlink(link) == target);
    CHECK(fs::file_size(target) > 3);
    auto loaded = tiny_model(6);
    nn::Adam<float> loaded_adam(loaded.parameters(), 1e-3);
    train::load_training_state(target, "tiny", loaded, base(loaded_adam));
    CHECK(snapshot(loaded) == model_before);
    CHECK(loaded_adam.step_count() == 3);
    CHECK(leftover_temporaries(link) == 0);
    CHECK(leftover_temporaries(target) == 0);
  }
  SECTION("a directory is an io_error; the directory and its content stay") {
    const fs::path target = dir / "run.ckpt";
    fs::create_directories(target);
    std::ofstream(target / "keep") << "kept";
    CHECK_REFUSED(train::save_training_state(target, "tiny", net, base(adam)), io_error,
                  Contains(target.string()) && Contains("it is a directory"));
    CHECK(fs::is_directory(target));
    CHECK(file_bytes(target / "keep") == std::vector<char>{'k', 'e', 'p', 't'});
    CHECK(leftover_temporaries(target) == 0);
  }
  SECTION("a FIFO is an io_error; the FIFO stays") {
    const fs::path target = dir / "fifo.ckpt";
    REQUIRE(::mkfifo(target.c_str(), 0600) == 0);
    CHECK_REFUSED(train::save_training_state(target, "tiny", net, base(adam)), io_error,
                  Contains(target.string()) && Contains("it is a FIFO"));
    CHECK(fs::is_fifo(target));
    CHECK(leftover_temporaries(target) == 0);
  }
  SECTION("a missing directory is an io_error") {
    const fs::path target = dir / "no-such-dir" / "x.ckpt";
    CHECK_REFUSED(train::save_training_state(target, "tiny", net, base(adam)), io_error, Contains(target.string()));
    CHECK_FALSE(fs::exists(target.parent_path()));
  }
  CHECK(snapshot(net) == model_before);
  CHECK(adam.step_count() == 3);
}

TEST_CASE("load_training_state / load_parameters: bad paths and bad files change neither model nor optimizer",
          "[bad_input][nn][checkpoint]") {
  const ScratchDir dir;
  const fs::path good = dir / "good.ckpt";
  {
    auto saved = tiny_model(7);
    nn::Adam<float> saved_adam(saved.parameters(), 1e-3);
    saved_adam.set_step_count(11);
    train::save_training_state(good, "tiny", saved, base(saved_adam));
  }
  const auto good_bytes = file_bytes(good);
  auto net = tiny_model(8);
  nn::Adam<float> adam(net.parameters(), 1e-3);
  train::Trainer<float> trainer(net, adam);
  trainer.set_progress(false);
  const auto data = tiny_data();
  const std::vector<index_t> all{0, 1, 2, 3};
  (void)trainer.step(data, all);  // non-zero moments and a step count of 1
  const auto model_before = snapshot(net);
  const auto optimizer_before = snapshot(adam);

  SECTION("a directory is an io_error naming the path") {
    CHECK_REFUSED(train::load_training_state(dir.path(), "tiny", net, base(adam)), io_error,
                  Contains(dir.path().string()) && Contains("it is a directory"));
  }
  SECTION("a missing file is an io_error naming the path") {
    const fs::path missing = dir / "missing.ckpt";
    CHECK_REFUSED(train::load_parameters(missing, "tiny", net), io_error, Contains(missing.string()));
  }
  SECTION("another architecture's tag") {
    CHECK_REFUSED(train::load_training_state(good, "student", net, base(adam)), format_error,
                  Contains(good.string()) && Contains("was written for 'tiny', not 'student'"));
  }
  SECTION("a checkpoint without optimizer state, loaded with an optimizer") {
    const fs::path bare = dir / "bare.ckpt";
    auto other = tiny_model(9);
    train::save_training_state(bare, "tiny", other);
    CHECK_REFUSED(train::load_training_state(bare, "tiny", net, base(adam)), format_error, Contains("has 2 tensors, expected 6"));
  }
  SECTION("a truncated file") {
    const fs::path cut = dir / "cut.ckpt";
    std::ofstream(cut, std::ios::binary).write(good_bytes.data(), static_cast<std::streamsize>(good_bytes.size() - 9));
    CHECK_REFUSED(train::load_parameters(cut, "tiny", net), format_error, Contains(cut.string()) && Contains("corrupt or truncated"));
  }
  SECTION("a file that is not a checkpoint") {
    const fs::path text = dir / "notes.txt";
    std::ofstream(text) << "hello, world";
    CHECK_REFUSED(train::load_parameters(text, "tiny", net), format_error, Contains("is not a minnow checkpoint (bad magic)"));
  }
  SECTION("a negative optimizer step counter is a format_error naming optimizer.steps") {
    const fs::path bad = dir / "negative-steps.ckpt";
    auto writer = tiny_model(10);
    nn::Adam<float> writer_adam(writer.parameters(), 1e-3);
    std::int64_t value = std::numeric_limits<std::int64_t>::min();
    io::save_checkpoint<float>(bad, "tiny", train::training_state(writer, base(writer_adam)),
                               {{"optimizer.steps", &value, std::numeric_limits<std::int64_t>::min()}});
    CHECK_REFUSED(train::load_training_state(bad, "tiny", net, base(adam)), format_error,
                  Contains("counter 'optimizer.steps' is -9223372036854775808") && Contains("outside [0, "));
    value = -1;
    io::save_checkpoint<float>(bad, "tiny", train::training_state(writer, base(writer_adam)),
                               {{"optimizer.steps", &value, std::numeric_limits<std::int64_t>::min()}});
    CHECK_REFUSED(train::load_training_state(bad, "tiny", net, base(adam)), format_error, Contains("'optimizer.steps' is -1"));
  }
  SECTION("a step counter above max_step_count") {
    const fs::path bad = dir / "huge-steps.ckpt";
    auto writer = tiny_model(10);
    nn::Adam<float> writer_adam(writer.parameters(), 1e-3);
    std::int64_t value = train::max_step_count + 1;
    io::save_checkpoint<float>(bad, "tiny", train::training_state(writer, base(writer_adam)), {{"optimizer.steps", &value}});
    CHECK_REFUSED(train::load_training_state(bad, "tiny", net, base(adam)), format_error,
                  Contains("'optimizer.steps' is 4611686018427387905"));
  }
  CHECK(snapshot(net) == model_before);
  CHECK(snapshot(adam) == optimizer_before);
  CHECK(file_bytes(good) == good_bytes);
}

TEST_CASE("io::save_checkpoint / load_checkpoint: negative extents and counters without a value", "[bad_input][nn][checkpoint]") {
  const ScratchDir dir;
  const fs::path path = dir / "plain.ckpt";
  Tensor<float, 1> twelve({12});
  for (index_t i = 0; i < 12; ++i) twelve(i) = static_cast<float>(i);
  io::save_checkpoint<float>(path, "plain", {{"w", {3, 4}, twelve.view()}});
  const auto file_before = file_bytes(path);
  Tensor<float, 1> target({12}, -1.0f);
  const auto target_before = raw(target);
  SECTION("load with an entry shaped {-3, -4} for 12 values") {
    const std::vector<io::CheckpointEntry<float>> negative{{"w", {-3, -4}, target.view()}};
    CHECK_REFUSED(io::load_checkpoint<float>(path, "plain", negative), shape_error,
                  Contains("checkpoint entry 'w' has a negative extent -3"));
  }
  SECTION("save with an entry shaped {-3, -4}: the file stays") {
    const std::vector<io::CheckpointEntry<float>> negative{{"w", {-3, -4}, target.view()}};
    CHECK_REFUSED(io::save_checkpoint<float>(path, "plain", negative), shape_error, Contains("'w' has a negative extent -3"));
  }
  SECTION("an entry whose shape holds 13 values for a view of 12") {
    const std::vector<io::CheckpointEntry<float>> wrong{{"w", {13}, target.view()}};
    CHECK_REFUSED(io::load_checkpoint<float>(path, "plain", wrong), shape_error, Contains("'w' views 12 elements but its shape holds 13"));
  }
  SECTION("a counter that points at no value") {
    const std::vector<io::CheckpointEntry<float>> entries{{"w", {3, 4}, target.view()}};
    CHECK_REFUSED(io::save_checkpoint<float>(path, "plain", entries, {{"steps", nullptr}}), value_error,
                  Contains("checkpoint counter 'steps' points at no value"));
  }
  SECTION("a counter with an empty range") {
    std::int64_t steps = 0;
    const std::vector<io::CheckpointEntry<float>> entries{{"w", {3, 4}, target.view()}};
    CHECK_REFUSED(io::load_checkpoint<float>(path, "plain", entries, io::ExtraEntries::refuse, {{"steps", &steps, 5, 4}}), value_error,
                  Contains("checkpoint counter 'steps' has an empty range"));
    CHECK(steps == 0);
  }
  CHECK(raw(target) == target_before);
  CHECK(file_bytes(path) == file_before);
  CHECK(leftover_temporaries(path) == 0);
}
