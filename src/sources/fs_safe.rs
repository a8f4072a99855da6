//! Opening paths *inside* a root, never outside it, and showing them as text.
//!
//! `--root /mnt/img` points at a disk image or container rootfs whose
//! symlinks were written by someone else: an absolute link such as
//! `home/eve -> /` or `lib -> /usr/lib` means "the image's `/`", not the
//! host's. [`Root`] opens the root directory once and resolves every later
//! path with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so the
//! kernel clamps `..` and absolute links to that directory and refuses
//! `/proc/*/fd`-style magic links. Directories may be reached through
//! symlinks this way (that is how a bus in that root sees them); callers that
//! must not follow the last component (entries of a directory) use
//! `statx(dirfd, name, AT_SYMLINK_NOFOLLOW)` in `sources::stat`.
//!
//! Nothing here writes, and nothing opens a FIFO or device for reading:
//! directories are opened with `O_DIRECTORY`, files (`O_NONBLOCK`) only
//! after an `O_PATH` probe showed a regular file, and only if the file
//! opened is the one probed. A file found in a directory that users may
//! write is opened with [`open_entry_regular`]: one name relative to the
//! open directory, `O_NOFOLLOW`, so a symlink there is never followed.
//! What to open, and what a failure means, is left to the callers.
//!
//! The second half, [`render`] / [`unrender`], turns file-name bytes into
//! column text: valid UTF-8 is kept as is, each byte that is not is written
//! `\xNN`, so distinct non-UTF-8 names stay distinct.
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("cannot open root {}: {source}", crate::sources::fs_safe::render_path(.path))]
    OpenRoot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", crate::sources::fs_safe::render_path(.path))]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a regular file", crate::sources::fs_safe::render_path(.path))]
    NotRegular { path: PathBuf },
    #[error("{}: changed while being opened", crate::sources::fs_safe::render_path(.path))]
    Changed { path: PathBuf },
    #[error("{}: read failed: {source}", crate::sources::fs_safe::render_path(.path))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FsError {
    /// The underlying OS error, when there is one.
    pub fn errno(&self) -> Option<rustix::io::Errno> {
        match self {
            FsError::OpenRoot { source, .. }
            | FsError::Open { source, .. }
            | FsError::Read { source, .. } => source
                .raw_os_error()
                .map(rustix::io::Errno::from_raw_os_error),
            FsError::NotRegular { .. } | FsError::Changed { .. } => None,
        }
    }

    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            FsError::OpenRoot { path, .. }
            | FsError::Open { path, .. }
            | FsError::NotRegular { path }
            | FsError::Changed { path }
            | FsError::Read { path, .. } => path,
        }
    }

    /// True when the path (or one of its parents) simply does not exist.
    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(rustix::io::Errno::NOENT)
    }
}

/// An open root directory; every path handed to it is resolved inside it.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// How often to retry `openat2` when the kernel reports EAGAIN (a rename
/// raced with an `IN_ROOT` lookup).
const EAGAIN_RETRIES: usize = 8;

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

impl Root {
    /// Opens `path` (the host path of the root, `/` by default). The root
    /// itself is the operator's choice, so a symlink there is followed.
    pub fn open(path: &Path) -> Result<Root, FsError> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| FsError::OpenRoot {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The host path this root was opened from.
    pub fn host_path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn openat2(&self, inner: &Path, flags: OFlags) -> Result<OwnedFd, FsError> {
        // openat2 refuses O_PATH with anything but O_CLOEXEC, O_DIRECTORY
        // and O_NOFOLLOW.
        let flags = if flags.contains(OFlags::PATH) {
            flags | OFlags::CLOEXEC
        } else {
            flags | OFlags::CLOEXEC | OFlags::NOCTTY
        };
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(&self.fd, inner, flags, Mode::empty(), resolve_flags()) {
                Err(rustix::io::Errno::AGAIN) if tries < EAGAIN_RETRIES => tries += 1,
                Err(rustix::io::Errno::INTR) => {}
                Ok(fd) => return Ok(fd),
                Err(e) => {
                    return Err(FsError::Open {
                        path: inner.to_path_buf(),
                        source: e.into(),
                    })
                }
            }
        }
    }

    /// Opens the directory at `inner` (a path as seen inside the root;
    /// absolute or not, it is resolved from the root) for listing. Symlinks
    /// on the way, the last one included, are followed inside the root.
    /// `O_DIRECTORY` makes the kernel refuse anything but a directory
    /// before opening it, so a FIFO or device is never opened.
    pub fn open_dir(&self, inner: &Path) -> Result<OwnedFd, FsError> {
        self.openat2(inner, OFlags::RDONLY | OFlags::DIRECTORY)
    }

    /// An `O_PATH` handle on whatever `inner` names (symlinks followed
    /// inside the root): good for `fstat`, never for reading, and opening
    /// it has no side effect on a device or FIFO.
    pub fn open_path(&self, inner: &Path) -> Result<OwnedFd, FsError> {
        self.openat2(inner, OFlags::PATH)
    }

