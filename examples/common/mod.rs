//! Flags shared by the examples: where to connect or listen, and the protocol.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;

use stamp_echo::Framing;
use stamp_echo::stamp::StampKind;

/// Where the server listens (or the client connects), and how they talk.
#[derive(clap::Args, Debug, Clone)]
pub struct Endpoint {
    /// Host name or IP address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// TCP port; 0 lets the server pick a free one.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,

    /// A Unix domain socket path, instead of TCP.
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,

    /// What a message is: chunk (each read, the original's), line, or length (4-byte prefix).
    #[arg(long, default_value = "chunk", value_name = "chunk|line|length")]
    pub framing: Framing,

    /// Stamp text: ctime (local, like Python's time.ctime()), ctime-utc, rfc3339 or unix.
    #[arg(long, default_value = "ctime", value_name = "ctime|ctime-utc|rfc3339|unix")]
    pub stamp: StampKind,

    /// Chunk framing: the most bytes read as one message.
    #[arg(long, default_value_t = Framing::DEFAULT_BUFFER_SIZE, value_parser = |t: &str| limit(t, Framing::chunk()))]
    pub buffer_size: usize,

    /// Line framing: the longest line, without its line ending.
    #[arg(long, default_value_t = Framing::DEFAULT_MAX_LINE, value_parser = |t: &str| limit(t, Framing::line()))]
    pub max_line: usize,

    /// Length framing: the longest frame payload.
    #[arg(long, default_value_t = Framing::DEFAULT_MAX_FRAME, value_parser = |t: &str| limit(t, Framing::length_prefixed()))]
    pub max_frame: usize,
}

/// A framing limit flag, checked against the library's bounds for its
/// framing whichever framing is chosen, so no flag takes an absurd value.
fn limit(text: &str, framing: Framing) -> Result<usize, String> {
    let value: usize = text.parse().map_err(|e| format!("{text:?}: {e}"))?;
    framing.with_limit(value).validate().map_err(|e| e.to_string())?;
    Ok(value)
}

impl Endpoint {
    /// The framing chosen, with its limit from the matching flag.
    pub fn framing(&self) -> Framing {
        let limit = match self.framing {
            Framing::Chunk { .. } => self.buffer_size,
            Framing::Line { .. } => self.max_line,
            _ => self.max_frame,
        };
        self.framing.with_limit(limit)
    }

    /// `host:port`, for TCP.
    pub fn tcp_addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `e`, its message behind `what` failed: `cannot bind 127.0.0.1:7000:
/// Address already in use (os error 98)`.
#[allow(dead_code, reason = "not every example that includes this module uses it")]
pub fn named(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[allow(dead_code, reason = "not every example that includes this module uses each of these")]
impl Endpoint {
    /// The TCP (or UDP) addresses `--host` and `--port` name; an error
    /// names the host: `cannot look up nowhere.invalid:8080: ...`.
    pub fn lookup(&self) -> io::Result<Vec<SocketAddr>> {
        let addr = self.tcp_addr();
        let found: Vec<SocketAddr> =
            addr.as_str().to_socket_addrs().map_err(|e| named(e, format_args!("cannot look up {addr}")))?.collect();
        if found.is_empty() {
            let why = format!("cannot look up {addr}: no address found");
            return Err(io::Error::new(io::ErrorKind::NotFound, why));
        }
        Ok(found)
    }

    /// The first address `--host` and `--port` name (see [`lookup`](Endpoint::lookup)).
    pub fn first_addr(&self) -> io::Result<SocketAddr> {
        let found = self.lookup()?;
        found.first().copied().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address found"))
    }

    /// Connects over TCP to the first address of the host that answers; an
    /// error names the host, or the address that refused:
    /// `cannot connect to 127.0.0.1:8080: Connection refused (os error 111)`.
    pub fn connect_tcp(&self) -> io::Result<TcpStream> {
        let mut failed = None;
        for addr in self.lookup()? {
            match TcpStream::connect(addr) {
                Ok(stream) => return Ok(stream),
                Err(e) => failed = Some(named(e, format_args!("cannot connect to {addr}"))),
            }
        }
        Err(failed.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address to connect to")))
    }

    /// Connects to the `--unix` socket; an error names the path.
    #[cfg(unix)]
    pub fn connect_unix(&self, path: &std::path::Path) -> io::Result<std::os::unix::net::UnixStream> {
        std::os::unix::net::UnixStream::connect(path)
            .map_err(|e| named(e, format_args!("cannot connect to {}", stamp_echo::escape::escape_path(path))))
    }
}
