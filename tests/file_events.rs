//! `dbus_file_events` over a temp root (`--root`): the collector watches the
//! D-Bus directories discovered under it, the test writes there itself and
//! through a program named `dpkg`, creates absent directories, adds an
//! account and plants a symlink in a home. Needs root for fanotify (CI runs
//! as root); without it the inotify fallback is checked instead, and one
//! test drives an inotify collector itself.
use osquery_dbus::context::QueryContext;
use osquery_dbus::row::{Row, Value};
use osquery_dbus::settings::Settings;
use osquery_dbus::sources::collect::file::Collector;
use osquery_dbus::sources::collect::{self, Collectors, State};
use osquery_dbus::sources::file_watch::Watcher;
use osquery_dbus::tables::dbus_file_events;
use osquery_dbus::tables::Registry;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The temp root, created once per test binary (the collector starts once).
/// alice's home exists without `~/.local`; carol's `~/.local` is a symlink
/// to a tree holding a services directory.
fn root() -> &'static Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/share/dbus-1/services")).expect("mkdir");
        std::fs::create_dir_all(r.join("etc/dbus-1/system.d")).expect("system.d");
        std::fs::create_dir_all(r.join("home/alice")).expect("alice");
        std::fs::create_dir_all(r.join("home/carol")).expect("carol");
        std::fs::create_dir_all(r.join("decoy/share/dbus-1/services")).expect("decoy");
        std::fs::write(r.join("decoy/share/dbus-1/services/old.service"), "x").expect("old");
        std::os::unix::fs::symlink("../../decoy", r.join("home/carol/.local")).expect("link");
        std::fs::write(
            r.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n\
             alice:x:1000:1000::/home/alice:/bin/sh\n\
             carol:x:1002:1002::/home/carol:/bin/sh\n",
        )
        .expect("passwd");
        t
    })
    .path()
}

/// Held by the tests whose changes make the collector discover again, so
/// one cannot pass on another's discovery.
fn discovery_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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

/// The collectors of this test binary, made and started once, as the
/// extension does.
fn collectors() -> &'static Arc<Collectors> {
    static HUB: OnceLock<Arc<Collectors>> = OnceLock::new();
    HUB.get_or_init(|| {
        let hub = Collectors::new(collect::Config::default());
        hub.start(&settings());
        hub
    })
}

fn registry() -> Registry {
    Registry::with_collectors(settings(), Some(Arc::clone(collectors()))).expect("registry")
}

fn collecting() -> bool {
    // Always true or a panic; kept a bool so the tests read alike.
    match collectors().status(collect::FILE).map(|s| s.state) {
        Some(State::Running) => true,
        // fanotify falls back to inotify, which every Linux has: a
        // collector that is not running is a failure, never a skip.
        other => panic!("file collector not running: {other:?}"),
    }
}

