//! `stamp-echo serve`: the tutorial's server, serving any number of clients
//! at once, over TCP, a Unix socket or UDP (each datagram one reply, except
//! those that could make it loop or reflect, replies over `--udp-rate` per
//! source and over `--udp-total` a second to all sources together), a socket handed over by systemd
//! (`LISTEN_FDS`), or one connection on stdin/stdout as inetd runs it.
//!
//! Behind a load balancer, `--proxy-protocol --trusted-proxy ADDR[/PREFIX]`
//! (repeatable) takes the PROXY protocol (v1 or v2, as HAProxy's
//! `send-proxy` and `send-proxy-v2` send it) from those addresses only: each
//! connection from them must start with a header within
//! `--proxy-header-timeout`, and the log, fairness and limits see the
//! client it names. A header from anyone else is refused.
//!
//! With `--unix PATH`, a socket file left behind by a server that is gone
//! (nothing accepts on it) is replaced; a live one, or a file that is not a
//! socket, is an error. At exit the path is removed only if it is still the
//! socket this server created (same device and inode).

use std::io::{self, Read, Write};
use std::net::{TcpListener, ToSocketAddrs, UdpSocket};
#[cfg(unix)]
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use stamp_echo::datagram::{DatagramServer, DropCounts, Dropped, RateLimit};
use stamp_echo::escape::{escape, escape_path};
use stamp_echo::runner::{Addr, Listener, Peer, ProxyProtocol, Refusal, TracingEvents, TrustedProxy};
use stamp_echo::{Bound, ConfigError, EchoServer, Error, Events, Fragment, Limits, Summary};

use crate::args::{Dur, Endpoint, bounded, default_of, duration, duration_help, help, none_if_zero};
use crate::log::{Format, Log, Rate};
use crate::running::{self, Runtime};

/// The listen backlog's range and default.
const BACKLOG: Bound<i32> = Bound::new("backlog", 1, 65_535).with_default(1024);
/// How long open connections get at shutdown.
const SHUTDOWN_DEADLINE: Bound<Duration> =
    Bound::new("shutdown_deadline", Duration::ZERO, Limits::MAX_TIMEOUT).with_default(Duration::from_secs(5));
/// Message lines logged per second at most.
const LOG_RATE: Bound<u64> = Bound::new("log_rate", 0, 1_000_000).with_default(100);

