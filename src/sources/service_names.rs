//! Which `.service` file a bus really uses for a name, so a hunt can see a
//! file in an early directory take over a name a packaged file provides.
//!
//! dbus-daemon (`bus/activation.c`) reads its service directories in a
//! fixed order and, within one, in `readdir` order; the first file that
//! provides a name keeps it, and a later one is refused ("already exists
//! in activation entry list"). A file dbus-daemon would refuse outright (a
//! fault in `service_file::ServiceFile::problems`) provides nothing. On
//! the system bus a file must also be named `<Name>.service` (the launch
//! helper finds a service by its file name), so a same-name file under
//! another file name is never used. dbus-broker-launch also keeps the
//! first of duplicate names, over its own directory list; the differences
//! in that list are `sources::service_dirs`' concern.
//!
//! A bus reads only its own services directories (`Role::Services`); a
//! directory it reaches under two spellings counts once, at the first
//! place in that bus's order. Each order is judged on its own, so a
//! verdict depends only on the directories of the order that judges the
//! file, which is what lets a lookup ([`resolve_paths`]) read less:
//!
//! - a system-bus file can be shadowed only by a `<Name>.service` of an
//!   earlier system directory, and a misnamed one names the first such
//!   file of any system directory: one probe per directory;
//! - a file of a user's directory is judged over that user's order, whose
//!   own directories all come before the shared ones: the user's
//!   directories, and the shared ones only when the file itself does not
//!   provide its name (the shared order is then searched for the file that
//!   does);
//! - a file of a system-wide session directory may be shadowed by any
//!   earlier file of the shared session order, whatever its file name:
//!   those are read up to it (and past it when it does not provide).
//!
//! Orders, per bus: the system bus reads the directories in the order
//! `service_dirs::discover` lists them (standard ones, then snapd's, then
//! those named by configs). A session bus belongs to one user and reads
//! that user's `$XDG_RUNTIME_DIR`, `~/.local/share` and flatpak exports
//! first, then the system-wide flatpak exports (flatpak prepends them to
//! `$XDG_DATA_DIRS`), the standard and `$XDG_DATA_DIRS` directories, snapd's
//! and config-named ones. Files in system-wide session directories are
//! judged by the order every user shares (a user's own file does shadow
//! them, but only for that user; that file's row says so). Symlinked
//! service files are not followed (safety rules), so they provide nothing
//! here although the bus would follow them.
use crate::sources::fs_safe;
use crate::sources::fs_safe::Root;
use crate::sources::service_dirs::{self, Bus, EntryKind, OpenDir, Origin, Role, ServiceDir};
use crate::sources::service_file;
use crate::sources::stat::{self, FileKind};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One readable `.service` file and how its bus treats it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Path inside the root.
    pub path: PathBuf,
    pub bus: Bus,
    /// The account whose session bus alone reads it; `None` for files
    /// every bus of its kind reads.
    pub owner_uid: Option<u32>,
    /// 1-based position of its directory in its bus's search order.
    pub search_order: u32,
    pub name: Option<String>,
    pub systemd_service: Option<String>,
    /// Whether the bus uses this file for its name; `None` when it names
    /// nothing the bus would load.
    pub effective: Option<bool>,
    /// The file the bus uses instead, when not effective.
    pub shadowed_by: Option<PathBuf>,
    /// Whether its bus takes its name from it when no earlier file did:
    /// loadable and, on the system bus, named `<Name>.service`.
    provides: bool,
}

/// Resolved service files, kept per directory as read (collecting them
/// into one vector would copy them all while both exist).
#[derive(Debug, Default)]
pub struct Names {
    dirs: Vec<Vec<Provider>>,
    /// (directory, file) of every provider, sorted by path bytes: 8 bytes
    /// a file where a map keyed by path held a second copy of each path.
    by_path: Vec<(u32, u32)>,
}

impl Names {
    fn new(dirs: Vec<Vec<Provider>>) -> Names {
        let mut by_path: Vec<(u32, u32)> = Vec::with_capacity(dirs.iter().map(Vec::len).sum());
        for (i, files) in dirs.iter().enumerate() {
            for j in 0..files.len() {
                if let (Ok(i), Ok(j)) = (u32::try_from(i), u32::try_from(j)) {
                    by_path.push((i, j));
                }
            }
        }
        let key = |&(i, j): &(u32, u32)| dirs[i as usize][j as usize].path.as_os_str().as_bytes();
        by_path.sort_by(|a, b| key(a).cmp(key(b)).then(a.cmp(b)));
        Names { dirs, by_path }
    }

