//! The original tutorial's defects (see `tests/python/`, the original), each
//! pinned by a test that would fail if this crate had it. Over TCP on port 0,
//! served by the library's runner as a real server runs it; in memory too
//! where the in-memory stream decides the splits exactly. Every test runs on
//! both runtimes: the thread runner and blocking driver, and the tokio ones.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::Shutdown;

use common::{
    FIXED_CTIME, Kind, Loopback, Runtime, connect, fixed_reply, fixed_server, next_closed, next_closed_cleanly,
    send_all_and_read_replies, serve_in_memory, split_pieces, start_on,
};
use stamp_echo::ProtocolError;
use stamp_echo::framing::LineEnding;
use stamp_echo::testing::Duplex;
use stamp_echo::{EchoClient, Error, Framing, Limits};

/// Defect 1: the original serves one client, then dies on the next accept().
fn a_second_client_is_served_after_the_first_leaves(runtime: Runtime) {
    let (_server, addr, events) = start_on(runtime, fixed_server(Framing::chunk()), Limits::default());
    for (i, message) in [&b"first client"[..], b"second client", b"third client"].into_iter().enumerate() {
        let mut client = EchoClient::new(connect(addr), Framing::chunk()).expect("valid framing");
        let reply = client.round_trip(message).unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(reply.message(), message);
        assert_eq!(reply.stamp(), FIXED_CTIME);
        drop(client);
        let summary = next_closed_cleanly(&events);
        assert_eq!((summary.messages, summary.bytes_in), (1, message.len() as u64));
    }
}

/// Defect 2: the original serves one client at a time; a second one waits.
fn two_clients_connected_at_once_both_get_answers(runtime: Runtime) {
    let (_server, addr, events) = start_on(runtime, fixed_server(Framing::line()), Limits::default());
    let mut first = EchoClient::new(connect(addr), Framing::line()).expect("valid framing");
    let mut second = EchoClient::new(connect(addr), Framing::line()).expect("valid framing");
    // The second is answered while the first is still connected and idle...
    assert_eq!(second.round_trip(b"from the second").expect("second answered").message(), b"from the second");
    // ...and the first is answered while the second is still connected.
    assert_eq!(first.round_trip(b"from the first").expect("first answered").message(), b"from the first");
    assert_eq!(second.round_trip(b"again").expect("second again").message(), b"again");
    drop(second);
    assert_eq!(next_closed_cleanly(&events).messages, 2, "the second ended cleanly");
    drop(first);
    assert_eq!(next_closed_cleanly(&events).messages, 1, "the first ended cleanly");
}

/// Defect 3: no message boundaries. In line framing two messages in one
/// write are two messages, each answered once.
fn line_framing_answers_two_messages_sent_in_one_write_each_once(runtime: Runtime) {
    let expected =
        [fixed_reply(Framing::line(), b"one", LineEnding::Lf), fixed_reply(Framing::line(), b"two", LineEnding::CrLf)]
            .concat();
    let (_server, addr, events) = start_on(runtime, fixed_server(Framing::line()), Limits::default());
    let replies = send_all_and_read_replies(&mut connect(addr), b"one\ntwo\r\n");
    assert_eq!(String::from_utf8_lossy(&replies), String::from_utf8_lossy(&expected));
    assert_eq!(next_closed_cleanly(&events).messages, 2);

    let mut stream = Duplex::from_reads([b"one\ntwo\r\n".to_vec()]);
    serve_in_memory(runtime, &fixed_server(Framing::line()), &mut stream).expect("valid input");
    assert_eq!(stream.output(), expected);
}

/// Defect 3: ...and one message sent across many writes is one message.
fn line_framing_answers_one_message_sent_across_many_writes_once(runtime: Runtime) {
    let message = "hello, 世界".as_bytes();
    let expected = fixed_reply(Framing::line(), message, LineEnding::Lf);
    let (_server, addr, events) = start_on(runtime, fixed_server(Framing::line()), Limits::default());
    let mut stream = connect(addr);
    stream.set_nodelay(true).expect("no delay");
    for byte in message.iter().chain(b"\n") {
        stream.write_all(&[*byte]).expect("send one byte");
    }
    stream.shutdown(Shutdown::Write).expect("shutdown");
    let mut replies = Vec::new();
    stream.read_to_end(&mut replies).expect("replies");
    assert_eq!(replies, expected);
    assert_eq!(next_closed_cleanly(&events).messages, 1);

    // In memory the splits are certain: one byte per read.
    let mut stream = Duplex::from_reads(message.iter().chain(b"\n").map(|b| vec![*b]));
    let summary = serve_in_memory(runtime, &fixed_server(Framing::line()), &mut stream).expect("valid input");
    assert_eq!(stream.output(), expected);
    assert_eq!(summary.messages, 1);
}

