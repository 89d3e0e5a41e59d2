//! Clock offsets over TCP on port 0, against a server whose clock is
//! injected with a known offset.

mod common;

use std::time::{Duration, SystemTime};

use common::{connect, next_closed_cleanly, start};
use stamp_echo::stamp::{Rfc3339, StampKind, UnixTime};
use stamp_echo::{EchoClient, EchoServer, Framing, Limits};

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
        let (_server, addr, events) = start(server, Limits::default());
        let mut client = EchoClient::new(connect(addr), framing).expect("client");
        // Small messages, and one the chunk server answers in several pieces.
        for message in [b"probe".to_vec(), vec![b'x'; 5000]] {
            let reply = client.round_trip(&message).expect("echo");
            let offset = reply.clock_offset(kind).expect("a sub-second stamp");
            let truth = i64::try_from(ahead.as_nanos()).expect("small");
            assert!(offset.contains(truth), "{framing}: {offset} does not hold {truth} ns");
        }
        drop(client);
        next_closed_cleanly(&events);
    }
}
