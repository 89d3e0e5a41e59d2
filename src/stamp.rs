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

use time::{OffsetDateTime, UtcOffset};

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
/// In local time ([`Ctime::local`]) the UTC offset is looked up for each
/// second stamped, through the `time` crate (the C library's `localtime_r` on
/// Unix), so a server running across a daylight-saving change keeps stamping
/// the right local time. [`Ctime::utc`] and [`Ctime::with_offset`] need no
/// look-up at all.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use stamp_echo::stamp::{Ctime, Stamp};
///
/// let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_359_885_618);
/// let mut text = String::new();
/// Ctime::utc().write_stamp(t, &mut text);
/// assert_eq!(text, "Sun Feb  3 10:00:18 2013");
///
/// text.clear();
/// Ctime::with_offset(-5 * 3600)?.write_stamp(t, &mut text);
/// assert_eq!(text, "Sun Feb  3 05:00:18 2013");
/// # Ok::<(), stamp_echo::stamp::ZoneError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctime {
    zone: Zone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Zone {
    /// A fixed offset from UTC, in seconds (UTC is 0).
    Fixed(i32),
    /// The operating system's local time, looked up per instant; the offset
    /// found when the stamp was made stands in if a look-up ever fails.
    Local {
        /// The offset in force when the stamp was made, in seconds.
        fallback: i32,
    },
}

/// Why [`Ctime::local`] cannot stamp local time, or why an offset is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ZoneError {
    /// The operating system did not say what the local UTC offset is.
    #[error("the operating system could not determine the local UTC offset")]
    Indeterminate,
    /// `TZ` names a zone that is neither a zone file (`TZif`) nor a POSIX `TZ` rule.
    /// The C library would silently use UTC for it.
    #[error(
        "TZ={tz:?} names no zone file in {} and is not a POSIX TZ rule such as \"CET-1CEST,M3.5.0,M10.5.0/3\"",
        zoneinfo.display()
    )]
    UnknownZone {
        /// The `TZ` value (lossily decoded if it was not UTF-8).
        tz: String,
        /// The directory zone names are looked up in (`TZDIR`, else `/usr/share/zoneinfo`).
        zoneinfo: std::path::PathBuf,
    },
    /// A zone file (the one `TZ` names, else `/etc/localtime`) that starts
    /// like one (`TZif`) but is cut short or malformed, or an
    /// `/etc/localtime` that is not a zone file at all. The C library would
    /// silently use UTC for it.
    #[error("the zone file {} is corrupt ({why}); the C library would use UTC", path.display())]
    CorruptZoneFile {
        /// The zone file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An offset beyond ±25:59:59.
    #[error("UTC offset of {seconds} s is out of range (at most 25:59:59 either way)")]
    OffsetOutOfRange {
        /// The offset asked for, in seconds east of UTC.
        seconds: i32,
    },
}

impl Ctime {
    /// The operating system's local time, like Python's `time.ctime()`: on
    /// Unix the zone the C library uses (the `TZ` variable, else
    /// `/etc/localtime`), on Windows the system's time zone setting. The
    /// offset is looked up for every second stamped, so daylight-saving
    /// changes are followed, from any number of threads. (On Unix the C
    /// library reads `TZ` while doing so: changing the environment meanwhile,
    /// from C code or with the `unsafe` `std::env::set_var`, is undefined
    /// behaviour, as for any `getenv`.)
    ///
    /// # Errors
    ///
    /// [`ZoneError::Indeterminate`] if the operating system cannot say the
    /// offset, and on Unix [`ZoneError::UnknownZone`] if `TZ` is set to a
    /// name with no zone file that is not a POSIX `TZ` rule either, and
    /// [`ZoneError::CorruptZoneFile`] if the zone file (`TZ`'s, else
    /// `/etc/localtime`) is cut short or malformed (for both the C library
    /// would silently use UTC; this reports it instead). `TZ` unset with no
    /// `/etc/localtime` means UTC, the system's default, and is not an
    /// error.
    pub fn local() -> Result<Ctime, ZoneError> {
        check_tz_env()?;
        let now = OffsetDateTime::now_utc();
        let offset = UtcOffset::local_offset_at(now).map_err(|_| ZoneError::Indeterminate)?;
        Ok(Ctime { zone: Zone::Local { fallback: offset.whole_seconds() } })
    }

    /// Local time if it can be determined, else UTC together with the
    /// reason, so the caller can tell its user.
    pub fn local_or_utc() -> (Ctime, Option<ZoneError>) {
        match Ctime::local() {
            Ok(ctime) => (ctime, None),
            Err(err) => (Ctime::utc(), Some(err)),
        }
    }

    /// Coordinated universal time.
    pub fn utc() -> Ctime {
        Ctime { zone: Zone::Fixed(0) }
    }

