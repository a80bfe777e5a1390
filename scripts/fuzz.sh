#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) in the sanitizer tree (clang, -fsanitize=fuzzer-no-link,
# address,undefined; scripts/lib/build-trees.sh) and runs each for a bounded time, starting
# from its committed corpus fuzz/corpus/<target>/, as many at a time as there are CPUs. Fails
# on any finding: a crash, a leak, UB, an input over the time or memory limit. The input that
# failed is kept in <tree>/artifacts/.
# Usage: ./scripts/fuzz.sh [target...]      (targets: request_target request_head policy control
#   mcp webhook telegram client_hello dns)
#   FUZZ_SECONDS=60        time per target (-max_total_time)
#   FUZZ_BUILD_DIR=build-san   the tree (scripts/test.sh's sanitizer tree: built once for both)
#   FUZZ_OPT=-O0          optimisation of the tree; for a long run FUZZ_OPT=-O1 with another
#                         FUZZ_BUILD_DIR (the tests' tree stays -O0)
#   FUZZ_JOBS=N           targets run at once (default: the number of CPUs)
# Inputs the fuzzer finds go to <tree>/corpus/<target>/, never into the committed corpus; to
# keep a good one, copy it to fuzz/corpus/<target>/ (small, with a name that says what it is).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${FUZZ_BUILD_DIR:-build-san}
PER_TARGET=${FUZZ_SECONDS:-60}
JOBS=${FUZZ_JOBS:-$(nproc)}
all=(request_target request_head policy control mcp webhook telegram client_hello dns)
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${all[@]}")

# shellcheck source=scripts/lib/build-trees.sh
. scripts/lib/build-trees.sh
acp_configure_sanitizer "$BUILD" "${FUZZ_OPT:--O0}"
cmake --build "$BUILD" -j"$(nproc)" --target "${targets[@]/#/fuzz_}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$BUILD/artifacts"

# One target: its log in $BUILD/fuzz-<t>.log, its exit status in $BUILD/fuzz-<t>.rc.
run_target() {
  local t=$1 work="$BUILD/corpus/$1"
  mkdir -p "$work"
  local args=(-max_total_time="$PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=16384
    -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$t-")
  [ -f "fuzz/$t.dict" ] && args+=(-dict="fuzz/$t.dict")
  # The scratch corpus first: libFuzzer writes new inputs into the first directory only.
  local rc=0
  "$BUILD/fuzz/fuzz_$t" "${args[@]}" "$work" "fuzz/corpus/$t" >"$BUILD/fuzz-$t.log" 2>&1 || rc=$?
  echo "$rc" >"$BUILD/fuzz-$t.rc"
}

echo "== fuzz ${targets[*]} (${PER_TARGET} s each, $JOBS at a time)"
for t in "${targets[@]}"; do
  rm -f "$BUILD/fuzz-$t.rc"
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  run_target "$t" &
done
wait

status=0
for t in "${targets[@]}"; do
  log="$BUILD/fuzz-$t.log"
  if [ "$(cat "$BUILD/fuzz-$t.rc" 2>/dev/null || echo missing)" = 0 ]; then
    echo -n "fuzz $t: "
    grep -E "^(stat::number_of_executed_units|stat::new_units_added)|Done [0-9]+ runs" "$log" |
      tr '\n' ' '
    echo
  else
    status=1
    echo "fuzz.sh: $t FAILED; the log ends:" >&2
    tail -n 60 "$log" >&2
    ls -1 "$BUILD/artifacts/$t-"* 2>/dev/null | sed 's/^/fuzz.sh: reproducer: /' >&2 || true
  fi
done
exit $status
