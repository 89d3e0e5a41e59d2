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
#[cfg(feature = "tracing")]
mod tracing_events;

#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub use tracing_events::TracingEvents;

pub use crate::error::Refusal;
pub use crate::vocabulary::{Addr, Events, Limits, Peer, Source, Totals};
pub(crate) use proxied::HeaderRead;
pub use proxied::{ProxyProtocol, TrustedProxy};
pub(crate) use registry::{Decision, Entry, FORCE_GRACE, Flags, Registry, Shared};

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
#[cfg(unix)]
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::Error;
use crate::protocol::{Fragment, Observer, Summary};
use crate::proxy::{ProxyHeader, has_signature};
use crate::server::EchoServer;
use crate::stop;
use crate::{ProxyError, TimeoutError};

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
    let span = crate::spans::Span::connection(&peer);
    if !behind {
        span.in_scope(|| shared.events.connected(&peer));
    }
    drop(conn);
    // The thread takes the `Ending` from `handoff`, so that it is still here
    // if the thread cannot start (out of memory or threads): then the runner
    // makes room as when out of descriptors, and tries again.
    let handoff = Arc::new(Mutex::new(Some(ending)));
    loop {
        let (theirs, their_peer, their_span) = (Arc::clone(&handoff), peer.clone(), span.clone());
        let spawned =
            thread::Builder::new().name("stamp-echo-conn".into()).stack_size(limits.stack_size).spawn(move || {
                let _span = their_span.enter();
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
