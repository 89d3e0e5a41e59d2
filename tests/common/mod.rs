//! Helpers shared by the integration tests, in five parts (the connections
//! and both runtimes in `connections.rs`, shared with the command line's tests):
//!
//! - a server with a fixed clock, and the exact replies it sends;
//! - the library's runner serving on 127.0.0.1:0, its events recorded on a
//!   channel so a test can wait for them instead of sleeping;
//! - client connections with safety-net timeouts, and raw round trips;
//! - the Python peers;
//! - a strict parser for ctime stamps and stamped replies, and an in-memory
//!   server (`Loopback`) for `EchoClient`.
//!
//! Each test file includes this with `mod common;` and uses a part of it.
#![allow(dead_code)]

#[macro_use]
mod connections;
pub use connections::*;

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use stamp_echo::framing::LineEnding;
use stamp_echo::protocol::Responder;
use stamp_echo::runner::{self, Peer, Refusal};
use stamp_echo::stamp::Ctime;
use stamp_echo::{EchoServer, Error, Events, Fragment, Framing, Handle, Limits, Summary};
use stamp_echo::{ProtocolError, TimeoutError};

// ---- A server with a fixed clock ----

/// The instant of the tutorial's example output, `Sun Feb  3 10:00:18 2013` in UTC.
pub const FIXED_SECS: u64 = 1_359_885_618;
/// The ctime text of [`FIXED_SECS`] in UTC: the stamp on every reply of a
/// [`fixed_server`].
pub const FIXED_CTIME: &str = "Sun Feb  3 10:00:18 2013";

pub fn fixed_now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(FIXED_SECS)
}

/// A server in `framing` stamping [`FIXED_CTIME`] on every reply.
pub fn fixed_server(framing: Framing) -> EchoServer {
    EchoServer::builder().framing(framing).stamp(Ctime::utc()).clock(fixed_now).build().expect("valid configuration")
}

/// What a [`fixed_server`] sends back for `message` that came with `ending`:
/// `[FIXED_CTIME] message` + `ending`, with a length prefix in length-prefixed
/// framing. Built here byte by byte, not with the library's encoder, so that
/// tests comparing against it check the library's framing too.
pub fn fixed_reply(framing: Framing, message: &[u8], ending: LineEnding) -> Vec<u8> {
    let mut body = format!("[{FIXED_CTIME}] ").into_bytes();
    body.extend_from_slice(message);
    let ending: &[u8] = match ending {
        LineEnding::None => b"",
        LineEnding::Lf => b"\n",
        LineEnding::CrLf => b"\r\n",
        other => panic!("a line ending this helper does not know: {other:?}"),
    };
    body.extend_from_slice(ending);
    if let Framing::LengthPrefixed { .. } = framing {
        let mut framed = u32::try_from(body.len()).expect("a small reply").to_be_bytes().to_vec();
        framed.extend_from_slice(&body);
        body = framed;
    }
    body
}

/// Appends `message` framed as a client would send it, without the checks of
/// `Framing::encode_message`: tests send what a client may not (over a
/// limit, a newline inside a line, half a character), to see what the server
/// does with it.
pub fn frame(framing: Framing, message: &[u8], out: &mut Vec<u8>) {
    match framing {
        Framing::LengthPrefixed { .. } => {
            out.extend_from_slice(&u32::try_from(message.len()).expect("a test frame under 4 GiB").to_be_bytes());
            out.extend_from_slice(message);
        }
        Framing::Line { .. } => {
            out.extend_from_slice(message);
            out.push(b'\n');
        }
        _ => out.extend_from_slice(message),
    }
}

/// The line ending of a message framed by [`frame`]: `\n` in line framing,
/// none otherwise.
pub fn sent_ending(framing: Framing) -> LineEnding {
    match framing {
        Framing::Line { .. } => LineEnding::Lf,
        _ => LineEnding::None,
    }
}

// ---- The runner, with recorded events ----

/// What an error was, in a form a test can compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Timeout,
    MessageTimeout,
    WriteTimeout,
    Evicted,
    LineTooLong { max: usize },
    FrameTooLarge { declared: u64, max: usize },
    TruncatedFrame { expected: u64, received: u64 },
    Io(io::ErrorKind),
    Other(String),
}

