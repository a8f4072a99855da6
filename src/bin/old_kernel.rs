//! `old-kernel`: runs a command on this kernel as if it were an older one,
//! so tests can prove that every kernel feature the product uses has a
//! fallback. A development and CI tool only: it is never packaged (the
//! `.deb` and `.rpm` list their assets one by one, and this binary is not
//! among them).
//!
//! ```text
//! old-kernel [--kernel VERSION] [--profile VERSION] [--deny NAME,NAME...]
//!            [--errno NAME=ERRNO ...] [--print] -- CMD [ARGS...]
//! ```
//!
//! It installs seccomp filters, then execs `CMD` in the same process (no
//! fork): the filters are inherited by `CMD` and everything it starts, and
//! cannot be removed by them.
//!
//! - `--kernel 4.18` (also `4.18.0-553.el8.x86_64`): every system call of
//!   [`SYSCALLS`] introduced after that version answers `ENOSYS`, which is
//!   what a kernel that lacks it answers; and every flag of [`FLAGS`] newer
//!   than it makes its call answer `EINVAL`, which is what an older kernel
//!   answers for a flag it does not know (`fanotify_init` with
//!   `FAN_REPORT_FID` before 5.1, say).
//! - `--profile 5.4`: what a container's seccomp profile written for 5.4
//!   does on a newer kernel — every call of [`SYSCALLS`] newer than 5.4
//!   answers `EPERM` (Docker's default profile before 20.10 did, for
//!   `openat2`, `faccessat2`, `clone3` and the rest); flags are left alone.
//!   It wins over `--kernel` for the same call, as a profile runs before the
//!   kernel sees the call.
//! - `--deny openat2,statx`: those calls answer `ENOSYS`, whatever the
//!   version.
//! - `--errno getdents64=EIO` (repeatable): that call always fails with that
//!   errno (a name from [`ERRNOS`] or a number), to make a source fail on
//!   purpose; `--errno openat2=EPERM` is what old container seccomp profiles
//!   answer for calls they do not know. An `--errno` rule replaces every
//!   other rule for the same call.
//! - `--print`: writes the rules, one a line, to stderr; with no `CMD` it
//!   exits after that.
//!
//! What it cannot express: flags inside a structure a call receives by
//! pointer (seccomp sees only the pointer), such as `openat2`'s
//! `RESOLVE_CACHED` (5.12) or `statx` masks. Those need no harness: a kernel
//! without `openat2` or `statx` refuses the whole call, which this does.
//!
//! The version table is x86_64's (the numbers at which each call appeared
//! there); on aarch64 and riscv64 the same names are filtered, but a few
//! calls came to those architectures later than the table says.
//!
//! Rules are written as seccompiler's JSON filter document and compiled by
//! it: its per-architecture syscall table (which turns names into numbers)
//! is reachable only through that front end, and using it keeps this file
//! free of hand-copied syscall numbers.

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use std::str::FromStr;

/// A kernel version, major and minor (the patch level and any distribution
/// suffix are ignored: no system call ever appeared in a stable update).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Version {
    major: u32,
    minor: u32,
}

const fn v(major: u32, minor: u32) -> Version {
    Version { major, minor }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
enum ParseError {
    #[error("{0:?} is not a kernel version (MAJOR.MINOR, e.g. 4.18 or 5.4.0-150-generic)")]
    Version(String),
    #[error("{0:?} is not NAME=ERRNO (e.g. getdents64=EIO or openat2=1)")]
    ErrnoRule(String),
    #[error("{0:?} is not an errno name of this tool's list nor a number in 1..=4095")]
    Errno(String),
    #[error("{0:?} is not a system call name")]
    Syscall(String),
}

impl FromStr for Version {
    type Err = ParseError;

    /// `MAJOR.MINOR`, then anything after a `.`, `-` or `+` (`uname -r`
    /// output is accepted as it is).
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = || ParseError::Version(s.to_string());
        let (major, rest) = s.split_once('.').ok_or_else(bad)?;
        let minor_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (minor, tail) = rest.split_at(minor_end);
        if !(tail.is_empty() || tail.starts_with(['.', '-', '+'])) {
            return Err(bad());
        }
        let num = |t: &str| -> Result<u32, ParseError> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse().map_err(|_| bad())
        };
        Ok(v(num(major)?, num(minor)?))
    }
}

