//! What keeps a [`DatagramServer`](super::DatagramServer) from looping or
//! reflecting: the datagrams it never answers, the per-source rate limit and
//! the counts of both.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime};

use super::ERROR_PREFIX;
use crate::protocol::{Header, parse_header};
use crate::{ConfigError, Error};

/// Why a [`DatagramServer`](super::DatagramServer) sent no reply to a
/// datagram (see the [module docs](super#loops-and-reflection)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dropped {
    /// It starts with a stamp header `[STAMP] `: it looks like a reply of
    /// this protocol, so answering it could start a loop with another server.
    LooksLikeReply,
    /// It starts with `error: ` ([`ERROR_PREFIX`]): it looks like an error
    /// datagram of this protocol.
    ErrorDatagram,
    /// Its source is the server's own port on this host: answering would
    /// send the reply to the server itself.
    OwnAddress,
    /// Its source port is below 1024: a service's (echo, chargen, DNS, NTP,
    /// ...), never a client's, and a service may answer the reply.
    ServicePort,
    /// Its source cannot have sent it: an unspecified, broadcast or
    /// multicast address, or port 0.
    InvalidSource,
    /// Its source address has used up its replies for now
    /// (see [`RateLimit`]).
    RateLimited,
}

impl Dropped {
    /// Every reason, in the order [`DropCounts`] shows them.
    pub const ALL: [Dropped; 6] = [
        Dropped::LooksLikeReply,
        Dropped::ErrorDatagram,
        Dropped::OwnAddress,
        Dropped::ServicePort,
        Dropped::InvalidSource,
        Dropped::RateLimited,
    ];

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

    /// A few words for logs: `looks like a reply`, `rate limited`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::LooksLikeReply => "looks like a reply",
            Dropped::ErrorDatagram => "error datagram",
            Dropped::OwnAddress => "own address",
            Dropped::ServicePort => "service port",
            Dropped::InvalidSource => "invalid source",
            Dropped::RateLimited => "rate limited",
        }
    }
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
/// [`messages`](Totals::messages), [`errors`](Totals::errors) and
/// [`dropped`](Totals::dropped).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Totals {
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

impl fmt::Display for Totals {
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

/// How many replies a [`DatagramServer`](super::DatagramServer) sends to one
/// source address: a token bucket per address, in a table of fixed size.
///
/// Each source IP address (IPv4-mapped IPv6 addresses count as their IPv4
/// address; the port does not count) may get [`burst`](RateLimit::burst)
/// replies at once, then [`replies`](RateLimit::replies) per
/// [`per`](RateLimit::per); datagrams over that are dropped unanswered
/// ([`Dropped::RateLimited`]). Echoes and error datagrams both count.
///
/// | Setting | Default | Accepted |
/// |---|---|---|
/// | `replies` per `per` | 100 per second | 1 to 1,000,000 per 1 ms to 1 day |
/// | `burst` | 100 | 1 to 1,000,000 |
/// | `sources` | 4,096 | 1 to 1,048,576 |
///
/// The table of sources is allocated once, when the limit is set, and never
/// grows: a new source takes the place of the one seen longest ago among a
/// few (8) it could go in. A forgotten source starts again with a whole
/// burst, so a full table never refuses anyone: it only lets a source that
/// was pushed out have a new burst. The buckets fill by the server's
/// [clock](super::DatagramServer::clock); a clock set back fills nothing
/// until it moves forward again, one set forward fills at most a burst.
///
/// ```
/// use std::time::Duration;
/// use stamp_echo::datagram::RateLimit;
///
/// let limit = RateLimit::default().replies(10, Duration::from_secs(60)).burst(5);
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
    /// The sources remembered (default 4,096; rounded up to a multiple of
    /// 8). Each takes 40 bytes: 160 KiB by default.
    pub sources: usize,
}

