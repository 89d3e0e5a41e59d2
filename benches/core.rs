//! The I/O-free core and the stamps: `cargo bench --bench core`.
//!
//! - `core/FRAMING/SIZE`: [`Responder::receive`] answering a stream of SIZE-byte
//!   messages fed in 8 KiB reads (chunk framing: one read per message), the
//!   way `EchoServer` feeds it; messages/s.
//! - `core_bytes/FRAMING`: the same with 64 KiB messages, in bytes/s.
//! - `stamp/NAME`: formatting one stamp with each built-in formatter.
//! - `reply_to/NAME`: [`Responder::reply_to`] answering one 16-byte datagram
//!   per call, the clock advancing 1 us per call.
//! - `stamp_reuse/NAME`: the whole cost of answering one 16-byte line per
//!   call, the clock advancing 1 us per call, so ctime's text is reused
//!   within a second and the sub-second stamps are formatted every time.
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use stamp_echo::stamp::{Ctime, Rfc3339, Stamp, UnixTime};
use stamp_echo::{Framing, Responder};

const NOW: u64 = 1_700_000_000;
const SIZES: [(usize, &str); 3] = [(16, "16B"), (1024, "1KiB"), (64 * 1024, "64KiB")];

fn framings(size: usize) -> [(Framing, &'static str); 3] {
    [
        (Framing::Chunk { buffer_size: size.max(Framing::DEFAULT_BUFFER_SIZE) }, "chunk"),
        (Framing::line(), "line"),
        (Framing::length_prefixed(), "length"),
    ]
}

/// About 256 KiB of SIZE-byte messages, cut into the reads a server would make.
fn reads(framing: Framing, size: usize) -> (Vec<Vec<u8>>, u64) {
    let count = (256 * 1024 / size).max(4);
    let message = vec![b'x'; size];
    let mut stream = Vec::new();
    for _ in 0..count {
        framing.encode_message(&message, &mut stream).expect("sendable");
    }
    let read = if let Framing::Chunk { .. } = framing { size } else { 8 * 1024 };
    (stream.chunks(read).map(<[u8]>::to_vec).collect(), count as u64)
}

fn answer_all(responder: &mut Responder, reads: &[Vec<u8>], out: &mut Vec<u8>) {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW);
    for read in reads {
        out.clear();
        black_box(responder.receive(read, now, out).ok());
    }
}

fn core(c: &mut Criterion) {
    let mut group = c.benchmark_group("core");
    for (size, size_name) in SIZES {
        for (framing, name) in framings(size) {
            let (reads, count) = reads(framing, size);
            let mut responder = Responder::new(framing, Arc::new(Ctime::utc()));
            let mut out = Vec::new();
            group.throughput(Throughput::Elements(count));
            group.bench_function(BenchmarkId::new(name, size_name), |b| {
                b.iter(|| answer_all(&mut responder, &reads, &mut out))
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("core_bytes");
    for (framing, name) in framings(64 * 1024) {
        let (reads, _) = reads(framing, 64 * 1024);
        let bytes = reads.iter().map(Vec::len).sum::<usize>() as u64;
        let mut responder = Responder::new(framing, Arc::new(Ctime::utc()));
        let mut out = Vec::new();
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(BenchmarkId::new(name, "64KiB"), |b| {
            b.iter(|| answer_all(&mut responder, &reads, &mut out))
        });
    }
    group.finish();
}

fn stamps() -> [(&'static str, Arc<dyn Stamp>); 4] {
    [
        ("ctime-local", Arc::new(Ctime::local_or_utc().0)),
        ("ctime-utc", Arc::new(Ctime::utc())),
        ("rfc3339", Arc::new(Rfc3339)),
        ("unix", Arc::new(UnixTime)),
    ]
}

fn stamping(c: &mut Criterion) {
    let mut group = c.benchmark_group("stamp");
    group.throughput(Throughput::Elements(1));
    for (name, stamp) in stamps() {
        let mut text = String::with_capacity(64);
        let mut micros = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                micros += 1;
                text.clear();
                stamp.write_stamp(
                    SystemTime::UNIX_EPOCH + Duration::new(NOW, 0) + Duration::from_micros(micros),
                    &mut text,
                );
                black_box(text.len())
            })
        });
    }
    group.finish();

    per_call(c, "reply_to", Framing::chunk(), |r, now, out| r.reply_to(b"0123456789abcdef", now, out).is_ok());
    per_call(c, "stamp_reuse", Framing::line(), |r, now, out| r.receive(b"0123456789abcdef\n", now, out).is_ok());
}

/// A group answering one message per call with each stamp, the clock
/// advancing 1 us per call.
fn per_call(
    c: &mut Criterion,
    name: &str,
    framing: Framing,
    answer: fn(&mut Responder, SystemTime, &mut Vec<u8>) -> bool,
) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    for (name, stamp) in stamps() {
        let mut responder = Responder::new(framing, stamp);
        let mut out = Vec::with_capacity(256);
        let mut micros = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                micros += 1;
                out.clear();
                let now = SystemTime::UNIX_EPOCH + Duration::new(NOW, 0) + Duration::from_micros(micros);
                black_box(answer(&mut responder, now, &mut out))
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    // Short runs: the machine is small and shared. Compare within one run.
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2)).sample_size(20)
}

criterion_group! { name = benches; config = config(); targets = core, stamping }
criterion_main!(benches);
