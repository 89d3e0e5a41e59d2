//! Where a connection comes from, as fairness counts it ([`Source`]), and why
//! a new connection may be turned away ([`Refusal`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Addr;

/// Where a connection comes from, as the runners' fairness counts it: at the
/// cap, room is made at the expense of the source that holds the most
/// connections (see [`Limits`](crate::Limits#fair-to-every-source)).
///
/// - an IPv4 address: one source per address;
/// - an IPv6 address: one source per /64 network (what one host or one
///   customer is usually given), so an attacker cannot take a fresh source
///   from each of its 2^64 addresses; an IPv4-mapped IPv6 address
///   (`::ffff:192.0.2.1`) counts as its IPv4 address;
/// - a Unix socket peer: its user id where the runtime can read it (the
///   tokio runner, through `peer_cred`); the thread runner cannot read it
///   without unsafe code, so there every Unix peer is one [`Source::Local`].
///
/// ```
/// use std::net::IpAddr;
/// use stamp_echo::runner::Source;
///
/// let a = Source::from("2001:db8:1:2:aaaa::1".parse::<IpAddr>()?);
/// let b = Source::from("2001:db8:1:2:bbbb::2".parse::<IpAddr>()?);
/// assert_eq!(a, b);
/// assert_eq!(a.to_string(), "2001:db8:1:2::/64");
/// let mapped = Source::from("::ffff:192.0.2.1".parse::<IpAddr>()?);
/// assert_eq!(mapped.to_string(), "192.0.2.1");
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Source {
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 /64 network: the address with its last 64 bits zeroed.
    V6(Ipv6Addr),
    /// A Unix socket peer's user id.
    Uid(u32),
    /// A local peer whose user the runtime cannot tell: every Unix socket
    /// peer of the thread runner, and a tokio one whose credentials cannot
    /// be read.
    Local,
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4),
                None => Source::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
            },
        }
    }
}

impl Source {
    /// The source of a peer at `addr`: its IP address's, or for a Unix
    /// socket [`Source::Local`] (a runner that can read the peer's user
    /// asks the socket instead).
    pub(crate) fn of(addr: &Addr) -> Source {
        match addr {
            Addr::Tcp(a) | Addr::Udp(a) => Source::from(a.ip()),
            Addr::Unix(_) => Source::Local,
        }
    }
}

impl fmt::Display for Source {
    /// `192.0.2.1`, `2001:db8::/64`, `uid 1000`, `local`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::V4(ip) => ip.fmt(f),
            Source::V6(net) => write!(f, "{net}/64"),
            Source::Uid(uid) => write!(f, "uid {uid}"),
            Source::Local => f.write_str("local"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        let ip = |s: &str| Source::from(s.parse::<IpAddr>().expect("an address"));
        assert_eq!(ip("2001:db8::1"), ip("2001:db8::ffff:1"));
        assert_ne!(ip("2001:db8::1"), ip("2001:db8:0:1::1"));
        assert_eq!(ip("::ffff:10.0.0.1"), ip("10.0.0.1"));
        assert_ne!(ip("10.0.0.1"), ip("10.0.0.2"));
        assert_eq!(ip("2001:db8:0:1::9").to_string(), "2001:db8:0:1::/64");
        assert_eq!(Source::Uid(1000).to_string(), "uid 1000");
        assert_eq!(Source::Local.to_string(), "local");
    }
}
