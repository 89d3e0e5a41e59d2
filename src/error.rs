//! The crate's errors: one small [`Error`] whose variants group what went
//! wrong, each with a sub-enum whose reasons callers can match.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::time::Duration;

/// Everything that can go wrong while serving or talking to a stamp-echo peer.
///
/// Errors concern one connection only: a server that gets an `Err` from
/// [`EchoServer::serve`](crate::EchoServer::serve) should drop that connection
/// and keep serving the others. Every reply to a message that was received
/// whole before the error has already been written when the error is returned.
///
/// The variants group causes; the sub-enums say which one:
///
/// ```
/// use std::time::Duration;
/// use stamp_echo::{Error, ProtocolError, TimeoutError};
///
/// fn verdict(err: &Error) -> &'static str {
///     match err {
///         Error::Io(_) => "the stream failed",
///         Error::Timeout(TimeoutError::Write { .. }) => "the peer stopped reading",
///         Error::Timeout(_) => "too slow",
///         Error::Protocol(ProtocolError::LineTooLong { .. }) => "line too long",
///         Error::Protocol(_) => "the peer broke the protocol",
///         _ => "something else",
///     }
/// }
/// let err = Error::from(TimeoutError::Write { timeout: Duration::from_secs(5) });
/// assert_eq!(verdict(&err), "the peer stopped reading");
/// assert_eq!(err.to_string(), "peer stopped reading: replies not taken within 5s");
///
/// // Through `io::Error` and back, the typed error survives.
/// let io = std::io::Error::from(err);
/// assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
/// assert!(matches!(Error::from(io), Error::Timeout(TimeoutError::Write { .. })));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The underlying stream failed (reset, broken pipe, ...). Shown as the
    /// [`io::Error`] itself.
    #[error(transparent)]
    Io(io::Error),

    /// A deadline passed: the peer was idle, slow, or stopped reading; or a
    /// reply did not come.
    #[error(transparent)]
    Timeout(#[from] TimeoutError),

    /// The peer sent something that breaks the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),

    /// The caller asked to send a message the framing cannot carry; nothing
    /// was sent.
    #[error(transparent)]
    Message(#[from] MessageError),

    /// A setting is out of range: the error names the setting and the value.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// A stamp formatter produced text the protocol cannot carry.
    #[error(transparent)]
    Stamp(#[from] StampError),

    /// The local time zone asked for cannot be used: a server built with the
    /// default (local) stamp while `TZ` names a zone that cannot be found.
    #[error("local time zone: {0}")]
    Zone(#[from] crate::stamp::ZoneError),

    /// A connection from a trusted proxy did not start with a valid PROXY
    /// protocol header, or a connection from anyone else started with one
    /// ([`ProxyError::Untrusted`](crate::ProxyError::Untrusted)); see
    /// [`runner::ProxyProtocol`](crate::runner::ProxyProtocol).
    #[error(transparent)]
    Proxy(#[from] crate::ProxyError),

    /// The runner closed the connection to make room for a new one: every
    /// slot was taken and this connection had gone the longest without
    /// completing a message (see [`Limits::eviction_grace`](crate::Limits::eviction_grace)).
    #[error("evicted to make room for a new connection: no message completed for {idle:?}")]
    Evicted {
        /// How long the connection had gone without completing a message.
        idle: Duration,
    },

    /// The runner closed the connection once its real source was known (a
    /// PROXY protocol header, say): that source already held its share (see
    /// [`Refusal`](crate::runner::Refusal)).
    #[error("refused: {reason}")]
    Refused {
        /// Why.
        reason: Refusal,
    },
}

/// A deadline that passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeoutError {
    /// The peer sent nothing (or could not take our replies) for longer than
    /// the stream's read or write timeout.
    #[error("connection idle for longer than its timeout")]
    Idle,

    /// A message's first byte arrived, but the message was not complete
    /// within the deadline ([`Limits::message_timeout`](crate::Limits::message_timeout)):
    /// a peer trickling bytes cannot hold its connection open.
    #[error("message not complete {timeout:?} after its first byte")]
    Message {
        /// The deadline in force.
        timeout: Duration,
    },

    /// The peer stopped reading: the replies to one read were not all taken
    /// within the deadline ([`Limits::write_timeout`](crate::Limits::write_timeout)),
    /// measured from the first byte written, however the peer paced them.
    #[error("peer stopped reading: replies not taken within {timeout:?}")]
    Write {
        /// The deadline in force.
        timeout: Duration,
    },

    /// A whole reply did not arrive within the client's timeout (see
    /// [`EchoClient::set_timeout`](crate::EchoClient::set_timeout)), however
    /// many bytes of it came.
    #[error("no whole reply within {timeout:?}")]
    Reply {
        /// The timeout in force.
        timeout: Duration,
    },

    /// A connection from a trusted proxy did not send its whole PROXY
    /// protocol header within the deadline
    /// ([`ProxyProtocol::header_timeout`](crate::runner::ProxyProtocol::header_timeout)).
    #[error("no whole PROXY protocol header within {timeout:?}")]
    ProxyHeader {
        /// The deadline in force.
        timeout: Duration,
    },

    /// A datagram got no reply: it was sent `attempts` times, each time
    /// waiting `timeout` for the reply.
    #[error("no reply after {attempts} attempts, waiting {timeout:?} for each")]
    NoReply {
        /// How many times the request was sent.
        attempts: u32,
        /// How long each attempt waited.
        timeout: Duration,
    },
}

/// What a peer sent that breaks the protocol.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A line (without its line ending) was longer than the framing's `max_line`.
    #[error("line longer than the limit of {max} bytes")]
    LineTooLong {
        /// The limit in force.
        max: usize,
    },

    /// A length prefix declared a frame longer than the framing's `max_frame`.
    /// Found from the 4-byte prefix alone, before anything is allocated.
    #[error("frame of {declared} bytes is over the limit of {max} bytes")]
    FrameTooLarge {
        /// The length the peer declared.
        declared: u64,
        /// The limit in force.
        max: usize,
    },

    /// The input ended in the middle of a length-prefixed frame.
    #[error("input ended inside a frame: {received} of {expected} bytes received")]
    TruncatedFrame {
        /// Bytes the frame (prefix included) should have had.
        expected: u64,
        /// Bytes of it that arrived.
        received: u64,
    },

    /// A reply did not have the shape `[STAMP] MESSAGE`.
    #[error("malformed reply: {0}")]
    MalformedReply(MalformedReason),

    /// A reply was well formed but did not echo the message that was sent.
    #[error("reply does not echo the message sent (first difference at byte {offset})")]
    EchoMismatch {
        /// Offset in the message where the echo first differs (or ends).
        offset: usize,
    },

    /// The peer closed the connection before a whole reply arrived.
    #[error("connection closed before the reply was complete")]
    UnexpectedEof,

    /// A reply would not fit in one UDP datagram (see
    /// [`datagram::MAX_DATAGRAM`](crate::datagram::MAX_DATAGRAM)). A
    /// [`DatagramServer`](crate::datagram::DatagramServer) sends this error,
    /// as an error datagram, in place of the reply.
    #[error("reply of {size} bytes would not fit in one datagram (at most {max} bytes)")]
    DatagramTooLarge {
        /// The size the reply would have had.
        size: usize,
        /// The largest datagram.
        max: usize,
    },

    /// The server answered with an error datagram instead of an echo; its
    /// text (after the `error: ` prefix) is here.
    #[error("the server answered with an error: {0}")]
    ServerError(String),
}

/// Why a reply is not of the shape `[STAMP] MESSAGE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedReason {
    /// The reply's first byte is not `[`.
    #[error("reply does not start with '['")]
    NoOpenBracket,
    /// The `]` after the stamp is not followed by a space.
    #[error("no space after the stamp")]
    NoSpaceAfterStamp,
    /// A CR or LF came before the stamp's `]`.
    #[error("line break inside the stamp")]
    LineBreakInStamp,
    /// No `]` within [`MAX_STAMP_LEN`](crate::protocol::MAX_STAMP_LEN) bytes.
    #[error("stamp longer than 255 bytes")]
    StampTooLong,
    /// The stamp is not UTF-8.
    #[error("stamp is not UTF-8")]
    StampNotUtf8,
    /// The reply (or its frame) ended inside its stamp.
    #[error("reply ends inside its stamp")]
    EndsInsideStamp,
    /// A reply frame is longer than the message sent plus a stamp.
    #[error("reply frame longer than the message and a stamp")]
    FrameTooLong,
    /// More reply bytes came than the messages sent account for.
    #[error("more reply bytes than messages sent")]
    Unsolicited,
    /// Too many readings of chunk replies were in doubt at once to check them.
    #[error("reply too ambiguous to check: too many pieces in doubt")]
    TooAmbiguous,
}

/// Why a message cannot be sent in a framing. Nothing was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// An empty message gets no reply in chunk framing.
    #[error("message cannot be sent: an empty message gets no reply in chunk framing")]
    EmptyChunk,
    /// The message ends inside a UTF-8 character: the server would wait for the rest.
    #[error("message cannot be sent: it ends inside a UTF-8 character, the server would wait for the rest")]
    SplitCharacter,
    /// A newline in line framing would end the message early.
    #[error("message cannot be sent: a newline would end the message early")]
    Newline,
    /// A final CR in line framing would be taken for part of the line ending.
    #[error("message cannot be sent: a final CR would be taken for part of the line ending")]
    TrailingCr,
    /// The message is longer than the framing (or a datagram) allows.
    #[error("message cannot be sent: {len} bytes is over the limit of {max} bytes")]
    TooLong {
        /// The message's length.
        len: usize,
        /// The limit in force (`max_line`, `max_frame`, or a datagram's payload).
        max: usize,
    },
    /// Over UDP, a datagram any
    /// [`DatagramServer`](crate::datagram::DatagramServer) drops unanswered,
    /// for this reason (see
    /// [`Dropped::for_message`](crate::datagram::Dropped::for_message)).
    #[error("message cannot be sent: a server would drop this datagram unanswered ({0})")]
    Unanswerable(Dropped),
}

