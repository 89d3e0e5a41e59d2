//! The crate's one error type.

use std::io;

/// Everything that can go wrong while serving or talking to a stamp-echo peer.
///
/// Errors concern one connection only: a server that gets an `Err` from
/// [`EchoServer::serve`](crate::EchoServer::serve) should drop that connection
/// and keep serving the others. Every reply to a message that was received
/// whole before the error has already been written when the error is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The underlying stream failed (reset, broken pipe, ...).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),

    /// The peer sent nothing (or could not take our replies) for longer than
    /// the stream's read or write timeout.
    #[error("connection idle for longer than its timeout")]
    Timeout,

    /// A message's first byte arrived, but the message was not complete
    /// within the deadline ([`Limits::message_timeout`](crate::Limits::message_timeout)):
    /// a peer trickling bytes cannot hold its connection open.
    #[error("message not complete {timeout:?} after its first byte")]
    MessageTimeout {
        /// The deadline in force.
        timeout: std::time::Duration,
    },

    /// The peer stopped reading: the replies to one read were not all taken
    /// within the deadline ([`Limits::write_timeout`](crate::Limits::write_timeout)),
    /// measured from the first byte written, however the peer paced them.
    #[error("peer stopped reading: replies not taken within {timeout:?}")]
    WriteTimeout {
        /// The deadline in force.
        timeout: std::time::Duration,
    },

    /// The runner closed the connection to make room for a new one: every
    /// slot was taken and this connection had gone the longest without
    /// completing a message (see [`Limits::eviction_grace`](crate::Limits::eviction_grace)).
    #[error("evicted to make room for a new connection: no message completed for {idle:?}")]
    Evicted {
        /// How long the connection had gone without completing a message.
        idle: std::time::Duration,
    },

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

    /// A stamp formatter produced text the protocol cannot carry: it contains
    /// `]`, `\r` or `\n`, or is longer than [`MAX_STAMP_LEN`](crate::protocol::MAX_STAMP_LEN).
    #[error("stamp {stamp:?} is not valid: it must have no ']', CR or LF and at most 255 bytes")]
    InvalidStamp {
        /// The offending stamp text.
        stamp: String,
    },

    /// A setting is out of range: the error names the setting and the value.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The local time zone asked for cannot be used: a server built with the
    /// default (local) stamp while `TZ` names a zone that cannot be found.
    #[error("local time zone: {0}")]
    Zone(#[from] crate::stamp::ZoneError),

    /// The client was asked to send a message the framing cannot carry
    /// (empty in chunk framing, a newline in line framing, over a limit).
    #[error("message cannot be sent in this framing: {0}")]
    InvalidMessage(&'static str),

    /// A reply did not have the shape `[STAMP] MESSAGE`.
    #[error("malformed reply: {0}")]
    MalformedReply(&'static str),

    /// A reply was well formed but did not echo the message that was sent.
    #[error("reply does not echo the message sent (first difference at byte {offset})")]
    EchoMismatch {
        /// Offset in the message where the echo first differs (or ends).
        offset: usize,
    },

    /// A whole reply did not arrive within the client's timeout (see
    /// [`EchoClient::set_timeout`](crate::EchoClient::set_timeout)), however
    /// many bytes of it came.
    #[error("no whole reply within {timeout:?}")]
    ReplyTimeout {
        /// The timeout in force.
        timeout: std::time::Duration,
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

    /// The client was asked to send a datagram any
    /// [`DatagramServer`](crate::datagram::DatagramServer) drops unanswered,
    /// for this reason (see
    /// [`Dropped::for_message`](crate::datagram::Dropped::for_message)):
    /// nothing was sent.
    #[error("a server would drop this datagram unanswered: {0}")]
    Unanswerable(crate::datagram::Dropped),

    /// The server answered with an error datagram instead of an echo; its
    /// text (after the `error: ` prefix) is here.
    #[error("the server answered with an error: {0}")]
    ServerError(String),

    /// A datagram got no reply: it was sent `attempts` times, each time
    /// waiting `timeout` for the reply.
    #[error("no reply after {attempts} attempts, waiting {timeout:?} for each")]
    NoReply {
        /// How many times the request was sent.
        attempts: u32,
        /// How long each attempt waited.
        timeout: std::time::Duration,
    },
}

/// A setting that is out of range, with its name, the value given and what
/// it accepts.
///
/// ```
/// use stamp_echo::{Error, Framing};
///
/// let err = Framing::Chunk { buffer_size: 0 }.validate().unwrap_err();
/// let Error::Config(config) = &err else { panic!("a configuration error") };
/// assert_eq!(config.setting(), "buffer_size");
/// assert_eq!(err.to_string(), "invalid buffer_size 0: expected 1 to 1048576 bytes");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {setting} {value}: expected {expected}")]
pub struct ConfigError {
    setting: &'static str,
    value: String,
    expected: &'static str,
}

impl ConfigError {
    /// `setting` was given `value`, but it accepts only `expected` (a range
    /// or a description, such as `"1 to 1048576 bytes"`).
    pub fn new(setting: &'static str, value: impl std::fmt::Display, expected: &'static str) -> ConfigError {
        ConfigError { setting, value: value.to_string(), expected }
    }

    /// The setting's name, as in the API (`buffer_size`, `max_connections`).
    pub fn setting(&self) -> &'static str {
        self.setting
    }

    /// The value that was given, as text.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What the setting accepts.
    pub fn expected(&self) -> &'static str {
        self.expected
    }
}

impl Error {
    /// Turns a failed read or write into the right variant: an `Error` a
    /// stream wrapper carried through `io` (see [`Error::into_io`]) comes out
    /// as itself, timeouts become [`Error::Timeout`], everything else
    /// [`Error::Io`].
    pub(crate) fn from_io(err: io::Error) -> Self {
        if err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            let kind = err.kind();
            return match err.into_inner().map(|inner| inner.downcast::<Error>()) {
                Some(Ok(carried)) => *carried,
                // Unreachable: checked above; keep the kind anyway.
                _ => Error::Io(kind.into()),
            };
        }
        match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout,
            io::ErrorKind::UnexpectedEof => Error::UnexpectedEof,
            _ => Error::Io(err),
        }
    }

    /// Wraps this error in an [`io::Error`] of `kind`, for a `Read` or
    /// `Write` wrapper to return; [`Error::from_io`] takes it out again.
    pub(crate) fn into_io(self, kind: io::ErrorKind) -> io::Error {
        io::Error::new(kind, self)
    }
}
