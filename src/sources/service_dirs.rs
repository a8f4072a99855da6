//! Where D-Bus looks for service, policy and config files, and what is in
//! those directories.
//!
//! [`discover`] lists, in this order: the standard directories of the
//! system and session buses; the `$XDG_DATA_DIRS` defaults; per account in
//! the root's passwd file `~/.local/share/dbus-1/services` and the user's
//! flatpak exports, then per uid `$XDG_RUNTIME_DIR/dbus-1/services`
//! (`/run/user/<uid>`); the system flatpak exports; snapd's directories; and
//! last every `<servicedir>`, `<includedir>` and `<include>` reachable from
//! the bus configs and policy fragments (`sources::bus_config`). Each is a
//! [`ServiceDir`] that says which bus reads it, what role it plays, how it
//! was found and (for a home) whose it is. [`visit`] opens them in that
//! order inside the root (`sources::fs_safe`), drops a directory already
//! seen under another path (merged `/usr`, a home linked to another home,
//! a config naming a standard directory) so the first source wins, and
//! hands each to the caller; [`OpenDir::entries`] lists one without
//! recursing. A directory named in two roles (a `<servicedir>` pointing at
//! `system.d`) is listed once, its entries classified both ways. Metadata
//! of the entries is left to `sources::stat`.
//!
//! The `$XDG_DATA_DIRS` defaults (`/usr/local/share`, `/usr/share`) lead to
//! the same `dbus-1/services` directories as the standard session list,
//! which comes first, so on a stock system they show as `standard`; they
//! are kept so that the list stays complete if the standard one changes.
use crate::sources::accounts;
use crate::sources::bus_config::{self, Directive};
use crate::sources::fs_safe::{FsError, Root};
use crate::sources::stat::{self, FileKind, Metadata, StatError};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Which bus reads a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bus {
    System,
    Session,
}

impl Bus {
    pub fn as_str(self) -> &'static str {
        match self {
            Bus::System => "system",
            Bus::Session => "session",
        }
    }
}

/// What the bus does with the files of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `*.service` activation files (`services`, `system-services`,
    /// `accessibility-services`).
    Services,
    /// `*.conf` policy fragments (`system.d`, `session.d`).
    Policy,
    /// The main bus configuration: only the file named in
    /// [`ServiceDir::only`] is read from this directory.
    Config,
}

/// Why a directory is on the list; the `source` column shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Compiled into dbus-daemon / dbus-broker.
    Standard,
    /// Named only by a bus config file (`<servicedir>`, `<includedir>`,
    /// `<include>`).
    Config,
    /// The per-user session services directory of an account's home.
    Home,
    /// A `$XDG_DATA_DIRS` default, or a user's `$XDG_RUNTIME_DIR`.
    Xdg,
    /// Flatpak's exports, system-wide or in a home.
    Flatpak,
    /// snapd's D-Bus directories.
    Snap,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Standard => "standard",
            Origin::Config => "config",
            Origin::Home => "home",
            Origin::Xdg => "xdg",
            Origin::Flatpak => "flatpak",
            Origin::Snap => "snap",
        }
    }
}

/// The account a per-user directory belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    pub uid: u32,
    pub username: String,
    /// The account's home as seen inside the root: its per-user systemd
    /// unit directories live there too.
    pub home: PathBuf,
}

/// One directory a bus reads, as seen inside the root and not canonicalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceDir {
    pub path: PathBuf,
    pub bus: Bus,
    pub role: Role,
    /// For [`Role::Config`]: the one file read from this directory.
    pub only: Option<OsString>,
    pub owner: Option<Owner>,
    pub origin: Origin,
    /// Roles of later entries naming the same directory (say a
    /// `<servicedir>` pointing at `system.d`): the bus reads it both ways,
    /// so its entries are classified both ways.
    pub also: Vec<Role>,
}

/// What a file found in a [`ServiceDir`] is to the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Service,
    Policy,
    Config,
    Other,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Service => "service",
            EntryKind::Policy => "policy",
            EntryKind::Config => "config",
            EntryKind::Other => "other",
        }
    }
}

impl ServiceDir {
    fn standard(path: &str, bus: Bus, role: Role, only: Option<&'static str>) -> ServiceDir {
        ServiceDir {
            path: PathBuf::from(path),
            bus,
            role,
            only: only.map(OsString::from),
            owner: None,
            origin: Origin::Standard,
            also: Vec::new(),
        }
    }

    fn with_origin(mut self, origin: Origin) -> ServiceDir {
        self.origin = origin;
        self
    }

    /// Classifies an entry by its name, as the bus would: it loads
    /// `*.service` (dot-files too) from a services directory and `*.conf`
    /// from a policy directory, following symlinks, so the name decides,
    /// not the file type.
    pub fn kind_of(&self, name: &OsStr) -> EntryKind {
        let name = name.as_bytes();
        std::iter::once(self.role)
            .chain(self.also.iter().copied())
            .map(|role| match role {
                Role::Services if name.ends_with(b".service") => EntryKind::Service,
                Role::Policy if name.ends_with(b".conf") => EntryKind::Policy,
                Role::Config if self.only.as_ref().is_some_and(|o| o.as_bytes() == name) => {
                    EntryKind::Config
                }
                _ => EntryKind::Other,
            })
            .find(|k| *k != EntryKind::Other)
            .unwrap_or(EntryKind::Other)
    }

