//! The embedded host: every registry table as an eponymous SQLite virtual
//! table (rusqlite `vtab`), so pack SQL runs without osquery, including its
//! joins with `users` and `groups`.
//!
//! This module owns the connection and runs statements, handing the last
//! one's rows to a [`ResultSink`] as SQLite steps them (a [`QueryResult`]
//! collects them; [`crate::output`] renders them as they come), within
//! [`Limits`]; [`vtab`] adapts SQLite's planner calls to the table API.
use crate::blind::{self, BlindSpot};
use crate::row::Value;
use crate::tables::Registry;
use rusqlite::types::ValueRef;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod vtab;

use vtab::{RegistryTab, TableHandle, Trace};

#[derive(Debug, thiserror::Error)]
pub enum SqliteHostError {
    /// SQLite's own message (`no such table: foo`, `near "SELEC": syntax
    /// error`) is what a hunter needs, so it is shown unadorned.
    #[error("{0}")]
    Sql(#[from] rusqlite::Error),
    /// The sink refused a row (a closed pipe, a full disk).
    #[error("writing results: {0}")]
    Write(#[source] std::io::Error),
    #[error("the SQL holds a NUL byte")]
    Nul,
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
    /// Set when the rows stopped early: they are only the first ones.
    pub cut: Option<Cut>,
}

/// Where the rows of a query's last statement go, one at a time, as SQLite
/// steps them. `columns` comes first, once (empty for a statement without
/// rows).
pub trait ResultSink {
    fn columns(&mut self, names: &[String]) -> std::io::Result<()>;
    fn row(&mut self, row: Vec<Value>) -> std::io::Result<()>;
}

impl ResultSink for QueryResult {
    fn columns(&mut self, names: &[String]) -> std::io::Result<()> {
        self.columns = names.to_vec();
        Ok(())
    }
    fn row(&mut self, row: Vec<Value>) -> std::io::Result<()> {
        self.rows.push(row);
        Ok(())
    }
}

/// Bounds on one query (`None`: unbounded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Wall time for the whole batch, enforced with `sqlite3_interrupt`,
    /// which the virtual machine checks between its steps: a runaway
    /// recursive CTE stops at once; a table still making its rows stops
    /// when it hands them over.
    pub timeout: Option<Duration>,
    /// Rows of the last statement.
    pub max_rows: Option<usize>,
}

/// Why a query's rows stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// `Limits::timeout` ran out.
    Timeout(Duration),
    /// `Limits::max_rows` rows were given and there were more.
    MaxRows(usize),
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cut::Timeout(d) => write!(f, "stopped after {} s (the time limit)", d.as_secs_f64()),
            Cut::MaxRows(n) => write!(f, "stopped at {n} rows (the row limit); there were more"),
        }
    }
}

