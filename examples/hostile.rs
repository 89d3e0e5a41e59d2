//! Hostile clients, run against a live server from outside: each attack
//! prints what it measured and `PASS` or `FAIL` against the defence's bound.
//! `scripts/hostile.sh` starts the release server and runs them all.
//!
//! ```text
//! cargo run --release --example hostile -- hoard --port 8080 --silent 2000
//! cargo run --release --example hostile -- trickle --port 8080 --framing line --bound 35
//! cargo run --release --example hostile -- no-read --port 8080 --bound 35
//! cargo run --release --example hostile -- inject --port 8080 --framing line
//! cargo run --release --example hostile -- flood --port 8080 --framing line --flooders 4 --bound-ms 5
//! cargo run --release --example hostile -- no-read-memory --port 8080 --framing line --pid 1234
//! cargo run --release --example hostile -- udp-reflect --port 8080
//! cargo run --release --example hostile -- udp-flood --port 8080 --seconds 2
//! cargo run --release --example hostile -- udp-forge --port 8080   # as root
//! ```
//!
//! The attacks (TCP, or `--unix PATH`):
//! - `hoard`: opens `--silent` connections that send nothing and `--trickle`
//!   ones that send a byte every 200 ms without completing a message, holds
//!   them `--hold` seconds, then times a new client's round trip (connect,
//!   send, reply) `--probes` times while they stay open. Passes if every
//!   probe is answered within `--bound` seconds (default 1).
//! - `trickle`: one connection sends a byte every 200 ms and never completes
//!   a message (line or length framing); passes if the server closes it
//!   within `--bound` seconds.
//! - `no-read`: one connection sends messages without end and never reads
//!   the replies; passes if the server closes it within `--bound` seconds.
//! - `inject`: sends messages full of terminal escapes, CR, LF-forged log
//!   lines and invalid UTF-8 (the server's log should show them escaped; the
//!   script checks it), and checks the echoes are byte for byte.
//! - `flood`: `--flooders` connections pipeline the framing's smallest
//!   message (an empty line, a zero-length frame) without pause, reading
//!   and dropping the replies, while a good client makes round trips for
//!   `--seconds`; prints its p50 and p99, and passes if every round trip is
//!   answered and the p99 is within `--bound-ms` (given by the script: 3x
//!   the thread runner's in the same run).
//! - `no-read-memory`: `--connections` connections pipeline the smallest
//!   message and never read, until none of them can send more; passes if
//!   the server's resident memory (`--pid`, read from /proc) grew by at
//!   most `--bound-kib` per connection.
//!
//! And against a `--udp` server:
//! - `udp-reflect`: sends `--count` datagrams of each shape a reply of this
//!   protocol has (a ctime, RFC 3339 or Unix stamp header, an error
//!   datagram), then a normal message. Passes if none of them is answered
//!   and the normal one is.
//! - `udp-flood`: one source (127.0.0.1) sends as fast as it can for
//!   `--seconds` while another (127.0.0.2, a different address for the rate
//!   limit) keeps making round trips. Passes if the flooder gets at most
//!   `--burst` + `--rate` x seconds replies and every round trip of the other
//!   source is answered.
//! - `udp-forge`: sends a datagram whose source is the server's own address,
//!   from a raw socket, then a normal message. Passes if the normal one is
//!   answered (the script checks in the server's counts that the forged one
//!   was dropped, not answered for ever). Without root or `CAP_NET_RAW` it
//!   prints `SKIPPED` and exits with status 3.
mod common;
#[path = "common/forge.rs"]
mod forge;

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, ToSocketAddrs, UdpSocket};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use stamp_echo::datagram::DatagramClient;
use stamp_echo::{EchoClient, Error};

/// Attack a stamp-echo server and measure its defences.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    endpoint: common::Endpoint,

    #[command(subcommand)]
    attack: Attack,
}

