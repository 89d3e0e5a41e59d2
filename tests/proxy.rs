//! The PROXY protocol in the runners, by hand: a test client plays the load
//! balancer (from 127.0.0.1, the trusted proxy) and writes v1 or v2 headers;
//! other clients connect from 127.0.0.2 and 127.0.0.3. On both runtimes.

#[macro_use]
mod common;

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use common::{
    Event, Kind, Recorder, Runtime, SAFETY_TIMEOUT, connect, connect_from, fixed_server, next_closed, read_to_close,
    round_trip, serve_proxied_on,
};
use stamp_echo::proxy::V2_SIGNATURE;
use stamp_echo::runner::{Addr, Peer, ProxyProtocol, Source, TrustedProxy};
use stamp_echo::{Error, Framing, Handle, Limits, ProxyError, TimeoutError};

const PROXY: [u8; 4] = [127, 0, 0, 1];
const STRANGER: [u8; 4] = [127, 0, 0, 2];

/// A server on 127.0.0.1:0 trusting 127.0.0.1 as its proxy.
fn start(rt: Runtime, limits: Limits, header_timeout: Duration) -> (Handle, SocketAddr, Receiver<Event>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound address");
    let proxy = ProxyProtocol::new([TrustedProxy::addr(IpAddr::from(PROXY))]).header_timeout(header_timeout);
    let (recorder, events) = Recorder::new();
    let served = serve_proxied_on(rt, listener, fixed_server(Framing::line()), limits, Some(proxy), recorder)
        .expect("start the runner");
    (served, addr, events)
}

fn start_default(rt: Runtime) -> (Handle, SocketAddr, Receiver<Event>) {
    start(rt, Limits::default(), SAFETY_TIMEOUT)
}

/// Waits for the next `Connected` event (a connection failing first fails the test).
fn next_connected(events: &Receiver<Event>) -> Peer {
    loop {
        match events.recv_timeout(SAFETY_TIMEOUT).expect("a connection within the safety timeout") {
            Event::Connected(peer) => return peer,
            Event::Closed { id, error: Some(error), .. } => panic!("connection {id} failed: {error:?}"),
            _ => continue,
        }
    }
}

/// The error of the next connection to end, as `Kind`.
fn next_error(events: &Receiver<Event>) -> Option<Kind> {
    next_closed(events).2
}

fn kind(error: impl Into<Error>) -> Kind {
    Kind::from(&error.into())
}

/// A version 2 PROXY header over TCP/IPv4 or IPv6, with a few TLVs.
fn v2_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut block = Vec::new();
    let family = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            block.extend_from_slice(&s.octets());
            block.extend_from_slice(&d.octets());
            0x11
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            block.extend_from_slice(&s.octets());
            block.extend_from_slice(&d.octets());
            0x21
        }
        _ => panic!("one family"),
    };
    block.extend_from_slice(&source.port().to_be_bytes());
    block.extend_from_slice(&destination.port().to_be_bytes());
    block.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2', 0x04, 0x00, 0x00]);
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[0x21, family]);
    out.extend_from_slice(&u16::try_from(block.len()).expect("short").to_be_bytes());
    out.extend_from_slice(&block);
    out
}

fn v1_and_v2_headers_make_the_client_the_peer(rt: Runtime) {
    let framing = Framing::line();
    let (served, addr, events) = start_default(rt);
    let cases: [(Vec<u8>, SocketAddr); 3] = [
        (b"PROXY TCP4 192.0.2.7 127.0.0.1 56324 8080\r\n".to_vec(), "192.0.2.7:56324".parse().expect("addr")),
        (v2_header("198.51.100.9:4000".parse().expect("addr"), addr), "198.51.100.9:4000".parse().expect("addr")),
        (
            v2_header("[2001:db8::7]:443".parse().expect("addr"), "[2001:db8::1]:80".parse().expect("addr")),
            "[2001:db8::7]:443".parse().expect("addr"),
        ),
    ];
    for (header, client) in cases {
        let mut stream = connect_from(PROXY, addr);
        stream.write_all(&header).expect("send the header");
        round_trip(&mut stream, framing, b"who am I");
        let peer = next_connected(&events);
        assert_eq!((peer.addr, peer.source), (Addr::Tcp(client), Source::from(client.ip())));
        // The messages are the client's, under its id.
        assert_eq!(common::next_message(&events), (peer.id, b"who am I".to_vec()));
        drop(stream);
        let (id, summary, error) = next_closed(&events);
        assert_eq!((id, summary.messages, error), (peer.id, 1, None));
    }
    let totals = served.shutdown(SAFETY_TIMEOUT);
    assert_eq!((totals.connections, totals.messages, totals.errors), (3, 3, 0), "{totals}");
}

