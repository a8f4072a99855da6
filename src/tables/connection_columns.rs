//! The connection columns every table of live processes a bus started
//! shares (`stdio`, `remote_addresses`, `listening`, `connections_note`),
//! filled by one function ([`fill`]) from `sources::connections`. They are
//! read per row, only for processes that are already rows and only when
//! the query uses one of them; the socket tables of a network namespace
//! are read once per query ([`NetCache`]).
use crate::row::{Column, Row};
use crate::sources::connections::{self, NetCache};
use crate::sources::lineage::skip_quietly;
use crate::sources::proc::Proc;

/// Where a table keeps the connection columns: its own spec handles.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionColumns {
    pub stdio: Column,
    pub remote_addresses: Column,
    pub listening: Column,
    pub note: Column,
}

/// Fills a row's connection columns when `wanted` (the query uses any of
/// them). A process that vanished in between leaves them NULL.
pub fn fill(
    row: &mut Row,
    cols: &ConnectionColumns,
    wanted: bool,
    proc: &Proc,
    pid: u32,
    cache: &mut NetCache,
) {
    if !wanted {
        return;
    }
    match connections::read(proc, pid, cache) {
        Ok(conn) => {
            row.set(cols.stdio, conn.stdio_text())
                .set(cols.remote_addresses, conn.remote_text())
                .set(cols.listening, conn.listening_text());
            if !conn.notes.is_empty() {
                row.set(cols.note, conn.notes.join("; "));
            }
        }
        Err(e) => skip_quietly(pid, &e),
    }
}
