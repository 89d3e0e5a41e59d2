//! The tutorial's client: sends each line typed and prints the stamped reply;
//! or, with `--count N`, probes the server like `ping`, with round trips and
//! the server's clock offset.
//!
//! ```text
//! cargo run --example client                          # 127.0.0.1:8080, chunk framing, TCP
//! cargo run --example client -- --udp                 # against `server --udp`
//! cargo run --example client -- --stamp rfc3339 --count 5 --interval 0.2
//! ```
//!
//! Ctrl-C ends any mode at once (mid-reply, mid-interval, mid-retry) with its
//! summary and exit status 130: the probe summary on stdout, like `ping`;
//! in the interactive mode, the count of replies on stderr. Everything the
//! server sends (stamps, echoes, error texts) is printed escaped
//! ([`stamp_echo::escape`]): a hostile server cannot reach the terminal.
mod common;

use std::io::{self, BufRead, IsTerminal, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clap::Parser;
use stamp_echo::TimeoutError;
use stamp_echo::datagram::DatagramClient;
use stamp_echo::escape::escape;
use stamp_echo::probe::Probes;
use stamp_echo::stamp::StampKind;
use stamp_echo::{ConfigError, EchoClient, Error, Reply};

/// Talk to a stamp-echo server: each line typed is sent, each reply printed;
/// an empty line or the end of input ends it.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    endpoint: common::Endpoint,

    /// Use UDP: each line (or probe) is one datagram; framing does not apply.
    #[arg(long, conflicts_with = "unix")]
    udp: bool,

    /// Probe like ping: send N small messages, print one line per reply
    /// (round trip, and the clock offset with a sub-second --stamp), then a summary.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,

    /// Seconds between probes (0 to 2592000).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = seconds("--interval"))]
    interval: Duration,

    /// Seconds to wait for a reply (0.001 to 2592000): over TCP or a Unix
    /// socket, the longest a read or write may block before giving up; over
    /// UDP, each attempt before sending again.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = positive_seconds)]
    timeout: Duration,

    /// UDP: how many times to send an unanswered request again (0 to 100).
    #[arg(long, value_name = "N", default_value_t = DatagramClient::DEFAULT_RETRIES,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    retries: u32,
}

/// One message out, its checked reply back, whatever the transport.
type RoundTrip = Box<dyn FnMut(&[u8]) -> Result<Reply, Error>>;

fn main() -> ExitCode {
    let args = Args::parse();
    let target = target(&args);
    let mut round_trip = match connect(&args) {
        Ok(round_trip) => round_trip,
        Err(e) => {
            eprintln!("error: cannot connect to {target}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args.count {
        Some(count) => probe(&mut round_trip, &target, count, &args),
        None => interact(&mut round_trip),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", escape(e.to_string().as_bytes()));
            ExitCode::FAILURE
        }
    }
}

/// On Ctrl-C (or SIGTERM): print what `summary` says, and end the process
/// at once, wherever the client is waiting.
fn on_interrupt(summary: impl Fn() + Send + 'static) -> Result<(), Error> {
    ctrlc::set_handler(move || {
        summary();
        std::process::exit(130);
    })
    .map_err(|e| Error::Io(io::Error::other(e)))
}

/// A reply as one safe line, escaped: `[STAMP] MESSAGE`, the first stamp
/// and the message once, however many pieces the server sent it in (a note
/// at the end says how many, if more than one). So what is printed is
/// bounded by the message, whatever the server's stamps.
fn show(reply: &Reply) -> String {
    let line = format!("[{}] {}", escape(reply.stamp().as_bytes()), escape(reply.message()));
    match reply.piece_count() {
        0 | 1 => line,
        n => format!("{line}  ({n} stamped pieces)"),
    }
}

/// The server and the transport, for messages.
fn target(args: &Args) -> String {
    match (&args.endpoint.unix, args.udp) {
        (_, true) => format!("{} (udp)", args.endpoint.tcp_addr()),
        (Some(path), false) => format!("{} (unix)", path.display()),
        (None, false) => format!("{} (tcp)", args.endpoint.tcp_addr()),
    }
}

/// Connects as the flags say.
fn connect(args: &Args) -> Result<RoundTrip, Error> {
    let framing = args.endpoint.framing();
    if args.udp {
        let mut client = DatagramClient::connect(args.endpoint.tcp_addr().as_str())?;
        client.set_timeout(args.timeout)?;
        client.set_retries(args.retries);
        return Ok(Box::new(move |m| client.round_trip(m)));
    }
    if let Some(path) = &args.endpoint.unix {
        #[cfg(unix)]
        {
            let stream = std::os::unix::net::UnixStream::connect(path)?;
            stream.set_read_timeout(Some(args.timeout))?;
            stream.set_write_timeout(Some(args.timeout))?;
            let mut client = EchoClient::new(stream, framing)?;
            client.set_timeout(Some(args.timeout))?; // a deadline for each whole reply
            return Ok(Box::new(move |m| client.round_trip(m)));
        }
        #[cfg(not(unix))]
        return Err(stamp_echo::ConfigError::new("--unix", path.display(), "a Unix system").into());
    }
    let stream = TcpStream::connect(args.endpoint.tcp_addr().as_str())?;
    stream.set_read_timeout(Some(args.timeout))?;
    stream.set_write_timeout(Some(args.timeout))?;
    let mut client = EchoClient::new(stream, framing)?;
    client.set_timeout(Some(args.timeout))?; // a deadline for each whole reply
    Ok(Box::new(move |m| client.round_trip(m)))
}

/// The original's loop: prompt `> ` (only when a person types: piped input
/// gets the replies alone), send the line without its line ending, print the reply.
fn interact(round_trip: &mut RoundTrip) -> Result<(), Error> {
    let answered = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&answered);
    on_interrupt(move || eprintln!("\ninterrupted: {} replies", counted.load(Ordering::Relaxed)))?;
    let prompt = io::stdin().is_terminal();
    let mut input = io::stdin().lock();
    let mut line = Vec::new();
    loop {
        if prompt {
            print!("> ");
            io::stdout().flush()?;
        }
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let message = line.strip_suffix(b"\n").unwrap_or(&line);
        let message = message.strip_suffix(b"\r").unwrap_or(message);
        if message.is_empty() {
            return Ok(());
        }
        println!("{}", show(&round_trip(message)?));
        answered.fetch_add(1, Ordering::Relaxed);
    }
}

