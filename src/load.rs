//! Verifying load: drive a stamp-echo server (ours or any other) with many
//! messages in flight, and check every reply byte for byte.
//!
//! Two layers, each usable alone:
//!
//! - [`Checker`], I/O-free: a [`ReplyChecker`] with a tag per message,
//!   handed back through a callback. It frames the messages you send and checks the reply stream against them,
//!   in order, without allocating per message, in every framing.
//! - [`drive`]: one connection's load over one socket, keeping up to a
//!   window of messages in flight (a window of 1 is ping-pong), or sending
//!   each when it is due (an open loop, [`Workload::open_loop`]), and handing
//!   you each message's latency to record as you like (`stamp-echo load`,
//!   the command line's load generator, records them in an `hdrhistogram`).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::SystemTime;
//! use stamp_echo::{Framing, Responder, load::Checker, stamp::Ctime};
//!
//! // Two messages sent back to back, in chunk framing.
//! let mut checker = Checker::new(Framing::chunk());
//! let mut wire = Vec::new();
//! checker.send(b"first", 1, &mut wire)?;
//! checker.send(b"second", 2, &mut wire)?;
//!
//! // The server happened to read them in one go: one stamped reply for both.
//! let mut responder = Responder::new(Framing::chunk(), Arc::new(Ctime::utc()));
//! let mut replies = Vec::new();
//! responder.receive(&wire, SystemTime::now(), &mut replies)?;
//!
//! let mut answered = Vec::new();
//! checker.receive(&replies, |tag| answered.push(tag))?;
//! assert_eq!(answered, [1, 2]);
//! assert_eq!(checker.in_flight(), 0);
//! # Ok::<(), stamp_echo::Error>(())
//! ```

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::Error;
use crate::ProtocolError;
use crate::bounds::Bound;
use crate::framing::Framing;
use crate::reply::{Event, ReplyChecker};
use crate::wire::{MAX_STAMP_LEN, check_sendable};

/// The most bytes a reply adds around a message: `[`, the stamp, `] `, and a
/// line ending or a length prefix.
const MAX_OVERHEAD: usize = MAX_STAMP_LEN + 5;

/// Checks a stream of replies against the messages sent, in order, without I/O
/// and without allocating per message: a [`ReplyChecker`] that carries a tag
/// of yours (the instant each message was sent, say) for each message.
///
/// [`send`](Checker::send) frames a message into your output buffer and
/// remembers it with its tag; [`receive`](Checker::receive) takes whatever
/// bytes arrived and calls back with the tag of each message whose reply is
/// now complete and correct. Any difference is an error: a reply that does
/// not echo its message ([`ProtocolError::EchoMismatch`], with the offset of the
/// first differing byte), that is not shaped `[STAMP] MESSAGE`
/// ([`ProtocolError::MalformedReply`]), or that answers nothing. After an error the
/// checker must not be used again.
///
/// Every framing is checked exactly, chunk framing included, whatever the
/// messages hold (see [`crate::reply`]).
///
/// It is a [`ReplyChecker<T>`](ReplyChecker), which keeps the tags, behind
/// a callback: use that directly to see each reply's pieces and message.
#[derive(Debug)]
pub struct Checker<T> {
    replies: ReplyChecker<T>,
}

impl<T> Checker<T> {
    /// A checker for replies in `framing`.
    pub fn new(framing: Framing) -> Checker<T> {
        Checker { replies: ReplyChecker::with_tags(framing) }
    }

    /// The framing in use.
    pub fn framing(&self) -> Framing {
        self.replies.framing()
    }

    /// Messages sent whose replies are not complete yet.
    pub fn in_flight(&self) -> usize {
        self.replies.in_flight()
    }

    /// Appends `message`, framed, to `out` (write it to the server), and
    /// expects its reply after those of the messages sent before it.
    ///
    /// # Errors
    ///
    /// [`Error::Message`], without appending, if the framing cannot
    /// carry the message as one message (see [`ReplyChecker::send`]).
    pub fn send(&mut self, message: &[u8], tag: T, out: &mut Vec<u8>) -> Result<(), Error> {
        self.replies.send_tagged(message, tag, out)
    }

