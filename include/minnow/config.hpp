#pragma once
/// @file config.hpp
/// @brief Version macros (read by CMake) and user-overridable defaults.

#define MINNOW_VERSION_MAJOR 0
#define MINNOW_VERSION_MINOR 1
#define MINNOW_VERSION_PATCH 0

/// Alignment in bytes of every buffer a minnow::Tensor owns: one AVX-512 register / cache line.
#ifndef MINNOW_ALIGNMENT
#define MINNOW_ALIGNMENT 64
#endif
