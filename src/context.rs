//! `QueryContext`: what a query asks of a table, whichever host it came through.
//!
//! osquery sends its query context as JSON with every `generate` call; the
//! embedded SQLite host builds the same type from xBestIndex/xFilter. Tables
//! read only this type, so both hosts drive identical table code. Constraints
//! are hints for narrowing a scan: the caller's SQLite re-checks every WHERE
//! term, so a table may return extra rows but never too few.
use crate::row::{Column, Row};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Constraint operators, with SQLite's (and so osquery's) numeric codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Unique,
    Eq,
    Gt,
    Le,
    Lt,
    Ge,
    Match,
    Like,
    Glob,
    Regexp,
    /// Any code this build does not interpret (e.g. 68 `!=`, 72 `IS`):
    /// kept so nothing is lost, never acted on.
    Other(i64),
}

impl Op {
    pub fn from_code(code: i64) -> Op {
        match code {
            1 => Op::Unique,
            2 => Op::Eq,
            4 => Op::Gt,
            8 => Op::Le,
            16 => Op::Lt,
            32 => Op::Ge,
            64 => Op::Match,
            65 => Op::Like,
            66 => Op::Glob,
            67 => Op::Regexp,
            other => Op::Other(other),
        }
    }

    pub fn code(self) -> i64 {
        match self {
            Op::Unique => 1,
            Op::Eq => 2,
            Op::Gt => 4,
            Op::Le => 8,
            Op::Lt => 16,
            Op::Ge => 32,
            Op::Match => 64,
            Op::Like => 65,
            Op::Glob => 66,
            Op::Regexp => 67,
            Op::Other(c) => c,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub op: Op,
    /// The right-hand side as text, as osquery sends it.
    pub expr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("query context is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("query context is malformed: {0}")]
    Shape(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryContext {
    constraints: BTreeMap<String, Vec<Constraint>>,
    /// `None` when the caller did not say: then every column counts as used.
    cols_used: Option<BTreeSet<String>>,
}

fn as_code(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        // Pre-3.0 cores sent operators as strings.
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl QueryContext {
    pub fn new() -> QueryContext {
        QueryContext::default()
    }

    /// Parses osquery's context JSON: the 5.x form and the pre-3.0 form
    /// (`"list": ""`, operators as strings). An empty string means "no
    /// context", which some callers send for a bare `generate`.
    pub fn from_json(text: &str) -> Result<QueryContext, ContextError> {
        let mut ctx = QueryContext::new();
        if text.trim().is_empty() {
            return Ok(ctx);
        }
        let root: Value = serde_json::from_str(text)?;
        let obj = root
            .as_object()
            .ok_or_else(|| ContextError::Shape("top level is not an object".into()))?;
        match obj.get("constraints") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::Array(items)) => {
                for item in items {
                    ctx.parse_column_constraints(item)?;
                }
            }
            Some(_) => return Err(ContextError::Shape("`constraints` is not a list".into())),
        }
        match obj.get("colsUsed") {
            None | Some(Value::Null) => {}
            Some(Value::Array(cols)) => {
                let mut used = BTreeSet::new();
                for c in cols {
                    match c {
                        Value::String(s) => {
                            used.insert(s.clone());
                        }
                        _ => {
                            return Err(ContextError::Shape("`colsUsed` holds a non-string".into()))
                        }
                    }
                }
                ctx.cols_used = Some(used);
            }
            Some(_) => return Err(ContextError::Shape("`colsUsed` is not a list".into())),
        }
        // `colsUsedBitset` carries the same facts as `colsUsed` by column
        // position; the names are authoritative, so it is accepted and unused.
        Ok(ctx)
    }

    fn parse_column_constraints(&mut self, item: &Value) -> Result<(), ContextError> {
        let name = item
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ContextError::Shape("a constraint has no column name".into()))?;
        let list = match item.get("list") {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::String(s)) if s.is_empty() => return Ok(()),
            Some(Value::Array(list)) => list,
            Some(_) => {
                return Err(ContextError::Shape(format!(
                    "constraint list of column {name} is not a list"
                )))
            }
        };
        for entry in list {
            let op = entry.get("op").and_then(as_code).ok_or_else(|| {
                ContextError::Shape(format!("constraint on {name} has no numeric op"))
            })?;
            let expr = entry.get("expr").map(as_text).unwrap_or_default();
            self.add_constraint(name, Op::from_code(op), expr);
        }
        Ok(())
    }

    pub fn add_constraint(&mut self, column: &str, op: Op, expr: impl Into<String>) {
        self.constraints
            .entry(column.to_string())
            .or_default()
            .push(Constraint {
                op,
                expr: expr.into(),
            });
    }

    pub fn set_cols_used<I, S>(&mut self, cols: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cols_used = Some(cols.into_iter().map(Into::into).collect());
    }

    /// Every constraint on `column`, in the order received.
    pub fn constraints(&self, column: &str) -> &[Constraint] {
        self.constraints
            .get(column)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The values of every `=` constraint on `column` (osquery turns `IN
    /// (…)` into several), or `None` when there is none and the table must
    /// scan everything. Several values are a union, as in osquery's own
    /// tables: wider than `a = 1 AND a = 2`, which is safe.
    pub fn eq_values(&self, column: &str) -> Option<BTreeSet<String>> {
        let values: BTreeSet<String> = self
            .constraints(column)
            .iter()
            .filter(|c| c.op == Op::Eq)
            .map(|c| c.expr.clone())
            .collect();
        (!values.is_empty()).then_some(values)
    }

    /// Whether the query reads `column`; true when the caller did not say,
    /// so a costly column is skipped only when it is certainly unused.
    pub fn uses(&self, column: impl AsRef<str>) -> bool {
        self.cols_used
            .as_ref()
            .is_none_or(|used| used.contains(column.as_ref()))
    }

    /// Which of a table's columns (`all`, its spec's handles in order) the
    /// query reads, decided once: a bitset by spec position.
    pub fn used(&self, all: &[Column]) -> Used {
        Used(all.iter().map(|c| self.uses(c)).collect())
    }

    pub fn cols_used(&self) -> Option<&BTreeSet<String>> {
        self.cols_used.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_osquery5_context() {
        let json = r#"{"colsUsed":["path","uid"],"colsUsedBitset":5,"constraints":[
            {"name":"path","list":[{"op":2,"expr":"/a.service"},{"op":2,"expr":"/b.service"}],"affinity":"TEXT"},
            {"name":"mtime","list":[{"op":4,"expr":"100"},{"op":16,"expr":"200"}],"affinity":"BIGINT"},
            {"name":"uid","list":[],"affinity":"BIGINT"}]}"#;
        let ctx = QueryContext::from_json(json).unwrap();
        let eq = ctx.eq_values("path").unwrap();
        assert_eq!(eq.len(), 2);
        assert!(eq.contains("/a.service"));
        assert_eq!(ctx.constraints("mtime")[0].op, Op::Gt);
        assert_eq!(ctx.constraints("mtime")[1].op, Op::Lt);
        assert!(ctx.eq_values("mtime").is_none());
        assert!(ctx.eq_values("uid").is_none());
        assert!(ctx.uses("path"));
        assert!(!ctx.uses("sha256"));
    }

    #[test]
    fn every_known_op_and_unknown_ones() {
        for code in [
            1, 2, 4, 8, 16, 32, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 150,
        ] {
            let json = format!(
                r#"{{"constraints":[{{"name":"c","list":[{{"op":{code},"expr":"x"}}],"affinity":"TEXT"}}]}}"#
            );
            let ctx = QueryContext::from_json(&json).unwrap();
            assert_eq!(ctx.constraints("c")[0].op.code(), code);
        }
        let ctx = QueryContext::from_json(
            r#"{"constraints":[{"name":"c","list":[{"op":68,"expr":"x"},{"op":72,"expr":"y"}]}]}"#,
        )
        .unwrap();
        assert_eq!(ctx.constraints("c")[0].op, Op::Other(68));
        assert!(
            ctx.eq_values("c").is_none(),
            "unknown ops never narrow a scan"
        );
    }

    #[test]
    fn tolerates_pre_3_0_form() {
        let json = r#"{"constraints":[
            {"name":"path","list":"","affinity":"TEXT"},
            {"name":"pid","list":[{"op":"2","expr":"42"}],"affinity":"INTEGER"}]}"#;
        let ctx = QueryContext::from_json(json).unwrap();
        assert!(ctx.constraints("path").is_empty());
        assert_eq!(
            ctx.eq_values("pid").unwrap().into_iter().next().unwrap(),
            "42"
        );
        assert!(
            ctx.uses("anything"),
            "no colsUsed means every column is used"
        );
    }

