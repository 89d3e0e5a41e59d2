//! Serving many connections at once under tokio: the thread
//! [`runner`](crate::runner)'s [`Limits`], [`Events`], eviction and graceful
//! shutdown, a task per connection instead of a thread.
//!
//! [`start`] takes a bound `tokio::net::TcpListener` or `UnixListener` (the
//! library never binds or picks ports), an [`EchoServer`], [`Limits`] and an
//! [`Events`] observer, and serves every connection on its own task until
//! [`Handle::shutdown`] or [`Handle::shutdown_async`] (or dropping the
//! [`Handle`], the one type every server the crate starts returns).
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
//! use std::time::Duration;
//! use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
//! use stamp_echo::{EchoServer, Framing, Limits, tokio::runner};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = EchoServer::builder().framing(Framing::line()).build()?;
//! let handle = runner::start(listener, server, Limits::default(), ())?;
//!
//! let addr = handle.local_addr().tcp().expect("a TCP listener");
//! let mut client = BufReader::new(tokio::net::TcpStream::connect(addr).await?);
//! client.get_mut().write_all(b"hi,server\n").await?;
//! let mut reply = String::new();
//! client.read_line(&mut reply).await?;
//! assert!(reply.ends_with("] hi,server\n"), "{reply}");
//! drop(client);
//!
//! let totals = handle.shutdown_async(Duration::from_secs(5)).await;
//! assert_eq!((totals.connections, totals.messages, totals.errors), (1, 1, 0));
//! # Ok::<(), stamp_echo::Error>(()) })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Memory per connection
//!
//! An idle connection holds its task, its socket's registration, its
//! protocol state and one timer: no read buffer (reads go into a buffer of
//! the worker thread, see [`serve_with_limits`](super::serve_with_limits)).
//! A busy one adds at most 3 bytes of an unfinished message (replies are
//! streamed: see [`Responder`](crate::protocol::Responder)) and, while its
//! peer does not take its replies, those not taken yet (written out before
//! they pass 32 KiB and the replies to one 512-byte slice of a read, the
//! thread runner's bound, whatever the read size) and the rest of the read
//! being answered (32 KiB, or the server's read size if larger): at most
//! about 78 KiB with the defaults. Measured: 1.6 KiB
//! per idle connection (the `c10k` example, 10,000 connections), 2.1 KiB per
//! connection 4 MiB into a 16 MiB frame (`frame_memory --runtime tokio`,
//! 1,000 connections). [`Limits::stack_size`] does not apply: tasks have no
//! stacks of their own.
//!
//! # Stopping
//!
//! [`Handle::shutdown`] tells the accept loop and every connection through
//! the runner's own state and wakers: nothing connects to the listener's
//! address, so a replaced Unix socket path cannot misdirect it.

use std::io;
#[cfg(unix)]
use std::path::PathBuf;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::server::{Control, Signal, drive};
use crate::protocol::Summary;
use crate::proxy::ProxyHeader;
use crate::runner::{
    Addr, Entry, Events, FORCE_GRACE, Flags, HeaderRead, Limits, Next, Peer, ProxyProtocol, Refusal, Report, Shared,
    Source, Totals, deadlines, nanos,
};
pub use crate::runner::{Handle, Listener, Stopping};
use crate::stop::Completion;
use crate::vocabulary::Serving;
use crate::{EchoServer, Error, TimeoutError};

/// Under the `tokio-runner` feature a tokio listener is a [`Listener`] too
/// (through its `into_std`), so that the runners of both runtimes take the
/// same listeners.
impl TryFrom<tokio::net::TcpListener> for Listener {
    type Error = io::Error;

    fn try_from(listener: tokio::net::TcpListener) -> io::Result<Listener> {
        listener.into_std().map(Listener::Tcp)
    }
}

/// As for a tokio `TcpListener`.
#[cfg(unix)]
impl TryFrom<tokio::net::UnixListener> for Listener {
    type Error = io::Error;

    fn try_from(listener: tokio::net::UnixListener) -> io::Result<Listener> {
        listener.into_std().map(Listener::Unix)
    }
}

#[cfg(unix)]
fn unix_addr(addr: &tokio::net::unix::SocketAddr) -> Addr {
    Addr::Unix(addr.as_pathname().map(PathBuf::from))
}

