# Sourced by scripts/test.sh and scripts/fuzz.sh: how the build trees are configured, in one
# place, so that both scripts (and a developer's rerun) use the same flags and hit the same
# ccache entries.
#
# Two trees:
#   plain (build/)      gcc, -O2 -g1: what users run; the unit tests and vmtests.
#                       acp_configure_user: the same flags (so the same ccache entries and
#                       objects), without the tests and benches: scripts/package.sh
#                       (build-pkg/); needs only install-deps.sh --demo.
#   demo (build-demo/)  gcc, -O1, no debug info, only acp: scripts/demo.sh's first run.
#   sanitizer (build-san/)  clang, -O0 -g1, ASan + UBSan + libFuzzer coverage: the unit tests
#                       and vmtests again, and the fuzz targets (fuzz/), from one build.
# Why clang for the second tree: on this project's Asio/Beast code it compiles a sanitizer
# build two to three times faster than GCC 12 (http_client.cpp: 16 s against 41 s at -O0 with
# ASan + UBSan), and one tree then serves both the sanitizer tests and the fuzzers. Two
# compilers also mean two sets of warnings (-Werror in both).

# ccache (installed by install-deps.sh) makes a rerun compile only what changed; paths are
# hashed relative to the checkout, so another clone of the same commit hits the same cache.
acp_launcher=()
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
  acp_launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi

# -g1 (line tables: backtraces and perf keep file:line) instead of -g: a quarter less compile
# time on these sources (http_client.cpp: 42 s against 51 s).
#
# $1: the tree; the rest: more cmake options. BUILD_TESTING and ACP_BUILD_BENCH are cache
# variables: both functions set both, so that a tree configured by one (the demo's build/) is
# right again after the other (test.sh's build/).
acp_configure_o2g1() {
  local tree=$1
  shift
  cmake -S . -B "$tree" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DACP_WERROR=ON \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" "${acp_launcher[@]}" "$@" >/dev/null
}
acp_configure_plain() { acp_configure_o2g1 "$1" -DBUILD_TESTING=ON -DACP_BUILD_BENCH=ON; }
acp_configure_user() { acp_configure_o2g1 "$1" -DBUILD_TESTING=OFF -DACP_BUILD_BENCH=OFF; }

# The demo's acp: a first run, not a benchmark. -O1 without debug info compiles in about 0.7x
# the CPU time of -O2 -g1 (agent_session.cpp: 4.7 s against 6.6 s); a cold build of acp alone
# took 629 s of CPU at -O2 -g1. Warnings stay warnings: GCC's set changes with -O, and a user's
# first build must not stop on one that CI's -Werror trees (built at -O2 and -O0) never see.
acp_configure_demo() {
  cmake -S . -B "$1" -DCMAKE_BUILD_TYPE=Release -DACP_WERROR=OFF \
    -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" -DCMAKE_C_FLAGS_RELEASE="-O1 -DNDEBUG" \
    -DBUILD_TESTING=OFF -DACP_BUILD_BENCH=OFF "${acp_launcher[@]}" >/dev/null
}

# $1: the tree; $2: optimisation (default -O0: the tree is built from scratch in CI, and the
# tests and fuzzers find the same errors; FUZZ_OPT=-O1 in another tree for a long fuzz run).
# Assertions stay on (no -DNDEBUG): a broken invariant is a finding.
acp_configure_sanitizer() {
  if ! command -v clang++ >/dev/null; then
    echo "$0: clang++ not found (sudo ./scripts/install-deps.sh)" >&2
    return 1
  fi
  local opt="${2:--O0} -g1"
  cmake -S . -B "$1" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=ASan -DCMAKE_CXX_FLAGS_ASAN="$opt" -DCMAKE_C_FLAGS_ASAN="$opt" \
    -DACP_SANITIZE=ON -DACP_FUZZ=ON -DACP_BUILD_BENCH=OFF -DACP_WERROR=ON \
    "${acp_launcher[@]}" >/dev/null
}
