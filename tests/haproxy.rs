//! The PROXY protocol against a real HAProxy (`send-proxy` and
//! `send-proxy-v2`), on both runtimes: clients bound to 127.0.0.2 and
//! 127.0.0.3 reach HAProxy, HAProxy reaches the server from 127.0.0.1 (its
//! trusted proxy), and the server must see the clients' own addresses.
//!
//! No fixed port: the server listens on 127.0.0.1:0, and HAProxy is handed
//! listening sockets bound to port 0 by this test (`bind fd@N`, the socket
//! inherited by the child), so clients can connect as soon as HAProxy runs:
//! the kernel queues them until it accepts. When `haproxy` is missing the
//! test is skipped, saying so, except under CI (`CI` set), where it fails.
#![cfg(unix)]

#[macro_use]
mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use common::{Event, Recorder, Runtime, SAFETY_TIMEOUT, connect_from, fixed_server, round_trip, serve_proxied_on};
use socket2::{Domain, SockRef, Socket, Type};
use stamp_echo::runner::{Addr, ProxyProtocol, Source, TrustedProxy};
use stamp_echo::{Framing, Limits};

/// `haproxy` on the PATH or in /usr/sbin (where Debian puts it, often off a
/// user's PATH).
fn haproxy(test: &str) -> Option<PathBuf> {
    let runs = |path: &PathBuf| {
        Command::new(path).arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    };
    let found = [PathBuf::from("haproxy"), PathBuf::from("/usr/sbin/haproxy")].into_iter().find(runs);
    if found.is_none() {
        common::missing_tool(test, "haproxy not found (apt-get install haproxy)");
    }
    found
}

/// A listening socket on 127.0.0.1:0, for HAProxy to inherit.
fn listening() -> TcpListener {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind 127.0.0.1:0");
    socket.listen(128).expect("listen");
    socket.into()
}

/// Whether a child process inherits `listener` (no close-on-exec).
fn inherit(listener: &TcpListener, inherited: bool) {
    SockRef::from(listener).set_cloexec(!inherited).expect("set close-on-exec");
}

/// Spawning with inheritable sockets, one test at a time: another test's
/// HAProxy must not inherit this one's listeners.
static SPAWNING: Mutex<()> = Mutex::new(());

/// HAProxy in the foreground, killed when dropped.
struct HaProxy {
    child: Child,
    _dir: TempDir,
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("stamp-echo-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts HAProxy relaying `v1` with `send-proxy` and `v2` with
/// `send-proxy-v2` (and a CRC32C TLV) to `server`. The configuration is
/// checked first (`-c`), so a bad one fails here rather than hangs a client.
fn start_haproxy(haproxy: &PathBuf, name: &str, v1: &TcpListener, v2: &TcpListener, server: SocketAddr) -> HaProxy {
    let dir = TempDir::new(name);
    let config = dir.0.join("haproxy.cfg");
    let text = format!(
        "global\n    nbthread 1\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
         frontend v1\n    bind fd@{v1}\n    default_backend echo_v1\n\
         backend echo_v1\n    server echo {server} send-proxy\n\
         frontend v2\n    bind fd@{v2}\n    default_backend echo_v2\n\
         backend echo_v2\n    server echo {server} send-proxy-v2 proxy-v2-options crc32c\n",
        v1 = v1.as_raw_fd(),
        v2 = v2.as_raw_fd(),
    );
    std::fs::File::create(&config).and_then(|mut f| f.write_all(text.as_bytes())).expect("write the configuration");
    let _one_at_a_time = SPAWNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    inherit(v1, true);
    inherit(v2, true);
    let check = Command::new(haproxy).arg("-c").arg("-f").arg(&config).output().expect("run haproxy -c");
    assert!(
        check.status.success(),
        "haproxy -c: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new(haproxy)
        .arg("-db")
        .arg("-f")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy");
    // The child has its copies; ours go no further.
    inherit(v1, false);
    inherit(v2, false);
    HaProxy { child, _dir: dir }
}

fn haproxy_send_proxy_v1_and_v2_give_the_server_the_clients_addresses(rt: Runtime) {
    let test = format!("haproxy_send_proxy_v1_and_v2 ({rt:?})");
    let Some(haproxy) = haproxy(&test) else { return };
    let framing = Framing::line();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let server_addr = listener.local_addr().expect("bound address");
    let proxy = ProxyProtocol::new(["127.0.0.1".parse::<TrustedProxy>().expect("an address")]);
    let (recorder, events) = Recorder::new();
    let served = serve_proxied_on(rt, listener, fixed_server(framing), Limits::default(), Some(proxy), recorder)
        .expect("start the runner");
    let (v1, v2) = (listening(), listening());
    let (v1_addr, v2_addr) = (v1.local_addr().expect("v1"), v2.local_addr().expect("v2"));
    let _haproxy = start_haproxy(&haproxy, &format!("haproxy-{rt:?}"), &v1, &v2, server_addr);
    drop((v1, v2));

    let mut clients = Vec::new();
    for (ip, frontend) in [([127, 0, 0, 2], v1_addr), ([127, 0, 0, 3], v2_addr), ([127, 0, 0, 2], v2_addr)] {
        let mut client = connect_from(ip, frontend);
        let message = format!("through {frontend}");
        round_trip(&mut client, framing, message.as_bytes());
        let seen = loop {
            match events.recv_timeout(SAFETY_TIMEOUT).expect("the server saw the connection") {
                Event::Connected(peer) => break peer,
                Event::Closed { id, error: Some(error), .. } => panic!("connection {id} failed: {error:?}"),
                _ => {}
            }
        };
        let me = client.local_addr().expect("client address");
        assert_eq!((seen.addr, seen.source), (Addr::Tcp(me), Source::from(me.ip())), "through {frontend}");
        clients.push(client);
    }
    // Each client is its own source, and still served.
    for client in &mut clients {
        round_trip(client, framing, b"again");
    }
    drop(clients);
    let totals = served.shutdown(SAFETY_TIMEOUT);
    assert_eq!((totals.messages, totals.errors), (6, 0), "{totals}");
}

on_both_runtimes!(haproxy_send_proxy_v1_and_v2_give_the_server_the_clients_addresses);
