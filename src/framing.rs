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
//! Every limit is checked as the bytes stream: an endless line fails once
//! `max_line` bytes have no newline, and a length prefix over `max_frame`
//! fails from its four bytes alone.
//!
//! The [`Splitter`] does the splitting without I/O and without buffering: it is
//! a small state machine that hands each message's bytes over as they arrive
//! ([`Part`]: a message starts, its bytes, it ends) and keeps at most three
//! bytes across reads. The limits therefore bound what a peer may send, not
//! what a connection holds: memory per connection is its buffers, whatever
//! `max_line` and `max_frame` are.

pub use crate::wire::{Framing, LineEnding, UnknownFraming};

use crate::Error;
use crate::ProtocolError;
use crate::wire::{complete_utf8_prefix, find_newline};

/// What a [`Splitter`] reports as the bytes of a stream go by.
///
/// For each message: one [`Start`](Part::Start), any number of
/// [`Bytes`](Part::Bytes) (never empty), then one [`End`](Part::End) with
/// the message's last bytes (empty only for an empty message, or when the end
/// arrived alone, such as a newline in a read of its own). The bytes of all
/// three concatenated are the message, without its framing. A message that
/// arrives whole in one read is `Start` then a single `End` holding all of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part<'a> {
    /// A message begins: its first byte arrived (chunk, line), or its length
    /// prefix is complete and within the limit (length-prefixed).
    Start {
        /// The message's length when the framing declares it up front
        /// (length-prefixed framing); `None` otherwise.
        len: Option<u32>,
    },
    /// The next bytes of the message, with more to come. Never empty.
    Bytes(&'a [u8]),
    /// The message ends: its last bytes (possibly empty) and its line ending
    /// ([`LineEnding::None`] except in line framing).
    End {
        /// The message's last bytes.
        bytes: &'a [u8],
        /// The line ending that ended it.
        ending: LineEnding,
    },
}

/// Splits a byte stream into messages, without I/O and without buffering
/// them: a resumable, streaming state machine.
///
/// Feed it each read with [`Splitter::decode`] and the end of input with
/// [`Splitter::finish`]; it calls back with [`Part`]s as the bytes arrive: a
/// message's start, its bytes, its end. It never copies a message; across
/// reads it keeps only a few bytes ([`pending`](Splitter::pending)): the first
/// bytes of a UTF-8 character split by a read (chunk, at most 3), a `\r` that
/// may begin `\r\n` (line, 1), a partial 4-byte length prefix (length, at most
/// 3). Its size is therefore the same whatever `max_line` or `max_frame` are:
/// the limits bound what a peer may *send*, not what a connection holds.
///
/// Limits are enforced as the bytes stream: a line fails with
/// [`ProtocolError::LineTooLong`] as soon as `max_line` bytes had no newline (the
/// first `max_line` bytes have been handed over as [`Part::Bytes`] by then);
/// a length prefix over `max_frame` fails with [`ProtocolError::FrameTooLarge`] from
/// its four bytes alone; input ending mid-frame is [`ProtocolError::TruncatedFrame`].
///
/// ```
/// use stamp_echo::framing::{Splitter, Part, Framing, LineEnding};
///
/// let mut decoder = Splitter::new(Framing::line());
/// let mut seen = Vec::new();
/// let mut collect = |event: Part<'_>| {
///     seen.push(format!("{event:?}"));
///     Ok::<(), stamp_echo::Error>(())
/// };
/// decoder.decode(b"hel", &mut collect)?;
/// decoder.decode(b"lo\r\nwor", &mut collect)?;
/// decoder.finish(&mut collect)?;
/// assert_eq!(seen, [
///     "Start { len: None }",
///     "Bytes([104, 101, 108])",                   // "hel"
///     "End { bytes: [108, 111], ending: CrLf }", // "lo", "\r\n"
///     "Start { len: None }",
///     "Bytes([119, 111, 114])",                   // "wor"
///     "End { bytes: [], ending: None }",          // the end of input ends it
/// ]);
/// # Ok::<(), stamp_echo::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Splitter {
    framing: Framing,
    state: State,
}

