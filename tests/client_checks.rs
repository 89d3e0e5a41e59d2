//! `EchoClient` checks what comes back: a reply that does not echo the
//! message, a reply that is not `[STAMP] MESSAGE`, and a server that closes
//! early are each a typed error, never a wrong value or a hang. Fake servers
//! are scripted with `testing::Duplex`.
//!
//! Every case runs against both clients, the blocking `EchoClient` and the
//! async `stamp_echo::tokio::AsyncEchoClient`, which must agree on every outcome.

mod common;

use common::{FIXED_CTIME, Loopback, both_clients};
use stamp_echo::testing::Duplex;
use stamp_echo::{Error, Framing, Reply};
use stamp_echo::{MessageError, ProtocolError, TimeoutError};

/// An outcome the two clients can be compared on: the reply's pieces and
/// message (its times differ), or the error.
fn outcome(result: &Result<Reply, Error>) -> String {
    format!("{:?}", result.as_ref().map(|r| (r.pieces(), r.message())))
}

/// Sends `sent` to a fake server whose replies are `script`, one read per
/// entry, with each client; checks that they agree, and returns the outcome
/// and what the client wrote.
fn against(framing: Framing, script: &[&[u8]], sent: &[u8]) -> (Result<Reply, Error>, Vec<u8>) {
    let make = || Duplex::from_reads(script.iter().map(|r| r.to_vec()));
    let mut outcomes = both_clients(framing, make).into_iter().map(|(name, mut client)| {
        let result = client.round_trip(sent);
        (name, result, client.inner_mut().take_output())
    });
    let (_, first, written) = outcomes.next().expect("the blocking client");
    for (name, result, other_written) in outcomes {
        assert_eq!(outcome(&result), outcome(&first), "{name} client, {framing} {script:?}");
        assert_eq!(other_written, written, "{name} client, {framing} {script:?}: what it sent");
    }
    (first, written)
}

/// Round trips of `messages` with each client against an in-memory server
/// reading `read_sizes` at a time; checks that they agree, and returns the
/// outcomes.
fn round_trips(framing: Framing, read_sizes: &[usize], messages: &[&[u8]]) -> Vec<Result<Reply, Error>> {
    let mut outcomes = both_clients(framing, || Loopback::new(framing, read_sizes.to_vec()))
        .into_iter()
        .map(|(name, mut client)| (name, messages.iter().map(|m| client.round_trip(m)).collect::<Vec<_>>()));
    let (_, first) = outcomes.next().expect("the blocking client");
    for (name, results) in outcomes {
        let (got, expected): (Vec<_>, Vec<_>) =
            results.iter().zip(&first).map(|(a, b)| (outcome(a), outcome(b))).unzip();
        assert_eq!(got, expected, "{name} client, {framing}, reads of {read_sizes:?}: {messages:?}");
    }
    first
}

fn framed(framing: Framing, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    common::frame(framing, body, &mut out);
    out
}

#[test]
fn a_faithful_fake_server_is_accepted() {
    // The checks below fail for the reasons they name, not because the fake
    // servers are wrong: the same script with the right echo is accepted.
    for framing in [Framing::chunk(), Framing::line(), Framing::length_prefixed()] {
        let mut reply = b"[T] hi".to_vec();
        if let Framing::Line { .. } = framing {
            reply.push(b'\n');
        }
        let script = match framing {
            Framing::LengthPrefixed { .. } => framed(framing, &reply),
            _ => reply,
        };
        let (result, written) = against(framing, &[&script], b"hi");
        let reply = result.unwrap_or_else(|e| panic!("{framing}: {e}"));
        assert_eq!((reply.stamp(), reply.message()), ("T", &b"hi"[..]));
        assert_eq!(written, framed(framing, b"hi"), "{framing}: the message was sent framed");
    }
    // Chunk replies may come in pieces, in separate reads.
    let (result, _) = against(Framing::chunk(), &[b"[A] h", b"[B] i"], b"hi");
    let pieces: Vec<_> = result.expect("two pieces").pieces().iter().map(|p| (p.stamp.clone(), p.len)).collect();
    assert_eq!(pieces, [("A".to_owned(), 1), ("B".to_owned(), 1)]);
}

