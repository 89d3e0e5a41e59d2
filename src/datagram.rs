//! UDP: one datagram is one message, and gets one reply datagram.
//!
//! The original tutorial explains `SOCK_DGRAM` beside `SOCK_STREAM` but only
//! builds TCP. Over UDP there is nothing to frame: a datagram arrives whole
//! or not at all, so each one is a message and the reply is `[STAMP] MESSAGE`
//! in one datagram, sent back to the sender's address. An empty datagram is a
//! message too: its reply is `[STAMP] `.
//!
//! ## Sizes and the error datagram
//!
//! A UDP datagram carries at most [`MAX_DATAGRAM`] bytes over IPv4 (65,507:
//! 65,535 less the IP and UDP headers); the same limit is used over IPv6. The
//! reply is the message plus the stamp, its brackets and a space, so a message
//! near the limit has a reply that cannot be sent whole. Such a message is
//! never answered with a cut reply: the server sends an **error datagram**
//! instead, UTF-8 text starting with [`ERROR_PREFIX`]:
//!
//! ```text
//! error: reply of 65535 bytes would not fit in one datagram (at most 65507 bytes)
//! ```
//!
//! A reply always starts with `[`, an error datagram never does. The text
//! after the prefix is the [`Error`]'s message ([`ProtocolError::DatagramTooLarge`], or
//! [`Error::Stamp`] from a broken formatter); [`DatagramClient`]
//! returns it as [`ProtocolError::ServerError`].
//!
//! ## Loops and reflection
//!
//! A UDP echo answers whoever a datagram *says* sent it, and nothing checks
//! that: a datagram with a forged source makes the server send its reply to
//! someone who asked for nothing (reflection), and a forged source that is
//! the server itself, or another server that answers everything, starts a
//! loop that never ends (the reason inetd's echo and chargen were switched
//! off). So a [`DatagramServer`] drops, unanswered and counted by
//! [reason](Dropped) in its [`DatagramTotals`]:
//!
//! - a datagram that looks like a reply of this protocol: it starts with a
//!   stamp header `[STAMP] ` (the header [`parse_reply`](crate::protocol::parse_reply) accepts) or with
//!   [`ERROR_PREFIX`]. Two servers (or this one and an echo
//!   service) cannot keep answering each other's replies. The cost: a message
//!   starting with `[x] ` or `error: ` cannot be echoed over UDP
//!   ([`Dropped::for_message`] tells which, and [`DatagramClient`] refuses
//!   such a message with [`MessageError::Unanswerable`] before sending it);
//! - a datagram from the server's own port on this host (its own address,
//!   a loopback address, or any address a socket can be bound to);
//! - a datagram from a source port below 1024 (a service's, such as chargen's,
//!   which would answer the reply with more data) or from a source no packet
//!   can come from (unspecified, broadcast or multicast, port 0);
//! - replies over the [`RateLimit`]: per source (default: 100 a second, in
//!   bursts of up to 100, for each IPv4 address or IPv6 /64, whatever other
//!   sources send, in 128 KiB that never grow) and for all sources together
//!   (default: 10,000 a second).
//!
//! A reply is never more than the request plus its stamp header (20 to 30
//! bytes with the built-in stamps), so a forger gains little: at most about
//! 2x in packet bytes, for the tiniest requests (the README has the measured
//! ratios). The rate limit bounds what one address can be sent, and what all
//! of them together can.
//!
//! ## Loss
//!
//! UDP may lose a request or its reply. [`DatagramClient`] waits a timeout
//! for each reply and sends the request again, a set number of times, then
//! gives up with [`TimeoutError::NoReply`]. Datagrams that do not answer the current
//! request (late replies to an earlier one) are skipped, and counted.
//!
//! ```
//! use std::net::UdpSocket;
//! use std::sync::Arc;
//! use std::time::Duration;
//! use stamp_echo::datagram::{DatagramClient, DatagramServer};
//! use stamp_echo::stamp::Rfc3339;
//!
//! let server = DatagramServer::new(UdpSocket::bind("127.0.0.1:0")?, Arc::new(Rfc3339))?;
//! let addr = server.local_addr()?;
//! let handle = server.start(())?;
//!
//! let mut client = DatagramClient::connect(addr)?;
//! let reply = client.round_trip("你好".as_bytes())?;
//! assert_eq!(reply.message(), "你好".as_bytes());
//! println!("{reply}"); // [2026-11-24T20:12:01.123456Z] 你好
//!
//! let totals = handle.shutdown(Duration::ZERO);
//! assert_eq!(totals.messages, 1);
//! # Ok::<(), stamp_echo::Error>(())
//! ```

