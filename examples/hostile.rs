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
//! cargo run --release --example hostile -- udp-churn --port 8080 --others 6000
//! cargo run --release --example hostile -- --port 0 piece-server      # a hostile server
//! cargo run --release --example hostile -- hoard-active --port 8080
//! cargo run --release --example hostile -- churn --port 8080
//! cargo run --release --example hostile -- storm --port 8080 --connections 10000
//! ```
//!
//! The attacks (TCP, or `--unix PATH`):
//! - `hoard`: opens `--silent` connections that send nothing and `--trickle`
//!   ones that send a byte every 200 ms without completing a message, holds
//!   them `--hold` seconds, then times a new client's round trip (connect,
//!   send, reply) `--probes` times while they stay open. Passes if every
//!   probe is answered within `--bound` seconds (default 1). The probes
//!   connect from `--probe-from IP` if given (another source than the
//!   hoarders, for the server's fairness), otherwise from any address.
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
//! One source against the others (TCP; the attacker connects from
//! 127.0.0.2, new clients from 127.0.0.3, an interactive client connected
//! before the attack from 127.0.0.4):
//! - `hoard-active`: `--connections` (1,030) each send a byte every
//!   `--interval` (0.25 s: in chunk framing a message each, so no deadline
//!   fires) and read their replies, reopened when closed. Passes if every
//!   one of `--probes` new clients is answered within `--bound` and the
//!   interactive client gets each of its `--lines` answered (`--pause`
//!   apart) on its one connection.
//! - `churn`: `--connections` silent ones, each reopened as soon as the
//!   server closes it (at most `--rate` connects a second); the same
//!   verdict.
//! - `storm`: `--connections` (20,000) opened by 4 threads and held; once
//!   `--probe-after` are open, `--probes` (40) new clients 100 ms apart.
//!   Passes if every one is answered within `--bound`; prints the median
//!   and slowest. `--probes 0` only holds (for a second attacking process,
//!   when one process may not open that many descriptors).
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
//! - `udp-churn`: `--others` sources (127.1.x.y, one socket each: binding
//!   UDP sockets to many 127.0.0.0/8 addresses needs no root) send a datagram
//!   each in turn, churning any table of sources, then a victim (127.0.0.2)
//!   sends `--batch` datagrams as fast as it can, and again, for
//!   `--seconds` (a table that forgets would give it a burst each pass). Passes
//!   if the victim gets at most `--burst` + `--rate` x seconds replies, and
//!   all sources together at most `--total` + `--total` x seconds (the
//!   server's total; 0: not checked). The window ends when the last reply
//!   has arrived.
//!
//! And one hostile *server*, for the clients:
//! - `piece-server`: listens on `--host`/`--port` (TCP, chunk framing),
//!   prints `listening on ADDR`, and answers every byte it reads
//!   correctly, but each behind its own `--stamp-len`-byte stamp (255, the
//!   longest): the most stamped pieces a message can come back in. It
//!   serves connections one after another until killed. The script runs the
//!   `client` example against it and measures the client's memory.
mod common;
#[path = "common/forge.rs"]
mod forge;

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
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
        #[command(flatten)]
        probing: Probing,
        /// The address the new clients connect from (TCP; default: any,
        /// the hoarders' own).
        #[arg(long, value_name = "IP")]
        probe_from: Option<Ipv4Addr>,
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
    /// UDP: thousands of sources churn the rate limit while a victim floods.
    UdpChurn {
        /// Seconds to attack.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Other source addresses, each with its own socket.
        #[arg(long, default_value_t = 6000, value_parser = clap::value_parser!(u32).range(1..=60_000))]
        others: u32,
        /// Datagrams the victim sends after each pass of the others.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        batch: u32,
        /// The server's replies per second to one source (its `--udp-rate`).
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// The server's burst (its `--udp-burst`).
        #[arg(long, default_value_t = 100)]
        burst: u32,
        /// The server's replies per second to all sources (its `--udp-total`); 0: not checked.
        #[arg(long, default_value_t = 10_000)]
        total: u32,
    },
    /// A server that echoes every byte behind its own long stamp.
    PieceServer {
        /// Bytes of each stamp (1 to 255).
        #[arg(long, default_value_t = 255, value_parser = clap::value_parser!(u16).range(1..=255))]
        stamp_len: u16,
    },
    /// Many connections from 127.0.0.2, each completing a message every
    /// `--interval`; new clients from 127.0.0.3 and an interactive client
    /// from 127.0.0.4 connected before must be served.
    HoardActive {
        #[command(flatten)]
        crowd: Crowd,
        /// Seconds between one connection's one-byte messages.
        #[arg(long, default_value_t = 0.25)]
        interval: f64,
    },
    /// Silent connections from 127.0.0.2 reopened as soon as the server
    /// closes them; new clients from 127.0.0.3 and an interactive client from
    /// 127.0.0.4 connected before must be served.
    Churn {
        #[command(flatten)]
        crowd: Crowd,
        /// Connects a second at most.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        rate: u32,
    },
    /// Connections opened and held from 127.0.0.2 (raise this process's
    /// descriptor limit); new clients from 127.0.0.3 meanwhile.
    Storm {
        /// Connections to open and hold.
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        connections: u32,
        /// Open connections before the first probe.
        #[arg(long, default_value_t = 2000)]
        probe_after: u32,
        /// New clients to time (0: only hold, for a second attacking process).
        #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(0..=1000))]
        probes: u32,
        /// Seconds a probe may take.
        #[arg(long, default_value_t = 1.0)]
        bound: f64,
        /// Seconds to hold the connections at the end.
        #[arg(long, default_value_t = 0.0)]
        linger: f64,
    },
}

