#!/usr/bin/env bash
# The README's first command: install what ACP needs, build it, and run a confined demo agent.
#
# What you will see:
#   1. the agent connects straight to a web server on 127.0.0.1: the wall leads the connect() to
#      ACP's proxy (the default door, docs/transparent.md), which refuses a local destination
#      whatever the policy says and audits it: not a byte reaches the server (with
#      --door=proxy the kernel refuses the connect() itself with EPERM);
#   2. the agent asks for the same page through ACP's proxy: the policy says "ask", the request
#      waits, an operator (this script, using `acp pending` and `acp approve`) says yes, and the
#      page arrives;
#   3. while the agent still runs, `acp status` shows the BPF policy in force;
#   4. the agent exits, ACP tears the wall down, and the audit log's hash chain is verified.
#
# It installs only what it uses (install-deps.sh --demo: the build dependencies of acp, python3,
# curl) and builds only acp, at -O1 without debug info, in its own tree (acp_configure_demo in
# scripts/lib/build-trees.sh): the first run is about seeing the wall, not benchmarking it.
#
# Usage: sudo ./scripts/demo.sh      (BUILD_DIR=build-demo by default; SKIP_INSTALL=1 skips apt)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-demo}

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run as root (sudo $0): ACP loads BPF programs and creates cgroups" >&2
  exit 1
fi
if [ "${SKIP_INSTALL:-0}" != 1 ]; then ./scripts/install-deps.sh --demo; fi
# shellcheck source=scripts/lib/build-trees.sh
. scripts/lib/build-trees.sh
acp_configure_demo "$BUILD_DIR"
cmake --build "$BUILD_DIR" -j"$(nproc)" --target acp
ACP=$(realpath "$BUILD_DIR/src/acp")

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

work=$(mktemp -d /tmp/acp-demo.XXXXXX)
chmod 755 "$work"
origin_pid=""
operator_pid=""
cleanup() {
  [ -n "$operator_pid" ] && kill "$operator_pid" 2>/dev/null || true
  [ -n "$origin_pid" ] && kill "$origin_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A web server on loopback, standing in for any host the agent might want to reach.
mkdir -p "$work/www"
echo "hello from the origin server: the proxy let this through after a human said yes" \
  >"$work/www/index.html"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 "$port" --directory "$work/www" >/dev/null 2>&1 &
origin_pid=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done

# The demo policy: ask a human before the agent reaches this server; deny everything else.
# The host is named literally, which also lets the proxy connect to a loopback address.
cat >"$work/policy.yml" <<EOF
default: deny
rules:
  - match: { kind: http, host: "127.0.0.1", port: $port }
    action: ask
    timeout: 60
EOF
chmod 644 "$work/policy.yml"

# The agent: an ordinary shell script run as an ordinary user; it knows nothing about ACP
# except the proxy variables it was given.
cat >"$work/agent.sh" <<EOF
#!/bin/sh
echo "[agent] I am \$(id -un), session \$ACP_SESSION, proxy \$HTTP_PROXY"
echo "[agent] 1. connecting straight to http://127.0.0.1:$port/ (no proxy) ..."
python3 - <<'PY' || exit 1
import errno, socket, sys
try:
    s = socket.create_connection(("127.0.0.1", $port), timeout=5)
except OSError as e:
    print(f"[agent]    refused by the kernel: {errno.errorcode.get(e.errno, e.errno)} ({e.strerror})")
    sys.exit(0)
s.sendall(b"GET / HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n")
got = b""
try:
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
except OSError:
    pass
if b"hello from the origin" in got:
    print("[agent]    it worked: THE WALL IS DOWN")
    sys.exit(1)
print("[agent]    led to the consent proxy and refused (a local service): nothing from the server")
PY
echo "[agent] 2. asking for the same page through the consent proxy ..."
curl -sS --max-time 60 "http://127.0.0.1:$port/" || exit 2
# Stay alive until the operator has looked at acp status.
for i in \$(seq 100); do [ -e "$work/status-shown" ] && break; sleep 0.1; done
echo "[agent] done"
EOF
chmod 755 "$work/agent.sh"

# The operator: waits for the agent's request to show up, approves it once, then looks at the
# wall while the session is live.
operator() {
  for _ in $(seq 300); do
    ids=$("$ACP" pending --json 2>/dev/null | python3 -c \
      'import json,sys; print(" ".join(p["id"] for p in json.load(sys.stdin)))' 2>/dev/null || true)
    if [ -n "$ids" ]; then
      say "operator: acp pending"
      "$ACP" pending
      for id in $ids; do
        say "operator: acp approve $id"
        "$ACP" approve "$id"
      done
      sleep 0.5
      say "operator: acp status (while the agent runs)"
      "$ACP" status
      touch "$work/status-shown"
      return 0
    fi
    sleep 0.2
  done
  echo "operator: no request showed up" >&2
  touch "$work/status-shown"
}
operator &
operator_pid=$!

user_args=()
if [ -z "${SUDO_UID:-}" ] || [ "${SUDO_UID}" = 0 ]; then user_args=(--user=nobody); fi
audit="$work/audit.jsonl"
# The web page is on, with its token in the demo's own dir (not /etc/acp): acp run prints its
# address, and the request can be approved there too.
printf 'channels:\n  web:\n    enabled: true\n    listen: "127.0.0.1:8444"\n    token_file: "%s"\n' \
  "$work/web.token" >"$work/config.yml"
say "acp run ${user_args[*]} --policy=$work/policy.yml --config=$work/config.yml -- $work/agent.sh"
set +e
"$ACP" run "${user_args[@]}" --policy="$work/policy.yml" --config="$work/config.yml" \
  --audit-log="$audit" -- "$work/agent.sh"
rc=$?
set -e
wait "$operator_pid" 2>/dev/null || true
operator_pid=""

say "the audit log ($audit)"
cat "$audit"
say "acp audit verify"
"$ACP" audit verify "$audit"
say "acp status (after the session)"
"$ACP" status
if [ "$rc" -ne 0 ]; then
  echo "demo: the agent exited with status $rc" >&2
  exit "$rc"
fi
say "demo finished: direct connection refused, proxied request approved"
