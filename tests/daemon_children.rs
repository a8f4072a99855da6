//! `dbus_daemon_children` against real bus daemons that the test starts with
//! its own config files and service directories (never the host's buses):
//! a custom-config bus and a `--session` bus, activating planted services
//! with `dbus-send`. Every daemon, activation client and activated service is
//! killed on teardown, panics included.
mod common;

use common::bus::{Bus, UsrLibDir};
use osquery_dbus::context::QueryContext;
use osquery_dbus::row::{Row, Value};
use osquery_dbus::settings::Settings;
use osquery_dbus::tables::Registry;
use std::time::{Duration, Instant};

const NAME: &str = "org.example.Planted";

fn table() -> Vec<Row> {
    Registry::new(Settings::default())
        .expect("registry")
        .generate("dbus_daemon_children", &QueryContext::new())
        .expect("table")
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

/// Polls the table (bounded) for a row of this bus whose command line
/// mentions `needle`.
fn wait_for_row(bus: &Bus, needle: &str) -> Row {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let rows = table();
        if let Some(r) = rows.into_iter().find(|r| {
            r.get("bus_pid") == Some(&Value::Integer(i64::from(bus.pid())))
                && matches!(r.get("cmdline"), Some(Value::Text(c)) if c.contains(needle))
        }) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no row for {needle} under bus {}",
            bus.pid()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn planted_script_is_unusual_on_a_custom_bus() {
    let mut bus = Bus::custom();
    let script = bus.script("planted.sh", "sleep 300");
    let service = bus.plant(NAME, &format!("{} one two", script.display()));
    bus.activate(NAME);
    let r = wait_for_row(&bus, "planted.sh");
    assert_eq!(int(&r, "bus_pid"), i64::from(bus.pid()));
    assert_eq!(text(&r, "via"), "babysitter");
    assert_eq!(text(&r, "bus_daemon"), "dbus-daemon");
    assert_eq!(text(&r, "bus"), "custom");
    assert_eq!(text(&r, "name"), "planted.sh");
    assert_eq!(text(&r, "service_file"), service.display().to_string());
    assert_eq!(int(&r, "unusual"), 1, "{}", text(&r, "reason"));
    assert_eq!(int(&r, "on_disk"), 1);
    assert!(int(&r, "start_time") > 1_600_000_000);
    assert_ne!(
        int(&r, "parent"),
        i64::from(bus.pid()),
        "the babysitter is the parent"
    );

    // pid pushdown finds the very same row.
    let mut ctx = QueryContext::new();
    ctx.add_constraint(
        "pid",
        osquery_dbus::context::Op::Eq,
        int(&r, "pid").to_string(),
    );
    let reg = Registry::new(Settings::default()).expect("registry");
    let again = reg.generate("dbus_daemon_children", &ctx).expect("table");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].get("cmdline"), r.get("cmdline"));
    assert_eq!(again[0].get("via"), r.get("via"));

    // The bus and its babysitter are not rows.
    let parent = int(&r, "parent");
    assert!(table()
        .iter()
        .all(|x| x.get("pid") != Some(&Value::Integer(parent))
            && x.get("pid") != Some(&Value::Integer(i64::from(bus.pid())))));
}

#[test]
fn planted_script_is_not_unusual_on_a_session_bus() {
    let mut bus = Bus::session();
    let script = bus.script("planted.sh", "sleep 300");
    let service = bus.plant(NAME, &format!("{} one two", script.display()));
    bus.activate(NAME);
    let r = wait_for_row(&bus, "planted.sh");
    assert_eq!(text(&r, "via"), "babysitter");
    assert_eq!(text(&r, "bus"), "session");
    assert_eq!(text(&r, "service_file"), service.display().to_string());
    assert_eq!(int(&r, "unusual"), 0);
    assert!(text(&r, "reason").contains("--session"));
}

#[test]
fn excepted_helper_name_is_not_unusual() {
    let mut bus = Bus::custom();
    let script = bus.script("gnome-keyring-daemon", "sleep 300");
    bus.plant(NAME, &format!("{} --start --foreground", script.display()));
    bus.activate(NAME);
    let r = wait_for_row(&bus, "gnome-keyring-daemon");
    assert_eq!(
        text(&r, "name"),
        "gnome-keyring-daemon",
        "completed from the truncated comm"
    );
    assert_eq!(int(&r, "unusual"), 0, "{}", text(&r, "reason"));
    assert!(text(&r, "reason").contains("known helper"));
}

#[test]
fn executable_under_usr_lib_is_not_unusual() {
    let (_dir, helper) = UsrLibDir::with_helper();
    let mut bus = Bus::custom();
    bus.plant(NAME, &format!("{} 300 1", helper.display()));
    bus.activate(NAME);
    let r = wait_for_row(&bus, "helper 300 1");
    assert_eq!(text(&r, "path"), helper.display().to_string());
    assert_eq!(int(&r, "args_count"), 3);
    assert_eq!(int(&r, "unusual"), 0, "{}", text(&r, "reason"));
    assert!(text(&r, "reason").contains("library path"));
    assert_eq!(text(&r, "exe_sha256").len(), 64);
    drop(bus);
}

#[test]
fn a_service_that_exits_leaves_no_error() {
    let mut bus = Bus::custom();
    let quick = bus.script("quick.sh", "exit 0");
    bus.plant(NAME, &format!("{} a b", quick.display()));
    let stay = bus.script("stay.sh", "sleep 300");
    bus.plant("org.example.Stay", &format!("{} c d", stay.display()));
    bus.activate(NAME);
    bus.activate("org.example.Stay");
    // The staying service proves activation happened; the quick one is gone.
    let _ = wait_for_row(&bus, "stay.sh");
    // Every scan answers while it exits; once gone, it is simply not listed.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows = table();
        let quick_alive = rows.iter().any(|r| {
            matches!(r.get("cmdline"), Some(Value::Text(c)) if c.contains("quick.sh"))
                && r.get("state") != Some(&Value::Text("Z".into()))
        });
        if !quick_alive {
            break;
        }
        assert!(Instant::now() < deadline, "quick.sh never exited");
        std::thread::sleep(Duration::from_millis(50));
    }
}
