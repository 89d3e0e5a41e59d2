//! `stamp-echo serve` as a user runs it: its log lines, SIGTERM, --unix.
//!
//! Unix only: SIGTERM and Unix sockets.
#![cfg(unix)]

#[macro_use]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

use common::stamp_echo;

use common::{Runtime, SAFETY_TIMEOUT, connect};

/// The `--runtime` flag for `rt` (threads are the default: no flag, so
/// `--udp` can be given too).
fn runtime_flag(rt: Runtime) -> &'static [&'static str] {
    match rt {
        Runtime::Threads => &[],
        Runtime::Tokio => &["--runtime", "tokio"],
    }
}

/// `stamp-echo serve`.
fn serve() -> Command {
    stamp_echo("serve")
}

/// The running server; killed if a test fails before it ends.
struct Server {
    child: Child,
    lines: BufReader<ChildStdout>,
}

/// A process killed when dropped, unless it was waited for.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Server {
    /// Runs the server on `rt`'s runner with these flags.
    fn start(rt: Runtime, args: &[&str]) -> Server {
        Server::spawn(serve(), rt, args)
    }

    /// Runs the server as [`start`](Server::start) does, in a process
    /// allowed `descriptors` file descriptors (`ulimit -n`).
    fn start_with_descriptors(rt: Runtime, descriptors: u32, args: &[&str]) -> Server {
        let mut sh = Command::new("sh");
        sh.args(["-c", &format!("ulimit -n {descriptors} && exec \"$0\" \"$@\"")]).args([common::binary(), "serve"]);
        Server::spawn(sh, rt, args)
    }

    /// Runs `command` (the server, or what execs it) with the flags.
    fn spawn(mut command: Command, rt: Runtime, args: &[&str]) -> Server {
        let mut child =
            with_flags(&mut command, rt, args).stderr(Stdio::piped()).spawn().expect("run stamp-echo serve");
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

fn logs_like_the_original_and_exits_cleanly_on_sigterm(rt: Runtime) {
    let mut server = Server::start(rt, &["--port", "0", "--stamp", "ctime-utc"]);
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

fn unix_socket_replaces_a_stale_file_and_removes_it_at_exit(rt: Runtime) {
    let path = std::env::temp_dir().join(format!("stamp-echo-cli-{}-{:?}.sock", std::process::id(), rt));
    let _ = std::fs::remove_file(&path);
    drop(UnixListener::bind(&path).expect("bind")); // leaves a stale socket file
    assert!(path.exists());

    let path_arg = path.to_str().expect("UTF-8 path");
    let mut server = Server::start(rt, &["--unix", path_arg, "--framing", "line"]);
    assert_eq!(server.line(), format!("listening on {path_arg}"));
    let mut stream = UnixStream::connect(&path).expect("connect");
    stream.write_all(b"over unix\n").expect("send");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("reply");
    assert!(reply.ends_with("] over unix\n"), "{reply}");

    // A second server on the same, now live, path refuses to start.
    let second = serve().args(["--unix", path_arg]).output().expect("run");
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("another server is listening"));
    // The check's connection was accepted (it may close before it is).
    let mut connected = 0;
    while connected < 2 {
        connected += usize::from(server.line().starts_with("...connected from"));
    }

    let (success, rest) = server.terminate();
    assert!(success, "{rest}");
    // Two connections: ours, and the second server's check that the path is live.
    let summary = rest.lines().last().unwrap_or_default();
    assert!(summary.starts_with("shut down: 2 connections, 1 message,"), "{rest}");
    assert!(!path.exists(), "the socket file is removed at exit");
}

#[test]
fn bad_flags_get_a_clear_message() {
    let out = serve().args(["--max-connections", "many"]).output().expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid value 'many' for '--max-connections"), "{stderr}");
}

#[test]
fn limits_out_of_range_are_refused_before_listening() {
    let out = output_within(serve().args(["--port", "0", "--max-connections", "0"]), SAFETY_TIMEOUT);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("'0' for '--max-connections"), "{stderr}");
    assert!(
        stderr.contains(&stamp_echo::Limits::MAX_CONNECTIONS.to_string()),
        "the range from the library's bound: {stderr}"
    );
}

