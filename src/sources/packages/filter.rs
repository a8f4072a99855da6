//! What a scan of the package databases keeps: every line, or only the
//! lines of the paths (and the entries of the directories) a query asked
//! about; and how a database line's path is keyed.
use std::collections::HashSet;

/// Spellings a scan looks for, or a partial map has answered: paths, and
/// directories standing for every entry directly in them (so a table can
/// ask for a directory's entries before it lists it). Nearly every
/// database line is none of them: the lengths present turn most away
/// before a hash is computed.
#[derive(Debug, Default, Clone)]
pub(super) struct PathSet {
    paths: Lengths,
    pub(super) dirs: Lengths,
}

/// Byte strings with the set of their lengths beside them.
#[derive(Debug, Default, Clone)]
pub(super) struct Lengths {
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

    pub(super) fn contains(&self, s: &[u8]) -> bool {
        self.lens.get(s.len()).copied().unwrap_or(false) && self.set.contains(s)
    }

    fn extend(&mut self, other: Lengths) {
        for s in other.set {
            self.insert(s);
        }
    }
}

impl PathSet {
    pub(super) fn insert(&mut self, path: Box<[u8]>) {
        self.paths.insert(path);
    }

    /// Every entry directly in `dir` (no trailing `/`).
    pub(super) fn insert_dir(&mut self, dir: Box<[u8]>) {
        self.dirs.insert(dir);
    }

    pub(super) fn contains(&self, path: &[u8]) -> bool {
        self.paths.contains(path)
            || (!self.dirs.set.is_empty()
                && memchr::memrchr(b'/', path).is_some_and(|i| self.dirs.contains(&path[..i])))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.paths.set.is_empty() && self.dirs.set.is_empty()
    }

    pub(super) fn extend(&mut self, other: PathSet) {
        self.paths.extend(other.paths);
        self.dirs.extend(other.dirs);
    }
}

/// What a scan keeps: everything, or only lines for these spellings.
#[derive(Clone, Copy)]
pub(super) enum Filter<'a> {
    All,
    Only {
        owners: &'a PathSet,
        digests: &'a PathSet,
    },
}

impl Filter<'_> {
    pub(super) fn owner(&self, path: &[u8]) -> bool {
        match self {
            Filter::All => true,
            Filter::Only { owners, .. } => owners.contains(path),
        }
    }

    pub(super) fn digest(&self, path: &[u8]) -> bool {
        match self {
            Filter::All => true,
            Filter::Only { digests, .. } => digests.contains(path),
        }
    }

    /// A scan for no path: only whether the databases exist counts.
    pub(super) fn nothing(&self) -> bool {
        matches!(self, Filter::Only { owners, digests } if owners.is_empty() && digests.is_empty())
    }

    pub(super) fn wants_digests(&self) -> bool {
        match self {
            Filter::All => true,
            Filter::Only { digests, .. } => !digests.is_empty(),
        }
    }
}

/// A database line's path as the map keys it: no trailing `/`; `None`
/// for the root itself, which every package lists.
pub(super) fn normalized(path: &[u8]) -> Option<&[u8]> {
    let path = path
        .strip_suffix(b"/")
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    (!path.is_empty() && path != b"/.").then_some(path)
}
