//! The tables: one module per table, plus the single registry both hosts read.
//!
//! A table turns a [`QueryContext`] into [`Row`]s by calling `sources`; it
//! never sees SQL, Thrift or SQLite. Columns are named in `tables/*.toml`;
//! a row may leave any of them out (NULL) but never carries one the spec
//! lacks (a test holds every table to that).
use crate::blind;
use crate::context::QueryContext;
use crate::spec::{self, TableSpec};
use std::path::{Path, PathBuf};

pub mod dbus_activated_processes;
pub mod dbus_daemon_children;
pub mod dbus_file_events;
pub mod dbus_policy_rules;
pub mod dbus_process_events;
pub mod dbus_service_files;
pub mod groups;
pub mod users;

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

    pub fn set(&mut self, column: &'static str, value: impl Into<Value>) -> &mut Row {
        let value = value.into();
        match self.find(column) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (column, value)),
        }
        self
    }

    pub fn get(&self, column: &str) -> Option<&Value> {
        self.find(column).ok().map(|i| &self.0[i].1)
    }

    /// Moves a value out (hosts that hand rows on by value).
    pub fn take(&mut self, column: &str) -> Option<Value> {
        self.find(column).ok().map(|i| self.0.remove(i).1)
    }

    /// Column names, in name order.
    /// A text cell; `None` for NULL, an absent column or a number.
    pub fn text(&self, column: &str) -> Option<&str> {
        match self.get(column) {
            Some(Value::Text(t)) => Some(t),
            _ => None,
        }
    }

    /// An integer cell; `None` for NULL, an absent column or text.
    pub fn int(&self, column: &str) -> Option<i64> {
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

/// Where a table reads the system from: the live host by default, or a
/// mounted image / container rootfs (`--root`) and another `/proc` (`--proc`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub root: PathBuf,
    pub proc: PathBuf,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            root: PathBuf::from("/"),
            proc: PathBuf::from("/proc"),
        }
    }
}

impl Settings {
    /// A path as seen inside the root, e.g. `/etc/passwd` under `--root`.
    pub fn under_root(&self, path: impl AsRef<Path>) -> PathBuf {
        let rel = path.as_ref().strip_prefix("/").unwrap_or(path.as_ref());
        self.root.join(rel)
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

type GenerateFn = fn(&Settings, &QueryContext) -> Vec<Row>;
type StreamFn = fn(&Settings, &QueryContext, &mut dyn RowSink);

/// How a table makes its rows: all at once, or into a sink as it goes
/// (tables whose results run to thousands of rows).
#[derive(Clone, Copy)]
enum Generator {
    Whole(GenerateFn),
    Streamed(StreamFn),
}

pub struct Table {
    pub spec: TableSpec,
    generator: Generator,
}

impl Table {
    /// Every row at once. What the table could not read is reported to
    /// [`crate::blind`] under this table's name, as by `generate_into`.
    pub fn generate(&self, settings: &Settings, ctx: &QueryContext) -> Vec<Row> {
        blind::in_table(&self.spec.name, || match self.generator {
            Generator::Whole(generate) => generate(settings, ctx),
            Generator::Streamed(stream) => {
                let mut rows = Vec::new();
                stream(settings, ctx, &mut rows);
                rows
            }
        })
    }

    /// The same rows as [`Table::generate`], in the same order, handed to
    /// `sink` one at a time; a streaming table never holds them all.
    pub fn generate_into(&self, settings: &Settings, ctx: &QueryContext, sink: &mut dyn RowSink) {
        blind::in_table(&self.spec.name, || match self.generator {
            Generator::Whole(generate) => {
                for row in generate(settings, ctx) {
                    sink.push(row);
                }
            }
            Generator::Streamed(stream) => stream(settings, ctx, sink),
        })
    }
}

fn generator(name: &str) -> Option<Generator> {
    use Generator::{Streamed, Whole};
    Some(match name {
        "dbus_service_files" => Streamed(dbus_service_files::generate_into),
        "dbus_daemon_children" => Whole(dbus_daemon_children::generate),
        "dbus_activated_processes" => Whole(dbus_activated_processes::generate),
        "dbus_policy_rules" => Whole(dbus_policy_rules::generate),
        "dbus_process_events" => Whole(dbus_process_events::generate),
        "dbus_file_events" => Whole(dbus_file_events::generate),
        "users" => Whole(users::generate),
        "groups" => Whole(groups::generate),
        _ => return None,
    })
}

/// The registry: every table with its spec, in spec order.
pub struct Registry {
    pub settings: Settings,
    tables: Vec<Table>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("spec for table {0} has no implementation")]
    Unimplemented(String),
}

impl Registry {
    pub fn new(settings: Settings) -> Result<Registry, RegistryError> {
        let tables = spec::load_all()
            .into_iter()
            .map(|spec| match generator(&spec.name) {
                Some(generator) => Ok(Table { spec, generator }),
                None => Err(RegistryError::Unimplemented(spec.name.clone())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Registry { settings, tables })
    }

    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    pub fn get(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.spec.name == name)
    }

    /// Tables osquery may register: built-in stand-ins stay embedded.
    pub fn extension_tables(&self) -> impl Iterator<Item = &Table> {
        self.tables.iter().filter(|t| !t.spec.embedded_only)
    }

    pub fn generate(&self, name: &str, ctx: &QueryContext) -> Option<Vec<Row>> {
        self.get(name).map(|t| t.generate(&self.settings, ctx))
    }
}
