//! The runner over real sockets: limits, timeouts, half-close, shutdown.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Event, FIXED_CTIME, Kind, Recorder, SAFETY_TIMEOUT, connect, connect_small_buffer, fixed_reply, fixed_server,
    next_closed, next_message, read_to_close, round_trip, send_all_and_read_replies, start,
};
use stamp_echo::framing::LineEnding;
use stamp_echo::runner::{self, Addr};
use stamp_echo::testing::LocalServer;
use stamp_echo::{Error, Framing, Limits};

#[test]
fn half_closed_client_gets_every_reply() {
    let framing = Framing::line();
    let (handle, addr, events) = start(fixed_server(framing), Limits::default());
    let mut stream = connect(addr);
    let mut sent = Vec::new();
    let mut expected = Vec::new();
    for i in 0..200 {
        let message = format!("message {i}");
        framing.encode_message(message.as_bytes(), &mut sent);
        expected.extend(fixed_reply(framing, message.as_bytes(), LineEnding::Lf));
    }
    // A last line without a newline is answered too, without one.
    sent.extend_from_slice(b"last");
    expected.extend(fixed_reply(framing, b"last", LineEnding::None));

    assert_eq!(send_all_and_read_replies(&mut stream, &sent), expected);
    let (_, summary, error) = next_closed(&events);
    assert_eq!((summary.messages, error), (201, None));
    assert_eq!(handle.shutdown(SAFETY_TIMEOUT).errors, 0);
}

#[test]
fn idle_connection_is_closed_with_a_timeout() {
    let framing = Framing::line();
    let limits = Limits::default().idle_timeout(Some(Duration::from_millis(200)));
    let (handle, addr, events) = start(fixed_server(framing), limits);
    let mut stream = connect(addr);
    round_trip(&mut stream, framing, b"then silence");

    assert_eq!(read_to_close(&mut stream), b"");
    let (_, summary, error) = next_closed(&events);
    assert_eq!((summary.messages, error), (1, Some(Kind::Timeout)));
    let totals = handle.shutdown(SAFETY_TIMEOUT);
    assert_eq!((totals.connections, totals.errors), (1, 1));
}

