//! Process lineage: which live processes a D-Bus bus daemon started and
//! how (directly, through the classic daemon's babysitter, or through the
//! system bus's launch helper), the bus each descends from, and which of
//! that bus's service files explains each one. One `/proc` snapshot
//! ([`Scan`]) reads each process file at most once; both bus-process tables
//! and the process collector build on it. What a row shows is left to the
//! tables.
use crate::blind;
use crate::settings::Settings;
use crate::sources::bus_daemon::{self, Bus, BusType, DaemonKind};
use crate::sources::proc::{self, Proc, ProcError, Stat};
use crate::sources::{accounts, fs_safe, service_file};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;

/// Hops between a bus and its service: launch helper, babysitter, bus.
const MAX_DEPTH: usize = 3;
/// Executables past this size are not hashed (NULL), so one odd process
/// cannot stall the query.
const MAX_HASH_BYTES: u64 = 512 * 1024 * 1024;

/// How a bus daemon started a process: the `via` values of every table of
/// bus-started processes (`dbus_activated_processes` adds its other
/// evidence beside these), snake_case as every column value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Its parent is the bus daemon.
    Direct,
    /// Its parent is the classic dbus-daemon's forked babysitter.
    Babysitter,
    /// Its parent (or, for an exec seen as it happened, its own pid's
    /// previous program) is the system bus's `dbus-daemon-launch-helper`.
    LaunchHelper,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Babysitter => "babysitter",
            Via::LaunchHelper => "launch_helper",
        }
    }
}

/// How a process descends from a bus.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub parent: u32,
    pub bus_pid: u32,
    pub kind: DaemonKind,
    pub via: Via,
}

/// A parseable service file of one bus, in the bus's search order.
#[derive(Debug, Clone)]
pub struct Service {
    pub path: String,
    pub name: Option<String>,
    /// `Exec=` split as the bus splits it.
    pub argv: Vec<String>,
}

/// One scan's view of `/proc`, reading each file at most once; shared with
/// `dbus_activated_processes`, which starts from the same bus children.
pub struct Scan<'a> {
    pub proc: Proc,
    pub root: &'a Path,
    stats: HashMap<u32, Option<Stat>>,
    cmdlines: HashMap<u32, Option<Vec<String>>>,
    exes: HashMap<u32, Option<String>>,
    buses: HashMap<u32, Bus>,
    /// ppid → children, built from a full stat scan only when some
    /// `task/*/children` file is missing.
    by_parent: Option<HashMap<u32, Vec<u32>>>,
    /// Whether [`Scan::prime`] read every process's stat.
    primed: bool,
    services: HashMap<u32, Vec<Service>>,
    homes: Option<HashMap<u32, String>>,
}

pub fn skip_quietly(pid: u32, e: &ProcError) {
    if !e.is_vanished() {
        log::debug!("pid {pid}: {e}");
        // A process whose files the OS refused is one the tree cannot
        // place: a blind spot, unlike one that exited or one malformed.
        let at = match e {
            ProcError::Io { file, .. } => format!("pid {pid} ({file})"),
            _ => format!("pid {pid}"),
        };
        blind::report_os_error("cannot read process files", e, &at);
    }
}

/// The process directory could not be listed: the table answers with no
/// process. Absent (a mounted image with no `/proc`) is an answer; any
/// other failure is a blind spot.
fn unlisted(e: &ProcError) {
    let at = match e {
        ProcError::Dir { path, .. } => path.display().to_string(),
        other => other.to_string(),
    };
    if !blind::report_os_error("cannot list processes", e, &at) {
        log::debug!("{e}");
    }
}

