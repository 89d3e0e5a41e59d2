//! What keeps a [`DatagramServer`](super::DatagramServer) from looping or
//! reflecting: the datagrams it never answers, the rate limits (per source
//! and in total) and the counts of both.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime};

use super::{Dropped, ERROR_PREFIX};
use crate::Error;
use crate::bounds::Bound;
use crate::vocabulary::Source;
use crate::wire::{Header, parse_header};

impl Dropped {
    /// Why any server would drop `message` whatever its sender: `Some` for a
    /// message that looks like a reply or an error datagram. Such a message
    /// cannot be echoed over UDP ([`DatagramClient`](super::DatagramClient)
    /// refuses it before sending, with [`MessageError::Unanswerable`](crate::MessageError::Unanswerable)).
    ///
    /// ```
    /// use stamp_echo::datagram::Dropped;
    ///
    /// assert_eq!(Dropped::for_message(b"[2026-11-26T05:12:48Z] hi"), Some(Dropped::LooksLikeReply));
    /// assert_eq!(Dropped::for_message(b"error: no"), Some(Dropped::ErrorDatagram));
    /// assert_eq!(Dropped::for_message(b"[x]y"), None); // no space: not a header
    /// assert_eq!(Dropped::for_message(b"hi [x] "), None);
    /// ```
    pub fn for_message(message: &[u8]) -> Option<Dropped> {
        if message.starts_with(ERROR_PREFIX.as_bytes()) {
            return Some(Dropped::ErrorDatagram);
        }
        match parse_header(message) {
            Header::Complete { .. } => Some(Dropped::LooksLikeReply),
            Header::Incomplete | Header::Invalid(_) => None,
        }
    }
}

/// Datagrams dropped, by [reason](Dropped).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DropCounts {
    /// [`Dropped::LooksLikeReply`].
    pub looks_like_reply: u64,
    /// [`Dropped::ErrorDatagram`].
    pub error_datagram: u64,
    /// [`Dropped::OwnAddress`].
    pub own_address: u64,
    /// [`Dropped::ServicePort`].
    pub service_port: u64,
    /// [`Dropped::InvalidSource`].
    pub invalid_source: u64,
    /// [`Dropped::RateLimited`].
    pub rate_limited: u64,
    /// [`Dropped::TotalLimited`].
    pub total_limited: u64,
}

impl DropCounts {
    /// The count for `reason`.
    pub fn get(&self, reason: Dropped) -> u64 {
        *self.slot(reason)
    }

    /// Counts one more datagram dropped for `reason`, and returns the new count.
    pub fn record(&mut self, reason: Dropped) -> u64 {
        let slot = self.slot_mut(reason);
        *slot += 1;
        *slot
    }

    /// Every datagram dropped, whatever the reason.
    pub fn total(&self) -> u64 {
        Dropped::ALL.iter().map(|&reason| self.get(reason)).sum()
    }

    fn slot(&self, reason: Dropped) -> &u64 {
        match reason {
            Dropped::LooksLikeReply => &self.looks_like_reply,
            Dropped::ErrorDatagram => &self.error_datagram,
            Dropped::OwnAddress => &self.own_address,
            Dropped::ServicePort => &self.service_port,
            Dropped::InvalidSource => &self.invalid_source,
            Dropped::RateLimited => &self.rate_limited,
            Dropped::TotalLimited => &self.total_limited,
        }
    }

    fn slot_mut(&mut self, reason: Dropped) -> &mut u64 {
        match reason {
            Dropped::LooksLikeReply => &mut self.looks_like_reply,
            Dropped::ErrorDatagram => &mut self.error_datagram,
            Dropped::OwnAddress => &mut self.own_address,
            Dropped::ServicePort => &mut self.service_port,
            Dropped::InvalidSource => &mut self.invalid_source,
            Dropped::RateLimited => &mut self.rate_limited,
            Dropped::TotalLimited => &mut self.total_limited,
        }
    }
}

