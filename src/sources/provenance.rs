//! Who put a file there: the one answer every table gives for
//! `provenance`, `exec_provenance` and the policy files' `provenance`.
//!
//! A package manager's database listing the path is the first answer.
//! Otherwise snapd and flatpak are credited only with what they really
//! write, never for the place alone, since an attacker with root writes
//! in their directories as easily as they do:
//!
//! - **snap** — a regular file in snapd's D-Bus directories that is,
//!   byte for byte, the activation file snapd generates
//!   (`wrappers/dbus.go` in snapd: `Name=`, `Comment=`, `SystemdService=`,
//!   `Exec=/usr/bin/snap run …`, `AssumedAppArmorLabel=`, `User=root` on
//!   the system bus, `X-Snap=`) for a snap whose current revision is
//!   installed (`/snap/<snap>/current` names a revision whose
//!   `/var/lib/snapd/snaps/<snap>_<rev>.snap` exists) and whose systemd
//!   unit snapd wrote (`/etc/systemd/{system,user}/snap.<snap>.<app>.service`).
//!   A program is a snap's when it lies under `/snap/<snap>/<rev>/` of an
//!   installed revision.
//! - **flatpak** — a symlink in an installation's exports directory that
//!   resolves, inside the root, to
//!   `<installation>/app/<app>/<arch>/<branch>/<commit>/export/share/dbus-1/services/<same name>`
//!   of a deployment flatpak recorded (its `deploy` file), whose `Name=` is
//!   the file's name and starts with the app id, and whose `Exec=` is the
//!   line flatpak writes when it exports the file (`export_desktop_file` in
//!   `common/flatpak-dir.c`: `<bindir>/flatpak run --branch=<branch>
//!   --arch=<arch> [--no-a11y-bus] [--no-documents-portal]
//!   [--command=<cmd>] [--file-forwarding] <app> …`). A program is a
//!   flatpak's when it lies inside such a recorded deployment (of an app or
//!   a runtime).
//!
//! Anything else in those places has no provenance of theirs, and
//! [`NotTheirs`] says why.
use crate::sources::fs_safe::Root;
use crate::sources::packages::{Format, Ownership};
use crate::sources::service_file;
use crate::sources::stat::FileKind;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Who installed a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// A package manager's database lists it.
    Package(Format),
    /// flatpak exported or deployed it.
    Flatpak,
    /// snapd generated or mounted it.
    Snap,
    /// The databases were read and none of the above holds.
    Unowned,
}

impl Provenance {
    pub fn as_str(self) -> &'static str {
        match self {
            Provenance::Package(f) => f.as_str(),
            Provenance::Flatpak => "flatpak",
            Provenance::Snap => "snap",
            Provenance::Unowned => "none",
        }
    }
}

/// Why a file in snapd's or flatpak's directories is not theirs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotTheirs {
    #[error("in snapd's directory but not a regular file, which snapd writes")]
    SnapNotRegular,
    #[error("in snapd's directory but could not be read: {0}")]
    SnapUnreadable(String),
    #[error("in snapd's directory but not the file snapd generates: {0}")]
    SnapContent(String),
    #[error(
        "in snapd's directory but snap {0} is not installed (no current revision with its .snap)"
    )]
    SnapNotInstalled(String),
    #[error("in snapd's directory but {0}, the unit snapd writes with it, is missing")]
    SnapNoUnit(String),
    #[error("in a flatpak exports directory but of type {0}, where flatpak makes a symlink")]
    FlatpakNotLink(&'static str),
    #[error("flatpak export does not resolve inside the root")]
    FlatpakUnresolved,
    #[error("flatpak export resolves to {0}, not into an app deployment of this installation")]
    FlatpakOutside(String),
    #[error("flatpak export resolves into {0}, which flatpak did not record as deployed")]
    FlatpakNotDeployed(String),
    #[error("flatpak export's target could not be read: {0}")]
    FlatpakUnreadable(String),
    #[error("flatpak export is not the file flatpak writes for {app}: {why}")]
    FlatpakContent { app: String, why: String },
}

/// Where a file was found, as far as provenance goes.
#[derive(Debug, Clone, Copy)]
pub enum Place<'a> {
    /// Anywhere a package or the administrator puts files.
    Plain,
    /// snapd's D-Bus directories; `system` for `system-services`.
    Snap { system: bool },
    /// A flatpak installation's exports directory; `installation` is its
    /// base (`/var/lib/flatpak`, `~/.local/share/flatpak`).
    Flatpak { installation: &'a Path },
}

