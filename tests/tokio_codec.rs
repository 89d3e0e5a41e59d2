//! The `tokio_util` codecs in `Framed`, over TCP and `tokio::io::duplex`,
//! against the blocking client and server. Their behaviour under arbitrary
//! splits is checked in tests/properties.rs.

mod common;

use futures_util::{SinkExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder, Framed};

use common::{FIXED_CTIME, SAFETY_TIMEOUT, fixed_reply, fixed_server, sent_ending};
use stamp_echo::testing::LocalServer;
use stamp_echo::tokio::{ClientCodec, ServerCodec};
use stamp_echo::{EchoServer, Error, Framing};
use stamp_echo::{MessageError, ProtocolError};

const FRAMINGS: [Framing; 3] = [
    Framing::Chunk { buffer_size: 1024 },
    Framing::Line { max_line: 1024 },
    Framing::LengthPrefixed { max_frame: 1024 },
];

/// Serves one connection of `server` with `ServerCodec`, the loop its docs show.
async fn serve<S>(stream: S, server: &EchoServer) -> Result<stamp_echo::Summary, Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut framed = Framed::new(stream, ServerCodec::new(server));
    while let Some(replies) = framed.try_next().await? {
        framed.send(replies).await?;
    }
    Ok(framed.codec().summary())
}

/// The blocking `EchoClient`, pipelining over TCP to a tokio listener whose
/// connections are served through `Framed<TcpStream, ServerCodec>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_codec_serves_the_blocking_client_over_tcp() {
    for framing in FRAMINGS {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let serving = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            serve(stream, &fixed_server(framing)).await
        });
        let messages: Vec<Vec<u8>> = (0..100).map(|i| format!("message {i} [x]").into_bytes()).collect();
        let expected = messages.clone();
        let client = tokio::task::spawn_blocking(move || {
            let mut client = stamp_echo::EchoClient::new(common::connect(addr), framing).expect("valid framing");
            for message in &messages {
                client.send(message).expect("sent");
            }
            let replies: Vec<Vec<u8>> =
                messages.iter().map(|_| client.receive().expect("a reply").message().to_vec()).collect();
            replies
        });
        let replies = client.await.expect("the client thread");
        assert_eq!(replies, expected, "{framing}");
        let summary = serving.await.expect("the server task").unwrap_or_else(|e| panic!("{framing}: {e}"));
        if !matches!(framing, Framing::Chunk { .. }) {
            assert_eq!(summary.messages, expected.len() as u64, "{framing}");
        }
    }
}

/// `Framed<TcpStream, ClientCodec>` against the blocking thread runner,
/// pipelined.
#[tokio::test]
async fn client_codec_pipelines_against_the_thread_runner() {
    for framing in FRAMINGS {
        let server = LocalServer::start(fixed_server(framing)).expect("a local server");
        let stream = tokio::net::TcpStream::connect(server.addr()).await.expect("connect");
        let mut framed = Framed::new(stream, ClientCodec::new(framing).expect("valid framing"));
        let messages: Vec<Vec<u8>> = (0..100).map(|i| format!("[{i}] of 100").into_bytes()).collect();
        for message in &messages {
            framed.feed(message.as_slice()).await.expect("queued");
        }
        framed.flush().await.expect("sent");
        assert_eq!(framed.codec().in_flight(), messages.len());
        for message in &messages {
            let next = tokio::time::timeout(SAFETY_TIMEOUT, framed.try_next()).await.expect("in time");
            let reply = next.unwrap_or_else(|e| panic!("{framing}: {e}")).expect("a reply");
            assert_eq!((reply.stamp(), reply.message()), (FIXED_CTIME, message.as_slice()), "{framing}");
        }
        drop(framed);
        server.shutdown(SAFETY_TIMEOUT);
    }
}

/// Over `tokio::io::duplex`: a line over the limit ends the connection with
/// its error, after the replies to the lines before it have gone out, as
/// `EchoServer::serve` does; and a last line without a newline is answered at
/// the end of input.
#[tokio::test]
async fn server_codec_limits_and_end_of_input() {
    let framing = Framing::Line { max_line: 8 };
    let (mut client, stream) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn(async move { serve(stream, &fixed_server(framing)).await });
    client.write_all(b"short\nmuch too long for it\n").await.expect("sent");
    let mut replies = Vec::new();
    client.read_to_end(&mut replies).await.expect("replies, then the end");
    // Replies stream: the bad line was answered up to the limit (8 bytes, no ending).
    let expected = [
        fixed_reply(framing, b"short", sent_ending(framing)),
        fixed_reply(framing, b"much too", stamp_echo::framing::LineEnding::None),
    ];
    assert_eq!(replies, expected.concat());
    let result = serving.await.expect("the server task");
    assert!(matches!(result, Err(Error::Protocol(ProtocolError::LineTooLong { .. }))), "{result:?}");

    let (mut client, stream) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn(async move { serve(stream, &fixed_server(framing)).await });
    client.write_all(b"one\ntwo").await.expect("sent");
    client.shutdown().await.expect("end of input");
    let mut replies = Vec::new();
    client.read_to_end(&mut replies).await.expect("replies, then the end");
    let mut expected = fixed_reply(framing, b"one", sent_ending(framing));
    expected.extend(fixed_reply(framing, b"two", stamp_echo::framing::LineEnding::None));
    assert_eq!(String::from_utf8_lossy(&replies), String::from_utf8_lossy(&expected));
    assert_eq!(serving.await.expect("the server task").expect("a clean end").messages, 2);
}

#[test]
fn client_codec_errors_are_typed_and_final() {
    let mut codec = ClientCodec::new(Framing::line()).expect("valid framing");
    let mut wire = BytesMut::new();
    assert!(matches!(codec.encode(&b"two\nlines"[..], &mut wire), Err(Error::Message(MessageError::Newline))));
    assert!(wire.is_empty(), "nothing is written for a refused message");
    assert!(matches!(ClientCodec::new(Framing::Chunk { buffer_size: 0 }), Err(Error::Config(_))));

    // The end of input with a reply awaited.
    codec.encode(&b"hi"[..], &mut wire).expect("sent");
    assert_eq!(&wire[..], b"hi\n");
    let mut input = BytesMut::from(&b"[T] h"[..]);
    assert!(matches!(codec.decode(&mut input), Ok(None)));
    assert!(input.is_empty(), "the checker keeps what it needs");
    assert!(matches!(codec.decode_eof(&mut input), Err(Error::Protocol(ProtocolError::UnexpectedEof))));

    // A wrong echo, and every call after it.
    let mut codec = ClientCodec::new(Framing::line()).expect("valid framing");
    codec.encode(&b"hi"[..], &mut wire).expect("sent");
    let mut input = BytesMut::from(&b"[T] ho\n"[..]);
    assert!(matches!(codec.decode(&mut input), Err(Error::Protocol(ProtocolError::EchoMismatch { offset: 1 }))));
    assert!(matches!(
        codec.decode(&mut BytesMut::new()),
        Err(Error::Protocol(ProtocolError::EchoMismatch { offset: 1 }))
    ));
}
