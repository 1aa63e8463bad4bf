#pragma once
/// @file data.hpp
/// @brief Module header for minnow's data loading: IDX reader, Dataset, Fashion-MNIST, mini-batches, augmentation.

#include <minnow/data/augment.hpp>
#include <minnow/data/batches.hpp>
#include <minnow/data/bootstrap.hpp>
#include <minnow/data/dataset.hpp>
#include <minnow/data/fashion_mnist.hpp>
#include <minnow/data/idx.hpp>