    /// Whether a full scan lists an entry of this name here.
    pub fn lists(&self, name: &OsStr) -> bool {
        let n = name.as_bytes();
        !n.is_empty()
            && n != b"."
            && n != b".."
            && !n.contains(&b'/')
            && self.only.as_ref().is_none_or(|o| o.as_bytes() == n)
    }

    /// The path of an entry of this directory, as seen inside the root.
    pub fn entry_path(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// The directory below which the owning account controls every path
    /// component (its home, or `/run/user/<uid>`), or `None` when only
    /// root can change the path. Code running as root must not follow a
    /// symlink below it: the account could point it anywhere.
    pub fn user_base(&self) -> Option<&Path> {
        let owner = self.owner.as_ref()?;
        if self.path.starts_with(&owner.home) {
            return Some(&owner.home);
        }
        // `runtime_dirs`: /run/user/<uid>/dbus-1/services.
        self.path.ancestors().nth(2)
    }
}

/// The directories every root is searched for, system bus first, in the
/// order dbus-daemon reads them.
pub fn standard_dirs() -> Vec<ServiceDir> {
    use Bus::*;
    use Role::*;
    let d = ServiceDir::standard;
    vec![
        d("/usr/share/dbus-1", System, Config, Some("system.conf")),
        d(
            "/usr/share/dbus-1",
            System,
            Config,
            Some("system-local.conf"),
        ),
        d("/etc/dbus-1", System, Config, Some("system.conf")),
        d("/etc/dbus-1", System, Config, Some("system-local.conf")),
        d("/usr/share/dbus-1/system.d", System, Policy, None),
        d("/etc/dbus-1/system.d", System, Policy, None),
        // Local admin directories, searched before the standard ones by
        // dbus 1.14+ (`_dbus_get_local_system_servicedirs`).
        d("/etc/dbus-1/system-services", System, Services, None),
        d("/run/dbus-1/system-services", System, Services, None),
        d(
            "/usr/local/share/dbus-1/system-services",
            System,
            Services,
            None,
        ),
        d("/usr/share/dbus-1/system-services", System, Services, None),
        d("/lib/dbus-1/system-services", System, Services, None),
        d("/usr/share/dbus-1", Session, Config, Some("session.conf")),
        d(
            "/usr/share/dbus-1",
            Session,
            Config,
            Some("session-local.conf"),
        ),
        d("/etc/dbus-1", Session, Config, Some("session.conf")),
        d("/etc/dbus-1", Session, Config, Some("session-local.conf")),
        d("/usr/share/dbus-1/session.d", Session, Policy, None),
        d("/etc/dbus-1/session.d", Session, Policy, None),
        d("/usr/local/share/dbus-1/services", Session, Services, None),
        d("/usr/share/dbus-1/services", Session, Services, None),
        d(
            "/usr/local/share/dbus-1/accessibility-services",
            Session,
            Services,
            None,
        ),
        d(
            "/usr/share/dbus-1/accessibility-services",
            Session,
            Services,
            None,
        ),
    ]
}

/// The session services directories under the `$XDG_DATA_DIRS` default
/// (`/usr/local/share:/usr/share`). A bus started with another value is
/// not known to a scan of files.
pub fn xdg_dirs() -> Vec<ServiceDir> {
    [
        "/usr/local/share/dbus-1/services",
        "/usr/share/dbus-1/services",
    ]
    .into_iter()
    .map(|p| ServiceDir::standard(p, Bus::Session, Role::Services, None).with_origin(Origin::Xdg))
    .collect()
}

/// Flatpak's system-wide exports and snapd's directories.
pub fn package_system_dirs() -> Vec<ServiceDir> {
    let d = |p, bus, origin| ServiceDir::standard(p, bus, Role::Services, None).with_origin(origin);
    vec![
        d(
            "/var/lib/flatpak/exports/share/dbus-1/services",
            Bus::Session,
            Origin::Flatpak,
        ),
        d("/var/lib/snapd/dbus-1/services", Bus::Session, Origin::Snap),
        d(
            "/var/lib/snapd/dbus-1/system-services",
            Bus::System,
            Origin::Snap,
        ),
    ]
}

/// Per account, one per distinct home (the first account listing a home
/// owns it): `~/.local/share/dbus-1/services` (`$XDG_DATA_HOME`'s default)
/// and the user's flatpak exports. Homes are taken as written in passwd:
/// relative ones count from the root, empty ones are skipped.
pub fn home_dirs(accounts: &[accounts::Account]) -> Vec<ServiceDir> {
    let mut homes = HashSet::new();
    let mut out = Vec::new();
    for a in accounts {
        if a.directory.is_empty() || !homes.insert(a.directory.as_str()) {
            continue;
        }
        let home = Path::new("/").join(&a.directory);
        for (sub, origin) in [
            (".local/share/dbus-1/services", Origin::Home),
            (
                ".local/share/flatpak/exports/share/dbus-1/services",
                Origin::Flatpak,
            ),
        ] {
            out.push(ServiceDir {
                path: home.join(sub),
                bus: Bus::Session,
                role: Role::Services,
                only: None,
                owner: Some(Owner {
                    uid: a.uid,
                    username: a.username.clone(),
                    home: home.clone(),
                }),
                origin,
                also: Vec::new(),
            });
        }
    }
    out
}

/// `$XDG_RUNTIME_DIR/dbus-1/services` of each distinct uid
/// (`/run/user/<uid>`): dbus-daemon's standard session directories put it
/// first, for transient services written at runtime. It lives in a tmpfs,
/// so it is usually empty on a dead box.
pub fn runtime_dirs(accounts: &[accounts::Account]) -> Vec<ServiceDir> {
    let mut uids = HashSet::new();
    accounts
        .iter()
        .filter(|a| uids.insert(a.uid))
        .map(|a| ServiceDir {
            path: PathBuf::from(format!("/run/user/{}/dbus-1/services", a.uid)),
            bus: Bus::Session,
            role: Role::Services,
            only: None,
            owner: Some(Owner {
                uid: a.uid,
                username: a.username.clone(),
                home: Path::new("/").join(&a.directory),
            }),
            origin: Origin::Xdg,
            also: Vec::new(),
        })
        .collect()
}

/// Caps the passwd read; a real one is far smaller.
const MAX_PASSWD_BYTES: u64 = 64 * 1024 * 1024;

/// The directory list of a root plus what went wrong reading its bus
/// configs.
#[derive(Debug, Default)]
pub struct Discovered {
    pub dirs: Vec<ServiceDir>,
    /// Config files that could not be read or parsed, by path inside the
    /// root, with the reason (a config including a missing file is named
    /// here too).
    pub config_errors: Vec<(PathBuf, String)>,
    /// Every policy rule of the configs, in the order each bus merges them.
    pub policy_rules: Vec<bus_config::FoundRule<Bus>>,
    /// Whether each of `dirs` was found absent (ENOENT) while discovering,
    /// so [`visit`] need not walk its path again: most per-user directories
    /// do not exist, so a second walk would repeat a failed resolution per
    /// account for nothing.
    pub absent: Vec<bool>,
    /// For [`discover_narrowed`], which of `dirs` the scan can reach;
    /// empty after a full discovery (all of them).
    pub reachable: Vec<bool>,
    /// The directories the probes opened for [`visit`] (`merge_roles`):
    /// held here (never read), so they are closed when this is dropped.
    _kept: Vec<Arc<OwnedFd>>,
}

impl Discovered {
    /// The directories worth opening: all but those found absent.
    pub fn present(&self) -> impl Iterator<Item = &ServiceDir> {
        self.dirs
            .iter()
            .zip(self.absent.iter().copied().chain(std::iter::repeat(false)))
            .filter(|(_, absent)| !absent)
            .map(|(d, _)| d)
    }

