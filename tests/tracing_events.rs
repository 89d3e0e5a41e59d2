//! `runner::TracingEvents` (feature `tracing`): a runner's events reach the
//! program's own `tracing` subscriber, on both runtimes, with every
//! peer-controlled field escaped.

#[macro_use]
mod common;

use std::cell::RefCell;
use std::fmt;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::net::UdpSocket;
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};
use std::time::Duration;

use common::{Runtime, connect, serve_on, serve_proxied_on};
use stamp_echo::datagram::DatagramServer;
use stamp_echo::runner::{ProxyProtocol, TracingEvents, TrustedProxy};
use stamp_echo::stamp::Ctime;
use stamp_echo::{EchoServer, Framing, Limits};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_core::span::Current;

/// One event as a subscriber sees it: level, target, its fields as text,
/// and the span it happened in (the innermost entered on its thread).
#[derive(Clone, Debug)]
struct Seen {
    level: Level,
    target: String,
    fields: Vec<(String, String)>,
    span: Option<SpanSeen>,
}

/// A span as a subscriber sees it: its name and fields as text.
#[derive(Clone, Debug)]
struct SpanSeen {
    name: &'static str,
    fields: Vec<(String, String)>,
    metadata: &'static Metadata<'static>,
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        field(&self.fields, name)
    }
}

impl SpanSeen {
    fn field(&self, name: &str) -> Option<&str> {
        field(&self.fields, name)
    }
}

/// Every event of the process, in order.
static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());
/// Every span of the process: span `n` has id `n + 1`.
static SPANS: Mutex<Vec<SpanSeen>> = Mutex::new(Vec::new());

thread_local! {
    /// The spans entered on this thread, innermost last.
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// The smallest subscriber: records events with the span each is in.
struct Capture;

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

fn spans() -> MutexGuard<'static, Vec<SpanSeen>> {
    SPANS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn index(id: &Id) -> usize {
    usize::try_from(id.into_u64() - 1).expect("an index")
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let mut fields = Fields(Vec::new());
        attributes.record(&mut fields);
        let mut spans = spans();
        spans.push(SpanSeen { name: attributes.metadata().name(), fields: fields.0, metadata: attributes.metadata() });
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, id: &Id, values: &Record<'_>) {
        let mut fields = Fields(Vec::new());
        values.record(&mut fields);
        spans()[index(id)].fields.extend(fields.0);
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        let meta = event.metadata();
        let span = ENTERED.with(|entered| entered.borrow().last().map(|&id| spans()[index(&Id::from_u64(id))].clone()));
        let seen = Seen { level: *meta.level(), target: meta.target().to_owned(), fields: fields.0, span };
        SEEN.lock().unwrap_or_else(PoisonError::into_inner).push(seen);
    }
    fn current_span(&self) -> Current {
        let current = ENTERED.with(|entered| entered.borrow().last().copied());
        match current {
            Some(id) => Current::new(Id::from_u64(id), spans()[index(&Id::from_u64(id))].metadata),
            None => Current::none(),
        }
    }
    fn enter(&self, id: &Id) {
        ENTERED.with(|entered| entered.borrow_mut().push(id.into_u64()));
    }
    fn exit(&self, id: &Id) {
        ENTERED.with(|entered| {
            let mut entered = entered.borrow_mut();
            if let Some(at) = entered.iter().rposition(|&e| e == id.into_u64()) {
                entered.remove(at);
            }
        });
    }
}

/// Installs [`Capture`] as the process's subscriber, once.
fn capture() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| tracing::subscriber::set_global_default(Capture).expect("the only subscriber"));
}

/// The events whose `peer` field is `peer`.
fn seen_from(peer: &str) -> Vec<Seen> {
    let seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    seen.iter().filter(|s| s.field("peer") == Some(peer)).cloned().collect()
}

