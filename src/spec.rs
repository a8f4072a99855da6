//! Table schemas, loaded from the `tables/*.toml` specs compiled into the binary.
//!
//! The spec is the one place a column is defined: the osquery registration
//! routes, the embedded `CREATE TABLE`, `osquery-dbus schema` and
//! `docs/tables.md` are all rendered from it, so they cannot drift apart.
use serde::Deserialize;
use std::fmt::Write as _;

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    pub description: String,
    #[serde(default)]
    pub options: Vec<ColumnOption>,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    pub description: String,
    pub query: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    pub name: String,
    pub description: String,
    /// Tables that stand in for osquery built-ins (`users`, `groups`) exist
    /// only in the embedded host: osquery refuses a second table of that name.
    #[serde(default)]
    pub embedded_only: bool,
    pub columns: Vec<ColumnSpec>,
    #[serde(default)]
    pub examples: Vec<Example>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("spec {file}: {source}")]
    Parse {
        file: &'static str,
        #[source]
        source: toml::de::Error,
    },
    #[error("spec {file}: {problem}")]
    Invalid { file: &'static str, problem: String },
}

/// Every spec, in registration order, with the file name used in errors.
pub const SPEC_SOURCES: &[(&str, &str)] = &[
    (
        "tables/dbus_service_files.toml",
        include_str!("../tables/dbus_service_files.toml"),
    ),
    (
        "tables/dbus_daemon_children.toml",
        include_str!("../tables/dbus_daemon_children.toml"),
    ),
    (
        "tables/dbus_activated_processes.toml",
        include_str!("../tables/dbus_activated_processes.toml"),
    ),
    (
        "tables/dbus_policy_rules.toml",
        include_str!("../tables/dbus_policy_rules.toml"),
    ),
    (
        "tables/dbus_process_events.toml",
        include_str!("../tables/dbus_process_events.toml"),
    ),
    (
        "tables/dbus_file_events.toml",
        include_str!("../tables/dbus_file_events.toml"),
    ),
    ("tables/users.toml", include_str!("../tables/users.toml")),
    ("tables/groups.toml", include_str!("../tables/groups.toml")),
];

impl TableSpec {
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
        }
        Ok(())
    }

    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The statement SQLite's `sqlite3_declare_vtab` wants.
    pub fn create_table_sql(&self) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let hidden = if c.has(ColumnOption::Hidden) {
                    " HIDDEN"
                } else {
                    ""
                };
                format!("\"{}\" {}{}", c.name, c.ty.as_str(), hidden)
            })
            .collect();
        format!("CREATE TABLE \"{}\" ({})", self.name, cols.join(", "))
    }

    fn options_text(c: &ColumnSpec) -> String {
        let names: Vec<&str> = c
            .options
            .iter()
            .map(|o| match o {
                ColumnOption::Index => "index",
                ColumnOption::Required => "required",
                ColumnOption::Additional => "additional",
                ColumnOption::Optimized => "optimized",
                ColumnOption::Hidden => "hidden",
            })
            .collect();
        names.join(", ")
    }

    /// Plain-text schema, as `osquery-dbus schema` prints it.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}: {}", self.name, self.description.trim());
        let width = self.columns.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &self.columns {
            let opts = Self::options_text(c);
            let opts = if opts.is_empty() {
                String::new()
            } else {
                format!(" [{opts}]")
            };
            let _ = writeln!(
                out,
                "  {:width$}  {:7}{}  {}",
                c.name,
                c.ty.as_str(),
                opts,
                c.description.trim(),
                width = width
            );
        }
        out
    }

    /// Markdown reference section, as `docs/tables.md` holds it.
    pub fn render_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## {}\n", self.name);
        let _ = writeln!(out, "{}\n", self.description.trim());
        if self.embedded_only {
            let _ = writeln!(
                out,
                "Embedded host only: a stand-in for osquery's built-in table of the same name, \
                 so pack SQL runs unchanged without osquery.\n"
            );
        }
        let _ = writeln!(out, "| Column | Type | Options | Description |");
        let _ = writeln!(out, "|---|---|---|---|");
        for c in &self.columns {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                c.name,
                c.ty.as_str(),
                Self::options_text(c),
                c.description.trim().replace('|', "\\|").replace('\n', " ")
            );
        }
        if !self.examples.is_empty() {
            let _ = writeln!(out, "\n### Examples\n");
            for e in &self.examples {
                let _ = writeln!(out, "{}\n", e.description.trim());
                let _ = writeln!(out, "```sql\n{}\n```\n", e.query.trim());
            }
        }
        out
    }
}

/// Loads every compiled-in spec. The specs ship inside the binary, so an
/// error here is a build defect that the unit tests catch.
pub fn load_all() -> Result<Vec<TableSpec>, SpecError> {
    SPEC_SOURCES
        .iter()
        .map(|(file, text)| TableSpec::parse(file, text))
        .collect()
}

/// The whole `docs/tables.md`, generated; a test keeps the committed copy current.
pub fn render_docs(specs: &[TableSpec]) -> String {
    let mut out = String::from(
        "# Table reference\n\n\
         Generated from `tables/*.toml` by `osquery-dbus schema --markdown`; do not edit by hand.\n\n",
    );
    for s in specs {
        out.push_str(&s.render_markdown());
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compiled_in_spec_loads() {
        let specs = load_all().expect("specs load");
        assert!(specs.iter().any(|s| s.name == "dbus_service_files"));
        for s in &specs {
            assert!(s.create_table_sql().starts_with("CREATE TABLE"));
        }
    }

    #[test]
    fn option_bits_match_osquery() {
        let spec = TableSpec::parse(
            "t.toml",
            r#"
name = "t"
description = "d"
[[columns]]
name = "a"
type = "BIGINT"
description = "x"
options = ["index", "optimized"]
[[columns]]
name = "b"
type = "TEXT"
description = "y"
options = ["hidden", "additional"]
"#,
        )
        .unwrap();
        assert_eq!(spec.columns[0].option_bits(), 9);
        assert_eq!(spec.columns[1].option_bits(), 20);
        assert!(spec.columns[1].accepts_constraints());
        assert_eq!(
            spec.create_table_sql(),
            r#"CREATE TABLE "t" ("a" BIGINT, "b" TEXT HIDDEN)"#
        );
    }

    #[test]
    fn rejects_bad_specs() {
        let dup = r#"
name = "t"
description = "d"
[[columns]]
name = "a"
type = "TEXT"
description = "x"
[[columns]]
name = "a"
type = "TEXT"
description = "x"
"#;
        assert!(matches!(
            TableSpec::parse("t.toml", dup),
            Err(SpecError::Invalid { .. })
        ));
        let bad_type = "name = \"t\"\ndescription = \"d\"\n[[columns]]\nname = \"a\"\ntype = \"BLOB\"\ndescription = \"x\"\n";
        assert!(matches!(
            TableSpec::parse("t.toml", bad_type),
            Err(SpecError::Parse { .. })
        ));
        let unknown_key = "name = \"t\"\ndescription = \"d\"\nfoo = 1\n[[columns]]\nname = \"a\"\ntype = \"TEXT\"\ndescription = \"x\"\n";
        assert!(TableSpec::parse("t.toml", unknown_key).is_err());
    }
}
