//! `dbus_activated_processes`: every live process that D-Bus activation
//! started, by any path, with the evidence, because `dbus_daemon_children`
//! only sees a process while its parent is a bus daemon, and the attacks
//! that matter leave that shape: services systemd starts for a bus, and
//! payloads that double-fork or `setsid` away from the service.
//!
//! Three kinds of evidence, strongest first; a process takes the first
//! that applies to it or to an ancestor (its *activation root*):
//! - a bus daemon (directly, through its babysitter or launch helper) is
//!   the parent: exactly `dbus_daemon_children`'s rows, found by the same
//!   `Scan`, and `via` says which of those paths with the same word
//!   (`direct`, `babysitter`, `launch_helper`).
//! - `systemd_unit`: a child of a systemd manager (pid 1 or `systemd
//!   --user`) whose cgroup unit is a dbus-broker transient unit or the unit
//!   a service file's `SystemdService=` names (`sources::systemd_unit`,
//!   `sources::service_names`).
//! - `starter_env`: a process that could have escaped (re-parented to init
//!   or a manager, or a session leader) whose `environ` carries the
//!   `DBUS_STARTER_ADDRESS` the bus gives every service it activates.
//!
//! - `lineage`: when a process collector runs (the extension, `watch`),
//!   a live process its lineage map (`sources::collect::descent`) ties
//!   to an activation that none of the above shows.
//!
//! Every descendant of a root is a row too, `depth` generations below.
//!
//! Which service a root is (`attributed_by`), first that applies: the
//! `Exec=` it runs (`exec`), the unit it runs in (`unit`), the
//! activation the collector saw it descend from (`lineage`), else for a
//! root whose bus is known the one small service script that names it
//! (`script`, `sources::service_scripts`; several: `ambiguous`).
//!
//! Cost: one pass reads every process's `stat` (the tree), then only a
//! few processes get more: `cgroup` for children of a systemd manager,
//! `environ` (root only, capped) for escape candidates, never for kernel
//! threads, and full details for rows returned. `pid =` narrows the rows
//! read in full but not the attribution, which needs the whole tree. A
//! process that vanishes mid-scan is skipped quietly. Parsing lives in the
//! sources; the seed rule in `verdict`.
use crate::blind;
use crate::context::QueryContext;
use crate::row::Row;
use crate::settings::Settings;
use crate::sources::bus_daemon::{self, BusType, DaemonKind};
use crate::sources::collect::{Collectors, Descent};
use crate::sources::connections::NetCache;
use crate::sources::fs_safe::Root as FsRoot;
use crate::sources::lineage::{self, best_service, skip_quietly, Scan};
use crate::sources::proc::{self, ProcError, Stat};
use crate::sources::process_facts::Read;
use crate::sources::service_dirs::{self, Bus as DirBus};
use crate::sources::service_names::{self, Names};
use crate::sources::service_scripts::{self, Scripts};
use crate::sources::{packages, systemd_unit};
use crate::spec::columns::dbus_activated_processes as c;
use crate::tables::connection_columns::{self, ConnectionColumns};
use crate::tables::process_columns::{self, wanted_pids};
use crate::verdict;
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

/// The connection columns, in this table's handles.
const CONNECTIONS: ConnectionColumns = ConnectionColumns {
    stdio: c::STDIO,
    remote_addresses: c::REMOTE_ADDRESSES,
    listening: c::LISTENING,
    note: c::CONNECTIONS_NOTE,
};

/// Descendants deeper than this below a root are not followed: a fork
/// bomb or a pid cycle in a fixture cannot make the walk unbounded.
const MAX_DEPTH: u32 = 64;

const STARTER_KEYS: [&str; 2] = ["DBUS_STARTER_ADDRESS", "DBUS_STARTER_BUS_TYPE"];

/// Columns that need the service file (and so the bus's files read).
const SERVICE_COLUMNS: [&str; 6] = [
    "service_file",
    "service_name",
    "suspicious",
    "reason",
    "attributed_by",
    "candidate_services",
];

/// How an activation reached its root: the bus paths `dbus_daemon_children`
/// names, in its words, or the two kinds of evidence only this table has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Bus(lineage::Via),
    SystemdUnit,
    StarterEnv,
    Lineage,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Bus(via) => via.as_str(),
            Via::SystemdUnit => "systemd_unit",
            Via::StarterEnv => "starter_env",
            Via::Lineage => "lineage",
        }
    }
}

