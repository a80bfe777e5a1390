#!/usr/bin/env bash
# Installs what ACP needs on Debian 12. Idempotent.
#   install-deps.sh          everything: the build, every test (unit, vm, browser, MCP, docker,
#                            Kubernetes manifests, the package), the fuzzers (scripts/test.sh)
#   install-deps.sh --demo   only what builds acp and runs it: scripts/demo.sh, scripts/package.sh
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root (sudo $0)" >&2
  exit 1
fi
demo=0
case ${1:-} in
"") ;;
--demo) demo=1 ;;
*)
  echo "install-deps: unknown option '$1' (none, or --demo)" >&2
  exit 2
  ;;
esac
export DEBIAN_FRONTEND=noninteractive
pkgs=(
  # build acp (acp_configure_user in scripts/lib/build-trees.sh)
  build-essential cmake pkg-config clang libbpf-dev bpftool libelf-dev zlib1g-dev
  ccache  # scripts/test.sh compiles through it when present: a rerun recompiles only what changed
  libboost-dev libboost-system-dev libssl-dev nlohmann-json3-dev libyaml-dev
  libidn2-dev  # the proxy's canonical host names: IDNA2008/UTS #46 for non-ASCII names
  libldns-dev  # the transparent door's DNS responder: queries read and answers written by ldns
  libcli11-dev python3
  file  # scripts/package.sh: CPack picks the ELF files for dpkg-shlibdeps with it
  # run the demo: its origin server and its agent
  curl procps
)
if [ "$demo" = 0 ]; then
  pkgs+=(
    libgtest-dev libgmock-dev libbenchmark-dev
    llvm  # llvm-symbolizer: the sanitizer and fuzz stages' reports with file:line
    libclang-rt-14-dev  # fuzz/: libFuzzer and clang's ASan/UBSan runtimes (scripts/fuzz.sh)
    # runtime and tests
    iproute2 iptables nodejs util-linux kmod openssl
    liburing-dev  # vmtests: connect() through io_uring must meet the wall too
    nftables python3-yaml docker-compose  # acp export tests: nft -c, the compose file parsed and checked
    python3-prometheus-client  # the daemon's and node agent's /metrics read by a real parser (scripts/check-metrics.py)
    docker.io busybox-static  # the docker backend: dockerd for its vmtests (they start their own), the agent image's shell
    libcap2-bin  # capsh: the node agent vmtest runs the agent with only the DaemonSet's capabilities
    chromium  # the web page's browser test (headless, driven by playwright-core from npm)
    groff-base  # the unit tests render the man pages (groff -man -ww) to catch roff warnings
    zsh  # the unit tests load the zsh completion (zsh -n and its completion function)
    lintian man-db  # the package vmtest: lintian on the .debs, `man acp-run` from the installed package
  )
fi
# kubectl for the manifest tests (deploy/kubernetes): Debian's kubernetes-client, unless a
# kubectl is installed already (another package providing /usr/bin/kubectl would conflict).
[ "$demo" = 1 ] || command -v kubectl >/dev/null 2>&1 || pkgs+=(kubernetes-client)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ "$demo" = 1 ]; then exit 0; fi
# The browser test driver (npm: playwright-core, pinned by tests/browser/package-lock.json).
"$(dirname "$0")/install-browser-deps.sh"
# The MCP tests' SDK (npm: @modelcontextprotocol/sdk, pinned by tests/mcp/package-lock.json).
"$(dirname "$0")/install-mcp-deps.sh"
