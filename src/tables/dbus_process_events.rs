//! `dbus_process_events`: bus activations and D-Bus client runs as they
//! happened, read from the buffer the `events::process` collector fills.
//! The table itself only applies the `time` lower bound; collecting, the
//! buffer's bounds and what happens without a collector live in `events`.
use crate::context::QueryContext;
use crate::events;
use crate::row::Row;
use crate::settings::Settings;

pub fn generate(_settings: &Settings, ctx: &QueryContext) -> Vec<Row> {
    events::rows(events::PROCESS_TABLE, events::time_lower_bound(ctx))
}
