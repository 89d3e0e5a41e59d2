//! Every setting's bound, through the library, where the setting is used:
//! each is refused one step outside its range, with an error naming the
//! setting and stating the range from its own `Bound`, and accepted at both
//! ends (and `None`, where it takes it).

#[macro_use]
mod common;

use std::io::Cursor;
use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use common::{Runtime, fixed_server, serve_proxied_on};
use stamp_echo::datagram::{DatagramClient, DatagramServer, RateLimit};
use stamp_echo::load::{Workload, drive};
use stamp_echo::runner::{ProxyProtocol, TrustedProxy};
use stamp_echo::stamp::UnixTime;
use stamp_echo::testing::LocalServer;
use stamp_echo::{Bound, BoundValue, EchoClient, EchoServer, Error, Framing, Limits};

/// One step below and above a value, where there is one.
trait Step: BoundValue {
    fn below(self) -> Option<Self>;
    fn above(self) -> Option<Self>;
}

macro_rules! integer_steps {
    ($($t:ty),*) => {$(
        impl Step for $t {
            fn below(self) -> Option<$t> {
                self.checked_sub(1)
            }
            fn above(self) -> Option<$t> {
                self.checked_add(1)
            }
        }
    )*};
}
integer_steps!(u8, u32, usize);

impl Step for Duration {
    fn below(self) -> Option<Duration> {
        self.checked_sub(Duration::from_nanos(1))
    }
    fn above(self) -> Option<Duration> {
        self.checked_add(Duration::from_nanos(1))
    }
}

/// The values `bound` accepts at its ends, and those one step outside.
fn edges<T: Step>(bound: &Bound<T>) -> ([T; 2], Vec<T>) {
    let outside = [bound.min().below(), bound.max().above()].into_iter().flatten().collect();
    ([bound.min(), bound.max()], outside)
}

/// `result` is `bound`'s refusal of `value`: the setting named, the range
/// stated from the bound.
fn assert_refused<T: Step, R: std::fmt::Debug>(bound: &Bound<T>, value: T, result: Result<R, Error>) {
    match result {
        Err(Error::Config(e)) => {
            assert_eq!(e.setting(), bound.name(), "{e}");
            assert!(e.expected().starts_with(&bound.to_string()), "{e}: the range of {bound:?}");
        }
        other => panic!("{} {value:?} is refused, not {other:?}", bound.name()),
    }
}

/// Checks `bound` where it is used: `try_with(value)` must accept its ends
/// (and `None` if the setting takes it) and refuse one step outside.
fn check<T: Step, R: std::fmt::Debug>(bound: Bound<T>, mut try_with: impl FnMut(Option<T>) -> Result<R, Error>) {
    let (ends, outside) = edges(&bound);
    for value in ends {
        if let Err(e) = try_with(Some(value)) {
            panic!("{} {value:?} is accepted at the end of {bound}: {e}", bound.name());
        }
    }
    for value in outside {
        assert_refused(&bound, value, try_with(Some(value)));
    }
    if bound.or_none_accepted() {
        assert!(try_with(None).is_ok(), "{}: None", bound.name());
    }
}

/// A runner started with `limits` (and the PROXY protocol with `proxy`),
/// shut down again at once.
fn start(rt: Runtime, limits: Limits, proxy: Option<ProxyProtocol>) -> Result<(), Error> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let served = serve_proxied_on(rt, listener, fixed_server(Framing::line()), limits, proxy, ())?;
    served.shutdown(Duration::ZERO);
    Ok(())
}

fn every_limit_at_and_past_its_bounds(rt: Runtime) {
    let l = Limits::default;
    check(Limits::MAX_CONNECTIONS, |v| start(rt, l().max_connections(v.unwrap_or(0)), None));
    check(Limits::MAX_PER_SOURCE, |v| start(rt, l().max_per_source(v), None));
    check(Limits::EVICTION_GRACE, |v| start(rt, l().eviction_grace(v), None));
    check(Limits::IDLE_TIMEOUT, |v| start(rt, l().idle_timeout(v), None));
    check(Limits::MESSAGE_TIMEOUT, |v| start(rt, l().message_timeout(v), None));
    check(Limits::WRITE_TIMEOUT, |v| start(rt, l().write_timeout(v), None));
    check(Limits::STACK_SIZE, |v| start(rt, l().stack_size(v.unwrap_or(0)), None));
    // And the defaults are the bounds' own.
    let defaults = Limits::default();
    assert_eq!(Some(defaults.max_connections), Limits::MAX_CONNECTIONS.default());
    assert_eq!(defaults.max_per_source, Limits::MAX_PER_SOURCE.default());
    assert_eq!(defaults.eviction_grace, Limits::EVICTION_GRACE.default());
    assert_eq!(defaults.idle_timeout, Limits::IDLE_TIMEOUT.default());
    assert_eq!(defaults.message_timeout, Limits::MESSAGE_TIMEOUT.default());
    assert_eq!(defaults.write_timeout, Limits::WRITE_TIMEOUT.default());
    assert_eq!(Some(defaults.stack_size), Limits::STACK_SIZE.default());
}

fn the_proxy_header_timeout_at_and_past_its_bounds(rt: Runtime) {
    let proxy = ProxyProtocol::new(["10.0.0.0/8".parse::<TrustedProxy>().expect("a network")]);
    assert_eq!(Some(proxy.header_timeout), ProxyProtocol::HEADER_TIMEOUT.default());
    check(ProxyProtocol::HEADER_TIMEOUT, |v| {
        start(rt, Limits::default(), Some(proxy.clone().header_timeout(v.unwrap_or(Duration::ZERO))))
    });
}

