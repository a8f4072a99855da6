//! Our readers against the real dbus-daemon: private buses started with
//! the test's own config and service files (never the host's buses), where
//! the daemon's own behaviour shows which `Exec=` a tricky service file
//! runs and which names an entity-laden policy denies, and the same bytes
//! read by `sources::service_file` and `sources::bus_config` must agree.
mod common;

use common::bus::{private_config, write_exec, Bus};
use osquery_dbus::sources::{bus_config, service_file};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Waits (generously: the machine may be loaded) for `path` to hold text.
fn wait_for(path: &Path) -> String {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Ok(t) = std::fs::read_to_string(path) {
            if !t.is_empty() {
                return t;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} was never written", path.display());
}

/// Plants `body` as the service file of `name` and two programs that
/// write which of them ran; activates `name` and returns what ran.
fn which_runs(
    bus: &mut Bus,
    name: &str,
    body: impl Fn(&Path, &Path) -> String,
) -> (PathBuf, String) {
    let marker = bus.dir.path().join(format!("{name}.ran"));
    let a = bus.dir.path().join(format!("{name}.a"));
    let b = bus.dir.path().join(format!("{name}.b"));
    for (p, tag) in [(&a, "a"), (&b, "b")] {
        write_exec(
            p,
            &format!("#!/bin/sh\necho {tag} > '{}'\n", marker.display()),
        );
    }
    let file = bus.service_dir.join(format!("{name}.service"));
    std::fs::write(&file, body(&a, &b)).expect("service file");
    bus.activate(name);
    let ran = wait_for(&marker).trim().to_string();
    let program = if ran == "a" { a } else { b };
    (file, program.display().to_string())
}

/// A lone carriage return ends a line for dbus-daemon: the `Exec=` after
/// a comment on the same `\n` line is the one it runs (and the first of
/// two), and our reading names that program; dbus-broker's reading, which
/// sees a comment, names the other.
#[test]
fn dbus_daemon_runs_the_exec_our_reader_names() {
    let mut bus = Bus::custom();
    let (file, ran) = which_runs(&mut bus, "org.parity.Cr", |a, b| {
        format!(
            "[D-BUS Service]\nName=org.parity.Cr\n# see the docs\rExec={}\nExec={}\n",
            a.display(),
            b.display()
        )
    });
    let bytes = std::fs::read(&file).expect("read");
    let ours = service_file::parse(&bytes).expect("parse");
    assert!(ours.problems.is_empty(), "{:?}", ours.problems);
    assert_eq!(ours.exec.as_deref(), Some(ran.as_str()));
    assert!(ran.ends_with(".a"), "{ran}");
    let broker = service_file::parse_broker(&bytes).expect("broker");
    assert!(broker.exec.as_deref().is_some_and(|e| e.ends_with(".b")));

    // Duplicate keys: dbus-daemon runs the first, as we read it.
    let (file, ran) = which_runs(&mut bus, "org.parity.Dup", |a, b| {
        format!(
            "[D-BUS Service]\nName=org.parity.Dup\nExec={}\nExec={}\n",
            a.display(),
            b.display()
        )
    });
    let ours = service_file::parse(&std::fs::read(&file).expect("read")).expect("parse");
    assert_eq!(ours.exec.as_deref(), Some(ran.as_str()));
    assert!(ran.ends_with(".a"), "{ran}");

    // `\s` is a space to dbus-daemon: the program is `a`, with an argument.
    let (file, ran) = which_runs(&mut bus, "org.parity.Esc", |a, _| {
        format!(
            "[D-BUS Service]\nName=org.parity.Esc\nExec={}\\s--flag\n",
            a.display()
        )
    });
    let ours = service_file::parse(&std::fs::read(&file).expect("read")).expect("parse");
    let argv = service_file::split_exec(ours.exec.as_deref().unwrap_or_default()).expect("argv");
    assert_eq!(argv, [ran.as_str(), "--flag"]);
}

/// A bus daemon on a config of our own, killed on drop.
struct Daemon {
    child: Child,
    address: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(conf: &Path) -> Daemon {
    let mut child = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", conf.display()))
        .args(["--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dbus-daemon");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("address");
    let address = line.trim().to_string();
    assert!(
        address.starts_with("unix:"),
        "bus did not start: {address:?}"
    );
    Daemon { child, address }
}

/// Whether the bus lets a client own `name` (`RequestName` succeeds).
fn may_own(d: &Daemon, name: &str) -> bool {
    let out = Command::new("gdbus")
        .args([
            "call",
            "--address",
            &d.address,
            "--dest",
            "org.freedesktop.DBus",
        ])
        .args(["--object-path", "/org/freedesktop/DBus"])
        .args(["--method", "org.freedesktop.DBus.RequestName", name, "0"])
        .output()
        .expect("gdbus");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || err.contains("AccessDenied"),
        "{name}: {err}"
    );
    out.status.success()
}

/// A policy written with entities is applied by dbus-daemon as we read
/// it: an internal entity expanded, an unknown name under the standard
/// DOCTYPE read as nothing. (Before, such a file was an XML error to us
/// and yielded no rules, while the bus enforced them.)
#[test]
fn dbus_daemon_applies_an_entity_policy_as_we_read_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().display().to_string();
    std::fs::create_dir_all(tmp.path().join("services")).expect("mkdir");
    let conf = private_config(
        &d,
        &format!("{d}/services"),
        "<policy context=\"mandatory\"><deny own=\"&denied;\"/>\
         <deny own=\"org.parity.&unknown;Skipped\"/></policy>",
    )
    .replace(
        "busconfig.dtd\">",
        "busconfig.dtd\" [<!ENTITY denied \"org.parity.Denied\">]>",
    );
    let path = tmp.path().join("bus.conf");
    std::fs::write(&path, &conf).expect("bus.conf");
    let ours = bus_config::parse(conf.as_bytes(), &path).expect("parse");
    let denied: Vec<String> = ours
        .rules
        .iter()
        .filter(|r| !r.allow)
        .flat_map(|r| r.attributes.iter().map(|(_, v)| v.clone()))
        .collect();
    assert_eq!(denied, ["org.parity.Denied", "org.parity.Skipped"]);
    assert_eq!(ours.skipped_entities, ["unknown"]);

    let daemon = start(&path);
    assert!(!may_own(&daemon, "org.parity.Denied"));
    assert!(!may_own(&daemon, "org.parity.Skipped"));
    assert!(may_own(&daemon, "org.parity.Allowed"));
}

/// `<includedir>` fragments merge in directory order for dbus-daemon, not
/// sorted by name: with one fragment denying and another allowing the same
/// name, the bus obeys the one `readdir` returns last, and so does the rule
/// order `bus_config::discover` reports (whatever order this file system
/// lists them in).
#[test]
fn includedir_fragments_merge_in_directory_order() {
    use osquery_dbus::sources::fs_safe::Root;
    for (a, b) in [("deny", "allow"), ("allow", "deny")] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path().display().to_string();
        let frags = tmp.path().join("d");
        std::fs::create_dir_all(&frags).expect("mkdir");
        for (file, verdict) in [("a.conf", a), ("b.conf", b)] {
            std::fs::write(
                frags.join(file),
                format!("<busconfig><policy context=\"default\"><{verdict} own=\"org.parity.Order\"/></policy></busconfig>"),
            )
            .expect("fragment");
        }
        let conf = private_config(&d, &format!("{d}/services"), "")
            .replace("</busconfig>", "<includedir>d</includedir></busconfig>");
        std::fs::create_dir_all(tmp.path().join("services")).expect("mkdir");
        std::fs::write(tmp.path().join("bus.conf"), &conf).expect("bus.conf");

        let listed: Vec<String> = std::fs::read_dir(&frags)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        let last = listed.last().expect("two fragments");
        let want_allowed = (if last == "a.conf" { a } else { b }) == "allow";

        let root = Root::open(tmp.path()).expect("root");
        let found =
            bus_config::discover(&root, &[(bus_config::Start::File("/bus.conf".into()), ())]);
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        let ours = found
            .rules
            .iter()
            .rev()
            .find(|r| {
                r.rule
                    .attributes
                    .iter()
                    .any(|(_, v)| v == "org.parity.Order")
            })
            .expect("a rule for the name");
        assert_eq!(ours.rule.allow, want_allowed, "{listed:?}");
        assert!(
            ours.from.ends_with(last.as_str()),
            "{:?} {listed:?}",
            ours.from
        );

        let daemon = start(&tmp.path().join("bus.conf"));
        assert_eq!(
            may_own(&daemon, "org.parity.Order"),
            want_allowed,
            "{listed:?}"
        );
    }
}
