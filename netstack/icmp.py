"""ICMP and ICMPv6 rules of a host: which errors may be sent, their bodies, rate limiting,
and the events the stack reports (RFC 792, RFC 1122 section 3.2.2, RFC 4443).

RFC 1122 section 3.2.2: "An ICMP error message MUST NOT be sent as the result of receiving:
an ICMP error message, a datagram destined to an IP broadcast or IP multicast address, a
datagram sent as a link-layer broadcast, a non-initial fragment, a datagram whose source
address does not define a single host". RFC 4443 section 2.4 (e) says the same for ICMPv6
(with the Packet Too Big / Parameter Problem exceptions, which we never need to send).
Errors quote the offending IP header and the first 8 bytes of its data for IPv4 (RFC 792), and
as much as keeps the error within the IPv6 minimum MTU, 1280 bytes, for IPv6 (RFC 4443
section 2.4 (c)). RFC 4443 section 2.4 (f) and RFC 1812 section 4.3.2.8 ask that errors be
rate-limited: :class:`TokenBucket`.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from netstack.wire import WireError
from netstack.wire.ipv4 import Ipv4View
from netstack.wire.ipv6 import Ipv6View, walk_extension_headers

SECOND = 1_000_000_000
IPV6_MIN_MTU = 1280


@dataclass(frozen=True, slots=True)
class EchoReply:
    """An answer to :meth:`Interface.ping`."""

    src: IPv4Address | IPv6Address
    ident: int
    seq: int
    data: bytes


@dataclass(frozen=True, slots=True)
class IcmpError:
    """An ICMP(v6) error about a datagram we sent; ports are 0 when not quoted."""

    reporter: IPv4Address | IPv6Address
    type: int
    code: int
    proto: int
    src: IPv4Address | IPv6Address
    dst: IPv4Address | IPv6Address
    src_port: int
    dst_port: int
    mtu: int = 0                        # next-hop MTU for "fragmentation needed" / too big
    quoted: bytes = b""                 # the quoted transport header bytes


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; one token per error sent."""

    def __init__(self, rate: float = 100.0, burst: int = 10) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.last = float(burst), None

    def allow(self, now: int) -> bool:
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate / SECOND)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def may_answer_with_error_v4(packet: Ipv4View, link_broadcast: bool,
                             broadcast: IPv4Address | None, proto_is_error: bool) -> bool:
    """RFC 1122 section 3.2.2's list of datagrams that never cause an ICMP error."""
    src, dst = packet.src, packet.dst
    return not (proto_is_error or link_broadcast or dst.is_multicast or dst == broadcast
                or dst == IPv4Address("255.255.255.255") or packet.frag_offset != 0
                or src.is_unspecified or src.is_multicast or src == broadcast
                or src == IPv4Address("255.255.255.255") or src.is_loopback)


def may_answer_with_error_v6(packet: Ipv6View, link_multicast: bool,
                             proto_is_error: bool) -> bool:
    """RFC 4443 section 2.4 (e)."""
    return not (proto_is_error or link_multicast or packet.dst.is_multicast
                or packet.src.is_unspecified or packet.src.is_multicast)


def quote_v4(packet: Ipv4View) -> bytes:
    """The IP header and the first 8 bytes of data (RFC 792)."""
    return bytes(packet.buf[:packet.header_len + min(8, len(packet.payload))])


def quote_v6(packet: Ipv6View) -> bytes:
    """As much of the packet as fits in a 1280-byte error (RFC 4443 section 2.4 (c))."""
    return bytes(packet.buf[:min(40 + packet.payload_length, IPV6_MIN_MTU - 48)])


def parse_quoted_v4(reporter, icmp_type: int, code: int, mtu: int, body) -> IcmpError:
    """Read the datagram quoted in an ICMP error; raises WireError if it is unusable."""
    body = memoryview(body)
    if len(body) < 20:
        raise WireError("icmp: quoted datagram truncated")
    header_len = (body[0] & 0x0F) * 4
    if body[0] >> 4 != 4 or header_len < 20 or len(body) < header_len:
        raise WireError("icmp: quoted datagram malformed")
    transport = body[header_len:]
    ports = (transport[0] << 8 | transport[1], transport[2] << 8 | transport[3]) \
        if len(transport) >= 4 else (0, 0)
    return IcmpError(reporter, icmp_type, code, body[9], IPv4Address(bytes(body[12:16])),
                     IPv4Address(bytes(body[16:20])), *ports, mtu, bytes(transport))


def parse_quoted_v6(reporter, icmp_type: int, code: int, mtu: int, body) -> IcmpError:
    body = memoryview(body)
    if len(body) < 40 or body[0] >> 4 != 6:
        raise WireError("icmpv6: quoted packet malformed")
    chain = body[40:]
    try:
        upper = walk_extension_headers(body[6], chain)
        proto, transport = upper.proto, chain[upper.offset:]
    except WireError:
        proto, transport = body[6], chain[:0]
    ports = (transport[0] << 8 | transport[1], transport[2] << 8 | transport[3]) \
        if len(transport) >= 4 else (0, 0)
    return IcmpError(reporter, icmp_type, code, proto, IPv6Address(bytes(body[8:24])),
                     IPv6Address(bytes(body[24:40])), *ports, mtu, bytes(transport))
