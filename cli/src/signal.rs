//! Ctrl-C (SIGINT) and SIGTERM, through tokio's signal handling: no unsafe
//! signal code of ours.

use std::io;
use std::thread;

/// Runs `then` on a thread of its own at the first Ctrl-C or SIGTERM. The
/// signals are caught from the moment this returns.
///
/// # Errors
///
/// The signal handlers or the thread could not be set up.
pub fn on_stop(then: impl FnOnce() + Send + 'static) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    #[cfg(unix)]
    let stopped = {
        use tokio::signal::unix::{SignalKind, signal};
        let _entered = rt.enter();
        let (mut interrupt, mut terminate) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
        std::future::poll_fn(move |cx| {
            // Both polled each time, so each registers its wake-up.
            let (i, t) = (interrupt.poll_recv(cx).is_ready(), terminate.poll_recv(cx).is_ready());
            if i || t { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
        })
    };
    #[cfg(not(unix))]
    let stopped = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    thread::Builder::new().name("signals".into()).spawn(move || {
        rt.block_on(stopped);
        then();
    })?;
    Ok(())
}
