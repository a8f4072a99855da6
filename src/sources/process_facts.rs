//! What one process is, as `/proc` shows it at one moment: the facts every
//! table of processes shows the same way (program name, executable,
//! command line, working directory, ids, state, start time, hash of the
//! executable). The snapshot tables read them at query time
//! ([`ProcessFacts::read`]); the process collector reads them the moment a
//! process execs and keeps them in its event. Turning them into columns is
//! `tables::process_columns`, the one place that does.
//!
//! The collector buffers these facts by the thousand, so they are kept
//! compact: strings boxed to their length, and the command line in one
//! string ([`Args`]) rather than a string per argument.
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
    pub name: Option<Box<str>>,
    /// The executable; `None` when its link cannot be read.
    pub path: Option<Box<str>>,
    /// The command line; `None` when it was never read (the process was
    /// gone), as opposed to an empty one.
    pub args: Option<Args>,
    pub cwd: Option<Box<str>>,
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
            name: Some(name.into()),
            path: exe.path.map(String::into_boxed_str),
            args: Some(Args::new(&args)),
            cwd: cwd.map(String::into_boxed_str),
            ids,
            state: Some(stat.state),
            on_disk: Some(exe.on_disk),
            start_time: boot.map(|b| b + stat.starttime / ticks.max(1)),
            exe_sha256: hash.then(|| sha256_exe(proc, pid)),
        };
        Ok(Read { facts, stat })
    }

    /// The command line's arguments, none when unknown.
    pub fn arg_list(&self) -> Vec<String> {
        self.args.as_ref().map(Args::to_vec).unwrap_or_default()
    }
}

/// A command line in one allocation: its arguments joined by NUL, which no
/// argument holds (the kernel separates them with it, and
/// `sources::proc` splits there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    joined: Box<str>,
    /// Kept apart so that no arguments and one empty argument differ.
    count: u32,
}

impl Args {
    pub fn new(args: &[String]) -> Args {
        Args {
            joined: args.join("\0").into(),
            count: u32::try_from(args.len()).unwrap_or(u32::MAX),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let any = self.count > 0;
        self.joined.split('\0').filter(move |_| any)
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The command line as `cmdline` shows it: arguments joined by spaces.
    pub fn join(&self, sep: &str) -> String {
        self.joined.replace('\0', sep)
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }

    /// Bytes held on the heap.
    pub fn heap_len(&self) -> usize {
        self.joined.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_keep_every_argument_and_how_many() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for list in [
            v(&[]),
            v(&[""]),
            v(&["a", "", "b c"]),
            v(&["/bin/false", "x"]),
        ] {
            let args = Args::new(&list);
            assert_eq!(args.to_vec(), list);
            assert_eq!(args.len(), list.len());
            assert_eq!(args.join(" "), list.join(" "));
        }
        assert_ne!(Args::new(&v(&[])), Args::new(&v(&[""])));
    }
}
