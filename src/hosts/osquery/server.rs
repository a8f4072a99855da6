//! The extension's own socket, `<socket>.<uuid>`. osquery pings before every
//! call and drops an extension after one failed ping, so a slow `generate`
//! must never hold up a ping: each connection gets its own thread and loops
//! over its requests until the peer hangs up. A connection that sends
//! anything the guarded protocol rejects is closed; the others carry on.
//!
//! Past [`MAX_CONNECTIONS`] live connections, new ones wait in the kernel's
//! listen backlog until one ends, rather than being refused: a refused
//! connection is a failed ping, and a failed ping deregisters us. Each
//! connection costs one file descriptor (the serving thread and the stop
//! path share it) and one thread.
use super::protocol::GuardedInputProtocol;
use super::reply::{Processor, StreamingHandler};
use log::{debug, warn};
use std::collections::HashMap;
use std::io;
use std::net::Shutdown;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;
use thrift::protocol::TBinaryOutputProtocol;
use thrift::server::TProcessor;
use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport};

/// Connections served at once; more wait to be accepted. Far above what
/// an osquery core opens (a few: its pings and one per running query),
/// high enough for 200 concurrent calls, and at one descriptor each well
/// inside the usual 1024 open-file limit.
pub const MAX_CONNECTIONS: usize = 512;

/// A peer that stops reading its replies must not pin a thread forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// The live connections, kept so a stop can hang them all up, and a
/// condition signalled whenever one ends (or the server stops).
#[derive(Default)]
struct Live {
    streams: Mutex<HashMap<u64, Arc<UnixStream>>>,
    changed: Condvar,
}

type Connections = Arc<Live>;

fn lock(conns: &Live) -> MutexGuard<'_, HashMap<u64, Arc<UnixStream>>> {
    // A poisoned map is still a valid map: a panicking thread cannot leave
    // a half-inserted entry behind.
    conns.streams.lock().unwrap_or_else(|p| p.into_inner())
}

/// Forgets a connection and wakes an accept loop waiting for room.
fn release(conns: &Live, id: u64) {
    lock(conns).remove(&id);
    conns.changed.notify_all();
}

pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    connections: Connections,
    accept_thread: Option<JoinHandle<()>>,
}

