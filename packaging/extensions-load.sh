#!/bin/sh
# Adds or removes one path in osquery's extensions autoload file, touching no
# other line. One source for every package format: the .deb and .rpm
# maintainer scripts carry the functions between the BEGIN/END markers
# verbatim (scripts/gen-maintainer-scripts.sh copies them in, because a
# postrm runs after the package's own files are gone), and the package also
# installs this file as /usr/lib/osquery-dbus/extensions-load.sh for admins.
#
#   extensions-load.sh add    FILE LINE   append LINE unless FILE already has it
#   extensions-load.sh remove FILE LINE   drop every line that is exactly LINE
#
# Plain POSIX sh (dash, busybox, bash). Lines compare exactly, byte for byte;
# a commented-out copy ("#/usr/lib/...") is another line and stays as it is.

# BEGIN extensions-load
# extensions_load_add FILE LINE: appends LINE to FILE unless a line of FILE
# already is exactly LINE. Creates FILE (0644) and its directory if missing.
# A FILE whose last line has no newline gets one first, so LINE never joins
# the admin's last line.
extensions_load_add() {
    el_file=$1
    el_line=$2
    if [ -f "$el_file" ] && grep -qxF -- "$el_line" "$el_file"; then
        return 0
    fi
    el_dir=$(dirname -- "$el_file")
    if [ ! -d "$el_dir" ]; then
        mkdir -p -- "$el_dir" || return 1
        chmod 0755 "$el_dir" || return 1
    fi
    if [ ! -e "$el_file" ]; then
        (umask 022 && : >"$el_file") || return 1
    fi
    # `tail -c 1` of a file ending in a newline prints "\n", which $(...)
    # strips to "": only a non-empty, unterminated file needs a newline.
    if [ -s "$el_file" ] && [ -n "$(tail -c 1 -- "$el_file")" ]; then
        printf '\n' >>"$el_file" || return 1
    fi
    printf '%s\n' "$el_line" >>"$el_file"
}

# extensions_load_remove FILE LINE: removes every line that is exactly LINE
# and leaves the others as they were (a last line without a newline gains
# one). A missing FILE, or one without LINE, is left alone. A FILE left with
# nothing in it is deleted: it held only what extensions_load_add put there.
# Rewrites in place (same inode, owner, mode; a symlink stays a symlink).
extensions_load_remove() {
    el_file=$1
    el_line=$2
    if [ ! -f "$el_file" ] || ! grep -qxF -- "$el_line" "$el_file"; then
        return 0
    fi
    el_tmp=$(mktemp) || return 1
    # grep exits 1 when no line is left: that is a success here (and must
    # not trip the `set -e` of a maintainer script).
    el_rc=0
    grep -vxF -- "$el_line" "$el_file" >"$el_tmp" || el_rc=$?
    if [ "$el_rc" -gt 1 ]; then
        rm -f -- "$el_tmp"
        return 1
    fi
    if [ -s "$el_tmp" ]; then
        cat -- "$el_tmp" >"$el_file" || { rm -f -- "$el_tmp"; return 1; }
    else
        rm -f -- "$el_file"
    fi
    rm -f -- "$el_tmp"
}
# END extensions-load

case ${1-} in
add | remove)
    if [ $# -ne 3 ] || [ -z "$2" ] || [ -z "$3" ]; then
        echo "usage: $0 add|remove FILE LINE" >&2
        exit 2
    fi
    "extensions_load_$1" "$2" "$3"
    ;;
*)
    echo "usage: $0 add|remove FILE LINE" >&2
    exit 2
    ;;
esac
