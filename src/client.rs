//! [`EchoClient`]: send a message, get back its stamped echo, checked.
//!
//! The client is a thin blocking loop around [`ReplyChecker`], the I/O-free
//! reply core: it writes what the checker frames, and feeds it what it reads.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime};

use crate::Error;
use crate::bounds::Bound;
pub use crate::clock::ClockOffset;
use crate::framing::Framing;
use crate::reply::{Event, ReplyChecker};
use crate::stamp::StampKind;
use crate::{ProtocolError, TimeoutError};

/// The checked reply to one message.
///
/// Its memory is bounded by the message, whatever the server's piece size:
/// it keeps the message once and at most [`Reply::MAX_PIECES`] stamped
/// pieces (see [`pieces`](Reply::pieces)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pieces: Vec<Piece>,
    /// Pieces the server sent, merged ones included.
    piece_count: u64,
    message: Vec<u8>,
    rtt: Duration,
    sent_at: SystemTime,
    received_at: SystemTime,
}

/// One stamped piece of a reply: in chunk framing the server answers each of
/// its reads, so a long message comes back as several pieces.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Piece {
    /// The stamp text, without brackets.
    pub stamp: String,
    /// How many bytes of the message this piece echoed.
    pub len: usize,
}

impl Reply {
    /// The most stamped pieces a reply keeps. A server may answer a message
    /// in as many pieces as it has bytes, each behind a stamp of up to 255
    /// bytes (a hostile one does, to make its client keep 256 bytes per
    /// byte echoed); past this many, further pieces are merged into the last
    /// one kept. So a reply holds at most this many stamps (about 300 KiB
    /// at the longest) beside its message. Our server, reading 1024 bytes at
    /// a time, answers a 1 MiB message in 1024 pieces or more.
    pub const MAX_PIECES: usize = 1024;

    /// The first (in line and length framing, the only) stamp.
    pub fn stamp(&self) -> &str {
        self.pieces.first().map_or("", |p| p.stamp.as_str())
    }

    /// The stamped pieces, in order: every one the server sent, up to
    /// [`Reply::MAX_PIECES`]. Beyond that the last piece kept stands for
    /// itself and every later one: its `len` counts their bytes too, and
    /// its stamp is its own (the first of them). The lengths always add up
    /// to the message's; [`piece_count`](Reply::piece_count) says how many
    /// pieces there were.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// How many stamped pieces the server sent this reply in, merged ones
    /// included (1 in line and length framing).
    pub fn piece_count(&self) -> u64 {
        self.piece_count
    }

    /// The echoed message: always equal to what was sent (a reply that differs
    /// is an [`ProtocolError::EchoMismatch`], never a `Reply`).
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// From just before the message was written to just after its whole reply
    /// was read.
    pub fn rtt(&self) -> Duration {
        self.rtt
    }

    /// The wall-clock time the message was sent.
    pub fn sent_at(&self) -> SystemTime {
        self.sent_at
    }

    /// The wall-clock time the whole reply had arrived.
    pub fn received_at(&self) -> SystemTime {
        self.received_at
    }
}

impl fmt::Display for Reply {
    /// The reply as the server sent it, without framing: `[STAMP] MESSAGE`,
    /// repeated per piece; bytes that are not UTF-8 are shown as U+FFFD.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut at = 0;
        for piece in &self.pieces {
            let part = self.message.get(at..at + piece.len).unwrap_or_default();
            write!(f, "[{}] {}", piece.stamp, String::from_utf8_lossy(part))?;
            at += piece.len;
        }
        Ok(())
    }
}

/// A stream whose read timeout can be set, so that [`EchoClient`] can bound
/// the wait for a whole reply (see [`EchoClient::set_timeout`]).
///
/// Implemented for [`TcpStream`] and, on Unix, `UnixStream`; implement it
/// for your own stream type to give it a reply deadline.
pub trait ReadTimeout {
    /// Sets how long one read may block (`None`: for ever), as
    /// [`TcpStream::set_read_timeout`] does.
    ///
    /// # Errors
    ///
    /// Whatever setting the timeout fails with.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl ReadTimeout for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

#[cfg(unix)]
impl ReadTimeout for std::os::unix::net::UnixStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_read_timeout(self, timeout)
    }
}

impl<T: ReadTimeout + ?Sized> ReadTimeout for &T {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(timeout)
    }
}

