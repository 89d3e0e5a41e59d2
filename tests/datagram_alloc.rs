//! The UDP server allocates nothing per datagram once it runs: serving 510
//! datagrams, answering 510 with an error datagram (their reply would not fit
//! in one) and dropping 510 more (shaped like replies) makes exactly as many
//! allocations as doing each 10 times. Counted with
//! `allocation-counter`, which counts the allocations of this thread only, so
//! the server runs on the test's thread and the client on another.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use allocation_counter::measure;
use stamp_echo::datagram::{DatagramClient, DatagramServer, MAX_DATAGRAM, RateLimit};
use stamp_echo::stamp::Rfc3339;
use stamp_echo::{Error, ProtocolError};

/// The allocations of one `serve` call that answers `datagrams` datagrams,
/// answers as many with an error datagram and drops as many. (`serve`, not
/// `start`: the counter sees this thread only.)
#[allow(deprecated, reason = "a serve call on this thread is stopped by a Stopper")]
fn allocations_serving(datagrams: u64) -> u64 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(Duration::from_secs(10))).expect("safety net");
    let server = DatagramServer::new(socket, Arc::new(Rfc3339))
        .expect("server")
        .rate_limit(RateLimit::per_second(RateLimit::MAX_REPLIES));
    let addr = server.local_addr().expect("address");
    let stopper = server.stopper();
    let client = std::thread::spawn(move || {
        let mut client = DatagramClient::connect(addr).expect("client");
        let message = vec![b'x'; 1000];
        let largest = vec![b'y'; MAX_DATAGRAM];
        for _ in 0..datagrams {
            // The largest reply the server builds, then replaces.
            let error = client.round_trip(&largest);
            assert!(matches!(error, Err(Error::Protocol(ProtocolError::ServerError(_)))), "{error:?}");
            // Dropped, before the message is answered.
            client.socket().send(b"[T] like a reply").expect("send");
            client.round_trip(&message).expect("echo");
        }
        stopper.stop();
    });
    let mut served = None;
    let info = measure(|| served = Some(server.serve()));
    client.join().expect("client thread");
    let totals = served.expect("serve ran").expect("served");
    assert_eq!((totals.messages, totals.errors, totals.dropped.looks_like_reply), (datagrams, datagrams, datagrams));
    info.count_total
}

#[test]
fn no_allocation_per_datagram_in_steady_state() {
    let few = allocations_serving(10);
    assert!(few > 0, "the counter sees the server's buffers");
    assert_eq!(allocations_serving(510), few, "500 more datagrams, no more allocations");
}
