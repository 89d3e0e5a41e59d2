//! `runner::TracingEvents` (feature `tracing`): a runner's events reach the
//! program's own `tracing` subscriber, on both runtimes, with every
//! peer-controlled field escaped.

#[macro_use]
mod common;

use std::fmt;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Mutex, Once, PoisonError};
use std::time::Duration;

use common::{Runtime, connect, serve_on};
use stamp_echo::runner::TracingEvents;
use stamp_echo::{EchoServer, Framing, Limits};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One event as a subscriber sees it: level, target, and its fields as text.
#[derive(Clone, Debug)]
struct Seen {
    level: Level,
    target: String,
    fields: Vec<(String, String)>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Every event of the process, in order.
static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

/// The smallest subscriber: records events, ignores spans.
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

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        let meta = event.metadata();
        let seen = Seen { level: *meta.level(), target: meta.target().to_owned(), fields: fields.0 };
        SEEN.lock().unwrap_or_else(PoisonError::into_inner).push(seen);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// The events whose `peer` field is `peer`.
fn seen_from(peer: &str) -> Vec<Seen> {
    let seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    seen.iter().filter(|s| s.field("peer") == Some(peer)).cloned().collect()
}

fn events_reach_the_programs_subscriber_escaped(rt: Runtime) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| tracing::subscriber::set_global_default(Capture).expect("the only subscriber"));
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
    drop(stream);
    served.shutdown(Duration::from_secs(5));
}

on_both_runtimes!(events_reach_the_programs_subscriber_escaped);
