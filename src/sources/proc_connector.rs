//! The kernel's netlink process connector (`NETLINK_CONNECTOR`, group
//! `CN_IDX_PROC`): fork, exec and exit events for every process on the host,
//! as they happen, without auditd. This is what lets `dbus_process_events`
//! see a service that lives for a millisecond, which a `/proc` scan never
//! would. Kernels before 6.6 let only `CAP_NET_ADMIN` (root) subscribe;
//! every kernel ignores a subscriber outside the initial user and pid
//! namespaces (a container) without an error, so [`Connector::open`] waits
//! for the kernel's acknowledgement and calls its absence a refusal.
//!
//! This module only opens the socket and decodes datagrams into typed
//! events; deciding which events matter is `collect::process`'s job.
//!
//! No maintained crate covers `cn_proc` (the netlink crates stop at route,
//! audit and generic netlink), so the few wire layouts below are written out
//! by hand from `linux/connector.h` and `linux/cn_proc.h`, and decoded from
//! bytes with bounds checks: a short or odd datagram yields fewer events,
//! never a panic or an unchecked cast.
use rustix::fd::OwnedFd;
use rustix::io::Errno;
use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};
use std::time::Duration;

/// `CN_IDX_PROC` / `CN_VAL_PROC` from `linux/connector.h`.
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
/// `PROC_CN_MCAST_LISTEN` from `linux/cn_proc.h`.
const PROC_CN_MCAST_LISTEN: u32 = 1;
/// `NLMSG_DONE`: the connector sends (and wants) single-part messages.
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
/// `struct cn_msg`: id {idx, val}, seq, ack, len (u16), flags (u16).
const CN_MSG_LEN: usize = 20;
/// `enum what` values of `struct proc_event`.
const PROC_EVENT_NONE: u32 = 0x0000_0000;
const PROC_EVENT_FORK: u32 = 0x0000_0001;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const PROC_EVENT_COMM: u32 = 0x0000_0200;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
/// Socket receive buffer asked for (as root, past `rmem_max`): a burst of
/// tens of thousands of events fits while the collector reads `/proc`.
const RECV_BUFFER: usize = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("netlink process connector: {step}: {source} (needs a kernel with CONFIG_PROC_EVENTS, and root before Linux 6.6)")]
    Setup {
        step: &'static str,
        #[source]
        source: Errno,
    },
    #[error("netlink process connector: the kernel did not acknowledge the subscription within {0:?} (not in the initial user and pid namespaces, e.g. in a container?)")]
    NoAck(Duration),
    #[error("netlink process connector: receive: {0}")]
    Recv(#[source] Errno),
}

/// One decoded event. Pids are the kernel's: `pid` is the thread id and
/// `tgid` the process id; a process is its thread-group leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fork {
        parent_tgid: u32,
        child_pid: u32,
        child_tgid: u32,
    },
    Exec {
        pid: u32,
        tgid: u32,
    },
    /// A thread renamed itself (`prctl(PR_SET_NAME)`, a write to `comm`).
    Comm {
        pid: u32,
        tgid: u32,
    },
    Exit {
        pid: u32,
        tgid: u32,
        /// The wait status (`exit_code` of `struct exit_proc_event`).
        status: u32,
    },
    /// The kernel's answer to a subscription: `ack` is the request's
    /// `cn_msg.ack` plus one (the kernel numbers `seq` itself), `err` is 0
    /// or an errno.
    Ack {
        ack: u32,
        err: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// `CLOCK_MONOTONIC` nanoseconds when the kernel emitted it.
    pub timestamp_ns: u64,
    pub kind: Kind,
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// `struct proc_event` (what u32, cpu u32, timestamp_ns u64, then the
/// union) from the connector message payload; `ack` is the `cn_msg`'s.
fn parse_proc_event(p: &[u8], ack: u32) -> Option<Event> {
    let what = u32_at(p, 0)?;
    let timestamp_ns = u64_at(p, 8)?;
    let d = 16;
    let kind = match what {
        PROC_EVENT_NONE => Kind::Ack {
            ack,
            err: u32_at(p, d)?,
        },
        PROC_EVENT_FORK => Kind::Fork {
            parent_tgid: u32_at(p, d + 4)?,
            child_pid: u32_at(p, d + 8)?,
            child_tgid: u32_at(p, d + 12)?,
        },
        PROC_EVENT_EXEC => Kind::Exec {
            pid: u32_at(p, d)?,
            tgid: u32_at(p, d + 4)?,
        },
        PROC_EVENT_COMM => Kind::Comm {
            pid: u32_at(p, d)?,
            tgid: u32_at(p, d + 4)?,
        },
        PROC_EVENT_EXIT => Kind::Exit {
            pid: u32_at(p, d)?,
            tgid: u32_at(p, d + 4)?,
            status: u32_at(p, d + 8)?,
        },
        _ => return None,
    };
    Some(Event { timestamp_ns, kind })
}

/// Every fork/exec/exit event in one datagram (normally one message).
pub fn parse_datagram(bytes: &[u8]) -> Vec<Event> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while let Some(len) = u32_at(bytes, off).map(|l| l as usize) {
        if len < NLMSG_HDRLEN || off + len > bytes.len() {
            break;
        }
        let msg = &bytes[off + NLMSG_HDRLEN..off + len];
        let ids = (u32_at(msg, 0), u32_at(msg, 4));
        let payload_len = u16_at(msg, 16).map(usize::from);
        if ids == (Some(CN_IDX_PROC), Some(CN_VAL_PROC)) {
            if let (Some(payload), Some(ack)) = (
                payload_len.and_then(|n| msg.get(CN_MSG_LEN..CN_MSG_LEN + n)),
                u32_at(msg, 12),
            ) {
                out.extend(parse_proc_event(payload, ack));
            }
        }
        // NLMSG_ALIGN: messages are 4-byte aligned.
        off += (len + 3) & !3;
    }
    out
}

