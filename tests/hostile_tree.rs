//! Hostile file trees under a temporary `--root`, through the real binary:
//! what an unprivileged user (or whoever built a container image) can leave
//! in the directories we scan as root. Every query must answer within a
//! bound, read nothing it should not, and say what it skipped in its rows
//! (`type`, `symlink_target`, `error`), never by failing.
use serde_json::{Map, Value};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type JsonRow = Map<String, Value>;

/// Content no query may ever show: it sits in a file only a symlink
/// planted in a user's home points at, standing in for `/etc/shadow`.
const MARKER: &str = "MARKER-shadow-7f3a9c1e-never-read";

struct Answer {
    rows: Vec<JsonRow>,
    stdout: String,
    elapsed: Duration,
}

/// Runs `query --json SQL` under `root`. Output is drained by threads, so a
/// large answer cannot stall the child on a full pipe; a child still
/// running after `limit` is killed and the test fails (a FIFO opened for
/// reading would block forever).
fn query(root: &Path, sql: &str, limit: Duration) -> Answer {
    let start = Instant::now();
    // Live processes (the fake buses below) with a hostile file tree:
    // --root alone would read processes from ROOT/proc.
    let mut child = Command::new(env!("CARGO_BIN_EXE_osquery-dbus"))
        .arg("--root")
        .arg(root)
        .args(["--proc", "/proc"])
        .args(["query", "--json", sql])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).expect("read child output");
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("query still running after {limit:?}: {sql}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    let stdout = String::from_utf8(out.join().unwrap()).expect("UTF-8 output");
    let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    assert!(status.success(), "{sql}: {status}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{sql}: {stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("JSON");
    let rows = v
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r.as_object().expect("object").clone())
        .collect();
    Answer {
        rows,
        stdout,
        elapsed,
    }
}

fn s<'a>(row: &'a JsonRow, col: &str) -> &'a str {
    row.get(col).and_then(Value::as_str).unwrap_or("")
}

fn by_filename<'a>(rows: &'a [JsonRow], name: &str) -> &'a JsonRow {
    let found: Vec<&JsonRow> = rows.iter().filter(|r| s(r, "filename") == name).collect();
    assert_eq!(found.len(), 1, "rows named {name:?}: {found:?}");
    found[0]
}

fn write(root: &Path, inner: &str, bytes: &[u8]) -> PathBuf {
    let p = root.join(inner.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

fn mkdir(root: &Path, inner: &str) -> PathBuf {
    let p = root.join(inner.trim_start_matches('/'));
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o666),
        0,
    )
    .expect("mkfifo");
}

const SERVICES: &str = "/usr/share/dbus-1/services";
const SYSTEM_SERVICES: &str = "/usr/share/dbus-1/system-services";
const DEPTH: usize = 1000;

/// The deep directory's path inside the root: `/deep/d/d/…` (`DEPTH` levels
/// below `/deep`).
fn deep_path() -> String {
    let mut p = String::from("/deep");
    for _ in 0..DEPTH {
        p.push_str("/d");
    }
    p
}

