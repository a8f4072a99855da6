//! Least surprise as root: the binary reads, and does nothing else. Under
//! `strace` it never executes a program (beyond its own start), never opens
//! a file for writing, creating or truncating, never changes the file
//! system except for binding and removing its own socket, and writes only
//! to its stdout/stderr and sockets. And it works when the whole file
//! system is read-only (a `ProtectSystem=strict` style sandbox), shown with
//! a private mount namespace. docs/security.md describes both.
mod common;

use common::ext::{Client, Hold};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_osquery-dbus");

/// The syscalls traced: every file-name syscall (`%file`), `execve`, and
/// every way of writing or unlinking.
const TRACE: &str = "trace=%file,execve,execveat,write,writev,pwrite64,pwritev,pwritev2,\
sendto,sendmsg,sendmmsg,ftruncate,fallocate,fchmod,fchown,copy_file_range,splice";

/// Syscalls that change the file system by name. Only `unlink` of the
/// extension's own socket (and `bind`, not traced here) is allowed.
const MUTATING: &[&str] = &[
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "mkdir",
    "mkdirat",
    "rmdir",
    "chmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "lchown",
    "fchownat",
    "truncate",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "mknod",
    "mknodat",
    "utime",
    "utimes",
    "utimensat",
    "futimesat",
    "setxattr",
    "lsetxattr",
    "removexattr",
    "lremovexattr",
    "creat",
    "ftruncate",
    "fallocate",
    "fchmod",
    "fchown",
    "copy_file_range",
];

fn strace_available() -> bool {
    Command::new("strace")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A small root with the usual suspects: service files, a FIFO, links.
fn fixture_root() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    let svc = r.join("usr/share/dbus-1/system-services");
    std::fs::create_dir_all(&svc).unwrap();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::create_dir_all(r.join("usr/libexec")).unwrap();
    std::fs::write(r.join("usr/libexec/helper"), b"#!/bin/sh\n").unwrap();
    std::fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(r.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(
        svc.join("org.a.service"),
        "[D-BUS Service]\nName=org.a\nExec=/usr/libexec/helper --x\nUser=root\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/shadow", svc.join("link.service")).unwrap();
    // Package databases, so the package lookup runs too: SQLite must open
    // the rpmdb read-only and leave no journal, WAL or lock file behind.
    std::fs::create_dir_all(r.join("var/lib/dpkg/info")).unwrap();
    std::fs::write(r.join("var/lib/dpkg/status"), b"").unwrap();
    std::fs::write(
        r.join("var/lib/dpkg/info/helper.list"),
        b"/usr/libexec/helper\n",
    )
    .unwrap();
    std::fs::create_dir_all(r.join("var/lib/rpm")).unwrap();
    let db = rusqlite::Connection::open(r.join("var/lib/rpm/rpmdb.sqlite")).unwrap();
    db.execute_batch(
        "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL);
         INSERT INTO Packages (blob) VALUES (x'00000000000000');",
    )
    .unwrap();
    drop(db);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        svc.join("fifo.service"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    tmp
}

/// One traced syscall: its name and the whole line.
struct Call<'a> {
    name: &'a str,
    line: &'a str,
}

fn calls(trace: &str) -> Vec<Call<'_>> {
    trace
        .lines()
        .filter_map(|line| {
            // "<pid> name(args...) = result"
            let rest = line.split_once(' ').map_or(line, |(_, r)| r).trim_start();
            let name = rest.split('(').next()?;
            (!name.is_empty() && !name.starts_with('+') && !name.starts_with('-'))
                .then_some(Call { name, line })
        })
        .collect()
}

