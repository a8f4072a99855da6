//! What the file-events collector costs to follow absent directories, and
//! how soon a directory made with `mkdir -p` is watched.
//!
//! ```text
//! cargo bench --bench file_watch [-- --homes N] [--reps N] [--inotify]
//! ```
//!
//! Builds a temp root with N accounts (default 500), every home existing,
//! a third with `~/.local/share` (so a chain of three directories waits
//! there), none with a services directory. Prints, as `label median min
//! max`: `discover_ms` (`service_dirs::discover` alone, for scale),
//! `start_ms` (a collector's first discovery and marks, from a fresh
//! watcher), `watches` (directories it watches), and `mkdir_to_watched_ms`:
//! per round a `mkdir -p ~/.local/share/dbus-1/services` in another home,
//! then a probe file written every 100 µs until one is reported `created`,
//! the time from `mkdir` to that probe's write (an upper bound on how long
//! the new directory went unwatched); `whole_discoveries` during those
//! rounds; kernel marks before and after a passwd change (a whole
//! discovery) once one more home got its services directory a component
//! at a time.
use osquery_dbus::settings::Settings;
use osquery_dbus::sources::collect::file::{Collector, FileAction};
use osquery_dbus::sources::file_watch::Action;
use osquery_dbus::sources::file_watch::Watcher;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn stats(label: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return println!("{label} - - -");
    }
    println!(
        "{label} {:.3} {:.3} {:.3}",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1]
    );
}

fn watcher(inotify: bool) -> Watcher {
    let w = if inotify {
        Watcher::open_inotify()
    } else {
        Watcher::open().map(|(w, _)| w)
    };
    w.unwrap_or_else(|e| {
        eprintln!("file_watch bench: {e}");
        std::process::exit(1);
    })
}

fn fixture(root: &Path, homes: usize) -> std::io::Result<()> {
    std::fs::create_dir_all(root.join("etc"))?;
    std::fs::create_dir_all(root.join("usr/share/dbus-1/services"))?;
    let mut passwd = String::from("root:x:0:0::/root:/bin/sh\n");
    for i in 0..homes {
        let home = root.join(format!("home/u{i}"));
        std::fs::create_dir_all(&home)?;
        if i % 3 == 0 {
            std::fs::create_dir_all(home.join(".local/share"))?;
        }
        passwd.push_str(&format!("u{i}:x:{}:100::/home/u{i}:/bin/sh\n", 2000 + i));
    }
    std::fs::write(root.join("etc/passwd"), passwd)
}

fn main() {
    let mut homes = 500usize;
    let mut reps = 9usize;
    let mut inotify = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--homes" => homes = it.next().and_then(|n| n.parse().ok()).unwrap_or(homes),
            "--reps" => reps = it.next().and_then(|n| n.parse().ok()).unwrap_or(reps),
            "--inotify" => inotify = true,
            _ => {}
        }
    }
    let tmp = tempfile::tempdir().unwrap_or_else(|e| {
        eprintln!("file_watch bench: {e}");
        std::process::exit(1);
    });
    if let Err(e) = fixture(tmp.path(), homes) {
        eprintln!("file_watch bench: fixture: {e}");
        std::process::exit(1);
    }
    let settings = Settings {
        root: tmp.path().to_path_buf(),
        ..Settings::default()
    };
    let mut discovers = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        if let Ok(root) = osquery_dbus::sources::fs_safe::Root::open(tmp.path()) {
            std::hint::black_box(osquery_dbus::sources::service_dirs::discover(&root));
        }
        discovers.push(t.elapsed().as_secs_f64() * 1e3);
    }
    stats("discover_ms", discovers);
    let mut starts = Vec::new();
    let mut watches = 0;
    for _ in 0..reps {
        let t = Instant::now();
        let c = Collector::new(settings.clone(), watcher(inotify));
        starts.push(t.elapsed().as_secs_f64() * 1e3);
        watches = c.watched();
    }
    stats("start_ms", starts);
    println!("watches {watches} {watches} {watches}");

    // The collector in its own thread, as the extension runs it; paths of
    // `created` rows come back over a channel.
    let mut c = Collector::new(settings, watcher(inotify));
    let (tx, rx) = mpsc::channel::<String>();
    let before = c.discoveries();
    let (done_tx, done_rx) = mpsc::channel::<u64>();
    std::thread::spawn(move || loop {
        let Ok(polled) = c.next(Duration::from_millis(100)) else {
            return;
        };
        if done_tx.send(c.discoveries() - before).is_err() {
            return;
        }
        for e in polled.events {
            if e.action == FileAction::Changed(Action::Created) && tx.send(e.path).is_err() {
                return;
            }
        }
    });
    let mut latencies = Vec::new();
    for round in 0..reps.min(homes) {
        // Homes 3k+1 have no ~/.local: mkdir -p makes four components.
        let home = format!("/home/u{}", 3 * round + 1);
        let inner = format!("{home}/.local/share/dbus-1/services");
        let dir = tmp.path().join(inner.trim_start_matches('/'));
        let start = Instant::now();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("file_watch bench: {e}");
            std::process::exit(1);
        }
        let mut written = Vec::new();
        let got = 'probe: loop {
            let name = format!("p{}.service", written.len());
            if std::fs::write(dir.join(&name), "x").is_err() {
                break None;
            }
            written.push((format!("{inner}/{name}"), start.elapsed()));
            while let Ok(path) = rx.try_recv() {
                if let Some((_, at)) = written.iter().find(|(p, _)| *p == path) {
                    break 'probe Some(*at);
                }
            }
            if start.elapsed() > Duration::from_secs(5) {
                break None;
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        match got {
            Some(at) => latencies.push(at.as_secs_f64() * 1e3),
            None => eprintln!("file_watch bench: {inner} not watched within 5 s"),
        }
    }
    stats("mkdir_to_watched_ms", latencies);
    // Whole discoveries the rounds caused (following a path needs none).
    std::thread::sleep(Duration::from_millis(200));
    let whole = done_rx.try_iter().last().unwrap_or(0);
    println!("whole_discoveries {whole} {whole} {whole}");
    // One more home made a component at a time, each followed before the
    // next: its `dbus-1` gets a mark of its own while `services` is
    // awaited, which nothing wants once `services` exists.
    let mut path = tmp
        .path()
        .join(format!("home/u{}", 3 * reps.min(homes) + 1));
    for c in [".local", "share", "dbus-1", "services"] {
        path.push(c);
        let _ = std::fs::create_dir(&path);
        std::thread::sleep(Duration::from_millis(20));
    }
    let marks = kernel_marks();
    println!("kernel_marks_before {marks} {marks} {marks}");
    // passwd rewritten: a whole discovery, after which the marks nothing
    // wants any more are gone from the kernel.
    let passwd = tmp.path().join("etc/passwd");
    if let Ok(text) = std::fs::read_to_string(&passwd) {
        let _ = std::fs::write(&passwd, text);
    }
    std::thread::sleep(Duration::from_millis(500));
    let marks = kernel_marks();
    println!("kernel_marks_after {marks} {marks} {marks}");
}

/// Marks held by this process's fanotify and inotify descriptors.
fn kernel_marks() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|info| {
            info.lines()
                .filter(|l| l.starts_with("fanotify ino:") || l.starts_with("inotify wd:"))
                .count()
        })
        .sum()
}
