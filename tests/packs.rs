//! Pack SQL is written once and must run everywhere: these tests run every
//! built-in pack query through the real binary's embedded host, and hold the
//! Fleet YAML twins to the pack JSON they are generated from.
mod common;

use common::bus::{Bus, KillOnDrop, UsrLibDir};
use osquery_dbus::packs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_osquery-dbus");

#[test]
fn every_pack_query_parses_and_runs() {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(root.path().join("etc")).expect("mkdir");
    std::fs::write(
        root.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\n",
    )
    .expect("write");
    std::fs::write(root.path().join("etc/group"), "root:x:0:\n").expect("write");
    for pack in packs::builtin().expect("packs") {
        for (name, q) in &pack.queries {
            for args in [
                vec!["--root", root.path().to_str().expect("utf-8"), "query"],
                vec!["query"],
            ] {
                let out = Command::new(BIN)
                    .args(&args)
                    .arg("--json")
                    .arg(&q.query)
                    .output()
                    .expect("run query");
                assert!(
                    out.status.success(),
                    "{}/{name} failed ({args:?}): {}",
                    pack.name,
                    String::from_utf8_lossy(&out.stderr)
                );
                let rows: serde_json::Value =
                    serde_json::from_slice(&out.stdout).expect("JSON output");
                assert!(rows.is_array());
            }
        }
    }
}

#[test]
fn fleet_yaml_is_generated_from_the_pack_json() {
    for pack in packs::builtin().expect("packs") {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("packs/fleet")
            .join(format!("{}.yml", pack.name));
        let have = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            have == pack.to_fleet_yaml(),
            "{} is stale: run `cargo run -- packs --fleet > {}`",
            file.display(),
            file.display()
        );
        // Read back as YAML: every query present once, with the same SQL,
        // interval and logging mode as the JSON pack says.
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&have)
            .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML document"))
            .collect();
        assert_eq!(docs.len(), pack.queries.len());
        for doc in docs {
            assert_eq!(doc["apiVersion"].as_str(), Some("v1"));
            assert_eq!(doc["kind"].as_str(), Some("query"));
            let spec = &doc["spec"];
            let name = spec["name"].as_str().expect("name");
            let q = &pack.queries[name];
            assert_eq!(spec["query"].as_str().map(str::trim), Some(q.query.trim()));
            assert_eq!(
                spec["description"].as_str(),
                Some(q.fleet_description().as_str())
            );
            assert_eq!(spec["interval"].as_u64(), Some(q.interval));
            assert_eq!(spec["logging"].as_str(), Some(q.fleet_logging()));
            assert_eq!(spec["platform"].as_str(), Some("linux"));
        }
    }
}

#[test]
fn hunt_reports_and_exits_by_what_it_found() {
    let root = tempfile::tempdir().expect("tempdir");
    let r = root.path();
    std::fs::create_dir_all(r.join("etc")).expect("mkdir");
    std::fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").expect("write");
    std::fs::write(r.join("etc/group"), "root:x:0:\n").expect("write");
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .arg("--root")
            .arg(r)
            .arg("hunt")
            .args(extra)
            .output()
            .expect("run hunt")
    };
    let clean = run(&["--json"]);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&clean.stdout).expect("JSON");
    assert_eq!(report["found"], false);

    let dir = r.join("usr/share/dbus-1/system-services");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("org.example.New.service"), "[D-BUS Service]\n").expect("write");
    // The recent-changes query is info: found, but not a failing hunt
    // unless asked for.
    let below = run(&["--json", "--only", "dbus_files_changed_recently"]);
    assert_eq!(below.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&below.stdout).expect("JSON");
    assert_eq!(report["found"], false);
    assert_eq!(report["min_severity"], "medium");
    assert_eq!(report["checks"][0]["severity"], "info");
    assert_eq!(report["checks"][0]["status"], "found");
    let found = run(&[
        "--json",
        "--min-severity",
        "info",
        "--only",
        "dbus_files_changed_recently",
    ]);
    assert_eq!(found.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&found.stdout).expect("JSON");
    assert_eq!(report["found"], true);
    let checks = report["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0]["status"], "found");
    assert_eq!(
        checks[0]["rows"][0]["path"],
        "/usr/share/dbus-1/system-services/org.example.New.service"
    );

    let text = run(&[]);
    assert_eq!(text.status.code(), Some(0));
    let text = String::from_utf8(text.stdout).expect("utf-8");
    assert!(text.contains("Below --min-severity medium"), "{text}");
    assert!(
        text.contains("dbus_files_changed_recently [info]"),
        "{text}"
    );
    let text = run(&["--min-severity", "info"]);
    assert_eq!(text.status.code(), Some(1));
    let text = String::from_utf8(text.stdout).expect("utf-8");
    assert!(text.contains("FINDING [info] dbus-persistence/dbus_files_changed_recently"));
    assert!(text.contains("org.example.New.service"));

    // Most severe first.
    let all = run(&["--json", "--min-severity", "info"]);
    let report: serde_json::Value = serde_json::from_slice(&all.stdout).expect("JSON");
    let rank = |s: &str| match s {
        "high" => 2,
        "medium" => 1,
        _ => 0,
    };
    let ranks: Vec<i32> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| rank(c["severity"].as_str().expect("severity")))
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] >= w[1]), "{ranks:?}");
    assert_eq!(ranks.first(), Some(&2));

    let bad_pack = r.join("bad.conf");
    std::fs::write(
        &bad_pack,
        r#"{"queries":{"broken":{"query":"SELECT nope FROM nowhere","interval":60,"description":"d","value":"v"}}}"#,
    )
    .expect("write");
    let failed = run(&["--pack", bad_pack.to_str().expect("utf-8")]);
    assert_eq!(failed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&failed.stdout).contains("FAILED bad/broken"));
}

