#!/usr/bin/env bash
# Builds the .deb with cargo-deb, installs it on this machine with dpkg, checks
# what it put where (owner, mode, paths, the /etc/osquery/extensions.load
# line), runs the installed extension against the Thrift peer
# (tests/peer/fake_core.py via the ignored `installed_package` test), then
# removes and purges it and checks that the line and the files are gone.
# Before that, the same .deb is installed and purged in the Debian 11 root
# of scripts/bullseye-root.sh (on an overlay, the root left unchanged).
#
# Needs root. Refuses to run if an osquery-dbus package is already on the
# machine. Whatever happens, a trap purges the test package and puts
# /etc/osquery/extensions.load (and /etc/osquery) back as they were.
#
# The package carries the shipped binary: scripts/build-shipped.sh builds it
# (glibc 2.17 baseline, target/x86_64-unknown-linux-gnu/release/; a no-op
# when it is current) and `cargo deb --no-build --target
# x86_64-unknown-linux-gnu` packages it (cargo-deb reads the asset path
# `target/release/` as `target/<triple>/release/`). The installed dbus.ext
# is checked again for glibc symbol versions newer than 2.17, and the
# package's libc6 dependency for the same baseline.
#
# Env: CARGO_DEB_VERSION pins the cargo-deb installed when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=${CARGO_DEB_VERSION:-3.8.0}
TRIPLE=x86_64-unknown-linux-gnu
PKG=osquery-dbus
LIBDIR=/usr/lib/osquery-dbus
EXT=$LIBDIR/dbus.ext
ETC=/etc/osquery
LOAD=$ETC/extensions.load
# What the package must install (regular files, owner root:root, mode).
FILES=(
  "$EXT 755"
  "$LIBDIR/extensions-load.sh 755"
  "/usr/share/osquery-dbus/packs/dbus-persistence.conf 644"
  "/usr/share/osquery-dbus/packs/fleet/dbus-persistence.yml 644"
  "/usr/share/doc/osquery-dbus/README.md 644"
  "/usr/share/doc/osquery-dbus/osquery.conf.example 644"
  "/usr/share/doc/osquery-dbus/deploy.md 644"
  "/usr/share/doc/osquery-dbus/tables.md 644"
  "/usr/share/doc/osquery-dbus/copyright 644"
)
DIRS=("$LIBDIR" /usr/share/osquery-dbus /usr/share/doc/osquery-dbus)
# Installed file -> the repository file it must equal.
SOURCES=(
  "$LIBDIR/extensions-load.sh packaging/extensions-load.sh"
  "/usr/share/osquery-dbus/packs/dbus-persistence.conf packs/dbus-persistence.conf"
  "/usr/share/osquery-dbus/packs/fleet/dbus-persistence.yml packs/fleet/dbus-persistence.yml"
  "/usr/share/doc/osquery-dbus/osquery.conf.example osquery.conf.example"
)

start=$SECONDS
step() { printf '== package-check: %s (%ds)\n' "$*" "$((SECONDS - start))"; }
fail() {
  echo "package-check: FAIL: $*" >&2
  exit 1
}
pkg_status() { dpkg-query -W -f='${db:Status-Status}' "$PKG" 2>/dev/null || true; }

[ "$(id -u)" = 0 ] || fail "needs root (it runs dpkg -i)"
case "$(pkg_status)" in
"" | not-installed) ;;
*) fail "$PKG is already on this machine ($(pkg_status)); not touching it" ;;
esac

# --- state to restore ------------------------------------------------------
backup=$(mktemp -d)
etc_existed=no
[ -d "$ETC" ] && etc_existed=yes
load_existed=no
if [ -e "$LOAD" ] || [ -L "$LOAD" ]; then
  load_existed=yes
  cp -a "$LOAD" "$backup/extensions.load"
fi
ours=no # set once dpkg -i ran: only then may the trap purge

