//! The protocol core: bytes in, stamped replies out, and no I/O.
//!
//! A reply is `[` STAMP `] ` MESSAGE: the message's bytes unchanged, behind a
//! stamp whose text has no `]`, `\r` or `\n` and at most [`MAX_STAMP_LEN`]
//! bytes, so that any client can find where the stamp ends whatever the
//! formatter. [`Responder`] applies that to a stream of reads, one connection
//! at a time; the blocking [`EchoServer`](crate::EchoServer) and any other
//! transport (a UDP socket, an async runtime, a test) drive the same code.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, SystemTime};
//! use stamp_echo::{framing::Framing, protocol::Responder, stamp::Ctime};
//!
//! let mut responder = Responder::new(Framing::line(), Arc::new(Ctime::utc()));
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_359_885_618);
//! let mut out = Vec::new();
//! responder.receive(b"hi,server\nsecond li", now, &mut out)?;
//! responder.receive(b"ne\n", now, &mut out)?;
//! assert_eq!(
//!     out,
//!     b"[Sun Feb  3 10:00:18 2013] hi,server\n[Sun Feb  3 10:00:18 2013] second line\n"
//! );
//! # Ok::<(), stamp_echo::Error>(())
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::Error;
pub use crate::wire::{MAX_STAMP_LEN, parse_reply, validate_stamp};

use crate::framing::{Lines, Part, Splitter};
use crate::stamp::{Granularity, Stamp};
use crate::wire::{Framing, LineEnding};

/// Counts of what one connection did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Messages answered.
    pub messages: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes of replies produced.
    pub bytes_out: u64,
}

/// Bytes of one message, as an [`Observer`] sees them.
///
/// A message that arrives whole in one read is one fragment, both
/// [first](Fragment::is_first) and [last](Fragment::is_last). A message
/// spread over several reads may be seen as several fragments, in order;
/// only the last may be empty (an empty message, or an ending that came in a
/// read of its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment<'a> {
    bytes: &'a [u8],
    offset: u64,
    last: bool,
}

impl<'a> Fragment<'a> {
    pub(crate) fn new(bytes: &'a [u8], offset: u64, last: bool) -> Fragment<'a> {
        Fragment { bytes, offset, last }
    }

    /// The message's bytes in this fragment.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// How many bytes of the message came before this fragment.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether this fragment starts its message.
    pub fn is_first(&self) -> bool {
        self.offset == 0
    }

    /// Whether this fragment ends its message: its reply is then complete.
    pub fn is_last(&self) -> bool {
        self.last
    }

    /// With [`is_last`](Fragment::is_last): the message's whole length.
    pub fn end(&self) -> u64 {
        self.offset + self.bytes.len() as u64
    }
}

/// Sees each message a connection receives (the server's log lines use it).
///
/// `()` observes nothing; any `FnMut(Fragment<'_>)` closure sees each
/// fragment of each message.
pub trait Observer {
    /// Called with each fragment of each message as it arrives, before its
    /// bytes are appended to the reply (the reply's header is already out:
    /// replies are streamed, see [`Responder`]).
    fn message(&mut self, fragment: Fragment<'_>) {
        let _ = fragment;
    }

