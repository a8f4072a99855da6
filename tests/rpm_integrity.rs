//! Package integrity against a real rpm database: a package built with
//! Debian's `rpmbuild` and registered with `rpm -i --justdb` in an sqlite
//! rpmdb under a temporary root, so the header parser reads what rpm
//! itself writes (FILEDIGESTS as SHA-256, FILEDIGESTALGO 8, INSTALLTIME),
//! not a header built by our own test helper. `.ci/run` installs `rpm`.
mod common;

use common::cli::{cell, query_rows};
use std::path::Path;
use std::process::Command;

const SPEC: &str = r#"Name: dbus-fixture
Version: 1
Release: 1
Summary: fixture
License: MIT
BuildArch: noarch
%description
fixture
%install
mkdir -p %{buildroot}/usr/share/dbus-1/system-services
printf '[D-BUS Service]\nName=org.rpm.good\nExec=/usr/bin/true\n' > %{buildroot}/usr/share/dbus-1/system-services/org.rpm.good.service
printf '[D-BUS Service]\nName=org.rpm.edit\nExec=/usr/bin/true\n' > %{buildroot}/usr/share/dbus-1/system-services/org.rpm.edit.service
%files
/usr/share/dbus-1/system-services/org.rpm.good.service
/usr/share/dbus-1/system-services/org.rpm.edit.service
"#;

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run rpm tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rpm(root: &Path) -> Command {
    let mut c = Command::new("rpm");
    c.arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm", "--define", "_db_backend sqlite"]);
    c
}

#[test]
fn rpm_database_digests_and_install_time() {
    if Command::new("rpmbuild").arg("--version").output().is_err() {
        // .ci/run installs rpm; a developer machine may lack it.
        eprintln!("skipped: rpmbuild not installed (apt-get install rpm)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let top = tmp.path().join("top");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(top.join("SPECS")).expect("mkdir");
    std::fs::create_dir_all(&root).expect("mkdir");
    let spec = top.join("SPECS/f.spec");
    std::fs::write(&spec, SPEC).expect("spec");
    run(Command::new("rpmbuild")
        .arg("-bb")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg(&spec));
    run(rpm(&root).arg("--initdb"));
    let pkg = top.join("RPMS/noarch/dbus-fixture-1-1.noarch.rpm");
    run(rpm(&root)
        .args(["-i", "--nodeps", "--justdb", "--noscripts"])
        .arg(&pkg));
    // rpm leaves its last transaction in the WAL; what an idle host has
    // on disk is the checkpointed database.
    let db = rusqlite::Connection::open(root.join("var/lib/rpm/rpmdb.sqlite")).expect("open");
    db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("checkpoint");
    drop(db);
    // The files themselves, as -i without --justdb would have put them
    // (the edited one changed in place, its mtime put back).
    let dir = root.join("usr/share/dbus-1/system-services");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("org.rpm.good.service"),
        "[D-BUS Service]\nName=org.rpm.good\nExec=/usr/bin/true\n",
    )
    .expect("write");
    let edited = dir.join("org.rpm.edit.service");
    std::fs::write(
        &edited,
        "[D-BUS Service]\nName=org.rpm.edit\nExec=/tmp/.x\n",
    )
    .expect("write");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(400 * 86400);
    std::fs::File::options()
        .append(true)
        .open(&edited)
        .and_then(|f| f.set_modified(old))
        .expect("mtime");
    std::fs::write(dir.join("org.planted.service"), "[D-BUS Service]\nName=x\n").expect("write");
    let rows = query_rows(
        None,
        Some(&root),
        "SELECT filename, package, provenance, package_verified, changed_after_install \
         FROM dbus_service_files WHERE kind = 'service' ORDER BY filename",
    );
    let got: Vec<String> = rows
        .iter()
        .map(|r| {
            [
                "filename",
                "package",
                "provenance",
                "package_verified",
                "changed_after_install",
            ]
            .iter()
            .map(|c| cell(r, c))
            .collect::<Vec<_>>()
            .join("|")
        })
        .collect();
    // Installed just now: ctime is within the slack of INSTALLTIME.
    assert_eq!(
        got,
        [
            "org.planted.service||none||",
            "org.rpm.edit.service|dbus-fixture|rpm|0|0",
            "org.rpm.good.service|dbus-fixture|rpm|1|0",
        ]
    );
}