/// The timestamp echo server: answers every message with `[STAMP] MESSAGE`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    endpoint: Endpoint,

    /// Listen backlog: connections the kernel holds until they are accepted (the original's listen(5)).
    #[arg(short, long, default_value_t = default_of(BACKLOG), value_parser = bounded(BACKLOG),
          help = help("Listen backlog: connections the kernel holds until they are accepted", &BACKLOG))]
    backlog: i32,

    #[arg(short = 'c', long, default_value_t = default_of(Limits::MAX_CONNECTIONS),
          help = help("The most clients served at once; at the cap, room is made at the expense of the source (IPv4 \
                       address, IPv6 /64, Unix user) holding the most: its connection longest without completing a \
                       message is closed, or a newcomer from it refused", &Limits::MAX_CONNECTIONS),
          value_parser = bounded(Limits::MAX_CONNECTIONS))]
    max_connections: usize,

    #[arg(long, value_name = "N", value_parser = bounded(Limits::MAX_PER_SOURCE),
          help = help("The most clients one source (IPv4 address, IPv6 /64, Unix user) may hold at once (unset: only \
                       --max-connections); a new one from a source at it takes the slot of the source's own \
                       connection longest without a message, once over --eviction-grace, or is refused", &Limits::MAX_PER_SOURCE))]
    max_per_source: Option<usize>,

    #[arg(long, value_name = "DURATION", default_value_t = Dur(default_of(Limits::EVICTION_GRACE)),
          help = duration_help("How long a connection at the cap must have gone without completing a message before a \
                                new client may take its slot; 0: never, new clients wait in the backlog", &Limits::EVICTION_GRACE),
          value_parser = duration(Limits::EVICTION_GRACE))]
    eviction_grace: Dur,

    #[arg(long, value_name = "DURATION", default_value_t = Dur(default_of(Limits::IDLE_TIMEOUT)),
          help = duration_help("How long a client may send nothing before it is disconnected", &Limits::IDLE_TIMEOUT),
          value_parser = duration(Limits::IDLE_TIMEOUT))]
    idle_timeout: Dur,

    #[arg(long, value_name = "DURATION", default_value_t = Dur(default_of(Limits::MESSAGE_TIMEOUT)),
          help = duration_help("How long a message may take to arrive whole from its first byte", &Limits::MESSAGE_TIMEOUT),
          value_parser = duration(Limits::MESSAGE_TIMEOUT))]
    message_timeout: Dur,

    #[arg(long, value_name = "DURATION", default_value_t = Dur(default_of(Limits::WRITE_TIMEOUT)),
          help = duration_help("How long the replies to one read may take to leave before the client is taken to have \
                                stopped reading and is disconnected", &Limits::WRITE_TIMEOUT),
          value_parser = duration(Limits::WRITE_TIMEOUT))]
    write_timeout: Dur,

    #[arg(long, value_name = "DURATION", default_value_t = Dur(default_of(SHUTDOWN_DEADLINE)),
          help = duration_help("How long open connections get to finish at shutdown before they are closed", &SHUTDOWN_DEADLINE),
          value_parser = duration(SHUTDOWN_DEADLINE))]
    shutdown_deadline: Dur,

    #[arg(long, default_value_t = default_of(LOG_RATE), value_parser = bounded(LOG_RATE),
          help = help("Message lines logged per second at most; the rest are counted in a line a second", &LOG_RATE))]
    log_rate: u64,

    /// How log lines look.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    log_format: Format,

    /// Log only the listening address and the totals, not each connection and message.
    #[arg(short, long)]
    quiet: bool,

    /// Serve UDP datagrams instead of TCP connections (each datagram is a message; framing does not apply).
    #[arg(short, long, conflicts_with_all = ["unix", "framing", "runtime", "max_connections", "eviction_grace",
          "idle_timeout", "message_timeout", "write_timeout", "backlog"])]
    udp: bool,

    #[arg(long, requires = "udp", default_value_t = default_of(RateLimit::REPLIES), value_name = "REPLIES",
          help = help("UDP: replies per second to one source (an IPv4 address or an IPv6 /64), once its burst is used", &RateLimit::REPLIES),
          value_parser = bounded(RateLimit::REPLIES))]
    udp_rate: u32,

    #[arg(long, requires = "udp", default_value_t = default_of(RateLimit::BURST), value_name = "REPLIES",
          help = help("UDP: replies one source may get at once", &RateLimit::BURST),
          value_parser = bounded(RateLimit::BURST))]
    udp_burst: u32,

    #[arg(long, requires = "udp", default_value_t = default_of(RateLimit::TOTAL), value_name = "REPLIES",
          help = help("UDP: replies per second to all sources together, in bursts of as many", &RateLimit::TOTAL),
          value_parser = bounded(RateLimit::TOTAL))]
    udp_total: u32,

    /// Take the PROXY protocol (v1 or v2) from the --trusted-proxy addresses: their connections start with a header
    /// naming the real client, which the log and fairness then see. Off by default.
    #[arg(long, requires = "trusted_proxy", conflicts_with_all = ["udp", "unix"])]
    proxy_protocol: bool,

    /// A load balancer's address or network (ADDR or ADDR/PREFIX, IPv4 or IPv6) whose connections send a PROXY
    /// protocol header; repeatable.
    #[arg(long, requires = "proxy_protocol", value_name = "ADDR[/PREFIX]")]
    trusted_proxy: Vec<TrustedProxy>,

    #[arg(long, requires = "proxy_protocol", value_name = "DURATION", default_value_t = Dur(default_of(ProxyProtocol::HEADER_TIMEOUT)),
          help = duration_help("How long a trusted proxy has to send its whole header", &ProxyProtocol::HEADER_TIMEOUT),
          value_parser = duration(ProxyProtocol::HEADER_TIMEOUT))]
    proxy_header_timeout: Dur,

    /// Which runner serves TCP and Unix connections: a thread per connection, or a task per connection on a
    /// tokio runtime with a worker per core. UDP has one server, on threads.
    #[arg(short, long, value_enum, default_value_t = Runtime::Threads)]
    runtime: Runtime,

    /// Serve on listening socket FD handed over by systemd socket activation (LISTEN_FDS; 3 is the first).
    /// Without address flags, the first one handed over is used anyway.
    #[arg(long, value_name = "FD", conflicts_with_all = ["host", "port", "unix"],
          value_parser = clap::value_parser!(i32).range(3..))]
    listen_fd: Option<i32>,

    /// Serve one connection on stdin and stdout, as inetd runs a service; the log goes to stderr.
    #[arg(long, conflicts_with_all = ["host", "port", "unix", "udp", "listen_fd", "runtime", "max_connections",
          "max_per_source", "eviction_grace", "backlog", "proxy_protocol"])]
    inetd: bool,
}

