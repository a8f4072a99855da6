//! The process collector's lineage map: every live process that descends
//! from a bus activation, by pid, to that activation (bus, service name
//! and file, when and which pid the bus activated). The collector fills
//! it from the kernel's fork, exec and exit events: an activation's pid is
//! entered when its exec is read, a fork below it inherits the entry, an
//! exit drops it. So a payload that double-forks, `setsid`s, clears its
//! environment and execs an unrelated program still names the service
//! that planted it, which no `/proc` snapshot can tell once its parents
//! are gone. `dbus_activated_processes` reads it when a collector runs.
//!
//! Bound: [`MAX_DESCENDANTS`] pids, each a hash-map slot of a pid and a
//! shared pointer (about 20 bytes with the table's overhead; 65,536 of
//! them about 1.5 MB), and one [`Activated`] per activation shared by all
//! its descendants (about 120 bytes with its strings). A busy host has a
//! few hundred activated processes and their children; the bound leaves
//! room for a fork bomb below one of them. When full, entries of pids
//! gone from `/proc` (exits lost to a socket overrun) are swept; if it is
//! still full, a new descendant is not entered and the refusal counted
//! ([`Descent::refused`]): its row then falls back to the snapshot's
//! evidence. A fork always resets the child's entry (inherited or
//! removed), so a pid reused after a lost exit is not misattributed
//! unless its fork event was lost too.
use super::process::Activation;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Descendant pids kept at most.
pub const MAX_DESCENDANTS: usize = 65_536;

/// One activation, as every process descending from it inherits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activated {
    pub activation: Activation,
    /// The service asked for (the launch helper's argument) or whose
    /// `Exec=` the activated process ran.
    pub service_name: Option<Box<str>>,
    /// That service's file, as a path inside the root.
    pub service_file: Option<Box<str>>,
    /// Unix seconds of the activated process's exec.
    pub time: u64,
    /// The pid the bus activated.
    pub pid: u32,
}

/// The map, shared by the collector (the only writer) and the tables.
#[derive(Debug, Default)]
pub struct Descent {
    map: Mutex<HashMap<u32, Arc<Activated>>>,
    refused: AtomicU64,
}

impl Descent {
    /// The activation `pid` descends from, if the collector saw it.
    pub fn get(&self, pid: u32) -> Option<Arc<Activated>> {
        super::lock(&self.map).get(&pid).cloned()
    }

    /// Every pid known to descend from an activation, with it.
    pub fn all(&self) -> Vec<(u32, Arc<Activated>)> {
        let map = super::lock(&self.map);
        let mut out: Vec<_> = map.iter().map(|(&p, a)| (p, Arc::clone(a))).collect();
        out.sort_unstable_by_key(|(p, _)| *p);
        out
    }

    pub fn len(&self) -> usize {
        super::lock(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Descendants not entered because the map was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Enters an activated process (it replaces what its pid had).
    pub(crate) fn activate(&self, pid: u32, activated: Activated, alive: &dyn Fn(u32) -> bool) {
        let mut map = super::lock(&self.map);
        if map.len() >= MAX_DESCENDANTS && !map.contains_key(&pid) && !sweep(&mut map, alive) {
            self.refuse();
            return;
        }
        map.insert(pid, Arc::new(activated));
    }

    /// A fork: the child inherits its parent's activation, or has none.
    pub(crate) fn fork(&self, parent: u32, child: u32, alive: &dyn Fn(u32) -> bool) {
        let mut map = super::lock(&self.map);
        let Some(a) = map.get(&parent).cloned() else {
            map.remove(&child);
            return;
        };
        if map.len() >= MAX_DESCENDANTS && !map.contains_key(&child) && !sweep(&mut map, alive) {
            drop(map);
            self.refuse();
            return;
        }
        map.insert(child, a);
    }

    pub(crate) fn exit(&self, pid: u32) {
        super::lock(&self.map).remove(&pid);
    }

    fn refuse(&self) {
        if self.refused.fetch_add(1, Ordering::Relaxed) == 0 {
            log::warn!(
                "{}: more than {MAX_DESCENDANTS} processes below activations; \
                 later ones are attributed from /proc only",
                super::PROCESS
            );
        }
    }
}

/// Whether `pid` is still in the procfs at `proc`.
pub(crate) fn alive_in(proc: &Path) -> impl Fn(u32) -> bool + '_ {
    move |pid| proc.join(pid.to_string()).exists()
}

/// Drops the entries of pids no longer alive; whether room was made.
fn sweep(map: &mut HashMap<u32, Arc<Activated>>, alive: &dyn Fn(u32) -> bool) -> bool {
    map.retain(|&pid, _| alive(pid));
    map.len() < MAX_DESCENDANTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::bus_daemon::BusType;
    use crate::sources::lineage::Via;

    fn activated(pid: u32) -> Activated {
        Activated {
            activation: Activation {
                bus_pid: 10,
                bus: BusType::System,
                via: Via::LaunchHelper,
                rule_session: false,
            },
            service_name: Some("org.example.Planted".into()),
            service_file: Some("/usr/share/dbus-1/system-services/x.service".into()),
            time: 1,
            pid,
        }
    }

    #[test]
    fn inherited_on_fork_dropped_on_exit_reset_on_reuse() {
        let d = Descent::default();
        let proc = &|_| false;
        d.activate(100, activated(100), proc);
        d.fork(100, 101, proc);
        d.fork(101, 102, proc);
        d.exit(101);
        assert_eq!(d.get(102).map(|a| a.pid), Some(100));
        assert!(d.get(101).is_none());
        // 102 exits without the event reaching us, its pid is reused by
        // a fork of an unrelated process: the fork resets it.
        d.fork(1, 102, proc);
        assert!(d.get(102).is_none());
        assert_eq!(d.len(), 1);
    }

    /// The bound holds: past it, entries of vanished pids are swept, and
    /// when none can go the new one is refused and counted.
    #[test]
    fn bounded() {
        let d = Descent::default();
        let gone = &|_| false;
        d.activate(1, activated(1), gone);
        for p in 2..=(MAX_DESCENDANTS as u32) {
            d.fork(1, p, gone);
        }
        assert_eq!(d.len(), MAX_DESCENDANTS);
        // None of them alive: the sweep makes room.
        d.fork(1, 1_000_000, gone);
        assert!(d.len() < MAX_DESCENDANTS);
        assert_eq!(d.refused(), 0);
        // All of them alive: the new one is refused and counted.
        let alive = &|_| true;
        let d = Descent::default();
        d.activate(1, activated(1), alive);
        for p in 2..=(MAX_DESCENDANTS as u32) {
            d.fork(1, p, alive);
        }
        d.fork(1, 1_000_000, alive);
        assert_eq!(d.len(), MAX_DESCENDANTS);
        assert_eq!(d.refused(), 1);
        assert!(d.get(1_000_000).is_none());
    }
}