use std::fmt;
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::Error;
use crate::bounds::Bound;
use crate::client::Reply;
use crate::framing::Framing;
use crate::protocol::{Fragment, Responder, Summary};
use crate::stamp::{Clock, Stamp, SystemClock};
use crate::stop::{self, Completion};
use crate::vocabulary::{Addr, Events, Handle, Peer, Serving, Source};
use crate::wire::{MAX_STAMP_LEN, check_whole};
use crate::{MessageError, ProtocolError, TimeoutError};

mod defence;

pub use crate::error::Dropped;
pub use defence::{DatagramTotals, DropCounts, RateLimit};
use defence::{Limiter, screen_source};

/// The largest datagram sent or accepted: 65,507 bytes, the most a UDP
/// datagram carries over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

/// The first bytes of an error datagram (see the [module docs](self)).
pub const ERROR_PREFIX: &str = "error: ";

/// Large enough for any UDP datagram, over IPv4 or IPv6: nothing is cut.
const RECEIVE_BUFFER: usize = 65_536;

/// The longest reply a server builds: a whole datagram after the longest
/// stamp header `[STAMP] `.
const LONGEST_REPLY: usize = RECEIVE_BUFFER + MAX_STAMP_LEN + 3;

/// Answers datagrams on a UDP socket with `[STAMP] MESSAGE`, except those
/// that could make it loop or reflect (see the
/// [module docs](self#loops-and-reflection)).
///
/// Made from a bound, unconnected, blocking socket and a stamp;
/// [`start`](DatagramServer::start) it on a thread of its own, and stop it
/// through the [`Handle`] it returns (the one every server of the crate
/// returns), or call the blocking [`serve`](DatagramServer::serve) (from one
/// thread or several). It allocates its buffers once per `serve` call (or
/// `start`), its rate-limit buckets once when made (or given a
/// [`RateLimit`]), and nothing per datagram after that.
///
/// ```
/// use std::net::UdpSocket;
/// use std::sync::Arc;
/// use std::time::Duration;
/// use stamp_echo::datagram::DatagramServer;
/// use stamp_echo::stamp::UnixTime;
///
/// let server = DatagramServer::new(UdpSocket::bind("127.0.0.1:0")?, Arc::new(UnixTime))?;
/// let addr = server.local_addr()?;
/// let handle = server.start(())?;
///
/// let peer = UdpSocket::bind("127.0.0.1:0")?;
/// peer.send_to(b"ping", addr)?;
/// let mut buf = [0; 64];
/// let (n, _) = peer.recv_from(&mut buf)?;
/// assert!(buf[..n].starts_with(b"[") && buf[..n].ends_with(b"] ping"));
///
/// assert_eq!(handle.shutdown(Duration::ZERO).messages, 1);
/// # Ok::<(), stamp_echo::Error>(())
/// ```
pub struct DatagramServer {
    socket: UdpSocket,
    /// The address the socket is bound to.
    bound: SocketAddr,
    stamp: Arc<dyn Stamp>,
    clock: Arc<dyn Clock>,
    shared: Arc<Shared>,
    /// Shared by every `serve` call, so several threads do not multiply the limit.
    limiter: Mutex<Limiter>,
    /// The rate limit given, checked when serving starts (the limiter keeps
    /// the default while it is out of range).
    rate_limit: RateLimit,
}

/// What a server shares with its [`Stopper`]s.
#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    /// Datagrams received, by every `serve` call: the last [`Peer`] id given.
    datagrams: AtomicU64,
}

/// A server [started](DatagramServer::start) on a thread of its own, as its
/// [`Handle`] sees it.
struct Started {
    server: DatagramServer,
    /// The counts so far, as the serving thread last published them.
    live: Mutex<DatagramTotals>,
    /// Completed by the serving thread when it ends.
    stopped: Completion<DatagramTotals>,
}

