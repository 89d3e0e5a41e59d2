//! The wire rules, below every other protocol module: what a stamp may be,
//! what a reply header looks like (`[STAMP] `) and how to parse one, what a
//! [`Framing`] may carry and how messages and replies are encoded in it.
//! The framing [`Decoder`](crate::framing::Splitter), the server core
//! ([`Responder`](crate::Responder)), the reply checker
//! ([`ReplyChecker`](crate::ReplyChecker)) and UDP all follow these rules
//! from here. Its items are public under [`framing`](crate::framing),
//! [`protocol`](crate::protocol) and [`reply`](crate::reply).

use std::fmt;
use std::str::FromStr;

use crate::bounds::Bound;
use crate::{Error, MalformedReason, MessageError, ProtocolError, StampError};

/// How messages are delimited on a stream, with the limit that bounds each.
///
/// ```
/// use stamp_echo::Framing;
///
/// let framing: Framing = "line".parse()?;
/// assert_eq!(framing, Framing::Line { max_line: 64 * 1024 });
/// let tight = Framing::Line { max_line: 512 };
/// tight.validate()?;
/// assert_eq!(tight.to_string(), "line (max_line 512)");
/// assert!(Framing::Chunk { buffer_size: 0 }.validate().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Framing {
    /// Each read of up to `buffer_size` bytes is one message: the original's
    /// protocol. A UTF-8 character split across two reads is never split across
    /// two replies: its first bytes wait for the next read.
    Chunk {
        /// The most bytes read at once, so the longest message (default 1024,
        /// the original's `BUFSIZE`).
        buffer_size: usize,
    },
    /// A message ends with `\n` or `\r\n`; the reply carries the same ending.
    /// A last line without a newline at the end of input is answered without one.
    Line {
        /// The longest line, not counting its line ending (default 64 KiB).
        max_line: usize,
    },
    /// A 4-byte big-endian length, then the payload; replies are framed the same way.
    LengthPrefixed {
        /// The longest payload a peer may declare (default 16 MiB).
        max_frame: usize,
    },
}

impl Framing {
    /// The original's `BUFSIZE`.
    pub const DEFAULT_BUFFER_SIZE: usize = 1024;
    /// Default for [`Framing::Line`]'s `max_line`.
    pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
    /// Default for [`Framing::LengthPrefixed`]'s `max_frame`.
    pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

    /// Chunk framing with the default buffer size.
    pub const fn chunk() -> Framing {
        Framing::Chunk { buffer_size: Self::DEFAULT_BUFFER_SIZE }
    }

    /// Line framing with the default line limit.
    pub const fn line() -> Framing {
        Framing::Line { max_line: Self::DEFAULT_MAX_LINE }
    }

    /// Length-prefixed framing with the default frame limit.
    pub const fn length_prefixed() -> Framing {
        Framing::LengthPrefixed { max_frame: Self::DEFAULT_MAX_FRAME }
    }

    /// The framing's limit: `buffer_size`, `max_line` or `max_frame`.
    pub const fn limit(&self) -> usize {
        match *self {
            Framing::Chunk { buffer_size } => buffer_size,
            Framing::Line { max_line } => max_line,
            Framing::LengthPrefixed { max_frame } => max_frame,
        }
    }

    /// The same framing with another limit.
    pub const fn with_limit(self, limit: usize) -> Framing {
        match self {
            Framing::Chunk { .. } => Framing::Chunk { buffer_size: limit },
            Framing::Line { .. } => Framing::Line { max_line: limit },
            Framing::LengthPrefixed { .. } => Framing::LengthPrefixed { max_frame: limit },
        }
    }

