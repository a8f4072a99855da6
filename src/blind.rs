//! Blind spots: what a query could not read, so no host reports a box
//! clean when it could not look.
//!
//! A table answers with what it could read and puts a failure on the row
//! it concerns (`error`). That is not enough for whoever reads the answer
//! in bulk: a scan whose every directory failed to list returns only error
//! rows, and a pack query that keeps suspicious rows returns nothing at
//! all. So a table that could not read something it needs *also* reports
//! it here, keyed by the distinct reason (table, what failed, the OS
//! error), counted, with the first few paths. The host running the query
//! collects the reports around it ([`collect`]) and then decides: `query`
//! and the osquery extension log each distinct reason once per query,
//! `hunt` names the blind checks and fails.
//!
//! What counts: a read that failed for a reason other than absence.
//! A missing optional directory or file (`ENOENT`, a parent that is not a
//! directory) is how most hosts look, and is never reported; a file that
//! was read but is malformed is the row's error, not blindness. Callers
//! decide with [`os_cause`], which finds the OS error under a source error.
//!
//! The collector is per thread, not passed down: sources are called deep
//! inside tables and know no query, and a query runs its tables on the
//! thread that asked (SQLite calls a virtual table's filter on the stepping
//! thread; the extension generates on the connection's thread). The host
//! also names the table it is generating ([`in_table`]), so a source shared
//! by several tables reports under the one that needed it. A report with
//! no collection open (a table called directly, as a benchmark does) is
//! logged at once, so it is never lost.
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

/// How many example paths a blind spot keeps: enough to find the trouble,
/// few enough that a host with every directory failing stays readable.
pub const EXAMPLES: usize = 3;

/// One distinct reason a table could not read what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlindSpot {
    /// The table being generated ("" outside any [`in_table`]).
    pub table: String,
    /// What could not be done, e.g. "cannot list service directories".
    pub what: &'static str,
    /// The reason, the same text for every path it struck, e.g.
    /// "Input/output error (os error 5)".
    pub cause: String,
    /// How many distinct paths (or pids) it struck; a report naming none
    /// counts each time. A directory named twice, or met by two checks of
    /// a hunt, counts once.
    pub count: u64,
    /// The first [`EXAMPLES`] paths it struck, in the order met.
    pub examples: Vec<String>,
    /// Every path struck, for `count`.
    seen: HashSet<String>,
    /// Set when what is unknown is one column (every row's value there),
    /// not rows: a check is blind for it only where its condition reads
    /// that column ([`crate::hunt`]); shown but not tested, the column
    /// decides nothing the check finds.
    pub column: Option<&'static str>,
}

impl BlindSpot {
    fn new(table: &str, what: &'static str, cause: &str) -> BlindSpot {
        BlindSpot {
            table: table.to_string(),
            what,
            cause: cause.to_string(),
            count: 0,
            examples: Vec::new(),
            seen: HashSet::new(),
            column: None,
        }
    }

    fn same_reason(&self, table: &str, what: &str, cause: &str) -> bool {
        self.table == table && self.what == what && self.cause == cause
    }

    /// Counts `at` unless already struck, and keeps it as an example
    /// while there is room.
    fn strike(&mut self, at: &str) {
        if at.is_empty() {
            self.count += 1;
            return;
        }
        if !self.seen.insert(at.to_string()) {
            return;
        }
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(at.to_string());
        }
    }
}

impl fmt::Display for BlindSpot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.table, self.what, self.cause)?;
        match self.examples.first() {
            Some(e) if self.count > 1 => write!(f, " ({} affected, e.g. {e})", self.count),
            Some(e) => write!(f, " ({e})"),
            None if self.count > 1 => write!(f, " ({} times)", self.count),
            None => Ok(()),
        }
    }
}

/// Adds one occurrence to `spots`: a new entry for a new reason, else a
/// count (and, while there is room, an example) on the existing one.
fn add(spots: &mut Vec<BlindSpot>, table: &str, what: &'static str, cause: &str, at: &str) {
    let spot = match spots
        .iter_mut()
        .position(|s| s.same_reason(table, what, cause))
    {
        Some(i) => &mut spots[i],
        None => {
            spots.push(BlindSpot::new(table, what, cause));
            spots.last_mut().expect("just pushed")
        }
    };
    spot.strike(at);
}

