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
//!
//! # Bounded as the thread runner is
//!
//! A read is answered a slice at a time and the replies are written out
//! whenever they pass the thread runner's bound (32 KiB), so the replies to
//! tiny messages (28 times their size for empty lines) never pile up: a peer
//! that does not read makes its connection hold that much, the replies to
//! one slice, and the rest of the read, no more, whatever the read size.
//!
//! # Fair to the other connections
//!
//! A connection that always has input does a budget of work per poll
//! (256 KiB read and replied, each message counted as 256 bytes more: well
//! under a tenth of a millisecond), then lets the other tasks run, as the
//! operating system ends a thread's turn: a flood of empty lines delays
//! other connections by about that, not by a whole read's replies.

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
use crate::server::{FLUSH_AT, slice_size};
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
/// next read, and in pieces before they pass 32 KiB (see the module docs),
/// and a connection that always has input lets the others on its runtime
/// run between pieces of work. At end of input a last message held back is answered (a line
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
    let mut conn = Connection::new(server, stream, observer, limits, control);
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
    /// The rest of the last read, not answered yet, from `unread_at` on:
    /// the stream took no more replies, or the poll's budget ran out.
    /// Answered before the next read. Its room is kept while the connection
    /// is busy (a flood yields often) and let go when it waits for input.
    unread: Vec<u8>,
    unread_at: usize,
    /// The [`work`] done so far at which this poll's budget is spent.
    yield_at: u64,
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

