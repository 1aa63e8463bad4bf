#pragma once
/// @file minnow.hpp
/// @brief Umbrella header: everything minnow offers. Including one module header is cheaper.

#include <minnow/config.hpp>
#include <minnow/data.hpp>
#include <minnow/distill.hpp>
#include <minnow/ensemble.hpp>
#include <minnow/error.hpp>
#include <minnow/io/checkpoint.hpp>
#include <minnow/io/compressed_model.hpp>
#include <minnow/nn.hpp>
#include <minnow/parameter.hpp>
#include <minnow/prune.hpp>
#include <minnow/quant.hpp>
#include <minnow/tensor.hpp>
#include <minnow/threads.hpp>
#include <minnow/train.hpp>

// The safetensors reader and writer need nlohmann/json (linked by minnow::minnow when it is installed).
#if __has_include(<nlohmann/json.hpp>)
#include <minnow/io/safetensors.hpp>
#include <minnow/io/sequential_safetensors.hpp>
#endif
