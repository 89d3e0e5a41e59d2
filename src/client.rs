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
    inbox: Inbox,
    out: Vec<u8>,
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
            .field("checker", self.inbox.checker())
            .field("timeout", &self.deadline.as_ref().map(|d| d.timeout))
            .finish_non_exhaustive()
    }
}

/// The I/O-free half of a client, shared by [`EchoClient`], its async twin
/// and the client codec: a [`ReplyChecker`] and when each message in flight
/// was sent, turning checked bytes into [`Reply`] values.
#[derive(Debug)]
pub(crate) struct Exchange {
    checker: ReplyChecker,
    /// When each message not yet answered was sent.
    in_flight: VecDeque<(Instant, SystemTime)>,
    /// The pieces of the reply being checked (kept across reads, so that a
    /// caller may give up waiting and resume).
    pieces: Pieces,
}

impl Exchange {
    /// An exchange in `framing`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `framing`'s settings are out of range.
    pub(crate) fn new(framing: Framing) -> Result<Exchange, Error> {
        framing.validate()?;
        Ok(Exchange { checker: ReplyChecker::new(framing), in_flight: VecDeque::new(), pieces: Pieces::default() })
    }

    pub(crate) fn checker(&self) -> &ReplyChecker {
        &self.checker
    }

    /// Frames `message` into `out` and records it as sent now.
    pub(crate) fn send(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        self.checker.send(message, out)?;
        self.in_flight.push_back((Instant::now(), SystemTime::now()));
        Ok(())
    }

