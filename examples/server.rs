//! The tutorial's timestamp echo server, serving any number of clients at once.
//!
//! `cargo run --example server` listens on 127.0.0.1:8080 in chunk framing with
//! local ctime stamps, and logs like the original. Ctrl-C or SIGTERM shuts it
//! down gracefully and prints a one-line summary. `--help` lists the flags.
//!
//! With `--udp` it serves UDP instead: each datagram gets one reply datagram
//! (framing does not apply), except those that could make it loop or reflect,
//! replies over `--udp-rate` per source (address) and replies over
//! `--udp-total` a second to all sources together; Ctrl-C prints its counts.
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
//!
//! # Logging never holds up serving
//!
//! Log lines leave the serving threads through a bounded queue
//! ([`LOG_QUEUE`] lines) to one thread that writes stdout. A stdout nobody
//! reads (a paused pager, a full pipe) stalls only that thread: when the
//! queue is full, lines are dropped and counted, and the count is logged
//! once stdout moves again. The last line, the totals at exit, never waits
//! in the queue: it is always written within the shutdown deadline, on
//! stdout if stdout takes it in time, else on stderr (see `Log::finish`).
//! Message lines, and lines for connections refused (one source's flood of
//! newcomers, see `--max-connections`), are rate-limited (`--log-rate` each,
//! per second), with a line a second saying how many were not shown. Everything
//! a peer controls (its message, its Unix socket path) is escaped
//! ([`stamp_echo::escape`]) and cut at [`LOG_MESSAGE_MAX`] bytes, so one
//! event is always one line. Ctrl-C and SIGTERM end the process within the
//! shutdown deadline (the last log lines included; at least [`LOG_FLUSH`]
//! for them), even when stdout is blocked.
mod common;
#[path = "common/running.rs"]
mod running;

use std::io::{self, Write};
use std::net::{TcpListener, UdpSocket};
#[cfg(unix)]
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};
use socket2::{Domain, Socket, Type};
use stamp_echo::datagram::{DatagramServer, DropCounts, Dropped, RateLimit};
use stamp_echo::escape::{escape, escape_path};
use stamp_echo::runner::{Addr, Listener, Peer, ProxyProtocol, Refusal, TrustedProxy};
use stamp_echo::{ConfigError, EchoServer, Error, Events, Fragment, Limits, Summary};

use running::{Running, Runtime};

/// Lines the log queue holds before it drops them.
const LOG_QUEUE: usize = 4096;
/// The most bytes of a message (or a peer's name) shown in a log line.
const LOG_MESSAGE_MAX: usize = 256;
/// The least time the last log lines (the summary) get at exit; otherwise
/// they get what is left of the shutdown deadline.
const LOG_FLUSH: Duration = Duration::from_millis(100);

