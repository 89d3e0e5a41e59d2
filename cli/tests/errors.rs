//! Errors name what failed: the address `serve` cannot bind, the host a
//! name lookup cannot find, the address or socket path `client`, `ping` and
//! `load` cannot connect to. `Address already in use` alone does not say which.
#![cfg(unix)]

mod common;

use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;

use common::{SAFETY_TIMEOUT, stamp_echo};

/// A name no resolver finds (RFC 6761 reserves `.invalid`).
const NO_SUCH_HOST: &str = "no-such-host.invalid";

/// Runs `stamp-echo SUBCOMMAND args` with no input; its output once it
/// exits, which it must within the safety timeout (it is killed otherwise).
fn run(subcommand: &str, args: &[&str]) -> Output {
    let child = stamp_echo(subcommand)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run stamp-echo");
    let pid = child.id().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(output) = rx.recv_timeout(SAFETY_TIMEOUT) else {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("{subcommand} {args:?} did not exit");
    };
    output.expect("its output")
}

/// Runs `stamp-echo SUBCOMMAND args`, which must fail with each of `expected` in its error.
fn fails_naming(subcommand: &str, args: &[&str], expected: &[&str]) {
    let output = run(subcommand, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{subcommand} {args:?}: {stderr}");
    for text in expected {
        assert!(stderr.contains(text), "{subcommand} {args:?}: {text:?} not in {stderr:?}");
    }
}

#[test]
fn serve_names_the_address_it_cannot_bind_and_the_host_it_cannot_find() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port().to_string();
    let named = format!("stamp-echo serve: cannot bind 127.0.0.1:{port}: ");
    fails_naming("serve", &["--port", &port], &[&named, "Address already in use"]);
    fails_naming("serve", &["--port", &port, "--runtime", "tokio"], &[&named, "Address already in use"]);

    let taken = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port().to_string();
    let named = format!("stamp-echo serve: cannot bind 127.0.0.1:{port} (udp): ");
    fails_naming("serve", &["--udp", "--port", &port], &[&named, "Address already in use"]);

    let named = format!("stamp-echo serve: cannot look up {NO_SUCH_HOST}:0: ");
    fails_naming("serve", &["--host", NO_SUCH_HOST, "--port", "0"], &[&named]);
    fails_naming("serve", &["--udp", "--host", NO_SUCH_HOST, "--port", "0"], &[&named]);
}

/// A port on loopback nothing listens on: bound, then closed.
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port().to_string()
}

#[test]
fn clients_name_what_they_cannot_connect_to() {
    let port = closed_port();
    let path = std::env::temp_dir().join(format!("stamp-echo-nobody-{}.sock", std::process::id()));
    let path = path.to_str().expect("UTF-8 path");
    for sub in ["client", "ping", "load"] {
        let named = format!("stamp-echo {sub}: cannot connect to 127.0.0.1:{port}: ");
        fails_naming(sub, &["--port", &port], &[&named, "Connection refused"]);
        let named = format!("stamp-echo {sub}: cannot look up {NO_SUCH_HOST}:{port}: ");
        fails_naming(sub, &["--host", NO_SUCH_HOST, "--port", &port], &[&named]);
        fails_naming(sub, &["--unix", path], &[&format!("stamp-echo {sub}: cannot connect to {path}: ")]);
    }
    let named = format!("stamp-echo ping: cannot look up {NO_SUCH_HOST}:{port}: ");
    fails_naming("ping", &["--udp", "--host", NO_SUCH_HOST, "--port", &port], &[&named]);
}
