//! The client's protocol core: [`ReplyChecker`] records the messages you send
//! and checks the reply stream against them, without I/O. It is the twin of
//! [`Responder`](crate::Responder): bytes of a read in, checked replies out,
//! in the order sent, each with its stamped pieces.
//!
//! [`EchoClient`](crate::EchoClient), the load generator's
//! [`Checker`](crate::load::Checker) and any other transport (an async
//! runtime, a test) drive the same code.
//!
//! ```
//! use stamp_echo::Framing;
//! use stamp_echo::reply::{Event, ReplyChecker};
//!
//! let mut checker = ReplyChecker::new(Framing::chunk());
//! let mut wire = Vec::new();
//! checker.send(b"hello", &mut wire)?; // write `wire` to the server
//!
//! // The server read "hel" and "lo" separately: two stamped pieces, and the
//! // second arrives in two reads of ours.
//! let mut stamps = Vec::new();
//! for read in [&b"[T1] hel[T"[..], b"2] lo"] {
//!     let mut input = read;
//!     loop {
//!         let (consumed, event) = checker.receive(input)?;
//!         input = &input[consumed..];
//!         match event {
//!             Some(Event::Piece { stamp, len, .. }) => stamps.push((stamp.to_owned(), len)),
//!             Some(Event::Reply { message, .. }) => assert_eq!(message, b"hello"),
//!             Some(_) => {}
//!             None => break, // every byte of this read is checked
//!         }
//!     }
//! }
//! assert_eq!(stamps, [("T1".to_owned(), 3), ("T2".to_owned(), 2)]);
//! assert_eq!(checker.in_flight(), 0);
//! # Ok::<(), stamp_echo::Error>(())
//! ```
//!
//! # How chunk replies are matched, in linear time
//!
//! In line and length-prefixed framing every reply is delimited and holds
//! one stamp, so the checker is a plain state machine (its phases:
//! prefix, `[`, stamp, echo, line ending).
//!
//! In chunk framing the server answers each of its reads with `[STAMP] `
//! and the bytes it read, so the reply stream is stamped pieces whose
//! boundaries nobody tells: one message's reply may be several pieces, and
//! pipelined messages may share one. Messages may hold `[` and even whole
//! copies of the server's stamps, so where a piece ends cannot be decided
//! from one byte: a `[` may be an echoed byte or the start of a header.
//!
//! The checker therefore follows every *reading* of the stream at once, as a
//! regular-expression engine simulates a nondeterministic automaton (Thompson's
//! construction), instead of trying one reading and backtracking. A reading is
//! small: how many sent bytes it has matched, and its phase (a header must
//! come next; inside a header started at a known position; inside a piece,
//! empty or not). Each received byte advances every reading once:
//!
//! - inside a piece, the byte must equal the next sent byte; if it is `[` and
//!   the piece is not empty, a second reading forks in which a header starts;
//! - inside a header, the stamp runs to the first `]`, which must be followed
//!   by a space, with no CR or LF and at most 255 bytes of UTF-8 before it.
//!   So every header open ends at the same `]`: the readings inside a header
//!   wait as one group that takes each byte in one step (a `]`, a space, a
//!   line break, or a stamp grown too long for the oldest), however many
//!   `[` opened them;
//! - a reading that ends a header where another reading already is (the same
//!   sent bytes matched) is dropped: the other one is in the same state, or
//!   inside a piece that can do all it can, so it has the same future. So
//!   readings outside a header never share an offset, and stay apart.
//!
//! So the work per byte is bounded by the number of readings outside a
//! header, at most [`MAX_READINGS`], and the checker is linear in the bytes
//! received: it never looks at a byte twice and never restarts from an
//! earlier one ([`ReplyChecker::steps`] counts the work). A reading that
//! cannot go on is dropped; when none is left, the reply is wrong
//! ([`ProtocolError::EchoMismatch`] or [`ProtocolError::MalformedReply`]). Events are handed
//! out as soon as one reading is left, which is at once unless a `[` is in
//! doubt.
//!
//! Whatever reading wins, it matches every sent byte exactly, so accepting a
//! reply never depends on which one is reported; only how its bytes are split
//! into pieces does. At a `[`, the reading that echoes it comes first; those
//! that start a header rejoin the others, in the order their `[` came, when
//! the header ends.
//!
//! **Limits of exactness.** Every reply the checker accepts is a correct
//! reply: soundness is unconditional. It accepts every correct reply as long
//! as it never has to give up a reading: it follows at most [`MAX_READINGS`]
//! outside a header and `4 × 256` inside one, and past that keeps the
//! preferred ones (inside a header, those whose `[` came last: the shortest
//! stamps) and counts the others ([`ReplyChecker::readings_dropped`]). Runs
//! of `[` in a message get there, since a stamp may hold `[` and begin at
//! any of them; a server whose stamps hold no `[` (every built-in stamp,
//! Python's `ctime()`) starts its header at the last `[` before the `]`,
//! which is kept: a 64 KiB message of `[` is checked against our server,
//! and the property tests found no correct reply refused with such stamps.
//! Stamps that hold `[`, or messages that hold many copies of the server's
//! own headers, can make a correct reply be refused.
//!
//! And when the bytes received so far answer every message in flight in one
//! reading, that reading is taken at once (the others would need more bytes
//! that a correct server has no reason to send): a server that reads `a` and
//! `[T] ` of the message `a[T] ` separately sends `[T] a[T] [T] `, whose
//! first nine bytes are already the whole one-piece reply `[T] a[T] ` under
//! the stamp `T`. No client can tell those apart before more bytes arrive.
//!
//! Memory: the bytes of the messages in flight (the caller decides how many
//! to pipeline), the last 256 received bytes (the longest header), and the
//! pieces of a reply not yet handed out (only while several readings are
//! open). Nothing is allocated per message once the buffers have grown.

pub use crate::wire::check_whole;

use std::collections::VecDeque;
use std::fmt;

use crate::Error;
#[cfg(test)]
use crate::framing::LineEnding;
use crate::wire::{Framing, MAX_STAMP_LEN, check_sendable};
use crate::{MalformedReason, ProtocolError};

/// The most readings of a chunk reply stream followed at once (see the
/// [module docs](self)).
pub const MAX_READINGS: usize = 16;

/// Received bytes kept: enough for the longest stamp.
const RING: usize = 256;

/// The most events logged while several readings are open.
const MAX_LOG: usize = 1 << 16;

