//! What both runners (threads and tokio) share ([`Shared`]: the server, its
//! limits and events) and keep about their connections under their one lock
//! ([`Registry`]): the ids, the open connections (to end their input at
//! shutdown, to close them by force, to evict one), how many are still
//! running, and the counts of those that ended. The eviction policy lives
//! here too, so that both runners share it to the letter; each runner only
//! says how to tell one of its connections something ([`Entry`]) and how to
//! wait (a `Condvar` or a tokio `Notify`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Events, Limits, Totals, nanos};
use crate::EchoServer;
use crate::protocol::Summary;

/// What a runner's threads or tasks share: the server and its settings, the
/// registry under its lock, and `W`, the runner's own ways to wait and wake.
pub(crate) struct Shared<C, W> {
    pub(crate) server: EchoServer,
    pub(crate) limits: Limits,
    pub(crate) events: Box<dyn Events>,
    /// The origin of [`Entry::progress`].
    epoch: Instant,
    state: Mutex<Registry<C>>,
    pub(crate) waits: W,
}

impl<C, W> Shared<C, W> {
    pub(crate) fn new(server: EchoServer, limits: Limits, events: Box<dyn Events>, waits: W) -> Self {
        Shared { server, limits, events, epoch: Instant::now(), state: Mutex::new(Registry::default()), waits }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Registry<C>> {
        // No code that can panic runs under the lock; recover anyway.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `at`, as [`Entry::progress`] counts time.
    pub(crate) fn clock(&self, at: Instant) -> u64 {
        nanos(at.saturating_duration_since(self.epoch))
    }
}

impl<C, W> fmt::Debug for Shared<C, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("server", &self.server).field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// How long a shutdown waits, after its deadline, for the threads or tasks of
/// the connections it closed by force to end.
pub(crate) const FORCE_GRACE: Duration = Duration::from_secs(1);

/// How long to wait at `max_connections` before checking again, at most.
const RECHECK: Duration = Duration::from_millis(100);

/// One registered connection, as the runner that owns it tells it things.
/// The flags are set under the registry's lock, on registered connections
/// only, so once a connection has [left](Registry::leave) they no longer
/// change.
pub(crate) trait Entry {
    /// When it last completed a message (or was accepted), in nanoseconds
    /// since the runner's epoch.
    fn progress(&self) -> u64;
    /// Closed to make room for a new connection.
    fn is_evicted(&self) -> bool;
    /// Closed by force at the shutdown deadline.
    fn is_forced(&self) -> bool;
    /// Closes it to make room; it had gone `idle` without completing a message.
    fn evict(&self, idle: Duration);
    /// Shutdown has begun: it should answer what it has and stop reading.
    fn end_input(&self);
    /// The shutdown deadline has passed: close it now.
    fn force(&self);
}

/// What a connection was told, read once it has [left](Registry::leave).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    forced: bool,
    evicted: bool,
}

impl Flags {
    pub(crate) fn of<C: Entry>(conn: &C) -> Flags {
        Flags { forced: conn.is_forced(), evicted: conn.is_evicted() }
    }
}

/// The runner's registry of connections (kept under its lock).
pub(crate) struct Registry<C> {
    stopping: bool,
    next_id: u64,
    /// Connections admitted whose thread or task has not ended yet (their
    /// socket may be closed already).
    active: usize,
    /// Of `active`, those evicted that have not ended yet.
    evicting: usize,
    open: HashMap<u64, Arc<C>>,
    totals: Totals,
}

impl<C> Default for Registry<C> {
    fn default() -> Self {
        Registry {
            stopping: false,
            next_id: 0,
            active: 0,
            evicting: 0,
            open: HashMap::new(),
            totals: Totals::default(),
        }
    }
}

impl<C: Entry> Registry<C> {
    /// Shutdown has begun.
    pub(crate) fn stopping(&self) -> bool {
        self.stopping
    }

    /// Connections being served.
    pub(crate) fn active(&self) -> usize {
        self.active
    }

    /// Counts over the connections that have ended.
    pub(crate) fn totals(&self) -> Totals {
        self.totals
    }

    /// The totals when the runner gives up waiting: the connections still
    /// running are [`unfinished`](Totals::unfinished).
    pub(crate) fn final_totals(&self) -> Totals {
        Totals { unfinished: self.active as u64, ..self.totals }
    }

