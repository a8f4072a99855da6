//! systemd units as evidence of D-Bus activation: which unit a process runs
//! in (from `/proc/<pid>/cgroup`), and what a dbus-broker transient unit's
//! name says about the bus and the service it was started for.
//!
//! When a `.service` file names `SystemdService=`, and always under
//! dbus-broker, the bus asks systemd to start the service, so the process
//! is a child of pid 1 or `systemd --user` and nothing in its parentage
//! points at the bus. Its unit does: the unit `SystemdService=` names, or
//! the transient unit dbus-broker creates,
//! `dbus-<bus unique name>-<escaped service name>@<n>.service`. Knows
//! nothing of SQL or of service files; matching a unit to a file is the
//! caller's.

/// The unit a process runs in, from the bytes of its `cgroup` file: the
/// innermost `*.service` component of the unified (v2, `0::`) path, or
/// else of the `name=systemd` (v1) hierarchy. A user manager's own unit
/// (`user@1000.service`) is an outer component, so a user service nested
/// under it is what comes back. `None` outside any service (a scope, a
/// slice, the root cgroup).
pub fn unit_from_cgroup(bytes: &[u8]) -> Option<Placement> {
    let text = String::from_utf8_lossy(bytes);
    let path_of = |prefix: &str| {
        text.lines().find_map(|l| {
            let (_, rest) = l.split_once(':')?;
            rest.strip_prefix(prefix).map(str::to_string)
        })
    };
    let path = path_of(":").or_else(|| path_of("name=systemd:"))?;
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let unit = parts.iter().rev().find(|p| p.ends_with(".service"))?;
    // `user@<uid>.service` above the unit means the user manager runs it.
    let user_manager = parts
        .iter()
        .filter(|p| *p != unit)
        .any(|p| p.starts_with("user@") && p.ends_with(".service"));
    Some(Placement {
        unit: unit.to_string(),
        user_manager,
    })
}

/// Where a process sits in systemd's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The innermost service unit, e.g. `dbus-:1.7-org.example.Foo@0.service`.
    pub unit: String,
    /// Whether a user manager (`systemd --user`, a session bus's activator)
    /// runs it rather than the system manager.
    pub user_manager: bool,
}

/// What a dbus-broker transient unit's name carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transient {
    /// The unique name of the bus connection that asked, e.g. `:1.7`.
    pub unique_name: String,
    /// The D-Bus service name, unescaped.
    pub service_name: String,
}

/// Parses `dbus-<unique name>-<escaped service name>@<n>.service`. Unique
/// names are `:` plus digits and dots, so the first `-` after them ends
/// them; the service name is escaped as systemd escapes unit names (`-`
/// and other bytes become `\xNN`), so it holds no bare `-` of its own.
pub fn parse_transient(unit: &str) -> Option<Transient> {
    let body = unit.strip_prefix("dbus-")?.strip_suffix(".service")?;
    let (body, instance) = body.rsplit_once('@')?;
    if instance.is_empty() || !instance.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (unique, escaped) = body.split_once('-')?;
    let unique_ok = unique.len() > 1
        && unique.starts_with(':')
        && unique[1..].bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !unique_ok || escaped.is_empty() {
        return None;
    }
    Some(Transient {
        unique_name: unique.to_string(),
        service_name: unescape(escaped)?,
    })
}

/// Reverses systemd's unit-name escaping of a string (`\xNN` to the byte;
/// a bare `-` stands for `/`, which no bus name holds but a path would).
/// `None` for a malformed escape.
pub fn unescape(escaped: &str) -> Option<String> {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let hex = bytes.get(i + 1..i + 4)?;
                if hex[0] != b'x' {
                    return None;
                }
                let h = std::str::from_utf8(&hex[1..]).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 4;
            }
            b'-' => {
                out.push(b'/');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Unit types systemd knows by suffix.
const UNIT_SUFFIXES: &[&str] = &[
    ".service",
    ".socket",
    ".target",
    ".device",
    ".mount",
    ".automount",
    ".swap",
    ".timer",
    ".path",
    ".slice",
    ".scope",
];

/// Whether the unit `SystemdService=` names is this unit: systemd mangles
/// a name without a unit-type suffix by adding `.service`.
pub fn names_unit(systemd_service: &str, unit: &str) -> bool {
    let s = systemd_service.trim();
    if UNIT_SUFFIXES.iter().any(|suffix| s.ends_with(suffix)) {
        s == unit
    } else {
        unit.strip_suffix(".service") == Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_from_v2_and_v1() {
        let p = unit_from_cgroup(b"0::/system.slice/org.example.Sys.service\n").unwrap();
        assert_eq!(p.unit, "org.example.Sys.service");
        assert!(!p.user_manager);
        let p = unit_from_cgroup(
            b"0::/user.slice/user-1000.slice/user@1000.service/app.slice/dbus-:1.7-org.example.Foo@0.service\n",
        )
        .unwrap();
        assert_eq!(p.unit, "dbus-:1.7-org.example.Foo@0.service");
        assert!(p.user_manager);
        let p =
            unit_from_cgroup(b"12:pids:/x\n1:name=systemd:/system.slice/foo.service\n").unwrap();
        assert_eq!(p.unit, "foo.service");
        assert_eq!(unit_from_cgroup(b"0::/user.slice/session-3.scope\n"), None);
        assert_eq!(unit_from_cgroup(b"0::/\n"), None);
        assert_eq!(unit_from_cgroup(b""), None);
        assert_eq!(unit_from_cgroup(b"\xff\xfe"), None);
    }

    #[test]
    fn transient_names() {
        let t = parse_transient("dbus-:1.7-org.example.Foo@0.service").unwrap();
        assert_eq!(t.unique_name, ":1.7");
        assert_eq!(t.service_name, "org.example.Foo");
        let t = parse_transient("dbus-:1.12-org.example.My\\x2dThing@15.service").unwrap();
        assert_eq!(t.service_name, "org.example.My-Thing");
        for bad in [
            "dbus-org.example.Foo@0.service",
            "dbus-:1.7-org.example.Foo.service",
            "dbus-:1.7-org.example.Foo@x.service",
            "dbus-:1.7-@0.service",
            "dbus-:1.7-a\\x2@0.service",
            "dbus.service",
            "dbus-broker.service",
        ] {
            assert_eq!(parse_transient(bad), None, "{bad}");
        }
    }

    #[test]
    fn systemd_service_names() {
        assert!(names_unit("foo.service", "foo.service"));
        assert!(names_unit("foo", "foo.service"));
        assert!(!names_unit("foo", "foobar.service"));
        assert!(!names_unit("foo.socket", "foo.service"));
        assert!(names_unit("org.freedesktop.X", "org.freedesktop.X.service"));
    }
}