/// When and how many new clients are timed.
#[derive(clap::Args)]
struct Probing {
    /// Seconds of attack before the first probe.
    #[arg(long, default_value_t = 2.0)]
    hold: f64,
    /// How many new clients to time.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    probes: u32,
    /// Seconds a probe may take.
    #[arg(long, default_value_t = 1.0)]
    bound: f64,
}

/// The crowd and the clients of `hoard-active` and `churn`.
#[derive(clap::Args)]
struct Crowd {
    /// Connections from 127.0.0.2.
    #[arg(long, default_value_t = 1030, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connections: u32,
    /// The new clients (from 127.0.0.3, 0.2 s apart).
    #[command(flatten)]
    probing: Probing,
    /// Lines the interactive client from 127.0.0.4 sends during the attack.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=1000))]
    lines: u32,
    /// Seconds between its lines.
    #[arg(long, default_value_t = 1.0)]
    pause: f64,
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
            Some(path) => endpoint.connect_unix(path).map(Conn::Unix),
            #[cfg(not(unix))]
            Some(_) => Err(io::Error::new(io::ErrorKind::Unsupported, "--unix needs a Unix system")),
            None => endpoint.connect_tcp().map(Conn::Tcp),
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
        Attack::Hoard { silent, trickle, probing, probe_from } => {
            hoard(&args.endpoint, *silent, *trickle, probing, *probe_from)
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
        Attack::HoardActive { crowd, interval } => hoard_active(&args.endpoint, crowd, secs(*interval)),
        Attack::Churn { crowd, rate } => churn(&args.endpoint, crowd, *rate),
        Attack::Storm { connections, probe_after, probes, bound, linger } => {
            storm(&args.endpoint, *connections, *probe_after, *probes, secs(*bound), secs(*linger))
        }
        Attack::UdpForge => match udp_forge(&args.endpoint) {
            Err(Skip(why)) => {
                println!("SKIPPED udp-forge: {why}");
                return ExitCode::from(3);
            }
            Ok(result) => result,
        },
        Attack::UdpChurn { seconds, others, batch, rate, burst, total } => {
            udp_churn(&args.endpoint, secs(*seconds), *others, *batch, (*rate, *burst), *total)
        }
        Attack::PieceServer { stamp_len } => piece_server(&args.endpoint, usize::from(*stamp_len)),
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

/// One checked round trip on a new connection (from `from`, if given); its
/// time from connect to reply.
fn probe(endpoint: &common::Endpoint, timeout: Duration, from: Option<Ipv4Addr>) -> Result<Duration, Error> {
    let started = Instant::now();
    let conn = match from {
        Some(ip) => Conn::Tcp(connect_from(ip, tcp_server(endpoint)?, timeout)?),
        None => Conn::open(endpoint)?,
    };
    conn.set_timeout(Some(timeout))?;
    let mut client = EchoClient::new(&conn, endpoint.framing())?;
    client.round_trip(b"probe")?;
    Ok(started.elapsed())
}

fn hoard(
    endpoint: &common::Endpoint,
    silent: u32,
    trickle: u32,
    probing: &Probing,
    probe_from: Option<Ipv4Addr>,
) -> Result<bool, Error> {
    let (hold, probes, bound) = (secs(probing.hold), probing.probes, secs(probing.bound));
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
        match probe(endpoint, bound.max(Duration::from_secs(10)), probe_from) {
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
    // Each flooder's reader says when its first replies come: the flood is under way.
    let (under_way, flowing) = std::sync::mpsc::channel();
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
            let (stop, under_way) = (Arc::clone(&stop), under_way.clone());
            thread::spawn(move || {
                let mut buf = vec![0; 64 * 1024];
                let mut replies = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match (&*conn).read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if replies == 0 {
                                let _ = under_way.send(());
                            }
                            replies += n as u64;
                        }
                        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                        Err(_) => break,
                    }
                }
                replies
            })
        };
        threads.extend([writing, reading]);
    }
    // The good client, once the flood is under way: every flooder has had
    // replies (or one ended without: then no sooner than a safety net).
    drop(under_way);
    for _ in 0..flooders {
        if flowing.recv_timeout(Duration::from_secs(10)).is_err() {
            break;
        }
    }
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
    Ok(endpoint.first_addr()?)
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

