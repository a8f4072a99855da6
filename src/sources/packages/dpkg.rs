//! dpkg's database: `info/<package>.list` (the paths a package owns),
//! `info/<package>.md5sums` and the `Conffiles:` of `status` (their
//! recorded digests). The package name is the `.list`'s stem, as
//! `dpkg -S` shows it; its install time is the `.list`'s mtime.
use super::filter::{normalized, Filter};
use super::{Format, Owners, Package, INSTALL_SLACK_SECS};
use crate::sources::fs_safe::{self, FileId, FsError, Root};
use crate::sources::hash::Algo;
use rustix::fd::AsFd;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// One `<package>.list` (and `.md5sums`) per installed package.
pub(super) const DPKG_INFO: &str = "/var/lib/dpkg/info";
/// Every package's paragraph, `Conffiles:` included.
pub(super) const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// A `.list` of a real package is at most a few MiB (the kernel's modules).
const MAX_LIST_BYTES: u64 = 64 * 1024 * 1024;

/// dpkg's status file: every installed package's paragraph, conffiles
/// included; a large desktop has a few MiB.
const MAX_STATUS_BYTES: u64 = 64 * 1024 * 1024;

/// Reads every `*.list` of dpkg's info directory into `owners`, keeping
/// the lines `filter` wants. The package name is the file's stem
/// (`libfoo:amd64` for a multi-arch one, as `dpkg -S` shows it).
pub(super) fn load(root: &Root, owners: &mut Owners, filter: Filter) -> Result<(), FsError> {
    let info = Path::new(DPKG_INFO);
    let dir = match root.open_dir(info) {
        Ok(d) => d,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    owners.has_database = true;
    if filter.nothing() {
        return Ok(());
    }
    let (lists, listing_error) = list_entries(&dir, info);
    if let Some(e) = listing_error {
        owners.fail(&e, e.path());
    }
    let dir_dev = rustix::fs::fstat(&dir)
        .ok()
        .map(|st| (rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev)));
    let mut index: HashMap<Package, u32> = owners.packages.iter().cloned().zip(0..).collect();
    let mut by_name: HashSet<String> = HashSet::new();
    let mut buf = Vec::new();
    for list in lists {
        let name = OsStr::from_bytes(&list.name);
        let shown = info.join(name);
        let listed = dir_dev
            .filter(|_| list.regular)
            .map(|dev| FileId { dev, ino: list.ino });
        let (mut file, size) = match open_list(dir.as_fd(), name, &shown, listed) {
            Ok(f) => f,
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                owners.fail(&e, &shown);
                continue;
            }
        };
        let kept = match kept_lines(&mut file, size, &shown, filter, &mut buf) {
            Ok(k) => k,
            Err(e) => {
                owners.fail(&e, &shown);
                continue;
            }
        };
        let name = list.name;
        let stem = String::from_utf8_lossy(&name[..name.len() - 5]).into_owned();
        // dpkg rewrites the .list on every install and upgrade of the
        // package: its mtime is the install time dpkg does not record
        // anywhere else.
        let list_stat = rustix::fs::fstat(&file).ok();
        let installed = list_stat.as_ref().map(|st| st.st_mtime);
        // dpkg moves the digest list into place and writes the .list in one
        // unpack, so their mtimes and their ctimes are seconds apart; a copy
        // of the whole database (a container layer, a restore) moves both
        // ctimes together. A digest list whose mtime or ctime is later than
        // the .list's was changed since, and is not what dpkg recorded.
        let sums = format!("{stem}.md5sums");
        let sums_shown = info.join(&sums);
        let sums_file = if filter.wants_digests() {
            match fs_safe::open_entry_regular(dir.as_fd(), OsStr::new(&sums), &sums_shown) {
                Ok(f) => Some(f),
                Err(e) if e.is_not_found() => None,
                Err(e) => {
                    owners.fail(&e, &sums_shown);
                    None
                }
            }
        } else {
            None
        };
        let digests_rewritten = sums_file.as_ref().and_then(|f| {
            let sums = rustix::fs::fstat(f).ok()?;
            let list = list_stat.as_ref()?;
            let later = |a: i64, b: i64| a > b.saturating_add(INSTALL_SLACK_SECS);
            (later(sums.st_mtime, list.st_mtime) || later(sums.st_ctime, list.st_ctime))
                .then(|| sums.st_mtime.max(sums.st_ctime))
        });
        if !kept.is_empty() {
            let pkg = owners.package_interned(
                Package {
                    name: stem.clone(),
                    format: Format::Dpkg,
                    installed,
                    digests_rewritten,
                },
                &mut index,
            );
            for path in kept {
                owners.add_normalized(pkg, path);
            }
        }
        if !filter.wants_digests() {
            continue;
        }
        by_name.insert(stem);
        if let Some(f) = sums_file {
            match fs_safe::read_capped(f, MAX_LIST_BYTES, &sums_shown) {
                Ok((bytes, _)) => load_md5sums(&bytes, owners, filter),
                Err(e) => owners.fail(&e, &sums_shown),
            }
        }
    }
    if !filter.wants_digests() {
        return Ok(());
    }
    match root.read_regular(Path::new(DPKG_STATUS), MAX_STATUS_BYTES) {
        Ok(bytes) => load_conffiles(&bytes, &by_name, owners, filter),
        Err(e) if e.is_not_found() => {}
        Err(e) => owners.fail(&e, Path::new(DPKG_STATUS)),
    }
    Ok(())
}