/// System calls newer than Linux 3.10 (the oldest kernel osquery supports),
/// with the version that added each on x86_64 (syscalls(2), each call's
/// own man page, and the kernel's `syscall_64.tbl` history).
const SYSCALLS: &[(&str, Version)] = &[
    ("sched_setattr", v(3, 14)),
    ("sched_getattr", v(3, 14)),
    ("renameat2", v(3, 15)),
    ("seccomp", v(3, 17)),
    ("getrandom", v(3, 17)),
    ("memfd_create", v(3, 17)),
    ("kexec_file_load", v(3, 17)),
    ("bpf", v(3, 18)),
    ("execveat", v(3, 19)),
    ("userfaultfd", v(4, 3)),
    ("membarrier", v(4, 3)),
    ("mlock2", v(4, 4)),
    ("copy_file_range", v(4, 5)),
    ("preadv2", v(4, 6)),
    ("pwritev2", v(4, 6)),
    ("pkey_mprotect", v(4, 9)),
    ("pkey_alloc", v(4, 9)),
    ("pkey_free", v(4, 9)),
    ("statx", v(4, 11)),
    ("io_pgetevents", v(4, 18)),
    ("rseq", v(4, 18)),
    ("pidfd_send_signal", v(5, 1)),
    ("io_uring_setup", v(5, 1)),
    ("io_uring_enter", v(5, 1)),
    ("io_uring_register", v(5, 1)),
    ("open_tree", v(5, 2)),
    ("move_mount", v(5, 2)),
    ("fsopen", v(5, 2)),
    ("fsconfig", v(5, 2)),
    ("fsmount", v(5, 2)),
    ("fspick", v(5, 2)),
    ("pidfd_open", v(5, 3)),
    ("clone3", v(5, 3)),
    ("openat2", v(5, 6)),
    ("pidfd_getfd", v(5, 6)),
    ("faccessat2", v(5, 8)),
    ("close_range", v(5, 9)),
    ("process_madvise", v(5, 10)),
    ("epoll_pwait2", v(5, 11)),
    ("mount_setattr", v(5, 12)),
    ("landlock_create_ruleset", v(5, 13)),
    ("landlock_add_rule", v(5, 13)),
    ("landlock_restrict_self", v(5, 13)),
    ("memfd_secret", v(5, 14)),
    ("quotactl_fd", v(5, 14)),
    ("process_mrelease", v(5, 15)),
    ("futex_waitv", v(5, 16)),
    ("set_mempolicy_home_node", v(5, 17)),
    ("cachestat", v(6, 5)),
    ("fchmodat2", v(6, 6)),
    ("map_shadow_stack", v(6, 6)),
    ("futex_wake", v(6, 7)),
    ("futex_wait", v(6, 7)),
    ("futex_requeue", v(6, 7)),
    ("statmount", v(6, 8)),
    ("listmount", v(6, 8)),
    ("lsm_get_self_attr", v(6, 8)),
    ("lsm_set_self_attr", v(6, 8)),
    ("lsm_list_modules", v(6, 8)),
    ("mseal", v(6, 10)),
];

/// Width of a filtered argument as the x86_64 ABI passes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Width {
    /// `unsigned int`: seccomp compares the low 32 bits.
    Dword,
    /// `__u64` (a 64-bit register on x86_64).
    Qword,
}

/// One flag bit of one argument that an older kernel refuses with `EINVAL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Flag {
    syscall: &'static str,
    arg: u8,
    width: Width,
    name: &'static str,
    bit: u64,
    since: Version,
}

const fn flag(
    syscall: &'static str,
    arg: u8,
    width: Width,
    name: &'static str,
    bit: u64,
    since: Version,
) -> Flag {
    Flag {
        syscall,
        arg,
        width,
        name,
        bit,
        since,
    }
}

