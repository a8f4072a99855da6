//! `/proc` as typed facts about processes, for the tables that hunt what a bus
//! daemon started.
//!
//! Parsers take bytes so fixture bytes test them; [`Proc`] is the thin reader
//! over a proc directory (`/proc`, or `--proc DIR` for container hosts and
//! fixtures). Every read opens with `O_NOFOLLOW|O_NONBLOCK` and is capped, so
//! a fixture tree holding a FIFO or a huge file cannot block or exhaust us.
//! A process that exits mid-scan surfaces as [`ProcError::Vanished`], which
//! callers skip quietly.
use rustix::fs::OFlags;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// `stat`, `status` and `comm` are a few hundred bytes; anything bigger is not
/// a kernel file.
const SMALL_CAP: u64 = 64 * 1024;
/// A command line is bounded by ARG_MAX (2 MiB by default); past this we keep
/// what we have rather than read without limit.
const CMDLINE_CAP: u64 = 2 * 1024 * 1024;
/// How much of an `environ` is searched for a few variables when scanning
/// many processes: real environments are a few KiB, and a process that
/// pads its environment past this to hide a variable is rare enough not to
/// pay ARG_MAX per process for.
pub const ENVIRON_SCAN_CAP: u64 = 256 * 1024;
/// Initial buffer for a `/proc` read: most files fit in one read.
const READ_HINT: usize = 8 * 1024;
/// `cgroup` is one line per hierarchy (a dozen on cgroup v1).
const CGROUP_CAP: u64 = 16 * 1024;
/// `PF_KTHREAD` in stat's flags field: a kernel thread, which has no
/// environment, cgroup unit or command line worth reading.
const PF_KTHREAD: u32 = 0x0020_0000;
/// `PF_EXITING`: the task is in `do_exit`; its memory (so its command
/// line) and executable link may already be gone while its state is
/// still R or D.
const PF_EXITING: u32 = 0x0000_0004;

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The process exited (or never existed): callers skip it.
    #[error("pid {pid}: process vanished")]
    Vanished { pid: u32 },
    #[error("pid {pid}: {file}: {source}")]
    Io {
        pid: u32,
        file: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("pid {pid}: {file}: {problem}")]
    Parse {
        pid: u32,
        file: &'static str,
        problem: String,
    },
    #[error("{path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ProcError {
    pub fn is_vanished(&self) -> bool {
        matches!(self, ProcError::Vanished { .. })
    }
}

/// The fields of `/proc/<pid>/stat` the tables use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The kernel's task name, at most 15 bytes, lossily decoded; may hold
    /// spaces, parentheses and newlines.
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    /// Session id: equal to the pid for a session leader (`setsid`).
    pub session: u32,
    /// The kernel's `PF_*` flags.
    pub flags: u32,
    /// Start time in clock ticks after boot.
    pub starttime: u64,
}

impl Stat {
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }

    /// How far a process is through exiting, when it is: a zombie (`Z`,
    /// exited and not yet reaped by its parent), dead (`X`), or exiting
    /// (the kernel's exiting flag). Such a process has no command line or
    /// executable left to read, whatever it ran.
    pub fn exit_phase(&self) -> Option<ExitPhase> {
        match self.state {
            'Z' => Some(ExitPhase::Zombie),
            'X' | 'x' => Some(ExitPhase::Dead),
            _ if self.flags & PF_EXITING != 0 => Some(ExitPhase::Exiting),
            _ => None,
        }
    }
}

/// See [`Stat::exit_phase`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitPhase {
    Zombie,
    Dead,
    Exiting,
}

impl ExitPhase {
    /// Why such a process shows no command line or executable, for a
    /// row's reason.
    pub fn reason(self, ppid: u32) -> String {
        match self {
            ExitPhase::Zombie => format!(
                "a zombie (exited, not yet reaped by its parent {ppid}): no command line or executable left"
            ),
            ExitPhase::Dead => "dead (being reaped): no command line or executable left".into(),
            ExitPhase::Exiting => {
                "exiting: its command line and executable may already be gone".into()
            }
        }
    }
}

/// Where comm starts and ends in `stat`: the first `(` and the last `)`
/// after it (found with `memchr`: the line is read for every process).
fn comm_bounds(bytes: &[u8]) -> Result<(usize, usize), &'static str> {
    let open = memchr::memchr(b'(', bytes).ok_or("no `(` before comm")?;
    let close = memchr::memrchr(b')', bytes)
        .filter(|&c| c > open)
        .ok_or("no `)` after comm")?;
    Ok((open, close))
}

