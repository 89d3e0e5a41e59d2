//! `stamp-echo ping`: probes a server like `ping`, a line per reply with the
//! round trip and the server's clock offset, then a summary; the exit status
//! says whether anything came back. `--json` prints one JSON object instead.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use stamp_echo::escape::escape;
use stamp_echo::probe::{Probe, ProbeSummary, Probes};
use stamp_echo::stamp::StampKind;
use stamp_echo::{Bound, Error, Limits, TimeoutError};

use crate::args::{Dur, bounded, default_of, duration, duration_help};
use crate::client::{Connection, RoundTrip, connect};

/// `--count`: probes to send.
const COUNT: Bound<u64> = Bound::new("count", 1, u64::MAX);
/// `--interval`: time between probes, up to the library's longest timeout.
const INTERVAL: Bound<Duration> =
    Bound::new("interval", Duration::ZERO, Limits::MAX_TIMEOUT).with_default(Duration::from_secs(1));

/// How many probes, how often.
#[derive(clap::Args, Clone)]
pub struct Probing {
    /// Probe like ping: send N small messages, print one line per reply (round trip, and the clock offset with a
    /// sub-second --stamp), then a summary.
    #[arg(short, long, value_name = "N", value_parser = bounded(COUNT))]
    pub count: Option<u64>,

    #[arg(short, long, value_name = "DURATION", default_value_t = Dur(default_of(INTERVAL)), requires = "count",
          help = duration_help("Time between probes", &INTERVAL), value_parser = duration(INTERVAL))]
    pub interval: Dur,
}

/// Probe a server: round trips and its clock offset.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    connection: Connection,

    /// Probes to send (without it: until Ctrl-C).
    #[arg(short, long, value_name = "N", value_parser = bounded(COUNT))]
    count: Option<u64>,

    #[arg(short, long, value_name = "DURATION", default_value_t = Dur(default_of(INTERVAL)),
          help = duration_help("Time between probes", &INTERVAL), value_parser = duration(INTERVAL))]
    interval: Dur,

    /// Print one JSON object at the end (the summary and every probe), nothing else on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> ExitCode {
    let target = args.connection.endpoint.target(args.connection.udp);
    let mut round_trip = match connect(&args.connection) {
        Ok(round_trip) => round_trip,
        Err(e) => {
            eprintln!("stamp-echo ping: {}", escape(e.to_string().as_bytes()));
            return ExitCode::FAILURE;
        }
    };
    let probing = Probing { count: args.count, interval: args.interval };
    let run = Run { json: args.json, ..Run::default() };
    match probe_with(&mut round_trip, &target, &args.connection, &probing, run) {
        Ok(summary) if summary.received > 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("stamp-echo ping: {target}: {}", escape(e.to_string().as_bytes()));
            ExitCode::FAILURE
        }
    }
}

/// How a run reports.
#[derive(Clone, Copy, Default)]
struct Run {
    /// One JSON object at the end.
    json: bool,
    /// Ctrl-C exits with status 130 (the client's), not by whether anything came back.
    interrupt_130: bool,
}

/// `client --count N`: the probes, as `ping` runs them; Ctrl-C exits 130.
pub fn probe(
    round_trip: &mut RoundTrip,
    target: &str,
    connection: &Connection,
    probing: &Probing,
    interrupt_130: bool,
) -> Result<ProbeSummary, Error> {
    probe_with(round_trip, target, connection, probing, Run { json: false, interrupt_130 })
}

