// Training utilities: determinism, a real (short) training run, checkpoints, bad input.
#include <minnow/data.hpp>
#include <minnow/nn.hpp>
#include <minnow/train.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include <csignal>
#include <thread>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace minnow;
namespace fs = std::filesystem;

namespace {

fs::path temp_file(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("minnow_test_train_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir / name;
}

// Files beside `path` whose name starts with its name + ".tmp": what an interrupted write would leave.
int leftover_temporaries(const fs::path& path) {
  int count = 0;
  for (const auto& entry : fs::directory_iterator(path.parent_path())) {
    count += entry.path().filename().string().rfind(path.filename().string() + ".tmp", 0) == 0 ? 1 : 0;
  }
  return count;
}

// Trains the student for one epoch on the first `n` training images with the given thread count.
nn::Sequential<float> train_student_one_epoch(const data::Dataset<float>& train, int threads, std::uint64_t seed) {
  minnow::set_threads(threads);
  auto model = nn::make_student<float>(seed);
  nn::Sgd<float> sgd(model.parameters(), 0.05, {.momentum = 0.9, .weight_decay = 5e-4, .nesterov = true});
  train::Trainer<float> trainer(model, sgd);
  trainer.set_progress(false);
  data::BatchSampler sampler(train.size(), 64, seed);
  (void)trainer.train_epoch(train, sampler);
  return model;
}

}  // namespace

TEST_CASE("same seed and thread count give bit-identical weights after an epoch on 2000 images") {
  MINNOW_REQUIRE_FASHION_MNIST();
  const auto data = data::load_fashion_mnist<float>(data::default_fashion_mnist_dir(), data::fashion_mnist_normalization, 2000, 1);
  for (const int threads : {1, 2}) {
    INFO(threads << " thread(s)");
    auto a = train_student_one_epoch(data.train, threads, 7);
    auto b = train_student_one_epoch(data.train, threads, 7);
    auto c = train_student_one_epoch(data.train, threads, 8);
    const auto pa = a.parameters(), pb = b.parameters(), pc = c.parameters();
    bool all_equal = true, any_differs_with_other_seed = false;
    for (std::size_t i = 0; i < pa.size(); ++i) {
      all_equal = all_equal && std::memcmp(pa[i].value.data(), pb[i].value.data(), sizeof(float) * static_cast<std::size_t>(pa[i].value.size())) == 0;
      any_differs_with_other_seed = any_differs_with_other_seed || !(pa[i].value.array() == pc[i].value.array()).all();
    }
    CHECK(all_equal);
    CHECK(any_differs_with_other_seed);
  }
}

TEST_CASE("the student reaches 80 % test accuracy after one epoch on 10,000 images") {
  MINNOW_REQUIRE_FASHION_MNIST();
  const auto data = data::load_fashion_mnist<float>(data::default_fashion_mnist_dir(), data::fashion_mnist_normalization, 10000);
  auto model = train_student_one_epoch(data.train, 2, 1);
  const auto test = train::evaluate(model, data.test);
  CHECK(test.samples == 10000);
  CHECK(test.accuracy >= 0.80);
  CHECK(test.loss < 0.7);
}

TEST_CASE("training reduces the loss of a batch it keeps seeing") {
  data::Dataset<float> tiny;
  tiny.images.resize({16, 1, 28, 28});
  tiny.labels.resize({16});
  std::mt19937_64 rng(1);
  for (index_t i = 0; i < tiny.images.size(); ++i) tiny.images.data()[i] = static_cast<float>(nn::uniform01(rng));
  for (index_t i = 0; i < 16; ++i) tiny.labels(i) = static_cast<std::int32_t>(i % 10);
  auto model = nn::make_student<float>(3);
  nn::Adam<float> adam(model.parameters(), 3e-3);
  train::Trainer<float> trainer(model, adam);
  std::vector<index_t> all(16);
  std::iota(all.begin(), all.end(), 0);
  std::int64_t hook_calls = 0, gradient_hook_calls = 0;
  trainer.add_hook([&](std::int64_t step) { CHECK(step == hook_calls++); });
  // Gradient hooks run before the step: here the gradients are complete and the hook of the step not yet called.
  trainer.add_gradient_hook([&](std::int64_t step) {
    CHECK(step == gradient_hook_calls++);
    CHECK(hook_calls == step);
    CHECK(model.parameters()[0].grad.array().abs().sum() > 0.0f);
  });
  const double first = trainer.step(tiny, all);
  double last = first;
  for (int i = 0; i < 40; ++i) last = trainer.step(tiny, all);
  CHECK(last < 0.1 * first);
  CHECK(hook_calls == 41);
  CHECK(gradient_hook_calls == 41);
  CHECK(train::evaluate(model, tiny, 5).accuracy == 1.0);
}

TEST_CASE("checkpoints restore parameters and optimizer state exactly") {
  auto model = nn::make_student<float>(11);
  nn::Adam<float> adam(model.parameters(), 1e-3);
  data::Dataset<float> tiny;
  tiny.images.resize({4, 1, 28, 28});
  tiny.labels.resize({4});
  std::vector<index_t> all{0, 1, 2, 3};
  train::Trainer<float> trainer(model, adam);
  trainer.step(tiny, all);
  trainer.step(tiny, all);
  const fs::path path = temp_file("student.ckpt");
  train::save_training_state(path, "student", model, static_cast<nn::Optimizer<float>*>(&adam));
  CHECK(leftover_temporaries(path) == 0);

  auto restored = nn::make_student<float>(99);
  nn::Adam<float> restored_adam(restored.parameters(), 1e-3);
  train::load_training_state(path, "student", restored, static_cast<nn::Optimizer<float>*>(&restored_adam));
  CHECK(restored_adam.step_count() == 2);
  const auto a = model.parameters(), b = restored.parameters();
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK((a[i].value.array() == b[i].value.array()).all());
    CHECK((adam.state(i)[0].view.array() == restored_adam.state(i)[0].view.array()).all());
    CHECK((adam.state(i)[1].view.array() == restored_adam.state(i)[1].view.array()).all());
  }
  // The parameters alone load from a checkpoint that also holds optimizer state.
  auto weights_only = nn::make_student<float>(5);
  train::load_parameters(path, "student", weights_only);
  CHECK((weights_only.parameters()[4].value.array() == a[4].value.array()).all());
  CHECK_THROWS_AS(train::load_training_state(path, "student", weights_only), format_error);  // exact load refuses the extra state
  // Resuming gives the same next step as continuing.
  train::Trainer<float> resumed(restored, restored_adam);
  trainer.step(tiny, all);
  resumed.step(tiny, all);
  CHECK((model.parameters()[6].value.array() == restored.parameters()[6].value.array()).all());
}

