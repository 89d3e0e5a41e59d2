//! The PROXY protocol (HAProxy's, versions 1 and 2), with no I/O: the header
//! a load balancer puts in front of a connection to say who the real client
//! is.
//!
//! [`ProxyParser`] takes the connection's first bytes as they arrive, split
//! anywhere, and returns the [`ProxyHeader`] once it is whole, with how many
//! of the last bytes given were the header's: the rest are the client's and
//! go to the echo core untouched. It never allocates, never reads past the
//! header if the caller reads no more than [`ProxyParser::wanted`] at a
//! time, and every malformed or oversized header is a [`ProxyError`].
//!
//! ```
//! use std::net::SocketAddr;
//! use stamp_echo::proxy::{ProxyParser, ProxyStatus};
//!
//! let mut parser = ProxyParser::new();
//! assert_eq!(parser.feed(b"PROXY TCP4 192.0.2.7 198.51.100.1 5")?, ProxyStatus::Incomplete);
//! let ProxyStatus::Complete { header, consumed } = parser.feed(b"6324 443\r\nhi\n")? else {
//!     panic!("a whole header")
//! };
//! assert_eq!(header.source(), Some("192.0.2.7:56324".parse::<SocketAddr>()?));
//! assert_eq!(&b"6324 443\r\nhi\n"[consumed..], b"hi\n"); // the client's first bytes
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is taken, following the specification to the letter
//!
//! - **Version 1**: `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n`, exactly one
//!   space between fields, canonical addresses of the named family, ports
//!   from 0 to 65535 without leading zeros, at most [`MAX_V1_HEADER`] (107)
//!   bytes with the CRLF; a lone CR or LF is an error. `PROXY UNKNOWN` and
//!   anything up to the CRLF gives [`ProxyAddresses::Unknown`].
//! - **Version 2**: the 12-byte signature `\r\n\r\n\0\r\nQUIT\n`, version 2,
//!   command LOCAL or PROXY, a family (UNSPEC, INET, INET6, UNIX) and a
//!   transport (UNSPEC, STREAM, DGRAM) from the assigned values, and a length
//!   that covers the family's address block. A LOCAL header's block is
//!   skipped unread, as the specification says; so is the block of an UNSPEC
//!   family or transport ([`ProxyAddresses::Unknown`]). After the addresses
//!   of a PROXY header, the TLVs are skipped, but each must fit within the
//!   header (their values, the CRC32C one included, are not checked).
//! - **Bounds**: a version 2 header is at most [`MAX_V2_HEADER`] bytes (the
//!   16-byte fixed part, the largest address block, 216 bytes for AF_UNIX,
//!   and [`MAX_V2_TLVS`], 1 KiB, of TLVs): a longer declared length is
//!   [`ProxyError::TooLarge`] as soon as the 16 bytes are in. The parser
//!   keeps at most 232 bytes (the fixed part and the addresses); TLVs are
//!   counted, not kept.
//! - **Early refusal**: the first byte that cannot begin a header (or
//!   continue it) is an error at once, as the specification recommends, so a
//!   peer that is not a proxy is told on its first read.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest version 1 header, CRLF included (the specification's worst
/// case, `PROXY UNKNOWN` with two full IPv6 addresses and ports).
pub const MAX_V1_HEADER: usize = 107;

/// The most bytes of TLVs a version 2 header may carry.
pub const MAX_V2_TLVS: usize = 1024;

/// The longest version 2 header taken: the 16-byte fixed part, the largest
/// address block (216 bytes, AF_UNIX) and [`MAX_V2_TLVS`].
pub const MAX_V2_HEADER: usize = V2_FIXED + UNIX_BLOCK + MAX_V2_TLVS;

/// The signature that starts a version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// What starts a version 1 header.
const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// The fixed part of a version 2 header.
const V2_FIXED: usize = 16;

/// The length of one AF_UNIX address in a version 2 header.
const UNIX_ADDR: usize = 108;

/// The AF_UNIX address block: two addresses.
const UNIX_BLOCK: usize = 2 * UNIX_ADDR;

/// The shortest version 1 header (`PROXY UNKNOWN\r\n`).
const MIN_V1_HEADER: usize = 15;

/// The bytes the parser keeps: a version 1 line, or a version 2 fixed part
/// and its largest address block.
const KEPT: usize = V2_FIXED + UNIX_BLOCK;

