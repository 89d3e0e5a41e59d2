//! [`EchoServer`]: the protocol core driven over a blocking `Read + Write` stream.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use crate::Error;
use crate::bounds::Bound;
use crate::connection::{Connection, Deadlines, Next};
#[cfg(test)]
use crate::connection::{FLUSH_AT, SLICE};
use crate::framing::Framing;
use crate::protocol::{Observer, Responder, Summary};
use crate::stamp::{Clock, Ctime, Stamp, SystemClock};

/// Answers every message on a stream with `[STAMP] MESSAGE`.
///
/// Configure it once with [`EchoServer::builder`], then call
/// [`serve`](EchoServer::serve) for each connection, from as many threads as
/// you like: it is `Send + Sync` and cheap to share behind an `Arc` or a
/// reference. The server never prints; pass an [`Observer`] to
/// [`serve_with`](EchoServer::serve_with) to see each message.
///
#[cfg_attr(feature = "test-util", doc = "```")]
#[cfg_attr(not(feature = "test-util"), doc = "```ignore")]
/// use std::io::Cursor;
/// use std::time::{Duration, SystemTime};
/// use stamp_echo::{EchoServer, Framing, stamp::Ctime};
///
/// let fixed = SystemTime::UNIX_EPOCH + Duration::from_secs(1_359_885_618);
/// let server = EchoServer::builder()
///     .framing(Framing::line())
///     .stamp(Ctime::utc())
///     .clock(move || fixed)
///     .build()?;
///
/// // Any Read + Write works; here, input from a buffer and replies to a Vec.
/// let mut stream = stamp_echo::testing::Duplex::new(b"hi,server\n".to_vec());
/// let summary = server.serve(&mut stream)?;
/// assert_eq!(stream.output(), b"[Sun Feb  3 10:00:18 2013] hi,server\n");
/// assert_eq!(summary.messages, 1);
/// # let _ = Cursor::new(());
/// # Ok::<(), stamp_echo::Error>(())
/// ```
#[derive(Clone)]
pub struct EchoServer {
    framing: Framing,
    stamp: Arc<dyn Stamp>,
    clock: Arc<dyn Clock>,
    read_buffer_size: usize,
}

impl std::fmt::Debug for EchoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoServer")
            .field("framing", &self.framing)
            .field("read_buffer_size", &self.read_buffer_size)
            .finish_non_exhaustive()
    }
}

/// Builds an [`EchoServer`]; every setting has a documented default.
#[must_use]
pub struct Builder {
    framing: Framing,
    stamp: Option<Arc<dyn Stamp>>,
    clock: Arc<dyn Clock>,
    read_buffer_size: usize,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("framing", &self.framing)
            .field("stamp", &self.stamp.as_ref().map(|_| "custom"))
            .field("read_buffer_size", &self.read_buffer_size)
            .finish_non_exhaustive()
    }
}

/// The default stamp: local time, UTC where the system would use it, an
/// error for a `TZ` that names no zone.
fn default_stamp() -> Result<Ctime, Error> {
    match Ctime::local_or_utc() {
        (_, Some(unknown @ crate::stamp::ZoneError::UnknownZone { .. })) => Err(unknown.into()),
        (ctime, _) => Ok(ctime),
    }
}

impl EchoServer {
    /// Default size of one read in line and length-prefixed framing. (In chunk
    /// framing a read is `buffer_size`, since each read is a message.)
    pub const DEFAULT_READ_BUFFER_SIZE: usize = 8 * 1024;
    /// The range of [`Builder::read_buffer_size`], with its default: 1 byte
    /// to 1 MiB, as [`Framing::BUFFER_SIZE`] (a read buffer is allocated per
    /// connection).
    pub const READ_BUFFER_SIZE: Bound<usize> = Bound::new("read_buffer_size", 1, Framing::BUFFER_SIZE.max())
        .with_default(Self::DEFAULT_READ_BUFFER_SIZE)
        .with_unit("bytes");

