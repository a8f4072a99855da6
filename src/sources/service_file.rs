//! D-Bus `.service` activation files: the key-file parser and the `Exec`
//! splitter, as dbus-daemon reads them.
//!
//! A service file names what a bus runs when a client asks for a name, so
//! both the file table and the bus-children table need to read it exactly as
//! the daemon does. dbus-daemon's reader (`bus/desktop-file.c`) is the
//! reference: `#` comments, blank lines, `[Group]` headers, `Key=Value` with
//! whitespace around `=` dropped, the *first* of duplicate keys kept. The
//! daemon refuses a file with a malformed line; we parse on and list the
//! problems instead, because a hunter wants to see the file either way.
//! `Exec` is split into argv by the shell-like rules of `_dbus_shell_parse_argv`
//! (`dbus/dbus-shell.c`, a copy of GLib's `g_shell_parse_argv`).
use rustix::fs::OFlags;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// dbus-daemon's own limit on a service file is larger, but no real one comes
/// near this; a bigger file is read up to the cap and flagged.
pub const MAX_SERVICE_FILE_BYTES: u64 = 64 * 1024;

pub const GROUP: &str = "D-BUS Service";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceFile {
    pub name: Option<String>,
    pub exec: Option<String>,
    pub user: Option<String>,
    pub systemd_service: Option<String>,
    pub assumed_apparmor_label: Option<String>,
    /// Whether a `[D-BUS Service]` group was present at all.
    pub has_group: bool,
    /// Lines dbus-daemon would reject, or oddities worth a hunter's eye.
    pub problems: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a regular file")]
    NotRegular { path: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error("Exec is empty")]
    Empty,
    #[error("Exec has an unterminated {0} quote")]
    Unterminated(char),
    #[error("Exec ends with a lone backslash")]
    TrailingBackslash,
}

/// dbus accepts keys of ASCII letters, digits and `-`, with an optional
/// `[locale]` suffix.
fn valid_key(key: &str) -> bool {
    let base = match key.split_once('[') {
        Some((base, loc)) => {
            if !loc.ends_with(']') || loc.len() < 2 {
                return false;
            }
            base
        }
        None => key,
    };
    !base.is_empty() && base.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Parses the bytes of a service file. Never fails: what cannot be read as
/// dbus-daemon would is recorded in `problems`.
pub fn parse(bytes: &[u8]) -> ServiceFile {
    let mut out = ServiceFile::default();
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => std::borrow::Cow::Borrowed(t),
        Err(_) => {
            out.problems
                .push("not valid UTF-8 (dbus-daemon refuses the file)".into());
            String::from_utf8_lossy(bytes)
        }
    };
    let mut group: Option<String> = None;
    let mut seen_groups = Vec::new();
    for (idx, raw) in text.split('\n').enumerate() {
        let lineno = idx + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let Some(name) = rest.trim_end().strip_suffix(']') else {
                out.problems
                    .push(format!("line {lineno}: group header without `]`"));
                continue;
            };
            if seen_groups.iter().any(|g| g == name) {
                out.problems
                    .push(format!("line {lineno}: group [{name}] repeated"));
            }
            seen_groups.push(name.to_string());
            if name == GROUP {
                out.has_group = true;
            }
            group = Some(name.to_string());
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            out.problems.push(format!(
                "line {lineno}: neither comment, group nor key=value"
            ));
            continue;
        };
        let key = key.trim();
        let value = value.trim_start();
        if !valid_key(key) {
            out.problems
                .push(format!("line {lineno}: invalid key {key:?}"));
            continue;
        }
        match group.as_deref() {
            None => {
                out.problems
                    .push(format!("line {lineno}: key {key} before any group"));
                continue;
            }
            Some(GROUP) => {}
            Some(_) => continue,
        }
        let slot = match key {
            "Name" => &mut out.name,
            "Exec" => &mut out.exec,
            "User" => &mut out.user,
            "SystemdService" => &mut out.systemd_service,
            "AssumedAppArmorLabel" => &mut out.assumed_apparmor_label,
            _ => continue,
        };
        if slot.is_some() {
            out.problems.push(format!(
                "line {lineno}: duplicate key {key}; the first one is used"
            ));
        } else {
            *slot = Some(value.to_string());
        }
    }
    if !out.has_group {
        out.problems.push(format!("no [{GROUP}] group"));
    }
    out
}

