//! Helpers shared by the command's tests: the binary and framing here; the
//! safety net, both runtimes and connections from the library's tests
//! (`tests/common/connections.rs`, included).
#![allow(dead_code)]

#[macro_use]
#[path = "../../../tests/common/connections.rs"]
mod connections;
pub use connections::*;

use std::process::Command;

use stamp_echo::Framing;

/// `stamp-echo SUBCOMMAND`, the binary cargo built for these tests.
pub fn stamp_echo(subcommand: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stamp-echo"));
    command.arg(subcommand);
    command
}

/// The binary's path.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_stamp-echo")
}

/// Appends `message` framed as a client would send it.
pub fn frame(framing: Framing, message: &[u8], out: &mut Vec<u8>) {
    framing.encode_message(message, out).expect("a message the framing carries");
}
