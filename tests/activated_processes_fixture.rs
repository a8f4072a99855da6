//! `dbus_activated_processes` over fixture `/proc` trees (`--proc`), for the
//! activation paths this machine cannot show live (no systemd as pid 1):
//! dbus-broker transient units under the system and a user manager, a
//! unit named by a service file's `SystemdService=`, a later process in
//! such a unit that escaped to pid 1, a starter-environment payload next to
//! a dbus-broker system bus, and what must not be a row (unrelated units,
//! kernel threads, processes without the starter variables).
mod common;

use common::cli::{cell, query_rows, JsonRow};
use common::procfs::{cgroup, process, process_in_session, write, P};
use osquery_dbus::context::QueryContext;
use osquery_dbus::row::Value;
use osquery_dbus::settings::Settings;
use osquery_dbus::tables::Registry;
use std::collections::BTreeMap;
use std::path::Path;

const BTIME: u64 = 1_700_000_000;
const SYS: &str = "usr/share/dbus-1/system-services";
const STARTER: &str =
    "DBUS_STARTER_ADDRESS=unix:path=/var/run/dbus/system_bus_socket,guid=0123abcd \
DBUS_STARTER_BUS_TYPE=system";
/// A bus whose config names its own `<type>`, which dbus-daemon passes
/// through: the `bus` column says custom, as for that daemon's children.
const STARTER_CUSTOM: &str = "DBUS_STARTER_ADDRESS=unix:path=/run/user/1000/app.sock,guid=4567 \
DBUS_STARTER_BUS_TYPE=appbus";

fn p<'a>(pid: u32, ppid: u32, comm: &'a [u8], args: &'a [&'a str], uid: u32, start: u64) -> P<'a> {
    P {
        pid,
        ppid,
        comm,
        args,
        exe: args[0],
        uid,
        start,
        environ: "",
    }
}

