//! The server's log: `tracing` events through `tracing-subscriber` to
//! `tracing-appender`'s bounded, lossy, non-blocking writer on stdout.
//!
//! Serving never waits for the log: events are formatted on the serving
//! thread and queued ([`LOG_QUEUE`] lines) for one writer thread; when the
//! queue is full (a stdout nobody reads), lines are dropped and counted, and
//! the count is logged once a second when stdout moves again. Message lines
//! are rate-limited (`--log-rate`), with a line a second saying how many were
//! not shown. Peer-controlled fields are escaped by the library's
//! [`TracingEvents`](stamp_echo::runner::TracingEvents).
//!
//! The last line, the totals at exit, is always written within the shutdown
//! deadline (at least [`LOG_FLUSH`]): queued (again, while a full queue drops
//! it) for the first quarter of the time, it goes to stdout if the writer
//! gets to it by half the time; if not (a slow or blocked stdout), it is
//! written to stderr instead, with the other half (a busy machine may be slow
//! to run the thread that writes it).

use std::fmt::{self, Write as _};
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use stamp_echo::stamp::{Rfc3339, Stamp};
use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing::{Event, Level, Subscriber};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Lines the log queue holds before it drops them.
pub const LOG_QUEUE: usize = 4096;
/// The least time the last log lines (the totals) get at exit; otherwise
/// they get what is left of the shutdown deadline.
pub const LOG_FLUSH: Duration = Duration::from_millis(100);

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The original's lines, one per event: `...connected from: 127.0.0.1:45000`.
    Text,
    /// One JSON object per line: `time`, `level`, `target`, `message`, the event's fields, and the spans it is in
    /// (`spans`, outermost first: `connection` with `peer`, `id`, `source`; `udp` with `local`).
    Json,
}

/// The log, installed as the global `tracing` subscriber.
pub struct Log {
    guard: WorkerGuard,
    counter: ErrorCounter,
    rate: Arc<Rate>,
    last: Arc<LastLine>,
}

impl Log {
    /// Installs the subscriber (writing stdout, or stderr if `to_stderr`) and starts the writer thread and the
    /// once-a-second counts of lines not shown.
    ///
    /// # Errors
    ///
    /// A thread could not start, or a subscriber is installed already.
    pub fn start(format: Format, per_second: u64, to_stderr: bool) -> io::Result<Log> {
        let builder = NonBlockingBuilder::default().lossy(true).buffered_lines_limit(LOG_QUEUE).thread_name("log");
        let last = Arc::new(LastLine::default());
        let inner: Box<dyn io::Write + Send> = if to_stderr { Box::new(io::stderr()) } else { Box::new(io::stdout()) };
        let out =
            Out { inner: io::BufWriter::with_capacity(OUT_BUFFER, inner), last: Arc::clone(&last), pending: false };
        let (writer, guard) = builder.finish(out);
        let counter = writer.error_counter();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::DEBUG)
            .with_writer(writer)
            .fmt_fields(SpanFields(format))
            .event_format(Line(format))
            .finish();
        tracing::subscriber::set_global_default(subscriber).map_err(io::Error::other)?;
        let rate = Arc::new(Rate::new(per_second));
        let (ticking, counting) = (Arc::clone(&rate), counter.clone());
        thread::Builder::new().name("log-counts".into()).spawn(move || {
            loop {
                thread::sleep(Duration::from_secs(1));
                ticking.tick(&counting);
            }
        })?;
        Ok(Log { guard, counter, rate, last })
    }

    /// The message-line rate limit.
    pub fn rate(&self) -> Arc<Rate> {
        Arc::clone(&self.rate)
    }

    /// Logs `last` after the counts of lines not shown, and returns once it
    /// is written: on stdout if the writer gets to it by half the time left
    /// until `until` (at least [`LOG_FLUSH`]), else on stderr by the end of
    /// it. A blocked stdout keeps neither the process from
    /// exiting nor the line from being written.
    pub fn finish(self, last: &dyn fmt::Display, until: Instant) {
        let start = Instant::now();
        let budget = until.max(start + LOG_FLUSH) - start;
        self.rate.tick(&self.counter);
        let last = last.to_string();
        *self.last.line.lock().unwrap_or_else(PoisonError::into_inner) = Some(last.clone().into_bytes());
        loop {
            // A full queue drops the line (and counts it): queue it again, for a quarter of the time.
            let dropped = self.counter.dropped_lines();
            tracing::info!(target: "stamp_echo::serve", "{last}");
            if self.counter.dropped_lines() == dropped || start.elapsed() >= budget / 4 {
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        let written = self.last.wait(start + budget / 2);
        // The guard waits for the writer, which may hold stdout for ever: dropped aside.
        let guard = self.guard;
        let _ = thread::Builder::new().name("log-guard".into()).spawn(move || drop(guard));
        if written {
            return;
        }
        // stderr may be as blocked as stdout (`2>&1`): written from a thread
        // of its own, waited for until the end of the time.
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = thread::Builder::new().name("last-line".into()).spawn(move || {
            let mut err = io::stderr().lock();
            let _ = writeln!(err, "{last}").and_then(|()| err.flush());
            let _ = tx.send(());
        });
        if spawned.is_ok() {
            let _ = rx.recv_timeout((start + budget).saturating_duration_since(Instant::now()));
        }
    }
}

/// The last line, once it is set, and whether the writer has written it.
#[derive(Default)]
struct LastLine {
    line: Mutex<Option<Vec<u8>>>,
    written: (Mutex<bool>, Condvar),
}

impl LastLine {
    /// Whether `out` holds the last line (once it is set).
    fn is_in(&self, out: &[u8]) -> bool {
        let line = self.line.lock().unwrap_or_else(PoisonError::into_inner);
        line.as_deref().is_some_and(|line| !line.is_empty() && out.windows(line.len()).any(|w| w == line))
    }

    /// The last line is out.
    fn written(&self) {
        let (done, signal) = &self.written;
        *done.lock().unwrap_or_else(PoisonError::into_inner) = true;
        signal.notify_all();
    }

    /// Waits until the last line is written or `until`; whether it was.
    fn wait(&self, until: Instant) -> bool {
        let (done, signal) = &self.written;
        let guard = done.lock().unwrap_or_else(PoisonError::into_inner);
        let left = until.saturating_duration_since(Instant::now());
        let (guard, _) = signal.wait_timeout_while(guard, left, |done| !*done).unwrap_or_else(PoisonError::into_inner);
        *guard
    }
}

/// Bytes of log lines gathered before a write: the writer thread flushes
/// whenever the queue is empty, so under a burst of lines it makes one
/// system call per batch, not one per line (a thread in a syscall per line
/// takes CPU from serving on a small machine).
const OUT_BUFFER: usize = 64 * 1024;

/// Where the writer thread writes (stdout, or stderr with `--inetd`),
/// buffered, telling [`LastLine`] once the last line is flushed.
struct Out {
    inner: io::BufWriter<Box<dyn io::Write + Send>>,
    last: Arc<LastLine>,
    /// The last line is in the buffer, not yet flushed.
    pending: bool,
}

impl io::Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_all(buf)?;
        self.pending |= self.last.is_in(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()?;
        if std::mem::take(&mut self.pending) {
            self.last.written();
        }
        Ok(())
    }
}

