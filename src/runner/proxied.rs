//! The PROXY protocol in the runners: which peers are trusted proxies and
//! how long they have for their header ([`ProxyProtocol`], [`TrustedProxy`]),
//! and the step between `accept()` and serving that both runners drive, with
//! no I/O of its own ([`HeaderRead`], [`Shared::behind_proxy`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use super::{Addr, Decision, Entry, Limits, Peer, Shared, Source};
use crate::bounds::Bound;
use crate::protocol::Summary;
use crate::proxy::{ProxyAddresses, ProxyCommand, ProxyHeader, ProxyParser, ProxyStatus};
use crate::{ConfigError, Error};

/// A network whose connections are trusted proxies: an address and a prefix
/// length (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7` for one address).
///
/// ```
/// use stamp_echo::runner::TrustedProxy;
///
/// let net: TrustedProxy = "10.1.0.0/16".parse()?;
/// assert!(net.contains("10.1.200.3".parse()?));
/// assert!(net.contains("::ffff:10.1.0.9".parse()?), "an IPv4-mapped IPv6 peer is its IPv4 address");
/// assert!(!net.contains("10.2.0.1".parse()?));
/// assert_eq!("192.0.2.7".parse::<TrustedProxy>()?.to_string(), "192.0.2.7/32");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrustedProxy {
    network: IpAddr,
    prefix: u8,
}

impl TrustedProxy {
    /// The network of `addr` with its first `prefix` bits (host bits are
    /// ignored: `10.1.2.3/8` is `10.0.0.0/8`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a prefix over 32 (IPv4: `expected 0 to 32`) or
    /// 128 (IPv6).
    pub fn new(addr: IpAddr, prefix: u8) -> Result<TrustedProxy, Error> {
        let network = match addr {
            IpAddr::V4(ip) => IpAddr::V4(Ipv4Addr::from(u32::from(ip) & mask32(V4_PREFIX.check(prefix)?))),
            IpAddr::V6(ip) => IpAddr::V6(Ipv6Addr::from(u128::from(ip) & mask128(V6_PREFIX.check(prefix)?))),
        };
        Ok(TrustedProxy { network, prefix })
    }

    /// One address alone (`/32` or `/128`).
    pub fn addr(addr: IpAddr) -> TrustedProxy {
        let prefix = if addr.is_ipv4() { V4_PREFIX.max() } else { V6_PREFIX.max() };
        TrustedProxy { network: addr, prefix }
    }

