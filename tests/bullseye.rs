//! The shipped binary (glibc 2.17 baseline, `scripts/build-shipped.sh`) on
//! Debian 11: inside a bullseye root built from Debian's packages
//! (`scripts/bullseye-root.sh`: glibc 2.31, dbus-daemon 1.12), that root's
//! own dbus-daemon activates a planted service, the shipped binary's `query`
//! reports it in `dbus_daemon_children` with its service file, and its
//! `hunt` over that root finds it.
//!
//! Everything runs in a private mount and pid namespace (`unshare -m -p
//! --fork --kill-child`) chrooted into the root: the namespace's own /proc
//! and a tmpfs for the bus socket are mounted inside the root and vanish
//! with the namespace, and when its first process exits the kernel kills
//! every process left in it, so no bus or service outlives the test, a
//! failing one included. The binary, bus config, service file and outputs
//! live in a temp dir under the root's /tmp, removed afterwards. Nothing of
//! the host's is touched.
//!
//! Inputs: `OSQUERY_DBUS_SHIPPED` (default
//! `target/x86_64-unknown-linux-gnu/release/osquery-dbus`) and
//! `OSQUERY_DBUS_BULLSEYE_ROOT` (default `target/bullseye-root`). When one
//! is missing (or the test is not root), the test fails under `CI=true` and
//! otherwise says why and passes without running.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const NAME: &str = "org.example.Planted";
/// Written by scripts/bullseye-root.sh once debootstrap finished.
const MARKER: &str = ".osquery-dbus-root-complete";

/// `target/`, whatever `CARGO_TARGET_DIR` says.
fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

fn input(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join(default))
}

/// The shipped binary and the root, or None (after saying why) when this
/// machine cannot run the test and it is not CI.
fn inputs() -> Option<(PathBuf, PathBuf)> {
    let shipped = input(
        "OSQUERY_DBUS_SHIPPED",
        "x86_64-unknown-linux-gnu/release/osquery-dbus",
    );
    let root = input("OSQUERY_DBUS_BULLSEYE_ROOT", "bullseye-root");
    let mut missing = Vec::new();
    if !shipped.is_file() {
        missing.push(format!(
            "no shipped binary at {} (scripts/build-shipped.sh builds it; \
             OSQUERY_DBUS_SHIPPED names another)",
            shipped.display()
        ));
    }
    if !root.join(MARKER).is_file() {
        missing.push(format!(
            "no complete bullseye root at {} (scripts/bullseye-root.sh builds it; \
             OSQUERY_DBUS_BULLSEYE_ROOT names another)",
            root.display()
        ));
    }
    if !rustix::process::geteuid().is_root() {
        missing.push("not root (needs unshare -m -p and chroot)".to_string());
    }
    if missing.is_empty() {
        return Some((shipped, root));
    }
    let why = missing.join("; ");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and the bullseye test cannot run: {why}"
    );
    eprintln!("bullseye: not run: {why}");
    None
}

/// Runs in the namespace, before the chroot: $1 the root, $2 the work dir
/// as seen inside it.
const OUTSIDE: &str = r#"set -eu
root=$1 w=$2
mount --make-rprivate /
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t tmpfs -o mode=0755,size=1m tmpfs "$root$w/bus"
exec chroot "$root" /bin/sh "$w/inside.sh" "$w"
"#;

/// Runs chrooted as the namespace's pid 1: records the root's glibc and
/// dbus-daemon, starts that dbus-daemon on the private config, activates
/// the planted service, polls `query` (bounded) until its row names the
/// service file, then runs `hunt`. Outputs go to $w/out for the test.
const INSIDE: &str = r#"set -eu
w=$1 out=$1/out
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
ldd --version | head -n 1 >"$out/glibc"
dbus-daemon --version | head -n 1 >"$out/dbus"
dbus-daemon --config-file="$w/bus.conf" --fork --print-pid=3 --print-address=4 \
  3>"$out/bus.pid" 4>"$out/bus.address"
bus=$(cat "$out/bus.pid")
trap 'kill "$bus" 2>/dev/null || true' EXIT
# The service never claims its name: the call would only time out, so it
# runs in the background (the namespace's end kills it).
dbus-send --bus="$(cat "$out/bus.address")" --print-reply --reply-timeout=30000 \
  --dest=org.example.Planted / org.freedesktop.DBus.Peer.Ping >/dev/null 2>&1 &
i=0
while :; do
  rc=0
  "$w/osquery-dbus" query --json "SELECT pid, parent, bus_pid, bus_daemon, bus, via, name, \
cmdline, service_file, unusual, reason FROM dbus_daemon_children" \
    >"$out/children.json" 2>"$out/children.err" || rc=$?
  echo "$rc" >"$out/children.rc"
  if [ "$rc" != 0 ] || grep -q "$w/services/org.example.Planted.service" "$out/children.json"; then
    break
  fi
  i=$((i + 1))
  [ "$i" -lt 100 ] || break
  sleep 0.1
