//! The `dbus_process_events` collector: one thread reading the netlink
//! process connector. On each exec it reads `/proc/<pid>` at once (a service
//! may live for a millisecond), walks up at most two hops through the
//! babysitter / launch helper to a bus daemon with the same code
//! `dbus_daemon_children` uses, and buffers a row for bus activations and
//! D-Bus client runs; on that process's exit it fills `exit_code` and
//! `duration_ms`. Everything else the kernel reports is dropped at once.
//!
//! When `/proc/<pid>` is already gone at exec time, the parent comes from the
//! fork event the kernel sent earlier, so an activation is still recorded
//! (with its program columns NULL); a client run that vanished that fast
//! cannot be recognised (exec events carry no name) and is missed.
use super::{publish, Config, Store, PROCESS_TABLE};
use crate::sources::bus_daemon;
use crate::sources::proc_connector::{self, Connector, Event, Kind, Received};
use crate::tables::dbus_daemon_children::{Origin, Scan, Via};
use crate::tables::{Row, Settings};
use crate::verdict;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

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

/// Opens the connector now, so no event after this call is missed, and
/// reads it in a thread; a refusal is recorded in the store.
pub(crate) fn spawn(settings: Settings, store: Arc<Store>, config: Config) {
    let conn = match Connector::open(Duration::from_millis(500)) {
        Ok(c) => c,
        Err(e) => return store.fail(e.to_string()),
    };
    let failed = Arc::clone(&store);
    let mut collector = Collector {
        settings,
        store,
        forks: HashMap::new(),
        pending: HashMap::new(),
        max_pending: config.max_rows.saturating_mul(2).max(1024),
    };
    if let Err(e) = std::thread::Builder::new()
        .name(PROCESS_TABLE.into())
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
    store: Arc<Store>,
    /// child tgid → (parent tgid, whether it has exec'd since), from fork
    /// and exec events: the process tree as of the event being handled,
    /// which `/proc` no longer shows once a quick service and its
    /// babysitter are gone.
    forks: HashMap<u32, (u32, bool)>,
    /// tgid → (sequence of its row, exec timestamp), until it exits.
    pending: HashMap<u32, (u64, u64)>,
    max_pending: usize,
}

/// The unix time (seconds, and ms for durations) of a monotonic timestamp.
fn wall_secs(ts_ns: u64) -> u64 {
    let age = proc_connector::monotonic_ns().saturating_sub(ts_ns);
    super::now_secs().saturating_sub(age / 1_000_000_000)
}