/// Serves as the flags say until Ctrl-C or SIGTERM.
pub fn run(args: &Args) -> ExitCode {
    let log = match Log::start(args.log_format, args.log_rate, args.inetd) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("stamp-echo serve: cannot start the log: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = if args.inetd {
        serve_inetd(args).map(|last| (last, Instant::now()))
    } else if args.udp {
        serve_udp(args, log.rate()).map(|last| (last, Instant::now() + args.shutdown_deadline.0))
    } else {
        serve(args, log.rate())
    };
    match result {
        Ok((last, until)) => {
            log.finish(&last, until);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stamp-echo serve: {e}");
            ExitCode::FAILURE
        }
    }
}

type Failure = Box<dyn std::error::Error>;

/// The stamp the flags ask for; a warning if the local time zone is unknown.
fn stamp(endpoint: &Endpoint) -> Arc<dyn stamp_echo::stamp::Stamp> {
    let (stamp, fallback) = endpoint.stamp.build();
    if let Some(why) = fallback {
        eprintln!("warning: local time zone unusable ({why}); stamping UTC");
    }
    stamp
}

/// Serves TCP or a Unix socket until Ctrl-C or SIGTERM; returns the totals
/// line and the end of the shutdown deadline.
fn serve(args: &Args, rate: Arc<Rate>) -> Result<(String, Instant), Failure> {
    let server = EchoServer::builder().framing(args.endpoint.framing()).shared_stamp(stamp(&args.endpoint)).build()?;
    let limits = Limits::default()
        .max_connections(args.max_connections)
        .max_per_source(args.max_per_source)
        .eviction_grace(none_if_zero(args.eviction_grace))
        .idle_timeout(none_if_zero(args.idle_timeout))
        .message_timeout(none_if_zero(args.message_timeout))
        .write_timeout(none_if_zero(args.write_timeout));
    limits.validate()?;

    // Before "listening" is logged: a signal sent as soon as it is seen stops the server.
    let (stop_tx, stop_rx) = mpsc::channel();
    crate::signal::on_stop(move || {
        let _ = stop_tx.send(());
    })?;
    let (listener, socket_file) = match (activated(args)?, &args.endpoint.unix) {
        (Some(Activated::Stream(listener)), _) => (listener, None),
        (Some(Activated::Udp(_)), _) => return Err("the socket handed over is a UDP socket: add --udp".into()),
        (None, Some(path)) => bind_unix(path, args.backlog)?,
        (None, None) => (Listener::from(bind_tcp(&args.endpoint.tcp_addr(), args.backlog)?), None),
    };
    let proxy = args
        .proxy_protocol
        .then(|| ProxyProtocol::new(args.trusted_proxy.iter().copied()).header_timeout(args.proxy_header_timeout.0));
    let behind = match &proxy {
        Some(proxy) => {
            let trusted: Vec<String> = proxy.trusted.iter().map(ToString::to_string).collect();
            format!(" (PROXY protocol from {})", trusted.join(", "))
        }
        None => String::new(),
    };
    let local = listener.local_addr()?;
    tracing::info!(target: "stamp_echo::serve", "listening on {}{behind}", escape(local.to_string().as_bytes()));

    let handle = if args.quiet {
        running::start(args.runtime, listener, server, limits, proxy, ())?
    } else {
        running::start(args.runtime, listener, server, limits, proxy, Logged::new(rate))?
    };

    let _ = stop_rx.recv();
    let until = Instant::now() + args.shutdown_deadline.0;
    let totals = handle.shutdown(args.shutdown_deadline.0);
    if let Some(file) = socket_file {
        file.remove();
    }
    Ok((format!("shut down: {totals}"), until))
}

