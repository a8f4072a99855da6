//! The process columns every bus-process table shares (pid, name, path,
//! cmdline, ids, start time, hash of the executable, …), filled by one
//! function, and the `pid` constraint both read. A table of processes
//! adds its own columns beside these. Which of them a table has, and at
//! which positions, comes from its spec as its generated `PROCESS`
//! handles ([`ProcessColumns`]).
use crate::context::QueryContext;
use crate::row::{Column, Row, Value};
use crate::sources::bus_daemon;
use crate::sources::lineage::{sha256_exe, Scan};
use crate::sources::proc::{self, ProcError, Stat};
pub use crate::spec::columns::ProcessColumns;

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

/// What a row needs to know about a process beyond its columns.
pub struct Facts {
    pub stat: Stat,
    pub args: Vec<String>,
    pub exe: proc::Exe,
    pub name: String,
}

/// Fills `column` when the table has it.
fn put(row: &mut Row, column: Option<Column>, value: impl Into<Value>) {
    if let Some(c) = column {
        row.set(c, value);
    }
}

/// A row of `cols.schema` with the shared process columns its table has
/// (pid, name, path, cmdline, args_count, state, on_disk, cwd,
/// ids, start_time and, when used, exe_sha256), read fresh. `Err` only
/// when the process vanished (or its stat, cmdline or exe cannot be read
/// at all).
pub fn process_row(
    cols: &ProcessColumns,
    scan: &Scan<'_>,
    ctx: &QueryContext,
    pid: u32,
    boot: Option<u64>,
    ticks: u64,
) -> Result<(Row, Facts), ProcError> {
    let stat = scan.proc.stat(pid)?;
    let args = scan.proc.cmdline(pid)?;
    let exe = scan.proc.exe(pid)?;
    let name = bus_daemon::full_name(
        &stat.comm,
        exe.path
            .as_deref()
            .into_iter()
            .chain(args.iter().take(2).map(String::as_str)),
    );
    let mut row = Row::new(cols.schema);
    put(&mut row, cols.pid, pid);
    put(&mut row, cols.name, name.as_str());
    put(&mut row, cols.path, exe.path.clone());
    put(&mut row, cols.cmdline, args.join(" "));
    put(&mut row, cols.args_count, args.len() as i64);
    put(&mut row, cols.state, stat.state.to_string());
    put(&mut row, cols.on_disk, exe.on_disk);
    match scan.proc.cwd(pid) {
        Ok(cwd) => put(&mut row, cols.cwd, cwd),
        Err(e) if e.is_vanished() => return Err(e),
        Err(_) => {}
    }
    match scan.proc.ids(pid) {
        Ok(ids) => {
            put(&mut row, cols.uid, ids.uid);
            put(&mut row, cols.euid, ids.euid);
            put(&mut row, cols.gid, ids.gid);
            put(&mut row, cols.egid, ids.egid);
        }
        Err(e) if e.is_vanished() => return Err(e),
        Err(_) => {}
    }
    if let Some(boot) = boot {
        put(&mut row, cols.start_time, boot + stat.starttime / ticks);
    }
    if let Some(c) = cols.exe_sha256.filter(|c| ctx.uses(c)) {
        row.set(c, sha256_exe(&scan.proc, pid));
    }
    Ok((
        row,
        Facts {
            stat,
            args,
            exe,
            name,
        },
    ))
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
