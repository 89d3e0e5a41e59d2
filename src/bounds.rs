//! The range and default of every setting, each declared once as a
//! [`Bound`] beside the type it configures (`Limits::IDLE_TIMEOUT`,
//! `Framing::MAX_LINE`, `RateLimit::BURST`, ...), and the one check that
//! refuses a value outside it ([`Bound::check`]) with a [`ConfigError`]
//! naming the setting, the value and the range. The range text the error
//! states is the [`Bound`]'s `Display`, which command lines reuse in their
//! help.

use std::fmt;
use std::time::Duration;

use crate::error::ConfigError;

/// A setting's name, its range (`min` to `max`, both accepted), its default,
/// and whether `None` (no limit) is accepted too: declared once, beside the
/// setting, and checked by [`check`](Bound::check) wherever the setting is
/// used.
///
/// Its `Display` is the range as error messages and `--help` texts state it:
/// `1 to 1048576 bytes`, `1ms to 30days`, `1 or more bytes` (no upper
/// bound). Durations are written as `humantime` and the command line read
/// them (`500ms`, `30s`, `30days`).
///
/// ```
/// use std::time::Duration;
/// use stamp_echo::{Bound, Framing, Limits};
///
/// assert_eq!(Framing::BUFFER_SIZE.to_string(), "1 to 1048576 bytes");
/// assert_eq!(Framing::BUFFER_SIZE.default(), Some(1024));
/// assert_eq!(Limits::IDLE_TIMEOUT.to_string(), "1ms to 30days");
/// assert!(Limits::IDLE_TIMEOUT.or_none_accepted());
///
/// // A bound of your own, checked the same way.
/// const WORKERS: Bound<u32> = Bound::new("workers", 1, 64).with_default(4);
/// assert_eq!(WORKERS.check(64)?, 64);
/// let err = WORKERS.check(65).unwrap_err();
/// assert_eq!(err.to_string(), "invalid workers 65: expected 1 to 64");
/// # Ok::<(), stamp_echo::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound<T> {
    name: &'static str,
    min: T,
    max: T,
    default: Option<T>,
    unit: &'static str,
    or_none: bool,
}

/// The types a [`Bound`] can range over: the integers and [`Duration`].
/// Sealed: implemented here only.
pub trait BoundValue: Copy + PartialOrd + fmt::Debug + Send + Sync + 'static + sealed::Sealed {}

mod sealed {
    use std::fmt;

    /// How a value is written in a range text, and the value that means
    /// "no upper bound".
    pub trait Sealed: Sized {
        /// The largest value: a `max` of it is written `N or more`.
        const UNBOUNDED: Self;
        /// The value as a range text writes it.
        fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    }
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {
            const UNBOUNDED: $t = <$t>::MAX;
            fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
        impl BoundValue for $t {}
    )*};
}
integers!(u8, u16, u32, u64, usize, i32, i64);

impl sealed::Sealed for Duration {
    const UNBOUNDED: Duration = Duration::MAX;
    /// In the largest unit that writes it whole: `30days`, `5s`, `500ms`,
    /// `1ns`; `0s` for zero.
    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u128, &str); 7] = [
            (86_400_000_000_000, "days"),
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
            (1, "ns"),
        ];
        let nanos = self.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        for (size, unit) in UNITS {
            if nanos.is_multiple_of(size) {
                let n = nanos / size;
                let unit = if n == 1 && unit == "days" { "day" } else { unit };
                return write!(f, "{n}{unit}");
            }
        }
        write!(f, "{nanos}ns")
    }
}
impl BoundValue for Duration {}

impl<T: BoundValue> Bound<T> {
    /// The setting `name` (as the API spells it), from `min` to `max` (both
    /// accepted); no default until [`with_default`](Bound::with_default). A
    /// `max` of the type's largest value means no upper bound.
    pub const fn new(name: &'static str, min: T, max: T) -> Bound<T> {
        Bound { name, min, max, default: None, unit: "", or_none: false }
    }

    /// The same bound with a default.
    #[must_use]
    pub const fn with_default(mut self, default: T) -> Bound<T> {
        self.default = Some(default);
        self
    }

    /// The same bound, its values counted in `unit` (`"bytes"`), which the
    /// range text names after the numbers.
    #[must_use]
    pub const fn with_unit(mut self, unit: &'static str) -> Bound<T> {
        self.unit = unit;
        self
    }

    /// The same bound for a setting that also takes `None`, no limit (an
    /// `Option<T>` setting: see [`check_option`](Bound::check_option)).
    #[must_use]
    pub const fn or_none(mut self) -> Bound<T> {
        self.or_none = true;
        self
    }

