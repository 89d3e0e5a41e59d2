//! UDP over loopback, on port 0: the server, the client's retries, sizes,
//! several senders, and clock offsets against an injected clock.

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use stamp_echo::datagram::{DatagramClient, DatagramObserver, DatagramServer, ERROR_PREFIX, MAX_DATAGRAM, Stopper};
use stamp_echo::framing::LineEnding;
use stamp_echo::stamp::{self, Rfc3339, Stamp, StampKind, UnixTime};
use stamp_echo::{Error, Framing, MessageError, ProtocolError, Summary, TimeoutError};

/// A safety net only: no test waits for it unless something is broken.
const SAFETY: Duration = Duration::from_secs(10);

/// A running server and what stops it.
struct Running {
    addr: SocketAddr,
    stopper: Stopper,
    thread: JoinHandle<Result<Summary, Error>>,
}

impl Running {
    fn start(server: DatagramServer) -> Running {
        Running::start_observed(server, ())
    }

    fn start_observed<O: DatagramObserver + Send + 'static>(server: DatagramServer, observer: O) -> Running {
        // The socket is bound before the thread starts: it queues datagrams
        // until the server reads them, so no readiness wait is needed.
        let addr = server.local_addr().expect("bound");
        let stopper = server.stopper();
        let thread = thread::spawn(move || server.serve_with(observer));
        Running { addr, stopper, thread }
    }

    fn stop(self) -> Summary {
        self.stopper.stop().expect("wake-up sent");
        self.thread.join().expect("server thread").expect("server ran")
    }
}

fn bind() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    socket.set_read_timeout(Some(SAFETY)).expect("timeout");
    socket
}

fn server_with(stamp: Arc<dyn Stamp>) -> DatagramServer {
    DatagramServer::new(bind(), stamp).expect("server")
}

/// A stamp that is always `T`, so sizes are exact.
fn fixed_stamp() -> Arc<dyn Stamp> {
    Arc::new(stamp::from_fn(|_: SystemTime, out: &mut String| out.push('T')))
}

fn client(addr: SocketAddr) -> DatagramClient {
    let mut client = DatagramClient::connect(addr).expect("client");
    client.set_timeout(SAFETY).expect("timeout");
    client
}

#[test]
fn each_datagram_gets_its_echo_even_when_empty_or_not_utf8() {
    let running = Running::start(server_with(fixed_stamp()));
    let mut client = client(running.addr);
    for message in [&b"hi,server"[..], "你好".as_bytes(), b"\xff\xfe[x] y", b""] {
        let reply = client.round_trip(message).expect("echo");
        assert_eq!(reply.message(), message);
        assert_eq!(reply.stamp(), "T");
    }
    let summary = running.stop();
    assert_eq!(summary.messages, 4);
    assert_eq!(summary.bytes_in, 9 + 6 + 7);
    assert_eq!(summary.bytes_out, summary.bytes_in + 4 * 4);
}

#[test]
fn several_senders_at_once() {
    let running = Running::start(server_with(Arc::new(Rfc3339)));
    let senders: Vec<_> = (0..8)
        .map(|sender| {
            let addr = running.addr;
            thread::spawn(move || {
                let mut client = client(addr);
                for i in 0..25 {
                    let message = format!("sender {sender} message {i} {}", "x".repeat(i * 40));
                    let reply = client.round_trip(message.as_bytes()).expect("echo");
                    assert_eq!(reply.message(), message.as_bytes());
                }
                client.ignored()
            })
        })
        .collect();
    for sender in senders {
        assert_eq!(sender.join().expect("sender"), 0, "no stray datagrams");
    }
    assert_eq!(running.stop().messages, 200);
}

