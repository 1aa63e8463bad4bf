#pragma once
/// @file pipeline/ensemble_training.hpp
/// @brief Where nn/ meets distill/ and ensemble/: train an ensemble of K members (seeds, optional
/// bootstrap bagging, optional different architectures; in parallel threads or one after another),
/// compute the members' logits on a data set, cache the ensemble's soft targets, and distil a student
/// from them with train::fit — from the cached table (distill::SoftTargetLoss) or with the teachers run
/// on every batch (OnlineTeacherLoss).
///
///     auto members = pipeline::train_ensemble<float>(specs, build, data.train, pool, options);
///     const auto logits = pipeline::ensemble_logits<float>(pipeline::models(members), data.train);
///     const auto targets = pipeline::ensemble_soft_targets<float>(logits, 4.0);
///     distill::SoftTargetLoss<float> loss(distill::TeacherProbabilities<float>(targets), 4.0, 0.9);
///     train::fit<float>(student, data.train, recipe, seed, loss);
///
/// Threads: the kernels size their OpenMP regions by omp_get_max_threads() of the calling thread, a
/// per-thread setting that Eigen's products follow as well. The parallel schedule runs one member per
/// std::thread and sets that thread's OpenMP count to threads / members, so no member opens nested or
/// competing regions. A member's result depends only on its seed and its own thread count, so the
/// parallel schedule (1 thread per member) and the sequential one with 1 thread give bit-identical members.

#include <minnow/data/augment.hpp>
#include <minnow/data/batches.hpp>
#include <minnow/data/bootstrap.hpp>
#include <minnow/data/dataset.hpp>
#include <minnow/detail/parallel.hpp>
#include <minnow/distill/kd_loss.hpp>
#include <minnow/ensemble/combine.hpp>
#include <minnow/error.hpp>
#include <minnow/nn/sequential.hpp>
#include <minnow/tensor.hpp>
#include <minnow/train/fit.hpp>
#include <minnow/train/trainer.hpp>

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace minnow::pipeline {

/// @brief One ensemble member: its architecture (a name the caller's ModelBuilder knows, also the tag of its
/// checkpoint), its seed (initialisation, batch order and bootstrap sample), whether it trains on a bootstrap sample of the training pool, and its own
/// recipe when it should not train with the ensemble's (e.g. half the members augmented: recipe diversity).
struct MemberSpec {
  std::string architecture = "teacher";
  std::uint64_t seed = 1;
  bool bagging = false;
  std::optional<train::Recipe> recipe{};  ///< overrides EnsembleOptions::recipe for this member
};

/// @brief Builds a freshly initialised member from its spec's architecture name and seed, e.g.
/// `[](std::string_view, std::uint64_t seed) { return nn::make_teacher<float>(seed); }`.
/// @throws value_error (its own) for a name it does not know.
template <class T>
using ModelBuilder = std::function<nn::Sequential<T>(std::string_view architecture, std::uint64_t seed)>;

/// @brief How K independent trainings share the machine.
enum class Schedule {
  sequential,  ///< one after another, each on all the threads
  parallel,    ///< min(K, threads) at a time on std::threads, each single-threaded
};

/// @brief A trained member: its spec, its model and its per-epoch statistics.
template <class T>
struct Member {
  MemberSpec spec;
  nn::Sequential<T> model;
  std::vector<train::EpochStats> epochs;
  double seconds = 0.0;  ///< wall time of its training
};

/// @brief Options of train_ensemble().
struct EnsembleOptions {
  train::Recipe recipe;
  Schedule schedule = Schedule::sequential;
  int threads = 2;        ///< threads in total (sequential: per member; parallel: members at a time)
  bool progress = false;  ///< progress bars; only with the sequential schedule (parallel ones would interleave)
  /// After every epoch of member `k`; calls are serialized by a mutex, so it may print.
  std::function<void(std::size_t k, const train::EpochStats&)> on_epoch;
};

namespace detail {

inline void check_threads(const char* what, int threads) {
  if (threads <= 0) throw value_error(minnow::detail::concat(what, ": threads must be > 0, got ", threads));
}

/// OpenMP's thread count of the calling thread only (omp_set_num_threads sets the caller's ICV; a
/// std::thread starts from the process default, not from its creator's setting).
inline void set_thread_openmp_threads(int threads) noexcept {
#if defined(_OPENMP)
  omp_set_num_threads(threads);
#else
  (void)threads;
#endif
}

/// Sets the calling thread's OpenMP count for a scope, then restores it. Eigen's products follow it too:
/// minnow never sets Eigen's process-wide count, which would race between threads (see set_threads).
class ThreadsScope {
 public:
  explicit ThreadsScope(int threads) : previous_(minnow::detail::max_threads()) { set_thread_openmp_threads(threads); }
  ~ThreadsScope() { set_thread_openmp_threads(previous_); }
  ThreadsScope(const ThreadsScope&) = delete;
  ThreadsScope& operator=(const ThreadsScope&) = delete;

 private:
  int previous_;
};

/// Runs `body(k)` for k in [0, count) with the schedule. Parallel: min(count, threads) std::threads take
/// members in order from a shared counter, each with OpenMP at max(1, threads / workers). The first
/// exception (lowest k) is rethrown after every thread has finished.
template <class Body>
void run_members(std::size_t count, Schedule schedule, int threads, Body&& body) {
  if (count == 0) return;
  if (schedule == Schedule::sequential) {
    const ThreadsScope scope(threads);
    for (std::size_t k = 0; k < count; ++k) body(k);
    return;
  }
  const auto workers = static_cast<int>(std::min<std::size_t>(count, static_cast<std::size_t>(threads)));
  const int per_member = std::max(1, threads / workers);
  std::atomic<std::size_t> next{0};
  std::vector<std::exception_ptr> errors(count);
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(workers));
  for (int w = 0; w < workers; ++w) {
    pool.emplace_back([&] {
      set_thread_openmp_threads(per_member);
      for (std::size_t k = next.fetch_add(1); k < count; k = next.fetch_add(1)) {
        try {
          body(k);
        } catch (...) {
          errors[k] = std::current_exception();
        }
      }
    });
  }
  for (auto& thread : pool) thread.join();
  for (const auto& error : errors) {
    if (error) std::rethrow_exception(error);
  }
}

}  // namespace detail