    /// Opens a regular file at `inner` for reading, symlinks followed
    /// inside the root. The file is probed with `O_PATH` first and opened
    /// (`O_NONBLOCK`) only if it is a regular file, then checked to be that
    /// same file, so a FIFO or device swapped in is never opened.
    pub fn open_regular(&self, inner: &Path) -> Result<std::fs::File, FsError> {
        let probe = self.open_path(inner)?;
        checked_open(&probe, inner, || {
            without_atime(|extra| self.openat2(inner, OFlags::RDONLY | OFlags::NONBLOCK | extra))
        })
    }

    /// Where an fd opened through this root really is, as a path inside
    /// the root (`/proc/self/fd` resolves every symlink on the way): the
    /// canonical spelling of a program reached through `/bin` or an
    /// alternatives link. `None` when the kernel's answer is not under the
    /// root (or not available).
    pub fn inner_path(&self, fd: BorrowedFd<'_>) -> Option<PathBuf> {
        use std::os::fd::AsRawFd;
        let host = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
        let base = std::fs::canonicalize(&self.path).ok()?;
        let rest = host.strip_prefix(&base).ok()?;
        Some(Path::new("/").join(rest))
    }

    /// Reads a regular file at `inner`, at most `cap` bytes (see
    /// [`Root::open_regular`]).
    pub fn read_regular(&self, inner: &Path, cap: u64) -> Result<Vec<u8>, FsError> {
        let file = self.open_regular(inner)?;
        Ok(read_capped(file, cap, inner)?.0)
    }
}

/// Opens the entry `name` of the open directory `dirfd` for reading, never
/// following it: `O_NOFOLLOW` on a single path component, probed with
/// `O_PATH` and checked like [`Root::open_regular`]. `shown` names it in
/// errors. This is how a file found in a possibly user-writable directory
/// is read.
pub fn open_entry_regular(
    dirfd: BorrowedFd<'_>,
    name: &OsStr,
    shown: &Path,
) -> Result<std::fs::File, FsError> {
    let open = |flags: OFlags| {
        let mut tries = 0;
        loop {
            match rustix::fs::openat(
                dirfd,
                name,
                flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Err(rustix::io::Errno::INTR) if tries < EAGAIN_RETRIES => tries += 1,
                Ok(fd) => return Ok(fd),
                Err(e) => {
                    return Err(FsError::Open {
                        path: shown.to_path_buf(),
                        source: e.into(),
                    })
                }
            }
        }
    };
    if name.as_bytes().contains(&b'/') {
        return Err(FsError::NotRegular {
            path: shown.to_path_buf(),
        });
    }
    let probe = open(OFlags::PATH)?;
    checked_open(&probe, shown, || {
        without_atime(|extra| open(OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | extra))
    })
}

/// Opens with `O_NOATIME` where the kernel allows it (the file's owner, or
/// root), so a hunt leaves the access times it reports, and an
/// investigator relies on, as it found them; plain `open` otherwise.
fn without_atime(open: impl Fn(OFlags) -> Result<OwnedFd, FsError>) -> Result<OwnedFd, FsError> {
    match open(OFlags::NOATIME) {
        Err(e) if e.errno() == Some(rustix::io::Errno::PERM) => open(OFlags::empty()),
        other => other,
    }
}

/// Opens for reading with `open` only when `probe` is a regular file, and
/// only keeps the result if it is still that file.
fn checked_open(
    probe: &OwnedFd,
    shown: &Path,
    open: impl FnOnce() -> Result<OwnedFd, FsError>,
) -> Result<std::fs::File, FsError> {
    let fstat = |fd: &OwnedFd| {
        rustix::fs::fstat(fd).map_err(|e| FsError::Open {
            path: shown.to_path_buf(),
            source: e.into(),
        })
    };
    let before = fstat(probe)?;
    if FileType::from_raw_mode(before.st_mode) != FileType::RegularFile {
        return Err(FsError::NotRegular {
            path: shown.to_path_buf(),
        });
    }
    let fd = open()?;
    let after = fstat(&fd)?;
    if after.st_dev != before.st_dev || after.st_ino != before.st_ino {
        return Err(FsError::Changed {
            path: shown.to_path_buf(),
        });
    }
    Ok(std::fs::File::from(fd))
}

/// Reads at most `cap` bytes of `file`; the flag says whether more was
/// there (one byte past the cap is read to tell).
pub fn read_capped(
    file: std::fs::File,
    cap: u64,
    shown: &Path,
) -> Result<(Vec<u8>, bool), FsError> {
    // Service and config files are a few hundred bytes: one read fills
    // this and the next finds the end, where growing from empty took four.
    let mut buf = Vec::with_capacity(usize::try_from(cap.min(8191) + 1).unwrap_or(8192));
    file.take(cap.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|source| FsError::Read {
            path: shown.to_path_buf(),
            source,
        })?;
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let truncated = buf.len() > cap;
    buf.truncate(cap);
    Ok((buf, truncated))
}

