//! `dbus_policy_rules`: one row per `<allow>`/`<deny>` of every bus
//! configuration file, so a hunt sees what a bus permits, not only which
//! files exist. A single policy fragment can let any local user own a
//! privileged name or call a root service; that is persistence and
//! privilege escalation without any `.service` file.
//!
//! Which files a bus reads, and the rules in them, come from
//! `sources::service_dirs` (through `sources::bus_config`, the one XML
//! reader); ownership from `sources::packages`. This module orders the
//! rules as dbus-daemon applies them and turns them into rows.
use crate::context::QueryContext;
use crate::row::{Column, Errors, Row};
use crate::settings::Settings;
use crate::sources::bus_config::{FoundRule, PolicyContext};
use crate::sources::fs_safe::{self, Root};
use crate::sources::provenance::{self, Provenance};
use crate::sources::{packages, service_dirs};
use crate::spec::columns::dbus_policy_rules as c;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Rule attributes with a column each: (attribute, column).
const ATTRIBUTES: [(&str, Column); 24] = [
    ("send_destination", c::SEND_DESTINATION),
    ("send_destination_prefix", c::SEND_DESTINATION_PREFIX),
    ("send_interface", c::SEND_INTERFACE),
    ("send_member", c::SEND_MEMBER),
    ("send_path", c::SEND_PATH),
    ("send_type", c::SEND_TYPE),
    ("send_error", c::SEND_ERROR),
    ("send_broadcast", c::SEND_BROADCAST),
    ("send_requested_reply", c::SEND_REQUESTED_REPLY),
    ("receive_sender", c::RECEIVE_SENDER),
    ("receive_interface", c::RECEIVE_INTERFACE),
    ("receive_member", c::RECEIVE_MEMBER),
    ("receive_path", c::RECEIVE_PATH),
    ("receive_type", c::RECEIVE_TYPE),
    ("receive_error", c::RECEIVE_ERROR),
    ("receive_requested_reply", c::RECEIVE_REQUESTED_REPLY),
    ("own", c::OWN),
    ("own_prefix", c::OWN_PREFIX),
    ("user", c::CONNECT_USER),
    ("group", c::CONNECT_GROUP),
    ("eavesdrop", c::EAVESDROP),
    ("log", c::LOG),
    ("min_fds", c::MIN_FDS),
    ("max_fds", c::MAX_FDS),
];

pub fn generate(settings: &Settings, ctx: &QueryContext) -> Vec<Row> {
    let root = match super::open_root(settings) {
        Ok(r) => r,
        Err(e) => {
            let mut row = Row::new(&c::SCHEMA);
            row.set(c::PATH, "/").set(c::ERROR, e.to_string());
            return vec![row];
        }
    };
    let found = service_dirs::discover(&root);
    let want_paths = ctx.eq_values("path");
    let wanted = |p: &str| want_paths.as_ref().is_none_or(|w| w.iter().any(|v| v == p));
    let positions = positions(&found.policy_rules);
    let mut rows = Vec::new();
    // The file each row comes from, as the package databases spell it.
    let mut from: Vec<&[u8]> = Vec::new();
    for (r, position) in found.policy_rules.iter().zip(positions) {
        let path = fs_safe::render_path(&r.from);
        if !wanted(&path) {
            continue;
        }
        let mut row = rule_row(r, position);
        row.set(c::PATH, path);
        rows.push(row);
        from.push(r.from.as_os_str().as_bytes());
    }
    for (path, error) in &found.config_errors {
        let shown = fs_safe::render_path(path);
        if !wanted(&shown) {
            continue;
        }
        let mut row = Row::new(&c::SCHEMA);
        row.set(c::PATH, shown).set(c::ERROR, error.as_str());
        rows.push(row);
        from.push(path.as_os_str().as_bytes());
    }
    // The databases are asked about the configuration files the rows come
    // from and no other path: a map of every installed file is never built.
    // The bus reads a linked file's target, so that is the file judged:
    // a link where a package put a file lends the target no trust.
    if (ctx.uses(c::PACKAGE) || ctx.uses(c::PROVENANCE)) && !rows.is_empty() {
        let mut read: Vec<(&[u8], PathBuf)> = Vec::new();
        let targets: Vec<PathBuf> = from
            .iter()
            .map(|p| {
                if let Some((_, t)) = read.iter().find(|(q, _)| q == p) {
                    return t.clone();
                }
                let t = read_as(&root, Path::new(OsStr::from_bytes(p)));
                read.push((p, t.clone()));
                t
            })
            .collect();
        let owners = packages::owners_of(
            &root,
            targets.iter().map(|t| t.as_os_str().as_bytes()),
            false,
        );
        for (row, target) in rows.iter_mut().zip(&targets) {
            ownership(row, &owners, target.as_os_str().as_bytes());
        }
    }
    rows
}

