"""UDP datagrams (RFC 768).

RFC 768: source port, destination port, length (header + data, at least 8), checksum over
the pseudo-header, header and data. "If the computed checksum is zero, it is transmitted as
all ones"; a transmitted zero means "no checksum" over IPv4. Over IPv6 the checksum is
mandatory (RFC 8200 section 8.1: a zero checksum MUST be discarded).
"""

from __future__ import annotations

from dataclasses import dataclass

from netstack.wire import WireError
from netstack.wire.checksum import transport_checksum

HEADER_LEN = 8
PROTO_UDP = 17


class UdpView:
    """Read a UDP header in place; ``payload`` is bounded by the UDP length field."""

    __slots__ = ("buf", "length")

    def __init__(self, buf) -> None:
        buf = memoryview(buf)
        if len(buf) < HEADER_LEN:
            raise WireError("udp: truncated header")
        length = buf[4] << 8 | buf[5]
        if length < HEADER_LEN or length > len(buf):
            raise WireError("udp: bad length")
        self.buf, self.length = buf, length

    @property
    def src_port(self) -> int:
        return self.buf[0] << 8 | self.buf[1]

    @property
    def dst_port(self) -> int:
        return self.buf[2] << 8 | self.buf[3]

    @property
    def checksum(self) -> int:
        return self.buf[6] << 8 | self.buf[7]

    @property
    def payload(self) -> memoryview:
        return self.buf[HEADER_LEN:self.length]

    def checksum_valid(self, src, dst) -> bool:
        """RFC 768 check under the pseudo-header; zero means unchecked over IPv4 only."""
        if self.checksum == 0:
            return src.version == 4
        return transport_checksum(src, dst, PROTO_UDP, self.buf[:self.length]) == 0


@dataclass(frozen=True, slots=True)
class Udp:
    src_port: int
    dst_port: int
    payload: bytes = b""

    @classmethod
    def parse(cls, buf, src=None, dst=None) -> Udp:
        """Parse; with ``src``/``dst`` given, verify the checksum too."""
        v = UdpView(buf)
        if src is not None and not v.checksum_valid(src, dst):
            raise WireError("udp: bad checksum")
        return cls(v.src_port, v.dst_port, bytes(v.payload))

    def emit(self, src, dst) -> bytes:
        """The datagram with its checksum under the ``src``/``dst`` pseudo-header."""
        length = HEADER_LEN + len(self.payload)
        if length > 0xFFFF:
            raise WireError("udp: datagram longer than 65535 bytes")
        head = (self.src_port.to_bytes(2, "big") + self.dst_port.to_bytes(2, "big")
                + length.to_bytes(2, "big"))
        checksum = transport_checksum(src, dst, PROTO_UDP, head + b"\0\0" + self.payload)
        return head + (checksum or 0xFFFF).to_bytes(2, "big") + self.payload
