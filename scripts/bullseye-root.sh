#!/usr/bin/env bash
# Builds a Debian 11 (bullseye) root from Debian's packages for
# tests/bullseye.rs: glibc 2.31 and dbus-daemon 1.12, the oldest combination
# the tests run the shipped binary against.
#
#   debootstrap --variant=minbase --include=dbus bullseye target/bullseye-root
#
# bullseye's `dbus` package carries both dbus-daemon and dbus-send (later
# releases split dbus-send into dbus-bin). Cached: a root whose completion
# marker exists is reused as it is; an unfinished one (no marker) is removed
# and built again. debootstrap runs in a private mount namespace, so the
# /proc and /sys it mounts inside the root vanish with it even when it fails
# and never show in the host's mount table. Needs root; installs debootstrap
# if missing.
#
# Env: BULLSEYE_ROOT (default target/bullseye-root), DEBIAN_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=${BULLSEYE_ROOT:-target/bullseye-root}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
MARKER=$ROOT/.osquery-dbus-root-complete

start=$SECONDS
fail() {
  echo "bullseye-root: FAIL: $*" >&2
  exit 1
}

if [ -f "$MARKER" ]; then
  echo "bullseye-root: $ROOT is complete ($(cat "$MARKER")), reused"
  exit 0
fi
[ "$(id -u)" = 0 ] || fail "needs root (debootstrap)"
if ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
fi

if [ -e "$ROOT" ]; then
  # Nothing may be mounted below a root we are about to delete.
  if findmnt -rn -o TARGET | grep -q "^$(realpath "$ROOT")\(/\|$\)"; then
    fail "something is mounted under $ROOT; not removing it"
  fi
  echo "bullseye-root: removing the unfinished $ROOT"
  rm -rf "$ROOT"
fi
mkdir -p "$(dirname "$ROOT")"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! unshare -m --propagation private \
  debootstrap --variant=minbase --include=dbus bullseye "$ROOT" "$MIRROR" >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  [ -f "$ROOT/debootstrap/debootstrap.log" ] && tail -n 30 "$ROOT/debootstrap/debootstrap.log" >&2
  fail "debootstrap bullseye failed"
fi

[ -x "$ROOT/usr/bin/dbus-daemon" ] || fail "$ROOT has no dbus-daemon"
[ -x "$ROOT/usr/bin/dbus-send" ] || fail "$ROOT has no dbus-send"
libc=$(cd "$ROOT" && ls lib/x86_64-linux-gnu/libc-*.so 2>/dev/null || true)
dbus=$(chroot "$ROOT" dpkg-query -W -f='${Version}' dbus)
echo "debootstrap bullseye in $((SECONDS - start))s: ${libc:-no libc-*.so}, dbus $dbus" >"$MARKER"
echo "bullseye-root: $ROOT built: $(cat "$MARKER")"
