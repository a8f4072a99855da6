//! The `dbus_file_events` collector: one thread watching every directory
//! `service_dirs::discover` finds (the same list `dbus_service_files`
//! reads), turning each change into a row with the writer (fanotify) and
//! the file's stat after the event. The directory list is discovered again
//! at once when a watched bus config or policy file changes (a new
//! `<servicedir>` is watched before anything can be planted in it), and
//! every [`REDISCOVER`] otherwise, for what no watched file announces (a new
//! user in passwd, a service directory created later); until then changes
//! there are missed.
//!
//! The writer's name and executable are read from `/proc` when the event is
//! handled; a writer that has already exited leaves them NULL (its pid
//! stays). `package_manager` is 1 when the writer or one of its two nearest
//! ancestors is a package manager (dpkg runs maintainer scripts as `sh`).
use super::{publish, Store, FILE_TABLE};
use crate::sources::file_watch::{Change, Watcher};
use crate::sources::proc::Proc;
use crate::sources::{fs_safe, service_dirs, stat};
use crate::tables::{Row, Settings};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Package manager programs, by the kernel's (15-byte) comm.
pub const PACKAGE_MANAGERS: &[&str] = &[
    "dpkg",
    "dpkg-deb",
    "apt",
    "apt-get",
    "aptitude",
    "unattended-upgr",
    "packagekitd",
    "rpm",
    "rpmkeys",
    "dnf",
    "dnf-3",
    "microdnf",
    "yum",
    "zypper",
    "pacman",
    "apk",
];

pub fn is_package_manager(comm: &str) -> bool {
    PACKAGE_MANAGERS.contains(&comm)
}

/// How often the directory list is discovered again.
pub const REDISCOVER: Duration = Duration::from_secs(30);

/// Opens the watcher and marks the directories now (so no change after
/// this call is missed), then reads in a thread.
pub(crate) fn spawn(settings: Settings, store: Arc<Store>) {
    let (mut watcher, why) = match Watcher::open() {
        Ok(w) => w,
        Err(e) => return store.fail(e.to_string()),
    };
    if let Some(why) = why {
        log::warn!("{FILE_TABLE}: {why}; using inotify, without writer processes");
    }
    let mut collector = Collector {
        proc: Proc::new(&settings.proc),
        settings,
        store: Arc::clone(&store),
        dirs: Vec::new(),
    };
    collector.discover(&mut watcher);
    if let Err(e) = std::thread::Builder::new()
        .name(FILE_TABLE.into())
        .spawn(move || collector.run(watcher))
    {
        store.fail(format!("cannot start the collector thread: {e}"));
    }
}

struct Collector {
    settings: Settings,
    proc: Proc,
    store: Arc<Store>,
    /// Per watcher index: the directory as the bus names it (inside the
    /// root), the one file a config directory is read for, and whether its
    /// files configure the bus (so a change means discovering again).
    dirs: Vec<(PathBuf, Option<std::ffi::OsString>, bool)>,
}

impl Collector {
    fn discover(&mut self, watcher: &mut Watcher) {
        let root = match fs_safe::Root::open(&self.settings.root) {
            Ok(r) => r,
            Err(e) => return log::warn!("{FILE_TABLE}: {e}"),
        };
        for dir in service_dirs::discover(&root).dirs {
            let host = self.settings.under_root(&dir.path);
            if watcher.is_watched(&host) {
                continue;
            }
            match watcher.add(&host) {
                Ok(i) => {
                    if self.dirs.len() <= i {
                        self.dirs.resize(i + 1, (PathBuf::new(), None, false));
                    }
                    let configures = std::iter::once(dir.role)
                        .chain(dir.also.iter().copied())
                        .any(|r| r != service_dirs::Role::Services);
                    self.dirs[i] = (dir.path.clone(), dir.only.clone(), configures);
                }
                // Most discovered directories do not exist on a given host.
                Err(e) => log::debug!("{FILE_TABLE}: {e}"),
            }
        }
    }

    fn run(&mut self, mut watcher: Watcher) {
        let mut discovered = Instant::now();
        let mut reconfigured = false;
        loop {
            match watcher.read(Duration::from_secs(1)) {
                Ok(batch) => {
                    if batch.overflowed {
                        self.store
                            .lost
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        log::warn!("{FILE_TABLE}: the kernel's event queue overflowed");
                    }
                    for c in batch.changes {
                        if let Some(row) = self.row(&watcher, &c) {
                            self.record(row);
                            reconfigured |= self.dirs.get(c.dir).is_some_and(|d| d.2);
                        }
                    }
                }
                Err(e) => return self.store.fail(e.to_string()),
            }
            if reconfigured || discovered.elapsed() >= REDISCOVER {
                self.discover(&mut watcher);
                discovered = Instant::now();
                reconfigured = false;
            }
        }
    }

    fn record(&self, mut row: Row) {
        let time = super::now_secs();
        row.set("time", time);
        publish(FILE_TABLE, "file", &row);
        self.store.push(time, &row);
    }

    fn row(&self, watcher: &Watcher, c: &Change) -> Option<Row> {
        let (inner, only, _) = self.dirs.get(c.dir)?;
        if only.as_ref().is_some_and(|o| *o != c.name) {
            return None;
        }
        let host_dir = watcher.dir(c.dir)?;
        let mut row = Row::new();
        let path = inner.join(&c.name);
        row.set("action", c.action.as_str())
            .set("path", fs_safe::render_path(&path))
            .set("directory", fs_safe::render_path(inner))
            .set("filename", fs_safe::render(c.name.as_encoded_bytes()))
            .set("backend", watcher.backend().as_str());
        if let Some(pid) = c.pid {
            row.set("pid", pid);
            self.writer_columns(&mut row, pid);
        }
        if let Ok(dirfd) = rustix::fs::open(
            host_dir,
            rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) {
            if let Ok(m) = stat::stat_entry(&dirfd, &c.name, path) {
                row.set("type", m.kind.as_str())
                    .set("mode", m.mode_string())
                    .set("size", m.size)
                    .set("owner_uid", m.uid)
                    .set("owner_gid", m.gid)
                    .set("inode", m.ino)
                    .set("mtime", m.mtime)
                    .set("ctime", m.ctime);
            }
        }
        Some(row)
    }

    fn writer_columns(&self, row: &mut Row, pid: u32) {
        if let Ok(exe) = self.proc.exe(pid) {
            row.set("process_path", exe.path);
        }
        if let Ok(ids) = self.proc.ids(pid) {
            row.set("uid", ids.uid);
        }
        let Ok(stat) = self.proc.stat(pid) else {
            return;
        };
        row.set("process_name", stat.comm.as_str());
        let mut pm = is_package_manager(&stat.comm);
        let mut up = stat.ppid;
        for _ in 0..2 {
            if pm || up <= 1 {
                break;
            }
            match self.proc.stat(up) {
                Ok(s) => {
                    pm = is_package_manager(&s.comm);
                    up = s.ppid;
                }
                Err(_) => break,
            }
        }
        row.set("package_manager", pm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_managers_by_comm() {
        for p in ["dpkg", "apt-get", "rpm", "dnf", "yum", "unattended-upgr"] {
            assert!(is_package_manager(p), "{p}");
        }
        assert!(!is_package_manager("sh"));
        assert!(!is_package_manager("dpkgx"));
    }
}
