//! The stamp-echo server over UDP: each datagram gets one reply datagram
//! `[STAMP] MESSAGE` (framing does not apply). Ctrl-C stops it.
//!
//! ```text
//! cargo run --example udp_server -- --stamp rfc3339
//! cargo run --example client -- --udp --stamp rfc3339 --count 5
//! ```
mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;

use clap::Parser;
use stamp_echo::datagram::{DatagramObserver, DatagramServer};
use stamp_echo::{Error, Framing};

/// Answer every UDP datagram with `[STAMP] MESSAGE` (the framing flags do not apply).
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    endpoint: common::Endpoint,
}

/// The log lines, like the original's.
struct Log;

impl DatagramObserver for Log {
    fn datagram(&mut self, from: SocketAddr, message: &[u8]) {
        println!("...datagram from {from}: {}", String::from_utf8_lossy(message));
    }

    fn error(&mut self, from: SocketAddr, error: &Error) {
        println!("...error for {from}: {error}");
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Error> {
    if args.endpoint.framing() != Framing::chunk() {
        eprintln!("note: framing does not apply over UDP: a datagram is a message");
    }
    let (stamp, zone_error) = args.endpoint.stamp.build();
    if let Some(e) = zone_error {
        eprintln!("warning: local time zone not found ({e}); stamping UTC");
    }
    let server = DatagramServer::new(UdpSocket::bind(args.endpoint.tcp_addr())?, stamp)?;
    let stopper = server.stopper();
    ctrlc::set_handler(move || drop(stopper.stop())).map_err(|_| Error::Config("no Ctrl-C handler"))?;
    println!("listening on {} (udp)", server.local_addr()?);
    let summary = server.serve_with(Log)?;
    println!(
        "stopped: {} datagrams answered, {} bytes in, {} bytes out",
        summary.messages, summary.bytes_in, summary.bytes_out
    );
    Ok(())
}
