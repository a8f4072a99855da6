//! systemd unit files, as systemd would load them: where a service file's
//! `SystemdService=` leads, and what that unit really runs.
//!
//! With `SystemdService=`, the bus hands activation to systemd, so the
//! program that runs is the unit's `ExecStart=`, not the service file's
//! `Exec=`. An attacker who cannot touch a packaged service file can still
//! add a unit of the same name earlier in systemd's search path, or a
//! drop-in that replaces `ExecStart=`. This module follows systemd's rules
//! (`systemd.unit(5)`): the first directory in the search path that has
//! the unit wins, aliases are symlinks, `foo@bar.service` falls back to the
//! template `foo@.service`, and `*.conf` drop-ins in `<unit>.d/` from every
//! directory apply in file-name order, an earlier directory masking a
//! later drop-in of the same name; an empty `ExecStart=` clears the list.
//! Everything is read through [`Root`], so an image's absolute symlinks
//! resolve inside it. Knows nothing of SQL or of service files.
use crate::sources::fs_safe::{FsError, Root};
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Unit files and drop-ins are small; systemd itself refuses huge ones.
const MAX_UNIT_BYTES: u64 = 1024 * 1024;

/// Which systemd instance would start the unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// pid 1, for the system bus.
    System,
    /// `systemd --user` of one account, for its session bus; `home` and
    /// `uid` add that account's own unit directories when known.
    User {
        uid: Option<u32>,
        home: Option<PathBuf>,
    },
}

/// The unit systemd would load, with its effective `ExecStart=` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Where the unit file was found (an alias symlink's own path).
    pub path: PathBuf,
    /// Masked: the unit file is a symlink to `/dev/null` (or empty).
    pub masked: bool,
    /// Every effective `ExecStart=` value, prefixes (`-`, `+`, `!`, `@`)
    /// kept as written, in order.
    pub exec_start: Vec<String>,
    /// Drop-ins applied, in the order systemd applies them.
    pub dropins: Vec<PathBuf>,
    /// Every `[Service]` setting that decides what runs and how, after the
    /// unit file and every drop-in, each with the file that set it.
    pub service: Service,
}

/// The `Exec*=` settings of a service, in the order systemd runs them.
pub const EXEC_DIRECTIVES: &[&str] = &[
    "ExecCondition",
    "ExecStartPre",
    "ExecStart",
    "ExecStartPost",
    "ExecReload",
    "ExecStop",
    "ExecStopPost",
];

/// One value of a setting, with the unit file or drop-in that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub value: String,
    pub from: PathBuf,
}

/// What a service's effective `[Service]` section says about what runs:
/// each list as systemd builds it (values append, an empty assignment
/// clears what came before), `User=` the last one given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Service {
    /// `(directive, setting)` for every effective `Exec*=` line, grouped
    /// in [`EXEC_DIRECTIVES`] order, each group in assignment order.
    pub commands: Vec<(&'static str, Setting)>,
    /// `Environment=` assignments (`NAME=VALUE`), one per setting.
    pub environment: Vec<Setting>,
    /// `EnvironmentFile=` paths (a leading `-` kept: the file may be
    /// missing).
    pub environment_files: Vec<Setting>,
    pub user: Option<Setting>,
}