    /// Whether `ip` is in the network. An IPv4-mapped IPv6 address (a peer
    /// of a dual-stack listener) is taken as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => u32::from(ip) & mask32(self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => u128::from(ip) & mask128(self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

/// The prefix lengths of an IPv4 network, and of an IPv6 one.
const V4_PREFIX: Bound<u8> = Bound::new("trusted proxy prefix", 0, 32).with_default(32);
const V6_PREFIX: Bound<u8> = Bound::new("trusted proxy prefix", 0, 128).with_default(128);

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for TrustedProxy {
    type Err = Error;

    /// `ADDR` or `ADDR/PREFIX`, IPv4 or IPv6.
    fn from_str(text: &str) -> Result<TrustedProxy, Error> {
        let bad = || ConfigError::new("trusted proxy", text, "ADDRESS or ADDRESS/PREFIX (10.0.0.0/8, 2001:db8::/32)");
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        match prefix {
            None => Ok(TrustedProxy::addr(addr)),
            Some(prefix) => TrustedProxy::new(addr, prefix.parse().map_err(|_| bad())?),
        }
    }
}

impl fmt::Display for TrustedProxy {
    /// `10.0.0.0/8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The PROXY protocol (HAProxy's, v1 and v2: see [`proxy`](crate::proxy)),
/// for a server behind a load balancer: given to
/// [`runner::start_proxied`](crate::runner::start_proxied) (or the tokio
/// runner's), so that fairness, logs and [`Events`](crate::Events) see the
/// real client. Off unless given.
///
/// - A connection from a [trusted](ProxyProtocol::trusted) proxy must start
///   with a header, whole within
///   [`header_timeout`](ProxyProtocol::header_timeout)
///   ([`TimeoutError::ProxyHeader`](crate::TimeoutError::ProxyHeader)
///   otherwise); a malformed or oversized one closes that connection with
///   its [`ProxyError`](crate::ProxyError). A proxy that connects and closes
///   without sending a byte (a TCP health check) ends cleanly. The header is
///   read with reads that never go past it: the client's first bytes are
///   left for the echo, however they arrived.
/// - With a PROXY header giving a TCP (or UDP) client, the connection's
///   [`Peer`] is that client: its address, and its [`Source`] for fairness
///   (the connection is admitted as the proxy's, then counted for the
///   client, which may evict or refuse it as a newcomer from there would be:
///   [`Error::Refused`]). A LOCAL header (health checks), `UNKNOWN`, an
///   UNSPEC family, or an AF_UNIX client: served as the proxy's own
///   connection.
/// - A connection from anyone else is served as it is, and a header from it
///   is refused, never honoured: if its first read begins with a whole
///   signature (`PROXY ` or the 12 bytes of version 2), it is closed with
///   [`ProxyError::Untrusted`](crate::ProxyError::Untrusted). (A signature
///   split over two reads is served as data, echoed like any message;
///   proxies send their header in one segment.)
/// - Unix socket peers are never trusted proxies.
///
/// [`Events::connected`](crate::Events::connected) is called once the header
/// is read, with the real client, on the connection's thread (task); a
/// connection whose header fails is shown to
/// [`Events::closed`](crate::Events::closed) alone, with the proxy as its
/// peer (one refused once its client was known: with the client).
///
/// ```
/// use std::time::Duration;
/// use stamp_echo::runner::ProxyProtocol;
///
/// let proxy = ProxyProtocol::new(["10.0.0.0/8".parse()?, "192.0.2.7".parse()?])
///     .header_timeout(Duration::from_secs(2));
/// assert!(proxy.trusts("10.3.4.5".parse()?));
/// assert!(!proxy.trusts("198.51.100.1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyProtocol {
    /// The networks whose connections are proxies that send a header.
    pub trusted: Vec<TrustedProxy>,
    /// How long a trusted proxy has, from `accept()`, to send its whole
    /// header (default [`ProxyProtocol::DEFAULT_HEADER_TIMEOUT`], 5 s;
    /// [`Limits::MIN_TIMEOUT`] to [`Limits::MAX_TIMEOUT`]:
    /// [`ProxyProtocol::HEADER_TIMEOUT`]).
    pub header_timeout: Duration,
}

impl ProxyProtocol {
    /// Default for [`ProxyProtocol::header_timeout`]: a proxy sends its
    /// header at once with the connection; 5 s is HAProxy's own
    /// `timeout client` in its examples, far above any network round trip.
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
    /// The range of [`ProxyProtocol::header_timeout`], with its default:
    /// that of every timeout in [`Limits`].
    pub const HEADER_TIMEOUT: Bound<Duration> = Bound::new("header_timeout", Limits::MIN_TIMEOUT, Limits::MAX_TIMEOUT)
        .with_default(Self::DEFAULT_HEADER_TIMEOUT);

    /// Headers from `trusted` networks, with the default header timeout.
    pub fn new(trusted: impl IntoIterator<Item = TrustedProxy>) -> ProxyProtocol {
        ProxyProtocol { trusted: trusted.into_iter().collect(), header_timeout: Self::DEFAULT_HEADER_TIMEOUT }
    }

    /// Sets [`ProxyProtocol::header_timeout`].
    #[must_use]
    pub fn header_timeout(mut self, timeout: Duration) -> ProxyProtocol {
        self.header_timeout = timeout;
        self
    }

    /// Whether a peer at `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }

