//! One connection's life, I/O-free: the core both runners and both
//! `serve_with`s drive.
//!
//! A [`Connection`] holds the [`Responder`], the replies not written yet,
//! the idle, message and write deadlines, the runner's signals (end the
//! input; close now), the counts, and when a message was last completed
//! (the registry's eviction order). It does no I/O and keeps time only as
//! the shell tells it (the server's clock gives the stamps' text alone): a
//! shell (a blocking loop over `Read + Write`, an async loop over
//! `AsyncRead + AsyncWrite`) asks it what to do next ([`Connection::next`]:
//! read, write these bytes, flush, or close with this result), does it, and
//! tells it what happened: bytes read ([`received`](Connection::received)),
//! the end of input, bytes written ([`wrote`](Connection::wrote)), the time
//! ([`handle_timeout`](Connection::handle_timeout)). Between them it asks
//! when to wake at the latest ([`poll_timeout`](Connection::poll_timeout)),
//! as quinn-proto's `Connection` is driven by quinn's tokio shell.
//!
//! Messages still go to the caller's [`Observer`]; the deadlines and the
//! eviction progress are this core's own state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, TimeoutError};
use crate::protocol::{Observer, Responder, Summary};
use crate::proxy::{ProxyError, has_signature};
use crate::stamp::Clock;
use crate::wire::Framing;

/// The slice of a read given to the [`Responder`] at a time in line and
/// length framing (where how input is cut does not matter): replies to tiny
/// messages are many times larger than the messages (a header each), so the
/// replies to one slice stay small whatever the read size.
pub(crate) const SLICE: usize = 512;

/// Replies pending beyond this are written out before the rest of the read
/// is answered. Larger than the replies to a typical read, so that those
/// still leave in one write.
pub(crate) const FLUSH_AT: usize = 32 * 1024;

/// A message's cost beyond its bytes, in bytes, for [`Connection::work`].
/// Measured on the release server: an empty line (29 bytes read and
/// replied) takes about 70 ns, a byte of a 4 KiB message about 0.35 ns, so a
/// message is worth about 200 bytes of copying.
const MESSAGE_WORK: u64 = 256;

/// The pieces a read of `read` bytes is given to the [`Responder`] in: in
/// chunk framing a read is a message, never cut (its reply is one header
/// longer than the read anyway); otherwise [`SLICE`]s. Pending replies then
/// pass [`FLUSH_AT`] by at most the replies to one piece.
pub(crate) fn slice_size(framing: Framing, read: usize) -> usize {
    match framing {
        Framing::Chunk { .. } => read.max(1),
        _ => SLICE,
    }
}

/// A connection's deadlines (the runners' [`Limits`](crate::Limits)); all
/// `None` for none.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Deadlines {
    /// No byte received for this long.
    pub(crate) idle: Option<Duration>,
    /// A message begun and not completed for this long.
    pub(crate) message: Option<Duration>,
    /// Replies pending, not taken by the peer, for this long.
    pub(crate) write: Option<Duration>,
}

impl Deadlines {
    fn any(&self) -> bool {
        self.idle.is_some() || self.message.is_some() || self.write.is_some()
    }
}

/// What the shell does next (see [`Connection::next`]).
#[derive(Debug)]
pub(crate) enum Next<'a> {
    /// Read, and give the bytes to [`Connection::received`] (or the end of
    /// input to [`Connection::end_of_input`]).
    Read,
    /// Write these bytes, and say how many went with [`Connection::wrote`].
    Write(&'a [u8]),
    /// Flush the stream, then [`Connection::flushed`].
    Flush,
    /// The connection is over: close it with this result.
    Close(Result<(), Error>),
}

/// One connection's state (see the module docs).
pub(crate) struct Connection {
    responder: Responder,
    clock: Arc<dyn Clock>,
    deadlines: Deadlines,
    /// Replies produced and not yet written, from `written` on.
    out: Vec<u8>,
    written: usize,
    /// Bytes were written since the last flush.
    unflushed: bool,
    /// When the last read with bytes arrived (or the connection began).
    last_read: Instant,
    /// When the first byte of the message not yet complete arrived.
    started: Option<Instant>,
    /// Since when the replies in `out` have been waiting to be taken.
    writing_since: Option<Instant>,
    /// When a message was last completed, not yet taken by
    /// [`take_progress`](Connection::take_progress).
    progress: Option<Instant>,
    /// The first bytes must not begin with a PROXY header's signature.
    sniff: bool,
    /// How it ends once the replies before it are out (end of input, bad
    /// input, a failed stream).
    outcome: Option<Result<(), Error>>,
    /// How it ends at once, replies pending or not (a deadline passed, the
    /// runner evicted it).
    closing: Option<Error>,
    /// [`Next::Close`] was said.
    closed: bool,
    /// [`work`](Connection::work) at which this turn's budget is spent.
    budget_end: u64,
}

