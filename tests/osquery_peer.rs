//! The extension against a real Thrift peer: `tests/peer/fake_core.py`, a
//! stand-in osquery core built from osquery's own generated Python bindings.
//! The script plays one scenario and reports what it saw as JSON; every
//! expectation lives here. The expected routes come from reading
//! `tables/*.toml` directly (not through the crate's spec code), so a drift
//! between spec and registration fails.
mod common;

use serde_json::{json, Value};
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

const PLANTED: &str = "/usr/share/dbus-1/system-services/planted.service";
const PLANTED_UID: u32 = 4242;
const PLANTED_GID: u32 = 4343;
const PLANTED_MTIME: u64 = 1_600_000_000;
/// The `--interval` the scenarios pass; exits must come within it plus 1 s.
const INTERVAL: f64 = 1.0;

/// A rootfs holding one planted service file with known owner and mtime.
fn planted_root(dir: &Path) {
    let file = dir.join(PLANTED.trim_start_matches('/'));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        &file,
        "[D-BUS Service]\nName=org.example.Planted\nExec=/tmp/.x/payload --daemon\nUser=root\n",
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    chown(&file, Some(PLANTED_UID), Some(PLANTED_GID)).expect("chown (tests run as root)");
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(PLANTED_MTIME);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/bash\nplanter:x:4242:4343::/home/planter:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\nplanters:x:4343:\n").unwrap();
}

/// The binary under test: the one cargo built.
const BIN: &str = env!("CARGO_BIN_EXE_osquery-dbus");

/// Runs one scenario of the fake core and returns its observations.
fn scenario(name: &str, root: Option<&Path>) -> Value {
    scenario_with(BIN, name, root)
}

/// Runs one scenario against any extension binary (an installed package's).
fn scenario_with(bin: &str, name: &str, root: Option<&Path>) -> Value {
    let python = common::peer_python();
    let work = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(python);
    cmd.arg(common::peer_script("fake_core.py"))
        .arg(name)
        .arg("--bin")
        .arg(bin)
        .arg("--workdir")
        .arg(work.path());
    if let Some(root) = root {
        cmd.arg("--root").arg(root);
    }
    let out = cmd.output().expect("run fake core");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scenario {name} failed ({}):\n{stderr}",
        out.status
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("scenario {name} printed no JSON ({e}):\n{stderr}"))
}

/// osquery's option bits, restated here on purpose.
fn option_bit(name: &str) -> u32 {
    match name {
        "index" => 1,
        "required" => 2,
        "additional" => 4,
        "optimized" => 8,
        "hidden" => 16,
        other => panic!("unknown option {other} in a spec"),
    }
}

/// Route rows for one spec file, as osquery's `TablePlugin::routes` has them.
fn expected_routes(spec_file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tables")
        .join(spec_file);
    let spec: toml::Value = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let routes: Vec<Value> = spec["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let bits = c
                .get("options")
                .and_then(|o| o.as_array())
                .map(|o| o.iter().map(|n| option_bit(n.as_str().unwrap())).sum())
                .unwrap_or(0u32);
            json!({
                "id": "column",
                "name": c["name"].as_str().unwrap(),
                "type": c["type"].as_str().unwrap(),
                "op": bits.to_string(),
            })
        })
        .collect();
    Value::Array(routes)
}

/// Every table the specs say osquery may host, and those it must not get.
fn spec_tables() -> (Vec<String>, Vec<String>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tables");
    let (mut hosted, mut embedded) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let spec: toml::Value = toml::from_str(&text).unwrap();
        let name = spec["name"].as_str().unwrap().to_string();
        let embedded_only = spec
            .get("embedded_only")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        if embedded_only {
            embedded.push(name);
        } else {
            hosted.push(name);
        }
    }
    hosted.sort();
    (hosted, embedded)
}

fn code(v: &Value) -> i64 {
    v["status"]["code"].as_i64().unwrap_or(-1)
}