#[test]
fn the_largest_reply_fits_and_a_larger_one_gets_an_error_datagram() {
    let running = Running::start(server_with(fixed_stamp()));
    let mut client = client(running.addr);

    // `[T] ` and the message: exactly the largest datagram.
    let largest = vec![b'a'; MAX_DATAGRAM - 4];
    assert_eq!(client.round_trip(&largest).expect("echo").message(), &largest[..]);

    for len in [MAX_DATAGRAM - 3, MAX_DATAGRAM] {
        match client.round_trip(&vec![b'b'; len]) {
            Err(Error::Protocol(ProtocolError::ServerError(text))) => assert_eq!(
                text,
                format!("reply of {} bytes would not fit in one datagram (at most 65507 bytes)", len + 4)
            ),
            other => panic!("{len} bytes: expected an error datagram, got {other:?}"),
        }
    }

    // The error datagram on the wire, as any client sees it.
    let raw = bind();
    raw.send_to(&vec![b'c'; MAX_DATAGRAM], running.addr).expect("send the largest datagram");
    let mut buf = vec![0; 70_000];
    let (n, from) = raw.recv_from(&mut buf).expect("error datagram");
    assert_eq!(from, running.addr);
    assert_eq!(&buf[..n], b"error: reply of 65511 bytes would not fit in one datagram (at most 65507 bytes)");
    assert!(buf.starts_with(ERROR_PREFIX.as_bytes()));

    // A message that is no datagram is refused before sending.
    assert!(
        matches!(client.round_trip(&vec![b'd'; MAX_DATAGRAM + 1]), Err(Error::Message(MessageError::TooLong { len, max: MAX_DATAGRAM })) if len == MAX_DATAGRAM + 1)
    );
    assert_eq!(running.stop().messages, 1);
}

#[test]
fn a_broken_stamp_is_an_error_datagram_and_serving_goes_on() {
    let bad = stamp::from_fn(|_: SystemTime, out: &mut String| out.push_str("a]b"));
    let errors = Arc::new(Mutex::new(Vec::new()));
    struct Log(Arc<Mutex<Vec<(SocketAddr, String)>>>);
    impl DatagramObserver for Log {
        fn error(&mut self, from: SocketAddr, error: &Error) {
            self.0.lock().expect("log").push((from, error.to_string()));
        }
    }
    let running = Running::start_observed(server_with(Arc::new(bad)), Log(Arc::clone(&errors)));
    let mut client = client(running.addr);
    for _ in 0..2 {
        assert!(
            matches!(client.round_trip(b"x"), Err(Error::Protocol(ProtocolError::ServerError(text))) if text.contains("\"a]b\""))
        );
    }
    let local = client.socket().local_addr().expect("address");
    let summary = running.stop();
    assert_eq!(summary.messages, 0);
    let errors = errors.lock().expect("log");
    assert_eq!(errors.len(), 2);
    assert!(errors.iter().all(|(from, _)| *from == local));
}

#[test]
fn the_observer_sees_each_datagram_and_its_sender() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let observer = move |from: SocketAddr, message: &[u8]| log.lock().expect("log").push((from, message.to_vec()));
    let running = Running::start_observed(server_with(fixed_stamp()), observer);
    let mut client = client(running.addr);
    client.round_trip(b"one").expect("echo");
    client.round_trip(b"two").expect("echo");
    let local = client.socket().local_addr().expect("address");
    running.stop();
    assert_eq!(*seen.lock().expect("log"), [(local, b"one".to_vec()), (local, b"two".to_vec())]);
}

#[test]
fn the_client_gives_up_after_its_retries() {
    // A socket that receives and never answers.
    let silent = bind();
    let mut client = DatagramClient::connect(silent.local_addr().expect("address")).expect("client");
    client.set_timeout(Duration::from_millis(30)).expect("timeout");
    client.set_retries(2);
    match client.round_trip(b"anyone?") {
        Err(Error::Timeout(TimeoutError::NoReply { attempts: 3, timeout })) => {
            assert_eq!(timeout, Duration::from_millis(30))
        }
        other => panic!("expected NoReply after 3 attempts, got {other:?}"),
    }
    // Exactly three requests arrived, all the same.
    silent.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0; 64];
    for _ in 0..3 {
        let n = silent.recv(&mut buf).expect("a request");
        assert_eq!(&buf[..n], b"anyone?");
    }
    assert!(silent.recv(&mut buf).is_err(), "no fourth request");
    assert!(matches!(client.set_timeout(Duration::ZERO), Err(Error::Config(_))));
}