/// Talks to a stamp-echo server (or the original Python one) over any
/// `Read + Write` stream.
///
/// ```no_run
/// use std::net::TcpStream;
/// use std::time::Duration;
/// use stamp_echo::{EchoClient, Framing};
///
/// let stream = TcpStream::connect("127.0.0.1:8080")?;
/// let mut client = EchoClient::new(stream, Framing::chunk())?;
/// client.set_timeout(Some(Duration::from_secs(5)))?; // for each whole reply
/// let reply = client.round_trip(b"hi,server")?;
/// println!("{reply}  ({:?})", reply.rtt());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// For pipelining, [`send`](EchoClient::send) several messages, then
/// [`receive`](EchoClient::receive) each reply in order. Replies are checked
/// by a [`ReplyChecker`]: in linear time in the bytes received, whatever the
/// messages hold (`[`, or text that looks like a stamp). After an error the
/// client should be dropped: the reply stream is no longer in step.
pub struct EchoClient<S> {
    stream: S,
    engine: Engine,
    deadline: Option<Deadline<S>>,
}

/// The reply timeout and how to apply it to the stream.
struct Deadline<S> {
    timeout: Duration,
    set: fn(&S, Option<Duration>) -> io::Result<()>,
}

impl<S> fmt::Debug for EchoClient<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EchoClient")
            .field("checker", self.engine.checker())
            .field("timeout", &self.deadline.as_ref().map(|d| d.timeout))
            .finish_non_exhaustive()
    }
}

/// When a message was sent: the tag the [`Engine`] gives each message.
type SentAt = (Instant, SystemTime);

/// The one client engine, I/O-free, shared by [`EchoClient`], its async twin
/// and the client codec: a [`ReplyChecker`] tagging each message with when it
/// was sent, turning checked bytes into [`Reply`] values, and saying what to
/// do next while a message is sent ([`Next`]): the write and catch-up loop
/// written once, each client only doing the I/O it asks for.
#[derive(Debug)]
pub(crate) struct Engine {
    checker: ReplyChecker<SentAt>,
    /// The pieces of the reply being checked (kept across reads, so that a
    /// caller may give up waiting and resume).
    pieces: Pieces,
    /// Bytes read and not yet checked: `input[start..end]`.
    input: Vec<u8>,
    start: usize,
    end: usize,
    /// Whole replies read while a long message was being written.
    ready: VecDeque<Reply>,
    /// The message being sent, framed, and how much of it is written.
    out: Vec<u8>,
    written: usize,
    /// Its length unframed.
    message_len: usize,
    /// Whether the echo of what was written is to be read before writing on.
    catching_up: bool,
}

/// What a client sending a message does next (see [`Engine::next`]).
#[derive(Debug)]
pub(crate) enum Next<'a> {
    /// Write (and flush) these bytes, then tell [`Engine::wrote`].
    Write(&'a [u8]),
    /// Read into [`Engine::spare`] and tell [`Engine::filled`]: the server
    /// owes echo of what was written, so the read cannot block for ever.
    Read,
    /// The message is written.
    Done,
}

impl Engine {
    /// An engine in `framing`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `framing`'s settings are out of range.
    pub(crate) fn new(framing: Framing) -> Result<Engine, Error> {
        framing.validate()?;
        Ok(Engine {
            checker: ReplyChecker::with_tags(framing),
            pieces: Pieces::default(),
            input: Vec::new(),
            start: 0,
            end: 0,
            ready: VecDeque::new(),
            out: Vec::new(),
            written: 0,
            message_len: 0,
            catching_up: false,
        })
    }

    pub(crate) fn checker(&self) -> &ReplyChecker<SentAt> {
        &self.checker
    }

    /// Messages sent whose replies have not been handed out.
    pub(crate) fn in_flight(&self) -> usize {
        self.checker.in_flight() + self.ready.len()
    }

    /// Frames `message` into `out` and records it as sent now (for the
    /// codec, which writes through `Framed`).
    #[cfg(feature = "tokio")]
    pub(crate) fn frame(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        self.checker.send_tagged(message, (Instant::now(), SystemTime::now()), out)
    }

    /// Begins sending `message`: frames it and records it as sent now; then
    /// do what [`next`](Engine::next) says until it says [`Next::Done`].
    pub(crate) fn send(&mut self, message: &[u8]) -> Result<(), Error> {
        self.out.clear();
        (self.written, self.message_len, self.catching_up) = (0, message.len(), false);
        self.checker.send_tagged(message, (Instant::now(), SystemTime::now()), &mut self.out)
    }

