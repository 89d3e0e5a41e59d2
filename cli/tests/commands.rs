//! Every subcommand of `stamp-echo` over loopback on port 0: ping, load and
//! their JSON, socket activation, inetd mode, the refused flag combinations,
//! the version, completions and the man page.

mod common;

#[cfg(unix)]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::UdpSocket;
#[cfg(unix)]
use std::process::Stdio;
use std::process::{Command, Output};

#[cfg(unix)]
use common::SAFETY_TIMEOUT;
use common::{output, stamp_echo};
use stamp_echo::stamp::UnixTime;
use stamp_echo::testing::LocalServer;
use stamp_echo::{EchoServer, Framing};

/// A line-framed server stamping Unix time with microseconds, on 127.0.0.1:0.
fn unix_stamped_server() -> LocalServer {
    let server = EchoServer::builder().framing(Framing::line()).stamp(UnixTime).build().expect("a server");
    LocalServer::start(server).expect("a local server")
}

fn json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn ping_prints_a_line_per_reply_and_a_summary() {
    let server = unix_stamped_server();
    let port = server.addr().port().to_string();
    let out = output(stamp_echo("ping").args(["-p", &port, "-f", "line", "-S", "unix", "-c", "3", "-i", "1ms"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with(&format!("PROBE 127.0.0.1:{port} (tcp), unix stamps")), "{stdout}");
    for (seq, line) in (1..=3).zip(&lines[1..4]) {
        assert!(line.starts_with(&format!("seq={seq} bytes=")) && line.contains(" offset="), "{stdout}");
    }
    assert!(stdout.contains("3 probes sent, 3 replies, 0% lost\nrtt min/median/max = "), "{stdout}");
}

#[test]
fn ping_json_has_the_summary_and_every_probe() {
    let server = unix_stamped_server();
    let port = server.addr().port().to_string();
    let out =
        output(stamp_echo("ping").args(["-p", &port, "-f", "line", "-S", "unix", "-c", "2", "-i", "0", "--json"]));
    assert!(out.status.success());
    let value = json(&out);
    assert_eq!(value["sent"], 2);
    assert_eq!(value["received"], 2);
    assert_eq!(value["lost_percent"], 0.0);
    assert_eq!(value["stamp"], "unix");
    let rtt = &value["rtt_ms"];
    let (min, median, max) = (rtt["min"].as_f64(), rtt["median"].as_f64(), rtt["max"].as_f64());
    assert!(matches!((min, median, max), (Some(a), Some(b), Some(c)) if a <= b && b <= c), "{value}");
    assert!(value["offset_ms"]["median"].is_f64() && value["offset_ms"]["best_bound"].is_f64(), "{value}");
    let probes = value["probes"].as_array().expect("probes");
    assert_eq!(probes.len(), 2);
    assert_eq!(probes[1]["seq"], 2);
    assert!(probes[0]["bytes"].as_u64().is_some_and(|b| b > "ping 1".len() as u64), "{value}");
}

#[test]
fn ping_with_nothing_back_exits_non_zero() {
    // Nobody answers: each probe is lost.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("address").port().to_string();
    let args = ["--udp", "-p", &port, "-c", "2", "-i", "0", "-t", "20ms", "--retries", "0"];
    let out = output(stamp_echo("ping").args(args));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("2 probes sent, 0 replies, 100% lost"), "{stdout}");
    let json_out = output(stamp_echo("ping").args(args).arg("--json"));
    assert_eq!(json_out.status.code(), Some(1));
    let value = json(&json_out);
    assert_eq!((value["received"].as_u64(), value["lost_percent"].as_f64()), (Some(0), Some(100.0)));
    assert!(value["rtt_ms"].is_null());
}

#[test]
fn load_checks_every_reply_and_reports_percentiles() {
    let server = unix_stamped_server();
    let port = server.addr().port().to_string();
    let out = output(stamp_echo("load").args(["-p", &port, "-f", "line", "-c", "2", "-n", "300", "-w", "8"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.starts_with("600 replies checked on 2 connections in "), "{stdout}");
    assert!(stdout.contains("\nlatency: p50 ") && stdout.contains(" p99.99 "), "{stdout}");
    let result = stdout.lines().last().unwrap_or_default();
    assert!(result.starts_with("result: messages=600 failed_connections=0 "), "{stdout}");
}

#[test]
fn load_json_and_open_loop() {
    let server = unix_stamped_server();
    let port = server.addr().port().to_string();
    let out =
        output(stamp_echo("load").args(["-p", &port, "-f", "line", "-c", "2", "-n", "50", "--rate", "2000", "--json"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let value = json(&out);
    assert_eq!(value["messages"], 100);
    assert_eq!(value["connections"], 2);
    assert_eq!(value["failed_connections"], 0);
    assert_eq!(value["rate"], 2000);
    let latency = &value["latency_us"];
    let p50 = latency["p50"].as_f64().expect("p50");
    let p99 = latency["p99"].as_f64().expect("p99");
    let max = latency["max"].as_f64().expect("max");
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{value}");
    assert!(latency["p99.9"].is_f64() && latency["mean"].is_f64(), "{value}");
}

#[test]
fn meaningless_combinations_are_refused() {
    for (sub, flags, named) in [
        ("client", &["--interval", "1"][..], "--count <N>"),
        ("client", &["--retries", "1"], "--udp"),
        ("client", &["--udp", "--framing", "line"], "'--udp' cannot be used with '--framing"),
        ("client", &["--unix", "/tmp/x", "--host", "localhost"], "'--unix <PATH>' cannot be used with '--host"),
        ("ping", &["--retries", "1"], "--udp"),
        ("ping", &["--count", "0"], "'0' for '--count"),
        ("ping", &["--timeout", "0"], "'0' for '--timeout"),
        ("load", &["--framing", "chunk", "--max-frame", "9"], "--max-frame is the limit of length framing"),
        ("load", &["--connections", "0"], "'0' for '--connections"),
        ("load", &["--timeout", "soon"], "'soon' for '--timeout"),
    ] {
        let out = output(stamp_echo(sub).args(flags));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{sub} {flags:?}: {stderr}");
        assert!(stderr.contains(named), "{sub} {flags:?}: {stderr}");
    }
}

#[test]
fn version_help_completions_and_man_page() {
    for flag in ["-V", "--version"] {
        let out = output(Command::new(common::binary()).arg(flag));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("stamp-echo {}", env!("CARGO_PKG_VERSION")));
    }
    // Ranges in the help come from the library's bounds.
    let help = output(stamp_echo("serve").arg("--help"));
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains(&stamp_echo::Limits::MAX_CONNECTIONS.to_string()), "{help}");
    assert!(help.contains("0 (none) or 1ms to 30days"), "{help}");
    let completions = output(stamp_echo("completions").arg("bash"));
    let script = String::from_utf8_lossy(&completions.stdout);
    assert!(completions.status.success() && script.contains("--max-connections") && script.contains("serve"));
    let man = output(&mut stamp_echo("man"));
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(man.status.success() && page.starts_with(".ie") || page.contains(".TH"), "{page}");
    assert!(page.contains("stamp\\-echo") || page.contains("stamp-echo"), "{page}");
}

#[cfg(unix)]
#[test]
fn inetd_mode_serves_one_connection_on_stdin_and_stdout() {
    let mut child = stamp_echo("serve")
        .args(["--inetd", "-f", "line", "-S", "unix"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"hi\nthere\n").expect("send");
    drop(stdin);
    let mut stdout = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("replies");
    let mut stderr = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("log");
    assert!(child.wait().expect("status").success(), "{stderr}");
    let replies: Vec<&str> = stdout.lines().collect();
    assert_eq!(replies.len(), 2, "{stdout}");
    for (reply, message) in replies.iter().zip(["hi", "there"]) {
        let (stamp, echoed) = reply.strip_prefix('[').and_then(|r| r.split_once("] ")).expect(reply);
        assert!(UnixTime::parse(stamp).is_some() && echoed == message, "{stdout}");
    }
    assert!(stderr.contains("served: 2 messages, 9 bytes in"), "{stderr}");
}

/// `systemd-socket-activate` listening on a Unix socket of its own, handing
/// it to `stamp-echo serve` (without address flags, or with `--listen-fd 3`).
#[cfg(unix)]
fn socket_activation(extra: &[&str]) {
    let Ok(activate) = which("systemd-socket-activate") else {
        assert!(std::env::var_os("CI").is_none(), "systemd-socket-activate is missing under CI");
        eprintln!("SKIPPED socket activation: systemd-socket-activate is not installed");
        return;
    };
    let dir = std::env::temp_dir().join(format!("stamp-echo-activate-{}-{}", std::process::id(), extra.len()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).expect("a temporary directory");
    let path = dir.join("echo.sock");
    let path_arg = path.to_str().expect("UTF-8 path");
    let mut child = Command::new(activate)
        .args(["-l", path_arg, common::binary(), "serve", "-f", "line"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run systemd-socket-activate");
    // Ready once it says it listens; it starts the server at the first connection.
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("a line");
    assert!(line.starts_with("Listening on "), "{line}");
    let stream = std::os::unix::net::UnixStream::connect(&path).expect("connect");
    stream.set_read_timeout(Some(SAFETY_TIMEOUT)).expect("timeout");
    let mut client = stamp_echo::EchoClient::new(stream, Framing::line()).expect("client");
    assert_eq!(client.round_trip(b"activated").expect("a reply").message(), b"activated");
    drop(client);
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("the first log line");
    assert_eq!(first.trim_end(), format!("listening on {path_arg}"));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("the log");
    assert!(child.wait().expect("status").success(), "{rest}");
    assert!(rest.lines().last().unwrap_or_default().starts_with("shut down: 1 connection, 1 message"), "{rest}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn serves_a_socket_handed_over_by_systemd() {
    socket_activation(&[]);
}

#[cfg(unix)]
#[test]
fn serves_the_descriptor_named_by_listen_fd() {
    socket_activation(&["--listen-fd", "3"]);
}

#[test]
fn listen_fd_without_a_socket_handed_over_is_refused() {
    let out = output(stamp_echo("serve").args(["--listen-fd", "3"]).env_remove("LISTEN_FDS"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--listen-fd 3: no such socket was handed over"), "{stderr}");
}

/// The path of `program` on PATH.
#[cfg(unix)]
fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file()).ok_or(())
}

#[test]
fn the_command_has_the_librarys_version() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml")).expect("the library's manifest");
    let version = manifest.lines().find_map(|l| l.strip_prefix("version = ")).expect("a version line");
    assert_eq!(version.trim_matches('"'), env!("CARGO_PKG_VERSION"));
    let cli =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).expect("the command's manifest");
    let requirement = format!("version = \"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(cli.lines().filter(|l| l.starts_with("stamp-echo = ")).all(|l| l.contains(&requirement)), "{cli}");
}
