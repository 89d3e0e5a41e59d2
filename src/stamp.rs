//! Stamps: the text between the brackets of a reply, and the clock it reads.
//!
//! A [`Stamp`] turns an instant into text such as `Sun Feb  3 10:00:18 2013`.
//! The protocol adds the brackets and the space, so a stamp only decides the
//! text between them. A [`Clock`] says what "now" is; tests inject a fixed one.
//!
//! | built-in | example | changes |
//! |---|---|---|
//! | [`Ctime::local`] (the original's) | `Sun Feb  3 10:00:18 2013` | once a second |
//! | [`Ctime::utc`] | `Sun Feb  3 10:00:18 2013` | once a second |
//! | [`Rfc3339`] | `2013-02-03T10:00:18.123456Z` | every microsecond |
//! | [`UnixTime`] | `1359885618.123456` | every microsecond |
//!
//! A stamp that reports [`Granularity::Second`] is formatted at most once per
//! second per connection: the protocol core keeps the text and reuses it.
//!
//! Any `Fn(SystemTime, &mut String) + Send + Sync` closure is a stamp too;
//! [`from_fn`] helps the compiler infer its argument types:
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use stamp_echo::stamp::{self, Stamp};
//!
//! let secs = stamp::from_fn(|now: SystemTime, out: &mut String| {
//!     let secs = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
//!     out.push_str(&secs.to_string());
//! });
//! let mut text = String::new();
//! secs.write_stamp(SystemTime::UNIX_EPOCH + Duration::from_secs(42), &mut text);
//! assert_eq!(text, "42");
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

use crate::tz::{TimeZone, TzError};

/// How often a stamp's text can change, so the core knows when it may reuse it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Granularity {
    /// The text depends only on the whole second: it is formatted once a second.
    Second,
    /// The text may change at any instant: it is formatted for every batch of
    /// messages (all messages that arrived in one read share one stamp).
    Exact,
}

/// Formats the stamp text for an instant.
///
/// Implementations append to `out` (which arrives empty) and must not write
/// `]`, `\r` or `\n`; the server rejects such text with
/// [`Error::Stamp`](crate::Error::Stamp).
pub trait Stamp: Send + Sync {
    /// Appends the stamp text for `now` to `out`.
    fn write_stamp(&self, now: SystemTime, out: &mut String);

    /// How often the text changes. The default, [`Granularity::Exact`], is
    /// always correct; [`Granularity::Second`] lets the core cache the text.
    fn granularity(&self) -> Granularity {
        Granularity::Exact
    }
}

impl<F> Stamp for F
where
    F: Fn(SystemTime, &mut String) + Send + Sync,
{
    fn write_stamp(&self, now: SystemTime, out: &mut String) {
        self(now, out)
    }
}

/// Makes a [`Stamp`] of a closure, guiding type inference for its arguments.
pub fn from_fn<F>(f: F) -> F
where
    F: Fn(SystemTime, &mut String) + Send + Sync,
{
    f
}

/// Where "now" comes from. Any `Fn() -> SystemTime + Send + Sync` closure is a clock.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use stamp_echo::stamp::Clock;
///
/// let fixed = SystemTime::UNIX_EPOCH + Duration::from_secs(1_359_885_618);
/// let clock = move || fixed;
/// assert_eq!(clock.now(), fixed);
/// ```
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> SystemTime;
}

/// The operating system's wall clock, [`SystemTime::now`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl<F> Clock for F
where
    F: Fn() -> SystemTime + Send + Sync,
{
    fn now(&self) -> SystemTime {
        self()
    }
}

/// Python's `time.ctime()`: `Sun Feb  3 10:00:18 2013`, the day of the month
/// padded with a space (C's `%a %b %e %H:%M:%S %Y`).
///
/// The zone is read once, when the stamp is made, but the offset is looked up
/// for each second stamped, so a server running across a daylight-saving change
/// keeps stamping the right local time.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use stamp_echo::stamp::{Ctime, Stamp};
///
/// let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_359_885_618);
/// let mut text = String::new();
/// Ctime::utc().write_stamp(t, &mut text);
/// assert_eq!(text, "Sun Feb  3 10:00:18 2013");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ctime {
    zone: TimeZone,
}

