//! The process collector (it feeds `dbus_process_events`): one thread
//! reading the netlink process connector. On each exec it reads
//! `/proc/<pid>` at once (a service may live for a millisecond), walks up
//! at most two hops through the babysitter / launch helper to a bus daemon
//! with the lineage the snapshot tables use (`sources::lineage`), and
//! buffers a [`ProcessEvent`] for bus activations and D-Bus client runs;
//! on that process's exit it fills the event's [`Exit`]. Everything else
//! the kernel reports is dropped at once.
//!
//! When `/proc/<pid>` is already gone at exec time, the parent comes from the
//! fork event the kernel sent earlier, so an activation is still recorded
//! (with its program unknown, [`Gone`]). Exec events carry no program name, so
//! for client runs the collector also holds `FAN_OPEN_EXEC` marks on the
//! client binaries (`sources::exec_watch`, kept by `launches`): the kernel queues that event
//! while `execve` opens the file, before the connector's exec event, so
//! draining it when an exec's process has vanished tells which client the
//! pid ran. The queue is read only then and once a second, not per event,
//! to keep the cost at a busy host's exec rate to one hash lookup. Without
//! `CAP_SYS_ADMIN` (fanotify refused) such a run is missed, as the log says
//! once.
//!
//! The system bus runs a service through `dbus-daemon-launch-helper`, which
//! execs the service in its own pid: the collector remembers per pid that
//! the helper ran, so the service's event says [`Via::LaunchHelper`]. The
//! helper's own exec is an event too (it names the service asked for, the
//! only trace when that service fails or vanishes). A helper that has
//! already exec'd the service when its exec is read is not seen; the
//! service's event then says [`Via::Babysitter`]. Two exec events of one
//! pid read after the second exec see the same image and make one event.
//!
//! What a process inherits from the activation it descends from is one
//! [`Activation`]: the bus, how it started the process, and that bus's
//! kind for the seed rule. A map from every descendant pid to its
//! activation, inherited on fork and dropped on exit, holds exactly that.
//!
//! Cost: a busy host execs hundreds of unrelated programs a second, so
//! each exec first gets a cheap look (its `comm` by one `openat` on the
//! procfs, and its parent's, kept until the parent execs, renames itself
//! or exits): neither a client nor below a bus, it is dropped there.
//! Above about 1,000 events a second the collector also pauses 2 ms
//! between reads, so one wakeup handles all the events queued meanwhile
//! rather than one wakeup each; not for 20 ms after a bus (or babysitter,
//! or launch helper) forks, so an activated service is still read the
//! moment it execs. A client's exec may then be read up to 2 ms late.
use super::descent::{self, Activated, Descent};
use super::launches::Launches;
use super::{Collected, Config, Store, Watchers, PROCESS};
use crate::settings::Settings;
use crate::sources::bus_daemon::{self, BusType};
use crate::sources::exec_watch;
use crate::sources::fs_safe;
use crate::sources::lineage::{best_service, Origin, Scan, Via};
use crate::sources::proc::ProcFiles;
use crate::sources::proc_connector::{self, Connector, ConnectorError, Event, Kind, Received};
use crate::sources::process_facts::{Args, ProcessFacts};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// A bus activation or a D-Bus client run, as the collector saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessEvent {
    /// Unix seconds of the exec.
    pub time: u64,
    /// The process as `/proc` showed it right after the exec: its pid
    /// always, the rest as far as it was still there. When it was
    /// [`Gone`], its name and path may come from the exec of a client
    /// binary instead.
    pub process: ProcessFacts,
    /// Its parent: the one the activation went through, else its parent
    /// by `/proc` or by the fork event.
    pub parent: Option<u32>,
    /// The activation it is; `None` for a client run.
    pub activation: Option<Activation>,
    /// Set when `/proc/<pid>` was gone (or a zombie's) when read.
    pub gone: Option<Gone>,
    /// Set once it exited (while still buffered).
    pub exit: Option<Exit>,
}

/// What a process inherits from the activation it descends from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activation {
    pub bus_pid: u32,
    pub bus: BusType,
    pub via: Via,
    /// Whether the seed rule counts the bus as a session bus.
    pub rule_session: bool,
}

/// Why a process's arguments are unknown: it exited before `/proc` could
/// be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// Nothing else was seen of its program.
    Unseen,
    /// Its name and path come from the exec of a client binary
    /// (`sources::exec_watch`).
    ExecSeen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Shell convention: the exit code, or 128 + signal.
    pub code: i64,
    pub duration_ms: u64,
}

