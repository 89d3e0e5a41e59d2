//! `stamp-echo client` as a user runs it: Ctrl-C in every mode, and what a
//! hostile server's replies look like on the terminal.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;

use common::SAFETY_TIMEOUT;
use stamp_echo::EchoServer;
use stamp_echo::testing::LocalServer;

/// The running client; killed if a test fails before it ends.
struct Client(Option<Child>, BufReader<ChildStdout>);

impl Client {
    fn start(args: &[&str]) -> Client {
        let mut child = common::stamp_echo("client")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run stamp-echo client");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Client(Some(child), stdout)
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.1.read_line(&mut line).expect("a line");
        line.trim_end_matches('\n').to_owned()
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit, up to the safety
    /// timeout: the status and the rest of stdout.
    fn interrupt(&mut self) -> (ExitStatus, String) {
        let child = self.0.take().expect("running");
        let pid = child.id().to_string();
        assert!(Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut child = child;
            let _ = tx.send(child.wait());
        });
        let Ok(status) = rx.recv_timeout(SAFETY_TIMEOUT) else {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("the client did not end on Ctrl-C");
        };
        let mut rest = String::new();
        self.1.read_to_string(&mut rest).expect("stdout");
        (status.expect("exit status"), rest)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn ctrl_c_ends_the_wait_between_probes_with_the_summary() {
    let server = LocalServer::start(EchoServer::builder().build().expect("server")).expect("start");
    let port = server.addr().port().to_string();
    // A minute between probes: only Ctrl-C can end this in time.
    let mut client = Client::start(&["--port", &port, "--count", "5", "--interval", "60"]);
    assert!(client.line().starts_with("PROBE "));
    assert!(client.line().starts_with("seq=1 "));
    let (status, rest) = client.interrupt();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.contains("1 probes sent, 1 replies, 0% lost"), "{rest}");
}

#[test]
fn ctrl_c_ends_udp_retries_with_the_summary() {
    // Nobody answers: the client would wait 60 s per attempt, 4 attempts.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("address").port().to_string();
    let mut client = Client::start(&["--udp", "--port", &port, "--count", "1", "--timeout", "60", "--retries", "3"]);
    assert!(client.line().starts_with("PROBE "));
    let mut request = [0; 64];
    silent.recv(&mut request).expect("the first attempt arrives");
    let (status, rest) = client.interrupt();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.contains("probes sent"), "{rest}");
}

#[test]
fn a_hostile_servers_stamp_and_echo_are_printed_escaped() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port().to_string();
    let fake = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut message = [0; 64];
        let n = stream.read(&mut message).expect("a message");
        // A stamp that clears the screen and rings the bell.
        let mut reply = b"[\x1b[2J\x07] ".to_vec();
        reply.extend_from_slice(&message[..n]);
        stream.write_all(&reply).expect("reply");
        let _ = stream.read(&mut message);
    });
    let mut client = Client::start(&["--port", &port, "--framing", "chunk"]);
    let mut stdin = client.0.as_mut().and_then(|c| c.stdin.take()).expect("stdin");
    stdin.write_all(b"tab\there\x1b[31m\n").expect("type a line");
    let line = client.line();
    assert_eq!(line, r"[\x1b[2J\x07] tab\there\x1b[31m");
    drop(stdin);
    let mut rest = String::new();
    client.1.read_to_string(&mut rest).expect("stdout");
    fake.join().expect("the fake server");
}
