//! Local time offsets that stay correct in multi-threaded programs.
//!
//! Replies are stamped in *local* time, like Python's `time.ctime()`. The
//! usual way to learn the local offset is the C library's `localtime_r`, but
//! that reads the process environment, and on Unix another thread calling
//! `setenv` at the same moment is undefined behaviour. The `time` crate
//! therefore refuses to report the local offset once a program has more than
//! one thread — which every server has.
//!
//! This module does what glibc does, without calling it: it resolves the zone
//! from `TZ` (or `/etc/localtime`), parses TZif files (RFC 8536) and POSIX
//! `TZ` strings itself, and answers "what is the UTC offset at this instant?"
//! for *any* instant, so a long-running server keeps stamping the right time
//! across daylight-saving changes. Loading reads the environment and the file
//! system once; [`TimeZone::offset_at`] is pure and safe to call from any
//! thread.
//!
//! ```
//! use stamp_echo::tz::TimeZone;
//!
//! let berlin = TimeZone::from_posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
//! assert_eq!(berlin.offset_at(1_704_067_200), 3600); // 2024-01-01, CET
//! assert_eq!(berlin.offset_at(1_719_792_000), 7200); // 2024-07-01, CEST
//! ```

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Where glibc looks for zone files named by a relative `TZ` value, unless
/// `TZDIR` says otherwise.
const DEFAULT_ZONEINFO: &str = "/usr/share/zoneinfo";
/// The system default zone, used when `TZ` is unset.
const LOCALTIME: &str = "/etc/localtime";
/// Real TZif files are a few KiB; refuse to slurp anything absurd (`TZ=/dev/zero`).
const MAX_TZIF_LEN: usize = 1 << 20;
/// Largest accepted offset magnitude: 25:59:59, the range RFC 8536 recommends.
const MAX_OFFSET: u32 = 25 * 3600 + 59 * 60 + 59;
const SECS_PER_DAY: i64 = 86_400;
/// The Gregorian calendar, weekdays included, repeats every 400 years.
const SECS_PER_400_YEARS: i64 = 146_097 * SECS_PER_DAY;