/// What [`ReplyChecker::receive`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a, T = ()> {
    /// A stamped piece of the reply to the oldest message in flight:
    /// `len` of its bytes were echoed behind `stamp`. In line and length
    /// framing a reply is one piece; in chunk framing one per read the
    /// server made of the message (a read holding the ends of two
    /// messages gives each its own piece, with the same stamp).
    #[non_exhaustive]
    Piece {
        /// The stamp text, without brackets.
        stamp: &'a str,
        /// Bytes of the message in this piece (at least 1, except for an
        /// empty message in line or length framing).
        len: usize,
    },
    /// The reply to the oldest message in flight is complete and echoes it
    /// exactly; its pieces were the `Piece` events since the last `Reply`.
    #[non_exhaustive]
    Reply {
        /// The message, as sent.
        message: &'a [u8],
        /// The message's number: 0 for the first one sent with this checker.
        seq: u64,
        /// The tag the message was sent with
        /// ([`send_tagged`](ReplyChecker::send_tagged); `()` through
        /// [`send`](ReplyChecker::send)).
        tag: T,
    },
}

/// Checks a stream of replies against the messages sent, in order, without
/// I/O and without allocating per message. See the [module docs](self) for
/// how, and an example.
///
/// [`send`](ReplyChecker::send) frames a message for the wire and records it;
/// [`receive`](ReplyChecker::receive) takes the bytes that arrived, as they
/// arrived, and hands out [`Event`]s one at a time, resuming where it
/// stopped. After an error the checker stays failed: every later call
/// returns the same error.
///
/// Each message may carry a tag of the caller's, of type `T` (the instant it
/// was sent, say): [`send_tagged`](ReplyChecker::send_tagged) records it with
/// the message, and the [`Event::Reply`] completing that message hands it
/// back. Untagged, `T` is `()` and [`send`](ReplyChecker::send) is enough.
///
/// ```
/// use stamp_echo::reply::{Event, ReplyChecker};
/// use stamp_echo::{Error, Framing, ProtocolError};
///
/// // Two lines pipelined; the second reply does not echo its message.
/// let mut checker = ReplyChecker::new(Framing::line());
/// let mut wire = Vec::new();
/// checker.send(b"ping 1", &mut wire)?;
/// checker.send(b"ping 2", &mut wire)?;
/// assert_eq!(wire, b"ping 1\nping 2\n");
///
/// let mut input = &b"[10:00:18] ping 1\n[10:00:18] pong 2\n"[..];
/// let (consumed, event) = checker.receive(input)?;
/// assert!(matches!(event, Some(Event::Piece { stamp: "10:00:18", len: 6, .. })));
/// input = &input[consumed..];
/// let (consumed, event) = checker.receive(input)?;
/// assert!(matches!(event, Some(Event::Reply { message: b"ping 1", seq: 0, .. })));
/// input = &input[consumed..];
/// assert!(matches!(checker.receive(input), Err(Error::Protocol(ProtocolError::EchoMismatch { offset: 1 }))));
/// # Ok::<(), stamp_echo::Error>(())
/// ```
pub struct ReplyChecker<T = ()> {
    framing: Framing,
    sent: Sent,
    /// The tag of each unanswered message, oldest first (beside `sent.ends`).
    tags: VecDeque<T>,
    state: State,
    /// The last received bytes, by position modulo `RING`.
    ring: [u8; RING],
    /// Bytes received so far.
    received: u64,
    /// Events logged by the readings, and stamps.
    log: Log,
    /// Events ready to be handed out, oldest first.
    ready: VecDeque<Logged>,
    scratch: Vec<u8>,
    failed: Option<Failure>,
    steps: u64,
    dropped: u64,
}

impl<T> fmt::Debug for ReplyChecker<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let readings = match &self.state {
            State::Chunk(r) => r.live.len() + r.open.len(),
            State::Framed(_) => 1,
        };
        f.debug_struct("ReplyChecker")
            .field("framing", &self.framing)
            .field("in_flight", &self.sent.ends.len())
            .field("received", &self.received)
            .field("readings", &readings)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// The record of what was sent and not yet answered.
#[derive(Debug, Default)]
struct Sent {
    /// Sent message bytes from offset `base` of the sent stream.
    bytes: Vec<u8>,
    base: u64,
    /// Where each unanswered message ends in the sent stream, oldest first.
    ends: VecDeque<u64>,
    /// The number of the oldest unanswered message.
    first: u64,
    /// Where it starts.
    front_start: u64,
    /// Bytes sent in all.
    total: u64,
}

impl Sent {
    fn byte(&self, at: u64) -> Option<u8> {
        let index = usize::try_from(at.checked_sub(self.base)?).ok()?;
        self.bytes.get(index).copied()
    }

    fn end(&self, msg: u64) -> u64 {
        let index = usize::try_from(msg.saturating_sub(self.first)).unwrap_or(usize::MAX);
        self.ends.get(index).copied().unwrap_or(self.total)
    }

    fn start(&self, msg: u64) -> u64 {
        if msg <= self.first { self.front_start } else { self.end(msg - 1) }
    }

    /// Messages sent so far.
    fn count(&self) -> u64 {
        self.first + self.ends.len() as u64
    }

    fn slice(&self, start: u64, end: u64) -> &[u8] {
        let from = usize::try_from(start.saturating_sub(self.base)).unwrap_or(usize::MAX);
        let to = usize::try_from(end.saturating_sub(self.base)).unwrap_or(usize::MAX);
        self.bytes.get(from..to).unwrap_or_default()
    }

    fn push(&mut self, message: &[u8]) {
        self.bytes.extend_from_slice(message);
        self.total += message.len() as u64;
        self.ends.push_back(self.total);
    }

    /// Marks the oldest message answered; returns its number and extent.
    fn pop(&mut self) -> Option<(u64, u64, u64)> {
        let end = self.ends.pop_front()?;
        let (seq, start) = (self.first, self.front_start);
        self.first += 1;
        self.front_start = end;
        Some((seq, start, end))
    }

    /// Drops answered bytes once they are many, or all: a move, never an
    /// allocation.
    fn trim(&mut self) {
        let answered = usize::try_from(self.front_start - self.base).unwrap_or(usize::MAX).min(self.bytes.len());
        if answered == self.bytes.len() || (answered >= 4096 && answered * 2 >= self.bytes.len()) {
            self.bytes.drain(..answered);
            self.base += answered as u64;
        }
    }
}

enum State {
    Chunk(Readings),
    Framed(Framed),
}

/// Why a reading stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    Mismatch(usize),
    Malformed(MalformedReason),
}

impl Failure {
    fn error(self) -> Error {
        match self {
            Failure::Mismatch(offset) => Error::Protocol(ProtocolError::EchoMismatch { offset }),
            Failure::Malformed(why) => Error::Protocol(ProtocolError::MalformedReply(why)),
        }
    }
}

/// The failures of one byte's readings: the deepest mismatch says the most.
#[derive(Default)]
struct Failures {
    mismatch: Option<usize>,
    malformed: Option<MalformedReason>,
}

impl Failures {
    fn note(&mut self, failure: Failure) {
        match failure {
            Failure::Mismatch(offset) => self.mismatch = Some(self.mismatch.map_or(offset, |m| m.max(offset))),
            Failure::Malformed(why) => self.malformed = self.malformed.or(Some(why)),
        }
    }

