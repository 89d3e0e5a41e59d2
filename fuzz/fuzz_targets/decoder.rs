//! `framing::Decoder`: never panics; holds back no more than its limit
//! allows; hands over no message over the limit; line and length-prefixed
//! framing give the same messages and the same error however the input is
//! split into reads; chunk framing hands over every byte, in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stamp_echo::Framing;
use stamp_echo::framing::{Decoder, LineEnding};
use stamp_echo_fuzz::Case;

/// The messages handed over and how decoding ended (the error's text).
type Outcome = (Vec<(Vec<u8>, LineEnding)>, Option<String>);

fn decode(framing: Framing, reads: &[&[u8]]) -> Outcome {
    let mut decoder = Decoder::new(framing);
    let mut seen = Vec::new();
    let held_back_at_most = match framing {
        Framing::Chunk { .. } => 3,
        Framing::Line { max_line } => max_line + 1,
        Framing::LengthPrefixed { max_frame } => max_frame + 3,
        _ => usize::MAX,
    };
    let mut collect = |message: &[u8], ending: LineEnding| {
        seen.push((message.to_vec(), ending));
        Ok(())
    };
    for read in reads {
        if let Err(err) = decoder.decode(read, &mut collect) {
            return (seen, Some(err.to_string()));
        }
        assert!(decoder.pending() <= held_back_at_most, "{} bytes held back", decoder.pending());
    }
    let end = decoder.finish(&mut collect).err().map(|err| err.to_string());
    (seen, end)
}

fuzz_target!(|input: &[u8]| {
    let Some(case) = Case::parse(input) else { return };
    let reads = case.reads();
    let (messages, error) = decode(case.framing, &reads);
    match case.framing {
        Framing::Line { max_line } => assert!(messages.iter().all(|(m, _)| m.len() <= max_line)),
        Framing::LengthPrefixed { max_frame } => assert!(messages.iter().all(|(m, _)| m.len() <= max_frame)),
        _ => {}
    }
    if case.split_invariant() {
        assert_eq!((messages, error), decode(case.framing, &[case.data]), "split {:?}", case.sizes);
    } else {
        let all: Vec<u8> = messages.iter().flat_map(|(m, _)| m.iter().copied()).collect();
        assert_eq!(all, case.data, "chunk framing hands over every byte in order");
        assert_eq!(error, None, "chunk framing has no errors");
    }
});