/// Why a PROXY protocol header was refused. The connection should be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The connection does not start with `PROXY ` (version 1) or the
    /// version 2 signature.
    #[error("no PROXY protocol header: the connection does not start with a version 1 or 2 signature")]
    NoSignature,
    /// The header is longer than the bound: a version 1 line with no CRLF in
    /// its first [`MAX_V1_HEADER`] bytes, or a version 2 header whose length
    /// field declares more than [`MAX_V2_HEADER`] bytes.
    #[error("PROXY protocol header of {size} bytes or more is over the limit of {max} bytes")]
    TooLarge {
        /// The size seen or declared.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// The input ended inside the header.
    #[error("input ended inside a PROXY protocol header, after {received} bytes")]
    Truncated {
        /// Bytes of the header that arrived.
        received: usize,
    },
    /// A version 1 line with a CR not followed by LF, or an LF not after a CR.
    #[error("PROXY v1 header: a CR or LF that is not the CRLF ending the line")]
    V1LineEnding,
    /// A version 1 protocol other than `TCP4`, `TCP6` and `UNKNOWN`.
    #[error("PROXY v1 header: the protocol is not TCP4, TCP6 or UNKNOWN")]
    V1Protocol,
    /// A version 1 line without exactly four fields after the protocol,
    /// separated by exactly one space.
    #[error("PROXY v1 header: not exactly four fields after the protocol, one space apart")]
    V1Fields,
    /// A version 1 address that is not a canonical address of the family
    /// named (IPv4 for `TCP4`, IPv6 for `TCP6`).
    #[error("PROXY v1 header: an address is not a canonical address of the protocol's family")]
    V1Address,
    /// A version 1 port that is not a decimal number from 0 to 65535 without
    /// leading zeros.
    #[error("PROXY v1 header: a port is not a number from 0 to 65535 without leading zeros")]
    V1Port,
    /// A version 2 header whose version (the high 4 bits of its 13th byte)
    /// is not 2.
    #[error("PROXY v2 header: version {version}, expected 2")]
    V2Version {
        /// The version given.
        version: u8,
    },
    /// A version 2 command other than LOCAL (0) and PROXY (1).
    #[error("PROXY v2 header: unassigned command {command}")]
    V2Command {
        /// The command given.
        command: u8,
    },
    /// A version 2 PROXY header's address family is not UNSPEC (0), INET
    /// (1), INET6 (2) or UNIX (3).
    #[error("PROXY v2 header: unassigned address family {family}")]
    V2Family {
        /// The family given.
        family: u8,
    },
    /// A version 2 PROXY header's transport is not UNSPEC (0), STREAM (1)
    /// or DGRAM (2).
    #[error("PROXY v2 header: unassigned transport {transport}")]
    V2Transport {
        /// The transport given.
        transport: u8,
    },
    /// A version 2 header's length does not cover its family's addresses.
    #[error("PROXY v2 header: length {len} is shorter than the {need} bytes of its addresses")]
    V2AddressTooShort {
        /// The length declared.
        len: usize,
        /// The bytes the family's addresses take.
        need: usize,
    },
    /// A TLV of a version 2 header runs past the header's end.
    #[error("PROXY v2 header: a TLV runs past the end of the header")]
    V2Tlv,
    /// A PROXY protocol header came from a peer that is not a trusted proxy:
    /// it is refused, never honoured.
    #[error("PROXY protocol header from a peer that is not a trusted proxy")]
    Untrusted,
}

/// The version of a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyVersion {
    /// The text line, `PROXY ...\r\n`.
    V1,
    /// The binary header.
    V2,
}

/// What the proxy says the connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyCommand {
    /// Version 2 LOCAL: the proxy opened the connection itself (a health
    /// check); its addresses are ignored and the connection is the proxy's.
    Local,
    /// Relayed on behalf of a client: the addresses, when known, are the
    /// client's (every version 1 header).
    Proxy,
}

/// An AF_UNIX address of a version 2 header: 108 bytes, as `sun_path`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProxyUnixAddr([u8; UNIX_ADDR]);

impl ProxyUnixAddr {
    /// The 108 bytes as sent.
    pub fn bytes(&self) -> &[u8; UNIX_ADDR] {
        &self.0
    }

    /// The path, up to its first NUL; `None` for an unnamed or abstract
    /// socket (the first byte is NUL).
    pub fn path(&self) -> Option<&[u8]> {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(UNIX_ADDR);
        (end > 0).then(|| &self.0[..end])
    }
}