/// A [`Listener`] registered with the runtime, as the accept loop uses it.
#[derive(Debug)]
enum Bound {
    Tcp(tokio::net::TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
}

impl Bound {
    /// `listener`, non-blocking and registered with the current runtime.
    fn register(listener: Listener) -> io::Result<Bound> {
        match listener {
            Listener::Tcp(l) => {
                l.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(l).map(Bound::Tcp)
            }
            #[cfg(unix)]
            Listener::Unix(l) => {
                l.set_nonblocking(true)?;
                tokio::net::UnixListener::from_std(l).map(Bound::Unix)
            }
        }
    }
}

/// Starts serving `listener` on the current tokio runtime, each connection
/// on its own task, and returns at once. Call it from within the runtime
/// (an `async` function, or inside `Runtime::enter`); the runtime needs its
/// I/O driver and timer (`#[tokio::main]`, `Runtime::new` and `enable_all`
/// have both).
///
/// `listener` is the thread runner's [`Listener`]: a std `TcpListener` or
/// `UnixListener`, or a tokio one (taken off its runtime with `into_std`).
/// Either is registered with the current runtime here.
///
/// # Errors
///
/// [`Error::Config`] for limits out of range ([`Limits::validate`]),
/// [`Error::Io`] if there is no runtime to run on (called outside one), the
/// listener cannot be registered with it, or its address cannot be read.
///
/// # Panics
///
/// As tokio's own `from_std`, if the current runtime has no I/O driver.
pub fn start<L, E: Events>(listener: L, server: EchoServer, limits: Limits, events: E) -> Result<Handle, Error>
where
    L: TryInto<Listener>,
    Error: From<L::Error>,
{
    launch(listener.try_into()?, server, limits, None, events)
}

/// [`start`], behind a load balancer, as the thread runner's
/// [`start_proxied`](crate::runner::start_proxied): connections from
/// `proxy`'s trusted networks start with a PROXY protocol header and are
/// served as the client it names (see [`ProxyProtocol`]).
///
/// # Errors
///
/// As [`start`], and [`Error::Config`] for a header timeout out of range
/// ([`ProxyProtocol::validate`]).
///
/// # Panics
///
/// As [`start`].
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
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| Error::Io(io::Error::other(format!("stamp_echo::tokio::runner::start needs a runtime: {e}"))))?;
    let local_addr = listener.local_addr()?;
    let listener = {
        let _entered = runtime.enter();
        Bound::register(listener)?
    };
    let waits = Waits { changed: Notify::new(), stop: Notify::new(), stopped: Completion::new(), runtime };
    let shared = Arc::new(Shared::new(server, limits, Box::new(events), waits).proxied(proxy));
    let theirs = Arc::clone(&shared);
    shared.waits.runtime.spawn(async move {
        // Completes the stop however this task ends (panics, or the runtime
        // shutting down, included).
        let finish = Finish(&theirs);
        accept_loop(Arc::clone(&theirs), listener).await;
        let until = theirs.waits.stopped.asked().flatten().map(Instant::from_std);
        let totals = theirs.finish_stop(until).await;
        finish.0.waits.stopped.complete(totals);
    });
    Ok(Handle::new(local_addr, shared))
}

/// Completes the runner's stop, if its task ends before it has, with the
/// totals so far.
struct Finish<'a>(&'a Tasks);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let totals = self.0.lock().final_totals();
        self.0.waits.stopped.complete(totals);
    }
}

impl Serving<Totals> for Tasks {
    fn active(&self) -> usize {
        self.lock().active()
    }

    fn totals(&self) -> Totals {
        self.lock().totals()
    }

    fn stop(&self, until: Option<std::time::Instant>) {
        if self.waits.stopped.ask(until) {
            self.begin_stop();
        }
    }

    fn completion(&self) -> &Completion<Totals> {
        &self.waits.stopped
    }

    /// Not on one of the runtime's threads (a task cannot block), nor with a
    /// current-thread runtime (whose thread may be this one, or not running).
    fn may_block_on_drop(&self) -> bool {
        tokio::runtime::Handle::try_current().is_err()
            && self.waits.runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread
    }
}

/// What the runner's tasks share.
type Tasks = Shared<Slot, Waits>;

/// How the tokio runner waits and wakes.
#[derive(Debug)]
struct Waits {
    /// Notified when a connection ends and when shutdown starts.
    changed: Notify,
    /// Notified when shutdown starts, for the accept loop.
    stop: Notify,
    /// Completed by the accept task once every connection has ended (or was
    /// given up on).
    stopped: Completion<Totals>,
    /// The runtime it runs on.
    runtime: tokio::runtime::Handle,
}

