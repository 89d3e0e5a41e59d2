//! The runner over real sockets: limits, timeouts, half-close, shutdown.

#[macro_use]
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use common::{
    Event, FIXED_CTIME, Kind, Recorder, Runtime, SAFETY_TIMEOUT, connect, connect_from, connect_small_buffer,
    fixed_reply, fixed_server, next_closed, next_message, read_to_close, round_trip, send_all_and_read_replies,
    serve_on, start_on,
};
use stamp_echo::TimeoutError;
use stamp_echo::framing::LineEnding;
#[cfg(unix)]
use stamp_echo::runner::Addr;
use stamp_echo::runner::{Refusal, Source};
use stamp_echo::{EchoClient, EchoServer, Error, Framing, Limits};

fn half_closed_client_gets_every_reply(rt: Runtime) {
    let framing = Framing::line();
    let (handle, addr, events) = start_on(rt, fixed_server(framing), Limits::default());
    let mut stream = connect(addr);
    let mut sent = Vec::new();
    let mut expected = Vec::new();
    for i in 0..200 {
        let message = format!("message {i}");
        common::frame(framing, message.as_bytes(), &mut sent);
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

fn idle_connection_is_closed_with_a_timeout(rt: Runtime) {
    let framing = Framing::line();
    let limits = Limits::default().idle_timeout(Some(Duration::from_millis(200)));
    let (handle, addr, events) = start_on(rt, fixed_server(framing), limits);
    let mut stream = connect(addr);
    round_trip(&mut stream, framing, b"then silence");

    assert_eq!(read_to_close(&mut stream), b"");
    let (_, summary, error) = next_closed(&events);
    assert_eq!((summary.messages, error), (1, Some(Kind::Timeout)));
    let totals = handle.shutdown(SAFETY_TIMEOUT);
    assert_eq!((totals.connections, totals.errors), (1, 1));
}

fn without_eviction_new_clients_wait_in_the_backlog_at_the_cap(rt: Runtime) {
    let framing = Framing::line();
    let (handle, addr, _events) =
        start_on(rt, fixed_server(framing), Limits::default().max_connections(2).eviction_grace(None));
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

/// Shutdown ends each connection's input: a client in the middle of a large
/// frame gets the reply streamed so far, cut where the server's input ended
/// (or whole, if all of it had arrived), and idle clients are closed.
fn shutdown_answers_what_was_received_and_closes_idle_clients(rt: Runtime) {
    let framing = Framing::length_prefixed();
    let (handle, addr, events) = start_on(rt, fixed_server(framing), Limits::default());
    let mut idle = connect(addr);
    round_trip(&mut idle, framing, b"idle from now on");
    let _ = next_message(&events);

    // A frame far larger than the socket buffers, sent while this client
    // does not read yet: the server streams its reply until it blocks.
    let big: Vec<u8> = (0..8 << 20).map(|i| (i % 251) as u8).collect();
    let mut busy = connect_small_buffer(addr);
    let mut framed = Vec::new();
    common::frame(framing, &big, &mut framed);
    let expected_len = framed.len() as u64;
    let writer = {
        let stream = busy.try_clone().expect("clone");
        // The server may stop reading before all of it is sent.
        thread::spawn(move || (&stream).write_all(&framed).is_ok())
    };
    let (busy_id, first) = next_message(&events);
    assert!(!first.is_empty() && big.starts_with(&first), "the first fragment of the frame");

    let stopper = thread::spawn(move || handle.shutdown(SAFETY_TIMEOUT));
    let reply = read_to_close(&mut busy);
    let whole = fixed_reply(framing, &big, LineEnding::None);
    assert!(reply.len() > 4 + 27 && whole.starts_with(&reply), "{} bytes: not the start of the reply", reply.len());
    assert_eq!(read_to_close(&mut idle), b"");
    let totals = stopper.join().expect("shutdown");
    let _ = writer.join().expect("writer");
    let closed: Vec<_> = [next_closed(&events), next_closed(&events)].into_iter().filter(|c| c.0 == busy_id).collect();
    if reply.len() == whole.len() {
        assert_eq!(closed[0].2, None);
        assert_eq!((totals.messages, totals.errors), (2, 0));
    } else {
        assert!(matches!(closed[0].2, Some(Kind::TruncatedFrame { expected, .. }) if expected == expected_len));
        assert_eq!((totals.messages, totals.errors), (1, 1));
    }
    assert_eq!((totals.connections, totals.force_closed, totals.unfinished), (2, 0, 0));
}

fn shutdown_force_closes_what_is_left_at_the_deadline(rt: Runtime) {
    let framing = Framing::line();
    let limits = Limits::default().write_timeout(None);
    // The longest stamp the protocol allows: an empty line's reply is 258
    // times its size.
    let longest =
        stamp_echo::stamp::from_fn(|_: SystemTime, out: &mut String| out.extend(std::iter::repeat_n('x', 255)));
    let server = EchoServer::builder().framing(framing).stamp(longest).build().expect("valid settings");
    let (handle, addr, events) = start_on(rt, server, limits);
    // A client that never reads: whatever part of its empty lines the
    // server reads (the first read alone brings 8 KiB, 2 MiB of replies)
    // gets far more replies than the socket buffers hold, so the server is
    // stuck writing them.
    let stuck = connect_small_buffer(addr);
    let writer = {
        let stream = stuck.try_clone().expect("clone");
        thread::spawn(move || (&stream).write_all(&vec![b'\n'; 1 << 20]).is_ok())
    };
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
    drop(stuck);
    let _ = writer.join().expect("writer");
}

fn dropping_the_handle_stops_the_server(rt: Runtime) {
    let (server, addr, _events) = start_on(rt, fixed_server(Framing::line()), Limits::default());
    let mut client = EchoClient::new(connect(addr), Framing::line()).expect("client");
    assert_eq!(client.round_trip(b"hello").expect("reply").stamp(), FIXED_CTIME);
    drop(server);
    let mut stream = client.into_inner();
    assert_eq!(read_to_close(&mut stream), b"");
    let refused = TcpStream::connect(addr).expect_err("the listener is closed");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

/// Dropped off any runtime's threads, the handle returns once the server has
/// stopped: the end of every connection has been reported by then.
fn dropping_the_handle_waits_until_the_server_has_stopped(rt: Runtime) {
    let (handle, addr, events) = start_on(rt, fixed_server(Framing::line()), Limits::default());
    let mut client = connect(addr);
    round_trip(&mut client, Framing::line(), b"open");
    assert!(!handle.is_finished());
    drop(handle);
    let closed = events.try_iter().filter(|event| matches!(event, Event::Closed { .. })).count();
    assert_eq!(closed, 1, "the connection's end was reported before the drop returned");
    assert_eq!(read_to_close(&mut client), b"");
}

/// The async shutdown is a future of the same totals that needs no runtime
/// of its own kind (a bare current-thread one here, whichever runner serves).
fn shutdown_async_returns_the_final_totals(rt: Runtime) {
    let (handle, addr, events) = start_on(rt, fixed_server(Framing::line()), Limits::default());
    round_trip(&mut connect(addr), Framing::line(), b"one");
    let _ = next_closed(&events);
    let waiter = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let totals = waiter.block_on(handle.shutdown_async(SAFETY_TIMEOUT));
    assert_eq!((totals.connections, totals.messages, totals.errors, totals.unfinished), (1, 1, 0, 0));
}

#[cfg(unix)]
fn serves_a_unix_listener(rt: Runtime) {
    use std::os::unix::net::{UnixListener, UnixStream};
    let path = std::env::temp_dir().join(format!("stamp-echo-runner-{}-{rt:?}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind");
    let (recorder, events) = Recorder::new();
    let framing = Framing::line();
    let handle = serve_on(rt, listener, fixed_server(framing), Limits::default(), recorder).expect("start");
    assert_eq!(handle.local_addr(), &Addr::Unix(Some(path.clone())));

    let mut stream = UnixStream::connect(&path).expect("connect");
    stream.write_all(b"over unix\n").expect("send");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let mut got = Vec::new();
    stream.read_to_end(&mut got).expect("replies");
    assert_eq!(got, fixed_reply(framing, b"over unix", LineEnding::Lf));
    let Ok(Event::Connected(peer)) = events.recv_timeout(SAFETY_TIMEOUT) else { panic!("connected first") };
    assert_eq!(peer.to_string(), "unnamed#1");
    // Its source: the user, where the runtime can read it (tokio); the one
    // local source otherwise (std cannot read a Unix peer's credentials).
    let expected = match rt {
        Runtime::Tokio => {
            use std::os::unix::fs::MetadataExt;
            Source::Uid(std::fs::metadata(&path).expect("the socket file").uid())
        }
        Runtime::Threads => Source::Local,
    };
    assert_eq!(peer.source, expected);
    let totals = handle.shutdown(SAFETY_TIMEOUT);
    assert_eq!((totals.connections, totals.messages), (1, 1));
    let _ = std::fs::remove_file(&path);
}

fn limits_out_of_range_are_refused(rt: Runtime) {
    let cases = [
        ("max_connections", Limits::default().max_connections(0)),
        ("max_connections", Limits::default().max_connections(Limits::MAX_CONNECTIONS.max() + 1)),
        ("idle_timeout", Limits::default().idle_timeout(Some(Duration::ZERO))),
        ("idle_timeout", Limits::default().idle_timeout(Some(Duration::MAX))),
        ("write_timeout", Limits::default().write_timeout(Some(Duration::ZERO))),
        ("write_timeout", Limits::default().write_timeout(Some(Duration::from_secs(u64::MAX)))),
        ("message_timeout", Limits::default().message_timeout(Some(Duration::from_nanos(1)))),
        ("message_timeout", Limits::default().message_timeout(Some(Limits::MAX_TIMEOUT * 2))),
        ("max_per_source", Limits::default().max_per_source(Some(0))),
        ("max_per_source", Limits::default().max_per_source(Some(Limits::MAX_CONNECTIONS.max() + 1))),
        ("eviction_grace", Limits::default().eviction_grace(Some(Duration::ZERO))),
        ("eviction_grace", Limits::default().eviction_grace(Some(Duration::MAX))),
        ("stack_size", Limits::default().stack_size(0)),
        ("stack_size", Limits::default().stack_size(usize::MAX)),
    ];
    for (setting, limits) in cases {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let started = serve_on(rt, listener, fixed_server(Framing::line()), limits, ());
        let Err(Error::Config(config)) = started else { panic!("{limits:?} is refused") };
        assert_eq!(config.setting(), setting, "{config}");
    }
    // The bounds themselves are accepted, and so is no limit at all.
    let widest = Limits::default()
        .max_connections(Limits::MAX_CONNECTIONS.max())
        .idle_timeout(Some(Limits::MAX_TIMEOUT))
        .message_timeout(None)
        .write_timeout(Some(Limits::MIN_TIMEOUT))
        .eviction_grace(None)
        .max_per_source(Some(Limits::MAX_CONNECTIONS.max()))
        .stack_size(Limits::MIN_STACK_SIZE);
    assert!(widest.validate().is_ok());
}

fn a_shutdown_deadline_too_long_to_represent_is_no_panic(rt: Runtime) {
    let (handle, addr, _events) = start_on(rt, fixed_server(Framing::line()), Limits::default());
    round_trip(&mut connect(addr), Framing::line(), b"one");
    let totals = handle.shutdown(Duration::MAX);
    assert_eq!((totals.connections, totals.messages), (1, 1));
}

/// Waits for `n` `Connected` events.
fn connected(events: &std::sync::mpsc::Receiver<Event>, mut n: usize) {
    while n > 0 {
        if let Event::Connected(_) = events.recv_timeout(SAFETY_TIMEOUT).expect("connected") {
            n -= 1;
        }
    }
}

fn at_the_cap_a_new_client_takes_the_slot_of_the_one_longest_without_a_message(rt: Runtime) {
    let framing = Framing::line();
    let limits = Limits::default().max_connections(2).eviction_grace(Some(Duration::from_millis(1)));
    let (handle, addr, events) = start_on(rt, fixed_server(framing), limits);
    let mut active = connect(addr);
    round_trip(&mut active, framing, b"first");
    let mut silent = connect(addr);
    connected(&events, 2);
    // `active` completes a message after `silent` was accepted: `silent` is
    // the one that has gone longest without one.
    round_trip(&mut active, framing, b"again");
    // Both past the 1 ms grace (time passing, not a synchronisation): one
    // source at the cap evicts its own longest idle past the grace, and a
    // newcomer is refused while none is.
    thread::sleep(Duration::from_millis(5));

    let mut newcomer = connect(addr);
    round_trip(&mut newcomer, framing, b"let me in");
    assert_eq!(read_to_close(&mut silent), b"", "the silent one is closed");
    let (id, summary, error) = next_closed(&events);
    assert_eq!((id, summary.messages, error), (2, 0, Some(Kind::Evicted)));
    round_trip(&mut active, framing, b"still here");

    drop((active, newcomer));
    let totals = handle.shutdown(SAFETY_TIMEOUT);
    assert_eq!((totals.connections, totals.evicted, totals.errors), (3, 1, 0));
}

fn two_thousand_silent_or_trickling_connections_do_not_keep_a_new_client_waiting(rt: Runtime) {
    // Default limits: 1024 connections, 500 ms grace. A safety-net bound only;
    // scripts/hostile.sh measures it against the release server.
    let framing = Framing::line();
    // The server example's backlog (std's is 128: connections beyond it
    // would wait for SYN retransmissions, seconds).
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind");
    socket.listen(1024).expect("listen");
    let listener = std::net::TcpListener::from(socket);
    let addr = listener.local_addr().expect("address");
    let (recorder, events) = Recorder::new();
    let handle = serve_on(rt, listener, fixed_server(framing), Limits::default(), recorder).expect("start");
    let hoarders: Vec<TcpStream> = (0..2000)
        .map(|i| {
            let stream = TcpStream::connect(addr).expect("connect");
            if i % 2 == 1 {
                (&stream).write_all(b"never finished").expect("a message begun");
            }
            stream
        })
        .collect();
    connected(&events, Limits::DEFAULT_MAX_CONNECTIONS);
    let started = Instant::now();
    // From another address: one from the hoarders' own, while none of theirs
    // is past the grace yet, would be refused at once (fairness per source).
    let mut newcomer = connect_from(OTHER, addr);
    round_trip(&mut newcomer, framing, b"served");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(10), "served after {waited:?}");
    drop((hoarders, newcomer, events));
    let totals = handle.shutdown(SAFETY_TIMEOUT);
    // Each hoarder beyond the cap evicted one of its own or was refused.
    assert!(totals.evicted + totals.refused >= 2001 - 1024, "{totals}");
}

fn a_message_must_be_complete_within_the_message_timeout_however_it_trickles(rt: Runtime) {
    let framing = Framing::line();
    let limits =
        Limits::default().message_timeout(Some(Duration::from_millis(300))).idle_timeout(Some(SAFETY_TIMEOUT * 2));
    let (handle, addr, events) = start_on(rt, fixed_server(framing), limits);
    let mut stream = connect(addr);
    round_trip(&mut stream, framing, b"a whole one first");
    // A byte every 20 ms keeps the idle timer from ever firing.
    let trickler = {
        let stream = stream.try_clone().expect("clone");
        thread::spawn(move || {
            while (&stream).write_all(b"x").is_ok() {
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let (_, summary, error) = next_closed(&events);
    assert_eq!((summary.messages, error), (1, Some(Kind::MessageTimeout)));
    // Replies stream: the trickled line was echoed as it came, behind its header.
    let got = read_to_close(&mut stream);
    let header = format!("[{FIXED_CTIME}] ");
    let expected = header.bytes().chain(std::iter::repeat(b'x'));
    assert!(got.iter().zip(expected).all(|(a, b)| *a == b), "not the trickled line's reply: {got:?}");
    trickler.join().expect("the trickler ends when the server hangs up");
    assert_eq!(handle.shutdown(SAFETY_TIMEOUT).errors, 1);
}

fn the_write_timeout_is_a_deadline_for_the_whole_reply_and_says_the_peer_stopped_reading(rt: Runtime) {
    let framing = Framing::length_prefixed();
    let limits = Limits::default().write_timeout(Some(Duration::from_millis(300)));
    let (handle, addr, events) = start_on(rt, fixed_server(framing), limits);
    let stream = connect_small_buffer(addr);
    let mut frame = Vec::new();
    common::frame(framing, &vec![b'r'; 8 << 20], &mut frame);
    // The client reads a little now and then (10 KB/s): progress, but it
    // takes far longer than 300 ms to take the replies to one read, whether
    // they are the whole 8 MiB reply or the 8 KiB answering each read
    // (without a deadline, each bit of progress restarted the clock).
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stream = stream.try_clone().expect("clone");
        let done = std::sync::Arc::clone(&done);
        thread::spawn(move || {
            let mut buf = [0; 1024];
            while !done.load(std::sync::atomic::Ordering::Relaxed) && (&stream).read(&mut buf).is_ok_and(|n| n > 0) {
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let _ = (&stream).write_all(&frame);
    let (_, _, error) = next_closed(&events);
    assert_eq!(error, Some(Kind::WriteTimeout));
    let message = Error::Timeout(TimeoutError::Write { timeout: Duration::from_millis(300) }).to_string();
    assert!(message.contains("stopped reading"), "{message}");
    // Ends the reader without draining what the kernel still holds.
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.join().expect("the reader ends");
    assert_eq!(handle.shutdown(SAFETY_TIMEOUT).errors, 1);
}

#[cfg(unix)]
fn shutdown_reaches_a_unix_listener_whose_path_was_replaced(rt: Runtime) {
    use std::os::unix::net::UnixListener;
    let path = std::env::temp_dir().join(format!("stamp-echo-replaced-{}-{rt:?}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind");
    let handle = serve_on(rt, listener, fixed_server(Framing::line()), Limits::default(), ()).expect("start");
    // Someone else now has the path.
    std::fs::remove_file(&path).expect("remove");
    let other = UnixListener::bind(&path).expect("bind again");

    let (done_tx, done) = std::sync::mpsc::channel();
    thread::spawn(move || done_tx.send(handle.shutdown(SAFETY_TIMEOUT)));
    let totals = done.recv_timeout(SAFETY_TIMEOUT).expect("shutdown returns");
    assert_eq!(totals.connections, 0);
    other.set_nonblocking(true).expect("non-blocking");
    let err = other.accept().expect_err("shutdown connected to nobody");
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
    let _ = std::fs::remove_file(&path);
}

/// Waits for the accept loop's verdict on the next connection: its peer,
/// and the refusal if it was refused.
fn next_verdict(events: &std::sync::mpsc::Receiver<Event>) -> (stamp_echo::runner::Peer, Option<Refusal>) {
    loop {
        match events.recv_timeout(SAFETY_TIMEOUT).expect("a verdict") {
            Event::Connected(peer) => return (peer, None),
            Event::Refused(peer, reason) => return (peer, Some(reason)),
            _ => continue,
        }
    }
}

const HOARDER: [u8; 4] = [127, 0, 0, 2];
const OTHER: [u8; 4] = [127, 0, 0, 3];

fn one_address_holding_every_slot_with_active_connections_cannot_keep_another_out(rt: Runtime) {
    let framing = Framing::line();
    // A grace far longer than the test: only fairness can make room.
    let limits = Limits::default().max_connections(8).eviction_grace(Some(SAFETY_TIMEOUT * 2));
    let (handle, addr, events) = start_on(rt, fixed_server(framing), limits);
    let mut hoarded: Vec<TcpStream> = (0..8).map(|_| connect_from(HOARDER, addr)).collect();
    // Every one of them active, the first the longest ago.
    let mut ids = Vec::new();
    for (i, stream) in hoarded.iter_mut().enumerate() {
        let (peer, refused) = next_verdict(&events);
        assert_eq!((peer.source, refused), (Source::V4(HOARDER.into()), None));
        ids.push(peer.id);
        round_trip(stream, framing, format!("active {i}").as_bytes());
    }

    // Another address gets in, at the hoarder's expense: its longest without a message.
    let mut other = connect_from(OTHER, addr);
    round_trip(&mut other, framing, b"let me in");
    // The newcomer's verdict and the victim's end come in either order (the
    // victim's thread may report before the accept loop does).
    let (mut refused, mut closed) = (None, None);
    while refused.is_none() || closed.is_none() {
        match events.recv_timeout(SAFETY_TIMEOUT).expect("a verdict and a connection ended") {
            Event::Connected(_) => refused = Some(None),
            Event::Refused(_, reason) => refused = Some(Some(reason)),
            Event::Closed { id, error, .. } => closed = Some((id, error)),
            _ => continue,
        }
    }
    assert_eq!(refused, Some(None));
    assert_eq!(closed, Some((ids[0], Some(Kind::Evicted))));
    assert_eq!(read_to_close(&mut hoarded[0]), b"");

    // The hoarder's next newcomer may only displace its own, all recent: refused at once.
    let mut more = connect_from(HOARDER, addr);
    let (peer, refused) = next_verdict(&events);
    assert_eq!((peer.source, refused), (Source::V4(HOARDER.into()), Some(Refusal::Full { held: 7 })));
    assert_eq!(read_to_close(&mut more), b"");
    round_trip(&mut other, framing, b"still served");
    for (i, stream) in hoarded.iter_mut().enumerate().skip(1) {
        round_trip(stream, framing, format!("still here {i}").as_bytes());
    }
    drop((hoarded, other, more));
    let totals = handle.shutdown(SAFETY_TIMEOUT);
    assert_eq!((totals.connections, totals.evicted, totals.refused, totals.errors), (10, 1, 1, 0), "{totals}");
}

fn a_client_connected_before_is_never_evicted_by_another_addresss_churn(rt: Runtime) {
    let framing = Framing::line();
    let limits = Limits::default().max_connections(4).eviction_grace(Some(Duration::from_millis(1)));
    let (handle, addr, events) = start_on(rt, fixed_server(framing), limits);
    let mut interactive = connect_from(OTHER, addr);
    round_trip(&mut interactive, framing, b"hello");
    let (mine, _) = next_verdict(&events);
    // Silent from now on: it has gone longest of all without a message.
    let mut churned = Vec::new();
    let (mut admitted, mut refused) = (0, 0);
    for _ in 0..60 {
        churned.push(connect_from(HOARDER, addr));
        match next_verdict(&events) {
            (_, None) => admitted += 1,
            (_, Some(reason)) => {
                assert_eq!(reason, Refusal::Full { held: 3 });
                refused += 1;
            }
        }
    }
    round_trip(&mut interactive, framing, b"still here");
    drop(churned);
    let totals = handle.shutdown(SAFETY_TIMEOUT);
    // Beyond the first three, each of the hoarder's evicted one of its own or was refused.
    assert_eq!(admitted + refused, 60);
    assert!(totals.evicted >= admitted - 3 && totals.refused == refused, "{totals}");
    let closed_early =
        events.try_iter().any(|e| matches!(e, Event::Closed { id, error: Some(_), .. } if id == mine.id));
    assert!(!closed_early, "the interactive client was closed in an error");
}

fn max_per_source_refuses_a_sources_newcomers_past_it(rt: Runtime) {
    let framing = Framing::line();
    let limits = Limits::default().max_per_source(Some(2)).eviction_grace(Some(SAFETY_TIMEOUT * 2));
    let (handle, addr, events) = start_on(rt, fixed_server(framing), limits);
    let mut two: Vec<TcpStream> = (0..2).map(|_| connect_from(HOARDER, addr)).collect();
    for stream in &mut two {
        round_trip(stream, framing, b"mine");
    }
    let mut third = connect_from(HOARDER, addr);
    let verdicts: Vec<_> = (0..3).map(|_| next_verdict(&events).1).collect();
    assert_eq!(verdicts, [None, None, Some(Refusal::SourceLimit { held: 2 })]);
    assert_eq!(read_to_close(&mut third), b"");
    // Another source is not limited by it.
    let mut other = connect_from(OTHER, addr);
    round_trip(&mut other, framing, b"fine");
    drop((two, other));
    let totals = handle.shutdown(SAFETY_TIMEOUT);
    assert_eq!((totals.connections, totals.refused, totals.evicted, totals.errors), (4, 1, 0, 0), "{totals}");
}

on_both_runtimes!(
    half_closed_client_gets_every_reply,
    idle_connection_is_closed_with_a_timeout,
    without_eviction_new_clients_wait_in_the_backlog_at_the_cap,
    shutdown_answers_what_was_received_and_closes_idle_clients,
    shutdown_force_closes_what_is_left_at_the_deadline,
    dropping_the_handle_stops_the_server,
    dropping_the_handle_waits_until_the_server_has_stopped,
    shutdown_async_returns_the_final_totals,
    #[cfg(unix)]
    serves_a_unix_listener,
    limits_out_of_range_are_refused,
    a_shutdown_deadline_too_long_to_represent_is_no_panic,
    at_the_cap_a_new_client_takes_the_slot_of_the_one_longest_without_a_message,
    two_thousand_silent_or_trickling_connections_do_not_keep_a_new_client_waiting,
    a_message_must_be_complete_within_the_message_timeout_however_it_trickles,
    the_write_timeout_is_a_deadline_for_the_whole_reply_and_says_the_peer_stopped_reading,
    #[cfg(unix)]
    shutdown_reaches_a_unix_listener_whose_path_was_replaced,
    one_address_holding_every_slot_with_active_connections_cannot_keep_another_out,
    a_client_connected_before_is_never_evicted_by_another_addresss_churn,
    max_per_source_refuses_a_sources_newcomers_past_it,
);

/// Both runners take the same listeners: a tokio one (taken off its runtime
/// with `into_std`) serves on the thread runner too, and the tokio runner
/// registers it again.
#[test]
fn a_tokio_listener_serves_on_either_runner() {
    for rt in [Runtime::Threads, Runtime::Tokio] {
        let runtime = common::tokio_runtime();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().expect("address");
        let (server, limits) = (fixed_server(Framing::line()), Limits::default());
        let handle = match rt {
            Runtime::Threads => stamp_echo::runner::start(listener, server, limits, ()),
            Runtime::Tokio => {
                let _entered = runtime.enter();
                stamp_echo::tokio::runner::start(listener, server, limits, ())
            }
        };
        let handle = handle.expect("start");
        round_trip(&mut connect(addr), Framing::line(), b"hi");
        assert_eq!(handle.shutdown(SAFETY_TIMEOUT).messages, 1, "{rt:?}");
    }
}
