//! `load::drive` over loopback TCP: against our server in every framing, and
//! against servers that answer wrongly.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread;
use std::time::Duration;

use stamp_echo::load::{Workload, drive};
use stamp_echo::stamp::Ctime;
use stamp_echo::{EchoServer, Error, Framing};
use stamp_echo::{MessageError, ProtocolError};

/// Serves `connections` connections with `answer`, each on its own thread;
/// the listener is bound before this returns, so connecting cannot race it.
fn serve<F>(connections: usize, answer: F) -> String
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let answer = Arc::new(answer);
    thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let stream = stream.expect("accept");
            let answer = Arc::clone(&answer);
            thread::spawn(move || answer(stream));
        }
    });
    addr
}

fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    // Safety nets only: a hang fails the test instead of blocking it.
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    stream.set_write_timeout(Some(Duration::from_secs(20))).expect("timeout");
    stream
}

fn our_server(framing: Framing) -> String {
    // Chunk framing reads 1024 bytes at most: each read is one message.
    let server = EchoServer::builder().framing(framing).stamp(Ctime::utc()).build().expect("config");
    serve(8, move |s| {
        // Replies leave one write per read; Nagle would only delay them.
        s.set_nodelay(true).expect("nodelay");
        drop(server.serve(&s))
    })
}

#[test]
fn drives_our_server_in_every_framing_pipelined_and_ping_pong() {
    for framing in [Framing::chunk(), Framing::line(), Framing::length_prefixed()] {
        let addr = our_server(framing);
        for (window, size, messages) in [(1, 16, 300), (64, 16, 3000), (8, 5000, 100), (2, 60_000, 10)] {
            let stream = connect(&addr);
            let progress = AtomicU64::new(0);
            let workload = Workload::new(messages, size, window);
            let mut latencies = 0;
            let report = drive(&stream, framing, workload, &progress, |_| latencies += 1)
                .unwrap_or_else(|e| panic!("{framing}, window {window}, size {size}: {e}"));
            assert_eq!(report.messages, messages);
            assert_eq!(latencies, messages, "a latency per message");
            assert_eq!(progress.into_inner(), messages);
            assert!(report.bytes_sent >= messages * size as u64);
            // Every reply carries a stamp on top of the message.
            assert!(report.bytes_received > report.bytes_sent);
        }
    }
}

/// A line server that flips one bit of its 50th reply's message.
fn corrupting_server() -> String {
    serve(1, |mut s| {
        let mut buf = [0u8; 4096];
        let mut count = 0;
        let mut pending = Vec::new();
        while let Ok(n @ 1..) = s.read(&mut buf) {
            pending.extend_from_slice(&buf[..n]);
            let mut reply = Vec::new();
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                count += 1;
                let start = reply.len();
                reply.extend_from_slice(b"[T] ");
                reply.extend(pending.drain(..=end));
                if count == 50 {
                    reply[start + 6] ^= 1;
                }
            }
            if s.write_all(&reply).is_err() {
                return;
            }
        }
    })
}

#[test]
fn a_server_that_changes_a_byte_is_caught_with_one_thread_or_two() {
    // A window of 1 runs on the calling thread; 1000 needs a writer thread.
    for window in [1, 1000] {
        let stream = connect(&corrupting_server());
        let workload = Workload::new(100, 16, window);
        let result = drive(&stream, Framing::line(), workload, &AtomicU64::new(0), |_| {});
        assert!(
            matches!(result, Err(Error::Protocol(ProtocolError::EchoMismatch { offset: 2 }))),
            "window {window}: {result:?}"
        );
    }
}

/// Reads once, writes the start of a reply, and closes.
fn addr_of_a_server_that_hangs_up() -> String {
    serve(1, |mut s| {
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"[T] ");
    })
}

#[test]
fn a_server_that_hangs_up_early_is_caught() {
    let stream = connect(&addr_of_a_server_that_hangs_up());
    let workload = Workload::new(10, 16, 4);
    let result = drive(&stream, Framing::line(), workload, &AtomicU64::new(0), |_| {});
    assert!(matches!(result, Err(Error::Protocol(ProtocolError::UnexpectedEof) | Error::Io(_))), "{result:?}");
    let stream = connect(&addr_of_a_server_that_hangs_up());
    let workload = Workload::new(10_000, 16, 1000);
    let result = drive(&stream, Framing::line(), workload, &AtomicU64::new(0), |_| {});
    assert!(matches!(result, Err(Error::Protocol(ProtocolError::UnexpectedEof) | Error::Io(_))), "{result:?}");
}

#[test]
fn bad_workloads_are_refused_before_connecting_threads() {
    let addr = our_server(Framing::line());
    let stream = connect(&addr);
    let progress = AtomicU64::new(0);
    let zero = Workload::new(1, 16, 0);
    assert!(matches!(drive(&stream, Framing::line(), zero, &progress, |_| {}), Err(Error::Config(_))));
    let too_long = Workload::new(1, 100, 1);
    let framing = Framing::Line { max_line: 10 };
    assert!(matches!(
        drive(&stream, framing, too_long, &progress, |_| {}),
        Err(Error::Message(MessageError::TooLong { len: 100, max: 10 }))
    ));
}

/// A line server that answers each line only after `delay` (pacing the
/// server, not waiting for anything).
fn slow_server(delay: Duration) -> String {
    serve(1, move |mut s| {
        let mut buf = [0u8; 4096];
        let mut pending = Vec::new();
        while let Ok(n @ 1..) = s.read(&mut buf) {
            pending.extend_from_slice(&buf[..n]);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                thread::sleep(delay);
                let mut reply = b"[T] ".to_vec();
                reply.extend_from_slice(&line);
                if s.write_all(&reply).is_err() {
                    return;
                }
            }
        }
    })
}

#[test]
fn an_open_loop_counts_latency_from_when_each_message_was_due() {
    // Due every 1 ms, answered 20 ms after each arrives, one in flight at a
    // time: message k leaves about k * 20 ms after the start although due
    // at k ms. Counted from when it was due, the last one's latency covers
    // every delay before it (at least 10 * 20 ms - 9 * 1 ms); counted from
    // when it was sent, it would be about 20 ms (coordinated omission).
    let (delay, interval, messages) = (Duration::from_millis(20), Duration::from_millis(1), 10);
    let stream = connect(&slow_server(delay));
    let workload = Workload::new(messages, 16, 1).open_loop(interval);
    let mut latencies = Vec::new();
    let report = drive(&stream, Framing::line(), workload, &AtomicU64::new(0), |latency| latencies.push(latency))
        .expect("checked replies");
    assert_eq!((report.messages, latencies.len()), (messages, 10));
    let last = *latencies.last().expect("latencies");
    assert!(last >= delay * 10 - interval * 9, "counted from when it was due: {latencies:?}");
    assert!(latencies.windows(2).all(|w| w[1] >= w[0]), "each waited behind the one before: {latencies:?}");
}
