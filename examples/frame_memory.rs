//! Memory per connection in the middle of a large frame, measured: the
//! library's runner serves N connections in this process; each first makes
//! one small round trip (the baseline: an idle connection), then sends the
//! 4-byte prefix of a 16 MiB length-prefixed frame and part of its payload,
//! and reads back the reply streamed so far (its length, its header and the
//! echoed part), so the server has certainly read it. Resident memory
//! (VmRSS in /proc/self/status) is read before, with the idle connections,
//! and with every connection mid-frame.
//!
//! ```text
//! cargo run --release --example frame_memory -- --connections 1000 --sent-kib 1024
//! cargo run --release --example frame_memory -- --connections 1000 --sent-kib 1024 --runtime tokio
//! ```
//!
//! Needs `ulimit -n` above 2 N (both ends of each connection live in this
//! process). Linux only (/proc). The client's side holds no per-connection
//! buffer, so the growth is the server's: its threads' stacks as touched, its
//! read buffers and reply buffers (`--runtime threads`, the thread runner),
//! or its tasks and the replies not yet taken (`--runtime tokio`).

#[path = "common/running.rs"]
mod running;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use clap::Parser;
use running::Runtime;
use stamp_echo::runner::Limits;
use stamp_echo::stamp::Ctime;
use stamp_echo::{EchoServer, Framing};

/// Holds N connections in the middle of a 16 MiB frame and reports the memory.
#[derive(Parser)]
struct Args {
    /// Connections held at once.
    #[arg(long, default_value_t = 1_000)]
    connections: usize,

    /// KiB of each frame's payload sent before measuring.
    #[arg(long, default_value_t = 1024)]
    sent_kib: usize,

    /// Which runner serves.
    #[arg(long, value_enum, default_value_t = Runtime::Threads)]
    runtime: Runtime,
}

/// The declared frame: the default limit, 16 MiB.
const FRAME: usize = Framing::DEFAULT_MAX_FRAME;

/// A reply's length and `[Thu Jan  1 00:00:00 1970] ` header.
const REPLY_HEADER: usize = 4 + 27;

/// Bytes sent at a time.
const PIECE: usize = 64 * 1024;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let sent = (args.sent_kib * 1024).min(FRAME);
    let server = EchoServer::builder().framing(Framing::length_prefixed()).stamp(Ctime::utc()).build()?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let limits = Limits::default().max_connections(args.connections + 16);
    let handle = running::start(args.runtime, listener.into(), server, limits, None, ())?;

    // Everything this side needs, allocated before the first measurement.
    let payload = vec![b'x'; PIECE];
    let rss_start = vm_rss_kib()?;
    let started = Instant::now();
    let mut streams = Vec::with_capacity(args.connections);
    let mut buffer = vec![0u8; REPLY_HEADER + PIECE];
    for i in 0..args.connections {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        let message = format!("idle {i}");
        let mut framed = Vec::new();
        Framing::length_prefixed().encode_message(message.as_bytes(), &mut framed)?;
        stream.write_all(&framed)?;
        let reply_len = REPLY_HEADER + message.len();
        stream.read_exact(&mut buffer[..reply_len])?;
        if !buffer[..reply_len].ends_with(message.as_bytes()) {
            return Err(format!("connection {i}: not an echo").into());
        }
        streams.push(stream);
    }
    let rss_idle = vm_rss_kib()?;
    println!(
        "{} idle connections (one round trip each) in {:?}: VmRSS {rss_start} -> {rss_idle} KiB",
        streams.len(),
        started.elapsed()
    );

    let started = Instant::now();
    let header = u32::try_from(FRAME)?.to_be_bytes();
    for (i, stream) in streams.iter_mut().enumerate() {
        stream.write_all(&header)?;
        // Read the echo while sending, as a peer of a streaming server must:
        // each piece's echo (after the reply's length and header) before the
        // next piece goes out.
        let mut reply_header = REPLY_HEADER;
        let mut left = sent;
        while left > 0 {
            let piece = &payload[..left.min(PIECE)];
            left -= piece.len();
            stream.write_all(piece)?;
            stream.read_exact(&mut buffer[..reply_header + piece.len()])?;
            if buffer[reply_header..reply_header + piece.len()] != *piece {
                return Err(format!("connection {i}: not an echo").into());
            }
            reply_header = 0;
        }
        if reply_header > 0 {
            stream.read_exact(&mut buffer[..reply_header])?;
        }
    }
    let rss_mid = vm_rss_kib()?;
    let n = streams.len() as f64;
    let idle = (rss_idle.saturating_sub(rss_start)) as f64 / n;
    let mid = (rss_mid.saturating_sub(rss_start)) as f64 / n;
    println!(
        "{} connections each {} KiB into a {} MiB frame, echo read back, in {:?}: VmRSS {rss_mid} KiB",
        streams.len(),
        sent / 1024,
        FRAME >> 20,
        started.elapsed()
    );
    println!("resident memory per connection: idle {idle:.1} KiB, mid-frame {mid:.1} KiB (ratio {:.2})", mid / idle);
    println!("server active connections: {}", handle.active());
    drop(streams);
    let totals = handle.shutdown(Duration::from_secs(5));
    println!("server: {totals}");
    Ok(())
}

/// This process's resident memory, in KiB.
fn vm_rss_kib() -> Result<u64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or("no VmRSS in /proc/self/status")?;
    Ok(line.split_whitespace().nth(1).ok_or("no VmRSS value")?.parse()?)
}
