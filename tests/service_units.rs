//! `dbus_service_units` and `altered_dbus_service_units` through the real
//! binary over a root with packaged D-Bus services handing activation to
//! systemd: an unpackaged drop-in adding `ExecStartPre=` and `LD_PRELOAD`
//! to a packaged unit, an unpackaged unit shadowing a packaged one, a
//! user unit in an account's `~/.config/systemd/user` for its own session
//! service; and their benign twins: a packaged unit with a packaged
//! drop-in, and a masked unit.
mod common;

use common::hunt_root::{md5_hex, HuntRoot};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;

/// Writes a file, executable when it is a program.
fn write(r: &HuntRoot, rel: &str, body: &str) {
    let p = r.write(rel, body);
    if rel.contains("/libexec/") {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

const SYS: &str = "/usr/share/dbus-1/system-services";

fn service(name: &str, unit: &str) -> String {
    format!("[D-BUS Service]\nName={name}\nExec=/bin/false\nUser=root\nSystemdService={unit}\n")
}

fn planted() -> HuntRoot {
    let r = HuntRoot::new();
    write(
        &r,
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n",
    );
    let mut packaged: Vec<(String, String)> = Vec::new();
    let mut pkg = |r: &HuntRoot, path: &str, body: &str| {
        write(r, path, body);
        packaged.push((path.to_string(), md5_hex(body.as_bytes())));
    };
    for (name, unit) in [
        ("org.example.Dropped", "dropped.service"),
        ("org.example.Shadowed", "shadowed.service"),
        ("org.example.Tuned", "tuned.service"),
        ("org.example.Masked", "masked.service"),
    ] {
        pkg(&r, &format!("{SYS}/{name}.service"), &service(name, unit));
    }
    pkg(&r, "/usr/libexec/exampled", "#!/bin/sh\n");
    for unit in ["dropped", "shadowed", "tuned"] {
        pkg(
            &r,
            &format!("/lib/systemd/system/{unit}.service"),
            "[Service]\nExecStart=/usr/libexec/exampled\n",
        );
    }
    // The package's own drop-in: not a finding.
    pkg(
        &r,
        "/lib/systemd/system/tuned.service.d/10-vendor.conf",
        "[Service]\nEnvironment=LANG=C\n",
    );
    pkg(
        &r,
        "/usr/share/dbus-1/services/org.example.Agent.service",
        "[D-BUS Service]\nName=org.example.Agent\nExec=/bin/false\nSystemdService=agent.service\n",
    );
    pkg(
        &r,
        "/usr/lib/systemd/user/agent.service",
        "[Service]\nExecStart=/usr/libexec/exampled --agent\n",
    );
    let list: String = packaged.iter().map(|(p, _)| format!("{p}\n")).collect();
    let sums: String = packaged
        .iter()
        .map(|(p, h)| format!("{h}  {}\n", &p[1..]))
        .collect();
    write(&r, "/var/lib/dpkg/info/example.md5sums", &sums);
    write(&r, "/var/lib/dpkg/info/example.list", &list);
    // Attacks: an admin-directory drop-in, a shadowing copy, a user unit.
    write(
        &r,
        "/etc/systemd/system/dropped.service.d/override.conf",
        "[Service]\nExecStartPre=/var/tmp/.p\nEnvironment=LD_PRELOAD=/var/tmp/.l.so\n",
    );
    write(
        &r,
        "/etc/systemd/system/shadowed.service",
        "[Service]\nExecStart=/usr/libexec/exampled --debug-shell\n",
    );
    std::fs::create_dir_all(r.0.path().join("etc/systemd/system")).expect("mkdir");
    std::os::unix::fs::symlink(
        "/dev/null",
        r.0.path().join("etc/systemd/system/masked.service"),
    )
    .expect("symlink");
    r
}

#[test]
fn effective_units_and_what_unpackaged_files_change() {
    let r = planted();
    let rows = r.query(
        "SELECT service_name, unit_path, directive, command, defined_in, unpackaged_change, code_variables, masked FROM dbus_service_units ORDER BY service_name, directive",
    );
    let got: BTreeSet<(String, String, String, String)> = rows
        .iter()
        .map(|row| {
            let s = |c: &str| row[c].as_str().unwrap_or_default().to_string();
            (
                s("service_name"),
                s("directive"),
                s("command"),
                s("unpackaged_change"),
            )
        })
        .collect();
    let dropin = "/etc/systemd/system/dropped.service.d/override.conf";
    let env = format!("Environment=LD_PRELOAD=/var/tmp/.l.so from {dropin}");
    let want: BTreeSet<(String, String, String, String)> = [
        (
            "org.example.Dropped",
            "ExecStartPre",
            "/var/tmp/.p",
            format!("ExecStartPre from {dropin}; {env}"),
        ),
        (
            "org.example.Dropped",
            "ExecStart",
            "/usr/libexec/exampled",
            env.clone(),
        ),
        (
            "org.example.Shadowed",
            "ExecStart",
            "/usr/libexec/exampled --debug-shell",
            "the unit file no package owns shadows /lib/systemd/system/shadowed.service".into(),
        ),
        (
            "org.example.Tuned",
            "ExecStart",
            "/usr/libexec/exampled",
            String::new(),
        ),
        ("org.example.Masked", "", "", String::new()),
        (
            "org.example.Agent",
            "ExecStart",
            "/usr/libexec/exampled --agent",
            String::new(),
        ),
    ]
    .into_iter()
    .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d))
    .collect();
    assert_eq!(got, want, "{rows:#?}");
    let masked = rows
        .iter()
        .find(|row| row["service_name"] == "org.example.Masked")
        .expect("masked row");
    assert_eq!(masked["masked"], "1");
}

#[test]
fn the_pack_check_names_the_changes() {
    let r = planted();
    let rows = r.hunt("altered_dbus_service_units", "high");
    let got: BTreeSet<(String, String)> = rows
        .iter()
        .map(|row| {
            let s = |c: &str| row[c].as_str().unwrap_or_default().to_string();
            (s("service_name"), s("directive"))
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("org.example.Dropped", "ExecStartPre"),
        ("org.example.Dropped", "ExecStart"),
        ("org.example.Shadowed", "ExecStart"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want, "{rows:#?}");
    let pre = rows
        .iter()
        .find(|row| row["directive"] == "ExecStartPre")
        .expect("ExecStartPre row");
    let why = pre["why"].as_str().unwrap();
    assert!(why.contains("LD_PRELOAD=/var/tmp/.l.so"), "{why}");
    assert!(why.starts_with("unpackaged: ExecStartPre from "), "{why}");
}

/// A user unit in the account's own unit directory, for the account's own
/// session service: found there, and not from the system directories.
#[test]
fn per_user_units_come_from_the_users_own_directories() {
    let r = planted();
    write(
        &r,
        "/home/alice/.local/share/dbus-1/services/org.alice.Tool.service",
        "[D-BUS Service]\nName=org.alice.Tool\nExec=/bin/false\nSystemdService=tool.service\n",
    );
    write(
        &r,
        "/home/alice/.config/systemd/user/tool.service",
        "[Service]\nExecStart=/home/alice/.cache/tool\n",
    );
    let rows = r.query(
        "SELECT path, user_uid, unit_path, program FROM dbus_service_units WHERE service_name = 'org.alice.Tool'",
    );
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["user_uid"], "1000");
    assert_eq!(
        rows[0]["unit_path"],
        "/home/alice/.config/systemd/user/tool.service"
    );
    assert_eq!(rows[0]["program"], "/home/alice/.cache/tool");
}
