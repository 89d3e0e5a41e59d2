//! Serving many connections at once: a listener you bring, limits, events,
//! and a graceful shutdown.
//!
//! [`start`] takes a bound [`TcpListener`] or [`UnixListener`] (the library
//! never binds or picks ports), an [`EchoServer`], [`Limits`] and an
//! [`Events`] observer, and serves every connection on its own thread until
//! [`Handle::shutdown`] (or dropping the [`Handle`]).
//!
//! ```
//! use std::net::{TcpListener, TcpStream};
//! use std::time::Duration;
//! use stamp_echo::{EchoClient, EchoServer, Framing, Limits, runner};
//!
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let server = EchoServer::builder().framing(Framing::line()).build()?;
//! let handle = runner::start(listener, server, Limits::default(), ())?;
//!
//! let addr = handle.local_addr().tcp().expect("a TCP listener");
//! let mut client = EchoClient::new(TcpStream::connect(addr)?, Framing::line())?;
//! assert_eq!(client.round_trip(b"hi,server")?.message(), b"hi,server");
//! drop(client);
//!
//! let totals = handle.shutdown(Duration::from_secs(5));
//! assert_eq!((totals.connections, totals.messages, totals.errors), (1, 1, 0));
//! # Ok::<(), stamp_echo::Error>(())
//! ```
//!
//! # Why a thread per connection
//!
//! [`EchoServer::serve`] blocks on its stream, and a blocking read of a silent
//! client holds whatever thread runs it. A fixed pool smaller than the number
//! of open connections would let that many silent clients stall everyone
//! else, so each connection gets a thread of its own, and
//! [`Limits::max_connections`] caps how many exist. Threads are spawned per
//! connection rather than reused: spawning is a small share of a short
//! connection's cost (the `c10k` example measures it), and a parked thread
//! costs memory a fresh one does not. The threads have small stacks
//! ([`Limits::stack_size`]); only the pages a thread touches are resident.
//!
//! # One file descriptor per connection
//!
//! A connection's socket is shared, never duplicated: the serving thread
//! reads and writes through `&TcpStream`, and the runner's registry keeps an
//! `Arc` of the same socket to shut it down. A connection costs one file
//! descriptor, so the cap on connections is a cap on descriptors.
//!
//! # Memory per connection
//!
//! Whatever the client sends, and whatever the framing's limits, a connection
//! holds its read buffer (chunk framing: `buffer_size`; otherwise the server's
//! read buffer size, 8 KiB by default), at most 3 bytes of an unfinished
//! message (replies are streamed: see [`Responder`](crate::protocol::Responder)),
//! the reply bytes of about one read (written out once they pass 32 KiB, so
//! replies to many tiny messages never pile up), plus its thread's stack
//! ([`Limits::stack_size`], resident only as touched). Measured by
//! `examples/frame_memory.rs`: 1,000 connections each in the middle of a
//! 16 MiB frame hold 26 KiB each, against 22 KiB for idle ones.
//! Multiply by [`Limits::max_connections`] for the whole server.

mod proxied;
mod registry;
mod source;
#[cfg(feature = "tracing")]
mod tracing_events;

#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub use tracing_events::TracingEvents;

pub(crate) use proxied::HeaderRead;
pub use proxied::{ProxyProtocol, TrustedProxy};
pub(crate) use registry::{Decision, Entry, FORCE_GRACE, Flags, Registry, Shared};
pub use source::{Refusal, Source};

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
#[cfg(unix)]
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::datagram::Dropped;
use crate::protocol::{Fragment, Observer, Summary};
use crate::proxy::{ProxyHeader, has_signature};
use crate::server::EchoServer;
use crate::stop;
use crate::{ConfigError, Error};
use crate::{ProxyError, TimeoutError};

