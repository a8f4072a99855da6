//! `dbus_service_files`: one row per entry in a D-Bus service, policy or
//! config directory, so a hunt sees everything a bus could read: who owns
//! it, when it was born and changed, what a `.service` file would start,
//! and whether a package ships it.
//!
//! Discovery and listing belong to `sources::service_dirs` (and through it
//! `sources::bus_config`), metadata to `sources::stat`, root confinement,
//! no-follow reads and name rendering to `sources::fs_safe`, key parsing to
//! `sources::service_file`, hashing to `sources::hash`, ownership to
//! `sources::packages`. This module narrows the scan from the query's
//! `path =` / `directory =` constraints, decides from `colsUsed` which
//! costly columns to fill (contents, hashes, packages), and turns what the
//! sources found into rows.
use crate::blind;
use crate::context::{QueryContext, Used};
use crate::row::{Column, Row, RowSink, Value};
use crate::settings::Settings;
use crate::sources::fs_safe::{self, Root};
use crate::sources::service_dirs::{self, DirError, EntryKind, OpenDir, ServiceDir};
use crate::sources::stat::{self, FileKind, Metadata, StatError};
use crate::sources::{hash, packages, service_file, service_names, unit_files};
use crate::spec::columns::dbus_service_files as c;
use std::collections::{BTreeSet, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A service file is small; dbus-daemon's own files are under 1 KiB.
pub const MAX_SERVICE_BYTES: u64 = service_file::MAX_SERVICE_FILE_BYTES;

/// dbus-daemon refuses to load a service file larger than this
/// (`bus/desktop-file.c`).
const DBUS_DAEMON_MAX_SERVICE_BYTES: u64 = 128 * 1024;

/// Every path a set of constraint values may stand for (see
/// `fs_safe::readings`), or `None` when the column is not constrained.
fn wanted(ctx: &QueryContext, column: Column) -> Option<Vec<PathBuf>> {
    ctx.eq_values(column.name)
        .map(|vals| vals.iter().flat_map(|v| fs_safe::readings(v)).collect())
}

/// What one query needs beyond `statx`, decided once from `colsUsed`.
struct Scan<'a> {
    root: &'a Root,
    content: bool,
    symlink_target: bool,
    sha256: bool,
    exec_sha256: bool,
    /// `exec_exists`, `exec_uid`, `exec_mode`, `exec_sha256`: the program
    /// `Exec=` names is looked up (and its failures reported in `error`)
    /// only for these, as a file is hashed only for `sha256`.
    exec_target: bool,
    /// `SystemdService=` resolved to the unit systemd would load.
    systemd: bool,
    /// Loaded on first use, only when `package` is used.
    packages: Option<Arc<packages::Owners>>,
    want_packages: bool,
    /// `package_verified`, `changed_after_install`, `provenance`.
    integrity: bool,
    /// `exec_package`, `exec_provenance`, `exec_verified`, `exec_hijackable`.
    exec_integrity: bool,
    /// The root's passwd, loaded on first use (`User=` to a uid).
    accounts: Option<Vec<crate::sources::accounts::Account>>,
    config_errors: &'a [(PathBuf, String)],
    /// The columns the query reads.
    used: Used,
}

impl Scan<'_> {
    fn owners(&mut self) -> Option<&packages::Owners> {
        if !self.want_packages {
            return None;
        }
        let root = self.root;
        Some(self.packages.get_or_insert_with(|| packages::owners(root)))
    }
}

/// Every row at once (the embedded host, tests).
pub fn generate(settings: &Settings, ctx: &QueryContext) -> Vec<Row> {
    let mut rows = Vec::new();
    generate_into(settings, ctx, &mut rows);
    rows
}

/// The rows, each handed to `sink` once made: a host that encodes them
/// as they come never holds a whole scan's rows.
///
/// A query that reads `btime` where the kernel gives no birth times
/// (`statx` missing) is blind in that column: every row says NULL with the
/// reason, and the query is reported blind too, so a check that looks for
/// backdated files cannot pass for one that found none.
pub fn generate_into(settings: &Settings, ctx: &QueryContext, sink: &mut dyn RowSink) {
    scan_into(settings, ctx, sink);
    if ctx.uses(c::BTIME) && crate::sources::stat::statx_missing() {
        blind::report_column(
            c::BTIME.name,
            "cannot read file birth times",
            &crate::sources::stat::BTIME_NO_STATX,
        );
    }
}