    /// A fixed offset from UTC, in seconds east of it (`3600` for UTC+01:00),
    /// with no daylight-saving changes.
    ///
    /// # Errors
    ///
    /// [`ZoneError::OffsetOutOfRange`] beyond ±25:59:59.
    pub fn with_offset(seconds: i32) -> Result<Ctime, ZoneError> {
        UtcOffset::from_whole_seconds(seconds).map_err(|_| ZoneError::OffsetOutOfRange { seconds })?;
        Ok(Ctime { zone: Zone::Fixed(seconds) })
    }

    /// The offset from UTC at `secs` seconds since the epoch.
    fn offset_at(&self, secs: i64) -> i32 {
        match self.zone {
            Zone::Fixed(offset) => offset,
            Zone::Local { fallback } => {
                UtcOffset::local_offset_at(datetime(secs)).map_or(fallback, UtcOffset::whole_seconds)
            }
        }
    }
}

/// Where zone names in `TZ` are looked up: `TZDIR`, else the tz database's usual place.
#[cfg(unix)]
fn zoneinfo_dir() -> std::path::PathBuf {
    std::env::var_os("TZDIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| std::path::PathBuf::from("/usr/share/zoneinfo"), std::path::PathBuf::from)
}

/// The zone file the C library reads when `TZ` is unset.
#[cfg(unix)]
const LOCALTIME: &str = "/etc/localtime";

/// On Unix, refuses a zone the C library would silently read as UTC: a `TZ`
/// name with no zone file that does not look like a POSIX rule either, and
/// a zone file (`TZ`'s, else `/etc/localtime`) that is corrupt (see
/// [`check_tzif`]). This is a check, not a second implementation: the C
/// library still decides the offsets.
#[cfg(unix)]
fn check_tz_env() -> Result<(), ZoneError> {
    let Some(value) = std::env::var_os("TZ") else {
        // No /etc/localtime means UTC, the system's default; a file there
        // must be a whole zone file.
        let path = std::path::Path::new(LOCALTIME);
        return match read_zone_file(path) {
            None => Ok(()),
            Some(bytes) => check_tzif(&bytes).map_err(|why| ZoneError::CorruptZoneFile { path: path.into(), why }),
        };
    };
    let tz = value.to_string_lossy();
    let name = tz.strip_prefix(':').unwrap_or(&tz);
    if name.is_empty() || looks_like_posix_rule(name) {
        return Ok(());
    }
    let zoneinfo = zoneinfo_dir();
    let path = if name.starts_with('/') { std::path::PathBuf::from(name) } else { zoneinfo.join(name) };
    match read_zone_file(&path) {
        Some(bytes) if bytes.starts_with(TZIF) => {
            check_tzif(&bytes).map_err(|why| ZoneError::CorruptZoneFile { path, why })
        }
        _ => Err(ZoneError::UnknownZone { tz: tz.into_owned(), zoneinfo }),
    }
}

/// RFC 8536's magic, which every zone file starts with.
#[cfg(unix)]
const TZIF: &[u8] = b"TZif";

/// The largest zone file read: the tz database's are under 100 KiB.
#[cfg(unix)]
const MAX_ZONE_FILE: u64 = 1 << 20;

/// The bytes of the regular file at `path` (following symbolic links), up
/// to one past [`MAX_ZONE_FILE`]; `None` if there is none or it cannot be read.
#[cfg(unix)]
fn read_zone_file(path: &std::path::Path) -> Option<Vec<u8>> {
    use std::io::Read;
    if !path.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|file| file.take(MAX_ZONE_FILE + 1).read_to_end(&mut bytes)).ok()?;
    Some(bytes)
}

/// Checks that `bytes` are a whole, well-formed zone file (RFC 8536): the
/// header's counts are sound and the data they announce is all there, each
/// transition names a local time type that exists, each type's
/// abbreviation is within the file; from version 2 on, the second header
/// and data block too, and the footer's TZ string between newlines. What
/// the C library would refuse, and then silently read as UTC.
#[cfg(unix)]
fn check_tzif(bytes: &[u8]) -> Result<(), &'static str> {
    if bytes.len() as u64 > MAX_ZONE_FILE {
        return Err("larger than any zone file");
    }
    if !bytes.starts_with(TZIF) {
        return Err("not a zone file: no TZif magic");
    }
    let version = *bytes.get(4).ok_or("cut short in its header")?;
    if !matches!(version, 0 | b'2'..=b'4') {
        return Err("unknown TZif version");
    }
    let v1 = tzif_block(bytes, 0, 4, version == 0)?;
    if version == 0 {
        return Ok(());
    }
    let rest = bytes.get(v1..).ok_or("cut short")?;
    if !rest.starts_with(TZIF) || rest.get(4) != Some(&version) {
        return Err("no second header where version 2 data should start");
    }
    let v2 = tzif_block(rest, 0, 8, true)?;
    let footer = rest.get(v2..).ok_or("cut short")?;
    match footer.strip_prefix(b"\n") {
        Some(tz) if tz.contains(&b'\n') => Ok(()),
        _ => Err("no footer: cut short after its data"),
    }
}