/// A process activation started (or that escaped from one), and what its
/// descendants inherit.
#[derive(Debug, Clone)]
struct ActRoot {
    pid: u32,
    via: Via,
    unit: Option<String>,
    bus: Option<BusType>,
    bus_address: Option<String>,
    bus_pid: Option<u32>,
    bus_kind: Option<DaemonKind>,
    service_file: Option<String>,
    service_name: Option<String>,
    /// Whether the root itself left its activating parent.
    escaped: bool,
    /// The seed rule's "parent runs with --session".
    rule_session: bool,
    attributed_by: AttributedBy,
    /// For [`AttributedBy::Ambiguous`]: `name=file` of every candidate.
    candidates: Option<String>,
}

/// How a root's service was found: the `attributed_by` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttributedBy {
    Exec,
    Unit,
    Lineage,
    Script,
    Ambiguous,
    None,
}

impl AttributedBy {
    fn as_str(self) -> &'static str {
        match self {
            AttributedBy::Exec => "exec",
            AttributedBy::Unit => "unit",
            AttributedBy::Lineage => "lineage",
            AttributedBy::Script => "script",
            AttributedBy::Ambiguous => "ambiguous",
            AttributedBy::None => "none",
        }
    }

    /// `exec` when a service file was found by its `Exec=`, else `none`.
    fn by_exec(found: &(Option<String>, Option<String>)) -> AttributedBy {
        if found.0.is_some() {
            AttributedBy::Exec
        } else {
            AttributedBy::None
        }
    }
}

/// A row to be: a process and the root it descends from.
#[derive(Debug, Clone, Copy)]
struct Member {
    root: usize,
    depth: u32,
}

/// One query's attribution state.
struct Attribution<'s, 'a> {
    scan: &'s mut Scan<'a>,
    fs_root: Option<FsRoot>,
    names: Option<Names>,
    want_service: bool,
    roots: Vec<ActRoot>,
    members: BTreeMap<u32, Member>,
    /// Pids of the systemd managers, sorted.
    managers: Vec<u32>,
    /// The running process collector's lineage map, if one runs.
    descent: Option<Arc<Descent>>,
    scripts: Scripts,
}

impl Attribution<'_, '_> {
    fn names(&mut self) -> Option<&Names> {
        if self.names.is_none() {
            let root = self.fs_root.as_ref()?;
            let found = service_dirs::discover(root);
            self.names = Some(service_names::resolve(root, found.present()));
        }
        self.names.as_ref()
    }

    /// Adds a root and every descendant not yet attributed.
    fn add(&mut self, root: ActRoot) {
        let idx = self.roots.len();
        let mut frontier = vec![root.pid];
        self.roots.push(root);
        let mut depth = 0;
        while !frontier.is_empty() && depth <= MAX_DEPTH {
            let mut next = Vec::new();
            for pid in frontier {
                if self.members.contains_key(&pid) {
                    continue;
                }
                self.members.insert(pid, Member { root: idx, depth });
                next.extend(self.scan.children(pid));
            }
            frontier = next;
            depth += 1;
        }
    }

    /// Service file of a bus daemon's child, by `Exec`.
    fn service_by_exec(
        &mut self,
        bus_pid: u32,
        kind: DaemonKind,
        pid: u32,
    ) -> (Option<String>, Option<String>) {
        if !self.want_service {
            return (None, None);
        }
        let bus = self.scan.bus(bus_pid, kind);
        let services = self.scan.services(bus_pid, &bus);
        let args = self.scan.cmdline(pid).unwrap_or_default();
        let exe = self.scan.proc.exe(pid).ok().and_then(|e| e.path);
        match best_service(&services, &args, exe.as_deref()) {
            Some(s) => (Some(s.path.clone()), s.name.clone()),
            None => (None, None),
        }
    }