    fn verdict(&self) -> Failure {
        match (self.mismatch, self.malformed) {
            (Some(offset), _) if offset > 0 => Failure::Mismatch(offset),
            (_, Some(why)) => Failure::Malformed(why),
            (offset, None) => Failure::Mismatch(offset.unwrap_or(0)),
        }
    }
}

/// The events the readings logged and have not handed out, in one arena:
/// each reading's are a chain of nodes ending at its `tail`, so forking a
/// reading copies an index, never its events.
#[derive(Debug, Default)]
struct Log {
    nodes: Vec<Node>,
    /// The stamps of logged pieces and of the readings' current pieces.
    stamps: String,
}

#[derive(Clone, Copy, Debug)]
struct Node {
    prev: u32,
    event: Logged,
}

/// A logged event; a piece's stamp is `stamps[from..to]`.
#[derive(Clone, Copy, Debug)]
enum Logged {
    Piece { from: u32, to: u32, len: usize },
    Reply,
}

/// No node: an empty chain.
const NONE: u32 = u32::MAX;

/// A stamp's place in [`Log::stamps`].
type StampAt = (u32, u32);

impl Log {
    /// Appends `event` to the chain ending at `tail`.
    fn push(&mut self, tail: &mut u32, event: Logged) -> Result<(), Failure> {
        if self.nodes.len() >= MAX_LOG {
            return Err(Failure::Malformed(MalformedReason::TooAmbiguous));
        }
        self.nodes.push(Node { prev: *tail, event });
        *tail = (self.nodes.len() - 1) as u32;
        Ok(())
    }

    fn add_stamp(&mut self, stamp: &str) -> StampAt {
        let from = self.stamps.len() as u32;
        self.stamps.push_str(stamp);
        (from, self.stamps.len() as u32)
    }

    /// Moves the chain ending at `tail` to the back of `ready`, in order.
    fn hand_out(&mut self, tail: &mut u32, ready: &mut VecDeque<Logged>) {
        let at = ready.len();
        let mut node = *tail;
        while let Some(n) = self.nodes.get(node as usize) {
            ready.insert(at, n.event);
            node = n.prev;
        }
        *tail = NONE;
    }

    /// Forgets everything but the stamp at `keep` (nothing is waiting),
    /// which moves to the start; returns its new place.
    fn reset(&mut self, keep: StampAt) -> StampAt {
        self.nodes.clear();
        let (from, to) = (keep.0 as usize, keep.1 as usize);
        if from == 0 && to == self.stamps.len() {
            return keep;
        }
        self.stamps.truncate(to);
        self.stamps.drain(..from.min(to));
        (0, self.stamps.len() as u32)
    }
}

/// Where a reading of a chunk reply stream is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// A header must come next: every message sent had been answered.
    Boundary,
    /// Inside a header whose `[` was received at `start` (a reading in the
    /// [`Readings::open`] group).
    Header { start: u64 },
    /// Inside a piece, which has echoed at least one byte if `nonempty`.
    Body { nonempty: bool },
}

/// One reading of a chunk reply stream.
#[derive(Clone, Copy, Debug)]
struct Reading {
    /// Sent bytes matched.
    offset: u64,
    /// The message `offset` is in.
    msg: u64,
    phase: Phase,
    /// Bytes of message `msg` in the current piece.
    portion: usize,
    /// The current piece's stamp.
    stamp: StampAt,
    /// Its events not yet handed out.
    tail: u32,
}

impl Reading {
    const START: Reading = Reading { offset: 0, msg: 0, phase: Phase::Boundary, portion: 0, stamp: (0, 0), tail: NONE };

    /// Advances a reading outside a header by the received byte `b`; a `[`
    /// that starts a header makes it [`Advance::Opens`] one.
    fn advance(&mut self, b: u8, sent: &Sent, log: &mut Log) -> Result<Advance, Failure> {
        match self.phase {
            // Bytes are checked after the sends they answer: with nothing in
            // flight, no byte can be a reply.
            Phase::Boundary if self.offset == sent.total => Err(Failure::Malformed(MalformedReason::Unsolicited)),
            Phase::Boundary if b == b'[' => Ok(Advance::Opens),
            Phase::Boundary | Phase::Header { .. } => Err(Failure::Malformed(MalformedReason::NoOpenBracket)),
            Phase::Body { .. } => {
                let Some(expected) = sent.byte(self.offset) else {
                    return Err(Failure::Malformed(MalformedReason::Unsolicited));
                };
                if b != expected {
                    let start = sent.start(self.msg);
                    return Err(Failure::Mismatch(usize::try_from(self.offset - start).unwrap_or(usize::MAX)));
                }
                self.echoed(1, sent, log)?;
                Ok(Advance::Echoed)
            }
        }
    }

    /// Counts `n` more bytes echoed (all of the current message but perhaps
    /// its last), logging the end of the message.
    fn echoed(&mut self, n: usize, sent: &Sent, log: &mut Log) -> Result<(), Failure> {
        self.offset += n as u64;
        self.portion += n;
        if n > 0 {
            self.phase = Phase::Body { nonempty: true };
        }
        if self.offset == sent.end(self.msg) {
            let (from, to) = self.stamp;
            log.push(&mut self.tail, Logged::Piece { from, to, len: self.portion })?;
            log.push(&mut self.tail, Logged::Reply)?;
            self.portion = 0;
            self.msg += 1;
            if self.offset == sent.total {
                self.phase = Phase::Boundary;
            }
        }
        Ok(())
    }

    /// Ends the header this reading is in, whose stamp is at `stamp`: a new
    /// piece begins.
    fn open_piece(&mut self, stamp: StampAt, log: &mut Log) -> Result<(), Failure> {
        if self.portion > 0 {
            let (from, to) = self.stamp;
            log.push(&mut self.tail, Logged::Piece { from, to, len: self.portion })?;
            self.portion = 0;
        }
        self.stamp = stamp;
        self.phase = Phase::Body { nonempty: false };
        Ok(())
    }
}

/// What a byte did to a reading outside a header.
enum Advance {
    Echoed,
    Opens,
}

/// The readings of a chunk reply stream.
///
/// Readings inside a header wait as one group, `open`: every header open
/// ends at the same `]` (a stamp has none), so the group reacts to each byte
/// at once, whatever its size. The others, `live`, each take the byte.
#[derive(Debug, Default)]
struct Readings {
    /// Outside a header, in order of preference.
    live: Vec<Reading>,
    /// Inside a header, oldest `[` first.
    open: VecDeque<Reading>,
    /// The open headers' `]` has come: a space must follow.
    closed: bool,
    next: Vec<Reading>,
}

/// The most readings inside a header at once: one per `[` of the longest
/// stamp, for each of a few readings.
const MAX_OPEN: usize = 4 * RING;

