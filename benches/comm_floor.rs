//! The comm floor: the least work the kernel makes anyone do to
//! name every process, so the process tables have a yardstick. It lists
//! `/proc` once and reads each `/proc/<pid>/comm` once (open, one read into
//! a stack buffer, close), printing `pid comm` lines.
//!
//! Run with `cargo bench --bench comm_floor -- [PROC_DIR]`; `scripts/bench.sh`
//! runs the built binary directly next to `osquery-dbus` and `ps`.
use rustix::fs::{openat, Dir, Mode, OFlags, CWD};
use std::io::Write;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .filter(|a| a != "--bench")
        .unwrap_or_else(|| "/proc".into());
    let proc_fd = match openat(
        CWD,
        dir.as_str(),
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("comm_floor: {dir}: {e}");
            std::process::exit(1);
        }
    };
    let entries = match Dir::read_from(&proc_fd) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("comm_floor: {dir}: {e}");
            std::process::exit(1);
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut path = Vec::with_capacity(32);
    let mut buf = [0u8; 64];
    let mut count = 0usize;
    for entry in entries.flatten() {
        let name = entry.file_name().to_bytes();
        if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
            continue;
        }
        path.clear();
        path.extend_from_slice(name);
        path.extend_from_slice(b"/comm");
        let Ok(fd) = openat(&proc_fd, path.as_slice(), OFlags::RDONLY, Mode::empty()) else {
            continue; // exited since the listing
        };
        let Ok(n) = rustix::io::read(&fd, &mut buf) else {
            continue;
        };
        let comm = buf[..n].strip_suffix(b"\n").unwrap_or(&buf[..n]);
        let _ = out.write_all(name);
        let _ = out.write_all(b" ");
        let _ = out.write_all(comm);
        let _ = out.write_all(b"\n");
        count += 1;
    }
    let _ = out.flush();
    if count == 0 {
        std::process::exit(1);
    }
}