    /// Called once when the connection ends, with its counts and, if it
    /// ended in an error, the error.
    fn finished(&mut self, summary: &Summary, error: Option<&Error>) {
        let _ = (summary, error);
    }
}

impl Observer for () {}

impl<F: FnMut(Fragment<'_>)> Observer for F {
    fn message(&mut self, fragment: Fragment<'_>) {
        self(fragment)
    }
}

/// One connection's protocol state: a [`Splitter`] for its framing, the stamp
/// text and header in use, and where the current message stands.
///
/// Feed it every read with [`receive`](Responder::receive) and the end of
/// input with [`finish`](Responder::finish); it appends the replies to a
/// buffer you own and write out. Datagram transports, where each message
/// arrives whole, use [`reply_to`](Responder::reply_to) instead.
///
/// # Streamed replies
///
/// Replies are streamed, never buffered: when a message begins, its header
/// `[STAMP] ` goes into `out` (in length-prefixed framing preceded by the
/// reply's 4-byte length, known from the frame's); its bytes follow as they
/// arrive, read by read; its line ending when it ends. So a call appends at
/// most about as many bytes as it was given (plus a header and an ending per
/// message), and a connection holds its read buffer and one read's worth of
/// replies, whatever the message size. This has consequences:
///
/// - the stamp is the instant the message *began* (its first byte, or its
///   complete length prefix), not the instant it ended;
/// - a message that turns out bad (a line over `max_line`) has been partly
///   answered before the error: the header and its first `max_line` bytes,
///   with no line ending. Input that ends in the middle of a frame leaves a
///   reply frame that is cut short the same way;
/// - [`Summary::messages`] counts messages answered to their end.
///
/// In steady state it allocates nothing: the stamp text and the header are
/// built into buffers it keeps, once a second for stamps of
/// [`Granularity::Second`], once per distinct instant otherwise.
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, SystemTime};
/// use stamp_echo::{Error, Framing, ProtocolError, Responder, stamp::Ctime};
///
/// let mut responder = Responder::new(Framing::Line { max_line: 8 }, Arc::new(Ctime::utc()));
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_359_885_618);
/// let mut out = Vec::new();
/// responder.receive(b"hi\n", now, &mut out)?;
/// assert_eq!(out, b"[Sun Feb  3 10:00:18 2013] hi\n");
///
/// let err = responder.receive(b"this line is too long\n", now, &mut out).unwrap_err();
/// assert!(matches!(err, Error::Protocol(ProtocolError::LineTooLong { max: 8 })));
/// # Ok::<(), stamp_echo::Error>(())
/// ```
pub struct Responder {
    decoder: Splitter,
    header: StampedHeader,
    /// Bytes of the current message answered so far: the next fragment's offset.
    offset: u64,
    summary: Summary,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("decoder", &self.decoder)
            .field("stamp", &self.header.text)
            .field("offset", &self.offset)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

/// The header `[STAMP] ` of replies, rebuilt only when the stamp's text changes.
struct StampedHeader {
    stamp: Arc<dyn Stamp>,
    granularity: Granularity,
    /// The instant `text` was made for (rounded down to the second for
    /// [`Granularity::Second`]); `None` before the first message.
    stamped: Option<SystemTime>,
    text: String,
    /// `[text] `, the start of every reply.
    bytes: Vec<u8>,
}

impl StampedHeader {
    /// The header for a message beginning at `now`.
    fn at(&mut self, now: SystemTime) -> Result<&[u8], Error> {
        let before = self.stamped;
        refresh_stamp(self.stamp.as_ref(), self.granularity, now, &mut self.stamped, &mut self.text)?;
        if self.stamped != before {
            self.bytes.clear();
            self.bytes.push(b'[');
            self.bytes.extend_from_slice(self.text.as_bytes());
            self.bytes.extend_from_slice(b"] ");
        }
        Ok(&self.bytes)
    }
}

impl Responder {
    /// A responder for one connection.
    pub fn new(framing: Framing, stamp: Arc<dyn Stamp>) -> Responder {
        let granularity = stamp.granularity();
        Responder {
            decoder: Splitter::new(framing),
            header: StampedHeader { stamp, granularity, stamped: None, text: String::new(), bytes: Vec::new() },
            offset: 0,
            summary: Summary::default(),
        }
    }

    /// The framing in use.
    pub fn framing(&self) -> Framing {
        self.decoder.framing()
    }

    /// Counts so far.
    pub fn summary(&self) -> Summary {
        self.summary
    }

    /// Whether the input so far ends inside a message (its reply begun and
    /// not finished, or its length prefix incomplete). See
    /// [`Splitter::in_message`].
    pub fn in_message(&self) -> bool {
        self.decoder.in_message()
    }

    /// Answers `input` (one read), appending to `out` the replies' bytes it
    /// produces (see [streamed replies](Responder#streamed-replies)); a
    /// message beginning in it is stamped `now`. Returns how many messages
    /// ended in it.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::LineTooLong`](crate::ProtocolError::LineTooLong) or [`ProtocolError::FrameTooLarge`](crate::ProtocolError::FrameTooLarge) for input over the
    /// framing's limit, [`Error::Stamp`] if the stamp formatter
    /// produced text the protocol cannot carry. Either way `out` holds
    /// every reply to the messages before the error (and the beginning of the
    /// reply to a line over the limit): write it out before closing the
    /// connection. The responder must not be used again.
    pub fn receive(&mut self, input: &[u8], now: SystemTime, out: &mut Vec<u8>) -> Result<usize, Error> {
        self.receive_observed(input, now, out, &mut ())
    }