impl<'a, S, O, C> Connection<'a, S, O, C>
where
    S: AsyncRead + AsyncWrite + Unpin,
    O: Observer,
    C: Control,
{
    fn new(server: &'a EchoServer, stream: S, observer: O, limits: Option<&Limits>, control: C) -> Self {
        Connection {
            server,
            stream,
            watch: Watch { observer, control, started: None, at: Instant::now(), completed: false },
            responder: server.responder(),
            unwritten: Vec::new(),
            written: 0,
            unread: Vec::new(),
            unread_at: 0,
            yield_at: 0,
            unflushed: false,
            input_ended: false,
            outcome: None,
            timers: limits.and_then(Timers::new),
        }
    }

    /// Moves the connection on as far as it can go without waiting, or
    /// until this poll's [`BUDGET`] is spent.
    fn poll_serve(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.yield_at = work(&self.responder.summary()) + BUDGET;
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
            // 2. A connection that always has input lets the others be served.
            if self.budget_spent() {
                return yield_to_others(cx);
            }
            // 3. The rest of the last read, then the end of input, then a new
            // read: answered and written in one step.
            if self.unread_at < self.unread.len() {
                let input = std::mem::take(&mut self.unread);
                let from = self.unread_at;
                let answered = with_scratch(|scratch| self.answer(cx, &input[from..], &mut scratch.out));
                self.unread = input;
                self.unread_at += answered;
                if self.unread_at == self.unread.len() {
                    self.unread.clear();
                    self.unread_at = 0;
                }
                continue;
            }
            if self.input_ended {
                with_scratch(|scratch| self.finish(cx, &mut scratch.out));
                continue;
            }
            match with_scratch(|scratch| self.step(cx, scratch)) {
                Poll::Ready(()) => {}
                Poll::Pending => {
                    // Waiting for input: hold no room for it.
                    if self.unread.capacity() > 0 {
                        self.unread = Vec::new();
                    }
                    match self.pending(cx, false) {
                        Some(poll) => return poll,
                        None => continue,
                    }
                }
            }
        }
    }

    /// This poll has done its share of work (see [`BUDGET`]).
    fn budget_spent(&self) -> bool {
        work(&self.responder.summary()) >= self.yield_at
    }

    /// The runner stopped the input: what came is answered (the rest of the
    /// last read too), then the connection ends as at end of input.
    fn input_ended_by_runner(&mut self) {
        if self.outcome.is_none() {
            self.input_ended = true;
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

    /// Writes (and flushes) the replies not taken yet. Once they are out,
    /// their buffer is let go: a connection holds one only while its peer
    /// is not taking its replies.
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
        if self.unwritten.capacity() > 0 {
            self.unwritten = Vec::new();
        }
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

    /// One read into the thread's buffer, answered as far as the stream
    /// takes the replies and the budget lasts; the rest of the read is kept
    /// for the next step. `Pending` when there is nothing to read.
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
        if n == 0 {
            self.input_ended = true;
            return Poll::Ready(());
        }
        let at = Instant::now();
        if let Some(timers) = &mut self.timers {
            timers.last_read = at;
        }
        self.watch.at = at;
        if self.watch.started.is_none() {
            self.watch.started = Some(at);
        }
        let read = &scratch.input[..n];
        let answered = self.answer(cx, read, &mut scratch.out);
        if answered < n {
            // Room for the rest only, not more (the bound is one read).
            let rest = &read[answered..];
            self.unread.reserve_exact(rest.len());
            self.unread.extend_from_slice(rest);
        }
        Poll::Ready(())
    }

    /// Answers `input` piece by piece (see [`slice_size`]) into `out`,
    /// writing the replies out whenever they pass [`FLUSH_AT`] and at the
    /// end, as the thread runner does. Stops early when the stream takes no
    /// more (the replies it did not take are kept, and so are no more than
    /// [`FLUSH_AT`] and the replies to one piece), when the poll's budget is spent,
    /// or at bad input. Returns how much of `input` was answered: all of it
    /// once the connection has its outcome.
    fn answer(&mut self, cx: &mut Context<'_>, input: &[u8], out: &mut Vec<u8>) -> usize {
        let now = self.server.now();
        out.clear();
        let mut answered = 0;
        let mut writing = true;
        for piece in input.chunks(slice_size(self.responder.framing(), input.len())) {
            let result = self.responder.receive_observed(piece, now, out, &mut self.watch);
            answered += piece.len();
            if let Err(e) = result {
                self.outcome = Some(Err(e));
                break;
            }
            if out.len() >= FLUSH_AT {
                writing = self.write_out(cx, out);
                if !writing {
                    break;
                }
            }
            if self.budget_spent() {
                break;
            }
        }
        if std::mem::take(&mut self.watch.completed) {
            self.watch.control.completed(self.watch.at);
        }
        // Replies to whole messages go out even when the input after them was bad.
        if writing && !out.is_empty() {
            self.write_out(cx, out);
        }
        if self.outcome.is_some() { input.len() } else { answered }
    }

    /// At end of input (the peer's or the runner's): a last message held
    /// back is answered and the connection's outcome set.
    fn finish(&mut self, cx: &mut Context<'_>, out: &mut Vec<u8>) {
        out.clear();
        let now = self.server.now();
        let finished = self.responder.finish_observed(now, out, &mut self.watch);
        self.outcome = Some(finished.map(drop));
        self.write_out(cx, out);
    }

    /// Writes `out` as far as the stream takes it now and clears it; the
    /// rest is kept to go first at the next poll. `false` when some was
    /// kept, or the stream failed (the connection's outcome then).
    fn write_out(&mut self, cx: &mut Context<'_>, out: &mut Vec<u8>) -> bool {
        let mut sent = 0;
        let done = loop {
            if sent == out.len() {
                break true;
            }
            match write_some(&mut self.stream, cx, &out[sent..]) {
                Poll::Ready(Ok(n)) => {
                    sent += n;
                    self.unflushed = true;
                }
                Poll::Ready(Err(e)) => {
                    self.outcome = Some(Err(e));
                    break false;
                }
                Poll::Pending => {
                    self.unwritten.extend_from_slice(&out[sent..]);
                    if let Some(timers) = &mut self.timers {
                        timers.writing_since = Some(Instant::now());
                    }
                    break false;
                }
            }
        };
        out.clear();
        done
    }
}

/// The size of one read: in chunk framing the framing's (each read is a
/// message); otherwise the server's read size, and at least [`MIN_READ`]:
/// the buffer is the worker thread's, not the connection's, so a larger one
/// saves system calls on busy connections and costs an idle one nothing.
/// A connection whose peer stops taking replies keeps the rest of one read
/// until it does (see [`Connection::answer`]).
fn read_size(server: &EchoServer) -> usize {
    match server.framing() {
        Framing::Chunk { .. } => server.read_size(),
        _ => server.read_size().max(MIN_READ),
    }
}

/// The least size of one read in line and length-prefixed framing: as
/// large as [`FLUSH_AT`], so that a large message's replies leave in writes
/// of that size, and small enough that the rest of a read kept for a peer
/// that does not read is a fraction of what the thread runner holds (its
/// stack).
const MIN_READ: usize = FLUSH_AT;

/// The work a connection may do in one poll before it lets the other tasks
/// of its worker run: [`work`] counts bytes read and replied, and each
/// message as [`MESSAGE_WORK`] bytes more, checked a read's piece at a time
/// (never per message). 256 KiB is well under a tenth of a millisecond
/// whatever the messages (about 900 empty lines, or 30 messages of 4 KiB),
/// so a connection that always has input (a flood of empty lines) delays
/// the others by about that, as the operating system's scheduler bounds a
/// thread's turn. Tokio's own budget counts I/O operations, and one read of
/// empty lines is thousands of replies.
const BUDGET: u64 = 256 * 1024;