    /// How many of [`Discovered::present`] a scan must open to reach every
    /// reachable directory: up to the last reachable one.
    pub fn present_through_last_reachable(&self) -> usize {
        if self.reachable.is_empty() {
            return usize::MAX;
        }
        let present =
            (0..self.dirs.len()).filter(|&i| !self.absent.get(i).copied().unwrap_or(false));
        present
            .enumerate()
            .filter(|&(_, i)| self.reachable.get(i).copied().unwrap_or(true))
            .last()
            .map_or(0, |(n, _)| n + 1)
    }
}

/// Every directory to search under `root`, in the order described in the
/// module doc. passwd is read through the root, so an image's
/// `/etc/passwd` symlink cannot point at the host's. An unreadable passwd
/// is logged and leaves the system-wide directories.
pub fn discover(root: &Root) -> Discovered {
    discover_with(root, None)
}

/// [`discover`] for a scan that lists only the directories `reachable`
/// accepts (a `path =` or `directory =` lookup). Only what can change
/// those directories' rows is probed: the reachable ones, and those of
/// another role, which may turn out to be one of them under another
/// spelling and lend it their role. The many per-user directories share
/// the `services` role, so a lookup in a system directory skips their
/// probes; [`visit`] still opens every directory before the last reachable
/// one, so which path of a directory comes first is decided as in a full
/// scan. Unprobed directories count as present.
pub fn discover_narrowed(root: &Root, reachable: &dyn Fn(&ServiceDir) -> bool) -> Discovered {
    discover_with(root, Some(reachable))
}

fn discover_with(root: &Root, reachable: Option<&dyn Fn(&ServiceDir) -> bool>) -> Discovered {
    let mut dirs = standard_dirs();
    dirs.extend(xdg_dirs());
    match root.read_regular(Path::new("/etc/passwd"), MAX_PASSWD_BYTES) {
        Ok(bytes) => {
            let accounts = accounts::parse_passwd(&bytes).entries;
            dirs.extend(home_dirs(&accounts));
            dirs.extend(runtime_dirs(&accounts));
        }
        Err(e) if e.is_not_found() => log::debug!("no passwd under {}", root.host_path().display()),
        Err(e) => {
            let what = "cannot read the account list; per-user directories skipped";
            if !crate::blind::report_os_error(
                what,
                &e,
                &crate::sources::fs_safe::render_path(e.path()),
            ) {
                log::warn!("per-user directories skipped: {e}");
            }
        }
    }
    dirs.extend(package_system_dirs());
    let (config_errors, policy_rules) = add_config_dirs(root, &mut dirs);
    let wanted: Vec<bool> = reachable.map_or_else(Vec::new, |r| dirs.iter().map(r).collect());
    let probe: Vec<bool> = if reachable.is_none() {
        vec![true; dirs.len()]
    } else {
        let mut roles: Vec<Role> = Vec::new();
        for (d, _) in dirs.iter().zip(&wanted).filter(|(_, w)| **w) {
            if !roles.contains(&d.role) {
                roles.push(d.role);
            }
        }
        dirs.iter()
            .zip(&wanted)
            .map(|(d, w)| *w || roles.iter().any(|r| *r != d.role))
            .collect()
    };
    // A lookup's scan opens the directories up to the last one it can
    // reach; a full scan opens them all.
    let visited = match reachable {
        None => dirs.len(),
        Some(_) => wanted.iter().rposition(|w| *w).map_or(0, |i| i + 1),
    };
    let absent = runtime_absent(root, &dirs, |i| i < visited || probe[i]);
    let (absent, kept) = merge_roles(root, &mut dirs, &probe, absent, visited);
    Discovered {
        dirs,
        config_errors,
        policy_rules,
        absent,
        reachable: wanted,
        _kept: kept,
    }
}

/// Gives the first entry of each directory (by device and inode, so any
/// spelling counts) the roles of later entries for it, which [`visit`]
/// will skip. Only whole directories are merged; a single config file is
/// classified by its own entry. Only directories `probe` marks, and not
/// already known `absent`, are looked at. Returns which directories are
/// absent (those given, and those the probe found absent) and the
/// descriptors kept.
///
/// The first `visited` directories (those [`visit`] will open) are probed
/// by opening them for listing, and the descriptor is kept in the root
/// ([`Root::keep_dir`]) for [`open`], so the visit does not resolve the
/// path a second time; `O_DIRECTORY` refuses anything but a directory
/// before opening it, as in [`open`]. Any failure but ENOENT falls back to
/// an `O_PATH` probe, so a directory that cannot be opened (EACCES) still
/// lends its roles as before. Later ones get only the `O_PATH` probe:
/// nothing is opened that the scan would not open.
fn merge_roles(
    root: &Root,
    dirs: &mut [ServiceDir],
    probe: &[bool],
    mut absent: Vec<bool>,
    visited: usize,
) -> (Vec<bool>, Vec<Arc<OwnedFd>>) {
    let mut first: HashMap<((u32, u32), u64), usize> = HashMap::new();
    let mut kept = Vec::new();
    absent.resize(dirs.len(), false);
    for i in 0..dirs.len() {
        if dirs[i].only.is_some() || absent[i] || !probe.get(i).copied().unwrap_or(true) {
            continue;
        }
        let path = dirs[i].path.as_path();
        let listable = i < visited;
        let opened = if listable {
            root.open_dir(path)
        } else {
            root.open_path(path)
        };
        let (fd, listable) = match opened {
            Ok(fd) => (fd, listable),
            // ENOENT only: [`open`] would find it absent too and skip it.
            // Other failures are [`visit`]'s to report.
            Err(e) if e.is_not_found() => {
                absent[i] = true;
                continue;
            }
            Err(_) if listable => match root.open_path(path) {
                Ok(fd) => (fd, false),
                Err(e) => {
                    absent[i] = e.is_not_found();
                    continue;
                }
            },
            Err(_) => continue,
        };
        let Ok(m) = stat::stat_fd(&fd, dirs[i].path.clone()) else {
            continue;
        };
        if m.kind != FileKind::Directory {
            continue;
        }
        if listable {
            kept.extend(root.keep_dir(path, fd));
        }
        match first.entry((m.dev, m.ino)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(i);
            }
            std::collections::hash_map::Entry::Occupied(o) => {
                let (j, role) = (*o.get(), dirs[i].role);
                if dirs[j].role != role && !dirs[j].also.contains(&role) {
                    dirs[j].also.push(role);
                }
            }
        }
    }
    (absent, kept)
}