    /// Checks the reply bytes in `input` (one read's worth, cut anywhere),
    /// calling `on_reply` with the tag of each message whose reply is now
    /// complete, in the order sent. Returns how many completed.
    ///
    /// # Errors
    ///
    /// Those of [`ReplyChecker::receive`]: the reply is wrong.
    pub fn receive<F: FnMut(T)>(&mut self, mut input: &[u8], mut on_reply: F) -> Result<usize, Error> {
        let mut done = 0;
        loop {
            let (consumed, event) = self.replies.receive(input)?;
            input = &input[consumed..];
            match event {
                Some(Event::Reply { tag, .. }) => {
                    done += 1;
                    on_reply(tag);
                }
                Some(Event::Piece { .. }) => {}
                None => return Ok(done),
            }
        }
    }
}

/// The load one connection carries: how many messages, how big, how many
/// in flight at once, and (open loop) when each is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Workload {
    /// Messages to send.
    pub messages: u64,
    /// Bytes in each message (at least 1).
    pub size: usize,
    /// Messages in flight at most: 1 is ping-pong (send, wait for the reply,
    /// send the next); more is pipelining.
    pub window: usize,
    /// Open loop: the time between two messages' due times, the first due
    /// when [`drive`] starts (`None`: each is sent as soon as the window has
    /// room).
    pub interval: Option<Duration>,
}

impl Workload {
    /// The range of [`Workload::size`]: 1 byte or more (the framing may
    /// bound it further).
    pub const SIZE: Bound<usize> = Bound::new("size", 1, usize::MAX).with_unit("bytes");
    /// The range of [`Workload::window`]: 1 or more.
    pub const WINDOW: Bound<usize> = Bound::new("window", 1, usize::MAX);

    /// `messages` messages of `size` bytes, at most `window` in flight.
    pub fn new(messages: u64, size: usize, window: usize) -> Workload {
        Workload { messages, size, window, interval: None }
    }

    /// An open loop: message `n` is due `n * interval` after [`drive`]
    /// starts, and sent then (if the window has room; a large window lets
    /// the schedule alone set the pace). Its latency counts from when it was
    /// due, not when it could be sent: a server that stalls is charged for
    /// every message it held up, as wrk2 corrects coordinated omission.
    #[must_use]
    pub fn open_loop(self, interval: Duration) -> Workload {
        Workload { interval: Some(interval), ..self }
    }
}

/// What one [`drive`] measured.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Messages answered, every one checked.
    pub messages: u64,
    /// Bytes written, framing included.
    pub bytes_sent: u64,
    /// Bytes read.
    pub bytes_received: u64,
    /// From the first write to the last reply.
    pub elapsed: Duration,
}

/// The `seq`th message of a load: `size` bytes of lowercase letters and
/// digits (never `[`, `]` or a line break), ending with `seq` in base 36, so
/// consecutive messages differ and a reply that is lost, repeated or out of
/// order is caught.
pub fn message(seq: u64, size: usize, out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let start = out.len();
    out.extend((0..size).map(|i| ALPHABET[i % 26 + 10]));
    let mut rest = seq;
    for byte in out[start..].iter_mut().rev() {
        *byte = ALPHABET[(rest % 36) as usize];
        rest /= 36;
        if rest == 0 {
            break;
        }
    }
}

