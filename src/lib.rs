//! # stamp-echo
//!
//! The timestamp echo of a classic Python socket tutorial, done right: a
//! server answers every message with `[STAMP] MESSAGE`, over any
//! `Read + Write` stream ([`std::io::Read`], [`std::io::Write`]): TCP, a Unix
//! socket, an in-memory buffer.
//!
//! The crate is layered like the protocols it learns from:
//!
//! - [`protocol`]: the I/O-free core. [`Responder`] takes the bytes of each
//!   read and appends the stamped replies to a buffer; it never blocks, never
//!   allocates per message, and any transport can drive it.
//! - [`reply`]: the client's I/O-free core. [`ReplyChecker`] frames the
//!   messages you send and checks the reply stream against them, in linear
//!   time, whatever the messages hold.
//! - [`framing`]: what a message is on a stream ([`Framing::Chunk`], the
//!   original's; [`Framing::Line`]; [`Framing::LengthPrefixed`]), each with
//!   an explicit limit.
//! - [`stamp`]: the text in the brackets ([`stamp::Ctime`], like Python's
//!   `time.ctime()`, in local time through the `time` crate, and others) and
//!   the [`stamp::Clock`] it reads.
//! - [`EchoServer`] and [`EchoClient`]: thin blocking drivers over a stream.
//! - [`runner`]: many connections at once over a listener you bring, with
//!   [`Limits`] and a graceful [`Handle::shutdown`].
//! - [`datagram`]: the same protocol over UDP, a datagram per message.
//! - `probe` (feature `tools`): `ping`-like runs that measure round trips
//!   and the server's clock offset ([`Reply::clock_offset`]).
//! - `load` (feature `tools`): drive any stamp-echo server with checked,
//!   pipelined load.
//! - [`proxy`]: the PROXY protocol (v1 and v2) parser, I/O-free, for
//!   servers behind a load balancer (the runners take it with
//!   [`runner::start_proxied`] and [`runner::ProxyProtocol`]).
//! - [`escape`]: untrusted bytes (messages, socket paths, stamps) made safe
//!   for a log line or a terminal.
//! - `testing` (feature `test-util`): an in-memory stream and a one-line
//!   local server for tests, as tokio's `test-util`.
//! - [`Error`]: the one error type, whose variants group the causes:
//!   [`TimeoutError`], [`ProtocolError`] (with [`MalformedReason`]),
//!   [`MessageError`], [`ConfigError`], [`StampError`], [`ProxyError`], and I/O.
//!
//! ## Cargo features
//!
//! None is on by default: the library alone depends on `thiserror`, `time`
//! and `memchr`.
//!
//! | feature | enables | adds dependencies |
//! |---|---|---|
//! | `tokio` | `tokio`: the async server driver and runner, the async client, and `tokio_util` codecs | `tokio`, `tokio-util` |
//! | `tokio-runner` | `tokio` without the codecs: the async server driver and runner, and the async client | `tokio` |
//! | `tracing` | `runner::TracingEvents`: a server's events as `tracing` events for your own subscriber | `tracing` |
//! | `tools` | the `load` generator and the `probe` runs, as the examples use them | none |
//! | `test-util` | `testing`: an in-memory stream (`testing::Duplex`), an always-ready async adapter and local servers for tests | none |
//!
//! The examples below use `testing::Duplex`, so they need `test-util`
//! (`stamp-echo = { version = "0.2", features = ["test-util"] }` under
//! `[dev-dependencies]`).
//!
//! ## Settings
//!
//! Every setting is configured the same way: plain data with a documented
//! default and chainable setters that never fail ([`Limits`], [`Framing`],
//! [`datagram::RateLimit`], [`runner::ProxyProtocol`], the
//! [`EchoServer::builder`], [`datagram::DatagramServer::rate_limit`]),
//! checked once, where it is used: [`server::Builder::build`],
//! [`runner::start`], [`EchoClient::new`], [`datagram::DatagramServer::serve`]
//! (each type's `validate` checks it beforehand; a live client's
//! `set_timeout` checks at once, as a socket's does). Each setting's range and
//! default is declared once, as a [`Bound`] beside it
//! ([`Limits::IDLE_TIMEOUT`], [`Framing::MAX_LINE`], ...), whose check
//! names the setting, the value and the range in a [`ConfigError`]
//! (`invalid buffer_size 0: expected 1 to 1048576 bytes`), and whose
//! `Display` is that range, for a command line's help.
//!
//! ## The protocol in one paragraph
//!
//! A client sends messages; the server answers each with `[` STAMP `] `
//! MESSAGE, the message's bytes unchanged. The stamp is any text without
//! `]`, `\r` or `\n` (at most 255 bytes), so a client can always find where
//! it ends. What "a message" is on a byte stream is the [`Framing`]'s call:
//! each read (the original's way), each line, or each length-prefixed frame.
//!
//! ## A server, over an in-memory stream
//!
#![cfg_attr(feature = "test-util", doc = "```")]
#![cfg_attr(not(feature = "test-util"), doc = "```ignore")]
//! use std::time::{Duration, SystemTime};
//! use stamp_echo::{EchoServer, Framing, stamp::Ctime, testing::Duplex};
//!
//! let fixed = SystemTime::UNIX_EPOCH + Duration::from_secs(1_359_885_618);
//! let server = EchoServer::builder()
//!     .framing(Framing::line())
//!     .stamp(Ctime::utc())
//!     .clock(move || fixed)
//!     .build()?;
//! let mut stream = Duplex::new("hi,server\n你好\n".as_bytes().to_vec());
//! server.serve(&mut stream)?;
//! assert_eq!(
//!     String::from_utf8_lossy(stream.output()),
//!     "[Sun Feb  3 10:00:18 2013] hi,server\n[Sun Feb  3 10:00:18 2013] 你好\n"
//! );
//! # Ok::<(), stamp_echo::Error>(())
//! ```
//!
//! Over TCP, hand each accepted stream to [`EchoServer::serve`] as
//! `&TcpStream`, from as many threads as you like.
//!
//! ## A client
//!
//! [`EchoClient`] sends a message and returns its reply, parsed and checked
//! against what was sent. Here the "server" is a scripted in-memory stream:
//!
#![cfg_attr(feature = "test-util", doc = "```")]
#![cfg_attr(not(feature = "test-util"), doc = "```ignore")]
//! use stamp_echo::{EchoClient, Framing, testing::Duplex};
//!
//! let replies = Duplex::new(b"[Sun Feb  3 10:00:18 2013] hi,server\n".to_vec());
//! let mut client = EchoClient::new(replies, Framing::line())?;
//! let reply = client.round_trip(b"hi,server")?;
//! assert_eq!(reply.stamp(), "Sun Feb  3 10:00:18 2013");
//! assert_eq!(reply.message(), b"hi,server");
//! assert_eq!(client.get_ref().output(), b"hi,server\n"); // what was sent
//! # Ok::<(), stamp_echo::Error>(())
//! ```
//!
//! ## A custom stamp and a custom clock
//!
//! A stamp is anything implementing [`stamp::Stamp`], closures included; a
//! clock is anything implementing [`stamp::Clock`], closures included.
//!
#![cfg_attr(feature = "test-util", doc = "```")]
#![cfg_attr(not(feature = "test-util"), doc = "```ignore")]
//! use std::time::{Duration, SystemTime};
//! use stamp_echo::{EchoServer, Framing, stamp::{self, Granularity, Stamp}, testing::Duplex};
//!
//! /// Seconds since the server started, changing once a second.
//! struct Uptime(SystemTime);
//! impl Stamp for Uptime {
//!     fn write_stamp(&self, now: SystemTime, out: &mut String) {
//!         let up = now.duration_since(self.0).unwrap_or_default().as_secs();
//!         out.push_str(&format!("up {up}s"));
//!     }
//!     fn granularity(&self) -> Granularity {
//!         Granularity::Second // formatted once a second, not per message
//!     }
//! }
//!
//! let start = SystemTime::UNIX_EPOCH;
//! let server = EchoServer::builder()
//!     .framing(Framing::line())
//!     .stamp(Uptime(start))
//!     .clock(move || start + Duration::from_secs(90)) // a custom clock
//!     .build()?;
//! let mut stream = Duplex::new(b"ping\n".to_vec());
//! server.serve(&mut stream)?;
//! assert_eq!(stream.output(), b"[up 90s] ping\n");
//!
//! // The same with a closure as the stamp:
//! let server = EchoServer::builder()
//!     .stamp(stamp::from_fn(|_, out: &mut String| out.push_str("now")))
//!     .build()?;
//! let mut stream = Duplex::new(b"ping".to_vec());
//! server.serve(&mut stream)?;
//! assert_eq!(stream.output(), b"[now] ping");
//! # Ok::<(), stamp_echo::Error>(())
//! ```
//!
//! ## Without a stream
//!
//! [`Responder`] is the whole protocol with no I/O: give it the bytes of each
//! read and the time, and it appends the replies to your buffer. The blocking
//! [`EchoServer`] is a loop around it; a UDP server, an async runtime or a
//! test can drive it the same way.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod bounds;
pub mod client;
mod clock;
mod connection;
pub mod datagram;
mod error;
pub mod escape;
pub mod framing;
#[cfg(feature = "tools")]
#[cfg_attr(docsrs, doc(cfg(feature = "tools")))]
pub mod load;
#[cfg(feature = "tools")]
#[cfg_attr(docsrs, doc(cfg(feature = "tools")))]
pub mod probe;
pub mod protocol;
pub mod proxy;
pub mod reply;
pub mod runner;
pub mod server;
mod spans;
pub mod stamp;
mod stop;
#[cfg(any(test, feature = "test-util"))]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
#[cfg(feature = "tokio-runner")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-runner")))]
pub mod tokio;
mod vocabulary;
mod wire;