impl From<&Error> for Kind {
    fn from(e: &Error) -> Kind {
        match e {
            Error::Timeout(TimeoutError::Idle) => Kind::Timeout,
            Error::Timeout(TimeoutError::Message { .. }) => Kind::MessageTimeout,
            Error::Timeout(TimeoutError::Write { .. }) => Kind::WriteTimeout,
            Error::Evicted { .. } => Kind::Evicted,
            Error::Protocol(ProtocolError::LineTooLong { max }) => Kind::LineTooLong { max: *max },
            Error::Protocol(ProtocolError::FrameTooLarge { declared, max }) => {
                Kind::FrameTooLarge { declared: *declared, max: *max }
            }
            Error::Protocol(ProtocolError::TruncatedFrame { expected, received }) => {
                Kind::TruncatedFrame { expected: *expected, received: *received }
            }
            Error::Io(io) => Kind::Io(io.kind()),
            other => Kind::Other(other.to_string()),
        }
    }
}

/// One of the runner's [`Events`], as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Connected(Peer),
    Refused(Peer, Refusal),
    Message(u64, Vec<u8>),
    Closed { id: u64, summary: Summary, error: Option<Kind> },
}

/// Sends every event on a channel.
pub struct Recorder(Mutex<Sender<Event>>);

impl Recorder {
    pub fn new() -> (Recorder, Receiver<Event>) {
        let (tx, rx) = mpsc::channel();
        (Recorder(Mutex::new(tx)), rx)
    }

    fn send(&self, event: Event) {
        let _ = self.0.lock().expect("not poisoned").send(event);
    }
}

impl Events for Recorder {
    fn connected(&self, peer: &Peer) {
        self.send(Event::Connected(peer.clone()));
    }
    fn refused(&self, peer: &Peer, reason: Refusal) {
        self.send(Event::Refused(peer.clone(), reason));
    }
    fn message(&self, peer: &Peer, fragment: Fragment<'_>) {
        self.send(Event::Message(peer.id, fragment.bytes().to_vec()));
    }
    fn closed(&self, peer: &Peer, summary: &Summary, error: Option<&Error>) {
        self.send(Event::Closed { id: peer.id, summary: *summary, error: error.map(Kind::from) });
    }
}

// ---- Either runtime ----

/// `listener` (a std TCP or Unix listener) served by `runtime`'s runner.
pub fn serve_on<L: Into<runner::Listener>, E: Events>(
    runtime: Runtime,
    listener: L,
    server: EchoServer,
    limits: Limits,
    events: E,
) -> Result<Handle, Error> {
    serve_proxied_on(runtime, listener, server, limits, None, events)
}

/// [`serve_on`], with the PROXY protocol on when `proxy` is given. The tokio
/// runner runs on [`tokio_runtime`].
pub fn serve_proxied_on<L: Into<runner::Listener>, E: Events>(
    runtime: Runtime,
    listener: L,
    server: EchoServer,
    limits: Limits,
    proxy: Option<runner::ProxyProtocol>,
    events: E,
) -> Result<Handle, Error> {
    let listener = listener.into();
    let _entered;
    let (start, start_proxied): (Start<E>, StartProxied<E>) = match runtime {
        Runtime::Threads => (runner::start, runner::start_proxied),
        Runtime::Tokio => {
            _entered = tokio_runtime().enter();
            (stamp_echo::tokio::runner::start, stamp_echo::tokio::runner::start_proxied)
        }
    };
    match proxy {
        Some(proxy) => start_proxied(listener, server, limits, proxy, events),
        None => start(listener, server, limits, events),
    }
}

/// A runner's `start`, and its `start_proxied`.
type Start<E> = fn(runner::Listener, EchoServer, Limits, E) -> Result<Handle, Error>;
type StartProxied<E> = fn(runner::Listener, EchoServer, Limits, runner::ProxyProtocol, E) -> Result<Handle, Error>;

/// The runtime the tests' tokio runners run on: two workers, shared by the
/// tests of one binary (the handles are stopped from the tests' threads).
pub fn tokio_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime")
    })
}

