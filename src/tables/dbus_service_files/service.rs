//! The columns a `.service` file's keys answer: what it is named, what it
//! runs and as whom, and where `SystemdService=` hands activation. The
//! file is read once and capped; a symlink is followed inside the root, as
//! the bus follows it, a regular file is read as it was listed. The
//! program it runs is described by `exec`.
use super::exec;
use super::plan::Scan;
use super::row::{Entry, EntryError, Errors};
use super::MAX_SERVICE_BYTES;
use crate::blind;
use crate::row::{Row, Value};
use crate::sources::service_dirs::{self, ServiceDir};
use crate::sources::stat::FileKind;
use crate::sources::{fs_safe, launch, service_file, unit_files};
use crate::spec::columns::dbus_service_files as c;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Every column a regular or symlinked `.service` entry's contents answer:
/// its keys, the program `Exec=` names, the systemd unit it hands over to,
/// what the launch really runs (through `env` and interpreters), the exec
/// integrity columns for what finally runs (the unit's first `ExecStart=`
/// when there is one, else `Exec=`), and the checks of the program
/// dbus-broker would run where its reading differs. `None` when the file
/// vanished since it was listed.
pub(super) fn columns(
    scan: &mut Scan,
    entry: &Entry,
    row: &mut Row,
    errors: &mut Errors,
) -> Option<()> {
    let (exec_argv, broker_program) = key_columns(scan, entry, row, errors)?;
    let unit_argv = if scan.systemd {
        systemd_columns(scan, entry.dir, row, errors)
    } else {
        None
    };
    let Some(argv) = unit_argv.or(exec_argv) else {
        return Some(());
    };
    let launch = launch::analyse(&argv);
    if scan.launch {
        exec::launch_columns(&launch, row);
    }
    if scan.exec_integrity && !launch.program.is_empty() {
        exec::integrity_columns(scan, entry.dir, &launch.program, row, errors);
    }
    if scan.script_integrity {
        if let Some(script) = &launch.script {
            exec::script_columns(scan, entry.dir, script, row, errors);
        }
    }
    // dbus-broker's program gets the checks exec_path gets, in words.
    if let Some(program) = broker_program {
        let found = exec::describe_program(scan, entry.dir, &program, row);
        if let Some(Value::Text(d)) = row.get(c::READING_DIFFERENCE) {
            let d = format!("{d} ({program}: {found})");
            row.set(c::READING_DIFFERENCE, d);
        }
    }
    Some(())
}

/// Reads and parses a `.service` entry (a regular file as listed, a link
/// through to its target inside the root, at most [`MAX_SERVICE_BYTES`])
/// and fills the parsed-key, Exec-target and reading-difference columns.
/// `None` when the file vanished since it was listed; else the argv
/// `Exec=` splits into, and the program dbus-broker would run when it is
/// not the one dbus-daemon would and `reading_difference` is used.
fn key_columns(
    scan: &Scan,
    entry: &Entry,
    row: &mut Row,
    errors: &mut Errors,
) -> Option<(Option<Vec<String>>, Option<String>)> {
    let path = entry.path;
    let Some(bytes) = read_capped(scan, entry, errors)? else {
        return Some((None, None));
    };
    let parsed = service_file::parse(&bytes);
    let mut broker_program = None;
    if scan.used.any(&[c::READINGS_AGREE, c::READING_DIFFERENCE]) {
        let broker = service_file::parse_broker(&bytes);
        let differences =
            service_file::differences(&parsed, &broker, entry.meta.size, entry.name.as_bytes());
        row.set(c::READINGS_AGREE, differences.is_empty());
        if !differences.is_empty() && scan.used.has(c::READING_DIFFERENCE) {
            row.set(c::READING_DIFFERENCE, differences.join("; "));
            broker_program = service_file::broker_program(&parsed, &broker, entry.name.as_bytes());
        }
    }
    let parsed = match parsed {
        Ok(p) => p,
        Err(source) => {
            errors.push(EntryError::Parse {
                path: path.to_path_buf(),
                source,
            });
            return Some((None, broker_program));
        }
    };
    if !parsed.problems.is_empty() {
        errors.push(EntryError::Refused {
            path: path.to_path_buf(),
            problems: parsed.problems.clone(),
        });
    }
    let filename = entry.name.as_bytes();
    row.set(
        c::NAME_MATCHES_FILENAME,
        parsed.name.as_ref().map(|n| {
            let mut want = n.as_bytes().to_vec();
            want.extend_from_slice(b".service");
            want == filename
        }),
    );
    let argv = parsed
        .exec
        .as_ref()
        .and_then(|exec| exec_columns(scan, path, exec, row, errors));
    row.set(c::SERVICE_NAME, parsed.name)
        .set(c::EXEC, parsed.exec_as_written)
        .set(c::RUN_AS_USER, parsed.user)
        .set(c::SYSTEMD_SERVICE, parsed.systemd_service)
        .set(c::ASSUMED_APPARMOR_LABEL, parsed.assumed_apparmor_label);
    Some((argv, broker_program))
}

