//! Talking to the osquery core at `--socket`: registering our tables and,
//! later, asking whether the core still knows us. osquery may launch an
//! extension before its own socket exists, and answers "Duplicate extension
//! registered" while an earlier instance of us is still being dropped, so
//! registration retries both until `--timeout` runs out.
//!
//! Every exchange with the core has one deadline for all of its I/O,
//! connecting included (a wedged core that stops accepting fills its listen
//! backlog, and a blocking connect would then wait forever), so a health
//! check ends within [`CHECK_TIMEOUT`] whatever the core does. A core that
//! restarted is told apart from the one we registered with by its socket
//! file (device, inode, change time), not by the uuid alone: osquery draws uuids from 16
//! random bits, so a new core may list our uuid for another instance.
use super::bindings::{
    ExtensionManagerSyncClient, InternalExtensionInfo, TExtensionManagerSyncClient,
};
use super::protocol::GuardedInputProtocol;
use super::routes;
use super::OsqueryHostError;
use crate::tables::Registry;
use log::debug;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
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
/// The name we register under; the core lists it beside our uuid.
const NAME: &str = "dbus";

/// All I/O of one health check: a healthy core answers `extensions()` in
/// milliseconds. With checks every `--interval`, a wedged core is noticed
/// within `--interval` + this (and the lifecycle loop's 100 ms poll).
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(750);

/// The core's socket file, as device, inode and change time: a restarted
/// core binds a new one at the same path. The inode alone is not enough:
/// file systems such as ext4 hand a freed inode number to the next file at
/// once, so the new socket often has the old one's; its change time (set
/// when it is created, to the nanosecond) differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreIdentity {
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
}

impl CoreIdentity {
    fn of(socket: &Path) -> io::Result<CoreIdentity> {
        let meta = std::fs::metadata(socket)?;
        Ok(CoreIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

/// One stream whose every read and write ends by one deadline.
struct Deadlined {
    stream: UnixStream,
    deadline: Instant,
}

impl Deadlined {
    fn remaining(&self) -> io::Result<Duration> {
        self.deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::TimedOut, "the core did not answer in time")
            })
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.remaining()?))?;
        self.stream.read(buf).map_err(timed_out)
    }
}

impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.remaining()?))?;
        self.stream.write(buf).map_err(timed_out)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// A socket timeout reads as `EAGAIN`; say what it means.
fn timed_out(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, "the core did not answer in time")
        }
        _ => e,
    }
}

type Client = ExtensionManagerSyncClient<
    GuardedInputProtocol<TBufferedReadTransport<Deadlined>>,
    TBinaryOutputProtocol<TBufferedWriteTransport<Deadlined>>,
>;

