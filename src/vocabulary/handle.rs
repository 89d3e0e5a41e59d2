//! One [`Handle`] on every server the crate starts: the thread runner, the
//! tokio runner and the UDP server. Each server is a [`Serving`] behind it:
//! it says how many connections it serves and what it has counted, takes one
//! signal to stop (with a deadline), and completes one
//! [`Completion`] with its final counts when it has stopped. The handle waits
//! for that completion blocking ([`Handle::shutdown`]) or as a future
//! ([`Handle::shutdown_async`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{Addr, Totals};
use crate::stop::Completion;

/// The deadline of the shutdown that dropping a [`Handle`] does.
const DROP_DEADLINE: Duration = Duration::from_secs(1);

/// The longest a dropped [`Handle`] blocks: the drop deadline, the grace the
/// runners give the connections they close by force after it (1 s), and a
/// second to spare.
const DROP_WAIT: Duration = Duration::from_secs(3);

/// A server the crate started, as its [`Handle`] sees it.
pub(crate) trait Serving<T>: Send + Sync {
    /// Connections being served now.
    fn active(&self) -> usize;
    /// The counts so far.
    fn totals(&self) -> T;
    /// The one signal to stop: stop accepting (or receiving), end every
    /// connection's input, close the rest by force at `until` (`None`: no
    /// deadline), then [complete](Completion::complete) the
    /// [`completion`](Serving::completion) with the final counts. Asked
    /// more than once, only the first counts.
    fn stop(&self, until: Option<Instant>);
    /// Completed with the final counts once the server has stopped.
    fn completion(&self) -> &Completion<T>;
    /// Whether dropping the handle may block this thread until the server
    /// has stopped (not on a thread the server itself needs to stop).
    fn may_block_on_drop(&self) -> bool {
        true
    }
}

/// A running server: its address, its counts, and the way to stop it, for
/// every server the crate starts: the thread [`runner`](crate::runner), the
/// tokio runner (`stamp_echo::tokio::runner`, feature `tokio-runner`) and
/// the UDP server ([`DatagramServer::start`](crate::datagram::DatagramServer::start),
/// a `Handle<datagram::DatagramTotals>`).
///
/// Stop it from blocking code with [`shutdown`](Handle::shutdown), from
/// `async` code with [`shutdown_async`](Handle::shutdown_async) (a future
/// that needs no particular runtime).
///
/// Dropping the handle shuts the server down as [`shutdown`](Handle::shutdown)
/// does, with a deadline of [`Handle::DROP_DEADLINE`], and blocks until it
/// has stopped (3 s at most), except on a thread of a tokio runtime (whose
/// server then stops in the background) or, for the tokio runner, while its
/// runtime is a current-thread one.
#[must_use = "dropping the Handle shuts the server down"]
pub struct Handle<T: Clone + Send + 'static = Totals> {
    serving: Arc<dyn Serving<T>>,
    local_addr: Addr,
}

impl Handle {
    /// The deadline of the shutdown that dropping a [`Handle`] does.
    pub const DROP_DEADLINE: Duration = DROP_DEADLINE;
}

impl<T: Clone + Send + 'static> Handle<T> {
    pub(crate) fn new(local_addr: Addr, serving: Arc<dyn Serving<T>>) -> Handle<T> {
        Handle { serving, local_addr }
    }

    /// The address the server listens on (with the real port when the
    /// listener or socket was bound to port 0).
    pub fn local_addr(&self) -> &Addr {
        &self.local_addr
    }

    /// Connections being served now (always 0 for the UDP server: it has
    /// none).
    pub fn active(&self) -> usize {
        self.serving.active()
    }

    /// The counts so far: over the connections that have ended, for the
    /// runners; over the datagrams received, for the UDP server.
    pub fn totals(&self) -> T {
        self.serving.totals()
    }

    /// Whether the server has stopped: shut down, or (the UDP server) ended
    /// by its socket failing.
    pub fn is_finished(&self) -> bool {
        self.serving.completion().is_complete()
    }

    /// Stops the server, blocking until it has, and returns its final
    /// counts. For the runners:
    ///
    /// 1. stops accepting: the accept loop sees the stop at once (the tokio
    ///    runner) or within 50 ms (the thread runner, which never connects to
    ///    the listener's address, except over TCP where `accept()` ignores
    ///    timeouts) and closes the listener, so clients still in the backlog
    ///    are refused;
    /// 2. ends the input of every connection: each one answers what it has
    ///    received, sees the end of its input, and closes;
    /// 3. waits for them, up to `deadline` (any length: one too long to
    ///    represent waits until they end);
    /// 4. closes the rest by force (a client that does not read its replies,
    ///    say), counted in [`Totals::force_closed`].
    ///
    /// The UDP server stops receiving within 50 ms; datagrams not read by
    /// then stay unanswered (`deadline` does not apply: it has nothing to
    /// drain).
    ///
    /// Do not call it on the thread of the tokio runtime that serves a tokio
    /// runner's connections when that runtime is a current-thread one: the
    /// runtime could not run them while this waits, and it would wait for
    /// ever (or until the deadline, without closing them). In `async` code,
    /// `.await` [`shutdown_async`](Handle::shutdown_async) instead.
    pub fn shutdown(self, deadline: Duration) -> T {
        self.serving.stop(Instant::now().checked_add(deadline));
        let completion = self.serving.completion();
        completion.wait(None).unwrap_or_else(|| self.serving.totals())
    }

    /// Stops the server as [`shutdown`](Handle::shutdown) does, starting
    /// now, and returns a future of its final counts. The future needs no
    /// particular runtime; dropping it leaves the server to finish stopping
    /// in the background.
    ///
    #[cfg_attr(feature = "tokio-runner", doc = "```")]
    #[cfg_attr(not(feature = "tokio-runner"), doc = "```ignore")]
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
    /// use std::time::Duration;
    /// use stamp_echo::{EchoServer, Framing, Limits, tokio::runner};
    ///
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let server = EchoServer::builder().framing(Framing::line()).build()?;
    /// let handle = runner::start(listener, server, Limits::default(), ())?;
    /// let totals = handle.shutdown_async(Duration::from_secs(5)).await;
    /// assert_eq!(totals.connections, 0);
    /// # Ok::<(), stamp_echo::Error>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown_async(self, deadline: Duration) -> Stopping<T> {
        self.serving.stop(Instant::now().checked_add(deadline));
        Stopping { serving: Arc::clone(&self.serving) }
    }
}

impl<T: Clone + Send + 'static> Drop for Handle<T> {
    fn drop(&mut self) {
        if self.serving.completion().asked().is_some() {
            return; // shut down already
        }
        let now = Instant::now();
        self.serving.stop(now.checked_add(DROP_DEADLINE));
        if self.serving.may_block_on_drop() {
            let _ = self.serving.completion().wait(now.checked_add(DROP_WAIT));
        }
    }
}

impl<T: Clone + Send + 'static> fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("local_addr", &self.local_addr)
            .field("active", &self.active())
            .field("stopped", &self.serving.completion().is_complete())
            .finish()
    }
}

/// A server stopping: a future of its final counts, from
/// [`Handle::shutdown_async`].
#[must_use = "the server stops anyway; await this for its final counts"]
pub struct Stopping<T: Clone + Send + 'static = Totals> {
    serving: Arc<dyn Serving<T>>,
}

impl<T: Clone + Send + 'static> Future for Stopping<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.serving.completion().poll(cx)
    }
}

impl<T: Clone + Send + 'static> fmt::Debug for Stopping<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stopping").field("stopped", &self.serving.completion().is_complete()).finish()
    }
}
