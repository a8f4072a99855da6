//! The `dbus_file_events` collector: one thread watching every directory
//! `service_dirs::discover` finds (the same list `dbus_service_files`
//! reads), turning each change into a row with the writer (fanotify) and
//! the file's stat after the event.
//!
//! For each directory that does not exist, the existing directories
//! leading to it are watched for the next path component
//! (`sources::watch_target` says which; one mark per inode however many
//! absent directories wait there). When that component appears, only the
//! directories waiting for it are located again, in a few system calls,
//! so `mkdir -p ~/.local/share/dbus-1/services` is followed component by
//! component as it goes. The whole list is discovered again when passwd
//! changes (a new account's home), a watched bus config or policy file
//! changes (a new `<servicedir>`) or the kernel's queue overflows, at
//! least [`MIN_GAP`] apart, and every [`REDISCOVER`] as a safety net.
//!
//! A directory watched after start may already hold what was written
//! between its creation and its mark: it is listed right after the mark,
//! and each entry comes out as a [`FOUND`] row, writer unknown. A file
//! written in that window can so show twice (`created` and `found`),
//! never not at all.
//!
//! The writer's name and executable are read from `/proc` when the event is
//! handled; a writer that has already exited leaves them NULL (its pid
//! stays). `package_manager` is 1 when the writer or one of its two nearest
//! ancestors is a package manager (dpkg runs maintainer scripts as `sh`).
use super::{publish, Store, FILE_TABLE};
use crate::row::Row;
use crate::settings::Settings;
use crate::sources::file_watch::{Action, Change, Interest, Subject, WatchError, Watcher};
use crate::sources::proc::Proc;
use crate::sources::service_dirs::{self, ServiceDir};
use crate::sources::watch_target::{self, Target};
use crate::sources::{fs_safe, stat};
use crate::spec::columns::dbus_file_events as c;
use rustix::fd::{AsFd, OwnedFd};
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
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

/// The least time between two whole discoveries events asked for (passwd
/// or a bus config rewritten, a queue overflow a user can provoke), so
/// they cannot keep the collector busy discovering; nothing is lost
/// meanwhile, since a directory watched late is listed (`found` rows).
/// Following a path as it is created is not a whole discovery and waits
/// for nothing.
pub const MIN_GAP: Duration = Duration::from_millis(100);

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

/// What a name awaited in a watched directory stands for.
#[derive(Debug)]
enum Await {
    /// passwd: its change means discovering everything again.
    Everything,
    /// The next path component of these absent candidates (indices into
    /// `Collector::candidates`): they alone are located again.
    Dirs(Vec<usize>),
}

impl Await {
    /// Asks for what this stands for: a whole discovery, or locating
    /// these candidates again.
    fn wake(&self, again: &mut bool, pending: &mut Vec<usize>) {
        match self {
            Await::Everything => *again = true,
            Await::Dirs(v) => pending.extend(v.iter().copied()),
        }
    }
}

/// What discovery wants from one watched directory.
#[derive(Debug, Default)]
struct Wanted {
    /// It is a D-Bus directory: its changes become rows.
    dir: Option<Watched>,
    /// Names whose appearance here moves a watched path.
    awaited: HashMap<OsString, Await>,
    /// Where it was found, to open it again when it is no longer wanted
    /// (fanotify removes a mark only given the directory): its path
    /// inside the root, and the user base below which nothing is followed.
    at: Option<(PathBuf, Option<PathBuf>)>,
}

impl Wanted {
    fn found_at(&mut self, path: &Path, base: Option<&Path>) {
        if self.at.is_none() {
            let base = base.filter(|b| path.starts_with(b));
            self.at = Some((path.to_path_buf(), base.map(Path::to_path_buf)));
        }
    }
}

#[derive(Debug)]
struct Watched {
    /// The first of the spellings discovery gave this directory.
    dir: ServiceDir,
    /// The candidates that found it here.
    cands: Vec<usize>,
    /// The entries rows are made for: `None` for all, else the config
    /// files named (one directory may be read for several).
    names: Option<HashSet<OsString>>,
    /// Its files configure the bus, so a change means discovering again.
    configures: bool,
}

