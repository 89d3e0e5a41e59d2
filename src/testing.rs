//! Helpers for testing code that uses this crate.
//!
//! [`Duplex`] is an in-memory stream: reads come from a script of byte
//! strings, one script entry at most per read, so a test decides exactly how
//! the input is split; writes are collected for inspection.
//!
//! [`LocalServer`] is a real server on `127.0.0.1` and a free port, for tests
//! (yours, in another crate) that need one to talk to.

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