/// `stream` (in memory, a [`Duplex`](stamp_echo::testing::Duplex) or a wrapper of one) served by
/// `runtime`'s driver: `EchoServer::serve`, or `stamp_echo::tokio::serve`
/// on a current-thread runtime.
pub fn serve_in_memory<S: Read + Write + Unpin>(
    runtime: Runtime,
    server: &EchoServer,
    stream: &mut S,
) -> Result<Summary, Error> {
    match runtime {
        Runtime::Threads => server.serve(stream),
        Runtime::Tokio => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            rt.block_on(stamp_echo::tokio::serve(server, stamp_echo::testing::Ready(stream)))
        }
    }
}

/// `server` served by `runtime`'s runner on 127.0.0.1 and a free port, with
/// recorded events (see [`start`]).
pub fn start_on(runtime: Runtime, server: EchoServer, limits: Limits) -> (Handle, SocketAddr, Receiver<Event>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound address");
    let (recorder, events) = Recorder::new();
    let served = serve_on(runtime, listener, server, limits, recorder).expect("start the runner");
    (served, addr, events)
}

/// `server` served by the library's runner on 127.0.0.1 and a free port,
/// with recorded events. The listener is bound before this returns, so a
/// client may connect at once. Dropping the handle shuts the server down.
pub fn start(server: EchoServer, limits: Limits) -> (Handle, SocketAddr, Receiver<Event>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound address");
    let (recorder, events) = Recorder::new();
    let handle = runner::start(listener, server, limits, recorder).expect("start the runner");
    (handle, addr, events)
}

/// Waits for the next connection to end (connections report in the order
/// they end), skipping other events: its id, counts and error.
pub fn next_closed(events: &Receiver<Event>) -> (u64, Summary, Option<Kind>) {
    loop {
        match events.recv_timeout(SAFETY_TIMEOUT).expect("a connection ended within the safety timeout") {
            Event::Closed { id, summary, error } => return (id, summary, error),
            _ => continue,
        }
    }
}

/// Waits for the next connection to end, as [`next_closed`], checks that it
/// ended without an error, and returns its counts.
pub fn next_closed_cleanly(events: &Receiver<Event>) -> Summary {
    let (id, summary, error) = next_closed(events);
    assert_eq!(error, None, "connection {id} ended in an error");
    summary
}

/// Waits for the next `Message` event, skipping the others.
pub fn next_message(events: &Receiver<Event>) -> (u64, Vec<u8>) {
    loop {
        match events.recv_timeout(SAFETY_TIMEOUT).expect("a message arrived within the safety timeout") {
            Event::Message(id, message) => return (id, message),
            _ => continue,
        }
    }
}

// ---- Client connections ----

/// A connection whose receive buffer is small and fixed (no autotuning), so
/// that replies it does not read back up into the server at once: with the
/// server's send buffer (at most 4 MiB here), a few MiB of replies are enough.
pub fn connect_small_buffer(addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(64 * 1024).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    let stream = TcpStream::from(socket);
    set_safety_timeouts(&stream);
    stream
}

/// Sends `message` framed to a [`fixed_server`] and checks its reply, byte for byte.
pub fn round_trip(stream: &mut TcpStream, framing: Framing, message: &[u8]) {
    let mut framed = Vec::new();
    frame(framing, message, &mut framed);
    stream.write_all(&framed).expect("send");
    let expected = fixed_reply(framing, message, sent_ending(framing));
    let mut got = vec![0; expected.len()];
    stream.read_exact(&mut got).expect("reply");
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&expected));
}

// ---- The Python peers ----

/// The `python3` to run the peers with. When it is missing, the test fails
/// under CI (`CI=true`, where python3 is required) and is skipped elsewhere
/// with a visible `SKIPPED` notice; see [`missing_tool`].
pub fn python3(test: &str) -> Option<PathBuf> {
    let found = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        Some(PathBuf::from("python3"))
    } else {
        missing_tool(test, "python3 not found");
        None
    }
}

/// Whether this run is CI's, which must have every tool the tests use.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A tool `test` needs is missing: under CI that is a failure (panics with
/// `why`); elsewhere the test is skipped, saying so on stderr in capitals.
pub fn missing_tool(test: &str, why: &str) {
    assert!(!in_ci(), "{test}: {why}, and CI requires it (CI is set)");
    // Straight to stderr, not eprintln!: the test harness captures eprintln!
    // output of passing tests, and this notice must be seen.
    let _ = writeln!(io::stderr(), "SKIPPED {test}: {why} (this test passes without checking anything)");
}