TEST_CASE("bad checkpoints are refused with typed errors and change nothing") {
  auto student = nn::make_student<float>(1);
  const fs::path path = temp_file("good.ckpt");
  train::save_training_state(path, "student", student);
  auto fresh = nn::make_student<float>(2);
  const float before = fresh.parameters()[0].value(0);

  SECTION("another architecture") {
    auto teacher = nn::make_teacher<float>(1);
    CHECK_THROWS_WITH(train::load_training_state(path, "teacher", teacher),
                      Catch::Contains("was written for 'student', not 'teacher'"));
    // Same tag, other shapes: names the first mismatching tensor.
    CHECK_THROWS_WITH(train::load_training_state(path, "student", teacher),
                      Catch::Contains("found 'conv1.weight' [16, 1, 3, 3] where 'conv1.weight' [64, 1, 3, 3] was expected"));
  }
  SECTION("optimizer state that is not in the file") {
    nn::Sgd<float> sgd(fresh.parameters(), 0.1, {.momentum = 0.9});
    CHECK_THROWS_AS(train::load_training_state(path, "student", fresh, static_cast<nn::Optimizer<float>*>(&sgd)), format_error);
  }
  SECTION("a truncated file") {
    const auto size = fs::file_size(path);
    fs::resize_file(path, size - 100);
    CHECK_THROWS_WITH(train::load_training_state(path, "student", fresh), Catch::Contains("corrupt or truncated"));
  }
  SECTION("a flipped bit") {
    {
      std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(200);
      f.put('\x7f');
    }
    CHECK_THROWS_AS(train::load_training_state(path, "student", fresh), format_error);
  }
  SECTION("not a checkpoint at all") {
    std::ofstream(path) << "hello";
    CHECK_THROWS_WITH(train::load_training_state(path, "student", fresh), Catch::Contains("is not a minnow checkpoint"));
  }
  SECTION("a missing file") {
    CHECK_THROWS_AS(train::load_training_state(temp_file("missing.ckpt"), "student", fresh), io_error);
  }
  SECTION("a directory") {
    CHECK_THROWS_AS(train::load_training_state(path.parent_path(), "student", fresh), io_error);
    CHECK_THROWS_WITH(train::load_training_state(path.parent_path(), "student", fresh),
                      Catch::Contains(path.parent_path().string()) && Catch::Contains("a directory"));
  }
  SECTION("float checkpoint read as double") {
    auto as_double = nn::make_student<double>(1);
    CHECK_THROWS_WITH(train::load_training_state(path, "student", as_double), Catch::Contains("stores 4-byte scalars, expected 8"));
  }
  CHECK(fresh.parameters()[0].value(0) == before);
}