impl fmt::Display for DropCounts {
    /// `3 dropped (2 looks like a reply, 1 rate limited)`, or `0 dropped`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} dropped", self.total())?;
        let mut open = " (";
        for reason in Dropped::ALL {
            let n = self.get(reason);
            if n > 0 {
                write!(f, "{open}{n} {reason}")?;
                open = ", ";
            }
        }
        if open == ", " {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// What one [`serve`](super::DatagramServer::serve) call did.
///
/// Each datagram received counts in exactly one of
/// [`messages`](DatagramTotals::messages), [`errors`](DatagramTotals::errors) and
/// [`dropped`](DatagramTotals::dropped).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DatagramTotals {
    /// Datagrams received.
    pub datagrams: u64,
    /// Datagrams answered with their echo.
    pub messages: u64,
    /// Datagrams answered with an error datagram.
    pub errors: u64,
    /// Datagrams not answered, by reason.
    pub dropped: DropCounts,
    /// Bytes received, in every datagram.
    pub bytes_in: u64,
    /// Bytes sent, in echoes and error datagrams.
    pub bytes_out: u64,
}

impl fmt::Display for DatagramTotals {
    /// One line: `5 datagrams, 3 answered, 1 error, 1 dropped (1 rate limited), 40 bytes in, 91 bytes out`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        write!(
            f,
            "{} datagram{}, {} answered, {} error{}, {}, {} byte{} in, {} byte{} out",
            self.datagrams,
            plural(self.datagrams),
            self.messages,
            self.errors,
            plural(self.errors),
            self.dropped,
            self.bytes_in,
            plural(self.bytes_in),
            self.bytes_out,
            plural(self.bytes_out),
        )
    }
}

/// How many replies a [`DatagramServer`](super::DatagramServer) sends: to
/// each source, and to all sources together.
///
/// **Per source.** A source is an IPv4 address (an IPv4-mapped IPv6 address
/// counts as its IPv4 address) or an IPv6 /64 (what one host or site
/// usually holds); the port does not count. Each source may get
/// [`burst`](RateLimit::burst) replies at once, then
/// [`replies`](RateLimit::replies) per [`per`](RateLimit::per); datagrams
/// over that are dropped unanswered ([`Dropped::RateLimited`]).
///
/// **All together.** The server sends at most [`total`](RateLimit::total)
/// replies a second to all sources together, in bursts of as many; datagrams
/// over that are dropped unanswered ([`Dropped::TotalLimited`]). Thousands
/// of forged sources, each within its own limit, still cannot make the
/// server a reflector at its full throughput: at worst they use up the
/// total, and other clients go unanswered while they do (raise it to what
/// your clients need, and what you accept to reflect).
///
/// Echoes and error datagrams both count, in both limits.
///
/// | Setting | Default | Accepted |
/// |---|---|---|
/// | `replies` per `per` | 100 per second | 1 to 1,000,000 per 1 ms to 1 day |
/// | `burst` | 100 | 1 to 1,000,000 |
/// | `total` | 10,000 a second | 1 to 10,000,000 |
/// | `buckets` | 16,384 (128 KiB) | 2 to 1,048,576 |
///
/// ## No source is ever forgotten
///
/// The per-source limit keeps no table of sources, so there is none a
/// source could be pushed out of, to come back with a fresh burst. It is a
/// fixed array of [`buckets`](RateLimit::buckets), allocated once when the
/// limit is set, in two rows: a keyed random hash maps each source to one
/// bucket in each row, and a bucket holds the debt of every source mapped to
/// it (the instant until which their replies are paid for, as in the generic
/// cell rate algorithm). A source's debt is the smaller of its two buckets',
/// and a reply to it raises both to at least its new debt. So each bucket's
/// debt is at least that of every source in it, and **no source ever gets
/// more than `burst` + `replies` per `per` over any stretch of time, whatever
/// other sources send**: exactly, for every address, with nothing stored per
/// address. Memory is 8 bytes a bucket whatever arrives; each datagram costs
/// one hash and two buckets.
///
/// The price is sharing: a source is limited before its own limit only when,
/// in both rows, it shares its bucket with sources over their limit (one, or
/// several whose replies together are). With the default 8,192 buckets a
/// row, while 1,000 sources are over their limits about 1 other source in 75
/// shares both its buckets with them and waits its turn; the hash is keyed
/// at random, so a sender cannot aim at another's buckets.
///
/// ## The clock
///
/// Debts are paid by the server's [clock](super::DatagramServer::clock): a
/// clock set back pays nothing until it moves forward again (readings
/// up to a second apart from threads that read it at nearly the same time
/// count as one), one set forward pays at most every debt.
///
/// ```
/// use std::time::Duration;
/// use stamp_echo::datagram::RateLimit;
///
/// let limit = RateLimit::default().replies(10, Duration::from_secs(60)).burst(5).total(1_000);
/// limit.validate()?;
/// assert!(RateLimit::default().burst(0).validate().is_err());
/// # Ok::<(), stamp_echo::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// Replies a source gets per [`per`](RateLimit::per), once its burst is
    /// used (default 100).
    pub replies: u32,
    /// The period of [`replies`](RateLimit::replies) (default 1 s).
    pub per: Duration,
    /// Replies a source may get at once (default 100).
    pub burst: u32,
    /// Replies a second to all sources together, in bursts of as many
    /// (default 10,000).
    pub total: u32,
    /// The buckets sources are hashed into (default 16,384; rounded up to
    /// an even number, two rows of half). Each takes 8 bytes: 128 KiB by
    /// default.
    pub buckets: usize,
}

