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
//! Building the map reads every file list of the database, so the
//! result is kept in a process-wide cache keyed by the root and the change
//! times of the databases: repeat queries reuse it, a package install
//! invalidates it. A query that knows the few paths it will ask about
//! ([`owners_of`]) reads the same files but keeps only those paths' lines:
//! the map of every installed file (which grows with the installed
//! packages) is never built, and the answers are cached under the same key.
use crate::blind;
use crate::sources::fs_safe::{self, FileId, FsError, Root};
use crate::sources::hash::Algo;
use rustix::fd::AsFd;
use std::collections::{HashMap, HashSet};
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

/// dpkg's status file: every installed package's paragraph, conffiles
/// included; a large desktop has a few MiB.
const MAX_STATUS_BYTES: u64 = 64 * 1024 * 1024;

/// Which package manager recorded a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Dpkg,
    Rpm,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Dpkg => "dpkg",
            Format::Rpm => "rpm",
        }
    }
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Package {
    pub name: String,
    pub format: Format,
    /// Unix seconds of its last install or upgrade, when known.
    pub installed: Option<i64>,
}

/// A digest a package manager recorded for one of its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub algo: Algo,
    /// Lowercase hex.
    pub hex: String,
}

/// What the package databases say about one path.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ownership<'a> {
    /// Owning packages, in database order.
    pub packages: Vec<&'a Package>,
    /// Digests recorded for the path by any owner (normally one).
    pub digests: Vec<&'a FileDigest>,
}

impl Ownership<'_> {
    /// The latest install time among the owners.
    pub fn installed(&self) -> Option<i64> {
        self.packages.iter().filter_map(|p| p.installed).max()
    }
}

/// Path → owning packages, for every package database found.
#[derive(Debug, Default, Clone)]
pub struct Owners {
    packages: Vec<Package>,
    by_path: HashMap<Box<[u8]>, Vec<u32>>,
    /// Recorded digests by path, as the database spells the path.
    digests: HashMap<Box<[u8]>, Vec<FileDigest>>,
    /// Whether any package database was found at all.
    has_database: bool,
    /// Databases that could not be read, for the log.
    pub errors: Vec<String>,
    /// Of `errors`, the reads that failed for a reason other than absence
    /// (path, cause, the error's text): what a query that used this map
    /// could not see, reported to [`crate::blind`] each time the map is
    /// handed out.
    unreadable: Vec<(String, String, String)>,
    /// For a map of a wanted set ([`owners_of`]): the spellings answered,
    /// found or not. `None` for the whole database.
    covered: Option<Covered>,
}

/// The spellings a partial map has answered: owners, and digests (read
/// only for callers that verify contents).
#[derive(Debug, Default, Clone)]
struct Covered {
    owners: PathSet,
    digests: PathSet,
}

/// Spellings a scan looks for, or a partial map has answered: paths, and
/// directories standing for every entry directly in them (so a table can
/// ask for a directory's entries before it lists it). Nearly every
/// database line is none of them: the lengths present turn most away
/// before a hash is computed.
#[derive(Debug, Default, Clone)]
struct PathSet {
    paths: Lengths,
    dirs: Lengths,
}

/// Byte strings with the set of their lengths beside them.
#[derive(Debug, Default, Clone)]
struct Lengths {
    set: HashSet<Box<[u8]>>,
    lens: Vec<bool>,
}

impl Lengths {
    fn insert(&mut self, s: Box<[u8]>) {
        let n = s.len();
        if self.lens.len() <= n {
            self.lens.resize(n + 1, false);
        }
        self.lens[n] = true;
        self.set.insert(s);
    }

    fn contains(&self, s: &[u8]) -> bool {
        self.lens.get(s.len()).copied().unwrap_or(false) && self.set.contains(s)
    }

    fn extend(&mut self, other: Lengths) {
        for s in other.set {
            self.insert(s);
        }
    }
}

impl PathSet {
    fn insert(&mut self, path: Box<[u8]>) {
        self.paths.insert(path);
    }

