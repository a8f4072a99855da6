//! `dbus_process_events` through a running extension, as osquery reads it:
//! the real binary registered with the Python fake core (osquery's own
//! Thrift code), its collector running in the extension process, a real
//! `dbus-send` run and a real activation on a private bus, then Thrift
//! `call`s of the table's `generate`, with and without a `time >`
//! constraint. Needs root (CI runs as root) for the process connector.
mod common;

use common::bus::Bus;
use common::ext::{Client, Hold};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type Row = BTreeMap<String, String>;

fn generate(c: &mut Client, context: &str) -> Vec<Row> {
    let r = c
        .call(
            "table",
            "dbus_process_events",
            &[("action", "generate"), ("context", context)],
        )
        .expect("call");
    assert_eq!(r.code, 0, "{}", r.message);
    r.rows
}

/// Polls (bounded) until `pick` finds a row that has exited.
fn wait_row(c: &mut Client, what: &str, pick: impl Fn(&Row) -> bool) -> Row {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = generate(c, r#"{"constraints":[],"colsUsed":[]}"#);
        if let Some(r) = rows
            .into_iter()
            .find(|r| pick(r) && r.contains_key("exit_code"))
        {
            return r;
        }
        assert!(Instant::now() < deadline, "no row for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn time_gt(t: i64) -> String {
    format!(
        r#"{{"constraints":[{{"name":"time","list":[{{"op":4,"expr":"{t}"}}],"affinity":"BIGINT"}}],"colsUsed":["time","pid"]}}"#
    )
}

#[test]
fn events_flow_through_a_running_extension() {
    // The extension reads the live host: root `/`, so `/proc` is the host's.
    let (_hold, ev) = Hold::start(Path::new("/"));
    let sock = PathBuf::from(ev["socket"].as_str().expect("socket"));
    let ext_pid = ev["pid"].as_u64().expect("pid");
    let mut c = Client::connect(&sock, Duration::from_secs(10)).expect("connect");
    assert_eq!(c.ping().expect("ping"), 0);

    let bus = Bus::custom();
    let marker = format!("ext-{}", std::process::id());
    bus.plant("org.example.ExtEvents", &format!("/bin/false {marker} x"));
    // The collector subscribes as the extension starts; a first run may
    // come before it does, so run the client until its row is there.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (client_pid, client) = loop {
        let child = Command::new("dbus-send")
            .arg(format!("--bus={}", bus.address))
            .args(["--print-reply", "--reply-timeout=20000"])
            .arg("--dest=org.example.ExtEvents")
            .args(["/", "org.freedesktop.DBus.Peer.Ping"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-send");
        let pid = child.id().to_string();
        let status = child.wait_with_output().expect("wait").status;
        assert!(!status.success(), "the service was not expected to answer");
        let rows = generate(&mut c, r#"{"constraints":[],"colsUsed":[]}"#);
        if rows.iter().any(|r| r.get("pid") == Some(&pid)) {
            break (
                pid.clone(),
                wait_row(&mut c, "dbus-send", |r| r.get("pid") == Some(&pid)),
            );
        }
        assert!(
            Instant::now() < deadline,
            "no dbus-send row from the extension (pid {ext_pid})"
        );
    };
    assert_eq!(client["kind"], "client", "{client:?}");
    assert_eq!(client["name"], "dbus-send");
    assert!(
        client["cmdline"].contains("--dest=org.example.ExtEvents"),
        "{client:?}"
    );
    assert_eq!(client["exit_code"], "1", "{client:?}");

    let bus_pid = bus.pid().to_string();
    let service = wait_row(&mut c, "the activation", |r| {
        r.get("bus_pid") == Some(&bus_pid)
            && r.get("kind").map(String::as_str) == Some("activation")
    });
    assert_eq!(service["via"], "babysitter", "{service:?}");
    assert_eq!(service["bus"], "custom");
    assert_eq!(service["exit_code"], "1");
    assert_ne!(service["pid"], client_pid);
    if let Some(cmdline) = service.get("cmdline") {
        assert_eq!(cmdline, &format!("/bin/false {marker} x"));
        assert_eq!(service["name"], "false");
    }

    // `time >` reaches the table through osquery's context: a bound at a
    // row's time drops it, one just below keeps it.
    let t: i64 = client["time"].parse().expect("time");
    let later = generate(&mut c, &time_gt(t));
    assert!(
        !later.iter().any(|r| r.get("pid") == Some(&client_pid)),
        "time > {t} kept a row of time {t}"
    );
    assert!(later.iter().all(|r| r["time"].parse::<i64>().unwrap() > t));
    let since = generate(&mut c, &time_gt(t - 1));
    assert!(since.iter().any(|r| r.get("pid") == Some(&client_pid)));
}
