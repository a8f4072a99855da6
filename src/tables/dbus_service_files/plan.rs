//! What one query needs, decided before anything is listed: which costly
//! columns to fill (from `colsUsed`), and which directories and entries a
//! `path =` / `directory =` constraint lets the scan skip. Kept apart from
//! the listing so that every narrowing rule sits in one place, where it can
//! be checked against the full scan it must agree with.
use crate::context::{QueryContext, Used};
use crate::row::Column;
use crate::sources::accounts::Account;
use crate::sources::fs_safe::{self, Root};
use crate::sources::service_dirs::{self, Discovered, ServiceDir};
use crate::sources::{packages, service_names};
use crate::spec::columns::dbus_service_files as c;
use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Every path a set of constraint values may stand for (see
/// `fs_safe::readings`), or `None` when the column is not constrained.
fn wanted(ctx: &QueryContext, column: Column) -> Option<Vec<PathBuf>> {
    ctx.eq_values(column.name)
        .map(|vals| vals.iter().flat_map(|v| fs_safe::readings(v)).collect())
}

/// What one query needs beyond `statx`, decided once from `colsUsed`.
pub(super) struct Scan<'a> {
    pub(super) root: &'a Root,
    pub(super) content: bool,
    pub(super) symlink_target: bool,
    pub(super) sha256: bool,
    pub(super) exec_sha256: bool,
    /// `exec_exists`, `exec_uid`, `exec_mode`, `exec_sha256`: the program
    /// `Exec=` names is looked up (and its failures reported in `error`)
    /// only for these, as a file is hashed only for `sha256`.
    pub(super) exec_target: bool,
    /// `SystemdService=` resolved to the unit systemd would load.
    pub(super) systemd: bool,
    /// Loaded on first use, only when `package` is used.
    pub(super) packages: Option<Arc<packages::Owners>>,
    pub(super) want_packages: bool,
    /// `package_verified`, `changed_after_install`, `provenance`.
    pub(super) integrity: bool,
    /// `exec_package`, `exec_provenance`, `exec_verified`, `exec_hijackable`.
    pub(super) exec_integrity: bool,
    /// `target_path`, `target_uid`, `target_hijackable`, `target_package`.
    pub(super) link: bool,
    /// `exec_env`, `exec_inline`, `exec_script`.
    pub(super) launch: bool,
    /// `exec_script_exists`, `exec_script_package`, `exec_script_verified`,
    /// `exec_script_hijackable`.
    pub(super) script_integrity: bool,
    /// The root's passwd, loaded on first use (`User=` to a uid).
    pub(super) accounts: Option<Vec<Account>>,
    pub(super) config_errors: &'a [(PathBuf, String)],
    /// The columns the query reads.
    pub(super) used: Used,
}

impl<'a> Scan<'a> {
    /// The scan `ctx` asks for over `root`; `config_errors` are the bus
    /// configuration's failures, reported on the config and policy rows.
    pub(super) fn new(
        root: &'a Root,
        ctx: &QueryContext,
        config_errors: &'a [(PathBuf, String)],
    ) -> Scan<'a> {
        let used = ctx.used(&c::ALL);
        Scan {
            root,
            content: used.any(&c::NEEDS_CONTENT),
            symlink_target: ctx.uses(c::SYMLINK_TARGET),
            sha256: ctx.uses(c::SHA256),
            exec_sha256: ctx.uses(c::EXEC_SHA256),
            exec_target: used.any(&c::NEEDS_EXEC_TARGET),
            systemd: ctx.uses(c::SYSTEMD_UNIT_PATH)
                || ctx.uses(c::SYSTEMD_EXEC)
                || used.any(&c::NEEDS_EXEC_INTEGRITY)
                || used.any(&c::NEEDS_LAUNCH)
                || used.any(&c::NEEDS_SCRIPT_INTEGRITY),
            packages: None,
            want_packages: ctx.uses(c::PACKAGE)
                || ctx.uses(c::TARGET_PACKAGE)
                || used.any(&c::NEEDS_SCRIPT_INTEGRITY)
                || used.any(&c::NEEDS_INTEGRITY)
                || used.any(&c::NEEDS_EXEC_INTEGRITY),
            integrity: used.any(&c::NEEDS_INTEGRITY),
            exec_integrity: used.any(&c::NEEDS_EXEC_INTEGRITY),
            link: used.any(&c::NEEDS_LINK),
            launch: used.any(&c::NEEDS_LAUNCH),
            script_integrity: used.any(&c::NEEDS_SCRIPT_INTEGRITY),
            accounts: None,
            config_errors,
            used,
        }
    }

    pub(super) fn owners(&mut self) -> Option<&packages::Owners> {
        if !self.want_packages {
            return None;
        }
        let root = self.root;
        Some(self.packages.get_or_insert_with(|| packages::owners(root)))
    }
}

