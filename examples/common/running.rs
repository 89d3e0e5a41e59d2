//! `--runtime threads|tokio`: which runner serves, with the PROXY protocol
//! or without; both return the same `Handle`. `#[path]`-included by the
//! command line (`cli/src/main.rs`) and the `frame_memory` example.

use std::io;
use std::sync::OnceLock;

use stamp_echo::runner::{self, Events, Handle, Limits, Listener, ProxyProtocol};
use stamp_echo::{EchoServer, Error};

/// `--runtime`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Runtime {
    /// `stamp_echo::runner`: a thread per connection.
    Threads,
    /// `stamp_echo::tokio::runner`: a task per connection.
    Tokio,
}

/// A runner's `start` or, with the PROXY protocol, `start_proxied`.
type Start<E> = fn(Listener, EchoServer, Limits, E) -> Result<Handle, Error>;
type StartProxied<E> = fn(Listener, EchoServer, Limits, ProxyProtocol, E) -> Result<Handle, Error>;

/// Starts `runtime`'s runner on `listener`, with the PROXY protocol if
/// `proxy` is given; the tokio runner on a multi-threaded runtime of the
/// process's own.
pub fn start<E: Events>(
    runtime: Runtime,
    listener: Listener,
    server: EchoServer,
    limits: Limits,
    proxy: Option<ProxyProtocol>,
    events: E,
) -> Result<Handle, Box<dyn std::error::Error>> {
    let _entered;
    let (start, start_proxied): (Start<E>, StartProxied<E>) = match runtime {
        Runtime::Threads => (runner::start, runner::start_proxied),
        Runtime::Tokio => {
            _entered = tokio_runtime()?.enter();
            (stamp_echo::tokio::runner::start, stamp_echo::tokio::runner::start_proxied)
        }
    };
    Ok(match proxy {
        Some(proxy) => start_proxied(listener, server, limits, proxy, events)?,
        None => start(listener, server, limits, events)?,
    })
}

/// The process's tokio runtime, made on first use.
fn tokio_runtime() -> io::Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<io::Result<tokio::runtime::Runtime>> = OnceLock::new();
    let made = RUNTIME.get_or_init(|| tokio::runtime::Builder::new_multi_thread().enable_all().build());
    made.as_ref().map_err(|e| io::Error::new(e.kind(), format!("cannot start a tokio runtime: {e}")))
}
