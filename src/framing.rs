//! Framing: what "a message" is on a byte stream, and how a reply is framed.
//!
//! TCP carries bytes, not messages. The original tutorial treats whatever one
//! `recv(1024)` returns as a message; that is [`Framing::Chunk`], kept as the
//! default so the original's client works unchanged. Two framings with real
//! message boundaries are offered beside it.
//!
//! | framing | a message is | the reply is | limit (default) |
//! |---|---|---|---|
//! | [`Chunk`](Framing::Chunk) | the bytes of one read | `[STAMP] MESSAGE` | `buffer_size` (1024) bytes per read |
//! | [`Line`](Framing::Line) | bytes up to `\n` or `\r\n` | `[STAMP] MESSAGE` + the same line ending | `max_line` (64 KiB) without the ending |
//! | [`LengthPrefixed`](Framing::LengthPrefixed) | a 4-byte big-endian length, then that many bytes | framed the same way | `max_frame` (16 MiB) |
//!
//! Every limit is checked before anything is buffered beyond it: an endless
//! line fails once `max_line` bytes have no newline, and a length prefix over
//! `max_frame` fails from its four bytes alone.
//!
//! The [`Decoder`] does the splitting without I/O and without allocating per
//! message: it keeps only the unfinished tail of the input.

use std::fmt;
use std::str::FromStr;

use crate::Error;
use crate::ProtocolError;
use crate::error::ConfigError;

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

    /// Checks the limit is usable: a chunk buffer of 1 byte to 1 MiB (it is
    /// allocated per connection), and a frame limit that leaves room for a
    /// stamp within a 4-byte length.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the setting and the value out of range.
    pub fn validate(&self) -> Result<(), Error> {
        match *self {
            Framing::Chunk { buffer_size } if !(1..=MAX_BUFFER_SIZE).contains(&buffer_size) => {
                Err(ConfigError::new("buffer_size", buffer_size, "1 to 1048576 bytes").into())
            }
            Framing::LengthPrefixed { max_frame } if max_frame > MAX_FRAME_LIMIT => {
                Err(ConfigError::new("max_frame", max_frame, "at most 4 GiB minus 512 bytes").into())
            }
            _ => Ok(()),
        }
    }

    /// Appends the framed reply `[stamp] message` (plus `ending` in line
    /// framing, plus the length prefix in length-prefixed framing) to `out`.
    ///
    /// `stamp` must already be valid (see [`crate::protocol::validate_stamp`]).
    pub fn encode_reply(&self, stamp: &str, message: &[u8], ending: LineEnding, out: &mut Vec<u8>) {
        self.encode_parts([b"[", stamp.as_bytes(), b"] ", message], ending, out);
    }

    /// [`encode_reply`](Framing::encode_reply) with the header `[STAMP] `
    /// already built, as the protocol core keeps it: fewer copies per message.
    #[inline]
    pub(crate) fn encode_stamped(&self, header: &[u8], message: &[u8], ending: LineEnding, out: &mut Vec<u8>) {
        self.encode_parts([header, message], ending, out);
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
        crate::reply::check_sendable(*self, message)?;
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

/// The largest chunk `buffer_size`: the read buffer each connection allocates.
const MAX_BUFFER_SIZE: usize = 1024 * 1024;

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

/// Splits a byte stream into messages, without I/O.
///
/// Feed it each read with [`Decoder::decode`] and the end of input with
/// [`Decoder::finish`]; it calls back with each whole message. It keeps only
/// the unfinished tail of the input (bounded by the limit: see
/// [`pending`](Decoder::pending)), and a
/// message that arrives whole in one read is handed over without being copied.
///
/// ```
/// use stamp_echo::framing::{Decoder, Framing, LineEnding};
///
/// let mut decoder = Decoder::new(Framing::line());
/// let mut seen = Vec::new();
/// let mut collect = |msg: &[u8], end: LineEnding| {
///     seen.push((msg.to_vec(), end));
///     Ok(())
/// };
/// decoder.decode(b"hel", &mut collect)?;
/// decoder.decode(b"lo\r\nwor", &mut collect)?;
/// decoder.finish(&mut collect)?;
/// assert_eq!(seen, [(b"hello".to_vec(), LineEnding::CrLf), (b"wor".to_vec(), LineEnding::None)]);
/// # Ok::<(), stamp_echo::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Decoder {
    framing: Framing,
    /// The unfinished tail: an incomplete UTF-8 sequence (chunk), a partial
    /// line, or a partial frame with its prefix.
    pending: Vec<u8>,
}

