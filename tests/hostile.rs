//! Hostile and faulty clients: each gets a typed error for its connection
//! only, while another client keeps being served.

#[macro_use]
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{
    Kind, Runtime, SAFETY_TIMEOUT, connect, connect_small_buffer, fixed_now, fixed_reply, fixed_server, next_closed,
    read_to_close, round_trip, send_all_and_read_replies, serve_in_memory, start_on,
};
use stamp_echo::framing::LineEnding;
use stamp_echo::stamp::Ctime;
use stamp_echo::testing::{Duplex, Ready};
use stamp_echo::{EchoServer, Framing, Limits};

/// The well-behaved client every test checks is still served.
fn still_served(addr: SocketAddr, framing: Framing) {
    let mut stream = connect(addr);
    round_trip(&mut stream, framing, "still served 你好".as_bytes());
}

fn silent_and_trickling_clients_do_not_hold_up_others(rt: Runtime) {
    let framing = Framing::line();
    let (handle, addr, events) = start_on(rt, fixed_server(framing), Limits::default());
    let silent: Vec<TcpStream> = (0..200).map(|_| connect(addr)).collect();
    let mut trickling: Vec<TcpStream> = (0..200).map(|_| connect(addr)).collect();
    let mut prompt = connect(addr);
    let line = b"slow line\n";
    for (i, byte) in line.iter().enumerate() {
        for stream in &mut trickling {
            stream.write_all(&[*byte]).expect("one byte");
        }
        round_trip(&mut prompt, framing, format!("prompt {i}").as_bytes());
    }
    for stream in &mut trickling {
        let expected = fixed_reply(framing, b"slow line", LineEnding::Lf);
        let mut got = vec![0; expected.len()];
        stream.read_exact(&mut got).expect("the trickled line is answered");
        assert_eq!(got, expected);
    }
    assert_eq!(handle.active(), 401);
    drop((silent, trickling, prompt));
    let totals = handle.shutdown(SAFETY_TIMEOUT);
    assert_eq!((totals.connections, totals.messages, totals.errors), (401, 200 + 10, 0));
    drop(events);
}

fn endless_line_is_cut_at_the_limit(rt: Runtime) {
    let framing = Framing::Line { max_line: 1024 };
    let (handle, addr, events) = start_on(rt, fixed_server(framing), Limits::default());
    let mut stream = connect(addr);
    round_trip(&mut stream, framing, b"before the endless line");
    let writer = thread::spawn(move || {
        let block = [b'a'; 64 * 1024];
        // Until the server hangs up.
        while (&stream).write_all(&block).is_ok() {}
        stream
    });
    let (_, summary, error) = next_closed(&events);
    assert_eq!(error, Some(Kind::LineTooLong { max: 1024 }));
    // Found without reading much past the limit: one read at most (8 KiB;
    // 32 KiB on tokio, whose read buffer is the worker's, not the connection's).
    let one_read = match rt {
        Runtime::Threads => 8 * 1024,
        Runtime::Tokio => 32 * 1024,
    };
    assert!(summary.bytes_in <= 24 + 1024 + one_read, "read {} bytes", summary.bytes_in);
    assert_eq!(summary.messages, 1);
    let mut stream = writer.join().expect("writer");
    // Replies stream: the line was answered as it came, up to the limit.
    assert_eq!(read_to_close(&mut stream), fixed_reply(Framing::chunk(), &[b'a'; 1024], LineEnding::None));
    still_served(addr, framing);
    assert_eq!(handle.shutdown(SAFETY_TIMEOUT).errors, 1);
}

fn four_gib_length_prefix_is_refused_from_the_prefix(rt: Runtime) {
    let framing = Framing::length_prefixed();
    let (handle, addr, events) = start_on(rt, fixed_server(framing), Limits::default());
    let mut stream = connect(addr);
    round_trip(&mut stream, framing, b"before");
    stream.write_all(&u32::MAX.to_be_bytes()).expect("prefix");
    let (_, summary, error) = next_closed(&events);
    let max = Framing::DEFAULT_MAX_FRAME;
    assert_eq!(error, Some(Kind::FrameTooLarge { declared: u64::from(u32::MAX), max }));
    assert_eq!(summary.bytes_in, 4 + 6 + 4);
    assert_eq!(read_to_close(&mut stream), b"");
    still_served(addr, framing);
    assert_eq!(handle.shutdown(SAFETY_TIMEOUT).errors, 1);
}