impl Readings {
    fn new() -> Readings {
        Readings { live: vec![Reading::START], ..Readings::default() }
    }

    /// The one reading left, if only one is.
    fn unique(&mut self) -> Option<&mut Reading> {
        match (self.live.len(), self.open.len()) {
            (1, 0) => self.live.first_mut(),
            (0, 1) => self.open.front_mut(),
            _ => None,
        }
    }

    /// Adds `reading` to the next generation unless it is full.
    ///
    /// Readings outside a header never share an offset (see `step`), so
    /// those that echoed a byte still do not: no search for equals here.
    fn keep(&mut self, reading: Reading, dropped: &mut u64) {
        if self.next.len() >= MAX_READINGS {
            *dropped += 1;
        } else {
            self.next.push(reading);
        }
    }

    /// Advances every reading by `b`, received at `pos`; fails if none
    /// survives.
    fn step(&mut self, b: u8, pos: u64, cx: &mut Context<'_>, work: &mut Work) -> Result<(), Failure> {
        let Context { sent, ring, scratch, log } = cx;
        let mut failures = Failures::default();
        // The open headers, as one: the newest decides (the oldest may be
        // too long, below).
        let mut done = false;
        if let Some(Phase::Header { start }) = self.open.back().map(|r| r.phase) {
            work.steps += 1;
            match header_byte(start, self.closed, b, pos) {
                Err(failure) => {
                    failures.note(failure);
                    self.open.clear();
                    self.closed = false;
                }
                Ok(HeaderStep::Open { closed }) => self.closed = closed,
                Ok(HeaderStep::Done) => done = true,
            }
            while let Some(Phase::Header { start }) = self.open.front().map(|r| r.phase) {
                if pos - start <= MAX_STAMP_LEN as u64 || self.closed || done {
                    break;
                }
                failures.note(Failure::Malformed(MalformedReason::StampTooLong));
                self.open.pop_front();
            }
        }
        // The others, each with the byte; a `[` may open a header.
        let mut live = std::mem::take(&mut self.live);
        for mut reading in live.drain(..) {
            work.steps += 1;
            if b == b'[' && reading.phase == (Phase::Body { nonempty: true }) {
                work.steps += 1;
                self.push_open(Reading { phase: Phase::Header { start: pos }, ..reading }, &mut work.dropped);
            }
            match reading.advance(b, sent, log) {
                Ok(Advance::Echoed) => self.keep(reading, &mut work.dropped),
                Ok(Advance::Opens) => {
                    reading.phase = Phase::Header { start: pos };
                    self.push_open(reading, &mut work.dropped);
                }
                Err(failure) => failures.note(failure),
            }
        }
        // Headers complete at this space begin their pieces: newest `[`
        // (shortest stamp) first.
        if done {
            self.closed = false;
            let mut stamp_of: Option<(u64, StampAt)> = None;
            while let Some(mut reading) = self.open.pop_back() {
                work.steps += 1;
                let Phase::Header { start } = reading.phase else { continue };
                // A reading at the same offset is there already: it is in
                // the same state, or inside a piece that already echoed a
                // byte, which can do all this one can (and start a header at
                // the next `[`). Same future: keep the first.
                if self.next.iter().any(|r| r.offset == reading.offset) {
                    continue;
                }
                if self.next.len() >= MAX_READINGS {
                    work.dropped += 1;
                    continue;
                }
                let stamp = match stamp_of {
                    Some((at, stamp)) if at == start => Ok(stamp),
                    _ => ring.stamp(start, pos, scratch).map(|text| log.add_stamp(text)),
                };
                match stamp {
                    Ok(stamp) => {
                        stamp_of = Some((start, stamp));
                        match reading.open_piece(stamp, log) {
                            Ok(()) => self.keep(reading, &mut work.dropped),
                            Err(failure) => failures.note(failure),
                        }
                    }
                    Err(failure) => failures.note(failure),
                }
            }
        }
        self.live = std::mem::replace(&mut self.next, live);
        if self.live.is_empty() && self.open.is_empty() { Err(failures.verdict()) } else { Ok(()) }
    }

    /// Adds a reading to the open headers, dropping the oldest if too many.
    fn push_open(&mut self, reading: Reading, dropped: &mut u64) {
        if self.open.len() >= MAX_OPEN {
            *dropped += 1;
            self.open.pop_front();
        }
        self.open.push_back(reading);
    }

    /// Takes the first reading that has answered every message sent, if any
    /// (see the module docs).
    fn commit(&mut self, sent: &Sent) {
        if self.live.len() + self.open.len() < 2 {
            return;
        }
        let Some(chosen) = self.live.iter().position(|r| r.phase == Phase::Boundary && r.offset == sent.total) else {
            return;
        };
        let kept = self.live[chosen];
        self.live.clear();
        self.open.clear();
        self.closed = false;
        self.live.push(kept);
    }
}

/// What a step reads and writes besides the readings.
struct Context<'a> {
    sent: &'a Sent,
    ring: Ring<'a>,
    scratch: &'a mut Vec<u8>,
    log: &'a mut Log,
}

/// Counters of the work done.
struct Work {
    steps: u64,
    dropped: u64,
}

/// A line or length-prefixed reply stream.
#[derive(Debug)]
struct Framed {
    phase: FramedPhase,
    /// The message whose reply comes next.
    msg: u64,
    stamp: StampAt,
}

/// Where a [`Framed`] reply stream is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FramedPhase {
    /// Between replies.
    Start,
    /// Length framing: `got` bytes of the length prefix so far.
    Prefix { got: u8, value: u32 },
    /// The `[` must come next; `left` bytes of the frame remain (length framing).
    Open { left: Option<u64> },
    /// Inside the header.
    Header { start: u64, closed: bool, left: Option<u64> },
    /// Echoing the message: `done` bytes so far.
    Echo { done: usize, left: Option<u64> },
    /// Line framing: after the `\r` of a `\r\n`.
    Cr,
}

impl Framed {
    fn new() -> Framed {
        Framed { phase: FramedPhase::Start, msg: 0, stamp: (0, 0) }
    }

