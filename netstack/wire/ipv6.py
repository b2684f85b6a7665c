"""IPv6 headers and extension-header walking (RFC 8200).

RFC 8200 section 3: version 6, traffic class, flow label, payload length, next header, hop
limit, source, destination (40 bytes). Section 4: extension headers are walked in order until
an upper-layer header: Hop-by-Hop (0), Routing (43), Fragment (44), Destination Options (60),
Authentication (51, length in 4-octet units) and No Next Header (59). Section 4.5: the
Fragment header (offset in 8-octet units, M flag, 32-bit identification).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address

from netstack.wire import WireError

HEADER_LEN = 40
PROTO_HOPOPTS = 0
PROTO_ROUTING = 43
PROTO_FRAGMENT = 44
PROTO_ICMPV6 = 58
PROTO_NONE = 59
PROTO_DSTOPTS = 60
PROTO_AH = 51
_OPTION_HEADERS = (PROTO_HOPOPTS, PROTO_ROUTING, PROTO_DSTOPTS)
MAX_EXTENSION_HEADERS = 16


class Ipv6View:
    """Read an IPv6 fixed header in place; ``payload`` excludes link padding."""

    __slots__ = ("buf", "payload_length")

    def __init__(self, buf) -> None:
        buf = memoryview(buf)
        if len(buf) < HEADER_LEN:
            raise WireError("ipv6: truncated header")
        if buf[0] >> 4 != 6:
            raise WireError("ipv6: version is not 6")
        length = buf[4] << 8 | buf[5]
        if HEADER_LEN + length > len(buf):
            raise WireError("ipv6: truncated payload")
        self.buf, self.payload_length = buf, length

    @property
    def traffic_class(self) -> int:
        return (self.buf[0] & 0x0F) << 4 | self.buf[1] >> 4

    @property
    def flow_label(self) -> int:
        return (self.buf[1] & 0x0F) << 16 | self.buf[2] << 8 | self.buf[3]

    @property
    def next_header(self) -> int:
        return self.buf[6]

    @property
    def hop_limit(self) -> int:
        return self.buf[7]

    @property
    def src(self) -> IPv6Address:
        return IPv6Address(bytes(self.buf[8:24]))

    @property
    def dst(self) -> IPv6Address:
        return IPv6Address(bytes(self.buf[24:40]))

    @property
    def payload(self) -> memoryview:
        return self.buf[HEADER_LEN:HEADER_LEN + self.payload_length]


@dataclass(frozen=True, slots=True)
class Ipv6Fragment:
    """The Fragment header (RFC 8200 section 4.5); ``offset`` in bytes."""

    next_header: int
    offset: int
    more: bool
    ident: int

    LENGTH = 8

    @classmethod
    def parse(cls, buf) -> Ipv6Fragment:
        buf = memoryview(buf)
        if len(buf) < 8:
            raise WireError("ipv6: truncated fragment header")
        word = buf[2] << 8 | buf[3]
        return cls(buf[0], word & 0xFFF8, bool(word & 1), int.from_bytes(buf[4:8], "big"))

    def emit(self) -> bytes:
        if self.offset % 8 or self.offset > 0xFFF8:
            raise WireError("ipv6: bad fragment offset")
        word = self.offset | int(self.more)
        return (bytes((self.next_header, 0)) + word.to_bytes(2, "big")
                + self.ident.to_bytes(4, "big"))


@dataclass(frozen=True, slots=True)
class UpperLayer:
    """Where the extension-header chain ends."""

    proto: int                          # upper-layer protocol (PROTO_NONE if none)
    offset: int                         # offset of the upper-layer header in the payload
    fragment: Ipv6Fragment | None       # the Fragment header, if one was crossed
    fragment_offset: int                # offset of the Fragment header (or -1)
    headers: tuple[int, ...]            # extension header types crossed, in order
    next_header_at: int = 6             # offset from the IPv6 header of the byte naming proto


def walk_extension_headers(next_header: int, payload) -> UpperLayer:
    """Walk RFC 8200 section 4 extension headers; raises WireError if truncated or looping.

    A Fragment header stops the walk when its offset is non-zero (the rest of the chain is
    in the first fragment); with offset zero the walk continues into the fragment's data.
    """
    payload = memoryview(payload)
    offset, crossed, fragment, frag_at, named_at = 0, [], None, -1, 6
    proto = next_header
    while proto in (*_OPTION_HEADERS, PROTO_FRAGMENT, PROTO_AH):
        if len(crossed) >= MAX_EXTENSION_HEADERS:
            raise WireError("ipv6: too many extension headers")
        if proto == PROTO_HOPOPTS and crossed:
            # RFC 8200 section 4.1: Hop-by-Hop only immediately after the IPv6 header
            raise WireError("ipv6: hop-by-hop header not first")
        if len(payload) < offset + 8:
            raise WireError("ipv6: truncated extension header")
        crossed.append(proto)
        if proto == PROTO_FRAGMENT:
            fragment, frag_at = Ipv6Fragment.parse(payload[offset:offset + 8]), offset
            named_at = HEADER_LEN + offset
            offset += 8
            proto = fragment.next_header
            if fragment.offset:
                break
            continue
        size = (payload[offset + 1] + 2) * 4 if proto == PROTO_AH else \
            (payload[offset + 1] + 1) * 8
        if len(payload) < offset + size:
            raise WireError("ipv6: truncated extension header")
        proto, named_at = payload[offset], HEADER_LEN + offset
        offset += size
    return UpperLayer(proto, offset, fragment, frag_at, tuple(crossed), named_at)


@dataclass(frozen=True, slots=True)
class Ipv6:
    """A parsed IPv6 packet; ``payload`` includes any extension headers."""

    src: IPv6Address
    dst: IPv6Address
    next_header: int
    payload: bytes = b""
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0

    @classmethod
    def parse(cls, buf) -> Ipv6:
        v = Ipv6View(buf)
        return cls(v.src, v.dst, v.next_header, bytes(v.payload), v.hop_limit, v.traffic_class,
                   v.flow_label)

    def header(self, payload_length: int | None = None) -> bytes:
        length = len(self.payload) if payload_length is None else payload_length
        if length > 0xFFFF:
            raise WireError("ipv6: payload longer than 65535 bytes (no jumbograms)")
        first = 6 << 28 | (self.traffic_class & 0xFF) << 20 | (self.flow_label & 0xFFFFF)
        return (first.to_bytes(4, "big") + length.to_bytes(2, "big")
                + bytes((self.next_header, self.hop_limit)) + self.src.packed + self.dst.packed)

    def emit(self) -> bytes:
        return self.header() + self.payload