    /// A builder with the defaults: [`Framing::chunk`] (1024-byte reads), the
    /// original's local `ctime` stamp ([`Ctime::local`]: never silently UTC,
    /// see [`Builder::build`]), the [`SystemClock`], 8 KiB reads.
    pub fn builder() -> Builder {
        Builder {
            framing: Framing::default(),
            stamp: None,
            clock: Arc::new(SystemClock),
            read_buffer_size: Self::DEFAULT_READ_BUFFER_SIZE,
        }
    }

    /// The framing in use.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// A fresh protocol core for one connection, for transports that do
    /// their own I/O (see [`Responder`]).
    pub fn responder(&self) -> Responder {
        Responder::new(self.framing, Arc::clone(&self.stamp))
    }

    /// The size of one read: the chunk framing's `buffer_size` (each read is
    /// a message), otherwise the read buffer size.
    pub(crate) fn read_size(&self) -> usize {
        match self.framing {
            Framing::Chunk { buffer_size } => buffer_size,
            _ => self.read_buffer_size,
        }
    }

    /// The current instant, from the configured clock (the codec's).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn now(&self) -> std::time::SystemTime {
        self.clock.now()
    }

    /// Serves one connection until the peer ends its input, then returns its
    /// counts. See [`serve_with`](EchoServer::serve_with).
    ///
    /// # Errors
    ///
    /// As [`serve_with`](EchoServer::serve_with).
    pub fn serve<S: Read + Write>(&self, stream: S) -> Result<Summary, Error> {
        self.serve_with(stream, ())
    }

    /// Serves one connection, showing each message to `observer`.
    ///
    /// Reads until end of input, streaming the replies (see [`Responder`]):
    /// each read's reply bytes go out in one write, or in a few when they
    /// pass 32 KiB (replies to many tiny messages), so a connection holds its
    /// read buffer and about one read's worth of replies whatever the
    /// message sizes. At end of input a last message held back is answered
    /// (a line without a newline) and the counts are returned. A read or
    /// write timeout set on the stream ends the connection with
    /// [`TimeoutError::Idle`](crate::TimeoutError::Idle); a message over the framing's limit with its error.
    /// Either way, every message received whole before the error has been
    /// answered (and a line over the limit partly answered: its reply was
    /// streamed up to the limit). To have the counts on error too, use
    /// [`serve_to_end`](EchoServer::serve_to_end).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] or [`TimeoutError::Idle`](crate::TimeoutError::Idle) from the stream; the framing's
    /// errors for bad input ([`ProtocolError::LineTooLong`](crate::ProtocolError::LineTooLong), [`ProtocolError::FrameTooLarge`](crate::ProtocolError::FrameTooLarge),
    /// [`ProtocolError::TruncatedFrame`](crate::ProtocolError::TruncatedFrame)); [`Error::Stamp`] from a stamp
    /// formatter that went wrong.
    ///
    /// Pass `&TcpStream` (or `&mut stream`) to keep the stream: reading and
    /// writing share one handle, so one file descriptor serves a connection.
    ///
    /// Over TCP, turn Nagle's algorithm off first (`stream.set_nodelay(true)`):
    /// the replies to a read already leave in one write, so Nagle can only
    /// delay them, and it does whenever a reply takes two writes (a long
    /// message in chunk framing, answered read by read): the second waits for
    /// the peer's delayed acknowledgement, 40 ms on Linux. Measured on
    /// loopback with 5000-byte messages in chunk framing: 43 ms per round
    /// trip with Nagle, 19 µs without.
    pub fn serve_with<S: Read + Write, O: Observer>(&self, stream: S, observer: O) -> Result<Summary, Error> {
        self.serve_to_end(stream, observer).into_result()
    }

    /// [`serve_with`](EchoServer::serve_with), returning the connection's
    /// counts whether it ended cleanly or in an error.
    ///
    #[cfg_attr(feature = "test-util", doc = "```")]
    #[cfg_attr(not(feature = "test-util"), doc = "```ignore")]
    /// use stamp_echo::{EchoServer, Error, Framing, ProtocolError, stamp::Ctime};
    ///
    /// let server = EchoServer::builder().framing(Framing::Line { max_line: 4 }).stamp(Ctime::utc()).build()?;
    /// let mut stream = stamp_echo::testing::Duplex::new(b"ok\ntoo long\n".to_vec());
    /// let served = server.serve_to_end(&mut stream, ());
    /// assert_eq!(served.summary.messages, 1);
    /// assert!(matches!(served.error, Some(Error::Protocol(ProtocolError::LineTooLong { max: 4 }))));
    /// # Ok::<(), stamp_echo::Error>(())
    /// ```
    pub fn serve_to_end<S: Read + Write, O: Observer>(&self, stream: S, mut observer: O) -> Served {
        let mut conn = self.connection(Deadlines::default(), Instant::now()).with_capacity(self.read_size() + 64);
        let mut input = vec![0u8; self.read_size()];
        let result = drive(&mut conn, &mut Plain(stream), &mut input, &mut observer);
        let summary = conn.summary();
        observer.finished(&summary, result.as_ref().err());
        Served { summary, error: result.err() }
    }

    /// The I/O-free core of one connection beginning `now`, under `deadlines`.
    pub(crate) fn connection(&self, deadlines: Deadlines, now: Instant) -> Connection {
        Connection::new(self.responder(), Arc::clone(&self.clock), deadlines, now)
    }
}