#[test]
fn a_lost_request_is_sent_again_and_stale_replies_are_skipped() {
    let peer = bind();
    let addr = peer.local_addr().expect("address");
    let fake = thread::spawn(move || {
        let mut buf = [0; 64];
        // Lose the first request.
        let (_, client) = peer.recv_from(&mut buf).expect("first attempt");
        // Answer the second after a stale reply and some garbage.
        let (n, _) = peer.recv_from(&mut buf).expect("second attempt");
        let mut reply = Vec::new();
        Framing::chunk().encode_reply("T", b"an older message", LineEnding::None, &mut reply);
        peer.send_to(&reply, client).expect("stale reply");
        peer.send_to(b"garbage", client).expect("garbage");
        reply.clear();
        Framing::chunk().encode_reply("T", &buf[..n], LineEnding::None, &mut reply);
        peer.send_to(&reply, client).expect("reply");
    });
    let mut client = DatagramClient::connect(addr).expect("client");
    let timeout = Duration::from_millis(50);
    client.set_timeout(timeout).expect("timeout");
    client.set_retries(1);
    let reply = client.round_trip(b"hello").expect("echo on the second attempt");
    fake.join().expect("fake server");
    assert_eq!(reply.message(), b"hello");
    assert_eq!(client.ignored(), 2);
    // Counted from the first attempt, which waited the whole timeout.
    assert!(reply.rtt() >= timeout, "rtt {:?}", reply.rtt());
}

#[test]
fn nothing_listening_is_a_clear_error() {
    let addr = bind().local_addr().expect("address"); // closed again at once
    let mut client = DatagramClient::connect(addr).expect("client");
    client.set_timeout(Duration::from_millis(200)).expect("timeout");
    client.set_retries(0);
    // Linux reports the ICMP "port unreachable" as a refused connection;
    // elsewhere the request may just go unanswered.
    match client.round_trip(b"hello") {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        Err(Error::Timeout(TimeoutError::NoReply { attempts: 1, .. })) => {}
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn clock_offset_of_a_server_with_an_injected_clock_is_within_the_bound() {
    // The server's clock runs 1.5 s (and some nanoseconds) ahead, or 42 ms behind.
    for (kind, offset_nanos) in [(StampKind::Rfc3339, 1_500_000_123i64), (StampKind::Unix, -42_000_321)] {
        let offset = Duration::from_nanos(offset_nanos.unsigned_abs());
        let clock = move || {
            if offset_nanos >= 0 { SystemTime::now() + offset } else { SystemTime::now() - offset }
        };
        let stamp: Arc<dyn Stamp> = if kind == StampKind::Unix { Arc::new(UnixTime) } else { Arc::new(Rfc3339) };
        let running = Running::start(server_with(stamp).clock(clock));
        let mut client = client(running.addr);
        for seq in 0..5 {
            let reply = client.round_trip(format!("probe {seq}").as_bytes()).expect("echo");
            let estimate = reply.clock_offset(kind).expect("a sub-second stamp");
            assert!(estimate.contains(offset_nanos), "{kind}: {estimate} does not hold {offset_nanos} ns");
            assert!(estimate.bound() <= reply.rtt() / 2 + Duration::from_micros(2), "{estimate} for {:?}", reply.rtt());
        }
        running.stop();
    }
}

#[test]
fn stop_ends_every_serve_call_and_later_ones_at_once() {
    let server = Arc::new(server_with(fixed_stamp()));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let server = Arc::clone(&server);
            thread::spawn(move || server.serve())
        })
        .collect();
    let mut client = client(server.local_addr().expect("address"));
    client.round_trip(b"served").expect("echo");
    server.stopper().stop().expect("stop");
    let answered: u64 = threads.into_iter().map(|t| t.join().expect("thread").expect("served").messages).sum();
    assert_eq!(answered, 1);
    assert_eq!(server.serve().expect("returns at once"), Summary::default());
}