#[derive(Subcommand)]
enum Attack {
    /// Hold many connections silent or trickling, and time a new client.
    Hoard {
        /// Connections that send nothing.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(0..=100_000))]
        silent: u32,
        /// Connections that send a byte every 200 ms, never a whole message.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100_000))]
        trickle: u32,
        /// Seconds to hold them before the first probe.
        #[arg(long, default_value_t = 2.0)]
        hold: f64,
        /// How many new clients to time.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
        probes: u32,
        /// Seconds a probe may take.
        #[arg(long, default_value_t = 1.0)]
        bound: f64,
    },
    /// One connection trickling bytes without completing a message.
    Trickle {
        /// Seconds the server may take to close it.
        #[arg(long, default_value_t = 35.0)]
        bound: f64,
    },
    /// One connection that sends without end and never reads.
    NoRead {
        /// Seconds the server may take to close it.
        #[arg(long, default_value_t = 35.0)]
        bound: f64,
    },
    /// Messages with terminal escapes, forged log lines, invalid UTF-8.
    Inject,
    /// Connections pipelining the smallest messages without pause (empty
    /// lines, zero-length frames, one byte in chunk framing), reading and
    /// dropping the replies, while a good client makes round trips.
    Flood {
        /// Flooding connections.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
        flooders: u32,
        /// Seconds the good client makes round trips during the flood.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Milliseconds the good client's p99 may take (PASS/FAIL); without
        /// it the figures are printed with no verdict.
        #[arg(long)]
        bound_ms: Option<f64>,
    },
    /// Connections pipelining the smallest messages that never read: the
    /// server's resident memory per connection once none of them can send
    /// more (TCP; Linux, the server on this machine).
    NoReadMemory {
        /// Connections that never read.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        connections: u32,
        /// The server's process id, for its resident memory (/proc/PID/status).
        #[arg(long)]
        pid: u32,
        /// KiB per connection allowed.
        #[arg(long, default_value_t = 100.0)]
        bound_kib: f64,
    },
    /// UDP: datagrams shaped like replies, which must go unanswered.
    UdpReflect {
        /// Datagrams of each shape.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        count: u32,
    },
    /// UDP: one source floods while another is still served.
    UdpFlood {
        /// Seconds to flood.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// The server's replies per second to one source (its `--udp-rate`).
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// The server's burst (its `--udp-burst`).
        #[arg(long, default_value_t = 100)]
        burst: u32,
    },
    /// UDP: a datagram forged to come from the server itself (needs root).
    UdpForge,
}

/// A connection of either kind.
enum Conn {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Conn {
    fn open(endpoint: &common::Endpoint) -> io::Result<Conn> {
        match &endpoint.unix {
            #[cfg(unix)]
            Some(path) => UnixStream::connect(path).map(Conn::Unix),
            #[cfg(not(unix))]
            Some(_) => Err(io::Error::new(io::ErrorKind::Unsupported, "--unix needs a Unix system")),
            None => TcpStream::connect(endpoint.tcp_addr()).map(Conn::Tcp),
        }
    }

    fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(timeout).and_then(|()| s.set_write_timeout(timeout)),
            #[cfg(unix)]
            Conn::Unix(s) => s.set_read_timeout(timeout).and_then(|()| s.set_write_timeout(timeout)),
        }
    }
}