impl Connection {
    /// A connection beginning `now`, answered by `responder`, stamped by
    /// `clock`, under `deadlines`.
    pub(crate) fn new(responder: Responder, clock: Arc<dyn Clock>, deadlines: Deadlines, now: Instant) -> Self {
        Connection {
            responder,
            clock,
            deadlines,
            out: Vec::new(),
            written: 0,
            unflushed: false,
            last_read: now,
            started: None,
            writing_since: None,
            progress: None,
            sniff: false,
            outcome: None,
            closing: None,
            closed: false,
            budget_end: u64::MAX,
        }
    }

    /// Room for `bytes` of replies at once (a blocking shell's reply buffer).
    pub(crate) fn with_capacity(mut self, bytes: usize) -> Self {
        self.out.reserve_exact(bytes);
        self
    }

    /// Refuses the connection if its first bytes begin with a PROXY header's
    /// signature (a peer that is not a trusted proxy, under the PROXY
    /// protocol).
    pub(crate) fn sniff_proxy_header(&mut self) {
        self.sniff = true;
    }

    /// The counts so far.
    pub(crate) fn summary(&self) -> Summary {
        self.responder.summary()
    }

    /// Whether any deadline applies: without, a stream's own timeout is the
    /// caller's ([`TimeoutError::Idle`] at once).
    pub(crate) fn has_deadlines(&self) -> bool {
        self.deadlines.any()
    }

