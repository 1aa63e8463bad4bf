#pragma once
/// @file distill.hpp
/// @brief Knowledge distillation: stable softmax / log-softmax at a temperature, the KD loss and its
/// gradient (teacher given as logits or as probabilities), the combined KD + cross-entropy loss, and
/// SoftTargetLoss for training loops over cached teacher outputs. Does not depend on minnow/nn.

#include <minnow/distill/kd_loss.hpp>
#include <minnow/distill/softmax.hpp>