    /// The range of [`Framing::Chunk`]'s `buffer_size`, with its default:
    /// 1 byte to 1 MiB, as it is allocated per connection.
    pub const BUFFER_SIZE: Bound<usize> =
        Bound::new("buffer_size", 1, MAX_BUFFER_SIZE).with_default(Self::DEFAULT_BUFFER_SIZE).with_unit("bytes");
    /// The range of [`Framing::Line`]'s `max_line`, with its default: at
    /// least 1 byte (it bounds what a peer may send, not memory: any larger
    /// value is fine).
    pub const MAX_LINE: Bound<usize> =
        Bound::new("max_line", 1, usize::MAX).with_default(Self::DEFAULT_MAX_LINE).with_unit("bytes");
    /// The range of [`Framing::LengthPrefixed`]'s `max_frame`, with its
    /// default: 1 byte up to what leaves room for a stamp within a 4-byte
    /// length (4 GiB less 512 bytes).
    pub const MAX_FRAME: Bound<usize> =
        Bound::new("max_frame", 1, MAX_FRAME_LIMIT).with_default(Self::DEFAULT_MAX_FRAME).with_unit("bytes");

    /// The bound of this framing's [`limit`](Framing::limit):
    /// [`BUFFER_SIZE`](Framing::BUFFER_SIZE), [`MAX_LINE`](Framing::MAX_LINE)
    /// or [`MAX_FRAME`](Framing::MAX_FRAME).
    pub const fn bound(&self) -> Bound<usize> {
        match self {
            Framing::Chunk { .. } => Self::BUFFER_SIZE,
            Framing::Line { .. } => Self::MAX_LINE,
            Framing::LengthPrefixed { .. } => Self::MAX_FRAME,
        }
    }

    /// Checks the limit is within its [`bound`](Framing::bound), as
    /// [`Builder::build`](crate::server::Builder::build) and
    /// [`EchoClient::new`](crate::EchoClient::new) do.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the setting, the value and its range.
    pub fn validate(&self) -> Result<(), Error> {
        self.bound().check(self.limit())?;
        Ok(())
    }

    /// Appends the framed reply `[stamp] message` (plus `ending` in line
    /// framing, plus the length prefix in length-prefixed framing) to `out`.
    ///
    /// `stamp` must already be valid (see [`crate::protocol::validate_stamp`]).
    pub fn encode_reply(&self, stamp: &str, message: &[u8], ending: LineEnding, out: &mut Vec<u8>) {
        self.encode_parts([b"[", stamp.as_bytes(), b"] ", message], ending, out);
    }

    /// Appends the reply body made of `parts`, framed, then `ending`.
    fn encode_parts<const N: usize>(&self, parts: [&[u8]; N], ending: LineEnding, out: &mut Vec<u8>) {
        let body_len: usize = parts.iter().map(|part| part.len()).sum();
        if let Framing::LengthPrefixed { .. } = self {
            // The length fits: message <= max_frame <= MAX_FRAME_LIMIT and a
            // valid stamp is at most 255 bytes.
            let len = u32::try_from(body_len).unwrap_or(u32::MAX);
            out.reserve(4 + body_len);
            out.extend_from_slice(&len.to_be_bytes());
        } else {
            out.reserve(body_len + 2);
        }
        for part in parts {
            out.extend_from_slice(part);
        }
        // Constant-size copies: no call to memcpy for one or two bytes.
        match ending {
            LineEnding::None => {}
            LineEnding::Lf => out.push(b'\n'),
            LineEnding::CrLf => out.extend_from_slice(b"\r\n"),
        }
    }

    /// Appends `message` framed for sending to a server (the client's side).
    ///
    /// # Errors
    ///
    /// [`Error::Message`], appending nothing, when the framing cannot carry
    /// `message` as one message with one reply: empty or ending inside a UTF-8
    /// character in chunk framing, with a newline or a final CR in line framing,
    /// over `max_line` or `max_frame`.
    pub fn encode_message(&self, message: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        check_sendable(*self, message)?;
        self.frame_message(message, out);
        Ok(())
    }

    /// [`encode_message`](Framing::encode_message) without the check: the
    /// caller has made it.
    pub(crate) fn frame_message(&self, message: &[u8], out: &mut Vec<u8>) {
        match self {
            Framing::Chunk { .. } => out.extend_from_slice(message),
            Framing::Line { .. } => {
                out.extend_from_slice(message);
                out.push(b'\n');
            }
            Framing::LengthPrefixed { .. } => {
                let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(message);
            }
        }
    }
}