impl Collector {
    fn run(&mut self, mut conn: Connector) {
        // A service may be gone a millisecond after its exec: raise this
        // thread's priority (nice is per thread on Linux; root may lower
        // it) so it reads /proc before other work on a busy host.
        if let Err(e) = rustix::process::setpriority_process(None, COLLECTOR_NICE) {
            log::debug!("{PROCESS_TABLE}: cannot raise the collector's priority: {e}");
        }
        loop {
            match conn.recv() {
                Ok(Received::Events(events)) => {
                    for e in events {
                        self.handle(e);
                    }
                }
                Ok(Received::Overrun) => {
                    self.store
                        .lost
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    log::warn!(
                        "{PROCESS_TABLE}: the kernel dropped process events (socket buffer full)"
                    );
                }
                Ok(Received::Idle) => {}
                Err(e) => return self.store.fail(e.to_string()),
            }
        }
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
                self.forks.insert(child_tgid, (parent_tgid, false));
            }
            Kind::Fork { .. } => {}
            Kind::Exec { tgid, .. } => {
                let described = self.describe(tgid);
                if let Some(f) = self.forks.get_mut(&tgid) {
                    f.1 = true;
                }
                if let Some(row) = described {
                    self.record(tgid, e.timestamp_ns, row);
                }
            }
            Kind::Exit { pid, tgid, status } if pid == tgid => {
                self.forks.remove(&tgid);
                if let Some((seq, exec_ns)) = self.pending.remove(&tgid) {
                    let duration = e.timestamp_ns.saturating_sub(exec_ns) / 1_000_000;
                    let updated = self.store.update(seq, |row| {
                        row.set("exit_code", exit_code(status))
                            .set("duration_ms", duration);
                    });
                    if let Some(row) = updated {
                        publish(PROCESS_TABLE, "exit", &row);
                    }
                }
            }
            Kind::Exit { .. } | Kind::Ack { .. } => {}
        }
    }

    fn record(&mut self, pid: u32, ts_ns: u64, mut row: Row) {
        let time = wall_secs(ts_ns);
        row.set("time", time);
        publish(PROCESS_TABLE, "exec", &row);
        let seq = self.store.push(time, &row);
        if self.pending.len() >= self.max_pending {
            let store = &self.store;
            self.pending.retain(|_, (s, _)| store.holds(*s));
        }
        self.pending.insert(pid, (seq, ts_ns));
    }

    /// How `pid` descends from a bus according to the fork events: for a
    /// process gone from `/proc`, reparented because its babysitter is
    /// gone, or whose babysitter is exiting (no command line left to
    /// recognise it by). A parent that a bus daemon forked and that never
    /// exec'd is a babysitter.
    fn origin_from_events(&self, scan: &mut Scan<'_>, pid: u32) -> Option<Origin> {
        let (parent, _) = *self.forks.get(&pid)?;
        if let Some(&(grand, false)) = self.forks.get(&parent) {
            if let Some(kind) = scan.bus_kind(grand) {
                return Some(Origin {
                    parent,
                    bus_pid: grand,
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

    /// The row for an exec, or `None` when it is neither an activation nor
    /// a client run.
    fn describe(&self, pid: u32) -> Option<Row> {
        let mut scan = Scan::new(&self.settings);
        let stat = scan.stat(pid);
        let reparented = match (&stat, self.forks.get(&pid)) {
            (Some(st), Some((parent, _))) => st.ppid != *parent,
            (None, _) => true,
            (Some(_), None) => false,
        };
        let origin = if stat.is_some() && scan.is_machinery(pid) {
            None
        } else {
            let from_proc = if reparented { None } else { scan.origin(pid) };
            match from_proc {
                // A bus that has lost its command line is an exiting
                // babysitter mistaken for a bus.
                Some(o) if scan.cmdline(o.bus_pid).is_some_and(|a| !a.is_empty()) => Some(o),
                _ => self.origin_from_events(&mut scan, pid),
            }
        };
        let comm = stat.as_ref().map(|s| s.comm.as_str());
        if origin.is_none() && !comm.is_some_and(is_client) {
            return None;
        }
        let args = scan.proc.cmdline(pid).unwrap_or_default();
        let exe = scan.proc.exe(pid).ok().and_then(|e| e.path);
        let mut row = Row::new();
        row.set("pid", pid);
        if let Some(st) = &stat {
            row.set("parent", st.ppid);
        }
        // A zombie still has its stat, but no command line or executable.
        let gone = args.is_empty() && exe.is_none();
        let name = comm.map(|c| {
            bus_daemon::full_name(
                c,
                exe.as_deref()
                    .into_iter()
                    .chain(args.iter().take(2).map(String::as_str)),
            )
        });
        if !gone {
            row.set("path", exe.clone())
                .set("cmdline", args.join(" "))
                .set("args_count", args.len() as i64)
                .set("cwd", scan.proc.cwd(pid).ok());
            if let Ok(ids) = scan.proc.ids(pid) {
                row.set("uid", ids.uid)
                    .set("euid", ids.euid)
                    .set("gid", ids.gid);
            }
        }
        row.set("name", name.clone());
        match origin {
            Some(origin) => {
                row.set("kind", "activation");
                let bus = origin_columns(&mut scan, &mut row, &origin);
                if gone {
                    row.set(
                        "reason",
                        "exited before /proc could be read: arguments unknown",
                    );
                } else {
                    let v = verdict::assess(
                        &args,
                        name.as_deref().unwrap_or_default(),
                        exe.as_deref(),
                        bus.rule_session,
                    );
                    row.set("unusual", v.unusual).set("reason", v.reason);
                }
            }
            None => {
                row.set("kind", "client");
            }
        }
        Some(row)
    }
}

fn origin_columns(scan: &mut Scan<'_>, row: &mut Row, origin: &Origin) -> bus_daemon::Bus {
    let bus = scan.bus(origin.bus_pid, origin.kind);
    row.set("parent", origin.parent)
        .set("bus_pid", origin.bus_pid)
        .set("bus_type", bus.bus_type.as_str())
        .set("via", origin.via.as_str());
    bus
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