/// One `*.list` entry of dpkg's info directory, as the listing gave it.
struct ListEntry {
    name: Vec<u8>,
    /// `d_type` said regular file (`DT_UNKNOWN` and the rest are probed).
    regular: bool,
    ino: u64,
}

/// The `*.list` entries of the open info directory, sorted by name, read
/// with `getdents64` on its own descriptor (no reopen), keeping each
/// entry's type and inode: on the filesystems dpkg lives on the listing
/// already says which are regular files, so those need no `statx` probe
/// before their open. A listing that fails part way keeps what it read,
/// with the error.
fn list_entries(dir: &rustix::fd::OwnedFd, info: &Path) -> (Vec<ListEntry>, Option<FsError>) {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 32 * 1024];
    let mut reader = rustix::fs::RawDir::new(dir, &mut buf);
    let mut out = Vec::new();
    let mut error = None;
    loop {
        match reader.next() {
            None => break,
            Some(Ok(e)) => {
                let name = e.file_name().to_bytes();
                if name.len() > 5 && name.ends_with(b".list") {
                    out.push(ListEntry {
                        name: name.to_vec(),
                        regular: e.file_type() == rustix::fs::FileType::RegularFile,
                        ino: e.ino(),
                    });
                }
            }
            Some(Err(rustix::io::Errno::INTR)) => {}
            Some(Err(e)) => {
                error = Some(FsError::Read {
                    path: info.to_path_buf(),
                    source: e.into(),
                });
                break;
            }
        }
    }
    out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    (out, error)
}