    /// Whether a connection from `addr` must start with a header.
    pub(crate) fn expects_header(&self, addr: &Addr) -> bool {
        matches!(addr, Addr::Tcp(a) if self.trusts(a.ip()))
    }

    /// Checks the settings, as the runners do.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a header timeout out of
    /// [`ProxyProtocol::HEADER_TIMEOUT`].
    pub fn validate(&self) -> Result<(), Error> {
        Self::HEADER_TIMEOUT.check(self.header_timeout)?;
        Ok(())
    }
}

/// Reading a trusted proxy's header, with no I/O: the runner reads into
/// [`buffer`](HeaderRead::buffer) (never past the header) and reports what
/// came with [`filled`](HeaderRead::filled), until the header is whole.
pub(crate) struct HeaderRead {
    parser: ProxyParser,
    buf: [u8; 256],
}

impl HeaderRead {
    pub(crate) fn new() -> HeaderRead {
        HeaderRead { parser: ProxyParser::new(), buf: [0; 256] }
    }

    /// Where to read next: never more than the header has left.
    pub(crate) fn buffer(&mut self) -> &mut [u8] {
        let wanted = self.parser.wanted().clamp(1, self.buf.len());
        &mut self.buf[..wanted]
    }

    /// `n` bytes were read into [`buffer`](HeaderRead::buffer) (0: the
    /// input ended): `true` once done, the [`header`](HeaderRead::header)
    /// whole or the proxy gone without sending a byte (a health check, or
    /// shutdown).
    pub(crate) fn filled(&mut self, n: usize) -> Result<bool, Error> {
        if n == 0 {
            if self.parser.received() == 0 {
                return Ok(true);
            }
            return self.parser.finish().map(|_| true).map_err(Error::from);
        }
        Ok(matches!(self.parser.feed(&self.buf[..n])?, ProxyStatus::Complete { .. }))
    }

    /// The header, once [`filled`](HeaderRead::filled) said done: `None` if
    /// the proxy sent nothing.
    pub(crate) fn header(&self) -> Option<ProxyHeader> {
        self.parser.finish().ok()
    }
}

impl fmt::Debug for HeaderRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderRead").field("parser", &self.parser).finish_non_exhaustive()
    }
}

/// The peer a connection from `proxy` is served as, given its `header`: the
/// client it names over TCP or UDP, else the proxy itself.
pub(crate) fn real_peer(proxy: &Peer, header: &ProxyHeader) -> Peer {
    match (header.command, header.addresses) {
        (ProxyCommand::Proxy, ProxyAddresses::Inet { source, .. }) => {
            Peer { id: proxy.id, addr: Addr::Tcp(source), source: Source::from(source.ip()) }
        }
        _ => proxy.clone(),
    }
}