/// The timestamp echo server: answers every message with `[STAMP] MESSAGE`.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    endpoint: common::Endpoint,

    /// Listen backlog: connections the kernel holds until they are accepted
    /// (the original's listen(5)); 1 to 65535.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(i32).range(1..=65535))]
    backlog: i32,

    /// The most clients served at once (1 to 1000000). At the cap, room is
    /// made at the expense of the source (IPv4 address, IPv6 /64, Unix user)
    /// holding the most: its connection longest without completing a
    /// message is closed, or a newcomer from it refused.
    #[arg(long, default_value_t = Limits::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,

    /// The most clients one source (IPv4 address, IPv6 /64, Unix user) may
    /// hold at once (1 to 1000000; unset: only --max-connections). A new one
    /// from a source at it takes the slot of the source's own connection
    /// longest without a message, once over --eviction-grace, or is refused.
    #[arg(long, value_parser = max_per_source, value_name = "N")]
    max_per_source: Option<usize>,

    /// Seconds a connection at the cap must have gone without completing a
    /// message before a new client may take its slot; 0: never, new clients
    /// wait in the backlog.
    #[arg(long, default_value = "0.5", value_parser = timeout("--eviction-grace"), value_name = "SECONDS")]
    eviction_grace: Duration,

    /// Seconds a client may send nothing before it is disconnected (0: never).
    #[arg(long, default_value = "300", value_parser = timeout("--idle-timeout"), value_name = "SECONDS")]
    idle_timeout: Duration,

    /// Seconds a message may take to arrive whole from its first byte (0: no limit).
    #[arg(long, default_value = "30", value_parser = timeout("--message-timeout"), value_name = "SECONDS")]
    message_timeout: Duration,

    /// Seconds the replies to one read may take to leave before the client
    /// is taken to have stopped reading and is disconnected (0: no limit).
    #[arg(long, default_value = "30", value_parser = timeout("--write-timeout"), value_name = "SECONDS")]
    write_timeout: Duration,

    /// Seconds given to open connections to finish at shutdown before they
    /// are closed (0 to 2592000).
    #[arg(long, default_value = "5", value_parser = shutdown_deadline, value_name = "SECONDS")]
    shutdown_deadline: Duration,

    /// Message lines logged per second at most; the rest are counted in a
    /// line a second (0 to 1000000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    log_rate: u64,

    /// Log only the listening address and the summary, not each connection and message.
    #[arg(long)]
    quiet: bool,

    /// Serve UDP datagrams instead of TCP connections (each datagram is a message).
    #[arg(long, conflicts_with = "unix")]
    udp: bool,

    /// UDP: replies per second to one source (an IPv4 address or an IPv6 /64), once its burst is used.
    #[arg(long, requires = "udp", default_value_t = RateLimit::DEFAULT_REPLIES, value_name = "REPLIES")]
    udp_rate: u32,

    /// UDP: replies one source may get at once.
    #[arg(long, requires = "udp", default_value_t = RateLimit::DEFAULT_BURST, value_name = "REPLIES")]
    udp_burst: u32,

    /// UDP: replies per second to all sources together, in bursts of as many.
    #[arg(long, requires = "udp", default_value_t = RateLimit::DEFAULT_TOTAL, value_name = "REPLIES")]
    udp_total: u32,

    /// Take the PROXY protocol (v1 or v2) from the --trusted-proxy addresses:
    /// their connections start with a header naming the real client, which
    /// the log and fairness then see. Off by default.
    #[arg(long, requires = "trusted_proxy", conflicts_with_all = ["udp", "unix"])]
    proxy_protocol: bool,

    /// A load balancer's address or network (ADDR or ADDR/PREFIX, IPv4 or
    /// IPv6) whose connections send a PROXY protocol header; repeatable.
    #[arg(long, requires = "proxy_protocol", value_name = "ADDR[/PREFIX]")]
    trusted_proxy: Vec<TrustedProxy>,

    /// Seconds a trusted proxy has to send its whole header.
    #[arg(long, requires = "proxy_protocol", default_value = "5", value_parser = header_timeout, value_name = "SECONDS")]
    proxy_header_timeout: Duration,

    /// Which runner serves TCP and Unix connections: a thread per connection,
    /// or a task per connection on a tokio runtime with a worker per core
    /// (the README's table compares them). UDP has one server, on threads.
    #[arg(long, value_enum, default_value_t = Runtime::Threads)]
    runtime: Runtime,
}

/// `SECONDS` within `Limits`' range, fractions allowed; 0 for none.
fn timeout(flag: &'static str) -> impl Fn(&str) -> Result<Duration, ConfigError> + Clone {
    move |text| {
        let bad = || ConfigError::new(flag, text, "0 (none) or 0.001 to 2592000 seconds");
        let secs: f64 = text.parse().map_err(|_| bad())?;
        let t = Duration::try_from_secs_f64(secs).map_err(|_| bad())?;
        (t.is_zero() || (Limits::MIN_TIMEOUT..=Limits::MAX_TIMEOUT).contains(&t)).then_some(t).ok_or_else(bad)
    }
}

/// `--max-per-source`: within `Limits`' range.
fn max_per_source(text: &str) -> Result<usize, ConfigError> {
    let bad = || ConfigError::new("--max-per-source", text, "1 to 1000000");
    text.parse().ok().filter(|n| (1..=Limits::MAX_CONNECTIONS).contains(n)).ok_or_else(bad)
}

/// A timeout flag's value: 0 for none.
fn none_if_zero(t: Duration) -> Option<Duration> {
    Some(t).filter(|t| !t.is_zero())
}

