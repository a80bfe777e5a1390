#!/usr/bin/env bash
# Builds the Debian packages acp_<version>_<arch>.deb and acp-dbgsym_<version>_<arch>.deb with
# `cpack -G DEB` (cmake/AcpPackage.cmake; docs/operations.md, "The Debian package"), then runs
# lintian on them when it is installed.
#
# Usage: ./scripts/package.sh [--out=DIR]
#          builds build-pkg/ (what a user runs: acp, the preload library, the man pages and
#          completions; no tests; the compile flags of test.sh's build/, so ccache shares their
#          objects), then packages it into DIR (default: the checkout).
#        ./scripts/package.sh --tree=build --no-build --out=DIR
#          packages a tree that is built already (the package vmtest packages build/).
#   --lintian / --no-lintian   require lintian / skip it (default: run it when installed)
# As root it first installs what it needs (scripts/install-deps.sh --demo; SKIP_INSTALL=1 skips
# that), as demo.sh does; lintian is not among it (`apt-get install lintian`).
set -euo pipefail
caller_dir=$PWD
cd "$(dirname "$0")/.."
tree="build-pkg"
out=$PWD
build=1
lint=auto
for arg in "$@"; do
  case $arg in
  --tree=*) tree=${arg#*=} ;;
  --out=*) out=${arg#*=} ;;
  --no-build) build=0 ;;
  --lintian) lint=1 ;;
  --no-lintian) lint=0 ;;
  -h | --help)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "package.sh: unknown option '$arg' (see --help)" >&2
    exit 2
    ;;
  esac
done
case $out in /*) ;; *) out=$caller_dir/$out ;; esac
mkdir -p "$out"

if [ "$build" = 1 ] && [ "${SKIP_INSTALL:-0}" != 1 ]; then
  if [ "$(id -u)" = 0 ]; then
    ./scripts/install-deps.sh --demo
  else
    echo "package.sh: not root: the build dependencies are not installed (sudo ./scripts/install-deps.sh --demo)"
  fi
fi
if [ "$build" = 1 ]; then
  # shellcheck source=scripts/lib/build-trees.sh
  . scripts/lib/build-trees.sh
  acp_configure_user "$tree"
  cmake --build "$tree" -j"$(nproc)"
elif [ ! -f "$tree/CPackConfig.cmake" ] || [ ! -x "$tree/src/acp" ] ||
  [ ! -f "$tree/src/cli-docs/stamp" ]; then
  echo "package.sh: $tree is not configured or not built (acp, acp_preload, acp_cli_docs_files);" \
    "build it first, or leave out --no-build" >&2
  exit 1
fi

stage=$(mktemp -d /tmp/acp-package.XXXXXX)
trap 'rm -rf "$stage"' EXIT
if ! cpack --config "$tree/CPackConfig.cmake" -B "$stage" >"$stage/cpack.log" 2>&1; then
  cat "$stage/cpack.log" >&2
  echo "package.sh: cpack failed" >&2
  exit 1
fi
debs=("$stage"/acp_*.deb)
ddebs=("$stage"/acp-dbgsym_*.ddeb)
if [ ! -f "${debs[0]}" ] || [ ! -f "${ddebs[0]}" ]; then
  cat "$stage/cpack.log" >&2
  echo "package.sh: cpack made no acp_*.deb and acp-dbgsym_*.ddeb in $stage" >&2
  exit 1
fi
deb=${debs[0]}
dbgsym=$out/$(basename "${ddebs[0]}" .ddeb).deb

# The debug package as CPack 3.25 makes it needs two repairs before dpkg and lintian accept it:
# its md5sums name the files by their absolute paths in CPack's staging directory (dpkg --verify
# would find none of them), and it has no copyright or changelog: as dh_strip does, its doc
# directory is a link to acp's, the package it depends on (= this version).
unpacked=$stage/dbgsym
dpkg-deb -R "${ddebs[0]}" "$unpacked"
sed -i -E 's#^([0-9a-f]{32})  /.*-dbgsym/#\1  #' "$unpacked/DEBIAN/md5sums"
while read -r _ path; do
  if [ ! -f "$unpacked/$path" ]; then
    echo "package.sh: the dbgsym md5sums still name $path, which it does not hold" >&2
    exit 1
  fi
done <"$unpacked/DEBIAN/md5sums"
mkdir -p "$unpacked/usr/share/doc"
ln -s acp "$unpacked/usr/share/doc/acp-dbgsym"
# gzip: the debug info is 130 MB; xz would take minutes on two cores for a few MB less.
dpkg-deb --root-owner-group -Zgzip -b "$unpacked" "$dbgsym" >/dev/null
cp "$deb" "$out/"
deb=$out/$(basename "$deb")

echo "package.sh: $deb ($(du -h "$deb" | cut -f1))"
echo "package.sh: $dbgsym ($(du -h "$dbgsym" | cut -f1))"

if [ "$lint" = auto ]; then
  if command -v lintian >/dev/null; then lint=1; else lint=0; fi
  [ "$lint" = 1 ] || echo "package.sh: lintian is not installed: not checked (apt-get install lintian)"
fi
if [ "$lint" = 1 ]; then
  # Every tag at every level but pedantic fails; the ones that stay are overridden, each with
  # its reason, in deploy/debian/lintian-overrides (shipped as /usr/share/lintian/overrides/acp).
  rc=0
  report=$(lintian --info --fail-on error,warning,info "$deb" "$dbgsym" 2>&1) || rc=$?
  report=$(grep -v '^running with root privileges' <<<"$report" || true)
  if [ "$rc" -ne 0 ] || [ -n "$report" ]; then
    printf '%s\n' "$report" >&2
    echo "package.sh: lintian reported the tags above (exit $rc)" >&2
    exit 1
  fi
  echo "package.sh: lintian: clean (overrides: deploy/debian/lintian-overrides)"
fi
