//! The collectors: background threads that, for the life of the process
//! (the osquery extension, or `osquery-dbus watch`), turn what the kernel
//! reports into typed events, [`ProcessEvent`]s (bus activations and
//! D-Bus client runs) and [`FileEvent`]s (changes in D-Bus directories),
//! kept in bounded buffers that the evented tables read and handed to
//! watchers as they happen. What an event shows as a row is the evented
//! tables' business (`tables::dbus_process_events`,
//! `tables::dbus_file_events`), for queries and `watch` alike.
//!
//! A `/proc` scan sees only what is alive at query time and a stat scan only
//! the last change; the hunts need what happened in between. The buffers are
//! kept after a query (osquery's scheduled queries see each event once
//! through their own differential results), bounded by `--events_max`
//! events and `--events_expiry` seconds per collector.
//!
//! One [`Collectors`] handle holds both collectors, their buffers and
//! their watchers. The host that collects (the extension, `watch`) makes
//! it once and hands it to the registry; nothing about it is global, so two
//! handles in one process collect independently. A one-shot
//! `osquery-dbus query` makes none and so has no history. When the kernel
//! refuses a collector (not root, no connector), its [`Store`] says why
//! ([`State::Failed`]) and the table answers with no rows, never a failed
//! query.
use crate::settings::Settings;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub mod descent;
pub mod file;
mod launches;
pub mod process;
pub mod ring;

pub use descent::{Activated, Descent};
pub use file::FileEvent;
pub use process::ProcessEvent;
use ring::Ring;

/// Buffer bounds, per collector. The default holds a day: bus activations
/// and D-Bus client runs are rare (a busy desktop does a few thousand a
/// day), and a process event takes about 350 bytes with its strings
/// (boxed to their length, the command line in one), so 20,000 of them
/// stay around 7 MB per collector; file events are rarer still.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub max_rows: usize,
    pub expiry: Duration,
}

pub const DEFAULT_MAX_ROWS: usize = 20_000;
pub const DEFAULT_EXPIRY_SECS: u64 = 86_400;

impl Default for Config {
    fn default() -> Config {
        Config {
            max_rows: DEFAULT_MAX_ROWS,
            expiry: Duration::from_secs(DEFAULT_EXPIRY_SECS),
        }
    }
}

/// The collectors are named after the tables they feed: in the log, in
/// their threads' names (what `top -H` and `scripts/bench.sh` look for)
/// and in `watch`'s summary.
pub const PROCESS: &str = "dbus_process_events";
pub const FILE: &str = "dbus_file_events";

/// Whether a collector is feeding its store, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Running,
    Failed(String),
}

/// A poisoned lock only means a collector panicked mid-update; the buffer
/// itself is still a valid list of events.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One collector's buffer of events and its state.
#[derive(Debug)]
pub struct Store<T> {
    pub name: &'static str,
    ring: Mutex<Ring<T>>,
    state: Mutex<State>,
    /// Times the kernel reported lost events (socket buffer overruns).
    pub lost: AtomicU64,
    /// Kernel events the collector handled, recorded or not: the load it
    /// carried.
    pub seen: AtomicU64,
}

impl<T: Clone> Store<T> {
    pub fn new(name: &'static str, config: Config) -> Store<T> {
        Store {
            name,
            ring: Mutex::new(Ring::new(config.max_rows, config.expiry.as_secs())),
            state: Mutex::new(State::Running),
            lost: AtomicU64::new(0),
            seen: AtomicU64::new(0),
        }
    }

    /// Buffers an event that happened at `time` (unix seconds); returns
    /// its sequence number for [`Store::update`].
    pub fn push(&self, time: u64, event: T) -> u64 {
        lock(&self.ring).push(time, event)
    }

    /// Changes a buffered event and returns it as changed; `None` once it
    /// has left the buffer.
    pub fn update(&self, seq: u64, change: impl FnOnce(&mut T)) -> Option<T> {
        let mut ring = lock(&self.ring);
        let event = ring.get_mut(seq)?;
        change(event);
        Some(event.clone())
    }

