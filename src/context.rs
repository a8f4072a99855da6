//! `QueryContext`: what a query asks of a table, whichever host it came through.
//!
//! osquery sends its query context as JSON with every `generate` call; the
//! embedded SQLite host builds the same type from xBestIndex/xFilter. Tables
//! read only this type, so both hosts drive identical table code. Constraints
//! are hints for narrowing a scan: the caller's SQLite re-checks every WHERE
//! term, so a table may return extra rows but never too few.
use crate::row::{Column, Row};
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

impl QueryContext {
    pub fn new() -> QueryContext {
        QueryContext::default()
    }

    /// Parses osquery's context JSON: the 5.x form and the pre-3.0 form
    /// (`"list": ""`, operators as strings). An empty string means "no
    /// context", which some callers send for a bare `generate`. Memory is
    /// bounded by the text and [`MAX_CONTEXT_ELEMENTS`] (see `parse`).
    pub fn from_json(text: &str) -> Result<QueryContext, ContextError> {
        if text.trim().is_empty() {
            return Ok(QueryContext::new());
        }
        parse::from_str(text)
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

/// Most constraint entries, constraint columns and `colsUsed` names one
/// context may hold together. osquery sends one entry per `IN` value, so
/// this admits a 100,000-value `IN` list; with every entry a few dozen
/// bytes once parsed, a context cannot cost more than a few megabytes
/// beyond its own text, however it is shaped.
pub const MAX_CONTEXT_ELEMENTS: usize = 100_000;

/// osquery's context JSON read straight into a [`QueryContext`], counting
/// elements against [`MAX_CONTEXT_ELEMENTS`] as they come: nothing is built
/// that the result does not keep (no `serde_json::Value` tree, which costs
/// 30 to 60 times the text for `[0,0,…]` or `[{},{},…]`), unknown keys are
/// skipped without building anything (serde_json keeps one byte per
/// level of nesting it skips), and every known key has a fixed depth.
mod parse {
    use super::{Constraint, ContextError, Op, QueryContext, MAX_CONTEXT_ELEMENTS};
    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::borrow::Cow;
    use std::cell::Cell;
    use std::collections::BTreeSet;
    use std::fmt;

    /// Elements still allowed.
    struct Budget(Cell<usize>);

    impl Budget {
        fn take<E: de::Error>(&self) -> Result<(), E> {
            match self.0.get().checked_sub(1) {
                Some(left) => {
                    self.0.set(left);
                    Ok(())
                }
                None => Err(E::custom(format!(
                    "more than {MAX_CONTEXT_ELEMENTS} constraints and used columns"
                ))),
            }
        }
    }

    pub(super) fn from_str(text: &str) -> Result<QueryContext, ContextError> {
        let budget = Budget(Cell::new(MAX_CONTEXT_ELEMENTS));
        let mut de = serde_json::Deserializer::from_str(text);
        let ctx = Top(&budget)
            .deserialize(&mut de)
            .and_then(|ctx| de.end().map(|()| ctx))
            .map_err(|e| match e.classify() {
                serde_json::error::Category::Data => ContextError::Shape(e.to_string()),
                _ => ContextError::Json(e),
            })?;
        Ok(ctx)
    }

    struct Top<'b>(&'b Budget);

    impl<'de> DeserializeSeed<'de> for Top<'_> {
        type Value = QueryContext;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<QueryContext, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Top<'_> {
        type Value = QueryContext;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object (top level)")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<QueryContext, A::Error> {
            let mut ctx = QueryContext::new();
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                match &*key {
                    "constraints" => {
                        // A repeated key replaces, as in a JSON object.
                        ctx.constraints.clear();
                        map.next_value_seed(Constraints(self.0, &mut ctx))?;
                    }
                    "colsUsed" => ctx.cols_used = map.next_value_seed(Names(self.0))?,
                    // `colsUsedBitset` carries the same facts as `colsUsed`
                    // by column position; the names are authoritative.
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(ctx)
        }
    }

    /// `constraints`: a list of per-column objects; null or `""` (pre-3.0
    /// cores) for none.
    struct Constraints<'b, 'c>(&'b Budget, &'c mut QueryContext);