impl Tasks {
    /// Marks the runner stopping, wakes the accept loop, and ends every
    /// connection's input. `false` if it was stopping already.
    fn begin_stop(&self) -> bool {
        if !self.lock().stop() {
            return false;
        }
        self.waits.stop.notify_waiters();
        self.waits.changed.notify_waiters();
        true
    }

    /// Waits for the connections up to `until`, closes the rest by force,
    /// and returns the totals.
    async fn finish_stop(&self, until: Option<Instant>) -> Totals {
        if !self.wait_idle(until).await {
            self.lock().force_all();
            self.wait_idle(Instant::now().checked_add(FORCE_GRACE)).await;
        }
        self.lock().final_totals()
    }

    /// Waits until no connection is active (`true`), or `until` (`None`: no limit).
    async fn wait_idle(&self, until: Option<Instant>) -> bool {
        loop {
            let mut changed = pin!(self.waits.changed.notified());
            changed.as_mut().enable();
            if self.lock().active() == 0 {
                return true;
            }
            match until {
                None => changed.await,
                Some(until) if until <= Instant::now() => return false,
                Some(until) => {
                    let _ = tokio::time::timeout_at(until, changed).await;
                }
            }
        }
    }

    /// After `accept()` failed: relieves pressure ([`Registry::relieve`])
    /// and waits as it says.
    async fn relieve(&self, scarce: bool) {
        let mut changed = pin!(self.waits.changed.notified());
        changed.as_mut().enable();
        let next = self.lock().relieve(scarce, self.now());
        if let Next::Wait(wait) = next {
            let _ = tokio::time::timeout(wait, changed).await;
        }
    }

    /// A newcomer from `addr`'s `source`, admitted, held or refused as
    /// [`Registry::admission`] says: waits while told to, then returns what
    /// to do; admitted, it is registered as `slot` (under the same lock),
    /// its peer returned.
    async fn admission(&self, addr: &Addr, source: Source, slot: &Arc<Slot>) -> Result<Peer, Next> {
        let per_source = self.per_source_cap(addr);
        loop {
            let mut changed = pin!(self.waits.changed.notified());
            changed.as_mut().enable();
            let wait = {
                let mut state = self.lock();
                match state.admission(addr, source, per_source, self.now()) {
                    Next::Admit => {
                        // Its progress, for eviction, counts from its admission.
                        slot.progress.store(self.now(), Ordering::Relaxed);
                        return Ok(state.register(Arc::clone(slot), addr.clone(), source));
                    }
                    Next::Wait(wait) => wait,
                    next => return Err(next),
                }
            };
            let _ = tokio::time::timeout(wait, changed).await;
        }
    }
}

/// One accepted connection, before it has a task.
enum Accepted {
    Tcp(tokio::net::TcpStream, Addr),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream, Addr),
}

impl Accepted {
    /// Its source: the peer's IP address, or for a Unix socket the peer's
    /// user id ([`Source::Local`] if it cannot be read).
    fn source(&self) -> Source {
        match self {
            Accepted::Tcp(_, addr) => Source::of(addr),
            #[cfg(unix)]
            Accepted::Unix(stream, _) => stream.peer_cred().map_or(Source::Local, |cred| Source::Uid(cred.uid())),
        }
    }

    fn addr(&self) -> Addr {
        match self {
            Accepted::Tcp(_, addr) => addr.clone(),
            #[cfg(unix)]
            Accepted::Unix(_, addr) => addr.clone(),
        }
    }
}

impl Bound {
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted>> {
        match self {
            Bound::Tcp(l) => l.poll_accept(cx).map_ok(|(s, a)| Accepted::Tcp(s, Addr::Tcp(a))),
            #[cfg(unix)]
            Bound::Unix(l) => l.poll_accept(cx).map_ok(|(s, a)| {
                let addr = unix_addr(&a);
                Accepted::Unix(s, addr)
            }),
        }
    }
}