/// How a connection served to its end went: its counts, and the error it
/// ended in, if any (see [`EchoServer::serve_to_end`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct Served {
    /// What the connection did, up to its end.
    pub summary: Summary,
    /// The error it ended in; `None` when the peer ended its input cleanly.
    pub error: Option<Error>,
}

impl Served {
    /// `Ok(summary)` when it ended cleanly, otherwise `Err(error)`.
    ///
    /// # Errors
    ///
    /// The error the connection ended in.
    pub fn into_result(self) -> Result<Summary, Error> {
        match self.error {
            None => Ok(self.summary),
            Some(error) => Err(error),
        }
    }
}

/// A blocking stream a [`Connection`] is driven over by [`drive`]. A plain
/// `Read + Write` (`Plain`) has no deadlines of its own; the thread runner's
/// socket aims its timeouts at the connection's next deadline and knows
/// when the runner closed it.
pub(crate) trait Blocking: Read + Write {
    /// Before a read (`read`) or a write: the connection's next deadline
    /// (`None`: none), and whether the last try returned early on a
    /// timeout. Sets the stream's timeout so that the try returns by then.
    ///
    /// # Errors
    ///
    /// The system's, if the timeout cannot be set.
    fn aim(&mut self, read: bool, deadline: Option<Instant>, woke: bool) -> io::Result<()> {
        let _ = (read, deadline, woke);
        Ok(())
    }

    /// After the stream ended or failed: the runner's reason, when it closed
    /// it (eviction, a refusal).
    fn closed_by_runner(&self) -> Option<Error> {
        None
    }

    /// A message was completed by the read that arrived `at`.
    fn progress(&self, at: Instant) {
        let _ = at;
    }
}

/// A caller's stream, as [`EchoServer::serve_with`] takes it.
struct Plain<S>(S);

impl<S: Read> Read for Plain<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<S: Write> Write for Plain<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<S: Read + Write> Blocking for Plain<S> {}

