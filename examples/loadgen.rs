//! A load generator that checks every reply: N connections, M messages each,
//! ping-pong (`--window 1`) or pipelined; prints throughput and latency.
//!
//! ```text
//! cargo run --release --example loadgen -- --framing line --port 8080 --connections 16 --messages 20000
//! cargo run --release --example loadgen -- --framing line --port 8080 --window 256 --messages 1000000
//! ```
//!
//! It drives any stamp-echo server, the original's Python one included (chunk
//! framing). The last line is machine-readable, for scripts: `result: key=value ...`.
mod common;

use std::io::Write;
use std::net::TcpStream;
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, mpsc};
use std::time::{Duration, Instant};

use clap::Parser;
use stamp_echo::Error;
use stamp_echo::load::{Histogram, Report, Workload, drive};

/// Drive a stamp-echo server with checked load and report throughput and latency.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    endpoint: common::Endpoint,

    /// Connections, each on its own threads.
    #[arg(long, short = 'c', default_value_t = 1)]
    connections: usize,

    /// Messages per connection.
    #[arg(long, short = 'n', default_value_t = 10_000)]
    messages: u64,

    /// Bytes per message (without framing).
    #[arg(long, short = 's', default_value_t = 16)]
    size: usize,

    /// Messages in flight per connection: 1 is ping-pong, more is pipelining.
    #[arg(long, short = 'w', default_value_t = 1)]
    window: usize,

    /// Seconds a connection may wait on the server before it fails.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// A connected stream of either kind.
enum Conn {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Conn {
    fn open(args: &Args) -> std::io::Result<Conn> {
        let timeout = Some(Duration::from_secs(args.timeout));
        Ok(match &args.endpoint.unix {
            #[cfg(unix)]
            Some(path) => {
                let s = args.endpoint.connect_unix(path)?;
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)?;
                Conn::Unix(s)
            }
            #[cfg(not(unix))]
            Some(path) => {
                let why = format!("--unix {}: Unix sockets need a Unix system", path.display());
                return Err(std::io::Error::new(std::io::ErrorKind::Unsupported, why));
            }
            None => {
                let s = args.endpoint.connect_tcp()?;
                s.set_nodelay(true)?;
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)?;
                Conn::Tcp(s)
            }
        })
    }

    fn drive(&self, args: &Args, progress: &AtomicU64) -> Result<Report, Error> {
        let workload = Workload::new(args.messages, args.size, args.window);
        let framing = args.endpoint.framing();
        match self {
            Conn::Tcp(s) => drive(s, framing, workload, progress),
            #[cfg(unix)]
            Conn::Unix(s) => drive(s, framing, workload, progress),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let conns: Vec<Conn> = match (0..args.connections).map(|_| Conn::open(&args)).collect() {
        Ok(conns) => conns,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let progress = AtomicU64::new(0);
    let start_line = Barrier::new(conns.len() + 1);
    let (done_tx, done) = mpsc::channel();
    let total = args.messages * conns.len() as u64;
    let (results, elapsed) = std::thread::scope(|scope| {
        for conn in &conns {
            let done_tx = done_tx.clone();
            let (args, progress, start_line) = (&args, &progress, &start_line);
            scope.spawn(move || {
                start_line.wait();
                let _ = done_tx.send(conn.drive(args, progress));
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

    let mut latency = Histogram::new();
    let (mut messages, mut bytes_out, mut bytes_in, mut failed) = (0, 0, 0, 0);
    for result in results {
        match result {
            Ok(report) => {
                latency.merge(&report.latency);
                messages += report.messages;
                bytes_out += report.bytes_sent;
                bytes_in += report.bytes_received;
            }
            Err(e) => {
                failed += 1;
                eprintln!("loadgen: connection failed: {e}");
            }
        }
    }
    let secs = elapsed.as_secs_f64();
    let us = |q: f64| latency.quantile(q).as_secs_f64() * 1e6;
    let msgs_per_s = messages as f64 / secs;
    let mb_per_s = (messages * args.size as u64) as f64 / secs / 1e6;
    println!(
        "{messages} replies checked on {} connections in {secs:.3} s: {msgs_per_s:.0} msg/s, {mb_per_s:.2} MB/s of \
         messages ({:.2} MB out, {:.2} MB in)",
        args.connections,
        bytes_out as f64 / 1e6,
        bytes_in as f64 / 1e6,
    );
    println!(
        "latency: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
        us(0.5),
        us(0.99),
        us(0.999),
        latency.max().as_secs_f64() * 1e6
    );
    println!(
        "result: messages={messages} failed_connections={failed} seconds={secs:.6} msgs_per_s={msgs_per_s:.1} \
         mb_per_s={mb_per_s:.3} p50_us={:.1} p99_us={:.1} p999_us={:.1}",
        us(0.5),
        us(0.99),
        us(0.999)
    );
    let _ = std::io::stdout().flush();
    if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
