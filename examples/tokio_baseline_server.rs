//! The idiomatic tokio echo server the async runner is measured against:
//! written the obvious way, as a tokio user would. Line framing, a task per
//! connection, `BufReader::read_until` and a `BufWriter` (64 KiB each),
//! `[ctime] line` replies flushed when the input runs dry, the stamp
//! formatted per message, Nagle off. No limits, no shutdown.
//!
//! `cargo run --release --example tokio_baseline_server -- --port 0` prints `listening on ADDR`.
use std::io;
use std::time::SystemTime;

use stamp_echo::stamp::{Ctime, Stamp};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

async fn handle(stream: TcpStream) -> io::Result<()> {
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    let (ctime, mut stamp, mut line) = (Ctime::utc(), String::new(), Vec::new());
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return writer.flush().await;
        }
        stamp.clear();
        ctime.write_stamp(SystemTime::now(), &mut stamp);
        writer.write_all(format!("[{stamp}] ").as_bytes()).await?;
        writer.write_all(&line).await?;
        if reader.buffer().is_empty() {
            writer.flush().await?;
        }
    }
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let port = std::env::args().skip_while(|a| a != "--port").nth(1).unwrap_or_else(|| "8080".into());
    let listener = TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(handle(stream));
    }
}