/// Adds every spot of `from` to `into`: the distinct reasons of several
/// queries (a whole hunt), each path counted once over all of them.
pub fn merge(into: &mut Vec<BlindSpot>, from: &[BlindSpot]) {
    for s in from {
        let i = match into
            .iter()
            .position(|t| t.same_reason(&s.table, s.what, &s.cause))
        {
            Some(i) => i,
            None => {
                let mut spot = BlindSpot::new(&s.table, s.what, &s.cause);
                spot.column = s.column;
                into.push(spot);
                into.len() - 1
            }
        };
        let t = &mut into[i];
        // Examples first, in their order, then the other paths sorted (so
        // a report's examples do not depend on hashing).
        let unnamed = s.count - s.seen.len() as u64;
        let mut rest: Vec<&String> = s.seen.iter().collect();
        rest.sort();
        for e in s.examples.iter().chain(rest) {
            t.strike(e);
        }
        t.count += unnamed;
    }
}

thread_local! {
    /// The open collection of this thread, if any.
    static OPEN: RefCell<Option<Vec<BlindSpot>>> = const { RefCell::new(None) };
    /// The table this thread is generating, if a host said.
    static TABLE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Runs `f` (a table's generate) with `table` as the name reports made in
/// it are filed under; the previous name comes back after, panic or not.
pub fn in_table<T>(table: &str, f: impl FnOnce() -> T) -> T {
    struct Back(String);
    impl Drop for Back {
        fn drop(&mut self) {
            let previous = std::mem::take(&mut self.0);
            TABLE.with(|t| *t.borrow_mut() = previous);
        }
    }
    let _back = Back(TABLE.with(|t| std::mem::replace(&mut *t.borrow_mut(), table.to_string())));
    f()
}

/// Reports that the current table could not do `what` at `at` because of
/// `cause`. Collected when a collection is open on this thread, else
/// logged now.
pub fn report(what: &'static str, cause: &dyn fmt::Display, at: &dyn fmt::Display) {
    let (cause, at) = (cause.to_string(), at.to_string());
    let table = TABLE.with(|t| t.borrow().clone());
    let unheard = OPEN.with(|open| match open.borrow_mut().as_mut() {
        Some(spots) => {
            add(spots, &table, what, &cause, &at);
            false
        }
        None => true,
    });
    if unheard {
        let mut one = Vec::new();
        add(&mut one, &table, what, &cause, &at);
        log_each(&one);
    }
}

/// Reports that the current table could not fill `column` in any row
/// because of `cause` (a kernel that gives no birth times, say).
pub fn report_column(column: &'static str, what: &'static str, cause: &dyn fmt::Display) {
    let cause = cause.to_string();
    let table = TABLE.with(|t| t.borrow().clone());
    let mut one = Vec::new();
    add(&mut one, &table, what, &cause, "");
    if let Some(s) = one.first_mut() {
        s.column = Some(column);
    }
    let unheard = OPEN.with(|open| match open.borrow_mut().as_mut() {
        Some(spots) => {
            merge(spots, &one);
            false
        }
        None => true,
    });
    if unheard {
        log_each(&one);
    }
}

/// Restores the enclosing collection when a collection ends, also when the
/// query inside it panics (a host catches table panics and goes on).
struct Restore(Option<Vec<BlindSpot>>);

impl Drop for Restore {
    fn drop(&mut self) {
        let outer = self.0.take();
        OPEN.with(|open| *open.borrow_mut() = outer);
    }
}

/// Runs `f` with a fresh collection open on this thread and returns what it
/// reported. A collection inside another is its own: the inner reports go
/// to the inner caller only, and the outer one resumes after.
pub fn collect<T>(f: impl FnOnce() -> T) -> (T, Vec<BlindSpot>) {
    let outer = OPEN.with(|open| open.borrow_mut().replace(Vec::new()));
    let restore = Restore(outer);
    let value = f();
    let spots = OPEN
        .with(|open| open.borrow_mut().take())
        .unwrap_or_default();
    drop(restore);
    (value, spots)
}

/// Logs each blind spot as one warning line.
pub fn log_each(spots: &[BlindSpot]) {
    for s in spots {
        log::warn!("blind: {s}");
    }
}

/// The OS error under `e` (itself or a source, however deep), as text for a
/// blind spot's cause; `None` when there is none or it means the thing is
/// absent (`ENOENT`, `ENOTDIR`): absence is an answer, not blindness.
/// An I/O error of kind `Other` with no errno counts as a refusal too: it
/// is how the confined resolution in userspace (where `openat2` is
/// missing) says it would not go on, e.g. a path moved out of the root
/// while it was resolved.
pub fn os_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut at: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = at {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return match io.raw_os_error() {
                Some(libc::ENOENT | libc::ENOTDIR) => None,
                Some(_) => Some(io.to_string()),
                None if io.kind() == std::io::ErrorKind::Other => Some(io.to_string()),
                None => None,
            };
        }
        at = err.source();
    }
    None
}

