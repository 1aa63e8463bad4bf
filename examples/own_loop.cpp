// minnow in a loop that is not minnow's: an Eigen MLP (784 → 128 → 10) with its own forward, backward and SGD gets
// AGP magnitude pruning, int8 fake quantization (STE) and distillation from a minnow CNN's cached logits. Lines that
// call minnow end in `// minnow`. Exits 1 unless the pruning masks hold after the last step and the loss falls.
#include <minnow/data.hpp>
#include <minnow/distill/kd_loss.hpp>
#include <minnow/nn/models.hpp>
#include <minnow/pipeline/ensemble_training.hpp>
#include <minnow/prune/schedule.hpp>
#include <minnow/quant/quantizer.hpp>
#include <minnow/train.hpp>

#include "cli.hpp"

#include <Eigen/Dense>
#include <cstdio>

namespace {

using minnow::index_t;
using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
minnow::TensorView<float, 1> flat(Mat& m) { return {m.data(), {m.size()}}; }            // minnow: views of Eigen
minnow::TensorView<float, 2> grid(Mat& m) { return {m.data(), {m.rows(), m.cols()}}; }  // minnow: matrices

struct Dense {  // y = x·Ŵᵀ + b with Ŵ = fake_quantize(W); W is [out, in], so each output row is a channel
  Mat w, wq, dw, vw;  // weights, quantized weights, gradient, momentum
  Eigen::RowVectorXf b, db, vb;
  minnow::Shape<2> shape;
  minnow::quant::Int8PerChannelSymmetric quantizer;  // minnow
  Dense(index_t in, index_t out)
      : w(Mat::Random(out, in) / std::sqrt(float(in))), wq(w), dw(0 * w), vw(0 * w),
        b(Eigen::RowVectorXf::Random(out) / std::sqrt(float(in))), db(0 * b), vb(0 * b), shape{out, in} {}
  const Mat& quantized() {
    quantizer.reset();                                          // minnow: MinMax would keep every past step's range
    quantizer.observe(flat(w), shape);                          // minnow: the range of each row of W now
    quantizer.fake_quantize<float>(flat(w), shape, flat(wq));  // minnow
    return wq;
  }
  Mat forward(const auto& x) { return (x * quantized().transpose()).rowwise() + b; }
  Mat backward(const Mat& dy, const Mat& x, float lr) {  // the gradients, an SGD step; returns dL/dx (through Ŵ)
    dw = dy.transpose() * x;                                 // dL/dŴ
    db = dy.colwise().sum();
    quantizer.backward<float>(flat(w), flat(dw), flat(dw));  // minnow: dL/dW = dL/dŴ inside the grid, else 0 (STE)
    w -= lr * (vw = 0.9f * vw + dw);                         // momentum 0.9
    b -= lr * (vb = 0.9f * vb + db);
    return dy * wq;
  }
};

}  // namespace