/// Checks a trace against the rules (`own_socket` may be unlinked): the
/// number of calls traced, or the first violation.
fn violation(trace: &str, own_socket: Option<&Path>) -> Result<usize, String> {
    let calls = calls(trace);
    if calls.is_empty() {
        return Err("empty trace".into());
    }
    let mut execs = 0;
    for c in &calls {
        let l = c.line;
        match c.name {
            "execve" | "execveat" => execs += 1,
            "open" | "openat" | "openat2" => {
                for flag in [
                    "O_WRONLY",
                    "O_RDWR",
                    "O_CREAT",
                    "O_TRUNC",
                    "O_APPEND",
                    "O_TMPFILE",
                ] {
                    if l.contains(flag) {
                        return Err(format!("opened for writing: {l}"));
                    }
                }
            }
            "write" | "writev" | "pwrite64" | "pwritev" | "pwritev2" | "sendto" | "sendmsg"
            | "sendmmsg" | "splice" => {
                // strace -y decorates the descriptor: fd<what>.
                let target = l
                    .split_once('<')
                    .and_then(|(_, t)| t.split_once('>'))
                    .map(|(t, _)| t)
                    .unwrap_or("");
                // Descriptors 1 and 2 are what the caller gave (osqueryd
                // may send stderr to a file); any other must be a pipe or
                // a socket.
                let fd = l
                    .split_once('(')
                    .and_then(|(_, a)| a.split_once('<'))
                    .map(|(fd, _)| fd)
                    .unwrap_or("");
                let allowed = fd == "1"
                    || fd == "2"
                    || target.starts_with("pipe:")
                    || target.starts_with("socket:")
                    || target.starts_with("UNIX")
                    || target == "/dev/null"
                    || target.starts_with("/dev/pts/");
                if !allowed {
                    return Err(format!("wrote to {target:?}: {l}"));
                }
            }
            "unlink" | "unlinkat"
                if own_socket.is_some_and(|s| l.contains(&*s.to_string_lossy())) => {}
            name if MUTATING.contains(&name) => {
                // A failed call changed nothing, but none should be tried.
                return Err(format!("changes the file system: {l}"));
            }
            _ => {}
        }
    }
    if execs != 1 {
        return Err(format!("{execs} execs (only its own start is allowed)"));
    }
    Ok(calls.len())
}

fn check(trace: &str, own_socket: Option<&Path>, what: &str) -> usize {
    violation(trace, own_socket).unwrap_or_else(|e| panic!("{what}: {e}\n{trace}"))
}

fn strace(args: &[&str], out: &Path) -> Command {
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-y", "-e", TRACE, "-o"])
        .arg(out)
        .arg(BIN)
        .args(args);
    cmd
}

#[test]
fn queries_and_hunts_under_strace_only_read() {
    if !strace_available() {
        panic!("strace is not installed (.ci/run installs it)");
    }
    let root = fixture_root();
    let rootarg = root.path().to_str().unwrap().to_string();
    let work = tempfile::tempdir().unwrap();
    for (name, args, ok_codes) in [
        (
            "query --root",
            vec![
                "--root",
                &rootarg,
                "query",
                "--json",
                "SELECT * FROM dbus_service_files",
            ],
            &[0][..],
        ),
        (
            "query /",
            vec!["query", "--json", "SELECT * FROM dbus_service_files"],
            &[0],
        ),
        (
            "daemon children",
            vec!["query", "--json", "SELECT * FROM dbus_daemon_children"],
            &[0],
        ),
        // hunt exits 1 when a pack query finds something.
        ("hunt --root", vec!["--root", &rootarg, "hunt"], &[0, 1]),
        (
            "packages",
            vec![
                "--root",
                &rootarg,
                "query",
                "--json",
                "SELECT path, package FROM dbus_service_files",
            ],
            &[0],
        ),
    ] {
        let out = work
            .path()
            .join(format!("{}.trace", name.replace(['/', ' '], "_")));
        let status = strace(&args, &out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run strace");
        assert!(
            status.code().is_some_and(|c| ok_codes.contains(&c)),
            "{name}: {status}"
        );
        let trace = std::fs::read_to_string(&out).unwrap();
        let n = check(&trace, None, name);
        if name == "packages" {
            assert!(trace.contains("rpmdb.sqlite"), "the rpmdb was not read");
        }
        eprintln!("{name}: {n} traced syscalls, no exec, no write outside stdout/stderr");
    }
}

#[test]
fn the_extension_under_strace_writes_only_to_sockets() {
    if !strace_available() {
        panic!("strace is not installed (.ci/run installs it)");
    }
    let root = fixture_root();
    let (mut hold, ev) = Hold::start(root.path());
    let sock = PathBuf::from(ev["socket"].as_str().unwrap());
    let pid = ev["pid"].as_u64().unwrap().to_string();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ext.trace");
    let mut tracer = Command::new("strace")
        .args(["-f", "-qq", "-y", "-e", TRACE, "-o"])
        .arg(&out)
        .args(["-p", &pid])
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace -p");
    // strace prints nothing on attach with -qq: give it a moment, then
    // check it is still there.
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        tracer.try_wait().unwrap().is_none(),
        "strace could not attach"
    );
    let mut c = Client::connect(&sock, Duration::from_secs(10)).unwrap();
    assert_eq!(c.ping().unwrap(), 0);
    let ctx =
        r#"{"constraints":[],"colsUsed":["path","sha256","exec_sha256","service_name","package"]}"#;
    let r = c.generate(ctx).unwrap();
    assert_eq!(r.code, 0, "{}", r.message);
    assert!(r.rows.len() >= 3);
    c.shutdown().unwrap();
    let exit = hold.command("wait");
    assert_eq!(exit["returncode"], 0, "{exit}");
    let t = Instant::now();
    while tracer.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = tracer.kill();
    let _ = tracer.wait();
    let trace = std::fs::read_to_string(&out).unwrap();
    // Attached after exec: the rule is then "no execve at all".
    let trace_with_start = format!("0 execve(\"{BIN}\") = 0\n{trace}");
    let n = check(&trace_with_start, Some(&sock), "extension");
    assert!(
        trace.contains("unlink") && trace.contains(&*sock.to_string_lossy()),
        "the socket was not removed on shutdown:\n{trace}"
    );
    eprintln!(
        "extension: {n} traced syscalls; writes only to sockets and stderr; removed its socket"
    );
}

