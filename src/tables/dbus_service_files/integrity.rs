//! Whether a package ships an entry and whether it is still what the
//! package installed: `package`, `package_verified`,
//! `changed_after_install` and `provenance`. The databases are read by
//! `sources::packages`; this module holds the rules that turn their answer
//! and the entry's own metadata into those columns.
use super::plan::Scan;
use super::row::{Entry, Errors};
use crate::row::Row;
use crate::sources::fs_safe;
use crate::sources::packages;
use crate::sources::packages::verify::{verify, verify_not_regular, Verification};
use crate::sources::provenance::{self, Place, Provenance};
use crate::sources::service_dirs;
use crate::sources::service_file;
use crate::sources::stat::FileKind;
use crate::spec::columns::dbus_service_files as c;
use std::os::unix::ffi::OsStrExt;

use crate::sources::packages::INSTALL_SLACK_SECS;

/// `package` when the query reads the package databases, and the
/// integrity columns when it uses them.
pub(super) fn package_columns(scan: &mut Scan, entry: &Entry, row: &mut Row, errors: &mut Errors) {
    let Entry {
        open,
        name,
        path,
        meta,
        ..
    } = *entry;
    let integrity = scan.integrity;
    let root = scan.root;
    let Some(owners) = scan.owners() else {
        return;
    };
    let bytes = path.as_os_str().as_bytes();
    row.set(c::PACKAGE, owners.owner(bytes));
    if !integrity {
        return;
    }
    let owned = owners.lookup(bytes);
    let verified = if meta.kind == FileKind::Regular {
        verify(owned.as_ref(), path, || {
            fs_safe::open_entry_regular(open.fd(), name, path)
        })
        .unwrap_or_else(|e| {
            errors.push(e);
            Verification::Unrecorded
        })
    } else {
        verify_not_regular(owned.as_ref(), || now_is(entry))
    };
    row.set(c::PACKAGE_VERIFIED, verified.verified())
        .set(c::VERIFY_REASON, verified.reason())
        .set(
            c::CHANGED_AFTER_INSTALL,
            changed_after_install(owned.as_ref(), meta.ctime),
        );
    provenance_columns(root, owned.as_ref(), entry, row);
}

/// What a path a package recorded as a regular file is now: a link with
/// its target, or its file type.
fn now_is(entry: &Entry) -> String {
    if entry.meta.kind == FileKind::Symlink {
        if let Ok(target) = fs_safe::read_link_entry(entry.open.fd(), entry.name) {
            return format!("a symlink to {}", fs_safe::render(&target));
        }
        return "a symlink".to_string();
    }
    format!("a {}", entry.meta.kind.as_str())
}

/// `changed_after_install`: ctime later than the owners' latest install
/// by more than [`INSTALL_SLACK_SECS`].
fn changed_after_install(owned: Option<&packages::Ownership>, ctime: i64) -> Option<bool> {
    let installed = owned?.installed()?;
    Some(ctime > installed.saturating_add(INSTALL_SLACK_SECS))
}

/// `provenance` and `provenance_reason`: see [`provenance::of_file`].
fn provenance_columns(
    root: &fs_safe::Root,
    owned: Option<&packages::Ownership>,
    entry: &Entry,
    row: &mut Row,
) {
    let Entry {
        dir,
        open,
        name,
        path,
        meta,
    } = *entry;
    let place = Place::of_dir(
        &dir.path,
        dir.origin == service_dirs::Origin::Snap,
        dir.origin == service_dirs::Origin::Flatpak,
    );
    let content = || {
        let file = fs_safe::open_entry_regular(open.fd(), name, path).map_err(|e| e.to_string())?;
        fs_safe::read_capped(file, service_file::MAX_SERVICE_FILE_BYTES, path)
            .map(|(bytes, _)| bytes)
            .map_err(|e| e.to_string())
    };
    let answer = provenance::of_file(root, owned, place, path, meta.kind, content);
    row.set(c::PROVENANCE, answer.provenance.map(Provenance::as_str))
        .set(
            c::PROVENANCE_REASON,
            answer.not_theirs.map(|why| why.to_string()),
        );
}

