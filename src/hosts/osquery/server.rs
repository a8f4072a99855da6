//! The extension's own socket, `<socket>.<uuid>`. osquery pings before every
//! call and drops an extension after one failed ping, so a slow `generate`
//! must never hold up a ping: each connection gets its own thread and loops
//! over its requests until the peer hangs up. A connection that sends
//! anything the guarded protocol rejects is closed; the others carry on.
//!
//! Connections are bounded three ways ([`Limits`], figures in
//! docs/reliability.md): a connection may wait at most `idle` for its next
//! request and `partial` for the rest of a request it has begun; past `cap`
//! live connections, each new one evicts the connection that has waited on
//! its peer the longest (idle or half-sent; never one whose call is being
//! worked on); and when none can be evicted, `reserve` slots beyond the cap
//! still take new connections, so a ping gets through while every slot is
//! busy. Only past `cap + reserve` busy connections does a new one wait in
//! the kernel's listen backlog. Each connection costs one file descriptor
//! and one thread.
//!
//! Stopping never connects to the socket path (after a restart of the core
//! it may be another process's socket), and removes the path only while it
//! is still the socket this server bound.
use super::protocol::GuardedInputProtocol;
use super::reply::{Processor, StreamingHandler};
use log::{debug, warn};
use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use thrift::protocol::TBinaryOutputProtocol;
use thrift::server::TProcessor;
use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport};

/// How a server bounds its connections; see the module doc.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once before the longest-waiting is evicted.
    /// Far above what an osquery core opens (a few: its pings and one per
    /// running query), high enough for 200 concurrent calls, and with the
    /// reserve well inside the usual 1024 open-file limit.
    pub cap: usize,
    /// Slots past `cap`, used only while no live connection can be evicted
    /// (every one is inside a call).
    pub reserve: usize,
    /// Longest wait for the first byte of the next request.
    pub idle: Duration,
    /// Longest wait for the rest of a request once its first byte came:
    /// a 128 MiB request (the largest the protocol takes) needs well
    /// under a second on a local socket.
    pub partial: Duration,
    /// A waiting connection is evicted for a new one before the reserve is
    /// used only once it has waited this long (a fifth of it once the
    /// reserve is full); younger ones are peers about to send.
    pub evict_after: Duration,
}

/// The limits the extension serves with.
pub const LIMITS: Limits = Limits {
    cap: 512,
    reserve: 64,
    idle: Duration::from_secs(20),
    partial: Duration::from_secs(10),
    evict_after: Duration::from_millis(500),
};

/// A peer that stops reading its replies must not pin a thread forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the accept loop looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(100);

/// One live connection: its stream (shared by its thread and the accept
/// loop, which may evict it) and since when its thread has been blocked on
/// the peer.
struct Conn {
    stream: UnixStream,
    /// Milliseconds since the server's epoch, plus one, at which the
    /// thread began waiting on a read or a write; 0 while it works.
    waiting_since: AtomicU64,
}

impl Conn {
    fn waiting(&self) -> Option<u64> {
        match self.waiting_since.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t - 1),
        }
    }
}

/// The live connections, kept so a stop can hang them all up and the
/// accept loop can evict, and a condition signalled whenever one ends (or
/// the server stops).
struct Live {
    streams: Mutex<HashMap<u64, Arc<Conn>>>,
    changed: Condvar,
    epoch: Instant,
}

impl Live {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }
}

type Connections = Arc<Live>;

fn lock(conns: &Live) -> MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
    // A poisoned map is still a valid map: a panicking thread cannot leave
    // a half-inserted entry behind.
    conns.streams.lock().unwrap_or_else(|p| p.into_inner())
}

/// Forgets a connection (if an eviction did not already) and wakes an
/// accept loop waiting for room.
fn release(conns: &Live, id: u64) {
    lock(conns).remove(&id);
    conns.changed.notify_all();
}

