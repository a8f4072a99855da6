//! `osquery-dbus watch` run as a user would: a child process streaming JSON
//! lines, stopped with SIGTERM. Needs root for the process connector; skips,
//! saying why, only when the kernel refuses it.
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `osquery-dbus watch --table dbus_process_events` and its
/// JSON lines.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn start() -> Watch {
        let mut child = Command::new(env!("CARGO_BIN_EXE_osquery-dbus"))
            .args(["watch", "--table", "dbus_process_events"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start watch");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watch {
            child,
            lines,
            reader: Some(reader),
        }
    }

    fn pid(&self) -> rustix::process::Pid {
        rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid")
    }

    fn signal(&self, sig: rustix::process::Signal) {
        rustix::process::kill_process(self.pid(), sig).expect("signal watch");
    }

    /// Stops the process and waits (bounded) until every one of its
    /// threads is stopped: `kill` returns before a thread busy in the
    /// kernel (the collector, reading `/proc`) has actually stopped.
    fn stop_all_threads(&self) {
        self.signal(rustix::process::Signal::STOP);
        let tasks = format!("/proc/{}/task", self.pid().as_raw_nonzero());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stopped = std::fs::read_dir(&tasks).expect("task dir").all(|t| {
                let stat = std::fs::read_to_string(t.expect("task").path().join("stat"))
                    .unwrap_or_default();
                // The state is the field after the parenthesised comm.
                matches!(
                    stat.rsplit_once(')')
                        .map(|(_, rest)| rest.trim_start().chars().next()),
                    Some(Some('T' | 't'))
                )
            });
            if stopped {
                return;
            }
            assert!(Instant::now() < deadline, "watch did not stop");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// `None` while it runs; its stderr once it has exited.
    fn exited(&mut self) -> Option<String> {
        self.child.try_wait().ok().flatten()?;
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        Some(err)
    }

    /// The first `exit` line for which `want` holds, within `wait`.
    fn find_exit(
        &self,
        wait: Duration,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let until = Instant::now() + wait;
        while let Ok(line) = self
            .lines
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
            assert_eq!(v["table"], "dbus_process_events", "{line}");
            if v["event"] == "exit" && want(&v) {
                return Some(v);
            }
        }
        None
    }

    /// Runs a failing `dbus-send` with `marker` until its run streams (the
    /// collector subscribes shortly after start); `None` (after saying
    /// why) where the kernel has no process connector.
    fn ready(&mut self, marker: &str) -> Option<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline {
            if let Some(err) = self.exited() {
                // Skip only where the kernel has no connector at all; any
                // other refusal is a failure.
                if err.contains("Protocol not supported") || err.contains("EPROTONOSUPPORT") {
                    eprintln!("SKIPPED: {err}");
                    return None;
                }
                panic!("watch exited early: {err}");
            }
            let _ = failing_dbus_send(marker).wait();
            let seen = self.find_exit(Duration::from_millis(300), |v| {
                v["cmdline"].as_str().is_some_and(|c| c.contains(marker))
            });
            if seen.is_some() {
                return seen;
            }
        }
        panic!("no dbus-send run with {marker} streamed");
    }

    /// SIGTERM, and the exit status (bounded wait).
    fn stop(mut self) -> std::process::ExitStatus {
        self.signal(rustix::process::Signal::TERM);
        let stop = Instant::now() + Duration::from_secs(3);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > stop {
                let _ = self.child.kill();
                panic!("watch ignored SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        status
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real `dbus-send` that fails at once: its bus does not exist.
fn failing_dbus_send(marker: &str) -> Child {
    Command::new("dbus-send")
        .args([
            "--bus=unix:path=/nonexistent/osquery-dbus-test",
            "/",
            "a.b.C",
        ])
        .arg(marker)
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-send")
}

#[test]
fn watch_streams_client_runs_as_json_lines_until_sigterm() {
    let mut watch = Watch::start();
    let marker = format!("string:watch-{}", std::process::id());
    let Some(v) = watch.ready(&marker) else {
        return;
    };
    assert_eq!(v["kind"], "client");
    assert_eq!(v["name"], "dbus-send");
    assert_eq!(v["args_count"], 5);
    assert_eq!(v["exit_code"], 1);
    let status = watch.stop();
    assert!(status.success(), "{status}");
}

/// A client whose `/proc` entry is gone before the collector reads it:
/// the watch process is stopped (SIGSTOP) while a real `dbus-send` runs,
/// fails and is reaped, so on SIGCONT the collector handles an exec whose
/// process no longer exists. The row comes from the fanotify exec mark on
/// the client binary.
#[test]
fn a_client_gone_before_proc_is_read_is_still_recorded() {
    let mut watch = Watch::start();
    let ready = format!("string:ready-{}", std::process::id());
    if watch.ready(&ready).is_none() {
        return;
    }
    watch.stop_all_threads();
    let mut client = failing_dbus_send(&format!("string:gone-{}", std::process::id()));
    let pid = client.id();
    let status = client.wait().expect("wait dbus-send");
    assert_eq!(status.code(), Some(1));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "dbus-send {pid} still in /proc"
    );
    watch.signal(rustix::process::Signal::CONT);
    let v = watch
        .find_exit(Duration::from_secs(5), |v| v["pid"] == pid)
        .unwrap_or_else(|| panic!("no row for the vanished dbus-send {pid}"));
    assert_eq!(v["kind"], "client", "{v}");
    assert_eq!(v["name"], "dbus-send", "{v}");
    assert_eq!(v["path"], "/usr/bin/dbus-send", "{v}");
    assert_eq!(v["exit_code"], 1, "{v}");
    assert_eq!(v["cmdline"], serde_json::Value::Null, "{v}");
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("arguments unknown")),
        "{v}"
    );
    assert!(v["parent"].as_u64().is_some(), "{v}");
    let status = watch.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn watch_refuses_a_table_that_is_not_evented() {
    let out = Command::new(env!("CARGO_BIN_EXE_osquery-dbus"))
        .args(["watch", "--table", "dbus_service_files"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an evented table"));
}

/// In a user namespace other than the initial one the kernel ignores a
/// connector subscription without an error; the collector notices the
/// missing acknowledgement and says so, and a query of the table still
/// succeeds (with no rows).
#[test]
fn a_refused_connector_is_reported_not_silent() {
    let probe = Command::new("unshare").args(["-U", "-r", "true"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: cannot create a user namespace here");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_osquery-dbus");
    let out = Command::new("unshare")
        .args(["-U", "-r", bin, "watch", "--table", "dbus_process_events"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did not acknowledge"), "{err}");
    let out = Command::new("unshare")
        .args(["-U", "-r", bin, "query", "--json"])
        .arg("SELECT * FROM dbus_process_events")
        .output()
        .expect("run");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}
