//! Watching D-Bus directories for changes, with the writer's pid where the
//! kernel tells it: fanotify in directory-FID mode (`FAN_REPORT_DFID_NAME`,
//! Linux 5.9+, root) reports creations, deletions, renames and close-after-
//! write with the writing process; inotify, the fallback, reports the same
//! changes without any process. The fallback is per directory: a kernel
//! without FID reporting puts every directory on inotify, and a directory
//! fanotify refuses (no file handles on overlayfs, FUSE and many network
//! filesystems, or a refused mark) goes to inotify alone while the others
//! keep fanotify; [`Watcher::backend_of`] says which and why, for the rows.
//! `collect::file` turns changes into events.
//!
//! fanotify in FID mode names the directory by file handle, not path: each
//! watched directory's handle (`name_to_handle_at`) is recorded when it is
//! marked, and an event is mapped back by comparing handles (type and
//! bytes; the filesystem id is not compared, so two filesystems handing out
//! the very same handle bytes could be confused). The event records are
//! decoded from bytes with bounds checks. Neither rustix nor nix wraps
//! fanotify, so `fanotify_init`, `fanotify_mark` and `name_to_handle_at`
//! are called through `libc`, each in a small `unsafe` block.
//!
//! A directory is marked through a descriptor the caller opened
//! (`sources::watch_target` decides what may be followed on the way), never
//! by a path the kernel would resolve again: fanotify marks the descriptor's
//! inode, inotify is handed `/proc/self/fd/N`. One directory marked for
//! several [`Interest`]s is one mark with the union of their masks, so the
//! caller gets every kind of change and filters by what it asked for. A
//! watched directory's own deletion or move is reported too
//! ([`Subject::Itself`]): the path then needs resolving again.
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use rustix::io::Errno;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("inotify: {0}")]
    Inotify(#[source] Errno),
    #[error("watching {}: {source}", path.display())]
    Mark {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("reading file events: {0}")]
    Read(#[source] Errno),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Fanotify,
    Inotify,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Fanotify => "fanotify",
            Backend::Inotify => "inotify",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    /// Closed after writing (not every `write`: that would be one event
    /// per block).
    Modified,
    MovedIn,
    MovedOut,
    Deleted,
    /// Mode, owner or times changed.
    Attributes,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Modified => "modified",
            Action::MovedIn => "moved_in",
            Action::MovedOut => "moved_out",
            Action::Deleted => "deleted",
            Action::Attributes => "attributes",
        }
    }
}

/// What a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// An entry that is not a directory.
    File,
    /// A subdirectory.
    Directory,
    /// The watched directory itself (deleted or moved; the name is `.`).
    Itself,
}

/// One change to one entry of a watched directory, or to the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Index of the directory, as [`Watcher::watch`] returned it.
    pub dir: usize,
    pub name: OsString,
    pub action: Action,
    /// The writer (fanotify only).
    pub pid: Option<u32>,
    pub subject: Subject,
}

/// What one read brought.
#[derive(Debug, Default)]
pub struct Batch {
    pub changes: Vec<Change>,
    /// The kernel's queue overflowed: changes were lost.
    pub overflowed: bool,
}

/// fanotify bits, each with the action it stands for.
const FAN_ACTIONS: &[(u64, Action)] = &[
    (libc::FAN_CREATE, Action::Created),
    (libc::FAN_MOVED_TO, Action::MovedIn),
    (libc::FAN_CLOSE_WRITE, Action::Modified),
    (libc::FAN_ATTRIB, Action::Attributes),
    (libc::FAN_MOVED_FROM, Action::MovedOut),
    (libc::FAN_DELETE, Action::Deleted),
];