/// Builds every hostile entry but the big ones (see the other tests).
fn hostile_root() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    write(
        r,
        "/etc/passwd",
        b"root:x:0:0:root:/root:/bin/bash\n\
eve:x:1000:1000::/home/eve:/bin/sh\n\
mal:x:1001:1001::/home/mal:/bin/sh\n",
    );
    write(r, "/etc/group", b"root:x:0:\n");
    // The stand-in for /etc/shadow, and eve's link to it.
    write(
        r,
        "/secret/shadow",
        format!("root:{MARKER}:0:\n").as_bytes(),
    );
    let eve = mkdir(r, "/home/eve/.local/share/dbus-1/services");
    symlink("/secret/shadow", eve.join("shadow.service")).unwrap();
    // Also the real /etc/shadow, absolute: inside a root it means the
    // root's own (absent) file, and is never followed anyway.
    symlink("/etc/shadow", eve.join("etc-shadow.service")).unwrap();
    // mal's home is a link to `/`: the image's `/`, never the host's.
    mkdir(r, "/home");
    symlink("/", r.join("home/mal")).unwrap();
    write(
        r,
        "/.local/share/dbus-1/services/org.inside.service",
        b"[D-BUS Service]\nName=org.inside\nExec=/bin/inside\n",
    );

    let sys = mkdir(r, SYSTEM_SERVICES);
    mkfifo(&sys.join("evil.service"));
    let svc = mkdir(r, SERVICES);
    // Symlink loops: a pair, a self-link, and a directory loop.
    symlink("loop2.service", svc.join("loop1.service")).unwrap();
    symlink("loop1.service", svc.join("loop2.service")).unwrap();
    symlink("self.service", svc.join("self.service")).unwrap();
    symlink(".", svc.join("dot.service")).unwrap();
    // Names with a newline, invalid UTF-8, and both.
    std::fs::write(
        svc.join("new\nline.service"),
        b"[D-BUS Service]\nName=org.newline\nExec=/bin/nl\n",
    )
    .unwrap();
    std::fs::write(svc.join(OsStr::from_bytes(b"bad\xff\xfe.service")), b"x").unwrap();
    std::fs::write(svc.join(OsStr::from_bytes(b"\n\xc3.service")), b"").unwrap();
    // A deep directory inside a scanned one (listed, not descended into),
    // and a config that names its bottom as a servicedir.
    let deep = deep_path();
    let bottom = mkdir(r, &format!("{SERVICES}/{deep}"));
    std::fs::write(
        bottom.join("org.deep.service"),
        b"[D-BUS Service]\nName=org.deep\nExec=/bin/deep\n",
    )
    .unwrap();
    let conf = format!(
        "<busconfig><type>system</type>\
<servicedir>{SERVICES}{deep}</servicedir>\
<servicedir>/loopdir</servicedir>\
<includedir>/loopdir</includedir>\
<include>/etc/dbus-1/system.conf</include>\
</busconfig>"
    );
    write(r, "/etc/dbus-1/system.conf", conf.as_bytes());
    symlink("/loopdir", r.join("loopdir")).unwrap();
    tmp
}

