//! Where a watch goes for one discovered directory, resolved the way a
//! collector running as root over user-controlled trees must.
//!
//! Root-owned paths resolve inside the root (`fs_safe::Root`, so an image's
//! absolute links stay in the image), symlinks followed as the bus follows
//! them. Below an account's home or runtime directory
//! ([`ServiceDir::user_base`]) every component is opened on its own with
//! `O_NOFOLLOW`: a user's `~/.local -> /etc` must not make the collector
//! watch or list `/etc` as that user's directory. A symlink (or a file)
//! in the way counts as the directory being absent.
//!
//! A directory that exists is opened, for watching and listing. One that
//! does not comes back as the directories to watch for it to appear, each
//! with the name of the next path component: below a user base, every
//! existing directory from the base down (so renaming `~/.local` away and
//! creating a fresh path is noticed too); above it, or for a root-owned
//! path, only the nearest existing ancestor, since only root can rename
//! those. Never anything above the root. What to mark and what an event
//! means is left to `collect::file`.
use crate::sources::fs_safe::{FsError, Root};
use crate::sources::service_dirs::ServiceDir;
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// An existing directory, and the name whose appearance in it brings the
/// absent directory one component closer.
#[derive(Debug)]
pub struct Step {
    pub dir: OwnedFd,
    /// The directory's path inside the root, as discovery spells it.
    pub path: PathBuf,
    pub next: OsString,
}

#[derive(Debug)]
pub enum Target {
    /// The directory exists; open for reading.
    Present(OwnedFd),
    /// It does not: these directories lead to it, outermost first.
    Absent(Vec<Step>),
    /// Neither it nor a path towards it can be opened (a permission
    /// error, a `..` below a home); the periodic discovery retries.
    Unreachable(String),
}

/// Where to watch for `dir` (see the module doc).
pub fn locate(root: &Root, dir: &ServiceDir) -> Target {
    match dir.user_base() {
        Some(base) => match dir.path.strip_prefix(base) {
            Ok(rest) => below(root, base, rest),
            Err(_) => {
                Target::Unreachable(format!("{} is not below {}", show(&dir.path), show(base)))
            }
        },
        None => in_root(root, &dir.path),
    }
}

/// Opens the directory at `path` again the way [`locate`] did: without
/// following anything below `base` when it lies there.
pub fn reopen(root: &Root, path: &Path, base: Option<&Path>) -> Option<OwnedFd> {
    let target = match base.and_then(|b| Some((b, path.strip_prefix(b).ok()?))) {
        Some((base, rest)) => below(root, base, rest),
        None => in_root(root, path),
    };
    match target {
        Target::Present(fd) => Some(fd),
        _ => None,
    }
}

/// Where to watch for a root-owned directory (`/etc`, for passwd).
pub fn locate_in_root(root: &Root, path: &Path) -> Target {
    in_root(root, path)
}

fn show(p: &Path) -> String {
    crate::sources::fs_safe::render_path(p)
}

/// Absent, for the purpose of waiting for it: missing, or a file where a
/// directory should be.
fn missing(e: Errno) -> bool {
    e == Errno::NOENT || e == Errno::NOTDIR
}

fn fs_errno(e: &FsError) -> Errno {
    e.errno().unwrap_or(Errno::INVAL)
}

fn in_root(root: &Root, path: &Path) -> Target {
    match root.open_dir(path) {
        Ok(fd) => return Target::Present(fd),
        Err(e) if !missing(fs_errno(&e)) => return Target::Unreachable(e.to_string()),
        Err(_) => {}
    }
    match nearest(root, path) {
        Ok(Nearest::Present(fd)) => Target::Present(fd),
        Ok(Nearest::Missing(step)) => Target::Absent(vec![step]),
        Err(why) => Target::Unreachable(why),
    }
}

enum Nearest {
    Present(OwnedFd),
    Missing(Step),
}