on_both_runtimes!(every_limit_at_and_past_its_bounds, the_proxy_header_timeout_at_and_past_its_bounds);

#[test]
fn framing_limits_at_and_past_their_bounds_in_the_server_and_both_clients() {
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let framings = [
        (Framing::chunk(), Framing::BUFFER_SIZE),
        (Framing::line(), Framing::MAX_LINE),
        (Framing::length_prefixed(), Framing::MAX_FRAME),
    ];
    for (framing, bound) in framings {
        assert_eq!(framing.bound(), bound);
        assert_eq!(Some(framing.limit()), bound.default());
        let with = |v: Option<usize>| framing.with_limit(v.unwrap_or(0));
        check(bound, |v| EchoServer::builder().framing(with(v)).stamp(UnixTime).build());
        check(bound, |v| EchoClient::new(Cursor::new(Vec::new()), with(v)));
        check(bound, |v| {
            let _entered = tokio.enter();
            let (client, _server) = tokio::io::duplex(64);
            stamp_echo::tokio::AsyncEchoClient::new(client, with(v))
        });
    }
}

#[test]
fn the_read_buffer_size_at_and_past_its_bounds() {
    let bound = EchoServer::READ_BUFFER_SIZE;
    assert_eq!(bound.default(), Some(EchoServer::DEFAULT_READ_BUFFER_SIZE));
    check(bound, |v| EchoServer::builder().stamp(UnixTime).read_buffer_size(v.unwrap_or(0)).build());
}

/// A UDP server with `limit`, started and stopped at once: `start` checks
/// the limit first.
fn serve_udp_with(limit: RateLimit) -> Result<(), Error> {
    let server = DatagramServer::new(UdpSocket::bind("127.0.0.1:0").expect("bind"), Arc::new(UnixTime))?;
    let handle = server.rate_limit(limit).start(())?;
    handle.shutdown(Duration::from_secs(5));
    Ok(())
}

#[test]
fn every_rate_limit_setting_at_and_past_its_bounds() {
    let r = RateLimit::default;
    let per = RateLimit::DEFAULT_PER;
    check(RateLimit::REPLIES, |v| serve_udp_with(r().replies(v.unwrap_or(0), per)));
    check(RateLimit::PER, |v| serve_udp_with(r().replies(1, v.unwrap_or(Duration::ZERO))));
    check(RateLimit::BURST, |v| serve_udp_with(r().burst(v.unwrap_or(0))));
    check(RateLimit::TOTAL, |v| serve_udp_with(r().total(v.unwrap_or(0))));
    check(RateLimit::BUCKETS, |v| serve_udp_with(r().buckets(v.unwrap_or(0))));
    let defaults = RateLimit::default();
    assert_eq!(Some(defaults.replies), RateLimit::REPLIES.default());
    assert_eq!(Some(defaults.per), RateLimit::PER.default());
    assert_eq!(Some(defaults.burst), RateLimit::BURST.default());
    assert_eq!(Some(defaults.total), RateLimit::TOTAL.default());
    assert_eq!(Some(defaults.buckets), RateLimit::BUCKETS.default());
}

#[test]
fn client_timeouts_must_be_longer_than_zero() {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.connect(socket.local_addr().expect("address")).expect("connect");
    let mut udp = DatagramClient::new(socket);
    check(DatagramClient::TIMEOUT, |v| udp.set_timeout(v.unwrap_or(Duration::ZERO)));

    let server = LocalServer::start(fixed_server(Framing::line())).expect("a server");
    let mut tcp =
        EchoClient::new(TcpStream::connect(server.addr()).expect("connect"), Framing::line()).expect("client");
    let err = tcp.set_timeout(Some(Duration::ZERO)).expect_err("zero");
    assert!(matches!(&err, Error::Config(e) if e.setting() == "timeout" && e.value() == "0s"), "{err}");
    for fine in [None, Some(Duration::from_nanos(1)), Some(Duration::MAX)] {
        assert!(tcp.set_timeout(fine).is_ok(), "{fine:?}");
    }
}

#[test]
fn trusted_proxy_prefixes_at_and_past_their_bounds() {
    let v4: IpAddr = "10.1.2.3".parse().expect("an address");
    let v6: IpAddr = "2001:db8::1".parse().expect("an address");
    for (addr, longest) in [(v4, 32u8), (v6, 128)] {
        for prefix in [0, longest] {
            assert!(TrustedProxy::new(addr, prefix).is_ok(), "{addr}/{prefix}");
        }
        match TrustedProxy::new(addr, longest + 1) {
            Err(Error::Config(e)) => {
                assert_eq!((e.setting(), e.expected()), ("trusted proxy prefix", format!("0 to {longest}").as_str()))
            }
            other => panic!("{addr}/{}: {other:?}", longest + 1),
        }
    }
    assert!("10.0.0.0/33".parse::<TrustedProxy>().is_err());
}

#[test]
fn a_workload_needs_a_window_and_a_size() {
    let server = LocalServer::start(fixed_server(Framing::line())).expect("a server");
    let stream = TcpStream::connect(server.addr()).expect("connect");
    let progress = AtomicU64::new(0);
    let run =
        |size: usize, window: usize| drive(&stream, Framing::line(), Workload::new(2, size, window), &progress, |_| {});
    assert_refused(&Workload::SIZE, 0, run(0, 1));
    assert_refused(&Workload::WINDOW, 0, run(1, 0));
    let report = run(Workload::SIZE.min(), Workload::WINDOW.min()).expect("the smallest workload runs");
    assert_eq!(report.messages, 2);
}
