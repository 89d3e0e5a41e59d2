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

mod accept;
mod proxied;
mod registry;
#[cfg(feature = "tracing")]
mod tracing_events;

#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub use tracing_events::TracingEvents;

pub use crate::error::Refusal;
pub use crate::vocabulary::{Addr, Events, Handle, Limits, Peer, Source, Stopping, Totals};
pub(crate) use accept::Next;
pub(crate) use proxied::HeaderRead;
pub use proxied::{ProxyProtocol, TrustedProxy};
pub(crate) use registry::{Decision, Entry, FORCE_GRACE, Flags, Registry, Shared};

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
#[cfg(unix)]
use std::os::unix::net::{UnixListener, UnixStream};
#[cfg(unix)]
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::Error;
use crate::TimeoutError;
use crate::connection::Deadlines;
use crate::protocol::{Fragment, Observer, Summary};
use crate::proxy::ProxyHeader;
use crate::server::Blocking;
use crate::server::EchoServer;
use crate::stop::{self, Completion};
use crate::vocabulary::Serving;

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

/// How a stop reaches an accept loop blocked in `accept()`.
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
pub fn start<L, E: Events>(listener: L, server: EchoServer, limits: Limits, events: E) -> Result<Handle, Error>
where
    L: TryInto<Listener>,
    Error: From<L::Error>,
{
    launch(listener.try_into()?, server, limits, None, events)
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
pub fn start_proxied<L, E: Events>(
    listener: L,
    server: EchoServer,
    limits: Limits,
    proxy: ProxyProtocol,
    events: E,
) -> Result<Handle, Error>
where
    L: TryInto<Listener>,
    Error: From<L::Error>,
{
    proxy.validate()?;
    launch(listener.try_into()?, server, limits, Some(proxy), events)
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
    let poll = matches!(wake, Wake::Poll);
    let waits = Waits { in_accept: AtomicBool::new(false), changed: Condvar::new(), wake, stopped: Completion::new() };
    let shared = Arc::new(Shared::new(server, limits, Box::new(events), waits).proxied(proxy));
    {
        let shared = Arc::clone(&shared);
        thread::Builder::new().name("stamp-echo-accept".into()).stack_size(limits.stack_size).spawn(move || {
            // Completes the stop however this thread ends (panics included).
            let finish = Finish(&shared);
            accept_loop(&shared, &listener, poll);
            drop(listener);
            finish.stopped();
        })?;
    }
    Ok(Handle::new(local_addr, shared))
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
    /// How a stop reaches the acceptor blocked in `accept()`.
    wake: Wake,
    /// Completed by the acceptor once every connection has ended (or was
    /// given up on).
    stopped: Completion<Totals>,
}

impl Serving<Totals> for Threads {
    fn active(&self) -> usize {
        self.lock().active()
    }

    fn totals(&self) -> Totals {
        self.lock().totals()
    }

    fn stop(&self, until: Option<Instant>) {
        if !self.waits.stopped.ask(until) {
            return;
        }
        let in_accept = {
            let mut state = self.lock();
            state.stop();
            self.waits.in_accept.load(Ordering::Relaxed)
        };
        self.waits.changed.notify_all();
        if let Wake::Connect(addr) = &self.waits.wake {
            // If this fails, the acceptor stays in accept() until the next
            // client arrives; it then sees `stopping` and ends.
            if in_accept {
                let _ = TcpStream::connect_timeout(addr, Duration::from_secs(1));
            }
        }
    }

    fn completion(&self) -> &Completion<Totals> {
        &self.waits.stopped
    }
}

/// The acceptor's last step: once its loop has ended (the runner stopping)
/// and the listener is closed, waits for the connections until the stop's
/// deadline, closes the rest by force, and completes the stop with the
/// final totals. Dropped without [`stopped`](Finish::stopped) (a panic),
/// completes it with the totals so far.
struct Finish<'a>(&'a Threads);

