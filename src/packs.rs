//! Query packs: the hunts, written once in `packs/*.conf` (osquery's pack
//! JSON) and compiled in, so `hunt`, osqueryd's schedule and Fleet all run
//! the same SQL. The Fleet YAML twins are rendered from here, never by hand.
//!
//! Every query carries a `severity` (high, medium, info) so `hunt` can fail
//! only on what deserves a responder. osquery's pack parser reads only the
//! query keys it knows (`query`, `interval`, `snapshot`, `removed`,
//! `platform`, `version`, `shard`, `denylist`) and skips the rest, as it
//! does with the `description` and `value` keys its own shipped packs
//! carry, so the extra key is harmless there. Fleet's query spec has no
//! severity field: the YAML puts it at the head of the description.
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The packs shipped with the project: (name, JSON text).
pub const BUILTIN: &[(&str, &str)] = &[(
    "dbus-persistence",
    include_str!("../packs/dbus-persistence.conf"),
)];

#[derive(Debug, Clone, Deserialize)]
pub struct Pack {
    #[serde(skip)]
    pub name: String,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub discovery: Vec<String>,
    /// Query name to query; osquery keys packs by name, kept sorted here so
    /// reports and generated files are stable.
    pub queries: BTreeMap<String, PackQuery>,
}

/// How much a finding of a query matters; ordered, least first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Context for a hunter; expected on healthy hosts now and then.
    Info,
    /// Unusual and worth a look; rare on a stock host.
    Medium,
    /// Tampering or a direct path to code execution as another account.
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackQuery {
    pub query: String,
    pub interval: u64,
    pub description: String,
    pub value: String,
    /// A query without one (a user's own pack) counts as medium.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Snapshot queries log the whole result each run; differential ones
    /// (the default) log only what was added or removed.
    #[serde(default)]
    pub snapshot: Option<bool>,
    #[serde(default)]
    pub removed: Option<bool>,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub shard: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("pack {name}: {source}")]
    Parse {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("pack {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pack {name}: query {query} has an empty {field}")]
    Incomplete {
        name: String,
        query: String,
        field: &'static str,
    },
}

impl PackQuery {
    pub fn severity(&self) -> Severity {
        self.severity.unwrap_or(Severity::Medium)
    }

    /// The description as Fleet shows it: severity first.
    pub fn fleet_description(&self) -> String {
        format!("[{}] {}", self.severity().as_str(), self.description)
    }

    /// Fleet's `logging` value for this query's osquery result mode.
    pub fn fleet_logging(&self) -> &'static str {
        if self.snapshot == Some(true) {
            "snapshot"
        } else if self.removed == Some(false) {
            "differential_ignore_removals"
        } else {
            "differential"
        }
    }
}

impl Pack {
    pub fn parse(name: &str, text: &str) -> Result<Pack, PackError> {
        let mut pack: Pack = serde_json::from_str(text).map_err(|source| PackError::Parse {
            name: name.to_string(),
            source,
        })?;
        pack.name = name.to_string();
        for (qname, q) in &pack.queries {
            for (field, value) in [
                ("query", &q.query),
                ("description", &q.description),
                ("value", &q.value),
            ] {
                if value.trim().is_empty() {
                    return Err(PackError::Incomplete {
                        name: name.to_string(),
                        query: qname.clone(),
                        field,
                    });
                }
            }
        }
        Ok(pack)
    }

    /// A pack file of the user's, named after its file stem.
    pub fn read(path: &Path) -> Result<Pack, PackError> {
        let text = std::fs::read_to_string(path).map_err(|source| PackError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pack".to_string());
        Pack::parse(&name, &text)
    }

    /// Fleet's YAML for every query (`fleetctl apply -f`), one document a
    /// query. Written by hand rather than with a YAML serializer: the shape
    /// is fixed and tiny, and block scalars keep the SQL readable.
    pub fn to_fleet_yaml(&self) -> String {
        let mut out = format!(
            "# Generated from packs/{}.conf by `osquery-dbus packs --fleet`; do not edit by hand.\n",
            self.name
        );
        for (qname, q) in &self.queries {
            let platform = q
                .platform
                .as_deref()
                .or(self.platform.as_deref())
                .unwrap_or("linux");
            let _ = writeln!(out, "---");
            let _ = writeln!(out, "apiVersion: v1");
            let _ = writeln!(out, "kind: query");
            let _ = writeln!(out, "spec:");
            let _ = writeln!(out, "  name: {}", yaml_plain(qname));
            let _ = writeln!(
                out,
                "  description: {}",
                yaml_quoted(&q.fleet_description())
            );
            let _ = writeln!(out, "  query: |-");
            for line in q.query.trim().lines() {
                let _ = writeln!(out, "    {}", line.trim_end());
            }
            let _ = writeln!(out, "  interval: {}", q.interval);
            let _ = writeln!(out, "  platform: {platform}");
            let _ = writeln!(out, "  logging: {}", q.fleet_logging());
            let _ = writeln!(out, "  observer_can_run: true");
            let _ = writeln!(out, "  automations_enabled: false");
        }
        out
    }
}

/// Query names are identifiers (`[a-z0-9_]`); anything else is quoted.
fn yaml_plain(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        s.to_string()
    } else {
        yaml_quoted(s)
    }
}

/// A double-quoted YAML scalar; JSON string escapes are valid YAML ones.
fn yaml_quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Every compiled-in pack.
pub fn builtin() -> Result<Vec<Pack>, PackError> {
    BUILTIN
        .iter()
        .map(|(name, text)| Pack::parse(name, text))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_packs_parse_and_are_complete() {
        let packs = builtin().expect("packs parse");
        assert!(!packs.is_empty());
        for p in &packs {
            assert_eq!(p.platform.as_deref(), Some("linux"));
            assert!(!p.queries.is_empty());
            for (name, q) in &p.queries {
                assert!(q.interval > 0);
                assert!(q.severity.is_some(), "{name} has no severity");
            }
        }
    }

    #[test]
    fn incomplete_or_malformed_packs_are_errors() {
        assert!(matches!(
            Pack::parse(
                "p",
                r#"{"queries":{"a":{"query":"SELECT 1","interval":60,"description":"","value":"v"}}}"#
            ),
            Err(PackError::Incomplete {
                field: "description",
                ..
            })
        ));
        assert!(matches!(
            Pack::parse("p", "{"),
            Err(PackError::Parse { .. })
        ));
        assert!(Pack::parse(
            "p",
            r#"{"queries":{"a":{"query":"SELECT 1","interval":60,"description":"d","value":"v","typo":1}}}"#
        )
        .is_err());
    }

    #[test]
    fn fleet_logging_follows_result_mode() {
        let p = Pack::parse(
            "p",
            r#"{"platform":"linux","queries":{
              "s":{"query":"SELECT 1","interval":60,"description":"d","value":"v","snapshot":true},
              "d":{"query":"SELECT 1","interval":60,"description":"d","value":"v"},
              "i":{"query":"SELECT 1","interval":60,"description":"d","value":"v","removed":false}}}"#,
        )
        .unwrap();
        assert_eq!(p.queries["s"].fleet_logging(), "snapshot");
        assert_eq!(p.queries["d"].fleet_logging(), "differential");
        assert_eq!(
            p.queries["i"].fleet_logging(),
            "differential_ignore_removals"
        );
        let yaml = p.to_fleet_yaml();
        assert_eq!(yaml.matches("kind: query").count(), 3);
        assert!(yaml.contains("  query: |-\n    SELECT 1\n"));
    }
}
