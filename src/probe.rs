//! Probing a server like `ping`: each reply's round trip and clock offset,
//! and a summary of a run (min/median/max round trip, median offset, losses).
//!
//! [`Probes`] only counts; sending is the caller's, over any transport:
//!
//! ```no_run
//! use std::net::TcpStream;
//! use stamp_echo::{EchoClient, Framing, probe::Probes, stamp::StampKind};
//!
//! let mut client = EchoClient::new(TcpStream::connect("127.0.0.1:8080")?, Framing::line())?;
//! let mut probes = Probes::new(StampKind::Rfc3339);
//! for seq in 1..=5 {
//!     let reply = client.round_trip(format!("ping {seq}").as_bytes())?;
//!     println!("{}", probes.reply(seq, &reply)); // seq=1 bytes=36 rtt=0.061 ms offset=+0.004±0.031 ms
//! }
//! println!("{}", probes.summary());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::time::Duration;

use crate::client::Reply;
use crate::clock::{ClockOffset, Millis};
use crate::stamp::StampKind;

/// The replies of a run of probes, and the probes lost.
#[derive(Clone, Debug)]
pub struct Probes {
    kind: StampKind,
    sent: u64,
    rtts: Vec<Duration>,
    offsets: Vec<ClockOffset>,
}

/// One probe's reply, as one `ping`-like line:
/// `seq=1 bytes=36 rtt=0.061 ms offset=+0.004±0.031 ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Probe {
    /// The caller's sequence number.
    pub seq: u64,
    /// The reply's size without framing: every `[STAMP] ` and the message.
    pub bytes: usize,
    /// The round trip.
    pub rtt: Duration,
    /// The server's clock offset, if its stamp could be read.
    pub offset: Option<ClockOffset>,
}

/// The summary of a run of probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeSummary {
    /// Probes sent.
    pub sent: u64,
    /// Probes answered.
    pub received: u64,
    /// Round trips: minimum, median, maximum (`None` without replies).
    pub rtt: Option<[Duration; 3]>,
    /// The median clock offset, in nanoseconds (`None` if no stamp could be read).
    pub offset_median: Option<i64>,
    /// The offset with the smallest bound: the fastest reply's.
    pub offset_best: Option<ClockOffset>,
}

impl Probes {
    /// An empty run whose replies' stamps are read as `kind` (the server's).
    pub fn new(kind: StampKind) -> Probes {
        Probes { kind, sent: 0, rtts: Vec::new(), offsets: Vec::new() }
    }

    /// Records the reply to probe `seq`, and returns its line.
    pub fn reply(&mut self, seq: u64, reply: &Reply) -> Probe {
        self.sent += 1;
        self.rtts.push(reply.rtt());
        let offset = reply.clock_offset(self.kind);
        self.offsets.extend(offset);
        let headers: usize = reply.pieces().iter().map(|p| p.stamp.len() + 3).sum();
        Probe { seq, bytes: headers + reply.message().len(), rtt: reply.rtt(), offset }
    }

    /// Records a probe that got no reply.
    pub fn lost(&mut self) {
        self.sent += 1;
    }

    /// The summary so far.
    pub fn summary(&self) -> ProbeSummary {
        let mut rtts = self.rtts.clone();
        rtts.sort_unstable();
        let rtt = match (rtts.first(), rtts.last()) {
            (Some(&min), Some(&max)) => Some([min, median(&rtts, |a, b| (a + b) / 2), max]),
            _ => None,
        };
        let mut offsets: Vec<i64> = self.offsets.iter().map(ClockOffset::offset_nanos).collect();
        offsets.sort_unstable();
        let offset_median = (!offsets.is_empty())
            .then(|| median(&offsets, |a, b| i64::try_from((i128::from(a) + i128::from(b)) / 2).unwrap_or_default()));
        ProbeSummary {
            sent: self.sent,
            received: self.rtts.len() as u64,
            rtt,
            offset_median,
            offset_best: self.offsets.iter().copied().min_by_key(ClockOffset::bound),
        }
    }
}