impl Finish<'_> {
    fn stopped(self) {
        let shared = self.0;
        let until = shared.waits.stopped.asked().flatten();
        let state = shared.wait_idle(until);
        let state = if state.active() > 0 {
            state.force_all();
            drop(state);
            shared.wait_idle(Instant::now().checked_add(FORCE_GRACE))
        } else {
            state
        };
        let totals = state.final_totals();
        drop(state);
        shared.waits.stopped.complete(totals);
    }
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let totals = self.0.lock().final_totals();
        self.0.waits.stopped.complete(totals);
    }
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

    /// After `accept()` or the start of a connection's thread failed:
    /// relieves pressure ([`Registry::relieve`]) and waits as it says.
    /// `false` if the runner is stopping.
    fn relieve(&self, scarce: bool) -> bool {
        let mut state = self.lock();
        match state.relieve(scarce, self.now()) {
            Next::Wait(wait) => drop(self.waits.changed.wait_timeout(state, wait)),
            _ => return false,
        }
        true
    }

    /// A newcomer from `addr`'s `source`, admitted, held or refused as
    /// [`Registry::admission`] says: holds it while told to wait, then
    /// returns the lock (to register it under, if admitted) and what to do.
    fn admission(&self, addr: &Addr, source: Source) -> (MutexGuard<'_, Registry<Conn>>, Next) {
        let per_source = self.per_source_cap(addr);
        let mut state = self.lock();
        loop {
            match state.admission(addr, source, per_source, self.now()) {
                Next::Wait(wait) => {
                    state = self.waits.changed.wait_timeout(state, wait).unwrap_or_else(PoisonError::into_inner).0;
                }
                next => return (state, next),
            }
        }
    }
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Accepts connections until shutdown, doing with each result what
/// [`Next`] says (see `runner/accept.rs`). At `max_connections` it keeps
/// accepting, and admits or refuses each new client at once as
/// [`Registry::admission`] decides (holding it only without eviction, or
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
        let (stream, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if stop::is_tick(&e) => {
                drop(state);
                if poll {
                    thread::sleep(stop::TICK);
                }
                continue;
            }
            Err(e) => {
                drop(state);
                if let Some(scarce) = shared.accept_failed(&e) {
                    shared.relieve(scarce);
                }
                continue;
            }
        };
        drop(state);
        // The thread runner cannot read a Unix peer's user (see `Source`).
        let source = Source::of(&addr);
        let (mut state, next) = shared.admission(&addr, source);
        match next {
            Next::Admit => {}
            Next::Refuse(peer, reason) => {
                drop(state);
                drop(stream);
                shared.events.refused(&peer, reason);
                continue;
            }
            _ => return, // stopping: the connection is closed unserved
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
        let peer = state.register(Arc::clone(&conn), addr, source);
        drop(state);
        spawn_connection(shared, conn, peer);
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
/// header first. The one seam between the runner and the serving.
fn serve_connection(mut ending: Ending, peer: &Peer, behind: bool) {
    let Ending { shared, conn: Some(conn), summary, .. } = &mut ending else { return };
    let limits = &shared.limits;
    let mut socket = Socket { conn, shared, read_timeout: limits.idle_timeout, write_timeout: limits.write_timeout };
    let mut sniff = false;
    let client = match &shared.proxy {
        Some(proxy) if behind => match shared.arrived(peer, read_header(&mut socket, limits, proxy.header_timeout)) {
            Ok(client) => client,
            Err(failed) => {
                ending.failed = failed;
                return;
            }
        },
        Some(_) => {
            sniff = true;
            peer.clone()
        }
        None => peer.clone(),
    };
    let mut core = shared.server.connection(deadlines(limits), Instant::now());
    if sniff {
        core.sniff_proxy_header();
    }
    let read_size = shared.server.read_size();
    let mut core = core.with_capacity(read_size + 64);
    let mut input = vec![0u8; read_size];
    let mut report = Report { events: shared.events.as_ref(), peer: &client };
    let result = crate::server::drive(&mut core, &mut socket, &mut input, &mut report);
    *summary = core.summary();
    shared.events.closed(&client, summary, result.as_ref().err());
    ending.failed = result.is_err();
}

/// Reads a trusted proxy's header (see [`HeaderRead`]) within `timeout` (and
/// the idle timeout from each read): `None` if the proxy closed without
/// sending a byte. The client's bytes stay in the socket.
fn read_header(socket: &mut Socket<'_>, limits: &Limits, timeout: Duration) -> Result<Option<ProxyHeader>, Error> {
    let begun = Instant::now();
    let header = begun.checked_add(timeout).unwrap_or_else(far_future);
    let mut last_read = begun;
    let mut read = HeaderRead::new();
    let mut woke = false;
    loop {
        let now = Instant::now();
        let idle = limits.idle_timeout.map(|t| (last_read + t, TimeoutError::Idle));
        let (at, error) = match idle {
            Some(idle) if idle.0 < header => idle,
            _ => (header, TimeoutError::ProxyHeader { timeout }),
        };
        if at <= now {
            return Err(error.into());
        }
        let n = match socket.aim(true, Some(at), woke).and_then(|()| socket.read(read.buffer())) {
            Ok(0) => match socket.closed_by_runner() {
                Some(error) => return Err(error),
                None => 0,
            },
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if stop::is_tick(&e) => {
                woke = true;
                continue;
            }
            Err(e) => return Err(socket.closed_by_runner().unwrap_or_else(|| Error::from_io(e))),
        };
        woke = false;
        last_read = Instant::now();
        if read.filled(n)? {
            return Ok(read.header());
        }
    }
}

/// The deadlines of `limits` a connection keeps (both runners').
pub(crate) fn deadlines(limits: &Limits) -> Deadlines {
    Deadlines { idle: limits.idle_timeout, message: limits.message_timeout, write: limits.write_timeout }
}

/// An instant further than any deadline (for one too long to represent).
fn far_future() -> Instant {
    Instant::now() + Limits::MAX_TIMEOUT * 2
}

/// Passes each message to [`Events::message`] (both runners').
pub(crate) struct Report<'a> {
    pub(crate) events: &'a dyn Events,
    pub(crate) peer: &'a Peer,
}

