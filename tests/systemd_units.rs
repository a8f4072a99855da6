//! `SystemdService=` followed to the unit systemd would really load, through
//! the real binary over a fixture root: an alias symlink with an absolute
//! target (resolved inside the root), an admin drop-in that swaps
//! `ExecStart=` for a payload, a masked unit, a missing one, and a user unit
//! in the home of the account whose session file names it.
mod common;

use common::cli::{cell, query_rows};
use std::path::Path;

fn write(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, body).expect("write");
}

fn service(root: &Path, rel: &str, name: &str, unit: &str) {
    write(
        root,
        rel,
        &format!(
            "[D-BUS Service]\nName={name}\nExec=/bin/false\nUser=root\nSystemdService={unit}\n"
        ),
    );
}

#[test]
fn systemd_service_leads_to_the_unit_and_what_it_runs() {
    let t = tempfile::tempdir().expect("tempdir");
    let r = t.path();
    write(
        r,
        "/etc/passwd",
        "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/srv/alice:/bin/sh\n",
    );
    write(r, "/etc/group", "root:x:0:\n");
    let sys = "/usr/share/dbus-1/system-services";
    service(
        r,
        &format!("{sys}/org.example.Hijacked.service"),
        "org.example.Hijacked",
        "dbus-org.example.Hijacked.service",
    );
    service(
        r,
        &format!("{sys}/org.example.Plain.service"),
        "org.example.Plain",
        "plain",
    );
    service(
        r,
        &format!("{sys}/org.example.Masked.service"),
        "org.example.Masked",
        "masked.service",
    );
    service(
        r,
        &format!("{sys}/org.example.Gone.service"),
        "org.example.Gone",
        "gone.service",
    );
    service(
        r,
        "/srv/alice/.local/share/dbus-1/services/org.alice.Agent.service",
        "org.alice.Agent",
        "agent.service",
    );

    write(
        r,
        "/usr/lib/systemd/system/hijacked.service",
        "[Service]\nExecStart=/usr/libexec/hijacked --system\n",
    );
    std::fs::create_dir_all(r.join("etc/systemd/system")).expect("mkdir");
    std::os::unix::fs::symlink(
        "/usr/lib/systemd/system/hijacked.service",
        r.join("etc/systemd/system/dbus-org.example.Hijacked.service"),
    )
    .expect("alias");
    write(
        r,
        "/etc/systemd/system/dbus-org.example.Hijacked.service.d/override.conf",
        "[Service]\nExecStart=\nExecStart=/var/tmp/.cache/payload --quiet\n",
    );
    write(
        r,
        "/usr/lib/systemd/system/plain.service",
        "[Service]\nType=dbus\nExecStart=-/usr/libexec/plain\n",
    );
    std::os::unix::fs::symlink("/dev/null", r.join("etc/systemd/system/masked.service"))
        .expect("mask");
    write(
        r,
        "/srv/alice/.config/systemd/user/agent.service",
        "[Service]\nExecStart=/srv/alice/.agent/run\n",
    );
    // The same unit name in the system path is not what alice's session runs.
    write(
        r,
        "/usr/lib/systemd/system/agent.service",
        "[Service]\nExecStart=/usr/libexec/agent\n",
    );

    let rows = query_rows(
        None,
        Some(r),
        "SELECT service_name, systemd_unit_path, systemd_exec, error FROM dbus_service_files \
         WHERE systemd_service IS NOT NULL ORDER BY service_name",
    );
    let got: Vec<[String; 4]> = rows
        .iter()
        .map(|row| {
            [
                cell(row, "service_name"),
                cell(row, "systemd_unit_path"),
                cell(row, "systemd_exec"),
                cell(row, "error"),
            ]
        })
        .collect();
    let want: Vec<[String; 4]> = [
        [
            "org.alice.Agent",
            "/srv/alice/.config/systemd/user/agent.service",
            "/srv/alice/.agent/run",
            "",
        ],
        ["org.example.Gone", "", "", ""],
        [
            "org.example.Hijacked",
            "/etc/systemd/system/dbus-org.example.Hijacked.service",
            "/var/tmp/.cache/payload --quiet",
            "",
        ],
        [
            "org.example.Masked",
            "/etc/systemd/system/masked.service",
            "",
            "",
        ],
        [
            "org.example.Plain",
            "/usr/lib/systemd/system/plain.service",
            "-/usr/libexec/plain",
            "",
        ],
    ]
    .into_iter()
    .map(|a| a.map(String::from))
    .collect();
    assert_eq!(got, want);

    // Masked (empty) and missing (NULL) stay distinguishable in SQL.
    let masked = query_rows(
        None,
        Some(r),
        "SELECT service_name FROM dbus_service_files WHERE systemd_exec = ''",
    );
    assert_eq!(masked.len(), 1);
    assert_eq!(cell(&masked[0], "service_name"), "org.example.Masked");
}