/// Limits on what the runner and each connection may take. Every field has a
/// documented default ([`Limits::default`]); change one with its setter:
///
/// ```
/// use std::time::Duration;
/// use stamp_echo::Limits;
///
/// let limits = Limits::default().max_connections(10_000).idle_timeout(Some(Duration::from_secs(30)));
/// assert_eq!(limits.max_connections, 10_000);
/// assert_eq!(limits.write_timeout, Some(Duration::from_secs(30)));
/// ```
///
/// | limit | default | range | at the limit |
/// |---|---|---|---|
/// | `max_connections` | 1024 | 1 to 1,000,000 | room is made at the expense of the [`Source`] holding the most connections (see [below](#fair-to-every-source)): its connection longest without completing a message is evicted ([`Error::Evicted`]), or a newcomer from it refused ([`Refusal`]) |
/// | `max_per_source` | `None` | 1 to 1,000,000, or `None` | a new client from a source holding that many takes the slot of the source's own connection longest without completing a message, once past `eviction_grace`, or is refused ([`Refusal::SourceLimit`]) |
/// | `eviction_grace` | 500 ms | 1 ms to 30 days, or `None` | a connection younger than this (or that completed a message since) is not evicted; `None`: never evict, new clients wait in the backlog |
/// | `idle_timeout` | 300 s | 1 ms to 30 days, or `None` | a connection that sends nothing for that long is closed with [`TimeoutError::Idle`] |
/// | `message_timeout` | 30 s | 1 ms to 30 days, or `None` | a message not complete that long after its first byte closes its connection with [`TimeoutError::Message`] |
/// | `write_timeout` | 30 s | 1 ms to 30 days, or `None` | replies to one read not all taken that long after the first was written close the connection with [`TimeoutError::Write`] |
/// | `stack_size` | 256 KiB | 64 KiB to 64 MiB | the stack each connection thread reserves |
///
/// The framing's own limits (`buffer_size`, `max_line`, `max_frame`) are the
/// [`EchoServer`]'s.
///
/// # Nobody can hoard the slots
///
/// Silent clients and clients trickling bytes without ever completing a
/// message cannot keep others out: at `max_connections` the runner keeps
/// accepting, and makes room for each new client by closing the connection
/// that has gone longest without completing a message (counted from when it
/// was accepted), once that is longer than `eviction_grace`, among those of
/// the sources that hold the most (see [below](#fair-to-every-source)). A
/// client that completes messages keeps its place ahead of those that do
/// not, and one source holding more than others cannot keep them out even
/// with active connections. And a
/// message must be complete within `message_timeout` of its first byte,
/// whatever the pace of its bytes; `idle_timeout` is for silence.
///
/// # Fair to every source
///
/// Connections are counted per [`Source`] (an IPv4 address, an IPv6 /64, a
/// Unix peer's user), so that whoever opens the most connections cannot own
/// the server. Below the cap nothing changes. At the cap, for a newcomer
/// from source N holding `n` slots:
///
/// - if another source holds `n + 2` or more (more than N would hold once
///   admitted), the connection of the largest source that has gone longest
///   without completing a message is evicted at once, grace or not, and the
///   newcomer admitted: a source holding more than its share cannot keep
///   others out, even with every connection active;
/// - otherwise N may only displace its own kind: the connection longest
///   without a completed message among N's own and those of sources holding
///   `n + 1`, once past `eviction_grace`; if there is none, the newcomer is
///   refused at once ([`Events::refused`], [`Totals::refused`]), so that a
///   backlog of one source's newcomers never holds up others'.
///
/// So a source only ever evicts its own connections while it holds more than
/// anyone else, and a client from another source connected before is never
/// evicted by one source's churn. With one source only this is the rule
/// above: the connection longest without a completed message, past the
/// grace. Inside a source the order is the same (ties: the oldest).
/// `eviction_grace` `None` still means never evict: at the cap newcomers
/// wait in the backlog. [`Limits::max_per_source`] caps any one source
/// below `max_connections`.
///
/// An evicted connection's slot is taken at once, without waiting for it to
/// end; at most 32 evicted connections may be on their way out at once
/// (beyond, a newcomer waits for one to end), so open sockets never exceed
/// the cap by more than 32 plus the newcomer.
///
/// Out of descriptors, memory or threads (`accept()` fails with `EMFILE`,
/// `ENFILE`, `ENOBUFS` or `ENOMEM`, or a connection's thread cannot start),
/// since the newcomer is unknown, the connection longest without a
/// completed message of the largest source, if it holds 2 or more, is
/// evicted (one at a time), and the cap becomes the connections left: the
/// descriptor the evicted one frees is room to accept and refuse in, not a
/// slot. The cap holds for 1 s after the last such failure or the last
/// newcomer turned away at it. At it, a newcomer is admitted at the largest
/// source's expense if that holds 2 more than the newcomer's source, and
/// otherwise refused at once ([`Refusal::OutOfResources`]), never displacing
/// its own source's connections (each would need a descriptor freed first).
/// So the accept loop keeps draining the backlog as fast as the attacker
/// fills it, and connections that end make room for anyone.
///
/// What this cannot stop: an attacker with as many sources as there are
/// slots (a botnet, or many IPv6 /64s) holds one slot per source like anyone
/// else. Size `max_connections` above the clients you expect plus such an
/// attacker's sources, and `max_per_source` to the most connections one
/// legitimate client opens.
///
/// The deadlines are kept by setting the socket's timeouts to the time left
/// before a read or write that needs it (a few system calls per deadline,
/// none per message in steady state); they fire up to 1/16 of the time left
/// (at most 250 ms) late.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The most connections served at once (default 1024, at most
    /// 1,000,000). Keep it below the process's file descriptor limit
    /// (`ulimit -n`): each connection takes one descriptor, and evicted ones
    /// on their way out up to 32 more. If `accept()` still runs out of
    /// descriptors (or memory), the runner makes room at the largest
    /// source's expense, with the connections open then as the cap (see
    /// [fairness](#fair-to-every-source)). So a descriptor limit below the
    /// cap cannot let hoarders keep clients out.
    pub max_connections: usize,
    /// The most connections one [`Source`] may hold (default `None`: only
    /// `max_connections`; at most 1,000,000). A new client from a source
    /// holding that many takes the slot of the source's own connection
    /// longest without completing a message, once that is past
    /// `eviction_grace`, or is refused ([`Refusal::SourceLimit`]).
    pub max_per_source: Option<usize>,
    /// At `max_connections`, how long a connection must have gone without
    /// completing a message (since it was accepted, or since its last
    /// message) before a new client may take its slot (default 500 ms; `None`:
    /// never, new clients wait in the backlog until a connection ends).
    pub eviction_grace: Option<Duration>,
    /// How long a connection may send nothing before it is closed with
    /// [`TimeoutError::Idle`] (default 300 s; `None`: never), measured from the
    /// last bytes received.
    pub idle_timeout: Option<Duration>,
    /// How long after its first byte a message must be complete, or its
    /// connection is closed with [`TimeoutError::Message`] (default 30 s;
    /// `None`: never). The model is nginx's `client_header_timeout` and
    /// HAProxy's `timeout http-request`: trickling bytes resets no clock.
    pub message_timeout: Option<Duration>,
    /// How long the replies to one read may take to leave, from the first
    /// byte written, before the connection is closed with
    /// [`TimeoutError::Write`] (default 30 s; `None`: never). A client that
    /// sends but never reads, or reads a byte now and then, cannot hold its
    /// thread longer.
    pub write_timeout: Option<Duration>,
    /// The stack size of each connection thread (default 256 KiB, 64 KiB
    /// to 64 MiB). Serving needs a few KiB; raise it if your
    /// [`Stamp`](crate::stamp::Stamp) or [`Events`] need deep stacks.
    pub stack_size: usize,
}

impl Limits {
    /// Default for [`Limits::max_connections`].
    pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
    /// Default for [`Limits::eviction_grace`]: long enough for a client to
    /// send its first message over any network path (a round trip up to
    /// about a second), short enough that a burst of hoarders delays a new
    /// client by well under a second.
    pub const DEFAULT_EVICTION_GRACE: Duration = Duration::from_millis(500);
    /// Default for [`Limits::idle_timeout`].
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
    /// Default for [`Limits::message_timeout`].
    pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default for [`Limits::write_timeout`].
    pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default for [`Limits::stack_size`].
    pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;
    /// The largest [`Limits::max_connections`] and [`Limits::max_per_source`].
    pub const MAX_CONNECTIONS: usize = 1_000_000;
    /// The shortest timeout or grace period.
    pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);
    /// The longest timeout or grace period (30 days).
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);
    /// The smallest [`Limits::stack_size`].
    pub const MIN_STACK_SIZE: usize = 64 * 1024;
    /// The largest [`Limits::stack_size`].
    pub const MAX_STACK_SIZE: usize = 64 * 1024 * 1024;

    /// Sets [`Limits::max_connections`].
    #[must_use]
    pub fn max_connections(mut self, max: usize) -> Limits {
        self.max_connections = max;
        self
    }

    /// Sets [`Limits::max_per_source`].
    #[must_use]
    pub fn max_per_source(mut self, max: Option<usize>) -> Limits {
        self.max_per_source = max;
        self
    }

    /// Sets [`Limits::eviction_grace`].
    #[must_use]
    pub fn eviction_grace(mut self, grace: Option<Duration>) -> Limits {
        self.eviction_grace = grace;
        self
    }

    /// Sets [`Limits::idle_timeout`].
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Limits {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`Limits::message_timeout`].
    #[must_use]
    pub fn message_timeout(mut self, timeout: Option<Duration>) -> Limits {
        self.message_timeout = timeout;
        self
    }

    /// Sets [`Limits::write_timeout`].
    #[must_use]
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Limits {
        self.write_timeout = timeout;
        self
    }

    /// Sets [`Limits::stack_size`].
    #[must_use]
    pub fn stack_size(mut self, bytes: usize) -> Limits {
        self.stack_size = bytes;
        self
    }

    /// Checks every limit is within its range (see the table above), as
    /// [`start`] does.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first limit out of range and its value.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stamp_echo::Limits;
    ///
    /// let err = Limits::default().idle_timeout(Some(Duration::MAX)).validate().unwrap_err();
    /// assert!(err.to_string().starts_with("invalid idle_timeout"), "{err}");
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        if !(1..=Self::MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err(ConfigError::new("max_connections", self.max_connections, "1 to 1000000").into());
        }
        if let Some(max) = self.max_per_source.filter(|max| !(1..=Self::MAX_CONNECTIONS).contains(max)) {
            return Err(ConfigError::new("max_per_source", max, "1 to 1000000 (None for no limit)").into());
        }
        let timeouts = [
            ("eviction_grace", self.eviction_grace),
            ("idle_timeout", self.idle_timeout),
            ("message_timeout", self.message_timeout),
            ("write_timeout", self.write_timeout),
        ];
        for (setting, timeout) in timeouts {
            if let Some(t) = timeout.filter(|t| !(Self::MIN_TIMEOUT..=Self::MAX_TIMEOUT).contains(t)) {
                let value = format!("{t:?}");
                return Err(ConfigError::new(setting, value, "1 ms to 30 days (None for no limit)").into());
            }
        }
        if !(Self::MIN_STACK_SIZE..=Self::MAX_STACK_SIZE).contains(&self.stack_size) {
            return Err(ConfigError::new("stack_size", self.stack_size, "65536 to 67108864 bytes").into());
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_per_source: None,
            eviction_grace: Some(Self::DEFAULT_EVICTION_GRACE),
            idle_timeout: Some(Self::DEFAULT_IDLE_TIMEOUT),
            message_timeout: Some(Self::DEFAULT_MESSAGE_TIMEOUT),
            write_timeout: Some(Self::DEFAULT_WRITE_TIMEOUT),
            stack_size: Self::DEFAULT_STACK_SIZE,
        }
    }
}

