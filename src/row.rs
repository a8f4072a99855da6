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
/// these, so a misspelt or removed column is a compile error, and `index`
/// (its place in the spec) lets a query's used columns be a bitset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub index: usize,
}

impl AsRef<str> for Column {
    fn as_ref(&self) -> &str {
        self.name
    }
}

/// What [`Row::set`] takes: a spec's [`Column`] handle, or a bare name for
/// code that fills the same columns for several tables.
pub trait ColumnName: Copy {
    fn column_name(self) -> &'static str;
}

impl ColumnName for Column {
    fn column_name(self) -> &'static str {
        self.name
    }
}

impl ColumnName for &'static str {
    fn column_name(self) -> &'static str {
        self
    }
}

/// One output row: column name to value; an absent column is NULL.
///
/// Kept as a vector sorted by column name rather than a map: a row holds a
/// few dozen columns, where a map's tree nodes would add memory to every
/// row of a large result for no faster lookup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row(Vec<(&'static str, Value)>);

impl Row {
    pub fn new() -> Row {
        Row::default()
    }

    fn find(&self, column: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| (*k).cmp(column))
    }

    pub fn set(&mut self, column: impl ColumnName, value: impl Into<Value>) -> &mut Row {
        let column = column.column_name();
        let value = value.into();
        match self.find(column) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (column, value)),
        }
        self
    }

    pub fn get(&self, column: impl AsRef<str>) -> Option<&Value> {
        let column = column.as_ref();
        self.find(column).ok().map(|i| &self.0[i].1)
    }

    /// Moves a value out (hosts that hand rows on by value).
    pub fn take(&mut self, column: impl AsRef<str>) -> Option<Value> {
        let column = column.as_ref();
        self.find(column).ok().map(|i| self.0.remove(i).1)
    }

    /// Column names, in name order.
    /// A text cell; `None` for NULL, an absent column or a number.
    pub fn text(&self, column: impl AsRef<str>) -> Option<&str> {
        match self.get(column) {
            Some(Value::Text(t)) => Some(t),
            _ => None,
        }
    }

    /// An integer cell; `None` for NULL, an absent column or text.
    pub fn int(&self, column: impl AsRef<str>) -> Option<i64> {
        match self.get(column) {
            Some(Value::Integer(i)) => Some(*i),
            _ => None,
        }
    }

    pub fn columns(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.iter().map(|(k, _)| *k)
    }

    /// Columns and values, in column-name order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Value)> {
        self.0.iter().map(|(k, v)| (*k, v))
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
