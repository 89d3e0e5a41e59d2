use super::*;
use proptest::prelude::*;

/// Feeds `input` in pieces cut at `cuts` (ascending offsets); the header and
/// the offset in `input` where the client's bytes start, or the error.
fn parse_cut(input: &[u8], cuts: &[usize]) -> Result<(ProxyHeader, usize), ProxyError> {
    let mut parser = ProxyParser::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain([input.len()]) {
        let end = end.clamp(start, input.len());
        if let ProxyStatus::Complete { header, consumed } = parser.feed(&input[start..end])? {
            assert!(consumed <= end - start, "took {consumed} of {} bytes", end - start);
            assert_eq!(parser.wanted(), 0);
            return Ok((header, start + consumed));
        }
        assert_eq!(parser.received(), end, "every byte of an incomplete input is the header's");
        start = end;
    }
    parser.finish().map(|header| (header, input.len()))
}

fn parse(input: &[u8]) -> Result<(ProxyHeader, usize), ProxyError> {
    parse_cut(input, &[])
}

/// Parses `input` whole, then cut at every point, and byte by byte: the
/// same outcome every time.
fn parse_everywhere(input: &[u8]) -> Result<(ProxyHeader, usize), ProxyError> {
    let whole = parse(input);
    for cut in 0..=input.len() {
        assert_eq!(parse_cut(input, &[cut]), whole, "cut at {cut} of {:?}", String::from_utf8_lossy(input));
    }
    let every: Vec<usize> = (1..input.len()).collect();
    assert_eq!(parse_cut(input, &every), whole, "byte by byte");
    whole
}

/// A header that must parse whole, with the client's bytes after it kept.
fn header(input: &[u8]) -> ProxyHeader {
    let mut with_data = input.to_vec();
    with_data.extend_from_slice(b"hi\n\r\n\r\n\0\r\nQUIT\n");
    let (header, at) = parse_everywhere(&with_data).expect("a valid header");
    assert_eq!(at, input.len(), "the header ends where it should");
    assert_eq!(header.len, input.len());
    assert_eq!(read_as_wanted(&with_data), Ok((header, input.len())), "reads of `wanted` stop at its end");
    header
}

/// Reads `input` as a driver does, at most `wanted()` at a time: returns the
/// header and how much was read in all.
fn read_as_wanted(input: &[u8]) -> Result<(ProxyHeader, usize), ProxyError> {
    let mut parser = ProxyParser::new();
    let mut read = 0;
    loop {
        let want = parser.wanted();
        assert!(want > 0, "a parser that is not done wants bytes");
        let end = (read + want).min(input.len());
        let status = parser.feed(&input[read..end])?;
        if let ProxyStatus::Complete { header, consumed } = status {
            assert_eq!(consumed, end - read, "a read of `wanted` bytes is all header");
            return Ok((header, end));
        }
        if end == input.len() {
            return parser.finish().map(|h| (h, end));
        }
        read = end;
    }
}

fn error(input: &[u8]) -> ProxyError {
    let whole = parse_everywhere(input);
    whole.expect_err("refused")
}

fn inet(source: &str, destination: &str) -> ProxyAddresses {
    ProxyAddresses::Inet {
        source: source.parse().expect("an address"),
        destination: destination.parse().expect("an address"),
    }
}

/// A version 2 header: command, family and transport byte, address block, TLVs.
fn v2(command: u8, family: u8, block: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x20 | command);
    out.push(family);
    let len = u16::try_from(block.len() + tlvs.len()).expect("a short header");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(block);
    out.extend_from_slice(tlvs);
    out
}

const IPV4_BLOCK: [u8; 12] = [192, 0, 2, 7, 198, 51, 100, 1, 0xdb, 0xf4, 0x01, 0xbb];

fn ipv6_block() -> Vec<u8> {
    let mut block = Vec::new();
    block.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().expect("v6").octets());
    block.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().expect("v6").octets());
    block.extend_from_slice(&[0xdb, 0xf4, 0x01, 0xbb]);
    block
}

fn unix_block(source: &[u8], destination: &[u8]) -> Vec<u8> {
    let mut block = vec![0; UNIX_BLOCK];
    block[..source.len()].copy_from_slice(source);
    block[UNIX_ADDR..UNIX_ADDR + destination.len()].copy_from_slice(destination);
    block
}