fn scan_into(settings: &Settings, ctx: &QueryContext, sink: &mut dyn RowSink) {
    let root = match Root::open(&settings.root) {
        Ok(r) => r,
        Err(e) => {
            // Whatever the reason, even absence: the root asked for is
            // what was to be read.
            blind::report(
                "cannot open the root",
                &blind::innermost(&e),
                &fs_safe::render_path(e.path()),
            );
            let mut row = Row::new();
            row.set(c::PATH, "/").set(c::ERROR, e.to_string());
            sink.push(row);
            return;
        }
    };
    let used = ctx.used(&c::ALL);
    let want_dirs = wanted(ctx, c::DIRECTORY);
    let want_paths = wanted(ctx, c::PATH);
    // The directories a constraint can reach: a lookup needs nothing
    // else listed, and discovery probes only what can change their rows.
    // A directory's rows are its entries and, when it cannot be listed,
    // the directory itself. Sets, as this is asked of every directory of
    // every account (comparing `Path`s one by one walks their components).
    let dir_set: Option<HashSet<&Path>> = want_dirs
        .as_ref()
        .map(|w| w.iter().map(PathBuf::as_path).collect());
    let path_dirs: Option<HashSet<&Path>> = want_paths.as_ref().map(|w| {
        w.iter()
            .flat_map(|p| [Some(p.as_path()), p.parent()])
            .flatten()
            .collect()
    });
    let reachable = |dir: &ServiceDir| {
        dir_set
            .as_ref()
            .is_none_or(|w| w.contains(dir.path.as_path()))
            && path_dirs
                .as_ref()
                .is_none_or(|w| w.contains(dir.path.as_path()))
    };
    let found = if want_dirs.is_none() && want_paths.is_none() {
        service_dirs::discover(&root)
    } else {
        service_dirs::discover_narrowed(&root, &reachable)
    };
    let mut scan = Scan {
        root: &root,
        content: used.any(&c::NEEDS_CONTENT),
        symlink_target: ctx.uses(c::SYMLINK_TARGET),
        sha256: ctx.uses(c::SHA256),
        exec_sha256: ctx.uses(c::EXEC_SHA256),
        exec_target: used.any(&c::NEEDS_EXEC_TARGET),
        systemd: ctx.uses(c::SYSTEMD_UNIT_PATH)
            || ctx.uses(c::SYSTEMD_EXEC)
            || used.any(&c::NEEDS_EXEC_INTEGRITY),
        packages: None,
        want_packages: ctx.uses(c::PACKAGE)
            || used.any(&c::NEEDS_INTEGRITY)
            || used.any(&c::NEEDS_EXEC_INTEGRITY),
        integrity: used.any(&c::NEEDS_INTEGRITY),
        exec_integrity: used.any(&c::NEEDS_EXEC_INTEGRITY),
        accounts: None,
        config_errors: &found.config_errors,
        used: used.clone(),
    };
    // The shadow columns need the service files that can change the wanted
    // rows' verdicts resolved by name before the first row goes out.
    let names = used.any(&c::NEEDS_SHADOW).then(|| match &want_paths {
        Some(paths) => service_names::resolve_paths(&root, found.present(), paths),
        None => service_names::resolve(&root, found.present()),
    });
    let shadows = names.as_ref().map(Shadows);
    let mut rows = Emit {
        sink,
        shadows: shadows.as_ref(),
    };
    // Every directory up to the last one a constraint can reach is opened,
    // so that one reached through a duplicate path is dropped exactly as in
    // a full scan (the first path wins: later ones cannot change that).
    // Directories discovery found absent are not walked again.
    let take = found.present_through_last_reachable();
    // The entries' own package columns need only the entries' paths: the
    // databases are read for those alone. What the services run is known
    // only once each file is parsed, so the exec columns take the whole
    // index.
    if scan.want_packages && !scan.exec_integrity {
        scan.packages = Some(match &want_paths {
            Some(p) => packages::owners_of(
                &root,
                p.iter().map(|p| p.as_os_str().as_bytes()),
                scan.integrity,
            ),
            // The directories stand for their entries: the databases are
            // asked before anything is listed, and a repeat query finds
            // every entry answered (the ones added since too).
            None => {
                let dirs: Vec<&ServiceDir> = found
                    .present()
                    .take(take)
                    .filter(|d| {
                        dir_set
                            .as_ref()
                            .is_none_or(|w| w.contains(d.path.as_path()))
                    })
                    .collect();
                let named: Vec<PathBuf> = dirs
                    .iter()
                    .filter_map(|d| d.only.as_ref().map(|o| d.entry_path(o)))
                    .collect();
                packages::owners_in(
                    &root,
                    named.iter().map(|p| p.as_os_str().as_bytes()),
                    dirs.iter()
                        .filter(|d| d.only.is_none())
                        .map(|d| d.path.as_os_str().as_bytes()),
                    scan.integrity,
                )
            }
        });
    }
    service_dirs::visit(&root, found.present().take(take), |dir, opened| {
        if let Some(w) = &dir_set {
            if !w.contains(dir.path.as_path()) {
                return;
            }
        }
        match opened {
            Err(e) => {
                e.report_blind();
                let path = error_row_path(dir);
                if want_paths.as_ref().is_none_or(|w| w.contains(&path)) {
                    rows.push(dir_error_row(&scan.used, dir, e));
                }
            }
            Ok(open) => match &want_paths {
                None => list_all(&mut scan, dir, open, &mut rows),
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
                        rows.extend(entry_row(&mut scan, dir, open, &name, meta, None));
                    }
                }
            },
        }
    });
}

/// A row on its way to the sink, given its shadow columns when used.
struct Emit<'s, 'n> {
    sink: &'s mut dyn RowSink,
    shadows: Option<&'s Shadows<'n>>,
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

/// How much later than its package's install an entry's ctime may be and
/// still count as that install: dpkg writes the `.list` after unpacking
/// every file of the package.
pub const INSTALL_SLACK_SECS: i64 = 60;

/// Which file wins each name (`sources::service_names`), given to each row
/// as it is made. A row's path is rendered text: its readings are looked
/// up, and the provider must render back to it.
struct Shadows<'n>(&'n service_names::Names);

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

/// `path` always (the shadow columns find rows by it), the rest as used.
fn base_row(plain: &Used, dir: &ServiceDir, path: &Path) -> Row {
    let mut row = Row::new();
    row.set(c::PATH, fs_safe::render_path(path));
    plain.set(&mut row, c::DIRECTORY, || fs_safe::render_path(&dir.path));
    plain.set(&mut row, c::BUS, || dir.bus.as_str());
    plain.set(&mut row, c::SOURCE, || dir.origin.as_str());
    plain.set(&mut row, c::USER_UID, || dir.owner.as_ref().map(|o| o.uid));
    if let Some(name) = path.file_name() {
        plain.set(&mut row, c::FILENAME, || {
            fs_safe::render_path(Path::new(name))
        });
    }
    row
}

/// Whether a user other than root may create, rename or remove entries in
/// a directory with this metadata: a non-root owner with the owner write
/// bit, a non-root group with the group write bit, or the other write bit.
/// The sticky bit does not help: it only stops users removing each
/// other's files, anyone may still add one.
pub fn writable_by_non_root(m: &Metadata) -> bool {
    (m.uid != 0 && m.perm & 0o200 != 0)
        || (m.gid != 0 && m.perm & 0o020 != 0)
        || m.perm & 0o002 != 0
}

/// Collects the messages of everything that went wrong with one row.
#[derive(Default)]
pub(crate) struct Errors(Vec<String>);

impl Errors {
    fn push(&mut self, e: impl ToString) {
        self.0.push(e.to_string());
    }

    fn apply(self, row: &mut Row) {
        if !self.0.is_empty() {
            row.set(c::ERROR, self.0.join("; "));
        }
    }
}