fn serve_udp(args: &Args, rate: Arc<Rate>) -> Result<String, Failure> {
    let limit =
        RateLimit::default().replies(args.udp_rate, Duration::from_secs(1)).burst(args.udp_burst).total(args.udp_total);
    // Settings are checked before anything is bound, and named as flags.
    if let Err(Error::Config(e)) = limit.validate() {
        let flag = match e.setting() {
            "burst" => "--udp-burst",
            "total" => "--udp-total",
            _ => "--udp-rate",
        };
        return Err(ConfigError::new(flag, e.value(), e.expected().to_owned()).into());
    }
    let stamp = stamp(&args.endpoint);
    let socket = match activated(args)? {
        Some(Activated::Udp(socket)) => socket,
        Some(Activated::Stream(_)) => return Err("the socket handed over is not a UDP socket: leave out --udp".into()),
        None => {
            let addr = args.endpoint.tcp_addr();
            let lookup = |e: io::Error| io::Error::new(e.kind(), format!("cannot look up {addr}: {e}"));
            let resolved = addr.to_socket_addrs().map_err(lookup)?.next();
            let resolved = resolved.ok_or_else(|| format!("cannot look up {addr}: no address found"))?;
            let bind = |e: io::Error| io::Error::new(e.kind(), format!("cannot bind {resolved} (udp): {e}"));
            UdpSocket::bind(resolved).map_err(bind)?
        }
    };
    let server = DatagramServer::new(socket, stamp)?.rate_limit(limit);
    let (stop_tx, stop_rx) = mpsc::channel();
    crate::signal::on_stop(move || {
        let _ = stop_tx.send(());
    })?;
    tracing::info!(target: "stamp_echo::serve", "listening on {} (udp)", server.local_addr()?);
    let handle = if args.quiet { server.start(())? } else { server.start(Logged::new(rate))? };
    // Until a signal, or the socket failing (then the server has stopped by itself).
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(Duration::from_millis(100)) {
        if handle.is_finished() {
            let totals = handle.shutdown(Duration::ZERO);
            return Err(format!("the UDP socket failed (stopped: {totals})").into());
        }
    }
    Ok(format!("stopped: {}", handle.shutdown(Duration::ZERO)))
}

/// `--inetd`: one connection, on stdin and stdout.
fn serve_inetd(args: &Args) -> Result<String, Failure> {
    let server = EchoServer::builder().framing(args.endpoint.framing()).shared_stamp(stamp(&args.endpoint)).build()?;
    let summary = server.serve(Stdio { input: io::stdin().lock(), output: io::stdout().lock() })?;
    let Summary { messages, bytes_in, bytes_out, .. } = summary;
    Ok(format!("served: {messages} messages, {bytes_in} bytes in, {bytes_out} bytes out"))
}