#[test]
fn hostile_entries_answer_fast_and_read_nothing_they_should_not() {
    let tmp = hostile_root();
    let r = tmp.path();
    let a = query(
        r,
        "SELECT * FROM dbus_service_files",
        Duration::from_secs(20),
    );
    eprintln!("hostile tree: {} rows in {:?}", a.rows.len(), a.elapsed);
    assert!(a.elapsed < Duration::from_secs(10), "{:?}", a.elapsed);
    // Never read: neither the marker nor anything derived from it shows.
    assert!(!a.stdout.contains(MARKER), "the shadow stand-in was read");

    let shadow = by_filename(&a.rows, "shadow.service");
    assert_eq!(s(shadow, "type"), "symlink");
    assert_eq!(s(shadow, "symlink_target"), "/secret/shadow");
    assert_eq!(
        s(shadow, "sha256"),
        "",
        "a link in a home is never followed"
    );
    assert_eq!(s(shadow, "service_name"), "");
    assert_eq!(
        s(by_filename(&a.rows, "etc-shadow.service"), "symlink_target"),
        "/etc/shadow"
    );

    // The home linked to `/` resolves inside the root.
    let inside = by_filename(&a.rows, "org.inside.service");
    assert_eq!(
        s(inside, "path"),
        "/home/mal/.local/share/dbus-1/services/org.inside.service"
    );
    assert_eq!(s(inside, "service_name"), "org.inside");
    assert_eq!(s(inside, "user_uid"), "1001");

    let fifo = by_filename(&a.rows, "evil.service");
    assert_eq!(s(fifo, "type"), "fifo");
    assert_eq!(s(fifo, "service_name"), "");
    assert_eq!(s(fifo, "sha256"), "");

    for name in [
        "loop1.service",
        "loop2.service",
        "self.service",
        "dot.service",
    ] {
        assert_eq!(s(by_filename(&a.rows, name), "type"), "symlink", "{name}");
    }

    let nl = by_filename(&a.rows, "new\nline.service");
    assert_eq!(s(nl, "service_name"), "org.newline");
    assert_eq!(s(nl, "path"), format!("{SERVICES}/new\nline.service"));
    // Invalid UTF-8 renders as \xNN, in the path *and* in the error text.
    let bad = by_filename(&a.rows, "bad\\xff\\xfe.service");
    assert_eq!(s(bad, "path"), format!("{SERVICES}/bad\\xff\\xfe.service"));
    assert!(
        s(bad, "error").starts_with(&format!("{SERVICES}/bad\\xff\\xfe.service: ")),
        "{}",
        s(bad, "error")
    );
    assert!(
        !a.stdout.contains('\u{fffd}'),
        "a name was rendered lossily"
    );
    by_filename(&a.rows, "\n\\xc3.service");

    // The deep directory is one row; its bottom, named by a config, is read.
    assert_eq!(s(by_filename(&a.rows, "deep"), "type"), "directory");
    let bottom = by_filename(&a.rows, "org.deep.service");
    assert_eq!(s(bottom, "service_name"), "org.deep");
    assert_eq!(s(bottom, "directory").len(), SERVICES.len() + 5 + 2 * DEPTH);

    // The looping servicedir and includedir are reported, not followed.
    let looped: Vec<&JsonRow> = a
        .rows
        .iter()
        .filter(|r| s(r, "path").starts_with("/loopdir"))
        .collect();
    assert!(!looped.is_empty(), "the looping servicedir is not reported");
    for l in &looped {
        assert!(!s(l, "error").is_empty(), "{l:?}");
    }
    let conf = by_filename(&a.rows, "system.conf");
    assert_eq!(s(conf, "path"), "/etc/dbus-1/system.conf");

    // Everything listed exists inside the root, not on the host.
    for row in &a.rows {
        let p = s(row, "path");
        if p.contains("\\x") || p.starts_with("/loopdir") {
            continue;
        }
        let inner = r.join(p.trim_start_matches('/'));
        let resolved = rustix::fs::openat2(
            rustix::fs::CWD,
            r,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
            rustix::fs::ResolveFlags::empty(),
        )
        .and_then(|root| {
            rustix::fs::openat2(
                &root,
                p.trim_start_matches('/'),
                rustix::fs::OFlags::PATH | rustix::fs::OFlags::NOFOLLOW,
                rustix::fs::Mode::empty(),
                rustix::fs::ResolveFlags::IN_ROOT,
            )
        });
        assert!(
            resolved.is_ok(),
            "{p} is not inside the root ({})",
            inner.display()
        );
    }
}