/// A stamp formatter produced text the protocol cannot carry: it contains
/// `]`, `\r` or `\n`, or is longer than [`MAX_STAMP_LEN`](crate::protocol::MAX_STAMP_LEN).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stamp {stamp:?} is not valid: it must have no ']', CR or LF and at most 255 bytes")]
pub struct StampError {
    stamp: String,
}

impl StampError {
    /// The stamp text `stamp` is not valid.
    pub fn new(stamp: impl Into<String>) -> StampError {
        StampError { stamp: stamp.into() }
    }

    /// The offending stamp text.
    pub fn stamp(&self) -> &str {
        &self.stamp
    }
}

/// A setting that is out of range, with its name, the value given and what
/// it accepts. Made by [`Bound::check`](crate::Bound::check), which states
/// the range from the setting's own [`Bound`](crate::Bound).
///
/// ```
/// use stamp_echo::{Error, Framing};
///
/// let err = Framing::Chunk { buffer_size: 0 }.validate().unwrap_err();
/// let Error::Config(config) = &err else { panic!("a configuration error") };
/// assert_eq!(config.setting(), "buffer_size");
/// assert_eq!(config.expected(), Framing::BUFFER_SIZE.to_string());
/// assert_eq!(err.to_string(), "invalid buffer_size 0: expected 1 to 1048576 bytes");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {setting} {value}: expected {expected}")]
pub struct ConfigError {
    setting: &'static str,
    value: String,
    expected: Cow<'static, str>,
}

