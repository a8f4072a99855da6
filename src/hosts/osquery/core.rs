//! Talking to the osquery core at `--socket`: registering our tables and,
//! later, asking whether the core still knows us. osquery may launch an
//! extension before its own socket exists, and answers "Duplicate extension
//! registered" while an earlier instance of us is still being dropped, so
//! registration retries both until `--timeout` runs out.
use super::bindings::{
    ExtensionManagerSyncClient, InternalExtensionInfo, TExtensionManagerSyncClient,
};
use super::protocol::GuardedInputProtocol;
use super::routes;
use super::OsqueryHostError;
use crate::tables::Registry;
use log::debug;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use thrift::protocol::TBinaryOutputProtocol;
use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport};

/// The extension SDK generation we speak; osquery only compares it against
/// its own `min_sdk_version` requirements, which 5.x leaves at 0.0.0.
pub const SDK_VERSION: &str = "5.0.0";
const RETRY_DELAY: Duration = Duration::from_millis(200);
const DUPLICATE: &str = "Duplicate extension registered";

type Client = ExtensionManagerSyncClient<
    GuardedInputProtocol<TBufferedReadTransport<UnixStream>>,
    TBinaryOutputProtocol<TBufferedWriteTransport<UnixStream>>,
>;

/// One connection per exchange, as osquery's own SDK does: a core that
/// restarted in between is then noticed instead of hanging a stale stream.
/// `io_timeout` bounds every read and write, so a wedged core cannot stall us.
fn connect(socket: &Path, io_timeout: Duration) -> io::Result<Client> {
    let stream = UnixStream::connect(socket)?;
    let io_timeout = io_timeout.max(Duration::from_millis(100));
    stream.set_read_timeout(Some(io_timeout))?;
    stream.set_write_timeout(Some(io_timeout))?;
    let read_half = stream.try_clone()?;
    Ok(ExtensionManagerSyncClient::new(
        GuardedInputProtocol::new(TBufferedReadTransport::new(read_half)),
        TBinaryOutputProtocol::new(TBufferedWriteTransport::new(stream), true),
    ))
}

/// What one registration attempt came to.
enum Attempt {
    Registered(i64),
    /// Worth trying again until the deadline: the core is not there yet,
    /// or still holds an earlier registration of ours.
    Retry(String),
    Fatal(OsqueryHostError),
}

fn attempt(socket: &Path, io_timeout: Duration, registry: &Registry) -> Attempt {
    let mut client = match connect(socket, io_timeout) {
        Ok(c) => c,
        Err(e) => return Attempt::Retry(format!("cannot connect: {e}")),
    };
    let info = InternalExtensionInfo::new(
        "dbus".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
        SDK_VERSION.to_string(),
        "0.0.0".to_string(),
    );
    let status = match client.register_extension(info, routes::registration(registry)) {
        Ok(s) => s,
        Err(thrift::Error::Transport(e)) => return Attempt::Retry(format!("no answer: {e}")),
        Err(e) => return Attempt::Fatal(OsqueryHostError::Protocol(e.to_string())),
    };
    // osquery's C++ reads an absent i32 as 0; so do we.
    let code = status.code.unwrap_or(0);
    let message = status.message.unwrap_or_default();
    if code == 0 {
        Attempt::Registered(status.uuid.unwrap_or(0))
    } else if message.contains(DUPLICATE) {
        Attempt::Retry(message)
    } else {
        Attempt::Fatal(OsqueryHostError::Refused { code, message })
    }
}

/// Registers until it works, the core refuses outright, `timeout` passes,
/// or `stop` is raised (then `Ok(None)`: nothing to clean up).
pub fn register(
    socket: &Path,
    timeout: Duration,
    registry: &Registry,
    stop: &AtomicBool,
) -> Result<Option<i64>, OsqueryHostError> {
    let deadline = Instant::now() + timeout;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let last = match attempt(socket, remaining, registry) {
            Attempt::Registered(uuid) => return Ok(Some(uuid)),
            Attempt::Fatal(e) => return Err(e),
            Attempt::Retry(why) => why,
        };
        debug!("registration not done yet: {last}");
        if Instant::now() + RETRY_DELAY > deadline {
            return Err(if last.contains(DUPLICATE) {
                OsqueryHostError::StillDuplicate {
                    timeout,
                    message: last,
                }
            } else {
                OsqueryHostError::CoreUnreachable {
                    socket: socket.to_path_buf(),
                    timeout,
                    last,
                }
            });
        }
        thread::sleep(RETRY_DELAY);
    }
}

/// Whether the core still lists `uuid`; `Err` says why not. An unreachable
/// core counts as gone: osquery removes its socket when it exits.
pub fn still_registered(socket: &Path, uuid: i64, io_timeout: Duration) -> Result<(), String> {
    let mut client = connect(socket, io_timeout).map_err(|e| format!("core unreachable: {e}"))?;
    let extensions = client
        .extensions()
        .map_err(|e| format!("core did not answer: {e}"))?;
    if extensions.contains_key(&uuid) {
        Ok(())
    } else {
        Err(format!("core no longer lists extension uuid {uuid}"))
    }
}