    fn at(&self, (i, j): (u32, u32)) -> &Provider {
        &self.dirs[i as usize][j as usize]
    }

    /// Every judged file.
    pub fn providers(&self) -> impl Iterator<Item = &Provider> {
        self.dirs.iter().flatten()
    }

    /// The provider judged at `path`; when two buses judge one path, the
    /// first judged (system bus, shared session order, users by uid).
    pub fn get(&self, path: &Path) -> Option<&Provider> {
        let want = path.as_os_str().as_bytes();
        let at = self
            .by_path
            .partition_point(|&k| self.at(k).path.as_os_str().as_bytes() < want);
        let p = self.at(*self.by_path.get(at)?);
        (p.path.as_os_str().as_bytes() == want).then_some(p)
    }

    /// The file `bus` (for a session bus, `uid`'s) uses for `name`.
    pub fn effective(&self, bus: Bus, uid: Option<u32>, name: &str) -> Option<&Provider> {
        self.for_bus(bus, uid)
            .filter(|p| p.effective == Some(true) && p.name.as_deref() == Some(name))
            .min_by_key(|p| (p.owner_uid.is_none(), p.search_order))
    }

    /// Effective files `bus` (for a session bus, `uid`'s) reads, own ones first.
    pub fn for_bus(&self, bus: Bus, uid: Option<u32>) -> impl Iterator<Item = &Provider> {
        self.providers()
            .filter(move |p| p.bus == bus && (p.owner_uid.is_none() || p.owner_uid == uid))
    }
}

/// Where a session directory comes in a user's search order.
fn session_rank(dir: &ServiceDir) -> u8 {
    match (dir.origin, dir.owner.is_some()) {
        (Origin::Xdg, true) => 0,
        (Origin::Home, _) => 1,
        (Origin::Flatpak, true) => 2,
        (Origin::Flatpak, false) => 3,
        (Origin::Standard | Origin::Xdg, false) => 4,
        (Origin::Snap, _) => 5,
        (Origin::Config, _) => 6,
        (Origin::Standard, true) => 4,
    }
}

/// The highest rank of a user's own directories: every shared one ranks
/// after it.
const LAST_OWN_RANK: u8 = 2;

/// A directory's identity: one directory under two spellings reads once.
type Id = ((u32, u32), u64);

/// The services directories of `dirs`, the only ones a bus reads
/// `.service` files from.
fn services_dirs<'d>(dirs: impl IntoIterator<Item = &'d ServiceDir>) -> Vec<&'d ServiceDir> {
    dirs.into_iter()
        .filter(|d| d.role == Role::Services)
        .collect()
}

/// The orders of `sel` (by index): the system bus's, and the session
/// directories in the order a user's bus reads them (a user's order is
/// this, less other users' directories).
fn orders(sel: &[&ServiceDir]) -> (Vec<usize>, Vec<usize>) {
    let system = (0..sel.len())
        .filter(|&i| sel[i].bus == Bus::System)
        .collect();
    let mut session: Vec<usize> = (0..sel.len())
        .filter(|&i| sel[i].bus == Bus::Session)
        .collect();
    session.sort_by_key(|&i| session_rank(sel[i]));
    (system, session)
}

fn owner(dir: &ServiceDir) -> Option<u32> {
    dir.owner.as_ref().map(|o| o.uid)
}

/// One services directory read in full.
struct DirRead {
    id: Id,
    files: Vec<Provider>,
}

/// What cannot be read is reported as a blind spot (a table that lists the
/// same directory reports the same paths, counted once) and left out.
fn read_dir(root: &Root, dir: &ServiceDir) -> Option<DirRead> {
    let open = service_dirs::open(root, dir)
        .map_err(|e| e.report_blind())
        .ok()??;
    let files = open
        .entries(dir)
        .into_iter()
        .filter_map(|e| e.map_err(|e| e.report_blind()).ok())
        .filter(|e| dir.kind_of(&e.name) == EntryKind::Service)
        .filter_map(|e| read_one(&open, dir, &e.name))
        .collect();
    Some(DirRead {
        id: (open.meta.dev, open.meta.ino),
        files,
    })
}

/// A file by (index in `sel`, index in its directory's files).
type At = (u32, u32);

fn at(i: usize, j: usize) -> At {
    (
        u32::try_from(i).unwrap_or(u32::MAX),
        u32::try_from(j).unwrap_or(u32::MAX),
    )
}

