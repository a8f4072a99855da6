//! Which process began executing one of a few chosen binaries, even when
//! that process is gone before anyone reads its `/proc` entry: a fanotify
//! group (`FAN_CLASS_NOTIF`, no permission events, so nothing ever waits on
//! us) with `FAN_OPEN_EXEC` inode marks on each binary. The kernel queues
//! that event while `execve` opens the file, before the process connector
//! reports the exec, so whoever reads the connector can look here for an
//! exec whose process has already vanished (`collect::process` does, for
//! D-Bus client programs such as `dbus-send`).
//!
//! Binaries are found by name in directories given by the caller (the bin
//! directories of the root), following symlinks (`/bin -> usr/bin`, an
//! alternatives link) and deduplicated by inode. A link whose target has
//! another name (a multiplexer such as busybox or qtchooser) is not marked:
//! its inode runs other programs too. A binary replaced by a package
//! upgrade is a new inode; [`ExecWatch::refresh`] marks it when a
//! directory's change time moves.
//!
//! Plain fanotify (without FID reporting) needs `CAP_SYS_ADMIN`; without it
//! [`ExecWatch::open`] fails and the caller does without. Each event comes
//! with a descriptor of the opened file, used once for `fstat` (dev and
//! inode name the binary) and closed. The event records are decoded by
//! `file_watch::parse_fanotify`.
use super::file_watch::read_fanotify_queue;
use rustix::fd::{AsRawFd, FromRawFd, OwnedFd};
use rustix::io::Errno;
use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ExecWatchError {
    #[error("fanotify_init(FAN_CLASS_NOTIF): {0} (needs CAP_SYS_ADMIN)")]
    Init(#[source] std::io::Error),
    #[error("reading fanotify events: {0}")]
    Read(#[source] Errno),
    /// The kernel refuses `FAN_OPEN_EXEC` marks: Linux before 5.0.
    #[error("fanotify_mark(FAN_OPEN_EXEC): {0} (exec events need Linux 5.0)")]
    NoExecEvents(#[source] std::io::Error),
}

/// A marked binary: its name as a program (the file name it was found
/// under) and its path with symlinks resolved, inside the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    pub name: String,
    pub path: PathBuf,
}

/// One exec start: the process (thread group id) and the binary's index
/// for [`ExecWatch::binary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub pid: u32,
    pub binary: usize,
}

/// What one drain of the queue brought.
#[derive(Debug, Default)]
pub struct Drained {
    pub opened: Vec<Opened>,
    /// The kernel's queue overflowed: exec starts were lost.
    pub overflowed: bool,
}

/// A directory's identity and change time, to notice entries replaced.
type DirStamp = (u64, u64, i64, i64);

pub struct ExecWatch {
    fd: OwnedFd,
    /// The root the directories are named inside (host path).
    root: PathBuf,
    dirs: Vec<(PathBuf, Option<DirStamp>)>,
    wanted: fn(&str) -> bool,
    by_inode: HashMap<(u64, u64), usize>,
    binaries: Vec<Binary>,
    buf: Vec<u8>,
}

fn stamp(path: &Path) -> Option<DirStamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
}

