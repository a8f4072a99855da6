//! Bus daemons as seen in `/proc`: which processes are buses, which are the
//! classic daemon's babysitters and launch helpers, what kind of bus each one
//! serves, and where it looks for `.service` files.
//!
//! Knows nothing of SQL. The bus type follows the daemon's own reading:
//! `--system` and `--session` are taken at their word; `--config-file` sends
//! us to that file (under `--root`) for its `<type>`. A config without a
//! `system`/`session` type (or one we cannot read) is a `custom` bus.
//! `<include>`/`<includedir>` are not followed: the type and service
//! directories of a private bus sit in its main file in practice. A relative
//! `--config-file` is taken relative to the root, not the daemon's cwd.
//!
//! The service-directory list here serves only the bus-children table; the
//! `dbus_service_files` table has its own (`service_dirs`), and the two
//! should be unified.
use crate::sources::bus_config;
use crate::sources::proc::read_capped;
use std::path::{Path, PathBuf};

/// Bus config files are small; a bigger one is not a config we trust to parse.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// `comm` is the first 15 bytes of the program name.
const COMM_MAX: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonKind {
    DbusDaemon,
    DbusBroker,
    DbusBrokerLaunch,
}

impl DaemonKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DaemonKind::DbusDaemon => "dbus-daemon",
            DaemonKind::DbusBroker => "dbus-broker",
            DaemonKind::DbusBrokerLaunch => "dbus-broker-launch",
        }
    }
}

/// The daemon kind for a `comm` value, which the kernel truncates to 15
/// bytes (`dbus-broker-launch` shows as `dbus-broker-lau`).
pub fn daemon_kind(comm: &str) -> Option<DaemonKind> {
    match comm {
        "dbus-daemon" => Some(DaemonKind::DbusDaemon),
        "dbus-broker" => Some(DaemonKind::DbusBroker),
        "dbus-broker-lau" | "dbus-broker-launch" => Some(DaemonKind::DbusBrokerLaunch),
        _ => None,
    }
}

/// Whether a `comm` is the system bus's setuid launch helper (truncated).
pub fn is_launch_helper(comm: &str) -> bool {
    comm == "dbus-daemon-lau" || comm == "dbus-daemon-launch-helper"
}

/// A program name from a (possibly truncated) `comm`: when `comm` fills the
/// 15 bytes and some candidate path's file name starts with it, that full
/// name is the real one (`gnome-keyring-d` → `gnome-keyring-daemon`).
pub fn full_name<'a>(comm: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    if comm.len() >= COMM_MAX {
        for c in candidates {
            let base = c.rsplit('/').next().unwrap_or(c);
            if base.len() > comm.len() && base.starts_with(comm) {
                return base.to_string();
            }
        }
    }
    comm.to_string()
}

/// Which bus a daemon runs, with the words every table's `bus` column
/// uses: `system` and `session` as `dbus_service_files.bus` spells them,
/// `custom` for any other bus (only process tables can meet one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusType {
    System,
    Session,
    Custom,
}

impl BusType {
    /// The bus a config's `<type>` or a `DBUS_STARTER_BUS_TYPE` names.
    /// dbus-daemon passes its `<type>` into the starter environment
    /// unchanged and libdbus compares it byte for byte with `system` and
    /// `session`, so any other name, case included, is a custom bus.
    pub fn from_type_name(name: &str) -> BusType {
        match name {
            "system" => BusType::System,
            "session" => BusType::Session,
            _ => BusType::Custom,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BusType::System => "system",
            BusType::Session => "session",
            BusType::Custom => "custom",
        }
    }
}

/// What a bus daemon's command line says about its bus.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DaemonArgs {
    pub system: bool,
    /// The literal `--session` flag: what the detection rule checks.
    pub session: bool,
    pub config_file: Option<String>,
    /// dbus-broker-launch's `--scope system|user`.
    pub scope: Option<String>,
    /// `--address`: where the daemon listens, overriding its config.
    pub address: Option<String>,
}

pub fn parse_args(args: &[String]) -> DaemonArgs {
    let mut out = DaemonArgs::default();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--system" => out.system = true,
            "--session" => out.session = true,
            "--config-file" => out.config_file = it.next().cloned(),
            "--scope" => out.scope = it.next().cloned(),
            "--address" => out.address = it.next().cloned(),
            other => {
                if let Some(p) = other.strip_prefix("--config-file=") {
                    out.config_file = Some(p.to_string());
                } else if let Some(s) = other.strip_prefix("--scope=") {
                    out.scope = Some(s.to_string());
                } else if let Some(a) = other.strip_prefix("--address=") {
                    out.address = Some(a.to_string());
                }
            }
        }
    }
    out
}