    /// What to do next.
    pub(crate) fn next(&mut self) -> Next<'_> {
        if self.closed {
            return Next::Close(Ok(()));
        }
        if let Some(error) = self.closing.take() {
            self.closed = true;
            self.out = Vec::new();
            self.written = 0;
            return Next::Close(Err(error));
        }
        if self.written < self.out.len() {
            return Next::Write(&self.out[self.written..]);
        }
        if self.unflushed {
            return Next::Flush;
        }
        match self.outcome.take() {
            Some(result) => {
                self.closed = true;
                Next::Close(result)
            }
            None => Next::Read,
        }
    }

    /// Answers `input`, read at `now`, as far as it goes before the replies
    /// pending pass [`FLUSH_AT`] or this turn's budget is spent; each
    /// message goes to `observer`. Returns how much of `input` was taken:
    /// give the rest again once [`next`](Connection::next) says `Read`. Bad
    /// input takes all of it, and the connection closes once the replies
    /// before it are out.
    pub(crate) fn received<O: Observer + ?Sized>(&mut self, input: &[u8], now: Instant, observer: &mut O) -> usize {
        if self.outcome.is_some() || self.closing.is_some() || self.closed {
            return input.len();
        }
        if self.sniff && !input.is_empty() {
            self.sniff = false;
            if has_signature(input) {
                self.outcome = Some(Err(ProxyError::Untrusted.into()));
                return input.len();
            }
        }
        self.last_read = now;
        let stamped = self.clock.now();
        let pending = self.out.len();
        let mut taken = 0;
        let mut completed = 0;
        for piece in input.chunks(slice_size(self.responder.framing(), input.len())) {
            let answered = self.responder.receive_observed(piece, stamped, &mut self.out, observer);
            taken += piece.len();
            match answered {
                Ok(n) => completed += n,
                Err(e) => {
                    self.outcome = Some(Err(e));
                    taken = input.len();
                    break;
                }
            }
            if self.out.len() >= FLUSH_AT || self.budget_spent() {
                break;
            }
        }
        if completed > 0 {
            self.progress = Some(now);
        }
        self.started = match (self.responder.in_message(), completed) {
            (false, _) => None,
            (true, 0) => self.started.or(Some(now)),
            (true, _) => Some(now),
        };
        if pending == 0 && !self.out.is_empty() {
            self.writing_since = Some(now);
        }
        taken
    }

    /// The input has ended (the peer's end, or the runner's at shutdown):
    /// a last message held back is answered (to `observer`), and the
    /// connection closes once the replies are out.
    pub(crate) fn end_of_input<O: Observer + ?Sized>(&mut self, now: Instant, observer: &mut O) {
        if self.outcome.is_some() || self.closing.is_some() || self.closed {
            return;
        }
        let pending = self.out.len();
        let finished = self.responder.finish_observed(self.clock.now(), &mut self.out, observer);
        if matches!(finished, Ok(n) if n > 0) {
            self.progress = Some(now);
        }
        self.started = None;
        if pending == 0 && !self.out.is_empty() {
            self.writing_since = Some(now);
        }
        self.outcome = Some(finished.map(drop));
    }

    /// `n` bytes of [`Next::Write`]'s went out.
    pub(crate) fn wrote(&mut self, n: usize) {
        self.written += n;
        self.unflushed = true;
        if self.written >= self.out.len() {
            self.out.clear();
            self.written = 0;
            self.writing_since = None;
        }
    }

    /// The stream was flushed.
    pub(crate) fn flushed(&mut self) {
        self.unflushed = false;
    }

    /// The stream failed (or the runner closed it): close with `error`,
    /// replies pending or not.
    pub(crate) fn close(&mut self, error: Error) {
        if self.closing.is_none() && !self.closed {
            self.closing = Some(error);
        }
    }

    /// The instant by which the shell must call
    /// [`handle_timeout`](Connection::handle_timeout) if nothing else
    /// happens: while replies are pending, the write deadline; otherwise the
    /// earlier of the idle and the message deadline. `None`: no deadline.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.due().map(|(at, _)| at)
    }

    /// The deadline in force, and its error.
    fn due(&self) -> Option<(Instant, TimeoutError)> {
        if self.closing.is_some() || self.closed {
            return None;
        }
        if self.written < self.out.len() {
            let (since, timeout) = (self.writing_since?, self.deadlines.write?);
            return Some((since + timeout, TimeoutError::Write { timeout }));
        }
        if self.outcome.is_some() {
            return None;
        }
        let idle = self.deadlines.idle.map(|t| (self.last_read + t, TimeoutError::Idle));
        let message = match (self.started, self.deadlines.message) {
            (Some(started), Some(timeout)) => Some((started + timeout, TimeoutError::Message { timeout })),
            _ => None,
        };
        match (idle, message) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// The time is `now`: a deadline that has passed closes the connection.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if let Some((at, error)) = self.due()
            && at <= now
        {
            self.closing = Some(error.into());
        }
    }

    /// When a message was last completed, once (for the registry's eviction
    /// order); `None` if none since the last call.
    pub(crate) fn take_progress(&mut self) -> Option<Instant> {
        self.progress.take()
    }

    /// The work done so far, in bytes: bytes read and replied, and each
    /// message as [`MESSAGE_WORK`] bytes more.
    pub(crate) fn work(&self) -> u64 {
        let summary = self.responder.summary();
        summary.bytes_in + summary.bytes_out + MESSAGE_WORK * summary.messages
    }

    /// Starts a turn of `budget` bytes of [`work`](Connection::work):
    /// [`received`](Connection::received) stops taking input once it is
    /// spent (an async shell then lets other tasks run).
    #[cfg(feature = "tokio-runner")]
    pub(crate) fn start_turn(&mut self, budget: u64) {
        self.budget_end = self.work().saturating_add(budget);
    }

    /// This turn's budget is spent.
    pub(crate) fn budget_spent(&self) -> bool {
        self.work() >= self.budget_end
    }

    /// Lends the connection `buffer` (an async shell's worker-thread buffer)
    /// to put its replies in, if none is pending; `false` if some are (it
    /// keeps its own then). Give it back with
    /// [`give_back`](Connection::give_back), so that an idle connection holds
    /// no reply buffer.
    #[cfg(feature = "tokio-runner")]
    pub(crate) fn lend(&mut self, buffer: &mut Vec<u8>) -> bool {
        if !self.out.is_empty() {
            return false;
        }
        buffer.clear();
        std::mem::swap(&mut self.out, buffer);
        true
    }

    /// Gives back the buffer [`lend`](Connection::lend) lent: the replies
    /// the peer has not taken yet are kept in a buffer of their size.
    #[cfg(feature = "tokio-runner")]
    pub(crate) fn give_back(&mut self, buffer: &mut Vec<u8>) {
        std::mem::swap(&mut self.out, buffer);
        self.out = Vec::new();
        if self.written < buffer.len() {
            self.out.reserve_exact(buffer.len() - self.written);
            self.out.extend_from_slice(&buffer[self.written..]);
        }
        self.written = 0;
        buffer.clear();
    }

    /// Bytes of replies pending, and the reply buffer's room (for tests of
    /// the bound).
    #[cfg(test)]
    pub(crate) fn pending_len(&self) -> (usize, usize) {
        (self.out.len() - self.written, self.out.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::Ctime;
    use std::time::SystemTime;

    fn connection(framing: Framing, deadlines: Deadlines, now: Instant) -> Connection {
        let responder = Responder::new(framing, Arc::new(Ctime::utc()));
        Connection::new(responder, Arc::new(|| SystemTime::UNIX_EPOCH), deadlines, now)
    }

    /// Does what `next` asks until it asks to read or close; returns the
    /// bytes written, and the result it closed with.
    fn drain(conn: &mut Connection) -> (Vec<u8>, Option<Result<(), Error>>) {
        let mut wire = Vec::new();
        loop {
            match conn.next() {
                Next::Write(bytes) => {
                    let n = bytes.len();
                    wire.extend_from_slice(bytes);
                    conn.wrote(n);
                }
                Next::Flush => conn.flushed(),
                Next::Read => return (wire, None),
                Next::Close(result) => return (wire, Some(result)),
            }
        }
    }

    #[test]
    fn the_idle_and_message_deadlines_move_with_the_input() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let deadlines = Deadlines { idle: Some(s(10)), message: Some(s(3)), write: Some(s(5)) };
        let mut conn = connection(Framing::line(), deadlines, t0);
        assert_eq!(conn.poll_timeout(), Some(t0 + s(10)), "idle from the start");
        assert_eq!(conn.received(b"hal", t0 + s(1), &mut ()), 3);
        assert!(matches!(conn.next(), Next::Write(_)), "its reply is streamed");
        assert_eq!(conn.poll_timeout(), Some(t0 + s(6)), "replies pending: the write deadline");
        assert_eq!(drain(&mut conn).0, b"[Thu Jan  1 00:00:00 1970] hal");
        assert_eq!(conn.poll_timeout(), Some(t0 + s(4)), "a message begun: its deadline is nearer");
        assert_eq!(conn.received(b"f\n", t0 + s(2), &mut ()), 2);
        assert_eq!(conn.take_progress(), Some(t0 + s(2)));
        drain(&mut conn);
        assert_eq!(conn.poll_timeout(), Some(t0 + s(12)), "complete: idle from the last read");
        conn.handle_timeout(t0 + s(11));
        assert!(matches!(conn.next(), Next::Read), "not yet");
        conn.handle_timeout(t0 + s(12));
        assert!(matches!(conn.next(), Next::Close(Err(Error::Timeout(TimeoutError::Idle)))));
    }

    #[test]
    fn a_read_is_taken_until_the_replies_pass_the_flush_point() {
        let t0 = Instant::now();
        let mut conn = connection(Framing::line(), Deadlines::default(), t0);
        let input = vec![b'\n'; 64 * 1024];
        let mut at = 0;
        let mut wire = 0;
        while at < input.len() {
            let taken = conn.received(&input[at..], t0, &mut ());
            assert!(taken > 0 && taken < input.len());
            at += taken;
            let (pending, _) = conn.pending_len();
            assert!(pending < FLUSH_AT + SLICE * 28, "{pending}");
            wire += drain(&mut conn).0.len();
        }
        assert_eq!(wire, input.len() * 28);
        conn.end_of_input(t0, &mut ());
        assert!(matches!(conn.next(), Next::Close(Ok(()))));
        assert_eq!(conn.summary().messages, 64 * 1024);
    }

    #[test]
    fn bad_input_closes_once_the_replies_before_it_are_out() {
        let t0 = Instant::now();
        let mut conn = connection(Framing::Line { max_line: 4 }, Deadlines::default(), t0);
        assert_eq!(conn.received(b"ok\ntoo long\nmore", t0, &mut ()), 16);
        let (wire, closed) = drain(&mut conn);
        assert!(wire.starts_with(b"[Thu Jan  1 00:00:00 1970] ok\n"));
        assert!(matches!(closed, Some(Err(Error::Protocol(_)))), "{closed:?}");
    }

    #[test]
    fn a_signal_to_close_drops_the_replies_pending() {
        let t0 = Instant::now();
        let mut conn = connection(Framing::line(), Deadlines::default(), t0);
        conn.received(b"a\n", t0, &mut ());
        conn.close(Error::Evicted { idle: Duration::ZERO });
        assert!(matches!(conn.next(), Next::Close(Err(Error::Evicted { .. }))));
    }

    #[test]
    fn a_proxy_header_from_an_untrusted_peer_is_refused() {
        let t0 = Instant::now();
        let mut conn = connection(Framing::line(), Deadlines::default(), t0);
        conn.sniff_proxy_header();
        conn.received(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", t0, &mut ());
        assert!(matches!(conn.next(), Next::Close(Err(Error::Proxy(ProxyError::Untrusted)))));
    }
}
