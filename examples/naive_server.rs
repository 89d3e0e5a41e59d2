//! The baseline the runner is measured against: the thread-per-connection
//! server people write by hand, which clones each stream so that one handle
//! reads and the other writes. Two file descriptors per connection, no limit
//! on connections, no timeouts. Not for use: `c10k` runs it for comparison.
//!
//! `naive_server --port 0` prints `listening on ADDR`, then serves chunk
//! framing with UTC ctime stamps; errors go to stderr.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::SystemTime;

use clap::Parser;
use stamp_echo::{Framing, Responder, stamp::Ctime};

/// A hand-written thread-per-connection echo server (a baseline).
#[derive(Parser)]
struct Args {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 8080)]
    port: u16,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(("127.0.0.1", args.port))?;
    println!("listening on {}", listener.local_addr()?);
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                thread::spawn(move || serve(stream));
            }
            Err(e) => eprintln!("accept failed: {e}"),
        }
    }
    Ok(())
}

fn serve(stream: TcpStream) {
    let mut reader = match stream.try_clone() {
        Ok(reader) => reader,
        Err(e) => return eprintln!("try_clone failed: {e}"),
    };
    let mut writer = stream;
    let mut responder = Responder::new(Framing::chunk(), Arc::new(Ctime::utc()));
    let (mut input, mut out) = ([0u8; 1024], Vec::new());
    while let Ok(n @ 1..) = reader.read(&mut input) {
        out.clear();
        if responder.receive(&input[..n], SystemTime::now(), &mut out).is_err() || writer.write_all(&out).is_err() {
            return;
        }
    }
}