#[test]
fn a_2_gib_sparse_file_is_read_only_up_to_the_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    let svc = mkdir(r, SYSTEM_SERVICES);
    let huge = std::fs::File::create(svc.join("huge.service")).unwrap();
    huge.set_len(2 * 1024 * 1024 * 1024).unwrap();
    // Also the head of a valid file, then 2 GiB of holes.
    let mut head = std::fs::File::create(svc.join("head.service")).unwrap();
    std::io::Write::write_all(
        &mut head,
        b"[D-BUS Service]\nName=org.head\nExec=/bin/head\n",
    )
    .unwrap();
    head.set_len(2 * 1024 * 1024 * 1024).unwrap();
    let a = query(
        r,
        "SELECT filename, size, service_name, error FROM dbus_service_files",
        Duration::from_secs(20),
    );
    eprintln!("2 GiB sparse files: answered in {:?}", a.elapsed);
    assert!(a.elapsed < Duration::from_secs(5), "{:?}", a.elapsed);
    for name in ["huge.service", "head.service"] {
        let row = by_filename(&a.rows, name);
        assert_eq!(s(row, "size"), "2147483648");
        assert!(
            s(row, "error").contains(&format!(
                "larger than {cap} bytes; only the first {cap} parsed",
                cap = osquery_dbus::sources::service_file::MAX_SERVICE_FILE_BYTES
            )),
            "{}",
            s(row, "error")
        );
    }
    assert_eq!(
        s(by_filename(&a.rows, "head.service"), "service_name"),
        "org.head"
    );
    // The hash has its own cap (256 MiB), checked against the size before
    // reading: a 2 GiB file is refused at once, not after 256 MiB.
    let a = query(
        r,
        "SELECT filename, sha256, error FROM dbus_service_files",
        Duration::from_secs(60),
    );
    eprintln!(
        "2 GiB sparse files with sha256: answered in {:?}",
        a.elapsed
    );
    assert!(a.elapsed < Duration::from_secs(5), "{:?}", a.elapsed);
    for name in ["huge.service", "head.service"] {
        let row = by_filename(&a.rows, name);
        assert_eq!(s(row, "sha256"), "");
        assert!(s(row, "error").contains("not hashed"), "{row:?}");
    }
}

#[test]
fn a_hundred_thousand_files_in_one_directory() {
    const FILES: usize = 100_000;
    let tmp = tempfile::tempdir().unwrap();
    let svc = mkdir(tmp.path(), SERVICES);
    let made = Instant::now();
    for i in 0..FILES {
        std::fs::File::create(svc.join(format!("org.n{i}.service"))).unwrap();
    }
    eprintln!("created {FILES} files in {:?}", made.elapsed());
    let a = query(
        tmp.path(),
        "SELECT count(*) AS n, count(error) AS e FROM dbus_service_files \
         WHERE directory = '/usr/share/dbus-1/services'",
        Duration::from_secs(60),
    );
    eprintln!(
        "{FILES} files, every one opened and parsed: {:?}",
        a.elapsed
    );
    assert_eq!(s(&a.rows[0], "n"), FILES.to_string());
    assert!(a.elapsed < Duration::from_secs(20), "{:?}", a.elapsed);
    let a = query(
        tmp.path(),
        "SELECT path, mtime FROM dbus_service_files",
        Duration::from_secs(60),
    );
    eprintln!("{FILES} files, metadata only: {:?}", a.elapsed);
    assert_eq!(a.rows.len(), FILES);
    assert!(a.elapsed < Duration::from_secs(20), "{:?}", a.elapsed);
}

