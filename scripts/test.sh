#!/usr/bin/env bash
# Installs what ACP needs, builds it, and runs every test: the unprivileged unit tests and,
# as root on a kernel with cgroup BPF, the vmtests that load the real programs. Then the same
# unit tests and vmtests again in the sanitizer tree (clang, ASan + UBSan, build-san/), and each
# libFuzzer target, built in that same tree, for a bounded time (scripts/fuzz.sh). See
# docs/testing.md.
# Usage: sudo ./scripts/test.sh            (BUILD_DIR=build by default)
#   ACP_SKIP_SANITIZE=1   leave out the sanitizer stage (developers; CI runs it)
#   ACP_SKIP_FUZZ=1       leave out the fuzz stage (developers; CI runs it)
#   FUZZ_SECONDS=30       time per fuzz target
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
SAN_BUILD_DIR=${SAN_BUILD_DIR:-build-san}

if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: run as root (sudo $0): installing packages and the kernel tests need it" >&2
  exit 1
fi
t0=$(date +%s)
times=()
stage_done() { times+=("$1: $(($(date +%s) - $2)) s"); }

./scripts/install-deps.sh
# shellcheck source=scripts/lib/build-trees.sh
. scripts/lib/build-trees.sh
s=$(date +%s)
acp_configure_plain "$BUILD_DIR"
cmake --build "$BUILD_DIR" -j"$(nproc)"
stage_done build "$s"

# What is there before the tests is not theirs: an operator's own /etc/acp files stay, and
# what an earlier, killed run left is shown but not counted. Anything else found after a
# stage is a leftover of that stage and fails the run.
ACP_LEFTOVER_BASELINE=$(mktemp /tmp/acp-leftover-baseline.XXXXXX)
trap 'rm -f "$ACP_LEFTOVER_BASELINE"' EXIT
./scripts/check-leftovers.sh --snapshot >"$ACP_LEFTOVER_BASELINE"
export ACP_LEFTOVER_BASELINE
if [ -s "$ACP_LEFTOVER_BASELINE" ]; then
  echo "== there before the tests (not counted as theirs)"
  sed 's/^/  /' "$ACP_LEFTOVER_BASELINE"
fi

status=0
echo "== unit tests (unprivileged)"
s=$(date +%s)
# Unit tests are hermetic (port 0, their own temp dirs): two at a time on two cores.
(cd "$BUILD_DIR" && ctest -L unit -j"$(nproc)" --output-on-failure --timeout 300) || status=1
stage_done "unit tests" "$s"
echo "== vmtests (root, real kernel)"
s=$(date +%s)
(cd "$BUILD_DIR" && ctest -L vm --output-on-failure --timeout 600) || status=1
stage_done vmtests "$s"
echo "== leftovers"
./scripts/check-leftovers.sh || status=1

if [ "${ACP_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== sanitizer tree (clang, ASan + UBSan, and the fuzz targets) in $SAN_BUILD_DIR"
  s=$(date +%s)
  acp_configure_sanitizer "$SAN_BUILD_DIR"
  cmake --build "$SAN_BUILD_DIR" -j"$(nproc)"
  stage_done "sanitizer build" "$s"
  # Every report fails the test that caused it. Suppressions (third-party false positives
  # only, each with its reason) are in scripts/sanitizers/.
  export ASAN_OPTIONS="detect_leaks=1:strict_init_order=1:check_initialization_order=1"
  export LSAN_OPTIONS="suppressions=$PWD/scripts/sanitizers/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  echo "== unit tests under ASan + UBSan"
  s=$(date +%s)
  (cd "$SAN_BUILD_DIR" && ctest -L unit -j"$(nproc)" --output-on-failure --timeout 600) || status=1
  stage_done "unit tests (ASan+UBSan)" "$s"
  echo "== vmtests under ASan + UBSan"
  s=$(date +%s)
  (cd "$SAN_BUILD_DIR" && ctest -L vm --output-on-failure --timeout 900) || status=1
  stage_done "vmtests (ASan+UBSan)" "$s"
  unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS
  echo "== leftovers (sanitizer run)"
  ./scripts/check-leftovers.sh || status=1
fi

if [ "${ACP_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzz targets (libFuzzer + ASan + UBSan), ${FUZZ_SECONDS:-30} s each, $(nproc) at a time"
  s=$(date +%s)
  FUZZ_SECONDS=${FUZZ_SECONDS:-30} FUZZ_BUILD_DIR="$SAN_BUILD_DIR" ./scripts/fuzz.sh || status=1
  stage_done "fuzz" "$s"
fi

echo "== times"
printf '  %s\n' "${times[@]}" "total: $(($(date +%s) - t0)) s"
exit $status
