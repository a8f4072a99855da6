//! Rows and cells: what every table makes and every host and output
//! reads. A leaf: it knows no table, host or source, so any layer may use
//! it without importing another's module.

/// A cell. Text keeps whatever a source could recover as UTF-8; numbers stay
/// numbers so the embedded host compares them as osquery would.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
}

impl Value {
    /// The string form osquery's Thrift rows carry; `None` for NULL (osquery
    /// reads a missing key as NULL).
    pub fn into_osquery_string(self) -> Option<String> {
        match self {
            Value::Text(s) => Some(s),
            other => other.to_osquery_string(),
        }
    }

    /// The string form osquery's Thrift rows carry, by reference.
    pub fn to_osquery_string(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Integer(i) => Some(i.to_string()),
            Value::Real(f) => Some(f.to_string()),
            Value::Text(s) => Some(s.clone()),
        }
    }
}

macro_rules! value_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value { Value::Integer(i64::from(v)) }
        }
    )*};
}
value_from_int!(i8, i16, i32, i64, u8, u16, u32, bool);

impl From<u64> for Value {
    /// Values past i64::MAX do not occur in the columns we fill (ids, sizes,
    /// times); saturate rather than wrap so a corrupt input cannot go negative.
    fn from(v: u64) -> Value {
        Value::Integer(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Real(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// A column of a table, as `build.rs` writes a handle for each from the
/// spec (`spec::columns::<table>::<COLUMN>`): code names columns through
/// these, so a misspelt or removed column is a compile error. `index` is
/// its place in the spec (a row's cell, a bit of the query's used
/// columns), `table` the table's [`Schema::id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub index: usize,
    pub table: u16,
}

impl AsRef<str> for Column {
    fn as_ref(&self) -> &str {
        self.name
    }
}

/// A table's columns, as `build.rs` writes one from each spec
/// (`spec::columns::<table>::SCHEMA`): what a [`Row`] is built from.
#[derive(Debug, PartialEq, Eq)]
pub struct Schema {
    pub table: &'static str,
    /// The table's place in the registration order; a handle carries it.
    pub id: u16,
    /// In spec order: `columns[c.index] == c`.
    pub columns: &'static [Column],
    /// Spec positions in ascending column-name order, the order osquery's
    /// Thrift rows (a `BTreeMap`) and `watch`'s lines carry cells in.
    pub by_name: &'static [u16],
}

impl Schema {
    /// The spec position of a column named `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        let by_name = self.by_name;
        let at = by_name
            .binary_search_by(|&i| self.columns[usize::from(i)].name.cmp(name))
            .ok()?;
        Some(usize::from(by_name[at]))
    }

    pub fn width(&self) -> usize {
        self.columns.len()
    }
}

/// How [`Row::get`] and its kin find a cell: by a spec's [`Column`]
/// handle (an index), or by name for code that reads rows of any table
/// (integration tests, hosts that only know names).
pub trait Key: Copy {
    fn position(self, schema: &Schema) -> Option<usize>;
}

impl Key for Column {
    fn position(self, schema: &Schema) -> Option<usize> {
        if self.table == schema.id {
            Some(self.index)
        } else {
            schema.position(self.name)
        }
    }
}

impl<T: AsRef<str> + ?Sized> Key for &T {
    fn position(self, schema: &Schema) -> Option<usize> {
        schema.position(self.as_ref())
    }
}

/// One output row of a table: a cell per column of its [`Schema`], in
/// spec order; `None` is a column the table did not fill, which every
/// host reads as NULL (a cell set to [`Value::Null`] differs only for
/// `watch`, which prints it as `null` where it leaves an unfilled column
/// out).
///
/// One allocation of the table's width, made once: filling a column is an
/// index write, and a column the query does not use costs its empty slot
/// and nothing on the heap (tables fill only used columns, see
/// [`crate::context::Used`]).
#[derive(Clone, PartialEq)]
pub struct Row {
    schema: &'static Schema,
    cells: Box<[Option<Value>]>,
}

type Cells = Box<[Option<Value>]>;

thread_local! {
    /// The emptied cells of the last row this thread dropped, for the
    /// next row it makes. A streaming host drops each row as soon as it
    /// is encoded, so a whole scan then reuses one block; and a wide
    /// table's block (24 bytes a column, past 1 KiB at 43 columns) is
    /// beyond glibc's per-thread cache of small blocks, where each malloc
    /// and free would take the arena's slower, locked path.
    static SPARE: std::cell::Cell<Option<Cells>> = const { std::cell::Cell::new(None) };
}

impl Drop for Row {
    fn drop(&mut self) {
        let mut cells = std::mem::take(&mut self.cells);
        if cells.is_empty() {
            return;
        }
        cells.fill(None);
        // During thread exit the slot may be gone: the block is freed.
        let _ = SPARE.try_with(|spare| spare.set(Some(cells)));
    }
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ", self.schema.table)?;
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Row {
    pub fn new(schema: &'static Schema) -> Row {
        let width = schema.width();
        let cells = SPARE
            .try_with(std::cell::Cell::take)
            .ok()
            .flatten()
            .filter(|spare| spare.len() == width)
            .unwrap_or_else(|| std::iter::repeat_with(|| None).take(width).collect());
        Row { schema, cells }
    }

    pub fn schema(&self) -> &'static Schema {
        self.schema
    }

    /// Fills `column`. A handle of another table (a slip the compiler
    /// cannot see) is looked up by name and dropped if this table lacks
    /// that column, so it can never fill the wrong cell.
    pub fn set(&mut self, column: Column, value: impl Into<Value>) -> &mut Row {
        debug_assert_eq!(
            column.table, self.schema.id,
            "{} is not a column of {}",
            column.name, self.schema.table
        );
        if let Some(cell) = column
            .position(self.schema)
            .and_then(|i| self.cells.get_mut(i))
        {
            *cell = Some(value.into());
        }
        self
    }

    /// Fills the cell at spec position `i` (hosts and buffers that decode
    /// rows they encoded by position).
    pub fn set_at(&mut self, i: usize, value: Value) {
        if let Some(cell) = self.cells.get_mut(i) {
            *cell = Some(value);
        }
    }

    pub fn get(&self, column: impl Key) -> Option<&Value> {
        self.at(column.position(self.schema)?)
    }

    /// The cell at spec position `i`; `None` when unfilled.
    pub fn at(&self, i: usize) -> Option<&Value> {
        self.cells.get(i)?.as_ref()
    }

    /// Moves a value out (hosts that hand rows on by value).
    pub fn take(&mut self, column: impl Key) -> Option<Value> {
        self.take_at(column.position(self.schema)?)
    }

    pub fn take_at(&mut self, i: usize) -> Option<Value> {
        self.cells.get_mut(i)?.take()
    }

    /// A text cell; `None` for NULL, an absent column or a number.
    pub fn text(&self, column: impl Key) -> Option<&str> {
        match self.get(column) {
            Some(Value::Text(t)) => Some(t),
            _ => None,
        }
    }

    /// An integer cell; `None` for NULL, an absent column or text.
    pub fn int(&self, column: impl Key) -> Option<i64> {
        match self.get(column) {
            Some(Value::Integer(i)) => Some(*i),
            _ => None,
        }
    }

    /// The filled columns' names, in name order.
    pub fn columns(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.iter().map(|(k, _)| k)
    }

    /// Filled columns and their values, in column-name order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Value)> {
        let columns = self.schema.columns;
        self.schema.by_name.iter().filter_map(move |&i| {
            let i = usize::from(i);
            Some((columns[i].name, self.cells[i].as_ref()?))
        })
    }

    /// Filled cells by spec position, in spec order.
    pub fn cells(&self) -> impl Iterator<Item = (usize, &Value)> {
        self.cells
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some((i, v.as_ref()?)))
    }
}