/// Accepts connections until shutdown. At `max_connections` it keeps
/// accepting, and admits or refuses each new client at once as
/// [`Tasks::admission`] decides (holding it only without eviction, or while
/// too many evicted connections are on their way out). The listener is
/// closed when it returns.
async fn accept_loop(shared: Arc<Tasks>, listener: Bound) {
    // `accepting` is reported once per connection served.
    let mut announced = false;
    loop {
        let mut stopped = pin!(shared.waits.stop.notified());
        stopped.as_mut().enable();
        if shared.lock().stopping() {
            return;
        }
        if !announced {
            shared.events.accepting();
            announced = true;
        }
        let accepted = std::future::poll_fn(|cx| {
            if stopped.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            listener.poll_accept(cx).map(Some)
        })
        .await;
        let accepted = match accepted {
            None => return,
            Some(Ok(accepted)) => accepted,
            Some(Err(e)) => {
                if let Some(scarce) = shared.accept_failed(&e) {
                    shared.relieve(scarce).await;
                }
                continue;
            }
        };
        let (source, addr) = (accepted.source(), accepted.addr());
        let slot = Arc::new(Slot {
            flags: AtomicU8::new(0),
            waker: Mutex::new(None),
            progress: AtomicU64::new(0),
            idle: AtomicU64::new(0),
            refused: OnceLock::new(),
        });
        let peer = match shared.admission(&addr, source, &slot).await {
            Ok(peer) => peer,
            Err(Next::Refuse(peer, reason)) => {
                drop(accepted);
                shared.events.refused(&peer, reason);
                continue;
            }
            Err(_) => return, // stopping: the connection is closed unserved
        };
        announced = false;
        match accepted {
            Accepted::Tcp(stream, _) => {
                let configured = stream.set_nodelay(true);
                spawn_connection(&shared, stream, slot, peer, configured);
            }
            #[cfg(unix)]
            Accepted::Unix(stream, _) => spawn_connection(&shared, stream, slot, peer, Ok(())),
        }
    }
}

/// Reports the connection (`peer`, registered as `slot`), and gives it a
/// task.
///
/// Nagle's algorithm is off on TCP (`configured` says whether that worked):
/// the replies to one read go out in one write (in writes of 32 KiB and
/// more when they are larger), so Nagle could only delay them.
fn spawn_connection<S>(shared: &Arc<Tasks>, stream: S, slot: Arc<Slot>, peer: Peer, configured: io::Result<()>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Closes and counts the connection when dropped: an error unless served cleanly.
    let mut ending =
        Ending { shared: Arc::clone(shared), id: peer.id, slot, summary: Summary::default(), failed: true };
    if let Err(e) = configured {
        shared.events.closed(&peer, &Summary::default(), Some(&Error::Io(e)));
        return;
    }
    // Behind a trusted proxy, the peer is known once its header is read.
    let behind = shared.proxy.as_ref().is_some_and(|proxy| proxy.expects_header(&peer.addr));
    let span = crate::spans::Span::connection(&peer);
    if !behind {
        span.in_scope(|| shared.events.connected(&peer));
    }
    tokio::spawn(span.instrument(async move {
        serve_connection(&mut ending, stream, peer, behind).await;
    }));
}

/// Runs on the connection's task; `behind` a trusted proxy, reads its header
/// first. The one seam between the runner and the serving.
async fn serve_connection<S>(ending: &mut Ending, mut stream: S, peer: Peer, behind: bool)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let shared = Arc::clone(&ending.shared);
    let slot = Arc::clone(&ending.slot);
    let mut hold = Hold { slot: &slot, shared: &shared };
    let mut sniff = false;
    let peer = match &shared.proxy {
        Some(proxy) if behind => {
            let header = read_header(&mut stream, &mut hold, proxy.header_timeout).await;
            match shared.arrived(&peer, header) {
                Ok(client) => client,
                Err(failed) => return ending.served(!failed),
            }
        }
        Some(_) => {
            sniff = true;
            peer
        }
        None => peer,
    };
    let mut core = shared.server.connection(deadlines(&shared.limits), Instant::now().into_std());
    if sniff {
        core.sniff_proxy_header();
    }
    let mut report = Report { events: shared.events.as_ref(), peer: &peer };
    let result = drive(&mut core, &shared.server, stream, &mut report, hold).await;
    ending.summary = core.summary();
    shared.events.closed(&peer, &ending.summary, result.as_ref().err());
    ending.served(result.is_ok());
}

/// Reads a trusted proxy's header (see [`HeaderRead`]) within `timeout`,
/// minding the runner's signals: `None` if the proxy closed (or shutdown
/// began) before it sent a byte. The client's bytes stay in the socket.
async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    hold: &mut Hold<'_>,
    timeout: Duration,
) -> Result<Option<ProxyHeader>, Error> {
    let mut read = HeaderRead::new();
    let mut deadline = pin!(tokio::time::sleep(timeout));
    std::future::poll_fn(|cx| {
        loop {
            hold.register(cx);
            match hold.read() {
                Signal::Close(error) => return Poll::Ready(Err(error)),
                Signal::EndInput => return Poll::Ready(read.filled(0).map(|_| read.header())),
                Signal::None => {}
            }
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(TimeoutError::ProxyHeader { timeout }.into()));
            }
            let mut buf = ReadBuf::new(read.buffer());
            let n = match Pin::new(&mut *stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => buf.filled().len(),
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::from_io(e))),
                Poll::Pending => return Poll::Pending,
            };
            match read.filled(n) {
                Ok(false) => {}
                Ok(true) => return Poll::Ready(Ok(read.header())),
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    })
    .await
}

