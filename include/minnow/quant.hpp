#pragma once
/// @file quant.hpp
/// @brief The quantization module: policies (bits, observers, mappings, granularity) composed as
/// `Quantizer<Bits, Observer, Mapping, Granularity>`, fake quantization with its straight-through
/// gradient, LSQ (learned step size), search-based observers (percentile, MSE, histogram) and k-means
/// codebooks (Deep Compression weight sharing).
///
/// Depends on tensors only (never on nn/): it works on any training loop that can hand out views of
/// its weights and activations.

#include <minnow/quant/concepts.hpp>
#include <minnow/quant/fake_quantize.hpp>
#include <minnow/quant/granularity.hpp>
#include <minnow/quant/histogram.hpp>
#include <minnow/quant/kmeans.hpp>
#include <minnow/quant/lsq.hpp>
#include <minnow/quant/mappings.hpp>
#include <minnow/quant/mse_observer.hpp>
#include <minnow/quant/observers.hpp>
#include <minnow/quant/percentile.hpp>
#include <minnow/quant/quantizer.hpp>
