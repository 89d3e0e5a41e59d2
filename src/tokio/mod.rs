//! The same protocol under [tokio](https://tokio.rs) (the `tokio` feature).
//!
//! - [`serve`], [`serve_with`] and [`serve_with_limits`]: [`EchoServer`](crate::EchoServer)
//!   over any `AsyncRead + AsyncWrite`, with the blocking driver's semantics.
//! - [`runner`]: many connections on a `tokio::net::TcpListener` or
//!   `UnixListener`, with the same [`Limits`](crate::Limits),
//!   [`Events`](crate::Events), eviction and graceful shutdown as the thread
//!   [`runner`](crate::runner), returning the same [`Totals`](crate::Totals).
//!
//! # Which runtime
//!
//! Pick the thread [`runner`](crate::runner) for a dedicated server with up
//! to a few thousand connections and no tokio in the program: it needs no
//! runtime and answers a busy connection with the fewest steps. Pick this
//! module when the program already runs tokio, or to hold many mostly idle
//! connections: an idle connection costs its protocol state (well under
//! 4 KiB) instead of a thread's stack and read buffer.
//! The README has the measured table.

mod server;

pub mod runner;

pub use server::{serve, serve_with, serve_with_limits};
