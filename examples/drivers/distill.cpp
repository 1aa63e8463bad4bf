// Distils an ensemble of teachers into a small student on Fashion-MNIST (Hinton, Vinyals & Dean 2015)
// and prints one table: each teacher, the ensembles of 3 and of K (mean of probabilities, mean of
// logits, majority vote, weights fitted on held-out images), their diversity, and the student trained
// three ways with the same seed and epochs: on labels only, by KD from one teacher, by KD from the ensemble.
//
//   distill --teachers 3 --teacher-epochs 3 --student-epochs 10 --seeds 1
//
// Split: teachers train on the first N − H training images; the last H (--holdout, 5,000 by default,
// at most N/10) are held out to fit the ensemble weights. Students train on all N images (with
// --augment-copies V, on N·(1 + V): the originals and V randomly shifted and flipped copies, the teachers'
// outputs cached on each), from labels or from soft targets `α·KD(T) + (1 − α)·CE`. Teacher k of seed s
// has seed 1000·s + k (or 1000·S + k for every s with --teacher-seed S, which shares one teacher set); the
// students of seed s have seed s. Every model uses the recipe of examples/train.cpp (SGD, Nesterov 0.9, weight
// decay 5e-4, batch 64, cosine annealing), with learning rate 0.05 for teachers and 0.02 for all three
// students: at 0.05, KD at T >= 2 kills the student in its first steps (its gradient T·(q − p) starts
// up to T times larger than cross-entropy's, and this CNN has no normalisation to absorb it). Teachers
// may train on shifted and flipped batches: all of them (--teacher-augment) or some (--augmented-teachers),
// which makes a recipe-diverse ensemble; --augmented-epochs gives them the longer training they need.
#include <minnow/data.hpp>
#include <minnow/distill.hpp>
#include <minnow/ensemble.hpp>
#include <minnow/nn.hpp>
#include <minnow/pipeline/ensemble_checkpoints.hpp>
#include <minnow/pipeline/ensemble_training.hpp>
#include <minnow/train.hpp>

#include "../architectures.hpp"
#include "../cli.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using minnow::index_t;
using minnow::Tensor;
using minnow::TensorView;
namespace pipeline = minnow::pipeline;

struct Options {
  int teachers = 3;
  std::vector<std::string> teacher_arch{"teacher"};
  int teacher_epochs = 3;
  std::string student_arch = "student";
  int student_epochs = 10;
  double temperature = 4.0;
  double alpha = 0.9;
  std::vector<unsigned long long> seeds{1};
  unsigned long long teacher_seed = 0;  // 0: each experiment seed trains its own teachers
  bool bagging = false;
  bool teacher_augment = false;        // every teacher trains on randomly shifted and flipped batches
  std::vector<int> augmented_teachers;  // or only these (1-based)
  int augmented_epochs = 0;             // epochs of the augmented teachers; 0: --teacher-epochs
  bool parallel = false;
  bool per_epoch = false;  // --teacher-outputs per-epoch
  int threads = 2;
  long batch = 64;
  double lr = 0.05;          // teachers
  double student_lr = 0.02;  // all three students
  long holdout = 5000;
  int augment_copies = 0;  // students train on the training set plus this many augmented copies
  std::string data_dir = minnow::data::default_fashion_mnist_dir().string();
  long train_limit = -1;
  bool progress = true;
  std::string load_dir, save_dir;
};