/// The parts of a bus config that matter here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BusConfig {
    pub bus_type: Option<String>,
    /// `<servicedir>` elements in document order.
    pub servicedirs: Vec<String>,
    pub standard_session_servicedirs: bool,
    pub standard_system_servicedirs: bool,
    /// `<listen>` addresses in document order.
    pub listen: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not XML: {problem}")]
    Xml { path: PathBuf, problem: String },
}

/// The parts of a bus config document that describe a running bus, read
/// with the one bus-config parser (`sources::bus_config`): relative
/// `<servicedir>`s come back resolved against `path`'s directory.
pub fn parse_config(bytes: &[u8], path: &Path) -> Result<BusConfig, String> {
    let parsed = bus_config::parse(bytes, path).map_err(|e| e.to_string())?;
    let mut out = BusConfig {
        bus_type: parsed.bus_type,
        listen: parsed.listen,
        ..BusConfig::default()
    };
    for d in parsed.directives {
        match d {
            bus_config::Directive::ServiceDir(p) => {
                out.servicedirs.push(p.to_string_lossy().into_owned())
            }
            bus_config::Directive::StandardSessionServiceDirs => {
                out.standard_session_servicedirs = true
            }
            bus_config::Directive::StandardSystemServiceDirs => {
                out.standard_system_servicedirs = true
            }
            bus_config::Directive::Include { .. } | bus_config::Directive::IncludeDir(_) => {}
        }
    }
    Ok(out)
}

/// Reads a config file found in a daemon's command line, under `root`,
/// safely (no symlink, no FIFO, capped).
pub fn read_config(root: &Path, path: &str) -> Result<BusConfig, ConfigError> {
    let full = under_root(root, path);
    let bytes = read_capped(&full, MAX_CONFIG_BYTES).map_err(|source| ConfigError::Io {
        path: full.clone(),
        source,
    })?;
    parse_config(&bytes, Path::new(path)).map_err(|problem| ConfigError::Xml {
        path: full,
        problem,
    })
}

pub fn under_root(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// A bus, described from its daemon's command line (and config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bus {
    pub kind: DaemonKind,
    pub bus_type: BusType,
    /// Whether the detection rule counts it as a session bus.
    pub rule_session: bool,
    pub config: Option<BusConfig>,
    /// Where it listens, as far as its command line and config say: what
    /// `DBUS_STARTER_ADDRESS` of the services it starts points at.
    pub addresses: Vec<String>,
}

/// Classifies a bus. `parent_args` is the broker launcher's command line
/// when `kind` is dbus-broker (the broker itself carries no scope).
pub fn describe(
    kind: DaemonKind,
    args: &[String],
    parent_args: Option<&[String]>,
    root: &Path,
) -> Bus {
    let parsed = parse_args(args);
    let (bus_type, config) = match kind {
        DaemonKind::DbusDaemon => {
            if parsed.session {
                (BusType::Session, None)
            } else if parsed.system {
                (BusType::System, None)
            } else if let Some(cfg) = &parsed.config_file {
                match read_config(root, cfg) {
                    Ok(c) => {
                        let t = c
                            .bus_type
                            .as_deref()
                            .map_or(BusType::Custom, BusType::from_type_name);
                        (t, Some(c))
                    }
                    Err(e) => {
                        log::debug!("bus config: {e}");
                        (BusType::Custom, None)
                    }
                }
            } else {
                // dbus-daemon without --system/--session/--config-file refuses
                // to start; whatever this is, it is not a standard bus.
                (BusType::Custom, None)
            }
        }
        DaemonKind::DbusBroker | DaemonKind::DbusBrokerLaunch => {
            let scope = if kind == DaemonKind::DbusBroker {
                parent_args.map(|a| parse_args(a).scope).unwrap_or(None)
            } else {
                parsed.scope.clone()
            };
            match scope.as_deref() {
                Some("user") => (BusType::Session, None),
                // dbus-broker-launch defaults to the system scope.
                Some("system") | None => (BusType::System, None),
                Some(_) => (BusType::Custom, None),
            }
        }
    };
    // The rule asks for the literal `--session` argument; the broker's
    // equivalent is a user-scope launcher.
    let rule_session =
        parsed.session || (kind != DaemonKind::DbusDaemon && bus_type == BusType::Session);
    let addresses = match (&parsed.address, &config) {
        (Some(a), _) => vec![a.clone()],
        (None, Some(c)) if !c.listen.is_empty() => c.listen.clone(),
        _ if bus_type == BusType::System => vec![SYSTEM_BUS_ADDRESS.to_string()],
        _ => Vec::new(),
    };
    Bus {
        kind,
        bus_type,
        rule_session,
        config,
        addresses,
    }
}

/// The system bus's well-known address (the D-Bus specification's default).
pub const SYSTEM_BUS_ADDRESS: &str = "unix:path=/var/run/dbus/system_bus_socket";

