#!/usr/bin/env bash
# The Debian package, installed and used as an admin would (docs/operations.md, "The Debian
# package"): packages the built tree with scripts/package.sh (lintian included when installed),
# installs the .debs with dpkg into a scratch root, runs the installed /usr/sbin/acp there
# (doctor, policy check, man pages, a real confined `acp run` with the shipped config and
# policy, the preload library), purges, and checks that nothing is left.
#
# The scratch root is an overlay of this machine's own root, in a private mount namespace: dpkg
# and the package see the machine's real libraries and dpkg database, and every file they write
# lands in a tmpfs that vanishes with the namespace, even if this test is killed. So the
# machine's dpkg database, /usr/sbin, /etc/acp and /var stay as they were, and an acp installed
# there (by hand or as a package) is never touched. The kernel is shared: the confined run's
# cgroup, programs and pins are real, and the test checks they are gone afterwards. Killed
# (SIGKILL) midway, it leaves only its scratch directory /tmp/acp-vmt-pkg.*, which
# scripts/check-leftovers.sh reports; the origin server dies with it, and whatever ran in the
# namespace finishes its steps, purge included, or dies with the namespace.
#
# Usage (ctest -L vm runs it): vmtests/package_test.sh BUILD_DIR. Exit 77: skipped (says why).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)

say() { printf '== %s\n' "$*"; }
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
skip() {
  echo "SKIPPED: $*"
  exit 77
}