    /// Advances by `b`, received at `pos`; completed replies go to `ready`.
    fn step(
        &mut self,
        b: u8,
        pos: u64,
        line: bool,
        cx: &mut Context<'_>,
        ready: &mut VecDeque<Logged>,
    ) -> Result<(), Failure> {
        let Context { sent, ring, scratch, log } = cx;
        if self.msg >= sent.count() {
            return Err(Failure::Malformed(MalformedReason::Unsolicited));
        }
        let message = sent.slice(sent.start(self.msg), sent.end(self.msg));
        let take = |left: Option<u64>| left.map(|n| n.saturating_sub(1));
        self.phase = match self.phase {
            FramedPhase::Start if line => FramedPhase::Open { left: None }.open(b, pos)?,
            FramedPhase::Start => FramedPhase::Prefix { got: 1, value: u32::from(b) },
            FramedPhase::Prefix { got, value } => {
                let value = value << 8 | u32::from(b);
                if got < 3 {
                    FramedPhase::Prefix { got: got + 1, value }
                } else if u64::from(value) > message.len() as u64 + (MAX_STAMP_LEN + 3) as u64 {
                    return Err(Failure::Malformed(MalformedReason::FrameTooLong));
                } else if value == 0 {
                    return Err(Failure::Malformed(MalformedReason::EndsInsideStamp));
                } else {
                    FramedPhase::Open { left: Some(u64::from(value)) }
                }
            }
            open @ FramedPhase::Open { .. } => open.open(b, pos)?,
            FramedPhase::Header { start, closed, left } => {
                let left = take(left);
                match header_byte(start, closed, b, pos)? {
                    HeaderStep::Open { .. } if left == Some(0) => {
                        return Err(Failure::Malformed(MalformedReason::EndsInsideStamp));
                    }
                    HeaderStep::Open { closed } => FramedPhase::Header { start, closed, left },
                    HeaderStep::Done => {
                        let text = ring.stamp(start, pos, scratch)?;
                        self.stamp = log.add_stamp(text);
                        FramedPhase::Echo { done: 0, left }
                    }
                }
            }
            FramedPhase::Echo { done, left } => match message.get(done) {
                Some(&expected) if expected == b => FramedPhase::Echo { done: done + 1, left: take(left) },
                Some(_) => return Err(Failure::Mismatch(done)),
                None if b == b'\n' => return self.complete(message.len(), ready),
                None if b == b'\r' => FramedPhase::Cr,
                None => return Err(Failure::Mismatch(done)),
            },
            FramedPhase::Cr if b == b'\n' => return self.complete(message.len(), ready),
            FramedPhase::Cr => return Err(Failure::Mismatch(message.len())),
        };
        self.settle(message.len(), ready)
    }

    /// A frame's end is known from its prefix: a reply is complete, or
    /// wrong, as soon as its echo reaches the message's end or the frame's.
    fn settle(&mut self, len: usize, ready: &mut VecDeque<Logged>) -> Result<(), Failure> {
        if let FramedPhase::Echo { done, left: Some(left) } = self.phase {
            match (done == len, left == 0) {
                (true, true) => return self.complete(len, ready),
                (false, true) | (true, false) => return Err(Failure::Mismatch(done)),
                (false, false) => {}
            }
        }
        Ok(())
    }

    fn complete(&mut self, len: usize, ready: &mut VecDeque<Logged>) -> Result<(), Failure> {
        let (from, to) = self.stamp;
        ready.push_back(Logged::Piece { from, to, len });
        ready.push_back(Logged::Reply);
        self.msg += 1;
        self.phase = FramedPhase::Start;
        Ok(())
    }
}

impl FramedPhase {
    /// At `Open`: the byte must be the `[` of the header.
    fn open(self, b: u8, pos: u64) -> Result<FramedPhase, Failure> {
        let FramedPhase::Open { left } = self else { return Ok(self) };
        if b != b'[' {
            return Err(Failure::Malformed(MalformedReason::NoOpenBracket));
        }
        match left.map(|n| n.saturating_sub(1)) {
            Some(0) => Err(Failure::Malformed(MalformedReason::EndsInsideStamp)),
            left => Ok(FramedPhase::Header { start: pos, closed: false, left }),
        }
    }
}

enum HeaderStep {
    Open { closed: bool },
    Done,
}

/// One byte of a header `[STAMP] ` whose `[` came at `start`.
fn header_byte(start: u64, closed: bool, b: u8, pos: u64) -> Result<HeaderStep, Failure> {
    match (closed, b) {
        (true, b' ') => Ok(HeaderStep::Done),
        (true, _) => Err(Failure::Malformed(MalformedReason::NoSpaceAfterStamp)),
        (false, b']') => Ok(HeaderStep::Open { closed: true }),
        (false, b'\r' | b'\n') => Err(Failure::Malformed(MalformedReason::LineBreakInStamp)),
        (false, _) if pos - start > MAX_STAMP_LEN as u64 => Err(Failure::Malformed(MalformedReason::StampTooLong)),
        (false, _) => Ok(HeaderStep::Open { closed: false }),
    }
}

/// The last [`RING`] received bytes.
struct Ring<'a> {
    bytes: &'a [u8; RING],
}

impl Ring<'_> {
    /// The stamp of the header whose `[` came at `start` and whose space is
    /// the byte at `pos` (not yet stored), checked to be UTF-8.
    fn stamp<'s>(&self, start: u64, pos: u64, scratch: &'s mut Vec<u8>) -> Result<&'s str, Failure> {
        scratch.clear();
        // The stamp is at most 255 bytes, so all of it is still in the ring.
        scratch.extend((start + 1..pos - 1).map(|at| self.bytes[(at % RING as u64) as usize]));
        std::str::from_utf8(scratch).map_err(|_| Failure::Malformed(MalformedReason::StampNotUtf8))
    }
}

impl ReplyChecker {
    /// A checker for replies in `framing`, its messages untagged. Its limit
    /// (`max_line`, `max_frame`) decides which messages
    /// [`send`](ReplyChecker::send) accepts; chunk framing's `buffer_size`
    /// does not matter.
    pub fn new(framing: Framing) -> ReplyChecker {
        ReplyChecker::with_tags(framing)
    }

    /// Appends `message`, framed, to `out` (write it to the server), and
    /// records it: its reply is expected after those of the messages sent
    /// before it. As [`send_tagged`](ReplyChecker::send_tagged) with no tag.
    ///
    /// # Errors
    ///
    /// [`Error::Message`], without appending or recording anything, if
    /// the framing cannot carry the message as one message with one reply:
    /// in chunk framing an empty message (it gets no reply) or one ending
    /// with the first bytes of a UTF-8 character (the server holds them back
    /// for the rest); in line framing a newline, or a `\r` at the end (it
    /// would be read as part of a `\r\n` ending); a message over the
    /// framing's limit.
    pub fn send(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        self.send_tagged(message, (), out)
    }
}

impl<T> ReplyChecker<T> {
    /// A checker for replies in `framing` whose messages carry a tag of type
    /// `T` (see [`send_tagged`](ReplyChecker::send_tagged)); otherwise as
    /// [`new`](ReplyChecker::new).
    pub fn with_tags(framing: Framing) -> ReplyChecker<T> {
        let state = match framing {
            Framing::Chunk { .. } => State::Chunk(Readings::new()),
            _ => State::Framed(Framed::new()),
        };
        ReplyChecker {
            framing,
            sent: Sent::default(),
            tags: VecDeque::new(),
            state,
            ring: [0; RING],
            received: 0,
            log: Log::default(),
            ready: VecDeque::new(),
            scratch: Vec::with_capacity(MAX_STAMP_LEN),
            failed: None,
            steps: 0,
            dropped: 0,
        }
    }