    impl<'de> DeserializeSeed<'de> for Constraints<'_, '_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Constraints<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("`constraints` as a list")
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
            if s.is_empty() {
                Ok(())
            } else {
                Err(E::invalid_type(de::Unexpected::Str(s), &self))
            }
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some((name, list)) = seq.next_element_seed(Column(self.0))? {
                // A column without entries leaves no trace, as before.
                if !list.is_empty() {
                    self.1.constraints.entry(name).or_default().extend(list);
                }
            }
            Ok(())
        }
    }

    /// One column's object: `name`, `list` (in either order), `affinity`
    /// and anything else skipped.
    struct Column<'b>(&'b Budget);

    impl<'de> DeserializeSeed<'de> for Column<'_> {
        type Value = (String, Vec<Constraint>);
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Column<'_> {
        type Value = (String, Vec<Constraint>);
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a column's constraints as an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            self.0.take()?;
            let (mut name, mut list) = (None, Vec::new());
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                match &*key {
                    "name" => name = Some(map.next_value::<String>()?),
                    "list" => list = map.next_value_seed(List(self.0))?,
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            let name = name.ok_or_else(|| de::Error::custom("a constraint has no column name"))?;
            let list = list
                .into_iter()
                .map(|(op, expr)| match op {
                    Some(op) => Ok(Constraint {
                        op: Op::from_code(op),
                        expr,
                    }),
                    None => Err(de::Error::custom(format!(
                        "constraint on {name} has no numeric op"
                    ))),
                })
                .collect::<Result<_, _>>()?;
            Ok((name, list))
        }
    }

    /// A column's `list`: entries of `op` and `expr`; null or `""` for none.
    struct List<'b>(&'b Budget);

    type Entry = (Option<i64>, String);

    impl<'de> DeserializeSeed<'de> for List<'_> {
        type Value = Vec<Entry>;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for List<'_> {
        type Value = Vec<Entry>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a constraint list")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            if s.is_empty() {
                Ok(Vec::new())
            } else {
                Err(E::invalid_type(de::Unexpected::Str(s), &self))
            }
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = seq.next_element_seed(EntrySeed(self.0))? {
                out.push(entry);
            }
            Ok(out)
        }
    }

    struct EntrySeed<'b>(&'b Budget);

    impl<'de> DeserializeSeed<'de> for EntrySeed<'_> {
        type Value = Entry;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Entry, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for EntrySeed<'_> {
        type Value = Entry;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a constraint as an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
            self.0.take()?;
            let (mut op, mut expr) = (None, String::new());
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                match &*key {
                    "op" => op = map.next_value::<Scalar>()?.code(),
                    "expr" => expr = map.next_value::<Scalar>()?.text(),
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok((op, expr))
        }
    }

    /// An `op` or `expr` value. Either is a scalar in every osquery
    /// version; a list or object there is refused rather than built.
    enum Scalar {
        Null,
        Bool(bool),
        Int(i64),
        /// Beyond `i64`, or fractional: kept as JSON writes it.
        Number(String),
        Text(String),
    }

    impl Scalar {
        /// Numbers as themselves; strings (pre-3.0 cores) parsed.
        fn code(&self) -> Option<i64> {
            match self {
                Scalar::Int(i) => Some(*i),
                Scalar::Text(s) => s.trim().parse().ok(),
                _ => None,
            }
        }

        /// The right-hand side as text: NULL is empty, numbers as JSON
        /// writes them.
        fn text(self) -> String {
            match self {
                Scalar::Null => String::new(),
                Scalar::Bool(b) => b.to_string(),
                Scalar::Int(i) => i.to_string(),
                Scalar::Number(s) | Scalar::Text(s) => s,
            }
        }
    }

    impl<'de> de::Deserialize<'de> for Scalar {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
            d.deserialize_any(ScalarVisitor)
        }
    }

    struct ScalarVisitor;

    impl Visitor<'_> for ScalarVisitor {
        type Value = Scalar;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string, number, boolean or null")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
            Ok(Scalar::Null)
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> Result<Scalar, E> {
            Ok(Scalar::Bool(b))
        }
        fn visit_i64<E: de::Error>(self, i: i64) -> Result<Scalar, E> {
            Ok(Scalar::Int(i))
        }
        fn visit_u64<E: de::Error>(self, u: u64) -> Result<Scalar, E> {
            Ok(i64::try_from(u).map_or_else(|_| Scalar::Number(u.to_string()), Scalar::Int))
        }
        fn visit_f64<E: de::Error>(self, f: f64) -> Result<Scalar, E> {
            Ok(Scalar::Number(
                serde_json::Number::from_f64(f)
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
            ))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar, E> {
            Ok(Scalar::Text(s.to_owned()))
        }
        fn visit_string<E: de::Error>(self, s: String) -> Result<Scalar, E> {
            Ok(Scalar::Text(s))
        }
    }

    /// `colsUsed`: a list of names; null leaves "every column used".
    struct Names<'b>(&'b Budget);

    impl<'de> DeserializeSeed<'de> for Names<'_> {
        type Value = Option<BTreeSet<String>>;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Names<'_> {
        type Value = Option<BTreeSet<String>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("`colsUsed` as a list of strings")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut used = BTreeSet::new();
            while let Some(name) = seq.next_element::<String>()? {
                self.0.take()?;
                used.insert(name);
            }
            Ok(Some(used))
        }
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
    fn element_bound_and_order_free_keys() {
        let names: Vec<String> = (0..=MAX_CONTEXT_ELEMENTS)
            .map(|i| format!("\"c{i}\""))
            .collect();
        let over = format!(r#"{{"colsUsed":[{}]}}"#, names.join(","));
        let e = QueryContext::from_json(&over).unwrap_err().to_string();
        assert!(e.contains("more than 100000"), "{e}");
        let at = format!(r#"{{"colsUsed":[{}]}}"#, names[1..].join(","));
        assert!(QueryContext::from_json(&at).is_ok());
        // `list` before `name`, unknown keys of any shape skipped.
        let ctx = QueryContext::from_json(
            r#"{"x":[[{"y":[1]}]],"constraints":[{"list":[{"expr":"/a","op":2}],"name":"path"}]}"#,
        )
        .unwrap();
        assert!(ctx.eq_values("path").unwrap().contains("/a"));
        // Skipping a nest costs serde_json a byte per level, nothing built.
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(QueryContext::from_json(&deep).is_ok());
        let deep = format!(
            "{{\"constraints\":{}{}}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(QueryContext::from_json(&deep).is_err());
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
            r#"{"constraints":[{"name":"a","list":[{"op":2,"expr":[0,0]}]}]}"#,
            "[0,0,0]",
            "{} {}",
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
