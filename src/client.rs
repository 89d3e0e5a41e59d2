//! [`EchoClient`]: send a message, get back its stamped echo, checked.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant, SystemTime};

use crate::Error;
use crate::framing::{Framing, complete_utf8_prefix, find_newline};
use crate::protocol::{Header, MAX_STAMP_LEN, parse_header};
use crate::stamp::StampKind;

/// The parsed reply to one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pieces: Vec<Piece>,
    message: Vec<u8>,
    rtt: Duration,
    sent_at: SystemTime,
    received_at: SystemTime,
}

/// One stamped piece of a reply: in chunk framing the server answers each of
/// its reads, so a long message comes back as several pieces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The stamp text, without brackets.
    pub stamp: String,
    /// How many bytes of the message this piece echoed.
    pub len: usize,
}

impl Reply {
    /// The first (in line and length framing, the only) stamp.
    pub fn stamp(&self) -> &str {
        self.pieces.first().map_or("", |p| p.stamp.as_str())
    }

    /// Every stamped piece, in order.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// The echoed message: always equal to what was sent (a reply that differs
    /// is an [`Error::EchoMismatch`], never a `Reply`).
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

/// Talks to a stamp-echo server (or the original Python one) over any
/// `Read + Write` stream.
///
/// ```no_run
/// use std::net::TcpStream;
/// use stamp_echo::{EchoClient, Framing};
///
/// let stream = TcpStream::connect("127.0.0.1:8080")?;
/// let mut client = EchoClient::new(stream, Framing::chunk())?;
/// let reply = client.round_trip(b"hi,server")?;
/// println!("{reply}  ({:?})", reply.rtt());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// For pipelining, [`send`](EchoClient::send) several messages, then
/// [`receive`](EchoClient::receive) each reply in order.
pub struct EchoClient<S> {
    stream: S,
    framing: Framing,
    /// Bytes read but not yet parsed, from `start`.
    input: Vec<u8>,
    start: usize,
    out: Vec<u8>,
    /// When each message not yet answered was sent, and in chunk framing a
    /// copy of it, to tell where its reply ends when replies run together.
    in_flight: VecDeque<InFlight>,
    /// Chunk framing: the stamp of the last piece read, if the next reply may
    /// continue it (the next message was sent before that reply completed).
    continued: Option<String>,
}

impl<S> fmt::Debug for EchoClient<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EchoClient")
            .field("framing", &self.framing)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

const READ_SIZE: usize = 64 * 1024;

struct InFlight {
    instant: Instant,
    at: SystemTime,
    /// Chunk framing only; empty otherwise.
    message: Vec<u8>,
}

impl<S: Read + Write> EchoClient<S> {
    /// A client speaking `framing` on `stream`.
    pub fn new(stream: S, framing: Framing) -> Result<EchoClient<S>, Error> {
        framing.validate()?;
        Ok(EchoClient {
            stream,
            framing,
            input: Vec::new(),
            start: 0,
            out: Vec::new(),
            in_flight: VecDeque::new(),
            continued: None,
        })
    }

    /// Sends `message` and waits for its whole reply.
    ///
    /// The whole message is written before the reply is read. In chunk
    /// framing the server answers while the message is still arriving, so a
    /// message larger than what the socket buffers of both sides hold together
    /// (a few MiB on Linux loopback; 4 MiB was measured to work) can stall
    /// until a timeout: send such messages in pieces, or use line or
    /// length-prefixed framing, where the server answers a message only once
    /// it is whole.
    pub fn round_trip(&mut self, message: &[u8]) -> Result<Reply, Error> {
        self.send(message)?;
        self.receive(message)
    }

    /// Sends `message` without waiting for the reply.
    ///
    /// Fails without sending if the framing cannot carry it: in chunk framing
    /// an empty message (it would get no reply) or one ending with the first
    /// bytes of a UTF-8 character (the server holds them back for the rest);
    /// in line framing a newline, or a `\r` at the end (it would be read as
    /// part of a `\r\n` ending); a message over the framing's limit.
    pub fn send(&mut self, message: &[u8]) -> Result<(), Error> {
        check_sendable(self.framing, message)?;
        self.out.clear();
        self.framing.encode_message(message, &mut self.out);
        let copy = if let Framing::Chunk { .. } = self.framing { message.to_vec() } else { Vec::new() };
        self.in_flight.push_back(InFlight { instant: Instant::now(), at: SystemTime::now(), message: copy });
        self.stream.write_all(&self.out).and_then(|()| self.stream.flush()).map_err(Error::from_io)
    }

