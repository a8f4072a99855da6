//! Shadowed and hijacked service names in `dbus_service_files`:
//! an unpackaged file in an earlier directory takes a name a packaged file
//! provides; same-name files within one directory follow the bus's rule.
//! Runs the real binary over a temporary root; the pack query proposed for
//! it must return exactly the hijacking pair.
mod common;

use common::cli::{cell, query_rows, JsonRow};
use std::path::Path;

const LOCAL: &str = "/usr/local/share/dbus-1/system-services";
const SHARE: &str = "/usr/share/dbus-1/system-services";
const SESSION: &str = "/usr/share/dbus-1/services";

fn write(root: &Path, inner: &str, body: &str) {
    let p = root.join(inner.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, body).expect("write");
}

fn service(name: &str, exec: &str) -> String {
    format!("[D-BUS Service]\nName={name}\nExec={exec}\n")
}

fn query(root: &Path, sql: &str) -> Vec<JsonRow> {
    query_rows(None, Some(root), sql)
}

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    // The hijack: an unowned file in /usr/local, searched first.
    write(
        root,
        &format!("{LOCAL}/org.example.Net.service"),
        &service("org.example.Net", "/opt/evil/net --daemon"),
    );
    write(
        root,
        &format!("{SHARE}/org.example.Net.service"),
        &service("org.example.Net", "/usr/libexec/net-helper"),
    );
    // Same directory, same name: on the system bus only <Name>.service
    // provides the name; the misnamed twin is never used.
    write(
        root,
        &format!("{SHARE}/org.example.Disk.service"),
        &service("org.example.Disk", "/usr/libexec/disk"),
    );
    write(
        root,
        &format!("{SHARE}/zz-twin.service"),
        &service("org.example.Disk", "/tmp/twin"),
    );
    // A misnamed sole provider provides nothing.
    write(
        root,
        &format!("{SHARE}/misnamed.service"),
        &service("org.example.Lonely", "/usr/libexec/lonely"),
    );
    // Session bus: any file name will do; one of the two wins.
    write(
        root,
        &format!("{SESSION}/a.service"),
        &service("org.example.Sess", "/usr/libexec/a"),
    );
    write(
        root,
        &format!("{SESSION}/b.service"),
        &service("org.example.Sess", "/usr/libexec/b"),
    );
    let owned: Vec<String> = [
        format!("{SHARE}/org.example.Net.service"),
        format!("{SHARE}/org.example.Disk.service"),
        format!("{SHARE}/zz-twin.service"),
        format!("{SHARE}/misnamed.service"),
        format!("{SESSION}/a.service"),
        format!("{SESSION}/b.service"),
    ]
    .to_vec();
    write(
        root,
        "/var/lib/dpkg/info/netd.list",
        &(owned.join("\n") + "\n"),
    );
    write(root, "/var/lib/dpkg/status", "");
    dir
}

fn by_path(rows: &[JsonRow]) -> std::collections::BTreeMap<String, JsonRow> {
    rows.iter().map(|r| (cell(r, "path"), r.clone())).collect()
}

#[test]
fn an_unowned_file_in_an_earlier_directory_shadows_a_packaged_one() {
    let f = fixture();
    let rows = query(
        f.path(),
        "SELECT path, search_order, effective, shadowed_by FROM dbus_service_files WHERE kind = 'service'",
    );
    let rows = by_path(&rows);
    let local = &rows[&format!("{LOCAL}/org.example.Net.service")];
    let share = &rows[&format!("{SHARE}/org.example.Net.service")];
    assert_eq!(cell(local, "effective"), "1");
    assert_eq!(cell(local, "shadowed_by"), "");
    assert_eq!(cell(share, "effective"), "0");
    assert_eq!(
        cell(share, "shadowed_by"),
        format!("{LOCAL}/org.example.Net.service")
    );
    let (lo, sh): (u32, u32) = (
        cell(local, "search_order").parse().expect("order"),
        cell(share, "search_order").parse().expect("order"),
    );
    assert!(lo < sh, "{lo} {sh}");

    let disk = &rows[&format!("{SHARE}/org.example.Disk.service")];
    let twin = &rows[&format!("{SHARE}/zz-twin.service")];
    assert_eq!(cell(disk, "effective"), "1");
    assert_eq!(cell(twin, "effective"), "0");
    assert_eq!(
        cell(twin, "shadowed_by"),
        format!("{SHARE}/org.example.Disk.service")
    );
    let lonely = &rows[&format!("{SHARE}/misnamed.service")];
    assert_eq!(cell(lonely, "effective"), "0");
    assert_eq!(cell(lonely, "shadowed_by"), "");

    // Session bus: exactly one of two same-name files in one directory
    // wins (listing order), and the other names it.
    let (a, b) = (
        &rows[&format!("{SESSION}/a.service")],
        &rows[&format!("{SESSION}/b.service")],
    );
    let mut eff = [cell(a, "effective"), cell(b, "effective")];
    eff.sort();
    assert_eq!(eff, ["0".to_string(), "1".to_string()]);
    let (winner, loser) = if cell(a, "effective") == "1" {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(cell(loser, "shadowed_by"), cell(winner, "path"));
}

/// The pack's query for this hunt, exactly as shipped.
fn pack_sql() -> String {
    osquery_dbus::packs::builtin()
        .expect("packs")
        .into_iter()
        .find_map(|p| {
            p.queries
                .get("unpackaged_shadows_packaged")
                .map(|q| q.query.clone())
        })
        .expect("pack query unpackaged_shadows_packaged")
}

#[test]
fn the_pack_query_returns_exactly_the_hijacking_pair() {
    let f = fixture();
    let rows = query(f.path(), &pack_sql());
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        cell(&rows[0], "unpackaged"),
        format!("{LOCAL}/org.example.Net.service")
    );
    assert_eq!(
        cell(&rows[0], "packaged"),
        format!("{SHARE}/org.example.Net.service")
    );
    assert_eq!(cell(&rows[0], "effective"), "1");
}