/// The row for one entry. An entry that vanished between `readdir` and
/// `statx` is skipped (a later scan would not see it either); any other
/// failure still yields the row, with `error` and the type `readdir` saw.
fn entry_row(
    scan: &mut Scan,
    dir: &ServiceDir,
    open: &OpenDir,
    name: &OsStr,
    meta: Result<Metadata, StatError>,
    dirent_kind: Option<FileKind>,
) -> Option<Row> {
    let path = dir.entry_path(name);
    let plain = &scan.used;
    let mut row = base_row(plain, dir, &path);
    let kind = dir.kind_of(name);
    let mut errors = Errors::default();
    plain.set(&mut row, c::KIND, || kind.as_str());
    plain.set(&mut row, c::DIR_WRITABLE_BY_NON_ROOT, || {
        writable_by_non_root(&open.meta)
    });
    let meta = match meta {
        Ok(m) => m,
        Err(e) if e.is_not_found() => return None,
        Err(e) => {
            blind::report_os_error(
                service_dirs::CANNOT_STAT,
                &e,
                &fs_safe::render_path(&e.path),
            );
            plain.set(&mut row, c::TYPE, || dirent_kind.map(FileKind::as_str));
            errors.push(e);
            errors.apply(&mut row);
            return Some(row);
        }
    };
    plain.set(&mut row, c::TYPE, || meta.kind.as_str());
    plain.set(&mut row, c::UID, || meta.uid);
    plain.set(&mut row, c::GID, || meta.gid);
    plain.set(&mut row, c::MODE, || meta.mode_string());
    plain.set(&mut row, c::SIZE, || meta.size);
    plain.set(&mut row, c::ATIME, || meta.atime);
    plain.set(&mut row, c::MTIME, || meta.mtime);
    plain.set(&mut row, c::CTIME, || meta.ctime);
    plain.set(&mut row, c::BTIME, || meta.btime);
    plain.set(&mut row, c::BTIME_MISSING, || meta.btime_missing);
    plain.set(&mut row, c::INODE, || meta.ino);
    plain.set(&mut row, c::HARD_LINKS, || meta.nlink);
    plain.set(&mut row, c::DEVICE, || {
        format!("{}:{}", meta.dev.0, meta.dev.1)
    });
    // A symlink's own mode is always 0777 and means nothing.
    plain.set(&mut row, c::WORLD_WRITABLE, || {
        meta.kind != FileKind::Symlink && meta.perm & 0o002 != 0
    });
    if meta.kind == FileKind::Symlink && scan.symlink_target {
        match fs_safe::read_link_entry(open.fd(), name) {
            Ok(t) => {
                row.set(c::SYMLINK_TARGET, fs_safe::render(&t));
            }
            Err(rustix::io::Errno::NOENT) => return None,
            Err(e) => errors.push(format!("{}: readlink: {}", fs_safe::render_path(&path), e)),
        }
    }
    let regular = meta.kind == FileKind::Regular;
    if regular && scan.sha256 {
        match fs_safe::open_entry_as_stated(open.fd(), name, &path, meta.id()) {
            Ok(o) => match hash::sha256_file(o.file, &path) {
                Ok(h) => {
                    row.set(c::SHA256, h);
                }
                Err(e) => errors.push(e),
            },
            Err(e) if e.is_not_found() => return None,
            Err(e) => errors.push(e),
        }
    }
    if kind == EntryKind::Service && regular && scan.content {
        service_columns(scan, open, name, &path, &meta, &mut row, &mut errors)?;
        let unit_program = if scan.systemd {
            systemd_columns(scan, dir, &mut row, &mut errors)
        } else {
            None
        };
        if scan.exec_integrity {
            let program = unit_program.or_else(|| match row.get(c::EXEC_PATH) {
                Some(Value::Text(p)) if !p.is_empty() => Some(p.clone()),
                _ => None,
            });
            if let Some(program) = program {
                exec_integrity(scan, dir, &program, &mut row, &mut errors);
            }
        }
    }
    if matches!(kind, EntryKind::Config | EntryKind::Policy) {
        for (p, e) in scan.config_errors {
            if *p == path {
                errors.push(e);
            }
        }
    }
    let integrity = scan.integrity;
    if let Some(owners) = scan.owners() {
        let bytes = path.as_os_str().as_bytes();
        row.set(c::PACKAGE, owners.owner(bytes));
        if integrity {
            let owned = owners.lookup(bytes);
            let verified = if regular {
                verify(owned.as_ref(), &path, &mut errors, || {
                    fs_safe::open_entry_regular(open.fd(), name, &path)
                })
            } else {
                None
            };
            row.set(c::PACKAGE_VERIFIED, verified)
                .set(
                    c::CHANGED_AFTER_INSTALL,
                    changed_after_install(owned.as_ref(), meta.ctime),
                )
                .set(
                    c::PROVENANCE,
                    provenance(owned.as_ref(), dir, open, name, &meta, &path),
                );
        }
    }
    errors.apply(&mut row);
    Some(row)
}

/// `package_verified`: whether the file matches any digest the owning
/// package manager recorded for its path. `None` when nothing is recorded
/// or the file cannot be read (the reason goes to `errors`).
pub(crate) fn verify(
    owned: Option<&packages::Ownership>,
    path: &Path,
    errors: &mut Errors,
    open: impl Fn() -> Result<std::fs::File, fs_safe::FsError>,
) -> Option<bool> {
    let digests = &owned?.digests;
    if digests.is_empty() {
        return None;
    }
    let mut algos: Vec<hash::Algo> = digests.iter().map(|d| d.algo).collect();
    algos.sort();
    algos.dedup();
    for algo in algos {
        let got = match open()
            .map_err(|e| e.to_string())
            .and_then(|f| hash::digest_file(f, algo, path).map_err(|e| e.to_string()))
        {
            Ok(h) => h,
            Err(e) => {
                errors.push(format!("verify: {e}"));
                return None;
            }
        };
        if digests.iter().any(|d| d.algo == algo && d.hex == got) {
            return Some(true);
        }
    }
    Some(false)
}

/// `changed_after_install`: ctime later than the owners' latest install
/// by more than [`INSTALL_SLACK_SECS`].
pub(crate) fn changed_after_install(
    owned: Option<&packages::Ownership>,
    ctime: i64,
) -> Option<bool> {
    let installed = owned?.installed()?;
    Some(ctime > installed.saturating_add(INSTALL_SLACK_SECS))
}