impl Started {
    fn live(&self) -> MutexGuard<'_, DatagramTotals> {
        // A copy of counts, valid at every step.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Serving<DatagramTotals> for Started {
    fn active(&self) -> usize {
        0
    }

    fn totals(&self) -> DatagramTotals {
        *self.live()
    }

    fn stop(&self, until: Option<Instant>) {
        if self.stopped.ask(until) {
            self.server.shared.stop.store(true, Ordering::SeqCst);
        }
    }

    fn completion(&self) -> &Completion<DatagramTotals> {
        &self.stopped
    }
}

/// Completes a started server's stop with its last counts when its thread
/// ends.
struct Finish<'a>(&'a Started);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let totals = *self.0.live();
        self.0.stopped.complete(totals);
    }
}

impl fmt::Debug for DatagramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramServer")
            .field("socket", &self.socket)
            .field("rate_limit", &self.rate_limit_in_force())
            .finish_non_exhaustive()
    }
}

impl DatagramServer {
    /// A server on `socket`, stamping with `stamp` (a built-in's from
    /// [`StampKind::build`](crate::stamp::StampKind::build), or your own),
    /// reading the [`SystemClock`], with the default [`RateLimit`].
    ///
    /// The socket's read timeout is set to 50 ms: the serving loop comes
    /// back that often to see whether it was stopped (the runner's way, so
    /// nothing is ever sent to the server's address to wake it).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the socket's address cannot be read or its read
    /// timeout set.
    pub fn new(socket: UdpSocket, stamp: Arc<dyn Stamp>) -> Result<DatagramServer, Error> {
        let bound = socket.local_addr()?;
        socket.set_read_timeout(Some(stop::TICK))?;
        let shared = Arc::new(Shared { stop: AtomicBool::new(false), datagrams: AtomicU64::new(0) });
        Ok(DatagramServer {
            socket,
            bound,
            stamp,
            clock: Arc::new(SystemClock),
            shared,
            limiter: Mutex::new(Limiter::new(RateLimit::default())),
            rate_limit: RateLimit::default(),
        })
    }