/// The blocking shell: drives `conn` over `stream` to its end, reading into
/// `input`, each message shown to `observer`. A stream's timeout is a
/// deadline of the connection's when it has any (woken early, it aims again);
/// without, it ends the connection with [`TimeoutError::Idle`](crate::TimeoutError::Idle).
pub(crate) fn drive<S, O>(
    conn: &mut Connection,
    stream: &mut S,
    input: &mut [u8],
    observer: &mut O,
) -> Result<(), Error>
where
    S: Blocking + ?Sized,
    O: Observer + ?Sized,
{
    // The rest of the last read not answered yet: `input[at..filled]`.
    let (mut at, mut filled) = (0, 0);
    let mut woke = false;
    loop {
        let deadline = conn.poll_timeout();
        let done = match conn.next() {
            Next::Close(result) => return result,
            Next::Flush => stream.flush().map(|()| conn.flushed()),
            Next::Write(bytes) => match stream.aim(false, deadline, woke).and_then(|()| stream.write(bytes)) {
                Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    conn.wrote(n);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Next::Read if at < filled => {
                at += conn.received(&input[at..filled], Instant::now(), observer);
                Ok(())
            }
            Next::Read => match stream.aim(true, deadline, woke).and_then(|()| stream.read(input)) {
                Ok(0) => {
                    match stream.closed_by_runner() {
                        Some(error) => conn.close(error),
                        None => conn.end_of_input(Instant::now(), observer),
                    }
                    Ok(())
                }
                Ok(n) => {
                    filled = n;
                    at = conn.received(&input[..n], Instant::now(), observer);
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        woke = false;
        match done {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if conn.has_deadlines() && matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
            {
                woke = true;
            }
            Err(e) => conn.close(stream.closed_by_runner().unwrap_or_else(|| Error::from_io(e))),
        }
        // The deadline has passed (the stream's timeout fired, or a write
        // took some bytes just before it: that does not move it).
        if let Some(deadline) = deadline {
            let now = Instant::now();
            if deadline <= now {
                conn.handle_timeout(now);
            }
        }
        if let Some(at) = conn.take_progress() {
            stream.progress(at);
        }
    }
}

impl Builder {
    /// How messages are delimited (default [`Framing::chunk`]).
    pub fn framing(mut self, framing: Framing) -> Builder {
        self.framing = framing;
        self
    }

    /// The stamp formatter: a built-in from [`crate::stamp`], your own
    /// [`Stamp`], or a closure (default: [`Ctime::local`], see
    /// [`build`](Builder::build)). For UTC, say so: `.stamp(Ctime::utc())`.
    pub fn stamp<S: Stamp + 'static>(mut self, stamp: S) -> Builder {
        self.stamp = Some(Arc::new(stamp));
        self
    }

    /// A stamp formatter already shared, such as one from
    /// [`StampKind::build`](crate::stamp::StampKind::build).
    pub fn shared_stamp(mut self, stamp: Arc<dyn Stamp>) -> Builder {
        self.stamp = Some(stamp);
        self
    }

    /// Where "now" comes from (default [`SystemClock`]); tests pass a closure
    /// returning a fixed instant.
    pub fn clock<C: Clock + 'static>(mut self, clock: C) -> Builder {
        self.clock = Arc::new(clock);
        self
    }

    /// The size of one read in line and length-prefixed framing (default
    /// [`EchoServer::DEFAULT_READ_BUFFER_SIZE`]; 1 byte to 1 MiB,
    /// [`EchoServer::READ_BUFFER_SIZE`], checked by [`build`](Builder::build)). It bounds no message: lines and frames
    /// may span many reads, and their replies are streamed read by read.
    pub fn read_buffer_size(mut self, size: usize) -> Builder {
        self.read_buffer_size = size;
        self
    }

    /// Checks the settings and builds the server.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a framing limit out of range (see
    /// [`Framing::validate`]) or a `read_buffer_size` out of
    /// [`EchoServer::READ_BUFFER_SIZE`]; [`Error::Stamp`] if the stamp formatter, tried once at
    /// the clock's current instant, produces text the protocol cannot carry
    /// (a `]`, `\r` or `\n`, or over 255 bytes). A formatter that goes
    /// wrong only at some instants is still caught per message.
    ///
    /// Without a [stamp](Builder::stamp), the local `ctime` stamp: then
    /// [`Error::Zone`] ([`ZoneError::UnknownZone`](crate::stamp::ZoneError::UnknownZone))
    /// if `TZ` names a zone that cannot be found, which the C library would
    /// silently read as UTC. Choose UTC explicitly with
    /// `.stamp(Ctime::utc())`, or take [`Ctime::local_or_utc`] and report its
    /// error yourself. `TZ` unset with no `/etc/localtime` is UTC, as for
    /// the system, and a local offset the operating system cannot tell
    /// ([`ZoneError::Indeterminate`](crate::stamp::ZoneError::Indeterminate))
    /// is UTC too: neither is an error.
    pub fn build(self) -> Result<EchoServer, Error> {
        self.framing.validate()?;
        EchoServer::READ_BUFFER_SIZE.check(self.read_buffer_size)?;
        let stamp = match self.stamp {
            Some(stamp) => stamp,
            None => Arc::new(default_stamp()?),
        };
        let mut text = String::new();
        stamp.write_stamp(self.clock.now(), &mut text);
        crate::protocol::validate_stamp(&text)?;
        Ok(EchoServer { framing: self.framing, stamp, clock: self.clock, read_buffer_size: self.read_buffer_size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Fragment;
    use crate::testing::Duplex;
    use std::time::{Duration, SystemTime};

    fn fixed() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_359_885_618)
    }

    /// Records the largest single write.
    struct Writes<'a> {
        reads: std::slice::Chunks<'a, u8>,
        largest: usize,
        total: usize,
    }

    impl Read for Writes<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some(read) = self.reads.next() else { return Ok(0) };
            buf[..read.len()].copy_from_slice(read);
            Ok(read.len())
        }
    }

    impl Write for Writes<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.largest = self.largest.max(buf.len());
            self.total += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A 16 MiB frame in 8 KiB reads goes back in writes of a read's worth:
    /// nothing of it is held beyond one read.
    #[test]
    fn a_large_frame_is_answered_read_by_read() {
        let server = EchoServer::builder()
            .framing(Framing::length_prefixed())
            .stamp(Ctime::utc())
            .clock(fixed)
            .build()
            .expect("valid settings");
        let mut input = Vec::new();
        Framing::length_prefixed().frame_message(&vec![b'x'; 16 * 1024 * 1024], &mut input);
        let read = EchoServer::DEFAULT_READ_BUFFER_SIZE;
        let mut stream = Writes { reads: input.chunks(read), largest: 0, total: 0 };
        let mut fragments = 0;
        let summary = server.serve_with(&mut stream, |_: Fragment<'_>| fragments += 1).expect("valid input");
        assert_eq!(summary.messages, 1);
        assert_eq!(stream.total, input.len() + 27);
        assert!(stream.largest <= read + 4 + 27, "a write of {} bytes", stream.largest);
        // Seen as it streamed: a fragment per slice of a read.
        assert_eq!(fragments, input.len().div_ceil(SLICE), "one fragment per slice");
    }

    /// Replies to many tiny messages are written out before they pile up.
    #[test]
    fn replies_to_tiny_messages_are_flushed_before_they_pile_up() {
        let server = EchoServer::builder()
            .framing(Framing::line())
            .read_buffer_size(1024 * 1024)
            .stamp(Ctime::utc())
            .clock(fixed)
            .build()
            .expect("valid settings");
        let input = b"\n".repeat(1024 * 1024);
        let mut stream = Writes { reads: input.chunks(1024 * 1024), largest: 0, total: 0 };
        let summary = server.serve(&mut stream).expect("valid input");
        assert_eq!(summary.messages, 1024 * 1024);
        assert_eq!(stream.total, 1024 * 1024 * 28);
        assert!(stream.largest < FLUSH_AT + SLICE * 28, "a write of {} bytes", stream.largest);
    }

    /// A peer that takes one byte of replies per write, and only after the
    /// write deadline has passed (as a socket write timing out with a
    /// little sent does).
    struct SlowTaker {
        input: Option<&'static [u8]>,
    }

    impl Read for SlowTaker {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some(input) = self.input.take() else { return Ok(0) };
            buf[..input.len()].copy_from_slice(input);
            Ok(input.len())
        }
    }

    impl Write for SlowTaker {
        fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
            std::thread::sleep(Duration::from_millis(5));
            Ok(1)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Blocking for SlowTaker {}

    /// A write that returns after the write deadline, having taken a little,
    /// does not move the deadline: the connection ends with the write timeout.
    #[test]
    fn a_write_past_its_deadline_ends_the_connection_even_if_it_took_some() {
        let server = EchoServer::builder().framing(Framing::line()).stamp(Ctime::utc()).clock(fixed).build();
        let server = server.expect("valid settings");
        let timeout = Duration::from_millis(1);
        let deadlines = Deadlines { write: Some(timeout), ..Deadlines::default() };
        let mut conn = server.connection(deadlines, Instant::now());
        let mut input = [0u8; 64];
        let result = drive(&mut conn, &mut SlowTaker { input: Some(b"hello\n") }, &mut input, &mut ());
        assert!(
            matches!(result, Err(Error::Timeout(crate::TimeoutError::Write { timeout: t })) if t == timeout),
            "{result:?}"
        );
    }

    #[test]
    fn settings_out_of_range_and_bad_stamps_fail_the_build() {
        for size in [0, 1024 * 1024 + 1, usize::MAX] {
            let err = EchoServer::builder().read_buffer_size(size).build().expect_err("out of range");
            assert!(matches!(err, Error::Config(_)), "{err:?}");
            assert!(
                err.to_string().contains("read_buffer_size") && err.to_string().contains(&size.to_string()),
                "{err}"
            );
        }
        for size in [1, 1024 * 1024] {
            assert!(EchoServer::builder().read_buffer_size(size).build().is_ok(), "{size}");
        }
        for framing in [Framing::Line { max_line: 0 }, Framing::LengthPrefixed { max_frame: 0 }] {
            assert!(matches!(EchoServer::builder().framing(framing).build(), Err(Error::Config(_))), "{framing}");
        }
        let bad = crate::stamp::from_fn(|_: SystemTime, out: &mut String| out.push_str("a]b"));
        let result = EchoServer::builder().stamp(bad).build();
        assert!(matches!(result, Err(Error::Stamp(ref e)) if e.stamp() == "a]b"), "{result:?}");
    }

    /// At end of input a last line is answered; every reply before an error
    /// is written.
    #[test]
    fn end_of_input_answers_the_last_line() {
        let server = EchoServer::builder().framing(Framing::line()).stamp(Ctime::utc()).clock(fixed).build();
        let server = server.expect("valid settings");
        let mut stream = Duplex::from_reads([b"one\ntw".to_vec(), b"o".to_vec()]);
        assert_eq!(server.serve(&mut stream).expect("valid").messages, 2);
        assert_eq!(stream.output(), b"[Sun Feb  3 10:00:18 2013] one\n[Sun Feb  3 10:00:18 2013] two");
    }

    /// Set in the environment of the child process the test below starts.
    #[cfg(unix)]
    const ZONE_CHILD: &str = "STAMP_ECHO_DEFAULT_STAMP_CHILD";

    /// The default stamp with `TZ` set to a zone that cannot be found:
    /// `build` fails with the zone error rather than stamp in UTC, and UTC
    /// chosen explicitly still builds. The zone is process-wide, so the test
    /// binary runs this test again as a child with `TZ` set, which prints
    /// what it got.
    #[cfg(unix)]
    #[test]
    fn an_unknown_local_zone_fails_the_build_not_utc() {
        const NAME: &str = "server::tests::an_unknown_local_zone_fails_the_build_not_utc";
        if std::env::var_os(ZONE_CHILD).is_some() {
            let built = EchoServer::builder().build();
            let utc = EchoServer::builder().stamp(Ctime::utc()).build();
            println!("\ndefault\t{built:?}");
            println!("utc\t{}", utc.is_ok());
            return;
        }
        let run = |tz: &str| {
            let exe = std::env::current_exe().expect("the test binary's path");
            let output = std::process::Command::new(exe)
                .args(["--exact", NAME, "--nocapture", "--test-threads", "1"])
                .env(ZONE_CHILD, "1")
                .env("TZ", tz)
                .output()
                .expect("run the test binary as a child");
            assert!(output.status.success(), "TZ={tz}: {}", String::from_utf8_lossy(&output.stderr));
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            let line = |key: &str| {
                stdout
                    .lines()
                    .find_map(|l| l.strip_prefix(key).and_then(|l| l.strip_prefix('\t')))
                    .unwrap_or_else(|| panic!("TZ={tz}: no {key} line in {stdout:?}"))
                    .to_owned()
            };
            (line("default"), line("utc"))
        };
        let (built, utc) = run("Nowhere/Bogus_Zone");
        assert!(built.starts_with("Err(Zone(UnknownZone { tz: \"Nowhere/Bogus_Zone\""), "{built}");
        assert_eq!(utc, "true", "UTC chosen explicitly builds");
        // A zone that exists (a POSIX rule needs no zone file) builds.
        let (built, _) = run("UTC0");
        assert!(built.starts_with("Ok("), "{built}");
    }
}
