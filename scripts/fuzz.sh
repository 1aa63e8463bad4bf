#!/usr/bin/env bash
# Builds the libFuzzer targets (preset 'fuzz': clang, ASan + UBSan) and runs each for a given time.
#   [JOBS=N] scripts/fuzz.sh SECONDS [TARGET ...]     targets: idx idx_gz checkpoint safetensors compressed_model (default: all)
# Each target starts from its seed corpus (tests/fuzz/corpus/TARGET) and keeps what it finds in
# build/fuzz/corpus/TARGET; a crash leaves its input in build/fuzz/artifacts/TARGET/ and fails the script.
# Add every such input to tests/fuzz/regressions/TARGET/ with the fix, so CTest replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET ...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(idx idx_gz checkpoint safetensors compressed_model)
jobs=${JOBS:-$(nproc)}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "JOBS must be a positive integer, got '$jobs'" >&2; exit 2; }

cmake --preset fuzz >/dev/null
cmake --build build/fuzz --target "${targets[@]/#/fuzz_}"

# One fuzzer per core at a time (JOBS overrides); each reports when all have finished, in the order given.
fuzz_one() {
  local target=$1 corpus=build/fuzz/corpus/$1 artifacts=build/fuzz/artifacts/$1 status=0
  mkdir -p "$corpus" "$artifacts"
  # -rss_limit_mb: a reader that allocates what a corrupt header claims is a finding, not a pass.
  "build/fuzz/tests/fuzz/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$corpus" "tests/fuzz/corpus/$target" >"build/fuzz/$target.log" 2>&1 || status=$?
  echo "$status" >"build/fuzz/$target.status"
}
for target in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  rm -f "build/fuzz/$target.status"  # a run that dies before writing its status must not read an old one
  fuzz_one "$target" &
done
wait

failed=0
for target in "${targets[@]}"; do
  log=build/fuzz/$target.log artifacts=build/fuzz/artifacts/$target
  if [ "$(cat "build/fuzz/$target.status")" != 0 ]; then
    failed=1
    echo "fuzz_$target: FAILED, see $log and $artifacts/"
    tail -n 30 "$log"
    continue
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  coverage=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\).*/\1 edges, \2 features, corpus \3/p')
  echo "fuzz_$target: ${seconds} s, $runs executions, $coverage, no crash"
done
exit $failed
