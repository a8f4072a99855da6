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

/// How much of a peer-chosen name or context is echoed into a status
/// message or the log: enough to recognise it, never the 100 MB a peer
/// may send.
const ECHO_MAX: usize = 200;

/// `text` for a message: quoted like `{:?}`, and cut at [`ECHO_MAX`]
/// bytes with the full length said.
fn echo(text: &str) -> String {
    if text.len() <= ECHO_MAX {
        return format!("{text:?}");
    }
    let mut cut = ECHO_MAX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{:?}… ({} bytes)", &text[..cut], text.len())
}

/// `text` for the log: control characters escaped, cut like [`echo`].
fn clip(text: &str) -> String {
    let quoted = echo(text);
    let inner = quoted.strip_prefix('"').unwrap_or(&quoted);
    match inner.rsplit_once('"') {
        Some((body, rest)) => format!("{body}{rest}"),
        None => inner.to_string(),
    }
}

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
                "unknown registry {}: only tables are served",
                echo(registry)
            ));
        }
        // Only registered tables: `users` and `groups` exist here too, but
        // osquery answers for those names with its own tables.
        let table = self
            .registry
            .extension_tables()
            .find(|t| t.spec.name == item)
            .ok_or_else(|| format!("unknown table {}", echo(item)))?;
        match request.get("action").map(String::as_str) {
            Some("generate") => {
                let context = request.get("context").map(String::as_str).unwrap_or("");
                let ctx = QueryContext::from_json(context).map_err(|e| e.to_string())?;
                self.generate(table, &ctx)
            }
            Some("columns") => Ok(routes::table_routes(&table.spec)),
            Some(other) => Err(format!("unknown action {} for table {item}", echo(other))),
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
        let (shown_registry, shown_item) = (clip(&registry), clip(&item));
        if log::log_enabled!(log::Level::Debug) {
            debug!(
                "call {shown_registry}/{shown_item} action={:?} context={:?}",
                request.get("action").map(|a| echo(a)),
                request.get("context").map(|c| echo(c)),
            );
        }
        let response = match self.dispatch(&registry, &item, &request) {
            Ok(rows) => {
                debug!("call {shown_registry}/{shown_item}: {} rows", rows.len());
                ExtensionResponse::new(self.status(0, "OK"), rows)
            }
            Err(message) => {
                warn!("call {shown_registry}/{shown_item} failed: {message}");
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

    /// Found by tests/extension_abuse.rs: a 100 MB registry name came back
    /// whole in the status message and went twice into the log (escaped,
    /// which took long enough that the caller timed out).
    #[test]
    fn a_huge_registry_name_is_not_echoed_whole() {
        let h = handler();
        let big = "r".repeat(10 * 1024 * 1024);
        let (c, msg) = code(&call(&h, &big, "t", &[("action", "generate")]));
        assert_eq!(c, 1);
        assert!(msg.len() < 400, "{} bytes", msg.len());
        assert!(msg.contains("(10485760 bytes)"), "{msg}");
        let (_, msg) = code(&call(&h, "table", &big, &[("action", "generate")]));
        assert!(msg.len() < 400, "{} bytes", msg.len());
        let (_, msg) = code(&call(
            &h,
            "table",
            "dbus_service_files",
            &[("action", &big)],
        ));
        assert!(msg.len() < 400, "{} bytes", msg.len());
        assert_eq!(echo("é".repeat(150).as_str()).matches('é').count(), 100);
        assert_eq!(clip("table"), "table");
        assert_eq!(clip("a\nb"), "a\\nb");
    }

    #[test]
    fn shutdown_sets_the_stop_flag() {
        let h = handler();
        h.handle_shutdown().unwrap();
        assert!(h.stop.load(Ordering::SeqCst));
    }
}
