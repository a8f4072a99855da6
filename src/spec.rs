//! Table schemas, compiled from the `tables/*.toml` specs by `build.rs`.
//!
//! The spec is the one place a column is defined: the osquery registration
//! routes, the embedded `CREATE TABLE`, `osquery-dbus schema` and
//! `docs/tables.md` are all rendered from it, so they cannot drift apart.
//! The TOML is parsed and checked when the crate is built: every process
//! starts by loading the specs, so a process start pays no parse and a bad
//! spec fails the build rather than a query.
use std::fmt::Write as _;

mod model;
pub use model::{ColumnOption, ColumnSpec, ColumnType, Example, SpecError, TableSpec};

impl TableSpec {
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

/// Every table's column handles, from its spec (see `build.rs`):
/// `spec::columns::dbus_service_files::BTIME`.
pub mod columns {
    include!(concat!(env!("OUT_DIR"), "/columns.rs"));
}

/// Every table's spec, in registration order: constructors `build.rs`
/// wrote from `tables/*.toml` after checking them.
pub fn load_all() -> Vec<TableSpec> {
    include!(concat!(env!("OUT_DIR"), "/specs.rs"))
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

    /// The constructors `build.rs` wrote say what the TOML says: every
    /// spec file is there once, field for field (descriptions with quotes,
    /// backslashes and line breaks are escaped by the generator).
    #[test]
    fn compiled_specs_equal_the_toml_files() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tables");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("tables/")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        let specs = load_all();
        let mut names: Vec<_> = specs.iter().map(|s| format!("{}.toml", s.name)).collect();
        names.sort();
        let file_names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, file_names);
        for s in &specs {
            let text = std::fs::read_to_string(dir.join(format!("{}.toml", s.name))).expect("read");
            let parsed = TableSpec::parse("tables/*.toml", &text).expect("parses");
            assert_eq!(&parsed, s);
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
implementation = "t::generate"
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
implementation = "t::generate"
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
        let bad_type = "name = \"t\"\ndescription = \"d\"\nimplementation = \"t::generate\"\n[[columns]]\nname = \"a\"\ntype = \"BLOB\"\ndescription = \"x\"\n";
        assert!(matches!(
            TableSpec::parse("t.toml", bad_type),
            Err(SpecError::Parse { .. })
        ));
        let unknown_key = "name = \"t\"\ndescription = \"d\"\nimplementation = \"t::generate\"\nfoo = 1\n[[columns]]\nname = \"a\"\ntype = \"TEXT\"\ndescription = \"x\"\n";
        assert!(TableSpec::parse("t.toml", unknown_key).is_err());
        // The implementation is written into generated code: a module and
        // a function, nothing more.
        let one = "name = \"t\"\ndescription = \"d\"\nimplementation = \"t::generate\"\n[[columns]]\nname = \"a\"\ntype = \"TEXT\"\ndescription = \"x\"\n";
        assert!(TableSpec::parse("t.toml", one).is_ok());
        let code = one.replace("t::generate", "t::generate(); std::process::exit(0)");
        assert!(matches!(
            TableSpec::parse("t.toml", &code),
            Err(SpecError::Invalid { .. })
        ));
    }
}
