//! `dbus_daemon_children` over fixture `/proc` trees built in code (for
//! `--proc`): dbus-broker and launch-helper parentage, a babysitter, a deleted
//! executable, odd `comm` values, a pid that vanished between listing and
//! reading, and kernels without `task/*/children` files.
mod common;

use common::procfs::{process, write, P};

use osquery_dbus::context::{Op, QueryContext};
use osquery_dbus::row::{Row, Value};
use osquery_dbus::settings::Settings;
use osquery_dbus::tables::Registry;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_osquery-dbus");
const BTIME: u64 = 1_700_000_000;

const SESSION_BUS: &[&str] = &["dbus-daemon", "--session", "--address=unix:path=/run/u/bus"];

/// The fixture: a `--proc` tree plus a `--root` holding the service files.
fn fixture(with_children_files: bool) -> (tempfile::TempDir, tempfile::TempDir) {
    let proc = tempfile::tempdir().expect("tempdir");
    let root = tempfile::tempdir().expect("tempdir");
    write(
        &proc.path().join("stat"),
        format!("cpu 1 2 3\nbtime {BTIME}\nprocesses 9\n").as_bytes(),
    );
    write(
        &root
            .path()
            .join("usr/share/dbus-1/system-services/org.example.Sys.service"),
        b"[D-BUS Service]\nName=org.example.Sys\nExec=/opt/sys-svc --x --y\nUser=root\n",
    );
    write(
        &root
            .path()
            .join("xdg/dbus-1/services/org.example.U.service"),
        b"[D-BUS Service]\nName=org.example.U\nExec=/home/u/x a b\n",
    );
    write(
        &root.path().join("etc/passwd"),
        b"root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n",
    );
    let procs: Vec<(P, &[u32])> = vec![
        (
            P {
                pid: 1,
                ppid: 0,
                comm: b"init",
                args: &["/sbin/init"],
                exe: "/sbin/init",
                uid: 0,
                start: 1,
                environ: "",
            },
            &[100, 200, 400],
        ),
        // dbus-broker under its launcher; broker children come direct.
        (
            P {
                pid: 100,
                ppid: 1,
                comm: b"dbus-broker-lau",
                args: &["/usr/bin/dbus-broker-launch", "--scope", "system"],
                exe: "/usr/bin/dbus-broker-launch",
                uid: 0,
                start: 2,
                environ: "",
            },
            &[101],
        ),
        (
            P {
                pid: 101,
                ppid: 100,
                comm: b"dbus-broker",
                args: &["dbus-broker", "--log", "4", "--controller", "9"],
                exe: "/usr/bin/dbus-broker",
                uid: 0,
                start: 2,
                environ: "",
            },
            &[102],
        ),
        (
            P {
                pid: 102,
                ppid: 101,
                comm: b"evil",
                args: &["/tmp/evil", "a", "b"],
                exe: "/tmp/evil",
                uid: 0,
                start: 50,
                environ: "",
            },
            &[],
        ),
        // System bus → launch helper → service with a deleted executable.
        (
            P {
                pid: 200,
                ppid: 1,
                comm: b"dbus-daemon",
                args: &["/usr/bin/dbus-daemon", "--system", "--nofork"],
                exe: "/usr/bin/dbus-daemon",
                uid: 0,
                start: 3,
                environ: "",
            },
            &[201],
        ),
        (
            P {
                pid: 201,
                ppid: 200,
                comm: b"dbus-daemon-lau",
                args: &[
                    "/usr/lib/dbus-1.0/dbus-daemon-launch-helper",
                    "org.example.Sys",
                ],
                exe: "/usr/lib/dbus-1.0/dbus-daemon-launch-helper",
                uid: 0,
                start: 60,
                environ: "",
            },
            &[202],
        ),
        (
            P {
                pid: 202,
                ppid: 201,
                comm: b"sys-svc",
                args: &["/opt/sys-svc", "--x", "--y"],
                exe: "/opt/sys-svc (deleted)",
                uid: 0,
                start: 61,
                environ: "",
            },
            &[],
        ),
        // Session bus → babysitter → service with an odd comm; 399 vanished.
        (
            P {
                pid: 300,
                ppid: 1,
                comm: b"dbus-daemon",
                args: SESSION_BUS,
                exe: "/usr/bin/dbus-daemon",
                uid: 1000,
                start: 4,
                environ: "HOME=/home/u XDG_DATA_HOME=/xdg",
            },
            &[301, 303, 500, 600],
        ),
        (
            P {
                pid: 301,
                ppid: 300,
                comm: b"dbus-daemon",
                args: SESSION_BUS,
                exe: "/usr/bin/dbus-daemon",
                uid: 1000,
                start: 70,
                environ: "",
            },
            &[302, 399],
        ),
        (
            P {
                pid: 302,
                ppid: 301,
                comm: b"a) b (c",
                args: &["/home/u/x", "a", "b"],
                exe: "/home/u/x",
                uid: 1000,
                start: 71,
                environ: "",
            },
            &[],
        ),
        (
            P {
                pid: 303,
                ppid: 300,
                comm: b"new\nline",
                args: &["/tmp/nl"],
                exe: "/tmp/nl",
                uid: 1000,
                start: 72,
                environ: "",
            },
            &[],
        ),
        // Named like the launch helper but another program: not a hop, a row.
        (
            P {
                pid: 500,
                ppid: 300,
                comm: b"dbus-daemon-lau",
                args: &["/tmp/fake", "x", "y"],
                exe: "/tmp/fake",
                uid: 1000,
                start: 73,
                environ: "",
            },
            &[501],
        ),
        (
            P {
                pid: 501,
                ppid: 500,
                comm: b"grandchild",
                args: &["/tmp/gc", "1", "2"],
                exe: "/tmp/gc",
                uid: 1000,
                start: 74,
                environ: "",
            },
            &[],
        ),
        // A nested bus (different cmdline): a row itself, not a babysitter.
        (
            P {
                pid: 600,
                ppid: 300,
                comm: b"dbus-daemon",
                args: &["dbus-daemon", "--config-file=/etc/nested.conf"],
                exe: "/usr/bin/dbus-daemon",
                uid: 1000,
                start: 75,
                environ: "",
            },
            &[],
        ),
        // Unrelated processes.
        (
            P {
                pid: 400,
                ppid: 1,
                comm: b"bash",
                args: &["bash"],
                exe: "/usr/bin/bash",
                uid: 0,
                start: 5,
                environ: "",
            },
            &[401],
        ),
        (
            P {
                pid: 401,
                ppid: 400,
                comm: b"sleep",
                args: &["sleep", "9", "9"],
                exe: "/usr/bin/sleep",
                uid: 0,
                start: 6,
                environ: "",
            },
            &[],
        ),
    ];
    for (p, kids) in &procs {
        process(proc.path(), p, with_children_files.then_some(*kids));
    }
    (proc, root)
}