/// Drives one connection: sends `workload.messages` messages made by
/// [`message`] in `framing`, keeping at most `workload.window` in flight (and
/// in an [open loop](Workload::open_loop), each when it is due), and checks
/// every reply with a [`Checker`]. Calls `latency` on the calling thread with
/// each message's latency, from when it was sent (open loop: due) to when the
/// end of its reply was read, in the order sent; adds the number of messages
/// answered to `progress` as replies come in, for a progress display.
///
/// A window whose requests and replies fit in the sockets' buffers many times
/// over (at most [`ONE_THREAD_BYTES`] in flight both ways) is driven from the
/// calling thread: write a batch, read what came back, and so on. A larger
/// one, or an open loop, gets a writer thread beside the reader, so that
/// neither side can block the other whatever the window and message size
/// (and messages leave when due whatever the replies do): that is why the
/// stream is shared (`&S`: a `TcpStream` or a `UnixStream`). Set read and
/// write timeouts on the stream to bound how long a server that stops
/// answering can hold it. The connection is left open.
///
/// ```no_run
/// use std::net::TcpStream;
/// use std::sync::atomic::AtomicU64;
/// use std::time::Duration;
/// use stamp_echo::{Framing, load::{Workload, drive}};
///
/// let stream = TcpStream::connect("127.0.0.1:8080")?;
/// let mut worst = Duration::ZERO;
/// let workload = Workload::new(10_000, 16, 64);
/// let report = drive(&stream, Framing::chunk(), workload, &AtomicU64::new(0), |latency| worst = worst.max(latency))?;
/// println!("{} replies checked in {:?}, the slowest in {worst:?}", report.messages, report.elapsed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`Error::Config`] for a workload with no window or a message size of 0; [`Error::Message`] when the
/// framing cannot carry the messages; [`Error::Io`] or [`Error::Timeout`] when the stream fails or times out;
/// [`Error::Protocol`] for a reply that is malformed or does not echo its message.
pub fn drive<S>(
    stream: &S,
    framing: Framing,
    workload: Workload,
    progress: &AtomicU64,
    latency: impl FnMut(Duration),
) -> Result<Report, Error>
where
    S: Sync,
    for<'a> &'a S: Read + Write,
{
    Workload::SIZE.check(workload.size)?;
    Workload::WINDOW.check(workload.window)?;
    // Check the message fits the framing before sending anything.
    let mut probe = Vec::new();
    message(0, workload.size, &mut probe);
    check_sendable(framing, &probe)?;

    let start = Instant::now();
    let mut receiver = Receiver::new(latency);
    let in_flight_bytes = workload.window.saturating_mul(workload.size.saturating_mul(2).saturating_add(MAX_OVERHEAD));
    let alone = in_flight_bytes <= ONE_THREAD_BYTES && workload.interval.is_none();
    let bytes_sent = run(stream, framing, Sender::new(workload, start), &mut receiver, progress, alone)?;
    let elapsed = start.elapsed();
    Ok(Report { messages: workload.messages, bytes_sent, bytes_received: receiver.received, elapsed })
}

/// The most bytes of requests and replies in flight for which [`drive`] uses
/// one thread: far below what loopback sockets buffer (Linux: 128 KiB and
/// more each way by default), so the server can always take a whole batch
/// while its replies wait for us to read them.
pub const ONE_THREAD_BYTES: usize = 32 * 1024;

/// Sends `sender`'s messages and checks their replies with `receiver`:
/// `alone` from this thread (write a batch, read replies, repeat), else with
/// a writer thread beside this one, which reads. Returns the bytes written.
fn run<S, L: FnMut(Duration)>(
    stream: &S,
    framing: Framing,
    mut sender: Sender,
    receiver: &mut Receiver<L>,
    progress: &AtomicU64,
    alone: bool,
) -> Result<u64, Error>
where
    S: Sync,
    for<'a> &'a S: Read + Write,
{
    if alone {
        let mut checker = Checker::new(framing);
        while receiver.answered < sender.workload.messages {
            sender.fill(&mut checker, Instant::now())?;
            sender.write(stream)?;
            receiver.read(stream, &mut checker, progress)?;
        }
        return Ok(sender.written);
    }
    let messages = sender.workload.messages;
    let shared = Shared {
        state: Mutex::new(State { checker: Checker::new(framing), failed: false }),
        window_open: Condvar::new(),
    };
    let (written, read) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let result = write_load(stream, &shared, sender);
            if result.is_err() {
                shared.fail();
            }
            result
        });
        let read = read_replies(stream, &shared, receiver, messages, progress);
        if read.is_err() {
            shared.fail();
        }
        let written = writer.join().unwrap_or(Err(Error::Io(io::Error::other("the writer thread panicked"))));
        (written, read)
    });
    // The reader's error comes first: when both failed, it is the cause (a
    // mismatch, say, after which the writer stopped).
    let finished = read?;
    let bytes_sent = written?;
    if finished { Ok(bytes_sent) } else { Err(Error::Io(io::Error::other("the writer stopped early"))) }
}