#[test]
fn a_reply_that_does_not_echo_the_message_is_a_mismatch() {
    let cases: [(Framing, &[&[u8]], usize); 8] = [
        (Framing::chunk(), &[b"[T] hx"], 1),
        (Framing::chunk(), &[b"[T] h", b"[U] x"], 1),
        (Framing::chunk(), &[b"[T] xi"], 0),
        (Framing::line(), &[b"[T] ho\n"], 1),
        (Framing::line(), &[b"[T] h\n"], 1),   // too short
        (Framing::line(), &[b"[T] his\n"], 2), // too long
        (Framing::length_prefixed(), &[b"\0\0\0\x06[T] ha"], 1),
        (Framing::length_prefixed(), &[b"\0\0\0\x05[T] h"], 1),
    ];
    for (framing, script, offset) in cases {
        let (result, _) = against(framing, script, b"hi");
        match result {
            Err(Error::Protocol(ProtocolError::EchoMismatch { offset: at })) => {
                assert_eq!(at, offset, "{framing} {script:?}")
            }
            other => panic!("{framing} {script:?}: expected a mismatch, got {other:?}"),
        }
    }
}

#[test]
fn a_reply_without_a_stamp_is_malformed() {
    let long_stamp = [b"[".as_slice(), &[b'x'; 300], b"] hi"].concat();
    let cases: [(Framing, &[u8]); 8] = [
        (Framing::chunk(), b"hi"),
        (Framing::chunk(), b"[T]hi"),
        (Framing::chunk(), &long_stamp),
        (Framing::line(), b"[T]hi\n"),
        (Framing::line(), b"[T\n"),
        (Framing::line(), b"hi\n"),
        (Framing::length_prefixed(), b"\0\0\0\x02hi"),
        (Framing::length_prefixed(), b"\xff\xff\xff\xff"), // a frame no echo of "hi" needs
    ];
    for (framing, script) in cases {
        let (result, _) = against(framing, &[script], b"hi");
        assert!(
            matches!(result, Err(Error::Protocol(ProtocolError::MalformedReply(_)))),
            "{framing} {script:?}: {result:?}"
        );
    }
    // A reply line without a newline that runs far past any echo of "hi".
    let (result, _) = against(Framing::line(), &[&[b'x'; 1000]], b"hi");
    assert!(matches!(result, Err(Error::Protocol(ProtocolError::MalformedReply(_)))), "{result:?}");
}

#[test]
fn a_server_that_closes_early_is_an_unexpected_eof() {
    let cases: [(Framing, &[&[u8]]); 7] = [
        (Framing::chunk(), &[]),
        (Framing::chunk(), &[b"[T"]),
        (Framing::chunk(), &[b"[T] h"]),
        (Framing::line(), &[b"[T] hi"]),
        (Framing::length_prefixed(), &[b"\0\0"]),
        (Framing::length_prefixed(), &[b"\0\0\0\x06[T] h"]),
        (Framing::length_prefixed(), &[]),
    ];
    for (framing, script) in cases {
        let (result, _) = against(framing, script, b"hi");
        assert!(
            matches!(result, Err(Error::Protocol(ProtocolError::UnexpectedEof))),
            "{framing} {script:?}: {result:?}"
        );
    }
}

#[test]
fn a_message_the_framing_cannot_carry_is_refused_before_sending() {
    let too_long = MessageError::TooLong { len: 4, max: 3 };
    let cases: [(Framing, &[u8], MessageError); 5] = [
        (Framing::chunk(), b"", MessageError::EmptyChunk),
        (Framing::line(), b"two\nlines", MessageError::Newline),
        (Framing::Line { max_line: 3 }, b"four", too_long),
        (Framing::LengthPrefixed { max_frame: 3 }, b"four", too_long),
        (Framing::line(), b"ends with CR\r", MessageError::TrailingCr),
    ];
    for (framing, message, reason) in cases {
        let (result, written) = against(framing, &[b"[T] unused\n"], message);
        assert!(matches!(result, Err(Error::Message(r)) if r == reason), "{framing} {message:?}: {result:?}");
        assert!(written.is_empty(), "{framing} {message:?}: nothing is sent");
    }
}

/// In chunk framing the server holds back the first bytes of a character
/// until the rest arrives: a message ending with them would wait forever.
#[test]
fn a_chunk_message_ending_inside_a_character_is_refused() {
    let ni = "你".as_bytes();
    for message in [&ni[..1], &ni[..2], &[b'a', ni[0], ni[1]][..], &"🎉".as_bytes()[..3]] {
        let (result, written) = against(Framing::chunk(), &[], message);
        assert!(matches!(result, Err(Error::Message(MessageError::SplitCharacter))), "{message:?}: {result:?}");
        assert!(written.is_empty());
    }
    // Bytes that are not UTF-8 at all are sent and echoed as they are.
    let messages = [&b"\xff"[..], b"a\xe4b", &ni[1..], b"\xed\xa0"];
    for (reply, message) in round_trips(Framing::chunk(), &[1024], &messages).into_iter().zip(messages) {
        let reply = reply.unwrap_or_else(|e| panic!("{message:?}: {e}"));
        assert_eq!(reply.message(), message);
    }
}

