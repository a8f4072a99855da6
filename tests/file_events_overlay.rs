//! `dbus_file_events` where fanotify refuses a directory: the real
//! `osquery-dbus watch` runs in a private mount namespace (`unshare -m`)
//! over a temp root whose `/usr/share/dbus-1/services` is an overlayfs
//! mount, as on a container's root. fanotify will not mark a directory on
//! overlayfs (no file handles), so that directory must be watched with
//! inotify (a planted service file still reported, the writer columns NULL
//! and `backend_reason` saying why) while `/etc/dbus-1/system.d`, on the
//! ordinary filesystem, keeps fanotify and names its writer.
//!
//! The writes are made inside the namespace (only there is the overlay
//! mounted), by a shell loop that rewrites both files until the test has
//! seen a row for each. Needs root for `unshare -m` and fanotify; a test
//! run as another user says so and returns.
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn text(v: &serde_json::Value, c: &str) -> String {
    match v.get(c) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

#[test]
fn a_service_file_on_overlayfs_is_reported_through_inotify_with_the_reason() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root (unshare -m, fanotify)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let root = t.join("root");
    for d in [
        "root/usr/share/dbus-1/services",
        "root/etc/dbus-1/system.d",
        "lower",
        "upper",
        "work",
    ] {
        std::fs::create_dir_all(t.join(d)).expect("mkdir");
    }
    std::fs::write(t.join("lower/shipped.service"), "[D-BUS Service]\n").expect("lower");
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    let services = root.join("usr/share/dbus-1/services");
    let policy = root.join("etc/dbus-1/system.d");
    let stop = t.join("stop");
    let script = format!(
        r#"set -e
mount -t overlay overlay -o lowerdir={lower},upperdir={upper},workdir={work} {services}
[ "$(stat -f -c %T {services})" = overlayfs ] || {{ echo "not an overlay" >&2; exit 3; }}
"$BIN" --root {root} --proc /proc watch --table dbus_file_events &
w=$!
i=0
while [ ! -e {stop} ] && [ $i -lt 300 ]; do
  printf '[D-BUS Service]\nName=org.planted.Overlay\nExec=/tmp/x\n' > {services}/planted.service
  printf '<busconfig/>\n' > {policy}/planted.conf
  sleep 0.1
  i=$((i + 1))
done
kill $w
wait $w || true
"#,
        lower = t.join("lower").display(),
        upper = t.join("upper").display(),
        work = t.join("work").display(),
        services = services.display(),
        policy = policy.display(),
        root = root.display(),
        stop = stop.display(),
    );
    let mut child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env("BIN", env!("CARGO_BIN_EXE_osquery-dbus"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare");
    // unshare without --fork execs the shell: the loop's pid.
    let shell = i64::from(child.id());
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut overlay = None;
    let mut plain = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while (overlay.is_none() || plain.is_none()) && Instant::now() < deadline {
        let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        let row = v.get("row").cloned().unwrap_or(v);
        let action = text(&row, "action");
        if !matches!(action.as_str(), "created" | "modified") {
            continue;
        }
        match text(&row, "filename").as_str() {
            "planted.service" => overlay = Some(row),
            "planted.conf" => plain = Some(row),
            _ => {}
        }
    }
    std::fs::write(&stop, "").expect("stop");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let overlay =
        overlay.unwrap_or_else(|| panic!("no row for the overlay file; stderr:\n{stderr}"));
    let plain = plain.unwrap_or_else(|| panic!("no row for the policy file; stderr:\n{stderr}"));

    assert_eq!(
        text(&overlay, "path"),
        "/usr/share/dbus-1/services/planted.service"
    );
    assert_eq!(text(&overlay, "backend"), "inotify", "{overlay}");
    let why = text(&overlay, "backend_reason");
    assert!(why.contains("overlayfs"), "{overlay}");
    assert!(why.contains("fanotify refused this directory"), "{overlay}");
    for c in [
        "pid",
        "process_name",
        "process_path",
        "process_uid",
        "package_manager",
    ] {
        assert_eq!(text(&overlay, c), "", "{c} must be NULL: {overlay}");
    }
    assert_eq!(text(&overlay, "type"), "regular");

    // The refusal costs that directory only: the other one keeps fanotify
    // and its writer (the shell of the loop; printf is a builtin).
    assert_eq!(text(&plain, "backend"), "fanotify", "{plain}");
    assert_eq!(text(&plain, "backend_reason"), "", "{plain}");
    assert_eq!(text(&plain, "pid"), shell.to_string(), "{plain}");
    assert_eq!(text(&plain, "process_name"), "sh", "{plain}");
    // The cause is logged once, not per event.
    let logged = stderr
        .lines()
        .filter(|l| l.contains("fanotify refused this directory"))
        .count();
    assert_eq!(logged, 1, "{stderr}");
    assert!(!Path::new(&services).join("planted.service").exists());
}
