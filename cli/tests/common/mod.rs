//! Helpers shared by the command's tests: the binary and framing here; the
//! safety net, both runtimes and connections from the library's tests
//! (`tests/common/connections.rs`, included).
#![allow(dead_code)]

#[macro_use]
#[path = "../../../tests/common/connections.rs"]
mod connections;
pub use connections::*;

use std::process::{Command, Output, Stdio};

use stamp_echo::Framing;

/// `stamp-echo SUBCOMMAND`, the binary cargo built for these tests.
pub fn stamp_echo(subcommand: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stamp-echo"));
    command.arg(subcommand);
    command
}

/// `command`'s output once it exits; the process killed and a failure if it
/// runs past the safety timeout.
pub fn output(command: &mut Command) -> Output {
    let child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(SAFETY_TIMEOUT)
        .unwrap_or_else(|_| {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("{command:?} did not exit");
        })
        .expect("its output")
}

/// The binary's path.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_stamp-echo")
}

/// Appends `message` framed as a client would send it.
pub fn frame(framing: Framing, message: &[u8], out: &mut Vec<u8>) {
    framing.encode_message(message, out).expect("a message the framing carries");
}