Options parse(int argc, char** argv) {
  Options o;
  example::CommandLine cli("distill", "Trains K teachers, evaluates them and their ensembles, and distils a student three ways.");
  cli.option("--teachers", o.teachers, "ensemble size K (default 3)")
      .option("--teacher-arch", o.teacher_arch,
              "comma list of architectures (teacher, teacher5x5, student), cycled over the members (default teacher)")
      .option("--teacher-epochs", o.teacher_epochs, "epochs per teacher (default 3)")
      .option("--student-arch", o.student_arch, "student | teacher | teacher5x5 (a teacher: a born-again network; default student)")
      .option("--student-epochs", o.student_epochs, "epochs per student (default 10)")
      .option("--temperature", o.temperature, "distillation temperature T (default 4)")
      .option("--alpha", o.alpha, "weight of the KD term against cross-entropy (default 0.9)")
      .option("--seeds", o.seeds, "comma list: repeat the whole experiment per seed, print mean ± sd (default 1)")
      .option("--teacher-seed", o.teacher_seed,
              "one teacher set (seeds 1000·S + k) for every experiment seed; with --save/--load-teachers it trains once")
      .flag("--bagging", o.bagging, true, "train each teacher on a bootstrap sample")
      .flag("--teacher-augment", o.teacher_augment, true,
            "teachers train on batches shifted by up to 2 pixels and flipped at random (as --augment-copies' copies)")
      .option("--augmented-teachers", o.augmented_teachers,
              "comma list of the teachers (1-based) that train augmented, the others plainly: a recipe-diverse "
              "ensemble, e.g. 2,4 (default: none, or all with --teacher-augment)")
      .option("--augmented-epochs", o.augmented_epochs,
              "epochs of the augmented teachers, which converge more slowly (default: --teacher-epochs)")
      .flag("--parallel", o.parallel, true, "train the teachers in parallel threads, one thread each")
      .option("--teacher-outputs", [&o](const std::string& mode) {
        if (mode != "cached" && mode != "per-epoch") throw minnow::value_error("expected cached or per-epoch");
        o.per_epoch = mode == "per-epoch";
      }, "cached (soft targets computed once, default) | per-epoch (teacher forward on every batch)")
      .option("--threads", o.threads, "threads (default 2)")
      .option("--batch", o.batch, "batch size (default 64)")
      .option("--lr", o.lr, "teachers' learning rate (default 0.05)")
      .option("--student-lr", o.student_lr, "all three students' learning rate (default 0.02)")
      .option("--augment-copies", o.augment_copies,
              "students train on the training images plus this many copies shifted by up to 2 pixels and "
              "flipped at random, with the teachers' outputs cached on every copy (default 0)")
      .option("--holdout", o.holdout, "training images held out from the teachers to fit ensemble weights (default 5000)")
      .option("--data", o.data_dir, "Fashion-MNIST directory")
      .option("--train-limit", o.train_limit, "use only the first N training images")
      .flag("--no-progress", o.progress, false, "no progress bars")
      .option("--load-teachers", o.load_dir, "load the teacher checkpoints found in DIR, train the missing ones")
      .option("--save-teachers", o.save_dir, "save every trained teacher to DIR");
  cli.parse(argc, argv);
  // Every option is checked here, before the data loads and the teachers train.
  example::check_at_least("--teachers", o.teachers, 1);
  for (const auto& name : o.teacher_arch) example::check_option("--teacher-arch", [&] { example::check_architecture(name); });
  example::check_at_least("--teacher-epochs", o.teacher_epochs, 1);
  example::check_option("--student-arch", [&] { example::check_architecture(o.student_arch); });
  example::check_at_least("--student-epochs", o.student_epochs, 1);
  minnow::distill::check_temperature<float>("--temperature", o.temperature);
  example::check_alpha("--alpha", o.alpha);
  example::check_threads("--threads", o.threads);
  example::check_at_least("--batch", o.batch, 1);
  example::check_rate("--lr", o.lr);
  example::check_rate("--student-lr", o.student_lr);
  example::check_input_dir("--data", o.data_dir);
  example::check_train_limit("--train-limit", o.train_limit);
  example::check_at_least("--augmented-epochs", o.augmented_epochs, 0);
  if (o.augmented_epochs > 0 && o.augmented_teachers.empty() && !o.teacher_augment) {
    throw minnow::value_error("--augmented-epochs needs augmented teachers (--augmented-teachers or --teacher-augment)");
  }
  if (o.augmented_epochs == 0) o.augmented_epochs = o.teacher_epochs;
  example::check_at_least("--augment-copies", o.augment_copies, 0);
  example::check_at_least("--holdout", o.holdout, 0);
  for (const int k : o.augmented_teachers) {
    if (k < 1 || k > o.teachers) {
      throw minnow::value_error(example::concat("--augmented-teachers: teacher ", k, " is not in 1..", o.teachers));
    }
  }
  std::sort(o.augmented_teachers.begin(), o.augmented_teachers.end());
  if (std::adjacent_find(o.augmented_teachers.begin(), o.augmented_teachers.end()) != o.augmented_teachers.end()) {
    throw minnow::value_error("--augmented-teachers names a teacher twice");
  }
  if (o.teacher_augment && !o.augmented_teachers.empty()) {
    throw minnow::value_error("--teacher-augment (every teacher) and --augmented-teachers exclude each other");
  }
  // The directories last, as --save-teachers creates its own; before --load-teachers, which may name the same one.
  if (!o.save_dir.empty()) example::check_output_dir("--save-teachers", o.save_dir);
  if (!o.load_dir.empty()) example::check_input_dir("--load-teachers", o.load_dir);
  if (o.teacher_augment) {
    o.augmented_teachers.resize(static_cast<std::size_t>(o.teachers));
    std::iota(o.augmented_teachers.begin(), o.augmented_teachers.end(), 1);
  }
  return o;
}