/// The largest chunk `buffer_size` and server `read_buffer_size`: the read
/// buffer each connection allocates (see [`Framing::BUFFER_SIZE`]).
pub(crate) const MAX_BUFFER_SIZE: usize = 1024 * 1024;

/// The largest `max_frame`: a reply adds `[`, `] ` and up to 255 stamp bytes,
/// and must still fit in a 4-byte length.
const MAX_FRAME_LIMIT: usize = u32::MAX as usize - 512;

impl Default for Framing {
    /// [`Framing::chunk`], the original's protocol.
    fn default() -> Self {
        Framing::chunk()
    }
}

impl FromStr for Framing {
    type Err = UnknownFraming;
    /// `chunk`, `line` or `length`, each with its default limit.
    ///
    /// # Errors
    ///
    /// [`UnknownFraming`] for any other name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "chunk" => Ok(Framing::chunk()),
            "line" => Ok(Framing::line()),
            "length" | "length-prefixed" => Ok(Framing::length_prefixed()),
            _ => Err(UnknownFraming { given: s.to_owned() }),
        }
    }
}

/// A name that is not a [`Framing`]'s.
///
/// ```
/// use stamp_echo::Framing;
///
/// let err = "lines".parse::<Framing>().unwrap_err();
/// assert_eq!(err.given(), "lines");
/// assert_eq!(err.to_string(), r#"unknown framing "lines": expected chunk, line or length"#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown framing {given:?}: expected chunk, line or length")]
pub struct UnknownFraming {
    given: String,
}

impl UnknownFraming {
    /// The name given.
    pub fn given(&self) -> &str {
        &self.given
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Framing::Chunk { buffer_size } => write!(f, "chunk (buffer_size {buffer_size})"),
            Framing::Line { max_line } => write!(f, "line (max_line {max_line})"),
            Framing::LengthPrefixed { max_frame } => write!(f, "length (max_frame {max_frame})"),
        }
    }
}

/// The line ending a message came with, echoed on its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineEnding {
    /// No line ending: chunk and length-prefixed framing, and a last line at
    /// the end of input.
    None,
    /// `\n`
    Lf,
    /// `\r\n`
    CrLf,
}

impl LineEnding {
    /// The ending's bytes.
    pub const fn as_bytes(self) -> &'static [u8] {
        match self {
            LineEnding::None => b"",
            LineEnding::Lf => b"\n",
            LineEnding::CrLf => b"\r\n",
        }
    }
}

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

/// Checks one whole reply `[STAMP] MESSAGE` (a datagram's) against `message`
/// and returns its stamp.
///
/// # Errors
///
/// [`ProtocolError::MalformedReply`] when `reply` is not shaped `[STAMP] MESSAGE`;
/// [`ProtocolError::EchoMismatch`] when it does not echo `message`.
pub fn check_whole<'r>(reply: &'r [u8], message: &[u8]) -> Result<&'r str, Error> {
    let (stamp, echoed) = parse_reply(reply)?;
    if echoed != message {
        let offset = echoed.iter().zip(message).take_while(|(a, b)| a == b).count();
        return Err(Error::Protocol(ProtocolError::EchoMismatch { offset }));
    }
    Ok(stamp)
}

/// Fails if `framing` cannot carry `message` as one message with one reply
/// (see [`ReplyChecker::send`](crate::ReplyChecker::send)).
pub(crate) fn check_sendable(framing: Framing, message: &[u8]) -> Result<(), Error> {
    match framing {
        Framing::Chunk { .. } if message.is_empty() => Err(MessageError::EmptyChunk.into()),
        Framing::Chunk { .. } if complete_utf8_prefix(message) < message.len() => {
            Err(MessageError::SplitCharacter.into())
        }
        Framing::Line { .. } if find_newline(message).is_some() => Err(MessageError::Newline.into()),
        Framing::Line { .. } if message.ends_with(b"\r") => Err(MessageError::TrailingCr.into()),
        Framing::Line { max_line } if message.len() > max_line => {
            Err(MessageError::TooLong { len: message.len(), max: max_line }.into())
        }
        Framing::LengthPrefixed { max_frame } if message.len() > max_frame => {
            Err(MessageError::TooLong { len: message.len(), max: max_frame }.into())
        }
        _ => Ok(()),
    }
}

