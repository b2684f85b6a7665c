"""The header ICMPv4 (RFC 792) and ICMPv6 (RFC 4443 section 2.1) share: type, code, checksum,
four bytes whose meaning depends on the type, then the body; read in place."""

from __future__ import annotations

from netstack.wire import WireError

HEADER_LEN = 8


class IcmpHeaderView:
    """Read an ICMP or ICMPv6 message in place (one length check)."""

    __slots__ = ("buf",)
    PROTOCOL = "icmp"

    def __init__(self, buf) -> None:
        buf = memoryview(buf)
        if len(buf) < HEADER_LEN:
            raise WireError(f"{self.PROTOCOL}: truncated")
        self.buf = buf

    @property
    def type(self) -> int:
        return self.buf[0]

    @property
    def code(self) -> int:
        return self.buf[1]

    @property
    def checksum(self) -> int:
        return self.buf[2] << 8 | self.buf[3]

    @property
    def ident(self) -> int:
        return self.buf[4] << 8 | self.buf[5]

    @property
    def seq(self) -> int:
        return self.buf[6] << 8 | self.buf[7]

    @property
    def rest(self) -> bytes:
        return bytes(self.buf[4:8])

    @property
    def body(self) -> memoryview:
        return self.buf[HEADER_LEN:]
