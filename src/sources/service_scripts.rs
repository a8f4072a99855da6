//! Which of a bus's services planted a process that runs another program
//! than any `Exec=`, when no collector saw it happen (a one-shot query,
//! right after a restart, a dead box read with `--proc`): the services
//! whose program is a small script, read as text and never executed, and
//! which of them name the process's executable or command.
//!
//! A payload such as `nohup setsid /usr/local/bin/x --listen &` is written
//! out in the script that starts it; a script that builds the name at run
//! time names nothing and attributes nothing. Only the one best-matching
//! script attributes a process; several equally good ones are reported as
//! candidates, never as an answer. The first line's `#!` interpreter is
//! left out of the match, or every shell script would name every shell.
//!
//! Bounds: scripts of at most [`MAX_SCRIPT_BYTES`] (larger ones are no
//! "small script" and are skipped), at most [`MAX_SCRIPTS`] distinct files
//! read per query, each once (kept by path in [`Scripts`]), read through
//! `fs_safe::Root` (confined to the root, no symlink followed, regular
//! files only, never blocking).
use crate::sources::fs_safe::{self, Root};
use crate::sources::launch;
use crate::sources::lineage::Service;
use std::collections::HashMap;
use std::path::Path;

/// A service program larger than this is not looked at as a script.
pub const MAX_SCRIPT_BYTES: u64 = 64 * 1024;
/// Distinct script files read per query, at most (16 MiB of text at worst).
pub const MAX_SCRIPTS: usize = 256;

/// How plainly a script names a process; higher is plainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Naming {
    /// The executable's or command's file name, as a word.
    FileName = 1,
    /// The executable's or command's full path.
    Path = 2,
    /// The whole command line, as the process shows it.
    Command = 3,
}

/// What the scripts of a bus say of one process.
#[derive(Debug, Clone)]
pub enum Attribution<'s> {
    /// Exactly one script names it best.
    One(&'s Service),
    /// Several name it equally well, in the bus's search order.
    Several(Vec<&'s Service>),
    None,
}

/// The scripts read in one query, by path inside the root (`None`: not a
/// small script, or unreadable).
#[derive(Default)]
pub struct Scripts {
    read: HashMap<String, Option<Vec<u8>>>,
}

impl Scripts {
    /// The body of the script a service runs (`Exec=` itself, or the
    /// script an interpreter in it is given), its `#!` line left out.
    fn body(&mut self, root: &Root, service: &Service) -> Option<&[u8]> {
        let analysed = launch::analyse(&service.argv);
        let path = analysed.script.unwrap_or(analysed.program);
        if !path.starts_with('/') {
            return None;
        }
        if !self.read.contains_key(&path) {
            if self.read.len() >= MAX_SCRIPTS {
                return None;
            }
            let body = read_script(root, Path::new(&path));
            self.read.insert(path.clone(), body);
        }
        self.read.get(&path)?.as_deref()
    }

    /// Which of `services` (in the bus's search order) names the process
    /// with executable `exe` and command line `args`.
    pub fn attribute<'s>(
        &mut self,
        root: &Root,
        services: &'s [Service],
        exe: Option<&str>,
        args: &[String],
    ) -> Attribution<'s> {
        let mut best: Option<Naming> = None;
        let mut found: Vec<&Service> = Vec::new();
        for s in services {
            let Some(naming) = self.body(root, s).and_then(|b| names(b, exe, args)) else {
                continue;
            };
            match best {
                Some(b) if naming < b => {}
                Some(b) if naming == b => found.push(s),
                _ => {
                    best = Some(naming);
                    found = vec![s];
                }
            }
        }
        match found.len() {
            0 => Attribution::None,
            1 => Attribution::One(found[0]),
            _ => Attribution::Several(found),
        }
    }
}

/// A small script's text after its `#!` line; `None` for anything else
/// (no `#!`, larger than [`MAX_SCRIPT_BYTES`], not a regular file).
fn read_script(root: &Root, inner: &Path) -> Option<Vec<u8>> {
    let file = root.open_regular(inner).ok()?;
    let (bytes, truncated) = fs_safe::read_capped(file, MAX_SCRIPT_BYTES, inner).ok()?;
    if truncated || !bytes.starts_with(b"#!") {
        return None;
    }
    let body = memchr::memchr(b'\n', &bytes).map_or(&[][..], |n| &bytes[n + 1..]);
    Some(body.to_vec())
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/')
}

/// Whether `needle` occurs in `hay` as a whole word (not inside a longer
/// name or path).
fn has_word(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return false;
    }
    memchr::memmem::find_iter(hay, needle).any(|at| {
        let before = at.checked_sub(1).map(|i| hay[i]);
        let after = hay.get(at + needle.len()).copied();
        !before.is_some_and(is_word_byte) && !after.is_some_and(is_word_byte)
    })
}

/// How plainly a script body names a process, if it does.
pub fn names(body: &[u8], exe: Option<&str>, args: &[String]) -> Option<Naming> {
    let command = args.join(" ");
    // A one-word command line is no plainer than its path.
    if args.len() > 1 && memchr::memmem::find(body, command.as_bytes()).is_some() {
        return Some(Naming::Command);
    }
    let paths = exe
        .into_iter()
        .chain(args.first().map(String::as_str))
        .filter(|p| p.starts_with('/'));
    if paths.clone().any(|p| has_word(body, p.as_bytes())) {
        return Some(Naming::Path);
    }
    let file_names = exe
        .into_iter()
        .chain(args.first().map(String::as_str))
        .filter_map(|p| p.rsplit('/').next())
        .filter(|n| !n.is_empty());
    for n in file_names {
        // As a word of its own: `x` in `/opt/x` or `./x` counts, `x` in
        // `/opt/xy` does not.
        let hit = memchr::memmem::find_iter(body, n.as_bytes()).any(|at| {
            let before = at.checked_sub(1).map(|i| body[i]);
            let after = body.get(at + n.len()).copied();
            !before.is_some_and(|b| b != b'/' && is_word_byte(b))
                && !after.is_some_and(|b| b != b'/' && is_word_byte(b))
        });
        if hit {
            return Some(Naming::FileName);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn naming_prefers_the_plainest() {
        let body =
            b"cp /bin/sleep /tmp/p/keeper\nnohup setsid /tmp/p/keeper 300 >/dev/null 2>&1 &\n";
        let args = v(&["/tmp/p/keeper", "300"]);
        assert_eq!(
            names(body, Some("/tmp/p/keeper"), &args),
            Some(Naming::Command)
        );
        assert_eq!(
            names(body, Some("/tmp/p/keeper"), &v(&["/tmp/p/keeper", "9"])),
            Some(Naming::Path)
        );
        assert_eq!(
            names(
                b"cd /tmp/p && ./keeper &\n",
                Some("/tmp/p/keeper"),
                &v(&["keeper"])
            ),
            Some(Naming::FileName)
        );
        // A longer name, or the name inside another path, is not it.
        assert_eq!(
            names(
                b"/tmp/p/keepers &\n",
                Some("/tmp/p/keeper"),
                &v(&["keeper"])
            ),
            None
        );
        assert_eq!(
            names(
                b"p=kee; exec \"/tmp/p/${p}per\"\n",
                Some("/tmp/p/keeper"),
                &args
            ),
            None
        );
    }
}