/// Programs whose runs are recorded as `client` (the reference hunt's
/// `dbus-send` query, and its siblings); `qdbus` also as `qdbus-qt5` etc.
pub const CLIENTS: &[&str] = &["dbus-send", "gdbus", "busctl", "qdbus", "dbus-monitor"];

pub fn is_client(name: &str) -> bool {
    CLIENTS.contains(&name) || name.starts_with("qdbus-")
}

/// Nice value of the collector thread: ahead of ordinary work, still
/// behind anything the administrator set realtime.
const COLLECTOR_NICE: i32 = -10;

/// Forks remembered for processes not yet exited; past this many (a leak
/// through lost exit events) the map is cleared.
const MAX_FORKS: usize = 262_144;
/// Likewise for the parents' comm verdicts.
const MAX_PARENTS: usize = 65_536;
/// The pause between reads while the host is busy: an exec is then read
/// from `/proc` up to this much later, so a service that lives shorter may
/// leave its program unknown (its event still comes, from the fork
/// events; a client's from fanotify).
const COALESCE: Duration = Duration::from_millis(2);
/// After a bus, its babysitter or the launch helper forks (or a process
/// whose comm cannot be read), no pause for this long: the child's exec,
/// due within a millisecond or so, is read at once.
const URGENT_NS: u64 = 20_000_000;
/// Events per [`RATE_WINDOW_NS`] from which the host counts as busy: about
/// 330 exec/s (each is a fork, an exec and an exit). Below it every event
/// is handled the moment it arrives.
const BUSY_EVENTS: u64 = 100;
const RATE_WINDOW_NS: u64 = 100_000_000;

/// Events counted per window, the last full window kept.
#[derive(Debug, Default)]
struct Rate {
    count: u64,
    window_start: u64,
    in_window: u64,
    last_window: u64,
}

impl Rate {
    fn add(&mut self, n: usize) {
        let now = proc_connector::monotonic_ns();
        if now >= self.window_start + RATE_WINDOW_NS {
            // A window with no event at all in between counts as quiet.
            self.last_window = if now < self.window_start + 2 * RATE_WINDOW_NS {
                self.in_window
            } else {
                0
            };
            self.window_start = now;
            self.in_window = 0;
        }
        self.in_window += n as u64;
        self.count += n as u64;
    }

    fn busy(&self) -> bool {
        self.last_window >= BUSY_EVENTS || self.in_window >= BUSY_EVENTS
    }
}

/// Whether a comm makes an exec worth describing: a client, a bus or bus
/// machinery (a name that is not UTF-8 is looked at in full).
fn concerns_dbus(comm: &[u8]) -> bool {
    std::str::from_utf8(comm).map_or(true, |c| {
        is_client(c) || bus_daemon::daemon_kind(c).is_some() || bus_daemon::is_launch_helper(c)
    })
}

/// Opens the connector now, so no event after this call is missed, and
/// reads it in a thread; a refusal is recorded in the store.
pub(crate) fn spawn(
    settings: Settings,
    store: Arc<Store<ProcessEvent>>,
    watchers: Arc<Watchers>,
    descent: Arc<Descent>,
    config: Config,
) {
    let conn = match Connector::open(Duration::from_millis(500)) {
        Ok(c) => c,
        Err(e) => return store.fail(e.to_string()),
    };
    let failed = Arc::clone(&store);
    let launches = Launches::open(&settings);
    let files = ProcFiles::open(&settings.proc);
    let mut collector = Collector {
        settings,
        store,
        watchers,
        descent,
        forks: HashMap::new(),
        pending: HashMap::new(),
        max_pending: config.max_rows.saturating_mul(2).max(1024),
        launches,
        files,
        parents: HashMap::new(),
        urgent_until: 0,
    };
    if let Err(e) = std::thread::Builder::new()
        .name(PROCESS.into())
        .spawn(move || collector.run(conn))
    {
        failed.fail(format!("cannot start the collector thread: {e}"));
    }
}

/// Shell convention for a wait status: the exit code, or 128 + signal.
pub fn exit_code(status: u32) -> i64 {
    let sig = status & 0x7f;
    if sig == 0 {
        i64::from((status >> 8) & 0xff)
    } else {
        128 + i64::from(sig)
    }
}