impl RateLimit {
    /// Default for [`RateLimit::replies`].
    pub const DEFAULT_REPLIES: u32 = 100;
    /// Default for [`RateLimit::per`].
    pub const DEFAULT_PER: Duration = Duration::from_secs(1);
    /// Default for [`RateLimit::burst`].
    pub const DEFAULT_BURST: u32 = 100;
    /// Default for [`RateLimit::total`].
    pub const DEFAULT_TOTAL: u32 = 10_000;
    /// Default for [`RateLimit::buckets`].
    pub const DEFAULT_BUCKETS: usize = 16_384;
    /// The largest [`replies`](RateLimit::replies) and
    /// [`burst`](RateLimit::burst).
    pub const MAX_REPLIES: u32 = 1_000_000;
    /// The largest [`total`](RateLimit::total).
    pub const MAX_TOTAL: u32 = 10_000_000;
    /// The largest [`buckets`](RateLimit::buckets).
    pub const MAX_BUCKETS: usize = 1 << 20;
    /// The range of [`RateLimit::replies`], with its default.
    pub const REPLIES: Bound<u32> =
        Bound::new("replies", 1, Self::MAX_REPLIES).with_default(Self::DEFAULT_REPLIES).with_unit("replies");
    /// The range of [`RateLimit::per`], with its default: 1 ms to 1 day.
    pub const PER: Bound<Duration> =
        Bound::new("per", Duration::from_millis(1), Duration::from_secs(86_400)).with_default(Self::DEFAULT_PER);
    /// The range of [`RateLimit::burst`], with its default.
    pub const BURST: Bound<u32> =
        Bound::new("burst", 1, Self::MAX_REPLIES).with_default(Self::DEFAULT_BURST).with_unit("replies");
    /// The range of [`RateLimit::total`], with its default.
    pub const TOTAL: Bound<u32> =
        Bound::new("total", 1, Self::MAX_TOTAL).with_default(Self::DEFAULT_TOTAL).with_unit("replies a second");
    /// The range of [`RateLimit::buckets`], with its default (at least 2:
    /// two rows of at least one).
    pub const BUCKETS: Bound<usize> =
        Bound::new("buckets", 2, Self::MAX_BUCKETS).with_default(Self::DEFAULT_BUCKETS).with_unit("buckets");

    /// The default limit with `replies` per second and a burst of as many
    /// for each source (the [`total`](RateLimit::total) stays the default).
    #[must_use]
    pub fn per_second(replies: u32) -> RateLimit {
        RateLimit { replies, per: Duration::from_secs(1), burst: replies, ..RateLimit::default() }
    }

