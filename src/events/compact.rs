//! Rows as the evented buffers hold them: one byte string per row instead
//! of a [`Row`] map, because a map pays a cell, a name and a heap string per
//! column and the buffers must hold a busy host's day within their
//! per-table bounds (`Config`). An encoded row takes the bytes of its
//! values plus a few per column, and nothing for a column it lacks.
//!
//! Layout, per column present: column number (u8, an index into the
//! store's [`Columns`]), tag (0 NULL, 1 integer, 2 real, 3 text), then 8
//! bytes for a number or a u32 length and UTF-8 bytes for text.
use crate::row::{Row, Value};

/// The column names a store has seen, numbered in order of appearance.
#[derive(Debug, Default)]
pub struct Columns(Vec<&'static str>);

impl Columns {
    fn number(&mut self, name: &'static str) -> Option<u8> {
        if let Some(i) = self.0.iter().position(|c| *c == name) {
            return u8::try_from(i).ok();
        }
        let i = u8::try_from(self.0.len()).ok()?;
        self.0.push(name);
        Some(i)
    }
}

pub fn encode(row: &Row, cols: &mut Columns) -> Box<[u8]> {
    let mut out = Vec::with_capacity(256);
    for (name, value) in row.iter() {
        // More than 256 distinct columns cannot happen (specs have ~20).
        let Some(n) = cols.number(name) else { continue };
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
    let mut row = Row::new();
    let mut i = 0usize;
    let eight = |at: usize| -> Option<[u8; 8]> { bytes.get(at..at + 8)?.try_into().ok() };
    while let (Some(&n), Some(&tag)) = (bytes.get(i), bytes.get(i + 1)) {
        let Some(&name) = cols.0.get(usize::from(n)) else {
            break;
        };
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
        row.set(name, value);
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind_of_value() {
        let mut cols = Columns::default();
        let mut row = Row::new();
        row.set("pid", 42u32)
            .set("time", -1i64)
            .set("cmdline", "/bin/false a b é")
            .set("empty", "")
            .set("ratio", 0.5f64)
            .set("exit_code", Value::Null);
        let bytes = encode(&row, &mut cols);
        assert_eq!(decode(&bytes, &cols), row);
        let mut other = Row::new();
        other.set("cmdline", "x").set("new", 1u8);
        assert_eq!(decode(&encode(&other, &mut cols), &cols), other);
        // Truncated input yields a prefix of the row, never a panic.
        for cut in 0..bytes.len() {
            let partial = decode(&bytes[..cut], &cols);
            assert!(partial.columns().count() <= row.columns().count());
        }
    }
}