    /// The framing in use.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Messages sent whose replies have not been handed out yet.
    pub fn in_flight(&self) -> usize {
        self.sent.ends.len()
    }

    /// Bytes of messages sent so far, in all (framing excluded).
    pub fn bytes_sent(&self) -> u64 {
        self.sent.total
    }

    /// How many of the [bytes sent](ReplyChecker::bytes_sent) the reply
    /// bytes checked so far have echoed, messages answered included: what
    /// a client sending a long message watches to keep reading while it
    /// writes (a server that streams its replies echoes a message as its
    /// bytes arrive). While a `[` is in doubt in chunk framing, the furthest
    /// reading counts: it is ahead of the true count by less than a stamp.
    ///
    /// ```
    /// use stamp_echo::{Framing, ReplyChecker};
    ///
    /// let mut checker = ReplyChecker::new(Framing::line());
    /// checker.send(b"hello", &mut Vec::new())?;
    /// checker.receive(b"[T] hel")?;
    /// assert_eq!((checker.bytes_sent(), checker.bytes_echoed()), (5, 3));
    /// # Ok::<(), stamp_echo::Error>(())
    /// ```
    pub fn bytes_echoed(&self) -> u64 {
        match &self.state {
            State::Chunk(r) => r.live.iter().chain(&r.open).map(|r| r.offset).max().unwrap_or(self.sent.front_start),
            State::Framed(f) => match f.phase {
                FramedPhase::Echo { done, .. } => self.sent.start(f.msg) + done as u64,
                FramedPhase::Cr => self.sent.end(f.msg),
                _ => self.sent.start(f.msg),
            },
        }
    }

    /// Appends `message`, framed, to `out` (write it to the server), and
    /// records it with `tag`: its reply is expected after those of the
    /// messages sent before it, and the [`Event::Reply`] that completes it
    /// hands `tag` back.
    ///
    /// # Errors
    ///
    /// Those of [`send`](ReplyChecker::send), without appending or recording
    /// anything (`tag` is dropped).
    pub fn send_tagged(&mut self, message: &[u8], tag: T, out: &mut Vec<u8>) -> Result<(), Error> {
        check_sendable(self.framing, message)?;
        self.framing.frame_message(message, out);
        self.sent.trim();
        self.sent.push(message);
        self.tags.push_back(tag);
        Ok(())
    }

    /// Checks `input`, the next bytes of the reply stream (one read's worth,
    /// cut anywhere), up to the next event.
    ///
    /// Returns how many bytes of `input` it took and the event they
    /// completed, if any. Call again with the rest of `input` (perhaps empty:
    /// one byte may complete several events) until the event is `None`, which
    /// means every byte of `input` was taken and more are needed. The event
    /// borrows the checker until the next call.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::EchoMismatch`] when the reply does not echo the message sent,
    /// with the offset in the message of the first byte that differs (or
    /// where the echo ends), and [`ProtocolError::MalformedReply`] when it is not
    /// shaped `[STAMP] MESSAGE` in the framing, answers no message sent, or
    /// is too ambiguous to check (see the module docs). After an error, every
    /// later call returns it again.
    pub fn receive(&mut self, input: &[u8]) -> Result<(usize, Option<Event<'_, T>>), Error> {
        if let Some(failure) = self.failed {
            return Err(failure.error());
        }
        let mut consumed = 0;
        while self.ready.is_empty() {
            self.tidy();
            let skipped = match self.skip(&input[consumed..]) {
                Ok(0) => self.skip_stamp(&input[consumed..]),
                Ok(n) => n,
                Err(failure) => {
                    self.failed = Some(failure);
                    return Err(failure.error());
                }
            };
            if skipped > 0 {
                consumed += skipped;
                continue;
            }
            let Some(&b) = input.get(consumed) else {
                if let State::Chunk(readings) = &mut self.state {
                    readings.commit(&self.sent);
                    self.collect();
                }
                break;
            };
            consumed += 1;
            if let Err(failure) = self.step(b) {
                self.failed = Some(failure);
                return Err(failure.error());
            }
        }
        Ok((consumed, self.next_event()))
    }

    /// The fast path: while one reading is left, inside a piece or a
    /// message's echo, takes the bytes that match the message up to (not
    /// including) a `[`, in one comparison, through the message's end.
    fn skip(&mut self, input: &[u8]) -> Result<usize, Failure> {
        let (offset, msg, left) = match &self.state {
            State::Chunk(r) => match (r.live.as_slice(), r.open.is_empty()) {
                ([reading], true) if matches!(reading.phase, Phase::Body { .. }) => (reading.offset, reading.msg, None),
                _ => return Ok(0),
            },
            State::Framed(f) => match f.phase {
                FramedPhase::Echo { done, left } => (self.sent.start(f.msg) + done as u64, f.msg, left),
                _ => return Ok(0),
            },
        };
        // Up to the message's end, and the frame's.
        let end = left.map_or(self.sent.end(msg), |left| self.sent.end(msg).min(offset + left));
        let room = usize::try_from(end.saturating_sub(offset)).unwrap_or(usize::MAX).min(input.len());
        let expected = self.sent.slice(offset, offset + room as u64);
        let n = input.iter().zip(expected).take_while(|&(a, b)| a == b && *a != b'[').count();
        if n == 0 {
            return Ok(0);
        }
        self.steps += n as u64;
        self.received += n as u64;
        // The ring holds bytes a header needs; no header is open here, and
        // the bytes of the next one are all taken by `step`.
        match &mut self.state {
            State::Chunk(r) => {
                if let Some(reading) = r.live.first_mut() {
                    reading.echoed(n, &self.sent, &mut self.log)?;
                }
                self.collect();
            }
            State::Framed(f) => {
                if let FramedPhase::Echo { done, left } = f.phase {
                    f.phase = FramedPhase::Echo { done: done + n, left: left.map(|l| l.saturating_sub(n as u64)) };
                    let len = self.sent.end(f.msg) - self.sent.start(f.msg);
                    f.settle(usize::try_from(len).unwrap_or(usize::MAX), &mut self.ready)?;
                }
            }
        }
        Ok(n)
    }