impl fmt::Debug for ProxyUnixAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path() {
            Some(path) => write!(f, "ProxyUnixAddr({:?})", String::from_utf8_lossy(path)),
            None => f.write_str("ProxyUnixAddr(unnamed)"),
        }
    }
}

/// The connection's endpoints, as the proxy tells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyAddresses {
    /// None given, or to be ignored: version 1 `UNKNOWN`; version 2 LOCAL,
    /// or an UNSPEC family or transport. The connection is served as the
    /// proxy's own.
    Unknown,
    /// TCP (or UDP) over IPv4 or IPv6: the client's address and the one it
    /// connected to.
    Inet {
        /// The client.
        source: SocketAddr,
        /// The address the client connected to (the proxy's).
        destination: SocketAddr,
    },
    /// AF_UNIX (version 2).
    Unix {
        /// The client's socket.
        source: ProxyUnixAddr,
        /// The socket it connected to.
        destination: ProxyUnixAddr,
    },
}

/// A whole PROXY protocol header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ProxyHeader {
    /// Version 1 or 2.
    pub version: ProxyVersion,
    /// LOCAL or PROXY.
    pub command: ProxyCommand,
    /// The endpoints ([`ProxyAddresses::Unknown`] for every LOCAL header).
    pub addresses: ProxyAddresses,
    /// The header's size in bytes.
    pub len: usize,
}

impl ProxyHeader {
    /// The real client's IP address and port, when the header gives one.
    pub fn source(&self) -> Option<SocketAddr> {
        match self.addresses {
            ProxyAddresses::Inet { source, .. } => Some(source),
            ProxyAddresses::Unknown | ProxyAddresses::Unix { .. } => None,
        }
    }
}

/// Where [`ProxyParser::feed`] got to: one or the other, for good (not
/// `non_exhaustive`, so a `match` needs no catch-all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
// The header is as large as its two AF_UNIX paths; it is returned once per
// connection, and boxing it would allocate.
#[allow(clippy::large_enum_variant)]
pub enum ProxyStatus {
    /// Every byte given was the header's, and more is needed.
    Incomplete,
    /// The header is whole: it took the first `consumed` bytes of the last
    /// input; the bytes after them are the client's.
    Complete {
        /// The header.
        header: ProxyHeader,
        /// How many bytes of the last input were the header's.
        consumed: usize,
    },
}

/// How far into the header the parser is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
// As `ProxyStatus`: the parser keeps its header without allocating.
#[allow(clippy::large_enum_variant)]
enum Stage {
    /// Matching the first bytes against both signatures.
    Signature,
    /// Version 1, until the CRLF.
    V1,
    /// Version 2, the rest of its 16-byte fixed part.
    V2Fixed,
    /// Version 2, the address block (`kept` bytes of it are kept), then the
    /// TLVs (checked or not), `left` bytes of the header in all.
    V2Rest { kept: usize, tlvs: bool, left: usize },
    /// Whole.
    Done(ProxyHeader),
    /// Refused.
    Failed(ProxyError),
}

/// A resumable, allocation-free PROXY protocol (v1 and v2) parser: see the
/// [module docs](self).
#[derive(Clone)]
pub struct ProxyParser {
    stage: Stage,
    /// The bytes kept: the version 1 line, or the version 2 fixed part and
    /// its address block.
    buf: [u8; KEPT],
    kept: usize,
    /// Every header byte taken so far.
    received: usize,
    /// The TLV being skipped: the bytes of its type and length seen, and
    /// those three bytes.
    tlv_head: usize,
    tlv: [u8; 3],
    /// What is left of the value of the TLV being skipped.
    tlv_value: usize,
}

impl fmt::Debug for ProxyParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyParser").field("stage", &self.stage).field("received", &self.received).finish()
    }
}

impl Default for ProxyParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ProxyParser {
    /// A parser at the start of a connection.
    pub fn new() -> ProxyParser {
        ProxyParser {
            stage: Stage::Signature,
            buf: [0; KEPT],
            kept: 0,
            received: 0,
            tlv_head: 0,
            tlv: [0; 3],
            tlv_value: 0,
        }
    }

    /// Header bytes taken so far.
    pub fn received(&self) -> usize {
        self.received
    }