/// `provenance`: the package manager that owns the entry, else flatpak for
/// an export symlink into an installed app's deployment, snap for snapd's
/// own directory, else none (NULL with no package database at all).
fn provenance(
    owned: Option<&packages::Ownership>,
    dir: &ServiceDir,
    open: &OpenDir,
    name: &OsStr,
    meta: &Metadata,
    path: &Path,
) -> Option<&'static str> {
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
pub(crate) fn lexical_join(base: &Path, target: &Path) -> PathBuf {
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

/// Reads and parses a regular `.service` entry (never following it, at
/// most [`MAX_SERVICE_BYTES`]) and fills the parsed-key and Exec-target
/// columns. A file larger than the cap has its first 64 KiB parsed, up to
/// the last whole line, and says so in `error`. `None` when the file
/// vanished since it was listed. The row's own `statx` (`meta`, which
/// showed a regular file) is the probe before the open.
fn service_columns(
    scan: &Scan,
    open: &OpenDir,
    name: &OsStr,
    path: &Path,
    meta: &Metadata,
    row: &mut Row,
    errors: &mut Errors,
) -> Option<()> {
    let size = meta.size;
    let read = fs_safe::open_entry_as_stated(open.fd(), name, path, meta.id())
        .and_then(|o| o.read_capped(MAX_SERVICE_BYTES, path));
    let (mut bytes, truncated) = match read {
        Ok(r) => r,
        Err(e) if e.is_not_found() => return None,
        Err(e) => {
            blind::report_os_error(service_dirs::CANNOT_READ, &e, &fs_safe::render_path(path));
            errors.push(e);
            return Some(());
        }
    };
    if truncated {
        let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        bytes.truncate(keep);
        let refused = if size > DBUS_DAEMON_MAX_SERVICE_BYTES {
            " (dbus-daemon refuses files over 128 KiB)"
        } else {
            ""
        };
        errors.push(format!(
            "{}: larger than {MAX_SERVICE_BYTES} bytes; only the first {MAX_SERVICE_BYTES} parsed{refused}",
            fs_safe::render_path(path)
        ));
    }
    let parsed = match service_file::parse(&bytes) {
        Ok(p) => p,
        Err(e) => {
            errors.push(format!("{}: {e}", fs_safe::render_path(path)));
            return Some(());
        }
    };
    if !parsed.problems.is_empty() {
        errors.push(format!(
            "{}: dbus-daemon would refuse this file: {}",
            fs_safe::render_path(path),
            parsed.problems.join(", ")
        ));
    }
    let filename = name.as_bytes();
    row.set(
        c::NAME_MATCHES_FILENAME,
        parsed.name.as_ref().map(|n| {
            let mut want = n.as_bytes().to_vec();
            want.extend_from_slice(b".service");
            want == filename
        }),
    );
    if let Some(exec) = &parsed.exec {
        match service_file::split_exec(exec) {
            Ok(argv) => {
                if let Some(program) = argv.first() {
                    row.set(c::EXEC_PATH, program.as_str());
                    if program.is_empty() {
                        // dbus-daemon would exec "" and fail.
                        errors.push(format!(
                            "{}: Exec names no program",
                            fs_safe::render_path(path)
                        ));
                    } else if scan.exec_target {
                        exec_target(scan, program, row, errors);
                    }
                }
            }
            Err(e) => errors.push(format!("{}: {e}", fs_safe::render_path(path))),
        }
    }
    row.set(c::SERVICE_NAME, parsed.name)
        .set(c::EXEC, parsed.exec_as_written)
        .set(c::RUN_AS_USER, parsed.user)
        .set(c::SYSTEMD_SERVICE, parsed.systemd_service)
        .set(c::ASSUMED_APPARMOR_LABEL, parsed.assumed_apparmor_label);
    Some(())
}

/// Where `SystemdService=` leads: the unit file systemd would load for it
/// (system units for the system bus, the owning account's user units for
/// a session file in a home) and its effective `ExecStart=` lines, which
/// is what really runs when the bus hands activation to systemd.
///
/// Returns the program the unit's first `ExecStart=` runs (prefixes
/// `-@+!:|` stripped), the target the exec integrity columns describe.
fn systemd_columns(
    scan: &Scan,
    dir: &ServiceDir,
    row: &mut Row,
    errors: &mut Errors,
) -> Option<String> {
    let Some(Value::Text(unit)) = row.get(c::SYSTEMD_SERVICE).cloned() else {
        return None;
    };
    let scope = match dir.bus {
        service_dirs::Bus::System => unit_files::Scope::System,
        service_dirs::Bus::Session => unit_files::Scope::User {
            uid: dir.owner.as_ref().map(|o| o.uid),
            home: dir.owner.as_ref().map(|o| o.home.clone()),
        },
    };
    match unit_files::resolve(scan.root, &unit, &scope) {
        Ok(Some(u)) => {
            row.set(c::SYSTEMD_UNIT_PATH, fs_safe::render_path(&u.path));
            // A masked unit runs nothing: empty, unlike NULL (no unit).
            let exec = if u.masked {
                String::new()
            } else {
                u.exec_start.join(" ; ")
            };
            row.set(c::SYSTEMD_EXEC, exec);
            if !u.masked {
                return u.exec_start.first().and_then(|l| exec_start_program(l));
            }
        }
        Ok(None) => {}
        Err(e) => errors.push(format!("SystemdService={unit}: {e}")),
    }
    None
}

/// The program of one `ExecStart=` line: special prefixes (`-@+!:|`, in
/// any combination) stripped, then the first word, unquoted by the same
/// rules as `Exec=`.
pub(crate) fn exec_start_program(line: &str) -> Option<String> {
    let rest = line
        .trim_start()
        .trim_start_matches(['-', '@', '+', '!', ':', '|']);
    service_file::split_exec(rest)
        .ok()?
        .into_iter()
        .next()
        .filter(|p| !p.is_empty())
}

/// `exec_package`, `exec_provenance`, `exec_verified` and
/// `exec_hijackable` for the program a service runs, resolved inside the
/// root through every symlink (the bus, or systemd, runs the final file).
fn exec_integrity(
    scan: &mut Scan,
    dir: &ServiceDir,
    program: &str,
    row: &mut Row,
    errors: &mut Errors,
) {
    let Some(inner) = fs_safe::readings(program).pop() else {
        return;
    };
    let written = Path::new("/").join(inner);
    let Ok(fd) = scan.root.open_path(&written) else {
        // exec_exists says it is missing; nothing to attribute.
        return;
    };
    let canonical = scan
        .root
        .inner_path(rustix::fd::AsFd::as_fd(&fd))
        .unwrap_or_else(|| written.clone());
    let runner = runner_uid(scan, dir, row);
    let hijack = hijackable(scan.root, &written, &canonical, runner);
    let root = scan.root;
    if let Some(owners) = scan.owners() {
        let mut owned = owners.lookup(canonical.as_os_str().as_bytes());
        if owned.as_ref().is_some_and(|o| o.packages.is_empty()) {
            owned = owners.lookup(written.as_os_str().as_bytes());
        }
        let names = owned.as_ref().map(|o| {
            o.packages
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        });
        let verified = verify(owned.as_ref(), &canonical, errors, || {
            root.open_regular(&canonical)
        });
        row.set(c::EXEC_PACKAGE, names)
            .set(c::EXEC_VERIFIED, verified)
            .set(
                c::EXEC_PROVENANCE,
                exec_provenance(owned.as_ref(), &canonical),
            );
    } else {
        row.set(c::EXEC_PROVENANCE, exec_provenance(None, &canonical));
    }
    row.set(c::EXEC_HIJACKABLE, hijack);
}

/// Who a program is installed by: its package manager, a flatpak app
/// deployment, a snap, else none (NULL without a package database).
fn exec_provenance(owned: Option<&packages::Ownership>, canonical: &Path) -> Option<&'static str> {
    if let Some(p) = owned.and_then(|o| o.packages.first()) {
        return Some(p.format.as_str());
    }
    let s = canonical.to_string_lossy();
    if s.starts_with("/var/lib/flatpak/app/") || s.contains("/.local/share/flatpak/app/") {
        return Some("flatpak");
    }
    if s.starts_with("/snap/") {
        return Some("snap");
    }
    owned.map(|_| "none")
}

