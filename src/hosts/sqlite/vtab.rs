//! The SQLite side of the embedded host: one eponymous, read-only virtual
//! table module per registry table.
//!
//! This is where SQLite's planner interface (xBestIndex/xFilter) is turned
//! into the [`QueryContext`] the osquery host would also build, so tables run
//! the same code whichever host calls them. Nothing here knows what a table
//! does; schemas come from the specs, rows from `Table::generate`.
use crate::context::{Op, QueryContext};
use crate::row::{Row, Value};
use crate::spec::{ColumnOption, TableSpec};
use crate::tables::{Registry, Table};
use rusqlite::ffi;
use rusqlite::types::{Null, ValueRef};
use rusqlite::vtab::{
    Context, Filters, IndexConstraintOp, IndexInfo, VTab, VTabConnection, VTabCursor,
};
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

/// Plan cost when nothing narrows the scan: tables read the whole system.
const FULL_SCAN_COST: f64 = 1_000_000.0;
const FULL_SCAN_ROWS: i64 = 100_000;
/// An `=` on an index column is what tables push down; make SQLite want it,
/// so a join drives the inner table by its index (`users.uid = f.uid`).
const INDEX_EQ_COST: f64 = 10.0;
const INDEX_EQ_ROWS: i64 = 10;
/// An `=` on an additional/required column may narrow a scan a little.
const OTHER_EQ_COST: f64 = 10_000.0;
const OTHER_EQ_ROWS: i64 = 1_000;
/// osquery refuses a plan that lacks a required column's `=`; here such a
/// plan is merely made so costly that SQLite picks any other one first.
const MISSING_REQUIRED_COST: f64 = 1e30;

/// Every generate call a host made, with the context it passed; tests use
/// it to see that constraints really reach tables.
pub(crate) type Trace = Arc<Mutex<Vec<(String, QueryContext)>>>;

/// What one registered module needs to produce rows: handed to SQLite as the
/// module's client data and shared by every connection to the table.
pub(crate) struct TableHandle {
    pub(crate) registry: Arc<Registry>,
    /// Position of the table in `registry.tables()`.
    pub(crate) index: usize,
    pub(crate) trace: Option<Trace>,
}

impl TableHandle {
    fn table(&self) -> rusqlite::Result<&Table> {
        self.registry.tables().get(self.index).ok_or_else(|| {
            rusqlite::Error::ModuleError(format!("no table at index {}", self.index))
        })
    }

    fn spec(&self) -> rusqlite::Result<&TableSpec> {
        self.table().map(|t| &t.spec)
    }
}

/// One eponymous table instance, as SQLite sees it.
#[repr(C)]
pub(crate) struct RegistryTab {
    /// SQLite's base struct; must come first (rusqlite's `VTab` contract).
    base: ffi::sqlite3_vtab,
    handle: Arc<TableHandle>,
}

/// SQLite's code for a constraint operator that tables can use or at least
/// safely ignore; `None` for those with no right-hand value worth passing
/// (IS NULL, LIMIT, MATCH and function overloads).
fn op_code(op: IndexConstraintOp) -> Option<i64> {
    use IndexConstraintOp::*;
    Some(match op {
        SQLITE_INDEX_CONSTRAINT_EQ => 2,
        SQLITE_INDEX_CONSTRAINT_GT => 4,
        SQLITE_INDEX_CONSTRAINT_LE => 8,
        SQLITE_INDEX_CONSTRAINT_LT => 16,
        SQLITE_INDEX_CONSTRAINT_GE => 32,
        SQLITE_INDEX_CONSTRAINT_LIKE => 65,
        SQLITE_INDEX_CONSTRAINT_GLOB => 66,
        SQLITE_INDEX_CONSTRAINT_REGEXP => 67,
        // Tables see these as `Op::Other` and ignore them, as osquery's do.
        SQLITE_INDEX_CONSTRAINT_NE => 68,
        SQLITE_INDEX_CONSTRAINT_ISNOT => 69,
        SQLITE_INDEX_CONSTRAINT_IS => 72,
        SQLITE_INDEX_CONSTRAINT_MATCH
        | SQLITE_INDEX_CONSTRAINT_ISNOTNULL
        | SQLITE_INDEX_CONSTRAINT_ISNULL
        | SQLITE_INDEX_CONSTRAINT_LIMIT
        | SQLITE_INDEX_CONSTRAINT_OFFSET
        | SQLITE_INDEX_CONSTRAINT_FUNCTION(_) => return None,
    })
}