/// The first file providing each name over some directories.
type First<'a> = foldhash::HashMap<&'a str, At>;

/// A file's verdict, written into its `Provider` once no name borrows it.
struct Verdict {
    at: At,
    effective: Option<bool>,
    shadowed_by: Option<PathBuf>,
}

/// What judging the orders found, by index in `sel`.
struct Judged {
    /// Each directory's place in the order that judged it; 0 for one that
    /// was not (absent, or another spelling of an earlier one).
    search_order: Vec<u32>,
    verdicts: Vec<Verdict>,
}

/// Judges the files of `order`'s directories owned by `uid` (for `None`,
/// the shared ones): the first file providing a name keeps it. `later`
/// holds the first providers of directories read after all of `order`
/// (the shared order after a user's own directories). Returns the first
/// providers of `order`.
fn judge<'a>(
    sel: &[&ServiceDir],
    read: &'a [Option<DirRead>],
    order: &[usize],
    uid: Option<u32>,
    later: Option<&First<'a>>,
    out: &mut Judged,
) -> First<'a> {
    let mut seen: Vec<Id> = Vec::new();
    let unique: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| {
            read[i].as_ref().is_some_and(|r| {
                let new = !seen.contains(&r.id);
                if new {
                    seen.push(r.id);
                }
                new
            })
        })
        .collect();
    let mut first = First::default();
    for &i in &unique {
        let Some(r) = &read[i] else { continue };
        for (j, f) in r.files.iter().enumerate() {
            if let Some(n) = f.name.as_deref().filter(|_| f.provides) {
                first.entry(n).or_insert(at(i, j));
            }
        }
    }
    let path = |(i, j): At| {
        read[i as usize]
            .as_ref()
            .map(|r| r.files[j as usize].path.clone())
    };
    for (pos, &i) in unique.iter().enumerate() {
        let Some(r) = read[i].as_ref().filter(|_| owner(sel[i]) == uid) else {
            continue;
        };
        out.search_order[i] = u32::try_from(pos + 1).unwrap_or(u32::MAX);
        for (j, f) in r.files.iter().enumerate() {
            let (effective, shadowed_by) = match f.name.as_deref() {
                None => (None, None),
                Some(n) => match first.get(n).or_else(|| later.and_then(|l| l.get(n))) {
                    Some(&w) if w == at(i, j) => (Some(true), None),
                    w => (Some(false), w.and_then(|&w| path(w))),
                },
            };
            if effective.is_some() {
                out.verdicts.push(Verdict {
                    at: at(i, j),
                    effective,
                    shadowed_by,
                });
            }
        }
    }
    first
}

/// Reads every service directory of `dirs` inside `root` and resolves
/// which file wins each name, per bus. `dirs` may leave out those
/// discovery found absent (`Discovered::present`): nothing to open there.
pub fn resolve<'d>(root: &Root, dirs: impl IntoIterator<Item = &'d ServiceDir>) -> Names {
    let sel = services_dirs(dirs);
    let read: Vec<Option<DirRead>> = sel.iter().map(|d| read_dir(root, d)).collect();
    let (system, session) = orders(&sel);
    let named = read
        .iter()
        .flatten()
        .flat_map(|r| &r.files)
        .filter(|f| f.name.is_some())
        .count();
    let mut out = Judged {
        search_order: vec![0; sel.len()],
        verdicts: Vec::with_capacity(named),
    };
    judge(&sel, &read, &system, None, None, &mut out);
    let shared: Vec<usize> = session
        .iter()
        .copied()
        .filter(|&i| owner(sel[i]).is_none())
        .collect();
    let shared_first = judge(&sel, &read, &shared, None, None, &mut out);
    // Each user's own directories, in order, grouped by uid.
    let mut own: Vec<(u32, usize)> = session
        .iter()
        .filter_map(|&i| owner(sel[i]).map(|u| (u, i)))
        .collect();
    own.sort_by_key(|&(u, _)| u);
    for group in own.chunk_by(|a, b| a.0 == b.0) {
        let uid = group[0].0;
        let mine: Vec<usize> = group.iter().map(|&(_, i)| i).collect();
        // The user's directories all come before the shared ones, so the
        // shared order's first providers answer what the user's leave
        // open: no pass over the shared files per user. A shared directory
        // that is one of the user's under another spelling is left out of
        // the user's order, but every name it provides was provided
        // earlier by that own spelling, so it changes no verdict.
        if mine.iter().all(|&i| session_rank(sel[i]) <= LAST_OWN_RANK) {
            judge(&sel, &read, &mine, Some(uid), Some(&shared_first), &mut out);
        } else {
            let order: Vec<usize> = session
                .iter()
                .copied()
                .filter(|&i| owner(sel[i]).is_none_or(|u| u == uid))
                .collect();
            judge(&sel, &read, &order, Some(uid), None, &mut out);
        }
    }
    drop(shared_first);
    // Files of a directory no order judged are left out.
    let mut dirs: Vec<Vec<Provider>> = read
        .into_iter()
        .zip(&out.search_order)
        .map(|(r, &order)| match r {
            Some(r) if order > 0 => {
                let mut files = r.files;
                for f in &mut files {
                    f.search_order = order;
                }
                files
            }
            _ => Vec::new(),
        })
        .collect();
    for v in out.verdicts {
        let f = &mut dirs[v.at.0 as usize][v.at.1 as usize];
        f.effective = v.effective;
        f.shadowed_by = v.shadowed_by;
    }
    Names::new(dirs)
}

