//! What the evented tables share: the `time` lower bound they push down,
//! what they answer when no collector runs in this process, and the rows
//! of events as they happen, for `watch` (whose JSON lines `output`
//! writes).
use crate::context::{Op, QueryContext};
use crate::row::Row;
use crate::sources::collect::{self, Collected};
use crate::tables::{dbus_file_events, dbus_process_events};
use std::sync::Mutex;

/// One event as a watcher shows it: its table, what kind of event it is
/// (`exec`, `exit`, `file`) and its row.
#[derive(Debug, Clone)]
pub struct Published {
    pub table: &'static str,
    pub event: &'static str,
    pub row: Row,
}

/// The evented table an event belongs to.
pub fn table_of(event: &Collected) -> &'static str {
    match event {
        Collected::Exec(_) | Collected::Exit(_) => collect::PROCESS,
        Collected::File(_) => collect::FILE,
    }
}

/// An event as its table shows it.
pub fn publish(event: &Collected) -> Published {
    let (kind, row) = match event {
        Collected::Exec(e) => ("exec", dbus_process_events::row(e)),
        Collected::Exit(e) => ("exit", dbus_process_events::row(e)),
        Collected::File(e) => ("file", dbus_file_events::row(e)),
    };
    Published {
        table: table_of(event),
        event: kind,
        row,
    }
}

/// The lower bound a `time >`, `>=` or `=` constraint puts on event times.
pub fn time_lower_bound(ctx: &QueryContext) -> Option<u64> {
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

/// Says (once per process and table: a log line, not state) why an
/// evented table has no rows when nothing collects.
pub fn no_collector(table: &'static str) {
    static WARNED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut warned = WARNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !warned.contains(&table) {
        warned.push(table);
        log::warn!(
            "{table}: no collector in this process; evented tables have history only \
             in the osquery extension and `osquery-dbus watch`"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::collect;

    /// The specs say which tables are evented; each of those has a
    /// collector, and no other table does.
    #[test]
    fn evented_specs_are_the_collected_tables() {
        let evented: Vec<String> = crate::spec::load_all()
            .into_iter()
            .filter(|t| t.evented)
            .map(|t| t.name)
            .collect();
        assert_eq!(evented, [collect::PROCESS, collect::FILE]);
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
