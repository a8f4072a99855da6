//! `dbus_process_events` against a real private bus (never the host's): the
//! collector runs in this test process, as it does in the extension, and the
//! table is read through the registry. Needs root for the netlink process
//! connector (CI runs as root); the tests skip, saying why, only when the
//! kernel refuses it.
mod common;

use common::bus::Bus;
use osquery_dbus::context::{Op, QueryContext};
use osquery_dbus::row::{Row, Value};
use osquery_dbus::settings::Settings;
use osquery_dbus::sources::collect::{self, Collectors, State};
use osquery_dbus::tables::Registry;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// One test at a time: the burst test would otherwise load the machine
/// while another test times a single activation.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The collectors of this test binary, made and started once, as the
/// extension does.
fn collectors() -> &'static Arc<Collectors> {
    static HUB: OnceLock<Arc<Collectors>> = OnceLock::new();
    HUB.get_or_init(|| {
        let hub = Collectors::new(collect::Config {
            max_rows: 200_000,
            expiry: Duration::from_secs(3600),
        });
        hub.start(&Settings::default());
        hub
    })
}

/// The registry the extension would serve, reading [`collectors`].
fn registry() -> Registry {
    Registry::with_collectors(Settings::default(), Some(Arc::clone(collectors())))
        .expect("registry")
}

/// Starts the collector (once per test binary); `false` when the kernel
/// refused it, after printing why.
fn collecting() -> bool {
    match collectors().status(collect::PROCESS).map(|s| s.state) {
        Some(State::Running) => true,
        // Only a kernel without the connector (the socket itself refused)
        // skips; CI runs as root, so any other refusal is a failure.
        Some(State::Failed(why)) if why.contains("connector: socket:") => {
            eprintln!("SKIPPED: netlink process connector unavailable: {why}");
            false
        }
        other => panic!("process collector not running: {other:?}"),
    }
}