    /// How many more bytes surely belong to the header: a caller that reads
    /// at most this many at a time never reads past the header, so the
    /// client's bytes stay in the stream for whoever reads it next. 0 once
    /// the header is whole or refused.
    ///
    /// A version 2 header is read in three reads at most (its fixed part,
    /// then the rest, which the fixed part gives the length of); a version 1
    /// line is read 15 bytes, then 2 (1 after a CR) at a time.
    pub fn wanted(&self) -> usize {
        match self.stage {
            Stage::Signature if self.kept == 0 => MIN_V1_HEADER,
            Stage::Signature if self.buf[0] == b'P' => MIN_V1_HEADER - self.kept,
            Stage::Signature | Stage::V2Fixed => V2_FIXED - self.kept,
            Stage::V1 if self.kept < MIN_V1_HEADER - 1 => MIN_V1_HEADER - self.kept,
            Stage::V1 if self.buf[self.kept - 1] == b'\r' => 1,
            Stage::V1 => 2,
            Stage::V2Rest { left, .. } => left,
            Stage::Done(_) | Stage::Failed(_) => 0,
        }
    }

    /// Takes the next bytes of the connection.
    ///
    /// Returns [`ProxyStatus::Incomplete`] when all of `input` was header and
    /// more is needed, or [`ProxyStatus::Complete`] with the header and how
    /// many bytes of `input` it took. Once complete, the same header again,
    /// having taken none; once refused, the same error again.
    ///
    /// # Errors
    ///
    /// The [`ProxyError`] of a malformed or oversized header, found at the
    /// first byte that shows it.
    pub fn feed(&mut self, input: &[u8]) -> Result<ProxyStatus, ProxyError> {
        let result = self.advance(input);
        if let Err(error) = result {
            self.stage = Stage::Failed(error);
        }
        result
    }

    /// The input has ended: the header if it is whole.
    ///
    /// # Errors
    ///
    /// [`ProxyError::Truncated`] when it ended inside the header, or the
    /// error the header was refused with.
    pub fn finish(&self) -> Result<ProxyHeader, ProxyError> {
        match self.stage {
            Stage::Done(header) => Ok(header),
            Stage::Failed(error) => Err(error),
            _ => Err(ProxyError::Truncated { received: self.received }),
        }
    }

    fn advance(&mut self, input: &[u8]) -> Result<ProxyStatus, ProxyError> {
        let mut at = 0;
        loop {
            match self.stage {
                Stage::Done(header) => return Ok(ProxyStatus::Complete { header, consumed: 0 }),
                Stage::Failed(error) => return Err(error),
                _ if at == input.len() => return Ok(ProxyStatus::Incomplete),
                Stage::Signature => {
                    let byte = input[at];
                    at += 1;
                    self.keep(byte);
                    let seen = &self.buf[..self.kept];
                    if seen == V1_PREFIX {
                        self.stage = Stage::V1;
                    } else if seen == V2_SIGNATURE {
                        self.stage = Stage::V2Fixed;
                    } else if !V1_PREFIX.starts_with(seen) && !V2_SIGNATURE.starts_with(seen) {
                        return Err(ProxyError::NoSignature);
                    }
                }
                Stage::V1 => {
                    let byte = input[at];
                    at += 1;
                    let after_cr = self.buf[self.kept - 1] == b'\r';
                    match byte {
                        b'\n' if after_cr => {
                            self.keep(byte);
                            return self.complete(parse_v1(&self.buf[..self.kept])?, at);
                        }
                        b'\n' => return Err(ProxyError::V1LineEnding),
                        _ if after_cr => return Err(ProxyError::V1LineEnding),
                        // Room for this byte and the line's end (the LF after a CR).
                        _ if self.kept + if byte == b'\r' { 1 } else { 2 } >= MAX_V1_HEADER => {
                            return Err(ProxyError::TooLarge { size: MAX_V1_HEADER + 1, max: MAX_V1_HEADER });
                        }
                        _ => self.keep(byte),
                    }
                }
                Stage::V2Fixed => {
                    let take = (V2_FIXED - self.kept).min(input.len() - at);
                    self.keep_all(&input[at..at + take]);
                    at += take;
                    if self.kept == V2_FIXED {
                        self.stage = self.v2_fixed()?;
                        if let Stage::V2Rest { left: 0, .. } = self.stage {
                            return self.complete(self.v2_header(), at);
                        }
                    }
                }
                Stage::V2Rest { kept, tlvs, left } => {
                    let rest = &input[at..];
                    let take = left.min(rest.len());
                    let keep = (V2_FIXED + kept).saturating_sub(self.kept).min(take);
                    self.keep_all(&rest[..keep]);
                    if tlvs {
                        // `left` still counts the bytes just kept.
                        self.check_tlvs(&rest[keep..take], left - keep)?;
                    } else {
                        self.received += take - keep;
                    }
                    at += take;
                    self.stage = Stage::V2Rest { kept, tlvs, left: left - take };
                    if left == take {
                        return self.complete(self.v2_header(), at);
                    }
                }
            }
        }
    }