/// The `path =` and `directory =` constraints, as the sets of paths they
/// may stand for.
pub(super) struct Pushdown {
    /// Every reading of every `path =` value.
    pub(super) paths: Option<Vec<PathBuf>>,
    /// Every reading of every `directory =` value.
    dirs: Option<HashSet<PathBuf>>,
    /// The directories a `path =` value can be listed from: its parent, or
    /// itself (a directory that cannot be listed is its own row).
    path_dirs: Option<HashSet<PathBuf>>,
}

impl Pushdown {
    /// Sets, as membership is asked of every directory of every account
    /// (comparing `Path`s one by one walks their components).
    pub(super) fn new(ctx: &QueryContext) -> Pushdown {
        let dirs = wanted(ctx, c::DIRECTORY).map(|w| w.into_iter().collect());
        let paths = wanted(ctx, c::PATH);
        let path_dirs = paths.as_ref().map(|w| {
            w.iter()
                .flat_map(|p| [Some(p.as_path()), p.parent()])
                .flatten()
                .map(Path::to_path_buf)
                .collect()
        });
        Pushdown {
            paths,
            dirs,
            path_dirs,
        }
    }

    /// Whether `directory =` leaves `dir`'s rows in.
    pub(super) fn lists(&self, dir: &ServiceDir) -> bool {
        self.dirs.as_ref().is_none_or(|w| w.contains(&dir.path))
    }

    /// Whether `path =` leaves a row at `path` in.
    pub(super) fn wants_path(&self, path: &Path) -> bool {
        self.paths
            .as_ref()
            .is_none_or(|w| w.iter().any(|p| p == path))
    }

    /// Whether any row of `dir` can satisfy both constraints. A
    /// directory's rows are its entries and, when it cannot be listed, the
    /// directory itself.
    fn reachable(&self, dir: &ServiceDir) -> bool {
        self.lists(dir)
            && self
                .path_dirs
                .as_ref()
                .is_none_or(|w| w.contains(&dir.path))
    }

    /// The directories to scan: a lookup needs nothing else listed, and
    /// discovery probes only what can change their rows.
    pub(super) fn discover(&self, root: &Root) -> Discovered {
        if self.dirs.is_none() && self.paths.is_none() {
            service_dirs::discover(root)
        } else {
            service_dirs::discover_narrowed(root, &|d| self.reachable(d))
        }
    }

    /// Which file wins each name, for the service files that can change
    /// the wanted rows' verdicts.
    pub(super) fn names(&self, root: &Root, found: &Discovered) -> service_names::Names {
        match &self.paths {
            Some(paths) => service_names::resolve_paths(root, found.present(), paths),
            None => service_names::resolve(root, found.present()),
        }
    }