/// One line of the results table: a name and a test accuracy (or another number, with its unit).
struct Row {
  std::string name;
  double value;
  bool percent = true;
};

/// Per seed: the table rows, and the measured times.
struct SeedResult {
  std::vector<Row> rows;
  double teacher_epoch_seconds = 0.0;  // mean over trained teachers' epochs (0 when all were loaded)
  double teacher_logits_seconds = 0.0;
  double soft_targets_seconds = 0.0;
  std::vector<double> student_epoch_seconds;  // labels, KD one, KD ensemble
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string format_weights(const std::vector<double>& w) {
  std::string out;
  char buffer[32];
  for (std::size_t k = 0; k < w.size(); ++k) {
    std::snprintf(buffer, sizeof buffer, "%s%.2f", k ? " " : "", w[k]);
    out += buffer;
  }
  return out;
}

/// The views of --teacher-augment and --augment-copies: shifts of up to 2 pixels, filled with black, and
/// left-right flips.
minnow::data::Augmentation fashion_mnist_views() {
  return {.max_shift = 2, .horizontal_flip = true, .fill = minnow::data::black_level(minnow::data::fashion_mnist_normalization)};
}

std::string augmented_note(const Options& o) {
  if (o.augmented_teachers.empty()) return "";
  std::string out = ", augmented";
  if (static_cast<int>(o.augmented_teachers.size()) != o.teachers) {
    out += ": teacher";
    for (std::size_t i = 0; i < o.augmented_teachers.size(); ++i) out += (i ? ", " : " ") + std::to_string(o.augmented_teachers[i]);
  }
  if (o.augmented_epochs != o.teacher_epochs) out += example::concat(" (", o.augmented_epochs, " epochs)");
  return out;
}

SeedResult run_seed(const Options& o, unsigned long long seed, const minnow::data::TrainTest<float>& data) {
  using Clock = std::chrono::steady_clock;
  SeedResult result;
  const index_t n = data.train.size();
  const index_t held = std::min<index_t>(o.holdout, n / 10);
  const auto pool = minnow::data::range_indices(0, n - held);
  const auto held_out = minnow::data::range_indices(n - held, n);
  const auto schedule = o.parallel ? pipeline::Schedule::parallel : pipeline::Schedule::sequential;
  const auto k_count = static_cast<std::size_t>(o.teachers);

  // ---- teachers: load what is saved, train the rest
  pipeline::EnsembleOptions options;
  options.recipe = {.epochs = o.teacher_epochs, .batch = o.batch, .learning_rate = o.lr};
  minnow::train::Recipe augmented_recipe = options.recipe;
  augmented_recipe.augmentation = fashion_mnist_views();
  augmented_recipe.epochs = o.augmented_epochs;
  std::vector<pipeline::MemberSpec> specs;
  for (std::size_t k = 0; k < k_count; ++k) {
    const unsigned long long teacher_seed = o.teacher_seed != 0 ? o.teacher_seed : seed;
    specs.push_back({o.teacher_arch[k % o.teacher_arch.size()], 1000 * teacher_seed + k, o.bagging});
    if (std::find(o.augmented_teachers.begin(), o.augmented_teachers.end(), static_cast<int>(k + 1)) !=
        o.augmented_teachers.end()) {
      specs.back().recipe = augmented_recipe;
    }
  }
  options.schedule = schedule;
  options.threads = o.threads;
  options.progress = o.progress;
  options.on_epoch = [&](std::size_t k, const minnow::train::EpochStats& s) {
    std::printf("  teacher %zu epoch %d: loss %.4f train acc %.4f, %.1f s\n", k + 1, s.epoch + 1, s.train.loss,
                s.train.accuracy, s.seconds);
    std::fflush(stdout);
  };
  const pipeline::MemberCheckpoints files{.load_dir = o.load_dir, .save_dir = o.save_dir,
                                          .file_name = [&](const pipeline::MemberSpec& spec) {
                                            const int epochs = spec.recipe ? spec.recipe->epochs : o.teacher_epochs;
                                            return pipeline::member_file_name(spec, epochs, pool.size(),
                                                                              spec.recipe ? "aug" : "");
                                          }};
  std::printf("teachers: %zu × %d epoch(s) on %zu images%s%s; missing ones train %s\n", k_count, o.teacher_epochs,
              pool.size(), o.bagging ? ", bootstrap samples" : "", augmented_note(o).c_str(),
              o.parallel ? "in parallel, one thread each" : example::concat("one at a time, ", o.threads, " thread(s)").c_str());
  std::fflush(stdout);
  auto teachers = pipeline::load_or_train_ensemble<float>(
      specs, example::make_architecture<float>, data.train, pool, options, files,
      [](std::size_t k, const pipeline::Member<float>&, const pipeline::MemberOrigin& origin) {
        if (!origin.path.empty()) std::printf("teacher %zu: %s %s\n", k + 1, origin.loaded ? "loaded" : "saved", origin.path.c_str());
        std::fflush(stdout);
      });
  double epoch_seconds = 0.0;
  int epochs = 0;
  for (const auto& teacher : teachers) {
    for (const auto& e : teacher.epochs) {
      epoch_seconds += e.seconds;
      ++epochs;
    }
  }
  if (epochs > 0) result.teacher_epoch_seconds = epoch_seconds / epochs;

  // ---- teacher outputs: test set, held-out images, and (cached mode) the whole training set
  auto start = Clock::now();
  const auto models = pipeline::models<float>(teachers);
  const auto test_logits = pipeline::ensemble_logits<float>(models, data.test, schedule, o.threads);
  const auto held_logits = pipeline::ensemble_logits<float>(models, data.train, held_out, schedule, o.threads);
  // The students' training images: the training set, plus augmented copies whose teacher outputs are
  // cached like the originals' (each copy image is fixed, so teacher and student see the same view).
  minnow::data::Dataset<float> augmented;
  if (o.augment_copies > 0) {
    augmented = minnow::data::with_augmented_copies<float>(data.train, fashion_mnist_views(), o.augment_copies, seed);
  }
  const auto& student_train = o.augment_copies > 0 ? augmented : data.train;
  std::vector<Tensor<float, 2>> train_logits;
  if (!o.per_epoch) train_logits = pipeline::ensemble_logits<float>(models, student_train, schedule, o.threads);
  result.teacher_logits_seconds = seconds_since(start);

  const auto test_labels = pipeline::labels_of(data.test, minnow::data::range_indices(0, data.test.size()));
  const auto held_labels = pipeline::labels_of(data.train, held_out);
  for (std::size_t k = 0; k < k_count; ++k) {
    result.rows.push_back({example::concat("teacher ", k + 1, " (", specs[k].architecture, ")"),
                           pipeline::accuracy<float>(test_logits[k], test_labels)});
  }

  // ---- ensembles of 3 and of K
  std::vector<std::size_t> sizes{std::min<std::size_t>(3, k_count)};
  if (k_count > 3) sizes.push_back(k_count);
  for (const std::size_t m : sizes) {
    if (m < 2) break;
    const std::vector<TensorView<const float, 2>> test_members(test_logits.begin(), test_logits.begin() + static_cast<long>(m));
    Tensor<float, 2> combined(test_logits[0].shape());
    const std::string name = example::concat("ensemble of ", m);
    minnow::ensemble::mean_probabilities<float>(test_members, 1.0, combined);
    result.rows.push_back({name + ": mean of probabilities", pipeline::accuracy<float>(combined, test_labels)});
    minnow::ensemble::mean_logits<float>(test_members, 1.0, combined);
    result.rows.push_back({name + ": mean of logits", pipeline::accuracy<float>(combined, test_labels)});
    Tensor<std::int32_t, 1> votes({data.test.size()});
    minnow::ensemble::majority_vote<float>(test_members, votes);
    index_t agree = 0;
    for (index_t i = 0; i < votes.size(); ++i) agree += votes(i) == test_labels(i) ? 1 : 0;
    result.rows.push_back({name + ": majority vote", static_cast<double>(agree) / static_cast<double>(votes.size())});
    if (held > 0) {
      std::vector<Tensor<float, 2>> held_probs;
      for (std::size_t k = 0; k < m; ++k) {
        held_probs.emplace_back(held_logits[k].shape());
        minnow::distill::softmax<float>(held_logits[k], 1.0, held_probs.back());
      }
      const auto fitted = minnow::ensemble::fit_weights<float>(pipeline::views<float, 2>(held_probs), held_labels);
      minnow::ensemble::mean_probabilities<float>(test_members, fitted.weights, 1.0, combined);
      result.rows.push_back({example::concat(name, ": fitted weights (", format_weights(fitted.weights), ")"),
                             pipeline::accuracy<float>(combined, test_labels)});
    }
    result.rows.push_back({name + ": disagreement", minnow::ensemble::disagreement<float>(test_members)});
    result.rows.push_back({name + ": mean KL to ensemble (nats)",
                           minnow::ensemble::mean_kl_to_ensemble<float>(test_members, 1.0), false});
  }

  // ---- students: labels only, KD from teacher 1, KD from the ensemble of K
  start = Clock::now();
  Tensor<float, 2> soft_targets;
  if (!o.per_epoch) soft_targets = pipeline::ensemble_soft_targets<float>(train_logits, o.temperature);
  result.soft_targets_seconds = seconds_since(start);
  const minnow::train::Recipe student_recipe{.epochs = o.student_epochs, .batch = o.batch, .learning_rate = o.student_lr};
  std::vector<minnow::nn::Sequential<float>*> first_teacher{models[0]};
  const std::string ensemble_name = example::concat("KD from ensemble of ", k_count);
  const char* names[] = {"labels only", "KD from teacher 1", ensemble_name.c_str()};
  for (int variant = 0; variant < 3; ++variant) {
    minnow::train::LossFunction<float> loss;
    if (variant == 0) {
      loss = minnow::train::cross_entropy<float>();
    } else if (o.per_epoch) {
      loss = pipeline::OnlineTeacherLoss<float>(variant == 1 ? first_teacher : models, student_train, o.temperature, o.alpha);
    } else if (variant == 1) {
      loss = minnow::distill::SoftTargetLoss<float>(minnow::distill::TeacherLogits<float>(train_logits[0]), o.temperature, o.alpha);
    } else {
      loss = minnow::distill::SoftTargetLoss<float>(minnow::distill::TeacherProbabilities<float>(soft_targets), o.temperature,
                                                    o.alpha);
    }
    auto student = example::make_architecture<float>(o.student_arch, seed);
    std::printf("student (%s), %s: %d epoch(s) on %td images\n", o.student_arch.c_str(), names[variant], o.student_epochs,
                student_train.size());
    std::fflush(stdout);
    minnow::train::FitOptions<float> fit_options{.progress = o.progress};
    fit_options.on_epoch = [](const minnow::train::EpochStats& s) {
      std::printf("  epoch %d: loss %.4f train acc %.4f, %.1f s\n", s.epoch + 1, s.train.loss, s.train.accuracy, s.seconds);
      std::fflush(stdout);
    };
    const auto history = minnow::train::fit<float>(student, student_train, student_recipe, seed, loss, fit_options);
    double seconds = 0.0;
    for (const auto& e : history) seconds += e.seconds;
    result.student_epoch_seconds.push_back(seconds / static_cast<double>(history.size()));
    result.rows.push_back({example::concat("student (", o.student_arch, "): ", names[variant]),
                           minnow::train::evaluate(student, data.test).accuracy});
  }
  return result;
}

void print_rows(const std::vector<Row>& rows) {
  for (const auto& r : rows) {
    if (r.percent) {
      std::printf("  %-58s %8.2f %%\n", r.name.c_str(), 100.0 * r.value);
    } else {
      std::printf("  %-58s %8.4f\n", r.name.c_str(), r.value);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    minnow::set_threads(o.threads);
    const auto data =
        minnow::data::load_fashion_mnist<float>(o.data_dir, minnow::data::fashion_mnist_normalization, o.train_limit);
    std::string architectures;
    for (const auto& a : o.teacher_arch) architectures += (architectures.empty() ? "" : ", ") + a;
    std::printf("%d teacher(s) (%s), student %s, T = %g, alpha = %g, teacher outputs %s, %td training / %td test images, "
                "%d thread(s)\n",
                o.teachers, architectures.c_str(), o.student_arch.c_str(), o.temperature, o.alpha,
                o.per_epoch ? "per epoch" : "cached", data.train.size(), data.test.size(), o.threads);
    std::vector<SeedResult> results;
    const auto start = std::chrono::steady_clock::now();
    for (const auto seed : o.seeds) {
      std::printf("\n=== seed %llu ===\n", seed);
      results.push_back(run_seed(o, seed, data));
      const auto& r = results.back();
      std::printf("\nseed %llu: test accuracy on %td images\n", seed, data.test.size());
      print_rows(r.rows);
      char teacher_epoch[32] = "- (loaded)";
      if (r.teacher_epoch_seconds > 0.0) std::snprintf(teacher_epoch, sizeof teacher_epoch, "%.1f s", r.teacher_epoch_seconds);
      std::printf("  times: teacher epoch %s, teacher logits %.1f s, soft targets %.3f s, student epoch %.1f / %.1f / %.1f s "
                  "(labels / KD one / KD ensemble)\n",
                  teacher_epoch, r.teacher_logits_seconds, r.soft_targets_seconds, r.student_epoch_seconds[0],
                  r.student_epoch_seconds[1], r.student_epoch_seconds[2]);
      std::fflush(stdout);
    }
    if (results.size() > 1) {
      std::printf("\nmean ± sd over %zu seeds:\n", results.size());
      const auto count = static_cast<double>(results.size());
      for (std::size_t i = 0; i < results[0].rows.size(); ++i) {
        double sum = 0.0, squares = 0.0;
        for (const auto& r : results) sum += r.rows[i].value;
        const double mean = sum / count;
        for (const auto& r : results) squares += (r.rows[i].value - mean) * (r.rows[i].value - mean);
        const double sd = std::sqrt(squares / (count - 1.0));  // sample standard deviation
        // Fitted weights differ per seed: name the row without them.
        std::string name = results[0].rows[i].name;
        if (const auto cut = name.find(" ("); cut != std::string::npos && name.find("fitted") != std::string::npos) {
          name = name.substr(0, cut);
        }
        const double scale = results[0].rows[i].percent ? 100.0 : 1.0;
        std::printf("  %-58s %8.2f ± %.2f%s\n", name.c_str(), scale * mean, scale * sd,
                    results[0].rows[i].percent ? " %" : "");
      }
    }
    std::printf("\ntotal %.1f min\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 60.0);
    // Per seed: three plain teachers of 8 epochs and two augmented ones of 15 (about 25 min of teacher
    // training on 2 cores), then three 40-epoch students; saved teachers make reruns cheap.
    std::printf("full-size comparison (docs/results.md; about 1.5 hours on 2 idle cores):\n"
                "  distill --teachers 5 --teacher-epochs 8 --augmented-teachers 2,4 --augmented-epochs 15 "
                "--student-epochs 40 --seeds 1,2,3 --temperature 2 --alpha 0.5 --parallel "
                "--save-teachers teachers --load-teachers teachers\n");
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "distill: " << e.what() << "\n";
    return 1;
  }
}
