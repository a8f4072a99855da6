//! File metadata without following symlinks, birth time included (statx).
//!
//! `statx` needs Linux 4.11 (and some container seccomp profiles refuse it
//! with `EPERM`). The first refusal switches the process to `fstatat` /
//! `fstat`, which give everything but the birth time: `btime` is then
//! `None` and [`Metadata::btime_missing`] says why, so a row shows NULL
//! with its reason, never a made-up 0.
//!
//! Hunts ask who owns a service file and when it was born, changed and
//! touched; `std::fs::Metadata` hides the birth time's absence and follows
//! nothing-or-everything by path. Here every call is relative to an open
//! directory (from `sources::fs_safe`) and names one entry, with
//! `AT_SYMLINK_NOFOLLOW`: a symlink is described, never followed, and no
//! file is opened. Which entries to stat, and what a failure means for a
//! row, is the caller's business.
use rustix::fd::AsFd;
use rustix::fs::{AtFlags, StatxFlags};
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Symlink,
    Directory,
    Fifo,
    Socket,
    Block,
    Character,
    Unknown,
}

impl FileKind {
    /// From the `S_IFMT` bits of a mode.
    pub fn from_mode(mode: u32) -> FileKind {
        match mode & 0o170000 {
            0o100000 => FileKind::Regular,
            0o120000 => FileKind::Symlink,
            0o040000 => FileKind::Directory,
            0o010000 => FileKind::Fifo,
            0o140000 => FileKind::Socket,
            0o060000 => FileKind::Block,
            0o020000 => FileKind::Character,
            _ => FileKind::Unknown,
        }
    }

    /// From a `readdir` `d_type`, used when statx itself failed.
    pub fn from_dirent(t: rustix::fs::FileType) -> FileKind {
        use rustix::fs::FileType as T;
        match t {
            T::RegularFile => FileKind::Regular,
            T::Symlink => FileKind::Symlink,
            T::Directory => FileKind::Directory,
            T::Fifo => FileKind::Fifo,
            T::Socket => FileKind::Socket,
            T::BlockDevice => FileKind::Block,
            T::CharacterDevice => FileKind::Character,
            _ => FileKind::Unknown,
        }
    }

    /// The name the `type` columns use.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Regular => "regular",
            FileKind::Symlink => "symlink",
            FileKind::Directory => "directory",
            FileKind::Fifo => "fifo",
            FileKind::Socket => "socket",
            FileKind::Block => "block",
            FileKind::Character => "character",
            FileKind::Unknown => "unknown",
        }
    }
}

/// What statx told about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub kind: FileKind,
    /// Permission bits with setuid/setgid/sticky (`mode & 0o7777`).
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Device (major, minor) and inode: the file's identity.
    pub dev: (u32, u32),
    pub ino: u64,
    /// Hard link count.
    pub nlink: u32,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    /// `None` when the filesystem (or kernel) did not report a birth time.
    pub btime: Option<i64>,
    /// Why `btime` is `None`.
    pub btime_missing: Option<&'static str>,
}

/// Why a birth time is unknown.
pub const BTIME_NO_STATX: &str =
    "statx unavailable (Linux before 4.11, or refused by a seccomp filter)";
pub const BTIME_NOT_RECORDED: &str = "not recorded by this filesystem";

impl Metadata {
    /// The mode as osquery's `file` table shows it: four octal digits.
    pub fn mode_string(&self) -> String {
        format!("{:04o}", self.perm & 0o7777)
    }

