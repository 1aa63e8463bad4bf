#pragma once
/// @file nn.hpp
/// @brief The small CNN module: layers (conv, pooling, batch norm, dropout, linear), loss, optimizers, schedules, reference models.

#include <minnow/nn/activations.hpp>
#include <minnow/nn/adam.hpp>
#include <minnow/nn/avgpool2d.hpp>
#include <minnow/nn/batchnorm2d.hpp>
#include <minnow/nn/conv2d.hpp>
#include <minnow/nn/dropout.hpp>
#include <minnow/nn/fuse.hpp>
#include <minnow/nn/init.hpp>
#include <minnow/nn/layer.hpp>
#include <minnow/nn/linear.hpp>
#include <minnow/nn/loss.hpp>
#include <minnow/nn/lr_schedule.hpp>
#include <minnow/nn/maxpool2d.hpp>
#include <minnow/nn/models.hpp>
#include <minnow/nn/optimizer.hpp>
#include <minnow/nn/sequential.hpp>
#include <minnow/nn/sgd.hpp>
