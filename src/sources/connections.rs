//! What a process is connected to, as `/proc` shows it: what its standard
//! descriptors 0–2 are (a terminal, a pipe, a file, a socket with its
//! protocol), the peers of its established TCP and connected UDP sockets,
//! and the ports it listens on. A payload D-Bus activation started whose
//! stdin and stdout are a TCP connection is a reverse shell; a process
//! table shows that only if someone looks at the descriptors.
//!
//! Sockets are matched by inode in the process's own `net/{tcp,tcp6,udp,
//! udp6,unix}` (`/proc/<pid>/net` is its network namespace's view), each
//! namespace's tables read once per query and kept in a [`NetCache`]. The
//! tables of a namespace are read only when one of its processes holds a
//! socket: most bus children hold none, and a busy host's `net/tcp` is
//! megabytes.
//!
//! Bounds, so that no process makes a query slow: at most
//! [`FD_CAP`] descriptors of a process are looked at, at most
//! [`NET_CAP`] bytes of each socket table are read, and at most
//! [`PEER_CAP`] peers and listeners are kept; whatever was cut short is
//! said in [`Connections::notes`].
//!
//! Parsing the socket tables is `procfs-core`'s (kept by the `procfs`
//! project, parsers over any reader, no I/O of its own): it handles the
//! host-order hex words of IPv4 and IPv6 addresses that are easy to get
//! wrong. The `procfs` crate's own readers are not used: they open
//! `/proc/<pid>/net/*` without a size bound and follow their own notion of
//! the proc root, where every read here goes through [`Proc`]'s directory
//! (`--proc` for dead boxes and fixtures) and is capped.
use crate::sources::proc::{Proc, ProcError};
use procfs_core::net::{TcpNetEntries, TcpState, UdpNetEntries, UnixNetEntries};
use procfs_core::{ExplicitSystemInfo, FromBufRead, FromBufReadSI};
use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::path::Path;

/// Descriptors of one process looked at, standard ones included. Real
/// services hold tens; a process holding more is listed only this far (its
/// directory is read no further), and says so in the notes.
pub const FD_CAP: usize = 1024;
/// Bytes read of one socket table (`net/tcp`, …): some 100,000 sockets.
/// Past this the rest of the table is not read, and the notes say so.
pub const NET_CAP: u64 = 16 * 1024 * 1024;
/// Peers (and, apart, listeners) kept per process.
pub const PEER_CAP: usize = 32;

/// The socket tables of a namespace, in the order they are searched.
const TABLES: [Proto; 5] = [
    Proto::Tcp,
    Proto::Tcp6,
    Proto::Udp,
    Proto::Udp6,
    Proto::Unix,
];

/// A socket table of `/proc/net`, and the protocol word `stdio` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Tcp6,
    Udp,
    Udp6,
    Unix,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Tcp6 => "tcp6",
            Proto::Udp => "udp",
            Proto::Udp6 => "udp6",
            Proto::Unix => "unix",
        }
    }

    fn is_tcp(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Tcp6)
    }
}

/// One socket of a namespace's tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub proto: Proto,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    /// TCP established, or UDP connected (a peer set with `connect`).
    pub connected: bool,
    /// TCP listening, or UDP bound to a port with no peer.
    pub listening: bool,
}

/// A namespace's sockets by inode, and what could not be read of them.
#[derive(Debug, Default)]
pub struct SocketTable {
    by_inode: HashMap<u64, Socket>,
    notes: Vec<String>,
}

impl SocketTable {
    pub fn get(&self, inode: u64) -> Option<&Socket> {
        self.by_inode.get(&inode)
    }
}

/// What a descriptor refers to, from its link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fd {
    /// Not open.
    Closed,
    /// The link could not be read (permission): unknown.
    Unknown,
    Null,
    Tty(String),
    Pipe,
    File(String),
    /// A socket, with its protocol when one of the tables holds it (a
    /// netlink or packet socket, or one past [`NET_CAP`], has none).
    Socket(u64, Option<Proto>),
    /// Another kernel object: `anon_inode:[eventfd]` and the like.
    Other(String),
}

