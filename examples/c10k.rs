//! 10,000 simultaneous connections, measured: opens N connections to a server
//! running as its own process, checks one round trip on each while all are
//! open, and reads the server's resident memory (VmRSS, /proc/PID/status)
//! before and after, for the memory each connection costs.
//!
//! It runs the servers built beside it, in one run: `naive_server` (the
//! hand-written thread-per-connection server that clones each stream) as
//! the baseline, `stamp-echo serve` on the thread runner (`server`), and
//! the same on the tokio runner (`tokio`, `--runtime tokio`). Then, against
//! each runner, it measures what a whole short connection costs (for the
//! thread runner: how much of it is the thread spawn a pool could save).
//!
//! ```text
//! cargo build --release --examples --bin stamp-echo
//! cargo run --release --example c10k -- --connections 10000
//! ```
//!
//! Needs `ulimit -n` above N (plus N for the naive server, which takes two
//! descriptors per connection: that is what it runs out of). Linux only
//! (/proc).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use stamp_echo::protocol::parse_reply;

/// Opens many connections at once to the servers and measures them.
#[derive(Parser)]
struct Args {
    /// Connections held open at once.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,

    /// Short connections (connect, one round trip, close) timed one after another.
    #[arg(long, default_value_t = 2_000)]
    churn: usize,

    /// Which servers to run, in order: naive, server (the thread runner),
    /// tokio (the tokio runner).
    #[arg(long, value_delimiter = ',', default_value = "naive,server,tokio")]
    servers: Vec<String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut per_connection = Vec::new();
    for name in &args.servers {
        let (binary, extra): (&str, Vec<String>) = match name.as_str() {
            "naive" => ("naive_server", vec![]),
            "server" | "tokio" => {
                let cap = (args.connections + 64).to_string();
                let runtime = if name == "tokio" { "tokio" } else { "threads" };
                let flags = [
                    "--quiet",
                    "--stamp",
                    "ctime-utc",
                    "--backlog",
                    "4096",
                    "--max-connections",
                    &cap,
                    "--runtime",
                    runtime,
                ];
                ("stamp-echo", flags.iter().map(|s| s.to_string()).collect())
            }
            other => return Err(format!("unknown server {other:?}: expected naive, server or tokio").into()),
        };
        println!("== {name} ({binary} {})", extra.join(" "));
        let mut server = ServerProcess::spawn(binary, &extra)?;
        let run = hold_open(&server, args.connections);
        if run.ok > 0 {
            per_connection.push((name.as_str(), run.kib_per_connection()));
        }
        if binary == "stamp-echo" && run.ok == args.connections {
            churn(server.addr, args.churn, name == "server");
        }
        let (summary, errors) = server.stop();
        println!("   server's stderr: {}", errors.describe());
        if let Some(summary) = summary {
            println!("   server said: {summary}");
        }
    }
    println!("== resident memory per connection, same run:");
    for (name, kib) in &per_connection {
        print!("   {name} {kib:.2} KiB");
        for (other, other_kib) in &per_connection {
            if other != name {
                print!(", {:.2}x {other}", kib / other_kib);
            }
        }
        println!();
    }
    Ok(())
}

/// What holding N connections open showed.
struct Held {
    ok: usize,
    rss_before: u64,
    rss_after: u64,
}

impl Held {
    fn kib_per_connection(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.ok as f64
    }
}

/// Opens `n` connections, then one round trip on each while all are open.
fn hold_open(server: &ServerProcess, n: usize) -> Held {
    let rss_before = server.status("VmRSS:");
    let started = Instant::now();
    let mut streams = Vec::with_capacity(n);
    let (mut refused, mut in_a_row) = (Failures::default(), 0);
    for _ in 0..n {
        match TcpStream::connect_timeout(&server.addr, Duration::from_secs(2)) {
            Ok(stream) => {
                streams.push(stream);
                in_a_row = 0;
            }
            Err(e) => {
                refused.note(&e);
                in_a_row += 1;
                if in_a_row == 10 {
                    break; // nothing gets through any more
                }
            }
        }
    }
    println!("   connected {} of {n} in {:?} ({})", streams.len(), started.elapsed(), refused.describe());

    let mut failed = Failures::default();
    let mut sent = Vec::with_capacity(streams.len());
    for (i, stream) in streams.iter_mut().enumerate() {
        let message = format!("c10k {i}");
        if let Err(e) = stream.write_all(message.as_bytes()) {
            failed.note(&e);
        }
        sent.push(message);
    }
    // One deadline for all the replies, so that unserved connections cost
    // the run seconds, not seconds each.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ok = 0;
    for (stream, message) in streams.iter_mut().zip(&sent) {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let mut reply = vec![0; "[Thu Jan  1 00:00:00 1970] ".len() + message.len()];
        let result = stream.set_read_timeout(Some(left)).and_then(|()| stream.read_exact(&mut reply));
        match result.map(|()| parse_reply(&reply).map(|(_, echo)| echo == message.as_bytes())) {
            Ok(Ok(true)) => ok += 1,
            Ok(_) => failed.note(&"a reply that is not the echo"),
            Err(e) => failed.note(&e),
        }
    }
    let rss_after = server.status("VmRSS:");
    let threads = server.status("Threads:");
    println!("   round trips verified with all {} open: {ok} ({})", streams.len(), failed.describe());
    println!("   server VmRSS {rss_before} KiB before, {rss_after} KiB with them open, {threads} threads");
    let held = Held { ok, rss_before, rss_after };
    if ok > 0 {
        println!("   resident memory per connection: {:.1} KiB", held.kib_per_connection());
    }
    held
}

