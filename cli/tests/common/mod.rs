//! Helpers shared by the command's tests: the binary, connections with
//! safety-net timeouts, framing, and both runtimes.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use stamp_echo::Framing;

/// A safety net against hangs: no test waits for anything this long, and
/// none uses it to order events.
pub const SAFETY_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Which runner serves (`--runtime`). The serving tests run on both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Threads,
    Tokio,
}

/// Makes `#[test]`s of the functions named, each taking a [`Runtime`]: one
/// in module `on_threads`, one in `on_tokio`, under the same name.
#[allow(unused_macros)]
macro_rules! on_both_runtimes {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        mod on_threads {
            $( $(#[$attr])* #[test] fn $name() { super::$name(crate::common::Runtime::Threads) } )*
        }
        mod on_tokio {
            $( $(#[$attr])* #[test] fn $name() { super::$name(crate::common::Runtime::Tokio) } )*
        }
    };
}

/// A client connection with safety-net read and write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(SAFETY_TIMEOUT)).expect("set read timeout");
    stream.set_write_timeout(Some(SAFETY_TIMEOUT)).expect("set write timeout");
    stream
}

/// A client connection from a loopback address of its own (`127.0.0.2`, say):
/// another source, as the server's fairness sees it.
pub fn connect_from(ip: [u8; 4], addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.bind(&SocketAddr::from((ip, 0)).into()).expect("bind a loopback address");
    socket.connect(&addr.into()).expect("connect");
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(SAFETY_TIMEOUT)).expect("set read timeout");
    stream.set_write_timeout(Some(SAFETY_TIMEOUT)).expect("set write timeout");
    stream
}

/// Reads until the server closes the connection; a reset counts as closed.
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected the server to close the connection, got {e}"),
    }
    got
}

/// Appends `message` framed as a client would send it.
pub fn frame(framing: Framing, message: &[u8], out: &mut Vec<u8>) {
    framing.encode_message(message, out).expect("a message the framing carries");
}

/// Sends `input`, ends the sending side, and reads every reply until the
/// server closes the connection cleanly.
pub fn send_all_and_read_replies(stream: &mut TcpStream, input: &[u8]) -> Vec<u8> {
    stream.write_all(input).expect("send");
    stream.shutdown(Shutdown::Write).expect("shutdown write");
    let mut replies = Vec::new();
    stream.read_to_end(&mut replies).expect("read replies");
    replies
}