/// Where `$XDG_RUNTIME_DIR`s live (`runtime_dirs`).
const RUNTIME_PARENT: &str = "/run/user";

/// Which of `dirs` lie below a `/run/user/<name>` that `/run/user` does
/// not hold: one listing of `/run/user` (or one ENOENT, on a dead box
/// where it is a tmpfs that is not mounted) instead of a probe per account
/// that finds nothing. The kernel fails a path at its first missing
/// component, so such a probe could only have found ENOENT. Anything else
/// (no `/run/user` path on the list, `/run/user` unreadable, a `..` after
/// it) is left to the probes. `looked_at` says which of `dirs` a probe or
/// the visit would open; when none of those is below `/run/user`, it is
/// not read.
fn runtime_absent(
    root: &Root,
    dirs: &[ServiceDir],
    looked_at: impl Fn(usize) -> bool,
) -> Vec<bool> {
    let parent = Path::new(RUNTIME_PARENT);
    let child = |d: &ServiceDir| -> Option<OsString> {
        let mut rest = d.path.strip_prefix(parent).ok()?.components();
        match rest.next()? {
            std::path::Component::Normal(name) => Some(name.to_os_string()),
            _ => None,
        }
    };
    if !(0..dirs.len()).any(|i| looked_at(i) && child(&dirs[i]).is_some()) {
        return vec![false; dirs.len()];
    }
    let present: Option<HashSet<OsString>> = match root.open_dir(parent) {
        Err(e) if e.is_not_found() => Some(HashSet::new()),
        Err(_) => None,
        Ok(fd) => {
            let mut names = HashSet::new();
            for_each_dirent(&fd, |name, _| {
                names.insert(name.to_os_string());
            })
            .ok()
            .map(|()| names)
        }
    };
    let Some(present) = present else {
        return vec![false; dirs.len()];
    };
    dirs.iter()
        .map(|d| child(d).is_some_and(|name| !present.contains(&name)))
        .collect()
}

