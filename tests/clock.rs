//! Clock offsets over TCP on port 0, against a server whose clock is
//! injected with a known offset.

use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, SystemTime};

use stamp_echo::stamp::{Rfc3339, StampKind, UnixTime};
use stamp_echo::{EchoClient, EchoServer, Framing};

#[test]
fn clock_offset_over_tcp_is_within_the_bound_in_every_framing() {
    let ahead = Duration::from_millis(2750) + Duration::from_nanos(321);
    let cases = [
        (Framing::chunk(), StampKind::Rfc3339),
        (Framing::line(), StampKind::Unix),
        (Framing::length_prefixed(), StampKind::Rfc3339),
    ];
    for (framing, kind) in cases {
        let builder = EchoServer::builder().framing(framing).clock(move || SystemTime::now() + ahead);
        let server = match kind {
            StampKind::Unix => builder.stamp(UnixTime),
            _ => builder.stamp(Rfc3339),
        }
        .build()
        .expect("server");
        // Bound before the server thread starts: connecting needs no wait.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let serving = thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            server.serve(&stream)
        });
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("safety net");
        let mut client = EchoClient::new(stream, framing).expect("client");
        // Small messages, and one the chunk server answers in several pieces.
        for message in [b"probe".to_vec(), vec![b'x'; 5000]] {
            let reply = client.round_trip(&message).expect("echo");
            let offset = reply.clock_offset(kind).expect("a sub-second stamp");
            let truth = i64::try_from(ahead.as_nanos()).expect("small");
            assert!(offset.contains(truth), "{framing}: {offset} does not hold {truth} ns");
        }
        drop(client);
        serving.join().expect("server thread").expect("served");
    }
}
