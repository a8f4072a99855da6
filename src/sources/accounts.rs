//! The passwd and group databases, read as files under a root.
//!
//! NSS (via libc or the `uzers` crate) only answers for the live host; a
//! mounted image or container rootfs (`--root`) has nothing but its
//! `/etc/passwd` and `/etc/group` files, so those are parsed here. The
//! format is seven (passwd) or four (group) colon-separated fields a line;
//! lines that do not fit are skipped and counted, never fatal. The files
//! are read through `sources::fs_safe` (confined to the root, regular files
//! only, capped): an image's `etc/passwd` may be a FIFO or a link to the
//! host's files.
use crate::sources::fs_safe::{FsError, Root};
use std::path::Path;

/// The account databases are small; anything past this is not a real one.
const MAX_DB_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub username: String,
    pub uid: u32,
    pub gid: u32,
    pub description: String,
    pub directory: String,
    pub shell: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub groupname: String,
    pub gid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// Parsed entries plus how many lines could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    pub entries: Vec<T>,
    pub skipped_lines: usize,
}

impl<T> Default for Parsed<T> {
    fn default() -> Self {
        Parsed {
            entries: Vec::new(),
            skipped_lines: 0,
        }
    }
}

fn meaningful_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
}

pub fn parse_passwd(bytes: &[u8]) -> Parsed<Account> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Parsed::default();
    for line in meaningful_lines(&text) {
        let f: Vec<&str> = line.split(':').collect();
        // NIS compat entries (`+`, `-name`) carry no local account.
        if f.len() != 7 || f[0].is_empty() || f[0].starts_with(['+', '-']) {
            out.skipped_lines += 1;
            continue;
        }
        match (f[2].parse::<u32>(), f[3].parse::<u32>()) {
            (Ok(uid), Ok(gid)) => out.entries.push(Account {
                username: f[0].to_string(),
                uid,
                gid,
                description: f[4].to_string(),
                directory: f[5].to_string(),
                shell: f[6].to_string(),
            }),
            _ => out.skipped_lines += 1,
        }
    }
    out
}

pub fn parse_group(bytes: &[u8]) -> Parsed<Group> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Parsed::default();
    for line in meaningful_lines(&text) {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() != 4 || f[0].is_empty() || f[0].starts_with(['+', '-']) {
            out.skipped_lines += 1;
            continue;
        }
        match f[2].parse::<u32>() {
            Ok(gid) => out.entries.push(Group {
                groupname: f[0].to_string(),
                gid,
            }),
            Err(_) => out.skipped_lines += 1,
        }
    }
    out
}

/// Reads `inner` (`/etc/passwd`, `/etc/group`) under `root`: symlinks
/// resolve inside the root, and only a regular file is opened.
fn read_capped(root: &Path, inner: &str) -> Result<Vec<u8>, AccountsError> {
    Ok(Root::open(root)?.read_regular(Path::new(inner), MAX_DB_BYTES)?)
}

/// `/etc/passwd` under `root`.
pub fn read_passwd(root: &Path) -> Result<Parsed<Account>, AccountsError> {
    Ok(parse_passwd(&read_capped(root, "/etc/passwd")?))
}

/// `/etc/group` under `root`.
pub fn read_group(root: &Path) -> Result<Parsed<Group>, AccountsError> {
    Ok(parse_group(&read_capped(root, "/etc/group")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_and_skips_junk() {
        let text = b"root:x:0:0:root:/root:/bin/bash\n\
# comment\n\
\n\
svc:x:998:997:Service, with comma:/var/lib/svc:/usr/sbin/nologin\r\n\
broken line\n\
+nisuser::::::\n\
big:x:4294967294:4294967294::/nonexistent:/bin/false\n\
neg:x:-1:0::/:/bin/sh\n";
        let p = parse_passwd(text);
        assert_eq!(p.entries.len(), 3);
        assert_eq!(p.skipped_lines, 3);
        assert_eq!(p.entries[1].directory, "/var/lib/svc");
        assert_eq!(p.entries[1].description, "Service, with comma");
        assert_eq!(p.entries[1].shell, "/usr/sbin/nologin");
        assert_eq!(p.entries[2].uid, 4294967294);
    }

    #[test]
    fn parses_group() {
        let p = parse_group(b"root:x:0:\nhunters:x:1500:alice,bob\nbad:x:zz:\n");
        assert_eq!(
            p.entries,
            vec![
                Group {
                    groupname: "root".into(),
                    gid: 0
                },
                Group {
                    groupname: "hunters".into(),
                    gid: 1500
                },
            ]
        );
        assert_eq!(p.skipped_lines, 1);
    }

    #[test]
    fn invalid_utf8_survives() {
        let p = parse_passwd(b"caf\xe9:x:1000:1000::/home/caf\xe9:/bin/sh\n");
        assert_eq!(p.entries.len(), 1);
        assert!(p.entries[0].username.starts_with("caf"));
    }

    /// Found while hardening: passwd and group were opened with
    /// `File::open` under the root, so an image whose `etc/passwd` is a
    /// FIFO hung the `users` query forever, and an absolute symlink there
    /// read the host's file.
    #[test]
    fn a_fifo_or_escaping_link_as_passwd_never_blocks_or_escapes() {
        let tmp = tempfile::tempdir().unwrap();
        let etc = tmp.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            etc.join("passwd"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let e = read_passwd(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        // `/etc/group` inside the root means the root's own, which is the
        // link itself: a loop, never the host's /etc/group.
        std::os::unix::fs::symlink("/etc/group", etc.join("group")).unwrap();
        assert!(read_group(tmp.path()).is_err());
        std::fs::remove_file(etc.join("group")).unwrap();
        std::fs::write(tmp.path().join("g"), "wheel:x:10:\n").unwrap();
        std::os::unix::fs::symlink("/g", etc.join("group")).unwrap();
        assert_eq!(
            read_group(tmp.path()).unwrap().entries[0].groupname,
            "wheel"
        );
    }
}