fn odd_bytes_are_echoed_unchanged(rt: Runtime) {
    let odd: &[&[u8]] = &[b"\xff\xfe not \xc3 UTF-8", b"NUL \0 inside \0", b"lone \r return", b"\r", b"\x80"];
    for framing in [Framing::line(), Framing::length_prefixed()] {
        let (handle, addr, _events) = start_on(rt, fixed_server(framing), Limits::default());
        let mut stream = connect(addr);
        for message in odd {
            round_trip(&mut stream, framing, message);
        }
        drop(stream);
        let totals = handle.shutdown(SAFETY_TIMEOUT);
        assert_eq!((totals.messages, totals.errors), (odd.len() as u64, 0), "{framing}");
    }
    // Chunk framing: each read is a message, so one message per round trip.
    let framing = Framing::chunk();
    let (handle, addr, _events) = start_on(rt, fixed_server(framing), Limits::default());
    let mut stream = connect(addr);
    for message in odd {
        round_trip(&mut stream, framing, message);
    }
    drop(stream);
    assert_eq!(handle.shutdown(SAFETY_TIMEOUT).errors, 0);
}

fn reset_or_vanished_mid_message_ends_that_connection_only(rt: Runtime) {
    let framing = Framing::length_prefixed();
    let (handle, addr, events) = start_on(rt, fixed_server(framing), Limits::default());
    let mut partial = 100u32.to_be_bytes().to_vec();
    partial.extend_from_slice(b"ten bytes.");

    // Vanishes: closes normally in the middle of a frame.
    let mut vanishing = connect(addr);
    round_trip(&mut vanishing, framing, b"first");
    vanishing.write_all(&partial).expect("half a frame");
    // Replies stream: the reply's start comes back at once. Read it, so that
    // closing sends a FIN, not the reset that unread data would cause.
    let mut start = vec![0; 4 + 27 + 10];
    vanishing.read_exact(&mut start).expect("the reply streamed so far");
    assert_eq!(start[4..], fixed_reply(Framing::chunk(), b"ten bytes.", LineEnding::None));
    drop(vanishing);
    let (_, summary, error) = next_closed(&events);
    assert_eq!(error, Some(Kind::TruncatedFrame { expected: 104, received: 14 }));
    assert_eq!(summary.messages, 1);

    // Resets: SO_LINGER 0 makes close() send a reset.
    let mut resetting = connect(addr);
    round_trip(&mut resetting, framing, b"first");
    resetting.write_all(&partial).expect("half a frame");
    socket2::SockRef::from(&resetting).set_linger(Some(Duration::ZERO)).expect("linger");
    drop(resetting);
    let (_, summary, error) = next_closed(&events);
    assert_eq!(error, Some(Kind::Io(ErrorKind::ConnectionReset)));
    assert_eq!(summary.messages, 1);

    still_served(addr, framing);
    let totals = handle.shutdown(SAFETY_TIMEOUT);
    assert_eq!((totals.connections, totals.errors), (3, 2));
}

fn clients_that_never_read_are_cut_off_by_the_write_timeout(rt: Runtime) {
    let framing = Framing::chunk();
    let limits =
        Limits::default().max_connections(4).eviction_grace(None).write_timeout(Some(Duration::from_millis(200)));
    let (handle, addr, events) = start_on(rt, fixed_server(framing), limits);
    // Eight clients send without end and never read: twice the cap.
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let stream = connect_small_buffer(addr);
            thread::spawn(move || {
                let block = [b'w'; 64 * 1024];
                while (&stream).write_all(&block).is_ok() {}
            })
        })
        .collect();
    for _ in 0..8 {
        let (_, summary, error) = next_closed(&events);
        assert_eq!(error, Some(Kind::WriteTimeout));
        assert!(summary.messages > 0);
        assert!(handle.active() <= 4);
    }
    for writer in writers {
        writer.join().expect("the server hung up");
    }
    still_served(addr, framing);
    let totals = handle.shutdown(SAFETY_TIMEOUT);
    assert_eq!((totals.connections, totals.errors), (9, 8));
}

fn a_client_that_half_closes_mid_frame_still_gets_earlier_replies(rt: Runtime) {
    let framing = Framing::length_prefixed();
    let (handle, addr, events) = start_on(rt, fixed_server(framing), Limits::default());
    let mut stream = connect(addr);
    let mut sent = Vec::new();
    common::frame(framing, b"whole", &mut sent);
    sent.extend_from_slice(&[0, 0]); // half a prefix
    assert_eq!(send_all_and_read_replies(&mut stream, &sent), fixed_reply(framing, b"whole", LineEnding::None));
    let (_, _, error) = next_closed(&events);
    assert_eq!(error, Some(Kind::TruncatedFrame { expected: 4, received: 2 }));
    drop(handle);
}