# ---- Inside the scratch root (chroot), as the admin would type it. ----
if [ "${1:-}" = --in-root ]; then
  port=$2
  export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8
  cd /
  # The ids of this test's sessions, for the kernel check once the namespace's steps are done.
  sessions() { grep -o 'session [0-9a-f]\{12\}' <<<"$1" | awk '{print $2}' >>/tmp/acp-sessions || true; }
  say "apt install ./acp_*.deb ./acp-dbgsym_*.deb, then dpkg -i both again (an upgrade to the same version)"
  # As the README has it. Every Depends is installed here already (the test's build needed them)
  # and Recommends are left out, so apt fetches nothing.
  (cd /tmp/acp-debs && apt-get install -y -q --no-install-recommends ./acp_*.deb ./acp-dbgsym_*.deb >/tmp/acp-apt.out 2>&1) || {
    cat /tmp/acp-apt.out
    fail "apt install ./acp_*.deb"
  }
  dpkg -i /tmp/acp-debs/acp_*.deb /tmp/acp-debs/acp-dbgsym_*.deb >/dev/null
  dpkg-query -W -f='${Status}\n' acp | grep -qx 'install ok installed' || fail "acp not installed"
  dpkg -L acp acp-dbgsym | sort -u >/tmp/acp-installed-paths
  [ "$(command -v acp)" = /usr/sbin/acp ] || fail "acp on PATH is $(command -v acp), not /usr/sbin/acp"

  say "the installed files"
  [ "$(dpkg-query -W -f='${Conffiles}' acp | awk 'NF {print $1}' | sort | tr '\n' ' ')" = \
    "/etc/acp/config.yml /etc/acp/policy.yml " ] || fail "conffiles: $(dpkg-query -W -f='${Conffiles}' acp)"
  for d in /var/lib/acp /var/log/acp; do
    [ "$(stat -c '%a %U' "$d")" = "700 root" ] || fail "$d is $(stat -c '%a %U' "$d"), not 700 root"
  done
  if readelf -S /usr/sbin/acp | grep -q '\.debug_info'; then fail "/usr/sbin/acp is not stripped"; fi
  id=$(readelf -n /usr/sbin/acp | awk '/Build ID/ {print $3}')
  [ -s "/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug" ] ||
    fail "no debug file for build id $id in acp-dbgsym"
  [ -f /usr/lib/acp/libacp_preload.so ] || fail "no /usr/lib/acp/libacp_preload.so"
  if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify /lib/systemd/system/acp.service
    # "OK" or better (the unit's reasons for what it leaves open: docs/daemon.md).
    systemd-analyze security --offline=true --threshold=50 /lib/systemd/system/acp.service |
      tail -1
  else
    echo "systemd-analyze is not installed: the unit is not verified"
  fi

  say "acp doctor; acp policy check /etc/acp/policy.yml"
  acp doctor >/tmp/acp-doctor.out 2>&1 || {
    cat /tmp/acp-doctor.out
    fail "acp doctor exited $?"
  }
  acp policy check /etc/acp/policy.yml

  say "man acp-run, man 5 acp-policy, man -l acp.8.gz, bash completion"
  MANPAGER=cat MANWIDTH=80 man acp-run 2>&1 | grep -q -- '--backend' || fail "man acp-run"
  MANPAGER=cat MANWIDTH=80 man 5 acp-policy 2>&1 | grep -qi 'policy' || fail "man 5 acp-policy"
  MANPAGER=cat MANWIDTH=80 man -l /usr/share/man/man8/acp.8.gz 2>&1 | grep -q 'acp-run' ||
    fail "man -l acp.8.gz"
  bash -c '. /usr/share/bash-completion/completions/acp && complete -p acp' >/dev/null ||
    fail "the bash completion defines no completion for acp"

  say "acp run with the shipped config and policy: a direct connection never reaches the origin"
  # Run as nobody. The default door (both, on bpf) leads the connect to the proxy, which refuses
  # a local destination (audited as door_refused); the origin listens, so only ACP can stop it.
  out=$(timeout 60 acp run --user=nobody -- \
    curl --noproxy '*' -sS --max-time 20 "http://127.0.0.1:$port/" 2>&1) && rc=0 || rc=$?
  printf '%s\n' "$out" | sed 's/^/   | /' # SC2001: a prefix on every line
  sessions "$out"
  case $out in *hello-from-the-origin*) fail "the direct connection reached the origin" ;; esac
  grep -q '"door_refused"' /var/log/acp/audit.jsonl || fail "no door_refused entry in the audit log"
  [ -f /etc/acp/web.token ] || fail "acp run made no /etc/acp/web.token (the shipped config's web page)"

  say "acp run --door=proxy: the same connect() is refused by the kernel"
  # bash's /dev/tcp makes one connect().
  out=$(timeout 60 acp run --user=nobody --door=proxy -- /bin/bash -c \
    "exec 3<>/dev/tcp/127.0.0.1/$port && echo THROUGH-THE-WALL" 2>&1) && rc=0 || rc=$?
  printf '%s\n' "$out" | sed 's/^/   | /' # SC2001: a prefix on every line
  sessions "$out"
  case $out in *THROUGH-THE-WALL*) fail "the direct connection went through" ;; esac
  case $out in *"Operation not permitted"*) ;; *) fail "no EPERM from the wall (exit $rc)" ;; esac

  say "acp run with a policy that allows the origin: the proxied request gets through"
  printf 'default: deny\nrules:\n  - match: { kind: http, host: "127.0.0.1", port: %s }\n    action: allow\n' \
    "$port" >/tmp/acp-allow.yml
  out=$(timeout 60 acp run --user=nobody --policy=/tmp/acp-allow.yml -- \
    curl -sS --max-time 20 "http://127.0.0.1:$port/" 2>&1) || fail "proxied request: $out"
  sessions "$out"
  case $out in *hello-from-the-origin*) ;; *) fail "proxied request: $out" ;; esac
  acp audit verify /var/log/acp/audit.jsonl

  say "acp run --backend=preload finds the installed library"
  timeout 60 acp run --backend=preload --user=nobody -- /bin/true >/tmp/acp-preload.out 2>&1 || {
    cat /tmp/acp-preload.out
    fail "acp run --backend=preload"
  }

  say "dpkg -r: the conffiles, the audit log and the state stay"
  dpkg -r acp-dbgsym acp >/dev/null
  for f in /etc/acp/config.yml /etc/acp/policy.yml /var/log/acp/audit.jsonl; do
    [ -e "$f" ] || fail "$f is gone after dpkg -r (only purge removes it)"
  done
  [ ! -e /usr/sbin/acp ] || fail "/usr/sbin/acp is still there after dpkg -r"

  say "dpkg --purge, twice: nothing of the package is left"
  dpkg --purge acp-dbgsym acp >/dev/null
  dpkg --purge acp-dbgsym acp >/dev/null 2>&1
  status=$(dpkg-query -W -f='${Status}' acp 2>/dev/null || true)
  case $status in "" | *not-installed*) ;; *) fail "dpkg still has acp: $status" ;; esac
  # Every path the package had is gone, but for directories other packages own too.
  left=""
  while read -r p; do
    [ "$p" = /. ] || [ ! -e "$p" ] && continue
    [ -d "$p" ] && dpkg-query -S "$p" >/dev/null 2>&1 && continue
    left="$left $p"
  done </tmp/acp-installed-paths
  for p in /etc/acp /var/lib/acp /var/log/acp; do [ -e "$p" ] && left="$left $p"; done
  [ -z "$left" ] || fail "left after purge:$left"
  echo "the package's $(wc -l </tmp/acp-installed-paths) paths, /etc/acp, /var/lib/acp, /var/log/acp: gone"
  exit 0
fi

