//! Which dpkg or rpm package owns a file, from the package databases under
//! a root.
//!
//! A service file no package ships is the first thing a persistence hunt
//! wants to see; `dpkg -S` and `rpm -qf` answer only for the live host and
//! cost a process per file. Here the databases are read as files:
//! dpkg's `var/lib/dpkg/info/*.list` (one owned path a line) and rpm's
//! `var/lib/rpm/rpmdb.sqlite` (one header blob per package, parsed for
//! `NAME`, `DIRNAMES`, `BASENAMES`, `DIRINDEXES`). Merged `/usr` is
//! handled both ways (`/lib/x` is looked up as `/usr/lib/x` and back), as
//! a database may list either spelling. Diversions and rpm's Berkeley DB
//! / NDB backends are not read.
//!
//! Building the map costs a few hundred milliseconds on a desktop, so the
//! result is kept in a process-wide cache keyed by the root and the change
//! times of the databases: repeat queries reuse it, a package install
//! invalidates it.
use crate::sources::fs_safe::{self, FsError, Root};
use rustix::fd::AsFd;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const DPKG_INFO: &str = "/var/lib/dpkg/info";
const DPKG_STATUS: &str = "/var/lib/dpkg/status";
const RPMDB: &str = "/var/lib/rpm/rpmdb.sqlite";

/// A `.list` of a real package is at most a few MiB (the kernel's modules).
const MAX_LIST_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PackagesError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{path}: {source}")]
    Rpm {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

/// Path → owning packages, for every package database found.
#[derive(Debug, Default)]
pub struct Owners {
    packages: Vec<String>,
    by_path: HashMap<Box<[u8]>, Vec<u32>>,
    /// Whether any package database was found at all.
    has_database: bool,
    /// Databases that could not be read, for the log.
    pub errors: Vec<String>,
}

impl Owners {
    fn add(&mut self, package: u32, path: &[u8]) {
        let path = path
            .strip_suffix(b"/")
            .filter(|p| !p.is_empty())
            .unwrap_or(path);
        if path.is_empty() || path == b"/." {
            return;
        }
        let owners = self.by_path.entry(path.into()).or_default();
        if !owners.contains(&package) {
            owners.push(package);
        }
    }

    fn package(&mut self, name: String) -> u32 {
        self.packages.push(name);
        u32::try_from(self.packages.len() - 1).unwrap_or(u32::MAX)
    }

    /// The owners of `path` (a path inside the root) joined with ", " as
    /// `dpkg -S` prints them; `Some("")` when no package owns it, `None`
    /// when there is no package database to ask.
    pub fn owner(&self, path: &[u8]) -> Option<String> {
        if !self.has_database {
            return None;
        }
        let mut names: Vec<&str> = Vec::new();
        for p in spellings(path) {
            for &i in self.by_path.get(p.as_slice()).into_iter().flatten() {
                if let Some(n) = self.packages.get(i as usize) {
                    if !names.contains(&n.as_str()) {
                        names.push(n);
                    }
                }
            }
        }
        Some(names.join(", "))
    }
}

/// The path and its other merged-`/usr` spelling: `/bin`, `/sbin`, `/lib*`
/// are symlinks into `/usr` on merged systems, and a database written
/// before or after the merge lists one or the other.
fn spellings(path: &[u8]) -> Vec<Vec<u8>> {
    const MERGED: [&[u8]; 6] = [
        b"/bin/",
        b"/sbin/",
        b"/lib/",
        b"/lib32/",
        b"/lib64/",
        b"/libx32/",
    ];
    let mut out = vec![path.to_vec()];
    if let Some(rest) = path.strip_prefix(b"/usr") {
        if MERGED.iter().any(|m| rest.starts_with(m)) {
            out.push(rest.to_vec());
        }
    } else if MERGED.iter().any(|m| path.starts_with(m)) {
        let mut p = b"/usr".to_vec();
        p.extend_from_slice(path);
        out.push(p);
    }
    out
}

/// Reads every `*.list` of dpkg's info directory into `owners`. The
/// package name is the file's stem (`libfoo:amd64` for a multi-arch one,
/// as `dpkg -S` shows it).
fn load_dpkg(root: &Root, owners: &mut Owners) -> Result<(), FsError> {
    let info = Path::new(DPKG_INFO);
    let dir = match root.open_dir(info) {
        Ok(d) => d,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    owners.has_database = true;
    let reader = rustix::fs::Dir::read_from(&dir).map_err(|e| FsError::Read {
        path: info.to_path_buf(),
        source: e.into(),
    })?;
    let mut names: Vec<Vec<u8>> = reader
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n.len() > 5 && n.ends_with(b".list"))
        .collect();
    names.sort();
    for name in names {
        let shown = info.join(OsStr::from_bytes(&name));
        let file = match fs_safe::open_entry_regular(dir.as_fd(), OsStr::from_bytes(&name), &shown)
        {
            Ok(f) => f,
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                owners.errors.push(e.to_string());
                continue;
            }
        };
        let bytes = match fs_safe::read_capped(file, MAX_LIST_BYTES, &shown) {
            Ok((b, _)) => b,
            Err(e) => {
                owners.errors.push(e.to_string());
                continue;
            }
        };
        let stem = &name[..name.len() - 5];
        let pkg = owners.package(String::from_utf8_lossy(stem).into_owned());
        for line in bytes.split(|b| *b == b'\n') {
            owners.add(pkg, line);
        }
    }
    Ok(())
}