/// Checks the header at `at` and the data block after it, with `time`-byte
/// transition times; returns where the block ends. The counts are checked
/// only if `strict` (a version 2+ reader skips the version 1 block).
#[cfg(unix)]
fn tzif_block(bytes: &[u8], at: usize, time: u64, strict: bool) -> Result<usize, &'static str> {
    let header = bytes.get(at..at + 44).ok_or("cut short in its header")?;
    let count = |i: usize| -> u64 {
        let field = &header[20 + 4 * i..24 + 4 * i];
        u64::from(u32::from_be_bytes([field[0], field[1], field[2], field[3]]))
    };
    let (isut, isstd, leap, times, types, chars) = (count(0), count(1), count(2), count(3), count(4), count(5));
    if strict && (types == 0 || chars == 0) {
        return Err("no local time types or no abbreviations");
    }
    if strict && ((isut != 0 && isut != types) || (isstd != 0 && isstd != types)) {
        return Err("indicator counts that do not match the local time types");
    }
    let len = times * time + times + types * 6 + chars + leap * (time + 4) + isstd + isut;
    let start = at + 44;
    let end = usize::try_from(start as u64 + len).map_err(|_| "counts larger than the file")?;
    let data = bytes.get(start..end).ok_or("cut short: its header announces more data than there is")?;
    if strict {
        let times = times as usize;
        let indices = &data[times * time as usize..times * (time as usize + 1)];
        if indices.iter().any(|&i| u64::from(i) >= types) {
            return Err("a transition to a local time type that does not exist");
        }
        let infos = &data[times * (time as usize + 1)..times * (time as usize + 1) + types as usize * 6];
        if infos.chunks_exact(6).any(|info| info[4] > 1 || u64::from(info[5]) >= chars) {
            return Err("a local time type with a bad daylight-saving flag or abbreviation");
        }
    }
    Ok(end)
}

/// Windows reads its zone from the system settings, not `TZ`.
#[cfg(not(unix))]
fn check_tz_env() -> Result<(), ZoneError> {
    Ok(())
}

/// Whether `name` starts like a POSIX `TZ` rule: a zone abbreviation (three
/// or more letters, or `<...>`) followed by an offset (`EST5EDT`, `<+03>-3`).
#[cfg(unix)]
fn looks_like_posix_rule(name: &str) -> bool {
    let rest = match name.strip_prefix('<') {
        Some(quoted) => match quoted.split_once('>') {
            Some((abbr, rest)) if abbr.len() >= 3 => rest,
            _ => return false,
        },
        None => {
            let letters = name.bytes().take_while(u8::is_ascii_alphabetic).count();
            if letters < 3 {
                return false;
            }
            &name[letters..]
        }
    };
    rest.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'+' || b == b'-')
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