fn rows() -> Vec<Row> {
    let registry = registry();
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

/// The `filename` of every row the pack's "writes not by a package
/// manager" query returns, run unchanged through the embedded host.
fn pack_filenames() -> Vec<String> {
    let sql = osquery_dbus::packs::builtin()
        .expect("packs")
        .into_iter()
        .find_map(|p| {
            p.queries
                .get("dbus_file_writes_not_by_package_manager")
                .map(|q| q.query.clone())
        })
        .expect("pack query");
    let host = osquery_dbus::hosts::sqlite::EmbeddedHost::open(Arc::new(registry())).expect("host");
    let result = host.query(&sql).expect("query");
    let col = result
        .columns
        .iter()
        .position(|c| c == "filename")
        .expect("filename column");
    result
        .rows
        .iter()
        .map(|r| r[col].to_osquery_string().unwrap_or_default())
        .collect()
}

/// The rows for `path` (inside the root), waiting up to 5 s for one.
fn wait_path(path: &str) -> Vec<Row> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found: Vec<Row> = rows()
            .into_iter()
            .filter(|r| r.get("path") == Some(&Value::Text(path.into())))
            .collect();
        if !found.is_empty() {
            return found;
        }
        assert!(Instant::now() < deadline, "no row for {path}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A file written before its directory was watched comes out `found`,
/// with no writer; one written after, `created`, with the writer when the
/// backend knows it.
fn assert_reported_once_watched(rows: &[Row]) {
    for r in rows {
        match text(r, "action") {
            "found" => {
                assert_eq!(r.get("pid"), None, "{r:?}");
                assert_eq!(r.get("package_manager"), None, "{r:?}");
                assert_eq!(text(r, "type"), "regular");
            }
            "created" | "modified" if text(r, "backend") == "fanotify" => {
                assert_eq!(int(r, "pid"), i64::from(std::process::id()), "{r:?}");
            }
            "created" | "modified" => {}
            other => panic!("unexpected action {other} in {r:?}"),
        }
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
    assert_eq!(int(&r, "process_uid"), 0);
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
    let pm_names = pack_filenames();
    assert!(pm_names.contains(&name), "{pm_names:?}");
    // dpkg's writes (the other test) are never in it.
    assert!(!pm_names.iter().any(|n| n.starts_with("org.example.Pkg")));
}

#[test]
fn a_servicedir_added_by_a_policy_fragment_is_watched_at_once() {
    if !collecting() {
        return;
    }
    let _serial = discovery_lock();
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

/// `/etc/dbus-1` is read for four config files (system, system-local,
/// session, session-local): a change to any of them is reported, not
/// only to the first the directory was listed for.
#[test]
fn every_config_file_of_a_shared_directory_is_reported() {
    if !collecting() {
        return;
    }
    let _serial = discovery_lock();
    for name in ["session-local.conf", "system-local.conf"] {
        std::fs::write(root().join("etc/dbus-1").join(name), "<busconfig/>\n").expect("write");
        let r = wait_row(name, "created");
        assert_eq!(text(&r, "directory"), "/etc/dbus-1");
    }
    std::fs::write(root().join("etc/dbus-1/other.conf"), "x").expect("write");
    std::fs::write(root().join("etc/dbus-1/system.conf"), "<busconfig/>\n").expect("write");
    wait_row("system.conf", "created");
    assert!(
        !rows().iter().any(|r| text(r, "filename") == "other.conf"),
        "a file no bus reads there is not reported"
    );
}

/// `mkdir -p ~/.local/share/dbus-1/services && cp evil.service …` in a
/// home that had no `~/.local`: the file is reported, and writes soon
/// after are reported as they happen, with the writer. The time from
/// `mkdir` to the first probe reported `created` bounds how long the new
/// directory went unwatched.
#[test]
fn a_services_dir_made_by_mkdir_p_is_watched_and_what_was_planted_found() {
    if !collecting() {
        return;
    }
    let _serial = discovery_lock();
    let inner = "/home/alice/.local/share/dbus-1/services";
    let dir = root().join(inner.trim_start_matches('/'));
    let start = Instant::now();
    std::fs::create_dir_all(&dir).expect("mkdir -p");
    std::fs::write(dir.join("org.example.Planted.service"), "[D-BUS Service]\n").expect("plant");
    // Probes until one shows as `created`: by then the directory is
    // watched, and every earlier probe must show as `found` (or created).
    let deadline = start + Duration::from_secs(5);
    let mut probes: Vec<(String, Duration)> = Vec::new();
    let watched = 'probing: loop {
        let name = format!("probe{}.service", probes.len());
        std::fs::write(dir.join(&name), "x").expect("probe");
        probes.push((name, start.elapsed()));
        if probes.len() % 5 == 0 {
            let got = rows();
            for (name, at) in &probes {
                if got.iter().any(|r| {
                    r.get("path") == Some(&Value::Text(format!("{inner}/{name}")))
                        && r.get("action") == Some(&Value::Text("created".into()))
                }) {
                    break 'probing (name.clone(), *at);
                }
            }
        }
        assert!(Instant::now() < deadline, "{inner} never watched");
        std::thread::sleep(Duration::from_millis(1));
    };
    eprintln!(
        "{inner} watched within {:?} of mkdir -p ({} probes written before)",
        watched.1,
        probes.iter().take_while(|p| p.0 != watched.0).count()
    );
    let planted = wait_path(&format!("{inner}/org.example.Planted.service"));
    assert_reported_once_watched(&planted);
    assert_eq!(text(&planted[0], "directory"), inner);
    for (name, _) in probes.iter().take_while(|p| p.0 != watched.0) {
        assert_reported_once_watched(&wait_path(&format!("{inner}/{name}")));
    }
    let first = wait_path(&format!("{inner}/{}", watched.0));
    assert_reported_once_watched(&first);
    // The hunt reports the planted file whichever way it was seen.
    let pack = pack_filenames();
    assert!(
        pack.iter().any(|n| n == "org.example.Planted.service"),
        "{pack:?}"
    );
}

/// An account added to passwd (replaced by rename, as `useradd` and
/// `vipw` do), then its home, services directory and a file: reported
/// well before the periodic discovery.
#[test]
fn a_new_account_in_passwd_is_watched_at_once() {
    if !collecting() {
        return;
    }
    let _serial = discovery_lock();
    let passwd = root().join("etc/passwd");
    let mut text = std::fs::read_to_string(&passwd).expect("passwd");
    text.push_str("bob:x:1001:1001::/home/bob:/bin/sh\n");
    let staged = root().join("etc/passwd+");
    std::fs::write(&staged, text).expect("passwd+");
    std::fs::rename(&staged, &passwd).expect("replace passwd");
    let inner = "/home/bob/.local/share/dbus-1/services";
    let dir = root().join(inner.trim_start_matches('/'));
    std::fs::create_dir_all(&dir).expect("mkdir -p");
    std::fs::write(dir.join("org.example.Bob.service"), "[D-BUS Service]\n").expect("plant");
    let got = wait_path(&format!("{inner}/org.example.Bob.service"));
    assert_reported_once_watched(&got);
}

/// carol's `~/.local` points at another tree holding a services
/// directory: the collector neither watches nor lists it as hers. Once
/// the link is replaced by a real directory, that one is watched.
#[test]
fn a_symlinked_ancestor_in_a_home_is_not_followed() {
    if !collecting() {
        return;
    }
    let _serial = discovery_lock();
    let decoy = root().join("decoy/share/dbus-1/services");
    std::fs::write(decoy.join("org.example.Decoy.service"), "x").expect("decoy write");
    let inner = "/home/carol/.local/share/dbus-1/services";
    let local = root().join("home/carol/.local");
    std::fs::remove_file(&local).expect("rm link");
    std::fs::create_dir_all(root().join(inner.trim_start_matches('/'))).expect("mkdir -p");
    std::fs::write(
        root()
            .join(inner.trim_start_matches('/'))
            .join("org.example.Carol.service"),
        "[D-BUS Service]\n",
    )
    .expect("plant");
    // Discovery ran (the real directory is reported) and the queue was
    // read past the decoy write: nothing from the decoy tree shows.
    assert_reported_once_watched(&wait_path(&format!("{inner}/org.example.Carol.service")));
    let leaked: Vec<Row> = rows()
        .into_iter()
        .filter(|r| {
            let f = text(r, "filename");
            f == "org.example.Decoy.service" || f == "old.service"
        })
        .collect();
    assert!(leaked.is_empty(), "followed carol's symlink: {leaked:?}");
}

/// A collector driven here over its own root: a services directory made
/// one component at a time is watched before the last `mkdir` returns
/// (so the file written next is `created`, with the writer where the
/// backend knows it); deleted and made again with `mkdir -p` and a file
/// planted before the collector reads its queue (the race at its widest),
/// the file still gives a `found` row.
fn follows_a_services_dir_made_later(watcher: Watcher) {
    let t = tempfile::tempdir().expect("tempdir");
    let r = t.path();
    std::fs::create_dir_all(r.join("etc")).expect("etc");
    std::fs::create_dir_all(r.join("home/dave")).expect("home");
    std::fs::write(
        r.join("etc/passwd"),
        "dave:x:1003:1003::/home/dave:/bin/sh\n",
    )
    .expect("passwd");
    let settings = Settings {
        root: r.to_path_buf(),
        ..Settings::default()
    };
    let backend = watcher.backend().as_str();
    let mut c = Collector::new(settings, watcher);
    let inner = "/home/dave/.local/share/dbus-1/services";
    let dir = r.join(inner.trim_start_matches('/'));
    let mut seen: Vec<Row> = Vec::new();
    let mut poll = |c: &mut Collector, name: &str, action: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            seen.extend(
                c.next(Duration::from_millis(50))
                    .expect("read")
                    .events
                    .iter()
                    .map(dbus_file_events::row),
            );
            if let Some(r) = seen.iter().find(|r| {
                r.get("filename") == Some(&Value::Text(name.into()))
                    && r.get("action") == Some(&Value::Text(action.into()))
            }) {
                return r.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {action} row for {name}: {seen:?}"
            );
        }
    };
    let mut path = r.join("home/dave");
    for component in [".local", "share", "dbus-1", "services"] {
        path.push(component);
        std::fs::create_dir(&path).expect("mkdir");
        // Read what that mkdir announced (nothing to wait for).
        c.next(Duration::ZERO).expect("read");
    }
    std::fs::write(dir.join("a.service"), "[D-BUS Service]\n").expect("write");
    let created = poll(&mut c, "a.service", "created");
    assert_eq!(text(&created, "path"), format!("{inner}/a.service"));
    assert_eq!(text(&created, "directory"), inner);
    assert_eq!(text(&created, "backend"), backend);
    if backend == "fanotify" {
        assert_eq!(int(&created, "pid"), i64::from(std::process::id()));
    } else {
        assert_eq!(created.get("pid"), None);
    }
    // An account added (passwd rewritten in place): a whole discovery,
    // after which only the directory itself is watched, not the way to it.
    let before = c.discoveries();
    let mut passwd = std::fs::read_to_string(r.join("etc/passwd")).expect("passwd");
    passwd.push_str("erin:x:1004:1004::/home/erin:/bin/sh\n");
    std::fs::write(r.join("etc/passwd"), passwd).expect("passwd");
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.discoveries() == before {
        c.next(Duration::from_millis(50)).expect("read");
        assert!(Instant::now() < deadline, "passwd change not followed");
    }
    // The watched directory deleted with its parents, made again at once.
    std::fs::remove_dir_all(r.join("home/dave/.local")).expect("rm -r");
    std::fs::create_dir_all(&dir).expect("mkdir -p again");
    std::fs::write(dir.join("b.service"), "[D-BUS Service]\n").expect("plant");
    let found = poll(&mut c, "b.service", "found");
    assert_eq!(text(&found, "path"), format!("{inner}/b.service"));
    assert_eq!(int(&found, "size"), 16);
    assert_eq!(found.get("pid"), None);
    std::fs::write(dir.join("c.service"), "x").expect("write");
    poll(&mut c, "c.service", "created");
}

#[test]
fn inotify_fallback_follows_a_services_dir_made_later() {
    follows_a_services_dir_made_later(Watcher::open_inotify().expect("inotify"));
}

#[test]
fn a_collector_follows_a_services_dir_made_later() {
    // fanotify where the kernel allows it (CI: root), else inotify.
    let (w, why) = Watcher::open().expect("watcher");
    if let Some(why) = why {
        eprintln!("{why}: inotify checked instead");
    }
    follows_a_services_dir_made_later(w);
}

/// Five hundred homes, none with a services directory: both per-home
/// candidates wait in the same home, one watch each.
#[test]
fn absent_home_dirs_share_one_watch_per_home() {
    let t = tempfile::tempdir().expect("tempdir");
    let r = t.path();
    std::fs::create_dir_all(r.join("etc")).expect("etc");
    let mut passwd = String::new();
    for i in 0..500 {
        std::fs::create_dir_all(r.join(format!("home/u{i}"))).expect("home");
        passwd.push_str(&format!("u{i}:x:{}:100::/home/u{i}:/bin/sh\n", 2000 + i));
    }
    std::fs::write(r.join("etc/passwd"), passwd).expect("passwd");
    let settings = Settings {
        root: r.to_path_buf(),
        ..Settings::default()
    };
    let c = Collector::new(settings, Watcher::open_inotify().expect("inotify"));
    // 500 homes, plus /etc, / (for /usr, /var, /run) and no more.
    let n = c.watched();
    assert!((500..=510).contains(&n), "{n} watches for 500 homes");
}