/// fanotify flags newer than 3.10 (fanotify_init(2), fanotify_mark(2),
/// `include/uapi/linux/fanotify.h`). A kernel that predates a flag checks
/// the argument against the flags it knows and answers `EINVAL`.
/// `fanotify_init(flags, ...)`: argument 0; `fanotify_mark(fd, flags, mask,
/// ...)`: flags is argument 1, the 64-bit mask argument 2.
#[rustfmt::skip]
const FLAGS: &[Flag] = &[
    flag("fanotify_init", 0, Width::Dword, "FAN_ENABLE_AUDIT", 0x40, v(4, 15)),
    flag("fanotify_init", 0, Width::Dword, "FAN_REPORT_TID", 0x100, v(4, 20)),
    flag("fanotify_init", 0, Width::Dword, "FAN_REPORT_FID", 0x200, v(5, 1)),
    flag("fanotify_init", 0, Width::Dword, "FAN_REPORT_DIR_FID", 0x400, v(5, 9)),
    flag("fanotify_init", 0, Width::Dword, "FAN_REPORT_NAME", 0x800, v(5, 9)),
    flag("fanotify_init", 0, Width::Dword, "FAN_REPORT_PIDFD", 0x80, v(5, 15)),
    flag("fanotify_init", 0, Width::Dword, "FAN_REPORT_TARGET_FID", 0x1000, v(5, 17)),
    flag("fanotify_mark", 1, Width::Dword, "FAN_MARK_FILESYSTEM", 0x100, v(4, 20)),
    flag("fanotify_mark", 1, Width::Dword, "FAN_MARK_EVICTABLE", 0x200, v(5, 19)),
    flag("fanotify_mark", 1, Width::Dword, "FAN_MARK_IGNORE", 0x400, v(6, 0)),
    flag("fanotify_mark", 2, Width::Qword, "FAN_OPEN_EXEC", 0x1000, v(5, 0)),
    flag("fanotify_mark", 2, Width::Qword, "FAN_OPEN_EXEC_PERM", 0x4_0000, v(5, 0)),
    flag("fanotify_mark", 2, Width::Qword, "FAN_ATTRIB", 0x4, v(5, 1)),
    flag("fanotify_mark", 2, Width::Qword, "FAN_MOVED_FROM", 0x40, v(5, 1)),
    flag("fanotify_mark", 2, Width::Qword, "FAN_MOVED_TO", 0x80, v(5, 1)),
    flag("fanotify_mark", 2, Width::Qword, "FAN_CREATE", 0x100, v(5, 1)),
    flag("fanotify_mark", 2, Width::Qword, "FAN_DELETE", 0x200, v(5, 1)),
    flag("fanotify_mark", 2, Width::Qword, "FAN_DELETE_SELF", 0x400, v(5, 1)),
    flag("fanotify_mark", 2, Width::Qword, "FAN_MOVE_SELF", 0x800, v(5, 1)),
    flag("fanotify_mark", 2, Width::Qword, "FAN_FS_ERROR", 0x8000, v(5, 16)),
    flag("fanotify_mark", 2, Width::Qword, "FAN_RENAME", 0x1000_0000, v(5, 17)),
];

/// Errno names `--errno` accepts (any number in 1..=4095 is accepted too).
const ERRNOS: &[(&str, i32)] = &[
    ("EPERM", libc::EPERM),
    ("ENOENT", libc::ENOENT),
    ("EINTR", libc::EINTR),
    ("EIO", libc::EIO),
    ("ENXIO", libc::ENXIO),
    ("E2BIG", libc::E2BIG),
    ("EBADF", libc::EBADF),
    ("EAGAIN", libc::EAGAIN),
    ("ENOMEM", libc::ENOMEM),
    ("EACCES", libc::EACCES),
    ("EFAULT", libc::EFAULT),
    ("EBUSY", libc::EBUSY),
    ("EXDEV", libc::EXDEV),
    ("ENODEV", libc::ENODEV),
    ("ENOTDIR", libc::ENOTDIR),
    ("EISDIR", libc::EISDIR),
    ("EINVAL", libc::EINVAL),
    ("ENFILE", libc::ENFILE),
    ("EMFILE", libc::EMFILE),
    ("ENOSPC", libc::ENOSPC),
    ("EROFS", libc::EROFS),
    ("ENAMETOOLONG", libc::ENAMETOOLONG),
    ("ENOSYS", libc::ENOSYS),
    ("ELOOP", libc::ELOOP),
    ("EOVERFLOW", libc::EOVERFLOW),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
    ("ENOTSUP", libc::ENOTSUP),
    ("ESTALE", libc::ESTALE),
    ("ETIMEDOUT", libc::ETIMEDOUT),
];