/// The bytes of a regular `.service` entry to parse. A file larger than
/// the cap has its first [`MAX_SERVICE_BYTES`] kept, up to the last whole line, and says
/// so in `errors`. The row's own `statx` (`meta`, which showed a regular
/// file) is the probe before the open. `None` when the file vanished since
/// it was listed; `Some(None)` when it cannot be read (the reason is in
/// `errors`).
fn read_capped(scan: &Scan, entry: &Entry, errors: &mut Errors) -> Option<Option<Vec<u8>>> {
    let Entry {
        open,
        name,
        path,
        meta,
        ..
    } = *entry;
    // The bus opens a service file by name and so follows a symlink: its
    // target is what activation reads, found here inside the root.
    let read = if meta.kind == FileKind::Symlink {
        scan.root
            .open_regular(path)
            .and_then(|f| fs_safe::read_capped(f, MAX_SERVICE_BYTES, path))
    } else {
        fs_safe::open_entry_as_stated(open.fd(), name, path, meta.id())
            .and_then(|o| o.read_capped(MAX_SERVICE_BYTES, path))
    };
    let (mut bytes, truncated) = match read {
        Ok(r) => r,
        Err(e) if e.is_not_found() && meta.kind == FileKind::Symlink => {
            errors.push(EntryError::DanglingLink {
                path: path.to_path_buf(),
            });
            return Some(None);
        }
        Err(e) if e.is_not_found() => return None,
        Err(e) => {
            blind::report_os_error(service_dirs::CANNOT_READ, &e, &fs_safe::render_path(path));
            errors.push(e);
            return Some(None);
        }
    };
    if truncated {
        let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        bytes.truncate(keep);
        errors.push(EntryError::Truncated {
            path: path.to_path_buf(),
            cap: MAX_SERVICE_BYTES,
        });
    }
    Some(Some(bytes))
}

/// `exec_path` from an `Exec=` line, and the Exec-target columns for the
/// program it names when used; the argv, when the line splits into one
/// that names a program.
fn exec_columns(
    scan: &Scan,
    path: &Path,
    exec: &str,
    row: &mut Row,
    errors: &mut Errors,
) -> Option<Vec<String>> {
    match service_file::split_exec(exec) {
        Ok(argv) => {
            let program = argv.first()?;
            row.set(c::EXEC_PATH, program.as_str());
            if program.is_empty() {
                // dbus-daemon would exec "" and fail.
                errors.push(EntryError::NoProgram {
                    path: path.to_path_buf(),
                });
                return None;
            }
            if scan.exec_target {
                exec::target_columns(scan, program, row, errors);
            }
            Some(argv)
        }
        Err(source) => {
            errors.push(EntryError::Exec {
                path: path.to_path_buf(),
                source,
            });
            None
        }
    }
}
/// Where `SystemdService=` leads: the unit file systemd would load for it
/// (system units for the system bus, the owning account's user units for
/// a session file in a home) and its effective `ExecStart=` lines, which
/// is what really runs when the bus hands activation to systemd.
///
/// Returns the argv of the unit's first `ExecStart=` (prefixes `-@+!:|`
/// stripped): what the exec integrity and launch columns describe.
fn systemd_columns(
    scan: &Scan,
    dir: &ServiceDir,
    row: &mut Row,
    errors: &mut Errors,
) -> Option<Vec<String>> {
    let Some(Value::Text(unit)) = row.get(c::SYSTEMD_SERVICE).cloned() else {
        return None;
    };
    let scope = match dir.bus {
        service_dirs::Bus::System => unit_files::Scope::System,
        service_dirs::Bus::Session => unit_files::Scope::User {
            uid: dir.owner.as_ref().map(|o| o.uid),
            home: dir.owner.as_ref().map(|o| o.home.clone()),
        },
    };
    match unit_files::resolve(scan.root, &unit, &scope) {
        Ok(Some(u)) => {
            row.set(c::SYSTEMD_UNIT_PATH, fs_safe::render_path(&u.path));
            // A masked unit runs nothing: empty, unlike NULL (no unit).
            let exec = if u.masked {
                String::new()
            } else {
                u.exec_start.join(" ; ")
            };
            row.set(c::SYSTEMD_EXEC, exec);
            if !u.masked {
                return u.exec_start.first().and_then(|l| exec_start_argv(l));
            }
        }
        Ok(None) => {}
        Err(source) => errors.push(EntryError::Unit { unit, source }),
    }
    None
}

/// The program of one `ExecStart=` line: special prefixes (`-@+!:|`, in
/// any combination) stripped, then the first word, unquoted by the same
/// rules as `Exec=`.
#[cfg(test)]
pub(super) fn exec_start_program(line: &str) -> Option<String> {
    exec_start_argv(line)?.into_iter().next()
}

/// The argv of one `ExecStart=` line, special prefixes stripped; `None`
/// when it names no program.
fn exec_start_argv(line: &str) -> Option<Vec<String>> {
    let rest = line
        .trim_start()
        .trim_start_matches(['-', '@', '+', '!', ':', '|']);
    let argv = service_file::split_exec(rest).ok()?;
    argv.first().is_some_and(|p| !p.is_empty()).then_some(argv)
}