    /// [`receive`](Responder::receive), showing each fragment of each message
    /// to `observer` before its bytes are appended to `out`.
    ///
    /// # Errors
    ///
    /// As [`receive`](Responder::receive).
    pub fn receive_observed<O: Observer + ?Sized>(
        &mut self,
        input: &[u8],
        now: SystemTime,
        out: &mut Vec<u8>,
        observer: &mut O,
    ) -> Result<usize, Error> {
        self.summary.bytes_in += input.len() as u64;
        self.answer(Some(input), now, out, observer)
    }

    /// Ends the input: ends a last message held back (a line without a
    /// newline, the start of a UTF-8 character) and its reply.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::TruncatedFrame`](crate::ProtocolError::TruncatedFrame) for input that ends inside a frame (its reply
    /// was begun and stays cut short), [`ProtocolError::LineTooLong`](crate::ProtocolError::LineTooLong) for a last line
    /// one `\r` over the limit, [`Error::Stamp`] as for
    /// [`receive`](Responder::receive).
    pub fn finish(&mut self, now: SystemTime, out: &mut Vec<u8>) -> Result<usize, Error> {
        self.finish_observed(now, out, &mut ())
    }

    /// [`finish`](Responder::finish), showing the last fragment to `observer`.
    ///
    /// # Errors
    ///
    /// As [`finish`](Responder::finish).
    pub fn finish_observed<O: Observer + ?Sized>(
        &mut self,
        now: SystemTime,
        out: &mut Vec<u8>,
        observer: &mut O,
    ) -> Result<usize, Error> {
        self.answer(None, now, out, observer)
    }

    /// Answers one whole message that came alone, such as a datagram:
    /// appends exactly one reply `[STAMP] MESSAGE` to `out`, unframed whatever
    /// this responder's framing, stamped `now`. It shares the stamp cache,
    /// the stamp check and the [`summary`](Responder::summary) with
    /// [`receive`](Responder::receive), and leaves the stream decoder alone.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::{Duration, SystemTime};
    /// use stamp_echo::{framing::Framing, protocol::Responder, stamp::Ctime};
    ///
    /// let mut responder = Responder::new(Framing::chunk(), Arc::new(Ctime::utc()));
    /// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_359_885_618);
    /// let mut datagram = Vec::new();
    /// responder.reply_to(b"hi,server", now, &mut datagram)?;
    /// assert_eq!(datagram, b"[Sun Feb  3 10:00:18 2013] hi,server");
    /// assert_eq!(responder.summary().messages, 1);
    /// # Ok::<(), stamp_echo::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Stamp`] if the stamp formatter produced text the
    /// protocol cannot carry; nothing is appended then.
    pub fn reply_to(&mut self, message: &[u8], now: SystemTime, out: &mut Vec<u8>) -> Result<(), Error> {
        self.reply_to_observed(message, now, out, &mut ())
    }

    /// [`reply_to`](Responder::reply_to), showing the message to `observer`
    /// as one fragment, both first and last.
    ///
    /// # Errors
    ///
    /// As [`reply_to`](Responder::reply_to).
    pub fn reply_to_observed<O: Observer + ?Sized>(
        &mut self,
        message: &[u8],
        now: SystemTime,
        out: &mut Vec<u8>,
        observer: &mut O,
    ) -> Result<(), Error> {
        self.summary.bytes_in += message.len() as u64;
        let header = self.header.at(now)?;
        observer.message(Fragment::new(message, 0, true));
        out.reserve(header.len() + message.len());
        out.extend_from_slice(header);
        out.extend_from_slice(message);
        self.summary.messages += 1;
        self.summary.bytes_out += (header.len() + message.len()) as u64;
        Ok(())
    }