fn parse_errno(s: &str) -> Result<i32, ParseError> {
    if let Some(&(_, n)) = ERRNOS.iter().find(|(name, _)| name.eq_ignore_ascii_case(s)) {
        return Ok(n);
    }
    match s.parse::<i32>() {
        // Seccomp's SECCOMP_RET_DATA holds 16 bits, but the kernel treats
        // only -4095..-1 as error returns.
        Ok(n) if (1..=4095).contains(&n) => Ok(n),
        _ => Err(ParseError::Errno(s.to_string())),
    }
}

fn errno_name(n: i32) -> String {
    ERRNOS
        .iter()
        .find(|&&(_, m)| m == n)
        .map_or_else(|| n.to_string(), |(name, _)| (*name).to_string())
}

/// A system call name as seccompiler's table spells them: lower case,
/// digits and `_`. Whether the name exists is checked when the filter is
/// compiled (only seccompiler's table knows).
fn parse_syscall(s: &str) -> Result<String, ParseError> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(s.to_string())
    } else {
        Err(ParseError::Syscall(s.to_string()))
    }
}

/// `NAME=ERRNO`.
fn parse_errno_rule(s: &str) -> Result<(String, i32), ParseError> {
    let (name, errno) = s
        .split_once('=')
        .ok_or_else(|| ParseError::ErrnoRule(s.to_string()))?;
    Ok((parse_syscall(name)?, parse_errno(errno)?))
}

/// When a rule matches its call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum When {
    Always,
    /// Argument `arg` (of `width`) has `bit` set.
    BitSet {
        arg: u8,
        width: Width,
        bit: u64,
    },
}

/// One selected rule: `syscall` fails with `errno` `when` matches.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    syscall: String,
    when: When,
    errno: i32,
    /// Why, for `--print`: "since 5.6", "FAN_REPORT_FID since 5.1",
    /// "--deny", "--errno".
    why: String,
}

/// What the command line asks for.
#[derive(Debug, Default)]
struct Ask {
    kernel: Option<Version>,
    profile: Option<Version>,
    deny: Vec<String>,
    errnos: Vec<(String, i32)>,
}

/// The rules `ask` selects, in a stable order (by call, then flag).
///
/// Invariants: a call with an `Always` rule has no other rule (an
/// unconditional answer leaves nothing for a flag rule to decide; an
/// `--errno` wins over the version table and `--deny`); a flag rule is
/// selected only when its flag is newer than the asked kernel.
fn select(ask: &Ask) -> Vec<Rule> {
    let mut by_call: BTreeMap<String, Vec<Rule>> = BTreeMap::new();
    if let Some(k) = ask.kernel {
        for &(name, since) in SYSCALLS.iter().filter(|(_, since)| *since > k) {
            by_call.insert(
                name.to_string(),
                vec![Rule {
                    syscall: name.to_string(),
                    when: When::Always,
                    errno: libc::ENOSYS,
                    why: format!("since {since}"),
                }],
            );
        }
        for f in FLAGS.iter().filter(|f| f.since > k) {
            let rules = by_call.entry(f.syscall.to_string()).or_default();
            if rules.iter().any(|r| r.when == When::Always) {
                continue;
            }
            rules.push(Rule {
                syscall: f.syscall.to_string(),
                when: When::BitSet {
                    arg: f.arg,
                    width: f.width,
                    bit: f.bit,
                },
                errno: libc::EINVAL,
                why: format!("{} since {}", f.name, f.since),
            });
        }
    }
    // A container's seccomp profile runs before the kernel looks at the
    // call, so its EPERM wins over the kernel's ENOSYS.
    if let Some(p) = ask.profile {
        for &(name, since) in SYSCALLS.iter().filter(|(_, since)| *since > p) {
            by_call.insert(
                name.to_string(),
                vec![Rule {
                    syscall: name.to_string(),
                    when: When::Always,
                    errno: libc::EPERM,
                    why: format!("since {since}, unknown to a profile for {p}"),
                }],
            );
        }
    }
    for name in &ask.deny {
        by_call.insert(
            name.clone(),
            vec![Rule {
                syscall: name.clone(),
                when: When::Always,
                errno: libc::ENOSYS,
                why: "--deny".to_string(),
            }],
        );
    }
    for (name, errno) in &ask.errnos {
        by_call.insert(
            name.clone(),
            vec![Rule {
                syscall: name.clone(),
                when: When::Always,
                errno: *errno,
                why: "--errno".to_string(),
            }],
        );
    }
    by_call.into_values().flatten().collect()
}

