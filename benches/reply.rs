//! The client's reply core: `cargo bench --bench reply`.
//!
//! - `reply/FRAMING/16B`: [`ReplyChecker`] sending 4096 pipelined 16-byte
//!   messages and checking their replies (our server's, fed back in 64 KiB
//!   reads); messages/s.
//! - `reply_size/KIND/SIZE`: one message of SIZE bytes (16 B to 64 KiB) sent
//!   and its chunk-framing reply checked, as the server answers it in
//!   1024-byte reads; in bytes/s, so a flat rate across sizes is linear
//!   growth. KIND `plain` is letters; `brackets` is a message of `[` only,
//!   the case where every byte may start a header.
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use stamp_echo::reply::{Event, ReplyChecker};
use stamp_echo::stamp::Ctime;
use stamp_echo::{Framing, Responder};

const NOW: u64 = 1_700_000_000;

/// Sends `messages` through `checker` (framed into `wire`), and returns what
/// our server answers, reading what was sent `read` bytes at a time.
fn replies(framing: Framing, messages: &[Vec<u8>], read: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    for m in messages {
        framing.encode_message(m, &mut wire).expect("sendable");
    }
    let mut responder = Responder::new(framing, Arc::new(Ctime::utc()));
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW);
    let mut out = Vec::new();
    for chunk in wire.chunks(read) {
        responder.receive(chunk, now, &mut out).expect("served");
    }
    out
}

/// One round: send every message, check every reply, in `read`-byte reads.
fn round(checker: &mut ReplyChecker, messages: &[Vec<u8>], wire: &mut Vec<u8>, replies: &[u8], read: usize) -> u64 {
    wire.clear();
    for m in messages {
        checker.send(m, wire).expect("sendable");
    }
    let mut answered = 0;
    for mut input in replies.chunks(read) {
        loop {
            let (consumed, event) = checker.receive(input).expect("a correct reply");
            input = &input[consumed..];
            match event {
                Some(Event::Reply { .. }) => answered += 1,
                Some(_) => {}
                None => break,
            }
        }
    }
    answered
}

fn pipelined(c: &mut Criterion) {
    let mut group = c.benchmark_group("reply");
    let messages: Vec<Vec<u8>> = (0..4096).map(|i| format!("message {i:08}").into_bytes()).collect();
    for (framing, name) in
        [(Framing::chunk(), "chunk"), (Framing::line(), "line"), (Framing::length_prefixed(), "length")]
    {
        let replies = replies(framing, &messages, 1024);
        let mut checker = ReplyChecker::new(framing);
        let mut wire = Vec::new();
        group.throughput(Throughput::Elements(messages.len() as u64));
        group.bench_function(BenchmarkId::new(name, "16B"), |b| {
            b.iter(|| black_box(round(&mut checker, &messages, &mut wire, &replies, 64 * 1024)))
        });
    }
    group.finish();
}

fn sizes(c: &mut Criterion) {
    let mut group = c.benchmark_group("reply_size");
    for (kind, byte) in [("plain", b'x'), ("brackets", b'[')] {
        for (size, size_name) in [(16, "16B"), (256, "256B"), (4096, "4KiB"), (64 * 1024, "64KiB")] {
            let messages = vec![vec![byte; size]];
            let replies = replies(Framing::chunk(), &messages, 1024);
            let mut checker = ReplyChecker::new(Framing::chunk());
            let mut wire = Vec::new();
            group.throughput(Throughput::Bytes(replies.len() as u64));
            group.bench_function(BenchmarkId::new(kind, size_name), |b| {
                b.iter(|| black_box(round(&mut checker, &messages, &mut wire, &replies, 64 * 1024)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, pipelined, sizes);
criterion_main!(benches);
