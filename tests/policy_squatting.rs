//! `policy_name_squatting` against a root with a stock-like system bus
//! configuration, root services and a packaged root-only policy, the
//! squatting grants an attacker adds (in a planted file and in a packaged,
//! verifying one) and their benign twins: a grant of a name whose service
//! is not root's, a grant a later deny cancels, and the packaged root-only
//! grant itself. The query runs unchanged through the real binary
//! (`hunt --json --only`), and the exact rows are asserted.
mod common;

use common::hunt_root::{md5_hex, HuntRoot};
use std::collections::BTreeSet;

const SYSTEM_CONF: &str = "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
<busconfig><type>system</type>\
<policy context=\"default\"><deny own=\"*\"/><deny send_type=\"method_call\"/>\
<allow send_destination=\"org.freedesktop.DBus\"/></policy>\
<includedir>/etc/dbus-1/system.d</includedir>\
<includedir>/usr/share/dbus-1/system.d</includedir>\
</busconfig>\n";

/// As distributions ship them: root alone may own the name.
const KEYS_POLICY: &str =
    "<busconfig><policy user=\"root\"><allow own=\"org.example.Keys\"/></policy>\
<policy context=\"default\"><allow send_destination=\"org.example.Keys\"/></policy></busconfig>\n";

/// As distributions ship a daemon's policy: the root service's name goes to
/// the system account the daemon drops to.
const DAEMON_POLICY: &str = "<busconfig><policy user=\"polkitd\"><allow own=\"org.example.Daemon\"/></policy></busconfig>\n";

/// Installed by a package (it verifies) and still a squat.
const VENDOR_POLICY: &str =
    "<busconfig><policy user=\"alice\"><allow own=\"org.example.Keys\"/></policy></busconfig>\n";

fn planted() -> HuntRoot {
    let r = HuntRoot::new();
    r.write(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nmessagebus:x:100:102::/nonexistent:/usr/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/bash\npolkitd:x:997:997::/nonexistent:/usr/sbin/nologin\n",
    );
    r.write("/usr/share/dbus-1/system.conf", SYSTEM_CONF);
    let sys = "/usr/share/dbus-1/system-services";
    r.write(
        &format!("{sys}/org.example.Root.service"),
        "[D-BUS Service]\nName=org.example.Root\nExec=/usr/libexec/rootd\nUser=root\n",
    );
    r.write(
        &format!("{sys}/org.example.Locked.service"),
        "[D-BUS Service]\nName=org.example.Locked\nExec=/usr/libexec/lockedd\n",
    );
    r.write(
        &format!("{sys}/org.example.Unpriv.service"),
        "[D-BUS Service]\nName=org.example.Unpriv\nExec=/usr/libexec/unprivd\nUser=messagebus\n",
    );
    r.write(
        "/usr/share/dbus-1/system.d/org.example.Keys.conf",
        KEYS_POLICY,
    );
    r.write("/usr/share/dbus-1/system.d/vendor.conf", VENDOR_POLICY);
    r.write(
        &format!("{sys}/org.example.Daemon.service"),
        "[D-BUS Service]\nName=org.example.Daemon\nExec=/usr/libexec/daemond\nUser=root\n",
    );
    r.write(
        "/usr/share/dbus-1/system.d/org.example.Daemon.conf",
        DAEMON_POLICY,
    );
    // The same grant, planted: no package vouches for it.
    r.write("/etc/dbus-1/system.d/daemon-copy.conf", DAEMON_POLICY);
    r.write(
        "/var/lib/dpkg/info/example.list",
        &format!(
            "{sys}/org.example.Root.service\n{sys}/org.example.Unpriv.service\n/usr/share/dbus-1/system.d/org.example.Keys.conf\n/usr/share/dbus-1/system.d/vendor.conf\n/usr/share/dbus-1/system.d/org.example.Daemon.conf\n"
        ),
    );
    r.write(
        "/var/lib/dpkg/info/example.md5sums",
        &format!(
            "{}  usr/share/dbus-1/system.d/org.example.Keys.conf\n{}  usr/share/dbus-1/system.d/vendor.conf\n{}  usr/share/dbus-1/system.d/org.example.Daemon.conf\n",
            md5_hex(KEYS_POLICY.as_bytes()),
            md5_hex(VENDOR_POLICY.as_bytes()),
            md5_hex(DAEMON_POLICY.as_bytes())
        ),
    );
    // Planted: every connection may own the root service's name; console
    // users too; the staff group a whole namespace (org.example.Locked
    // excepted: a mandatory deny below takes it back for everyone).
    r.write(
        "/etc/dbus-1/system.d/zz-squat.conf",
        "<busconfig><policy context=\"default\"><allow own=\"org.example.Root\"/></policy>\
<policy at_console=\"true\"><allow own=\"org.example.Root\"/></policy>\
<policy group=\"staff\"><allow own_prefix=\"org.example\"/></policy></busconfig>\n",
    );
    // Benign twins: a name whose service runs as messagebus; a grant a
    // mandatory deny takes back.
    r.write(
        "/etc/dbus-1/system.d/aa-benign.conf",
        "<busconfig><policy context=\"default\"><allow own=\"org.example.Unpriv\"/>\
<allow own=\"org.example.Locked\"/></policy>\
<policy context=\"mandatory\"><deny own=\"org.example.Locked\"/></policy></busconfig>\n",
    );
    r
}

#[test]
fn squatting_grants_found_and_their_twins_not() {
    let r = planted();
    let rows = r.hunt("policy_name_squatting", "high");
    let got: BTreeSet<(String, String, String, String)> = rows
        .iter()
        .map(|row| {
            let s = |c: &str| row[c].as_str().unwrap_or_default().to_string();
            (s("path"), s("context"), s("root_name"), s("why"))
        })
        .collect();
    let squat = "/etc/dbus-1/system.d/zz-squat.conf".to_string();
    let root_svc = "its service runs as root".to_string();
    let root_only = "its packaged policy lets only root own it".to_string();
    let want: BTreeSet<(String, String, String, String)> = [
        (
            squat.clone(),
            "default".into(),
            "org.example.Root".into(),
            root_svc.clone(),
        ),
        (
            squat.clone(),
            "at_console".into(),
            "org.example.Root".into(),
            root_svc.clone(),
        ),
        (
            squat.clone(),
            "group".into(),
            "org.example.Root".into(),
            root_svc.clone(),
        ),
        (
            squat.clone(),
            "group".into(),
            "org.example.Daemon".into(),
            root_svc,
        ),
        (
            squat,
            "group".into(),
            "org.example.Keys".into(),
            root_only.clone(),
        ),
        (
            "/etc/dbus-1/system.d/daemon-copy.conf".into(),
            "user".into(),
            "org.example.Daemon".into(),
            "its service runs as root".into(),
        ),
        (
            "/usr/share/dbus-1/system.d/vendor.conf".into(),
            "user".into(),
            "org.example.Keys".into(),
            root_only,
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want, "{rows:#?}");
    let vendor = rows
        .iter()
        .find(|row| row["path"] == "/usr/share/dbus-1/system.d/vendor.conf")
        .expect("vendor row");
    assert_eq!(
        vendor["provenance"], "dpkg",
        "packaged, and still a finding"
    );
}