struct Collector {
    settings: Settings,
    store: Arc<Store<ProcessEvent>>,
    watchers: Arc<Watchers>,
    /// Every live descendant of an activation, to its activation.
    descent: Arc<Descent>,
    /// child tgid → what the fork and exec events told of it: the process
    /// tree as of the event being handled, which `/proc` no longer shows
    /// once a quick service and its babysitter are gone.
    forks: HashMap<u32, Fork>,
    /// tgid → its last event, until it exits.
    pending: HashMap<u32, Pending>,
    max_pending: usize,
    launches: Launches,
    /// The real procfs for the cheap first look at every exec (`None`
    /// with a fixture `--proc`: every exec is then described in full).
    files: Option<ProcFiles>,
    /// Whether a process is bus machinery or a bus by its comm, for the
    /// processes whose children exec'd; dropped when it execs, renames
    /// itself or exits, so it never goes stale.
    parents: HashMap<u32, bool>,
    /// Monotonic ns until which the collector does not pause between
    /// reads (see [`URGENT_NS`]).
    urgent_until: u64,
}

#[derive(Debug, Clone, Copy)]
struct Fork {
    parent: u32,
    /// Whether it has exec'd since the fork.
    execed: bool,
    /// Whether one of its execs was the launch helper: the program it
    /// execs next (in the same pid) is the service it was asked for.
    helper: bool,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    seq: u64,
    exec_ns: u64,
    /// Hash of the executable and command line the event was read with.
    image: Option<u64>,
}

/// What the first, cheap look at an exec found.
enum Look {
    /// Neither a client nor below a bus.
    Unrelated,
    /// Gone already, its parent not a bus nor bus machinery.
    GoneUnrelated,
    /// Worth (or needing) a full look.
    Describe,
}

/// What one exec turned out to be.
struct Described {
    event: Option<ProcessEvent>,
    /// `/proc/<pid>` was gone (or a zombie's) when read.
    vanished: bool,
    /// The process was the launch helper.
    helper: bool,
    image: Option<u64>,
    /// The service it was asked for or runs: (name, file).
    service: (Option<String>, Option<String>),
}

/// The unix time (seconds, and ms for durations) of a monotonic timestamp.
fn wall_secs(ts_ns: u64) -> u64 {
    let age = proc_connector::monotonic_ns().saturating_sub(ts_ns);
    super::now_secs().saturating_sub(age / 1_000_000_000)
}

fn image_hash(exe: Option<&str>, args: &[String]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    exe.hash(&mut h);
    args.hash(&mut h);
    h.finish()
}

impl Collector {
    fn run(&mut self, mut conn: Connector) {
        // A service may be gone a millisecond after its exec: raise this
        // thread's priority (nice is per thread on Linux; root may lower
        // it) so it reads /proc before other work on a busy host.
        if let Err(e) = rustix::process::setpriority_process(None, COLLECTOR_NICE) {
            log::debug!("{PROCESS}: cannot raise the collector's priority: {e}");
        }
        let mut rate = Rate::default();
        loop {
            let received = conn.recv();
            if !self.take(received, &mut rate) {
                return;
            }
            // Busy: pause between reads so that one wakeup handles every
            // event queued meanwhile, instead of one wakeup per event
            // (the larger part of the cost at a busy host's exec rate),
            // until a pause brings nothing. Not while a bus's child is
            // about to exec: a service may be gone within the pause.
            while rate.busy() && !self.urgent() {
                std::thread::sleep(COALESCE);
                let before = rate.count;
                loop {
                    let received = conn.try_recv();
                    if matches!(received, Ok(Received::Idle)) {
                        break;
                    }
                    if !self.take(received, &mut rate) {
                        return;
                    }
                    if self.urgent() {
                        break;
                    }
                }
                self.launches.tick(&self.store.lost);
                if rate.count == before {
                    break;
                }
            }
            self.launches.tick(&self.store.lost);
        }
    }

    /// Handles what one receive brought; `false` once the connector failed.
    fn take(&mut self, received: Result<Received, ConnectorError>, rate: &mut Rate) -> bool {
        match received {
            Ok(Received::Events(events)) => {
                rate.add(events.len());
                self.store
                    .seen
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                for e in events {
                    self.handle(e);
                }
            }
            Ok(Received::Overrun) => {
                self.store.lost.fetch_add(1, Ordering::Relaxed);
                // A lost exec or rename could leave a verdict stale.
                self.parents.clear();
                log::warn!("{PROCESS}: the kernel dropped process events (socket buffer full)");
            }
            Ok(Received::Idle) => {}
            Err(e) => {
                self.store.fail(e.to_string());
                return false;
            }
        }
        true
    }

