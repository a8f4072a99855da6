//! Never a silent clean: when the kernel refuses a read the tables need,
//! `hunt` names the blind checks with their causes and exits 2 (or by its
//! findings with `--allow-partial`), and `query` still prints its rows and
//! says each cause once on stderr, as the extension does in osquery's log.
//!
//! The refusals are real. Root reads everything, so the binary runs in a
//! user namespace (`unshare -U --map-root-user`): uid 0 is still mapped,
//! but files owned by an unmapped uid are beyond its capabilities, so a
//! 0700 directory owned by such a uid fails with `EACCES` exactly as on a
//! host whose tool lacks the right. The same root read without the
//! namespace is the control: every difference comes from the refusals.
mod common;

use serde_json::Value;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_osquery-dbus");

/// Not mapped into the test's user namespace.
const UNMAPPED: u32 = 4321;

/// Accounts whose homes the namespace cannot enter: many, so that a cause
/// logged per directory (not per query) would show.
const HOMES: usize = 40;

fn write(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

/// `path` (and what is under it) owned by [`UNMAPPED`], mode 0700.
fn refuse(path: &Path) {
    for e in walk(path) {
        chown(&e, Some(UNMAPPED), Some(UNMAPPED)).unwrap();
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
}

fn walk(path: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![path.to_path_buf()];
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            out.extend(walk(&e.unwrap().path()));
        }
    }
    out
}

