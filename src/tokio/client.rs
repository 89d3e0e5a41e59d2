//! [`AsyncEchoClient`] under tokio: send a message, get back its stamped echo,
//! checked.
//!
//! The same thin loop as the blocking [`crate::EchoClient`], around the same
//! I/O-free core: it writes what the [`ReplyChecker`](crate::ReplyChecker)
//! frames and feeds it what it reads, so both clients accept and refuse
//! exactly the same replies, with the same errors.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::TimeoutError;
use crate::client::{Engine, Next, check_timeout};
use crate::{Error, Framing, Reply};

/// Talks to a stamp-echo server (or the original Python one) over any
/// `AsyncRead + AsyncWrite` stream: the async twin of [`crate::EchoClient`].
///
/// ```
/// use stamp_echo::tokio::{AsyncEchoClient, ServerCodec};
/// use stamp_echo::{EchoServer, Framing};
/// use tokio_util::codec::Framed;
/// use futures_util::{SinkExt, TryStreamExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), stamp_echo::Error> {
/// let (near, far) = tokio::io::duplex(64 * 1024); // or a TcpStream
/// let server = EchoServer::builder().framing(Framing::line()).build()?;
/// tokio::spawn(async move {
///     let mut replies = Framed::new(far, ServerCodec::new(&server));
///     while let Some(stamped) = replies.try_next().await? {
///         replies.send(stamped).await?;
///     }
///     Ok::<(), stamp_echo::Error>(())
/// });
///
/// let mut client = AsyncEchoClient::new(near, Framing::line())?;
/// client.set_timeout(Some(std::time::Duration::from_secs(5)))?; // for each whole reply
/// let reply = client.round_trip(b"hi,server").await?;
/// assert_eq!(reply.message(), b"hi,server");
/// println!("{reply}  ({:?})", reply.rtt());
/// # Ok(())
/// # }
/// ```
///
/// For pipelining, [`send`](AsyncEchoClient::send) several messages, then
/// [`receive`](AsyncEchoClient::receive) each reply in order. After an error the
/// client should be dropped: the reply stream is no longer in step.
///
/// **Cancellation.** [`receive`](AsyncEchoClient::receive) is cancel safe: a
/// future dropped before it completes (in a `select!`, or by your own
/// timeout) loses nothing, and the next call resumes the same reply. `send`
/// (and so `round_trip`) is not: a message written in part leaves the stream
/// out of step.
pub struct AsyncEchoClient<S> {
    stream: S,
    engine: Engine,
    timeout: Option<Duration>,
}

