//! The tutorial's server on the library: listen, serve every client at once,
//! log like the original, shut down gracefully on Ctrl-C.
//!
//! ```text
//! cargo run --example server                    # 127.0.0.1:8080
//! cargo run --example server -- 127.0.0.1:0     # any free port
//! ```
//!
//! This is wiring only, to show the API. The server people run is
//! `stamp-echo serve` (the `cli/` crate): every flag, Unix sockets, UDP,
//! socket activation, and a log that never holds up serving.
use std::error::Error;
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use stamp_echo::escape::escape;
use stamp_echo::runner::{self, Peer};
use stamp_echo::{EchoServer, Events, Fragment, Limits};

/// The original's log lines, escaped (a peer's bytes never reach the
/// terminal raw). Printing may block on a stdout nobody reads, which holds
/// up that connection: `stamp-echo serve` logs through a lossy queue instead.
struct Log;

impl Events for Log {
    fn accepting(&self) {
        println!("waiting for connection...");
    }
    fn connected(&self, peer: &Peer) {
        println!("...connected from: {}", escape(peer.to_string().as_bytes()));
    }
    fn message(&self, _peer: &Peer, fragment: Fragment<'_>) {
        if fragment.is_first() {
            println!("date= {}", escape(fragment.bytes()).max_len(256));
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    // The tutorial's defaults: each read is a message, stamped with the local ctime().
    let server = EchoServer::builder().build()?;
    let listener = TcpListener::bind(&addr).map_err(|e| format!("{addr}: {e}"))?;
    println!("listening on {}", listener.local_addr()?);
    let handle = runner::start(listener, server, Limits::default(), Log)?;

    let (stop, stopped) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop.send(());
    })?;
    stopped.recv()?;
    println!("shut down: {}", handle.shutdown(Duration::from_secs(5)));
    Ok(())
}