    fn handle(&mut self, e: Event) {
        match e.kind {
            Kind::Fork {
                parent_tgid,
                child_pid,
                child_tgid,
            } if child_pid == child_tgid => {
                if self.forks.len() >= MAX_FORKS {
                    self.forks.clear();
                }
                if self.parent_concerns(parent_tgid) != Some(false) {
                    self.urgent_until = e.timestamp_ns + URGENT_NS;
                }
                let proc = &self.settings.proc;
                self.descent
                    .fork(parent_tgid, child_tgid, &descent::alive_in(proc));
                self.forks.insert(
                    child_tgid,
                    Fork {
                        parent: parent_tgid,
                        execed: false,
                        helper: false,
                    },
                );
            }
            Kind::Fork { .. } => {}
            Kind::Exec { tgid, .. } => {
                self.parents.remove(&tgid);
                self.exec(tgid, e.timestamp_ns);
            }
            Kind::Comm { tgid, .. } => {
                self.parents.remove(&tgid);
            }
            Kind::Exit { pid, tgid, status } if pid == tgid => {
                self.forks.remove(&tgid);
                self.descent.exit(tgid);
                self.parents.remove(&tgid);
                self.launches.forget(tgid);
                if let Some(p) = self.pending.remove(&tgid) {
                    let exit = Exit {
                        code: exit_code(status),
                        duration_ms: e.timestamp_ns.saturating_sub(p.exec_ns) / 1_000_000,
                    };
                    let updated = self.store.update(p.seq, |event| event.exit = Some(exit));
                    if let Some(event) = updated {
                        self.watchers.publish(|| Collected::Exit(event));
                    }
                }
            }
            Kind::Exit { .. } | Kind::Ack { .. } => {}
        }
    }

    fn exec(&mut self, pid: u32, ts_ns: u64) {
        let mut launch = self.launches.take(pid, ts_ns);
        if launch.is_none() {
            let dismiss = match self.first_look(pid) {
                Look::Unrelated => true,
                // Only fanotify can still say it ran a client.
                Look::GoneUnrelated => {
                    if self.launches.drain(&self.store.lost) {
                        launch = self.launches.take(pid, ts_ns);
                    }
                    launch.is_none()
                }
                Look::Describe => false,
            };
            if dismiss {
                if let Some(f) = self.forks.get_mut(&pid) {
                    f.execed = true;
                }
                return;
            }
        }
        let mut d = self.describe(pid, launch.as_ref());
        // The exec start was queued before this exec event was sent: a
        // drain now has it, if fanotify saw one.
        if d.vanished && launch.is_none() && self.launches.drain(&self.store.lost) {
            launch = self.launches.take(pid, ts_ns);
            if launch.is_some() {
                d = self.describe(pid, launch.as_ref());
            }
        }
        if let Some(f) = self.forks.get_mut(&pid) {
            f.execed = true;
            f.helper |= d.helper;
        }
        let Some(event) = d.event else { return };
        // Two exec events read after the second exec both see its image:
        // one event.
        let again = self
            .pending
            .get(&pid)
            .is_some_and(|p| p.image.is_some() && p.image == d.image);
        if let Some(activation) = event.activation {
            self.enter_activation(pid, ts_ns, activation, d.helper, d.service);
        }
        if !again {
            self.record(pid, ts_ns, event, d.image);
        }
    }

    /// Whether an exec is neither a client run nor an activation, known
    /// from its comm and its parent's alone (one small read, the parent's
    /// verdict kept): most execs on a busy host end here. Every chain
    /// [`Collector::describe`] follows to a bus starts at a parent whose
    /// comm is a bus's or the launch helper's (a babysitter is a
    /// `dbus-daemon` that never exec'd), so nothing it would record is
    /// dismissed. A process already gone under such a parent could only
    /// have been a client; anything else unreadable goes to `describe`.
    fn first_look(&mut self, pid: u32) -> Look {
        let (Some(files), Some(fork)) = (self.files.as_mut(), self.forks.get(&pid)) else {
            return Look::Describe;
        };
        let parent = fork.parent;
        let gone = match files.comm(pid) {
            Ok(c) if !concerns_dbus(c) => false,
            Err(e) if e.is_vanished() => true,
            _ => return Look::Describe,
        };
        match (self.parent_concerns(parent), gone) {
            (None | Some(true), _) => Look::Describe,
            (Some(false), false) => Look::Unrelated,
            (Some(false), true) => Look::GoneUnrelated,
        }
    }

