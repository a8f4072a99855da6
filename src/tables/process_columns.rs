//! The process columns every bus-process table shares (pid, name, path,
//! cmdline, ids, start time, hash of the executable, …), filled by one
//! function, and the `pid` constraint both read. A table of processes
//! adds its own columns beside these.
use crate::context::QueryContext;
use crate::row::Row;
use crate::sources::bus_daemon;
use crate::sources::lineage::{sha256_exe, Scan};
use crate::sources::proc::{self, ProcError, Stat};

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

/// The process columns both bus-process tables share (pid, name, path,
/// cmdline, args_count, state, on_disk, cwd, ids, start_time and, when
/// used, exe_sha256), read fresh for the row. `Err` only when the
/// process vanished (or its stat, cmdline or exe cannot be read at all).
pub fn process_row(
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
    let mut row = Row::new();
    row.set("pid", pid)
        .set("name", name.as_str())
        .set("path", exe.path.clone())
        .set("cmdline", args.join(" "))
        .set("args_count", args.len() as i64)
        .set("state", stat.state.to_string())
        .set("on_disk", exe.on_disk);
    match scan.proc.cwd(pid) {
        Ok(cwd) => {
            row.set("cwd", cwd);
        }
        Err(e) if e.is_vanished() => return Err(e),
        Err(_) => {}
    }
    match scan.proc.ids(pid) {
        Ok(ids) => {
            row.set("uid", ids.uid)
                .set("euid", ids.euid)
                .set("gid", ids.gid)
                .set("egid", ids.egid);
        }
        Err(e) if e.is_vanished() => return Err(e),
        Err(_) => {}
    }
    if let Some(boot) = boot {
        row.set("start_time", boot + stat.starttime / ticks);
    }
    if ctx.uses("exe_sha256") {
        row.set("exe_sha256", sha256_exe(&scan.proc, pid));
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