impl Stamp for Ctime {
    fn write_stamp(&self, now: SystemTime, out: &mut String) {
        let (secs, _) = unix_parts(now);
        let local = secs.saturating_add(i64::from(self.offset_at(secs)));
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
///
/// ```
/// use stamp_echo::stamp::StampKind;
///
/// assert_eq!("rfc3339".parse::<StampKind>(), Ok(StampKind::Rfc3339));
/// assert_eq!(StampKind::CtimeUtc.to_string(), "ctime-utc");
/// let err = "iso".parse::<StampKind>().unwrap_err();
/// assert_eq!(err.to_string(), r#"unknown stamp "iso": expected ctime, ctime-utc, rfc3339 or unix"#);
/// ```
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

/// A name that is not a [`StampKind`]'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown stamp {given:?}: expected ctime, ctime-utc, rfc3339 or unix")]
pub struct UnknownStampKind {
    given: String,
}

impl UnknownStampKind {
    /// The name given.
    pub fn given(&self) -> &str {
        &self.given
    }
}

impl std::str::FromStr for StampKind {
    type Err = UnknownStampKind;

    /// Reads `ctime`, `ctime-utc`, `rfc3339` or `unix`.
    ///
    /// # Errors
    ///
    /// [`UnknownStampKind`] for any other text.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ctime" => Ok(StampKind::Ctime),
            "ctime-utc" => Ok(StampKind::CtimeUtc),
            "rfc3339" => Ok(StampKind::Rfc3339),
            "unix" => Ok(StampKind::Unix),
            _ => Err(UnknownStampKind { given: s.to_owned() }),
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
    pub fn build(self) -> (Arc<dyn Stamp>, Option<ZoneError>) {
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
    fn ctime_applies_a_fixed_offset() {
        let t = at(1_359_885_618, 0);
        assert_eq!(text(&Ctime::with_offset(3600).expect("in range"), t), "Sun Feb  3 11:00:18 2013");
        assert_eq!(text(&Ctime::with_offset(-(10 * 3600 + 1)).expect("in range"), t), "Sun Feb  3 00:00:17 2013");
        let max = 25 * 3600 + 59 * 60 + 59;
        assert!(Ctime::with_offset(max).is_ok() && Ctime::with_offset(-max).is_ok());
        assert_eq!(Ctime::with_offset(max + 1), Err(ZoneError::OffsetOutOfRange { seconds: max + 1 }));
        assert_eq!(Ctime::with_offset(i32::MIN), Err(ZoneError::OffsetOutOfRange { seconds: i32::MIN }));
        assert_eq!(Ctime::utc().granularity(), Granularity::Second);
    }

    #[cfg(unix)]
    #[test]
    fn posix_rules_are_told_from_zone_names() {
        for rule in ["EST5EDT", "CET-1CEST,M3.5.0,M10.5.0/3", "UTC0", "<+03>-3", "JST-9", "ABC+1"] {
            assert!(looks_like_posix_rule(rule), "{rule}");
        }
        for name in ["Europe/Berlin", "UTC", "Nowhere", "EST", "US/Eastern", "<+03>", "<ab>1", "AB1", "", "5"] {
            assert!(!looks_like_posix_rule(name), "{name}");
        }
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
        let err = "iso".parse::<StampKind>().expect_err("not a stamp name");
        assert_eq!(err.given(), "iso");
        assert!(err.to_string().contains("ctime, ctime-utc, rfc3339 or unix"), "{err}");
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

#[cfg(all(test, unix))]
mod zone_file_tests {
    use super::*;

    /// A header of `version` with these counts: isut, isstd, leap, times, types, chars.
    fn header(version: u8, counts: [u32; 6]) -> Vec<u8> {
        let mut out = b"TZif".to_vec();
        out.push(version);
        out.extend([0; 15]);
        for count in counts {
            out.extend(count.to_be_bytes());
        }
        out
    }

    /// A data block: one transition (at `time`-byte 0) to type 1, two
    /// types (UTC, and CST an hour ahead), their abbreviations.
    fn block(time: usize, index: u8) -> Vec<u8> {
        let mut out = vec![0; time];
        out.push(index);
        out.extend([0, 0, 0, 0, 0, 0]);
        out.extend([0, 0, 0x0e, 0x10, 1, 4]);
        out.extend(b"UTC\0CST\0");
        out
    }

    const COUNTS: [u32; 6] = [0, 0, 0, 1, 2, 8];

    fn version_1(index: u8) -> Vec<u8> {
        [header(0, COUNTS), block(4, index)].concat()
    }

    fn version_2(index: u8) -> Vec<u8> {
        [header(b'2', COUNTS), block(4, 1), header(b'2', COUNTS), block(8, index), b"\nUTC0\n".to_vec()].concat()
    }

    #[test]
    fn whole_zone_files_pass() {
        assert_eq!(check_tzif(&version_1(1)), Ok(()));
        assert_eq!(check_tzif(&version_2(1)), Ok(()));
    }

    #[test]
    fn every_cut_is_refused() {
        for file in [version_1(1), version_2(1)] {
            for cut in 0..file.len() {
                assert!(check_tzif(&file[..cut]).is_err(), "{cut} of {} bytes accepted", file.len());
            }
        }
    }

    #[test]
    fn malformed_data_is_refused() {
        assert_eq!(check_tzif(&version_1(2)), Err("a transition to a local time type that does not exist"));
        assert_eq!(check_tzif(&version_2(7)), Err("a transition to a local time type that does not exist"));
        let no_types = header(0, [0, 0, 0, 0, 0, 0]);
        assert_eq!(check_tzif(&no_types), Err("no local time types or no abbreviations"));
        let huge = header(b'2', [0, 0, 0, u32::MAX, 1, 1]);
        assert!(check_tzif(&huge).is_err());
        let mut version_9 = version_1(1);
        version_9[4] = b'9';
        assert_eq!(check_tzif(&version_9), Err("unknown TZif version"));
        assert_eq!(check_tzif(b"TZ"), Err("not a zone file: no TZif magic"));
    }

    /// Every zone file of the tz database here passes (none, if it is not installed).
    #[test]
    fn the_tz_database_passes() {
        let mut dirs = vec![zoneinfo_dir()];
        let mut checked = 0;
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if let Some(bytes) = read_zone_file(&path).filter(|b| b.starts_with(TZIF)) {
                    assert_eq!(check_tzif(&bytes), Ok(()), "{}", path.display());
                    checked += 1;
                }
            }
        }
        println!("{checked} zone files checked");
    }
}
