//! `stamp-echo client`: the tutorial's client. Each line typed is sent and
//! its reply printed (`> ` prompt when a person types; piped input gets the
//! replies alone); an empty line or the end of input ends it. `--count N`
//! probes instead, as `stamp-echo ping` does.
//!
//! Everything the server sends (stamps, echoes, error texts) is printed
//! escaped: a hostile server cannot reach the terminal. Ctrl-C ends any mode
//! at once with exit status 130.

use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use stamp_echo::datagram::DatagramClient;
use stamp_echo::escape::escape;
use stamp_echo::{Bound, EchoClient, Error, Limits, Reply};

use crate::args::{Dur, Endpoint, bounded, default_of, duration, duration_help, help};
use crate::ping::{self, Probing};

/// `--timeout`: the range of the library's timeouts.
const TIMEOUT: Bound<Duration> =
    Bound::new("timeout", Limits::MIN_TIMEOUT, Limits::MAX_TIMEOUT).with_default(Duration::from_secs(2));
/// `--retries`, with the library's default.
const RETRIES: Bound<u32> = Bound::new("retries", 0, 100).with_default(DatagramClient::DEFAULT_RETRIES);

/// How to reach the server: shared by `client` and `ping`.
#[derive(clap::Args, Clone)]
pub struct Connection {
    #[command(flatten)]
    pub endpoint: Endpoint,

    /// Use UDP: each line (or probe) is one datagram; framing does not apply.
    #[arg(short, long, conflicts_with_all = ["unix", "framing"])]
    pub udp: bool,

    #[arg(short, long, value_name = "DURATION", default_value_t = Dur(default_of(TIMEOUT)),
          help = duration_help("How long to wait for a reply: over TCP or a Unix socket, the longest a read or write \
                                may block; over UDP, each attempt before sending again", &TIMEOUT),
          value_parser = duration(TIMEOUT))]
    pub timeout: Dur,

    #[arg(long, value_name = "N", requires = "udp", default_value_t = default_of(RETRIES),
          help = help("UDP: how many times to send an unanswered request again", &RETRIES),
          value_parser = bounded(RETRIES))]
    pub retries: u32,
}

/// Talk to a stamp-echo server: each line typed is sent, each reply printed.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    connection: Connection,

    #[command(flatten)]
    probing: Probing,
}

/// One message out, its checked reply back, whatever the transport.
pub type RoundTrip = Box<dyn FnMut(&[u8]) -> Result<Reply, Error>>;

pub fn run(args: &Args) -> ExitCode {
    let target = args.connection.endpoint.target(args.connection.udp);
    let mut round_trip = match connect(&args.connection) {
        Ok(round_trip) => round_trip,
        Err(e) => {
            eprintln!("stamp-echo client: {}", escape(e.to_string().as_bytes()));
            return ExitCode::FAILURE;
        }
    };
    let result = match args.probing.count {
        Some(_) => ping::probe(&mut round_trip, &target, &args.connection, &args.probing, true).map(|_| ()),
        None => interact(&mut round_trip),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stamp-echo client: {target}: {}", escape(e.to_string().as_bytes()));
            ExitCode::FAILURE
        }
    }
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

/// Connects as the flags say; errors name what they concern.
pub fn connect(args: &Connection) -> Result<RoundTrip, Error> {
    let framing = args.endpoint.framing();
    let timeout = args.timeout.0;
    if args.udp {
        let addr = args.endpoint.lookup()?;
        let mut client = DatagramClient::connect(addr.as_slice())?;
        client.set_timeout(timeout)?;
        client.set_retries(args.retries);
        return Ok(Box::new(move |m| client.round_trip(m)));
    }
    if let Some(path) = &args.endpoint.unix {
        #[cfg(unix)]
        {
            let stream = Endpoint::connect_unix(path)?;
            stream.set_read_timeout(Some(timeout))?;
            stream.set_write_timeout(Some(timeout))?;
            let mut client = EchoClient::new(stream, framing)?;
            client.set_timeout(Some(timeout))?; // a deadline for each whole reply
            return Ok(Box::new(move |m| client.round_trip(m)));
        }
        #[cfg(not(unix))]
        return Err(stamp_echo::ConfigError::new("--unix", path.display(), "a Unix system").into());
    }
    let stream = args.endpoint.connect_tcp()?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut client = EchoClient::new(stream, framing)?;
    client.set_timeout(Some(timeout))?; // a deadline for each whole reply
    Ok(Box::new(move |m| client.round_trip(m)))
}

/// The original's loop: prompt `> ` (only when a person types), send the
/// line without its line ending, print the reply.
fn interact(round_trip: &mut RoundTrip) -> Result<(), Error> {
    let answered = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&answered);
    crate::signal::on_stop(move || {
        eprintln!("\ninterrupted: {} replies", counted.load(Ordering::Relaxed));
        std::process::exit(130);
    })?;
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
