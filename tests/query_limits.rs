//! The standalone `query` and `hunt` cannot run away: rows are printed as
//! SQLite steps them (memory does not grow with the result), `--timeout`
//! stops a runaway query, `--max-rows` cuts a long one, and stderr (or the
//! report) says what was cut. Runs the real binary; its peak RSS is its
//! `VmHWM`, sampled while it runs (`wait4`'s `ru_maxrss` would also count
//! the test process the child was forked from). Figures are printed
//! (`--nocapture`) and recorded in docs/reliability.md.
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ENDLESS: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)";

/// Peak RSS of any of these runs: the binary's own few MiB and SQLite's
/// page cache. Buffering the 3 M rows took 169 MiB as CSV, 417 MiB as a
/// table.
const PEAK_KIB: i64 = 32 * 1024;

struct Run {
    code: Option<i32>,
    stdout_lines: usize,
    last_line: String,
    stderr: String,
    /// From start to the first line on stdout.
    first_line: Option<Duration>,
    took: Duration,
    peak_kib: i64,
}

/// `VmHWM` of a process in KiB, while it exists.
fn vm_hwm_kib(pid: u32) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `osquery-dbus --root <empty> ARGS`, counting stdout's lines as
/// they come and sampling its peak RSS every few milliseconds.
fn run(args: &[&str]) -> Run {
    let root = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_osquery-dbus"))
        .arg("--root")
        .arg(root.path())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                match vm_hwm_kib(pid) {
                    Some(kib) => peak = peak.max(kib),
                    None => break,
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (mut lines, mut last, mut first) = (0, String::new(), None);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if lines == 0 {
            first = Some(t.elapsed());
        }
        lines += 1;
        last = line;
    }
    // The peak so far, sampled once more before the child is reaped (a
    // zombie has no memory left to show).
    let last_peak = vm_hwm_kib(pid).unwrap_or(0);
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak_kib = sampler.join().unwrap().max(last_peak);
    let code = child.wait().unwrap().code();
    let took = t.elapsed();
    Run {
        code,
        stdout_lines: lines,
        last_line: last,
        stderr: err.join().unwrap(),
        first_line: first,
        took,
        peak_kib,
    }
}

#[test]
fn three_million_rows_stream_in_bounded_memory() {
    let sql = format!("{ENDLESS} SELECT x FROM c LIMIT 3000000");
    let r = run(&["query", "--csv", &sql]);
    eprintln!(
        "3,000,000 rows as CSV: {:?}, first line after {:?}, peak RSS {} KiB",
        r.took, r.first_line, r.peak_kib
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout_lines, 3_000_001);
    assert_eq!(r.last_line, "3000000");
    assert!(r.peak_kib < PEAK_KIB, "peak RSS {} KiB", r.peak_kib);
    // Printed as they came: the first line long before the last.
    assert!(
        r.first_line.unwrap() < r.took / 2,
        "{:?} of {:?}",
        r.first_line,
        r.took
    );
    // JSON and the table stream too (fewer rows: the same path).
    for (format, lines) in [("--json", 200_002), ("--table", 200_004)] {
        let sql = format!("{ENDLESS} SELECT x, 'text' AS y FROM c LIMIT 200000");
        let mut args = vec!["query", &sql];
        if format != "--table" {
            args.insert(1, format);
        }
        let r = run(&args);
        eprintln!(
            "200,000 rows {format}: {:?}, peak RSS {} KiB",
            r.took, r.peak_kib
        );
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert_eq!(r.stdout_lines, lines, "{format}");
        assert!(
            r.peak_kib < PEAK_KIB,
            "{format}: peak RSS {} KiB",
            r.peak_kib
        );
    }
}

/// An endless recursive CTE ran until the machine was out of memory.
#[test]
fn a_runaway_cte_stops_at_its_timeout() {
    // Rows stream until the deadline; what was printed stays.
    let sql = format!("{ENDLESS} SELECT x FROM c");
    let r = run(&["query", "--csv", "--timeout", "1", &sql]);
    eprintln!(
        "endless CTE, --timeout 1: exit {:?} after {:?}, {} lines, peak RSS {} KiB; stderr {:?}",
        r.code, r.took, r.stdout_lines, r.peak_kib, r.stderr
    );
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("stopped after 1 s"), "{}", r.stderr);
    assert!(r.stderr.contains("incomplete"), "{}", r.stderr);
    assert!(r.stdout_lines > 1000, "{} lines", r.stdout_lines);
    assert!(r.took < Duration::from_secs(6), "{:?}", r.took);
    assert!(r.peak_kib < PEAK_KIB, "peak RSS {} KiB", r.peak_kib);
    // One that prints nothing while it runs.
    let sql = format!("{ENDLESS} SELECT count(*) FROM c");
    let r = run(&["query", "--timeout", "0.5", &sql]);
    eprintln!("endless count(*), --timeout 0.5: {:?}", r.took);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("stopped after 0.5 s"), "{}", r.stderr);
    assert!(r.took < Duration::from_secs(5), "{:?}", r.took);
    // A row limit says what it cut, and is not a failure.
    let sql = format!("{ENDLESS} SELECT x FROM c");
    let r = run(&["query", "--csv", "--max-rows", "10", &sql]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!((r.stdout_lines, r.last_line.as_str()), (11, "10"));
    assert!(r.stderr.contains("stopped at 10 rows"), "{}", r.stderr);
    // Exactly the limit cuts nothing and says nothing.
    let r = run(&[
        "query",
        "--csv",
        "--max-rows",
        "2",
        "SELECT 1 UNION ALL SELECT 2",
    ]);
    assert_eq!((r.code, r.stdout_lines), (Some(0), 3));
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

#[test]
fn hunt_checks_are_bounded_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("runaway.conf");
    let query = |sql: &str| serde_json::json!({"query": sql, "interval": 60, "description": "d", "value": "v", "severity": "high"});
    std::fs::write(
        &pack,
        serde_json::json!({
            "queries": {
                "endless": query(&format!("{ENDLESS} SELECT count(*) FROM c")),
                "many": query(&format!("{ENDLESS} SELECT x FROM c LIMIT 50000")),
            }
        })
        .to_string(),
    )
    .unwrap();
    let pack = pack.to_str().unwrap();
    let r = run(&["hunt", "--json", "--pack", pack, "--timeout", "1"]);
    eprintln!("hunt, --timeout 1: exit {:?} after {:?}", r.code, r.took);
    assert_eq!(
        r.code,
        Some(2),
        "a check that ran out of time fails the hunt"
    );
    assert!(r.took < Duration::from_secs(8), "{:?}", r.took);
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_osquery-dbus"))
        .arg("--root")
        .arg(root.path())
        .args(["hunt", "--json", "--pack", pack, "--timeout", "1"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    let endless = check("endless");
    assert_eq!(endless["status"], "failed", "{endless}");
    assert!(endless["error"]
        .as_str()
        .unwrap()
        .contains("stopped after 1 s"));
    // The default row limit keeps 10,000 of the 50,000 and says so.
    let many = check("many");
    assert_eq!(many["status"], "found");
    assert_eq!(many["rows"].as_array().unwrap().len(), 10_000);
    assert!(
        many["cut"].as_str().unwrap().contains("10000 rows"),
        "{}",
        many["cut"]
    );
}
