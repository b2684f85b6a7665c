"""ICMP for IPv4 (RFC 792).

Every message: type, code, checksum (over the whole ICMP message), 4 bytes whose meaning
depends on the type ("rest": identifier and sequence number for echo, next-hop MTU for
fragmentation needed (RFC 1191 section 4), unused otherwise), then the body: echo data, or
the offending datagram's IP header plus at least 8 bytes of its data for errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from netstack.wire import WireError
from netstack.wire.checksum import internet_checksum
from netstack.wire.icmpview import IcmpHeaderView

ECHO_REPLY = 0
DEST_UNREACHABLE = 3
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
PARAMETER_PROBLEM = 12
ERROR_TYPES = (DEST_UNREACHABLE, TIME_EXCEEDED, PARAMETER_PROBLEM, 4, 5)
# destination unreachable codes
NET_UNREACHABLE, HOST_UNREACHABLE, PROTOCOL_UNREACHABLE, PORT_UNREACHABLE = 0, 1, 2, 3
FRAGMENTATION_NEEDED = 4
# time exceeded codes
TTL_EXCEEDED, REASSEMBLY_EXCEEDED = 0, 1


class Icmpv4View(IcmpHeaderView):
    """Read an ICMP message in place."""

    __slots__ = ()
    PROTOCOL = "icmp"

    @property
    def next_hop_mtu(self) -> int:
        return self.buf[6] << 8 | self.buf[7]

    def checksum_valid(self) -> bool:
        return internet_checksum(self.buf) == 0


@dataclass(frozen=True, slots=True)
class Icmpv4:
    type: int
    code: int = 0
    rest: bytes = b"\0\0\0\0"
    body: bytes = b""

    @classmethod
    def parse(cls, buf, verify: bool = True) -> Icmpv4:
        v = Icmpv4View(buf)
        if verify and not v.checksum_valid():
            raise WireError("icmp: bad checksum")
        return cls(v.type, v.code, v.rest, bytes(v.body))

    @classmethod
    def echo(cls, request: bool, ident: int, seq: int, data: bytes = b"") -> Icmpv4:
        rest = ident.to_bytes(2, "big") + seq.to_bytes(2, "big")
        return cls(ECHO_REQUEST if request else ECHO_REPLY, 0, rest, data)

    def emit(self) -> bytes:
        if len(self.rest) != 4:
            raise WireError("icmp: rest of header must be 4 bytes")
        head = bytes((self.type, self.code)) + b"\0\0" + self.rest
        checksum = internet_checksum(self.body, internet_checksum(head) ^ 0xFFFF)
        return head[:2] + checksum.to_bytes(2, "big") + self.rest + self.body
