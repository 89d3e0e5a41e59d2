//! Property tests: how the input is split into reads never changes what is
//! answered; no input panics or makes the decoder hold more than its
//! documented bound; and `EchoClient` gets back every message it may send.
//!
//! Case counts are kept modest so this file runs in a few seconds.

mod common;

use proptest::prelude::*;
use proptest::sample::Index;

use common::{FIXED_CTIME, Loopback, fixed_reply, fixed_server};
use std::sync::Arc;

use stamp_echo::framing::{Decoder, Event, LineEnding};
use stamp_echo::protocol::Responder;
use stamp_echo::stamp::Ctime;
use stamp_echo::testing::Duplex;
use stamp_echo::{EchoClient, Error, Framing};

fn config() -> ProptestConfig {
    ProptestConfig { cases: 128, ..ProptestConfig::default() }
}

/// Bytes rich in what matters to the framings: line endings, brackets, the
/// bytes of `你` and of a 4-byte emoji, and anything else.
fn interesting_bytes(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => any::<u8>(),
        2 => Just(b'\n'),
        2 => Just(b'\r'),
        2 => Just(b'['),
        2 => Just(b']'),
        1 => Just(b' '),
        2 => prop::sample::select("你🎉".as_bytes().to_vec()),
        3 => Just(b'a'),
    ];
    prop::collection::vec(byte, 0..max_len)
}

/// Cuts `input` at the given points (any order, repeats allowed) into reads.
fn split_at_points(input: &[u8], points: &[Index]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p.index(input.len() + 1)).collect();
    cuts.push(0);
    cuts.push(input.len());
    cuts.sort_unstable();
    cuts.windows(2).map(|w| input[w[0]..w[1]].to_vec()).collect()
}

fn cut_points() -> impl Strategy<Value = Vec<Index>> {
    prop::collection::vec(any::<Index>(), 0..24)
}

/// What serving some reads produced.
#[derive(Debug, PartialEq)]
struct Served {
    /// The messages seen whole, put together from their fragments.
    messages: Vec<Vec<u8>>,
    /// The bytes seen of a message that did not end (answered in part).
    partial: Option<Vec<u8>>,
    output: Vec<u8>,
    result: Result<(), String>,
}

/// Serves `reads`, putting the observed fragments back together and
/// checking them: in order, contiguous, empty only when last.
fn serve(framing: Framing, reads: Vec<Vec<u8>>) -> Served {
    let mut messages = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let mut stream = Duplex::from_reads(reads);
    let result = fixed_server(framing).serve_with(&mut stream, |f: stamp_echo::Fragment<'_>| {
        let message = current.get_or_insert_with(Vec::new);
        assert_eq!(f.offset(), message.len() as u64, "fragments are contiguous");
        assert!(!f.bytes().is_empty() || f.is_last(), "only a last fragment may be empty");
        message.extend_from_slice(f.bytes());
        if f.is_last() {
            assert_eq!(f.end(), message.len() as u64);
            messages.extend(current.take());
        }
    });
    Served {
        messages,
        partial: current,
        output: stream.take_output(),
        result: result.map(|_| ()).map_err(|e| format!("{e:?}")),
    }
}

/// The start of the reply to a message that did not end, of which `partial`
/// arrived: in length framing its 4-byte length is that of the whole reply.
fn partial_reply(framing: Framing, partial: &[u8], declared: Option<u64>) -> Vec<u8> {
    let mut reply = fixed_reply(Framing::chunk(), partial, LineEnding::None);
    if let (Framing::LengthPrefixed { .. }, Some(declared)) = (framing, declared) {
        let len = u32::try_from(FIXED_CTIME.len() as u64 + 3 + declared).expect("small");
        reply.splice(0..0, len.to_be_bytes());
    }
    reply
}

/// The most bytes a [`Decoder`] may hold back, as `Decoder::pending` documents it.
fn pending_bound(framing: Framing) -> usize {
    match framing {
        Framing::Chunk { .. } | Framing::LengthPrefixed { .. } => 3,
        Framing::Line { .. } => 1,
        _ => unreachable!("a framing this test does not know"),
    }
}

