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
use crate::framing::{Decoder, Framing, LineEnding};
use crate::stamp::{Granularity, Stamp};
use crate::{MalformedReason, ProtocolError, StampError};

/// The longest stamp text the protocol carries, in bytes.
pub const MAX_STAMP_LEN: usize = 255;

/// Checks that `stamp` can stand between the brackets of a reply.
///
/// # Errors
///
/// [`Error::Stamp`] for a stamp with `]`, CR or LF, or over [`MAX_STAMP_LEN`] bytes.
pub fn validate_stamp(stamp: &str) -> Result<(), Error> {
    let bad = stamp.len() > MAX_STAMP_LEN || stamp.bytes().any(|b| matches!(b, b']' | b'\r' | b'\n'));
    if bad {
        return Err(StampError::new(stamp).into());
    }
    Ok(())
}

/// Appends the reply `[stamp] message` to `out`, unframed: the form of a
/// datagram reply, or of a chunk-framing reply.
pub(crate) fn write_reply(stamp: &str, message: &[u8], out: &mut Vec<u8>) {
    Framing::chunk().encode_reply(stamp, message, LineEnding::None, out);
}

/// Splits one whole reply `[STAMP] MESSAGE` into its stamp and message.
///
/// ```
/// use stamp_echo::protocol::parse_reply;
/// assert_eq!(parse_reply(b"[Sun Feb  3 10:00:18 2013] hi")?, ("Sun Feb  3 10:00:18 2013", &b"hi"[..]));
/// # Ok::<(), stamp_echo::Error>(())
/// ```
///
/// # Errors
///
/// [`ProtocolError::MalformedReply`] when `reply` is not of that shape.
pub fn parse_reply(reply: &[u8]) -> Result<(&str, &[u8]), Error> {
    match parse_header(reply) {
        Header::Complete { stamp, len } => Ok((stamp, &reply[len..])),
        Header::Incomplete => Err(Error::Protocol(ProtocolError::MalformedReply(MalformedReason::EndsInsideStamp))),
        Header::Invalid(why) => Err(Error::Protocol(ProtocolError::MalformedReply(why))),
    }
}

/// The result of looking for `[STAMP] ` at the start of some bytes.
pub(crate) enum Header<'a> {
    /// A whole header of `len` bytes.
    Complete { stamp: &'a str, len: usize },
    /// Could still become a header with more bytes.
    Incomplete,
    /// Cannot be a header.
    Invalid(MalformedReason),
}

pub(crate) fn parse_header(bytes: &[u8]) -> Header<'_> {
    match bytes.first() {
        None => return Header::Incomplete,
        Some(b'[') => {}
        Some(_) => return Header::Invalid(MalformedReason::NoOpenBracket),
    }
    let body = &bytes[1..];
    let window = &body[..body.len().min(MAX_STAMP_LEN + 1)];
    let Some(close) = window.iter().position(|&b| matches!(b, b']' | b'\r' | b'\n')) else {
        return if window.len() > MAX_STAMP_LEN {
            Header::Invalid(MalformedReason::StampTooLong)
        } else {
            Header::Incomplete
        };
    };
    if body[close] != b']' {
        return Header::Invalid(MalformedReason::LineBreakInStamp);
    }
    let Ok(stamp) = std::str::from_utf8(&body[..close]) else {
        return Header::Invalid(MalformedReason::StampNotUtf8);
    };
    match body.get(close + 1) {
        None => Header::Incomplete,
        Some(b' ') => Header::Complete { stamp, len: close + 3 },
        Some(_) => Header::Invalid(MalformedReason::NoSpaceAfterStamp),
    }
}

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
    /// Called with each fragment of each message, before its reply is written.
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