/// rpm header tags and types used here (`rpmtag.h`).
const TAG_NAME: u32 = 1000;
const TAG_DIRINDEXES: u32 = 1116;
const TAG_BASENAMES: u32 = 1117;
const TAG_DIRNAMES: u32 = 1118;
const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// The package name and file paths of one rpm header blob (the form the
/// sqlite backend stores: index count, data length, 16-byte index entries,
/// data). `None` when the blob is malformed.
pub fn parse_rpm_header(blob: &[u8]) -> Option<(String, Vec<Vec<u8>>)> {
    let be32 = |b: &[u8], at: usize| -> Option<u32> {
        b.get(at..at.checked_add(4)?)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    };
    let il = usize::try_from(be32(blob, 0)?).ok()?;
    let dl = usize::try_from(be32(blob, 4)?).ok()?;
    let data_start = 8usize.checked_add(il.checked_mul(16)?)?;
    let data = blob.get(data_start..data_start.checked_add(dl)?)?;
    let mut entries = HashMap::new();
    for i in 0..il {
        let at = 8 + i * 16;
        let tag = be32(blob, at)?;
        let ty = be32(blob, at + 4)?;
        let off = usize::try_from(be32(blob, at + 8)?).ok()?;
        let count = usize::try_from(be32(blob, at + 12)?).ok()?;
        entries.insert(tag, (ty, off, count));
    }
    let strings = |tag: u32| -> Option<Vec<&[u8]>> {
        let &(ty, off, count) = entries.get(&tag)?;
        if ty != TYPE_STRING && ty != TYPE_STRING_ARRAY && ty != TYPE_I18NSTRING {
            return None;
        }
        let mut out = Vec::with_capacity(count.min(1 << 16));
        let mut pos = off;
        for _ in 0..count {
            let rest = data.get(pos..)?;
            let len = rest.iter().position(|b| *b == 0)?;
            out.push(&rest[..len]);
            pos += len + 1;
        }
        Some(out)
    };
    let name = String::from_utf8_lossy(strings(TAG_NAME)?.first()?).into_owned();
    let mut paths = Vec::new();
    if let (Some(base), Some(dirs), Some(&(ty, off, count))) = (
        strings(TAG_BASENAMES),
        strings(TAG_DIRNAMES),
        entries.get(&TAG_DIRINDEXES),
    ) {
        if ty != TYPE_INT32 || count != base.len() {
            return None;
        }
        for (i, b) in base.iter().enumerate() {
            let idx = usize::try_from(be32(data, off + 4 * i)?).ok()?;
            let mut p = dirs.get(idx)?.to_vec();
            p.extend_from_slice(b);
            paths.push(p);
        }
    }
    Some((name, paths))
}

