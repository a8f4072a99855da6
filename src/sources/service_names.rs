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
use crate::sources::fs_safe::{self, Root};
use crate::sources::service_dirs::{self, Bus, EntryKind, Origin, ServiceDir};
use crate::sources::service_file;
use std::collections::HashMap;
use std::ffi::OsStr;
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
    /// `Exec=` split as the bus splits it.
    pub exec: Option<Vec<String>>,
    pub systemd_service: Option<String>,
    /// Whether the bus uses this file for its name; `None` when it names
    /// nothing the bus would load.
    pub effective: Option<bool>,
    /// The file the bus uses instead, when not effective.
    pub shadowed_by: Option<PathBuf>,
}

/// Every service file of a root, resolved.
#[derive(Debug, Default)]
pub struct Names {
    pub providers: Vec<Provider>,
    by_path: HashMap<PathBuf, usize>,
}

impl Names {
    pub fn get(&self, path: &Path) -> Option<&Provider> {
        self.by_path.get(path).map(|&i| &self.providers[i])
    }

    /// The file `bus` (for a session bus, `uid`'s) uses for `name`.
    pub fn effective(&self, bus: Bus, uid: Option<u32>, name: &str) -> Option<&Provider> {
        self.for_bus(bus, uid)
            .filter(|p| p.effective == Some(true) && p.name.as_deref() == Some(name))
            .min_by_key(|p| (p.owner_uid.is_none(), p.search_order))
    }

    /// Effective files `bus` (for a session bus, `uid`'s) reads, own ones first.
    pub fn for_bus(&self, bus: Bus, uid: Option<u32>) -> impl Iterator<Item = &Provider> {
        self.providers
            .iter()
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

/// A parsed file in listing order, with what the bus would make of it.
struct Listed {
    path: PathBuf,
    filename_ok: bool,
    loadable: bool,
    name: Option<String>,
    exec: Option<Vec<String>>,
    systemd_service: Option<String>,
}

/// Reads every service directory of `dirs` inside `root` and resolves
/// which file wins each name, per bus.
pub fn resolve(root: &Root, dirs: &[ServiceDir]) -> Names {
    let mut listed: Vec<(ServiceDir, Vec<Listed>)> = Vec::new();
    service_dirs::visit(root, dirs, |dir, opened| {
        let Ok(open) = opened else {
            return;
        };
        let mut files = Vec::new();
        for entry in open.entries(dir).into_iter().filter_map(Result::ok) {
            if dir.kind_of(&entry.name) != EntryKind::Service {
                continue;
            }
            let path = dir.entry_path(&entry.name);
            if let Some(l) = read_one(open.fd(), &entry.name, path) {
                files.push(l);
            }
        }
        listed.push((dir.clone(), files));
    });
    let mut names = Names::default();
    // The system bus, then the shared session order, then each user's.
    let system: Vec<usize> = (0..listed.len())
        .filter(|&i| listed[i].0.bus == Bus::System)
        .collect();
    decide(&mut names, &listed, &system, Bus::System, None);
    let mut session: Vec<usize> = (0..listed.len())
        .filter(|&i| listed[i].0.bus == Bus::Session)
        .collect();
    session.sort_by_key(|&i| session_rank(&listed[i].0));
    let shared: Vec<usize> = session
        .iter()
        .copied()
        .filter(|&i| listed[i].0.owner.is_none())
        .collect();
    decide(&mut names, &listed, &shared, Bus::Session, None);
    let mut uids: Vec<u32> = session
        .iter()
        .filter_map(|&i| listed[i].0.owner.as_ref().map(|o| o.uid))
        .collect();
    uids.sort_unstable();
    uids.dedup();
    for uid in uids {
        let order: Vec<usize> = session
            .iter()
            .copied()
            .filter(|&i| listed[i].0.owner.as_ref().is_none_or(|o| o.uid == uid))
            .collect();
        decide(&mut names, &listed, &order, Bus::Session, Some(uid));
    }
    names
}

/// First provider wins, over `order`; records the files of directories
/// owned by `uid` (or, for `uid = None`, the shared ones).
fn decide(
    names: &mut Names,
    listed: &[(ServiceDir, Vec<Listed>)],
    order: &[usize],
    bus: Bus,
    uid: Option<u32>,
) {
    let mut winner: HashMap<&str, &Path> = HashMap::new();
    for (pos, &i) in order.iter().enumerate() {
        let (dir, files) = &listed[i];
        let owner = dir.owner.as_ref().map(|o| o.uid);
        let record = owner == uid;
        for f in files {
            let provides = f.loadable && (bus == Bus::Session || f.filename_ok);
            let (effective, shadowed_by) = match f.name.as_deref() {
                None => (None, None),
                Some(name) => match winner.get(name) {
                    Some(w) => (Some(false), Some(w.to_path_buf())),
                    None if provides => {
                        winner.insert(name, &f.path);
                        (Some(true), None)
                    }
                    None => (Some(false), None),
                },
            };
            if !record {
                continue;
            }
            names.by_path.insert(f.path.clone(), names.providers.len());
            names.providers.push(Provider {
                path: f.path.clone(),
                bus,
                owner_uid: owner,
                search_order: u32::try_from(pos + 1).unwrap_or(u32::MAX),
                name: f.name.clone(),
                exec: f.exec.clone(),
                systemd_service: f.systemd_service.clone(),
                effective,
                shadowed_by,
            });
        }
    }
    // A file refused for its name but listed before the real provider
    // learns who provides the name once the whole order is known.
    for p in names.providers.iter_mut() {
        if p.bus == bus
            && p.owner_uid == uid
            && p.effective == Some(false)
            && p.shadowed_by.is_none()
        {
            if let Some(w) = p.name.as_deref().and_then(|n| winner.get(n)) {
                p.shadowed_by = Some(w.to_path_buf());
            }
        }
    }
}

/// Reads one regular `.service` entry without following it; `None` when
/// it cannot be read (the error is `dbus_service_files`' to report).
fn read_one(dirfd: rustix::fd::BorrowedFd<'_>, name: &OsStr, path: PathBuf) -> Option<Listed> {
    let file = fs_safe::open_entry_regular(dirfd, name, &path).ok()?;
    let (bytes, truncated) =
        fs_safe::read_capped(file, service_file::MAX_SERVICE_FILE_BYTES, &path).ok()?;
    let parsed = service_file::parse(&bytes).ok()?;
    let filename_ok = parsed.name.as_ref().is_some_and(|n| {
        let mut want = n.as_bytes().to_vec();
        want.extend_from_slice(b".service");
        want == name.as_bytes()
    });
    Some(Listed {
        path,
        filename_ok,
        loadable: parsed.problems.is_empty() && !truncated,
        exec: parsed
            .exec
            .as_deref()
            .and_then(|e| service_file::split_exec(e).ok()),
        name: parsed.name,
        systemd_service: parsed.systemd_service,
    })
}