impl Ctime {
    /// Local time, resolved like the C library does (the `TZ` variable, else
    /// `/etc/localtime`), without the C library: it is safe in multi-threaded programs.
    ///
    /// # Errors
    ///
    /// [`TzError`] when the local zone cannot be found or read.
    pub fn local() -> Result<Ctime, TzError> {
        TimeZone::local().map(Ctime::in_zone)
    }

    /// Local time if the zone can be found, else UTC together with the reason,
    /// so the caller can tell its user.
    pub fn local_or_utc() -> (Ctime, Option<TzError>) {
        match Ctime::local() {
            Ok(ctime) => (ctime, None),
            Err(err) => (Ctime::utc(), Some(err)),
        }
    }

    /// Coordinated universal time.
    pub fn utc() -> Ctime {
        Ctime::in_zone(TimeZone::utc())
    }

    /// Any zone, such as one from [`TimeZone::from_posix`].
    pub fn in_zone(zone: TimeZone) -> Ctime {
        Ctime { zone }
    }
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

impl Stamp for Ctime {
    fn write_stamp(&self, now: SystemTime, out: &mut String) {
        let (secs, _) = unix_parts(now);
        let local = secs.saturating_add(i64::from(self.zone.offset_at(secs)));
        let t = datetime(local);
        out.push_str(DAYS[usize::from(t.weekday().number_days_from_monday())]);
        out.push(' ');
        out.push_str(MONTHS[usize::from(u8::from(t.month()) - 1)]);
        out.push(' ');
        let day = t.day();
        out.push(if day < 10 { ' ' } else { char::from(b'0' + day / 10) });
        out.push(char::from(b'0' + day % 10));
        out.push(' ');
        push_time_of_day(out, t);
        out.push(' ');
        push_year(out, t.year());
    }

    fn granularity(&self) -> Granularity {
        Granularity::Second
    }
}

/// RFC 3339 in UTC with microseconds: `2013-02-03T10:00:18.123456Z`.
///
/// Sub-second precision makes it suitable for measuring a server's clock
/// offset; it is formatted for every batch of messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rfc3339;

impl Stamp for Rfc3339 {
    fn write_stamp(&self, now: SystemTime, out: &mut String) {
        let (secs, nanos) = unix_parts(now);
        let t = datetime(secs);
        push_year(out, t.year());
        out.push('-');
        push_digits(out, u32::from(u8::from(t.month())), 2);
        out.push('-');
        push_digits(out, u32::from(t.day()), 2);
        out.push('T');
        push_time_of_day(out, t);
        out.push('.');
        push_digits(out, nanos / 1000, 6);
        out.push('Z');
    }
}

/// Seconds since the Unix epoch with microseconds: `1359885618.123456`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnixTime;

impl Stamp for UnixTime {
    fn write_stamp(&self, now: SystemTime, out: &mut String) {
        let (secs, nanos) = unix_parts(now);
        // Before 1970 the value is negative: write its exact signed value
        // (-1.250000), not the floored whole part plus a fraction.
        let total_micros = i128::from(secs) * 1_000_000 + i128::from(nanos / 1000);
        if total_micros < 0 {
            out.push('-');
        }
        let abs = total_micros.unsigned_abs();
        push_u128(out, abs / 1_000_000);
        out.push('.');
        // `abs % 1_000_000` is below 10^6, so it fits in u32.
        push_digits(out, u32::try_from(abs % 1_000_000).unwrap_or(0), 6);
    }
}

/// The built-in stamps by name, as the examples' `--stamp` flag spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StampKind {
    /// [`Ctime::local`]
    Ctime,
    /// [`Ctime::utc`]
    CtimeUtc,
    /// [`Rfc3339`]
    Rfc3339,
    /// [`UnixTime`]
    Unix,
}

impl std::str::FromStr for StampKind {
    type Err = crate::ParseError;
    /// `ctime`, `ctime-utc`, `rfc3339` or `unix`.
    ///
    /// # Errors
    ///
    /// [`ParseError`](crate::ParseError) for any other name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ctime" => Ok(StampKind::Ctime),
            "ctime-utc" => Ok(StampKind::CtimeUtc),
            "rfc3339" => Ok(StampKind::Rfc3339),
            "unix" => Ok(StampKind::Unix),
            _ => Err(crate::ParseError::new("stamp", s, "ctime, ctime-utc, rfc3339 or unix")),
        }
    }
}