impl Decoder {
    /// A decoder for `framing`.
    pub fn new(framing: Framing) -> Decoder {
        Decoder { framing, pending: Vec::new() }
    }

    /// The framing this decoder splits.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Bytes held back waiting for the rest of their message. Never more than:
    ///
    /// - chunk: 3, the first bytes of a UTF-8 character;
    /// - line: `max_line + 1`, a line at the limit and a `\r` that may start
    ///   its `\r\n`;
    /// - length-prefixed: `max_frame + 3`, a frame one byte short of
    ///   complete, prefix included.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Decodes one read's worth of input, calling `on_message` for each whole
    /// message in it, in order.
    ///
    /// On an error (an over-long line or frame), the messages before it have
    /// been handed over, and the decoder must not be used again.
    /// An error returned by `on_message` stops decoding and is passed on.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::LineTooLong`] or [`ProtocolError::FrameTooLarge`] as soon as the input is certainly
    /// over the framing's limit; any error `on_message` returns.
    pub fn decode<F>(&mut self, input: &[u8], on_message: &mut F) -> Result<(), Error>
    where
        F: FnMut(&[u8], LineEnding) -> Result<(), Error>,
    {
        match self.framing {
            Framing::Chunk { .. } => self.decode_chunk(input, on_message),
            Framing::Line { max_line } => self.decode_lines(input, max_line, on_message),
            Framing::LengthPrefixed { max_frame } => self.decode_frames(input, max_frame, on_message),
        }
    }

    /// Ends the input: hands over what is held back, if it makes a message
    /// (the last line without a newline; the first bytes of an incomplete UTF-8
    /// character in chunk framing, echoed as they are), or fails with
    /// [`ProtocolError::TruncatedFrame`] for half a frame.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::TruncatedFrame`] when the input ends inside a frame; any error `on_message` returns.
    pub fn finish<F>(&mut self, on_message: &mut F) -> Result<(), Error>
    where
        F: FnMut(&[u8], LineEnding) -> Result<(), Error>,
    {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        match self.framing {
            // Held back, a line may be one byte over the limit if that byte
            // is a `\r` that could have started its `\r\n`; now it is content.
            Framing::Line { max_line } if pending.len() > max_line => {
                Err(Error::Protocol(ProtocolError::LineTooLong { max: max_line }))
            }
            Framing::Chunk { .. } | Framing::Line { .. } => on_message(&pending, LineEnding::None),
            Framing::LengthPrefixed { .. } => {
                let expected = match pending.get(..4) {
                    Some(prefix) => 4 + u64::from(read_prefix(prefix)),
                    None => 4,
                };
                Err(Error::Protocol(ProtocolError::TruncatedFrame { expected, received: pending.len() as u64 }))
            }
        }
    }

    fn decode_chunk<F>(&mut self, input: &[u8], on_message: &mut F) -> Result<(), Error>
    where
        F: FnMut(&[u8], LineEnding) -> Result<(), Error>,
    {
        if self.pending.is_empty() {
            let cut = complete_utf8_prefix(input);
            if cut > 0 {
                on_message(&input[..cut], LineEnding::None)?;
            }
            self.pending.extend_from_slice(&input[cut..]);
        } else {
            // A character's first bytes came in the last read: rare, so join
            // them with this read rather than complicate the common case.
            self.pending.extend_from_slice(input);
            let cut = complete_utf8_prefix(&self.pending);
            if cut > 0 {
                on_message(&self.pending[..cut], LineEnding::None)?;
            }
            self.pending.drain(..cut);
        }
        Ok(())
    }

