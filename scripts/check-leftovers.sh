#!/usr/bin/env bash
# Fails when a test left something behind: a session cgroup, a bpffs pin, an iptables chain,
# a network namespace made by the tests, a session record or a process named like ours, the
# docker backend's bridges, containers and networks and the vmtests' private dockerd, and
# files under /etc/acp that acp creates by itself (the web page's token) or `acp init` writes.
#   check-leftovers.sh --snapshot >FILE   what is there now (test.sh does this at its start)
#   ACP_LEFTOVER_BASELINE=FILE check-leftovers.sh
#       anything listed in FILE was there before the tests: it is shown, not counted (an
#       operator's own /etc/acp files, or what an earlier run that was killed left); without
#       a baseline every find counts and /etc/acp is not looked at.
set -u
cg2=$(awk '$3=="cgroup2"{print $2; exit}' /proc/self/mounts)

# Prints one line per thing found; "$1" = 1: the /etc/acp files too.
scan() {
  if [ "$1" = 1 ]; then
    for f in /etc/acp /etc/acp/web.token /etc/acp/config.yml /etc/acp/policy.yml \
      /etc/acp/webhook.secret; do
      [ -e "$f" ] && echo "leftover: $f"
    done
  fi
  if [ -n "$cg2" ] && [ -d "$cg2/acp" ]; then
    for d in "$cg2"/acp/*/; do [ -d "$d" ] && echo "leftover cgroup: $d"; done
  fi
  # Scratch cgroups of the vmtests and the bench sit at the cgroup2 root.
  if [ -n "$cg2" ]; then
    for d in "$cg2"/acp-test-* "$cg2"/acp-vmt-* "$cg2"/acp-probe-* "$cg2"/acp-bench-*; do
      [ -d "$d" ] && echo "leftover test cgroup: $d"
    done
  fi
  if [ -d /sys/fs/bpf/acp ]; then
    for d in /sys/fs/bpf/acp/*; do [ -e "$d" ] && echo "leftover bpffs pin: $d"; done
  fi
  if command -v iptables >/dev/null; then
    for t in iptables ip6tables; do
      # Session chains (ACP-<id>), the vmtests' (ACPT-*) and the probe's (ACPPROBE-*), and any
      # OUTPUT jump to one of them.
      for c in $($t -w -S 2>/dev/null | awk '$1=="-N" && $2 ~ /^ACP/ {print $2}'); do
        echo "leftover $t chain: $c"
      done
      # The transparent door: ACP-<id> in nat, jumped to from OUTPUT (iptables backend), and
      # ACPD-<id>, jumped to from PREROUTING (docker backend).
      for c in $($t -w -t nat -S 2>/dev/null | awk '$1=="-N" && $2 ~ /^ACP/ {print $2}'); do
        echo "leftover $t nat chain: $c"
      done
      while read -r rule; do
        [ -n "$rule" ] && echo "leftover $t nat rule: $rule"
      done < <(for ch in OUTPUT PREROUTING; do $t -w -t nat -S "$ch" 2>/dev/null; done |
        awk '$1=="-A" && $NF ~ /^ACP/')
      # OUTPUT jumps (iptables backend), INPUT and FORWARD jumps (docker backend: ACPD-<id>).
      while read -r rule; do
        [ -n "$rule" ] && echo "leftover $t rule: $rule"
      done < <(for ch in OUTPUT INPUT FORWARD; do $t -w -S "$ch" 2>/dev/null; done |
        awk '$1=="-A" && $NF ~ /^ACP/')
    done
  fi
  for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^acpt' || true); do
    echo "leftover netns: $n"
  done
  for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^acpt' || true); do
    echo "leftover veth: $l"
  done
  # The docker backend: bridges of sessions (acp<id>), the vmtests' private dockerd (its dir is
  # /tmp/acp-vmt-docker.*, named on the command lines of dockerd, containerd and the shims), the
  # mounts it made, and labelled containers/networks on the machine's own dockerd if one runs.
  for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^acp[0-9a-f]{12}$' || true); do
    echo "leftover docker session bridge: $l"
  done
  for p in $(pgrep -f '/tmp/acp-vmt-docker\.' 2>/dev/null || true); do
    echo "leftover test dockerd process: $p ($(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null | cut -c1-120))"
  done
  if grep -q ' /tmp/acp-vmt-docker\.' /proc/self/mounts 2>/dev/null; then
    echo "leftover test dockerd mounts: $(grep -c ' /tmp/acp-vmt-docker\.' /proc/self/mounts)"
  fi
  if command -v docker >/dev/null && timeout 5 docker version >/dev/null 2>&1; then
    for c in $(timeout 5 docker ps -aq --filter label=acp.session 2>/dev/null); do
      echo "leftover docker container: $c"
    done
    for n in $(timeout 5 docker network ls -q --filter label=acp.session 2>/dev/null); do
      echo "leftover docker network: $n"
    done
  fi
  if [ -d /run/acp/sessions ] && [ -n "$(ls -A /run/acp/sessions 2>/dev/null)" ]; then
    echo "leftover session records: $(ls /run/acp/sessions)"
  fi
  # ACP's own-endpoint registry (proxy/server/own_endpoints.cpp): <pid>-<inode> per listener.
  # Entries of dead pids (a SIGKILLed acp) are ignored by acp; a live one is a listener left on.
  for e in /run/acp/endpoints/*; do
    [ -e "$e" ] || continue
    pid=${e##*/}
    pid=${pid%%-*}
    [ -d "/proc/$pid" ] && echo "leftover own-endpoint entry of a live process: $e"
  done
  # Scratch directories of the tests and the demo, and the origin servers they start.
  for d in /tmp/acp-preload-test.* /tmp/acp-run-test.* /tmp/acp-demo.* /tmp/acp-vmt-* /tmp/acp-consent-* /tmp/acp-proxy-test-*; do
    [ -e "$d" ] && echo "leftover scratch dir: $d"
  done
  for p in $(pgrep -f 'http.server .*/tmp/acp-|chromium.*--user-data-dir=/tmp/acp-' 2>/dev/null || true); do
    echo "leftover test origin process: $p ($(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null))"
  done
  # The parents themselves: the last session out removes them.
  if [ -n "$cg2" ] && [ -d "$cg2/acp" ]; then echo "leftover cgroup: $cg2/acp"; fi
  if [ -d /sys/fs/bpf/acp ]; then echo "leftover bpffs pin dir: /sys/fs/bpf/acp"; fi
}

if [ "${1:-}" = "--snapshot" ]; then
  scan 1
  exit 0
fi
baseline=${ACP_LEFTOVER_BASELINE:-}
[ -n "$baseline" ] && [ ! -r "$baseline" ] && {
  echo "check-leftovers.sh: cannot read the baseline $baseline" >&2
  exit 2
}
left=0
while IFS= read -r line; do
  [ -n "$line" ] || continue
  if [ -n "$baseline" ] && grep -qxF -- "$line" "$baseline"; then
    echo "there before the tests (not counted): $line"
  else
    echo "$line"
    left=1
  fi
done < <(scan "$([ -n "$baseline" ] && echo 1 || echo 0)")
if [ "$left" -eq 0 ]; then echo "no leftovers"; fi
exit $left
