#!/usr/bin/env bash
# Cross-compiles minnow's kernel tests for aarch64 with Debian 12's cross compiler and runs them under
# qemu-user, so the NEON kernels (neon and neon_dot: qemu's default CPU has the dot products) and the
# scalar twins are checked on a second architecture; test_simd_arch and test_infer_qgemm run again on a
# Cortex-A53 (no dot products), where the detection must fall back to neon. Prints one line per test and
# exits non-zero when a test fails to compile or fails to pass.
#
# Usage: scripts/aarch64-kernel-tests.sh [test_name ...]   (default: the kernel tests listed below)
# Environment: JOBS (tests built and run at once, default nproc), OPT (default -O2; -O1 compiles about a
# fifth faster and runs about as fast under qemu), TEST_TIMEOUT (seconds per test run, default 900).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
build=$root/build/aarch64
jobs=${JOBS:-$(nproc)}
opt=${OPT:--O2}
test_timeout=${TEST_TIMEOUT:-900}
tests=("$@")
if ((${#tests[@]} == 0)); then
  # Slowest compiles first, so that no long compile is left alone on one core at the end.
  tests=(
    test_nn_layers test_simd_direct_conv test_nn_norm_pool test_infer_sparse test_simd_gemm test_distill
    test_quant test_infer_codebook test_nn_conv_relu_pool test_infer_qgemm test_tensor test_simd_maxpool test_simd_arch
  )
fi

script_start=$EPOCHREALTIME
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# The cross toolchain and qemu-user come from Debian's archive; install them as install-deps.sh does, with
# recommends (qemu-user's binfmt support; the arm64 libgomp comes in either way).
packages=(crossbuild-essential-arm64 qemu-user)
if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  if ((EUID != 0)); then
    echo "aarch64-linux-gnu-g++ or qemu-aarch64 is missing: run as root, or apt-get install ${packages[*]}" >&2
    exit 2
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y "${packages[@]}"
fi
# The header-only dependencies are the host's packages (scripts/install-deps.sh installs them).
for dir in /usr/include/eigen3/Eigen /usr/include/xsimd /usr/include/catch2 /usr/include/nlohmann; do
  if [[ ! -d $dir ]]; then
    echo "$dir is missing: run scripts/install-deps.sh first" >&2
    exit 2
  fi
done

rm -rf "$build"
mkdir -p "$build/include" "$build/logs"
# -isystem /usr/include would pull the host's x86-64 glibc headers into the cross build: expose only the
# architecture-independent header libraries, through symlinks.
ln -s /usr/include/eigen3/Eigen /usr/include/xsimd /usr/include/catch2 /usr/include/nlohmann "$build/include/"

# The definitions tests/CMakeLists.txt and CMakeLists.txt give every test, without -march=native.
# MINNOW_HAS_ZLIB is left out: no kernel test reads .gz files, and an arm64 zlib needs a foreign dpkg
# architecture.
cxx=aarch64-linux-gnu-g++
cxxflags=(-std=c++20 "$opt" -fopenmp -Wall -Wextra -Wpedantic -Werror
  "-DMINNOW_FIXTURE_DIR=\"$root/tests/fixtures\"" -DMINNOW_HAS_JSON=1
  -Iinclude -isystem "$build/include")
qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
echo "== $($cxx --version | head -n 1); $(qemu-aarch64 --version | head -n 1)"
echo "== $cxx ${cxxflags[*]}"
echo "== building and running ${#tests[@]} tests, $jobs at a time (logs in $build/logs)"

TIMEFORMAT='%R %U %S'  # bash's `time`: wall, user and system seconds

# One job per test: compile, link with the shared Catch2 main, run under qemu. Compiles and runs of
# different tests overlap, which keeps both cores busy; each job writes its result line to a file.
build_main() {
  local status=ok
  if ! { time "$cxx" "${cxxflags[@]}" -c tests/catch_main.cpp -o "$build/catch_main.o" \
    >"$build/logs/catch_main.compile.log" 2>&1; } 2>"$build/logs/catch_main.compile.time"; then
    status=failed
  fi
  echo "$status" >"$build/logs/catch_main.status.tmp"
  mv "$build/logs/catch_main.status.tmp" "$build/logs/catch_main.status"
}
test_job() {
  local unit=$1 log=$build/logs/$1 code=0 wall user sys verdict summary skipped skipped_count main_status
  if ! { time "$cxx" "${cxxflags[@]}" -c "tests/$unit.cpp" -o "$build/$unit.o" >"$log.compile.log" 2>&1; } \
    2>"$log.compile.time"; then
    printf '%-24s COMPILE-FAIL  see %s\n' "$unit" "$log.compile.log" >"$log.result"
    return
  fi
  read -r wall user sys < <(tail -n 1 "$log.compile.time")
  local compile_cpu
  compile_cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.1f", u + s }')
  until [[ -e $build/logs/catch_main.status ]]; do sleep 0.5; done
  read -r main_status <"$build/logs/catch_main.status"
  if [[ $main_status != ok ]] || ! "$cxx" -fopenmp "$build/$unit.o" "$build/catch_main.o" -o "$build/$unit" >>"$log.compile.log" 2>&1; then
    printf '%-24s LINK-FAIL     see %s\n' "$unit" "$log.compile.log" >"$log.result"
    return
  fi
  # Catch2 exits with the number of failed assertions. --durations names each finished test case, so a
  # MINNOW_TEST_SKIPPED marker (a case that skipped itself; CTest reports it as skipped) belongs to the next
  # name printed.
  # Run from the build directory (this job is a subshell), where any file a test leaves behind belongs.
  cd "$build"
  { time timeout "$test_timeout" "${qemu[@]}" "./$unit" --durations yes >"$log.run.log" 2>&1; } 2>"$log.run.time" ||
    code=$?
  echo "$code" >"$log.exit"
  # The last line is time's; a crash adds the shell's "Segmentation fault" line before it.
  read -r wall user sys < <(tail -n 1 "$log.run.time")
  summary=$(grep -E '^(All tests passed|test cases:|assertions:|No tests ran)' "$log.run.log" | tr -s ' ' | paste -sd' ' - || true)
  skipped=$(awk '/MINNOW_TEST_SKIPPED/ { pending = 1; next }
                 pending && /^[0-9]+\.[0-9]+ s: / { sub(/^[0-9.]+ s: /, ""); print; pending = 0 }' "$log.run.log" | sort -u)
  skipped_count=$(grep -c . <<<"$skipped" || true)
  if ((code != 0)); then
    verdict=FAIL
  elif ((skipped_count > 0)); then
    verdict=SKIP
  else
    verdict=PASS
  fi
  {
    printf '%-24s %-12s  compile %5.1fs cpu  run %5.1fs (%5.1fs cpu)  exit %-3s %s\n' "$unit" "$verdict" "$compile_cpu" \
      "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" "$code" "${summary:-no Catch2 summary}"
    if ((skipped_count > 0)); then
      printf '%-24s   %s test case(s) skipped themselves, the others ran: %s\n' "" "$skipped_count" \
        "$(paste -sd'|' - <<<"$skipped")"
    fi
  } >"$log.result"
}

# An interrupted run stops its own compiles and qemu processes.
trap 'kill $(jobs -p) 2>/dev/null || true' INT TERM
build_main &
running=1
for unit in "${tests[@]}"; do
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
  test_job "$unit" &
  running=$((running + 1))
done
wait

failed=0
if [[ $(cat "$build/logs/catch_main.status") != ok ]]; then
  echo "---- tests/catch_main.cpp failed to compile:"
  head -n 40 "$build/logs/catch_main.compile.log"
  failed=1
fi
for unit in "${tests[@]}"; do
  log=$build/logs/$unit
  result=$(cat "$log.result" 2>/dev/null || printf '%-24s NO-RESULT     the build-and-run job stopped early' "$unit")
  case $result in
    *COMPILE-FAIL* | *LINK-FAIL* | *NO-RESULT*)
      failed=1
      echo "---- $unit: first errors ($log.compile.log):"
      grep -m 20 -E 'error' "$log.compile.log" || head -n 20 "$log.compile.log"
      ;;
    *" FAIL "*)
      failed=1
      code=$(cat "$log.exit")
      why=""
      if ((code == 124)); then why=", timed out after ${test_timeout}s"; fi
      echo "---- $unit: exit $code$why; failures ($log.run.log):"
      grep -v -E '^[0-9]+\.[0-9]+ s: ' "$log.run.log" |
        grep -B 12 -A 8 -m 10 -E 'FAILED|due to unexpected exception|fatal error condition' | head -n 120 ||
        tail -n 40 "$log.run.log"
      ;;
  esac
done

# Without the dot products: the same binaries on a Cortex-A53 model.
a53_result=""
for unit in test_simd_arch test_infer_qgemm; do
  [[ -x $build/$unit ]] || continue
  code=0
  (cd "$build" && timeout "$test_timeout" "${qemu[@]}" -cpu cortex-a53 "./$unit" >"$build/logs/$unit.a53.log" 2>&1) || code=$?
  summary=$(grep -E '^(All tests passed|test cases:)' "$build/logs/$unit.a53.log" | tr -s ' ' | paste -sd' ' - || true)
  if ((code != 0)); then
    failed=1
    echo "---- $unit on cortex-a53: exit $code ($build/logs/$unit.a53.log)"
    grep -B 12 -A 8 -m 10 -E 'FAILED|due to unexpected exception' "$build/logs/$unit.a53.log" | head -n 60 || true
  fi
  a53_result+=$(printf '%-24s %-12s  on cortex-a53 (no dot products)  exit %-3s %s' "$unit" \
    "$( ((code == 0)) && echo PASS || echo FAIL)" "$code" "${summary:-no Catch2 summary}")$'\n'
done

echo
echo "== aarch64 kernel tests under qemu-aarch64 ($opt; catch_main compiled in" \
  "$(tail -n 1 "$build/logs/catch_main.compile.time" | awk '{ printf "%.1f", $2 + $3 }')s cpu)"
for unit in "${tests[@]}"; do cat "$build/logs/$unit.result" 2>/dev/null || echo "$unit NO-RESULT"; done
printf '%s' "$a53_result"
echo "== total $(elapsed "$script_start")s"
if ((failed)); then
  echo "== RESULT: FAILED"
  exit 1
fi
echo "== RESULT: no failures (a SKIP line is not a pass: the cases named under it did not run)"
