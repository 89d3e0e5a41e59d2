//! Stopping a thread blocked in `accept()` (or `recv()`) without going
//! through the socket's address.
//!
//! Connecting to the listener to wake it reaches whoever holds the address
//! now: a Unix socket path can have been replaced since it was bound, and the
//! wake-up then goes to someone else while the server never exits. Instead,
//! the socket gets a receive timeout of [`TICK`]: on Linux and Android a
//! blocking `accept()` honours `SO_RCVTIMEO`, as `recv()` does everywhere, so
//! the blocked thread comes back every tick, sees
//! [`is_tick`] and checks its stop flag. No unsafe code: std sets the option
//! through a `UnixStream` that owns the same descriptor for a moment.
//!
//! The runner's accept loop and [`DatagramServer`](crate::datagram::DatagramServer)'s
//! `recv_from()` loop both stop this way, with one rule for errors that
//! concern one peer only ([`is_transient`]).
//!
//! Where `accept()` ignores the option (macOS, the BSDs, Windows), the runner
//! polls a non-blocking Unix listener every tick and wakes a TCP listener by
//! connecting to it, as before.

use std::io;
use std::time::Duration;

/// How often a blocked `accept()` or `recv()` comes back to check for a stop:
/// the longest a shutdown waits for the thread.
pub(crate) const TICK: Duration = Duration::from_millis(50);

/// Whether `accept()` on this platform returns at the receive timeout.
pub(crate) const ACCEPT_HONOURS_TIMEOUT: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Gives `socket` a receive timeout of [`TICK`] (see the module docs), and
/// returns it.
///
/// # Errors
///
/// The error of `setsockopt(SO_RCVTIMEO)`.
#[cfg(unix)]
pub(crate) fn tick<S>(socket: S) -> io::Result<S>
where
    S: From<std::os::fd::OwnedFd>,
    std::os::fd::OwnedFd: From<S>,
{
    use std::os::fd::OwnedFd;
    // The option is the socket's, not the stream's: any socket type can carry it.
    let carrier = std::os::unix::net::UnixStream::from(OwnedFd::from(socket));
    let set = carrier.set_read_timeout(Some(TICK));
    let socket = S::from(<OwnedFd as From<std::os::unix::net::UnixStream>>::from(carrier));
    set.map(|()| socket)
}

/// Whether a failed `accept()` or `recv()` concerns one peer only, the socket
/// still usable: a connection that went away before `accept()` returned it,
/// or (reported by some systems on a UDP socket) an earlier datagram's peer
/// that refused it.
pub(crate) fn is_transient(error: &io::Error) -> bool {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(error.kind(), Interrupted | ConnectionAborted | ConnectionReset | ConnectionRefused)
}

/// Whether a failed `accept()` means the process or the system is out of
/// descriptors or memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): the
/// listener is fine, and a connection that ends makes room. The runners then
/// make room as they do at `max_connections`, so that a limit on descriptors
/// below `max_connections` cannot let hoarders keep new clients out.
pub(crate) fn is_out_of_resources(error: &io::Error) -> bool {
    // EMFILE and ENFILE have no stable `ErrorKind`: their numbers are the
    // same on Linux, the BSDs and macOS; ENOBUFS is 105 on Linux, 55 on the
    // BSDs and macOS; WSAEMFILE and WSAENOBUFS on Windows.
    const NUMBERS: &[i32] = if cfg!(windows) {
        &[10024, 10055]
    } else if cfg!(any(target_os = "linux", target_os = "android")) {
        &[23, 24, 105]
    } else {
        &[23, 24, 55]
    };
    error.kind() == io::ErrorKind::OutOfMemory || error.raw_os_error().is_some_and(|n| NUMBERS.contains(&n))
}

/// Whether a failed `accept()` or `recv()` is only the tick coming round.
pub(crate) fn is_tick(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_ticking_listener_returns_from_accept_without_a_client() {
        let dir = std::env::temp_dir().join(format!("stamp-echo-stop-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let listener = tick(UnixListener::bind(&dir).expect("bind")).expect("tick");
        let error = listener.accept().expect_err("no client connects");
        assert!(is_tick(&error), "{error}");
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn out_of_descriptors_or_memory_is_told_from_one_peers_trouble() {
        // EMFILE, ENFILE and ENOBUFS as Linux reports them, and ENOMEM.
        for errno in [24, 23, 105] {
            assert!(is_out_of_resources(&io::Error::from_raw_os_error(errno)), "errno {errno}");
        }
        assert!(is_out_of_resources(&io::Error::from(io::ErrorKind::OutOfMemory)));
        // ECONNABORTED, EAGAIN, EINVAL: not a shortage.
        for errno in [103, 11, 22] {
            assert!(!is_out_of_resources(&io::Error::from_raw_os_error(errno)), "errno {errno}");
        }
    }
}
