"""Ethernet II frames (IEEE 802.3) with IEEE 802.1Q VLAN tags.

A tag (TPID 0x8100, or 0x88A8 for an 802.1ad outer tag) sits between the source address and
the EtherType: 2 bytes TPID, then the TCI (3 bits priority, 1 bit DEI, 12 bits VLAN id).
Up to two tags are read (the inner one is reported); the frame check sequence is not present
(TAP and AF_PACKET strip it).
"""

from __future__ import annotations

from dataclasses import dataclass

from netstack.wire import WireError

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_IPV6 = 0x86DD
ETH_VLAN = 0x8100
ETH_QINQ = 0x88A8
BROADCAST = b"\xff" * 6
HEADER_LEN = 14
_TAGS = (ETH_VLAN, ETH_QINQ)


def parse_mac(text: str) -> bytes:
    """'02:00:00:00:00:01' -> 6 bytes; raises WireError."""
    parts = text.replace("-", ":").split(":")
    try:
        mac = bytes(int(p, 16) for p in parts)
    except ValueError:
        raise WireError(f"bad MAC address {text!r}") from None
    if len(mac) != 6 or any(len(p) not in (1, 2) for p in parts):
        raise WireError(f"bad MAC address {text!r}")
    return mac


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


class EthernetView:
    """Read an Ethernet header in place."""

    __slots__ = ("buf", "header_len", "vlan_tci")

    def __init__(self, buf: bytes | bytearray | memoryview) -> None:
        buf = memoryview(buf)
        if len(buf) < HEADER_LEN:
            raise WireError("ethernet: truncated header")
        offset, tci = 12, None
        for _ in range(2):
            if (buf[offset] << 8 | buf[offset + 1]) not in _TAGS:
                break
            if len(buf) < offset + 6:
                raise WireError("ethernet: truncated VLAN tag")
            tci = buf[offset + 2] << 8 | buf[offset + 3]
            offset += 4
        self.buf, self.header_len, self.vlan_tci = buf, offset + 2, tci

    @property
    def dst(self) -> bytes:
        return bytes(self.buf[0:6])

    @property
    def src(self) -> bytes:
        return bytes(self.buf[6:12])

    @property
    def ethertype(self) -> int:
        i = self.header_len - 2
        return self.buf[i] << 8 | self.buf[i + 1]

    @property
    def vlan_id(self) -> int | None:
        return None if self.vlan_tci is None else self.vlan_tci & 0x0FFF

    @property
    def payload(self) -> memoryview:
        return self.buf[self.header_len:]


@dataclass(frozen=True, slots=True)
class Ethernet:
    """A parsed Ethernet frame; ``vlan_id``/``priority`` describe one 802.1Q tag if present."""

    dst: bytes
    src: bytes
    ethertype: int
    payload: bytes = b""
    vlan_id: int | None = None
    priority: int = 0

    @classmethod
    def parse(cls, buf) -> Ethernet:
        v = EthernetView(buf)
        pcp = 0 if v.vlan_tci is None else v.vlan_tci >> 13
        return cls(v.dst, v.src, v.ethertype, bytes(v.payload), v.vlan_id, pcp)

    def header(self) -> bytes:
        """The header alone (to prepend to a payload without copying it twice)."""
        tag = b""
        if self.vlan_id is not None:
            tag = (ETH_VLAN.to_bytes(2, "big")
                   + ((self.priority & 7) << 13 | (self.vlan_id & 0x0FFF)).to_bytes(2, "big"))
        return self.dst + self.src + tag + self.ethertype.to_bytes(2, "big")

    def emit(self) -> bytes:
        return self.header() + self.payload
