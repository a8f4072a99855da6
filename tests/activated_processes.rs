//! `dbus_activated_processes` against a real private bus (never the host's):
//! a planted service whose script starts a `setsid` grandchild and exits
//! must still be attributed through the starter environment, with the
//! bus's socket and guid; a benign child of an activated service that
//! stays put is not escaped. Also through the binary, and as an
//! unprivileged user (environ unreadable: the query still answers).
mod common;

use common::bus::{Bus, KillOnDrop};
use common::cli::{cell, query_rows, JsonRow};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_osquery-dbus");
const COLS: &str = "pid, parent, via, bus, bus_address, bus_pid, service_name, \
service_file, depth, escaped, unusual, suspicious, reason, cmdline";

fn query(sql: &str) -> Vec<JsonRow> {
    query_rows(None, None, sql)
}

/// Polls (bounded) until every needle has a row whose cmdline holds it.
fn wait_for(needles: &[&str]) -> Vec<JsonRow> {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let rows = query(&format!("SELECT {COLS} FROM dbus_activated_processes"));
        if needles
            .iter()
            .all(|n| rows.iter().any(|r| cell(r, "cmdline").contains(n)))
        {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "no rows for {needles:?}: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn row<'a>(rows: &'a [JsonRow], needle: &str) -> &'a JsonRow {
    rows.iter()
        .find(|r| cell(r, "cmdline").contains(needle))
        .unwrap_or_else(|| panic!("no {needle}"))
}

#[test]
fn a_setsid_grandchild_is_attributed_through_its_environment() {
    let mut bus = Bus::custom();
    // Stage one daemonizes stage two into a session of its own and exits,
    // so stage two is re-parented; stage two keeps a child.
    let payload = bus.script(
        "payload.sh",
        "case \"$1\" in\n\
         start) setsid -f \"$0\" stage2 >/dev/null 2>&1; exit 0;;\n\
         stage2) sleep 297;;\n\
         esac",
    );
    let evil = bus.plant(
        "org.example.Escape",
        &format!("{} start", payload.display()),
    );
    let benign = bus.script("benign.sh", "sleep 298 &\nwait");
    let kept = bus.plant("org.example.Stay", &benign.display().to_string());
    bus.activate("org.example.Escape");
    bus.activate("org.example.Stay");
    let rows = wait_for(&["payload.sh stage2", "sleep 297", "benign.sh", "sleep 298"]);
    let socket = bus.dir.path().join("bus.sock");

    let stage2 = row(&rows, "payload.sh stage2");
    let pid: u32 = cell(stage2, "pid").parse().expect("pid");
    // Killed on teardown with the bus's tree is not enough: it left it.
    let _guard = KillOnDrop(pid);
    assert_eq!(cell(stage2, "via"), "starter_env");
    assert_eq!(cell(stage2, "escaped"), "1");
    assert_eq!(cell(stage2, "bus"), "custom");
    let address = cell(stage2, "bus_address");
    assert!(
        address.starts_with(&format!("unix:path={},guid=", socket.display())),
        "{address}"
    );
    assert_eq!(cell(stage2, "bus_pid"), bus.pid().to_string());
    assert_eq!(cell(stage2, "service_file"), evil.display().to_string());
    assert_eq!(cell(stage2, "service_name"), "org.example.Escape");
    assert_eq!(cell(stage2, "suspicious"), "1");
    assert_ne!(cell(stage2, "parent"), bus.pid().to_string());

    let sleeper = row(&rows, "sleep 297");
    let _guard2 = KillOnDrop(cell(sleeper, "pid").parse().expect("pid"));
    assert_eq!(cell(sleeper, "via"), "starter_env");
    assert_eq!(cell(sleeper, "parent"), pid.to_string());
    assert_eq!(cell(sleeper, "escaped"), "0");

    let service = row(&rows, "benign.sh");
    assert_eq!(
        cell(service, "via"),
        "babysitter",
        "as dbus_daemon_children says"
    );
    assert_eq!(cell(service, "depth"), "0");
    assert_eq!(cell(service, "escaped"), "0");
    assert_eq!(cell(service, "service_file"), kept.display().to_string());
    assert_eq!(
        cell(service, "bus_address"),
        format!("unix:path={}", socket.display())
    );
    let child = row(&rows, "sleep 298");
    assert_eq!(cell(child, "via"), "babysitter", "its root's");
    assert_eq!(cell(child, "depth"), "1");
    assert_eq!(cell(child, "escaped"), "0");
    assert_eq!(cell(child, "parent"), cell(service, "pid"));

    // depth 0 through a bus daemon is exactly dbus_daemon_children, with
    // the same via and bus.
    let same = query(&format!(
        "SELECT a.pid FROM dbus_activated_processes a JOIN dbus_daemon_children c USING (pid) \
         WHERE a.pid = {} AND a.via = c.via AND a.bus = c.bus",
        cell(service, "pid")
    ));
    assert_eq!(same.len(), 1);

    // Not root: environ of root's processes is unreadable; the query
    // answers (the service rows still come through their parentage).
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args([
            "query",
            "--json",
            "SELECT pid, via FROM dbus_activated_processes",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("setpriv");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<JsonRow> = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        rows.iter().all(|r| cell(r, "via") != "starter_env"),
        "{rows:?}"
    );
    assert!(rows.iter().any(|r| cell(r, "pid") == cell(service, "pid")));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("starter_env evidence unavailable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
