//! A generate's rows in osquery's string form, packed as the table makes
//! them, until the reply can go out.
//!
//! The reply's list header carries the row count, so nothing can be
//! written before the table is done. Held as `Row`s meanwhile, every row
//! would keep a cell per column (in a vector grown by doubling) and a heap
//! string per text cell until the reply is written, so the extension's
//! peak memory would grow with rows times columns of overhead, not with
//! the bytes of the values. Packed, a row is a bitmap of which of the
//! table's columns it carries, then each value's length and bytes: the
//! column names, the same in every row, are written from the table's
//! [`Schema`] only when the reply is, and a row is dropped as soon as it
//! is packed. NULLs are left out, as osquery reads a missing key as NULL.
//!
//! Rows are packed into chunks of [`CHUNK`] bytes and never straddle two,
//! so the buffer grows without copying what it holds, and each chunk is
//! freed once its rows are written.
use super::reply::{self, RowWriter};
use crate::row::{Row, RowSink, Schema, Value};
use std::fmt::Write;

/// Big enough that a chunk holds dozens of rows, small enough that the
/// last one's slack is nothing next to the rows.
const CHUNK: usize = 64 * 1024;

pub struct EncodedRows {
    /// Bit `k` of a row's bitmap stands for the column at spec position
    /// `schema.by_name[k]`: cells in ascending name order, written exactly
    /// as the generated writer writes a `BTreeMap`.
    schema: &'static Schema,
    chunks: Vec<Vec<u8>>,
    rows: usize,
    /// The row being packed, reused.
    packed: Vec<u8>,
    /// A number's text, reused.
    number: String,
}

impl EncodedRows {
    pub fn new(schema: &'static Schema) -> EncodedRows {
        EncodedRows {
            schema,
            chunks: Vec::new(),
            rows: 0,
            packed: Vec::new(),
            number: String::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    /// At least one byte, so that even a row of a table without columns
    /// takes room and is counted back when read.
    fn bitmap_len(&self) -> usize {
        self.schema.width().div_ceil(8).max(1)
    }

    /// The column names in bit order.
    fn names(&self) -> Vec<&'static str> {
        let columns = self.schema.columns;
        let by_name = self.schema.by_name.iter();
        by_name.map(|&i| columns[usize::from(i)].name).collect()
    }

    /// Writes every row to `w`, in the order they were pushed, freeing
    /// each chunk once its rows are out.
    pub fn write_to(self, w: &mut RowWriter<'_>) -> thrift::Result<()> {
        let bitmap_len = self.bitmap_len();
        let names = self.names();
        for chunk in self.chunks {
            let mut cells = Vec::with_capacity(names.len());
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                rest = unpack(&names, bitmap_len, rest, &mut cells)?;
                w.row(cells.len(), cells.iter().copied())?;
            }
        }
        Ok(())
    }

    /// Appends the packed row to the last chunk, or to a new one when it
    /// does not fit (a row longer than a chunk gets one of its own size).
    fn store(&mut self) {
        let need = self.packed.len();
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= need);
        if !fits {
            self.chunks.push(Vec::with_capacity(need.max(CHUNK)));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.extend_from_slice(&self.packed);
        }
        self.rows += 1;
    }
}

impl RowSink for EncodedRows {
    fn push(&mut self, row: Row) {
        let bitmap_len = self.bitmap_len();
        self.packed.clear();
        self.packed.resize(bitmap_len, 0);
        let columns = self.schema.columns;
        for (k, &i) in self.schema.by_name.iter().enumerate() {
            // By position: the row is of this table (a handle of another
            // table's row would go by name).
            let text = match row.get(columns[usize::from(i)]) {
                None | Some(Value::Null) => continue,
                Some(Value::Text(t)) => t.as_str(),
                Some(Value::Integer(n)) => {
                    self.number.clear();
                    let _ = write!(self.number, "{n}");
                    &self.number
                }
                Some(Value::Real(f)) => {
                    self.number.clear();
                    let _ = write!(self.number, "{f}");
                    &self.number
                }
            };
            self.packed[k / 8] |= 1 << (k % 8);
            put_len(&mut self.packed, text.len());
            self.packed.extend_from_slice(text.as_bytes());
        }
        self.store();
    }
}

/// LEB128: a service file's cells are short, so most lengths take a byte.
fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn take_len(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let mut n: usize = 0;
    for (i, b) in bytes.iter().enumerate().take(10) {
        let part = usize::from(b & 0x7f).checked_shl(7 * i as u32)?;
        n |= part;
        if b & 0x80 == 0 {
            return Some((n, &bytes[i + 1..]));
        }
    }
    None
}