    /// What to do next for the message being sent: a message longer than
    /// [`WRITE_CHUNK`] is written a chunk at a time, and after each chunk the
    /// echo that has come is read and checked until it has caught up with
    /// what was written (less what a server may hold back), keeping the
    /// whole replies for [`next_reply`](Engine::next_reply).
    ///
    /// # Errors
    ///
    /// Those of checking the echo read.
    pub(crate) fn next(&mut self) -> Result<Next<'_>, Error> {
        if self.catching_up {
            while let Some(reply) = self.check_next()? {
                self.ready.push_back(reply);
            }
            if self.owed() {
                return Ok(Next::Read);
            }
            self.catching_up = false;
        }
        if self.written == self.out.len() {
            return Ok(Next::Done);
        }
        let end = self.out.len().min(self.written + WRITE_CHUNK);
        Ok(Next::Write(&self.out[self.written..end]))
    }

    /// `n` bytes of the [`Next::Write`] were written.
    pub(crate) fn wrote(&mut self, n: usize) {
        self.written = self.out.len().min(self.written + n);
        self.catching_up = self.written < self.out.len();
    }

    /// Whether the server still owes echo bytes of what was written, beyond
    /// what it may hold back.
    fn owed(&self) -> bool {
        // The bytes of the message not yet written: a bound, counting a
        // line's ending as one.
        let unwritten = (self.out.len() - self.written).min(self.message_len);
        let written = self.checker.bytes_sent().saturating_sub(unwritten as u64);
        self.checker.bytes_echoed() < written.saturating_sub(HELD_BACK)
    }

    /// Checks `input` up to the end of the next whole reply: how many bytes
    /// it took, and the reply, if they completed one.
    pub(crate) fn check(&mut self, input: &[u8]) -> Result<(usize, Option<Reply>), Error> {
        let mut taken = 0;
        loop {
            let (consumed, event) = self.checker.receive(&input[taken..])?;
            taken += consumed;
            match event {
                Some(Event::Piece { stamp, len, .. }) => self.pieces.push(stamp, len),
                Some(Event::Reply { message, tag: (sent_instant, sent_at), .. }) => {
                    let Pieces { kept, count } = std::mem::take(&mut self.pieces);
                    let reply = Reply {
                        pieces: kept,
                        piece_count: count,
                        message: message.to_vec(),
                        rtt: sent_instant.elapsed(),
                        sent_at,
                        received_at: SystemTime::now(),
                    };
                    return Ok((taken, Some(reply)));
                }
                None => return Ok((taken, None)),
            }
        }
    }

    /// The next whole reply among the bytes read, if they hold one.
    pub(crate) fn next_reply(&mut self) -> Result<Option<Reply>, Error> {
        match self.ready.pop_front() {
            Some(reply) => Ok(Some(reply)),
            None => self.check_next(),
        }
    }

    fn check_next(&mut self) -> Result<Option<Reply>, Error> {
        // The buffer is lent out while its bytes are checked (no copy).
        let input = std::mem::take(&mut self.input);
        let checked = self.check(&input[self.start..self.end]);
        self.input = input;
        let (consumed, reply) = checked?;
        self.start += consumed;
        Ok(reply)
    }

    /// Where to read more, once every byte read is checked (after
    /// [`next_reply`](Engine::next_reply) gave `None`, or [`next`](Engine::next)
    /// [`Next::Read`]); then call [`filled`](Engine::filled) with how many
    /// bytes were read.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        self.start = 0;
        self.end = 0;
        if self.input.len() < READ_SIZE {
            self.input.resize(READ_SIZE, 0);
        }
        &mut self.input
    }

    /// `n` bytes were read into [`spare`](Engine::spare); 0 is the end of the
    /// reply stream, an [`ProtocolError::UnexpectedEof`] (a reply is awaited).
    pub(crate) fn filled(&mut self, n: usize) -> Result<(), Error> {
        if n == 0 {
            return Err(Error::Protocol(ProtocolError::UnexpectedEof));
        }
        self.end = n.min(self.input.len());
        Ok(())
    }
}

/// The pieces of a reply being checked: at most [`Reply::MAX_PIECES`]
/// kept, and how many there were.
#[derive(Debug, Default)]
struct Pieces {
    kept: Vec<Piece>,
    count: u64,
}

impl Pieces {
    /// Keeps a piece, or merges it into the last one kept past
    /// [`Reply::MAX_PIECES`].
    fn push(&mut self, stamp: &str, len: usize) {
        self.count += 1;
        let full = self.kept.len() >= Reply::MAX_PIECES;
        match self.kept.last_mut() {
            Some(last) if full => last.len += len,
            _ => self.kept.push(Piece { stamp: stamp.to_owned(), len }),
        }
    }
}