    /// Whether a process is a bus, bus machinery or a client by its comm
    /// (kept until it execs, renames itself or exits); `None` when it
    /// cannot be read.
    fn parent_concerns(&mut self, pid: u32) -> Option<bool> {
        if let Some(&b) = self.parents.get(&pid) {
            return Some(b);
        }
        let b = concerns_dbus(self.files.as_mut()?.comm(pid).ok()?);
        if self.parents.len() >= MAX_PARENTS {
            self.parents.clear();
        }
        self.parents.insert(pid, b);
        Some(b)
    }

    /// Enters an activated process in the lineage map. The launch helper
    /// names the service it was asked for; the service it then execs in
    /// the same pid keeps that name when its own `Exec=` matches no file.
    fn enter_activation(
        &mut self,
        pid: u32,
        ts_ns: u64,
        activation: Activation,
        helper: bool,
        (name, file): (Option<String>, Option<String>),
    ) {
        let earlier = self
            .descent
            .get(pid)
            .filter(|a| a.pid == pid && a.activation.bus_pid == activation.bus_pid);
        let (name, file) = match (&name, &earlier) {
            (None, Some(e)) if !helper => (
                e.service_name.as_deref().map(String::from),
                file.or_else(|| e.service_file.as_deref().map(String::from)),
            ),
            _ => (name, file),
        };
        let activated = Activated {
            activation,
            service_name: name.map(String::into_boxed_str),
            service_file: file.map(String::into_boxed_str),
            time: earlier.map_or_else(|| wall_secs(ts_ns), |e| e.time),
            pid,
        };
        let proc = &self.settings.proc;
        self.descent
            .activate(pid, activated, &descent::alive_in(proc));
    }

    /// Whether a bus (or its babysitter, or anything not known to be
    /// unrelated) forked lately: its child's exec must be read at once.
    fn urgent(&self) -> bool {
        proc_connector::monotonic_ns() < self.urgent_until
    }

    fn record(&mut self, pid: u32, ts_ns: u64, mut event: ProcessEvent, image: Option<u64>) {
        let time = wall_secs(ts_ns);
        event.time = time;
        self.watchers.publish(|| Collected::Exec(event.clone()));
        let seq = self.store.push(time, event);
        if self.pending.len() >= self.max_pending {
            let store = &self.store;
            self.pending.retain(|_, p| store.holds(p.seq));
        }
        self.pending.insert(
            pid,
            Pending {
                seq,
                exec_ns: ts_ns,
                image,
            },
        );
    }

    /// How `pid` descends from a bus according to the fork events: for a
    /// process gone from `/proc`, reparented because its babysitter is
    /// gone, or whose babysitter is exiting (no command line left to
    /// recognise it by). A parent that a bus daemon forked and that never
    /// exec'd is a babysitter.
    fn origin_from_events(&self, scan: &mut Scan<'_>, pid: u32) -> Option<Origin> {
        let parent = self.forks.get(&pid)?.parent;
        if let Some(f) = self.forks.get(&parent).filter(|f| !f.execed) {
            if let Some(kind) = scan.bus_kind(f.parent) {
                return Some(Origin {
                    parent,
                    bus_pid: f.parent,
                    kind,
                    via: Via::Babysitter,
                });
            }
        }
        let live = scan.stat(parent).is_some_and(|s| s.state != 'Z')
            && scan.cmdline(parent).is_some_and(|a| !a.is_empty());
        if live {
            return scan.origin_of_parent(parent);
        }
        None
    }