/// A listener to serve: a bound [`TcpListener`] or [`UnixListener`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A Unix domain socket listener.
    #[cfg(unix)]
    Unix(UnixListener),
}

impl From<TcpListener> for Listener {
    fn from(listener: TcpListener) -> Listener {
        Listener::Tcp(listener)
    }
}

#[cfg(unix)]
impl From<UnixListener> for Listener {
    fn from(listener: UnixListener) -> Listener {
        Listener::Unix(listener)
    }
}

impl Listener {
    /// The address it listens on.
    ///
    /// # Errors
    ///
    /// The [`io::Error`] of the listener's `local_addr`.
    pub fn local_addr(&self) -> io::Result<Addr> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(Addr::Tcp),
            #[cfg(unix)]
            Listener::Unix(l) => l.local_addr().map(|a| Addr::Unix(a.as_pathname().map(PathBuf::from))),
        }
    }

    #[cfg_attr(not(unix), allow(dead_code))]
    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(nonblocking),
            #[cfg(unix)]
            Listener::Unix(l) => l.set_nonblocking(nonblocking),
        }
    }

    fn accept(&self) -> io::Result<(Stream, Addr)> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, a)| (Stream::Tcp(s), Addr::Tcp(a))),
            #[cfg(unix)]
            Listener::Unix(l) => {
                l.accept().map(|(s, a)| (Stream::Unix(s), Addr::Unix(a.as_pathname().map(PathBuf::from))))
            }
        }
    }

    /// Puts the listener in the mode the accept loop needs to see a stop
    /// (see [`crate::stop`]): blocking with a receive timeout where
    /// `accept()` honours one; elsewhere a non-blocking Unix listener, polled,
    /// or a blocking TCP listener woken by connecting to it.
    fn prepare(self) -> io::Result<(Listener, Wake)> {
        if stop::ACCEPT_HONOURS_TIMEOUT {
            #[cfg(unix)]
            {
                let listener = match self {
                    Listener::Tcp(l) => Listener::Tcp(stop::tick(l)?),
                    Listener::Unix(l) => Listener::Unix(stop::tick(l)?),
                };
                listener.set_nonblocking(false)?;
                return Ok((listener, Wake::Tick));
            }
        }
        match &self {
            Listener::Tcp(l) => {
                l.set_nonblocking(false)?;
                let mut addr = l.local_addr()?;
                // Listening on every address: any one of them reaches it.
                match addr.ip() {
                    IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
                    IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
                    _ => {}
                }
                Ok((self, Wake::Connect(addr)))
            }
            #[cfg(unix)]
            Listener::Unix(l) => {
                l.set_nonblocking(true)?;
                Ok((self, Wake::Poll))
            }
        }
    }
}

/// How [`Handle::shutdown`] reaches an accept loop blocked in `accept()`.
#[derive(Debug)]
enum Wake {
    /// `accept()` returns every [`stop::TICK`] by itself.
    #[cfg_attr(not(unix), allow(dead_code))]
    Tick,
    /// The listener is non-blocking: the loop sleeps a tick between tries.
    #[cfg_attr(not(unix), allow(dead_code))]
    Poll,
    /// Connect to this address (TCP where `accept()` ignores timeouts).
    #[cfg_attr(any(target_os = "linux", target_os = "android"), allow(dead_code))]
    Connect(SocketAddr),
}

/// A listening address, or a peer's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Addr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix domain socket's path; `None` for an unnamed socket (a client's,
    /// usually).
    Unix(Option<PathBuf>),
    /// A UDP address: a [`DatagramServer`](crate::datagram::DatagramServer)'s
    /// or the source a datagram claims (nothing checks it).
    Udp(SocketAddr),
}

impl Addr {
    /// The TCP address, if it is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Addr::Tcp(addr) => Some(*addr),
            Addr::Unix(_) | Addr::Udp(_) => None,
        }
    }
}

impl fmt::Display for Addr {
    /// `127.0.0.1:8080`, `/run/echo.sock`, `unnamed` for an unnamed Unix
    /// socket, `udp 127.0.0.1:8080` for a UDP address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(addr) => addr.fmt(f),
            Addr::Udp(addr) => write!(f, "udp {addr}"),
            Addr::Unix(Some(path)) => path.display().fmt(f),
            Addr::Unix(None) => f.write_str("unnamed"),
        }
    }
}

/// A connection's peer: its address and a number unique within one runner,
/// counting from 1 (Unix clients are usually unnamed, so the number is what
/// tells them apart). For a [`DatagramServer`](crate::datagram::DatagramServer),
/// one datagram's sender: an [`Addr::Udp`], and the datagram's number
/// within the server, counting from 1.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Peer {
    /// The connection's number.
    pub id: u64,
    /// The peer's address.
    pub addr: Addr,
    /// What the peer counts as for fairness (see [`Source`]).
    pub source: Source,
}

impl fmt::Display for Peer {
    /// The address; for an unnamed Unix socket, `unnamed#ID`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            Addr::Unix(None) => write!(f, "unnamed#{}", self.id),
            _ => self.addr.fmt(f),
        }
    }
}

