#pragma once
/// @file ensemble.hpp
/// @brief Ensembles of teachers: combination rules (mean of probabilities, mean of logits, weighted
/// versions, majority vote), diversity metrics (pairwise disagreement, KL to the ensemble) and weights
/// fitted on held-out data.

#include <minnow/ensemble/combine.hpp>
#include <minnow/ensemble/diversity.hpp>
#include <minnow/ensemble/fit_weights.hpp>