/// Where a [`Splitter`] stands between two reads, one set of states per framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Chunk framing: `held[..len]` are the first bytes of a UTF-8 character
    /// cut by the end of the last read (`len == 0`: nothing held).
    Chunk { held: [u8; 3], len: u8 },
    /// Line framing, between lines.
    LineIdle,
    /// Line framing, inside a line: `len` content bytes handed over (at most
    /// `max_line`), and whether a `\r` that may begin `\r\n` is held back.
    InLine { len: usize, cr: bool },
    /// Length-prefixed framing, between frames.
    FrameIdle,
    /// Length-prefixed framing: `bytes[..have]` of a length prefix (1 to 3).
    Prefix { bytes: [u8; 4], have: u8 },
    /// Length-prefixed framing: inside the payload of a `len`-byte frame,
    /// `remaining` (at least 1) bytes still to come.
    Payload { len: u32, remaining: u32 },
}

/// Where the first newline of a line framing's input is, if known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Newline {
    /// Not known: search.
    Unknown,
    /// At this index.
    At(usize),
    /// There is none.
    None,
}

/// Where [`Splitter::decode_into`] hands a read over: events, as
/// [`Splitter::decode`] gives them, and whole lines at once.
pub(crate) trait Lines {
    /// One event, as [`Splitter::decode`]'s `on_event` sees it.
    ///
    /// # Errors
    ///
    /// Any: it stops decoding and is passed on.
    fn event(&mut self, event: Part<'_>) -> Result<(), Error>;

    /// Lines begin (at least one, whole or not) and whole ones follow.
    ///
    /// # Errors
    ///
    /// Any: it stops decoding and is passed on.
    fn begin(&mut self) -> Result<(), Error>;

    /// One whole line: its content (the events' `Start`, then `End` with
    /// these bytes), and the line as it came, with its ending.
    fn line(&mut self, content: &[u8], line: &[u8]);
}

impl Splitter {
    /// A decoder for `framing`.
    pub fn new(framing: Framing) -> Splitter {
        let state = match framing {
            Framing::Chunk { .. } => State::Chunk { held: [0; 3], len: 0 },
            Framing::Line { .. } => State::LineIdle,
            Framing::LengthPrefixed { .. } => State::FrameIdle,
        };
        Splitter { framing, state }
    }

    /// The framing this decoder splits.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Bytes held back, waiting for the next read to tell what they are. Never
    /// more than 3 (chunk: the first bytes of a UTF-8 character; length: a
    /// partial prefix) or 1 (line: a `\r` that may begin `\r\n`), whatever the
    /// limits and message sizes.
    pub fn pending(&self) -> usize {
        match self.state {
            State::Chunk { len, .. } => usize::from(len),
            State::InLine { cr, .. } => usize::from(cr),
            State::Prefix { have, .. } => usize::from(have),
            State::LineIdle | State::FrameIdle | State::Payload { .. } => 0,
        }
    }

    /// Whether the input so far ends inside a message: a line without its
    /// newline, a frame (or its prefix) not complete, the first bytes of a
    /// UTF-8 character in chunk framing.
    pub fn in_message(&self) -> bool {
        match self.state {
            State::Chunk { len, .. } => len > 0,
            State::InLine { .. } | State::Prefix { .. } | State::Payload { .. } => true,
            State::LineIdle | State::FrameIdle => false,
        }
    }

    /// Line framing, between messages: hands each whole line at the start of
    /// `input` to `on_line` as its content (without the line ending) and the
    /// line as it came (with it), and returns how many bytes it took, and
    /// whether the rest is known to hold no newline (then
    /// [`decode_rest`](Splitter::decode_rest) need not look again). It stops
    /// at a line not ended within `input`, or over `max_line`: those are left
    /// for [`decode`](Splitter::decode), which hands over their beginning and
    /// keeps or fails as always. Takes nothing in another framing or inside a
    /// line.
    ///
    /// The events [`decode`](Splitter::decode) would give for the lines taken
    /// are `Start`, then `End` with the content and its ending: this is the
    /// same, without an event per step, for the responder's common case.
    pub(crate) fn whole_lines(&self, input: &[u8], mut on_line: impl FnMut(&[u8], &[u8])) -> (usize, bool) {
        let (Framing::Line { max_line }, State::LineIdle) = (self.framing, self.state) else { return (0, false) };
        let mut taken = 0;
        while taken < input.len() {
            let Some(i) = find_newline(&input[taken..]) else { return (taken, true) };
            let line = &input[taken..=taken + i];
            let content = match line[..i].strip_suffix(b"\r") {
                Some(content) => content,
                None => &line[..i],
            };
            if content.len() > max_line {
                break;
            }
            on_line(content, line);
            taken += i + 1;
        }
        (taken, false)
    }

