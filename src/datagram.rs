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
//! use stamp_echo::datagram::{DatagramClient, DatagramServer};
//! use stamp_echo::stamp::Rfc3339;
//!
//! let server = DatagramServer::new(UdpSocket::bind("127.0.0.1:0")?, Arc::new(Rfc3339))?;
//! let addr = server.local_addr()?;
//! let stopper = server.stopper();
//! let thread = std::thread::spawn(move || server.serve());
//!
//! let mut client = DatagramClient::connect(addr)?;
//! let reply = client.round_trip("你好".as_bytes())?;
//! assert_eq!(reply.message(), "你好".as_bytes());
//! println!("{reply}"); // [2026-11-24T20:12:01.123456Z] 你好
//!
//! stopper.stop()?;
//! let summary = thread.join().expect("server thread")?;
//! assert_eq!(summary.messages, 1);
//! # Ok::<(), stamp_echo::Error>(())
//! ```

use std::fmt;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::Error;
use crate::client::Reply;
use crate::protocol::{Summary, refresh_stamp, write_reply};
use crate::reply::check_whole;
use crate::stamp::{Clock, Stamp, SystemClock};
use crate::{MessageError, ProtocolError, TimeoutError};

/// The largest datagram sent or accepted: 65,507 bytes, the most a UDP
/// datagram carries over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

/// The first bytes of an error datagram (see the [module docs](self)).
pub const ERROR_PREFIX: &str = "error: ";

/// Large enough for any UDP datagram, over IPv4 or IPv6: nothing is cut.
const RECEIVE_BUFFER: usize = 65_536;

/// Answers every datagram on a UDP socket with `[STAMP] MESSAGE`.
///
/// Made from a bound, unconnected, blocking socket and a stamp; call
/// [`serve`](DatagramServer::serve) (from one thread or several) until a
/// [`Stopper`] stops it. It allocates its buffers once per `serve` call and
/// nothing per datagram after that.
///
/// ```
/// use std::net::UdpSocket;
/// use std::sync::Arc;
/// use stamp_echo::datagram::DatagramServer;
/// use stamp_echo::stamp::UnixTime;
///
/// let server = DatagramServer::new(UdpSocket::bind("127.0.0.1:0")?, Arc::new(UnixTime))?;
/// let (addr, stopper) = (server.local_addr()?, server.stopper());
/// let thread = std::thread::spawn(move || server.serve());
///
/// let peer = UdpSocket::bind("127.0.0.1:0")?;
/// peer.send_to(b"ping", addr)?;
/// let mut buf = [0; 64];
/// let (n, _) = peer.recv_from(&mut buf)?;
/// assert!(buf[..n].starts_with(b"[") && buf[..n].ends_with(b"] ping"));
///
/// stopper.stop()?;
/// assert_eq!(thread.join().expect("server thread")?.messages, 1);
/// # Ok::<(), stamp_echo::Error>(())
/// ```
pub struct DatagramServer {
    socket: UdpSocket,
    stamp: Arc<dyn Stamp>,
    clock: Arc<dyn Clock>,
    shared: Arc<Shared>,
}

/// What a server shares with its [`Stopper`]s.
#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    /// `serve` calls running, each of which a stop must wake.
    serving: AtomicUsize,
    /// Where a wake-up datagram reaches the server.
    wake: SocketAddr,
}

impl fmt::Debug for DatagramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramServer").field("socket", &self.socket).finish_non_exhaustive()
    }
}

impl DatagramServer {
    /// A server on `socket`, stamping with `stamp` (a built-in's from
    /// [`StampKind::build`](crate::stamp::StampKind::build), or your own) and
    /// the [`SystemClock`].
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the socket's address cannot be read.
    pub fn new(socket: UdpSocket, stamp: Arc<dyn Stamp>) -> Result<DatagramServer, Error> {
        let mut wake = socket.local_addr()?;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        let shared = Arc::new(Shared { stop: AtomicBool::new(false), serving: AtomicUsize::new(0), wake });
        Ok(DatagramServer { socket, stamp, clock: Arc::new(SystemClock), shared })
    }

    /// The same server reading `clock` for "now" (tests inject a fixed one).
    pub fn clock<C: Clock + 'static>(mut self, clock: C) -> DatagramServer {
        self.clock = Arc::new(clock);
        self
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
    pub fn stopper(&self) -> Stopper {
        Stopper { shared: Arc::clone(&self.shared) }
    }

    /// Serves until stopped, then returns the counts of this call.
    /// See [`serve_with`](DatagramServer::serve_with).
    ///
    /// # Errors
    ///
    /// As [`serve_with`](DatagramServer::serve_with).
    pub fn serve(&self) -> Result<Summary, Error> {
        self.serve_with(())
    }