/// @brief Trains the members `specs` on the training pool `pool` (sample indices of `data`): member k is
/// `build(spec.architecture, spec.seed)` trained by train::fit() with `spec.recipe` or else `options.recipe`
/// and seed `spec.seed`, on `pool` itself or, with bagging, on `select(pool, bootstrap_indices(|pool|, seed))`.
/// Returns the members in the order of `specs`, whatever the schedule. `on_member(k, member)` runs as soon
/// as member k has finished (serialized with options.on_epoch), e.g. to save it at once, so that a long run
/// that is cut off keeps the members it finished.
/// Every member is built before any training, so that a name `build` refuses fails at once.
/// @throws value_error for no members, a bad recipe or thread count, an empty pool; what `build` throws.
template <class T>
[[nodiscard]] std::vector<Member<T>> train_ensemble(
    std::span<const MemberSpec> specs, const ModelBuilder<T>& build, const data::Dataset<T>& data, std::span<const index_t> pool,
    const EnsembleOptions& options, const std::function<void(std::size_t k, Member<T>&)>& on_member = {}) {
  constexpr const char* what = "train_ensemble";
  if (specs.empty()) throw value_error(minnow::detail::concat(what, ": the ensemble has no members"));
  if (pool.empty()) throw value_error(minnow::detail::concat(what, ": the training pool is empty"));
  train::check_recipe(what, options.recipe);
  detail::check_threads(what, options.threads);
  for (const auto& spec : specs) {  // fail before any training
    if (spec.recipe) train::check_recipe(what, *spec.recipe);
  }
  if (!build) throw value_error(minnow::detail::concat(what, ": no model builder"));
  std::vector<Member<T>> members(specs.size());
  for (std::size_t k = 0; k < specs.size(); ++k) {
    members[k].spec = specs[k];
    members[k].model = build(specs[k].architecture, specs[k].seed);
  }

  std::mutex report;
  const bool progress = options.progress && options.schedule == Schedule::sequential;
  detail::run_members(specs.size(), options.schedule, options.threads, [&](std::size_t k) {
    Member<T>& member = members[k];
    std::vector<index_t> bag;
    if (member.spec.bagging) {
      bag = data::select(pool, data::bootstrap_indices(static_cast<index_t>(pool.size()), member.spec.seed));
    }
    const std::span<const index_t> indices = member.spec.bagging ? std::span<const index_t>(bag) : pool;
    const auto start = std::chrono::steady_clock::now();
    const train::Recipe& recipe = member.spec.recipe ? *member.spec.recipe : options.recipe;
    train::FitOptions<T> fit_options{.progress = progress};
    fit_options.on_epoch = [&](const train::EpochStats& stats) {
      if (!options.on_epoch) return;
      const std::lock_guard<std::mutex> lock(report);
      options.on_epoch(k, stats);
    };
    member.epochs = train::fit<T>(member.model, data, indices, recipe, member.spec.seed, train::cross_entropy<T>(), fit_options);
    member.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (on_member) {
      const std::lock_guard<std::mutex> lock(report);
      on_member(k, member);
    }
  });
  return members;
}

