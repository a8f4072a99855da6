//! Fixtures and accessors shared by this table's unit tests: a small
//! image with one of each hard case, and row readers by column name.
#![cfg(test)]
use crate::context::{Op, QueryContext};
use crate::row::Row;
use crate::settings::Settings;
use crate::spec::columns::dbus_service_files as c;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

/// Writes `bytes` at `rel` under `root`, making its directories.
pub(super) fn write_under(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

pub(super) fn text(row: &Row, col: impl crate::row::Key) -> Option<String> {
    row.text(col).map(str::to_string)
}

pub(super) fn int(row: &Row, col: impl crate::row::Key) -> Option<i64> {
    row.int(col)
}

pub(super) fn settings(root: &Path) -> Settings {
    Settings {
        root: root.to_path_buf(),
        proc: PathBuf::from("/proc"),
    }
}

pub(super) fn by_path(rows: &[Row]) -> BTreeMap<String, Row> {
    rows.iter()
        .map(|r| (text(r, c::PATH).unwrap(), r.clone()))
        .collect()
}

/// A small image: merged /usr, homes outside /home, a home that links
/// to `/`, one of each file type, a non-UTF-8 name.
pub(super) fn fixture() -> (tempfile::TempDir, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    // A host directory outside the root holding a service file: a home
    // linking to it by absolute path must not reach it.
    let outside = tempfile::tempdir().unwrap();
    let o = outside.path();
    std::fs::create_dir_all(o.join(".local/share/dbus-1/services")).unwrap();
    std::fs::write(o.join(".local/share/dbus-1/services/host.service"), b"").unwrap();
    symlink(o, r.join("mallory")).unwrap();
    let mk = |p: &str| std::fs::create_dir_all(r.join(p)).unwrap();
    let write = |p: &str, b: &[u8]| std::fs::write(r.join(p), b).unwrap();
    mk("etc/dbus-1/system.d");
    mk("usr/share/dbus-1/system-services");
    mk("usr/share/dbus-1/services");
    mk("usr/lib/dbus-1/system-services");
    mk("srv/alice/.local/share/dbus-1/services");
    mk("home");
    symlink("usr/lib", r.join("lib")).unwrap();
    // The home of `eve` is a symlink to `/`; it must mean the image's `/`.
    symlink("/", r.join("home/eve")).unwrap();
    write(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\n\
alice:x:1000:1000::/srv/alice:/bin/sh\n\
alice2:x:1001:1001::/srv/alice:/bin/sh\n\
eve:x:1002:1002::/home/eve:/bin/sh\n\
toor:x:0:0::/:/bin/sh\n\
mallory:x:1003:1003::/mallory:/bin/sh\n\
nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n",
    );
    write("etc/dbus-1/system.d/evil.conf", b"<busconfig/>");
    write("etc/dbus-1/system.d/README", b"x");
    write("etc/dbus-1/system.conf", b"<busconfig/>");
    write("etc/dbus-1/unrelated.conf", b"x");
    write("usr/share/dbus-1/session.conf", b"<busconfig/>");
    write(
        "usr/share/dbus-1/system-services/org.a.service",
        b"[D-BUS Service]\n",
    );
    write("usr/share/dbus-1/system-services/.hidden.service", b"");
    write("usr/lib/dbus-1/system-services/org.lib.service", b"");
    write(
        "srv/alice/.local/share/dbus-1/services/org.alice.service",
        b"",
    );
    // Reached as /home/eve/.local/... inside the image: the image's own `/`.
    mk(".local/share/dbus-1/services");
    write(".local/share/dbus-1/services/org.rootish.service", b"");
    let s = r.join("usr/share/dbus-1/services");
    std::fs::write(s.join("suid.service"), b"12345").unwrap();
    // chown clears setuid, so it comes first.
    std::os::unix::fs::chown(s.join("suid.service"), Some(4242), Some(4243)).unwrap();
    std::fs::set_permissions(s.join("suid.service"), PermissionsExt::from_mode(0o4755)).unwrap();
    symlink("/etc/shadow", s.join("link.service")).unwrap();
    std::fs::create_dir(s.join("subdir")).unwrap();
    std::fs::write(s.join("subdir/deep.service"), b"").unwrap();
    let fifo = s.join("pipe.service");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    std::os::unix::net::UnixListener::bind(s.join("sock")).unwrap();
    std::fs::write(s.join(OsStr::from_bytes(b"bad\xff.service")), b"").unwrap();
    std::fs::write(s.join(OsStr::from_bytes(b"bad\xfe.service")), b"").unwrap();
    (tmp, outside)
}

pub(super) fn ctx_with(col: &str, values: &[&str]) -> QueryContext {
    let mut ctx = QueryContext::new();
    for v in values {
        ctx.add_constraint(col, Op::Eq, *v);
    }
    ctx
}

pub(super) fn md5_hex(b: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

pub(super) fn set_mtime(p: &Path, secs_ago: u64) {
    let t = std::time::SystemTime::now() - std::time::Duration::from_secs(secs_ago);
    std::fs::File::options()
        .append(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}
