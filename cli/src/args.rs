//! What the subcommands share: where to listen or connect and how to talk,
//! durations (`500ms`, `30s`, or plain seconds), and the help texts'
//! ranges, taken from the library's own bounds.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::ArgMatches;
use clap::parser::ValueSource;
use stamp_echo::Framing;
use stamp_echo::stamp::StampKind;

/// Where the server listens (or the client connects), and how they talk.
#[derive(clap::Args, Debug, Clone)]
pub struct Endpoint {
    /// Host name or IP address.
    #[arg(short = 'H', long, default_value = "127.0.0.1", conflicts_with = "unix")]
    pub host: String,

    /// TCP (or UDP) port; 0 lets the server pick a free one.
    #[arg(short, long, default_value_t = 8080, conflicts_with = "unix")]
    pub port: u16,

    /// A Unix domain socket path, instead of TCP.
    #[arg(short = 'U', long, value_name = "PATH")]
    pub unix: Option<PathBuf>,

    /// What a message is: chunk (each read, the original's), line, or length (4-byte prefix).
    #[arg(short, long, default_value = "chunk", value_name = "chunk|line|length")]
    pub framing: Framing,

    /// Stamp text: ctime (local, like Python's time.ctime()), ctime-utc, rfc3339 or unix.
    #[arg(short = 'S', long, default_value = "ctime", value_name = "ctime|ctime-utc|rfc3339|unix")]
    pub stamp: StampKind,

    #[arg(long, value_name = "BYTES", default_value_t = Framing::DEFAULT_BUFFER_SIZE,
          help = limit_help("Chunk framing: the most bytes read as one message", Framing::chunk()),
          value_parser = |t: &str| limit(t, Framing::chunk()))]
    pub buffer_size: usize,

    #[arg(long, value_name = "BYTES", default_value_t = Framing::DEFAULT_MAX_LINE,
          help = limit_help("Line framing: the longest line, without its line ending", Framing::line()),
          value_parser = |t: &str| limit(t, Framing::line()))]
    pub max_line: usize,

    #[arg(long, value_name = "BYTES", default_value_t = Framing::DEFAULT_MAX_FRAME,
          help = limit_help("Length framing: the longest frame payload", Framing::length_prefixed()),
          value_parser = |t: &str| limit(t, Framing::length_prefixed()))]
    pub max_frame: usize,
}

/// The flags that set one framing's limit, and the framing each is for.
const LIMIT_FLAGS: [(&str, &str); 3] = [("buffer_size", "chunk"), ("max_line", "line"), ("max_frame", "length")];

/// The smallest and largest limits `framing` takes: found from the
/// library's own validation, so the help never disagrees with it.
fn limit_range(framing: Framing) -> (usize, usize) {
    let ok = |n: usize| framing.with_limit(n).validate().is_ok();
    let low = (0..=64).find(|&n| ok(n)).unwrap_or(1);
    // The largest accepted: a binary search between low and usize::MAX.
    let (mut good, mut bad) = (low, usize::MAX);
    if ok(bad) {
        return (low, bad);
    }
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if ok(mid) { good = mid } else { bad = mid }
    }
    (low, good)
}

fn limit_help(what: &str, framing: Framing) -> String {
    match limit_range(framing) {
        (low, usize::MAX) => format!("{what} (at least {low})"),
        (low, high) => format!("{what} ({low} to {high})"),
    }
}

/// A framing limit flag, checked against the library's bounds for its
/// framing whichever framing is chosen, so no flag takes an absurd value.
fn limit(text: &str, framing: Framing) -> Result<usize, String> {
    let value: usize = text.parse().map_err(|e| format!("{e}"))?;
    framing.with_limit(value).validate().map_err(|e| e.to_string())?;
    Ok(value)
}

impl Endpoint {
    /// The framing chosen, with its limit from the matching flag.
    pub fn framing(&self) -> Framing {
        let limit = match self.framing {
            Framing::Chunk { .. } => self.buffer_size,
            Framing::Line { .. } => self.max_line,
            _ => self.max_frame,
        };
        self.framing.with_limit(limit)
    }

    /// `host:port`, for TCP and UDP.
    pub fn tcp_addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The TCP (or UDP) addresses `--host` and `--port` name; an error
    /// names the host: `cannot look up nowhere.invalid:8080: ...`.
    pub fn lookup(&self) -> io::Result<Vec<SocketAddr>> {
        let addr = self.tcp_addr();
        let named = |e: io::Error| io::Error::new(e.kind(), format!("cannot look up {addr}: {e}"));
        let found: Vec<SocketAddr> = addr.as_str().to_socket_addrs().map_err(named)?.collect();
        if found.is_empty() {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("cannot look up {addr}: no address found")));
        }
        Ok(found)
    }

    /// Connects over TCP to the first address of the host that answers; an
    /// error names the host, or the address that refused:
    /// `cannot connect to 127.0.0.1:8080: Connection refused (os error 111)`.
    pub fn connect_tcp(&self) -> io::Result<TcpStream> {
        let mut failed = None;
        for addr in self.lookup()? {
            match TcpStream::connect(addr) {
                Ok(stream) => return Ok(stream),
                Err(e) => failed = Some(io::Error::new(e.kind(), format!("cannot connect to {addr}: {e}"))),
            }
        }
        Err(failed.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address to connect to")))
    }

    /// Connects to the `--unix` socket `path`; an error names the path.
    #[cfg(unix)]
    pub fn connect_unix(path: &std::path::Path) -> io::Result<std::os::unix::net::UnixStream> {
        std::os::unix::net::UnixStream::connect(path).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot connect to {}: {e}", stamp_echo::escape::escape_path(path)))
        })
    }

    /// The server and the transport, for messages: `127.0.0.1:8080 (tcp)`.
    pub fn target(&self, udp: bool) -> String {
        match (&self.unix, udp) {
            (_, true) => format!("{} (udp)", self.tcp_addr()),
            (Some(path), false) => format!("{} (unix)", stamp_echo::escape::escape_path(path)),
            (None, false) => format!("{} (tcp)", self.tcp_addr()),
        }
    }
}