/// What a whole server does, for logging: the thread [runner](self), the
/// [`DatagramServer`](crate::datagram::DatagramServer) and the async runner
/// take one. Every method has an empty default, and `()` implements it with
/// all of them. (One connection's messages alone are seen by a
/// [`protocol::Observer`](crate::protocol::Observer), what
/// [`EchoServer::serve_with`](crate::EchoServer::serve_with) takes; a runner
/// passes them on to [`message`](Events::message).)
///
/// `accepting`, `accept_failed`, `connected` and `refused` are called on the
/// accept thread (the accept task under tokio), in order (except `connected`
/// and `refused` for a connection from a trusted proxy under the PROXY
/// protocol: on its own thread or task, once its header is read); `message`
/// and `closed` on
/// each connection's own thread (its task), several at once. Keep them quick
/// and never block: the accept loop waits for its calls, and under tokio a
/// call that blocks holds a worker thread that serves many connections. To
/// write somewhere slow, hand the line to a bounded queue read by a thread of
/// its own, as the `server` example's log does (a full queue drops and
/// counts lines rather than wait). The library never prints; the `server`
/// example's log lines come from an `Events` implementation.
///
/// # Over UDP
///
/// There are no connections, so no `accepting`, `accept_failed` or
/// `connected`: each datagram comes from its own [`Peer`] (an
/// [`Addr::Udp`]) and is shown to one of: [`message`](Events::message)
/// (one fragment, first and last) when answered with its echo,
/// [`dropped`](Events::dropped) when dropped unanswered, and
/// [`closed`](Events::closed), with the error and that datagram's counts,
/// when answered with an error datagram. An echo that cannot be sent is
/// shown to `closed` as well, after `message`.
///
/// A panic in `message` or `closed` ends that connection (it is closed and
/// counted as an error); a panic in a method called on the accept thread
/// stops accepting. Don't panic.
pub trait Events: Send + Sync + 'static {
    /// The runner is about to wait for the next connection (the original's
    /// `waiting for connection...`); not again after a connection it
    /// [refused](Events::refused), so that a flood of refusals is not a
    /// flood of these.
    fn accepting(&self) {}

    /// `accept()` failed (out of file descriptors, say). The runner waits for
    /// a connection to close, or 100 ms, and tries again; out of descriptors
    /// or memory, it first makes room as at
    /// [`max_connections`](Limits::max_connections).
    fn accept_failed(&self, error: &io::Error) {
        let _ = error;
    }

    /// A connection was accepted and is being served. Behind a trusted proxy
    /// ([`ProxyProtocol`]), once its header is read, with the client it names
    /// as `peer`; a connection whose header fails is shown to
    /// [`closed`](Events::closed) alone, with the proxy as its peer (one
    /// refused once its client is known, [`Error::Refused`]: with the
    /// client).
    fn connected(&self, peer: &Peer) {
        let _ = peer;
    }

    /// A new connection was closed unserved at once, for `reason` (see
    /// [fairness](Limits#fair-to-every-source)): its source held its share
    /// of a full server, or `max_per_source`. Called on the accept thread
    /// (task), instead of `connected`; under an attack from one source this
    /// is called for each of its connections: keep it cheap.
    fn refused(&self, peer: &Peer, reason: Refusal) {
        let _ = (peer, reason);
    }

    /// Bytes of a message arrived on `peer`'s connection (see [`Fragment`]);
    /// their reply follows.
    fn message(&self, peer: &Peer, fragment: Fragment<'_>) {
        let _ = (peer, fragment);
    }

    /// `peer`'s connection ended, with its counts and, if it ended in an
    /// error, the error (every message received whole was answered first).
    fn closed(&self, peer: &Peer, summary: &Summary, error: Option<&Error>) {
        let _ = (peer, summary, error);
    }

    /// A datagram from `peer` was dropped unanswered, for `reason` (see
    /// [`datagram`](crate::datagram#loops-and-reflection)). Under a flood
    /// this is called for every datagram of it: keep it cheap.
    fn dropped(&self, peer: &Peer, reason: Dropped) {
        let _ = (peer, reason);
    }
}

impl Events for () {}

/// `Events` through a pointer: `Arc<E>` (to keep a handle on your events)
/// and `Box<dyn Events>` (to choose them at run time).
macro_rules! forward_events {
    ($($pointer:ident),*) => {$(
        impl<E: Events + ?Sized> Events for $pointer<E> {
            fn accepting(&self) {
                (**self).accepting();
            }
            fn accept_failed(&self, error: &io::Error) {
                (**self).accept_failed(error);
            }
            fn connected(&self, peer: &Peer) {
                (**self).connected(peer);
            }
            fn refused(&self, peer: &Peer, reason: Refusal) {
                (**self).refused(peer, reason);
            }
            fn message(&self, peer: &Peer, fragment: Fragment<'_>) {
                (**self).message(peer, fragment);
            }
            fn closed(&self, peer: &Peer, summary: &Summary, error: Option<&Error>) {
                (**self).closed(peer, summary, error);
            }
            fn dropped(&self, peer: &Peer, reason: Dropped) {
                (**self).dropped(peer, reason);
            }
        }
    )*};
}
forward_events!(Arc, Box);

/// Counts over every connection that has ended.
///
/// Each connection counts in exactly one of: ended cleanly,
/// [`errors`](Totals::errors), [`evicted`](Totals::evicted),
/// [`refused`](Totals::refused) or [`force_closed`](Totals::force_closed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Totals {
    /// Connections that ended, newcomers refused at once included.
    pub connections: u64,
    /// Messages answered.
    pub messages: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes of replies sent (or being sent when the connection ended).
    pub bytes_out: u64,
    /// Connections that ended in an error (a timeout, a message over the
    /// framing's limit, a reset, ...), not counting the evicted and
    /// force-closed ones.
    pub errors: u64,
    /// Connections closed to make room for a new client at
    /// [`Limits::max_connections`] ([`Error::Evicted`]).
    pub evicted: u64,
    /// Connections closed unserved for fairness ([`Refusal`]): newcomers
    /// refused at once, and connections refused once their real source was
    /// known ([`Error::Refused`]).
    pub refused: u64,
    /// Connections still open at the shutdown deadline, closed by force.
    pub force_closed: u64,
    /// Connection threads that had not returned when
    /// [`shutdown`](Handle::shutdown) gave up on them (only an [`Events`]
    /// method or a stamp that blocks can cause this). Not in the other counts.
    pub unfinished: u64,
}

impl Totals {
    /// Counts one connection that ended: `forced` closed at the shutdown
    /// deadline, `evicted`, `refused`, or otherwise `failed` in an error.
    pub(crate) fn count(&mut self, summary: &Summary, forced: bool, evicted: bool, refused: bool, failed: bool) {
        self.connections += 1;
        self.messages += summary.messages;
        self.bytes_in += summary.bytes_in;
        self.bytes_out += summary.bytes_out;
        if forced {
            self.force_closed += 1;
        } else if evicted {
            self.evicted += 1;
        } else if refused {
            self.refused += 1;
        } else if failed {
            self.errors += 1;
        }
    }
}

