//! The hostile suite's flags before its attack: where the server is and what
//! a message is. (`stamp-echo`'s own flags are in `cli/src/args.rs`, another
//! package; what both need to agree on, the framings and their limits' bounds,
//! comes from the library, so nothing here repeats it: a framing named here
//! has the library's default limit.)

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;

use stamp_echo::Framing;

/// Where the server listens, and how it frames messages.
#[derive(clap::Args, Debug, Clone)]
pub struct Endpoint {
    /// Host name or IP address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// TCP (or UDP) port.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,

    /// A Unix domain socket path, instead of TCP.
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,

    /// What a message is: chunk (each read, the original's), line, or length (4-byte prefix), with its default limit.
    #[arg(long, default_value = "chunk", value_name = "chunk|line|length")]
    framing: Framing,
}

/// `e`, its message behind `what` failed: `cannot bind 127.0.0.1:7000:
/// Address already in use (os error 98)`.
pub fn named(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Endpoint {
    /// The framing chosen.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The first address `--host` and `--port` name; an error names them.
    pub fn first_addr(&self) -> io::Result<SocketAddr> {
        let what = || format!("cannot look up {}:{}", self.host, self.port);
        let mut found = (self.host.as_str(), self.port).to_socket_addrs().map_err(|e| named(e, what()))?;
        found.next().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{}: no address found", what())))
    }

    /// Connects over TCP; an error names the address.
    pub fn connect_tcp(&self) -> io::Result<TcpStream> {
        let addr = self.first_addr()?;
        TcpStream::connect(addr).map_err(|e| named(e, format_args!("cannot connect to {addr}")))
    }

    /// Connects to the `--unix` socket; an error names the path.
    #[cfg(unix)]
    pub fn connect_unix(&self, path: &std::path::Path) -> io::Result<std::os::unix::net::UnixStream> {
        std::os::unix::net::UnixStream::connect(path)
            .map_err(|e| named(e, format_args!("cannot connect to {}", stamp_echo::escape::escape_path(path))))
    }
}
