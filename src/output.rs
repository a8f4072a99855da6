//! Rendering query results for people and machines: an aligned table, JSON
//! like `osqueryi --json`, or CSV.
//!
//! The formats follow osqueryi so that hunters can move between the two
//! tools (and pipe either into the same scripts): every value is printed as
//! osquery's string form, NULL as the empty string. Running queries is the
//! host's job; this module only writes what it is given.
use crate::hosts::sqlite::QueryResult;
use crate::row::{Row, Value};
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

pub fn write(out: &mut dyn Write, result: &QueryResult, format: Format) -> std::io::Result<()> {
    match format {
        Format::Table => write_table(out, result),
        Format::Json => write_json(out, result),
        Format::Csv => write_csv(out, result),
    }
}

/// osquery rows are strings; NULL reads as empty, as osqueryi prints it.
fn cell(v: &Value) -> String {
    v.to_osquery_string().unwrap_or_default()
}

/// Characters a hostile file name could use against the reader of a
/// table: controls (newlines, terminal escapes) and bidirectional overrides
/// that reorder what is shown ("Trojan Source").
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A cell made safe for one line of a table: see [`needs_escape`]. Such
/// characters are shown as Rust escapes (`\n`, `\u{1b}`) so they can
/// neither break the layout nor drive the terminal.
fn table_cell(v: &Value) -> String {
    let raw = cell(v);
    if !raw.chars().any(needs_escape) {
        return raw;
    }
    raw.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if needs_escape(c) {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// Display width in chars, as osqueryi measures it (it counts UTF-8 code
/// points, not bytes).
fn width(s: &str) -> usize {
    s.chars().count()
}

/// osqueryi's box: `+---+` rules, a header row, left-aligned cells. Like
/// osqueryi, nothing at all for a result without rows.
fn write_table(out: &mut dyn Write, result: &QueryResult) -> std::io::Result<()> {
    if result.rows.is_empty() || result.columns.is_empty() {
        return Ok(());
    }
    let header: Vec<String> = result
        .columns
        .iter()
        .map(|c| table_cell(&Value::Text(c.clone())))
        .collect();
    let body: Vec<Vec<String>> = result
        .rows
        .iter()
        .map(|r| r.iter().map(table_cell).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in &body {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(c));
        }
    }
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+";
    let line = |out: &mut dyn Write, cells: &[String]| -> std::io::Result<()> {
        for (i, w) in widths.iter().enumerate() {
            let c = cells.get(i).map(String::as_str).unwrap_or("");
            write!(out, "| {}{} ", c, " ".repeat(w - width(c)))?;
        }
        writeln!(out, "|")
    };
    writeln!(out, "{rule}")?;
    line(out, &header)?;
    writeln!(out, "{rule}")?;
    for row in &body {
        line(out, row)?;
    }
    writeln!(out, "{rule}")
}

/// Rows as JSON objects, keys in column order (serde_json's
/// `preserve_order`), every value a string: the shape of `osqueryi --json`.
/// A repeated column name keeps its last value, as a JSON object must.
pub fn json_rows(result: &QueryResult) -> Vec<serde_json::Value> {
    result
        .rows
        .iter()
        .map(|row| {
            let obj: serde_json::Map<String, serde_json::Value> = result
                .columns
                .iter()
                .zip(row)
                .map(|(k, v)| (k.clone(), serde_json::Value::String(cell(v))))
                .collect();
            serde_json::Value::Object(obj)
        })
        .collect()
}

/// One object per line inside a JSON array. `[]` for no rows.
/// One event as `watch` streams it: a JSON object on one line with the
/// table, the kind of event and the row's cells, numbers kept as numbers
/// (a consumer of the stream filters on them) and NULL as `null`.
pub fn event_line(table: &str, event: &str, row: &Row) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("table".into(), table.into());
    obj.insert("event".into(), event.into());
    for (k, v) in row.iter() {
        let j = match v {
            Value::Null => serde_json::Value::Null,
            Value::Integer(i) => (*i).into(),
            Value::Real(f) => (*f).into(),
            Value::Text(s) => s.as_str().into(),
        };
        obj.insert(k.to_string(), j);
    }
    serde_json::Value::Object(obj).to_string()
}

fn write_json(out: &mut dyn Write, result: &QueryResult) -> std::io::Result<()> {
    let rows = json_rows(result);
    if rows.is_empty() {
        return writeln!(out, "[]");
    }
    writeln!(out, "[")?;
    for (n, row) in rows.iter().enumerate() {
        let comma = if n + 1 < rows.len() { "," } else { "" };
        writeln!(out, "  {row}{comma}")?;
    }
    writeln!(out, "]")
}

