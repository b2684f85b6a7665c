"""ARP packets for IPv4 over Ethernet (RFC 826).

RFC 826 "Packet format": ar$hrd (1 = Ethernet), ar$pro (0x0800), ar$hln (6), ar$pln (4),
ar$op (1 request, 2 reply), then sender hardware/protocol and target hardware/protocol
addresses. Other hardware or protocol types are not ours and are rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from netstack.wire import WireError

ARP_REQUEST = 1
ARP_REPLY = 2
LENGTH = 28
_FIXED = b"\x00\x01\x08\x00\x06\x04"


class ArpView:
    """Read an Ethernet/IPv4 ARP packet in place."""

    __slots__ = ("buf",)

    def __init__(self, buf) -> None:
        buf = memoryview(buf)
        if len(buf) < LENGTH:
            raise WireError("arp: truncated")
        if bytes(buf[0:6]) != _FIXED:
            raise WireError("arp: not Ethernet/IPv4")
        self.buf = buf

    @property
    def op(self) -> int:
        return self.buf[6] << 8 | self.buf[7]

    @property
    def sender_mac(self) -> bytes:
        return bytes(self.buf[8:14])

    @property
    def sender_ip(self) -> IPv4Address:
        return IPv4Address(bytes(self.buf[14:18]))

    @property
    def target_mac(self) -> bytes:
        return bytes(self.buf[18:24])

    @property
    def target_ip(self) -> IPv4Address:
        return IPv4Address(bytes(self.buf[24:28]))


@dataclass(frozen=True, slots=True)
class Arp:
    op: int
    sender_mac: bytes
    sender_ip: IPv4Address
    target_mac: bytes
    target_ip: IPv4Address

    @classmethod
    def parse(cls, buf) -> Arp:
        v = ArpView(buf)
        return cls(v.op, v.sender_mac, v.sender_ip, v.target_mac, v.target_ip)

    def emit(self) -> bytes:
        return (_FIXED + self.op.to_bytes(2, "big") + self.sender_mac + self.sender_ip.packed
                + self.target_mac + self.target_ip.packed)
