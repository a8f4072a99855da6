//! The running extension under abuse, load and a changing core: a fake core
//! (`tests/peer/fake_core.py hold`) keeps it registered while these tests
//! talk Thrift to its socket directly (`common::ext::Client`).
//!
//! Figures (RSS, descriptors, timings) are printed; run with `--nocapture`
//! to see them. `OSQUERY_DBUS_SOAK_CALLS` sets the soak's call count
//! (default 20,000; docs/reliability.md has a 100,000-call run).
mod common;

use common::ext::{fd_count, thread_count, vm_rss_kib, Client, Hold};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const CTX: &str = r#"{"constraints":[],"colsUsed":["path","service_name","exec","error"]}"#;
const IO: Duration = Duration::from_secs(30);

/// A root with `n` small service files.
fn root_with_services(n: usize) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("usr/share/dbus-1/system-services");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..n {
        std::fs::write(
            dir.join(format!("org.s{i}.service")),
            format!("[D-BUS Service]\nName=org.s{i}\nExec=/usr/libexec/s{i} --x\nUser=root\n"),
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

/// Writes `bytes` on a fresh connection (then half-closes it if asked) and
/// reads until the extension hangs up: the bytes received, or `None` if it
/// kept the connection open past 5 s.
fn raw(path: &Path, bytes: &[u8], half_close: bool) -> Option<Vec<u8>> {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server may hang up before reading everything: fine.
    let _ = s.write_all(bytes);
    if half_close {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => Some(got),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(got),
        Err(_) => None,
    }
}

fn tstring(b: &[u8]) -> Vec<u8> {
    let mut v = i32::try_from(b.len()).unwrap().to_be_bytes().to_vec();
    v.extend_from_slice(b);
    v
}

fn message(name: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = 0x8001_0001u32.to_be_bytes().to_vec();
    v.extend(tstring(name));
    v.extend(1i32.to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// Pings on fresh connections (as the core does) until stopped; returns
/// (pings, failures, slowest).
fn ping_until(
    path: PathBuf,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>, Duration)> {
    std::thread::spawn(move || {
        let (mut n, mut failures, mut slowest) = (0, Vec::new(), Duration::ZERO);
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let r = Client::connect(&path, Duration::from_secs(2))
                .map_err(|e| e.to_string())
                .and_then(|mut c| c.ping().map_err(|e| e.to_string()));
            slowest = slowest.max(t.elapsed());
            match r {
                Ok(0) => {}
                Ok(code) => failures.push(format!("code {code}")),
                Err(e) => failures.push(e),
            }
            n += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        (n, failures, slowest)
    })
}

fn settle_rss(pid: u32) -> u64 {
    std::thread::sleep(Duration::from_millis(500));
    vm_rss_kib(pid)
}

#[test]
fn abuse_leaves_it_serving_and_memory_returns_to_baseline() {
    let root = root_with_services(20);
    let (mut hold, ev) = Hold::start(root.path());
    let (sock, pid) = (socket_of(&ev), pid_of(&ev));

    // Warm-up, then the baseline.
    let mut c = Client::connect(&sock, IO).unwrap();
    for _ in 0..50 {
        assert_eq!(c.generate(CTX).unwrap().rows.len(), 20);
    }
    drop(c);
    let (rss0, fds0) = (settle_rss(pid), fd_count(pid));
    eprintln!(
        "baseline: VmRSS {rss0} KiB, {fds0} fds, {} threads",
        thread_count(pid)
    );

    // 200 concurrent generate calls, each on its own connection, while
    // pings go on.
    let stop = Arc::new(AtomicBool::new(false));
    let pinger = ping_until(sock.clone(), stop.clone());
    let barrier = Arc::new(Barrier::new(200));
    let peak_conns = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let (sock, barrier) = (sock.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(&sock, IO).expect("connect");
                barrier.wait();
                c.generate(CTX).map(|r| (r.code, r.rows.len()))
            })
        })
        .collect();
    let peak_threads = {
        let mut peak = 0;
        while !calls.iter().all(|h| h.is_finished()) {
            peak = peak.max(thread_count(pid));
            std::thread::sleep(Duration::from_millis(2));
        }
        peak
    };
    for h in calls {
        let r = h.join().unwrap();
        assert!(matches!(r, Ok((0, 20))), "{r:?}");
    }
    let conc = t0.elapsed();
    peak_conns.store(peak_threads, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let (pings, failures, slowest) = pinger.join().unwrap();
    eprintln!(
        "200 concurrent generates: {conc:?}; peak {peak_threads} threads; \
         {pings} pings alongside, slowest {slowest:?}, failures {failures:?}"
    );
    assert!(failures.is_empty(), "pings failed: {failures:?}");
    assert!(pings > 0);
    let rss_conc = vm_rss_kib(pid);

    // Garbage, truncated frames, half-closed connections; pings go on.
    let stop = Arc::new(AtomicBool::new(false));
    let pinger = ping_until(sock.clone(), stop.clone());
    let idle = UnixStream::connect(&sock).unwrap(); // says nothing, stays open
    let mut garbage = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    garbage.extend((0..=255u8).cycle().take(10_000));
    let call_start = {
        let mut b = b"\x0b\x00\x01".to_vec();
        b.extend(tstring(b"table"));
        message(b"call", &b)
    };
    let ping_msg = message(b"ping", b"\x00");
    for (what, bytes, half) in [
        ("garbage", garbage.clone(), false),
        ("garbage, half-closed", garbage, true),
        ("truncated header", ping_msg[..3].to_vec(), true),
        ("truncated call", call_start.clone(), true),
        (
            "truncated string",
            call_start[..call_start.len() - 2].to_vec(),
            true,
        ),
        ("nothing, half-closed", Vec::new(), true),
    ] {
        assert!(
            raw(&sock, &bytes, half).is_some(),
            "{what}: connection left open"
        );
    }
    // A whole request, then half-closed: answered, then hung up.
    let got = raw(&sock, &ping_msg, true).expect("half-closed ping: left open");
    assert!(got.len() > 12, "half-closed ping not answered: {got:?}");
    // A peer that vanishes mid-reply: 200 generates written, nothing read.
    {
        let mut s = UnixStream::connect(&sock).unwrap();
        let mut c = Client::connect(&sock, IO).unwrap();
        let _ = &mut c;
        let mut req = Vec::new();
        for _ in 0..200 {
            let mut body = b"\x0b\x00\x01".to_vec();
            body.extend(tstring(b"table"));
            body.extend(b"\x0b\x00\x02");
            body.extend(tstring(b"dbus_service_files"));
            body.extend(b"\x0d\x00\x03\x0b\x0b");
            body.extend(1i32.to_be_bytes());
            body.extend(tstring(b"action"));
            body.extend(tstring(b"generate"));
            body.push(0);
            req.extend(message(b"call", &body));
        }
        s.write_all(&req).unwrap();
        drop(s);
    }
    drop(idle);

    // A 100 MB string: read (under the 128 MiB cap), answered, forgotten.
    let big = "x".repeat(100 * 1024 * 1024);
    let mut c = Client::connect(&sock, IO).unwrap();
    let t = Instant::now();
    let r = c.generate(&big).unwrap();
    eprintln!(
        "100 MB context: answered in {:?}: {}",
        t.elapsed(),
        r.message
    );
    assert_eq!(r.code, 1, "{}", r.message);
    assert!(r.message.contains("JSON"), "{}", r.message);
    let r = c
        .call(&big, "dbus_service_files", &[("action", "generate")])
        .unwrap();
    assert_eq!(r.code, 1);
    drop(big);
    // The same connection still serves.
    assert_eq!(c.generate(CTX).unwrap().rows.len(), 20);
    drop(c);
    stop.store(true, Ordering::Relaxed);
    let (pings, failures, slowest) = pinger.join().unwrap();
    eprintln!("hostile bytes: {pings} pings alongside, slowest {slowest:?}");
    assert!(failures.is_empty(), "pings failed: {failures:?}");

    // Memory and descriptors come back.
    let mut c = Client::connect(&sock, IO).unwrap();
    assert_eq!(c.ping().unwrap(), 0);
    assert_eq!(c.generate(CTX).unwrap().rows.len(), 20);
    drop(c);
    let mut rss1 = settle_rss(pid);
    for _ in 0..10 {
        if rss1 < rss0 + 20 * 1024 {
            break;
        }
        rss1 = settle_rss(pid);
    }
    let fds1 = fd_count(pid);
    eprintln!(
        "after abuse: VmRSS {rss1} KiB (baseline {rss0}, after the 200 calls {rss_conc}), \
         {fds1} fds (baseline {fds0}), {} threads",
        thread_count(pid)
    );
    assert!(
        rss1 < rss0 + 20 * 1024,
        "VmRSS {rss1} KiB vs baseline {rss0}"
    );
    assert_eq!(fds1, fds0, "descriptor leak");

    // `shutdown`, then more calls: each fails cleanly or is answered, none
    // hangs, and the extension exits 0 and removes its socket.
    let mut c = Client::connect(&sock, IO).unwrap();
    c.shutdown().unwrap();
    let after: Vec<String> = (0..20)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            match Client::connect(&sock, Duration::from_secs(2)) {
                Ok(mut c) => match c.ping() {
                    Ok(code) => format!("ping {code}"),
                    Err(e) => format!("ping failed: {e}"),
                },
                Err(e) => format!("connect failed: {}", e.kind()),
            }
        })
        .collect();
    let same = c.ping().map_err(|e| e.to_string());
    eprintln!("calls after shutdown: {after:?}; on the same connection: {same:?}");
    let exit = hold.command("wait");
    assert_eq!(exit["exited"], true, "{exit}");
    assert_eq!(exit["returncode"], 0, "{exit}");
    assert_eq!(exit["socket_left"], false, "{exit}");
    let stderr = exit["stderr"].as_str().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn soak_generate_calls_without_growth_or_leaks() {
    let total: usize = std::env::var("OSQUERY_DBUS_SOAK_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    const CLIENTS: usize = 4;
    let root = root_with_services(5);
    let (_hold, ev) = Hold::start(root.path());
    let (sock, pid) = (socket_of(&ev), pid_of(&ev));
    let per_client = total / CLIENTS;
    let warm = (per_client / 10).max(250);
    let errors = Arc::new(Mutex::new(Vec::new()));
    let warmed = Arc::new(Barrier::new(CLIENTS + 1));
    let measured = Arc::new(Barrier::new(CLIENTS + 1));
    let t0 = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (sock, errors, warmed, measured) = (
                sock.clone(),
                errors.clone(),
                warmed.clone(),
                measured.clone(),
            );
            std::thread::spawn(move || {
                let mut c = Client::connect(&sock, IO).expect("connect");
                for i in 0..per_client {
                    if i == warm {
                        warmed.wait();
                        measured.wait();
                    }
                    match c.generate(CTX) {
                        Ok(r) if r.code == 0 && r.rows.len() == 5 => {}
                        other => errors.lock().unwrap().push(format!("{other:?}")),
                    }
                }
            })
        })
        .collect();
    warmed.wait();
    let (rss0, fds0) = (vm_rss_kib(pid), fd_count(pid));
    let t_warm = t0.elapsed();
    measured.wait();
    for h in clients {
        h.join().unwrap();
    }
    let elapsed = t0.elapsed();
    let (rss1, fds1) = (vm_rss_kib(pid), fd_count(pid));
    let calls = per_client * CLIENTS;
    eprintln!(
        "soak: {calls} generate calls over {CLIENTS} connections in {elapsed:?} \
         ({:.0}/s); warm-up {} calls in {t_warm:?}; VmRSS {rss0} -> {rss1} KiB \
         ({:+} KiB); fds {fds0} -> {fds1}",
        calls as f64 / elapsed.as_secs_f64(),
        warm * CLIENTS,
        rss1 as i64 - rss0 as i64,
    );
    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "{} failed calls, first {:?}",
        errors.len(),
        errors.first()
    );
    assert!(rss1 < rss0 + 1024, "VmRSS grew {rss0} -> {rss1} KiB");
    // The four client connections are closed by now; a thread may still be
    // tearing its one down.
    let mut fds_after = fd_count(pid);
    for _ in 0..50 {
        if fds_after <= fds0 - CLIENTS {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        fds_after = fd_count(pid);
    }
    assert_eq!(fds_after, fds0 - CLIENTS, "descriptor leak");
}