    /// Checks `input` up to the end of the next whole reply: how many bytes
    /// it took, and the reply, if they completed one.
    pub(crate) fn receive(&mut self, input: &[u8]) -> Result<(usize, Option<Reply>), Error> {
        let mut taken = 0;
        loop {
            let (consumed, event) = self.checker.receive(&input[taken..])?;
            taken += consumed;
            match event {
                Some(Event::Piece { stamp, len, .. }) => self.pieces.push(stamp, len),
                Some(Event::Reply { message, .. }) => {
                    let (sent_instant, sent_at) =
                        self.in_flight.pop_front().unwrap_or_else(|| (Instant::now(), SystemTime::now()));
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

/// An [`Exchange`] with the bytes read and not yet checked, for the clients
/// that read into a buffer of their own.
#[derive(Debug)]
pub(crate) struct Inbox {
    exchange: Exchange,
    /// Bytes read and not yet checked: `input[start..end]`.
    input: Vec<u8>,
    start: usize,
    end: usize,
    /// Whole replies read while a long message was being written.
    ready: VecDeque<Reply>,
}

impl Inbox {
    pub(crate) fn new(framing: Framing) -> Result<Inbox, Error> {
        Ok(Inbox { exchange: Exchange::new(framing)?, input: Vec::new(), start: 0, end: 0, ready: VecDeque::new() })
    }

    pub(crate) fn checker(&self) -> &ReplyChecker {
        self.exchange.checker()
    }

    /// Messages sent whose replies have not been handed out.
    pub(crate) fn in_flight(&self) -> usize {
        self.checker().in_flight() + self.ready.len()
    }

    /// Whether the server still owes echo bytes of what was written, beyond
    /// what it may hold back, with `unwritten` bytes of the last message sent
    /// still to write: then reading cannot block for ever.
    pub(crate) fn owed(&self, unwritten: usize) -> bool {
        let checker = self.checker();
        let written = checker.bytes_sent().saturating_sub(unwritten as u64);
        checker.bytes_echoed() < written.saturating_sub(HELD_BACK)
    }

    /// Checks every byte read, keeping whole replies for
    /// [`next_reply`](Inbox::next_reply).
    pub(crate) fn absorb(&mut self) -> Result<(), Error> {
        while let Some(reply) = self.check_next()? {
            self.ready.push_back(reply);
        }
        Ok(())
    }

    /// See [`Exchange::send`].
    pub(crate) fn send(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        out.clear();
        self.exchange.send(message, out)
    }

    /// The next whole reply among the bytes read, if they hold one.
    pub(crate) fn next_reply(&mut self) -> Result<Option<Reply>, Error> {
        match self.ready.pop_front() {
            Some(reply) => Ok(Some(reply)),
            None => self.check_next(),
        }
    }

    fn check_next(&mut self) -> Result<Option<Reply>, Error> {
        let (consumed, reply) = self.exchange.receive(&self.input[self.start..self.end])?;
        self.start += consumed;
        Ok(reply)
    }

    /// Where to read more, once every byte read is checked (after
    /// [`next_reply`](Inbox::next_reply) gave `None`); then call
    /// [`filled`](Inbox::filled) with how many bytes were read.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        self.start = 0;
        self.end = 0;
        if self.input.len() < READ_SIZE {
            self.input.resize(READ_SIZE, 0);
        }
        &mut self.input
    }

    /// `n` bytes were read into [`spare`](Inbox::spare); 0 is the end of the
    /// reply stream, an [`ProtocolError::UnexpectedEof`] (a reply is awaited).
    pub(crate) fn filled(&mut self, n: usize) -> Result<(), Error> {
        if n == 0 {
            return Err(Error::Protocol(ProtocolError::UnexpectedEof));
        }
        self.end = n.min(self.input.len());
        Ok(())
    }
}

/// A reply timeout, refused if zero.
pub(crate) fn check_timeout(timeout: Option<Duration>) -> Result<Option<Duration>, Error> {
    if timeout.is_some_and(|t| t.is_zero()) {
        return Err(crate::ConfigError::new("timeout", "0 s", "longer than zero").into());
    }
    Ok(timeout)
}

/// How much a client reads at once.
const READ_SIZE: usize = 64 * 1024;

/// How much of a long message a client writes before it reads the echo
/// that has come (see [`EchoClient::round_trip`]).
pub(crate) const WRITE_CHUNK: usize = 64 * 1024;

/// The most bytes of a message a server holds back before echoing them:
/// the first bytes of a UTF-8 character, a partial length prefix, a `\r`
/// (see [`Decoder::pending`](crate::framing::Decoder::pending)).
const HELD_BACK: u64 = 3;

/// The bytes of the message at the end of `out` not yet written once
/// `written` bytes of `out` are: a bound, counting a line's ending as one.
pub(crate) fn unwritten(out: &[u8], written: usize, message: &[u8]) -> usize {
    (out.len() - written.min(out.len())).min(message.len())
}

impl<S: Read + Write> EchoClient<S> {
    /// A client speaking `framing` on `stream`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `framing`'s settings are out of range.
    pub fn new(stream: S, framing: Framing) -> Result<EchoClient<S>, Error> {
        Ok(EchoClient { stream, inbox: Inbox::new(framing)?, out: Vec::new(), deadline: None })
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
        self.inbox.send(message, &mut self.out)?;
        let mut written = 0;
        loop {
            let end = self.out.len().min(written + WRITE_CHUNK);
            self.stream
                .write_all(&self.out[written..end])
                .and_then(|()| self.stream.flush())
                .map_err(Error::from_io)?;
            written = end;
            if written == self.out.len() {
                return Ok(());
            }
            let unwritten = unwritten(&self.out, written, message);
            let deadline = self.deadline.as_ref().map(|d| Instant::now() + d.timeout);
            loop {
                self.inbox.absorb()?;
                if !self.inbox.owed(unwritten) {
                    break;
                }
                self.fill(deadline)?;
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
            if let Some(reply) = self.inbox.next_reply()? {
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
            match self.stream.read(self.inbox.spare()) {
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
        self.inbox.filled(n)
    }

    /// The framing in use.
    pub fn framing(&self) -> Framing {
        self.inbox.checker().framing()
    }

    /// Messages sent whose replies have not been received yet.
    pub fn in_flight(&self) -> usize {
        self.inbox.in_flight()
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

/// An estimate of how far a server's clock is from the local one, from one
/// reply ([`Reply::clock_offset`]).
///
/// It is measured the NTP way. The server read its clock at some instant
/// between the local send and receive, so its stamp is compared with their
/// midpoint: the offset is `server stamp - (sent + rtt / 2)`, and it is off
/// by at most half the round trip, plus the resolution of the stamp (1 µs for
/// the built-in stamps, which are truncated, not rounded). A smaller round
/// trip gives a tighter bound: of several probes, the fastest says the most.
///
/// The bound holds unless a clock was stepped during the round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockOffset {
    offset_nanos: i64,
    bound: Duration,
}

impl ClockOffset {
    /// Server time minus local time, in nanoseconds: positive when the
    /// server's clock is ahead (saturated at about ±292 years).
    pub fn offset_nanos(&self) -> i64 {
        self.offset_nanos
    }

    /// How far the true offset can be from [`offset_nanos`](ClockOffset::offset_nanos).
    pub fn bound(&self) -> Duration {
        self.bound
    }

    /// Whether `offset_nanos` is within the bound of the estimate: a possible
    /// true offset.
    pub fn contains(&self, offset_nanos: i64) -> bool {
        let distance = (i128::from(offset_nanos) - i128::from(self.offset_nanos)).unsigned_abs();
        distance <= self.bound.as_nanos()
    }

    /// The offset of a server that read `server` on its clock (with that
    /// `resolution`) some time during a round trip of `rtt` sent at `sent_at`.
    fn measure(sent_at: SystemTime, rtt: Duration, server: SystemTime, resolution: Duration) -> ClockOffset {
        let half = rtt / 2;
        let midpoint = unix_nanos(sent_at) + half.as_nanos() as i128;
        let offset = (unix_nanos(server) - midpoint).clamp(i128::from(i64::MIN), i128::from(i64::MAX));
        ClockOffset {
            offset_nanos: i64::try_from(offset).unwrap_or_default(),
            // `rtt - half` is half the round trip, rounded up.
            bound: (rtt - half).saturating_add(resolution),
        }
    }
}

impl fmt::Display for ClockOffset {
    /// In milliseconds to the microsecond: `+1500.250±0.031 ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}±{} ms", Millis::signed(i128::from(self.offset_nanos)), Millis::of(self.bound))
    }
}

/// Nanoseconds shown as milliseconds with three decimals (rounded to the
/// microsecond), optionally with a `+` on non-negative values.
pub(crate) struct Millis {
    nanos: i128,
    plus: bool,
}

impl Millis {
    /// Without a `+`.
    pub(crate) fn new(nanos: i128) -> Millis {
        Millis { nanos, plus: false }
    }

    /// With a `+` when not negative.
    pub(crate) fn signed(nanos: i128) -> Millis {
        Millis { nanos, plus: true }
    }

    /// A duration, without a sign.
    pub(crate) fn of(d: Duration) -> Millis {
        Millis::new(i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.nanos.unsigned_abs().saturating_add(500) / 1000;
        let sign = match (self.nanos < 0 && micros > 0, self.plus) {
            (true, _) => "-",
            (false, true) => "+",
            (false, false) => "",
        };
        write!(f, "{sign}{}.{:03}", micros / 1000, micros % 1000)
    }
}

/// Nanoseconds from the Unix epoch, negative before it.
fn unix_nanos(t: SystemTime) -> i128 {
    let nanos = |d: Duration| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX);
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => nanos(d),
        Err(before) => -nanos(before.duration()),
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

    #[test]
    fn millis_round_to_the_microsecond() {
        assert_eq!(Millis::new(61_499).to_string(), "0.061");
        assert_eq!(Millis::new(61_500).to_string(), "0.062");
        assert_eq!(Millis::signed(0).to_string(), "+0.000");
        assert_eq!(Millis::signed(-400).to_string(), "+0.000");
        assert_eq!(Millis::signed(-1_234_567_890).to_string(), "-1234.568");
        assert_eq!(Millis::of(Duration::from_secs(2)).to_string(), "2000.000");
    }
}