/// Counts the datagrams `receiver` gets until `going` is false and none
/// came for 300 ms.
fn count_replies(receiver: UdpSocket, going: &Arc<AtomicBool>) -> thread::JoinHandle<io::Result<u64>> {
    let going = Arc::clone(going);
    thread::spawn(move || {
        receiver.set_read_timeout(Some(Duration::from_millis(300)))?;
        let mut buf = vec![0; 65_536];
        let mut replies = 0;
        loop {
            match receiver.recv(&mut buf) {
                Ok(_) => replies += 1,
                Err(_) if going.load(Ordering::Relaxed) => {}
                Err(_) => return Ok(replies),
            }
        }
    })
}

fn udp_flood(endpoint: &common::Endpoint, seconds: Duration, rate: u32, burst: u32) -> Result<bool, Error> {
    let server = udp_server(endpoint)?;
    let flooder = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    flooder.connect(server)?;
    let receiver = flooder.try_clone()?;
    let flooding = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    // Counts the flooder's replies until it stops and they stop coming.
    let counting = count_replies(receiver, &flooding);
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

// ---- One source against the others (fairness per source) ----
//
// The attacker connects from 127.0.0.2, the probes (new clients) from
// 127.0.0.3, the interactive client (connected before the attack) from
// 127.0.0.4: three sources for the server's fairness. TCP only.

/// Where the attacker connects from.
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Where the probes (new clients) connect from.
const PROBE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// Where the interactive client, connected before the attack, connects from.
const INTERACTIVE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);

/// The server's TCP address.
fn tcp_server(endpoint: &common::Endpoint) -> Result<SocketAddr, Error> {
    if endpoint.unix.is_some() {
        return Err(Error::Io(io::Error::new(io::ErrorKind::Unsupported, "a TCP attack: sources are addresses")));
    }
    udp_server(endpoint)
}

