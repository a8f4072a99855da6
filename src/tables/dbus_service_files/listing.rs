//! Walking the directories a query reaches: which entries become rows
//! (every entry, or only those a `path =` constraint names), the rows for
//! directories and entries that cannot be read, and the shadow columns
//! each row gets on its way to the sink. The row for one entry is
//! `row::entry_row`; what is walked is decided in `plan`.
use super::plan::{Pushdown, Scan};
use super::row::{base_row, entry_row};
use crate::context::Used;
use crate::row::{Row, RowSink};
use crate::sources::fs_safe;
use crate::sources::service_dirs::{DirError, OpenDir, ServiceDir};
use crate::sources::service_names;
use crate::sources::stat::FileKind;
use crate::spec::columns::dbus_service_files as c;
use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// A row on its way to the sink, given its shadow columns when used.
pub(super) struct Emit<'s, 'n> {
    pub(super) sink: &'s mut dyn RowSink,
    pub(super) shadows: Option<&'s Shadows<'n>>,
}

impl Emit<'_, '_> {
    fn push(&mut self, mut row: Row) {
        if let Some(shadows) = self.shadows {
            shadows.apply(&mut row);
        }
        self.sink.push(row);
    }

    fn extend(&mut self, rows: impl IntoIterator<Item = Row>) {
        for row in rows {
            self.push(row);
        }
    }
}

/// Which file wins each name (`sources::service_names`), given to each row
/// as it is made. A row's path is rendered text: its readings are looked
/// up, and the provider must render back to it.
pub(super) struct Shadows<'n>(pub(super) &'n service_names::Names);

impl Shadows<'_> {
    fn apply(&self, row: &mut Row) {
        let names = self.0;
        let Some(crate::row::Value::Text(path)) = row.get(c::PATH) else {
            return;
        };
        let Some(p) = fs_safe::readings(path)
            .iter()
            .filter_map(|r| names.get(r))
            .find(|p| fs_safe::render_path(&p.path) == *path)
        else {
            return;
        };
        let (order, effective) = (p.search_order, p.effective);
        let shadowed_by = p.shadowed_by.as_deref().map(fs_safe::render_path);
        row.set(c::SEARCH_ORDER, order)
            .set(c::EFFECTIVE, effective)
            .set(c::SHADOWED_BY, shadowed_by);
    }
}

/// The rows of one visited directory: its entries the constraints leave
/// in, or the row saying why it could not be opened.
pub(super) fn list_dir(
    scan: &mut Scan,
    pushdown: &Pushdown,
    dir: &ServiceDir,
    opened: Result<&OpenDir, &DirError>,
    rows: &mut Emit,
) {
    if !pushdown.lists(dir) {
        return;
    }
    match opened {
        Err(e) => {
            e.report_blind();
            if pushdown.wants_path(&error_row_path(dir)) {
                rows.push(dir_error_row(&scan.used, dir, e));
            }
        }
        Ok(open) => match &pushdown.paths {
            None => list_all(scan, dir, open, rows),
            Some(paths) => {
                let names: BTreeSet<OsString> = paths
                    .iter()
                    .filter(|p| p.parent() == Some(dir.path.as_path()))
                    .filter_map(|p| p.file_name())
                    .filter(|n| open.lists(dir, n))
                    .map(OsStr::to_os_string)
                    .collect();
                for name in names {
                    let meta = open.stat(dir, &name);
                    rows.extend(entry_row(scan, dir, open, &name, meta, None));
                }
            }
        },
    }
}

/// Every entry of `dir` (for a config directory: its one named file).
fn list_all(scan: &mut Scan, dir: &ServiceDir, open: &OpenDir, rows: &mut Emit) {
    if let Some(only) = &dir.only {
        let meta = open.stat(dir, only);
        rows.extend(entry_row(scan, dir, open, only, meta, None));
        return;
    }
    for entry in open.entries(dir) {
        match entry {
            Ok(e) => {
                let meta = open.stat(dir, &e.name);
                rows.extend(entry_row(
                    scan,
                    dir,
                    open,
                    &e.name,
                    meta,
                    Some(e.dirent_kind),
                ))
            }
            Err(e) => {
                e.report_blind();
                rows.push(dir_error_row(&scan.used, dir, &e));
            }
        }
    }
}