/// The errnos of `rules`, one filter each (a filter has a single match
/// action), in the order they are installed.
///
/// Invariant: the filter that refuses `seccomp(2)` itself (kernels before
/// 3.17) is installed last, since seccompiler installs each filter with
/// that call.
fn install_order(rules: &[Rule]) -> Vec<i32> {
    let mut errnos: Vec<i32> = rules.iter().map(|r| r.errno).collect();
    errnos.sort_unstable();
    errnos.dedup();
    if let Some(last) = rules.iter().find(|r| r.syscall == "seccomp") {
        errnos.retain(|&e| e != last.errno);
        errnos.push(last.errno);
    }
    errnos
}

fn filter_key(errno: i32) -> String {
    format!("errno-{errno}")
}

/// seccompiler's JSON document for `rules`: one filter per errno, keyed
/// [`filter_key`], each allowing every call it does not match.
fn filter_document(rules: &[Rule]) -> serde_json::Value {
    let mut filters: BTreeMap<i32, Vec<serde_json::Value>> = BTreeMap::new();
    for r in rules {
        let entry = match r.when {
            When::Always => serde_json::json!({ "syscall": r.syscall, "comment": r.why }),
            When::BitSet { arg, width, bit } => serde_json::json!({
                "syscall": r.syscall,
                "comment": r.why,
                // (arg & bit) == bit: this one bit is set. A rule per bit,
                // as rules of one call are OR'ed and a mask of several bits
                // would need all of them.
                "args": [{
                    "index": arg,
                    "type": match width { Width::Dword => "dword", Width::Qword => "qword" },
                    "op": { "masked_eq": bit },
                    "val": bit,
                }],
            }),
        };
        filters.entry(r.errno).or_default().push(entry);
    }
    let mut doc = serde_json::Map::new();
    for (errno, entries) in filters {
        doc.insert(
            filter_key(errno),
            serde_json::json!({
                "mismatch_action": "allow",
                "filter_action": { "errno": errno },
                "filter": entries,
            }),
        );
    }
    serde_json::Value::Object(doc)
}

/// Compiles `rules` for this machine's architecture, in
/// [`install_order`].
fn compile(rules: &[Rule]) -> Result<Vec<seccompiler::BpfProgram>> {
    let arch = seccompiler::TargetArch::try_from(std::env::consts::ARCH)
        .with_context(|| format!("seccompiler has no filters for {}", std::env::consts::ARCH))?;
    let doc = serde_json::to_vec(&filter_document(rules)).context("filter document")?;
    let mut programs = seccompiler::compile_from_json(doc.as_slice(), arch)
        .context("compiling the seccomp filters")?;
    install_order(rules)
        .into_iter()
        .map(|errno| {
            programs
                .remove(&filter_key(errno))
                .with_context(|| format!("no compiled filter for errno {errno}"))
        })
        .collect()
}

