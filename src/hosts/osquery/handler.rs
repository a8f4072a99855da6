//! Answers the core's `ping`, `call` and `shutdown`: the only place that
//! turns Thrift requests into table calls and rows back into string maps.
//! It never fails a Thrift call: every problem becomes a status with code 1
//! and a message, the way osquery's own plugins report errors.
use super::bindings::{
    ExtensionPluginRequest, ExtensionPluginResponse, ExtensionResponse, ExtensionStatus,
    ExtensionSyncHandler,
};
use super::encoded::EncodedRows;
use super::reply::{Reply, StreamingHandler};
use super::routes;
use crate::blind;
use crate::context::QueryContext;
use crate::row::Row;
use crate::tables::{Registry, Table};
use log::{debug, warn};
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

    /// `rows` makes a generate's answer from its table and context: the
    /// whole response's maps, or rows packed for the streamed reply.
    fn dispatch<'t, R>(
        &'t self,
        registry: &str,
        item: &str,
        request: &ExtensionPluginRequest,
        rows: impl FnOnce(&'t Table, &QueryContext) -> R,
    ) -> Result<Answer<R>, String> {
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
                // A panicking table fails its query, not the process; what
                // it made so far is dropped with the closure.
                // Each distinct reason the table could not read something
                // is logged once per generate, however many paths it hit.
                let (answer, blind) =
                    blind::collect(|| catch_unwind(AssertUnwindSafe(|| rows(table, &ctx))));
                blind::log_each(&blind);
                answer
                    .map(Answer::Rows)
                    .map_err(|_| format!("table {} failed while generating rows", table.spec.name))
            }
            Some("columns") => Ok(Answer::Maps(routes::table_routes(&table.spec))),
            Some(other) => Err(format!("unknown action {} for table {item}", echo(other))),
            None => Err(format!("unknown action: request for table {item} has none")),
        }
    }

    /// The call's answer and the status that goes with it, logged;
    /// `count` says how many rows an answer made by `rows` holds.
    fn answer<'t, R>(
        &'t self,
        registry: &str,
        item: &str,
        request: &ExtensionPluginRequest,
        rows: impl FnOnce(&'t Table, &QueryContext) -> R,
        count: impl Fn(&R) -> usize,
    ) -> (ExtensionStatus, Answer<R>) {
        let (shown_registry, shown_item) = (clip(registry), clip(item));
        if log::log_enabled!(log::Level::Debug) {
            debug!(
                "call {shown_registry}/{shown_item} action={:?} context={:?}",
                request.get("action").map(|a| echo(a)),
                request.get("context").map(|c| echo(c)),
            );
        }
        match self.dispatch(registry, item, request, rows) {
            Ok(answer) => {
                let n = match &answer {
                    Answer::Rows(r) => count(r),
                    Answer::Maps(maps) => maps.len(),
                };
                debug!("call {shown_registry}/{shown_item}: {n} rows");
                (self.status(0, "OK"), answer)
            }
            Err(message) => {
                warn!("call {shown_registry}/{shown_item} failed: {message}");
                (self.status(1, message), Answer::Maps(Vec::new()))
            }
        }
    }
}

/// What a call answers, before it becomes Thrift: a generate's rows (in
/// whichever form the reply path wants them), or maps already made
/// (routes, or none after an error).
enum Answer<R> {
    Rows(R),
    Maps(ExtensionPluginResponse),
}

/// Every row as a string map: what the generated processor needs.
/// Consumed row by row, so each table row is freed as its map is built.
fn into_maps(table: &Table, rows: Vec<Row>) -> ExtensionPluginResponse {
    let names = column_names(table);
    rows.into_iter()
        .map(|row| {
            osquery_cells(&names, row)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        })
        .collect()
}

