//! Shadowed and hijacked service names in `dbus_service_files`:
//! an unpackaged file in an earlier directory takes a name a packaged file
//! provides; same-name files within one directory follow the bus's rule.
//! Runs the real binary over a temporary root; the pack query proposed for
//! it must return exactly the hijacking pair. Session buses: a user's own
//! files come first for that user only, a refused file names the file the
//! bus uses. A `path =` lookup, which reads only the directories that can
//! change its row, gives every row exactly the full scan's columns.
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

const RUN_ANN: &str = "/run/user/1000/dbus-1/services";
const HOME_ANN: &str = "/home/ann/.local/share/dbus-1/services";
const HOME_BEN: &str = "/home/ben/.local/share/dbus-1/services";
const LOCAL_SESSION: &str = "/usr/local/share/dbus-1/services";

/// A file the bus refuses: a line it cannot parse.
fn refused(name: &str) -> String {
    format!("[D-BUS Service]\nName={name}\nExec=/bin/refused\nnot a key\n")
}

/// Session buses of two users over the system-wide session directories;
/// system-bus files whose provider is in a later directory.
fn session_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(
        root,
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\n\
ann:x:1000:1000::/home/ann:/bin/sh\n\
ben:x:1001:1001::/home/ben:/bin/sh\n",
    );
    let files: [(String, String); 12] = [
        // System-wide: a refused file listed in an earlier directory than
        // the one providing its name, and a shared name ann also provides.
        (
            format!("{LOCAL_SESSION}/late.service"),
            refused("org.s.Late"),
        ),
        (
            format!("{SESSION}/late-provider.service"),
            service("org.s.Late", "/usr/libexec/late"),
        ),
        (
            format!("{SESSION}/shared.service"),
            service("org.s.Shared", "/usr/libexec/shared"),
        ),
        (format!("{SESSION}/nobody.service"), refused("org.s.Nobody")),
        // ann: her runtime directory comes before her home.
        (
            format!("{RUN_ANN}/early.service"),
            service("org.ann.Twice", "/home/ann/bin/early"),
        ),
        (
            format!("{HOME_ANN}/twice.service"),
            service("org.ann.Twice", "/home/ann/bin/twice"),
        ),
        (
            format!("{HOME_ANN}/mine.service"),
            service("org.s.Shared", "/home/ann/bin/shared"),
        ),
        (format!("{HOME_ANN}/refused.service"), refused("org.s.Late")),
        (
            format!("{HOME_ANN}/any-file-name.service"),
            service("org.ann.Misnamed", "/home/ann/bin/m"),
        ),
        (
            format!("{HOME_ANN}/nameless.service"),
            "[D-BUS Service]\nExec=/bin/x\n".into(),
        ),
        // ben: a refused file nothing else provides, and a copy of
        // ann's shared name (his own, not shadowed by hers).
        (
            format!("{HOME_BEN}/lonely.service"),
            refused("org.ben.Lonely"),
        ),
        (
            format!("{HOME_BEN}/shared.service"),
            service("org.s.Shared", "/home/ben/bin/shared"),
        ),
    ];
    for (path, body) in &files {
        write(root, path, body);
    }
    for (path, body) in [
        (
            "/etc/dbus-1/system-services/misnamed.service",
            service("org.sys.Late", "/bin/m"),
        ),
        (
            "/etc/dbus-1/system-services/org.sys.Refused.service",
            refused("org.sys.Refused"),
        ),
        (
            "/usr/share/dbus-1/system-services/org.sys.Late.service",
            service("org.sys.Late", "/bin/late"),
        ),
        (
            "/lib/dbus-1/system-services/org.sys.Refused.service",
            service("org.sys.Refused", "/bin/r"),
        ),
    ] {
        write(root, path, &body);
    }
    dir
}

const SHADOW_SQL: &str =
    "SELECT path, bus, user_uid, search_order, effective, shadowed_by FROM dbus_service_files";