/// @brief Pointers to the members' models, for ensemble_logits() and OnlineTeacherLoss.
template <class T>
[[nodiscard]] std::vector<nn::Sequential<T>*> models(std::span<Member<T>> members) {
  std::vector<nn::Sequential<T>*> out;
  for (auto& member : members) out.push_back(&member.model);
  return out;
}

/// @brief Read-only views of a list of tensors (the `Members` argument of the ensemble rules).
template <class T, std::size_t Rank>
[[nodiscard]] std::vector<TensorView<const T, Rank>> views(std::span<const Tensor<T, Rank>> tensors) {
  return {tensors.begin(), tensors.end()};
}

/// @brief The labels of the samples `indices` of `data`, in that order.
template <class T>
[[nodiscard]] Tensor<std::int32_t, 1> labels_of(const data::Dataset<T>& data, std::span<const index_t> indices) {
  Tensor<std::int32_t, 1> out({static_cast<index_t>(indices.size())});
  for (std::size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] < 0 || indices[i] >= data.size()) {
      throw value_error(minnow::detail::concat("labels_of: index ", indices[i], " (position ", i,
                                               ") is not a sample of a data set of ", data.size()));
    }
    out(static_cast<index_t>(i)) = data.labels(indices[i]);
  }
  return out;
}

/// @brief The model's logits [|indices|, C] on the samples `indices` of `data` (eval mode, in batches of `batch`).
/// @throws value_error for batch <= 0 or an index outside the data set.
template <class T>
[[nodiscard]] Tensor<T, 2> predict_logits(nn::Sequential<T>& model, const data::Dataset<T>& data,
                                          std::span<const index_t> indices, index_t batch = 500) {
  if (batch <= 0) throw value_error(minnow::detail::concat("predict_logits: batch must be > 0, got ", batch));
  const auto n = static_cast<index_t>(indices.size());
  Tensor<T, 2> out;
  Tensor<T, 4> images;
  Tensor<std::int32_t, 1> labels;
  for (index_t begin = 0; begin < n; begin += batch) {
    const index_t count = std::min(batch, n - begin);
    data::gather(data, indices.subspan(static_cast<std::size_t>(begin), static_cast<std::size_t>(count)), images, labels);
    const auto output = model.forward(images.view(), nn::Mode::eval);
    const index_t classes = output.size() / count;
    if (begin == 0) out.resize({n, classes});
    std::copy_n(output.data(), count * classes, out.data() + begin * classes);
  }
  return out;
}

/// @brief The model's logits [N, C] on every sample of `data`.
template <class T>
[[nodiscard]] Tensor<T, 2> predict_logits(nn::Sequential<T>& model, const data::Dataset<T>& data, index_t batch = 500) {
  const auto all = data::range_indices(0, data.size());
  return predict_logits<T>(model, data, all, batch);
}