    /// Runs the decoder on `input` (`None`: the end of input), streaming each
    /// message's reply into `out` as its events come.
    fn answer<O: Observer + ?Sized>(
        &mut self,
        input: Option<&[u8]>,
        now: SystemTime,
        out: &mut Vec<u8>,
        observer: &mut O,
    ) -> Result<usize, Error> {
        let start = out.len();
        let Responder { decoder, header, offset, .. } = self;
        // Every message beginning in one call is stamped `now`: check the
        // stamp once, at the first.
        let mut replies = Replies { header, now, current: false, out, observer, offset, count: 0 };
        let result = match input {
            Some(input) => decoder.decode_into(input, &mut replies),
            None => decoder.finish(&mut |event| replies.event(event)),
        };
        let count = replies.count;
        self.summary.messages += count as u64;
        self.summary.bytes_out += (out.len() - start) as u64;
        result.map(|()| count)
    }
}

/// The replies to one call of [`Responder::answer`], streamed into `out`
/// as the decoder hands the messages over.
struct Replies<'a, O: ?Sized> {
    header: &'a mut StampedHeader,
    now: SystemTime,
    /// Whether `header` is checked for `now` already.
    current: bool,
    out: &'a mut Vec<u8>,
    observer: &'a mut O,
    /// Bytes of the current message answered so far.
    offset: &'a mut u64,
    /// Messages ended.
    count: usize,
}

impl<O: Observer + ?Sized> Replies<'_, O> {
    /// The header for messages beginning now, checked at the first.
    fn header(&mut self) -> Result<&[u8], Error> {
        if self.current {
            return Ok(&self.header.bytes);
        }
        self.current = true;
        self.header.at(self.now)
    }
}

impl<O: Observer + ?Sized> Lines for Replies<'_, O> {
    fn event(&mut self, event: Part<'_>) -> Result<(), Error> {
        match event {
            Part::Start { len } => {
                let header = self.header()?;
                if let Some(len) = len {
                    // Fits: len <= max_frame <= 4 GiB - 512 and a header
                    // is at most 258 bytes.
                    let total = u32::try_from(header.len() as u64 + u64::from(len)).unwrap_or(u32::MAX);
                    self.out.extend_from_slice(&total.to_be_bytes());
                }
                let header = &self.header.bytes;
                self.out.extend_from_slice(header);
                *self.offset = 0;
            }
            Part::Bytes(bytes) => {
                self.observer.message(Fragment::new(bytes, *self.offset, false));
                self.out.extend_from_slice(bytes);
                *self.offset += bytes.len() as u64;
            }
            Part::End { bytes, ending } => {
                self.observer.message(Fragment::new(bytes, *self.offset, true));
                self.out.extend_from_slice(bytes);
                // Constant-size copies: no call to memcpy for one or two bytes.
                match ending {
                    LineEnding::None => {}
                    LineEnding::Lf => self.out.push(b'\n'),
                    LineEnding::CrLf => self.out.extend_from_slice(b"\r\n"),
                }
                *self.offset = 0;
                self.count += 1;
            }
        }
        Ok(())
    }

    fn begin(&mut self) -> Result<(), Error> {
        self.header().map(drop)
    }

    fn line(&mut self, content: &[u8], line: &[u8]) {
        // The header, then the line with its ending, as it came.
        self.out.extend_from_slice(&self.header.bytes);
        self.observer.message(Fragment::new(content, 0, true));
        self.out.extend_from_slice(line);
        self.count += 1;
    }
}

/// Formats the stamp for `now` into `text`, unless `text` is still current.
pub(crate) fn refresh_stamp(
    stamp: &dyn Stamp,
    granularity: Granularity,
    now: SystemTime,
    stamped: &mut Option<SystemTime>,
    text: &mut String,
) -> Result<(), Error> {
    let key = match granularity {
        Granularity::Exact => now,
        Granularity::Second => truncate_to_second(now),
    };
    if *stamped == Some(key) {
        return Ok(());
    }
    text.clear();
    stamp.write_stamp(now, text);
    validate_stamp(text)?;
    *stamped = Some(key);
    Ok(())
}