    /// Marks the runner stopping and ends every connection's input; `false`
    /// (and nothing done) if it was stopping already.
    pub(crate) fn stop(&mut self) -> bool {
        if self.stopping {
            return false;
        }
        self.stopping = true;
        self.open.values().for_each(|c| c.end_input());
        true
    }

    /// Closes every connection still open by force.
    pub(crate) fn force_all(&self) {
        self.open.values().for_each(|c| c.force());
    }

    /// Whether there is room for one more connection under `cap` (the
    /// limits' `max_connections`, or fewer when the process has run out of
    /// descriptors): `None` if so; otherwise evicts the connection that has
    /// gone longest without completing a message, if it is past
    /// `eviction_grace` (see [`Limits`]), and says how long to wait before
    /// asking again. `now` is nanoseconds since the runner's epoch, as
    /// [`Entry::progress`].
    ///
    /// Evicted connections still running are on their way out: another is
    /// evicted only if they will not be enough.
    pub(crate) fn room(&mut self, limits: &Limits, cap: usize, now: u64) -> Option<Duration> {
        if self.active < cap {
            return None;
        }
        let Some(grace) = limits.eviction_grace else { return Some(RECHECK) };
        if self.active.saturating_sub(self.evicting) < cap {
            return Some(RECHECK);
        }
        let open = self.open.values().filter(|c| !c.is_evicted());
        let Some(victim) = open.min_by_key(|c| c.progress()) else { return Some(RECHECK) };
        let idle = Duration::from_nanos(now.saturating_sub(victim.progress()));
        if idle > grace {
            victim.evict(idle);
            self.evicting += 1;
            Some(RECHECK)
        } else {
            Some(RECHECK.min(grace - idle + Duration::from_millis(1)))
        }
    }

    /// Registers a new connection, active until [`ended`](Registry::ended),
    /// and returns its id (from 1).
    pub(crate) fn admit(&mut self, conn: Arc<C>) -> u64 {
        self.next_id += 1;
        self.active += 1;
        self.open.insert(self.next_id, conn);
        self.next_id
    }

    /// Takes connection `id` out of the registry: nothing is signalled to it
    /// any more, so its flags can be read for [`ended`](Registry::ended).
    pub(crate) fn leave(&mut self, id: u64) -> Option<Arc<C>> {
        self.open.remove(&id)
    }

