//! The `dbus_file_events` collector: one thread watching every directory
//! `service_dirs::discover` finds (the same list `dbus_service_files`
//! reads), turning each change into a row with the writer (fanotify) and
//! the file's stat after the event.
//!
//! The list is discovered again at once when something announces a new
//! directory: a watched bus config or policy file changes (a new
//! `<servicedir>`), passwd changes (a new account's home), or a directory
//! appears on the way to one that is absent. For each absent directory the
//! existing directories leading to it are watched for the next component
//! (`sources::watch_target` says which; one mark per inode however many
//! absent directories wait there), so `mkdir -p` is followed as it goes.
//! [`REDISCOVER`] remains as a safety net for what nothing announces.
//!
//! A directory watched after start may already hold what was written
//! between its creation and its mark: it is listed right after the mark,
//! and each entry comes out as a [`FOUND`] row, writer unknown. A file
//! written in that window can so show twice (`created` and `found`), never
//! not at all. Discoveries asked for by events are at least [`MIN_GAP`]
//! apart.
//!
//! The writer's name and executable are read from `/proc` when the event is
//! handled; a writer that has already exited leaves them NULL (its pid
//! stays). `package_manager` is 1 when the writer or one of its two nearest
//! ancestors is a package manager (dpkg runs maintainer scripts as `sh`).
use super::{publish, Store, FILE_TABLE};
use crate::sources::file_watch::{Action, Change, Interest, Subject, WatchError, Watcher};
use crate::sources::proc::Proc;
use crate::sources::service_dirs::{self, ServiceDir};
use crate::sources::watch_target::{self, Target};
use crate::sources::{fs_safe, stat};
use crate::tables::{Row, Settings};
use rustix::fd::{AsFd, OwnedFd};
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
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

/// How often the directory list is discovered again when nothing
/// announces a change: the safety net for what no watch sees (a
/// root-owned directory above the watched ones renamed away, a tmpfs
/// mounted on `/run/user/<uid>`, a watched directory's ancestor renamed).
pub const REDISCOVER: Duration = Duration::from_secs(30);

/// The least time between two discoveries an event asked for, so a user
/// creating and removing directories in a loop cannot keep the collector
/// busy discovering; nothing is lost meanwhile, since a directory watched
/// late is listed (`found` rows).
pub const MIN_GAP: Duration = Duration::from_millis(20);

/// The action of a row for a file that was already in a directory when it
/// became watched.
pub const FOUND: &str = "found";

/// Opens the watcher and marks the directories now (so no change after
/// this call is missed), then reads in a thread.
pub(crate) fn spawn(settings: Settings, store: Arc<Store>) {
    let (watcher, why) = match Watcher::open() {
        Ok(w) => w,
        Err(e) => return store.fail(e.to_string()),
    };
    if let Some(why) = why {
        log::warn!("{FILE_TABLE}: {why}; using inotify, without writer processes");
    }
    let mut collector = Collector::new(settings, watcher);
    let feed = Arc::clone(&store);
    if let Err(e) = std::thread::Builder::new()
        .name(FILE_TABLE.into())
        .spawn(move || loop {
            match collector.next(Duration::from_secs(1)) {
                Ok(polled) => {
                    if polled.overflowed {
                        feed.lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        log::warn!("{FILE_TABLE}: the kernel's event queue overflowed");
                    }
                    for (time, row) in polled.rows {
                        publish(FILE_TABLE, "file", &row);
                        feed.push(time, &row);
                    }
                }
                Err(e) => return feed.fail(e.to_string()),
            }
        })
    {
        store.fail(format!("cannot start the collector thread: {e}"));
    }
}

/// What one [`Collector::next`] brought.
#[derive(Debug, Default)]
pub struct Polled {
    /// Rows, each with the unix time it was read (also its `time`).
    pub rows: Vec<(u64, Row)>,
    /// The kernel's queue overflowed: changes were lost.
    pub overflowed: bool,
}

/// What discovery wants from one watched directory.
#[derive(Debug, Default)]
struct Wanted {
    /// It is a D-Bus directory: its changes become rows.
    dir: Option<Watched>,
    /// Names whose appearance here means discovering again: the next path
    /// component of a D-Bus directory that does not exist yet, or passwd.
    awaited: HashSet<OsString>,
}

#[derive(Debug)]
struct Watched {
    /// The first of the spellings discovery gave this directory.
    dir: ServiceDir,
    /// The entries rows are made for: `None` for all, else the config
    /// files named (one directory may be read for several).
    names: Option<HashSet<OsString>>,
    /// Its files configure the bus, so a change means discovering again.
    configures: bool,
}

impl Watched {
    fn new(dir: &ServiceDir) -> Watched {
        let mut w = Watched {
            dir: dir.clone(),
            names: Some(HashSet::new()),
            configures: false,
        };
        w.merge(dir);
        w
    }

