//! Answers the core's `ping`, `call` and `shutdown`: the only place that
//! turns Thrift requests into table calls and rows back into string maps.
//! It never fails a Thrift call: every problem becomes a status with code 1
//! and a message, the way osquery's own plugins report errors.
use super::bindings::{
    ExtensionPluginRequest, ExtensionPluginResponse, ExtensionResponse, ExtensionStatus,
    ExtensionSyncHandler,
};
use super::routes;
use crate::context::QueryContext;
use crate::tables::{Registry, Table};
use log::{debug, warn};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct Handler {
    registry: Arc<Registry>,
    uuid: i64,
    /// Set by `shutdown`; the lifecycle loop notices it and exits.
    stop: Arc<AtomicBool>,
}

impl Handler {
    pub fn new(registry: Arc<Registry>, uuid: i64, stop: Arc<AtomicBool>) -> Handler {
        Handler {
            registry,
            uuid,
            stop,
        }
    }

    /// Explicit code and message every time: osquery's C++ reads an absent
    /// code as 0, which would turn a forgotten field into success.
    fn status(&self, code: i32, message: impl Into<String>) -> ExtensionStatus {
        ExtensionStatus::new(code, message.into(), self.uuid)
    }

    fn dispatch(
        &self,
        registry: &str,
        item: &str,
        request: &ExtensionPluginRequest,
    ) -> Result<ExtensionPluginResponse, String> {
        if registry != "table" {
            return Err(format!(
                "unknown registry {registry:?}: only tables are served"
            ));
        }
        // Only registered tables: `users` and `groups` exist here too, but
        // osquery answers for those names with its own tables.
        let table = self
            .registry
            .extension_tables()
            .find(|t| t.spec.name == item)
            .ok_or_else(|| format!("unknown table {item:?}"))?;
        match request.get("action").map(String::as_str) {
            Some("generate") => {
                let context = request.get("context").map(String::as_str).unwrap_or("");
                let ctx = QueryContext::from_json(context).map_err(|e| e.to_string())?;
                self.generate(table, &ctx)
            }
            Some("columns") => Ok(routes::table_routes(&table.spec)),
            Some(other) => Err(format!("unknown action {other:?} for table {item}")),
            None => Err(format!("unknown action: request for table {item} has none")),
        }
    }

    /// Rows become osquery's string maps: NULLs are left out (osquery reads
    /// a missing key as NULL) and so is anything the spec does not declare.
    /// A panicking table fails its query, not the process.
    fn generate(
        &self,
        table: &Table,
        ctx: &QueryContext,
    ) -> Result<ExtensionPluginResponse, String> {
        let settings = &self.registry.settings;
        let rows = catch_unwind(AssertUnwindSafe(|| table.generate(settings, ctx)))
            .map_err(|_| format!("table {} failed while generating rows", table.spec.name))?;
        // Consumed row by row, so each table row is freed as its string map
        // is built: the peak is one copy of the result, not two.
        Ok(rows
            .into_iter()
            .map(|mut row| {
                table
                    .spec
                    .columns
                    .iter()
                    .filter_map(|c| {
                        let value = row.take(&c.name)?.into_osquery_string()?;
                        Some((c.name.clone(), value))
                    })
                    .collect::<BTreeMap<String, String>>()
            })
            .collect())
    }
}

impl ExtensionSyncHandler for Handler {
    fn handle_ping(&self) -> thrift::Result<ExtensionStatus> {
        debug!("ping");
        Ok(self.status(0, "OK"))
    }

    fn handle_call(
        &self,
        registry: String,
        item: String,
        request: ExtensionPluginRequest,
    ) -> thrift::Result<ExtensionResponse> {
        debug!(
            "call {registry}/{item} action={:?} context={:?}",
            request.get("action"),
            request.get("context")
        );
        let response = match self.dispatch(&registry, &item, &request) {
            Ok(rows) => {
                debug!("call {registry}/{item}: {} rows", rows.len());
                ExtensionResponse::new(self.status(0, "OK"), rows)
            }
            Err(message) => {
                warn!("call {registry}/{item} failed: {message}");
                ExtensionResponse::new(self.status(1, message), Vec::new())
            }
        };
        Ok(response)
    }

    fn handle_shutdown(&self) -> thrift::Result<()> {
        debug!("shutdown requested by the core");
        self.stop.store(true, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::Settings;

    fn handler() -> Handler {
        let settings = Settings {
            root: "/nonexistent-osquery-dbus-test-root".into(),
            ..Settings::default()
        };
        let registry = Arc::new(Registry::new(settings).unwrap());
        Handler::new(registry, 7, Arc::new(AtomicBool::new(false)))
    }

    fn call(h: &Handler, registry: &str, item: &str, req: &[(&str, &str)]) -> ExtensionResponse {
        let req = req
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        h.handle_call(registry.into(), item.into(), req).unwrap()
    }

    fn code(r: &ExtensionResponse) -> (i32, String) {
        let s = r.status.clone().unwrap();
        (s.code.unwrap(), s.message.unwrap())
    }

    #[test]
    fn ping_is_ok_with_uuid() {
        let s = handler().handle_ping().unwrap();
        assert_eq!((s.code, s.uuid), (Some(0), Some(7)));
    }

    #[test]
    fn columns_match_the_routes() {
        let h = handler();
        let r = call(&h, "table", "dbus_service_files", &[("action", "columns")]);
        assert_eq!(code(&r).0, 0);
        let spec = &h.registry.get("dbus_service_files").unwrap().spec;
        assert_eq!(r.response.unwrap(), routes::table_routes(spec));
    }

    #[test]
    fn failures_are_status_1_with_a_message() {
        let h = handler();
        for (reg, item, req) in [
            ("config", "dbus_service_files", vec![("action", "generate")]),
            ("table", "nope", vec![("action", "generate")]),
            ("table", "users", vec![("action", "generate")]),
            ("table", "dbus_service_files", vec![("action", "explode")]),
            ("table", "dbus_service_files", vec![]),
            (
                "table",
                "dbus_service_files",
                vec![("action", "generate"), ("context", "{not json")],
            ),
        ] {
            let (c, msg) = code(&call(&h, reg, item, &req));
            assert_eq!(c, 1, "{reg}/{item} {req:?}");
            assert!(!msg.is_empty());
        }
    }

    #[test]
    fn generate_with_empty_context_succeeds() {
        let h = handler();
        let r = call(
            &h,
            "table",
            "dbus_service_files",
            &[("action", "generate"), ("context", "")],
        );
        assert_eq!(code(&r).0, 0);
    }

    #[test]
    fn shutdown_sets_the_stop_flag() {
        let h = handler();
        h.handle_shutdown().unwrap();
        assert!(h.stop.load(Ordering::SeqCst));
    }
}
