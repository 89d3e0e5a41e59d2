//! The same protocol cores under [tokio](https://tokio.rs) (the `tokio`
//! cargo feature).
//!
//! - [`serve`], [`serve_with`] and [`serve_with_limits`]: [`EchoServer`](crate::EchoServer)
//!   over any `AsyncRead + AsyncWrite`, with the blocking driver's semantics.
//! - [`runner`]: many connections on a `tokio::net::TcpListener` or
//!   `UnixListener`, with the same [`Limits`](crate::Limits),
//!   [`Events`](crate::Events), eviction and graceful shutdown as the thread
//!   [`runner`](crate::runner), returning the same [`Totals`](crate::Totals).
//! - [`AsyncEchoClient`]: the async twin of [`crate::EchoClient`], with the same
//!   checks through the same [`ReplyChecker`](crate::ReplyChecker) and the
//!   same [`Reply`](crate::Reply).
//! - [`codec`]: `tokio_util::codec` encoders and decoders for each framing, on
//!   both sides, for `Framed` users.
//!
//! # Which runtime
//!
//! Pick this module when the program already runs tokio, or to hold many
//! mostly idle connections: an idle connection costs its task and protocol
//! state (1.6 KiB measured, against 11.9 KiB on the thread runner) since
//! reads go into the worker thread's buffer. Pick the thread
//! [`runner`](crate::runner) for a program without tokio: it needs no
//! runtime, and in ping-pong on a busy machine a blocked thread wakes up as
//! fast as a task or faster. Busy connections cost the same CPU per message
//! on both. The README has the measured table.

pub mod client;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod codec;
pub mod runner;
mod server;

pub use client::AsyncEchoClient;
#[cfg(feature = "tokio")]
pub use codec::{ClientCodec, ServerCodec};
pub use server::{serve, serve_to_end, serve_with, serve_with_limits};