    /// Reads the reply to the oldest message sent and not yet answered, and
    /// checks that it echoes `sent`, that message.
    pub fn receive(&mut self, sent: &[u8]) -> Result<Reply, Error> {
        let (sent_instant, sent_at) =
            self.in_flight.pop_front().map_or_else(|| (Instant::now(), SystemTime::now()), |f| (f.instant, f.at));
        let (pieces, consumed) = loop {
            let buffered = &self.input[self.start..];
            let parsed = match self.framing {
                Framing::Chunk { .. } => {
                    let after = match self.in_flight.front() {
                        Some(next) => After::Message(&next.message),
                        None => After::Nothing,
                    };
                    parse_chunked(buffered, sent, after, self.continued.as_deref())
                }
                Framing::Line { .. } => parse_line(buffered, sent),
                Framing::LengthPrefixed { .. } => parse_frame(buffered, sent),
            };
            match parsed {
                Parsed::Complete { pieces, consumed } => break (pieces, consumed),
                Parsed::Mismatch { offset } => return Err(Error::EchoMismatch { offset }),
                Parsed::Malformed(why) => return Err(Error::MalformedReply(why)),
                Parsed::NeedMore => self.fill()?,
            }
        };
        self.start += consumed;
        self.continued = match (&self.framing, pieces.last()) {
            (Framing::Chunk { .. }, Some(last)) if !self.in_flight.is_empty() => Some(last.stamp.clone()),
            _ => None,
        };
        if self.start == self.input.len() {
            self.input.clear();
            self.start = 0;
        }
        Ok(Reply {
            pieces,
            message: sent.to_vec(),
            rtt: sent_instant.elapsed(),
            sent_at,
            received_at: SystemTime::now(),
        })
    }

