//! Evented tables: collectors that run in background threads for the life of
//! the process (the osquery extension, or `osquery-dbus watch`), feeding
//! bounded buffers that `dbus_process_events` and `dbus_file_events` read.
//!
//! A `/proc` scan sees only what is alive at query time and a stat scan only
//! the last change; the hunts need what happened in between. The buffers are
//! kept after a query (osquery's scheduled queries see each event once
//! through their own differential results), bounded by `--events_max` rows
//! and `--events_expiry` seconds per table.
//!
//! A one-shot `osquery-dbus query` starts no collector and so has no history:
//! its evented tables answer with no rows and a warning saying so. When the
//! kernel refuses a collector (not root, no connector), its table answers
//! with no rows and the reason is logged, never a failed query.
use crate::row::Row;
use crate::settings::Settings;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub mod compact;
pub mod file;
mod launches;
pub mod process;
pub mod ring;

use ring::Ring;

/// Buffer bounds, per table. The default holds a day: bus activations and
/// D-Bus client runs are rare (a busy desktop does a few thousand a day),
/// and a buffered row takes about 300 bytes encoded ([`compact`]), so
/// 20,000 rows stay around 6 MB per table.
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

/// Whether a collector is feeding its store, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Running,
    Failed(String),
}

/// Encoded rows and the column numbering they use.
#[derive(Debug)]
struct Buffer {
    ring: Ring<Box<[u8]>>,
    columns: compact::Columns,
}

/// One table's buffer and its collector's state.
#[derive(Debug)]
pub struct Store {
    pub table: &'static str,
    buffer: Mutex<Buffer>,
    state: Mutex<State>,
    /// Times the kernel reported lost events (socket buffer overruns).
    pub lost: std::sync::atomic::AtomicU64,
    /// Kernel events the collector handled, recorded or not: the load it
    /// carried.
    pub seen: std::sync::atomic::AtomicU64,
}