    fn parent_roots(&mut self) {
        for pid in self.scan.candidates() {
            let Some(origin) = self.scan.origin(pid) else {
                continue;
            };
            let bus = self.scan.bus(origin.bus_pid, origin.kind);
            let found = self.service_by_exec(origin.bus_pid, origin.kind, pid);
            let attributed_by = AttributedBy::by_exec(&found);
            let (service_file, service_name) = found;
            let escaped = self.scan.stat(pid).is_some_and(|s| s.session == pid);
            self.add(ActRoot {
                pid,
                via: Via::Bus(origin.via),
                unit: None,
                bus: Some(bus.bus_type),
                bus_address: bus.addresses.first().cloned(),
                bus_pid: Some(origin.bus_pid),
                bus_kind: Some(origin.kind),
                service_file,
                service_name,
                escaped,
                rule_session: bus.rule_session,
                attributed_by,
                candidates: None,
            });
        }
    }

    /// The systemd managers (pid 1 or `systemd --user`), by comm.
    fn find_managers(&mut self, pids: &[u32]) {
        self.managers = pids
            .iter()
            .copied()
            .filter(|&p| self.scan.stat(p).is_some_and(|s| s.comm == "systemd"))
            .collect();
    }

    /// Children of systemd managers in a unit D-Bus activation names.
    /// Within one unit the earliest such child is the one systemd started;
    /// a later one re-parented to the manager escaped from it.
    fn systemd_roots(&mut self) {
        let mut found: Vec<(Stat, ActRoot)> = Vec::new();
        for manager in self.managers.clone() {
            for pid in self.scan.children(manager) {
                if self.members.contains_key(&pid) {
                    continue;
                }
                let Some(stat) = self.scan.stat(pid) else {
                    continue;
                };
                if stat.is_kernel_thread() || stat.comm == "systemd" {
                    continue;
                }
                let placement = match self.scan.proc.cgroup(pid) {
                    Ok(bytes) => systemd_unit::unit_from_cgroup(&bytes),
                    Err(e) => {
                        skip_quietly(pid, &e);
                        None
                    }
                };
                let Some(placement) = placement else {
                    continue;
                };
                if let Some(root) = self.unit_root(pid, manager, &placement) {
                    found.push((stat, root));
                }
            }
        }
        // Earliest start (then lowest pid) per unit is the activated one.
        found.sort_by_key(|(s, r)| (r.unit.clone(), s.starttime, r.pid));
        let mut seen_units = std::collections::HashSet::new();
        for (_, mut root) in found {
            root.escaped = !seen_units.insert(root.unit.clone());
            self.add(root);
        }
    }

    fn unit_root(
        &mut self,
        pid: u32,
        manager: u32,
        placement: &systemd_unit::Placement,
    ) -> Option<ActRoot> {
        let user = placement.user_manager || manager != 1;
        let (bus, bus_type) = if user {
            (DirBus::Session, BusType::Session)
        } else {
            (DirBus::System, BusType::System)
        };
        let uid = if user {
            self.scan.proc.ids(pid).ok().map(|i| i.uid)
        } else {
            None
        };
        let unit = placement.unit.clone();
        let (service_name, service_file) = match systemd_unit::parse_transient(&unit) {
            Some(t) => {
                let file = self
                    .names()
                    .and_then(|n| n.effective(bus, uid, &t.service_name))
                    .map(|p| p.path.display().to_string());
                (Some(t.service_name), file)
            }
            None => {
                let names = self.names()?;
                let p = names.for_bus(bus, uid).find(|p| {
                    p.effective == Some(true)
                        && p.systemd_service
                            .as_deref()
                            .is_some_and(|s| systemd_unit::names_unit(s, &unit))
                })?;
                (p.name.clone(), Some(p.path.display().to_string()))
            }
        };
        Some(ActRoot {
            pid,
            via: Via::SystemdUnit,
            unit: Some(unit),
            bus: Some(bus_type),
            bus_address: None,
            bus_pid: None,
            bus_kind: None,
            attributed_by: if service_name.is_some() || service_file.is_some() {
                AttributedBy::Unit
            } else {
                AttributedBy::None
            },
            service_file,
            service_name,
            escaped: false,
            rule_session: user,
            candidates: None,
        })
    }

