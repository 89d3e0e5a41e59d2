//! What the library's tests and the command line's tests share (each
//! includes this file: `tests/common/mod.rs` as its `connections` module,
//! `cli/tests/common/mod.rs` by `#[path]`): the safety net, both runtimes,
//! and client connections with safety-net timeouts.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// A safety net against hangs: no test waits for anything this long, and
/// none uses it to order events.
pub const SAFETY_TIMEOUT: Duration = Duration::from_secs(30);

/// Which runner serves: the thread runner (`stamp_echo::runner`) or the
/// tokio one (`stamp_echo::tokio::runner`). The behavioural tests run on both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Threads,
    Tokio,
}

/// Makes `#[test]`s of the functions named, each taking a [`Runtime`]: one
/// in module `on_threads`, one in `on_tokio`, under the same name, with the
/// attributes given before the name (`#[cfg(unix)]`).
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
    set_safety_timeouts(&stream);
    stream
}

/// A client connection from `ip` (127.0.0.2, 127.0.0.3, ...: each its own
/// source for the runner's fairness), with safety-net timeouts.
pub fn connect_from(ip: [u8; 4], addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.bind(&SocketAddr::from((ip, 0)).into()).expect("bind a loopback address");
    socket.connect(&addr.into()).expect("connect");
    let stream = TcpStream::from(socket);
    set_safety_timeouts(&stream);
    stream
}

pub fn set_safety_timeouts(stream: &TcpStream) {
    stream.set_read_timeout(Some(SAFETY_TIMEOUT)).expect("set read timeout");
    stream.set_write_timeout(Some(SAFETY_TIMEOUT)).expect("set write timeout");
}

/// Sends `input`, ends the sending side, and reads every reply until the
/// server closes the connection cleanly (a reset fails the test).
pub fn send_all_and_read_replies(stream: &mut TcpStream, input: &[u8]) -> Vec<u8> {
    stream.write_all(input).expect("send");
    stream.shutdown(Shutdown::Write).expect("shutdown write");
    let mut replies = Vec::new();
    stream.read_to_end(&mut replies).expect("read replies");
    replies
}

/// Reads until the server closes the connection; a reset counts as closed
/// (a server closing with unread input resets the connection).
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected the server to close the connection, got {e}"),
    }
    got
}