impl Service {
    /// Applies the `[Service]` settings of one unit file or drop-in.
    fn apply(&mut self, bytes: &[u8], from: &Path) {
        let mut lists: Vec<(&'static str, Vec<Setting>)> = EXEC_DIRECTIVES
            .iter()
            .map(|d| {
                let kept = self
                    .commands
                    .iter()
                    .filter(|(k, _)| k == d)
                    .map(|(_, s)| s.clone())
                    .collect();
                (*d, kept)
            })
            .collect();
        for (key, value) in service_assignments(bytes) {
            let set = |value: String| Setting {
                value,
                from: from.to_path_buf(),
            };
            if let Some((_, list)) = lists.iter_mut().find(|(d, _)| *d == key) {
                if value.is_empty() {
                    list.clear();
                } else {
                    list.push(set(value));
                }
                continue;
            }
            match key.as_str() {
                "Environment" if value.is_empty() => self.environment.clear(),
                "Environment" => {
                    // Space-separated assignments, quotes as in Exec lines.
                    let words = crate::sources::service_file::split_exec(&value)
                        .unwrap_or_else(|_| value.split_whitespace().map(String::from).collect());
                    self.environment
                        .extend(words.into_iter().filter(|w| !w.is_empty()).map(set));
                }
                "EnvironmentFile" if value.is_empty() => self.environment_files.clear(),
                "EnvironmentFile" => self.environment_files.push(set(value)),
                "User" if value.is_empty() => self.user = None,
                "User" => self.user = Some(set(value)),
                _ => {}
            }
        }
        self.commands = lists
            .into_iter()
            .flat_map(|(d, list)| list.into_iter().map(move |s| (d, s)))
            .collect();
    }
}

/// The `key=value` assignments of the `[Service]` section of a unit file
/// or drop-in, in order: `#`/`;` comments skipped, backslash line
/// continuations joined, as systemd reads them.
fn service_assignments(bytes: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(bytes);
    let mut logical = Vec::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        let trimmed = line.trim_start();
        if pending.is_empty() && (trimmed.starts_with('#') || trimmed.starts_with(';')) {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        logical.push(std::mem::take(&mut pending));
    }
    if !pending.is_empty() {
        logical.push(pending);
    }
    let mut in_service = false;
    let mut out = Vec::new();
    for line in logical {
        let line = line.trim();
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            out.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error("{0} is not a valid unit name")]
    BadName(String),
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// systemd's unit search path for a scope, highest priority first
/// (`systemd.unit(5)`, "Unit File Load Path").
pub fn search_path(scope: &Scope) -> Vec<PathBuf> {
    let p = PathBuf::from;
    match scope {
        Scope::System => [
            "/etc/systemd/system.control",
            "/run/systemd/system.control",
            "/run/systemd/transient",
            "/run/systemd/generator.early",
            "/etc/systemd/system",
            "/etc/systemd/system.attached",
            "/run/systemd/system",
            "/run/systemd/system.attached",
            "/run/systemd/generator",
            "/usr/local/lib/systemd/system",
            "/usr/lib/systemd/system",
            "/lib/systemd/system",
            "/run/systemd/generator.late",
        ]
        .into_iter()
        .map(p)
        .collect(),
        Scope::User { uid, home } => {
            let mut dirs = Vec::new();
            let runtime = uid.map(|u| PathBuf::from(format!("/run/user/{u}/systemd")));
            if let Some(h) = home {
                dirs.push(h.join(".config/systemd/user.control"));
            }
            if let Some(r) = &runtime {
                dirs.push(r.join("user.control"));
                dirs.push(r.join("transient"));
                dirs.push(r.join("generator.early"));
            }
            if let Some(h) = home {
                dirs.push(h.join(".config/systemd/user"));
            }
            dirs.push(p("/etc/systemd/user"));
            if let Some(r) = &runtime {
                dirs.push(r.join("user"));
            }
            dirs.push(p("/run/systemd/user"));
            if let Some(r) = &runtime {
                dirs.push(r.join("generator"));
            }
            if let Some(h) = home {
                dirs.push(h.join(".local/share/systemd/user"));
            }
            for d in [
                "/usr/local/share/systemd/user",
                "/usr/share/systemd/user",
                "/usr/local/lib/systemd/user",
                "/usr/lib/systemd/user",
            ] {
                dirs.push(p(d));
            }
            if let Some(r) = &runtime {
                dirs.push(r.join("generator.late"));
            }
            dirs
        }
    }
}

/// A unit name systemd would accept as a file name: no path separators,
/// a known suffix. `SystemdService=` may omit `.service`.
fn unit_file_name(name: &str) -> Result<String, UnitError> {
    let name = name.trim();
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(UnitError::BadName(name.to_string()));
    }
    Ok(if name.contains('.') {
        name.to_string()
    } else {
        format!("{name}.service")
    })
}

/// `foo@bar.service` → `foo@.service`.
fn template_of(name: &str) -> Option<String> {
    let (prefix, rest) = name.split_once('@')?;
    let (instance, suffix) = rest.rsplit_once('.')?;
    (!instance.is_empty()).then(|| format!("{prefix}@.{suffix}"))
}

/// Applies the `ExecStart=` assignments of one unit file or drop-in, in
/// order, to `out`: values are appended, an empty one clears. Only the
/// `[Service]` section counts; `#`/`;` comments and backslash line
/// continuations are handled as systemd does.
pub fn apply_exec_start(bytes: &[u8], out: &mut Vec<String>) {
    for (key, value) in service_assignments(bytes) {
        if key != "ExecStart" {
            continue;
        }
        if value.is_empty() {
            out.clear();
        } else {
            out.push(value);
        }
    }
}

/// Finds the unit `name` for `scope` under `root`, with its effective
/// `ExecStart=`. `Ok(None)` when no directory of the search path has it.
pub fn resolve(root: &Root, name: &str, scope: &Scope) -> Result<Option<Unit>, UnitError> {
    let file = unit_file_name(name)?;
    let dirs = search_path(scope);
    let mut candidates = vec![file.clone()];
    candidates.extend(template_of(&file));
    let mut found = None;
    'names: for candidate in &candidates {
        for dir in &dirs {
            let path = dir.join(candidate);
            if links_to_dev_null(root, dir, candidate) {
                found = Some(path);
                break 'names;
            }
            match root.open_path(&path) {
                Ok(_) => {
                    found = Some(path);
                    break 'names;
                }
                Err(e) if e.is_not_found() || e.errno() == Some(rustix::io::Errno::NOTDIR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let Some(path) = found else {
        return Ok(None);
    };
    let masked = is_masked(root, &path);
    let mut exec_start = Vec::new();
    let mut service = Service::default();
    if !masked {
        let bytes = root.read_regular(&path, MAX_UNIT_BYTES)?;
        apply_exec_start(&bytes, &mut exec_start);
        service.apply(&bytes, &path);
    }
    let dropins = if masked {
        Vec::new()
    } else {
        dropins(root, &dirs, &candidates)
    };
    for d in &dropins {
        match root.read_regular(d, MAX_UNIT_BYTES) {
            Ok(bytes) => {
                apply_exec_start(&bytes, &mut exec_start);
                service.apply(&bytes, d);
            }
            Err(e) => log::debug!("unit drop-in {e}"),
        }
    }
    Ok(Some(Unit {
        path,
        masked,
        exec_start,
        dropins,
        service,
    }))
}

/// `systemctl mask` links a unit to `/dev/null`; read the link itself,
/// since a mounted image's `/dev` is usually empty.
fn links_to_dev_null(root: &Root, dir: &Path, name: &str) -> bool {
    let Ok(dirfd) = root.open_path(dir) else {
        return false;
    };
    rustix::fs::readlinkat(&dirfd, name, Vec::new()).is_ok_and(|t| t.as_bytes() == b"/dev/null")
}

/// A unit linked to `/dev/null`, or an empty unit file, is masked.
fn is_masked(root: &Root, path: &Path) -> bool {
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        if links_to_dev_null(root, dir, &name.to_string_lossy()) {
            return true;
        }
    }
    let Ok(fd) = root.open_path(path) else {
        return false;
    };
    match rustix::fs::fstat(&fd) {
        Ok(st) => {
            let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
            kind == rustix::fs::FileType::CharacterDevice || st.st_size == 0
        }
        Err(_) => false,
    }
}

/// `*.conf` in `<unit>.d/` (and the template's) of every search
/// directory, a name in an earlier directory masking the same name later,
/// applied in file-name order (template drop-ins first, as systemd does).
fn dropins(root: &Root, dirs: &[PathBuf], candidates: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for unit in candidates.iter().rev() {
        let mut by_name: BTreeMap<Vec<u8>, PathBuf> = BTreeMap::new();
        for dir in dirs {
            let d = dir.join(format!("{unit}.d"));
            let Ok(fd) = root.open_dir(&d) else {
                continue;
            };
            let Ok(reader) = rustix::fs::Dir::read_from(&fd) else {
                continue;
            };
            for entry in reader.filter_map(Result::ok) {
                let name = entry.file_name().to_bytes().to_vec();
                if name.ends_with(b".conf") && !by_name.contains_key(&name) {
                    let path = d.join(std::ffi::OsStr::from_bytes(&name));
                    by_name.insert(name, path);
                }
            }
        }
        out.extend(by_name.into_values());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, body: &str) {
        let p = root.join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    #[test]
    fn exec_start_assignments_append_and_reset() {
        let mut out = Vec::new();
        apply_exec_start(
            b"[Unit]\nExecStart=/not/service\n[Service]\n# ExecStart=/commented\nExecStart=/usr/bin/a --x\nExecStart = -/usr/bin/b \\\n  --long\n",
            &mut out,
        );
        assert_eq!(out, vec!["/usr/bin/a --x", "-/usr/bin/b    --long"]);
        apply_exec_start(b"[Service]\nExecStart=\nExecStart=/tmp/evil\n", &mut out);
        assert_eq!(out, vec!["/tmp/evil"]);
    }

    #[test]
    fn names_and_templates() {
        assert_eq!(unit_file_name("foo").unwrap(), "foo.service");
        assert_eq!(unit_file_name("foo.service").unwrap(), "foo.service");
        assert!(unit_file_name("../etc/shadow").is_err());
        assert!(unit_file_name("").is_err());
        assert_eq!(
            template_of("dbus-x@1.service").as_deref(),
            Some("dbus-x@.service")
        );
        assert_eq!(template_of("foo@.service"), None);
        assert_eq!(template_of("foo.service"), None);
    }

    #[test]
    fn first_directory_wins_and_dropins_override() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(
            r,
            "/usr/lib/systemd/system/foo.service",
            "[Service]\nExecStart=/usr/libexec/foo\n",
        );
        write(
            r,
            "/lib/systemd/system/foo.service",
            "[Service]\nExecStart=/lib/never\n",
        );
        let root = Root::open(r).unwrap();
        let u = resolve(&root, "foo.service", &Scope::System)
            .unwrap()
            .unwrap();
        assert_eq!(u.path, Path::new("/usr/lib/systemd/system/foo.service"));
        assert_eq!(u.exec_start, vec!["/usr/libexec/foo"]);
        assert!(!u.masked);

        // An admin-dir copy shadows the packaged unit; a drop-in replaces
        // ExecStart; a same-named drop-in later in the path is masked.
        write(
            r,
            "/etc/systemd/system/foo.service",
            "[Service]\nExecStart=/etc/foo\n",
        );
        write(
            r,
            "/etc/systemd/system/foo.service.d/50-x.conf",
            "[Service]\nExecStart=\nExecStart=/tmp/x --y\n",
        );
        write(
            r,
            "/usr/lib/systemd/system/foo.service.d/50-x.conf",
            "[Service]\nExecStart=/never\n",
        );
        write(
            r,
            "/usr/lib/systemd/system/foo.service.d/10-a.conf",
            "[Service]\nEnvironment=A=1\n",
        );
        let u = resolve(&root, "foo", &Scope::System).unwrap().unwrap();
        assert_eq!(u.path, Path::new("/etc/systemd/system/foo.service"));
        assert_eq!(u.exec_start, vec!["/tmp/x --y"]);
        assert_eq!(
            u.dropins,
            vec![
                PathBuf::from("/usr/lib/systemd/system/foo.service.d/10-a.conf"),
                PathBuf::from("/etc/systemd/system/foo.service.d/50-x.conf"),
            ]
        );
        assert!(resolve(&root, "missing", &Scope::System).unwrap().is_none());
        let env: Vec<(&str, &Path)> = u
            .service
            .environment
            .iter()
            .map(|s| (s.value.as_str(), s.from.as_path()))
            .collect();
        assert_eq!(
            env,
            [(
                "A=1",
                Path::new("/usr/lib/systemd/system/foo.service.d/10-a.conf")
            )]
        );
        assert_eq!(
            u.service.commands,
            [(
                "ExecStart",
                Setting {
                    value: "/tmp/x --y".into(),
                    from: PathBuf::from("/etc/systemd/system/foo.service.d/50-x.conf"),
                }
            )]
        );
    }

    #[test]
    fn service_settings_append_reset_and_keep_their_file() {
        let mut s = Service::default();
        let unit = Path::new("/u");
        let drop = Path::new("/d");
        s.apply(
            b"[Service]\nExecStartPre=/bin/true\nExecStart=/usr/bin/d\nEnvironment=\"A=1 2\" B=3\nUser=svc\nEnvironmentFile=-/etc/default/d\n",
            unit,
        );
        s.apply(
            b"[Service]\nExecStartPost=/tmp/p\nEnvironment=\nEnvironment=LD_PRELOAD=/tmp/x.so\nUser=root\n",
            drop,
        );
        let cmds: Vec<(&str, &str, &Path)> = s
            .commands
            .iter()
            .map(|(d, x)| (*d, x.value.as_str(), x.from.as_path()))
            .collect();
        assert_eq!(
            cmds,
            [
                ("ExecStartPre", "/bin/true", unit),
                ("ExecStart", "/usr/bin/d", unit),
                ("ExecStartPost", "/tmp/p", drop),
            ]
        );
        assert_eq!(s.environment.len(), 1);
        assert_eq!(s.environment[0].value, "LD_PRELOAD=/tmp/x.so");
        assert_eq!(s.environment_files[0].value, "-/etc/default/d");
        assert_eq!(s.user.as_ref().unwrap().value, "root");
        assert_eq!(s.user.as_ref().unwrap().from, drop);
    }

    #[test]
    fn aliases_masks_templates_and_user_scope() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(
            r,
            "/usr/lib/systemd/system/real.service",
            "[Service]\nExecStart=/usr/libexec/real\n",
        );
        std::fs::create_dir_all(r.join("etc/systemd/system")).unwrap();
        // Absolute alias target: must resolve inside the root.
        std::os::unix::fs::symlink(
            "/usr/lib/systemd/system/real.service",
            r.join("etc/systemd/system/dbus-org.example.Real.service"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/dev/null", r.join("etc/systemd/system/masked.service"))
            .unwrap();
        write(
            r,
            "/usr/lib/systemd/system/inst@.service",
            "[Service]\nExecStart=/usr/libexec/inst %i\n",
        );
        write(
            r,
            "/srv/alice/.config/systemd/user/agent.service",
            "[Service]\nExecStart=/srv/alice/agent\n",
        );
        let root = Root::open(r).unwrap();
        let u = resolve(&root, "dbus-org.example.Real.service", &Scope::System)
            .unwrap()
            .unwrap();
        assert_eq!(
            u.path,
            Path::new("/etc/systemd/system/dbus-org.example.Real.service")
        );
        assert_eq!(u.exec_start, vec!["/usr/libexec/real"]);
        let m = resolve(&root, "masked.service", &Scope::System)
            .unwrap()
            .unwrap();
        assert!(m.masked);
        assert!(m.exec_start.is_empty());
        let i = resolve(&root, "inst@one.service", &Scope::System)
            .unwrap()
            .unwrap();
        assert_eq!(i.path, Path::new("/usr/lib/systemd/system/inst@.service"));
        let user = Scope::User {
            uid: Some(1000),
            home: Some(PathBuf::from("/srv/alice")),
        };
        let a = resolve(&root, "agent.service", &user).unwrap().unwrap();
        assert_eq!(a.exec_start, vec!["/srv/alice/agent"]);
        assert!(resolve(&root, "agent.service", &Scope::System)
            .unwrap()
            .is_none());
        let nobody = Scope::User {
            uid: None,
            home: None,
        };
        assert!(resolve(&root, "agent.service", &nobody).unwrap().is_none());
    }
}