/// Makes and frames the messages of a workload, a window's worth at a time
/// (open loop: those due by then).
struct Sender {
    workload: Workload,
    /// When the load started: message `n` is due `n` intervals later.
    start: Instant,
    seq: u64,
    text: Vec<u8>,
    out: Vec<u8>,
    written: u64,
}

impl Sender {
    fn new(workload: Workload, start: Instant) -> Sender {
        Sender { workload, start, seq: 0, text: Vec::with_capacity(workload.size), out: Vec::new(), written: 0 }
    }

    /// Open loop: when the next message is due (one too far off to
    /// represent is taken as a day off: the stream's read timeout ends such
    /// a load). `None` in a closed loop.
    fn due(&self) -> Option<Instant> {
        const FAR: Duration = Duration::from_secs(24 * 3600);
        let interval = self.workload.interval?;
        let after = Duration::try_from_secs_f64(interval.as_secs_f64() * self.seq as f64).unwrap_or(FAR);
        Some(self.start.checked_add(after).unwrap_or(self.start + FAR))
    }

    /// Frames messages into the output until the window is full (open loop:
    /// or the next is not due yet), each tagged with when it was sent (`now`)
    /// or due.
    fn fill(&mut self, checker: &mut Checker<Instant>, now: Instant) -> Result<(), Error> {
        let room = self.workload.window.saturating_sub(checker.in_flight()) as u64;
        for _ in 0..room.min(self.workload.messages - self.seq) {
            let tag = match self.due() {
                Some(due) if due > now => break,
                Some(due) => due,
                None => now,
            };
            self.text.clear();
            message(self.seq, self.workload.size, &mut self.text);
            checker.send(&self.text, tag, &mut self.out)?;
            self.seq += 1;
        }
        Ok(())
    }

    fn done(&self) -> bool {
        self.seq == self.workload.messages
    }

    /// Writes what `fill` framed, in one write.
    fn write<S>(&mut self, stream: &S) -> Result<(), Error>
    where
        for<'a> &'a S: Write,
    {
        if self.out.is_empty() {
            return Ok(());
        }
        let mut writer = stream;
        writer.write_all(&self.out).map_err(Error::from_io)?;
        self.written += self.out.len() as u64;
        self.out.clear();
        Ok(())
    }
}

/// Reads replies and hands each latency to `latency`.
struct Receiver<L> {
    input: Vec<u8>,
    latency: L,
    answered: u64,
    received: u64,
}

impl<L: FnMut(Duration)> Receiver<L> {
    fn new(latency: L) -> Receiver<L> {
        Receiver { input: vec![0; 64 * 1024], latency, answered: 0, received: 0 }
    }

    /// Reads once (blocking) and returns what arrived.
    fn read_some<S>(&mut self, stream: &S) -> Result<&[u8], Error>
    where
        for<'a> &'a S: Read,
    {
        let mut reader = stream;
        let n = loop {
            match reader.read(&mut self.input) {
                Ok(0) => return Err(Error::Protocol(ProtocolError::UnexpectedEof)),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::from_io(e)),
            }
        };
        self.received += n as u64;
        Ok(&self.input[..n])
    }

    /// Checks `input`, recording each completed reply as answered `now`.
    fn check(
        &mut self,
        checker: &mut Checker<Instant>,
        input_len: usize,
        progress: &AtomicU64,
    ) -> Result<usize, Error> {
        let now = Instant::now();
        let latency = &mut self.latency;
        let done = checker.receive(&self.input[..input_len], |sent| latency(now.saturating_duration_since(sent)))?;
        self.answered += done as u64;
        progress.fetch_add(done as u64, Ordering::Relaxed);
        Ok(done)
    }

    /// Reads once and checks what came.
    fn read<S>(&mut self, stream: &S, checker: &mut Checker<Instant>, progress: &AtomicU64) -> Result<usize, Error>
    where
        for<'a> &'a S: Read,
    {
        let n = self.read_some(stream)?.len();
        self.check(checker, n, progress)
    }
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when replies free room in the window, or on failure.
    window_open: Condvar,
}

