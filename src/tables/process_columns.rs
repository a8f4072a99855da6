//! The process columns every table of processes shares (pid, name, path,
//! cmdline, ids, start time, hash of the executable, …), filled by one
//! function ([`fill`]) from `sources::process_facts`, whether the facts
//! were read at query time (the snapshot tables) or when the process
//! exec'd (the process events), and the `pid` constraint the snapshot
//! tables read. A table of processes adds its own columns beside these.
use crate::context::QueryContext;
use crate::row::{Column, Row, Value};
use crate::sources::lineage::Scan;
use crate::sources::proc::ProcError;
use crate::sources::process_facts::{ProcessFacts, Read};

/// The pids an `=`/`IN` constraint asks for; `None` means scan everything.
pub fn wanted_pids(ctx: &QueryContext) -> Option<Vec<u32>> {
    let values = ctx.eq_values("pid")?;
    let mut pids: Vec<u32> = values
        .iter()
        .filter_map(|v| {
            let v = v.trim();
            v.parse::<u32>().ok().or_else(|| {
                // SQLite compares 42.0 equal to 42.
                let f: f64 = v.parse().ok()?;
                (f.fract() == 0.0 && f >= 0.0 && f <= f64::from(u32::MAX)).then_some(f as u32)
            })
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    Some(pids)
}

/// A table's handles for the shared process columns, generated from its
/// spec as `spec::columns::<table>::PROCESS` (`None` for a column the
/// table lacks).
pub use crate::spec::columns::ProcessColumns;

/// Fills `column` when the table has it.
fn put(row: &mut Row, column: Option<Column>, value: impl Into<Value>) {
    if let Some(c) = column {
        row.set(c, value);
    }
}

/// Reads a live process for a row of a table with these columns: the
/// executable is hashed only when the query uses `exe_sha256`. `Err` only
/// when the process vanished (see [`ProcessFacts::read`]).
pub fn read(
    scan: &Scan<'_>,
    ctx: &QueryContext,
    cols: &ProcessColumns,
    pid: u32,
    boot: Option<u64>,
    ticks: u64,
) -> Result<Read, ProcError> {
    let hash = cols.exe_sha256.is_some_and(|c| ctx.uses(c));
    ProcessFacts::read(&scan.proc, pid, boot, ticks, hash)
}

/// Fills the shared process columns a table has from a process's facts.
/// `pid`, `name` and `path` are always set (NULL when unknown); the others
/// only when known, the command line columns only when it was read.
pub fn fill(row: &mut Row, cols: &ProcessColumns, p: &ProcessFacts) {
    put(row, cols.pid, p.pid);
    put(row, cols.name, p.name.as_deref());
    put(row, cols.path, p.path.as_deref());
    if let Some(args) = &p.args {
        put(row, cols.cmdline, args.join(" "));
        put(row, cols.args_count, args.len() as i64);
    }
    if let Some(s) = p.state {
        put(row, cols.state, s.to_string());
    }
    if let Some(v) = p.on_disk {
        put(row, cols.on_disk, v);
    }
    if let Some(v) = p.start_time {
        put(row, cols.start_time, v);
    }
    if let Some(h) = &p.exe_sha256 {
        put(row, cols.exe_sha256, h.as_deref());
    }
    if let Some(cwd) = &p.cwd {
        put(row, cols.cwd, &**cwd);
    }
    if let Some(ids) = p.ids {
        put(row, cols.uid, ids.uid);
        put(row, cols.euid, ids.euid);
        put(row, cols.gid, ids.gid);
        put(row, cols.egid, ids.egid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_constraints() {
        let mut ctx = QueryContext::new();
        assert!(wanted_pids(&ctx).is_none());
        ctx.add_constraint("pid", crate::context::Op::Eq, "42");
        ctx.add_constraint("pid", crate::context::Op::Eq, " 7 ");
        ctx.add_constraint("pid", crate::context::Op::Eq, "8.0");
        ctx.add_constraint("pid", crate::context::Op::Eq, "abc");
        ctx.add_constraint("pid", crate::context::Op::Eq, "-1");
        assert_eq!(wanted_pids(&ctx), Some(vec![7, 8, 42]));
    }
}