TEST_CASE("an optimizer's step count is stored exactly and a corrupt one is refused before anything changes") {
  auto model = nn::make_student<float>(3);
  nn::Adam<float> adam(model.parameters(), 1e-3);
  auto* optimizer = static_cast<nn::Optimizer<float>*>(&adam);
  const fs::path path = temp_file("steps.ckpt");
  // 2^40 + 1 has no exact float: a count stored as a tensor element would come back as 2^40.
  const std::int64_t steps = (std::int64_t{1} << 40) + 1;
  adam.set_step_count(steps);
  train::save_training_state(path, "student", model, optimizer);
  auto restored = nn::make_student<float>(4);
  nn::Adam<float> restored_adam(restored.parameters(), 1e-3);
  train::load_training_state(path, "student", restored, static_cast<nn::Optimizer<float>*>(&restored_adam));
  CHECK(restored_adam.step_count() == steps);

  CHECK_THROWS_WITH(adam.set_step_count(-1), Catch::Contains("step count must be >= 0"));
  for (const std::int64_t bad : {std::numeric_limits<std::int64_t>::min(), std::int64_t{-1}, std::numeric_limits<std::int64_t>::max()}) {
    // The same entries as save_training_state, with a counter the optimizer could never have.
    std::int64_t value = bad;
    io::save_checkpoint<float>(path, "student", train::training_state(model, optimizer),
                               {{"optimizer.steps", &value, std::numeric_limits<std::int64_t>::min()}});
    auto target = nn::make_student<float>(5);
    nn::Adam<float> target_adam(target.parameters(), 1e-3);
    const float weight_before = target.parameters()[0].value(0);
    CHECK_THROWS_WITH(train::load_training_state(path, "student", target, static_cast<nn::Optimizer<float>*>(&target_adam)),
                      Catch::Contains("counter 'optimizer.steps' is " + std::to_string(bad)) && Catch::Contains("outside"));
    CHECK(target.parameters()[0].value(0) == weight_before);
    CHECK(target_adam.step_count() == 0);
  }
}

TEST_CASE("checkpoint entries with negative or overflowing extents are refused") {
  Tensor<float, 1> twelve({12});
  const fs::path path = temp_file("extents.ckpt");
  const std::vector<io::CheckpointEntry<float>> negative{{"w", {-3, -4}, twelve.view()}};
  CHECK_THROWS_WITH(io::save_checkpoint<float>(path, "t", negative), Catch::Contains("'w' has a negative extent -3"));
  CHECK_THROWS_WITH(io::load_checkpoint<float>(path, "t", negative), Catch::Contains("'w' has a negative extent -3"));
  const std::vector<io::CheckpointEntry<float>> huge{{"w", {index_t{1} << 40, index_t{1} << 40}, twelve.view()}};
  CHECK_THROWS_WITH(io::save_checkpoint<float>(path, "t", huge), Catch::Contains("'w'") && Catch::Contains("overflows"));
  CHECK_FALSE(fs::exists(path));
}

