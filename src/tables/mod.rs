//! The tables: one module per table, plus the single registry both hosts read.
//!
//! A table turns a [`QueryContext`] into [`Row`]s by calling `sources`; it
//! never sees SQL, Thrift or SQLite. Columns are named in `tables/*.toml`;
//! a row is built from its table's generated schema and filled through
//! the spec's column handles, so it may leave any column out (NULL) but
//! cannot carry one the spec lacks.
//!
//! The evented tables read the [`Collectors`] handle the registry was made
//! with (none for a one-shot query): the generated dispatch hands it to
//! their generators, so nothing about collecting is global.
use crate::blind;
use crate::context::QueryContext;
use crate::row::{Row, RowSink, Schema};
use crate::settings::Settings;
use crate::sources::collect::Collectors;
use crate::spec::{self, TableSpec};
use std::sync::Arc;

pub mod connection_columns;
pub mod dbus_activated_processes;
pub mod dbus_daemon_children;
pub mod dbus_file_events;
pub mod dbus_policy_rules;
pub mod dbus_process_events;
pub mod dbus_service_files;
pub mod dbus_service_units;
pub mod evented;
pub mod groups;
pub mod process_columns;
pub mod users;

/// Opens the root a query reads. A root that cannot be opened, whatever
/// the reason (even absence: the root asked for is what was to be read),
/// is reported to [`crate::blind`] before the error is returned, so every
/// table that reads files is blind for it alike.
pub(crate) fn open_root(
    settings: &Settings,
) -> Result<crate::sources::fs_safe::Root, crate::sources::fs_safe::FsError> {
    crate::sources::fs_safe::Root::open(&settings.root).inspect_err(|e| {
        let at = crate::sources::fs_safe::render_path(e.path());
        blind::report("cannot open the root", &blind::innermost(e), &at);
    })
}

type GenerateFn = fn(&Settings, &QueryContext) -> Vec<Row>;
type StreamFn = fn(&Settings, &QueryContext, &mut dyn RowSink);
type EventedFn = fn(Option<&Collectors>, &QueryContext) -> Vec<Row>;
type CollectingFn = fn(&Settings, Option<&Collectors>, &QueryContext) -> Vec<Row>;

/// How a table makes its rows: all at once, into a sink as it goes
/// (tables whose results run to thousands of rows), or from the events
/// its collector buffered.
#[derive(Clone, Copy)]
enum Generator {
    Whole(GenerateFn),
    Streamed(StreamFn),
    Evented(EventedFn),
    /// A snapshot that also reads the collectors when some run.
    Collecting(CollectingFn),
}

pub struct Table {
    pub spec: TableSpec,
    /// What its rows are built from: the same columns as `spec`, in order.
    pub schema: &'static Schema,
    generator: Generator,
    /// What an evented table reads; `None` when nothing collects.
    collectors: Option<Arc<Collectors>>,
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
            Generator::Evented(generate) => generate(self.collectors.as_deref(), ctx),
            Generator::Collecting(generate) => generate(settings, self.collectors.as_deref(), ctx),
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
            Generator::Evented(generate) => {
                for row in generate(self.collectors.as_deref(), ctx) {
                    sink.push(row);
                }
            }
            Generator::Collecting(generate) => {
                for row in generate(settings, self.collectors.as_deref(), ctx) {
                    sink.push(row);
                }
            }
            Generator::Streamed(stream) => stream(settings, ctx, sink),
        })
    }
}

/// The generator each spec names (`implementation`, `streamed`,
/// `evented`, `reads_collectors`); written
/// by `build.rs`, so the specs are the one list of tables.
fn generator(name: &str) -> Option<Generator> {
    include!(concat!(env!("OUT_DIR"), "/generators.rs"))
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
    /// The tables with nothing collecting: the evented tables answer with
    /// no rows (a one-shot query).
    pub fn new(settings: Settings) -> Result<Registry, RegistryError> {
        Registry::with_collectors(settings, None)
    }

    /// The tables, the evented ones reading `collectors`.
    pub fn with_collectors(
        settings: Settings,
        collectors: Option<Arc<Collectors>>,
    ) -> Result<Registry, RegistryError> {
        let tables = spec::load_all()
            .into_iter()
            .map(
                |spec| match (generator(&spec.name), spec::columns::schema(&spec.name)) {
                    (Some(generator), Some(schema)) => Ok(Table {
                        spec,
                        schema,
                        generator,
                        collectors: collectors.clone(),
                    }),
                    _ => Err(RegistryError::Unimplemented(spec.name.clone())),
                },
            )
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
