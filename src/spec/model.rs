//! What a table spec is and which specs are well formed: shared by the
//! library and `build.rs`, which compiles this file as a module of its own,
//! parses `tables/*.toml` with `TableSpec::parse` and turns them into the
//! constructors [`super::load_all`] runs, so a bad spec fails the build and
//! no TOML is parsed at run time.
//!
//! `specs_generated` is the cfg `build.rs` sets for the library: parsing is
//! compiled where it is not set (the build script itself) and in unit tests,
//! so `toml` is a build- and dev-dependency only.
use serde::Deserialize;

/// Column types osquery understands; they double as SQLite declared types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ColumnType {
    #[serde(rename = "TEXT")]
    Text,
    #[serde(rename = "INTEGER")]
    Integer,
    #[serde(rename = "BIGINT")]
    Bigint,
    #[serde(rename = "DOUBLE")]
    Double,
}

impl ColumnType {
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Text => "TEXT",
            ColumnType::Integer => "INTEGER",
            ColumnType::Bigint => "BIGINT",
            ColumnType::Double => "DOUBLE",
        }
    }
}

/// Column options, with osquery's bit values (`osquery/core/tables.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnOption {
    Index,
    Required,
    Additional,
    Optimized,
    Hidden,
}

impl ColumnOption {
    pub fn bit(self) -> u32 {
        match self {
            ColumnOption::Index => 1,
            ColumnOption::Required => 2,
            ColumnOption::Additional => 4,
            ColumnOption::Optimized => 8,
            ColumnOption::Hidden => 16,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    pub description: String,
    #[serde(default)]
    pub options: Vec<ColumnOption>,
    /// What a table must do beyond listing to fill this column (`content`:
    /// read and parse the file; …), named by the table: `build.rs` writes
    /// each name's columns as one list (`spec::columns::<table>::NEEDS_<NAME>`),
    /// so the schema alone says which columns cost what.
    #[serde(default)]
    pub needs: Vec<String>,
}

impl ColumnSpec {
    pub fn has(&self, opt: ColumnOption) -> bool {
        self.options.contains(&opt)
    }

    /// The options bitmask osquery expects in a registration route.
    pub fn option_bits(&self) -> u32 {
        self.options.iter().fold(0, |acc, o| acc | o.bit())
    }

    /// Whether constraints on this column reach a table: osquery forwards
    /// them only for index, required and additional columns.
    pub fn accepts_constraints(&self) -> bool {
        self.has(ColumnOption::Index)
            || self.has(ColumnOption::Required)
            || self.has(ColumnOption::Additional)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    pub description: String,
    pub query: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    pub name: String,
    pub description: String,
    /// Tables that stand in for osquery built-ins (`users`, `groups`) exist
    /// only in the embedded host: osquery refuses a second table of that name.
    #[serde(default)]
    pub embedded_only: bool,
    /// The function that makes the rows, as a path under `crate::tables`
    /// (`users::generate`): `build.rs` writes the registry's dispatch
    /// from it, so a name that does not resolve fails the build.
    pub implementation: String,
    /// The implementation takes a `RowSink` (rows handed on as made)
    /// rather than returning them all.
    #[serde(default)]
    pub streamed: bool,
    /// Rows come from a collector that runs between queries (`watch`
    /// streams these tables).
    #[serde(default)]
    pub evented: bool,
    /// A snapshot table that also reads what the collectors saw when some
    /// run (the lineage of activated processes); its implementation then
    /// takes the collectors too, `None` in a one-shot query.
    #[serde(default)]
    pub reads_collectors: bool,
    pub columns: Vec<ColumnSpec>,
    #[serde(default)]
    pub examples: Vec<Example>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[cfg(any(test, not(specs_generated)))]
    #[error("spec {file}: {source}")]
    Parse {
        file: &'static str,
        #[source]
        source: toml::de::Error,
    },
    #[error("spec {file}: {problem}")]
    Invalid { file: &'static str, problem: String },
}

#[cfg(any(test, not(specs_generated)))]
impl TableSpec {
    /// Reads one spec and checks what serde cannot: names osquery and SQLite
    /// accept, no column twice, every column described.
    pub fn parse(file: &'static str, text: &str) -> Result<TableSpec, SpecError> {
        let spec: TableSpec =
            toml::from_str(text).map_err(|source| SpecError::Parse { file, source })?;
        spec.validate(file)?;
        Ok(spec)
    }

    fn validate(&self, file: &'static str) -> Result<(), SpecError> {
        let invalid = |problem: String| SpecError::Invalid { file, problem };
        let is_ident = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && !s.starts_with(|c: char| c.is_ascii_digit())
        };
        if !is_ident(&self.name) {
            return Err(invalid(format!("bad table name {:?}", self.name)));
        }
        if self.columns.is_empty() {
            return Err(invalid("no columns".into()));
        }
        // Written into generated code: a module and a function, nothing else.
        match self.implementation.split_once("::") {
            Some((module, function)) if is_ident(module) && is_ident(function) => {}
            _ => {
                return Err(invalid(format!(
                    "implementation {:?} is not module::function",
                    self.implementation
                )))
            }
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.columns {
            if !is_ident(&c.name) {
                return Err(invalid(format!("bad column name {:?}", c.name)));
            }
            if !seen.insert(c.name.as_str()) {
                return Err(invalid(format!("column {} defined twice", c.name)));
            }
            if c.description.trim().is_empty() {
                return Err(invalid(format!("column {} has no description", c.name)));
            }
            if let Some(n) = c.needs.iter().find(|n| !is_ident(n)) {
                return Err(invalid(format!("column {}: bad needs {n:?}", c.name)));
            }
        }
        Ok(())
    }
}