    /// Sets [`RateLimit::replies`] per [`RateLimit::per`].
    #[must_use]
    pub fn replies(mut self, replies: u32, per: Duration) -> RateLimit {
        self.replies = replies;
        self.per = per;
        self
    }

    /// Sets [`RateLimit::burst`].
    #[must_use]
    pub fn burst(mut self, burst: u32) -> RateLimit {
        self.burst = burst;
        self
    }

    /// Sets [`RateLimit::total`].
    #[must_use]
    pub fn total(mut self, total: u32) -> RateLimit {
        self.total = total;
        self
    }

    /// Sets [`RateLimit::buckets`].
    #[must_use]
    pub fn buckets(mut self, buckets: usize) -> RateLimit {
        self.buckets = buckets;
        self
    }

    /// Checks every setting is within its bounds (see the table above).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first setting out of range and its value.
    pub fn validate(&self) -> Result<(), Error> {
        Self::REPLIES.check(self.replies)?;
        Self::PER.check(self.per)?;
        Self::BURST.check(self.burst)?;
        Self::TOTAL.check(self.total)?;
        Self::BUCKETS.check(self.buckets)?;
        Ok(())
    }
}

impl Default for RateLimit {
    fn default() -> RateLimit {
        RateLimit {
            replies: Self::DEFAULT_REPLIES,
            per: Self::DEFAULT_PER,
            burst: Self::DEFAULT_BURST,
            total: Self::DEFAULT_TOTAL,
            buckets: Self::DEFAULT_BUCKETS,
        }
    }
}

/// Readings of the clock this far (in nanoseconds) behind the latest are
/// threads that read it at nearly the same time, not a clock set back.
const SET_BACK: u64 = 1_000_000_000;

/// The limits of [`RateLimit`]: a debt per bucket of sources (see
/// [there](RateLimit#no-source-is-ever-forgotten)) and one for all sources,
/// each an instant on the limiter's own clock, in nanoseconds.
#[derive(Debug)]
pub(super) struct Limiter {
    limit: RateLimit,
    hasher: RandomState,
    /// The two rows of per-source buckets, each of at least one.
    rows: [Box<[u64]>; 2],
    source: Pace,
    total: Pace,
    /// The debt of all sources together.
    total_debt: u64,
    /// The limiter's clock: nanoseconds of the server's clock counted
    /// forward since the first reading. It never goes back.
    elapsed: u64,
    /// The server's clock at the latest reading counted, in nanoseconds
    /// since 1970: `None` before the first.
    last: Option<u64>,
}

/// What a reply costs in one bucket, and how far ahead of the clock its
/// debt may run before replies stop.
#[derive(Clone, Copy, Debug)]
struct Pace {
    /// Nanoseconds a reply adds to the debt (rounded up: never more replies
    /// than the limit).
    cost: u64,
    /// The most a debt may be ahead of the clock and still pay for a reply:
    /// a burst less one reply.
    slack: u64,
}

impl Pace {
    fn new(per: Duration, replies: u32, burst: u32) -> Pace {
        let cost = per.as_nanos().div_ceil(u128::from(replies.max(1)));
        let cost = u64::try_from(cost).unwrap_or(u64::MAX).max(1);
        Pace { cost, slack: cost.saturating_mul(u64::from(burst.saturating_sub(1))) }
    }

    /// The debt after one more reply at `now`, or `None` over the limit.
    fn charge(self, debt: u64, now: u64) -> Option<u64> {
        let from = debt.max(now);
        (from - now <= self.slack).then(|| from.saturating_add(self.cost))
    }
}

impl Limiter {
    /// The limits of `limit`, which must be valid.
    pub(super) fn new(limit: RateLimit) -> Limiter {
        let width = limit.buckets.div_ceil(2).max(1);
        let row = || vec![0; width].into_boxed_slice();
        Limiter {
            limit,
            hasher: RandomState::new(),
            rows: [row(), row()],
            source: Pace::new(limit.per, limit.replies, limit.burst),
            total: Pace::new(Duration::from_secs(1), limit.total, limit.total),
            total_debt: 0,
            elapsed: 0,
            last: None,
        }
    }