impl Read for &Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => (&*s).read(buf),
            #[cfg(unix)]
            Conn::Unix(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => (&*s).write(buf),
            #[cfg(unix)]
            Conn::Unix(s) => (&*s).write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.attack {
        Attack::Hoard { silent, trickle, hold, probes, bound } => {
            hoard(&args.endpoint, *silent, *trickle, secs(*hold), *probes, secs(*bound))
        }
        Attack::Trickle { bound } => trickle(&args.endpoint, secs(*bound)),
        Attack::NoRead { bound } => no_read(&args.endpoint, secs(*bound)),
        Attack::Inject => inject(&args.endpoint),
        Attack::Flood { flooders, seconds, bound_ms } => {
            flood(&args.endpoint, *flooders, secs(*seconds), bound_ms.map(|ms| secs(ms / 1000.0)))
        }
        Attack::NoReadMemory { connections, pid, bound_kib } => {
            no_read_memory(&args.endpoint, *connections, *pid, *bound_kib)
        }
        Attack::UdpReflect { count } => udp_reflect(&args.endpoint, *count),
        Attack::UdpFlood { seconds, rate, burst } => udp_flood(&args.endpoint, secs(*seconds), *rate, *burst),
        Attack::UdpForge => match udp_forge(&args.endpoint) {
            Err(Skip(why)) => {
                println!("SKIPPED udp-forge: {why}");
                return ExitCode::from(3);
            }
            Ok(result) => result,
        },
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("hostile: {e}");
            ExitCode::FAILURE
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::from_secs(3600)).min(Duration::from_secs(3600))
}

fn verdict(name: &str, pass: bool, what: &str) -> bool {
    println!("{} {name}: {what}", if pass { "PASS" } else { "FAIL" });
    pass
}

/// One checked round trip on a new connection; its time from connect to reply.
fn probe(endpoint: &common::Endpoint, timeout: Duration) -> Result<Duration, Error> {
    let started = Instant::now();
    let conn = Conn::open(endpoint)?;
    conn.set_timeout(Some(timeout))?;
    let mut client = EchoClient::new(&conn, endpoint.framing())?;
    client.round_trip(b"probe")?;
    Ok(started.elapsed())
}

