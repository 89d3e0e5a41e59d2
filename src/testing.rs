//! Helpers for testing code that uses this crate.
//!
//! [`Duplex`] is an in-memory stream: reads come from a script of byte
//! strings, one script entry at most per read, so a test decides exactly how
//! the input is split; writes are collected for inspection.
//!
//! [`LocalServer`] is a real server on `127.0.0.1` and a free port, for tests
//! (yours, in another crate) that need one to talk to; `AsyncLocalServer`
//! (with the `tokio` feature) is the same on the tokio runner, for `async`
//! tests.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::runner::{self, Handle, Limits, Totals};
use crate::{EchoClient, EchoServer, Error, Framing};

/// An in-memory `Read + Write` stream with scripted reads.
#[derive(Clone, Debug, Default)]
pub struct Duplex {
    reads: VecDeque<Vec<u8>>,
    output: Vec<u8>,
}

impl Duplex {
    /// A stream whose input is `input`, handed out as the reader asks.
    pub fn new(input: Vec<u8>) -> Duplex {
        Duplex::from_reads([input])
    }

    /// A stream whose reads return these pieces, in order: one read never
    /// returns bytes of two pieces (a piece larger than the reader's buffer
    /// takes several reads). After the last piece, reads return 0: end of input.
    pub fn from_reads<I: IntoIterator<Item = Vec<u8>>>(reads: I) -> Duplex {
        Duplex { reads: reads.into_iter().filter(|r| !r.is_empty()).collect(), output: Vec::new() }
    }

    /// Everything written so far.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Takes everything written so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(front) = self.reads.front_mut() else { return Ok(0) };
        let n = front.len().min(buf.len());
        buf[..n].copy_from_slice(&front[..n]);
        front.drain(..n);
        if front.is_empty() {
            self.reads.pop_front();
        }
        Ok(n)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Any blocking `Read + Write` as an `AsyncRead + AsyncWrite` that is
/// always ready (with the `tokio` feature): a [`Duplex`] script, or your own
/// in-memory stream, drives [`crate::tokio::serve`] as it drives
/// [`EchoServer::serve`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// use stamp_echo::{EchoServer, Framing, stamp::Ctime, testing::{Duplex, Ready}};
///
/// let server = EchoServer::builder().framing(Framing::line()).stamp(Ctime::utc()).build()?;
/// let mut stream = Ready(Duplex::from_reads([b"hi,se".to_vec(), b"rver\n".to_vec()]));
/// let summary = stamp_echo::tokio::serve(&server, &mut stream).await?;
/// assert_eq!(summary.messages, 1);
/// assert!(stream.0.output().ends_with(b"] hi,server\n"));
/// # Ok::<(), stamp_echo::Error>(()) })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[derive(Clone, Debug, Default)]
pub struct Ready<S>(pub S);

#[cfg(feature = "tokio")]
impl<S: Read + Unpin> ::tokio::io::AsyncRead for Ready<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut ::tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let n = self.get_mut().0.read(buf.initialize_unfilled());
        std::task::Poll::Ready(n.map(|n| buf.advance(n)))
    }
}

#[cfg(feature = "tokio")]
impl<S: Write + Unpin> ::tokio::io::AsyncWrite for Ready<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::task::Poll::Ready(self.get_mut().0.write(buf))
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, _cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(self.get_mut().0.flush())
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// A server on `127.0.0.1` and a port the system picks, served by the
/// [`runner`] on background threads, and shut down when dropped.
///
/// ```
/// use stamp_echo::{EchoServer, Framing, testing::LocalServer};
///
/// let server = LocalServer::start(EchoServer::builder().framing(Framing::line()).build()?)?;
/// let mut client = server.client()?; // or TcpStream::connect(server.addr())
/// assert_eq!(client.round_trip(b"hello")?.message(), b"hello");
/// # Ok::<(), stamp_echo::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "dropping the LocalServer shuts it down"]
pub struct LocalServer {
    handle: Handle,
    addr: SocketAddr,
    framing: Framing,
}

impl LocalServer {
    /// Serves `server` with the default [`Limits`].
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the loopback listener cannot be bound.
    pub fn start(server: EchoServer) -> Result<LocalServer, Error> {
        LocalServer::with_limits(server, Limits::default())
    }

    /// Serves `server` with these limits.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for limits out of range; [`Error::Io`] if the loopback listener cannot be bound.
    pub fn with_limits(server: EchoServer, limits: Limits) -> Result<LocalServer, Error> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let framing = server.framing();
        let handle = runner::start(listener, server, limits, ())?;
        Ok(LocalServer { handle, addr, framing })
    }

    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A new connection, with a client speaking the server's framing.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the connection fails.
    pub fn client(&self) -> Result<EchoClient<TcpStream>, Error> {
        EchoClient::new(TcpStream::connect(self.addr)?, self.framing)
    }

    /// The runner's handle, for its counts.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Shuts the server down (see [`Handle::shutdown`]) and returns its totals.
    pub fn shutdown(self, deadline: Duration) -> Totals {
        self.handle.shutdown(deadline)
    }
}

/// A server on `127.0.0.1` and a port the system picks, served by the tokio
/// [`runner`](crate::tokio::runner) on the current runtime, for `async`
/// tests; shut down when dropped.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
/// use std::time::Duration;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use stamp_echo::{EchoServer, Framing, testing::AsyncLocalServer};
///
/// let server = AsyncLocalServer::start(EchoServer::builder().framing(Framing::line()).build()?).await?;
/// let mut stream = tokio::net::TcpStream::connect(server.addr()).await?;
/// stream.write_all(b"hello\n").await?;
/// stream.shutdown().await?;
/// let mut reply = String::new();
/// stream.read_to_string(&mut reply).await?;
/// assert!(reply.ends_with("] hello\n"), "{reply}");
/// assert_eq!(server.shutdown(Duration::from_secs(5)).await.messages, 1);
/// # Ok::<(), stamp_echo::Error>(()) })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[derive(Debug)]
#[must_use = "dropping the AsyncLocalServer shuts it down"]
pub struct AsyncLocalServer {
    handle: Handle,
    addr: SocketAddr,
}

#[cfg(feature = "tokio")]
impl AsyncLocalServer {
    /// Serves `server` with the default [`Limits`].
    ///
    /// # Errors
    ///
    /// As [`AsyncLocalServer::with_limits`].
    pub async fn start(server: EchoServer) -> Result<AsyncLocalServer, Error> {
        AsyncLocalServer::with_limits(server, Limits::default()).await
    }

    /// Serves `server` with these limits.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for limits out of range, [`Error::Io`] if no port
    /// can be bound or there is no runtime.
    pub async fn with_limits(server: EchoServer, limits: Limits) -> Result<AsyncLocalServer, Error> {
        let listener = ::tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let handle = crate::tokio::runner::start(listener, server, limits, ())?;
        Ok(AsyncLocalServer { handle, addr })
    }

    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The runner's handle, for its counts.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Shuts the server down (see [`Handle::shutdown_async`])
    /// and returns its totals.
    pub async fn shutdown(self, deadline: Duration) -> Totals {
        self.handle.shutdown_async(deadline).await
    }
}