/// The table's rows, each held to the spec's columns.
fn rows() -> Vec<Row> {
    let registry = registry();
    let table = registry.get("dbus_process_events").expect("table");
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

/// Rows whose command line contains `needle`, once `want` of them have
/// exited (bounded wait).
fn wait_exited(needle: &str, want: usize, secs: u64) -> Vec<Row> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let found: Vec<Row> = rows()
            .into_iter()
            .filter(|r| matches!(r.get("cmdline"), Some(Value::Text(c)) if c.contains(needle)))
            .collect();
        let exited = found
            .iter()
            .filter(|r| r.get("exit_code").is_some())
            .count();
        if exited >= want || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asks the bus to start `name` and waits for the answer (an error: the
/// service exits without taking the name).
fn activate_and_wait(bus: &Bus, name: &str) {
    let status = Command::new("dbus-send")
        .arg(format!("--bus={}", bus.address))
        .args(["--print-reply", "--reply-timeout=20000"])
        .arg(format!("--dest={name}"))
        .args(["/", "org.freedesktop.DBus.Peer.Ping"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("dbus-send");
    assert!(!status.success(), "{name} was not expected to answer");
}

#[test]
fn a_service_that_exits_at_once_is_recorded() {
    let _serial = serial();
    if !collecting() {
        return;
    }
    let bus = Bus::custom();
    let marker = format!("quick-{}", std::process::id());
    // A non-zero exit makes the bus answer at once (after a zero exit it
    // waits for the name to appear, as for a daemon that forked).
    bus.plant("org.example.Quick", &format!("/bin/false {marker} x"));
    activate_and_wait(&bus, "org.example.Quick");
    let r = wait_activation(&bus);
    assert_eq!(int(&r, "bus_pid"), i64::from(bus.pid()));
    assert_eq!(text(&r, "via"), "babysitter");
    assert_eq!(text(&r, "bus"), "custom");
    assert_eq!(int(&r, "exit_code"), 1);
    let ms = int(&r, "duration_ms");
    assert!(ms < 10, "/bin/false ran {ms} ms");
    assert!(int(&r, "time") > 1_600_000_000);
    // The program columns come from /proc at exec time; on a loaded
    // machine the service can be gone first (the row then says so).
    if r.get("cmdline").is_none() {
        assert!(text(&r, "reason").contains("exited before /proc"), "{r:?}");
        eprintln!("note: /bin/false exited before the collector read /proc");
        return;
    }
    assert_eq!(text(&r, "name"), "false");
    assert_eq!(text(&r, "cmdline"), format!("/bin/false {marker} x"));
    assert_eq!(int(&r, "args_count"), 3);
    assert_eq!(int(&r, "unusual"), 1, "{r:?}");
}

/// The first activation of this bus whose exit is recorded (bounded wait).
fn wait_activation(bus: &Bus) -> Row {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let found = rows().into_iter().find(|r| {
            r.get("bus_pid") == Some(&Value::Integer(i64::from(bus.pid())))
                && r.get("kind") == Some(&Value::Text("activation".into()))
                && r.get("exit_code").is_some()
        });
        if let Some(r) = found {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no activation of bus {}",
            bus.pid()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dbus_send_runs_are_recorded_with_arguments() {
    let _serial = serial();
    if !collecting() {
        return;
    }
    let bus = Bus::custom();
    let marker = format!("string:send-{}", std::process::id());
    let _ = Command::new("dbus-send")
        .arg(format!("--bus={}", bus.address))
        .args(["--type=signal", "/org/example", "org.example.Iface.Hello"])
        .arg(&marker)
        .status()
        .expect("dbus-send");
    let found = wait_exited(&marker, 1, 8);
    let r = found
        .iter()
        .find(|r| r.get("kind") == Some(&Value::Text("client".into())))
        .unwrap_or_else(|| panic!("no client row for {marker}: {found:?}"));
    assert_eq!(text(r, "name"), "dbus-send");
    assert_eq!(text(r, "path"), "/usr/bin/dbus-send");
    assert!(text(r, "cmdline").ends_with(&format!("org.example.Iface.Hello {marker}")));
    assert_eq!(int(r, "args_count"), 6);
    assert_eq!(int(r, "exit_code"), 0);
    assert_eq!(r.get("bus_pid"), None);
    assert!(int(r, "pid") > 0);
    // `time >` is applied in the table: a bound past the row drops it.
    let mut ctx = QueryContext::new();
    ctx.add_constraint("time", Op::Gt, int(r, "time").to_string());
    let later = registry()
        .generate("dbus_process_events", &ctx)
        .expect("table");
    assert!(!later.iter().any(|l| l.get("pid") == r.get("pid")));
}

/// CPU seconds the collector thread has used so far.
fn collector_cpu() -> Option<f64> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        if !stat.contains("(dbus_process_ev)") {
            continue;
        }
        let after = stat.rsplit_once(") ")?.1;
        let f: Vec<&str> = after.split(' ').collect();
        let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        return Some(ticks / 100.0);
    }
    None
}

/// As many real activations as the bus does in about 8 s (up to 1000),
/// from four sequential clients on four names: none may be missing.
#[test]
fn many_quick_activations_none_lost() {
    let _serial = serial();
    if !collecting() {
        return;
    }
    let bus = Bus::custom();
    let tag = format!("burst-{}", std::process::id());
    const CLIENTS: usize = 4;
    const MAX: usize = 1000;
    for c in 0..CLIENTS {
        bus.plant(
            &format!("org.example.Burst{c}"),
            &format!("/bin/false {tag}-{c}"),
        );
    }
    let cpu_before = collector_cpu();
    let start = Instant::now();
    let budget = Duration::from_secs(8);
    let counts: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let bus = &bus;
                s.spawn(move || {
                    let mut n = 0;
                    while n < MAX / CLIENTS && start.elapsed() < budget {
                        activate_and_wait(bus, &format!("org.example.Burst{c}"));
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    let elapsed = start.elapsed();
    let total: usize = counts.iter().sum();
    // Every activation is a row of this bus; a service already gone when
    // the collector read /proc has no command line, so count by bus.
    let deadline = Instant::now() + Duration::from_secs(10);
    let activations = loop {
        let a: Vec<Row> = rows()
            .into_iter()
            .filter(|r| {
                r.get("bus_pid") == Some(&Value::Integer(i64::from(bus.pid())))
                    && r.get("kind") == Some(&Value::Text("activation".into()))
            })
            .collect();
        if a.len() >= total || Instant::now() >= deadline {
            break a;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let overruns = collectors().status(collect::PROCESS).map_or(0, |s| s.lost);
    assert_eq!(
        activations.len(),
        total,
        "activations recorded of {total} ({overruns} kernel overruns)"
    );
    let with_args = activations
        .iter()
        .filter(|r| matches!(r.get("cmdline"), Some(Value::Text(c)) if c.contains(&tag)))
        .count();
    let exited = activations
        .iter()
        .filter(|r| r.get("exit_code") == Some(&Value::Integer(1)))
        .count();
    assert_eq!(exited, total, "every activation's exit recorded");
    let cpu = match (cpu_before, collector_cpu()) {
        (Some(a), Some(b)) => format!("{:.2} s", b - a),
        _ => "unknown".into(),
    };
    eprintln!(
        "{total} activations in {:.2} s ({:.0}/s), {} recorded, {with_args} with arguments, {overruns} overruns, collector CPU {cpu}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        activations.len()
    );
    assert!(total >= 100, "only {total} activations in {elapsed:?}");
}

/// Cells of a pack query's result, run by the embedded host in this process
/// (where the collector runs), as text.
fn pack_rows(name: &str) -> Vec<std::collections::HashMap<String, String>> {
    let sql = osquery_dbus::packs::builtin()
        .expect("packs")
        .into_iter()
        .find_map(|p| p.queries.get(name).map(|q| q.query.clone()))
        .expect("pack query");
    let host = osquery_dbus::hosts::sqlite::EmbeddedHost::open(Arc::new(registry())).expect("host");
    let result = host.query(&sql).expect("query");
    result
        .rows
        .iter()
        .map(|row| {
            result
                .columns
                .iter()
                .zip(row)
                .map(|(c, v)| (c.clone(), v.to_osquery_string().unwrap_or_default()))
                .collect()
        })
        .collect()
}

#[test]
fn pack_query_lists_activations_and_client_runs() {
    let _serial = serial();
    if !collecting() {
        return;
    }
    let bus = Bus::custom();
    let marker = format!("pack-{}", std::process::id());
    bus.plant("org.example.Pack", &format!("/bin/false {marker}"));
    activate_and_wait(&bus, "org.example.Pack");
    wait_exited(&marker, 1, 8);
    let rows = pack_rows("dbus_activations_and_client_runs");
    let bus_pid = bus.pid().to_string();
    assert!(
        rows.iter()
            .any(|r| r["kind"] == "activation" && r["bus_pid"] == bus_pid),
        "activation missing"
    );
    assert!(
        rows.iter()
            .any(|r| r["kind"] == "client" && r["cmdline"].contains("org.example.Pack")),
        "the activating dbus-send run missing"
    );
}

#[test]
fn a_session_bus_activation_is_not_unusual() {
    let _serial = serial();
    if !collecting() {
        return;
    }
    let bus = Bus::session();
    let marker = format!("session-{}", std::process::id());
    bus.plant("org.example.Sess", &format!("/bin/false {marker} x"));
    activate_and_wait(&bus, "org.example.Sess");
    let r = wait_activation(&bus);
    assert_eq!(text(&r, "bus"), "session");
    assert_eq!(text(&r, "kind"), "activation");
    if r.get("cmdline").is_some() {
        assert_eq!(int(&r, "unusual"), 0, "{r:?}");
        assert!(text(&r, "reason").contains("--session"), "{r:?}");
    }
}

/// A bus that activates through `<servicehelper>` (as the system bus runs
/// `dbus-daemon-launch-helper`): the helper execs the service in its own
/// pid, so the service's row says `via = launch_helper`, and the helper's
/// exec is a row of its own naming the service.
#[test]
fn a_launch_helper_activation_says_so() {
    let _serial = serial();
    if !collecting() {
        return;
    }
    let mut bus = Bus::with_launch_helper();
    let marker = format!("helped-{}", std::process::id());
    let gate = bus.plant_helped("org.example.Helped", &format!("/bin/false {marker} x"));
    bus.activate("org.example.Helped");
    // The helper waits on its gate, so its exec is read while it is the
    // helper (a helper that execs the service first is not told apart).
    let is_helper = |r: &Row| {
        r.get("bus_pid") == Some(&Value::Integer(i64::from(bus.pid())))
            && r.get("name") == Some(&Value::Text("dbus-daemon-launch-helper".into()))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rows().iter().any(is_helper) {
        assert!(Instant::now() < deadline, "no launch helper row");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(&gate, "go\n").expect("open the gate");
    let service = wait_activation(&bus);
    let of_bus: Vec<Row> = rows()
        .into_iter()
        .filter(|r| r.get("bus_pid") == service.get("bus_pid"))
        .collect();
    let helper = of_bus
        .iter()
        .find(|r| is_helper(r))
        .unwrap_or_else(|| panic!("no launch helper row: {of_bus:?}"));
    assert_eq!(
        int(helper, "pid"),
        int(&service, "pid"),
        "one pid, two execs"
    );
    assert_eq!(text(helper, "via"), "babysitter");
    assert!(
        text(helper, "cmdline").ends_with("/dbus-daemon-launch-helper org.example.Helped"),
        "{helper:?}"
    );
    assert_eq!(
        helper.get("exit_code"),
        None,
        "the helper exec'd, never exited"
    );
    assert_eq!(text(&service, "via"), "launch_helper", "{service:?}");
    assert_eq!(int(&service, "parent"), int(helper, "parent"));
    assert_eq!(int(&service, "exit_code"), 1);
    assert_eq!(of_bus.len(), 2, "{of_bus:?}");
    if service.get("cmdline").is_some() {
        assert_eq!(text(&service, "cmdline"), format!("/bin/false {marker} x"));
        assert_eq!(text(&service, "name"), "false");
    } else {
        eprintln!("note: /bin/false exited before the collector read /proc");
    }
}

/// Subscribing while the host keeps forking: events that reach the socket
/// before the kernel's acknowledgement must not hide it.
#[test]
fn the_connector_subscribes_while_processes_start() {
    use osquery_dbus::sources::proc_connector::Connector;
    let _serial = serial();
    if !collecting() {
        return;
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = Command::new("/bin/true").status();
                }
            });
        }
        std::thread::sleep(Duration::from_millis(100));
        for i in 0..300 {
            if let Err(e) = Connector::open(Duration::from_millis(100)) {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                panic!("subscription {i}: {e}");
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

/// Two collectors in one process record independently: a second handle,
/// started beside the first, sees the same activation in its own buffer
/// (its own registry's table shows it), and a registry without collectors
/// shows nothing.
#[test]
fn two_collectors_in_one_process_are_independent() {
    let _serial = serial();
    if !collecting() {
        return;
    }
    let second = Collectors::new(collect::Config::default());
    second.start(&Settings::default());
    assert_eq!(
        second.status(collect::PROCESS).map(|s| s.state),
        Some(State::Running)
    );
    let bus = Bus::custom();
    let marker = format!("twice-{}", std::process::id());
    bus.plant("org.example.Twice", &format!("/bin/false {marker}"));
    activate_and_wait(&bus, "org.example.Twice");
    let ours = |r: &Row| r.get("bus_pid") == Some(&Value::Integer(i64::from(bus.pid())));
    let of = |registry: &Registry| -> Vec<Row> {
        registry
            .generate("dbus_process_events", &QueryContext::new())
            .expect("table")
            .into_iter()
            .filter(ours)
            .collect()
    };
    let mine = Registry::with_collectors(Settings::default(), Some(Arc::clone(&second)))
        .expect("registry");
    let deadline = Instant::now() + Duration::from_secs(10);
    while (of(&mine).is_empty() || of(&registry()).is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(of(&mine).len(), 1, "the second collector's row");
    assert_eq!(of(&registry()).len(), 1, "the first collector's row");
    let none = Registry::new(Settings::default()).expect("registry");
    assert!(of(&none).is_empty(), "no collector, no rows");
    // Each buffer holds only what its own collector recorded since it
    // started: the second one missed what came before.
    let first_total = collectors()
        .status(collect::PROCESS)
        .map_or(0, |s| s.buffered);
    let second_total = second.status(collect::PROCESS).map_or(0, |s| s.buffered);
    assert!(
        second_total <= first_total,
        "{second_total} > {first_total}"
    );
}