#[test]
fn at_the_cap_new_clients_wait_in_the_backlog() {
    let framing = Framing::line();
    let (handle, addr, _events) = start(fixed_server(framing), Limits::default().max_connections(2));
    let mut first = connect(addr);
    let mut second = connect(addr);
    round_trip(&mut first, framing, b"one");
    round_trip(&mut second, framing, b"two");
    assert_eq!(handle.active(), 2);

    // Twenty more connect (the kernel holds them) and send, but none is served...
    let mut waiting: Vec<TcpStream> = (0..20).map(|_| connect(addr)).collect();
    for (i, stream) in waiting.iter_mut().enumerate() {
        stream.write_all(format!("waiting {i}\n").as_bytes()).expect("send");
    }
    waiting[0].set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
    let err = waiting[0].read(&mut [0; 1]).expect_err("no reply while the server is at its cap");
    assert!(matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{err}");
    assert_eq!(handle.active(), 2);

    // ...until a slot frees: then every one of them is, none dropped.
    drop(first);
    drop(second);
    for (i, stream) in waiting.iter_mut().enumerate() {
        stream.set_read_timeout(Some(SAFETY_TIMEOUT)).expect("timeout");
        let expected = fixed_reply(framing, format!("waiting {i}").as_bytes(), LineEnding::Lf);
        let mut got = vec![0; expected.len()];
        stream.read_exact(&mut got).expect("served once a slot frees");
        assert_eq!(got, expected);
        stream.shutdown(Shutdown::Write).expect("half-close");
    }
    drop(waiting);
    let totals = handle.shutdown(SAFETY_TIMEOUT);
    assert_eq!((totals.connections, totals.messages, totals.errors), (22, 22, 0));
}

#[test]
fn shutdown_finishes_the_reply_being_written_and_closes_idle_clients() {
    let framing = Framing::length_prefixed();
    let (handle, addr, events) = start(fixed_server(framing), Limits::default());
    let mut idle = connect(addr);
    round_trip(&mut idle, framing, b"idle from now on");
    let _ = next_message(&events);

    // A reply far larger than the socket buffers: the server is still
    // writing it when shutdown begins, since this client is not reading yet.
    let big: Vec<u8> = (0..8 << 20).map(|i| (i % 251) as u8).collect();
    let mut busy = connect_small_buffer(addr);
    let mut framed = Vec::new();
    framing.encode_message(&big, &mut framed);
    busy.write_all(&framed).expect("send");
    let (busy_id, message) = next_message(&events);
    assert_eq!(message.len(), big.len());

    let stopper = thread::spawn(move || handle.shutdown(SAFETY_TIMEOUT));
    assert_eq!(read_to_close(&mut busy), fixed_reply(framing, &big, LineEnding::None));
    assert_eq!(read_to_close(&mut idle), b"");
    let totals = stopper.join().expect("shutdown");
    assert_eq!(
        (totals.connections, totals.messages, totals.errors, totals.force_closed, totals.unfinished),
        (2, 2, 0, 0, 0)
    );
    assert_eq!(totals.bytes_in, (framed.len() + 4 + 16) as u64);
    let closed: Vec<_> = [next_closed(&events), next_closed(&events)].into_iter().filter(|c| c.0 == busy_id).collect();
    assert_eq!(closed[0].2, None);
}

#[test]
fn shutdown_force_closes_what_is_left_at_the_deadline() {
    let framing = Framing::length_prefixed();
    let limits = Limits::default().write_timeout(None);
    let (handle, addr, events) = start(fixed_server(framing), limits);
    // A client that never reads: the server is stuck writing its reply.
    let stuck = connect_small_buffer(addr);
    let mut framed = Vec::new();
    framing.encode_message(&vec![b'x'; 8 << 20], &mut framed);
    (&stuck).write_all(&framed).expect("send");
    let _ = next_message(&events);

    let deadline = Duration::from_millis(300);
    let started = Instant::now();
    let totals = handle.shutdown(deadline);
    let took = started.elapsed();
    assert!(took >= deadline, "returned after {took:?}, before the deadline");
    assert!(took < SAFETY_TIMEOUT, "took {took:?}");
    assert_eq!((totals.connections, totals.force_closed, totals.errors, totals.unfinished), (1, 1, 0, 0));
    let (_, _, error) = next_closed(&events);
    assert!(error.is_some(), "a force-closed write fails");
}

#[test]
fn dropping_the_handle_stops_the_server() {
    let server = LocalServer::start(fixed_server(Framing::line())).expect("start");
    let addr = server.addr();
    let mut client = server.client().expect("connect");
    assert_eq!(client.round_trip(b"hello").expect("reply").stamp(), FIXED_CTIME);
    drop(server);
    let mut stream = client.into_inner();
    assert_eq!(read_to_close(&mut stream), b"");
    let refused = TcpStream::connect(addr).expect_err("the listener is closed");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

#[cfg(unix)]
#[test]
fn serves_a_unix_listener() {
    use std::os::unix::net::{UnixListener, UnixStream};
    let path = std::env::temp_dir().join(format!("stamp-echo-runner-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind");
    let (recorder, events) = Recorder::new();
    let framing = Framing::line();
    let handle = runner::start(listener, fixed_server(framing), Limits::default(), recorder).expect("start");
    assert_eq!(handle.local_addr(), &Addr::Unix(Some(path.clone())));

    let mut stream = UnixStream::connect(&path).expect("connect");
    stream.write_all(b"over unix\n").expect("send");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let mut got = Vec::new();
    stream.read_to_end(&mut got).expect("replies");
    assert_eq!(got, fixed_reply(framing, b"over unix", LineEnding::Lf));
    let Ok(Event::Connected(peer)) = events.recv_timeout(SAFETY_TIMEOUT) else { panic!("connected first") };
    assert_eq!(peer.to_string(), "unnamed#1");
    let totals = handle.shutdown(SAFETY_TIMEOUT);
    assert_eq!((totals.connections, totals.messages), (1, 1));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn limits_out_of_range_are_refused() {
    for limits in [
        Limits::default().max_connections(0),
        Limits::default().idle_timeout(Some(Duration::ZERO)),
        Limits::default().write_timeout(Some(Duration::ZERO)),
    ] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let started = runner::start(listener, fixed_server(Framing::line()), limits, ());
        assert!(matches!(started, Err(Error::Config(_))), "{limits:?}");
    }
}