/// A message's cost beyond its bytes, in bytes. Measured on the release
/// server: an empty line (29 bytes read and replied) takes about 70 ns, a
/// byte of a 4 KiB message about 0.35 ns, so a message is worth about 200
/// bytes of copying.
const MESSAGE_WORK: u64 = 256;

/// A connection's work so far, in bytes (see [`BUDGET`]).
fn work(summary: &Summary) -> u64 {
    summary.bytes_in + summary.bytes_out + MESSAGE_WORK * summary.messages
}

/// `Pending`, with the task queued behind the others ready to run (and
/// behind the I/O events not yet seen), as [`tokio::task::yield_now`] does.
fn yield_to_others<T>(cx: &mut Context<'_>) -> Poll<T> {
    let yielded = std::pin::pin!(tokio::task::yield_now());
    if yielded.poll(cx).is_ready() {
        cx.waker().wake_by_ref();
    }
    Poll::Pending
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::Ctime;
    use std::time::SystemTime;

    /// A peer that sends `pattern` without end and takes `room` bytes of
    /// replies, then none: it never reads again (and never wakes the task).
    struct NeverReads {
        pattern: &'static [u8],
        room: usize,
        read: usize,
        taken: usize,
        largest_write: usize,
    }

    impl AsyncRead for NeverReads {
        fn poll_read(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let n = buf.remaining() / this.pattern.len() * this.pattern.len();
            for _ in 0..n / this.pattern.len() {
                buf.put_slice(this.pattern);
            }
            this.read += n;
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for NeverReads {
        fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.largest_write = this.largest_write.max(buf.len());
            let n = buf.len().min(this.room - this.taken);
            if n == 0 {
                return Poll::Pending;
            }
            this.taken += n;
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A peer that pipelines empty lines (or zero-length frames) and never
    /// reads holds the driver to the thread runner's bound: replies up to
    /// `FLUSH_AT` and those to one slice, and the rest of one read. It stops
    /// reading once its replies are not taken. With any read size: 1 MiB
    /// reads here (64 KiB of empty lines is 1.8 MiB of replies).
    #[test]
    fn a_peer_that_never_reads_holds_the_bound_and_one_read() {
        let reply_header = "[Thu Jan  1 00:00:00 1970] ".len();
        for (framing, pattern, reply) in [
            (Framing::line(), &b"\n"[..], reply_header + 1),
            (Framing::length_prefixed(), &[0, 0, 0, 0][..], 4 + reply_header),
        ] {
            let server = EchoServer::builder()
                .framing(framing)
                .read_buffer_size(1024 * 1024)
                .stamp(Ctime::utc())
                .clock(|| SystemTime::UNIX_EPOCH)
                .build()
                .expect("valid settings");
            let one_slice = slice_size(framing, 1024 * 1024) / pattern.len() * reply;
            let peer = NeverReads { pattern, room: 1024 * 1024 + 3, read: 0, taken: 0, largest_write: 0 };
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
            let mut conn = Connection::new(&server, peer, (), None, ());
            runtime.block_on(std::future::poll_fn(|cx| {
                let mut read_when_stuck = None;
                for poll in 0..10_000 {
                    assert!(conn.poll_serve(cx).is_pending(), "{framing}: endless input");
                    let pending = conn.unwritten.len() - conn.written;
                    assert!(conn.unwritten.capacity() <= FLUSH_AT + one_slice, "{framing}: {pending} bytes pending");
                    assert!(
                        conn.unread.capacity() <= read_size(&server),
                        "{framing}: {} kept",
                        conn.unread.len() - conn.unread_at
                    );
                    if conn.stream.taken == conn.stream.room {
                        // Stuck: replies pending, and no more reads, however often polled.
                        assert!(pending > 0, "{framing}: poll {poll}");
                        assert_eq!(*read_when_stuck.get_or_insert(conn.stream.read), conn.stream.read);
                    }
                }
                assert!(read_when_stuck.is_some(), "{framing}: the peer's room was never filled");
                Poll::Ready(())
            }));
            assert!(
                conn.stream.largest_write <= FLUSH_AT + one_slice,
                "{framing}: a write of {}",
                conn.stream.largest_write
            );
            let answered = conn.responder.summary().bytes_in as usize;
            assert!(
                conn.stream.read - answered <= read_size(&server),
                "{framing}: read {}, answered {answered}",
                conn.stream.read
            );
        }
    }
}