/// `--proxy-header-timeout`: 0.001 to 2592000 seconds.
fn header_timeout(text: &str) -> Result<Duration, ConfigError> {
    let t = timeout("--proxy-header-timeout")(text)?;
    Some(t)
        .filter(|t| !t.is_zero())
        .ok_or_else(|| ConfigError::new("--proxy-header-timeout", text, "0.001 to 2592000 seconds"))
}

/// `--shutdown-deadline`: 0 to 30 days.
fn shutdown_deadline(text: &str) -> Result<Duration, ConfigError> {
    let bad = || ConfigError::new("--shutdown-deadline", text, "0 to 2592000 seconds");
    let secs: f64 = text.parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(secs).ok().filter(|d| *d <= Limits::MAX_TIMEOUT).ok_or_else(bad)
}

/// The log: lines queue up for one thread that writes stdout (see the
/// module docs). Serving threads never wait for it.
struct Log {
    queue: mpsc::SyncSender<Entry>,
    /// Lines dropped because the queue was full, since last reported.
    dropped: AtomicU64,
    /// Message lines this second.
    messages: Budget,
    /// Refusal lines this second (one source's flood of newcomers is
    /// refused one by one).
    refusals: Budget,
    /// Message (and refusal) lines per second.
    rate: u64,
    /// The last line (the totals), set at exit, and when it goes ahead of
    /// the lines still queued: it never waits in the queue.
    last: Mutex<Option<(String, Instant)>>,
    /// Set by the writer once it has written the last line.
    done: (Mutex<bool>, Condvar),
}

/// Lines of one kind shown and not shown in the current second.
#[derive(Default)]
struct Budget {
    shown: AtomicU64,
    hidden: AtomicU64,
}

impl Budget {
    /// Whether a line may be shown this second, at most `rate`; counts it if not.
    fn admit(&self, rate: u64) -> bool {
        if self.shown.load(Ordering::Relaxed) < rate && self.shown.fetch_add(1, Ordering::Relaxed) < rate {
            return true;
        }
        self.hidden.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// A new second: the lines not shown in the last one.
    fn renew(&self) -> u64 {
        self.shown.store(0, Ordering::Relaxed);
        self.hidden.swap(0, Ordering::Relaxed)
    }
}

enum Entry {
    Line(String),
    /// Nothing to write: wakes the writer to look at the last line.
    Wake,
}

impl Log {
    /// Starts the writer thread.
    fn start(rate: u64) -> io::Result<Arc<Log>> {
        let (queue, lines) = mpsc::sync_channel(LOG_QUEUE);
        let log = Arc::new(Log {
            queue,
            dropped: AtomicU64::new(0),
            messages: Budget::default(),
            refusals: Budget::default(),
            rate,
            last: Mutex::new(None),
            done: (Mutex::new(false), Condvar::new()),
        });
        let writer = Arc::clone(&log);
        thread::Builder::new().name("log".into()).spawn(move || writer.write(&lines))?;
        Ok(log)
    }

    /// Queues a line; drops and counts it if the queue is full.
    fn line(&self, line: String) {
        if let Err(mpsc::TrySendError::Full(_)) = self.queue.try_send(Entry::Line(line)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether a message line may be shown this second; counts it if not.
    fn admit(&self) -> bool {
        self.messages.admit(self.rate)
    }

    /// Writes the last line (the totals) by `until` (or [`LOG_FLUSH`] from
    /// now, if later), whatever stdout does, and returns: a blocked stdout
    /// does not keep the process from exiting, nor the line from being
    /// written. For the first half of the time the lines still queued go
    /// first; then the last line goes ahead of them (they are counted as
    /// dropped). If stdout has not taken it by three quarters of the time
    /// (a stdout slow or blocked in the middle of a write), it is written
    /// to stderr instead, with what is left (so a stdout that moves again
    /// at the very end may show it too).
    fn finish(&self, last: String, until: Instant) {
        let now = Instant::now();
        let budget = until.max(now + LOG_FLUSH) - now;
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some((last.clone(), now + budget / 2));
        // Wakes an idle writer; a busy one looks before each line.
        let _ = self.queue.try_send(Entry::Wake);
        let (done, written) = &self.done;
        let guard = done.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) =
            written.wait_timeout_while(guard, budget * 3 / 4, |done| !*done).unwrap_or_else(PoisonError::into_inner);
        if *guard {
            return;
        }
        drop(guard);
        // stderr may be as blocked as stdout (`2>&1`): written from a thread
        // of its own, waited for until the end of the time.
        let (tx, rx) = mpsc::channel();
        let spawned = thread::Builder::new().name("last line".into()).spawn(move || {
            let mut err = io::stderr().lock();
            let _ = writeln!(err, "{last}").and_then(|()| err.flush());
            let _ = tx.send(());
        });
        if spawned.is_ok() {
            let _ = rx.recv_timeout(budget / 4);
        }
    }

    /// The last line, if it is set and due: at once if `idle` (nothing
    /// queued is waiting), else once its time to go first has come.
    fn last_due(&self, idle: bool) -> Option<String> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match &*last {
            Some((_, first_at)) if idle || Instant::now() >= *first_at => last.take().map(|(line, _)| line),
            _ => None,
        }
    }