    /// Serves until stopped, showing each datagram and each error to `observer`.
    ///
    /// Every datagram gets one reply datagram: its echo, or an error datagram
    /// (see the [module docs](self)); a failure concerns that sender only and
    /// serving goes on. `Summary::messages` counts the echoes. Returns an
    /// error only if the socket itself fails. A read timeout set on the
    /// socket is harmless: the server checks for a stop at each one.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when receiving fails in a way that is not about one datagram. Errors about one
    /// datagram or one peer (a reply too large, a broken stamp, a failed send) go to the observer, are
    /// answered with an error datagram where there is a reply to send, and serving goes on.
    pub fn serve_with<O: DatagramObserver>(&self, mut observer: O) -> Result<Summary, Error> {
        let _serving = Serving::enter(&self.shared);
        let mut input = vec![0u8; RECEIVE_BUFFER];
        let mut out = Vec::with_capacity(MAX_DATAGRAM);
        let mut text = String::new();
        let mut stamped = None;
        let granularity = self.stamp.granularity();
        let mut summary = Summary::default();
        while !self.shared.stop.load(Ordering::SeqCst) {
            let (n, from) = match self.socket.recv_from(&mut input) {
                Ok(received) => received,
                // Timeouts let the loop look at the stop flag; a refused or
                // reset error is an earlier peer gone away (reported on some
                // systems), no reason to stop serving the others.
                Err(e) if is_transient(&e) => continue,
                Err(e) => return Err(Error::Io(e)),
            };
            if self.shared.stop.load(Ordering::SeqCst) {
                break;
            }
            let message = &input[..n];
            summary.bytes_in += n as u64;
            out.clear();
            let now = self.clock.now();
            match refresh_stamp(self.stamp.as_ref(), granularity, now, &mut stamped, &mut text)
                .and_then(|()| reply_into(&text, message, &mut out))
            {
                Ok(()) => {
                    observer.datagram(from, message);
                    summary.messages += 1;
                }
                Err(e) => {
                    observer.error(from, &e);
                    out.clear();
                    // Writing to a Vec cannot fail.
                    let _ = write!(out, "{ERROR_PREFIX}{e}");
                }
            }
            match self.socket.send_to(&out, from) {
                Ok(sent) => summary.bytes_out += sent as u64,
                Err(e) => observer.error(from, &Error::from_io(e)),
            }
        }
        Ok(summary)
    }
}

/// Appends the reply `[text] message` to `out`, if it fits in a datagram.
fn reply_into(text: &str, message: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let size = text.len() + 3 + message.len();
    if size > MAX_DATAGRAM {
        return Err(Error::Protocol(ProtocolError::DatagramTooLarge { size, max: MAX_DATAGRAM }));
    }
    write_reply(text, message, out);
    Ok(())
}

/// Errors after which a socket is still usable.
fn is_transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(e.kind(), Interrupted | WouldBlock | TimedOut | ConnectionRefused | ConnectionReset)
}

/// Any local address, any port, of `addr`'s family: where to bind a socket that talks to `addr`.
fn unspecified(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// Counts a running `serve` call for as long as it lives.
struct Serving<'a>(&'a Shared);

impl<'a> Serving<'a> {
    fn enter(shared: &'a Shared) -> Serving<'a> {
        shared.serving.fetch_add(1, Ordering::SeqCst);
        Serving(shared)
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.0.serving.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Stops a [`DatagramServer`]: every `serve` call running returns, and any
/// later one returns at once. Cheap to clone and to send to another thread
/// (a Ctrl-C handler, a test).
#[derive(Clone, Debug)]
pub struct Stopper {
    shared: Arc<Shared>,
}

impl Stopper {
    /// Stops the server. A server blocked waiting for a datagram is woken by
    /// an empty datagram sent to its own address, which it does not answer.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the wake-up datagram cannot be sent; the server is stopped all the same at the next
    /// datagram it receives or at its socket's next read timeout.
    pub fn stop(&self) -> Result<(), Error> {
        self.shared.stop.store(true, Ordering::SeqCst);
        let running = self.shared.serving.load(Ordering::SeqCst);
        if running == 0 {
            return Ok(());
        }
        let socket = UdpSocket::bind(unspecified(self.shared.wake))?;
        for _ in 0..running {
            socket.send_to(&[], self.shared.wake)?;
        }
        Ok(())
    }
}

/// Sees what a [`DatagramServer`] does (the example's log lines use it).
///
/// `()` observes nothing; any `FnMut(SocketAddr, &[u8])` closure sees each
/// datagram answered.
pub trait DatagramObserver {
    /// Called with each datagram that is answered with its echo, before the
    /// reply is sent.
    fn datagram(&mut self, from: SocketAddr, message: &[u8]) {
        let _ = (from, message);
    }

    /// Called when a datagram is answered with an error datagram, or when a
    /// reply cannot be sent.
    fn error(&mut self, from: SocketAddr, error: &Error) {
        let _ = (from, error);
    }
}

impl DatagramObserver for () {}

impl<F: FnMut(SocketAddr, &[u8])> DatagramObserver for F {
    fn datagram(&mut self, from: SocketAddr, message: &[u8]) {
        self(from, message)
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
/// matters (the client example's probes do).
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
        if timeout.is_zero() {
            return Err(crate::ConfigError::new("timeout", "0 s", "longer than zero").into());
        }
        self.timeout = timeout;
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
    /// [`MessageError::TooLong`] for a message over [`MAX_DATAGRAM`] (nothing is sent);
    /// [`ProtocolError::ServerError`] for an error datagram; [`TimeoutError::NoReply`] when every attempt
    /// timed out; [`Error::Io`] when the socket fails, such as "connection refused" when nothing listens at
    /// the server's address (reported by most systems after the first send).
    pub fn round_trip(&mut self, message: &[u8]) -> Result<Reply, Error> {
        if message.len() > MAX_DATAGRAM {
            return Err(MessageError::TooLong { len: message.len(), max: MAX_DATAGRAM }.into());
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
