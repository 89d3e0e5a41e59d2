//! Hostile clients, run against a live server from outside: each attack
//! prints what it measured and `PASS` or `FAIL` against the defence's bound.
//! `scripts/hostile.sh` starts the release server and runs them all.
//!
//! ```text
//! cargo run --release --example hostile -- hoard --port 8080 --silent 2000
//! cargo run --release --example hostile -- trickle --port 8080 --framing line --bound 35
//! cargo run --release --example hostile -- no-read --port 8080 --bound 35
//! cargo run --release --example hostile -- inject --port 8080 --framing line
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
mod common;

use std::io::{self, Read, Write};
use std::net::TcpStream;
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
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