    /// Every entry directly in `dir` (no trailing `/`).
    fn insert_dir(&mut self, dir: Box<[u8]>) {
        self.dirs.insert(dir);
    }

    fn contains(&self, path: &[u8]) -> bool {
        self.paths.contains(path)
            || (!self.dirs.set.is_empty()
                && memchr::memrchr(b'/', path).is_some_and(|i| self.dirs.contains(&path[..i])))
    }

    fn is_empty(&self) -> bool {
        self.paths.set.is_empty() && self.dirs.set.is_empty()
    }

    fn extend(&mut self, other: PathSet) {
        self.paths.extend(other.paths);
        self.dirs.extend(other.dirs);
    }
}

/// What a scan keeps: everything, or only lines for these spellings.
#[derive(Clone, Copy)]
enum Filter<'a> {
    All,
    Only {
        owners: &'a PathSet,
        digests: &'a PathSet,
    },
}

impl Filter<'_> {
    fn owner(&self, path: &[u8]) -> bool {
        match self {
            Filter::All => true,
            Filter::Only { owners, .. } => owners.contains(path),
        }
    }

    fn digest(&self, path: &[u8]) -> bool {
        match self {
            Filter::All => true,
            Filter::Only { digests, .. } => digests.contains(path),
        }
    }

    /// A scan for no path: only whether the databases exist counts.
    fn nothing(&self) -> bool {
        matches!(self, Filter::Only { owners, digests } if owners.is_empty() && digests.is_empty())
    }

    fn wants_digests(&self) -> bool {
        match self {
            Filter::All => true,
            Filter::Only { digests, .. } => !digests.is_empty(),
        }
    }
}

/// A database line's path as the map keys it: no trailing `/`; `None`
/// for the root itself, which every package lists.
fn normalized(path: &[u8]) -> Option<&[u8]> {
    let path = path
        .strip_suffix(b"/")
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    (!path.is_empty() && path != b"/.").then_some(path)
}

impl Owners {
    fn add(&mut self, package: u32, path: &[u8]) {
        if let Some(path) = normalized(path) {
            self.add_normalized(package, path.into());
        }
    }

    fn add_normalized(&mut self, package: u32, path: Box<[u8]>) {
        let owners = self.by_path.entry(path).or_default();
        if !owners.contains(&package) {
            owners.push(package);
        }
    }