    /// [`decode`](Splitter::decode), handing over whole lines at once in line
    /// framing: the end of a line begun in an earlier read as events, then
    /// [`Lines::begin`] and every whole line after it with [`Lines::line`],
    /// then what is left (a line not ended in `input`) as events again.
    pub(crate) fn decode_into<L: Lines>(&mut self, input: &[u8], sink: &mut L) -> Result<(), Error> {
        if !matches!(self.framing, Framing::Line { .. }) {
            return self.decode(input, &mut |event| sink.event(event));
        }
        let mut rest = input;
        if self.state != State::LineIdle {
            match find_newline(rest) {
                Some(i) => {
                    self.decode_rest(&rest[..=i], Newline::At(i), &mut |event| sink.event(event))?;
                    rest = &rest[i + 1..];
                }
                None => return self.decode_rest(rest, Newline::None, &mut |event| sink.event(event)),
            }
        }
        if rest.is_empty() {
            return Ok(());
        }
        sink.begin()?;
        let (taken, no_newline) = self.whole_lines(rest, |content, line| sink.line(content, line));
        let known = if no_newline { Newline::None } else { Newline::Unknown };
        self.decode_rest(&rest[taken..], known, &mut |event| sink.event(event))
    }

    /// Decodes one read's worth of input, calling `on_event` as messages
    /// start, continue and end in it, in order.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::LineTooLong`] or [`ProtocolError::FrameTooLarge`] (converted into `E`)
    /// for input over the framing's limit: the events before it have been
    /// handed over, including the start and first bytes of the bad message,
    /// and the decoder must not be used again. An error returned by `on_event`
    /// stops decoding and is passed on.
    pub fn decode<E, F>(&mut self, input: &[u8], on_event: &mut F) -> Result<(), E>
    where
        E: From<Error>,
        F: FnMut(Part<'_>) -> Result<(), E>,
    {
        self.decode_rest(input, Newline::Unknown, on_event)
    }

    /// [`decode`](Splitter::decode), told where `input`'s first newline is when
    /// that is known already (line framing: then it is not searched again).
    pub(crate) fn decode_rest<E, F>(&mut self, input: &[u8], newline: Newline, on_event: &mut F) -> Result<(), E>
    where
        E: From<Error>,
        F: FnMut(Part<'_>) -> Result<(), E>,
    {
        match self.framing {
            Framing::Chunk { .. } => self.decode_chunk(input, on_event),
            Framing::Line { max_line } => self.decode_lines(input, max_line, newline, on_event),
            Framing::LengthPrefixed { max_frame } => self.decode_frames(input, max_frame, on_event),
        }
    }

    /// Ends the input: ends a message in progress if it can end here (a last
    /// line without a newline; the first bytes of an incomplete UTF-8 character
    /// in chunk framing, echoed as they are).
    ///
    /// # Errors
    ///
    /// [`ProtocolError::TruncatedFrame`] for input ending inside a frame or its
    /// prefix; [`ProtocolError::LineTooLong`] for a last line at the limit followed by
    /// a `\r` (which, with no `\n` after it, is content); or an error returned
    /// by `on_event`.
    pub fn finish<E, F>(&mut self, on_event: &mut F) -> Result<(), E>
    where
        E: From<Error>,
        F: FnMut(Part<'_>) -> Result<(), E>,
    {
        let state = self.state;
        self.state = Splitter::new(self.framing).state;
        match state {
            State::Chunk { held, len } if len > 0 => {
                on_event(Part::Start { len: None })?;
                on_event(Part::End { bytes: &held[..usize::from(len)], ending: LineEnding::None })
            }
            State::InLine { len, cr } => {
                let bytes: &[u8] = if cr { b"\r" } else { b"" };
                if cr && len >= self.framing.limit() {
                    return Err(Error::Protocol(ProtocolError::LineTooLong { max: self.framing.limit() }).into());
                }
                on_event(Part::End { bytes, ending: LineEnding::None })
            }
            State::Prefix { have, .. } => {
                Err(Error::Protocol(ProtocolError::TruncatedFrame { expected: 4, received: u64::from(have) }).into())
            }
            State::Payload { len, remaining } => {
                let expected = 4 + u64::from(len);
                Err(Error::Protocol(ProtocolError::TruncatedFrame {
                    expected,
                    received: expected - u64::from(remaining),
                })
                .into())
            }
            State::Chunk { .. } | State::LineIdle | State::FrameIdle => Ok(()),
        }
    }

    /// Chunk framing: each read is a message, less the first bytes of a
    /// character it ends with (held for the next read), plus those held from
    /// the last read.
    fn decode_chunk<E, F>(&mut self, input: &[u8], on_event: &mut F) -> Result<(), E>
    where
        E: From<Error>,
        F: FnMut(Part<'_>) -> Result<(), E>,
    {
        let State::Chunk { held, len } = self.state else { return Ok(()) };
        let held = &held[..usize::from(len)];
        if input.is_empty() {
            return Ok(());
        }
        // Where the bytes that can go out end, and what is held next.
        let rest = if held.is_empty() {
            let cut = complete_utf8_prefix(input);
            if cut > 0 {
                on_event(Part::Start { len: None })?;
                on_event(Part::End { bytes: &input[..cut], ending: LineEnding::None })?;
            }
            &input[cut..]
        } else if input.len() >= 3 {
            // The last three bytes, all from this read, decide what is held.
            let cut = complete_utf8_prefix(input);
            on_event(Part::Start { len: None })?;
            if cut == 0 {
                on_event(Part::End { bytes: held, ending: LineEnding::None })?;
            } else {
                on_event(Part::Bytes(held))?;
                on_event(Part::End { bytes: &input[..cut], ending: LineEnding::None })?;
            }
            &input[cut..]
        } else {
            // Few bytes: join them to the held ones (at most 5 in all).
            let mut joined = [0u8; 5];
            joined[..held.len()].copy_from_slice(held);
            joined[held.len()..held.len() + input.len()].copy_from_slice(input);
            let joined = &joined[..held.len() + input.len()];
            let cut = complete_utf8_prefix(joined);
            if cut > 0 {
                on_event(Part::Start { len: None })?;
                on_event(Part::End { bytes: &joined[..cut], ending: LineEnding::None })?;
            }
            self.hold_chunk(&joined[cut..]);
            return Ok(());
        };
        self.hold_chunk(rest);
        Ok(())
    }

    /// Keeps `tail` (at most 3 bytes: an incomplete UTF-8 character).
    fn hold_chunk(&mut self, tail: &[u8]) {
        let mut held = [0u8; 3];
        let len = tail.len().min(3);
        held[..len].copy_from_slice(&tail[..len]);
        self.state = State::Chunk { held, len: len as u8 };
    }

    /// Line framing: streams each line's bytes, ends it at `\n` or `\r\n`.
    fn decode_lines<E, F>(&mut self, input: &[u8], max_line: usize, known: Newline, on_event: &mut F) -> Result<(), E>
    where
        E: From<Error>,
        F: FnMut(Part<'_>) -> Result<(), E>,
    {
        let mut rest = input;
        while !rest.is_empty() {
            let (mut len, cr) = match self.state {
                State::InLine { len, cr } => (len, cr),
                _ => {
                    on_event(Part::Start { len: None })?;
                    (0, false)
                }
            };
            self.state = State::InLine { len, cr: false };
            if cr {
                if rest[0] == b'\n' {
                    self.state = State::LineIdle;
                    on_event(Part::End { bytes: b"", ending: LineEnding::CrLf })?;
                    rest = &rest[1..];
                    continue;
                }
                // Not followed by `\n`: the held `\r` is content.
                check_room(b"\r", max_line - len, max_line, on_event)?;
                len += 1;
                self.state = State::InLine { len, cr: false };
                on_event(Part::Bytes(b"\r"))?;
            }
            let room = max_line - len;
            // What is known holds for the whole input (a held `\r` not followed by `\n` leaves it whole).
            let newline = match known {
                Newline::At(at) if rest.len() == input.len() => Some(at),
                Newline::None if rest.len() == input.len() => None,
                _ => find_newline(rest),
            };
            match newline {
                Some(i) => {
                    let (content, ending) = match rest[..i].strip_suffix(b"\r") {
                        Some(content) => (content, LineEnding::CrLf),
                        None => (&rest[..i], LineEnding::Lf),
                    };
                    check_room(content, room, max_line, on_event)?;
                    self.state = State::LineIdle;
                    on_event(Part::End { bytes: content, ending })?;
                    rest = &rest[i + 1..];
                }
                None => {
                    let (content, cr) = match rest.strip_suffix(b"\r") {
                        Some(content) => (content, true),
                        None => (rest, false),
                    };
                    check_room(content, room, max_line, on_event)?;
                    self.state = State::InLine { len: len + content.len(), cr };
                    if !content.is_empty() {
                        on_event(Part::Bytes(content))?;
                    }
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Length-prefixed framing: completes the prefix, checks it, streams the payload.
    fn decode_frames<E, F>(&mut self, input: &[u8], max_frame: usize, on_event: &mut F) -> Result<(), E>
    where
        E: From<Error>,
        F: FnMut(Part<'_>) -> Result<(), E>,
    {
        let mut rest = input;
        while !rest.is_empty() {
            match self.state {
                State::Payload { len, remaining } => {
                    let take = rest.len().min(remaining as usize);
                    let (bytes, after) = rest.split_at(take);
                    rest = after;
                    // `take` is at most `remaining`, a u32.
                    let remaining = remaining - take as u32;
                    if remaining == 0 {
                        self.state = State::FrameIdle;
                        on_event(Part::End { bytes, ending: LineEnding::None })?;
                    } else {
                        self.state = State::Payload { len, remaining };
                        on_event(Part::Bytes(bytes))?;
                    }
                }
                // The common case: a whole prefix at hand, read in place.
                State::FrameIdle if rest.len() >= 4 => {
                    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                    rest = &rest[4..];
                    self.start_frame(len, max_frame, on_event)?;
                }
                state => {
                    let (mut bytes, have) = match state {
                        State::Prefix { bytes, have } => (bytes, usize::from(have)),
                        _ => ([0; 4], 0),
                    };
                    let take = (4 - have).min(rest.len());
                    bytes[have..have + take].copy_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if have + take < 4 {
                        self.state = State::Prefix { bytes, have: (have + take) as u8 };
                        return Ok(());
                    }
                    self.start_frame(u32::from_be_bytes(bytes), max_frame, on_event)?;
                }
            }
        }
        Ok(())
    }

    /// A complete length prefix: checks it and starts the frame (and ends it
    /// at once if it is empty).
    fn start_frame<E, F>(&mut self, len: u32, max_frame: usize, on_event: &mut F) -> Result<(), E>
    where
        E: From<Error>,
        F: FnMut(Part<'_>) -> Result<(), E>,
    {
        if usize::try_from(len).map_or(true, |len| len > max_frame) {
            self.state = State::FrameIdle;
            return Err(
                Error::Protocol(ProtocolError::FrameTooLarge { declared: u64::from(len), max: max_frame }).into()
            );
        }
        on_event(Part::Start { len: Some(len) })?;
        if len == 0 {
            self.state = State::FrameIdle;
            on_event(Part::End { bytes: b"", ending: LineEnding::None })
        } else {
            self.state = State::Payload { len, remaining: len };
            Ok(())
        }
    }
}

/// Checks that a line's `content` fits in the `room` left under `max_line`;
/// if not, hands over what fits and fails with [`ProtocolError::LineTooLong`], so the
/// bytes handed over are the same however the input was split.
fn check_room<E, F>(content: &[u8], room: usize, max_line: usize, on_event: &mut F) -> Result<(), E>
where
    E: From<Error>,
    F: FnMut(Part<'_>) -> Result<(), E>,
{
    if content.len() <= room {
        return Ok(());
    }
    if room > 0 {
        on_event(Part::Bytes(&content[..room]))?;
    }
    Err(Error::Protocol(ProtocolError::LineTooLong { max: max_line }).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Seen = Vec<(Vec<u8>, LineEnding)>;

    /// Follows the events and checks their grammar: Start, Bytes (never
    /// empty), End; the message lengths declared match.
    #[derive(Default)]
    struct Collector {
        seen: Seen,
        current: Option<(Vec<u8>, Option<u32>)>,
        /// The bytes handed over, messages unfinished included.
        bytes: Vec<u8>,
        events: usize,
    }

    impl Collector {
        fn on(&mut self, event: Part<'_>) -> Result<(), Error> {
            self.events += 1;
            match event {
                Part::Start { len } => {
                    assert!(self.current.is_none(), "a start inside a message");
                    self.current = Some((Vec::new(), len));
                }
                Part::Bytes(bytes) => {
                    assert!(!bytes.is_empty(), "empty Bytes event");
                    let (message, _) = self.current.as_mut().expect("bytes outside a message");
                    message.extend_from_slice(bytes);
                    self.bytes.extend_from_slice(bytes);
                }
                Part::End { bytes, ending } => {
                    let (mut message, len) = self.current.take().expect("an end outside a message");
                    message.extend_from_slice(bytes);
                    self.bytes.extend_from_slice(bytes);
                    if let Some(len) = len {
                        assert_eq!(message.len(), len as usize, "declared length");
                    }
                    self.seen.push((message, ending));
                }
            }
            Ok(())
        }
    }

    fn run_collect(framing: Framing, reads: &[&[u8]]) -> (Collector, Result<(), Error>) {
        let mut decoder = Splitter::new(framing);
        let mut collector = Collector::default();
        for read in reads {
            let result = decoder.decode(read, &mut |e| collector.on(e));
            if result.is_err() {
                return (collector, result);
            }
        }
        let result = decoder.finish(&mut |e| collector.on(e));
        assert!(!decoder.in_message(), "finish leaves the decoder between messages");
        (collector, result)
    }

    fn run(framing: Framing, reads: &[&[u8]]) -> (Seen, Result<(), Error>) {
        let (collector, result) = run_collect(framing, reads);
        (collector.seen, result)
    }

    fn msgs(seen: &Seen) -> Vec<&[u8]> {
        seen.iter().map(|(m, _)| m.as_slice()).collect()
    }

    /// Every way of cutting `input` in two, and byte by byte, gives what one
    /// read gives: the same messages, the same bytes handed over, the same end.
    fn same_at_every_split(framing: Framing, input: &[u8]) {
        let (whole, whole_result) = run_collect(framing, &[input]);
        let whole_result = format!("{whole_result:?}");
        let mut splits: Vec<Vec<&[u8]>> = (0..=input.len()).map(|i| vec![&input[..i], &input[i..]]).collect();
        splits.push(input.chunks(1).collect());
        splits.push(input.chunks(2).collect());
        splits.push(input.chunks(3).collect());
        for reads in splits {
            let (split, result) = run_collect(framing, &reads);
            assert_eq!(split.seen, whole.seen, "{framing}, reads {reads:?}");
            assert_eq!(split.bytes, whole.bytes, "{framing}, reads {reads:?}");
            assert_eq!(format!("{result:?}"), whole_result, "{framing}, reads {reads:?}");
        }
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
        // The held bytes joined with a long read, and with a read that ends
        // inside another character.
        let (seen, r) = run(Framing::chunk(), &[&ni[..2], &[ni[2], b'x', b'y', b'z', ni[0]], &ni[1..]]);
        assert!(r.is_ok());
        assert_eq!(msgs(&seen), ["你xyz".as_bytes(), "你".as_bytes()]);
        let emoji = "🎉".as_bytes();
        let (seen, r) = run(Framing::chunk(), &[&[b'a', ni[0]], &emoji[..3], &emoji[3..]]);
        assert!(r.is_ok());
        assert_eq!(msgs(&seen), [&b"a"[..], &ni[..1], emoji]);
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
    fn chunk_split_reads_never_split_a_character_nor_lose_a_byte() {
        let input = "a你🎉b\u{e9}".as_bytes();
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let (seen, r) = run(Framing::chunk(), &[&input[..i], &input[i..j], &input[j..]]);
                assert!(r.is_ok());
                assert_eq!(msgs(&seen).concat(), input, "cut at {i}, {j}");
                for (m, _) in &seen {
                    assert!(std::str::from_utf8(m).is_ok(), "cut at {i}, {j}: {m:?}");
                }
            }
        }
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
    fn line_streams_bytes_as_they_arrive() {
        let mut decoder = Splitter::new(Framing::line());
        let mut events = Vec::new();
        let mut sink = |e: Part<'_>| {
            events.push(format!("{e:?}"));
            Ok::<(), Error>(())
        };
        decoder.decode(b"ab\r", &mut sink).expect("valid");
        decoder.decode(b"c\r", &mut sink).expect("valid");
        decoder.decode(b"\n", &mut sink).expect("valid");
        decoder.decode(b"\n", &mut sink).expect("valid");
        assert_eq!(
            events,
            [
                "Start { len: None }",
                "Bytes([97, 98])",
                "Bytes([13])",
                "Bytes([99])",
                "End { bytes: [], ending: CrLf }",
                "Start { len: None }",
                "End { bytes: [], ending: Lf }",
            ]
        );
    }

    #[test]
    fn line_cr_without_lf_is_content() {
        let (seen, r) = run(Framing::line(), &[b"a\rb\n"]);
        assert!(r.is_ok());
        assert_eq!(msgs(&seen), [&b"a\rb"[..]]);
        same_at_every_split(Framing::line(), b"a\r\rb\r\n\r\r\n\r");
    }

    #[test]
    fn line_limit_is_exact_and_found_without_buffering_past_it() {
        let framing = Framing::Line { max_line: 4 };
        let (seen, r) = run(framing, &[b"abcd\r\n", b"abcd\n"]);
        assert!(r.is_ok());
        assert_eq!(msgs(&seen), [&b"abcd"[..], b"abcd"]);

        let (collector, r) = run_collect(framing, &[b"ok\nabcde\n"]);
        assert_eq!(msgs(&collector.seen), [&b"ok"[..]]);
        assert!(matches!(r, Err(Error::Protocol(ProtocolError::LineTooLong { max: 4 }))));
        // The bad line's first max_line bytes were handed over, no more.
        assert_eq!(collector.bytes, b"okabcd");

        // No newline at all: fails at the fifth byte, holding nothing.
        let mut decoder = Splitter::new(framing);
        let mut handed = 0;
        let mut sink = |e: Part<'_>| {
            if let Part::Bytes(b) = e {
                handed += b.len();
            }
            Ok::<(), Error>(())
        };
        for b in b"abcd" {
            decoder.decode(&[*b], &mut sink).expect("within the limit");
            assert_eq!(decoder.pending(), 0);
        }
        decoder.decode(b"\r", &mut sink).expect("a \\r may begin \\r\\n");
        assert_eq!(decoder.pending(), 1);
        assert!(matches!(decoder.decode(b"e", &mut sink), Err(Error::Protocol(ProtocolError::LineTooLong { max: 4 }))));
        assert_eq!(handed, 4);

        for input in
            [&b"ok\nabcde\n"[..], b"abcd\r\r\n", b"abcd\rx", b"abc\r\r\n", b"abcd\r", b"abc\r", b"\r\r\r\r\r\n"]
        {
            same_at_every_split(framing, input);
        }
    }

    #[test]
    fn a_last_line_ending_in_cr_at_the_limit() {
        let framing = Framing::Line { max_line: 4 };
        let (seen, r) = run(framing, &[b"abc\r"]);
        assert!(r.is_ok());
        assert_eq!(seen, [(b"abc\r".to_vec(), LineEnding::None)]);
        let (_, r) = run(framing, &[b"abcd\r"]);
        assert!(matches!(r, Err(Error::Protocol(ProtocolError::LineTooLong { max: 4 }))));
    }

    #[test]
    fn length_prefixed_frames_across_reads() {
        let mut input = Vec::new();
        Framing::length_prefixed().frame_message(b"hello", &mut input);
        Framing::length_prefixed().frame_message(b"", &mut input);
        Framing::length_prefixed().frame_message("你好".as_bytes(), &mut input);
        let reads: Vec<&[u8]> = input.chunks(3).collect();
        let (seen, r) = run(Framing::length_prefixed(), &reads);
        assert!(r.is_ok());
        assert_eq!(msgs(&seen), [&b"hello"[..], b"", "你好".as_bytes()]);
        same_at_every_split(Framing::length_prefixed(), &input);
    }

    #[test]
    fn length_prefixed_start_declares_the_length() {
        let mut decoder = Splitter::new(Framing::length_prefixed());
        let mut events = Vec::new();
        let mut sink = |e: Part<'_>| {
            events.push(format!("{e:?}"));
            Ok::<(), Error>(())
        };
        decoder.decode(&[0, 0], &mut sink).expect("valid");
        assert!(decoder.in_message() && decoder.pending() == 2);
        decoder.decode(&[0, 3, b'a'], &mut sink).expect("valid");
        decoder.decode(&[b'b', b'c', 0, 0, 0, 0], &mut sink).expect("valid");
        assert!(!decoder.in_message());
        assert_eq!(
            events,
            [
                "Start { len: Some(3) }",
                "Bytes([97])",
                "End { bytes: [98, 99], ending: None }",
                "Start { len: Some(0) }",
                "End { bytes: [], ending: None }",
            ]
        );
    }

    #[test]
    fn length_prefix_over_the_limit_fails_from_its_four_bytes() {
        let framing = Framing::LengthPrefixed { max_frame: 10 };
        let (seen, r) = run(framing, &[&[0, 0, 0, 1, b'x', 0xff, 0xff, 0xff, 0xff]]);
        assert_eq!(msgs(&seen), [&b"x"[..]]);
        assert!(matches!(r, Err(Error::Protocol(ProtocolError::FrameTooLarge { declared: 0xffff_ffff, max: 10 }))));
        let (collector, r) = run_collect(framing, &[&[0, 0], &[0, 11]]);
        assert!(matches!(r, Err(Error::Protocol(ProtocolError::FrameTooLarge { declared: 11, max: 10 }))));
        assert_eq!(collector.events, 0, "nothing of the bad frame was handed over");
        same_at_every_split(framing, &[0, 0, 0, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 0, 0, 11, 1]);
    }

    #[test]
    fn truncated_frame_at_end_of_input_is_an_error() {
        let (_, r) = run(Framing::length_prefixed(), &[&[0, 0, 0, 5, b'a', b'b']]);
        assert!(matches!(r, Err(Error::Protocol(ProtocolError::TruncatedFrame { expected: 9, received: 6 }))));
        let (_, r) = run(Framing::length_prefixed(), &[&[0, 0]]);
        assert!(matches!(r, Err(Error::Protocol(ProtocolError::TruncatedFrame { expected: 4, received: 2 }))));
    }

    /// The decoder holds at most three bytes, whatever the message size: a
    /// 16 MiB frame and a 16 MiB line fed in 8 KiB reads.
    #[test]
    fn the_decoder_holds_a_few_bytes_whatever_the_message_size() {
        const BIG: usize = 16 * 1024 * 1024;
        assert!(std::mem::size_of::<Splitter>() <= 48, "{}", std::mem::size_of::<Splitter>());
        let mut frame = Vec::with_capacity(BIG + 4);
        Framing::length_prefixed().frame_message(&vec![b'\r'; BIG], &mut frame);
        let mut line = vec![b'\r'; BIG];
        line.push(b'\n');
        for (framing, input) in [(Framing::length_prefixed(), &frame), (Framing::Line { max_line: BIG }, &line)] {
            let mut decoder = Splitter::new(framing);
            let (mut handed, mut ended) = (0, 0);
            let mut sink = |e: Part<'_>| {
                match e {
                    Part::Bytes(b) => handed += b.len(),
                    Part::End { bytes, .. } => {
                        handed += bytes.len();
                        ended += 1;
                    }
                    Part::Start { .. } => {}
                }
                Ok::<(), Error>(())
            };
            for read in input.chunks(8 * 1024 + 1) {
                decoder.decode(read, &mut sink).expect("valid");
                assert!(decoder.pending() <= 3, "{framing}: {} held", decoder.pending());
            }
            decoder.finish(&mut sink).expect("complete");
            // Every byte handed over but the `\r` of the final `\r\n`.
            assert_eq!((handed, ended), (BIG - usize::from(framing != Framing::length_prefixed()), 1), "{framing}");
        }
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

    /// The first of several newlines, whatever surrounds it: `0x0b` next to a
    /// `\n` is the word-wise test's false mark (from the borrow), which must
    /// never be taken for the first.
    #[test]
    fn find_newline_finds_the_first_of_several() {
        for len in 0..48 {
            for filler in [b'x', 0x0b, 0x8a, 0x09] {
                for first in 0..len {
                    for second in first..len {
                        let mut bytes = vec![filler; len];
                        bytes[first] = b'\n';
                        bytes[second] = b'\n';
                        assert_eq!(find_newline(&bytes), Some(first), "{len} {filler} {first} {second}");
                    }
                }
                assert_eq!(find_newline(&vec![filler; len]), None);
            }
        }
    }

    /// A line limit of `usize::MAX` is accepted and cannot overflow.
    #[test]
    fn the_largest_line_limit_does_not_overflow() {
        let (seen, r) = run(Framing::Line { max_line: usize::MAX }, &[b"ab\r", b"\r", b"c\n"]);
        assert!(r.is_ok());
        assert_eq!(msgs(&seen), [&b"ab\r\rc"[..]]);
    }
}