done
rc=0
"$w/osquery-dbus" hunt --json >"$out/hunt.json" 2>"$out/hunt.err" || rc=$?
echo "$rc" >"$out/hunt.rc"
"#;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write_exec(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn shipped_binary_on_bullseye_sees_its_bus_child_and_hunts() {
    let Some((shipped, root)) = inputs() else {
        return;
    };
    let version = Command::new(&shipped).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("osquery-dbus {}\n", env!("CARGO_PKG_VERSION")),
        "{} is not this version's build: run scripts/build-shipped.sh",
        shipped.display()
    );

    // The work dir, inside the root: the same path seen from both sides.
    let work = tempfile::Builder::new()
        .prefix("osquery-dbus-test.")
        .tempdir_in(root.join("tmp"))
        .unwrap();
    let w = Path::new("/tmp").join(work.path().file_name().unwrap());
    let w = w.to_str().unwrap();
    let here = work.path();
    for dir in ["services", "bus", "out"] {
        std::fs::create_dir(here.join(dir)).unwrap();
    }
    std::fs::copy(&shipped, here.join("osquery-dbus")).unwrap();
    std::fs::write(here.join("inside.sh"), INSIDE).unwrap();
    write_exec(&here.join("planted.sh"), "#!/bin/sh\nsleep 300\n");
    let service_file = format!("{w}/services/{NAME}.service");
    std::fs::write(
        here.join(format!("services/{NAME}.service")),
        format!("[D-BUS Service]\nName={NAME}\nExec={w}/planted.sh one two\n"),
    )
    .unwrap();
    // A custom bus with the policy of every private test bus.
    std::fs::write(
        here.join("bus.conf"),
        common::bus::private_config(&format!("{w}/bus"), &format!("{w}/services"), ""),
    )
    .unwrap();

    let started = std::time::Instant::now();
    let run = Command::new("unshare")
        .args([
            "-m",
            "-p",
            "--fork",
            "--kill-child",
            "sh",
            "-c",
            OUTSIDE,
            "sh",
        ])
        .arg(&root)
        .arg(w)
        .output()
        .expect("run unshare");
    let elapsed = started.elapsed();
    let out = here.join("out");
    let file = |name: &str| read(&out.join(name));
    assert!(
        run.status.success(),
        "namespace run failed ({}): {}{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );

    // The root is what it claims: bullseye's glibc and dbus-daemon.
    let glibc = file("glibc");
    let dbus = file("dbus");
    assert!(glibc.trim_end().ends_with(" 2.31"), "glibc: {glibc}");
    assert!(dbus.contains(" 1.12."), "dbus-daemon: {dbus}");
    eprintln!(
        "bullseye: {} / {} ({:.1}s in the root)",
        glibc.trim(),
        dbus.trim(),
        elapsed.as_secs_f64()
    );

    // `query`: the planted service's process, with its service file.
    assert_eq!(
        file("children.rc").trim(),
        "0",
        "query failed: {}",
        file("children.err")
    );
    // `query --json` prints every cell as text.
    let bus_pid = file("bus.pid").trim().to_string();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&file("children.json")).unwrap();
    let row = rows
        .iter()
        .find(|r| r["service_file"] == service_file.as_str())
        .unwrap_or_else(|| {
            panic!(
                "no dbus_daemon_children row with {service_file}: {rows:#?}\n{}",
                file("children.err")
            )
        });
    assert_eq!(row["bus_pid"], bus_pid.as_str(), "{row:#}");
    assert_eq!(row["bus_daemon"], "dbus-daemon", "{row:#}");
    assert_eq!(row["bus"], "custom", "{row:#}");
    assert_eq!(row["via"], "babysitter", "{row:#}");
    assert_eq!(row["name"], "planted.sh", "{row:#}");
    assert_eq!(row["unusual"], "1", "{row:#}");

    // `hunt` over that root: it runs, finds the planted child (exit 1, the
    // documented code for findings) and no check failed.
    let hunt_rc = file("hunt.rc");
    let report: serde_json::Value = serde_json::from_str(&file("hunt.json"))
        .unwrap_or_else(|e| panic!("hunt --json (exit {hunt_rc}): {e}\n{}", file("hunt.err")));
    assert_eq!(hunt_rc.trim(), "1", "hunt: {}", file("hunt.err"));
    assert_eq!(report["found"], true);
    let checks = report["checks"].as_array().unwrap();
    let failed: Vec<&serde_json::Value> =
        checks.iter().filter(|c| c["status"] == "failed").collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
    let children = checks
        .iter()
        .find(|c| c["name"] == "unusual_dbus_daemon_children")
        .expect("the unusual_dbus_daemon_children check");
    assert_eq!(children["status"], "found", "{children:#}");
    assert!(
        children["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["service_file"] == service_file.as_str()),
        "{children:#}"
    );
}