#[cfg(test)]
mod tests {
    use crate::context::QueryContext;
    use crate::spec::columns::dbus_service_files as c;
    use crate::tables::dbus_service_files::generate;
    use crate::tables::dbus_service_files::test_support::*;

    use std::os::unix::fs::symlink;

    /// A dpkg database with an edited (mtime put back), an untouched, a
    /// conffile and an unowned file, a flatpak export and a snapd file.
    #[test]
    fn integrity_columns_from_a_dpkg_database() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        let w = |p: &str, b: &[u8]| write_under(r, p, b);
        let good = b"[D-BUS Service]\nName=org.good\nExec=/usr/bin/good\n";
        let orig = b"[D-BUS Service]\nName=org.edit\nExec=/usr/bin/edit\n";
        w("usr/share/dbus-1/system-services/org.good.service", good);
        w(
            "lib/dbus-1/system-services/org.edit.service",
            b"[D-BUS Service]\nName=org.edit\nExec=/tmp/evil\n",
        );
        set_mtime(
            &r.join("lib/dbus-1/system-services/org.edit.service"),
            90 * 86400,
        );
        w("etc/dbus-1/system.d/good.conf", b"<busconfig/>");
        w("etc/dbus-1/system.d/planted.conf", b"<busconfig/>");
        w(
            "var/lib/dpkg/info/good.list",
            b"/usr/share/dbus-1/system-services/org.good.service\n/etc/dbus-1/system.d/good.conf\n",
        );
        w(
            "var/lib/dpkg/info/good.md5sums",
            format!(
                "{}  usr/share/dbus-1/system-services/org.good.service\n",
                md5_hex(good)
            )
            .as_bytes(),
        );
        w(
            "var/lib/dpkg/info/edit.list",
            b"/usr/lib/dbus-1/system-services/org.edit.service\n",
        );
        w(
            "var/lib/dpkg/info/edit.md5sums",
            format!(
                "{}  lib/dbus-1/system-services/org.edit.service\n",
                md5_hex(orig)
            )
            .as_bytes(),
        );
        // Installed two hours ago (dpkg wrote the digest list with the
        // .list); the edit came later.
        set_mtime(&r.join("var/lib/dpkg/info/edit.list"), 7200);
        set_mtime(&r.join("var/lib/dpkg/info/edit.md5sums"), 7200);
        w(
            "var/lib/dpkg/status",
            format!(
                "Package: good\nStatus: install ok installed\nConffiles:\n /etc/dbus-1/system.d/good.conf {}\n",
                md5_hex(b"<busconfig/>")
            )
            .as_bytes(),
        );
        // A flatpak export into an app's recorded deployment, one pointing
        // elsewhere, a file snapd generated and a forged one.
        let deployment = "var/lib/flatpak/app/org.app/x86_64/stable/0123abc";
        w(&format!("{deployment}/deploy"), b"");
        w(
            &format!("{deployment}/export/share/dbus-1/services/org.app.service"),
            b"[D-BUS Service]\nName=org.app\nExec=/usr/bin/flatpak run --branch=stable --arch=x86_64 --command=app org.app\n",
        );
        symlink(
            "x86_64/stable",
            r.join("var/lib/flatpak/app/org.app/current"),
        )
        .unwrap();
        symlink(
            "0123abc",
            r.join("var/lib/flatpak/app/org.app/x86_64/stable/active"),
        )
        .unwrap();
        std::fs::create_dir_all(r.join("var/lib/flatpak/exports/share/dbus-1/services")).unwrap();
        symlink(
            "../../../../app/org.app/current/active/export/share/dbus-1/services/org.app.service",
            r.join("var/lib/flatpak/exports/share/dbus-1/services/org.app.service"),
        )
        .unwrap();
        symlink(
            "/tmp/x.service",
            r.join("var/lib/flatpak/exports/share/dbus-1/services/org.fake.service"),
        )
        .unwrap();
        w(
            "var/lib/snapd/dbus-1/system-services/org.snap.service",
            b"[D-BUS Service]\nName=org.snap\nComment=Bus name for snap application foo.svc\nSystemdService=snap.foo.svc.service\nExec=/usr/bin/snap run foo.svc\nAssumedAppArmorLabel=snap.foo.svc\nUser=root\nX-Snap=foo\n",
        );
        w("var/lib/snapd/snaps/foo_12.snap", b"");
        std::fs::create_dir_all(r.join("snap/foo")).unwrap();
        symlink("12", r.join("snap/foo/current")).unwrap();
        w("etc/systemd/system/snap.foo.svc.service", b"[Service]\n");
        w(
            "var/lib/snapd/dbus-1/system-services/org.forged.service",
            b"[D-BUS Service]\nName=org.forged\nExec=/usr/local/bin/payload\nUser=root\n",
        );
        let mut ctx = QueryContext::new();
        ctx.set_cols_used([
            "path",
            "package",
            "package_verified",
            "changed_after_install",
            "provenance",
            "provenance_reason",
        ]);
        let m = by_path(&generate(&settings(r), &ctx));
        let cols = |p: &str| {
            let row = m.get(p).unwrap_or_else(|| panic!("{p}: {m:#?}"));
            (
                text(row, c::PROVENANCE),
                int(row, c::PACKAGE_VERIFIED),
                int(row, c::CHANGED_AFTER_INSTALL),
            )
        };
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            cols("/usr/share/dbus-1/system-services/org.good.service"),
            (s("dpkg"), Some(1), Some(0))
        );
        assert_eq!(
            cols("/lib/dbus-1/system-services/org.edit.service"),
            (s("dpkg"), Some(0), Some(1)),
            "merged /usr: listed under /usr/lib, found under /lib"
        );
        assert_eq!(
            cols("/etc/dbus-1/system.d/good.conf"),
            (s("dpkg"), Some(1), Some(0))
        );
        assert_eq!(
            cols("/etc/dbus-1/system.d/planted.conf"),
            (s("none"), None, None)
        );
        assert_eq!(
            cols("/var/lib/flatpak/exports/share/dbus-1/services/org.app.service"),
            (s("flatpak"), None, None)
        );
        assert_eq!(
            cols("/var/lib/flatpak/exports/share/dbus-1/services/org.fake.service"),
            (s("none"), None, None)
        );
        assert_eq!(
            cols("/var/lib/snapd/dbus-1/system-services/org.snap.service"),
            (s("snap"), None, None)
        );
        assert_eq!(
            cols("/var/lib/snapd/dbus-1/system-services/org.forged.service"),
            (s("none"), None, None),
            "snapd's directory alone is not snap"
        );
        let reason = |p: &str| text(&m[p], "provenance_reason");
        assert!(
            reason("/var/lib/snapd/dbus-1/system-services/org.forged.service")
                .unwrap()
                .contains("not the file snapd generates")
        );
        assert!(
            reason("/var/lib/flatpak/exports/share/dbus-1/services/org.fake.service")
                .unwrap()
                .contains("does not resolve")
        );
        assert_eq!(
            reason("/var/lib/snapd/dbus-1/system-services/org.snap.service"),
            None
        );
        assert_eq!(
            reason("/var/lib/flatpak/exports/share/dbus-1/services/org.app.service"),
            None
        );
        assert_eq!(
            reason("/usr/share/dbus-1/system-services/org.good.service"),
            None
        );
        // Not asked for: not computed.
        let mut ctx = QueryContext::new();
        ctx.set_cols_used(["path", "package"]);
        let rows = generate(&settings(r), &ctx);
        assert!(rows.iter().all(|r| r.get(c::PROVENANCE).is_none()));
        // No package database: NULL, flatpak and snap still known.
        std::fs::remove_dir_all(r.join("var/lib/dpkg")).unwrap();
        let m = by_path(&generate(&settings(r), &QueryContext::new()));
        assert_eq!(
            text(&m["/etc/dbus-1/system.d/planted.conf"], c::PROVENANCE),
            None
        );
        assert_eq!(
            text(
                &m["/var/lib/snapd/dbus-1/system-services/org.snap.service"],
                "provenance"
            )
            .unwrap(),
            "snap"
        );
    }
}