cleanup() {
  local rc=$?
  set +e
  if [ "$ours" = yes ]; then
    case "$(pkg_status)" in
    "" | not-installed) ;;
    *) dpkg --purge "$PKG" >/dev/null 2>&1 || echo "package-check: could not purge $PKG" >&2 ;;
    esac
  fi
  rm -f "$LOAD"
  if [ "$load_existed" = yes ]; then
    mkdir -p "$ETC"
    cp -a "$backup/extensions.load" "$LOAD"
  fi
  if [ "$etc_existed" = no ] && [ -d "$ETC" ]; then
    rmdir "$ETC" 2>/dev/null || echo "package-check: left non-empty $ETC" >&2
  fi
  rm -rf "$backup"
  if [ "$rc" = 0 ]; then
    printf '== package-check: passed in %ds\n' "$((SECONDS - start))"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# --- checks ------------------------------------------------------------------
# expect_load CONTENT: the autoload file holds exactly CONTENT (printf format).
expect_load() {
  local want
  want=$(mktemp)
  # shellcheck disable=SC2059 # the argument is the format on purpose
  printf "$1" >"$want"
  cmp -s "$want" "$LOAD" || {
    echo "--- want"
    cat -A "$want"
    echo "--- $LOAD"
    cat -A "$LOAD" 2>&1
    rm -f "$want"
    fail "$LOAD: unexpected content"
  }
  rm -f "$want"
  [ "$(stat -c '%U:%G' "$LOAD")" = root:root ] || fail "$LOAD not owned by root"
}

check_installed() {
  [ "$(pkg_status)" = installed ] || fail "$PKG not installed ($(pkg_status))"
  local entry path mode got
  for entry in "${FILES[@]}"; do
    path=${entry% *}
    mode=${entry##* }
    if [ ! -f "$path" ] || [ -L "$path" ]; then fail "$path: not a regular file"; fi
    got=$(stat -c '%U:%G %a' "$path")
    [ "$got" = "root:root $mode" ] || fail "$path: $got, want root:root $mode"
  done
  # osquery's autoload rules for the binary's directory: root-owned, not
  # group/other-writable, not sticky.
  for path in "${DIRS[@]}"; do
    got=$(stat -c '%U:%G %a' "$path")
    [ "$got" = "root:root 755" ] || fail "$path: $got, want root:root 755"
  done
  # Exactly these files, nothing more.
  diff <(printf '%s\n' "${FILES[@]}" | sed 's/ [0-9]*$//' | sort) \
    <(dpkg -L "$PKG" | while read -r p; do if [ -f "$p" ]; then echo "$p"; fi; done | sort) ||
    fail "dpkg -L $PKG lists other files than expected"
  for entry in "${SOURCES[@]}"; do
    cmp -s "${entry% *}" "${entry#* }" || fail "${entry% *} differs from ${entry#* }"
  done
  scripts/build-shipped.sh --check "$EXT"
  got=$("$EXT" --version)
  [ "$got" = "osquery-dbus $crate_version" ] || fail "$EXT --version: '$got'"
}

check_gone() {
  local entry path
  case "$(pkg_status)" in
  "" | not-installed) ;;
  *) fail "$PKG still known to dpkg after purge ($(pkg_status))" ;;
  esac
  for entry in "${FILES[@]}"; do
    path=${entry% *}
    [ ! -e "$path" ] || fail "$path left after purge"
  done
  for path in "${DIRS[@]}"; do
    [ ! -e "$path" ] || fail "$path left after purge"
  done
}

# --- build -------------------------------------------------------------------
step "cargo-deb"
if ! cargo deb --version 2>/dev/null | grep -qxF "cargo-deb $CARGO_DEB_VERSION"; then
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi
cargo deb --version

step "the shipped binary (scripts/build-shipped.sh)"
scripts/build-shipped.sh

step "build the .deb from it"
crate_version=$(cargo pkgid)
crate_version=${crate_version##*[#@]}
deb=$(cargo deb --locked --no-build --target "$TRIPLE" --fast --output target/debian/package-check.deb | tail -n 1)
[ -f "$deb" ] || fail "cargo deb printed no package path ('$deb')"
dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Depends\): /  \1: /p'
# The dependency is set in Cargo.toml, not derived by dpkg-shlibdeps (which
# reads the build machine's glibc): it must name the baseline the binary
# was just checked against, or dpkg refuses the package on older releases.
depends=$(dpkg-deb --field "$deb" Depends)
[ "$depends" = "libc6 (>= 2.17)" ] || fail "Depends: '$depends', want 'libc6 (>= 2.17)'"

