//! [`TracingEvents`]: a server's events as `tracing` events (feature `tracing`).

use std::fmt;
use std::io;

use crate::Error;
use crate::datagram::Dropped;
use crate::escape::escape;
use crate::protocol::{Fragment, Summary};
use crate::runner::{Addr, Events, Peer, Refusal};
use crate::spans::{self, PeerName};

/// The [`Events`] of a thread runner, a tokio runner or a
/// [`DatagramServer`](crate::datagram::DatagramServer) as
/// [`tracing`](https://docs.rs/tracing) events, for your own subscriber
/// (feature `tracing`).
///
/// Each event's message is the original tutorial's log line, and its fields
/// carry the values: `peer` (the address), `id` (the connection's or the
/// datagram's number), `bytes`, `text` (the message), `error`, `reason`. Everything a
/// peer controls (its message, its Unix socket path, an error that quotes its
/// bytes) is [escaped](crate::escape) and cut at
/// [`max_len`](TracingEvents::max_len) bytes, so one event is one line in a
/// text log. Formatting happens only when a subscriber wants the event: with
/// none, or with the level off, an event costs a check of the level.
///
/// | event | level | message |
/// |---|---|---|
/// | [`accepting`](Events::accepting) | DEBUG | `waiting for connection...` |
/// | [`accept_failed`](Events::accept_failed) | WARN | `...accept failed: ERROR` |
/// | [`connected`](Events::connected) | INFO | `...connected from: PEER` |
/// | [`refused`](Events::refused) | INFO | `...connection from PEER refused: REASON` |
/// | [`message`](Events::message), first fragment of each | INFO | `date= MESSAGE` (UDP: `...datagram from ADDR: MESSAGE`) |
/// | [`closed`](Events::closed) with an error | WARN | `...connection from PEER ended: ERROR` (UDP: `...error for ADDR: ERROR`) |
/// | [`closed`](Events::closed) cleanly | TRACE | `...connection from PEER closed` |
/// | [`dropped`](Events::dropped) | DEBUG | `...dropped a datagram from ADDR (REASON)` |
///
/// The target is `stamp_echo::runner` (UDP: `stamp_echo::datagram`).
///
/// With the feature on, whatever the [`Events`], each connection of either
/// runner runs inside an INFO span `connection` with fields `peer` (escaped,
/// as above), `id` and `source` (its [`Source`](crate::runner::Source)),
/// and `client` once a trusted proxy's header has named the real client; a
/// [`DatagramServer`](crate::datagram::DatagramServer) serves inside an INFO
/// span `udp` with field `local` (its address). So a subscriber sees these
/// events nested in the connection or server they concern (all but
/// `accepting`, `accept_failed` and `refused`, which happen in the accept
/// loop).
///
/// ```
/// use std::net::TcpListener;
/// use std::time::Duration;
/// use stamp_echo::{EchoServer, Limits, runner::{self, TracingEvents}};
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let handle = runner::start(listener, EchoServer::builder().build()?, Limits::default(), TracingEvents::new())?;
/// handle.shutdown(Duration::from_secs(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracingEvents {
    max_len: usize,
}

impl Default for TracingEvents {
    fn default() -> Self {
        TracingEvents::new()
    }
}

impl TracingEvents {
    /// The most bytes of a message or a peer's name shown by default.
    pub const DEFAULT_MAX_LEN: usize = spans::MAX_LEN;

    /// Events with peer-controlled fields cut at [`DEFAULT_MAX_LEN`](Self::DEFAULT_MAX_LEN) bytes.
    pub const fn new() -> TracingEvents {
        TracingEvents { max_len: Self::DEFAULT_MAX_LEN }
    }

    /// Shows at most `max_len` bytes of each message, peer name or error
    /// (then `... (N bytes)`).
    #[must_use]
    pub const fn max_len(self, max_len: usize) -> TracingEvents {
        TracingEvents { max_len }
    }

    /// `peer`'s name, escaped and cut: a Unix peer's path byte for byte.
    fn peer<'a>(&self, peer: &'a Peer) -> PeerName<'a> {
        PeerName::new(peer, self.max_len)
    }
}

/// Anything displayed (an error may quote a peer's bytes), escaped and cut.
/// Formats into a string: called only for events a subscriber wants.
fn escaped(value: &impl fmt::Display, max_len: usize) -> String {
    escape(value.to_string().as_bytes()).max_len(max_len).to_string()
}

impl Events for TracingEvents {
    fn accepting(&self) {
        tracing::debug!(target: "stamp_echo::runner", "waiting for connection...");
    }

    fn accept_failed(&self, error: &io::Error) {
        tracing::warn!(target: "stamp_echo::runner", error = %error, "...accept failed: {error}");
    }

    fn connected(&self, peer: &Peer) {
        let name = self.peer(peer);
        tracing::info!(target: "stamp_echo::runner", peer = %name, id = peer.id, "...connected from: {name}");
    }

    fn refused(&self, peer: &Peer, reason: Refusal) {
        let name = self.peer(peer);
        tracing::info!(target: "stamp_echo::runner", peer = %name, id = peer.id, reason = %reason,
            "...connection from {name} refused: {reason}");
    }

    fn message(&self, peer: &Peer, fragment: Fragment<'_>) {
        if !fragment.is_first() {
            return;
        }
        let text = escape(fragment.bytes()).max_len(self.max_len);
        let bytes = fragment.bytes().len();
        if let Addr::Udp(addr) = peer.addr {
            tracing::info!(target: "stamp_echo::datagram", peer = %addr, id = peer.id, bytes, text = %text,
                "...datagram from {addr}: {text}");
        } else {
            let name = self.peer(peer);
            let more = if fragment.is_last() { "" } else { " (continues)" };
            tracing::info!(target: "stamp_echo::runner", peer = %name, id = peer.id, bytes, text = %text,
                "date= {text}{more}");
        }
    }

    fn closed(&self, peer: &Peer, summary: &Summary, error: Option<&Error>) {
        let name = self.peer(peer);
        match (error, &peer.addr) {
            (Some(error), Addr::Udp(_)) => {
                let error = escaped(error, self.max_len);
                tracing::warn!(target: "stamp_echo::datagram", peer = %name, id = peer.id, error = %error,
                    "...error for {name}: {error}");
            }
            (Some(error), _) => {
                let error = escaped(error, self.max_len);
                tracing::warn!(target: "stamp_echo::runner", peer = %name, id = peer.id, messages = summary.messages,
                    error = %error, "...connection from {name} ended: {error}");
            }
            (None, _) => {
                tracing::trace!(target: "stamp_echo::runner", peer = %name, id = peer.id, messages = summary.messages,
                    "...connection from {name} closed");
            }
        }
    }

    fn dropped(&self, peer: &Peer, reason: Dropped) {
        let name = self.peer(peer);
        tracing::debug!(target: "stamp_echo::datagram", peer = %name, reason = %reason,
            "...dropped a datagram from {name} ({reason})");
    }
}
