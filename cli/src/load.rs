//! `stamp-echo load`: a load generator that checks every reply. N
//! connections, M messages each, ping-pong (`--window 1`) or pipelined, or
//! open loop at a fixed rate (`--rate`); throughput and latency percentiles
//! (`hdrhistogram`).
//!
//! With `--rate`, each message has a time it is due (the rate's schedule)
//! and its latency counts from then, not from when it could be sent: a
//! server that stalls is charged for every message it held up, as wrk2
//! corrects coordinated omission.
//!
//! The last line is machine-readable, for scripts: `result: key=value ...`;
//! `--json` prints one JSON object instead.
//!
//! Each connection is driven by the library's checked engine,
//! [`stamp_echo::load::drive`]; this module opens the connections, starts
//! them together, records the latencies it hands back, and reports.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::TcpStream;
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, mpsc};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use stamp_echo::load::{Checker, Workload, message};
use stamp_echo::{Bound, Error, Framing, Limits};

use crate::args::{Dur, Endpoint, bounded, default_of, duration, duration_help, help};

/// `--connections`.
const CONNECTIONS: Bound<u64> = Bound::new("connections", 1, 100_000).with_default(1);
/// `--messages`, per connection.
const MESSAGES: Bound<u64> = Bound::new("messages", 1, u64::MAX).with_default(10_000);
/// `--size`: up to the length framing's default limit.
const SIZE: Bound<u64> = Bound::new("size", 1, Framing::DEFAULT_MAX_FRAME as u64).with_default(16).with_unit("bytes");
/// `--window`: messages in flight per connection.
const WINDOW: Bound<u64> = Bound::new("window", 1, 1_000_000);
/// `--rate`: messages per second in all.
const RATE: Bound<u64> = Bound::new("rate", 1, 100_000_000);
/// `--timeout`: the range of the library's timeouts.
const TIMEOUT: Bound<Duration> =
    Bound::new("timeout", Limits::MIN_TIMEOUT, Limits::MAX_TIMEOUT).with_default(Duration::from_secs(30));
/// Latencies are counted up to an hour, to 3 significant digits.
const MAX_LATENCY_NANOS: u64 = 3_600_000_000_000;

/// Drive a stamp-echo server with checked load and report throughput and latency.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    endpoint: Endpoint,

    #[arg(short, long, default_value_t = default_of(CONNECTIONS), value_parser = bounded(CONNECTIONS),
          help = help("Connections, each with a writer and a reader thread", &CONNECTIONS))]
    connections: u64,

    #[arg(short = 'n', long, default_value_t = default_of(MESSAGES), value_parser = bounded(MESSAGES),
          help = help("Messages per connection", &MESSAGES))]
    messages: u64,

    #[arg(short, long, default_value_t = default_of(SIZE), value_parser = bounded(SIZE),
          help = help("Message size, without framing", &SIZE))]
    size: u64,

    #[arg(short, long, value_parser = bounded(WINDOW),
          help = help("Messages in flight per connection at most: 1 is ping-pong, more is pipelining [default: 1; with \
                       --rate, the most: the schedule alone sets the pace]", &WINDOW))]
    window: Option<u64>,

    #[arg(short = 'R', long, value_name = "PER_SECOND", value_parser = bounded(RATE),
          help = help("Open loop: messages per second in all, spread over the connections, each due on a fixed schedule; \
                       latencies count from when each was due", &RATE))]
    rate: Option<u64>,

    #[arg(short, long, value_name = "DURATION", default_value_t = Dur(default_of(TIMEOUT)),
          help = duration_help("How long a connection may wait on the server before it fails", &TIMEOUT),
          value_parser = duration(TIMEOUT))]
    timeout: Dur,

    /// Print one JSON object at the end instead of the text lines.
    #[arg(long)]
    json: bool,
}

