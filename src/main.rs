//! The `osquery-dbus` binary: extension mode when osquery launches it with
//! `--socket`, otherwise the standalone commands. This is the only place
//! that uses `anyhow` and decides exit codes.
use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand};
use osquery_dbus::hosts::{osquery as osq, sqlite};
use osquery_dbus::output::{self, Format};
use osquery_dbus::packs::{self, Pack};
use osquery_dbus::settings::Settings;
use osquery_dbus::sources::collect::{self, Collectors};
use osquery_dbus::tables::{evented, Registry};
use osquery_dbus::{blind, hunt, spec};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "osquery-dbus",
    version,
    about = "SQL over D-Bus persistence on Linux: an osquery extension and a standalone hunting tool",
    after_help = "Run with --socket (as osquery does) to serve the tables to an osquery core."
)]
struct Cli {
    #[command(flatten)]
    extension: ExtensionArgs,

    /// Read files from this directory instead of / (a mounted image or container rootfs).
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,

    /// Read processes from this directory instead of /proc (default with
    /// --root: DIR/proc, so a dead box shows no live processes of the host).
    #[arg(long, global = true, value_name = "DIR")]
    proc: Option<PathBuf>,

    /// Evented tables: buffer at most this many rows per table.
    #[arg(long = "events_max", global = true, value_name = "ROWS", default_value_t = collect::DEFAULT_MAX_ROWS)]
    events_max: usize,

    /// Evented tables: drop buffered rows older than this many seconds.
    #[arg(long = "events_expiry", global = true, value_name = "SECONDS", default_value_t = collect::DEFAULT_EXPIRY_SECS)]
    events_expiry: u64,

    #[command(subcommand)]
    command: Option<Command>,
}

/// Exactly the flags osquery passes to an extension it launches.
#[derive(Args, Debug)]
struct ExtensionArgs {
    /// osquery's extension manager socket; serving starts when this is given.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,

    /// Seconds to keep retrying registration while the core is not ready.
    #[arg(long, value_name = "SECONDS", default_value_t = 3)]
    timeout: u64,

    /// Seconds between checks that the core is still there.
    #[arg(long, value_name = "SECONDS", default_value_t = 3)]
    interval: u64,

    /// Log each call to stderr.
    #[arg(long)]
    verbose: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run SQL over the tables in an embedded SQLite (with users and groups).
    Query {
        /// The SQL to run.
        sql: String,
        /// Print a JSON array of objects, like `osqueryi --json`.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV with a header line.
        #[arg(long)]
        csv: bool,
        /// Stop after this many seconds (fractions allowed); what was
        /// printed stays, stderr says it was cut, the exit code is 1.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
        /// Print at most this many rows; stderr says when there were more.
        #[arg(long = "max-rows", value_name = "N")]
        max_rows: Option<usize>,
    },
    /// Run every pack query and report what they find, most severe first.
    ///
    /// Exit 2 when a check failed, or when a check was blind (its tables
    /// could not read what it needs: an unreadable directory, /proc or
    /// package database) and --allow-partial is not given; else 1 when
    /// anything at or above --min-severity is found; 0 when nothing is.
    Hunt {
        /// Findings below this severity are listed but do not make the exit code 1.
        #[arg(long, value_enum, default_value = "medium")]
        min_severity: packs::Severity,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Run this pack file instead of the built-in packs (repeatable).
        #[arg(long, value_name = "FILE")]
        pack: Vec<PathBuf>,
        /// Run only the query with this name (repeatable).
        #[arg(long, value_name = "NAME")]
        only: Vec<String>,
        /// Accept partial answers: blind checks are still reported, but the
        /// exit code comes from the findings alone.
        #[arg(long)]
        allow_partial: bool,
        /// Stop a check after this many seconds; it is then reported as
        /// failed (0: no limit).
        #[arg(long, value_name = "SECONDS", default_value_t = hunt::DEFAULT_TIMEOUT_SECS)]
        timeout: f64,
        /// Keep at most this many rows of a check's findings; the report
        /// says when there were more (0: no limit).
        #[arg(long = "max-rows", value_name = "N", default_value_t = hunt::DEFAULT_MAX_ROWS)]
        max_rows: usize,
    },
    /// Print the built-in packs: query names, or Fleet YAML with --fleet.
    Packs {
        /// Print Fleet's YAML (apiVersion v1, kind query) for every query.
        #[arg(long)]
        fleet: bool,
    },
    /// Collect the evented tables' events and print each as a JSON line
    /// (with a "table" key) until SIGINT/SIGTERM. Needs root.
    Watch {
        /// Only this evented table (repeatable).
        #[arg(long, value_name = "NAME")]
        table: Vec<String>,
    },
    /// Print the table schemas.
    Schema {
        /// Print the Markdown reference (docs/tables.md) instead of plain text.
        #[arg(long)]
        markdown: bool,
        /// Only this table.
        table: Option<String>,
    },
}

