//! `dbus_daemon_children`: every live process a D-Bus bus daemon started,
//! with the Elastic rule's verdict, so the seed hunt "unusual child of
//! dbus-daemon" runs as SQL over a `/proc` snapshot rather than an event feed.
//!
//! Cost matters because this runs on every host of a fleet: one pass over
//! `/proc/*/comm` finds the bus daemons, `task/*/children` gives their
//! children, and full details are read only for rows returned. Where the
//! kernel is known to lack those files, the one pass reads `/proc/*/stat`
//! instead (comm and parent together); where that is only found out late (a
//! fixture tree), a second, equally lean pass over `stat` fills the gap. `pid =` / `IN`
//! visits only the pids asked for, walking up their parents, and emits them
//! only if a full scan would. Parsing lives in `sources::proc`,
//! `sources::bus_daemon` and `sources::service_file`; the rule in `verdict`.
//!
//! The rule itself only looks at processes whose parent is named
//! `dbus-daemon`; here its other conditions are applied to every row,
//! however it descends (a child of the launch helper or of dbus-broker is no less
//! worth a look), and `via` says which path it came by. A pid reused between
//! listing and reading could be misattributed; the window is the length of
//! one scan and is not guarded against.
use crate::context::QueryContext;
use crate::row::Row;
use crate::settings::Settings;
use crate::sources::connections::NetCache;
use crate::sources::lineage::{best_service, skip_quietly, Origin, Scan};
use crate::sources::proc::{self, ProcError};
use crate::spec::columns::dbus_daemon_children as c;
use crate::tables::connection_columns::{self, ConnectionColumns};
use crate::tables::process_columns::{self, wanted_pids};
use crate::verdict;

/// The connection columns, in this table's handles.
const CONNECTIONS: ConnectionColumns = ConnectionColumns {
    stdio: c::STDIO,
    remote_addresses: c::REMOTE_ADDRESSES,
    listening: c::LISTENING,
    note: c::CONNECTIONS_NOTE,
};

pub fn generate(settings: &Settings, ctx: &QueryContext) -> Vec<Row> {
    let mut scan = Scan::new(settings);
    let candidates = match wanted_pids(ctx) {
        Some(pids) => pids,
        None => scan.candidates(),
    };
    let boot = scan.proc.boot_time();
    let ticks = proc::clock_ticks();
    let want_connections = ctx.used(&c::ALL).any(&c::NEEDS_CONNECTIONS);
    let mut net = NetCache::default();
    let mut rows = Vec::new();
    for pid in candidates {
        let Some(origin) = scan.origin(pid) else {
            continue;
        };
        match build_row(&mut scan, ctx, pid, origin, boot, ticks) {
            Ok(mut row) => {
                connection_columns::fill(
                    &mut row,
                    &CONNECTIONS,
                    want_connections,
                    &scan.proc,
                    pid,
                    &mut net,
                );
                rows.push(row)
            }
            Err(e) => skip_quietly(pid, &e),
        }
    }
    rows
}

fn build_row(
    scan: &mut Scan<'_>,
    ctx: &QueryContext,
    pid: u32,
    origin: Origin,
    boot: Option<u64>,
    ticks: u64,
) -> Result<Row, ProcError> {
    let read = process_columns::read(scan, ctx, &c::PROCESS, pid, boot, ticks)?;
    let f = &read.facts;
    let mut row = Row::new(&c::SCHEMA);
    process_columns::fill(&mut row, &c::PROCESS, f);
    let bus = scan.bus(origin.bus_pid, origin.kind);
    let bus_args = scan.cmdline(origin.bus_pid).unwrap_or_default();
    let args = f.arg_list();
    let v = verdict::assess(
        &args,
        f.name.as_deref().unwrap_or_default(),
        f.path.as_deref(),
        bus.rule_session,
    );
    // A zombie or exiting child (often a babysitter the bus has not
    // reaped yet) has no command line: the rule's "0 args" is why it is
    // not unusual, and the reason says why there are none.
    let reason = match read.stat.exit_phase() {
        Some(phase) => format!("{}; {}", phase.reason(read.stat.ppid), v.reason),
        None => v.reason,
    };
    row.set(c::PARENT, origin.parent)
        .set(c::BUS_PID, origin.bus_pid)
        .set(c::BUS_DAEMON, origin.kind.as_str())
        .set(c::BUS, bus.bus_type.as_str())
        .set(c::BUS_CMDLINE, bus_args.join(" "))
        .set(c::VIA, origin.via.as_str())
        .set(c::UNUSUAL, v.unusual)
        .set(c::REASON, reason);
    if ctx.uses(c::SERVICE_FILE) {
        let services = scan.services(origin.bus_pid, &bus);
        row.set(
            c::SERVICE_FILE,
            best_service(&services, &args, f.path.as_deref()).map(|s| s.path.as_str()),
        );
    }
    Ok(row)
}
