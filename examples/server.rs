//! The tutorial's timestamp echo server, serving any number of clients at once.
//!
//! `cargo run --example server` listens on 127.0.0.1:8080 in chunk framing with
//! local ctime stamps, and logs like the original. Ctrl-C or SIGTERM shuts it
//! down gracefully and prints a one-line summary. `--help` lists the flags.
//!
//! With `--udp` it serves UDP instead: each datagram gets one reply datagram
//! (framing does not apply), except those that could make it loop or reflect,
//! and replies over `--udp-rate` per source address; Ctrl-C prints its counts.
//!
//! With `--unix PATH`, a socket file left behind by a server that is gone
//! (nothing accepts on it) is replaced; a live one, or a file that is not a
//! socket, is an error. The socket file is removed at shutdown.
mod common;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use socket2::{Domain, SockAddr, Socket, Type};
use stamp_echo::datagram::{DatagramObserver, DatagramServer, DropCounts, Dropped, RateLimit};
use stamp_echo::runner::{self, Listener, Peer};
use stamp_echo::{EchoServer, Error, Events, Fragment, Limits, Summary};

/// The timestamp echo server: answers every message with `[STAMP] MESSAGE`.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    endpoint: common::Endpoint,

    /// Listen backlog: connections the kernel holds until they are accepted
    /// (the original's listen(5)).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(i32).range(1..))]
    backlog: i32,

    /// The most clients served at once; more wait in the backlog.
    #[arg(long, default_value_t = Limits::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,

    /// Seconds a client may send nothing before it is disconnected (0: never).
    #[arg(long, default_value = "300", value_parser = seconds, value_name = "SECONDS")]
    idle_timeout: Duration,

    /// Seconds given to open connections to finish at shutdown before they are closed.
    #[arg(long, default_value = "5", value_parser = seconds, value_name = "SECONDS")]
    shutdown_deadline: Duration,

    /// Log only the listening address and the summary, not each connection and message.
    #[arg(long)]
    quiet: bool,

    /// Serve UDP datagrams instead of TCP connections (each datagram is a message).
    #[arg(long, conflicts_with = "unix")]
    udp: bool,

    /// UDP: replies per second to one source address, once its burst is used.
    #[arg(long, requires = "udp", default_value_t = RateLimit::DEFAULT_REPLIES, value_name = "REPLIES")]
    udp_rate: u32,

    /// UDP: replies one source address may get at once.
    #[arg(long, requires = "udp", default_value_t = RateLimit::DEFAULT_BURST, value_name = "REPLIES")]
    udp_burst: u32,
}

/// `SECONDS`, fractions allowed.
fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"))
}

/// One line on stdout. Stdout is line-buffered, so each line is out at once;
/// a closed stdout is no reason to stop serving.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stdout().lock(), $($arg)*);
    }};
}

/// The original's log lines.
struct Log;

impl Events for Log {
    fn accepting(&self) {
        say!("waiting for connection...");
    }
    fn accept_failed(&self, error: &io::Error) {
        say!("...accept failed: {error}");
    }
    fn connected(&self, peer: &Peer) {
        say!("...connected from: {peer}");
    }
    fn message(&self, _peer: &Peer, fragment: Fragment<'_>) {
        say!("date= {}", String::from_utf8_lossy(fragment.bytes()));
    }
    fn closed(&self, peer: &Peer, _summary: &Summary, error: Option<&Error>) {
        if let Some(error) = error {
            say!("...connection from {peer} ended: {error}");
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let (stamp, fallback) = args.endpoint.stamp.build();
    if let Some(why) = fallback {
        eprintln!("warning: local time zone not found ({why}); stamping UTC");
    }
    if args.udp {
        return serve_udp(args, stamp);
    }
    let server = EchoServer::builder().framing(args.endpoint.framing()).shared_stamp(stamp).build()?;
    let limits = Limits::default()
        .max_connections(args.max_connections)
        .idle_timeout(Some(args.idle_timeout).filter(|t| !t.is_zero()));
    limits.validate()?;

    let (listener, unix_path) = match &args.endpoint.unix {
        Some(path) => (Listener::from(bind_unix(path, args.backlog)?), Some(path)),
        None => (Listener::from(bind_tcp(&args.endpoint.tcp_addr(), args.backlog)?), None),
    };
    say!("listening on {}", listener.local_addr()?);

    let (stop_tx, stop_rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })?;
    // `()` observes nothing, at no cost per message.
    let handle = if args.quiet {
        runner::start(listener, server, limits, ())?
    } else {
        runner::start(listener, server, limits, Log)?
    };

    let _ = stop_rx.recv();
    let totals = handle.shutdown(args.shutdown_deadline);
    if let Some(path) = unix_path {
        let _ = std::fs::remove_file(path);
    }
    say!("shut down: {totals}");
    Ok(())
}

fn serve_udp(
    args: &Args,
    stamp: std::sync::Arc<dyn stamp_echo::stamp::Stamp>,
) -> Result<(), Box<dyn std::error::Error>> {
    let limit = RateLimit::default().replies(args.udp_rate, Duration::from_secs(1)).burst(args.udp_burst);
    // Settings are checked before anything is bound, and named as flags.
    if let Err(Error::Config(e)) = limit.validate() {
        let flag = if e.setting() == "burst" { "--udp-burst" } else { "--udp-rate" };
        return Err(format!("{flag}: {e}").into());
    }
    let server = DatagramServer::new(UdpSocket::bind(args.endpoint.tcp_addr())?, stamp)?.rate_limit(limit)?;
    let stopper = server.stopper();
    ctrlc::set_handler(move || drop(stopper.stop()))?;
    say!("listening on {} (udp)", server.local_addr()?);
    let totals = if args.quiet { server.serve()? } else { server.serve_with(UdpLog::default())? };
    say!("stopped: {totals}");
    Ok(())
}

/// The UDP log: a line per datagram answered, and for drops a line at the
/// 1st, 10th, 100th, ... of each reason, so a flood cannot flood the log.
#[derive(Default)]
struct UdpLog {
    dropped: DropCounts,
}

impl DatagramObserver for UdpLog {
    fn datagram(&mut self, from: SocketAddr, message: &[u8]) {
        say!("...datagram from {from}: {}", String::from_utf8_lossy(message));
    }
    fn error(&mut self, from: SocketAddr, error: &Error) {
        say!("...error for {from}: {error}");
    }
    fn dropped(&mut self, from: SocketAddr, reason: Dropped) {
        let count = self.dropped.record(reason);
        if count.checked_ilog10().is_some_and(|power| count == 10u64.pow(power)) {
            say!("...dropped a datagram from {from} ({reason}): {count} so far");
        }
    }
}

fn bind_tcp(addr: &str, backlog: i32) -> io::Result<TcpListener> {
    let addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address found")))?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Restart at once on the same port, despite connections in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

fn bind_unix(path: &Path, backlog: i32) -> io::Result<UnixListener> {
    remove_stale_socket(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Removes a socket file nothing listens on any more; refuses to touch a live
/// socket or a file that is not a socket.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    let in_use = |why: &str| io::Error::new(io::ErrorKind::AddrInUse, format!("{}: {why}", path.display()));
    if !meta.file_type().is_socket() {
        return Err(in_use("exists and is not a socket"));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(in_use("another server is listening on it")),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Err(e) => Err(e),
    }
}