/// Whether `sql` holds nothing but white space, comments and semicolons:
/// no statement, as SQLite's tokenizer sees it.
fn is_trivia(mut sql: &str) -> bool {
    loop {
        sql = sql.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if let Some(rest) = sql.strip_prefix("--") {
            sql = rest.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(rest) = sql.strip_prefix("/*") {
            sql = rest.split_once("*/").map_or("", |(_, after)| after);
        } else {
            return sql.is_empty();
        }
    }
}

/// `sql` cut into its statements, each with its `;`, by SQLite's own
/// judgement of where one ends (`sqlite3_complete`, which knows strings,
/// quoted names, comments and trigger bodies); pieces without a statement
/// are dropped. The last piece may lack its `;`.
fn statements(sql: &str) -> Result<Vec<&str>, SqliteHostError> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut searched = 0;
    while let Some(at) = sql[searched..].find(';') {
        let end = searched + at + 1;
        let piece = &sql[start..end];
        let c = std::ffi::CString::new(piece).map_err(|_| SqliteHostError::Nul)?;
        // SAFETY: `sqlite3_complete` reads the NUL-terminated string it is
        // given and nothing else; `c` outlives the call.
        if unsafe { rusqlite::ffi::sqlite3_complete(c.as_ptr()) } != 0 {
            if !is_trivia(piece) {
                out.push(piece);
            }
            start = end;
        }
        searched = end;
    }
    if !is_trivia(&sql[start..]) {
        out.push(&sql[start..]);
    }
    Ok(out)
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

    /// Runs every statement in `sql` and returns the last one's result (a
    /// statement without rows gives an empty result), as a script's final
    /// SELECT is the answer its author wants.
    pub fn query(&self, sql: &str) -> Result<QueryResult, SqliteHostError> {
        self.query_limited(sql, Limits::default())
    }

    /// [`EmbeddedHost::query`] within `limits`; `cut` says if it stopped.
    pub fn query_limited(&self, sql: &str, limits: Limits) -> Result<QueryResult, SqliteHostError> {
        let mut result = QueryResult::default();
        let streamed = self.query_into(sql, limits, &mut result)?;
        Ok(QueryResult {
            blind: streamed.blind,
            cut: streamed.cut,
            ..result
        })
    }

    /// Runs every statement in `sql`, handing the last one's rows to
    /// `sink` as SQLite steps them (earlier statements' rows are stepped
    /// through and dropped), within `limits`.
    pub fn query_into(
        &self,
        sql: &str,
        limits: Limits,
        sink: &mut dyn ResultSink,
    ) -> Result<Streamed, SqliteHostError> {
        let deadline = limits.timeout.map(|t| Instant::now() + t);
        // A watchdog thread interrupts the connection at the deadline
        // unless the batch ends first (the channel then closes).
        let watchdog = deadline.map(|deadline| {
            let (done, wait) = std::sync::mpsc::channel::<()>();
            let handle = self.conn.get_interrupt_handle();
            let thread = std::thread::spawn(move || {
                let left = deadline.saturating_duration_since(Instant::now());
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(left) {
                    handle.interrupt();
                }
            });
            (done, thread)
        });
        let (result, blind) = blind::collect(|| self.run(sql, limits.max_rows, sink));
        if let Some((done, thread)) = watchdog {
            drop(done);
            let _ = thread.join();
        }
        let cut = match result {
            Ok(cut) => cut,
            Err(SqliteHostError::Sql(rusqlite::Error::SqliteFailure(e, _)))
                if e.code == rusqlite::ErrorCode::OperationInterrupted
                    && deadline.is_some_and(|d| Instant::now() >= d) =>
            {
                limits.timeout.map(Cut::Timeout)
            }
            Err(e) => return Err(e),
        };
        Ok(Streamed { cut, blind })
    }

    fn run(
        &self,
        sql: &str,
        max_rows: Option<usize>,
        sink: &mut dyn ResultSink,
    ) -> Result<Option<Cut>, SqliteHostError> {
        let pieces = statements(sql)?;
        let last = pieces.len().saturating_sub(1);
        for (n, piece) in pieces.into_iter().enumerate() {
            let mut stmt = self.conn.prepare(piece)?;
            if n < last {
                let mut rows = stmt.query([])?;
                while rows.next()?.is_some() {}
                continue;
            }
            let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
            let width = columns.len();
            sink.columns(&columns).map_err(SqliteHostError::Write)?;
            let mut cursor = stmt.query([])?;
            let mut given = 0usize;
            while let Some(row) = cursor.next()? {
                if max_rows.is_some_and(|max| given >= max) {
                    return Ok(Some(Cut::MaxRows(given)));
                }
                let mut out = Vec::with_capacity(width);
                for i in 0..width {
                    out.push(to_value(row.get_ref(i)?));
                }
                sink.row(out).map_err(SqliteHostError::Write)?;
                given += 1;
            }
        }
        Ok(None)
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

/// What a streamed query came to, beside the rows its sink received.
#[derive(Debug, Clone, Default)]
pub struct Streamed {
    pub cut: Option<Cut>,
    /// What the tables could not read while answering.
    pub blind: Vec<BlindSpot>,
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
    fn statements_split_where_sqlite_ends_them() {
        let sql = "CREATE TEMP TABLE t(x); -- a; comment\n\
                   INSERT INTO t VALUES ('a;b'); /* ; */ ;; \
                   CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END; SELECT x FROM t";
        let got = statements(sql).unwrap();
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[1].contains("'a;b'"));
        assert!(got[2].trim_start().starts_with("CREATE TRIGGER") && got[2].ends_with("END;"));
        assert_eq!(got[3].trim(), "SELECT x FROM t");
        assert!(statements(" ;; -- x\n /* y */").unwrap().is_empty());
        assert!(statements("SELECT 1; -- trailing").unwrap().len() == 1);
    }

    #[test]
    fn limits_cut_rows_and_time() {
        let (_dir, host) = host(false);
        let endless =
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c";
        let r = host
            .query_limited(
                endless,
                Limits {
                    max_rows: Some(5),
                    ..Limits::default()
                },
            )
            .unwrap();
        assert_eq!(r.rows.len(), 5);
        assert_eq!(r.cut, Some(Cut::MaxRows(5)));
        // Exactly the limit is not a cut.
        let r = host
            .query_limited(
                "SELECT 1 UNION ALL SELECT 2",
                Limits {
                    max_rows: Some(2),
                    ..Limits::default()
                },
            )
            .unwrap();
        assert_eq!((r.rows.len(), r.cut), (2, None));
        let counted = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
        let t = Instant::now();
        let r = host
            .query_limited(
                counted,
                Limits {
                    timeout: Some(Duration::from_millis(200)),
                    ..Limits::default()
                },
            )
            .unwrap();
        assert_eq!(r.cut, Some(Cut::Timeout(Duration::from_millis(200))));
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        // The handler is gone afterwards: the next query runs unbounded.
        assert_eq!(host.query("SELECT 1").unwrap().cut, None);
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
