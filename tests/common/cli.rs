//! Running the built binary's `query --json` and reading its cells, for
//! tests that check what a user of the CLI sees.
use std::path::Path;
use std::process::Command;

pub type JsonRow = serde_json::Map<String, serde_json::Value>;

/// `osquery-dbus [--proc P] [--root R] query --json SQL`, which must succeed.
pub fn query_json(proc: Option<&Path>, root: Option<&Path>, sql: &str) -> serde_json::Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_osquery-dbus"));
    if let Some(p) = proc {
        cmd.arg("--proc").arg(p);
    }
    if let Some(r) = root {
        cmd.arg("--root").arg(r);
    }
    let out = cmd
        .args(["query", "--json", sql])
        .output()
        .expect("run osquery-dbus");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// [`query_json`]'s rows.
pub fn query_rows(proc: Option<&Path>, root: Option<&Path>, sql: &str) -> Vec<JsonRow> {
    serde_json::from_value(query_json(proc, root, sql)).expect("an array of objects")
}

/// A cell as text; NULL and absent are "".
pub fn cell(r: &JsonRow, c: &str) -> String {
    match r.get(c) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}
