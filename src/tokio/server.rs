//! The async server driver: [`Responder`] over any `AsyncRead + AsyncWrite`.
//!
//! # An idle connection holds no read buffer
//!
//! A connection's future keeps only its protocol state (the [`Responder`]:
//! the stamp text and the few bytes of an unfinished message) and the replies
//! its peer has not taken yet. The bytes of a read go into a buffer of the
//! worker thread that polls it, borrowed for one synchronous step: read into
//! it, answer what it completes into a second per-thread buffer, write those
//! replies at once, and keep only what the socket would not take. Ten
//! thousand idle connections cost ten thousand protocol states, not ten
//! thousand read buffers.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::TimeoutError;
use crate::protocol::{Fragment, Observer, Responder, Summary};
use crate::runner::Limits;
use crate::{EchoServer, Error, Framing};

/// Serves one connection until the peer ends its input, then returns its
/// counts: [`EchoServer::serve`] for async streams. See [`serve_with`].
///
/// # Errors
///
/// As [`serve_with`].
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(server: &EchoServer, stream: S) -> Result<Summary, Error> {
    serve_with(server, stream, ()).await
}

/// Serves one connection, showing each message to `observer`:
/// [`EchoServer::serve_with`] for async streams, with the same semantics.
///
/// Reads until end of input; every read's replies are written before the
/// next read. At end of input a last message held back is answered (a line
/// without a newline) and the counts are returned. No deadline applies (see
/// [`serve_with_limits`] for the runner's).
///
/// A stream that reports [`io::ErrorKind::WouldBlock`] from a read or write
/// (a blocking-mode adapter misused, say) is retried on the next poll rather
/// than failing the connection at once.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use stamp_echo::{EchoServer, Framing, stamp::Ctime};
///
/// let server = EchoServer::builder().framing(Framing::line()).stamp(Ctime::utc()).build()?;
/// let (mut client, stream) = tokio::io::duplex(1024);
/// client.write_all(b"hi,server\n").await?;
/// client.shutdown().await?; // end of input
/// let summary = stamp_echo::tokio::serve(&server, stream).await?;
/// let mut reply = String::new();
/// client.read_to_string(&mut reply).await?;
/// assert!(reply.ends_with("] hi,server\n"), "{reply}");
/// assert_eq!(summary.messages, 1);
/// # Ok::<(), stamp_echo::Error>(()) })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// The stream's error ([`Error::Io`]) or a message over the framing's limit;
/// either way every message received whole before it has been answered.
pub async fn serve_with<S, O>(server: &EchoServer, stream: S, observer: O) -> Result<Summary, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    O: Observer,
{
    drive(server, stream, observer, None, ()).await
}

/// [`serve_with`] under the runner's deadlines: `limits`'
/// [`idle_timeout`](Limits::idle_timeout),
/// [`message_timeout`](Limits::message_timeout) and
/// [`write_timeout`](Limits::write_timeout), with the same meaning as in
/// the thread [`runner`](crate::runner). Needs a runtime with its timer
/// enabled (`#[tokio::main]`, `Runtime::new` and `enable_all` have it).
///
/// # Errors
///
/// As [`serve_with`], and [`TimeoutError::Idle`], [`TimeoutError::Message`] or
/// [`TimeoutError::Write`] when a deadline passes.
pub async fn serve_with_limits<S, O>(
    server: &EchoServer,
    stream: S,
    limits: &Limits,
    observer: O,
) -> Result<Summary, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    O: Observer,
{
    drive(server, stream, observer, Some(limits), ()).await
}

/// What the runner tells a connection, checked at every step.
#[derive(Debug)]
pub(crate) enum Signal {
    /// Carry on.
    None,
    /// Stop reading: answer what came, as at end of input (graceful shutdown).
    EndInput,
    /// Close now with this error (eviction, a forced shutdown).
    Close(Error),
}

