#pragma once
/// @file minnow.hpp
/// @brief Umbrella header: everything minnow offers. Including one module header is cheaper.

#include <minnow/config.hpp>
#include <minnow/error.hpp>
#include <minnow/tensor.hpp>