    /// The counts of lines not shown, and not written.
    fn counts(&self, out: &mut impl Write) {
        let rate = self.rate;
        for (budget, what) in [(&self.messages, "message lines"), (&self.refusals, "refusals")] {
            let hidden = budget.renew();
            if hidden > 0 {
                drop(writeln!(out, "...{hidden} {what} not shown (over --log-rate {rate} a second)"));
            }
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            drop(writeln!(out, "...{dropped} log lines dropped: stdout was not taking them"));
        }
    }

    /// The writer thread: writes lines as they come, once a second the
    /// counts of lines not shown, and at exit the last line.
    fn write(&self, lines: &mpsc::Receiver<Entry>) {
        const SECOND: Duration = Duration::from_secs(1);
        let mut out = io::BufWriter::new(io::stdout().lock());
        let mut next = Instant::now() + SECOND;
        loop {
            let mut entry = match lines.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(entry) => Some(entry),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut last = None;
            while let Some(next_entry) = entry.take() {
                last = self.last_due(false);
                if last.is_some() {
                    // The last line goes first: what is still queued is dropped.
                    let left = std::iter::once(next_entry).chain(lines.try_iter());
                    let left = left.filter(|entry| matches!(entry, Entry::Line(_))).count();
                    self.dropped.fetch_add(left as u64, Ordering::Relaxed);
                    break;
                }
                // A closed stdout is no reason to stop serving.
                if let Entry::Line(line) = next_entry {
                    drop(writeln!(out, "{line}"));
                }
                entry = lines.try_recv().ok();
            }
            let last = last.or_else(|| self.last_due(true));
            if Instant::now() >= next || last.is_some() {
                next = Instant::now() + SECOND;
                self.counts(&mut out);
            }
            if let Some(line) = &last {
                drop(writeln!(out, "{line}"));
            }
            let _ = out.flush();
            if last.is_some() {
                let (done, written) = &self.done;
                *done.lock().unwrap_or_else(PoisonError::into_inner) = true;
                written.notify_all();
                return;
            }
        }
    }
}

/// The original's log lines, escaped.
impl Events for Log {
    fn accepting(&self) {
        self.line("waiting for connection...".into());
    }
    fn accept_failed(&self, error: &io::Error) {
        self.line(format!("...accept failed: {error}"));
    }
    fn connected(&self, peer: &Peer) {
        self.line(format!("...connected from: {}", peer_name(peer)));
    }
    fn refused(&self, peer: &Peer, reason: Refusal) {
        if self.refusals.admit(self.rate) {
            self.line(format!("...connection from {} refused: {}", peer_name(peer), escaped(&reason)));
        }
    }
    fn message(&self, _peer: &Peer, fragment: Fragment<'_>) {
        if fragment.is_first() && self.admit() {
            let more = if fragment.is_last() { "" } else { " (continues)" };
            self.line(format!("date= {}{more}", escape(fragment.bytes()).max_len(LOG_MESSAGE_MAX)));
        }
    }
    fn closed(&self, peer: &Peer, _summary: &Summary, error: Option<&Error>) {
        if let Some(error) = error {
            self.line(format!("...connection from {} ended: {}", peer_name(peer), escaped(error)));
        }
    }
}

/// A peer's name, escaped and cut: a Unix peer's path byte for byte
/// (invalid UTF-8 as `\xNN`), others as displayed.
fn peer_name(peer: &Peer) -> String {
    match &peer.addr {
        Addr::Unix(Some(path)) => escape_path(path).max_len(LOG_MESSAGE_MAX).to_string(),
        _ => escaped(peer),
    }
}

/// Anything displayed, escaped and cut: peer names (a Unix peer's path is
/// the peer's choice) and errors (which may quote a peer's bytes).
fn escaped(value: &impl std::fmt::Display) -> String {
    escape(value.to_string().as_bytes()).max_len(LOG_MESSAGE_MAX).to_string()
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.udp && matches!(args.runtime, Runtime::Tokio) {
        let why = "--runtime tokio serves TCP and Unix sockets; --udp has one server, on threads";
        Args::command().error(clap::error::ErrorKind::ArgumentConflict, why).exit();
    }
    let log = match Log::start(args.log_rate) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("server: cannot start the log thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = if args.udp {
        serve_udp(&args, &log).map(|last| (last, Instant::now() + args.shutdown_deadline))
    } else {
        serve(&args, &log)
    };
    match result {
        Ok((last, until)) => {
            log.finish(last, until);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves TCP or a Unix socket until Ctrl-C or SIGTERM; returns the summary
/// line and the end of the shutdown deadline.
fn serve(args: &Args, log: &Arc<Log>) -> Result<(String, Instant), Box<dyn std::error::Error>> {
    let (stamp, fallback) = args.endpoint.stamp.build();
    if let Some(why) = fallback {
        eprintln!("warning: local time zone unusable ({why}); stamping UTC");
    }
    let server = EchoServer::builder().framing(args.endpoint.framing()).shared_stamp(stamp).build()?;
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
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })?;
    let (listener, socket_file) = match &args.endpoint.unix {
        Some(path) => bind_unix(path, args.backlog)?,
        None => (Listener::from(bind_tcp(&args.endpoint, args.backlog)?), None),
    };
    let proxy = args
        .proxy_protocol
        .then(|| ProxyProtocol::new(args.trusted_proxy.iter().copied()).header_timeout(args.proxy_header_timeout));
    let behind = match &proxy {
        Some(proxy) => {
            let trusted: Vec<String> = proxy.trusted.iter().map(ToString::to_string).collect();
            format!(" (PROXY protocol from {})", trusted.join(", "))
        }
        None => String::new(),
    };
    log.line(format!("listening on {}{behind}", escaped(&listener.local_addr()?)));

    // `()` observes nothing, at no cost per message.
    let handle = if args.quiet {
        Running::start(args.runtime, listener, server, limits, proxy, ())?
    } else {
        Running::start(args.runtime, listener, server, limits, proxy, Arc::clone(log))?
    };

    let _ = stop_rx.recv();
    let until = Instant::now() + args.shutdown_deadline;
    let totals = handle.shutdown(args.shutdown_deadline);
    if let Some(file) = socket_file {
        file.remove();
    }
    Ok((format!("shut down: {totals}"), until))
}

fn serve_udp(args: &Args, log: &Arc<Log>) -> Result<String, Box<dyn std::error::Error>> {
    let limit =
        RateLimit::default().replies(args.udp_rate, Duration::from_secs(1)).burst(args.udp_burst).total(args.udp_total);
    // Settings are checked before anything is bound, and named as flags.
    if let Err(Error::Config(e)) = limit.validate() {
        let flag = match e.setting() {
            "burst" => "--udp-burst",
            "total" => "--udp-total",
            _ => "--udp-rate",
        };
        return Err(ConfigError::new(flag, e.value(), e.expected()).into());
    }
    let (stamp, fallback) = args.endpoint.stamp.build();
    if let Some(why) = fallback {
        eprintln!("warning: local time zone unusable ({why}); stamping UTC");
    }
    let server = DatagramServer::new(bind_udp(&args.endpoint)?, stamp)?.rate_limit(limit)?;
    let stopper = server.stopper();
    ctrlc::set_handler(move || stopper.stop())?;
    log.line(format!("listening on {} (udp)", server.local_addr()?));
    let totals = if args.quiet { server.serve()? } else { server.serve_with(UdpLog::new(log))? };
    Ok(format!("stopped: {totals}"))
}

/// The UDP log: a line per datagram answered (within `--log-rate`), and for
/// drops a line at the 1st, 10th, 100th, ... of each reason, so a flood
/// cannot flood the log.
struct UdpLog {
    log: Arc<Log>,
    dropped: Mutex<DropCounts>,
}

impl UdpLog {
    fn new(log: &Arc<Log>) -> UdpLog {
        UdpLog { log: Arc::clone(log), dropped: Mutex::new(DropCounts::default()) }
    }
}

/// A datagram's sender as the log shows it: its address alone.
fn sender(peer: &Peer) -> String {
    match &peer.addr {
        Addr::Udp(addr) => addr.to_string(),
        _ => peer_name(peer),
    }
}

impl Events for UdpLog {
    fn message(&self, peer: &Peer, fragment: Fragment<'_>) {
        if self.log.admit() {
            let message = escape(fragment.bytes()).max_len(LOG_MESSAGE_MAX);
            self.log.line(format!("...datagram from {}: {message}", sender(peer)));
        }
    }
    fn closed(&self, peer: &Peer, _summary: &Summary, error: Option<&Error>) {
        if let Some(error) = error {
            self.log.line(format!("...error for {}: {}", sender(peer), escaped(error)));
        }
    }
    fn dropped(&self, peer: &Peer, reason: Dropped) {
        let count = self.dropped.lock().unwrap_or_else(PoisonError::into_inner).record(reason);
        if count.checked_ilog10().is_some_and(|power| count == 10u64.pow(power)) {
            self.log.line(format!("...dropped a datagram from {} ({reason}): {count} so far", sender(peer)));
        }
    }
}

/// Binds and listens on the first address `--host` names; errors name the
/// host or the address: `cannot bind 127.0.0.1:7000: Address already in use`.
fn bind_tcp(endpoint: &common::Endpoint, backlog: i32) -> io::Result<TcpListener> {
    let addr = endpoint.first_addr()?;
    let cannot = |e| common::named(e, format_args!("cannot bind {addr}"));
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(cannot)?;
    // Restart at once on the same port, despite connections in TIME_WAIT.
    socket.set_reuse_address(true).map_err(cannot)?;
    socket.bind(&addr.into()).map_err(cannot)?;
    socket.listen(backlog).map_err(|e| common::named(e, format_args!("cannot listen on {addr}")))?;
    Ok(socket.into())
}

/// Binds a UDP socket on the first address `--host` names; errors name it.
fn bind_udp(endpoint: &common::Endpoint) -> io::Result<UdpSocket> {
    let addr = endpoint.first_addr()?;
    UdpSocket::bind(addr).map_err(|e| common::named(e, format_args!("cannot bind {addr} (udp)")))
}

/// Binds a Unix socket at `path`; errors name the path.
#[cfg(unix)]
fn bind_unix(path: &Path, backlog: i32) -> io::Result<(Listener, Option<SocketFile>)> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", escape_path(path)));
    remove_stale_socket(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
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
                    eprintln!("server: cannot remove {path}: {e}");
                }
            }
            Ok(_) => eprintln!("server: {path} is no longer the socket this server created; left in place"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("server: {path}: {e}; left in place"),
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
///
/// The check never blocks: it connects without waiting (a non-blocking
/// connect). Nothing listening refuses at once; a listener answers at once,
/// or, if its backlog is full (a server frozen or too busy to accept), says
/// "try again" at once, and is live all the same. So a frozen server on
/// the path neither hangs the new one's startup nor keeps a signal from
/// stopping it, and is never replaced.
#[cfg(unix)]
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    let named = |kind: io::ErrorKind, why: &str| io::Error::new(kind, format!("{}: {why}", escape_path(path)));
    if !meta.file_type().is_socket() {
        return Err(named(io::ErrorKind::AddrInUse, "exists and is not a socket"));
    }
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