/// Reads rpm's sqlite database, opened through the root (confined, regular
/// only) and handed to SQLite as `/proc/self/fd/N`, read-only and
/// `immutable` so SQLite takes no lock and writes nothing; changes still in
/// a WAL file are not seen.
fn load_rpm(root: &Root, owners: &mut Owners) -> Result<(), PackagesError> {
    let path = Path::new(RPMDB);
    let file = match root.open_regular(path) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    owners.has_database = true;
    let rpm = |source| PackagesError::Rpm {
        path: path.to_path_buf(),
        source,
    };
    use std::os::fd::AsRawFd;
    let uri = format!("file:/proc/self/fd/{}?immutable=1", file.as_raw_fd());
    let conn = rusqlite::Connection::open_with_flags(
        uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(rpm)?;
    let mut stmt = conn.prepare("SELECT blob FROM Packages").map_err(rpm)?;
    let mut rows = stmt.query([]).map_err(rpm)?;
    while let Some(row) = rows.next().map_err(rpm)? {
        let blob: Vec<u8> = row.get(0).map_err(rpm)?;
        match parse_rpm_header(&blob) {
            Some((name, paths)) => {
                let pkg = owners.package(name);
                for p in paths {
                    owners.add(pkg, &p);
                }
            }
            None => owners
                .errors
                .push(format!("{RPMDB}: a malformed package header was skipped")),
        }
    }
    drop(file);
    Ok(())
}

/// Reads every package database under `root`. A database that cannot be
/// read is logged and left out; the others still count.
pub fn load(root: &Root) -> Owners {
    let mut owners = Owners::default();
    if let Err(e) = load_dpkg(root, &mut owners) {
        owners.errors.push(e.to_string());
    }
    if let Err(e) = load_rpm(root, &mut owners) {
        owners.errors.push(e.to_string());
    }
    for e in &owners.errors {
        log::warn!("packages: {e}");
    }
    owners
}

/// What the cache is valid for: the root and the change times of each
/// database (`None` when absent). `.list` files are replaced by rename,
/// which changes the info directory's mtime.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    root: PathBuf,
    stamps: Vec<Option<(i64, u32, u64)>>,
}

fn stamp(root: &Root, path: &str) -> Option<(i64, u32, u64)> {
    let fd = root.open_path(Path::new(path)).ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    let nsec = u32::try_from(st.st_mtime_nsec).unwrap_or(0);
    Some((st.st_mtime, nsec, st.st_ino))
}

struct Cache {
    key: Key,
    owners: Arc<Owners>,
}

/// A few roots at most (the live `/`, perhaps an image or two under
/// test); the least recently built entry goes first.
const CACHED_ROOTS: usize = 4;

static CACHE: Mutex<Vec<Cache>> = Mutex::new(Vec::new());