impl Fd {
    /// Classifies a descriptor's link target (`/proc/<pid>/fd/N`).
    pub fn from_link(target: &str) -> Fd {
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse().ok())
        {
            return Fd::Socket(inode, None);
        }
        if target.starts_with("pipe:[") {
            return Fd::Pipe;
        }
        if target == "/dev/null" {
            return Fd::Null;
        }
        if target.starts_with("/dev/pts/")
            || target.starts_with("/dev/tty")
            || target == "/dev/console"
            || target == "/dev/ptmx"
        {
            return Fd::Tty(target.to_string());
        }
        if target.starts_with('/') {
            return Fd::File(target.to_string());
        }
        Fd::Other(target.to_string())
    }

    /// The word `stdio` shows: `tty:/dev/pts/1`, `pipe`, `file:/path`,
    /// `socket:tcp`, `null`, `closed`, `unknown`, `anon_inode:[eventfd]`.
    pub fn render(&self) -> String {
        match self {
            Fd::Closed => "closed".into(),
            Fd::Unknown => "unknown".into(),
            Fd::Null => "null".into(),
            Fd::Tty(t) => format!("tty:{t}"),
            Fd::Pipe => "pipe".into(),
            Fd::File(p) => format!("file:{p}"),
            Fd::Socket(_, Some(p)) => format!("socket:{}", p.as_str()),
            Fd::Socket(_, None) => "socket:other".into(),
            Fd::Other(o) => o.clone(),
        }
    }
}

/// What one process is connected to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connections {
    /// Descriptors 0, 1 and 2.
    pub stdio: Vec<Fd>,
    /// Peers of established TCP and connected UDP sockets, sorted, at most
    /// [`PEER_CAP`].
    pub remote: Vec<SocketAddr>,
    /// Listening TCP and bound UDP sockets: `tcp:0.0.0.0:22`.
    pub listening: Vec<String>,
    /// What was cut short or could not be read.
    pub notes: Vec<String>,
}

