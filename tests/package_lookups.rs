//! The service files' package columns read the root's dpkg database for
//! the entries asked about only: a scan of every entry and a lookup of one
//! path must give each row the same owner, verification and provenance.
mod common;

use common::cli::{cell, query_rows};
use md5::Digest;
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