    #[test]
    fn numeric_expr_becomes_text() {
        let ctx = QueryContext::from_json(
            r#"{"constraints":[{"name":"pid","list":[{"op":2,"expr":42}]}]}"#,
        )
        .unwrap();
        assert!(ctx.eq_values("pid").unwrap().contains("42"));
    }

    #[test]
    fn empty_context_is_no_constraints() {
        let ctx = QueryContext::from_json("").unwrap();
        assert!(ctx.eq_values("path").is_none());
        assert!(ctx.uses("path"));
        let ctx = QueryContext::from_json("{}").unwrap();
        assert!(ctx.cols_used().is_none());
    }

    #[test]
    fn malformed_contexts_are_errors_not_panics() {
        for bad in [
            "{",
            "[]",
            "42",
            r#"{"constraints":5}"#,
            r#"{"constraints":[{"list":[]}]}"#,
            r#"{"constraints":[{"name":"a","list":[{"expr":"x"}]}]}"#,
            r#"{"constraints":[{"name":"a","list":{}}]}"#,
            r#"{"colsUsed":"path"}"#,
            r#"{"colsUsed":[1]}"#,
        ] {
            assert!(QueryContext::from_json(bad).is_err(), "{bad} should fail");
        }
    }
}

/// The columns of one table a query reads (see [`QueryContext::used`]).
#[derive(Debug, Clone)]
pub struct Used(Vec<bool>);

impl Used {
    pub fn has(&self, c: Column) -> bool {
        self.0.get(c.index).copied().unwrap_or(true)
    }

    /// Whether any of `cs` is read.
    pub fn any(&self, cs: &[Column]) -> bool {
        cs.iter().any(|c| self.has(*c))
    }

    /// Sets `c` to what `value` makes, only when the query reads it: a
    /// column costs its insert and its allocation only where asked for.
    pub fn set<V: Into<crate::row::Value>>(
        &self,
        row: &mut Row,
        c: Column,
        value: impl FnOnce() -> V,
    ) {
        if self.has(c) {
            row.set(c, value());
        }
    }
}
