//! `protocol::Responder`: never panics; every byte received is counted; line
//! and length-prefixed framing answer with the same bytes and the same error
//! however the input is split into reads; chunk framing answers every byte,
//! each read's bytes behind one stamp.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use stamp_echo::Framing;
use stamp_echo::protocol::Responder;
use stamp_echo::stamp::Ctime;
use stamp_echo_fuzz::Case;

/// The stamp every reply carries here (the fixed instant in UTC).
const STAMP: &[u8] = b"[Sun Feb  3 10:00:18 2013] ";

/// The bytes sent back, the messages answered, and how it ended.
fn respond(framing: Framing, reads: &[&[u8]]) -> (Vec<u8>, u64, Option<String>) {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_359_885_618);
    let mut responder = Responder::new(framing, Arc::new(Ctime::utc()));
    let mut out = Vec::new();
    let mut received = 0u64;
    for read in reads {
        received += read.len() as u64;
        let result = responder.receive(read, now, &mut out);
        assert_eq!(responder.summary().bytes_in, received, "every byte received is counted");
        if let Err(err) = result {
            return (out, responder.summary().messages, Some(err.to_string()));
        }
    }
    let end = responder.finish(now, &mut out).err().map(|err| err.to_string());
    (out, responder.summary().messages, end)
}

fuzz_target!(|input: &[u8]| {
    let Some(case) = Case::parse(input) else { return };
    let reads = case.reads();
    let (out, messages, error) = respond(case.framing, &reads);
    if case.split_invariant() {
        assert_eq!((out, messages, error), respond(case.framing, &[case.data]), "split {:?}", case.sizes);
    } else {
        assert_eq!(error, None, "chunk framing has no errors");
        let stamps = out.windows(STAMP.len()).filter(|w| *w == STAMP).count() as u64;
        assert!(stamps >= messages, "every message answered is stamped");
        assert_eq!(out.len() as u64, messages * STAMP.len() as u64 + case.data.len() as u64, "every byte echoed once");
    }
});
