//! `framing::Splitter`: never panics; its events are well formed (a message
//! starts, continues with non-empty bytes, ends); it holds back at most 3
//! bytes whatever the limits; hands over no message over the limit; line and
//! length-prefixed framing give the same events' messages and the same error
//! however the input is split into reads; chunk framing hands over every
//! byte, in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stamp_echo::framing::{Splitter, Part, LineEnding};
use stamp_echo::{Error, Framing};
use stamp_echo_fuzz::Case;

/// The messages handed over (bytes, ending; `None` while unfinished), and
/// how decoding ended (the error's text).
type Outcome = (Vec<(Vec<u8>, Option<LineEnding>)>, Option<String>);

fn decode(framing: Framing, reads: &[&[u8]]) -> Outcome {
    let mut decoder = Splitter::new(framing);
    let mut seen: Vec<(Vec<u8>, Option<LineEnding>)> = Vec::new();
    let mut collect = |event: Part<'_>| -> Result<(), Error> {
        let open = seen.last_mut().filter(|(_, ending)| ending.is_none());
        match (event, open) {
            (Part::Start { len }, None) => {
                if let Some(len) = len {
                    assert!(len as usize <= framing.limit(), "a declared length over the limit started");
                }
                seen.push((Vec::new(), None));
            }
            (Part::Bytes(bytes), Some((message, _))) => {
                assert!(!bytes.is_empty(), "Bytes is never empty");
                message.extend_from_slice(bytes);
            }
            (Part::End { bytes, ending }, Some((message, end))) => {
                message.extend_from_slice(bytes);
                *end = Some(ending);
            }
            (event, open) => panic!("{event:?} with a message open: {}", open.is_some()),
        }
        Ok(())
    };
    for read in reads {
        if let Err(err) = decoder.decode(read, &mut collect) {
            return (seen, Some(err.to_string()));
        }
        assert!(decoder.pending() <= 3, "{} bytes held back", decoder.pending());
    }
    let end = decoder.finish(&mut collect).err().map(|err: Error| err.to_string());
    (seen, end)
}

fuzz_target!(|input: &[u8]| {
    let Some(case) = Case::parse(input) else { return };
    let reads = case.reads();
    let (messages, error) = decode(case.framing, &reads);
    if !matches!(case.framing, Framing::Chunk { .. }) {
        assert!(messages.iter().all(|(m, _)| m.len() <= case.framing.limit()), "a message over the limit");
    }
    if case.split_invariant() {
        assert_eq!((messages, error), decode(case.framing, &[case.data]), "split {:?}", case.sizes);
    } else {
        let all: Vec<u8> = messages.iter().flat_map(|(m, _)| m.iter().copied()).collect();
        assert_eq!(all, case.data, "chunk framing hands over every byte in order");
        assert_eq!(error, None, "chunk framing has no errors");
    }
});