/// TLVs as HAProxy sends them: ALPN, authority, a unique id, a NOOP.
fn tlvs() -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, value) in [(0x01, &b"h2"[..]), (0x02, b"example.com"), (0x05, &[7; 128]), (0x04, b"")] {
        out.push(kind);
        out.extend_from_slice(&u16::try_from(value.len()).expect("short").to_be_bytes());
        out.extend_from_slice(value);
    }
    out
}

#[test]
fn v1_tcp4() {
    let header = header(b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n");
    assert_eq!((header.version, header.command), (ProxyVersion::V1, ProxyCommand::Proxy));
    assert_eq!(header.addresses, inet("192.0.2.7:56324", "198.51.100.1:443"));
    assert_eq!(header.source(), Some("192.0.2.7:56324".parse().expect("address")));
    // The extremes: every field at its longest, ports 0 and 65535.
    let longest = header_of(b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 0\r\n");
    assert_eq!(longest.addresses, inet("255.255.255.255:65535", "255.255.255.255:0"));
}

fn header_of(input: &[u8]) -> ProxyHeader {
    header(input)
}

#[test]
fn v1_tcp6() {
    let header = header(b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 443\r\n");
    assert_eq!(header.addresses, inet("[2001:db8::7]:56324", "[2001:db8::1]:443"));
    let full = header_of(
        b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff FFFF:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
    );
    assert_eq!(full.len, 104, "the specification's longest TCP6 line");
}

#[test]
fn v1_unknown_ignores_the_rest_of_the_line() {
    for line in [
        &b"PROXY UNKNOWN\r\n"[..],
        b"PROXY UNKNOWN anything at all, even \x00 or \xff\r\n",
        b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
    ] {
        let header = header(line);
        assert_eq!((header.command, header.addresses, header.source()), (ProxyCommand::Proxy, ProxyAddresses::Unknown, None));
    }
}

#[test]
fn v1_of_107_bytes_is_taken_and_108_is_too_large() {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(MAX_V1_HEADER - 2, b'x');
    line.extend_from_slice(b"\r\n");
    assert_eq!(header(&line).len, MAX_V1_HEADER);
    let mut long = line[..MAX_V1_HEADER - 2].to_vec();
    long.extend_from_slice(b"x\r\n");
    assert_eq!(error(&long), ProxyError::TooLarge { size: 108, max: MAX_V1_HEADER });
    // Refused at the byte that leaves no room, not at the end.
    let mut parser = ProxyParser::new();
    assert!(matches!(parser.feed(&long[..MAX_V1_HEADER - 2]), Ok(ProxyStatus::Incomplete)));
    assert!(parser.feed(b"x").is_err());
    // Never a CRLF at all: refused within the bound.
    let endless = vec![b'x'; 4096];
    let mut parser = ProxyParser::new();
    let mut fed = b"PROXY TCP4 ".to_vec();
    fed.extend_from_slice(&endless);
    assert!(matches!(parser.feed(&fed), Err(ProxyError::TooLarge { .. })));
    assert!(parser.received() <= MAX_V1_HEADER);
}

#[test]
fn v1_malformations_are_each_their_error() {
    let cases: &[(&[u8], ProxyError)] = &[
        (b"PROXY TCP5 192.0.2.7 198.51.100.1 1 2\r\n", ProxyError::V1Protocol),
        (b"PROXY tcp4 192.0.2.7 198.51.100.1 1 2\r\n", ProxyError::V1Protocol),
        (b"PROXY  TCP4 192.0.2.7 198.51.100.1 1 2\r\n", ProxyError::V1Protocol),
        (b"PROXY TCP4\r\n", ProxyError::V1Fields),
        (b"PROXY TCP4 \r\n", ProxyError::V1Fields),
        (b"PROXY TCP4 192.0.2.7 198.51.100.1 1\r\n", ProxyError::V1Fields),
        (b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2 3\r\n", ProxyError::V1Fields),
        (b"PROXY TCP4 192.0.2.7  198.51.100.1 1 2\r\n", ProxyError::V1Fields),
        (b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2 \r\n", ProxyError::V1Fields),
        (b"PROXY TCP4 192.0.2.07 198.51.100.1 1 2\r\n", ProxyError::V1Address),
        (b"PROXY TCP4 192.0.2 198.51.100.1 1 2\r\n", ProxyError::V1Address),
        (b"PROXY TCP4 192.0.2.256 198.51.100.1 1 2\r\n", ProxyError::V1Address),
        (b"PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n", ProxyError::V1Address),
        (b"PROXY TCP6 192.0.2.7 2001:db8::1 1 2\r\n", ProxyError::V1Address),
        (b"PROXY TCP6 2001:db8::7%eth0 2001:db8::1 1 2\r\n", ProxyError::V1Address),
        (b"PROXY TCP6 [2001:db8::7] 2001:db8::1 1 2\r\n", ProxyError::V1Address),
        (b"PROXY TCP6 2001:db8::7::1 2001:db8::1 1 2\r\n", ProxyError::V1Address),
        (b"PROXY TCP4 192.0.2.7 198.51.100.\xff 1 2\r\n", ProxyError::V1Address),
        (b"PROXY TCP4 192.0.2.7 198.51.100.1 080 2\r\n", ProxyError::V1Port),
        (b"PROXY TCP4 192.0.2.7 198.51.100.1 00 2\r\n", ProxyError::V1Port),
        (b"PROXY TCP4 192.0.2.7 198.51.100.1 1 65536\r\n", ProxyError::V1Port),
        (b"PROXY TCP4 192.0.2.7 198.51.100.1 1 99999\r\n", ProxyError::V1Port),
        (b"PROXY TCP4 192.0.2.7 198.51.100.1 1 100000\r\n", ProxyError::V1Port),
        (b"PROXY TCP4 192.0.2.7 198.51.100.1 -1 2\r\n", ProxyError::V1Port),
        (b"PROXY TCP4 192.0.2.7 198.51.100.1 +1 2\r\n", ProxyError::V1Port),
        (b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n", ProxyError::V1LineEnding),
        (b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\r\r\n", ProxyError::V1LineEnding),
        (b"PROXY TCP4 192.0.2.7\r 198.51.100.1 1 2\r\n", ProxyError::V1LineEnding),
        (b"PROXY UNKNOWN\n", ProxyError::V1LineEnding),
        (b"PROXY\r\n", ProxyError::NoSignature),
        (b"PROXZ TCP4\r\n", ProxyError::NoSignature),
        (b"GET / HTTP/1.1\r\n", ProxyError::NoSignature),
        (b"proxy TCP4\r\n", ProxyError::NoSignature),
        (b"hi,server\n", ProxyError::NoSignature),
    ];
    for (input, expected) in cases {
        assert_eq!(error(input), *expected, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn not_a_header_is_refused_at_its_first_byte() {
    for first in [&b"G"[..], b"\r\n\r\n\0\r\nQUIX", b"PROXZ", b"\x00"] {
        let mut parser = ProxyParser::new();
        assert_eq!(parser.feed(first), Err(ProxyError::NoSignature), "{first:?}");
        assert_eq!(parser.feed(b"more"), Err(ProxyError::NoSignature), "refused for good");
        assert_eq!(parser.wanted(), 0);
    }
}

#[test]
fn v2_proxy_over_ipv4_ipv6_and_unix() {
    let ipv4 = header(&v2(1, 0x11, &IPV4_BLOCK, &[]));
    assert_eq!((ipv4.version, ipv4.command), (ProxyVersion::V2, ProxyCommand::Proxy));
    assert_eq!(ipv4.addresses, inet("192.0.2.7:56308", "198.51.100.1:443"));
    // UDP is taken as well: the addresses are what matters.
    assert_eq!(header(&v2(1, 0x12, &IPV4_BLOCK, &[])).addresses, ipv4.addresses);
    let ipv6 = header(&v2(1, 0x21, &ipv6_block(), &[]));
    assert_eq!(ipv6.addresses, inet("[2001:db8::7]:56308", "[2001:db8::1]:443"));
    let unix = header(&v2(1, 0x31, &unix_block(b"/run/client.sock", b"/run/haproxy.sock"), &[]));
    let ProxyAddresses::Unix { source, destination } = unix.addresses else { panic!("unix: {unix:?}") };
    assert_eq!((source.path(), destination.path()), (Some(&b"/run/client.sock"[..]), Some(&b"/run/haproxy.sock"[..])));
    assert_eq!((source.bytes().len(), unix.source()), (UNIX_ADDR, None));
    let unnamed = header(&v2(1, 0x32, &unix_block(b"", b"\0abstract"), &[]));
    let ProxyAddresses::Unix { source, destination } = unnamed.addresses else { panic!("unix") };
    assert_eq!((source.path(), destination.path()), (None, None));
    assert_eq!(format!("{source:?}"), "ProxyUnixAddr(unnamed)");
}

#[test]
fn v2_unspec_and_local_serve_as_the_proxy() {
    // UNSPEC family or transport with PROXY: addresses ignored, whatever the block holds.
    for family in [0x00, 0x10, 0x20, 0x30, 0x01, 0x02] {
        let header = header(&v2(1, family, &[9; 40], &[]));
        assert_eq!((header.command, header.addresses), (ProxyCommand::Proxy, ProxyAddresses::Unknown), "{family:#x}");
    }
    // LOCAL: the block and family are ignored, even unassigned or too short ones.
    for (family, block) in [(0x00, &[][..]), (0x11, &IPV4_BLOCK[..]), (0x11, &[1, 2, 3][..]), (0xff, &[0; 300][..])] {
        let header = header(&v2(0, family, block, &[]));
        assert_eq!((header.command, header.addresses), (ProxyCommand::Local, ProxyAddresses::Unknown));
    }
    // A LOCAL header skips its block unread, however long (within the bound).
    assert_eq!(header(&v2(0, 0x00, &[0xee; 1240], &[])).len, MAX_V2_HEADER);
}

#[test]
fn v2_tlvs_are_skipped_and_must_fit() {
    let with = header(&v2(1, 0x11, &IPV4_BLOCK, &tlvs()));
    assert_eq!(with.addresses, inet("192.0.2.7:56308", "198.51.100.1:443"));
    // A TLV whose value runs past the header.
    let mut long = tlvs();
    long.extend_from_slice(&[0x02, 0x00, 0x05, b'a', b'b']);
    assert_eq!(error(&v2(1, 0x11, &IPV4_BLOCK, &long)), ProxyError::V2Tlv);
    // A header that ends inside a TLV's type and length.
    for partial in [&[0x01][..], &[0x01, 0x00]] {
        let mut cut = tlvs();
        cut.extend_from_slice(partial);
        assert_eq!(error(&v2(1, 0x21, &ipv6_block(), &cut)), ProxyError::V2Tlv, "{partial:?}");
    }
    // The most TLVs taken, after the largest address block.
    let mut most = Vec::new();
    for _ in 0..4 {
        most.extend_from_slice(&[0x04, 0x00, 0xfd]);
        most.extend_from_slice(&[0; 253]);
    }
    assert_eq!(most.len(), MAX_V2_TLVS);
    assert_eq!(header(&v2(1, 0x31, &unix_block(b"/a", b"/b"), &most)).len, MAX_V2_HEADER);
}

#[test]
fn v2_malformations_are_each_their_error() {
    let mut version1 = v2(1, 0x11, &IPV4_BLOCK, &[]);
    version1[12] = 0x11;
    let mut version3 = version1.clone();
    version3[12] = 0x31;
    let cases = [
        (version1, ProxyError::V2Version { version: 1 }),
        (version3, ProxyError::V2Version { version: 3 }),
        (v2(2, 0x11, &IPV4_BLOCK, &[]), ProxyError::V2Command { command: 2 }),
        (v2(0xf, 0x11, &IPV4_BLOCK, &[]), ProxyError::V2Command { command: 15 }),
        (v2(1, 0x41, &IPV4_BLOCK, &[]), ProxyError::V2Family { family: 4 }),
        (v2(1, 0xf1, &IPV4_BLOCK, &[]), ProxyError::V2Family { family: 15 }),
        (v2(1, 0x13, &IPV4_BLOCK, &[]), ProxyError::V2Transport { transport: 3 }),
        (v2(1, 0x11, &IPV4_BLOCK[..11], &[]), ProxyError::V2AddressTooShort { len: 11, need: 12 }),
        (v2(1, 0x21, &IPV4_BLOCK, &[]), ProxyError::V2AddressTooShort { len: 12, need: 36 }),
        (v2(1, 0x31, &ipv6_block(), &[]), ProxyError::V2AddressTooShort { len: 36, need: 216 }),
        (v2(1, 0x11, &[0; 1241], &[]), ProxyError::TooLarge { size: 1257, max: MAX_V2_HEADER }),
        (v2(0, 0x00, &[0; 60000], &[]), ProxyError::TooLarge { size: 60016, max: MAX_V2_HEADER }),
    ];
    for (input, expected) in cases {
        assert_eq!(error(&input), expected);
    }
    // Too large is known from the 16 bytes alone, before any of the rest.
    let mut parser = ProxyParser::new();
    let huge = v2(0, 0x00, &[0; 60000], &[]);
    assert!(matches!(parser.feed(&huge[..16]), Err(ProxyError::TooLarge { .. })));
}

#[test]
fn input_ending_inside_a_header_is_truncated() {
    let whole = v2(1, 0x11, &IPV4_BLOCK, &tlvs());
    for end in 0..whole.len() {
        assert_eq!(parse(&whole[..end]), Err(ProxyError::Truncated { received: end }), "{end}");
    }
    let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n";
    for end in 0..line.len() {
        assert_eq!(parse(&line[..end]), Err(ProxyError::Truncated { received: end }), "{end}");
    }
}

#[test]
fn a_complete_parser_gives_its_header_again_taking_nothing() {
    let mut parser = ProxyParser::new();
    let line = b"PROXY UNKNOWN\r\nhi";
    let Ok(ProxyStatus::Complete { header, consumed: 15 }) = parser.feed(line) else { panic!("complete") };
    assert_eq!(parser.feed(b"more"), Ok(ProxyStatus::Complete { header, consumed: 0 }));
    assert_eq!(parser.finish(), Ok(header));
    assert_eq!(parser.feed(b""), Ok(ProxyStatus::Complete { header, consumed: 0 }));
}

#[test]
fn the_parser_stays_small() {
    assert!(size_of::<ProxyParser>() < 600, "{} bytes", size_of::<ProxyParser>());
}

#[test]
fn signatures_are_told_from_a_first_read() {
    assert!(has_signature(b"PROXY TCP4 1.2.3.4"));
    assert!(has_signature(&v2(1, 0x11, &IPV4_BLOCK, &[])));
    assert!(has_signature(&V2_SIGNATURE));
    assert!(!has_signature(b"PROXY"));
    assert!(!has_signature(b"hi,server\n"));
    assert!(!has_signature(&V2_SIGNATURE[..11]));
}

/// Inputs near the headers: valid ones of each kind, with some bytes
/// changed, cut short or followed by more.
fn near_headers() -> impl Strategy<Value = Vec<u8>> {
    let valid = prop_oneof![
        Just(b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n".to_vec()),
        Just(b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 443\r\n".to_vec()),
        Just(b"PROXY UNKNOWN\r\n".to_vec()),
        Just(v2(1, 0x11, &IPV4_BLOCK, &tlvs())),
        Just(v2(1, 0x21, &ipv6_block(), &[])),
        Just(v2(1, 0x31, &unix_block(b"/a", b"/b"), &[1, 0, 1, 9])),
        Just(v2(0, 0x00, &[], &[])),
    ];
    (valid, prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3), any::<prop::sample::Index>())
        .prop_map(|(mut bytes, changes, end)| {
            for (at, byte) in changes {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            bytes.extend_from_slice(b"tail bytes");
            let end = end.index(bytes.len() + 1);
            bytes.truncate(end);
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Feeding in pieces is feeding whole, for bytes near headers and any bytes.
    #[test]
    fn pieces_are_the_whole(
        input in prop_oneof![near_headers(), prop::collection::vec(any::<u8>(), 0..300)],
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        cuts.sort_unstable();
        let whole = parse(&input);
        prop_assert_eq!(parse_cut(&input, &cuts), whole);
        if let Ok((header, at)) = whole {
            prop_assert_eq!(header.len, at);
            prop_assert_eq!(read_as_wanted(&input), Ok((header, at)));
        }
    }
}