/// The middle of sorted, non-empty `values`; of an even count, `mean` of the two middle ones.
fn median<T: Copy>(values: &[T], mean: impl Fn(T, T) -> T) -> T {
    let mid = values.len() / 2;
    if values.len() % 2 == 1 { values[mid] } else { mean(values[mid - 1], values[mid]) }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq={} bytes={} rtt={} ms", self.seq, self.bytes, Millis::of(self.rtt))?;
        match self.offset {
            Some(offset) => write!(f, " offset={offset}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for ProbeSummary {
    /// Two or three lines, like `ping`'s:
    ///
    /// ```text
    /// 5 probes sent, 5 replies, 0% lost
    /// rtt min/median/max = 0.051/0.063/0.120 ms
    /// offset median +0.004 ms, best +0.003±0.025 ms
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lost = self.sent.saturating_sub(self.received);
        let percent = lost.saturating_mul(100).checked_div(self.sent).unwrap_or(0);
        write!(f, "{} probes sent, {} replies, {percent}% lost", self.sent, self.received)?;
        if let Some([min, median, max]) = self.rtt {
            write!(f, "\nrtt min/median/max = {}/{}/{} ms", Millis::of(min), Millis::of(median), Millis::of(max))?;
        }
        match (self.offset_median, self.offset_best) {
            (Some(median), Some(best)) => {
                write!(f, "\noffset median {} ms, best {best}", Millis::signed(i128::from(median)))
            }
            _ if self.received > 0 => f.write_str("\nno clock offset: the stamps have no sub-second time to read"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EchoClient;
    use crate::framing::Framing;
    use crate::testing::Duplex;

    /// Replies to `ping N` in line framing, stamped `stamp`.
    fn reply(seq: u64, stamp: &str) -> Reply {
        let message = format!("ping {seq}");
        let mut client = EchoClient::new(Duplex::new(format!("[{stamp}] {message}\n").into_bytes()), Framing::line())
            .expect("client");
        client.round_trip(message.as_bytes()).expect("scripted echo")
    }

    #[test]
    fn lines_and_summary_of_a_run() {
        let mut probes = Probes::new(StampKind::Unix);
        let first = probes.reply(1, &reply(1, "1359885618.123456"));
        assert_eq!(first.seq, 1);
        assert_eq!(first.bytes, "[1359885618.123456] ping 1".len());
        assert!(first.offset.is_some());
        let line = first.to_string();
        assert!(line.starts_with("seq=1 bytes=26 rtt=") && line.contains(" ms offset=-"), "{line}");
        probes.lost();
        probes.reply(3, &reply(3, "not a time"));
        let summary = probes.summary();
        assert_eq!((summary.sent, summary.received), (3, 2));
        let [min, median, max] = summary.rtt.expect("two replies");
        assert!(min <= median && median <= max);
        assert_eq!(median, (min + max) / 2);
        assert_eq!(summary.offset_median, first.offset.map(|o| o.offset_nanos()));
        assert_eq!(summary.offset_best, first.offset);
        let text = summary.to_string();
        assert!(text.starts_with("3 probes sent, 2 replies, 33% lost\nrtt min/median/max = "), "{text}");
        assert!(text.contains("\noffset median -"), "{text}");
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[1, 5, 9], |a, b| (a + b) / 2), 5);
        assert_eq!(median(&[1, 5, 9, 11], |a, b| (a + b) / 2), 7);
        assert_eq!(median(&[i64::MAX - 1, i64::MAX], |a, b| a / 2 + b / 2), i64::MAX - 1);
    }

    #[test]
    fn summaries_without_replies_or_offsets() {
        let mut probes = Probes::new(StampKind::Ctime);
        assert_eq!(probes.summary().to_string(), "0 probes sent, 0 replies, 0% lost");
        probes.lost();
        assert_eq!(probes.summary().to_string(), "1 probes sent, 0 replies, 100% lost");
        probes.reply(2, &reply(2, "Sun Feb  3 10:00:18 2013"));
        let text = probes.summary().to_string();
        assert!(text.ends_with("\nno clock offset: the stamps have no sub-second time to read"), "{text}");
    }
}
