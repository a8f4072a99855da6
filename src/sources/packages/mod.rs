//! Which dpkg or rpm package owns a file, from the package databases under
//! a root.
//!
//! A service file no package ships is the first thing a persistence hunt
//! wants to see; `dpkg -S` and `rpm -qf` answer only for the live host and
//! cost a process per file. Here the databases are read as files:
//! dpkg's `var/lib/dpkg/info/*.list` (one owned path a line, `dpkg`) and
//! rpm's `var/lib/rpm/rpmdb.sqlite` (one header blob per package, parsed
//! for `NAME`, `DIRNAMES`, `BASENAMES`, `DIRINDEXES`, `rpm`). Merged
//! `/usr` is handled both ways (`/lib/x` is looked up as `/usr/lib/x` and
//! back), as a database may list either spelling. Diversions and rpm's
//! Berkeley DB / NDB backends are not read.
//!
//! Building the whole map reads every file list of every installed
//! package, so `cache` keeps the result per root, keyed by the change
//! times of the databases: repeat queries reuse it, a package install
//! invalidates it. A query that knows the few paths it will ask about
//! ([`owners_of`], [`owners_in`]) reads the same files but keeps only those
//! paths' lines (`filter`): the map of every installed file is never
//! built, and the answers are cached under the same key.
use crate::blind;
use crate::sources::fs_safe::{self, FsError, Root};
use crate::sources::hash::Algo;
use cache::Covered;
use filter::{normalized, Filter};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod cache;
mod dpkg;
mod filter;
mod rpm;
pub mod verify;

pub use cache::{owners, owners_in, owners_of};
pub use rpm::{parse_rpm_header, RpmHeader};

/// Why a package database could not be read.
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
    /// When its list of file digests changed after that install (dpkg's
    /// `info/<pkg>.md5sums` with an mtime or a ctime more than
    /// [`INSTALL_SLACK_SECS`] later than the `.list`'s): its digests are
    /// then no longer what the package manager recorded.
    pub digests_rewritten: Option<i64>,
}

/// How much later than its package's install a file's ctime may be and
/// still count as that install: dpkg writes the `.list` after unpacking
/// every file of the package.
pub const INSTALL_SLACK_SECS: i64 = 60;

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
    if let Err(e) = dpkg::load(root, owners, filter) {
        owners.fail(&e, e.path());
    }
    if let Err(e) = rpm::load(root, owners, filter) {
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

#[cfg(test)]
mod test_files {
    use std::path::Path;

    pub(crate) fn write(r: &Path, p: &str, b: &[u8]) {
        let p = r.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b).unwrap();
    }
}