/// Opens one `.list` for reading, with the size its `fstat` showed when
/// known. An entry the listing showed as the regular file `listed` is
/// opened as stated (`O_NOFOLLOW|O_NONBLOCK`, then `fstat` must show that
/// same regular file before anything is read, as
/// [`fs_safe::open_entry_as_stated`] says); any other entry, or one that
/// changed since the listing (a package upgraded meanwhile, a file mounted
/// over the entry), gets the `statx` probe of
/// [`fs_safe::open_entry_regular`], and so the same answer or error as
/// before the listing was trusted. A device node swapped in after the
/// listing is opened and closed unread (the window `open_entry_as_stated`
/// describes, longer here: from the listing, in a directory only root
/// writes on a live host).
fn open_list(
    dir: rustix::fd::BorrowedFd<'_>,
    name: &OsStr,
    shown: &Path,
    listed: Option<FileId>,
) -> Result<(std::fs::File, Option<u64>), FsError> {
    if let Some(id) = listed {
        match fs_safe::open_entry_as_stated(dir, name, shown, id) {
            Ok(o) => return Ok((o.file, Some(o.size))),
            Err(FsError::Changed { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    fs_safe::open_entry_regular(dir, name, shown).map(|f| (f, None))
}

/// How much of a `.list` is held at a time: the largest (a kernel's
/// modules, a cloud SDK) are several MiB, of which a scan for a few paths
/// keeps a line or two.
const LIST_CHUNK: usize = 64 * 1024;

/// The lines of a `.list` (its first [`MAX_LIST_BYTES`]) that `filter`
/// keeps, [`normalized`], read a chunk at a time into `buf` (reused from
/// one file to the next). With the size `fstat` gave (`known`), a read
/// that stops short exactly there is the end, so a small file costs one
/// `read`; lines are found with `memchr` (SIMD), and a line of no wanted
/// length is turned away before it is hashed.
fn kept_lines(
    file: &mut std::fs::File,
    known: Option<u64>,
    shown: &Path,
    filter: Filter,
    buf: &mut Vec<u8>,
) -> Result<Vec<Box<[u8]>>, FsError> {
    use std::io::Read;
    let mut file = file.take(MAX_LIST_BYTES);
    if buf.len() < LIST_CHUNK {
        buf.resize(LIST_CHUNK, 0);
    }
    let mut held = 0;
    let mut total: u64 = 0;
    let mut kept = Vec::new();
    let mut keep = |line: &[u8]| {
        if let Some(p) = normalized(line).filter(|p| filter.owner(p)) {
            kept.push(Box::<[u8]>::from(p));
        }
    };
    loop {
        if held == buf.len() {
            // One line longer than the chunk.
            buf.resize(buf.len() * 2, 0);
        }
        let room = buf.len() - held;
        let n = match file.read(&mut buf[held..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(FsError::Read {
                    path: shown.to_path_buf(),
                    source,
                })
            }
        };
        total += n as u64;
        let end = held + n;
        let mut start = 0;
        for i in memchr::memchr_iter(b'\n', &buf[held..end]) {
            keep(&buf[start..held + i]);
            start = held + i + 1;
        }
        buf.copy_within(start..end, 0);
        held = end - start;
        if n < room && known == Some(total) {
            break;
        }
    }
    keep(&buf[..held]);
    Ok(kept)
}

/// `info/<pkg>.md5sums`: `<md5>  <path without the leading />` a line.
fn load_md5sums(bytes: &[u8], owners: &mut Owners, filter: Filter) {
    for line in bytes.split(|b| *b == b'\n') {
        let Some(sp) = line.iter().position(|b| *b == b' ') else {
            continue;
        };
        let (hex, rest) = line.split_at(sp);
        let rel = rest.trim_ascii_start();
        if rel.is_empty() {
            continue;
        }
        let mut path = Vec::with_capacity(rel.len() + 1);
        if !rel.starts_with(b"/") {
            path.push(b'/');
        }
        path.extend_from_slice(rel);
        if filter.digest(&path) {
            owners.add_digest(&path, Algo::Md5, hex);
        }
    }
}

/// The `Conffiles:` fields of dpkg's status file: ` <path> <md5>` lines,
/// optionally followed by `obsolete` (no longer shipped: not the package's
/// any more) or `remove-on-upgrade`. A paragraph counts only for a package
/// whose `.list` was read (`name` or `name:arch`).
fn load_conffiles(bytes: &[u8], by_name: &HashSet<String>, owners: &mut Owners, filter: Filter) {
    for para in bytes
        .split(|b| *b == b'\n')
        .collect::<Vec<_>>()
        .split(|l| l.is_empty())
    {
        let field = |key: &[u8]| {
            para.iter().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|r| r.strip_prefix(b":"))
                    .map(|v| String::from_utf8_lossy(v.trim_ascii()).into_owned())
            })
        };
        let Some(name) = field(b"Package") else {
            continue;
        };
        let arch = field(b"Architecture").unwrap_or_default();
        if !by_name.contains(&name) && !by_name.contains(&format!("{name}:{arch}")) {
            continue;
        }
        let mut in_conffiles = false;
        for line in para {
            if line.starts_with(b" ") || line.starts_with(b"\t") {
                if in_conffiles {
                    let words: Vec<&[u8]> = line
                        .split(|b| b.is_ascii_whitespace())
                        .filter(|w| !w.is_empty())
                        .collect();
                    if let [path, hex, rest @ ..] = words.as_slice() {
                        if !rest.contains(&&b"obsolete"[..]) && filter.digest(path) {
                            owners.add_digest(path, Algo::Md5, hex);
                        }
                    }
                }
            } else {
                in_conffiles = line.starts_with(b"Conffiles:");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::filter::PathSet;
    use super::super::test_files::write;
    use super::super::{load, owners_of};
    use super::*;

    #[test]
    fn dpkg_lists_merged_usr_and_shared_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        write(
            r,
            "var/lib/dpkg/info/dbus.list",
            b"/.\n/usr\n/usr/share/dbus-1/system.conf\n/lib/dbus-1/system-services/a.service\n",
        );
        write(
            r,
            "var/lib/dpkg/info/libx:amd64.list",
            b"/usr\n/usr/share/dbus-1/system.conf\n",
        );
        write(r, "var/lib/dpkg/info/dbus.md5sums", b"/usr/evil\n");
        write(r, "var/lib/dpkg/status", b"");
        let root = Root::open(r).unwrap();
        let o = load(&root);
        assert_eq!(
            o.owner(b"/usr/share/dbus-1/system.conf").unwrap(),
            "dbus, libx:amd64"
        );
        assert_eq!(
            o.owner(b"/usr/lib/dbus-1/system-services/a.service")
                .unwrap(),
            "dbus"
        );
        assert_eq!(
            o.owner(b"/lib/dbus-1/system-services/a.service").unwrap(),
            "dbus"
        );
        assert_eq!(o.owner(b"/usr/evil").unwrap(), "");
        assert_eq!(o.owner(b"/").unwrap(), "");
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            load(&Root::open(empty.path()).unwrap()).owner(b"/usr"),
            None
        );
    }

    /// Lines across chunk boundaries, one longer than a chunk and a last
    /// one without a newline are read whole.
    #[test]
    fn list_lines_are_whole_across_chunks() {
        let tmp = tempfile::tempdir().unwrap();
        let mut text = Vec::new();
        let mut lines = Vec::new();
        for i in 0..20_000 {
            lines.push(format!("/usr/share/p/file-{i}"));
        }
        lines.push(format!("/{}", "x".repeat(3 * LIST_CHUNK)));
        lines.push("/etc/last".into());
        for l in &lines {
            text.extend_from_slice(l.as_bytes());
            text.push(b'\n');
        }
        text.pop();
        let f = tmp.path().join("p.list");
        std::fs::write(&f, &text).unwrap();
        let want: Vec<Box<[u8]>> = lines.iter().map(|l| l.as_bytes().into()).collect();
        let len = text.len() as u64;
        let mut buf = Vec::new();
        // The size fstat gave, none, or one the file no longer has (grown
        // or shrunk since): every line is read either way.
        for known in [Some(len), None, Some(len / 2), Some(len + 100), Some(0)] {
            let mut file = std::fs::File::open(&f).unwrap();
            let all = kept_lines(&mut file, known, &f, Filter::All, &mut buf).unwrap();
            assert_eq!(all, want, "{known:?}");
        }
        let mut only = PathSet::default();
        for l in [&lines[3000], &lines[20_000], &lines[20_001]] {
            only.insert(l.as_bytes().into());
        }
        let none = PathSet::default();
        let filter = Filter::Only {
            owners: &only,
            digests: &none,
        };
        let mut file = std::fs::File::open(&f).unwrap();
        let some = kept_lines(&mut file, Some(len), &f, filter, &mut buf).unwrap();
        assert_eq!(
            some,
            [&want[3000], &want[20_000], &want[20_001]].map(Clone::clone)
        );
    }

    /// Entries of the info directory that are not regular files are
    /// refused as before the listing's types were trusted (a FIFO is
    /// never opened: a writer blocked on it would be released), and a
    /// regular entry that changed since the listing is still read.
    #[test]
    fn list_entries_not_regular_or_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        write(r, "var/lib/dpkg/info/ok.list", b"/etc/x\n");
        write(r, "elsewhere/evil.list", b"/etc/x\n/etc/evil\n");
        let info = r.join("var/lib/dpkg/info");
        std::os::unix::fs::symlink(r.join("elsewhere/evil.list"), info.join("evil.list")).unwrap();
        std::fs::create_dir(info.join("dir.list")).unwrap();
        let fifo = crate::sources::proc::tests::WatchedFifo::new(&info.join("fifo.list"));
        let root = Root::open(r).unwrap();
        let whole = load(&root);
        let part = owners_of(&root, [&b"/etc/x"[..], b"/etc/evil"], false);
        for o in [&whole, &*part] {
            assert_eq!(o.owner(b"/etc/x").unwrap(), "ok");
            assert_eq!(o.owner(b"/etc/evil").unwrap(), "");
            let mut errors = o.errors.clone();
            errors.sort();
            assert_eq!(errors.len(), 3, "{errors:?}");
            for (e, name) in errors.iter().zip(["dir.list", "evil.list", "fifo.list"]) {
                assert!(e.contains(name) && e.contains("not a regular file"), "{e}");
            }
        }
        fifo.assert_never_opened();

        // The listing said another inode: probed and opened anew.
        let dir = root.open_dir(Path::new(DPKG_INFO)).unwrap();
        let (lists, error) = list_entries(&dir, Path::new(DPKG_INFO));
        assert!(error.is_none());
        let ok = lists.iter().find(|l| l.name == b"ok.list").unwrap();
        assert!(ok.regular);
        let st = rustix::fs::fstat(&dir).unwrap();
        let dev = (rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev));
        let shown = Path::new("ok.list");
        let name = OsStr::new("ok.list");
        let as_listed = open_list(dir.as_fd(), name, shown, Some(FileId { dev, ino: ok.ino }));
        assert_eq!(
            as_listed.unwrap().1,
            Some(7),
            "one open, sized by its fstat"
        );
        let stale = FileId {
            dev,
            ino: ok.ino + 1,
        };
        let (mut file, size) = open_list(dir.as_fd(), name, shown, Some(stale)).unwrap();
        assert_eq!(size, None);
        let kept = kept_lines(&mut file, size, shown, Filter::All, &mut Vec::new()).unwrap();
        assert_eq!(kept, [Box::<[u8]>::from(&b"/etc/x"[..])]);
    }

    #[test]
    fn dpkg_md5sums_conffiles_and_install_time() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        write(
            r,
            "var/lib/dpkg/info/dbus.list",
            b"/etc/dbus-1/system.conf\n/usr/share/dbus-1/x.service\n/etc/old.conf\n",
        );
        write(
            r,
            "var/lib/dpkg/info/dbus.md5sums",
            b"0123456789abcdef0123456789ABCDEF  usr/share/dbus-1/x.service\n\n",
        );
        write(r, "var/lib/dpkg/info/libz:amd64.list", b"/etc/z.conf\n");
        write(
            r,
            "var/lib/dpkg/status",
            b"Package: dbus\nStatus: install ok installed\nConffiles:\n \
/etc/dbus-1/system.conf 11111111111111111111111111111111\n \
/etc/old.conf 22222222222222222222222222222222 obsolete\nDescription: x\n \
/etc/not-a-conffile 33333333333333333333333333333333\n\n\
Package: libz\nArchitecture: amd64\nConffiles:\n /etc/z.conf newconffile\n\n\
Package: gone\nConffiles:\n /etc/gone.conf 44444444444444444444444444444444\n",
        );
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
        std::fs::File::options()
            .append(true)
            .open(r.join("var/lib/dpkg/info/dbus.list"))
            .unwrap()
            .set_modified(t)
            .unwrap();
        let o = load(&Root::open(r).unwrap());
        assert!(o.errors.is_empty(), "{:?}", o.errors);
        let l = o.lookup(b"/usr/share/dbus-1/x.service").unwrap();
        assert_eq!(l.packages[0].name, "dbus");
        assert_eq!(l.packages[0].format, Format::Dpkg);
        assert_eq!(l.installed(), Some(1_600_000_000));
        assert_eq!(l.digests[0].hex, "0123456789abcdef0123456789abcdef");
        assert_eq!(l.digests[0].algo, Algo::Md5);
        let c = o.lookup(b"/etc/dbus-1/system.conf").unwrap();
        assert_eq!(c.digests[0].hex, "11111111111111111111111111111111");
        assert!(o.lookup(b"/etc/old.conf").unwrap().digests.is_empty());
        assert!(o.lookup(b"/etc/not-a-conffile").unwrap().digests.is_empty());
        assert!(o.lookup(b"/etc/z.conf").unwrap().digests.is_empty());
        assert!(o.lookup(b"/etc/gone.conf").unwrap().digests.is_empty());
    }
}