    /// Whether a process could have left its activating parent: its parent
    /// is init or a systemd manager (the usual subreapers), or it leads a
    /// session of its own. Kernel threads and bus machinery never qualify.
    /// Asked of every process: the checks on its own stat come first, and
    /// the bus machinery (which reads more of the scan) is looked at only
    /// for the few that pass them.
    fn could_have_escaped(&mut self, pid: u32, stat: &Stat) -> bool {
        if pid <= 2 || stat.ppid == 2 || stat.is_kernel_thread() {
            return false;
        }
        let subreaped = stat.ppid == 1 || self.managers.binary_search(&stat.ppid).is_ok();
        if !(subreaped || stat.session == pid) {
            return false;
        }
        bus_daemon::daemon_kind(&stat.comm).is_none() && !self.scan.is_machinery(pid)
    }

    fn starter_roots(&mut self, pids: &[u32]) {
        let mut buses: Option<Vec<(String, u32, DaemonKind)>> = None;
        for &pid in pids {
            if self.members.contains_key(&pid) {
                continue;
            }
            let Some(stat) = self.scan.stat(pid) else {
                continue;
            };
            if !self.could_have_escaped(pid, &stat) {
                continue;
            }
            let [address, starter_bus] = match self.scan.proc.environ_vars(pid, STARTER_KEYS) {
                Ok(v) => v,
                Err(ProcError::Io { source, .. })
                    if source.kind() == ErrorKind::PermissionDenied =>
                {
                    // Not root, typically: a blind spot, as the starter
                    // environment is the only evidence for some processes.
                    blind::report(
                        "cannot read process environments (not root?): starter_env evidence unavailable",
                        &source,
                        &format!("pid {pid}"),
                    );
                    continue;
                }
                Err(e) => {
                    skip_quietly(pid, &e);
                    continue;
                }
            };
            let Some(address) = address else {
                continue;
            };
            let socket = bus_daemon::address_socket(&address);
            let known = buses.get_or_insert_with(|| self.live_buses(pids));
            let bus = socket
                .as_ref()
                .and_then(|s| known.iter().find(|(k, _, _)| k == s))
                .map(|(_, p, k)| (*p, *k));
            let found = match bus {
                Some((bus_pid, kind)) => self.service_by_exec(bus_pid, kind, pid),
                None => (None, None),
            };
            let attributed_by = AttributedBy::by_exec(&found);
            let (service_file, service_name) = found;
            let starter_bus = starter_bus.as_deref().map(BusType::from_type_name);
            let rule_session = starter_bus == Some(BusType::Session);
            self.add(ActRoot {
                pid,
                via: Via::StarterEnv,
                unit: None,
                bus: starter_bus,
                bus_address: Some(address),
                bus_pid: bus.map(|b| b.0),
                bus_kind: bus.map(|b| b.1),
                service_file,
                service_name,
                escaped: true,
                rule_session,
                attributed_by,
                candidates: None,
            });
        }
    }

    /// Processes only the collector's lineage map ties to an activation.
    fn lineage_roots(&mut self) {
        let Some(descent) = self.descent.clone() else {
            return;
        };
        for (pid, a) in descent.all() {
            if self.members.contains_key(&pid) {
                continue;
            }
            // Its parent is a row already: it is a descendant there.
            let Some(stat) = self.scan.stat(pid) else {
                continue;
            };
            if stat.is_kernel_thread() || self.members.contains_key(&stat.ppid) {
                continue;
            }
            let act = a.activation;
            let bus_kind = self.scan.bus_kind(act.bus_pid);
            let bus_address = bus_kind
                .map(|k| self.scan.bus(act.bus_pid, k))
                .and_then(|b| b.addresses.first().cloned());
            let escaped = stat.session == pid || stat.ppid == 1;
            self.add(ActRoot {
                pid,
                via: Via::Lineage,
                unit: None,
                bus: Some(act.bus),
                bus_address,
                bus_pid: Some(act.bus_pid),
                bus_kind,
                service_file: None,
                service_name: None,
                escaped,
                rule_session: act.rule_session,
                attributed_by: AttributedBy::None,
                candidates: None,
            });
        }
    }