impl ConfigError {
    /// `setting` was given `value`, but it accepts only `expected` (a range
    /// or a description, such as `"1 to 1048576 bytes"`).
    pub fn new(
        setting: &'static str,
        value: impl std::fmt::Display,
        expected: impl Into<Cow<'static, str>>,
    ) -> ConfigError {
        ConfigError { setting, value: value.to_string(), expected: expected.into() }
    }

    /// The setting's name, as in the API (`buffer_size`, `max_connections`).
    pub fn setting(&self) -> &'static str {
        self.setting
    }

    /// The value that was given, as text.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What the setting accepts: its range (`1 to 1048576 bytes`).
    pub fn expected(&self) -> &str {
        &self.expected
    }
}

impl Error {
    /// Turns a failed read or write into the right variant: an `Error` a
    /// stream wrapper carried through `io` (see [`Error::into_io`]) comes out
    /// as itself, timeouts become [`TimeoutError::Idle`], an early end
    /// [`ProtocolError::UnexpectedEof`], everything else [`Error::Io`].
    pub(crate) fn from_io(err: io::Error) -> Self {
        match Error::from(err) {
            Error::Io(err) => match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => TimeoutError::Idle.into(),
                io::ErrorKind::UnexpectedEof => ProtocolError::UnexpectedEof.into(),
                _ => Error::Io(err),
            },
            typed => typed,
        }
    }

    /// Wraps this error in an [`io::Error`] of `kind`, for a `Read` or
    /// `Write` wrapper to return; [`Error::from_io`] takes it out again.
    pub(crate) fn into_io(self, kind: io::ErrorKind) -> io::Error {
        io::Error::new(kind, self)
    }

    /// The [`io::ErrorKind`] this error becomes in an [`io::Error`].
    fn io_kind(&self) -> io::ErrorKind {
        match self {
            Error::Io(err) => err.kind(),
            Error::Timeout(_) => io::ErrorKind::TimedOut,
            Error::Protocol(ProtocolError::UnexpectedEof) => io::ErrorKind::UnexpectedEof,
            Error::Protocol(_) => io::ErrorKind::InvalidData,
            Error::Message(_) | Error::Config(_) | Error::Stamp(_) | Error::Zone(_) => io::ErrorKind::InvalidInput,
            Error::Proxy(crate::ProxyError::Truncated { .. }) => io::ErrorKind::UnexpectedEof,
            Error::Proxy(crate::ProxyError::Untrusted) => io::ErrorKind::PermissionDenied,
            Error::Proxy(_) => io::ErrorKind::InvalidData,
            Error::Evicted { .. } | Error::Refused { .. } => io::ErrorKind::ConnectionAborted,
        }
    }
}