    /// The same server reading `clock` for "now": for its stamps and for its
    /// rate limit (tests inject a fixed one).
    #[must_use]
    pub fn clock<C: Clock + 'static>(mut self, clock: C) -> DatagramServer {
        self.clock = Arc::new(clock);
        self
    }

    /// The same server with replies limited by `limit`, per source and in
    /// total (the default is [`RateLimit::default`]). Its buckets are
    /// allocated here. Like every setting in the crate, it is checked where
    /// it is used: [`serve`](DatagramServer::serve) refuses a limit out of
    /// range ([`RateLimit::validate`]) before it receives anything; call
    /// `validate` first to know before.
    #[must_use]
    pub fn rate_limit(self, limit: RateLimit) -> DatagramServer {
        // An out-of-range limit is never allocated: serving refuses it.
        let limiter = if limit.validate().is_ok() { Mutex::new(Limiter::new(limit)) } else { self.limiter };
        DatagramServer { limiter, rate_limit: limit, ..self }
    }

    /// The rate limit in force.
    pub fn rate_limit_in_force(&self) -> RateLimit {
        self.limiter().limit()
    }

    /// The address the socket is bound to (with the port the system picked
    /// when bound to port 0).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the socket's address cannot be read.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        Ok(self.socket.local_addr()?)
    }

    /// A handle that stops this server from any thread.
    #[deprecated(since = "0.2.0", note = "use `DatagramServer::start` and its `Handle`")]
    #[allow(deprecated)]
    pub fn stopper(&self) -> Stopper {
        Stopper { shared: Arc::clone(&self.shared) }
    }

    /// Serves on this thread until stopped (by the deprecated [`Stopper`]
    /// only: a server stopped through a [`Handle`] is
    /// [started](DatagramServer::start)), then returns the counts of this
    /// call. See [`serve_with`](DatagramServer::serve_with).
    ///
    /// # Errors
    ///
    /// As [`serve_with`](DatagramServer::serve_with).
    pub fn serve(&self) -> Result<DatagramTotals, Error> {
        self.serve_with(())
    }

    /// Serves until stopped, showing each datagram to `events` (as
    /// [described there](Events#over-udp)): the same [`Events`] a
    /// [runner](crate::runner) takes, each datagram from its own [`Peer`]
    /// with an [`Addr::Udp`] address.
    ///
    /// A datagram is dropped unanswered if it could make the server loop or
    /// reflect (see the [module docs](self#loops-and-reflection)); every
    /// other one gets one reply datagram, built by a
    /// [`Responder`] (its [`reply_to`](Responder::reply_to)): its echo, or an
    /// error datagram. A failure concerns that sender only and serving goes
    /// on. Each datagram counts once in the [`DatagramTotals`].
    ///
    /// # Errors
    ///
    /// [`Error::Config`] at once for a [rate limit](DatagramServer::rate_limit)
    /// out of range; [`Error::Io`] if the socket itself fails (not for a
    /// reply that cannot be sent: that is shown to `events`).
    pub fn serve_with<E: Events>(&self, events: E) -> Result<DatagramTotals, Error> {
        self.rate_limit.validate()?;
        let mut totals = DatagramTotals::default();
        self.run(&events, &mut totals, |_| {})?;
        Ok(totals)
    }

    /// Serves on a thread of its own until its [`Handle`] stops it, showing
    /// each datagram to `events` as [`serve_with`](DatagramServer::serve_with)
    /// does, and returns at once. The handle's
    /// [`totals`](Handle::totals) are the counts so far, its
    /// [`shutdown`](Handle::shutdown) (or
    /// [`shutdown_async`](Handle::shutdown_async), or dropping it) stops the
    /// server within 50 ms and returns the final counts; its
    /// [`local_addr`](Handle::local_addr) is an [`Addr::Udp`]. If the socket
    /// itself fails, the server stops: the error goes to
    /// [`Events::accept_failed`], and the handle keeps the counts.
    ///
    /// ```
    /// use std::net::UdpSocket;
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use stamp_echo::datagram::{DatagramClient, DatagramServer};
    /// use stamp_echo::stamp::UnixTime;
    ///
    /// let server = DatagramServer::new(UdpSocket::bind("127.0.0.1:0")?, Arc::new(UnixTime))?;
    /// let handle = server.start(())?;
    /// let addr = handle.local_addr().udp().expect("a UDP address");
    /// let mut client = DatagramClient::connect(addr)?;
    /// assert_eq!(client.round_trip(b"ping")?.message(), b"ping");
    /// assert_eq!(handle.shutdown(Duration::from_secs(1)).messages, 1);
    /// # Ok::<(), stamp_echo::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a [rate limit](DatagramServer::rate_limit) out of
    /// range; [`Error::Io`] if the thread cannot start.
    pub fn start<E: Events>(self, events: E) -> Result<Handle<DatagramTotals>, Error> {
        self.rate_limit.validate()?;
        let local_addr = Addr::Udp(self.bound);
        let started =
            Arc::new(Started { server: self, live: Mutex::new(DatagramTotals::default()), stopped: Completion::new() });
        let theirs = Arc::clone(&started);
        thread::Builder::new().name("stamp-echo-udp".into()).spawn(move || {
            // Completes the stop however this thread ends (panics included).
            let finish = Finish(&theirs);
            let mut totals = DatagramTotals::default();
            let result = theirs.server.run(&events, &mut totals, |totals| *finish.0.live() = *totals);
            if let Err(Error::Io(e)) = &result {
                events.accept_failed(e);
            }
        })?;
        Ok(Handle::new(local_addr, started))
    }

    /// Serves until stopped, counting in `totals` and showing them to
    /// `publish` after each datagram.
    fn run<E: Events>(
        &self,
        events: &E,
        totals: &mut DatagramTotals,
        mut publish: impl FnMut(&DatagramTotals),
    ) -> Result<(), Error> {
        let mut input = vec![0u8; RECEIVE_BUFFER];
        // Room for the longest reply built, a whole datagram under the
        // longest stamp header, so `out` never grows (even for a reply too
        // large to send, which is built and then replaced).
        let mut out = Vec::with_capacity(LONGEST_REPLY);
        let mut responder = Responder::new(Framing::chunk(), Arc::clone(&self.stamp));
        let _span = crate::spans::Span::udp(self.socket.local_addr().ok()).enter();
        while !self.shared.stop.load(Ordering::SeqCst) {
            let (n, from) = match self.socket.recv_from(&mut input) {
                Ok(received) => received,
                // The tick lets the loop look at the stop flag; a refused or
                // reset error is an earlier peer gone away (reported on some
                // systems), no reason to stop serving the others.
                Err(e) if stop::is_tick(&e) || stop::is_transient(&e) => continue,
                Err(e) => return Err(Error::Io(e)),
            };
            if self.shared.stop.load(Ordering::SeqCst) {
                break;
            }
            let message = &input[..n];
            totals.datagrams += 1;
            totals.bytes_in += n as u64;
            let id = self.shared.datagrams.fetch_add(1, Ordering::Relaxed) + 1;
            let peer = Peer { id, addr: Addr::Udp(from), source: Source::from(from.ip()) };
            let now = self.clock.now();
            let screened = screen_source(from, self.bound)
                .or_else(|| Dropped::for_message(message))
                .or_else(|| self.limiter().check(from.ip(), now).err());
            if let Some(reason) = screened {
                totals.dropped.record(reason);
                publish(totals);
                events.dropped(&peer, reason);
                continue;
            }
            out.clear();
            let mut failure = match responder.reply_to(message, now, &mut out) {
                Ok(()) if out.len() > MAX_DATAGRAM => {
                    Some(ProtocolError::DatagramTooLarge { size: out.len(), max: MAX_DATAGRAM }.into())
                }
                Ok(()) => None,
                Err(e) => Some(e),
            };
            match &failure {
                None => {
                    events.message(&peer, Fragment::new(message, 0, true));
                    totals.messages += 1;
                }
                Some(e) => {
                    totals.errors += 1;
                    out.clear();
                    // Writing to a Vec cannot fail; the text is far shorter than `out`'s room.
                    let _ = write!(out, "{ERROR_PREFIX}{e}");
                }
            }
            let mut summary = Summary { messages: u64::from(failure.is_none()), bytes_in: n as u64, bytes_out: 0 };
            match self.socket.send_to(&out, from) {
                Ok(sent) => {
                    totals.bytes_out += sent as u64;
                    summary.bytes_out = sent as u64;
                }
                Err(e) => failure = Some(Error::from_io(e)),
            }
            publish(totals);
            if let Some(e) = failure {
                events.closed(&peer, &summary, Some(&e));
            }
        }
        Ok(())
    }

    /// The rate limiter, whatever a thread that panicked holding it left:
    /// its state is a few counters, valid at every step.
    fn limiter(&self) -> MutexGuard<'_, Limiter> {
        self.limiter.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Any local address, any port, of `addr`'s family: where to bind a socket that talks to `addr`.
