//! UDP over loopback, on port 0: the server, the client's retries, sizes,
//! several senders, clock offsets against an injected clock, and the
//! defences against loops and reflection (some with forged source addresses,
//! sent from a raw socket).

use std::io::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

#[path = "../examples/common/forge.rs"]
mod forge;

use forge::forge;
use socket2::Socket;
use stamp_echo::datagram::{
    DatagramClient, DatagramServer, DatagramTotals, Dropped, ERROR_PREFIX, MAX_DATAGRAM, RateLimit,
};
use stamp_echo::protocol::{Fragment, Summary};
use stamp_echo::runner::{Addr, Events, Handle, Peer};
use stamp_echo::stamp::{self, Rfc3339, Stamp, StampKind, UnixTime};
use stamp_echo::{Error, MessageError, ProtocolError, TimeoutError};

/// A safety net only: no test waits for it unless something is broken.
const SAFETY: Duration = Duration::from_secs(10);

/// A running server ([`DatagramServer::start`]) and its address.
struct Running {
    addr: SocketAddr,
    handle: Handle<DatagramTotals>,
}

impl Running {
    fn start(server: DatagramServer) -> Running {
        Running::start_observed(server, ())
    }

    fn start_observed<E: Events>(server: DatagramServer, events: E) -> Running {
        // The socket is bound before the thread starts: it queues datagrams
        // until the server reads them, so no readiness wait is needed.
        let handle = server.start(events).expect("start the server");
        let addr = handle.local_addr().udp().expect("a UDP address");
        Running { addr, handle }
    }

    fn stop(self) -> DatagramTotals {
        self.handle.shutdown(Duration::ZERO)
    }
}

fn bind() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    socket.set_read_timeout(Some(SAFETY)).expect("timeout");
    socket
}

/// A server on loopback whose rate limit no test that is not about it reaches.
fn server_with(stamp: Arc<dyn Stamp>) -> DatagramServer {
    unlimited(DatagramServer::new(bind(), stamp).expect("server"))
}

fn unlimited(server: DatagramServer) -> DatagramServer {
    server.rate_limit(RateLimit::per_second(RateLimit::MAX_REPLIES).total(RateLimit::MAX_TOTAL))
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
    let totals = running.stop();
    assert_eq!((totals.datagrams, totals.messages, totals.errors, totals.dropped.total()), (4, 4, 0, 0));
    assert_eq!(totals.bytes_in, 9 + 6 + 7);
    assert_eq!(totals.bytes_out, totals.bytes_in + 4 * 4);
}