    /// Names the service of every root none of its own evidence named:
    /// by the collector's lineage, else by the bus's service scripts.
    fn attribute_rest(&mut self) {
        if !self.want_service {
            return;
        }
        for i in 0..self.roots.len() {
            let r = &self.roots[i];
            if r.service_name.is_some() || r.service_file.is_some() {
                continue;
            }
            let pid = r.pid;
            if let Some(a) = self.descent.as_ref().and_then(|d| d.get(pid)) {
                if a.service_name.is_some() || a.service_file.is_some() {
                    let r = &mut self.roots[i];
                    r.service_name = a.service_name.as_deref().map(String::from);
                    r.service_file = a.service_file.as_deref().map(String::from);
                    r.attributed_by = AttributedBy::Lineage;
                    continue;
                }
            }
            let (Some(bus_pid), Some(kind)) = (r.bus_pid, r.bus_kind) else {
                continue;
            };
            let Some(fs_root) = self.fs_root.as_ref() else {
                continue;
            };
            let bus = self.scan.bus(bus_pid, kind);
            let services = self.scan.services(bus_pid, &bus);
            let args = self.scan.cmdline(pid).unwrap_or_default();
            let exe = self.scan.proc.exe(pid).ok().and_then(|e| e.path);
            let found = self
                .scripts
                .attribute(fs_root, &services, exe.as_deref(), &args);
            let r = &mut self.roots[i];
            match found {
                service_scripts::Attribution::One(s) => {
                    r.service_name = s.name.clone();
                    r.service_file = Some(s.path.clone());
                    r.attributed_by = AttributedBy::Script;
                }
                service_scripts::Attribution::Several(all) => {
                    let named: Vec<String> = all
                        .iter()
                        .map(|s| format!("{}={}", s.name.as_deref().unwrap_or_default(), s.path))
                        .collect();
                    r.candidates = Some(named.join(", "));
                    r.attributed_by = AttributedBy::Ambiguous;
                }
                service_scripts::Attribution::None => {}
            }
        }
    }

    /// Every bus daemon with the socket it listens on.
    fn live_buses(&mut self, pids: &[u32]) -> Vec<(String, u32, DaemonKind)> {
        let mut out = Vec::new();
        for &pid in pids {
            let Some(kind) = self.scan.bus_kind(pid) else {
                continue;
            };
            let bus = self.scan.bus(pid, kind);
            for a in &bus.addresses {
                if let Some(s) = bus_daemon::address_socket(a) {
                    out.push((s, pid, kind));
                }
            }
        }
        out
    }
}

pub fn generate(
    settings: &Settings,
    collectors: Option<&Collectors>,
    ctx: &QueryContext,
) -> Vec<Row> {
    let mut scan = Scan::new(settings);
    let pids = scan.prime();
    let fs_root = super::open_root(settings).ok();
    let mut att = Attribution {
        scan: &mut scan,
        fs_root,
        names: None,
        want_service: SERVICE_COLUMNS.iter().any(|c| ctx.uses(c)),
        roots: Vec::new(),
        members: BTreeMap::new(),
        managers: Vec::new(),
        descent: collectors.and_then(Collectors::descent),
        scripts: Scripts::default(),
    };
    att.parent_roots();
    att.find_managers(&pids);
    att.systemd_roots();
    att.starter_roots(&pids);
    att.lineage_roots();
    att.attribute_rest();
    let Attribution {
        fs_root,
        roots,
        members,
        ..
    } = att;
    let wanted = wanted_pids(ctx);
    let shown = |pid: &u32| wanted.as_ref().is_none_or(|w| w.binary_search(pid).is_ok());
    // The package databases are read only for the service files of the
    // rows shown, and only for those paths: most hosts have no activated
    // process to judge, and none needs a map of every installed file.
    let want_owners = ctx.uses(c::SUSPICIOUS) || ctx.uses(c::REASON);
    let files: Vec<&[u8]> = members
        .iter()
        .filter(|(pid, _)| want_owners && shown(pid))
        .filter_map(|(_, m)| roots[m.root].service_file.as_deref())
        .map(str::as_bytes)
        .collect();
    let owners = fs_root
        .as_ref()
        .filter(|_| !files.is_empty())
        .map(|r| packages::owners_of(r, files, false));
    let boot = scan.proc.boot_time();
    let ticks = proc::clock_ticks();
    let want_connections = ctx.used(&c::ALL).any(&c::NEEDS_CONNECTIONS);
    let mut net = NetCache::default();
    let mut rows = Vec::new();
    for (&pid, &m) in &members {
        if !shown(&pid) {
            continue;
        }
        let root = &roots[m.root];
        match process_columns::read(&scan, ctx, &c::PROCESS, pid, boot, ticks) {
            Ok(read) => {
                let mut row = Row::new(&c::SCHEMA);
                process_columns::fill(&mut row, &c::PROCESS, &read.facts);
                fill(&mut row, ctx, &scan, pid, root, m, &read, owners.as_deref());
                connection_columns::fill(
                    &mut row,
                    &CONNECTIONS,
                    want_connections,
                    &scan.proc,
                    pid,
                    &mut net,
                );
                rows.push(row);
            }
            Err(e) => skip_quietly(pid, &e),
        }
    }
    rows
}

