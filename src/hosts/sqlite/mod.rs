//! The embedded host: every registry table as an eponymous SQLite virtual
//! table (rusqlite `vtab`), so pack SQL runs without osquery, including its
//! joins with `users` and `groups`.
//!
//! This module owns the connection and turns statements into a
//! [`QueryResult`]; [`vtab`] adapts SQLite's planner calls to the table API.
//! Rendering results is left to [`crate::output`].
use crate::blind::{self, BlindSpot};
use crate::row::Value;
use crate::tables::Registry;
use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::types::ValueRef;
use std::sync::Arc;

mod vtab;

use vtab::{RegistryTab, TableHandle, Trace};

#[derive(Debug, thiserror::Error)]
pub enum SqliteHostError {
    /// SQLite's own message (`no such table: foo`, `near "SELEC": syntax
    /// error`) is what a hunter needs, so it is shown unadorned.
    #[error("{0}")]
    Sql(#[from] rusqlite::Error),
    #[error("registering table {table}: {source}")]
    Register {
        table: String,
        #[source]
        source: rusqlite::Error,
    },
}

/// Column names and typed rows of one statement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// What the tables could not read while answering (every statement of
    /// the batch): the rows are only what could be seen.
    pub blind: Vec<BlindSpot>,
}

pub struct EmbeddedHost {
    conn: rusqlite::Connection,
    #[cfg(test)]
    trace: Option<Trace>,
}

impl EmbeddedHost {
    /// An in-memory database with every registry table registered as an
    /// eponymous module, so `SELECT … FROM dbus_service_files` needs no
    /// `CREATE VIRTUAL TABLE` and no table can be created twice.
    pub fn open(registry: Arc<Registry>) -> Result<EmbeddedHost, SqliteHostError> {
        EmbeddedHost::open_with_trace(registry, None)
    }

    fn open_with_trace(
        registry: Arc<Registry>,
        trace: Option<Trace>,
    ) -> Result<EmbeddedHost, SqliteHostError> {
        let conn = rusqlite::Connection::open_in_memory()?;
        for (index, table) in registry.tables().iter().enumerate() {
            let handle = Arc::new(TableHandle {
                registry: Arc::clone(&registry),
                index,
                trace: trace.clone(),
            });
            conn.create_module(
                table.spec.name.as_str(),
                rusqlite::vtab::eponymous_only_module::<RegistryTab>(),
                Some(handle),
            )
            .map_err(|source| SqliteHostError::Register {
                table: table.spec.name.clone(),
                source,
            })?;
        }
        Ok(EmbeddedHost {
            conn,
            #[cfg(test)]
            trace,
        })
    }

    /// Runs every `;`-separated statement in `sql` and returns the last
    /// one's result (a statement without rows gives an empty result), as a
    /// script's final SELECT is the answer its author wants.
    pub fn query(&self, sql: &str) -> Result<QueryResult, SqliteHostError> {
        let (result, blind) = blind::collect(|| self.run(sql));
        result.map(|r| QueryResult { blind, ..r })
    }

    fn run(&self, sql: &str) -> Result<QueryResult, SqliteHostError> {
        let mut batch = rusqlite::Batch::new(&self.conn, sql);
        let mut last = QueryResult::default();
        while let Some(mut stmt) = batch.next()? {
            let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
            let width = columns.len();
            let mut rows = Vec::new();
            let mut cursor = stmt.query([])?;
            while let Some(row) = cursor.next()? {
                let mut out = Vec::with_capacity(width);
                for i in 0..width {
                    out.push(to_value(row.get_ref(i)?));
                }
                rows.push(out);
            }
            last = QueryResult {
                columns,
                rows,
                blind: Vec::new(),
            };
        }
        Ok(last)
    }

    /// Every generate call so far with its context, when tracing is on.
    #[cfg(test)]
    fn traced(&self) -> Vec<(String, crate::context::QueryContext)> {
        self.trace
            .as_ref()
            .and_then(|t| t.lock().ok().map(|v| v.clone()))
            .unwrap_or_default()
    }
}