impl fmt::Display for Totals {
    /// One line: `3 connections, 1 message, 96 bytes in, 420 bytes out, 1 error, 0 evicted, 0 force-closed`
    /// (`, 5 refused` and `, 2 unfinished` added when there are any).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |f: &mut fmt::Formatter<'_>, n: u64, one: &str, many: &str| {
            write!(f, "{n} {}", if n == 1 { one } else { many })
        };
        count(f, self.connections, "connection, ", "connections, ")?;
        count(f, self.messages, "message, ", "messages, ")?;
        count(f, self.bytes_in, "byte in, ", "bytes in, ")?;
        count(f, self.bytes_out, "byte out, ", "bytes out, ")?;
        count(f, self.errors, "error, ", "errors, ")?;
        write!(f, "{} evicted, {} force-closed", self.evicted, self.force_closed)?;
        if self.refused > 0 {
            write!(f, ", {} refused", self.refused)?;
        }
        if self.unfinished > 0 {
            write!(f, ", {} unfinished", self.unfinished)?;
        }
        Ok(())
    }
}

/// Starts serving `listener` on a background thread, each connection on its
/// own thread, and returns at once.
///
/// The listener is put in blocking mode (with a receive timeout, on Linux,
/// so that shutdown reaches the accept loop without connecting to it).
///
/// # Errors
///
/// [`Error::Config`] for limits out of range ([`Limits::validate`]), or
/// [`Error::Io`] if the listener cannot be set up or the thread cannot start.
///
/// # Example
///
/// ```
/// use std::net::{TcpListener, TcpStream};
/// use std::time::Duration;
/// use stamp_echo::{EchoClient, EchoServer, Framing, Limits, runner};
///
/// let server = EchoServer::builder().framing(Framing::line()).build()?;
/// let limits = Limits::default().max_connections(64);
/// let handle = runner::start(TcpListener::bind("127.0.0.1:0")?, server, limits, ())?;
///
/// let addr = handle.local_addr().tcp().expect("a TCP listener");
/// let mut client = EchoClient::new(TcpStream::connect(addr)?, Framing::line())?;
/// assert_eq!(client.round_trip(b"hello")?.message(), b"hello");
/// drop(client);
/// assert_eq!(handle.shutdown(Duration::from_secs(5)).messages, 1);
/// # Ok::<(), stamp_echo::Error>(())
/// ```
pub fn start<L: Into<Listener>, E: Events>(
    listener: L,
    server: EchoServer,
    limits: Limits,
    events: E,
) -> Result<Handle, Error> {
    launch(listener.into(), server, limits, None, events)
}

/// [`start`], behind a load balancer: connections from `proxy`'s trusted
/// networks start with a PROXY protocol header (v1 or v2), and are served as
/// the client it names (see [`ProxyProtocol`] for every rule).
///
/// ```
/// use std::io::Write;
/// use std::net::{TcpListener, TcpStream};
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use stamp_echo::runner::{self, Peer, ProxyProtocol};
/// use stamp_echo::{EchoClient, EchoServer, Events, Framing, Limits};
///
/// /// Keeps the peers that connected.
/// #[derive(Default)]
/// struct Seen(Mutex<Vec<Peer>>);
/// impl Events for Seen {
///     fn connected(&self, peer: &Peer) {
///         self.0.lock().unwrap().push(peer.clone());
///     }
/// }
///
/// let seen = Arc::new(Seen::default());
/// let proxy = ProxyProtocol::new(["127.0.0.1".parse()?]);
/// let server = EchoServer::builder().framing(Framing::line()).build()?;
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let handle = runner::start_proxied(listener, server, Limits::default(), proxy, Arc::clone(&seen))?;
///
/// // What a load balancer at 127.0.0.1 does for a client at 192.0.2.7:
/// let mut stream = TcpStream::connect(handle.local_addr().tcp().expect("TCP"))?;
/// stream.write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 56324 8080\r\n")?;
/// let mut client = EchoClient::new(stream, Framing::line())?;
/// assert_eq!(client.round_trip(b"hi")?.message(), b"hi");
/// assert_eq!(seen.0.lock().unwrap()[0].addr.to_string(), "192.0.2.7:56324");
/// # drop(client);
/// # handle.shutdown(Duration::from_secs(5));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// As [`start`], and [`Error::Config`] for a header timeout out of range
/// ([`ProxyProtocol::validate`]).
pub fn start_proxied<L: Into<Listener>, E: Events>(
    listener: L,
    server: EchoServer,
    limits: Limits,
    proxy: ProxyProtocol,
    events: E,
) -> Result<Handle, Error> {
    proxy.validate()?;
    launch(listener.into(), server, limits, Some(proxy), events)
}

fn launch<E: Events>(
    listener: Listener,
    server: EchoServer,
    limits: Limits,
    proxy: Option<ProxyProtocol>,
    events: E,
) -> Result<Handle, Error> {
    limits.validate()?;
    let (listener, wake) = listener.prepare()?;
    let local_addr = listener.local_addr()?;
    let waits = Waits { in_accept: AtomicBool::new(false), changed: Condvar::new() };
    let shared = Arc::new(Shared::new(server, limits, Box::new(events), waits).proxied(proxy));
    let poll = matches!(wake, Wake::Poll);
    let acceptor = {
        let shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("stamp-echo-accept".into())
            .stack_size(limits.stack_size)
            .spawn(move || accept_loop(&shared, &listener, poll))?
    };
    Ok(Handle { shared, acceptor: Some(acceptor), local_addr, wake })
}

/// A running server: its address, its counts, and the way to stop it.
///
/// Dropping the handle shuts the server down as [`Handle::shutdown`] does,
/// with a deadline of [`Handle::DROP_DEADLINE`].
#[derive(Debug)]
#[must_use = "dropping the Handle shuts the server down"]
pub struct Handle {
    shared: Arc<Threads>,
    acceptor: Option<JoinHandle<()>>,
    local_addr: Addr,
    wake: Wake,
}

impl Handle {
    /// The deadline of the shutdown that dropping a [`Handle`] does.
    pub const DROP_DEADLINE: Duration = Duration::from_secs(1);

    /// The address the server listens on (with the real port when the
    /// listener was bound to port 0).
    pub fn local_addr(&self) -> &Addr {
        &self.local_addr
    }

    /// Connections being served now.
    pub fn active(&self) -> usize {
        self.shared.lock().active()
    }

    /// Counts over the connections that have ended so far.
    pub fn totals(&self) -> Totals {
        self.shared.lock().totals()
    }

    /// Stops the server and returns its totals:
    ///
    /// 1. stops accepting: the accept loop sees the stop within 50 ms (it
    ///    never connects to the listener's address, except over TCP where
    ///    `accept()` ignores timeouts) and closes the listener, so clients
    ///    still in the backlog are refused;
    /// 2. shuts down the reading side of every connection: each one answers
    ///    what it has received, sees the end of its input, and closes;
    /// 3. waits for them, up to `deadline` (any length: one too long to
    ///    represent waits until they end);
    /// 4. closes the rest by force (a client that does not read its replies,
    ///    say), counted in [`Totals::force_closed`].
    pub fn shutdown(mut self, deadline: Duration) -> Totals {
        self.stop(deadline)
    }

