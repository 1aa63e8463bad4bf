#pragma once
/// @file prune.hpp
/// @brief The pruning module: amounts, masks, criteria (L1 / random unstructured, Ln / random
/// structured, global, custom masks), the Pruner hook, gradual schedules and sparsity reports.
///
/// Depends on tensors and parameters only (never on nn/): it works on any training loop that can hand
/// out views of its weights, gradients and optimizer state.

#include <minnow/prune/amount.hpp>
#include <minnow/prune/criteria.hpp>
#include <minnow/prune/hook.hpp>
#include <minnow/prune/mask.hpp>
#include <minnow/prune/policies.hpp>
#include <minnow/prune/report.hpp>
#include <minnow/prune/schedule.hpp>
