//! The row for one directory entry: the columns every row has (where it
//! was found, `statx`), the ones that read the file (symlink target,
//! hash), and the hand-off to the service, exec and package columns when
//! the query uses them. Everything that went wrong with the entry is
//! gathered, typed, in [`Errors`] and lands in the row's `error` column.
use super::plan::Scan;
use super::{integrity, link, service};
use crate::blind;
use crate::context::Used;
use crate::row::Row;
use crate::sources::exec_target::ExecTargetError;
use crate::sources::fs_safe::{self, FsError};
use crate::sources::hash::{self, HashError};
use crate::sources::packages::verify::VerifyError;
use crate::sources::service_dirs::{self, EntryKind, OpenDir, ServiceDir};
use crate::sources::service_file::{ExecError, ServiceFileError};
use crate::sources::stat::{FileKind, Metadata, StatError};
use crate::sources::unit_files::UnitError;
use crate::spec::columns::dbus_service_files as c;
use std::ffi::OsStr;
use std::path::Path;
use std::path::PathBuf;

/// `path` always (the shadow columns find rows by it), the rest as used.
pub(super) fn base_row(plain: &Used, dir: &ServiceDir, path: &Path) -> Row {
    let mut row = Row::new(&c::SCHEMA);
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

/// One stated entry, as the column fillers read it.
pub(super) struct Entry<'e> {
    pub(super) dir: &'e ServiceDir,
    pub(super) open: &'e OpenDir,
    pub(super) name: &'e OsStr,
    /// Where it was found, inside the root.
    pub(super) path: &'e Path,
    /// Its `statx`, the probe every later open is checked against.
    pub(super) meta: &'e Metadata,
}

/// Everything that went wrong with one entry, in the order it happened.
pub(super) type Errors = crate::row::Errors<EntryError>;

/// One thing that went wrong with an entry: a source's own error, or what
/// the table found wrong with the file, naming the path as shown.
#[derive(Debug, thiserror::Error)]
pub(super) enum EntryError {
    #[error(transparent)]
    Stat(#[from] StatError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("{}: readlink: {source}", fs_safe::render_path(.path))]
    Readlink {
        path: PathBuf,
        source: rustix::io::Errno,
    },
    #[error("{}: {source}", fs_safe::render_path(.path))]
    Parse {
        path: PathBuf,
        source: ServiceFileError,
    },
    #[error("{}: dbus-daemon would refuse this file: {}", fs_safe::render_path(.path), .problems.join(", "))]
    Refused {
        path: PathBuf,
        problems: Vec<String>,
    },
    /// Only dbus-broker reads a file this large (dbus-daemon refuses
    /// anything past 128 KiB).
    #[error(
        "{}: larger than {cap} bytes; only the first {cap} parsed (dbus-daemon refuses files over 128 KiB, dbus-broker reads them whole)",
        fs_safe::render_path(.path)
    )]
    Truncated { path: PathBuf, cap: u64 },
    #[error("{}: {source}", fs_safe::render_path(.path))]
    Exec { path: PathBuf, source: ExecError },
    #[error("{}: Exec names no program", fs_safe::render_path(.path))]
    NoProgram { path: PathBuf },
    #[error("{}: symlink to nothing inside the root; the bus reads no service from it until its target is created", fs_safe::render_path(.path))]
    DanglingLink { path: PathBuf },
    #[error("SystemdService={unit}: {source}")]
    Unit { unit: String, source: UnitError },
    #[error(transparent)]
    ExecTarget(#[from] ExecTargetError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// What the bus-configuration reader found wrong with a config or
    /// policy file, as it words it.
    #[error("{0}")]
    Config(String),
}

/// The row for one entry. An entry that vanished between `readdir` and
/// `statx` is skipped (a later scan would not see it either); any other
/// failure still yields the row, with `error` and the type `readdir` saw.
pub(super) fn entry_row(
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
            errors.write(&mut row, c::ERROR);
            return Some(row);
        }
    };
    stat_columns(plain, &meta, &mut row);
    let entry = Entry {
        dir,
        open,
        name,
        path: &path,
        meta: &meta,
    };
    file_columns(scan, &entry, &mut row, &mut errors)?;
    let readable = matches!(meta.kind, FileKind::Regular | FileKind::Symlink);
    if kind == EntryKind::Service && readable && scan.content {
        service::columns(scan, &entry, &mut row, &mut errors)?;
    }
    if matches!(kind, EntryKind::Config | EntryKind::Policy) {
        for (p, e) in scan.config_errors {
            if *p == path {
                errors.push(EntryError::Config(e.clone()));
            }
        }
    }
    integrity::package_columns(scan, &entry, &mut row, &mut errors);
    if scan.link {
        link::columns(scan, &entry, &mut row);
    }
    errors.write(&mut row, c::ERROR);
    Some(row)
}