impl Connections {
    /// `0=socket:tcp 1=socket:tcp 2=null`.
    pub fn stdio_text(&self) -> String {
        self.stdio
            .iter()
            .enumerate()
            .map(|(i, fd)| format!("{i}={}", fd.render()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn remote_text(&self) -> String {
        join(self.remote.iter().map(SocketAddr::to_string))
    }

    pub fn listening_text(&self) -> String {
        self.listening.join(" ")
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(" ")
}

/// The socket tables read in one query, by network namespace.
#[derive(Debug, Default)]
pub struct NetCache {
    by_ns: HashMap<NsKey, SocketTable>,
}

/// A network namespace: its inode from `ns/net`, or, where that link is
/// missing (a fixture tree), the process itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum NsKey {
    Ns(u64),
    Pid(u32),
}

impl NetCache {
    fn table(&mut self, proc: &Proc, pid: u32) -> &SocketTable {
        let key = match read_link(proc, pid, "ns/net")
            .ok()
            .and_then(|l| parse_ns_link(&l))
        {
            Some(ns) => NsKey::Ns(ns),
            None => NsKey::Pid(pid),
        };
        self.by_ns
            .entry(key)
            .or_insert_with(|| read_tables(&proc.dir().join(pid.to_string()).join("net")))
    }
}

/// `net:[4026531840]` → 4026531840.
fn parse_ns_link(link: &str) -> Option<u64> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

fn read_link(proc: &Proc, pid: u32, file: &'static str) -> Result<String, std::io::Error> {
    let path = proc.dir().join(pid.to_string()).join(file);
    std::fs::read_link(path).map(|t| t.to_string_lossy().into_owned())
}

/// Reads what a process is connected to. `Err` only when it vanished.
pub fn read(proc: &Proc, pid: u32, cache: &mut NetCache) -> Result<Connections, ProcError> {
    let mut out = Connections::default();
    let fd_dir = proc.dir().join(pid.to_string()).join("fd");
    let mut stdio = Vec::with_capacity(3);
    for n in 0..3 {
        stdio.push(match std::fs::read_link(fd_dir.join(n.to_string())) {
            Ok(t) => Fd::from_link(&t.to_string_lossy()),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if !proc.dir().join(pid.to_string()).exists() {
                    return Err(ProcError::Vanished { pid });
                }
                Fd::Closed
            }
            Err(_) => Fd::Unknown,
        });
    }
    // Every socket the process holds, standard ones included, bounded.
    let mut sockets = Vec::new();
    match std::fs::read_dir(&fd_dir) {
        Ok(entries) => {
            for (seen, entry) in entries.filter_map(Result::ok).enumerate() {
                if seen == FD_CAP {
                    out.notes.push(format!(
                        "more than {FD_CAP} descriptors: only the first {FD_CAP} looked at"
                    ));
                    break;
                }
                if let Ok(t) = std::fs::read_link(entry.path()) {
                    if let Fd::Socket(inode, _) = Fd::from_link(&t.to_string_lossy()) {
                        sockets.push(inode);
                    }
                }
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(ProcError::Vanished { pid }),
        Err(e) => out.notes.push(format!("fd: {e}")),
    }
    sockets.sort_unstable();
    sockets.dedup();
    let holds_socket = !sockets.is_empty() || stdio.iter().any(|f| matches!(f, Fd::Socket(..)));
    if holds_socket {
        let table = cache.table(proc, pid);
        out.notes.extend(table.notes.iter().cloned());
        for fd in &mut stdio {
            if let Fd::Socket(inode, proto) = fd {
                *proto = table.get(*inode).map(|s| s.proto);
            }
        }
        let (mut remote, mut listening) = (Vec::new(), Vec::new());
        for s in sockets.iter().filter_map(|&i| table.get(i)) {
            if s.connected {
                remote.extend(s.remote);
            }
            if s.listening {
                if let Some(local) = s.local {
                    let proto = if s.proto.is_tcp() { "tcp" } else { "udp" };
                    listening.push(format!("{proto}:{local}"));
                }
            }
        }
        remote.sort_unstable();
        remote.dedup();
        listening.sort_unstable();
        listening.dedup();
        for (what, len) in [("peers", remote.len()), ("listeners", listening.len())] {
            if len > PEER_CAP {
                out.notes
                    .push(format!("{len} {what}: only the first {PEER_CAP} shown"));
            }
        }
        remote.truncate(PEER_CAP);
        listening.truncate(PEER_CAP);
        out.remote = remote;
        out.listening = listening;
    }
    out.stdio = stdio;
    Ok(out)
}

/// Reads a namespace's socket tables from its `net` directory.
fn read_tables(net: &Path) -> SocketTable {
    let mut table = SocketTable::default();
    for proto in TABLES {
        let path = net.join(proto.as_str());
        let bytes = match read_table(&path) {
            Ok((bytes, truncated)) => {
                if truncated {
                    table.notes.push(format!(
                        "{}: over {NET_CAP} bytes, the rest not read",
                        path.display()
                    ));
                }
                bytes
            }
            // A kernel without IPv6 has no tcp6; a fixture may lack any.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => {
                table.notes.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        match parse_table(proto, &bytes) {
            Ok(sockets) => {
                for (inode, s) in sockets {
                    table.by_inode.entry(inode).or_insert(s);
                }
            }
            Err(problem) => table.notes.push(format!("{}: {problem}", path.display())),
        }
    }
    table
}

/// Reads at most [`NET_CAP`] bytes of a socket table, cut back to the last
/// whole line; the flag says whether it was cut. Unlike
/// `proc::read_capped` it reads until end of file: the kernel hands these
/// tables out a page at a time, so a short read is not the end. The
/// tables are kernel files, but under `--proc` a tree's file may be a FIFO
/// or a device: only regular files (which procfs files appear as) are read.
fn read_table(path: &Path) -> std::io::Result<(Vec<u8>, bool)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::with_capacity(16 * 1024);
    file.take(NET_CAP + 1).read_to_end(&mut bytes)?;
    let truncated = bytes.len() as u64 > NET_CAP;
    if truncated {
        let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        bytes.truncate(end.min(NET_CAP as usize));
    }
    Ok((bytes, truncated))
}

/// `/proc/net` prints addresses as words in the host's byte order.
fn system_info() -> ExplicitSystemInfo {
    ExplicitSystemInfo {
        boot_time_secs: 0,
        ticks_per_second: 100,
        page_size: 4096,
        is_little_endian: cfg!(target_endian = "little"),
    }
}

/// Parses one socket table's bytes into sockets by inode. A table that does
/// not parse is an error as a whole (`procfs-core` reads it line by line
/// and stops at the first bad one).
pub fn parse_table(proto: Proto, bytes: &[u8]) -> Result<Vec<(u64, Socket)>, String> {
    let si = system_info();
    let out = match proto {
        Proto::Tcp | Proto::Tcp6 => TcpNetEntries::from_buf_read(bytes, &si)
            .map_err(|e| e.to_string())?
            .0
            .into_iter()
            .map(|e| {
                let socket = Socket {
                    proto,
                    local: Some(e.local_address),
                    remote: Some(e.remote_address),
                    connected: e.state == TcpState::Established,
                    listening: e.state == TcpState::Listen,
                };
                (e.inode, socket)
            })
            .collect(),
        Proto::Udp | Proto::Udp6 => UdpNetEntries::from_buf_read(bytes, &si)
            .map_err(|e| e.to_string())?
            .0
            .into_iter()
            .map(|e| {
                let peer = e.remote_address.port() != 0;
                let socket = Socket {
                    proto,
                    local: Some(e.local_address),
                    remote: Some(e.remote_address),
                    connected: peer,
                    listening: !peer && e.local_address.port() != 0,
                };
                (e.inode, socket)
            })
            .collect(),
        Proto::Unix => UnixNetEntries::from_buf_read(bytes)
            .map_err(|e| e.to_string())?
            .0
            .into_iter()
            .map(|e| {
                let socket = Socket {
                    proto,
                    local: None,
                    remote: None,
                    connected: false,
                    listening: false,
                };
                (e.inode, socket)
            })
            .collect(),
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &[u8] = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:115C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A1B2 0100007F:115C 01 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:A1B3 0100007F:115C 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0000000000000000
";
    const TCP6: &[u8] = b"  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:0016 0000000000000000FFFF00000A00A8C0:D431 01 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 20 4 30 10 -1
   2: B80D0120000000000000000001000000:0050 B80D0120000000000000000002000000:C000 01 00000000:00000000 00:00000000 00000000     0        0 2003 1 0000000000000000 20 4 30 10 -1
";
    const UDP: &[u8] = b"   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3001 2 0000000000000000 0
  2: 0100007F:C350 08080808:0035 01 00000000:00000000 00:00000000 00000000     0        0 3002 2 0000000000000000 0
";
    const UNIX: &[u8] = b"Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 4001 /run/dbus/system_bus_socket
0000000000000000: 00000003 00000000 00000000 0001 03 4002
";

    fn by_inode(proto: Proto, bytes: &[u8]) -> HashMap<u64, Socket> {
        parse_table(proto, bytes).unwrap().into_iter().collect()
    }

    #[test]
    fn tcp_states_and_hex_ipv4() {
        let t = by_inode(Proto::Tcp, TCP);
        let listen = &t[&1001];
        assert!(listen.listening && !listen.connected);
        assert_eq!(listen.local, Some("127.0.0.1:4444".parse().unwrap()));
        let est = &t[&1002];
        assert!(est.connected && !est.listening);
        assert_eq!(est.remote, Some("127.0.0.1:4444".parse().unwrap()));
        // TIME_WAIT has no owner (inode 0) and is neither.
        assert!(!t[&0].connected && !t[&0].listening);
    }

    #[test]
    fn tcp6_words_in_host_order() {
        let t = by_inode(Proto::Tcp6, TCP6);
        assert_eq!(t[&2001].local, Some("[::1]:22".parse().unwrap()));
        assert!(t[&2001].listening);
        assert_eq!(
            t[&2002].remote,
            Some("[::ffff:192.168.0.10]:54321".parse().unwrap())
        );
        assert_eq!(
            t[&2003].remote,
            Some("[2001:db8::2]:49152".parse().unwrap())
        );
        assert!(t[&2003].connected);
    }

    #[test]
    fn udp_bound_and_connected() {
        let t = by_inode(Proto::Udp, UDP);
        assert!(t[&3001].listening && !t[&3001].connected);
        assert!(t[&3002].connected && !t[&3002].listening);
        assert_eq!(t[&3002].remote, Some("8.8.8.8:53".parse().unwrap()));
        let u = by_inode(Proto::Unix, UNIX);
        assert_eq!(u[&4001].proto, Proto::Unix);
        assert!(u.contains_key(&4002));
    }

    #[test]
    fn a_broken_table_is_an_error_not_a_panic() {
        assert!(parse_table(Proto::Tcp, b"header\n   0: zz:1 00000000:0000 0A\n").is_err());
        assert!(parse_table(Proto::Tcp, b"header\n").unwrap().is_empty());
        assert!(parse_table(Proto::Udp, b"").unwrap().is_empty());
    }

    #[test]
    fn descriptor_links() {
        assert_eq!(Fd::from_link("socket:[123]"), Fd::Socket(123, None));
        assert_eq!(Fd::from_link("pipe:[9]").render(), "pipe");
        assert_eq!(Fd::from_link("/dev/null").render(), "null");
        assert_eq!(Fd::from_link("/dev/pts/1").render(), "tty:/dev/pts/1");
        assert_eq!(
            Fd::from_link("/tmp/x (deleted)").render(),
            "file:/tmp/x (deleted)"
        );
        assert_eq!(
            Fd::from_link("anon_inode:[eventfd]").render(),
            "anon_inode:[eventfd]"
        );
        assert_eq!(Fd::Socket(1, Some(Proto::Tcp6)).render(), "socket:tcp6");
        assert_eq!(Fd::Socket(1, None).render(), "socket:other");
        assert_eq!(parse_ns_link("net:[4026531840]"), Some(4026531840));
    }
}
