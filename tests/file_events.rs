//! `dbus_file_events` over a temp root (`--root`): the collector watches the
//! D-Bus directories discovered under it, the test writes there itself and
//! through a program named `dpkg`. Needs root for fanotify (CI runs as
//! root); without it the inotify fallback is checked instead.
use osquery_dbus::context::QueryContext;
use osquery_dbus::events::{self, State};
use osquery_dbus::tables::{Registry, Row, Settings, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The temp root, created once per test binary (the collector starts once).
fn root() -> &'static Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(t.path().join("usr/share/dbus-1/services")).expect("mkdir");
        std::fs::create_dir_all(t.path().join("etc/dbus-1/system.d")).expect("system.d");
        std::fs::create_dir_all(t.path().join("etc")).expect("etc");
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n",
        )
        .expect("passwd");
        t
    })
    .path()
}

fn services() -> PathBuf {
    root().join("usr/share/dbus-1/services")
}

fn settings() -> Settings {
    Settings {
        root: root().to_path_buf(),
        ..Settings::default()
    }
}

fn collecting() -> bool {
    // Always true or a panic; kept a bool so the tests read alike.
    events::start(&settings(), events::Config::default());
    match events::store(events::FILE_TABLE).map(|s| s.state()) {
        Some(State::Running) => true,
        // fanotify falls back to inotify, which every Linux has: a
        // collector that is not running is a failure, never a skip.
        other => panic!("file collector not running: {other:?}"),
    }
}

fn rows() -> Vec<Row> {
    let registry = Registry::new(settings()).expect("registry");
    let table = registry.get("dbus_file_events").expect("table");
    let rows = table.generate(&registry.settings, &QueryContext::new());
    for r in &rows {
        for col in r.columns() {
            assert!(table.spec.column(col).is_some(), "column {col} not in spec");
        }
    }
    rows
}

fn text<'a>(r: &'a Row, c: &str) -> &'a str {
    match r.get(c) {
        Some(Value::Text(t)) => t,
        other => panic!("{c} is {other:?} in {r:?}"),
    }
}

fn int(r: &Row, c: &str) -> i64 {
    r.int(c)
        .unwrap_or_else(|| panic!("{c} is {:?} in {r:?}", r.get(c)))
}

