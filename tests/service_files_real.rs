//! `dbus_service_files` on this machine's real `/`, read only: the table
//! lists exactly what `find` lists in every directory it discovers
//! (standard, homes, flatpak, snap, and those named by the bus configs),
//! its rows carry only columns of the spec, and its package ownership
//! agrees with `dpkg -S`.
use osquery_dbus::context::QueryContext;
use osquery_dbus::row::{Row, Value};
use osquery_dbus::settings::Settings;
use osquery_dbus::sources::fs_safe::{self, Root};
use osquery_dbus::sources::service_dirs;
use osquery_dbus::tables::Registry;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The standard listed directories (not the config-file ones), in the
/// table's search order, so merged paths dedupe the same way here.
fn system_dirs() -> Vec<String> {
    service_dirs::standard_dirs()
        .into_iter()
        .filter(|d| d.role != service_dirs::Role::Config)
        .map(|d| d.path.to_string_lossy().into_owned())
        .collect()
}

/// Every listed directory the table discovers on `/`, in its order.
fn discovered_dirs() -> Vec<String> {
    let root = Root::open(Path::new("/")).expect("open /");
    service_dirs::discover(&root)
        .dirs
        .into_iter()
        .filter(|d| d.role != service_dirs::Role::Config)
        .map(|d| d.path.to_string_lossy().into_owned())
        .collect()
}

fn text(row: &Row, col: &str) -> Option<String> {
    row.text(col).map(str::to_string)
}

fn real_rows() -> Vec<Row> {
    let registry = Registry::new(Settings::default()).expect("registry");
    registry
        .generate("dbus_service_files", &QueryContext::new())
        .expect("table is registered")
}

#[test]
fn lists_what_find_lists_in_every_discovered_dir() {
    let rows = real_rows();
    // Directories reached twice (merged /usr) are listed once, under the
    // first path; `find` is run once per distinct directory too.
    let mut seen = BTreeSet::new();
    let mut dirs = Vec::new();
    for d in discovered_dirs() {
        if let Ok(canon) = std::fs::canonicalize(&d) {
            if canon.is_dir() && seen.insert(canon) {
                dirs.push(d);
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

#[test]
fn metadata_matches_std_for_the_standard_dirs() {
    use std::os::unix::fs::MetadataExt;
    let rows = real_rows();
    let dirs = system_dirs();
    for r in rows.iter().filter(|r| r.get("error").is_none()) {
        let p = text(r, "path").expect("path");
        if fs_safe::unrender(&p).is_some() || !dirs.iter().any(|d| p.starts_with(d.as_str())) {
            continue;
        }
        // The standard dirs are not symlinks on the way in on this machine
        // except merged /usr, which the host resolves the same way.
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue; // vanished since
        };
        let int = |c: &str| match r.get(c) {
            Some(Value::Integer(i)) => *i,
            other => panic!("{p}: {c} = {other:?}"),
        };
        assert_eq!(int("uid"), i64::from(m.uid()), "{p}");
        assert_eq!(int("gid"), i64::from(m.gid()), "{p}");
        assert_eq!(int("size"), m.size() as i64, "{p}");
        assert_eq!(int("mtime"), m.mtime(), "{p}");
        assert_eq!(
            text(r, "mode").unwrap(),
            format!("{:04o}", m.mode() & 0o7777),
            "{p}"
        );
    }
}

/// `dpkg -S` for one path: the owners as it prints them, `None` when it
/// says no package owns the path.
fn dpkg_s(path: &str) -> Option<String> {
    let out = Command::new("dpkg").args(["-S", path]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| !l.starts_with("diversion by"))
        .find_map(|l| l.strip_suffix(&format!(": {path}")).map(str::to_string))
}

#[test]
fn packages_agree_with_dpkg() {
    if Command::new("dpkg").arg("--version").output().is_err() {
        println!("dpkg is not installed here; ownership not compared");
        return;
    }
    let registry = Registry::new(Settings::default()).expect("registry");
    let mut ctx = QueryContext::new();
    ctx.set_cols_used(["path", "type", "package"]);
    let rows = registry.generate("dbus_service_files", &ctx).expect("rows");
    let mut compared = 0;
    for r in &rows {
        let p = text(r, "path").expect("path");
        // Only plain /usr/share paths: dpkg -S does not know merged-/usr
        // aliases, which the table resolves on purpose.
        if !p.starts_with("/usr/share/dbus-1/") || text(r, "type").as_deref() != Some("regular") {
            continue;
        }
        let ours = text(r, "package").expect("package with a dpkg database");
        assert_eq!(ours, dpkg_s(&p).unwrap_or_default(), "{p}");
        compared += 1;
    }
    // This machine ships dbus: system.conf belongs to a package.
    if Path::new("/usr/share/dbus-1/system.conf").exists() {
        let conf = rows
            .iter()
            .find(|r| text(r, "path").as_deref() == Some("/usr/share/dbus-1/system.conf"))
            .expect("system.conf listed");
        let owner = dpkg_s("/usr/share/dbus-1/system.conf").expect("dpkg owns system.conf");
        assert_eq!(text(conf, "package").as_deref(), Some(owner.as_str()));
    }
    println!("compared {compared} files with dpkg -S");
}
