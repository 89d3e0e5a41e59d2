//! No heap allocation per message in steady state, counted by a counting
//! global allocator (`allocation-counter`, which counts this thread only).
//!
//! This file is its own test binary, so the counting allocator is installed
//! here and nowhere else.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use allocation_counter::measure;
use stamp_echo::framing::Framing;
use stamp_echo::load::Checker;
use stamp_echo::protocol::Responder;
use stamp_echo::stamp::{Ctime, Rfc3339, Stamp, UnixTime};
use stamp_echo::{EchoServer, Error, Summary};

fn stamps() -> Vec<(&'static str, Arc<dyn Stamp>)> {
    vec![
        ("ctime-local", Arc::new(Ctime::local_or_utc().0)),
        ("ctime-utc", Arc::new(Ctime::utc())),
        ("rfc3339", Arc::new(Rfc3339)),
        ("unix", Arc::new(UnixTime)),
    ]
}

const FRAMINGS: [Framing; 3] = [Framing::chunk(), Framing::line(), Framing::length_prefixed()];

/// Reads of 16-byte messages, with the last message of each read split
/// across two reads (so the decoders' partial-message paths run too).
fn reads(framing: Framing, messages: usize) -> Vec<Vec<u8>> {
    let mut stream = Vec::new();
    for i in 0..messages {
        framing.encode_message(format!("message {i:08}").as_bytes(), &mut stream).expect("sendable");
    }
    // In chunk framing every read is one message anyway.
    let piece = if let Framing::Chunk { .. } = framing { 16 } else { 16 * 7 + 3 };
    stream.chunks(piece).map(<[u8]>::to_vec).collect()
}

#[test]
fn the_core_allocates_nothing_per_message_in_steady_state() {
    for framing in FRAMINGS {
        for (name, stamp) in stamps() {
            let mut responder = Responder::new(framing, stamp);
            let reads = reads(framing, 2_000);
            let mut out = Vec::new();
            let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
            let mut run = |reads: &[Vec<u8>], offset: usize| {
                for (i, read) in reads.iter().enumerate() {
                    // A new second every 100 reads, a new microsecond every read.
                    let now = start + Duration::from_micros(10_000 * (offset + i) as u64 + 1);
                    out.clear();
                    responder.receive(read, now, &mut out).expect("valid input");
                }
            };
            // Warm up: buffers reach their working size.
            run(&reads[..100], 0);
            let info = measure(|| run(&reads[100..], 100));
            assert_eq!(info.count_total, 0, "{framing} with {name}: {info:?}");
            assert!(responder.summary().messages >= 1_900, "{framing} with {name}");
        }
    }
}

/// Replies stream: a message far larger than a read allocates nothing either,
/// and the reply buffer stays at one read's worth (it would have to grow to
/// the whole reply if anything were buffered).
#[test]
fn streaming_large_messages_allocates_nothing() {
    for framing in [Framing::line().with_limit(1 << 20), Framing::length_prefixed()] {
        let mut responder = Responder::new(framing, Arc::new(Ctime::utc()));
        let mut stream = Vec::new();
        for _ in 0..8 {
            framing.encode_message(&[b'x'; 1 << 20], &mut stream).expect("sendable");
        }
        let reads: Vec<&[u8]> = stream.chunks(8 * 1024).collect();
        let mut out = Vec::with_capacity(8 * 1024 + 64);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut run = |reads: &[&[u8]]| {
            for read in reads {
                out.clear();
                responder.receive(read, now, &mut out).expect("valid input");
            }
        };
        run(&reads[..10]);
        let info = measure(|| run(&reads[10..]));
        assert_eq!(info.count_total, 0, "{framing}: {info:?}");
        assert_eq!(responder.summary().messages, 8, "{framing}");
        assert_eq!(out.capacity(), 8 * 1024 + 64, "{framing}: the reply buffer grew");
    }
}

/// `Responder::reply_to`, the datagram entry point, allocates nothing per message.
#[test]
fn reply_to_allocates_nothing_per_message() {
    for (name, stamp) in stamps() {
        let mut responder = Responder::new(Framing::chunk(), stamp);
        let mut out = Vec::new();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut run = |from: u64, to: u64| {
            for i in from..to {
                out.clear();
                // A new second every 100 messages, a new microsecond every message.
                responder
                    .reply_to(b"a datagram", start + Duration::from_micros(10_000 * i + 1), &mut out)
                    .expect("valid");
            }
        };
        run(0, 100);
        let info = measure(|| run(100, 2_000));
        assert_eq!(info.count_total, 0, "{name}: {info:?}");
    }
}

/// A stream that replays the same input `rounds` times and discards what is
/// written, without allocating.
struct Replay<'a> {
    input: &'a [u8],
    at: usize,
    rounds: usize,
    written: usize,
}