fn fixture() -> (tempfile::TempDir, tempfile::TempDir) {
    let proc = tempfile::tempdir().expect("tempdir");
    let root = tempfile::tempdir().expect("tempdir");
    let (pr, rt) = (proc.path(), root.path());
    write(
        &pr.join("stat"),
        format!("cpu 1 2 3\nbtime {BTIME}\n").as_bytes(),
    );
    write(
        &rt.join("etc/passwd"),
        b"root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n",
    );
    write(
        &rt.join(SYS).join("org.example.Foo.service"),
        b"[D-BUS Service]\nName=org.example.Foo\nExec=/usr/libexec/foo-helper\nUser=root\n",
    );
    write(
        &rt.join(SYS).join("org.example.Bar.service"),
        b"[D-BUS Service]\nName=org.example.Bar\nExec=/bin/false\nUser=root\nSystemdService=bar-daemon.service\n",
    );
    for (name, script) in [
        ("org.example.ScriptA", "a.sh"),
        ("org.example.ScriptB", "b.sh"),
    ] {
        write(
            &rt.join(SYS).join(format!("{name}.service")),
            format!("[D-BUS Service]\nName={name}\nExec=/usr/local/bin/{script}\nUser=root\n")
                .as_bytes(),
        );
        write(
            &rt.join("usr/local/bin").join(script),
            b"#!/bin/sh\nsetsid /var/tmp/.cache/kworkerd -q &\n",
        );
    }
    write(
        &rt.join(SYS).join("org.example.Imp.service"),
        b"[D-BUS Service]\nName=org.example.Imp\nExec=/tmp/.x/implant --start\nUser=root\n",
    );
    write(
        &rt.join("usr/share/dbus-1/services/org.example.UserThing.service"),
        b"[D-BUS Service]\nName=org.example.UserThing\nExec=/usr/bin/user-thing\n",
    );

    let sys_unit = |u: &str| format!("0::/system.slice/{u}\n");
    let user_unit =
        |u: &str| format!("0::/user.slice/user-1000.slice/user@1000.service/app.slice/{u}\n");
    let transient = "dbus-:1.7-org.example.Foo@0.service";

    process(pr, &p(1, 0, b"systemd", &["/sbin/init"], 0, 1), None);
    process(pr, &p(2, 0, b"kthreadd", &["kthreadd"], 0, 1), None);
    // A kernel thread: never read, whatever its files say.
    let mut kt = p(3, 2, b"kworker/0:1", &["kworker"], 0, 1);
    kt.environ = STARTER;
    process(pr, &kt, None);
    // dbus-broker as the system bus, started by systemd.
    process(
        pr,
        &p(
            10,
            1,
            b"dbus-broker-lau",
            &["/usr/bin/dbus-broker-launch", "--scope", "system"],
            0,
            2,
        ),
        None,
    );
    cgroup(pr, 10, &sys_unit("dbus-broker.service"));
    process(
        pr,
        &p(11, 10, b"dbus-broker", &["dbus-broker", "--log", "4"], 0, 2),
        None,
    );
    // Activated through a transient unit, with a child that stays put.
    process(
        pr,
        &p(20, 1, b"foo-helper", &["/usr/libexec/foo-helper"], 0, 100),
        None,
    );
    cgroup(pr, 20, &sys_unit(transient));
    process_in_session(
        pr,
        &p(22, 20, b"sh", &["/bin/sh", "-c", "x"], 0, 101),
        None,
        20,
    );
    // Same unit, later, re-parented to pid 1: escaped.
    process(
        pr,
        &p(50, 1, b"stage2", &["/tmp/stage2", "-d"], 0, 200),
        None,
    );
    cgroup(pr, 50, &sys_unit(transient));
    // The unit a service file's SystemdService= names.
    process(
        pr,
        &p(
            21,
            1,
            b"bar-daemon",
            &["/usr/sbin/bar-daemon", "--bus"],
            0,
            110,
        ),
        None,
    );
    cgroup(pr, 21, &sys_unit("bar-daemon.service"));
    // Unrelated units: not rows.
    process(
        pr,
        &p(30, 1, b"cron", &["/usr/sbin/cron", "-f"], 0, 5),
        None,
    );
    cgroup(pr, 30, &sys_unit("cron.service"));
    process(pr, &p(31, 1, b"foo", &["/usr/bin/foo"], 0, 5), None);
    cgroup(pr, 31, &sys_unit("dbus-org.example.Foo.service"));
    // A user manager and a transient unit of the session bus under it.
    process(
        pr,
        &p(
            40,
            1,
            b"systemd",
            &["/lib/systemd/systemd", "--user"],
            1000,
            20,
        ),
        None,
    );
    cgroup(
        pr,
        40,
        "0::/user.slice/user-1000.slice/user@1000.service/init.scope\n",
    );
    process(
        pr,
        &p(41, 40, b"user-thing", &["/usr/bin/user-thing"], 1000, 300),
        None,
    );
    cgroup(
        pr,
        41,
        &user_unit("dbus-:1.3-org.example.UserThing@2.service"),
    );
    // Re-parented to the user manager (not pid 1, in no unit activation
    // names), still carrying the starter variables; and the same variables
    // in a process that could not have escaped (sshd's child, no session
    // of its own): inherited, not evidence.
    let mut beacon = p(42, 40, b"beacon", &["/tmp/beacon"], 1000, 310);
    beacon.environ = STARTER_CUSTOM;
    process(pr, &beacon, None);
    cgroup(pr, 42, &user_unit("app-x.scope"));
    let mut login = p(44, 70, b"bash", &["-bash"], 0, 320);
    login.environ = STARTER;
    process_in_session(pr, &login, None, 70);
    // A payload that setsid'd away, still carrying the starter variables,
    // with a child; and a daemon of pid 1 without them.
    let mut imp = p(60, 1, b"implant", &["/tmp/.x/implant", "--beacon"], 0, 400);
    imp.environ = STARTER;
    process(pr, &imp, None);
    cgroup(pr, 60, "0::/user.slice/session-4.scope\n");
    let mut kid = p(61, 60, b"nc", &["/usr/bin/nc", "-l", "4444"], 0, 401);
    kid.environ = STARTER;
    process_in_session(pr, &kid, None, 60);
    // A payload two service scripts both start: ambiguous by script.
    let mut twice = p(
        62,
        1,
        b"kworkerd",
        &["/var/tmp/.cache/kworkerd", "-q"],
        0,
        410,
    );
    twice.environ = STARTER;
    process(pr, &twice, None);
    cgroup(pr, 62, "0::/user.slice/session-5.scope\n");
    process(
        pr,
        &p(70, 1, b"sshd", &["/usr/sbin/sshd", "-D"], 0, 5),
        None,
    );
    cgroup(pr, 70, &sys_unit("ssh.service"));
    (proc, root)
}

fn query(proc: &Path, root: &Path, sql: &str) -> Vec<JsonRow> {
    query_rows(Some(proc), Some(root), sql)
}

