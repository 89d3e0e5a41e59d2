//! What both runners (threads and tokio) share ([`Shared`]: the server, its
//! limits and events) and keep about their connections under their one lock
//! ([`Registry`]): the ids, the open connections (to end their input at
//! shutdown, to close them by force, to evict one), the slots each
//! [`Source`] holds, how many connections are still running, and the counts
//! of those that ended. The admission policy (fairness per source, eviction,
//! refusal) lives here too, so that both runners share it to the letter;
//! each runner only says how to tell one of its connections something
//! ([`Entry`]) and how to wait (a `Condvar` or a tokio `Notify`).
//!
//! # The policy
//!
//! A *slot* is held by every registered connection that was not evicted or
//! refused (those are on their way out). Below the cap a newcomer is
//! admitted. At the cap (`max_connections`, or the slots held when the
//! process last ran out of descriptors, memory or threads, for
//! [`SCARCE_HOLD`] after that or after the last newcomer turned away at
//! it), for a newcomer from source N holding `c_N` slots:
//!
//! - (a) if a source M holds `c_M >= c_N + 2` (more than N would after
//!   admission), the connection of the largest source that has gone longest
//!   without completing a message is evicted at once (no grace: that source
//!   holds more than its share), and the newcomer admitted;
//! - (b) otherwise N may only displace its own kind: the connection longest
//!   without a completed message among N's own and those of sources holding
//!   `c_N + 1`, if past `eviction_grace`, is evicted and the newcomer
//!   admitted; if there is none, the newcomer is refused at once (never held:
//!   a backlog of one source's newcomers must not delay others'). Out of
//!   resources, (b) is only the refusal: displacing one's own needs a
//!   descriptor freed first, and the backlog must drain fast.
//!
//! So a source only ever evicts its own connections while it holds more than
//! anyone else. With `eviction_grace` `None` nobody is evicted: at the cap
//! newcomers wait. With `max_per_source`, a newcomer from a source holding
//! that many evicts the source's own longest idle past the grace, or is
//! refused. Inside a source, the order is the connection longest without a
//! completed message (since accepted), ties to the oldest.
//!
//! An evicted connection is admitted past at once, without waiting for the
//! victim to end; at most [`MAX_EVICTING`] evicted connections may be on
//! their way out at once (beyond, the newcomer waits for one to end), so
//! open sockets stay under the cap plus that many.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Events, Limits, ProxyProtocol, Refusal, Source, Totals, nanos};
use crate::EchoServer;
use crate::protocol::Summary;

/// What a runner's threads or tasks share: the server and its settings, the
/// registry under its lock, and `W`, the runner's own ways to wait and wake.
pub(crate) struct Shared<C, W> {
    pub(crate) server: EchoServer,
    pub(crate) limits: Limits,
    pub(crate) events: Box<dyn Events>,
    /// The PROXY protocol, if on.
    pub(crate) proxy: Option<ProxyProtocol>,
    /// The origin of [`Entry::progress`].
    epoch: Instant,
    state: Mutex<Registry<C>>,
    pub(crate) waits: W,
}

impl<C, W> Shared<C, W> {
    pub(crate) fn new(server: EchoServer, limits: Limits, events: Box<dyn Events>, waits: W) -> Self {
        let state = Mutex::new(Registry::new(limits));
        Shared { server, limits, events, proxy: None, epoch: Instant::now(), state, waits }
    }

    /// With the PROXY protocol on (`Some`) or off.
    pub(crate) fn proxied(mut self, proxy: Option<ProxyProtocol>) -> Self {
        self.proxy = proxy;
        self
    }