/// A root with one planted finding (a system service run as root from
/// /tmp) in a readable directory, homes the namespace cannot enter, and a
/// dpkg database it cannot list.
fn planted_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(
        r,
        "usr/share/dbus-1/system-services/org.example.Implant.service",
        "[D-BUS Service]\nName=org.example.Implant\nExec=/tmp/.implant\nUser=root\n",
    );
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    for i in 0..HOMES {
        let uid = 2000 + i;
        passwd.push_str(&format!("u{i}:x:{uid}:{uid}::/home/u{i}:/bin/sh\n"));
        let home = r.join(format!("home/u{i}"));
        std::fs::create_dir_all(home.join(".local/share/dbus-1/services")).unwrap();
        refuse(&home);
    }
    write(r, "etc/passwd", &passwd);
    write(r, "etc/group", "root:x:0:\n");
    write(r, "var/lib/dpkg/info/dbus.list", "/usr/share/dbus-1\n");
    refuse(&r.join("var/lib/dpkg/info"));
    // The temp dir itself is root's: the namespace can open the root.
    std::fs::set_permissions(r, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Runs the binary, in the refusing user namespace when `refused`.
fn run(refused: bool, args: &[&str]) -> Output {
    let mut cmd = if refused {
        let mut c = Command::new("unshare");
        c.args(["-U", "--map-root-user", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    cmd.args(args).output().expect("run osquery-dbus")
}

/// The namespace this test needs; under CI its absence fails the test.
fn namespaces_work() -> bool {
    let ok = Command::new("unshare")
        .args(["-U", "--map-root-user", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "unshare -U is needed for these tests"
        );
        eprintln!("SKIPPED: unshare -U is not permitted here");
    }
    ok
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn blind_lines(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.contains("blind: "))
        .map(String::from)
        .collect()
}

fn hunt_json(refused: bool, root: &Path, extra: &[&str]) -> (Output, Value) {
    let mut args = vec!["--root", root.to_str().unwrap(), "hunt", "--json"];
    args.extend_from_slice(extra);
    let out = run(refused, &args);
    let report =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    (out, report)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}"))
}

fn causes(check: &Value) -> Vec<String> {
    check["blind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{}: {}: {}", s["table"], s["what"], s["cause"]).replace('"', ""))
        .collect()
}

/// Every distinct cause over all the checks of a hunt report, in order.
fn distinct_causes(report: &Value) -> Vec<String> {
    let mut distinct: Vec<String> = Vec::new();
    for c in report["checks"].as_array().unwrap() {
        for cause in causes(c) {
            if !distinct.contains(&cause) {
                distinct.push(cause);
            }
        }
    }
    distinct
}

#[test]
fn hunt_names_the_blind_checks_and_exits_2() {
    if !namespaces_work() {
        return;
    }
    let root = planted_root();
    let (control, clean) = hunt_json(false, root.path(), &[]);
    assert_eq!(clean["blind_checks"], 0, "{clean:#}");
    assert_eq!(control.status.code(), Some(1), "{}", stderr(&control));
    assert!(blind_lines(&control).is_empty(), "{}", stderr(&control));

    let (out, report) = hunt_json(true, root.path(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(report["found"], true);
    // The finding in the readable directory is still found...
    let risky = check(&report, "risky_service_exec");
    assert_eq!(risky["status"], "found");
    assert_eq!(risky["rows"].as_array().unwrap().len(), 1);
    // ...and the check says what it could not see.
    let home = check(&report, "home_session_services");
    assert_eq!(home["status"], "blind", "{home:#}");
    assert!(home["rows"].as_array().unwrap().is_empty());
    // It reads provenance too, so the unreadable package database is named
    // beside the homes.
    let spot = home["blind"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["what"] == "cannot open service directories")
        .unwrap_or_else(|| panic!("{home:#}"));
    assert_eq!(spot["table"], "dbus_service_files");
    assert!(
        spot["cause"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{spot}"
    );
    // Every unreadable home counted once per query, a few named.
    assert!(spot["count"].as_u64().unwrap() >= HOMES as u64, "{spot}");
    assert_eq!(spot["examples"].as_array().unwrap().len(), 3);
    assert!(spot["examples"][0]
        .as_str()
        .unwrap()
        .starts_with("/home/u0/"));
    // The package database: a check reading `package` is blind for it.
    let unowned = causes(check(&report, "unowned_dbus_files"));
    assert!(
        unowned
            .iter()
            .any(|c| c.contains("cannot read package databases") && c.contains("Permission denied")),
        "{unowned:?}"
    );
    // Nothing the namespace refused is called clean.
    for c in report["checks"].as_array().unwrap() {
        if c["status"] == "clean" {
            assert!(c["blind"].as_array().unwrap().is_empty(), "{c:#}");
        }
    }
    assert!(report["blind_checks"].as_u64().unwrap() >= 2);

    // One stderr line per distinct cause and table over the whole hunt,
    // not one per home or per check: two tables (dbus_service_files and
    // dbus_service_units, which lists the same directories) each read the
    // homes and the package database.
    let lines = blind_lines(&out);
    let distinct = distinct_causes(&report);
    assert_eq!(lines.len(), distinct.len(), "{lines:#?}\n{distinct:#?}");
    assert!(lines.len() <= 4, "{lines:#?}");
}

#[test]
fn allow_partial_reports_blind_checks_and_exits_by_findings() {
    if !namespaces_work() {
        return;
    }
    let root = planted_root();
    let r = root.path().to_str().unwrap();
    let out = run(true, &["--root", r, "hunt", "--allow-partial"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
    let summary = text.lines().next().unwrap();
    assert!(summary.contains(" blind "), "{summary}");
    assert!(!summary.contains(" 0 blind"), "{summary}");
    assert!(text.contains("== BLIND [medium] dbus-persistence/home_session_services"));
    assert!(text.contains("cannot open service directories: Permission denied"));
    // A blind check is never among those that found nothing.
    let nothing = text
        .lines()
        .find(|l| l.starts_with("Nothing found by:"))
        .unwrap_or_default();
    assert!(!nothing.contains("home_session_services"), "{nothing}");

    // Only what was blind now: no finding, exit 0, still named.
    let only = ["--only", "home_session_services"];
    let mut args = vec!["--root", r, "hunt", "--allow-partial"];
    args.extend_from_slice(&only);
    let out = run(true, &args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with(
            "osquery-dbus hunt: 1 check(s) run, 0 with findings at medium or above, 1 blind"
        ),
        "{text}"
    );
    let mut args = vec!["--root", r, "hunt"];
    args.extend_from_slice(&only);
    assert_eq!(run(true, &args).status.code(), Some(2));
}

#[test]
fn query_prints_what_it_read_and_logs_each_cause_once() {
    if !namespaces_work() {
        return;
    }
    let root = planted_root();
    let r = root.path().to_str().unwrap();
    let sql = "SELECT path, error FROM dbus_service_files ORDER BY path";
    let out = run(true, &["--root", r, "query", "--json", sql]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    // The readable file's row, and an error row per refused directory.
    assert!(rows
        .iter()
        .any(|r| r["path"] == "/usr/share/dbus-1/system-services/org.example.Implant.service"));
    let refused = rows
        .iter()
        .filter(|r| {
            r["error"]
                .as_str()
                .is_some_and(|e| e.contains("Permission denied"))
        })
        .count();
    assert!(refused >= HOMES, "{rows:#?}");
    let lines = blind_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("dbus_service_files: cannot open service directories: Permission denied"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(&format!("{refused} affected")),
        "{}",
        lines[0]
    );
}

#[test]
fn an_unreadable_proc_is_blind_an_absent_one_is_not() {
    if !namespaces_work() {
        return;
    }
    let root = planted_root();
    let r = root.path().to_str().unwrap();
    let proc = tempfile::tempdir().unwrap();
    write(
        proc.path(),
        "1/stat",
        "1 (init) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0\n",
    );
    let sql = "SELECT count(*) AS n FROM dbus_daemon_children";
    let p = proc.path().to_str().unwrap();
    let readable = run(true, &["--root", r, "--proc", p, "query", sql]);
    assert!(blind_lines(&readable).is_empty(), "{}", stderr(&readable));
    refuse(proc.path());
    let out = run(true, &["--root", r, "--proc", p, "query", sql]);
    assert_eq!(out.status.code(), Some(0));
    let lines = blind_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("dbus_daemon_children: cannot list processes: Permission denied"),
        "{}",
        lines[0]
    );
    // --root alone: the image's own /proc, absent, is an answer.
    let out = run(true, &["--root", r, "query", sql]);
    assert!(blind_lines(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn a_root_that_cannot_be_opened_makes_every_check_blind() {
    let missing = tempfile::tempdir().unwrap();
    let gone = missing.path().join("not-here");
    let (out, report) = hunt_json(false, &gone, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(report["found"], false);
    // Only checks that need no file of the root may come back clean: the
    // evented ones (no history in a one-shot hunt) and the daemon children
    // (processes only, and the root's own /proc is absent: none).
    let not_reading_files = [
        "unusual_dbus_daemon_children",
        "dbus_file_writes_not_by_package_manager",
        "dbus_activations_and_client_runs",
    ];
    for c in report["checks"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        if !not_reading_files.contains(&name) {
            assert_eq!(c["status"], "blind", "{c:#}");
        }
    }
    let home = causes(check(&report, "home_session_services"));
    assert_eq!(
        home,
        ["dbus_service_files: cannot open the root: No such file or directory (os error 2)"]
    );
}

#[test]
fn an_unreadable_bus_configuration_is_blind_a_malformed_one_is_not() {
    if !namespaces_work() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(
        r,
        "usr/share/dbus-1/system.conf",
        "<busconfig><includedir>/etc/dbus-1/system.d</includedir>\
         <include>/etc/dbus-1/local.conf</include></busconfig>",
    );
    write(r, "etc/dbus-1/system.d/broken.conf", "<busconfig><policy");
    write(r, "etc/dbus-1/local.conf", "<busconfig/>");
    let root = r.to_str().unwrap();
    let sql = "SELECT path, error FROM dbus_service_files WHERE path LIKE '%/broken.conf'";
    let malformed = run(true, &["--root", root, "query", "--json", sql]);
    assert!(blind_lines(&malformed).is_empty(), "{}", stderr(&malformed));
    let rows: Vec<Value> = serde_json::from_slice(&malformed.stdout).unwrap();
    assert!(
        rows.iter()
            .any(|r| r["error"].as_str().is_some_and(|e| e.contains("XML"))),
        "{rows:#?}"
    );

    refuse(&r.join("etc/dbus-1/system.d"));
    refuse(&r.join("etc/dbus-1/local.conf"));
    let out = run(
        true,
        &[
            "--root",
            root,
            "query",
            "SELECT count(*) FROM dbus_policy_rules",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let lines = blind_lines(&out);
    // The directory and the included file: one cause, counted twice.
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("dbus_policy_rules: cannot read bus configuration: Permission denied")
            && lines[0].contains("2 affected"),
        "{}",
        lines[0]
    );
}

#[test]
fn the_extension_logs_each_cause_once_per_generate() {
    if !namespaces_work() {
        return;
    }
    let root = planted_root();
    let python = common::peer_python();
    let work = tempfile::tempdir().unwrap();
    let reps = 3;
    // The fake core, and the extension it starts, in the refusing namespace.
    let out = Command::new("unshare")
        .args(["-U", "--map-root-user"])
        .arg(python)
        .arg(common::peer_script("fake_core.py"))
        .args(["blind", "--bin", BIN, "--workdir"])
        .arg(work.path())
        .arg("--root")
        .arg(root.path())
        .args(["--reps", &reps.to_string()])
        .output()
        .expect("run fake core");
    assert!(out.status.success(), "{}", stderr(&out));
    let obs: Value = serde_json::from_slice(&out.stdout).unwrap();
    for g in obs["generates"].as_array().unwrap() {
        // The table still answers with what it could read.
        assert_eq!(g["status"]["code"], 0, "{g}");
        let rows = g["response"].as_array().unwrap();
        assert!(rows
            .iter()
            .any(|r| r["path"] == "/usr/share/dbus-1/system-services/org.example.Implant.service"));
    }
    let log = obs["stderr"].as_str().unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("blind: ")).collect();
    // Two causes (the homes, and the package database every column's
    // `package` needs), each once per generate, not once per home.
    let causes = [
        "dbus_service_files: cannot open service directories: Permission denied",
        "dbus_service_files: cannot read package databases: Permission denied",
    ];
    assert_eq!(lines.len(), reps * causes.len(), "{log}");
    for cause in causes {
        let n = lines.iter().filter(|l| l.contains(cause)).count();
        assert_eq!(n, reps, "{cause}: {log}");
    }
    let homes = format!("({} affected, e.g. /home/u0/", 2 * HOMES);
    assert!(lines.iter().any(|l| l.contains(&homes)), "{log}");
}

/// The old-kernel harness (a test tool, a second binary of this package):
/// here it makes one syscall fail with the errno asked for.
const OLD_KERNEL: &str = env!("CARGO_BIN_EXE_old-kernel");

#[test]
fn every_listing_failing_with_eio_is_blind_not_clean() {
    let old_kernel = OLD_KERNEL;
    let root = planted_root();
    let r = root.path().to_str().unwrap();
    let under_eio = |args: &[&str]| {
        Command::new(old_kernel)
            .args(["--errno", "getdents64=EIO", "--", BIN])
            .args(args)
            .output()
            .expect("run under old-kernel")
    };
    let out = under_eio(&["--root", r, "hunt", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    // No directory could be listed: the implant is unseen, and nothing
    // that needed a listing says clean.
    assert_eq!(check(&report, "risky_service_exec")["status"], "blind");
    let spots = causes(check(&report, "risky_service_exec"));
    assert!(
        spots.iter().any(|c| c
            == "dbus_service_files: cannot list service directories: Input/output error (os error 5)"),
        "{spots:?}"
    );
    assert!(report["blind_checks"].as_u64().unwrap() >= 12, "{report:#}");
    // One stderr line per distinct cause, not one per directory.
    let lines = blind_lines(&out);
    let distinct = distinct_causes(&report);
    assert_eq!(lines.len(), distinct.len(), "{lines:#?}");
    assert!(lines.len() < 10, "{lines:#?}");

    let partial = under_eio(&["--root", r, "hunt", "--allow-partial"]);
    let text = String::from_utf8_lossy(&partial.stdout);
    assert_eq!(partial.status.code(), Some(0), "{text}");
    assert!(
        text.lines().next().unwrap().contains(" 0 with findings"),
        "{text}"
    );
    assert!(
        text.contains("== BLIND [high] dbus-persistence/risky_service_exec"),
        "{text}"
    );
}
