//! A temporary root for tests that plant files and run one pack check (or
//! a query) on it through the real binary, and dpkg's digest format for
//! the packages they fake.
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_osquery-dbus");

/// dpkg's md5sums digest (lowercase hex MD5).
pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub struct HuntRoot(pub tempfile::TempDir);

impl HuntRoot {
    pub fn new() -> HuntRoot {
        HuntRoot(tempfile::tempdir().expect("tempdir"))
    }

    /// Writes `body` at `rel` inside the root, directories made.
    pub fn write(&self, rel: &str, body: &str) -> std::path::PathBuf {
        let p = self.0.path().join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, body).expect("write");
        p
    }

    /// `query --json SQL` on the root; the rows.
    pub fn query(&self, sql: &str) -> Vec<serde_json::Value> {
        let out = Command::new(BIN)
            .arg("--root")
            .arg(self.0.path())
            .args(["query", "--json", sql])
            .output()
            .expect("run query");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    }

    /// The rows of the pack check `check` (`hunt --json --only`), which
    /// must have `severity` and must not fail.
    pub fn hunt(&self, check: &str, severity: &str) -> Vec<serde_json::Value> {
        let out = Command::new(BIN)
            .arg("--root")
            .arg(self.0.path())
            .args(["hunt", "--json", "--min-severity", "info", "--only", check])
            .output()
            .expect("run hunt");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        let c = &report["checks"][0];
        assert_eq!(c["name"], check);
        assert_eq!(c["severity"], severity);
        assert_ne!(c["status"], "failed", "{}", c["error"]);
        c["rows"].as_array().cloned().unwrap_or_default()
    }
}
