//! In-process timings of the tables, apart from process startup:
//! what `scripts/bench.sh` cannot see from the outside.
//!
//! ```text
//! cargo bench --bench tables -- children [--proc DIR] [--reps N]
//! cargo bench --bench tables -- files --root DIR [--reps N]
//! cargo bench --bench tables -- packages --root DIR [--reps N]
//! cargo bench --bench tables -- procpass [--proc DIR] [--reps N]
//! cargo bench --bench tables -- activated [--proc DIR] [--reps N]
//! ```
//!
//! `children`: the full generate and `pid = X` (X the first row's pid, or
//! the first bus child found). `files`: the stat-only columns, all columns
//! but package and hashes, the stat-only columns plus the shadow ones
//! (`search_order`, `effective`, `shadowed_by`: every service file
//! resolved), and `path = X` for three files (see below). `packages`: the first
//! `package` query (building the dpkg index), repeats from the cache, and
//! the first one after the database changed. `activated`: the first
//! `SELECT *` of `dbus_activated_processes` (package lookups included),
//! then repeats. Each line is
//! `label median_ms min_ms max_ms rows`.
use osquery_dbus::context::{Op, QueryContext};
use osquery_dbus::settings::Settings;
use osquery_dbus::sources::fs_safe::Root;
use osquery_dbus::sources::packages;
use osquery_dbus::sources::proc::{self, Proc};
use osquery_dbus::tables::Registry;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Args {
    mode: String,
    root: Option<PathBuf>,
    proc: Option<PathBuf>,
    reps: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        mode: String::new(),
        root: None,
        proc: None,
        reps: 9,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bench" => {}
            "--root" => args.root = it.next().map(PathBuf::from),
            "--proc" => args.proc = it.next().map(PathBuf::from),
            "--reps" => args.reps = it.next().and_then(|n| n.parse().ok()).unwrap_or(9),
            m => args.mode = m.to_string(),
        }
    }
    args
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `f` `reps` times and prints the median, min and max.
fn time(label: &str, reps: usize, mut f: impl FnMut() -> usize) {
    let mut times = Vec::with_capacity(reps);
    let mut rows = 0;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        rows = f();
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "{label} {:.3} {:.3} {:.3} {rows}",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
}

fn ctx(cols: &[&str], eq: Option<(&str, &str)>) -> QueryContext {
    let mut c = QueryContext::new();
    if !cols.is_empty() {
        c.set_cols_used(cols.iter().copied());
    }
    if let Some((col, v)) = eq {
        c.add_constraint(col, Op::Eq, v);
    }
    c
}