#[test]
fn core_restart_and_the_relaunched_extension_registers_again() {
    let root = root_with_services(3);
    let (mut hold, ev) = Hold::start(root.path());
    let sock = socket_of(&ev);
    assert_eq!(Client::connect(&sock, IO).unwrap().ping().unwrap(), 0);
    let gone = hold.command("die");
    assert_eq!(gone["exited"], true, "{gone}");
    assert_eq!(gone["returncode"], 0, "{gone}");
    assert!(gone["elapsed"].as_f64().unwrap() <= 2.0, "{gone}");
    assert_eq!(gone["socket_left"], false, "{gone}");
    // osqueryd restarts and relaunches its extensions.
    let again = hold.command("restart");
    assert_eq!(again["event"], "serving", "{again}");
    assert_eq!(again["registration"]["name"], "dbus");
    assert_eq!(again["registered_uuids"], serde_json::json!([7]));
    assert_ne!(again["pid"], ev["pid"]);
    let mut c = Client::connect(&socket_of(&again), IO).unwrap();
    assert_eq!(c.ping().unwrap(), 0);
    assert_eq!(c.generate(CTX).unwrap().rows.len(), 3);
    drop(c);
    let exit = hold.command("sigterm");
    assert_eq!(exit["returncode"], 0, "{exit}");
    assert_eq!(exit["socket_left"], false, "{exit}");
}

