//! Rows as the evented buffers hold them: one byte string per row instead
//! of a [`Row`] map, because a map pays a cell, a name and a heap string per
//! column and the buffers must hold a busy host's day within their
//! per-table bounds (`Config`). An encoded row takes the bytes of its
//! values plus a few per column, and nothing for a column it lacks.
//!
//! Layout, per column present: column number (u8, its position in the
//! table's spec, kept in the store's [`Columns`]), tag (0 NULL, 1 integer,
//! 2 real, 3 text), then 8 bytes for a number or a u32 length and UTF-8
//! bytes for text.
use crate::row::{Row, Schema, Value};

/// The schema of the rows a store holds (every row of one table).
#[derive(Debug)]
pub struct Columns(&'static Schema);

/// Before a store's first row: decodes nothing (no row comes from it).
static NONE: Schema = Schema {
    table: "",
    id: u16::MAX,
    columns: &[],
    by_name: &[],
};

impl Default for Columns {
    fn default() -> Columns {
        Columns(&NONE)
    }
}

pub fn encode(row: &Row, cols: &mut Columns) -> Box<[u8]> {
    cols.0 = row.schema();
    let mut out = Vec::with_capacity(256);
    for (i, value) in row.cells() {
        // More than 256 columns cannot happen (specs have ~20).
        let Ok(n) = u8::try_from(i) else { continue };
        out.push(n);
        match value {
            Value::Null => out.push(0),
            Value::Integer(i) => {
                out.push(1);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Value::Real(f) => {
                out.push(2);
                out.extend_from_slice(&f.to_le_bytes());
            }
            Value::Text(s) => {
                out.push(3);
                let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&s.as_bytes()[..len as usize]);
            }
        }
    }
    out.into_boxed_slice()
}

/// The row back; bytes that do not decode end it early (they never come
/// from anywhere but [`encode`]).
pub fn decode(bytes: &[u8], cols: &Columns) -> Row {
    let mut row = Row::new(cols.0);
    let mut i = 0usize;
    let eight = |at: usize| -> Option<[u8; 8]> { bytes.get(at..at + 8)?.try_into().ok() };
    while let (Some(&n), Some(&tag)) = (bytes.get(i), bytes.get(i + 1)) {
        let column = usize::from(n);
        if column >= cols.0.width() {
            break;
        }
        i += 2;
        let value = match tag {
            0 => Value::Null,
            1 => match eight(i) {
                Some(b) => {
                    i += 8;
                    Value::Integer(i64::from_le_bytes(b))
                }
                None => break,
            },
            2 => match eight(i) {
                Some(b) => {
                    i += 8;
                    Value::Real(f64::from_le_bytes(b))
                }
                None => break,
            },
            3 => {
                let Some(len) = bytes
                    .get(i..i + 4)
                    .and_then(|b| b.try_into().ok())
                    .map(|b| u32::from_le_bytes(b) as usize)
                else {
                    break;
                };
                let Some(text) = bytes.get(i + 4..i + 4 + len) else {
                    break;
                };
                i += 4 + len;
                Value::Text(String::from_utf8_lossy(text).into_owned())
            }
            _ => break,
        };
        row.set_at(column, value);
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::columns::dbus_process_events as c;

    #[test]
    fn round_trips_every_kind_of_value() {
        let mut cols = Columns::default();
        let mut row = Row::new(&c::SCHEMA);
        row.set(c::PID, 42u32)
            .set(c::TIME, -1i64)
            .set(c::CMDLINE, "/bin/false a b é")
            .set(c::CWD, "")
            .set(c::DURATION_MS, 0.5f64)
            .set(c::EXIT_CODE, Value::Null);
        let bytes = encode(&row, &mut cols);
        assert_eq!(decode(&bytes, &cols), row);
        let mut other = Row::new(&c::SCHEMA);
        other.set(c::CMDLINE, "x").set(c::UNUSUAL, 1u8);
        assert_eq!(decode(&encode(&other, &mut cols), &cols), other);
        // Truncated input yields a prefix of the row, never a panic.
        for cut in 0..bytes.len() {
            let partial = decode(&bytes[..cut], &cols);
            assert!(partial.columns().count() <= row.columns().count());
        }
    }
}