/// A shell script that makes every mount read-only in a private mount
/// namespace, gives the socket directory (`$1`) a fresh tmpfs (osquery's
/// `ReadWritePaths`), then runs the rest of the arguments.
const READ_ONLY: &str = r#"
set -e
mount --make-rprivate /
awk '{print $2}' /proc/self/mounts | sort -u | while read -r mp; do
  case "$mp" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue;; esac
  mount -o remount,bind,ro "$mp" 2>/dev/null || true
done
rw="$1"; shift
if touch /probe-$$ 2>/dev/null; then echo "root still writable" >&2; exit 97; fi
mount -t tmpfs -o size=16m tmpfs "$rw"
exec "$@"
"#;

fn unshare_works() -> bool {
    Command::new("unshare")
        .args(["-m", "true"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn works_with_a_read_only_file_system() {
    if !unshare_works() {
        eprintln!("SKIPPED: unshare -m is not permitted here");
        return;
    }
    let root = fixture_root();
    let rw = tempfile::tempdir().unwrap();
    // Standalone: a query over a root and over `/`.
    for args in [
        vec![
            "--root",
            root.path().to_str().unwrap(),
            "query",
            "--json",
            "SELECT path, service_name, error FROM dbus_service_files",
        ],
        vec![
            "query",
            "--json",
            "SELECT count(*) AS n FROM dbus_service_files",
        ],
    ] {
        let out = Command::new("unshare")
            .args(["-m", "sh", "-c", READ_ONLY, "sh"])
            .arg(rw.path())
            .arg(BIN)
            .args(&args)
            .output()
            .expect("unshare");
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert!(!rows.as_array().unwrap().is_empty());
    }
    // Extension mode: the core's socket and ours live in the one writable
    // directory; one generate is served.
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", READ_ONLY, "sh"])
        .arg(rw.path())
        .arg(common::peer_python())
        .arg(common::peer_script("fake_core.py"))
        .args(["generate", "--bin", BIN, "--workdir"])
        .arg(rw.path())
        .arg("--root")
        .arg(root.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("unshare");
    assert!(
        out.status.success(),
        "extension: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let obs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(obs["status"]["code"], 0, "{obs}");
    let paths: Vec<&str> = obs["response"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["path"].as_str())
        .collect();
    assert!(
        paths.contains(&"/usr/share/dbus-1/system-services/org.a.service"),
        "{paths:?}"
    );
    eprintln!("read-only file system: query over a root, over /, and extension mode all served");
}

/// The rules above catch what they are for (a trace of `sh -c 'echo hi >
/// /tmp/p; rm /tmp/p'`).
#[test]
fn the_trace_checker_catches_writes_execs_and_unlinks() {
    let exec = "1 execve(\"/usr/bin/sh\", [\"sh\"], 0x7ffc /* 35 vars */) = 0\n";
    let bad = [
        "1 openat(AT_FDCWD</tmp>, \"/tmp/p\", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 3</tmp/p>",
        "1 write(3</tmp/p>, \"hi\\n\", 3) = 3",
        "2 execve(\"/usr/bin/rm\", [\"rm\", \"/tmp/p\"], 0x5615 /* 35 vars */) = 0",
        "2 unlinkat(AT_FDCWD</tmp>, \"/tmp/p\", 0) = 0",
    ];
    for line in bad {
        let trace = format!("{exec}{line}\n");
        assert!(violation(&trace, None).is_err(), "not caught: {line}");
    }
    let fine = format!(
        "{exec}1 openat(AT_FDCWD</>, \"/etc/passwd\", O_RDONLY|O_CLOEXEC) = 3</etc/passwd>\n\
         1 write(2<pipe:[123]>, \"x\", 1) = 1\n\
         1 unlinkat(AT_FDCWD</>, \"/run/osq.sock.7\", 0) = 0\n"
    );
    check(&fine, Some(Path::new("/run/osq.sock.7")), "fine");
}
