//! Property tests: how the input is split into reads never changes what is
//! answered; no input panics or makes the decoder hold more than its
//! documented bound; and `EchoClient`, blocking and async alike, gets back every message it may send.
//!
//! Case counts are kept modest so this file runs in a few seconds.

mod common;

use proptest::prelude::*;
use proptest::sample::Index;

use common::{FIXED_CTIME, Loopback, Runtime, both_clients, fixed_reply, fixed_server};
use std::sync::Arc;

use stamp_echo::ProtocolError;
use stamp_echo::framing::{self, LineEnding, Splitter};
use stamp_echo::protocol::Responder;
use stamp_echo::reply::{Event, ReplyChecker};
use stamp_echo::stamp::Ctime;
use stamp_echo::testing::Duplex;
use stamp_echo::tokio::{ClientCodec, ServerCodec};
use stamp_echo::{Error, Framing};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder as _, Encoder as _};

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
    serve_on(framing, reads, Runtime::Threads)
}

/// [`serve`] with the blocking driver (`Runtime::Threads`) or the tokio one,
/// under the runner's deadlines.
fn serve_on(framing: Framing, reads: Vec<Vec<u8>>, runtime: Runtime) -> Served {
    let mut messages = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let mut stream = Duplex::from_reads(reads);
    let server = fixed_server(framing);
    let observer = |f: stamp_echo::Fragment<'_>| {
        let message = current.get_or_insert_with(Vec::new);
        assert_eq!(f.offset(), message.len() as u64, "fragments are contiguous");
        assert!(!f.bytes().is_empty() || f.is_last(), "only a last fragment may be empty");
        message.extend_from_slice(f.bytes());
        if f.is_last() {
            assert_eq!(f.end(), message.len() as u64);
            messages.extend(current.take());
        }
    };
    let result = match runtime {
        Runtime::Threads => server.serve_with(&mut stream, observer),
        Runtime::Tokio => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            let limits = stamp_echo::Limits::default();
            let stream = stamp_echo::testing::Ready(&mut stream);
            rt.block_on(stamp_echo::tokio::serve_with_limits(&server, stream, &limits, observer))
        }
    };
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

