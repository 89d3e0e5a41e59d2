//! The examples' errors name what failed: the address a server cannot bind,
//! the host a name lookup cannot find, the address or socket path a client
//! cannot connect to. `Address already in use` alone does not say which.
//!
//! It runs the binaries cargo builds beside the tests (`cargo test` builds
//! the examples): target/<profile>/examples/{server,client,loadgen}.
#![cfg(unix)]

mod common;

use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;

use common::SAFETY_TIMEOUT;

/// A name no resolver finds (RFC 6761 reserves `.invalid`).
const NO_SUCH_HOST: &str = "no-such-host.invalid";

/// Runs example `name` with `args` and no input; its output once it exits,
/// which it must within the safety timeout (it is killed otherwise).
fn run(name: &str, args: &[&str]) -> Output {
    let child = Command::new(common::example_binary(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the example");
    let pid = child.id().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(output) = rx.recv_timeout(SAFETY_TIMEOUT) else {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("{name} {args:?} did not exit");
    };
    output.expect("its output")
}

/// Runs example `name`, which must fail with `expected` in its error.
fn fails_naming(name: &str, args: &[&str], expected: &[&str]) {
    let output = run(name, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{name} {args:?}: {stderr}");
    for text in expected {
        assert!(stderr.contains(text), "{name} {args:?}: {text:?} not in {stderr:?}");
    }
}

#[test]
fn the_server_names_the_address_it_cannot_bind_and_the_host_it_cannot_find() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port().to_string();
    let named = format!("server: cannot bind 127.0.0.1:{port}: ");
    fails_naming("server", &["--port", &port], &[&named, "Address already in use"]);
    fails_naming("server", &["--port", &port, "--runtime", "tokio"], &[&named, "Address already in use"]);

    let taken = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port().to_string();
    let named = format!("server: cannot bind 127.0.0.1:{port} (udp): ");
    fails_naming("server", &["--udp", "--port", &port], &[&named, "Address already in use"]);

    let named = format!("server: cannot look up {NO_SUCH_HOST}:0: ");
    fails_naming("server", &["--host", NO_SUCH_HOST, "--port", "0"], &[&named]);
}

/// A port on loopback nothing listens on: bound, then closed.
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port().to_string()
}

#[test]
fn the_load_generator_names_what_it_cannot_connect_to() {
    let port = closed_port();
    let named = format!("loadgen: cannot connect to 127.0.0.1:{port}: ");
    fails_naming("loadgen", &["--port", &port], &[&named, "Connection refused"]);
    let named = format!("loadgen: cannot look up {NO_SUCH_HOST}:{port}: ");
    fails_naming("loadgen", &["--host", NO_SUCH_HOST, "--port", &port], &[&named]);
    let path = std::env::temp_dir().join(format!("stamp-echo-nobody-{}.sock", std::process::id()));
    let path = path.to_str().expect("UTF-8 path");
    fails_naming("loadgen", &["--unix", path], &[&format!("loadgen: cannot connect to {path}: ")]);
}

#[test]
fn the_client_names_what_it_cannot_connect_to() {
    let port = closed_port();
    let named = format!("error: cannot connect to 127.0.0.1:{port} (tcp): ");
    fails_naming("client", &["--port", &port], &[&named, "Connection refused"]);
    let named = format!("error: cannot connect to {NO_SUCH_HOST}:{port} (tcp): ");
    fails_naming("client", &["--host", NO_SUCH_HOST, "--port", &port], &[&named]);
}