    /// The fast path inside a stamp: while the only readings are inside a
    /// header, takes the bytes up to (not including) a `]`, a line break, or
    /// the byte that would make the oldest header's stamp too long (or end
    /// a frame), keeping them for the stamp.
    fn skip_stamp(&mut self, input: &[u8]) -> usize {
        let (oldest, left) = match &self.state {
            State::Chunk(r) if r.live.is_empty() && !r.closed => match r.open.front().map(|r| r.phase) {
                Some(Phase::Header { start }) => (start, None),
                _ => return 0,
            },
            State::Framed(f) => match f.phase {
                FramedPhase::Header { start, closed: false, left } => (start, left),
                _ => return 0,
            },
            State::Chunk(_) => return 0,
        };
        let room = (oldest + MAX_STAMP_LEN as u64 + 1).saturating_sub(self.received);
        let room = room.min(left.map_or(u64::MAX, |left| left.saturating_sub(1)));
        let room = usize::try_from(room).unwrap_or(usize::MAX).min(input.len());
        let n = input[..room].iter().position(|&b| matches!(b, b']' | b'\r' | b'\n')).unwrap_or(room);
        for (at, &b) in (self.received..).zip(&input[..n]) {
            self.ring[(at % RING as u64) as usize] = b;
        }
        self.received += n as u64;
        self.steps += n as u64;
        if let State::Framed(f) = &mut self.state
            && let FramedPhase::Header { start, closed, left } = f.phase
        {
            f.phase = FramedPhase::Header { start, closed, left: left.map(|left| left - n as u64) };
        }
        n
    }

    /// Advances by one received byte.
    fn step(&mut self, b: u8) -> Result<(), Failure> {
        let pos = self.received;
        let mut cx = Context {
            sent: &self.sent,
            ring: Ring { bytes: &self.ring },
            scratch: &mut self.scratch,
            log: &mut self.log,
        };
        let result = match &mut self.state {
            State::Chunk(readings) => {
                let mut work = Work { steps: 0, dropped: 0 };
                let result = readings.step(b, pos, &mut cx, &mut work);
                self.steps += work.steps;
                self.dropped += work.dropped;
                result
            }
            State::Framed(framed) => {
                self.steps += 1;
                let line = matches!(self.framing, Framing::Line { .. });
                framed.step(b, pos, line, &mut cx, &mut self.ready)
            }
        };
        self.ring[(pos % RING as u64) as usize] = b;
        self.received += 1;
        self.collect();
        result
    }

    /// Once one reading is left, readies the events it logged.
    fn collect(&mut self) {
        if let State::Chunk(readings) = &mut self.state
            && let Some(reading) = readings.unique()
            && reading.tail != NONE
        {
            self.log.hand_out(&mut reading.tail, &mut self.ready);
        }
    }

    /// With nothing waiting and one reading left, forgets what was logged.
    fn tidy(&mut self) {
        if self.log.nodes.is_empty() && self.log.stamps.len() < 4 * RING {
            return;
        }
        match &mut self.state {
            State::Chunk(readings) => {
                if let Some(reading) = readings.unique()
                    && reading.tail == NONE
                {
                    reading.stamp = self.log.reset(reading.stamp);
                }
            }
            State::Framed(framed) => framed.stamp = self.log.reset(framed.stamp),
        }
        self.sent.trim();
    }