/// @brief Every model's logits on the samples `indices` of `data`, computed with the schedule (the
/// parallel one runs each model single-threaded on its own std::thread).
template <class T>
[[nodiscard]] std::vector<Tensor<T, 2>> ensemble_logits(std::span<nn::Sequential<T>* const> models,
                                                        const data::Dataset<T>& data, std::span<const index_t> indices,
                                                        Schedule schedule = Schedule::sequential, int threads = 2) {
  detail::check_threads("ensemble_logits", threads);
  if (models.empty()) throw value_error("ensemble_logits: the ensemble has no members");
  std::vector<Tensor<T, 2>> out(models.size());
  detail::run_members(models.size(), schedule, threads,
                      [&](std::size_t k) { out[k] = predict_logits<T>(*models[k], data, indices); });
  return out;
}

/// @brief As above, on every sample of `data`.
template <class T>
[[nodiscard]] std::vector<Tensor<T, 2>> ensemble_logits(std::span<nn::Sequential<T>* const> models,
                                                        const data::Dataset<T>& data,
                                                        Schedule schedule = Schedule::sequential, int threads = 2) {
  const auto all = data::range_indices(0, data.size());
  return ensemble_logits<T>(models, data, all, schedule, threads);
}

/// @brief The ensemble's soft targets for a whole data set, computed once: `Σₖ wₖ softmax(tₖ / T)` [N, C]
/// (ensemble::mean_probabilities), ready for `distill::SoftTargetLoss(TeacherProbabilities(table), T, α)`.
/// Empty `weights` means uniform.
/// @throws as ensemble::mean_probabilities().
template <class T>
[[nodiscard]] Tensor<T, 2> ensemble_soft_targets(std::span<const Tensor<T, 2>> member_logits, double temperature,
                                                 std::span<const double> weights = {}) {
  if (member_logits.empty()) throw value_error("ensemble_soft_targets: the ensemble has no members");
  const auto members = views<T, 2>(member_logits);
  Tensor<T, 2> out(member_logits[0].shape());
  if (weights.empty()) {
    ensemble::mean_probabilities<T>(members, temperature, out);
  } else {
    ensemble::mean_probabilities<T>(members, weights, temperature, out);
  }
  return out;
}

/// @brief Fraction of rows whose largest score (logit or probability; first maximum on ties) is the label.
/// @throws shape_error when there is not one label per row.
template <class T>
[[nodiscard]] double accuracy(TensorView<const T, 2> scores, TensorView<const std::int32_t, 1> labels) {
  if (labels.size() != scores.dim(0)) {
    throw shape_error(minnow::detail::concat("accuracy: ", labels.size(), " labels for scores ", minnow::to_string(scores.shape())));
  }
  if (scores.dim(0) == 0) return 0.0;
  index_t correct = 0;
  for (index_t i = 0; i < scores.dim(0); ++i) {
    correct += ensemble::argmax(scores.data() + i * scores.dim(1), scores.dim(1)) == labels(i) ? 1 : 0;
  }
  return static_cast<double>(correct) / static_cast<double>(scores.dim(0));
}

/// @brief A distillation LossFunction that runs the teachers on every batch instead of reading a cached
/// table: `alpha · KD(student, ensemble of teachers at T) + (1 − alpha) · CE(labels)`.
/// @tparam T scalar type.
///
/// For each batch it gathers the batch's images from `data` (by the indices the Trainer passes), runs
/// every teacher forward in eval mode and distils from one teacher's logits (K = 1) or from
/// `Σₖ wₖ softmax(tₖ/T)` (K > 1), with distill::combined_loss(). The values equal SoftTargetLoss over
/// the cached table up to float rounding (batch composition can change a GEMM's summation order).
/// The teachers and `data` are referenced, not copied. Copies share the teachers, so a copy must not run
/// concurrently with another (the teachers' layer buffers would race).
template <class T>
class OnlineTeacherLoss {
 public:
  /// @param teachers non-null, at least one; each maps `data`'s images to [B, C] logits.
  /// @param weights  one per teacher on the simplex (ensemble::check_member_weights), or empty for uniform.
  /// @throws value_error for no teachers, a null teacher, T ≤ 0 or NaN, alpha outside [0, 1], bad weights.
  OnlineTeacherLoss(std::vector<nn::Sequential<T>*> teachers, const data::Dataset<T>& data, double temperature,
                    double alpha = 1.0, std::vector<double> weights = {})
      : teachers_(std::move(teachers)), data_(&data), temperature_(temperature), alpha_(alpha), weights_(std::move(weights)) {
    constexpr const char* what = "OnlineTeacherLoss";
    if (teachers_.empty()) throw value_error(minnow::detail::concat(what, ": the ensemble has no members"));
    for (std::size_t k = 0; k < teachers_.size(); ++k) {
      if (teachers_[k] == nullptr) throw value_error(minnow::detail::concat(what, ": teacher ", k, " is null"));
    }
    distill::check_temperature<T>(what, temperature);
    distill::check_alpha(what, alpha);
    if (weights_.empty()) weights_.assign(teachers_.size(), 1.0 / static_cast<double>(teachers_.size()));
    ensemble::check_member_weights(what, weights_, teachers_.size());
  }

