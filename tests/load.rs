//! Hundreds of clients at once, each checking every reply byte for byte:
//! every complete message gets exactly one reply, in order.

mod common;

use std::sync::Barrier;
use std::thread;

use common::{
    FIXED_CTIME, SAFETY_TIMEOUT, connect, fixed_reply, fixed_server, send_all_and_read_replies, sent_ending, start,
};
use stamp_echo::{EchoClient, Framing, Limits};

const CLIENTS: usize = 300;
const MESSAGES: usize = 40;

/// Message `n` of client `c`: from 1 to 3000 characters, some of them
/// multi-byte (whole: in chunk framing, a message ending inside a character
/// would wait for the rest).
fn message(c: usize, n: usize) -> Vec<u8> {
    let len = 1 + (c * 7919 + n * 104_729) % 3000;
    let text = format!("client {c} message {n} 你好 ");
    text.chars().cycle().take(len).collect::<String>().into_bytes()
}

#[test]
fn hundreds_of_concurrent_clients_get_every_reply_once_in_order() {
    let framings = [Framing::chunk(), Framing::line(), Framing::length_prefixed()];
    let servers: Vec<_> = framings.iter().map(|&f| start(fixed_server(f), Limits::default())).collect();
    let addrs: Vec<_> = servers.iter().map(|(_, addr, _)| *addr).collect();
    let all_connected = Barrier::new(CLIENTS);
    let sent_bytes: Vec<u64> = thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (framing, addr) = (framings[c % 3], addrs[c % 3]);
                let all_connected = &all_connected;
                scope.spawn(move || {
                    let stream = connect(addr);
                    all_connected.wait();
                    match framing {
                        Framing::Chunk { .. } => chunk_client(c, EchoClient::new(stream, framing).expect("client")),
                        _ => pipelining_client(c, framing, stream),
                    }
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().expect("client")).collect()
    });
    for (i, (handle, _, _)) in servers.into_iter().enumerate() {
        let totals = handle.shutdown(SAFETY_TIMEOUT);
        let sent: u64 = sent_bytes.iter().skip(i).step_by(3).sum();
        assert_eq!((totals.connections, totals.errors, totals.bytes_in), ((CLIENTS / 3) as u64, 0, sent));
        if i > 0 {
            assert_eq!(totals.messages, (CLIENTS / 3 * MESSAGES) as u64, "{}", framings[i]);
        }
    }
}

/// Sends every message at once, then checks the whole reply stream, which
/// must end right after the last reply.
fn pipelining_client(c: usize, framing: Framing, mut stream: std::net::TcpStream) -> u64 {
    let mut sent = Vec::new();
    let mut expected = Vec::new();
    for n in 0..MESSAGES {
        let message = message(c, n);
        common::frame(framing, &message, &mut sent);
        expected.extend(fixed_reply(framing, &message, sent_ending(framing)));
    }
    let got = send_all_and_read_replies(&mut stream, &sent);
    assert!(got == expected, "client {c} ({framing}): replies differ from byte {}", first_difference(&got, &expected));
    sent.len() as u64
}

/// Chunk framing has no message boundaries: one message per round trip, the
/// echo reassembled and checked by `EchoClient`, every piece stamped.
fn chunk_client(c: usize, mut client: EchoClient<std::net::TcpStream>) -> u64 {
    let mut sent = 0;
    for n in 0..MESSAGES {
        let message = message(c, n);
        let reply = client.round_trip(&message).expect("the echo of what was sent");
        assert!(reply.pieces().iter().all(|p| p.stamp == FIXED_CTIME));
        sent += message.len() as u64;
    }
    sent
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()))
}