impl fmt::Display for StampKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StampKind::Ctime => "ctime",
            StampKind::CtimeUtc => "ctime-utc",
            StampKind::Rfc3339 => "rfc3339",
            StampKind::Unix => "unix",
        })
    }
}

impl StampKind {
    /// Builds the stamp. [`StampKind::Ctime`] falls back to UTC when the local
    /// zone cannot be found, and returns the reason beside it.
    pub fn build(self) -> (Arc<dyn Stamp>, Option<TzError>) {
        match self {
            StampKind::Ctime => {
                let (ctime, err) = Ctime::local_or_utc();
                (Arc::new(ctime), err)
            }
            StampKind::CtimeUtc => (Arc::new(Ctime::utc()), None),
            StampKind::Rfc3339 => (Arc::new(Rfc3339), None),
            StampKind::Unix => (Arc::new(UnixTime), None),
        }
    }
}

/// Splits an instant into whole seconds since the epoch (floored) and nanoseconds.
fn unix_parts(now: SystemTime) -> (i64, u32) {
    match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos()),
        Err(before) => {
            let d: Duration = before.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (secs.saturating_neg(), 0),
                n => (secs.saturating_neg().saturating_sub(1), 1_000_000_000 - n),
            }
        }
    }
}

/// The civil date and time of `secs` (already shifted to local time), clamped
/// to the years the `time` crate can represent (-9999 to 9999).
fn datetime(secs: i64) -> OffsetDateTime {
    let min = OffsetDateTime::new_utc(time::Date::MIN, time::Time::MIDNIGHT).unix_timestamp();
    let max = OffsetDateTime::new_utc(time::Date::MAX, time::Time::MIDNIGHT).unix_timestamp() + 86_399;
    OffsetDateTime::from_unix_timestamp(secs.clamp(min, max)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn push_time_of_day(out: &mut String, t: OffsetDateTime) {
    push_digits(out, u32::from(t.hour()), 2);
    out.push(':');
    push_digits(out, u32::from(t.minute()), 2);
    out.push(':');
    push_digits(out, u32::from(t.second()), 2);
}

fn push_year(out: &mut String, year: i32) {
    if year < 0 {
        out.push('-');
    }
    push_digits(out, year.unsigned_abs(), 4);
}

/// Appends `value` in decimal, zero-padded to at least `width` digits.
fn push_digits(out: &mut String, value: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut v = value;
    let mut i = buf.len();
    while v > 0 {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let start = i.min(buf.len().saturating_sub(width));
    for &b in &buf[start..] {
        out.push(char::from(b));
    }
}

fn push_u128(out: &mut String, value: u128) {
    match u32::try_from(value) {
        Ok(v) => push_digits(out, v, 1),
        Err(_) => {
            push_u128(out, value / 1_000_000_000);
            push_digits(out, (value % 1_000_000_000) as u32, 9);
        }
    }
}

// Reading an instant back from a stamp's text: the inverse of the formatters
// above, for the stamps precise enough to measure a clock with.

impl Rfc3339 {
    /// Reads back the instant of an RFC 3339 timestamp: what [`Rfc3339`]
    /// writes (`2013-02-03T10:00:18.123456Z`), or any other RFC 3339 text,
    /// with any number of fraction digits (nanoseconds are kept, further
    /// digits dropped), a numeric offset (`+01:00`), a lower-case `t` or `z`,
    /// or a space between date and time.
    ///
    /// Returns `None` for anything else, including a leap second (`:60`),
    /// which [`SystemTime`] cannot hold.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use stamp_echo::stamp::Rfc3339;
    ///
    /// let t = SystemTime::UNIX_EPOCH + Duration::new(1_359_885_618, 123_456_000);
    /// assert_eq!(Rfc3339::parse("2013-02-03T10:00:18.123456Z"), Some(t));
    /// assert_eq!(Rfc3339::parse("2013-02-03T11:00:18.123456+01:00"), Some(t));
    /// assert_eq!(Rfc3339::parse("Sun Feb  3 10:00:18 2013"), None);
    /// ```
    pub fn parse(text: &str) -> Option<SystemTime> {
        parse_rfc3339(text).map(|(at, _)| at)
    }
}

impl UnixTime {
    /// Reads back the instant of a Unix time such as `1359885618.123456`, as
    /// [`UnixTime`] writes it: optional `-`, whole seconds, then optionally
    /// `.` and a fraction of any length (nanoseconds are kept). A negative
    /// value is exact, as written: `-1.25` is 1.25 seconds before the epoch.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use stamp_echo::stamp::UnixTime;
    ///
    /// let t = SystemTime::UNIX_EPOCH + Duration::new(1_359_885_618, 123_456_000);
    /// assert_eq!(UnixTime::parse("1359885618.123456"), Some(t));
    /// assert_eq!(UnixTime::parse("-1.25"), SystemTime::UNIX_EPOCH.checked_sub(Duration::from_millis(1250)));
    /// assert_eq!(UnixTime::parse("12e3"), None);
    /// ```
    pub fn parse(text: &str) -> Option<SystemTime> {
        parse_unix(text).map(|(at, _)| at)
    }
}

impl StampKind {
    /// Reads back the instant a stamp of this kind wrote: [`Rfc3339::parse`]
    /// or [`UnixTime::parse`]. The ctime kinds give `None`: they have whole
    /// seconds only, and local time does not say its zone, so they cannot
    /// place the server's instant well enough to measure its clock.
    pub fn parse(self, text: &str) -> Option<SystemTime> {
        self.parse_precise(text).map(|(at, _)| at)
    }

    /// [`parse`](StampKind::parse), with the resolution of the text: one unit
    /// of its last digit (1 µs for six fraction digits, 1 s for none).
    pub(crate) fn parse_precise(self, text: &str) -> Option<(SystemTime, Duration)> {
        match self {
            StampKind::Rfc3339 => parse_rfc3339(text),
            StampKind::Unix => parse_unix(text),
            StampKind::Ctime | StampKind::CtimeUtc => None,
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`.
fn parse_rfc3339(text: &str) -> Option<(SystemTime, Duration)> {
    let (head, rest) = text.split_at_checked(19)?;
    let b = head.as_bytes();
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(i, c)| b[i] != c) || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = i32::try_from(number(&b[0..4])?).ok()?;
    let month = time::Month::try_from(u8::try_from(number(&b[5..7])?).ok()?).ok()?;
    let day = u8::try_from(number(&b[8..10])?).ok()?;
    let [hour, minute, second] =
        [&b[11..13], &b[14..16], &b[17..19]].map(|d| number(d).and_then(|n| u8::try_from(n).ok()));
    let time = time::Time::from_hms(hour?, minute?, second?).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let (nanos, resolution, zone) = match rest.strip_prefix('.') {
        Some(fraction) => parse_fraction(fraction)?,
        None => (0, Duration::from_secs(1), rest),
    };
    let offset_secs = match zone.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (hours, minutes) = (number(&[*h1, *h2])?, number(&[*m1, *m2])?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let secs = i64::try_from(hours * 3600 + minutes * 60).ok()?;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let secs = time::PrimitiveDateTime::new(date, time).assume_utc().unix_timestamp() - offset_secs;
    let at = from_unix_nanos(i128::from(secs) * 1_000_000_000 + i128::from(nanos))?;
    Some((at, resolution))
}

/// `[-]SECONDS[.fraction]`.
fn parse_unix(text: &str) -> Option<(SystemTime, Duration)> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, nanos, resolution) = match text.split_once('.') {
        Some((whole, fraction)) => match parse_fraction(fraction)? {
            (nanos, resolution, "") => (whole, nanos, resolution),
            _ => return None,
        },
        None => (text, 0, Duration::from_secs(1)),
    };
    if whole.is_empty() || whole.len() > 20 {
        return None;
    }
    let total = i128::from(number(whole.as_bytes())?) * 1_000_000_000 + i128::from(nanos);
    Some((from_unix_nanos(if negative { -total } else { total })?, resolution))
}

/// A fraction's digits (at least one): its value in nanoseconds, the
/// resolution of its last digit (at most 1 ns), and the text after it.
fn parse_fraction(text: &str) -> Option<(u32, Duration, &str)> {
    let len = text.bytes().take_while(u8::is_ascii_digit).count();
    if len == 0 {
        return None;
    }
    let kept = len.min(9);
    let scale = 10u32.pow(9 - kept as u32);
    let nanos = u32::try_from(number(&text.as_bytes()[..kept])?).ok()? * scale;
    Some((nanos, Duration::from_nanos(u64::from(scale)), &text[len..]))
}

/// The value of ASCII decimal digits (all of them digits, at least one).
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let digit = char::from(d).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// The instant `nanos` nanoseconds from the Unix epoch, if [`SystemTime`] can hold it.
fn from_unix_nanos(nanos: i128) -> Option<SystemTime> {
    let abs = nanos.unsigned_abs();
    let d = Duration::new(u64::try_from(abs / 1_000_000_000).ok()?, (abs % 1_000_000_000) as u32);
    if nanos < 0 { SystemTime::UNIX_EPOCH.checked_sub(d) } else { SystemTime::UNIX_EPOCH.checked_add(d) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64, nanos: u32) -> SystemTime {
        if secs >= 0 {
            SystemTime::UNIX_EPOCH + Duration::new(secs as u64, nanos)
        } else {
            SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(u64::from(nanos))
        }
    }

    fn text(stamp: &dyn Stamp, now: SystemTime) -> String {
        let mut s = String::new();
        stamp.write_stamp(now, &mut s);
        s
    }

    #[test]
    fn ctime_matches_python_examples() {
        // time.ctime(1359885618) with TZ=UTC, the tutorial's own example shape.
        assert_eq!(text(&Ctime::utc(), at(1_359_885_618, 0)), "Sun Feb  3 10:00:18 2013");
        assert_eq!(text(&Ctime::utc(), at(0, 999_999_999)), "Thu Jan  1 00:00:00 1970");
        assert_eq!(text(&Ctime::utc(), at(1_795_551_121, 0)), "Tue Nov 24 20:12:01 2026");
        assert_eq!(text(&Ctime::utc(), at(-1, 0)), "Wed Dec 31 23:59:59 1969");
        assert_eq!(text(&Ctime::utc(), at(253_402_300_799, 0)), "Fri Dec 31 23:59:59 9999");
    }

    #[test]
    fn ctime_applies_the_zone_offset_of_each_instant() {
        let zone = TimeZone::from_posix("CET-1CEST,M3.5.0,M10.5.0/3").expect("valid rule");
        let ctime = Ctime::in_zone(zone);
        // 2026-03-29 00:59:59 UTC is 01:59:59 CET; a second later it is 03:00:00 CEST.
        assert_eq!(text(&ctime, at(1_774_745_999, 0)), "Sun Mar 29 01:59:59 2026");
        assert_eq!(text(&ctime, at(1_774_746_000, 0)), "Sun Mar 29 03:00:00 2026");
        assert_eq!(ctime.granularity(), Granularity::Second);
    }

    #[test]
    fn rfc3339_has_microseconds() {
        assert_eq!(text(&Rfc3339, at(1_359_885_618, 123_456_789)), "2013-02-03T10:00:18.123456Z");
        assert_eq!(text(&Rfc3339, at(0, 0)), "1970-01-01T00:00:00.000000Z");
        assert_eq!(Rfc3339.granularity(), Granularity::Exact);
    }

    #[test]
    fn unix_time_is_exact_on_both_sides_of_the_epoch() {
        assert_eq!(text(&UnixTime, at(1_359_885_618, 123_456_789)), "1359885618.123456");
        assert_eq!(text(&UnixTime, at(0, 5_000)), "0.000005");
        // 1969-12-31T23:59:58.75 is -1.25 seconds from the epoch.
        assert_eq!(text(&UnixTime, at(-2, 750_000_000)), "-1.250000");
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 2);
        assert_eq!(text(&UnixTime, far), format!("{}.000000", u64::MAX / 2));
    }

    #[test]
    fn closures_are_stamps_and_clocks() {
        let stamp = from_fn(|now: SystemTime, out: &mut String| {
            out.push_str(if now == SystemTime::UNIX_EPOCH { "epoch" } else { "later" });
        });
        let clock = || SystemTime::UNIX_EPOCH;
        assert_eq!(text(&stamp, clock.now()), "epoch");
        assert_eq!(text(&stamp, at(5, 0)), "later");
    }

    #[test]
    fn stamp_kinds_parse_and_print() {
        for kind in [StampKind::Ctime, StampKind::CtimeUtc, StampKind::Rfc3339, StampKind::Unix] {
            assert_eq!(kind.to_string().parse::<StampKind>(), Ok(kind));
        }
        assert!("iso".parse::<StampKind>().is_err());
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;
    use proptest::prelude::*;

    fn at(nanos: i128) -> SystemTime {
        from_unix_nanos(nanos).expect("in range")
    }

    fn text(stamp: &dyn Stamp, now: SystemTime) -> String {
        let mut s = String::new();
        stamp.write_stamp(now, &mut s);
        s
    }

    #[test]
    fn rfc3339_reads_offsets_fractions_and_separators() {
        let t = at(1_359_885_618_123_456_789);
        assert_eq!(Rfc3339::parse("2013-02-03T10:00:18.123456789Z"), Some(t));
        assert_eq!(Rfc3339::parse("2013-02-03t10:00:18.1234567891234z"), Some(t));
        assert_eq!(Rfc3339::parse("2013-02-03 05:30:18.123456789-04:30"), Some(t));
        assert_eq!(Rfc3339::parse("2013-02-03T10:00:18Z"), Some(at(1_359_885_618_000_000_000)));
        assert_eq!(Rfc3339::parse("1969-12-31T23:59:59.5Z"), Some(at(-500_000_000)));
        let resolution = |s| parse_rfc3339(s).map(|(_, r)| r);
        assert_eq!(resolution("2013-02-03T10:00:18.123456Z"), Some(Duration::from_micros(1)));
        assert_eq!(resolution("2013-02-03T10:00:18.1234567891Z"), Some(Duration::from_nanos(1)));
        assert_eq!(resolution("2013-02-03T10:00:18+00:00"), Some(Duration::from_secs(1)));
    }

    #[test]
    fn rfc3339_rejects_what_it_does_not_fully_understand() {
        for bad in [
            "",
            "2013-02-03T10:00:18",
            "2013-02-03T10:00:18.Z",
            "2013-02-03T10:00:18.5",
            "2013-02-03T10:00:18.5Zjunk",
            "2013-02-03T10:00:18+0100",
            "2013-02-03T10:00:18+24:00",
            "2013-02-30T10:00:18Z",
            "2013-13-03T10:00:18Z",
            "2013-02-03T24:00:00Z",
            "2016-12-31T23:59:60Z",
            "2013/02/03T10:00:18Z",
            "2013-02-03X10:00:18Z",
            "+013-02-03T10:00:18Z",
            "2013-02-03T10:00:1８Z",
            "Sun Feb  3 10:00:18 2013",
        ] {
            assert_eq!(Rfc3339::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn unix_time_reads_signs_and_fractions() {
        assert_eq!(UnixTime::parse("1359885618.123456"), Some(at(1_359_885_618_123_456_000)));
        assert_eq!(UnixTime::parse("1359885618"), Some(at(1_359_885_618_000_000_000)));
        assert_eq!(UnixTime::parse("-1.250000"), Some(at(-1_250_000_000)));
        assert_eq!(UnixTime::parse("-0.5"), Some(at(-500_000_000)));
        assert_eq!(parse_unix("7.25").map(|(_, r)| r), Some(Duration::from_millis(10)));
        for bad in ["", "-", ".5", "5.", "1.2.3", "+5", "5 ", "1e9", "0x10", "99999999999999999999999.0"] {
            assert_eq!(UnixTime::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_sub_second_kinds_parse() {
        let t = at(1_359_885_618_123_456_000);
        assert_eq!(StampKind::Rfc3339.parse("2013-02-03T10:00:18.123456Z"), Some(t));
        assert_eq!(StampKind::Unix.parse("1359885618.123456"), Some(t));
        assert_eq!(StampKind::Unix.parse("2013-02-03T10:00:18.123456Z"), None);
        assert_eq!(StampKind::Ctime.parse("Sun Feb  3 10:00:18 2013"), None);
        assert_eq!(StampKind::CtimeUtc.parse("Sun Feb  3 10:00:18 2013"), None);
    }

    proptest! {
        /// What the formatters write, the parsers read back, to the microsecond.
        #[test]
        fn formatted_stamps_parse_back(micros in -62_135_596_800_000_000i64..253_402_300_799_999_999) {
            let t = at(i128::from(micros) * 1000);
            prop_assert_eq!(Rfc3339::parse(&text(&Rfc3339, t)), Some(t));
            prop_assert_eq!(UnixTime::parse(&text(&UnixTime, t)), Some(t));
        }
    }
}
