//! The async `AsyncEchoClient` over real transports: TCP against the blocking
//! runner (`testing::LocalServer`) and `tokio::io::duplex`. The behaviour
//! cases it shares with the blocking client are in tests/client_checks.rs
//! and tests/properties.rs.

mod common;

use std::time::Duration;

use common::{FIXED_CTIME, SAFETY_TIMEOUT, fixed_server};
use stamp_echo::stamp::{Rfc3339, StampKind};
use stamp_echo::testing::LocalServer;
use stamp_echo::tokio::AsyncEchoClient;
use stamp_echo::{EchoServer, Error, Framing};
use stamp_echo::{ProtocolError, TimeoutError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FRAMINGS: [Framing; 3] = [
    Framing::Chunk { buffer_size: 1024 },
    Framing::Line { max_line: 1024 },
    Framing::LengthPrefixed { max_frame: 1024 },
];

async fn connect(server: &LocalServer, framing: Framing) -> AsyncEchoClient<TcpStream> {
    let stream = TcpStream::connect(server.addr()).await.expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let mut client = AsyncEchoClient::new(stream, framing).expect("valid framing");
    client.set_timeout(Some(SAFETY_TIMEOUT)).expect("a safety timeout");
    client
}

#[tokio::test]
async fn round_trips_and_pipelines_over_tcp_against_the_thread_runner() {
    for framing in FRAMINGS {
        let server = LocalServer::start(fixed_server(framing)).expect("a local server");
        let mut client = connect(&server, framing).await;
        let reply = client.round_trip(b"hi,server").await.unwrap_or_else(|e| panic!("{framing}: {e}"));
        assert_eq!((reply.stamp(), reply.message()), (FIXED_CTIME, &b"hi,server"[..]), "{framing}");
        assert_eq!(reply.to_string(), format!("[{FIXED_CTIME}] hi,server"));

        let messages: Vec<Vec<u8>> = (0..200).map(|i| format!("message {i} [with a bracket]").into_bytes()).collect();
        for message in &messages {
            client.send(message).await.unwrap_or_else(|e| panic!("{framing}: {e}"));
        }
        assert_eq!(client.in_flight(), messages.len());
        for message in &messages {
            let reply = client.receive().await.unwrap_or_else(|e| panic!("{framing}: {e}"));
            assert_eq!(reply.message(), message.as_slice(), "{framing}: in order");
        }
        assert_eq!(client.in_flight(), 0);
        drop(client);
        let totals = server.shutdown(SAFETY_TIMEOUT);
        assert_eq!(totals.connections, 1, "{framing}");
    }
}

#[tokio::test]
async fn clock_offset_through_the_same_reply_type() {
    let server = EchoServer::builder().framing(Framing::line()).stamp(Rfc3339).build().expect("a server");
    let server = LocalServer::start(server).expect("a local server");
    let mut client = connect(&server, Framing::line()).await;
    let reply = client.round_trip(b"what time is it?").await.expect("a reply");
    let offset = reply.clock_offset(StampKind::Rfc3339).expect("an RFC 3339 stamp");
    // The same clock on both sides: zero is a possible offset, within half
    // the round trip and the stamp's microsecond.
    assert!(offset.contains(0), "{offset} for one clock, rtt {:?}", reply.rtt());
    assert!(offset.bound() <= reply.rtt() / 2 + Duration::from_micros(2), "{offset}, rtt {:?}", reply.rtt());
}

/// A server that never answers: the whole-reply deadline ends the wait with
/// a typed error naming the timeout.
#[tokio::test]
async fn the_reply_deadline_ends_the_wait_for_a_silent_server() {
    let (near, mut far) = tokio::io::duplex(1024);
    let mut client = AsyncEchoClient::new(near, Framing::line()).expect("valid framing");
    assert!(matches!(client.set_timeout(Some(Duration::ZERO)), Err(Error::Config(_))));
    let timeout = Duration::from_millis(100);
    client.set_timeout(Some(timeout)).expect("a timeout");
    assert_eq!(client.timeout(), Some(timeout));
    let result = client.round_trip(b"anyone?").await;
    assert!(matches!(result, Err(Error::Timeout(TimeoutError::Reply { timeout: t })) if t == timeout), "{result:?}");
    let mut sent = [0; 8];
    far.read_exact(&mut sent).await.expect("the message arrived");
    assert_eq!(&sent, b"anyone?\n");
}

/// `receive` is cancel safe: given up half way (here by the caller's own
/// timeout), the next call resumes the same reply, pieces included.
#[tokio::test]
async fn receive_resumes_after_being_cancelled() {
    let (near, mut far) = tokio::io::duplex(1024);
    let mut client = AsyncEchoClient::new(near, Framing::chunk()).expect("valid framing");
    client.send(b"hello").await.expect("sent");
    far.write_all(b"[A] hel").await.expect("the first piece");
    let cancelled = tokio::time::timeout(Duration::from_millis(50), client.receive()).await;
    assert!(cancelled.is_err(), "the reply is not whole yet: {cancelled:?}");
    far.write_all(b"[B] lo").await.expect("the second piece");
    let reply = client.receive().await.expect("the whole reply");
    let pieces: Vec<(&str, usize)> = reply.pieces().iter().map(|p| (p.stamp.as_str(), p.len)).collect();
    assert_eq!(pieces, [("A", 3), ("B", 2)]);
    assert_eq!(reply.message(), b"hello");
}

/// The server closing before the reply is whole, and a reply to no message.
#[tokio::test]
async fn early_close_and_unasked_replies_are_typed_errors() {
    let (near, mut far) = tokio::io::duplex(1024);
    let mut client = AsyncEchoClient::new(near, Framing::line()).expect("valid framing");
    client.send(b"hi").await.expect("sent");
    far.write_all(b"[T] h").await.expect("half a reply");
    drop(far);
    assert!(matches!(client.receive().await, Err(Error::Protocol(ProtocolError::UnexpectedEof))));

    let (near, mut far) = tokio::io::duplex(1024);
    let mut client = AsyncEchoClient::new(near, Framing::line()).expect("valid framing");
    far.write_all(b"[T] unasked\n").await.expect("a reply");
    assert!(matches!(client.receive().await, Err(Error::Protocol(ProtocolError::MalformedReply(_)))));
}