fn assert_failed_with_message(obs: &Value, what: &str) {
    assert_eq!(code(&obs[what]), 1, "{what}: {}", obs[what]);
    let msg = obs[what]["status"]["message"].as_str().unwrap_or("");
    assert!(!msg.is_empty(), "{what} has no message");
}

fn assert_exited_cleanly(exit: &Value, within: f64, what: &str) {
    assert_eq!(exit["exited"], true, "{what}: still running: {exit}");
    assert_eq!(exit["returncode"], 0, "{what}: {exit}");
    let elapsed = exit["elapsed"].as_f64().unwrap();
    assert!(
        elapsed <= within,
        "{what}: took {elapsed:.2}s (limit {within}s)"
    );
    if let Some(left) = exit.get("socket_left") {
        assert_eq!(left, false, "{what}: <socket>.<uuid> left behind");
    }
}

fn rows_with_path<'a>(resp: &'a Value, path: &str) -> Vec<&'a Value> {
    resp["response"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"] == path)
        .collect()
}

#[test]
fn serves_a_real_core_end_to_end() {
    serves_end_to_end(BIN);
}

/// The installed package's extension passes the same end-to-end scenario
/// (registration as `dbus` with the crate's version, ping, generate, …).
/// `scripts/package-check.sh` runs it after `dpkg -i`:
/// `OSQUERY_DBUS_EXT_BIN=/usr/lib/osquery-dbus/dbus.ext cargo test --test
/// osquery_peer -- --ignored installed_package`.
#[test]
#[ignore = "needs an installed package; run by scripts/package-check.sh"]
fn installed_package() {
    let bin = std::env::var("OSQUERY_DBUS_EXT_BIN")
        .unwrap_or_else(|_| "/usr/lib/osquery-dbus/dbus.ext".to_string());
    assert_ne!(
        Path::new(&bin).canonicalize().ok(),
        Path::new(BIN).canonicalize().ok(),
        "OSQUERY_DBUS_EXT_BIN names the freshly built binary, not a package's"
    );
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("osquery-dbus {}\n", env!("CARGO_PKG_VERSION")),
        "{bin} --version"
    );
    serves_end_to_end(&bin);
}