impl RateLimit {
    /// Default for [`RateLimit::replies`].
    pub const DEFAULT_REPLIES: u32 = 100;
    /// Default for [`RateLimit::per`].
    pub const DEFAULT_PER: Duration = Duration::from_secs(1);
    /// Default for [`RateLimit::burst`].
    pub const DEFAULT_BURST: u32 = 100;
    /// Default for [`RateLimit::sources`].
    pub const DEFAULT_SOURCES: usize = 4096;
    /// The largest [`replies`](RateLimit::replies) and
    /// [`burst`](RateLimit::burst).
    pub const MAX_REPLIES: u32 = 1_000_000;
    /// The largest [`sources`](RateLimit::sources).
    pub const MAX_SOURCES: usize = 1 << 20;
    const MIN_PER: Duration = Duration::from_millis(1);
    const MAX_PER: Duration = Duration::from_secs(86_400);

    /// The default limit with `replies` per second and a burst of as many.
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

    /// Sets [`RateLimit::sources`].
    #[must_use]
    pub fn sources(mut self, sources: usize) -> RateLimit {
        self.sources = sources;
        self
    }

    /// Checks every setting is within its bounds (see the table above).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first setting out of range and its value.
    pub fn validate(&self) -> Result<(), Error> {
        if !(1..=Self::MAX_REPLIES).contains(&self.replies) {
            return Err(ConfigError::new("replies", self.replies, "1 to 1000000 replies").into());
        }
        if !(Self::MIN_PER..=Self::MAX_PER).contains(&self.per) {
            return Err(ConfigError::new("per", format_args!("{:?}", self.per), "1 ms to 1 day").into());
        }
        if !(1..=Self::MAX_REPLIES).contains(&self.burst) {
            return Err(ConfigError::new("burst", self.burst, "1 to 1000000 replies").into());
        }
        if !(1..=Self::MAX_SOURCES).contains(&self.sources) {
            return Err(ConfigError::new("sources", self.sources, "1 to 1048576 addresses").into());
        }
        Ok(())
    }
}

impl Default for RateLimit {
    fn default() -> RateLimit {
        RateLimit {
            replies: Self::DEFAULT_REPLIES,
            per: Self::DEFAULT_PER,
            burst: Self::DEFAULT_BURST,
            sources: Self::DEFAULT_SOURCES,
        }
    }
}

/// Slots of the table a source may go in.
const WAYS: usize = 8;

/// The token buckets of [`RateLimit`]: a set-associative table of sources,
/// each with its credit in nanoseconds of the clock.
#[derive(Debug)]
pub(super) struct Limiter {
    limit: RateLimit,
    hasher: RandomState,
    ways: usize,
    slots: Box<[Slot]>,
    /// Credit one reply costs, in nanoseconds.
    cost: u64,
    /// The most credit a source holds: a burst.
    full: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    source: Option<IpAddr>,
    credit: u64,
    /// The clock at this source's last datagram, in nanoseconds since 1970.
    seen: u64,
}

impl Limiter {
    /// The table for `limit`, which must be valid.
    pub(super) fn new(limit: RateLimit) -> Limiter {
        let ways = WAYS.min(limit.sources.max(1));
        let slots = limit.sources.max(1).div_ceil(ways) * ways;
        let cost = u64::try_from(limit.per.as_nanos() / u128::from(limit.replies.max(1))).unwrap_or(u64::MAX).max(1);
        Limiter {
            limit,
            hasher: RandomState::new(),
            ways,
            slots: vec![Slot::default(); slots].into_boxed_slice(),
            cost,
            full: cost.saturating_mul(u64::from(limit.burst)),
        }
    }

