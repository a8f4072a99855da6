//! The running extension at its limits and at every edge of its lifecycle:
//! hundreds of idle or half-sent connections, a huge context, a core that
//! restarts and hands out our uuid again, a wedged core, hang-up signals,
//! and messages that are not calls. A fake core (`tests/peer/fake_core.py
//! hold`) keeps the extension registered; the tests talk Thrift (or raw
//! bytes) to its socket. Figures are printed (`--nocapture`) and recorded
//! in docs/reliability.md.
mod common;

use common::ext::{fd_count, thread_count, vm_rss_kib, Client, Hold};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CTX: &str = r#"{"constraints":[],"colsUsed":["path","service_name","exec","error"]}"#;
const IO: Duration = Duration::from_secs(30);

/// osquery's client gives a ping this long; a slower one deregisters us.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

fn root_with_services(n: usize) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("usr/share/dbus-1/system-services");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..n {
        std::fs::write(
            dir.join(format!("org.s{i}.service")),
            format!("[D-BUS Service]\nName=org.s{i}\nExec=/usr/libexec/s{i} --x\n"),
        )
        .unwrap();
    }
    tmp
}

fn socket_of(ev: &Value) -> PathBuf {
    PathBuf::from(ev["socket"].as_str().unwrap())
}

fn pid_of(ev: &Value) -> u32 {
    u32::try_from(ev["pid"].as_u64().unwrap()).unwrap()
}

/// `VmHWM` (peak resident set) of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A ping on a fresh connection, as the core sends one: its latency.
fn timed_ping(sock: &Path) -> Result<Duration, String> {
    let t = Instant::now();
    let code = Client::connect(sock, PING_TIMEOUT)
        .map_err(|e| e.to_string())?
        .ping()
        .map_err(|e| e.to_string())?;
    if code != 0 {
        return Err(format!("code {code}"));
    }
    Ok(t.elapsed())
}

fn tstring(b: &[u8]) -> Vec<u8> {
    let mut v = i32::try_from(b.len()).unwrap().to_be_bytes().to_vec();
    v.extend_from_slice(b);
    v
}

/// A strict-protocol message header of type `kind` (1 call, 2 reply,
/// 3 exception, 4 oneway) for method `name`, then `body`.
fn message(kind: u8, name: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80, 0x01, 0x00, kind];
    v.extend(tstring(name));
    v.extend(1i32.to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// Writes `bytes` on a fresh connection and reads until the extension
/// hangs up: the bytes received, or `None` if it kept the connection
/// open past 5 s.
fn exchange(path: &Path, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => Some(got),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(got),
        Err(_) => None,
    }
}

#[test]
fn six_hundred_idle_connections_do_not_keep_a_ping_out() {
    let root = root_with_services(5);
    let (_hold, ev) = Hold::start(root.path());
    let (sock, pid) = (socket_of(&ev), pid_of(&ev));
    let fds0 = fd_count(pid);
    // 300 connections that say nothing, 300 that stop inside a request.
    let t = Instant::now();
    let mut held = Vec::new();
    for i in 0..600 {
        let mut s = UnixStream::connect(&sock).unwrap();
        if i % 2 == 1 {
            s.write_all(&message(1, b"ping", &[])[..9]).unwrap();
        }
        held.push(s);
    }
    let opened = t.elapsed();
    let mut latencies = Vec::new();
    for _ in 0..20 {
        latencies.push(timed_ping(&sock).expect("ping among idle connections"));
    }
    // And a generate, which osquery sends after its ping.
    let mut c = Client::connect(&sock, PING_TIMEOUT * 5).unwrap();
    assert_eq!(c.generate(CTX).unwrap().rows.len(), 5);
    drop(c);
    latencies.sort();
    let threads = thread_count(pid);
    let fds = fd_count(pid);
    eprintln!(
        "600 idle/half-sent connections opened in {opened:?}; 20 pings: median {:?}, \
         slowest {:?}; extension: {threads} threads, {fds} fds",
        latencies[10], latencies[19]
    );
    assert!(latencies[19] < PING_TIMEOUT);
    // The cap held: one thread and one descriptor per served connection,
    // never one per connection opened.
    assert!(threads <= 512 + 64 + 8, "{threads} threads");
    assert!(fds <= fds0 + 512 + 64 + 2, "{fds} fds");
    drop(held);
    // Everything is given back once they go.
    let t = Instant::now();
    while fd_count(pid) > fds0 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(fd_count(pid), fds0, "descriptors left behind");
    assert!(timed_ping(&sock).is_ok());
    eprintln!("extension VmRSS after: {} KiB", vm_rss_kib(pid));
}