fn serves_end_to_end(bin: &str) {
    let root = tempfile::tempdir().unwrap();
    planted_root(root.path());
    let obs = scenario_with(bin, "main", Some(root.path()));

    // Registration: who we are, and exactly the spec's routes.
    let reg = &obs["registration"];
    assert_eq!(reg["info"]["name"], "dbus");
    assert_eq!(reg["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(reg["info"]["min_sdk_version"], "0.0.0");
    assert!(!reg["info"]["sdk_version"].as_str().unwrap().is_empty());
    let registry = reg["registry"].as_object().unwrap();
    assert_eq!(registry.keys().collect::<Vec<_>>(), ["table"]);
    let tables = registry["table"].as_object().unwrap();
    let (hosted, embedded) = spec_tables();
    let mut registered: Vec<String> = tables.keys().cloned().collect();
    registered.sort();
    assert_eq!(registered, hosted);
    for name in ["users", "groups"] {
        assert!(embedded.iter().any(|e| e == name));
        assert!(!tables.contains_key(name), "{name} must not be registered");
    }
    let routes = expected_routes("dbus_service_files.toml");
    assert_eq!(tables["dbus_service_files"], routes);

    // Calls.
    assert_eq!(obs["ping"]["code"], 0);
    assert_eq!(obs["ping"]["message"], "OK");
    assert_eq!(obs["ping"]["uuid"], 7);
    assert_eq!(code(&obs["columns"]), 0);
    assert_eq!(obs["columns"]["response"], routes);
    for what in [
        "unknown_table",
        "embedded_table",
        "unknown_registry",
        "unknown_action",
        "bad_context",
    ] {
        assert_failed_with_message(&obs, what);
    }
    assert!(obs["bad_context"]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("JSON"));
    assert_eq!(code(&obs["generate_constrained"]), 0);
    assert_eq!(code(&obs["generate_all"]), 0);

    // Hostile bytes close their own connection and nothing else.
    for (what, result) in obs["hostile"].as_object().unwrap() {
        assert_eq!(result["closed"], true, "{what}: connection left open");
    }
    assert_eq!(obs["after_hostile"]["alive"], true);
    assert_eq!(obs["after_hostile"]["ping"]["code"], 0);
    assert_eq!(code(&obs["after_hostile"]["generate"]), 0);

    // A half-sent request and busy generates never hold up a ping.
    let conc = &obs["concurrency"];
    let pings = conc["pings"].as_array().unwrap();
    assert_eq!(pings.len(), 10);
    for p in pings {
        assert_eq!(p["code"], 0, "ping during a pending request: {p}");
    }
    let gens = conc["generates"].as_array().unwrap();
    assert!(!gens.is_empty());
    assert!(gens.iter().all(|c| c == 0), "{gens:?}");

    // The core dies: we exit 0 within the interval (+1 s) and clean up.
    assert_exited_cleanly(&obs["core_gone"], INTERVAL + 1.0, "core gone");

    // --verbose logs calls.
    let stderr = obs["stderr"].as_str().unwrap();
    assert!(stderr.contains("call table/dbus_service_files"), "{stderr}");

    // Rows: needs the dbus_service_files table (branch service-files).
    let rows = rows_with_path(&obs["generate_constrained"], PLANTED);
    assert_eq!(
        rows.len(),
        1,
        "constrained generate: {}",
        obs["generate_constrained"]
    );
    assert_eq!(rows[0]["uid"], PLANTED_UID.to_string());
    assert_eq!(rows[0]["mtime"], PLANTED_MTIME.to_string());
    let names: Vec<&str> = routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for key in rows[0].as_object().unwrap().keys() {
        assert!(
            names.contains(&key.as_str()),
            "row carries non-spec column {key}"
        );
    }
    let all = rows_with_path(&obs["generate_all"], PLANTED);
    assert_eq!(
        all.len(),
        1,
        "unconstrained generate: {}",
        obs["generate_all"]
    );
    assert_eq!(all[0]["gid"], PLANTED_GID.to_string());
}

#[test]
fn sigterm_exits_cleanly_and_removes_the_socket() {
    let obs = scenario("sigterm", None);
    assert_eq!(obs["ping"]["code"], 0);
    // --interval is 5 here: a signal must not wait for the liveness check.
    assert_exited_cleanly(&obs["exit"], 1.0, "SIGTERM");
}

#[test]
fn shutdown_call_exits_cleanly() {
    let obs = scenario("shutdown", None);
    assert_exited_cleanly(&obs["exit"], 1.0, "shutdown()");
}

#[test]
fn waits_for_the_core_and_retries_duplicate_registration() {
    let obs = scenario("duplicate", None);
    assert_eq!(
        obs["alive_before_core"], true,
        "gave up before the core appeared"
    );
    assert_eq!(obs["attempts"], 3, "two duplicates, then success");
    for gap in obs["gaps"].as_array().unwrap() {
        let gap = gap.as_f64().unwrap();
        assert!((0.1..1.0).contains(&gap), "retry gap {gap:.3}s");
    }
    assert_eq!(obs["registration"]["info"]["name"], "dbus");
    assert_eq!(obs["ping"]["code"], 0);
    assert_exited_cleanly(&obs["exit"], 1.0, "SIGTERM after retries");
}

#[test]
fn no_core_is_a_clear_nonzero_exit_after_the_timeout() {
    let obs = scenario("nocore", None);
    let exit = &obs["exit"];
    assert_eq!(exit["exited"], true, "{exit}");
    assert_ne!(exit["returncode"], 0);
    let elapsed = exit["elapsed"].as_f64().unwrap();
    // --timeout 2: kept trying for about that long, then gave up.
    assert!(
        (1.5..=3.0).contains(&elapsed),
        "gave up after {elapsed:.2}s"
    );
    let stderr = obs["stderr"].as_str().unwrap();
    assert!(stderr.contains("no osquery core answered"), "{stderr}");
    assert!(stderr.contains("core.sock"), "{stderr}");
}

#[test]
fn refused_registration_fails_at_once() {
    let obs = scenario("refused", None);
    let exit = &obs["exit"];
    assert_eq!(exit["exited"], true, "{exit}");
    assert_ne!(exit["returncode"], 0);
    assert!(exit["elapsed"].as_f64().unwrap() < 1.5, "{exit}");
    assert_eq!(obs["attempts"], 1, "a refusal is not retried");
    let stderr = obs["stderr"].as_str().unwrap();
    assert!(stderr.contains("Table name conflicts"), "{stderr}");
}

#[test]
fn exits_when_the_core_forgets_us() {
    let obs = scenario("deregistered", None);
    assert_eq!(obs["ping"]["code"], 0);
    assert_eq!(obs["checked_while_listed"], true);
    assert_eq!(obs["alive_while_listed"], true, "exited while still listed");
    assert_eq!(obs["core_still_listening"], true);
    assert_exited_cleanly(&obs["exit"], INTERVAL + 1.0, "uuid dropped");
}

/// A root of `n` service files spread over the system directory and 40
/// homes, one name shadowed, one `Exec=` not ASCII.
fn many_services_root(dir: &Path, n: usize) {
    let put = |inner: &str, body: &str| {
        let p = dir.join(inner);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    };
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    for u in 0..40 {
        passwd += &format!("u{u}:x:{}:{}::/home/u{u}:/bin/sh\n", 2000 + u, 2000 + u);
    }
    put("etc/passwd", &passwd);
    for i in 0..n {
        let name = format!("org.many.S{i}");
        let body = format!("[D-BUS Service]\nName={name}\nExec=/usr/libexec/s{i} --n {i}\n");
        let path = if i % 4 == 0 {
            format!("usr/share/dbus-1/services/{name}.service")
        } else {
            format!(
                "home/u{}/.local/share/dbus-1/services/{name}.service",
                i % 40
            )
        };
        put(&path, &body);
    }
    put(
        "usr/local/share/dbus-1/services/org.many.S0.service",
        "[D-BUS Service]\nName=org.many.S0\nExec=/opt/é/s0\n",
    );
}

/// A generate of every column over a thousand-odd files, as a real Thrift
/// peer decodes it, carries exactly the embedded host's rows: the rows
/// packed while the table runs (several chunks of them here) come out
/// whole, none lost or doubled, every cell as the embedded host shows it
/// (which prints NULL as an empty string, where osquery leaves the key out).
#[test]
fn a_large_generate_of_every_column_matches_the_embedded_host() {
    let root = tempfile::tempdir().unwrap();
    many_services_root(root.path(), 1_500);
    let query = || {
        Command::new(BIN)
            .arg("--root")
            .arg(root.path())
            .args(["query", "--json", "SELECT * FROM dbus_service_files"])
            .output()
            .unwrap()
    };
    // One scan first, as the handler's byte comparison does: a first
    // listing may move a directory's atime, and both hosts must see the
    // same metadata.
    query();
    let embedded = query();
    assert!(embedded.status.success(), "{embedded:?}");
    let embedded: Vec<serde_json::Map<String, Value>> =
        serde_json::from_slice(&embedded.stdout).unwrap();
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(common::peer_python())
        .arg(common::peer_script("fake_core.py"))
        .args(["generate", "--bin", BIN, "--context", "{}", "--workdir"])
        .arg(work.path())
        .arg("--root")
        .arg(root.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let obs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(code(&obs), 0, "{obs}");
    let streamed = obs["response"].as_array().unwrap();
    assert_eq!(streamed.len(), 1_501);
    assert_eq!(streamed.len(), embedded.len());
    let by_path = |row: &serde_json::Map<String, Value>| row["path"].as_str().unwrap().to_string();
    let mut want: std::collections::BTreeMap<String, _> =
        embedded.iter().map(|r| (by_path(r), r)).collect();
    assert_eq!(want.len(), embedded.len(), "duplicate paths");
    let mut shadowed = 0;
    for row in streamed {
        let row = row.as_object().unwrap();
        let expected = want
            .remove(&by_path(row))
            .unwrap_or_else(|| panic!("extra or doubled row {row:?}"));
        for key in row.keys() {
            assert!(expected.contains_key(key), "non-spec column {key}");
        }
        for (column, value) in expected {
            let got = row.get(column).and_then(Value::as_str).unwrap_or("");
            assert_eq!(got, value.as_str().unwrap(), "{column} of {row:?}");
        }
        shadowed += usize::from(row.contains_key("shadowed_by"));
    }
    assert!(want.is_empty(), "rows missing: {:?}", want.keys());
    assert_eq!(shadowed, 1);
}

/// The bytes of one `call` asking for a generate of every column of
/// `dbus_service_files`, as a client writes them.
fn generate_all_request() -> Vec<u8> {
    use thrift::protocol::{
        TBinaryOutputProtocol, TFieldIdentifier, TMapIdentifier, TMessageIdentifier, TMessageType,
        TOutputProtocol, TStructIdentifier, TType,
    };
    let mut o = TBinaryOutputProtocol::new(Vec::new(), true);
    o.write_message_begin(&TMessageIdentifier::new("call", TMessageType::Call, 1))
        .unwrap();
    o.write_struct_begin(&TStructIdentifier::new("call_args"))
        .unwrap();
    for (id, text) in [(1, "table"), (2, "dbus_service_files")] {
        o.write_field_begin(&TFieldIdentifier::new("f", TType::String, id))
            .unwrap();
        o.write_string(text).unwrap();
        o.write_field_end().unwrap();
    }
    o.write_field_begin(&TFieldIdentifier::new("request", TType::Map, 3))
        .unwrap();
    o.write_map_begin(&TMapIdentifier::new(TType::String, TType::String, 2))
        .unwrap();
    for s in ["action", "generate", "context", "{}"] {
        o.write_string(s).unwrap();
    }
    o.write_map_end().unwrap();
    o.write_field_end().unwrap();
    o.write_field_stop().unwrap();
    o.write_struct_end().unwrap();
    o.write_message_end().unwrap();
    o.transport
}

/// Peers that hang up on a large generate (while the table still runs,
/// after the reply's first bytes, half-way through it) cost their own
/// connection only: the extension goes on serving the whole reply to the
/// next peer, and exits cleanly later.
#[test]
fn peers_hanging_up_on_a_large_reply_leave_it_serving() {
    use std::io::{Read, Write};
    let root = tempfile::tempdir().unwrap();
    many_services_root(root.path(), 1_500);
    let (mut hold, ev) = common::ext::Hold::start(root.path());
    let sock = std::path::PathBuf::from(ev["socket"].as_str().unwrap());
    let request = generate_all_request();
    for read_first in [0, 1, 300 * 1024] {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&request).unwrap();
        let mut got = vec![0; read_first];
        s.read_exact(&mut got).unwrap();
        drop(s);
    }
    let mut c = common::ext::Client::connect(&sock, Duration::from_secs(30)).unwrap();
    assert_eq!(c.ping().unwrap(), 0);
    let r = c.generate("{}").unwrap();
    assert_eq!((r.code, r.rows.len()), (0, 1_501), "{}", r.message);
    drop(c);
    let exit = hold.command("die");
    assert_exited_cleanly(&exit, INTERVAL + 1.0, "core gone after the hang-ups");
    let stderr = exit["stderr"].as_str().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
}