    /// Whether the event with this sequence number is still buffered.
    pub fn holds(&self, seq: u64) -> bool {
        lock(&self.ring).get_mut(seq).is_some()
    }

    /// Events buffered now, and events dropped to respect the bound.
    pub fn counts(&self) -> (usize, u64) {
        let ring = lock(&self.ring);
        (ring.len(), ring.evicted())
    }

    pub fn state(&self) -> State {
        lock(&self.state).clone()
    }

    pub(crate) fn fail(&self, why: String) {
        log::warn!("{}: no events: {why}", self.name);
        *lock(&self.state) = State::Failed(why);
    }

    /// Visits the buffered events at or after `since` (unix seconds),
    /// oldest first, after dropping expired ones. The buffer is locked
    /// meanwhile: `visit` should only look.
    pub fn visit_since(&self, since: Option<u64>, mut visit: impl FnMut(&T)) {
        let mut ring = lock(&self.ring);
        ring.expire(now_secs());
        for (_, event) in ring.iter().filter(|(t, _)| since.is_none_or(|s| *t >= s)) {
            visit(event);
        }
    }

    /// The buffered events at or after `since`, oldest first.
    pub fn since(&self, since: Option<u64>) -> Vec<T> {
        let mut out = Vec::new();
        self.visit_since(since, |e| out.push(e.clone()));
        out
    }
}

/// What a collector's store says of it, whatever its events are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    pub buffered: usize,
    pub evicted: u64,
    pub lost: u64,
    pub seen: u64,
}

impl<T: Clone> From<&Store<T>> for Status {
    fn from(s: &Store<T>) -> Status {
        let (buffered, evicted) = s.counts();
        Status {
            state: s.state(),
            buffered,
            evicted,
            lost: s.lost.load(Ordering::Relaxed),
            seen: s.seen.load(Ordering::Relaxed),
        }
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One event as the collectors hand it to watchers, as it happens.
#[derive(Debug, Clone)]
pub enum Collected {
    /// A process exec'd.
    Exec(ProcessEvent),
    /// A recorded process exited: its event, exit filled in.
    Exit(ProcessEvent),
    /// A file in a D-Bus directory changed (or was found).
    File(FileEvent),
}

/// The watchers of one [`Collectors`].
#[derive(Debug, Default)]
pub(crate) struct Watchers(Mutex<Vec<Sender<Collected>>>);

impl Watchers {
    /// Sends an event to every watcher (made only when there is one);
    /// a watcher that hung up is dropped.
    pub(crate) fn publish(&self, event: impl FnOnce() -> Collected) {
        let mut subs = lock(&self.0);
        if subs.is_empty() {
            return;
        }
        let event = event();
        subs.retain(|tx| tx.send(event.clone()).is_ok());
    }
}

/// The collectors of one host: made once, started once, their stores and
/// watchers reached through this handle only.
#[derive(Debug)]
pub struct Collectors {
    config: Config,
    process: OnceLock<Arc<Store<ProcessEvent>>>,
    file: OnceLock<Arc<Store<FileEvent>>>,
    watchers: Arc<Watchers>,
    /// The process collector's lineage map.
    descent: Arc<Descent>,
    /// Set once [`Collectors::start_in_background`] has been asked: from
    /// then on a store not yet made is on its way, and asking for it
    /// waits.
    starting: AtomicBool,
    /// Whether the background start has finished, and its wake-up.
    started: (Mutex<bool>, Condvar),
}

impl Collectors {
    /// A handle with nothing started yet.
    pub fn new(config: Config) -> Arc<Collectors> {
        Arc::new(Collectors {
            config,
            process: OnceLock::new(),
            file: OnceLock::new(),
            watchers: Arc::default(),
            descent: Arc::default(),
            starting: AtomicBool::new(false),
            started: (Mutex::new(false), Condvar::new()),
        })
    }

    /// Starts both collectors (later calls are no-ops). A collector the
    /// kernel refuses leaves its store in [`State::Failed`].
    pub fn start(&self, settings: &Settings) {
        let config = self.config;
        self.process.get_or_init(|| {
            let store = Arc::new(Store::new(PROCESS, config));
            process::spawn(
                settings.clone(),
                Arc::clone(&store),
                Arc::clone(&self.watchers),
                Arc::clone(&self.descent),
                config,
            );
            store
        });
        self.file.get_or_init(|| {
            let store = Arc::new(Store::new(FILE, config));
            file::spawn(
                settings.clone(),
                Arc::clone(&store),
                Arc::clone(&self.watchers),
            );
            store
        });
    }

    /// [`Collectors::start`] in a thread of its own. The extension
    /// registers with the core meanwhile: opening the process connector
    /// (its acknowledgement), marking the client binaries and discovering
    /// every watched directory take a large part of a second on a busy
    /// host, which the core should not wait for. A query of an evented
    /// table that arrives before the collectors are up waits for them
    /// instead of answering as if none were started.
    pub fn start_in_background(self: &Arc<Self>, settings: &Settings) {
        self.starting.store(true, Ordering::SeqCst);
        let owned = settings.clone();
        let hub = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("events-start".into())
            .spawn(move || {
                let started =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hub.start(&owned)));
                if started.is_err() {
                    // A store left unmade would answer as if nothing collects.
                    let why = || "the collector failed to start".to_string();
                    hub.process.get_or_init(|| {
                        let store = Arc::new(Store::new(PROCESS, hub.config));
                        store.fail(why());
                        store
                    });
                    hub.file.get_or_init(|| {
                        let store = Arc::new(Store::new(FILE, hub.config));
                        store.fail(why());
                        store
                    });
                }
                *lock(&hub.started.0) = true;
                hub.started.1.notify_all();
            });
        if let Err(e) = spawned {
            log::warn!("cannot start the collectors in the background ({e}); starting them now");
            self.start(settings);
        }
    }