fn fan_mask() -> u64 {
    FAN_ACTIONS
        .iter()
        .fold(libc::FAN_EVENT_ON_CHILD, |m, (b, _)| m | b)
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn i32_at(b: &[u8], off: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// A decoded fanotify event: mask, pid, and (directory handle key, name)
/// from its `DFID_NAME` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanEvent {
    pub mask: u64,
    pub pid: i32,
    pub fd: i32,
    pub dir_fid: Option<(Vec<u8>, OsString)>,
}

/// The key a file handle is compared by: its type, then its bytes.
fn handle_key(handle_type: i32, bytes: &[u8]) -> Vec<u8> {
    let mut k = handle_type.to_ne_bytes().to_vec();
    k.extend_from_slice(bytes);
    k
}

/// One read of a non-blocking fanotify queue into `buf`, decoded; `None`
/// once the queue is empty. Shared by every fanotify reader here, so each
/// handles its events and none repeats the read loop's errno cases.
pub fn read_fanotify_queue(fd: &OwnedFd, buf: &mut [u8]) -> Result<Option<Vec<FanEvent>>, Errno> {
    loop {
        return match rustix::io::read(fd, &mut *buf) {
            Ok(0) | Err(Errno::AGAIN) => Ok(None),
            Ok(n) => Ok(Some(parse_fanotify(&buf[..n.min(buf.len())]))),
            Err(Errno::INTR) => continue,
            Err(e) => Err(e),
        };
    }
}

/// `struct fanotify_event_metadata` (event_len u32, vers u8, reserved u8,
/// metadata_len u16, mask u64, fd i32, pid i32) and its info records
/// (`fanotify_event_info_header` {type u8, pad u8, len u16}, then for
/// `DFID_NAME`: fsid 8 bytes, `file_handle` {bytes u32, type i32, handle},
/// then the NUL-terminated name).
pub fn parse_fanotify(buf: &[u8]) -> Vec<FanEvent> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while let Some(len) = u32_at(buf, off).map(|l| l as usize) {
        if len < 24 || off + len > buf.len() {
            break;
        }
        let ev = &buf[off..off + len];
        off += len;
        let (Some(meta_len), Some(mask), Some(fd), Some(pid)) =
            (u16_at(ev, 6), u64_at(ev, 8), i32_at(ev, 16), i32_at(ev, 20))
        else {
            continue;
        };
        let mut dir_fid = None;
        let mut i = usize::from(meta_len).max(24);
        while let (Some(&kind), Some(rec_len)) = (ev.get(i), u16_at(ev, i + 2)) {
            let rec_len = usize::from(rec_len);
            let Some(rec) = ev.get(i..i + rec_len).filter(|_| rec_len >= 4) else {
                break;
            };
            i += rec_len;
            if kind != libc::FAN_EVENT_INFO_TYPE_DFID_NAME {
                continue;
            }
            let (Some(hbytes), Some(htype)) = (u32_at(rec, 12), i32_at(rec, 16)) else {
                continue;
            };
            let hstart = 20;
            let Some(handle) = rec.get(hstart..hstart + hbytes as usize) else {
                continue;
            };
            let name_bytes = &rec[hstart + handle.len()..];
            let name_end = name_bytes
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(name_bytes.len());
            dir_fid = Some((
                handle_key(htype, handle),
                OsString::from_vec(name_bytes[..name_end].to_vec()),
            ));
        }
        out.push(FanEvent {
            mask,
            pid,
            fd,
            dir_fid,
        });
    }
    out
}

/// The handle key of an open directory, as fanotify will report it.
fn dir_handle(dir: BorrowedFd<'_>) -> Result<Vec<u8>, Errno> {
    // struct file_handle: handle_bytes u32, handle_type i32, then up to
    // MAX_HANDLE_SZ bytes; u32 storage keeps it aligned.
    let max = libc::MAX_HANDLE_SZ as usize;
    let mut storage = vec![0u32; 2 + max / 4];
    storage[0] = max as u32;
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `storage` is a zeroed, aligned buffer of 8 + MAX_HANDLE_SZ
    // bytes whose `handle_bytes` says so; the empty path is NUL-terminated
    // and names `dir` itself (AT_EMPTY_PATH); the kernel writes at most
    // that many bytes.
    let rc = unsafe {
        libc::name_to_handle_at(
            dir.as_raw_fd(),
            c"".as_ptr(),
            storage.as_mut_ptr().cast::<libc::file_handle>(),
            &mut mount_id,
            libc::AT_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(last_errno());
    }
    let bytes: Vec<u8> = storage.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let n = (storage[0] as usize).min(max);
    Ok(handle_key(storage[1] as i32, &bytes[8..8 + n]))
}

fn last_errno() -> Errno {
    Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::INVAL)
}

/// What a directory is watched for; one marked for several gets the union.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Every change to its entries: a D-Bus directory.
    Entries,
    /// Subdirectories appearing (created or renamed in): an ancestor of a
    /// D-Bus directory that does not exist yet. Files written there are
    /// not asked for, so a watched home costs little.
    Subdirs,
    /// Files appearing or written: `/etc`, for passwd.
    Files,
}

