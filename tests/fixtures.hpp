#pragma once
// Reads the PyTorch fixtures written by tests/fixtures/generate_*.py (JSON: cases of named tensors).
#include <minnow/tensor.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace fixtures {

inline const nlohmann::json& load(const std::string& file) {
  static std::map<std::string, nlohmann::json> cache;
  auto it = cache.find(file);
  if (it == cache.end()) {
    std::ifstream in(std::string(MINNOW_FIXTURE_DIR) + "/" + file);
    REQUIRE(in.good());
    it = cache.emplace(file, nlohmann::json::parse(in)).first;
  }
  return it->second;
}

/// Every case of a kind.
inline std::vector<nlohmann::json> cases(const std::string& file, const std::string& kind) {
  std::vector<nlohmann::json> out;
  for (const auto& c : load(file).at("cases")) {
    if (c.at("kind") == kind) out.push_back(c);
  }
  REQUIRE(!out.empty());
  return out;
}

/// A fixture tensor as a minnow tensor of rank R (the fixture's rank must match).
template <class T, std::size_t R>
minnow::Tensor<T, R> tensor(const nlohmann::json& c, const std::string& name) {
  const auto& entry = c.at("tensors").at(name);
  const auto dims = entry.at("shape").get<std::vector<minnow::index_t>>();
  REQUIRE(dims.size() == R);
  minnow::Shape<R> shape{};
  std::copy(dims.begin(), dims.end(), shape.begin());
  minnow::Tensor<T, R> t(shape);
  const auto& data = entry.at("data");
  REQUIRE(static_cast<minnow::index_t>(data.size()) == t.size());
  for (minnow::index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(data[static_cast<std::size_t>(i)].get<double>());
  return t;
}

/// A fixture tensor of any rank, flattened.
template <class T>
minnow::Tensor<T, 1> flat(const nlohmann::json& c, const std::string& name) {
  const auto& data = c.at("tensors").at(name).at("data");
  minnow::Tensor<T, 1> t({static_cast<minnow::index_t>(data.size())});
  for (minnow::index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(data[static_cast<std::size_t>(i)].get<double>());
  return t;
}

/// Largest |a − b| / max(1, |b|) over all elements (relative, with an absolute floor near zero).
template <class A, class B>
double max_rel_error(const A& a, const B& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0.0;
  for (minnow::index_t i = 0; i < a.size(); ++i) {
    const double x = static_cast<double>(a.data()[i]), y = static_cast<double>(b.data()[i]);
    worst = std::max(worst, std::abs(x - y) / std::max(1.0, std::abs(y)));
  }
  return worst;
}

}  // namespace fixtures
