//! The package columns read the root's dpkg database for the paths asked
//! about only: a scan of every entry and a lookup of one path must give
//! each row the same owner, verification and provenance, and a table that
//! asks only for its own files the answer of the whole index.
mod common;

use common::cli::{cell, query_rows};
use md5::Digest;
use std::collections::BTreeMap;
use std::path::Path;

const SYS: &str = "usr/share/dbus-1/system-services";
const COLS: &str = "path, package, package_verified, provenance";

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, bytes).expect("write");
}

fn hex(b: &[u8]) -> String {
    md5::Md5::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[test]
fn a_path_lookup_gives_the_rows_of_a_full_scan() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = tmp.path();
    let body = |n: &str| format!("[D-BUS Service]\nName=org.t.{n}\nExec=/usr/bin/{n}\n");
    for n in ["Good", "Edited", "Stray"] {
        write(r, &format!("{SYS}/org.t.{n}.service"), body(n).as_bytes());
    }
    let file = |n: &str| format!("/{SYS}/org.t.{n}.service");
    let mut lines = String::from("/.\n/usr\n/usr/share/doc/t\n");
    for n in ["Good", "Edited"] {
        lines.push_str(&file(n));
        lines.push('\n');
    }
    write(r, "var/lib/dpkg/info/t:amd64.list", lines.as_bytes());
    write(
        r,
        "var/lib/dpkg/info/t:amd64.md5sums",
        format!(
            "{}  {}\n{}  {}\n",
            hex(body("Good").as_bytes()),
            &file("Good")[1..],
            hex(b"what the package shipped"),
            &file("Edited")[1..],
        )
        .as_bytes(),
    );
    write(r, "var/lib/dpkg/info/other.list", b"/etc/other\n");
    write(r, "var/lib/dpkg/status", b"");
    let all = query_rows(
        None,
        Some(r),
        &format!("SELECT {COLS} FROM dbus_service_files WHERE path LIKE '%.service'"),
    );
    let row = |n: &str| {
        all.iter()
            .find(|x| cell(x, "path") == file(n))
            .unwrap_or_else(|| panic!("{n}: {all:#?}"))
    };
    let facts = |n: &str| {
        let x = row(n);
        [
            cell(x, "package"),
            cell(x, "package_verified"),
            cell(x, "provenance"),
        ]
    };
    assert_eq!(facts("Good"), ["t:amd64", "1", "dpkg"]);
    assert_eq!(facts("Edited"), ["t:amd64", "0", "dpkg"]);
    assert_eq!(facts("Stray"), ["", "", "none"]);
    for n in ["Good", "Edited", "Stray"] {
        let one = query_rows(
            None,
            Some(r),
            &format!(
                "SELECT {COLS} FROM dbus_service_files WHERE path = '{}'",
                file(n)
            ),
        );
        assert_eq!(one.as_slice(), std::slice::from_ref(row(n)), "{n}");
    }
}

/// `dbus_policy_rules` asks the databases only about the configuration
/// files its rows come from; each file's `package` and `provenance` must
/// be what `dbus_service_files` answers from the index of every installed
/// file (its `exec_package` column needs the whole index, so asking for it
/// makes the table build one), unowned, shared, merged-`/usr` and
/// unparsable files included.
#[test]
fn policy_rules_owners_are_the_whole_index_answer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = tmp.path();
    write(
        r,
        "usr/share/dbus-1/system.conf",
        b"<busconfig><type>system</type>\
<policy context=\"default\"><deny own=\"*\"/></policy>\
<includedir>/usr/share/dbus-1/system.d</includedir>\
<includedir>/etc/dbus-1/system.d</includedir></busconfig>",
    );
    let fragment = |name: &str| {
        format!(
            "<busconfig><policy user=\"root\"><allow own=\"{name}\"/></policy>\
<policy context=\"default\"><allow send_destination=\"{name}\"/></policy></busconfig>"
        )
    };
    for f in ["owned", "shared", "stray"] {
        write(
            r,
            &format!("etc/dbus-1/system.d/{f}.conf"),
            fragment(&format!("org.t.{f}")).as_bytes(),
        );
    }
    write(
        r,
        "usr/share/dbus-1/system.d/vendor.conf",
        fragment("org.t.vendor").as_bytes(),
    );
    write(r, "etc/dbus-1/system.d/broken.conf", b"<busconfig><policy>");
    write(
        r,
        "var/lib/dpkg/info/dbus.list",
        b"/.\n/usr\n/usr/share/dbus-1/system.conf\n/etc/dbus-1/system.d/owned.conf\n",
    );
    write(
        r,
        "var/lib/dpkg/info/a:amd64.list",
        b"/etc/dbus-1/system.d/shared.conf\n/etc/dbus-1/system.d/broken.conf\n",
    );
    write(
        r,
        "var/lib/dpkg/info/b.list",
        b"/etc/dbus-1/system.d/shared.conf\n/usr/share/dbus-1/system.d/vendor.conf\n",
    );
    let mut many = String::new();
    for i in 0..5000 {
        many.push_str(&format!("/usr/share/doc/other/file-{i}\n"));
    }
    write(r, "var/lib/dpkg/info/other.list", many.as_bytes());
    write(r, "var/lib/dpkg/status", b"");

    let owners = |rows: &[common::cli::JsonRow]| {
        let mut by_path: BTreeMap<String, (String, String)> = BTreeMap::new();
        for x in rows {
            let facts = (cell(x, "package"), cell(x, "provenance"));
            let path = cell(x, "path");
            let seen = by_path.entry(path.clone()).or_insert_with(|| facts.clone());
            assert_eq!(*seen, facts, "{path}: one answer for every row of a file");
        }
        by_path
    };
    let rules = query_rows(
        None,
        Some(r),
        "SELECT path, package, provenance FROM dbus_policy_rules",
    );
    let rules = owners(&rules);
    let files = query_rows(
        None,
        Some(r),
        "SELECT path, kind, package, provenance, exec_package FROM dbus_service_files",
    );
    let files: Vec<_> = files
        .into_iter()
        .filter(|x| ["policy", "config"].contains(&cell(x, "kind").as_str()))
        .collect();
    assert_eq!(rules, owners(&files));
    let fact = |p: &str| {
        let (pkg, prov) = rules.get(p).unwrap_or_else(|| panic!("{p}: {rules:#?}"));
        [pkg.as_str(), prov.as_str()]
    };
    assert_eq!(fact("/usr/share/dbus-1/system.conf"), ["dbus", "dpkg"]);
    assert_eq!(fact("/etc/dbus-1/system.d/owned.conf"), ["dbus", "dpkg"]);
    assert_eq!(
        fact("/etc/dbus-1/system.d/shared.conf"),
        ["a:amd64, b", "dpkg"]
    );
    assert_eq!(fact("/etc/dbus-1/system.d/stray.conf"), ["", "none"]);
    assert_eq!(
        fact("/etc/dbus-1/system.d/broken.conf"),
        ["a:amd64", "dpkg"]
    );
    assert_eq!(
        fact("/usr/share/dbus-1/system.d/vendor.conf"),
        ["b", "dpkg"]
    );
    assert_eq!(rules.len(), 6, "{rules:#?}");
    // One file asked for: the same answer.
    let one = query_rows(
        None,
        Some(r),
        "SELECT path, package, provenance FROM dbus_policy_rules \
         WHERE path = '/etc/dbus-1/system.d/shared.conf'",
    );
    assert_eq!(
        owners(&one).get("/etc/dbus-1/system.d/shared.conf"),
        rules.get("/etc/dbus-1/system.d/shared.conf")
    );
}