impl From<Error> for io::Error {
    /// [`Error::Io`] gives back its `io::Error`; every other error becomes an
    /// `io::Error` of the matching kind (`TimedOut`, `InvalidData`,
    /// `UnexpectedEof`, `InvalidInput`, `PermissionDenied`,
    /// `ConnectionAborted`) that carries it,
    /// and that [`Error::from`] turns back into it.
    fn from(err: Error) -> io::Error {
        match err {
            Error::Io(err) => err,
            typed => {
                let kind = typed.io_kind();
                typed.into_io(kind)
            }
        }
    }
}

/// For a conversion that cannot fail (a listener given as it is, say, where
/// a `TryInto` is taken).
impl From<std::convert::Infallible> for Error {
    fn from(never: std::convert::Infallible) -> Error {
        match never {}
    }
}

impl From<io::Error> for Error {
    /// An `io::Error` made from an [`Error`] (by `io::Error::from`, or by a
    /// stream wrapper) gives the `Error` back; any other is [`Error::Io`].
    fn from(err: io::Error) -> Error {
        if err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            let kind = err.kind();
            return match err.into_inner().map(|inner| inner.downcast::<Error>()) {
                Some(Ok(carried)) => *carried,
                // Unreachable: checked above; keep the kind anyway.
                _ => Error::Io(kind.into()),
            };
        }
        Error::Io(err)
    }
}

/// Why a runner turned a connection away (see
/// [`Limits`](crate::Limits#fair-to-every-source)): shown to
/// [`Events::refused`](crate::Events::refused) and counted in
/// [`Totals::refused`](crate::Totals::refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Every slot is taken (at `max_connections`), the connection's source
    /// holds at least as many as any other, and none of its own connections
    /// (nor of those holding one more) had gone `eviction_grace` without
    /// completing a message.
    Full {
        /// The slots the source held.
        held: usize,
    },
    /// The process ran out of descriptors, memory or threads (see
    /// [`Limits`](crate::Limits#fair-to-every-source)), every slot it could
    /// open is taken, and the connection's
    /// source holds at least as many as any other but one: it is refused at
    /// once rather than displace its own (which would need a descriptor
    /// freed first), so that the backlog drains fast.
    OutOfResources {
        /// The slots the source held.
        held: usize,
    },
    /// The source held [`Limits::max_per_source`](crate::Limits::max_per_source)
    /// connections, none of them past `eviction_grace` without completing a
    /// message.
    SourceLimit {
        /// The slots the source held (its limit).
        held: usize,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Full { held } => {
                write!(f, "the server is full and its source holds {held} of the slots, none past the eviction grace")
            }
            Refusal::OutOfResources { held } => {
                write!(f, "out of descriptors, memory or threads, and its source holds {held} of the slots")
            }
            Refusal::SourceLimit { held } => {
                write!(f, "its source holds {held}, its max_per_source, none past the eviction grace")
            }
        }
    }
}