fn registry(proc: &Path, root: &Path) -> Registry {
    Registry::new(Settings {
        root: root.to_path_buf(),
        proc: proc.to_path_buf(),
    })
    .expect("registry")
}

fn by_pid(rows: Vec<Row>) -> BTreeMap<i64, Row> {
    rows.into_iter()
        .map(|r| match r.get("pid") {
            Some(Value::Integer(p)) => (*p, r),
            other => panic!("pid is {other:?}"),
        })
        .collect()
}

fn int(r: &Row, c: &str) -> i64 {
    match r.get(c) {
        Some(Value::Integer(i)) => *i,
        other => panic!("{c} is {other:?}"),
    }
}

fn text<'a>(r: &'a Row, c: &str) -> &'a str {
    match r.get(c) {
        Some(Value::Text(t)) => t,
        other => panic!("{c} is {other:?}"),
    }
}

fn check_full_scan(rows: &BTreeMap<i64, Row>) {
    assert_eq!(
        rows.keys().copied().collect::<Vec<_>>(),
        vec![102, 202, 302, 303, 500, 600],
        "{rows:#?}"
    );

    let r = &rows[&102];
    assert_eq!(int(r, "bus_pid"), 101);
    assert_eq!(text(r, "bus_daemon"), "dbus-broker");
    assert_eq!(text(r, "bus"), "system");
    assert_eq!(text(r, "via"), "direct");
    assert_eq!(int(r, "unusual"), 1, "{}", text(r, "reason"));

    let r = &rows[&202];
    assert_eq!(int(r, "parent"), 201);
    assert_eq!(int(r, "bus_pid"), 200);
    assert_eq!(text(r, "via"), "launch_helper");
    assert_eq!(text(r, "bus"), "system");
    assert_eq!(text(r, "path"), "/opt/sys-svc");
    assert_eq!(int(r, "on_disk"), 0);
    assert_eq!(int(r, "unusual"), 1);
    assert_eq!(
        text(r, "service_file"),
        "/usr/share/dbus-1/system-services/org.example.Sys.service"
    );
    assert_eq!(int(r, "start_time"), (BTIME + 61) as i64);

    let r = &rows[&302];
    assert_eq!(text(r, "name"), "a) b (c");
    assert_eq!(int(r, "parent"), 301);
    assert_eq!(int(r, "bus_pid"), 300);
    assert_eq!(text(r, "via"), "babysitter");
    assert_eq!(text(r, "bus"), "session");
    assert_eq!(int(r, "uid"), 1000);
    assert_eq!(int(r, "args_count"), 3);
    assert_eq!(int(r, "on_disk"), 1);
    assert_eq!(int(r, "unusual"), 0);
    assert!(text(r, "reason").contains("--session"));
    assert_eq!(
        text(r, "service_file"),
        "/xdg/dbus-1/services/org.example.U.service"
    );
    assert_eq!(text(r, "cwd"), "/");
    assert_eq!(text(r, "state"), "S");

    let r = &rows[&303];
    assert_eq!(text(r, "name"), "new\nline");
    assert_eq!(text(r, "via"), "direct");
    assert_eq!(r.get("service_file"), Some(&Value::Null));

    // The impostor launch helper (another executable) is a row, so its own
    // child 501 is a grandchild of the bus, not a bus child.
    assert_eq!(text(&rows[&500], "via"), "direct");
    assert_eq!(int(&rows[&500], "unusual"), 0, "session bus");
    assert_eq!(text(&rows[&600], "name"), "dbus-daemon");
}