/// The target of the symlink `name` in `dirfd`, as raw bytes.
pub fn read_link_entry(dirfd: BorrowedFd<'_>, name: &OsStr) -> Result<Vec<u8>, rustix::io::Errno> {
    rustix::fs::readlinkat(dirfd, name, Vec::new()).map(|c| c.into_bytes())
}

/// File-name bytes as column text: valid UTF-8 is kept, each invalid byte
/// becomes `\xNN` (two lowercase hex digits). A valid name that itself
/// contains the four characters `\xNN` renders the same as the raw byte;
/// [`unrender`] callers must allow for both readings.
pub fn render(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// A path as column text, see [`render`].
pub fn render_path(path: &Path) -> String {
    render(path.as_os_str().as_bytes())
}

/// The inverse of [`render`]: every `\xNN` becomes the byte `NN`. Returns
/// `None` when the text holds no escape, so the caller knows the text
/// itself is the only reading.
pub fn unrender(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') {
            let hex = bytes
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                changed = true;
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    changed.then_some(out)
}

/// Every path a piece of column text may stand for: the text itself and,
/// when it holds `\xNN` escapes, the unescaped bytes.
pub fn readings(text: &str) -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from(text)];
    if let Some(raw) = unrender(text) {
        out.push(PathBuf::from(OsStr::from_bytes(&raw)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn reading_leaves_access_times_alone() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("evidence.service");
        std::fs::write(&f, "[D-BUS Service]\n").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_times(std::fs::FileTimes::new().set_accessed(old))
            .unwrap();
        let root = Root::open(t.path()).unwrap();
        assert!(!root
            .read_regular(Path::new("/evidence.service"), 100)
            .unwrap()
            .is_empty());
        let dir = root.open_dir(Path::new("/")).unwrap();
        let file = open_entry_regular(dir.as_fd(), OsStr::new("evidence.service"), &f).unwrap();
        assert!(!read_capped(file, 100, &f).unwrap().0.is_empty());
        assert_eq!(std::fs::metadata(&f).unwrap().atime(), 1_000_000_000);
    }

    #[test]
    fn render_keeps_utf8_and_escapes_bad_bytes() {
        assert_eq!(render(b"org.foo.service"), "org.foo.service");
        assert_eq!(render("café".as_bytes()), "café");
        assert_eq!(render(b"caf\xe9"), "caf\\xe9");
        assert_eq!(render(b"a\xff\xfeb"), "a\\xff\\xfeb");
        assert_ne!(render(b"x\xe9"), render(b"x\xe8"));
        assert_eq!(unrender("caf\\xe9").unwrap(), b"caf\xe9");
        assert_eq!(unrender("plain"), None);
        assert_eq!(unrender("bad\\xZZ"), None);
        assert_eq!(readings("a\\x2d").len(), 2);
    }

    /// Found by tests/hostile_tree.rs: error text showed a non-UTF-8 name
    /// lossily (U+FFFD), unlike the `path` column, so distinct names gave
    /// the same error and the error did not name the row's path.
    #[test]
    fn error_text_renders_invalid_utf8_names_like_the_path_column() {
        let e = FsError::NotRegular {
            path: PathBuf::from(OsStr::from_bytes(b"/x/bad\xff\xfe.service")),
        };
        assert_eq!(
            e.to_string(),
            "/x/bad\\xff\\xfe.service: not a regular file"
        );
        let e = FsError::NotRegular {
            path: PathBuf::from(OsStr::from_bytes(b"/x/bad\xff.service")),
        };
        assert_eq!(e.to_string(), "/x/bad\\xff.service: not a regular file");
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("usr/lib/x")).unwrap();
        std::fs::write(r.join("usr/lib/x/inside"), b"in").unwrap();
        symlink("/usr/lib", r.join("lib")).unwrap();
        symlink("/", r.join("escape")).unwrap();
        symlink("../../../../../../..", r.join("dotdot")).unwrap();
        let root = Root::open(r).unwrap();
        assert!(root.open_dir(Path::new("/lib/x")).is_ok());
        assert_eq!(
            root.read_regular(Path::new("/lib/x/inside"), 10).unwrap(),
            b"in"
        );
        // `/escape/etc` would be the host's /etc outside a root.
        let e = root.open_dir(Path::new("/escape/etc")).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        assert!(root
            .open_dir(Path::new("/dotdot/etc"))
            .unwrap_err()
            .is_not_found());
        assert!(matches!(
            root.read_regular(Path::new("/usr/lib"), 10),
            Err(FsError::NotRegular { .. })
        ));
    }

    #[test]
    fn read_regular_refuses_a_fifo_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::open(tmp.path()).unwrap();
        rustix::fs::mknodat(
            root.fd(),
            "fifo",
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        assert!(matches!(
            root.read_regular(Path::new("fifo"), 10),
            Err(FsError::NotRegular { .. })
        ));
        assert!(root.open_dir(Path::new("fifo")).is_err());
    }
}