    fn decode_lines<F>(&mut self, input: &[u8], max_line: usize, on_message: &mut F) -> Result<(), Error>
    where
        F: FnMut(&[u8], LineEnding) -> Result<(), Error>,
    {
        let mut rest = input;
        if !self.pending.is_empty() {
            match find_newline(rest) {
                Some(i) => {
                    self.pending.extend_from_slice(&rest[..=i]);
                    rest = &rest[i + 1..];
                    let line = std::mem::take(&mut self.pending);
                    let result = emit_line(&line, max_line, on_message);
                    self.pending = line;
                    self.pending.clear();
                    result?;
                }
                None => {
                    check_unfinished_line(self.pending.len() + rest.len(), &self.pending, rest, max_line)?;
                    self.pending.extend_from_slice(rest);
                    return Ok(());
                }
            }
        }
        while let Some(i) = find_newline(rest) {
            emit_line(&rest[..=i], max_line, on_message)?;
            rest = &rest[i + 1..];
        }
        check_unfinished_line(rest.len(), &[], rest, max_line)?;
        self.pending.extend_from_slice(rest);
        Ok(())
    }

    fn decode_frames<F>(&mut self, input: &[u8], max_frame: usize, on_message: &mut F) -> Result<(), Error>
    where
        F: FnMut(&[u8], LineEnding) -> Result<(), Error>,
    {
        let mut rest = input;
        if !self.pending.is_empty() {
            // Complete the prefix first, then the payload, from this read.
            if self.pending.len() < 4 {
                let take = (4 - self.pending.len()).min(rest.len());
                self.pending.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if self.pending.len() < 4 {
                    return Ok(());
                }
            }
            let len = checked_len(&self.pending[..4], max_frame)?;
            let have = self.pending.len() - 4;
            let take = (len - have).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() < 4 + len {
                return Ok(());
            }
            let frame = std::mem::take(&mut self.pending);
            let result = on_message(&frame[4..], LineEnding::None);
            self.pending = frame;
            self.pending.clear();
            result?;
        }
        while rest.len() >= 4 {
            let len = checked_len(&rest[..4], max_frame)?;
            if rest.len() - 4 < len {
                break;
            }
            on_message(&rest[4..4 + len], LineEnding::None)?;
            rest = &rest[4 + len..];
        }
        // What is left is an incomplete frame; its length (if known) is
        // within the limit, so keeping it stays within the limit.
        self.pending.extend_from_slice(rest);
        Ok(())
    }
}

/// Hands over one line that ends in `\n`, with its ending stripped.
#[inline]
fn emit_line<F>(line: &[u8], max_line: usize, on_message: &mut F) -> Result<(), Error>
where
    F: FnMut(&[u8], LineEnding) -> Result<(), Error>,
{
    let without_lf = &line[..line.len() - 1];
    let (content, ending) = match without_lf.strip_suffix(b"\r") {
        Some(content) => (content, LineEnding::CrLf),
        None => (without_lf, LineEnding::Lf),
    };
    if content.len() > max_line {
        return Err(Error::Protocol(ProtocolError::LineTooLong { max: max_line }));
    }
    on_message(content, ending)
}

/// Fails as soon as bytes without a newline are certainly over the limit: more
/// than `max_line`, unless the one extra byte is a `\r` that may start `\r\n`.
fn check_unfinished_line(total: usize, head: &[u8], tail: &[u8], max_line: usize) -> Result<(), Error> {
    let last = tail.last().or_else(|| head.last());
    let allowed = if last == Some(&b'\r') { max_line + 1 } else { max_line };
    if total > allowed {
        return Err(Error::Protocol(ProtocolError::LineTooLong { max: max_line }));
    }
    Ok(())
}

fn read_prefix(prefix: &[u8]) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&prefix[..4]);
    u32::from_be_bytes(bytes)
}