/// A TCP connection to `server` from `ip` (any port), within `timeout`.
fn connect_from(ip: Ipv4Addr, server: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((ip, 0)).into())?;
    socket.connect_timeout(&server.into(), timeout)?;
    Ok(socket.into())
}

/// Whether the server closed this non-blocking connection (what it sent
/// is read and dropped).
fn gone(stream: &TcpStream) -> bool {
    let mut buf = [0; 4096];
    loop {
        match (&*stream).read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// New clients from [`PROBE`], one after another `gap` apart: each one's
/// time from connect to reply, or its error (waiting at most 10 s).
fn probes(server: SocketAddr, framing: stamp_echo::Framing, count: u32, gap: Duration) -> Vec<Result<Duration, Error>> {
    let probe = || -> Result<Duration, Error> {
        let started = Instant::now();
        let stream = connect_from(PROBE, server, Duration::from_secs(10))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        EchoClient::new(&stream, framing)?.round_trip(b"probe")?;
        Ok(started.elapsed())
    };
    (0..count)
        .map(|i| {
            if i > 0 {
                thread::sleep(gap);
            }
            probe()
        })
        .collect()
}

/// The probes' verdict: how many were answered within `bound`, the median
/// and slowest of those answered, and the errors.
fn probe_figures(results: &[Result<Duration, Error>], bound: Duration) -> (usize, String) {
    let mut times: Vec<Duration> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
    times.sort();
    let within = times.iter().filter(|t| **t <= bound).count();
    let errors: Vec<String> = results.iter().filter_map(|r| r.as_ref().err().map(ToString::to_string)).collect();
    let median = times.get(times.len() / 2).map_or("none".into(), |t| format!("{t:.2?}"));
    let slowest = times.last().map_or("none".into(), |t| format!("{t:.2?}"));
    let mut what = format!(
        "{within} of {} new clients from {PROBE} answered within {bound:?} (median {median}, slowest {slowest})",
        results.len()
    );
    if let Some(first) = errors.first() {
        what.push_str(&format!("; {} failed, first: {first}", errors.len()));
    }
    (within, what)
}

/// An interactive client from [`INTERACTIVE`], connected (and answered once)
/// before the attack, that sends `lines` lines `pause` apart during it.
struct Interactive {
    client: EchoClient<TcpStream>,
}

impl Interactive {
    fn connect(server: SocketAddr, framing: stamp_echo::Framing) -> Result<Interactive, Error> {
        let stream = connect_from(INTERACTIVE, server, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        let mut client = EchoClient::new(stream, framing)?;
        client.round_trip(b"before the attack")?;
        Ok(Interactive { client })
    }

    /// On a thread of its own: the lines answered, and the error that ended it.
    fn type_lines(mut self, lines: u32, pause: Duration) -> thread::JoinHandle<(u32, Option<Error>)> {
        thread::spawn(move || {
            for i in 0..lines {
                thread::sleep(pause);
                if let Err(e) = self.client.round_trip(format!("line {i}").as_bytes()) {
                    return (i, Some(e));
                }
            }
            (lines, None)
        })
    }
}

/// The interactive client's verdict.
fn interactive_figures(result: thread::Result<(u32, Option<Error>)>, lines: u32, pause: Duration) -> (bool, String) {
    match result {
        Ok((answered, None)) => (answered == lines, format!("{answered} of {lines} lines ({pause:?} apart) answered")),
        Ok((answered, Some(e))) => {
            (false, format!("{answered} of {lines} lines ({pause:?} apart) answered, then: {e}"))
        }
        Err(_) => (false, "the interactive client's thread panicked".into()),
    }
}

/// Active hoarding: `connections` from [`ATTACKER`], each sending a byte
/// every `interval` (in chunk framing a complete message each) and reading
/// its replies, reconnecting when closed; meanwhile the interactive client
/// types `lines` lines and, after `hold`, `probes` new clients connect.
fn hoard_active(endpoint: &common::Endpoint, args: &Crowd, interval: Duration) -> Result<bool, Error> {
    let server = tcp_server(endpoint)?;
    let interactive = Interactive::connect(server, endpoint.framing())?;
    let opened = Instant::now();
    let mut crowd = Vec::new();
    for _ in 0..args.connections {
        let stream = connect_from(ATTACKER, server, Duration::from_secs(5))?;
        stream.set_nonblocking(true)?;
        crowd.push(Some(stream));
    }
    println!("hoard-active: {} connections from {ATTACKER} open in {:.2?}", crowd.len(), opened.elapsed());
    let typing = interactive.type_lines(args.lines, secs(args.pause));
    let stop = Arc::new(AtomicBool::new(false));
    let attacking = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let (mut sent, mut closed, mut reconnected) = (0u64, 0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let round = Instant::now();
                for slot in &mut crowd {
                    if let Some(stream) = slot {
                        match (&*stream).write(b"x") {
                            Ok(_) => sent += 1,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(_) => *slot = None,
                        }
                        if slot.as_ref().is_some_and(gone) {
                            *slot = None;
                        }
                        if slot.is_none() {
                            closed += 1;
                        }
                    }
                    if slot.is_none() {
                        let again = connect_from(ATTACKER, server, Duration::from_secs(1));
                        *slot = again.and_then(|s| s.set_nonblocking(true).map(|()| s)).ok();
                        reconnected += u64::from(slot.is_some());
                    }
                }
                thread::sleep(interval.saturating_sub(round.elapsed()));
            }
            (sent, closed, reconnected)
        })
    };
    thread::sleep(secs(args.probing.hold));
    let results = probes(server, endpoint.framing(), args.probing.probes, Duration::from_millis(200));
    let (typed_ok, typed) = interactive_figures(typing.join(), args.lines, secs(args.pause));
    stop.store(true, Ordering::Relaxed);
    let (sent, closed, reconnected) = attacking.join().unwrap_or_default();
    println!(
        "hoard-active: the attacker sent {sent} one-byte messages; the server closed {closed} of its connections, {reconnected} reconnects"
    );
    let bound = secs(args.probing.bound);
    let (within, probed) = probe_figures(&results, bound);
    let what = format!(
        "{} active connections from {ATTACKER}: {probed}; the client from {INTERACTIVE} connected before: {typed}",
        args.connections
    );
    Ok(verdict("hoard-active", within == results.len() && typed_ok, &what))
}