fn truncate_to_second(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        // Before the epoch: round towards the past, as the second's start.
        Err(e) => {
            let d = e.duration();
            let whole = Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0));
            SystemTime::UNIX_EPOCH - whole
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProtocolError;
    use crate::stamp::{self, Ctime};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn at(secs: u64, nanos: u32) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn replies_are_stamped_in_every_framing() {
        let now = at(1_359_885_618, 0);
        for framing in [Framing::chunk(), Framing::line(), Framing::length_prefixed()] {
            let mut responder = Responder::new(framing, Arc::new(Ctime::utc()));
            let mut input = Vec::new();
            framing.frame_message("你好".as_bytes(), &mut input);
            let mut out = Vec::new();
            assert_eq!(responder.receive(&input, now, &mut out).ok(), Some(1));
            let mut expected = Vec::new();
            let ending = if let Framing::Line { .. } = framing { LineEnding::Lf } else { LineEnding::None };
            framing.encode_reply("Sun Feb  3 10:00:18 2013", "你好".as_bytes(), ending, &mut expected);
            assert_eq!(out, expected, "{framing}");
            assert_eq!(
                responder.summary(),
                Summary { messages: 1, bytes_in: input.len() as u64, bytes_out: out.len() as u64 }
            );
        }
    }

    #[test]
    fn stamp_is_formatted_once_a_second() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        struct Counting;
        impl Stamp for Counting {
            fn write_stamp(&self, now: SystemTime, out: &mut String) {
                CALLS.fetch_add(1, Ordering::Relaxed);
                Ctime::utc().write_stamp(now, out);
            }
            fn granularity(&self) -> Granularity {
                Granularity::Second
            }
        }
        let mut responder = Responder::new(Framing::line(), Arc::new(Counting));
        let mut out = Vec::new();
        for nanos in [0, 1, 500_000_000, 999_999_999] {
            responder.receive(b"a\nb\n", at(100, nanos), &mut out).expect("valid input");
        }
        assert_eq!(CALLS.load(Ordering::Relaxed), 1);
        responder.receive(b"c\n", at(101, 0), &mut out).expect("valid input");
        assert_eq!(CALLS.load(Ordering::Relaxed), 2);
        assert_eq!(responder.summary().messages, 9);
    }

    #[test]
    fn bad_stamps_are_rejected() {
        for bad in ["a]b", "a\rb", "a\nb"] {
            let stamp = stamp::from_fn(move |_: SystemTime, out: &mut String| out.push_str(bad));
            let mut responder = Responder::new(Framing::chunk(), Arc::new(stamp));
            let r = responder.receive(b"x", at(0, 0), &mut Vec::new());
            assert!(matches!(r, Err(Error::Stamp(ref e)) if e.stamp() == bad), "{bad:?}");
        }
        assert!(validate_stamp(&"x".repeat(MAX_STAMP_LEN)).is_ok());
        assert!(validate_stamp(&"x".repeat(MAX_STAMP_LEN + 1)).is_err());
    }

    #[test]
    fn replies_before_an_error_are_kept_and_a_bad_line_is_partly_answered() {
        let mut responder = Responder::new(Framing::Line { max_line: 3 }, Arc::new(Ctime::utc()));
        let mut out = Vec::new();
        let r = responder.receive(b"ab\ntoo long\n", at(0, 0), &mut out);
        assert!(matches!(r, Err(Error::Protocol(ProtocolError::LineTooLong { max: 3 }))));
        // The whole line's reply, then the bad line's header and first 3 bytes.
        assert_eq!(out, b"[Thu Jan  1 00:00:00 1970] ab\n[Thu Jan  1 00:00:00 1970] too");
        assert_eq!(responder.summary().messages, 1);
    }

    #[test]
    fn observer_sees_each_fragment_as_it_arrives() {
        let mut responder = Responder::new(Framing::line(), Arc::new(Ctime::utc()));
        let mut seen = Vec::new();
        let mut observer = |m: Fragment<'_>| seen.push((m.bytes().to_vec(), m.offset(), m.is_last()));
        let mut out = Vec::new();
        for read in [&b"one\ntw"[..], b"o, ", b"three", b"\n", b"", b"\nlast"] {
            responder.receive_observed(read, at(0, 0), &mut out, &mut observer).expect("valid");
        }
        responder.finish_observed(at(0, 0), &mut out, &mut observer).expect("valid");
        let expected: [(&[u8], u64, bool); 8] = [
            (b"one", 0, true),
            (b"tw", 0, false),
            (b"o, ", 2, false),
            (b"three", 5, false),
            (b"", 10, true), // the ending alone
            (b"", 0, true),  // an empty line
            (b"last", 0, false),
            (b"", 4, true), // ended by the end of input
        ];
        let expected: Vec<_> = expected.iter().map(|(b, o, l)| (b.to_vec(), *o, *l)).collect();
        assert_eq!(seen, expected);
        assert_eq!(responder.summary().messages, 4);
    }

    /// The header goes out when a message begins, stamped then; the bytes
    /// follow as they come. In length framing the reply's length comes first.
    #[test]
    fn replies_are_streamed_and_stamped_when_their_message_began() {
        let mut responder = Responder::new(Framing::length_prefixed(), Arc::new(crate::stamp::UnixTime));
        let mut out = Vec::new();
        responder.receive(&[0, 0, 0, 5, b'a', b'b'], at(7, 0), &mut out).expect("valid");
        // "[7.000000] " is 11 bytes: the reply is 16 bytes long.
        assert_eq!(out, b"\0\0\0\x10[7.000000] ab");
        assert!(responder.in_message());
        out.clear();
        responder.receive(b"cde", at(8, 0), &mut out).expect("valid");
        assert_eq!(out, b"cde");
        assert!(!responder.in_message());
        assert_eq!(responder.summary().messages, 1);
        // Input ending mid-frame: the reply stays cut short, the error says so.
        out.clear();
        responder.receive(&[0, 0, 0, 9, b'x'], at(9, 0), &mut out).expect("valid");
        let r = responder.finish(at(9, 0), &mut out);
        assert!(
            matches!(r, Err(Error::Protocol(ProtocolError::TruncatedFrame { expected: 13, received: 5 }))),
            "{r:?}"
        );
        assert_eq!(out, b"\0\0\0\x14[9.000000] x");
    }

    /// Output per call is bounded by the input: a 16 MiB frame fed in 8 KiB
    /// reads never makes one call's output exceed a read plus the reply's
    /// length and header, and the responder holds nothing of it.
    #[test]
    fn output_per_call_is_bounded_by_the_input_whatever_the_message_size() {
        const BIG: usize = 16 * 1024 * 1024;
        const READ: usize = 8 * 1024;
        for framing in [Framing::length_prefixed(), Framing::line(), Framing::Line { max_line: BIG }] {
            let mut responder = Responder::new(framing, Arc::new(Ctime::utc()));
            let mut input = Vec::with_capacity(BIG + 4);
            framing.frame_message(&vec![b'x'; BIG], &mut input);
            let (mut out, mut total, mut largest) = (Vec::with_capacity(READ + 64), 0, 0);
            let mut result = Ok(0);
            for read in input.chunks(READ) {
                out.clear();
                result = responder.receive(read, at(0, 0), &mut out);
                largest = largest.max(out.len());
                total += out.len();
                if result.is_err() {
                    break;
                }
            }
            assert!(largest <= READ + 4 + 27, "{framing}: {largest} bytes out in one call");
            assert!(out.capacity() <= READ + 64, "{framing}: out grew to {}", out.capacity());
            match framing {
                Framing::Line { max_line } if max_line < BIG => {
                    assert!(matches!(result, Err(Error::Protocol(ProtocolError::LineTooLong { .. }))));
                    assert_eq!(total, 27 + max_line, "{framing}: answered up to the limit");
                }
                _ => {
                    assert_eq!(result.ok(), Some(1), "{framing}");
                    assert_eq!(total, input.len() + 27, "{framing}");
                }
            }
        }
    }

    #[test]
    fn reply_to_answers_one_whole_message_with_the_same_stamp_cache() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        let counting = stamp::from_fn(|now: SystemTime, out: &mut String| {
            CALLS.fetch_add(1, Ordering::Relaxed);
            Ctime::utc().write_stamp(now, out);
        });
        // The framing does not matter: the reply is unframed.
        let mut responder = Responder::new(Framing::length_prefixed(), Arc::new(counting));
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let mut observer = |m: Fragment<'_>| seen.push((m.bytes().to_vec(), m.is_first(), m.is_last()));
        responder.reply_to_observed(b"one", at(0, 1), &mut out, &mut observer).expect("valid");
        responder.reply_to(b"", at(0, 1), &mut out).expect("valid");
        assert_eq!(CALLS.load(Ordering::Relaxed), 1, "the same instant reuses the text");
        responder.reply_to(b"2", at(0, 2), &mut out).expect("valid");
        assert_eq!(CALLS.load(Ordering::Relaxed), 2, "exact stamps are made per instant");
        let header = b"[Thu Jan  1 00:00:00 1970] ";
        assert_eq!(out, [&header[..], b"one", header, header, b"2"].concat());
        assert_eq!(seen, [(b"one".to_vec(), true, true)]);
        assert_eq!(responder.summary(), Summary { messages: 3, bytes_in: 4, bytes_out: out.len() as u64 });
        assert!(!responder.in_message());

        let bad = stamp::from_fn(|_: SystemTime, out: &mut String| out.push_str("a]b"));
        let mut responder = Responder::new(Framing::chunk(), Arc::new(bad));
        out.clear();
        let r = responder.reply_to(b"x", at(0, 0), &mut out);
        assert!(matches!(r, Err(Error::Stamp { .. })), "{r:?}");
        assert!(out.is_empty());
    }

    /// Whole lines go through the responder's quick path when a read holds
    /// them: replies, fragments, counts and errors are the same as when
    /// every byte comes alone (where lines end only through the decoder's events).
    #[test]
    fn whole_lines_at_once_answer_as_byte_by_byte() {
        let inputs: [&[u8]; 6] = [
            b"one\ntwo\r\n\n\r\nthr\ree\nhalf",
            b"\r\r\n\r\nx\r",
            b"12345678\n123456789\n",
            b"12345678\r\n1234\r5678\r\n",
            b"short\n123456789\nnever seen\n",
            b"\n\n\n",
        ];
        let run = |input: &[u8], cut: usize| {
            let mut responder = Responder::new(Framing::Line { max_line: 8 }, Arc::new(Ctime::utc()));
            let (mut out, mut fragments) = (Vec::new(), Vec::new());
            let mut seen = |f: Fragment<'_>| fragments.push((f.bytes().to_vec(), f.offset(), f.is_last()));
            let mut result = Ok(0);
            for read in input.chunks(cut) {
                result = responder.receive_observed(read, at(1_359_885_618, 0), &mut out, &mut seen);
                if result.is_err() {
                    break;
                }
            }
            if result.is_ok() {
                result = responder.finish_observed(at(1_359_885_618, 0), &mut out, &mut seen);
            }
            // Fragments joined per message: byte by byte they come in pieces.
            let mut messages: Vec<(Vec<u8>, u64)> = Vec::new();
            for (bytes, offset, _) in &fragments {
                match messages.last_mut() {
                    Some((message, _)) if *offset > 0 => message.extend_from_slice(bytes),
                    _ => messages.push((bytes.clone(), *offset)),
                }
            }
            // Bytes in differ after an error: reads after it are not given.
            let summary = responder.summary();
            (out, messages, (summary.messages, summary.bytes_out), result.is_err())
        };
        for input in inputs {
            let whole = run(input, input.len());
            for cut in [1, 2, 3, 7] {
                assert_eq!(run(input, cut), whole, "{:?} in reads of {cut}", String::from_utf8_lossy(input));
            }
        }
        let (out, messages, summary, failed) = run(inputs[0], inputs[0].len());
        assert!(!failed);
        assert_eq!(summary.0, 6);
        assert_eq!(messages.len(), 6);
        assert!(out.starts_with(b"[Sun Feb  3 10:00:18 2013] one\n[Sun Feb  3 10:00:18 2013] two\r\n"), "{out:?}");
        let (out, _, summary, failed) = run(inputs[4], inputs[4].len());
        assert!(failed, "a line over the limit fails");
        assert_eq!(summary.0, 1);
        assert_eq!(out, b"[Sun Feb  3 10:00:18 2013] short\n[Sun Feb  3 10:00:18 2013] 12345678");
    }

    #[test]
    fn seconds_truncate_towards_the_past() {
        assert_eq!(truncate_to_second(at(5, 7)), at(5, 0));
        let before = SystemTime::UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(truncate_to_second(before), SystemTime::UNIX_EPOCH - Duration::from_secs(2));
    }
}
