//! What one process is, as `/proc` shows it at one moment: the facts every
//! table of processes shows the same way (program name, executable,
//! command line, working directory, ids, state, start time, hash of the
//! executable). The snapshot tables read them at query time
//! ([`ProcessFacts::read`]); the process collector reads them the moment a
//! process execs and keeps them in its event. Turning them into columns is
//! `tables::process_columns`, the one place that does.
use crate::sources::bus_daemon;
use crate::sources::lineage::sha256_exe;
use crate::sources::proc::{Ids, Proc, ProcError, Stat};

/// The facts of one process. `None` is "not known": not read, or not
/// readable without the process having vanished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessFacts {
    pub pid: u32,
    /// The program's name: the kernel's comm, widened from the executable
    /// or `argv[0]` where comm cut it short (`bus_daemon::full_name`).
    pub name: Option<String>,
    /// The executable; `None` when its link cannot be read.
    pub path: Option<String>,
    /// The command line; `None` when it was never read (the process was
    /// gone), as opposed to an empty one.
    pub args: Option<Vec<String>>,
    pub cwd: Option<String>,
    pub ids: Option<Ids>,
    /// The state letter of `stat` (`R`, `S`, `Z`, …).
    pub state: Option<char>,
    /// As osquery's `processes.on_disk`: 1 present, 0 deleted, -1 unknown.
    pub on_disk: Option<i32>,
    /// Unix seconds.
    pub start_time: Option<u64>,
    /// `Some` when the hash was asked for, holding `None` when the
    /// executable could not be hashed.
    pub exe_sha256: Option<Option<String>>,
}

/// A live process read in full: its facts, and the `stat` they came from
/// (parent, session, start ticks) for the attribution a table adds.
#[derive(Debug, Clone)]
pub struct Read {
    pub facts: ProcessFacts,
    pub stat: Stat,
}

impl ProcessFacts {
    /// Reads a live process. `Err` only when it vanished (or its stat,
    /// command line or executable link cannot be read at all); a working
    /// directory or ids that cannot be read are left unknown. `boot` is
    /// the boot time (unix seconds) for `start_time`; `hash` asks for the
    /// executable's SHA-256.
    pub fn read(
        proc: &Proc,
        pid: u32,
        boot: Option<u64>,
        ticks: u64,
        hash: bool,
    ) -> Result<Read, ProcError> {
        let stat = proc.stat(pid)?;
        let args = proc.cmdline(pid)?;
        let exe = proc.exe(pid)?;
        let name = bus_daemon::full_name(
            &stat.comm,
            exe.path
                .as_deref()
                .into_iter()
                .chain(args.iter().take(2).map(String::as_str)),
        );
        let cwd = match proc.cwd(pid) {
            Ok(cwd) => Some(cwd),
            Err(e) if e.is_vanished() => return Err(e),
            Err(_) => None,
        };
        let ids = match proc.ids(pid) {
            Ok(ids) => Some(ids),
            Err(e) if e.is_vanished() => return Err(e),
            Err(_) => None,
        };
        let facts = ProcessFacts {
            pid,
            name: Some(name),
            path: exe.path,
            args: Some(args),
            cwd,
            ids,
            state: Some(stat.state),
            on_disk: Some(exe.on_disk),
            start_time: boot.map(|b| b + stat.starttime / ticks.max(1)),
            exe_sha256: hash.then(|| sha256_exe(proc, pid)),
        };
        Ok(Read { facts, stat })
    }

    /// The command line, empty when unknown.
    pub fn args(&self) -> &[String] {
        self.args.as_deref().unwrap_or_default()
    }
}