impl Watched {
    fn new(dir: &ServiceDir, cand: usize) -> Watched {
        let mut w = Watched {
            dir: dir.clone(),
            cands: Vec::new(),
            names: Some(HashSet::new()),
            configures: false,
        };
        w.merge(dir, cand);
        w
    }

    fn merge(&mut self, dir: &ServiceDir, cand: usize) {
        if !self.cands.contains(&cand) {
            self.cands.push(cand);
        }
        match (&mut self.names, &dir.only) {
            (Some(names), Some(only)) => {
                names.insert(only.clone());
            }
            (names, None) => {
                // Every entry now: the first spelling's `only` no longer
                // narrows it.
                *names = None;
                self.dir.only = None;
            }
            (None, Some(_)) => {}
        }
        self.configures |= std::iter::once(dir.role)
            .chain(dir.also.iter().copied())
            .any(|r| r != service_dirs::Role::Services);
    }

    fn reports(&self, name: &OsStr) -> bool {
        match &self.names {
            Some(names) => names.contains(name),
            None => self.dir.lists(name),
        }
    }
}

/// Who awaits a name, for [`Collector::await_step`].
#[derive(Debug, Clone, Copy)]
struct Awaited<'a> {
    /// The candidate waiting; `None`: a change means discovering
    /// everything.
    cand: Option<usize>,
    /// Its user base, below which nothing is followed.
    base: Option<&'a Path>,
    /// The step is the nearest existing ancestor (the others' next
    /// component exists by construction).
    nearest: bool,
}

impl Awaited<'_> {
    const EVERYTHING: Awaited<'static> = Awaited {
        cand: None,
        base: None,
        nearest: false,
    };
}

/// Where [`Collector::place`] put a candidate.
enum Placed {
    /// Watched as a D-Bus directory; `first` when no earlier spelling in
    /// the same map led there.
    Watched {
        index: usize,
        fd: OwnedFd,
        first: bool,
    },
    /// Waiting in its ancestors; `ready` when the next component turned
    /// up between looking and marking (no event will say so).
    Waiting {
        ready: bool,
    },
    Nowhere,
}

/// Marks an open directory; a failure is logged and leaves it unwatched
/// until the next discovery.
fn mark(watcher: &mut Watcher, fd: &OwnedFd, inner: &Path, interest: Interest) -> Option<usize> {
    match watcher.watch(fd.as_fd(), inner, interest) {
        Ok(i) => Some(i),
        Err(e) => {
            log::warn!("{FILE_TABLE}: {e}");
            None
        }
    }
}

/// How many times one event may make a candidate be located again as its
/// path keeps growing under the collector (one per path component).
const MAX_FOLLOW_ROUNDS: usize = 16;

/// The file collector, driven by [`Collector::next`]: `spawn` runs one in
/// a thread; tests drive one directly (say over an inotify [`Watcher`]).
pub struct Collector {
    settings: Settings,
    proc: Proc,
    watcher: Watcher,
    root: Option<fs_safe::Root>,
    /// The directories of the last discovery.
    candidates: Vec<ServiceDir>,
    /// Per watcher index.
    wanted: HashMap<usize, Wanted>,
    /// Set once the first discovery is done: directories watched later
    /// are listed.
    started: bool,
    /// An event asked for a whole discovery.
    again: bool,
    /// Candidates an event asked to locate again.
    pending: Vec<usize>,
    discovered: Instant,
    discoveries: u64,
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
            candidates: Vec::new(),
            wanted: HashMap::new(),
            started: false,
            again: false,
            pending: Vec::new(),
            discovered: Instant::now(),
            discoveries: 0,
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

    /// How many whole discoveries ran (the first included): following a
    /// path as it is created needs none.
    pub fn discoveries(&self) -> u64 {
        self.discoveries
    }