#[derive(Parser, Debug)]
#[command(
    name = "old-kernel",
    about = "Run a command as if on an older kernel: newer system calls answer ENOSYS, newer flags EINVAL"
)]
struct Cli {
    /// Kernel version to look like (MAJOR.MINOR; `uname -r` output works).
    #[arg(long, value_parser = |s: &str| s.parse::<Version>())]
    kernel: Option<Version>,
    /// Look like a container seccomp profile written for this kernel
    /// version: newer system calls answer EPERM (as Docker's did before
    /// 20.10); flags are left to the kernel.
    #[arg(long, value_parser = |s: &str| s.parse::<Version>())]
    profile: Option<Version>,
    /// System calls that answer ENOSYS whatever the version, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = |s: &str| parse_syscall(s))]
    deny: Vec<String>,
    /// NAME=ERRNO: that call always fails with ERRNO (repeatable).
    #[arg(long = "errno", value_name = "NAME=ERRNO", value_parser = |s: &str| parse_errno_rule(s))]
    errnos: Vec<(String, i32)>,
    /// Write the selected rules to stderr (and exit if no command is given).
    #[arg(long)]
    print: bool,
    /// The command to exec under the filters.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

fn run(cli: Cli) -> Result<ExitCode> {
    let ask = Ask {
        kernel: cli.kernel,
        profile: cli.profile,
        deny: cli.deny,
        errnos: cli.errnos,
    };
    let rules = select(&ask);
    if cli.print {
        for r in &rules {
            let when = match r.when {
                When::Always => String::new(),
                When::BitSet { arg, bit, .. } => format!(" if arg{arg} & {bit:#x}"),
            };
            eprintln!("{}{when}: {} ({})", r.syscall, errno_name(r.errno), r.why);
        }
        if cli.command.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let Some((program, args)) = cli.command.split_first() else {
        bail!("no command given (old-kernel [OPTIONS] -- CMD [ARGS...])");
    };
    // Compiled before any filter is installed, so a bad name fails here
    // with a message rather than half-way.
    for program_bpf in compile(&rules)? {
        // Also sets no_new_privs, which an unprivileged caller needs to
        // install a filter; the filter then holds across every exec.
        seccompiler::apply_filter(&program_bpf).context("installing a seccomp filter")?;
    }
    // exec only returns on failure.
    let err = Command::new(program).args(args).exec();
    Err(err).with_context(|| format!("exec {}", program.to_string_lossy()))
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("old-kernel: {e:#}");
            // As a shell does for a command it could not run.
            ExitCode::from(127)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(rules: &[Rule]) -> Vec<&str> {
        rules.iter().map(|r| r.syscall.as_str()).collect()
    }

    fn kernel(s: &str) -> Ask {
        Ask {
            kernel: Some(s.parse().unwrap()),
            ..Ask::default()
        }
    }

    #[test]
    fn versions_parse_as_uname_prints_them() {
        assert_eq!("4.18".parse(), Ok(v(4, 18)));
        assert_eq!("3.10.0-1160.el7.x86_64".parse(), Ok(v(3, 10)));
        assert_eq!("5.4.0-150-generic".parse(), Ok(v(5, 4)));
        assert_eq!("6.1+deb12".parse(), Ok(v(6, 1)));
        assert_eq!("6.18.44-fc-v1045".parse(), Ok(v(6, 18)));
        for bad in [
            "", "4", "4.", ".18", "4.x", "4.18x", "four.18", "-4.18", "4.-1",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?}");
        }
        // Numeric, not lexical, order: 4.9 is older than 4.18.
        assert!(v(4, 9) < v(4, 18) && v(4, 18) < v(5, 0));
    }

    #[test]
    fn the_table_holds_the_versions_the_man_pages_give() {
        let since = |name: &str| {
            SYSCALLS
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("{name} missing"))
                .1
        };
        for (name, want) in [
            ("openat2", v(5, 6)),
            ("statx", v(4, 11)),
            ("clone3", v(5, 3)),
            ("pidfd_open", v(5, 3)),
            ("pidfd_send_signal", v(5, 1)),
            ("pidfd_getfd", v(5, 6)),
            ("close_range", v(5, 9)),
            ("faccessat2", v(5, 8)),
            ("epoll_pwait2", v(5, 11)),
            ("io_uring_setup", v(5, 1)),
            ("rseq", v(4, 18)),
            ("copy_file_range", v(4, 5)),
            ("preadv2", v(4, 6)),
            ("pwritev2", v(4, 6)),
            ("pkey_alloc", v(4, 9)),
            ("membarrier", v(4, 3)),
            ("mlock2", v(4, 4)),
            ("userfaultfd", v(4, 3)),
            ("getrandom", v(3, 17)),
            ("memfd_create", v(3, 17)),
            ("bpf", v(3, 18)),
            ("execveat", v(3, 19)),
            ("renameat2", v(3, 15)),
            ("seccomp", v(3, 17)),
            ("sched_setattr", v(3, 14)),
            ("landlock_create_ruleset", v(5, 13)),
            ("futex_waitv", v(5, 16)),
            ("fchmodat2", v(6, 6)),
            ("mount_setattr", v(5, 12)),
            ("open_tree", v(5, 2)),
            ("fspick", v(5, 2)),
            ("process_madvise", v(5, 10)),
        ] {
            assert_eq!(since(name), want, "{name}");
        }
        let mut seen = std::collections::HashSet::new();
        for (name, since) in SYSCALLS {
            assert!(seen.insert(name), "{name} twice");
            assert!(
                *since > v(3, 10),
                "{name}: 3.10 is the oldest kernel supported"
            );
        }
    }

