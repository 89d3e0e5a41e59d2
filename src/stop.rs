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
//!
//! Whatever stops, the end is told the same way: every server the crate
//! starts (the two runners, the UDP server) completes one [`Completion`] with
//! its final counts, which a blocking caller waits for on a `Condvar` and an
//! async one polls through a `Waker` (no runtime needed).

use std::io;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

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

/// How a stop asked of a server comes to its end: whether and by when it
/// was asked, and the result the server completes it with (its final
/// counts). Written once for every server; each server only calls
/// [`ask`](Completion::ask) when told to stop and
/// [`complete`](Completion::complete) when done.
#[derive(Debug)]
pub(crate) struct Completion<T> {
    state: Mutex<Progress<T>>,
    done: Condvar,
}

#[derive(Debug)]
struct Progress<T> {
    /// `Some(deadline)` once a stop was asked (a deadline of `None`: none).
    asked: Option<Option<Instant>>,
    /// The result, once the server has stopped.
    result: Option<T>,
    /// The task polling for the result.
    waker: Option<Waker>,
}

impl<T: Clone> Completion<T> {
    pub(crate) fn new() -> Self {
        Completion { state: Mutex::new(Progress { asked: None, result: None, waker: None }), done: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, Progress<T>> {
        // Nothing that can panic runs under the lock; recover anyway.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks for a stop, with a deadline (`None`: none): `false` (the first
    /// deadline kept) if one was asked already.
    pub(crate) fn ask(&self, until: Option<Instant>) -> bool {
        let mut state = self.lock();
        if state.asked.is_some() {
            return false;
        }
        state.asked = Some(until);
        true
    }

    /// The deadline of the stop asked (`Some(None)`: without one), `None` if
    /// no stop was asked.
    pub(crate) fn asked(&self) -> Option<Option<Instant>> {
        self.lock().asked
    }

    /// The server has stopped with `result` (the first one given is kept):
    /// wakes whoever waits.
    pub(crate) fn complete(&self, result: T) {
        let waker = {
            let mut state = self.lock();
            if state.result.is_some() {
                return;
            }
            state.result = Some(result);
            state.waker.take()
        };
        self.done.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether the server has stopped.
    pub(crate) fn is_complete(&self) -> bool {
        self.lock().result.is_some()
    }

    /// Blocks until the server has stopped and returns its result, or
    /// `None` at `until` (`None`: no limit).
    pub(crate) fn wait(&self, until: Option<Instant>) -> Option<T> {
        let mut state = self.lock();
        loop {
            if let Some(result) = &state.result {
                return Some(result.clone());
            }
            state = match until {
                None => self.done.wait(state).unwrap_or_else(PoisonError::into_inner),
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.done.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0
                }
            };
        }
    }

    /// The result if the server has stopped; otherwise wakes `cx`'s task
    /// when it does.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<T> {
        let mut state = self.lock();
        if let Some(result) = &state.result {
            return Poll::Ready(result.clone());
        }
        if !state.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            state.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod completion_tests {
    use super::Completion;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};
    use std::time::{Duration, Instant};

    /// Counts its wake-ups.
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_first_stop_asked_and_the_first_result_are_kept() {
        let completion = Completion::new();
        assert_eq!(completion.asked(), None);
        let until = Instant::now() + Duration::from_secs(5);
        assert!(completion.ask(Some(until)));
        assert!(!completion.ask(None));
        assert_eq!(completion.asked(), Some(Some(until)));
        assert!(!completion.is_complete());
        completion.complete(1);
        completion.complete(2);
        assert!(completion.is_complete());
        assert_eq!(completion.wait(None), Some(1));
    }

    #[test]
    fn a_blocked_waiter_is_woken_and_a_deadline_ends_a_wait() {
        let completion = Arc::new(Completion::new());
        assert_eq!(completion.wait(Some(Instant::now())), None, "not complete: the wait ends at its deadline");
        let theirs = Arc::clone(&completion);
        let waiter = std::thread::spawn(move || theirs.wait(None));
        completion.complete(7);
        assert_eq!(waiter.join().expect("the waiter"), Some(7));
    }

    #[test]
    fn a_polling_task_is_woken_once_complete() {
        let completion = Completion::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        assert_eq!(completion.poll(&mut cx), Poll::Pending);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        completion.complete("done");
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(completion.poll(&mut cx), Poll::Ready("done"));
    }
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