/// A client's reply timeout: longer than zero, or `None` (no timeout, the
/// default), as for a socket's read timeout.
pub(crate) const REPLY_TIMEOUT: Bound<Duration> =
    Bound::new("timeout", Duration::from_nanos(1), Duration::MAX).or_none();

/// A reply timeout, refused if zero.
pub(crate) fn check_timeout(timeout: Option<Duration>) -> Result<Option<Duration>, Error> {
    Ok(REPLY_TIMEOUT.check_option(timeout)?)
}

/// How much a client reads at once.
const READ_SIZE: usize = 64 * 1024;

/// How much of a long message a client writes before it reads the echo
/// that has come (see [`EchoClient::round_trip`]).
const WRITE_CHUNK: usize = 64 * 1024;

/// The most bytes of a message a server holds back before echoing them:
/// the first bytes of a UTF-8 character, a partial length prefix, a `\r`
/// (see [`Decoder::pending`](crate::framing::Splitter::pending)).
const HELD_BACK: u64 = 3;

impl<S: Read + Write> EchoClient<S> {
    /// A client speaking `framing` on `stream`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `framing`'s settings are out of range.
    pub fn new(stream: S, framing: Framing) -> Result<EchoClient<S>, Error> {
        Ok(EchoClient { stream, engine: Engine::new(framing)?, deadline: None })
    }

    /// Sends `message` and waits for its whole reply.
    ///
    /// A message of any size takes one round trip. The server echoes a
    /// message as its bytes arrive, in every framing, so a peer that wrote
    /// a long message whole before reading would stall once the socket
    /// buffers of both sides are full of echo (a few MiB on Linux loopback).
    /// So a message longer than 64 KiB is written 64 KiB at a time, and after
    /// each piece the client reads, and checks, the echo until it has caught
    /// up with what was written (less the 3 bytes at most a server holds
    /// back): one thread, blocking I/O, any `Read + Write` stream, and the
    /// bytes in flight never more than one piece and its echo. The
    /// [timeout](EchoClient::set_timeout), if set, bounds each of these
    /// waits as well as the wait for the whole reply.
    ///
    /// # Errors
    ///
    /// Those of [`send`](EchoClient::send) and [`receive`](EchoClient::receive).
    pub fn round_trip(&mut self, message: &[u8]) -> Result<Reply, Error> {
        self.send(message)?;
        self.receive()
    }

    /// Sends `message` without waiting for the reply (but reading the echo
    /// of a message over 64 KiB as it is written: see
    /// [`round_trip`](EchoClient::round_trip); replies that come meanwhile
    /// are checked and kept for [`receive`](EchoClient::receive)).
    ///
    /// # Errors
    ///
    /// [`Error::Message`], without sending anything, if the framing
    /// cannot carry the message (see [`ReplyChecker::send`]); [`Error::Io`]
    /// or [`TimeoutError::Idle`] if writing fails; while a long message is
    /// written, those of [`receive`](EchoClient::receive).
    pub fn send(&mut self, message: &[u8]) -> Result<(), Error> {
        self.engine.send(message)?;
        // The deadline of the current wait for echo, from its first read.
        let mut deadline = None;
        loop {
            match self.engine.next()? {
                Next::Write(bytes) => {
                    let n = bytes.len();
                    self.stream.write_all(bytes).and_then(|()| self.stream.flush()).map_err(Error::from_io)?;
                    self.engine.wrote(n);
                    deadline = None;
                }
                Next::Read => {
                    let timeout = self.deadline.as_ref().map(|d| d.timeout);
                    let at = *deadline.get_or_insert_with(|| timeout.map(|t| Instant::now() + t));
                    self.fill(at)?;
                }
                Next::Done => return Ok(()),
            }
        }
    }

    /// Reads the reply to the oldest message sent and not yet answered, and
    /// checks that it echoes that message.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::EchoMismatch`] or [`ProtocolError::MalformedReply`] for a wrong reply
    /// (bytes that arrive when nothing is in flight are a reply to no
    /// message); [`ProtocolError::UnexpectedEof`] if the server closes first;
    /// [`TimeoutError::Reply`] if a [timeout](EchoClient::set_timeout) is set
    /// and the whole reply has not come within it; [`Error::Io`] (or
    /// [`TimeoutError::Idle`], for the stream's own read timeout) if reading fails.
    pub fn receive(&mut self) -> Result<Reply, Error> {
        let deadline = self.deadline.as_ref().map(|d| Instant::now() + d.timeout);
        loop {
            if let Some(reply) = self.engine.next_reply()? {
                return Ok(reply);
            }
            self.fill(deadline)?;
        }
    }