    fn merge(&mut self, dir: &ServiceDir) {
        match (&mut self.names, &dir.only) {
            (Some(names), Some(only)) => {
                names.insert(only.clone());
            }
            (names, None) => *names = None,
            (None, Some(_)) => {}
        }
        self.configures |= std::iter::once(dir.role)
            .chain(dir.also.iter().copied())
            .any(|r| r != service_dirs::Role::Services);
    }

    fn reports(&self, name: &OsStr) -> bool {
        self.dir.lists(name) && self.names.as_ref().is_none_or(|n| n.contains(name))
    }
}

/// The file collector, driven by [`Collector::next`]: `spawn` runs one in
/// a thread; tests drive one directly (say over an inotify [`Watcher`]).
pub struct Collector {
    settings: Settings,
    proc: Proc,
    watcher: Watcher,
    root: Option<fs_safe::Root>,
    /// Per watcher index.
    wanted: HashMap<usize, Wanted>,
    /// Set once the first discovery is done: directories watched later
    /// are listed.
    started: bool,
    /// An event asked for discovery.
    again: bool,
    discovered: Instant,
}

impl Collector {
    /// Marks every discovered directory now, so no change after this call
    /// is missed.
    pub fn new(settings: Settings, watcher: Watcher) -> Collector {
        let mut c = Collector {
            proc: Proc::new(&settings.proc),
            settings,
            watcher,
            root: None,
            wanted: HashMap::new(),
            started: false,
            again: false,
            discovered: Instant::now(),
        };
        // Nothing was watched before: no `found` rows.
        c.discover();
        c
    }

    /// How many directories are watched (D-Bus directories, their absent
    /// descendants' ancestors, and `/etc`).
    pub fn watched(&self) -> usize {
        self.wanted.len()
    }

    /// Waits up to `wait` for changes and returns their rows, discovering
    /// again first when due (rows for what a newly watched directory
    /// already holds come out then).
    pub fn next(&mut self, wait: Duration) -> Result<Polled, WatchError> {
        let wait = if self.again {
            wait.min(MIN_GAP.saturating_sub(self.discovered.elapsed()))
        } else {
            wait
        };
        let batch = self.watcher.read(wait)?;
        // Lost events may have announced a directory.
        self.again |= batch.overflowed;
        let mut polled = Polled {
            rows: Vec::new(),
            overflowed: batch.overflowed,
        };
        let mut rows: Vec<Row> = batch
            .changes
            .iter()
            .filter_map(|c| self.change(c))
            .collect();
        let due = self.discovered.elapsed();
        if (self.again && due >= MIN_GAP) || due >= REDISCOVER {
            rows.extend(self.discover());
        }
        let time = super::now_secs();
        polled.rows = rows
            .into_iter()
            .map(|mut r| {
                r.set("time", time);
                (time, r)
            })
            .collect();
        Ok(polled)
    }

    /// Handles one change: a row when it is in a D-Bus directory, and
    /// discovery when it moves a watched path.
    fn change(&mut self, c: &Change) -> Option<Row> {
        let wanted = self.wanted.get(&c.dir)?;
        if c.subject == Subject::Itself {
            // Deleted or renamed: its path must be resolved again.
            self.again = true;
            return None;
        }
        if wanted.awaited.contains(&c.name)
            && matches!(
                c.action,
                Action::Created | Action::MovedIn | Action::Modified
            )
        {
            self.again = true;
        }
        let watched = wanted.dir.as_ref()?;
        // A subdirectory is not something a bus loads.
        if c.subject != Subject::File || !watched.reports(&c.name) {
            return None;
        }
        self.again |= watched.configures;
        let mut row = self.entry_row(watched, c.action.as_str(), &c.name);
        if let Some(pid) = c.pid {
            row.set("pid", pid);
            self.writer_columns(&mut row, pid);
        }
        Some(row)
    }

