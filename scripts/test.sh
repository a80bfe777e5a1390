#!/usr/bin/env bash
# Installs what ACP needs, builds it, and runs every test: the unprivileged unit tests and,
# as root on a kernel with cgroup BPF, the vmtests that load the real programs.
# Usage: sudo ./scripts/test.sh            (BUILD_DIR=build by default)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: run as root (sudo $0): installing packages and the kernel tests need it" >&2
  exit 1
fi
./scripts/install-deps.sh
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DACP_WERROR=ON >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"

# What an operator already has in /etc/acp stays; anything a test adds there is a leftover.
ACP_ETC_SNAPSHOT=$(./scripts/check-leftovers.sh --snapshot)
export ACP_ETC_SNAPSHOT

status=0
echo "== unit tests (unprivileged)"
(cd "$BUILD_DIR" && ctest -L unit --output-on-failure --timeout 300) || status=1
echo "== vmtests (root, real kernel)"
(cd "$BUILD_DIR" && ctest -L vm --output-on-failure --timeout 600) || status=1
echo "== leftovers"
./scripts/check-leftovers.sh || status=1
exit $status