/// One connection's protocol state: a [`Decoder`] for its framing and the
/// last stamp text, reused while it is still current.
///
/// Feed it every read with [`receive`](Responder::receive) and the end of
/// input with [`finish`](Responder::finish); it appends the replies to a
/// buffer you own and write out. In steady state it allocates nothing: the
/// stamp text is formatted into a buffer it keeps, once a second for stamps of
/// [`Granularity::Second`], once per call otherwise.
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, SystemTime};
/// use stamp_echo::{Error, Framing, ProtocolError, Responder, stamp::Ctime};
///
/// let mut responder = Responder::new(Framing::Line { max_line: 8 }, Arc::new(Ctime::utc()));
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_359_885_618);
/// let mut out = Vec::new();
/// let err = responder.receive(b"hi\nthis line is too long\n", now, &mut out).unwrap_err();
/// assert!(matches!(err, Error::Protocol(ProtocolError::LineTooLong { max: 8 })));
/// // The reply to the message before the error is there, to be written.
/// assert_eq!(out, b"[Sun Feb  3 10:00:18 2013] hi\n");
/// ```
pub struct Responder {
    decoder: Decoder,
    stamp: Arc<dyn Stamp>,
    granularity: Granularity,
    /// The instant `text` was made for (rounded down to the second for
    /// [`Granularity::Second`]); `None` before the first message.
    stamped: Option<SystemTime>,
    text: String,
    /// `[text] `, the start of every reply.
    header: Vec<u8>,
    summary: Summary,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("framing", &self.decoder.framing())
            .field("granularity", &self.granularity)
            .field("stamp_text", &self.text)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// A responder for one connection.
    pub fn new(framing: Framing, stamp: Arc<dyn Stamp>) -> Responder {
        let granularity = stamp.granularity();
        Responder {
            decoder: Decoder::new(framing),
            stamp,
            granularity,
            stamped: None,
            text: String::new(),
            header: Vec::new(),
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

    /// Answers the messages completed by `input` (one read), stamped `now`,
    /// appending the replies to `out`. Returns how many messages were answered.
    ///
    /// On error, the replies to every message before the error are in `out`:
    /// write them before closing the connection.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the input breaks the framing ([`ProtocolError::LineTooLong`],
    /// [`ProtocolError::FrameTooLarge`]); [`Error::Stamp`] when the stamp formatter produces text a reply
    /// cannot carry. The responder must not be used again after an error.
    pub fn receive(&mut self, input: &[u8], now: SystemTime, out: &mut Vec<u8>) -> Result<usize, Error> {
        self.receive_observed(input, now, out, &mut ())
    }

    /// [`receive`](Responder::receive), showing each message to `observer`.
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

    /// Ends the input: answers a last message held back (a line without a
    /// newline, the start of a UTF-8 character), or reports a truncated frame.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::TruncatedFrame`] when the input ended inside a frame; [`Error::Stamp`] as for
    /// [`receive`](Responder::receive).
    pub fn finish(&mut self, now: SystemTime, out: &mut Vec<u8>) -> Result<usize, Error> {
        self.finish_observed(now, out, &mut ())
    }

    /// [`finish`](Responder::finish), showing the last message to `observer`.
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

    /// Runs the decoder on `input` (`None`: the end of input) with a sink that
    /// stamps and frames each message.
    fn answer<O: Observer + ?Sized>(
        &mut self,
        input: Option<&[u8]>,
        now: SystemTime,
        out: &mut Vec<u8>,
        observer: &mut O,
    ) -> Result<usize, Error> {
        let framing = self.decoder.framing();
        let start = out.len();
        let mut count = 0;
        let Responder { decoder, stamp, granularity, stamped, text, header, .. } = self;
        // Every message of one call is stamped `now`: check the stamp once,
        // at the first message.
        let mut current = false;
        let mut sink = |message: &[u8], ending: LineEnding| {
            if !current {
                let before = *stamped;
                refresh_stamp(stamp.as_ref(), *granularity, now, stamped, text)?;
                if *stamped != before {
                    header.clear();
                    header.push(b'[');
                    header.extend_from_slice(text.as_bytes());
                    header.extend_from_slice(b"] ");
                }
                current = true;
            }
            observer.message(Fragment::new(message, 0, true));
            framing.encode_stamped(header, message, ending, out);
            count += 1;
            Ok(())
        };
        let result = match input {
            Some(input) => decoder.decode(input, &mut sink),
            None => decoder.finish(&mut sink),
        };
        self.summary.messages += count as u64;
        self.summary.bytes_out += (out.len() - start) as u64;
        result.map(|()| count)
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
            framing.encode_message("你好".as_bytes(), &mut input).expect("sendable");
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
    fn replies_before_an_error_are_kept() {
        let mut responder = Responder::new(Framing::Line { max_line: 3 }, Arc::new(Ctime::utc()));
        let mut out = Vec::new();
        let r = responder.receive(b"ab\ntoo long\n", at(0, 0), &mut out);
        assert!(matches!(r, Err(Error::Protocol(ProtocolError::LineTooLong { max: 3 }))));
        assert_eq!(out, b"[Thu Jan  1 00:00:00 1970] ab\n");
        assert_eq!(responder.summary().messages, 1);
    }

    #[test]
    fn observer_sees_each_message() {
        let mut responder = Responder::new(Framing::line(), Arc::new(Ctime::utc()));
        let mut seen = Vec::new();
        let mut observer = |m: Fragment<'_>| seen.push(m.bytes().to_vec());
        let mut out = Vec::new();
        responder.receive_observed(b"one\ntw", at(0, 0), &mut out, &mut observer).expect("valid");
        responder.finish_observed(at(0, 0), &mut out, &mut observer).expect("valid");
        assert_eq!(seen, [b"one".to_vec(), b"tw".to_vec()]);
    }

    #[test]
    fn headers_parse_strictly() {
        assert!(matches!(parse_header(b"[T] x"), Header::Complete { stamp: "T", len: 4 }));
        assert!(matches!(parse_header(b"[T]"), Header::Incomplete));
        assert!(matches!(parse_header(b"[T"), Header::Incomplete));
        assert!(matches!(parse_header(b""), Header::Incomplete));
        assert!(matches!(parse_header(b"T] x"), Header::Invalid(_)));
        assert!(matches!(parse_header(b"[T]x"), Header::Invalid(_)));
        assert!(matches!(parse_header(b"[T\n] x"), Header::Invalid(_)));
        let long = format!("[{}", "x".repeat(MAX_STAMP_LEN + 1));
        assert!(matches!(parse_header(long.as_bytes()), Header::Invalid(_)));
        assert!(parse_reply(b"[T] \xff").is_ok());
        assert!(parse_reply(b"no stamp").is_err());
    }

    #[test]
    fn seconds_truncate_towards_the_past() {
        assert_eq!(truncate_to_second(at(5, 7)), at(5, 0));
        let before = SystemTime::UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(truncate_to_second(before), SystemTime::UNIX_EPOCH - Duration::from_secs(2));
    }
}
