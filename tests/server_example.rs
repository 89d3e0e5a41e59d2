//! The `server` example as a user runs it: its log lines, SIGTERM, --unix.
//!
//! It runs the binary cargo builds beside the tests (`cargo test` builds the
//! examples): target/<profile>/examples/server.
//!
//! Unix only: SIGTERM and Unix sockets.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use common::connect;

fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps");
    let path = profile_dir.join("examples").join("server");
    assert!(path.exists(), "{} is missing: build it with `cargo test` or `cargo build --examples`", path.display());
    path
}

/// The running example; killed if a test fails before it ends.
struct Server {
    child: Child,
    lines: BufReader<ChildStdout>,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(server_binary())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the server example");
        let lines = BufReader::new(child.stdout.take().expect("stdout"));
        Server { child, lines }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.lines.read_line(&mut line).expect("a line");
        line.trim_end_matches('\n').to_owned()
    }

    /// Sends SIGTERM and returns the rest of stdout once it exits.
    fn terminate(mut self) -> (bool, String) {
        let killed = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(killed.success());
        let mut rest = String::new();
        self.lines.read_to_string(&mut rest).expect("stdout");
        let status = self.child.wait().expect("exit status");
        (status.success(), rest)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn logs_like_the_original_and_exits_cleanly_on_sigterm() {
    let mut server = Server::start(&["--port", "0", "--stamp", "ctime-utc"]);
    let listening = server.line();
    let port = listening.strip_prefix("listening on 127.0.0.1:").expect(&listening);
    assert!(port.parse::<u16>().is_ok_and(|port| port != 0), "{listening}");

    let mut stream = connect(format!("127.0.0.1:{port}").parse().expect("an address"));
    stream.write_all(b"hi,server").expect("send");
    let mut reply = [0; 64];
    let n = stream.read(&mut reply).expect("reply");
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with('[') && reply.ends_with("] hi,server"), "{reply}");
    let local = stream.local_addr().expect("address");

    assert_eq!(server.line(), "waiting for connection...");
    assert_eq!(server.line(), format!("...connected from: {local}"));
    // The acceptor waits for the next client while the first one's thread
    // logs its message: these two lines come in either order.
    let mut next = [server.line(), server.line()];
    next.sort();
    assert_eq!(next, ["date= hi,server", "waiting for connection..."]);

    // A graceful shutdown closes the open connection...
    let (success, rest) = server.terminate();
    let mut end = [0; 1];
    assert_eq!(stream.read(&mut end).expect("end of input"), 0);
    // ...and ends with a one-line summary and status 0.
    assert!(success, "exit status; output: {rest}");
    let summary = rest.lines().last().unwrap_or_default();
    assert!(summary.starts_with("shut down: 1 connection, 1 message, 9 bytes in, "), "{rest}");
}

#[test]
fn unix_socket_replaces_a_stale_file_and_removes_it_at_exit() {
    let path = std::env::temp_dir().join(format!("stamp-echo-example-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    drop(UnixListener::bind(&path).expect("bind")); // leaves a stale socket file
    assert!(path.exists());

    let path_arg = path.to_str().expect("UTF-8 path");
    let mut server = Server::start(&["--unix", path_arg, "--framing", "line", "--quiet"]);
    assert_eq!(server.line(), format!("listening on {path_arg}"));
    let mut stream = UnixStream::connect(&path).expect("connect");
    stream.write_all(b"over unix\n").expect("send");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("reply");
    assert!(reply.ends_with("] over unix\n"), "{reply}");

    // A second server on the same, now live, path refuses to start.
    let second = Command::new(server_binary()).args(["--unix", path_arg]).output().expect("run");
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("another server is listening"));

    let (success, rest) = server.terminate();
    assert!(success, "{rest}");
    // Two connections: ours, and the second server's check that the path is live.
    assert!(rest.starts_with("shut down: 2 connections, 1 message,"), "{rest}");
    assert!(!path.exists(), "the socket file is removed at exit");
}

#[test]
fn bad_flags_get_a_clear_message() {
    let out = Command::new(server_binary()).args(["--max-connections", "many"]).output().expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid value 'many' for '--max-connections"), "{stderr}");
}

#[test]
fn limits_out_of_range_are_refused_before_listening() {
    let out = Command::new(server_binary()).args(["--port", "0", "--max-connections", "0"]).output().expect("run");
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid max_connections 0: expected at least 1"));
}

#[test]
fn serves_udp_with_the_udp_flag() {
    let mut server = Server::start(&["--udp", "--port", "0", "--stamp", "unix"]);
    let listening = server.line();
    let addr = listening
        .strip_prefix("listening on ")
        .and_then(|rest| rest.strip_suffix(" (udp)"))
        .expect(&listening)
        .to_owned();
    let mut client = stamp_echo::datagram::DatagramClient::connect(addr.as_str()).expect("a UDP socket");
    let reply = client.round_trip("你好".as_bytes()).expect("a reply datagram");
    assert_eq!(reply.message(), "你好".as_bytes());
    assert!(stamp_echo::stamp::UnixTime::parse(reply.stamp()).is_some(), "{}", reply.stamp());
    assert_eq!(server.line(), format!("...datagram from {}: 你好", client.socket().local_addr().expect("address")));
    let (clean, rest) = server.terminate();
    assert!(clean, "exit status 0 on SIGTERM");
    assert!(rest.contains("stopped: 1 datagram"), "{rest}");
}
