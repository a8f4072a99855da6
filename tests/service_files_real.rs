//! `dbus_service_files` on this machine's real `/`, read only: the table
//! lists exactly what `find` lists in the standard system directories, and
//! its rows carry only columns of the spec.
use osquery_dbus::context::QueryContext;
use osquery_dbus::sources::fs_safe;
use osquery_dbus::tables::{Registry, Row, Settings, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const SYSTEM_DIRS: &[&str] = &[
    "/usr/share/dbus-1/system-services",
    "/usr/local/share/dbus-1/system-services",
    "/lib/dbus-1/system-services",
    "/usr/share/dbus-1/system.d",
    "/etc/dbus-1/system.d",
    "/usr/share/dbus-1/services",
    "/usr/local/share/dbus-1/services",
    "/usr/share/dbus-1/session.d",
    "/etc/dbus-1/session.d",
    "/usr/share/dbus-1/accessibility-services",
    "/usr/local/share/dbus-1/accessibility-services",
];

fn text(row: &Row, col: &str) -> Option<String> {
    match row.get(col) {
        Some(Value::Text(s)) => Some(s.clone()),
        _ => None,
    }
}

fn real_rows() -> Vec<Row> {
    let registry = Registry::new(Settings::default()).expect("registry");
    registry
        .generate("dbus_service_files", &QueryContext::new())
        .expect("table is registered")
}

#[test]
fn lists_what_find_lists_in_the_standard_dirs() {
    let rows = real_rows();
    // Directories reached twice (merged /usr) are listed once, under the
    // first path; `find` is run once per distinct directory too.
    let mut seen = BTreeSet::new();
    let mut dirs = Vec::new();
    for d in SYSTEM_DIRS {
        if let Ok(canon) = std::fs::canonicalize(d) {
            if canon.is_dir() && seen.insert(canon) {
                dirs.push(*d);
            }
        }
    }
    let mut expected = BTreeSet::new();
    if !dirs.is_empty() {
        let out = Command::new("find")
            .args(&dirs)
            .args(["-mindepth", "1", "-maxdepth", "1", "-print0"])
            .output()
            .expect("find runs");
        assert!(out.status.success(), "find failed: {out:?}");
        for p in out.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
            expected.insert(fs_safe::render(p));
        }
    }
    let listed: BTreeSet<String> = rows
        .iter()
        .filter(|r| {
            text(r, "directory").is_some_and(|d| dirs.iter().any(|x| Path::new(x) == Path::new(&d)))
        })
        .filter_map(|r| text(r, "path"))
        .collect();
    assert_eq!(listed, expected);
    for r in &rows {
        let p = text(r, "path").expect("every row has a path");
        assert!(p.starts_with('/'), "{p}");
    }
}

#[test]
fn config_files_of_the_real_root() {
    let rows = real_rows();
    for conf in [
        "/usr/share/dbus-1/system.conf",
        "/usr/share/dbus-1/session.conf",
        "/etc/dbus-1/system-local.conf",
        "/etc/dbus-1/session-local.conf",
    ] {
        let listed = rows
            .iter()
            .any(|r| text(r, "path").as_deref() == Some(conf));
        let exists = std::fs::symlink_metadata(conf).is_ok();
        assert_eq!(listed, exists, "{conf}");
    }
}

#[test]
fn rows_carry_only_spec_columns() {
    let registry = Registry::new(Settings::default()).expect("registry");
    let table = registry.get("dbus_service_files").expect("registered");
    let rows = registry
        .generate("dbus_service_files", &QueryContext::new())
        .expect("rows");
    for row in &rows {
        for col in row.columns() {
            assert!(
                table.spec.column(col).is_some(),
                "column {col} is not in the spec"
            );
        }
    }
}