    /// Waits up to `wait` for changes and returns their rows, following
    /// watched paths that moved first (rows for what a newly watched
    /// directory already holds come out then).
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
        if !self.pending.is_empty() {
            rows.extend(self.follow());
        }
        let time = super::now_secs();
        polled.rows = rows
            .into_iter()
            .map(|mut r| {
                r.set(c::TIME, time);
                (time, r)
            })
            .collect();
        Ok(polled)
    }

    /// Handles one change: a row when it is in a D-Bus directory, and
    /// following when it moves a watched path.
    fn change(&mut self, c: &Change) -> Option<Row> {
        if c.subject == Subject::Itself {
            // Deleted or renamed: whatever led here is located again.
            let gone = self.wanted.remove(&c.dir)?;
            self.watcher.unwatch(c.dir, None);
            self.pending
                .extend(gone.dir.iter().flat_map(|d| d.cands.iter().copied()));
            for a in gone.awaited.values() {
                a.wake(&mut self.again, &mut self.pending);
            }
            return None;
        }
        let wanted = self.wanted.get(&c.dir)?;
        if matches!(
            c.action,
            Action::Created | Action::MovedIn | Action::Modified
        ) {
            if let Some(a) = wanted.awaited.get(&c.name) {
                a.wake(&mut self.again, &mut self.pending);
            }
        }
        let watched = wanted.dir.as_ref()?;
        // A subdirectory is not something a bus loads.
        if c.subject != Subject::File || !watched.reports(&c.name) {
            return None;
        }
        self.again |= watched.configures;
        let mut row = self.entry_row(watched, c.action.as_str(), &c.name);
        self.backend_columns(&mut row, c.dir);
        if let Some(pid) = c.pid {
            row.set(c::PID, pid);
            self.writer_columns(&mut row, pid);
        }
        Some(row)
    }

    /// Locates again the candidates an event named, without a whole
    /// discovery (no passwd or bus config is read): `mkdir -p` is followed
    /// component by component in a few system calls each.
    fn follow(&mut self) -> Vec<Row> {
        let Some(root) = self.root.take() else {
            self.pending.clear();
            self.again = true;
            return Vec::new();
        };
        let mut map = std::mem::take(&mut self.wanted);
        let mut fresh = Vec::new();
        let mut queue = std::mem::take(&mut self.pending);
        for _ in 0..MAX_FOLLOW_ROUNDS {
            queue.sort_unstable();
            queue.dedup();
            let mut ready = Vec::new();
            for ci in queue {
                match self.place(&root, &mut map, ci) {
                    Placed::Watched { index, fd, first } => {
                        if first {
                            fresh.push((index, fd));
                        }
                    }
                    Placed::Waiting { ready: true } => ready.push(ci),
                    Placed::Waiting { ready: false } | Placed::Nowhere => {}
                }
            }
            queue = ready;
            if queue.is_empty() {
                break;
            }
        }
        // Still growing after that many rounds: the whole discovery will
        // look.
        self.again |= !queue.is_empty();
        self.wanted = map;
        let rows = self.found_rows_of(&fresh);
        self.root = Some(root);
        rows
    }

    /// Discovers the directory list and watches what it names: each
    /// D-Bus directory that exists, and for each that does not, the
    /// directories it would appear in (`sources::watch_target`). Returns
    /// `found` rows for the files of D-Bus directories watched since the
    /// last discovery.
    fn discover(&mut self) -> Vec<Row> {
        self.again = false;
        self.pending.clear();
        self.discovered = Instant::now();
        self.discoveries += 1;
        let root = match fs_safe::Root::open(&self.settings.root) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("{FILE_TABLE}: {e}");
                return Vec::new();
            }
        };
        let mut map: HashMap<usize, Wanted> = HashMap::new();
        // passwd first: a change after this is seen, whatever discovery
        // reads.
        self.await_passwd(&root, &mut map);
        self.candidates = service_dirs::discover(&root).dirs;
        let mut fresh = Vec::new();
        for ci in 0..self.candidates.len() {
            match self.place(&root, &mut map, ci) {
                Placed::Watched { index, fd, first } => {
                    let before = self.wanted.get(&index).and_then(|w| w.dir.as_ref());
                    if first && self.started && before.is_none() {
                        fresh.push((index, fd));
                    }
                }
                Placed::Waiting { ready } => {
                    if ready {
                        self.pending.push(ci);
                    }
                }
                Placed::Nowhere => {}
            }
        }
        for (i, w) in &self.wanted {
            if !map.contains_key(i) {
                let fd = w
                    .at
                    .as_ref()
                    .and_then(|(path, base)| watch_target::reopen(&root, path, base.as_deref()));
                self.watcher.unwatch(*i, fd.as_ref().map(|f| f.as_fd()));
            }
        }
        self.wanted = map;
        self.started = true;
        let rows = self.found_rows_of(&fresh);
        self.root = Some(root);
        rows
    }

    /// Watches candidate `ci` where it is, or the way to it, into `map`.
    fn place(
        &mut self,
        root: &fs_safe::Root,
        map: &mut HashMap<usize, Wanted>,
        ci: usize,
    ) -> Placed {
        let Some(dir) = self.candidates.get(ci) else {
            return Placed::Nowhere;
        };
        match watch_target::locate(root, dir) {
            Target::Present(fd) => {
                let Some(index) = mark(&mut self.watcher, &fd, &dir.path, Interest::Entries) else {
                    return Placed::Nowhere;
                };
                let dir = &self.candidates[ci];
                let w = map.entry(index).or_default();
                w.found_at(&dir.path, dir.user_base());
                match &mut w.dir {
                    Some(d) => {
                        d.merge(dir, ci);
                        Placed::Watched {
                            index,
                            fd,
                            first: false,
                        }
                    }
                    None => {
                        w.dir = Some(Watched::new(dir, ci));
                        Placed::Watched {
                            index,
                            fd,
                            first: true,
                        }
                    }
                }
            }
            Target::Absent(steps) => {
                // Only the nearest ancestor's next component is missing.
                let base = dir.user_base().map(Path::to_path_buf);
                let last = steps.len().saturating_sub(1);
                let mut ready = false;
                for (n, s) in steps.into_iter().enumerate() {
                    let awaited = Awaited {
                        cand: Some(ci),
                        base: base.as_deref(),
                        nearest: n == last,
                    };
                    ready = self.await_step(map, s, Interest::Subdirs, awaited);
                }
                Placed::Waiting { ready }
            }
            Target::Unreachable(why) => {
                log::debug!("{FILE_TABLE}: not watched: {why}");
                Placed::Nowhere
            }
        }
    }

    /// Watches for passwd to change in `/etc` (or, while `/etc` is
    /// absent, for it to appear).
    fn await_passwd(&mut self, root: &fs_safe::Root, map: &mut HashMap<usize, Wanted>) {
        let etc = Path::new("/etc");
        match watch_target::locate_in_root(root, etc) {
            Target::Present(fd) => {
                let step = watch_target::Step {
                    dir: fd,
                    path: etc.to_path_buf(),
                    next: OsString::from("passwd"),
                };
                self.await_step(map, step, Interest::Files, Awaited::EVERYTHING);
            }
            Target::Absent(steps) => {
                let last = steps.len().saturating_sub(1);
                for (n, s) in steps.into_iter().enumerate() {
                    let awaited = Awaited {
                        nearest: n == last,
                        ..Awaited::EVERYTHING
                    };
                    self.again |= self.await_step(map, s, Interest::Subdirs, awaited);
                }
            }
            Target::Unreachable(why) => log::debug!("{FILE_TABLE}: not watched: {why}"),
        }
    }

    /// Marks `step.dir` and awaits `step.next` there. True when it is the
    /// nearest ancestor and the awaited directory is already there.
    fn await_step(
        &mut self,
        map: &mut HashMap<usize, Wanted>,
        step: watch_target::Step,
        interest: Interest,
        awaited: Awaited<'_>,
    ) -> bool {
        let Awaited {
            cand,
            base,
            nearest,
        } = awaited;
        let Some(i) = mark(&mut self.watcher, &step.dir, &step.path, interest) else {
            return false;
        };
        let ready = nearest
            && interest == Interest::Subdirs
            && rustix::fs::statat(&step.dir, &step.next, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| {
                    rustix::fs::FileType::from_raw_mode(st.st_mode)
                        == rustix::fs::FileType::Directory
                });
        let w = map.entry(i).or_default();
        w.found_at(&step.path, base);
        let awaited = w.awaited.entry(step.next);
        match (awaited, cand) {
            (std::collections::hash_map::Entry::Vacant(v), Some(c)) => {
                v.insert(Await::Dirs(vec![c]));
            }
            (std::collections::hash_map::Entry::Vacant(v), None) => {
                v.insert(Await::Everything);
            }
            (std::collections::hash_map::Entry::Occupied(mut o), Some(c)) => {
                if let Await::Dirs(v) = o.get_mut() {
                    if !v.contains(&c) {
                        v.push(c);
                    }
                }
            }
            (std::collections::hash_map::Entry::Occupied(mut o), None) => {
                o.insert(Await::Everything);
            }
        }
        ready
    }

    /// `found` rows for directories that just became watched, listed
    /// after their marks (with every spelling merged).
    fn found_rows_of(&self, fresh: &[(usize, OwnedFd)]) -> Vec<Row> {
        let mut rows = Vec::new();
        for (i, fd) in fresh {
            if let Some(w) = self.wanted.get(i).and_then(|w| w.dir.as_ref()) {
                let start = rows.len();
                rows.extend(self.found_rows(w, fd));
                for row in &mut rows[start..] {
                    self.backend_columns(row, *i);
                }
            }
        }
        rows
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
        let mut row = Row::new(&c::SCHEMA);
        row.set(c::ACTION, action)
            .set(c::PATH, fs_safe::render_path(&inner.join(name)))
            .set(c::DIRECTORY, fs_safe::render_path(inner))
            .set(c::FILENAME, fs_safe::render(name.as_bytes()));
        row
    }

    /// `backend` and `backend_reason` of a row about the directory
    /// `index`: fanotify may watch most directories and inotify the few
    /// it refused, so each row says which, and why its writer is unknown.
    fn backend_columns(&self, row: &mut Row, index: usize) {
        let (backend, why) = self.watcher.backend_of(index);
        row.set(c::BACKEND, backend.as_str());
        if let Some(why) = why {
            row.set(c::BACKEND_REASON, why);
        }
    }

    fn entry_row_in(&self, watched: &Watched, action: &str, name: &OsStr, dirfd: &OwnedFd) -> Row {
        let mut row = self.bare_row(watched, action, name);
        if let Ok(m) = stat::stat_entry(dirfd, name, watched.dir.path.join(name)) {
            row.set(c::TYPE, m.kind.as_str())
                .set(c::MODE, m.mode_string())
                .set(c::SIZE, m.size)
                .set(c::OWNER_UID, m.uid)
                .set(c::OWNER_GID, m.gid)
                .set(c::INODE, m.ino)
                .set(c::MTIME, m.mtime)
                .set(c::CTIME, m.ctime);
        }
        row
    }

    fn writer_columns(&self, row: &mut Row, pid: u32) {
        if let Ok(exe) = self.proc.exe(pid) {
            row.set(c::PROCESS_PATH, exe.path);
        }
        if let Ok(ids) = self.proc.ids(pid) {
            row.set(c::PROCESS_UID, ids.uid);
        }
        let Ok(stat) = self.proc.stat(pid) else {
            return;
        };
        row.set(c::PROCESS_NAME, stat.comm.as_str());
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
        row.set(c::PACKAGE_MANAGER, pm);
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