    /// Reads more of the reply stream.
    fn fill(&mut self) -> Result<(), Error> {
        if self.start > 0 {
            self.input.drain(..self.start);
            self.start = 0;
        }
        let old = self.input.len();
        self.input.resize(old + READ_SIZE, 0);
        let read = loop {
            match self.stream.read(&mut self.input[old..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                self.input.truncate(old);
                return Err(Error::from_io(e));
            }
        };
        self.input.truncate(old + n);
        if n == 0 {
            return Err(Error::UnexpectedEof);
        }
        Ok(())
    }

    /// The framing in use.
    pub fn framing(&self) -> Framing {
        self.framing
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

/// Fails if `framing` cannot carry `message` as one message with one reply
/// (see [`EchoClient::send`]).
pub(crate) fn check_sendable(framing: Framing, message: &[u8]) -> Result<(), Error> {
    match framing {
        Framing::Chunk { .. } if message.is_empty() => {
            Err(Error::InvalidMessage("an empty message gets no reply in chunk framing"))
        }
        Framing::Chunk { .. } if complete_utf8_prefix(message) < message.len() => {
            Err(Error::InvalidMessage("it ends inside a UTF-8 character: the server would wait for the rest"))
        }
        Framing::Line { .. } if find_newline(message).is_some() => {
            Err(Error::InvalidMessage("a newline would end the message early"))
        }
        Framing::Line { .. } if message.ends_with(b"\r") => {
            Err(Error::InvalidMessage("a final CR would be taken for part of the line ending"))
        }
        Framing::Line { max_line } if message.len() > max_line => Err(Error::InvalidMessage("longer than max_line")),
        Framing::LengthPrefixed { max_frame } if message.len() > max_frame => {
            Err(Error::InvalidMessage("longer than max_frame"))
        }
        _ => Ok(()),
    }
}

/// What parsing the buffered bytes of a reply found.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Complete { pieces: Vec<Piece>, consumed: usize },
    NeedMore,
    Mismatch { offset: usize },
    Malformed(&'static str),
}

/// The most bytes of framing around an echoed message: stamp, brackets, space,
/// line ending.
const MAX_OVERHEAD: usize = MAX_STAMP_LEN + 5;

fn parse_line(buf: &[u8], sent: &[u8]) -> Parsed {
    let Some(end) = find_newline(buf) else {
        return if buf.len() > sent.len() + MAX_OVERHEAD {
            Parsed::Malformed("reply line too long")
        } else {
            Parsed::NeedMore
        };
    };
    let line = &buf[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match parse_header(line) {
        Header::Complete { stamp, len } => check_echo(stamp, &line[len..], sent, end + 1),
        Header::Incomplete => Parsed::Malformed("reply line ends inside its stamp"),
        Header::Invalid(why) => Parsed::Malformed(why),
    }
}

fn parse_frame(buf: &[u8], sent: &[u8]) -> Parsed {
    let Some(prefix) = buf.get(..4) else { return Parsed::NeedMore };
    let mut len = [0u8; 4];
    len.copy_from_slice(prefix);
    let len = u32::from_be_bytes(len) as usize;
    if len > sent.len() + MAX_OVERHEAD {
        return Parsed::Malformed("reply frame longer than the message and a stamp");
    }
    let Some(body) = buf.get(4..4 + len) else { return Parsed::NeedMore };
    match parse_header(body) {
        Header::Complete { stamp, len: header } => check_echo(stamp, &body[header..], sent, 4 + len),
        Header::Incomplete => Parsed::Malformed("reply frame ends inside its stamp"),
        Header::Invalid(why) => Parsed::Malformed(why),
    }
}

fn check_echo(stamp: &str, echoed: &[u8], sent: &[u8], consumed: usize) -> Parsed {
    if echoed != sent {
        let offset = echoed.iter().zip(sent).take_while(|(a, b)| a == b).count();
        return Parsed::Mismatch { offset };
    }
    Parsed::Complete { pieces: vec![Piece { stamp: stamp.to_owned(), len: sent.len() }], consumed }
}

/// Parses chunk-framing replies: `[STAMP] piece[STAMP] piece...` whose pieces
/// add up to `sent`. The stream has no boundaries, so where a piece ends is
/// found by matching `sent`: a piece runs on while it echoes `sent`, and a new
/// stamp may begin at any `[`. When `sent` itself holds `[`, both readings are
/// tried (latest boundary first); any reading that matches echoes `sent`
/// exactly, so the check is sound whichever one is taken.
///
/// Which reading is taken decides where the next reply starts, so it is
/// chosen by what comes `after` the message. When `sent` is the only message
/// in flight, every byte received belongs to its reply, so a reading that
/// takes all of them is preferred, and one that leaves bytes over is taken
/// only if no reading could still grow to take them all. (Bytes of the reply
/// not yet received at all cannot be told apart: a reply `[T] a[T] ` may be
/// all of the echo of `a[T] `, or its first piece `a` and the stamp of a
/// second one still on its way.) With messages pipelined, a reading after
/// which the bytes left over can begin the reply to the next message is
/// preferred; failing that, the first reading found is taken.
///
/// Pipelined messages may reach the server in one read and come back in one
/// piece, so the reply to a message may start in the middle of the piece
/// that ended the previous reply: `continued` is that piece's stamp, when the
/// next message was already sent as the previous reply completed.
fn parse_chunked(buf: &[u8], sent: &[u8], after: After<'_>, continued: Option<&str>) -> Parsed {
    // Search states: a stamp header starts at `at` in `buf`, with `done` bytes
    // of `sent` already echoed. `nodes` records how each was reached.
    struct Node<'a> {
        parent: usize,
        stamp: &'a str,
        /// Bytes of `sent` echoed before this piece.
        done: usize,
    }
    let mut nodes: Vec<Node<'_>> = Vec::new();
    // (where, echoed so far, parent node, the stamp of a piece continued
    // without a header of its own); the header reading is tried first.
    let mut stack: Vec<(usize, usize, usize, Option<&str>)> = Vec::new();
    if let Some(stamp) = continued {
        stack.push((0, 0, usize::MAX, Some(stamp)));
    }
    stack.push((0, 0, usize::MAX, None));
    let mut seen = HashSet::new();
    let mut need_more = false;
    let mut deepest_mismatch = 0;
    let mut malformed = None;
    let mut second_best = None;
    while let Some((at, done, parent, inherited)) = stack.pop() {
        if !seen.insert((at, done, inherited.is_some())) {
            continue;
        }
        let header = match inherited {
            Some(stamp) => Header::Complete { stamp, len: 0 },
            None => parse_header(&buf[at..]),
        };
        let (stamp, body) = match header {
            Header::Complete { stamp, len } => (stamp, at + len),
            Header::Incomplete => {
                need_more = true;
                continue;
            }
            Header::Invalid(why) => {
                malformed.get_or_insert(why);
                continue;
            }
        };
        let matched = buf[body..].iter().zip(&sent[done..]).take_while(|(a, b)| a == b).count();
        nodes.push(Node { parent, stamp, done });
        let node = nodes.len() - 1;
        if done + matched == sent.len() && matched > 0 {
            // Each piece runs from its own start to the next piece's start
            // (not as far as it matched: a later boundary may cut it short).
            let mut pieces = Vec::new();
            let (mut i, mut end) = (node, sent.len());
            while i != usize::MAX {
                pieces.push(Piece { stamp: nodes[i].stamp.to_owned(), len: end - nodes[i].done });
                end = nodes[i].done;
                i = nodes[i].parent;
            }
            pieces.reverse();
            let consumed = body + matched;
            let best = consumed == buf.len()
                || match after {
                    After::Nothing => false,
                    After::Unknown => true,
                    // The rest must be able to start the next reply, which
                    // may continue this piece.
                    After::Message(next) => !matches!(
                        parse_chunked(&buf[consumed..], next, After::Unknown, Some(stamp)),
                        Parsed::Mismatch { .. } | Parsed::Malformed(_)
                    ),
                };
            if best {
                return Parsed::Complete { pieces, consumed };
            }
            second_best.get_or_insert(Parsed::Complete { pieces, consumed });
        } else if body + matched == buf.len() {
            need_more = true;
        } else {
            deepest_mismatch = deepest_mismatch.max(done + matched);
        }
        // Alternative boundaries: a new stamp after 1..=matched echoed bytes,
        // pushed so that the longest piece is tried first.
        for j in 1..=matched {
            if buf[body + j..].first() == Some(&b'[') {
                stack.push((body + j, done + j, node, None));
            }
        }
    }
    if need_more {
        Parsed::NeedMore
    } else if let Some(complete) = second_best {
        complete
    } else if deepest_mismatch == 0
        && let Some(why) = malformed
    {
        Parsed::Malformed(why)
    } else {
        Parsed::Mismatch { offset: deepest_mismatch }
    }
}

/// What follows the message whose reply [`parse_chunked`] looks for.
#[derive(Clone, Copy, Debug)]
enum After<'a> {
    /// Nothing: it is the only message in flight.
    Nothing,
    /// This message, sent after it (pipelined).
    Message(&'a [u8]),
    /// Something not known: take the first reading found.
    Unknown,
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
    /// // Against `cargo run --example server -- --stamp rfc3339`:
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

    fn pieces(p: &Parsed) -> Vec<(&str, usize)> {
        match p {
            Parsed::Complete { pieces, .. } => pieces.iter().map(|p| (p.stamp.as_str(), p.len)).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn chunked_reply_in_one_piece() {
        let p = parse_chunked(b"[T] hello", b"hello", After::Nothing, None);
        assert_eq!(pieces(&p), [("T", 5)]);
        assert!(matches!(p, Parsed::Complete { consumed: 9, .. }));
    }

    #[test]
    fn chunked_reply_in_several_pieces() {
        let p = parse_chunked(b"[A] hel[B] lo[C] !", b"hello!", After::Nothing, None);
        assert_eq!(pieces(&p), [("A", 3), ("B", 2), ("C", 1)]);
    }

    #[test]
    fn chunked_reply_waits_for_more() {
        assert_eq!(parse_chunked(b"", b"hi", After::Nothing, None), Parsed::NeedMore);
        assert_eq!(parse_chunked(b"[T", b"hi", After::Nothing, None), Parsed::NeedMore);
        assert_eq!(parse_chunked(b"[T] h", b"hi", After::Nothing, None), Parsed::NeedMore);
        assert_eq!(parse_chunked(b"[T] h[", b"hi", After::Nothing, None), Parsed::NeedMore);
    }

    #[test]
    fn chunked_reply_that_differs_is_a_mismatch() {
        assert_eq!(parse_chunked(b"[T] hx", b"hi", After::Nothing, None), Parsed::Mismatch { offset: 1 });
        assert_eq!(parse_chunked(b"[T] h[U] x", b"hi", After::Nothing, None), Parsed::Mismatch { offset: 1 });
        assert_eq!(
            parse_chunked(b"hi", b"hi", After::Nothing, None),
            Parsed::Malformed("reply does not start with '['")
        );
    }

    #[test]
    fn chunked_reply_with_brackets_in_the_message() {
        // The message looks like a stamp itself: "[T] a" + "[T] [T] b" and
        // "[T] a[T] " + "[T] b" both echo it; the longest first piece is taken.
        let sent = b"a[T] b";
        let p = parse_chunked(b"[T] a[T] [T] b", sent, After::Nothing, None);
        assert_eq!(pieces(&p), [("T", 5), ("T", 1)]);
        let p = parse_chunked(b"[T] a[T] b", sent, After::Nothing, None);
        assert_eq!(pieces(&p), [("T", 6)]);
    }

    #[test]
    fn pipelined_chunk_messages_answered_in_one_piece() {
        // The server read "one" and "two" together and "三" alone.
        let replies = crate::testing::Duplex::new("[T] onetwo[U] 三".as_bytes().to_vec());
        let mut client = EchoClient::new(replies, Framing::chunk()).expect("valid framing");
        let messages: [&[u8]; 3] = [b"one", b"two", "三".as_bytes()];
        for m in messages {
            client.send(m).expect("in memory");
        }
        let stamps: Vec<String> =
            messages.iter().map(|m| client.receive(m).expect("reply").stamp().to_owned()).collect();
        assert_eq!(stamps, ["T", "T", "U"]);
    }

    #[test]
    fn a_pipelined_message_ending_in_a_bracket() {
        // "aaa[" and "b" pipelined; the server read "aaa" then "[b". Taking the
        // second "[" as the end of "aaa[" would leave "T] [b" for "b": the
        // client picks the reading after which "b"'s reply can begin.
        let replies = crate::testing::Duplex::new(b"[T] aaa[U] [b".to_vec());
        let mut client = EchoClient::new(replies, Framing::chunk()).expect("valid framing");
        client.send(b"aaa[").expect("in memory");
        client.send(b"b").expect("in memory");
        let first = client.receive(b"aaa[").expect("a reply");
        assert_eq!(first.pieces(), [Piece { stamp: "T".into(), len: 3 }, Piece { stamp: "U".into(), len: 1 }]);
        assert_eq!(client.receive(b"b").expect("a reply").stamp(), "U");
    }

    #[test]
    fn a_reply_without_a_stamp_is_malformed_when_nothing_was_pipelined() {
        // "two" was sent after the reply to "one" was whole, so its reply
        // cannot continue that piece: it needs a stamp of its own.
        let replies = crate::testing::Duplex::from_reads([b"[T] one".to_vec(), b"two".to_vec()]);
        let mut client = EchoClient::new(replies, Framing::chunk()).expect("valid framing");
        client.round_trip(b"one").expect("a whole reply");
        assert!(matches!(client.round_trip(b"two"), Err(Error::MalformedReply(_))));
    }

    #[test]
    fn one_byte_pieces_do_not_blow_up() {
        let sent = vec![b'x'; 20_000];
        let mut buf = Vec::new();
        for b in &sent {
            buf.extend_from_slice(b"[T] ");
            buf.push(*b);
        }
        let p = parse_chunked(&buf, &sent, After::Nothing, None);
        assert_eq!(pieces(&p).len(), 20_000);
    }

    #[test]
    fn line_and_frame_replies() {
        assert_eq!(pieces(&parse_line(b"[T] hi\n", b"hi")), [("T", 2)]);
        assert_eq!(pieces(&parse_line(b"[T] hi\r\n", b"hi")), [("T", 2)]);
        assert_eq!(parse_line(b"[T] hi", b"hi"), Parsed::NeedMore);
        assert_eq!(parse_line(b"[T] ho\n", b"hi"), Parsed::Mismatch { offset: 1 });
        assert_eq!(pieces(&parse_frame(b"\0\0\0\x06[T] hi", b"hi")), [("T", 2)]);
        assert_eq!(parse_frame(b"\0\0\0\x06[T] h", b"hi"), Parsed::NeedMore);
        assert!(matches!(parse_frame(b"\xff\0\0\0", b"hi"), Parsed::Malformed(_)));
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