/// Removes a socket left behind by an earlier run. Anything that is not a
/// socket is left alone and reported: we never delete a file we did not make.
fn remove_stale(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists and is not a socket",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Binds and listens under a temporary name, then renames the socket into
/// place: a core (or a test) that sees `path` exist and connects at once
/// must never hit the moment between `bind` and `listen`, where a connect
/// is refused and osquery would count a failed ping. Falls back to binding
/// `path` directly when the temporary name would not fit in `sun_path`.
fn bind_listening(path: &Path) -> io::Result<UnixListener> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    match UnixListener::bind(&tmp) {
        Ok(listener) => {
            if let Err(e) = std::fs::rename(&tmp, path) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            Ok(listener)
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => UnixListener::bind(path),
        Err(e) => Err(e),
    }
}

impl Server {
    /// Binds `path` and starts accepting in a background thread.
    pub fn start<H>(path: PathBuf, handler: H) -> io::Result<Server>
    where
        H: StreamingHandler + Send + Sync + 'static,
    {
        Server::start_capped(path, handler, MAX_CONNECTIONS)
    }

    /// [`Server::start`] with another connection cap (tests use a small one).
    fn start_capped<H>(path: PathBuf, handler: H, cap: usize) -> io::Result<Server>
    where
        H: StreamingHandler + Send + Sync + 'static,
    {
        remove_stale(&path)?;
        let listener = bind_listening(&path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections: Connections = Arc::default();
        let processor = Arc::new(Processor::new(handler));
        let accept_thread = {
            let (stop, connections) = (stop.clone(), connections.clone());
            thread::Builder::new()
                .name("osquery-accept".into())
                .spawn(move || accept_loop(listener, processor, stop, connections, cap))?
        };
        Ok(Server {
            path,
            stop,
            connections,
            accept_thread: Some(accept_thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, hangs up every connection and removes the socket.
    /// A thread still inside a `generate` finishes on its own; its reply
    /// goes nowhere. Nothing is left that needs flushing.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // An accept loop waiting for room sees the flag: taking the lock
        // first means it is either before its check or inside `wait`.
        drop(lock(&self.connections));
        self.connections.changed.notify_all();
        // A blocking accept has no timeout: one last connection of our own
        // wakes it to see the flag. If even that fails (someone removed the
        // file), the thread stays parked in accept and dies with the process.
        let woke = UnixStream::connect(&self.path).is_ok();
        if let Some(handle) = self.accept_thread.take() {
            if woke {
                let _ = handle.join();
            }
        }
        for (_, conn) in lock(&self.connections).drain() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        self.connections.changed.notify_all();
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                warn!("cannot remove {}: {e}", self.path.display());
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.accept_thread.is_some() {
            self.shutdown();
        }
    }
}

fn accept_loop<H>(
    listener: UnixListener,
    processor: Arc<Processor<H>>,
    stop: Arc<AtomicBool>,
    connections: Connections,
    cap: usize,
) where
    H: StreamingHandler + Send + Sync + 'static,
{
    let next_id = AtomicU64::new(0);
    loop {
        // At the cap, wait for room before accepting: the next peer waits
        // in the backlog instead of being hung up on.
        {
            let mut conns = lock(&connections);
            while conns.len() >= cap && !stop.load(Ordering::SeqCst) {
                conns = connections
                    .changed
                    .wait(conns)
                    .unwrap_or_else(|p| p.into_inner());
            }
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                warn!("accept failed: {e}");
                // EMFILE and friends: give the system a moment.
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let stream = Arc::new(stream);
        lock(&connections).insert(id, stream.clone());
        let (processor, conns) = (processor.clone(), connections.clone());
        let spawned = thread::Builder::new()
            .name(format!("osquery-conn-{id}"))
            .spawn(move || {
                serve_connection(id, &stream, &*processor);
                drop(stream);
                release(&conns, id);
            });
        if let Err(e) = spawned {
            warn!("cannot start a connection thread: {e}");
            release(&connections, id);
        }
    }
}

/// Serves one connection's requests in order until EOF or the first error.
/// Reads and writes share the one descriptor (`&UnixStream` is both `Read`
/// and `Write`).
fn serve_connection(id: u64, stream: &UnixStream, processor: &dyn TProcessor) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut input = GuardedInputProtocol::new(TBufferedReadTransport::new(stream));
    let mut output = TBinaryOutputProtocol::new(TBufferedWriteTransport::new(stream), true);
    loop {
        let result = processor.process(&mut input, &mut output);
        // The generated processor answers a malformed request with an
        // exception and reports success; the guard knows better.
        match (result, input.failure()) {
            (Ok(()), None) => continue,
            (_, Some(f)) if f.eof => debug!("connection {id}: closed by peer ({})", f.message),
            (_, Some(f)) => warn!("connection {id}: bad request ({}); closing it", f.message),
            (Err(thrift::Error::Transport(e)), None) => debug!("connection {id}: {e}"),
            (Err(e), None) => warn!("connection {id}: {e}; closing it"),
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::super::bindings::{
        ExtensionPluginRequest, ExtensionResponse, ExtensionStatus, ExtensionSyncClient,
        ExtensionSyncHandler, TExtensionSyncClient,
    };
    use super::*;
    use std::io::Write;

    struct Pong;
    impl ExtensionSyncHandler for Pong {
        fn handle_ping(&self) -> thrift::Result<ExtensionStatus> {
            Ok(ExtensionStatus::new(0, "OK".to_string(), 1))
        }
        fn handle_call(
            &self,
            _: String,
            _: String,
            _: ExtensionPluginRequest,
        ) -> thrift::Result<ExtensionResponse> {
            Ok(ExtensionResponse::default())
        }
        fn handle_shutdown(&self) -> thrift::Result<()> {
            Ok(())
        }
    }
    impl StreamingHandler for Pong {}

    fn ping(path: &Path) -> thrift::Result<ExtensionStatus> {
        let stream = UnixStream::connect(path)?;
        let read = stream.try_clone()?;
        let mut client = ExtensionSyncClient::new(
            GuardedInputProtocol::new(TBufferedReadTransport::new(read)),
            TBinaryOutputProtocol::new(TBufferedWriteTransport::new(stream), true),
        );
        client.ping()
    }

    #[test]
    fn serves_concurrently_and_stops_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ext.sock.1");
        // A stale socket from an earlier run is replaced.
        drop(UnixListener::bind(&path).unwrap());
        let server = Server::start(path.clone(), Pong).unwrap();
        // A connection stuck mid-request does not hold up others.
        let mut stuck = UnixStream::connect(&path).unwrap();
        stuck.write_all(&[0x80, 0x01, 0x00, 0x01, 0, 0]).unwrap();
        let mut garbage = UnixStream::connect(&path).unwrap();
        garbage.write_all(b"garbage!").unwrap();
        for _ in 0..3 {
            assert_eq!(ping(&path).unwrap().code, Some(0));
        }
        server.stop();
        assert!(!path.exists());
        assert!(ping(&path).is_err());
    }

    /// Found by tests/extension_abuse.rs: past the cap (then 128) a new
    /// connection was closed at once, so 200 concurrent calls failed and a
    /// ping among them would have deregistered us. Now it waits its turn.
    #[test]
    fn connections_past_the_cap_wait_instead_of_being_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ext.sock.1");
        let server = Server::start_capped(path.clone(), Pong, 2).unwrap();
        let idle = [
            UnixStream::connect(&path).unwrap(),
            UnixStream::connect(&path).unwrap(),
        ];
        // Both idle connections are being served before the third comes.
        std::thread::sleep(Duration::from_millis(100));
        let third = {
            let path = path.clone();
            thread::spawn(move || ping(&path).map(|s| s.code))
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(!third.is_finished(), "served past the cap");
        drop(idle);
        assert_eq!(third.join().unwrap().unwrap(), Some(0));
        // Stopping while at the cap does not hang.
        let _full = [
            UnixStream::connect(&path).unwrap(),
            UnixStream::connect(&path).unwrap(),
        ];
        std::thread::sleep(Duration::from_millis(100));
        server.stop();
        assert!(!path.exists());
    }

    #[test]
    fn never_deletes_what_is_not_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ext.sock.1");
        std::fs::write(&path, "precious").unwrap();
        assert!(Server::start(path.clone(), Pong).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }
}
