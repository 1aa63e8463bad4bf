#pragma once
/// @file train.hpp
/// @brief Training, one layer above nn/: the Trainer loop with its hooks, the one Recipe and fit(),
/// evaluation, and training-state checkpoints.

#include <minnow/train/checkpoints.hpp>
#include <minnow/train/evaluate.hpp>
#include <minnow/train/fit.hpp>
#include <minnow/train/progress.hpp>
#include <minnow/train/trainer.hpp>