    fn keep(&mut self, byte: u8) {
        self.keep_all(&[byte]);
    }

    fn keep_all(&mut self, bytes: &[u8]) {
        self.buf[self.kept..self.kept + bytes.len()].copy_from_slice(bytes);
        self.kept += bytes.len();
        self.received += bytes.len();
    }

    fn complete(&mut self, header: ProxyHeader, consumed: usize) -> Result<ProxyStatus, ProxyError> {
        self.stage = Stage::Done(header);
        Ok(ProxyStatus::Complete { header, consumed })
    }

    /// Checks the fixed part of a version 2 header and says what follows.
    fn v2_fixed(&self) -> Result<Stage, ProxyError> {
        let [version_command, family_transport, hi, lo] = [self.buf[12], self.buf[13], self.buf[14], self.buf[15]];
        let version = version_command >> 4;
        if version != 2 {
            return Err(ProxyError::V2Version { version });
        }
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if V2_FIXED + len > MAX_V2_HEADER {
            return Err(ProxyError::TooLarge { size: V2_FIXED + len, max: MAX_V2_HEADER });
        }
        let addresses = match version_command & 0x0f {
            0 => 0,
            1 => {
                let (family, transport) = (family_transport >> 4, family_transport & 0x0f);
                if family > 3 {
                    return Err(ProxyError::V2Family { family });
                }
                if transport > 2 {
                    return Err(ProxyError::V2Transport { transport });
                }
                let need = block_len(family_transport);
                if len < need {
                    return Err(ProxyError::V2AddressTooShort { len, need });
                }
                need
            }
            command => return Err(ProxyError::V2Command { command }),
        };
        // The TLVs of a block that is read are checked; a block skipped unread
        // (LOCAL, UNSPEC) is skipped whole.
        Ok(Stage::V2Rest { kept: addresses, tlvs: addresses > 0, left: len })
    }

    /// Follows the TLVs in `bytes`, the next bytes of the TLV area, of which
    /// `area` bytes (these included) are left.
    fn check_tlvs(&mut self, bytes: &[u8], area: usize) -> Result<(), ProxyError> {
        let mut area = area;
        let mut at = 0;
        while at < bytes.len() {
            if self.tlv_value > 0 {
                let skip = self.tlv_value.min(bytes.len() - at);
                self.tlv_value -= skip;
                at += skip;
                area -= skip;
                continue;
            }
            self.tlv[self.tlv_head] = bytes[at];
            self.tlv_head += 1;
            at += 1;
            area -= 1;
            if self.tlv_head == 3 {
                self.tlv_head = 0;
                self.tlv_value = usize::from(u16::from_be_bytes([self.tlv[1], self.tlv[2]]));
                if self.tlv_value > area {
                    return Err(ProxyError::V2Tlv);
                }
            } else if area == 0 {
                return Err(ProxyError::V2Tlv);
            }
        }
        self.received += bytes.len();
        Ok(())
    }

    /// The header of a version 2 header taken whole.
    fn v2_header(&self) -> ProxyHeader {
        let command = if self.buf[12] & 0x0f == 0 { ProxyCommand::Local } else { ProxyCommand::Proxy };
        let block = &self.buf[V2_FIXED..self.kept];
        let addresses = match (command, self.buf[13] >> 4) {
            (ProxyCommand::Proxy, 1) if block.len() == 12 => {
                let ip = |at: usize| IpAddr::V4(Ipv4Addr::new(block[at], block[at + 1], block[at + 2], block[at + 3]));
                inet(ip(0), ip(4), &block[8..12])
            }
            (ProxyCommand::Proxy, 2) if block.len() == 36 => {
                let ip = |at: usize| {
                    let mut octets = [0; 16];
                    octets.copy_from_slice(&block[at..at + 16]);
                    IpAddr::V6(Ipv6Addr::from(octets))
                };
                inet(ip(0), ip(16), &block[32..36])
            }
            (ProxyCommand::Proxy, 3) if block.len() == UNIX_BLOCK => {
                let unix = |at: usize| {
                    let mut path = [0; UNIX_ADDR];
                    path.copy_from_slice(&block[at..at + UNIX_ADDR]);
                    ProxyUnixAddr(path)
                };
                ProxyAddresses::Unix { source: unix(0), destination: unix(UNIX_ADDR) }
            }
            _ => ProxyAddresses::Unknown,
        };
        ProxyHeader { version: ProxyVersion::V2, command, addresses, len: self.received }
    }
}