impl<'a> Place<'a> {
    /// The place of a directory by its origin: `Snap` for snapd's, and
    /// `Flatpak` for an exports directory of a recognisable installation.
    pub fn of_dir(path: &'a Path, snap: bool, flatpak: bool) -> Place<'a> {
        if snap {
            return Place::Snap {
                system: path.ends_with("system-services"),
            };
        }
        if flatpak {
            let mut base = path;
            for _ in 0..4 {
                match base.parent() {
                    Some(p) => base = p,
                    None => return Place::Plain,
                }
            }
            if path.strip_prefix(base) == Ok(Path::new("exports/share/dbus-1/services")) {
                return Place::Flatpak { installation: base };
            }
        }
        Place::Plain
    }
}

/// The provenance of one file and, when its place suggests snapd or
/// flatpak but it is not theirs, why.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// `None` without a package database unless snapd or flatpak wrote it.
    pub provenance: Option<Provenance>,
    pub not_theirs: Option<NotTheirs>,
}

/// What a package database says: its manager when a package owns the
/// path, `Unowned` when none does, `None` without a database.
pub fn packaged(owned: Option<&Ownership>) -> Option<Provenance> {
    let owned = owned?;
    Some(
        owned
            .packages
            .first()
            .map_or(Provenance::Unowned, |p| Provenance::Package(p.format)),
    )
}

/// A file found in a directory a bus reads. `path` is where it was found
/// inside `root`, `kind` what the listing saw (not following a link), and
/// `content` reads it (capped) as the listing opened it.
pub fn of_file(
    root: &Root,
    owned: Option<&Ownership>,
    place: Place<'_>,
    path: &Path,
    kind: FileKind,
    content: impl FnOnce() -> Result<Vec<u8>, String>,
) -> Answer {
    let by_db = packaged(owned);
    if let Some(p @ Provenance::Package(_)) = by_db {
        return Answer {
            provenance: Some(p),
            not_theirs: None,
        };
    }
    let verdict = match place {
        Place::Plain => Ok(None),
        Place::Snap { system } => snap_file(root, path, kind, system, content),
        Place::Flatpak { installation } => flatpak_export(root, installation, path, kind),
    };
    match verdict {
        Ok(Some(p)) => Answer {
            provenance: Some(p),
            not_theirs: None,
        },
        Ok(None) => Answer {
            provenance: by_db,
            not_theirs: None,
        },
        Err(why) => Answer {
            provenance: by_db,
            not_theirs: Some(why),
        },
    }
}

/// A program `canonical` (every symlink resolved) names inside `root`.
pub fn of_program(root: &Root, owned: Option<&Ownership>, canonical: &Path) -> Option<Provenance> {
    let by_db = packaged(owned);
    if let Some(p @ Provenance::Package(_)) = by_db {
        return Some(p);
    }
    if in_snap_revision(root, canonical) {
        return Some(Provenance::Snap);
    }
    if in_flatpak_deployment(root, canonical) {
        return Some(Provenance::Flatpak);
    }
    by_db
}

/// The normal components of `path`, as text; `None` when one is not UTF-8
/// (no snap, app or branch name is).
fn parts(path: &Path) -> Option<Vec<&str>> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_str()),
            _ => None,
        })
        .collect()
}

/// Whether `inner` is a regular file inside `root`, symlinks followed.
fn is_regular(root: &Root, inner: &Path) -> bool {
    root.open_path(inner).is_ok_and(|fd| {
        rustix::fs::fstat(&fd)
            .is_ok_and(|s| rustix::fs::FileType::from_raw_mode(s.st_mode).is_file())
    })
}

/// The revision `current` names for an installed snap instance, when its
/// `.snap` is present: snapd mounts `/snap/<snap>/<rev>` from
/// `/var/lib/snapd/snaps/<snap>_<rev>.snap` (`/var/lib/snapd/snap` where
/// the distribution mounts snaps there).
fn installed_revision(root: &Root, instance: &str) -> Option<String> {
    for mount in ["/snap", "/var/lib/snapd/snap"] {
        let link = Path::new(mount).join(instance).join("current");
        let Ok(fd) = root.open_path(link.parent()?) else {
            continue;
        };
        let Ok(text) = crate::sources::fs_safe::read_link_entry(
            rustix::fd::AsFd::as_fd(&fd),
            OsStr::new("current"),
        ) else {
            continue;
        };
        let Ok(rev) = String::from_utf8(text) else {
            continue;
        };
        if is_revision(&rev) && is_snap_blob(root, instance, &rev) {
            return Some(rev);
        }
    }
    None
}