#[test]
fn serves_udp_with_the_udp_flag() {
    let mut server = Server::start(Runtime::Threads, &["--udp", "--port", "0", "--stamp", "unix"]);
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

/// `command` (the server, or what execs it) with `rt`'s runtime flag and
/// `args`, its stdout piped.
fn with_flags<'a>(command: &'a mut Command, rt: Runtime, args: &[&str]) -> &'a mut Command {
    command.args(runtime_flag(rt)).args(args).stdout(Stdio::piped())
}

/// Starts the server with these flags; its stdout, and the first line.
fn spawn(rt: Runtime, args: &[&str]) -> (Running, ChildStdout, String) {
    let mut command = serve();
    let mut child = with_flags(&mut command, rt, args).stderr(Stdio::null()).spawn().expect("run stamp-echo serve");
    let mut stdout = child.stdout.take().expect("stdout");
    // Byte by byte: nothing beyond the first line is taken from the pipe.
    let mut first = Vec::new();
    let mut byte = [0];
    while stdout.read(&mut byte).expect("stdout") == 1 && byte[0] != b'\n' {
        first.push(byte[0]);
    }
    (Running(Some(child)), stdout, String::from_utf8_lossy(&first).into_owned())
}

/// Sends SIGTERM and waits for the process to exit, up to `bound` (a
/// safety net): its status, and how long it took.
fn terminate_within(
    running: &mut Running,
    bound: std::time::Duration,
) -> (std::process::ExitStatus, std::time::Duration) {
    let mut child = running.0.take().expect("running");
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let started = std::time::Instant::now();
    let status = within(child.id(), bound, "the server did not exit", move || child.wait());
    (status.expect("exit status"), started.elapsed())
}

/// What `wait` returns once process `pid` has ended (it waits for it on a
/// thread of its own); a failure saying `late`, the process killed, if that
/// takes longer than `bound`.
fn within<T: Send + 'static>(
    pid: u32,
    bound: std::time::Duration,
    late: &str,
    wait: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(wait());
    });
    rx.recv_timeout(bound).unwrap_or_else(|_| {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        panic!("{late} within {bound:?}");
    })
}