    /// Reads more of the reply stream, once everything read is checked.
    fn fill(&mut self, deadline: Option<Instant>) -> Result<(), Error> {
        if let (Some(deadline), Some(d)) = (deadline, &self.deadline) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout(TimeoutError::Reply { timeout: d.timeout }));
            }
            (d.set)(&self.stream, Some(left)).map_err(Error::Io)?;
        }
        let n = loop {
            match self.stream.read(self.engine.spare()) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(match &self.deadline {
                        Some(d) if deadline.is_some() => Error::Timeout(TimeoutError::Reply { timeout: d.timeout }),
                        _ => Error::Timeout(TimeoutError::Idle),
                    });
                }
                Err(e) => return Err(Error::from_io(e)),
                Ok(n) => break n,
            }
        };
        self.engine.filled(n)
    }

    /// The framing in use.
    pub fn framing(&self) -> Framing {
        self.engine.checker().framing()
    }

    /// Messages sent whose replies have not been received yet.
    pub fn in_flight(&self) -> usize {
        self.engine.in_flight()
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream, mutably (to set timeouts, say). Reading from it directly
    /// may take bytes of a reply.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Gives back the stream.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S: Read + Write + ReadTimeout> EchoClient<S> {
    /// Bounds the wait for each whole reply (`None`, the default: no bound
    /// beyond the stream's own read timeout).
    ///
    /// It is a deadline, not an idle timeout: before each read the stream's
    /// read timeout is set to the time left, so a server trickling a byte now
    /// and then cannot keep [`receive`](EchoClient::receive) (or
    /// [`round_trip`](EchoClient::round_trip)) waiting past it. On expiry
    /// they fail with [`TimeoutError::Reply`]. The stream keeps the last read
    /// timeout set; writes are not bounded by this (set the stream's write
    /// timeout for that).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a zero timeout.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        self.deadline = check_timeout(timeout)?
            .map(|timeout| Deadline { timeout, set: |stream: &S, t| stream.set_read_timeout(t) });
        Ok(())
    }
}

impl Reply {
    /// Estimates the server's clock offset from this reply, reading its
    /// stamp as `kind` (the server's `--stamp`), the NTP way: see
    /// [`ClockOffset`]. `None` when the stamp does not parse as `kind`, and
    /// always for the ctime kinds (whole seconds, and no zone).
    ///
    /// In chunk framing the first piece's stamp is used: the server stamped
    /// it on the first read of the message.
    ///
    /// ```no_run
    /// use std::net::TcpStream;
    /// use stamp_echo::{EchoClient, Framing, stamp::StampKind};
    ///
    /// // Against `stamp-echo serve --stamp rfc3339`:
    /// let mut client = EchoClient::new(TcpStream::connect("127.0.0.1:8080")?, Framing::chunk())?;
    /// let reply = client.round_trip(b"what time is it?")?;
    /// if let Some(offset) = reply.clock_offset(StampKind::Rfc3339) {
    ///     println!("server clock: {offset} from ours"); // +0.004±0.031 ms
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clock_offset(&self, kind: StampKind) -> Option<ClockOffset> {
        let (server, resolution) = kind.parse_precise(self.stamp())?;
        Some(ClockOffset::measure(self.sent_at, self.rtt, server, resolution))
    }

