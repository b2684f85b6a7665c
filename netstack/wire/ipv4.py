"""IPv4 headers (RFC 791 section 3.1).

The view checks, once: version 4, IHL >= 5, the header inside the buffer, and a total length
between the header length and the buffer length (RFC 1122 section 3.2.1.1 "a datagram whose
version number is not 4 MUST be silently discarded"; bytes past the total length are link
padding and are excluded from ``payload``). Options are kept as raw bytes and otherwise
skipped. Fragment offsets are reported in bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from netstack.wire import WireError
from netstack.wire.checksum import internet_checksum

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
MIN_HEADER = 20
FLAG_DF = 0x4000
FLAG_MF = 0x2000


class _Address(IPv4Address):
    """An IPv4Address that computes its hash once: the stack hashes the addresses of every
    segment (connection table, neighbour cache), and ``ipaddress`` hashes ``hex(int)`` anew
    on every call. Equal to, and hashing as, the plain IPv4Address of the same value."""

    __slots__ = ("_hash",)

    def __init__(self, address) -> None:
        super().__init__(address)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"IPv4Address('{self}')"

    def __reduce__(self):
        return IPv4Address, (self._ip,)


_ADDRESSES: dict[bytes, IPv4Address] = {}
_ADDRESSES_MAX = 4096


def address4(raw: bytes) -> IPv4Address:
    """The IPv4Address of 4 packed bytes, one object per value while it is in use (a bounded
    cache), with its hash computed once."""
    found = _ADDRESSES.get(raw)
    if found is None:
        if len(_ADDRESSES) >= _ADDRESSES_MAX:
            _ADDRESSES.clear()
        found = _ADDRESSES[raw] = _Address(raw)
    return found


class Ipv4View:
    """Read an IPv4 header in place."""

    __slots__ = ("buf", "header_len", "total_length")

    def __init__(self, buf) -> None:
        buf = memoryview(buf)
        if len(buf) < MIN_HEADER:
            raise WireError("ipv4: truncated header")
        if buf[0] >> 4 != 4:
            raise WireError("ipv4: version is not 4")
        header_len = (buf[0] & 0x0F) * 4
        if header_len < MIN_HEADER:
            raise WireError("ipv4: header length below 20")
        total = buf[2] << 8 | buf[3]
        if header_len > len(buf) or total > len(buf):
            raise WireError("ipv4: truncated datagram")
        if total < header_len:
            raise WireError("ipv4: total length below header length")
        self.buf, self.header_len, self.total_length = buf, header_len, total

    def _u16(self, i: int) -> int:
        return self.buf[i] << 8 | self.buf[i + 1]

    @property
    def tos(self) -> int:
        return self.buf[1]

    @property
    def ident(self) -> int:
        return self._u16(4)

    @property
    def dont_fragment(self) -> bool:
        return bool(self._u16(6) & FLAG_DF)

    @property
    def more_fragments(self) -> bool:
        return bool(self._u16(6) & FLAG_MF)

    @property
    def frag_offset(self) -> int:
        """Offset of this fragment's data in the original datagram, in bytes."""
        return (self._u16(6) & 0x1FFF) * 8

    @property
    def is_fragment(self) -> bool:
        return self.more_fragments or self.frag_offset != 0

    @property
    def ttl(self) -> int:
        return self.buf[8]

    @property
    def proto(self) -> int:
        return self.buf[9]

    @property
    def checksum(self) -> int:
        return self._u16(10)

    @property
    def src(self) -> IPv4Address:
        return address4(self.buf[12:16].tobytes())

    @property
    def dst(self) -> IPv4Address:
        return address4(self.buf[16:20].tobytes())

    @property
    def options(self) -> bytes:
        return bytes(self.buf[MIN_HEADER:self.header_len])

    @property
    def header(self) -> memoryview:
        return self.buf[:self.header_len]

    @property
    def payload(self) -> memoryview:
        return self.buf[self.header_len:self.total_length]

    def checksum_valid(self) -> bool:
        """RFC 791: the header checksum over the header sums to zero."""
        return internet_checksum(self.buf[:self.header_len]) == 0


@dataclass(frozen=True, slots=True)
class Ipv4:
    """A parsed IPv4 datagram (or fragment)."""

    src: IPv4Address
    dst: IPv4Address
    proto: int
    payload: bytes = b""
    ttl: int = 64
    ident: int = 0
    dont_fragment: bool = False
    more_fragments: bool = False
    frag_offset: int = 0
    tos: int = 0
    options: bytes = b""

    @classmethod
    def parse(cls, buf, verify: bool = True) -> Ipv4:
        v = Ipv4View(buf)
        if verify and not v.checksum_valid():
            raise WireError("ipv4: bad header checksum")
        return cls(v.src, v.dst, v.proto, bytes(v.payload), v.ttl, v.ident, v.dont_fragment,
                   v.more_fragments, v.frag_offset, v.tos, v.options)

    def header(self, payload_length: int | None = None) -> bytes:
        """The header with its checksum, for a payload of ``payload_length`` bytes."""
        if len(self.options) % 4 or len(self.options) > 40:
            raise WireError("ipv4: options must be a multiple of 4 bytes, at most 40")
        if self.frag_offset % 8:
            raise WireError("ipv4: fragment offset must be a multiple of 8")
        flags = ((FLAG_DF if self.dont_fragment else 0) | (FLAG_MF if self.more_fragments else 0)
                 | self.frag_offset // 8)
        return ipv4_header(self.src.packed, self.dst.packed, self.proto,
                           len(self.payload) if payload_length is None else payload_length,
                           self.ttl, self.ident, flags, self.tos, self.options)

    def emit(self) -> bytes:
        return self.header() + self.payload


_HEADER = struct.Struct("!BBHHHBBH4s4s")


def ipv4_header(src: bytes, dst: bytes, proto: int, payload_length: int, ttl: int = 64,
                ident: int = 0, flags: int = 0, tos: int = 0, options: bytes = b"") -> bytes:
    """An IPv4 header with its checksum (RFC 791 3.1) from packed addresses; ``flags`` is the
    16-bit word of the flags and the fragment offset (in 8-byte units)."""
    header_len = MIN_HEADER + len(options)
    length = header_len + payload_length
    if length > 0xFFFF:
        raise WireError("ipv4: datagram longer than 65535 bytes")
    head = _HEADER.pack(0x40 | header_len >> 2, tos, length, ident, flags, ttl, proto, 0, src,
                        dst)
    checksum = internet_checksum(head + options if options else head)
    return head[:10] + checksum.to_bytes(2, "big") + head[12:] + options