#[test]
fn sigterm_mid_query_exits_cleanly_and_removes_the_socket() {
    // Enough files that one generate with hashes takes a while.
    let root = root_with_services(20_000);
    let (mut hold, ev) = Hold::start(root.path());
    let sock = socket_of(&ev);
    let ctx = r#"{"constraints":[],"colsUsed":["path","sha256","exec_sha256","service_name"]}"#;
    let done = Arc::new(AtomicBool::new(false));
    let query = {
        let (sock, done) = (sock.clone(), done.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            let r = Client::connect(&sock, IO)
                .expect("connect")
                .generate(ctx)
                .map(|r| r.rows.len());
            done.store(true, Ordering::SeqCst);
            (r.map_err(|e| e.to_string()), t.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let mid = !done.load(Ordering::SeqCst);
    let exit = hold.command("sigterm");
    let (r, took) = query.join().unwrap();
    eprintln!("SIGTERM mid-query: exit {exit}; the query got {r:?} after {took:?}");
    assert!(
        mid,
        "the generate finished before the signal; make it slower"
    );
    assert_eq!(exit["exited"], true, "{exit}");
    assert_eq!(exit["returncode"], 0, "{exit}");
    // The lifecycle loop acts on a signal within 100 ms; the bound leaves a
    // loaded CI machine room while still failing a wait for the generate.
    assert!(exit["elapsed"].as_f64().unwrap() < 3.0, "{exit}");
    assert_eq!(exit["socket_left"], false, "{exit}");
    assert!(!exit["stderr"].as_str().unwrap().contains("panicked"));
}