/// Follows the bus configs from the standard config files and policy
/// directories (so a fragment counts even when the main config no longer
/// includes its directory) and appends every directory and file they name
/// that is not on the list yet.
#[allow(clippy::type_complexity)]
fn add_config_dirs(
    root: &Root,
    dirs: &mut Vec<ServiceDir>,
) -> (Vec<(PathBuf, String)>, Vec<bus_config::FoundRule<Bus>>) {
    let starts: Vec<(bus_config::Start, Bus)> = standard_dirs()
        .into_iter()
        .filter_map(|d| match (d.role, &d.only) {
            (Role::Config, Some(only)) => Some((bus_config::Start::File(d.path.join(only)), d.bus)),
            (Role::Policy, _) => Some((bus_config::Start::Dir(d.path), d.bus)),
            _ => None,
        })
        .collect();
    let found = bus_config::discover(root, &starts);
    // A repeat of a listed path adds nothing; a directory named with
    // another role is merged by `merge_roles`. A set, not a scan of the
    // list: a config may name tens of thousands of directories.
    // The listed directories are borrowed, not cloned (a host may have
    // thousands of per-user ones), and only once a config names one; only
    // those the configs add are owned.
    let mut listed: Option<HashSet<(&Path, Option<&OsStr>, Role)>> = None;
    let mut added_keys: HashSet<(PathBuf, Option<OsString>, Role)> = HashSet::new();
    let mut added = Vec::new();
    for f in found.found {
        let dir = match f.directive {
            Directive::ServiceDir(p) => ServiceDir {
                path: p,
                bus: f.tag,
                role: Role::Services,
                only: None,
                owner: None,
                origin: Origin::Config,
                also: Vec::new(),
            },
            Directive::IncludeDir(p) => ServiceDir {
                path: p,
                bus: f.tag,
                role: Role::Policy,
                only: None,
                owner: None,
                origin: Origin::Config,
                also: Vec::new(),
            },
            Directive::Include { path, .. } => {
                let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                    continue;
                };
                ServiceDir {
                    path: parent.to_path_buf(),
                    bus: f.tag,
                    role: Role::Config,
                    only: Some(name.to_os_string()),
                    owner: None,
                    origin: Origin::Config,
                    also: Vec::new(),
                }
            }
            // Both expand to directories already on the standard list.
            Directive::StandardSessionServiceDirs | Directive::StandardSystemServiceDirs => {
                continue
            }
        };
        let listed = listed.get_or_insert_with(|| {
            dirs.iter()
                .map(|d| (d.path.as_path(), d.only.as_deref(), d.role))
                .collect()
        });
        if !listed.contains(&(dir.path.as_path(), dir.only.as_deref(), dir.role))
            && added_keys.insert((dir.path.clone(), dir.only.clone(), dir.role))
        {
            added.push(dir);
        }
    }
    drop(listed);
    dirs.extend(added);
    let errors = found
        .errors
        .into_iter()
        .map(|e| {
            // A file that could not be read hides the directories and rules
            // it names; one read but malformed is its rows' error only.
            let what = "cannot read bus configuration";
            crate::blind::report_os_error(
                what,
                &e,
                &crate::sources::fs_safe::render_path(e.path()),
            );
            (e.path().to_path_buf(), e.to_string())
        })
        .collect();
    (errors, found.rules)
}

#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// The directory exists but could not be opened (EACCES, ELOOP, …);
    /// `kind` is what an `O_PATH` probe saw there, when it could look.
    #[error("{source}")]
    Open {
        #[source]
        source: FsError,
        kind: Option<FileKind>,
    },
    /// The path names something that is not a directory.
    #[error("{}: not a directory ({})", crate::sources::fs_safe::render_path(.path), kind.as_str())]
    NotADirectory { path: PathBuf, kind: FileKind },
    /// The directory was opened but could not be stat'ed or listed.
    #[error("{}: cannot list: {source}", crate::sources::fs_safe::render_path(.path))]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a table could not do with a service directory's entries, as its
/// blind spots say it: one wording for every reader of the directories, so
/// a path met by two of them counts once.
pub const CANNOT_STAT: &str = "cannot stat service files";
pub const CANNOT_READ: &str = "cannot read service files";

impl DirError {
    /// Reports the directory as a blind spot when its entries went unseen
    /// for a reason other than absence. One that is not a directory (a file
    /// where a directory may be) was seen, and is only its row's error.
    pub fn report_blind(&self) {
        let (what, at) = match self {
            DirError::Open { source, .. } => ("cannot open service directories", source.path()),
            DirError::List { path, .. } => ("cannot list service directories", path.as_path()),
            DirError::NotADirectory { .. } => return,
        };
        let at = crate::sources::fs_safe::render_path(at);
        crate::blind::report_os_error(what, self, &at);
    }

    /// The file type of the thing at the directory's path, when known.
    pub fn kind(&self) -> Option<FileKind> {
        match self {
            DirError::NotADirectory { kind, .. } => Some(*kind),
            DirError::Open { kind, .. } => *kind,
            DirError::List { .. } => None,
        }
    }
}

/// A discovered directory, open for listing.
#[derive(Debug)]
pub struct OpenDir {
    /// Shared with the [`Discovered`] that kept it, when it did.
    fd: Arc<OwnedFd>,
    pub meta: Metadata,
    /// Names already listed through an earlier path of this directory
    /// (as a config file named by `<include>`), left out here.
    skip: HashSet<OsString>,
    /// Whether `entries` has read the descriptor (its offset moved).
    listed: AtomicBool,
}

