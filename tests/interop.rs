//! Interoperability: the original tutorial's Python client against our
//! server, our client against the original's Python server, and our server
//! and client together in every framing, all over TCP on port 0. Our
//! client's tests run with the blocking and the async client alike.
//!
//! The Python peers are in `tests/python/`. When `python3` is missing, the
//! tests that need it fail under CI (`CI=true`) and elsewhere print
//! `SKIPPED ...: python3 not found` on stderr.

#[macro_use]
mod common;

use std::io::Write;
use std::process::Stdio;
use std::sync::mpsc::Receiver;
use std::time::{Duration, SystemTime};

use common::{
    Client, FIXED_CTIME, KillOnDrop, Kind, OnRuntime, Runtime, SAFETY_TIMEOUT, connect, fixed_server, next_closed,
    next_closed_cleanly, parse_ctime, python_command, python3, read_to_end_in_background, split_pieces, split_reply,
    start_on, start_python_server,
};
use stamp_echo::ProtocolError;
use stamp_echo::stamp::Ctime;
use stamp_echo::{EchoClient, EchoServer, Error, Framing, Limits};

/// Whole seconds since the epoch.
fn unix_secs(t: SystemTime) -> i64 {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs();
    i64::try_from(secs).expect("seconds fit in i64")
}

/// Checks a ctime stamp made in UTC between `before` and `after`.
fn assert_ctime_between(stamp: &str, before: SystemTime, after: SystemTime) {
    let fields = parse_ctime(stamp).unwrap_or_else(|e| panic!("bad ctime stamp: {e}"));
    let at = fields.unix_utc();
    assert!(
        (unix_secs(before)..=unix_secs(after)).contains(&at),
        "stamp {stamp:?} is not between the start and the end of the exchange"
    );
}

