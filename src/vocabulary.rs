//! The servers' vocabulary, shared by both runners and UDP: the [`Limits`]
//! a runner keeps, the [`Events`] it reports, who a [`Peer`] is ([`Addr`],
//! [`Source`]) and the [`Totals`] it counts. Its items are public under
//! [`runner`](crate::runner) (and the crate root), where users name them.

mod handle;
mod source;

pub(crate) use handle::Serving;
pub use handle::{Handle, Stopping};
pub use source::Source;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::Error;
use crate::bounds::Bound;
use crate::error::{Dropped, Refusal};
use crate::protocol::{Fragment, Summary};

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
/// | limit | default | range (its [`Bound`]) | at the limit |
/// |---|---|---|---|
/// | `max_connections` | 1024 | 1 to 1,000,000 ([`MAX_CONNECTIONS`](Limits::MAX_CONNECTIONS)) | room is made at the expense of the [`Source`] holding the most connections (see [below](#fair-to-every-source)): its connection longest without completing a message is evicted ([`Error::Evicted`]), or a newcomer from it refused ([`Refusal`]) |
/// | `max_per_source` | `None` | 1 to 1,000,000, or `None` ([`MAX_PER_SOURCE`](Limits::MAX_PER_SOURCE)) | a new client from a source holding that many takes the slot of the source's own connection longest without completing a message, once past `eviction_grace`, or is refused ([`Refusal::SourceLimit`]) |
/// | `eviction_grace` | 500 ms | 1 ms to 30 days, or `None` ([`EVICTION_GRACE`](Limits::EVICTION_GRACE)) | a connection younger than this (or that completed a message since) is not evicted; `None`: never evict, new clients wait in the backlog |
/// | `idle_timeout` | 300 s | 1 ms to 30 days, or `None` ([`IDLE_TIMEOUT`](Limits::IDLE_TIMEOUT)) | a connection that sends nothing for that long is closed with [`TimeoutError::Idle`](crate::TimeoutError::Idle) |
/// | `message_timeout` | 30 s | 1 ms to 30 days, or `None` ([`MESSAGE_TIMEOUT`](Limits::MESSAGE_TIMEOUT)) | a message not complete that long after its first byte closes its connection with [`TimeoutError::Message`](crate::TimeoutError::Message) |
/// | `write_timeout` | 30 s | 1 ms to 30 days, or `None` ([`WRITE_TIMEOUT`](Limits::WRITE_TIMEOUT)) | replies to one read not all taken that long after the first was written close the connection with [`TimeoutError::Write`](crate::TimeoutError::Write) |
/// | `stack_size` | 256 KiB | 64 KiB to 64 MiB ([`STACK_SIZE`](Limits::STACK_SIZE)) | the stack each connection thread reserves |
///
/// The framing's own limits (`buffer_size`, `max_line`, `max_frame`) are the
/// [`EchoServer`](crate::EchoServer)'s.
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
    /// [`TimeoutError::Idle`](crate::TimeoutError::Idle) (default 300 s; `None`: never), measured from the
    /// last bytes received.
    pub idle_timeout: Option<Duration>,
    /// How long after its first byte a message must be complete, or its
    /// connection is closed with [`TimeoutError::Message`](crate::TimeoutError::Message) (default 30 s;
    /// `None`: never). The model is nginx's `client_header_timeout` and
    /// HAProxy's `timeout http-request`: trickling bytes resets no clock.
    pub message_timeout: Option<Duration>,
    /// How long the replies to one read may take to leave, from the first
    /// byte written, before the connection is closed with
    /// [`TimeoutError::Write`](crate::TimeoutError::Write) (default 30 s; `None`: never). A client that
    /// sends but never reads, or reads a byte now and then, cannot hold its
    /// thread longer.
    pub write_timeout: Option<Duration>,
    /// The stack size of each connection thread (default 256 KiB, 64 KiB
    /// to 64 MiB). Serving needs a few KiB; raise it if your
    /// [`Stamp`](crate::stamp::Stamp) or [`Events`] need deep stacks.
    pub stack_size: usize,
}