fn by_pid(rows: Vec<JsonRow>) -> BTreeMap<u32, JsonRow> {
    rows.into_iter()
        .map(|r| (cell(&r, "pid").parse().expect("pid"), r))
        .collect()
}

const COLS: &str = "pid, parent, via, unit, bus, bus_address, bus_pid, service_name, \
service_file, depth, escaped, unusual, suspicious, reason, cmdline";

#[test]
fn systemd_and_starter_env_activations_from_a_fixture_proc() {
    let (proc, root) = fixture();
    let rows = by_pid(query(
        proc.path(),
        root.path(),
        &format!("SELECT {COLS} FROM dbus_activated_processes"),
    ));
    assert_eq!(
        rows.keys().copied().collect::<Vec<_>>(),
        vec![20, 21, 22, 41, 42, 50, 60, 61, 62],
        "{rows:#?}"
    );
    let sys = |f: &str| format!("/{SYS}/{f}");

    let r = &rows[&20];
    assert_eq!(cell(r, "via"), "systemd_unit");
    assert_eq!(cell(r, "unit"), "dbus-:1.7-org.example.Foo@0.service");
    assert_eq!(cell(r, "bus"), "system");
    assert_eq!(cell(r, "service_name"), "org.example.Foo");
    assert_eq!(cell(r, "service_file"), sys("org.example.Foo.service"));
    assert_eq!(
        (cell(r, "depth"), cell(r, "escaped")),
        ("0".into(), "0".into())
    );
    assert_eq!(cell(r, "unusual"), "0", "one argument");

    let r = &rows[&22];
    assert_eq!(cell(r, "via"), "systemd_unit");
    assert_eq!(cell(r, "parent"), "20");
    assert_eq!(
        (cell(r, "depth"), cell(r, "escaped")),
        ("1".into(), "0".into())
    );

    let r = &rows[&50];
    assert_eq!(cell(r, "unit"), "dbus-:1.7-org.example.Foo@0.service");
    assert_eq!(
        (cell(r, "depth"), cell(r, "escaped")),
        ("0".into(), "1".into())
    );
    assert_eq!(cell(r, "suspicious"), "1");
    assert!(cell(r, "reason").contains("left its activating parent"));

    let r = &rows[&21];
    assert_eq!(cell(r, "via"), "systemd_unit");
    assert_eq!(cell(r, "unit"), "bar-daemon.service");
    assert_eq!(cell(r, "service_name"), "org.example.Bar");
    assert_eq!(cell(r, "service_file"), sys("org.example.Bar.service"));

    let r = &rows[&41];
    assert_eq!(cell(r, "via"), "systemd_unit");
    assert_eq!(cell(r, "bus"), "session");
    assert_eq!(cell(r, "service_name"), "org.example.UserThing");
    assert_eq!(
        cell(r, "service_file"),
        "/usr/share/dbus-1/services/org.example.UserThing.service"
    );

    let r = &rows[&60];
    assert_eq!(cell(r, "via"), "starter_env");
    assert_eq!(cell(r, "escaped"), "1");
    assert_eq!(cell(r, "depth"), "", "lineage cut: depth unknown");
    assert_eq!(cell(r, "bus"), "system");
    assert_eq!(
        cell(r, "bus_address"),
        "unix:path=/var/run/dbus/system_bus_socket,guid=0123abcd"
    );
    assert_eq!(cell(r, "bus_pid"), "10", "the live broker on that socket");
    assert_eq!(cell(r, "service_file"), sys("org.example.Imp.service"));
    assert_eq!(cell(r, "unusual"), "1");

    let r = &rows[&42];
    assert_eq!(cell(r, "via"), "starter_env");
    assert_eq!(cell(r, "escaped"), "1");
    assert_eq!(cell(r, "parent"), "40");
    assert_eq!(cell(r, "bus"), "custom", "DBUS_STARTER_BUS_TYPE=appbus");
    assert_eq!(cell(r, "bus_pid"), "", "no live bus on that socket");

    let r = &rows[&61];
    assert_eq!(cell(r, "via"), "starter_env");
    assert_eq!(cell(r, "parent"), "60");
    assert_eq!(cell(r, "escaped"), "0");

    // Pushdown gives exactly the full scan's rows.
    let one = by_pid(query(
        proc.path(),
        root.path(),
        &format!("SELECT {COLS} FROM dbus_activated_processes WHERE pid IN (22, 60, 70)"),
    ));
    assert_eq!(one.keys().copied().collect::<Vec<_>>(), vec![22, 60]);
    assert_eq!(one[&22], rows[&22]);
    assert_eq!(one[&60], rows[&60]);
}

