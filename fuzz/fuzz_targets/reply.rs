//! `reply::ReplyChecker`: accepts the replies a `Responder` gives to the
//! messages sent, in order, however the server's reads split the messages, in
//! work linear in the bytes received; in line and length-prefixed framing
//! also however our reads split the replies. In chunk framing a reply stream
//! cut by our reads is either accepted with the same replies or refused: the
//! checker documents that it takes a reading that answers every message in
//! flight at the end of a read, before bytes that would show the server cut
//! differently ("Limits of exactness" in its module docs). And for any bytes
//! at all as replies it never panics.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use stamp_echo::protocol::Responder;
use stamp_echo::reply::{Event, ReplyChecker};
use stamp_echo::stamp::Ctime;
use stamp_echo::{Error, Framing, ProtocolError};
use stamp_echo_fuzz::Case;

/// Most steps the checker may take per byte received (it follows at most 64
/// readings of a chunk reply stream at once, each advanced once per byte).
const STEPS_PER_BYTE: u64 = 128;

/// Feeds `replies` to `checker` in reads cut at `cuts`, collecting each
/// completed reply's message and number.
fn check(checker: &mut ReplyChecker, replies: &[u8], cuts: &[usize]) -> Result<Vec<(Vec<u8>, u64)>, Error> {
    let mut done = Vec::new();
    let mut rest = replies;
    for &cut in cuts.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (read, tail) = rest.split_at(cut.clamp(1, rest.len()));
        rest = tail;
        let mut input = read;
        loop {
            let (taken, event) = checker.receive(input)?;
            input = &input[taken..];
            match event {
                Some(Event::Reply { message, seq, .. }) => done.push((message.to_vec(), seq)),
                Some(_) => {}
                None => break,
            }
        }
    }
    Ok(done)
}

/// A checker that has sent `messages`.
fn sent_all(framing: Framing, messages: &[Vec<u8>]) -> ReplyChecker {
    let mut checker = ReplyChecker::new(framing);
    let mut wire = Vec::new();
    for message in messages {
        checker.send(message, &mut wire).expect("sendable, as before");
    }
    checker
}

fuzz_target!(|input: &[u8]| {
    let Some(case) = Case::parse(input) else { return };
    let framing = case.framing;
    // The messages: the data cut at each 0xFE byte; the ones the framing
    // cannot carry as one message are refused by `send` and left out.
    let mut probe = ReplyChecker::new(framing);
    let mut wire = Vec::new();
    let mut sent = Vec::new();
    for message in case.data.split(|&b| b == 0xFE) {
        if probe.send(message, &mut wire).is_ok() {
            sent.push(message.to_vec());
        }
    }
    // The server reads the wire as the case says and answers.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_359_885_618);
    let mut responder = Responder::new(framing, Arc::new(Ctime::utc()));
    let mut replies = Vec::new();
    for read in case.reads_of(&wire) {
        responder.receive(read, now, &mut replies).expect("the server answers every sendable message");
    }
    let want: Vec<(Vec<u8>, u64)> = sent.iter().cloned().zip(0..).collect();

    // The whole stream in one read of ours.
    let mut whole = sent_all(framing, &sent);
    let done = check(&mut whole, &replies, &[usize::MAX]);
    if whole.readings_dropped() == 0 {
        assert_eq!(done.expect("the true replies are accepted"), want, "every message's reply, in order");
        assert_eq!(whole.in_flight(), 0);
    }
    assert!(whole.steps() <= STEPS_PER_BYTE * (replies.len() as u64 + 1), "{} steps", whole.steps());

    // Our reads cut differently from the server's.
    let cuts = [case.sizes[3], case.sizes[0], case.sizes[2], case.sizes[1]].map(|s| s * 3 + 1);
    let mut cut = sent_all(framing, &sent);
    match (check(&mut cut, &replies, &cuts), framing) {
        (Ok(done), _) => assert_eq!(done, want, "accepted when cut: the same replies"),
        (Err(Error::Protocol(ProtocolError::MalformedReply(_) | ProtocolError::EchoMismatch { .. })), Framing::Chunk { .. }) => {}
        (Err(err), _) => panic!("refused when cut by {cuts:?}: {err:?}"),
    }

    // Any bytes as replies: an error or replies, never a panic.
    let mut any = sent_all(framing, &sent);
    let _ = check(&mut any, case.data, &cuts);
});