    pub(super) fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Whether `source` may have a reply at `now`: if so, its buckets and
    /// the total pay for it; if not, why not (and nothing is paid).
    pub(super) fn check(&mut self, source: IpAddr, now: SystemTime) -> Result<(), Dropped> {
        let now = self.count(now);
        // One source is an IPv4 address or an IPv6 /64, as for the runners.
        let hash = self.hasher.hash_one(Source::from(source));
        let [first, second] = &mut self.rows;
        // Each row has at least one bucket, so the remainders are indices.
        let first = &mut first[(hash as u32 as usize) % first.len()];
        let second = &mut second[((hash >> 32) as usize) % second.len()];
        let debt = self.source.charge((*first).min(*second), now).ok_or(Dropped::RateLimited)?;
        self.total_debt = self.total.charge(self.total_debt, now).ok_or(Dropped::TotalLimited)?;
        *first = (*first).max(debt);
        *second = (*second).max(debt);
        Ok(())
    }

    /// Counts the clock forward to `now` and returns the limiter's clock.
    fn count(&mut self, now: SystemTime) -> u64 {
        let now =
            now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        match self.last {
            Some(last) if now >= last => {
                self.elapsed = self.elapsed.saturating_add(now - last);
                self.last = Some(now);
            }
            // A thread that read the clock just before another.
            Some(last) if last - now <= SET_BACK => {}
            // The first reading, or the clock set back: count on from here.
            _ => self.last = Some(now),
        }
        self.elapsed
    }
}

/// Why a datagram from `from` is never answered, whatever it holds:
/// `bound` is the server's own address.
pub(super) fn screen_source(from: SocketAddr, bound: SocketAddr) -> Option<Dropped> {
    let ip = from.ip().to_canonical();
    let invalid = match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4 == Ipv4Addr::BROADCAST,
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    if invalid || from.port() == 0 {
        return Some(Dropped::InvalidSource);
    }
    if from.port() == bound.port() && (ip == bound.ip().to_canonical() || ip.is_loopback() || is_local(ip)) {
        return Some(Dropped::OwnAddress);
    }
    if from.port() < 1024 {
        return Some(Dropped::ServicePort);
    }
    None
}