/// The file the bus reads for `path`: every symlink resolved inside the
/// root; `path` itself when it is no link or cannot be resolved.
fn read_as(root: &Root, path: &Path) -> PathBuf {
    root.open_path(path)
        .ok()
        .and_then(|fd| root.inner_path(rustix::fd::AsFd::as_fd(&fd)))
        .unwrap_or_else(|| path.to_path_buf())
}

fn ownership(row: &mut Row, owners: &packages::Owners, path: &[u8]) {
    let owned = owners.lookup(path);
    let provenance = provenance::packaged(owned.as_ref());
    row.set(c::PACKAGE, owners.owner(path))
        .set(c::PROVENANCE, provenance.map(Provenance::as_str));
}

/// Each rule's 1-based position in its bus's order of application
/// (`bus/policy.c`): by context rank, then reading order.
pub(crate) fn positions<T: PartialEq + Copy>(rules: &[FoundRule<T>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rules.len()).collect();
    order.sort_by_key(|&i| (rules[i].rule.context.rank(), rules[i].seq));
    let mut out = vec![0; rules.len()];
    let mut counts: Vec<(T, usize)> = Vec::new();
    for i in order {
        let tag = rules[i].tag;
        let n = match counts.iter_mut().find(|(t, _)| *t == tag) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                counts.push((tag, 1));
                1
            }
        };
        out[i] = n;
    }
    out
}

/// What makes dbus-daemon refuse the file a rule is in, found on the rule.
#[derive(Debug, thiserror::Error)]
enum RuleError {
    #[error("<policy> without a valid context ({0}): dbus-daemon refuses the file")]
    InvalidContext(String),
    #[error("unknown attribute {0}: dbus-daemon refuses the file")]
    UnknownAttribute(String),
}

fn rule_row(r: &FoundRule<service_dirs::Bus>, position: usize) -> Row {
    let mut row = Row::new(&c::SCHEMA);
    let mut errors = Errors::<RuleError>::default();
    let (context, user, group, at_console) = match &r.rule.context {
        PolicyContext::Default => ("default", None, None, None),
        PolicyContext::Mandatory => ("mandatory", None, None, None),
        PolicyContext::User(u) => ("user", Some(u.as_str()), None, None),
        PolicyContext::Group(g) => ("group", None, Some(g.as_str()), None),
        PolicyContext::AtConsole(b) => ("at_console", None, None, Some(*b)),
        PolicyContext::Invalid(why) => {
            errors.push(RuleError::InvalidContext(why.to_string()));
            ("invalid", None, None, None)
        }
    };
    row.set(c::BUS, r.tag.as_str())
        .set(c::CONTEXT, context)
        .set(c::USER, user)
        .set(c::GROUP, group)
        .set(c::AT_CONSOLE, at_console)
        .set(c::POSITION, i64::try_from(position).unwrap_or(i64::MAX))
        .set(c::VERDICT, if r.rule.allow { "allow" } else { "deny" });
    for (name, value) in &r.rule.attributes {
        match ATTRIBUTES.iter().find(|(a, _)| a == name) {
            Some((_, col)) => {
                row.set(*col, value.as_str());
            }
            None => errors.push(RuleError::UnknownAttribute(name.to_string())),
        }
    }
    errors.write(&mut row, c::ERROR);
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn text(row: &Row, col: impl crate::row::Key) -> Option<String> {
        row.text(col).map(str::to_string)
    }

    fn int(row: &Row, col: impl crate::row::Key) -> Option<i64> {
        row.int(col)
    }

    fn write(r: &Path, p: &str, b: &str) {
        let p = r.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b).unwrap();
    }

    const DOCTYPE: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
