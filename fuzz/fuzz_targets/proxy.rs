//! `proxy::ProxyParser`: never panics; gives the same header (or error)
//! however the input is split into reads; a header's length is where the
//! client's bytes start, within the bounds (107 bytes for version 1,
//! `MAX_V2_HEADER` for version 2); reading at most `wanted()` at a time never
//! reads past the header; an error is never later than the bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stamp_echo::proxy::{
    MAX_V1_HEADER, MAX_V2_HEADER, ProxyError, ProxyHeader, ProxyParser, ProxyStatus, ProxyVersion,
};
use stamp_echo_fuzz::Case;

/// The header and where the client's bytes start, or the error.
fn parse(reads: &[&[u8]]) -> Result<(ProxyHeader, usize), ProxyError> {
    let mut parser = ProxyParser::new();
    let mut offset = 0;
    for read in reads {
        match parser.feed(read)? {
            ProxyStatus::Complete { header, consumed } => {
                assert!(consumed <= read.len());
                assert_eq!(parser.wanted(), 0);
                return Ok((header, offset + consumed));
            }
            ProxyStatus::Incomplete => {
                offset += read.len();
                assert_eq!(parser.received(), offset, "an incomplete input is all header");
                assert!(offset <= MAX_V2_HEADER, "{offset} bytes taken without a verdict");
                assert!(parser.wanted() > 0);
            }
        }
    }
    parser.finish().map(|header| (header, offset))
}

/// Reads as a driver does, at most `wanted()` at a time.
fn parse_as_wanted(data: &[u8]) -> Result<(ProxyHeader, usize), ProxyError> {
    let mut parser = ProxyParser::new();
    let mut read = 0;
    while read < data.len() {
        let end = (read + parser.wanted()).min(data.len());
        if let ProxyStatus::Complete { header, consumed } = parser.feed(&data[read..end])? {
            assert_eq!(consumed, end - read, "a read of `wanted` bytes went past the header");
            return Ok((header, end));
        }
        read = end;
    }
    parser.finish().map(|header| (header, read))
}

fuzz_target!(|input: &[u8]| {
    // The framing bytes of the shared layout are ignored; the read sizes are used.
    let Some(case) = Case::parse(input) else { return };
    let whole = parse(&[case.data]);
    assert_eq!(parse(&case.reads()), whole, "split {:?}", case.sizes);
    assert_eq!(parse_as_wanted(case.data), whole);
    if let Ok((header, at)) = whole {
        assert_eq!(header.len, at);
        let max = match header.version {
            ProxyVersion::V1 => MAX_V1_HEADER,
            _ => MAX_V2_HEADER,
        };
        assert!(at <= max, "a header of {at} bytes over {max}");
    }
});