/// The verdicts [`resolve`] would give the files at `paths`, reading only
/// what can change them (see the module doc). A path that names no
/// service file of a services directory has none.
pub fn resolve_paths<'d>(
    root: &Root,
    dirs: impl IntoIterator<Item = &'d ServiceDir>,
    paths: &[PathBuf],
) -> Names {
    let sel = services_dirs(dirs);
    let (system, session) = orders(&sel);
    let mut providers = Vec::new();
    for p in paths {
        let (Some(parent), Some(file)) = (p.parent(), p.file_name()) else {
            continue;
        };
        let parent = parent.as_os_str().as_bytes();
        let mut cands: Vec<usize> = (0..sel.len())
            .filter(|&i| sel[i].path.as_os_str().as_bytes() == parent)
            .collect();
        // The order `resolve` judges in: the first judgement is the one
        // `Names::get` returns.
        cands.sort_by_key(|&i| (sel[i].bus == Bus::Session, owner(sel[i])));
        for c in cands {
            let order: Vec<usize> = match (sel[c].bus, owner(sel[c])) {
                (Bus::System, _) => system.clone(),
                (Bus::Session, uid) => session
                    .iter()
                    .copied()
                    .filter(|&i| owner(sel[i]).is_none_or(|u| Some(u) == uid))
                    .collect(),
            };
            if let Some(found) = judge_one(root, &sel, &order, c, file) {
                providers.push(found);
                break;
            }
        }
    }
    Names::new(vec![providers])
}

/// An order's directories opened one at a time, each under its first
/// spelling only.
struct Walk<'s, 'd> {
    root: &'s Root,
    sel: &'s [&'d ServiceDir],
    order: &'s [usize],
    next: usize,
    seen: Vec<Id>,
}

impl Walk<'_, '_> {
    /// The next directory of the order that opens and was not met before.
    fn next_dir(&mut self) -> Option<(usize, OpenDir)> {
        while let Some(&i) = self.order.get(self.next) {
            self.next += 1;
            let Ok(Some(open)) = service_dirs::open(self.root, self.sel[i]) else {
                continue;
            };
            let id = (open.meta.dev, open.meta.ino);
            if !self.seen.contains(&id) {
                self.seen.push(id);
                return Some((i, open));
            }
        }
        None
    }
}

/// The first file of `dir` providing `name` on `bus`, in listing order,
/// leaving out `skip` (the file being judged). On the system bus only
/// `<name>.service` can: one probe instead of a listing.
fn provider_in(
    open: &OpenDir,
    dir: &ServiceDir,
    bus: Bus,
    name: &str,
    skip: Option<&OsStr>,
) -> Option<PathBuf> {
    let provides = |l: &Provider| l.provides && l.name.as_deref() == Some(name);
    let read = |file: &OsStr| {
        if skip == Some(file) || dir.kind_of(file) != EntryKind::Service {
            return None;
        }
        read_one(open, dir, file).filter(provides)
    };
    if bus == Bus::System {
        let mut file = OsString::from(name);
        file.push(".service");
        if !dir.lists(&file) {
            return None;
        }
        return read(&file).map(|l| l.path);
    }
    open.entries(dir)
        .into_iter()
        .filter_map(Result::ok)
        .find_map(|e| read(&e.name))
        .map(|l| l.path)
}