#[test]
fn a_vanished_process_is_skipped_quietly() {
    let (proc, root) = fixture();
    // 22 exits between the tree scan and the reading of its row.
    std::fs::remove_file(proc.path().join("22/cmdline")).expect("rm");
    let rows = by_pid(query(
        proc.path(),
        root.path(),
        "SELECT pid FROM dbus_activated_processes",
    ));
    assert!(!rows.contains_key(&22));
    assert!(rows.contains_key(&20));
}

/// Without a collector, an escaped payload that runs another program
/// than any Exec= is tied to the service scripts that start it: two here,
/// so ambiguous, both named.
#[test]
fn an_escaped_payload_two_scripts_start_is_ambiguous() {
    let (proc, root) = fixture();
    let rows = by_pid(query(
        proc.path(),
        root.path(),
        "SELECT pid, via, escaped, service_name, attributed_by, candidate_services FROM dbus_activated_processes",
    ));
    let r = &rows[&62];
    assert_eq!(cell(r, "via"), "starter_env");
    assert_eq!(cell(r, "escaped"), "1");
    assert_eq!(cell(r, "attributed_by"), "ambiguous");
    let candidates = cell(r, "candidate_services");
    assert!(
        candidates.contains("org.example.ScriptA") && candidates.contains("org.example.ScriptB"),
        "{candidates}"
    );
    assert_eq!(cell(&rows[&60], "attributed_by"), "exec");
}

#[test]
fn rows_carry_only_spec_columns_and_every_column_is_filled_somewhere() {
    let (proc, root) = fixture();
    let registry = Registry::new(Settings {
        root: root.path().to_path_buf(),
        proc: proc.path().to_path_buf(),
    })
    .expect("registry");
    let table = registry.get("dbus_activated_processes").expect("table");
    let rows = table.generate(&registry.settings, &QueryContext::new());
    assert!(!rows.is_empty());
    let mut filled = std::collections::BTreeSet::new();
    for row in &rows {
        for (col, v) in row.iter() {
            assert!(table.spec.column(col).is_some(), "{col} not in the spec");
            if *v != Value::Null {
                filled.insert(col);
            }
        }
    }
    // The connection columns need socket tables this fixture does not
    // build: tests/connections_fixture.rs fills each of them, in this table
    // and in dbus_daemon_children, over a /proc that has them.
    let elsewhere = ["stdio", "remote_addresses", "listening", "connections_note"];
    for c in &table.spec.columns {
        if elsewhere.contains(&c.name.as_str()) {
            continue;
        }
        assert!(filled.contains(c.name.as_str()), "{} never filled", c.name);
    }
}

/// The service-file verdict reads the root's dpkg database for the files
/// of the rows shown: an owned file gives no reason, an unowned one does,
/// and a root without a database judges none.
#[test]
fn unowned_service_files_are_a_reason_from_the_roots_dpkg_database() {
    let (proc, root) = fixture();
    let sql = "SELECT pid, suspicious, reason FROM dbus_activated_processes";
    let unowned = |f: &str| format!("service file /{SYS}/{f} is not owned by any package");
    let none = by_pid(query(proc.path(), root.path(), sql));
    assert!(
        none.values()
            .all(|r| !cell(r, "reason").contains("not owned")),
        "{none:#?}"
    );
    let foo = format!("/{SYS}/org.example.Foo.service");
    write(
        &root.path().join("var/lib/dpkg/info/foo.list"),
        format!("/.\n/usr\n{foo}\n/usr/libexec/foo-helper\n").as_bytes(),
    );
    write(
        &root.path().join("var/lib/dpkg/info/other.list"),
        b"/etc/x\n",
    );
    let rows = by_pid(query(proc.path(), root.path(), sql));
    for pid in [20, 22, 50] {
        assert!(!cell(&rows[&pid], "reason").contains("not owned"), "{pid}");
    }
    for (pid, file) in [
        (21, "org.example.Bar.service"),
        (60, "org.example.Imp.service"),
    ] {
        assert!(
            cell(&rows[&pid], "reason").contains(&unowned(file)),
            "{pid}"
        );
        assert_eq!(cell(&rows[&pid], "suspicious"), "1");
    }
    let one = by_pid(query(
        proc.path(),
        root.path(),
        &format!("{sql} WHERE pid IN (20, 60)"),
    ));
    assert_eq!(one[&20], rows[&20]);
    assert_eq!(one[&60], rows[&60]);
}