/// Why a [`DatagramServer`](crate::datagram::DatagramServer) sent no reply to a
/// datagram (see the [module docs](crate::datagram#loops-and-reflection)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dropped {
    /// It starts with a stamp header `[STAMP] `: it looks like a reply of
    /// this protocol, so answering it could start a loop with another server.
    LooksLikeReply,
    /// It starts with `error: ` ([`ERROR_PREFIX`](crate::datagram::ERROR_PREFIX)): it looks like an error
    /// datagram of this protocol.
    ErrorDatagram,
    /// Its source is the server's own port on this host: answering would
    /// send the reply to the server itself.
    OwnAddress,
    /// Its source port is below 1024: a service's (echo, chargen, DNS, NTP,
    /// ...), never a client's, and a service may answer the reply.
    ServicePort,
    /// Its source cannot have sent it: an unspecified, broadcast or
    /// multicast address, or port 0.
    InvalidSource,
    /// Its source has used up its replies for now (see [`RateLimit`](crate::datagram::RateLimit)).
    RateLimited,
    /// All sources together have used up the server's replies for now (see
    /// [`RateLimit::total`](crate::datagram::RateLimit::total)).
    TotalLimited,
}

impl Dropped {
    /// Every reason, in the order [`DropCounts`](crate::datagram::DropCounts) shows them.
    pub const ALL: [Dropped; 7] = [
        Dropped::LooksLikeReply,
        Dropped::ErrorDatagram,
        Dropped::OwnAddress,
        Dropped::ServicePort,
        Dropped::InvalidSource,
        Dropped::RateLimited,
        Dropped::TotalLimited,
    ];

    /// A few words for logs: `looks like a reply`, `rate limited`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::LooksLikeReply => "looks like a reply",
            Dropped::ErrorDatagram => "error datagram",
            Dropped::OwnAddress => "own address",
            Dropped::ServicePort => "service port",
            Dropped::InvalidSource => "invalid source",
            Dropped::RateLimited => "rate limited",
            Dropped::TotalLimited => "total limited",
        }
    }
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn io_cause_is_shown_once() {
        let err = Error::from(io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer"));
        assert_eq!(err.to_string(), "reset by peer");
        assert!(err.source().is_none_or(|source| source.to_string() != "reset by peer"));
    }

    #[test]
    fn round_trips_through_io_error() {
        let cases: Vec<(Error, io::ErrorKind)> = vec![
            (TimeoutError::Idle.into(), io::ErrorKind::TimedOut),
            (ProtocolError::LineTooLong { max: 3 }.into(), io::ErrorKind::InvalidData),
            (ProtocolError::UnexpectedEof.into(), io::ErrorKind::UnexpectedEof),
            (MessageError::Newline.into(), io::ErrorKind::InvalidInput),
            (ConfigError::new("max_line", 0, "1 or more").into(), io::ErrorKind::InvalidInput),
            (StampError::new("a]b").into(), io::ErrorKind::InvalidInput),
            (Error::Evicted { idle: Duration::from_secs(1) }, io::ErrorKind::ConnectionAborted),
            (crate::ProxyError::V1Port.into(), io::ErrorKind::InvalidData),
            (crate::ProxyError::Truncated { received: 3 }.into(), io::ErrorKind::UnexpectedEof),
            (crate::ProxyError::Untrusted.into(), io::ErrorKind::PermissionDenied),
            (TimeoutError::ProxyHeader { timeout: Duration::from_secs(5) }.into(), io::ErrorKind::TimedOut),
            (
                Error::Refused { reason: crate::runner::Refusal::SourceLimit { held: 2 } },
                io::ErrorKind::ConnectionAborted,
            ),
        ];
        for (err, kind) in cases {
            let text = err.to_string();
            let io = io::Error::from(err);
            assert_eq!(io.kind(), kind, "{text}");
            assert_eq!(io.to_string(), text);
            let back = Error::from(io);
            assert!(!matches!(back, Error::Io(_)), "{text}: {back:?}");
            assert_eq!(back.to_string(), text);
        }
    }

    #[test]
    fn plain_io_errors_stay_io() {
        let io = io::Error::from(Error::from(io::Error::from(io::ErrorKind::BrokenPipe)));
        assert_eq!(io.kind(), io::ErrorKind::BrokenPipe);
        assert!(io.get_ref().is_none());
        assert!(matches!(Error::from_io(io::ErrorKind::TimedOut.into()), Error::Timeout(TimeoutError::Idle)));
        assert!(matches!(
            Error::from_io(io::ErrorKind::UnexpectedEof.into()),
            Error::Protocol(ProtocolError::UnexpectedEof)
        ));
    }
}