/// Message lines, and refusal lines, per second; the counts of those not shown.
pub struct Rate {
    per_second: u64,
    /// Message lines this second.
    messages: Budget,
    /// Refusal lines this second (one source's flood of newcomers is refused one by one).
    refusals: Budget,
    /// Lines the writer dropped, as last reported.
    dropped: AtomicUsize,
}

/// Lines of one kind shown and not shown in the current second.
#[derive(Default)]
struct Budget {
    shown: AtomicU64,
    hidden: AtomicU64,
}

impl Budget {
    /// Whether a line may be shown this second, at most `rate`; counts it if not.
    fn admit(&self, rate: u64) -> bool {
        if self.shown.load(Ordering::Relaxed) < rate && self.shown.fetch_add(1, Ordering::Relaxed) < rate {
            return true;
        }
        self.hidden.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// A new second: the lines not shown in the last one.
    fn renew(&self) -> u64 {
        self.shown.store(0, Ordering::Relaxed);
        self.hidden.swap(0, Ordering::Relaxed)
    }
}

impl Rate {
    fn new(per_second: u64) -> Rate {
        Rate { per_second, messages: Budget::default(), refusals: Budget::default(), dropped: AtomicUsize::new(0) }
    }

    /// Whether a message line may be shown this second; counts it if not.
    pub fn admit(&self) -> bool {
        self.messages.admit(self.per_second)
    }

    /// Whether a refusal line may be shown this second; counts it if not.
    pub fn admit_refusal(&self) -> bool {
        self.refusals.admit(self.per_second)
    }