/// Reads and parses one service file without following a symlink, without
/// blocking on a FIFO, and at most [`MAX_SERVICE_FILE_BYTES`] of it.
pub fn read(path: &Path) -> Result<ServiceFile, ServiceFileError> {
    let io = |source| ServiceFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .map_err(io)?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err(ServiceFileError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    let mut buf = Vec::new();
    file.take(MAX_SERVICE_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    let truncated = buf.len() as u64 > MAX_SERVICE_FILE_BYTES;
    buf.truncate(MAX_SERVICE_FILE_BYTES as usize);
    let mut parsed = parse(&buf);
    if truncated {
        parsed.problems.push(format!(
            "larger than {MAX_SERVICE_FILE_BYTES} bytes; read up to that"
        ));
    }
    Ok(parsed)
}

/// Splits an `Exec` value into argv as dbus-daemon does before it execs:
/// blanks separate words; `'…'` is literal; inside `"…"` a backslash escapes
/// only `"`, `\`, `` ` ``, `$` and newline; outside quotes a backslash
/// escapes any character and backslash-newline vanishes; `#` at the start of
/// a word comments out the rest of the line.
pub fn split_exec(exec: &str) -> Result<Vec<String>, ExecError> {
    let mut argv = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = exec.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if let Some(word) = cur.take() {
                    argv.push(word);
                }
            }
            '#' if cur.is_none() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(next) => cur.get_or_insert_with(String::new).push(next),
                None => return Err(ExecError::TrailingBackslash),
            },
            '\'' => {
                let word = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(ExecError::Unterminated('\'')),
                    }
                }
            }
            '"' => {
                let word = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.peek().copied() {
                            Some('\n') => {
                                chars.next();
                            }
                            Some(e @ ('"' | '\\' | '`' | '$')) => {
                                chars.next();
                                word.push(e);
                            }
                            _ => word.push('\\'),
                        },
                        Some(c) => word.push(c),
                        None => return Err(ExecError::Unterminated('"')),
                    }
                }
            }
            other => cur.get_or_insert_with(String::new).push(other),
        }
    }
    if let Some(word) = cur {
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

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_a_plain_file() {
        let f = parse(
            b"# planted\n\n[D-BUS Service]\nName=org.example.X\nExec=/tmp/x.sh a b\nUser=root\nSystemdService=x.service\nAssumedAppArmorLabel=unconfined\n",
        );
        assert_eq!(f.name.as_deref(), Some("org.example.X"));
        assert_eq!(f.exec.as_deref(), Some("/tmp/x.sh a b"));
        assert_eq!(f.user.as_deref(), Some("root"));
        assert_eq!(f.systemd_service.as_deref(), Some("x.service"));
        assert_eq!(f.assumed_apparmor_label.as_deref(), Some("unconfined"));
        assert!(f.has_group);
        assert!(f.problems.is_empty(), "{:?}", f.problems);
    }

    #[test]
    fn whitespace_duplicates_other_groups_and_crlf() {
        let f = parse(
            b"  # indented comment\r\n[Other]\r\nExec=/nope\r\n[D-BUS Service]\r\nName = org.a\r\nExec  =   /bin/x  y\r\nExec=/bin/second\r\n",
        );
        assert_eq!(f.name.as_deref(), Some("org.a"));
        assert_eq!(
            f.exec.as_deref(),
            Some("/bin/x  y"),
            "first key wins, other group ignored"
        );
        assert!(f.problems.iter().any(|p| p.contains("duplicate key Exec")));
    }

    #[test]
    fn malformed_lines_are_problems_not_failures() {
        let f = parse(b"Name=early\n[D-BUS Service\ngarbage line\nBad Key=1\n[D-BUS Service]\nName=n\nName[fr]=m\n");
        assert_eq!(f.name.as_deref(), Some("n"));
        assert!(f.problems.iter().any(|p| p.contains("before any group")));
        assert!(f.problems.iter().any(|p| p.contains("without `]`")));
        assert!(f.problems.iter().any(|p| p.contains("neither comment")));
        assert!(f.problems.iter().any(|p| p.contains("invalid key")));
        assert_eq!(f.problems.len(), 4, "{:?}", f.problems);
        let f = parse(b"\xff\xfe[D-BUS Service]\n");
        assert!(f.problems.iter().any(|p| p.contains("UTF-8")));
        let f = parse(b"");
        assert!(!f.has_group);
        assert!(f.problems.iter().any(|p| p.contains("no [D-BUS Service]")));
    }

    #[test]
    fn exec_quoting() {
        assert_eq!(
            split_exec("/tmp/x.sh a b").unwrap(),
            v(&["/tmp/x.sh", "a", "b"])
        );
        assert_eq!(split_exec("  /bin/x\t a  ").unwrap(), v(&["/bin/x", "a"]));
        assert_eq!(
            split_exec("/bin/x 'a b' \"c d\"").unwrap(),
            v(&["/bin/x", "a b", "c d"])
        );
        assert_eq!(
            split_exec(r#"/bin/x "a\"b" "a\nb" "\$x""#).unwrap(),
            v(&["/bin/x", "a\"b", "a\\nb", "$x"])
        );
        assert_eq!(
            split_exec(r"/bin/x a\ b \'c").unwrap(),
            v(&["/bin/x", "a b", "'c"])
        );
        assert_eq!(split_exec(r"/bin/x 'a\b'").unwrap(), v(&["/bin/x", "a\\b"]));
        assert_eq!(split_exec("/bin/x ''").unwrap(), v(&["/bin/x", ""]));
        assert_eq!(
            split_exec("/bin/x a'b'\"c\"d").unwrap(),
            v(&["/bin/x", "abcd"])
        );
        assert_eq!(
            split_exec("/bin/x a#b # comment").unwrap(),
            v(&["/bin/x", "a#b"])
        );
        assert_eq!(split_exec("/bin/x a\\\nb").unwrap(), v(&["/bin/x", "ab"]));
    }

    #[test]
    fn exec_errors() {
        assert_eq!(split_exec(""), Err(ExecError::Empty));
        assert_eq!(split_exec("   # only a comment"), Err(ExecError::Empty));
        assert_eq!(split_exec("/bin/x 'a"), Err(ExecError::Unterminated('\'')));
        assert_eq!(split_exec("/bin/x \"a"), Err(ExecError::Unterminated('"')));
        assert_eq!(split_exec("/bin/x \\"), Err(ExecError::TrailingBackslash));
    }

    #[test]
    fn read_is_safe() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.service");
        std::fs::write(&p, "[D-BUS Service]\nName=a\nExec=/bin/a\n").unwrap();
        assert_eq!(read(&p).unwrap().name.as_deref(), Some("a"));
        let link = dir.path().join("l.service");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(
            matches!(read(&link), Err(ServiceFileError::Io { .. })),
            "symlinks are not followed"
        );
        assert!(matches!(
            read(dir.path()),
            Err(ServiceFileError::NotRegular { .. })
        ));
        let fifo = dir.path().join("f.service");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        assert!(
            matches!(read(&fifo), Err(ServiceFileError::NotRegular { .. })),
            "a FIFO never blocks"
        );
        let big = dir.path().join("big.service");
        let mut body = b"[D-BUS Service]\nName=big\n".to_vec();
        body.resize(200 * 1024, b'#');
        std::fs::write(&big, body).unwrap();
        let f = read(&big).unwrap();
        assert_eq!(f.name.as_deref(), Some("big"));
        assert!(f.problems.iter().any(|p| p.contains("larger than")));
    }
}