/// One name found by `readdir`, with the type it reported.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: OsString,
    pub dirent_kind: FileKind,
}

impl OpenDir {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Every entry but `.` and `..`, unsorted, no recursion. A read error
    /// ends the listing and comes out as the last item.
    ///
    /// Reads the directory through its own descriptor (`getdents64` into a
    /// stack buffer): `rustix::fs::Dir::read_from` would reopen it (`openat
    /// "."`, `fcntl`, `close`): three syscalls more per directory, on a
    /// host of hundreds of homes as many as the listing itself costs. A
    /// second listing rewinds first.
    pub fn entries(&self, dir: &ServiceDir) -> Vec<Result<Entry, DirError>> {
        let list_err = |e: rustix::io::Errno| DirError::List {
            path: dir.path.clone(),
            source: e.into(),
        };
        if self.listed.swap(true, Ordering::Relaxed) {
            if let Err(e) = rustix::fs::seek(&self.fd, rustix::fs::SeekFrom::Start(0)) {
                return vec![Err(list_err(e))];
            }
        }
        let mut out = Vec::new();
        let listed = for_each_dirent(&self.fd, |name, kind| {
            if self.lists(dir, name) {
                out.push(Ok(Entry {
                    name: name.to_os_string(),
                    dirent_kind: kind,
                }));
            }
        });
        if let Err(e) = listed {
            out.push(Err(list_err(e)));
        }
        out
    }

    /// Whether a full scan lists the entry `name` under `dir` here.
    pub fn lists(&self, dir: &ServiceDir, name: &OsStr) -> bool {
        dir.lists(name) && !self.skip.contains(name)
    }

    /// Metadata of the entry `name`, symlinks not followed.
    pub fn stat(&self, dir: &ServiceDir, name: &OsStr) -> Result<Metadata, StatError> {
        stat::stat_entry(&self.fd, name, dir.entry_path(name))
    }
}

/// Calls `f` with each name (but `.` and `..`) and `d_type` that
/// `getdents64` returns for the open directory `fd`, from its current
/// offset, into a stack buffer.
fn for_each_dirent(
    fd: &OwnedFd,
    mut f: impl FnMut(&OsStr, FileKind),
) -> Result<(), rustix::io::Errno> {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 16 * 1024];
    let mut reader = rustix::fs::RawDir::new(fd, &mut buf);
    loop {
        match reader.next() {
            None => return Ok(()),
            Some(Ok(e)) => {
                let name = OsStr::from_bytes(e.file_name().to_bytes());
                if name != "." && name != ".." {
                    f(name, FileKind::from_dirent(e.file_type()));
                }
            }
            Some(Err(rustix::io::Errno::INTR)) => {}
            Some(Err(e)) => return Err(e),
        }
    }
}

/// Opens `dir` inside `root`. `Ok(None)` when it does not exist (nor does
/// a parent), which is the common case and not worth a word. A descriptor
/// discovery kept for this path ([`Root::keep_dir`]) is used instead of
/// resolving it again.
pub fn open(root: &Root, dir: &ServiceDir) -> Result<Option<OpenDir>, DirError> {
    let fd = match root.take_dir(&dir.path) {
        Some(fd) => fd,
        None => match root.open_dir(&dir.path) {
            Ok(fd) => Arc::new(fd),
            Err(e) => return classify_open_failure(root, dir, e),
        },
    };
    let meta = stat::stat_fd(&fd, dir.path.clone()).map_err(|e| DirError::List {
        path: e.path,
        source: e.source,
    })?;
    Ok(Some(OpenDir {
        fd,
        meta,
        skip: HashSet::new(),
        listed: AtomicBool::new(false),
    }))
}

/// ENOENT means absent. ENOTDIR may mean a parent is a file (a home of
/// `/dev/null`): absent too; or the path itself is a file: reported. An
/// `O_PATH` probe, which opens nothing, tells the two apart.
fn classify_open_failure(
    root: &Root,
    dir: &ServiceDir,
    e: FsError,
) -> Result<Option<OpenDir>, DirError> {
    if e.is_not_found() {
        return Ok(None);
    }
    let probe = root.open_path(&dir.path);
    let kind = probe
        .as_ref()
        .ok()
        .and_then(|fd| stat::stat_fd(fd, dir.path.clone()).ok())
        .map(|m| m.kind);
    if e.errno() != Some(rustix::io::Errno::NOTDIR) {
        return Err(DirError::Open { source: e, kind });
    }
    match probe {
        Ok(_) => Err(DirError::NotADirectory {
            path: dir.path.clone(),
            kind: kind.unwrap_or(FileKind::Unknown),
        }),
        Err(p) if p.is_not_found() || p.errno() == Some(rustix::io::Errno::NOTDIR) => Ok(None),
        Err(p) => Err(DirError::Open {
            source: p,
            kind: None,
        }),
    }
}

