//! Which D-Bus client binary a process started executing, for the
//! process collector's execs whose `/proc` entry is already
//! gone: the `FAN_OPEN_EXEC` events of `sources::exec_watch`, read from the
//! kernel's queue only when such an exec asks and once a second, kept by
//! pid for a short while. Deciding what a row says stays in `process`.
use super::process::is_client;
use super::PROCESS;
use crate::settings::Settings;
use crate::sources::exec_watch::{self, ExecWatch};
use crate::sources::proc_connector;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where D-Bus client programs are looked for (inside the root) to mark
/// them for [`ExecWatch`].
pub const CLIENT_DIRS: &[&str] = &["/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin", "/sbin"];
/// The exec starts are read at least this often even when no vanished
/// process asks for them, so the kernel's queue and the map stay small.
const LAUNCH_DRAIN_NS: u64 = 1_000_000_000;
/// How often the client directories are looked at again for replaced or
/// new binaries (one stat per directory when nothing changed).
const LAUNCH_REFRESH_NS: u64 = 30_000_000_000;
/// An exec start read this long before the exec event it would explain
/// belongs to an earlier exec (one that failed after opening the file).
const LAUNCH_MAX_AGE_NS: u64 = 2_000_000_000;
const MAX_LAUNCHES: usize = 4096;

/// Client execs seen by fanotify (`sources::exec_watch`), by pid, for an
/// exec whose `/proc` entry is gone before it could be read.
pub(crate) struct Launches {
    watch: Option<ExecWatch>,
    /// pid → (binary, monotonic ns when read from the queue).
    by_pid: HashMap<u32, (exec_watch::Binary, u64)>,
    drained_ns: u64,
    refreshed_ns: u64,
}

impl Launches {
    pub(crate) fn open(settings: &Settings) -> Launches {
        let watch = match ExecWatch::open(&settings.root, CLIENT_DIRS, is_client) {
            Ok(w) => {
                log::debug!(
                    "{PROCESS}: exec of {} client binaries watched",
                    w.binaries().len()
                );
                Some(w)
            }
            Err(e) => {
                log::warn!(
                    "{PROCESS}: {e}; a D-Bus client that exits before /proc is read is missed"
                );
                None
            }
        };
        let now = proc_connector::monotonic_ns();
        Launches {
            watch,
            by_pid: HashMap::new(),
            drained_ns: now,
            refreshed_ns: now,
        }
    }

    /// Reads the queue; `true` when it brought anything.
    pub(crate) fn drain(&mut self, lost: &AtomicU64) -> bool {
        let Some(watch) = self.watch.as_mut() else {
            return false;
        };
        let now = proc_connector::monotonic_ns();
        self.drained_ns = now;
        let drained = match watch.drain() {
            Ok(d) => d,
            Err(e) => {
                log::warn!("{PROCESS}: {e}; no longer watching client execs");
                self.watch = None;
                return false;
            }
        };
        if drained.overflowed {
            lost.fetch_add(1, Ordering::Relaxed);
            log::warn!("{PROCESS}: the kernel's fanotify queue overflowed");
        }
        // Most entries belong to clients read from /proc as usual, whose
        // exit came before this drain: gone once too old to explain an exec.
        self.by_pid
            .retain(|_, (_, read)| *read + LAUNCH_MAX_AGE_NS >= now);
        if self.by_pid.len() + drained.opened.len() > MAX_LAUNCHES {
            self.by_pid.clear();
        }
        let any = !drained.opened.is_empty();
        for o in drained.opened {
            if let Some(b) = watch.binary(o.binary) {
                self.by_pid.insert(o.pid, (b.clone(), now));
            }
        }
        any
    }

    /// Called after every receive: the periodic drain and refresh.
    pub(crate) fn tick(&mut self, lost: &AtomicU64) {
        if self.watch.is_none() {
            return;
        }
        let now = proc_connector::monotonic_ns();
        if now >= self.drained_ns + LAUNCH_DRAIN_NS {
            self.drain(lost);
        }
        if now >= self.refreshed_ns + LAUNCH_REFRESH_NS {
            self.refreshed_ns = now;
            if let Some(w) = self.watch.as_mut() {
                w.refresh();
            }
        }
    }

    /// The binary `pid` started executing, for its exec event at `exec_ns`.
    pub(crate) fn take(&mut self, pid: u32, exec_ns: u64) -> Option<exec_watch::Binary> {
        let (binary, read) = self.by_pid.remove(&pid)?;
        (read + LAUNCH_MAX_AGE_NS >= exec_ns).then_some(binary)
    }

    /// Drops what is kept for a process that exited.
    pub(crate) fn forget(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
    }
}