fn unspecified(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// Stops a [`DatagramServer`]: every `serve` call running returns, and any
/// later one returns at once. Deprecated: [`DatagramServer::start`] returns
/// the [`Handle`] every server the crate starts returns. Cheap to clone and to send to another thread
/// (a Ctrl-C handler, a test).
#[derive(Clone, Debug)]
#[deprecated(since = "0.2.0", note = "use `DatagramServer::start` and its `Handle`")]
pub struct Stopper {
    shared: Arc<Shared>,
}

#[allow(deprecated)]
impl Stopper {
    /// Stops the server: a `serve` call waiting for a datagram returns within
    /// 50 ms (its socket's read timeout), one busy answering returns before
    /// the next datagram. Datagrams not read by then stay unanswered.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

/// Sends messages to a stamp-echo server over UDP and checks their replies,
/// resending a request whose reply does not come in time.
///
/// Each [`round_trip`](DatagramClient::round_trip) sends the message and waits
/// up to the timeout (default [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT)) for
/// its reply, resending it up to the retry count (default
/// [`DEFAULT_RETRIES`](Self::DEFAULT_RETRIES)) before giving up with
/// [`TimeoutError::NoReply`].
///
/// The reply may answer any of the attempts, so its [`rtt`](Reply::rtt)
/// counts from the first: after a resend it is longer than the network's
/// round trip, never shorter, and [`Reply::clock_offset`]'s bound stays
/// true. A late reply to an earlier, *identical* message cannot be told from
/// the reply to the current one: give messages a sequence number when that
/// matters (the probes of `stamp-echo ping` do).
#[derive(Debug)]
pub struct DatagramClient {
    socket: UdpSocket,
    timeout: Duration,
    retries: u32,
    buffer: Vec<u8>,
    ignored: u64,
}

impl DatagramClient {
    /// How long each attempt waits for the reply, unless set otherwise.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    /// The range of [`set_timeout`](DatagramClient::set_timeout), with its
    /// default: longer than zero.
    pub const TIMEOUT: Bound<Duration> =
        Bound::new("timeout", Duration::from_nanos(1), Duration::MAX).with_default(Self::DEFAULT_TIMEOUT);
    /// How many times a request is sent again, unless set otherwise.
    pub const DEFAULT_RETRIES: u32 = 3;

    /// A client of the server at `server`, from a socket bound to any local
    /// address of the same family and connected to it (so only the server's
    /// datagrams are received). A name is resolved and its first address
    /// used: unlike TCP, UDP cannot tell before a reply whether a server
    /// listens there.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if no local socket can be bound or the address cannot be resolved or connected to.
    pub fn connect<A: ToSocketAddrs>(server: A) -> Result<DatagramClient, Error> {
        let Some(addr) = server.to_socket_addrs()?.next() else {
            return Err(Error::Io(io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to")));
        };
        let socket = UdpSocket::bind(unspecified(addr))?;
        socket.connect(addr)?;
        Ok(DatagramClient::new(socket))
    }

    /// A client on a socket already connected to the server.
    pub fn new(socket: UdpSocket) -> DatagramClient {
        DatagramClient {
            socket,
            timeout: Self::DEFAULT_TIMEOUT,
            retries: Self::DEFAULT_RETRIES,
            buffer: vec![0; RECEIVE_BUFFER],
            ignored: 0,
        }
    }

    /// How long each attempt waits for the reply; must not be zero.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a zero timeout.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), Error> {
        self.timeout = Self::TIMEOUT.check(timeout)?;
        Ok(())
    }

    /// How many times a request is sent again after a timeout (0: once only).
    pub fn set_retries(&mut self, retries: u32) {
        self.retries = retries;
    }

    /// Datagrams received that answered no current request (late replies,
    /// or anything else that is not the echo of the message waited for).
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// The socket.
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Sends `message` as one datagram and waits for its echo, resending it
    /// after each timeout up to the retry count.
    ///
    /// # Errors
    ///
    /// Without sending anything: [`MessageError::TooLong`] for a message
    /// over [`MAX_DATAGRAM`]; [`MessageError::Unanswerable`] for a message a server
    /// drops unanswered whoever sends it (one that starts like a reply or an
    /// error datagram, see [`Dropped::for_message`]), rather than waiting
    /// through every retry for a reply that never comes.
    ///
    /// Then: [`ProtocolError::ServerError`] for an error datagram;
    /// [`TimeoutError::NoReply`] when every attempt timed out; [`Error::Io`] when
    /// the socket fails, such as "connection refused" when nothing listens at
    /// the server's address (reported by most systems after the first send).
    pub fn round_trip(&mut self, message: &[u8]) -> Result<Reply, Error> {
        if message.len() > MAX_DATAGRAM {
            return Err(MessageError::TooLong { len: message.len(), max: MAX_DATAGRAM }.into());
        }
        if let Some(reason) = Dropped::for_message(message) {
            return Err(MessageError::Unanswerable(reason).into());
        }
        let sent_instant = Instant::now();
        let sent_at = SystemTime::now();
        let attempts = self.retries.saturating_add(1);
        for _ in 0..attempts {
            self.socket.send(message)?;
            let deadline = Instant::now() + self.timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                self.socket.set_read_timeout(Some(left))?;
                let n = match self.socket.recv(&mut self.buffer) {
                    Ok(n) => n,
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::Io(e)),
                };
                let datagram = &self.buffer[..n];
                if let Some(text) = datagram.strip_prefix(ERROR_PREFIX.as_bytes()) {
                    return Err(Error::Protocol(ProtocolError::ServerError(
                        String::from_utf8_lossy(text).into_owned(),
                    )));
                }
                // A datagram is one whole reply: one piece, nothing around it.
                match check_whole(datagram, message) {
                    Ok(stamp) => return Ok(Reply::arrived(stamp, message, sent_instant, sent_at)),
                    Err(_) => self.ignored += 1,
                }
            }
        }
        Err(Error::Timeout(TimeoutError::NoReply { attempts, timeout: self.timeout }))
    }
}
