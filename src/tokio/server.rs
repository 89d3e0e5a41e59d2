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

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::connection::{Connection, FLUSH_AT, Next};
use crate::protocol::{Observer, Summary};
use crate::runner::{Limits, deadlines};
use crate::server::Served;
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
/// either way every message received whole before it has been answered. To
/// have the counts on error too, use [`serve_to_end`].
pub async fn serve_with<S, O>(server: &EchoServer, stream: S, observer: O) -> Result<Summary, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    O: Observer,
{
    serve_to_end(server, stream, None, observer).await.into_result()
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
/// As [`serve_with`], and [`TimeoutError::Idle`](crate::TimeoutError::Idle),
/// [`TimeoutError::Message`](crate::TimeoutError::Message) or
/// [`TimeoutError::Write`](crate::TimeoutError::Write) when a deadline passes.
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
    serve_to_end(server, stream, Some(limits), observer).await.into_result()
}

/// [`serve_with`] (or, with `limits`, [`serve_with_limits`]), returning the
/// connection's counts whether it ended cleanly or in an error:
/// [`EchoServer::serve_to_end`] for async streams.
pub async fn serve_to_end<S, O>(server: &EchoServer, stream: S, limits: Option<&Limits>, mut observer: O) -> Served
where
    S: AsyncRead + AsyncWrite + Unpin,
    O: Observer,
{
    let limits = limits.map(deadlines).unwrap_or_default();
    let mut core = server.connection(limits, Instant::now().into_std());
    let result = drive(&mut core, server, stream, &mut observer, ()).await;
    let summary = core.summary();
    observer.finished(&summary, result.as_ref().err());
    Served { summary, error: result.err() }
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
    fn completed(&mut self, at: std::time::Instant);
}