/// This machine's own files, as the packages installed them: nothing at
/// medium or above. Processes come from an empty /proc: concurrent test
/// runs on a shared builder activate throwaway services on private buses,
/// which the process queries rightly report.
#[test]
fn hunt_on_this_hosts_real_root_is_clean_at_medium() {
    let proc = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .arg("--proc")
        .arg(proc.path())
        .arg("hunt")
        .output()
        .expect("run hunt");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Runs SQL through the real binary's embedded host, rows as JSON objects.
fn query_json(args: &[&str], sql: &str) -> Vec<serde_json::Value> {
    let out = Command::new(BIN)
        .args(args)
        .args(["query", "--json", sql])
        .output()
        .expect("run query");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .expect("JSON")
        .as_array()
        .cloned()
        .expect("array")
}

fn pack_query(name: &str) -> String {
    packs::builtin()
        .expect("packs")
        .into_iter()
        .find_map(|p| p.queries.get(name).map(|q| q.query.clone()))
        .unwrap_or_else(|| panic!("no pack query {name}"))
}

#[test]
fn unusual_children_query_finds_the_planted_service_and_no_decoy() {
    let mut custom = Bus::custom();
    let mut session = Bus::session();
    let planted = custom.script("planted.sh", "sleep 300");
    custom.plant(
        "org.example.Planted",
        &format!("{} --beacon 10.0.0.1", planted.display()),
    );
    custom.activate("org.example.Planted");
    // Decoys: a known helper's name on the same bus, and the same kind of
    // script on a --session bus.
    let helper = custom.script("gnome-keyring-daemon", "sleep 300");
    custom.plant(
        "org.example.Keyring",
        &format!("{} --start --components=secrets", helper.display()),
    );
    custom.activate("org.example.Keyring");
    let on_session = session.script("session-tool.sh", "sleep 300");
    session.plant(
        "org.example.SessionTool",
        &format!("{} --one --two", on_session.display()),
    );
    session.activate("org.example.SessionTool");

    let ours = |row: &serde_json::Value| {
        let bus: u32 = row["bus_pid"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        bus == custom.pid() || bus == session.pid()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let live = query_json(
            &[],
            "SELECT pid, bus_pid, cmdline FROM dbus_daemon_children",
        );
        if live.iter().filter(|r| ours(r)).count() >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "activations never showed: {live:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let found: Vec<serde_json::Value> =
        query_json(&[], &pack_query("unusual_dbus_daemon_children"))
            .into_iter()
            .filter(|r| ours(r))
            .collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    let row = &found[0];
    assert!(row["cmdline"]
        .as_str()
        .unwrap_or("")
        .contains("planted.sh --beacon 10.0.0.1"));
    assert_eq!(row["bus_pid"], custom.pid().to_string());
    assert_eq!(row["bus"], "custom");
    assert_eq!(row["via"], "babysitter");
    assert_eq!(row["username"], "root", "joined from users");
    assert!(row["service_file"]
        .as_str()
        .unwrap_or("")
        .ends_with("org.example.Planted.service"));
    assert!(row["reason"]
        .as_str()
        .unwrap_or("")
        .contains("not a known helper"));

    // A dead box (--root) has no live processes: the analyst's own buses
    // must not leak into an image's findings.
    let image = tempfile::tempdir().expect("tempdir");
    let image_rows = query_json(
        &["--root", image.path().to_str().expect("utf-8")],
        "SELECT pid FROM dbus_daemon_children",
    );
    assert!(image_rows.is_empty(), "{image_rows:?}");
}

/// osquery strips whole-line `//` and `#` comments from config files
/// before parsing JSON (`stripConfigComments` in its config code); the
/// example must parse that way and load the pack the packages install.
#[test]
fn example_config_parses_as_osquery_reads_it() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("osquery.conf.example"))
            .expect("read example");
    let stripped: String = text
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.starts_with("//") && !t.starts_with('#')
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let conf: serde_json::Value =
        serde_json::from_str(&stripped).expect("valid JSON once comments go");
    let opts = &conf["options"];
    for key in [
        "extensions_autoload",
        "extensions_timeout",
        "extensions_interval",
    ] {
        assert!(opts[key].is_string(), "{key} missing");
    }
    let pack = conf["packs"]["dbus-persistence"]
        .as_str()
        .expect("pack path");
    assert!(pack.ends_with("/packs/dbus-persistence.conf"), "{pack}");
}

#[test]
fn activation_queries_find_the_escaped_payload_and_no_decoy() {
    let mut bus = Bus::custom();
    // Stage one detaches stage two into its own session and exits.
    let payload = bus.script(
        "payload.sh",
        "case \"$1\" in\n\
         start) setsid -f \"$0\" stage2 >/dev/null 2>&1; exit 0;;\n\
         stage2) sleep 291;;\n\
         esac",
    );
    bus.plant(
        "org.example.Escape",
        &format!("{} start", payload.display()),
    );
    bus.activate("org.example.Escape");
    // Decoys: a helper under /usr/lib that stays with its babysitter.
    let (_lib, helper) = UsrLibDir::with_helper();
    bus.plant("org.example.Helper", &format!("{} 292", helper.display()));
    bus.activate("org.example.Helper");

    let socket = bus.dir.path().join("bus.sock").display().to_string();
    let _sweep = Sweep(socket.clone());
    let ours = |r: &serde_json::Value| {
        r["bus_pid"].as_str() == Some(bus.pid().to_string().as_str())
            || r["bus_address"].as_str().unwrap_or("").contains(&socket)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sleepers = Vec::new();
    let stage2_pid = loop {
        let live = query_json(
            &[],
            "SELECT pid, bus_pid, bus_address, cmdline FROM dbus_activated_processes",
        );
        let stage2 = live.iter().find(|r| {
            ours(r)
                && r["cmdline"]
                    .as_str()
                    .unwrap_or("")
                    .contains("payload.sh stage2")
        });
        let helper_up = live
            .iter()
            .any(|r| ours(r) && r["cmdline"].as_str().unwrap_or("").contains("helper 292"));
        let sleeper = live
            .iter()
            .find(|r| ours(r) && r["cmdline"].as_str().unwrap_or("").contains("sleep 291"));
        if let (Some(s), true, Some(sl)) = (stage2, helper_up, sleeper) {
            // The sleeper left the bus's tree with stage two: kill it too.
            sleepers.push(KillOnDrop(
                sl["pid"]
                    .as_str()
                    .unwrap_or("0")
                    .parse::<u32>()
                    .unwrap_or(0),
            ));
            break s["pid"].as_str().unwrap_or("0").parse::<u32>().unwrap_or(0);
        }
        assert!(
            Instant::now() < deadline,
            "activations never showed: {live:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _stage2 = KillOnDrop(stage2_pid);

    let escaped: Vec<serde_json::Value> =
        query_json(&[], &pack_query("escaped_activated_processes"))
            .into_iter()
            .filter(|r| ours(r))
            .collect();
    assert_eq!(escaped.len(), 1, "{escaped:#?}");
    assert_eq!(escaped[0]["pid"], stage2_pid.to_string());
    assert_eq!(escaped[0]["via"], "starter_env");
    assert_eq!(escaped[0]["username"], "root");

    let outside: Vec<String> = query_json(&[], &pack_query("activated_outside_library_paths"))
        .into_iter()
        .filter(|r| ours(r))
        .map(|r| r["cmdline"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        outside.iter().any(|c| c.contains("payload.sh stage2")),
        "{outside:?}"
    );
    assert!(
        outside.iter().any(|c| c.contains("sleep 291")),
        "{outside:?}"
    );
    assert!(
        !outside.iter().any(|c| c.contains("helper 292")),
        "the /usr/lib helper is not a finding: {outside:?}"
    );
}

/// Kills, on drop (panics included), every process still carrying this
/// test bus's starter address: escaped payloads the bus's own teardown
/// cannot reach, however they were timed.
struct Sweep(String);

impl Drop for Sweep {
    fn drop(&mut self) {
        let rows = query_json(&[], "SELECT pid, bus_address FROM dbus_activated_processes");
        for r in rows {
            if r["bus_address"].as_str().unwrap_or("").contains(&self.0) {
                if let Some(pid) = r["pid"].as_str().and_then(|p| p.parse::<u32>().ok()) {
                    drop(KillOnDrop(pid));
                }
            }
        }
    }
}