/// The fields of `text` between runs of ASCII whitespace, as
/// `str::split_ascii_whitespace` gives them, by a plain byte loop.
fn ascii_fields(text: &str) -> impl Iterator<Item = &str> {
    let b = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        // Both ends sit next to ASCII bytes (or the ends of the text):
        // char boundaries.
        text.get(start..i).filter(|f| !f.is_empty())
    })
}

/// Parses `stat`. The comm field sits between the first `(` and the *last*
/// `)`: a process may name itself `a) b (c`, so splitting on spaces or on the
/// first `)` would misread every later field.
pub fn parse_stat(bytes: &[u8]) -> Result<Stat, String> {
    let (open, close) = comm_bounds(bytes)?;
    let rest =
        std::str::from_utf8(&bytes[close + 1..]).map_err(|_| "fields after comm are not UTF-8")?;
    // Fields after comm start at field 3 (state); starttime is field 22.
    // Called for every process on the host: the wanted fields are picked
    // as the split goes (no vector of all 50), and it stops at starttime.
    let mut wanted: [Option<&str>; 5] = [None; 5];
    for (n, f) in (3..=22).zip(ascii_fields(rest)) {
        let slot = match n {
            3 => 0,
            4 => 1,
            6 => 2,
            9 => 3,
            22 => 4,
            _ => continue,
        };
        wanted[slot] = Some(f);
    }
    let [state, ppid, session, flags, starttime] = wanted;
    fn field(v: Option<&str>, n: usize) -> Result<&str, String> {
        v.ok_or_else(|| format!("field {n} missing"))
    }
    let state = field(state, 3)?.chars().next().ok_or("empty state")?;
    let ppid = field(ppid, 4)?;
    let ppid = ppid
        .parse()
        .map_err(|_| format!("bad ppid {:?}", Some(ppid)))?;
    let session = field(session, 6)?;
    let session = session
        .parse()
        .map_err(|_| format!("bad session {:?}", Some(session)))?;
    let flags = field(flags, 9)?;
    let flags = flags
        .parse()
        .map_err(|_| format!("bad flags {:?}", Some(flags)))?;
    let starttime = field(starttime, 22)?;
    let starttime = starttime
        .parse()
        .map_err(|_| format!("bad starttime {:?}", Some(starttime)))?;
    let comm = String::from_utf8_lossy(&bytes[open + 1..close]).into_owned();
    Ok(Stat {
        comm,
        state,
        ppid,
        session,
        flags,
        starttime,
    })
}

/// The comm and ppid of `stat`, without allocating: for the pass over every
/// process. Accepts exactly what [`parse_stat`] accepts (starttime included),
/// so the two never disagree about which processes exist.
pub fn parse_stat_brief(bytes: &[u8]) -> Option<(&[u8], u32)> {
    let (open, close) = comm_bounds(bytes).ok()?;
    let rest = std::str::from_utf8(&bytes[close + 1..]).ok()?;
    let mut fields = ascii_fields(rest);
    fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    // starttime is field 22; the state was field 3 and ppid field 4.
    fields.nth(22 - 5)?.parse::<u64>().ok()?;
    Some((&bytes[open + 1..close], ppid))
}

/// Real and effective ids from `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ids {
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub egid: u32,
}

/// Parses the `Uid:` and `Gid:` lines of `status` (real, effective, saved,
/// filesystem); the first two of each are kept.
pub fn parse_status(bytes: &[u8]) -> Result<Ids, String> {
    let text = String::from_utf8_lossy(bytes);
    let mut uid = None;
    let mut gid = None;
    for line in text.lines() {
        let pair = |rest: &str| -> Option<(u32, u32)> {
            let mut it = rest.split_ascii_whitespace().map(str::parse::<u32>);
            Some((it.next()?.ok()?, it.next()?.ok()?))
        };
        if let Some(rest) = line.strip_prefix("Uid:") {
            uid = pair(rest);
        } else if let Some(rest) = line.strip_prefix("Gid:") {
            gid = pair(rest);
        }
    }
    let (uid, euid) = uid.ok_or("no usable Uid line")?;
    let (gid, egid) = gid.ok_or("no usable Gid line")?;
    Ok(Ids {
        uid,
        euid,
        gid,
        egid,
    })
}

