//! `--runtime threads|tokio` for the examples that serve: which runner, and
//! the runner started on either (`#[path]`-included by `server.rs` and
//! `frame_memory.rs`).

use std::time::Duration;

use stamp_echo::EchoServer;
use stamp_echo::runner::{self, Events, Limits, Listener, ProxyProtocol};

/// `--runtime`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Runtime {
    /// `stamp_echo::runner`: a thread per connection.
    Threads,
    /// `stamp_echo::tokio::runner`: a task per connection.
    Tokio,
}

/// The runner serving, on either runtime.
pub enum Running {
    Threads(runner::Handle),
    Tokio(stamp_echo::tokio::runner::Handle, tokio::runtime::Runtime),
}

impl Running {
    /// Starts `runtime`'s runner on `listener`, with the PROXY protocol if
    /// `proxy` is given.
    pub fn start<E: Events>(
        runtime: Runtime,
        listener: Listener,
        server: EchoServer,
        limits: Limits,
        proxy: Option<ProxyProtocol>,
        events: E,
    ) -> Result<Running, Box<dyn std::error::Error>> {
        match runtime {
            Runtime::Threads => Ok(Running::Threads(match proxy {
                Some(proxy) => runner::start_proxied(listener, server, limits, proxy, events)?,
                None => runner::start(listener, server, limits, events)?,
            })),
            Runtime::Tokio => {
                let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
                let handle = {
                    let _entered = rt.enter();
                    let listener: stamp_echo::tokio::runner::Listener = match listener {
                        Listener::Tcp(l) => {
                            l.set_nonblocking(true)?;
                            tokio::net::TcpListener::from_std(l)?.into()
                        }
                        #[cfg(unix)]
                        Listener::Unix(l) => {
                            l.set_nonblocking(true)?;
                            tokio::net::UnixListener::from_std(l)?.into()
                        }
                        other => return Err(format!("no tokio listener for {other:?}").into()),
                    };
                    match proxy {
                        Some(proxy) => {
                            stamp_echo::tokio::runner::start_proxied(listener, server, limits, proxy, events)?
                        }
                        None => stamp_echo::tokio::runner::start(listener, server, limits, events)?,
                    }
                };
                Ok(Running::Tokio(handle, rt))
            }
        }
    }

    /// Connections being served now.
    #[allow(dead_code, reason = "frame_memory.rs uses it, server.rs does not")]
    pub fn active(&self) -> usize {
        match self {
            Running::Threads(handle) => handle.active(),
            Running::Tokio(handle, _) => handle.active(),
        }
    }

    /// Stops it (see `Handle::shutdown`).
    pub fn shutdown(self, deadline: Duration) -> stamp_echo::Totals {
        match self {
            Running::Threads(handle) => handle.shutdown(deadline),
            Running::Tokio(handle, rt) => {
                let totals = rt.block_on(handle.shutdown(deadline));
                // Tasks that outlived the deadline are not waited for.
                rt.shutdown_background();
                totals
            }
        }
    }
}