/// A snap revision as snapd names it: a number, or `x` and a number for a
/// locally installed one.
fn is_revision(rev: &str) -> bool {
    let digits = rev.strip_prefix('x').unwrap_or(rev);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_snap_blob(root: &Root, instance: &str, rev: &str) -> bool {
    is_regular(
        root,
        &Path::new("/var/lib/snapd/snaps").join(format!("{instance}_{rev}.snap")),
    )
}

/// Whether `canonical` lies inside an installed snap revision's mount.
fn in_snap_revision(root: &Root, canonical: &Path) -> bool {
    let Some(p) = parts(canonical) else {
        return false;
    };
    let (instance, rev) = match p.as_slice() {
        ["snap", instance, rev, _, ..] => (*instance, *rev),
        ["var", "lib", "snapd", "snap", instance, rev, _, ..] => (*instance, *rev),
        _ => return false,
    };
    is_snap_name(instance) && is_revision(rev) && is_snap_blob(root, instance, rev)
}

/// A snap instance name: a snap name (lowercase letters, digits, `-`),
/// optionally `_` and an instance key.
fn is_snap_name(instance: &str) -> bool {
    let (name, key) = instance.split_once('_').unwrap_or((instance, ""));
    let ok = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    !name.is_empty() && ok(name) && ok(key)
}

/// A snap app name: letters, digits and `-`.
fn is_app_name(app: &str) -> bool {
    !app.is_empty() && app.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The activation file snapd writes for `bus_name` of app `app` of snap
/// instance `instance`, with the launcher line `exec`.
fn snapd_activation_file(
    bus_name: &str,
    instance: &str,
    app: &str,
    exec: &str,
    system: bool,
) -> String {
    let user = if system { "User=root\n" } else { "" };
    format!(
        "[D-BUS Service]\nName={bus_name}\nComment=Bus name for snap application {instance}.{app}\nSystemdService=snap.{instance}.{app}.service\nExec={exec}\nAssumedAppArmorLabel=snap.{instance}.{app}\n{user}X-Snap={instance}\n"
    )
}

/// Whether `exec` is a launcher line snapd writes for `instance`'s `app`:
/// `/usr/bin/snap run [--timer="…"] <instance>.<app>`, or the instance
/// alone when the app is named after the snap.
fn is_snap_launcher(exec: &str, instance: &str, app: &str) -> bool {
    let Some(rest) = exec.strip_prefix("/usr/bin/snap run ") else {
        return false;
    };
    let rest = match rest.strip_prefix("--timer=\"") {
        Some(t) => match t.split_once("\" ") {
            Some((_, after)) => after,
            None => return false,
        },
        None => rest,
    };
    let store_name = instance.split_once('_').map_or(instance, |(n, _)| n);
    rest == format!("{instance}.{app}") || (app == store_name && rest == instance)
}

fn snap_file(
    root: &Root,
    path: &Path,
    kind: FileKind,
    system: bool,
    content: impl FnOnce() -> Result<Vec<u8>, String>,
) -> Result<Option<Provenance>, NotTheirs> {
    if kind != FileKind::Regular {
        return Err(NotTheirs::SnapNotRegular);
    }
    let bytes = content().map_err(NotTheirs::SnapUnreadable)?;
    let content_err = |why: &str| NotTheirs::SnapContent(why.to_string());
    let parsed = service_file::parse(&bytes).map_err(|e| content_err(&e.to_string()))?;
    let unit = parsed
        .systemd_service
        .as_deref()
        .ok_or_else(|| content_err("no SystemdService="))?;
    let (instance, app) = unit
        .strip_prefix("snap.")
        .and_then(|u| u.strip_suffix(".service"))
        .and_then(|u| u.split_once('.'))
        .filter(|(i, a)| is_snap_name(i) && is_app_name(a))
        .ok_or_else(|| content_err("SystemdService= is not a snap's unit"))?;
    let exec = parsed
        .exec_as_written
        .as_deref()
        .filter(|e| is_snap_launcher(e, instance, app))
        .ok_or_else(|| content_err("Exec= is not snapd's launcher for the snap's app"))?;
    let bus_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".service"))
        .ok_or_else(|| content_err("the file name is not <bus name>.service"))?;
    if bytes != snapd_activation_file(bus_name, instance, app, exec, system).as_bytes() {
        return Err(content_err(&format!(
            "its keys or their order differ from what snapd writes for snap.{instance}.{app}"
        )));
    }
    if installed_revision(root, instance).is_none() {
        return Err(NotTheirs::SnapNotInstalled(instance.to_string()));
    }
    let units = if system {
        "/etc/systemd/system"
    } else {
        "/etc/systemd/user"
    };
    let unit_path = Path::new(units).join(unit);
    if !is_regular(root, &unit_path) {
        return Err(NotTheirs::SnapNoUnit(unit_path.display().to_string()));
    }
    Ok(Some(Provenance::Snap))
}