fn the_client_bytes_after_the_header_are_echoed_once_however_they_arrive(rt: Runtime) {
    let (served, addr, events) = start_default(rt);
    let header = b"PROXY TCP4 192.0.2.7 127.0.0.1 56324 8080\r\n";
    let mut input = header.to_vec();
    input.extend_from_slice(b"one\ntwo\nthree\n");
    let mut expected = Vec::new();
    for line in [&b"one"[..], b"two", b"three"] {
        expected.extend(common::fixed_reply(Framing::line(), line, stamp_echo::framing::LineEnding::Lf));
    }
    // Header and lines in one write, then byte by byte.
    for bytewise in [false, true] {
        let mut stream = connect_from(PROXY, addr);
        if bytewise {
            stream.set_nodelay(true).expect("no delay");
            for byte in &input {
                stream.write_all(&[*byte]).expect("send");
            }
        } else {
            stream.write_all(&input).expect("send");
        }
        stream.shutdown(std::net::Shutdown::Write).expect("half-close");
        assert_eq!(read_to_close(&mut stream), expected, "bytewise: {bytewise}");
        assert_eq!(next_connected(&events).addr.to_string(), "192.0.2.7:56324");
        let (_, summary, error) = next_closed(&events);
        assert_eq!((summary.messages, summary.bytes_in, error), (3, 14, None), "bytewise: {bytewise}");
    }
    served.shutdown(SAFETY_TIMEOUT);
}

fn local_and_unknown_headers_are_served_as_the_proxy(rt: Runtime) {
    let (served, addr, events) = start_default(rt);
    let mut local = V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    for header in [local, b"PROXY UNKNOWN\r\n".to_vec()] {
        let mut stream = connect_from(PROXY, addr);
        let here = stream.local_addr().expect("local address");
        stream.write_all(&header).expect("send");
        round_trip(&mut stream, Framing::line(), b"health check");
        let peer = next_connected(&events);
        assert_eq!((peer.addr, peer.source), (Addr::Tcp(here), Source::from(here.ip())));
    }
    served.shutdown(SAFETY_TIMEOUT);
}

fn a_proxy_closing_without_a_byte_ends_cleanly_unannounced(rt: Runtime) {
    let (served, addr, events) = start_default(rt);
    drop(connect_from(PROXY, addr));
    let (_, summary, error) = next_closed(&events);
    assert_eq!((summary.bytes_in, error), (0, None));
    let totals = served.shutdown(SAFETY_TIMEOUT);
    assert_eq!((totals.connections, totals.errors), (1, 0));
    assert!(!events.try_iter().any(|e| matches!(e, Event::Connected(_))), "no client was announced");
}