/// The activation and verdict columns of one row.
#[allow(clippy::too_many_arguments)]
fn fill(
    row: &mut Row,
    ctx: &QueryContext,
    scan: &Scan<'_>,
    pid: u32,
    root: &ActRoot,
    m: Member,
    read: &Read,
    owners: Option<&packages::Owners>,
) {
    let (f, stat) = (&read.facts, &read.stat);
    let escaped = if m.depth == 0 {
        root.escaped
    } else {
        stat.session == pid
    };
    // Below an escaped starter_env root the lineage to the activated
    // process is cut: how far below it is unknown.
    let depth = (root.via != Via::StarterEnv).then_some(m.depth);
    row.set(c::PARENT, stat.ppid)
        .set(c::VIA, root.via.as_str())
        .set(c::UNIT, root.unit.clone())
        .set(c::BUS, root.bus.map(BusType::as_str))
        .set(c::BUS_ADDRESS, root.bus_address.clone())
        .set(c::BUS_PID, root.bus_pid)
        .set(c::BUS_DAEMON, root.bus_kind.map(DaemonKind::as_str))
        .set(c::SERVICE_NAME, root.service_name.clone())
        .set(c::SERVICE_FILE, root.service_file.clone())
        .set(c::ATTRIBUTED_BY, root.attributed_by.as_str())
        .set(c::CANDIDATE_SERVICES, root.candidates.clone())
        .set(c::DEPTH, depth)
        .set(c::ESCAPED, escaped);
    if !(ctx.uses(c::UNUSUAL) || ctx.uses(c::SUSPICIOUS) || ctx.uses(c::REASON)) {
        return;
    }
    let exe = f.path.as_deref();
    let name = f.name.as_deref().unwrap_or_default();
    let v = verdict::assess(&f.arg_list(), name, exe, root.rule_session);
    // A zombie or exiting process has no executable or command line left:
    // that is said, and is no reason to suspect it.
    let phase = stat.exit_phase();
    let note = phase.map(|p| p.reason(stat.ppid));
    let mut reasons = vec![v.reason];
    if escaped {
        reasons.push("left its activating parent (re-parented, or a session of its own)".into());
    }
    match exe {
        Some(e) if verdict::library_prefix(e).is_none() => {
            reasons.push(format!("executable {e} is outside the library paths"))
        }
        Some(_) => {}
        None if phase.is_some() => {}
        None => reasons.push("executable unknown".into()),
    }
    if f.on_disk == Some(0) {
        reasons.push("executable deleted after it started".into());
    }
    let exe_link = scan.proc.dir().join(pid.to_string()).join("exe");
    if std::fs::metadata(exe_link).is_ok_and(|m| m.permissions().mode() & 0o002 != 0) {
        reasons.push("executable is world-writable".into());
    }
    if let (Some(owners), Some(file)) = (owners, &root.service_file) {
        if owners.owner(file.as_bytes()).as_deref() == Some("") {
            reasons.push(format!("service file {file} is not owned by any package"));
        }
    }
    let suspicious = v.unusual || reasons.len() > 1;
    if let Some(note) = note {
        reasons.insert(0, note);
    }
    row.set(c::UNUSUAL, v.unusual)
        .set(c::SUSPICIOUS, suspicious)
        .set(c::REASON, reasons.join("; "));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_names() {
        assert_eq!(Via::Bus(lineage::Via::Direct).as_str(), "direct");
        assert_eq!(Via::Bus(lineage::Via::Babysitter).as_str(), "babysitter");
        assert_eq!(
            Via::Bus(lineage::Via::LaunchHelper).as_str(),
            "launch_helper"
        );
        assert_eq!(Via::SystemdUnit.as_str(), "systemd_unit");
        assert_eq!(Via::StarterEnv.as_str(), "starter_env");
        assert_eq!(Via::Lineage.as_str(), "lineage");
    }
}
