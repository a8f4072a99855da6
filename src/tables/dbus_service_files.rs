//! `dbus_service_files`: one row per entry in a D-Bus service, policy or
//! config directory, so a hunt sees everything a bus could read. (Stub.)
use crate::context::QueryContext;
use crate::tables::{Row, Settings};

pub fn generate(settings: &Settings, ctx: &QueryContext) -> Vec<Row> {
    let _ = (settings, ctx);
    Vec::new()
}