/// The path of a Python peer in `tests/python/`.
pub fn python_peer(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(name)
}

/// A Python command with UTF-8 I/O whatever the locale, and UTC as local
/// time (so its `ctime()` can be checked against the system clock).
pub fn python_command(python: &PathBuf, script: &str) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg(python_peer(script)).env("PYTHONUTF8", "1").env("PYTHONIOENCODING", "utf-8").env("TZ", "UTC");
    cmd
}

/// A child process killed when dropped, so a failing test leaves nothing behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a Python server script on 127.0.0.1:0 and waits for its
/// `listening on ADDR` line. Returns the child, the address, and the rest of
/// its stdout (its log lines), read to the end on another thread.
pub fn start_python_server(python: &PathBuf, script: &str) -> (KillOnDrop, SocketAddr, mpsc::Receiver<Vec<u8>>) {
    let child = python_command(python, script)
        .args(["127.0.0.1", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python server");
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().expect("piped stdout");
    let mut stdout = BufReader::new(stdout);
    let mut first = String::new();
    stdout.read_line(&mut first).expect("read the server's first line");
    let addr = first
        .trim_end()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("expected `listening on ADDR`, got {first:?}"));
    (child, addr, read_to_end_in_background(stdout))
}

/// Reads a child's output to its end on another thread, so a test can wait
/// for it with a timeout.
pub fn read_to_end_in_background<R: Read + Send + 'static>(mut pipe: R) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut all = Vec::new();
        let _ = pipe.read_to_end(&mut all);
        let _ = tx.send(all);
    });
    rx
}

// ---- Parsing stamps and replies ----

/// A ctime stamp, parsed field by field: `Sun Feb  3 10:00:18 2013`.
#[derive(Debug, PartialEq, Eq)]
pub struct CtimeFields {
    pub weekday: time::Weekday,
    pub date: time::Date,
    pub time: time::Time,
}

impl CtimeFields {
    /// Seconds since the epoch, reading the fields as UTC.
    pub fn unix_utc(&self) -> i64 {
        self.date.with_time(self.time).assume_utc().unix_timestamp()
    }
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Parses Python's `time.ctime()` format strictly (C's `%a %b %e %H:%M:%S %Y`):
/// 24 characters, the day of the month padded with a space, and a weekday
/// that agrees with the date.
pub fn parse_ctime(text: &str) -> Result<CtimeFields, String> {
    let bytes = text.as_bytes();
    let sep_ok = [3, 7, 10, 19].iter().all(|&i| bytes.get(i) == Some(&b' '))
        && bytes.get(13) == Some(&b':')
        && bytes.get(16) == Some(&b':');
    if bytes.len() != 24 || !text.is_ascii() || !sep_ok {
        return Err(format!("{text:?} is not shaped like `Sun Feb  3 10:00:18 2013`"));
    }
    let number = |range: std::ops::Range<usize>| -> Result<u32, String> {
        let field = &text[range];
        let digits = field.trim_start_matches(' ');
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{field:?} in {text:?} is not a number"));
        }
        digits.parse().map_err(|e| format!("{field:?} in {text:?}: {e}"))
    };
    let weekday_index =
        WEEKDAYS.iter().position(|d| *d == &text[0..3]).ok_or_else(|| format!("weekday in {text:?}"))?;
    let month_index = MONTHS.iter().position(|m| *m == &text[4..7]).ok_or_else(|| format!("month in {text:?}"))?;
    // %e: a day below 10 is " 3", never "03"; %H %M %S are zero-padded.
    if text.as_bytes()[8] == b'0' {
        return Err(format!("day in {text:?} is zero-padded, not space-padded"));
    }
    if text[11..19].contains(' ') {
        return Err(format!("time of day in {text:?} is not zero-padded"));
    }
    let day = number(8..10)?;
    let (h, m, s) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let year = number(20..24)?;
    let month =
        time::Month::try_from(u8::try_from(month_index + 1).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let date = time::Date::from_calendar_date(
        i32::try_from(year).map_err(|e| e.to_string())?,
        month,
        u8::try_from(day).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("date in {text:?}: {e}"))?;
    let time = time::Time::from_hms(
        u8::try_from(h).map_err(|e| e.to_string())?,
        u8::try_from(m).map_err(|e| e.to_string())?,
        u8::try_from(s).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("time of day in {text:?}: {e}"))?;
    let weekday = date.weekday();
    if usize::from(weekday.number_days_from_monday()) != weekday_index {
        return Err(format!("{text:?}: {} is a {weekday}", date));
    }
    Ok(CtimeFields { weekday, date, time })
}