    /// A new second: logs the counts of lines not shown and dropped since the last.
    fn tick(&self, counter: &ErrorCounter) {
        let rate = self.per_second;
        for (budget, what) in [(&self.messages, "message lines"), (&self.refusals, "refusals")] {
            let hidden = budget.renew();
            if hidden > 0 {
                tracing::info!(target: "stamp_echo::serve", hidden, "...{hidden} {what} not shown (over --log-rate {rate} a second)");
            }
        }
        let total = counter.dropped_lines();
        let dropped = total.saturating_sub(self.dropped.swap(total, Ordering::Relaxed));
        if dropped > 0 {
            tracing::info!(target: "stamp_echo::serve", dropped, "...{dropped} log lines dropped: stdout was not taking them");
        }
    }
}

/// One event as one line: the message alone (text), or a JSON object.
struct Line(Format);

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut out: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        match self.0 {
            Format::Text => {
                let mut message = TextMessage { out: &mut out, result: Ok(()) };
                event.record(&mut message);
                message.result?;
            }
            Format::Json => {
                let mut time = String::new();
                Rfc3339.write_stamp(SystemTime::now(), &mut time);
                let meta = event.metadata();
                write!(out, "{{\"time\":\"{time}\",\"level\":\"{}\",\"target\":", meta.level())?;
                json_string(&mut out, meta.target())?;
                let mut fields = JsonFields { out: &mut out, result: Ok(()) };
                event.record(&mut fields);
                fields.result?;
                json_spans(ctx, &mut out)?;
                out.write_char('}')?;
            }
        }
        writeln!(out)
    }
}

/// `,"spans":[{"name":NAME,FIELDS},...]`, outermost first, for an event
/// inside spans (the library's `connection` and `udp`); nothing otherwise.
fn json_spans<S, N>(ctx: &FmtContext<'_, S, N>, out: &mut Writer<'_>) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let Some(scope) = ctx.event_scope() else { return Ok(()) };
    let mut first = true;
    for span in scope.from_root() {
        out.write_str(if first { ",\"spans\":[{\"name\":" } else { ",{\"name\":" })?;
        first = false;
        json_string(out, span.name())?;
        // What `SpanFields` wrote when the span began: `,"field":value` each.
        if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
            out.write_str(fields)?;
        }
        out.write_char('}')?;
    }
    if !first {
        out.write_char(']')?;
    }
    Ok(())
}

/// How a span's fields are kept, once, when it begins: for JSON lines as
/// `,"name":value` each (see [`json_spans`]); for text lines not at all,
/// since those show the message alone.
struct SpanFields(Format);

impl<'w> FormatFields<'w> for SpanFields {
    fn format_fields<R: RecordFields>(&self, mut out: Writer<'w>, fields: R) -> fmt::Result {
        if self.0 == Format::Json {
            let mut json = JsonFields { out: &mut out, result: Ok(()) };
            fields.record(&mut json);
            json.result?;
        }
        Ok(())
    }

    /// Fields recorded later (`client`, once a trusted proxy names it):
    /// appended as they are, with no space between.
    fn add_fields(&self, current: &'w mut FormattedFields<Self>, fields: &Record<'_>) -> fmt::Result {
        self.format_fields(current.as_writer(), fields)
    }
}

/// Writes an event's `message` field, and nothing else.
struct TextMessage<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Visit for TextMessage<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.result = write!(self.out, "{value:?}");
        }
    }
}

/// Writes every field as `,"name":value`: numbers and booleans bare, the rest
/// as JSON strings.
struct JsonFields<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl JsonFields<'_, '_> {
    fn field(&mut self, field: &Field, value: fmt::Arguments<'_>, quoted: bool) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            self.out.write_char(',')?;
            json_string(self.out, field.name())?;
            self.out.write_char(':')?;
            if quoted {
                self.out.write_char('"')?;
                JsonEscaped(&mut *self.out).write_fmt(value)?;
                self.out.write_char('"')
            } else {
                self.out.write_fmt(value)
            }
        })();
    }
}

impl Visit for JsonFields<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, format_args!("{value:?}"), true);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, format_args!("{value}"), true);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, format_args!("{value}"), false);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, format_args!("{value}"), false);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, format_args!("{value}"), false);
    }
}

/// `text` as a JSON string, quotes included.
fn json_string(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    out.write_char('"')?;
    JsonEscaped(&mut *out).write_str(text)?;
    out.write_char('"')
}

/// Escapes what passes through for a JSON string: quotes, backslashes and
/// control characters.
struct JsonEscaped<W>(W);

impl<W: fmt::Write> fmt::Write for JsonEscaped<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(|c: char| c == '"' || c == '\\' || c.is_control()) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            match c {
                '"' => self.0.write_str("\\\"")?,
                '\\' => self.0.write_str("\\\\")?,
                '\n' => self.0.write_str("\\n")?,
                c => write!(self.0, "\\u{:04x}", u32::from(c))?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        json_string(&mut out, "a\"b\\c\nd\u{1b}e\u{85}").expect("a string");
        assert_eq!(out, r#""a\"b\\c\nd\u001be\u0085""#);
    }

    #[test]
    fn the_rate_admits_its_count_a_second() {
        let rate = Rate::new(2);
        assert_eq!([rate.admit(), rate.admit(), rate.admit()], [true, true, false]);
        assert_eq!(rate.messages.hidden.load(Ordering::Relaxed), 1);
        assert!(rate.admit_refusal(), "a budget of its own");
    }
}