/// The spec's column names in ascending order, the order a `BTreeMap`
/// iterates.
fn column_names(table: &Table) -> Vec<&str> {
    let mut names: Vec<&str> = table.spec.columns.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// A row as osquery's string cells: NULLs are left out (osquery reads a
/// missing key as NULL) and so is anything the spec does not declare.
fn osquery_cells<'n>(names: &[&'n str], mut row: Row) -> Vec<(&'n str, String)> {
    names
        .iter()
        .filter_map(|name| Some((*name, row.take(name)?.into_osquery_string()?)))
        .collect()
}

impl StreamingHandler for Handler {
    fn refused(&self, message: String) -> ExtensionResponse {
        warn!("call refused: {message}");
        ExtensionResponse::new(self.status(1, message), Vec::new())
    }

    /// A generate's rows are packed as the table makes them and written
    /// once it is done (see `encoded` and `reply`); routes and errors,
    /// small by nature, go out whole.
    fn stream_call(
        &self,
        registry: String,
        item: String,
        request: ExtensionPluginRequest,
        reply: Reply<'_>,
    ) -> thrift::Result<()> {
        let settings = &self.registry.settings;
        let packed = self.answer(
            &registry,
            &item,
            &request,
            |table, ctx| {
                let mut rows = EncodedRows::new(table.schema);
                table.generate_into(settings, ctx, &mut rows);
                rows
            },
            EncodedRows::len,
        );
        match packed {
            (status, Answer::Rows(rows)) => {
                let written = reply
                    .begin(&status, rows.len())
                    .and_then(|mut w| rows.write_to(&mut w).and_then(|()| w.finish()));
                release_freed_memory();
                written
            }
            (status, Answer::Maps(maps)) => {
                let written = reply.whole(&ExtensionResponse::new(status, maps));
                // A refused request may have been large (a context of tens
                // of megabytes): its memory goes back like a generate's.
                if request.values().map(String::len).sum::<usize>() > LARGE_REQUEST {
                    drop(request);
                    release_freed_memory();
                }
                written
            }
        }
    }
}

/// A request this large is followed by a trim even when it is refused.
const LARGE_REQUEST: usize = 1 << 20;

