//! `tokio_util::codec` encoders and decoders for each framing, on both sides,
//! over the same I/O-free cores as the blocking drivers.
//!
//! - [`ServerCodec`] turns requests into stamped replies: its decoder hands
//!   out, per read, the framed replies to every message completed by it
//!   (through [`Responder`], so limits, errors and stamps are the
//!   [`EchoServer`]'s), and its encoder writes them out. Stamped echo over a
//!   `Framed` is one loop:
//!
//! ```
//! use futures_util::{SinkExt, TryStreamExt};
//! use stamp_echo::tokio::ServerCodec;
//! use stamp_echo::{EchoServer, Framing};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tokio_util::codec::Framed;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut client, stream) = tokio::io::duplex(64 * 1024); // or a TcpStream
//! let server = EchoServer::builder().framing(Framing::line()).build()?;
//! let serving = tokio::spawn(async move {
//!     let mut framed = Framed::new(stream, ServerCodec::new(&server));
//!     while let Some(replies) = framed.try_next().await? {
//!         framed.send(replies).await?;
//!     }
//!     Ok::<(), stamp_echo::Error>(())
//! });
//!
//! client.write_all(b"hi,server\nbye").await?;
//! client.shutdown().await?; // end of input: the last line is answered too
//! let mut replies = String::new();
//! client.read_to_string(&mut replies).await?;
//! serving.await??;
//! let lines: Vec<&str> = replies.lines().collect();
//! assert_eq!(lines.len(), 2);
//! assert!(lines[0].starts_with('[') && lines[0].ends_with("] hi,server"));
//! assert!(lines[1].ends_with("] bye"));
//! # Ok(())
//! # }
//! ```
//!
//! - [`ClientCodec`] is the client side: its encoder frames messages
//!   (`&[u8]`) through [`ReplyChecker::send`](crate::ReplyChecker::send),
//!   which records them, and its decoder hands out each [`Reply`] checked by
//!   [`ReplyChecker::receive`](crate::ReplyChecker::receive), as
//!   [`crate::EchoClient`] does; pipelining is sending several messages
//!   before reading.
//!
//! **Allocations.** Neither codec allocates per message in steady state
//! beyond what its item needs: a [`Reply`] owns its message and stamps (as
//! the clients' replies do), and the server's replies are handed out as a
//! [`BytesMut`] split off a buffer the codec keeps, whose room is reused once
//! the previous replies are written (`Framed` drops them then). Both decoders
//! take every byte of their input at once (the cores keep what they need), so
//! `Framed`'s read buffer never grows past one read.

use std::fmt;

use tokio_util::bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::ProtocolError;
use crate::client::Engine;
use crate::protocol::Responder;
use crate::{EchoServer, Error, Framing, Reply, Summary};

/// The server side: requests in, stamped replies out. See the
/// [module docs](self) for an example.
///
/// Each call of [`decode`](Decoder::decode) is one read of the
/// [`EchoServer`]: the messages it completes are stamped with one reading of
/// the server's clock (in chunk framing, the read is cut into reads of the
/// framing's `buffer_size`, as the blocking server reads). At the end of
/// input, [`decode_eof`](Decoder::decode_eof) answers a message held back (a
/// last line without a newline), as [`EchoServer::serve`] does.
///
/// Errors are those of [`Responder::receive`]: a message over the framing's
/// limit, a truncated frame at the end of input. The replies to the messages
/// received whole before the error are handed out first; the error comes on
/// the next call. After an error, drop the codec (`Framed` stops there).
///
/// A codec has no clock of its own for deadlines: a peer that sends nothing,
/// trickles a message or stops reading holds a `Framed` loop for ever unless
/// you wrap its reads and writes in `tokio::time::timeout`. The memory it
/// keeps is bounded by the framing's limit, whatever the peer sends.
pub struct ServerCodec {
    server: EchoServer,
    responder: Responder,
    /// The replies of one read, as the responder writes them.
    out: Vec<u8>,
    /// Where replies are handed out from.
    replies: BytesMut,
    /// An error found after replies that had to go out first.
    failed: Option<Error>,
}

impl fmt::Debug for ServerCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCodec")
            .field("server", &self.server)
            .field("summary", &self.responder.summary())
            .finish_non_exhaustive()
    }
}

impl ServerCodec {
    /// A codec for one connection of `server` (its framing, stamp and clock).
    pub fn new(server: &EchoServer) -> ServerCodec {
        ServerCodec {
            server: server.clone(),
            responder: server.responder(),
            out: Vec::new(),
            replies: BytesMut::new(),
            failed: None,
        }
    }

    /// The connection's counts so far.
    pub fn summary(&self) -> Summary {
        self.responder.summary()
    }

    /// Answers `input` (`None`: the end of input) and hands out its replies.
    fn answer(&mut self, input: Option<&[u8]>) -> Result<Option<BytesMut>, Error> {
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        let now = self.server.now();
        self.out.clear();
        let result = match input {
            None => self.responder.finish(now, &mut self.out).map(drop),
            Some(input) => {
                let read = match self.responder.framing() {
                    Framing::Chunk { buffer_size } => buffer_size.max(1),
                    _ => input.len().max(1),
                };
                input.chunks(read).try_for_each(|read| self.responder.receive(read, now, &mut self.out).map(drop))
            }
        };
        if let Err(error) = result {
            if self.out.is_empty() {
                return Err(error);
            }
            self.failed = Some(error);
        }
        if self.out.is_empty() {
            return Ok(None);
        }
        self.replies.extend_from_slice(&self.out);
        Ok(Some(self.replies.split()))
    }
}