/// `--count N`: N probes `ping SEQ`, a line per reply, and a summary (also on Ctrl-C).
fn probe(round_trip: &mut RoundTrip, target: &str, count: u64, args: &Args) -> Result<(), Error> {
    let kind = args.endpoint.stamp;
    if matches!(kind, StampKind::Ctime | StampKind::CtimeUtc) {
        eprintln!("note: clock offsets need a sub-second stamp: --stamp rfc3339 or unix, as the server's");
    }
    println!("PROBE {target}, {kind} stamps");
    let probes = Arc::new(Mutex::new(Probes::new(kind)));
    let summary = {
        let (probes, target) = (Arc::clone(&probes), target.to_owned());
        move || {
            let summary = probes.lock().unwrap_or_else(PoisonError::into_inner).summary();
            println!("--- {target} ---\n{summary}");
        }
    };
    on_interrupt(summary.clone())?;
    let mut failure = None;
    for seq in 1..=count {
        let result = round_trip(format!("ping {seq}").as_bytes());
        let mut probes = probes.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(reply) => println!("{}", probes.reply(seq, &reply)),
            Err(e @ Error::Timeout(TimeoutError::NoReply { .. })) => {
                probes.lost();
                println!("seq={seq} lost: {e}");
            }
            Err(e) => {
                probes.lost();
                failure = Some(e);
            }
        }
        drop(probes);
        if failure.is_some() || seq == count {
            break;
        }
        std::thread::sleep(args.interval);
    }
    summary();
    failure.map_or(Ok(()), Err)
}

/// The longest duration a flag takes: 30 days.
const MAX_SECONDS: Duration = Duration::from_secs(30 * 24 * 3600);

/// `SECS`, 0 to 30 days, fractions allowed.
fn seconds(flag: &'static str) -> impl Fn(&str) -> Result<Duration, ConfigError> + Clone {
    move |text| {
        let bad = || ConfigError::new(flag, text, "0 to 2592000 seconds");
        let secs: f64 = text.parse().map_err(|_| bad())?;
        Duration::try_from_secs_f64(secs).ok().filter(|d| *d <= MAX_SECONDS).ok_or_else(bad)
    }
}

/// `--timeout`: 1 ms to 30 days.
fn positive_seconds(text: &str) -> Result<Duration, ConfigError> {
    let bad = || ConfigError::new("--timeout", text, "0.001 to 2592000 seconds");
    seconds("--timeout")(text).ok().filter(|d| *d >= Duration::from_millis(1)).ok_or_else(bad)
}