/// The columns `statx` answers, as used.
fn stat_columns(plain: &Used, meta: &Metadata, row: &mut Row) {
    plain.set(row, c::TYPE, || meta.kind.as_str());
    plain.set(row, c::UID, || meta.uid);
    plain.set(row, c::GID, || meta.gid);
    plain.set(row, c::MODE, || meta.mode_string());
    plain.set(row, c::SIZE, || meta.size);
    plain.set(row, c::ATIME, || meta.atime);
    plain.set(row, c::MTIME, || meta.mtime);
    plain.set(row, c::CTIME, || meta.ctime);
    plain.set(row, c::BTIME, || meta.btime);
    plain.set(row, c::BTIME_MISSING, || meta.btime_missing);
    plain.set(row, c::INODE, || meta.ino);
    plain.set(row, c::HARD_LINKS, || meta.nlink);
    plain.set(row, c::DEVICE, || format!("{}:{}", meta.dev.0, meta.dev.1));
    // A symlink's own mode is always 0777 and means nothing.
    plain.set(row, c::WORLD_WRITABLE, || {
        meta.kind != FileKind::Symlink && meta.perm & 0o002 != 0
    });
}

/// `symlink_target` and `sha256`, read from the entry itself (never
/// following it; the hash only from the file `statx` saw). `None` when
/// the entry vanished since it was stated.
fn file_columns(scan: &Scan, entry: &Entry, row: &mut Row, errors: &mut Errors) -> Option<()> {
    let Entry {
        open,
        name,
        path,
        meta,
        ..
    } = *entry;
    if meta.kind == FileKind::Symlink && scan.symlink_target {
        match fs_safe::read_link_entry(open.fd(), name) {
            Ok(t) => {
                row.set(c::SYMLINK_TARGET, fs_safe::render(&t));
            }
            Err(rustix::io::Errno::NOENT) => return None,
            Err(source) => errors.push(EntryError::Readlink {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
    if meta.kind == FileKind::Regular && scan.sha256 {
        match fs_safe::open_entry_as_stated(open.fd(), name, path, meta.id()) {
            Ok(o) => match hash::sha256_file(o.file, path) {
                Ok(h) => {
                    row.set(c::SHA256, h);
                }
                Err(e) => errors.push(e),
            },
            Err(e) if e.is_not_found() => return None,
            Err(e) => errors.push(e),
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::dbus_service_files::test_support::*;

    use crate::context::QueryContext;
    use crate::sources::fs_safe::Root;

    use std::ffi::OsStr;

    use std::path::Path;

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
            link: true,
            launch: true,
            script_integrity: false,
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
        assert_eq!(text(&row, c::PATH).unwrap(), "/etc/dbus-1/system.d/x.conf");
        assert_eq!(text(&row, c::KIND).unwrap(), "policy");
        assert_eq!(text(&row, c::TYPE).unwrap(), "regular");
        assert!(text(&row, c::ERROR).unwrap().contains("ermission denied"));
        assert_eq!(row.get(c::UID), None);
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
            let error = text(&row, c::ERROR).unwrap_or_default();
            assert!(
                error.contains("changed while being opened"),
                "{what}: {error}"
            );
            assert_eq!(row.get(c::SERVICE_NAME), None, "{what}");
            assert_eq!(row.get(c::SHA256), None, "{what}");
            std::fs::remove_file(&f).unwrap();
        }
        // Unswapped, the same stat reads the file.
        std::fs::write(&f, body).unwrap();
        let meta = open.stat(&dir, name);
        let row = entry_row(&mut scan, &dir, &open, name, meta, None).unwrap();
        assert_eq!(text(&row, c::SERVICE_NAME).unwrap(), "org.swap");
        assert!(row.get(c::SHA256).is_some());
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
}