/// SQLite's value as a cell; blobs only come from SQL expressions (no
/// table produces them) and are shown as lossy text.
fn to_value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(b) | ValueRef::Blob(b) => {
            Value::Text(String::from_utf8_lossy(b).into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Op;
    use crate::settings::Settings;
    use rusqlite::types::ValueRef;
    use std::sync::Mutex;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
alice:x:1000:1000:Alice:/srv/alice:/bin/zsh\n\
bob:x:1001:1001:Bob:/home/bob:/usr/sbin/nologin\n\
big:x:4294967294:4294967294::/nonexistent:/bin/false\n";
    const GROUP: &str = "root:x:0:\nalice:x:1000:\nbob:x:1001:\nhunters:x:1500:alice,bob\n";

    fn host(trace: bool) -> (tempfile::TempDir, EmbeddedHost) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        let settings = Settings {
            root: dir.path().to_path_buf(),
            ..Settings::default()
        };
        let registry = Arc::new(Registry::new(settings).unwrap());
        let trace = trace.then(|| Arc::new(Mutex::new(Vec::new())));
        let host = EmbeddedHost::open_with_trace(registry, trace).unwrap();
        (dir, host)
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn selects_every_user_with_spec_columns() {
        let (_dir, host) = host(false);
        let r = host.query("SELECT * FROM users").unwrap();
        assert_eq!(
            r.columns,
            [
                "uid",
                "gid",
                "uid_signed",
                "gid_signed",
                "username",
                "description",
                "directory",
                "shell",
                "uuid"
            ]
        );
        assert_eq!(r.rows.len(), 4);
        assert_eq!(r.rows[1][0], Value::Integer(1000));
        assert_eq!(r.rows[1][4], text("alice"));
        assert_eq!(r.rows[1][6], text("/srv/alice"));
        assert_eq!(r.rows[3][2], Value::Integer(-2));
    }

    #[test]
    fn values_keep_sqlite_types() {
        let (_dir, host) = host(false);
        let r = host
            .query("SELECT typeof(uid), typeof(username), typeof(1.5), typeof(NULL), 1.5, NULL FROM users WHERE uid = 0")
            .unwrap();
        assert_eq!(
            r.rows,
            vec![vec![
                text("integer"),
                text("text"),
                text("real"),
                text("null"),
                Value::Real(1.5),
                Value::Null
            ]]
        );
    }

    #[test]
    fn uid_eq_reaches_the_table() {
        let (_dir, host) = host(true);
        let r = host
            .query("SELECT username FROM users WHERE uid = 1001")
            .unwrap();
        assert_eq!(r.rows, vec![vec![text("bob")]]);
        let calls = host.traced();
        assert_eq!(calls.len(), 1);
        let (table, ctx) = &calls[0];
        assert_eq!(table, "users");
        assert_eq!(ctx.constraints("uid")[0].op, Op::Eq);
        assert_eq!(ctx.constraints("uid")[0].expr, "1001");
        let used: Vec<&str> = ctx
            .cols_used()
            .unwrap()
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(used, ["uid", "username"]);
    }

    #[test]
    fn join_pushes_uid_into_users() {
        let (_dir, host) = host(true);
        let r = host
            .query(
                "SELECT g.groupname, u.username FROM groups g \
                 LEFT JOIN users u ON g.gid = u.uid ORDER BY g.gid",
            )
            .unwrap();
        assert_eq!(
            r.rows,
            vec![
                vec![text("root"), text("root")],
                vec![text("alice"), text("alice")],
                vec![text("bob"), text("bob")],
                vec![text("hunters"), Value::Null],
            ]
        );
        let user_calls: Vec<_> = host
            .traced()
            .into_iter()
            .filter(|(t, _)| t == "users")
            .collect();
        // One generate per outer row, each narrowed to one uid.
        assert_eq!(user_calls.len(), 4);
        let mut asked: Vec<String> = user_calls
            .iter()
            .map(|(_, ctx)| {
                ctx.eq_values("uid")
                    .unwrap()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        asked.sort();
        assert_eq!(asked, ["0", "1000", "1001", "1500"]);
    }

    #[test]
    fn like_and_range_constraints_reach_accepting_columns_only() {
        let (_dir, host) = host(true);
        let r = host
            .query("SELECT username FROM users WHERE username LIKE 'a%' AND uid >= 10 AND shell LIKE '%zsh'")
            .unwrap();
        assert_eq!(r.rows, vec![vec![text("alice")]]);
        let (_, ctx) = &host.traced()[0];
        // SQLite's LIKE optimisation adds `>= 'A'` / `< 'b'` terms too:
        // a wider range than the pattern, so harmless to pass on.
        assert!(ctx
            .constraints("username")
            .iter()
            .any(|c| c.op == Op::Like && c.expr == "a%"));
        assert_eq!(ctx.constraints("uid")[0].op, Op::Ge);
        // `shell` is neither index nor additional: osquery would not pass it.
        assert!(ctx.constraints("shell").is_empty());
    }

    #[test]
    fn in_list_and_real_values_become_eq_strings() {
        let (_dir, host) = host(true);
        let r = host
            .query("SELECT username FROM users WHERE uid IN (0, 1000.0) ORDER BY uid")
            .unwrap();
        assert_eq!(r.rows, vec![vec![text("root")], vec![text("alice")]]);
        let mut asked: Vec<String> = host
            .traced()
            .iter()
            .flat_map(|(_, ctx)| ctx.eq_values("uid").unwrap_or_default())
            .collect();
        asked.sort();
        assert_eq!(asked, ["0", "1000"]);
    }

    #[test]
    fn extra_rows_from_a_table_are_filtered_by_sqlite() {
        // groups ignores a `gid >` constraint; SQLite must still apply it.
        let (_dir, host) = host(false);
        let r = host
            .query("SELECT groupname FROM groups WHERE gid > 1000 ORDER BY gid")
            .unwrap();
        assert_eq!(r.rows, vec![vec![text("bob")], vec![text("hunters")]]);
    }

    #[test]
    fn errors_carry_sqlites_message() {
        let (_dir, host) = host(false);
        let e = host.query("SELEC 1").unwrap_err().to_string();
        assert!(e.contains("near \"SELEC\": syntax error"), "{e}");
        let e = host.query("SELECT * FROM nope").unwrap_err().to_string();
        assert_eq!(e, "no such table: nope");
        // Eponymous-only: the tables cannot be written to or re-created.
        assert!(host.query("DELETE FROM users").is_err());
    }

    #[test]
    fn several_statements_give_the_last_result() {
        let (_dir, host) = host(false);
        let r = host
            .query("CREATE TEMP TABLE t(x); INSERT INTO t VALUES (7); SELECT x FROM t;")
            .unwrap();
        assert_eq!(r.columns, ["x"]);
        assert_eq!(r.rows, vec![vec![Value::Integer(7)]]);
        let r = host.query("CREATE TEMP TABLE u(x)").unwrap();
        assert!(r.rows.is_empty());
    }

    #[test]
    fn cols_used_mask_to_names() {
        let registry = Registry::new(Settings::default()).unwrap();
        let spec = &registry.get("users").unwrap().spec;
        assert!(vtab::cols_used_names(spec, 0).is_empty());
        assert_eq!(vtab::cols_used_names(spec, 0b1_0001), ["uid", "username"]);
        assert_eq!(
            vtab::cols_used_names(spec, u64::MAX).len(),
            spec.columns.len()
        );
        // Bit 63 covers column 63 and beyond; a short table has none there.
        assert!(vtab::cols_used_names(spec, 1 << 63).is_empty());
    }

    #[test]
    fn estimates_prefer_index_eq_and_shun_missing_required() {
        let spec = crate::spec::TableSpec::parse(
            "t.toml",
            r#"
name = "t"
description = "d"
implementation = "t::generate"
[[columns]]
name = "id"
type = "BIGINT"
description = "x"
options = ["index"]
[[columns]]
name = "name"
type = "TEXT"
description = "y"
options = ["additional"]
[[columns]]
name = "pid"
type = "BIGINT"
description = "z"
options = ["required"]
"#,
        )
        .unwrap();
        // Without a `pid =` every plan is prohibitive, even by index.
        let (no_pid, _) = vtab::estimate(&spec, &[(0, 2)]);
        assert!(no_pid >= 1e29);
        assert_eq!(vtab::estimate(&spec, &[(2, 4)]).0, no_pid);
        // With one, the table is driven by it like by an index.
        let (by_pid, _) = vtab::estimate(&spec, &[(2, 2)]);
        assert!(by_pid < 100.0);
        // Without required columns: index `=` < other `=` < range < scan.
        let mut spec = spec;
        spec.columns.truncate(2);
        let cost = |c: &[(usize, i64)]| vtab::estimate(&spec, c).0;
        assert!(cost(&[(0, 2)]) < cost(&[(1, 2)]));
        assert!(cost(&[(1, 2)]) < cost(&[(0, 4), (1, 65)]));
        assert!(cost(&[(0, 4), (1, 65)]) < cost(&[]));
    }

    #[test]
    fn plan_round_trips() {
        let plan = vtab::Plan {
            cols_used: 0x8000_0000_0000_0011,
            constraints: vec![(0, 2), (4, 65), (1, 72)],
        };
        assert_eq!(vtab::Plan::decode(&plan.encode()), Some(plan));
        let empty = vtab::Plan {
            cols_used: 0,
            constraints: vec![],
        };
        assert_eq!(vtab::Plan::decode(&empty.encode()), Some(empty));
        assert_eq!(vtab::Plan::decode("zz|"), None);
        assert_eq!(vtab::Plan::decode("1|a:b"), None);
    }

    #[test]
    fn constraint_values_render_like_osquery() {
        assert_eq!(
            vtab::constraint_expr(ValueRef::Integer(-5)).as_deref(),
            Some("-5")
        );
        assert_eq!(
            vtab::constraint_expr(ValueRef::Real(1000.0)).as_deref(),
            Some("1000")
        );
        assert_eq!(
            vtab::constraint_expr(ValueRef::Real(1.5)).as_deref(),
            Some("1.5")
        );
        assert_eq!(
            vtab::constraint_expr(ValueRef::Real(1e300)).as_deref(),
            Some(&*1e300f64.to_string())
        );
        assert_eq!(
            vtab::constraint_expr(ValueRef::Text(b"/a b")).as_deref(),
            Some("/a b")
        );
        assert_eq!(
            vtab::constraint_expr(ValueRef::Blob(b"x\xff")).as_deref(),
            Some("x\u{fffd}")
        );
        assert_eq!(vtab::constraint_expr(ValueRef::Null), None);
    }
}