    /// Counts a connection that has ended, after it [left](Registry::leave),
    /// with its [`Flags`] and whether it `failed` in an error.
    pub(crate) fn ended(&mut self, summary: &Summary, flags: Flags, failed: bool) {
        self.active -= 1;
        if flags.evicted {
            self.evicting = self.evicting.saturating_sub(1);
        }
        self.totals.count(summary, flags.forced, flags.evicted, failed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A connection that records what it was told.
    #[derive(Default)]
    struct Probe {
        progress: u64,
        evicted: Mutex<Option<Duration>>,
        ended: AtomicBool,
        forced: AtomicBool,
    }

    impl Probe {
        fn evicted(&self) -> Option<Duration> {
            *self.evicted.lock().expect("not poisoned")
        }
        fn ended(&self) -> bool {
            self.ended.load(Ordering::Relaxed)
        }
    }

    impl Entry for Probe {
        fn progress(&self) -> u64 {
            self.progress
        }
        fn is_evicted(&self) -> bool {
            self.evicted().is_some()
        }
        fn is_forced(&self) -> bool {
            self.forced.load(Ordering::Relaxed)
        }
        fn evict(&self, idle: Duration) {
            *self.evicted.lock().expect("not poisoned") = Some(idle);
        }
        fn end_input(&self) {
            self.ended.store(true, Ordering::Relaxed);
        }
        fn force(&self) {
            self.forced.store(true, Ordering::Relaxed);
        }
    }

    const SECOND: u64 = 1_000_000_000;

    fn limits(max: usize) -> Limits {
        Limits::default().max_connections(max).eviction_grace(Some(Duration::from_secs(1)))
    }

    #[test]
    fn below_the_cap_there_is_room() {
        let mut registry = Registry::default();
        registry.admit(Arc::new(Probe::default()));
        assert_eq!(registry.room(&limits(2), 2, 10 * SECOND), None);
        assert_eq!(registry.active(), 1);
    }

    #[test]
    fn at_the_cap_the_one_longest_without_a_message_is_evicted_once_past_the_grace() {
        let mut registry = Registry::default();
        let old = Arc::new(Probe { progress: SECOND, ..Probe::default() });
        let recent = Arc::new(Probe { progress: 2 * SECOND, ..Probe::default() });
        registry.admit(Arc::clone(&recent));
        registry.admit(Arc::clone(&old));
        // Within the grace: nobody evicted, ask again just after it ends.
        assert_eq!(registry.room(&limits(2), 2, SECOND + SECOND / 2), Some(Duration::from_millis(100)));
        assert_eq!(registry.room(&limits(2), 2, 2 * SECOND - 10_000_000), Some(Duration::from_millis(11)));
        assert!(!old.is_evicted() && !recent.is_evicted());
        // Past it: the oldest goes, with how long it had been idle.
        assert_eq!(registry.room(&limits(2), 2, 3 * SECOND), Some(Duration::from_millis(100)));
        assert_eq!(old.evicted(), Some(Duration::from_secs(2)));
        assert!(!recent.is_evicted());
        // While it is on its way out, nobody else is evicted.
        registry.room(&limits(2), 2, 10 * SECOND);
        assert!(!recent.is_evicted());
        // Once it has ended there is room, and it is counted as evicted.
        let id = 2;
        let left = registry.leave(id).expect("registered");
        registry.ended(&Summary::default(), Flags::of(&*left), false);
        assert_eq!(registry.room(&limits(2), 2, 10 * SECOND), None);
        assert_eq!((registry.totals().evicted, registry.totals().errors), (1, 0));
    }

    #[test]
    fn out_of_descriptors_below_the_cap_evicts_as_at_the_cap() {
        let mut registry = Registry::default();
        let old = Arc::new(Probe { progress: SECOND, ..Probe::default() });
        registry.admit(Arc::clone(&old));
        registry.admit(Arc::new(Probe { progress: 3 * SECOND, ..Probe::default() }));
        // Far below max_connections, but no descriptor left: the cap is the
        // connections open now.
        let limits = limits(1024);
        assert_eq!(registry.room(&limits, 1024, 4 * SECOND), None);
        assert_eq!(registry.room(&limits, registry.active(), 4 * SECOND), Some(Duration::from_millis(100)));
        assert_eq!(old.evicted(), Some(Duration::from_secs(3)));
        // With nobody in the registry, nothing to evict and no panic.
        let mut empty: Registry<Probe> = Registry::default();
        assert_eq!(empty.room(&limits, empty.active(), 4 * SECOND), Some(Duration::from_millis(100)));
    }

    #[test]
    fn without_eviction_a_full_runner_only_waits() {
        let mut registry = Registry::default();
        let conn = Arc::new(Probe::default());
        registry.admit(Arc::clone(&conn));
        let never = Limits::default().max_connections(1).eviction_grace(None);
        assert_eq!(registry.room(&never, 1, 1000 * SECOND), Some(Duration::from_millis(100)));
        assert!(!conn.is_evicted());
    }

    #[test]
    fn stopping_ends_every_input_once_and_forcing_is_counted() {
        let mut registry = Registry::default();
        let (a, b) = (Arc::new(Probe::default()), Arc::new(Probe::default()));
        let id_a = registry.admit(Arc::clone(&a));
        let id_b = registry.admit(Arc::clone(&b));
        assert!(registry.stop());
        assert!(registry.stopping() && a.ended() && b.ended());
        assert!(!registry.stop(), "a second stop does nothing");
        let left = registry.leave(id_a).expect("registered");
        registry.ended(&Summary::default(), Flags::of(&*left), false);
        registry.force_all();
        assert!(b.is_forced());
        assert_eq!(registry.final_totals().unfinished, 1);
        let left = registry.leave(id_b).expect("registered");
        registry.ended(&Summary::default(), Flags::of(&*left), true);
        let totals = registry.final_totals();
        assert_eq!((totals.connections, totals.force_closed, totals.errors, totals.unfinished), (2, 1, 0, 0));
    }

    #[test]
    fn a_connection_leaves_once_and_is_counted_by_its_flags() {
        let mut registry: Registry<Probe> = Registry::default();
        let id = registry.admit(Arc::new(Probe::default()));
        assert!(registry.leave(id).is_some());
        assert!(registry.leave(id).is_none(), "left once");
        registry.ended(&Summary::default(), Flags::default(), true);
        assert_eq!((registry.active(), registry.totals().errors), (0, 1));
    }
}