/// The runner's hold on a connection; `()` for none.
pub(crate) trait Control {
    /// The runner's latest word (no waker registered: see `register`).
    fn signal(&self) -> Signal;
    /// Registers `cx`'s waker for the next word, before the connection waits.
    fn register(&mut self, cx: &mut Context<'_>);
    /// A message was completed by the read that returned `at`.
    fn completed(&mut self, at: Instant);
}

impl Control for () {
    fn signal(&self) -> Signal {
        Signal::None
    }
    fn register(&mut self, _cx: &mut Context<'_>) {}
    fn completed(&mut self, _at: Instant) {}
}

/// Serves `stream` to its end (see [`serve_with`]), under `limits`' deadlines
/// if any, and `control`'s signals.
pub(crate) async fn drive<S, O, C>(
    server: &EchoServer,
    stream: S,
    observer: O,
    limits: Option<&Limits>,
    control: C,
) -> Result<Summary, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    O: Observer,
    C: Control,
{
    let mut conn = Connection {
        server,
        stream,
        watch: Watch { observer, control, started: None, at: Instant::now(), completed: false },
        responder: server.responder(),
        unwritten: Vec::new(),
        written: 0,
        unflushed: false,
        input_ended: false,
        outcome: None,
        timers: limits.and_then(Timers::new),
    };
    let result = std::future::poll_fn(|cx| conn.poll_serve(cx)).await;
    let summary = conn.responder.summary();
    conn.watch.observer.finished(&summary, result.as_ref().err());
    result.map(|()| summary)
}

/// One connection's state between polls.
struct Connection<'a, S, O, C> {
    server: &'a EchoServer,
    stream: S,
    watch: Watch<O, C>,
    responder: Responder,
    /// Replies the stream has not taken yet; from `written` on.
    unwritten: Vec<u8>,
    written: usize,
    /// Bytes were written since the last flush.
    unflushed: bool,
    /// End of input seen (or made by the runner).
    input_ended: bool,
    /// How the connection ends, once the replies before it are out.
    outcome: Option<Result<(), Error>>,
    timers: Option<Timers>,
}

/// The observer, with the start of the message being received kept for its
/// deadline.
struct Watch<O, C> {
    observer: O,
    control: C,
    /// When the first byte of the unfinished message arrived.
    started: Option<Instant>,
    /// When the read being answered returned (or the connection began).
    at: Instant,
    /// The read being answered completed a message.
    completed: bool,
}

impl<O: Observer, C: Control> Observer for Watch<O, C> {
    fn message(&mut self, fragment: Fragment<'_>) {
        if fragment.is_last() {
            self.started = None;
            self.completed = true;
        } else if self.started.is_none() {
            self.started = Some(self.at);
        }
        self.observer.message(fragment);
    }
}

/// The per-thread buffers of one step (see the module docs).
#[derive(Default)]
struct Scratch {
    input: Vec<u8>,
    out: Vec<u8>,
}

thread_local! {
    static SCRATCH: Cell<Scratch> = Cell::new(Scratch::default());
}

/// Runs `step` with this thread's buffers, taken out for the step and put
/// back after (an observer that drives another connection from inside a
/// callback, or a step while the thread exits, gets fresh ones).
fn with_scratch<T>(step: impl FnOnce(&mut Scratch) -> T) -> T {
    let mut scratch = SCRATCH.try_with(Cell::take).unwrap_or_default();
    let done = step(&mut scratch);
    let _ = SCRATCH.try_with(|cell| cell.set(scratch));
    done
}

impl<S, O, C> Connection<'_, S, O, C>
where
    S: AsyncRead + AsyncWrite + Unpin,
    O: Observer,
    C: Control,
{
    /// Moves the connection on as far as it can go without waiting.
    fn poll_serve(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            match self.watch.control.signal() {
                Signal::None => {}
                Signal::EndInput => self.input_ended_by_runner(),
                Signal::Close(error) => return Poll::Ready(Err(error)),
            }
            // 1. The replies not taken yet go first.
            match self.poll_flush_replies(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => match self.pending(cx, true) {
                    Some(poll) => return poll,
                    None => continue,
                },
            }
            if let Some(outcome) = self.outcome.take() {
                return Poll::Ready(outcome);
            }
            // 2. One read, answered and written in one step.
            match with_scratch(|scratch| self.step(cx, scratch)) {
                Poll::Ready(()) => {}
                Poll::Pending => {
                    // Idle: hold no buffer for replies.
                    if self.unwritten.is_empty() && self.unwritten.capacity() > 0 {
                        self.unwritten = Vec::new();
                    }
                    match self.pending(cx, false) {
                        Some(poll) => return poll,
                        None => continue,
                    }
                }
            }
        }
    }

