//! The clients over TCP loopback against the thread runner, blocking and
//! async, in one run: `cargo bench --bench client`.
//!
//! - `client_ping_pong/CLIENT`: one 16-byte line message at a time, each
//!   reply awaited; round trips/s.
//! - `client_pipelined/CLIENT`: windows of 100 messages sent, then their 100
//!   replies read; messages/s. `EchoClient::send` (both) writes each message
//!   at once; `tokio-codec` is `Framed<TcpStream, ClientCodec>` feeding the
//!   window and flushing it in one write.
use std::hint::black_box;
use std::net::TcpStream;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{SinkExt, TryStreamExt};
use stamp_echo::ProtocolError;
use stamp_echo::testing::LocalServer;
use stamp_echo::tokio::ClientCodec;
use stamp_echo::{EchoClient, EchoServer, Error, Framing};
use tokio_util::codec::Framed;

const MESSAGE: &[u8] = b"0123456789abcdef";
const WINDOW: u64 = 100;

struct Setup {
    server: LocalServer,
    runtime: tokio::runtime::Runtime,
}

impl Setup {
    fn new() -> Setup {
        let server = EchoServer::builder().framing(Framing::line()).build().expect("a server");
        let server = LocalServer::start(server).expect("a local server");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        Setup { server, runtime }
    }

    fn blocking(&self) -> EchoClient<TcpStream> {
        let client = self.server.client().expect("connect");
        client.get_ref().set_nodelay(true).expect("TCP_NODELAY");
        client
    }

    async fn stream(&self) -> tokio::net::TcpStream {
        let stream = tokio::net::TcpStream::connect(self.server.addr()).await.expect("connect");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream
    }

    fn tokio(&self) -> stamp_echo::tokio::AsyncEchoClient<tokio::net::TcpStream> {
        let stream = self.runtime.block_on(self.stream());
        stamp_echo::tokio::AsyncEchoClient::new(stream, Framing::line()).expect("a client")
    }
}

fn ping_pong(c: &mut Criterion) {
    let setup = Setup::new();
    let mut group = c.benchmark_group("client_ping_pong");
    group.throughput(Throughput::Elements(1));
    let mut client = setup.blocking();
    group.bench_function("blocking", |b| b.iter(|| black_box(client.round_trip(MESSAGE).expect("a reply"))));
    let mut client = setup.tokio();
    group.bench_function("tokio", |b| {
        b.iter(|| black_box(setup.runtime.block_on(client.round_trip(MESSAGE)).expect("a reply")));
    });
    group.finish();
}

fn pipelined(c: &mut Criterion) {
    let setup = Setup::new();
    let mut group = c.benchmark_group("client_pipelined");
    group.throughput(Throughput::Elements(WINDOW));
    let mut client = setup.blocking();
    group.bench_function("blocking", |b| {
        b.iter(|| {
            (0..WINDOW).try_for_each(|_| client.send(MESSAGE)).expect("sent");
            (0..WINDOW).try_for_each(|_| client.receive().map(drop)).expect("replies");
        });
    });
    let mut client = setup.tokio();
    group.bench_function("tokio", |b| {
        b.iter(|| {
            setup.runtime.block_on(async {
                for _ in 0..WINDOW {
                    client.send(MESSAGE).await?;
                }
                for _ in 0..WINDOW {
                    client.receive().await?;
                }
                Ok::<(), Error>(())
            })
        });
    });
    let stream = setup.runtime.block_on(setup.stream());
    let mut framed = Framed::new(stream, ClientCodec::new(Framing::line()).expect("a codec"));
    group.bench_function("tokio-codec", |b| {
        b.iter(|| {
            setup.runtime.block_on(async {
                for _ in 0..WINDOW {
                    framed.feed(MESSAGE).await?;
                }
                framed.flush().await?;
                for _ in 0..WINDOW {
                    framed.try_next().await?.ok_or(Error::Protocol(ProtocolError::UnexpectedEof))?;
                }
                Ok::<(), Error>(())
            })
        });
    });
    group.finish();
}

criterion_group!(benches, ping_pong, pipelined);
criterion_main!(benches);