    /// The identity to hand [`crate::sources::fs_safe::open_entry_as_stated`],
    /// which makes this `statx` the probe before an open.
    pub fn id(&self) -> crate::sources::fs_safe::FileId {
        crate::sources::fs_safe::FileId {
            dev: self.dev,
            ino: self.ino,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", crate::sources::fs_safe::render_path(.path))]
pub struct StatError {
    /// The path as shown to the user (inside the root).
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl StatError {
    /// The file is gone (removed between readdir and statx, or never was).
    pub fn is_not_found(&self) -> bool {
        self.source.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error())
    }
}

fn from_statx(s: &rustix::fs::Statx) -> Metadata {
    let mode = u32::from(s.stx_mode);
    let btime = StatxFlags::from_bits_retain(s.stx_mask)
        .contains(StatxFlags::BTIME)
        .then_some(s.stx_btime.tv_sec);
    let btime_missing = btime.is_none().then_some(BTIME_NOT_RECORDED);
    Metadata {
        kind: FileKind::from_mode(mode),
        perm: mode & 0o7777,
        uid: s.stx_uid,
        gid: s.stx_gid,
        size: s.stx_size,
        dev: (s.stx_dev_major, s.stx_dev_minor),
        ino: s.stx_ino,
        nlink: s.stx_nlink,
        atime: s.stx_atime.tv_sec,
        mtime: s.stx_mtime.tv_sec,
        ctime: s.stx_ctime.tv_sec,
        btime,
        btime_missing,
    }
}

fn from_stat(s: &rustix::fs::Stat) -> Metadata {
    let mode = s.st_mode;
    Metadata {
        kind: FileKind::from_mode(mode),
        perm: mode & 0o7777,
        uid: s.st_uid,
        gid: s.st_gid,
        size: u64::try_from(s.st_size).unwrap_or(0),
        dev: (rustix::fs::major(s.st_dev), rustix::fs::minor(s.st_dev)),
        ino: s.st_ino,
        nlink: u32::try_from(s.st_nlink).unwrap_or(u32::MAX),
        atime: s.st_atime,
        mtime: s.st_mtime,
        ctime: s.st_ctime,
        btime: None,
        btime_missing: Some(BTIME_NO_STATX),
    }
}

/// Set once `statx` was refused as unimplemented: every later call goes
/// straight to `fstatat`.
static NO_STATX: AtomicBool = AtomicBool::new(false);

/// True when this process stats without `statx` (so without birth times).
pub fn statx_missing() -> bool {
    NO_STATX.load(Ordering::Relaxed)
}

/// Whether an error from `statx` means the call itself is unavailable
/// (not that the file is): `ENOSYS` from a kernel before 4.11, `EPERM`
/// from container seccomp profiles written before it existed (stat
/// itself never answers `EPERM`).
fn statx_refused(e: rustix::io::Errno) -> bool {
    matches!(e, rustix::io::Errno::NOSYS | rustix::io::Errno::PERM)
}

/// `statx(dirfd, name, flags)` for the basic fields and birth time, or
/// `fstatat` where statx is unavailable. `name` empty with
/// `AT_EMPTY_PATH` is `dirfd` itself.
fn stat_at(dirfd: impl AsFd, name: &OsStr, flags: AtFlags) -> Result<Metadata, rustix::io::Errno> {
    if !statx_missing() {
        match statx_retrying(dirfd.as_fd(), name, flags) {
            Err(e) if statx_refused(e) => {
                if !NO_STATX.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "statx: {}; file birth times are unknown (btime NULL)",
                        std::io::Error::from(e)
                    );
                }
            }
            other => return other.map(|s| from_statx(&s)),
        }
    }
    loop {
        let r = if flags.contains(AtFlags::EMPTY_PATH) && name.is_empty() {
            rustix::fs::fstat(dirfd.as_fd())
        } else {
            rustix::fs::statat(dirfd.as_fd(), name, flags & !AtFlags::NO_AUTOMOUNT)
        };
        match r {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map(|s| from_stat(&s)),
        }
    }
}

fn statx_retrying(
    dirfd: impl AsFd,
    name: &OsStr,
    flags: AtFlags,
) -> Result<rustix::fs::Statx, rustix::io::Errno> {
    loop {
        match rustix::fs::statx(
            dirfd.as_fd(),
            name,
            flags | AtFlags::NO_AUTOMOUNT,
            StatxFlags::BASIC_STATS | StatxFlags::BTIME,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// Metadata of the entry `name` of the open directory `dirfd`, not
/// following it if it is a symlink. `shown` names it in errors.
pub fn stat_entry(dirfd: impl AsFd, name: &OsStr, shown: PathBuf) -> Result<Metadata, StatError> {
    stat_at(dirfd, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| StatError {
        path: shown,
        source: e.into(),
    })
}

/// Metadata of an open file descriptor itself (`AT_EMPTY_PATH`).
pub fn stat_fd(fd: impl AsFd, shown: PathBuf) -> Result<Metadata, StatError> {
    stat_at(fd, OsStr::new(""), AtFlags::EMPTY_PATH).map_err(|e| StatError {
        path: shown,
        source: e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn dir_fd(p: &std::path::Path) -> rustix::fd::OwnedFd {
        rustix::fs::open(
            p,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn regular_file_mode_owner_and_times() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("a.service");
        std::fs::write(&f, b"hello").unwrap();
        // chown clears setuid, so it comes first.
        std::os::unix::fs::chown(&f, Some(4242), Some(4243)).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o4755)).unwrap();
        let fd = dir_fd(tmp.path());
        let m = stat_entry(&fd, OsStr::new("a.service"), f.clone()).unwrap();
        assert_eq!(m.kind, FileKind::Regular);
        assert_eq!(m.mode_string(), "4755");
        assert_eq!((m.uid, m.gid, m.size), (4242, 4243, 5));
        assert!(m.mtime > 1_600_000_000);
        assert!(m.ctime >= m.mtime);
    }

    #[test]
    fn symlink_is_not_followed_and_fifo_does_not_block() {
        let tmp = tempfile::tempdir().unwrap();
        symlink("/etc/passwd", tmp.path().join("l")).unwrap();
        let fd = dir_fd(tmp.path());
        rustix::fs::mknodat(
            &fd,
            "p",
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let l = stat_entry(&fd, OsStr::new("l"), "l".into()).unwrap();
        assert_eq!(l.kind, FileKind::Symlink);
        assert_eq!(l.size, "/etc/passwd".len() as u64);
        let p = stat_entry(&fd, OsStr::new("p"), "p".into()).unwrap();
        assert_eq!(p.kind, FileKind::Fifo);
        assert_eq!(p.mode_string(), "0600");
        let gone = stat_entry(&fd, OsStr::new("nope"), "nope".into()).unwrap_err();
        assert!(gone.is_not_found());
        assert!(gone.to_string().starts_with("nope: "));
        let d = stat_fd(&fd, tmp.path().into()).unwrap();
        assert_eq!(d.kind, FileKind::Directory);
    }

    #[test]
    fn kinds_from_mode() {
        assert_eq!(FileKind::from_mode(0o020644), FileKind::Character);
        assert_eq!(FileKind::from_mode(0o060644), FileKind::Block);
        assert_eq!(FileKind::from_mode(0o140777), FileKind::Socket);
        assert_eq!(FileKind::from_mode(0o000777), FileKind::Unknown);
        assert_eq!(FileKind::Socket.as_str(), "socket");
    }
}