/// Connects by `deadline`. A Unix socket's non-blocking connect answers
/// `EAGAIN` while the listener's backlog is full and cannot be waited on
/// with `poll`, so it is retried every few milliseconds.
fn connect_by(socket: &Path, deadline: Instant) -> io::Result<UnixStream> {
    use rustix::net::{
        connect, socket_with, AddressFamily, SocketAddrUnix, SocketFlags, SocketType,
    };
    let addr = SocketAddrUnix::new(socket)?;
    let fd = socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    loop {
        match connect(&fd, &addr) {
            Ok(()) => break,
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR)
                if Instant::now() < deadline =>
            {
                thread::sleep(Duration::from_millis(5));
            }
            Err(rustix::io::Errno::AGAIN) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the core accepts no connection",
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// One connection per exchange, as osquery's own SDK does: a core that
/// restarted in between is then noticed instead of hanging a stale stream.
/// Everything, connecting included, ends by `timeout` from now.
fn connect(socket: &Path, timeout: Duration) -> io::Result<Client> {
    let deadline = Instant::now() + timeout.max(Duration::from_millis(100));
    let stream = connect_by(socket, deadline)?;
    let read_half = stream.try_clone()?;
    Ok(ExtensionManagerSyncClient::new(
        GuardedInputProtocol::new(TBufferedReadTransport::new(Deadlined {
            stream: read_half,
            deadline,
        })),
        TBinaryOutputProtocol::new(
            TBufferedWriteTransport::new(Deadlined { stream, deadline }),
            true,
        ),
    ))
}

/// What one registration attempt came to.
enum Attempt {
    Registered(i64, CoreIdentity),
    /// Worth trying again until the deadline: the core is not there yet,
    /// or still holds an earlier registration of ours.
    Retry(String),
    Fatal(OsqueryHostError),
}

fn attempt(socket: &Path, io_timeout: Duration, registry: &Registry) -> Attempt {
    // Taken before connecting: if the core is replaced in between, the
    // first health check sees a socket other than this one and we exit.
    let identity = match CoreIdentity::of(socket) {
        Ok(id) => id,
        Err(e) => return Attempt::Retry(format!("cannot connect: {e}")),
    };
    let mut client = match connect(socket, io_timeout) {
        Ok(c) => c,
        Err(e) => return Attempt::Retry(format!("cannot connect: {e}")),
    };
    let info = InternalExtensionInfo::new(
        NAME.to_string(),
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
        Attempt::Registered(status.uuid.unwrap_or(0), identity)
    } else if message.contains(DUPLICATE) {
        Attempt::Retry(message)
    } else {
        Attempt::Fatal(OsqueryHostError::Refused { code, message })
    }
}

/// Registers until it works, the core refuses outright, `timeout` passes,
/// or `stop` is raised (then `Ok(None)`: nothing to clean up). Returns our
/// uuid and the core's socket as it was when we registered.
pub fn register(
    socket: &Path,
    timeout: Duration,
    registry: &Registry,
    stop: &AtomicBool,
) -> Result<Option<(i64, CoreIdentity)>, OsqueryHostError> {
    let deadline = Instant::now() + timeout;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let last = match attempt(socket, remaining, registry) {
            Attempt::Registered(uuid, identity) => return Ok(Some((uuid, identity))),
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

/// thrift's `Display` shows only an error's kind; its message says more.
fn detail(e: &thrift::Error) -> String {
    match e {
        thrift::Error::Transport(t) if !t.message.is_empty() => t.message.clone(),
        thrift::Error::Protocol(p) if !p.message.is_empty() => p.message.clone(),
        other => other.to_string(),
    }
}

/// Whether the core we registered with is still there and lists `uuid`
/// under our name; `Err` says why not. An unreachable core counts as gone
/// (osquery removes its socket when it exits), and so does a core that
/// does not answer within [`CHECK_TIMEOUT`] or whose socket is not the one
/// we registered at (it restarted, even if it lists our uuid again).
pub fn still_registered(socket: &Path, uuid: i64, core: CoreIdentity) -> Result<(), String> {
    match CoreIdentity::of(socket) {
        Ok(now) if now == core => {}
        Ok(_) => return Err("the core restarted (its socket is a new one)".into()),
        Err(e) => return Err(format!("core unreachable: {e}")),
    }
    let mut client =
        connect(socket, CHECK_TIMEOUT).map_err(|e| format!("core unreachable: {e}"))?;
    let extensions = client.extensions().map_err(|e| {
        format!(
            "core did not answer within {CHECK_TIMEOUT:?}: {}",
            detail(&e)
        )
    })?;
    match extensions.get(&uuid) {
        Some(info) if info.name.as_deref() == Some(NAME) => Ok(()),
        Some(info) => Err(format!(
            "core lists uuid {uuid} for another extension ({:?})",
            info.name.as_deref().unwrap_or("")
        )),
        None => Err(format!("core no longer lists extension uuid {uuid}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A core that restarted binds a new socket at the same path: noticed
    /// before anything is sent to it.
    #[test]
    fn a_new_socket_at_the_path_is_another_core() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("core.sock");
        let first = UnixListener::bind(&path).unwrap();
        let identity = CoreIdentity::of(&path).unwrap();
        drop(first);
        std::fs::remove_file(&path).unwrap();
        let second = UnixListener::bind(&path).unwrap();
        second.set_nonblocking(true).unwrap();
        let why = still_registered(&path, 7, identity).unwrap_err();
        assert!(why.contains("the core restarted"), "{why}");
        assert!(second.accept().is_err(), "connected to the new core");
    }

    /// A core that accepts and never answers, and one whose backlog is
    /// full (it stopped accepting): each check ends by its deadline.
    #[test]
    fn a_wedged_core_check_ends_by_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("core.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let identity = CoreIdentity::of(&path).unwrap();
        // Accepted by the kernel (the backlog), never read.
        let t = Instant::now();
        let why = still_registered(&path, 7, identity).unwrap_err();
        let took = t.elapsed();
        assert!(why.contains("did not answer"), "{why}");
        assert!(took < CHECK_TIMEOUT + Duration::from_secs(1), "{took:?}");
        // Fill the backlog: a blocking connect would now wait forever.
        let mut held = Vec::new();
        loop {
            match connect_by(&path, Instant::now() + Duration::from_millis(50)) {
                Ok(s) => held.push(s),
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
                    break;
                }
            }
            assert!(held.len() < 10_000, "the backlog never filled");
        }
        let t = Instant::now();
        let why = still_registered(&path, 7, identity).unwrap_err();
        assert!(why.contains("unreachable"), "{why}");
        assert!(t.elapsed() < CHECK_TIMEOUT + Duration::from_secs(1));
        drop(listener);
    }
}