/// The most bytes a [`Splitter`] may hold back, as `Splitter::pending` documents it.
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
        (1usize..=16).prop_map(|n| Framing::Line { max_line: n }),
        (1usize..=16).prop_map(|n| Framing::LengthPrefixed { max_frame: n }),
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
            common::frame(framing, m, &mut input);
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
            Err(e) if e.starts_with("Protocol(TruncatedFrame") && number(e, "received: ") >= Some(4) => {
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
        let mut decoder = Splitter::new(framing);
        let limit = match framing { Framing::Chunk { .. } => usize::MAX, other => other.limit() };
        let mut problems = Vec::new();
        let mut current: Option<usize> = None;
        let mut sink = |event: framing::Part<'_>| {
            match event {
                framing::Part::Start { .. } if current.is_some() => problems.push("start inside a message".to_string()),
                framing::Part::Start { .. } => current = Some(0),
                framing::Part::Bytes([]) => problems.push("empty bytes".to_string()),
                framing::Part::Bytes(bytes) | framing::Part::End { bytes, .. } => match current.as_mut() {
                    None => problems.push("bytes outside a message".to_string()),
                    Some(len) => {
                        *len += bytes.len();
                        if *len > limit { problems.push(format!("{len} bytes handed over")); }
                        if let framing::Part::End { .. } = event { current = None; }
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
            (Framing::Line { .. }, Err(Error::Protocol(ProtocolError::LineTooLong { .. })))
            | (Framing::LengthPrefixed { .. }, Err(Error::Protocol(ProtocolError::FrameTooLarge { .. }) | Error::Protocol(ProtocolError::TruncatedFrame { .. }))) => {}
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
        for (name, mut client) in both_clients(framing, || Loopback::new(framing, read_sizes.clone())) {
            for message in messages.iter().map(Vec::as_slice).chain([&b"last"[..]]) {
                match client.round_trip(message) {
                    Ok(reply) => {
                        prop_assert!(can_carry(framing, message), "{name}: {framing} carried {message:?}");
                        prop_assert_eq!(reply.message(), message);
                        prop_assert!(reply.pieces().iter().all(|p| p.stamp == FIXED_CTIME));
                        prop_assert_eq!(reply.pieces().iter().map(|p| p.len).sum::<usize>(), message.len());
                    }
                    Err(Error::Message(_)) => {
                        prop_assert!(!can_carry(framing, message), "{name}: {framing} refused {message:?}");
                    }
                    Err(e) => prop_assert!(false, "{name}: {framing}, {message:?}: {e:?}"),
                }
            }
            prop_assert!(client.inner().error.is_none());
        }
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
        for (name, mut client) in both_clients(framing, || Loopback::new(framing, read_sizes.clone())) {
            for message in &messages {
                client.send(message).expect("a message the framing can carry");
            }
            prop_assert_eq!(client.in_flight(), messages.len());
            for message in &messages {
                let reply = client.receive();
                prop_assert!(reply.is_ok(), "{name}: {framing}, {message:?} of {messages:?}: {reply:?}");
                prop_assert_eq!(reply.ok().map(|r| r.message().to_vec()), Some(message.clone()));
            }
            let last = client.round_trip(b"last");
            prop_assert!(last.is_ok(), "{name}: {framing}, after {messages:?}: {last:?}");
            if !matches!(framing, Framing::Chunk { .. }) {
                // With boundaries, the server saw exactly the messages sent.
                prop_assert_eq!(client.inner().summary().messages, messages.len() as u64 + 1);
            }
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
        let outcomes: Vec<_> = both_clients(framing, || Duplex::from_reads(split_at_points(&reply, &points)))
            .into_iter()
            .map(|(_, mut client)| client.round_trip(message.as_bytes()))
            .collect();
        for reply in outcomes.iter().flatten() {
            prop_assert_eq!(reply.message(), message.as_bytes());
        }
        // The two clients agree.
        let shown: Vec<String> = outcomes.iter().map(|r| format!("{:?}", r.as_ref().map(|r| (r.pieces(), r.message())))).collect();
        prop_assert_eq!(&shown[0], &shown[1]);
    }
}

// ---- The reply checker against an independent oracle ----

/// Whether `reply` is, in full, a correct chunk-framing reply stream to
/// `sent` (the messages' bytes back to back): stamped pieces `[STAMP] BYTES`,
/// each piece non-empty, whose bytes are `sent` in order; a stamp is UTF-8,
/// at most 255 bytes, without `]`, CR or LF. Written independently of the
/// checker: a memoised search over (reply position, sent position).
fn is_chunk_reply(reply: &[u8], sent: &[u8]) -> bool {
    /// Where the header starting at `i` ends, if one does.
    fn header_end(reply: &[u8], i: usize) -> Option<usize> {
        if reply.get(i) != Some(&b'[') {
            return None;
        }
        let close = i + 1 + reply[i + 1..].iter().position(|&b| b == b']')?;
        let stamp = &reply[i + 1..close];
        let valid = stamp.len() <= 255
            && !stamp.iter().any(|&b| b == b'\r' || b == b'\n')
            && std::str::from_utf8(stamp).is_ok()
            && reply.get(close + 1) == Some(&b' ');
        valid.then_some(close + 2)
    }
    fn go(
        reply: &[u8],
        sent: &[u8],
        (i, j, nonempty): (usize, usize, bool),
        memo: &mut std::collections::HashMap<(usize, usize, bool), bool>,
    ) -> bool {
        if i == reply.len() {
            return j == sent.len() && nonempty;
        }
        if let Some(&known) = memo.get(&(i, j, nonempty)) {
            return known;
        }
        let echo = sent.get(j) == Some(&reply[i]) && go(reply, sent, (i + 1, j + 1, true), memo);
        let header = nonempty && header_end(reply, i).is_some_and(|end| go(reply, sent, (end, j, false), memo));
        memo.insert((i, j, nonempty), echo || header);
        echo || header
    }
    header_end(reply, 0).is_some_and(|end| go(reply, sent, (end, 0, false), &mut std::collections::HashMap::new()))
}

/// A message answered, with its pieces (stamp, length).
type Answered = (Vec<u8>, Vec<(String, usize)>);

/// What a checker makes of `reads`: the messages answered, in order, or the
/// error; and how many readings it dropped.
fn check(messages: &[Vec<u8>], reads: &[Vec<u8>]) -> (Result<Vec<Answered>, Error>, u64) {
    let mut checker = ReplyChecker::new(Framing::chunk());
    for m in messages {
        checker.send(m, &mut Vec::new()).expect("sendable");
    }
    let mut answered = Vec::new();
    let mut pieces = Vec::new();
    for read in reads {
        let mut input = read.as_slice();
        loop {
            match checker.receive(input) {
                Err(e) => return (Err(e), checker.readings_dropped()),
                Ok((consumed, event)) => {
                    input = &input[consumed..];
                    match event {
                        Some(Event::Piece { stamp, len, .. }) => pieces.push((stamp.to_owned(), len)),
                        Some(Event::Reply { message, .. }) => {
                            answered.push((message.to_vec(), std::mem::take(&mut pieces)))
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
            }
        }
    }
    (Ok(answered), checker.readings_dropped())
}

/// Messages rich in what makes chunk replies ambiguous: `[`, `]`, and whole
/// or partial copies of the stamps the test server uses.
fn ambiguous_message() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        3 => any::<u8>().prop_map(|b| vec![b]),
        3 => Just(b"[".to_vec()),
        1 => Just(b"]".to_vec()),
        1 => Just(b" ".to_vec()),
        2 => Just(b"a".to_vec()),
        2 => Just(b"[T] ".to_vec()),
        1 => Just(b"[T".to_vec()),
        1 => Just(b"[[x] ".to_vec()),
        1 => Just("你".as_bytes().to_vec()),
    ];
    prop::collection::vec(token, 1..12)
        .prop_map(|t| t.concat())
        .prop_filter("sendable", |m| can_carry(Framing::chunk(), m))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The checker accepts exactly the correct replies. A correct reply
    /// stream (our responder's, for messages sent back to back and read by
    /// the server in any sizes, stamps `T` or `[x`, which hold the message's
    /// own bytes) is accepted however it is cut into reads, each message with
    /// pieces that add up to it — unless the stream up to a cut is itself a
    /// complete reply to every message (then the checker takes it, as the
    /// module docs say; no client can tell). Any single-byte change is
    /// rejected exactly when it does not make another correct reply, as an
    /// independent oracle decides. Stamps holding `[` can open more readings
    /// at once than the checker follows; there only soundness is promised
    /// (nothing wrong is accepted), and exactness whenever none was dropped.
    #[test]
    fn reply_checker_accepts_exactly_the_correct_replies(
        messages in prop::collection::vec(ambiguous_message(), 1..4),
        stamp in prop::sample::select(vec!["T", "[x"]),
        server_reads in prop::collection::vec(1usize..=12, 1..5),
        points in cut_points(),
        at in any::<Index>(),
        byte in prop_oneof![any::<u8>(), Just(b'['), Just(b']'), Just(b' '), Just(b'T')],
    ) {
        let mut wire = Vec::new();
        for m in &messages {
            common::frame(Framing::chunk(), m, &mut wire);
        }
        let stamp_text = stamp.to_owned();
        let mut responder = stamp_echo::Responder::new(
            Framing::chunk(),
            std::sync::Arc::new(stamp_echo::stamp::from_fn(move |_, out: &mut String| out.push_str(&stamp_text))),
        );
        let mut reply = Vec::new();
        let mut rest = wire.as_slice();
        for size in server_reads.iter().cycle() {
            if rest.is_empty() { break; }
            let (read, tail) = rest.split_at((*size).min(rest.len()));
            responder.receive(read, std::time::SystemTime::now(), &mut reply).expect("served");
            rest = tail;
        }
        let sent = messages.concat();
        prop_assert!(is_chunk_reply(&reply, &sent), "the oracle takes the server's reply");

        let reads = split_at_points(&reply, &points);
        let mut cut = 0;
        let commits_early = reads.iter().take(reads.len().saturating_sub(1)).any(|r| {
            cut += r.len();
            is_chunk_reply(&reply[..cut], &sent)
        });
        let (result, dropped) = check(&messages, &reads);
        // Past MAX_READINGS open readings the checker keeps the preferred
        // ones (see its docs): only stamps holding `[` get there.
        prop_assert!(dropped == 0 || stamp.contains('['), "readings dropped: {}", dropped);
        if let Ok(answered) = &result {
            prop_assert!(answered.iter().zip(&messages).all(|((m, _), sent)| m == sent));
        }
        if !commits_early && dropped == 0 {
            let answered = result.map_err(|e| TestCaseError::fail(format!("{e:?}: {reply:?}")))?;
            prop_assert_eq!(answered.len(), messages.len());
            for ((message, pieces), this) in answered.iter().zip(&messages) {
                prop_assert_eq!(message, this);
                prop_assert_eq!(pieces.iter().map(|p| p.1).sum::<usize>(), this.len());
                prop_assert!(pieces.iter().all(|p| p.1 > 0));
                // Without `[` in the messages, only the server's headers
                // can be read as headers.
                if !sent.contains(&b'[') {
                    prop_assert!(pieces.iter().all(|p| p.0 == stamp));
                }
            }
        }

        // One byte changed, fed whole.
        let mut corrupt = reply.clone();
        let i = at.index(corrupt.len());
        corrupt[i] = if corrupt[i] == byte { byte.wrapping_add(1) } else { byte };
        let (result, dropped) = check(&messages, &[corrupt.clone()]);
        prop_assert!(dropped == 0 || stamp.contains('['), "readings dropped: {}", dropped);
        let accepted = result.as_ref().is_ok_and(|answered| answered.len() == messages.len());
        let correct = is_chunk_reply(&corrupt, &sent);
        // Never accepts a wrong reply; rejects a right one only past the limit.
        prop_assert!(!accepted || correct, "accepted {:?}", corrupt);
        if dropped == 0 {
            prop_assert_eq!(accepted, correct, "{:?} -> {:?}", corrupt, result);
        }
        if let Ok(answered) = result {
            // Accepted or not, what was answered was answered right.
            for ((message, _), sent) in answered.iter().zip(&messages) {
                prop_assert_eq!(message, sent);
            }
        }
    }
}

/// Whether `replies` is, in full, the correct line or length-framed reply
/// stream to `messages`: one `[STAMP] MESSAGE` per message, in order (a line
/// ending in `\n` or `\r\n`; a 4-byte length prefix). Independent of the
/// checker: cuts the stream by its framing, then compares.
fn is_framed_reply(framing: Framing, replies: &[u8], messages: &[Vec<u8>]) -> bool {
    let mut bodies = Vec::new();
    let mut rest = replies;
    while !rest.is_empty() {
        match framing {
            Framing::Line { .. } => {
                let Some(end) = rest.iter().position(|&b| b == b'\n') else { return false };
                let line = &rest[..end];
                bodies.push(line.strip_suffix(b"\r").unwrap_or(line));
                rest = &rest[end + 1..];
            }
            _ => {
                let Some((prefix, tail)) = rest.split_first_chunk::<4>() else { return false };
                let len = u32::from_be_bytes(*prefix) as usize;
                let Some(body) = tail.get(..len) else { return false };
                bodies.push(body);
                rest = &tail[len..];
            }
        }
    }
    bodies.len() == messages.len()
        && bodies.iter().zip(messages).all(|(body, message)| {
            let Some(close) = body.iter().position(|&b| b == b']') else { return false };
            let stamp = &body[1..close.max(1)];
            body.first() == Some(&b'[')
                && stamp.len() <= 255
                && !stamp.iter().any(|&b| b == b'\r' || b == b'\n')
                && std::str::from_utf8(stamp).is_ok()
                && body.get(close + 1) == Some(&b' ')
                && &body[close + 2..] == message.as_slice()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Line and length framing: the checker accepts a reply stream exactly
    /// when an independent decoder finds it correct, for our server's
    /// replies and for every single-byte change of them, cut into any reads.
    #[test]
    fn reply_checker_accepts_exactly_the_correct_framed_replies(
        framing in prop_oneof![Just(Framing::Line { max_line: 64 }), Just(Framing::LengthPrefixed { max_frame: 64 })],
        messages in prop::collection::vec(interesting_bytes(40), 1..5),
        points in cut_points(),
        at in any::<Index>(),
        byte in prop_oneof![any::<u8>(), Just(b'['), Just(b']'), Just(b' '), Just(b'\n'), Just(b'\r')],
    ) {
        // What line framing cannot carry, made carriable: no `\n`, no final `\r`.
        let messages: Vec<Vec<u8>> = messages
            .into_iter()
            .map(|mut m| {
                if let Framing::Line { .. } = framing {
                    m.retain(|&b| b != b'\n');
                    while m.ends_with(b"\r") { m.pop(); }
                }
                m
            })
            .collect();
        prop_assert!(messages.iter().all(|m| can_carry(framing, m)));
        let mut reply = Vec::new();
        for m in &messages {
            reply.extend(fixed_reply(framing, m, LineEnding::Lf));
        }
        let mut corrupt = reply.clone();
        let i = at.index(corrupt.len());
        corrupt[i] = if corrupt[i] == byte { byte.wrapping_add(1) } else { byte };
        for stream in [reply, corrupt] {
            let mut checker = ReplyChecker::new(framing);
            for m in &messages {
                checker.send(m, &mut Vec::new()).expect("sendable");
            }
            let mut answered = Vec::new();
            let mut result = Ok(());
            'reads: for read in split_at_points(&stream, &points) {
                let mut input = read.as_slice();
                loop {
                    match checker.receive(input) {
                        Err(e) => { result = Err(e); break 'reads; }
                        Ok((consumed, event)) => {
                            input = &input[consumed..];
                            match event {
                                Some(Event::Reply { message, .. }) => answered.push(message.to_vec()),
                                Some(_) => {}
                                None => break,
                            }
                        }
                    }
                }
            }
            let accepted = result.is_ok() && answered.len() == messages.len();
            prop_assert_eq!(accepted, is_framed_reply(framing, &stream, &messages), "{} {:?}: {:?}", framing, stream, result);
            prop_assert!(answered.iter().zip(&messages).all(|(a, m)| a == m));
        }
    }
}

// ---- The tokio driver ----

proptest! {
    #![proptest_config(config())]

    /// The tokio driver answers any input, split into any reads, exactly as
    /// `EchoServer::serve` does over the same reads: the same messages seen,
    /// the same replies, the same ending (an over-long line or frame, a
    /// truncated frame).
    #[test]
    fn the_async_driver_answers_as_the_blocking_server(
        framing in small_framing(),
        input in interesting_bytes(300),
        points in cut_points(),
    ) {
        let reads = split_at_points(&input, &points);
        let got = serve_on(framing, reads.clone(), Runtime::Tokio);
        let expected = serve(framing, reads);
        prop_assert_eq!(got.messages, expected.messages, "{}", framing);
        prop_assert_eq!(got.partial, expected.partial, "{}", framing);
        prop_assert_eq!(String::from_utf8_lossy(&got.output), String::from_utf8_lossy(&expected.output), "{}", framing);
        prop_assert_eq!(got.result, expected.result, "{}", framing);
    }
}

// ---- The tokio codecs ----

/// What `ServerCodec` makes of `reads`, one `decode` per read then
/// `decode_eof` until it has nothing more: the replies, and how it ended.
fn serve_with_codec(framing: Framing, reads: &[Vec<u8>]) -> (Vec<u8>, Result<(), String>) {
    let mut codec = ServerCodec::new(&fixed_server(framing));
    let mut replies = BytesMut::new();
    let mut buffer = BytesMut::new();
    // Decodes (`decode_eof` at the end) and encodes until nothing is left.
    let mut drain = |buffer: &mut BytesMut, eof: bool| -> Result<(), String> {
        loop {
            let decoded = if eof { codec.decode_eof(buffer) } else { codec.decode(buffer) };
            match decoded.map_err(|e| format!("{e:?}"))? {
                Some(stamped) => codec.encode(stamped, &mut replies).map_err(|e| format!("{e:?}"))?,
                None => return Ok(()),
            }
        }
    };
    let mut result = Ok(());
    for read in reads {
        buffer.extend_from_slice(read);
        result = drain(&mut buffer, false);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = drain(&mut buffer, true);
    }
    (replies.to_vec(), result)
}

proptest! {
    #![proptest_config(config())]

    /// `ServerCodec` answers any input, split into any reads, exactly as
    /// `EchoServer::serve` does over the same reads: the same replies, the
    /// same error (an over-long line or frame, a truncated frame).
    #[test]
    fn server_codec_answers_as_the_blocking_server(
        framing in small_framing(),
        input in interesting_bytes(300),
        points in cut_points(),
    ) {
        let reads = split_at_points(&input, &points);
        let Served { output: expected, result: expected_end, .. } = serve(framing, reads.clone());
        let (replies, end) = serve_with_codec(framing, &reads);
        prop_assert_eq!(String::from_utf8_lossy(&replies), String::from_utf8_lossy(&expected), "{}", framing);
        prop_assert_eq!(end, expected_end, "{}", framing);
    }

    /// The codecs round-trip every framing: messages encoded by
    /// `ClientCodec` (pipelined), cut into any reads for `ServerCodec`,
    /// whose replies are cut into any reads for `ClientCodec`, come back as
    /// the messages, in order, stamped; nothing is left over.
    #[test]
    fn codecs_round_trip_every_framing(
        framing in round_trip_framing(),
        messages in prop::collection::vec(interesting_bytes(60), 1..6),
        to_server in cut_points(),
        to_client in cut_points(),
    ) {
        let messages: Vec<Vec<u8>> = messages.into_iter().filter(|m| can_carry(framing, m)).collect();
        let mut client = ClientCodec::new(framing).expect("valid framing");
        let mut wire = BytesMut::new();
        for message in &messages {
            client.encode(message.as_slice(), &mut wire).expect("a message the framing can carry");
        }
        prop_assert_eq!(client.in_flight(), messages.len());
        let (replies, end) = serve_with_codec(framing, &split_at_points(&wire, &to_server));
        prop_assert_eq!(end, Ok(()));
        let reads = split_at_points(&replies, &to_client);
        if let Framing::Chunk { .. } = framing {
            // A chunk reply stream cut where it is already a complete reply to
            // every message is taken there (no client can tell; see
            // `reply_checker_accepts_exactly_the_correct_replies`).
            let sent = messages.concat();
            let mut cut = 0;
            let commits_early = reads.iter().take(reads.len().saturating_sub(1)).any(|r| {
                cut += r.len();
                is_chunk_reply(&replies[..cut], &sent)
            });
            prop_assume!(!commits_early);
        }
        let mut buffer = BytesMut::new();
        let mut got = Vec::new();
        for read in reads {
            buffer.extend_from_slice(&read);
            while let Some(reply) = client.decode(&mut buffer).map_err(|e| TestCaseError::fail(format!("{e:?}")))? {
                prop_assert!(reply.pieces().iter().all(|p| p.stamp == FIXED_CTIME));
                got.push(reply.message().to_vec());
            }
        }
        prop_assert!(matches!(client.decode_eof(&mut buffer), Ok(None)), "{framing}: all answered");
        prop_assert_eq!(got, messages);
        prop_assert!(buffer.is_empty());
    }
}