/// The plan xBestIndex chose, carried to xFilter in `idx_str`: the columns
/// the statement reads and, in argv order, the constrained column and op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) cols_used: u64,
    pub(crate) constraints: Vec<(usize, i64)>,
}

impl Plan {
    /// `"<mask hex>|<col>:<op>,<col>:<op>"`: plain text, because SQLite
    /// owns the string between the two calls.
    pub(crate) fn encode(&self) -> String {
        let list: Vec<String> = self
            .constraints
            .iter()
            .map(|(col, op)| format!("{col}:{op}"))
            .collect();
        format!("{:x}|{}", self.cols_used, list.join(","))
    }

    pub(crate) fn decode(text: &str) -> Option<Plan> {
        let (mask, list) = text.split_once('|')?;
        let cols_used = u64::from_str_radix(mask, 16).ok()?;
        let mut constraints = Vec::new();
        for item in list.split(',').filter(|s| !s.is_empty()) {
            let (col, op) = item.split_once(':')?;
            constraints.push((col.parse().ok()?, op.parse().ok()?));
        }
        Some(Plan {
            cols_used,
            constraints,
        })
    }
}

/// Names of the columns set in SQLite's `colUsed` mask. Bit 63 stands for
/// column 63 and every one after it.
pub(crate) fn cols_used_names(spec: &TableSpec, mask: u64) -> Vec<String> {
    spec.columns
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << (*i).min(63)) != 0)
        .map(|(_, c)| c.name.clone())
        .collect()
}

/// The text form of a constraint's right-hand side, as osquery would send
/// it; `None` for NULL, which no comparison matches, so the constraint is
/// dropped (a wider scan is always safe).
pub(crate) fn constraint_expr(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => {
            // `uid = 1000.0` must reach a table as "1000"; -2^63 <= f < 2^63
            // is exactly the range that converts to i64 without saturating.
            let integral = f.fract() == 0.0
                && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f);
            Some(if integral {
                (f as i64).to_string()
            } else {
                f.to_string()
            })
        }
        ValueRef::Text(b) | ValueRef::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
    }
}

/// Cost and row estimates for a plan using `constraints` (column, op):
/// cheap when an index (or required) column has an `=`, so SQLite drives
/// joins through it, and prohibitive when a required column lacks one.
pub(crate) fn estimate(spec: &TableSpec, constraints: &[(usize, i64)]) -> (f64, i64) {
    let has_eq = |col: usize| constraints.contains(&(col, Op::Eq.code()));
    let eq_on = |opt: ColumnOption| {
        spec.columns
            .iter()
            .enumerate()
            .any(|(i, c)| c.has(opt) && has_eq(i))
    };
    let missing_required = spec
        .columns
        .iter()
        .enumerate()
        .any(|(i, c)| c.has(ColumnOption::Required) && !has_eq(i));
    if missing_required {
        (MISSING_REQUIRED_COST, FULL_SCAN_ROWS)
    } else if eq_on(ColumnOption::Index) || eq_on(ColumnOption::Required) {
        (INDEX_EQ_COST, INDEX_EQ_ROWS)
    } else if constraints.iter().any(|&(_, op)| op == Op::Eq.code()) {
        (OTHER_EQ_COST, OTHER_EQ_ROWS)
    } else if constraints.is_empty() {
        (FULL_SCAN_COST, FULL_SCAN_ROWS)
    } else {
        // Range or pattern terms: a table may narrow on them, a little.
        (FULL_SCAN_COST / 2.0, FULL_SCAN_ROWS / 2)
    }
}

unsafe impl<'vtab> VTab<'vtab> for RegistryTab {
    type Aux = Arc<TableHandle>;
    type Cursor = RowCursor;

    fn connect(
        _db: &mut VTabConnection,
        aux: Option<&Arc<TableHandle>>,
        _args: &[&[u8]],
    ) -> rusqlite::Result<(String, RegistryTab)> {
        let handle = aux.cloned().ok_or_else(|| {
            rusqlite::Error::ModuleError("module registered without a table".into())
        })?;
        let sql = handle.spec()?.create_table_sql();
        Ok((
            sql,
            RegistryTab {
                base: ffi::sqlite3_vtab::default(),
                handle,
            },
        ))
    }