/// The owners map for `root`, from the cache when the databases have not
/// changed since it was built.
pub fn owners(root: &Root) -> Arc<Owners> {
    let key = Key {
        root: root.host_path().to_path_buf(),
        stamps: [DPKG_INFO, DPKG_STATUS, RPMDB, "/var/lib/rpm"]
            .iter()
            .map(|p| stamp(root, p))
            .collect(),
    };
    // A poisoned lock only means another query panicked mid-build; the
    // entries are still whole (they are replaced, never edited).
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = cache.iter().find(|c| c.key == key) {
        return Arc::clone(&c.owners);
    }
    let owners = Arc::new(load(root));
    cache.retain(|c| c.key.root != key.root);
    if cache.len() >= CACHED_ROOTS {
        cache.remove(0);
    }
    cache.push(Cache {
        key,
        owners: Arc::clone(&owners),
    });
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(r: &Path, p: &str, b: &[u8]) {
        let p = r.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b).unwrap();
    }

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

    #[test]
    fn cache_is_reused_and_invalidated() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        write(r, "var/lib/dpkg/info/a.list", b"/x\n");
        let root = Root::open(r).unwrap();
        let first = owners(&root);
        assert!(Arc::ptr_eq(&first, &owners(&root)));
        // A new .list appears by rename, as dpkg writes it.
        write(r, "var/lib/dpkg/info/b.tmp", b"/y\n");
        std::fs::rename(
            r.join("var/lib/dpkg/info/b.tmp"),
            r.join("var/lib/dpkg/info/b.list"),
        )
        .unwrap();
        // Make sure the directory's mtime moves even on coarse clocks.
        let t = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::open(r.join("var/lib/dpkg/info"))
            .unwrap()
            .set_modified(t)
            .unwrap();
        let second = owners(&root);
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(second.owner(b"/y").unwrap(), "b");
    }

    /// Builds a header blob the way rpm lays one out.
    pub(crate) fn rpm_header(name: &str, dirs: &[&str], files: &[(u32, &str)]) -> Vec<u8> {
        let mut data = Vec::new();
        let mut index = Vec::new();
        let mut put = |tag: u32, ty: u32, count: usize, bytes: &[u8], data: &mut Vec<u8>| {
            if ty == TYPE_INT32 {
                while data.len() % 4 != 0 {
                    data.push(0);
                }
            }
            index.push((tag, ty, data.len(), count));
            data.extend_from_slice(bytes);
        };
        let strs = |v: &[&str]| {
            v.iter()
                .flat_map(|s| s.bytes().chain([0]))
                .collect::<Vec<u8>>()
        };
        put(TAG_NAME, TYPE_STRING, 1, &strs(&[name]), &mut data);
        let base: Vec<&str> = files.iter().map(|f| f.1).collect();
        put(
            TAG_BASENAMES,
            TYPE_STRING_ARRAY,
            base.len(),
            &strs(&base),
            &mut data,
        );
        put(
            TAG_DIRNAMES,
            TYPE_STRING_ARRAY,
            dirs.len(),
            &strs(dirs),
            &mut data,
        );
        let idx: Vec<u8> = files.iter().flat_map(|f| f.0.to_be_bytes()).collect();
        put(TAG_DIRINDEXES, TYPE_INT32, files.len(), &idx, &mut data);
        let mut blob = Vec::new();
        blob.extend_from_slice(&(index.len() as u32).to_be_bytes());
        blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
        for (tag, ty, off, count) in index {
            for v in [tag, ty, off as u32, count as u32] {
                blob.extend_from_slice(&v.to_be_bytes());
            }
        }
        blob.extend_from_slice(&data);
        blob
    }

    #[test]
    fn rpm_headers_from_sqlite() {
        let blob = rpm_header(
            "dbus-common",
            &["/usr/share/dbus-1/", "/usr/lib/"],
            &[(0, "system.conf"), (1, "x.so")],
        );
        let (name, paths) = parse_rpm_header(&blob).unwrap();
        assert_eq!(name, "dbus-common");
        assert_eq!(
            paths,
            [
                b"/usr/share/dbus-1/system.conf".to_vec(),
                b"/usr/lib/x.so".to_vec()
            ]
        );
        for cut in [0, 3, 8, 20, blob.len() - 1] {
            assert!(parse_rpm_header(&blob[..cut]).is_none(), "{cut}");
        }
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("var/lib/rpm")).unwrap();
        let db = rusqlite::Connection::open(r.join("var/lib/rpm/rpmdb.sqlite")).unwrap();
        db.execute_batch(
            "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY NOT NULL, blob BLOB NOT NULL);",
        )
        .unwrap();
        db.execute("INSERT INTO Packages (blob) VALUES (?1)", [&blob])
            .unwrap();
        db.execute("INSERT INTO Packages (blob) VALUES (?1)", [&b"junk"[..]])
            .unwrap();
        drop(db);
        let o = load(&Root::open(r).unwrap());
        assert_eq!(
            o.owner(b"/usr/share/dbus-1/system.conf").unwrap(),
            "dbus-common"
        );
        assert_eq!(o.owner(b"/lib/x.so").unwrap(), "dbus-common");
        assert_eq!(o.owner(b"/etc/evil.conf").unwrap(), "");
        assert_eq!(o.errors.len(), 1, "{:?}", o.errors);
    }
}