/// Found by `client_round_trips_any_message` in tests/properties.rs: a server
/// reading one byte at a time answers `\0[` as `[T] \0` + `[T] [`. Read
/// greedily as one piece `\0[`, that left `T] [` behind, and the next round
/// trip failed as malformed.
#[test]
fn a_split_reply_whose_message_holds_a_bracket_leaves_nothing_behind() {
    for (message, read_size) in [(&b"\0["[..], 1), (b"a[T] ", 1), (b"xyz[T] [T] [", 3), (b"[[[[", 2)] {
        let mut outcomes = round_trips(Framing::chunk(), &[read_size], &[message, b"next"]).into_iter();
        let reply = outcomes.next().expect("a first reply").unwrap_or_else(|e| panic!("{message:?}: {e}"));
        let lens: Vec<usize> = reply.pieces().iter().map(|p| p.len).collect();
        let expected: Vec<usize> = message.chunks(read_size).map(<[u8]>::len).collect();
        assert_eq!(lens, expected, "{message:?}: one piece per server read");
        let next = outcomes.next().expect("a second reply").unwrap_or_else(|e| panic!("after {message:?}: {e}"));
        assert_eq!((next.stamp(), next.message()), (FIXED_CTIME, &b"next"[..]));
    }
}

/// A piece cut short by a later stamp (the message holds `[`) is reported
/// with its own length, not with how far it matched the message.
#[test]
fn pieces_cut_at_a_bracket_have_their_own_lengths() {
    // The server reads "a" then "[b": replies "[S] a" and "[S] [b". The
    // first piece matches "a[" before the reply stops matching.
    let reply = round_trips(Framing::chunk(), &[1, 2], &[b"a[b"]).remove(0).expect("round trip");
    let lens: Vec<usize> = reply.pieces().iter().map(|p| p.len).collect();
    assert_eq!(lens, [1, 2]);
    assert_eq!(reply.to_string(), format!("[{FIXED_CTIME}] a[{FIXED_CTIME}] [b"));
}

/// A server that answers a byte at a time and never finishes: the client's
/// timeout is a deadline for the whole reply, so it gives up although bytes
/// keep coming, where a read timeout alone would wait for ever. Over TCP,
/// with each client.
#[test]
fn a_trickling_server_cannot_hold_the_client_past_its_timeout() {
    use std::time::{Duration, Instant};

    let timeout = Duration::from_millis(300);
    let message = [b'x'; 10_000];

    let server = Trickler::start();
    let mut client =
        stamp_echo::EchoClient::new(common::connect(server.addr), Framing::chunk()).expect("valid framing");
    client.set_timeout(Some(timeout)).expect("a timeout");
    let started = Instant::now();
    let result = client.round_trip(&message);
    server.check("blocking", result, timeout, started.elapsed());

    let server = Trickler::start();
    let mut on_tokio = common::OnRuntime::connect(server.addr, Framing::chunk());
    on_tokio.client.set_timeout(Some(timeout)).expect("a timeout");
    let started = Instant::now();
    let common::OnRuntime { client, runtime } = &mut on_tokio;
    let result = runtime.block_on(client.round_trip(&message));
    server.check("tokio", result, timeout, started.elapsed());
}

/// A TCP server for one connection that sends a header once the message
/// begins, then a byte every 20 ms (pacing, not synchronisation) until told
/// to stop.
struct Trickler {
    addr: std::net::SocketAddr,
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<u32>,
}

impl Trickler {
    fn start() -> Trickler {
        use std::io::{Read, Write};
        use std::sync::mpsc;
        use std::time::Duration;

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut first = [0; 1];
            stream.read_exact(&mut first).expect("the message begins");
            stream.write_all(b"[T] ").expect("a header");
            let mut trickled = 0u32;
            // The safety timeout ends it in any case.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(Duration::from_millis(20)) {
                if stream.write_all(b"x").is_err() || trickled > 1500 {
                    break;
                }
                trickled += 1;
            }
            trickled
        });
        Trickler { addr, stop, thread }
    }

    /// Stops the server and checks the client gave up, in time, while it was
    /// still sending.
    fn check(
        self,
        client: &str,
        result: Result<Reply, Error>,
        timeout: std::time::Duration,
        waited: std::time::Duration,
    ) {
        self.stop.send(()).expect("the server is trickling");
        let trickled = self.thread.join().expect("server thread");
        assert!(
            matches!(result, Err(Error::Timeout(TimeoutError::Reply { timeout: t })) if t == timeout),
            "{client}: {result:?}"
        );
        assert!(trickled >= 2, "{client}: the server kept sending while the client waited ({trickled} bytes)");
        assert!(waited < common::SAFETY_TIMEOUT, "{client}: gave up after {waited:?}");
    }
}