    #[test]
    fn every_table_name_is_known_to_seccompiler() {
        // Compiling the rules of the oldest kernel selects every call and
        // every flag, so any misspelt name fails here.
        let rules = select(&kernel("3.10"));
        assert_eq!(
            rules.iter().filter(|r| r.when == When::Always).count(),
            SYSCALLS.len()
        );
        assert_eq!(rules.len(), SYSCALLS.len() + FLAGS.len());
        compile(&rules).expect("every name compiles");
        assert!(compile(&select(&Ask {
            deny: vec!["no_such_call".into()],
            ..Ask::default()
        }))
        .is_err());
    }

    #[test]
    fn a_4_18_kernel_lacks_what_came_after_it_and_keeps_what_came_before() {
        let rules = select(&kernel("4.18"));
        let got = names(&rules);
        for newer in [
            "openat2",
            "statx",
            "clone3",
            "pidfd_open",
            "close_range",
            "io_uring_setup",
        ] {
            if newer == "statx" {
                // 4.11 <= 4.18: RHEL 8 has statx.
                assert!(!got.contains(&newer), "{newer}");
            } else {
                assert!(got.contains(&newer), "{newer}");
            }
        }
        for older in [
            "rseq",
            "io_pgetevents",
            "getrandom",
            "copy_file_range",
            "memfd_create",
        ] {
            assert!(!got.contains(&older), "{older}");
        }
        let always = |name: &str| {
            rules
                .iter()
                .any(|r| r.syscall == name && r.when == When::Always && r.errno == libc::ENOSYS)
        };
        assert!(always("openat2") && always("clone3"));
    }

    #[test]
    fn each_newer_fanotify_flag_is_its_own_einval_rule() {
        let rules = select(&kernel("4.18"));
        let bits = |call: &str, arg: u8| -> Vec<u64> {
            rules
                .iter()
                .filter(|r| r.syscall == call)
                .map(|r| match r.when {
                    When::BitSet { arg: a, bit, .. } if a == arg => {
                        assert_eq!(r.errno, libc::EINVAL);
                        bit
                    }
                    When::BitSet { .. } => 0,
                    When::Always => panic!("{call} refused whole"),
                })
                .filter(|&b| b != 0)
                .collect()
        };
        let init = bits("fanotify_init", 0);
        for b in [0x100, 0x200, 0x400, 0x800, 0x80, 0x1000] {
            assert!(init.contains(&b), "fanotify_init {b:#x}: {init:x?}");
        }
        // FAN_ENABLE_AUDIT is 4.15: a 4.18 kernel knows it.
        assert!(!init.contains(&0x40));
        let mask = bits("fanotify_mark", 2);
        for b in [
            0x1000, 0x4_0000, 0x4, 0x40, 0x80, 0x100, 0x200, 0x400, 0x800,
        ] {
            assert!(mask.contains(&b), "fanotify_mark {b:#x}: {mask:x?}");
        }
        assert!(bits("fanotify_mark", 1).contains(&0x100)); // FAN_MARK_FILESYSTEM

        // 5.1 has FID reporting and the directory events, not names.
        let r51 = select(&kernel("5.1"));
        let init51: Vec<u64> = r51
            .iter()
            .filter(|r| r.syscall == "fanotify_init")
            .filter_map(|r| match r.when {
                When::BitSet { bit, .. } => Some(bit),
                When::Always => None,
            })
            .collect();
        assert!(init51.contains(&0x400) && init51.contains(&0x800));
        assert!(!init51.contains(&0x200));
        assert!(!r51.iter().any(|r| r.syscall == "fanotify_mark"
            && r.when
                == When::BitSet {
                    arg: 2,
                    width: Width::Qword,
                    bit: 0x100
                }));
    }

    #[test]
    fn the_filter_refusing_seccomp_itself_is_installed_last() {
        let mut ask = kernel("3.10");
        // EIO sorts first, ENOSYS (which holds `seccomp`) must still be last.
        ask.errnos = vec![
            ("getdents64".into(), libc::EIO),
            ("openat2".into(), libc::EPERM),
        ];
        assert_eq!(
            install_order(&select(&ask)),
            [libc::EPERM, libc::EIO, libc::EINVAL, libc::ENOSYS]
        );
        // `--errno seccomp=EPERM` moves it to that filter.
        ask.errnos.push(("seccomp".into(), libc::EPERM));
        assert_eq!(
            install_order(&select(&ask)),
            [libc::EIO, libc::EINVAL, libc::ENOSYS, libc::EPERM]
        );
        assert_eq!(compile(&select(&ask)).unwrap().len(), 4);
    }