/// The uid a service runs as, when it is one account: `User=` (root when
/// absent) on the system bus, the home's owner for a per-user session
/// file. `None` for a system-wide session file, which every user's session
/// may run: then only root may own what it runs.
fn runner_uid(scan: &mut Scan, dir: &ServiceDir, row: &Row) -> Option<u32> {
    match dir.bus {
        service_dirs::Bus::Session => dir.owner.as_ref().map(|o| o.uid),
        service_dirs::Bus::System => {
            let user = match row.get(c::RUN_AS_USER) {
                Some(Value::Text(u)) => u.clone(),
                _ => return Some(0),
            };
            let host = scan.root.host_path().to_path_buf();
            let accounts = scan.accounts.get_or_insert_with(|| {
                crate::sources::accounts::read_passwd(&host)
                    .map(|p| p.entries)
                    .unwrap_or_default()
            });
            accounts
                .iter()
                .find(|a| a.username == user)
                .map(|a| a.uid)
                .or_else(|| user.parse().ok())
        }
    }
}

/// Whether an account other than root and `runner` could replace what
/// runs: the target, or any directory on the way to it (as written and as
/// resolved), is owned by such an account, or writable by a non-root
/// group or by others. A sticky directory stops others only from
/// replacing entries they do not own, so it counts only when the next
/// entry is not owned by root or the runner. `None` when the path cannot
/// be examined.
pub(crate) fn hijackable(
    root: &Root,
    written: &Path,
    canonical: &Path,
    runner: Option<u32>,
) -> Option<bool> {
    let allowed = |uid: u32| uid == 0 || Some(uid) == runner;
    let mut chain: Vec<Metadata> = Vec::new();
    let mut any = false;
    for path in [canonical, written] {
        let mut prefixes: Vec<PathBuf> = path.ancestors().map(Path::to_path_buf).collect();
        prefixes.reverse();
        chain.clear();
        for p in prefixes {
            let fd = root.open_path(&p).ok()?;
            chain.push(stat::stat_fd(&fd, p).ok()?);
        }
        for (i, m) in chain.iter().enumerate() {
            let next_owned_ok = chain.get(i + 1).is_some_and(|n| allowed(n.uid));
            let sticky_dir = m.kind == FileKind::Directory && m.perm & 0o1000 != 0;
            let others = m.perm & 0o002 != 0 && !(sticky_dir && next_owned_ok);
            let group = m.gid != 0 && m.perm & 0o020 != 0 && !(sticky_dir && next_owned_ok);
            if !allowed(m.uid) || group || others {
                any = true;
            }
        }
    }
    Some(any)
}