/// One connection's place in the registry: what the runner tells it, and
/// its progress for eviction.
struct Slot {
    /// [`Slot::END_INPUT`], [`Slot::EVICTED`], [`Slot::FORCED`].
    flags: AtomicU8,
    /// The connection's task, to wake when a flag is set.
    waker: Mutex<Option<Waker>>,
    /// When it last completed a message (or was accepted), in nanoseconds
    /// since [`Shared::epoch`].
    progress: AtomicU64,
    /// When evicted: how long it had gone without completing a message, in
    /// nanoseconds.
    idle: AtomicU64,
    /// Why it was refused, once its source was known.
    refused: OnceLock<Refusal>,
}

impl Slot {
    /// Shutdown has begun: stop reading.
    const END_INPUT: u8 = 1;
    /// Closed to make room for a new connection.
    const EVICTED: u8 = 2;
    /// Closed by [`Handle::shutdown`] at its deadline.
    const FORCED: u8 = 4;
    /// Refused once its source was known.
    const REFUSED: u8 = 8;

    fn signal(&self, flag: u8) {
        self.flags.fetch_or(flag, Ordering::AcqRel);
        let waker = self.waker.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags.load(Ordering::Acquire) & flag != 0
    }
}

impl Entry for Slot {
    fn progress(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    fn is_evicted(&self) -> bool {
        self.has(Slot::EVICTED)
    }

    fn is_refused(&self) -> bool {
        self.has(Slot::REFUSED)
    }

    fn is_forced(&self) -> bool {
        self.has(Slot::FORCED)
    }

    fn evict(&self, idle: Duration) {
        self.idle.store(nanos(idle), Ordering::Relaxed);
        self.signal(Slot::EVICTED);
    }

    fn refuse(&self, reason: Refusal) {
        let _ = self.refused.set(reason);
        self.signal(Slot::REFUSED);
    }

    fn end_input(&self) {
        self.signal(Slot::END_INPUT);
    }

    fn force(&self) {
        self.signal(Slot::FORCED);
    }
}

/// The connection's side of its [`Slot`].
struct Hold<'a> {
    slot: &'a Slot,
    shared: &'a Tasks,
}

impl Hold<'_> {
    fn read(&self) -> Signal {
        let flags = self.slot.flags.load(Ordering::Acquire);
        if flags & Slot::FORCED != 0 {
            let forced = io::Error::new(io::ErrorKind::ConnectionAborted, "closed at the shutdown deadline");
            Signal::Close(Error::Io(forced))
        } else if let Some(&reason) = self.slot.refused.get().filter(|_| flags & Slot::REFUSED != 0) {
            Signal::Close(Error::Refused { reason })
        } else if flags & Slot::EVICTED != 0 {
            Signal::Close(Error::Evicted { idle: Duration::from_nanos(self.slot.idle.load(Ordering::Relaxed)) })
        } else if flags & Slot::END_INPUT != 0 {
            Signal::EndInput
        } else {
            Signal::None
        }
    }
}

impl Control for Hold<'_> {
    fn signal(&self) -> Signal {
        self.read()
    }

    fn register(&mut self, cx: &mut Context<'_>) {
        let mut waker = self.slot.waker.lock().unwrap_or_else(PoisonError::into_inner);
        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *waker = Some(cx.waker().clone());
        }
    }

    fn completed(&mut self, at: std::time::Instant) {
        self.slot.progress.store(self.shared.clock(at), Ordering::Relaxed);
    }
}

/// Closes and counts a connection when its task ends, however it ends
/// (panics included).
struct Ending {
    shared: Arc<Tasks>,
    id: u64,
    slot: Arc<Slot>,
    summary: Summary,
    failed: bool,
}

impl Ending {
    /// The connection was served cleanly (or not).
    fn served(&mut self, cleanly: bool) {
        self.failed = !cleanly;
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        // After leaving the registry its flags no longer change.
        state.leave(self.id);
        state.ended(&self.summary, Flags::of(&*self.slot), self.failed);
        drop(state);
        self.shared.waits.changed.notify_waiters();
    }
}
