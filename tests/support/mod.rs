//! Shared by the runner's tests: a server with a fixed clock, and events
//! recorded on a channel so a test can wait for them instead of sleeping.
#![allow(dead_code)] // each test file uses its own part

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, SystemTime};

use stamp_echo::runner::{self, Peer};
use stamp_echo::stamp::Ctime;
use stamp_echo::{EchoServer, Error, Events, Framing, Handle, Limits, Summary};

/// Every reply carries this stamp: the servers here read a fixed clock.
pub const STAMP: &str = "Sun Feb  3 10:00:18 2013";

/// How long a test waits for something that should happen at once: a safety
/// net against hanging, never a way to order events.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn echo_server(framing: Framing) -> EchoServer {
    let fixed = SystemTime::UNIX_EPOCH + Duration::from_secs(1_359_885_618);
    EchoServer::builder().framing(framing).stamp(Ctime::utc()).clock(move || fixed).build().expect("valid config")
}

/// The reply the fixed-clock server sends to `message` in `framing`.
pub fn reply(framing: Framing, message: &[u8]) -> Vec<u8> {
    let mut body = format!("[{STAMP}] ").into_bytes();
    body.extend_from_slice(message);
    match framing {
        Framing::Line { .. } => body.push(b'\n'),
        Framing::LengthPrefixed { .. } => {
            let mut framed = u32::try_from(body.len()).expect("small").to_be_bytes().to_vec();
            framed.extend_from_slice(&body);
            body = framed;
        }
        _ => {}
    }
    body
}

/// What an error was, in a form a test can compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Timeout,
    LineTooLong { max: usize },
    FrameTooLarge { declared: u64, max: usize },
    TruncatedFrame { expected: u64, received: u64 },
    Io(io::ErrorKind),
    Other(String),
}

impl From<&Error> for Kind {
    fn from(e: &Error) -> Kind {
        match e {
            Error::Timeout => Kind::Timeout,
            Error::LineTooLong { max } => Kind::LineTooLong { max: *max },
            Error::FrameTooLarge { declared, max } => Kind::FrameTooLarge { declared: *declared, max: *max },
            Error::TruncatedFrame { expected, received } => {
                Kind::TruncatedFrame { expected: *expected, received: *received }
            }
            Error::Io(io) => Kind::Io(io.kind()),
            other => Kind::Other(other.to_string()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Connected(Peer),
    Message(u64, Vec<u8>),
    Closed { id: u64, summary: Summary, error: Option<Kind> },
}

/// Sends every event on a channel.
pub struct Recorder(Mutex<Sender<Event>>);

impl Recorder {
    pub fn new() -> (Recorder, Receiver<Event>) {
        let (tx, rx) = channel();
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
    fn message(&self, peer: &Peer, message: &[u8]) {
        self.send(Event::Message(peer.id, message.to_vec()));
    }
    fn closed(&self, peer: &Peer, summary: &Summary, error: Option<&Error>) {
        self.send(Event::Closed { id: peer.id, summary: *summary, error: error.map(Kind::from) });
    }
}

/// A runner on 127.0.0.1 and a free port, with recorded events.
pub fn start(framing: Framing, limits: Limits) -> (Handle, SocketAddr, Receiver<Event>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let (recorder, events) = Recorder::new();
    let handle = runner::start(listener, echo_server(framing), limits, recorder).expect("start");
    (handle, addr, events)
}

/// Waits for the next `Closed` event, skipping the others.
pub fn next_closed(events: &Receiver<Event>) -> (u64, Summary, Option<Kind>) {
    loop {
        match events.recv_timeout(PATIENCE).expect("a connection should close") {
            Event::Closed { id, summary, error } => return (id, summary, error),
            _ => continue,
        }
    }
}

/// Waits for the next `Message` event, skipping the others.
pub fn next_message(events: &Receiver<Event>) -> (u64, Vec<u8>) {
    loop {
        match events.recv_timeout(PATIENCE).expect("a message should arrive") {
            Event::Message(id, message) => return (id, message),
            _ => continue,
        }
    }
}

/// A connection with a safety-net read timeout.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream
}

/// Sends `message` framed and checks its reply, byte for byte.
pub fn round_trip(stream: &mut TcpStream, framing: Framing, message: &[u8]) {
    let mut framed = Vec::new();
    framing.encode_message(message, &mut framed);
    stream.write_all(&framed).expect("send");
    let expected = reply(framing, message);
    let mut got = vec![0; expected.len()];
    stream.read_exact(&mut got).expect("reply");
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&expected));
}

/// Reads until the server closes the connection; a reset counts as closed.
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected the server to close the connection, got {e}"),
    }
    got
}

/// A connection whose receive buffer is small and fixed (no autotuning), so
/// that replies it does not read back up into the server at once: with the
/// server's send buffer (at most 4 MiB here), a few MiB of replies are enough.
pub fn connect_small_buffer(addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(64 * 1024).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream
}