/// The address block's length for a PROXY header's family and transport
/// byte; 0 for an UNSPEC family or transport, whose block is ignored.
fn block_len(family_transport: u8) -> usize {
    match (family_transport >> 4, family_transport & 0x0f) {
        (_, 0) | (0, _) => 0,
        (1, _) => 12,
        (2, _) => 36,
        _ => UNIX_BLOCK,
    }
}

/// Two IP addresses and the 4 bytes of their ports.
fn inet(source: IpAddr, destination: IpAddr, ports: &[u8]) -> ProxyAddresses {
    let port = |at: usize| u16::from_be_bytes([ports[at], ports[at + 1]]);
    ProxyAddresses::Inet {
        source: SocketAddr::new(source, port(0)),
        destination: SocketAddr::new(destination, port(2)),
    }
}

/// Parses a whole version 1 line (`PROXY ` to CRLF, both included).
fn parse_v1(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let text = &line[V1_PREFIX.len()..line.len() - 2];
    let header =
        |addresses| ProxyHeader { version: ProxyVersion::V1, command: ProxyCommand::Proxy, addresses, len: line.len() };
    let (protocol, rest) = match text.iter().position(|&b| b == b' ') {
        Some(space) => (&text[..space], Some(&text[space + 1..])),
        None => (text, None),
    };
    let v4 = match protocol {
        // Anything may follow, up to the CRLF: it is ignored.
        b"UNKNOWN" => return Ok(header(ProxyAddresses::Unknown)),
        b"TCP4" => true,
        b"TCP6" => false,
        _ => return Err(ProxyError::V1Protocol),
    };
    let mut fields = rest.ok_or(ProxyError::V1Fields)?.split(|&b| b == b' ');
    let mut field = || fields.next().filter(|f| !f.is_empty()).ok_or(ProxyError::V1Fields);
    let (source, destination, source_port, destination_port) = (field()?, field()?, field()?, field()?);
    if fields.next().is_some() {
        return Err(ProxyError::V1Fields);
    }
    let (source, destination) = (address(source, v4)?, address(destination, v4)?);
    let (source_port, destination_port) = (port(source_port)?, port(destination_port)?);
    Ok(header(ProxyAddresses::Inet {
        source: SocketAddr::new(source, source_port),
        destination: SocketAddr::new(destination, destination_port),
    }))
}

/// A version 1 address of the family named: IPv4 as 4 decimal numbers
/// without leading zeros, IPv6 in hexadecimal with at most one `::`.
fn address(field: &[u8], v4: bool) -> Result<IpAddr, ProxyError> {
    let text = std::str::from_utf8(field).map_err(|_| ProxyError::V1Address)?;
    // The standard parsers refuse leading zeros in IPv4 and take what
    // inet_pton takes in IPv6 (an IPv4 tail included); no zone, no brackets.
    let parsed = if v4 { text.parse::<Ipv4Addr>().map(IpAddr::V4) } else { text.parse::<Ipv6Addr>().map(IpAddr::V6) };
    parsed.map_err(|_| ProxyError::V1Address)
}

/// A version 1 port: 0 to 65535, decimal, no leading zeros.
fn port(field: &[u8]) -> Result<u16, ProxyError> {
    let digits = field.len() <= 5 && field.iter().all(u8::is_ascii_digit);
    if !digits || (field.len() > 1 && field[0] == b'0') {
        return Err(ProxyError::V1Port);
    }
    let value = field.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(value).map_err(|_| ProxyError::V1Port)
}

/// Whether `first` (a connection's first read) begins with a whole PROXY
/// protocol signature: `PROXY ` or the 12-byte version 2 signature. The
/// runners use it to refuse a header from a peer that is not a trusted
/// proxy ([`ProxyError::Untrusted`]).
///
/// ```
/// use stamp_echo::proxy::has_signature;
/// assert!(has_signature(b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n"));
/// assert!(!has_signature(b"hi,server\n"));
/// ```
pub fn has_signature(first: &[u8]) -> bool {
    first.starts_with(V1_PREFIX) || first.starts_with(&V2_SIGNATURE)
}

#[cfg(test)]
mod tests;
