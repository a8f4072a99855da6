//! Whether a package ships an entry and whether it is still what the
//! package installed: `package`, `package_verified`,
//! `changed_after_install` and `provenance`. The databases are read by
//! `sources::packages`; this module holds the rules that turn their answer
//! and the entry's own metadata into those columns.
use super::plan::Scan;
use super::row::{Entry, Errors};
use crate::row::Row;
use crate::sources::fs_safe;
use crate::sources::packages::{self, verify::verify};
use crate::sources::service_dirs;
use crate::sources::stat::FileKind;
use crate::spec::columns::dbus_service_files as c;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How much later than its package's install an entry's ctime may be and
/// still count as that install: dpkg writes the `.list` after unpacking
/// every file of the package.
pub const INSTALL_SLACK_SECS: i64 = 60;

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
            None
        })
    } else {
        None
    };
    row.set(c::PACKAGE_VERIFIED, verified)
        .set(
            c::CHANGED_AFTER_INSTALL,
            changed_after_install(owned.as_ref(), meta.ctime),
        )
        .set(c::PROVENANCE, provenance(owned.as_ref(), entry));
}

/// `changed_after_install`: ctime later than the owners' latest install
/// by more than [`INSTALL_SLACK_SECS`].
fn changed_after_install(owned: Option<&packages::Ownership>, ctime: i64) -> Option<bool> {
    let installed = owned?.installed()?;
    Some(ctime > installed.saturating_add(INSTALL_SLACK_SECS))
}

/// `provenance`: the package manager that owns the entry, else flatpak for
/// an export symlink into an installed app's deployment, snap for snapd's
/// own directory, else none (NULL with no package database at all).
fn provenance(owned: Option<&packages::Ownership>, entry: &Entry) -> Option<&'static str> {
    let Entry {
        dir,
        open,
        name,
        path,
        meta,
    } = *entry;
    if let Some(p) = owned.and_then(|o| o.packages.first()) {
        return Some(p.format.as_str());
    }
    if path.starts_with("/var/lib/snapd/dbus-1") {
        return Some("snap");
    }
    if dir.origin == service_dirs::Origin::Flatpak && meta.kind == FileKind::Symlink {
        if let Ok(target) = fs_safe::read_link_entry(open.fd(), name) {
            let resolved = lexical_join(&dir.path, Path::new(OsStr::from_bytes(&target)));
            let mut apps = vec![PathBuf::from("/var/lib/flatpak/app")];
            if let Some(o) = &dir.owner {
                apps.push(o.home.join(".local/share/flatpak/app"));
            }
            if apps
                .iter()
                .any(|a| resolved.starts_with(a) && resolved != *a)
            {
                return Some("flatpak");
            }
        }
    }
    owned.map(|_| "none")
}

/// `base` joined with `target` (kept when absolute), `.` and `..`
/// resolved without touching the filesystem, as a symlink target reads.
pub(super) fn lexical_join(base: &Path, target: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    let joined = base.join(target);
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::QueryContext;
    use crate::tables::dbus_service_files::generate;
    use crate::tables::dbus_service_files::test_support::*;

    use std::os::unix::fs::symlink;
    use std::path::Path;

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
        // Installed two hours ago; the edit came later.
        set_mtime(&r.join("var/lib/dpkg/info/edit.list"), 7200);
        w(
            "var/lib/dpkg/status",
            format!(
                "Package: good\nStatus: install ok installed\nConffiles:\n /etc/dbus-1/system.d/good.conf {}\n",
                md5_hex(b"<busconfig/>")
            )
            .as_bytes(),
        );
        // A flatpak export into an app's deployment, one pointing
        // elsewhere, and a file snapd wrote.
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
            b"[D-BUS Service]\nName=org.snap\n",
        );
        let mut ctx = QueryContext::new();
        ctx.set_cols_used([
            "path",
            "package",
            "package_verified",
            "changed_after_install",
            "provenance",
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

    #[test]
    fn lexical_join_resolves_dots() {
        assert_eq!(
            lexical_join(Path::new("/a/b/c"), Path::new("../../x/./y")),
            Path::new("/a/x/y")
        );
        assert_eq!(
            lexical_join(Path::new("/a"), Path::new("/../../z")),
            Path::new("/z")
        );
    }
}