fn main() {
    let args = parse_args();
    let mut settings = Settings::default();
    if let Some(r) = &args.root {
        settings.root = r.clone();
    }
    if let Some(p) = &args.proc {
        settings.proc = p.clone();
    }
    let registry = match Registry::new(settings) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tables bench: {e}");
            std::process::exit(1);
        }
    };
    let gen = |table: &str, c: &QueryContext| registry.generate(table, c).unwrap_or_default();
    let text = |v: Option<&osquery_dbus::row::Value>| {
        v.and_then(|v| v.to_osquery_string()).unwrap_or_default()
    };
    match args.mode.as_str() {
        "children" => {
            let all = ctx(&[], None);
            time("children_full", args.reps, || {
                gen("dbus_daemon_children", &all).len()
            });
            let first = gen("dbus_daemon_children", &all);
            let pid = first
                .first()
                .map(|r| text(r.get("pid")))
                .unwrap_or_else(|| "1".into());
            let one = ctx(&[], Some(("pid", &pid)));
            time("children_pid_eq", args.reps * 10, || {
                gen("dbus_daemon_children", &one).len()
            });
        }
        "files" => {
            let stat_cols = [
                "path", "uid", "gid", "mode", "size", "atime", "mtime", "ctime",
            ];
            let s = ctx(&stat_cols, None);
            time("files_stat_cols", args.reps, || {
                gen("dbus_service_files", &s).len()
            });
            let parsed = ctx(
                &[
                    "path",
                    "uid",
                    "gid",
                    "mode",
                    "size",
                    "atime",
                    "mtime",
                    "ctime",
                    "service_name",
                    "exec",
                    "exec_path",
                    "run_as_user",
                    "systemd_service",
                    "error",
                ],
                None,
            );
            time("files_parsed_cols", args.reps, || {
                gen("dbus_service_files", &parsed).len()
            });
            let mut shadow_cols = stat_cols.to_vec();
            shadow_cols.extend(["search_order", "effective", "shadowed_by"]);
            let shadow = ctx(&shadow_cols, None);
            time("files_shadow_cols", args.reps, || {
                gen("dbus_service_files", &shadow).len()
            });
            let rows = gen("dbus_service_files", &s);
            let paths: Vec<String> = rows
                .iter()
                .map(|r| text(r.get("path")))
                .filter(|p| p.ends_with(".service"))
                .collect();
            let path = paths.first().cloned().unwrap_or_default();
            let one = ctx(&[], Some(("path", &path)));
            time("files_path_eq", args.reps * 10, || {
                gen("dbus_service_files", &one).len()
            });
            // The same lookup reading the stat columns only, as a hunt's
            // `SELECT path, uid, … WHERE path = X` does: no column that
            // needs every file of the root (shadowing) or the packages.
            let one_stat = ctx(&stat_cols, Some(("path", &path)));
            time("files_path_eq_stat", args.reps * 10, || {
                gen("dbus_service_files", &one_stat).len()
            });
            // The stat columns plus the shadow ones: what judging the
            // file by name adds to a lookup.
            let one_shadow = ctx(&shadow_cols, Some(("path", &path)));
            time("files_path_eq_shadow", args.reps * 10, || {
                gen("dbus_service_files", &one_shadow).len()
            });
            // The shadow columns' worst and per-user cases: the file
            // listed last in the first one's (system-wide session)
            // directory, whose verdict needs every file listed before it,
            // and a file of the last home.
            let dir = |p: &str| p.rsplit_once('/').map(|(d, _)| d.to_string());
            let last_shared = paths
                .iter()
                .rfind(|p| dir(p) == dir(&path))
                .cloned()
                .unwrap_or_default();
            let one = ctx(&[], Some(("path", &last_shared)));
            time("files_path_eq_last_listed", args.reps * 10, || {
                gen("dbus_service_files", &one).len()
            });
            let home = paths
                .iter()
                .rfind(|p| p.starts_with("/home/"))
                .cloned()
                .unwrap_or_default();
            let one = ctx(&[], Some(("path", &home)));
            time("files_path_eq_home", args.reps * 10, || {
                gen("dbus_service_files", &one).len()
            });
            let one_stat = ctx(&stat_cols, Some(("path", &home)));
            time("files_path_eq_home_stat", args.reps * 10, || {
                gen("dbus_service_files", &one_stat).len()
            });
        }
        "packages" => {
            let c = ctx(&["path", "package"], None);
            time("package_first", 1, || gen("dbus_service_files", &c).len());
            time("package_repeat", args.reps, || {
                gen("dbus_service_files", &c).len()
            });
            // The same scan without the package column: what a repeat costs
            // apart from the package lookups, so their own share is known.
            let paths = ctx(&["path"], None);
            time("package_scan_alone", args.reps, || {
                gen("dbus_service_files", &paths).len()
            });
            // The integrity column: digests of the owning packages' files,
            // read on first use and cached under the same database stamp.
            let v = ctx(&["path", "package", "package_verified"], None);
            time("package_verified_first", 1, || {
                gen("dbus_service_files", &v).len()
            });
            time("package_verified_repeat", args.reps, || {
                gen("dbus_service_files", &v).len()
            });
            // A package install replaces .list files by rename, which
            // changes the info directory's mtime: the cache must rebuild.
            if let Some(root) = &args.root {
                // The package index alone, apart from the file scan: a cache
                // hit, then a rebuild after the database changed.
                if let Ok(r) = Root::open(root) {
                    time("package_index_cached", args.reps, || {
                        packages::owners(&r).owner(b"/").map_or(0, |_| 1)
                    });
                }
                let marker = root.join("var/lib/dpkg/info/bench-touch.list");
                let _ = std::fs::write(&marker, b"/nonexistent/bench\n");
                time("package_after_change", 1, || {
                    gen("dbus_service_files", &c).len()
                });
                let _ = std::fs::remove_file(&marker);
                if let Ok(r) = Root::open(root) {
                    time("package_index_rebuild", 1, || {
                        packages::owners(&r).owner(b"/").map_or(0, |_| 1)
                    });
                }
            }
        }
        "activated" => {
            // Every column: the first generate of a process reads the
            // package databases for the activated service files' owners.
            let all = ctx(&[], None);
            time("activated_first", 1, || {
                gen("dbus_activated_processes", &all).len()
            });
            time("activated_repeat", args.reps, || {
                gen("dbus_activated_processes", &all).len()
            });
        }
        "procpass" => {
            // The children table's passes over /proc, apart: the comm pass
            // (kernels with task/*/children), the merged stat pass (kernels
            // without), and the stat scan as it was before the one-pass rewrite (a
            // listing, then a full read and parse of each stat).
            let proc = Proc::new(args.proc.clone().unwrap_or_else(|| "/proc".into()));
            time("pass_comm", args.reps, || {
                let mut n = 0;
                let _ = proc.for_each_small("comm", |_, r| n += usize::from(r.is_ok()));
                n
            });
            time("pass_stat_merged", args.reps, || {
                let mut n = 0;
                let _ = proc.for_each_small("stat", |_, r| {
                    n += usize::from(r.ok().and_then(proc::parse_stat_brief).is_some())
                });
                n
            });
            time("scan_stat_old_style", args.reps, || {
                let mut map: HashMap<u32, Vec<u32>> = HashMap::new();
                for p in proc.pids().unwrap_or_default() {
                    if let Ok(s) = proc.stat(p) {
                        map.entry(s.ppid).or_default().push(p);
                    }
                }
                map.values().map(Vec::len).sum()
            });
            time("scan_comm_old_style", args.reps, || {
                proc.pids()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|&p| proc.comm(p).is_ok())
                    .count()
            });
        }
        m => {
            eprintln!(
                "tables bench: unknown mode {m:?} (children, files, packages, procpass, activated)"
            );
            std::process::exit(2);
        }
    }
}