/// Where a directory failure is reported: at the directory itself, or for
/// a config directory at the one file that could not be reached.
fn error_row_path(dir: &ServiceDir) -> PathBuf {
    match &dir.only {
        Some(only) => dir.entry_path(only),
        None => dir.path.clone(),
    }
}

/// The row for a discovered directory that exists but cannot be listed:
/// `path` and `directory` are that directory (for a config file, `path` is
/// the file), `type` what the path turned out to be when known.
fn dir_error_row(plain: &Used, dir: &ServiceDir, e: &DirError) -> Row {
    let path = error_row_path(dir);
    let mut row = base_row(plain, dir, &path);
    if dir.only.is_some() {
        plain.set(&mut row, c::KIND, || "config");
    }
    plain.set(&mut row, c::TYPE, || e.kind().map(FileKind::as_str));
    row.set(c::ERROR, e.to_string());
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::QueryContext;
    use crate::sources::fs_safe::Root;
    use crate::tables::dbus_service_files::generate;
    use crate::tables::dbus_service_files::test_support::*;

    use std::os::unix::fs::symlink;

    #[test]
    fn a_home_linked_to_root_never_escapes() {
        let (tmp, outside) = fixture();
        let rows = generate(&settings(tmp.path()), &QueryContext::new());
        let root = Root::open(tmp.path()).unwrap();
        for r in &rows {
            let p = text(r, c::PATH).unwrap();
            let raw = fs_safe::readings(&p).pop().unwrap();
            // Resolved inside the fixture, the entry exists there.
            let parent = root.open_dir(raw.parent().unwrap()).unwrap();
            crate::sources::stat::stat_entry(&parent, raw.file_name().unwrap(), raw.clone())
                .unwrap();
            assert!(!p.contains("host.service"), "{p}");
            assert!(!p.starts_with("/mallory"), "{p}");
            assert!(!p.starts_with(outside.path().to_str().unwrap()), "{p}");
        }
        // The host's own files (this machine has /usr/share/dbus-1/system.conf)
        // do not appear: the fixture has none.
        assert!(rows
            .iter()
            .all(|r| text(r, c::PATH).unwrap() != "/usr/share/dbus-1/system.conf"));
    }

    #[test]
    fn merged_usr_lists_a_directory_once() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("usr/share/dbus-1/services")).unwrap();
        std::fs::write(r.join("usr/share/dbus-1/services/a.service"), b"").unwrap();
        std::fs::create_dir_all(r.join("usr/local/share")).unwrap();
        // /usr/local/share/dbus-1 -> /usr/share/dbus-1: same directories.
        symlink("/usr/share/dbus-1", r.join("usr/local/share/dbus-1")).unwrap();
        let rows = generate(&settings(r), &QueryContext::new());
        assert_eq!(rows.len(), 1, "{rows:#?}");
        // The first path in search order wins.
        assert_eq!(
            text(&rows[0], c::PATH).unwrap(),
            "/usr/local/share/dbus-1/services/a.service"
        );
    }

    #[test]
    fn errors_become_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("etc/dbus-1")).unwrap();
        std::fs::write(r.join("etc/dbus-1/system.d"), b"not a dir").unwrap();
        symlink("session.d", r.join("etc/dbus-1/loop")).unwrap();
        symlink("loop", r.join("etc/dbus-1/session.d")).unwrap();
        let s = settings(r);
        let rows = by_path(&generate(&s, &QueryContext::new()));
        let notdir = &rows["/etc/dbus-1/system.d"];
        assert_eq!(text(notdir, c::TYPE).unwrap(), "regular");
        assert!(text(notdir, c::ERROR).unwrap().contains("not a directory"));
        let looped = &rows["/etc/dbus-1/session.d"];
        assert_eq!(text(looped, c::BUS).unwrap(), "session");
        assert!(text(looped, c::ERROR).is_some());
        assert_eq!(rows.len(), 2, "{rows:#?}");
        // The same rows through pushdown.
        let got = generate(&s, &ctx_with("directory", &["/etc/dbus-1/system.d"]));
        assert_eq!(got.len(), 1);
        let got = generate(&s, &ctx_with("path", &["/etc/dbus-1/session.d"]));
        assert_eq!(got.len(), 1);
        // No root at all: one row saying so, no panic.
        let gone = generate(&settings(&r.join("missing")), &QueryContext::new());
        assert_eq!(gone.len(), 1);
        assert!(text(&gone[0], c::ERROR).is_some());
    }

    #[test]
    fn a_directory_named_in_two_roles_is_read_both_ways_once() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        let w = |p: &str, b: &[u8]| write_under(r, p, b);
        w(
            "etc/dbus-1/system-local.conf",
            b"<busconfig><servicedir>/etc/dbus-1/system.d</servicedir>\
<includedir>/alias</includedir><servicedir>/etc/passwd</servicedir>\
<includedir>/etc/passwd</includedir></busconfig>",
        );
        w(
            "etc/dbus-1/system.d/sneaky.service",
            b"[D-BUS Service]\nName=sneaky\nExec=/x\n",
        );
        w("etc/dbus-1/system.d/p.conf", b"<busconfig/>");
        w("etc/passwd", b"");
        w("usr/share/dbus-1/services/extra.conf", b"<busconfig/>");
        w(
            "usr/share/dbus-1/services/a.service",
            b"[D-BUS Service]\nName=a\n",
        );
        symlink("usr/share/dbus-1/services", r.join("alias")).unwrap();
        let rows = generate(&settings(r), &QueryContext::new());
        let m = by_path(&rows);
        assert_eq!(m.len(), rows.len(), "no duplicates: {rows:#?}");
        let kind = |p: &str| text(&m[p], c::KIND).unwrap();
        let sneaky = &m["/etc/dbus-1/system.d/sneaky.service"];
        assert_eq!(kind("/etc/dbus-1/system.d/sneaky.service"), "service");
        assert_eq!(text(sneaky, c::SERVICE_NAME).unwrap(), "sneaky");
        assert_eq!(text(sneaky, c::SOURCE).unwrap(), "standard");
        assert_eq!(kind("/etc/dbus-1/system.d/p.conf"), "policy");
        assert_eq!(kind("/usr/share/dbus-1/services/extra.conf"), "policy");
        assert_eq!(kind("/usr/share/dbus-1/services/a.service"), "service");
        // /etc/passwd named as a directory twice: one error row.
        let passwd = &m["/etc/passwd"];
        assert_eq!(text(passwd, c::SOURCE).unwrap(), "config");
        assert!(text(passwd, c::ERROR).unwrap().contains("not a directory"));
    }

    #[test]
    fn config_errors_land_on_the_config_rows_and_contents_only_when_used() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("etc/dbus-1/system.d")).unwrap();
        std::fs::write(r.join("etc/dbus-1/system-local.conf"), b"<busconfig><oops>").unwrap();
        std::fs::write(
            r.join("etc/dbus-1/system.d/a.conf"),
            b"<busconfig><include>/nowhere.conf</include></busconfig>",
        )
        .unwrap();
        std::fs::create_dir_all(r.join("usr/share/dbus-1/services")).unwrap();
        std::fs::write(
            r.join("usr/share/dbus-1/services/x.service"),
            b"[D-BUS Service]\nName=x\nExec=/x\n",
        )
        .unwrap();
        let s = settings(r);
        let rows = by_path(&generate(&s, &QueryContext::new()));
        let local = text(&rows["/etc/dbus-1/system-local.conf"], c::ERROR).unwrap();
        assert!(
            local.starts_with("/etc/dbus-1/system-local.conf: XML"),
            "{local}"
        );
        let a = text(&rows["/etc/dbus-1/system.d/a.conf"], c::ERROR).unwrap();
        assert!(a.contains("includes /nowhere.conf"), "{a}");
        let x = &rows["/usr/share/dbus-1/services/x.service"];
        assert_eq!(text(x, c::SERVICE_NAME).unwrap(), "x");
        assert_eq!(int(x, c::NAME_MATCHES_FILENAME), Some(1));
        // A stat-only query reads no contents.
        let mut ctx = QueryContext::new();
        ctx.set_cols_used(["path", "mtime"]);
        let rows = by_path(&generate(&s, &ctx));
        let x = &rows["/usr/share/dbus-1/services/x.service"];
        assert_eq!(x.get(c::SERVICE_NAME), None);
        assert_eq!(x.get(c::SHA256), None);
        assert_eq!(x.get(c::PACKAGE), None);
    }
}