fn hoard(
    endpoint: &common::Endpoint,
    silent: u32,
    trickle: u32,
    hold: Duration,
    probes: u32,
    bound: Duration,
) -> Result<bool, Error> {
    let opened = Instant::now();
    let mut held = Vec::new();
    for _ in 0..silent + trickle {
        held.push(Conn::open(endpoint)?);
    }
    println!("hoard: {silent} silent and {trickle} trickling connections open in {:?}", opened.elapsed());
    let stop = Arc::new(AtomicBool::new(false));
    let tricklers: Vec<Conn> = held.split_off(silent as usize);
    let trickling = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for conn in &tricklers {
                    let _ = conn.set_timeout(Some(Duration::from_millis(10)));
                    let _ = (&*conn).write(b"x");
                }
                thread::sleep(Duration::from_millis(200));
            }
            tricklers
        })
    };
    thread::sleep(hold);
    let mut worst = Duration::ZERO;
    let mut failures = 0;
    for i in 0..probes {
        match probe(endpoint, bound.max(Duration::from_secs(10))) {
            Ok(took) => {
                println!("hoard: probe {i}: reply in {took:?}");
                worst = worst.max(took);
            }
            Err(e) => {
                println!("hoard: probe {i}: {e}");
                failures += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let tricklers = trickling.join().unwrap_or_default();
    // How many of ours the server closed to make room.
    let closed = held.iter().chain(&tricklers).filter(|c| is_closed(c)).count();
    println!("hoard: the server closed {closed} of the {} held connections", held.len() + tricklers.len());
    let what =
        format!("{probes} new clients among {} hoarders: slowest reply {worst:?} (bound {bound:?})", silent + trickle);
    Ok(verdict("hoard", failures == 0 && worst <= bound, &what))
}

/// Whether the server has closed the connection (reads end or fail at once).
fn is_closed(conn: &Conn) -> bool {
    let _ = conn.set_timeout(Some(Duration::from_millis(1)));
    let mut buf = [0; 64];
    loop {
        match (&*conn).read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => return !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
        }
    }
}

fn trickle(endpoint: &common::Endpoint, bound: Duration) -> Result<bool, Error> {
    let conn = Conn::open(endpoint)?;
    conn.set_timeout(Some(Duration::from_secs(1)))?;
    let started = Instant::now();
    // A length prefix announcing a big frame, or a line with no end.
    let mut head = Vec::new();
    endpoint.framing().encode_message(&[b't'; 1000], &mut head)?;
    let mut sent = 0;
    while started.elapsed() < bound + Duration::from_secs(5) {
        let byte = head.get(sent).copied().unwrap_or(b't');
        if (&conn).write_all(&[byte]).is_err() || is_closed(&conn) {
            let took = started.elapsed();
            let what = format!("closed after {took:?} and {sent} bytes (bound {bound:?})");
            return Ok(verdict("trickle", took <= bound, &what));
        }
        sent += 1;
        thread::sleep(Duration::from_millis(200));
    }
    Ok(verdict("trickle", false, &format!("still open after {:?}", started.elapsed())))
}

fn no_read(endpoint: &common::Endpoint, bound: Duration) -> Result<bool, Error> {
    let conn = Conn::open(endpoint)?;
    conn.set_timeout(Some(Duration::from_secs(1)))?;
    let mut block = Vec::new();
    while block.len() < 64 * 1024 {
        endpoint.framing().encode_message(b"never read", &mut block)?;
    }
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < bound + Duration::from_secs(5) {
        match (&conn).write(&block) {
            Ok(n) => sent += n as u64,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => {
                let took = started.elapsed();
                let what = format!("closed after {took:?}, {sent} bytes sent (bound {bound:?})");
                return Ok(verdict("no-read", took <= bound, &what));
            }
        }
    }
    Ok(verdict("no-read", false, &format!("still open after {:?}", started.elapsed())))
}

/// 64 KiB of the framing's smallest message: an empty line, a zero-length
/// frame, or bytes that each read makes a message of (chunk framing).
fn smallest_messages(framing: stamp_echo::Framing) -> Result<Vec<u8>, Error> {
    let message: &[u8] = match framing {
        stamp_echo::Framing::Chunk { .. } => b"x",
        _ => b"",
    };
    let mut block = Vec::new();
    while block.len() < 64 * 1024 {
        framing.encode_message(message, &mut block)?;
    }
    Ok(block)
}

/// The `q` quantile of sorted `samples`.
fn quantile(samples: &[Duration], q: f64) -> Duration {
    let i = ((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1));
    samples.get(i).copied().unwrap_or_default()
}

fn flood(
    endpoint: &common::Endpoint,
    flooders: u32,
    seconds: Duration,
    bound: Option<Duration>,
) -> Result<bool, Error> {
    let block = Arc::new(smallest_messages(endpoint.framing())?);
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for _ in 0..flooders {
        let conn = Arc::new(Conn::open(endpoint)?);
        conn.set_timeout(Some(Duration::from_millis(200)))?;
        let writing = {
            let (conn, stop, block) = (Arc::clone(&conn), Arc::clone(&stop), Arc::clone(&block));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match (&*conn).write(&block) {
                        Ok(_) => {}
                        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                        Err(_) => break,
                    }
                }
                0
            })
        };
        let reading = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut buf = vec![0; 64 * 1024];
                let mut replies = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match (&*conn).read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => replies += n as u64,
                        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                        Err(_) => break,
                    }
                }
                replies
            })
        };
        threads.extend([writing, reading]);
    }
    // The good client, once the flood is under way.
    thread::sleep(Duration::from_millis(500));
    let conn = Conn::open(endpoint)?;
    conn.set_timeout(Some(Duration::from_secs(5)))?;
    let mut client = EchoClient::new(&conn, endpoint.framing())?;
    let mut rtts = Vec::new();
    let mut failed = None;
    let started = Instant::now();
    while started.elapsed() < seconds {
        let sent = Instant::now();
        match client.round_trip(b"good client") {
            Ok(reply) if reply.message() == b"good client" => rtts.push(sent.elapsed()),
            Ok(_) => {
                failed = Some("a wrong echo".to_owned());
                break;
            }
            Err(e) => {
                failed = Some(e.to_string());
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let reply_bytes: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    rtts.sort_unstable();
    let (p50, p99) = (quantile(&rtts, 0.50), quantile(&rtts, 0.99));
    let what = format!(
        "{flooders} connections pipelining {} KiB/s of replies to the smallest messages; a good client: {} round trips in {elapsed:.2?}, p50 {p50:.2?}, p99 {p99:.2?}, slowest {:.2?}{}{}",
        (reply_bytes as f64 / 1024.0 / elapsed.as_secs_f64()) as u64,
        rtts.len(),
        rtts.last().copied().unwrap_or_default(),
        bound.map(|b| format!(" (p99 bound {b:.2?})")).unwrap_or_default(),
        failed.as_ref().map(|e| format!("; the good client failed: {e}")).unwrap_or_default(),
    );
    println!("result: round_trips={} p50_us={} p99_us={}", rtts.len(), p50.as_micros(), p99.as_micros());
    let answered = failed.is_none() && !rtts.is_empty();
    Ok(match bound {
        Some(bound) => verdict("flood", answered && p99 <= bound, &what),
        None if answered => {
            println!("MEASURED flood: {what}");
            true
        }
        None => verdict("flood", false, &what),
    })
}

/// A process's resident memory, in KiB (Linux).
fn vm_rss_kib(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let value = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next());
    value
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Io(io::Error::new(io::ErrorKind::InvalidData, format!("/proc/{pid}/status: no VmRSS"))))
}