impl<'a> Scan<'a> {
    pub fn new(settings: &'a Settings) -> Scan<'a> {
        Scan {
            proc: Proc::new(&settings.proc),
            root: &settings.root,
            stats: HashMap::new(),
            cmdlines: HashMap::new(),
            exes: HashMap::new(),
            buses: HashMap::new(),
            by_parent: None,
            primed: false,
            services: HashMap::new(),
            homes: None,
        }
    }

    pub fn stat(&mut self, pid: u32) -> Option<Stat> {
        if pid == 0 {
            return None;
        }
        if let Some(s) = self.stats.get(&pid) {
            return s.clone();
        }
        let s = self.proc.stat(pid).map_err(|e| skip_quietly(pid, &e)).ok();
        self.stats.insert(pid, s.clone());
        s
    }

    pub fn cmdline(&mut self, pid: u32) -> Option<Vec<String>> {
        if let Some(c) = self.cmdlines.get(&pid) {
            return c.clone();
        }
        let c = self
            .proc
            .cmdline(pid)
            .map_err(|e| skip_quietly(pid, &e))
            .ok();
        self.cmdlines.insert(pid, c.clone());
        c
    }

    fn exe_path(&mut self, pid: u32) -> Option<String> {
        if let Some(e) = self.exes.get(&pid) {
            return e.clone();
        }
        let e = self.proc.exe(pid).ok().and_then(|e| e.path);
        self.exes.insert(pid, e.clone());
        e
    }

    pub fn comm(&mut self, pid: u32) -> Option<String> {
        self.stat(pid).map(|s| s.comm)
    }

    /// The classic daemon's babysitter: a fork (no exec) of a `dbus-daemon`,
    /// so same command line and same executable as its parent.
    fn is_babysitter(&mut self, pid: u32) -> bool {
        let Some(me) = self.stat(pid) else {
            return false;
        };
        if me.comm != "dbus-daemon" || self.comm(me.ppid).as_deref() != Some("dbus-daemon") {
            return false;
        }
        let (mine, theirs) = (self.cmdline(pid), self.cmdline(me.ppid));
        if mine.is_none() || mine.as_ref().is_some_and(Vec::is_empty) || mine != theirs {
            return false;
        }
        match (self.exe_path(pid), self.exe_path(me.ppid)) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }

    /// The system bus's launch helper; a process merely *named* like it
    /// but running another executable is not let through as a hop.
    pub fn is_launch_helper(&mut self, pid: u32) -> bool {
        let Some(comm) = self.comm(pid) else {
            return false;
        };
        if !bus_daemon::is_launch_helper(&comm) {
            return false;
        }
        match self.exe_path(pid) {
            Some(exe) => exe.rsplit('/').next() == Some("dbus-daemon-launch-helper"),
            None => true,
        }
    }

    /// A bus daemon proper (not a babysitter).
    pub fn bus_kind(&mut self, pid: u32) -> Option<DaemonKind> {
        let kind = bus_daemon::daemon_kind(&self.comm(pid)?)?;
        (!self.is_babysitter(pid)).then_some(kind)
    }

    /// Whether `pid` is part of the bus machinery rather than something it
    /// started: a babysitter, a launch helper, or dbus-broker under its launcher.
    pub fn is_machinery(&mut self, pid: u32) -> bool {
        if self.is_babysitter(pid) || self.is_launch_helper(pid) {
            return true;
        }
        let Some(me) = self.stat(pid) else {
            return false;
        };
        bus_daemon::daemon_kind(&me.comm) == Some(DaemonKind::DbusBroker)
            && self.bus_kind(me.ppid) == Some(DaemonKind::DbusBrokerLaunch)
    }

    /// Walks up from `pid`: [launch helper] [babysitter] bus.
    pub fn origin(&mut self, pid: u32) -> Option<Origin> {
        let me = self.stat(pid)?;
        if self.is_machinery(pid) {
            return None;
        }
        self.origin_of_parent(me.ppid)
    }

    /// [`Scan::origin`] from the parent on, for a process already gone
    /// whose parent is known from elsewhere (a fork event).
    pub fn origin_of_parent(&mut self, parent: u32) -> Option<Origin> {
        let mut cur = parent;
        let mut via = Via::Direct;
        if self.is_launch_helper(cur) {
            via = Via::LaunchHelper;
            cur = self.stat(cur)?.ppid;
        }
        if self.is_babysitter(cur) {
            if via == Via::Direct {
                via = Via::Babysitter;
            }
            cur = self.stat(cur)?.ppid;
        }
        let kind = self.bus_kind(cur)?;
        Some(Origin {
            parent,
            bus_pid: cur,
            kind,
            via,
        })
    }

    /// Reads the stat of every process once and indexes them by parent,
    /// for a caller that needs the whole tree anyway. One lean pass
    /// (`Proc::for_each_small`: an `openat` relative to `/proc`, one read,
    /// no type check on a real procfs), which also names the bus daemons:
    /// `stat` holds the same comm as the `comm` file, so [`Scan::daemons`]
    /// then needs no pass of its own.
    pub fn prime(&mut self) -> Vec<u32> {
        let mut pids = Vec::new();
        let mut map: HashMap<u32, Vec<u32>> = HashMap::new();
        let stats = &mut self.stats;
        let listed = self.proc.for_each_small("stat", |pid, bytes| {
            pids.push(pid);
            let stat = match bytes {
                Ok(bytes) => proc::parse_stat(bytes)
                    .map_err(|problem| ProcError::Parse {
                        pid,
                        file: "stat",
                        problem,
                    })
                    .map_err(|e| skip_quietly(pid, &e))
                    .ok(),
                Err(e) => {
                    skip_quietly(pid, &e);
                    None
                }
            };
            if let Some(s) = &stat {
                map.entry(s.ppid).or_default().push(pid);
            }
            if pid != 0 {
                stats.insert(pid, stat);
            }
        });
        if let Err(e) = listed {
            unlisted(&e);
            return Vec::new();
        }
        pids.sort_unstable();
        for kids in map.values_mut() {
            kids.sort_unstable();
        }
        self.by_parent = Some(map);
        self.primed = true;
        pids
    }

    pub fn children(&mut self, pid: u32) -> Vec<u32> {
        if let Some(map) = &self.by_parent {
            return map.get(&pid).cloned().unwrap_or_default();
        }
        match self.proc.children(pid) {
            Ok(Some(kids)) => kids,
            Ok(None) => self.children_by_scan(pid),
            Err(e) => {
                skip_quietly(pid, &e);
                Vec::new()
            }
        }
    }

    fn children_by_scan(&mut self, pid: u32) -> Vec<u32> {
        if self.by_parent.is_none() {
            let mut map: HashMap<u32, Vec<u32>> = HashMap::new();
            let listed = self.proc.for_each_small("stat", |p, bytes| match bytes {
                Ok(bytes) => {
                    if let Some((_, ppid)) = proc::parse_stat_brief(bytes) {
                        map.entry(ppid).or_default().push(p);
                    }
                }
                Err(e) => skip_quietly(p, &e),
            });
            if let Err(e) = listed {
                log::debug!("dbus_daemon_children: {e}");
            }
            for kids in map.values_mut() {
                kids.sort_unstable();
            }
            self.by_parent = Some(map);
        }
        self.by_parent
            .as_ref()
            .and_then(|m| m.get(&pid).cloned())
            .unwrap_or_default()
    }

    /// The bus daemons: every process whose comm names one, from one cheap
    /// pass over `/proc`. Where the kernel is known to lack
    /// `task/*/children`, that pass reads `stat` instead of `comm`, which
    /// holds both the comm and the parent, and builds the children map in
    /// the same pass: one pass, not a comm pass and then a stat scan.
    fn daemons(&mut self) -> Vec<u32> {
        let mut frontier = Vec::new();
        let is_daemon =
            |comm: &[u8]| bus_daemon::daemon_kind(&String::from_utf8_lossy(comm)).is_some();
        if self.primed {
            let mut frontier: Vec<u32> = self
                .stats
                .iter()
                .filter(|(_, s)| s.as_ref().is_some_and(|s| is_daemon(s.comm.as_bytes())))
                .map(|(&pid, _)| pid)
                .collect();
            frontier.sort_unstable();
            return frontier;
        }
        let listed = if self.proc.lacks_children_files() == Some(true) {
            let mut by_parent: HashMap<u32, Vec<u32>> = HashMap::new();
            let listed = self.proc.for_each_small("stat", |pid, bytes| match bytes {
                Ok(bytes) => {
                    if let Some((comm, ppid)) = proc::parse_stat_brief(bytes) {
                        by_parent.entry(ppid).or_default().push(pid);
                        if is_daemon(comm) {
                            frontier.push(pid);
                        }
                    }
                }
                Err(e) => skip_quietly(pid, &e),
            });
            for kids in by_parent.values_mut() {
                kids.sort_unstable();
            }
            self.by_parent = Some(by_parent);
            listed
        } else {
            let mut no_comm = Vec::new();
            let listed = self.proc.for_each_small("comm", |pid, bytes| match bytes {
                Ok(bytes) => {
                    if is_daemon(bytes.strip_suffix(b"\n").unwrap_or(bytes)) {
                        frontier.push(pid);
                    }
                }
                // No comm file (some fixtures): fall back to stat's copy.
                Err(e) if !e.is_vanished() => no_comm.push(pid),
                Err(_) => {}
            });
            for pid in no_comm {
                if self
                    .comm(pid)
                    .is_some_and(|c| bus_daemon::daemon_kind(&c).is_some())
                {
                    frontier.push(pid);
                }
            }
            listed
        };
        if let Err(e) = listed {
            unlisted(&e);
            return Vec::new();
        }
        frontier.sort_unstable();
        frontier
    }

    /// Every process within [`MAX_DEPTH`] hops below a bus daemon, passing
    /// only through bus machinery. `origin` decides which are rows.
    pub fn candidates(&mut self) -> Vec<u32> {
        let mut frontier = self.daemons();
        let mut found = BTreeSet::new();
        for _ in 0..MAX_DEPTH {
            let mut next = Vec::new();
            for node in frontier {
                for kid in self.children(node) {
                    if !found.insert(kid) {
                        continue;
                    }
                    let comm = self.comm(kid).unwrap_or_default();
                    if bus_daemon::daemon_kind(&comm).is_some()
                        || bus_daemon::is_launch_helper(&comm)
                    {
                        next.push(kid);
                    }
                }
            }
            frontier = next;
        }
        found.into_iter().collect()
    }

    pub fn bus(&mut self, pid: u32, kind: DaemonKind) -> Bus {
        if let Some(b) = self.buses.get(&pid) {
            return b.clone();
        }
        let args = self.cmdline(pid).unwrap_or_default();
        let parent_args = match kind {
            DaemonKind::DbusBroker => self.stat(pid).and_then(|s| self.cmdline(s.ppid)),
            _ => None,
        };
        let bus = bus_daemon::describe(kind, &args, parent_args.as_deref(), self.root);
        self.buses.insert(pid, bus.clone());
        bus
    }

    fn home_of(&mut self, uid: u32) -> Option<String> {
        if self.homes.is_none() {
            let homes = accounts::read_passwd(self.root)
                .map(|p| {
                    p.entries
                        .into_iter()
                        .map(|a| (a.uid, a.directory))
                        .collect()
                })
                .unwrap_or_default();
            self.homes = Some(homes);
        }
        self.homes.as_ref()?.get(&uid).cloned()
    }

    /// A session bus's directories, from the daemon's own XDG variables and
    /// its owner's home.
    fn session_dirs(&mut self, bus_pid: u32) -> Vec<String> {
        let env = |key| self.proc.environ_var(bus_pid, key).ok().flatten();
        let (home_env, data_env) = (env("XDG_DATA_HOME"), env("XDG_DATA_DIRS"));
        let home = match self.proc.ids(bus_pid) {
            Ok(ids) => self.home_of(ids.uid),
            Err(_) => None,
        };
        bus_daemon::session_dirs(home_env.as_deref(), data_env.as_deref(), home.as_deref())
    }

    /// The service directories this bus reads, as paths inside the root.
    fn service_dirs(&mut self, bus_pid: u32, bus: &Bus) -> Vec<String> {
        let system = || {
            bus_daemon::STANDARD_SYSTEM_DIRS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        };
        if let Some(cfg) = &bus.config {
            let config_dir = self
                .cmdline(bus_pid)
                .map(|a| bus_daemon::parse_args(&a))
                .and_then(|a| a.config_file)
                .and_then(|c| {
                    Path::new(&c)
                        .parent()
                        .map(|p| p.to_string_lossy().into_owned())
                })
                .unwrap_or_else(|| "/".into());
            let mut dirs: Vec<String> = cfg
                .servicedirs
                .iter()
                .map(|d| {
                    if d.starts_with('/') {
                        d.clone()
                    } else {
                        format!("{config_dir}/{d}")
                    }
                })
                .collect();
            if cfg.standard_session_servicedirs {
                dirs.extend(self.session_dirs(bus_pid));
            }
            if cfg.standard_system_servicedirs {
                dirs.extend(system());
            }
            return dirs;
        }
        match bus.bus_type {
            BusType::Session => self.session_dirs(bus_pid),
            BusType::System => system(),
            BusType::Custom => Vec::new(),
        }
    }

    /// `(path, argv of Exec)` of every parseable service file of this bus.
    pub fn services(&mut self, bus_pid: u32, bus: &Bus) -> Vec<Service> {
        if let Some(s) = self.services.get(&bus_pid) {
            return s.clone();
        }
        let mut out = Vec::new();
        // Service files sit in user-writable places on session buses and
        // under --root in an image: read them root-confined, capped and
        // non-blocking, as `dbus_service_files` does.
        let root = match fs_safe::Root::open(self.root) {
            Ok(r) => r,
            Err(e) => {
                log::debug!("dbus_daemon_children: {e}");
                self.services.insert(bus_pid, Vec::new());
                return Vec::new();
            }
        };
        for dir in self.service_dirs(bus_pid, bus) {
            let Ok(dirfd) = root.open_dir(Path::new(&dir)) else {
                continue;
            };
            let Ok(entries) = rustix::fs::Dir::read_from(&dirfd) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
                .filter(|n| n.ends_with(".service"))
                .collect();
            names.sort();
            for name in names {
                let inner = Path::new(&dir).join(&name);
                let Ok(bytes) = root.read_regular(&inner, service_file::MAX_SERVICE_FILE_BYTES)
                else {
                    continue;
                };
                let Ok(parsed) = service_file::parse(&bytes) else {
                    continue;
                };
                let Some(argv) = parsed
                    .exec
                    .as_deref()
                    .and_then(|e| service_file::split_exec(e).ok())
                else {
                    continue;
                };
                out.push(Service {
                    path: format!("{}/{name}", dir.trim_end_matches('/')),
                    name: parsed.name,
                    argv,
                });
            }
        }
        self.services.insert(bus_pid, out.clone());
        out
    }
}

/// How well a service file's argv explains a process: the exact argv beats
/// the argv behind a script interpreter (`/bin/sh /tmp/x.sh a b`), which beats
/// the same program with other arguments.
fn match_score(argv: &[String], args: &[String], exe: Option<&str>) -> u8 {
    if argv == args {
        3
    } else if args.len() > 1 && argv == &args[1..] {
        2
    } else if argv.first().is_some_and(|p| {
        Some(p.as_str()) == exe || args.first() == Some(p) || args.get(1) == Some(p)
    }) {
        1
    } else {
        0
    }
}

pub fn best_service<'s>(
    services: &'s [Service],
    args: &[String],
    exe: Option<&str>,
) -> Option<&'s Service> {
    let mut best: Option<(u8, &Service)> = None;
    for s in services {
        let score = match_score(&s.argv, args, exe);
        // Strictly greater: the first file in the bus's search order wins ties.
        if score > 0 && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, s));
        }
    }
    best.map(|(_, s)| s)
}