/// What went wrong making one row, kept as the typed errors themselves
/// (a table's own `thiserror` enum over its sources' errors) until the
/// row's error cell is written: [`Errors::write`] is the one place they
/// become text, each message in the order it happened, joined by `"; "`.
#[derive(Debug)]
pub struct Errors<E>(Vec<E>);

impl<E> Default for Errors<E> {
    fn default() -> Errors<E> {
        Errors(Vec::new())
    }
}

impl<E: std::fmt::Display> Errors<E> {
    pub fn push(&mut self, e: impl Into<E>) {
        self.0.push(e.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[E] {
        &self.0
    }

    /// The messages as the error cell holds them; `None` when nothing
    /// went wrong (the cell stays NULL).
    pub fn render(&self) -> Option<String> {
        let mut errors = self.0.iter();
        let first = errors.next()?;
        let mut text = first.to_string();
        for e in errors {
            use std::fmt::Write as _;
            let _ = write!(text, "; {e}");
        }
        Some(text)
    }

    /// Fills `column` with [`Errors::render`], when anything went wrong.
    pub fn write(self, row: &mut Row, column: Column) {
        if let Some(text) = self.render() {
            row.set(column, text);
        }
    }
}

/// Where a table puts its rows as it makes them. A host that can encode
/// a row at once (the osquery host) takes them one by one, so a large
/// result is never held as `Row`s; a `Vec<Row>` collects them.
pub trait RowSink {
    fn push(&mut self, row: Row);
}

impl RowSink for Vec<Row> {
    fn push(&mut self, row: Row) {
        Vec::push(self, row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::columns::{dbus_process_events as p, dbus_service_files as c};

    #[test]
    fn cells_by_position_read_by_handle_or_name_in_name_order() {
        let mut row = Row::new(&c::SCHEMA);
        row.set(c::SIZE, 5u64)
            .set(c::PATH, "/x")
            .set(c::ERROR, Value::Null)
            .set(c::PATH, "/y");
        assert_eq!(row.text(c::PATH), Some("/y"));
        assert_eq!(row.int("size"), Some(5));
        assert_eq!(row.get(c::ERROR), Some(&Value::Null));
        assert_eq!(row.get(c::UID), None);
        assert_eq!(row.get("no_such_column"), None);
        assert_eq!(row.columns().collect::<Vec<_>>(), ["error", "path", "size"]);
        let spec: Vec<usize> = row.cells().map(|(i, _)| i).collect();
        assert_eq!(spec, [c::PATH.index, c::SIZE.index, c::ERROR.index]);
        assert_eq!(row.take(c::PATH), Some(Value::Text("/y".into())));
        assert_eq!(row.get(c::PATH), None);
    }

    /// The next row reuses a dropped row's block, and starts empty.
    #[test]
    fn a_new_row_is_empty_even_in_a_reused_block() {
        let mut row = Row::new(&c::SCHEMA);
        row.set(c::PATH, "/x").set(c::UID, 0);
        let block = row.cells.as_ptr();
        drop(row);
        let row = Row::new(&c::SCHEMA);
        assert_eq!(row.cells.as_ptr(), block);
        assert_eq!(row.cells().count(), 0);
        drop(row);
        let other = Row::new(&p::SCHEMA);
        assert_eq!(other.cells.len(), p::SCHEMA.width());
        assert_eq!(other.cells().count(), 0);
    }

    #[test]
    fn errors_render_once_in_order() {
        #[derive(Debug, thiserror::Error)]
        enum E {
            #[error("first {0}")]
            A(u8),
            #[error("then {0}")]
            B(String),
        }
        let mut row = Row::new(&c::SCHEMA);
        Errors::<E>::default().write(&mut row, c::ERROR);
        assert_eq!(row.get(c::ERROR), None, "nothing went wrong: NULL");
        let mut errors = Errors::<E>::default();
        errors.push(E::A(1));
        errors.push(E::B("b".into()));
        errors.push(E::A(2));
        assert!(matches!(errors.as_slice()[1], E::B(_)));
        errors.write(&mut row, c::ERROR);
        assert_eq!(row.text(c::ERROR), Some("first 1; then b; first 2"));
    }

    #[test]
    fn every_schema_maps_names_to_positions() {
        for spec in crate::spec::load_all() {
            let schema = crate::spec::columns::schema(&spec.name).unwrap();
            assert_eq!(schema.table, spec.name);
            assert_eq!(schema.width(), spec.columns.len());
            for (i, col) in spec.columns.iter().enumerate() {
                assert_eq!(schema.columns[i].name, col.name);
                assert_eq!(schema.columns[i].index, i);
                assert_eq!(schema.columns[i].table, schema.id);
                assert_eq!(schema.position(&col.name), Some(i));
            }
            let mut names: Vec<&str> = spec.columns.iter().map(|c| c.name.as_str()).collect();
            names.sort_unstable();
            let by_name: Vec<&str> = schema
                .by_name
                .iter()
                .map(|&i| schema.columns[usize::from(i)].name)
                .collect();
            assert_eq!(by_name, names);
        }
    }

    /// Another table's handle is a slip the compiler cannot see: debug
    /// builds stop at it (release builds go by its name, see `Row::set`).
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "not a column of dbus_service_files")]
    fn a_foreign_handle_is_a_bug() {
        Row::new(&c::SCHEMA).set(p::PATH, "/p");
    }
}