    /// Waits for a background start, if one was asked for.
    fn wait_started(&self) {
        if !self.starting.load(Ordering::SeqCst) {
            return;
        }
        let mut done = lock(&self.started.0);
        while !*done {
            done = self
                .started
                .1
                .wait(done)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// The process collector's store, once started (waiting for a start
    /// under way).
    pub fn process(&self) -> Option<Arc<Store<ProcessEvent>>> {
        if self.process.get().is_none() {
            self.wait_started();
        }
        self.process.get().cloned()
    }

    /// The lineage map of the running process collector: `None` when it
    /// is not started or the kernel refused it (then nothing is known of
    /// lineage, which is not the same as knowing of none).
    pub fn descent(&self) -> Option<Arc<Descent>> {
        let store = self.process()?;
        (store.state() == State::Running).then(|| Arc::clone(&self.descent))
    }

    /// The file collector's store, likewise.
    pub fn file(&self) -> Option<Arc<Store<FileEvent>>> {
        if self.file.get().is_none() {
            self.wait_started();
        }
        self.file.get().cloned()
    }

    /// The status of the collector named `name` ([`PROCESS`], [`FILE`]),
    /// `None` when it is not started (or no collector has that name).
    pub fn status(&self, name: &str) -> Option<Status> {
        match name {
            PROCESS => self.process().map(|s| Status::from(&*s)),
            FILE => self.file().map(|s| Status::from(&*s)),
            _ => None,
        }
    }

    /// Every event of both collectors from now on, as it happens.
    pub fn subscribe(&self) -> Receiver<Collected> {
        let (tx, rx) = mpsc::channel();
        lock(&self.watchers.0).push(tx);
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::lineage::Via;
    use crate::sources::proc::Ids;
    use crate::sources::process_facts::{Args, ProcessFacts};
    use process::{Activation, Exit};

    fn typical_event(pid: u32) -> ProcessEvent {
        let args = ["/usr/libexec/geoclue", "--some-arg", "value"];
        ProcessEvent {
            time: 1_795_630_800,
            process: ProcessFacts {
                pid,
                name: Some("geoclue".into()),
                path: Some("/usr/libexec/geoclue".into()),
                args: Some(Args::new(&args.map(String::from))),
                cwd: Some("/".into()),
                ids: Some(Ids::default()),
                ..ProcessFacts::default()
            },
            parent: Some(1234),
            activation: Some(Activation {
                bus_pid: 99,
                bus: crate::sources::bus_daemon::BusType::System,
                via: Via::Babysitter,
                rule_session: false,
            }),
            gone: None,
            exit: Some(Exit {
                code: 0,
                duration_ms: 12,
            }),
        }
    }

    #[test]
    fn store_respects_its_row_bound_and_updates_only_what_it_holds() {
        let store = Store::new(
            PROCESS,
            Config {
                max_rows: 5,
                expiry: Duration::from_secs(3600),
            },
        );
        let now = now_secs();
        let seqs: Vec<u64> = (0..20).map(|p| store.push(now, typical_event(p))).collect();
        assert_eq!(store.counts(), (5, 15));
        let events = store.since(None);
        assert_eq!(events.len(), 5);
        assert_eq!(events[0].process.pid, 15);
        assert!(store.update(seqs[0], |_| {}).is_none());
        let exit = Exit {
            code: 7,
            duration_ms: 1,
        };
        let updated = store.update(seqs[19], |e| e.exit = Some(exit));
        assert_eq!(updated.and_then(|e| e.exit), Some(exit));
        assert_eq!(store.since(None)[4].exit, Some(exit));
        assert_eq!(store.since(Some(now + 1)).len(), 0);
    }

    #[test]
    fn store_drops_expired_events() {
        let store = Store::new(
            PROCESS,
            Config {
                max_rows: 100,
                expiry: Duration::from_secs(60),
            },
        );
        let now = now_secs();
        store.push(now - 3600, typical_event(1));
        store.push(now, typical_event(2));
        let events = store.since(None);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].process.pid, 2);
    }

    /// What a buffered event costs: its own size and its strings' bytes
    /// (the allocator adds a few words per string on top), so that the
    /// default bound stays around 7 MB per collector.
    #[test]
    fn a_typical_event_is_small() {
        let e = typical_event(1);
        let p = &e.process;
        let strings = [&p.name, &p.path, &p.cwd]
            .into_iter()
            .flatten()
            .map(|s| s.len())
            .sum::<usize>();
        let args = p.args.as_ref().map_or(0, Args::heap_len);
        let n = std::mem::size_of::<ProcessEvent>() + strings + args;
        assert!(n < 320, "{n} bytes");
    }

    /// Two handles in one process share nothing: an event one collects is
    /// not the other's, and a watcher of one hears nothing of the other.
    #[test]
    fn two_handles_are_independent() {
        let a = Collectors::new(Config::default());
        let b = Collectors::new(Config::default());
        let store = Arc::new(Store::new(PROCESS, a.config));
        assert!(a.process.set(Arc::clone(&store)).is_ok());
        let heard_a = a.subscribe();
        let heard_b = b.subscribe();
        store.push(now_secs(), typical_event(7));
        a.watchers.publish(|| Collected::Exec(typical_event(7)));
        assert_eq!(a.process().map(|s| s.since(None).len()), Some(1));
        assert!(b.process().is_none(), "b never started");
        assert!(matches!(heard_a.try_recv(), Ok(Collected::Exec(e)) if e.process.pid == 7));
        assert!(heard_b.try_recv().is_err());
        assert_eq!(a.status(PROCESS).map(|s| s.buffered), Some(1));
        assert_eq!(b.status(PROCESS), None);
    }
}