    /// The package answers for the entries' own package columns, read
    /// before anything is listed: they need only the entries' paths, so
    /// the databases are read for those alone (`take`: how many of the
    /// present directories the scan walks). With `digests` the recorded
    /// digests are kept too.
    pub(super) fn entry_owners(
        &self,
        root: &Root,
        found: &Discovered,
        take: usize,
        digests: bool,
    ) -> Arc<packages::Owners> {
        if let Some(p) = &self.paths {
            return packages::owners_of(root, p.iter().map(|p| p.as_os_str().as_bytes()), digests);
        }
        // The directories stand for their entries: the databases are
        // asked before anything is listed, and a repeat query finds
        // every entry answered (the ones added since too).
        let dirs: Vec<&ServiceDir> = found
            .present()
            .take(take)
            .filter(|d| self.lists(d))
            .collect();
        let named: Vec<PathBuf> = dirs
            .iter()
            .filter_map(|d| d.only.as_ref().map(|o| d.entry_path(o)))
            .collect();
        packages::owners_in(
            root,
            named.iter().map(|p| p.as_os_str().as_bytes()),
            dirs.iter()
                .filter(|d| d.only.is_none())
                .map(|d| d.path.as_os_str().as_bytes()),
            digests,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Op, QueryContext};
    use crate::row::Row;
    use crate::tables::dbus_service_files::generate;
    use crate::tables::dbus_service_files::test_support::*;
    use std::collections::BTreeSet;

    use std::os::unix::fs::symlink;

    /// The plain columns a query does not read are left out; those it
    /// reads equal the full scan's, row for row (error rows included).
    #[test]
    fn plain_columns_only_when_used() {
        let (tmp, _outside) = fixture();
        let full = by_path(&generate(&settings(tmp.path()), &QueryContext::new()));
        let mut ctx = QueryContext::new();
        ctx.set_cols_used(["path", "uid", "mode", "error"]);
        let narrow = by_path(&generate(&settings(tmp.path()), &ctx));
        assert_eq!(
            narrow.keys().collect::<Vec<_>>(),
            full.keys().collect::<Vec<_>>()
        );
        for (path, row) in &narrow {
            // `error` makes the file be parsed, which fills its keys.
            for col in c::ALL.iter().filter(|col| !c::NEEDS_CONTENT.contains(col)) {
                if !["path", "uid", "mode"].contains(&col.name) {
                    assert_eq!(row.get(*col), None, "{path}: {}", col.name);
                }
            }
            for c in ["path", "uid", "mode"] {
                assert_eq!(row.get(c), full[path].get(c), "{path}: {c}");
            }
        }
        assert!(full.values().all(|r| r.get(c::DIRECTORY).is_some()));
    }

    #[test]
    fn pushdown_by_path_matches_the_full_scan() {
        let (tmp, _outside) = fixture();
        let s = settings(tmp.path());
        // readlink updates a symlink's atime (no O_NOATIME for it): one
        // scan first, so relatime leaves later scans' atimes alone and the
        // comparison cannot straddle a second boundary.
        let _ = generate(&s, &QueryContext::new());
        let full = by_path(&generate(&s, &QueryContext::new()));
        for p in full.keys() {
            let rows = generate(&s, &ctx_with("path", &[p]));
            assert_eq!(rows.len(), 1, "{p}: {rows:#?}");
            assert_eq!(&rows[0], &full[p], "{p}");
        }
        // Several values, as from IN (…).
        let two = [
            "/etc/dbus-1/system.d/evil.conf",
            "/usr/share/dbus-1/services/bad\\xfe.service",
        ];
        assert_eq!(generate(&s, &ctx_with("path", &two)).len(), 2);
    }

    /// A lookup probes only the directories that can change its rows; a
    /// per-user directory that is a policy directory under another name
    /// still lends it the `services` role, as in a full scan; a home named
    /// twice (carol's, spelt another way for dave) is listed once.
    #[test]
    fn pushdown_keeps_roles_lent_by_aliases() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        let write = |p: &str, b: &[u8]| {
            std::fs::create_dir_all(r.join(p).parent().unwrap()).unwrap();
            std::fs::write(r.join(p), b).unwrap();
        };
        write(
            "etc/passwd",
            b"root:x:0:0::/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n\
carol:x:1001:1001::/home/carol:/bin/sh\n\
dave:x:1002:1002::/srv/../home/carol:/bin/sh\n",
        );
        write("etc/dbus-1/system.d/a.conf", b"<busconfig/>");
        write(
            "etc/dbus-1/system.d/x.service",
            b"[D-BUS Service]\nName=org.x\nExec=/bin/x\n",
        );
        write(
            "home/carol/.local/share/dbus-1/services/c.service",
            b"[D-BUS Service]\nName=org.c\nExec=/bin/c\n",
        );
        std::fs::create_dir_all(r.join("home/bob/.local/share/dbus-1")).unwrap();
        symlink(
            "/etc/dbus-1/system.d",
            r.join("home/bob/.local/share/dbus-1/services"),
        )
        .unwrap();
        let s = settings(r);
        let _ = generate(&s, &QueryContext::new());
        let full = by_path(&generate(&s, &QueryContext::new()));
        let x = "/etc/dbus-1/system.d/x.service";
        assert_eq!(text(&full[x], c::KIND).as_deref(), Some("service"));
        for p in [x, "/home/carol/.local/share/dbus-1/services/c.service"] {
            let rows = generate(&s, &ctx_with("path", &[p]));
            assert_eq!(rows.len(), 1, "{p}: {rows:#?}");
            assert_eq!(&rows[0], &full[p], "{p}");
        }
        // Through bob's spelling the policy directory was listed already.
        let via_bob = "/home/bob/.local/share/dbus-1/services/x.service";
        assert!(!full.contains_key(via_bob));
        assert!(generate(&s, &ctx_with("path", &[via_bob])).is_empty());
    }