    fn stop(&mut self, deadline: Duration) -> Totals {
        let until = Instant::now().checked_add(deadline);
        let in_accept = {
            let mut state = self.shared.lock();
            state.stop();
            self.shared.waits.in_accept.load(Ordering::Relaxed)
        };
        self.shared.waits.changed.notify_all();
        let woken = match &self.wake {
            Wake::Connect(addr) if in_accept => {
                TcpStream::connect_timeout(addr, Duration::from_secs(1)).map(drop).is_ok()
            }
            _ => true,
        };
        if let Some(acceptor) = self.acceptor.take() {
            // If the wake-up connection failed, the acceptor stays in accept()
            // until the next client arrives; it then sees `stopping` and ends.
            if woken {
                let _ = acceptor.join();
            }
        }
        let state = self.shared.wait_idle(until);
        let state = if state.active() > 0 {
            state.force_all();
            drop(state);
            self.shared.wait_idle(Instant::now().checked_add(FORCE_GRACE))
        } else {
            state
        };
        state.final_totals()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if !self.shared.lock().stopping() {
            self.stop(Self::DROP_DEADLINE);
        }
    }
}

/// What the runner's threads share.
type Threads = Shared<Conn, Waits>;

/// How the thread runner waits and wakes.
#[derive(Debug)]
struct Waits {
    /// The acceptor is in (or about to call) `accept()`. Read and written
    /// under the registry's lock, with its `stopping`.
    in_accept: AtomicBool,
    /// Signalled when a connection ends and when shutdown starts.
    changed: Condvar,
}

impl Threads {
    /// Waits until no connection is active, or `until` (`None`: no limit).
    fn wait_idle(&self, until: Option<Instant>) -> MutexGuard<'_, Registry<Conn>> {
        let mut state = self.lock();
        while state.active() > 0 {
            state = match until {
                None => self.waits.changed.wait(state).unwrap_or_else(PoisonError::into_inner),
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    self.waits.changed.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0
                }
            };
        }
        state
    }

    /// After `accept()` or the start of a connection's thread failed: waits
    /// for a connection to end, at most 100 ms. Out of descriptors, memory or
    /// threads (`scarce`), first makes room at the largest source's expense
    /// (see [`Registry::out_of_resources`]). `false` if the runner is
    /// stopping.
    fn relieve(&self, scarce: bool) -> bool {
        const RETRY: Duration = Duration::from_millis(100);
        let mut state = self.lock();
        if state.stopping() {
            return false;
        }
        if scarce {
            state.out_of_resources(self.now());
        }
        drop(self.waits.changed.wait_timeout(state, RETRY));
        true
    }

    /// What to do with a newcomer from `source` (see
    /// [fairness](Limits#fair-to-every-source) and [`Registry::decide`]):
    /// holds it while the decision is to wait, then returns the lock and
    /// [`Decision::Admit`] or [`Decision::Refuse`]; `None` when the runner is
    /// stopping.
    fn admission(&self, source: Source, per_source: bool) -> Option<(MutexGuard<'_, Registry<Conn>>, Decision)> {
        let mut state = self.lock();
        loop {
            if state.stopping() {
                return None;
            }
            match state.decide_with(source, self.now(), per_source) {
                Decision::Wait(wait) => {
                    state = self.waits.changed.wait_timeout(state, wait).unwrap_or_else(PoisonError::into_inner).0;
                }
                decision => return Some((state, decision)),
            }
        }
    }
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Accepts connections until shutdown. At `max_connections` it keeps
/// accepting, and admits or refuses each new client at once as
/// [`Threads::admission`] decides (holding it only without eviction, or
/// while too many evicted connections are on their way out).
fn accept_loop(shared: &Arc<Threads>, listener: &Listener, poll: bool) {
    // `accepting` is reported once per connection served, not at every tick.
    let mut announced = false;
    loop {
        {
            let state = shared.lock();
            if state.stopping() {
                return;
            }
            shared.waits.in_accept.store(true, Ordering::Relaxed);
        }
        if !announced {
            shared.events.accepting();
            announced = true;
        }
        let accepted = listener.accept();
        let state = shared.lock();
        shared.waits.in_accept.store(false, Ordering::Relaxed);
        if state.stopping() {
            return; // the connection, if any, is closed unserved
        }
        match accepted {
            Ok((stream, addr)) => {
                drop(state);
                // The thread runner cannot read a Unix peer's user (see `Source`).
                let source = Source::of(&addr);
                let Some((mut state, decision)) = shared.admission(source, shared.per_source_cap(&addr)) else {
                    return;
                };
                if let Decision::Refuse(reason) = decision {
                    let peer = Peer { id: state.refused(), addr, source };
                    drop(state);
                    drop(stream);
                    shared.events.refused(&peer, reason);
                    continue;
                }
                announced = false;
                let conn = Arc::new(Conn {
                    stream,
                    forced: AtomicBool::new(false),
                    evicted: AtomicBool::new(false),
                    refused: OnceLock::new(),
                    progress: AtomicU64::new(shared.now()),
                    idle: AtomicU64::new(0),
                });
                let peer = Peer { id: state.admit(Arc::clone(&conn), source), addr, source };
                drop(state);
                spawn_connection(shared, conn, peer);
            }
            Err(e) if stop::is_tick(&e) => {
                drop(state);
                if poll {
                    thread::sleep(stop::TICK);
                }
            }
            Err(e) if stop::is_transient(&e) => {}
            Err(e) => {
                drop(state);
                shared.events.accept_failed(&e);
                shared.relieve(stop::is_out_of_resources(&e));
            }
        }
    }
}

/// Configures the connection (timeouts, no Nagle), reports it, and gives it a thread.
fn spawn_connection(shared: &Arc<Threads>, conn: Arc<Conn>, peer: Peer) {
    let limits = &shared.limits;
    // Closes and counts the connection when dropped: an error unless served cleanly.
    let ending = Ending {
        shared: Arc::clone(shared),
        id: peer.id,
        conn: Some(Arc::clone(&conn)),
        summary: Summary::default(),
        failed: true,
    };
    if let Err(e) = conn.stream.configure(limits.idle_timeout, limits.write_timeout) {
        shared.events.closed(&peer, &Summary::default(), Some(&Error::Io(e)));
        return;
    }
    // Behind a trusted proxy, the peer is known once its header is read.
    let behind = shared.proxy.as_ref().is_some_and(|proxy| proxy.expects_header(&peer.addr));
    if !behind {
        shared.events.connected(&peer);
    }
    drop(conn);
    // The thread takes the `Ending` from `handoff`, so that it is still here
    // if the thread cannot start (out of memory or threads): then the runner
    // makes room as when out of descriptors, and tries again.
    let handoff = Arc::new(Mutex::new(Some(ending)));
    loop {
        let (theirs, their_peer) = (Arc::clone(&handoff), peer.clone());
        let spawned =
            thread::Builder::new().name("stamp-echo-conn".into()).stack_size(limits.stack_size).spawn(move || {
                let ending = theirs.lock().unwrap_or_else(PoisonError::into_inner).take();
                if let Some(ending) = ending {
                    serve_connection(ending, &their_peer, behind);
                }
            });
        let Err(e) = spawned else { return };
        let e = io::Error::new(e.kind(), format!("cannot start a thread for connection {}: {e}", peer.id));
        shared.events.accept_failed(&e);
        if !shared.relieve(true) {
            // Stopping: the `Ending`, dropped with `handoff`, closes and
            // counts the connection. Say why.
            shared.events.closed(&peer, &Summary::default(), Some(&Error::Io(e)));
            return;
        }
    }
}