    /// The setting's name, as in the API (`max_connections`).
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The smallest value accepted.
    pub const fn min(&self) -> T {
        self.min
    }

    /// The largest value accepted.
    pub const fn max(&self) -> T {
        self.max
    }

    /// The default, if the setting has one (`None`: an optional setting
    /// whose default is no limit, such as `Limits::max_per_source`).
    pub const fn default(&self) -> Option<T> {
        self.default
    }

    /// The unit named after the numbers of the range text (`""` if none).
    pub const fn unit(&self) -> &'static str {
        self.unit
    }

    /// Whether the setting also takes `None`, no limit.
    pub const fn or_none_accepted(&self) -> bool {
        self.or_none
    }

    /// Whether `value` is within the range.
    pub fn contains(&self, value: T) -> bool {
        self.min <= value && value <= self.max
    }

    /// `value`, if it is within the range.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting, the value and the range
    /// (`invalid buffer_size 0: expected 1 to 1048576 bytes`); it converts
    /// into [`Error::Config`](crate::Error::Config).
    pub fn check(&self, value: T) -> Result<T, ConfigError> {
        if self.contains(value) {
            return Ok(value);
        }
        let expected = if self.or_none { format!("{self} (None for no limit)") } else { self.to_string() };
        Err(ConfigError::new(self.name, Value(value), expected))
    }

    /// `value`, if it is `None` and the setting [takes it](Bound::or_none),
    /// or within the range.
    ///
    /// # Errors
    ///
    /// As [`check`](Bound::check), and for `None` when the setting does not
    /// take it.
    pub fn check_option(&self, value: Option<T>) -> Result<Option<T>, ConfigError> {
        match value {
            Some(value) => self.check(value).map(Some),
            None if self.or_none => Ok(None),
            None => Err(ConfigError::new(self.name, "None", self.to_string())),
        }
    }
}

/// A value as a range text writes it.
struct Value<T>(T);

impl<T: BoundValue> fmt::Display for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write(f)
    }
}

impl<T: BoundValue> fmt::Display for Bound<T> {
    /// The range: `1 to 1048576 bytes`, `1ms to 30days`, `1 or more bytes`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.min.write(f)?;
        if self.max == T::UNBOUNDED {
            f.write_str(" or more")?;
        } else {
            f.write_str(" to ")?;
            self.max.write(f)?;
        }
        if !self.unit.is_empty() {
            write!(f, " {}", self.unit)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_texts() {
        let bytes = Bound::new("buffer_size", 1usize, 1 << 20).with_unit("bytes");
        assert_eq!(bytes.to_string(), "1 to 1048576 bytes");
        assert_eq!(Bound::new("max_line", 1usize, usize::MAX).with_unit("bytes").to_string(), "1 or more bytes");
        let days = Bound::new("t", Duration::from_millis(1), Duration::from_secs(30 * 86_400));
        assert_eq!(days.to_string(), "1ms to 30days");
        let mixed = Bound::new("t", Duration::ZERO, Duration::from_millis(1500));
        assert_eq!(mixed.to_string(), "0s to 1500ms");
        assert_eq!(Bound::new("t", Duration::from_nanos(1), Duration::from_secs(86_400)).to_string(), "1ns to 1day");
        assert_eq!(Bound::new("t", Duration::from_secs(90), Duration::from_secs(7200)).to_string(), "90s to 2h");
    }

    #[test]
    fn the_ends_are_accepted_and_one_past_them_refused() {
        let bound = Bound::new("replies", 1u32, 1_000_000).with_default(100).with_unit("replies");
        assert_eq!(bound.check(1), Ok(1));
        assert_eq!(bound.check(1_000_000), Ok(1_000_000));
        let below = bound.check(0).expect_err("below");
        assert_eq!((below.setting(), below.value(), below.expected()), ("replies", "0", "1 to 1000000 replies"));
        assert_eq!(
            bound.check(1_000_001).expect_err("above").to_string(),
            "invalid replies 1000001: expected 1 to 1000000 replies"
        );
        assert!(bound.check_option(None).is_err(), "None only where the setting takes it");
        let optional = bound.or_none();
        assert_eq!(optional.check_option(None), Ok(None));
        let err = optional.check_option(Some(0)).expect_err("below");
        assert_eq!(err.expected(), "1 to 1000000 replies (None for no limit)");
    }

    #[test]
    fn durations_out_of_range_are_named_as_written() {
        let bound = Bound::new("idle_timeout", Duration::from_millis(1), Duration::from_secs(30 * 86_400)).or_none();
        let err = bound.check(Duration::from_micros(999)).expect_err("below");
        assert_eq!(err.to_string(), "invalid idle_timeout 999us: expected 1ms to 30days (None for no limit)");
    }
}