"#;

    /// A system.conf whose default rules come before system.d and whose
    /// mandatory rules after; fragments with every attribute, each
    /// context, an <include> of another file, a wildcard own, and XML that
    /// does not parse.
    fn fixture() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        write(
            r,
            "usr/share/dbus-1/system.conf",
            &format!(
                "{DOCTYPE}<busconfig><type>system</type>\
<policy context=\"default\"><deny own=\"*\"/><allow user=\"*\"/></policy>\
<includedir>/etc/dbus-1/system.d</includedir>\
<policy context=\"mandatory\"><deny send_destination=\"org.example.Locked\"/></policy>\
</busconfig>"
            ),
        );
        write(
            r,
            "etc/dbus-1/system.d/a.conf",
            "<busconfig>\
<policy user=\"root\"><allow own=\"org.example.A\"/></policy>\
<policy group=\"adm\"><allow send_destination=\"org.example.A\" send_interface=\"org.example.A.I\" send_member=\"Get\" send_path=\"/org/example/A\" send_type=\"method_call\" send_error=\"org.example.Error\" send_broadcast=\"false\" send_requested_reply=\"true\" send_destination_prefix=\"org.example\" log=\"true\" min_fds=\"0\" max_fds=\"4\"/></policy>\
<policy at_console=\"true\"><allow receive_sender=\"org.example.A\" receive_interface=\"org.example.A.I\" receive_member=\"Changed\" receive_path=\"/a\" receive_type=\"signal\" receive_error=\"org.example.E\" receive_requested_reply=\"false\" eavesdrop=\"true\"/></policy>\
<policy at_console=\"false\"><deny own_prefix=\"org.example\" group=\"wheel\"/></policy>\
<include>extra/b.xml</include>\
<policy context=\"default\"><allow bogus=\"1\"/></policy>\
<policy><allow own=\"x\"/></policy>\
</busconfig>",
        );
        write(
            r,
            "etc/dbus-1/system.d/extra/b.xml",
            "<busconfig><policy context=\"default\"><allow own=\"*\"/></policy></busconfig>",
        );
        write(r, "etc/dbus-1/system.d/broken.conf", "<busconfig><policy>");
        tmp
    }

    fn settings(r: &Path) -> Settings {
        Settings {
            root: r.to_path_buf(),
            proc: PathBuf::from("/proc"),
        }
    }

    #[test]
    fn every_attribute_context_include_and_error() {
        let tmp = fixture();
        let rows = generate(&settings(tmp.path()), &QueryContext::new());
        let sys: Vec<&Row> = rows
            .iter()
            .filter(|r| text(r, c::BUS).as_deref() == Some("system"))
            .collect();
        // Position order, with what identifies each rule.
        let mut by_pos: Vec<(i64, String, String, String)> = sys
            .iter()
            .map(|r| {
                let what = ATTRIBUTES
                    .iter()
                    .find_map(|(_, c)| text(r, c.name).map(|v| format!("{}={v}", c.name)))
                    .unwrap_or_default();
                (
                    int(r, c::POSITION).unwrap(),
                    text(r, c::CONTEXT).unwrap(),
                    text(r, c::VERDICT).unwrap(),
                    what,
                )
            })
            .collect();
        by_pos.sort();
        let got: Vec<String> = by_pos
            .iter()
            .map(|(p, c, v, w)| format!("{p} {c} {v} {w}"))
            .collect();
        assert_eq!(
            got,
            [
                "1 default deny own=*",
                "2 default allow connect_user=*",
                // b.xml is included before a.conf's own later default rule.
                "3 default allow own=*",
                "4 default allow ",
                "5 group allow send_destination=org.example.A",
                "6 user allow own=org.example.A",
                "7 at_console allow receive_sender=org.example.A",
                "8 at_console deny own_prefix=org.example",
                "9 mandatory deny send_destination=org.example.Locked",
                "10 invalid allow own=x",
            ]
        );
        let find = |pos: i64| {
            *sys.iter()
                .find(|r| int(r, c::POSITION) == Some(pos))
                .unwrap()
        };
        let group = find(5);
        assert_eq!(text(group, c::GROUP).unwrap(), "adm");
        for (col, want) in [
            ("send_interface", "org.example.A.I"),
            ("send_member", "Get"),
            ("send_path", "/org/example/A"),
            ("send_type", "method_call"),
            ("send_error", "org.example.Error"),
            ("send_broadcast", "false"),
            ("send_requested_reply", "true"),
            ("send_destination_prefix", "org.example"),
            ("log", "true"),
            ("min_fds", "0"),
            ("max_fds", "4"),
        ] {
            assert_eq!(text(group, col).as_deref(), Some(want), "{col}");
        }
        let console = find(7);
        assert_eq!(int(console, c::AT_CONSOLE), Some(1));
        for (col, want) in [
            ("receive_interface", "org.example.A.I"),
            ("receive_member", "Changed"),
            ("receive_path", "/a"),
            ("receive_type", "signal"),
            ("receive_error", "org.example.E"),
            ("receive_requested_reply", "false"),
            ("eavesdrop", "true"),
        ] {
            assert_eq!(text(console, col).as_deref(), Some(want), "{col}");
        }
        let not_console = find(8);
        assert_eq!(int(not_console, c::AT_CONSOLE), Some(0));
        assert_eq!(text(not_console, c::CONNECT_GROUP).unwrap(), "wheel");
        assert_eq!(text(find(6), c::USER).unwrap(), "root");
        assert_eq!(
            text(find(3), c::PATH).unwrap(),
            "/etc/dbus-1/system.d/extra/b.xml"
        );
        assert!(text(find(4), c::ERROR)
            .unwrap()
            .contains("unknown attribute bogus"));
        assert!(text(find(10), c::ERROR).unwrap().contains("valid context"));
        assert_eq!(text(find(1), c::ERROR), None);
        // The broken file: one row, path and error only.
        let broken: Vec<&Row> = rows
            .iter()
            .filter(|r| text(r, c::PATH).as_deref() == Some("/etc/dbus-1/system.d/broken.conf"))
            .collect();
        assert_eq!(broken.len(), 1);
        assert!(text(broken[0], c::ERROR).unwrap().contains("XML"));
        assert_eq!(text(broken[0], c::BUS), None);
        // path = narrows; package columns only when used.
        let mut ctx = QueryContext::new();
        ctx.set_cols_used(["path", "verdict"]);
        ctx.add_constraint(
            "path",
            crate::context::Op::Eq,
            "/etc/dbus-1/system.d/extra/b.xml",
        );
        let one = generate(&settings(tmp.path()), &ctx);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].get(c::PACKAGE), None);
    }

    #[test]
    fn package_and_provenance_of_the_file() {
        let tmp = fixture();
        write(
            tmp.path(),
            "var/lib/dpkg/info/dbus.list",
            "/usr/share/dbus-1/system.conf\n",
        );
        let mut ctx = QueryContext::new();
        ctx.set_cols_used(["path", "package", "provenance"]);
        let rows = generate(&settings(tmp.path()), &ctx);
        for r in &rows {
            let path = text(r, c::PATH).unwrap();
            let (pkg, prov) = if path == "/usr/share/dbus-1/system.conf" {
                ("dbus", "dpkg")
            } else {
                ("", "none")
            };
            assert_eq!(text(r, c::PACKAGE).as_deref(), Some(pkg), "{path}");
            assert_eq!(text(r, c::PROVENANCE).as_deref(), Some(prov), "{path}");
        }
    }

    /// A packaged policy path swapped for a link: the rules read are the
    /// target's, and so are their package and provenance.
    #[test]
    fn a_link_carries_its_targets_provenance() {
        let tmp = fixture();
        let r = tmp.path();
        write(
            r,
            "var/lib/dpkg/info/dbus.list",
            "/usr/share/dbus-1/system.conf\n/etc/dbus-1/system.d/a.conf\n/usr/share/dbus-1/shipped.conf\n",
        );
        write(
            r,
            "tmp/evil.conf",
            "<busconfig><policy context=\"default\"><allow own=\"*\"/></policy></busconfig>",
        );
        std::fs::remove_file(r.join("etc/dbus-1/system.d/a.conf")).unwrap();
        std::os::unix::fs::symlink("/tmp/evil.conf", r.join("etc/dbus-1/system.d/a.conf")).unwrap();
        let mut ctx = QueryContext::new();
        ctx.set_cols_used(["path", "package", "provenance", "own"]);
        let rows = generate(&settings(r), &ctx);
        let linked: Vec<&Row> = rows
            .iter()
            .filter(|r| text(r, "path").as_deref() == Some("/etc/dbus-1/system.d/a.conf"))
            .collect();
        assert_eq!(linked.len(), 1, "{rows:#?}");
        assert_eq!(
            text(linked[0], "own").as_deref(),
            Some("*"),
            "the target's rule"
        );
        assert_eq!(text(linked[0], "package").as_deref(), Some(""));
        assert_eq!(text(linked[0], "provenance").as_deref(), Some("none"));
    }
}