/// The subscribe message: nlmsghdr, cn_msg (with `ack` as a nonce the
/// kernel's acknowledgement returns plus one), then the u32 operation.
fn listen_message(nonce: u32) -> Vec<u8> {
    let total = NLMSG_HDRLEN + CN_MSG_LEN + 4;
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_ne_bytes());
    m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&std::process::id().to_ne_bytes());
    m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&nonce.to_ne_bytes()); // ack
    m.extend_from_slice(&4u16.to_ne_bytes()); // len
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    m
}

/// What one receive brought.
#[derive(Debug)]
pub enum Received {
    Events(Vec<Event>),
    /// The socket buffer overflowed (`ENOBUFS`): events were lost.
    Overrun,
    /// Nothing within the receive timeout.
    Idle,
}

/// A subscribed connector socket.
pub struct Connector {
    fd: OwnedFd,
    buf: Vec<u8>,
    /// Events that arrived while waiting for the acknowledgement.
    backlog: Vec<Event>,
}

/// How long [`Connector::open`] waits for the kernel's acknowledgement.
const ACK_WAIT: Duration = Duration::from_secs(1);

impl Connector {
    /// Opens, binds to `CN_IDX_PROC` and subscribes. Receives time out
    /// after `timeout` so a reader can look at its stop flag.
    pub fn open(timeout: Duration) -> Result<Connector, ConnectorError> {
        let setup = |step| move |source| ConnectorError::Setup { step, source };
        let fd = rustix::net::socket(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            Some(netlink::CONNECTOR),
        )
        .map_err(setup("socket"))?;
        // Root may go past rmem_max; anyone else gets what rmem_max allows.
        if rustix::net::sockopt::set_socket_recv_buffer_size_force(&fd, RECV_BUFFER).is_err() {
            let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, RECV_BUFFER);
        }
        rustix::net::sockopt::set_socket_timeout(
            &fd,
            rustix::net::sockopt::Timeout::Recv,
            Some(timeout),
        )
        .map_err(setup("SO_RCVTIMEO"))?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, CN_IDX_PROC))
            .map_err(setup("bind CN_IDX_PROC"))?;
        // Acknowledgements go to every listener: ours is the one that
        // returns this nonce plus one.
        let nonce = std::process::id() ^ (monotonic_ns() as u32) | 1 << 31;
        rustix::net::send(&fd, &listen_message(nonce), SendFlags::empty())
            .map_err(setup("send PROC_CN_MCAST_LISTEN"))?;
        let mut conn = Connector {
            fd,
            buf: vec![0u8; 64 * 1024],
            backlog: Vec::new(),
        };
        let deadline = std::time::Instant::now() + ACK_WAIT;
        while std::time::Instant::now() < deadline {
            // From the socket itself: `recv` would hand back the backlog
            // kept so far instead of reading on to the acknowledgement.
            let Received::Events(events) = conn.read_socket(RecvFlags::empty())? else {
                continue;
            };
            for e in events {
                match e.kind {
                    Kind::Ack { ack, err } if ack == nonce.wrapping_add(1) => {
                        if err != 0 {
                            let source = Errno::from_raw_os_error(err as i32);
                            return Err(ConnectorError::Setup {
                                step: "PROC_CN_MCAST_LISTEN",
                                source,
                            });
                        }
                        return Ok(conn);
                    }
                    Kind::Ack { .. } => {}
                    _ => conn.backlog.push(e),
                }
            }
        }
        Err(ConnectorError::NoAck(ACK_WAIT))
    }

    /// Waits (up to the receive timeout) for the next datagram.
    pub fn recv(&mut self) -> Result<Received, ConnectorError> {
        self.receive(RecvFlags::empty())
    }

    /// The next datagram if one is queued; `Idle` at once otherwise.
    pub fn try_recv(&mut self) -> Result<Received, ConnectorError> {
        self.receive(RecvFlags::DONTWAIT)
    }

    fn receive(&mut self, flags: RecvFlags) -> Result<Received, ConnectorError> {
        if !self.backlog.is_empty() {
            return Ok(Received::Events(std::mem::take(&mut self.backlog)));
        }
        self.read_socket(flags)
    }

    fn read_socket(&mut self, flags: RecvFlags) -> Result<Received, ConnectorError> {
        match rustix::net::recv(&self.fd, &mut self.buf[..], flags) {
            Ok((n, _)) => Ok(Received::Events(parse_datagram(
                &self.buf[..n.min(self.buf.len())],
            ))),
            Err(Errno::NOBUFS) => Ok(Received::Overrun),
            Err(Errno::AGAIN | Errno::INTR) => Ok(Received::Idle),
            Err(e) => Err(ConnectorError::Recv(e)),
        }
    }
}