    /// The runner stopped the input: answer what came as at end of input.
    fn input_ended_by_runner(&mut self) {
        if !self.input_ended && self.outcome.is_none() {
            self.input_ended = true;
            let mut out = Vec::new();
            let now = self.server.now();
            let answered = self.responder.finish_observed(now, &mut out, &mut self.watch);
            self.unwritten.extend_from_slice(&out);
            self.outcome = Some(answered.map(drop));
        }
    }

    /// Before returning `Pending`: fails with the deadline that has passed,
    /// or makes sure the next one (or the runner's word) wakes the task.
    /// `None`: the runner has spoken meanwhile, go on.
    fn pending(&mut self, cx: &mut Context<'_>, writing: bool) -> Option<Poll<Result<(), Error>>> {
        self.watch.control.register(cx);
        let spoken = match self.watch.control.signal() {
            Signal::None => false,
            Signal::EndInput => !self.input_ended,
            Signal::Close(_) => true,
        };
        if spoken {
            return None;
        }
        Some(match &mut self.timers {
            Some(timers) => timers.poll_expired(cx, writing, self.watch.started).map(Err),
            None => Poll::Pending,
        })
    }

    /// Writes (and flushes) the replies not taken yet.
    fn poll_flush_replies(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        while self.written < self.unwritten.len() {
            match write_some(&mut self.stream, cx, &self.unwritten[self.written..]) {
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    self.unflushed = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.unwritten.clear();
        self.written = 0;
        if self.unflushed {
            match Pin::new(&mut self.stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::from_io(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
        if let Some(timers) = &mut self.timers {
            timers.writing_since = None;
        }
        Poll::Ready(Ok(()))
    }

    /// One read into the thread's buffer, answered, and the replies written
    /// as far as the stream takes them; the rest is kept. `Pending` when
    /// there is nothing to read.
    fn step(&mut self, cx: &mut Context<'_>, scratch: &mut Scratch) -> Poll<()> {
        let size = read_size(self.server);
        if scratch.input.len() < size {
            scratch.input.resize(size, 0);
        }
        let mut buf = ReadBuf::new(&mut scratch.input[..size]);
        let n = loop {
            match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => break buf.filled().len(),
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => return yield_now(cx.waker()),
                Poll::Ready(Err(e)) => {
                    self.outcome = Some(Err(Error::from_io(e)));
                    return Poll::Ready(());
                }
                Poll::Pending => return Poll::Pending,
            }
        };
        let now = self.server.now();
        scratch.out.clear();
        let answered = if n == 0 {
            self.input_ended = true;
            self.responder.finish_observed(now, &mut scratch.out, &mut self.watch)
        } else {
            let at = Instant::now();
            if let Some(timers) = &mut self.timers {
                timers.last_read = at;
            }
            self.watch.at = at;
            if self.watch.started.is_none() {
                self.watch.started = Some(at);
            }
            let answered = self.responder.receive_observed(&scratch.input[..n], now, &mut scratch.out, &mut self.watch);
            if std::mem::take(&mut self.watch.completed) {
                self.watch.control.completed(at);
            }
            answered
        };
        match answered {
            Err(e) => self.outcome = Some(Err(e)),
            Ok(_) if n == 0 => self.outcome = Some(Ok(())),
            Ok(_) => {}
        }
        // Replies to whole messages go out even when the input after them was bad.
        let mut sent = 0;
        while sent < scratch.out.len() {
            match write_some(&mut self.stream, cx, &scratch.out[sent..]) {
                Poll::Ready(Ok(n)) => {
                    sent += n;
                    self.unflushed = true;
                }
                Poll::Ready(Err(e)) => {
                    self.outcome = Some(Err(e));
                    return Poll::Ready(());
                }
                Poll::Pending => {
                    self.unwritten.extend_from_slice(&scratch.out[sent..]);
                    if let Some(timers) = &mut self.timers {
                        timers.writing_since = Some(Instant::now());
                    }
                    break;
                }
            }
        }
        Poll::Ready(())
    }
}

/// The size of one read: in chunk framing the framing's (each read is a
/// message); otherwise the server's read size, and at least [`MIN_READ`]:
/// the buffer is the worker thread's, not the connection's, so a large one
/// costs nothing per connection and saves system calls on busy ones.
fn read_size(server: &EchoServer) -> usize {
    match server.framing() {
        Framing::Chunk { .. } => server.read_size(),
        _ => server.read_size().max(MIN_READ),
    }
}

/// The least size of one read in line and length-prefixed framing.
const MIN_READ: usize = 64 * 1024;

/// One write: `Ok(n > 0)`, or the error (a stream that takes nothing has
/// failed); `WouldBlock` is retried on the next poll.
fn write_some<S: AsyncWrite + Unpin>(stream: &mut S, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<Result<usize, Error>> {
    loop {
        return match Pin::new(&mut *stream).poll_write(cx, bytes) {
            Poll::Ready(Ok(0)) => Poll::Ready(Err(Error::Io(io::ErrorKind::WriteZero.into()))),
            Poll::Ready(Ok(n)) => Poll::Ready(Ok(n)),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => yield_now(cx.waker()),
            Poll::Ready(Err(e)) => Poll::Ready(Err(Error::from_io(e))),
            Poll::Pending => Poll::Pending,
        };
    }
}

/// `Pending`, with the task woken again at once: for a stream that said
/// `WouldBlock` instead of `Pending` (a blocking-mode adapter misused), which
/// registered no wake-up of its own.
fn yield_now<T>(waker: &Waker) -> Poll<T> {
    waker.wake_by_ref();
    Poll::Pending
}

/// A connection's deadlines (see [`Limits`]), on one timer.
struct Timers {
    idle: Option<Duration>,
    message: Option<Duration>,
    write: Option<Duration>,
    /// When the last read with bytes returned (or the connection began).
    last_read: Instant,
    /// When the replies not taken yet started going out.
    writing_since: Option<Instant>,
    /// Set no later than the deadline in force; moved when it fires early.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Timers {
    /// `None` when `limits` set no deadline.
    fn new(limits: &Limits) -> Option<Timers> {
        let Limits { idle_timeout: idle, message_timeout: message, write_timeout: write, .. } = *limits;
        if idle.is_none() && message.is_none() && write.is_none() {
            return None;
        }
        Some(Timers { idle, message, write, last_read: Instant::now(), writing_since: None, sleep: None })
    }

    /// The deadline in force, and its error.
    fn due(&self, writing: bool, started: Option<Instant>) -> Option<(Instant, Error)> {
        if writing {
            let (since, timeout) = (self.writing_since?, self.write?);
            return Some((since + timeout, Error::Timeout(TimeoutError::Write { timeout })));
        }
        let idle = self.idle.map(|t| (self.last_read + t, Error::Timeout(TimeoutError::Idle)));
        let message = match (started, self.message) {
            (Some(started), Some(timeout)) => {
                Some((started + timeout, Error::Timeout(TimeoutError::Message { timeout })))
            }
            _ => None,
        };
        match (idle, message) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// The error of the deadline that has passed, or `Pending` with the
    /// timer set to wake the task by the deadline. The timer is moved only
    /// when the deadline comes nearer or it fired early, not at every read.
    fn poll_expired(&mut self, cx: &mut Context<'_>, writing: bool, started: Option<Instant>) -> Poll<Error> {
        loop {
            let Some((at, error)) = self.due(writing, started) else { return Poll::Pending };
            if at <= Instant::now() {
                return Poll::Ready(error);
            }
            let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            if sleep.deadline() > at || sleep.is_elapsed() {
                sleep.as_mut().reset(at);
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}