# --- the same .deb on Debian 11 ----------------------------------------------
# dpkg of the Debian 11 root (scripts/bullseye-root.sh) installs the package,
# so its Depends holds there, its postinst runs under that release's sh, the
# installed dbus.ext starts on glibc 2.31, and purge takes the line out
# again. The root is an overlayfs lower layer in a private mount namespace:
# every change lands in a temp upper layer, removed afterwards, and the
# cached root stays as it was. Required under CI=true, skipped otherwise
# when the root is missing.
bullseye_root=${OSQUERY_DBUS_BULLSEYE_ROOT:-target/bullseye-root}
if [ -f "$bullseye_root/.osquery-dbus-root-complete" ]; then
  step "install on Debian 11 ($bullseye_root, an overlay)"
  layer=$(mktemp -d)
  rc=0
  unshare -m --fork sh -euc '
    root=$1 layer=$2 deb=$3 ext=$4 version=$5
    mkdir "$layer/upper" "$layer/work" "$layer/merged"
    mount -t overlay overlay -o "lowerdir=$root,upperdir=$layer/upper,workdir=$layer/work" "$layer/merged"
    mount -t proc proc "$layer/merged/proc"
    cp "$deb" "$layer/merged/tmp/osquery-dbus.deb"
    inside() { chroot "$layer/merged" "$@"; }
    inside dpkg -i /tmp/osquery-dbus.deb
    got=$(inside "$ext" --version)
    [ "$got" = "osquery-dbus $version" ] || { echo "$ext --version: $got" >&2; exit 1; }
    [ "$(inside cat /etc/osquery/extensions.load)" = "$ext" ] || { echo "extensions.load not as expected" >&2; exit 1; }
    inside dpkg --purge osquery-dbus
    [ ! -e "$layer/merged/etc/osquery/extensions.load" ] || { echo "extensions.load left after purge" >&2; exit 1; }
  ' sh "$(realpath "$bullseye_root")" "$layer" "$(realpath "$deb")" "$EXT" "$crate_version" || rc=$?
  rm -rf "$layer"
  [ "$rc" = 0 ] || fail "the .deb on Debian 11 (above)"
elif [ "${CI:-}" = true ]; then
  fail "no Debian 11 root at $bullseye_root (scripts/bullseye-root.sh builds it)"
else
  step "no Debian 11 root at $bullseye_root: not installing the .deb there (scripts/bullseye-root.sh)"
fi

# --- round 1: no autoload file ------------------------------------------------
step "install with no autoload file"
rm -f "$LOAD"
ours=yes
dpkg -i "$deb"
check_installed
expect_load "$EXT\n"
[ "$(stat -c '%a' "$LOAD")" = 644 ] || fail "$LOAD mode $(stat -c '%a' "$LOAD")"
if [ "$etc_existed" = no ]; then
  [ "$(stat -c '%U:%G %a' "$ETC")" = "root:root 755" ] || fail "$ETC: $(stat -c '%U:%G %a' "$ETC")"
fi
step "reinstall: the line stays single"
dpkg -i "$deb"
expect_load "$EXT\n"
step "purge: the file held only our line and goes"
dpkg --purge "$PKG"
check_gone
[ ! -e "$LOAD" ] || fail "$LOAD left after purge"

# --- round 2: an autoload file with other lines, no trailing newline ----------
seed='/opt/other/one.ext\n# keep this comment\n\n/opt/other/two.ext'
step "install next to other extensions"
mkdir -p "$ETC"
# shellcheck disable=SC2059
printf "$seed" >"$LOAD"
dpkg -i "$deb"
check_installed
expect_load "$seed\n$EXT\n"

step "installed dbus.ext against the Thrift peer"
OSQUERY_DBUS_EXT_BIN=$EXT cargo test --locked --test osquery_peer -- \
  --ignored --exact installed_package

step "remove: files go, the line stays until purge"
dpkg --remove "$PKG"
[ ! -e "$EXT" ] || fail "$EXT left after remove"
expect_load "$seed\n$EXT\n"
step "purge: only our line goes"
dpkg --purge "$PKG"
check_gone
expect_load "$seed\n"
