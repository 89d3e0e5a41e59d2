//! # stamp-echo
//!
//! The timestamp echo of a classic Python socket tutorial, done right: a
//! server answers every message with `[STAMP] MESSAGE`, over any
//! [`Read`](std::io::Read)` + `[`Write`](std::io::Write) stream.
//!
//! The crate is layered like the protocols it learns from:
//!
//! - [`protocol`]: the I/O-free core. [`Responder`] takes the bytes of each
//!   read and appends the stamped replies to a buffer; it never blocks, never
//!   allocates per message, and any transport can drive it.
//! - [`framing`]: what a message is on a stream ([`Framing::Chunk`], the
//!   original's; [`Framing::Line`]; [`Framing::LengthPrefixed`]), each with
//!   an explicit limit.
//! - [`stamp`]: the text in the brackets ([`stamp::Ctime`], like Python's
//!   `time.ctime()`, and others) and the [`stamp::Clock`] it reads.
//! - [`EchoServer`] and [`EchoClient`]: thin blocking drivers over a stream.
//! - [`Error`]: the one error type.
//!
//! ```
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
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client;
mod error;
pub mod framing;
pub mod protocol;
pub mod server;
pub mod stamp;
pub mod testing;
pub mod tz;

pub use client::{EchoClient, Reply};
pub use error::Error;
pub use framing::Framing;
pub use protocol::{Observer, Responder, Summary};
pub use server::EchoServer;

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
