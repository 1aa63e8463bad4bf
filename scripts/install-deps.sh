#!/usr/bin/env bash
# Installs minnow's build, test and data dependencies from Debian 12's archive (run as root).
set -euo pipefail
packages=(
  g++ cmake ninja-build pkg-config   # toolchain
  libeigen3-dev libxsimd-dev         # the library's two dependencies
  zlib1g-dev nlohmann-json3-dev      # .gz data files; safetensors headers
  catch2 libbenchmark-dev            # tests; benchmarks
  dataset-fashion-mnist              # the data the examples and tests train on
)
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${packages[@]}"