# ---- In a private mount namespace: the scratch root around the steps above. ----
if [ "${1:-}" = --in-namespace ]; then
  work=$2 port=$3
  root=$work/root
  mount -t tmpfs -o mode=0755 acp-pkg-test "$work/layers"
  mkdir -p "$work/layers/upper" "$work/layers/work" "$root"
  mount -t overlay acp-pkg-test -o "lowerdir=/,upperdir=$work/layers/upper,workdir=$work/layers/work" "$root" ||
    skip "cannot mount an overlay of / here (see the mount error above): no scratch root"
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys" # with the cgroup2 mount and bpffs
  mount --rbind /dev "$root/dev"
  # A /run of its own: no other acp session's control socket, and no daemon to hand the
  # session to (acp run --daemon=auto stays standalone).
  mount -t tmpfs -o mode=0755 acp-pkg-run "$root/run"
  mkdir -p "$root/tmp/acp-debs"
  cp "$work"/debs/*.deb "$root/tmp/acp-debs/"
  cp "$0" "$root/tmp/acp-package-test.sh"
  chroot "$root" /bin/bash /tmp/acp-package-test.sh --in-root "$port"

  say "what the scratch root's writes left on its root file system"
  # Everything dpkg, apt, man-db and the test itself keep is expected; anything else is a leftover of
  # the package or of acp. A whiteout (a character device in the upper layer) is a path of the
  # machine's that they deleted: only the purge's own (/var/log/acp, /var/lib/acp, /etc/acp, when
  # an acp built from source had made them before) may be one.
  upper=$work/layers/upper
  unexpected=$(cd "$upper" && find . -mindepth 1 ! -type d -printf '/%P %y\n' | {
    grep -vE '^/(var/lib/dpkg/|var/log/dpkg\.log |var/log/apt/|var/lib/apt/|var/cache/apt/|var/cache/man/|var/cache/debconf/|tmp/|var/tmp/|root/)' |
      grep -vxE '/(var/log/acp|var/lib/acp|etc/acp) c' || true
  })
  [ -z "$unexpected" ] || fail "left in the root file system after purge (path, find's type): $unexpected"
  echo "none"

  say "what this test's sessions left in the kernel (cgroups, pins)"
  # Only this test's own sessions: other tests may run on the machine meanwhile (test.sh checks
  # the whole machine after the stage, scripts/check-leftovers.sh).
  [ "$(sort -u "$root/tmp/acp-sessions" | wc -l)" -ge 2 ] ||
    fail "acp run named no session ($(cat "$root/tmp/acp-sessions" 2>/dev/null))"
  cg2=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/self/mounts)
  while read -r id; do
    for p in "$cg2/acp/$id" "/sys/fs/bpf/acp/$id"; do
      [ ! -e "$p" ] || fail "session $id left $p"
    done
  done < <(sort -u "$root/tmp/acp-sessions")
  echo "nothing of sessions $(sort -u "$root/tmp/acp-sessions" | tr '\n' ' ')"
  exit 0
fi

# ---- The test. ----
build=${1:?usage: $0 BUILD_DIR}
build=$(cd "$build" && pwd)
[ "$(id -u)" = 0 ] || skip "needs root (dpkg, a mount namespace, cgroup BPF)"
status=$(dpkg-query -W -f='${Status}' acp 2>/dev/null || true)
case $status in
"" | *not-installed*) ;;
*)
  skip "an acp package is installed on this machine ($status," \
    "$(dpkg-query -W -f='${Version}' acp)); this test installs and purges its own: remove that first"
  ;;
esac
for tool in unshare setpriv chroot dpkg-deb cpack python3 curl man readelf; do
  command -v "$tool" >/dev/null || skip "$tool is not installed (scripts/install-deps.sh)"
done
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || skip "no overlayfs in this kernel: no scratch root"

work=$(mktemp -d /tmp/acp-vmt-pkg.XXXXXX)
origin_pid=""
cleanup() {
  [ -n "$origin_pid" ] && kill "$origin_pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/layers" "$work/root" "$work/debs" "$work/www"

say "scripts/package.sh --tree=$build --no-build"
lint=()
command -v lintian >/dev/null && lint=(--lintian)
"$src/scripts/package.sh" --tree="$build" --no-build --out="$work/debs" "${lint[@]}"
ls -l "$work"/debs/*.deb

# The origin: listening on loopback, so a refused connect() can only be the wall's doing.
echo hello-from-the-origin >"$work/www/index.html"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# --pdeathsig: it goes with this script even when a SIGKILL leaves no trap to run.
setpriv --pdeathsig KILL -- python3 -m http.server --bind 127.0.0.1 "$port" --directory "$work/www" \
  >/dev/null 2>&1 &
origin_pid=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done

unshare --mount --propagation private -- /bin/bash "$0" --in-namespace "$work" "$port"

echo "package test: passed"