impl Interest {
    fn fan_mask(self) -> u64 {
        // FAN_ONDIR: directory entries, and the directory's own
        // deletion or move (reported with the name ".").
        let base = libc::FAN_ONDIR | libc::FAN_DELETE_SELF | libc::FAN_MOVE_SELF;
        base | match self {
            Interest::Entries => fan_mask(),
            Interest::Subdirs => libc::FAN_CREATE | libc::FAN_MOVED_TO,
            Interest::Files => {
                libc::FAN_CREATE
                    | libc::FAN_MOVED_TO
                    | libc::FAN_CLOSE_WRITE
                    | libc::FAN_EVENT_ON_CHILD
            }
        }
    }

    fn inotify_mask(self) -> rustix::fs::inotify::WatchFlags {
        use rustix::fs::inotify::WatchFlags as W;
        let base = W::DELETE_SELF | W::MOVE_SELF | W::ONLYDIR | W::MASK_ADD;
        base | match self {
            Interest::Entries => {
                W::CREATE
                    | W::DELETE
                    | W::MOVED_FROM
                    | W::MOVED_TO
                    | W::CLOSE_WRITE
                    | W::ATTRIB
                    | W::EXCL_UNLINK
            }
            Interest::Subdirs => W::CREATE | W::MOVED_TO,
            Interest::Files => W::CREATE | W::MOVED_TO | W::CLOSE_WRITE,
        }
    }
}

/// Why fanotify would not watch one directory.
#[derive(Debug)]
enum FanRefusal {
    /// The filesystem gives no file handle (`name_to_handle_at`), which
    /// FID reporting names directories by: overlayfs without
    /// `nfs_export`, FUSE, many network filesystems.
    Handle(Errno),
    /// `fanotify_mark` itself was refused.
    Mark(Errno),
}

impl std::fmt::Display for FanRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FanRefusal::Handle(e) => write!(f, "no file handle: {}", std::io::Error::from(*e)),
            FanRefusal::Mark(e) => write!(f, "fanotify_mark: {}", std::io::Error::from(*e)),
        }
    }
}