fn a_stdout_nobody_reads_neither_stalls_serving_nor_stops_sigterm(rt: Runtime) {
    // Every message logged (no rate limit), so the pipe fills at once.
    let (mut running, mut stdout, listening) =
        spawn(rt, &["--port", "0", "--framing", "line", "--log-rate", "1000000", "--shutdown-deadline", "1"]);
    let port = listening.strip_prefix("listening on 127.0.0.1:").expect(&listening);
    let addr = format!("127.0.0.1:{port}").parse().expect("an address");
    // From here on nobody reads stdout. 20,000 log lines are far more than
    // a pipe (64 KiB) and the log queue hold.
    let framing = stamp_echo::Framing::line();
    let mut stream = connect(addr);
    let mut batch = Vec::new();
    for i in 0..20_000 {
        common::frame(framing, format!("fill the pipe {i}").as_bytes(), &mut batch);
    }
    let replies = common::send_all_and_read_replies(&mut stream, &batch);
    assert_eq!(replies.iter().filter(|&&b| b == b'\n').count(), 20_000);
    // Still serving, new clients included.
    let mut other = connect(addr);
    other.write_all(b"still served\n").expect("send");
    let mut reply = String::new();
    BufReader::new(&other).read_line(&mut reply).expect("a reply");
    assert!(reply.ends_with("] still served\n"), "{reply}");

    // Within the shutdown deadline (1 s), the log's last lines included; with room.
    let (status, took) = terminate_within(&mut running, std::time::Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let mut logged = String::new();
    let _ = stdout.read_to_string(&mut logged);
    // The pipe was full and stayed blocked to the end: the summary never got out.
    assert!(logged.len() >= 32 * 1024, "the pipe holds {} bytes", logged.len());
    assert!(!logged.contains("shut down:"), "stdout was not blocked");
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
}

fn peer_bytes_reach_the_log_escaped_one_line_each(rt: Runtime) {
    let mut server = Server::start(rt, &["--port", "0", "--stamp", "ctime-utc"]);
    let listening = server.line();
    let port = listening.strip_prefix("listening on 127.0.0.1:").expect(&listening);
    let mut stream = connect(format!("127.0.0.1:{port}").parse().expect("an address"));
    let hostile = b"x\x1b]0;pwned\x07\r\n...connected from: 10.0.0.1:1\xff";
    stream.write_all(hostile).expect("send");
    let mut reply = [0; 256];
    let n = stream.read(&mut reply).expect("reply");
    assert!(reply[..n].ends_with(hostile), "echoed byte for byte");
    drop(stream);
    let (_, rest) = server.terminate();
    let date = rest.lines().find(|l| l.starts_with("date= ")).unwrap_or_default();
    assert_eq!(date, r"date= x\x1b]0;pwned\x07\r\n...connected from: 10.0.0.1:1\xff", "{rest}");
    assert!(!rest.lines().any(|l| l.starts_with("...connected from: 10.0.0.1")), "{rest}");
    assert!(!rest.bytes().any(|b| b == 0x1b || b == 0x07 || b == b'\r'), "{rest}");
}

/// An empty directory of this process and `rt`'s own under the system's
/// temporary one, for a test's Unix socket.
fn fresh_dir(name: &str, rt: Runtime) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}-{rt:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).expect("a temporary directory");
    dir
}