/// Splits a stamped reply `[` STAMP `] ` MESSAGE into its stamp and message,
/// without regular expressions: the stamp runs to the first `]`.
pub fn split_reply(reply: &str) -> Result<(&str, &str), String> {
    let body = reply.strip_prefix('[').ok_or_else(|| format!("{reply:?} does not start with '['"))?;
    let close = body.find(']').ok_or_else(|| format!("{reply:?} has no ']'"))?;
    let message = body[close + 1..].strip_prefix(' ').ok_or_else(|| format!("{reply:?} has no space after ']'"))?;
    Ok((&body[..close], message))
}

/// Splits chunk-framing replies to messages WITHOUT `[` into their pieces
/// `(stamp, echoed bytes)`.
pub fn split_pieces(replies: &[u8]) -> Vec<(String, Vec<u8>)> {
    assert_eq!(replies.first(), Some(&b'['), "replies start with a stamp");
    replies[1..]
        .split(|&b| b == b'[')
        .map(|piece| {
            let close = piece.iter().position(|&b| b == b']').expect("a stamp ends with ']'");
            assert_eq!(piece.get(close + 1), Some(&b' '), "a space follows the stamp");
            (String::from_utf8(piece[..close].to_vec()).expect("UTF-8 stamp"), piece[close + 2..].to_vec())
        })
        .collect()
}

// ---- An in-memory server for `EchoClient` ----

/// An in-memory server for an `EchoClient`: every write is fed to a
/// [`Responder`] (stamping [`FIXED_CTIME`]) in reads of the sizes in
/// `read_sizes`, cycled, as a server's reads would split it; the replies wait
/// to be read. With nothing left to read, a read is end of input, as when a
/// server closes: a reply the client waits for that never comes shows up as
/// an error instead of a hang.
pub struct Loopback {
    responder: Responder,
    read_sizes: Vec<usize>,
    next_size: usize,
    replies: VecDeque<u8>,
    pub error: Option<Error>,
}

impl Loopback {
    pub fn new(framing: Framing, read_sizes: Vec<usize>) -> Loopback {
        assert!(read_sizes.iter().all(|&n| n > 0), "reads are at least one byte");
        Loopback {
            responder: Responder::new(framing, Arc::new(Ctime::utc())),
            read_sizes,
            next_size: 0,
            replies: VecDeque::new(),
            error: None,
        }
    }

    pub fn summary(&self) -> Summary {
        self.responder.summary()
    }
}

impl Write for Loopback {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let written = buf.len();
        let mut out = Vec::new();
        while !buf.is_empty() && self.error.is_none() {
            let size = self.read_sizes.get(self.next_size % self.read_sizes.len().max(1)).copied().unwrap_or(buf.len());
            self.next_size += 1;
            let (read, rest) = buf.split_at(size.min(buf.len()));
            buf = rest;
            if let Err(e) = self.responder.receive(read, fixed_now(), &mut out) {
                self.error = Some(e);
            }
        }
        self.replies.extend(out);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Loopback {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.replies.read(buf)
    }
}

// ---- One client interface, two runtimes ----

/// What the behaviour tests ask of a client, so that the same cases run
/// against the blocking [`EchoClient`](stamp_echo::EchoClient) and the async
/// [`stamp_echo::tokio::AsyncEchoClient`] alike.
pub trait Client {
    /// The stream under the client (the in-memory server, say).
    type Inner;
    fn send(&mut self, message: &[u8]) -> Result<(), Error>;
    fn receive(&mut self) -> Result<stamp_echo::Reply, Error>;
    fn inner(&self) -> &Self::Inner;
    fn inner_mut(&mut self) -> &mut Self::Inner;
    fn in_flight(&self) -> usize;
    fn round_trip(&mut self, message: &[u8]) -> Result<stamp_echo::Reply, Error> {
        self.send(message)?;
        self.receive()
    }
}