fn settings(cli: &Cli) -> Settings {
    let mut s = Settings::default();
    if let Some(root) = &cli.root {
        s.root = root.clone();
        // A mounted image has no live processes: the host's /proc would
        // mix the analyst's machine into the image's findings.
        s.proc = root.join("proc");
    }
    if let Some(proc) = &cli.proc {
        s.proc = proc.clone();
    }
    s
}

/// A `--timeout` value as a duration.
fn seconds(s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s).map_err(|e| anyhow::anyhow!("--timeout {s}: {e}"))
}

fn events_config(cli: &Cli) -> collect::Config {
    collect::Config {
        max_rows: cli.events_max,
        expiry: Duration::from_secs(cli.events_expiry),
    }
}

/// `watch`: start the collectors, stream their events until a signal.
fn watch(settings: Settings, config: collect::Config, tables: &[String]) -> Result<ExitCode> {
    let collectors = Collectors::new(config);
    let registry = Registry::with_collectors(settings, Some(Arc::clone(&collectors)))
        .context("loading table specs")?;
    // The evented tables are those their specs say are.
    let evented: Vec<&str> = registry
        .tables()
        .iter()
        .filter(|t| t.spec.evented)
        .map(|t| t.spec.name.as_str())
        .collect();
    for t in tables {
        if !evented.contains(&t.as_str()) {
            bail!("{t} is not an evented table ({})", evented.join(", "));
        }
    }
    let wanted: Vec<&str> = evented
        .iter()
        .copied()
        .filter(|t| tables.is_empty() || tables.iter().any(|w| w == t))
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Ends with its summary on the same signals the extension exits on
    // (SIGHUP: the terminal running it closed).
    for sig in osq::EXIT_SIGNALS {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let rx = collectors.subscribe();
    collectors.start(&registry.settings);
    let failed: Vec<String> = wanted
        .iter()
        .filter_map(|t| match collectors.status(t).map(|s| s.state) {
            Some(collect::State::Running) => None,
            Some(collect::State::Failed(why)) => Some(format!("{t}: {why}")),
            None => Some(format!("{t}: not started")),
        })
        .collect();
    if failed.len() == wanted.len() {
        bail!("no collector could start: {}", failed.join("; "));
    }
    for f in &failed {
        eprintln!("osquery-dbus: {f}");
    }
    let mut stdout = std::io::stdout().lock();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(ev) if wanted.contains(&evented::table_of(&ev)) => {
                let p = evented::publish(&ev);
                let line = output::event_line(p.table, p.event, &p.row);
                match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
                    other => other.context("writing events")?,
                }
            }
            Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // What a long watch (or a benchmark) needs to know it missed nothing.
    for t in &wanted {
        if let Some(s) = collectors.status(t) {
            eprintln!(
                "osquery-dbus: {t}: {} rows buffered, {} evicted, {} kernel overruns, {} events seen",
                s.buffered, s.evicted, s.lost, s.seen
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run(cli: Cli) -> Result<ExitCode> {
    let events = events_config(&cli);
    if let Some(socket) = &cli.extension.socket {
        if cli.command.is_some() {
            bail!("--socket starts extension mode and takes no subcommand");
        }
        // The extension collects for its life: the evented tables read
        // these collectors, started before registration and finishing
        // their start while the core registers us.
        let settings = settings(&cli);
        let collectors = Collectors::new(events);
        collectors.start_in_background(&settings);
        let registry =
            Registry::with_collectors(settings, Some(collectors)).context("loading table specs")?;
        let opts = osq::ExtensionOptions {
            socket: socket.clone(),
            timeout: Duration::from_secs(cli.extension.timeout.max(1)),
            interval: Duration::from_secs(cli.extension.interval.max(1)),
            verbose: cli.extension.verbose,
        };
        osq::run(Arc::new(registry), opts).context("extension")?;
        return Ok(ExitCode::SUCCESS);
    }
    let registry = Arc::new(Registry::new(settings(&cli)).context("loading table specs")?);
    match cli.command {
        None => bail!("nothing to do: give a command (see --help), or --socket to serve osquery"),
        Some(Command::Query {
            sql,
            json,
            csv,
            timeout,
            max_rows,
        }) => {
            let limits = sqlite::Limits {
                timeout: timeout.map(seconds).transpose()?,
                max_rows,
            };
            let host = sqlite::EmbeddedHost::open(registry).context("opening embedded host")?;
            let format = if json {
                Format::Json
            } else if csv {
                Format::Csv
            } else {
                Format::Table
            };
            // Buffered: Rust's stdout flushes every line, a write(2) per row.
            let mut stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
            let mut writer = output::Writer::new(&mut stdout, format);
            // Rows are printed as SQLite steps them.
            let streamed = match host.query_into(&sql, limits, &mut writer) {
                Ok(s) => s,
                // A reader that stops early (`| head`) is not an error.
                Err(sqlite::SqliteHostError::Write(e))
                    if e.kind() == std::io::ErrorKind::BrokenPipe =>
                {
                    return Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    drop(writer);
                    let _ = stdout.flush();
                    eprintln!("Error: {e}");
                    return Ok(ExitCode::from(1));
                }
            };
            let written = writer.finish().and_then(|()| stdout.flush());
            match written {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other.context("writing results")?,
            }
            // The rows are what could be read; what could not is said once
            // per reason, on stderr.
            blind::log_each(&streamed.blind);
            match streamed.cut {
                None => Ok(ExitCode::SUCCESS),
                Some(cut @ sqlite::Cut::MaxRows(_)) => {
                    eprintln!("osquery-dbus: query {cut} (--max-rows): the output is incomplete");
                    Ok(ExitCode::SUCCESS)
                }
                Some(cut @ sqlite::Cut::Timeout(_)) => {
                    eprintln!("osquery-dbus: query {cut} (--timeout): the output is incomplete");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Some(Command::Hunt {
            min_severity,
            json,
            pack,
            only,
            allow_partial,
            timeout,
            max_rows,
        }) => {
            let limits = sqlite::Limits {
                timeout: (timeout > 0.0).then(|| seconds(timeout)).transpose()?,
                max_rows: (max_rows > 0).then_some(max_rows),
            };
            let packs = if pack.is_empty() {
                packs::builtin().context("loading built-in packs")?
            } else {
                pack.iter()
                    .map(|p| Pack::read(p))
                    .collect::<Result<Vec<_>, _>>()?
            };
            let host = sqlite::EmbeddedHost::open(registry).context("opening embedded host")?;
            let report = hunt::run(&host, &packs, &only, min_severity, limits);
            if report.checks.is_empty() {
                bail!("no pack query matched --only {}", only.join(", "));
            }
            let mut stdout = std::io::stdout().lock();
            let written = if json {
                writeln!(stdout, "{:#}", hunt::to_json(&report))
            } else {
                hunt::write_text(&mut stdout, &report)
            };
            match written {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other.context("writing report")?,
            }
            // Once per reason over the whole hunt, not once per check.
            blind::log_each(&report.blind_spots());
            let blind = report.blind().next().is_some();
            // 2: the hunt is incomplete (a check failed, or could not read
            // what it needs and partial answers were not accepted);
            // 1: something was found; 0: everything read, nothing found.
            Ok(
                if report.failures().next().is_some() || (blind && !allow_partial) {
                    ExitCode::from(2)
                } else if report.found_something() {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                },
            )
        }
        Some(Command::Packs { fleet }) => {
            for p in packs::builtin().context("loading built-in packs")? {
                if fleet {
                    print!("{}", p.to_fleet_yaml());
                } else {
                    for (name, q) in &p.queries {
                        println!("{}/{name}: {}", p.name, q.description);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Watch { table }) => watch(registry.settings.clone(), events, &table),
        Some(Command::Schema { markdown, table }) => {
            let specs: Vec<_> = registry.tables().iter().map(|t| t.spec.clone()).collect();
            let specs: Vec<_> = match &table {
                Some(name) => specs.into_iter().filter(|s| &s.name == name).collect(),
                None => specs,
            };
            if specs.is_empty() {
                bail!("no table named {}", table.unwrap_or_default());
            }
            if markdown {
                print!("{}", spec::render_docs(&specs));
            } else {
                for s in &specs {
                    println!("{}", s.render_text());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = if cli.extension.verbose {
        "debug"
    } else {
        "warn"
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_millis()
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("osquery-dbus: {e:#}");
            ExitCode::from(2)
        }
    }
}