fn a_unix_path_replaced_while_serving_is_left_alone_and_sigterm_still_stops_it(rt: Runtime) {
    let dir = fresh_dir("stamp-echo-replace", rt);
    let path = dir.join("echo.sock");
    let path_arg = path.to_str().expect("UTF-8 path");
    let (mut running, mut stdout, listening) = spawn(rt, &["--unix", path_arg, "--quiet"]);
    assert_eq!(listening, format!("listening on {path_arg}"));
    std::fs::rename(&path, dir.join("moved.sock")).expect("move the socket away");
    std::fs::write(&path, "someone else's file").expect("a file in its place");

    let (status, _) = terminate_within(&mut running, std::time::Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("stdout");
    assert!(rest.starts_with("shut down: 0 connections"), "{rest}");
    assert_eq!(std::fs::read_to_string(&path).expect("still there"), "someone else's file");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `command`'s output once it exits; a failure (and the process killed) if
/// it is still running after `bound`, as a server that took its flags is.
fn output_within(command: &mut Command, bound: std::time::Duration) -> std::process::Output {
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run stamp-echo serve");
    let late = format!("{command:?} took its flags: it did not exit");
    within(child.id(), bound, &late, move || child.wait_with_output()).expect("its output")
}

#[test]
fn absurd_flag_values_are_refused_with_the_flag_and_value_named() {
    for (flags, named) in [
        (&["--shutdown-deadline", "1e19"][..], "'1e19' for '--shutdown-deadline"),
        (&["--shutdown-deadline", "nan"], "'nan' for '--shutdown-deadline"),
        (&["--idle-timeout", "1e19"], "'1e19' for '--idle-timeout"),
        (&["--message-timeout", "0.0000001"], "'0.0000001' for '--message-timeout"),
        (&["--write-timeout", "inf"], "'inf' for '--write-timeout"),
        (&["--eviction-grace=-5"], "'-5' for '--eviction-grace"),
        (&["--idle-timeout", "31days"], "expected 0 (none) or 1ms to 30days"),
        (&["--buffer-size", "100000000000"], "'100000000000' for '--buffer-size"),
        (&["--max-connections", "100000000"], "'100000000' for '--max-connections"),
        (&["--max-per-source", "0"], "'0' for '--max-per-source"),
        (&["--max-per-source", "1000001"], "'1000001' for '--max-per-source"),
        (&["--trusted-proxy", "127.0.0.1"], "--proxy-protocol"),
        (&["--proxy-protocol", "--trusted-proxy", "nowhere"], "'nowhere' for '--trusted-proxy"),
        (
            &["--proxy-protocol", "--trusted-proxy", "127.0.0.1", "--proxy-header-timeout", "0"],
            "'0' for '--proxy-header-timeout",
        ),
        (&["--udp", "--proxy-protocol", "--trusted-proxy", "127.0.0.1"], "cannot be used with"),
        (&["--backlog", "0"], "'0' for '--backlog"),
        (&["--log-rate", "10000000"], "'10000000' for '--log-rate"),
        // Combinations that mean nothing are refused, not ignored.
        (&["--udp", "--runtime", "tokio"], "'--udp' cannot be used with '--runtime"),
        (&["--udp", "--framing", "line"], "'--udp' cannot be used with '--framing"),
        (&["--udp", "--max-line", "10"], "--udp has no framing"),
        (&["--unix", "/tmp/x.sock"], "cannot be used with '--unix <PATH>'"),
        (&["--max-line", "10"], "--max-line is the limit of line framing, not of chunk framing"),
        (&["--framing", "line", "--max-frame", "10"], "--max-frame is the limit of length framing"),
        (&["--udp-rate", "5"], "--udp"),
        (&["--inetd", "--udp"], "cannot be used with"),
        (&["--udp", "--udp-total", "0"], "'0' for '--udp-total"),
    ] {
        let out = output_within(serve().args(["--port", "0"]).args(flags), SAFETY_TIMEOUT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {:?} {stderr}", out.status);
        assert!(stderr.contains(named), "{flags:?}: {stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{flags:?}: refused before listening");
    }
}

#[test]
fn durations_take_units_or_plain_seconds() {
    // A quiet server with every duration flag in either spelling starts, and stops on SIGTERM.
    let flags = [
        "--port",
        "0",
        "--quiet",
        "--idle-timeout",
        "1m 30s",
        "--message-timeout",
        "2.5",
        "--write-timeout",
        "500ms",
        "--eviction-grace",
        "0",
        "--shutdown-deadline",
        "1s",
    ];
    let (mut running, mut stdout, listening) = spawn(Runtime::Threads, &flags);
    assert!(listening.starts_with("listening on 127.0.0.1:"), "{listening}");
    let (status, _) = terminate_within(&mut running, SAFETY_TIMEOUT);
    assert!(status.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("stdout");
    assert!(rest.starts_with("shut down: 0 connections"), "{rest}");
}

fn lines_a_blocked_stdout_missed_are_counted_once_it_moves_again(rt: Runtime) {
    let (mut running, stdout, listening) = spawn(rt, &["--port", "0", "--framing", "line", "--log-rate", "1000000"]);
    let port = listening.strip_prefix("listening on 127.0.0.1:").expect(&listening);
    let mut stream = connect(format!("127.0.0.1:{port}").parse().expect("an address"));
    let framing = stamp_echo::Framing::line();
    let mut batch = Vec::new();
    for i in 0..20_000 {
        common::frame(framing, format!("more than the pipe and the queue hold {i}").as_bytes(), &mut batch);
    }
    common::send_all_and_read_replies(&mut stream, &batch);
    // Now read: the writer moves again and says what it dropped.
    let mut lines = BufReader::new(stdout).lines();
    let dropped = lines
        .find_map(|line| {
            let line = line.expect("a line");
            line.strip_prefix("...")
                .and_then(|rest| rest.strip_suffix(" log lines dropped: stdout was not taking them"))
                .map(|n| n.parse::<u64>().expect("a count"))
        })
        .expect("a line counting the dropped lines");
    let shown = 20_000 - dropped;
    assert!(dropped > 0 && shown > 4096, "{dropped} dropped");
    let (status, _) = terminate_within(&mut running, std::time::Duration::from_secs(10));
    assert!(status.success());
}

/// The `what` lines the log says it did not show, over `--log-rate rate`.
fn not_shown(log: &str, what: &str, rate: u64) -> u64 {
    let suffix = format!(" {what} not shown (over --log-rate {rate} a second)");
    log.lines()
        .filter_map(|l| l.strip_prefix("...")?.strip_suffix(&suffix))
        .map(|n| n.parse::<u64>().expect("a count"))
        .sum()
}

fn message_lines_over_the_rate_are_counted_not_shown(rt: Runtime) {
    let mut server = Server::start(rt, &["--port", "0", "--framing", "line", "--log-rate", "2"]);
    let listening = server.line();
    let port = listening.strip_prefix("listening on 127.0.0.1:").expect(&listening);
    let mut stream = connect(format!("127.0.0.1:{port}").parse().expect("an address"));
    let mut batch = Vec::new();
    for i in 0..50 {
        common::frame(stamp_echo::Framing::line(), format!("m{i}").as_bytes(), &mut batch);
    }
    common::send_all_and_read_replies(&mut stream, &batch);
    let (success, rest) = server.terminate();
    assert!(success, "{rest}");
    // However the messages fell across seconds, every one is shown or counted.
    let shown = rest.lines().filter(|l| l.starts_with("date= m")).count() as u64;
    let hidden = not_shown(&rest, "message lines", 2);
    assert_eq!(shown + hidden, 50, "{rest}");
    assert!(shown <= 2 * 3 && hidden > 0, "{rest}");
}

fn a_unix_peers_hostile_path_is_logged_escaped(rt: Runtime) {
    use std::os::unix::ffi::OsStrExt;
    // Short: a socket path holds at most 107 bytes.
    let dir = fresh_dir("se-peer", rt);
    let path = dir.join("s.sock");
    let path_arg = path.to_str().expect("UTF-8 path");
    let mut server = Server::start(rt, &["--unix", path_arg, "--framing", "line"]);
    assert_eq!(server.line(), format!("listening on {path_arg}"));

    // The client binds its end to a name full of terminal escapes, a forged
    // log line and a byte that is not UTF-8.
    let hostile = dir.join(std::ffi::OsStr::from_bytes(b"c\x1b]0;x\x07\n...connected from: 1.2.3.4:5\xff"));
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&socket2::SockAddr::unix(&hostile).expect("address")).expect("bind the client's name");
    socket.connect(&socket2::SockAddr::unix(&path).expect("address")).expect("connect");
    let mut stream = UnixStream::from(std::os::fd::OwnedFd::from(socket));
    stream.write_all(b"hi\n").expect("send");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("reply");
    assert!(reply.ends_with("] hi\n"), "{reply}");

    let (success, rest) = server.terminate();
    assert!(success, "{rest}");
    let dir_text = dir.to_str().expect("UTF-8 dir");
    let expected = format!(r"...connected from: {dir_text}/c\x1b]0;x\x07\n...connected from: 1.2.3.4:5\xff");
    assert!(rest.lines().any(|l| l == expected), "{rest}");
    assert!(!rest.lines().any(|l| l.starts_with("...connected from: 1.2.3.4")), "{rest}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A process allowed fewer descriptors than `--max-connections` (64 against
/// the default 1024) runs out of them before the cap: hoarders from one
/// address must not keep a new client from another out then either. The
/// runner makes room at the hoarders' expense.
fn a_descriptor_limit_below_the_cap_cannot_let_hoarders_keep_a_new_client_out(rt: Runtime) {
    let mut server = Server::start_with_descriptors(rt, 64, &["--port", "0", "--framing", "line", "--quiet"]);
    let listening = server.line();
    let addr = listening.strip_prefix("listening on ").expect(&listening).parse().expect("an address");
    // More silent connections than the server has descriptors: some are
    // served, the rest wait in the backlog, ahead of the newcomer.
    let hoarders: Vec<_> = (0..100).map(|_| connect(addr)).collect();
    let newcomer = common::connect_from([127, 0, 0, 2], addr);
    let mut newcomer = stamp_echo::EchoClient::new(newcomer, stamp_echo::Framing::line()).expect("line framing");
    let reply = newcomer.round_trip(b"served").expect("served within the safety timeout, not after 300 s");
    assert_eq!(reply.message(), b"served");
    drop((hoarders, newcomer));
    let (clean, rest) = server.terminate();
    assert!(clean, "exit status 0 on SIGTERM: {rest}");
    let evicted: u64 = rest
        .split(", ")
        .find_map(|part| part.strip_suffix(" evicted"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("an evicted count in {rest:?}"));
    assert!(evicted >= 1, "hoarders made room: {rest}");
}

/// The device and inode of the file at `path`.
fn file_id(path: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).expect("the file is there");
    (meta.dev(), meta.ino())
}

/// A server frozen on the path (SIGSTOP) with a full backlog: the new
/// server's stale-socket check must not wait for it to accept. A listener
/// that never accepts, its backlog filled, stands in for it. The new server
/// says the path is live, naming it, and leaves it alone.
fn a_live_server_that_never_accepts_is_reported_not_waited_for(rt: Runtime) {
    let dir = fresh_dir("se-frozen", rt);
    let path = dir.join("s.sock");
    let frozen = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).expect("socket");
    frozen.bind(&socket2::SockAddr::unix(&path).expect("address")).expect("bind");
    frozen.listen(0).expect("listen");
    // Fill its backlog: connect without waiting until the kernel says "try again".
    let mut queued = Vec::new();
    let full = (0..10_000).any(|_| {
        let client = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).expect("socket");
        client.set_nonblocking(true).expect("non-blocking");
        match client.connect(&socket2::SockAddr::unix(&path).expect("address")) {
            Ok(()) => {
                queued.push(client);
                false
            }
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
                true
            }
        }
    });
    assert!(full, "the backlog filled after {} connections", queued.len());

    let before = file_id(&path);
    let path_arg = path.to_str().expect("UTF-8 path");
    let mut command = serve();
    command.args(runtime_flag(rt)).args(["--unix", path_arg]);
    // It returns (the safety timeout is only a net: it used to hang for ever).
    let out = output_within(&mut command, SAFETY_TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("{path_arg}: another server is listening on it")), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "never listening");
    // The frozen server's socket file is still the one at the path.
    assert_eq!(file_id(&path), before, "the live socket file is left alone");
    drop((queued, frozen));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A slow stdout (read, but slower than the log fills it): the totals line
/// at exit is still written within the shutdown deadline, on stdout ahead
/// of the lines still queued, or on stderr if stdout does not take it in
/// time. It used to wait behind thousands of queued lines and never come.
fn the_totals_line_is_written_whatever_a_slow_stdout_does(rt: Runtime) {
    let mut command = serve();
    let args = ["--port", "0", "--framing", "line", "--log-rate", "1000000", "--shutdown-deadline", "1"];
    let mut child = with_flags(&mut command, rt, &args).stderr(Stdio::piped()).spawn().expect("run stamp-echo serve");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let mut running = Running(Some(child));
    let mut first = Vec::new();
    let mut byte = [0];
    while stdout.read(&mut byte).expect("stdout") == 1 && byte[0] != b'\n' {
        first.push(byte[0]);
    }
    let listening = String::from_utf8_lossy(&first).into_owned();
    let port = listening.strip_prefix("listening on 127.0.0.1:").expect(&listening);
    let mut stream = connect(format!("127.0.0.1:{port}").parse().expect("an address"));
    // Log lines for several seconds of the slow reader below: the queue
    // (4096 lines) and the pipe (64 KiB) full.
    let mut batch = Vec::new();
    for i in 0..20_000 {
        common::frame(stamp_echo::Framing::line(), format!("a slow stdout gets this line {i}").as_bytes(), &mut batch);
    }
    common::send_all_and_read_replies(&mut stream, &batch);
    drop(stream);
    // The slow reader: 512 bytes every 5 ms, about 100 KB/s (the pause
    // paces a consumer; nothing waits on it).
    let reader = std::thread::spawn(move || {
        let mut logged = Vec::new();
        let mut chunk = [0; 512];
        while let Ok(n @ 1..) = stdout.read(&mut chunk) {
            logged.extend_from_slice(&chunk[..n]);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        String::from_utf8_lossy(&logged).into_owned()
    });
    let (status, _) = terminate_within(&mut running, SAFETY_TIMEOUT);
    assert!(status.success(), "{status}");
    let logged = reader.join().expect("the reader");
    let mut errors = String::new();
    stderr.read_to_string(&mut errors).expect("stderr");
    let totals: Vec<&str> = logged.lines().chain(errors.lines()).filter(|l| l.starts_with("shut down: ")).collect();
    assert!(!totals.is_empty(), "no totals line on stdout ({} bytes) or stderr: {errors}", logged.len());
    assert!(totals.iter().all(|l| l.starts_with("shut down: 1 connection, 20000 messages,")), "{totals:?}");
    // Stdout was slow: it was still full of lines when the server stopped.
    assert!(logged.len() > 64 * 1024, "stdout took {} bytes", logged.len());
}

fn behind_a_proxy_the_log_shows_the_real_client_and_refuses_anyone_elses_header(rt: Runtime) {
    let args = ["--port", "0", "--framing", "line", "--proxy-protocol", "--trusted-proxy", "127.0.0.1/32"];
    let mut server = Server::start(rt, &args);
    let listening = server.line();
    let rest = listening.strip_prefix("listening on 127.0.0.1:").expect(&listening);
    let port = rest.strip_suffix(" (PROXY protocol from 127.0.0.1/32)").expect(&listening);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    let header = b"PROXY TCP4 192.0.2.7 127.0.0.1 56324 8080\r\n";
    let mut proxied = common::connect_from([127, 0, 0, 1], addr);
    proxied.write_all(header).expect("send");
    proxied.write_all(b"hi\n").expect("send");
    let mut reply = String::new();
    BufReader::new(&proxied).read_line(&mut reply).expect("reply");
    assert!(reply.starts_with('[') && reply.ends_with("] hi\n"), "{reply}");
    let mut forged = common::connect_from([127, 0, 0, 2], addr);
    forged.write_all(header).expect("send");
    let mut end = Vec::new();
    let _ = forged.read_to_end(&mut end);
    drop(proxied);
    let (success, rest) = server.terminate();
    assert!(success, "{rest}");
    assert!(rest.lines().any(|l| l == "...connected from: 192.0.2.7:56324"), "{rest}");
    let refused = rest.lines().find(|l| l.starts_with("...connection from 127.0.0.2:")).unwrap_or_default();
    assert!(refused.ends_with("ended: PROXY protocol header from a peer that is not a trusted proxy"), "{rest}");
}

fn refusals_are_logged_one_line_each_and_rate_limited(rt: Runtime) {
    let args = ["--port", "0", "--framing", "line", "--max-per-source", "1", "--eviction-grace", "1000"];
    let mut server = Server::start(rt, &[&args[..], &["--log-rate", "2"]].concat());
    let listening = server.line();
    let addr = listening.strip_prefix("listening on ").expect(&listening).parse().expect("an address");
    let mut held = stamp_echo::EchoClient::new(connect(addr), stamp_echo::Framing::line()).expect("line framing");
    assert_eq!(held.round_trip(b"mine").expect("served").message(), b"mine");
    for _ in 0..10 {
        // Refused at once: the server closes it unserved.
        assert_eq!(common::read_to_close(&mut connect(addr)), b"");
    }
    drop(held);
    let (success, rest) = server.terminate();
    assert!(success, "{rest}");
    let reason = "refused: its source holds 1, its max_per_source, none past the eviction grace";
    let shown = rest.lines().filter(|l| l.starts_with("...connection from 127.0.0.1:") && l.ends_with(reason)).count();
    assert_eq!(shown as u64 + not_shown(&rest, "refusals", 2), 10, "{rest}");
    assert!(rest.contains(", 10 refused"), "counted in the totals: {rest}");
    // `waiting for connection...` once at the start and once after the one
    // served, not after each refusal.
    let waiting = rest.lines().filter(|l| *l == "waiting for connection...").count();
    assert_eq!(waiting, 2, "{rest}");
}

on_both_runtimes!(
    json_log_lines_have_time_level_target_message_and_fields,
    behind_a_proxy_the_log_shows_the_real_client_and_refuses_anyone_elses_header,
    refusals_are_logged_one_line_each_and_rate_limited,
    a_descriptor_limit_below_the_cap_cannot_let_hoarders_keep_a_new_client_out,
    logs_like_the_original_and_exits_cleanly_on_sigterm,
    unix_socket_replaces_a_stale_file_and_removes_it_at_exit,
    a_stdout_nobody_reads_neither_stalls_serving_nor_stops_sigterm,
    peer_bytes_reach_the_log_escaped_one_line_each,
    a_unix_path_replaced_while_serving_is_left_alone_and_sigterm_still_stops_it,
    lines_a_blocked_stdout_missed_are_counted_once_it_moves_again,
    message_lines_over_the_rate_are_counted_not_shown,
    a_unix_peers_hostile_path_is_logged_escaped,
    a_live_server_that_never_accepts_is_reported_not_waited_for,
    the_totals_line_is_written_whatever_a_slow_stdout_does,
);

fn json_log_lines_have_time_level_target_message_and_fields(rt: Runtime) {
    let mut server = Server::start(rt, &["--port", "0", "--framing", "line", "--log-format", "json"]);
    let listening: serde_json::Value = serde_json::from_str(&server.line()).expect("a JSON line");
    let addr = listening["message"].as_str().and_then(|m| m.strip_prefix("listening on ")).expect("the address");
    let mut stream = connect(addr.parse().expect("an address"));
    stream.write_all(b"hi \x1b[2J\"json\"\n").expect("send");
    let mut reply = [0; 64];
    let n = stream.read(&mut reply).expect("reply");
    assert!(reply[..n].ends_with(b"\"json\"\n"));
    drop(stream);
    let (success, rest) = server.terminate();
    assert!(success, "{rest}");
    let lines: Vec<serde_json::Value> =
        rest.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    for line in &lines {
        assert!(line["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{line}");
        assert!(line["level"].is_string() && line["target"].is_string() && line["message"].is_string(), "{line}");
    }
    let message = lines.iter().find(|l| l["text"].is_string()).expect("a message line");
    assert_eq!(message["text"], r#"hi \x1b[2J"json""#, "escaped, then quoted by JSON: {message}");
    assert_eq!(message["bytes"], 13);
    assert_eq!(message["target"], "stamp_echo::runner");
    // Inside the library's connection span, whose fields name the peer.
    let spans = message["spans"].as_array().unwrap_or_else(|| panic!("in spans: {message}"));
    assert_eq!(spans.len(), 1, "{message}");
    assert_eq!(spans[0]["name"], "connection", "{message}");
    assert_eq!(spans[0]["peer"], message["peer"], "{message}");
    assert_eq!((&spans[0]["source"], &spans[0]["id"]), (&"127.0.0.1".into(), &message["id"]), "{message}");
    assert!(lines[0].get("spans").is_none(), "the listening line is in none: {}", lines[0]);
    let last = lines.last().expect("lines");
    assert!(last["message"].as_str().is_some_and(|m| m.starts_with("shut down: 1 connection, 1 message")), "{last}");
}