impl Observer for Report<'_> {
    fn message(&mut self, fragment: Fragment<'_>) {
        self.events.message(self.peer, fragment);
    }
}

/// The connection's socket as the blocking shell drives it: before a read
/// or write it lowers the socket's timeout to the time left to the
/// connection's next deadline when that is needed; it tells the shell when
/// the runner closed it, and publishes the connection's progress.
struct Socket<'a> {
    conn: &'a Conn,
    shared: &'a Threads,
    /// The socket's read and write timeouts, as last set.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl Blocking for Socket<'_> {
    /// The socket's timeout, lowered if a read or write would otherwise
    /// return well after `deadline`, or set afresh after it `woke` early.
    fn aim(&mut self, read: bool, deadline: Option<Instant>, woke: bool) -> io::Result<()> {
        let left = deadline.map(|at| at.saturating_duration_since(Instant::now()));
        let current = if read { self.read_timeout } else { self.write_timeout };
        let need = match (current, left) {
            (_, Some(left)) if woke => Some(left),
            (None, Some(left)) => Some(left),
            (Some(set), Some(left)) if set > left + (left / 16).min(Duration::from_millis(250)) => Some(left),
            (Some(_), None) if woke => None,
            _ => return Ok(()),
        };
        let need = need.map(|t| t.max(Limits::MIN_TIMEOUT));
        if need != current {
            self.conn.stream.set_timeout(read, need)?;
            if read {
                self.read_timeout = need;
            } else {
                self.write_timeout = need;
            }
        }
        Ok(())
    }

    /// [`Error::Evicted`] if the runner evicted it, [`Error::Refused`] if it
    /// refused it.
    fn closed_by_runner(&self) -> Option<Error> {
        if let Some(&reason) = self.conn.refused.get() {
            Some(Error::Refused { reason })
        } else if self.conn.evicted.load(Ordering::Relaxed) {
            Some(Error::Evicted { idle: Duration::from_nanos(self.conn.idle.load(Ordering::Relaxed)) })
        } else {
            None
        }
    }

    fn progress(&self, at: Instant) {
        self.conn.progress.store(self.shared.clock(at), Ordering::Relaxed);
    }
}

impl Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.conn.stream).read(buf)
    }
}

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.conn.stream).write(buf)
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