TEST_CASE("saving a checkpoint keeps symlinks, refuses non-regular targets and leaves no temporary file") {
  auto student = nn::make_student<float>(1);
  const fs::path target = temp_file("target.ckpt"), link = temp_file("link.ckpt");
  fs::remove(target);
  fs::remove(link);
  std::ofstream(target) << "old";
  fs::create_symlink(target, link);
  train::save_training_state(link, "student", student);
  CHECK(fs::is_symlink(link));
  CHECK(fs::file_size(target) > 100);  // the target was replaced, through the link
  auto restored = nn::make_student<float>(2);
  train::load_parameters(target, "student", restored);
  CHECK(restored.parameters()[0].value(0) == student.parameters()[0].value(0));

  const fs::path directory = temp_file("a-directory.ckpt");
  fs::create_directories(directory);
  CHECK_THROWS_WITH(train::save_training_state(directory, "student", student),
                    Catch::Contains(directory.string()) && Catch::Contains("it is a directory"));
  CHECK(fs::is_directory(directory));
  CHECK(leftover_temporaries(directory) == 0);
  const fs::path fifo = temp_file("fifo.ckpt");
  fs::remove(fifo);
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH(train::save_training_state(fifo, "student", student), Catch::Contains("it is a FIFO"));
  CHECK(fs::is_fifo(fifo));
  CHECK(leftover_temporaries(fifo) == 0);
  CHECK_THROWS_AS(train::load_parameters(fifo, "student", student), io_error);
  CHECK(leftover_temporaries(target) == 0);
  CHECK_THROWS_AS(train::save_training_state(temp_file("no-such-dir") / "x.ckpt", "student", student), io_error);
}

TEST_CASE("a batch whose shape does not fit the network is refused") {
  auto student = nn::make_student<float>(1);
  Tensor<float, 4> wrong({2, 1, 32, 32});
  CHECK_THROWS_WITH(student.forward(wrong), "Linear(1568, 64): input [2, 2048, 1, 1] has 2048 features per sample, expected 1568");
  CHECK_THROWS_AS(student.forward(wrong), shape_error);
}

TEST_CASE("an empty batch to Trainer::step is refused as empty, and nothing changes") {
  auto model = nn::make_student<float>(1);
  nn::Sgd<float> sgd(model.parameters(), 0.1);
  train::Trainer<float> trainer(model, sgd);
  data::Dataset<float> tiny;
  tiny.images.resize({2, 1, 28, 28});
  tiny.labels.resize({2});
  const float before = model.parameters()[0].value(0);
  CHECK_THROWS_WITH(trainer.step(tiny, std::span<const index_t>{}), "Trainer::step: the batch is empty (no sample indices)");
  CHECK_THROWS_AS(trainer.step(tiny, std::span<const index_t>{}), value_error);
  CHECK(model.parameters()[0].value(0) == before);
  CHECK(trainer.steps() == 0);
}

TEST_CASE("a process killed while it saves a large model never leaves a file that fails to load, nor a pile of temporaries") {
  // The teacher's checkpoint is 25.6 MB: each save takes long enough for a kill to land inside it.
  auto model = nn::make_teacher<float>(1);
  const fs::path path = temp_file("killed.ckpt");
  model.parameters()[0].value(0) = 0.0f;  // parameter 0, element 0 counts the saves: which version is on disk
  train::save_training_state(path, "teacher", model);
  std::mt19937 rng(2026);
  std::uniform_int_distribution<int> delay_ms(0, 250);
  float newest_possible = 0.0f;
  for (int round = 0; round < 20; ++round) {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      // The child saves version after version until it is killed (no Catch, no return into the runner).
      for (int version = 1;; ++version) {
        model.parameters()[0].value(0) = static_cast<float>(round * 1000 + version);
        train::save_training_state(path, "teacher", model);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    REQUIRE(::kill(child, SIGKILL) == 0);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFSIGNALED(status));
    auto loaded = nn::make_teacher<float>(2);
    REQUIRE_NOTHROW(train::load_training_state(path, "teacher", loaded));  // the previous file, or a newer complete one
    const float version = loaded.parameters()[0].value(0);
    CHECK(version <= static_cast<float>(round * 1000 + 999));
    CHECK((version == newest_possible || version > static_cast<float>(round * 1000)));
    newest_possible = version;
    // At most the killed save's temporary is left; the next save removes it.
    CHECK(leftover_temporaries(path) <= 1);
  }
  train::save_training_state(path, "teacher", model);
  CHECK(leftover_temporaries(path) == 0);
  fs::remove(path);
}