/// A flatpak deployment directory and the path inside it, from a path
/// under `installation`: `app|runtime/<id>/<arch>/<branch>/<commit>/…`.
struct Deployment<'p> {
    kind: &'p str,
    id: &'p str,
    arch: &'p str,
    branch: &'p str,
    dir: PathBuf,
    rest: Vec<&'p str>,
}

fn deployment<'p>(installation: &Path, path: &'p Path) -> Option<Deployment<'p>> {
    let inner = path.strip_prefix(installation).ok()?;
    let p = parts(inner)?;
    let [kind, id, arch, branch, commit, rest @ ..] = p.as_slice() else {
        return None;
    };
    if !matches!(*kind, "app" | "runtime") || rest.is_empty() {
        return None;
    }
    // `current` and `active` are flatpak's links to the deployment in use;
    // a canonical path never contains them, a hand-made one might.
    if [*id, *arch, *branch, *commit]
        .iter()
        .any(|c| matches!(*c, "current" | "active"))
    {
        return None;
    }
    Some(Deployment {
        kind,
        id,
        arch,
        branch,
        dir: installation
            .join(kind)
            .join(id)
            .join(arch)
            .join(branch)
            .join(commit),
        rest: rest.to_vec(),
    })
}

/// Whether flatpak recorded the deployment (its `deploy` file exists).
fn deployed(root: &Root, dir: &Path) -> bool {
    is_regular(root, &dir.join("deploy"))
}

/// Whether `canonical` lies inside a recorded flatpak deployment, of the
/// system installation or of an account's.
fn in_flatpak_deployment(root: &Root, canonical: &Path) -> bool {
    let Some(p) = parts(canonical) else {
        return false;
    };
    let installation: PathBuf = if p.starts_with(&["var", "lib", "flatpak"]) {
        PathBuf::from("/var/lib/flatpak")
    } else if let Some(i) = p
        .windows(3)
        .position(|w| w == [".local", "share", "flatpak"])
    {
        Path::new("/").join(p[..i + 3].iter().collect::<PathBuf>())
    } else {
        return false;
    };
    deployment(&installation, canonical).is_some_and(|d| deployed(root, &d.dir))
}

fn flatpak_export(
    root: &Root,
    installation: &Path,
    path: &Path,
    kind: FileKind,
) -> Result<Option<Provenance>, NotTheirs> {
    if kind != FileKind::Symlink {
        return Err(NotTheirs::FlatpakNotLink(kind.as_str()));
    }
    let fd = root
        .open_path(path)
        .map_err(|_| NotTheirs::FlatpakUnresolved)?;
    let target = root
        .inner_path(rustix::fd::AsFd::as_fd(&fd))
        .ok_or(NotTheirs::FlatpakUnresolved)?;
    let outside = || NotTheirs::FlatpakOutside(target.display().to_string());
    let name = path.file_name().ok_or_else(outside)?;
    let d = deployment(installation, &target).ok_or_else(outside)?;
    let expected_rest = ["export", "share", "dbus-1", "services"];
    if d.kind != "app"
        || d.rest.len() != 5
        || d.rest[..4] != expected_rest
        || OsStr::new(d.rest[4]) != name
    {
        return Err(outside());
    }
    if !deployed(root, &d.dir) {
        return Err(NotTheirs::FlatpakNotDeployed(d.dir.display().to_string()));
    }
    let content = |why: String| NotTheirs::FlatpakContent {
        app: d.id.to_string(),
        why,
    };
    let bytes = root
        .read_regular(&target, service_file::MAX_SERVICE_FILE_BYTES)
        .map_err(|e| NotTheirs::FlatpakUnreadable(e.to_string()))?;
    let parsed = service_file::parse(&bytes).map_err(|e| content(e.to_string()))?;
    let stem = name
        .as_bytes()
        .strip_suffix(b".service")
        .and_then(|s| std::str::from_utf8(s).ok())
        .ok_or_else(|| content("the file name is not <bus name>.service".into()))?;
    if parsed.name.as_deref() != Some(stem) {
        return Err(content(format!("Name= is not {stem}, as flatpak requires")));
    }
    if !(stem == d.id
        || stem.starts_with(&format!("{}.", d.id))
        || stem.starts_with(&format!("{}-", d.id)))
    {
        return Err(content(format!(
            "{stem} is not a name app {} may export",
            d.id
        )));
    }
    let exec = parsed.exec.as_deref().unwrap_or("");
    if !is_flatpak_run(exec, d.id, d.arch, d.branch) {
        return Err(content(format!(
            "Exec= is not `flatpak run --branch={} --arch={} … {}`",
            d.branch, d.arch, d.id
        )));
    }
    Ok(Some(Provenance::Flatpak))
}

