//! The hand-written baseline the library is measured against: what a careful
//! engineer writes in forty lines. Line framing, a thread per connection,
//! `read_until`, `[ctime] line` replies into a `BufWriter` flushed when the
//! input runs dry, the stamp formatted per message. No limits, no shutdown.
//!
//! `cargo run --release --example baseline_server -- --port 0` prints `listening on ADDR`.
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use time::OffsetDateTime;

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

fn ctime() -> String {
    let t = OffsetDateTime::now_utc();
    let (day, month) = (DAYS[t.weekday().number_days_from_monday() as usize], MONTHS[t.month() as usize - 1]);
    format!("{day} {month} {:2} {:02}:{:02}:{:02} {}", t.day(), t.hour(), t.minute(), t.second(), t.year())
}

fn handle(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(&stream);
    let mut writer = BufWriter::new(&stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return writer.flush();
        }
        write!(writer, "[{}] ", ctime())?;
        writer.write_all(&line)?;
        if reader.buffer().is_empty() {
            writer.flush()?;
        }
    }
}

fn main() -> std::io::Result<()> {
    let port = std::env::args().skip_while(|a| a != "--port").nth(1).unwrap_or_else(|| "8080".into());
    let listener = TcpListener::bind(format!("127.0.0.1:{port}"))?;
    println!("listening on {}", listener.local_addr()?);
    for stream in listener.incoming() {
        let stream = stream?;
        thread::spawn(move || handle(stream));
    }
    Ok(())
}