struct State {
    checker: Checker<Instant>,
    failed: bool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fail(&self) {
        self.lock().failed = true;
        self.window_open.notify_all();
    }
}

/// The writer thread: fills the window (open loop: sleeps until the next
/// message is due first), one write per batch. Returns the bytes written;
/// stops early (without error) if the reader failed.
fn write_load<S>(stream: &S, shared: &Shared, mut sender: Sender) -> Result<u64, Error>
where
    for<'a> &'a S: Write,
{
    let window = sender.workload.window;
    while !sender.done() {
        if let Some(due) = sender.due() {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        {
            let mut state = shared.lock();
            while state.checker.in_flight() >= window && !state.failed {
                state = shared.window_open.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            if state.failed {
                break;
            }
            sender.fill(&mut state.checker, Instant::now())?;
        }
        sender.write(stream)?;
    }
    Ok(sender.written)
}

/// The reader thread: checks replies until all `messages` are answered.
/// `false` if it stopped because the writer failed.
fn read_replies<S, L: FnMut(Duration)>(
    stream: &S,
    shared: &Shared,
    receiver: &mut Receiver<L>,
    messages: u64,
    progress: &AtomicU64,
) -> Result<bool, Error>
where
    for<'a> &'a S: Read,
{
    while receiver.answered < messages {
        let n = receiver.read_some(stream)?.len();
        let done = {
            let mut state = shared.lock();
            if state.failed {
                return Ok(false);
            }
            receiver.check(&mut state.checker, n, progress)?
        };
        if done > 0 {
            shared.window_open.notify_one();
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::LineEnding;
    use crate::protocol::Responder;
    use crate::stamp::Ctime;
    use crate::{MalformedReason, MessageError};
    use std::sync::Arc;
    use std::time::SystemTime;

    const FRAMINGS: [Framing; 3] = [Framing::chunk(), Framing::line(), Framing::length_prefixed()];

    /// Sends `messages`, answers them with our responder in reads of
    /// `server_read` bytes, and feeds the replies back in pieces of `piece`.
    fn round_trip(framing: Framing, messages: &[&[u8]], server_read: usize, piece: usize) -> Result<Vec<usize>, Error> {
        let mut checker = Checker::new(framing);
        let mut wire = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            checker.send(m, i, &mut wire)?;
        }
        let mut responder = Responder::new(framing, Arc::new(Ctime::utc()));
        let mut replies = Vec::new();
        for read in wire.chunks(server_read) {
            responder.receive(read, SystemTime::UNIX_EPOCH, &mut replies)?;
        }
        responder.finish(SystemTime::UNIX_EPOCH, &mut replies)?;
        let mut answered = Vec::new();
        for read in replies.chunks(piece) {
            checker.receive(read, |tag| answered.push(tag))?;
        }
        assert_eq!(checker.in_flight(), messages.len() - answered.len());
        Ok(answered)
    }

    #[test]
    fn every_framing_and_split_is_checked_in_order() {
        let messages: [&[u8]; 4] = [b"hello", b"x", "你好 world".as_bytes(), &[b'z'; 3000]];
        for framing in FRAMINGS {
            for server_read in [1, 2, 7, 100, 5000] {
                for piece in [1, 3, 64, 10_000] {
                    let answered = round_trip(framing, &messages, server_read, piece);
                    assert_eq!(answered.ok(), Some(vec![0, 1, 2, 3]), "{framing} {server_read} {piece}");
                }
            }
        }
    }

    /// The line ending a server echoes in each framing, for a message sent with `\n`.
    fn ending(framing: Framing) -> LineEnding {
        if let Framing::Line { .. } = framing { LineEnding::Lf } else { LineEnding::None }
    }

    #[test]
    fn a_wrong_echo_is_caught_at_its_offset() {
        for framing in FRAMINGS {
            let mut checker = Checker::new(framing);
            let mut wire = Vec::new();
            checker.send(b"first", (), &mut wire).expect("sendable");
            checker.send(b"second", (), &mut wire).expect("sendable");
            let mut replies = Vec::new();
            framing.encode_reply("T", b"first", ending(framing), &mut replies);
            framing.encode_reply("T", b"secXnd", ending(framing), &mut replies);
            let mut answered = 0;
            let r = checker.receive(&replies, |()| answered += 1);
            assert!(matches!(r, Err(Error::Protocol(ProtocolError::EchoMismatch { offset: 3 }))), "{framing}: {r:?}");
            assert_eq!(answered, 1, "{framing}");
        }
    }

    #[test]
    fn lost_repeated_and_extra_replies_are_caught() {
        for framing in [Framing::line(), Framing::length_prefixed()] {
            let mut checker = Checker::new(framing);
            let mut wire = Vec::new();
            checker.send(b"a1", (), &mut wire).expect("sendable");
            checker.send(b"a2", (), &mut wire).expect("sendable");
            let mut replies = Vec::new();
            framing.encode_reply("T", b"a2", ending(framing), &mut replies); // a1 lost
            assert!(matches!(
                checker.receive(&replies, |()| {}),
                Err(Error::Protocol(ProtocolError::EchoMismatch { offset: 1 }))
            ));

            let mut checker = Checker::new(framing);
            checker.send(b"a1", (), &mut wire).expect("sendable");
            replies.clear();
            framing.encode_reply("T", b"a1", ending(framing), &mut replies);
            framing.encode_reply("T", b"a1", ending(framing), &mut replies); // repeated
            let r = checker.receive(&replies, |()| {});
            assert!(
                matches!(r, Err(Error::Protocol(ProtocolError::MalformedReply(MalformedReason::Unsolicited)))),
                "{r:?}"
            );
        }
        let mut checker = Checker::new(Framing::chunk());
        checker.send(b"ab", (), &mut Vec::new()).expect("sendable");
        let r = checker.receive(b"[T] abc", |()| {});
        assert!(matches!(r, Err(Error::Protocol(ProtocolError::MalformedReply(_)))), "{r:?}");
        let mut checker = Checker::new(Framing::chunk());
        checker.send(b"ab", (), &mut Vec::new()).expect("sendable");
        assert!(matches!(
            checker.receive(b"[T] a[U] c", |()| {}),
            Err(Error::Protocol(ProtocolError::EchoMismatch { offset: 1 }))
        ));
    }

    #[test]
    fn malformed_replies_are_caught() {
        for framing in FRAMINGS {
            let mut checker = Checker::new(framing);
            let mut wire = Vec::new();
            checker.send(b"hi", (), &mut wire).expect("sendable");
            let mut replies = Vec::new();
            framing.encode_reply("T", b"hi", ending(framing), &mut replies);
            let at = replies.iter().position(|&b| b == b'[').expect("a stamp");
            replies[at] = b'(';
            let r = checker.receive(&replies, |()| {});
            assert!(matches!(r, Err(Error::Protocol(ProtocolError::MalformedReply(_)))), "{framing}: {r:?}");
        }
        let mut checker = Checker::<()>::new(Framing::line());
        let endless = vec![b'['; 70 * 1024];
        assert!(matches!(checker.receive(&endless, |()| {}), Err(Error::Protocol(ProtocolError::MalformedReply(_)))));
    }

    #[test]
    fn unsendable_messages_are_refused_up_front() {
        let mut out = Vec::new();
        let mut checker = Checker::new(Framing::line());
        assert!(matches!(checker.send(b"a\nb", (), &mut out), Err(Error::Message(MessageError::Newline))));
        let mut checker = Checker::new(Framing::chunk());
        assert!(matches!(checker.send(b"", (), &mut out), Err(Error::Message(MessageError::EmptyChunk))));
        assert!(out.is_empty());
        assert_eq!(checker.in_flight(), 0);
    }

    #[test]
    fn messages_are_distinct_and_plain() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        message(35, 16, &mut a);
        message(36, 16, &mut b);
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        assert_eq!(&a[..], b"abcdefghijklmnoz");
        assert_eq!(&b[..], b"abcdefghijklmn10");
        a.clear();
        message(u64::MAX, 3, &mut a);
        assert!(a.iter().all(u8::is_ascii_alphanumeric));
    }
}
