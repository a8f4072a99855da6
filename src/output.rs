//! Rendering query results for people and machines: an aligned table, JSON
//! like `osqueryi --json`, or CSV.
//!
//! The formats follow osqueryi so that hunters can move between the two
//! tools (and pipe either into the same scripts): every value is printed as
//! osquery's string form, NULL as the empty string. Running queries is the
//! host's job; this module only writes what it is given, row by row as it
//! comes ([`Writer`] is the host's [`ResultSink`]): CSV and JSON keep no
//! rows at all, the table keeps [`TABLE_LOOKAHEAD`] rows to size its
//! columns.
use crate::hosts::sqlite::{QueryResult, ResultSink};
use crate::row::{Row, Value};
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Writes a whole result (as [`Writer`] would have, row by row).
pub fn write(out: &mut dyn Write, result: &QueryResult, format: Format) -> std::io::Result<()> {
    let mut w = Writer::new(out, format);
    w.columns(&result.columns)?;
    for row in &result.rows {
        w.row_ref(row)?;
    }
    w.finish()
}

/// Rows the table format holds before it fixes its column widths and
/// starts printing; a later cell wider than its column widens only its
/// own line. Bounds the table's memory like the other formats'.
pub const TABLE_LOOKAHEAD: usize = 1000;

/// Renders rows as they arrive; [`Writer::finish`] closes the output.
pub struct Writer<'w> {
    out: &'w mut dyn Write,
    format: Format,
    columns: Vec<String>,
    /// JSON: each key, escaped, with the index of the value it shows (a
    /// repeated name shows its last value, at its first place).
    json_keys: Vec<(String, usize)>,
    /// A reused buffer for a number's text.
    scratch: String,
    rows: usize,
    /// The table's header and first rows until the widths are fixed.
    pending: Vec<Vec<String>>,
    widths: Option<Vec<usize>>,
}