fn all_rows(proc: &Path, root: &Path) -> BTreeMap<i64, Row> {
    let reg = registry(proc, root);
    by_pid(
        reg.generate("dbus_daemon_children", &QueryContext::new())
            .expect("table"),
    )
}

#[test]
fn fixture_tree_through_children_files() {
    let (proc, root) = fixture(true);
    let rows = all_rows(proc.path(), root.path());
    check_full_scan(&rows);
    let reg = registry(proc.path(), root.path());
    let spec = &reg.get("dbus_daemon_children").expect("table").spec;
    for row in rows.values() {
        for col in row.columns() {
            assert!(spec.column(col).is_some(), "column {col} not in the spec");
        }
    }
}

#[test]
fn fixture_tree_without_children_files_falls_back_to_a_stat_scan() {
    let (proc, root) = fixture(false);
    check_full_scan(&all_rows(proc.path(), root.path()));
}

/// A proc tree whose `thread-self` shows no `children` file (a kernel
/// without CONFIG_PROC_CHILDREN): the daemons and the parent map come from
/// one pass over `stat`, and the rows are the same.
#[test]
fn kernel_known_to_lack_children_files_takes_one_stat_pass() {
    let (proc, root) = fixture(false);
    let found_late = all_rows(proc.path(), root.path());
    std::fs::create_dir(proc.path().join("thread-self")).expect("thread-self");
    let rows = all_rows(proc.path(), root.path());
    check_full_scan(&rows);
    assert_eq!(
        rows, found_late,
        "one stat pass and the late stat scan agree"
    );
}

