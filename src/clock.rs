//! Clock maths for the probes and replies: [`ClockOffset`], the NTP-way
//! estimate of a server's clock from one reply, and [`Millis`], nanoseconds
//! shown as milliseconds (as `ping` shows them).
//!
//! Public as [`crate::client::ClockOffset`], where
//! [`Reply::clock_offset`](crate::Reply::clock_offset) returns it; the
//! `probe` module (feature `tools`) counts and shows them.

use std::fmt;
use std::time::{Duration, SystemTime};

/// An estimate of how far a server's clock is from the local one, from one
/// reply ([`Reply::clock_offset`](crate::Reply::clock_offset)).
///
/// It is measured the NTP way. The server read its clock at some instant
/// between the local send and receive, so its stamp is compared with their
/// midpoint: the offset is `server stamp - (sent + rtt / 2)`, and it is off
/// by at most half the round trip, plus the resolution of the stamp (1 µs for
/// the built-in stamps, which are truncated, not rounded). A smaller round
/// trip gives a tighter bound: of several probes, the fastest says the most.
///
/// The bound holds unless a clock was stepped during the round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockOffset {
    offset_nanos: i64,
    bound: Duration,
}

impl ClockOffset {
    /// Server time minus local time, in nanoseconds: positive when the
    /// server's clock is ahead (saturated at about ±292 years).
    pub fn offset_nanos(&self) -> i64 {
        self.offset_nanos
    }

    /// How far the true offset can be from [`offset_nanos`](ClockOffset::offset_nanos).
    pub fn bound(&self) -> Duration {
        self.bound
    }

    /// Whether `offset_nanos` is within the bound of the estimate: a possible
    /// true offset.
    pub fn contains(&self, offset_nanos: i64) -> bool {
        let distance = (i128::from(offset_nanos) - i128::from(self.offset_nanos)).unsigned_abs();
        distance <= self.bound.as_nanos()
    }

    /// The offset of a server that read `server` on its clock (with that
    /// `resolution`) some time during a round trip of `rtt` sent at `sent_at`.
    pub(crate) fn measure(sent_at: SystemTime, rtt: Duration, server: SystemTime, resolution: Duration) -> ClockOffset {
        let half = rtt / 2;
        let midpoint = unix_nanos(sent_at) + half.as_nanos() as i128;
        let offset = (unix_nanos(server) - midpoint).clamp(i128::from(i64::MIN), i128::from(i64::MAX));
        ClockOffset {
            offset_nanos: i64::try_from(offset).unwrap_or_default(),
            // `rtt - half` is half the round trip, rounded up.
            bound: (rtt - half).saturating_add(resolution),
        }
    }
}

impl fmt::Display for ClockOffset {
    /// In milliseconds to the microsecond: `+1500.250±0.031 ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}±{} ms", Millis::signed(i128::from(self.offset_nanos)), Millis::of(self.bound))
    }
}

/// Nanoseconds shown as milliseconds with three decimals (rounded to the
/// microsecond), optionally with a `+` on non-negative values.
pub(crate) struct Millis {
    nanos: i128,
    plus: bool,
}

impl Millis {
    /// Without a `+`.
    pub(crate) fn new(nanos: i128) -> Millis {
        Millis { nanos, plus: false }
    }

    /// With a `+` when not negative.
    pub(crate) fn signed(nanos: i128) -> Millis {
        Millis { nanos, plus: true }
    }

    /// A duration, without a sign.
    pub(crate) fn of(d: Duration) -> Millis {
        Millis::new(i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.nanos.unsigned_abs().saturating_add(500) / 1000;
        let sign = match (self.nanos < 0 && micros > 0, self.plus) {
            (true, _) => "-",
            (false, true) => "+",
            (false, false) => "",
        };
        write!(f, "{sign}{}.{:03}", micros / 1000, micros % 1000)
    }
}

/// Nanoseconds from the Unix epoch, negative before it.
fn unix_nanos(t: SystemTime) -> i128 {
    let nanos = |d: Duration| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX);
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => nanos(d),
        Err(before) => -nanos(before.duration()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_to_the_microsecond() {
        assert_eq!(Millis::new(61_499).to_string(), "0.061");
        assert_eq!(Millis::new(61_500).to_string(), "0.062");
        assert_eq!(Millis::signed(0).to_string(), "+0.000");
        assert_eq!(Millis::signed(-400).to_string(), "+0.000");
        assert_eq!(Millis::signed(-1_234_567_890).to_string(), "-1234.568");
        assert_eq!(Millis::of(Duration::from_secs(2)).to_string(), "2000.000");
    }
}
