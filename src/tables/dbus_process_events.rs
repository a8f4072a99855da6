//! `dbus_process_events`: bus activations and D-Bus client runs as they
//! happened, from the events the process collector
//! (`sources::collect::process`) buffers. The table applies the `time`
//! lower bound and makes each event a row ([`row`], which `watch` uses
//! too); collecting and the buffer's bounds live in `sources::collect`.
use crate::context::QueryContext;
use crate::row::Row;
use crate::sources::collect::process::{Gone, ProcessEvent};
use crate::sources::collect::Collectors;
use crate::spec::columns::dbus_process_events as c;
use crate::tables::evented;
use crate::tables::process_columns;
use crate::verdict;

const TABLE: &str = "dbus_process_events";

const GONE: &str = "exited before /proc could be read: arguments unknown";

pub fn generate(collectors: Option<&Collectors>, ctx: &QueryContext) -> Vec<Row> {
    let Some(store) = collectors.and_then(Collectors::process) else {
        evented::no_collector(TABLE);
        return Vec::new();
    };
    let mut rows = Vec::new();
    store.visit_since(evented::time_lower_bound(ctx), |e| rows.push(row(e)));
    rows
}

/// The row of one event; an activation is judged by the seed rule.
pub fn row(e: &ProcessEvent) -> Row {
    let mut row = Row::new(&c::SCHEMA);
    row.set(c::TIME, e.time);
    process_columns::fill(&mut row, &c::PROCESS, &e.process);
    if let Some(parent) = e.parent {
        row.set(c::PARENT, parent);
    }
    let gone = e.gone.map(|g| match g {
        Gone::Unseen => GONE.to_string(),
        Gone::ExecSeen => format!("{GONE} (name and path from the exec of that binary)"),
    });
    match (&e.activation, gone) {
        (Some(a), gone) => {
            row.set(c::KIND, "activation")
                .set(c::BUS_PID, a.bus_pid)
                .set(c::BUS, a.bus.as_str())
                .set(c::VIA, a.via.as_str());
            match gone {
                Some(reason) => {
                    row.set(c::REASON, reason);
                }
                None => {
                    let p = &e.process;
                    let v = verdict::assess(
                        &p.arg_list(),
                        p.name.as_deref().unwrap_or_default(),
                        p.path.as_deref(),
                        a.rule_session,
                    );
                    row.set(c::UNUSUAL, v.unusual).set(c::REASON, v.reason);
                }
            }
        }
        (None, gone) => {
            row.set(c::KIND, "client");
            if let Some(reason) = gone {
                row.set(c::REASON, reason);
            }
        }
    }
    if let Some(exit) = e.exit {
        row.set(c::EXIT_CODE, exit.code)
            .set(c::DURATION_MS, exit.duration_ms);
    }
    row
}
