//! The blocking drivers: `cargo bench --bench server`.
//!
//! - `in_memory/FRAMING`: [`EchoServer::serve`] over an in-memory stream
//!   ([`Duplex`]) holding 4096 16-byte messages; messages/s.
//! - `tcp/ping_pong`: [`EchoClient::round_trip`] against an [`EchoServer`] over
//!   loopback TCP, one message in flight; round trips/s.
//! - `tcp/pipelined`: [`load::drive`] with 256 messages in flight on one
//!   connection, every reply checked; messages/s.
use std::hint::black_box;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicU64;
use std::thread;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use stamp_echo::load::{self, Workload};
use stamp_echo::stamp::Ctime;
use stamp_echo::testing::Duplex;
use stamp_echo::{EchoClient, EchoServer, Framing};

const MESSAGES: usize = 4096;

fn in_memory(c: &mut Criterion) {
    let mut group = c.benchmark_group("in_memory");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    for (framing, name) in [(Framing::line(), "line"), (Framing::length_prefixed(), "length")] {
        let server = EchoServer::builder().framing(framing).stamp(Ctime::utc()).build().expect("config");
        let mut input = Vec::new();
        for _ in 0..MESSAGES {
            framing.encode_message(b"0123456789abcdef", &mut input).expect("sendable");
        }
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || Duplex::new(input.clone()),
                |stream| black_box(server.serve(stream).ok()),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// A server on a loopback port, a thread per connection; returns a connected stream.
fn connect() -> TcpStream {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = EchoServer::builder().framing(Framing::line()).stamp(Ctime::utc()).build().expect("config");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let server = server.clone();
            let _ = stream.set_nodelay(true);
            thread::spawn(move || server.serve(&stream));
        }
    });
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

fn tcp(c: &mut Criterion) {
    let mut group = c.benchmark_group("tcp");
    group.throughput(Throughput::Elements(1));
    let mut client = EchoClient::new(connect(), Framing::line()).expect("client");
    group.bench_function("ping_pong", |b| b.iter(|| black_box(client.round_trip(b"0123456789abcdef").ok())));

    const BATCH: u64 = 10_000;
    group.throughput(Throughput::Elements(BATCH));
    let stream = connect();
    let progress = AtomicU64::new(0);
    group.bench_function("pipelined", |b| {
        b.iter_custom(|iters| {
            let workload = Workload::new(iters * BATCH, 16, 256);
            load::drive(&stream, Framing::line(), workload, &progress, |_| {}).expect("checked replies").elapsed
        })
    });
    group.finish();
}

fn config() -> Criterion {
    // Short runs: the machine is small and shared. Compare within one run.
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2)).sample_size(20)
}

criterion_group! { name = benches; config = config(); targets = in_memory, tcp }
criterion_main!(benches);