/// A connected stream of either kind.
enum Conn {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Conn {
    fn open(args: &Args) -> io::Result<Conn> {
        let timeout = Some(args.timeout.0);
        Ok(match &args.endpoint.unix {
            #[cfg(unix)]
            Some(path) => {
                let s = Endpoint::connect_unix(path)?;
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)?;
                Conn::Unix(s)
            }
            #[cfg(not(unix))]
            Some(_) => return Err(io::Error::new(io::ErrorKind::Unsupported, "Unix sockets need a Unix system")),
            None => {
                let s = args.endpoint.connect_tcp()?;
                s.set_nodelay(true)?;
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)?;
                Conn::Tcp(s)
            }
        })
    }

    /// Drives the connection with the library's engine, recording each latency.
    fn drive(&self, framing: Framing, workload: Workload, progress: &AtomicU64) -> Result<Report, Error> {
        match self {
            Conn::Tcp(s) => drive(s, framing, workload, progress),
            #[cfg(unix)]
            Conn::Unix(s) => drive(s, framing, workload, progress),
        }
    }
}

pub fn run(args: &Args) -> ExitCode {
    let target = args.endpoint.target(false);
    let conns: Vec<Conn> = match (0..args.connections).map(|_| Conn::open(args)).collect() {
        Ok(conns) => conns,
        Err(e) => {
            eprintln!("stamp-echo load: {}", stamp_echo::escape::escape(e.to_string().as_bytes()));
            return ExitCode::FAILURE;
        }
    };
    let size = usize::try_from(args.size).unwrap_or(Framing::DEFAULT_MAX_FRAME);
    let mut probe = Vec::new();
    message(0, size, &mut probe);
    if let Err(e) = Checker::new(args.endpoint.framing()).send(&probe, (), &mut Vec::new()) {
        eprintln!("stamp-echo load: --size {size}: {e}");
        return ExitCode::FAILURE;
    }
    // Open loop: the schedule sets the pace, not the replies.
    let window = args.window.unwrap_or(if args.rate.is_some() { WINDOW.max() } else { 1 });
    let progress = AtomicU64::new(0);
    let start_line = Barrier::new(conns.len() + 1);
    let (done_tx, done) = mpsc::channel();
    let total = args.messages * conns.len() as u64;
    let mut workload = Workload::new(args.messages, size, usize::try_from(window).unwrap_or(usize::MAX));
    if let Some(rate) = args.rate {
        // Each connection's schedule starts as it starts, at the same rate share.
        workload = workload.open_loop(Duration::from_secs_f64(args.connections as f64 / rate as f64));
    }
    let (results, elapsed) = std::thread::scope(|scope| {
        for conn in &conns {
            let done_tx = done_tx.clone();
            let (progress, start_line) = (&progress, &start_line);
            scope.spawn(move || {
                start_line.wait();
                let _ = done_tx.send(conn.drive(args.endpoint.framing(), workload, progress));
            });
        }
        start_line.wait();
        let start = Instant::now();
        let mut results = Vec::new();
        while results.len() < conns.len() {
            match done.recv_timeout(Duration::from_secs(1)) {
                Ok(result) => results.push(result),
                Err(_) => {
                    let answered = progress.load(Ordering::Relaxed);
                    let rate = answered as f64 / start.elapsed().as_secs_f64();
                    eprintln!("  {answered}/{total} replies checked, {rate:.0} msg/s");
                }
            }
        }
        (results, start.elapsed())
    });

    let mut latency = match new_histogram() {
        Ok(histogram) => histogram,
        Err(e) => {
            eprintln!("stamp-echo load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut messages, mut bytes_out, mut bytes_in, mut failed) = (0, 0, 0, 0);
    for result in results {
        match result {
            Ok(report) => {
                let _ = latency.add(&report.latency);
                messages += report.messages;
                bytes_out += report.bytes_sent;
                bytes_in += report.bytes_received;
            }
            Err(e) => {
                failed += 1;
                eprintln!("stamp-echo load: a connection to {target} failed: {e}");
            }
        }
    }
    let summary = Summary { messages, failed, bytes_out, bytes_in, elapsed, size: args.size, latency };
    if args.json {
        println!("{}", summary.json(args));
    } else {
        summary.print(args);
    }
    let _ = io::stdout().flush();
    if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// Latencies in nanoseconds, 1 ns to an hour, 3 significant digits.
fn new_histogram() -> Result<Histogram<u64>, Error> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NANOS, 3).map_err(|e| Error::Io(io::Error::other(format!("{e:?}"))))
}

/// The whole run's figures.
struct Summary {
    messages: u64,
    failed: u64,
    bytes_out: u64,
    bytes_in: u64,
    elapsed: Duration,
    size: u64,
    latency: Histogram<u64>,
}

/// The percentiles reported.
const PERCENTILES: [(&str, f64); 4] = [("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9), ("p99.99", 99.99)];

impl Summary {
    fn us(&self, percentile: f64) -> f64 {
        self.latency.value_at_percentile(percentile) as f64 / 1e3
    }

    fn rates(&self) -> (f64, f64, f64) {
        let secs = self.elapsed.as_secs_f64();
        (secs, self.messages as f64 / secs, (self.messages * self.size) as f64 / secs / 1e6)
    }

    fn print(&self, args: &Args) {
        let (secs, msgs_per_s, mb_per_s) = self.rates();
        let messages = self.messages;
        println!(
            "{messages} replies checked on {} connections in {secs:.3} s: {msgs_per_s:.0} msg/s, {mb_per_s:.2} MB/s of \
             messages ({:.2} MB out, {:.2} MB in)",
            args.connections,
            self.bytes_out as f64 / 1e6,
            self.bytes_in as f64 / 1e6,
        );
        if let Some(rate) = args.rate {
            println!("open loop at {rate} msg/s: latencies count from when each message was due");
        }
        let mut line = String::from("latency:");
        for (name, p) in PERCENTILES {
            let _ = write!(line, " {name} {:.1} us,", self.us(p));
        }
        println!("{line} max {:.1} us", self.latency.max() as f64 / 1e3);
        println!(
            "result: messages={messages} failed_connections={} seconds={secs:.6} msgs_per_s={msgs_per_s:.1} \
             mb_per_s={mb_per_s:.3} p50_us={:.1} p99_us={:.1} p999_us={:.1}",
            self.failed,
            self.us(50.0),
            self.us(99.0),
            self.us(99.9)
        );
    }

    /// `{"messages","failed_connections","seconds","msgs_per_s","mb_per_s","bytes_out","bytes_in","rate",
    /// "latency_us":{"p50","p99","p99.9","p99.99","max","mean"}}`.
    fn json(&self, args: &Args) -> String {
        let (secs, msgs_per_s, mb_per_s) = self.rates();
        let rate = args.rate.map_or_else(|| "null".to_owned(), |r| r.to_string());
        let mut out = format!(
            "{{\"target\":{},\"connections\":{},\"messages\":{},\"failed_connections\":{},\"seconds\":{secs:.6},\
             \"msgs_per_s\":{msgs_per_s:.1},\"mb_per_s\":{mb_per_s:.3},\"bytes_out\":{},\"bytes_in\":{},\"rate\":{rate},\
             \"latency_us\":{{",
            json_string(&args.endpoint.target(false)),
            args.connections,
            self.messages,
            self.failed,
            self.bytes_out,
            self.bytes_in,
        );
        for (name, p) in PERCENTILES {
            let _ = write!(out, "\"{name}\":{:.1},", self.us(p));
        }
        let _ =
            write!(out, "\"max\":{:.1},\"mean\":{:.1}}}}}", self.latency.max() as f64 / 1e3, self.latency.mean() / 1e3);
        out
    }
}

/// `text` as a JSON string, quotes included.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What one connection measured.
struct Report {
    messages: u64,
    bytes_sent: u64,
    bytes_received: u64,
    latency: Histogram<u64>,
}

/// One connection: the library's [`drive`](stamp_echo::load::drive), its
/// latencies recorded in nanoseconds (at least 1, as the histogram counts).
fn drive<S>(stream: &S, framing: Framing, workload: Workload, progress: &AtomicU64) -> Result<Report, Error>
where
    S: Sync,
    for<'a> &'a S: Read + Write,
{
    let mut latency = new_histogram()?;
    let report = stamp_echo::load::drive(stream, framing, workload, progress, |took| {
        latency.saturating_record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1));
    })?;
    Ok(Report {
        messages: report.messages,
        bytes_sent: report.bytes_sent,
        bytes_received: report.bytes_received,
        latency,
    })
}