/// The payload length declared by a 4-byte prefix, if within `max_frame`.
fn checked_len(prefix: &[u8], max_frame: usize) -> Result<usize, Error> {
    let declared = read_prefix(prefix);
    match usize::try_from(declared) {
        Ok(len) if len <= max_frame => Ok(len),
        _ => Err(Error::Protocol(ProtocolError::FrameTooLarge { declared: u64::from(declared), max: max_frame })),
    }
}

/// The position of the first `\n`, sixteen bytes at a time.
pub(crate) fn find_newline(bytes: &[u8]) -> Option<usize> {
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

    type Seen = Vec<(Vec<u8>, LineEnding)>;

    fn run(framing: Framing, reads: &[&[u8]]) -> (Seen, Result<(), Error>) {
        let mut decoder = Decoder::new(framing);
        let mut seen = Vec::new();
        let mut sink = |m: &[u8], e: LineEnding| {
            seen.push((m.to_vec(), e));
            Ok(())
        };
        let mut result = Ok(());
        for read in reads {
            result = decoder.decode(read, &mut sink);
            if result.is_err() {
                return (seen, result);
            }
        }
        let result = result.and_then(|()| decoder.finish(&mut sink));
        (seen, result)
    }

    fn msgs(seen: &Seen) -> Vec<&[u8]> {
        seen.iter().map(|(m, _)| m.as_slice()).collect()
    }

    #[test]
    fn chunk_each_read_is_a_message() {
        let (seen, r) = run(Framing::chunk(), &[b"hi,server", b"two"]);
        assert!(r.is_ok());
        assert_eq!(msgs(&seen), [&b"hi,server"[..], b"two"]);
    }

    #[test]
    fn chunk_holds_back_a_split_utf8_character() {
        let ni = "你".as_bytes(); // e4 bd a0
        let (seen, r) = run(Framing::chunk(), &[&[b'a', ni[0]], &ni[1..2], &[ni[2], b'b']]);
        assert!(r.is_ok());
        assert_eq!(msgs(&seen), [&b"a"[..], "你b".as_bytes()]);
    }

    #[test]
    fn chunk_echoes_invalid_utf8_unchanged() {
        let (seen, r) = run(Framing::chunk(), &[b"\xff\xfe", b"ok\xc3"]);
        assert!(r.is_ok());
        // 0xc3 alone at the end of input is echoed as it is.
        assert_eq!(msgs(&seen), [&b"\xff\xfe"[..], b"ok", b"\xc3"]);
        // A lead byte followed by a non-continuation is invalid, not incomplete.
        assert_eq!(complete_utf8_prefix(b"a\xe4b"), 3);
        assert_eq!(complete_utf8_prefix(b"a\xe4\xbd"), 1);
        assert_eq!(complete_utf8_prefix(b"\xed\xa0"), 2); // surrogate: invalid
        assert_eq!(complete_utf8_prefix(b"\xf0\x9f\x98"), 0);
        assert_eq!(complete_utf8_prefix(b"\xf0\x9f\x98\x80"), 4);
    }

    #[test]
    fn line_keeps_endings_and_answers_a_last_unterminated_line() {
        let (seen, r) = run(Framing::line(), &[b"a\nb\r", b"\n\nlast"]);
        assert!(r.is_ok());
        assert_eq!(
            seen,
            [
                (b"a".to_vec(), LineEnding::Lf),
                (b"b".to_vec(), LineEnding::CrLf),
                (b"".to_vec(), LineEnding::Lf),
                (b"last".to_vec(), LineEnding::None),
            ]
        );
    }

    #[test]
    fn line_cr_without_lf_is_content() {
        let (seen, r) = run(Framing::line(), &[b"a\rb\n"]);
        assert!(r.is_ok());
        assert_eq!(msgs(&seen), [&b"a\rb"[..]]);
    }

    #[test]
    fn line_limit_is_exact_and_found_without_buffering_past_it() {
        let framing = Framing::Line { max_line: 4 };
        let (seen, r) = run(framing, &[b"abcd\r\n", b"abcd\n"]);
        assert!(r.is_ok());
        assert_eq!(msgs(&seen), [&b"abcd"[..], b"abcd"]);

        let (seen, r) = run(framing, &[b"ok\nabcde\n"]);
        assert_eq!(msgs(&seen), [&b"ok"[..]]);
        assert!(matches!(r, Err(Error::Protocol(ProtocolError::LineTooLong { max: 4 }))));

        // No newline at all: fails at the fifth byte, having kept at most four.
        let mut decoder = Decoder::new(framing);
        let mut sink = |_: &[u8], _: LineEnding| Ok(());
        for b in b"abcd" {
            decoder.decode(&[*b], &mut sink).expect("within the limit");
        }
        assert_eq!(decoder.pending(), 4);
        assert!(matches!(decoder.decode(b"e", &mut sink), Err(Error::Protocol(ProtocolError::LineTooLong { max: 4 }))));
    }

    #[test]
    fn length_prefixed_frames_across_reads() {
        let mut input = Vec::new();
        Framing::length_prefixed().encode_message(b"hello", &mut input).expect("sendable");
        Framing::length_prefixed().encode_message(b"", &mut input).expect("sendable");
        Framing::length_prefixed().encode_message("你好".as_bytes(), &mut input).expect("sendable");
        let reads: Vec<&[u8]> = input.chunks(3).collect();
        let (seen, r) = run(Framing::length_prefixed(), &reads);
        assert!(r.is_ok());
        assert_eq!(msgs(&seen), [&b"hello"[..], b"", "你好".as_bytes()]);
    }

    #[test]
    fn length_prefix_over_the_limit_fails_before_allocating() {
        let framing = Framing::LengthPrefixed { max_frame: 10 };
        let (seen, r) = run(framing, &[&[0, 0, 0, 1, b'x', 0xff, 0xff, 0xff, 0xff]]);
        assert_eq!(msgs(&seen), [&b"x"[..]]);
        assert!(matches!(r, Err(Error::Protocol(ProtocolError::FrameTooLarge { declared: 0xffff_ffff, max: 10 }))));
        let mut decoder = Decoder::new(framing);
        let r = decoder.decode(&[0, 0, 0, 11], &mut |_, _| Ok(()));
        assert!(matches!(r, Err(Error::Protocol(ProtocolError::FrameTooLarge { declared: 11, max: 10 }))));
        assert!(decoder.pending.capacity() < 11);
    }

    #[test]
    fn truncated_frame_at_end_of_input_is_an_error() {
        let (_, r) = run(Framing::length_prefixed(), &[&[0, 0, 0, 5, b'a', b'b']]);
        assert!(matches!(r, Err(Error::Protocol(ProtocolError::TruncatedFrame { expected: 9, received: 6 }))));
        let (_, r) = run(Framing::length_prefixed(), &[&[0, 0]]);
        assert!(matches!(r, Err(Error::Protocol(ProtocolError::TruncatedFrame { expected: 4, received: 2 }))));
    }

    #[test]
    fn find_newline_agrees_with_a_plain_search() {
        let mut bytes = [b'x'; 40];
        for at in 0..40 {
            bytes[at] = b'\n';
            assert_eq!(find_newline(&bytes[..]), Some(at));
            assert_eq!(find_newline(&bytes[at + 1..]), None);
            bytes[at] = 0x8a; // a byte with the high bit set must not match
        }
    }

    #[test]
    fn framings_parse_validate_and_encode() {
        assert_eq!("line".parse(), Ok(Framing::line()));
        assert_eq!("length".parse(), Ok(Framing::length_prefixed()));
        assert!("lines".parse::<Framing>().is_err());
        assert!(Framing::chunk().with_limit(0).validate().is_err());
        assert!(Framing::length_prefixed().with_limit(usize::MAX).validate().is_err());
        let mut out = Vec::new();
        Framing::length_prefixed().encode_reply("T", b"hi", LineEnding::None, &mut out);
        assert_eq!(out, b"\0\0\0\x06[T] hi");
        out.clear();
        Framing::line().encode_reply("T", b"hi", LineEnding::CrLf, &mut out);
        assert_eq!(out, b"[T] hi\r\n");
    }
}
