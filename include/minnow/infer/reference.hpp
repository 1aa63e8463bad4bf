#pragma once
/// @file infer/reference.hpp
/// @brief Scalar oracles of the integer kernels, from the definitions (int64 sums): what every kernel
/// path of infer/qgemm.hpp and infer/quantized_conv2d.hpp is tested against bit for bit. Slow; for tests.

#include <minnow/infer/int_tensor.hpp>
#include <minnow/infer/qgemm.hpp>

#include <cstdint>
#include <span>
#include <type_traits>

namespace minnow::infer {

/// @brief Scalar oracle on unpacked operands: the accumulators from their definition (in int64), then the
/// same output stage. `y` is int32, float or uint8 (with `out` for uint8).
template <class OutT>
void qgemm_reference(TensorView<const std::uint8_t, 2> x, quant::AffineParams x_params, const Int8Weights& w,
                     const OutputStage& stage, quant::AffineParams out, TensorView<OutT, 2> y) {
  QuantizedActivations shape_only;
  shape_only.m = x.dim(0);
  shape_only.k = x.dim(1);
  shape_only.params = x_params;
  PackedWeights pw;
  pw.name = w.name;
  pw.n = w.rows();
  pw.k = w.cols();
  for (index_t j = 0; j < w.rows(); ++j) {
    std::int32_t sum = 0;
    for (index_t p = 0; p < w.cols(); ++p) sum += w.values(j, p);
    pw.colsum.push_back(sum);
    pw.zero_points.push_back(w.params[static_cast<std::size_t>(j)].zero_point);
    pw.scales.push_back(w.params[static_cast<std::size_t>(j)].scale);
  }
  const auto kind = std::is_same_v<OutT, float> ? detail::Out::dequantize
                    : std::is_same_v<OutT, std::uint8_t> ? detail::Out::requantize : detail::Out::int32;
  auto e = detail::make_epilogue(shape_only, pw, stage, kind, out);
  // The definition, not the row/column-sum expansion: colterm is replaced by the bias alone.
  for (std::size_t j = 0; j < e.colterm.size(); ++j) e.colterm[j] = stage.bias_int32.empty() ? 0 : stage.bias_int32[j];
  e.zw = nullptr;
  for (index_t i = 0; i < x.dim(0); ++i) {
    for (index_t j = 0; j < w.rows(); ++j) {
      std::int64_t sum = 0;
      const std::int64_t zw = w.params[static_cast<std::size_t>(j)].zero_point;
      for (index_t p = 0; p < x.dim(1); ++p) sum += (std::int64_t{x(i, p)} - x_params.zero_point) * (w.values(j, p) - zw);
      detail::finish_one(e, detail::corrected(e, static_cast<std::int32_t>(sum), j, 0), j, y.data() + i * y.dim(1));
    }
  }
}


/// @brief The scalar oracle: the im2col matrix from its definition, qgemm_reference (int64 sums), then the
/// NCHW scatter. `y` is uint8 (with `out`) or float. Slow; for tests.
template <class OutT>
void conv2d_reference(TensorView<const std::uint8_t, 4> x, quant::AffineParams x_params, const Int8Weights& w,
                      index_t kernel, index_t stride, index_t padding, std::span<const float> bias, bool relu,
                      quant::AffineParams out, TensorView<OutT, 4> y) {
  const index_t n = x.dim(0), c_in = x.dim(1), h = x.dim(2), wd = x.dim(3), oh = y.dim(2), ow = y.dim(3);
  const index_t k = c_in * kernel * kernel, o = w.rows();
  Tensor<std::uint8_t, 2> a({n * oh * ow, k});
  for (index_t s = 0; s < n; ++s) {
    for (index_t p = 0; p < oh; ++p) {
      for (index_t q = 0; q < ow; ++q) {
        for (index_t c = 0; c < c_in; ++c) {
          for (index_t i = 0; i < kernel; ++i) {
            for (index_t j = 0; j < kernel; ++j) {
              const index_t ih = p * stride - padding + i, iw = q * stride - padding + j;
              const bool inside = ih >= 0 && ih < h && iw >= 0 && iw < wd;
              a((s * oh + p) * ow + q, (c * kernel + i) * kernel + j) =
                  inside ? x(s, c, ih, iw) : static_cast<std::uint8_t>(x_params.zero_point);
            }
          }
        }
      }
    }
  }
  Tensor<OutT, 2> rows({n * oh * ow, o});
  qgemm_reference<OutT>(a.view(), x_params, w, OutputStage{{}, bias, relu}, out, rows.view());
  for (index_t s = 0; s < n; ++s) {
    for (index_t ch = 0; ch < o; ++ch) {
      for (index_t p = 0; p < oh * ow; ++p) y.data()[(s * o + ch) * oh * ow + p] = rows(s * oh * ow + p, ch);
    }
  }
}

}  // namespace minnow::infer