    #[test]
    fn an_old_container_profile_answers_eperm_over_the_kernel() {
        let ask = Ask {
            kernel: Some(v(4, 18)),
            profile: Some(v(5, 4)),
            ..Ask::default()
        };
        let rules = select(&ask);
        let errno_of = |name: &str| {
            rules
                .iter()
                .find(|r| r.syscall == name && r.when == When::Always)
                .map(|r| r.errno)
        };
        assert_eq!(errno_of("openat2"), Some(libc::EPERM));
        assert_eq!(errno_of("faccessat2"), Some(libc::EPERM));
        assert_eq!(
            errno_of("clone3"),
            Some(libc::ENOSYS),
            "known to a 5.4 profile"
        );
        assert_eq!(errno_of("io_uring_setup"), Some(libc::ENOSYS));
        assert_eq!(errno_of("rseq"), None);
        assert!(rules
            .iter()
            .any(|r| r.syscall == "fanotify_init" && r.errno == libc::EINVAL));
        // On its own a profile leaves the flags to this kernel.
        let alone = select(&Ask {
            profile: Some(v(5, 4)),
            ..Ask::default()
        });
        assert!(alone
            .iter()
            .all(|r| r.errno == libc::EPERM && r.when == When::Always));
        assert!(alone.iter().any(|r| r.syscall == "openat2"));
    }

    #[test]
    fn a_current_kernel_selects_nothing() {
        assert!(select(&kernel("99.0")).is_empty());
        assert!(select(&Ask::default()).is_empty());
    }

    #[test]
    fn errno_rules_replace_the_table_and_deny_adds_to_it() {
        let ask = Ask {
            kernel: Some(v(4, 18)),
            profile: None,
            deny: vec!["statx".into()],
            errnos: vec![
                ("openat2".into(), libc::EPERM),
                ("fanotify_init".into(), libc::EPERM),
                ("getdents64".into(), libc::EIO),
            ],
        };
        let rules = select(&ask);
        let of =
            |name: &str| -> Vec<&Rule> { rules.iter().filter(|r| r.syscall == name).collect() };
        assert_eq!(of("openat2").len(), 1);
        assert_eq!(of("openat2")[0].errno, libc::EPERM);
        // The unconditional EPERM leaves no flag rule behind it.
        assert_eq!(of("fanotify_init").len(), 1);
        assert_eq!(of("fanotify_init")[0].when, When::Always);
        assert_eq!(of("statx")[0].errno, libc::ENOSYS);
        assert_eq!(of("getdents64")[0].errno, libc::EIO);
        // One filter per errno.
        let doc = filter_document(&rules);
        let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["errno-1", "errno-5", "errno-22", "errno-38"]);
        assert_eq!(compile(&rules).unwrap().len(), 4);
    }

    #[test]
    fn command_line_values_parse_or_say_why_not() {
        assert_eq!(
            parse_errno_rule("getdents64=EIO"),
            Ok(("getdents64".into(), libc::EIO))
        );
        assert_eq!(parse_errno_rule("openat2=eperm"), Ok(("openat2".into(), 1)));
        assert_eq!(parse_errno_rule("statx=38"), Ok(("statx".into(), 38)));
        for bad in [
            "openat2",
            "openat2=",
            "=EIO",
            "openat2=EWHAT",
            "openat2=0",
            "openat2=5000",
            "Open=EIO",
        ] {
            assert!(parse_errno_rule(bad).is_err(), "{bad:?}");
        }
        let cli = Cli::try_parse_from([
            "old-kernel",
            "--kernel",
            "4.18",
            "--deny",
            "openat2,statx",
            "--errno",
            "getdents64=EIO",
            "--",
            "ls",
            "-l",
        ])
        .unwrap();
        assert_eq!(cli.kernel, Some(v(4, 18)));
        assert_eq!(cli.deny, ["openat2", "statx"]);
        assert_eq!(cli.errnos, [("getdents64".to_string(), libc::EIO)]);
        assert_eq!(cli.command, ["ls", "-l"]);
        assert!(Cli::try_parse_from(["old-kernel", "--kernel", "four"]).is_err());
    }
}