/// A message larger than every socket buffer, sent whole by `round_trip`
/// to a real server that echoes it as it arrives: the client reads the echo
/// while it writes, so it takes one round trip and never stalls; small
/// messages pipelined around it keep their order. With each client, in each
/// framing (chunk framing with a large read size, so that the checker's
/// work stays small in a debug build).
#[test]
fn a_message_of_16_mib_takes_one_round_trip() {
    use stamp_echo::EchoServer;
    use stamp_echo::testing::LocalServer;

    const BIG: usize = 16 << 20;
    let message: std::sync::Arc<[u8]> = (0..BIG).map(|i| b'a' + (i % 26) as u8).collect();
    for framing in
        [Framing::Line { max_line: BIG }, Framing::length_prefixed(), Framing::Chunk { buffer_size: 1 << 20 }]
    {
        let server = LocalServer::start(EchoServer::builder().framing(framing).build().expect("a server"))
            .expect("a local server");
        let addr = server.addr();
        // A client that stalls in a write would wait for ever (the async one
        // has no write timeout): the work runs on a thread of its own, and
        // its end is awaited within the safety timeout.
        let (done, finished) = std::sync::mpsc::channel();
        let message = std::sync::Arc::clone(&message);
        std::thread::spawn(move || {
            let mut blocking = stamp_echo::EchoClient::new(common::connect(addr), framing).expect("valid framing");
            blocking.set_timeout(Some(common::SAFETY_TIMEOUT)).expect("a timeout");
            check_big(&mut blocking, &message, &format!("blocking, {framing}"));
            let mut on_tokio = common::OnRuntime::connect(addr, framing);
            check_big(&mut on_tokio, &message, &format!("tokio, {framing}"));
            let _ = done.send(());
        });
        match finished.recv_timeout(common::SAFETY_TIMEOUT * 2) {
            Ok(()) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{framing}: a check failed (above)"),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{framing}: a client stalled"),
        }
    }
}

fn check_big(client: &mut impl common::Client, message: &[u8], name: &str) {
    let reply = client.round_trip(message).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(reply.message() == message, "{name}: the echo");
    assert_eq!(reply.pieces().iter().map(|p| p.len).sum::<usize>(), message.len(), "{name}: the pieces");

    // Pipelined: small, big, small; the first reply comes while the big
    // message is written, and waits for `receive`.
    let messages: [&[u8]; 3] = [b"before", message, b"after"];
    for m in messages {
        client.send(m).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert_eq!(client.in_flight(), 3, "{name}");
    for (seq, m) in messages.iter().enumerate() {
        let reply = client.receive().unwrap_or_else(|e| panic!("{name}: reply {seq}: {e}"));
        assert!(reply.message() == *m, "{name}: reply {seq} echoes its message");
    }
    assert_eq!(client.in_flight(), 0, "{name}");
}

/// A hostile server echoes every byte correctly, each behind its own
/// 255-byte stamp: the most pieces, and the longest stamps, a reply can come
/// in. The reply is right, and what the client keeps of it is bounded by
/// the message, not by 256 bytes per byte echoed: at most `MAX_PIECES`
/// stamps, the rest merged into the last piece kept. Longer than the 64 KiB
/// a client writes at once, so the echo is also read while it writes.
#[test]
fn a_piece_per_byte_behind_the_longest_stamps_is_merged_not_kept() {
    let sent: Vec<u8> = (0..70_000).map(|i| b"abcdefgh"[i % 8]).collect();
    let mut script = Vec::with_capacity(sent.len() * 260);
    for (i, &b) in sent.iter().enumerate() {
        script.push(b'[');
        script.extend_from_slice(format!("{i:~>255}").as_bytes());
        script.extend_from_slice(b"] ");
        script.push(b);
    }
    let (result, _) = against(Framing::chunk(), &[&script], &sent);
    let reply = result.expect("a correct reply");
    assert_eq!(reply.message(), sent.as_slice());
    assert_eq!(reply.piece_count(), sent.len() as u64);
    assert_eq!(reply.pieces().len(), Reply::MAX_PIECES);
    assert_eq!(reply.pieces().iter().map(|p| p.len).sum::<usize>(), sent.len());
    let kept: usize = reply.pieces().iter().map(|p| p.stamp.len()).sum();
    assert_eq!(kept, 255 * Reply::MAX_PIECES, "stamps kept");
    assert_eq!(reply.stamp(), format!("{:~>255}", 0));
    let last = reply.pieces().last().expect("pieces");
    assert_eq!(
        (last.stamp.as_str(), last.len),
        (format!("{:~>255}", Reply::MAX_PIECES - 1).as_str(), sent.len() - 1023)
    );
    // Displayed, as bounded: a stamp per piece kept, the message once.
    assert_eq!(reply.to_string().len(), (255 + 3) * Reply::MAX_PIECES + sent.len());
}