/// `CLOCK_MONOTONIC` now, in the connector's timestamp units.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(what: u32, ts: u64, data: &[u32]) -> Vec<u8> {
        let mut ev = Vec::new();
        ev.extend_from_slice(&what.to_ne_bytes());
        ev.extend_from_slice(&0u32.to_ne_bytes());
        ev.extend_from_slice(&ts.to_ne_bytes());
        for d in data {
            ev.extend_from_slice(&d.to_ne_bytes());
        }
        let total = NLMSG_HDRLEN + CN_MSG_LEN + ev.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(total as u32).to_ne_bytes());
        m.extend_from_slice(&[0u8; 12]);
        m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        m.extend_from_slice(&[0u8; 8]);
        m.extend_from_slice(&(ev.len() as u16).to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&ev);
        m
    }

    #[test]
    fn decodes_fork_exec_exit() {
        let f = datagram(PROC_EVENT_FORK, 7, &[10, 10, 11, 11]);
        assert_eq!(
            parse_datagram(&f),
            vec![Event {
                timestamp_ns: 7,
                kind: Kind::Fork {
                    parent_tgid: 10,
                    child_pid: 11,
                    child_tgid: 11
                }
            }]
        );
        let e = datagram(PROC_EVENT_EXEC, 8, &[11, 11]);
        assert_eq!(parse_datagram(&e)[0].kind, Kind::Exec { pid: 11, tgid: 11 });
        let c = datagram(PROC_EVENT_COMM, 8, &[12, 11, 0, 0, 0, 0]);
        assert_eq!(parse_datagram(&c)[0].kind, Kind::Comm { pid: 12, tgid: 11 });
        let x = datagram(PROC_EVENT_EXIT, 9, &[11, 11, 256, 17, 10, 10]);
        assert_eq!(
            parse_datagram(&x)[0].kind,
            Kind::Exit {
                pid: 11,
                tgid: 11,
                status: 256
            }
        );
    }

    #[test]
    fn truncated_or_foreign_datagrams_yield_nothing() {
        let e = datagram(PROC_EVENT_EXEC, 8, &[11, 11]);
        for cut in 0..e.len() {
            assert!(parse_datagram(&e[..cut]).is_empty(), "cut {cut}");
        }
        let mut other = e.clone();
        other[16] = 9; // another connector index
        assert!(parse_datagram(&other).is_empty());
        assert!(parse_datagram(&datagram(0x100, 1, &[1, 1])).is_empty());
        assert_eq!(
            parse_datagram(&datagram(PROC_EVENT_NONE, 1, &[0]))[0].kind,
            Kind::Ack { ack: 0, err: 0 }
        );
        // A length field past the end stops parsing instead of reading on.
        let mut long = e;
        long[0] = 0xff;
        assert!(parse_datagram(&long).is_empty());
    }

    #[test]
    fn listen_message_is_well_formed() {
        let m = listen_message(77);
        assert_eq!(m.len(), 40);
        assert_eq!(u32_at(&m, 28), Some(77));
        assert_eq!(u32_at(&m, 0), Some(40));
        assert_eq!(u32_at(&m, 36), Some(PROC_CN_MCAST_LISTEN));
    }
}