/// Hands what a generate freed back to the kernel once its reply is out.
/// glibc keeps freed memory in the arena of the thread that freed it, and
/// each connection has a thread of its own: the next one may be given
/// another arena, so a large generate's memory can stay resident beside
/// the next one's, and the peak then depends on which arena each thread
/// got rather than on the query; osquery's watchdog counts resident memory
/// between queries too. Trimming returns the free pages of every arena,
/// once per reply: its `madvise` calls are small next to writing the reply
/// they follow.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointers; it only returns free pages
    // of glibc's own heaps, under glibc's own locks.
    unsafe {
        libc::malloc_trim(0);
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
        let settings = &self.registry.settings;
        let (status, Answer::Rows(maps) | Answer::Maps(maps)) = self.answer(
            &registry,
            &item,
            &request,
            |table, ctx| into_maps(table, table.generate(settings, ctx)),
            Vec::len,
        );
        Ok(ExtensionResponse::new(status, maps))
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
    use crate::settings::Settings;

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

    /// A root with service files (one unreadable as a service, so rows
    /// carry an `error` and leave parsed columns NULL) in a system and a
    /// home directory.
    fn fixture_root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let put = |inner: &str, body: &str| {
            let p = dir.path().join(inner);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        };
        put(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nal:x:1000:1000::/home/al:/bin/sh\n",
        );
        for i in 0..40 {
            put(
                &format!("usr/share/dbus-1/services/org.x.S{i}.service"),
                &format!("[D-BUS Service]\nName=org.x.S{i}\nExec=/usr/bin/s{i} --a \"b c\"\n"),
            );
        }
        put(
            "home/al/.local/share/dbus-1/services/evil.service",
            "[D-BUS Service]\nName=org.evil\nExec=/bin/sh -c 'é'\nUser=root\n",
        );
        put(
            "usr/share/dbus-1/services/broken.service",
            "\0\x01 not a key file",
        );
        // Shadows a system file of the same name, so the shadow columns
        // carry values on both rows.
        put(
            "usr/local/share/dbus-1/services/org.x.S1.service",
            "[D-BUS Service]\nName=org.x.S1\nExec=/usr/local/bin/s1\n",
        );
        // For `dbus_policy_rules`, a table that makes its rows all at once.
        put(
            "etc/dbus-1/system.d/org.x.conf",
            r#"<busconfig><policy user="al"><allow own="org.x.S1"/><deny send_destination="org.x.S2"/></policy></busconfig>"#,
        );
        dir
    }

    fn handler_at(root: &std::path::Path) -> Handler {
        let settings = Settings {
            root: root.into(),
            ..Settings::default()
        };
        let registry = Arc::new(Registry::new(settings).unwrap());
        Handler::new(registry, 7, Arc::new(AtomicBool::new(false)))
    }

    /// The requests the tests send, in order, as (registry, item, request).
    fn requests() -> Vec<(&'static str, &'static str, ExtensionPluginRequest)> {
        let req = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<ExtensionPluginRequest>()
        };
        vec![
            (
                "table",
                "dbus_service_files",
                req(&[("action", "generate"), ("context", "{}")]),
            ),
            (
                "table",
                "dbus_service_files",
                req(&[
                    ("action", "generate"),
                    ("context", r#"{"colsUsed":["path","exec","error","size"]}"#),
                ]),
            ),
            (
                "table",
                "dbus_service_files",
                req(&[
                    ("action", "generate"),
                    (
                        "context",
                        r#"{"constraints":[{"name":"path","list":[{"op":2,"expr":"/nowhere"}]}]}"#,
                    ),
                ]),
            ),
            (
                "table",
                "dbus_service_files",
                req(&[
                    ("action", "generate"),
                    (
                        "context",
                        r#"{"colsUsed":["path","effective","shadowed_by","search_order"]}"#,
                    ),
                ]),
            ),
            (
                "table",
                "dbus_policy_rules",
                req(&[("action", "generate"), ("context", "{}")]),
            ),
            ("table", "dbus_service_files", req(&[("action", "columns")])),
            ("table", "no_such_table", req(&[("action", "generate")])),
        ]
    }

    /// The bytes a peer sends for `requests()`, then a ping, a shutdown and
    /// an unknown method; sequence numbers count from 1, as a client's do.
    fn request_bytes() -> Vec<u8> {
        use thrift::protocol::{
            TBinaryOutputProtocol, TFieldIdentifier, TMapIdentifier, TMessageIdentifier,
            TMessageType, TOutputProtocol, TStructIdentifier, TType,
        };
        let mut bytes = Vec::new();
        {
            let mut o = TBinaryOutputProtocol::new(&mut bytes, true);
            let mut seq = 0;
            for (registry, item, request) in requests() {
                seq += 1;
                o.write_message_begin(&TMessageIdentifier::new("call", TMessageType::Call, seq))
                    .unwrap();
                o.write_struct_begin(&TStructIdentifier::new("call_args"))
                    .unwrap();
                for (id, text) in [(1, registry), (2, item)] {
                    o.write_field_begin(&TFieldIdentifier::new("f", TType::String, id))
                        .unwrap();
                    o.write_string(text).unwrap();
                    o.write_field_end().unwrap();
                }
                o.write_field_begin(&TFieldIdentifier::new("request", TType::Map, 3))
                    .unwrap();
                o.write_map_begin(&TMapIdentifier::new(
                    TType::String,
                    TType::String,
                    request.len() as i32,
                ))
                .unwrap();
                for (k, v) in &request {
                    o.write_string(k).unwrap();
                    o.write_string(v).unwrap();
                }
                o.write_map_end().unwrap();
                o.write_field_end().unwrap();
                o.write_field_stop().unwrap();
                o.write_struct_end().unwrap();
                o.write_message_end().unwrap();
            }
            for method in ["ping", "shutdown", "no_such_method"] {
                seq += 1;
                o.write_message_begin(&TMessageIdentifier::new(method, TMessageType::Call, seq))
                    .unwrap();
                o.write_struct_begin(&TStructIdentifier::new("args"))
                    .unwrap();
                o.write_field_stop().unwrap();
                o.write_struct_end().unwrap();
                o.write_message_end().unwrap();
            }
        }
        bytes
    }

    /// What `processor` answers to `input`, served as a connection is.
    fn served(processor: &dyn thrift::server::TProcessor, input: &[u8]) -> Vec<u8> {
        use super::super::protocol::GuardedInputProtocol;
        use thrift::protocol::TBinaryOutputProtocol;
        use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport};
        let mut out = Vec::new();
        {
            let mut i = GuardedInputProtocol::new(TBufferedReadTransport::new(input));
            let mut o = TBinaryOutputProtocol::new(TBufferedWriteTransport::new(&mut out), true);
            while processor.process(&mut i, &mut o).is_ok() && i.failure().is_none() {}
        }
        out
    }

    #[test]
    fn streamed_call_replies_are_the_generated_bytes() {
        use super::super::bindings::ExtensionSyncProcessor;
        use super::super::reply::Processor;
        let root = fixture_root();
        let input = request_bytes();
        // Reading the files once settles their atimes, so every later
        // generate sees the same metadata.
        served(&Processor::new(handler_at(root.path())), &input);
        let generated = served(
            &ExtensionSyncProcessor::new(handler_at(root.path())),
            &input,
        );
        let streamed = served(&Processor::new(handler_at(root.path())), &input);
        assert!(generated.len() > 40 * 200, "{} bytes", generated.len());
        assert_eq!(streamed, generated);
    }

    #[test]
    fn streamed_call_replies_decode_to_the_handlers_responses() {
        use super::super::bindings::{ExtensionSyncClient, TExtensionSyncClient};
        use super::super::protocol::GuardedInputProtocol;
        use super::super::reply::Processor;
        use thrift::protocol::TBinaryOutputProtocol;
        use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport};
        let root = fixture_root();
        let input = request_bytes();
        served(&Processor::new(handler_at(root.path())), &input);
        let streamed = served(&Processor::new(handler_at(root.path())), &input);
        let whole = handler_at(root.path());
        let mut client = ExtensionSyncClient::new(
            GuardedInputProtocol::new(TBufferedReadTransport::new(&streamed[..])),
            TBinaryOutputProtocol::new(TBufferedWriteTransport::new(std::io::sink()), true),
        );
        let mut rows_seen = 0;
        for (registry, item, request) in requests() {
            let shadow_query = request
                .get("context")
                .is_some_and(|c| c.contains("shadowed_by"));
            let decoded = client
                .call(registry.into(), item.into(), request.clone())
                .unwrap();
            let expected = whole
                .handle_call(registry.into(), item.into(), request)
                .unwrap();
            let rows = decoded.response.clone().unwrap_or_default();
            rows_seen += rows.len();
            let cell = |col: &str| rows.iter().filter_map(|r| r.get(col)).count();
            if item == "dbus_policy_rules" {
                assert!(!rows.is_empty(), "no policy rules");
            }
            if shadow_query {
                assert_eq!(cell("shadowed_by"), 1, "{rows:?}");
                assert!(cell("effective") >= 42, "{rows:?}");
            }
            assert_eq!(decoded, expected, "{registry}/{item}");
        }
        // Three generates of 44 entries, the policy rules, the columns'
        // routes.
        assert!(rows_seen >= 3 * 44 + 2, "{rows_seen}");
        assert_eq!(client.ping().unwrap().code, Some(0));
        client.shutdown().unwrap();
        // The reply to the unknown method is an exception named after it.
        let unknown = format!("{:?}", client.ping().unwrap_err());
        assert!(unknown.contains("no_such_method"), "{unknown}");
    }

    #[test]
    fn shutdown_sets_the_stop_flag() {
        let h = handler();
        h.handle_shutdown().unwrap();
        assert!(h.stop.load(Ordering::SeqCst));
    }
}