    fn next_event(&mut self) -> Option<Event<'_, T>> {
        match self.ready.pop_front()? {
            Logged::Piece { from, to, len } => {
                Some(Event::Piece { stamp: self.log.stamps.get(from as usize..to as usize).unwrap_or_default(), len })
            }
            Logged::Reply => {
                let (seq, start, end) = self.sent.pop()?;
                let tag = self.tags.pop_front()?;
                Some(Event::Reply { message: self.sent.slice(start, end), seq, tag })
            }
        }
    }

    /// The work done so far, in reading steps: one per reading per byte
    /// received, one per header opened and one per header closed, one per
    /// byte for all open headers together. At most `3 × MAX_READINGS + 1`
    /// per byte (see the module docs); 1 per byte while no `[` is in doubt.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Readings given up so far because more were open at once than the
    /// checker follows (see the module docs): none unless messages hold `[`.
    pub fn readings_dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Responder;
    use crate::stamp::Ctime;
    use std::sync::Arc;
    use std::time::SystemTime;

    /// Feeds `input` whole; returns the pieces and replies seen, as text.
    fn feed(checker: &mut ReplyChecker, mut input: &[u8]) -> Result<Vec<String>, Error> {
        let mut seen = Vec::new();
        loop {
            let (consumed, event) = checker.receive(input)?;
            input = &input[consumed..];
            match event {
                Some(Event::Piece { stamp, len }) => seen.push(format!("{stamp}:{len}")),
                Some(Event::Reply { message, seq, .. }) => {
                    seen.push(format!("#{seq}={}", String::from_utf8_lossy(message)))
                }
                None => return Ok(seen),
            }
        }
    }

    /// What our server answers to `messages` sent back to back, read by it
    /// in reads of `read` bytes.
    fn served(framing: Framing, messages: &[&[u8]], read: usize) -> (ReplyChecker, Vec<u8>) {
        let mut checker = ReplyChecker::new(framing);
        let mut wire = Vec::new();
        for m in messages {
            checker.send(m, &mut wire).expect("sendable");
        }
        let mut responder = Responder::new(framing, Arc::new(Ctime::utc()));
        let mut replies = Vec::new();
        for chunk in wire.chunks(read) {
            responder.receive(chunk, SystemTime::UNIX_EPOCH, &mut replies).expect("served");
        }
        (checker, replies)
    }

    const EPOCH: &str = "Thu Jan  1 00:00:00 1970";

    #[test]
    fn events_come_in_order_whatever_the_cut() {
        let messages: [&[u8]; 3] = [b"one", b"two[", b"[three]"];
        for framing in [Framing::chunk(), Framing::line(), Framing::length_prefixed()] {
            let (_, replies) = served(framing, &messages, 1024);
            for cut in 0..=replies.len() {
                let (mut checker, _) = served(framing, &messages, 1024);
                let mut seen = feed(&mut checker, &replies[..cut]).expect("a prefix is fine");
                seen.extend(feed(&mut checker, &replies[cut..]).expect("the rest is fine"));
                // In chunk framing the server read all three at once: one
                // piece, shared by the three messages, each told its part.
                let expected = [format!("{EPOCH}:3"), "#0=one".into(), format!("{EPOCH}:4"), "#1=two[".into()];
                assert_eq!(seen[..4], expected[..], "{framing} cut at {cut}");
                assert_eq!(seen[4..], [format!("{EPOCH}:7"), "#2=[three]".to_owned()], "{framing} cut at {cut}");
                assert_eq!(checker.in_flight(), 0);
            }
        }
    }

    /// Fed one byte at a time, the echo count grows with each echoed byte
    /// and never passes what was sent, whatever the framing.
    #[test]
    fn bytes_echoed_follow_the_echo() {
        let messages: [&[u8]; 2] = [b"one[T] two", b"three"];
        for framing in [Framing::chunk(), Framing::line(), Framing::length_prefixed()] {
            let (mut checker, replies) = served(framing, &messages, 4);
            assert_eq!((checker.bytes_sent(), checker.bytes_echoed()), (15, 0), "{framing}");
            let mut last = 0;
            for (at, b) in replies.iter().enumerate() {
                feed(&mut checker, std::slice::from_ref(b)).expect("an honest reply");
                let echoed = checker.bytes_echoed();
                assert!(echoed >= last && echoed <= 15, "{framing} at {at}: {echoed} after {last}");
                last = echoed;
            }
            assert_eq!(last, 15, "{framing}");
            // Line framing: the first reply ends with its line, after all ten bytes.
            if framing == Framing::line() {
                let (mut checker, _) = served(framing, &messages, 4);
                feed(&mut checker, b"[T] one[T").expect("a prefix");
                assert_eq!(checker.bytes_echoed(), 5);
            }
        }
    }

    #[test]
    fn each_reply_hands_back_its_message_tag() {
        let mut checker = ReplyChecker::with_tags(Framing::line());
        let mut wire = Vec::new();
        checker.send_tagged(b"one", "first", &mut wire).expect("sendable");
        // Refused: neither sent nor recorded, its tag dropped.
        assert!(checker.send_tagged(b"a\nb", "refused", &mut wire).is_err());
        checker.send_tagged(b"two", "second", &mut wire).expect("sendable");
        assert_eq!(wire, b"one\ntwo\n");
        let mut input = &b"[T] one\n[T] two\n"[..];
        let mut tags = Vec::new();
        loop {
            let (consumed, event) = checker.receive(input).expect("the replies check");
            input = &input[consumed..];
            match event {
                Some(Event::Reply { message, tag, .. }) => tags.push((message.to_vec(), tag)),
                Some(Event::Piece { .. }) => {}
                None => break,
            }
        }
        assert_eq!(tags, [(b"one".to_vec(), "first"), (b"two".to_vec(), "second")]);
        assert_eq!(checker.in_flight(), 0);
    }

    #[test]
    fn an_error_sticks() {
        let mut checker = ReplyChecker::new(Framing::chunk());
        checker.send(b"hi", &mut Vec::new()).expect("sendable");
        assert!(matches!(checker.receive(b"[T] hx"), Err(Error::Protocol(ProtocolError::EchoMismatch { offset: 1 }))));
        assert!(matches!(checker.receive(b"i"), Err(Error::Protocol(ProtocolError::EchoMismatch { offset: 1 }))));
    }

    #[test]
    fn replies_to_nothing_are_malformed() {
        for framing in [Framing::chunk(), Framing::line(), Framing::length_prefixed()] {
            let mut replies = Vec::new();
            framing.encode_reply("T", b"x", LineEnding::Lf, &mut replies);
            let r = feed(&mut ReplyChecker::new(framing), &replies);
            assert!(matches!(r, Err(Error::Protocol(ProtocolError::MalformedReply(_)))), "{framing}: {r:?}");
        }
    }

    #[test]
    fn empty_messages_in_line_and_length_framing() {
        for framing in [Framing::line(), Framing::length_prefixed()] {
            let (mut checker, replies) = served(framing, &[b"", b"a", b""], 7);
            let seen = feed(&mut checker, &replies).expect("checked");
            assert_eq!(seen.iter().filter(|s| s.starts_with('#')).count(), 3, "{framing}: {seen:?}");
        }
    }

    #[test]
    fn sent_bytes_are_dropped_once_answered() {
        let framing = Framing::chunk();
        let mut checker = ReplyChecker::new(framing);
        let mut reply = Vec::new();
        for i in 0..10_000 {
            checker.send(format!("message {i}").as_bytes(), &mut Vec::new()).expect("sendable");
            // Ten stay in flight: the checker is never empty.
            if i >= 10 {
                reply.clear();
                framing.encode_reply("T", format!("message {}", i - 10).as_bytes(), LineEnding::None, &mut reply);
                let seen = feed(&mut checker, &reply).expect("a good reply");
                assert_eq!(seen.last().map(String::as_str), Some(format!("#{}=message {}", i - 10, i - 10).as_str()));
            }
        }
        assert_eq!(checker.in_flight(), 10);
        assert!(checker.sent.bytes.len() < 10_000, "sent bytes kept: {}", checker.sent.bytes.len());
    }

    /// The case that made the old depth-first parser take seconds: a long
    /// message of `[`, answered honestly in 1024-byte reads and by hostile
    /// servers. The work is counted, not timed: at most a constant number of
    /// reading steps per byte received.
    #[test]
    fn a_message_full_of_brackets_is_checked_in_linear_work() {
        let message = vec![b'['; 64 * 1024];
        let bound = |checker: &ReplyChecker, received: usize| {
            let steps = checker.steps();
            let most = (3 * MAX_READINGS as u64 + 1) * received as u64;
            assert!(steps <= most, "{steps} steps for {received} bytes");
        };
        // Honest.
        let (mut checker, replies) = served(Framing::chunk(), &[&message], 1024);
        let seen = feed(&mut checker, &replies).expect("an honest reply");
        assert_eq!(seen.len(), 64 + 1);
        bound(&checker, replies.len());

        // Hostile: a stamp made of the message's own bytes before each `]`,
        // so every `[` may start a header.
        let mut hostile = b"[T] ".to_vec();
        hostile.extend(std::iter::repeat_n(b'[', 200));
        for _ in 0..300 {
            hostile.extend(std::iter::repeat_n(b'[', 200));
            hostile.extend_from_slice(b"] ");
        }
        hostile.extend(std::iter::repeat_n(b'[', 10));
        let mut checker = ReplyChecker::new(Framing::chunk());
        checker.send(&message, &mut Vec::new()).expect("sendable");
        let result = feed(&mut checker, &hostile);
        bound(&checker, hostile.len());
        assert!(result.is_ok(), "every one of these bytes has a reading: {result:?}");

        // Hostile: a stamp that never ends.
        let mut endless = b"[T] [[".to_vec();
        endless.extend(std::iter::repeat_n(b'x', 100_000));
        let mut checker = ReplyChecker::new(Framing::chunk());
        checker.send(&message, &mut Vec::new()).expect("sendable");
        let result = feed(&mut checker, &endless);
        assert!(
            matches!(result, Err(Error::Protocol(ProtocolError::MalformedReply(MalformedReason::StampTooLong)))),
            "{result:?}"
        );
        bound(&checker, 300);
    }

    #[test]
    fn a_whole_datagram_reply() {
        assert_eq!(check_whole(b"[T] hi", b"hi").ok(), Some("T"));
        assert!(matches!(
            check_whole(b"[T] ho", b"hi"),
            Err(Error::Protocol(ProtocolError::EchoMismatch { offset: 1 }))
        ));
        assert!(matches!(
            check_whole(b"[T] hi[T] ", b"hi"),
            Err(Error::Protocol(ProtocolError::EchoMismatch { offset: 2 }))
        ));
        assert!(matches!(check_whole(b"[T]hi", b"hi"), Err(Error::Protocol(ProtocolError::MalformedReply(_)))));
    }
}