/// RFC 4180: a header line, then one record per row; a field holding a
/// comma, quote or line break is quoted, quotes doubled.
fn write_csv(out: &mut dyn Write, result: &QueryResult) -> std::io::Result<()> {
    if result.columns.is_empty() {
        return Ok(());
    }
    let header: Vec<String> = result.columns.iter().map(|c| csv_field(c)).collect();
    writeln!(out, "{}", header.join(","))?;
    for row in &result.rows {
        let fields: Vec<String> = row.iter().map(|v| csv_field(&cell(v))).collect();
        writeln!(out, "{}", fields.join(","))?;
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(result: &QueryResult, format: Format) -> String {
        let mut buf = Vec::new();
        write(&mut buf, result, format).unwrap();
        String::from_utf8(buf).unwrap()
    }

    fn sample() -> QueryResult {
        QueryResult {
            columns: vec!["path".into(), "uid".into(), "note".into()],
            rows: vec![
                vec![
                    Value::Text("/etc/dbus-1/é.conf".into()),
                    Value::Integer(0),
                    Value::Null,
                ],
                vec![
                    Value::Text("/a,\"b\"\nc".into()),
                    Value::Integer(-1),
                    Value::Real(1.5),
                ],
            ],
            ..Default::default()
        }
    }

    #[test]
    fn table_is_aligned_by_chars_and_escapes_controls() {
        let got = render(&sample(), Format::Table);
        let want = "\
+--------------------+-----+------+
| path               | uid | note |
+--------------------+-----+------+
| /etc/dbus-1/é.conf | 0   |      |
| /a,\"b\"\\nc          | -1  | 1.5  |
+--------------------+-----+------+
";
        assert_eq!(got, want);
        for line in got.lines() {
            assert_eq!(line.chars().count(), 35, "{line}");
        }
    }

    #[test]
    fn table_escapes_terminal_controls_and_prints_nothing_for_no_rows() {
        let r = QueryResult {
            columns: vec!["x".into()],
            rows: vec![vec![Value::Text("a\tb\u{1b}[31m\r\u{202e}".into())]],
            ..Default::default()
        };
        let got = render(&r, Format::Table);
        assert!(got.contains("| a\\tb\\u{1b}[31m\\r\\u{202e} |"), "{got}");
        assert!(!got.contains('\u{1b}'));
        let empty = QueryResult {
            columns: vec!["x".into()],
            rows: vec![],
            ..Default::default()
        };
        assert_eq!(render(&empty, Format::Table), "");
    }

    #[test]
    fn an_event_line_keeps_numbers_and_nulls() {
        use crate::spec::columns::dbus_process_events as c;
        let mut row = Row::new(&c::SCHEMA);
        row.set(c::PID, 42)
            .set(c::PATH, "/x")
            .set(c::UID, Value::Null);
        let line = event_line("t", "exec", &row);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["table"], "t");
        assert_eq!(v["event"], "exec");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["path"], "/x");
        assert!(v["uid"].is_null());
        assert!(v.get("cmdline").is_none(), "an unfilled column is left out");
        assert_eq!(
            line, r#"{"table":"t","event":"exec","path":"/x","pid":42,"uid":null}"#,
            "cells in column-name order"
        );
    }

    #[test]
    fn json_is_an_array_of_string_objects_in_column_order() {
        let got = render(&sample(), Format::Json);
        assert_eq!(
            got,
            "[\n  {\"path\":\"/etc/dbus-1/é.conf\",\"uid\":\"0\",\"note\":\"\"},\n  \
             {\"path\":\"/a,\\\"b\\\"\\nc\",\"uid\":\"-1\",\"note\":\"1.5\"}\n]\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(parsed[1]["path"], "/a,\"b\"\nc");
        assert_eq!(parsed[0]["note"], "");
        let empty = QueryResult {
            columns: vec!["x".into()],
            rows: vec![],
            ..Default::default()
        };
        assert_eq!(render(&empty, Format::Json), "[]\n");
    }

    #[test]
    fn csv_quotes_per_rfc4180() {
        let got = render(&sample(), Format::Csv);
        assert_eq!(
            got,
            "path,uid,note\n/etc/dbus-1/é.conf,0,\n\"/a,\"\"b\"\"\nc\",-1,1.5\n"
        );
        let empty = QueryResult {
            columns: vec!["a,b".into(), "c".into()],
            rows: vec![],
            ..Default::default()
        };
        assert_eq!(render(&empty, Format::Csv), "\"a,b\",c\n");
    }

    #[test]
    fn csv_round_trips_through_a_real_reader() {
        let r = sample();
        let got = render(&r, Format::Csv);
        let mut reader = csv::Reader::from_reader(got.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(header, r.columns);
        let records: Vec<Vec<String>> = reader
            .records()
            .map(|rec| rec.unwrap().iter().map(String::from).collect())
            .collect();
        let want: Vec<Vec<String>> = r
            .rows
            .iter()
            .map(|row| row.iter().map(cell).collect())
            .collect();
        assert_eq!(records, want);
    }
}