fn a_header_from_an_untrusted_peer_is_refused_and_its_plain_clients_served(rt: Runtime) {
    let framing = Framing::line();
    let (served, addr, events) = start_default(rt);
    // A plain client from elsewhere: served as itself.
    let mut plain = connect_from(STRANGER, addr);
    round_trip(&mut plain, framing, b"a PROXY is just a word here");
    let peer = next_connected(&events);
    assert_eq!(peer.source, Source::V4(STRANGER.into()));
    // A header from it, v1 or v2: closed, unanswered, never honoured.
    for header in [
        b"PROXY TCP4 192.0.2.7 127.0.0.1 56324 8080\r\nhi\n".to_vec(),
        v2_header("192.0.2.7:1".parse().expect("addr"), addr),
    ] {
        let mut forged = connect_from(STRANGER, addr);
        forged.write_all(&header).expect("send");
        assert_eq!(read_to_close(&mut forged), b"");
        let peer = next_connected(&events);
        assert_eq!(peer.addr.tcp().map(|a| a.ip()), Some(IpAddr::from(STRANGER)));
        assert_eq!(next_error(&events), Some(kind(ProxyError::Untrusted)));
    }
    round_trip(&mut plain, framing, b"still served");
    drop(plain);
    served.shutdown(SAFETY_TIMEOUT);
}

fn a_header_not_whole_within_the_deadline_closes_that_connection_only(rt: Runtime) {
    let framing = Framing::line();
    let timeout = Duration::from_millis(200);
    let (served, addr, events) = start(rt, Limits::default(), timeout);
    let mut client = connect_from(PROXY, addr);
    client.write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 1 2\r\n").expect("send");
    round_trip(&mut client, framing, b"before");
    next_connected(&events);
    // A proxy that sends half a header, or nothing, and waits.
    let mut half = connect_from(PROXY, addr);
    half.write_all(b"PROXY TCP4 192.0").expect("send");
    let silent = connect_from(PROXY, addr);
    for _ in 0..2 {
        assert_eq!(next_error(&events), Some(kind(TimeoutError::ProxyHeader { timeout })));
    }
    assert_eq!(read_to_close(&mut half), b"");
    drop(silent);
    round_trip(&mut client, framing, b"after");
    drop(client);
    served.shutdown(SAFETY_TIMEOUT);
}