impl<'w> Writer<'w> {
    pub fn new(out: &'w mut dyn Write, format: Format) -> Writer<'w> {
        Writer {
            out,
            format,
            columns: Vec::new(),
            json_keys: Vec::new(),
            scratch: String::new(),
            rows: 0,
            pending: Vec::new(),
            widths: None,
        }
    }

    fn row_ref(&mut self, row: &[Value]) -> std::io::Result<()> {
        match self.format {
            Format::Table => {
                let cells: Vec<String> = row.iter().map(table_cell).collect();
                match &self.widths {
                    Some(widths) => table_line(self.out, widths, &cells)?,
                    None => {
                        self.pending.push(cells);
                        if self.pending.len() > TABLE_LOOKAHEAD {
                            self.flush_table()?;
                        }
                    }
                }
            }
            // Written straight from the values, no per-row allocation:
            // the same bytes as `json_object` and `csv_field` make.
            Format::Json => {
                let lead = if self.rows == 0 { "[\n  {" } else { ",\n  {" };
                self.out.write_all(lead.as_bytes())?;
                for (n, (key, at)) in self.json_keys.iter().enumerate() {
                    if n > 0 {
                        self.out.write_all(b",")?;
                    }
                    self.out.write_all(key.as_bytes())?;
                    self.out.write_all(b":")?;
                    let text = row.get(*at).map_or("", |v| cell_str(v, &mut self.scratch));
                    serde_json::to_writer(&mut *self.out, text)?;
                }
                self.out.write_all(b"}")?;
            }
            Format::Csv => {
                for (n, v) in row.iter().enumerate() {
                    if n > 0 {
                        self.out.write_all(b",")?;
                    }
                    let text = cell_str(v, &mut self.scratch);
                    if text.contains([',', '"', '\n', '\r']) {
                        write!(self.out, "\"{}\"", text.replace('"', "\"\""))?;
                    } else {
                        self.out.write_all(text.as_bytes())?;
                    }
                }
                self.out.write_all(b"\n")?;
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Fixes the table's widths from the header and the rows held, and
    /// prints them.
    fn flush_table(&mut self) -> std::io::Result<()> {
        let header: Vec<String> = self
            .columns
            .iter()
            .map(|c| table_cell(&Value::Text(c.clone())))
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
        for row in &self.pending {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(c));
            }
        }
        let rule = table_rule(&widths);
        writeln!(self.out, "{rule}")?;
        table_line(self.out, &widths, &header)?;
        writeln!(self.out, "{rule}")?;
        for row in std::mem::take(&mut self.pending) {
            table_line(self.out, &widths, &row)?;
        }
        self.widths = Some(widths);
        Ok(())
    }

    /// Ends the output: the table's closing rule, JSON's `]`. Like osqueryi,
    /// the table prints nothing at all for a result without rows.
    pub fn finish(mut self) -> std::io::Result<()> {
        match self.format {
            Format::Table if self.rows == 0 || self.columns.is_empty() => Ok(()),
            Format::Table => {
                if self.widths.is_none() {
                    self.flush_table()?;
                }
                let rule = table_rule(self.widths.as_deref().unwrap_or(&[]));
                writeln!(self.out, "{rule}")
            }
            Format::Json if self.rows == 0 => writeln!(self.out, "[]"),
            Format::Json => writeln!(self.out, "\n]"),
            Format::Csv => Ok(()),
        }
    }
}

impl ResultSink for Writer<'_> {
    fn columns(&mut self, names: &[String]) -> std::io::Result<()> {
        self.columns = names.to_vec();
        self.json_keys.clear();
        for (n, name) in names.iter().enumerate() {
            if names[..n].contains(name) {
                continue;
            }
            let last = names.iter().rposition(|c| c == name).unwrap_or(n);
            let key = serde_json::Value::String(name.clone()).to_string();
            self.json_keys.push((key, last));
        }
        if self.format == Format::Csv && !names.is_empty() {
            let header: Vec<String> = names.iter().map(|c| csv_field(c)).collect();
            writeln!(self.out, "{}", header.join(","))?;
        }
        Ok(())
    }

    fn row(&mut self, row: Vec<Value>) -> std::io::Result<()> {
        self.row_ref(&row)
    }
}

/// osquery rows are strings; NULL reads as empty, as osqueryi prints it.
fn cell(v: &Value) -> String {
    v.to_osquery_string().unwrap_or_default()
}

/// [`cell`] without copying text: numbers are written into `scratch`.
fn cell_str<'a>(v: &'a Value, scratch: &'a mut String) -> &'a str {
    use std::fmt::Write as _;
    match v {
        Value::Text(s) => s,
        Value::Null => "",
        Value::Integer(i) => {
            scratch.clear();
            let _ = write!(scratch, "{i}");
            scratch
        }
        Value::Real(f) => {
            scratch.clear();
            let _ = write!(scratch, "{f}");
            scratch
        }
    }
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

/// osqueryi's box: `+---+` rules around a header row and left-aligned
/// cells.
fn table_rule(widths: &[usize]) -> String {
    widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+"
}

fn table_line(out: &mut dyn Write, widths: &[usize], cells: &[String]) -> std::io::Result<()> {
    for (i, w) in widths.iter().enumerate() {
        let c = cells.get(i).map(String::as_str).unwrap_or("");
        write!(out, "| {}{} ", c, " ".repeat(w.saturating_sub(width(c))))?;
    }
    writeln!(out, "|")
}

/// Rows as JSON objects, keys in column order (serde_json's
/// `preserve_order`), every value a string: the shape of `osqueryi --json`.
/// A repeated column name keeps its last value, as a JSON object must.
pub fn json_rows(result: &QueryResult) -> Vec<serde_json::Value> {
    result
        .rows
        .iter()
        .map(|row| json_object(&result.columns, row))
        .collect()
}

fn json_object(columns: &[String], row: &[Value]) -> serde_json::Value {
    let obj: serde_json::Map<String, serde_json::Value> = columns
        .iter()
        .zip(row)
        .map(|(k, v)| (k.clone(), serde_json::Value::String(cell(v))))
        .collect();
    serde_json::Value::Object(obj)
}

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

/// RFC 4180: a header line, then one record per row; a field holding a
/// comma, quote or line break is quoted, quotes doubled.
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
    fn the_table_fixes_its_widths_after_the_lookahead() {
        let mut r = QueryResult {
            columns: vec!["n".into()],
            rows: (0..TABLE_LOOKAHEAD + 5)
                .map(|i| vec![Value::Integer(i as i64)])
                .collect(),
            ..Default::default()
        };
        r.rows
            .push(vec![Value::Text("much wider than the rest".into())]);
        let got = render(&r, Format::Table);
        let lines: Vec<&str> = got.lines().collect();
        // Rule, header, rule, the rows, rule.
        assert_eq!(lines.len(), 3 + r.rows.len() + 1);
        assert_eq!(lines[0], "+------+");
        assert_eq!(lines[3 + TABLE_LOOKAHEAD + 4], "| 1004 |");
        assert_eq!(lines[lines.len() - 2], "| much wider than the rest |");
        assert_eq!(lines[lines.len() - 1], "+------+");
    }

    #[test]
    fn json_keeps_the_last_of_a_repeated_name_at_its_first_place() {
        let r = QueryResult {
            columns: vec!["a".into(), "b\"".into(), "a".into()],
            rows: vec![vec![Value::Integer(1), Value::Null, Value::Real(2.5)]],
            ..Default::default()
        };
        let got = render(&r, Format::Json);
        assert_eq!(got, "[\n  {\"a\":\"2.5\",\"b\\\"\":\"\"}\n]\n");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&got).unwrap()[0],
            json_rows(&r)[0]
        );
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
