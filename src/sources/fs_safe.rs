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
//! Kernels before 5.6 have no `openat2` (and some container seccomp
//! profiles refuse it). The first open of the process probes it once; where
//! it is missing, every path resolves in userspace instead
//! (`sources::in_root`): one component at a time from the root descriptor
//! with `O_PATH | O_NOFOLLOW`, symlinks resolved inside the root (absolute
//! ones from the root, `..` never above it). A file is then opened by name
//! from the directory the walk ended in, `O_NOFOLLOW`, and kept only if it
//! is the inode the walk found; a directory is opened from its own handle.
//! Under a root other than `/`, where the result really is is checked
//! through `/proc/self/fd`, for a directory moved out of the root during
//! the walk. The confinement promised above holds on both paths.
//!
//! Nothing here writes, and nothing reads a FIFO or device: directories
//! are opened with `O_DIRECTORY`, files (`O_NONBLOCK`) only after a probe
//! (an `O_PATH` handle, or the entry's own `statx`) showed a regular file,
//! and are kept only if the file opened is the one probed. A file found in
//! a directory that users may write is opened with [`open_entry_regular`]
//! (or [`open_entry_as_stated`] when the caller already holds its `statx`):
//! one name relative to the open directory, `O_NOFOLLOW`, so a symlink
//! there is never followed. What to open, and what a failure means, is
//! left to the callers.
//!
//! The second half, [`render`] / [`unrender`], turns file-name bytes into
//! column text: valid UTF-8 is kept as is, each byte that is not is written
//! `\xNN`, so distinct non-UTF-8 names stay distinct.
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use super::in_root;

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
    /// Directories opened by [`Root::open_dir`] and kept for a later
    /// [`Root::take_dir`] of the same path (see [`Root::keep_dir`]).
    kept: std::sync::Mutex<KeptDirs>,
    /// See [`Root::canonical`].
    canonical: std::sync::OnceLock<Option<PathBuf>>,
}

#[derive(Debug, Default)]
struct KeptDirs {
    /// How many may be kept, once a first one was offered.
    limit: Option<usize>,
    /// By the path's bytes: callers keep and take the same spelling, and
    /// hashing a `Path` walks its components. Weak: the keeper holds each.
    fds: std::collections::HashMap<std::ffi::OsString, Weak<OwnedFd>>,
}

/// The most directory descriptors a [`Root`] keeps: a quarter of the soft
/// `RLIMIT_NOFILE`, and never more than this. The rest stays for what a
/// scan opens one at a time (a file, a directory not kept) and for the
/// extension's sockets.
const MAX_KEPT_DIRS: usize = 4096;

/// How often to retry `openat2` when the kernel reports EAGAIN (a rename
/// raced with an `IN_ROOT` lookup).
const EAGAIN_RETRIES: usize = 8;

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

/// How confined paths are resolved in this process, decided once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolver {
    /// The kernel's `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`.
    Openat2,
    /// The userspace walk of `sources::in_root`, with the reason `openat2`
    /// could not be used.
    Walk(String),
}