impl<C: Entry, W> Shared<C, W> {
    /// What reading the header of connection `proxy` came to (`None`: the
    /// proxy closed without a byte): the client to serve, counted for its
    /// own source from now on and reported
    /// [`connected`](crate::Events::connected); or the connection ends here
    /// (the header failed, or the client's source, as a newcomer, would have
    /// been refused: [`Error::Refused`]),
    /// reported [`closed`](crate::Events::closed) (with the client as its
    /// peer if it was refused, else the proxy), and `Err` says whether it
    /// failed.
    pub(crate) fn arrived(&self, proxy: &Peer, read: Result<Option<ProxyHeader>, Error>) -> Result<Peer, bool> {
        let (peer, error) = match read {
            Ok(Some(header)) => {
                let client = real_peer(proxy, &header);
                let decision = if client.source == proxy.source {
                    Decision::Admit
                } else {
                    self.identify(proxy.id, client.source)
                };
                if let Decision::Refuse(reason) = decision {
                    (client, Some(Error::Refused { reason }))
                } else {
                    crate::spans::arrived(&client);
                    self.events.connected(&client);
                    return Ok(client);
                }
            }
            Ok(None) => (proxy.clone(), None),
            Err(error) => (proxy.clone(), Some(error)),
        };
        self.events.closed(&peer, &Summary::default(), error.as_ref());
        Err(error.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses_only() {
        let net = |s: &str| s.parse::<TrustedProxy>().expect("a network");
        let ip = |s: &str| s.parse::<IpAddr>().expect("an address");
        assert!(net("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("10.1.2.3/8").contains(ip("10.9.9.9")), "host bits are ignored");
        assert_eq!(net("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!net("0.0.0.0/0").contains(ip("2001:db8::1")), "an IPv4 network holds no IPv6 peer");
        assert!(net("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!net("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(net("127.0.0.1").contains(ip("::ffff:127.0.0.1")));
        assert!(net("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!net("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(net("::/0").contains(ip("::1")));
        assert!(net("::1").contains(ip("::1")) && !net("::1").contains(ip("::2")));
        for bad in ["10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0/8", "host", "10.0.0.0/-1", ""] {
            let err = bad.parse::<TrustedProxy>().expect_err(bad);
            assert!(matches!(err, Error::Config(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn only_tcp_peers_of_trusted_networks_must_send_a_header() {
        let proxy = ProxyProtocol::new(["127.0.0.1".parse().expect("an address")]);
        assert!(proxy.expects_header(&Addr::Tcp("127.0.0.1:5000".parse().expect("address"))));
        assert!(!proxy.expects_header(&Addr::Tcp("127.0.0.2:5000".parse().expect("address"))));
        assert!(!proxy.expects_header(&Addr::Unix(None)));
        assert!(proxy.validate().is_ok());
        assert!(proxy.clone().header_timeout(Duration::ZERO).validate().is_err());
        assert_eq!(proxy.header_timeout, ProxyProtocol::DEFAULT_HEADER_TIMEOUT);
    }

    /// Feeds `input` to a header read as a runner would, in reads of what
    /// `buffer` allows: the header it arrives at, and the bytes left unread.
    fn arrive(input: &[u8]) -> (Result<Option<ProxyHeader>, Error>, &[u8]) {
        let mut read = HeaderRead::new();
        let mut rest = input;
        loop {
            let buffer = read.buffer();
            let n = buffer.len().min(rest.len());
            buffer[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            match read.filled(n) {
                Ok(false) => {}
                Ok(true) => return (Ok(read.header()), rest),
                Err(e) => return (Err(e), rest),
            }
        }
    }

    #[test]
    fn a_header_read_leaves_the_client_bytes_unread() {
        let (arrival, rest) = arrive(b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nhi\nthere\n");
        let Ok(Some(header)) = arrival else { panic!("a header: {arrival:?}") };
        assert_eq!(rest, b"hi\nthere\n");
        let proxy = Peer { id: 7, addr: Addr::Tcp("127.0.0.1:4000".parse().expect("address")), source: Source::Local };
        let client = real_peer(&proxy, &header);
        assert_eq!(client.addr, Addr::Tcp("192.0.2.7:56324".parse().expect("address")));
        assert_eq!((client.id, client.source), (7, Source::from(IpAddr::from([192, 0, 2, 7]))));
        // LOCAL and UNKNOWN: the proxy itself.
        let (arrival, rest) = arrive(b"PROXY UNKNOWN\r\nhi\n");
        let Ok(Some(unknown)) = arrival else { panic!("a header") };
        assert_eq!((real_peer(&proxy, &unknown), rest), (proxy.clone(), &b"hi\n"[..]));
    }

    #[test]
    fn a_proxy_closing_at_once_is_no_error_but_a_partial_header_is() {
        assert!(matches!(arrive(b"").0, Ok(None)));
        assert!(matches!(
            arrive(b"PROXY TCP4 1.2").0,
            Err(Error::Proxy(crate::ProxyError::Truncated { received: 14 }))
        ));
        assert!(matches!(arrive(b"GET / HTTP/1.0\r\n").0, Err(Error::Proxy(crate::ProxyError::NoSignature))));
    }
}