/// stdin and stdout as one stream.
struct Stdio<R, W> {
    input: R,
    output: W,
}

impl<R: Read, W> Read for Stdio<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl<R, W: Write> Write for Stdio<R, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.output.flush()
    }
}

/// A socket systemd handed over.
enum Activated {
    Stream(Listener),
    Udp(UdpSocket),
}

/// The socket handed over by systemd (`LISTEN_FDS`, for this process):
/// `--listen-fd FD`'s, or the first one when no address flag is given.
fn activated(args: &Args) -> Result<Option<Activated>, Failure> {
    let mut fds = listenfd::ListenFd::from_env();
    let index = match args.listen_fd {
        Some(fd) => usize::try_from(fd - 3).unwrap_or_default(),
        None if fds.len() > 0 && args.endpoint.unix.is_none() => 0,
        None => return Ok(None),
    };
    let fd = index + 3;
    if index >= fds.len() {
        let passed = fds.len();
        return Err(format!("--listen-fd {fd}: no such socket was handed over (LISTEN_FDS={passed})").into());
    }
    let named = |e: io::Error| format!("listening descriptor {fd}: {e}");
    if args.udp {
        return Ok(fds.take_udp_socket(index).map_err(named)?.map(Activated::Udp));
    }
    if let Ok(Some(tcp)) = fds.take_tcp_listener(index) {
        return Ok(Some(Activated::Stream(Listener::from(tcp))));
    }
    #[cfg(unix)]
    if let Some(unix) = fds.take_unix_listener(index).map_err(named)? {
        return Ok(Some(Activated::Stream(Listener::from(unix))));
    }
    Err(format!("listening descriptor {fd}: not a listening TCP or Unix stream socket").into())
}

/// The server's events, logged: the library's [`TracingEvents`], message
/// lines and refusal lines within `--log-rate` (each), and for UDP drops a line at the 1st, 10th,
/// 100th, ... of each reason, so a flood cannot flood the log.
struct Logged {
    rate: Arc<Rate>,
    events: TracingEvents,
    dropped: Mutex<DropCounts>,
}

impl Logged {
    fn new(rate: Arc<Rate>) -> Logged {
        Logged { rate, events: TracingEvents::new(), dropped: Mutex::new(DropCounts::default()) }
    }
}

impl Events for Logged {
    fn accepting(&self) {
        self.events.accepting();
    }
    fn accept_failed(&self, error: &io::Error) {
        self.events.accept_failed(error);
    }
    fn connected(&self, peer: &Peer) {
        self.events.connected(peer);
    }
    fn refused(&self, peer: &Peer, reason: Refusal) {
        if self.rate.admit_refusal() {
            self.events.refused(peer, reason);
        }
    }
    fn message(&self, peer: &Peer, fragment: Fragment<'_>) {
        if fragment.is_first() && self.rate.admit() {
            self.events.message(peer, fragment);
        }
    }
    fn closed(&self, peer: &Peer, summary: &Summary, error: Option<&Error>) {
        if error.is_some() {
            self.events.closed(peer, summary, error);
        }
    }
    fn dropped(&self, peer: &Peer, reason: Dropped) {
        let count = self.dropped.lock().unwrap_or_else(PoisonError::into_inner).record(reason);
        if count.checked_ilog10().is_some_and(|power| count == 10u64.pow(power)) {
            // A datagram's sender: its address alone.
            let from = match &peer.addr {
                Addr::Udp(addr) | Addr::Tcp(addr) => addr.to_string(),
                other => other.to_string(),
            };
            tracing::info!(target: "stamp_echo::datagram", "...dropped a datagram from {from} ({reason}): {count} so far");
        }
    }
}

