//! The tutorial's client on the library: each line typed is sent, its
//! checked reply printed; an empty line ends it.
//!
//! ```text
//! cargo run --example client                    # to 127.0.0.1:8080
//! cargo run --example client -- 127.0.0.1:9000
//! ```
//!
//! Wiring only, to show the API; `stamp-echo client` (the `cli/` crate) is
//! the one to use: Unix sockets, UDP, framings, probes.
use std::error::Error;
use std::io::{self, BufRead, Write};
use std::net::TcpStream;

use stamp_echo::escape::escape;
use stamp_echo::{EchoClient, Framing};

fn main() -> Result<(), Box<dyn Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let stream = TcpStream::connect(&addr).map_err(|e| format!("{addr}: {e}"))?;
    // The tutorial's framing: each send is a message.
    let mut client = EchoClient::new(stream, Framing::chunk())?;
    let mut lines = io::stdin().lock().lines();
    loop {
        print!("> ");
        io::stdout().flush()?;
        let Some(line) = lines.next().transpose()? else { return Ok(()) };
        if line.is_empty() {
            return Ok(());
        }
        let reply = client.round_trip(line.as_bytes())?;
        // The server's stamp and echo, escaped: a hostile server cannot reach the terminal.
        println!("[{}] {}", escape(reply.stamp().as_bytes()), escape(reply.message()));
    }
}
