//! The connection columns (`stdio`, `remote_addresses`, `listening`,
//! `connections_note`) of both process tables over a fixture `/proc` (for
//! `--proc`): descriptors as links, sockets found by inode in the
//! process's own `net/*` tables (hex IPv4 and IPv6 words, TCP states,
//! connected and bound UDP), a process past the descriptor cap, and a
//! process whose socket tables are missing.
mod common;

use common::cli::{cell, query_rows, JsonRow};
use common::procfs::{process, write, P};
use std::os::unix::fs::symlink;
use std::path::Path;

const TCP_HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
const UDP_HEADER: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n";
const UNIX_HEADER: &str = "Num       RefCount Protocol Flags    Type St Inode Path\n";

fn tcp_line(local: &str, remote: &str, st: &str, inode: u64) -> String {
    format!("   0: {local} {remote} {st} 00000000:00000000 00:00000000 00000000     0        0 {inode} 1 0000000000000000 20 4 30 10 -1\n")
}

fn fds(proc: &Path, pid: u32, links: &[(u32, &str)]) {
    let dir = proc.join(pid.to_string()).join("fd");
    std::fs::create_dir_all(&dir).expect("mkdir fd");
    for (n, target) in links {
        symlink(target, dir.join(n.to_string())).expect("fd link");
    }
}

fn fixture() -> tempfile::TempDir {
    let proc = tempfile::tempdir().expect("tempdir");
    let p = proc.path();
    write(&p.join("stat"), b"cpu 1\nbtime 1700000000\n");
    let bus = P {
        pid: 100,
        ppid: 1,
        comm: b"dbus-daemon",
        args: &["dbus-daemon", "--session", "--address=unix:path=/run/u/bus"],
        exe: "/usr/bin/dbus-daemon",
        uid: 1000,
        start: 2,
        environ: "",
    };
    process(p, &bus, Some(&[200, 300, 400]));
    // A reverse shell: stdin and stdout one IPv4 TCP connection, a tcp6
    // listener and a connected UDP socket besides.
    let shell = P {
        pid: 200,
        ppid: 100,
        comm: b"bash",
        args: &["bash", "-i"],
        exe: "/usr/bin/bash",
        uid: 1000,
        start: 3,
        environ: "",
    };
    process(p, &shell, Some(&[]));
    fds(
        p,
        200,
        &[
            (0, "socket:[5001]"),
            (1, "socket:[5001]"),
            (2, "/dev/null"),
            (3, "socket:[6001]"),
            (4, "socket:[7001]"),
            (5, "socket:[7002]"),
            (6, "socket:[8001]"),
            (7, "socket:[9999]"),
        ],
    );
    let net = p.join("200/net");
    write(
        &net.join("tcp"),
        format!(
            "{TCP_HEADER}{}{}{}",
            // 10.0.0.5:4444 <- 10.0.0.2:40000, established.
            tcp_line("0200000A:9C40", "0500000A:115C", "01", 5001),
            // Another process's listener on 0.0.0.0:22: not this one's.
            tcp_line("00000000:0016", "00000000:0000", "0A", 5500),
            tcp_line("0200000A:9C41", "0500000A:115C", "06", 0),
        )
        .as_bytes(),
    );
    write(
        &net.join("tcp6"),
        format!(
            "{TCP_HEADER}{}",
            // [::]:8080 listening.
            tcp_line(
                "00000000000000000000000000000000:1F90",
                "00000000000000000000000000000000:0000",
                "0A",
                6001
            ),
        )
        .as_bytes(),
    );
    write(
        &net.join("udp"),
        format!(
            "{UDP_HEADER}\
  1: 0200000A:D431 08080808:0035 01 00000000:00000000 00:00000000 00000000  1000        0 7001 2 0000000000000000 0\n\
  2: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 7002 2 0000000000000000 0\n"
        )
        .as_bytes(),
    );
    write(
        &net.join("unix"),
        format!("{UNIX_HEADER}0000000000000000: 00000002 00000000 00000000 0001 03 8001\n")
            .as_bytes(),
    );
    // An ordinary service: pipes and a terminal, no sockets.
    let quiet = P {
        pid: 300,
        ppid: 100,
        comm: b"quiet-svc",
        args: &["/usr/libexec/quiet-svc"],
        exe: "/usr/libexec/quiet-svc",
        uid: 1000,
        start: 4,
        environ: "",
    };
    process(p, &quiet, Some(&[]));
    fds(
        p,
        300,
        &[(0, "pipe:[11]"), (1, "/dev/pts/3"), (2, "/var/log/q.log")],
    );
    // Past the descriptor cap, with no socket tables at all, stdin closed.
    let many = P {
        pid: 400,
        ppid: 100,
        comm: b"hoarder",
        args: &["/usr/libexec/hoarder"],
        exe: "/usr/libexec/hoarder",
        uid: 1000,
        start: 5,
        environ: "",
    };
    process(p, &many, Some(&[]));
    let links: Vec<(u32, String)> = (1..1500)
        .map(|n| (n, format!("socket:[{}]", 90000 + n)))
        .collect();
    let links: Vec<(u32, &str)> = links.iter().map(|(n, t)| (*n, t.as_str())).collect();
    fds(p, 400, &links);
    proc
}

fn rows(proc: &Path, table: &str) -> Vec<JsonRow> {
    query_rows(
        Some(proc),
        None,
        &format!(
            "SELECT pid, stdio, remote_addresses, listening, connections_note FROM {table} ORDER BY pid"
        ),
    )
}

#[test]
fn descriptors_and_sockets_by_inode_in_both_tables() {
    let proc = fixture();
    for table in ["dbus_daemon_children", "dbus_activated_processes"] {
        let rows = rows(proc.path(), table);
        let pids: Vec<String> = rows.iter().map(|r| cell(r, "pid")).collect();
        assert_eq!(pids, ["200", "300", "400"], "{table}");
        let shell = &rows[0];
        assert_eq!(cell(shell, "stdio"), "0=socket:tcp 1=socket:tcp 2=null");
        assert_eq!(
            cell(shell, "remote_addresses"),
            "8.8.8.8:53 10.0.0.5:4444",
            "established TCP and connected UDP, sorted; TIME_WAIT and others' sockets left out"
        );
        assert_eq!(cell(shell, "listening"), "tcp:[::]:8080 udp:0.0.0.0:5353");
        assert_eq!(cell(shell, "connections_note"), "");

        let quiet = &rows[1];
        assert_eq!(
            cell(quiet, "stdio"),
            "0=pipe 1=tty:/dev/pts/3 2=file:/var/log/q.log"
        );
        assert_eq!(cell(quiet, "remote_addresses"), "");
        assert_eq!(cell(quiet, "listening"), "");
        assert_eq!(cell(quiet, "connections_note"), "");

        let many = &rows[2];
        assert_eq!(
            cell(many, "stdio"),
            "0=closed 1=socket:other 2=socket:other",
            "sockets no table holds"
        );
        let note = cell(many, "connections_note");
        assert!(
            note.contains("more than 1024 descriptors"),
            "the cap is said: {note}"
        );
    }
}

#[test]
fn the_check_flags_the_socket_shell_only() {
    let proc = fixture();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_osquery-dbus"))
        .arg("--proc")
        .arg(proc.path())
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
    let pids: Vec<String> = check["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["pid"].to_string().trim_matches('"').to_string())
        .collect();
    assert_eq!(pids, ["200"], "{check}");
}
