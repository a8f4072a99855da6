//! `RESOLVE_IN_ROOT` in userspace, for kernels without `openat2` (before
//! 5.6, or where a seccomp profile refuses it): `sources::fs_safe` resolves
//! every path inside the root through [`resolve`] there.
//!
//! The walk starts at the root's descriptor and takes one component at a
//! time with `openat(O_PATH | O_NOFOLLOW)`, so the kernel never follows
//! anything on its own. A symlink is read (`readlinkat` on its `O_PATH`
//! handle) and its text resolved the same way: an absolute target from the
//! root, a relative one from the directory holding the link. `..` is
//! applied to the walk's own stack of open directories, never opened: it
//! cannot climb above the root, and it means what the kernel would make
//! of it (the stack holds the real directories passed through, symlink
//! targets included). A `/proc/<pid>/fd/N`-style magic link is only text
//! here, resolved inside the root like any other, so it cannot jump out
//! the way the kernel would follow it. At most [`MAX_SYMLINKS`] links are
//! followed, as the kernel allows (`ELOOP` past that).
//!
//! What the walk cannot see is a directory moved out of the root while it
//! is inside it (the kernel's `openat2` answers `EAGAIN` then). The caller
//! checks where the result really is (`fs_safe::Root`, through
//! `/proc/self/fd`) when the root is not `/`.
//!
//! Hand-written because the crates that do this either resolve beneath the
//! root (`cap-std`: an absolute link is an error, where an image's
//! `lib -> /usr/lib` must mean its own `/usr/lib`) or, in the release
//! available (`pathrs` 0.2.6), recurse without end on kernels without
//! `faccessat2` (before 5.8): its `/proc` checks probe with
//! `faccessat(AT_SYMLINK_NOFOLLOW)`, which rustix issues only as
//! `faccessat2`, and the error path probes again.
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The most symlinks one resolution follows (the kernel's `MAXSYMLINKS`).
pub const MAX_SYMLINKS: usize = 40;

/// Where a path ended: an `O_PATH` handle on what it names, and, unless it
/// is the root itself, the directory holding it and its name there (what
/// an open by name, `O_NOFOLLOW`, re-opens).
#[derive(Debug)]
pub struct Resolved {
    pub handle: OwnedFd,
    pub parent: Option<OwnedFd>,
    pub name: Vec<u8>,
    pub kind: FileType,
}

fn open_path(dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    loop {
        match rustix::fs::openat(
            dir,
            std::ffi::OsStr::from_bytes(name),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Err(Errno::INTR) => {}
            other => return other,
        }
    }
}

fn kind_of(fd: &OwnedFd) -> Result<FileType, Errno> {
    rustix::fs::fstat(fd).map(|s| FileType::from_raw_mode(s.st_mode))
}

/// Pushes the components of `path` at the front of `queue`, in order.
fn prepend(queue: &mut VecDeque<Vec<u8>>, path: &[u8]) {
    for c in path.split(|&b| b == b'/').rev() {
        if !c.is_empty() && c != b"." {
            queue.push_front(c.to_vec());
        }
    }
}

/// Resolves `inner` inside the directory `root` (an `O_PATH` or open
/// directory descriptor), following symlinks inside it, the last one
/// included.
pub fn resolve(root: BorrowedFd<'_>, inner: &Path) -> Result<Resolved, Errno> {
    let mut queue = VecDeque::new();
    prepend(&mut queue, inner.as_os_str().as_bytes());
    // The directories below the root the walk is in, outermost first.
    let mut stack: Vec<(OwnedFd, Vec<u8>)> = Vec::new();
    let mut links = 0;
    while let Some(name) = queue.pop_front() {
        if name == b".." {
            stack.pop();
            continue;
        }
        let dir = match stack.last() {
            Some((fd, _)) => fd.as_fd(),
            None => root,
        };
        let fd = open_path(dir, &name)?;
        let kind = kind_of(&fd)?;
        match kind {
            FileType::Symlink => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::LOOP);
                }
                let target = rustix::fs::readlinkat(&fd, "", Vec::new())?;
                let target = target.as_bytes();
                if target.first() == Some(&b'/') {
                    stack.clear();
                }
                prepend(&mut queue, target);
            }
            FileType::Directory => stack.push((fd, name)),
            _ if queue.is_empty() => {
                let parent = match stack.last() {
                    Some((p, _)) => rustix::io::fcntl_dupfd_cloexec(p, 0)?,
                    None => rustix::io::fcntl_dupfd_cloexec(root, 0)?,
                };
                return Ok(Resolved {
                    handle: fd,
                    parent: Some(parent),
                    name,
                    kind,
                });
            }
            _ => return Err(Errno::NOTDIR),
        }
    }
    match stack.pop() {
        Some((handle, name)) => {
            let parent = match stack.last() {
                Some((p, _)) => rustix::io::fcntl_dupfd_cloexec(p, 0)?,
                None => rustix::io::fcntl_dupfd_cloexec(root, 0)?,
            };
            Ok(Resolved {
                handle,
                parent: Some(parent),
                name,
                kind: FileType::Directory,
            })
        }
        None => Ok(Resolved {
            handle: rustix::io::fcntl_dupfd_cloexec(root, 0)?,
            parent: None,
            name: Vec::new(),
            kind: FileType::Directory,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root_fd(p: &Path) -> OwnedFd {
        rustix::fs::open(p, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    /// Where a handle really is, relative to the root.
    fn whereis(root: &Path, r: &Resolved) -> String {
        use std::os::fd::AsRawFd;
        let p = std::fs::read_link(format!("/proc/self/fd/{}", r.handle.as_raw_fd())).unwrap();
        let base = std::fs::canonicalize(root).unwrap();
        format!("/{}", p.strip_prefix(&base).unwrap().display())
    }

    #[test]
    fn links_and_dotdot_stay_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("usr/lib/x")).unwrap();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("usr/lib/x/f"), b"f").unwrap();
        std::fs::write(r.join("etc/passwd"), b"p").unwrap();
        symlink("/usr/lib", r.join("lib")).unwrap();
        symlink("/", r.join("escape")).unwrap();
        symlink("../../../../../../..", r.join("dotdot")).unwrap();
        symlink("/proc/self/root/etc", r.join("magic")).unwrap();
        symlink("x/../x/f", r.join("usr/lib/rel")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        let fd = root_fd(r);
        let at = |p: &str| resolve(fd.as_fd(), Path::new(p));
        assert_eq!(whereis(r, &at("/lib/x/f").unwrap()), "/usr/lib/x/f");
        assert_eq!(whereis(r, &at("lib/rel").unwrap()), "/usr/lib/x/f");
        // `..` from a directory reached through a link is that
        // directory's parent, as the kernel has it.
        assert_eq!(whereis(r, &at("/lib/x/..").unwrap()), "/usr/lib");
        assert_eq!(
            whereis(r, &at("/escape/etc/passwd").unwrap()),
            "/etc/passwd"
        );
        assert_eq!(
            whereis(r, &at("/dotdot/etc/passwd").unwrap()),
            "/etc/passwd"
        );
        assert_eq!(whereis(r, &at("../../etc/passwd").unwrap()), "/etc/passwd");
        assert_eq!(whereis(r, &at("/").unwrap()), "/");
        // A magic link is text resolved inside the root.
        assert_eq!(at("/magic/passwd").unwrap_err(), Errno::NOENT);
        assert_eq!(at("/loop").unwrap_err(), Errno::LOOP);
        assert_eq!(at("/etc/passwd/x").unwrap_err(), Errno::NOTDIR);
        assert_eq!(at("/nope/x").unwrap_err(), Errno::NOENT);
        let f = at("/lib/x/f").unwrap();
        assert_eq!(f.kind, FileType::RegularFile);
        assert_eq!(f.name, b"f");
        let d = at("/lib/x").unwrap();
        assert_eq!(d.kind, FileType::Directory);
        assert_eq!(d.name, b"x");
    }
}