    /// Discovers the directory list and watches what it names: each
    /// D-Bus directory that exists, and for each that does not, the
    /// directories it would appear in (`sources::watch_target`). Returns
    /// `found` rows for the files of D-Bus directories watched since the
    /// last discovery.
    fn discover(&mut self) -> Vec<Row> {
        self.again = false;
        self.discovered = Instant::now();
        let root = match fs_safe::Root::open(&self.settings.root) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("{FILE_TABLE}: {e}");
                return Vec::new();
            }
        };
        let mut next: HashMap<usize, Wanted> = HashMap::new();
        // passwd first: a change after this is seen, whatever discovery
        // reads.
        self.await_path(&root, &mut next, Path::new("/etc"), OsStr::new("passwd"));
        let mut fresh = Vec::new();
        for dir in service_dirs::discover(&root).dirs {
            match watch_target::locate(&root, &dir) {
                Target::Present(fd) => {
                    let Some(i) = self.mark(&fd, &dir.path, Interest::Entries) else {
                        continue;
                    };
                    let w = next.entry(i).or_default();
                    match &mut w.dir {
                        Some(d) => d.merge(&dir),
                        None => {
                            w.dir = Some(Watched::new(&dir));
                            let before = self.wanted.get(&i).and_then(|w| w.dir.as_ref());
                            if self.started && before.is_none() {
                                fresh.push((i, fd));
                            }
                        }
                    }
                }
                Target::Absent(steps) => {
                    for s in steps {
                        self.await_step(&mut next, s, Interest::Subdirs);
                    }
                }
                Target::Unreachable(why) => log::debug!("{FILE_TABLE}: not watched: {why}"),
            }
        }
        for (i, _) in self.wanted.iter() {
            if !next.contains_key(i) {
                self.watcher.unwatch(*i);
            }
        }
        self.wanted = next;
        self.started = true;
        let mut rows = Vec::new();
        for (i, fd) in fresh {
            if let Some(w) = self.wanted.get(&i).and_then(|w| w.dir.as_ref()) {
                rows.extend(self.found_rows(w, &fd));
            }
        }
        self.root = Some(root);
        rows
    }

    /// Watches for `name` to appear in the root-owned directory `dir`
    /// (or, while `dir` is absent, for `dir` to appear).
    fn await_path(
        &mut self,
        root: &fs_safe::Root,
        next: &mut HashMap<usize, Wanted>,
        dir: &Path,
        name: &OsStr,
    ) {
        match watch_target::locate_in_root(root, dir) {
            Target::Present(fd) => {
                let step = watch_target::Step {
                    dir: fd,
                    path: dir.to_path_buf(),
                    next: name.to_os_string(),
                };
                self.await_step(next, step, Interest::Files);
            }
            Target::Absent(steps) => {
                for s in steps {
                    self.await_step(next, s, Interest::Subdirs);
                }
            }
            Target::Unreachable(why) => log::debug!("{FILE_TABLE}: not watched: {why}"),
        }
    }

    fn await_step(
        &mut self,
        next: &mut HashMap<usize, Wanted>,
        step: watch_target::Step,
        interest: Interest,
    ) {
        let Some(i) = self.mark(&step.dir, &step.path, interest) else {
            return;
        };
        // Created between the look and the mark: no event will say so.
        if interest == Interest::Subdirs
            && rustix::fs::statat(&step.dir, &step.next, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| {
                    rustix::fs::FileType::from_raw_mode(st.st_mode)
                        == rustix::fs::FileType::Directory
                })
        {
            self.again = true;
        }
        next.entry(i).or_default().awaited.insert(step.next);
    }

    fn mark(&mut self, fd: &OwnedFd, inner: &Path, interest: Interest) -> Option<usize> {
        match self.watcher.watch(fd.as_fd(), inner, interest) {
            Ok(i) => Some(i),
            Err(e) => {
                log::warn!("{FILE_TABLE}: {e}");
                None
            }
        }
    }

    /// A row per file already in a directory that just became watched
    /// (written before the watch, so by an unknown process).
    fn found_rows(&self, watched: &Watched, fd: &OwnedFd) -> Vec<Row> {
        let entries = match rustix::fs::Dir::read_from(fd) {
            Ok(d) => d,
            Err(e) => {
                log::warn!(
                    "{FILE_TABLE}: cannot list {}: {e}",
                    fs_safe::render_path(&watched.dir.path)
                );
                return Vec::new();
            }
        };
        let mut rows = Vec::new();
        for e in entries.flatten() {
            let name = OsStr::from_bytes(e.file_name().to_bytes());
            if !watched.reports(name) || e.file_type() == rustix::fs::FileType::Directory {
                continue;
            }
            rows.push(self.entry_row_in(watched, FOUND, name, fd));
        }
        rows
    }

    /// A row for the entry `name` of a watched directory, with the
    /// entry's stat now (none when it is gone).
    fn entry_row(&self, watched: &Watched, action: &str, name: &OsStr) -> Row {
        let dirfd =
            self.root
                .as_ref()
                .and_then(|root| match watch_target::locate(root, &watched.dir) {
                    Target::Present(fd) => Some(fd),
                    _ => None,
                });
        match dirfd {
            Some(fd) => self.entry_row_in(watched, action, name, &fd),
            None => self.bare_row(watched, action, name),
        }
    }

    fn bare_row(&self, watched: &Watched, action: &str, name: &OsStr) -> Row {
        let inner = &watched.dir.path;
        let mut row = Row::new();
        row.set("action", action)
            .set("path", fs_safe::render_path(&inner.join(name)))
            .set("directory", fs_safe::render_path(inner))
            .set("filename", fs_safe::render(name.as_bytes()))
            .set("backend", self.watcher.backend().as_str());
        row
    }

    fn entry_row_in(&self, watched: &Watched, action: &str, name: &OsStr, dirfd: &OwnedFd) -> Row {
        let mut row = self.bare_row(watched, action, name);
        if let Ok(m) = stat::stat_entry(dirfd, name, watched.dir.path.join(name)) {
            row.set("type", m.kind.as_str())
                .set("mode", m.mode_string())
                .set("size", m.size)
                .set("owner_uid", m.uid)
                .set("owner_gid", m.gid)
                .set("inode", m.ino)
                .set("mtime", m.mtime)
                .set("ctime", m.ctime);
        }
        row
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