/// Runs the original client against `addr`, typing `lines` then an empty
/// line, and returns what it printed, prompts included.
fn run_python_client(
    python: &std::path::PathBuf,
    addr: std::net::SocketAddr,
    bufsize: usize,
    lines: &[&str],
) -> String {
    let mut child = KillOnDrop(
        python_command(python, "original_client.py")
            .args([addr.ip().to_string(), addr.port().to_string(), bufsize.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the Python client"),
    );
    let mut typed = String::new();
    for line in lines {
        typed.push_str(line);
        typed.push('\n');
    }
    typed.push('\n'); // an empty line ends the original client
    let mut stdin = child.0.stdin.take().expect("piped stdin");
    stdin.write_all(typed.as_bytes()).expect("type into the client");
    drop(stdin);
    let out = read_to_end_in_background(child.0.stdout.take().expect("piped stdout"));
    let err = read_to_end_in_background(child.0.stderr.take().expect("piped stderr"));
    let out = out.recv_timeout(SAFETY_TIMEOUT).expect("the Python client finished");
    let err = err.recv_timeout(SAFETY_TIMEOUT).expect("the Python client finished");
    let status = child.0.wait().expect("wait for the Python client");
    assert!(status.success(), "the Python client failed: {}", String::from_utf8_lossy(&err));
    String::from_utf8(out).expect("the client printed UTF-8")
}

/// Splits the original client's output into the replies it printed:
/// `> ` + reply + newline for each line typed, then the last `> `.
fn printed_replies(output: &str) -> Vec<&str> {
    let rest = output.strip_suffix("> ").unwrap_or_else(|| panic!("no final prompt in {output:?}"));
    rest.split_terminator('\n')
        .map(|line| line.strip_prefix("> ").unwrap_or_else(|| panic!("no prompt before {line:?}")))
        .collect()
}

fn original_python_client_against_our_server(rt: Runtime) {
    let Some(python) = python3("original_python_client_against_our_server") else { return };
    let server = EchoServer::builder().framing(Framing::chunk()).stamp(Ctime::utc()).build().expect("valid server");
    let (_server, addr, events) = start_on(rt, server, Limits::default());
    let lines = ["hi,server", "héllo wörld", "你好，世界", "emoji 🎉, [brackets] and ] alone", "trailing space "];
    let before = SystemTime::now();
    let output = run_python_client(&python, addr, 1024, &lines);
    let after = SystemTime::now();

    let replies = printed_replies(&output);
    assert_eq!(replies.len(), lines.len(), "one reply per line typed: {output:?}");
    for (reply, sent) in replies.iter().zip(lines) {
        let (stamp, message) = split_reply(reply).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(message, sent);
        assert_ctime_between(stamp, before, after);
    }
    let summary = next_closed_cleanly(&events);
    assert_eq!(summary.messages, lines.len() as u64);
    let sent_bytes: usize = lines.iter().map(|l| l.len()).sum();
    assert_eq!(summary.bytes_in, sent_bytes as u64);
}

fn original_python_client_gets_1200_bytes_of_nihao_in_whole_characters(rt: Runtime) {
    let Some(python) = python3("original_python_client_gets_1200_bytes_of_nihao_in_whole_characters") else {
        return;
    };
    let server = EchoServer::builder().framing(Framing::chunk()).stamp(Ctime::utc()).build().expect("valid server");
    let (_server, addr, _events) = start_on(rt, server, Limits::default());
    let line = "你好".repeat(200);
    assert_eq!(line.len(), 1200);
    // The original client reads each reply with ONE recv(1024): our first
    // reply piece is 27 + 1023 bytes, so recv(1024) would cut it (the
    // original client's own defect). A 4096-byte recv sees the whole piece,
    // and maybe the next one: the client decodes strictly, so any character
    // split by our server would make it fail.
    let before = SystemTime::now();
    let output = run_python_client(&python, addr, 4096, &[&line]);
    let after = SystemTime::now();

    let replies = printed_replies(&output);
    assert_eq!(replies.len(), 1, "{output:?}");
    let pieces = split_pieces(replies[0].as_bytes());
    let mut echoed = Vec::new();
    for (stamp, piece) in &pieces {
        assert_ctime_between(stamp, before, after);
        assert!(!piece.is_empty() && piece.len() <= 1024, "a piece is one read of at most 1024 bytes");
        assert!(std::str::from_utf8(piece).is_ok(), "each piece is whole characters");
        echoed.extend_from_slice(piece);
    }
    assert!(line.as_bytes().starts_with(&echoed), "pieces echo the line in order");
    assert!(echoed.len() >= 1023, "a 1024-byte read holds at least 341 whole characters");
}

#[test]
fn our_client_against_the_original_python_server() {
    let Some(python) = python3("our_client_against_the_original_python_server") else { return };
    // With each client, against an original server of its own (it serves one).
    for runtime in ["threads", "tokio"] {
        let (child, addr, log) = start_python_server(&python, "original_server.py");
        match runtime {
            "threads" => {
                round_trips_with_the_original(&mut EchoClient::new(connect(addr), Framing::chunk()).expect("valid"))
            }
            _ => round_trips_with_the_original(&mut OnRuntime::connect(addr, Framing::chunk())),
        }
        the_original_dies_after_one_client(child, addr, &log);
    }
}

/// Round trips with the original server, checking each reply's stamps.
fn round_trips_with_the_original(client: &mut impl Client) {
    let long: Vec<u8> = (0..64 * 1024).map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789 "[i % 37]).collect();
    let messages: [&[u8]; 5] = [b"hi,server", "你好".as_bytes(), b"[not] a stamp", b"x", &long];
    let before = SystemTime::now();
    for message in messages {
        let reply = client.round_trip(message).unwrap_or_else(|e| panic!("round trip of {} bytes: {e}", message.len()));
        assert_eq!(reply.message(), message);
        let lens: usize = reply.pieces().iter().map(|p| p.len).sum();
        assert_eq!(lens, message.len(), "the pieces add up to the message");
        for piece in reply.pieces() {
            assert_ctime_between(&piece.stamp, before, SystemTime::now());
            assert!(piece.len <= 1024, "the original answers each recv(1024)");
        }
        if message.len() > 1024 {
            assert!(reply.pieces().len() >= message.len() / 1024, "a long message comes back in pieces");
        }
    }
}

/// The original's defect 1, reproduced: after its one client leaves, its
/// next accept() fails on the closed socket and it dies.
fn the_original_dies_after_one_client(mut child: KillOnDrop, addr: std::net::SocketAddr, log: &Receiver<Vec<u8>>) {
    let log = log.recv_timeout(SAFETY_TIMEOUT).expect("the Python server closed its output");
    let log = String::from_utf8_lossy(&log);
    assert!(log.contains("...connected from:"), "{log}");
    assert!(log.contains("date= hi,server"), "{log}");
    let status = child.0.wait().expect("wait for the Python server");
    assert!(!status.success(), "the original dies after one client");
    let mut stderr = String::new();
    if let Some(mut err) = child.0.stderr.take() {
        std::io::Read::read_to_string(&mut err, &mut stderr).expect("read its stderr");
    }
    assert!(stderr.contains("Bad file descriptor"), "{stderr}");
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_err(), "nobody listens any more");
}

fn our_server_and_client_in_every_framing_over_tcp(rt: Runtime) {
    for framing in [Framing::chunk(), Framing::line(), Framing::length_prefixed()] {
        for runtime in ["threads", "tokio"] {
            let (_server, addr, events) = start_on(rt, fixed_server(framing), Limits::default());
            let (count, bytes) = match runtime {
                "threads" => {
                    every_kind_of_message(&mut EchoClient::new(connect(addr), framing).expect("valid"), framing)
                }
                _ => every_kind_of_message(&mut OnRuntime::connect(addr, framing), framing),
            };
            let (_, summary, error) = next_closed(&events);
            assert_eq!(error, None, "{framing}, {runtime}");
            if !matches!(framing, Framing::Chunk { .. }) {
                assert_eq!(summary.messages, count, "{framing}, {runtime}");
            }
            assert!(summary.bytes_in >= bytes, "{framing}, {runtime}");
        }
    }
}

/// Round trips of every kind of message, then three pipelined; returns how
/// many messages and bytes were sent.
fn every_kind_of_message(client: &mut impl Client, framing: Framing) -> (u64, u64) {
    let long = "0123456789abcdef".repeat(4096); // 64 KiB
    let messages: [&[u8]; 6] =
        [b"hi,server", "你好，世界".as_bytes(), b"[T] looks like a reply", b"a\rb", b"] ", long.as_bytes()];
    let pipelined: [&[u8]; 3] = [b"one", b"two", "三".as_bytes()];
    for message in messages {
        let reply = client.round_trip(message).unwrap_or_else(|e| panic!("{framing}: {e}"));
        assert_eq!(reply.message(), message);
        assert!(reply.pieces().iter().all(|p| p.stamp == FIXED_CTIME), "{framing}");
        let lens: usize = reply.pieces().iter().map(|p| p.len).sum();
        assert_eq!(lens, message.len(), "{framing}");
        if !matches!(framing, Framing::Chunk { .. }) {
            assert_eq!(reply.pieces().len(), 1, "{framing}: one reply per message");
        }
    }
    // Pipelined: three messages out before any reply is read.
    for message in pipelined {
        client.send(message).expect("send");
    }
    for message in pipelined {
        let reply = client.receive().unwrap_or_else(|e| panic!("{framing}: {e}"));
        assert_eq!(reply.message(), message);
    }
    let sent = messages.iter().chain(&pipelined);
    (sent.clone().count() as u64, sent.map(|m| m.len() as u64).sum())
}

fn a_server_error_reaches_our_client_as_a_typed_error(rt: Runtime) {
    // A line over the server's limit: the server ends that connection, and
    // our client gets a typed error, not a hang or a wrong reply.
    let framing = Framing::Line { max_line: 8 };
    for runtime in ["threads", "tokio"] {
        let (_server, addr, events) = start_on(rt, fixed_server(framing), Limits::default());
        let err = match runtime {
            "threads" => over_the_limit(&mut EchoClient::new(connect(addr), Framing::line()).expect("valid")),
            _ => over_the_limit(&mut OnRuntime::connect(addr, Framing::line())),
        };
        assert!(matches!(err, Error::Protocol(ProtocolError::UnexpectedEof) | Error::Io(_)), "{runtime}: {err:?}");
        assert_eq!(next_closed(&events).2, Some(Kind::LineTooLong { max: 8 }), "{runtime}");
    }
}

/// A message within the server's limit, then one over it: the error.
fn over_the_limit(client: &mut impl Client) -> Error {
    client.round_trip(b"short").expect("within the limit");
    client.round_trip(b"much too long").expect_err("over the server's limit")
}

on_both_runtimes!(
    original_python_client_against_our_server,
    original_python_client_gets_1200_bytes_of_nihao_in_whole_characters,
    our_server_and_client_in_every_framing_over_tcp,
    a_server_error_reaches_our_client_as_a_typed_error,
);
