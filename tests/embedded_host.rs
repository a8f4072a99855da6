//! The `query` subcommand end to end: the real binary over a temp `--root`,
//! in every output format, with SQL errors, and the seed hunt's owner join.
use std::os::unix::fs::chown;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, UNIX_EPOCH};

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
alice:x:1000:1000:Alice Ö:/srv/alice:/bin/zsh
big:x:4294967294:4294967294:Huge, id:/nonexistent:/bin/false
mallory:x:4242:4243::/srv/mallory:/bin/sh
";
const GROUP: &str = "root:x:0:\nalice:x:1000:\nevilgrp:x:4243:\n";

/// A fixed mtime so the hunt's `datetime(f.mtime,'unixepoch')` is exact.
const PLANTED_AT: u64 = 1_700_000_000;
const PLANTED_AT_TEXT: &str = "2023-11-14 22:13:20";

fn fixture_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "etc/passwd", PASSWD);
    write(dir.path(), "etc/group", GROUP);
    dir
}

fn write(root: &Path, rel: &str, text: &str) -> std::path::PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, text).expect("write fixture");
    path
}

fn query(root: &Path, flags: &[&str], sql: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_osquery-dbus"))
        .arg("--root")
        .arg(root)
        .arg("query")
        .args(flags)
        .arg(sql)
        .output()
        .expect("run osquery-dbus")
}

fn ok_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

fn json_rows(root: &Path, sql: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let out = ok_stdout(&query(root, &["--json"], sql));
    let parsed: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    parsed
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|o| o.as_object().expect("objects").clone())
        .collect()
}

/// Each row's values by the given column names (the JSON map type does not
/// keep key order; that is checked on the raw text).
fn pick<'a>(
    rows: &'a [serde_json::Map<String, serde_json::Value>],
    columns: &[&str],
) -> Vec<Vec<&'a str>> {
    rows.iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| r[*c].as_str().expect("every value a string"))
                .collect()
        })
        .collect()
}

#[test]
fn json_rows_are_string_objects() {
    let root = fixture_root();
    let sql = "SELECT username, uid, uid_signed, directory FROM users ORDER BY uid";
    let rows = json_rows(root.path(), sql);
    assert_eq!(
        pick(&rows, &["username", "uid", "uid_signed", "directory"]),
        vec![
            vec!["root", "0", "0", "/root"],
            vec!["alice", "1000", "1000", "/srv/alice"],
            vec!["mallory", "4242", "4242", "/srv/mallory"],
            vec!["big", "4294967294", "-2", "/nonexistent"],
        ]
    );
    let raw = ok_stdout(&query(root.path(), &["--json"], sql));
    let first = raw.lines().nth(1).expect("a first row line");
    assert_eq!(
        first,
        r#"  {"username":"root","uid":"0","uid_signed":"0","directory":"/root"},"#
    );
}

#[test]
fn json_of_no_rows_is_an_empty_array() {
    let root = fixture_root();
    assert!(json_rows(root.path(), "SELECT * FROM users WHERE uid = 31337").is_empty());
}

#[test]
fn csv_has_a_header_and_quotes() {
    let root = fixture_root();
    let out = ok_stdout(&query(
        root.path(),
        &["--csv"],
        "SELECT username, description, NULL AS n FROM users WHERE uid IN (1000, 4294967294) ORDER BY uid",
    ));
    assert_eq!(
        out,
        "username,description,n\nalice,Alice Ö,\nbig,\"Huge, id\",\n"
    );
}

#[test]
fn default_output_is_an_aligned_table() {
    let root = fixture_root();
    let out = ok_stdout(&query(
        root.path(),
        &[],
        "SELECT username, description FROM users WHERE uid < 2000 ORDER BY uid",
    ));
    assert_eq!(
        out,
        "\
+----------+-------------+
| username | description |
+----------+-------------+
| root     | root        |
| alice    | Alice Ö     |
+----------+-------------+
"
    );
    let empty = ok_stdout(&query(root.path(), &[], "SELECT * FROM users WHERE 0"));
    assert_eq!(empty, "");
}

#[test]
fn groups_table_is_there_too() {
    let root = fixture_root();
    let rows = json_rows(root.path(), "SELECT groupname FROM groups WHERE gid = 4243");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["groupname"], "evilgrp");
}

fn assert_sql_error(sql: &str, message: &str) {
    let root = fixture_root();
    let out = query(root.path(), &[], sql);
    assert_eq!(out.status.code(), Some(1), "{sql}");
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(message), "stderr: {stderr}");
    assert!(stderr.starts_with("Error: "), "stderr: {stderr}");
}

#[test]
fn syntax_error_exits_1() {
    assert_sql_error("SELEC * FROM users", "near \"SELEC\": syntax error");
}

#[test]
fn unknown_table_exits_1() {
    assert_sql_error(
        "SELECT * FROM no_such_table",
        "no such table: no_such_table",
    );
}

/// Plants a file owned by `uid:gid` with the fixed mtime.
fn plant(root: &Path, rel: &str, uid: u32, gid: u32) {
    let path = write(root, rel, "[D-BUS Service]\nName=org.evil\nExec=/tmp/x\n");
    chown(&path, Some(uid), Some(gid)).expect("chown (the test runs as root)");
    let file = std::fs::File::options()
        .write(true)
        .open(&path)
        .expect("reopen");
    file.set_modified(UNIX_EPOCH + Duration::from_secs(PLANTED_AT))
        .expect("set mtime");
}

fn hunt_root() -> tempfile::TempDir {
    let root = fixture_root();
    let r = root.path();
    plant(
        r,
        "usr/share/dbus-1/system-services/evil.service",
        4242,
        4243,
    );
    plant(r, "etc/dbus-1/system.d/evil.conf", 4242, 4243);
    plant(
        r,
        "srv/mallory/.local/share/dbus-1/services/evil.service",
        4242,
        4243,
    );
    plant(
        r,
        "usr/share/dbus-1/system-services/org.example.Decoy.service",
        0,
        0,
    );
    root
}

/// The seed hunt (#3): service and policy files with their owners' names.
#[test]
fn hunt_join_names_the_planted_files_owners() {
    let root = hunt_root();
    let rows = json_rows(
        root.path(),
        "SELECT f.path, u.username, g.groupname, datetime(f.mtime,'unixepoch') AS m \
         FROM dbus_service_files f \
         LEFT JOIN users u ON f.uid = u.uid \
         LEFT JOIN groups g ON f.gid = g.gid \
         WHERE f.path LIKE '%evil%' ORDER BY f.path",
    );
    let got = pick(&rows, &["path", "username", "groupname", "m"]);
    let want = |path| vec![path, "mallory", "evilgrp", PLANTED_AT_TEXT];
    assert_eq!(
        got,
        vec![
            want("/etc/dbus-1/system.d/evil.conf"),
            want("/srv/mallory/.local/share/dbus-1/services/evil.service"),
            want("/usr/share/dbus-1/system-services/evil.service"),
        ]
    );
}

#[test]
fn path_eq_returns_exactly_that_row() {
    let root = hunt_root();
    let path = "/usr/share/dbus-1/system-services/org.example.Decoy.service";
    let rows = json_rows(
        root.path(),
        &format!(
            "SELECT f.path, u.username FROM dbus_service_files f \
             LEFT JOIN users u ON f.uid = u.uid WHERE f.path = '{path}'"
        ),
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["path"], path);
    assert_eq!(rows[0]["username"], "root");
}