    fn add_digest(&mut self, path: &[u8], algo: Algo, hex: &[u8]) {
        let hex = String::from_utf8_lossy(hex).trim().to_ascii_lowercase();
        // rpm records "" for directories and symlinks; dpkg's placeholder
        // for a conffile it did not checksum is "newconffile".
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return;
        }
        let d = FileDigest { algo, hex };
        let list = self.digests.entry(path.into()).or_default();
        if !list.contains(&d) {
            list.push(d);
        }
    }

    fn package(&mut self, package: Package) -> u32 {
        self.packages.push(package);
        u32::try_from(self.packages.len() - 1).unwrap_or(u32::MAX)
    }

    /// [`Self::package`], reusing an equal package a partial map already
    /// holds from an earlier scan (`index` keeps them by value).
    fn package_interned(&mut self, package: Package, index: &mut HashMap<Package, u32>) -> u32 {
        if let Some(&i) = index.get(&package) {
            return i;
        }
        let i = self.package(package.clone());
        index.insert(package, i);
        i
    }

    /// What the databases record for `path` (a path inside the root,
    /// either merged-`/usr` spelling); `None` when there is no package
    /// database to ask. A map from [`owners_of`] knows only the paths it
    /// was asked for.
    pub fn lookup(&self, path: &[u8]) -> Option<Ownership<'_>> {
        if !self.has_database {
            return None;
        }
        let mut out = Ownership::default();
        for p in spellings(path) {
            debug_assert!(
                self.covered
                    .as_ref()
                    .is_none_or(|c| c.owners.contains(p.as_slice())),
                "{} was not asked of this partial map",
                String::from_utf8_lossy(&p)
            );
            for &i in self.by_path.get(p.as_slice()).into_iter().flatten() {
                if let Some(pkg) = self.packages.get(i as usize) {
                    if !out.packages.contains(&pkg) {
                        out.packages.push(pkg);
                    }
                }
            }
            for d in self.digests.get(p.as_slice()).into_iter().flatten() {
                if !out.digests.contains(&d) {
                    out.digests.push(d);
                }
            }
        }
        Some(out)
    }

    /// The owners of `path` (a path inside the root) joined with ", " as
    /// `dpkg -S` prints them; `Some("")` when no package owns it, `None`
    /// when there is no package database to ask.
    pub fn owner(&self, path: &[u8]) -> Option<String> {
        let o = self.lookup(path)?;
        let names: Vec<&str> = o.packages.iter().map(|p| p.name.as_str()).collect();
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

/// Reads every `*.list` of dpkg's info directory into `owners`, keeping
/// the lines `filter` wants. The package name is the file's stem
/// (`libfoo:amd64` for a multi-arch one, as `dpkg -S` shows it).
fn load_dpkg(root: &Root, owners: &mut Owners, filter: Filter) -> Result<(), FsError> {
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
        let stem = || String::from_utf8_lossy(&name[..name.len() - 5]).into_owned();
        if !kept.is_empty() {
            // dpkg rewrites the .list on every install and upgrade of the
            // package: its mtime is the install time dpkg does not record
            // anywhere else.
            let installed = rustix::fs::fstat(&file).ok().map(|st| st.st_mtime);
            let pkg = owners.package_interned(
                Package {
                    name: stem(),
                    format: Format::Dpkg,
                    installed,
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
        let stem = stem();
        by_name.insert(stem.clone());
        let sums = format!("{stem}.md5sums");
        let shown = info.join(&sums);
        match fs_safe::open_entry_regular(dir.as_fd(), OsStr::new(&sums), &shown)
            .and_then(|f| fs_safe::read_capped(f, MAX_LIST_BYTES, &shown))
        {
            Ok((bytes, _)) => load_md5sums(&bytes, owners, filter),
            Err(e) if e.is_not_found() => {}
            Err(e) => owners.fail(&e, &shown),
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

/// rpm header tags and types used here (`rpmtag.h`).
const TAG_NAME: u32 = 1000;
const TAG_INSTALLTIME: u32 = 1008;
const TAG_FILEDIGESTS: u32 = 1035;
const TAG_FILEDIGESTALGO: u32 = 5011;
const TAG_DIRINDEXES: u32 = 1116;
const TAG_BASENAMES: u32 = 1117;
const TAG_DIRNAMES: u32 = 1118;
const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// What is read from one rpm header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmHeader {
    pub name: String,
    pub paths: Vec<Vec<u8>>,
    /// Hex digests parallel to `paths` ("" for directories and links);
    /// empty when the header records none.
    pub digests: Vec<Vec<u8>>,
    /// `FILEDIGESTALGO` (`PGPHASHALGO_*`): MD5 when absent, as rpm assumes;
    /// `None` for an algorithm not supported here (SHA-1 and others).
    pub algo: Option<Algo>,
    pub install_time: Option<i64>,
}

/// rpm's `PGPHASHALGO_*` numbers.
fn rpm_algo(n: u32) -> Option<Algo> {
    match n {
        1 => Some(Algo::Md5),
        8 => Some(Algo::Sha256),
        9 => Some(Algo::Sha384),
        10 => Some(Algo::Sha512),
        _ => None,
    }
}

/// The package name, file paths, digests and install time of one rpm
/// header blob (the form the sqlite backend stores: index count, data
/// length, 16-byte index entries, data). `None` when the blob is
/// malformed.
pub fn parse_rpm_header(blob: &[u8]) -> Option<RpmHeader> {
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
    let int32 = |tag: u32| -> Option<u32> {
        let &(ty, off, count) = entries.get(&tag)?;
        if ty != TYPE_INT32 || count == 0 {
            return None;
        }
        be32(data, off)
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
    let digests: Vec<Vec<u8>> = match strings(TAG_FILEDIGESTS) {
        Some(d) if d.len() == paths.len() => d.into_iter().map(<[u8]>::to_vec).collect(),
        _ => Vec::new(),
    };
    Some(RpmHeader {
        name,
        paths,
        digests,
        algo: int32(TAG_FILEDIGESTALGO).map_or(Some(Algo::Md5), rpm_algo),
        install_time: int32(TAG_INSTALLTIME).map(i64::from),
    })
}

/// Reads rpm's sqlite database, opened through the root (confined, regular
/// only) and handed to SQLite as `/proc/self/fd/N`, read-only and
/// `immutable` so SQLite takes no lock and writes nothing; changes still in
/// a WAL file are not seen.
fn load_rpm(root: &Root, owners: &mut Owners, filter: Filter) -> Result<(), PackagesError> {
    let path = Path::new(RPMDB);
    let file = match root.open_regular(path) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    owners.has_database = true;
    if filter.nothing() {
        return Ok(());
    }
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
    let mut index: HashMap<Package, u32> = owners.packages.iter().cloned().zip(0..).collect();
    let mut stmt = conn.prepare("SELECT blob FROM Packages").map_err(rpm)?;
    let mut rows = stmt.query([]).map_err(rpm)?;
    while let Some(row) = rows.next().map_err(rpm)? {
        let blob: Vec<u8> = row.get(0).map_err(rpm)?;
        match parse_rpm_header(&blob) {
            Some(h) => {
                let mut kept = h
                    .paths
                    .iter()
                    .filter(|p| normalized(p).is_some_and(|p| filter.owner(p)))
                    .peekable();
                if kept.peek().is_some() {
                    let pkg = owners.package_interned(
                        Package {
                            name: h.name,
                            format: Format::Rpm,
                            installed: h.install_time,
                        },
                        &mut index,
                    );
                    for p in kept {
                        owners.add(pkg, p);
                    }
                }
                if let Some(algo) = h.algo {
                    for (p, d) in h.paths.iter().zip(&h.digests) {
                        if filter.digest(p) {
                            owners.add_digest(p, algo, d);
                        }
                    }
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
    scan(root, &mut owners, Filter::All);
    owners
}

/// Reads the databases into `owners`, keeping what `filter` wants; a
/// database that cannot be read is logged and left out.
fn scan(root: &Root, owners: &mut Owners, filter: Filter) {
    owners.errors.clear();
    // `unreadable` is kept: a partial map keeps covering what an earlier
    // scan of it could not read.
    if let Err(e) = load_dpkg(root, owners, filter) {
        owners.fail(&e, e.path());
    }
    if let Err(e) = load_rpm(root, owners, filter) {
        match &e {
            // The database file was opened but SQLite could not read it
            // (corrupt, locked, not a database): as blind as an EIO.
            PackagesError::Rpm { path, source } => {
                owners.errors.push(e.to_string());
                owners.note_unreadable(path, source.to_string(), e.to_string());
            }
            PackagesError::Fs(fs) => owners.fail(&e, fs.path()),
        }
    }
    // Blindness is reported where the map is used; the rest (an entry
    // that is not a regular file, a malformed header) is logged here.
    for e in &owners.errors {
        if !owners.unreadable.iter().any(|(_, _, text)| text == e) {
            log::warn!("packages: {e}");
        }
    }
}

impl Owners {
    /// Records a failed read of a database: in `errors`, and when the OS
    /// refused it for a reason other than absence, as unreadable too.
    fn fail(&mut self, e: &(dyn std::error::Error + 'static), at: &Path) {
        let text = e.to_string();
        if let Some(cause) = blind::os_cause(e) {
            self.note_unreadable(at, cause, text.clone());
        }
        self.errors.push(text);
    }

    /// Notes `at` as unreadable for `cause`, once.
    fn note_unreadable(&mut self, at: &Path, cause: String, text: String) {
        let at = fs_safe::render_path(at);
        if !self
            .unreadable
            .iter()
            .any(|(a, c, _)| *a == at && *c == cause)
        {
            self.unreadable.push((at, cause, text));
        }
    }

    /// Tells [`crate::blind`] what this map could not read, for the query
    /// that is about to use it.
    fn report_blind(&self) {
        for (at, cause, _) in &self.unreadable {
            blind::report("cannot read package databases", cause, at);
        }
    }
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
    let key = key(root);
    // A poisoned lock only means another query panicked mid-build; the
    // entries are still whole (they are replaced, never edited).
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = cache.iter().find(|c| c.key == key) {
        c.owners.report_blind();
        return Arc::clone(&c.owners);
    }
    let owners = Arc::new(load(root));
    remember(&mut cache, key, &owners);
    owners.report_blind();
    owners
}

fn key(root: &Root) -> Key {
    Key {
        root: root.host_path().to_path_buf(),
        stamps: [DPKG_INFO, DPKG_STATUS, RPMDB, "/var/lib/rpm"]
            .iter()
            .map(|p| stamp(root, p))
            .collect(),
    }
}

/// Stores `owners` as the entry of `key`'s root, replacing an older one.
fn remember(cache: &mut Vec<Cache>, key: Key, owners: &Arc<Owners>) {
    cache.retain(|c| c.key.root != key.root);
    if cache.len() >= CACHED_ROOTS {
        cache.remove(0);
    }
    cache.push(Cache {
        key,
        owners: Arc::clone(owners),
    });
}

/// Partial maps, apart from the whole ones: a root can have both.
static PARTIAL: Mutex<Vec<Cache>> = Mutex::new(Vec::new());

/// A map that answers [`Owners::lookup`] for `paths` (either merged-`/usr`
/// spelling; digests too when `digests`), and for no other path. A query
/// that needs a few owners pays one pass over the databases keeping only
/// their lines, not a map of every installed file; answers, "no owner"
/// included, are cached under the same key as [`owners`], so a repeat
/// query reads nothing and a later one scans only for paths not yet asked.
pub fn owners_of<'p>(
    root: &Root,
    paths: impl IntoIterator<Item = &'p [u8]>,
    digests: bool,
) -> Arc<Owners> {
    owners_in(root, paths, [], digests)
}

/// [`owners_of`] for `paths` and for every entry directly in `dirs`
/// (paths inside the root, no trailing `/`). A table that asks for its
/// directories before listing them needs no listing of its own for the
/// lookups, and a repeat query finds every entry answered, new ones too.
pub fn owners_in<'p, 'd>(
    root: &Root,
    paths: impl IntoIterator<Item = &'p [u8]>,
    dirs: impl IntoIterator<Item = &'d [u8]>,
    digests: bool,
) -> Arc<Owners> {
    let key = key(root);
    let mut cache = PARTIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cached = cache.iter().find(|c| c.key == key).map(|c| &c.owners);
    let covered = cached.and_then(|o| o.covered.as_ref());
    let (mut want_owners, mut want_digests) = (PathSet::default(), PathSet::default());
    for path in paths {
        for p in spellings(path) {
            if covered.is_none_or(|c| !c.owners.contains(p.as_slice())) {
                want_owners.insert(p.clone().into());
            }
            if digests && covered.is_none_or(|c| !c.digests.contains(p.as_slice())) {
                want_digests.insert(p.into());
            }
        }
    }
    for dir in dirs {
        // An entry's parent is the directory without a trailing `/`; spelled
        // with one here so that a directory at a merged prefix itself
        // (`/lib`) gets its other spelling too.
        let end = dir.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
        let mut slashed = dir[..end].to_vec();
        slashed.push(b'/');
        for mut d in spellings(&slashed) {
            d.pop();
            if covered.is_none_or(|c| !c.owners.dirs.contains(&d)) {
                want_owners.insert_dir(d.clone().into());
            }
            if digests && covered.is_none_or(|c| !c.digests.dirs.contains(&d)) {
                want_digests.insert_dir(d.into());
            }
        }
    }
    if let Some(o) = cached {
        if want_owners.is_empty() && want_digests.is_empty() {
            o.report_blind();
            return Arc::clone(o);
        }
    }
    let mut owners = cached.map_or_else(Owners::default, |o| Owners::clone(o));
    scan(
        root,
        &mut owners,
        Filter::Only {
            owners: &want_owners,
            digests: &want_digests,
        },
    );
    let covered = owners.covered.get_or_insert_with(Covered::default);
    covered.owners.extend(want_owners);
    covered.digests.extend(want_digests);
    let owners = Arc::new(owners);
    remember(&mut cache, key, &owners);
    owners.report_blind();
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

    /// Installs package `b` with `list` as dpkg writes it (a rename into
    /// place), moving the directory's mtime even on coarse clocks.
    fn install_b(r: &Path, list: &[u8]) {
        write(r, "var/lib/dpkg/info/b.tmp", list);
        std::fs::rename(
            r.join("var/lib/dpkg/info/b.tmp"),
            r.join("var/lib/dpkg/info/b.list"),
        )
        .unwrap();
        let t = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::open(r.join("var/lib/dpkg/info"))
            .unwrap()
            .set_modified(t)
            .unwrap();
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
        install_b(r, b"/y\n");
        let second = owners(&root);
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(second.owner(b"/y").unwrap(), "b");
    }

    /// A partial map answers as the whole one for what it was asked,
    /// digests included, and is reused until a path it has not answered
    /// comes, or the database changes.
    #[test]
    fn partial_maps_answer_as_the_whole_one() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        write(
            r,
            "var/lib/dpkg/info/dbus.list",
            b"/.\n/usr\n/usr/share/dbus-1/x.service\n/lib/dbus-1/y\n/etc/a.conf\n/usr/share/doc/dbus\n",
        );
        write(
            r,
            "var/lib/dpkg/info/libx:amd64.list",
            b"/usr/lib/dbus-1/y\n",
        );
        write(
            r,
            "var/lib/dpkg/info/dbus.md5sums",
            b"0123456789abcdef0123456789abcdef  usr/share/dbus-1/x.service\n",
        );
        write(
            r,
            "var/lib/dpkg/status",
            b"Package: dbus\nConffiles:\n /etc/a.conf 11111111111111111111111111111111\n",
        );
        let root = Root::open(r).unwrap();
        let whole = load(&root);
        let asked: [&[u8]; 6] = [
            b"/usr/share/dbus-1/x.service",
            b"/usr/lib/dbus-1/y",
            b"/lib/dbus-1/y",
            b"/etc/a.conf",
            b"/nowhere",
            b"/usr",
        ];
        let part = owners_of(&root, asked, true);
        for p in asked {
            assert_eq!(
                part.lookup(p),
                whole.lookup(p),
                "{}",
                String::from_utf8_lossy(p)
            );
        }
        assert_eq!(whole.by_path.len(), 6);
        assert_eq!(part.by_path.len(), 5, "only what was asked is kept");
        assert!(Arc::ptr_eq(&part, &owners_of(&root, asked, true)));
        let fewer = owners_of(&root, [&b"/etc/a.conf"[..]], false);
        assert!(Arc::ptr_eq(&part, &fewer), "a subset reads nothing");
        let more = owners_of(&root, [&b"/etc/b.conf"[..]], false);
        assert!(!Arc::ptr_eq(&part, &more));
        assert_eq!(more.owner(b"/etc/b.conf").unwrap(), "");
        assert_eq!(more.owner(b"/lib/dbus-1/y").unwrap(), "dbus, libx:amd64");
        // A package install invalidates every answer.
        install_b(r, b"/etc/b.conf\n");
        let after = owners_of(&root, [&b"/etc/b.conf"[..]], false);
        assert_eq!(after.owner(b"/etc/b.conf").unwrap(), "b");
        let empty = tempfile::tempdir().unwrap();
        let none = owners_of(&Root::open(empty.path()).unwrap(), [&b"/x"[..]], false);
        assert_eq!(none.owner(b"/x"), None);
    }

    /// A directory asked for stands for every entry directly in it, in
    /// either merged-`/usr` spelling and with or without a trailing `/`:
    /// those answer as the whole map does, entries of its subdirectories
    /// and of other directories are not kept, and a later query for any
    /// entry of it (one never listed included) reads nothing.
    #[test]
    fn directories_answer_for_their_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        write(
            r,
            "var/lib/dpkg/info/dbus.list",
            b"/.\n/usr\n/usr/share/dbus-1/services\n/usr/share/dbus-1/services/x.service\n\
              /usr/share/dbus-1/services/sub/deeper\n/lib/dbus-1/system-services/y.service\n\
              /usr/share/dbus-1/system.d/z.conf\n/etc/a.conf\n",
        );
        write(
            r,
            "var/lib/dpkg/info/libx:amd64.list",
            b"/usr/lib/dbus-1/system-services/y.service\n",
        );
        write(
            r,
            "var/lib/dpkg/info/dbus.md5sums",
            b"0123456789abcdef0123456789abcdef  usr/share/dbus-1/services/x.service\n",
        );
        let root = Root::open(r).unwrap();
        let whole = load(&root);
        let dirs: [&[u8]; 2] = [
            b"/usr/share/dbus-1/services/",
            b"/usr/lib/dbus-1/system-services",
        ];
        let part = owners_in(&root, [&b"/etc/a.conf"[..]], dirs, true);
        let answered: [&[u8]; 7] = [
            b"/usr/share/dbus-1/services/x.service",
            b"/usr/share/dbus-1/services/sub",
            b"/usr/share/dbus-1/services/never-listed.service",
            b"/usr/lib/dbus-1/system-services/y.service",
            b"/lib/dbus-1/system-services/y.service",
            b"/lib/dbus-1/system-services/z.service",
            b"/etc/a.conf",
        ];
        for p in answered {
            assert_eq!(
                part.lookup(p),
                whole.lookup(p),
                "{}",
                String::from_utf8_lossy(p)
            );
        }
        assert_eq!(
            part.owner(b"/lib/dbus-1/system-services/y.service")
                .unwrap(),
            "dbus, libx:amd64"
        );
        assert_eq!(
            part.lookup(b"/usr/share/dbus-1/services/x.service")
                .unwrap()
                .digests
                .len(),
            1
        );
        assert!(!part
            .by_path
            .contains_key(&b"/usr/share/dbus-1/services/sub/deeper"[..]));
        assert!(!part
            .by_path
            .contains_key(&b"/usr/share/dbus-1/system.d/z.conf"[..]));
        let again = owners_of(&root, answered, true);
        assert!(
            Arc::ptr_eq(&part, &again),
            "entries of asked directories read nothing"
        );
        let same_dirs = owners_in(&root, [], [&b"/lib/dbus-1/system-services"[..]], false);
        assert!(
            Arc::ptr_eq(&part, &same_dirs),
            "either spelling of an asked directory"
        );
        let other = owners_of(&root, [&b"/usr/share/dbus-1/system.d/z.conf"[..]], false);
        assert!(!Arc::ptr_eq(&part, &other));
        assert_eq!(
            other.owner(b"/usr/share/dbus-1/system.d/z.conf").unwrap(),
            "dbus"
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

    /// Builds a header blob the way rpm lays one out.
    pub(crate) fn rpm_header(name: &str, dirs: &[&str], files: &[(u32, &str)]) -> Vec<u8> {
        rpm_header_full(name, dirs, files, &[], None, None)
    }

    /// [`rpm_header`] with `FILEDIGESTS` (when not empty),
    /// `FILEDIGESTALGO` and `INSTALLTIME`.
    pub(crate) fn rpm_header_full(
        name: &str,
        dirs: &[&str],
        files: &[(u32, &str)],
        digests: &[&str],
        algo: Option<u32>,
        installed: Option<u32>,
    ) -> Vec<u8> {
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
        if !digests.is_empty() {
            put(
                TAG_FILEDIGESTS,
                TYPE_STRING_ARRAY,
                digests.len(),
                &strs(digests),
                &mut data,
            );
        }
        if let Some(a) = algo {
            put(
                TAG_FILEDIGESTALGO,
                TYPE_INT32,
                1,
                &a.to_be_bytes(),
                &mut data,
            );
        }
        if let Some(t) = installed {
            put(TAG_INSTALLTIME, TYPE_INT32, 1, &t.to_be_bytes(), &mut data);
        }
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
        let h = parse_rpm_header(&blob).unwrap();
        assert_eq!(h.name, "dbus-common");
        assert!(h.digests.is_empty());
        assert_eq!(h.algo, Some(Algo::Md5), "rpm's default");
        assert_eq!(h.install_time, None);
        assert_eq!(
            h.paths,
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
        let root = Root::open(r).unwrap();
        let o = load(&root);
        let part = owners_of(&root, [&b"/lib/x.so"[..], b"/etc/evil.conf"], false);
        assert_eq!(part.owner(b"/lib/x.so").unwrap(), "dbus-common");
        assert_eq!(part.owner(b"/etc/evil.conf").unwrap(), "");
        assert_eq!(part.by_path.len(), 1);
        assert_eq!(
            o.owner(b"/usr/share/dbus-1/system.conf").unwrap(),
            "dbus-common"
        );
        assert_eq!(o.owner(b"/lib/x.so").unwrap(), "dbus-common");
        assert_eq!(o.owner(b"/etc/evil.conf").unwrap(), "");
        assert_eq!(o.errors.len(), 1, "{:?}", o.errors);
    }

    #[test]
    fn rpm_digests_algorithms_and_install_time() {
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let blob = rpm_header_full(
            "p",
            &["/usr/share/dbus-1/", "/lib/"],
            &[(0, "a.conf"), (1, "d")],
            &[sha, ""],
            Some(8),
            Some(1_700_000_000),
        );
        let h = parse_rpm_header(&blob).unwrap();
        assert_eq!(h.algo, Some(Algo::Sha256));
        assert_eq!(h.install_time, Some(1_700_000_000));
        assert_eq!(h.digests, [sha.as_bytes().to_vec(), Vec::new()]);
        // SHA-1 (2) is not checked: no digests kept.
        let sha1 = rpm_header_full("q", &["/x/"], &[(0, "f")], &["aa"], Some(2), None);
        assert_eq!(parse_rpm_header(&sha1).unwrap().algo, None);
        // A digest list that does not match the files is ignored.
        let odd = rpm_header_full("q", &["/x/"], &[(0, "f")], &["aa", "bb"], None, None);
        assert!(parse_rpm_header(&odd).unwrap().digests.is_empty());

        let mut o = Owners {
            has_database: true,
            ..Owners::default()
        };
        let pkg = o.package(Package {
            name: "p".into(),
            format: Format::Rpm,
            installed: h.install_time,
        });
        for (p, d) in h.paths.iter().zip(&h.digests) {
            o.add(pkg, p);
            o.add_digest(p, Algo::Sha256, d);
        }
        let l = o.lookup(b"/usr/lib/d").unwrap();
        assert_eq!(l.packages.len(), 1);
        assert!(l.digests.is_empty(), "a directory has no digest");
        let l = o.lookup(b"/usr/share/dbus-1/a.conf").unwrap();
        assert_eq!(l.digests[0].hex, sha);
        assert_eq!(l.installed(), Some(1_700_000_000));
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