    fn best_index(&self, info: &mut IndexInfo) -> rusqlite::Result<()> {
        let spec = self.handle.spec()?;
        let mut plan = Plan {
            cols_used: info.col_used(),
            constraints: Vec::new(),
        };
        for (constraint, mut usage) in info.constraints_and_usages() {
            if !constraint.is_usable() {
                continue;
            }
            let Ok(col) = usize::try_from(constraint.column()) else {
                continue; // rowid
            };
            if !spec
                .columns
                .get(col)
                .is_some_and(|c| c.accepts_constraints())
            {
                continue;
            }
            let Some(op) = op_code(constraint.operator()) else {
                continue;
            };
            plan.constraints.push((col, op));
            // argv indexes are 1-based; `omit` stays false so SQLite
            // re-checks every term and extra rows from a table are harmless.
            usage.set_argv_index(c_int::try_from(plan.constraints.len()).unwrap_or(c_int::MAX));
        }
        let (cost, rows) = estimate(spec, &plan.constraints);
        info.set_estimated_cost(cost);
        info.set_estimated_rows(rows);
        info.set_idx_str(&plan.encode());
        Ok(())
    }

    fn open(&'vtab mut self) -> rusqlite::Result<RowCursor> {
        Ok(RowCursor {
            base: ffi::sqlite3_vtab_cursor::default(),
            handle: Arc::clone(&self.handle),
            rows: Vec::new(),
            pos: 0,
        })
    }
}

/// Rows of one xFilter call, generated eagerly: tables return a `Vec`, and
/// SQLite may rewind a cursor with another xFilter at any time.
#[repr(C)]
pub(crate) struct RowCursor {
    /// SQLite's base struct; must come first (rusqlite's `VTabCursor` contract).
    base: ffi::sqlite3_vtab_cursor,
    handle: Arc<TableHandle>,
    rows: Vec<Row>,
    pos: usize,
}

impl RowCursor {
    fn context(&self, spec: &TableSpec, plan: &Plan, args: &Filters<'_>) -> QueryContext {
        let mut ctx = QueryContext::new();
        // argv holds one value per recorded constraint, in the same order.
        for (&(col, op), value) in plan.constraints.iter().zip(args.iter()) {
            let Some(column) = spec.columns.get(col) else {
                continue;
            };
            if let Some(expr) = constraint_expr(value) {
                ctx.add_constraint(&column.name, Op::from_code(op), expr);
            }
        }
        ctx.set_cols_used(cols_used_names(spec, plan.cols_used));
        ctx
    }
}

unsafe impl VTabCursor for RowCursor {
    fn filter(
        &mut self,
        _idx_num: c_int,
        idx_str: Option<&str>,
        args: &Filters<'_>,
    ) -> rusqlite::Result<()> {
        let handle = Arc::clone(&self.handle);
        let table = handle.table()?;
        let spec = &table.spec;
        let plan = idx_str.and_then(Plan::decode).ok_or_else(|| {
            rusqlite::Error::ModuleError(format!(
                "{}: unreadable query plan {idx_str:?}",
                spec.name
            ))
        })?;
        let ctx = self.context(spec, &plan, args);
        if let Some(trace) = &handle.trace {
            if let Ok(mut t) = trace.lock() {
                t.push((spec.name.clone(), ctx.clone()));
            }
        }
        let settings = &handle.registry.settings;
        // A panic must not unwind into SQLite's C frames (that aborts the
        // process); the query fails with a message instead.
        let rows =
            catch_unwind(AssertUnwindSafe(|| table.generate(settings, &ctx))).map_err(|_| {
                rusqlite::Error::ModuleError(format!("table {} failed unexpectedly", spec.name))
            })?;
        self.rows = rows;
        self.pos = 0;
        Ok(())
    }

    fn next(&mut self) -> rusqlite::Result<()> {
        self.pos += 1;
        Ok(())
    }

    fn eof(&self) -> bool {
        self.pos >= self.rows.len()
    }

    /// Column `i` of the declared table is the spec's `i`th column, the
    /// row's cell `i` (rows are built from the same spec).
    fn column(&self, ctx: &mut Context, i: c_int) -> rusqlite::Result<()> {
        let value = usize::try_from(i)
            .ok()
            .zip(self.rows.get(self.pos))
            .and_then(|(i, row)| row.at(i));
        match value {
            None | Some(Value::Null) => ctx.set_result(&Null),
            Some(Value::Integer(v)) => ctx.set_result(v),
            Some(Value::Real(v)) => ctx.set_result(v),
            Some(Value::Text(v)) => ctx.set_result(v),
        }
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        Ok(i64::try_from(self.pos).unwrap_or(i64::MAX))
    }
}