int main(int argc, char** argv) try {
  namespace mn = minnow;
  int epochs = 10, threads = 2, limit = -1;  // the options, all checked before anything runs
  double sparsity = 0.9;
  std::string dir = mn::data::default_fashion_mnist_dir().string();
  example::CommandLine("own_loop", "An Eigen MLP's own loop with minnow's pruning, fake quantization and distillation.")
      .option("--epochs", epochs, "2 or more (default 10)").option("--sparsity", sparsity, "final (default 0.9)")
      .option("--train-limit", limit, "only the first N training images").option("--threads", threads, "(default 2)")
      .option("--data", dir, "Fashion-MNIST directory").parse(argc, argv);
  example::check_at_least("--epochs", epochs, 2), example::check_sparsity("--sparsity", sparsity);
  example::check_train_limit("--train-limit", limit), example::check_threads("--threads", threads);
  example::check_input_dir("--data", dir);

  mn::set_threads(threads);                                                                                  // minnow
  const auto data = mn::data::load_fashion_mnist<float>(dir, mn::data::fashion_mnist_normalization, limit);  // minnow
  const index_t n = data.train.size(), batch = 64, per_epoch = (n + batch - 1) / batch, steps = epochs * per_epoch;
  example::require(steps >= 20, "--epochs × batches per epoch", ">= 20 (for the pruning schedule)", steps);

  // The teacher: minnow's student CNN, trained by minnow's own loop (train::fit); its logits are cached.
  auto teacher = mn::nn::make_student<float>(1);                                                           // minnow
  mn::train::fit<float>(teacher, data.train, {.epochs = 3}, 1);                                            // minnow
  const auto teacher_logits = mn::pipeline::predict_logits(teacher, data.train);                           // minnow
  mn::distill::SoftTargetLoss<float> kd_loss{mn::distill::TeacherLogits(teacher_logits), 4.0, 0.7};  // minnow: T, α

  // The student, in plain Eigen; minnow reaches its weights, gradients and momentum through views.
  Dense fc1(784, 128), fc2(128, 10);
  mn::prune::Pruner<float> pruner;                                                      // minnow
  pruner.track("fc1.weight", flat(fc1.w), flat(fc1.dw), {{"momentum", flat(fc1.vw)}});  // minnow
  pruner.track("fc2.weight", flat(fc2.w), flat(fc2.dw), {{"momentum", flat(fc2.vw)}});  // minnow
  // AGP from 0 to `sparsity`, pruning every steps/20 steps during the first 70 % of the steps.
  mn::prune::GradualPruner agp(mn::prune::agp(0.0, sparsity, 0, 14 * (steps / 20), steps / 20));  // minnow
  mn::data::BatchSampler batches(n, batch, 1);                                                    // minnow

  const auto x = data.train.images.view().matrix(n, 784);  // an Eigen map of the images
  std::vector<double> losses;  // the mean batch loss of each epoch
  for (index_t epoch = 0, step = 0; epoch < epochs; ++epoch) {
    batches.set_epoch(static_cast<std::uint64_t>(epoch));  // minnow
    double sum = 0.0;
    for (index_t b = 0; b < per_epoch; ++b, ++step) {
      const auto idx = batches.batch(b);  // minnow
      Mat xb = x(idx, Eigen::all), h = fc1.forward(xb).cwiseMax(0.0f), logits = fc2.forward(h), dlogits = 0 * logits;
      const Eigen::VectorXi yb = Eigen::Map<const Eigen::VectorXi>(data.train.labels.data(), n)(idx);
      sum += kd_loss(grid(logits), {yb.data(), {yb.size()}}, idx, grid(dlogits));  // minnow: α·KD + (1 − α)·CE
      fc1.backward(fc2.backward(dlogits, h, 0.02f).cwiseProduct((h.array() > 0).cast<float>().matrix()), xb, 0.02f);
      agp.step(step, pruner);  // minnow: prunes to the target at scheduled steps, re-applies the masks at every step
    }
    losses.push_back(sum / static_cast<double>(per_epoch));
    std::printf("epoch %2td  loss %.4f  target sparsity %.4f\n", epoch + 1, losses.back(), agp.target(step));  // minnow
  }

  bool ok = losses.back() < losses.front();
  for (const auto& e : pruner.entries()) {  // minnow
    const index_t target = mn::prune::to_count(mn::prune::Fraction{sparsity}, e.mask.size());  // minnow
    const index_t pruned = (e.mask.array() == 0.0f).count();
    const index_t leaked = (e.mask.array() == 0.0f && e.value.array() != 0.0f).count();  // minnow: value views W
    std::printf("%s: sparsity %.4f (%td of %td pruned, target %td), pruned but not 0: %td\n", e.name.c_str(),
                double(pruned) / double(e.mask.size()), pruned, e.mask.size(), target, leaked);
    ok = ok && pruned == target && leaked == 0;
  }
  const Mat logits = fc2.forward(fc1.forward(data.test.images.view().matrix(data.test.size(), 784)).cwiseMax(0.0f));
  index_t correct = 0;
  for (index_t i = 0, j = 0; i < logits.rows(); ++i) correct += (logits.row(i).maxCoeff(&j), j == data.test.labels(i));
  std::printf("test accuracy: teacher CNN %.2f %%, MLP (pruned, int8 weights) %.2f %%\nchecks: %s\n",
              100 * mn::train::evaluate(teacher, data.test).accuracy, 100.0 * correct / logits.rows(),  // minnow
              ok ? "passed" : "FAILED (a mask does not hold or the loss did not fall)");
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "own_loop: " << e.what() << "\n";
  return 1;
}