/// One packed row from the front of `bytes` into `cells` (column, value);
/// returns what follows it. Only this module packs rows, so a row that does
/// not read back is a bug here: it fails the reply, never the process.
fn unpack<'a>(
    names: &[&'a str],
    bitmap_len: usize,
    bytes: &'a [u8],
    cells: &mut Vec<(&'a str, &'a str)>,
) -> thrift::Result<&'a [u8]> {
    let corrupt = || reply::miscount("a packed row does not read back");
    cells.clear();
    let (bitmap, mut rest) = bytes.split_at_checked(bitmap_len).ok_or_else(corrupt)?;
    for (i, name) in names.iter().enumerate() {
        if bitmap[i / 8] & (1 << (i % 8)) == 0 {
            continue;
        }
        let (len, after) = take_len(rest).ok_or_else(corrupt)?;
        let (value, after) = after.split_at_checked(len).ok_or_else(corrupt)?;
        let value = std::str::from_utf8(value).map_err(|_| corrupt())?;
        cells.push((*name, value));
        rest = after;
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::columns::dbus_service_files as c;

    /// The cells a row should come back as: what the whole-response path
    /// makes of it (NULLs left out, in name order).
    fn expected(row: &Row) -> Vec<(String, String)> {
        let mut names: Vec<&str> = row.schema().columns.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names
            .iter()
            .filter_map(|n| Some((n.to_string(), row.get(n)?.to_osquery_string()?)))
            .collect()
    }

    fn unpacked(e: &EncodedRows) -> Vec<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut cells = Vec::new();
        for chunk in &e.chunks {
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                rest = unpack(&e.names(), e.bitmap_len(), rest, &mut cells).unwrap();
                out.push(
                    cells
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                );
            }
        }
        out
    }

    #[test]
    fn rows_read_back_as_the_whole_path_makes_them() {
        // A table of more than 8 columns, so the bitmap spans bytes.
        let new = || Row::new(&c::SCHEMA);
        let long = "é".repeat(40_000); // a cell past one LEB128 byte and past a chunk
        let mut rows = Vec::new();
        let mut r = new();
        r.set(c::PATH, "/x")
            .set(c::UID, 0u32)
            .set(c::SIZE, -5i64)
            .set(c::ERROR, Value::Null)
            .set(c::EXEC, "")
            .set(c::EXEC_HIJACKABLE, 1.5f64);
        rows.push(r);
        rows.push(new());
        let mut r = new();
        r.set(c::SERVICE_NAME, long.as_str())
            .set(c::ATIME, i64::MIN)
            .set(c::PATH, "/y");
        rows.push(r);
        let mut r = new();
        r.set(c::WORLD_WRITABLE, f64::MAX).set(c::BUS, 1u8);
        rows.push(r);
        for i in 0..3_000 {
            let mut r = new();
            r.set(c::PATH, format!("/many/{i}")).set(c::DEVICE, i);
            rows.push(r);
        }
        let mut e = EncodedRows::new(&c::SCHEMA);
        for row in rows.clone() {
            e.push(row);
        }
        assert_eq!(e.len(), rows.len());
        assert!(e.chunks.len() > 1, "rows span several chunks");
        let want: Vec<_> = rows.iter().map(expected).collect();
        assert_eq!(unpacked(&e), want);
        let first: Vec<(&str, &str)> = want[0]
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            first,
            [
                ("exec", ""),
                ("exec_hijackable", "1.5"),
                ("path", "/x"),
                ("size", "-5"),
                ("uid", "0")
            ],
            "name order, NULL left out"
        );
    }

    #[test]
    fn a_table_without_columns_packs_empty_rows() {
        static EMPTY: Schema = Schema {
            table: "empty",
            id: u16::MAX,
            columns: &[],
            by_name: &[],
        };
        let mut e = EncodedRows::new(&EMPTY);
        e.push(Row::new(&EMPTY));
        e.push(Row::new(&EMPTY));
        assert_eq!(unpacked(&e), vec![Vec::new(), Vec::new()]);
    }

    #[test]
    fn lengths_round_trip_and_truncation_is_an_error() {
        for n in [0, 1, 127, 128, 300, 16_383, 16_384, 1 << 40, usize::MAX] {
            let mut b = Vec::new();
            put_len(&mut b, n);
            b.push(0xAA);
            assert_eq!(take_len(&b), Some((n, &[0xAA][..])), "{n}");
        }
        assert_eq!(take_len(&[0x80, 0x80]), None);
        assert_eq!(take_len(&[0xff; 11]), None);
        let names = ["a", "b"];
        let mut cells = Vec::new();
        // Bit for `a` set, then a length running past the end.
        assert!(unpack(&names, 1, &[1, 5, b'x'], &mut cells).is_err());
        assert!(unpack(&names, 1, &[], &mut cells).is_err());
        assert!(unpack(&names, 1, &[1, 2, 0xff, 0xfe], &mut cells).is_err());
    }
}