    /// The shadow columns of a lookup equal the full scan's where one
    /// directory is reached under two spellings: a config-named session
    /// directory that is ann's home one (ben's refused file names ann's
    /// file under that spelling), a home that is the system-wide session
    /// directory (cat's bus reads it first as his own), a system directory
    /// named twice.
    #[test]
    fn pushdown_shadow_columns_through_aliased_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        let write = |p: &str, b: &str| {
            std::fs::create_dir_all(r.join(p).parent().unwrap()).unwrap();
            std::fs::write(r.join(p), b).unwrap();
        };
        let svc = |name: &str| format!("[D-BUS Service]\nName={name}\nExec=/bin/x\n");
        let refused = |name: &str| format!("[D-BUS Service]\nName={name}\nno key here\n");
        write(
            "etc/passwd",
            "root:x:0:0::/root:/bin/sh\nann:x:1000:1000::/home/ann:/bin/sh\n\
ben:x:1001:1001::/home/ben:/bin/sh\ncat:x:1002:1002::/home/cat:/bin/sh\n",
        );
        write(
            "etc/dbus-1/session.conf",
            "<busconfig><servicedir>/srv/annsvc</servicedir></busconfig>",
        );
        write(
            "home/ann/.local/share/dbus-1/services/a.service",
            &svc("org.a"),
        );
        std::fs::create_dir_all(r.join("srv")).unwrap();
        symlink(
            "/home/ann/.local/share/dbus-1/services",
            r.join("srv/annsvc"),
        )
        .unwrap();
        write(
            "home/ben/.local/share/dbus-1/services/bad.service",
            &refused("org.a"),
        );
        write("usr/share/dbus-1/services/s.service", &svc("org.s"));
        std::fs::create_dir_all(r.join("home/cat/.local/share/dbus-1")).unwrap();
        symlink(
            "/usr/share/dbus-1/services",
            r.join("home/cat/.local/share/dbus-1/services"),
        )
        .unwrap();
        write("run/user/1002/dbus-1/services/c.service", &refused("org.s"));
        write(
            "usr/share/dbus-1/system-services/org.x.service",
            &svc("org.x"),
        );
        write("lib/dbus-1/system-services/org.x.service", &svc("org.x"));
        std::fs::create_dir_all(r.join("etc/dbus-1")).unwrap();
        symlink(
            "/usr/share/dbus-1/system-services",
            r.join("etc/dbus-1/system-services"),
        )
        .unwrap();
        let s = settings(r);
        let _ = generate(&s, &QueryContext::new());
        let full = by_path(&generate(&s, &QueryContext::new()));
        let shadow = |p: &str| {
            let row = &full[p];
            (
                int(row, c::SEARCH_ORDER),
                int(row, c::EFFECTIVE),
                text(row, c::SHADOWED_BY),
            )
        };
        assert_eq!(
            shadow("/home/ben/.local/share/dbus-1/services/bad.service"),
            (Some(1), Some(0), Some("/srv/annsvc/a.service".into()))
        );
        assert_eq!(
            shadow("/run/user/1002/dbus-1/services/c.service"),
            (
                Some(1),
                Some(0),
                Some("/home/cat/.local/share/dbus-1/services/s.service".into())
            )
        );
        assert_eq!(
            shadow("/lib/dbus-1/system-services/org.x.service"),
            (
                Some(2),
                Some(0),
                Some("/etc/dbus-1/system-services/org.x.service".into())
            )
        );
        let services: Vec<&String> = full.keys().filter(|p| p.ends_with(".service")).collect();
        assert_eq!(services.len(), 6, "{services:?}");
        for p in services {
            let rows = generate(&s, &ctx_with("path", &[p]));
            assert_eq!(rows.len(), 1, "{p}: {rows:#?}");
            assert_eq!(&rows[0], &full[p], "{p}");
        }
    }

    #[test]
    fn pushdown_never_adds_what_a_full_scan_would_not_list() {
        let (tmp, _outside) = fixture();
        let s = settings(tmp.path());
        for p in [
            "/etc/passwd",
            "/etc/dbus-1/unrelated.conf",
            "/usr/share/dbus-1/services/subdir/deep.service",
            "/usr/share/dbus-1/services/missing.service",
            "/usr/share/dbus-1/services/..",
            "/usr/share/dbus-1/services",
            "/usr/lib/dbus-1/system-services/org.lib.service",
            "/home/eve/../../../etc/passwd",
            "relative/x",
            "",
        ] {
            let rows = generate(&s, &ctx_with("path", &[p]));
            assert!(rows.is_empty(), "{p}: {rows:#?}");
        }
        // The duplicate path of a merged directory is not listed either.
        let tmp2 = tempfile::tempdir().unwrap();
        let r = tmp2.path();
        std::fs::create_dir_all(r.join("usr/share/dbus-1/services")).unwrap();
        std::fs::write(r.join("usr/share/dbus-1/services/a.service"), b"").unwrap();
        std::fs::create_dir_all(r.join("usr/local/share")).unwrap();
        symlink("/usr/share/dbus-1", r.join("usr/local/share/dbus-1")).unwrap();
        let rows = generate(
            &settings(r),
            &ctx_with("path", &["/usr/share/dbus-1/services/a.service"]),
        );
        assert!(rows.is_empty(), "{rows:#?}");
    }

    #[test]
    fn pushdown_by_directory_matches_the_full_scan() {
        let (tmp, _outside) = fixture();
        let s = settings(tmp.path());
        // readlink updates a symlink's atime (no O_NOATIME for it): one
        // scan first, so relatime leaves later scans' atimes alone and the
        // comparison cannot straddle a second boundary.
        let _ = generate(&s, &QueryContext::new());
        let full = generate(&s, &QueryContext::new());
        let dirs: BTreeSet<String> = full
            .iter()
            .map(|r| text(r, c::DIRECTORY).unwrap())
            .collect();
        for d in &dirs {
            let expect: Vec<&Row> = full
                .iter()
                .filter(|r| text(r, c::DIRECTORY).as_ref() == Some(d))
                .collect();
            let got = generate(&s, &ctx_with("directory", &[d]));
            assert_eq!(got.iter().collect::<Vec<_>>(), expect, "{d}");
        }
        assert!(generate(&s, &ctx_with("directory", &["/etc"])).is_empty());
        // Both constraints: the intersection.
        let both = {
            let mut c = ctx_with("directory", &["/etc/dbus-1/system.d"]);
            c.add_constraint("path", Op::Eq, "/etc/dbus-1/system.d/evil.conf");
            c.add_constraint("path", Op::Eq, "/usr/share/dbus-1/session.conf");
            generate(&s, &c)
        };
        assert_eq!(both.len(), 1);
    }
}