    /// The reply `[stamp] message` in one piece, to a message sent at
    /// `sent_at` (with `sent_instant` read just before it), arriving now.
    pub(crate) fn arrived(stamp: &str, message: &[u8], sent_instant: Instant, sent_at: SystemTime) -> Reply {
        Reply {
            pieces: vec![Piece { stamp: stamp.to_owned(), len: message.len() }],
            piece_count: 1,
            message: message.to_vec(),
            rtt: sent_instant.elapsed(),
            sent_at,
            received_at: SystemTime::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MalformedReason;
    use crate::testing::Duplex;

    fn lens(reply: &Reply) -> Vec<(&str, usize)> {
        reply.pieces().iter().map(|p| (p.stamp.as_str(), p.len)).collect()
    }

    fn against(replies: &[u8], message: &[u8]) -> Result<Reply, Error> {
        let mut client = EchoClient::new(Duplex::new(replies.to_vec()), Framing::chunk()).expect("valid framing");
        client.round_trip(message)
    }

    #[test]
    fn chunk_replies_in_one_piece_and_in_several() {
        assert_eq!(lens(&against(b"[T] hello", b"hello").expect("reply")), [("T", 5)]);
        assert_eq!(lens(&against(b"[A] hel[B] lo[C] !", b"hello!").expect("reply")), [("A", 3), ("B", 2), ("C", 1)]);
    }

    #[test]
    fn chunk_reply_that_differs_is_a_mismatch() {
        assert!(matches!(against(b"[T] hx", b"hi"), Err(Error::Protocol(ProtocolError::EchoMismatch { offset: 1 }))));
        assert!(matches!(
            against(b"[T] h[U] x", b"hi"),
            Err(Error::Protocol(ProtocolError::EchoMismatch { offset: 1 }))
        ));
        assert!(matches!(
            against(b"hi", b"hi"),
            Err(Error::Protocol(ProtocolError::MalformedReply(MalformedReason::NoOpenBracket)))
        ));
        assert!(matches!(against(b"[T] h[", b"hi"), Err(Error::Protocol(ProtocolError::UnexpectedEof))));
    }

    #[test]
    fn chunk_reply_with_brackets_in_the_message() {
        // The message looks like a stamp itself: "[T] a" + "[T] [T] b" and
        // "[T] a[T] " + "[T] b" both echo it, and both are accepted; of
        // readings that end together, the one that took a header earliest is
        // reported (it rejoined the others first).
        let sent = b"a[T] b";
        assert_eq!(lens(&against(b"[T] a[T] [T] b", sent).expect("reply")), [("T", 1), ("T", 5)]);
        assert_eq!(lens(&against(b"[T] a[T] b", sent).expect("reply")), [("T", 6)]);
    }

    #[test]
    fn pipelined_chunk_messages_answered_in_one_piece() {
        // The server read "one" and "two" together and "三" alone.
        let replies = Duplex::new("[T] onetwo[U] 三".as_bytes().to_vec());
        let mut client = EchoClient::new(replies, Framing::chunk()).expect("valid framing");
        let messages: [&[u8]; 3] = [b"one", b"two", "三".as_bytes()];
        for m in messages {
            client.send(m).expect("in memory");
        }
        assert_eq!(client.in_flight(), 3);
        let replies: Vec<Reply> = messages.iter().map(|_| client.receive().expect("reply")).collect();
        let stamps: Vec<&str> = replies.iter().map(Reply::stamp).collect();
        assert_eq!(stamps, ["T", "T", "U"]);
        let echoed: Vec<&[u8]> = replies.iter().map(Reply::message).collect();
        assert_eq!(echoed, messages);
    }

    #[test]
    fn a_pipelined_message_ending_in_a_bracket() {
        // "aaa[" and "b" pipelined; the server read "aaa" then "[b". Taking the
        // second "[" as the end of "aaa[" would leave "T] [b" for "b": the
        // client follows both readings until one fails.
        let replies = Duplex::new(b"[T] aaa[U] [b".to_vec());
        let mut client = EchoClient::new(replies, Framing::chunk()).expect("valid framing");
        client.send(b"aaa[").expect("in memory");
        client.send(b"b").expect("in memory");
        let first = client.receive().expect("a reply");
        assert_eq!(first.pieces(), [Piece { stamp: "T".into(), len: 3 }, Piece { stamp: "U".into(), len: 1 }]);
        assert_eq!(client.receive().expect("a reply").stamp(), "U");
    }

    #[test]
    fn a_reply_without_a_stamp_is_malformed_when_nothing_was_pipelined() {
        // "two" was sent after the reply to "one" was whole, so its reply
        // cannot continue that piece: it needs a stamp of its own.
        let replies = Duplex::from_reads([b"[T] one".to_vec(), b"two".to_vec()]);
        let mut client = EchoClient::new(replies, Framing::chunk()).expect("valid framing");
        client.round_trip(b"one").expect("a whole reply");
        assert!(matches!(client.round_trip(b"two"), Err(Error::Protocol(ProtocolError::MalformedReply(_)))));
    }

    #[test]
    fn one_byte_pieces() {
        let sent = vec![b'x'; 20_000];
        let mut replies = Vec::new();
        for b in &sent {
            replies.extend_from_slice(b"[T] ");
            replies.push(*b);
        }
        let reply = against(&replies, &sent).expect("reply");
        assert_eq!(reply.message(), sent);
        assert_eq!(reply.piece_count(), 20_000);
        // The first MAX_PIECES - 1 kept as they came; the last kept stands for the rest.
        assert_eq!(reply.pieces().len(), Reply::MAX_PIECES);
        assert!(reply.pieces()[..Reply::MAX_PIECES - 1].iter().all(|p| p.len == 1 && p.stamp == "T"));
        assert_eq!(reply.pieces().last().map(|p| p.len), Some(20_000 - (Reply::MAX_PIECES - 1)));
        // A reply in fewer pieces keeps them all.
        let reply = against(&replies[..5 * Reply::MAX_PIECES], &sent[..Reply::MAX_PIECES]).expect("reply");
        assert_eq!((reply.pieces().len() as u64, reply.piece_count()), (1024, 1024));
    }

    #[test]
    fn line_and_frame_replies() {
        let check = |framing: Framing, replies: &[u8]| {
            let mut client = EchoClient::new(Duplex::new(replies.to_vec()), framing).expect("valid framing");
            client.round_trip(b"hi")
        };
        for (framing, replies) in [
            (Framing::line(), &b"[T] hi\n"[..]),
            (Framing::line(), b"[T] hi\r\n"),
            (Framing::length_prefixed(), b"\0\0\0\x06[T] hi"),
        ] {
            assert_eq!(lens(&check(framing, replies).expect("reply")), [("T", 2)]);
        }
        assert!(matches!(check(Framing::line(), b"[T] hi"), Err(Error::Protocol(ProtocolError::UnexpectedEof))));
        assert!(matches!(
            check(Framing::line(), b"[T] ho\n"),
            Err(Error::Protocol(ProtocolError::EchoMismatch { offset: 1 }))
        ));
        assert!(matches!(
            check(Framing::length_prefixed(), b"\0\0\0\x06[T] h"),
            Err(Error::Protocol(ProtocolError::UnexpectedEof))
        ));
        assert!(matches!(
            check(Framing::length_prefixed(), b"\xff\0\0\0"),
            Err(Error::Protocol(ProtocolError::MalformedReply(_)))
        ));
    }

    #[test]
    fn the_engine_writes_a_long_message_in_chunks_reading_the_echo_between() {
        let mut engine = Engine::new(Framing::Line { max_line: 1 << 20 }).expect("valid framing");
        let message: Vec<u8> = (0..2 * WRITE_CHUNK + 10).map(|i| b'a' + (i % 26) as u8).collect();
        engine.send(&message).expect("sendable");
        let mut echo = b"[T] ".to_vec();
        echo.extend_from_slice(&message);
        echo.push(b'\n');
        // A server echoing each byte as it arrives: what it has received so
        // far comes back behind the header; `fed` bytes of that were read.
        let (mut fed, mut written, mut writes, mut reads) = (0, 0, Vec::new(), 0);
        let feed = |engine: &mut Engine, upto: usize, fed: &mut usize| {
            let spare = engine.spare();
            let n = (upto - *fed).min(spare.len());
            spare[..n].copy_from_slice(&echo[*fed..*fed + n]);
            *fed += n;
            engine.filled(n)
        };
        loop {
            match engine.next().expect("the echo checks") {
                Next::Write(bytes) => {
                    let n = bytes.len();
                    written += n;
                    writes.push(n);
                    engine.wrote(n);
                }
                Next::Read => {
                    reads += 1;
                    feed(&mut engine, 4 + written, &mut fed).expect("echo owed");
                }
                Next::Done => break,
            }
        }
        // The line's ending goes with the last chunk; the engine read the
        // echo of each chunk before writing the next: one read each (of
        // READ_SIZE bytes, the echo but for the last 4, within what a server
        // may hold back and the line ending it counts as unwritten).
        assert_eq!(writes, [WRITE_CHUNK, WRITE_CHUNK, 11]);
        assert_eq!((reads, fed), (2, 2 * READ_SIZE));
        assert_eq!(engine.in_flight(), 1);
        assert_eq!(engine.next_reply().expect("checked"), None);
        feed(&mut engine, echo.len(), &mut fed).expect("the rest");
        let reply = engine.next_reply().expect("checked").expect("the whole reply");
        assert_eq!((reply.message(), reply.stamp()), (&message[..], "T"));
        assert_eq!(engine.in_flight(), 0);
    }

    /// A reader that hands out one byte per read: a server trickling its reply.
    struct Trickle {
        replies: Vec<u8>,
        at: usize,
        reads: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            match (self.replies.get(self.at), buf.first_mut()) {
                (Some(&b), Some(slot)) => {
                    *slot = b;
                    self.at += 1;
                    Ok(1)
                }
                _ => Err(io::Error::from(io::ErrorKind::WouldBlock)),
            }
        }
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl ReadTimeout for Trickle {
        fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
            assert!(timeout.is_some_and(|t| !t.is_zero()), "a read timeout of {timeout:?}");
            Ok(())
        }
    }

    #[test]
    fn a_reply_timeout_is_a_typed_error_and_zero_is_refused() {
        let trickle = Trickle { replies: b"[T] h".to_vec(), at: 0, reads: 0 };
        let mut client = EchoClient::new(trickle, Framing::chunk()).expect("valid framing");
        assert!(matches!(client.set_timeout(Some(Duration::ZERO)), Err(Error::Config(_))));
        client.set_timeout(Some(Duration::from_secs(30))).expect("a timeout");
        // The fake stream says "would block" once it has nothing left: the
        // read timeout expired, and the client names its own timeout.
        let result = client.round_trip(b"hi");
        assert!(
            matches!(result, Err(Error::Timeout(TimeoutError::Reply { timeout })) if timeout == Duration::from_secs(30)),
            "{result:?}"
        );
        assert_eq!(client.get_ref().reads, 6, "one read per byte, then the one that timed out");
    }
}

#[cfg(test)]
mod clock_tests {
    use super::*;
    use crate::stamp::{Rfc3339, Stamp, UnixTime};