/// Churn: `connections` silent ones from [`ATTACKER`], each reopened as
/// soon as the server closes it (at most `rate` connects a second); the
/// interactive client and the probes as in [`hoard_active`].
fn churn(endpoint: &common::Endpoint, args: &Crowd, rate: u32) -> Result<bool, Error> {
    let server = tcp_server(endpoint)?;
    let interactive = Interactive::connect(server, endpoint.framing())?;
    let mut crowd = Vec::new();
    for _ in 0..args.connections {
        let stream = connect_from(ATTACKER, server, Duration::from_secs(5))?;
        stream.set_nonblocking(true)?;
        crowd.push(stream);
    }
    let typing = interactive.type_lines(args.lines, secs(args.pause));
    let stop = Arc::new(AtomicBool::new(false));
    let churning = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let started = Instant::now();
            let mut connects = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut busy = false;
                for stream in &mut crowd {
                    let allowed = (f64::from(rate) * started.elapsed().as_secs_f64()) as u64;
                    if connects >= allowed || !gone(stream) {
                        continue;
                    }
                    if let Ok(again) = connect_from(ATTACKER, server, Duration::from_secs(1))
                        .and_then(|s| s.set_nonblocking(true).map(|()| s))
                    {
                        *stream = again;
                        connects += 1;
                        busy = true;
                    }
                }
                if !busy {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            (connects, started.elapsed())
        })
    };
    thread::sleep(secs(args.probing.hold));
    let results = probes(server, endpoint.framing(), args.probing.probes, Duration::from_millis(200));
    let (typed_ok, typed) = interactive_figures(typing.join(), args.lines, secs(args.pause));
    stop.store(true, Ordering::Relaxed);
    let (connects, took) = churning.join().unwrap_or_default();
    let per_second = connects as f64 / took.as_secs_f64().max(0.001);
    let bound = secs(args.probing.bound);
    let (within, probed) = probe_figures(&results, bound);
    let what = format!(
        "{} silent connections from {ATTACKER} reopened as closed, {connects} reconnects ({per_second:.0}/s): {probed}; \
         the client from {INTERACTIVE} connected before: {typed}",
        args.connections
    );
    Ok(verdict("churn", within == results.len() && typed_ok, &what))
}