/// The probes `ping SEQ`, a line per reply, and a summary (also on Ctrl-C).
fn probe_with(
    round_trip: &mut RoundTrip,
    target: &str,
    connection: &Connection,
    probing: &Probing,
    run: Run,
) -> Result<ProbeSummary, Error> {
    let kind = connection.endpoint.stamp;
    if matches!(kind, StampKind::Ctime | StampKind::CtimeUtc) {
        eprintln!("note: clock offsets need a sub-second stamp: --stamp rfc3339 or unix, as the server's");
    }
    if !run.json {
        println!("PROBE {target}, {kind} stamps");
    }
    let state = Arc::new(Mutex::new((Probes::new(kind), Vec::new())));
    let report = {
        let (state, target) = (Arc::clone(&state), target.to_owned());
        move || {
            let state = state.lock().unwrap_or_else(PoisonError::into_inner);
            let summary = state.0.summary();
            if run.json {
                println!("{}", json(&target, kind, &summary, &state.1));
            } else {
                println!("--- {target} ---\n{summary}");
            }
            summary
        }
    };
    let on_signal = report.clone();
    crate::signal::on_stop(move || {
        let summary = on_signal();
        let code = if run.interrupt_130 { 130 } else { i32::from(summary.received == 0) };
        std::process::exit(code);
    })?;
    let mut failure = None;
    let mut seq = 0;
    while probing.count.is_none_or(|count| seq < count) {
        seq += 1;
        let result = round_trip(format!("ping {seq}").as_bytes());
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(reply) => {
                let probe = state.0.reply(seq, &reply);
                if !run.json {
                    println!("{probe}");
                }
                state.1.push(probe);
            }
            Err(e @ Error::Timeout(TimeoutError::NoReply { .. })) => {
                state.0.lost();
                if !run.json {
                    println!("seq={seq} lost: {e}");
                }
            }
            Err(e) => {
                state.0.lost();
                failure = Some(e);
            }
        }
        drop(state);
        if failure.is_some() || probing.count == Some(seq) {
            break;
        }
        std::thread::sleep(probing.interval.0);
    }
    let summary = report();
    failure.map_or(Ok(summary), Err)
}

/// Milliseconds, as JSON numbers.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The run as one JSON object:
/// `{"target":…,"stamp":…,"sent":…,"received":…,"lost_percent":…,"rtt_ms":{"min","median","max"}|null,
/// "offset_ms":{"median","best","best_bound"}|null,"probes":[{"seq","bytes","rtt_ms","offset_ms","offset_bound_ms"}]}`.
fn json(target: &str, kind: StampKind, summary: &ProbeSummary, probes: &[Probe]) -> String {
    let mut out = String::new();
    let lost = summary.sent.saturating_sub(summary.received);
    let percent = if summary.sent == 0 { 0.0 } else { lost as f64 * 100.0 / summary.sent as f64 };
    let _ = write!(
        out,
        "{{\"target\":{},\"stamp\":\"{kind}\",\"sent\":{},\"received\":{},\"lost_percent\":{percent:.1},\"rtt_ms\":",
        crate::load::json_string(target),
        summary.sent,
        summary.received
    );
    match summary.rtt {
        Some([min, median, max]) => {
            let _ = write!(out, "{{\"min\":{:.3},\"median\":{:.3},\"max\":{:.3}}}", ms(min), ms(median), ms(max));
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"offset_ms\":");
    match (summary.offset_median, summary.offset_best) {
        (Some(median), Some(best)) => {
            let _ = write!(
                out,
                "{{\"median\":{:.3},\"best\":{:.3},\"best_bound\":{:.3}}}",
                median as f64 / 1e6,
                best.offset_nanos() as f64 / 1e6,
                ms(best.bound())
            );
        }
        _ => out.push_str("null"),
    }
    out.push_str(",\"probes\":[");
    for (i, probe) in probes.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(out, "{sep}{{\"seq\":{},\"bytes\":{},\"rtt_ms\":{:.3}", probe.seq, probe.bytes, ms(probe.rtt));
        match probe.offset {
            Some(o) => {
                let _ = write!(
                    out,
                    ",\"offset_ms\":{:.3},\"offset_bound_ms\":{:.3}}}",
                    o.offset_nanos() as f64 / 1e6,
                    ms(o.bound())
                );
            }
            None => out.push_str(",\"offset_ms\":null,\"offset_bound_ms\":null}"),
        }
    }
    out.push_str("]}");
    out
}
