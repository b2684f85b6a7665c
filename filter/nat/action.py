"""NAT actions: which address and port (or ICMP identifier) a new connection is mapped to.

A connection's ``original`` tuple is what its first packet looks like; NAT chooses the
``reply`` tuple, the form replies will arrive in. Source NAT (snat, masquerade) replaces the
reply's destination address and port (the translated source); destination NAT replaces the
reply's source address and port (the translated destination). The choice must be a tuple no
other connection uses (``taken``, asked of the connection table), so replies map back to
exactly one connection.

Choice of address: from the pool's inclusive range, by a hash of the original source (and,
for dnat, the destination) so a client keeps one address (RFC 4787 section 4.1 "endpoint-
independent mapping" preference). Choice of port: keep the original port when it is free and
inside the range; else the first free port after a hashed starting point in the range. With
no range, ports keep their class (below 1024 -> 1..1023, else 1024..65535), as Linux does.
ICMP queries map their identifier the same way over 0..65535; other protocols only have
their address mapped (SCTP too: its CRC32c covers ports but no pseudo-header).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address

from filter.conntrack.entry import CtTuple, invert

__all__ = ["NatAction"]

_PORTED = frozenset((6, 17, 33, 136))      # TCP, UDP, DCCP, UDP-Lite: SCTP keeps its ports
_ICMP = frozenset((1, 58))
KINDS = ("snat", "dnat", "masquerade")


@dataclass(frozen=True)
class NatAction:
    """``kind``: snat, dnat or masquerade; ``addresses``: (first, last) inclusive range of
    4- or 16-byte addresses (one address: (a,) or (a, a)); ``ports``: (low, high) inclusive,
    or None to keep ports where possible."""

    kind: str
    addresses: tuple[bytes, ...]
    ports: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"NAT kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        addrs = tuple(bytes(a) for a in self.addresses)
        if len(addrs) == 1:
            addrs = (addrs[0], addrs[0])
        if len(addrs) != 2 or len(addrs[0]) not in (4, 16) or len(addrs[0]) != len(addrs[1]):
            raise ValueError("NAT addresses must be one address or a (first, last) range of "
                             "4- or 16-byte addresses")
        if int.from_bytes(addrs[0], "big") > int.from_bytes(addrs[1], "big"):
            raise ValueError("NAT address range must go from the lower to the higher address")
        object.__setattr__(self, "addresses", addrs)
        if self.ports is not None:
            low, high = self.ports
            if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high <= 65535):
                raise ValueError(f"NAT port range must be 1 <= low <= high <= 65535, "
                                 f"not {self.ports!r}")

    @classmethod
    def snat(cls, addresses, ports: tuple[int, int] | None = None) -> NatAction:
        """Source NAT to an address (range), optionally with a port range."""
        return cls("snat", _addresses(addresses), ports)

    @classmethod
    def dnat(cls, addresses, ports: tuple[int, int] | None = None) -> NatAction:
        """Destination NAT to an address (range), optionally with a port range."""
        return cls("dnat", _addresses(addresses), ports)

    @classmethod
    def masquerade(cls, address, ports: tuple[int, int] | None = None) -> NatAction:
        """Source NAT to the egress interface's ``address`` (the caller resolves it)."""
        return cls("masquerade", _addresses(address), ports)

    @property
    def family(self) -> int:
        return 4 if len(self.addresses[0]) == 4 else 6

    def choose(self, original: CtTuple, taken: Callable[[tuple], bool]) -> CtTuple | None:
        """The reply tuple for a new connection, or None when every candidate is taken (or
        the address family differs from the connection's)."""
        if len(original.src) != len(self.addresses[0]):
            return None
        proto, rsrc, rdst, rsport, rdport = invert(original)
        source = self.kind != "dnat"
        seed = zlib.crc32(original.src + (b"" if source else original.dst))
        address = self._address(seed)
        if source:
            rdst, current = address, rdport
        else:
            rsrc, current = address, rsport
        if proto in _PORTED:
            low, high = self.ports or ((1, 1023) if current < 1024 else (1024, 65535))
        elif proto in _ICMP and (source and rsport == 0):   # reply carries the id in dport
            low, high = self.ports or (0, 65535)
        else:
            candidate = CtTuple(proto, rsrc, rdst, rsport, rdport)
            return None if taken(candidate) else candidate
        for port in _ports(current, low, high, seed ^ zlib.crc32(original.dst)):
            if source:
                candidate = CtTuple(proto, rsrc, rdst, rsport, port)
            else:
                candidate = CtTuple(proto, rsrc, rdst, port, rdport)
            if not taken(candidate):
                return candidate
        return None

    def _address(self, seed: int) -> bytes:
        first, last = (int.from_bytes(a, "big") for a in self.addresses)
        return (first + seed % (last - first + 1)).to_bytes(len(self.addresses[0]), "big")

    def __str__(self) -> str:
        first, last = (ip_address(a) for a in self.addresses)
        where = str(first) if first == last else f"{first}-{last}"
        ports = f":{self.ports[0]}-{self.ports[1]}" if self.ports else ""
        return f"{self.kind} to {where}{ports}"


def _addresses(value) -> tuple[bytes, ...]:
    """Accept bytes, text or ip_address objects, alone or as a (first, last) pair."""
    if isinstance(value, (bytes, bytearray, str)) or not hasattr(value, "__iter__"):
        value = (value,)
    out = []
    for a in value:
        if isinstance(a, (bytes, bytearray)):
            out.append(bytes(a))
        else:
            out.append(ip_address(a).packed)
    return tuple(out)


def _ports(current: int, low: int, high: int, seed: int):
    """The original port if in range, then every port of the range from a hashed start."""
    if low <= current <= high:
        yield current
    span = high - low + 1
    start = seed % span
    for i in range(span):
        yield low + (start + i) % span