/// Records the largest write offered: the replies a driver had pending.
struct LargestWrite {
    inner: Duplex,
    largest: usize,
}

impl Read for LargestWrite {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Write for LargestWrite {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.largest = self.largest.max(buf.len());
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A 1 MiB read of empty lines is 28 MiB of replies: they go out before they
/// pass 32 KiB and the replies to one 512-byte slice of the read (the
/// runners' shared bound), whatever the read size, so a peer that does not
/// read makes the server hold no more than that (and the rest of a read).
fn replies_to_a_large_read_are_written_before_they_pass_the_bound(rt: Runtime) {
    for (framing, message) in [(Framing::line(), &b"\n"[..]), (Framing::length_prefixed(), &[0, 0, 0, 0][..])] {
        let server = EchoServer::builder()
            .framing(framing)
            .read_buffer_size(1024 * 1024)
            .stamp(Ctime::utc())
            .clock(fixed_now)
            .build()
            .expect("valid settings");
        let messages = 1024 * 1024 / message.len();
        let mut stream = LargestWrite { inner: Duplex::new(message.repeat(messages)), largest: 0 };
        let summary = serve_in_memory(rt, &server, &mut stream).expect("valid input");
        assert_eq!(summary.messages, messages as u64);
        let reply = fixed_reply(framing, b"", common::sent_ending(framing));
        assert_eq!(stream.inner.output().len(), messages * reply.len(), "{framing}");
        let bound = 32 * 1024 + 512 / message.len() * reply.len();
        assert!(stream.largest <= bound, "{framing}: a write of {} bytes (bound {bound})", stream.largest);
    }
}

/// Sends empty lines without end until told to stop, then ends its input;
/// its replies are taken and dropped. Says when its first read was taken.
struct Flood {
    stop: Arc<AtomicBool>,
    started: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Read for Flood {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Ok(0);
        }
        if let Some(started) = self.started.take() {
            let _ = started.send(());
        }
        buf.fill(b'\n');
        Ok(buf.len())
    }
}

impl Write for Flood {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A connection that always has input (a stream that is always ready, so
/// it never waits) does not keep another connection from being served: on
/// a current-thread tokio runtime (one worker for both) the other's reply
/// comes while the flood goes on, and on the thread runner's driver too.
/// The flood stops only once the other connection has been answered.
fn a_flood_does_not_starve_another_connection(rt: Runtime) {
    let server = fixed_server(Framing::line());
    let stop = Arc::new(AtomicBool::new(false));
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let flood = Flood { stop: Arc::clone(&stop), started: Some(started_tx) };
    let (done_tx, done) = mpsc::channel();
    thread::spawn(move || {
        let other = Duplex::new(b"still served\n".to_vec());
        let served = match rt {
            Runtime::Threads => {
                let flooding = thread::spawn({
                    let server = server.clone();
                    move || server.serve(flood)
                });
                started.blocking_recv().expect("the flood began");
                let mut other = other;
                let answered = server.serve(&mut other).map(|_| other.take_output());
                stop.store(true, Ordering::Relaxed);
                (answered, flooding.join().expect("the flood's thread"))
            }
            Runtime::Tokio => {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
                runtime.block_on(async move {
                    let flooding = tokio::spawn({
                        let server = server.clone();
                        async move { stamp_echo::tokio::serve(&server, Ready(flood)).await }
                    });
                    started.await.expect("the flood began");
                    let mut other = Ready(other);
                    let answered = stamp_echo::tokio::serve(&server, &mut other).await.map(|_| other.0.take_output());
                    stop.store(true, Ordering::Relaxed);
                    (answered, flooding.await.expect("the flood's task"))
                })
            }
        };
        let _ = done_tx.send(served);
    });
    let (answered, flooded) = done.recv_timeout(SAFETY_TIMEOUT).expect("the other connection served during the flood");
    let expected = fixed_reply(Framing::line(), b"still served", LineEnding::Lf);
    assert_eq!(answered.expect("valid input"), expected);
    assert!(flooded.expect("the flood's input is valid").messages > 0);
}

on_both_runtimes!(
    replies_to_a_large_read_are_written_before_they_pass_the_bound,
    a_flood_does_not_starve_another_connection,
    silent_and_trickling_clients_do_not_hold_up_others,
    endless_line_is_cut_at_the_limit,
    four_gib_length_prefix_is_refused_from_the_prefix,
    odd_bytes_are_echoed_unchanged,
    reset_or_vanished_mid_message_ends_that_connection_only,
    clients_that_never_read_are_cut_off_by_the_write_timeout,
    a_client_that_half_closes_mid_frame_still_gets_earlier_replies,
);
