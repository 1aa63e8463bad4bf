#pragma once
/// @file pipeline/ensemble_checkpoints.hpp
/// @brief Ensemble members kept as checkpoint files between runs: load_or_train_ensemble() loads the
/// members whose files exist and trains only the others, saving each as soon as it is trained. Teachers
/// take most of a distillation experiment's time, so reruns (another student, T or α) become cheap, and a
/// run that is cut off keeps the members it finished.
///
///     pipeline::MemberCheckpoints files{.load_dir = "teachers", .save_dir = "teachers",
///                                       .file_name = [&](const pipeline::MemberSpec& s) {
///                                         return pipeline::member_file_name(s, epochs, pool.size()); }};
///     auto teachers = pipeline::load_or_train_ensemble<float>(specs, build, data.train, pool, options, files);

#include <minnow/error.hpp>
#include <minnow/io/atomic_file.hpp>
#include <minnow/pipeline/ensemble_training.hpp>
#include <minnow/train/checkpoints.hpp>

#include <cstddef>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace minnow::pipeline {

/// @brief Where members are loaded from and saved to. A member's file is `dir / file_name(spec)`; the
/// name must tell apart everything that makes two members differ (seed, epochs, training data, ...).
struct MemberCheckpoints {
  std::filesystem::path load_dir{};  ///< members whose file exists here are loaded; empty: train every member
  std::filesystem::path save_dir{};  ///< each trained member is saved here at once (created if needed); empty: no saving
  std::function<std::string(const MemberSpec&)> file_name{};
};

/// @brief `<architecture>-s<seed>-e<epochs>-n<pool size>[-bag][-<tag>].ckpt`, e.g.
/// `teacher-s1000-e8-n55000.ckpt`; `tag` names what else sets the member apart (e.g. "aug").
[[nodiscard]] inline std::string member_file_name(const MemberSpec& spec, int epochs, std::size_t pool_size,
                                                  std::string_view tag = {}) {
  return minnow::detail::concat(spec.architecture, "-s", spec.seed, "-e", epochs, "-n", pool_size,
                                spec.bagging ? "-bag" : "", tag.empty() ? "" : "-", tag, ".ckpt");
}

/// @brief What happened to member k: loaded from `path`, or trained (and saved to `path` when saving).
struct MemberOrigin {
  bool loaded = false;
  std::filesystem::path path{};  ///< the file loaded or written; empty when trained and not saved
};

/// @brief The members `specs`: loaded from `files.load_dir` when their checkpoint exists there, trained by
/// train_ensemble() otherwise (on `pool` of `data`, with `options`; `options.on_epoch` gets the index k in
/// `specs`). Each trained member is saved to `files.save_dir` as soon as it is trained. `on_ready(k, member,
/// origin)` runs once per member, when it is loaded or trained (serialized; it may print). Loaded members
/// have no epoch statistics.
/// @throws value_error when a directory is given without `files.file_name`; io_error naming the directory or
/// file, before any training, when `files.save_dir` cannot take the members' files; what train_ensemble() and
/// the checkpoint reader and writer throw (io_error, format_error naming the file).
template <class T>
[[nodiscard]] std::vector<Member<T>> load_or_train_ensemble(
    std::span<const MemberSpec> specs, const ModelBuilder<T>& build, const data::Dataset<T>& data, std::span<const index_t> pool,
    EnsembleOptions options, const MemberCheckpoints& files,
    const std::function<void(std::size_t k, const Member<T>&, const MemberOrigin&)>& on_ready = {}) {
  if (!build) throw value_error("load_or_train_ensemble: no model builder");
  if ((!files.load_dir.empty() || !files.save_dir.empty()) && !files.file_name) {
    throw value_error("load_or_train_ensemble: a checkpoint directory is given but no file_name");
  }
  std::vector<Member<T>> members(specs.size());
  std::vector<MemberSpec> to_train;
  std::vector<std::size_t> slot;  // to_train[i] is specs[slot[i]]
  for (std::size_t k = 0; k < specs.size(); ++k) {
    const auto path = files.load_dir.empty() ? std::filesystem::path{} : files.load_dir / files.file_name(specs[k]);
    if (!path.empty() && std::filesystem::exists(path)) {
      members[k].spec = specs[k];
      members[k].model = build(specs[k].architecture, specs[k].seed);
      train::load_parameters(path, specs[k].architecture, members[k].model);
      if (on_ready) on_ready(k, members[k], {true, path});
    } else {
      to_train.push_back(specs[k]);
      slot.push_back(k);
    }
  }
  if (to_train.empty()) return members;
  if (!files.save_dir.empty()) {  // before training: a save that fails after hours of training loses them
    io::prepare_output_directory(files.save_dir);
    for (const auto& spec : to_train) io::check_writable_file(files.save_dir / files.file_name(spec));
  }
  if (options.on_epoch) {
    options.on_epoch = [report = std::move(options.on_epoch), &slot](std::size_t i, const train::EpochStats& stats) {
      report(slot[i], stats);
    };
  }
  auto trained = train_ensemble<T>(to_train, build, data, pool, options, [&](std::size_t i, Member<T>& member) {
    MemberOrigin origin;
    if (!files.save_dir.empty()) {
      origin.path = files.save_dir / files.file_name(member.spec);
      train::save_training_state(origin.path, member.spec.architecture, member.model);
    }
    if (on_ready) on_ready(slot[i], member, origin);
  });
  for (std::size_t i = 0; i < trained.size(); ++i) members[slot[i]] = std::move(trained[i]);
  return members;
}

}  // namespace minnow::pipeline