/// Defect 3: the original client reads a reply with one recv(1024), so a
/// longer reply is cut. Ours reassembles a 64 KiB echo from its pieces.
fn the_client_reassembles_a_64_kib_message_from_stamped_pieces(runtime: Runtime) {
    let message: Vec<u8> = (0..64 * 1024).map(|i| b"0123456789abcdef"[i % 16]).collect();
    let check = |reply: &stamp_echo::Reply| {
        assert_eq!(reply.message(), message.as_slice());
        assert!(reply.pieces().len() >= 64, "one piece per 1024-byte read at most: {}", reply.pieces().len());
        assert!(reply.pieces().iter().all(|p| p.stamp == FIXED_CTIME && (1..=1024).contains(&p.len)));
        assert_eq!(reply.pieces().iter().map(|p| p.len).sum::<usize>(), message.len());
    };

    let (_server, addr, _events) = start_on(runtime, fixed_server(Framing::chunk()), Limits::default());
    let mut client = EchoClient::new(connect(addr), Framing::chunk()).expect("valid framing");
    check(&client.round_trip(&message).expect("64 KiB round trip over TCP"));
    // The stream is left clean: the next round trip is answered on its own.
    assert_eq!(client.round_trip(b"next").expect("next round trip").message(), b"next");

    let mut client = EchoClient::new(Loopback::new(Framing::chunk(), vec![1024]), Framing::chunk()).expect("valid");
    let reply = client.round_trip(&message).expect("64 KiB round trip in memory");
    check(&reply);
    assert_eq!(reply.pieces().len(), 64);
}

/// Defect 4: a UTF-8 character split across two recv(1024) calls crashed
/// the original. Ours echoes 1200 bytes of 你好 whole, never splitting a
/// character across pieces.
fn nihao_1200_bytes_is_echoed_whole_in_whole_characters(runtime: Runtime) {
    let message = "你好".repeat(200);
    assert_eq!(message.len(), 1200);
    let check_pieces = |replies: &[u8]| {
        let pieces = split_pieces(replies);
        assert!(pieces.len() >= 2, "1200 bytes take two 1024-byte reads");
        let mut echoed = Vec::new();
        for (stamp, piece) in &pieces {
            assert_eq!(stamp, FIXED_CTIME);
            assert!(std::str::from_utf8(piece).is_ok(), "piece of {} bytes splits a character", piece.len());
            echoed.extend_from_slice(piece);
        }
        assert_eq!(echoed, message.as_bytes());
        pieces.len()
    };

    let (_server, addr, events) = start_on(runtime, fixed_server(Framing::chunk()), Limits::default());
    check_pieces(&send_all_and_read_replies(&mut connect(addr), message.as_bytes()));
    assert_eq!(next_closed_cleanly(&events).bytes_in, 1200, "the server survives");

    // In memory, the read of 1024 bytes certainly ends inside a character
    // (1024 = 3 * 341 + 1), as the original's recv(1024) did.
    let mut stream = Duplex::from_reads([message.as_bytes().to_vec()]);
    serve_in_memory(runtime, &fixed_server(Framing::chunk()), &mut stream).expect("valid input");
    assert_eq!(check_pieces(stream.output()), 2);
    assert_eq!(
        &stream.output()[..27 + 1023],
        fixed_reply(Framing::chunk(), &message.as_bytes()[..1023], LineEnding::None)
    );

    // Our client checks the same, in one call.
    let mut client = EchoClient::new(connect(addr), Framing::chunk()).expect("valid framing");
    let reply = client.round_trip(message.as_bytes()).expect("round trip");
    assert_eq!(reply.message(), message.as_bytes());
    assert!(reply.to_string().contains(&"你好".repeat(100)));
}