    pub(super) fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Whether `source` may have a reply at `now`; if so, its credit pays for it.
    pub(super) fn allow(&mut self, source: IpAddr, now: SystemTime) -> bool {
        let now =
            now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let sets = self.slots.len() / self.ways;
        let set = (self.hasher.hash_one(source) % sets.max(1) as u64) as usize;
        let Some(slots) = self.slots.chunks_exact_mut(self.ways).nth(set) else { return true };
        let index = match slots.iter().position(|slot| slot.source == Some(source)) {
            Some(index) => index,
            None => {
                // An empty slot, else the one seen longest ago.
                let oldest = slots.iter().enumerate().min_by_key(|(_, slot)| (slot.source.is_some(), slot.seen));
                let index = oldest.map_or(0, |(index, _)| index);
                slots[index] = Slot { source: Some(source), credit: self.full, seen: now };
                index
            }
        };
        let slot = &mut slots[index];
        // A clock set back gives nothing, and counts on from where it is now.
        slot.credit = slot.credit.saturating_add(now.saturating_sub(slot.seen)).min(self.full);
        slot.seen = now;
        if slot.credit >= self.cost {
            slot.credit -= self.cost;
            true
        } else {
            false
        }
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

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let mut limiter = Limiter::new(RateLimit::default().replies(10, Duration::from_secs(1)).burst(3));
        let source = ip("192.0.2.1");
        let t0 = 1_000_000_000_000;
        let answered = (0..10).filter(|_| limiter.allow(source, at(t0))).count();
        assert_eq!(answered, 3);
        // 100 ms later, one more; 50 ms after that, none.
        assert!(limiter.allow(source, at(t0 + 100_000_000)));
        assert!(!limiter.allow(source, at(t0 + 150_000_000)));
        // Another source has its own bucket.
        assert!(limiter.allow(ip("192.0.2.2"), at(t0)));
        // A long pause refills a burst, no more.
        let later = t0 + 3_600_000_000_000;
        assert_eq!((0..10).filter(|_| limiter.allow(source, at(later))).count(), 3);
    }

    #[test]
    fn a_clock_set_back_gives_nothing_and_then_counts_on() {
        let mut limiter = Limiter::new(RateLimit::default().replies(1, Duration::from_secs(1)).burst(1));
        let source = ip("192.0.2.1");
        let t0 = 10_000_000_000_000;
        assert!(limiter.allow(source, at(t0)));
        assert!(!limiter.allow(source, at(t0 - 3_600_000_000_000)), "set back an hour");
        assert!(limiter.allow(source, at(t0 - 3_600_000_000_000 + 1_000_000_000)), "a second later");
    }

    #[test]
    fn mapped_addresses_are_their_ipv4_address() {
        let mut limiter = Limiter::new(RateLimit::default().burst(1));
        let v4 = ip("192.0.2.1");
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert!(limiter.allow(v4.to_canonical(), at(5)));
        assert!(!limiter.allow(mapped.to_canonical(), at(5)));
    }

    #[test]
    fn the_table_never_grows_and_forgets_the_oldest() {
        let limit = RateLimit::default().replies(1, Duration::from_secs(86_400)).burst(1).sources(16);
        let mut limiter = Limiter::new(limit);
        assert_eq!(limiter.slots.len(), 16);
        let first = ip("198.51.100.1");
        assert!(limiter.allow(first, at(1)));
        assert!(!limiter.allow(first, at(2)));
        // 10,000 other sources later, the first is forgotten and has a burst again.
        for i in 0..10_000u32 {
            let [_, _, a, b] = i.to_be_bytes();
            assert!(limiter.allow(IpAddr::V4(Ipv4Addr::new(203, 0, a, b)), at(3 + u64::from(i))));
        }
        assert_eq!(limiter.slots.len(), 16);
        assert!(limiter.allow(first, at(20_000)));
        assert!(std::mem::size_of::<Slot>() <= 40, "as documented");
        assert_eq!(Limiter::new(RateLimit::default().sources(3)).slots.len(), 3);
        assert_eq!(Limiter::new(RateLimit::default().sources(9)).slots.len(), 16);
    }

    #[test]
    fn settings_are_bounded() {
        assert!(RateLimit::default().validate().is_ok());
        let max = RateLimit::default()
            .replies(RateLimit::MAX_REPLIES, Duration::from_millis(1))
            .burst(RateLimit::MAX_REPLIES)
            .sources(RateLimit::MAX_SOURCES);
        assert!(max.validate().is_ok());
        assert!(
            RateLimit::default()
                .replies(1, Duration::from_secs(86_400))
                .burst(RateLimit::MAX_REPLIES)
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
            (RateLimit::default().sources(0), "sources"),
            (RateLimit::default().sources((1 << 20) + 1), "sources"),
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
        let totals = Totals { datagrams: 1, messages: 1, bytes_in: 1, bytes_out: 5, ..Totals::default() };
        assert_eq!(totals.to_string(), "1 datagram, 1 answered, 0 errors, 0 dropped, 1 byte in, 5 bytes out");
    }
}