fn a_malformed_header_is_an_error_for_that_connection_only(rt: Runtime) {
    let framing = Framing::line();
    let (served, addr, events) = start_default(rt);
    let mut client = connect_from(PROXY, addr);
    client.write_all(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n").expect("send");
    round_trip(&mut client, framing, b"before");
    next_connected(&events);
    let mut oversized = V2_SIGNATURE.to_vec();
    oversized.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    let cases: [(Vec<u8>, ProxyError); 4] = [
        (b"PROXY TCP9 192.0.2.7 127.0.0.1 1 2\r\nhi\n".to_vec(), ProxyError::V1Protocol),
        (b"hi,server\n".to_vec(), ProxyError::NoSignature),
        (oversized, ProxyError::TooLarge { size: 16 + 0xffff, max: stamp_echo::proxy::MAX_V2_HEADER }),
        (b"PROXY TCP4 192.0.2.7 127.0.0.1 1 2".to_vec(), ProxyError::Truncated { received: 34 }),
    ];
    for (input, expected) in cases {
        let mut bad = connect_from(PROXY, addr);
        bad.write_all(&input).expect("send");
        // The server may have closed already: it refuses at the first bad byte.
        let _ = bad.shutdown(std::net::Shutdown::Write);
        assert_eq!(read_to_close(&mut bad), b"", "{expected}");
        assert_eq!(next_error(&events), Some(kind(expected)));
    }
    round_trip(&mut client, framing, b"after");
    drop(client);
    let totals = served.shutdown(SAFETY_TIMEOUT);
    assert_eq!((totals.connections, totals.errors), (5, 4), "{totals}");
}

fn fairness_counts_the_clients_behind_the_proxy(rt: Runtime) {
    let framing = Framing::line();
    // A grace far longer than the test: only fairness can make room.
    let limits = Limits::default().max_connections(3).eviction_grace(Some(SAFETY_TIMEOUT * 2));
    let (served, addr, events) = start(rt, limits, SAFETY_TIMEOUT);
    let through = |client: &str| {
        let mut stream = connect_from(PROXY, addr);
        stream.write_all(format!("PROXY TCP4 {client} 127.0.0.1 1000 8080\r\n").as_bytes()).expect("send");
        round_trip(&mut stream, framing, b"hello");
        stream
    };
    // One client behind the proxy takes every slot, each connection active.
    let mut hoarded: Vec<(TcpStream, Peer)> = (0..3)
        .map(|_| {
            let stream = through("192.0.2.66");
            (stream, next_connected(&events))
        })
        .collect();
    // Another client behind the same proxy gets in, at the hoarder's expense.
    let mut other = through("192.0.2.77");
    let (mut peer, mut evicted) = (None, None);
    while peer.is_none() || evicted.is_none() {
        match events.recv_timeout(SAFETY_TIMEOUT).expect("an event") {
            Event::Connected(p) => peer = Some(p),
            Event::Closed { id, error, .. } => evicted = Some((id, error)),
            _ => {}
        }
    }
    assert_eq!(peer.map(|p| p.source), Some(Source::V4([192, 0, 2, 77].into())));
    assert_eq!(evicted, Some((hoarded[0].1.id, Some(Kind::Evicted))));
    assert_eq!(read_to_close(&mut hoarded[0].0), b"");
    round_trip(&mut other, framing, b"served");
    for (stream, _) in hoarded.iter_mut().skip(1) {
        round_trip(stream, framing, b"still here");
    }
    drop((hoarded, other));
    let totals = served.shutdown(SAFETY_TIMEOUT);
    assert_eq!((totals.evicted, totals.errors), (1, 0), "{totals}");
}

fn a_client_refused_once_known_is_closed_with_the_refusal(rt: Runtime) {
    let framing = Framing::line();
    let limits = Limits::default().max_per_source(Some(1)).eviction_grace(Some(SAFETY_TIMEOUT * 2));
    let (served, addr, events) = start(rt, limits, SAFETY_TIMEOUT);
    let mut first = connect_from(PROXY, addr);
    first.write_all(b"PROXY TCP4 192.0.2.66 127.0.0.1 1000 8080\r\n").expect("send");
    round_trip(&mut first, framing, b"mine");
    next_connected(&events);
    let mut second = connect_from(PROXY, addr);
    second.write_all(b"PROXY TCP4 192.0.2.66 127.0.0.1 1001 8080\r\nhi\n").expect("send");
    assert_eq!(read_to_close(&mut second), b"");
    let (_, _, error) = next_closed(&events);
    assert!(matches!(error, Some(Kind::Other(ref text)) if text.contains("max_per_source")), "{error:?}");
    round_trip(&mut first, framing, b"still mine");
    drop(first);
    let totals = served.shutdown(SAFETY_TIMEOUT);
    assert_eq!((totals.refused, totals.errors), (1, 0), "{totals}");
}

/// Without the PROXY protocol, a header is a message like any other.
fn off_by_default_a_header_is_echoed(rt: Runtime) {
    let framing = Framing::line();
    let (served, addr, events) = common::start_on(rt, fixed_server(framing), Limits::default());
    let mut stream = connect(addr);
    round_trip(&mut stream, framing, b"PROXY TCP4 192.0.2.7 127.0.0.1 1 2");
    assert_eq!(next_connected(&events).source, Source::V4(PROXY.into()));
    drop(stream);
    served.shutdown(SAFETY_TIMEOUT);
}

on_both_runtimes!(
    v1_and_v2_headers_make_the_client_the_peer,
    the_client_bytes_after_the_header_are_echoed_once_however_they_arrive,
    local_and_unknown_headers_are_served_as_the_proxy,
    a_proxy_closing_without_a_byte_ends_cleanly_unannounced,
    a_header_from_an_untrusted_peer_is_refused_and_its_plain_clients_served,
    a_header_not_whole_within_the_deadline_closes_that_connection_only,
    a_malformed_header_is_an_error_for_that_connection_only,
    fairness_counts_the_clients_behind_the_proxy,
    a_client_refused_once_known_is_closed_with_the_refusal,
    off_by_default_a_header_is_echoed,
);