/// The first row for `filename` with `action` (bounded wait).
fn wait_row(filename: &str, action: &str) -> Row {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(r) = rows().into_iter().find(|r| {
            r.get("filename") == Some(&Value::Text(filename.into()))
                && r.get("action") == Some(&Value::Text(action.into()))
        }) {
            return r;
        }
        assert!(Instant::now() < deadline, "no {action} row for {filename}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_write_by_this_process_names_it() {
    if !collecting() {
        return;
    }
    let name = format!("org.example.Self{}.service", std::process::id());
    std::fs::write(services().join(&name), "[D-BUS Service]\n").expect("write");
    let r = wait_row(&name, "created");
    assert_eq!(text(&r, "directory"), "/usr/share/dbus-1/services");
    assert_eq!(
        text(&r, "path"),
        format!("/usr/share/dbus-1/services/{name}")
    );
    if text(&r, "backend") == "inotify" {
        eprintln!("fanotify unavailable: process columns not checked");
        return;
    }
    assert_eq!(int(&r, "pid"), i64::from(std::process::id()));
    let comm = std::fs::read_to_string("/proc/self/comm").expect("comm");
    assert_eq!(text(&r, "process_name"), comm.trim_end());
    assert_eq!(
        text(&r, "process_path"),
        std::env::current_exe().expect("exe").to_string_lossy()
    );
    assert_eq!(int(&r, "package_manager"), 0);
    assert_eq!(int(&r, "uid"), 0);
    let m = wait_row(&name, "modified");
    assert_eq!(int(&m, "size"), 16);
    assert_eq!(text(&m, "type"), "regular");

    // Renamed in from elsewhere, then deleted.
    let moved = format!("org.example.Moved{}.service", std::process::id());
    let outside = root().join("staging");
    std::fs::write(&outside, "x").expect("staging");
    std::fs::rename(&outside, services().join(&moved)).expect("mv");
    wait_row(&moved, "moved_in");
    std::fs::remove_file(services().join(&moved)).expect("rm");
    let d = wait_row(&moved, "deleted");
    assert_eq!(d.get("type"), None, "a deleted file has no stat");
}

#[test]
fn a_write_by_dpkg_is_a_package_manager_write() {
    if !collecting() {
        return;
    }
    let bin = tempfile::tempdir().expect("bin");
    let dpkg = bin.path().join("dpkg");
    std::fs::copy("/bin/sh", &dpkg).expect("copy sh");
    let name = format!("org.example.Pkg{}.service", std::process::id());
    // The shell itself writes; `sleep` keeps it alive until the event is
    // read (a writer that already exited has no name left to read).
    let status = Command::new(&dpkg)
        .arg("-c")
        .arg(format!(
            "printf x > '{}'; sleep 1; true",
            services().join(&name).display()
        ))
        .status()
        .expect("run dpkg");
    assert!(status.success());
    let r = wait_row(&name, "created");
    if text(&r, "backend") == "inotify" {
        eprintln!("fanotify unavailable: package_manager not checked");
        return;
    }
    assert_eq!(text(&r, "process_name"), "dpkg");
    assert_eq!(text(&r, "process_path"), dpkg.to_string_lossy());
    assert_eq!(int(&r, "package_manager"), 1);
}

#[test]
fn pack_query_reports_writes_not_by_a_package_manager() {
    if !collecting() {
        return;
    }
    let name = format!("org.example.PackQ{}.service", std::process::id());
    std::fs::write(services().join(&name), "x").expect("write");
    wait_row(&name, "created");
    let sql = osquery_dbus::packs::builtin()
        .expect("packs")
        .into_iter()
        .find_map(|p| {
            p.queries
                .get("dbus_file_writes_not_by_package_manager")
                .map(|q| q.query.clone())
        })
        .expect("pack query");
    let registry = std::sync::Arc::new(Registry::new(settings()).expect("registry"));
    let host = osquery_dbus::hosts::sqlite::EmbeddedHost::open(registry).expect("host");
    let result = host.query(&sql).expect("query");
    let col = result
        .columns
        .iter()
        .position(|c| c == "filename")
        .expect("filename column");
    let pm_names: Vec<String> = result
        .rows
        .iter()
        .map(|r| r[col].to_osquery_string().unwrap_or_default())
        .collect();
    assert!(pm_names.contains(&name), "{pm_names:?}");
    // dpkg's writes (the other test) are never in it.
    assert!(!pm_names.iter().any(|n| n.starts_with("org.example.Pkg")));
}

#[test]
fn a_servicedir_added_by_a_policy_fragment_is_watched_at_once() {
    if !collecting() {
        return;
    }
    let extra = root().join(format!("opt/extra-{}", std::process::id()));
    std::fs::create_dir_all(&extra).expect("mkdir");
    let inner = format!("/opt/extra-{}", std::process::id());
    std::fs::write(
        root().join("etc/dbus-1/system.d/extra.conf"),
        format!("<busconfig><servicedir>{inner}</servicedir></busconfig>\n"),
    )
    .expect("fragment");
    wait_row("extra.conf", "created");
    // Discovery runs right after that event; write until the new
    // directory's change shows (well before the 30 s timer).
    let name = "org.example.Extra.service";
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        std::fs::write(extra.join(name), "x").expect("write");
        if let Some(r) = rows()
            .into_iter()
            .find(|r| r.get("path") == Some(&Value::Text(format!("{inner}/{name}"))))
        {
            assert_eq!(text(&r, "directory"), inner);
            break;
        }
        assert!(Instant::now() < deadline, "{inner} not watched");
        std::thread::sleep(Duration::from_millis(100));
    }
}