impl Decoder for ServerCodec {
    type Item = BytesMut;
    type Error = Error;

    /// Takes all of `src` and returns the replies to the messages it
    /// completes, if any.
    ///
    /// # Errors
    ///
    /// See [`ServerCodec`].
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, Error> {
        if src.is_empty() && self.failed.is_none() {
            return Ok(None);
        }
        let replies = self.answer(Some(src));
        src.clear();
        replies
    }

    /// Answers what `src` holds, then a message held back at the end of
    /// input.
    ///
    /// # Errors
    ///
    /// See [`ServerCodec`]; [`ProtocolError::TruncatedFrame`] for half a frame.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, Error> {
        match self.decode(src)? {
            Some(replies) => Ok(Some(replies)),
            None => self.answer(None),
        }
    }
}

impl Encoder<BytesMut> for ServerCodec {
    type Error = Error;

    /// Writes replies handed out by the decoder (or any bytes) as they are.
    fn encode(&mut self, replies: BytesMut, dst: &mut BytesMut) -> Result<(), Error> {
        dst.extend_from_slice(&replies);
        Ok(())
    }
}

/// The client side: messages out (`&[u8]`), checked [`Reply`] values in.
///
/// ```
/// use futures_util::{SinkExt, TryStreamExt};
/// use stamp_echo::tokio::{ClientCodec, ServerCodec};
/// use stamp_echo::{EchoServer, Framing};
/// use tokio_util::codec::Framed;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), stamp_echo::Error> {
/// let (near, far) = tokio::io::duplex(64 * 1024);
/// let server = EchoServer::builder().framing(Framing::length_prefixed()).build()?;
/// tokio::spawn(async move {
///     let mut framed = Framed::new(far, ServerCodec::new(&server));
///     while let Some(replies) = framed.try_next().await? {
///         framed.send(replies).await?;
///     }
///     Ok::<(), stamp_echo::Error>(())
/// });
///
/// let mut client = Framed::new(near, ClientCodec::new(Framing::length_prefixed())?);
/// // Pipelined: three messages, then their replies, in order.
/// for message in [&b"one"[..], b"two", b"three"] {
///     client.feed(message).await?;
/// }
/// client.flush().await?;
/// for expected in [&b"one"[..], b"two", b"three"] {
///     let reply = client.try_next().await?.ok_or(stamp_echo::ProtocolError::UnexpectedEof)?;
///     assert_eq!(reply.message(), expected);
/// }
/// # Ok(())
/// # }
/// ```
///
/// A reply's round trip is measured from when its message was encoded (with
/// `feed`, `send`), not from when it left the write buffer. Errors are those
/// of [`crate::EchoClient`]; at the end of input with replies still awaited
/// the decoder fails with [`ProtocolError::UnexpectedEof`]. After an error the codec
/// stays failed.
#[derive(Debug)]
pub struct ClientCodec {
    engine: Engine,
    /// One framed message, before it is copied to the write buffer.
    scratch: Vec<u8>,
}

impl ClientCodec {
    /// A codec speaking `framing`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `framing`'s settings are out of range.
    pub fn new(framing: Framing) -> Result<ClientCodec, Error> {
        Ok(ClientCodec { engine: Engine::new(framing)?, scratch: Vec::new() })
    }

    /// The framing in use.
    pub fn framing(&self) -> Framing {
        self.engine.checker().framing()
    }

    /// Messages encoded whose replies have not been decoded yet.
    pub fn in_flight(&self) -> usize {
        self.engine.checker().in_flight()
    }
}

impl Decoder for ClientCodec {
    type Item = Reply;
    type Error = Error;

    /// Checks all of `src` up to the end of the next whole reply.
    ///
    /// # Errors
    ///
    /// Those of [`crate::EchoClient::receive`] for a wrong reply.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Reply>, Error> {
        let (consumed, reply) = self.engine.check(src)?;
        src.advance(consumed);
        Ok(reply)
    }

    /// As [`decode`](ClientCodec::decode); at the end of the replies with
    /// messages in flight, [`ProtocolError::UnexpectedEof`].
    ///
    /// # Errors
    ///
    /// See above.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Reply>, Error> {
        match self.decode(src)? {
            Some(reply) => Ok(Some(reply)),
            None if self.in_flight() > 0 => Err(Error::Protocol(ProtocolError::UnexpectedEof)),
            None => Ok(None),
        }
    }
}

impl Encoder<&[u8]> for ClientCodec {
    type Error = Error;

    /// Frames `message` into `dst` and records it.
    ///
    /// # Errors
    ///
    /// [`Error::Message`], writing nothing, if the framing cannot
    /// carry `message` (see [`ReplyChecker::send`](crate::ReplyChecker::send)).
    fn encode(&mut self, message: &[u8], dst: &mut BytesMut) -> Result<(), Error> {
        self.scratch.clear();
        self.engine.frame(message, &mut self.scratch)?;
        dst.extend_from_slice(&self.scratch);
        Ok(())
    }
}
