//! `hunt`: every pack query run through the embedded host, as one findings
//! report a responder can read (or a script can parse) on a box without
//! osquery. Each query in a pack is written to return only suspicious rows,
//! so any row is a finding; deciding what is suspicious is the pack's job.
//! Each query's severity orders the report (most severe first) and decides,
//! against `--min-severity`, whether the hunt found something.
//!
//! A check whose tables could not read what they need (see [`crate::blind`])
//! is *blind*: its rows, if any, are real, but "nothing found" from it
//! means nothing. The report names every blind check with its reasons and
//! never calls one clean.
use crate::blind::{self, BlindSpot};
use crate::hosts::sqlite::{Cut, EmbeddedHost, Limits, QueryResult};
use crate::output::{self, Format};
use crate::packs::{Pack, Severity};
use serde_json::{Map, Value as Json};
use std::io::Write;

/// What one pack query turned up.
#[derive(Debug, Clone)]
pub struct Check {
    pub pack: String,
    pub name: String,
    pub description: String,
    pub value: String,
    pub severity: Severity,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Rows(QueryResult),
    /// The query could not run (a pack written for a newer schema, say):
    /// reported, and the hunt goes on with the other checks.
    Failed(String),
}

impl Check {
    /// What the check's tables could not read; empty when it saw all.
    pub fn blind(&self) -> &[BlindSpot] {
        match &self.outcome {
            Outcome::Rows(r) => &r.blind,
            Outcome::Failed(_) => &[],
        }
    }

    /// Ran, saw everything it needs, and returned nothing.
    pub fn is_clean(&self) -> bool {
        matches!(&self.outcome, Outcome::Rows(r) if r.rows.is_empty() && r.blind.is_empty())
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    /// Most severe first, then by pack and name.
    pub checks: Vec<Check>,
    /// Findings below this are reported but do not count as found.
    pub min_severity: Severity,
}

impl Report {
    /// Checks that returned rows, at any severity.
    pub fn all_findings(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| matches!(&c.outcome, Outcome::Rows(r) if !r.rows.is_empty()))
    }

    /// Checks that returned rows, at or above `min_severity`.
    pub fn findings(&self) -> impl Iterator<Item = &Check> {
        let min = self.min_severity;
        self.all_findings().filter(move |c| c.severity >= min)
    }

    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
    }

    pub fn found_something(&self) -> bool {
        self.findings().next().is_some()
    }

    /// Checks that could not read all they need (with or without rows).
    pub fn blind(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.blind().is_empty())
    }

    /// Every distinct reason of every blind check, counted over the hunt.
    pub fn blind_spots(&self) -> Vec<BlindSpot> {
        let mut all = Vec::new();
        for c in self.blind() {
            blind::merge(&mut all, c.blind());
        }
        all
    }
}

/// Runs every query of every pack, optionally only those named in `only`.
/// A check's time limit unless `--timeout` says otherwise: every built-in
/// check takes well under a second on a real system; a minute is a query
/// gone wrong, not a slow disk.
pub const DEFAULT_TIMEOUT_SECS: f64 = 60.0;

/// A check's row limit unless `--max-rows` says otherwise: far more
/// findings than anyone reads, few enough that the report stays small.
pub const DEFAULT_MAX_ROWS: usize = 10_000;

/// Runs every selected check within `limits`: a check that runs out of
/// time fails (the hunt is then incomplete); one that has more rows than
/// the limit keeps the first ones and says so.
pub fn run(
    host: &EmbeddedHost,
    packs: &[Pack],
    only: &[String],
    min_severity: Severity,
    limits: Limits,
) -> Report {
    let mut report = Report {
        checks: Vec::new(),
        min_severity,
    };
    for pack in packs {
        for (name, q) in &pack.queries {
            if !only.is_empty() && !only.iter().any(|o| o == name) {
                continue;
            }
            let outcome = match host.query_limited(&q.query, limits) {
                Ok(QueryResult {
                    cut: Some(cut @ Cut::Timeout(_)),
                    ..
                }) => Outcome::Failed(format!("{cut} (--timeout)")),
                Ok(mut result) => {
                    result
                        .blind
                        .retain(|s| s.column.is_none_or(|c| condition_reads(&q.query, c)));
                    Outcome::Rows(result)
                }
                Err(e) => Outcome::Failed(e.to_string()),
            };
            report.checks.push(Check {
                pack: pack.name.clone(),
                name: name.clone(),
                description: q.description.clone(),
                value: q.value.clone(),
                severity: q.severity(),
                outcome,
            });
        }
    }
    // Stable: within a severity, pack and query order as written.
    report.checks.sort_by_key(|c| std::cmp::Reverse(c.severity));
    report
}