/// Defect 5: no limits. An endless line is an error for that connection
/// only, found at the limit; another connection keeps being served.
fn an_over_long_line_ends_that_connection_only(runtime: Runtime) {
    let max_line = 1000;
    let (_server, addr, events) = start_on(runtime, fixed_server(Framing::Line { max_line }), Limits::default());
    let mut bystander = EchoClient::new(connect(addr), Framing::line()).expect("valid framing");
    assert!(bystander.round_trip(b"before").is_ok());

    let mut input = b"fine\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', max_line + 1)); // no newline: over the limit
    let replies = send_all_and_read_replies(&mut connect(addr), &input);
    // The whole message before the bad line was answered, once; the bad line
    // was answered as it streamed in, up to the limit and no further.
    let mut expected = fixed_reply(Framing::line(), b"fine", LineEnding::Lf);
    expected.extend(fixed_reply(Framing::chunk(), &input[5..5 + max_line], LineEnding::None));
    assert_eq!(replies, expected);
    assert_eq!(next_closed(&events).2, Some(Kind::LineTooLong { max: 1000 }));

    assert_eq!(bystander.round_trip(b"after").expect("still served").message(), b"after");
    let mut newcomer = EchoClient::new(connect(addr), Framing::line()).expect("valid framing");
    assert_eq!(newcomer.round_trip(&[b'y'; 1000]).expect("a line at the limit is fine").message(), [b'y'; 1000]);
}

/// Found by `line_replies_do_not_depend_on_the_split` in tests/properties.rs:
/// a last line without a newline may hold one byte over the limit while it
/// ends in `\r` (the start of a `\r\n`); when the input ends there, that `\r`
/// is content, and the line is over the limit.
fn a_last_line_over_the_limit_is_refused_even_when_it_ends_in_cr(runtime: Runtime) {
    let framing = Framing::Line { max_line: 4 };
    let mut stream = Duplex::from_reads([b"ok\nabcd\r".to_vec()]);
    let result = serve_in_memory(runtime, &fixed_server(framing), &mut stream);
    assert!(matches!(result, Err(Error::Protocol(ProtocolError::LineTooLong { max: 4 }))), "{result:?}");
    // The bad line's reply was streamed up to the limit: header and 4 bytes.
    let expected = [fixed_reply(framing, b"ok", LineEnding::Lf), fixed_reply(framing, b"abcd", LineEnding::None)];
    assert_eq!(stream.output(), expected.concat());
    // At the limit it is answered, `\r` and all.
    let mut stream = Duplex::from_reads([b"abc\r".to_vec()]);
    serve_in_memory(runtime, &fixed_server(framing), &mut stream).expect("a last line at the limit");
    assert_eq!(stream.output(), fixed_reply(framing, b"abc\r", LineEnding::None));
}

/// Defect 5: no limits. A length prefix over the limit is an error for that
/// connection only, from its four bytes alone; another keeps being served.
fn an_over_large_length_prefix_ends_that_connection_only(runtime: Runtime) {
    let framing = Framing::LengthPrefixed { max_frame: 4096 };
    let (_server, addr, events) = start_on(runtime, fixed_server(framing), Limits::default());
    let mut bystander = EchoClient::new(connect(addr), framing).expect("valid framing");
    assert!(bystander.round_trip(b"before").is_ok());

    let mut input = Vec::new();
    common::frame(framing, b"fine", &mut input);
    input.extend_from_slice(&u32::MAX.to_be_bytes()); // 4 GiB declared, nothing sent
    let replies = send_all_and_read_replies(&mut connect(addr), &input);
    assert_eq!(replies, fixed_reply(framing, b"fine", LineEnding::None));
    assert_eq!(next_closed(&events).2, Some(Kind::FrameTooLarge { declared: 0xFFFF_FFFF, max: 4096 }));

    assert_eq!(bystander.round_trip(b"after").expect("still served").message(), b"after");
    drop(bystander);
    next_closed_cleanly(&events);

    // In memory: the error comes from the prefix before any payload arrives.
    let mut stream = Duplex::from_reads([vec![0, 0, 0x10, 0x01]]);
    let result = serve_in_memory(runtime, &fixed_server(framing), &mut stream);
    assert!(
        matches!(result, Err(Error::Protocol(ProtocolError::FrameTooLarge { declared: 4097, max: 4096 }))),
        "{result:?}"
    );
    assert!(stream.output().is_empty());
}

on_both_runtimes!(
    a_second_client_is_served_after_the_first_leaves,
    two_clients_connected_at_once_both_get_answers,
    line_framing_answers_two_messages_sent_in_one_write_each_once,
    line_framing_answers_one_message_sent_across_many_writes_once,
    the_client_reassembles_a_64_kib_message_from_stamped_pieces,
    nihao_1200_bytes_is_echoed_whole_in_whole_characters,
    an_over_long_line_ends_that_connection_only,
    a_last_line_over_the_limit_is_refused_even_when_it_ends_in_cr,
    an_over_large_length_prefix_ends_that_connection_only,
);