    /// Whether `max_per_source` applies to a newcomer from `addr` now: not
    /// to a trusted proxy's before its header names the client (see
    /// [`Registry::decide`]).
    pub(crate) fn per_source_cap(&self, addr: &super::Addr) -> bool {
        !self.proxy.as_ref().is_some_and(|proxy| proxy.expects_header(addr))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Registry<C>> {
        // No code that can panic runs under the lock; recover anyway.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `at`, as [`Entry::progress`] counts time.
    pub(crate) fn clock(&self, at: Instant) -> u64 {
        nanos(at.saturating_duration_since(self.epoch))
    }

    /// The clock now.
    pub(crate) fn now(&self) -> u64 {
        self.clock(Instant::now())
    }
}

impl<C: Entry, W> Shared<C, W> {
    /// Connection `id` turns out to come from `source` (a PROXY protocol
    /// header, say): see [`Registry::identify`].
    pub(crate) fn identify(&self, id: u64, source: Source) -> Decision {
        let now = self.now();
        self.lock().identify(id, source, now)
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

/// How long to wait at the cap before checking again, at most.
const RECHECK: Duration = Duration::from_millis(100);

/// The most evicted (or refused) connections on their way out at once: a
/// newcomer that needs one more evicted waits for one of them to end. So the
/// sockets open never exceed the cap by more than this (and the newcomer).
pub(crate) const MAX_EVICTING: usize = 32;

/// How long the cap stays at the connections open when the process ran out
/// of descriptors, memory or threads, after the last such failure.
pub(crate) const SCARCE_HOLD: Duration = Duration::from_secs(1);

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
    /// Closed because its source, once known, was refused.
    fn is_refused(&self) -> bool;
    /// Closed by force at the shutdown deadline.
    fn is_forced(&self) -> bool;
    /// Closes it to make room; it had gone `idle` without completing a message.
    fn evict(&self, idle: Duration);
    /// Closes it: its source, once [identified](Registry::identify), was refused.
    fn refuse(&self, reason: Refusal);
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
    refused: bool,
}

impl Flags {
    pub(crate) fn of<C: Entry>(conn: &C) -> Flags {
        Flags { forced: conn.is_forced(), evicted: conn.is_evicted(), refused: conn.is_refused() }
    }
}

/// What to do with a newcomer (or an [identified](Registry::identify)
/// connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Admit it ([`Registry::admit`]); a connection may have been evicted for it.
    Admit,
    /// Hold it and ask again once a connection ends, or after this long at
    /// most: at the cap without eviction (`eviction_grace` `None`), or with
    /// [`MAX_EVICTING`] connections already on their way out.
    Wait(Duration),
    /// Close it at once, unserved.
    Refuse(Refusal),
}

/// One registered connection: the runner's handle on it, and the source it
/// counts for.
struct Record<C> {
    conn: Arc<C>,
    source: Source,
    /// Evicted or refused: no longer holds a slot.
    released: bool,
}

/// The runner's registry of connections (kept under its lock).
pub(crate) struct Registry<C> {
    limits: Limits,
    stopping: bool,
    next_id: u64,
    /// Connections admitted whose thread or task has not ended yet (their
    /// socket may be closed already).
    active: usize,
    /// Of `active`, those evicted or refused that have not ended yet.
    evicting: usize,
    open: HashMap<u64, Record<C>>,
    /// The slots each source holds (sources holding none are left out).
    held: HashMap<Source, usize>,
    /// The sum of `held`, plus the connections that have [left](Registry::leave)
    /// holding a slot and not [ended](Registry::ended) yet (their sockets may
    /// still be open).
    slots: usize,
    /// After running out of descriptors, memory or threads: the slots held
    /// then, the cap until the instant with it (see [`SCARCE_HOLD`]).
    scarce: Option<(usize, u64)>,
    totals: Totals,
}

impl<C> Registry<C> {
    pub(crate) fn new(limits: Limits) -> Self {
        Registry {
            limits,
            stopping: false,
            next_id: 0,
            active: 0,
            evicting: 0,
            open: HashMap::new(),
            held: HashMap::new(),
            slots: 0,
            scarce: None,
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

    /// The slots `source` holds.
    pub(crate) fn held_by(&self, source: &Source) -> usize {
        self.held.get(source).copied().unwrap_or(0)
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
        self.open.values().for_each(|r| r.conn.end_input());
        true
    }

    /// Closes every connection still open by force.
    pub(crate) fn force_all(&self) {
        self.open.values().for_each(|r| r.conn.force());
    }

    /// The cap now: `max_connections`, or the slots held when the process
    /// last ran out of resources, within [`SCARCE_HOLD`] of it.
    fn cap(&self, now: u64) -> usize {
        let max = self.limits.max_connections;
        match self.scarce {
            Some((cap, until)) if now < until => max.min(cap),
            _ => max,
        }
    }

    /// Whether the process ran out of resources within [`SCARCE_HOLD`].
    fn is_scarce(&self, now: u64) -> bool {
        self.scarce.is_some_and(|(_, until)| now < until)
    }

    /// What to do with a newcomer from `source` (see the module docs):
    /// [`Decision::Admit`] (then [`admit`](Registry::admit) it), having
    /// evicted a connection if that was needed, [`Decision::Wait`] or
    /// [`Decision::Refuse`] (then count it with
    /// [`refused`](Registry::refused)). `now` is nanoseconds since the
    /// runner's epoch, as [`Entry::progress`].
    ///
    /// `per_source`: whether `max_per_source` applies. It does not to a
    /// trusted proxy's connection before its header is read: it counts for
    /// the proxy until then, and a burst of clients behind the proxy must not
    /// be refused as the proxy's; once [identified](Registry::identify) it
    /// counts, and is capped, as its client.
    pub(crate) fn decide_with(&mut self, source: Source, now: u64, per_source: bool) -> Decision {
        self.place(source, now, true, per_source)
    }

    /// [`decide_with`](Registry::decide_with), `max_per_source` applying.
    #[cfg(test)]
    pub(crate) fn decide(&mut self, source: Source, now: u64) -> Decision {
        self.decide_with(source, now, true)
    }

    /// [`decide`](Registry::decide), for a `newcomer` or a connection being
    /// identified (whose own slot is not counted): that one never waits.
    fn place(&mut self, source: Source, now: u64, newcomer: bool, per_source: bool) -> Decision {
        let own = self.held_by(&source);
        if per_source && self.limits.max_per_source.is_some_and(|max| own >= max) {
            return self.displace(now, newcomer, |s, _| *s == source, Refusal::SourceLimit { held: own });
        }
        if self.slots < self.cap(now) {
            return Decision::Admit;
        }
        let largest = self.held.values().copied().max().unwrap_or(0);
        let scarce = self.is_scarce(now);
        if scarce {
            // Turning newcomers away at the lowered cap: keep it while they come.
            self.scarce = self.scarce.map(|(cap, until)| (cap, until.max(now.saturating_add(nanos(SCARCE_HOLD)))));
        }
        if self.limits.eviction_grace.is_none() {
            return match () {
                () if scarce && own + 2 > largest => Decision::Refuse(Refusal::OutOfResources { held: own }),
                () if newcomer => Decision::Wait(RECHECK),
                () => Decision::Admit,
            };
        }
        if largest >= own + 2 {
            if newcomer && self.evicting >= MAX_EVICTING {
                return Decision::Wait(RECHECK);
            }
            if let Some((id, idle)) = self.longest_idle(now, |_, held| held == largest) {
                self.evict(id, idle);
                return Decision::Admit;
            }
        }
        if scarce {
            // No displacing one's own: each would need a descriptor freed
            // first, and the backlog must drain fast.
            return Decision::Refuse(Refusal::OutOfResources { held: own });
        }
        self.displace(now, newcomer, |s, held| *s == source || held > own, Refusal::Full { held: own })
    }

    /// Evicts the connection longest without a completed message among the
    /// `candidates` (by source and the slots it holds) if it is past the
    /// grace, for the newcomer to take its slot; refuses the newcomer for
    /// `refusal` if there is none.
    fn displace(
        &mut self,
        now: u64,
        newcomer: bool,
        candidates: impl Fn(&Source, usize) -> bool,
        refusal: Refusal,
    ) -> Decision {
        let Some(grace) = self.limits.eviction_grace else { return Decision::Refuse(refusal) };
        match self.longest_idle(now, candidates) {
            Some((id, idle)) if idle > grace => {
                if newcomer && self.evicting >= MAX_EVICTING {
                    return Decision::Wait(RECHECK);
                }
                self.evict(id, idle);
                Decision::Admit
            }
            _ => Decision::Refuse(refusal),
        }
    }

    /// The connection that has gone longest without completing a message
    /// (ties: the oldest) among those holding a slot whose source and its
    /// slots are `candidates`, and how long that has been.
    fn longest_idle(&self, now: u64, candidates: impl Fn(&Source, usize) -> bool) -> Option<(u64, Duration)> {
        let (id, record) = self
            .open
            .iter()
            .filter(|(_, r)| !r.released && candidates(&r.source, self.held_by(&r.source)))
            .min_by_key(|(id, r)| (r.conn.progress(), **id))?;
        Some((*id, Duration::from_nanos(now.saturating_sub(record.conn.progress()))))
    }

    /// Closes connection `id` to make room; it had gone `idle`.
    fn evict(&mut self, id: u64, idle: Duration) {
        if let Some(record) = self.open.get(&id) {
            record.conn.evict(idle);
            self.release(id);
        }
    }

    /// Connection `id` no longer holds its slot: it is on its way out.
    fn release(&mut self, id: u64) {
        let Some(record) = self.open.get_mut(&id).filter(|r| !r.released) else { return };
        record.released = true;
        let source = record.source;
        self.give_back(source);
        self.evicting += 1;
    }

    /// One slot of `source`'s is free.
    fn give_back(&mut self, source: Source) {
        self.unhold(source);
        self.slots = self.slots.saturating_sub(1);
    }

    /// `source` holds one slot fewer (the slot itself may still be taken).
    fn unhold(&mut self, source: Source) {
        if let Some(held) = self.held.get_mut(&source) {
            *held -= 1;
            if *held == 0 {
                self.held.remove(&source);
            }
        }
    }

    /// Registers a newcomer from `source` that was [admitted](Decision::Admit),
    /// active until [`ended`](Registry::ended), and returns its id (from 1).
    pub(crate) fn admit(&mut self, conn: Arc<C>, source: Source) -> u64 {
        self.next_id += 1;
        self.active += 1;
        self.open.insert(self.next_id, Record { conn, source, released: false });
        *self.held.entry(source).or_insert(0) += 1;
        self.slots += 1;
        self.next_id
    }

    /// Counts a newcomer that was [refused](Decision::Refuse), closed
    /// unserved, and returns its id (ids count every connection accepted).
    pub(crate) fn refused(&mut self) -> u64 {
        self.next_id += 1;
        self.totals.connections += 1;
        self.totals.refused += 1;
        self.next_id
    }

    /// Connection `id`, admitted, turns out to come from `source` (behind a
    /// proxy, say): it now counts for `source`, as a newcomer from it would,
    /// its own slot set aside. [`Decision::Admit`]: it counts for `source`
    /// now (a connection may have been evicted for it); also when `id` is
    /// no longer registered or already on its way out, left as it is.
    /// [`Decision::Refuse`]: it has been told to close
    /// ([`Entry::refuse`]) and gave up its slot; its owner should end it
    /// with [`Error::Refused`](crate::Error::Refused). Never
    /// [`Decision::Wait`]: it keeps its slot where a newcomer would wait.
    pub(crate) fn identify(&mut self, id: u64, source: Source, now: u64) -> Decision {
        let Some(old) = self.open.get(&id).filter(|r| !r.released).map(|r| r.source) else {
            return Decision::Admit;
        };
        if old == source {
            return Decision::Admit;
        }
        self.give_back(old);
        let decision = self.place(source, now, false, true);
        let Some(record) = self.open.get_mut(&id) else { return Decision::Admit };
        match decision {
            Decision::Refuse(reason) => {
                // Its slot is given back already: on its way out as an evicted one.
                record.released = true;
                record.conn.refuse(reason);
                self.evicting += 1;
                decision
            }
            Decision::Admit | Decision::Wait(_) => {
                record.source = source;
                *self.held.entry(source).or_insert(0) += 1;
                self.slots += 1;
                Decision::Admit
            }
        }
    }

    /// The process ran out of descriptors, memory or threads (`accept()`
    /// failed, or a connection's thread could not start): whoever the
    /// newcomer is, the largest source's connection longest without a
    /// completed message is evicted if that source holds 2 or more (unless
    /// one is on its way out already, or `eviction_grace` is `None`); then
    /// the cap becomes the slots held, so that what the evicted one frees
    /// is room to accept and refuse in, not a slot. The cap holds for
    /// [`SCARCE_HOLD`] after the last failure or the last newcomer turned
    /// away at it.
    pub(crate) fn out_of_resources(&mut self, now: u64) {
        let largest = self.held.values().copied().max().unwrap_or(0);
        if self.evicting == 0
            && self.limits.eviction_grace.is_some()
            && largest >= 2
            && let Some((id, idle)) = self.longest_idle(now, |_, held| held == largest)
        {
            self.evict(id, idle);
        }
        self.scarce = Some((self.slots.max(1), now.saturating_add(nanos(SCARCE_HOLD))));
    }

    /// Takes connection `id` out of the registry: nothing is signalled to it
    /// any more, so its flags can be read for [`ended`](Registry::ended).
    pub(crate) fn leave(&mut self, id: u64) -> Option<Arc<C>> {
        let record = self.open.remove(&id)?;
        if !record.released {
            // Its source no longer holds it, but its socket may still be
            // open: the slot is free once it has [ended](Registry::ended), so
            // that open sockets never outnumber the cap (plus those evicted).
            self.unhold(record.source);
        }
        Some(record.conn)
    }

    /// Counts a connection that has ended, after it [left](Registry::leave),
    /// with its [`Flags`] and whether it `failed` in an error.
    pub(crate) fn ended(&mut self, summary: &Summary, flags: Flags, failed: bool) {
        self.active -= 1;
        if flags.evicted || flags.refused {
            self.evicting = self.evicting.saturating_sub(1);
        } else {
            // Evicted and refused ones gave their slot back when told.
            self.slots = self.slots.saturating_sub(1);
        }
        self.totals.count(summary, flags.forced, flags.evicted, flags.refused, failed);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A connection that records what it was told.
    #[derive(Default)]
    pub(crate) struct Probe {
        progress: u64,
        evicted: Mutex<Option<Duration>>,
        refused: Mutex<Option<Refusal>>,
        ended: AtomicBool,
        forced: AtomicBool,
    }

    impl Probe {
        pub(crate) fn at(progress: u64) -> Arc<Probe> {
            Arc::new(Probe { progress, ..Probe::default() })
        }
        fn evicted(&self) -> Option<Duration> {
            *self.evicted.lock().expect("not poisoned")
        }
        fn refusal(&self) -> Option<Refusal> {
            *self.refused.lock().expect("not poisoned")
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
        fn is_refused(&self) -> bool {
            self.refusal().is_some()
        }
        fn is_forced(&self) -> bool {
            self.forced.load(Ordering::Relaxed)
        }
        fn evict(&self, idle: Duration) {
            *self.evicted.lock().expect("not poisoned") = Some(idle);
        }
        fn refuse(&self, reason: Refusal) {
            *self.refused.lock().expect("not poisoned") = Some(reason);
        }
        fn end_input(&self) {
            self.ended.store(true, Ordering::Relaxed);
        }
        fn force(&self) {
            self.forced.store(true, Ordering::Relaxed);
        }
    }

    const SECOND: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    /// Source `n`: 127.0.0.n.
    pub(crate) fn src(n: u8) -> Source {
        Source::V4(Ipv4Addr::new(127, 0, 0, n))
    }

    /// A registry capped at `max` connections, 1 s grace.
    fn registry(max: usize) -> Registry<Probe> {
        Registry::new(Limits::default().max_connections(max).eviction_grace(Some(Duration::from_secs(1))))
    }

    /// Admits a connection from `source` that last completed a message at `progress`.
    fn add(registry: &mut Registry<Probe>, source: Source, progress: u64) -> (u64, Arc<Probe>) {
        let conn = Probe::at(progress);
        (registry.admit(Arc::clone(&conn), source), conn)
    }

    /// Ends connection `id` as its runner would.
    fn end(registry: &mut Registry<Probe>, id: u64) {
        let left = registry.leave(id).expect("registered");
        registry.ended(&Summary::default(), Flags::of(&*left), false);
    }

    #[test]
    fn below_the_cap_every_newcomer_is_admitted() {
        let mut registry = registry(3);
        add(&mut registry, src(2), 0);
        add(&mut registry, src(2), 0);
        assert_eq!(registry.decide(src(2), 10 * SECOND), Decision::Admit);
        assert_eq!(registry.decide(src(3), 10 * SECOND), Decision::Admit);
        assert_eq!((registry.active(), registry.held_by(&src(2)), registry.held_by(&src(3))), (2, 2, 0));
    }

    #[test]
    fn one_source_at_the_cap_evicts_its_longest_idle_past_the_grace_or_is_refused() {
        let mut registry = registry(2);
        let (_, recent) = add(&mut registry, src(2), 2 * SECOND);
        let (old_id, old) = add(&mut registry, src(2), SECOND);
        // Within the grace: refused at once, nobody evicted.
        let full = Decision::Refuse(Refusal::Full { held: 2 });
        assert_eq!(registry.decide(src(2), 2 * SECOND - 10 * MS), full);
        assert!(old.evicted().is_none() && recent.evicted().is_none());
        // Past it: the one longest without a message goes, with how long it had been idle.
        assert_eq!(registry.decide(src(2), 3 * SECOND), Decision::Admit);
        assert_eq!(old.evicted(), Some(Duration::from_secs(2)));
        assert!(recent.evicted().is_none());
        assert_eq!(registry.held_by(&src(2)), 1, "the evicted one no longer holds a slot");
        add(&mut registry, src(2), 3 * SECOND);
        // The victim is still running, but the count is right once it ends.
        assert_eq!(registry.active(), 3);
        end(&mut registry, old_id);
        assert_eq!((registry.active(), registry.totals().evicted, registry.totals().errors), (2, 1, 0));
    }

    #[test]
    fn a_source_holding_two_more_loses_its_longest_idle_without_grace() {
        let mut registry = registry(4);
        let (_, other) = add(&mut registry, src(3), SECOND / 2);
        let hoarded: Vec<_> = (0..3).map(|i| add(&mut registry, src(2), SECOND + i * MS)).collect();
        // 127.0.0.2 holds 3, a newcomer from 127.0.0.4 would hold 1: the
        // hoarder's longest idle goes, however recent its last message.
        let now = SECOND + 10 * MS;
        assert_eq!(registry.decide(src(4), now), Decision::Admit);
        assert_eq!(hoarded[0].1.evicted(), Some(Duration::from_millis(10)));
        assert!(other.evicted().is_none(), "the longest idle of all, but not the largest source");
        add(&mut registry, src(4), now);
        // 127.0.0.3 (holding 1) against 2: one more is not two more, and
        // nobody is past the grace: refused.
        assert_eq!(registry.decide(src(3), now), Decision::Refuse(Refusal::Full { held: 1 }));
        assert!(hoarded[1].1.evicted().is_none() && other.evicted().is_none());
    }

    #[test]
    fn otherwise_a_source_displaces_only_its_own_or_those_holding_one_more() {
        let mut registry = registry(5);
        let (_, a) = add(&mut registry, src(2), 0);
        let (_, a2) = add(&mut registry, src(2), 0);
        let (_, b) = add(&mut registry, src(3), SECOND);
        let (_, b2) = add(&mut registry, src(3), SECOND);
        let (_, c) = add(&mut registry, src(4), 2 * SECOND);
        // 127.0.0.4 holds 1, the others 2 (one more): the longest idle of
        // theirs and its own, past the grace, goes (of a tie, the oldest).
        assert_eq!(registry.decide(src(4), 10 * SECOND), Decision::Admit);
        assert_eq!(a.evicted(), Some(Duration::from_secs(10)));
        add(&mut registry, src(4), 10 * SECOND);
        // Now 1, 2, 2: a newcomer from 127.0.0.3 (holding as many as anyone)
        // takes only its own, though 127.0.0.2's has been idle longer.
        assert_eq!(registry.decide(src(3), 10 * SECOND), Decision::Admit);
        assert!(b.is_evicted() && !b2.is_evicted() && !a2.is_evicted() && !c.is_evicted());
        add(&mut registry, src(3), 10 * SECOND);
        assert_eq!(registry.decide(src(3), 10 * SECOND), Decision::Admit);
        assert!(b2.is_evicted());
        add(&mut registry, src(3), 10 * SECOND);
        // Its own are all recent now: refused, nobody else touched.
        assert_eq!(registry.decide(src(3), 10 * SECOND + MS), Decision::Refuse(Refusal::Full { held: 2 }));
        assert!(!a2.is_evicted() && !c.is_evicted());
    }

    #[test]
    fn without_a_grace_nobody_is_evicted_and_newcomers_wait() {
        let mut registry = Registry::<Probe>::new(Limits::default().max_connections(2).eviction_grace(None));
        let (_, a) = add(&mut registry, src(2), 0);
        let (_, b) = add(&mut registry, src(2), 0);
        assert_eq!(registry.decide(src(3), 1000 * SECOND), Decision::Wait(RECHECK));
        assert!(a.evicted().is_none() && b.evicted().is_none());
    }

    #[test]
    fn a_source_at_max_per_source_evicts_its_own_past_the_grace_or_is_refused() {
        let limits = Limits::default().max_connections(100).max_per_source(Some(2));
        let mut registry = Registry::<Probe>::new(limits.eviction_grace(Some(Duration::from_secs(1))));
        let (_, old) = add(&mut registry, src(2), 0);
        let (_, recent) = add(&mut registry, src(2), 5 * SECOND);
        let (_, other) = add(&mut registry, src(3), 0);
        // Far below the cap, but at its own.
        assert_eq!(registry.decide(src(2), 5 * SECOND), Decision::Admit);
        assert_eq!(old.evicted(), Some(Duration::from_secs(5)));
        add(&mut registry, src(2), 5 * SECOND);
        assert_eq!(registry.decide(src(2), 5 * SECOND), Decision::Refuse(Refusal::SourceLimit { held: 2 }));
        assert!(recent.evicted().is_none() && other.evicted().is_none());
        assert_eq!(registry.decide(src(3), 5 * SECOND), Decision::Admit, "others are not limited by it");
    }

    #[test]
    fn a_trusted_proxys_connections_are_capped_as_their_clients_not_as_the_proxy() {
        let limits = Limits::default().max_connections(100).max_per_source(Some(1));
        let mut registry = Registry::<Probe>::new(limits.eviction_grace(Some(Duration::from_secs(1))));
        let proxy = src(9);
        // Three clients behind the proxy arrive at once, their headers not read yet.
        let (first, _) = add(&mut registry, proxy, SECOND);
        assert_eq!(registry.decide_with(proxy, SECOND, false), Decision::Admit);
        let (second, _) = add(&mut registry, proxy, SECOND);
        assert_eq!(registry.decide_with(proxy, SECOND, false), Decision::Admit);
        let (third, third_conn) = add(&mut registry, proxy, SECOND);
        // The same burst from a plain peer is capped.
        assert_eq!(registry.decide(proxy, SECOND), Decision::Refuse(Refusal::SourceLimit { held: 3 }));
        // Once identified, each counts as its client, and is capped as one.
        assert_eq!(registry.identify(first, src(2), SECOND), Decision::Admit);
        assert_eq!(registry.identify(second, src(3), SECOND), Decision::Admit);
        assert_eq!(registry.identify(third, src(2), SECOND), Decision::Refuse(Refusal::SourceLimit { held: 1 }));
        assert!(third_conn.is_refused());
        assert_eq!((registry.held_by(&proxy), registry.held_by(&src(2)), registry.held_by(&src(3))), (0, 1, 1));
    }

    #[test]
    fn out_of_resources_the_cap_is_the_slots_held_for_a_while() {
        let mut registry = registry(1024);
        let (_, a_old) = add(&mut registry, src(2), SECOND);
        let (_, a) = add(&mut registry, src(2), 2 * SECOND);
        let (_, b) = add(&mut registry, src(3), 0);
        // accept() failed (the newcomer unknown): the largest source, holding
        // 2 or more, loses its longest idle, grace or not.
        registry.out_of_resources(2 * SECOND);
        assert!(a_old.is_evicted() && a.evicted().is_none() && b.evicted().is_none());
        // Nothing more is evicted while that one is on its way out.
        registry.out_of_resources(2 * SECOND);
        assert!(a.evicted().is_none());
        // The cap is now the 2 slots held: what the evicted one frees is room
        // to accept in, not a slot. A newcomer holding as many as anyone, or
        // one less, is refused at once, though 127.0.0.3's is idle past the grace.
        let scarce = |held| Decision::Refuse(Refusal::OutOfResources { held });
        assert_eq!(registry.decide(src(2), 2 * SECOND + MS), scarce(1));
        assert_eq!(registry.decide(src(4), 2 * SECOND + MS), scarce(0));
        assert!(!b.is_evicted());
        // One holding two less is admitted at the largest's expense.
        let (_, c) = add(&mut registry, src(3), 2 * SECOND);
        assert_eq!(registry.decide(src(4), 2 * SECOND + MS), Decision::Admit);
        assert!(b.is_evicted() && !c.is_evicted() && !a.is_evicted());
        // Each newcomer turned away keeps the cap a second longer.
        let later = 2 * SECOND + MS + nanos(SCARCE_HOLD);
        assert_eq!(registry.decide(src(2), later - MS), scarce(1));
        assert_eq!(registry.decide(src(2), later), scarce(1));
        // A second after the last, the cap is max_connections again.
        assert_eq!(registry.decide(src(2), later + nanos(SCARCE_HOLD)), Decision::Admit);
        // With nobody in the registry, nothing to evict and no panic.
        let mut empty = self::registry(4);
        empty.out_of_resources(0);
        assert_eq!(empty.decide(src(2), 0), Decision::Admit, "the cap is at least 1");
    }

    #[test]
    fn out_of_resources_connections_that_end_make_room_for_anyone() {
        let mut registry = registry(1024);
        let hoarded: Vec<_> = (0..3).map(|i| add(&mut registry, src(2), i * MS)).collect();
        add(&mut registry, src(3), 0);
        registry.out_of_resources(SECOND);
        assert!(hoarded[0].1.is_evicted());
        assert_eq!(registry.decide(src(2), SECOND), Decision::Refuse(Refusal::OutOfResources { held: 2 }));
        // One of its own ends: a slot, for its next newcomer too.
        end(&mut registry, hoarded[1].0);
        assert_eq!(registry.decide(src(2), SECOND), Decision::Admit);
        // Without a grace nobody is evicted; at the cap the largest's
        // newcomers are refused, others wait as they would.
        let mut never = Registry::<Probe>::new(Limits::default().eviction_grace(None));
        let (_, kept) = add(&mut never, src(2), 0);
        add(&mut never, src(2), 0);
        add(&mut never, src(4), 0);
        never.out_of_resources(SECOND);
        assert!(!kept.is_evicted());
        assert_eq!(never.decide(src(2), SECOND), Decision::Refuse(Refusal::OutOfResources { held: 2 }));
        assert_eq!(never.decide(src(4), SECOND), Decision::Refuse(Refusal::OutOfResources { held: 1 }));
        assert_eq!(never.decide(src(3), SECOND), Decision::Wait(RECHECK), "it would be admitted with eviction");
    }

    #[test]
    fn evictions_on_their_way_out_are_bounded() {
        let mut registry = registry(MAX_EVICTING + 1);
        let hoarded: Vec<_> = (0..=MAX_EVICTING).map(|_| add(&mut registry, src(2), 0)).collect();
        for _ in 0..MAX_EVICTING {
            assert_eq!(registry.decide(src(3), 10 * SECOND), Decision::Admit);
            add(&mut registry, src(3), SECOND);
        }
        // One more would need an eviction beyond the bound: wait for one to end.
        assert_eq!(registry.decide(src(4), 10 * SECOND), Decision::Wait(RECHECK));
        assert!(hoarded[0].1.is_evicted());
        end(&mut registry, hoarded[0].0);
        assert_eq!(registry.decide(src(4), 10 * SECOND), Decision::Admit);
    }

    #[test]
    fn identify_moves_a_connection_to_its_real_source_under_the_same_policy() {
        let limits = Limits::default().max_connections(4).max_per_source(Some(2));
        let mut registry = Registry::<Probe>::new(limits.eviction_grace(Some(Duration::from_secs(1))));
        let proxy = src(9);
        let (first, _) = add(&mut registry, proxy, 0);
        assert_eq!(registry.identify(first, src(2), SECOND), Decision::Admit);
        assert_eq!((registry.held_by(&proxy), registry.held_by(&src(2))), (0, 1));
        let (second, _) = add(&mut registry, proxy, 5 * SECOND);
        assert_eq!(registry.identify(second, src(2), 5 * SECOND), Decision::Admit);
        // A third from 127.0.0.2: at its limit, its own longest idle (the
        // first, past the grace) goes.
        let (third, third_conn) = add(&mut registry, proxy, 5 * SECOND);
        assert_eq!(registry.identify(third, src(2), 5 * SECOND), Decision::Admit);
        assert_eq!(registry.held_by(&src(2)), 2);
        // A fourth: the other two are recent, so this one is refused, told so,
        // and holds no slot; counted as refused once it ends.
        let (fourth, fourth_conn) = add(&mut registry, proxy, 5 * SECOND);
        let refused = Decision::Refuse(Refusal::SourceLimit { held: 2 });
        assert_eq!(registry.identify(fourth, src(2), 5 * SECOND), refused);
        assert_eq!(fourth_conn.refusal(), Some(Refusal::SourceLimit { held: 2 }));
        assert!(third_conn.evicted().is_none());
        assert_eq!((registry.held_by(&proxy), registry.held_by(&src(2))), (0, 2));
        end(&mut registry, fourth);
        assert_eq!((registry.totals().refused, registry.totals().errors), (1, 0));
        // Identifying again, or a connection gone, changes nothing.
        assert_eq!(registry.identify(third, src(2), 5 * SECOND), Decision::Admit);
        assert_eq!(registry.identify(fourth, src(3), 5 * SECOND), Decision::Admit);
        assert_eq!(registry.held_by(&src(3)), 0);
    }

    #[test]
    fn a_refused_newcomer_is_counted_and_takes_an_id() {
        let mut registry = registry(1);
        let (id, _) = add(&mut registry, src(2), 0);
        assert_eq!(registry.refused(), id + 1);
        let totals = registry.totals();
        assert_eq!((totals.connections, totals.refused, totals.errors, registry.active()), (1, 1, 0, 1));
    }

    #[test]
    fn stopping_ends_every_input_once_and_forcing_is_counted() {
        let mut registry = registry(8);
        let (id_a, a) = add(&mut registry, src(2), 0);
        let (id_b, b) = add(&mut registry, src(2), 0);
        assert!(registry.stop());
        assert!(registry.stopping() && a.ended() && b.ended());
        assert!(!registry.stop(), "a second stop does nothing");
        end(&mut registry, id_a);
        registry.force_all();
        assert!(b.is_forced());
        assert_eq!(registry.final_totals().unfinished, 1);
        let left = registry.leave(id_b).expect("registered");
        registry.ended(&Summary::default(), Flags::of(&*left), true);
        let totals = registry.final_totals();
        assert_eq!((totals.connections, totals.force_closed, totals.errors, totals.unfinished), (2, 1, 0, 0));
    }

    #[test]
    fn a_connection_leaves_once_and_gives_its_slot_back() {
        let mut registry = registry(8);
        let (id, _) = add(&mut registry, src(2), 0);
        assert!(registry.leave(id).is_some());
        assert!(registry.leave(id).is_none(), "left once");
        assert_eq!(registry.held_by(&src(2)), 0);
        registry.ended(&Summary::default(), Flags::default(), true);
        assert_eq!((registry.active(), registry.totals().errors), (0, 1));
    }

    #[test]
    fn a_slot_is_free_once_its_connection_has_ended_not_when_it_leaves() {
        let limits = Limits::default().max_connections(1).eviction_grace(None);
        let mut registry = Registry::<Probe>::new(limits);
        let (id, _) = add(&mut registry, src(2), 0);
        // Left the registry, its socket still open: no room yet, so open
        // sockets never outnumber the cap.
        registry.leave(id).expect("registered");
        assert_eq!(registry.decide(src(3), SECOND), Decision::Wait(RECHECK));
        registry.ended(&Summary::default(), Flags::default(), false);
        assert_eq!(registry.decide(src(3), SECOND), Decision::Admit);
    }
}