impl<S: Read + Write> Client for stamp_echo::EchoClient<S> {
    type Inner = S;
    fn send(&mut self, message: &[u8]) -> Result<(), Error> {
        stamp_echo::EchoClient::send(self, message)
    }
    fn receive(&mut self) -> Result<stamp_echo::Reply, Error> {
        stamp_echo::EchoClient::receive(self)
    }
    fn inner(&self) -> &S {
        self.get_ref()
    }
    fn inner_mut(&mut self) -> &mut S {
        self.get_mut()
    }
    fn in_flight(&self) -> usize {
        stamp_echo::EchoClient::in_flight(self)
    }
}

/// The async client, each call run to completion on a runtime of its own.
pub struct OnRuntime<S> {
    pub client: stamp_echo::tokio::AsyncEchoClient<S>,
    pub runtime: tokio::runtime::Runtime,
}

/// A current-thread runtime with its timer and I/O drivers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> OnRuntime<S> {
    pub fn new(stream: S, framing: Framing) -> OnRuntime<S> {
        let runtime = runtime();
        // Streams such as `tokio::net::TcpStream` register with the runtime
        // they are made in: make the client inside it.
        let client = {
            let _entered = runtime.enter();
            stamp_echo::tokio::AsyncEchoClient::new(stream, framing).expect("valid framing")
        };
        OnRuntime { client, runtime }
    }

    /// Runs `future` (a call of the client's, say) to completion.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

impl OnRuntime<tokio::net::TcpStream> {
    /// A TCP connection to `addr` on a runtime of its own, its replies due
    /// within the safety timeout.
    pub fn connect(addr: SocketAddr, framing: Framing) -> OnRuntime<tokio::net::TcpStream> {
        let runtime = runtime();
        let stream = runtime.block_on(tokio::net::TcpStream::connect(addr)).expect("connect");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let mut client = stamp_echo::tokio::AsyncEchoClient::new(stream, framing).expect("valid framing");
        client.set_timeout(Some(SAFETY_TIMEOUT)).expect("a safety timeout");
        OnRuntime { client, runtime }
    }
}

impl<S: Read + Write + Unpin> Client for OnRuntime<Async<S>> {
    type Inner = S;
    fn send(&mut self, message: &[u8]) -> Result<(), Error> {
        self.runtime.block_on(self.client.send(message))
    }
    fn receive(&mut self) -> Result<stamp_echo::Reply, Error> {
        self.runtime.block_on(self.client.receive())
    }
    fn inner(&self) -> &S {
        &self.client.get_ref().0
    }
    fn inner_mut(&mut self) -> &mut S {
        &mut self.client.get_mut().0
    }
    fn in_flight(&self) -> usize {
        self.client.in_flight()
    }
}

impl Client for OnRuntime<tokio::net::TcpStream> {
    type Inner = tokio::net::TcpStream;
    fn send(&mut self, message: &[u8]) -> Result<(), Error> {
        self.runtime.block_on(self.client.send(message))
    }
    fn receive(&mut self) -> Result<stamp_echo::Reply, Error> {
        self.runtime.block_on(self.client.receive())
    }
    fn inner(&self) -> &tokio::net::TcpStream {
        self.client.get_ref()
    }
    fn inner_mut(&mut self) -> &mut tokio::net::TcpStream {
        self.client.get_mut()
    }
    fn in_flight(&self) -> usize {
        self.client.in_flight()
    }
}

/// Both clients over an in-memory stream made by `make`: the blocking one
/// over it, the async one over it seen through [`Async`].
pub fn both_clients<S, F>(framing: Framing, make: F) -> Vec<(&'static str, Box<dyn Client<Inner = S>>)>
where
    S: Read + Write + Unpin + 'static,
    F: Fn() -> S,
{
    let blocking = stamp_echo::EchoClient::new(make(), framing).expect("valid framing");
    let on_tokio = OnRuntime::new(Async(make()), framing);
    vec![("blocking", Box::new(blocking)), ("tokio", Box::new(on_tokio))]
}

/// An in-memory `Read + Write` stream (`Duplex`, `Loopback`) as an async
/// one. Its reads and writes never block, so each poll completes at once.
/// (The `Inner` of [`OnRuntime`] is the stream inside, for the tests' checks.)
pub use stamp_echo::testing::Ready as Async;