fn events_reach_the_programs_subscriber_escaped(rt: Runtime) {
    capture();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = EchoServer::builder().framing(Framing::line()).build().expect("server");
    let served = serve_on(rt, listener, server, Limits::default(), TracingEvents::new()).expect("serving");

    let mut stream = connect(addr);
    let peer = stream.local_addr().expect("address").to_string();
    stream.write_all(b"hi\x1b[2J\n").expect("send");
    let mut reply = [0; 64];
    let n = stream.read(&mut reply).expect("the reply");
    assert!(reply[..n].ends_with(b"] hi\x1b[2J\n"), "echoed byte for byte");
    // The message event comes before its reply: it is in by now.
    let seen = seen_from(&peer);
    let connected = seen.iter().find(|s| s.field("message") == Some(&format!("...connected from: {peer}")));
    let connected = connected.unwrap_or_else(|| panic!("a connected event: {seen:?}"));
    assert_eq!((connected.level, connected.target.as_str()), (Level::INFO, "stamp_echo::runner"));
    let message = seen.iter().find(|s| s.field("text").is_some()).unwrap_or_else(|| panic!("{seen:?}"));
    assert_eq!(message.field("text"), Some(r"hi\x1b[2J"), "escaped: {message:?}");
    assert_eq!(message.field("message"), Some(r"date= hi\x1b[2J"));
    assert_eq!(message.field("bytes"), Some("6"), "hi, ESC [ 2 J");
    // Both inside the connection's span, which names the peer and its source.
    for event in [connected, message] {
        let span = event.span.as_ref().unwrap_or_else(|| panic!("in a span: {event:?}"));
        assert_eq!(span.name, "connection", "{event:?}");
        assert_eq!((span.field("peer"), span.field("source")), (Some(peer.as_str()), Some("127.0.0.1")), "{span:?}");
    }
    drop(stream);
    served.shutdown(Duration::from_secs(5));
}

fn behind_a_trusted_proxy_the_connection_span_names_the_client(rt: Runtime) {
    capture();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = EchoServer::builder().framing(Framing::line()).build().expect("server");
    let proxy = ProxyProtocol::new([TrustedProxy::addr(addr.ip())]);
    let served =
        serve_proxied_on(rt, listener, server, Limits::default(), Some(proxy), TracingEvents::new()).expect("serving");
    let mut stream = connect(addr);
    let proxy_peer = stream.local_addr().expect("address");
    // The client's port is the proxy's own: a client no other test names.
    let client = format!("192.0.2.7:{}", proxy_peer.port());
    let header = format!("PROXY TCP4 192.0.2.7 127.0.0.1 {} 8080\r\nvia a proxy\n", proxy_peer.port());
    stream.write_all(header.as_bytes()).expect("send");
    let mut reply = [0; 64];
    let n = stream.read(&mut reply).expect("the reply");
    assert!(reply[..n].ends_with(b"] via a proxy\n"), "echoed");
    let seen = seen_from(&client);
    let message = seen.iter().find(|s| s.field("text") == Some("via a proxy")).unwrap_or_else(|| panic!("{seen:?}"));
    let span = message.span.as_ref().unwrap_or_else(|| panic!("in a span: {message:?}"));
    assert_eq!(span.name, "connection");
    let proxy_peer = proxy_peer.to_string();
    assert_eq!(
        (span.field("peer"), span.field("client")),
        (Some(proxy_peer.as_str()), Some(client.as_str())),
        "{span:?}"
    );
    drop(stream);
    served.shutdown(Duration::from_secs(5));
}

on_both_runtimes!(
    events_reach_the_programs_subscriber_escaped,
    behind_a_trusted_proxy_the_connection_span_names_the_client
);

#[test]
fn a_udp_servers_events_are_inside_its_span() {
    capture();
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = socket.local_addr().expect("address");
    let server = DatagramServer::new(socket, Arc::new(Ctime::utc())).expect("server");
    let handle = server.start(TracingEvents::new()).expect("started");

    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    client.set_read_timeout(Some(common::SAFETY_TIMEOUT)).expect("a safety timeout");
    client.send_to(b"over udp", local).expect("send");
    let mut reply = [0; 128];
    let (n, _) = client.recv_from(&mut reply).expect("the reply");
    assert!(reply[..n].ends_with(b"] over udp"), "echoed");
    // The message event comes before its reply.
    let seen = seen_from(&client.local_addr().expect("address").to_string());
    let message = seen.iter().find(|s| s.field("text") == Some("over udp")).unwrap_or_else(|| panic!("{seen:?}"));
    let span = message.span.as_ref().unwrap_or_else(|| panic!("in a span: {message:?}"));
    assert_eq!((span.name, span.field("local")), ("udp", Some(local.to_string().as_str())), "{span:?}");
    assert_eq!(handle.shutdown(common::SAFETY_TIMEOUT).messages, 1, "one message served");
}