impl<S> fmt::Debug for AsyncEchoClient<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncEchoClient")
            .field("checker", self.engine.checker())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncEchoClient<S> {
    /// A client speaking `framing` on `stream`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `framing`'s settings are out of range.
    pub fn new(stream: S, framing: Framing) -> Result<AsyncEchoClient<S>, Error> {
        Ok(AsyncEchoClient { stream, engine: Engine::new(framing)?, timeout: None })
    }

    /// Sends `message` and waits for its whole reply, in one round trip
    /// whatever its size: a message over 64 KiB is written 64 KiB at a time,
    /// reading the echo after each piece until it has caught up, as
    /// [`crate::EchoClient::round_trip`] does (the server echoes a message as
    /// it arrives, so writing it whole first would stall once the socket
    /// buffers are full). The [timeout](AsyncEchoClient::set_timeout) bounds each
    /// of these waits too.
    ///
    /// # Errors
    ///
    /// Those of [`send`](AsyncEchoClient::send) and [`receive`](AsyncEchoClient::receive).
    pub async fn round_trip(&mut self, message: &[u8]) -> Result<Reply, Error> {
        self.send(message).await?;
        self.receive().await
    }

    /// Sends `message` without waiting for the reply (but reading the echo
    /// of a message over 64 KiB as it is written, keeping the replies that
    /// come meanwhile for [`receive`](AsyncEchoClient::receive)).
    ///
    /// # Errors
    ///
    /// [`Error::Message`], without sending anything, if the framing
    /// cannot carry the message (see [`ReplyChecker::send`](crate::ReplyChecker::send));
    /// [`Error::Io`] if writing fails; while a long message is written,
    /// those of [`receive`](AsyncEchoClient::receive).
    ///
    /// # Panics
    ///
    /// As [`receive`](AsyncEchoClient::receive), for a message over 64 KiB.
    pub async fn send(&mut self, message: &[u8]) -> Result<(), Error> {
        self.engine.send(message)?;
        // The deadline of the current wait for echo, from its first read.
        let mut deadline = None;
        loop {
            match self.engine.next()? {
                Next::Write(bytes) => {
                    let n = bytes.len();
                    write_all(&mut self.stream, bytes).await.map_err(Error::from_io)?;
                    self.engine.wrote(n);
                    deadline = None;
                }
                Next::Read => match self.timeout {
                    None => self.fill().await?,
                    Some(timeout) => {
                        let at = *deadline.get_or_insert_with(|| ::tokio::time::Instant::now() + timeout);
                        match ::tokio::time::timeout_at(at, self.fill()).await {
                            Ok(result) => result?,
                            Err(_elapsed) => return Err(TimeoutError::Reply { timeout }.into()),
                        }
                    }
                },
                Next::Done => return Ok(()),
            }
        }
    }

    /// Reads more of the reply stream, once everything read is checked.
    async fn fill(&mut self) -> Result<(), Error> {
        let mut spare = ReadBuf::new(self.engine.spare());
        poll_fn(|cx| Pin::new(&mut self.stream).poll_read(cx, &mut spare)).await.map_err(Error::from_io)?;
        let n = spare.filled().len();
        self.engine.filled(n)
    }

    /// Reads the reply to the oldest message sent and not yet answered, and
    /// checks that it echoes that message.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::EchoMismatch`](crate::ProtocolError::EchoMismatch) or [`ProtocolError::MalformedReply`](crate::ProtocolError::MalformedReply) for a wrong reply
    /// (bytes that arrive when nothing is in flight are a reply to no
    /// message); [`ProtocolError::UnexpectedEof`](crate::ProtocolError::UnexpectedEof) if the server closes first;
    /// [`TimeoutError::Reply`] if a [timeout](AsyncEchoClient::set_timeout) is set
    /// and the whole reply has not come within it; [`Error::Io`] if reading
    /// fails.
    ///
    /// # Panics
    ///
    /// With a timeout set, when the runtime has no timer (tokio's own panic:
    /// build the runtime with `enable_time`, or `enable_all` as
    /// `#[tokio::main]` does).
    pub async fn receive(&mut self) -> Result<Reply, Error> {
        match self.timeout {
            None => self.receive_whole().await,
            Some(timeout) => match ::tokio::time::timeout(timeout, self.receive_whole()).await {
                Ok(result) => result,
                Err(_elapsed) => Err(Error::Timeout(TimeoutError::Reply { timeout })),
            },
        }
    }

    /// Reads until the bytes read hold a whole reply.
    async fn receive_whole(&mut self) -> Result<Reply, Error> {
        loop {
            if let Some(reply) = self.engine.next_reply()? {
                return Ok(reply);
            }
            self.fill().await?;
        }
    }

    /// Bounds the wait for each whole reply (`None`, the default: no bound).
    ///
    /// It is a deadline, not an idle timeout: a server trickling a byte now
    /// and then cannot keep [`receive`](AsyncEchoClient::receive) (or
    /// [`round_trip`](AsyncEchoClient::round_trip)) waiting past it. On expiry
    /// they fail with [`TimeoutError::Reply`]. Writes are not bounded by it
    /// (wrap `send` in `tokio::time::timeout` for that).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a zero timeout.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        self.timeout = check_timeout(timeout)?;
        Ok(())
    }

    /// The reply deadline set by [`set_timeout`](AsyncEchoClient::set_timeout).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The framing in use.
    pub fn framing(&self) -> Framing {
        self.engine.checker().framing()
    }

    /// Messages sent whose replies have not been received yet.
    pub fn in_flight(&self) -> usize {
        self.engine.in_flight()
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream, mutably. Reading from it directly may take bytes of a
    /// reply.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Gives back the stream.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

/// Writes all of `bytes` and flushes: tokio's `write_all` and `flush`,
/// without its `io-util` feature (so the runner builds without `bytes`).
async fn write_all<S: AsyncWrite + Unpin>(stream: &mut S, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match poll_fn(|cx| Pin::new(&mut *stream).poll_write(cx, bytes)).await {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    poll_fn(|cx| Pin::new(&mut *stream).poll_flush(cx)).await
}