/// The name of the filesystem type `fd` is on, for the kinds fanotify
/// is known to refuse (so a reason can say which).
fn fs_name(fd: BorrowedFd<'_>) -> Option<&'static str> {
    let s = rustix::fs::fstatfs(fd).ok()?;
    // f_type magic numbers from linux/magic.h.
    Some(match s.f_type as i64 {
        0x794c_7630 => "overlayfs",
        0x6573_5546 => "fuse",
        0x6969 => "nfs",
        0xff53_4d42 | 0xfe53_4d42 => "cifs/smb",
        0x0102_1997 => "9p",
        0x00c3_6400 => "ceph",
        0x0102_1994 => "tmpfs",
        0x9123_683e => "btrfs",
        0xef53 => "ext4",
        0x5846_5342 => "xfs",
        0x7366_7173 => "squashfs",
        _ => return None,
    })
}

/// How the kernel names a mark: a fanotify directory handle, or an inotify
/// watch with the reason fanotify was not used for that directory.
#[derive(Debug)]
enum Mark {
    Handle(Vec<u8>),
    Wd(i32, Arc<str>),
}

/// One collector's kernel watches. fanotify (directory-FID mode) is used
/// for every directory it accepts; a directory it refuses (overlayfs,
/// FUSE, network filesystems, which have no file handles or refuse the
/// mark) and every directory on a kernel without FID reporting is watched
/// with inotify instead, so a refusal costs the writer columns of that
/// directory only, never its events.
pub struct Watcher {
    /// The fanotify group, when the kernel gave one.
    fan: Option<OwnedFd>,
    /// Why there is no fanotify group.
    fan_refused: Option<Arc<str>>,
    /// The inotify instance: opened at once without fanotify, else on the
    /// first directory fanotify refuses.
    ino: Option<OwnedFd>,
    next_index: usize,
    /// fanotify: handle key → directory index; inotify: wd → index.
    by_handle: HashMap<Vec<u8>, usize>,
    by_wd: HashMap<i32, usize>,
    /// Index → its key in one of the maps above, and the fanotify mask
    /// already given (a repeat needs no `fanotify_mark`).
    marks: HashMap<usize, (Mark, u64)>,
    /// Reasons for an inotify watch already logged: each once.
    logged: HashSet<Arc<str>>,
    buf: Vec<u8>,
}

impl Watcher {
    /// fanotify when the kernel allows it, else inotify; the second value
    /// says why fanotify was not used.
    pub fn open() -> Result<(Watcher, Option<String>), WatchError> {
        let flags = libc::FAN_CLASS_NOTIF
            | libc::FAN_CLOEXEC
            | libc::FAN_NONBLOCK
            | libc::FAN_REPORT_DFID_NAME;
        let event_flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_LARGEFILE) as libc::c_uint;
        // SAFETY: plain syscall with integer arguments.
        let raw = unsafe { libc::fanotify_init(flags, event_flags) };
        if raw >= 0 {
            // SAFETY: a fresh descriptor we own from here on.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            return Ok((Watcher::new(Some(fd), None, None), None));
        }
        let err = std::io::Error::last_os_error();
        let hint = match err.raw_os_error() {
            Some(libc::EINVAL) => " (FID reporting needs Linux 5.9)",
            Some(libc::EPERM) => " (needs CAP_SYS_ADMIN)",
            Some(libc::ENOSYS) => " (kernel built without fanotify)",
            _ => "",
        };
        let why = format!("fanotify_init(FAN_REPORT_DFID_NAME): {err}{hint}");
        let w = Watcher::new(None, Some(why.as_str().into()), Some(Watcher::inotify()?));
        Ok((w, Some(why)))
    }

    /// inotify even where fanotify works (for tests of the fallback).
    pub fn open_inotify() -> Result<Watcher, WatchError> {
        Ok(Watcher::new(
            None,
            Some("inotify was asked for".into()),
            Some(Watcher::inotify()?),
        ))
    }

    fn inotify() -> Result<OwnedFd, WatchError> {
        rustix::fs::inotify::init(
            rustix::fs::inotify::CreateFlags::CLOEXEC | rustix::fs::inotify::CreateFlags::NONBLOCK,
        )
        .map_err(WatchError::Inotify)
    }

    fn new(fan: Option<OwnedFd>, fan_refused: Option<Arc<str>>, ino: Option<OwnedFd>) -> Watcher {
        Watcher {
            fan,
            fan_refused,
            ino,
            next_index: 0,
            by_handle: HashMap::new(),
            by_wd: HashMap::new(),
            marks: HashMap::new(),
            logged: HashSet::new(),
            buf: vec![0u8; 64 * 1024],
        }
    }

    /// The backend the collector started with: fanotify when the kernel
    /// gave a group (single directories may still be on inotify, see
    /// [`Watcher::backend_of`]).
    pub fn backend(&self) -> Backend {
        if self.fan.is_some() {
            Backend::Fanotify
        } else {
            Backend::Inotify
        }
    }

    /// How the directory `index` is watched, and, for inotify, why (so
    /// why its changes come without a writer).
    pub fn backend_of(&self, index: usize) -> (Backend, Option<&str>) {
        match self.marks.get(&index) {
            Some((Mark::Wd(_, why), _)) => (Backend::Inotify, Some(why)),
            Some((Mark::Handle(_), _)) => (Backend::Fanotify, None),
            None => (self.backend(), self.fan_refused.as_deref()),
        }
    }

    /// How many directories are watched.
    pub fn len(&self) -> usize {
        self.marks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts watching the open directory `dir` (`shown` names it in
    /// errors) for `interest`, and returns its index. The mark is put on
    /// the inode the descriptor holds, never on a path the kernel would
    /// resolve again, so whoever opened it decides what is followed. The
    /// same directory (by inode) keeps its index and gains the interest.
    pub fn watch(
        &mut self,
        dir: BorrowedFd<'_>,
        shown: &Path,
        interest: Interest,
    ) -> Result<usize, WatchError> {
        let fan = self.fan.as_ref().map(AsRawFd::as_raw_fd);
        let why = match fan.map(|fan| self.fan_watch(fan, dir, interest)) {
            Some(Ok(i)) => return Ok(i),
            Some(Err(e)) => {
                let fs = fs_name(dir).map_or(String::new(), |n| format!(" ({n})"));
                format!("fanotify refused this directory{fs}: {e}").into()
            }
            None => self
                .fan_refused
                .clone()
                .unwrap_or_else(|| "fanotify unavailable".into()),
        };
        if self.fan.is_some() && self.logged.insert(Arc::clone(&why)) {
            log::warn!(
                "{}: {why}; watched with inotify, without writer processes",
                crate::sources::fs_safe::render_path(shown)
            );
        }
        self.ino_watch(dir, interest, why)
            .map_err(|source| WatchError::Mark {
                path: shown.to_path_buf(),
                source,
            })
    }

    /// A fanotify mark (group `fan`) on the inode `dir` holds; the index
    /// it has, or the reason the kernel gave for refusing it.
    fn fan_watch(
        &mut self,
        fan: std::os::fd::RawFd,
        dir: BorrowedFd<'_>,
        interest: Interest,
    ) -> Result<usize, FanRefusal> {
        let key = dir_handle(dir).map_err(FanRefusal::Handle)?;
        let mask = interest.fan_mask();
        let known = self.by_handle.get(&key).copied();
        if let Some(i) = known {
            if self.marks.get(&i).is_some_and(|(_, m)| m & mask == mask) {
                return Ok(i);
            }
        }
        // SAFETY: `fan` is our fanotify group's descriptor (held by
        // `self.fan`) and `dir` a valid directory fd; a null path marks the
        // directory the descriptor refers to.
        let rc = unsafe {
            libc::fanotify_mark(
                fan,
                libc::FAN_MARK_ADD | libc::FAN_MARK_ONLYDIR,
                mask,
                dir.as_raw_fd(),
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(FanRefusal::Mark(last_errno()));
        }
        if let Some(i) = known {
            if let Some((_, m)) = self.marks.get_mut(&i) {
                *m |= mask;
            }
            return Ok(i);
        }
        let i = self.new_index();
        self.by_handle.insert(key.clone(), i);
        self.marks.insert(i, (Mark::Handle(key), mask));
        Ok(i)
    }

    fn ino_watch(
        &mut self,
        dir: BorrowedFd<'_>,
        interest: Interest,
        why: Arc<str>,
    ) -> Result<usize, Errno> {
        if self.ino.is_none() {
            self.ino = Some(Watcher::inotify().map_err(|e| match e {
                WatchError::Inotify(e) => e,
                _ => Errno::INVAL,
            })?);
        }
        let Some(ino) = self.ino.as_ref() else {
            return Err(Errno::INVAL);
        };
        // inotify takes a path: our own descriptor's, which names the
        // very inode opened.
        let path = format!("/proc/self/fd/{}", dir.as_raw_fd());
        let wd = rustix::fs::inotify::add_watch(ino, path, interest.inotify_mask())?;
        if let Some(&i) = self.by_wd.get(&wd) {
            return Ok(i);
        }
        let i = self.new_index();
        self.by_wd.insert(wd, i);
        self.marks.insert(i, (Mark::Wd(wd, why), 0));
        Ok(i)
    }

    fn new_index(&mut self) -> usize {
        self.next_index += 1;
        self.next_index - 1
    }

    /// Stops reporting a directory. inotify drops the watch by its
    /// number. fanotify needs the inode again: `dir`, when it is still the
    /// directory marked (same handle), has its mark removed; otherwise
    /// (moved away, replaced) the mark stays in the kernel until the
    /// directory is deleted, and its events are dropped here. Watching it
    /// again gives it a new index.
    pub fn unwatch(&mut self, index: usize, dir: Option<BorrowedFd<'_>>) {
        match self.marks.remove(&index) {
            Some((Mark::Handle(key), _)) => {
                self.by_handle.remove(&key);
                let Some(dir) = dir.filter(|d| dir_handle(*d).is_ok_and(|k| k == key)) else {
                    return;
                };
                let Some(fan) = self.fan.as_ref() else {
                    return;
                };
                let all = [Interest::Entries, Interest::Subdirs, Interest::Files]
                    .iter()
                    .fold(0, |m, i| m | i.fan_mask());
                // SAFETY: valid fanotify fd and directory fd; a null path
                // names the directory the descriptor refers to.
                let rc = unsafe {
                    libc::fanotify_mark(
                        fan.as_raw_fd(),
                        libc::FAN_MARK_REMOVE,
                        all,
                        dir.as_raw_fd(),
                        std::ptr::null(),
                    )
                };
                if rc != 0 {
                    log::debug!("fanotify: removing a mark: {}", last_errno());
                }
            }
            Some((Mark::Wd(wd, _), _)) => {
                self.by_wd.remove(&wd);
                // The kernel may have dropped it already (directory deleted).
                if let Some(ino) = self.ino.as_ref() {
                    let _ = rustix::fs::inotify::remove_watch(ino, wd);
                }
            }
            None => {}
        }
    }

    /// Waits up to `timeout` for changes and returns what is queued.
    pub fn read(&mut self, timeout: Duration) -> Result<Batch, WatchError> {
        let ts = rustix::time::Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let queues: Vec<&OwnedFd> = self.fan.iter().chain(self.ino.iter()).collect();
        let mut fds: Vec<_> = queues
            .iter()
            .map(|fd| rustix::event::PollFd::new(*fd, rustix::event::PollFlags::IN))
            .collect();
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) | Err(Errno::INTR) => return Ok(Batch::default()),
            Ok(_) => {}
            Err(e) => return Err(WatchError::Read(e)),
        }
        let ready: Vec<bool> = fds.iter().map(|p| !p.revents().is_empty()).collect();
        let (fan_ready, ino_ready) = match (self.fan.is_some(), ready.as_slice()) {
            (true, [f, i]) => (*f, *i),
            (true, [f]) => (*f, false),
            (false, [i]) => (false, *i),
            _ => (false, false),
        };
        let mut batch = if fan_ready {
            self.read_fanotify()?
        } else {
            Batch::default()
        };
        if ino_ready {
            let more = self.read_inotify()?;
            batch.changes.extend(more.changes);
            batch.overflowed |= more.overflowed;
        }
        Ok(batch)
    }

    fn read_fanotify(&mut self) -> Result<Batch, WatchError> {
        let mut batch = Batch::default();
        let Some(fan) = self.fan.as_ref() else {
            return Ok(batch);
        };
        while let Some(events) =
            read_fanotify_queue(fan, &mut self.buf).map_err(WatchError::Read)?
        {
            for ev in events {
                if ev.fd >= 0 {
                    // Not in FID mode, but never leak one.
                    // SAFETY: the kernel handed us this descriptor.
                    drop(unsafe { OwnedFd::from_raw_fd(ev.fd) });
                }
                if ev.mask & libc::FAN_Q_OVERFLOW != 0 {
                    batch.overflowed = true;
                }
                let Some((key, name)) = ev.dir_fid else {
                    continue;
                };
                let Some(&dir) = self.by_handle.get(&key) else {
                    continue;
                };
                let pid = u32::try_from(ev.pid).ok().filter(|&p| p > 0);
                if ev.mask & (libc::FAN_DELETE_SELF | libc::FAN_MOVE_SELF) != 0 {
                    let action = if ev.mask & libc::FAN_DELETE_SELF != 0 {
                        Action::Deleted
                    } else {
                        Action::MovedOut
                    };
                    batch.changes.push(Change {
                        dir,
                        name,
                        action,
                        pid,
                        subject: Subject::Itself,
                    });
                    continue;
                }
                let subject = if ev.mask & libc::FAN_ONDIR != 0 {
                    Subject::Directory
                } else {
                    Subject::File
                };
                for &(bit, action) in FAN_ACTIONS {
                    if ev.mask & bit != 0 {
                        batch.changes.push(Change {
                            dir,
                            name: name.clone(),
                            action,
                            pid,
                            subject,
                        });
                    }
                }
            }
        }
        Ok(batch)
    }

    fn read_inotify(&mut self) -> Result<Batch, WatchError> {
        use rustix::fs::inotify::ReadFlags as R;
        let mut batch = Batch::default();
        let mut buf = [MaybeUninit::<u8>::uninit(); 16 * 1024];
        let Some(ino) = self.ino.as_ref() else {
            return Ok(batch);
        };
        let mut reader = rustix::fs::inotify::Reader::new(ino.as_fd(), &mut buf);
        loop {
            let ev = match reader.next() {
                Ok(ev) => ev,
                Err(Errno::AGAIN) => return Ok(batch),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(WatchError::Read(e)),
            };
            let flags = ev.events();
            if flags.contains(R::QUEUE_OVERFLOW) {
                batch.overflowed = true;
            }
            let Some(&dir) = self.by_wd.get(&ev.wd()) else {
                continue;
            };
            if flags.intersects(R::DELETE_SELF | R::MOVE_SELF | R::IGNORED) {
                if flags.contains(R::IGNORED) {
                    // The kernel dropped the watch; its number may be
                    // handed out again.
                    self.by_wd.remove(&ev.wd());
                    self.marks.remove(&dir);
                }
                batch.changes.push(Change {
                    dir,
                    name: OsString::from("."),
                    action: if flags.contains(R::MOVE_SELF) {
                        Action::MovedOut
                    } else {
                        Action::Deleted
                    },
                    pid: None,
                    subject: Subject::Itself,
                });
                continue;
            }
            let Some(name) = ev.file_name() else {
                continue;
            };
            let subject = if flags.contains(R::ISDIR) {
                Subject::Directory
            } else {
                Subject::File
            };
            let name = OsString::from_vec(name.to_bytes().to_vec());
            for (bit, action) in [
                (R::CREATE, Action::Created),
                (R::MOVED_TO, Action::MovedIn),
                (R::CLOSE_WRITE, Action::Modified),
                (R::ATTRIB, Action::Attributes),
                (R::MOVED_FROM, Action::MovedOut),
                (R::DELETE, Action::Deleted),
            ] {
                if flags.contains(bit) {
                    batch.changes.push(Change {
                        dir,
                        name: name.clone(),
                        action,
                        pid: None,
                        subject,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(mask: u64, pid: i32, handle: &[u8], name: &[u8]) -> Vec<u8> {
        let mut rec = vec![libc::FAN_EVENT_INFO_TYPE_DFID_NAME, 0, 0, 0];
        rec.extend_from_slice(&[7u8; 8]); // fsid
        rec.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
        rec.extend_from_slice(&1i32.to_ne_bytes());
        rec.extend_from_slice(handle);
        rec.extend_from_slice(name);
        rec.push(0);
        while rec.len() % 4 != 0 {
            rec.push(0);
        }
        let rl = rec.len() as u16;
        rec[2..4].copy_from_slice(&rl.to_ne_bytes());
        let mut ev = Vec::new();
        ev.extend_from_slice(&((24 + rec.len()) as u32).to_ne_bytes());
        ev.extend_from_slice(&[3, 0]);
        ev.extend_from_slice(&24u16.to_ne_bytes());
        ev.extend_from_slice(&mask.to_ne_bytes());
        ev.extend_from_slice(&(-1i32).to_ne_bytes());
        ev.extend_from_slice(&pid.to_ne_bytes());
        ev.extend_from_slice(&rec);
        ev
    }

    #[test]
    fn decodes_dfid_name_records() {
        let mut buf = event(
            libc::FAN_CREATE | libc::FAN_CLOSE_WRITE,
            42,
            b"HANDLE01",
            b"x.service",
        );
        buf.extend(event(libc::FAN_DELETE, 43, b"HANDLE02", b"y"));
        let evs = parse_fanotify(&buf);
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].pid, 42);
        assert_eq!(evs[0].mask, libc::FAN_CREATE | libc::FAN_CLOSE_WRITE);
        assert_eq!(
            evs[0].dir_fid,
            Some((handle_key(1, b"HANDLE01"), OsString::from("x.service")))
        );
        assert_eq!(
            evs[1].dir_fid.as_ref().map(|d| d.1.clone()),
            Some("y".into())
        );
    }

    #[test]
    fn truncated_buffers_do_not_panic() {
        let buf = event(libc::FAN_CREATE, 1, b"HANDLE01", b"x.service");
        for cut in 0..buf.len() {
            assert!(parse_fanotify(&buf[..cut]).is_empty(), "cut {cut}");
        }
        // A record length past the event: the event stays, without a name.
        let mut bad = buf.clone();
        bad[26] = 0xff;
        bad[27] = 0x7f;
        let evs = parse_fanotify(&bad);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].dir_fid, None);
    }

    /// The marks the kernel holds for a watcher, from its fdinfo.
    fn kernel_marks(w: &Watcher) -> usize {
        w.fan
            .iter()
            .chain(w.ino.iter())
            .map(|fd| {
                let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
                    .expect("fdinfo");
                info.lines()
                    .filter(|l| l.starts_with("fanotify ino:") || l.starts_with("inotify wd:"))
                    .count()
            })
            .sum()
    }

    #[test]
    fn one_mark_per_directory_and_unwatch_removes_it() {
        let mut watchers = vec![Watcher::open_inotify().expect("inotify")];
        match Watcher::open().expect("watcher") {
            (w, None) => watchers.push(w),
            (_, Some(why)) => eprintln!("{why}: fanotify not checked"),
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let open = |p: &Path| {
            rustix::fs::open(
                p,
                rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .expect("open")
        };
        for mut w in watchers {
            let a = open(dir.path());
            let b = open(dir.path());
            let i = w
                .watch(a.as_fd(), dir.path(), Interest::Subdirs)
                .expect("watch");
            let j = w
                .watch(b.as_fd(), dir.path(), Interest::Entries)
                .expect("watch");
            assert_eq!(i, j, "{:?}", w.backend());
            assert_eq!((w.len(), kernel_marks(&w)), (1, 1), "{:?}", w.backend());
            w.unwatch(i, Some(b.as_fd()));
            assert_eq!((w.len(), kernel_marks(&w)), (0, 0), "{:?}", w.backend());
            // A new mark for the same directory gets a new index.
            let k = w
                .watch(a.as_fd(), dir.path(), Interest::Entries)
                .expect("watch");
            assert_ne!(k, i);
        }
    }

    #[test]
    fn a_watched_directory_deleted_or_moved_is_reported_as_itself() {
        let mut watchers = vec![Watcher::open_inotify().expect("inotify")];
        if let (w, None) = Watcher::open().expect("watcher") {
            watchers.push(w);
        }
        for mut w in watchers {
            let t = tempfile::tempdir().expect("tempdir");
            let (moved, deleted) = (t.path().join("moved"), t.path().join("deleted"));
            let mut index = Vec::new();
            for d in [&moved, &deleted] {
                std::fs::create_dir(d).expect("mkdir");
                let fd = rustix::fs::open(
                    d.as_path(),
                    rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .expect("open");
                index.push(w.watch(fd.as_fd(), d, Interest::Subdirs).expect("watch"));
            }
            std::fs::rename(&moved, t.path().join("elsewhere")).expect("mv");
            std::fs::remove_dir(&deleted).expect("rmdir");
            let batch = w.read(Duration::from_secs(2)).expect("read");
            let itself: Vec<(usize, &str)> = batch
                .changes
                .iter()
                .filter(|c| c.subject == Subject::Itself)
                .map(|c| (c.dir, c.action.as_str()))
                .collect();
            assert!(
                itself.contains(&(index[0], "moved_out")),
                "{:?}: {itself:?}",
                w.backend()
            );
            assert!(
                itself.contains(&(index[1], "deleted")),
                "{:?}: {itself:?}",
                w.backend()
            );
        }
    }

    #[test]
    fn inotify_backend_reports_changes_without_a_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = Watcher::open_inotify().expect("inotify");
        let fd = rustix::fs::open(
            dir.path(),
            rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .expect("open");
        let i = w
            .watch(fd.as_fd(), dir.path(), Interest::Entries)
            .expect("watch");
        assert_eq!(
            w.watch(fd.as_fd(), dir.path(), Interest::Subdirs)
                .expect("again"),
            i,
            "one directory, one index"
        );
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("a.service"), "x").expect("write");
        std::fs::rename(dir.path().join("a.service"), dir.path().join("b.service")).expect("mv");
        std::fs::remove_file(dir.path().join("b.service")).expect("rm");
        let batch = w.read(Duration::from_secs(2)).expect("read");
        let got: Vec<(String, &str)> = batch
            .changes
            .iter()
            .filter(|c| c.subject == Subject::File)
            .map(|c| {
                assert_eq!(c.dir, i);
                assert_eq!(c.pid, None);
                (c.name.to_string_lossy().into_owned(), c.action.as_str())
            })
            .collect();
        assert!(batch
            .changes
            .iter()
            .any(|c| c.subject == Subject::Directory && c.name == "sub"));
        assert_eq!(
            got,
            vec![
                ("a.service".into(), "created"),
                ("a.service".into(), "modified"),
                ("a.service".into(), "moved_out"),
                ("b.service".into(), "moved_in"),
                ("b.service".into(), "deleted"),
            ]
        );
    }
}