/// Bytes searched by hand before `memchr` takes over (see [`find_newline`]).
const NEWLINE_HEAD: usize = 32;

/// The position of the first `\n`. The first [`NEWLINE_HEAD`] bytes are
/// searched here, sixteen at a time: most lines are short, and a call into
/// `memchr` costs more than it saves on them (16-byte lines: 2.6x slower
/// through `memchr` alone in `benches/core.rs`). The rest goes to `memchr`
/// (SIMD: 4.5x faster on 64 KiB lines).
pub(crate) fn find_newline(bytes: &[u8]) -> Option<usize> {
    let head = &bytes[..bytes.len().min(NEWLINE_HEAD)];
    find_newline_by_words(head).or_else(|| memchr::memchr(b'\n', &bytes[head.len()..]).map(|at| head.len() + at))
}

/// The position of the first `\n`, sixteen bytes at a time.
fn find_newline_by_words(bytes: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = LO * b'\n' as u64;
    // Nonzero if a byte of `word` is `\n` (exact when there is none).
    let has_newline = |word: &[u8]| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let x = u64::from_le_bytes(bytes) ^ NL;
        x.wrapping_sub(LO) & !x & HI
    };
    let mut offset = 0;
    for pair in bytes.chunks_exact(16) {
        if has_newline(&pair[..8]) | has_newline(&pair[8..]) != 0 {
            break;
        }
        offset += 16;
    }
    bytes[offset..].iter().position(|&b| b == b'\n').map(|i| offset + i)
}

/// How many leading bytes of `bytes` can be sent without splitting a UTF-8
/// character: all of them, unless they end with the first bytes of a valid
/// multi-byte sequence, which are held back. Bytes that are not UTF-8 at all
/// are never held back; they are echoed as they are.
pub(crate) fn complete_utf8_prefix(bytes: &[u8]) -> usize {
    // An incomplete sequence is at most 3 bytes: look for its lead byte.
    let len = bytes.len();
    for back in 1..=len.min(3) {
        let start = len - back;
        let byte = bytes[start];
        if byte & 0xC0 == 0x80 {
            continue; // a continuation byte: the lead is further back
        }
        return match std::str::from_utf8(&bytes[start..]) {
            // An incomplete (not invalid) sequence has no error length.
            Err(e) if e.valid_up_to() == 0 && e.error_len().is_none() => start,
            _ => len,
        };
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framings_parse_validate_and_encode() {
        assert_eq!("line".parse(), Ok(Framing::line()));
        assert_eq!("length".parse(), Ok(Framing::length_prefixed()));
        assert!("lines".parse::<Framing>().is_err());
        for framing in [Framing::chunk(), Framing::line(), Framing::length_prefixed()] {
            let err = framing.with_limit(0).validate().expect_err("0 is too small");
            assert!(err.to_string().contains('0'), "{err}");
            assert!(framing.with_limit(1).validate().is_ok(), "{framing}");
        }
        assert!(Framing::chunk().with_limit(MAX_BUFFER_SIZE + 1).validate().is_err());
        assert!(Framing::length_prefixed().with_limit(usize::MAX).validate().is_err());
        assert!(Framing::length_prefixed().with_limit(MAX_FRAME_LIMIT).validate().is_ok());
        assert!(Framing::line().with_limit(usize::MAX).validate().is_ok());
        let mut out = Vec::new();
        Framing::length_prefixed().encode_reply("T", b"hi", LineEnding::None, &mut out);
        assert_eq!(out, b"\0\0\0\x06[T] hi");
        out.clear();
        Framing::line().encode_reply("T", b"hi", LineEnding::CrLf, &mut out);
        assert_eq!(out, b"[T] hi\r\n");
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
}