pub struct Server {
    path: PathBuf,
    /// The socket file bound at `path`, as [`identity_of`] tells it.
    identity: Identity,
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

/// A socket file as device, inode and change time (set when it is
/// created, to the nanosecond): a freed inode number is often given to the
/// next file at once, so another instance's socket at our path may carry
/// ours.
type Identity = (u64, u64, i64, i64);

/// The identity of what `path` names now, if anything.
fn identity_of(path: &Path) -> Option<Identity> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
}

impl Server {
    /// Binds `path` and starts accepting in a background thread.
    pub fn start<H>(path: PathBuf, handler: H) -> io::Result<Server>
    where
        H: StreamingHandler + Send + Sync + 'static,
    {
        Server::start_with(path, handler, LIMITS)
    }

    /// [`Server::start`] with other limits (tests use small ones).
    fn start_with<H>(path: PathBuf, handler: H, limits: Limits) -> io::Result<Server>
    where
        H: StreamingHandler + Send + Sync + 'static,
    {
        remove_stale(&path)?;
        let listener = bind_listening(&path)?;
        // Accepting never blocks (the loop polls first); accepted streams
        // are blocking all the same, as `accept4` does not pass the flag on.
        listener.set_nonblocking(true)?;
        let identity = identity_of(&path).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "socket vanished after binding")
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections: Connections = Arc::new(Live {
            streams: Mutex::default(),
            changed: Condvar::new(),
            epoch: Instant::now(),
        });
        let processor = Arc::new(Processor::new(handler));
        let accept_thread = {
            let (stop, connections) = (stop.clone(), connections.clone());
            thread::Builder::new()
                .name("osquery-accept".into())
                .spawn(move || accept_loop(listener, processor, stop, connections, limits))?
        };
        Ok(Server {
            path,
            identity,
            stop,
            connections,
            accept_thread: Some(accept_thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `path` still names the socket this server bound: another
    /// process given the same uuid by a restarted core replaces it.
    pub fn still_ours(&self) -> bool {
        identity_of(&self.path) == Some(self.identity)
    }

    /// Stops accepting, hangs up every connection and removes the socket if
    /// it is still ours. A thread still inside a `generate` finishes on its
    /// own; its reply goes nowhere. Nothing is left that needs flushing.
    /// Returns within about [`ACCEPT_POLL`] whatever the connections do.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // An accept loop waiting for room sees the flag: taking the lock
        // first means it is either before its check or inside `wait`.
        drop(lock(&self.connections));
        self.connections.changed.notify_all();
        // The accept loop polls with a timeout, so it sees the flag by
        // itself; nothing ever connects to `path`, which may no longer be
        // ours.
        if let Some(handle) = self.accept_thread.take() {
            let _ = handle.join();
        }
        for (_, conn) in lock(&self.connections).drain() {
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
        self.connections.changed.notify_all();
        if !self.still_ours() {
            debug!(
                "{} is no longer our socket; leaving it",
                self.path.display()
            );
            return;
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

/// Whether `listener` has a connection to accept within [`ACCEPT_POLL`].
fn ready(listener: &UnixListener) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: i64::from(ACCEPT_POLL.subsec_nanos()),
    };
    let mut fds = [PollFd::new(listener, PollFlags::IN)];
    matches!(poll(&mut fds, Some(&timeout)), Ok(n) if n > 0)
}

/// Makes room for one more connection: past the cap, evicts the
/// connection that has waited on its peer the longest, if it has waited
/// `evict_after` (a fifth of it once the reserve is full too).
/// Returns false while there is no room and nothing to evict.
fn make_room(conns: &mut HashMap<u64, Arc<Conn>>, now_ms: u64, limits: &Limits) -> bool {
    if conns.len() < limits.cap {
        return true;
    }
    let full = conns.len() >= limits.cap + limits.reserve;
    // With the reserve full, a fifth of the wait is enough; never none:
    // a connection accepted a moment ago is a peer about to send, and
    // hanging up on it for the next newcomer only churns.
    let min_wait = if full {
        limits.evict_after / 5
    } else {
        limits.evict_after
    };
    let min_wait = u64::try_from(min_wait.as_millis()).unwrap_or(u64::MAX);
    let oldest = conns
        .iter()
        .filter_map(|(id, c)| c.waiting().map(|since| (since, *id)))
        .filter(|(since, _)| now_ms.saturating_sub(*since) >= min_wait)
        .min();
    match oldest {
        Some((since, id)) => {
            if let Some(conn) = conns.remove(&id) {
                debug!(
                    "connection {id}: evicted after waiting {} ms on its peer, {} live",
                    now_ms.saturating_sub(since),
                    conns.len()
                );
                // Its thread's read or write returns at once and it ends.
                let _ = conn.stream.shutdown(Shutdown::Both);
            }
            true
        }
        None => !full,
    }
}

fn accept_loop<H>(
    listener: UnixListener,
    processor: Arc<Processor<H>>,
    stop: Arc<AtomicBool>,
    connections: Connections,
    limits: Limits,
) where
    H: StreamingHandler + Send + Sync + 'static,
{
    let mut next_id = 0u64;
    while !stop.load(Ordering::SeqCst) {
        // With the reserve full of working connections, wait for room
        // before accepting: the next peer waits in the backlog.
        {
            let mut conns = lock(&connections);
            while !make_room(&mut conns, connections.now_ms(), &limits)
                && !stop.load(Ordering::SeqCst)
            {
                conns = connections
                    .changed
                    .wait_timeout(conns, ACCEPT_POLL)
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
        }
        if stop.load(Ordering::SeqCst) || !ready(&listener) {
            continue;
        }
        let stream = match listener
            .accept()
            .and_then(|(s, _)| s.set_nonblocking(false).map(|()| s))
        {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                warn!("accept failed: {e}");
                // EMFILE and friends: give the system a moment.
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let id = next_id;
        next_id += 1;
        let conn = Arc::new(Conn {
            stream,
            waiting_since: AtomicU64::new(0),
        });
        lock(&connections).insert(id, conn.clone());
        let (processor, conns) = (processor.clone(), connections.clone());
        let spawned = thread::Builder::new()
            .name(format!("osquery-conn-{id}"))
            .spawn(move || {
                serve_connection(id, &conn, &conns, &*processor, &limits);
                drop(conn);
                release(&conns, id);
            });
        if let Err(e) = spawned {
            warn!("cannot start a connection thread: {e}");
            release(&connections, id);
        }
    }
}

/// Where a connection is between requests, for its read deadline.
#[derive(Clone, Copy)]
enum Phase {
    /// Waiting for the first byte of a request, since then.
    Idle(Instant),
    /// A request has begun; it must be whole by then.
    Partial(Instant),
}

/// The connection's input: every read is bounded by the phase's deadline
/// and marks the connection as waiting on its peer while it blocks.
struct PeerReader<'c> {
    conn: &'c Conn,
    live: &'c Live,
    phase: &'c Cell<Phase>,
    limits: &'c Limits,
}

impl Read for PeerReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (deadline, limit, what) = match self.phase.get() {
            Phase::Idle(since) => (since + self.limits.idle, self.limits.idle, "idle for"),
            Phase::Partial(by) => (by, self.limits.partial, "request incomplete after"),
        };
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, format!("{what} {limit:?}"));
        let remaining = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(timed_out)?;
        self.conn.stream.set_read_timeout(Some(remaining))?;
        self.conn
            .waiting_since
            .store(self.live.now_ms() + 1, Ordering::Relaxed);
        let got = (&self.conn.stream).read(buf);
        self.conn.waiting_since.store(0, Ordering::Relaxed);
        match got {
            Ok(n) => {
                if n > 0 && matches!(self.phase.get(), Phase::Idle(_)) {
                    self.phase
                        .set(Phase::Partial(Instant::now() + self.limits.partial));
                }
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(timed_out())
            }
            Err(e) => Err(e),
        }
    }
}

/// The connection's output: marks the connection as waiting on its peer
/// while a write blocks (a peer that does not read its replies).
struct PeerWriter<'c> {
    conn: &'c Conn,
    live: &'c Live,
}

impl Write for PeerWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.conn
            .waiting_since
            .store(self.live.now_ms() + 1, Ordering::Relaxed);
        let written = (&self.conn.stream).write(buf);
        self.conn.waiting_since.store(0, Ordering::Relaxed);
        written
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Serves one connection's requests in order until EOF, the first error,
/// a timeout or an eviction.
fn serve_connection(
    id: u64,
    conn: &Conn,
    live: &Live,
    processor: &dyn TProcessor,
    limits: &Limits,
) {
    let _ = conn.stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let phase = Cell::new(Phase::Idle(Instant::now()));
    let reader = PeerReader {
        conn,
        live,
        phase: &phase,
        limits,
    };
    let mut input = GuardedInputProtocol::new(TBufferedReadTransport::new(reader));
    let mut output = TBinaryOutputProtocol::new(
        TBufferedWriteTransport::new(PeerWriter { conn, live }),
        true,
    );
    loop {
        phase.set(Phase::Idle(Instant::now()));
        let result = processor.process(&mut input, &mut output);
        // The generated processor answers a malformed request with an
        // exception and reports success; the guard knows better.
        match (result, input.failure()) {
            (Ok(()), None) => continue,
            (_, Some(f)) if f.eof => debug!("connection {id}: closed by peer ({})", f.message),
            (_, Some(f)) if f.timed_out => debug!("connection {id}: {}; closing it", f.message),
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

    const SMALL: Limits = Limits {
        cap: 2,
        reserve: 1,
        idle: Duration::from_secs(30),
        partial: Duration::from_secs(30),
        evict_after: Duration::from_secs(30),
    };

    /// A handler whose `call` blocks until released: a connection inside
    /// a call is working, never evictable. Counts the calls inside.
    struct Busy(Arc<(Mutex<bool>, Condvar)>, Arc<AtomicU64>);
    impl ExtensionSyncHandler for Busy {
        fn handle_ping(&self) -> thrift::Result<ExtensionStatus> {
            Ok(ExtensionStatus::new(0, "OK".to_string(), 1))
        }
        fn handle_call(
            &self,
            _: String,
            _: String,
            _: ExtensionPluginRequest,
        ) -> thrift::Result<ExtensionResponse> {
            let (lock, cv) = &*self.0;
            self.1.fetch_add(1, Ordering::SeqCst);
            let mut released = lock.lock().unwrap();
            while !*released {
                released = cv.wait(released).unwrap();
            }
            Ok(ExtensionResponse::default())
        }
        fn handle_shutdown(&self) -> thrift::Result<()> {
            Ok(())
        }
    }
    impl StreamingHandler for Busy {}

    fn busy_call(path: &Path) -> thrift::Result<ExtensionResponse> {
        let stream = UnixStream::connect(path)?;
        let read = stream.try_clone()?;
        let mut client = ExtensionSyncClient::new(
            GuardedInputProtocol::new(TBufferedReadTransport::new(read)),
            TBinaryOutputProtocol::new(TBufferedWriteTransport::new(stream), true),
        );
        client.call("table".into(), "t".into(), Default::default())
    }

    /// Found by tests/extension_abuse.rs: past the cap (then 128) a new
    /// connection was closed at once, so 200 concurrent calls failed and a
    /// ping among them would have deregistered us. Past the cap and the
    /// reserve, with every connection inside a call, it waits its turn.
    #[test]
    fn connections_past_cap_and_reserve_wait_instead_of_being_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ext.sock.1");
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let inside = Arc::new(AtomicU64::new(0));
        let server =
            Server::start_with(path.clone(), Busy(gate.clone(), inside.clone()), SMALL).unwrap();
        let calls: Vec<_> = (0..3)
            .map(|_| {
                let path = path.clone();
                thread::spawn(move || busy_call(&path).map(|_| ()))
            })
            .collect();
        // All three calls are inside the handler (two slots and the
        // reserve) before the ping comes.
        let t = Instant::now();
        while inside.load(Ordering::SeqCst) < 3 {
            assert!(t.elapsed() < Duration::from_secs(20), "calls never arrived");
            std::thread::sleep(Duration::from_millis(10));
        }
        let fourth = {
            let path = path.clone();
            thread::spawn(move || ping(&path).map(|s| s.code))
        };
        std::thread::sleep(Duration::from_millis(300));
        if fourth.is_finished() {
            let live: Vec<(u64, Option<u64>)> = lock(&server.connections)
                .iter()
                .map(|(id, c)| (*id, c.waiting()))
                .collect();
            panic!(
                "served past cap and reserve: {:?}; live {live:?}, now {}",
                fourth.join(),
                server.connections.now_ms()
            );
        }
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        assert_eq!(fourth.join().unwrap().unwrap(), Some(0));
        for c in calls {
            c.join().unwrap().unwrap();
        }
        server.stop();
        assert!(!path.exists());
    }

    /// Idle and half-sent connections past the cap are evicted, oldest
    /// first, so a fresh ping is answered at once.
    #[test]
    fn idle_connections_past_the_cap_are_evicted_for_a_ping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ext.sock.1");
        let limits = Limits {
            evict_after: Duration::ZERO,
            ..SMALL
        };
        let server = Server::start_with(path.clone(), Pong, limits).unwrap();
        let mut held = Vec::new();
        for i in 0..10 {
            let mut s = UnixStream::connect(&path).unwrap();
            if i % 2 == 1 {
                s.write_all(&[0x80, 0x01, 0x00, 0x01, 0, 0]).unwrap();
            }
            held.push(s);
            std::thread::sleep(Duration::from_millis(20));
        }
        let t = Instant::now();
        assert_eq!(ping(&path).unwrap().code, Some(0));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // The oldest were hung up on; the newest is still open.
        let mut buf = [0u8; 1];
        held[0]
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(held[0].read(&mut buf).unwrap(), 0, "oldest not evicted");
        server.stop();
    }

    #[test]
    fn idle_and_partial_connections_time_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ext.sock.1");
        let limits = Limits {
            cap: 16,
            idle: Duration::from_millis(400),
            partial: Duration::from_millis(400),
            ..SMALL
        };
        let server = Server::start_with(path.clone(), Pong, limits).unwrap();
        let mut idle = UnixStream::connect(&path).unwrap();
        let mut partial = UnixStream::connect(&path).unwrap();
        // A slow sender that keeps dribbling bytes still hits the bound
        // for the whole request.
        let t = Instant::now();
        for _ in 0..4 {
            let _ = partial.write_all(&[0x80]);
            std::thread::sleep(Duration::from_millis(150));
        }
        let mut buf = [0u8; 16];
        for s in [&mut idle, &mut partial] {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            assert_eq!(s.read(&mut buf).unwrap(), 0);
        }
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        // A connection that keeps calling is never idle for long.
        let stream = UnixStream::connect(&path).unwrap();
        let read = stream.try_clone().unwrap();
        let mut client = ExtensionSyncClient::new(
            GuardedInputProtocol::new(TBufferedReadTransport::new(read)),
            TBinaryOutputProtocol::new(TBufferedWriteTransport::new(stream), true),
        );
        for _ in 0..4 {
            assert_eq!(client.ping().unwrap().code, Some(0));
            std::thread::sleep(Duration::from_millis(200));
        }
        server.stop();
    }

    /// Stopping never connects to the path, and leaves a socket that is no
    /// longer ours alone.
    #[test]
    fn stop_leaves_a_socket_that_replaced_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ext.sock.1");
        let server = Server::start(path.clone(), Pong).unwrap();
        assert!(server.still_ours());
        std::fs::remove_file(&path).unwrap();
        let theirs = UnixListener::bind(&path).unwrap();
        theirs.set_nonblocking(true).unwrap();
        assert!(!server.still_ours());
        let t = Instant::now();
        server.stop();
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(path.exists(), "removed a socket that is not ours");
        assert!(
            theirs.accept().is_err(),
            "connected to a socket that is not ours"
        );
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