  OnlineTeacherLoss(const OnlineTeacherLoss& other)
      : teachers_(other.teachers_), data_(other.data_), temperature_(other.temperature_), alpha_(other.alpha_),
        weights_(other.weights_) {}
  OnlineTeacherLoss& operator=(const OnlineTeacherLoss& other) {
    teachers_ = other.teachers_;
    data_ = other.data_;
    temperature_ = other.temperature_;
    alpha_ = other.alpha_;
    weights_ = other.weights_;
    return *this;
  }
  OnlineTeacherLoss(OnlineTeacherLoss&&) noexcept = default;
  OnlineTeacherLoss& operator=(OnlineTeacherLoss&&) noexcept = default;
  ~OnlineTeacherLoss() = default;

  /// The batch loss; writes dL/dlogits.
  /// @throws value_error for an index outside the data set; shape_error when a teacher's logits do not
  /// have the student's shape; as distill::combined_loss().
  double operator()(TensorView<const T, 2> logits, TensorView<const std::int32_t, 1> labels,
                    std::span<const index_t> indices, TensorView<T, 2> dlogits) {
    const index_t rows = static_cast<index_t>(indices.size());
    if (rows != logits.dim(0)) {
      throw shape_error(minnow::detail::concat("OnlineTeacherLoss: ", rows, " sample indices for logits ",
                                               minnow::to_string(logits.shape())));
    }
    data::gather(*data_, indices, images_, labels_);
    teacher_logits_.resize(teachers_.size());
    for (std::size_t k = 0; k < teachers_.size(); ++k) {
      const auto output = teachers_[k]->forward(images_.view(), nn::Mode::eval);
      if (output.size() != logits.size()) {
        throw shape_error(minnow::detail::concat("OnlineTeacherLoss: teacher ", k, " gives ", output.size(),
                                                 " outputs for a batch whose student logits are ", minnow::to_string(logits.shape())));
      }
      teacher_logits_[k].resize(logits.shape());
      std::copy_n(output.data(), output.size(), teacher_logits_[k].data());
    }
    if (teachers_.size() == 1) {
      return distill::combined_loss<T>(logits, distill::TeacherLogits<T>(teacher_logits_[0].view()), labels, temperature_,
                                        alpha_, dlogits, workspace_);
    }
    members_.assign(teacher_logits_.begin(), teacher_logits_.end());
    probabilities_.resize(logits.shape());
    ensemble::mean_probabilities<T>(members_, weights_, temperature_, probabilities_);
    return distill::combined_loss<T>(logits, distill::TeacherProbabilities<T>(probabilities_.view()), labels,
                                      temperature_, alpha_, dlogits, workspace_);
  }

  [[nodiscard]] double temperature() const noexcept { return temperature_; }
  [[nodiscard]] double alpha() const noexcept { return alpha_; }

 private:
  std::vector<nn::Sequential<T>*> teachers_;
  const data::Dataset<T>* data_;
  double temperature_;
  double alpha_;
  std::vector<double> weights_;
  // Scratch (never copied).
  Tensor<T, 4> images_;
  Tensor<std::int32_t, 1> labels_;
  std::vector<Tensor<T, 2>> teacher_logits_;
  std::vector<TensorView<const T, 2>> members_;
  Tensor<T, 2> probabilities_;
  distill::KdWorkspace<T> workspace_;
};

}  // namespace minnow::pipeline