fn bind_tcp(addr: &str, backlog: i32) -> io::Result<TcpListener> {
    let lookup = |e: io::Error| io::Error::new(e.kind(), format!("cannot look up {addr}: {e}"));
    let resolved = addr
        .to_socket_addrs()
        .map_err(lookup)?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address found")))?;
    let bind = |e: io::Error| io::Error::new(e.kind(), format!("cannot bind {resolved}: {e}"));
    let socket = Socket::new(Domain::for_address(resolved), Type::STREAM, None).map_err(bind)?;
    // Restart at once on the same port, despite connections in TIME_WAIT.
    socket.set_reuse_address(true).map_err(bind)?;
    socket.bind(&resolved.into()).map_err(bind)?;
    socket.listen(backlog).map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {resolved}: {e}")))?;
    Ok(socket.into())
}

/// Binds a Unix socket at `path`; errors name the path.
#[cfg(unix)]
fn bind_unix(path: &Path, backlog: i32) -> io::Result<(Listener, Option<SocketFile>)> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", escape_path(path)));
    remove_stale_socket(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(named)?;
    socket.bind(&socket2::SockAddr::unix(path).map_err(named)?).map_err(named)?;
    socket.listen(backlog).map_err(named)?;
    let file = SocketFile::new(path).map_err(named)?;
    let listener: UnixListener = socket.into();
    Ok((Listener::from(listener), Some(file)))
}

#[cfg(not(unix))]
fn bind_unix(path: &Path, _backlog: i32) -> io::Result<(Listener, Option<SocketFile>)> {
    let why = format!("{}: Unix sockets need a Unix system", escape_path(path));
    Err(io::Error::new(io::ErrorKind::Unsupported, why))
}

/// The socket file this server created: removed at exit only if the path
/// still names it (same device and inode), not whatever replaced it.
struct SocketFile {
    path: PathBuf,
    #[cfg(unix)]
    id: (u64, u64),
}

impl SocketFile {
    #[cfg(unix)]
    fn new(path: &Path) -> io::Result<SocketFile> {
        Ok(SocketFile { path: path.to_owned(), id: file_id(path)? })
    }

    #[cfg(unix)]
    fn remove(self) {
        let path = escape_path(&self.path);
        match file_id(&self.path) {
            Ok(id) if id == self.id => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    eprintln!("stamp-echo serve: cannot remove {path}: {e}");
                }
            }
            Ok(_) => eprintln!("stamp-echo serve: {path} is no longer the socket this server created; left in place"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("stamp-echo serve: {path}: {e}; left in place"),
        }
    }

    #[cfg(not(unix))]
    fn remove(self) {
        let _ = &self.path;
    }
}

/// The device and inode of the file at `path` itself (a symlink's own).
#[cfg(unix)]
fn file_id(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// Removes a socket file nothing listens on any more; refuses to touch a live
/// socket or a file that is not a socket.
#[cfg(unix)]
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    let named = |kind: io::ErrorKind, why: &str| io::Error::new(kind, format!("{}: {why}", escape_path(path)));
    if !meta.file_type().is_socket() {
        return Err(named(io::ErrorKind::AddrInUse, "exists and is not a socket"));
    }
    // Never blocks: a non-blocking connect. Nothing listening refuses at
    // once; a listener answers at once, or, its backlog full (a server frozen
    // or too busy to accept), says "try again" at once, and is live all the
    // same. So a frozen server on the path neither hangs this one's startup
    // nor keeps a signal from stopping it, and is never replaced.
    let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&socket2::SockAddr::unix(path).map_err(|e| named(e.kind(), &e.to_string()))?) {
        Ok(()) => Err(named(io::ErrorKind::AddrInUse, "another server is listening on it")),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(named(
            io::ErrorKind::AddrInUse,
            "another server is listening on it (its backlog is full: it is not accepting)",
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).map_err(|e| named(e.kind(), &e.to_string()))
        }
        Err(e) => Err(named(e.kind(), &e.to_string())),
    }
}