#[test]
fn a_started_server_counts_as_it_serves_and_stops_through_its_handle() {
    let running = Running::start(server_with(fixed_stamp()));
    assert_eq!(running.handle.active(), 0, "a datagram server has no connections");
    let mut client = client(running.addr);
    for message in [&b"one"[..], b"two", b"three"] {
        client.round_trip(message).expect("echo");
    }
    // The counts are published once a reply is sent: those of the first two
    // before the third was read, the third's perhaps not yet.
    let live = running.handle.totals().messages;
    assert!((2..=3).contains(&live), "{live} messages counted so far");
    assert!(!running.handle.is_finished());
    // Stopped from async code: the future needs no runtime of its own kind.
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let totals = runtime.block_on(running.handle.shutdown_async(Duration::from_secs(5)));
    assert_eq!((totals.datagrams, totals.messages), (3, 3));
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
    struct Log(Arc<Mutex<Vec<(Addr, String)>>>);
    impl Events for Log {
        fn closed(&self, peer: &Peer, _: &Summary, error: Option<&Error>) {
            let error = error.map_or_else(|| "no error".to_owned(), Error::to_string);
            self.0.lock().expect("log").push((peer.addr.clone(), error));
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
    let totals = running.stop();
    assert_eq!((totals.datagrams, totals.messages, totals.errors), (2, 0, 2));
    let errors = errors.lock().expect("log");
    assert_eq!(errors.len(), 2);
    assert!(errors.iter().all(|(from, error)| *from == Addr::Udp(local) && error.contains("\"a]b\"")));
}

#[test]
fn the_observer_sees_each_datagram_and_its_sender() {
    struct Log(Mutex<Vec<(Peer, Vec<u8>, bool)>>);
    impl Events for Log {
        fn message(&self, peer: &Peer, fragment: Fragment<'_>) {
            let whole = fragment.is_first() && fragment.is_last();
            self.0.lock().expect("log").push((peer.clone(), fragment.bytes().to_vec(), whole));
        }
    }
    let seen = Arc::new(Log(Mutex::new(Vec::new())));
    let running = Running::start_observed(server_with(fixed_stamp()), Arc::clone(&seen));
    let mut client = client(running.addr);
    client.round_trip(b"one").expect("echo");
    client.round_trip(b"two").expect("echo");
    let local = client.socket().local_addr().expect("address");
    running.stop();
    let seen = seen.0.lock().expect("log");
    let got: Vec<_> =
        seen.iter().map(|(peer, bytes, whole)| (peer.id, peer.addr.clone(), bytes.as_slice(), *whole)).collect();
    assert_eq!(got, [(1, Addr::Udp(local), &b"one"[..], true), (2, Addr::Udp(local), &b"two"[..], true)]);
    assert_eq!(seen[0].0.to_string(), format!("udp {local}"));
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
        peer.send_to(b"[T] an older message", client).expect("stale reply");
        peer.send_to(b"garbage", client).expect("garbage");
        let reply = [&b"[T] "[..], &buf[..n]].concat();
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
#[allow(deprecated, reason = "the blocking serve calls are still stopped by a Stopper")]
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
    server.stopper().stop();
    let answered: u64 = threads.into_iter().map(|t| t.join().expect("thread").expect("served").messages).sum();
    assert_eq!(answered, 1);
    assert_eq!(server.serve().expect("returns at once"), DatagramTotals::default());
}

// ---- Loops and reflection ----

/// What the server did with one datagram, as its observer saw it.
#[derive(Debug, PartialEq)]
enum Seen {
    Echo(SocketAddr, Vec<u8>),
    Error(SocketAddr, String),
    Dropped(SocketAddr, Dropped),
}

/// Sends each [`Seen`] to the test.
struct Watch(Sender<Seen>);

impl Events for Watch {
    fn message(&self, peer: &Peer, fragment: Fragment<'_>) {
        let _ = self.0.send(Seen::Echo(udp(peer), fragment.bytes().to_vec()));
    }
    fn closed(&self, peer: &Peer, _: &Summary, error: Option<&Error>) {
        let error = error.map_or_else(|| "no error".to_owned(), Error::to_string);
        let _ = self.0.send(Seen::Error(udp(peer), error));
    }
    fn dropped(&self, peer: &Peer, reason: Dropped) {
        let _ = self.0.send(Seen::Dropped(udp(peer), reason));
    }
}

/// A datagram's sender, which is always a UDP address.
fn udp(peer: &Peer) -> SocketAddr {
    match peer.addr {
        Addr::Udp(addr) => addr,
        ref other => panic!("a UDP address expected: {other}"),
    }
}

/// Starts `server` and returns what its observer sees, one item per datagram.
fn watched(server: DatagramServer) -> (Running, Receiver<Seen>) {
    let (tx, rx) = mpsc::channel();
    (Running::start_observed(server, Watch(tx)), rx)
}

fn next(seen: &Receiver<Seen>) -> Seen {
    seen.recv_timeout(SAFETY).expect("the server saw the datagram")
}

/// A server always stamping the same instant, so its rate limit never refills.
fn frozen(server: DatagramServer) -> DatagramServer {
    let fixed = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_133_968);
    server.clock(move || fixed)
}

/// A socket on loopback address `ip`, never on `server`'s port: a server
/// drops a datagram from its own port on any loopback address (a loop), and
/// the kernel may pick that port for another address.
fn bind_at(ip: [u8; 4], server: SocketAddr) -> UdpSocket {
    loop {
        let socket = UdpSocket::bind((Ipv4Addr::from(ip), 0)).expect("bind a loopback address");
        if socket.local_addr().expect("address").port() != server.port() {
            socket.set_read_timeout(Some(SAFETY)).expect("timeout");
            return socket;
        }
    }
}

/// Reads every datagram waiting on `socket` without blocking.
fn drain(socket: &UdpSocket) -> Vec<Vec<u8>> {
    socket.set_nonblocking(true).expect("nonblocking");
    let mut buf = vec![0; 70_000];
    let mut got = Vec::new();
    while let Ok(n) = socket.recv(&mut buf) {
        got.push(buf[..n].to_vec());
    }
    socket.set_nonblocking(false).expect("blocking");
    got
}

#[test]
fn replies_and_error_datagrams_are_never_answered() {
    let (running, seen) = watched(server_with(fixed_stamp()));
    let peer = bind();
    let from = peer.local_addr().expect("address");
    let shaped: [(&[u8], Dropped); 5] = [
        (b"[T] hi", Dropped::LooksLikeReply),
        (b"[2026-11-26T05:12:48.123456Z] ", Dropped::LooksLikeReply),
        ("[Thu Nov 26 05:12:48 2026] 你好".as_bytes(), Dropped::LooksLikeReply),
        (b"error: reply of 65535 bytes would not fit", Dropped::ErrorDatagram),
        (b"error: ", Dropped::ErrorDatagram),
    ];
    for (datagram, reason) in shaped {
        peer.send_to(datagram, running.addr).expect("send");
        assert_eq!(next(&seen), Seen::Dropped(from, reason), "{}", String::from_utf8_lossy(datagram));
    }
    // Near misses are messages like any other.
    let answered: [&[u8]; 5] = [b"[T]hi", b"[T", b" [T] hi", b"error:x", b"[a\nb] c"];
    let mut buf = [0; 64];
    for message in answered {
        peer.send_to(message, running.addr).expect("send");
        assert_eq!(next(&seen), Seen::Echo(from, message.to_vec()));
        // The next datagram is this reply: none went to the datagrams dropped.
        let n = peer.recv(&mut buf).expect("the reply");
        assert_eq!(&buf[..n], [b"[T] ", message].concat());
    }
    assert!(drain(&peer).is_empty());
    let totals = running.stop();
    assert_eq!((totals.datagrams, totals.messages, totals.errors), (10, 5, 0));
    assert_eq!((totals.dropped.looks_like_reply, totals.dropped.error_datagram, totals.dropped.total()), (3, 2, 5));
}

#[test]
fn an_echo_service_that_returns_the_reply_gets_no_second_one() {
    // The peer answers whatever it gets with the same bytes, as an RFC 862
    // echo service does: the loop ends at the server's first reply.
    let (running, seen) = watched(server_with(fixed_stamp()));
    let echo = bind();
    let from = echo.local_addr().expect("address");
    echo.send_to(b"ping", running.addr).expect("send");
    let mut buf = [0; 64];
    let (n, _) = echo.recv_from(&mut buf).expect("the reply");
    assert_eq!(&buf[..n], b"[T] ping");
    echo.send_to(&buf[..n], running.addr).expect("echo the reply back");
    assert_eq!(next(&seen), Seen::Echo(from, b"ping".to_vec()));
    assert_eq!(next(&seen), Seen::Dropped(from, Dropped::LooksLikeReply));
    let totals = running.stop();
    assert_eq!((totals.datagrams, totals.messages, totals.dropped.looks_like_reply), (2, 1, 1));
    assert!(drain(&echo).is_empty());
}

#[test]
fn the_default_rate_limit_answers_a_burst_per_source() {
    let limit = RateLimit::default();
    assert_eq!(
        (limit.replies, limit.per, limit.burst, limit.total, limit.buckets),
        (100, Duration::from_secs(1), 100, 10_000, 16_384)
    );
    let server = frozen(DatagramServer::new(bind(), fixed_stamp()).expect("server"));
    assert_eq!(server.rate_limit_in_force(), limit);
    let (running, seen) = watched(server);
    let greedy = bind_at([127, 0, 0, 1], running.addr);
    let from = greedy.local_addr().expect("address");
    for i in 0..150 {
        greedy.send_to(format!("{i}").as_bytes(), running.addr).expect("send");
        match next(&seen) {
            Seen::Echo(..) => assert!(i < 100, "datagram {i} answered"),
            Seen::Dropped(who, Dropped::RateLimited) => assert!(i >= 100 && who == from, "datagram {i} dropped"),
            other => panic!("datagram {i}: {other:?}"),
        }
    }
    assert_eq!(drain(&greedy).len(), 100);
    // Another port of the same address shares its bucket; another address has its own.
    let same = bind_at([127, 0, 0, 1], running.addr);
    same.send_to(b"me too", running.addr).expect("send");
    assert!(matches!(next(&seen), Seen::Dropped(_, Dropped::RateLimited)));
    let other = bind_at([127, 0, 0, 2], running.addr);
    let mut client = DatagramClient::new(other);
    client.socket().connect(running.addr).expect("connect");
    assert_eq!(client.round_trip(b"fresh").expect("its own burst").message(), b"fresh");
    assert!(matches!(next(&seen), Seen::Echo(..)));
    let totals = running.stop();
    assert_eq!((totals.datagrams, totals.messages, totals.dropped.rate_limited), (152, 101, 51));
}

#[test]
fn a_configured_rate_limit_is_the_one_applied_and_error_datagrams_count() {
    // Three replies, then one a day: the real clock cannot refill it during the test.
    let limit = RateLimit::default().replies(1, Duration::from_secs(86_400)).burst(3);
    let server = DatagramServer::new(bind(), fixed_stamp()).expect("server").rate_limit(limit);
    let (running, seen) = watched(server);
    let peer = bind();
    let too_large = vec![b'x'; MAX_DATAGRAM];
    let from = peer.local_addr().expect("address");
    for datagram in [&b"one"[..], &too_large, b"two", b"three"] {
        peer.send_to(datagram, running.addr).expect("send");
        match (next(&seen), datagram.len()) {
            (Seen::Echo(..), 3) | (Seen::Error(..), MAX_DATAGRAM) => {}
            (Seen::Dropped(who, Dropped::RateLimited), 5) => assert_eq!(who, from),
            (other, len) => panic!("{len} bytes: {other:?}"),
        }
    }
    let replies = drain(&peer);
    assert_eq!(replies.len(), 3);
    assert!(replies[1].starts_with(ERROR_PREFIX.as_bytes()));
    let totals = running.stop();
    assert_eq!((totals.messages, totals.errors, totals.dropped.rate_limited), (2, 1, 1));
    assert_eq!(totals.datagrams, totals.messages + totals.errors + totals.dropped.total());

    // Out of range: refused when serving starts, naming the setting.
    let refused = DatagramServer::new(bind(), fixed_stamp()).expect("server").rate_limit(RateLimit::per_second(0));
    match refused.serve() {
        Err(Error::Config(e)) => assert_eq!((e.setting(), e.value()), ("replies", "0")),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn a_peer_answering_every_reply_is_answered_at_most_a_burst() {
    // A chargen-like peer: it answers each reply with new data that is no
    // reply. The rate limit ends the exchange.
    let limit = RateLimit::default().replies(1, Duration::from_secs(86_400)).burst(5);
    let (running, seen) =
        watched(frozen(DatagramServer::new(bind(), fixed_stamp()).expect("server")).rate_limit(limit));
    let chargen = bind();
    chargen.send_to(b"go", running.addr).expect("send");
    let mut buf = [0; 64];
    let mut rounds = 0;
    loop {
        match next(&seen) {
            Seen::Echo(..) => {
                rounds += 1;
                chargen.recv(&mut buf).expect("the reply");
                chargen.send_to(format!("more {rounds}").as_bytes(), running.addr).expect("send");
            }
            Seen::Dropped(_, Dropped::RateLimited) => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(rounds, 5);
    let totals = running.stop();
    assert_eq!((totals.datagrams, totals.messages, totals.dropped.rate_limited), (6, 5, 1));
}

#[test]
fn a_source_pushed_by_many_others_gets_no_new_burst() {
    // 16 buckets, a clock that never moves: the victim uses its burst, then
    // 300 other addresses send a datagram each, far more sources than
    // buckets. A table of sources would have forgotten the victim by then.
    let limit = RateLimit::default().buckets(16);
    let (running, seen) =
        watched(frozen(DatagramServer::new(bind(), fixed_stamp()).expect("server")).rate_limit(limit));
    let victim = bind_at([127, 0, 0, 2], running.addr);
    let from = victim.local_addr().expect("address");
    let mut answered = 0;
    for i in 0..150 {
        victim.send_to(format!("{i}").as_bytes(), running.addr).expect("send");
        match next(&seen) {
            Seen::Echo(..) => answered += 1,
            Seen::Dropped(who, Dropped::RateLimited) => assert_eq!(who, from),
            other => panic!("datagram {i}: {other:?}"),
        }
    }
    assert_eq!(answered, 100);
    let others: Vec<UdpSocket> =
        (1..=300u16).map(|n| bind_at([127, 0, (n >> 8) as u8 + 1, n as u8], running.addr)).collect();
    let mut others_answered = 0;
    for socket in &others {
        socket.send_to(b"churn", running.addr).expect("send");
        match next(&seen) {
            Seen::Echo(..) => others_answered += 1,
            // Sharing both its buckets with the victim: it waits its turn.
            Seen::Dropped(_, Dropped::RateLimited) => {}
            other => panic!("another source: {other:?}"),
        }
    }
    for i in 0..10 {
        victim.send_to(format!("again {i}").as_bytes(), running.addr).expect("send");
        assert_eq!(next(&seen), Seen::Dropped(from, Dropped::RateLimited), "datagram {i} after the others");
    }
    assert_eq!(drain(&victim).len(), 100);
    let totals = running.stop();
    assert!(others_answered >= 200, "{others_answered} of 300 other sources answered");
    assert_eq!((totals.datagrams, totals.messages), (460, 100 + others_answered));
    assert_eq!(totals.dropped.rate_limited, 60 + 300 - others_answered);
}

#[test]
fn all_sources_together_get_at_most_the_total() {
    // 100 addresses, one datagram each, against a total of 50 and a clock
    // that never moves: each is within its own limit, the 51st is over the total.
    let limit = RateLimit::default().total(50);
    let (running, seen) =
        watched(frozen(DatagramServer::new(bind(), fixed_stamp()).expect("server")).rate_limit(limit));
    let senders: Vec<UdpSocket> = (1..=100).map(|n| bind_at([127, 0, 3, n], running.addr)).collect();
    for (i, socket) in senders.iter().enumerate() {
        socket.send_to(b"hi", running.addr).expect("send");
        let from = socket.local_addr().expect("address");
        match next(&seen) {
            Seen::Echo(who, _) => assert!(i < 50 && who == from, "datagram {i} answered"),
            Seen::Dropped(who, Dropped::TotalLimited) => assert!(i >= 50 && who == from, "datagram {i} dropped"),
            other => panic!("datagram {i}: {other:?}"),
        }
    }
    let replies: usize = senders.iter().map(|socket| drain(socket).len()).sum();
    assert_eq!(replies, 50);
    let totals = running.stop();
    assert_eq!((totals.datagrams, totals.messages, totals.dropped.total_limited), (100, 50, 50));
    assert_eq!(totals.dropped.to_string(), "50 dropped (50 total limited)");
}

// ---- Forged sources (a raw socket) ----

/// A raw IPv4 socket that sends hand-built IPv4 + UDP packets, or `None`
/// after a visible SKIPPED notice when this process may not open one. Under
/// CI (`CI=true`) a missing privilege fails the test instead.
fn raw_socket(test: &str) -> Option<Socket> {
    match forge::raw_socket() {
        Ok(socket) => Some(socket),
        Err(e) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("{test}: cannot open a raw socket to forge source addresses ({e}); run as root or with CAP_NET_RAW")
        }
        Err(e) => {
            // Straight to stderr: the harness hides eprintln! of passing tests.
            let _ = writeln!(io::stderr(), "SKIPPED {test}: cannot open a raw socket ({e}); needs root or CAP_NET_RAW");
            None
        }
    }
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(_) => panic!("an IPv4 address expected: {addr}"),
    }
}

#[test]
fn a_datagram_from_the_servers_own_address_is_dropped() {
    let Some(raw) = raw_socket("a_datagram_from_the_servers_own_address_is_dropped") else { return };
    let (running, seen) = watched(server_with(fixed_stamp()));
    let own = v4(running.addr);
    forge(&raw, own, own, b"hello").expect("forged datagram sent");
    // Without the defence this is the self-loop: it answers itself for ever.
    assert_eq!(next(&seen), Seen::Dropped(running.addr, Dropped::OwnAddress));
    let totals = running.stop();
    assert_eq!((totals.datagrams, totals.messages, totals.errors, totals.dropped.own_address), (1, 0, 0, 1));
}

#[test]
fn on_a_wildcard_address_its_port_on_any_loopback_address_is_its_own() {
    let Some(raw) = raw_socket("on_a_wildcard_address_its_port_on_any_loopback_address_is_its_own") else { return };
    let socket = UdpSocket::bind("0.0.0.0:0").expect("bind the wildcard address");
    socket.set_read_timeout(Some(SAFETY)).expect("timeout");
    let (running, seen) = watched(unlimited(DatagramServer::new(socket, fixed_stamp()).expect("server")));
    let port = running.addr.port();
    let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    for from in [Ipv4Addr::LOCALHOST, Ipv4Addr::new(127, 0, 0, 2)] {
        forge(&raw, SocketAddrV4::new(from, port), to, b"hello").expect("forged datagram sent");
        assert_eq!(next(&seen), Seen::Dropped(SocketAddrV4::new(from, port).into(), Dropped::OwnAddress));
    }
    // Another port of the same address is a client like any other.
    let client = bind();
    client.send_to(b"hello", to).expect("send");
    assert!(matches!(next(&seen), Seen::Echo(..)));
    let totals = running.stop();
    assert_eq!((totals.datagrams, totals.messages, totals.dropped.own_address), (3, 1, 2));
}

#[test]
fn two_servers_do_not_loop() {
    let Some(raw) = raw_socket("two_servers_do_not_loop") else { return };
    let (a, seen_a) = watched(server_with(fixed_stamp()));
    let (b, seen_b) = watched(server_with(fixed_stamp()));
    // A datagram to A that says it comes from B: A answers B, B drops the reply.
    forge(&raw, v4(b.addr), v4(a.addr), b"ping").expect("forged datagram sent");
    assert_eq!(next(&seen_a), Seen::Echo(b.addr, b"ping".to_vec()));
    assert_eq!(next(&seen_b), Seen::Dropped(a.addr, Dropped::LooksLikeReply));
    let (a, b) = (a.stop(), b.stop());
    assert_eq!((a.datagrams, a.messages, a.dropped.total()), (1, 1, 0));
    assert_eq!((b.datagrams, b.messages, b.dropped.looks_like_reply), (1, 0, 1));
}

#[test]
fn service_ports_and_port_zero_are_no_clients() {
    let Some(raw) = raw_socket("service_ports_and_port_zero_are_no_clients") else { return };
    let (running, seen) = watched(server_with(fixed_stamp()));
    let to = v4(running.addr);
    for (port, reason) in [(19, Dropped::ServicePort), (7, Dropped::ServicePort), (0, Dropped::InvalidSource)] {
        let from = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        forge(&raw, from, to, b"hello").expect("forged datagram sent");
        assert_eq!(next(&seen), Seen::Dropped(from.into(), reason), "port {port}");
    }
    let totals = running.stop();
    assert_eq!(
        (totals.datagrams, totals.messages, totals.dropped.service_port, totals.dropped.invalid_source),
        (3, 0, 2, 1)
    );
}

#[test]
fn the_client_refuses_at_once_what_a_server_would_drop() {
    // A socket that never answers, and a client that would wait a long time
    // for it: the refusal comes before any of that.
    let silent = bind();
    let mut client = DatagramClient::connect(silent.local_addr().expect("address")).expect("client");
    client.set_timeout(SAFETY).expect("timeout");
    client.set_retries(5);
    for (message, reason) in [
        (&b"[2026-11-26T05:12:48Z] hi"[..], Dropped::LooksLikeReply),
        (b"[x] ", Dropped::LooksLikeReply),
        (b"error: no", Dropped::ErrorDatagram),
    ] {
        match client.round_trip(message) {
            Err(Error::Message(MessageError::Unanswerable(got))) => assert_eq!(got, reason),
            other => panic!("expected Unanswerable({reason}), got {other:?}"),
        }
    }
    // Nothing was sent.
    silent.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0; 64];
    assert_eq!(silent.recv(&mut buf).map_err(|e| e.kind()).err(), Some(io::ErrorKind::WouldBlock));
    // The error names the reason.
    let text = Error::from(MessageError::Unanswerable(Dropped::ErrorDatagram)).to_string();
    assert!(text.contains("error datagram"), "{text}");
}