/// Files that appear, vanish and change type (regular, FIFO, symlink,
/// directory) under one name and under fresh names, while queries run.
#[test]
fn entries_churning_during_scans() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path().to_path_buf();
    let svc = mkdir(&r, SERVICES);
    for i in 0..200 {
        write(
            &r,
            &format!("{SERVICES}/org.stable{i}.service"),
            b"[D-BUS Service]\nName=x\nExec=/bin/x\n",
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let churned = Arc::new(AtomicUsize::new(0));
    let churner = {
        let (stop, churned, svc) = (stop.clone(), churned.clone(), svc.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let flip = svc.join("flip.service");
                let fresh = svc.join(format!("org.fresh{}.service", n % 50));
                match n % 4 {
                    0 => {
                        let _ = std::fs::write(&flip, b"[D-BUS Service]\nName=flip\n");
                    }
                    1 => mkfifo_quiet(&flip),
                    2 => {
                        let _ = symlink("/secret", &flip);
                    }
                    _ => {
                        let _ = std::fs::create_dir(&flip);
                    }
                }
                let _ = std::fs::write(&fresh, b"[D-BUS Service]\nName=fresh\n");
                let _ = std::fs::remove_file(&flip).or_else(|_| std::fs::remove_dir(&flip));
                let _ =
                    std::fs::remove_file(svc.join(format!("org.fresh{}.service", (n + 25) % 50)));
                n += 1;
                churned.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let started = Instant::now();
    let mut queries = 0;
    while queries < 8 || started.elapsed() < Duration::from_secs(2) {
        let a = query(
            &r,
            "SELECT * FROM dbus_service_files",
            Duration::from_secs(20),
        );
        let stable = a
            .rows
            .iter()
            .filter(|row| s(row, "filename").starts_with("org.stable"))
            .count();
        assert_eq!(stable, 200, "a stable file went missing");
        for row in &a.rows {
            let e = s(row, "error");
            // Only churning entries may carry errors, and only in `error`.
            if !e.is_empty() {
                let f = s(row, "filename");
                assert!(
                    f.starts_with("flip") || f.starts_with("org.fresh"),
                    "{f}: {e}"
                );
            }
        }
        queries += 1;
    }
    stop.store(true, Ordering::Relaxed);
    churner.join().unwrap();
    eprintln!(
        "{queries} queries in {:?} while {} churn rounds ran",
        started.elapsed(),
        churned.load(Ordering::Relaxed)
    );
    assert!(churned.load(Ordering::Relaxed) > 0);
}

fn mkfifo_quiet(path: &Path) {
    let _ = rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o666),
        0,
    );
}

/// A config fragment (what a user with write access to `system.d`, or an
/// image builder, controls) naming 30,000 servicedirs, next to one nested
/// 120,000 elements deep. Found here: the directory list was de-duplicated
/// by scanning it for every new entry, so this query took 110 s.
#[test]
fn configs_naming_thirty_thousand_dirs_or_nested_deep() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    let mut wide = String::from("<busconfig>");
    for i in 0..30_000 {
        wide.push_str(&format!("<servicedir>/d{i}</servicedir>"));
    }
    wide.push_str("<servicedir>/srv/real</servicedir></busconfig>");
    write(r, "/etc/dbus-1/system.d/wide.conf", wide.as_bytes());
    let n = 120_000;
    let deep = format!(
        "<busconfig>{}{}</busconfig>",
        "<a>".repeat(n),
        "</a>".repeat(n)
    );
    write(r, "/etc/dbus-1/system.d/deep.conf", deep.as_bytes());
    write(
        r,
        "/srv/real/org.real.service",
        b"[D-BUS Service]\nName=org.real\nExec=/bin/real\n",
    );
    let a = query(
        r,
        "SELECT filename, service_name, error FROM dbus_service_files",
        Duration::from_secs(60),
    );
    eprintln!("30,000 servicedirs and 120,000-deep XML: {:?}", a.elapsed);
    assert!(a.elapsed < Duration::from_secs(10), "{:?}", a.elapsed);
    assert_eq!(
        s(by_filename(&a.rows, "org.real.service"), "service_name"),
        "org.real"
    );
    assert_eq!(s(by_filename(&a.rows, "deep.conf"), "error"), "");
    assert_eq!(s(by_filename(&a.rows, "wide.conf"), "error"), "");
}