/// Times `n` short connections one after another; with `spawns`, also `n`
/// thread spawns in this process: the share of a connection's cost a thread
/// pool could save the thread runner.
fn churn(addr: SocketAddr, n: usize, spawns: bool) {
    let started = Instant::now();
    for i in 0..n {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let message = format!("churn {i}");
        stream.write_all(message.as_bytes()).expect("send");
        let mut reply = vec![0; "[Thu Jan  1 00:00:00 1970] ".len() + message.len()];
        stream.read_exact(&mut reply).expect("reply");
    }
    let per_connection = started.elapsed() / n as u32;
    println!("   {n} short connections one after another: {per_connection:?} each");
    if !spawns {
        return;
    }
    let started = Instant::now();
    for _ in 0..n {
        let spawned = thread::Builder::new().stack_size(stamp_echo::Limits::DEFAULT_STACK_SIZE).spawn(|| {});
        spawned.expect("spawn").join().expect("join");
    }
    let per_spawn = started.elapsed() / n as u32;
    println!(
        "   spawning and joining a thread: {per_spawn:?}, {:.0}% of a short connection",
        100.0 * per_spawn.as_secs_f64() / per_connection.as_secs_f64()
    );
}

/// Counts failures and keeps the first reason.
#[derive(Default)]
struct Failures {
    count: usize,
    first: Option<String>,
}

impl Failures {
    fn note(&mut self, why: &dyn std::fmt::Display) {
        self.count += 1;
        self.first.get_or_insert_with(|| why.to_string());
    }

    fn describe(&self) -> String {
        match &self.first {
            None => "no failures".into(),
            Some(first) => format!("{} failed, first: {first}", self.count),
        }
    }
}

/// A server example running as a child process.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    stdout: Receiver<String>,
    /// Counts the lines of stderr (a server out of descriptors may print
    /// one per failed accept, without end).
    stderr: Option<thread::JoinHandle<Failures>>,
}

impl ServerProcess {
    fn spawn(name: &str, extra: &[String]) -> Result<ServerProcess, Box<dyn std::error::Error>> {
        let exe = std::env::current_exe()?;
        // The examples are in target/<profile>/examples, the command in target/<profile>.
        let (binary, subcommand): (PathBuf, &[&str]) = match exe.parent().and_then(Path::parent) {
            Some(profile) if name == "stamp-echo" => (profile.join(name), &["serve"]),
            _ => (exe.with_file_name(name), &[]),
        };
        if !binary.exists() {
            let build = "cargo build --release --examples --bin stamp-echo";
            return Err(format!("{} not found: run `{build}` first", binary.display()).into());
        }
        let mut child = Command::new(&binary)
            .args(subcommand)
            .args(["--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = lines(child.stdout.take());
        let stderr = child.stderr.take().map(|pipe| {
            thread::spawn(move || {
                let mut errors = Failures::default();
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    errors.note(&line);
                }
                errors
            })
        });
        let first = stdout.recv_timeout(Duration::from_secs(30))?;
        let addr = first.strip_prefix("listening on ").ok_or(format!("unexpected first line {first:?}"))?.parse()?;
        Ok(ServerProcess { child, addr, stdout, stderr })
    }

    /// A number from the server's /proc/PID/status (VmRSS in KiB, Threads).
    fn status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_default();
        line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
    }

    /// SIGTERM; then the last line the server printed, and its errors.
    fn stop(&mut self) -> (Option<String>, Failures) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        let errors = self.stderr.take().and_then(|t| t.join().ok()).unwrap_or_default();
        (self.stdout.iter().last(), errors)
    }
}

/// The lines of a child's output, read on a thread so the pipe never fills.
fn lines<R: Read + Send + 'static>(pipe: Option<R>) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(pipe) = pipe {
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    rx
}
