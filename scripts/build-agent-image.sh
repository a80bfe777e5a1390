#!/usr/bin/env bash
# Builds a small agent image for `acp contain` without a registry: a root filesystem assembled
# from this host's binaries (busybox-static for a shell and the usual tools, curl with the
# libraries ldd names, and any --add'ed programs with theirs), imported with `docker import`.
# Deterministic: sorted names, fixed owner and mtime, so the same host gives the same layer.
#
#   scripts/build-agent-image.sh [--tag=acp-agent:latest] [--add=/path/to/program]...
#                                [--add-tree=/usr/lib/python3.11]... [--python]
#
# An --add'ed program keeps its host path in the image, unless acp contain mounts over that path
# (/tmp, /home, /workspace, /proc, /sys, /dev): then it is /usr/local/bin/<name> (the script says so).
# --python adds python3 and its standard library (about 40 MB more). Uses DOCKER_HOST as the
# docker CLI does. Needs busybox-static (apt-get install busybox-static).
set -euo pipefail

tag=acp-agent:latest
adds=(/usr/bin/curl)
trees=()
for arg in "$@"; do
  case "$arg" in
    --tag=*) tag=${arg#--tag=} ;;
    --add=*) adds+=("${arg#--add=}") ;;
    --add-tree=*) trees+=("${arg#--add-tree=}") ;;
    --python)
      py=$(readlink -f "$(command -v python3)")
      adds+=("$py")
      ver=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
      trees+=("/usr/lib/python$ver")
      ;;
    -h | --help)
      sed -n '2,14p' "$0"
      exit 0
      ;;
    *)
      echo "build-agent-image: unknown argument $arg (see --help)" >&2
      exit 2
      ;;
  esac
done

docker=${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
busybox=/bin/busybox
if ! "$busybox" --list >/dev/null 2>&1 || ldd "$busybox" >/dev/null 2>&1; then
  echo "build-agent-image: needs a static /bin/busybox (apt-get install busybox-static)" >&2
  exit 1
fi

root=$(mktemp -d /tmp/acp-agent-image.XXXXXX)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,home,workspace,proc,sys,dev,root}
# /tmp and /home (the agent user's HOME) are writable by anyone: docker copies their mode onto
# the --tmpfs mounts acp contain puts there.
chmod 1777 "$root/tmp" "$root/home"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done

# Where an added program lands in the image: its host path, unless `acp contain` mounts
# something over that path (a tmpfs on /tmp and /home: include/acp/backend/docker_wall.hpp; the
# workspace on /workspace; the kernel's /proc, /sys and /dev), which would hide it: then /usr/local/bin/<name>, on the
# image's PATH. A clone under /tmp (CI's, say) or a user's ~/bin/tool must work the same.
image_path() {
  case "$1" in
    /tmp/* | /home/* | /workspace/* | /proc/* | /sys/* | /dev/*)
      echo "/usr/local/bin/$(basename "$1")" ;;
    *) echo "$1" ;;
  esac
}

# A program and every library it loads, at the same paths as on the host.
copy_with_libs() {
  local f=$1 dest
  dest=$(image_path "$f")
  if [ "$dest" != "$f" ]; then
    if [ -e "$root$dest" ]; then
      echo "build-agent-image: $f and another added program both land at $dest: rename one" >&2
      exit 2
    fi
    echo "build-agent-image: $f is added as $dest ($(dirname "$f") is hidden by a mount in acp contain)" >&2
  fi
  mkdir -p "$root$(dirname "$dest")"
  cp -L "$f" "$root$dest"
  ldd "$f" 2>/dev/null | awk '/=> \//{print $3} /^\t\/.*\(0x/{print $1}' | while read -r lib; do
    [ -e "$root$lib" ] && continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
for f in "${adds[@]}"; do copy_with_libs "$f"; done
for t in "${trees[@]}"; do
  mkdir -p "$root$(dirname "$t")"
  cp -a "$t" "$root$t"
  find "$root$t" -name '__pycache__' -prune -exec rm -rf {} +
  # Extension modules load libraries of their own.
  find "$t" -name '*.so' | while read -r so; do
    ldd "$so" 2>/dev/null | awk '/=> \//{print $3}' | while read -r lib; do
      [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
    done
  done
done
[ -e "$root/usr/bin/python3" ] || { [ -n "${py:-}" ] && ln -s "$py" "$root/usr/bin/python3"; } || true

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
agent:x:1000:1000:agent:/home:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
agent:x:1000:
nogroup:x:65534:
EOF
echo "hosts: files dns" >"$root/etc/nsswitch.conf"
# curl's TLS needs the CA bundle when the agent talks https through the proxy's CONNECT.
if [ -e /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$root/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf - . |
  "$docker" import \
    -c 'USER agent' -c 'WORKDIR /workspace' -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin' \
    -c 'CMD ["/bin/sh"]' -m "acp agent image (scripts/build-agent-image.sh)" - "$tag" >/dev/null
echo "$tag"