#[test]
fn pid_pushdown_returns_exactly_what_a_full_scan_would() {
    let (proc, root) = fixture(true);
    let full = all_rows(proc.path(), root.path());
    let reg = registry(proc.path(), root.path());
    for pid in [
        1u32, 100, 101, 102, 200, 201, 202, 300, 301, 302, 303, 399, 400, 401, 500, 501, 600, 9999,
    ] {
        let mut ctx = QueryContext::new();
        ctx.add_constraint("pid", Op::Eq, pid.to_string());
        let rows = by_pid(reg.generate("dbus_daemon_children", &ctx).expect("table"));
        match full.get(&i64::from(pid)) {
            Some(want) => {
                assert_eq!(rows.len(), 1, "pid {pid}");
                assert_eq!(&rows[&i64::from(pid)], want, "pid {pid}");
            }
            None => assert!(rows.is_empty(), "pid {pid} is not a bus child: {rows:?}"),
        }
    }
    let mut ctx = QueryContext::new();
    ctx.add_constraint("pid", Op::Eq, "302");
    ctx.add_constraint("pid", Op::Eq, "202");
    ctx.add_constraint("pid", Op::Eq, "401");
    let rows = by_pid(reg.generate("dbus_daemon_children", &ctx).expect("table"));
    assert_eq!(rows.keys().copied().collect::<Vec<_>>(), vec![202, 302]);
}

#[test]
fn costly_columns_only_when_used() {
    let (proc, root) = fixture(true);
    let reg = registry(proc.path(), root.path());
    let mut ctx = QueryContext::new();
    ctx.set_cols_used(["pid", "name"]);
    let rows = by_pid(reg.generate("dbus_daemon_children", &ctx).expect("table"));
    assert!(rows[&302].get("service_file").is_none());
    assert!(rows[&302].get("exe_sha256").is_none());
    // The fixture's exe links point at paths that do not exist: NULL, no error.
    let rows = all_rows(proc.path(), root.path());
    assert_eq!(rows[&302].get("exe_sha256"), Some(&Value::Null));
}

#[test]
fn missing_proc_dir_is_no_rows_not_an_error() {
    let root = tempfile::tempdir().expect("tempdir");
    let rows = all_rows(&root.path().join("nope"), root.path());
    assert!(rows.is_empty());
}

fn query_json(proc: &Path, root: &Path, sql: &str) -> serde_json::Value {
    common::cli::query_json(Some(proc), Some(root), sql)
}

#[test]
fn binary_query_over_fixture_proc() {
    let (proc, root) = fixture(true);
    let v = query_json(
        proc.path(),
        root.path(),
        "SELECT pid, via, bus_pid, on_disk, unusual FROM dbus_daemon_children ORDER BY pid",
    );
    let rows = v.as_array().expect("array");
    let pids: Vec<String> = rows
        .iter()
        .map(|r| r["pid"].to_string().trim_matches('"').to_string())
        .collect();
    assert_eq!(pids, ["102", "202", "302", "303", "500", "600"]);
    let v = query_json(
        proc.path(),
        root.path(),
        "SELECT via, on_disk FROM dbus_daemon_children WHERE pid = 202",
    );
    let row = &v.as_array().expect("array")[0];
    assert_eq!(row["via"], "launch_helper");
    assert_eq!(row["on_disk"].to_string().trim_matches('"'), "0");

    // dbus_activated_processes names the same paths with the same words:
    // its depth-0 rows through a bus daemon are these rows, with the same
    // via and bus.
    let v = query_json(
        proc.path(),
        root.path(),
        "SELECT c.pid, c.via, c.bus, a.via AS a_via, a.bus AS a_bus, a.depth \
         FROM dbus_daemon_children c LEFT JOIN dbus_activated_processes a USING (pid) \
         ORDER BY c.pid",
    );
    let rows = v.as_array().expect("array");
    assert_eq!(rows.len(), 6, "{v:#}");
    for r in rows {
        assert_eq!(r["a_via"], r["via"], "{r}");
        assert_eq!(r["a_bus"], r["bus"], "{r}");
        assert_eq!(r["depth"].to_string().trim_matches('"'), "0", "{r}");
    }
    let vias: BTreeSet<&str> = rows.iter().filter_map(|r| r["via"].as_str()).collect();
    assert_eq!(
        vias,
        BTreeSet::from(["babysitter", "direct", "launch_helper"]),
        "every bus path is covered"
    );
}

