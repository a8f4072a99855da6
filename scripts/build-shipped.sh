#!/usr/bin/env bash
# Builds the binary the packages ship: a release build linked against a
# glibc 2.17 baseline (the oldest glibc osquery supports: RHEL/CentOS 7), so
# it starts on every distribution osquery runs on.
#
#   cargo zigbuild --release --locked --target x86_64-unknown-linux-gnu.2.17
#
# cargo-zigbuild links with `zig cc`, which carries the symbol lists of every
# glibc release and so links against 2.17's without a second toolchain or
# sysroot; the bundled SQLite is compiled by zig's clang for the same target.
# The tools are pinned and installed on first use into one venv,
# target/zig-venv (a second run reuses it), both from PyPI: `ziglang` (zig
# itself) and `cargo-zigbuild`, whose wheel holds the same binary as the
# crate (its maintainers build it): a download, where `cargo install
# cargo-zigbuild` compiles it and its dependencies from source. cargo-zigbuild
# finds zig as `python3 -m ziglang` (CARGO_ZIGBUILD_PYTHON_PATH names the
# venv's python3) before any `zig` on PATH.
#
# Output: target/x86_64-unknown-linux-gnu/release/osquery-dbus. The script
# then reads its dynamic symbol table (`objdump -T`), fails listing every
# symbol that needs a GLIBC_ version newer than 2.17, and prints the highest
# version it needs. `scripts/build-shipped.sh --check FILE` does only that
# check, on FILE (scripts/package-check.sh runs it on the installed dbus.ext).
#
# Env: CARGO_ZIGBUILD_VERSION and ZIGLANG_VERSION override the pins.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_ZIGBUILD_VERSION=${CARGO_ZIGBUILD_VERSION:-0.24.1}
ZIGLANG_VERSION=${ZIGLANG_VERSION:-0.14.1}
TRIPLE=x86_64-unknown-linux-gnu
GLIBC_BASELINE=2.17
VENV=$PWD/target/zig-venv
BIN=target/$TRIPLE/release/osquery-dbus

start=$SECONDS
step() { printf '== build-shipped: %s (%ds)\n' "$*" "$((SECONDS - start))"; }
fail() {
  echo "build-shipped: FAIL: $*" >&2
  exit 1
}

# check_glibc FILE: fails listing every imported symbol of FILE whose
# GLIBC_ version is newer than the baseline; prints the highest one.
check_glibc() {
  local file=$1 symbols newer highest
  # Lines of `objdump -T` for imported versioned symbols look like
  #   0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.3.4) __snprintf_chk
  # (binutils before 2.35 prints the version without parentheses).
  symbols=$(objdump -T "$file" | sed -n 's/.*[ (]\(GLIBC_[0-9][0-9.]*\)[) ] *\(.*\)$/\1 \2/p' | sort -u)
  [ -n "$symbols" ] || fail "objdump -T found no GLIBC_ symbol versions in $file"
  newer=$(printf '%s\n' "$symbols" | while read -r version name; do
    # sort -V puts the baseline last only if the symbol's version is not newer.
    if [ "$(printf '%s\n%s\n' "${version#GLIBC_}" "$GLIBC_BASELINE" | sort -V | tail -n 1)" != "$GLIBC_BASELINE" ]; then
      echo "  $version $name"
    fi
  done)
  if [ -n "$newer" ]; then
    echo "$newer" >&2
    fail "$file needs glibc symbols newer than $GLIBC_BASELINE (above)"
  fi
  highest=$(printf '%s\n' "$symbols" | cut -d' ' -f1 | sort -u -V | tail -n 1)
  printf '%s: %s bytes; highest glibc symbol version %s (baseline %s)\n' \
    "$file" "$(stat -c %s "$file")" "$highest" "$GLIBC_BASELINE"
}

if [ "${1:-}" = --check ]; then
  [ $# = 2 ] || fail "usage: $0 [--check FILE]"
  check_glibc "$2"
  exit 0
fi
[ $# = 0 ] || fail "usage: $0 [--check FILE]"

step "cargo-zigbuild $CARGO_ZIGBUILD_VERSION and zig $ZIGLANG_VERSION (PyPI, in $VENV)"
if [ "$("$VENV/bin/cargo-zigbuild" --version 2>/dev/null)" != "cargo-zigbuild $CARGO_ZIGBUILD_VERSION" ] ||
  [ "$("$VENV/bin/python3" -m ziglang version 2>/dev/null)" != "$ZIGLANG_VERSION" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION" "ziglang==$ZIGLANG_VERSION"
fi
export CARGO_ZIGBUILD_PYTHON_PATH=$VENV/bin/python3
export PATH=$VENV/bin:$PATH
echo "$("$VENV/bin/cargo-zigbuild" --version), zig $("$VENV/bin/python3" -m ziglang version)"

step "cargo zigbuild --release --target $TRIPLE.$GLIBC_BASELINE"
# Only the shipped binary: other [[bin]] targets are test tools.
cargo zigbuild --release --locked --target "$TRIPLE.$GLIBC_BASELINE" --bin osquery-dbus
[ -x "$BIN" ] || fail "$BIN was not built"

step "glibc symbol versions"
check_glibc "$BIN"
step "done"