impl Control for () {
    fn signal(&self) -> Signal {
        Signal::None
    }
    fn register(&mut self, _cx: &mut Context<'_>) {}
    fn completed(&mut self, _at: std::time::Instant) {}
}

/// The async shell: drives `core` over `stream` to its end, each message
/// shown to `observer`, minding `control`'s signals.
pub(crate) async fn drive<S, O, C>(
    core: &mut Connection,
    server: &EchoServer,
    stream: S,
    observer: &mut O,
    control: C,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    O: Observer + ?Sized,
    C: Control,
{
    let mut shell = Shell {
        core,
        stream,
        observer,
        control,
        read_size: read_size(server),
        unread: Vec::new(),
        unread_at: 0,
        input_ended: false,
        sleep: None,
    };
    std::future::poll_fn(|cx| shell.poll_serve(cx)).await
}

/// One connection's shell state between polls.
struct Shell<'a, S, O: ?Sized, C> {
    core: &'a mut Connection,
    stream: S,
    observer: &'a mut O,
    control: C,
    read_size: usize,
    /// The rest of the last read, not answered yet, from `unread_at` on:
    /// the replies pending passed [`FLUSH_AT`], or the poll's budget ran
    /// out. Answered before the next read. Its room is kept while the
    /// connection is busy (a flood yields often) and let go when it waits
    /// for input.
    unread: Vec<u8>,
    unread_at: usize,
    /// End of input made by the runner (shutdown).
    input_ended: bool,
    /// Set to the connection's next deadline.
    sleep: Option<Pin<Box<Sleep>>>,
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

impl<S, O, C> Shell<'_, S, O, C>
where
    S: AsyncRead + AsyncWrite + Unpin,
    O: Observer + ?Sized,
    C: Control,
{
    /// Moves the connection on as far as it can go without waiting, or
    /// until this poll's [`BUDGET`] is spent, with the worker thread's
    /// buffers lent to it (the reply buffer stays with the connection only
    /// while replies are pending).
    fn poll_serve(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        with_scratch(|scratch| {
            let lent = self.core.lend(&mut scratch.out);
            let polled = self.poll_steps(cx, &mut scratch.input);
            if lent {
                self.core.give_back(&mut scratch.out);
            }
            polled
        })
    }

    fn poll_steps(&mut self, cx: &mut Context<'_>, input: &mut Vec<u8>) -> Poll<Result<(), Error>> {
        self.core.start_turn(BUDGET);
        loop {
            self.heed(self.control.signal());
            let polled = match self.core.next() {
                Next::Close(result) => return Poll::Ready(result),
                Next::Write(bytes) => write_some(&mut self.stream, cx, bytes).map_ok(|n| self.core.wrote(n)),
                Next::Flush => match Pin::new(&mut self.stream).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        self.core.flushed();
                        Poll::Ready(Ok(()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(Error::from_io(e))),
                    Poll::Pending => Poll::Pending,
                },
                Next::Read => self.poll_input(cx, input),
            };
            match polled {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => self.core.close(e),
                Poll::Pending => {
                    if self.wait(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
            }
            if let Some(at) = self.core.take_progress() {
                self.control.completed(at);
            }
        }
    }

    /// Input for the connection: the rest of the last read, the end of input
    /// the runner made, or a new read; `Pending` when there is nothing to
    /// read or this poll's budget is spent.
    fn poll_input(&mut self, cx: &mut Context<'_>, input: &mut Vec<u8>) -> Poll<Result<(), Error>> {
        if self.core.budget_spent() {
            // A connection that always has input lets the others be served.
            return yield_to_others(cx);
        }
        if self.unread_at < self.unread.len() {
            let now = Instant::now().into_std();
            self.unread_at += self.core.received(&self.unread[self.unread_at..], now, self.observer);
            if self.unread_at == self.unread.len() {
                self.unread.clear();
                self.unread_at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if self.input_ended {
            self.core.end_of_input(Instant::now().into_std(), self.observer);
            return Poll::Ready(Ok(()));
        }
        let polled = self.poll_read(cx, input);
        if polled.is_pending() && self.unread.capacity() > 0 {
            // Waiting for input: hold no room for it.
            self.unread = Vec::new();
        }
        polled
    }

    /// Passes the runner's word to the connection.
    fn heed(&mut self, signal: Signal) {
        match signal {
            Signal::None => {}
            Signal::EndInput => self.input_ended = true,
            Signal::Close(error) => self.core.close(error),
        }
    }

    /// One read into the thread's buffer, answered as far as the connection
    /// takes it; the rest is kept for the next step.
    fn poll_read(&mut self, cx: &mut Context<'_>, input: &mut Vec<u8>) -> Poll<Result<(), Error>> {
        let size = self.read_size;
        if input.len() < size {
            input.resize(size, 0);
        }
        let mut buf = ReadBuf::new(&mut input[..size]);
        let n = loop {
            match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => break buf.filled().len(),
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => return yield_now(cx.waker()),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::from_io(e))),
                Poll::Pending => return Poll::Pending,
            }
        };
        let now = Instant::now().into_std();
        if n == 0 {
            self.core.end_of_input(now, self.observer);
            return Poll::Ready(Ok(()));
        }
        let read = &input[..n];
        let taken = self.core.received(read, now, self.observer);
        if taken < n {
            // Room for the rest only, not more (the bound is one read).
            let rest = &read[taken..];
            self.unread.reserve_exact(rest.len());
            self.unread.extend_from_slice(rest);
        }
        Poll::Ready(Ok(()))
    }

    /// Before returning `Pending`: makes sure the runner's next word and the
    /// connection's next deadline wake the task. `Ready`: the runner has
    /// spoken meanwhile, or the deadline has come: go on.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.control.register(cx);
        match self.control.signal() {
            Signal::None => {}
            Signal::EndInput if self.input_ended => {}
            signal => {
                self.heed(signal);
                return Poll::Ready(());
            }
        }
        let Some(at) = self.core.poll_timeout().map(Instant::from_std) else { return Poll::Pending };
        // The timer is moved only when the deadline comes nearer or it
        // fired early, not at every read.
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if sleep.deadline() > at || sleep.is_elapsed() {
            sleep.as_mut().reset(at);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.core.handle_timeout(Instant::now().into_std());
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The size of one read: in chunk framing the framing's (each read is a
/// message); otherwise the server's read size, and at least [`MIN_READ`]:
/// the buffer is the worker thread's, not the connection's, so a larger one
/// saves system calls on busy connections and costs an idle one nothing.
/// A connection whose peer stops taking replies keeps the rest of one read
/// until it does.
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
/// of its worker run (see [`Connection::work`]: bytes read and replied, each
/// message counted as 256 bytes more, checked a read's piece at a time,
/// never per message). 256 KiB is well under a tenth of a millisecond
/// whatever the messages (about 900 empty lines, or 30 messages of 4 KiB),
/// so a connection that always has input (a flood of empty lines) delays
/// the others by about that, as the operating system's scheduler bounds a
/// thread's turn. Tokio's own budget counts I/O operations, and one read of
/// empty lines is thousands of replies.
const BUDGET: u64 = 256 * 1024;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{Deadlines, slice_size};
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
            let mut core = server.connection(Deadlines::default(), std::time::Instant::now());
            let mut observer = ();
            let mut conn = Shell {
                core: &mut core,
                stream: peer,
                observer: &mut observer,
                control: (),
                read_size: read_size(&server),
                unread: Vec::new(),
                unread_at: 0,
                input_ended: false,
                sleep: None,
            };
            runtime.block_on(std::future::poll_fn(|cx| {
                let mut read_when_stuck = None;
                for poll in 0..10_000 {
                    assert!(conn.poll_serve(cx).is_pending(), "{framing}: endless input");
                    let (pending, room) = conn.core.pending_len();
                    assert!(room <= FLUSH_AT + one_slice, "{framing}: {pending} bytes pending");
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
            let answered = conn.core.summary().bytes_in as usize;
            assert!(
                conn.stream.read - answered <= read_size(&server),
                "{framing}: read {}, answered {answered}",
                conn.stream.read
            );
        }
    }

    /// A connection that ends in an error still hands back its counts.
    #[test]
    fn serve_to_end_returns_the_counts_with_the_error() {
        let server = EchoServer::builder()
            .framing(Framing::Line { max_line: 4 })
            .stamp(Ctime::utc())
            .build()
            .expect("valid settings");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let served = runtime.block_on(async {
            use tokio::io::AsyncWriteExt;
            let (mut client, stream) = tokio::io::duplex(4096);
            client.write_all(b"ok\nfine\ntoo long\n").await.expect("write");
            let served = serve_to_end(&server, stream, Some(&Limits::default()), ()).await;
            drop(client);
            served
        });
        assert_eq!((served.summary.messages, served.summary.bytes_in), (2, 17));
        assert!(
            matches!(served.error, Some(Error::Protocol(crate::ProtocolError::LineTooLong { max: 4 }))),
            "{:?}",
            served.error
        );
    }
}
