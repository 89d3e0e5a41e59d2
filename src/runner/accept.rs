//! What an accept loop does with each result of `accept()`, decided once for
//! both runners and free of I/O: a failure that concerns one peer is
//! retried; any other is reported and relieved (waiting for a connection to
//! end, after making room when the process is out of descriptors, memory or
//! threads); a newcomer is admitted, held, or refused by the registry's
//! policy. Each runner only accepts, waits (a `Condvar`, a tokio `Notify`)
//! and gives an admitted connection its thread or task, as [`Next`] says.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::registry::{Decision, Entry, Registry, Shared};
use super::{Addr, Peer, Refusal, Source};
use crate::stop;

/// The longest an accept loop waits for a connection to end after
/// `accept()` (or the start of a connection's thread) failed.
pub(crate) const RETRY: Duration = Duration::from_millis(100);

/// What an accept loop does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Wait until a connection ends (or shutdown begins), at most this long,
    /// then ask again: for the same newcomer, or after a failure accept again.
    Wait(Duration),
    /// Register the newcomer ([`Registry::register`], under the same lock)
    /// and serve it.
    Admit,
    /// Close the newcomer unserved (counted already), then report it to
    /// [`Events::refused`](super::Events::refused).
    Refuse(Peer, Refusal),
    /// The runner is stopping: close the newcomer, if any, unserved, and end
    /// the loop.
    Stop,
}

impl<C: Entry, W> Shared<C, W> {
    /// After `accept()` failed with `error` (the thread runner's tick aside):
    /// a failure that concerns one peer only (see [`stop::is_transient`]) is
    /// `None`, accept again; any other is reported to
    /// [`Events::accept_failed`](super::Events::accept_failed), and is
    /// `Some(scarce)`: [`relieve`](Registry::relieve) it, `scarce` if the
    /// process is out of descriptors or memory. Outside the lock (it calls
    /// the events).
    pub(crate) fn accept_failed(&self, error: &io::Error) -> Option<bool> {
        if stop::is_transient(error) {
            return None;
        }
        self.events.accept_failed(error);
        Some(stop::is_out_of_resources(error))
    }
}

impl<C: Entry> Registry<C> {
    /// After `accept()` or the start of a connection's thread failed: out of
    /// resources (`scarce`), first makes room at the largest source's expense
    /// (see [`Registry::out_of_resources`]); then [`Next::Wait`] for a
    /// connection to end, [`Next::Stop`] if the runner is stopping.
    pub(crate) fn relieve(&mut self, scarce: bool, now: u64) -> Next {
        if self.stopping() {
            return Next::Stop;
        }
        if scarce {
            self.out_of_resources(now);
        }
        Next::Wait(RETRY)
    }

    /// One turn of a newcomer's admission (see
    /// [fairness](super::Limits#fair-to-every-source) and
    /// [`Registry::decide_with`]): [`Next::Admit`], [`Next::Wait`] (ask again
    /// after the wait: it is held), [`Next::Refuse`] (counted, with its
    /// peer), or [`Next::Stop`]. `per_source`: whether `max_per_source`
    /// applies to it now (see [`Shared::per_source_cap`]).
    pub(crate) fn admission(&mut self, addr: &Addr, source: Source, per_source: bool, now: u64) -> Next {
        if self.stopping() {
            return Next::Stop;
        }
        match self.decide_with(source, now, per_source) {
            Decision::Admit => Next::Admit,
            Decision::Wait(wait) => Next::Wait(wait),
            Decision::Refuse(reason) => Next::Refuse(Peer { id: self.refused(), addr: addr.clone(), source }, reason),
        }
    }

    /// Registers a newcomer [admitted](Next::Admit) as `conn` and returns
    /// its peer, with its id.
    pub(crate) fn register(&mut self, conn: Arc<C>, addr: Addr, source: Source) -> Peer {
        Peer { id: self.admit(conn, source), addr, source }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::super::registry::tests::{Probe, src};
    use super::*;
    use crate::{EchoServer, Events, Limits};

    /// Counts the accept failures reported.
    #[derive(Default)]
    struct Failures(Arc<AtomicUsize>);
    impl Events for Failures {
        fn accept_failed(&self, _error: &io::Error) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn addr(n: u8) -> Addr {
        Addr::Tcp(SocketAddr::from((Ipv4Addr::new(127, 0, 0, n), 4000)))
    }

    #[test]
    fn one_peers_failure_is_retried_unreported_any_other_reported_and_relieved() {
        let failures = Failures::default();
        let count = Arc::clone(&failures.0);
        let server = EchoServer::builder().build().expect("a server");
        let shared: Shared<Probe, ()> = Shared::new(server, Limits::default(), Box::new(failures), ());
        // ECONNABORTED: that peer went away.
        assert_eq!(shared.accept_failed(&io::Error::from(io::ErrorKind::ConnectionAborted)), None);
        assert_eq!(count.load(Ordering::SeqCst), 0);
        // EMFILE (Linux's number): out of descriptors; EINVAL: something else.
        let emfile = io::Error::from_raw_os_error(24);
        let expected = cfg!(any(target_os = "linux", target_os = "android"));
        assert_eq!(shared.accept_failed(&emfile), Some(expected));
        assert_eq!(shared.accept_failed(&io::Error::from(io::ErrorKind::InvalidInput)), Some(false));
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn relieving_waits_for_a_connection_to_end_and_out_of_resources_lowers_the_cap() {
        let mut registry = Registry::new(Limits::default().max_connections(10).eviction_grace(None));
        for n in 1..=3 {
            registry.register(Probe::at(0), addr(n), src(n));
        }
        assert_eq!(registry.relieve(false, 0), Next::Wait(RETRY));
        assert_eq!(registry.admission(&addr(4), src(4), true, 0), Next::Admit, "below the cap");
        assert_eq!(registry.relieve(true, 0), Next::Wait(RETRY));
        // The cap is now the 3 slots held: a newcomer from a source holding
        // no more than others is refused at once (the backlog must drain).
        let Next::Refuse(peer, reason) = registry.admission(&addr(4), src(4), true, 0) else {
            panic!("refused at the lowered cap")
        };
        assert_eq!((peer.id, reason), (4, Refusal::OutOfResources { held: 0 }));
        registry.stop();
        assert_eq!(registry.relieve(true, 0), Next::Stop);
        assert_eq!(registry.admission(&addr(4), src(4), true, 0), Next::Stop);
    }

    #[test]
    fn a_refused_newcomer_is_counted_with_its_peer_and_an_admitted_one_registered() {
        let limits = Limits::default().max_connections(10).max_per_source(Some(1)).eviction_grace(None);
        let mut registry = Registry::new(limits);
        assert_eq!(registry.admission(&addr(1), src(1), true, 0), Next::Admit);
        let peer = registry.register(Probe::at(0), addr(1), src(1));
        assert_eq!((peer.id, peer.addr.clone(), peer.source), (1, addr(1), src(1)));
        let Next::Refuse(refused, reason) = registry.admission(&addr(1), src(1), true, 0) else {
            panic!("a second connection from one source, at max_per_source 1")
        };
        assert_eq!((refused.id, refused.addr, refused.source), (2, addr(1), src(1)));
        assert_eq!(reason, Refusal::SourceLimit { held: 1 });
        assert_eq!((registry.totals().refused, registry.active()), (1, 1));
        // Not capped per source (a trusted proxy's, before its header): admitted.
        assert_eq!(registry.admission(&addr(1), src(1), false, 0), Next::Admit);
    }
}
