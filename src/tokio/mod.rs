//! The same protocol cores under tokio (the `tokio` cargo feature).
//!
//! - [`EchoClient`]: the async twin of [`crate::EchoClient`], with the same
//!   checks through the same [`ReplyChecker`](crate::ReplyChecker) and the
//!   same [`Reply`](crate::Reply).
//! - [`codec`]: `tokio_util::codec` encoders and decoders for each framing, on
//!   both sides, for `Framed` users.

pub mod client;
pub mod codec;

pub use client::EchoClient;
pub use codec::{ClientCodec, ServerCodec};