/// Whether `exec` is the line flatpak writes into an exported service
/// file for `app` deployed as `arch`/`branch`.
fn is_flatpak_run(exec: &str, app: &str, arch: &str, branch: &str) -> bool {
    let Ok(argv) = service_file::split_exec(exec) else {
        return false;
    };
    let mut it = argv.iter().map(String::as_str).peekable();
    let program = it.next().unwrap_or("");
    if !(program.starts_with('/') && program.ends_with("/flatpak")) {
        return false;
    }
    if it.next() != Some("run")
        || it.next() != Some(format!("--branch={branch}").as_str())
        || it.next() != Some(format!("--arch={arch}").as_str())
    {
        return false;
    }
    while it
        .peek()
        .is_some_and(|a| matches!(*a, "--no-a11y-bus" | "--no-documents-portal"))
    {
        it.next();
    }
    if it.peek().is_some_and(|a| a.starts_with("--command=")) {
        it.next();
    }
    if it.peek() == Some(&"--file-forwarding") {
        it.next();
    }
    it.next() == Some(app)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snap_launcher_lines() {
        assert!(is_snap_launcher("/usr/bin/snap run foo.svc", "foo", "svc"));
        assert!(is_snap_launcher("/usr/bin/snap run foo", "foo", "foo"));
        assert!(is_snap_launcher("/usr/bin/snap run foo_2", "foo_2", "foo"));
        assert!(is_snap_launcher(
            "/usr/bin/snap run --timer=\"00:00-24:00/4\" foo.svc",
            "foo",
            "svc"
        ));
        assert!(!is_snap_launcher("/usr/bin/snap run foo", "foo", "svc"));
        assert!(!is_snap_launcher("/tmp/snap run foo.svc", "foo", "svc"));
        assert!(!is_snap_launcher(
            "/usr/bin/snap run foo.svc; sh",
            "foo",
            "svc"
        ));
    }

    #[test]
    fn snapd_template_matches_what_snapd_writes() {
        assert_eq!(
            snapd_activation_file("org.x", "foo", "svc", "/usr/bin/snap run foo.svc", true),
            "[D-BUS Service]\nName=org.x\nComment=Bus name for snap application foo.svc\nSystemdService=snap.foo.svc.service\nExec=/usr/bin/snap run foo.svc\nAssumedAppArmorLabel=snap.foo.svc\nUser=root\nX-Snap=foo\n"
        );
        assert!(!snapd_activation_file("org.x", "foo", "svc", "e", false).contains("User="));
    }

    #[test]
    fn flatpak_run_lines() {
        let ok = |e| is_flatpak_run(e, "org.app", "x86_64", "stable");
        assert!(ok(
            "/usr/bin/flatpak run --branch=stable --arch=x86_64 --command=app org.app"
        ));
        assert!(ok(
            "/usr/bin/flatpak run --branch=stable --arch=x86_64 --no-a11y-bus --command=app --file-forwarding org.app @@ %f @@"
        ));
        assert!(ok(
            "/usr/bin/flatpak run --branch=stable --arch=x86_64 org.app"
        ));
        assert!(!ok("/usr/bin/flatpak run org.app"));
        assert!(!ok(
            "/usr/bin/flatpak run --branch=beta --arch=x86_64 org.app"
        ));
        assert!(!ok(
            "/usr/bin/flatpak run --branch=stable --arch=x86_64 --command=app org.other"
        ));
        assert!(!ok("flatpak run --branch=stable --arch=x86_64 org.app"));
        assert!(!ok("/tmp/x run --branch=stable --arch=x86_64 org.app"));
    }

    #[test]
    fn places_of_directories() {
        let sys = Path::new("/var/lib/flatpak/exports/share/dbus-1/services");
        assert!(matches!(
            Place::of_dir(sys, false, true),
            Place::Flatpak { installation } if installation == Path::new("/var/lib/flatpak")
        ));
        let home = Path::new("/home/a/.local/share/flatpak/exports/share/dbus-1/services");
        assert!(matches!(
            Place::of_dir(home, false, true),
            Place::Flatpak { installation } if installation == Path::new("/home/a/.local/share/flatpak")
        ));
        assert!(matches!(
            Place::of_dir(
                Path::new("/var/lib/snapd/dbus-1/system-services"),
                true,
                false
            ),
            Place::Snap { system: true }
        ));
        assert!(matches!(
            Place::of_dir(Path::new("/usr/share/dbus-1/services"), false, false),
            Place::Plain
        ));
    }

    #[test]
    fn deployment_paths() {
        let i = Path::new("/var/lib/flatpak");
        let d = deployment(
            i,
            Path::new("/var/lib/flatpak/app/org.a/x86_64/stable/abc/export/share/dbus-1/services/org.a.service"),
        )
        .unwrap();
        assert_eq!(
            (d.kind, d.id, d.arch, d.branch),
            ("app", "org.a", "x86_64", "stable")
        );
        assert_eq!(
            d.dir,
            Path::new("/var/lib/flatpak/app/org.a/x86_64/stable/abc")
        );
        assert!(deployment(
            i,
            Path::new("/var/lib/flatpak/app/org.a/current/active/export/x")
        )
        .is_none());
        assert!(deployment(i, Path::new("/var/lib/flatpak/exports/share/x")).is_none());
        assert!(deployment(i, Path::new("/tmp/app/org.a/x86_64/stable/abc/x")).is_none());
    }

    fn write(root: &Path, inner: &str, bytes: &[u8]) {
        let p = root.join(inner.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    #[test]
    fn programs_of_installed_snaps_and_recorded_deployments() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        write(r, "snap/foo/7/bin/foo", b"x");
        write(r, "snap/bar/3/bin/bar", b"x");
        write(r, "var/lib/snapd/snaps/foo_7.snap", b"x");
        let deploy = "var/lib/flatpak/app/org.a/x86_64/stable/abc";
        write(r, &format!("{deploy}/files/bin/a"), b"x");
        write(r, &format!("{deploy}/deploy"), b"x");
        write(
            r,
            "var/lib/flatpak/app/org.b/x86_64/stable/abc/files/bin/b",
            b"x",
        );
        write(
            r,
            "home/u/.local/share/flatpak/runtime/org.r/x86_64/1/c/files/bin/r",
            b"x",
        );
        write(
            r,
            "home/u/.local/share/flatpak/runtime/org.r/x86_64/1/c/deploy",
            b"x",
        );
        let root = Root::open(r).unwrap();
        let empty = Ownership::default();
        let of = |p: &str| of_program(&root, Some(&empty), Path::new(p));
        assert_eq!(of("/snap/foo/7/bin/foo"), Some(Provenance::Snap));
        assert_eq!(
            of("/snap/bar/3/bin/bar"),
            Some(Provenance::Unowned),
            "no .snap: not installed"
        );
        assert_eq!(
            of(&format!("/{deploy}/files/bin/a")),
            Some(Provenance::Flatpak)
        );
        assert_eq!(
            of("/var/lib/flatpak/app/org.b/x86_64/stable/abc/files/bin/b"),
            Some(Provenance::Unowned),
            "no deploy record"
        );
        assert_eq!(
            of("/home/u/.local/share/flatpak/runtime/org.r/x86_64/1/c/files/bin/r"),
            Some(Provenance::Flatpak)
        );
        assert_eq!(of("/usr/bin/x"), Some(Provenance::Unowned));
        assert_eq!(of_program(&root, None, Path::new("/usr/bin/x")), None);
        assert_eq!(Provenance::Unowned.as_str(), "none");
    }
}