/// The file `file` of the directory `sel[at]` of `order`, judged as
/// [`resolve`] would, reading the order only as far as its verdict needs.
fn judge_one(
    root: &Root,
    sel: &[&ServiceDir],
    order: &[usize],
    at: usize,
    file: &OsStr,
) -> Option<Provider> {
    let dir = sel[at];
    if !dir.lists(file) || dir.kind_of(file) != EntryKind::Service {
        return None;
    }
    let mut walk = Walk {
        root,
        sel,
        order,
        next: 0,
        seen: Vec::new(),
    };
    // Every directory before it is opened: they number it, and one of
    // them may be it under another spelling (it is then not judged here).
    let place = order.iter().position(|&i| i == at)?;
    let mut before: Vec<(usize, OpenDir)> = Vec::new();
    let own = loop {
        let (i, open) = walk.next_dir()?;
        if i == at {
            break open;
        }
        if walk.next > place {
            return None;
        }
        before.push((i, open));
    };
    let mut found = read_one(&own, dir, file)?;
    found.search_order = u32::try_from(before.len() + 1).unwrap_or(u32::MAX);
    let Some(name) = found.name.clone() else {
        return Some(found);
    };
    let name = name.as_str();
    let (bus, provides) = (dir.bus, found.provides);
    found.effective = Some(false);
    // An earlier directory's provider shadows it.
    if let Some(w) = before
        .iter()
        .find_map(|(i, open)| provider_in(open, sel[*i], bus, name, None))
    {
        found.shadowed_by = Some(w);
        return Some(found);
    }
    drop(before);
    if bus == Bus::System {
        // Its own directory holds one `<name>.service` at most: itself
        // when it provides.
        if provides {
            found.effective = Some(true);
            return Some(found);
        }
        found.shadowed_by = provider_in(&own, dir, bus, name, Some(file));
    } else {
        // Listing order decides within the directory: a provider listed
        // before it shadows it; listed after, it names the provider only
        // when it does not provide itself.
        for e in own.entries(dir).into_iter().filter_map(Result::ok) {
            if e.name == file {
                if provides {
                    found.effective = Some(true);
                    return Some(found);
                }
                continue;
            }
            if dir.kind_of(&e.name) != EntryKind::Service {
                continue;
            }
            if let Some(l) = read_one(&own, dir, &e.name) {
                if l.provides && l.name.as_deref() == Some(name) {
                    found.shadowed_by = Some(l.path);
                    return Some(found);
                }
            }
        }
        // Not listed (gone since): as if it did not provide.
    }
    // It provides nothing: the first provider of the rest of the order is
    // the one it names.
    while found.shadowed_by.is_none() {
        let Some((i, open)) = walk.next_dir() else {
            break;
        };
        found.shadowed_by = provider_in(&open, sel[i], bus, name, None);
    }
    Some(found)
}

/// Reads one regular `.service` entry of `open` without following it;
/// `None` when it cannot be read (the row's error is `dbus_service_files`'
/// to give; a refusal is reported as a blind spot here too, for the tables
/// that only resolve names). Its own `statx` is the probe before the open,
/// and the read is sized by the `fstat` after it, as for the table's rows:
/// five syscalls. Not judged yet: no place in an order, no verdict.
fn read_one(open: &OpenDir, dir: &ServiceDir, name: &OsStr) -> Option<Provider> {
    let shown = || fs_safe::render_path(&dir.entry_path(name));
    // The path is built only for a report: not on the common path.
    let meta = stat::stat_entry(open.fd(), name, PathBuf::new())
        .map_err(|e| crate::blind::report_os_error(service_dirs::CANNOT_STAT, &e, &shown()))
        .ok()?;
    if meta.kind != FileKind::Regular {
        return None;
    }
    let path = dir.entry_path(name);
    let (bytes, truncated) = fs_safe::open_entry_as_stated(open.fd(), name, &path, meta.id())
        .and_then(|o| o.read_capped(service_file::MAX_SERVICE_FILE_BYTES, &path))
        .map_err(|e| crate::blind::report_os_error(service_dirs::CANNOT_READ, &e, &shown()))
        .ok()?;
    let parsed = service_file::parse(&bytes).ok()?;
    let filename_ok = parsed
        .name
        .as_ref()
        .is_some_and(|n| name.as_bytes().strip_suffix(b".service") == Some(n.as_bytes()));
    let loadable = parsed.problems.is_empty() && !truncated;
    Some(Provider {
        path,
        bus: dir.bus,
        owner_uid: owner(dir),
        search_order: 0,
        name: parsed.name,
        systemd_service: parsed.systemd_service,
        effective: None,
        shadowed_by: None,
        provides: loadable && (dir.bus == Bus::Session || filename_ok),
    })
}
