//! The library's bounds on the command line: every flag that sets a library
//! setting refuses one step outside the setting's `Bound` (naming the range
//! the library states) and takes both its ends, and every `--help` states
//! the range and the default from the bound itself.

mod common;

use std::process::Output;
use std::time::Duration;

use common::{output, stamp_echo};
use stamp_echo::datagram::RateLimit;
use stamp_echo::runner::ProxyProtocol;
use stamp_echo::{Bound, BoundValue, Framing, Limits};

/// A library bound as the command line writes its values.
trait Flag: BoundValue {
    /// The value as a flag takes it.
    fn arg(self) -> String;
    /// One step below and above, where there is one.
    fn below(self) -> Option<Self>;
    fn above(self) -> Option<Self>;
    /// The default as `--help` shows it.
    fn shown(self) -> String;
}

macro_rules! integer_flags {
    ($($t:ty),*) => {$(
        impl Flag for $t {
            fn arg(self) -> String {
                self.to_string()
            }
            fn below(self) -> Option<$t> {
                self.checked_sub(1)
            }
            fn above(self) -> Option<$t> {
                self.checked_add(1)
            }
            fn shown(self) -> String {
                self.to_string()
            }
        }
    )*};
}
integer_flags!(u32, usize);

impl Flag for Duration {
    fn arg(self) -> String {
        format!("{}ns", self.as_nanos())
    }
    fn below(self) -> Option<Duration> {
        self.checked_sub(Duration::from_nanos(1))
    }
    fn above(self) -> Option<Duration> {
        self.checked_add(Duration::from_nanos(1))
    }
    fn shown(self) -> String {
        humantime::format_duration(self).to_string()
    }
}

/// The range `--help` and the parser state for `bound`: `0 (none) or ...`
/// before a duration that takes `None` (0 on the command line).
fn range<T: Flag>(bound: &Bound<T>, zero_is_none: bool) -> String {
    if zero_is_none { format!("0 (none) or {bound}") } else { bound.to_string() }
}

/// `serve` with `flag` given `value`, after `before` (what makes the flag
/// meaningful), bound to an address no interface has, so that a value the
/// parser and the library take ends in `cannot bind` (exit 1), and one they
/// refuse in a usage error (exit 2) before anything is bound.
fn serve_with(before: &[&str], flag: &str, value: &str) -> Output {
    output(stamp_echo("serve").args(["--host", "192.0.2.1", "--port", "0"]).args(before).arg(format!("{flag}={value}")))
}

/// `flag` of `serve` takes `bound`'s ends (and 0 for none where
/// `zero_is_none`) and refuses one step outside.
fn check<T: Flag>(before: &[&str], flag: &str, bound: Bound<T>, zero_is_none: bool) {
    let none = zero_is_none.then(|| "0".to_owned());
    for end in [bound.min().arg(), bound.max().arg()].into_iter().chain(none) {
        let out = serve_with(before, flag, &end);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag}={end} is taken: {stderr}");
        assert!(stderr.contains("cannot bind 192.0.2.1"), "{flag}={end}: {stderr}");
    }
    for outside in [bound.min().below(), bound.max().above()].into_iter().flatten() {
        let out = serve_with(before, flag, &outside.arg());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}={} is refused: {stderr}", outside.arg());
        let named = format!("invalid value '{}' for '{flag}", outside.arg());
        let expected = format!("expected {}", range(&bound, zero_is_none));
        assert!(stderr.contains(&named) && stderr.contains(&expected), "{flag}={}: {stderr}", outside.arg());
    }
}

#[test]
fn every_library_setting_on_the_command_line_takes_its_bounds_ends_and_nothing_past_them() {
    check(&[], "--buffer-size", Framing::BUFFER_SIZE, false);
    check(&["--framing", "line"], "--max-line", Framing::MAX_LINE, false);
    check(&["--framing", "length"], "--max-frame", Framing::MAX_FRAME, false);
    check(&[], "--max-connections", Limits::MAX_CONNECTIONS, false);
    check(&[], "--max-per-source", Limits::MAX_PER_SOURCE, false);
    check(&[], "--eviction-grace", Limits::EVICTION_GRACE, true);
    check(&[], "--idle-timeout", Limits::IDLE_TIMEOUT, true);
    check(&[], "--message-timeout", Limits::MESSAGE_TIMEOUT, true);
    check(&[], "--write-timeout", Limits::WRITE_TIMEOUT, true);
    let proxy = ["--proxy-protocol", "--trusted-proxy", "10.0.0.0/8"];
    check(&proxy, "--proxy-header-timeout", ProxyProtocol::HEADER_TIMEOUT, false);
    check(&["--udp"], "--udp-rate", RateLimit::REPLIES, false);
    check(&["--udp"], "--udp-burst", RateLimit::BURST, false);
    check(&["--udp"], "--udp-total", RateLimit::TOTAL, false);
}

/// The block of `--help` that documents `flag`.
fn block<'a>(help: &'a str, flag: &str) -> &'a str {
    let start = help.find(&format!("{flag} <")).unwrap_or_else(|| panic!("{flag} in {help}"));
    let rest = &help[start..];
    &rest[..rest.find("\n\n").unwrap_or(rest.len())]
}

/// `flag`'s help states `bound`'s range, and its default if it has one.
fn states<T: Flag>(help: &str, flag: &str, bound: Bound<T>, zero_is_none: bool) {
    let text = block(help, flag);
    assert!(text.contains(&format!("({}", range(&bound, zero_is_none))), "{flag}: {text}");
    match bound.default() {
        Some(default) => assert!(text.contains(&format!("[default: {}]", default.shown())), "{flag}: {text}"),
        None => assert!(!text.contains("[default:"), "{flag}: {text}"),
    }
}

#[test]
fn every_help_states_the_librarys_ranges_and_defaults() {
    for sub in ["serve", "client", "ping", "load"] {
        let out = output(stamp_echo(sub).arg("--help"));
        assert!(out.status.success(), "{sub} --help");
        let help = String::from_utf8_lossy(&out.stdout);
        states(&help, "--buffer-size", Framing::BUFFER_SIZE, false);
        states(&help, "--max-line", Framing::MAX_LINE, false);
        states(&help, "--max-frame", Framing::MAX_FRAME, false);
        if sub != "serve" {
            // The client side's timeouts are the library's timeouts' range.
            let timeouts = Bound::new("timeout", Limits::MIN_TIMEOUT, Limits::MAX_TIMEOUT);
            assert!(block(&help, "--timeout").contains(&format!("({timeouts}")), "{sub}: {help}");
            continue;
        }
        states(&help, "--max-connections", Limits::MAX_CONNECTIONS, false);
        states(&help, "--max-per-source", Limits::MAX_PER_SOURCE, false);
        states(&help, "--eviction-grace", Limits::EVICTION_GRACE, true);
        states(&help, "--idle-timeout", Limits::IDLE_TIMEOUT, true);
        states(&help, "--message-timeout", Limits::MESSAGE_TIMEOUT, true);
        states(&help, "--write-timeout", Limits::WRITE_TIMEOUT, true);
        states(&help, "--proxy-header-timeout", ProxyProtocol::HEADER_TIMEOUT, false);
        states(&help, "--udp-rate", RateLimit::REPLIES, false);
        states(&help, "--udp-burst", RateLimit::BURST, false);
        states(&help, "--udp-total", RateLimit::TOTAL, false);
    }
}