/// Runs on the connection's thread; `behind` a trusted proxy, reads its
/// header first.
fn serve_connection(mut ending: Ending, peer: &Peer, behind: bool) {
    let Ending { shared, conn: Some(conn), summary, .. } = &mut ending else { return };
    let track = Track::new(&shared.limits);
    let mut stream = Guarded { conn, track: &track, limits: &shared.limits };
    let client = match &shared.proxy {
        Some(proxy) if behind => match shared.arrived(peer, read_header(&mut stream, proxy.header_timeout)) {
            Ok(client) => client,
            Err(failed) => {
                ending.failed = failed;
                return;
            }
        },
        Some(_) => {
            track.sniff.set(true);
            peer.clone()
        }
        None => peer.clone(),
    };
    let watch = Watch { events: shared.events.as_ref(), peer: &client, summary, track: &track, conn, shared };
    let result = shared.server.serve_with(stream, watch);
    shared.events.closed(&client, summary, result.as_ref().err());
    ending.failed = result.is_err();
}

/// Reads a trusted proxy's header (see [`HeaderRead`]) within `timeout`:
/// `None` if the proxy closed without sending a byte. The client's bytes
/// stay in the socket.
fn read_header(stream: &mut Guarded<'_>, timeout: Duration) -> Result<Option<ProxyHeader>, Error> {
    let track = stream.track;
    track.header.set(Some((Instant::now().checked_add(timeout).unwrap_or_else(far_future), timeout)));
    let mut read = HeaderRead::new();
    loop {
        let n = match stream.read(read.buffer()) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::from_io(e)),
        };
        if read.filled(n)? {
            break;
        }
    }
    // The message deadline starts with the client's first byte, not the header's.
    track.header.set(None);
    track.started.set(None);
    Ok(read.header())
}

/// An instant further than any deadline (for one too long to represent).
fn far_future() -> Instant {
    Instant::now() + Limits::MAX_TIMEOUT * 2
}

/// Passes each message to [`Events::message`], keeps the message deadline
/// and the connection's progress, and keeps the final counts.
struct Watch<'a> {
    events: &'a dyn Events,
    peer: &'a Peer,
    summary: &'a mut Summary,
    track: &'a Track,
    conn: &'a Conn,
    shared: &'a Threads,
}

impl Observer for Watch<'_> {
    fn message(&mut self, fragment: Fragment<'_>) {
        if fragment.is_last() {
            self.track.started.set(None);
            self.conn.progress.store(self.shared.clock(self.track.last_read.get()), Ordering::Relaxed);
        } else if self.track.started.get().is_none() {
            self.track.started.set(Some(self.track.last_read.get()));
        }
        self.events.message(self.peer, fragment);
    }

    fn finished(&mut self, summary: &Summary, _error: Option<&Error>) {
        *self.summary = *summary;
    }
}

/// One connection's deadlines, kept on its own thread.
struct Track {
    /// When the first byte of the message not yet complete arrived.
    started: Cell<Option<Instant>>,
    /// When the last read that returned bytes returned (or the connection began).
    last_read: Cell<Instant>,
    /// When the first of the replies to the last read was written.
    writing_since: Cell<Option<Instant>>,
    /// The socket's read and write timeouts, as last set.
    read_timeout: Cell<Option<Duration>>,
    write_timeout: Cell<Option<Duration>>,
    /// While a trusted proxy's header is read: its deadline, and the timeout.
    header: Cell<Option<(Instant, Duration)>>,
    /// The next read that returns bytes is the first of a peer that is not
    /// a trusted proxy, under the PROXY protocol: refused if it begins with
    /// a header's signature.
    sniff: Cell<bool>,
}

impl Track {
    fn new(limits: &Limits) -> Track {
        Track {
            started: Cell::new(None),
            last_read: Cell::new(Instant::now()),
            writing_since: Cell::new(None),
            read_timeout: Cell::new(limits.idle_timeout),
            write_timeout: Cell::new(limits.write_timeout),
            header: Cell::new(None),
            sniff: Cell::new(false),
        }
    }
}

/// The connection's socket, reading and writing against the deadlines of
/// [`Limits`]: before a read or write it lowers the socket's timeout to the
/// time left when that is needed, and on a timeout it checks which deadline,
/// if any, has passed. Its errors carry [`TimeoutError::Idle`],
/// [`TimeoutError::Message`], [`TimeoutError::Write`] or [`Error::Evicted`].
struct Guarded<'a> {
    conn: &'a Conn,
    track: &'a Track,
    limits: &'a Limits,
}

impl Guarded<'_> {
    /// The socket's `which` timeout, lowered if a read or write of it would
    /// otherwise return well after `left`, or set afresh after `woke` early.
    fn aim(&self, current: &Cell<Option<Duration>>, left: Option<Duration>, woke: bool, read: bool) -> io::Result<()> {
        let need = match (current.get(), left) {
            (_, Some(left)) if woke => Some(left),
            (None, Some(left)) => Some(left),
            (Some(set), Some(left)) if set > left + (left / 16).min(Duration::from_millis(250)) => Some(left),
            (Some(_), None) if woke => None,
            _ => return Ok(()),
        };
        let need = need.map(|t| t.max(Limits::MIN_TIMEOUT));
        if need != current.get() {
            self.conn.stream.set_timeout(read, need)?;
            current.set(need);
        }
        Ok(())
    }

    /// The error to return when the socket failed or ended: [`Error::Evicted`]
    /// if the runner evicted it, [`Error::Refused`] if it refused it.
    fn evicted(&self) -> Option<io::Error> {
        let error = if let Some(&reason) = self.conn.refused.get() {
            Error::Refused { reason }
        } else if self.conn.evicted.load(Ordering::Relaxed) {
            Error::Evicted { idle: Duration::from_nanos(self.conn.idle.load(Ordering::Relaxed)) }
        } else {
            return None;
        };
        Some(error.into_io(io::ErrorKind::ConnectionAborted))
    }
}

impl Read for Guarded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let track = self.track;
        track.writing_since.set(None);
        let mut woke = false;
        loop {
            let now = Instant::now();
            let idle =
                self.limits.idle_timeout.map(|t| (track.last_read.get() + t, Error::Timeout(TimeoutError::Idle)));
            let message = match (track.started.get(), self.limits.message_timeout) {
                (Some(started), Some(t)) => Some((started + t, Error::Timeout(TimeoutError::Message { timeout: t }))),
                _ => None,
            };
            let header = track.header.get().map(|(at, timeout)| (at, TimeoutError::ProxyHeader { timeout }.into()));
            let first = [idle, message, header].into_iter().flatten().min_by_key(|(at, _)| *at);
            let left = match first {
                Some((at, error)) if at <= now => return Err(error.into_io(io::ErrorKind::TimedOut)),
                Some((at, _)) => Some(at - now),
                None => None,
            };
            self.aim(&track.read_timeout, left, woke, true)?;
            match (&self.conn.stream).read(buf) {
                Ok(0) => return self.evicted().map_or(Ok(0), Err),
                Ok(n) => {
                    let now = Instant::now();
                    track.last_read.set(now);
                    if track.started.get().is_none() {
                        track.started.set(Some(now));
                    }
                    if track.sniff.replace(false) && has_signature(&buf[..n]) {
                        return Err(Error::from(ProxyError::Untrusted).into_io(io::ErrorKind::PermissionDenied));
                    }
                    return Ok(n);
                }
                Err(e) if stop::is_tick(&e) => woke = true,
                Err(e) => return Err(self.evicted().unwrap_or(e)),
            }
        }
    }
}