/// Storm: `connections` opened (by 4 threads) and held from [`ATTACKER`];
/// once `probe_after` are open, `probes` new clients connect, 100 ms apart,
/// while the rest open. Then holds them `linger` seconds.
fn storm(
    endpoint: &common::Endpoint,
    connections: u32,
    probe_after: u32,
    probes_n: u32,
    bound: Duration,
    linger: Duration,
) -> Result<bool, Error> {
    const OPENERS: u32 = 4;
    let server = tcp_server(endpoint)?;
    let opened = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let started = Instant::now();
    let openers: Vec<_> = (0..OPENERS)
        .map(|i| {
            let opened = Arc::clone(&opened);
            let share = connections / OPENERS + u32::from(i < connections % OPENERS);
            thread::spawn(move || {
                let (mut held, mut failed, mut last_error) = (Vec::new(), 0u32, None);
                for _ in 0..share {
                    match connect_from(ATTACKER, server, Duration::from_secs(3)) {
                        Ok(stream) => {
                            held.push(stream);
                            opened.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed += 1;
                            last_error = Some(e.to_string());
                        }
                    }
                }
                (held, failed, last_error)
            })
        })
        .collect();
    while opened.load(Ordering::Relaxed) < probe_after.min(connections) && !openers.iter().all(|o| o.is_finished()) {
        thread::sleep(Duration::from_millis(10));
    }
    let results = probes(server, endpoint.framing(), probes_n, Duration::from_millis(100));
    let probed_at = opened.load(Ordering::Relaxed);
    let mut held = Vec::new();
    let (mut failed, mut last_error) = (0, None);
    for opener in openers {
        let (streams, f, e) = opener.join().map_err(|_| Error::Io(io::Error::other("an opener panicked")))?;
        held.extend(streams);
        failed += f;
        last_error = last_error.or(e);
    }
    let closed = held.iter().filter(|s| s.set_nonblocking(true).is_ok() && gone(s)).count();
    println!(
        "storm: {} connections from {ATTACKER} opened in {:.2?} ({failed} failed{}), {closed} of them closed by the server; the probes began at {probed_at} open",
        held.len(),
        started.elapsed(),
        last_error.map_or(String::new(), |e| format!(", last: {e}")),
    );
    if probes_n == 0 {
        thread::sleep(linger);
        return Ok(true);
    }
    let (within, probed) = probe_figures(&results, bound);
    let what = format!("{} connections opened and held from {ATTACKER}: {probed}", held.len());
    let pass = within == results.len();
    thread::sleep(linger);
    Ok(verdict("storm", pass, &what))
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

/// The `i`th other source of `udp-churn`: 127.1.x.y, y from 1 to 250.
fn churn_source(i: u32) -> Ipv4Addr {
    let [_, _, x, y] = (i / 250 * 256 + i % 250 + 1).to_be_bytes();
    Ipv4Addr::new(127, 1, x, y)
}

/// Reads every datagram waiting on `socket` without blocking: how many.
fn drained(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<u64> {
    socket.set_nonblocking(true)?;
    let mut n = 0;
    while socket.recv(buf).is_ok() {
        n += 1;
    }
    Ok(n)
}

fn udp_churn(
    endpoint: &common::Endpoint,
    seconds: Duration,
    others: u32,
    batch: u32,
    (rate, burst): (u32, u32),
    total: u32,
) -> Result<bool, Error> {
    let server = udp_server(endpoint)?;
    let mut churners = Vec::with_capacity(others as usize);
    for i in 0..others {
        let ip = churn_source(i);
        let socket = UdpSocket::bind((ip, 0)).map_err(|e| io::Error::new(e.kind(), format!("bind {ip}: {e}")))?;
        socket.set_nonblocking(true)?;
        churners.push(socket);
    }
    let victim = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 2), 0))?;
    victim.connect(server)?;
    let receiver = victim.try_clone()?;
    let attacking = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    // Counts the victim's replies until the attack stops and they stop coming.
    let counting = count_replies(receiver, &attacking);
    // A pass of the others (each once: any table of sources has seen
    // thousands of new ones since the victim's last datagram), then the
    // victim as fast as it can for a batch: against a table that forgets,
    // a whole burst each pass. A full socket buffer is the attack working: go on.
    let (mut churned, mut sent) = (0u64, 0u64);
    while started.elapsed() < seconds {
        for socket in &churners {
            churned += u64::from(socket.send_to(b"churn", server).is_ok());
        }
        for _ in 0..batch {
            sent += u64::from(victim.send(b"victim").is_ok());
        }
    }
    attacking.store(false, Ordering::Relaxed);
    let replies = counting.join().map_err(|_| Error::Io(io::Error::other("counting thread")))??;
    let window = started.elapsed();
    let mut buf = vec![0; 65_536];
    let mut others_replies = 0;
    for socket in &churners {
        others_replies += drained(socket, &mut buf)?;
    }
    let bound = |burst: u32, rate: u32| u64::from(burst) + (f64::from(rate) * window.as_secs_f64()).ceil() as u64;
    let (victim_bound, total_bound) = (bound(burst, rate), bound(total, total));
    let all = replies + others_replies;
    let what = format!(
        "{others} other sources sent {churned} datagrams and got {others_replies} replies; the victim sent {sent} and got \
         {replies} replies in {window:.2?}: {:.0}/s (bound {victim_bound}: burst {burst} + {rate}/s); all sources {all} \
         replies, {:.0}/s ({})",
        replies as f64 / window.as_secs_f64(),
        all as f64 / window.as_secs_f64(),
        if total == 0 {
            "the total not checked".to_owned()
        } else {
            format!("bound {total_bound}: {total} + {total}/s")
        },
    );
    let pass = replies <= victim_bound && (total == 0 || all <= total_bound) && sent > u64::from(burst) && replies > 0;
    Ok(verdict("udp-churn", pass, &what))
}

/// `piece-server`: every byte read is answered as a piece of its own,
/// `[STAMP] b`, each stamp `stamp_len` bytes and different from the last.
fn piece_server(endpoint: &common::Endpoint, stamp_len: usize) -> Result<bool, Error> {
    let addr = endpoint.first_addr()?;
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| common::named(e, format_args!("cannot bind {addr}")))?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    let mut pieces: u64 = 0;
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut input = [0; 64 * 1024];
        let mut out = Vec::new();
        loop {
            let n = match stream.read(&mut input) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            out.clear();
            for &b in &input[..n] {
                pieces += 1;
                let number = pieces.to_string();
                out.push(b'[');
                out.extend(std::iter::repeat_n(b'~', stamp_len.saturating_sub(number.len())));
                out.extend_from_slice(&number.as_bytes()[number.len().saturating_sub(stamp_len)..]);
                out.extend_from_slice(b"] ");
                out.push(b);
            }
            if stream.write_all(&out).is_err() {
                break;
            }
        }
    }
    Ok(true)
}