fn no_read_memory(endpoint: &common::Endpoint, connections: u32, pid: u32, bound_kib: f64) -> Result<bool, Error> {
    use socket2::{Domain, Socket, Type};
    if endpoint.unix.is_some() {
        return Err(Error::Io(io::Error::new(io::ErrorKind::Unsupported, "no-read-memory: TCP only")));
    }
    let block = smallest_messages(endpoint.framing())?;
    let addr = udp_server(endpoint)?;
    let before = vm_rss_kib(pid)?;
    let mut conns = Vec::new();
    for _ in 0..connections {
        // Small buffers on this side: the server's replies back up into it
        // soon, and the kernel's memory stays small.
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_recv_buffer_size(64 * 1024)?;
        socket.set_send_buffer_size(64 * 1024)?;
        socket.connect(&addr.into())?;
        socket.set_nonblocking(true)?;
        conns.push(TcpStream::from(socket));
    }
    // Send until no connection can send more for three rounds of 100 ms:
    // the server has stopped reading every one of them.
    let started = Instant::now();
    let (mut sent, mut closed, mut quiet) = (0u64, 0, 0);
    while quiet < 3 && started.elapsed() < Duration::from_secs(20) {
        let mut progress = false;
        for conn in &mut conns {
            loop {
                match conn.write(&block) {
                    Ok(n) if n > 0 => {
                        sent += n as u64;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    _ => {
                        closed += 1;
                        break;
                    }
                }
            }
        }
        quiet = if progress { 0 } else { quiet + 1 };
        thread::sleep(Duration::from_millis(100));
    }
    let after = vm_rss_kib(pid)?;
    let per = after.saturating_sub(before) as f64 / f64::from(connections);
    let what = format!(
        "{connections} connections sent {} KiB of the smallest messages in {:.2?} and never read: server VmRSS {before} -> {after} KiB, {per:.1} KiB per connection (bound {bound_kib} KiB){}",
        sent / 1024,
        started.elapsed(),
        if closed > 0 { format!("; {closed} write failures") } else { String::new() },
    );
    println!("result: kib_per_connection={per:.1}");
    Ok(verdict("no-read-memory", quiet >= 3 && closed == 0 && per <= bound_kib, &what))
}

/// Messages a hostile peer sends to reach the operator's terminal or log.
pub const INJECTIONS: [&[u8]; 6] = [
    b"clear\x1b[2J\x1b[H screen",
    b"title\x1b]0;pwned\x07 bell",
    b"over\rwritten",
    b"x\n...connected from: 10.0.0.1:1",
    b"bad utf-8 \xff\xfe",
    b"bidi \xe2\x80\xae reversed",
];

fn inject(endpoint: &common::Endpoint) -> Result<bool, Error> {
    let conn = Conn::open(endpoint)?;
    conn.set_timeout(Some(Duration::from_secs(5)))?;
    let mut client = EchoClient::new(&conn, endpoint.framing())?;
    let mut all = true;
    for message in INJECTIONS {
        // Line framing cannot carry a newline in a message: send what it can.
        let sendable = match endpoint.framing() {
            stamp_echo::Framing::Line { .. } => message.split(|&b| b == b'\n').next_back().unwrap_or(message),
            _ => message,
        };
        let echoed = client.round_trip(sendable).map(|r| r.message() == sendable).unwrap_or(false);
        all &= echoed;
    }
    Ok(verdict("inject", all, "hostile bytes echoed byte for byte (the log is checked by scripts/hostile.sh)"))
}

/// The server's UDP address: the endpoint's host and port, resolved.
fn udp_server(endpoint: &common::Endpoint) -> Result<SocketAddr, Error> {
    let addr = endpoint.tcp_addr();
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| Error::Io(io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address found"))))
}

/// A UDP client of `server` from a socket bound to `ip`.
fn udp_client(ip: Ipv4Addr, server: SocketAddr) -> Result<DatagramClient, Error> {
    let socket = UdpSocket::bind((ip, 0))?;
    socket.connect(server)?;
    let mut client = DatagramClient::new(socket);
    client.set_timeout(Duration::from_millis(200))?;
    client.set_retries(10);
    Ok(client)
}

/// Datagrams shaped like replies of this protocol: answering them could
/// start a loop with another server.
const REPLY_SHAPED: [&[u8]; 4] = [
    b"[Sun Feb  3 10:00:18 2013] hi",
    b"[2026-11-26T05:12:48.123456Z] hi",
    b"[1764133968.123456] hi",
    b"error: reply of 65535 bytes would not fit in one datagram (at most 65507 bytes)",
];

fn udp_reflect(endpoint: &common::Endpoint, count: u32) -> Result<bool, Error> {
    let server = udp_server(endpoint)?;
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    socket.connect(server)?;
    for _ in 0..count {
        for datagram in REPLY_SHAPED {
            socket.send(datagram)?;
        }
    }
    // A normal message from the same socket, after them: the server reads
    // in order, so once its echo is here every earlier datagram was handled.
    let mut client = DatagramClient::new(socket);
    client.set_timeout(Duration::from_millis(500))?;
    client.set_retries(10);
    let probe = client.round_trip(b"probe");
    // Whatever comes now would be late answers to the reply-shaped ones.
    client.socket().set_read_timeout(Some(Duration::from_millis(300)))?;
    let mut buf = vec![0; 65_536];
    let mut late = 0;
    while client.socket().recv(&mut buf).is_ok() {
        late += 1;
    }
    let answered = client.ignored() + late;
    let sent = u64::from(count) * REPLY_SHAPED.len() as u64;
    let what = format!(
        "{sent} reply-shaped datagrams ({} shapes): {answered} answered (bound 0); a normal message after them: {}",
        REPLY_SHAPED.len(),
        match &probe {
            Ok(reply) => format!("answered in {:?}", reply.rtt()),
            Err(e) => format!("{e}"),
        }
    );
    Ok(verdict("udp-reflect", answered == 0 && probe.is_ok(), &what))
}

fn udp_flood(endpoint: &common::Endpoint, seconds: Duration, rate: u32, burst: u32) -> Result<bool, Error> {
    let server = udp_server(endpoint)?;
    let flooder = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    flooder.connect(server)?;
    let receiver = flooder.try_clone()?;
    let flooding = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    // Counts the flooder's replies until it stops and they stop coming.
    let counting = {
        let flooding = Arc::clone(&flooding);
        thread::spawn(move || -> io::Result<u64> {
            receiver.set_read_timeout(Some(Duration::from_millis(300)))?;
            let mut buf = vec![0; 65_536];
            let mut replies = 0;
            loop {
                match receiver.recv(&mut buf) {
                    Ok(_) => replies += 1,
                    Err(_) if flooding.load(Ordering::Relaxed) => {}
                    Err(_) => return Ok(replies),
                }
            }
        })
    };
    let sending = {
        let flooding = Arc::clone(&flooding);
        thread::spawn(move || {
            let mut sent = 0u64;
            while flooding.load(Ordering::Relaxed) {
                // A full socket buffer (ENOBUFS) is the flood working: go on.
                if flooder.send(format!("flood {sent}").as_bytes()).is_ok() {
                    sent += 1;
                }
            }
            sent
        })
    };
    // The other source, served all along.
    let mut other = udp_client(Ipv4Addr::new(127, 0, 0, 2), server)?;
    let (mut answered, mut tried, mut worst) = (0u32, 0u32, Duration::ZERO);
    while started.elapsed() < seconds {
        tried += 1;
        match other.round_trip(format!("other {tried}").as_bytes()) {
            Ok(reply) => {
                answered += 1;
                worst = worst.max(reply.rtt());
            }
            Err(e) => println!("udp-flood: the other source's round trip {tried}: {e}"),
        }
        thread::sleep(Duration::from_millis(20));
    }
    flooding.store(false, Ordering::Relaxed);
    let sent = sending.join().unwrap_or(0);
    let replies = counting.join().map_err(|_| Error::Io(io::Error::other("counting thread")))??;
    let elapsed = started.elapsed();
    let bound = u64::from(burst) + (f64::from(rate) * elapsed.as_secs_f64()).ceil() as u64;
    let what = format!(
        "one source sent {sent} datagrams in {seconds:?} and got {replies} replies (bound {bound}: burst {burst} + {rate}/s \
         over {elapsed:.2?}), {:.5} of them; another source: {answered} of {tried} round trips answered, slowest {worst:?}",
        replies as f64 / sent.max(1) as f64,
    );
    Ok(verdict("udp-flood", replies <= bound && answered == tried && tried > 0, &what))
}

/// Why an attack could not run.
struct Skip(String);

fn udp_forge(endpoint: &common::Endpoint) -> Result<Result<bool, Error>, Skip> {
    let raw =
        forge::raw_socket().map_err(|e| Skip(format!("cannot open a raw socket ({e}); needs root or CAP_NET_RAW")))?;
    Ok(udp_forge_with(endpoint, &raw))
}

fn udp_forge_with(endpoint: &common::Endpoint, raw: &socket2::Socket) -> Result<bool, Error> {
    let own = match udp_server(endpoint)? {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(v6) => {
            return Err(Error::Io(io::Error::new(io::ErrorKind::Unsupported, format!("{v6}: IPv4 only"))));
        }
    };
    let own = if own.ip().is_unspecified() { SocketAddrV4::new(Ipv4Addr::LOCALHOST, own.port()) } else { own };
    // Without the defence, this one datagram is the self-loop: the server
    // answers itself for ever.
    forge::forge(raw, own, own, b"hello, me")?;
    let mut client = udp_client(Ipv4Addr::LOCALHOST, own.into())?;
    let probe = client.round_trip(b"probe");
    let what = format!(
        "a datagram from the server's own address {own} sent; a normal message after it: {} (the server's counts show what became of the forged one)",
        match &probe {
            Ok(reply) => format!("answered in {:?}", reply.rtt()),
            Err(e) => format!("{e}"),
        }
    );
    Ok(verdict("udp-forge", probe.is_ok(), &what))
}