pub fn sha256_exe(proc: &Proc, pid: u32) -> Option<String> {
    let file = proc.open_exe(pid).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut hasher = Sha256::new();
    let mut reader = file.take(MAX_HASH_BYTES + 1);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > MAX_HASH_BYTES {
            return None;
        }
        hasher.update(&buf[..n]);
    }
    Some(
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn service_matching_prefers_exact_argv_then_first() {
        let s = |path: &str, argv: &[&str]| Service {
            path: path.to_string(),
            name: None,
            argv: v(argv),
        };
        let services = vec![
            s("/s/a.service", &["/tmp/x.sh", "other"]),
            s("/s/b.service", &["/tmp/x.sh", "a", "b"]),
            s("/s/c.service", &["/tmp/x.sh", "a", "b"]),
            s("/s/d.service", &["/usr/bin/y"]),
        ];
        let best =
            |args: &[String], exe| best_service(&services, args, exe).map(|s| s.path.clone());
        let args = v(&["/bin/sh", "/tmp/x.sh", "a", "b"]);
        assert_eq!(
            best(&args, Some("/usr/bin/dash")).as_deref(),
            Some("/s/b.service")
        );
        assert_eq!(
            best(&v(&["/tmp/x.sh", "zzz"]), None).as_deref(),
            Some("/s/a.service")
        );
        assert_eq!(
            best(&v(&["/bin/q"]), Some("/usr/bin/y")).as_deref(),
            Some("/s/d.service")
        );
        assert_eq!(best(&v(&["/bin/q"]), Some("/bin/q")), None);
    }
}
