//! The extension's own socket, `<socket>.<uuid>`. osquery pings before every
//! call and drops an extension after one failed ping, so a slow `generate`
//! must never hold up a ping: each connection gets its own thread and loops
//! over its requests until the peer hangs up. A connection that sends
//! anything the guarded protocol rejects is closed; the others carry on.
use super::bindings::{ExtensionSyncHandler, ExtensionSyncProcessor};
use super::protocol::GuardedInputProtocol;
use log::{debug, warn};
use std::collections::HashMap;
use std::io;
use std::net::Shutdown;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;
use thrift::protocol::TBinaryOutputProtocol;
use thrift::server::TProcessor;
use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport};

/// Concurrent connections served; past this a new connection is closed at
/// once rather than queued, so a flood cannot exhaust threads.
pub const MAX_CONNECTIONS: usize = 128;

/// A peer that stops reading its replies must not pin a thread forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// The live connections, kept so a stop can hang them all up.
type Connections = Arc<Mutex<HashMap<u64, UnixStream>>>;

fn lock(conns: &Connections) -> MutexGuard<'_, HashMap<u64, UnixStream>> {
    // A poisoned map is still a valid map: a panicking thread cannot leave
    // a half-inserted entry behind.
    conns.lock().unwrap_or_else(|p| p.into_inner())
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

impl Server {
    /// Binds `path` and starts accepting in a background thread.
    pub fn start<H>(path: PathBuf, handler: H) -> io::Result<Server>
    where
        H: ExtensionSyncHandler + Send + Sync + 'static,
    {
        remove_stale(&path)?;
        let listener = UnixListener::bind(&path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections: Connections = Arc::default();
        let processor = Arc::new(ExtensionSyncProcessor::new(handler));
        let accept_thread = {
            let (stop, connections) = (stop.clone(), connections.clone());
            thread::Builder::new()
                .name("osquery-accept".into())
                .spawn(move || accept_loop(listener, processor, stop, connections))?
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
    processor: Arc<ExtensionSyncProcessor<H>>,
    stop: Arc<AtomicBool>,
    connections: Connections,
) where
    H: ExtensionSyncHandler + Send + Sync + 'static,
{
    let next_id = AtomicU64::new(0);
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                warn!("accept failed: {e}");
                // EMFILE and friends: give the system a moment.
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut conns = lock(&connections);
            if conns.len() >= MAX_CONNECTIONS {
                warn!("{MAX_CONNECTIONS} connections already open; closing a new one");
                continue;
            }
            match stream.try_clone() {
                Ok(clone) => {
                    conns.insert(id, clone);
                }
                Err(e) => {
                    warn!("cannot track connection: {e}");
                    continue;
                }
            }
        }
        let (processor, conns) = (processor.clone(), connections.clone());
        let spawned = thread::Builder::new()
            .name(format!("osquery-conn-{id}"))
            .spawn(move || {
                serve_connection(id, stream, &*processor);
                lock(&conns).remove(&id);
            });
        if let Err(e) = spawned {
            warn!("cannot start a connection thread: {e}");
            lock(&connections).remove(&id);
        }
    }
}

/// Serves one connection's requests in order until EOF or the first error.
fn serve_connection(id: u64, stream: UnixStream, processor: &dyn TProcessor) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let read_half = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            warn!("connection {id}: cannot split the socket: {e}");
            return;
        }
    };
    let mut input = GuardedInputProtocol::new(TBufferedReadTransport::new(read_half));
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
        TExtensionSyncClient,
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

    #[test]
    fn never_deletes_what_is_not_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ext.sock.1");
        std::fs::write(&path, "precious").unwrap();
        assert!(Server::start(path.clone(), Pong).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }
}
