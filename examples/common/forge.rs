//! Forged UDP source addresses: hand-built IPv4 + UDP packets sent from a raw
//! socket (root or `CAP_NET_RAW`). Shared by `examples/hostile.rs` and
//! `tests/datagram.rs`.

use std::io;
use std::net::SocketAddrV4;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// A raw IPv4 socket that sends packets with the IP header included.
///
/// # Errors
///
/// Refused (`PermissionDenied`) without root or `CAP_NET_RAW`.
pub fn raw_socket() -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP))?;
    socket.set_header_included_v4(true)?;
    Ok(socket)
}

/// Sends `payload` to `to` in a UDP datagram that says it comes from `from`.
/// The kernel fills in the IP checksum; a UDP checksum of 0 means none.
///
/// # Errors
///
/// `InvalidInput` for a payload that does not fit in one packet; the
/// socket's error if the send fails.
pub fn forge(raw: &Socket, from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> io::Result<()> {
    let too_large = || io::Error::new(io::ErrorKind::InvalidInput, "payload too large for one packet");
    let udp_len = u16::try_from(8 + payload.len()).map_err(|_| too_large())?;
    let total = udp_len.checked_add(20).ok_or_else(too_large)?;
    let mut packet = Vec::with_capacity(usize::from(total));
    packet.extend_from_slice(&[0x45, 0]); // IPv4, 20-byte header; no TOS
    packet.extend_from_slice(&total.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]); // id, don't fragment, TTL, UDP, checksum
    packet.extend_from_slice(&from.ip().octets());
    packet.extend_from_slice(&to.ip().octets());
    packet.extend_from_slice(&from.port().to_be_bytes());
    packet.extend_from_slice(&to.port().to_be_bytes());
    packet.extend_from_slice(&udp_len.to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    raw.send_to(&packet, &SockAddr::from(SocketAddrV4::new(*to.ip(), 0)))?;
    Ok(())
}
