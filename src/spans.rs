//! The spans a server's work runs in (feature `tracing`; without it, these
//! are empty and cost nothing): each runner connection runs inside
//! `connection{peer, id, source}` (and `client`, once a trusted proxy has
//! named it), the UDP server inside `udp{local}`. A subscriber so sees each
//! event nested in the connection it concerns.
//!
//! The runners only create the span and enter it on the connection's
//! thread, or instrument its task with it; everything else is here.

#[cfg(feature = "tracing")]
use std::fmt;
#[cfg(feature = "tokio-runner")]
use std::future::Future;
use std::net::SocketAddr;

#[cfg(feature = "tracing")]
use crate::escape::escape_path;
#[cfg(feature = "tracing")]
use crate::vocabulary::Addr;
use crate::vocabulary::Peer;

/// The most bytes of a peer's name a span shows, and by default an event
/// (`TracingEvents::DEFAULT_MAX_LEN`).
#[cfg(feature = "tracing")]
pub(crate) const MAX_LEN: usize = 256;

/// A span to run a connection or a server in.
#[derive(Clone, Debug)]
pub(crate) struct Span {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

/// A future running inside its [`Span`].
#[cfg(all(feature = "tokio-runner", feature = "tracing"))]
pub(crate) type Instrumented<F> = tracing::instrument::Instrumented<F>;
/// A future running inside its [`Span`].
#[cfg(all(feature = "tokio-runner", not(feature = "tracing")))]
pub(crate) type Instrumented<F> = F;

/// The span entered on this thread until dropped.
#[must_use = "the span is left when this is dropped"]
pub(crate) struct Entered {
    #[cfg(feature = "tracing")]
    _entered: tracing::span::EnteredSpan,
}

impl Span {
    /// `connection{peer, id, source}` (target `stamp_echo::runner`, INFO),
    /// the peer's name escaped.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn connection(peer: &Peer) -> Span {
        Span {
            #[cfg(feature = "tracing")]
            span: tracing::info_span!(target: "stamp_echo::runner", "connection",
                peer = %PeerName::new(peer, MAX_LEN), id = peer.id, source = %peer.source,
                client = tracing::field::Empty),
        }
    }

    /// `udp{local}` (target `stamp_echo::datagram`, INFO): a UDP server at `local`.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn udp(local: Option<SocketAddr>) -> Span {
        Span {
            #[cfg(feature = "tracing")]
            span: match local {
                Some(local) => tracing::info_span!(target: "stamp_echo::datagram", "udp", local = %local),
                None => tracing::info_span!(target: "stamp_echo::datagram", "udp", local = tracing::field::Empty),
            },
        }
    }

    /// Enters the span on this thread until the guard is dropped.
    pub(crate) fn enter(self) -> Entered {
        Entered {
            #[cfg(feature = "tracing")]
            _entered: self.span.entered(),
        }
    }

    /// Runs `f` inside the span.
    pub(crate) fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        #[cfg(feature = "tracing")]
        return self.span.in_scope(f);
        #[cfg(not(feature = "tracing"))]
        f()
    }

    /// `future`, entering the span each time it is polled.
    #[cfg(feature = "tokio-runner")]
    pub(crate) fn instrument<F: Future>(self, future: F) -> Instrumented<F> {
        #[cfg(feature = "tracing")]
        return tracing::Instrument::instrument(future, self.span);
        #[cfg(not(feature = "tracing"))]
        future
    }
}

/// A trusted proxy has named the connection's `client`: the current
/// connection span says so (field `client`).
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(crate) fn arrived(client: &Peer) {
    #[cfg(feature = "tracing")]
    tracing::Span::current().record("client", tracing::field::display(PeerName::new(client, MAX_LEN)));
}

/// A peer as a log shows it: a Unix path escaped byte for byte, a UDP
/// sender as its address alone, others as displayed, escaped and cut.
#[cfg(feature = "tracing")]
pub(crate) struct PeerName<'a> {
    peer: &'a Peer,
    max_len: usize,
}

#[cfg(feature = "tracing")]
impl<'a> PeerName<'a> {
    /// `peer`'s name, cut at `max_len` bytes.
    pub(crate) fn new(peer: &'a Peer, max_len: usize) -> PeerName<'a> {
        PeerName { peer, max_len }
    }
}

#[cfg(feature = "tracing")]
impl fmt::Display for PeerName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.peer.addr {
            Addr::Unix(Some(path)) => escape_path(path).max_len(self.max_len).fmt(f),
            Addr::Tcp(addr) | Addr::Udp(addr) => addr.fmt(f),
            Addr::Unix(None) => self.peer.fmt(f),
        }
    }
}