/// Whether the condition of `sql` (what follows its first `WHERE`) names
/// `column` as a word: a column missing everywhere blinds a check that
/// tests it, not one that only shows it. Textual, so it errs towards
/// blind (a subquery's or a string's mention counts).
fn condition_reads(sql: &str, column: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    let Some(at) = lower.find(" where ") else {
        return false;
    };
    let cond = &lower[at..];
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    cond.match_indices(column).any(|(i, _)| {
        let before = cond.as_bytes().get(i.wrapping_sub(1)).copied();
        let after = cond.as_bytes().get(i + column.len()).copied();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// The human report: findings first, each with why it matters and its rows,
/// then a one-line summary of what came back clean or failed.
pub fn write_text(out: &mut dyn Write, report: &Report) -> std::io::Result<()> {
    let findings: Vec<&Check> = report.findings().collect();
    let below: Vec<&Check> = report
        .all_findings()
        .filter(|c| c.severity < report.min_severity)
        .collect();
    let failures: Vec<&Check> = report.failures().collect();
    let blind: Vec<&Check> = report.blind().collect();
    writeln!(
        out,
        "osquery-dbus hunt: {} check(s) run, {} with findings at {} or above, {} blind (could not read what they need), {} failed",
        report.checks.len(),
        findings.len(),
        report.min_severity.as_str(),
        blind.len(),
        failures.len()
    )?;
    for c in &findings {
        if let Outcome::Rows(result) = &c.outcome {
            writeln!(out)?;
            writeln!(
                out,
                "== FINDING [{}] {}/{}: {} row(s)",
                c.severity.as_str(),
                c.pack,
                c.name,
                result.rows.len()
            )?;
            if let Some(cut) = result.cut {
                writeln!(out, "Cut: {cut} (--max-rows); only these are shown")?;
            }
            writeln!(out, "What: {}", c.description)?;
            writeln!(out, "Why it matters: {}", c.value)?;
            output::write(out, result, Format::Table)?;
        }
    }
    if !below.is_empty() {
        writeln!(out)?;
        let names: Vec<String> = below
            .iter()
            .map(|c| format!("{} [{}]", c.name, c.severity.as_str()))
            .collect();
        writeln!(
            out,
            "Below --min-severity {} (rerun with --min-severity info to see them): {}",
            report.min_severity.as_str(),
            names.join(", ")
        )?;
    }
    for c in &failures {
        if let Outcome::Failed(e) = &c.outcome {
            writeln!(out)?;
            writeln!(out, "== FAILED {}/{}: {e}", c.pack, c.name)?;
        }
    }
    for c in &blind {
        writeln!(out)?;
        let rows = match &c.outcome {
            Outcome::Rows(r) => r.rows.len(),
            Outcome::Failed(_) => 0,
        };
        writeln!(
            out,
            "== BLIND [{}] {}/{}: could not read what it needs; its {rows} row(s) are only what could be read",
            c.severity.as_str(),
            c.pack,
            c.name
        )?;
        for s in c.blind() {
            writeln!(out, "   {s}")?;
        }
    }
    let clean: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.is_clean())
        .map(|c| c.name.as_str())
        .collect();
    if !clean.is_empty() {
        writeln!(out)?;
        writeln!(out, "Nothing found by: {}", clean.join(", "))?;
    }
    Ok(())
}

/// The machine report: one object a check, rows as objects of strings as
/// `osqueryi --json` prints them.
pub fn to_json(report: &Report) -> Json {
    let checks: Vec<Json> = report
        .checks
        .iter()
        .map(|c| {
            let mut obj = Map::new();
            obj.insert("pack".into(), c.pack.clone().into());
            obj.insert("name".into(), c.name.clone().into());
            obj.insert("description".into(), c.description.clone().into());
            obj.insert("value".into(), c.value.clone().into());
            obj.insert("severity".into(), c.severity.as_str().into());
            match &c.outcome {
                Outcome::Rows(result) => {
                    // "blind" only when nothing came back: rows found are
                    // findings whatever else could not be read.
                    let status = if !result.rows.is_empty() {
                        "found"
                    } else if result.blind.is_empty() {
                        "clean"
                    } else {
                        "blind"
                    };
                    obj.insert("status".into(), status.into());
                    obj.insert("rows".into(), Json::Array(output::json_rows(result)));
                    if let Some(cut) = result.cut {
                        obj.insert("cut".into(), cut.to_string().into());
                    }
                }
                Outcome::Failed(e) => {
                    obj.insert("status".into(), "failed".into());
                    obj.insert("error".into(), e.clone().into());
                    obj.insert("rows".into(), Json::Array(Vec::new()));
                }
            }
            obj.insert(
                "blind".into(),
                Json::Array(c.blind().iter().map(spot_json).collect()),
            );
            Json::Object(obj)
        })
        .collect();
    let mut top = Map::new();
    top.insert("found".into(), report.found_something().into());
    top.insert("min_severity".into(), report.min_severity.as_str().into());
    top.insert("blind_checks".into(), report.blind().count().into());
    top.insert("checks".into(), Json::Array(checks));
    Json::Object(top)
}

/// One blind spot as the JSON report carries it.
fn spot_json(s: &BlindSpot) -> Json {
    serde_json::json!({
        "table": s.table,
        "what": s.what,
        "cause": s.cause,
        "count": s.count,
        "examples": s.examples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::Value;

    fn check(name: &str, rows: usize, blind: bool) -> Check {
        let ((), spots) = blind::collect(|| {
            if blind {
                blind::in_table("dbus_service_files", || {
                    let eio = std::io::Error::from_raw_os_error(libc::EIO);
                    for d in ["/a", "/b"] {
                        blind::report("cannot list service directories", &eio, &d);
                    }
                });
            }
        });
        Check {
            pack: "p".into(),
            name: name.into(),
            description: "d".into(),
            value: "v".into(),
            severity: Severity::High,
            outcome: Outcome::Rows(QueryResult {
                columns: vec!["path".into()],
                rows: vec![vec![Value::Text("/x".into())]; rows],
                blind: spots,
                cut: None,
            }),
        }
    }

    fn report(checks: Vec<Check>) -> Report {
        Report {
            checks,
            min_severity: Severity::Medium,
        }
    }

    fn text(r: &Report) -> String {
        let mut out = Vec::new();
        write_text(&mut out, r).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_column_blinds_only_checks_that_test_it() {
        assert!(condition_reads(
            "SELECT path FROM f WHERE f.btime > 0 AND x",
            "btime"
        ));
        assert!(!condition_reads(
            "SELECT datetime(f.btime) AS b FROM f WHERE max(f.mtime, f.ctime) > 1",
            "btime"
        ));
        assert!(!condition_reads(
            "SELECT x FROM f WHERE f.btime_missing IS NULL",
            "btime"
        ));
        assert!(!condition_reads("SELECT btime FROM f", "btime"));
    }

    #[test]
    fn a_blind_check_is_named_with_its_causes_and_never_clean() {
        let r = report(vec![
            check("seen_all", 0, false),
            check("blind_empty", 0, true),
            check("blind_found", 1, true),
        ]);
        let t = text(&r);
        let summary = t.lines().next().unwrap();
        assert!(
            summary.contains("1 with findings at medium or above, 2 blind"),
            "{summary}"
        );
        assert!(
            t.contains("== BLIND [high] p/blind_empty: could not read what it needs; its 0 row(s)")
        );
        assert!(t.contains(
            "   dbus_service_files: cannot list service directories: Input/output error (os error 5) (2 affected, e.g. /a)"
        ));
        assert!(t.contains("== FINDING [high] p/blind_found"));
        assert!(t.ends_with("Nothing found by: seen_all\n"), "{t}");

        let j = to_json(&r);
        assert_eq!(j["blind_checks"], 2);
        let status: Vec<&str> = j["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["status"].as_str().unwrap())
            .collect();
        assert_eq!(status, ["clean", "blind", "found"]);
        assert_eq!(j["checks"][0]["blind"], serde_json::json!([]));
        let spot = &j["checks"][1]["blind"][0];
        assert_eq!(spot["table"], "dbus_service_files");
        assert_eq!(spot["count"], 2);
        assert_eq!(spot["examples"], serde_json::json!(["/a", "/b"]));
        // Over the hunt, the two checks' shared paths count once.
        let all = r.blind_spots();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].count, 2);
    }

    #[test]
    fn a_hunt_that_saw_everything_says_zero_blind() {
        let t = text(&report(vec![check("seen_all", 0, false)]));
        assert!(
            t.starts_with(
                "osquery-dbus hunt: 1 check(s) run, 0 with findings at medium or above, 0 blind"
            ),
            "{t}"
        );
        assert!(!t.contains("BLIND"));
    }
}