/// The innermost reason under `e` (its last source), as text: the part of
/// an error that is the same for every path it strikes.
pub fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// Reports `e` when [`os_cause`] finds a reason in it; true when it did.
pub fn report_os_error(
    what: &'static str,
    e: &(dyn std::error::Error + 'static),
    at: &dyn fmt::Display,
) -> bool {
    match os_cause(e) {
        Some(cause) => {
            report(what, &cause, at);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eio() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::EIO)
    }

    #[test]
    fn one_spot_per_reason_with_counts_and_a_few_examples() {
        let ((), spots) = collect(|| {
            in_table("t", || {
                for i in 0..400 {
                    report("cannot list directories", &eio(), &format!("/d{i}"));
                }
                let eacces = std::io::Error::from_raw_os_error(libc::EACCES);
                report("cannot list directories", &eacces, &"/x");
            });
            in_table("u", || report("cannot list directories", &eio(), &"/d0"));
            assert_eq!(TABLE.with(|t| t.borrow().clone()), "");
        });
        assert_eq!(spots.len(), 3, "{spots:?}");
        assert_eq!(spots[0].count, 400);
        assert_eq!(spots[0].examples, ["/d0", "/d1", "/d2"]);
        assert_eq!(spots[0].cause, eio().to_string());
        assert_eq!(spots[1].count, 1);
        assert_eq!(spots[2].table, "u");
        let line = spots[0].to_string();
        assert!(
            line.starts_with("t: cannot list directories: Input/output error"),
            "{line}"
        );
        assert!(line.contains("400 affected, e.g. /d0"), "{line}");
    }

    #[test]
    fn collections_are_per_query_and_nest() {
        let ((), first) = collect(|| report("w", &eio(), &"/a"));
        let ((), second) = collect(|| {
            report("w", &eio(), &"/b");
            let ((), inner) = collect(|| report("w", &eio(), &"/c"));
            assert_eq!(inner[0].examples, ["/c"]);
            report("w", &eio(), &"/d");
        });
        assert_eq!(first[0].count, 1);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].count, 2);
        let ((), again) = collect(|| {
            report("w", &eio(), &"/same");
            report("w", &eio(), &"/same");
            report("w", &eio(), &"");
            report("w", &eio(), &"");
        });
        assert_eq!(again[0].count, 3, "one path, and two reports without one");
        assert_eq!(second[0].examples, ["/b", "/d"]);
        // Nothing left open after.
        assert!(OPEN.with(|o| o.borrow().is_none()));
    }

    #[test]
    fn a_panic_inside_closes_the_collection() {
        let caught = std::panic::catch_unwind(|| collect(|| panic!("table bug")));
        assert!(caught.is_err());
        assert!(OPEN.with(|o| o.borrow().is_none()));
    }

    #[test]
    fn merge_counts_each_path_once_across_queries() {
        let mut all = Vec::new();
        let ((), a) = collect(|| report("w", &eio(), &"/a"));
        let ((), b) = collect(|| {
            report("w", &eio(), &"/b");
            report("w", &eio(), &"/a");
        });
        merge(&mut all, &a);
        merge(&mut all, &b);
        assert_eq!(all.len(), 1);
        // "/a" struck in both queries: one path.
        assert_eq!(all[0].count, 2);
        assert_eq!(all[0].examples, ["/a", "/b"]);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("/p: {source}")]
    struct Wrapped {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn os_cause_finds_the_errno_and_ignores_absence() {
        let w = Wrapped { source: eio() };
        assert_eq!(os_cause(&w), Some(eio().to_string()));
        for absent in [libc::ENOENT, libc::ENOTDIR] {
            let w = Wrapped {
                source: std::io::Error::from_raw_os_error(absent),
            };
            assert_eq!(os_cause(&w), None);
        }
        let refused = std::io::Error::other("resolver refused the path");
        assert_eq!(
            os_cause(&refused).as_deref(),
            Some("resolver refused the path")
        );
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(os_cause(&eof), None);
        let malformed = std::io::Error::new(std::io::ErrorKind::InvalidData, "bad bytes");
        assert_eq!(os_cause(&malformed), None);
    }
}
