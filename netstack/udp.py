"""UDP demultiplexing for a host (RFC 768, RFC 1122 section 4.1).

The bind table maps local ports to listeners (one per port, for every local address).
RFC 1122 section 4.1.3.1: "If a datagram arrives addressed to a UDP port for which there is no
pending LISTEN call, UDP SHOULD send an ICMP Port Unreachable message" (the interface does).
RFC 1122 section 4.1.3.4: a datagram with a bad checksum "MUST be silently discarded".
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

EPHEMERAL = range(49152, 65536)        # RFC 6335 section 6: the dynamic ports


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """A datagram for a bound port."""

    src: IPv4Address | IPv6Address
    src_port: int
    dst: IPv4Address | IPv6Address
    dst_port: int
    data: bytes


class PortInUse(ValueError):
    """The port is already bound."""


class UdpTable:
    """Bound local ports."""

    def __init__(self) -> None:
        self.bound: set[int] = set()
        self._next = EPHEMERAL.start

    def bind(self, port: int = 0) -> int:
        """Bind ``port`` (0: the next free ephemeral port); returns the port."""
        if port == 0:
            for _ in EPHEMERAL:
                candidate = self._next
                self._next = EPHEMERAL.start if candidate + 1 == EPHEMERAL.stop else candidate + 1
                if candidate not in self.bound:
                    port = candidate
                    break
            else:
                raise PortInUse("no free ephemeral port")
        if not 0 < port < 65536:
            raise ValueError(f"port {port} out of range 1..65535")
        if port in self.bound:
            raise PortInUse(f"UDP port {port} is already bound")
        self.bound.add(port)
        return port

    def unbind(self, port: int) -> None:
        self.bound.discard(port)

    def __contains__(self, port: int) -> bool:
        return port in self.bound