/// Splits `cmdline` on NUL. Empty arguments are arguments (`a '' b` has three);
/// only the terminator after the last one is dropped. Kernel threads and
/// zombies have an empty cmdline: no arguments.
pub fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let body = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    body.split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Parses a `task/<tid>/children` file: space-separated pids.
pub fn parse_children(bytes: &[u8]) -> Vec<u32> {
    String::from_utf8_lossy(bytes)
        .split_ascii_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The `btime` line of the system-wide `stat`: boot time in unix seconds.
pub fn parse_btime(bytes: &[u8]) -> Option<u64> {
    String::from_utf8_lossy(bytes)
        .lines()
        .find_map(|l| l.strip_prefix("btime")?.trim().parse().ok())
}

/// `environ`: NUL-separated `KEY=value` pairs; the value of `key`, if set.
pub fn parse_environ_var(bytes: &[u8], key: &str) -> Option<String> {
    bytes.split(|&b| b == 0).find_map(|kv| {
        let kv = String::from_utf8_lossy(kv);
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

/// `environ`: the values of several `keys` in one pass, in `keys` order.
pub fn parse_environ_vars<const N: usize>(bytes: &[u8], keys: [&str; N]) -> [Option<String>; N] {
    let mut out: [Option<String>; N] = std::array::from_fn(|_| None);
    for kv in bytes.split(|&b| b == 0) {
        let Some(eq) = kv.iter().position(|&b| b == b'=') else {
            continue;
        };
        let key = &kv[..eq];
        if let Some(i) = keys.iter().position(|k| k.as_bytes() == key) {
            // The first definition is the one getenv() returns.
            if out[i].is_none() {
                out[i] = Some(String::from_utf8_lossy(&kv[eq + 1..]).into_owned());
            }
        }
    }
    out
}

/// What `exe` says about the executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exe {
    /// The path, without the kernel's ` (deleted)` marker; `None` when unreadable
    /// (kernel threads, or another user's process without privilege).
    pub path: Option<String>,
    /// As osquery's `processes.on_disk`: 1 present, 0 deleted, -1 unknown.
    pub on_disk: i32,
}

/// Interprets the text of the `exe` link. The kernel appends ` (deleted)`
/// when the file was unlinked after exec.
pub fn parse_exe_link(target: &str) -> Exe {
    match target.strip_suffix(" (deleted)") {
        Some(path) => Exe {
            path: Some(path.to_string()),
            on_disk: 0,
        },
        None => Exe {
            path: Some(target.to_string()),
            on_disk: 1,
        },
    }
}

/// Clock ticks per second, the unit of `stat`'s starttime.
pub fn clock_ticks() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

/// A proc directory: `/proc`, or another one given with `--proc`.
#[derive(Debug, Clone)]
pub struct Proc {
    dir: PathBuf,
}

impl Proc {
    pub fn new(dir: impl Into<PathBuf>) -> Proc {
        Proc { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn pid_path(&self, pid: u32, file: &str) -> PathBuf {
        self.dir.join(pid.to_string()).join(file)
    }

    /// Every numeric entry: the processes (threads are not listed there).
    pub fn pids(&self) -> Result<Vec<u32>, ProcError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|source| ProcError::Dir {
            path: self.dir.clone(),
            source,
        })?;
        let mut pids: Vec<u32> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// Calls `f(pid, contents)` for every process with its `file` (`comm`,
    /// `stat`: a small kernel file), in directory order: the cheap pass that
    /// finds bus daemons on a host of thousands of processes.
    ///
    /// It costs what the comm floor costs: one listing, then per pid an
    /// `openat` relative to the open proc directory, one `read` into a
    /// reused buffer and a `close`, with no allocation. On a real procfs
    /// (checked once with `fstatfs`) the file type check of [`read_capped`]
    /// is skipped, as every entry is a kernel file; elsewhere (a fixture
    /// tree) each file is checked and read as [`read_capped`] does.
    pub fn for_each_small(
        &self,
        file: &'static str,
        mut f: impl FnMut(u32, Result<&[u8], ProcError>),
    ) -> Result<(), ProcError> {
        use rustix::fs::{fstat, fstatfs, openat, Dir, FileType, Mode, PROC_SUPER_MAGIC};
        let dir_err = |e: rustix::io::Errno| ProcError::Dir {
            path: self.dir.clone(),
            source: e.into(),
        };
        let dir = openat(
            rustix::fs::CWD,
            &self.dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(dir_err)?;
        let procfs = fstatfs(&dir).is_ok_and(|s| s.f_type == PROC_SUPER_MAGIC);
        let entries = Dir::read_from(&dir).map_err(dir_err)?;
        let mut path: Vec<u8> = Vec::with_capacity(32);
        let mut buf: Vec<u8> = vec![0; 4096];
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let Some(pid) = std::str::from_utf8(entry.file_name().to_bytes())
                .ok()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            path.clear();
            path.extend_from_slice(entry.file_name().to_bytes());
            path.push(b'/');
            path.extend_from_slice(file.as_bytes());
            let fd = match openat(
                &dir,
                path.as_slice(),
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(e) => {
                    f(pid, Err(classify(pid, file, e.into())));
                    continue;
                }
            };
            if !procfs {
                match fstat(&fd) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
                    Ok(_) => {
                        let e = std::io::Error::new(ErrorKind::InvalidInput, "not a regular file");
                        f(
                            pid,
                            Err(ProcError::Io {
                                pid,
                                file,
                                source: e,
                            }),
                        );
                        continue;
                    }
                    Err(e) => {
                        f(pid, Err(classify(pid, file, e.into())));
                        continue;
                    }
                }
            }
            // procfs answers a small file in one read; read on while the
            // buffer fills, up to the cap.
            let mut len = 0;
            let result = loop {
                if len == buf.len() {
                    if len as u64 >= SMALL_CAP {
                        break Ok(());
                    }
                    buf.resize(len * 2, 0);
                }
                match rustix::io::read(&fd, &mut buf[len..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        len += n;
                        if procfs && len < buf.len() {
                            break Ok(());
                        }
                    }
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => break Err(e),
                }
            };
            match result {
                Ok(()) => f(pid, Ok(&buf[..len.min(SMALL_CAP as usize)])),
                Err(e) => f(pid, Err(classify(pid, file, e.into()))),
            }
        }
        Ok(())
    }

    /// Whether this proc dir is known to lack `task/<tid>/children` (a
    /// kernel built without `CONFIG_PROC_CHILDREN`), judged by its
    /// `thread-self`: `Some(true)` lacks them, `Some(false)` has them,
    /// `None` cannot tell (a fixture tree, or a proc that does not show us).
    pub fn lacks_children_files(&self) -> Option<bool> {
        let thread = self.dir.join("thread-self");
        std::fs::metadata(&thread).ok()?;
        match std::fs::symlink_metadata(thread.join("children")) {
            Ok(_) => Some(false),
            Err(e) if e.kind() == ErrorKind::NotFound => Some(true),
            Err(_) => None,
        }
    }

    fn read(&self, pid: u32, file: &'static str, cap: u64) -> Result<Vec<u8>, ProcError> {
        read_capped(&self.pid_path(pid, file), cap).map_err(|source| classify(pid, file, source))
    }

    /// `comm` without its trailing newline: the cheap way to spot a daemon.
    pub fn comm(&self, pid: u32) -> Result<String, ProcError> {
        let bytes = self.read(pid, "comm", SMALL_CAP)?;
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    pub fn stat(&self, pid: u32) -> Result<Stat, ProcError> {
        let bytes = self.read(pid, "stat", SMALL_CAP)?;
        parse_stat(&bytes).map_err(|problem| ProcError::Parse {
            pid,
            file: "stat",
            problem,
        })
    }

    pub fn ids(&self, pid: u32) -> Result<Ids, ProcError> {
        let bytes = self.read(pid, "status", SMALL_CAP)?;
        parse_status(&bytes).map_err(|problem| ProcError::Parse {
            pid,
            file: "status",
            problem,
        })
    }

    pub fn cmdline(&self, pid: u32) -> Result<Vec<String>, ProcError> {
        Ok(parse_cmdline(&self.read(pid, "cmdline", CMDLINE_CAP)?))
    }

    /// One variable from `environ` (readable by root or the owner only).
    pub fn environ_var(&self, pid: u32, key: &str) -> Result<Option<String>, ProcError> {
        Ok(parse_environ_var(
            &self.read(pid, "environ", CMDLINE_CAP)?,
            key,
        ))
    }

    /// Several variables from `environ` in one bounded read (at most
    /// [`ENVIRON_SCAN_CAP`]). Another user's `environ` needs root: that
    /// comes back as [`ProcError::Io`] with `PermissionDenied`.
    pub fn environ_vars<const N: usize>(
        &self,
        pid: u32,
        keys: [&str; N],
    ) -> Result<[Option<String>; N], ProcError> {
        Ok(parse_environ_vars(
            &self.read(pid, "environ", ENVIRON_SCAN_CAP)?,
            keys,
        ))
    }

    /// The raw `cgroup` file (parsed by `sources::systemd_unit`).
    pub fn cgroup(&self, pid: u32) -> Result<Vec<u8>, ProcError> {
        self.read(pid, "cgroup", CGROUP_CAP)
    }

    /// Reads a magic link. A zombie's `exe` and `cwd` are gone while the
    /// process is still listed, so a missing link means "vanished" only when
    /// the process itself is gone too.
    fn link(&self, pid: u32, file: &'static str) -> Result<String, ProcError> {
        std::fs::read_link(self.pid_path(pid, file))
            .map(|t| t.to_string_lossy().into_owned())
            .map_err(|source| match classify(pid, file, source) {
                ProcError::Vanished { pid } if self.pid_path(pid, "stat").exists() => {
                    ProcError::Io {
                        pid,
                        file,
                        source: std::io::Error::from(ErrorKind::NotFound),
                    }
                }
                other => other,
            })
    }

    /// The executable. An unreadable link is "unknown", not an error: the
    /// row still comes out.
    pub fn exe(&self, pid: u32) -> Result<Exe, ProcError> {
        match self.link(pid, "exe") {
            Ok(target) => Ok(parse_exe_link(&target)),
            Err(e) if e.is_vanished() => Err(e),
            Err(_) => Ok(Exe {
                path: None,
                on_disk: -1,
            }),
        }
    }

    pub fn cwd(&self, pid: u32) -> Result<String, ProcError> {
        self.link(pid, "cwd")
    }

    /// Children of every thread of `pid`, from `task/<tid>/children`. `None`
    /// when this kernel (or fixture) lacks those files: the caller falls back
    /// to a scan of every process's parent.
    pub fn children(&self, pid: u32) -> Result<Option<Vec<u32>>, ProcError> {
        let task_dir = self.pid_path(pid, "task");
        let tasks = match std::fs::read_dir(&task_dir) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // No task dir: gone, or a proc tree without tasks.
                return if self.pid_path(pid, "stat").exists() {
                    Ok(None)
                } else {
                    Err(ProcError::Vanished { pid })
                };
            }
            Err(source) => return Err(classify(pid, "task", source)),
        };
        let mut all = Vec::new();
        let mut seen_file = false;
        for task in tasks.filter_map(Result::ok) {
            match read_capped(&task.path().join("children"), CMDLINE_CAP) {
                Ok(bytes) => {
                    seen_file = true;
                    all.extend(parse_children(&bytes));
                }
                // A thread that exited between listing and reading.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(source) => return Err(classify(pid, "task/children", source)),
            }
        }
        all.sort_unstable();
        all.dedup();
        Ok(seen_file.then_some(all))
    }

    /// Boot time in unix seconds, from the system-wide `stat`.
    pub fn boot_time(&self) -> Option<u64> {
        parse_btime(&read_capped(&self.dir.join("stat"), SMALL_CAP).ok()?)
    }

    /// The executable opened through the `exe` link (which reaches even a
    /// deleted file), without blocking.
    pub fn open_exe(&self, pid: u32) -> Result<File, ProcError> {
        OpenOptions::new()
            .read(true)
            .custom_flags(OFlags::NONBLOCK.bits() as i32)
            .open(self.pid_path(pid, "exe"))
            .map_err(|source| classify(pid, "exe", source))
    }
}

/// ENOENT and ESRCH both mean the process is gone.
fn classify(pid: u32, file: &'static str, source: std::io::Error) -> ProcError {
    if source.kind() == ErrorKind::NotFound || source.raw_os_error() == Some(3) {
        ProcError::Vanished { pid }
    } else {
        ProcError::Io { pid, file, source }
    }
}

/// Reads at most `cap` bytes of a regular file, never following a symlink
/// and never opening a FIFO or device: the path is probed with `O_PATH`
/// first (no side effect on any file type), and opened for reading only if
/// that is a regular file, then checked to be the same file. Opening alone
/// is not harmless: a bus config path comes from a command line any user
/// writes, and opening `/dev/watchdog` arms a watchdog, a tape device
/// rewinds, a FIFO's blocked writer is released.
pub fn read_capped(path: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    let not_regular = || std::io::Error::new(ErrorKind::InvalidInput, "not a regular file");
    let probe = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let before = rustix::fs::fstat(&probe)?;
    if rustix::fs::FileType::from_raw_mode(before.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(not_regular());
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
        .open(path)?;
    let after = file.metadata()?;
    if !after.is_file() || after.dev() != before.st_dev || after.ino() != before.st_ino {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "changed while being opened",
        ));
    }
    // Syscalls per file dominate a scan of every process, so: room for a
    // whole stat or a typical environ up front (`read_to_end` on an empty
    // Vec probes with 32-byte reads), and a short read taken as the end.
    // Both hold for regular files and for the proc files read here
    // (`stat` is generated whole; `environ` and `cmdline` are copied until
    // the request or the data runs out), saving the read that returns 0.
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let mut buf = vec![0u8; cap.min(READ_HINT)];
    let mut len = 0;
    let mut reader = file;
    loop {
        if len == buf.len() {
            if len >= cap {
                break;
            }
            buf.resize(len.saturating_mul(2).clamp(1, cap), 0);
        }
        let n = match reader.read(&mut buf[len..]) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        len += n;
        if n == 0 || len < buf.len() {
            break;
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// A real procfs, held open for reading one small file of a pid at a
/// time at the cost of `openat`, `read` and `close`: for a reader that
/// looks at every exec on the host (`collect::process`), where
/// [`read_capped`]'s checks would cost more than the read. Only a procfs
/// is accepted ([`ProcFiles::open`] is `None` for a fixture tree): every
/// entry there is a kernel file, never a FIFO or a device.
pub struct ProcFiles {
    dir: rustix::fd::OwnedFd,
    path: Vec<u8>,
    buf: Vec<u8>,
}

impl ProcFiles {
    pub fn open(dir: &Path) -> Option<ProcFiles> {
        use rustix::fs::{fstatfs, openat, Mode, PROC_SUPER_MAGIC};
        let dir = openat(
            rustix::fs::CWD,
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        fstatfs(&dir)
            .is_ok_and(|s| s.f_type == PROC_SUPER_MAGIC)
            .then(|| ProcFiles {
                dir,
                path: Vec::with_capacity(32),
                buf: vec![0; 512],
            })
    }

    /// The start of `<pid>/<file>` (up to 512 bytes: enough for `comm` or
    /// `stat`), or the error that names the pid.
    pub fn small(&mut self, pid: u32, file: &'static str) -> Result<&[u8], ProcError> {
        use std::io::Write as _;
        self.path.clear();
        let _ = write!(self.path, "{pid}/{file}");
        let fd = rustix::fs::openat(
            &self.dir,
            self.path.as_slice(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| classify(pid, file, e.into()))?;
        let n = loop {
            match rustix::io::read(&fd, &mut self.buf[..]) {
                Ok(n) => break n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(classify(pid, file, e.into())),
            }
        };
        Ok(&self.buf[..n.min(self.buf.len())])
    }

    /// `comm` without its newline.
    pub fn comm(&mut self, pid: u32) -> Result<&[u8], ProcError> {
        let b = self.small(pid, "comm")?;
        Ok(b.strip_suffix(b"\n").unwrap_or(b))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    fn stat_line(comm: &[u8], ppid: u32, start: u64) -> Vec<u8> {
        let mut v = b"1234 (".to_vec();
        v.extend_from_slice(comm);
        v.extend_from_slice(
            format!(") S {ppid} 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 {start} 1000 100 18446744073709551615\n")
                .as_bytes(),
        );
        v
    }

    #[test]
    fn stat_with_parens_and_spaces_in_comm() {
        let s = parse_stat(&stat_line(b"a) b (c", 77, 4242)).unwrap();
        assert_eq!(s.comm, "a) b (c");
        assert_eq!(s.ppid, 77);
        assert_eq!(s.state, 'S');
        assert_eq!(s.starttime, 4242);
        assert_eq!(s.session, 1234);
        assert_eq!(s.flags, 4194560);
        assert!(!s.is_kernel_thread());
    }

    #[test]
    fn stat_with_newline_and_close_paren_last_in_comm() {
        let s = parse_stat(&stat_line(b"x\ny)", 5, 9)).unwrap();
        assert_eq!(s.comm, "x\ny)");
        assert_eq!(s.ppid, 5);
        let s = parse_stat(&stat_line(b"", 6, 1)).unwrap();
        assert_eq!(s.comm, "");
    }

    #[test]
    fn stat_garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"1234",
            b"1234 (x",
            b") (",
            b"1 (x) S",
            b"1 (x) S notanumber",
            b"1 (x) S 1 2 3",
            b"\xff\xfe(\xff) \xff",
        ] {
            assert!(parse_stat(bad).is_err(), "{bad:?}");
        }
        // Which problem is named: the first in field order.
        for (bad, problem) in [
            (&b"1 (x) S notanumber"[..], r#"bad ppid Some("notanumber")"#),
            (b"1 (x) S 1 2 3", "field 9 missing"),
            (b"1 (x) S 1 2 y 4 5 6 7", r#"bad session Some("y")"#),
            (b"1 (x) S 1 2 3 4 5 f", r#"bad flags Some("f")"#),
            (b"1 (x) S 1 2 3 4 5 6", "field 22 missing"),
            (b"1 (x)", "field 3 missing"),
        ] {
            assert_eq!(parse_stat(bad).unwrap_err(), problem, "{bad:?}");
        }
        let mut late = stat_line(b"x", 1, 2);
        late.truncate(late.len() - 1);
        late.extend_from_slice(b" \xff\n");
        assert!(
            parse_stat(&late).is_err(),
            "every field after comm is UTF-8"
        );
    }

    #[test]
    fn fields_split_as_split_ascii_whitespace() {
        for text in [
            "",
            " ",
            "a",
            " a  b\tc\n",
            "S 1 2\x0c3\r4 ",
            "é x\u{a0}y  z",
            "\n\n",
        ] {
            let ours: Vec<&str> = ascii_fields(text).collect();
            let std: Vec<&str> = text.split_ascii_whitespace().collect();
            assert_eq!(ours, std, "{text:?}");
        }
    }

    #[test]
    fn brief_stat_agrees_with_the_full_parser() {
        let mut cases = vec![
            stat_line(b"a) b (c", 77, 4242),
            stat_line(b"x\ny)", 5, 9),
            stat_line(b"", 6, 1),
        ];
        for bad in [
            &b""[..],
            b"1234",
            b"1234 (x",
            b") (",
            b"1 (x) S",
            b"1 (x) S notanumber",
            b"1 (x) S 1 2 3",
            b"\xff\xfe(\xff) \xff",
        ] {
            cases.push(bad.to_vec());
        }
        for case in cases {
            let full = parse_stat(&case).ok();
            let brief = parse_stat_brief(&case);
            assert_eq!(full.is_some(), brief.is_some(), "{case:?}");
            if let (Some(full), Some((comm, ppid))) = (full, brief) {
                assert_eq!(String::from_utf8_lossy(comm), full.comm);
                assert_eq!(ppid, full.ppid);
            }
        }
    }

    #[test]
    fn pass_over_a_fixture_tree_reads_each_file_once() {
        let dir = tempfile::tempdir().unwrap();
        for (pid, comm) in [(1u32, "init"), (42, "dbus-daemon")] {
            let p = dir.path().join(pid.to_string());
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("comm"), format!("{comm}\n")).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("7/comm")).unwrap(); // not a file
        std::fs::create_dir(dir.path().join("8")).unwrap(); // no comm: vanished
        std::fs::create_dir(dir.path().join("self")).unwrap();
        let proc = Proc::new(dir.path());
        let mut seen = Vec::new();
        proc.for_each_small("comm", |pid, r| {
            seen.push((pid, r.map(|b| b.to_vec()).map_err(|e| e.is_vanished())))
        })
        .unwrap();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                (1, Ok(b"init\n".to_vec())),
                (7, Err(false)),
                (8, Err(true)),
                (42, Ok(b"dbus-daemon\n".to_vec())),
            ]
        );
        assert_eq!(proc.lacks_children_files(), None);
        assert!(Proc::new(dir.path().join("none"))
            .for_each_small("comm", |_, _| {})
            .is_err());
    }

    #[test]
    fn status_ids() {
        let text = b"Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t0\t0\t0\nGid:\t100\t101\t101\t101\n";
        assert_eq!(
            parse_status(text).unwrap(),
            Ids {
                uid: 1000,
                euid: 0,
                gid: 100,
                egid: 101
            }
        );
        assert!(parse_status(b"Name:\tx\n").is_err());
        assert!(parse_status(b"Uid:\tx\nGid:\t1 1\n").is_err());
    }

    #[test]
    fn cmdline_keeps_empty_args() {
        assert_eq!(parse_cmdline(b"/bin/sh\0\0-c\0"), vec!["/bin/sh", "", "-c"]);
        assert_eq!(parse_cmdline(b"a\0\0"), vec!["a", ""]);
        assert_eq!(parse_cmdline(b""), Vec::<String>::new());
        // A process that rewrote its argv may drop the final NUL.
        assert_eq!(parse_cmdline(b"a b"), vec!["a b"]);
    }

    #[test]
    fn children_btime_environ_exe() {
        assert_eq!(parse_children(b"12 34 56 "), vec![12, 34, 56]);
        assert_eq!(parse_children(b""), Vec::<u32>::new());
        assert_eq!(
            parse_btime(b"cpu 1 2\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_btime(b"cpu 1 2\n"), None);
        assert_eq!(
            parse_environ_var(b"A=1\0XDG_DATA_HOME=/x/y\0B=\0", "XDG_DATA_HOME"),
            Some("/x/y".into())
        );
        assert_eq!(parse_environ_var(b"A=1\0", "B"), None);
        assert_eq!(
            parse_environ_vars(b"A=1\0B=x=y\0junk\0A=2\0", ["A", "B", "C"]),
            [Some("1".into()), Some("x=y".into()), None]
        );
        assert_eq!(parse_exe_link("/tmp/x (deleted)").on_disk, 0);
        assert_eq!(
            parse_exe_link("/tmp/x (deleted)").path.as_deref(),
            Some("/tmp/x")
        );
        assert_eq!(parse_exe_link("/usr/bin/sleep").on_disk, 1);
    }

    #[test]
    fn capped_reads_grow_and_stop_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let path = dir.path().join("f");
        std::fs::write(&path, &big).unwrap();
        assert_eq!(read_capped(&path, 1 << 20).unwrap(), big);
        assert_eq!(read_capped(&path, 10_000).unwrap(), big[..10_000]);
        assert_eq!(read_capped(&path, 0).unwrap(), Vec::<u8>::new());
        std::fs::write(&path, b"").unwrap();
        assert!(read_capped(&path, 100).unwrap().is_empty());
        let env = Proc::new("/proc").environ_vars(std::process::id(), ["PATH"]);
        assert!(env.unwrap()[0].is_some());
    }

    #[test]
    fn reader_on_the_live_proc() {
        let proc = Proc::new("/proc");
        let me = std::process::id();
        assert!(proc.pids().unwrap().contains(&me));
        let st = proc.stat(me).unwrap();
        assert!(st.ppid > 0);
        assert!(!proc.cmdline(me).unwrap().is_empty());
        assert_eq!(proc.exe(me).unwrap().on_disk, 1);
        assert!(proc.children(me).is_ok());
        assert!(proc.boot_time().unwrap() > 1_000_000_000);
        assert!(proc.stat(u32::MAX).unwrap_err().is_vanished());
        let mut comms = HashMap::new();
        proc.for_each_small("comm", |pid, r| {
            if let Ok(b) = r {
                comms.insert(pid, b.to_vec());
            }
        })
        .unwrap();
        let mine = proc.comm(me).unwrap();
        assert_eq!(comms.get(&me), Some(&format!("{mine}\n").into_bytes()));
        let mut ppids = HashMap::new();
        proc.for_each_small("stat", |pid, r| {
            if let Some((_, ppid)) = r.ok().and_then(parse_stat_brief) {
                ppids.insert(pid, ppid);
            }
        })
        .unwrap();
        assert_eq!(ppids.get(&me), Some(&st.ppid));
        assert!(proc.lacks_children_files().is_some());
    }

    /// Found while hardening: `read_capped` opened its path (O_NONBLOCK)
    /// before checking the type, and a bus's `--config-file` may name any
    /// FIFO or device. A writer blocked opening a FIFO is released by any
    /// opener, so it shows whether the FIFO was opened.
    /// A FIFO with a writer blocked opening it: any opener releases the
    /// writer, so it shows whether the FIFO was opened.
    pub(crate) struct WatchedFifo {
        path: PathBuf,
        writer: std::thread::JoinHandle<std::io::Result<File>>,
    }

    impl WatchedFifo {
        pub(crate) fn new(path: &Path) -> WatchedFifo {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                path,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )
            .unwrap();
            let writer = {
                let path = path.to_path_buf();
                std::thread::spawn(move || OpenOptions::new().write(true).open(path))
            };
            std::thread::sleep(std::time::Duration::from_millis(100));
            WatchedFifo {
                path: path.to_path_buf(),
                writer,
            }
        }

        /// Fails if anything opened the FIFO; then releases the writer.
        pub(crate) fn assert_never_opened(self) {
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert!(
                !self.writer.is_finished(),
                "the FIFO was opened for reading"
            );
            let _reader = OpenOptions::new()
                .read(true)
                .custom_flags(OFlags::NONBLOCK.bits() as i32)
                .open(&self.path)
                .unwrap();
            assert!(self.writer.join().unwrap().is_ok());
        }
    }

    #[test]
    fn read_capped_never_opens_a_fifo_or_device() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("bus.conf");
        let watched = WatchedFifo::new(&fifo);
        let e = read_capped(&fifo, 10).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        watched.assert_never_opened();
        // Devices are refused the same way; /dev/null is harmless to try.
        let e = read_capped(Path::new("/dev/null"), 10).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        // Kernel files are regular.
        assert!(!read_capped(Path::new("/proc/self/stat"), 4096)
            .unwrap()
            .is_empty());
    }
}
