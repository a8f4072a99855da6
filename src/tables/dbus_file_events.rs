//! `dbus_file_events`: changes in D-Bus directories as they happened, read
//! from the buffer the `events::file` collector fills. The table only
//! applies the `time` lower bound; watching, the buffer's bounds and what
//! happens without a collector live in `events`.
use crate::context::QueryContext;
use crate::events;
use crate::row::Row;
use crate::settings::Settings;

pub fn generate(_settings: &Settings, ctx: &QueryContext) -> Vec<Row> {
    events::rows(events::FILE_TABLE, events::time_lower_bound(ctx))
}