/// The socket a D-Bus address names: the `path=` (or `abstract=`, shown
/// with a leading `@`) of its first `unix:` transport, with `/var/run`
/// read as `/run` (a symlink to it everywhere), so two spellings of one
/// bus compare equal. A guid or other keys do not matter.
pub fn address_socket(address: &str) -> Option<String> {
    address.split(';').find_map(|transport| {
        let keys = transport.trim().strip_prefix("unix:")?;
        keys.split(',').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let v = unescape_address(v);
            match k {
                "path" => Some(match v.strip_prefix("/var/run/") {
                    Some(rest) => format!("/run/{rest}"),
                    None => v,
                }),
                "abstract" => Some(format!("@{v}")),
                _ => None,
            }
        })
    })
}

/// D-Bus address values escape bytes as `%NN`.
fn unescape_address(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%')
            .then(|| b.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match hex {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub const STANDARD_SYSTEM_DIRS: &[&str] = &[
    "/etc/dbus-1/system-services",
    "/run/dbus-1/system-services",
    "/usr/local/share/dbus-1/system-services",
    "/usr/share/dbus-1/system-services",
    "/lib/dbus-1/system-services",
];

/// Data dirs searched when `XDG_DATA_DIRS` is unset (the XDG default).
const DEFAULT_DATA_DIRS: &[&str] = &["/usr/local/share", "/usr/share"];

/// Where a session bus looks, given the daemon's `XDG_DATA_HOME`,
/// `XDG_DATA_DIRS` and the home directory of the bus owner.
pub fn session_dirs(
    xdg_data_home: Option<&str>,
    xdg_data_dirs: Option<&str>,
    home: Option<&str>,
) -> Vec<String> {
    let mut dirs = Vec::new();
    match (xdg_data_home, home) {
        (Some(x), _) if !x.is_empty() => dirs.push(format!("{x}/dbus-1/services")),
        (_, Some(h)) => dirs.push(format!("{h}/.local/share/dbus-1/services")),
        _ => {}
    }
    let data_dirs: Vec<&str> = match xdg_data_dirs {
        Some(d) if !d.is_empty() => d.split(':').filter(|s| !s.is_empty()).collect(),
        _ => DEFAULT_DATA_DIRS.to_vec(),
    };
    for d in data_dirs {
        dirs.push(format!("{}/dbus-1/services", d.trim_end_matches('/')));
    }
    // The daemon's own data directory comes last, whatever XDG says.
    let builtin = "/usr/share/dbus-1/services".to_string();
    if !dirs.contains(&builtin) {
        dirs.push(builtin);
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kinds_from_truncated_comm() {
        assert_eq!(daemon_kind("dbus-daemon"), Some(DaemonKind::DbusDaemon));
        assert_eq!(daemon_kind("dbus-broker"), Some(DaemonKind::DbusBroker));
        assert_eq!(
            daemon_kind("dbus-broker-lau"),
            Some(DaemonKind::DbusBrokerLaunch)
        );
        assert_eq!(daemon_kind("dbus-daemon-lau"), None);
        assert!(is_launch_helper("dbus-daemon-lau"));
        assert!(!is_launch_helper("dbus-daemon"));
    }

    #[test]
    fn full_name_from_truncated_comm() {
        assert_eq!(
            full_name(
                "gnome-keyring-d",
                ["/bin/sh", "/tmp/x/gnome-keyring-daemon"]
            ),
            "gnome-keyring-daemon"
        );
        assert_eq!(
            full_name("x.sh", ["/tmp/x.sh.bak"]),
            "x.sh",
            "short comm is whole"
        );
        assert_eq!(
            full_name("abcdefghijklmno", ["/bin/other"]),
            "abcdefghijklmno"
        );
    }

    #[test]
    fn args_forms() {
        let a = parse_args(&v(&["dbus-daemon", "--config-file=/tmp/b.conf", "--fork"]));
        assert_eq!(a.config_file.as_deref(), Some("/tmp/b.conf"));
        let a = parse_args(&v(&["dbus-daemon", "--config-file", "/tmp/c.conf"]));
        assert_eq!(a.config_file.as_deref(), Some("/tmp/c.conf"));
        let a = parse_args(&v(&["dbus-daemon", "--session", "--address=unix:path=/x"]));
        assert!(a.session && !a.system);
        let a = parse_args(&v(&["dbus-broker-launch", "--scope", "user"]));
        assert_eq!(a.scope.as_deref(), Some("user"));
        // The program name itself is never a flag.
        assert!(!parse_args(&v(&["--session"])).session);
    }

    #[test]
    fn config_type_and_dirs() {
        let c = parse_config(
            br#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>custom</type><listen>unix:path=/tmp/s</listen>
<servicedir>/tmp/a</servicedir><servicedir> /tmp/b </servicedir><servicedir>rel</servicedir>
<standard_session_servicedirs/></busconfig>"#,
            Path::new("/etc/bus/test.conf"),
        )
        .unwrap();
        assert_eq!(c.bus_type.as_deref(), Some("custom"));
        // Blanks are kept, as dbus-daemon keeps them: " /tmp/b " is relative.
        assert_eq!(
            c.servicedirs,
            v(&["/tmp/a", "/etc/bus/ /tmp/b ", "/etc/bus/rel"])
        );
        assert_eq!(c.listen, v(&["unix:path=/tmp/s"]));
        assert!(c.standard_session_servicedirs && !c.standard_system_servicedirs);
        assert!(parse_config(b"<busconfig>", Path::new("/x.conf")).is_err());
        assert!(parse_config(b"", Path::new("/x.conf")).is_err());
        // The last <type> wins, as in dbus-daemon.
        let c = parse_config(
            b"<busconfig><type>system</type><type>session</type></busconfig>",
            Path::new("/x.conf"),
        )
        .unwrap();
        assert_eq!(c.bus_type.as_deref(), Some("session"));
    }

    #[test]
    fn describe_bus_types() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join("s.conf"),
            "<busconfig><type>session</type></busconfig>",
        )
        .unwrap();
        std::fs::write(
            root.path().join("c.conf"),
            "<busconfig><type>custom</type></busconfig>",
        )
        .unwrap();
        let d = |args: &[&str]| describe(DaemonKind::DbusDaemon, &v(args), None, root.path());
        let b = d(&["dbus-daemon", "--session"]);
        assert_eq!((b.bus_type, b.rule_session), (BusType::Session, true));
        let b = d(&["dbus-daemon", "--system"]);
        assert_eq!((b.bus_type, b.rule_session), (BusType::System, false));
        let b = d(&["dbus-daemon", "--config-file=/s.conf"]);
        assert_eq!(
            (b.bus_type, b.rule_session),
            (BusType::Session, false),
            "no literal --session"
        );
        assert_eq!(
            d(&["dbus-daemon", "--config-file=/c.conf"]).bus_type,
            BusType::Custom
        );
        assert_eq!(
            d(&["dbus-daemon", "--config-file=/missing.conf"]).bus_type,
            BusType::Custom
        );
        let b = describe(
            DaemonKind::DbusBroker,
            &v(&["dbus-broker", "--log", "4"]),
            Some(&v(&["dbus-broker-launch", "--scope", "user"])),
            root.path(),
        );
        assert_eq!((b.bus_type, b.rule_session), (BusType::Session, true));
        let b = describe(
            DaemonKind::DbusBrokerLaunch,
            &v(&["dbus-broker-launch"]),
            None,
            root.path(),
        );
        assert_eq!(b.bus_type, BusType::System);
    }

    #[test]
    fn type_names_are_the_bus_column_words() {
        assert_eq!(BusType::from_type_name("system"), BusType::System);
        assert_eq!(BusType::from_type_name("session"), BusType::Session);
        assert_eq!(BusType::from_type_name("Session"), BusType::Custom);
        assert_eq!(BusType::from_type_name("").as_str(), "custom");
        assert_eq!(BusType::from_type_name("mybus").as_str(), "custom");
    }

    #[test]
    fn addresses_and_sockets() {
        let root = tempfile::tempdir().unwrap();
        let b = describe(
            DaemonKind::DbusDaemon,
            &v(&[
                "dbus-daemon",
                "--session",
                "--address=unix:path=/tmp/s.sock",
            ]),
            None,
            root.path(),
        );
        assert_eq!(b.addresses, v(&["unix:path=/tmp/s.sock"]));
        assert_eq!(
            address_socket("unix:path=/tmp/s%2csock,guid=abc").as_deref(),
            Some("/tmp/s,sock")
        );
        assert_eq!(
            address_socket("tcp:host=x;unix:abstract=/tmp/dbus-x,guid=1").as_deref(),
            Some("@/tmp/dbus-x")
        );
        assert_eq!(
            address_socket(SYSTEM_BUS_ADDRESS),
            address_socket("unix:path=/run/dbus/system_bus_socket")
        );
        assert_eq!(address_socket("unix:tmpdir=/tmp"), None);
    }

    #[test]
    fn session_dir_order() {
        assert_eq!(
            session_dirs(Some("/x"), None, Some("/home/u")),
            v(&[
                "/x/dbus-1/services",
                "/usr/local/share/dbus-1/services",
                "/usr/share/dbus-1/services"
            ])
        );
        assert_eq!(
            session_dirs(None, Some("/a:/b/"), Some("/home/u")),
            v(&[
                "/home/u/.local/share/dbus-1/services",
                "/a/dbus-1/services",
                "/b/dbus-1/services",
                "/usr/share/dbus-1/services"
            ])
        );
    }
}
