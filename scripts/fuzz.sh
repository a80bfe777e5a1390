#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang++ with -fsanitize=fuzzer,address,undefined) in
# build-fuzz/ and runs each for a bounded time, starting from its committed corpus
# fuzz/corpus/<target>/. Fails on any finding: a crash, a leak, UB, an input over the time or
# memory limit. The input that failed is kept in build-fuzz/artifacts/.
# Usage: ./scripts/fuzz.sh [target...]      (targets: request_target request_head policy control
#   mcp webhook telegram)
#   FUZZ_SECONDS=60        time per target (-max_total_time)
#   FUZZ_BUILD_DIR=build-fuzz
#   FUZZ_OPT=-O0          optimisation of the fuzz build (-O1 for long runs)
# Inputs the fuzzer finds go to build-fuzz/corpus/<target>/, never into the committed corpus;
# to keep a good one, copy it to fuzz/corpus/<target>/ (small, with a name that says what it is).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
PER_TARGET=${FUZZ_SECONDS:-60}
all=(request_target request_head policy control mcp webhook telegram)
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${all[@]}")

if ! command -v clang++ >/dev/null; then
  echo "fuzz.sh: clang++ not found (sudo ./scripts/install-deps.sh)" >&2
  exit 1
fi
# FUZZ_OPT=-O0 by default: clang with coverage, ASan and UBSan compiled http_client.cpp in 35 s
# at -O0 -g1 and in 104 s at -O2 -g; CI builds this tree from scratch. The fuzzers run slower
# (fewer executions per second); for a long local run, FUZZ_OPT=-O1.
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
opt="${FUZZ_OPT:--O0} -g1 -DNDEBUG"
CC=clang CXX=clang++ cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DACP_FUZZ=ON \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$opt" -DCMAKE_C_FLAGS_RELWITHDEBINFO="$opt" \
  -DBUILD_TESTING=OFF -DACP_BUILD_BENCH=OFF -DACP_WERROR=ON "${launcher[@]}" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target "${targets[@]/#/fuzz_}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in "${targets[@]}"; do
  work="$BUILD/corpus/$t"
  mkdir -p "$work" "$BUILD/artifacts"
  args=(-max_total_time="$PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=16384
    -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$t-")
  [ -f "fuzz/$t.dict" ] && args+=(-dict="fuzz/$t.dict")
  echo "== fuzz $t (${PER_TARGET}s)"
  log="$BUILD/fuzz-$t.log"
  # The scratch corpus first: libFuzzer writes new inputs into the first directory only.
  if "$BUILD/fuzz/fuzz_$t" "${args[@]}" "$work" "fuzz/corpus/$t" >"$log" 2>&1; then
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