    /// A reply sent at `sent_at`, taking `rtt`, stamped `server` by `stamp`.
    fn reply(sent_at: SystemTime, rtt: Duration, stamp: &dyn Stamp, server: SystemTime) -> Reply {
        let mut text = String::new();
        stamp.write_stamp(server, &mut text);
        Reply {
            pieces: vec![Piece { stamp: text, len: 2 }],
            piece_count: 1,
            message: b"hi".to_vec(),
            rtt,
            sent_at,
            received_at: sent_at + rtt,
        }
    }

    const SENT: Duration = Duration::from_secs(1_359_885_618);

    #[test]
    fn offset_is_stamp_minus_midpoint_within_half_the_rtt() {
        let sent_at = SystemTime::UNIX_EPOCH + SENT;
        let rtt = Duration::from_millis(10);
        // The server's clock is 2 s ahead and it stamped 5 ms after the send.
        let server = sent_at + Duration::from_millis(2005);
        let r = reply(sent_at, rtt, &Rfc3339, server);
        let offset = r.clock_offset(StampKind::Rfc3339).expect("an RFC 3339 stamp");
        assert_eq!(offset.offset_nanos(), 2_000_000_000);
        assert_eq!(offset.bound(), Duration::from_millis(5) + Duration::from_micros(1));
        assert_eq!(offset.to_string(), "+2000.000±5.001 ms");
        assert!(offset.contains(2_005_001_000) && offset.contains(1_994_999_000));
        assert!(!offset.contains(2_005_001_001) && !offset.contains(1_994_998_999));

        // Behind, stamped at the very start of the round trip.
        let server = sent_at - Duration::from_millis(250);
        let offset = reply(sent_at, rtt, &UnixTime, server).clock_offset(StampKind::Unix).expect("a Unix stamp");
        assert_eq!(offset.offset_nanos(), -255_000_000);
        assert_eq!(offset.to_string(), "-255.000±5.001 ms");
    }

    #[test]
    fn the_bound_rounds_half_an_odd_rtt_up() {
        let sent_at = SystemTime::UNIX_EPOCH + SENT;
        let r = reply(sent_at, Duration::from_nanos(3), &UnixTime, sent_at);
        let offset = r.clock_offset(StampKind::Unix).expect("a Unix stamp");
        assert_eq!(offset.offset_nanos(), -1);
        assert_eq!(offset.bound(), Duration::from_nanos(1002));
    }

    #[test]
    fn no_offset_without_a_sub_second_stamp_of_the_kind() {
        let sent_at = SystemTime::UNIX_EPOCH + SENT;
        let r = reply(sent_at, Duration::from_millis(1), &Rfc3339, sent_at);
        assert_eq!(r.clock_offset(StampKind::Unix), None);
        assert_eq!(r.clock_offset(StampKind::CtimeUtc), None);
        let ctime = reply(sent_at, Duration::from_millis(1), &crate::stamp::Ctime::utc(), sent_at);
        assert_eq!(ctime.clock_offset(StampKind::Ctime), None);
    }
}