/// Any user may start a bus: a program named `dbus-daemon` (here a copy of
/// python3) whose command line names a FIFO, a 3 GiB sparse file, a
/// device or a magic link as its `--config-file`. The daemon-children
/// table reads such configs to find service directories: it must neither
/// block nor read without bound.
#[test]
fn fake_buses_naming_a_fifo_a_device_or_a_huge_config() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("dbus-daemon");
    let python = std::fs::canonicalize("/usr/bin/python3").expect("python3");
    std::fs::copy(&python, &fake).unwrap();
    // The configs are named by paths inside a scratch root that exist
    // nowhere on the host, and queried with `--root` on it: another
    // process scanning the live host (a concurrent test run with older
    // code) then cannot be the one that opens the FIFO.
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let fifo = r.join("fifo-7f3a9c1e.conf");
    mkfifo(&fifo);
    std::fs::File::create(r.join("big-7f3a9c1e.conf"))
        .unwrap()
        .set_len(3 * 1024 * 1024 * 1024)
        .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        r.join("zero-7f3a9c1e"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 5),
    )
    .expect("mknod /dev/zero twin");
    symlink("/proc/self/mem", r.join("mem-7f3a9c1e.conf")).unwrap();
    let configs = [
        "/fifo-7f3a9c1e.conf",
        "/big-7f3a9c1e.conf",
        "/zero-7f3a9c1e",
        "/mem-7f3a9c1e.conf",
        "/proc/self/fd/0",
    ];
    let mut buses: Vec<std::process::Child> = configs
        .iter()
        .map(|cfg| {
            Command::new(&fake)
                .args([
                    "-c",
                    "import subprocess,sys,time; c=subprocess.Popen(['sleep','20']); \
                     sys.stdin.read(); c.kill()",
                    // No --session/--system: the type comes from the config.
                    &format!("--config-file={cfg}"),
                ])
                .stdin(Stdio::piped())
                .spawn()
                .expect("fake bus")
        })
        .collect();
    // A writer blocked opening the FIFO is released by any reader: it
    // shows whether the query opened it.
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::OpenOptions::new().write(true).open(fifo))
    };
    // Each fake bus has started its child (python starts slowly on a busy
    // machine), and the writer is blocked.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20)
        && !buses.iter().all(|b| {
            let pid = b.id();
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .is_ok_and(|c| !c.trim().is_empty())
        })
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let result = std::panic::catch_unwind(|| {
        let a = query(
            r,
            "SELECT * FROM dbus_daemon_children",
            Duration::from_secs(20),
        );
        eprintln!("fake buses: answered in {:?}", a.elapsed);
        a
    });
    // Closing stdin ends each fake bus and its child.
    for b in &mut buses {
        drop(b.stdin.take());
    }
    for b in &mut buses {
        let _ = b.wait();
    }
    std::thread::sleep(Duration::from_millis(100));
    let fifo_opened = writer.is_finished();
    // Release the writer.
    drop(
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&fifo)
            .unwrap(),
    );
    let _ = writer.join();
    let a = result.unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert!(!fifo_opened, "the FIFO named as a bus config was opened");
    assert!(a.elapsed < Duration::from_secs(10), "{:?}", a.elapsed);
    for b in &buses {
        let pid = b.id().to_string();
        let children: Vec<&JsonRow> = a.rows.iter().filter(|r| s(r, "parent") == pid).collect();
        assert_eq!(
            children.len(),
            1,
            "children of fake bus {pid}: {:?}",
            a.rows
        );
        assert_eq!(s(children[0], "cmdline"), "sleep 20");
    }
}

/// An image whose `etc/passwd` is a FIFO and whose `etc/group` links to
/// the host's: `users` and `groups` answer at once, empty, and the scan of
/// service files still covers the system directories.
#[test]
fn a_fifo_passwd_and_a_linked_group_file() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    mkdir(r, "/etc");
    mkfifo(&r.join("etc/passwd"));
    symlink("/etc/group", r.join("etc/group")).unwrap();
    write(
        r,
        &format!("{SYSTEM_SERVICES}/org.x.service"),
        b"[D-BUS Service]\nName=org.x\nExec=/bin/x\n",
    );
    for (sql, rows) in [
        ("SELECT * FROM users", 0),
        ("SELECT * FROM groups", 0),
        ("SELECT path FROM dbus_service_files", 1),
        ("SELECT * FROM dbus_daemon_children", usize::MAX),
    ] {
        let a = query(r, sql, Duration::from_secs(10));
        if rows != usize::MAX {
            assert_eq!(a.rows.len(), rows, "{sql}: {:?}", a.rows);
        }
    }
}