/// A poisoned lock only means a collector panicked mid-update; the buffer
/// itself is still a valid list of rows.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Store {
    fn new(table: &'static str, config: Config) -> Store {
        Store {
            table,
            buffer: Mutex::new(Buffer {
                ring: Ring::new(config.max_rows, config.expiry.as_secs()),
                columns: compact::Columns::default(),
            }),
            state: Mutex::new(State::Running),
            lost: std::sync::atomic::AtomicU64::new(0),
            seen: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Buffers a row that happened at `time` (unix seconds); returns its
    /// sequence number for [`Store::update`].
    pub fn push(&self, time: u64, row: &Row) -> u64 {
        let mut b = lock(&self.buffer);
        let bytes = compact::encode(row, &mut b.columns);
        b.ring.push(time, bytes)
    }

    /// Changes a buffered row; `None` once it has left the buffer.
    pub fn update(&self, seq: u64, change: impl FnOnce(&mut Row)) -> Option<Row> {
        let mut b = lock(&self.buffer);
        let Buffer { ring, columns } = &mut *b;
        let slot = ring.get_mut(seq)?;
        let mut row = compact::decode(slot, columns);
        change(&mut row);
        *slot = compact::encode(&row, columns);
        Some(row)
    }

    /// Whether the row with this sequence number is still buffered.
    pub fn holds(&self, seq: u64) -> bool {
        lock(&self.buffer).ring.get_mut(seq).is_some()
    }

    /// Rows buffered now, and rows dropped to respect the row bound.
    pub fn counts(&self) -> (usize, u64) {
        let b = lock(&self.buffer);
        (b.ring.len(), b.ring.evicted())
    }

    pub fn state(&self) -> State {
        lock(&self.state).clone()
    }

    pub(crate) fn fail(&self, why: String) {
        log::warn!("{}: no events: {why}", self.table);
        *lock(&self.state) = State::Failed(why);
    }

    /// The buffered rows at or after `since` (unix seconds), oldest first,
    /// after dropping expired ones.
    pub fn rows_since(&self, since: Option<u64>) -> Vec<Row> {
        let mut b = lock(&self.buffer);
        b.ring.expire(now_secs());
        b.ring
            .iter()
            .filter(|(t, _)| since.is_none_or(|s| *t >= s))
            .map(|(_, bytes)| compact::decode(bytes, &b.columns))
            .collect()
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub const PROCESS_TABLE: &str = "dbus_process_events";
pub const FILE_TABLE: &str = "dbus_file_events";

static PROCESS_STORE: OnceLock<Arc<Store>> = OnceLock::new();
static FILE_STORE: OnceLock<Arc<Store>> = OnceLock::new();
static SUBSCRIBERS: Mutex<Vec<Sender<Published>>> = Mutex::new(Vec::new());

/// One event as the collectors hand it to watchers: its table, what kind
/// of event it is (`exec`, `exit`, `file`) and its row. How it is written
/// out is `output`'s business (`output::event_line`).
#[derive(Debug, Clone)]
pub struct Published {
    pub table: &'static str,
    pub event: &'static str,
    pub row: Row,
}

/// Starts every collector once per process (later calls are no-ops). A
/// collector the kernel refuses leaves its store in [`State::Failed`].
pub fn start(settings: &Settings, config: Config) {
    PROCESS_STORE.get_or_init(|| {
        let store = Arc::new(Store::new(PROCESS_TABLE, config));
        process::spawn(settings.clone(), Arc::clone(&store), config);
        store
    });
    FILE_STORE.get_or_init(|| {
        let store = Arc::new(Store::new(FILE_TABLE, config));
        file::spawn(settings.clone(), Arc::clone(&store));
        store
    });
}

/// Set once [`start_in_background`] has been asked: from then on a store
/// not yet made is on its way, and [`store`] waits for it.
static STARTING: AtomicBool = AtomicBool::new(false);
/// Whether the background start has finished, and its wake-up.
static STARTED: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

/// [`start`] in a thread of its own. The extension registers with the core
/// meanwhile: opening the process connector (its acknowledgement), marking
/// the client binaries and discovering every watched directory take a
/// large part of a second on a busy host, which the core should not wait
/// for. A query of an evented table that arrives before the collectors are
/// up waits for them instead of answering as if none were started.
pub fn start_in_background(settings: &Settings, config: Config) {
    STARTING.store(true, Ordering::SeqCst);
    let owned = settings.clone();
    let spawned = std::thread::Builder::new()
        .name("events-start".into())
        .spawn(move || {
            let started =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| start(&owned, config)));
            if started.is_err() {
                // A store left unmade would answer as if nothing collects.
                for (cell, table) in [(&PROCESS_STORE, PROCESS_TABLE), (&FILE_STORE, FILE_TABLE)] {
                    cell.get_or_init(|| {
                        let store = Arc::new(Store::new(table, config));
                        store.fail("the collector failed to start".into());
                        store
                    });
                }
            }
            *lock(&STARTED.0) = true;
            STARTED.1.notify_all();
        });
    if let Err(e) = spawned {
        log::warn!("cannot start the collectors in the background ({e}); starting them now");
        start(settings, config);
    }
}

/// The store of a table, if collectors were started (waiting for one that
/// is being started in the background).
pub fn store(table: &str) -> Option<Arc<Store>> {
    let cell = match table {
        PROCESS_TABLE => &PROCESS_STORE,
        FILE_TABLE => &FILE_STORE,
        _ => return None,
    };
    if STARTING.load(Ordering::SeqCst) && cell.get().is_none() {
        let mut done = lock(&STARTED.0);
        while !*done {
            done = STARTED
                .1
                .wait(done)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
    cell.get().cloned()
}

/// Rows of an evented table for a query; logs (once per process and table)
/// why there are none when nothing collects.
pub fn rows(table: &'static str, since: Option<u64>) -> Vec<Row> {
    static WARNED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let Some(store) = store(table) else {
        let mut warned = lock(&WARNED);
        if !warned.contains(&table) {
            warned.push(table);
            log::warn!(
                "{table}: no collector in this process; evented tables have history only \
                 in the osquery extension and `osquery-dbus watch`"
            );
        }
        return Vec::new();
    };
    store.rows_since(since)
}

/// A stream of `(table, JSON line)`, one per event of every evented table,
/// for `osquery-dbus watch`.
pub fn subscribe() -> Receiver<Published> {
    let (tx, rx) = mpsc::channel();
    lock(&SUBSCRIBERS).push(tx);
    rx
}

/// Sends a row to the watchers.
pub(crate) fn publish(table: &'static str, event: &'static str, row: &Row) {
    let mut subs = lock(&SUBSCRIBERS);
    if subs.is_empty() {
        return;
    }
    let published = Published {
        table,
        event,
        row: row.clone(),
    };
    subs.retain(|tx| tx.send(published.clone()).is_ok());
}

/// The lower bound a `time >`, `>=` or `=` constraint puts on event times.
pub fn time_lower_bound(ctx: &crate::context::QueryContext) -> Option<u64> {
    use crate::context::Op;
    ctx.constraints("time")
        .iter()
        .filter_map(|c| {
            let v: f64 = c.expr.trim().parse().ok()?;
            let v = v.max(0.0);
            match c.op {
                Op::Gt => Some(v.floor() as u64 + 1),
                Op::Ge | Op::Eq => Some(v.ceil() as u64),
                _ => None,
            }
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Op, QueryContext};
    use crate::row::Value;
    use crate::spec::columns::dbus_process_events as c;

    /// The specs say which tables are evented; each of those has a
    /// collector here, and no other table does.
    #[test]
    fn evented_specs_are_the_collected_tables() {
        let evented: Vec<String> = crate::spec::load_all()
            .into_iter()
            .filter(|t| t.evented)
            .map(|t| t.name)
            .collect();
        assert_eq!(evented, [PROCESS_TABLE, FILE_TABLE]);
    }

    fn typical_row(pid: u32) -> Row {
        let mut row = Row::new(&c::SCHEMA);
        row.set(c::TIME, 1_795_630_800u64)
            .set(c::PID, pid)
            .set(c::PARENT, 1234u32)
            .set(c::BUS_PID, 99u32)
            .set(c::BUS, "system")
            .set(c::VIA, "babysitter")
            .set(c::KIND, "activation")
            .set(c::NAME, "geoclue")
            .set(c::PATH, "/usr/libexec/geoclue")
            .set(c::CMDLINE, "/usr/libexec/geoclue --some-arg value")
            .set(c::ARGS_COUNT, 3i64)
            .set(c::CWD, "/")
            .set(c::UID, 0u32)
            .set(c::EUID, 0u32)
            .set(c::GID, 0u32)
            .set(c::UNUSUAL, false)
            .set(
                c::REASON,
                "/usr/libexec/geoclue runs from the library path /usr/libexec/",
            )
            .set(c::EXIT_CODE, 0i64)
            .set(c::DURATION_MS, 12u64);
        row
    }

    #[test]
    fn store_respects_its_row_bound_and_updates_only_what_it_holds() {
        let store = Store::new(
            PROCESS_TABLE,
            Config {
                max_rows: 5,
                expiry: Duration::from_secs(3600),
            },
        );
        let now = now_secs();
        let seqs: Vec<u64> = (0..20).map(|p| store.push(now, &typical_row(p))).collect();
        assert_eq!(store.counts(), (5, 15));
        let rows = store.rows_since(None);
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0].get(c::PID), Some(&Value::Integer(15)));
        assert!(store.update(seqs[0], |_| {}).is_none());
        let updated = store.update(seqs[19], |r| {
            r.set(c::EXIT_CODE, 7i64);
        });
        assert_eq!(
            updated.and_then(|r| r.get(c::EXIT_CODE).cloned()),
            Some(Value::Integer(7))
        );
        assert_eq!(store.rows_since(Some(now + 1)).len(), 0);
    }

    #[test]
    fn store_drops_expired_rows() {
        let store = Store::new(
            PROCESS_TABLE,
            Config {
                max_rows: 100,
                expiry: Duration::from_secs(60),
            },
        );
        let now = now_secs();
        store.push(now - 3600, &typical_row(1));
        store.push(now, &typical_row(2));
        let rows = store.rows_since(None);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get(c::PID), Some(&Value::Integer(2)));
    }

    #[test]
    fn a_typical_row_encodes_small() {
        let mut cols = compact::Columns::default();
        let n = compact::encode(&typical_row(1), &mut cols).len();
        assert!(n < 400, "{n} bytes");
    }

    #[test]
    fn time_bounds() {
        let mut ctx = QueryContext::new();
        assert_eq!(time_lower_bound(&ctx), None);
        ctx.add_constraint("time", Op::Gt, "100");
        ctx.add_constraint("time", Op::Ge, "50");
        ctx.add_constraint("time", Op::Lt, "500");
        ctx.add_constraint("time", Op::Gt, "junk");
        assert_eq!(time_lower_bound(&ctx), Some(101));
    }
}