/// Why a time zone could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TzError {
    /// A zone file exists (or was expected) but could not be opened or read.
    #[error("cannot read time zone file {}: {source}", path.display())]
    Io {
        /// The file that was tried.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The bytes are not a well-formed TZif file (RFC 8536).
    #[error("invalid TZif data{}: {reason}", in_file(path))]
    InvalidTzif {
        /// The file the bytes came from, if they came from a file.
        path: Option<PathBuf>,
        /// What was wrong with them.
        reason: &'static str,
    },
    /// The string is not a valid POSIX `TZ` string.
    #[error("invalid POSIX TZ string {spec:?}: {reason}")]
    InvalidPosix {
        /// The string that was parsed.
        spec: String,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// A `TZ` value naming a file had a `..` component; we refuse to let an
    /// environment value walk out of the zoneinfo directory.
    #[error("refusing TZ={name:?}: zone names must not contain \"..\" components")]
    UnsafeName {
        /// The offending `TZ` value.
        name: String,
    },
    /// A `TZ` value was neither a loadable zone file nor a POSIX `TZ` string.
    /// Both attempts are reported, since either may be what the user meant.
    #[error("TZ={tz:?} is neither a usable zone file ({file}) nor a valid POSIX TZ string ({posix})")]
    Unrecognized {
        /// The `TZ` value.
        tz: String,
        /// Why reading it as a zone file failed.
        file: Box<TzError>,
        /// Why parsing it as a POSIX `TZ` string failed.
        posix: Box<TzError>,
    },
}

fn in_file(path: &Option<PathBuf>) -> String {
    path.as_ref().map_or_else(String::new, |p| format!(" in {}", p.display()))
}

/// A time zone: the UTC offset in force at any instant.
///
/// Built from a TZif file (the compiled tz database in `/usr/share/zoneinfo`)
/// or a POSIX `TZ` string. A zone from a file holds the file's list of
/// transitions; instants after the last one follow the file's footer rule,
/// exactly as glibc's `localtime` does, so dates past 2037 keep their
/// daylight-saving changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeZone {
    /// Strictly ascending instants at which the offset changes.
    transitions: Vec<Transition>,
    /// The offset before the first transition (or always, if there are
    /// neither transitions nor a rule).
    initial_offset: i32,
    /// The rule for instants at or after the last transition, or for all
    /// instants when there are no transitions.
    rule: Option<PosixRule>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Transition {
    at: i64,
    offset: i32,
}

impl TimeZone {
    /// Coordinated Universal Time: offset 0 at every instant.
    pub fn utc() -> TimeZone {
        TimeZone { transitions: Vec::new(), initial_offset: 0, rule: None }
    }

    /// The zone the C library would use for `localtime`: the `TZ`
    /// environment variable if set, else `/etc/localtime`.
    ///
    /// Reads `TZ` once (through `std::env`, which is safe) and then calls
    /// [`TimeZone::from_tz_env`]. Call it at start-up and keep the result;
    /// glibc likewise reads the zone once and caches it.
    pub fn local() -> Result<TimeZone, TzError> {
        match std::env::var_os("TZ") {
            None => Self::from_tz_env(None),
            Some(value) => match value.to_str() {
                Some(value) => Self::from_tz_env(Some(value)),
                None => Err(TzError::InvalidPosix {
                    spec: value.to_string_lossy().into_owned(),
                    reason: "the TZ value is not valid UTF-8",
                }),
            },
        }
    }

    /// Resolves a `TZ` value the way glibc's `tzset` does.
    ///
    /// * `None` (unset): the file `/etc/localtime`. If it does not exist the
    ///   zone is UTC, as in glibc and systemd (minimal containers often ship
    ///   without it); any other failure is an error.
    /// * `Some("")` or `Some(":")`: UTC.
    /// * Otherwise, after dropping one leading `:`, the value is first tried
    ///   as a TZif file — an absolute path, or a name such as
    ///   `Europe/Berlin` under `$TZDIR` (default `/usr/share/zoneinfo`) —
    ///   and, if that fails, parsed as a POSIX `TZ` string such as
    ///   `EST5EDT,M3.2.0,M11.1.0`. glibc uses the same order, which is why
    ///   `TZ=EST5EDT` means the tz database's file of that name.
    ///
    /// Values with a `..` path component are refused outright
    /// ([`TzError::UnsafeName`]); glibc only does so in set-uid programs, but
    /// a server has no reason to read files outside the zone directories.
    /// Where glibc silently falls back to UTC for an unusable value, this
    /// returns an error so the caller can decide.
    pub fn from_tz_env(tz: Option<&str>) -> Result<TimeZone, TzError> {
        let Some(value) = tz else {
            return match load_file(Path::new(LOCALTIME)) {
                Err(TzError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(Self::utc()),
                other => other,
            };
        };
        let name = value.strip_prefix(':').unwrap_or(value);
        if name.is_empty() {
            return Ok(Self::utc());
        }
        if name.split('/').any(|component| component == "..") {
            return Err(TzError::UnsafeName { name: value.to_owned() });
        }
        let path = if name.starts_with('/') { PathBuf::from(name) } else { zoneinfo_dir().join(name) };
        let file_error = match load_file(&path) {
            Ok(zone) => return Ok(zone),
            Err(error) => error,
        };
        Self::from_posix(name).map_err(|posix_error| TzError::Unrecognized {
            tz: value.to_owned(),
            file: Box::new(file_error),
            posix: Box::new(posix_error),
        })
    }

    /// Parses a TZif file (RFC 8536, versions 1 to 4).
    ///
    /// For version 2 and later the 64-bit data block and the footer `TZ`
    /// string are used, as glibc does; the 32-bit block only exists for old
    /// readers. Leap-second records are skipped: Unix time does not count
    /// leap seconds, so they do not affect the offset.
    ///
    /// Lookup mirrors glibc: before the first transition the first
    /// standard-time type applies (the first type if all are daylight
    /// time); from the last transition on, the footer rule applies if there
    /// is one. A file with no transitions uses its first standard-time type
    /// throughout and, like glibc, ignores its footer.
    ///
    /// Malformed input of any kind is an error, never a panic, and the header
    /// counts are checked against the input length before anything is
    /// allocated.
    pub fn from_tzif(bytes: &[u8]) -> Result<TimeZone, TzError> {
        parse_tzif(bytes).map_err(|reason| TzError::InvalidTzif { path: None, reason })
    }

    /// Parses a POSIX `TZ` string, e.g. `EST5EDT,M3.2.0,M11.1.0`,
    /// `<+0330>-3:30` or `UTC0`.
    ///
    /// Grammar: `std offset [dst [offset] [,start[/time],end[/time]]]`.
    /// Names are three or more letters, or `<...>` quoted with letters,
    /// digits, `+` and `-`. Offsets are `[+-]hh[:mm[:ss]]` with `hh` at most
    /// 24, counted *west* of Greenwich (so `CET-1` is UTC+1). The daylight
    /// offset defaults to one hour ahead of standard time. Dates are `Jn`
    /// (1–365, February 29 never counted), `n` (0–365, counted) or `Mm.w.d`
    /// (day `d`, 0 = Sunday, of week `w` of month `m`, 5 = last); times
    /// default to 02:00:00 and may be negative or up to 167 hours (the
    /// RFC 8536 extension used by TZif footers). Without a rule the US rule
    /// `M3.2.0,M11.1.0` applies, as in glibc when no `posixrules` file is
    /// consulted.
    ///
    /// Unlike glibc's `tzset`, which accepts any prefix it can make sense of
    /// and ignores the rest, anything malformed is an error.
    ///
    /// Two deliberate differences from glibc, both glibc quirks: instants
    /// before 1970 follow the rule like any others (glibc computes them as
    /// if in 1970), and a rule whose daylight time covers the whole year,
    /// such as `EST5EDT,0/0,J365/25`, is daylight time throughout (glibc
    /// gives a few hours of standard time around each UTC new year).
    pub fn from_posix(spec: &str) -> Result<TimeZone, TzError> {
        let rule = parse_posix(spec).map_err(|reason| TzError::InvalidPosix { spec: spec.to_owned(), reason })?;
        Ok(TimeZone { transitions: Vec::new(), initial_offset: rule.std_offset, rule: Some(rule) })
    }

    /// Seconds east of UTC in force at `unix_seconds` (e.g. 3600 for CET in
    /// winter, -14400 for EDT).
    ///
    /// A binary search over the transitions, or a few calendar computations
    /// for rule-based instants. Defined for every `i64`: rules are evaluated
    /// modulo the 400-year Gregorian cycle, so far-off years get the answer
    /// the rule gives for them, without overflow or panic.
    pub fn offset_at(&self, unix_seconds: i64) -> i32 {
        let after = self.transitions.partition_point(|tr| tr.at <= unix_seconds);
        if after == self.transitions.len()
            && let Some(rule) = &self.rule
        {
            return rule.offset_at(unix_seconds);
        }
        after.checked_sub(1).and_then(|last| self.transitions.get(last)).map_or(self.initial_offset, |tr| tr.offset)
    }
}

fn zoneinfo_dir() -> PathBuf {
    std::env::var_os("TZDIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_ZONEINFO), PathBuf::from)
}

fn load_file(path: &Path) -> Result<TimeZone, TzError> {
    let io_error = |source: io::Error| TzError::Io { path: path.to_owned(), source };
    let invalid = |reason| TzError::InvalidTzif { path: Some(path.to_owned()), reason };
    let file = File::open(path).map_err(io_error)?;
    if !file.metadata().map_err(io_error)?.is_file() {
        return Err(invalid("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_TZIF_LEN as u64 + 1).read_to_end(&mut bytes).map_err(io_error)?;
    if bytes.len() > MAX_TZIF_LEN {
        return Err(invalid("file is larger than 1 MiB"));
    }
    parse_tzif(&bytes).map_err(invalid)
}

// ---------------------------------------------------------------- TZif ----

/// A bounds-checked big-endian reader over a byte slice.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let (head, tail) = self.rest.split_at_checked(n).ok_or("data ends early")?;
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        self.take(N)?.try_into().map_err(|_| "data ends early")
    }

    fn count(&mut self) -> Result<usize, &'static str> {
        usize::try_from(u32::from_be_bytes(self.array()?)).map_err(|_| "count too large")
    }
}

/// The counts from a TZif header.
struct Header {
    version: u8,
    isutcnt: usize,
    isstdcnt: usize,
    leapcnt: usize,
    timecnt: usize,
    typecnt: usize,
    charcnt: usize,
}

impl Header {
    fn read(r: &mut Reader<'_>) -> Result<Header, &'static str> {
        if r.take(4)? != b"TZif" {
            return Err("missing \"TZif\" magic");
        }
        let [version] = r.array()?;
        r.take(15)?;
        Ok(Header {
            version,
            isutcnt: r.count()?,
            isstdcnt: r.count()?,
            leapcnt: r.count()?,
            timecnt: r.count()?,
            typecnt: r.count()?,
            charcnt: r.count()?,
        })
    }

    /// Length of the data block that follows, with `time_size`-byte times.
    fn block_len(&self, time_size: usize) -> Option<usize> {
        self.timecnt
            .checked_mul(time_size + 1)?
            .checked_add(self.typecnt.checked_mul(6)?)?
            .checked_add(self.charcnt)?
            .checked_add(self.leapcnt.checked_mul(time_size + 4)?)?
            .checked_add(self.isstdcnt)?
            .checked_add(self.isutcnt)
    }
}

fn parse_tzif(bytes: &[u8]) -> Result<TimeZone, &'static str> {
    let mut r = Reader { rest: bytes };
    let header = Header::read(&mut r)?;
    if header.version == 0 {
        // Version 1: 32-bit times, no footer. Trailing bytes are ignored.
        let (transitions, initial_offset) = parse_block(&mut r, &header, 4)?;
        return Ok(TimeZone { transitions, initial_offset, rule: None });
    }
    // Version 2+: skip the 32-bit block, which exists for old readers only.
    take_block(&mut r, &header, 4)?;
    let header = Header::read(&mut r)?;
    let (transitions, initial_offset) = parse_block(&mut r, &header, 8)?;
    let spec = r
        .rest
        .strip_prefix(b"\n")
        .and_then(|footer| footer.strip_suffix(b"\n"))
        .ok_or("missing or malformed footer")?;
    if spec.contains(&b'\n') {
        return Err("footer has more than one line");
    }
    let spec = std::str::from_utf8(spec).map_err(|_| "footer is not UTF-8")?;
    let rule = if spec.is_empty() {
        None
    } else {
        Some(parse_posix(spec).map_err(|_| "footer is not a valid POSIX TZ string")?)
    };
    Ok(TimeZone {
        // glibc consults the footer only after the last transition; with no
        // transitions it never does, and neither do we.
        rule: rule.filter(|_| !transitions.is_empty()),
        transitions,
        initial_offset,
    })
}

/// Takes the data block described by `h`, checking its length against the
/// input *before* anything is allocated for its contents.
fn take_block<'a>(r: &mut Reader<'a>, h: &Header, time_size: usize) -> Result<Reader<'a>, &'static str> {
    let len = h.block_len(time_size).ok_or("header counts overflow")?;
    if len > r.rest.len() {
        return Err("header counts exceed the data length");
    }
    Ok(Reader { rest: r.take(len)? })
}

/// Parses one data block: returns the transitions (with their offsets) and
/// the offset before the first transition.
fn parse_block(r: &mut Reader<'_>, h: &Header, time_size: usize) -> Result<(Vec<Transition>, i32), &'static str> {
    if h.typecnt == 0 {
        return Err("no local time types");
    }
    if h.isstdcnt > h.typecnt || h.isutcnt > h.typecnt {
        return Err("more standard/UT indicators than local time types");
    }
    // Every allocation below is bounded by the length of this block. The
    // abbreviations, leap seconds and indicators after the types are unused.
    let mut block = take_block(r, h, time_size)?;
    let times = block.take(h.timecnt * time_size)?;
    let indices = block.take(h.timecnt)?;
    let raw_types = block.take(h.typecnt * 6)?;

    let mut types = Vec::with_capacity(h.typecnt);
    for raw in raw_types.chunks_exact(6) {
        let [a, b, c, d, is_dst, abbreviation] = <[u8; 6]>::try_from(raw).map_err(|_| "truncated local time type")?;
        let offset = i32::from_be_bytes([a, b, c, d]);
        if offset.unsigned_abs() > MAX_OFFSET {
            return Err("UTC offset beyond 25:59:59");
        }
        if is_dst > 1 {
            return Err("daylight-saving flag is neither 0 nor 1");
        }
        if usize::from(abbreviation) >= h.charcnt {
            return Err("abbreviation index out of range");
        }
        types.push((offset, is_dst == 1));
    }

    let mut transitions = Vec::with_capacity(h.timecnt);
    for (time, &index) in times.chunks_exact(time_size).zip(indices) {
        // `time` is 8 bytes in version 2+ blocks and 4 in version 1 blocks.
        let at = match <[u8; 8]>::try_from(time) {
            Ok(wide) => i64::from_be_bytes(wide),
            Err(_) => i64::from(i32::from_be_bytes(time.try_into().map_err(|_| "truncated transition time")?)),
        };
        if transitions.last().is_some_and(|prev: &Transition| prev.at >= at) {
            return Err("transition times are not strictly ascending");
        }
        let (offset, _) = types.get(usize::from(index)).ok_or("transition type index out of range")?;
        transitions.push(Transition { at, offset: *offset });
    }

    let initial = types.iter().find(|(_, is_dst)| !is_dst).or(types.first()).map_or(0, |(offset, _)| *offset);
    Ok((transitions, initial))
}

// --------------------------------------------------------------- POSIX ----

/// A parsed POSIX `TZ` string. Offsets are seconds *east* of UTC.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PosixRule {
    std_offset: i32,
    dst: Option<DstRule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct DstRule {
    offset: i32,
    /// When daylight time starts, in local standard time.
    start: RuleDate,
    start_time: i32,
    /// When daylight time ends, in local daylight time.
    end: RuleDate,
    end_time: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RuleDate {
    /// `Jn`: day 1–365, February 29 never counted.
    Julian1(u16),
    /// `n`: zero-based day 0–365, February 29 counted.
    Julian0(u16),
    /// `Mm.w.d`: weekday `d` (0 = Sunday) of week `w` (5 = last) of month `m`.
    MonthWeekDay { month: u16, week: u16, weekday: u16 },
}

impl PosixRule {
    fn offset_at(&self, t: i64) -> i32 {
        match &self.dst {
            Some(dst) if dst.is_dst_at(t, self.std_offset) => dst.offset,
            _ => self.std_offset,
        }
    }
}

impl DstRule {
    /// The UTC instants at which daylight time starts and ends in `year`.
    fn transitions(&self, year: i64, std_offset: i32) -> (i64, i64) {
        let start = self.start.day(year) * SECS_PER_DAY + i64::from(self.start_time) - i64::from(std_offset);
        let end = self.end.day(year) * SECS_PER_DAY + i64::from(self.end_time) - i64::from(self.offset);
        (start, end)
    }

    /// Whether daylight time is in force at `t`: the latest start or end at
    /// or before `t` decides. Looking at neighbouring years as well handles
    /// southern-hemisphere rules (end before start) and rules whose end meets
    /// the next year's start (always daylight time) without special cases.
    fn is_dst_at(&self, t: i64, std_offset: i32) -> bool {
        // Same calendar position, hence same answer, somewhere in 1970..2370.
        let t = t.rem_euclid(SECS_PER_400_YEARS);
        let year = year_of_day(t.div_euclid(SECS_PER_DAY));
        let mut latest: Option<((i64, i64, u8), bool)> = None;
        for y in year - 2..=year + 1 {
            let (start, end) = self.transitions(y, std_offset);
            // On a tie, the later year wins, and within a year the end does.
            for (at, key, is_dst) in [(start, (start, y, 0), true), (end, (end, y, 1), false)] {
                if at <= t && latest.is_none_or(|(best, _)| key > best) {
                    latest = Some((key, is_dst));
                }
            }
        }
        latest.is_some_and(|(_, is_dst)| is_dst)
    }
}

impl RuleDate {
    /// Days since 1970-01-01 of this date in `year`.
    fn day(self, year: i64) -> i64 {
        let jan1 = days_from_civil(year, 1, 1);
        match self {
            RuleDate::Julian1(n) => jan1 + i64::from(n) - 1 + i64::from(n >= 60 && is_leap(year)),
            RuleDate::Julian0(n) => jan1 + i64::from(n),
            RuleDate::MonthWeekDay { month, week, weekday } => {
                let month = i64::from(month);
                let first = days_from_civil(year, month, 1);
                // 1970-01-01 was a Thursday (weekday 4).
                let first_weekday = (first + 4).rem_euclid(7);
                let mut day = first + (i64::from(weekday) - first_weekday).rem_euclid(7) + 7 * (i64::from(week) - 1);
                if day >= first + days_in_month(year, month) {
                    day -= 7; // week 5 means the last one
                }
                day
            }
        }
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm). Only called with years near 1970..2370.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The year containing `days` since 1970-01-01 (inverse of the above).
fn year_of_day(days: i64) -> i64 {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_based_month = (5 * day_of_year + 2) / 153;
    era * 400 + year_of_era + i64::from(march_based_month >= 10)
}

/// A cursor over a POSIX `TZ` string.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        match self.rest.split_first() {
            Some((&first, tail)) if first == byte => {
                self.rest = tail;
                true
            }
            _ => false,
        }
    }

    fn expect(&mut self, byte: u8, reason: &'static str) -> Result<(), &'static str> {
        if self.eat(byte) { Ok(()) } else { Err(reason) }
    }

    /// Skips bytes matching `pred`, returning how many.
    fn skip_while(&mut self, pred: impl Fn(u8) -> bool) -> usize {
        let n = self.rest.iter().take_while(|&&b| pred(b)).count();
        self.rest = self.rest.get(n..).unwrap_or_default();
        n
    }

    /// A decimal number of at least one digit, at most `max`.
    fn number(&mut self, max: u16, reason: &'static str) -> Result<u16, &'static str> {
        let mut value: u16 = 0;
        let mut digits = 0;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            self.rest = self.rest.get(1..).unwrap_or_default();
            // Cannot overflow: `value <= max <= 365` before this step.
            value = value * 10 + u16::from(digit - b'0');
            if value > max {
                return Err(reason);
            }
            digits += 1;
        }
        if digits == 0 { Err(reason) } else { Ok(value) }
    }

    /// `[+-]hh[:mm[:ss]]` as signed seconds, with `hh` at most `max_hours`.
    fn hms(&mut self, max_hours: u16, reason: &'static str) -> Result<i32, &'static str> {
        let negative = self.eat(b'-');
        if !negative {
            self.eat(b'+');
        }
        let mut seconds = i32::from(self.number(max_hours, reason)?) * 3600;
        if self.eat(b':') {
            seconds += i32::from(self.number(59, reason)?) * 60;
            if self.eat(b':') {
                seconds += i32::from(self.number(59, reason)?);
            }
        }
        Ok(if negative { -seconds } else { seconds })
    }

    fn name(&mut self) -> Result<(), &'static str> {
        if self.eat(b'<') {
            let len = self.skip_while(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-');
            if len < 3 {
                return Err("a <quoted> zone name needs at least 3 letters, digits, '+' or '-'");
            }
            self.expect(b'>', "a <quoted> zone name is not closed by '>'")
        } else if self.skip_while(|b| b.is_ascii_alphabetic()) < 3 {
            Err("a zone name needs at least 3 letters (or <quotes>)")
        } else {
            Ok(())
        }
    }

    fn date(&mut self) -> Result<RuleDate, &'static str> {
        const JULIAN1: &str = "a Jn date needs a day from 1 to 365";
        const MONTH: &str = "an Mm.w.d date needs month 1-12, week 1-5 and weekday 0-6";
        if self.eat(b'J') {
            match self.number(365, JULIAN1)? {
                0 => Err(JULIAN1),
                n => Ok(RuleDate::Julian1(n)),
            }
        } else if self.eat(b'M') {
            let month = self.number(12, MONTH)?;
            self.expect(b'.', MONTH)?;
            let week = self.number(5, MONTH)?;
            self.expect(b'.', MONTH)?;
            let weekday = self.number(6, MONTH)?;
            if month == 0 || week == 0 {
                return Err(MONTH);
            }
            Ok(RuleDate::MonthWeekDay { month, week, weekday })
        } else if self.peek().is_some_and(|b| b.is_ascii_digit()) {
            let n = self.number(365, "an n date needs a day from 0 to 365")?;
            Ok(RuleDate::Julian0(n))
        } else {
            Err("expected a date: Jn, n or Mm.w.d")
        }
    }

    /// An optional `/time`, default 02:00:00.
    fn time(&mut self) -> Result<i32, &'static str> {
        if self.eat(b'/') {
            self.hms(167, "a rule time needs hours from -167 to 167, minutes and seconds 0-59")
        } else {
            Ok(2 * 3600)
        }
    }
}

fn parse_posix(spec: &str) -> Result<PosixRule, &'static str> {
    const OFFSET: &str = "a UTC offset needs hours 0-24, minutes and seconds 0-59";
    let mut c = Cursor { rest: spec.as_bytes() };
    c.name()?;
    // POSIX offsets count west of Greenwich; we store seconds east.
    let std_offset = -c.hms(24, OFFSET)?;
    if c.rest.is_empty() {
        return Ok(PosixRule { std_offset, dst: None });
    }
    c.name()?;
    let offset = match c.peek() {
        Some(b'+' | b'-' | b'0'..=b'9') => -c.hms(24, OFFSET)?,
        _ => std_offset + 3600,
    };
    let dst = if c.rest.is_empty() || c.rest == b"," {
        // No rule: glibc would consult a `posixrules` file and otherwise use
        // the current US rule; we always use the US rule.
        c.rest = &[];
        DstRule {
            offset,
            start: RuleDate::MonthWeekDay { month: 3, week: 2, weekday: 0 },
            start_time: 2 * 3600,
            end: RuleDate::MonthWeekDay { month: 11, week: 1, weekday: 0 },
            end_time: 2 * 3600,
        }
    } else {
        c.expect(b',', "expected ',' before the daylight-saving start date")?;
        let start = c.date()?;
        let start_time = c.time()?;
        c.expect(b',', "expected ',' before the daylight-saving end date")?;
        let end = c.date()?;
        let end_time = c.time()?;
        DstRule { offset, start, start_time, end, end_time }
    };
    if !c.rest.is_empty() {
        return Err("unexpected characters after the rule");
    }
    Ok(PosixRule { std_offset, dst: Some(dst) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// Unix time of a UTC calendar time, computed by the `time` crate so that
    /// the expectations do not depend on this module's calendar code.
    fn utc(year: i32, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> i64 {
        let month = time::Month::try_from(month).unwrap();
        time::Date::from_calendar_date(year, month, day)
            .unwrap()
            .with_hms(hour, minute, second)
            .unwrap()
            .assume_utc()
            .unix_timestamp()
    }

    /// Asserts `zone.offset_at(t - 1) == before` and `zone.offset_at(t) == after`.
    #[track_caller]
    fn assert_edge(zone: &TimeZone, t: i64, before: i32, after: i32) {
        assert_eq!(zone.offset_at(t - 1), before, "one second before {t}");
        assert_eq!(zone.offset_at(t), after, "at {t}");
        assert_eq!(zone.offset_at(t + 1), after, "one second after {t}");
    }

    // ------------------------------------------------------ TZif builder --

    /// A TZif file described field by field (RFC 8536 section 3).
    #[derive(Clone)]
    struct Blob {
        version: u8,
        times: Vec<i64>,
        indices: Vec<u8>,
        /// (utoff, isdst, desigidx)
        types: Vec<(i32, u8, u8)>,
        chars: Vec<u8>,
        leaps: Vec<(i64, i32)>,
        /// Whether to write standard/wall and UT/local indicators.
        indicators: bool,
        footer: String,
    }

    impl Blob {
        /// New York-like data: LMT, then EST from 1883, a US DST period in
        /// 2020, and (for v2+) the US footer rule.
        fn new_york(version: u8) -> Blob {
            Blob {
                version,
                times: vec![utc(1883, 11, 18, 17, 0, 0), utc(2020, 3, 8, 7, 0, 0), utc(2020, 11, 1, 6, 0, 0)],
                indices: vec![2, 1, 2],
                types: vec![(-17762, 0, 0), (-14400, 1, 4), (-18000, 0, 8)],
                chars: b"LMT\0EDT\0EST\0".to_vec(),
                leaps: vec![(utc(2016, 12, 31, 23, 59, 60 - 1) + 1, 27)],
                indicators: true,
                footer: "EST5EDT,M3.2.0,M11.1.0".to_owned(),
            }
        }

        fn block(&self, wide: bool) -> Vec<u8> {
            let mut out = b"TZif".to_vec();
            out.push(self.version);
            out.extend([0; 15]);
            let indicators = if self.indicators { self.types.len() } else { 0 };
            for count in
                [indicators, indicators, self.leaps.len(), self.times.len(), self.types.len(), self.chars.len()]
            {
                out.extend(u32::try_from(count).unwrap().to_be_bytes());
            }
            let time = |out: &mut Vec<u8>, t: i64| {
                if wide {
                    out.extend(t.to_be_bytes());
                } else {
                    out.extend(i32::try_from(t).unwrap_or(i32::MIN).to_be_bytes());
                }
            };
            for &t in &self.times {
                time(&mut out, t);
            }
            out.extend(&self.indices);
            for &(utoff, isdst, desig) in &self.types {
                out.extend(utoff.to_be_bytes());
                out.extend([isdst, desig]);
            }
            out.extend(&self.chars);
            for &(t, correction) in &self.leaps {
                time(&mut out, t);
                out.extend(correction.to_be_bytes());
            }
            out.extend(std::iter::repeat_n(0, 2 * indicators));
            out
        }

        /// The file, with `v1`'s data in the 32-bit block of a v2+ file.
        fn build_with_v1(&self, v1: &Blob) -> Vec<u8> {
            if self.version == 0 {
                return self.block(false);
            }
            let mut out = v1.block(false);
            out.extend(self.block(true));
            out.push(b'\n');
            out.extend(self.footer.as_bytes());
            out.push(b'\n');
            out
        }

        fn build(&self) -> Vec<u8> {
            self.build_with_v1(self)
        }
    }

    // -------------------------------------------------------------- TZif --

    #[test]
    fn utc_is_zero_everywhere() {
        let zone = TimeZone::utc();
        for t in [i64::MIN, -1, 0, 1, 1_700_000_000, i64::MAX] {
            assert_eq!(zone.offset_at(t), 0);
        }
    }

    #[test]
    fn tzif_v1_follows_transitions_and_keeps_the_last_type() {
        let mut blob = Blob::new_york(0);
        blob.times[0] = utc(1950, 1, 1, 5, 0, 0); // v1 times are 32-bit
        // Put the DST type first: glibc uses the first *standard* type
        // before the first transition, not type 0.
        blob.types = vec![(-14400, 1, 4), (-17762, 0, 0), (-18000, 0, 8)];
        blob.indices = vec![2, 0, 2];
        let zone = TimeZone::from_tzif(&blob.build()).unwrap();
        assert_edge(&zone, blob.times[0], -17762, -18000);
        assert_edge(&zone, blob.times[1], -18000, -14400);
        assert_edge(&zone, blob.times[2], -14400, -18000);
        // No footer in v1: the last type applies forever.
        assert_eq!(zone.offset_at(utc(2030, 7, 1, 0, 0, 0)), -18000);
        assert_eq!(zone.offset_at(i64::MAX), -18000);
        assert_eq!(zone.offset_at(i64::MIN), -17762);

        // If every type is DST, glibc falls back to type 0.
        blob.types = vec![(-14400, 1, 4), (-10800, 1, 0)];
        blob.indices = vec![1, 0, 1];
        let zone = TimeZone::from_tzif(&blob.build()).unwrap();
        assert_eq!(zone.offset_at(i64::MIN), -14400);
    }

    #[test]
    fn tzif_v2_uses_the_64_bit_block_and_the_footer() {
        let blob = Blob::new_york(b'2');
        // A 32-bit block that disagrees, as a slim v1 block might: ignored.
        let mut v1 = blob.clone();
        v1.times.clear();
        v1.indices.clear();
        v1.types = vec![(3600, 0, 0)];
        v1.chars = b"XXX\0".to_vec();
        v1.leaps.clear();
        v1.indicators = false;
        for version in [b'2', b'3', b'4'] {
            let blob = Blob { version, ..blob.clone() };
            let zone = TimeZone::from_tzif(&blob.build_with_v1(&v1)).unwrap();
            // 1883 is before 1901: only representable in the 64-bit block.
            assert_edge(&zone, utc(1883, 11, 18, 17, 0, 0), -17762, -18000);
            assert_edge(&zone, utc(2020, 3, 8, 7, 0, 0), -18000, -14400);
            assert_edge(&zone, utc(2020, 11, 1, 6, 0, 0), -14400, -18000);
            // After the last transition the footer rule takes over.
            assert_edge(&zone, utc(2021, 3, 14, 7, 0, 0), -18000, -14400);
            assert_edge(&zone, utc(2021, 11, 7, 6, 0, 0), -14400, -18000);
            assert_edge(&zone, utc(2040, 3, 11, 7, 0, 0), -18000, -14400);
            assert_eq!(zone.offset_at(utc(2100, 7, 1, 0, 0, 0)), -14400);
            assert_eq!(zone.offset_at(utc(2100, 1, 1, 0, 0, 0)), -18000);
            assert_eq!(zone.offset_at(i64::MIN), -17762);
            assert!([-18000, -14400].contains(&zone.offset_at(i64::MAX)));
        }
    }

    #[test]
    fn tzif_v2_empty_footer_keeps_the_last_type() {
        let blob = Blob { footer: String::new(), ..Blob::new_york(b'2') };
        let zone = TimeZone::from_tzif(&blob.build()).unwrap();
        assert_eq!(zone.offset_at(utc(2030, 7, 1, 0, 0, 0)), -18000);
    }

    #[test]
    fn tzif_without_transitions_ignores_the_footer_like_glibc() {
        let blob = Blob {
            times: vec![],
            indices: vec![],
            types: vec![(-18000, 0, 0)],
            chars: b"EST\0".to_vec(),
            ..Blob::new_york(b'2')
        };
        let zone = TimeZone::from_tzif(&blob.build()).unwrap();
        assert_eq!(zone.offset_at(utc(2030, 7, 1, 0, 0, 0)), -18000);
    }

    #[test]
    fn tzif_rejects_malformed_data() {
        let good = Blob::new_york(b'2');
        let with = |change: &dyn Fn(&mut Blob)| {
            let mut blob = good.clone();
            change(&mut blob);
            blob.build()
        };
        let mut huge_count = good.build();
        huge_count[32..36].copy_from_slice(&u32::MAX.to_be_bytes()); // v1 timecnt
        let mut huge_v2_count = good.build();
        let second = good.block(false).len();
        huge_v2_count[second + 32..second + 36].copy_from_slice(&0x0100_0000u32.to_be_bytes());
        let mut missing_newline = good.build();
        missing_newline.pop();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "data ends early"),
            (b"TZif2".to_vec(), "data ends early"),
            (b"TZjf2\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec(), "magic"),
            (huge_count, "exceed the data length"),
            (huge_v2_count, "exceed the data length"),
            (with(&|b| b.types.clear()), "no local time types"),
            (with(&|b| b.times.swap(0, 1)), "strictly ascending"),
            (with(&|b| b.times[1] = b.times[0]), "strictly ascending"),
            (with(&|b| b.indices[1] = 3), "type index out of range"),
            (with(&|b| b.types[1].1 = 2), "daylight-saving flag"),
            (with(&|b| b.types[1].0 = 26 * 3600), "beyond 25:59:59"),
            (with(&|b| b.types[1].0 = i32::MIN), "beyond 25:59:59"),
            (with(&|b| b.types[1].2 = 12), "abbreviation index"),
            (missing_newline, "footer"),
            (with(&|b| b.footer = "EST5\nEDT".to_owned()), "more than one line"),
            (with(&|b| b.footer = "EST5EDT,M3".to_owned()), "not a valid POSIX"),
        ];
        for (bytes, reason) in cases {
            let error = TimeZone::from_tzif(&bytes).unwrap_err();
            assert!(matches!(error, TzError::InvalidTzif { path: None, .. }), "{error:?}");
            let message = error.to_string();
            assert!(message.contains(reason), "{message:?} lacks {reason:?}");
        }
    }

    // ------------------------------------------------------------- POSIX --

    #[test]
    fn posix_northern_rules() {
        let us = TimeZone::from_posix("EST5EDT,M3.2.0,M11.1.0").unwrap();
        assert_edge(&us, utc(2024, 3, 10, 7, 0, 0), -18000, -14400);
        assert_edge(&us, utc(2024, 11, 3, 6, 0, 0), -14400, -18000);
        assert_edge(&us, utc(2023, 3, 12, 7, 0, 0), -18000, -14400);
        let eu = TimeZone::from_posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        assert_edge(&eu, utc(2024, 3, 31, 1, 0, 0), 3600, 7200);
        assert_edge(&eu, utc(2024, 10, 27, 1, 0, 0), 7200, 3600);
        assert_edge(&eu, utc(2026, 3, 29, 1, 0, 0), 3600, 7200);
        assert_edge(&eu, utc(2026, 10, 25, 1, 0, 0), 7200, 3600);
    }

    #[test]
    fn posix_southern_rules() {
        let sydney = TimeZone::from_posix("AEST-10AEDT,M10.1.0,M4.1.0/3").unwrap();
        assert_edge(&sydney, utc(2024, 4, 6, 16, 0, 0), 39600, 36000);
        assert_edge(&sydney, utc(2024, 10, 5, 16, 0, 0), 36000, 39600);
        assert_eq!(sydney.offset_at(utc(2024, 1, 1, 0, 0, 0)), 39600);
        assert_eq!(sydney.offset_at(utc(2024, 12, 31, 23, 0, 0)), 39600);
        assert_eq!(sydney.offset_at(utc(2024, 7, 1, 0, 0, 0)), 36000);
        // Lord Howe: half-hour standard offset and half-hour DST.
        let lord_howe = TimeZone::from_posix("<+1030>-10:30<+11>-11,M10.1.0,M4.1.0").unwrap();
        assert_edge(&lord_howe, utc(2024, 4, 6, 15, 0, 0), 39600, 37800);
        assert_edge(&lord_howe, utc(2024, 10, 5, 15, 30, 0), 37800, 39600);
    }

    #[test]
    fn posix_fixed_offsets() {
        for (spec, offset) in [
            ("<+0330>-3:30", 12600),
            ("UTC0", 0),
            ("IST-5:30", 19800),
            ("<-0245>+2:45", -9900),
            ("XXX-24:59:59", 89999),
            ("<+1245>-12:45:00", 45900),
        ] {
            let zone = TimeZone::from_posix(spec).unwrap();
            for t in [i64::MIN, -1, 0, utc(2024, 7, 1, 0, 0, 0), i64::MAX] {
                assert_eq!(zone.offset_at(t), offset, "{spec} at {t}");
            }
        }
    }

    #[test]
    fn posix_julian_dates() {
        // Jn never counts February 29: J60 is March 1 in every year.
        let j = TimeZone::from_posix("AAA0BBB,J60/0,J300/0").unwrap();
        assert_edge(&j, utc(2024, 3, 1, 0, 0, 0), 0, 3600);
        assert_edge(&j, utc(2023, 3, 1, 0, 0, 0), 0, 3600);
        // n counts it: day 59 is February 29 in leap years, else March 1.
        let n = TimeZone::from_posix("AAA0BBB,59/0,300/0").unwrap();
        assert_edge(&n, utc(2024, 2, 29, 0, 0, 0), 0, 3600);
        assert_edge(&n, utc(2023, 3, 1, 0, 0, 0), 0, 3600);
        // Day 300 is October 27 (2024) / 28 (2023); the end is in DST time.
        assert_edge(&n, utc(2024, 10, 26, 23, 0, 0), 3600, 0);
        assert_edge(&n, utc(2023, 10, 27, 23, 0, 0), 3600, 0);
    }

    #[test]
    fn posix_rule_times_outside_one_day() {
        // Israel: the Friday before the last Sunday, written as Thursday 26:00.
        let israel = TimeZone::from_posix("IST-2IDT,M3.4.4/26,M10.5.0").unwrap();
        assert_edge(&israel, utc(2024, 3, 29, 0, 0, 0), 7200, 10800);
        assert_edge(&israel, utc(2024, 10, 26, 23, 0, 0), 10800, 7200);
        // Greenland: negative times, i.e. the evening before.
        let nuuk = TimeZone::from_posix("<-03>3<-02>,M3.5.0/-2,M10.5.0/-1").unwrap();
        assert_edge(&nuuk, utc(2024, 3, 31, 1, 0, 0), -10800, -7200);
        assert_edge(&nuuk, utc(2024, 10, 27, 1, 0, 0), -7200, -10800);
        // The RFC 8536 limit of 167 hours.
        let week = TimeZone::from_posix("AAA0BBB,M3.1.0/167,M10.1.0/-167").unwrap();
        assert_edge(&week, utc(2024, 3, 3, 0, 0, 0) + 167 * 3600, 0, 3600);
        assert_edge(&week, utc(2024, 10, 6, 0, 0, 0) - 167 * 3600 - 3600, 3600, 0);
    }

    #[test]
    fn posix_defaults() {
        // No rule: the US rule, as glibc uses without a posixrules file.
        let us = TimeZone::from_posix("EST5EDT").unwrap();
        assert_eq!(us, TimeZone::from_posix("EST5EDT,M3.2.0/2,M11.1.0/2").unwrap());
        assert_eq!(us, TimeZone::from_posix("EST5EDT4,").unwrap());
        // DST defaults to one hour ahead; an explicit offset overrides it.
        let berlin = TimeZone::from_posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        assert_eq!(berlin.offset_at(utc(2024, 7, 1, 0, 0, 0)), 7200);
        let double = TimeZone::from_posix("AAA+0BBB-2,M3.5.0,M10.5.0").unwrap();
        assert_eq!(double.offset_at(utc(2024, 7, 1, 0, 0, 0)), 7200);
        assert_eq!(double.offset_at(utc(2024, 1, 1, 0, 0, 0)), 0);
    }

    #[test]
    fn posix_always_and_never_dst() {
        // Daylight time from January 1 00:00 to December 31 25:00 is all year.
        let always = TimeZone::from_posix("EST5EDT,0/0,J365/25").unwrap();
        for year in [1900, 2023, 2024, 2040, 2100] {
            for (month, day) in [(1, 1), (7, 1), (12, 31)] {
                for hour in 0..24 {
                    let t = utc(year, month, day, hour, 0, 0);
                    assert_eq!(always.offset_at(t), -14400, "{year}-{month}-{day} {hour}h");
                }
            }
        }
        // A start and end at the same instant: never daylight time.
        let never = TimeZone::from_posix("EST5EDT,J100/2,J100/3").unwrap();
        let t = utc(2024, 4, 9, 7, 0, 0);
        for t in [t - 1, t, t + 1, utc(2024, 4, 9, 12, 0, 0)] {
            assert_eq!(never.offset_at(t), -18000);
        }
    }

    #[test]
    fn posix_any_year_and_any_instant() {
        let us = TimeZone::from_posix("EST5EDT,M3.2.0,M11.1.0").unwrap();
        let sydney = TimeZone::from_posix("AEST-10AEDT,M10.1.0,M4.1.0/3").unwrap();
        for year in [-9999, -1, 0, 1, 1600, 1800, 1900, 1969, 2038, 2100, 2400, 9999] {
            assert_eq!(us.offset_at(utc(year, 7, 1, 0, 0, 0)), -14400, "{year}");
            assert_eq!(us.offset_at(utc(year, 1, 15, 0, 0, 0)), -18000, "{year}");
            assert_eq!(sydney.offset_at(utc(year, 7, 1, 0, 0, 0)), 36000, "{year}");
            assert_eq!(sydney.offset_at(utc(year, 1, 15, 0, 0, 0)), 39600, "{year}");
        }
        // 2100 is not a leap year; second Sunday of March 2100 is the 14th.
        assert_edge(&us, utc(2100, 3, 14, 7, 0, 0), -18000, -14400);
        for t in [i64::MIN, i64::MIN + 1, -1, i64::MAX - 1, i64::MAX] {
            assert!([-18000, -14400].contains(&us.offset_at(t)));
            assert!([36000, 39600].contains(&sydney.offset_at(t)));
        }
    }

    #[test]
    fn posix_rejects_malformed_strings() {
        for (spec, reason) in [
            ("", "zone name"),
            ("ES5", "at least 3 letters"),
            ("EST", "UTC offset"),
            ("EST+", "UTC offset"),
            ("EST25", "UTC offset"),
            ("EST5:60", "UTC offset"),
            ("EST5:00:60", "UTC offset"),
            ("<AB>5", "<quoted>"),
            ("<EST5", "not closed"),
            ("<E T>5", "<quoted>"),
            ("EST5ED", "at least 3 letters"),
            ("EST5EDT,M3.2.0", "end date"),
            ("EST5EDT;M3.2.0,M11.1.0", "start date"),
            ("EST5EDT,M13.2.0,M11.1.0", "Mm.w.d"),
            ("EST5EDT,M0.2.0,M11.1.0", "Mm.w.d"),
            ("EST5EDT,M3.0.0,M11.1.0", "Mm.w.d"),
            ("EST5EDT,M3.6.0,M11.1.0", "Mm.w.d"),
            ("EST5EDT,M3.2.7,M11.1.0", "Mm.w.d"),
            ("EST5EDT,M3.2,M11.1.0", "Mm.w.d"),
            ("EST5EDT,J0,J365", "Jn"),
            ("EST5EDT,J366,J365", "Jn"),
            ("EST5EDT,366,J365", "n date"),
            ("EST5EDT,X,J365", "expected a date"),
            ("EST5EDT,M3.2.0/168,M11.1.0", "rule time"),
            ("EST5EDT,M3.2.0/,M11.1.0", "rule time"),
            ("EST5EDT,M3.2.0,M11.1.0x", "after the rule"),
            ("EST5EDT,M3.2.0,M11.1.0,", "after the rule"),
            ("EST5 ", "zone name"),
            ("EST99999999999999999999", "UTC offset"),
        ] {
            let error = TimeZone::from_posix(spec).unwrap_err();
            let message = error.to_string();
            assert!(matches!(&error, TzError::InvalidPosix { spec: s, .. } if s == spec), "{error:?}");
            assert!(message.contains(reason), "{spec:?}: {message:?} lacks {reason:?}");
        }
    }

    // ---------------------------------------------------- TZ resolution --

    #[test]
    fn tz_env_values() {
        assert_eq!(TimeZone::from_tz_env(Some("")).unwrap(), TimeZone::utc());
        assert_eq!(TimeZone::from_tz_env(Some(":")).unwrap(), TimeZone::utc());
        let tehran = TimeZone::from_tz_env(Some("<+0330>-3:30")).unwrap();
        assert_eq!(tehran.offset_at(0), 12600);
        let us = TimeZone::from_tz_env(Some("EST5EDT,M3.2.0,M11.1.0")).unwrap();
        assert_eq!(us, TimeZone::from_posix("EST5EDT,M3.2.0,M11.1.0").unwrap());

        for name in ["../etc/passwd", ":Europe/../../etc/shadow", "/usr/share/zoneinfo/.."] {
            let error = TimeZone::from_tz_env(Some(name)).unwrap_err();
            assert!(matches!(error, TzError::UnsafeName { .. }), "{error:?}");
            assert!(error.to_string().contains(".."));
        }

        let error = TimeZone::from_tz_env(Some(":Nowhere/Atlantis")).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(&error, TzError::Unrecognized { file, .. }
                if matches!(**file, TzError::Io { .. })),
            "{error:?}"
        );
        assert!(message.contains("Nowhere/Atlantis"), "{message}");
        assert!(message.contains("POSIX"), "{message}");

        for not_a_file in ["/dev/null", "/"] {
            let error = TimeZone::from_tz_env(Some(not_a_file)).unwrap_err();
            assert!(error.to_string().contains("not a regular file"), "{error}");
        }
    }

    #[test]
    fn tz_env_reads_zone_files() {
        let dir = Path::new(DEFAULT_ZONEINFO);
        if std::env::var_os("TZDIR").is_some() || !dir.join("Europe/Berlin").is_file() {
            eprintln!("SKIPPED: {DEFAULT_ZONEINFO}/Europe/Berlin not found (or TZDIR set)");
            return;
        }
        let by_name = TimeZone::from_tz_env(Some("Europe/Berlin")).unwrap();
        assert_eq!(by_name, TimeZone::from_tz_env(Some(":Europe/Berlin")).unwrap());
        let absolute = dir.join("Europe/Berlin");
        let absolute = absolute.to_str().unwrap();
        assert_eq!(by_name, TimeZone::from_tz_env(Some(absolute)).unwrap());
        assert_eq!(by_name.offset_at(utc(2024, 7, 1, 0, 0, 0)), 7200);
        // Like glibc, a file wins over a POSIX reading of the same name.
        if dir.join("EST5EDT").is_file() {
            let file = TimeZone::from_tz_env(Some("EST5EDT")).unwrap();
            assert_ne!(file, TimeZone::from_posix("EST5EDT").unwrap());
        }
        // TZ unset: /etc/localtime, or UTC without it.
        let unset = TimeZone::from_tz_env(None).unwrap();
        match load_file(Path::new(LOCALTIME)) {
            Ok(zone) => assert_eq!(unset, zone),
            Err(_) => assert_eq!(unset, TimeZone::utc()),
        }
    }

    #[test]
    fn io_errors_name_the_file() {
        let error = load_file(Path::new("/nonexistent/zone")).unwrap_err();
        assert!(matches!(error, TzError::Io { .. }));
        assert!(error.to_string().contains("/nonexistent/zone"), "{error}");
        let error = load_file(Path::new("/dev/null")).unwrap_err();
        assert!(error.to_string().contains("in /dev/null"), "{error}");
    }

    #[test]
    fn calendar_math_matches_the_time_crate() {
        let mut day = time::Date::from_calendar_date(1600, time::Month::January, 1).unwrap();
        let end = time::Date::from_calendar_date(2500, time::Month::January, 1).unwrap();
        while day < end {
            let (y, m, d) = (day.year(), u8::from(day.month()), day.day());
            let days = utc(y, m, d, 0, 0, 0) / SECS_PER_DAY;
            let y = i64::from(y);
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days);
            assert_eq!(year_of_day(days), y);
            assert_eq!(days_in_month(y, i64::from(m)), i64::from(time::util::days_in_month(day.month(), day.year())));
            day = day.next_day().unwrap();
        }
    }

    // ------------------------------------------- comparison with glibc --

    /// The interpreter `python3` resolves to. Version managers such as pyenv
    /// put a slow shell script in front of it; asking once keeps the
    /// per-zone runs fast. `None` (after a visible notice) if there is none.
    fn python() -> Option<&'static Path> {
        static PYTHON: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
        PYTHON
            .get_or_init(|| {
                let output =
                    Command::new("python3").args(["-I", "-S", "-c", "import sys; print(sys.executable)"]).output();
                match output {
                    Ok(output) if output.status.success() => {
                        let path = String::from_utf8(output.stdout).ok()?;
                        Some(PathBuf::from(path.trim()))
                    }
                    _ => {
                        eprintln!("SKIPPED: python3 not found");
                        None
                    }
                }
            })
            .as_deref()
    }

    /// `time.localtime(t).tm_gmtoff` for each instant, from one Python run
    /// with `TZ` set in the child's environment only.
    fn python_offsets(tz: &str, instants: &[i64]) -> Option<Vec<i32>> {
        const SCRIPT: &str = "import sys, time\n\
            ts = sys.stdin.read().split()\n\
            print('\\n'.join(str(time.localtime(int(t)).tm_gmtoff) for t in ts))\n";
        let mut child = Command::new(python()?)
            .args(["-I", "-S", "-c", SCRIPT])
            .env("TZ", tz)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let input: Vec<String> = instants.iter().map(i64::to_string).collect();
        // The script reads all input before writing, so this cannot deadlock.
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.join("\n").as_bytes()).unwrap();
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "python3 failed for TZ={tz}");
        let offsets: Vec<i32> =
            String::from_utf8(output.stdout).unwrap().split_whitespace().map(|n| n.parse().unwrap()).collect();
        assert_eq!(offsets.len(), instants.len());
        Some(offsets)
    }

    /// Instants worth checking for `zone` between `from` and `to` (years): a
    /// weekly grid drifting an hour a week, and one second either side of
    /// every transition in the file or produced by its rule.
    fn instants(zone: &TimeZone, from: i32, to: i32) -> Vec<i64> {
        let (start, end) = (utc(from, 1, 1, 0, 0, 0), utc(to, 1, 1, 0, 0, 0));
        let mut out: Vec<i64> = (start..end).step_by(7 * 86400 + 3600).collect();
        let mut edges: Vec<i64> = zone.transitions.iter().map(|tr| tr.at).collect();
        if let Some(PosixRule { std_offset, dst: Some(dst) }) = &zone.rule {
            for year in i64::from(from)..i64::from(to) {
                let (s, e) = dst.transitions(year, *std_offset);
                edges.extend([s, e]);
            }
        }
        for t in edges.into_iter().filter(|t| (start..end).contains(t)) {
            out.extend([t - 1, t, t + 1]);
        }
        out
    }

    #[track_caller]
    fn assert_matches_python(tz: &str, zone: &TimeZone, instants: &[i64]) -> bool {
        let Some(expected) = python_offsets(tz, instants) else {
            return false;
        };
        let mismatches: Vec<String> = instants
            .iter()
            .zip(&expected)
            .filter(|&(&t, &want)| zone.offset_at(t) != want)
            .take(10)
            .map(|(&t, &want)| format!("t={t}: ours {} python {want}", zone.offset_at(t)))
            .collect();
        assert!(mismatches.is_empty(), "TZ={tz}: {mismatches:#?}");
        true
    }

    #[test]
    fn system_zones_match_glibc() {
        if std::env::var_os("TZDIR").is_some() || !Path::new(DEFAULT_ZONEINFO).is_dir() {
            eprintln!("SKIPPED: {DEFAULT_ZONEINFO} not found (or TZDIR set)");
            return;
        }
        for name in [
            "America/New_York",
            "Europe/London",
            "Europe/Berlin",
            "Australia/Sydney",
            "Australia/Lord_Howe",
            "Asia/Kolkata",
            "Pacific/Chatham",
            "America/Sao_Paulo",
            "Africa/Casablanca",
            "Etc/UTC",
        ] {
            let zone = TimeZone::from_tz_env(Some(name)).unwrap();
            let mut instants = instants(&zone, 1850, 2110);
            // Before any transition, and 32-bit / 64-bit boundaries.
            instants.extend([utc(1800, 1, 1, 0, 0, 0), -(1 << 31) - 1, -(1 << 31)]);
            instants.extend([(1 << 31) - 1, 1 << 31, utc(2040, 7, 1, 0, 0, 0)]);
            if !assert_matches_python(name, &zone, &instants) {
                return;
            }
        }
    }

    #[test]
    fn posix_strings_match_glibc() {
        // Only from 1970: glibc evaluates earlier years as if they were 1970.
        for spec in [
            "EST5EDT,M3.2.0,M11.1.0",
            "CET-1CEST,M3.5.0,M10.5.0/3",
            "AEST-10AEDT,M10.1.0,M4.1.0/3",
            "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
            "<+0330>-3:30",
            "IST-2IDT,M3.4.4/26,M10.5.0",
            "<-03>3<-02>,M3.5.0/-2,M10.5.0/-1",
            "AAA0BBB,J60/1:30,300/23:59:59",
            "NZST-12NZDT,M9.5.0,M4.1.0/3",
        ] {
            let zone = TimeZone::from_tz_env(Some(spec)).unwrap();
            let instants = instants(&zone, 1970, 2110);
            if !assert_matches_python(spec, &zone, &instants) {
                return;
            }
        }
    }

    // ----------------------------------------------------------- fuzzing --

    /// xorshift64: a tiny deterministic PRNG.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
        }
    }

    const PROBES: [i64; 9] = [i64::MIN, -(1 << 40), -1, 0, 1_700_000_000, 1 << 31, 4_102_444_800, 1 << 40, i64::MAX];

    #[track_caller]
    fn assert_sane(zone: &TimeZone) {
        for t in PROBES {
            assert!(zone.offset_at(t).unsigned_abs() <= 26 * 3600, "{zone:?} at {t}");
        }
    }

    #[test]
    fn tzif_survives_truncation_and_mutation() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut ok = 0;
        for version in [0, b'2'] {
            let mut blob = Blob::new_york(version);
            blob.times[0] = utc(1950, 1, 1, 5, 0, 0);
            let bytes = blob.build();
            assert_sane(&TimeZone::from_tzif(&bytes).unwrap());
            for len in 0..bytes.len() {
                assert!(TimeZone::from_tzif(&bytes[..len]).is_err(), "prefix {len}");
            }
            for _ in 0..2000 {
                let mut mutated = bytes.clone();
                for _ in 0..=rng.below(4) {
                    let at = rng.below(mutated.len());
                    mutated[at] = rng.next().to_le_bytes()[0];
                }
                if let Ok(zone) = TimeZone::from_tzif(&mutated) {
                    assert_sane(&zone);
                    ok += 1;
                }
            }
        }
        // Most single-byte changes hit offsets, times or names and still parse.
        assert!(ok > 100, "only {ok} mutations parsed");
    }

    #[test]
    fn posix_survives_random_strings() {
        const ALPHABET: &[u8] = b"ESTDJM<>+-:,./0123456789AB";
        let seeds = [
            "EST5EDT,M3.2.0,M11.1.0",
            "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
            "AAA0BBB,J60/1:30,300/-23:59:59",
            "XXX-24:59:59YYY-24:59:59,M1.1.0/-167,M12.5.6/167",
        ];
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let mut ok = 0;
        for round in 0..6000 {
            let mut spec: Vec<u8> = if round % 2 == 0 {
                (0..rng.below(24)).map(|_| ALPHABET[rng.below(ALPHABET.len())]).collect()
            } else {
                seeds[rng.below(seeds.len())].as_bytes().to_vec()
            };
            for _ in 0..rng.below(3) {
                let byte = ALPHABET[rng.below(ALPHABET.len())];
                match (rng.below(3), spec.is_empty()) {
                    (_, true) | (0, _) => spec.insert(rng.below(spec.len() + 1), byte),
                    (1, _) => {
                        let at = rng.below(spec.len());
                        spec[at] = byte;
                    }
                    _ => {
                        spec.remove(rng.below(spec.len()));
                    }
                }
            }
            let spec = String::from_utf8(spec).unwrap();
            if let Ok(zone) = TimeZone::from_posix(&spec) {
                assert_sane(&zone);
                ok += 1;
            }
        }
        assert!(ok > 500, "only {ok} strings parsed");
    }
}