impl Write for Guarded<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(timeout) = self.limits.write_timeout else {
            return (&self.conn.stream).write(buf).map_err(|e| self.evicted().unwrap_or(e));
        };
        let since = self.track.writing_since.get().unwrap_or_else(Instant::now);
        self.track.writing_since.set(Some(since));
        let mut woke = false;
        loop {
            let left = (since + timeout).saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout(TimeoutError::Write { timeout }).into_io(io::ErrorKind::TimedOut));
            }
            self.aim(&self.track.write_timeout, Some(left), woke, false)?;
            match (&self.conn.stream).write(buf) {
                Err(e) if stop::is_tick(&e) => woke = true,
                Err(e) => return Err(self.evicted().unwrap_or(e)),
                Ok(n) => return Ok(n),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Closes and counts a connection when its thread ends, however it ends
/// (panics included), or when its thread could not start.
struct Ending {
    shared: Arc<Threads>,
    id: u64,
    conn: Option<Arc<Conn>>,
    summary: Summary,
    failed: bool,
}

impl Drop for Ending {
    fn drop(&mut self) {
        // After leaving the registry its flags no longer change.
        let registered = self.shared.lock().leave(self.id);
        let flags = self.conn.as_deref().map_or(Flags::default(), Flags::of);
        // Close the socket before the slot is freed, so that open sockets
        // never outnumber `max_connections` (plus the one being let in).
        drop(registered);
        drop(self.conn.take());
        self.shared.lock().ended(&self.summary, flags, self.failed);
        self.shared.waits.changed.notify_all();
    }
}

/// One connection's socket, shared by its thread and the registry.
#[derive(Debug)]
struct Conn {
    stream: Stream,
    /// Closed by [`Handle::shutdown`] at its deadline.
    forced: AtomicBool,
    /// Closed to make room for a new connection.
    evicted: AtomicBool,
    /// Closed once its source was known, and why.
    refused: OnceLock<Refusal>,
    /// When it last completed a message (or was accepted), in nanoseconds
    /// since the runner's epoch.
    progress: AtomicU64,
    /// When evicted: how long it had gone without completing a message, in
    /// nanoseconds.
    idle: AtomicU64,
}

impl Entry for Conn {
    fn progress(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }

    fn is_refused(&self) -> bool {
        self.refused.get().is_some()
    }

    fn is_forced(&self) -> bool {
        self.forced.load(Ordering::Relaxed)
    }

    fn evict(&self, idle: Duration) {
        self.idle.store(nanos(idle), Ordering::Relaxed);
        self.evicted.store(true, Ordering::Relaxed);
        // Wakes its thread whether it is reading or writing.
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn refuse(&self, reason: Refusal) {
        let _ = self.refused.set(reason);
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn end_input(&self) {
        // Already closed by the peer is fine.
        let _ = self.stream.shutdown(Shutdown::Read);
    }

    fn force(&self) {
        self.forced.store(true, Ordering::Relaxed);
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Stream {
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            #[cfg(unix)]
            Stream::Unix(s) => s.shutdown(how),
        }
    }

    /// Sets the limits' timeouts, and turns Nagle's algorithm off on TCP: the
    /// replies to one read go out in one write, so Nagle could only delay them
    /// (a long chunk-framing message answered read by read would wait for the
    /// client's delayed acknowledgement: 43 ms per round trip, measured).
    fn configure(&self, read: Option<Duration>, write: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nodelay(true)?,
            #[cfg(unix)]
            Stream::Unix(_) => {}
        }
        self.set_timeout(true, read)?;
        self.set_timeout(false, write)
    }

    /// Sets the read (`read`) or write timeout.
    fn set_timeout(&self, read: bool, timeout: Option<Duration>) -> io::Result<()> {
        match (self, read) {
            (Stream::Tcp(s), true) => s.set_read_timeout(timeout),
            (Stream::Tcp(s), false) => s.set_write_timeout(timeout),
            #[cfg(unix)]
            (Stream::Unix(s), true) => s.set_read_timeout(timeout),
            #[cfg(unix)]
            (Stream::Unix(s), false) => s.set_write_timeout(timeout),
        }
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).read(buf),
            #[cfg(unix)]
            Stream::Unix(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).write(buf),
            #[cfg(unix)]
            Stream::Unix(s) => (&*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Listener, Stream, Totals};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    #[test]
    fn accepted_tcp_streams_get_nodelay_and_the_timeouts() {
        let listener = Listener::from(TcpListener::bind("127.0.0.1:0").expect("bind"));
        let addr = listener.local_addr().expect("address").tcp().expect("a TCP address");
        let _client = TcpStream::connect(addr).expect("connect");
        let (stream, _) = listener.accept().expect("accept");
        // Without Unix sockets, TCP is the only kind of stream.
        #[cfg_attr(not(unix), allow(irrefutable_let_patterns))]
        let Stream::Tcp(tcp) = &stream else { panic!("a TCP stream") };
        assert!(!tcp.nodelay().expect("nodelay"), "Nagle is on by default");
        let (read, write) = (Some(Duration::from_secs(7)), Some(Duration::from_secs(9)));
        stream.configure(read, write).expect("configure");
        assert!(tcp.nodelay().expect("nodelay"));
        assert_eq!((tcp.read_timeout().ok().flatten(), tcp.write_timeout().ok().flatten()), (read, write));
    }

    /// Totals with every count `n`.
    fn all(n: u64) -> Totals {
        Totals {
            connections: n,
            messages: n,
            bytes_in: n,
            bytes_out: n,
            errors: n,
            evicted: n,
            refused: n,
            force_closed: n,
            unfinished: n,
        }
    }

    #[test]
    fn totals_count_one_in_the_singular_and_others_in_the_plural() {
        assert_eq!(
            all(1).to_string(),
            "1 connection, 1 message, 1 byte in, 1 byte out, 1 error, 1 evicted, 1 force-closed, 1 refused, 1 unfinished"
        );
        assert_eq!(
            all(2).to_string(),
            "2 connections, 2 messages, 2 bytes in, 2 bytes out, 2 errors, 2 evicted, 2 force-closed, 2 refused, 2 unfinished"
        );
        // Zero is plural, and no refusals or unfinished threads go unmentioned.
        assert_eq!(
            all(0).to_string(),
            "0 connections, 0 messages, 0 bytes in, 0 bytes out, 0 errors, 0 evicted, 0 force-closed"
        );
    }
}