    /// What an exec is: an event for an activation or a client run, or
    /// nothing. `launch` is the client binary fanotify saw it execute.
    fn describe(&self, pid: u32, launch: Option<&exec_watch::Binary>) -> Described {
        let mut scan = Scan::new(&self.settings);
        let stat = scan.stat(pid);
        let fork = self.forks.get(&pid).copied();
        let reparented = match (&stat, fork) {
            (Some(st), Some(f)) => st.ppid != f.parent,
            (None, _) => true,
            (Some(_), None) => false,
        };
        // The launch helper is machinery, but its event is the one that
        // names the service asked for: it is recorded like a service.
        let helper = stat.is_some() && scan.is_launch_helper(pid);
        let origin = if !helper && stat.is_some() && scan.is_machinery(pid) {
            None
        } else {
            let from_proc = match &stat {
                Some(st) if !reparented => scan.origin_of_parent(st.ppid),
                _ => None,
            };
            match from_proc {
                // A bus that has lost its command line is an exiting
                // babysitter mistaken for a bus.
                Some(o) if scan.cmdline(o.bus_pid).is_some_and(|a| !a.is_empty()) => Some(o),
                _ => self.origin_from_events(&mut scan, pid),
            }
        };
        let origin = origin.map(|mut o| {
            if fork.is_some_and(|f| f.helper) {
                o.via = Via::LaunchHelper;
            }
            o
        });
        let comm = stat.as_ref().map(|s| s.comm.as_str());
        let vanished_hint = stat.as_ref().is_none_or(|s| s.state == 'Z');
        if origin.is_none() && !comm.is_some_and(is_client) && launch.is_none() {
            return Described {
                event: None,
                vanished: vanished_hint,
                helper,
                image: None,
                service: (None, None),
            };
        }
        let args = scan.proc.cmdline(pid).unwrap_or_default();
        let exe = scan.proc.exe(pid).ok().and_then(|e| e.path);
        let parent = match (&stat, fork) {
            (Some(st), _) => Some(st.ppid),
            (None, Some(f)) => Some(f.parent),
            (None, None) => None,
        };
        // A zombie still has its stat, but no command line or executable.
        let gone = args.is_empty() && exe.is_none();
        let name = comm
            .map(|c| {
                bus_daemon::full_name(
                    c,
                    exe.as_deref()
                        .into_iter()
                        .chain(args.iter().take(2).map(String::as_str)),
                )
            })
            .or_else(|| launch.map(|b| b.name.clone()))
            .map(String::into_boxed_str);
        let mut process = ProcessFacts {
            pid,
            name,
            ..ProcessFacts::default()
        };
        let mut image = None;
        if gone {
            process.path = launch.map(|b| fs_safe::render_path(&b.path).into());
        } else {
            image = Some(image_hash(exe.as_deref(), &args));
            process.cwd = scan.proc.cwd(pid).ok().map(String::into_boxed_str);
            process.ids = scan.proc.ids(pid).ok();
            process.path = exe.map(String::into_boxed_str);
            process.args = Some(Args::new(&args));
        }
        let service = match &origin {
            Some(o) => service_of(&mut scan, o, helper, &args, process.path.as_deref()),
            None => (None, None),
        };
        let event = ProcessEvent {
            time: 0,
            process,
            parent: origin.map(|o| o.parent).or(parent),
            activation: origin.map(|o| activation(&mut scan, &o)),
            gone: gone.then_some(if launch.is_some() {
                Gone::ExecSeen
            } else {
                Gone::Unseen
            }),
            exit: None,
        };
        Described {
            event: Some(event),
            vanished: gone,
            helper,
            image,
            service,
        }
    }
}

/// The service an activated process is, as (name, file): the launch
/// helper's argument names the service asked for; anything else is
/// matched by its `Exec=` among the bus's service files (read once per
/// activation: activations are rare).
fn service_of(
    scan: &mut Scan<'_>,
    origin: &Origin,
    helper: bool,
    args: &[String],
    exe: Option<&str>,
) -> (Option<String>, Option<String>) {
    let bus = scan.bus(origin.bus_pid, origin.kind);
    let services = scan.services(origin.bus_pid, &bus);
    if helper {
        let asked = args.get(1).cloned();
        let file = asked.as_deref().and_then(|n| {
            services
                .iter()
                .find(|s| s.name.as_deref() == Some(n))
                .map(|s| s.path.clone())
        });
        return (asked, file);
    }
    match best_service(&services, args, exe) {
        Some(s) => (s.name.clone(), Some(s.path.clone())),
        None => (None, None),
    }
}

/// The activation a process descending from `origin` is part of.
fn activation(scan: &mut Scan<'_>, origin: &Origin) -> Activation {
    let bus = scan.bus(origin.bus_pid, origin.kind);
    Activation {
        bus_pid: origin.bus_pid,
        bus: bus.bus_type,
        via: origin.via,
        rule_session: bus.rule_session,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(0), 0);
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(9), 137);
    }

    #[test]
    fn clients() {
        for c in [
            "dbus-send",
            "gdbus",
            "busctl",
            "qdbus",
            "qdbus-qt5",
            "dbus-monitor",
        ] {
            assert!(is_client(c), "{c}");
        }
        assert!(!is_client("dbus-daemon"));
    }
}