#[test]
fn a_users_files_come_first_for_that_user_only() {
    let f = session_fixture();
    let rows = by_path(&query(
        f.path(),
        &format!("{SHADOW_SQL} WHERE kind = 'service'"),
    ));
    let verdict = |p: &str| {
        let r = &rows[p];
        (cell(r, "effective"), cell(r, "shadowed_by"))
    };
    let yes = || ("1".to_string(), String::new());
    let no = |by: &str| ("0".to_string(), by.to_string());
    // Shared order: the refused file names the later directory's provider.
    assert_eq!(
        verdict(&format!("{LOCAL_SESSION}/late.service")),
        no(&format!("{SESSION}/late-provider.service"))
    );
    assert_eq!(verdict(&format!("{SESSION}/late-provider.service")), yes());
    // ann's copy of a shared name wins for ann; the shared file still wins
    // the order every user shares, and ben's own copy wins for ben.
    assert_eq!(verdict(&format!("{SESSION}/shared.service")), yes());
    assert_eq!(verdict(&format!("{HOME_ANN}/mine.service")), yes());
    assert_eq!(verdict(&format!("{HOME_BEN}/shared.service")), yes());
    assert_eq!(verdict(&format!("{SESSION}/nobody.service")), no(""));
    // ann's runtime directory is read before her home.
    assert_eq!(verdict(&format!("{RUN_ANN}/early.service")), yes());
    assert_eq!(
        verdict(&format!("{HOME_ANN}/twice.service")),
        no(&format!("{RUN_ANN}/early.service"))
    );
    let order = |p: &str| cell(&rows[p], "search_order");
    assert_eq!(order(&format!("{RUN_ANN}/early.service")), "1");
    assert_eq!(order(&format!("{HOME_ANN}/twice.service")), "2");
    assert_eq!(order(&format!("{HOME_BEN}/lonely.service")), "1");
    // A refused file of hers names what her bus uses: a shared file.
    assert_eq!(
        verdict(&format!("{HOME_ANN}/refused.service")),
        no(&format!("{SESSION}/late-provider.service"))
    );
    // Any file name will do on a session bus.
    assert_eq!(verdict(&format!("{HOME_ANN}/any-file-name.service")), yes());
    assert_eq!(
        verdict(&format!("{HOME_ANN}/nameless.service")),
        (String::new(), String::new())
    );
    assert_eq!(verdict(&format!("{HOME_BEN}/lonely.service")), no(""));
    // System bus: a misnamed or refused file names the `<Name>.service`
    // of a later directory.
    assert_eq!(
        verdict("/etc/dbus-1/system-services/misnamed.service"),
        no("/usr/share/dbus-1/system-services/org.sys.Late.service")
    );
    assert_eq!(
        verdict("/etc/dbus-1/system-services/org.sys.Refused.service"),
        no("/lib/dbus-1/system-services/org.sys.Refused.service")
    );
    assert_eq!(
        verdict("/lib/dbus-1/system-services/org.sys.Refused.service"),
        yes()
    );
}

/// Every service file of `root` looked up by path, in a process of its
/// own, gives the full scan's row.
fn lookups_match_the_full_scan(root: &Path) {
    let full = query(root, &format!("{SHADOW_SQL} WHERE kind = 'service'"));
    assert!(full.len() >= 7, "{full:?}");
    for row in &full {
        let p = cell(row, "path");
        let got = query(root, &format!("{SHADOW_SQL} WHERE path = '{p}'"));
        assert_eq!(got, vec![row.clone()], "{p}");
        // All columns: the shadow ones as in the narrow query.
        let all = query(
            root,
            &format!("SELECT * FROM dbus_service_files WHERE path = '{p}'"),
        );
        assert_eq!(all.len(), 1, "{p}");
        for c in ["search_order", "effective", "shadowed_by"] {
            assert_eq!(cell(&all[0], c), cell(row, c), "{p} {c}");
        }
    }
}

#[test]
fn system_bus_lookups_match_the_full_scan() {
    lookups_match_the_full_scan(fixture().path());
}

#[test]
fn session_bus_lookups_match_the_full_scan() {
    lookups_match_the_full_scan(session_fixture().path());
}
