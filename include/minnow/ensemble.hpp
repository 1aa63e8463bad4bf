#pragma once
/// @file ensemble.hpp
/// @brief Ensembles of teachers: combination rules (mean of probabilities, mean of logits, weighted
/// versions, majority vote) and diversity metrics (pairwise disagreement, KL to the ensemble).

#include <minnow/ensemble/combine.hpp>
#include <minnow/ensemble/diversity.hpp>