impl Read for Replay<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.input.len() {
            if self.rounds == 0 {
                return Ok(0);
            }
            self.rounds -= 1;
            self.at = 0;
        }
        let n = buf.len().min(self.input.len() - self.at).min(1000);
        buf[..n].copy_from_slice(&self.input[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Write for Replay<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Serves connections of 100 messages replayed 100 and 1,000 times with
/// `serve` in every framing, and checks both make exactly as many
/// allocations (after a warm-up connection: per-thread buffers, once).
/// Both are long enough for the tokio driver to yield to other tasks (its
/// budget per poll): the runtime's list of yielded tasks is allocated once
/// per `block_on` (per worker thread in a runner), here per connection.
fn assert_allocations_per_connection(serve: impl Fn(&EchoServer, &mut Replay<'_>) -> Result<Summary, Error>) {
    for framing in FRAMINGS {
        let server = EchoServer::builder().framing(framing).stamp(Ctime::utc()).build().expect("valid config");
        let mut input = Vec::new();
        for i in 0..100 {
            framing.encode_message(format!("message {i:08}").as_bytes(), &mut input).expect("sendable");
        }
        let allocations = |rounds: usize| {
            let mut stream = Replay { input: &input, at: input.len(), rounds, written: 0 };
            let mut summary = None;
            let info = measure(|| summary = Some(serve(&server, &mut stream)));
            let summary = summary.expect("ran").expect("served");
            assert_eq!(summary.bytes_in, (input.len() * rounds) as u64, "{framing}");
            assert_eq!(stream.written as u64, summary.bytes_out);
            info.count_total
        };
        allocations(100);
        let few = allocations(100);
        let many = allocations(1_000);
        assert_eq!(few, many, "{framing}: allocations grow with the number of messages");
    }
}

/// `serve` allocates per connection (its buffers), never per message: a
/// connection of 100 times more messages makes exactly as many allocations.
#[test]
fn serving_a_connection_allocates_per_connection_not_per_message() {
    assert_allocations_per_connection(|server, stream| server.serve(stream));
}

/// The load generator's reply checker keeps up without allocating either.
#[test]
fn the_reply_checker_allocates_nothing_per_reply_in_steady_state() {
    for framing in FRAMINGS {
        let mut checker = Checker::new(framing);
        // The latencies, as `load::drive` hands them out: a sum and a count.
        let mut latencies = (Duration::ZERO, 0u64);
        let mut responder = Responder::new(framing, Arc::new(Ctime::utc()));
        let now = SystemTime::UNIX_EPOCH;
        let (mut wire, mut replies) = (Vec::new(), Vec::new());
        let mut round = |checker: &mut Checker<u64>, latencies: &mut (Duration, u64)| -> Result<usize, Error> {
            wire.clear();
            replies.clear();
            for i in 0..50u64 {
                checker.send(b"0123456789abcdef", i, &mut wire)?;
            }
            responder.receive(&wire, now, &mut replies)?;
            let mut answered = 0;
            // Replies arrive in uneven pieces.
            for piece in replies.chunks(37) {
                answered += checker.receive(piece, |tag| {
                    latencies.0 += Duration::from_nanos(tag);
                    latencies.1 += 1;
                })?;
            }
            Ok(answered)
        };
        for _ in 0..3 {
            assert_eq!(round(&mut checker, &mut latencies).ok(), Some(50), "{framing}");
        }
        let info = measure(|| {
            for _ in 0..100 {
                assert_eq!(round(&mut checker, &mut latencies).ok(), Some(50), "{framing}");
            }
        });
        assert_eq!(info.count_total, 0, "{framing}: {info:?}");
        assert_eq!(latencies.1, 103 * 50);
    }
}

/// The async driver, under the runner's deadlines, allocates per connection
/// (its protocol state, its timer), never per message either.
#[test]
fn serving_a_connection_on_tokio_allocates_per_connection_not_per_message() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let limits = stamp_echo::Limits::default();
    assert_allocations_per_connection(|server, stream| {
        let stream = stamp_echo::testing::Ready(stream);
        runtime.block_on(stamp_echo::tokio::serve_with_limits(server, stream, &limits, ()))
    });
}

/// The tokio codecs: `ServerCodec` allocates nothing per read in steady state
/// (its replies are split off a buffer whose room comes back once they are
/// written), `ClientCodec` nothing per message encoded, and per reply decoded
/// only the `Reply`'s own: its message, its list of pieces, a stamp per piece.
#[test]
fn the_codecs_allocate_nothing_per_message_beyond_the_reply() {
    use stamp_echo::tokio::{ClientCodec, ServerCodec};
    use tokio_util::bytes::BytesMut;
    use tokio_util::codec::{Decoder, Encoder};

    for framing in FRAMINGS {
        let server = EchoServer::builder().framing(framing).stamp(Ctime::utc()).build().expect("valid config");
        let mut server_codec = ServerCodec::new(&server);
        let mut client = ClientCodec::new(framing).expect("valid framing");
        let (mut wire, mut replies) = (BytesMut::with_capacity(4096), BytesMut::with_capacity(4096));
        let mut round = |replies_decoded: &mut Vec<stamp_echo::Reply>| -> Result<(), Error> {
            wire.clear();
            replies.clear();
            for _ in 0..20 {
                client.encode(&b"0123456789abcdef"[..], &mut wire)?;
            }
            // As `Framed` does: decode, encode the item, drop it.
            while let Some(stamped) = server_codec.decode(&mut wire)? {
                server_codec.encode(stamped, &mut replies)?;
            }
            while let Some(reply) = client.decode(&mut replies)? {
                replies_decoded.push(reply);
            }
            Ok(())
        };
        let mut decoded = Vec::with_capacity(2100);
        for _ in 0..3 {
            round(&mut decoded).expect("a round");
        }
        decoded.clear();
        let info = measure(|| {
            for _ in 0..100 {
                round(&mut decoded).expect("a round");
            }
        });
        assert_eq!(decoded.len(), 2000, "{framing}");
        let own: u64 = decoded.iter().map(|r| 2 + r.pieces().len() as u64).sum();
        assert_eq!(info.count_total, own, "{framing}: {info:?}");
    }
}