fn small_framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        (1usize..=16).prop_map(|n| Framing::Chunk { buffer_size: n }),
        (0usize..=16).prop_map(|n| Framing::Line { max_line: n }),
        (0usize..=16).prop_map(|n| Framing::LengthPrefixed { max_frame: n }),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Line framing: any split gives the same replies, and the same end
    /// (including the same error for a line over the limit).
    #[test]
    fn line_replies_do_not_depend_on_the_split(input in interesting_bytes(200), points in cut_points(), max_line in 1usize..24) {
        let framing = Framing::Line { max_line };
        let whole = serve(framing, vec![input.clone()]);
        let split = serve(framing, split_at_points(&input, &points));
        prop_assert_eq!(&split, &whole);
        // And the replies are exactly the stamped lines, each once, then the
        // start of the reply to a line that went over the limit.
        let mut rest = input.as_slice();
        let mut expected = Vec::new();
        for message in &whole.messages {
            rest = &rest[message.len()..];
            let ending = if rest.starts_with(b"\r\n") { LineEnding::CrLf }
                else if rest.starts_with(b"\n") { LineEnding::Lf } else { LineEnding::None };
            rest = &rest[ending.as_bytes().len()..];
            prop_assert!(message.len() <= max_line);
            expected.extend(fixed_reply(framing, message, ending));
        }
        if let Some(partial) = &whole.partial {
            prop_assert!(whole.result.as_ref().is_err_and(|e| e.contains("LineTooLong")), "{:?}", whole.result);
            prop_assert_eq!(partial.as_slice(), &rest[..max_line]);
            expected.extend(partial_reply(framing, partial, None));
        }
        prop_assert_eq!(whole.output, expected);
    }

    /// Length framing: any split gives the same replies and the same end.
    #[test]
    fn length_replies_do_not_depend_on_the_split(
        messages in prop::collection::vec(interesting_bytes(40), 0..8),
        tail in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..6),
            // A frame cut short by the end of input.
            (interesting_bytes(20), any::<Index>()).prop_map(|(m, cut)| {
                let mut frame = (m.len() as u32).to_be_bytes().to_vec();
                frame.extend(m);
                frame.truncate(cut.index(frame.len()));
                frame
            }),
        ],
        points in cut_points(),
        max_frame in 1usize..32,
    ) {
        let framing = Framing::LengthPrefixed { max_frame };
        let mut input = Vec::new();
        for m in &messages {
            framing.encode_message(m, &mut input);
        }
        input.extend(&tail);
        let whole = serve(framing, vec![input.clone()]);
        let split = serve(framing, split_at_points(&input, &points));
        prop_assert_eq!(&split, &whole);
        // Every frame within the limit before the first one over it is answered.
        let answered: Vec<Vec<u8>> = messages.iter().take_while(|m| m.len() <= max_frame).cloned().collect();
        prop_assert_eq!(&whole.messages[..answered.len()], answered.as_slice());
        let mut expected: Vec<u8> = whole.messages.iter().flat_map(|m| fixed_reply(framing, m, LineEnding::None)).collect();
        // A frame cut by the end of input after its prefix was answered as
        // far as it came.
        let number = |e: &str, field: &str| -> Option<u64> {
            let digits: String = e.split(field).nth(1)?.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        match &whole.result {
            Err(e) if e.starts_with("TruncatedFrame") && number(e, "received: ") >= Some(4) => {
                let partial = whole.partial.clone().unwrap_or_default();
                prop_assert_eq!(number(e, "received: "), Some(4 + partial.len() as u64));
                expected.extend(partial_reply(framing, &partial, number(e, "expected: ").map(|n| n - 4)));
            }
            _ => prop_assert_eq!(&whole.partial, &None),
        }
        prop_assert_eq!(whole.output, expected);
    }

    /// Chunk framing, valid UTF-8: every split echoes the same bytes, every
    /// piece is whole characters, and no piece is longer than one read plus
    /// the held-back start of a character.
    #[test]
    fn chunk_echoes_utf8_whole_whatever_the_split(input in "\\PC{0,120}", points in cut_points(), buffer_size in 1usize..=16) {
        let framing = Framing::Chunk { buffer_size };
        for reads in [vec![input.as_bytes().to_vec()], split_at_points(input.as_bytes(), &points)] {
            let Served { messages, output, result, .. } = serve(framing, reads);
            prop_assert!(result.is_ok());
            prop_assert_eq!(messages.concat(), input.as_bytes());
            for m in &messages {
                prop_assert!(std::str::from_utf8(m).is_ok(), "a reply splits a character: {:?}", m);
                prop_assert!(!m.is_empty() && m.len() <= buffer_size + 3);
            }
            let expected: Vec<u8> = messages.iter().flat_map(|m| fixed_reply(framing, m, LineEnding::None)).collect();
            prop_assert_eq!(output, expected);
        }
    }

    /// Chunk framing, any bytes: every split echoes every byte, once, in order.
    #[test]
    fn chunk_echoes_any_bytes_whatever_the_split(input in interesting_bytes(200), points in cut_points(), buffer_size in 1usize..=16) {
        let framing = Framing::Chunk { buffer_size };
        let Served { messages, result, .. } = serve(framing, split_at_points(&input, &points));
        prop_assert!(result.is_ok());
        prop_assert_eq!(messages.concat(), input);
    }

    /// Any bytes, any split, any framing: no panic, the events follow their
    /// grammar, the decoder never holds back more than its documented bound
    /// nor hands over a message over the limit, and the responder's output
    /// per read is bounded by the read.
    #[test]
    fn decoder_never_panics_and_stays_within_its_bound(framing in small_framing(), input in interesting_bytes(300), points in cut_points()) {
        let mut decoder = Decoder::new(framing);
        let limit = match framing { Framing::Chunk { .. } => usize::MAX, other => other.limit() };
        let mut problems = Vec::new();
        let mut current: Option<usize> = None;
        let mut sink = |event: Event<'_>| {
            match event {
                Event::Start { .. } if current.is_some() => problems.push("start inside a message".to_string()),
                Event::Start { .. } => current = Some(0),
                Event::Bytes([]) => problems.push("empty bytes".to_string()),
                Event::Bytes(bytes) | Event::End { bytes, .. } => match current.as_mut() {
                    None => problems.push("bytes outside a message".to_string()),
                    Some(len) => {
                        *len += bytes.len();
                        if *len > limit { problems.push(format!("{len} bytes handed over")); }
                        if let Event::End { .. } = event { current = None; }
                    }
                },
                _ => problems.push(format!("unknown {event:?}")),
            }
            Ok::<(), Error>(())
        };
        let mut result = Ok(());
        for read in split_at_points(&input, &points) {
            result = decoder.decode(&read, &mut sink);
            if result.is_err() { break; }
            prop_assert!(decoder.pending() <= pending_bound(framing), "{} pending in {}", decoder.pending(), framing);
        }
        if result.is_ok() {
            result = decoder.finish(&mut sink);
        }
        prop_assert_eq!(problems, Vec::<String>::new());
        match (framing, result) {
            (_, Ok(())) => {}
            (Framing::Line { .. }, Err(Error::LineTooLong { .. }))
            | (Framing::LengthPrefixed { .. }, Err(Error::FrameTooLarge { .. } | Error::TruncatedFrame { .. })) => {}
            (framing, Err(e)) => prop_assert!(false, "{framing}: unexpected {e:?}"),
        }

        // Streamed replies: each read adds at most, per byte, the byte and
        // one reply's length, header and line ending.
        let mut responder = Responder::new(framing, Arc::new(Ctime::utc()));
        let overhead = 4 + "[Thu Jan  1 00:00:00 1970] ".len() + 2;
        for read in split_at_points(&input, &points) {
            let mut out = Vec::new();
            let result = responder.receive(&read, std::time::SystemTime::UNIX_EPOCH, &mut out);
            prop_assert!(out.len() <= read.len() * (1 + overhead), "{} bytes out for {} in", out.len(), read.len());
            if result.is_err() { break; }
        }
    }
}