impl ExecWatch {
    /// A fanotify group for the binaries named `wanted(file name)` in
    /// `dirs` (paths inside `root`); marks them at once.
    pub fn open(
        root: &Path,
        dirs: &[&str],
        wanted: fn(&str) -> bool,
    ) -> Result<ExecWatch, ExecWatchError> {
        let flags = libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK;
        let event_flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_LARGEFILE) as libc::c_uint;
        // SAFETY: plain syscall with integer arguments.
        let raw = unsafe { libc::fanotify_init(flags, event_flags) };
        if raw < 0 {
            return Err(ExecWatchError::Init(std::io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor we own from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut w = ExecWatch {
            fd,
            root: root.to_path_buf(),
            dirs: dirs.iter().map(|d| (PathBuf::from(d), None)).collect(),
            wanted,
            by_inode: HashMap::new(),
            binaries: Vec::new(),
            buf: vec![0u8; 16 * 1024],
        };
        w.refresh();
        // One probe says whether exec events exist at all: on a kernel
        // without them every mark fails alike, and a watch with nothing
        // marked would pass for one that saw no client.
        if w.binaries.is_empty() {
            if let Some(Errno::INVAL) = w.probe_exec_mark() {
                return Err(ExecWatchError::NoExecEvents(Errno::INVAL.into()));
            }
        }
        Ok(w)
    }

    pub fn binary(&self, index: usize) -> Option<&Binary> {
        self.binaries.get(index)
    }

    pub fn binaries(&self) -> &[Binary] {
        &self.binaries
    }

    fn host(&self, inner: &Path) -> PathBuf {
        self.root
            .join(inner.strip_prefix("/").unwrap_or(inner.as_ref()))
    }

    /// The path inside the root of a host path (unchanged when outside it).
    fn inner(&self, host: &Path) -> PathBuf {
        match host.strip_prefix(&self.root) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => host.to_path_buf(),
        }
    }

    /// Marks the binaries of every directory whose change time moved since
    /// the last look (all of them the first time); returns how many it
    /// marked. Cheap when nothing changed: one `stat`
    /// per directory.
    pub fn refresh(&mut self) -> usize {
        let mut seen_dirs: Vec<(u64, u64)> = Vec::new();
        let mut marked = 0;
        for i in 0..self.dirs.len() {
            let host = self.host(&self.dirs[i].0);
            let now = stamp(&host);
            let unchanged = now.is_some() && now == self.dirs[i].1;
            self.dirs[i].1 = now;
            let Some((dev, ino, ..)) = now else { continue };
            // `/bin` and `/usr/bin` are one directory on merged-/usr systems.
            if seen_dirs.contains(&(dev, ino)) {
                continue;
            }
            seen_dirs.push((dev, ino));
            if unchanged {
                continue;
            }
            marked += self.scan_dir(&host);
        }
        marked
    }

    fn scan_dir(&mut self, host_dir: &Path) -> usize {
        // Only a directory no one but its owner can write: a link planted
        // by another user must not point the marks elsewhere.
        match std::fs::metadata(host_dir) {
            Ok(m) if m.is_dir() && m.mode() & 0o022 == 0 => {}
            _ => return 0,
        }
        let Ok(entries) = std::fs::read_dir(host_dir) else {
            return 0;
        };
        let mut marked = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !(self.wanted)(name) {
                continue;
            }
            let found = entry.path();
            let Ok(target) = std::fs::canonicalize(&found) else {
                continue;
            };
            let target_name = target.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !(self.wanted)(target_name) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&target) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let key = (meta.dev(), meta.ino());
            // Marked again even when the inode number is known: a replaced
            // file's new inode may reuse the old one's number, and marking
            // twice only adds the same bit.
            if let Err(e) = self.mark(&target) {
                log::debug!("fanotify mark {}: {e}", target.display());
                continue;
            }
            marked += 1;
            if !self.by_inode.contains_key(&key) {
                self.by_inode.insert(key, self.binaries.len());
                self.binaries.push(Binary {
                    name: name.to_string(),
                    path: self.inner(&target),
                });
            }
        }
        marked
    }

    /// Marks the root directory itself for `FAN_OPEN_EXEC` and takes the
    /// mark off again: the error a kernel without exec events gives.
    fn probe_exec_mark(&self) -> Option<Errno> {
        let root = self.root.clone();
        let err = self.mark(&root).err();
        if err.is_none() {
            let c = CString::new(root.as_os_str().as_bytes()).ok()?;
            // SAFETY: valid fanotify fd and NUL-terminated path.
            unsafe {
                libc::fanotify_mark(
                    self.fd.as_raw_fd(),
                    libc::FAN_MARK_REMOVE,
                    libc::FAN_OPEN_EXEC,
                    libc::AT_FDCWD,
                    c.as_ptr(),
                );
            }
        }
        err
    }

    fn mark(&self, path: &Path) -> Result<(), Errno> {
        let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::INVAL)?;
        // SAFETY: valid fanotify fd and NUL-terminated path.
        let rc = unsafe {
            libc::fanotify_mark(
                self.fd.as_raw_fd(),
                libc::FAN_MARK_ADD,
                libc::FAN_OPEN_EXEC,
                libc::AT_FDCWD,
                c.as_ptr(),
            )
        };
        if rc != 0 {
            return Err(
                Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::INVAL)
            );
        }
        Ok(())
    }

    /// Everything queued now, without waiting.
    pub fn drain(&mut self) -> Result<Drained, ExecWatchError> {
        let mut out = Drained::default();
        while let Some(events) =
            read_fanotify_queue(&self.fd, &mut self.buf).map_err(ExecWatchError::Read)?
        {
            for ev in events {
                if ev.mask & libc::FAN_Q_OVERFLOW != 0 {
                    out.overflowed = true;
                }
                if ev.fd < 0 {
                    continue;
                }
                // SAFETY: the kernel handed us this descriptor; it is
                // closed when `file` drops.
                let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(ev.fd) });
                let Ok(meta) = file.metadata() else {
                    continue;
                };
                let key = (meta.dev(), meta.ino());
                let (Some(&binary), Ok(pid)) = (self.by_inode.get(&key), u32::try_from(ev.pid))
                else {
                    continue;
                };
                if ev.mask & libc::FAN_OPEN_EXEC != 0 && pid > 0 {
                    out.opened.push(Opened { pid, binary });
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    fn is_tool(name: &str) -> bool {
        name == "tool"
    }

    /// A real exec of a marked copy of `true`, through a symlinked
    /// directory and a second name; needs CAP_SYS_ADMIN (tests run as
    /// root), else says why and returns.
    #[test]
    fn an_exec_of_a_marked_binary_is_reported_with_its_pid() {
        let root = tempfile::tempdir().expect("tempdir");
        let bin = root.path().join("usr/bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::os::unix::fs::symlink("usr/bin", root.path().join("bin")).expect("ln bin");
        std::fs::copy("/bin/true", bin.join("tool")).expect("cp true");
        std::fs::copy("/bin/true", bin.join("other")).expect("cp true");
        let mut w = match ExecWatch::open(root.path(), &["/usr/bin", "/bin"], is_tool) {
            Ok(w) => w,
            Err(e) => return eprintln!("SKIPPED: {e}"),
        };
        assert_eq!(
            w.binaries(),
            &[Binary {
                name: "tool".into(),
                path: "/usr/bin/tool".into()
            }]
        );
        let child = Command::new(root.path().join("bin/tool"))
            .spawn()
            .expect("run tool");
        let pid = child.id();
        let _ = Command::new(bin.join("other")).status();
        let mut child = child;
        let _ = child.wait();
        let got = w.drain().expect("drain");
        assert_eq!(got.opened, vec![Opened { pid, binary: 0 }]);
        assert!(!got.overflowed);
        // A replaced binary (a new inode) is marked on refresh; the pause
        // lets the directory's change time (coarse clock) move.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::remove_file(bin.join("tool")).expect("rm");
        std::fs::copy("/bin/true", bin.join("tool")).expect("cp true");
        assert_eq!(w.refresh(), 1);
        assert_eq!(w.refresh(), 0, "nothing changed since");
        let mut again = Command::new(bin.join("tool")).spawn().expect("run");
        let pid = again.id();
        let _ = again.wait();
        let opened = w.drain().expect("drain").opened;
        assert_eq!(opened.len(), 1, "{opened:?}");
        assert_eq!(opened[0].pid, pid);
        let b = w.binary(opened[0].binary).expect("binary");
        assert_eq!(b.path, Path::new("/usr/bin/tool"));
    }
}