/// A JSON row as column → text, NULLs left out: the shape osquery's Thrift
/// rows have (a missing key is NULL). `query --json` prints NULL as "" as
/// `osqueryi --json` does, so empty text counts as NULL too.
fn as_text_map(row: &serde_json::Value) -> BTreeMap<String, String> {
    row.as_object()
        .expect("row object")
        .iter()
        .filter(|(_, v)| !v.is_null() && v.as_str() != Some(""))
        .map(|(k, v)| {
            let t = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), t)
        })
        .collect()
}

fn sorted_rows(rows: &serde_json::Value) -> Vec<BTreeMap<String, String>> {
    let mut out: Vec<_> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(as_text_map)
        .collect();
    out.sort_by_key(|r| r.get("pid").and_then(|p| p.parse::<i64>().ok()));
    out
}

#[test]
fn thrift_peer_and_embedded_query_give_the_same_rows() {
    let (proc, root) = fixture(true);
    let work = tempfile::tempdir().expect("tempdir");
    for (sql, ctx) in [
        (
            "SELECT * FROM dbus_daemon_children",
            r#"{"constraints":[]}"#.to_string(),
        ),
        (
            "SELECT * FROM dbus_daemon_children WHERE pid IN (202, 302, 401)",
            r#"{"constraints":[{"name":"pid","affinity":"BIGINT","list":[{"op":2,"expr":"202"},{"op":2,"expr":"302"},{"op":2,"expr":"401"}]}]}"#.to_string(),
        ),
    ] {
        let out = Command::new(common::peer_python())
            .arg(common::peer_script("fake_core.py"))
            .arg("generate")
            .arg("--bin")
            .arg(BIN)
            .arg("--workdir")
            .arg(work.path())
            .arg("--root")
            .arg(root.path())
            .arg("--proc")
            .arg(proc.path())
            .args(["--table", "dbus_daemon_children", "--context", &ctx])
            .output()
            .expect("run fake core");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let obs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("peer JSON");
        assert_eq!(obs["status"]["code"], 0, "{obs}");
        let thrift = sorted_rows(&obs["response"]);
        let embedded = sorted_rows(&query_json(proc.path(), root.path(), sql));
        assert!(!thrift.is_empty());
        assert_eq!(thrift, embedded, "{sql}");
    }
}

#[test]
fn a_zombie_child_without_exe_or_cwd_links_is_still_a_row() {
    let (proc, root) = fixture(true);
    let dir = proc.path().join("303");
    std::fs::remove_file(dir.join("exe")).expect("rm exe");
    std::fs::remove_file(dir.join("cwd")).expect("rm cwd");
    std::fs::write(dir.join("cmdline"), b"").expect("empty cmdline");
    let rows = all_rows(proc.path(), root.path());
    let r = &rows[&303];
    assert_eq!(int(r, "on_disk"), -1);
    assert_eq!(r.get("path"), Some(&Value::Null));
    assert!(r.get("cwd").is_none());
    assert_eq!(int(r, "args_count"), 0);
    assert_eq!(int(r, "unusual"), 0);
}