impl Limits {
    /// The range of [`Limits::max_connections`], with its default.
    pub const MAX_CONNECTIONS: Bound<usize> =
        Bound::new("max_connections", 1, 1_000_000).with_default(Self::DEFAULT_MAX_CONNECTIONS);
    /// The range of [`Limits::max_per_source`] (no default: `None`, only
    /// `max_connections`).
    pub const MAX_PER_SOURCE: Bound<usize> = Bound::new("max_per_source", 1, Self::MAX_CONNECTIONS.max()).or_none();
    /// The range of [`Limits::eviction_grace`], with its default.
    pub const EVICTION_GRACE: Bound<Duration> = Self::timeout("eviction_grace", Self::DEFAULT_EVICTION_GRACE);
    /// The range of [`Limits::idle_timeout`], with its default.
    pub const IDLE_TIMEOUT: Bound<Duration> = Self::timeout("idle_timeout", Self::DEFAULT_IDLE_TIMEOUT);
    /// The range of [`Limits::message_timeout`], with its default.
    pub const MESSAGE_TIMEOUT: Bound<Duration> = Self::timeout("message_timeout", Self::DEFAULT_MESSAGE_TIMEOUT);
    /// The range of [`Limits::write_timeout`], with its default.
    pub const WRITE_TIMEOUT: Bound<Duration> = Self::timeout("write_timeout", Self::DEFAULT_WRITE_TIMEOUT);
    /// The range of [`Limits::stack_size`], with its default.
    pub const STACK_SIZE: Bound<usize> = Bound::new("stack_size", Self::MIN_STACK_SIZE, Self::MAX_STACK_SIZE)
        .with_default(Self::DEFAULT_STACK_SIZE)
        .with_unit("bytes");

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
    /// The shortest timeout or grace period (of every duration setting
    /// here, and [`ProxyProtocol::HEADER_TIMEOUT`](crate::runner::ProxyProtocol::HEADER_TIMEOUT)).
    pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);
    /// The longest timeout or grace period (30 days).
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);
    /// The smallest [`Limits::stack_size`].
    pub const MIN_STACK_SIZE: usize = 64 * 1024;
    /// The largest [`Limits::stack_size`].
    pub const MAX_STACK_SIZE: usize = 64 * 1024 * 1024;

    /// A timeout's bound: [`Limits::MIN_TIMEOUT`] to
    /// [`Limits::MAX_TIMEOUT`], or `None`.
    const fn timeout(name: &'static str, default: Duration) -> Bound<Duration> {
        Bound::new(name, Self::MIN_TIMEOUT, Self::MAX_TIMEOUT).with_default(default).or_none()
    }

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
    /// [`start`](crate::runner::start) does.
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
        Self::MAX_CONNECTIONS.check(self.max_connections)?;
        Self::MAX_PER_SOURCE.check_option(self.max_per_source)?;
        Self::EVICTION_GRACE.check_option(self.eviction_grace)?;
        Self::IDLE_TIMEOUT.check_option(self.idle_timeout)?;
        Self::MESSAGE_TIMEOUT.check_option(self.message_timeout)?;
        Self::WRITE_TIMEOUT.check_option(self.write_timeout)?;
        Self::STACK_SIZE.check(self.stack_size)?;
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

    /// The UDP address, if it is one (a started
    /// [`DatagramServer`](crate::datagram::DatagramServer)'s, say).
    pub fn udp(&self) -> Option<SocketAddr> {
        match self {
            Addr::Udp(addr) => Some(*addr),
            Addr::Tcp(_) | Addr::Unix(_) => None,
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

/// What a whole server does, for logging: the thread [runner](crate::runner), the
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
    /// ([`ProxyProtocol`](crate::runner::ProxyProtocol)), once its header is read, with the client it names
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
    /// [`shutdown`](crate::Handle::shutdown) gave up on them (only an [`Events`]
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
