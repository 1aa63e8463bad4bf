#pragma once
/// @file train/evaluate.hpp
/// @brief Mean cross-entropy and accuracy of a model on a data set.

#include <minnow/data/batches.hpp>
#include <minnow/data/dataset.hpp>
#include <minnow/nn/loss.hpp>
#include <minnow/nn/sequential.hpp>
#include <minnow/tensor.hpp>

#include <cstdint>

namespace minnow::train {

/// Mean loss and accuracy over a data set.
struct Evaluation {
  double loss = 0.0;
  double accuracy = 0.0;
  index_t samples = 0;
};

/// Mean cross-entropy and accuracy of `model` on `data`, in batches of `batch_size` (eval mode).
/// @throws value_error for batch_size <= 0.
template <class T>
[[nodiscard]] Evaluation evaluate(nn::Sequential<T>& model, const data::Dataset<T>& data, index_t batch_size = 500) {
  auto sampler = data::BatchSampler::sequential(data.size(), batch_size);
  Tensor<T, 4> images, dlogits;
  Tensor<std::int32_t, 1> labels;
  double loss_sum = 0.0;
  index_t correct = 0;
  for (index_t b = 0; b < sampler.num_batches(); ++b) {
    data::gather(data, sampler.batch(b), images, labels);
    const index_t n = images.dim(0);
    const auto output = model.forward(images.view(), nn::Mode::eval);
    const auto logits = output.template reshape<2>(n, output.size() / n);
    dlogits.resize({n, logits.dim(1), 1, 1});
    loss_sum += nn::softmax_cross_entropy<T>(logits, labels.view(), dlogits.view().template reshape<2>(n, logits.dim(1))) *
                static_cast<double>(n);
    correct += nn::count_correct<T>(logits, labels.view());
  }
  const double count = static_cast<double>(data.size());
  return {data.size() ? loss_sum / count : 0.0, data.size() ? static_cast<double>(correct) / count : 0.0, data.size()};
}

}  // namespace minnow::train
