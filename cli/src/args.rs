//! What the subcommands share: where to listen or connect and how to talk,
//! durations (`500ms`, `30s`, or plain seconds), and the flags' help texts,
//! defaults and parsers, made from a [`Bound`]: the library's own (so every
//! range and default in `--help` is the one the library checks), or the
//! command's for its own settings.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::ArgMatches;
use clap::parser::ValueSource;
use stamp_echo::stamp::StampKind;
use stamp_echo::{Bound, BoundValue, Framing};

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

    #[arg(long, value_name = "BYTES", default_value_t = default_of(Framing::BUFFER_SIZE),
          help = help("Chunk framing: the most bytes read as one message", &Framing::BUFFER_SIZE),
          value_parser = bounded(Framing::BUFFER_SIZE))]
    pub buffer_size: usize,

    #[arg(long, value_name = "BYTES", default_value_t = default_of(Framing::MAX_LINE),
          help = help("Line framing: the longest line, without its line ending", &Framing::MAX_LINE),
          value_parser = bounded(Framing::MAX_LINE))]
    pub max_line: usize,

    #[arg(long, value_name = "BYTES", default_value_t = default_of(Framing::MAX_FRAME),
          help = help("Length framing: the longest frame payload", &Framing::MAX_FRAME),
          value_parser = bounded(Framing::MAX_FRAME))]
    pub max_frame: usize,
}

/// The flags that set one framing's limit, and the framing each is for.
const LIMIT_FLAGS: [(&str, &str); 3] = [("buffer_size", "chunk"), ("max_line", "line"), ("max_frame", "length")];

/// A flag's help: what it does, then its range from `bound` (the library's
/// own, or one of the command's): `The most clients (1 to 1000000)`. Clap
/// adds the default.
pub fn help<T: BoundValue>(what: &str, bound: &Bound<T>) -> String {
    format!("{what} ({bound})")
}

/// A bound's default, for clap's `default_value_t` (its smallest value for a
/// bound without one).
pub fn default_of<T: BoundValue>(bound: Bound<T>) -> T {
    bound.default().unwrap_or(bound.min())
}

/// A flag's parser: the number, checked by `bound` (the library's own check),
/// the error stating the range: `expected 1 to 1000000`.
pub fn bounded<T>(bound: Bound<T>) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: BoundValue + FromStr,
    T::Err: fmt::Display,
{
    move |text| {
        let value: T = text.parse().map_err(|e| format!("{e}; expected {bound}"))?;
        bound.check(value).map_err(|_| format!("expected {bound}"))
    }
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

/// A duration flag's parser: `bound`'s range, checked by the library's
/// check, and 0 (none) too where the setting takes `None`.
pub fn duration(bound: Bound<Duration>) -> impl Fn(&str) -> Result<Dur, String> + Clone + Send + Sync + 'static {
    move |text| {
        let d: Dur = text.parse()?;
        if bound.or_none_accepted() && d.0.is_zero() {
            return Ok(d);
        }
        bound.check(d.0).map(Dur).map_err(|_| format!("expected {}", range(&bound)))
    }
}

/// `bound`'s range, with `0 (none) or ` before it where the setting takes
/// `None`: `0 (none) or 1ms to 30days`.
pub fn range(bound: &Bound<Duration>) -> String {
    let none = if bound.or_none_accepted() && !bound.min().is_zero() { "0 (none) or " } else { "" };
    format!("{none}{bound}")
}

/// A duration flag's help: `what` and its range.
pub fn duration_help(what: &str, bound: &Bound<Duration>) -> String {
    format!("{what} ({}; 500ms, 30s, 5m or plain seconds)", range(bound))
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
        let parse = duration(Bound::new("t", Duration::from_millis(1), Duration::from_secs(10)).or_none());
        assert_eq!(parse("0"), Ok(Dur(Duration::ZERO)));
        assert_eq!(parse("10s"), Ok(Dur(Duration::from_secs(10))));
        assert_eq!(parse("11s"), Err("expected 0 (none) or 1ms to 10s".to_owned()));
        let parse = duration(Bound::new("t", Duration::from_millis(1), Duration::from_secs(10)));
        assert_eq!(parse("0"), Err("expected 1ms to 10s".to_owned()));
    }

    #[test]
    fn numbers_are_checked_by_the_librarys_bounds() {
        let parse = bounded(Framing::BUFFER_SIZE);
        assert_eq!(parse("1"), Ok(1));
        assert_eq!(parse(&Framing::BUFFER_SIZE.max().to_string()), Ok(Framing::BUFFER_SIZE.max()));
        assert_eq!(parse("0"), Err("expected 1 to 1048576 bytes".to_owned()));
        assert_eq!(parse("1048577"), Err("expected 1 to 1048576 bytes".to_owned()));
        assert!(parse("many").is_err_and(|e| e.ends_with("expected 1 to 1048576 bytes")));
        assert_eq!(help("Buffer", &Framing::MAX_LINE), "Buffer (1 or more bytes)");
    }
}