/// Metadata (and, when used, the hash) of the program an `Exec=` line
/// starts, resolved inside the root *following* symlinks: the bus execs
/// the link's target, so that is the program to describe. A relative
/// program counts from `/`, the bus's working directory.
fn exec_target(scan: &Scan, program: &str, row: &mut Row, errors: &mut Errors) {
    let Some(inner) = fs_safe::readings(program).pop() else {
        return;
    };
    let inner = Path::new("/").join(inner);
    match scan.root.open_path(&inner) {
        Ok(fd) => match stat::stat_fd(&fd, inner.clone()) {
            Ok(m) => {
                row.set(c::EXEC_EXISTS, true)
                    .set(c::EXEC_UID, m.uid)
                    .set(c::EXEC_MODE, m.mode_string());
            }
            Err(e) => errors.push(format!("Exec target {e}")),
        },
        Err(e) if e.is_not_found() || e.errno() == Some(rustix::io::Errno::NOTDIR) => {
            row.set(c::EXEC_EXISTS, false);
            return;
        }
        Err(e) => {
            errors.push(format!("Exec target {e}"));
            return;
        }
    }
    if scan.exec_sha256 {
        match scan.root.open_regular(&inner) {
            Ok(f) => match hash::sha256_file(f, &inner) {
                Ok(h) => {
                    row.set(c::EXEC_SHA256, h);
                }
                Err(e) => errors.push(format!("Exec target {e}")),
            },
            Err(e) => errors.push(format!("Exec target {e}")),
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
    use crate::context::Op;
    use std::collections::BTreeMap;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn text(row: &Row, col: &str) -> Option<String> {
        row.text(col).map(str::to_string)
    }

    fn int(row: &Row, col: &str) -> Option<i64> {
        row.int(col)
    }

    fn settings(root: &Path) -> Settings {
        Settings {
            root: root.to_path_buf(),
            proc: PathBuf::from("/proc"),
        }
    }

    fn by_path(rows: &[Row]) -> BTreeMap<String, Row> {
        rows.iter()
            .map(|r| (text(r, "path").unwrap(), r.clone()))
            .collect()
    }

    /// A small image: merged /usr, homes outside /home, a home that links
    /// to `/`, one of each file type, a non-UTF-8 name.
    fn fixture() -> (tempfile::TempDir, tempfile::TempDir) {
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
        std::fs::set_permissions(s.join("suid.service"), PermissionsExt::from_mode(0o4755))
            .unwrap();
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
        assert!(full.values().all(|r| r.get("directory").is_some()));
    }

    /// The program `Exec=` names is looked up only for the columns about
    /// it; a query of the parsed keys alone neither fills them nor reports
    /// their failures (a symlink loop here), and agrees with the full scan
    /// on everything else.
    #[test]
    fn exec_target_only_when_its_columns_are_used() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        let d = r.join("usr/share/dbus-1/services");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::write(r.join("usr/bin/okd"), b"#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/usr/bin/loop", r.join("usr/bin/loop")).unwrap();
        for (name, exec) in [
            ("org.ok", "/usr/bin/okd --x"),
            ("org.loop", "/usr/bin/loop"),
        ] {
            let body = format!("[D-BUS Service]\nName={name}\nExec={exec}\n");
            std::fs::write(d.join(format!("{name}.service")), body).unwrap();
        }
        let full = by_path(&generate(&settings(r), &QueryContext::new()));
        let mut ctx = QueryContext::new();
        ctx.set_cols_used(["path", "service_name", "exec_path", "error"]);
        let narrow = by_path(&generate(&settings(r), &ctx));
        let ok = "/usr/share/dbus-1/services/org.ok.service";
        let lp = "/usr/share/dbus-1/services/org.loop.service";
        assert_eq!(full[ok].get("exec_exists"), Some(&Value::from(true)));
        assert!(text(&full[lp], "error").unwrap().contains("Exec target"));
        for path in [ok, lp] {
            for c in [
                "exec_exists",
                "exec_uid",
                "exec_mode",
                "exec_sha256",
                "error",
            ] {
                assert_eq!(narrow[path].get(c), None, "{path}: {c}");
            }
            for c in ["service_name", "exec_path"] {
                assert_eq!(narrow[path].get(c), full[path].get(c), "{path}: {c}");
            }
        }
        ctx.set_cols_used(["path", "exec_mode"]);
        let mode = by_path(&generate(&settings(r), &ctx));
        assert_eq!(mode[ok].get("exec_mode"), full[ok].get("exec_mode"));
    }

    #[test]
    fn full_scan_of_a_fixture_root() {
        let (tmp, _outside) = fixture();
        let rows = generate(&settings(tmp.path()), &QueryContext::new());
        let m = by_path(&rows);
        assert_eq!(m.len(), rows.len(), "no duplicate rows");
        let paths: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "/etc/dbus-1/system.conf",
                "/etc/dbus-1/system.d/README",
                "/etc/dbus-1/system.d/evil.conf",
                "/home/eve/.local/share/dbus-1/services/org.rootish.service",
                "/lib/dbus-1/system-services/org.lib.service",
                "/srv/alice/.local/share/dbus-1/services/org.alice.service",
                "/usr/share/dbus-1/services/bad\\xfe.service",
                "/usr/share/dbus-1/services/bad\\xff.service",
                "/usr/share/dbus-1/services/link.service",
                "/usr/share/dbus-1/services/pipe.service",
                "/usr/share/dbus-1/services/sock",
                "/usr/share/dbus-1/services/subdir",
                "/usr/share/dbus-1/services/suid.service",
                "/usr/share/dbus-1/session.conf",
                "/usr/share/dbus-1/system-services/.hidden.service",
                "/usr/share/dbus-1/system-services/org.a.service",
            ]
        );
        // eve's home links to `/`, meaning the image's `/`; toor's home is
        // that same directory, so only eve's (first) path lists it.
        let rootish = &m["/home/eve/.local/share/dbus-1/services/org.rootish.service"];
        assert_eq!(int(rootish, "user_uid"), Some(1002));
        assert_eq!(
            text(rootish, "directory").unwrap(),
            "/home/eve/.local/share/dbus-1/services"
        );
        // The fixture's service files are empty: a parse error each, and
        // nothing else went wrong.
        for r in &rows {
            if let Some(e) = text(r, "error") {
                assert!(e.ends_with(": no [D-BUS Service] group"), "{e}");
                assert_eq!(text(r, "kind").unwrap(), "service");
            }
        }

        let evil = &m["/etc/dbus-1/system.d/evil.conf"];
        assert_eq!(text(evil, "directory").unwrap(), "/etc/dbus-1/system.d");
        assert_eq!(text(evil, "filename").unwrap(), "evil.conf");
        assert_eq!(text(evil, "bus").unwrap(), "system");
        assert_eq!(text(evil, "kind").unwrap(), "policy");
        assert_eq!(text(evil, "type").unwrap(), "regular");
        assert_eq!(
            text(&m["/etc/dbus-1/system.d/README"], "kind").unwrap(),
            "other"
        );
        let conf = &m["/etc/dbus-1/system.conf"];
        assert_eq!(text(conf, "kind").unwrap(), "config");
        assert_eq!(text(conf, "directory").unwrap(), "/etc/dbus-1");
        let sess = &m["/usr/share/dbus-1/session.conf"];
        assert_eq!(text(sess, "bus").unwrap(), "session");
        assert_eq!(text(sess, "kind").unwrap(), "config");

        let suid = &m["/usr/share/dbus-1/services/suid.service"];
        assert_eq!(text(suid, "mode").unwrap(), "4755");
        assert_eq!(int(suid, "uid"), Some(4242));
        assert_eq!(int(suid, "gid"), Some(4243));
        assert_eq!(int(suid, "size"), Some(5));
        assert_eq!(text(suid, "kind").unwrap(), "service");
        assert_eq!(text(suid, "bus").unwrap(), "session");
        assert_eq!(int(suid, "user_uid"), None);
        // A birth time, or NULL with the reason (tmpfs records none; a
        // kernel without statx gives none).
        match int(suid, "btime") {
            Some(b) => assert!(b > 1_600_000_000 && text(suid, "btime_missing").is_none()),
            None => assert!(text(suid, "btime_missing").is_some_and(|w| !w.is_empty())),
        }
        assert!(int(suid, "mtime").unwrap() > 1_600_000_000);
        let ty = |p: &str| text(&m[&format!("/usr/share/dbus-1/services/{p}")], "type");
        assert_eq!(ty("link.service").unwrap(), "symlink");
        assert_eq!(ty("pipe.service").unwrap(), "fifo");
        assert_eq!(ty("sock").unwrap(), "socket");
        assert_eq!(ty("subdir").unwrap(), "directory");
        assert_eq!(
            text(&m["/usr/share/dbus-1/services/sock"], "kind").unwrap(),
            "other"
        );
        let bad = &m["/usr/share/dbus-1/services/bad\\xff.service"];
        assert_eq!(text(bad, "filename").unwrap(), "bad\\xff.service");
        assert_eq!(text(bad, "kind").unwrap(), "service");

        let alice = &m["/srv/alice/.local/share/dbus-1/services/org.alice.service"];
        assert_eq!(int(alice, "user_uid"), Some(1000));
        assert_eq!(text(alice, "bus").unwrap(), "session");
        let lib = &m["/lib/dbus-1/system-services/org.lib.service"];
        assert_eq!(
            text(lib, "directory").unwrap(),
            "/lib/dbus-1/system-services"
        );
        assert_eq!(
            text(
                &m["/usr/share/dbus-1/system-services/.hidden.service"],
                "kind"
            )
            .unwrap(),
            "service"
        );
    }

    #[test]
    fn a_home_linked_to_root_never_escapes() {
        let (tmp, outside) = fixture();
        let rows = generate(&settings(tmp.path()), &QueryContext::new());
        let root = Root::open(tmp.path()).unwrap();
        for r in &rows {
            let p = text(r, "path").unwrap();
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
            .all(|r| text(r, "path").unwrap() != "/usr/share/dbus-1/system.conf"));
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
            text(&rows[0], "path").unwrap(),
            "/usr/local/share/dbus-1/services/a.service"
        );
    }

    fn ctx_with(col: &str, values: &[&str]) -> QueryContext {
        let mut ctx = QueryContext::new();
        for v in values {
            ctx.add_constraint(col, Op::Eq, *v);
        }
        ctx
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
        assert_eq!(text(&full[x], "kind").as_deref(), Some("service"));
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
                int(row, "search_order"),
                int(row, "effective"),
                text(row, "shadowed_by"),
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
        let dirs: BTreeSet<String> = full.iter().map(|r| text(r, "directory").unwrap()).collect();
        for d in &dirs {
            let expect: Vec<&Row> = full
                .iter()
                .filter(|r| text(r, "directory").as_ref() == Some(d))
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
        assert_eq!(text(notdir, "type").unwrap(), "regular");
        assert!(text(notdir, "error").unwrap().contains("not a directory"));
        let looped = &rows["/etc/dbus-1/session.d"];
        assert_eq!(text(looped, "bus").unwrap(), "session");
        assert!(text(looped, "error").is_some());
        assert_eq!(rows.len(), 2, "{rows:#?}");
        // The same rows through pushdown.
        let got = generate(&s, &ctx_with("directory", &["/etc/dbus-1/system.d"]));
        assert_eq!(got.len(), 1);
        let got = generate(&s, &ctx_with("path", &["/etc/dbus-1/session.d"]));
        assert_eq!(got.len(), 1);
        // No root at all: one row saying so, no panic.
        let gone = generate(&settings(&r.join("missing")), &QueryContext::new());
        assert_eq!(gone.len(), 1);
        assert!(text(&gone[0], "error").is_some());
    }

    /// A scan wanting everything about the file itself (no package database).
    fn file_scan(root: &Root) -> Scan<'_> {
        Scan {
            root,
            content: true,
            symlink_target: true,
            sha256: true,
            exec_sha256: true,
            exec_target: true,
            systemd: true,
            packages: None,
            want_packages: false,
            integrity: false,
            exec_integrity: false,
            accounts: None,
            config_errors: &[],
            used: QueryContext::new().used(&c::ALL),
        }
    }

    #[test]
    fn a_failed_stat_still_yields_a_row_and_a_vanished_entry_none() {
        let dir = service_dirs::standard_dirs()
            .into_iter()
            .find(|d| d.path == Path::new("/etc/dbus-1/system.d"))
            .unwrap();
        let err = |errno: rustix::io::Errno| StatError {
            path: dir.entry_path(OsStr::new("x.conf")),
            source: errno.into(),
        };
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("etc/dbus-1/system.d")).unwrap();
        let root = Root::open(tmp.path()).unwrap();
        let open = service_dirs::open(&root, &dir).unwrap().unwrap();
        let mut scan = file_scan(&root);
        let row = entry_row(
            &mut scan,
            &dir,
            &open,
            OsStr::new("x.conf"),
            Err(err(rustix::io::Errno::ACCESS)),
            Some(FileKind::Regular),
        )
        .unwrap();
        assert_eq!(text(&row, "path").unwrap(), "/etc/dbus-1/system.d/x.conf");
        assert_eq!(text(&row, "kind").unwrap(), "policy");
        assert_eq!(text(&row, "type").unwrap(), "regular");
        assert!(text(&row, "error").unwrap().contains("ermission denied"));
        assert_eq!(row.get("uid"), None);
        let gone = entry_row(
            &mut scan,
            &dir,
            &open,
            OsStr::new("x.conf"),
            Err(err(rustix::io::Errno::NOENT)),
            None,
        );
        assert!(gone.is_none());
    }

    /// The row's `statx` is the probe before a service file is opened: an
    /// entry swapped after it (for a FIFO, a symlink to a readable service
    /// file, another file renamed over it) still yields its row, with the
    /// swap in `error` and nothing parsed: never a hang, never a followed
    /// link, never another file's keys.
    #[test]
    fn an_entry_swapped_after_its_stat_yields_the_row_with_an_error() {
        let dir = service_dirs::standard_dirs()
            .into_iter()
            .find(|d| d.path == Path::new("/usr/share/dbus-1/services"))
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("usr/share/dbus-1/services");
        std::fs::create_dir_all(&d).unwrap();
        let body = b"[D-BUS Service]\nName=org.swap\nExec=/bin/swap\n";
        std::fs::write(tmp.path().join("decoy.service"), body).unwrap();
        let root = Root::open(tmp.path()).unwrap();
        let open = service_dirs::open(&root, &dir).unwrap().unwrap();
        let mut scan = file_scan(&root);
        let name = OsStr::new("org.swap.service");
        let f = d.join(name);
        let swaps: [(&str, &dyn Fn()); 3] = [
            ("fifo", &|| {
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &f,
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o644),
                    0,
                )
                .unwrap()
            }),
            ("symlink", &|| {
                std::os::unix::fs::symlink(tmp.path().join("decoy.service"), &f).unwrap()
            }),
            ("renamed", &|| {
                let other = d.join("other");
                std::fs::write(&other, body).unwrap();
                std::fs::rename(&other, &f).unwrap();
            }),
        ];
        for (what, swap) in swaps {
            std::fs::write(&f, body).unwrap();
            let meta = open.stat(&dir, name);
            assert_eq!(meta.as_ref().unwrap().kind, FileKind::Regular);
            // Kept, so that no new file gets its inode back.
            std::fs::rename(&f, tmp.path().join(what)).unwrap();
            swap();
            let row = entry_row(&mut scan, &dir, &open, name, meta, None).unwrap();
            let error = text(&row, "error").unwrap_or_default();
            assert!(
                error.contains("changed while being opened"),
                "{what}: {error}"
            );
            assert_eq!(row.get("service_name"), None, "{what}");
            assert_eq!(row.get("sha256"), None, "{what}");
            std::fs::remove_file(&f).unwrap();
        }
        // Unswapped, the same stat reads the file.
        std::fs::write(&f, body).unwrap();
        let meta = open.stat(&dir, name);
        let row = entry_row(&mut scan, &dir, &open, name, meta, None).unwrap();
        assert_eq!(text(&row, "service_name").unwrap(), "org.swap");
        assert!(row.get("sha256").is_some());
    }

    #[test]
    fn writable_by_non_root_cases() {
        let m = |uid, gid, perm| Metadata {
            kind: FileKind::Directory,
            perm,
            uid,
            gid,
            size: 0,
            dev: (0, 0),
            ino: 1,
            nlink: 2,
            atime: 0,
            mtime: 0,
            ctime: 0,
            btime: None,
            btime_missing: None,
        };
        assert!(!writable_by_non_root(&m(0, 0, 0o755)));
        assert!(!writable_by_non_root(&m(0, 0, 0o775)), "root group");
        assert!(!writable_by_non_root(&m(1000, 0, 0o555)));
        assert!(writable_by_non_root(&m(1000, 0, 0o755)));
        assert!(writable_by_non_root(&m(0, 100, 0o775)));
        assert!(
            writable_by_non_root(&m(0, 0, 0o1777)),
            "sticky still lets anyone add"
        );
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
        let local = text(&rows["/etc/dbus-1/system-local.conf"], "error").unwrap();
        assert!(
            local.starts_with("/etc/dbus-1/system-local.conf: XML"),
            "{local}"
        );
        let a = text(&rows["/etc/dbus-1/system.d/a.conf"], "error").unwrap();
        assert!(a.contains("includes /nowhere.conf"), "{a}");
        let x = &rows["/usr/share/dbus-1/services/x.service"];
        assert_eq!(text(x, "service_name").unwrap(), "x");
        assert_eq!(int(x, "name_matches_filename"), Some(1));
        // A stat-only query reads no contents.
        let mut ctx = QueryContext::new();
        ctx.set_cols_used(["path", "mtime"]);
        let rows = by_path(&generate(&s, &ctx));
        let x = &rows["/usr/share/dbus-1/services/x.service"];
        assert_eq!(x.get("service_name"), None);
        assert_eq!(x.get("sha256"), None);
        assert_eq!(x.get("package"), None);
    }

    #[test]
    fn a_directory_named_in_two_roles_is_read_both_ways_once() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        let w = |p: &str, b: &[u8]| {
            let p = r.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b).unwrap();
        };
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
        let kind = |p: &str| text(&m[p], "kind").unwrap();
        let sneaky = &m["/etc/dbus-1/system.d/sneaky.service"];
        assert_eq!(kind("/etc/dbus-1/system.d/sneaky.service"), "service");
        assert_eq!(text(sneaky, "service_name").unwrap(), "sneaky");
        assert_eq!(text(sneaky, "source").unwrap(), "standard");
        assert_eq!(kind("/etc/dbus-1/system.d/p.conf"), "policy");
        assert_eq!(kind("/usr/share/dbus-1/services/extra.conf"), "policy");
        assert_eq!(kind("/usr/share/dbus-1/services/a.service"), "service");
        // /etc/passwd named as a directory twice: one error row.
        let passwd = &m["/etc/passwd"];
        assert_eq!(text(passwd, "source").unwrap(), "config");
        assert!(text(passwd, "error").unwrap().contains("not a directory"));
    }

    fn md5_hex(b: &[u8]) -> String {
        use md5::Digest;
        md5::Md5::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    }

    fn set_mtime(p: &Path, secs_ago: u64) {
        let t = std::time::SystemTime::now() - std::time::Duration::from_secs(secs_ago);
        std::fs::File::options()
            .append(true)
            .open(p)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    /// A dpkg database with an edited (mtime put back), an untouched, a
    /// conffile and an unowned file, a flatpak export and a snapd file.
    #[test]
    fn integrity_columns_from_a_dpkg_database() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        let w = |p: &str, b: &[u8]| {
            let p = r.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b).unwrap();
        };
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
                text(row, "provenance"),
                int(row, "package_verified"),
                int(row, "changed_after_install"),
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
        assert!(rows.iter().all(|r| r.get("provenance").is_none()));
        // No package database: NULL, flatpak and snap still known.
        std::fs::remove_dir_all(r.join("var/lib/dpkg")).unwrap();
        let m = by_path(&generate(&settings(r), &QueryContext::new()));
        assert_eq!(
            text(&m["/etc/dbus-1/system.d/planted.conf"], "provenance"),
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

    /// Root services and what they run: a packaged program left alone, one
    /// made world-writable, one in a directory a user owns, one replaced,
    /// and a SystemdService= unit whose ExecStart is followed instead.
    #[test]
    fn exec_integrity_columns() {
        use std::os::unix::fs::chown;
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        let w = |p: &str, b: &[u8], mode: u32| {
            let p = r.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        w("etc/passwd", b"root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nsvc:x:998:998::/:/bin/false\n", 0o644);
        let svc = |name: &str, body: &str| {
            w(
                &format!("usr/share/dbus-1/system-services/{name}.service"),
                format!("[D-BUS Service]\nName={name}\n{body}\n").as_bytes(),
                0o644,
            )
        };
        svc("ok", "Exec=/bin/okd --x\nUser=root");
        svc("open", "Exec=/usr/bin/opend\nUser=root");
        svc("userdir", "Exec=/opt/alice/bin/run\nUser=root");
        svc("own", "Exec=/opt/svc/run\nUser=svc");
        svc("replaced", "Exec=/usr/bin/repd\nUser=root");
        svc(
            "unit",
            "Exec=/bin/false\nUser=root\nSystemdService=u.service",
        );
        svc("gone", "Exec=/nowhere\nUser=root");
        w("usr/bin/okd", b"ok", 0o755);
        w("usr/bin/opend", b"open", 0o777);
        w("usr/bin/repd", b"evil", 0o755);
        w("usr/bin/false", b"f", 0o755);
        w("usr/libexec/unitd", b"u", 0o755);
        w("opt/alice/bin/run", b"r", 0o755);
        chown(r.join("opt/alice"), Some(1000), Some(1000)).unwrap();
        w("opt/svc/run", b"s", 0o755);
        chown(r.join("opt/svc/run"), Some(998), Some(998)).unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        w(
            "usr/lib/systemd/system/u.service",
            b"[Service]\nExecStart=-!/usr/libexec/unitd --flag\n",
            0o644,
        );
        w(
            "var/lib/dpkg/info/p.list",
            b"/usr/bin/okd\n/usr/bin/opend\n/usr/bin/repd\n/usr/libexec/unitd\n",
            0o644,
        );
        w(
            "var/lib/dpkg/info/p.md5sums",
            format!(
                "{}  usr/bin/okd\n{}  usr/bin/opend\n{}  usr/bin/repd\n{}  usr/libexec/unitd\n",
                md5_hex(b"ok"),
                md5_hex(b"open"),
                md5_hex(b"original"),
                md5_hex(b"u")
            )
            .as_bytes(),
            0o644,
        );
        let mut ctx = QueryContext::new();
        ctx.set_cols_used([
            "path",
            "exec_package",
            "exec_provenance",
            "exec_verified",
            "exec_hijackable",
        ]);
        let m = by_path(&generate(&settings(r), &ctx));
        let cols = |n: &str| {
            let row = &m[&format!("/usr/share/dbus-1/system-services/{n}.service")];
            (
                text(row, "exec_package"),
                text(row, "exec_provenance"),
                int(row, "exec_verified"),
                int(row, "exec_hijackable"),
            )
        };
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            cols("ok"),
            (s("p"), s("dpkg"), Some(1), Some(0)),
            "via /bin"
        );
        assert_eq!(cols("open"), (s("p"), s("dpkg"), Some(1), Some(1)));
        assert_eq!(cols("userdir"), (s(""), s("none"), None, Some(1)));
        assert_eq!(
            cols("own"),
            (s(""), s("none"), None, Some(0)),
            "its own user"
        );
        assert_eq!(cols("replaced"), (s("p"), s("dpkg"), Some(0), Some(0)));
        assert_eq!(
            cols("unit"),
            (s("p"), s("dpkg"), Some(1), Some(0)),
            "ExecStart"
        );
        assert_eq!(cols("gone"), (None, None, None, None));
        assert_eq!(
            exec_start_program("@-/usr/bin/x a b").as_deref(),
            Some("/usr/bin/x")
        );
        assert_eq!(exec_start_program("-").as_deref(), None);
    }
}