/// Refuses what clap's own rules cannot see: a framing limit flag for
/// another framing than the one chosen (`--max-line` with chunk framing).
///
/// # Errors
///
/// The clap error to exit with.
pub fn refuse_meaningless(matches: &ArgMatches) -> Result<(), clap::Error> {
    let Some((name, sub)) = matches.subcommand() else { return Ok(()) };
    if sub.try_get_one::<Framing>("framing").ok().flatten().is_none() {
        return Ok(());
    }
    let framing = sub.get_one::<Framing>("framing").copied().unwrap_or_else(Framing::chunk);
    let udp = sub.try_get_one::<bool>("udp").ok().flatten().copied().unwrap_or(false);
    for (id, for_framing) in LIMIT_FLAGS {
        let given = sub.value_source(id) == Some(ValueSource::CommandLine);
        let chosen_name = framing.to_string();
        let chosen_name = chosen_name.split(' ').next().unwrap_or_default();
        let chosen = chosen_name == for_framing;
        if given && (udp || !chosen) {
            let flag = format!("--{}", id.replace('_', "-"));
            let why = if udp {
                format!("{flag} sets a framing's limit; --udp has no framing (a datagram is a message)")
            } else {
                format!("{flag} is the limit of {for_framing} framing, not of {chosen_name} framing (--framing)")
            };
            let mut command = <crate::Cli as clap::CommandFactory>::command();
            command.build();
            let error = match command.find_subcommand_mut(name) {
                Some(sub) => sub.error(clap::error::ErrorKind::ArgumentConflict, why),
                None => command.error(clap::error::ErrorKind::ArgumentConflict, why),
            };
            return Err(error);
        }
    }
    Ok(())
}

/// A duration flag's value: `500ms`, `30s`, `5m`, `1h 30m`, or plain
/// seconds (`0.5`), as the flags took before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() { f.write_str("0") } else { humantime::format_duration(self.0).fmt(f) }
    }
}

impl FromStr for Dur {
    type Err = String;
    fn from_str(text: &str) -> Result<Dur, String> {
        if let Ok(secs) = text.parse::<f64>() {
            return Duration::try_from_secs_f64(secs).map(Dur).map_err(|_| format!("{text}: not a duration"));
        }
        humantime::parse_duration(text)
            .map(Dur)
            .map_err(|e| format!("{text}: {e} (e.g. 500ms, 30s, 5m or plain seconds)"))
    }
}

/// A duration parser for a flag: `min` to `max`, and 0 (none) too if `zero`.
pub fn duration(min: Duration, max: Duration, zero: bool) -> impl Fn(&str) -> Result<Dur, String> + Clone {
    move |text| {
        let d: Dur = text.parse()?;
        if (zero && d.0.is_zero()) || (min..=max).contains(&d.0) {
            Ok(d)
        } else {
            Err(format!("expected {}", range(min, max, zero)))
        }
    }
}

/// `0 (none) or 1ms to 30days`.
pub fn range(min: Duration, max: Duration, zero: bool) -> String {
    let none = if zero && !min.is_zero() { "0 (none) or " } else { "" };
    format!("{none}{} to {}", Dur(min), Dur(max))
}

/// A duration flag's help: `what` and its range.
pub fn duration_help(what: &str, min: Duration, max: Duration, zero: bool) -> String {
    format!("{what} ({}; 500ms, 30s, 5m or plain seconds)", range(min, max, zero))
}

/// An integer flag's help: `what` and its range.
pub fn int_help(what: &str, low: impl fmt::Display, high: impl fmt::Display) -> String {
    format!("{what} ({low} to {high})")
}

/// A flag's value when 0 means none.
pub fn none_if_zero(d: Dur) -> Option<Duration> {
    Some(d.0).filter(|t| !t.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_words_or_plain_seconds() {
        assert_eq!("500ms".parse(), Ok(Dur(Duration::from_millis(500))));
        assert_eq!("30s".parse(), Ok(Dur(Duration::from_secs(30))));
        assert_eq!("0.25".parse(), Ok(Dur(Duration::from_millis(250))));
        assert!("-1".parse::<Dur>().is_err());
        assert!("soon".parse::<Dur>().is_err());
        assert_eq!(Dur(Duration::from_millis(500)).to_string(), "500ms");
        let parse = duration(Duration::from_millis(1), Duration::from_secs(10), true);
        assert_eq!(parse("0"), Ok(Dur(Duration::ZERO)));
        assert_eq!(parse("11s"), Err("expected 0 (none) or 1ms to 10s".to_owned()));
    }

    #[test]
    fn limit_ranges_are_the_librarys() {
        for framing in [Framing::chunk(), Framing::line(), Framing::length_prefixed()] {
            let (low, high) = limit_range(framing);
            assert!(framing.with_limit(low).validate().is_ok() && framing.with_limit(high).validate().is_ok());
            assert!(low == 0 || framing.with_limit(low - 1).validate().is_err());
            assert!(high == usize::MAX || framing.with_limit(high + 1).validate().is_err());
        }
    }
}
