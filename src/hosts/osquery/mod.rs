//! The osquery host: registers our tables with an osquery core over its
//! Thrift extension socket, serves `generate`/`columns` calls on
//! `<socket>.<uuid>`, and exits when the core goes away or says so.
//!
//! Built on the `thrift` crate 0.17 with bindings generated from
//! `thrift/extension.thrift` rather than on `osquery-rust-ng`, which
//! hard-codes its version, ignores a refused registration and never checks
//! that the core still lists it (see DESIGN.md). Each job has its module:
//! `core` (registration and liveness), `server` (the socket and its
//! threads), `reply` (the processor, which streams `call` replies),
//! `encoded` (a generate's rows packed until the reply goes out),
//! `handler` (requests to tables), `routes` (spec to osquery's route rows)
//! and `protocol` (bounds checks the stock protocol lacks).
use crate::tables::Registry;
use log::{debug, info, warn};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[allow(clippy::all)]
mod bindings;
mod core;
mod encoded;
mod handler;
mod protocol;
mod reply;
mod routes;
mod server;

/// Exactly the knobs osquery passes to an extension it launches.
pub struct ExtensionOptions {
    pub socket: PathBuf,
    /// How long registration keeps retrying.
    pub timeout: Duration,
    /// How often to check that the core still lists us; we exit within it.
    pub interval: Duration,
    /// Call logging. `main` already maps it to the `debug` log level, so the
    /// host only logs at `debug`; kept here so a library caller sees it.
    pub verbose: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum OsqueryHostError {
    #[error("no osquery core answered at {} within {timeout:?} ({last})", socket.display())]
    CoreUnreachable {
        socket: PathBuf,
        timeout: Duration,
        last: String,
    },
    #[error("osquery core refused the registration (code {code}): {message}")]
    Refused { code: i32, message: String },
    #[error("osquery core still reported a duplicate extension after {timeout:?}: {message}")]
    StillDuplicate { timeout: Duration, message: String },
    #[error("osquery core answered registration with an error: {0}")]
    Protocol(String),
    #[error("cannot serve the extension socket {}: {source}", path.display())]
    Serve {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signal(#[source] std::io::Error),
}

/// How often the lifecycle loop looks at its stop flags: signals and a
/// `shutdown` call are acted on within this, whatever `--interval` is.
const POLL: Duration = Duration::from_millis(100);

/// Signals that end the extension cleanly (socket removed). Every one
/// would otherwise kill it where it stands and leave `<socket>.<uuid>`
/// behind: SIGHUP comes to osqueryi's whole process group when its
/// terminal closes, SIGUSR1/SIGUSR2 from anyone poking at it.
pub const EXIT_SIGNALS: [i32; 5] = [
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGUSR1,
    signal_hook::consts::SIGUSR2,
];

/// Registers, serves, and returns once the extension should exit; the
/// socket `<socket>.<uuid>` is gone by then. Threads still inside a
/// `generate` are not joined: they hold nothing that needs flushing and end
/// with the process.
pub fn run(registry: Arc<Registry>, opts: ExtensionOptions) -> Result<(), OsqueryHostError> {
    let signalled = Arc::new(AtomicBool::new(false));
    for sig in EXIT_SIGNALS {
        // The first signal asks for a clean exit; a second one, should the
        // clean exit ever hang, terminates at once.
        signal_hook::flag::register_conditional_shutdown(sig, 1, signalled.clone())
            .map_err(OsqueryHostError::Signal)?;
        signal_hook::flag::register(sig, signalled.clone()).map_err(OsqueryHostError::Signal)?;
    }
    let Some((uuid, core_identity)) =
        core::register(&opts.socket, opts.timeout, &registry, &signalled)?
    else {
        info!("signalled before registration finished");
        return Ok(());
    };
    let mut path = OsString::from(opts.socket.as_os_str());
    path.push(format!(".{uuid}"));
    let path = PathBuf::from(path);

    let shutdown = Arc::new(AtomicBool::new(false));
    let handler = handler::Handler::new(registry, uuid, shutdown.clone());
    let server = server::Server::start(path.clone(), handler)
        .map_err(|source| OsqueryHostError::Serve { path, source })?;
    info!(
        "registered as uuid {uuid}; serving {}",
        server.path().display()
    );

    match watch(&opts, uuid, core_identity, &server, &signalled, &shutdown) {
        Exit::Asked(why) => info!("exiting: {why}"),
        // Not asked to go: worth a line at the default log level.
        Exit::Lost(why) => warn!("exiting: {why}"),
    }
    server.stop();
    Ok(())
}

/// Why the extension leaves.
enum Exit {
    /// A signal or the core's `shutdown` call.
    Asked(&'static str),
    /// The core (or our socket) is gone, wedged or someone else's.
    Lost(String),
}

/// Waits for a reason to exit and returns it: a signal, a `shutdown` call,
/// our socket taken over by another process, or the core we registered
/// with gone, wedged or no longer knowing us (checked every `interval`,
/// each check bounded by [`core::CHECK_TIMEOUT`]).
fn watch(
    opts: &ExtensionOptions,
    uuid: i64,
    core_identity: core::CoreIdentity,
    server: &server::Server,
    signalled: &AtomicBool,
    shutdown: &AtomicBool,
) -> Exit {
    let mut next_check = Instant::now() + opts.interval;
    loop {
        if signalled.load(Ordering::SeqCst) {
            return Exit::Asked("signal received");
        }
        if shutdown.load(Ordering::SeqCst) {
            return Exit::Asked("the core asked us to shut down");
        }
        if !server.still_ours() {
            return Exit::Lost(format!(
                "{} is no longer our socket (another extension was given uuid {uuid})",
                server.path().display()
            ));
        }
        let now = Instant::now();
        if now >= next_check {
            // Counted from the start of this check, so a slow answer does
            // not push the next one back.
            next_check = now + opts.interval;
            match core::still_registered(&opts.socket, uuid, core_identity) {
                Ok(()) => debug!("core still lists uuid {uuid}"),
                Err(why) => return Exit::Lost(why),
            }
        }
        thread::sleep(POLL.min(next_check.saturating_duration_since(Instant::now())));
    }
}

/// A narrow door for the fuzz targets in `fuzz/` (not an API): the bytes a
/// peer could write to our socket, read the way a connection thread reads
/// them, but answered by a stub handler so no table touches the host.
#[doc(hidden)]
pub mod fuzzing {
    use super::bindings::{
        ExtensionPluginRequest, ExtensionResponse, ExtensionStatus, ExtensionSyncHandler,
    };
    use super::protocol::GuardedInputProtocol;
    use super::reply::{Processor, StreamingHandler};
    use thrift::protocol::TBinaryOutputProtocol;
    use thrift::server::TProcessor;
    use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport};

    /// Echoes a call's request back as one row, so replies of any size go
    /// through the output path too.
    struct Stub;

    impl ExtensionSyncHandler for Stub {
        fn handle_ping(&self) -> thrift::Result<ExtensionStatus> {
            Ok(ExtensionStatus::new(0, "OK".to_string(), 1))
        }
        fn handle_call(
            &self,
            _registry: String,
            _item: String,
            request: ExtensionPluginRequest,
        ) -> thrift::Result<ExtensionResponse> {
            let status = ExtensionStatus::new(0, "OK".to_string(), 1);
            Ok(ExtensionResponse::new(
                status,
                vec![request.into_iter().collect()],
            ))
        }
        fn handle_shutdown(&self) -> thrift::Result<()> {
            Ok(())
        }
    }
    impl StreamingHandler for Stub {}

    /// Serves `bytes` as one connection's input until the input ends or is
    /// rejected, exactly as `server::serve_connection` loops.
    pub fn serve_bytes(bytes: &[u8]) {
        let processor = Processor::new(Stub);
        let mut input = GuardedInputProtocol::new(TBufferedReadTransport::new(bytes));
        let mut output =
            TBinaryOutputProtocol::new(TBufferedWriteTransport::new(std::io::sink()), true);
        while processor.process(&mut input, &mut output).is_ok() && input.failure().is_none() {}
    }
}
