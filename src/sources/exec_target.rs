//! The program a D-Bus service starts, examined inside a root: whether it
//! exists, its owner, mode and hash, the package that ships it, whether it
//! still matches that package, and whether anyone but root and the account
//! it runs as could replace it.
//!
//! A service file is only as trustworthy as what its `Exec=` (or its
//! systemd unit's `ExecStart=`) runs, so this is asked for every service
//! file a query describes; it lives apart from the table so the answer is
//! a typed value any table or check can map, and so the path rules (a
//! relative program counts from `/`, the bus's working directory; every
//! symlink is followed, as the bus or systemd execs the final file) are
//! written once.
use crate::sources::fs_safe::{self, FsError, Root};
use crate::sources::hash::{self, HashError};
use crate::sources::packages;
use crate::sources::packages::verify::{verify, Verification, VerifyError};
use crate::sources::provenance::{self, Provenance};
use crate::sources::stat::{self, FileKind, Metadata, StatError};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why part of a program could not be examined.
#[derive(Debug, thiserror::Error)]
pub enum ExecTargetError {
    #[error("Exec target {0}")]
    Open(#[source] FsError),
    #[error("Exec target {0}")]
    Stat(#[source] StatError),
    #[error("Exec target {0}")]
    Hash(#[source] HashError),
}

/// The path inside the root a program names, as the bus would exec it: a
/// relative program counts from `/`. `None` when the text stands for no
/// path at all.
pub fn program_path(program: &str) -> Option<PathBuf> {
    let inner = fs_safe::readings(program).pop()?;
    Some(Path::new("/").join(inner))
}

/// What the program's path leads to.
#[derive(Debug)]
pub enum Target {
    /// Nothing there (or a non-directory on the way): the bus would fail
    /// to exec it.
    Missing,
    /// The path could not be resolved for another reason.
    Unreachable(ExecTargetError),
    /// The final file, found by following every symlink.
    Found {
        meta: Result<Metadata, ExecTargetError>,
        /// Asked for only when the caller wants it (hashing reads the
        /// whole file).
        sha256: Option<Result<String, ExecTargetError>>,
    },
}

/// Examines what `program` names inside `root`, following symlinks;
/// hashes it when `sha256`. `None` when `program` names no path.
pub fn examine(root: &Root, program: &str, sha256: bool) -> Option<Target> {
    let inner = program_path(program)?;
    let meta = match root.open_path(&inner) {
        Ok(fd) => stat::stat_fd(&fd, inner.clone()).map_err(ExecTargetError::Stat),
        Err(e) if e.is_not_found() || e.errno() == Some(rustix::io::Errno::NOTDIR) => {
            return Some(Target::Missing);
        }
        Err(e) => return Some(Target::Unreachable(ExecTargetError::Open(e))),
    };
    let sha256 = sha256.then(|| {
        let file = root.open_regular(&inner).map_err(ExecTargetError::Open)?;
        hash::sha256_file(file, &inner).map_err(ExecTargetError::Hash)
    });
    Some(Target::Found { meta, sha256 })
}

/// What the package databases say of the program.
#[derive(Debug)]
pub struct Packaged {
    /// The owning packages' names in database order; `None` when the
    /// databases know nothing of the path.
    pub names: Option<Vec<String>>,
    /// Whether it matches what its package recorded.
    pub verified: Result<Verification, VerifyError>,
}

/// Where a program comes from and who could replace it.
#[derive(Debug)]
pub struct Attribution {
    /// The path as written (from `/` when relative).
    pub written: PathBuf,
    /// The path every symlink resolves to (as written when the root
    /// cannot name it).
    pub canonical: PathBuf,
    /// See [`hijackable`].
    pub hijackable: Option<bool>,
    /// `None` without package databases and with neither flatpak nor snap
    /// to tell.
    pub provenance: Option<Provenance>,
    /// Present when package databases were given.
    pub packaged: Option<Packaged>,
}

/// Attributes the program `program` names inside `root`: `None` when it
/// names no path or cannot be opened (then it is missing; nothing to
/// attribute). Both callbacks are asked only for a program that opens, so
/// what they load on first use is loaded only when needed: `runner`, the
/// uid the service runs as when it is one account; `owners`, the package
/// databases (`None`: none to ask).
pub fn attribute<'o>(
    root: &Root,
    program: &str,
    owners: impl FnOnce() -> Option<&'o packages::Owners>,
    runner: impl FnOnce() -> Option<u32>,
) -> Option<Attribution> {
    let written = program_path(program)?;
    let fd = root.open_path(&written).ok()?;
    let canonical = root
        .inner_path(rustix::fd::AsFd::as_fd(&fd))
        .unwrap_or_else(|| written.clone());
    let runner = runner();
    let hijackable = hijackable(root, &written, &canonical, runner);
    let (provenance, packaged) = match owners() {
        Some(owners) => {
            // A path the databases know but no package owns is looked up
            // again as written: a database may list the symlink.
            let mut owned = owners.lookup(canonical.as_os_str().as_bytes());
            if owned.as_ref().is_some_and(|o| o.packages.is_empty()) {
                owned = owners.lookup(written.as_os_str().as_bytes());
            }
            let names = owned
                .as_ref()
                .map(|o| o.packages.iter().map(|p| p.name.clone()).collect());
            let verified = verify(owned.as_ref(), &canonical, || root.open_regular(&canonical));
            (
                provenance::of_program(root, owned.as_ref(), &canonical),
                Some(Packaged { names, verified }),
            )
        }
        None => (provenance::of_program(root, None, &canonical), None),
    };
    Some(Attribution {
        written,
        canonical,
        hijackable,
        provenance,
        packaged,
    })
}

/// Whether an account other than root and `runner` could replace what
/// runs: the target, or any directory on the way to it (as written and as
/// resolved), is owned by such an account, or writable by a non-root
/// group or by others. A sticky directory stops others only from
/// replacing entries they do not own, so it counts only when the next
/// entry is not owned by root or the runner. `None` when the path cannot
/// be examined.
pub fn hijackable(
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

/// Whether an account other than root and `runner` could create the
/// missing path `written`: the nearest directory on its way that exists
/// (symlinks followed inside the root) is writable by a non-root group or
/// by others (a sticky bit stops only removal, not creation), or it or a
/// directory above it could be replaced by such an account (see
/// [`hijackable`]). `None` when the path cannot be examined.
pub fn creatable(root: &Root, written: &Path, runner: Option<u32>) -> Option<bool> {
    let nearest = written
        .ancestors()
        .skip(1)
        .find(|a| root.open_path(a).is_ok())?;
    let fd = root.open_path(nearest).ok()?;
    let canonical = root
        .inner_path(rustix::fd::AsFd::as_fd(&fd))
        .unwrap_or_else(|| nearest.to_path_buf());
    let m = stat::stat_fd(&fd, canonical.clone()).ok()?;
    let allowed = |uid: u32| uid == 0 || Some(uid) == runner;
    let writable = m.perm & 0o002 != 0 || (m.gid != 0 && m.perm & 0o020 != 0);
    if !allowed(m.uid) || writable {
        return Some(true);
    }
    hijackable(root, nearest, &canonical, runner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// A root with `/usr/bin/real` (0755, root-owned), a symlink to it, a
    /// regular file where a directory is expected, and a world-writable
    /// `/opt/drop` holding a program.
    fn image() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::create_dir_all(r.join("opt/drop")).unwrap();
        std::fs::write(r.join("usr/bin/real"), b"x").unwrap();
        std::fs::set_permissions(r.join("usr/bin/real"), PermissionsExt::from_mode(0o755)).unwrap();
        symlink("real", r.join("usr/bin/link")).unwrap();
        std::fs::write(r.join("usr/bin/file"), b"").unwrap();
        std::fs::set_permissions(r.join("opt/drop"), PermissionsExt::from_mode(0o777)).unwrap();
        std::fs::write(r.join("opt/drop/prog"), b"").unwrap();
        tmp
    }

    #[test]
    fn examine_follows_symlinks_and_tells_missing_from_found() {
        let tmp = image();
        let root = Root::open(tmp.path()).unwrap();
        match examine(&root, "/usr/bin/link", true) {
            Some(Target::Found { meta, sha256 }) => {
                let m = meta.unwrap();
                assert_eq!(m.kind, FileKind::Regular, "the link's target is described");
                assert_eq!(m.mode_string(), "0755");
                assert_eq!(
                    sha256.unwrap().unwrap(),
                    "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
                );
            }
            other => panic!("{other:?}"),
        }
        match examine(&root, "usr/bin/real", false) {
            Some(Target::Found { meta, sha256 }) => {
                assert!(meta.is_ok(), "a relative program counts from /");
                assert!(sha256.is_none(), "hashed only when asked");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            examine(&root, "/usr/bin/absent", true),
            Some(Target::Missing)
        ));
        assert!(matches!(
            examine(&root, "/usr/bin/file/x", true),
            Some(Target::Missing)
        ));
    }

    #[test]
    fn attribute_resolves_and_judges_who_may_replace_it() {
        let tmp = image();
        let root = Root::open(tmp.path()).unwrap();
        let a = attribute(&root, "/usr/bin/link", || None, || Some(0)).unwrap();
        assert_eq!(a.written, Path::new("/usr/bin/link"));
        assert_eq!(a.canonical, Path::new("/usr/bin/real"));
        assert_eq!(a.hijackable, Some(false));
        assert!(a.packaged.is_none(), "no databases to ask");
        assert_eq!(a.provenance, None, "NULL without a package database");
        let a = attribute(&root, "/opt/drop/prog", || None, || Some(0)).unwrap();
        assert_eq!(
            a.hijackable,
            Some(true),
            "a world-writable directory on the way"
        );
        let mut asked = false;
        assert!(attribute(
            &root,
            "/usr/bin/absent",
            || None,
            || {
                asked = true;
                Some(0)
            }
        )
        .is_none());
        assert!(!asked, "the runner is asked only for a program that opens");
    }
}