pub use bounds::{Bound, BoundValue};
pub use client::{EchoClient, Reply};
pub use error::{ConfigError, Error, MalformedReason, MessageError, ProtocolError, StampError, TimeoutError};
pub use framing::Framing;
pub use protocol::{Fragment, Observer, Responder, Summary};
pub use proxy::ProxyError;
pub use reply::ReplyChecker;
pub use runner::{Events, Handle, Limits, Totals};
pub use server::{EchoServer, Served};

/// The README's Rust examples, compiled and run as doctests (they use the
/// `tokio` and `test-util` features).
#[cfg(all(doctest, feature = "tokio", feature = "test-util"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The Rust examples of `docs/`, compiled and run as doctests, so the
/// documents cannot drift from the API (they use the `tokio`, `test-util`
/// and `tools` features).
#[cfg(all(doctest, feature = "tokio", feature = "test-util", feature = "tools"))]
pub mod docs_doctests {
    /// `docs/client.md`.
    #[doc = include_str!("../docs/client.md")]
    pub struct Client;
    /// `docs/serving.md`.
    #[doc = include_str!("../docs/serving.md")]
    pub struct Serving;
    /// `docs/tokio.md`.
    #[doc = include_str!("../docs/tokio.md")]
    pub struct Tokio;
    /// `docs/udp.md`.
    #[doc = include_str!("../docs/udp.md")]
    pub struct Udp;
}