/// The resolver of this process: `openat2` is probed once on `.` (which
/// must open), and any refusal there (`ENOSYS` before Linux 5.6, `EPERM`
/// or `ENOSYS` from a seccomp profile, `E2BIG`/`EINVAL` for flags a kernel
/// lacks) chooses the walk for the life of the process.
pub fn resolver() -> &'static Resolver {
    static CHOSEN: std::sync::OnceLock<Resolver> = std::sync::OnceLock::new();
    CHOSEN.get_or_init(|| {
        match rustix::fs::openat2(
            rustix::fs::CWD,
            ".",
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            resolve_flags(),
        ) {
            Ok(_) => Resolver::Openat2,
            Err(e) => {
                let why = format!("openat2: {}", std::io::Error::from(e));
                log::warn!(
                    "{why}; paths inside the root resolve in userspace (O_PATH walk), with the same confinement"
                );
                Resolver::Walk(why)
            }
        }
    })
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
            kept: std::sync::Mutex::default(),
            canonical: std::sync::OnceLock::new(),
        })
    }

    /// Keeps `fd`, which [`Root::open_dir`] opened for `inner`, for the next
    /// [`Root::take_dir`] of that spelling: a caller that must find out
    /// whether a directory exists before it lists it (discovery, then
    /// `service_dirs::visit`) resolves its path once, not twice. The
    /// descriptor is the directory as it was resolved then, with the same
    /// confinement as any `open_dir`.
    ///
    /// The root only points at it: the caller holds the returned handle,
    /// and the descriptor is closed when that handle (and any taken copy)
    /// is dropped, taken or not, so a root that outlives the scan (a file
    /// watcher's) holds no directory open. At most a bounded number is
    /// kept (see [`MAX_KEPT_DIRS`]); past that, or for a path kept
    /// already, `fd` is closed and `None` returned.
    pub fn keep_dir(&self, inner: &Path, fd: OwnedFd) -> Option<Arc<OwnedFd>> {
        let mut kept = self.kept.lock().ok()?;
        let limit = *kept.limit.get_or_insert_with(|| {
            let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
            soft.map_or(MAX_KEPT_DIRS, |n| {
                usize::try_from(n / 4).unwrap_or(MAX_KEPT_DIRS)
            })
            .min(MAX_KEPT_DIRS)
        });
        if kept.fds.len() >= limit {
            // Those whose keepers let go count no more.
            kept.fds.retain(|_, w| w.strong_count() > 0);
            if kept.fds.len() >= limit {
                return None;
            }
        }
        let slot = kept
            .fds
            .entry(inner.as_os_str().to_os_string())
            .or_default();
        if slot.strong_count() > 0 {
            return None;
        }
        let fd = Arc::new(fd);
        *slot = Arc::downgrade(&fd);
        Some(fd)
    }

    /// The descriptor [`Root::keep_dir`] kept for `inner`, if its keeper
    /// still holds it; each is handed out once.
    pub fn take_dir(&self, inner: &Path) -> Option<Arc<OwnedFd>> {
        let mut kept = self.kept.lock().ok()?;
        if kept.fds.is_empty() {
            return None;
        }
        kept.fds.remove(inner.as_os_str())?.upgrade()
    }

    #[cfg(test)]
    fn keep_at_most(&self, n: usize) {
        if let Ok(mut kept) = self.kept.lock() {
            kept.limit = Some(n);
        }
    }

    /// The host path this root was opened from.
    pub fn host_path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `inner` inside the root with `flags`, symlinks (the last one
    /// included) followed inside it, by whichever [`resolver`] this
    /// process uses.
    fn open_in(&self, inner: &Path, flags: OFlags) -> Result<OwnedFd, FsError> {
        match resolver() {
            Resolver::Openat2 => self.openat2(inner, flags),
            Resolver::Walk(_) => self.walk(inner, flags),
        }
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

    /// The userspace resolution (`sources::in_root`) of `inner`, checked to
    /// have stayed inside the root.
    fn walk_to(&self, inner: &Path) -> Result<in_root::Resolved, FsError> {
        let open_err = |source: std::io::Error| FsError::Open {
            path: inner.to_path_buf(),
            source,
        };
        let r = in_root::resolve(self.fd.as_fd(), inner).map_err(|e| open_err(e.into()))?;
        if let Some(base) = self.canonical() {
            use std::os::fd::AsRawFd;
            // Unverifiable without /proc; the walk itself never leaves.
            let link = format!("/proc/self/fd/{}", r.handle.as_raw_fd());
            if let Ok(host) = std::fs::read_link(link) {
                if !host.starts_with(base) {
                    return Err(open_err(std::io::Error::other(
                        "moved out of the root while it was resolved",
                    )));
                }
            }
        }
        Ok(r)
    }

    /// [`Root::open_in`] without `openat2`: an `O_PATH` open is the walk's
    /// own handle; a directory is opened from its handle (`openat(fd,
    /// ".")`, the same inode), and only once it is known to be one; a
    /// file is opened by name from the directory the walk ended in,
    /// `O_NOFOLLOW`, and kept only if it is the inode the walk found.
    fn walk(&self, inner: &Path, flags: OFlags) -> Result<OwnedFd, FsError> {
        let r = self.walk_to(inner)?;
        if flags.contains(OFlags::PATH) {
            return Ok(r.handle);
        }
        let open_err = |e: rustix::io::Errno| FsError::Open {
            path: inner.to_path_buf(),
            source: e.into(),
        };
        let flags = flags | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NOFOLLOW;
        if r.kind == FileType::Directory {
            return rustix::fs::openat(&r.handle, ".", flags, Mode::empty()).map_err(open_err);
        }
        if flags.contains(OFlags::DIRECTORY) {
            return Err(open_err(rustix::io::Errno::NOTDIR));
        }
        let Some(parent) = r.parent.as_ref() else {
            return Err(open_err(rustix::io::Errno::ISDIR));
        };
        let fd = rustix::fs::openat(parent, OsStr::from_bytes(&r.name), flags, Mode::empty())
            .map_err(|e| match e {
                rustix::io::Errno::LOOP => FsError::Changed {
                    path: inner.to_path_buf(),
                },
                e => open_err(e),
            })?;
        let (was, now) = (
            rustix::fs::fstat(&r.handle).map_err(open_err)?,
            rustix::fs::fstat(&fd).map_err(open_err)?,
        );
        if was.st_dev != now.st_dev || was.st_ino != now.st_ino {
            return Err(FsError::Changed {
                path: inner.to_path_buf(),
            });
        }
        Ok(fd)
    }

    /// The canonical host path of the root, when it is not `/` (under `/`
    /// nothing is outside), computed once.
    fn canonical(&self) -> Option<&Path> {
        self.canonical
            .get_or_init(|| {
                std::fs::canonicalize(&self.path)
                    .ok()
                    .filter(|p| p != Path::new("/"))
            })
            .as_deref()
    }

    /// Opens the directory at `inner` (a path as seen inside the root;
    /// absolute or not, it is resolved from the root) for listing. Symlinks
    /// on the way, the last one included, are followed inside the root.
    /// `O_DIRECTORY` makes the kernel refuse anything but a directory
    /// before opening it, so a FIFO or device is never opened.
    pub fn open_dir(&self, inner: &Path) -> Result<OwnedFd, FsError> {
        self.open_in(inner, OFlags::RDONLY | OFlags::DIRECTORY)
    }

    /// An `O_PATH` handle on whatever `inner` names (symlinks followed
    /// inside the root): good for `fstat`, never for reading, and opening
    /// it has no side effect on a device or FIFO.
    pub fn open_path(&self, inner: &Path) -> Result<OwnedFd, FsError> {
        self.open_in(inner, OFlags::PATH)
    }

    /// Opens a regular file at `inner` for reading, symlinks followed
    /// inside the root. The file is probed with `O_PATH` first and opened
    /// (`O_NONBLOCK`) only if it is a regular file, then checked to be that
    /// same file, so a FIFO or device swapped in is never opened.
    pub fn open_regular(&self, inner: &Path) -> Result<std::fs::File, FsError> {
        let probe = self.open_path(inner)?;
        checked_open(&probe, inner, || {
            without_atime(|extra| self.open_in(inner, OFlags::RDONLY | OFlags::NONBLOCK | extra))
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
        let base = self.canonical().unwrap_or(Path::new("/"));
        let rest = host.strip_prefix(base).ok()?;
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
/// following it: probed with `fstatat(AT_SYMLINK_NOFOLLOW)`, then opened and
/// checked as [`open_entry_as_stated`] does. `shown` names it in errors.
/// This is how a file found in a possibly user-writable directory is read.
pub fn open_entry_regular(
    dirfd: BorrowedFd<'_>,
    name: &OsStr,
    shown: &Path,
) -> Result<std::fs::File, FsError> {
    if name.as_bytes().contains(&b'/') {
        return Err(FsError::NotRegular {
            path: shown.to_path_buf(),
        });
    }
    // fstatat, not statx: the type and identity are all the probe needs,
    // and it exists on every kernel.
    let probe = loop {
        match rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(rustix::io::Errno::INTR) => continue,
            Ok(s) => break s,
            Err(e) => {
                return Err(FsError::Open {
                    path: shown.to_path_buf(),
                    source: e.into(),
                })
            }
        }
    };
    if FileType::from_raw_mode(probe.st_mode) != FileType::RegularFile {
        return Err(FsError::NotRegular {
            path: shown.to_path_buf(),
        });
    }
    let id = FileId {
        dev: (
            rustix::fs::major(probe.st_dev),
            rustix::fs::minor(probe.st_dev),
        ),
        ino: probe.st_ino,
    };
    open_entry_as_stated(dirfd, name, shown, id).map(|o| o.file)
}

/// Which file an entry was when it was stat'ed: device (major, minor) and
/// inode, as `statx` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: (u32, u32),
    pub ino: u64,
}

/// A regular file opened by [`open_entry_as_stated`], with the size its
/// `fstat` reported (what [`Opened::read_capped`] expects to find).
#[derive(Debug)]
pub struct Opened {
    pub file: std::fs::File,
    pub size: u64,
}

impl Opened {
    /// [`read_capped`], sized by the `fstat` already made: one `read` gets a
    /// small file whole, and a short read that ends where that size said is
    /// taken as the end, with no second `read` to find it.
    pub fn read_capped(self, cap: u64, shown: &Path) -> Result<(Vec<u8>, bool), FsError> {
        read_upto(self.file, cap, shown, Some(self.size))
    }
}

/// Opens the entry `name` of the open directory `dirfd`, which the caller's
/// own `statx(AT_SYMLINK_NOFOLLOW)` of it showed to be the regular file
/// `id`, for reading. That `statx` is the probe: the entry is opened
/// `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY`, and `fstat` on the opened fd must
/// show a regular file with the same device and inode before anything is
/// read. An entry replaced in between by a symlink fails the open (`ELOOP`),
/// by a socket too (`ENXIO`), by a FIFO opens without blocking (no writer is
/// waited for) and fails the check, like any other file put in its place:
/// each is [`FsError::Changed`], never followed and never read.
///
/// A device node put in its place between the `statx` and the open *is*
/// opened (and closed unread) before the check refuses it, and opening some
/// devices (a tape, a modem line) acts on them. An `O_PATH` probe followed
/// by an open by name (as [`Root::open_regular`] does) has the same window
/// between the two; only an `O_PATH` fd re-opened through `/proc/self/fd`
/// would close it, at the cost of a `/proc` walk per file. Planting a
/// device there needs `CAP_MKNOD` or a hard link to an existing node on the
/// same filesystem (which `fs.protected_hardlinks` refuses for a node the
/// user cannot already read and write), within the microseconds between
/// the row's `statx` and its open.
pub fn open_entry_as_stated(
    dirfd: BorrowedFd<'_>,
    name: &OsStr,
    shown: &Path,
    id: FileId,
) -> Result<Opened, FsError> {
    let changed = || FsError::Changed {
        path: shown.to_path_buf(),
    };
    if name.as_bytes().contains(&b'/') {
        return Err(FsError::NotRegular {
            path: shown.to_path_buf(),
        });
    }
    let open = |flags: OFlags| loop {
        match rustix::fs::openat(
            dirfd,
            name,
            flags
                | OFlags::RDONLY
                | OFlags::NONBLOCK
                | OFlags::NOCTTY
                | OFlags::NOFOLLOW
                | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Err(rustix::io::Errno::INTR) => {}
            Ok(fd) => return Ok(fd),
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::NXIO) => return Err(changed()),
            Err(e) => {
                return Err(FsError::Open {
                    path: shown.to_path_buf(),
                    source: e.into(),
                })
            }
        }
    };
    let fd = without_atime(open)?;
    let now = rustix::fs::fstat(&fd).map_err(|e| FsError::Open {
        path: shown.to_path_buf(),
        source: e.into(),
    })?;
    let dev = (rustix::fs::major(now.st_dev), rustix::fs::minor(now.st_dev));
    if FileType::from_raw_mode(now.st_mode) != FileType::RegularFile
        || dev != id.dev
        || now.st_ino != id.ino
    {
        return Err(changed());
    }
    Ok(Opened {
        file: std::fs::File::from(fd),
        size: u64::try_from(now.st_size).unwrap_or(0),
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
    read_upto(file, cap, shown, None)
}

/// [`read_capped`], with the size `fstat` gave when there is one. Service
/// and config files are a few hundred bytes: a buffer of the known size
/// (plus the byte that tells the file grew) or of 8 KiB fills in one read,
/// where growing from empty takes several. A read that stops short at exactly
/// the known size is the end of a regular file; without a size (or when
/// the file changed size meanwhile) the end is the read that returns 0.
fn read_upto(
    mut file: std::fs::File,
    cap: u64,
    shown: &Path,
    known: Option<u64>,
) -> Result<(Vec<u8>, bool), FsError> {
    let want = usize::try_from(cap.saturating_add(1)).unwrap_or(usize::MAX);
    let first = known
        .map_or(8192, |s| s.saturating_add(1))
        .min(u64::try_from(want).unwrap_or(u64::MAX));
    let mut buf = vec![0u8; usize::try_from(first).unwrap_or(8192).max(1)];
    let mut len = 0;
    while len < want {
        if len == buf.len() {
            buf.resize(buf.len().saturating_mul(2).min(want), 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                let short = len < buf.len();
                if short && known.is_some_and(|k| u64::try_from(len).is_ok_and(|l| l == k)) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(FsError::Read {
                    path: shown.to_path_buf(),
                    source,
                })
            }
        }
    }
    buf.truncate(len);
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

    /// A kept directory is the one resolved when it was kept, handed out
    /// once while its keeper holds it; the first kept for a path stays,
    /// and past the bound nothing more is kept.
    #[test]
    fn kept_dirs_are_handed_out_once_and_bounded() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        for d in ["a", "b", "c", "d"] {
            std::fs::create_dir(t.path().join(d)).unwrap();
        }
        let root = Root::open(t.path()).unwrap();
        root.keep_at_most(3);
        let ino = |fd: &OwnedFd| rustix::fs::fstat(fd).unwrap().st_ino;
        let open = |p: &str| root.open_dir(Path::new(p)).unwrap();
        let (a, b, c, d) = (
            Path::new("/a"),
            Path::new("/b"),
            Path::new("/c"),
            Path::new("/d"),
        );
        let held_a = root.keep_dir(a, open("/a")).expect("kept");
        assert!(root.keep_dir(a, open("/b")).is_none(), "one per path");
        let held_b = root.keep_dir(b, open("/b")).expect("kept");
        let held_c = root.keep_dir(c, open("/c")).expect("kept");
        assert!(root.keep_dir(d, open("/d")).is_none(), "bound");
        // The directory moves away after it was kept: the kept descriptor
        // is still the one found then.
        std::fs::rename(t.path().join("a"), t.path().join("a.old")).unwrap();
        std::fs::create_dir(t.path().join("a")).unwrap();
        let taken = root.take_dir(a).expect("taken");
        assert_eq!(
            ino(&taken),
            std::fs::metadata(t.path().join("a.old")).unwrap().ino()
        );
        assert!(Arc::ptr_eq(&taken, &held_a));
        assert!(root.take_dir(a).is_none(), "handed out once");
        drop(held_b);
        assert!(root.take_dir(b).is_none(), "closed with its keeper");
        // A keeper letting go makes room, and its path may be kept anew.
        drop(held_c);
        let held_c = root.keep_dir(c, open("/c")).expect("kept anew");
        assert!(root.keep_dir(d, open("/d")).is_some(), "room again");
        assert!(Arc::ptr_eq(&root.take_dir(c).unwrap(), &held_c));
        // Left: /d, let go. At the bound, those let go are dropped first.
        root.keep_at_most(1);
        let _held_a = root.keep_dir(a, open("/a")).expect("room made");
        assert!(root.keep_dir(b, open("/b")).is_none(), "bound");
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

    /// An entry stat'ed as a regular file and then replaced is refused
    /// after the open, before any read: a FIFO (opened without blocking, in
    /// a thread so a regression fails instead of hanging), a symlink (never
    /// followed), a character device (root may make one), a socket and
    /// another regular file.
    #[test]
    fn open_as_stated_refuses_whatever_replaced_the_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().to_path_buf();
        std::fs::write(t.join("target"), b"secret").unwrap();
        let dir = Root::open(&t).unwrap().open_dir(Path::new("/")).unwrap();
        let id_of = |p: &Path| {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::symlink_metadata(p).unwrap();
            FileId {
                dev: (rustix::fs::major(m.dev()), rustix::fs::minor(m.dev())),
                ino: m.ino(),
            }
        };
        let f = t.join("x.service");
        let node = |kind, dev| {
            rustix::fs::mknodat(rustix::fs::CWD, &f, kind, Mode::from_raw_mode(0o666), dev).unwrap()
        };
        let swaps: [(&str, &dyn Fn()); 5] = [
            ("fifo", &|| node(FileType::Fifo, 0)),
            ("symlink", &|| symlink(t.join("target"), &f).unwrap()),
            ("device", &|| {
                node(FileType::CharacterDevice, rustix::fs::makedev(1, 3))
            }),
            ("socket", &|| {
                std::mem::forget(std::os::unix::net::UnixListener::bind(&f).unwrap())
            }),
            ("other file", &|| std::fs::write(&f, b"other").unwrap()),
        ];
        for (what, swap) in swaps {
            std::fs::write(&f, b"[D-BUS Service]\n").unwrap();
            let id = id_of(&f);
            // Kept, so that no new file gets its inode back.
            std::fs::rename(&f, t.join(format!("was {what}"))).unwrap();
            swap();
            let fd = rustix::io::dup(&dir).unwrap();
            let shown = f.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let got = open_entry_as_stated(fd.as_fd(), OsStr::new("x.service"), &shown, id)
                    .map(|o| o.read_capped(100, &shown));
                let _ = tx.send(format!("{got:?}"));
            });
            let got = rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("{what}: the open blocked"));
            assert!(got.starts_with("Err(Changed"), "{what}: {got}");
            std::fs::remove_file(&f).unwrap();
        }
        std::fs::write(&f, b"[D-BUS Service]\n").unwrap();
        let opened = open_entry_as_stated(dir.as_fd(), OsStr::new("x.service"), &f, id_of(&f));
        let (bytes, truncated) = opened.unwrap().read_capped(100, &f).unwrap();
        assert_eq!(
            (bytes.as_slice(), truncated),
            (&b"[D-BUS Service]\n"[..], false)
        );
    }

    /// The size `fstat` gave only sizes the buffer and marks where a short
    /// read may end: a file that grew or shrank since is still read to its
    /// end, and the cap still holds.
    #[test]
    fn reading_with_a_known_size_still_finds_the_real_end() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&f, &data).unwrap();
        let open = || std::fs::File::open(&f).unwrap();
        for known in [Some(0), Some(10), Some(20_000), Some(30_000), None] {
            let (b, t) = read_upto(open(), 1 << 20, &f, known).unwrap();
            assert_eq!((b.len(), t), (20_000, false), "{known:?}");
            assert_eq!(b, data);
            let (b, t) = read_upto(open(), 5_000, &f, known).unwrap();
            assert_eq!((b.as_slice(), t), (&data[..5_000], true), "{known:?}");
            let (b, t) = read_upto(open(), 20_000, &f, known).unwrap();
            assert_eq!((b.len(), t), (20_000, false), "{known:?}");
            let (b, t) = read_upto(open(), 0, &f, known).unwrap();
            assert_eq!((b.len(), t), (0, true), "{known:?}");
        }
        std::fs::write(&f, b"").unwrap();
        assert_eq!(read_upto(open(), 10, &f, Some(0)).unwrap(), (vec![], false));
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