/// Walks `path` down from the root's top, each prefix resolved by the
/// kernel inside the root (so `..` and symlinks mean what they mean to
/// the bus), to the first component that is not there.
fn nearest(root: &Root, path: &Path) -> Result<Nearest, String> {
    let mut cur_path = PathBuf::from("/");
    let mut cur = root.open_dir(&cur_path).map_err(|e| e.to_string())?;
    for c in path.components() {
        let name = match c {
            Component::RootDir | Component::CurDir => continue,
            Component::Prefix(_) => return Err(format!("{}: not a Unix path", show(path))),
            Component::ParentDir => OsString::from(".."),
            Component::Normal(n) => n.to_os_string(),
        };
        let next_path = cur_path.join(&name);
        match root.open_dir(&next_path) {
            Ok(fd) => {
                cur = fd;
                cur_path = next_path;
            }
            Err(e) if missing(fs_errno(&e)) => {
                return Ok(Nearest::Missing(Step {
                    dir: cur,
                    path: cur_path,
                    next: name,
                }))
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(Nearest::Present(cur))
}

/// `base` (root-owned, resolved inside the root), then `rest` one
/// component at a time without following anything.
fn below(root: &Root, base: &Path, rest: &Path) -> Target {
    let mut cur = match root.open_dir(base) {
        Ok(fd) => fd,
        Err(e) if !missing(fs_errno(&e)) => return Target::Unreachable(e.to_string()),
        Err(_) => match nearest(root, base) {
            Ok(Nearest::Present(fd)) => fd,
            Ok(Nearest::Missing(step)) => return Target::Absent(vec![step]),
            Err(why) => return Target::Unreachable(why),
        },
    };
    let mut cur_path = base.to_path_buf();
    let mut steps = Vec::new();
    for c in rest.components() {
        let Component::Normal(name) = c else {
            return Target::Unreachable(format!(
                "{}: only plain names are followed below {}",
                show(&base.join(rest)),
                show(base)
            ));
        };
        let opened = rustix::fs::openat(
            &cur,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        );
        match opened {
            Ok(fd) => {
                steps.push(Step {
                    dir: std::mem::replace(&mut cur, fd),
                    path: cur_path.clone(),
                    next: name.to_os_string(),
                });
                cur_path.push(name);
            }
            // ELOOP: a symlink, not followed.
            Err(e) if missing(e) || e == Errno::LOOP => {
                steps.push(Step {
                    dir: cur,
                    path: cur_path,
                    next: name.to_os_string(),
                });
                return Target::Absent(steps);
            }
            Err(e) => {
                return Target::Unreachable(format!("{}: {e}", show(&cur_path.join(name))));
            }
        }
    }
    Target::Present(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::accounts;
    use crate::sources::service_dirs;
    use std::os::unix::fs::symlink;

    fn home_dir(home: &str) -> ServiceDir {
        let a = accounts::parse_passwd(format!("u:x:1000:1000::{home}:/bin/sh\n").as_bytes());
        service_dirs::home_dirs(&a.entries).remove(0)
    }

    fn steps(t: Target) -> Vec<(String, String)> {
        match t {
            Target::Absent(s) => s
                .into_iter()
                .map(|s| {
                    (
                        s.path.display().to_string(),
                        s.next.to_string_lossy().into_owned(),
                    )
                })
                .collect(),
            other => panic!("not absent: {other:?}"),
        }
    }

    #[test]
    fn absent_home_dir_waits_along_the_chain_from_the_home() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("home/u/.local")).unwrap();
        let root = Root::open(t.path()).unwrap();
        let d = home_dir("/home/u");
        assert_eq!(
            steps(locate(&root, &d)),
            [
                ("/home/u".into(), ".local".into()),
                ("/home/u/.local".into(), "share".into())
            ]
        );
        std::fs::create_dir_all(t.path().join("home/u/.local/share/dbus-1/services")).unwrap();
        assert!(matches!(locate(&root, &d), Target::Present(_)));
    }

    #[test]
    fn a_missing_home_waits_in_its_nearest_ancestor() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("home")).unwrap();
        let root = Root::open(t.path()).unwrap();
        assert_eq!(
            steps(locate(&root, &home_dir("/home/new"))),
            [("/home".into(), "new".into())]
        );
        // `..` in a root-owned path is resolved by the kernel, in the root.
        assert_eq!(
            steps(locate(&root, &home_dir("/home/../../srv/x"))),
            [("/home/../..".into(), "srv".into())]
        );
    }

    #[test]
    fn a_symlink_below_the_home_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("home/u")).unwrap();
        std::fs::create_dir_all(t.path().join("etc/share/dbus-1/services")).unwrap();
        symlink("../../etc", t.path().join("home/u/.local")).unwrap();
        let root = Root::open(t.path()).unwrap();
        assert_eq!(
            steps(locate(&root, &home_dir("/home/u"))),
            [("/home/u".into(), ".local".into())]
        );
        // A file in the way is absent too.
        std::fs::remove_file(t.path().join("home/u/.local")).unwrap();
        std::fs::write(t.path().join("home/u/.local"), "x").unwrap();
        assert_eq!(
            steps(locate(&root, &home_dir("/home/u"))),
            [("/home/u".into(), ".local".into())]
        );
    }

    #[test]
    fn root_owned_paths_follow_links_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr/lib")).unwrap();
        symlink("/usr/lib", t.path().join("lib")).unwrap();
        let root = Root::open(t.path()).unwrap();
        let d = service_dirs::standard_dirs()
            .into_iter()
            .find(|d| d.path == Path::new("/lib/dbus-1/system-services"))
            .unwrap();
        assert_eq!(steps(locate(&root, &d)), [("/lib".into(), "dbus-1".into())]);
        std::fs::create_dir_all(t.path().join("usr/lib/dbus-1/system-services")).unwrap();
        assert!(matches!(locate(&root, &d), Target::Present(_)));
    }
}
