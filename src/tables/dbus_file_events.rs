//! `dbus_file_events`: changes in D-Bus directories as they happened, from
//! the events the file collector (`sources::collect::file`) buffers. The
//! table applies the `time` lower bound and makes each event a row
//! ([`row`], which `watch` uses too); watching and the buffer's bounds
//! live in `sources::collect`.
use crate::context::QueryContext;
use crate::row::Row;
use crate::sources::collect::{Collectors, FileEvent};
use crate::spec::columns::dbus_file_events as c;
use crate::tables::evented;

const TABLE: &str = "dbus_file_events";

pub fn generate(collectors: Option<&Collectors>, ctx: &QueryContext) -> Vec<Row> {
    let Some(store) = collectors.and_then(Collectors::file) else {
        evented::no_collector(TABLE);
        return Vec::new();
    };
    let mut rows = Vec::new();
    store.visit_since(evented::time_lower_bound(ctx), |e| rows.push(row(e)));
    rows
}

/// The row of one event.
pub fn row(e: &FileEvent) -> Row {
    let mut row = Row::new(&c::SCHEMA);
    row.set(c::TIME, e.time)
        .set(c::ACTION, e.action.as_str())
        .set(c::PATH, e.path.as_str())
        .set(c::DIRECTORY, e.directory.as_str())
        .set(c::FILENAME, e.filename.as_str())
        .set(c::BACKEND, e.backend.as_str());
    if let Some(why) = &e.backend_reason {
        row.set(c::BACKEND_REASON, why.as_str());
    }
    if let Some(m) = &e.stat {
        row.set(c::TYPE, m.kind.as_str())
            .set(c::MODE, m.mode_string())
            .set(c::SIZE, m.size)
            .set(c::OWNER_UID, m.uid)
            .set(c::OWNER_GID, m.gid)
            .set(c::INODE, m.ino)
            .set(c::MTIME, m.mtime)
            .set(c::CTIME, m.ctime);
    }
    if let Some(w) = &e.writer {
        row.set(c::PID, w.pid);
        if let Some(path) = &w.path {
            row.set(c::PROCESS_PATH, path.as_str());
        }
        if let Some(uid) = w.uid {
            row.set(c::PROCESS_UID, uid);
        }
        if let Some(name) = &w.name {
            row.set(c::PROCESS_NAME, name.as_str());
        }
        if let Some(pm) = w.package_manager {
            row.set(c::PACKAGE_MANAGER, pm);
        }
    }
    row
}