/// Whether `message` ends with the first bytes of a UTF-8 character: in
/// chunk framing the server waits for the rest, so no reply can complete it.
fn ends_inside_a_character(message: &[u8]) -> bool {
    message.utf8_chunks().last().is_some_and(|chunk| {
        !chunk.invalid().is_empty() && std::str::from_utf8(chunk.invalid()).is_err_and(|e| e.error_len().is_none())
    })
}

/// Whether `framing` can carry `message` to a server and back.
fn can_carry(framing: Framing, message: &[u8]) -> bool {
    match framing {
        Framing::Chunk { .. } => !message.is_empty() && !ends_inside_a_character(message),
        Framing::Line { max_line } => {
            !message.contains(&b'\n') && !message.ends_with(b"\r") && message.len() <= max_line
        }
        Framing::LengthPrefixed { max_frame } => message.len() <= max_frame,
        _ => unreachable!("a framing this test does not know"),
    }
}

fn round_trip_framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        (1usize..=16).prop_map(|n| Framing::Chunk { buffer_size: n }),
        Just(Framing::chunk()),
        Just(Framing::Line { max_line: 64 }),
        Just(Framing::LengthPrefixed { max_frame: 64 }),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// `EchoClient` against an in-memory server that splits what it receives
    /// into arbitrary reads: every message the framing can carry comes back
    /// whole, stamped, from pieces that add up to it; any other is refused
    /// before sending. A last round trip shows nothing was left unread.
    #[test]
    fn client_round_trips_any_message(
        framing in round_trip_framing(),
        messages in prop::collection::vec(interesting_bytes(80), 1..6),
        read_sizes in prop::collection::vec(1usize..=20, 1..6),
    ) {
        let read_sizes = match framing {
            Framing::Chunk { buffer_size } => read_sizes.iter().map(|&n| n.min(buffer_size)).collect(),
            _ => read_sizes,
        };
        let mut client = EchoClient::new(Loopback::new(framing, read_sizes), framing).expect("valid framing");
        for message in messages.iter().map(Vec::as_slice).chain([&b"last"[..]]) {
            match client.round_trip(message) {
                Ok(reply) => {
                    prop_assert!(can_carry(framing, message), "{framing} carried {message:?}");
                    prop_assert_eq!(reply.message(), message);
                    prop_assert!(reply.pieces().iter().all(|p| p.stamp == FIXED_CTIME));
                    prop_assert_eq!(reply.pieces().iter().map(|p| p.len).sum::<usize>(), message.len());
                }
                Err(Error::InvalidMessage(_)) => {
                    prop_assert!(!can_carry(framing, message), "{framing} refused {message:?}");
                }
                Err(e) => prop_assert!(false, "{framing}, {message:?}: {e:?}"),
            }
        }
        prop_assert!(client.get_ref().error.is_none());
    }

    /// Messages may be pipelined in every framing: all sent first, then every
    /// reply read in order. Chunk framing has no boundaries, so pipelined
    /// messages may reach the server in one read and come back in one stamped
    /// piece; the client still hands each reply its own message. A last round
    /// trip shows nothing was left unread.
    #[test]
    fn client_pipelines_in_every_framing(
        framing in prop_oneof![
            Just(Framing::chunk()),
            Just(Framing::Line { max_line: 64 }),
            Just(Framing::LengthPrefixed { max_frame: 64 }),
        ],
        messages in prop::collection::vec(interesting_bytes(60), 1..6),
        read_sizes in prop::collection::vec(1usize..=50, 1..6),
    ) {
        let messages: Vec<Vec<u8>> = messages.into_iter().filter(|m| can_carry(framing, m)).collect();
        let mut client = EchoClient::new(Loopback::new(framing, read_sizes), framing).expect("valid framing");
        for message in &messages {
            client.send(message).expect("a message the framing can carry");
        }
        for message in &messages {
            let reply = client.receive(message);
            prop_assert!(reply.is_ok(), "{framing}, {message:?} of {messages:?}: {reply:?}");
        }
        let last = client.round_trip(b"last");
        prop_assert!(last.is_ok(), "{framing}, after {messages:?}: {last:?}");
        if !matches!(framing, Framing::Chunk { .. }) {
            // With boundaries, the server saw exactly the messages sent.
            prop_assert_eq!(client.get_ref().summary().messages, messages.len() as u64 + 1);
        }
    }

    /// Whatever a server sends back, split however, the client returns a
    /// reply or a typed error: it never panics and never waits for ever.
    #[test]
    fn client_survives_any_reply_bytes(
        framing in round_trip_framing(),
        reply in interesting_bytes(200),
        points in cut_points(),
        message in "[a-z\\[\\] ]{1,12}",
    ) {
        let mut client = EchoClient::new(Duplex::from_reads(split_at_points(&reply, &points)), framing)
            .expect("valid framing");
        if let Ok(reply) = client.round_trip(message.as_bytes()) {
            prop_assert_eq!(reply.message(), message.as_bytes());
        }
    }
}