/// Whether `ip` is an address of this host: a socket can be bound to it.
/// Errs towards "local" where the system lets sockets bind any address.
fn is_local(ip: IpAddr) -> bool {
    UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(nanos: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    /// 10.0.x.y for `n` below 65,536: one of many other sources.
    fn other(n: u32) -> IpAddr {
        let [_, _, x, y] = n.to_be_bytes();
        IpAddr::V4(Ipv4Addr::new(10, 0, x, y))
    }

    impl Limiter {
        fn allow(&mut self, source: IpAddr, nanos: u64) -> bool {
            self.check(source, at(nanos)).is_ok()
        }
    }

    const T0: u64 = 1_000_000_000_000;
    const MS: u64 = 1_000_000;
    const SECOND: u64 = 1_000 * MS;
    const DAY: u64 = 86_400 * SECOND;

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let mut limiter = Limiter::new(RateLimit::default().replies(10, Duration::from_secs(1)).burst(3));
        let source = ip("192.0.2.1");
        let answered = (0..10).filter(|_| limiter.allow(source, T0)).count();
        assert_eq!(answered, 3);
        // 100 ms later, one more; 50 ms after that, none.
        assert!(limiter.allow(source, T0 + 100 * MS));
        assert!(!limiter.allow(source, T0 + 150 * MS));
        // Another source has its own bucket.
        assert!(limiter.allow(ip("192.0.2.2"), T0));
        // A long pause gives a burst, no more.
        let later = T0 + 3_600 * SECOND;
        assert_eq!((0..10).filter(|_| limiter.allow(source, later)).count(), 3);
    }

    #[test]
    fn a_clock_set_back_gives_nothing_and_then_counts_on() {
        let mut limiter = Limiter::new(RateLimit::default().replies(1, Duration::from_secs(1)).burst(1));
        let source = ip("192.0.2.1");
        let t0 = 10_000 * SECOND;
        assert!(limiter.allow(source, t0));
        assert!(!limiter.allow(source, t0 - 3_600 * SECOND), "set back an hour");
        assert!(limiter.allow(source, t0 - 3_600 * SECOND + SECOND), "a second later");
        // A reading a little behind the latest (another thread's) counts
        // nothing twice: the second from t0 + 0.4 s to t0 + 1.4 s is not
        // paid before the clock reaches t0 + 2 s again.
        let t1 = t0 - 3_600 * SECOND + SECOND;
        assert!(!limiter.allow(source, t1 + 900 * MS));
        assert!(!limiter.allow(source, t1 + 400 * MS), "slightly behind");
        assert!(!limiter.allow(source, t1 + 950 * MS));
        assert!(limiter.allow(source, t1 + SECOND));
    }

    #[test]
    fn mapped_addresses_are_their_ipv4_address_and_ipv6_counts_by_64() {
        let mut limiter = Limiter::new(RateLimit::default().burst(1));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert!(limiter.allow(ip("192.0.2.1"), 5));
        assert!(!limiter.allow(mapped, 5));
        assert!(limiter.allow(ip("2001:db8::1"), 5));
        assert!(!limiter.allow(ip("2001:db8::ffff:1"), 5), "the same /64");
        assert!(limiter.allow(ip("2001:db8:0:1::1"), 5), "the next /64");
    }

    #[test]
    fn a_source_pushed_by_thousands_of_others_gets_no_new_burst() {
        // The victim sends 1,000 datagrams a second for 3 s; between two of
        // them, 200 datagrams from 6,000 other addresses in turn (200,000 a
        // second, 33 a second each: none over its own limit). A table of
        // sources would forget the victim and give it a burst again and again.
        let mut limiter = Limiter::new(RateLimit::default().total(RateLimit::MAX_TOTAL));
        let victim = ip("192.0.2.1");
        let (mut answered, mut others_answered, mut n) = (0u64, 0u64, 0u32);
        for step in 0..3_000 {
            let now = T0 + step * MS;
            for _ in 0..200 {
                n = (n + 1) % 6_000;
                others_answered += u64::from(limiter.allow(other(n), now));
            }
            answered += u64::from(limiter.allow(victim, now));
        }
        // Its burst, then 100 a second for the 2.999 s after its first.
        let bound = 100 + 2_999 * MS / (10 * MS);
        assert!(answered <= bound, "{answered} replies (bound {bound})");
        assert!(answered + 2 >= bound, "{answered} replies: limited by others (bound {bound})");
        // Nearly every other source, well within its limit, is answered too.
        assert!(others_answered * 100 >= 99 * 600_000, "{others_answered} of 600,000");
    }

    #[test]
    fn sources_over_their_limits_hold_up_few_others() {
        // 1,000 sources send 1,000 datagrams a second each for 200 ms; at
        // the last millisecond, 10,000 others send one datagram each.
        let mut limiter = Limiter::new(RateLimit::default().total(RateLimit::MAX_TOTAL));
        let last = T0 + 199 * MS;
        for now in (T0..=last).step_by(MS as usize) {
            for n in 0..1_000 {
                limiter.allow(other(n), now);
            }
        }
        let held_up = (1_000..11_000).filter(|&n| !limiter.allow(other(n), last)).count();
        // Those sharing both buckets with a busy source: about 1.3%,
        // (1 - e^(-1000/8192))^2, less those whose busy source has a reply
        // to come.
        assert!((1..=300).contains(&held_up), "{held_up} of 10,000 held up");
    }

    #[test]
    fn the_buckets_never_grow_and_forget_no_debt() {
        let limit = RateLimit::default().replies(1, Duration::from_secs(86_400)).burst(1).buckets(15);
        let mut limiter = Limiter::new(limit);
        assert_eq!(limiter.rows.each_ref().map(|row| row.len()), [8, 8]);
        let first = ip("198.51.100.1");
        assert!(limiter.allow(first, T0));
        assert!(!limiter.allow(first, T0 + 1));
        // 10,000 other sources later, the first still owes its reply.
        for i in 0..10_000 {
            limiter.allow(other(i), T0 + 2 + u64::from(i));
        }
        assert_eq!(limiter.rows.each_ref().map(|row| row.len()), [8, 8]);
        assert!(!limiter.allow(first, T0 + 20_000));
        // Until a day has passed since the last reply to any source of its
        // buckets (a reply's debt is a day past the clock then, no more).
        assert!(limiter.allow(first, T0 + 20_000 + DAY));
        assert_eq!(Limiter::new(RateLimit::default()).rows.each_ref().map(|row| row.len()), [8_192, 8_192]);
    }

    #[test]
    fn all_sources_together_get_at_most_the_total() {
        // 10,000 sources, each sending once a second: 10,000 datagrams a
        // second against a total of 1,000, for 2 s.
        let mut limiter = Limiter::new(RateLimit::default().total(1_000));
        let mut answered = 0u64;
        for step in 0..20_000u32 {
            let now = T0 + u64::from(step) * 100_000;
            match limiter.check(other(step % 10_000), at(now)) {
                Ok(()) => answered += 1,
                Err(reason) => assert_eq!(reason, Dropped::TotalLimited, "datagram {step}"),
            }
        }
        // A burst of 1,000, then 1,000 a second for the 1.9999 s after the first.
        let bound = 1_000 + 1_999;
        assert!(answered <= bound && answered + 1 >= bound, "{answered} replies (bound {bound})");
    }

    #[test]
    fn a_datagram_refused_pays_for_nothing() {
        let limit = RateLimit::default().replies(1, Duration::from_secs(86_400)).burst(1).total(2);
        let mut limiter = Limiter::new(limit);
        let (a, b, c) = (ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3"));
        assert_eq!(limiter.check(a, at(T0)), Ok(()));
        // Over its own limit: the total does not pay for it.
        assert_eq!(limiter.check(a, at(T0)), Err(Dropped::RateLimited));
        assert_eq!(limiter.check(b, at(T0)), Ok(()));
        // Over the total: its own bucket does not pay for it.
        assert_eq!(limiter.check(c, at(T0)), Err(Dropped::TotalLimited));
        assert_eq!(limiter.check(c, at(T0 + SECOND / 2)), Ok(()));
        assert_eq!(limiter.check(c, at(T0 + SECOND)), Err(Dropped::RateLimited));
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 64, ..Default::default() })]
        /// Whatever other sources send and whoever shares its buckets, no
        /// source gets more than its burst and its rate over any stretch of
        /// time: 40 sources in 4 to 64 buckets, half the datagrams from 4 of
        /// them, a random 0 to 5 ms apart.
        #[test]
        fn no_source_ever_gets_more_than_burst_and_rate(
            burst in 1u32..5,
            buckets in 4usize..64,
            replies in 1u32..20,
            datagrams in proptest::collection::vec((0u32..80, 0u64..5 * MS), 1..400),
        ) {
            let limit = RateLimit::default().replies(replies, Duration::from_millis(100)).burst(burst).buckets(buckets);
            let mut limiter = Limiter::new(limit);
            let cost = (100 * MS).div_ceil(u64::from(replies));
            let mut answered: Vec<Vec<u64>> = vec![Vec::new(); 40];
            let mut now = T0;
            for (source, gap) in datagrams {
                let source = if source < 40 { source } else { source % 4 };
                now += gap;
                if limiter.allow(other(source), now) {
                    answered[source as usize].push(now);
                }
            }
            for times in &answered {
                for (i, first) in times.iter().enumerate() {
                    for (j, last) in times.iter().enumerate().skip(i) {
                        let bound = u64::from(burst) + (last - first) / cost;
                        proptest::prop_assert!((j - i + 1) as u64 <= bound, "{} replies in {} ns", j - i + 1, last - first);
                    }
                }
            }
        }
    }

    #[test]
    fn settings_are_bounded() {
        assert!(RateLimit::default().validate().is_ok());
        let max = RateLimit::default()
            .replies(RateLimit::MAX_REPLIES, Duration::from_millis(1))
            .burst(RateLimit::MAX_REPLIES)
            .total(RateLimit::MAX_TOTAL)
            .buckets(RateLimit::MAX_BUCKETS);
        assert!(max.validate().is_ok());
        assert!(
            RateLimit::default()
                .replies(1, Duration::from_secs(86_400))
                .burst(RateLimit::MAX_REPLIES)
                .total(1)
                .buckets(2)
                .validate()
                .is_ok()
        );
        for (bad, setting) in [
            (RateLimit::default().replies(0, Duration::from_secs(1)), "replies"),
            (RateLimit::default().replies(1_000_001, Duration::from_secs(1)), "replies"),
            (RateLimit::default().replies(1, Duration::ZERO), "per"),
            (RateLimit::default().replies(1, Duration::from_secs(86_401)), "per"),
            (RateLimit::default().burst(0), "burst"),
            (RateLimit::default().burst(1_000_001), "burst"),
            (RateLimit::default().total(0), "total"),
            (RateLimit::default().total(10_000_001), "total"),
            (RateLimit::default().buckets(1), "buckets"),
            (RateLimit::default().buckets((1 << 20) + 1), "buckets"),
        ] {
            match bad.validate() {
                Err(Error::Config(e)) => assert_eq!(e.setting(), setting),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let err = RateLimit::default().burst(0).validate().expect_err("out of range");
        assert_eq!(err.to_string(), "invalid burst 0: expected 1 to 1000000 replies");
    }

    #[test]
    fn sources_no_client_has_are_screened() {
        let bound: SocketAddr = "0.0.0.0:7000".parse().expect("address");
        let screen = |from: &str| screen_source(from.parse().expect("address"), bound);
        assert_eq!(screen("127.0.0.1:7000"), Some(Dropped::OwnAddress));
        assert_eq!(screen("127.0.0.2:7000"), Some(Dropped::OwnAddress));
        assert_eq!(screen("[::ffff:127.0.0.1]:7000"), Some(Dropped::OwnAddress));
        assert_eq!(screen("[::1]:7000"), Some(Dropped::OwnAddress));
        assert_eq!(screen("192.0.2.1:7000"), None, "not this host's address");
        assert_eq!(screen("127.0.0.1:7001"), None);
        assert_eq!(screen("192.0.2.1:7"), Some(Dropped::ServicePort));
        assert_eq!(screen("192.0.2.1:1023"), Some(Dropped::ServicePort));
        assert_eq!(screen("192.0.2.1:1024"), None);
        for invalid in
            ["192.0.2.1:0", "0.0.0.0:5000", "255.255.255.255:5000", "224.0.0.1:5000", "[ff02::1]:5000", "[::]:5000"]
        {
            assert_eq!(screen(invalid), Some(Dropped::InvalidSource), "{invalid}");
        }
        let specific: SocketAddr = "127.0.0.1:7000".parse().expect("address");
        assert_eq!(screen_source(specific, specific), Some(Dropped::OwnAddress));
        assert!(is_local(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(!is_local(ip("192.0.2.1")), "TEST-NET-1 is nobody's");
    }

    #[test]
    fn counts_show_by_reason() {
        let mut counts = DropCounts::default();
        assert_eq!(counts.to_string(), "0 dropped");
        assert_eq!(counts.record(Dropped::LooksLikeReply), 1);
        assert_eq!(counts.record(Dropped::LooksLikeReply), 2);
        counts.record(Dropped::RateLimited);
        assert_eq!(counts.total(), 3);
        assert_eq!(counts.to_string(), "3 dropped (2 looks like a reply, 1 rate limited)");
        for reason in Dropped::ALL {
            let before = counts.get(reason);
            counts.record(reason);
            assert_eq!(counts.get(reason), before + 1, "{reason}");
        }
        let totals =
            DatagramTotals { datagrams: 1, messages: 1, bytes_in: 1, bytes_out: 5, ..DatagramTotals::default() };
        assert_eq!(totals.to_string(), "1 datagram, 1 answered, 0 errors, 0 dropped, 1 byte in, 5 bytes out");
    }
}