/// Opens each of `dirs` in order and calls `f` with it, skipping absent
/// ones and anything already visited under an earlier path (same device
/// and inode): the first path wins, as the bus reads it first. A directory
/// listed in full covers a later single config file in it; a single file
/// listed first is left out of a later full listing. Failures go to `f`
/// too.
pub fn visit<'d>(
    root: &Root,
    dirs: impl IntoIterator<Item = &'d ServiceDir>,
    mut f: impl FnMut(&ServiceDir, Result<&OpenDir, &DirError>),
) {
    type Id = ((u32, u32), u64);
    let mut full: HashSet<Id> = HashSet::new();
    let mut singles: HashMap<Id, HashSet<OsString>> = HashMap::new();
    // A path named twice (in two roles) that cannot be opened is reported
    // once.
    let mut failed: HashSet<(PathBuf, Option<OsString>)> = HashSet::new();
    for dir in dirs {
        match open(root, dir) {
            Ok(None) => {}
            Ok(Some(mut open)) => {
                let id = (open.meta.dev, open.meta.ino);
                if full.contains(&id) {
                    continue;
                }
                let names = singles.entry(id).or_default();
                match &dir.only {
                    Some(only) => {
                        if names.insert(only.clone()) {
                            f(dir, Ok(&open));
                        }
                    }
                    None => {
                        full.insert(id);
                        open.skip = std::mem::take(names);
                        f(dir, Ok(&open));
                    }
                }
            }
            Err(e) => {
                if failed.insert((dir.path.clone(), dir.only.clone())) {
                    f(dir, Err(&e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn visited(root: &Root, dirs: &[ServiceDir]) -> Vec<(PathBuf, bool)> {
        let mut out = Vec::new();
        visit(root, dirs, |d, r| out.push((d.path.clone(), r.is_ok())));
        out
    }

    #[test]
    fn homes_are_deduped_and_owned_by_the_first_account() {
        let p = accounts::parse_passwd(
            b"root:x:0:0::/root:/bin/sh\n\
a:x:1000:1000::/srv/a:/bin/sh\n\
b:x:1001:1001::/srv/a:/bin/sh\n\
c:x:1002:1002:::/bin/sh\n\
d:x:1003:1003::rel/d:/bin/sh\n",
        );
        let dirs = home_dirs(&p.entries);
        let (dirs, flatpak): (Vec<_>, Vec<_>) =
            dirs.into_iter().partition(|d| d.origin == Origin::Home);
        assert_eq!(flatpak.len(), 3);
        assert!(flatpak[1]
            .path
            .ends_with("srv/a/.local/share/flatpak/exports/share/dbus-1/services"));
        assert_eq!(flatpak[1].owner.as_ref().unwrap().uid, 1000);
        let paths: Vec<_> = dirs.iter().map(|d| d.path.to_str().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "/root/.local/share/dbus-1/services",
                "/srv/a/.local/share/dbus-1/services",
                "/rel/d/.local/share/dbus-1/services"
            ]
        );
        assert_eq!(dirs[1].owner.as_ref().unwrap().uid, 1000);
        assert!(dirs
            .iter()
            .all(|d| d.bus == Bus::Session && d.role == Role::Services));
    }

    #[test]
    fn user_base_is_the_home_or_the_runtime_dir() {
        let p = accounts::parse_passwd(b"a:x:1000:1000::/srv/a:/bin/sh\n");
        let home = home_dirs(&p.entries);
        assert!(home
            .iter()
            .all(|d| d.user_base() == Some(Path::new("/srv/a"))));
        let run = runtime_dirs(&p.entries);
        assert_eq!(run[0].user_base(), Some(Path::new("/run/user/1000")));
        assert!(standard_dirs().iter().all(|d| d.user_base().is_none()));
    }

    #[test]
    fn kinds_by_role_and_name() {
        let dirs = standard_dirs();
        let services = dirs.iter().find(|d| d.role == Role::Services).unwrap();
        let policy = dirs.iter().find(|d| d.role == Role::Policy).unwrap();
        let config = &dirs[0];
        let k = |d: &ServiceDir, n: &str| d.kind_of(OsStr::new(n));
        assert_eq!(k(services, "org.x.service"), EntryKind::Service);
        assert_eq!(k(services, ".hidden.service"), EntryKind::Service);
        assert_eq!(k(services, "org.x.conf"), EntryKind::Other);
        assert_eq!(k(policy, "org.x.conf"), EntryKind::Policy);
        assert_eq!(k(policy, "org.x.service"), EntryKind::Other);
        assert_eq!(k(config, "system.conf"), EntryKind::Config);
        assert!(config.lists(OsStr::new("system.conf")));
        assert!(!config.lists(OsStr::new("session.conf")));
        assert!(!services.lists(OsStr::new("..")));
    }

    #[test]
    fn merged_usr_and_missing_and_file_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("usr/share/dbus-1/system-services")).unwrap();
        std::fs::create_dir_all(r.join("usr/lib/dbus-1")).unwrap();
        symlink(
            "/usr/share/dbus-1/system-services",
            r.join("usr/lib/dbus-1/system-services"),
        )
        .unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        std::fs::create_dir_all(r.join("etc/dbus-1")).unwrap();
        std::fs::write(r.join("etc/dbus-1/system.d"), b"not a dir").unwrap();
        let root = Root::open(r).unwrap();
        let listed: Vec<_> = standard_dirs()
            .into_iter()
            .filter(|d| d.role != Role::Config)
            .collect();
        let v = visited(&root, &listed);
        assert_eq!(
            v,
            [
                (PathBuf::from("/etc/dbus-1/system.d"), false),
                (PathBuf::from("/usr/share/dbus-1/system-services"), true),
            ]
        );
        let mut err = None;
        visit(&root, &standard_dirs(), |_, r| {
            if let Err(e) = r {
                err = Some((e.to_string(), e.kind()));
            }
        });
        let (msg, kind) = err.unwrap();
        assert!(msg.contains("/etc/dbus-1/system.d"), "{msg}");
        assert_eq!(kind, Some(FileKind::Regular));
    }

    /// `/run/user` read once stands for the per-uid probes: what it marks
    /// absent the kernel finds absent too, a uid directory it holds is
    /// still probed (and listed), and a path it cannot judge (`..` after
    /// `/run/user`, another directory) is left to the probes.
    #[test]
    fn runtime_dirs_missing_from_run_user_are_absent() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        let dir = |p: &str| ServiceDir::standard(p, Bus::Session, Role::Services, None);
        let dirs = [
            dir("/run/user/1000/dbus-1/services"),
            dir("/run/user/1001/dbus-1/services"),
            dir("/run/user/1002/dbus-1/services"),
            dir("/run/user/../x/dbus-1/services"),
            dir("/run/userx/1/dbus-1/services"),
        ];
        let check = |root: &Root, want: [bool; 5]| {
            let absent = runtime_absent(root, &dirs, |_| true);
            assert_eq!(absent, want);
            for (d, a) in dirs.iter().zip(absent) {
                if a {
                    assert!(root.open_dir(&d.path).unwrap_err().is_not_found());
                }
            }
        };
        // A dead box: no /run at all.
        check(&Root::open(r).unwrap(), [true, true, true, false, false]);
        std::fs::create_dir_all(r.join("run/user/1000/dbus-1/services")).unwrap();
        std::fs::write(
            r.join("run/user/1000/dbus-1/services/org.x.service"),
            "[D-BUS Service]\n",
        )
        .unwrap();
        std::fs::create_dir_all(r.join("run/user/1001")).unwrap();
        let root = Root::open(r).unwrap();
        check(&root, [false, false, true, false, false]);
        assert_eq!(
            runtime_absent(&root, &dirs, |i| i > 4),
            [false; 5],
            "not read when nothing below it is looked at"
        );
        // /run/user a link inside the root: followed there, as the probes do.
        std::fs::rename(r.join("run/user"), r.join("run/user.real")).unwrap();
        symlink("/run/user.real", r.join("run/user")).unwrap();
        check(&Root::open(r).unwrap(), [false, false, true, false, false]);
        let p = accounts::parse_passwd(
            b"a:x:1000:1000::/h/a:/bin/sh\nb:x:1001:1001::/h/b:/bin/sh\nc:x:1002:1002::/h/c:/bin/sh\n",
        );
        let found = Discovered {
            absent: runtime_absent(&root, &runtime_dirs(&p.entries), |_| true),
            dirs: runtime_dirs(&p.entries),
            ..Discovered::default()
        };
        let mut listed = Vec::new();
        visit(&root, found.present(), |d, r| {
            for e in r.unwrap().entries(d) {
                listed.push(d.entry_path(&e.unwrap().name));
            }
        });
        assert_eq!(
            listed,
            [PathBuf::from(
                "/run/user/1000/dbus-1/services/org.x.service"
            )]
        );
    }

    /// The visit lists the directories discovery opened (kept in the
    /// root), not what their paths name by then; a lookup keeps only what
    /// its visit opens.
    #[test]
    fn visit_lists_the_directories_discovery_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/passwd"), "a:x:1000:1000::/h/a:/bin/sh\n").unwrap();
        let services = r.join("h/a/.local/share/dbus-1/services");
        std::fs::create_dir_all(&services).unwrap();
        std::fs::write(services.join("org.a.service"), "[D-BUS Service]\n").unwrap();
        std::fs::create_dir_all(r.join("elsewhere")).unwrap();
        std::fs::write(r.join("elsewhere/org.b.service"), "[D-BUS Service]\n").unwrap();
        std::fs::create_dir_all(r.join("usr/share/dbus-1/services")).unwrap();
        let home = Path::new("/h/a/.local/share/dbus-1/services");

        let root = Root::open(r).unwrap();
        let narrowed = discover_narrowed(&root, &|d| {
            d.path == Path::new("/usr/share/dbus-1/services")
        });
        assert!(narrowed.dirs.iter().any(|d| d.path == home));
        assert!(
            root.take_dir(home).is_none(),
            "a lookup keeps only what it opens"
        );
        assert!(root
            .take_dir(Path::new("/usr/share/dbus-1/services"))
            .is_some());

        let root = Root::open(r).unwrap();
        drop(discover(&root));
        assert!(
            root.take_dir(home).is_none(),
            "closed with the discovery (a watcher's root outlives it)"
        );
        let found = discover(&root);
        std::fs::rename(&services, r.join("h/a/moved")).unwrap();
        symlink("/elsewhere", &services).unwrap();
        let mut listed = Vec::new();
        visit(&root, found.present(), |d, r| {
            if d.path == home {
                listed.extend(r.unwrap().entries(d).into_iter().map(|e| e.unwrap().name));
            }
        });
        assert_eq!(listed, [OsString::from("org.a.service")]);
    }

    #[test]
    fn unreadable_directory_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("a")).unwrap();
        symlink("b", r.join("loop1")).unwrap();
        symlink("loop1", r.join("b")).unwrap();
        let root = Root::open(r).unwrap();
        let dir = ServiceDir::standard("/loop1", Bus::System, Role::Services, None);
        let e = open(&root, &dir).unwrap_err();
        assert!(matches!(e, DirError::Open { kind: None, .. }), "{e}");
    }
}
